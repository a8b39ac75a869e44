//! What the admin API gives the pages, checked over plain HTTP.

use serde_json::json;
use weir_tests::{FlowDir, Weir, post_json};

#[test]
fn the_api_gives_the_pages_their_flow_source_activity_and_latest_webhook() {
    let flows = FlowDir::examples();
    flows.write(
        "tokened.toml",
        "name = \"Tokened\"\n[webhook]\nverify = { scheme = \"token\", token = \"${UI_TEST_TOKEN}\", query = \"key\" }\n\n[[steps]]\nid = \"all\"\nplugin = \"transform\"\ninput = { who = \"$.webhook.body.who\", literal = \"$$5\", fallback = { \"$path\" = \"$.webhook.body.x\", \"$default\" = 0 } }\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("UI_TEST_TOKEN", "a-shared-token-for-the-sender")],
    );
    let before = weir.flow("tokened");
    assert_eq!(before["last_run"], json!(null));
    assert_eq!(before["runs_24h"], 0);
    assert_eq!(before["latest_webhook"], json!(null));
    assert!(
        before["source"]
            .as_str()
            .unwrap()
            .contains("name = \"Tokened\"")
    );
    assert_eq!(
        before["steps"][0]["input"],
        json!({"who": "$.webhook.body.who", "literal": "$$5", "fallback": {"$path": "$.webhook.body.x", "$default": 0}}),
        "the mapping as the file writes it"
    );

    let url = format!(
        "{}?key=a-shared-token-for-the-sender",
        weir.webhook_url("tokened")
    );
    let answer = post_json(&url, &json!({"who": "ada"}));
    assert_eq!(
        answer.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let id = answer.json()["run_id"].as_str().unwrap().to_owned();
    weir.wait_run(&id);
    let after = weir.flow("tokened");
    assert_eq!(after["last_run"]["id"], json!(id));
    assert_eq!(after["last_run"]["status"], "succeeded");
    assert_eq!(after["runs_24h"], 1);
    assert_eq!(after["latest_webhook"]["run_id"], json!(id));
    assert_eq!(
        after["latest_webhook"]["output"]["body"],
        json!({"who": "ada"})
    );
    let listed = weir.api("/api/flows").json();
    let listed = listed["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "tokened")
        .unwrap()
        .clone();
    assert_eq!(listed["runs_24h"], 1);
    assert!(listed.get("source").is_none(), "the list stays light");

    let payload = weir.api(&format!("/api/runs/{id}/payload")).json();
    assert_eq!(payload["secret_query"], json!(["key"]));
    assert_eq!(payload["secret_headers"], json!([]));
    assert!(payload["size"].as_u64().unwrap() > 0);
    assert!(
        payload["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
}
