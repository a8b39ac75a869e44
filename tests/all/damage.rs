//! A damaged store, as an admin meets it (issue 20, item 11): a run whose stored record has
//! flipped bytes on disk is its own `damaged` row in `/api/runs` while the rest of the page
//! serves, its own page answers a clear error, and `weir check` names it.

use std::time::Duration;

use weir_tests::{FlowDir, Weir, post_with, wait_for, weir_command};

const MARKER: &[u8] = b"flip-these-bytes";

#[test]
fn a_damaged_run_is_its_own_row_a_clear_error_and_named_by_check() {
    let flows = FlowDir::empty();
    flows.write(
        "echo.toml",
        "name = \"echo\"\n[[steps]]\nid = \"echo\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("weir.redb");
    let weir = Weir::start(flows.path(), &data);
    let url = weir.webhook_url("echo");
    let send = |marker: &str| {
        let answer = post_with(
            &url,
            "application/json",
            br#"{"n":1}"#,
            &[("x-marker", marker)],
        );
        let id = answer.accepted_run_id();
        weir.wait_run(&id);
        id
    };
    let older = send("fine-one");
    let bad = send(std::str::from_utf8(MARKER).unwrap());
    let newer = send("fine-two");
    // A clean stop: every commit is in the store file, nothing left for the journal to redo.
    assert!(weir.stop().success());

    let flipped = weir_tests::flip_marker(&data, MARKER);
    assert!(flipped > 0, "the request is not in the store file");

    let weir = Weir::start(flows.path(), &data);
    // The page serves: the damaged run is a row of its own, between the two that read fine.
    let page = weir.api("/api/runs");
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    let page = page.json();
    let rows = page["runs"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [&newer, &bad, &older], "{page}");
    assert_eq!(rows[1]["status"], "damaged", "{page}");
    let why = rows[1]["error"].as_str().unwrap();
    assert!(why.contains(&bad), "the row says which record: {why}");
    assert_eq!(rows[0]["status"], "succeeded");
    assert_eq!(rows[2]["status"], "succeeded");
    // Filters serve the same way.
    let filtered = weir.api("/api/runs?flow=echo");
    assert_eq!(filtered.status, 200);
    assert_eq!(filtered.json()["runs"].as_array().unwrap().len(), 3);

    // Its own page, and its payload: a clear error naming the damage, no internal Debug text.
    for path in [
        format!("/api/runs/{bad}"),
        format!("/api/runs/{bad}/payload"),
    ] {
        let answer = weir.api(&path);
        assert_eq!(answer.status, 500, "{path}");
        let error = answer.json();
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("damaged") && message.contains("weir check"),
            "{path}: {error}"
        );
        for debug in ["Corrupt(", "Storage(", "StoreError", "{ "] {
            assert!(!message.contains(debug), "{path}: {message}");
        }
    }
    // The runs beside it still open.
    assert_eq!(weir.api(&format!("/api/runs/{older}")).status, 200);
    assert_eq!(weir.api(&format!("/api/runs/{newer}")).status, 200);
    assert!(weir.stop().success());

    // `weir check` refuses a store another process holds; give the stopped server's lock a
    // moment to go, on a loaded machine.
    let out = wait_for(
        Duration::from_secs(10),
        "the store's lock to be free",
        || {
            let out = weir_command()
                .args(["check", "--data"])
                .arg(&data)
                .output()
                .unwrap();
            let held = out.status.code() == Some(2)
                && String::from_utf8_lossy(&out.stderr).contains("already open");
            (!held).then_some(out)
        },
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("damaged: run {bad}:")), "{stdout}");
    assert!(
        !stdout.contains(&older) && !stdout.contains(&newer),
        "{stdout}"
    );
}
