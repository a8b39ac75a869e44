//! The details a flow's page and a run's page show beyond the basics: refusals, the flow
//! file's settings, the secret that matched, attempts, replays, a retry's due time.

use fantoccini::Locator;
use serde_json::json;
use weir_tests::browser::Browser;
use weir_tests::{FlowDir, Weir, post_json, post_with};

use super::{WAIT, runtime};

/// The flow page shows what the flow file says beyond the webhook (concurrency, order,
/// retain, on_failure, the effective dedupe and where it came from, a step's retries) and the
/// flow's refused webhooks; the run page shows which secret matched, a step's attempts with
/// their errors, and the links between a run and its replays.
#[test]
fn the_flow_page_lists_refusals_and_the_run_page_attempts_and_replays() {
    const NEW: &str = "the-new-secret-of-32-bytes-long!";
    const OLD: &str = "the-old-secret-of-32-bytes-long!";
    // A loopback port nothing listens on: every call to it fails as `upstream`.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let flows = FlowDir::empty();
    flows.write(
        "guarded.toml",
        r#"name = "Guarded"
concurrency = 2
order_by = "$.webhook.body.customer"
retain = { age = "7d", runs = 500 }
on_failure = "alerts"

[webhook]
verify = { scheme = "github", secret = ["${NEW}", "${OLD}"] }

[[steps]]
id = "echo"
plugin = "transform"
input = "$.webhook.body"
"#,
    );
    flows.write(
        "alerts.toml",
        &format!(
            r#"name = "Alerts"

[[steps]]
id = "call"
plugin = "http"
allow_hosts = ["http://127.0.0.1:{closed}"]
config.url = "http://127.0.0.1:{closed}/down"
retries = 1
backoff = "100ms"
"#
        ),
    );
    // A step that fails and retries only in an hour: its run waits, `retrying`.
    flows.write(
        "patient.toml",
        &format!(
            r#"name = "Patient"

[[steps]]
id = "call"
plugin = "http"
allow_hosts = ["http://127.0.0.1:{closed}"]
config.url = "http://127.0.0.1:{closed}/down"
retries = 1
backoff = "1h"
"#
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("NEW", NEW), ("OLD", OLD)],
    );
    let guarded = weir.webhook_url("guarded");
    // A forgery, refused and on record.
    let forged = post_with(
        &guarded,
        "application/json",
        br#"{"customer":"c1"}"#,
        &[("x-hub-signature-256", "sha256=00")],
    );
    assert_eq!(forged.status, 401);
    // A webhook signed with the old secret.
    let body = br#"{"customer":"c1","n":1}"#;
    let signature = {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(OLD.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let signed = post_with(
        &guarded,
        "application/json",
        body,
        &[
            ("x-hub-signature-256", &signature),
            ("x-github-delivery", "d-1"),
        ],
    )
    .accepted_run_id();
    weir.wait_run(&signed);
    let replay = post_with(
        &format!("{}/api/runs/{signed}/replay", weir.admin),
        "application/json",
        b"",
        &[],
    );
    assert!(
        replay.status == 200 || replay.status == 202,
        "{}",
        replay.status
    );
    let replay = replay.json()["run_id"].as_str().unwrap().to_owned();
    weir.wait_run(&replay);
    // A run whose step fails twice (one retry).
    let failing = post_json(&weir.webhook_url("alerts"), &json!({})).accepted_run_id();
    assert_eq!(weir.wait_run(&failing)["run"]["status"], "failed");

    runtime().block_on(async {
        let browser = Browser::start("flow_refusals_run_attempts").await;
        // The Flows page counts the refusals and links to them.
        browser.open(&format!("{}/flows", weir.admin)).await;
        browser
            .wait_text(
                r#".flow-card[data-flow-id="guarded"] .refused"#,
                "1 webhook",
                WAIT,
            )
            .await;
        browser
            .click(r#".flow-card[data-flow-id="guarded"] .refused a"#, WAIT)
            .await;
        let row = browser
            .wait_text(".refusals tr.refusal", "signature", WAIT)
            .await
            .text()
            .await
            .unwrap();
        assert!(row.contains("verify"), "the reason: {row}");
        assert!(row.contains("127.0.0.1"), "the sender's address: {row}");
        assert!(row.contains("POST"), "{row}");
        browser
            .wait_text(".refusal-counts", "1 refused", WAIT)
            .await;
        for (css, text) in [
            (".dedupe", "x-github-delivery"),
            (".dedupe-from", "verify scheme github"),
            (".dedupe", "for 7 d"),
            (".concurrency", "2 runs at once"),
            (".order-by", "$.webhook.body.customer"),
            (".retain", "the newest 500 finished runs"),
            (".retain", "younger than 7 d"),
            (".on-failure", "alerts"),
        ] {
            browser
                .wait_text(&format!(".webhook-step {css}"), text, WAIT)
                .await;
        }
        browser.screenshot("flow-refusals").await;
        browser.resize(360, 800).await;
        browser.screenshot("flow-refusals-360px").await;
        let overflow = browser
            .eval("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
            .await;
        assert_eq!(overflow, json!(true), "no sideways scrolling at 360 px");
        browser.resize(1280, 900).await;

        browser.open(&format!("{}/flows/alerts", weir.admin)).await;
        browser
            .wait_text(r#"[data-step-id="call"] .retries"#, "Retries 1 time", WAIT)
            .await;
        browser.wait_text(".refusals", "None", WAIT).await;

        // The run signed with the old secret, and its replay.
        browser.open(&format!("{}/runs/{signed}", weir.admin)).await;
        browser
            .wait_text(".verify-used", "github · secret 1", WAIT)
            .await;
        browser.wait_text(".verify-used", "2nd", WAIT).await;
        browser.wait_text(".replays", &replay, WAIT).await;
        browser.screenshot("run-verified-replayed").await;
        browser.click(".replays a", WAIT).await;
        browser.wait_text(".replay-of", &signed, WAIT).await;

        // The failed run: each attempt with its error.
        browser
            .open(&format!("{}/runs/{failing}", weir.admin))
            .await;
        let attempts = browser
            .wait_text(r#"[data-step-id="call"] .attempts"#, "Attempt 2", WAIT)
            .await;
        let failed = attempts
            .find_all(Locator::Css(".attempt-failed .error-kind"))
            .await
            .unwrap();
        assert_eq!(failed.len(), 2, "{}", attempts.text().await.unwrap());
        for kind in failed {
            assert_eq!(kind.text().await.unwrap(), "upstream");
        }
        browser.screenshot("run-attempts").await;

        // A retrying run says when it tries next.
        let patient = post_json(&weir.webhook_url("patient"), &json!({})).accepted_run_id();
        browser
            .open(&format!("{}/runs/{patient}", weir.admin))
            .await;
        browser
            .wait_text(".page-head .badge", "retrying", WAIT)
            .await;
        let next = browser
            .wait(".page-head .next-attempt time", WAIT)
            .await
            .attr("datetime")
            .await
            .unwrap()
            .unwrap_or_default();
        let run = weir.api(&format!("/api/runs/{patient}")).json();
        assert_eq!(run["run"]["status"], "retrying", "{run}");
        assert_eq!(json!(next), run["run"]["next_attempt_at"]);
        browser
            .wait_text(
                r#"[data-step-id="call"] .attempts"#,
                "next attempt due",
                WAIT,
            )
            .await;
        browser.screenshot("run-retrying").await;
        browser.assert_only_origin(&weir.admin).await;
        browser.close().await;
    });
}
