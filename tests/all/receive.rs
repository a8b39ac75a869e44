//! Receiving what real senders send (issue 23): handshakes, default dedupe per scheme, secret
//! rotation, content types and encodings, answers the sender wants, who may send.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{KeyInit as _, Mac as _};
use weir_tests::{FlowDir, Weir, get, post_with, send};

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The headers Slack signs a body with.
fn slack_headers(secret: &str, body: &[u8]) -> [(String, String); 2] {
    let ts = now().to_string();
    let signature = hmac_hex(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]);
    [
        ("x-slack-request-timestamp".into(), ts),
        ("x-slack-signature".into(), format!("v0={signature}")),
    ]
}

const ECHO_STEP: &str = r#"
[[steps]]
id = "echo"
plugin = "transform"
input = "$.webhook.body"
"#;

/// Each handshake is answered with its challenge as `text/plain`, only where the flow enables
/// it, a wrong token is refused, and none of them starts a run.
#[test]
fn handshakes_are_answered_without_a_run() {
    let flows = FlowDir::empty();
    flows.write(
        "slack.toml",
        &format!(
            "name = \"Slack\"\n[webhook]\nverify = {{ scheme = \"slack\", secret = \"${{SLACK_SECRET}}\" }}\nslack_url_verification = true\n{ECHO_STEP}"
        ),
    );
    flows.write(
        "meta.toml",
        &format!(
            "name = \"Meta\"\n[webhook]\nmeta_verify_token = \"${{META_TOKEN}}\"\n{ECHO_STEP}"
        ),
    );
    flows.write(
        "graph.toml",
        &format!("name = \"Graph\"\n[webhook]\ngraph_validation = true\n{ECHO_STEP}"),
    );
    flows.write(
        "dropbox.toml",
        &format!("name = \"Dropbox\"\n[webhook]\necho_challenge = true\n{ECHO_STEP}"),
    );
    flows.write("plain.toml", &format!("name = \"Plain\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[
            ("SLACK_SECRET", SLACK_SECRET),
            ("META_TOKEN", "meta-verify-token-123"),
        ],
    );
    let text = |answer: &weir_tests::Answer| String::from_utf8_lossy(&answer.body).into_owned();
    let is_plain_text = |answer: &weir_tests::Answer| {
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{:?}",
            answer.headers
        );
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    };

    // Slack: signed url_verification echoes the challenge; unsigned is refused.
    let slack = weir.webhook_url("slack");
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let headers = slack_headers(SLACK_SECRET, body);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let answer = post_with(&slack, "application/json", body, &headers);
    assert_eq!(answer.status, 200, "{}", text(&answer));
    is_plain_text(&answer);
    assert_eq!(
        text(&answer),
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let forged = post_with(&slack, "application/json", body, &[]);
    assert_eq!(forged.status, 401, "{}", text(&forged));

    // Meta: the right token gets the challenge, a wrong one 403.
    let meta = weir.webhook_url("meta");
    let answer = get(&format!(
        "{meta}?hub.mode=subscribe&hub.verify_token=meta-verify-token-123&hub.challenge=1158201444"
    ));
    assert_eq!(answer.status, 200, "{}", text(&answer));
    is_plain_text(&answer);
    assert_eq!(text(&answer), "1158201444");
    let wrong = get(&format!(
        "{meta}?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1158201444"
    ));
    assert_eq!(wrong.status, 403, "{}", text(&wrong));
    assert!(!text(&wrong).contains("1158201444"));

    // Microsoft Graph: the validation token, URL-decoded, on a POST.
    let graph = weir.webhook_url("graph");
    let answer = send(
        "POST",
        &format!("{graph}?validationToken=Validation%3A%20Testing%20client%20application"),
        "text/plain",
        b"",
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{}", text(&answer));
    is_plain_text(&answer);
    assert_eq!(text(&answer), "Validation: Testing client application");

    // Dropbox: GET ?challenge= echoed.
    let dropbox = weir.webhook_url("dropbox");
    let answer = get(&format!("{dropbox}?challenge=abc123"));
    assert_eq!(answer.status, 200);
    is_plain_text(&answer);
    assert_eq!(text(&answer), "abc123");

    // A flow without the keys answers none of them: its GET is 405, its POST a run.
    let plain = weir.webhook_url("plain");
    assert_eq!(get(&format!("{plain}?challenge=abc123")).status, 405);
    assert_eq!(
        get(&format!(
            "{plain}?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"
        ))
        .status,
        405
    );
    assert_eq!(weir.count_runs(), 0, "handshakes start no run");
    let answer = send(
        "POST",
        &format!("{plain}?validationToken=abc"),
        "application/json",
        b"{}",
    )
    .unwrap();
    assert_eq!(answer.status, 202);
    // A Slack flow's ordinary event still runs.
    let event = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    let headers = slack_headers(SLACK_SECRET, event);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let answer = post_with(&slack, "application/json", event, &headers);
    assert_eq!(answer.status, 202, "{}", text(&answer));
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    assert_eq!(run["run"]["status"], "succeeded");
    assert_eq!(weir.count_runs(), 2);
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret.as_bytes(), &[body]))
}

