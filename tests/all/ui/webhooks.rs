//! The Webhooks page: a webhook appearing live, then its payload and its run through the
//! row's Options menu, and the menu by keyboard.

use std::time::{Duration, Instant};

use fantoccini::key::Key;
use serde_json::json;
use weir_tests::browser::Browser;
use weir_tests::{FlowDir, Weir, post_json, post_with};

use super::{WAIT, runtime};

#[test]
fn a_webhook_shows_up_live_with_its_payload_and_its_run() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let hook = weir.webhook_url("github-issues");
    runtime().block_on(async {
        let browser = Browser::start("webhooks_live").await;
        browser.open(&format!("{}/", weir.admin)).await;
        browser.wait_text("main", "No webhooks yet", WAIT).await;
        browser.wait(r#"#live[data-state="live"]"#, WAIT).await;
        browser.screenshot("webhooks-empty").await;
        // Set on this page load: still there later means the page did not reload.
        browser.eval("window.__sameLoad = 'yes'; return null;").await;

        let body = r#"{"action":"opened","issue":{"number":42,"title":"Crash on start","html_url":"https://github.com/acme/app/issues/42","user":{"login":"octocat"}}}"#;
        let sent = Instant::now();
        let answer = post_with(
            &hook,
            "application/json",
            body.as_bytes(),
            &[("x-github-event", "issues"), ("x-trace", "trace-7f3a")],
        );
        assert_eq!(answer.status, 202);
        let id = answer.json()["run_id"].as_str().unwrap().to_owned();
        let row = format!(r#"tr[data-run-id="{id}"]"#);
        browser.wait(&row, Duration::from_secs(2)).await;
        browser
            .wait_text(
                &format!("{row} .status-cell"),
                "succeeded",
                Duration::from_secs(2).saturating_sub(sent.elapsed()),
            )
            .await;
        let took = sent.elapsed();
        assert!(took < Duration::from_secs(2), "row turned succeeded after {took:?}");
        assert_eq!(
            browser.eval("return window.__sameLoad || null;").await,
            json!("yes"),
            "the row came without a reload"
        );
        browser.wait_text(&row, "GitHub issues to Slack", WAIT).await;
        browser.screenshot("webhooks").await;

        // Options → Payload.
        browser.click(&format!("{row} button.options"), WAIT).await;
        browser.click(&format!("{row} a.menu-payload"), WAIT).await;
        browser.wait_text("dialog[open]", "Crash on start", WAIT).await;
        let dialog = browser.wait_text("dialog[open]", "trace-7f3a", WAIT).await;
        let text = dialog.text().await.unwrap();
        assert!(text.contains("x-trace"), "{text}");
        assert!(text.contains("octocat"), "{text}");
        let url = browser.client.current_url().await.unwrap();
        assert_eq!(url.path(), format!("/runs/{id}/payload"), "the dialog's own URL");
        browser.screenshot("payload").await;
        browser.click("#tab-raw", WAIT).await;
        let raw = browser.wait("pre[data-raw]", WAIT).await;
        assert_eq!(raw.text().await.unwrap(), body, "Raw shows the exact bytes");
        browser.screenshot("payload-raw").await;

        // The dialog's URL reloads to the dialog.
        browser.client.refresh().await.unwrap();
        browser.wait_text("dialog[open]", "trace-7f3a", WAIT).await;
        browser.click("dialog[open] button.close", WAIT).await;

        // Options → Open run.
        browser.click(&format!("{row} button.options"), WAIT).await;
        browser.click(&format!("{row} a.menu-run"), WAIT).await;
        let webhook = browser
            .wait_text(r#"[data-step-id="webhook"]"#, "Crash on start", WAIT)
            .await;
        let webhook = webhook.text().await.unwrap();
        assert!(webhook.contains("x-github-event"), "{webhook}");
        browser
            .wait_text(r#"[data-step-id="opened"]"#, "opened", WAIT)
            .await;
        browser
            .wait_text(
                r#"[data-step-id="message"]"#,
                "New issue #42: Crash on start by octocat",
                WAIT,
            )
            .await;
        browser
            .wait_text(r##"[data-step-id="slack"]"##, "#issues", WAIT)
            .await;
        browser.screenshot("run").await;

        // A run that fails on a mapping: the error names the step and the place.
        let failing = post_json(&hook, &json!({"action": "opened", "issue": {"number": 7}}));
        let failed_id = failing.json()["run_id"].as_str().unwrap().to_owned();
        assert_eq!(weir.wait_run(&failed_id)["run"]["status"], "failed");
        browser
            .open(&format!("{}/runs/{failed_id}", weir.admin))
            .await;
        let error = browser.wait_text(".run-error", "message", WAIT).await;
        let error = error.text().await.unwrap();
        assert!(error.contains("input.title"), "{error}");
        let step = browser
            .wait_text(r#".step-failed[data-step-id="message"] .error-message"#, "input.title", WAIT)
            .await;
        let step = step.text().await.unwrap();
        assert!(step.contains("$.webhook.body.issue.title"), "{step}");
        browser
            .wait_text(r#"[data-step-id="slack"]"#, "Not run", WAIT)
            .await;
        browser.screenshot("run-failed").await;

        // Keyboard: Escape closes an Options menu and gives the focus back to its button.
        browser.open(&format!("{}/", weir.admin)).await;
        let options = browser.wait(&format!("{row} button.options"), WAIT).await;
        options.click().await.unwrap();
        browser.wait(&format!("{row} .menu:not([hidden])"), WAIT).await;
        let focused = browser.client.active_element().await.unwrap();
        assert_eq!(focused.text().await.unwrap(), "Payload", "the menu takes the focus");
        focused
            .send_keys(&String::from(char::from(Key::Escape)))
            .await
            .unwrap();
        browser.wait(&format!("{row} .menu[hidden]"), WAIT).await;
        let focused = browser.client.active_element().await.unwrap();
        assert_eq!(focused.text().await.unwrap(), "Options", "the focus goes back");

        browser.assert_only_origin(&weir.admin).await;
        browser.close().await;
    });
}
