//! The admin API as an admin uses it: flows, runs filtered and paged, errors as JSON, and the
//! token when one is configured.

use serde_json::{Value, json};
use weir_tests::{FlowDir, Weir, get_with, post_json, weir_command};

#[test]
fn flows_show_their_url_status_and_version() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--public-url", "https://hooks.example.com/"],
    );
    let list = weir.api("/api/flows").json();
    let flows = list["flows"].as_array().unwrap();
    let ids: Vec<_> = flows.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["contact-form", "github-issues", "stripe-payments"]);
    for flow in flows {
        assert_eq!(flow["status"], "ok", "{flow:#}");
        assert_eq!(flow["errors"], json!([]));
        assert_eq!(flow["version"].as_str().unwrap().len(), 16);
        let url = flow["webhook_url"].as_str().unwrap();
        let prefix = format!(
            "https://hooks.example.com/hooks/{}/",
            flow["id"].as_str().unwrap()
        );
        assert!(url.starts_with(&prefix), "{url}");
        assert_eq!(url.len(), prefix.len() + 22, "a 128-bit token: {url}");
    }
    let health = weir.api("/api/health").json();
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["senders_waiting_for_results"],
        json!({"waiting": 0, "turned_away": 0})
    );
    let missing = weir.api("/api/flows/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["status"], 404);
}

#[test]
fn runs_are_listed_newest_first_filtered_and_paged() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let github = weir.webhook_url("github-issues");
    let contact = weir.webhook_url("contact-form");
    let mut ids = Vec::new();
    for i in 0..5 {
        let action = if i % 2 == 0 { "opened" } else { "closed" };
        let body = json!({"action": action, "issue": {"number": i, "title": "t", "html_url": "u", "user": {"login": "l"}}});
        ids.push(
            post_json(&github, &body).json()["run_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids.push(
        post_json(&contact, &json!({"email": "a@b", "message": "m"})).json()["run_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    for id in &ids {
        weir.wait_run(id);
    }

    let all = weir.api("/api/runs").json();
    let listed: Vec<String> = all["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    assert_eq!(all["next_cursor"], json!(null));

    let by_flow = weir.api("/api/runs?flow=contact-form").json();
    assert_eq!(by_flow["runs"].as_array().unwrap().len(), 1);
    let filtered = weir
        .api("/api/runs?flow=github-issues&status=filtered")
        .json();
    assert_eq!(filtered["runs"].as_array().unwrap().len(), 2);
    assert!(
        filtered["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "filtered")
    );

    // Pages of two, following the cursor, cover every run once.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = weir.api(&format!("/api/runs?limit=2{cursor}")).json();
        paged.extend(
            page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(paged, newest_first);

    for bad in [
        "status=done",
        "limit=0",
        "limit=x",
        "cursor=nope",
        "colour=red",
    ] {
        let answer = weir.api(&format!("/api/runs?{bad}"));
        assert_eq!(answer.status, 400, "{bad}");
        assert!(answer.json()["error"]["message"].is_string());
    }
    assert_eq!(weir.api("/api/runs/not-a-run").status, 400);
    assert_eq!(weir.api("/api/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV").status, 404);
    assert_eq!(
        weir.api("/api/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV/payload")
            .status,
        404
    );

    // A wrong method gets 405 naming the method the route takes.
    let admin = weir.admin.trim_end_matches('/');
    for (method, path, allow) in [
        ("PUT", "/api/flows", "GET"),
        ("DELETE", "/api/runs", "GET"),
        ("GET", "/api/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV/replay", "POST"),
        ("PUT", "/api/flows/github-issues/rotate-token", "POST"),
    ] {
        let answer =
            weir_tests::send(method, &format!("{admin}{path}"), "application/json", b"").unwrap();
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(answer.header("allow"), Some(allow), "{method} {path}");
    }
}

#[test]
fn a_configured_admin_token_is_required() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-token", "let-me-in-please-0123"],
    );
    let denied = weir.api("/api/flows");
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    let wrong = get_with(
        &format!("{}/api/flows", weir.admin),
        &[("authorization", "Bearer nope")],
    );
    assert_eq!(wrong.status, 401);
    for scheme in ["Bearer", "bearer", "BEARER  "] {
        let ok = get_with(
            &format!("{}/api/flows", weir.admin),
            &[("authorization", &format!("{scheme} let-me-in-please-0123"))],
        );
        assert_eq!(ok.status, 200, "{scheme}");
    }
    let no_scheme = get_with(
        &format!("{}/api/flows", weir.admin),
        &[("authorization", "let-me-in-please-0123")],
    );
    assert_eq!(no_scheme.status, 401);
}

#[test]
fn the_admin_api_refuses_to_listen_publicly_without_a_token() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let out = weir_command()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
            "--flows",
        ])
        .arg(flows.path())
        .arg("--data")
        .arg(data.path().join("weir.redb"))
        .env_remove("WEIR_ADMIN_TOKEN")
        .output()
        .unwrap();
    // A refused setting exits 2, as a usage error does.
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin-token"));
}

#[test]
fn secrets_from_the_environment_never_reach_the_api_or_stored_runs() {
    let flows = FlowDir::empty();
    flows.write(
        "secret.toml",
        "name = \"secret\"\n[[steps]]\nid = \"render\"\nplugin = \"template\"\ninput.who = \"$.webhook.body.who\"\nconfig.template = \"key ${WEIR_TEST_API_KEY} for {{ who }}\"\n",
    );
    flows.write(
        "signed.toml",
        "name = \"signed\"\n[webhook]\ndedupe = \"$.webhook.headers['x-github-delivery']\"\n\
         dedupe_window = \"3d\"\nrespond = \"result\"\nrespond_timeout = \"2s\"\n\
         verify = { scheme = \"github\", secret = \"${WEIR_TEST_API_KEY}\" }\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("WEIR_TEST_API_KEY", "sk_live_very_secret")],
    );
    let flow = weir.flow("secret");
    assert_eq!(flow["status"], "ok", "{flow:#}");
    assert!(
        !flow.to_string().contains("sk_live_very_secret"),
        "{flow:#}"
    );
    // A flow's webhook settings show, its verify secret does not.
    let signed = weir.flow("signed");
    assert_eq!(signed["status"], "ok", "{signed:#}");
    assert_eq!(signed["verify"], "github");
    assert_eq!(signed["dedupe"], "$.webhook.headers['x-github-delivery']");
    assert_eq!(signed["dedupe_window_ms"], 3 * 24 * 3600 * 1000);
    assert_eq!(weir.flow("secret")["dedupe_window_ms"], Value::Null);
    assert_eq!(
        signed["respond"],
        json!({"mode": "result", "timeout_ms": 2000})
    );
    assert!(
        !signed.to_string().contains("sk_live_very_secret"),
        "{signed:#}"
    );
    assert_eq!(flow["respond"], json!({"mode": "accepted"}));
    assert_eq!(flow["verify"], json!(null));
    let id = post_json(&weir.webhook_url("secret"), &json!({"who": "ada"})).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = weir.wait_run(&id);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    // The step used the secret, and what it made is stored with the secret masked ...
    assert_eq!(
        run["steps"][0]["output"],
        "key [redacted:WEIR_TEST_API_KEY] for ada"
    );
    // ... but its config is not part of what a run stores: only its input is.
    assert_eq!(run["steps"][0]["input"], json!({"who": "ada"}));
    assert!(run["steps"][0].get("config").is_none());
}
