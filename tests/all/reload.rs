//! Hot reload: flow files added, edited, broken and deleted while Weir serves take effect
//! within a second; a broken edit keeps the last good version serving and shows its errors.

use std::time::Duration;

use serde_json::json;
use weir_tests::{FlowDir, Weir, post_json, wait_for};

const RELOAD: Duration = Duration::from_secs(5);

fn flow(name: &str, channel: &str) -> String {
    format!(
        "name = \"{name}\"\n[[steps]]\nid = \"shape\"\nplugin = \"transform\"\ninput = {{ text = \"$.webhook.body.text\", channel = \"{channel}\" }}\n"
    )
}

fn run_output(weir: &Weir, url: &str) -> serde_json::Value {
    let answer = post_json(url, &json!({"text": "hi"}));
    assert_eq!(
        answer.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    run["steps"][0]["output"].clone()
}

#[test]
fn added_edited_broken_and_deleted_flows_take_effect_while_serving() {
    let flows = FlowDir::empty();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    assert_eq!(weir.api("/api/flows").json()["flows"], json!([]));

    // Added.
    flows.write("alerts.toml", &flow("Alerts", "#one"));
    wait_for(RELOAD, "the new flow to load", || {
        (weir.api("/api/flows/alerts").status == 200).then_some(())
    });
    let url = weir.webhook_url("alerts");
    let v1 = weir.flow("alerts")["version"].clone();
    assert_eq!(
        run_output(&weir, &url),
        json!({"text": "hi", "channel": "#one"})
    );

    // Edited: same URL, new version.
    flows.write("alerts.toml", &flow("Alerts", "#two"));
    wait_for(RELOAD, "the edit to load", || {
        (weir.flow("alerts")["version"] != v1).then_some(())
    });
    assert_eq!(weir.webhook_url("alerts"), url);
    assert_eq!(
        run_output(&weir, &url),
        json!({"text": "hi", "channel": "#two"})
    );
    let v2 = weir.flow("alerts")["version"].clone();

    // Broken: the error shows (with line and column) and the last good version keeps serving.
    flows.write(
        "alerts.toml",
        "name = \"Alerts\"\n[[steps]]\nid = \"shape\"\nplugin = \"no-such-plugin\"\n",
    );
    let broken = wait_for(RELOAD, "the broken edit to be reported", || {
        let flow = weir.flow("alerts");
        (flow["status"] == "error").then_some(flow)
    });
    let errors = broken["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    assert_eq!(errors[0]["line"], 4, "{broken:#}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-plugin"),
        "{broken:#}"
    );
    assert_eq!(
        broken["version"], v2,
        "the last good version is still the one serving"
    );
    assert_eq!(
        run_output(&weir, &url),
        json!({"text": "hi", "channel": "#two"})
    );
    assert!(
        weir.logs().contains("no-such-plugin"),
        "the error is logged too"
    );

    // Fixed again.
    flows.write("alerts.toml", &flow("Alerts", "#three"));
    wait_for(RELOAD, "the fix to load", || {
        (weir.flow("alerts")["status"] == "ok").then_some(())
    });
    assert_eq!(
        run_output(&weir, &url),
        json!({"text": "hi", "channel": "#three"})
    );

    // Deleted: gone from the API, its URL answers 404.
    std::fs::remove_file(flows.path().join("alerts.toml")).unwrap();
    wait_for(RELOAD, "the deletion to take effect", || {
        (weir.api("/api/flows/alerts").status == 404).then_some(())
    });
    assert_eq!(
        weir_tests::send("POST", &url, "application/json", b"{}")
            .unwrap()
            .status,
        404
    );
}

#[test]
fn an_editor_that_replaces_the_file_is_seen_and_a_rename_moves_the_flow() {
    let flows = FlowDir::empty();
    flows.write("first.toml", &flow("First", "#a"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let v1 = weir.flow("first")["version"].clone();

    // Write a temp file and rename it over the flow, as vim and many IDEs save.
    let tmp = flows.path().join(".first.toml.swp");
    std::fs::write(&tmp, flow("First", "#b")).unwrap();
    std::fs::rename(&tmp, flows.path().join("first.toml")).unwrap();
    wait_for(RELOAD, "the replaced file to load", || {
        (weir.flow("first")["version"] != v1).then_some(())
    });

    std::fs::rename(
        flows.path().join("first.toml"),
        flows.path().join("second.toml"),
    )
    .unwrap();
    wait_for(RELOAD, "the rename to take effect", || {
        (weir.api("/api/flows/first").status == 404 && weir.api("/api/flows/second").status == 200)
            .then_some(())
    });
    assert_eq!(
        run_output(&weir, &weir.webhook_url("second")),
        json!({"text": "hi", "channel": "#b"})
    );
}

#[test]
fn a_new_file_that_is_broken_from_the_start_shows_its_errors_and_serves_nothing() {
    let flows = FlowDir::empty();
    flows.write("bad.toml", "name = 3\nunknown = true\n");
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let flow = weir.flow("bad");
    assert_eq!(flow["status"], "error");
    assert_eq!(flow["serving"], false);
    assert!(
        flow["errors"].as_array().unwrap().len() >= 2,
        "every error at once: {flow:#}"
    );
    let url = flow["webhook_url"].as_str().unwrap();
    assert_eq!(
        weir_tests::send("POST", url, "application/json", b"{}")
            .unwrap()
            .status,
        404
    );
}

#[test]
fn a_plugin_that_fails_to_load_is_reported_where_the_flow_names_it() {
    let flows = FlowDir::empty();
    std::fs::write(flows.path().join("broken.wasm"), b"not a component").unwrap();
    // The id in single quotes, and the same id as text elsewhere: the position comes from
    // the parsed file, not from searching its text.
    flows.write(
        "uses-broken.toml",
        "name = \"id = 'shape'\"\n[[steps]]\nid = 'shape'\n  plugin = \"./broken.wasm\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let flow = weir.flow("uses-broken");
    assert_eq!(flow["status"], "error", "{flow:#}");
    let errors = flow["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{flow:#}");
    assert_eq!(
        (&errors[0]["line"], &errors[0]["column"]),
        (&json!(4), &json!(12))
    );
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains("in step 'shape'"), "{message}");
}

#[test]
fn runs_accepted_before_an_edit_run_the_version_they_were_accepted_with() {
    let flow = |channel: &str| {
        format!(
            "name = \"versioned\"\n\
             [[steps]]\nid = \"spin\"\nplugin = \"{}\"\ninput = \"$.webhook.body\"\nconfig = {{ mode = \"spin\", ms = 300 }}\n\
             [[steps]]\nid = \"shape\"\nplugin = \"transform\"\ninput = {{ channel = \"{channel}\" }}\n",
            weir_tests::HOSTILE_WASM
        )
    };
    let flows = FlowDir::empty();
    flows.write("versioned.toml", &flow("#old"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--concurrency", "1"],
    );
    let url = weir.webhook_url("versioned");
    let old_version = weir.flow("versioned")["version"].clone();
    let before: Vec<String> = (0..3)
        .map(|i| {
            post_json(&url, &json!({ "n": i })).json()["run_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    flows.write("versioned.toml", &flow("#new"));
    wait_for(RELOAD, "the edit to load", || {
        (weir.flow("versioned")["version"] != old_version).then_some(())
    });
    let after = post_json(&url, &json!({ "n": 9 })).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in &before {
        let run = weir.wait_run(id);
        assert_eq!(run["run"]["flow_version"], old_version);
        assert_eq!(
            run["steps"][1]["output"],
            json!({"channel": "#old"}),
            "{run:#}"
        );
    }
    let run = weir.wait_run(&after);
    assert_ne!(run["run"]["flow_version"], old_version);
    assert_eq!(run["steps"][1]["output"], json!({"channel": "#new"}));
}

#[test]
fn rebuilding_a_plugin_reloads_its_flows_and_earlier_runs_keep_the_old_code() {
    // `step.wasm` is first the `raw` guest, which hands back the string "42" as the number 42,
    // then the hostile guest in echo mode, which keeps the string: the output tells the code.
    let flows = FlowDir::empty();
    let step = flows.path().join("step.wasm");
    std::fs::copy(weir_tests::RAW_WASM, &step).unwrap();
    flows.write(
        "built.toml",
        &format!(
            "name = \"built\"\n\
             [[steps]]\nid = \"spin\"\nplugin = \"{}\"\ninput = \"$.webhook.body\"\nconfig = {{ mode = \"spin\", ms = 300 }}\n\
             [[steps]]\nid = \"step\"\nplugin = \"./step.wasm\"\ninput = \"$.webhook.body.n\"\nconfig = {{ mode = \"echo\" }}\n",
            weir_tests::HOSTILE_WASM
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("weir.redb");
    let weir = Weir::start_with(flows.path(), &store, &["--concurrency", "1"]);
    let url = weir.webhook_url("built");
    let old_version = weir.flow("built")["version"].clone();
    // Queued behind one another (one run at a time, each spinning 300 ms), then cut off.
    let before: Vec<String> = (0..3)
        .map(|_| {
            post_json(&url, &json!({ "n": "42" })).json()["run_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    weir.kill();

    // The plugin is rebuilt while Weir is down: the same flow file is a new version.
    std::fs::copy(weir_tests::HOSTILE_WASM, &step).unwrap();
    let weir = Weir::start_with(flows.path(), &store, &["--concurrency", "1"]);
    let url = weir.webhook_url("built");
    let new_version = weir.flow("built")["version"].clone();
    assert_ne!(new_version, old_version, "a new plugin makes a new version");
    for id in &before {
        let run = weir.wait_run(id);
        assert_eq!(run["run"]["flow_version"], old_version);
        assert_eq!(
            run["steps"][1]["output"],
            json!(42),
            "a run accepted before the rebuild runs the old code, kept in the store: {run:#}"
        );
    }
    let after = weir.wait_run(
        post_json(&url, &json!({ "n": "42" })).json()["run_id"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(after["run"]["flow_version"], new_version);
    assert_eq!(after["steps"][1]["output"], json!("42"), "{after:#}");

    // Rebuilt again while serving: the flow reloads by itself, with the version of that code.
    std::fs::copy(weir_tests::RAW_WASM, &step).unwrap();
    wait_for(RELOAD, "the rebuilt plugin to reload the flow", || {
        (weir.flow("built")["version"] == old_version).then_some(())
    });
    let again = weir.wait_run(
        post_json(&url, &json!({ "n": "42" })).json()["run_id"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(again["steps"][1]["output"], json!(42), "{again:#}");
}
