//! The web UI in real headless Chromium, as an admin uses it: Copy URL on the Flows page, a
//! webhook appearing live on the Webhooks page, its payload and run, a flow file saved and
//! broken while the page is open, the admin token's sign-in form, and no request to any other
//! origin. Each test saves full-page screenshots (light and dark) under
//! `<target>/ui-screenshots/<test>/`. The event stream is checked over plain HTTP in
//! `events.rs`.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::json;
use weir_tests::browser::Browser;
use weir_tests::{FlowDir, Weir, post_json, post_with};

const WAIT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn the_flows_page_copies_exactly_the_webhook_url() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let expected = weir.webhook_url("github-issues");
    runtime().block_on(async {
        let browser = Browser::start("flows_copy_url").await;
        browser.grant_clipboard(&weir.admin).await;
        browser.open(&format!("{}/flows", weir.admin)).await;
        let card = r#".flow-card[data-flow-id="github-issues"]"#;
        browser
            .wait_text(card, "GitHub issues to Slack", WAIT)
            .await;
        let button = browser.wait(&format!("{card} .copy-url"), WAIT).await;
        button.click().await.unwrap();
        browser
            .wait_text(&format!("{card} .copy-url"), "Copied", WAIT)
            .await;
        let copied = browser
            .eval_async(
                "const done = arguments[arguments.length - 1];
                 navigator.clipboard.readText().then(done, (e) => done('ERROR ' + e));",
            )
            .await;
        assert_eq!(copied, json!(expected), "the clipboard holds the API's URL");
        browser.screenshot("flows").await;
        // A phone's width: the page still reads.
        browser.resize(360, 800).await;
        browser.screenshot("flows-360px").await;
        let overflow = browser
            .eval("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
            .await;
        assert_eq!(overflow, json!(true), "no sideways scrolling at 360 px");
        browser.assert_only_origin(&weir.admin).await;
        browser.close().await;
    });
}

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
        browser
            .wait(&format!("{row} button.options"), WAIT)
            .await
            .click()
            .await
            .unwrap();
        browser
            .wait(&format!("{row} a.menu-payload"), WAIT)
            .await
            .click()
            .await
            .unwrap();
        browser.wait_text("dialog[open]", "Crash on start", WAIT).await;
        let dialog = browser.wait_text("dialog[open]", "trace-7f3a", WAIT).await;
        let text = dialog.text().await.unwrap();
        assert!(text.contains("x-trace"), "{text}");
        assert!(text.contains("octocat"), "{text}");
        let url = browser.client.current_url().await.unwrap();
        assert_eq!(url.path(), format!("/runs/{id}/payload"), "the dialog's own URL");
        browser.screenshot("payload").await;
        browser
            .client
            .find(Locator::Css("#tab-raw"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let raw = browser.wait("pre[data-raw]", WAIT).await;
        assert_eq!(raw.text().await.unwrap(), body, "Raw shows the exact bytes");
        browser.screenshot("payload-raw").await;

        // The dialog's URL reloads to the dialog.
        browser.client.refresh().await.unwrap();
        browser.wait_text("dialog[open]", "trace-7f3a", WAIT).await;
        browser
            .client
            .find(Locator::Css("dialog[open] button.close"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        // Options → Open run.
        browser
            .wait(&format!("{row} button.options"), WAIT)
            .await
            .click()
            .await
            .unwrap();
        browser
            .wait(&format!("{row} a.menu-run"), WAIT)
            .await
            .click()
            .await
            .unwrap();
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

#[test]
fn a_saved_flow_appears_live_and_a_broken_edit_shows_its_errors_while_the_last_good_serves() {
    let flows = FlowDir::empty();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    runtime().block_on(async {
        let browser = Browser::start("flows_live").await;
        browser.open(&format!("{}/flows", weir.admin)).await;
        browser.wait_text("main", "No flows yet", WAIT).await;
        browser.wait(r#"#live[data-state="live"]"#, WAIT).await;
        browser.screenshot("flows-empty").await;

        flows.write(
            "hello.toml",
            "name = \"Hello\"\ndescription = \"Says hello.\"\n\n[[steps]]\nid = \"greet\"\nplugin = \"transform\"\ninput = { hello = \"$.webhook.body.name\" }\n",
        );
        let saved = Instant::now();
        let card = r#".flow-card[data-flow-id="hello"]"#;
        browser.wait_text(card, "Hello", WAIT).await;
        let shown = browser
            .wait(&format!("{card} input.url"), WAIT)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default();
        eprintln!("the new flow showed after {:?}", saved.elapsed());
        let url = weir.webhook_url("hello");
        assert_eq!(shown, url, "its newly generated URL");
        browser.screenshot("flow-added").await;

        // Broken: an unknown plugin on line 6.
        flows.write(
            "hello.toml",
            "name = \"Hello\"\ndescription = \"Says hello.\"\n\n[[steps]]\nid = \"greet\"\nplugin = \"no-such-plugin\"\n",
        );
        let diagnostic = browser
            .wait_text(&format!("{card} .diagnostic"), "hello.toml:6:", WAIT)
            .await;
        let diagnostic = diagnostic.text().await.unwrap();
        assert!(diagnostic.contains("no-such-plugin"), "{diagnostic}");
        browser
            .wait_text(card, "the last good version keeps serving", WAIT)
            .await;
        browser.screenshot("flow-broken").await;
        // And it does serve.
        let answer = post_json(&url, &json!({"name": "Ada"}));
        assert_eq!(answer.status, 202);
        let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
        assert_eq!(run["run"]["status"], "succeeded");
        assert_eq!(run["steps"][0]["output"], json!({"hello": "Ada"}));

        // Its page: the URL unchanged, the errors, the source of the version serving.
        browser.open(&format!("{}/flows/hello", weir.admin)).await;
        browser.wait_text(".load-errors", "hello.toml:6:", WAIT).await;
        browser.wait_text("pre.source", "transform", WAIT).await;
        let on_page = browser
            .wait(".webhook-step input.url", WAIT)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default();
        assert_eq!(on_page, url);
        browser
            .wait_text(".webhook-step", "Ada", WAIT)
            .await;
        browser.screenshot("flow-page-broken").await;

        // Fixed: the new version shows live, same URL.
        flows.write(
            "hello.toml",
            "name = \"Hello again\"\n\n[[steps]]\nid = \"greet\"\nplugin = \"transform\"\n",
        );
        browser.wait_text("h1", "Hello again", WAIT).await;
        browser.wait_text(".page-head .badge", "ok", WAIT).await;
        assert_eq!(weir.webhook_url("hello"), url, "the URL survives edits");
        browser.screenshot("flow-page-fixed").await;
        browser.assert_only_origin(&weir.admin).await;
        browser.close().await;
    });
}

#[test]
fn with_an_admin_token_the_ui_asks_for_it_once_and_never_puts_it_in_a_url() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let token = "ui-test-admin-token-7d1e0c";
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-token", token],
    );
    runtime().block_on(async {
        let browser = Browser::start("admin_token").await;
        browser.open(&format!("{}/flows", weir.admin)).await;
        let input = browser.wait("form.signin input#token", WAIT).await;
        browser.screenshot("signin").await;
        input.send_keys("not-the-token-at-all").await.unwrap();
        browser
            .client
            .find(Locator::Css("form.signin button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .wait_text("#signin-error", "not accepted", WAIT)
            .await;
        browser.screenshot("signin-wrong").await;
        let input = browser.wait("form.signin input#token", WAIT).await;
        input.clear().await.unwrap();
        input.send_keys(token).await.unwrap();
        browser
            .client
            .find(Locator::Css("form.signin button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .wait_text(".flow-card", "GitHub issues to Slack", WAIT)
            .await;
        // The event stream authenticates the same way.
        browser.wait(r#"#live[data-state="live"]"#, WAIT).await;
        browser.screenshot("signed-in").await;
        // Kept for the session: a reload does not ask again.
        browser.client.refresh().await.unwrap();
        browser
            .wait_text(".flow-card", "GitHub issues to Slack", WAIT)
            .await;
        let urls = browser.requested_urls().await;
        assert!(
            urls.iter().all(|u| !u.contains(token)),
            "the token is in a URL: {urls:?}"
        );
        browser.assert_only_origin(&weir.admin).await;
        browser.close().await;
    });
}

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

/// The payload dialog shows a form post as a table of its fields (a repeated field once per
/// value) and a binary body as a hex preview, in Pretty and in Raw.
#[test]
fn the_payload_dialog_shows_form_fields_as_a_table_and_binary_as_hex() {
    let flows = FlowDir::empty();
    flows.write(
        "any.toml",
        "name = \"Anything\"\n\n[[steps]]\nid = \"echo\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let hook = weir.webhook_url("any");
    let form = post_with(
        &hook,
        "application/x-www-form-urlencoded",
        b"name=Ada+Lovelace&email=ada%40example.com&tag=math&tag=engines",
        &[],
    )
    .accepted_run_id();
    // A PNG's signature, then every byte value once.
    let mut binary = b"\x89PNG\r\n\x1a\n".to_vec();
    binary.extend(0..=255u8);
    let bin = post_with(&hook, "application/octet-stream", &binary, &[]).accepted_run_id();
    weir.wait_run(&form);
    weir.wait_run(&bin);
    runtime().block_on(async {
        let browser = Browser::start("payload_form_and_hex").await;
        browser
            .open(&format!("{}/runs/{form}/payload", weir.admin))
            .await;
        let table = browser
            .wait_text("dialog[open] .body-view table.kv", "Ada Lovelace", WAIT)
            .await;
        let rows = browser
            .eval(
                "return [...document.querySelectorAll('dialog[open] .body-view table.kv tbody tr')]
                    .map((tr) => [tr.querySelector('th').textContent, tr.querySelector('td').textContent]);",
            )
            .await;
        assert_eq!(
            rows,
            // By name (the body is a JSON object), a repeated field once per value, in order.
            json!([
                ["email", "ada@example.com"],
                ["name", "Ada Lovelace"],
                ["tag", "math"],
                ["tag", "engines"]
            ]),
            "{}",
            table.text().await.unwrap()
        );
        browser.screenshot("payload-form").await;
        browser
            .client
            .find(Locator::Css("#tab-raw"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let raw = browser.wait("pre[data-raw]", WAIT).await;
        assert_eq!(
            raw.text().await.unwrap(),
            "name=Ada+Lovelace&email=ada%40example.com&tag=math&tag=engines"
        );

        browser
            .open(&format!("{}/runs/{bin}/payload", weir.admin))
            .await;
        let hex = browser
            .wait_text("dialog[open] .body-view pre.hex", "00000000", WAIT)
            .await
            .text()
            .await
            .unwrap();
        let lines: Vec<&str> = hex.lines().collect();
        assert_eq!(
            lines[0],
            "00000000  89 50 4e 47 0d 0a 1a 0a 00 01 02 03 04 05 06 07  .PNG............",
            "{hex}"
        );
        // 264 bytes: 16 full lines and 8 bytes, the last of them 0xf8..=0xff.
        assert_eq!(lines.len(), 17, "{hex}");
        assert!(
            lines[16].starts_with("00000100  f8 f9 fa fb fc fd fe ff"),
            "{hex}"
        );
        assert!(
            lines[3].starts_with("00000030  28 29") && lines[3].ends_with("  ()*+,-./01234567"),
            "printable bytes as text: {hex}"
        );
        browser
            .wait_text("dialog[open]", "application/octet-stream", WAIT)
            .await;
        browser.screenshot("payload-hex").await;
        browser
            .client
            .find(Locator::Css("#tab-raw"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .wait_text("dialog[open] .body-view", "Not UTF-8 text", WAIT)
            .await;
        let raw = browser.wait("pre.hex[data-raw]", WAIT).await;
        assert!(
            raw.text().await.unwrap().starts_with("00000000  89 50 4e 47"),
            "Raw shows the same bytes in hex"
        );
        browser.screenshot("payload-hex-raw").await;
        browser.assert_only_origin(&weir.admin).await;
        browser.close().await;
    });
}

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
            .client
            .find(Locator::Css(
                r#".flow-card[data-flow-id="guarded"] .refused a"#,
            ))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
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
        browser
            .client
            .find(Locator::Css(".replays a"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
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
