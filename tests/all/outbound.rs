//! Outbound HTTP through the real gateway: a flow's `http` step calls loopback servers this
//! test starts (never anything beyond loopback), and the run shows each call.

use serde_json::{Value, json};
use weir_tests::sink::{Reply, Sink};
use weir_tests::{FlowDir, Weir, post_json};

/// Starts Weir on one flow `flow.toml` with this text.
fn serve(flow: &str) -> (FlowDir, tempfile::TempDir, Weir) {
    serve_with(flow, &[])
}

fn serve_with(flow: &str, extra: &[&str]) -> (FlowDir, tempfile::TempDir, Weir) {
    let flows = FlowDir::empty();
    flows.write("flow.toml", flow);
    let data = tempfile::tempdir().expect("temp dir");
    let weir = Weir::start_with(flows.path(), &data.path().join("weir.redb"), extra);
    (flows, data, weir)
}

/// Sends `body` to the flow and waits for its run.
fn run_once(weir: &Weir, body: Value) -> Value {
    let answer = post_json(&weir.webhook_url("flow"), &body);
    assert_eq!(
        answer.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let run_id = answer.json()["run_id"]
        .as_str()
        .expect("a run id")
        .to_owned();
    weir.wait_run(&run_id)
}

/// The one step of a run.
fn step(run: &Value) -> &Value {
    &run["steps"][0]
}

#[test]
fn a_granted_call_reaches_the_sink_and_its_answer_is_in_the_run() {
    let sink = Sink::start(|_| Reply::json(201, &json!({"id": 7, "ok": true})));
    let (_flows, _data, weir) = serve(&format!(
        r#"name = "post"
[[steps]]
id = "post"
plugin = "http"
allow_hosts = ["http://127.0.0.1:{port}"]
input.body = "$.webhook.body"
config.url = "{url}"
config.headers = {{ x-team = "core" }}
config.query = {{ token = "s3cr3t-in-query" }}
"#,
        port = sink.port(),
        url = sink.url("/hook")
    ));
    let run = run_once(&weir, json!({"text": "hello"}));
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    let step = step(&run);
    assert_eq!(step["output"]["status"], 201);
    assert_eq!(step["output"]["body"], json!({"id": 7, "ok": true}));
    let call = &step["calls"][0];
    assert_eq!(call["method"], "POST");
    assert_eq!(
        call["url"],
        sink.url("/hook?token=%5Bredacted%5D").as_str(),
        "query values are not kept"
    );
    assert_eq!(call["status"], 201);
    assert_eq!(call["request_bytes"], 16);
    assert_eq!(call["response_bytes"], 18);

    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].target, "/hook?token=s3cr3t-in-query");
    assert_eq!(requests[0].header("x-team"), Some("core"));
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    assert_eq!(requests[0].json(), json!({"text": "hello"}));
}

#[test]
fn ungranted_hosts_and_loopback_forms_are_denied_and_never_connected() {
    let sink = Sink::start(|_| Reply::text(200, "should not be reached"));
    let port = sink.port();
    // A wildcard matches any host on the sink's port but unlocks no loopback address, and the
    // exact name `localhost` needs allow_private.
    let (_flows, _data, weir) = serve(&format!(
        r#"name = "steered"
[[steps]]
id = "post"
plugin = "http"
allow_hosts = ["http://*:{port}", "http://localhost:{port}"]
input.url = "$.webhook.body.url"
"#
    ));
    for (url, names) in [
        (
            format!("http://127.0.0.1:{port}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://[::1]:{port}/"),
            "[::1] is a loopback address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "[::ffff:127.0.0.1] is a loopback address",
        ),
        (
            format!("http://2130706433:{port}/"),
            "127.0.0.1 is a loopback address",
        ),
        (format!("http://localhost:{port}/"), "localhost resolves to"),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "169.254.169.254:80 is not granted",
        ),
        (
            format!("https://127.0.0.1:{port}/"),
            "https://127.0.0.1:{port} is not granted",
        ),
    ] {
        let run = run_once(&weir, json!({"url": url}));
        assert_eq!(run["run"]["status"], "failed", "{url}: {run:#}");
        let error = &step(&run)["error"];
        assert_eq!(error["kind"], "denied", "{url}: {run:#}");
        let names = names.replace("{port}", &port.to_string());
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(&names), "{url}: {message}");
        let call = &step(&run)["calls"][0];
        assert!(
            call["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("denied: "),
            "{url}: {call}"
        );
    }
    assert_eq!(sink.connections(), 0, "the sink saw a connection");
}

#[test]
fn a_literal_grant_reaches_loopback() {
    let sink = Sink::start(|_| Reply::text(200, "ok"));
    let (_flows, _data, weir) = serve(&format!(
        r#"name = "literal"
[[steps]]
id = "get"
plugin = "http"
allow_hosts = ["http://127.0.0.1:{port}"]
input.url = "$.webhook.body.url"
"#,
        port = sink.port()
    ));
    // The decimal form is the same address.
    let decimal = format!("http://2130706433:{}/x", sink.port());
    for url in [sink.url("/x"), decimal] {
        let run = run_once(&weir, json!({"url": url}));
        assert_eq!(run["run"]["status"], "succeeded", "{url}: {run:#}");
        assert_eq!(step(&run)["output"]["body"], "ok");
    }
    assert_eq!(sink.requests().len(), 2);
}

