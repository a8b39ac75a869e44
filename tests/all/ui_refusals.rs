//! A refused webhook appears live, without a reload, on the Flow page of its flow (its row in
//! "Refused webhooks") and on the Flows page (its count), from the `webhook.refused` event.

use std::time::Duration;

use serde_json::json;
use weir_tests::browser::Browser;
use weir_tests::{FlowDir, Weir, post_with};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_refused_webhook_shows_up_live_on_its_flow_page_and_the_flows_page() {
    let flows = FlowDir::empty();
    flows.write(
        "signed.toml",
        "name = \"Signed\"\n[webhook]\nverify = { scheme = \"github\", secret = \"${GH}\" }\n\
         [[steps]]\nid = \"echo\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("GH", "github-webhook-secret-for-the-ui")],
    );
    let url = weir.webhook_url("signed");
    let forge = || {
        let answer = post_with(
            &url,
            "application/json",
            b"{}",
            &[("x-hub-signature-256", "sha256=00")],
        );
        assert_eq!(answer.status, 401);
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            let browser = Browser::start("refusals_live").await;
            browser.open(&format!("{}/flows/signed", weir.admin)).await;
            browser
                .wait_text(".refusals", "None: every request", WAIT)
                .await;
            browser.wait(r#"#live[data-state="live"]"#, WAIT).await;
            // Set on this page load: still there later means the page did not reload.
            browser
                .eval("window.__sameLoad = 'yes'; return null;")
                .await;

            forge();
            let row = browser
                .wait_text(".refusals tr.refusal", "verify", WAIT)
                .await;
            assert!(row.text().await.unwrap().contains("401"));
            browser
                .wait_text(".refusal-counts", "1 refused", WAIT)
                .await;
            assert_eq!(
                browser.eval("return window.__sameLoad || null;").await,
                json!("yes"),
                "the refusal came without a reload"
            );
            browser.screenshot("flow-refused").await;

            browser.open(&format!("{}/flows", weir.admin)).await;
            let card = r#".flow-card[data-flow-id="signed"]"#;
            browser
                .wait_text(&format!("{card} .refused"), "1 webhook", WAIT)
                .await;
            browser.wait(r#"#live[data-state="live"]"#, WAIT).await;
            browser
                .eval("window.__sameLoad = 'yes'; return null;")
                .await;
            forge();
            browser
                .wait_text(&format!("{card} .refused"), "2 webhooks", WAIT)
                .await;
            assert_eq!(
                browser.eval("return window.__sameLoad || null;").await,
                json!("yes"),
                "the count moved without a reload"
            );
            browser.assert_only_origin(&weir.admin).await;
            browser.close().await;
        });
}
