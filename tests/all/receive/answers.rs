//! The answers senders want: static, and mapped from the run.

use weir_tests::{FlowDir, Weir, send};

use super::ECHO_STEP;

/// `answer`: a static answer for senders that insist on one, and with `respond = "result"` an
/// answer mapped from the run (a redirect, a Slack reply).
#[test]
fn static_and_mapped_answers() {
    let flows = FlowDir::empty();
    flows.write(
        "empty200.toml",
        &format!("name = \"a\"\n[webhook]\nanswer = {{ status = 200 }}\n{ECHO_STEP}"),
    );
    flows.write(
        "text.toml",
        &format!(
            "name = \"b\"\n[webhook]\nanswer = {{ status = 201, headers = {{ \"x-partner\" = \"acme\" }}, body = \"OK\" }}\n{ECHO_STEP}"
        ),
    );
    flows.write(
        "redirect.toml",
        r#"name = "form"
[webhook]
respond = "result"
answer = { status = "$.steps.reply.output.status", headers = { location = "$.steps.reply.output.to" }, body = "$.steps.reply.output.text" }

[[steps]]
id = "reply"
plugin = "transform"
input = { status = 303, to = "http://127.0.0.1:9/thanks?name=x", text = "$.webhook.body.name" }
"#,
    );
    flows.write(
        "json.toml",
        r#"name = "slash"
[webhook]
respond = "result"
answer = { body = { response_type = "ephemeral", text = "$.steps.reply.output" } }

[[steps]]
id = "reply"
plugin = "transform"
input = "$.webhook.body.text"
"#,
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let post = |flow: &str, body: &[u8]| {
        send("POST", &weir.webhook_url(flow), "application/json", body).unwrap()
    };
    let empty = post("empty200", b"{}");
    assert_eq!(empty.status, 200);
    assert!(empty.body.is_empty(), "{:?}", empty.body);
    let run = empty.header("x-weir-run-id").unwrap().to_owned();
    assert_eq!(weir.wait_run(&run)["run"]["status"], "succeeded");

    let text = post("text", b"{}");
    assert_eq!(text.status, 201);
    assert_eq!(text.body, b"OK");
    assert_eq!(text.header("x-partner"), Some("acme"));
    assert!(
        text.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );

    let redirect = post("redirect", br#"{"name":"Ada"}"#);
    assert_eq!(
        redirect.status,
        303,
        "{}",
        String::from_utf8_lossy(&redirect.body)
    );
    assert_eq!(
        redirect.header("location"),
        Some("http://127.0.0.1:9/thanks?name=x")
    );
    assert_eq!(redirect.body, b"Ada");

    let slash = post("json", br#"{"text":"hello"}"#);
    assert_eq!(slash.status, 200);
    assert_eq!(
        slash.json(),
        serde_json::json!({"response_type": "ephemeral", "text": "hello"})
    );
}