/// A flow verified with `github` dedupes on `X-GitHub-Delivery` without saying so: 20
/// concurrent redeliveries make one run, the others are answered 200 with its id; with
/// `dedupe = false` each delivery runs.
#[test]
fn a_verify_scheme_brings_its_delivery_id_as_default_dedupe() {
    const SECRET: &str = "github-webhook-secret-0123456789";
    let flows = FlowDir::empty();
    for (id, extra) in [("deduped", ""), ("every", "dedupe = false\n")] {
        flows.write(
            &format!("{id}.toml"),
            &format!(
                "name = \"{id}\"\n[webhook]\nverify = {{ scheme = \"github\", secret = \"${{GH}}\" }}\n{extra}{ECHO_STEP}"
            ),
        );
    }
    flows.write(
        "stripe.toml",
        &format!(
            "name = \"stripe\"\n[webhook]\nverify = {{ scheme = \"stripe\", secret = \"${{GH}}\" }}\n{ECHO_STEP}"
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("GH", SECRET)],
    );
    let deduped = weir.flow("deduped");
    assert_eq!(deduped["dedupe"], "$.webhook.headers['x-github-delivery']");
    assert_eq!(deduped["dedupe_from"], "verify scheme github");
    assert_eq!(deduped["dedupe_window_ms"], 7 * 24 * 3600 * 1000_u64);
    assert_eq!(weir.flow("every")["dedupe"], serde_json::Value::Null);
    assert_eq!(weir.flow("stripe")["dedupe"], "$.webhook.body.id");

    let body = br#"{"action":"opened","number":1}"#;
    let signature = github_signature(SECRET, body);
    let deliver = |flow: &str| {
        let url = weir.webhook_url(flow);
        let signature = signature.clone();
        std::thread::spawn(move || {
            post_with(
                &url,
                "application/json",
                body,
                &[
                    ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                    ("x-hub-signature-256", &signature),
                ],
            )
        })
    };
    let answers: Vec<_> = (0..20)
        .map(|_| deliver("deduped"))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let accepted: Vec<_> = answers.iter().filter(|a| a.status == 202).collect();
    let redelivered: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(
        accepted.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(redelivered.len(), 19);
    let first = accepted[0].json()["run_id"].as_str().unwrap().to_owned();
    for answer in &redelivered {
        assert_eq!(answer.json()["run_id"], first.as_str());
        assert_eq!(answer.json()["duplicate"], true);
    }
    weir.wait_run(&first);
    let run = weir.api(&format!("/api/runs/{first}")).json();
    assert_eq!(run["redeliveries"], 19, "{run}");

    let every: Vec<_> = (0..2).map(|_| deliver("every").join().unwrap()).collect();
    assert!(
        every.iter().all(|a| a.status == 202),
        "{:?}",
        every.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_ne!(every[0].json()["run_id"], every[1].json()["run_id"]);

    // Stripe's event id is in the body.
    let url = weir.webhook_url("stripe");
    let event = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","type":"payment_intent.succeeded"}"#;
    let stripe_post = || {
        let t = now().to_string();
        let v1 = hmac_hex(SECRET.as_bytes(), &[t.as_bytes(), b".", event]);
        post_with(
            &url,
            "application/json",
            event,
            &[("stripe-signature", &format!("t={t},v1={v1}"))],
        )
    };
    assert_eq!(stripe_post().status, 202);
    assert_eq!(stripe_post().status, 200);
}

/// Bodies arrive as their senders encode them and reach the flow decoded; the stored payload
/// keeps the bytes as received.
#[test]
fn encoded_multipart_and_charset_bodies_reach_the_flow_decoded() {
    use std::io::Write as _;
    let flows = FlowDir::empty();
    flows.write("any.toml", &format!("name = \"any\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("any");
    let json_body = br#"{"event":"compressed","n":1}"#;

    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(json_body).unwrap();
        e.finish().unwrap()
    };
    let deflate = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(json_body).unwrap();
        e.finish().unwrap()
    };
    let br = {
        let mut out = Vec::new();
        let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        e.write_all(json_body).unwrap();
        drop(e);
        out
    };
    let zstd = ruzstd::encoding::compress_to_vec(
        &json_body[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    let run_of = |answer: weir_tests::Answer| {
        assert_eq!(
            answer.status,
            202,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let id = answer.json()["run_id"].as_str().unwrap().to_owned();
        let run = weir.wait_run(&id);
        assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
        (id, run)
    };
    for (coding, bytes) in [
        ("gzip", &gzip),
        ("deflate", &deflate),
        ("br", &br),
        ("zstd", &zstd),
    ] {
        let (id, run) = run_of(post_with(
            &url,
            "application/json",
            bytes,
            &[("content-encoding", coding)],
        ));
        assert_eq!(
            run["steps"][0]["output"],
            serde_json::json!({"event": "compressed", "n": 1}),
            "{coding}: {run:#}"
        );
        // The raw payload is the bytes as they came.
        let raw = weir.api(&format!("/api/runs/{id}/payload?raw=true"));
        assert_eq!(&raw.body, bytes, "{coding}");
    }
    assert_eq!(
        post_with(
            &url,
            "application/json",
            &gzip,
            &[("content-encoding", "compress")]
        )
        .status,
        415
    );
    assert_eq!(
        post_with(
            &url,
            "application/json",
            b"not gzip",
            &[("content-encoding", "gzip")]
        )
        .status,
        400
    );

    // Text in its charset; JSON with a byte order mark.
    let (_, run) = run_of(post_with(
        &url,
        "text/plain; charset=ISO-8859-1",
        b"Gr\xfc\xdfe aus K\xf6ln",
        &[],
    ));
    assert_eq!(run["steps"][0]["output"], "Grüße aus Köln");
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("日本語 ok".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let (_, run) = run_of(post_with(&url, "text/plain; charset=utf-16", &utf16, &[]));
    assert_eq!(run["steps"][0]["output"], "日本語 ok");
    let (_, run) = run_of(post_with(
        &url,
        "application/xml; charset=windows-1252",
        b"<note>\x80 5</note>",
        &[],
    ));
    assert_eq!(run["steps"][0]["output"], "<note>€ 5</note>");
    let (_, run) = run_of(post_with(
        &url,
        "application/json",
        b"\xEF\xBB\xBF{\"bom\":true}",
        &[],
    ));
    assert_eq!(run["steps"][0]["output"], serde_json::json!({"bom": true}));

    // A multipart form with fields and two files.
    let form = b"--b0undary\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nReport\r\n\
--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"b.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\
--b0undary--\r\n";
    let (_, run) = run_of(post_with(
        &url,
        "multipart/form-data; boundary=b0undary",
        form,
        &[],
    ));
    assert_eq!(
        run["steps"][0]["output"],
        serde_json::json!({
            "title": "Report",
            "files": [
                {"filename": "a.txt", "content_type": "text/plain", "size": 5, "base64": "aGVsbG8="},
                {"filename": "b.png", "content_type": "image/png", "size": 4, "base64": "iVBORw=="}
            ]
        })
    );
}

/// A gzip bomb (256 MiB of zeros, ~250 KiB compressed) is refused 413 with the server's memory
/// bounded, and nothing is stored.
#[test]
fn a_compression_bomb_is_refused_with_bounded_memory() {
    use std::io::Write as _;
    let flows = FlowDir::empty();
    flows.write("any.toml", &format!("name = \"any\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("any");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let answer = post_with(
        &url,
        "application/json",
        &bomb,
        &[("content-encoding", "gzip")],
    );
    assert_eq!(
        answer.status,
        413,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        String::from_utf8_lossy(&answer.body).contains("max_body"),
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let peak = weir_tests::peak_memory_of(weir.pid());
    assert!(
        peak > 0 && peak < 200 << 20,
        "peak resident memory: {peak} bytes"
    );
    assert_eq!(weir.count_runs(), 0);
}

/// `allow_ips` admits only its networks; forwarding headers count only from a
/// `--trusted-proxy`, and then name the sender that is checked and stored.
#[test]
fn allow_ips_with_and_without_a_trusted_proxy() {
    let flows = FlowDir::empty();
    flows.write(
        "local.toml",
        &format!(
            "name = \"local\"\n[webhook]\nallow_ips = [\"127.0.0.0/8\", \"::1\"]\n{ECHO_STEP}"
        ),
    );
    flows.write(
        "partner.toml",
        &format!("name = \"partner\"\n[webhook]\nallow_ips = [\"192.0.2.0/24\"]\n{ECHO_STEP}"),
    );
    let forwarded = |ip: &str| [("x-forwarded-for", ip.to_owned())];
    let post = |weir: &Weir, flow: &str, headers: &[(&str, String)]| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        post_with(&weir.webhook_url(flow), "application/json", b"{}", &headers)
    };

    let data = tempfile::tempdir().unwrap();
    let direct = Weir::start(flows.path(), &data.path().join("direct.redb"));
    assert_eq!(post(&direct, "local", &[]).status, 202);
    let refused = post(&direct, "partner", &[]);
    assert_eq!(refused.status, 403);
    assert!(
        String::from_utf8_lossy(&refused.body)
            .contains("127.0.0.1 is not among this flow's allow_ips"),
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    // A forged header from an untrusted peer changes nothing.
    assert_eq!(
        post(&direct, "partner", &forwarded("192.0.2.7")).status,
        403
    );

    let proxied = Weir::start_with(
        flows.path(),
        &data.path().join("proxied.redb"),
        &["--trusted-proxy", "127.0.0.1"],
    );
    let answer = post(&proxied, "partner", &forwarded("198.51.100.1, 192.0.2.7"));
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let id = answer.json()["run_id"].as_str().unwrap().to_owned();
    let payload = proxied.api(&format!("/api/runs/{id}/payload")).json();
    assert_eq!(payload["remote_addr"], "192.0.2.7");
    assert_eq!(
        post(&proxied, "local", &forwarded("198.51.100.1")).status,
        403
    );
    // Through the proxy without the header, the sender is unknown.
    assert_eq!(post(&proxied, "partner", &[]).status, 403);
    assert_eq!(direct.count_runs() + proxied.count_runs(), 2);
}

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

/// A 40-digit integer keeps its digits from the webhook through a step's output; JSON nested
/// past serde's limit reaches the flow as text, with `$.webhook.body_note` saying why.
#[test]
fn big_integers_keep_their_digits_and_unreadable_json_says_why() {
    const BIG: &str = "1234567890123456789012345678901234567890";
    let flows = FlowDir::empty();
    flows.write("echo.toml", &format!("name = \"echo\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("echo");

    let body = format!(r#"{{"id":{BIG},"ratio":0.1,"small":7}}"#);
    let answer = post_with(&url, "application/json", body.as_bytes(), &[]);
    assert_eq!(answer.status, 202);
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let output = &run["steps"][0]["output"];
    assert_eq!(output["id"].to_string(), BIG, "{output}");
    assert_eq!(output["ratio"].to_string(), "0.1");
    assert_eq!(output["small"], 7);
    assert_eq!(run["webhook"]["output"]["body"]["id"].to_string(), BIG);
    assert_eq!(
        run["webhook"]["output"]["body_note"],
        serde_json::Value::Null
    );

    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let answer = post_with(&url, "application/json", deep.as_bytes(), &[]);
    assert_eq!(answer.status, 202);
    let run = weir.wait_run(answer.json()["run_id"].as_str().unwrap());
    let webhook = &run["webhook"]["output"];
    assert_eq!(webhook["body"], deep.as_str());
    let note = webhook["body_note"].as_str().unwrap_or_default();
    assert!(note.contains("recursion limit"), "{webhook}");
}

/// Rotating a secret: with `secret = ["${NEW}", "${OLD}"]` a webhook signed with either passes,
/// and its run records which one matched by position (0 the new, 1 the old), never the
/// value; for every HMAC scheme, `token` and `basic`. A flow without `verify` records none.
#[test]
fn a_run_records_which_of_its_rotating_secrets_matched() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    const NEW: &str = "the-new-secret-of-32-bytes-long!";
    const OLD: &str = "the-old-secret-of-32-bytes-long!";
    let text = |answer: &weir_tests::Answer| String::from_utf8_lossy(&answer.body).into_owned();
    let new_key = STANDARD.encode(NEW);
    let old_key = STANDARD.encode(OLD);
    let flows = FlowDir::empty();
    let verify = [
        (
            "github",
            r#"scheme = "github", secret = ["${NEW}", "${OLD}"]"#,
        ),
        (
            "stripe",
            r#"scheme = "stripe", secret = ["${NEW}", "${OLD}"]"#,
        ),
        (
            "slack",
            r#"scheme = "slack", secret = ["${NEW}", "${OLD}"]"#,
        ),
        (
            "standard-webhooks",
            r#"scheme = "standard-webhooks", secret = ["whsec_${NEW_KEY}", "whsec_${OLD_KEY}"]"#,
        ),
        (
            "hmac",
            r#"scheme = "hmac", header = "X-Signature", encoding = "base64", algorithm = "sha512", secret = ["${NEW}", "${OLD}"]"#,
        ),
        ("token", r#"scheme = "token", token = ["${NEW}", "${OLD}"]"#),
        (
            "basic",
            r#"scheme = "basic", username = "sender", password = ["${NEW}", "${OLD}"]"#,
        ),
    ];
    for (id, verify) in verify {
        flows.write(
            &format!("{id}.toml"),
            &format!("name = \"{id}\"\n[webhook]\nverify = {{ {verify} }}\n{ECHO_STEP}"),
        );
    }
    flows.write("open.toml", &format!("name = \"open\"\n{ECHO_STEP}"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[
            ("NEW", NEW),
            ("OLD", OLD),
            ("NEW_KEY", &new_key),
            ("OLD_KEY", &old_key),
        ],
    );

    // The headers that sign `body` for `scheme` with `secret`.
    let sign = |scheme: &str, secret: &str, body: &[u8], n: usize| -> Vec<(String, String)> {
        let t = now().to_string();
        match scheme {
            "github" => vec![("x-hub-signature-256".into(), github_signature(secret, body))],
            "stripe" => {
                let v1 = hmac_hex(secret.as_bytes(), &[t.as_bytes(), b".", body]);
                vec![("stripe-signature".into(), format!("t={t},v1={v1}"))]
            }
            "slack" => slack_headers(secret, body).to_vec(),
            "standard-webhooks" => {
                let id = format!("msg_{n}");
                let mut mac =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                for part in [id.as_bytes(), b".", t.as_bytes(), b".", body] {
                    mac.update(part);
                }
                let signature = STANDARD.encode(mac.finalize().into_bytes());
                vec![
                    ("webhook-id".into(), id),
                    ("webhook-timestamp".into(), t),
                    ("webhook-signature".into(), format!("v1,{signature}")),
                ]
            }
            "hmac" => {
                let mut mac =
                    hmac::Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(body);
                vec![(
                    "x-signature".into(),
                    STANDARD.encode(mac.finalize().into_bytes()),
                )]
            }
            "token" => vec![("authorization".into(), format!("Bearer {secret}"))],
            "basic" => vec![(
                "authorization".into(),
                format!("Basic {}", STANDARD.encode(format!("sender:{secret}"))),
            )],
            other => unreachable!("{other}"),
        }
    };
    let mut n = 0;
    let mut deliver = |flow: &str, secret: Option<&str>| {
        n += 1;
        // A new event id each time, so no default dedupe takes one for a redelivery.
        let body = format!(r#"{{"id":"evt_{n}","event_id":"Ev{n}","n":{n}}}"#);
        let headers = secret.map_or_else(Vec::new, |secret| sign(flow, secret, body.as_bytes(), n));
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer = post_with(
            &weir.webhook_url(flow),
            "application/json",
            body.as_bytes(),
            &headers,
        );
        assert_eq!(answer.status, 202, "{flow}: {}", text(&answer));
        weir.wait_run(&answer.accepted_run_id())
    };
    for (scheme, _) in verify {
        for (secret, position) in [(OLD, 1), (NEW, 0)] {
            let run = deliver(scheme, Some(secret));
            assert_eq!(run["run"]["status"], "succeeded", "{scheme}: {run}");
            assert_eq!(
                run["run"]["verify"],
                serde_json::json!({ "scheme": scheme, "secret": position }),
                "{scheme} signed with secret {position}"
            );
            let shown = run["run"]["verify"].to_string();
            assert!(
                !shown.contains(secret) && !shown.contains(&STANDARD.encode(secret)),
                "{shown}"
            );
        }
        // A wrong secret is still refused.
        let body = br#"{"id":"forged"}"#;
        let forged = sign(scheme, "a-third-secret-nobody-was-given", body, 0);
        let forged: Vec<(&str, &str)> = forged
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer = post_with(&weir.webhook_url(scheme), "application/json", body, &forged);
        assert_eq!(answer.status, 401, "{scheme}: {}", text(&answer));
    }
    // The list shows it too; a flow without `verify` records none.
    let listed = weir.api("/api/runs?flow=basic&limit=1").json();
    assert_eq!(
        listed["runs"][0]["verify"],
        serde_json::json!({ "scheme": "basic", "secret": 0 })
    );
    let open = deliver("open", None);
    assert!(open["run"].get("verify").is_none(), "{open}");
}
