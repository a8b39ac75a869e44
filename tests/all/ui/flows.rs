//! The Flows page and a flow's page: Copy URL, a flow file saved, broken and fixed while the
//! page is open.

use std::time::Instant;

use serde_json::json;
use weir_tests::browser::Browser;
use weir_tests::{FlowDir, Weir, post_json};

use super::{WAIT, runtime};

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
