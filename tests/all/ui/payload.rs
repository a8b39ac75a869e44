//! The payload dialog's views of bodies that are not JSON.

use serde_json::json;
use weir_tests::browser::Browser;
use weir_tests::{FlowDir, Weir, post_with};

use super::{WAIT, runtime};

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
        browser.click("#tab-raw", WAIT).await;
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
        browser.click("#tab-raw", WAIT).await;
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