#[test]
fn a_redirect_is_not_followed() {
    let elsewhere = Sink::start(|_| Reply::text(200, "followed"));
    let location = elsewhere.url("/elsewhere");
    let sink = Sink::start(move |_| {
        Reply::Answer(302, vec![("location".into(), location.clone())], Vec::new())
    });
    let (_flows, _data, weir) = serve(&format!(
        r#"name = "redirected"
[[steps]]
id = "get"
plugin = "http"
allow_hosts = ["http://127.0.0.1:{port}"]
config.url = "{url}"
"#,
        port = sink.port(),
        url = sink.url("/start")
    ));
    let run = run_once(&weir, json!({}));
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    let error = &step(&run)["error"];
    assert_eq!(error["kind"], "upstream");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("unexpected status 302"),
        "{error}"
    );
    assert_eq!(step(&run)["calls"].as_array().unwrap().len(), 1);
    assert_eq!(elsewhere.connections(), 0);

    // A flow that accepts the 3xx gets it as output, Location and all.
    let (_flows, _data, weir) = serve(&format!(
        r#"name = "redirected"
[[steps]]
id = "get"
plugin = "http"
allow_hosts = ["http://127.0.0.1:{port}"]
config.url = "{url}"
config.expect = [302]
"#,
        port = sink.port(),
        url = sink.url("/start")
    ));
    let run = run_once(&weir, json!({}));
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(step(&run)["output"]["status"], 302);
    assert_eq!(
        step(&run)["output"]["headers"]["location"],
        elsewhere.url("/elsewhere").as_str()
    );
    assert_eq!(elsewhere.connections(), 0);
}

#[test]
fn a_server_that_never_answers_hits_the_timeout() {
    let sink = Sink::start(|_| Reply::Never);
    let (_flows, _data, weir) = serve(&format!(
        r#"name = "stuck"
[[steps]]
id = "get"
plugin = "http"
timeout = "2s"
allow_hosts = ["http://127.0.0.1:{port}"]
config.url = "{url}"
"#,
        port = sink.port(),
        url = sink.url("/")
    ));
    let run = run_once(&weir, json!({}));
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    let step = step(&run);
    assert_eq!(step["error"]["kind"], "upstream", "{run:#}");
    assert!(
        step["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeout"),
        "{step}"
    );
    assert!(
        step["calls"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("timeout: "),
        "{step}"
    );
    assert!(step["duration_us"].as_u64().unwrap() < 3_000_000, "{step}");
    assert_eq!(sink.connections(), 1);
}

#[test]
fn a_response_over_the_cap_is_cut() {
    let sink = Sink::start(|_| Reply::Endless(8 << 20));
    let (_flows, _data, weir) = serve(&format!(
        r#"name = "big"
[[steps]]
id = "get"
plugin = "http"
allow_hosts = ["http://127.0.0.1:{port}"]
max_response = "256 KiB"
config.url = "{url}"
"#,
        port = sink.port(),
        url = sink.url("/")
    ));
    let run = run_once(&weir, json!({}));
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    let step = step(&run);
    assert!(
        step["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large"),
        "{step}"
    );
    let call = &step["calls"][0];
    assert!(
        call["error"].as_str().unwrap().starts_with("too large: "),
        "{call}"
    );
    assert!(
        call["response_bytes"].as_u64().unwrap() <= 256 << 10,
        "{call}"
    );
}

#[test]
fn https_to_a_loopback_server_works_with_its_ca_and_fails_without() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("a test cert");
    let sink = Sink::start_tls(
        vec![certified.cert.der().to_vec()],
        certified.key_pair.serialize_der(),
        |_| Reply::json(200, &json!({"secure": true})),
    );
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), certified.cert.pem()).expect("write the CA");
    let flow = format!(
        r#"name = "tls"
[[steps]]
id = "get"
plugin = "http"
allow_hosts = ["https://127.0.0.1:{port}"]
config.url = "https://127.0.0.1:{port}/secure"
"#,
        port = sink.port()
    );
    let ca_path = ca.path().to_str().expect("a UTF-8 temp path");
    let (_flows, _data, weir) = serve_with(&flow, &["--extra-ca", ca_path]);
    let run = run_once(&weir, json!({}));
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(step(&run)["output"]["body"], json!({"secure": true}));
    assert_eq!(sink.requests().len(), 1);

    // Without the CA the certificate is not trusted: the call fails before any request.
    let (_flows, _data, weir) = serve(&flow);
    let run = run_once(&weir, json!({}));
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    let step = step(&run);
    assert_eq!(step["error"]["kind"], "upstream", "{step}");
    assert!(
        step["calls"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("TLS with 127.0.0.1 failed"),
        "{step}"
    );
    assert_eq!(sink.requests().len(), 1);
}
