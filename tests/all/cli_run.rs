//! `weir run` behaves as `weir serve` would for an outbound step: it trusts `--extra-ca` (or
//! `WEIR_EXTRA_CA`) for HTTPS to a private CA, and it retries a failing step by the step's
//! `retries` and `backoff`, printing each attempt's error. Every server is on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use weir_tests::sink::{Reply, Sink};
use weir_tests::{FlowDir, weir_command};

/// A flow of one `http` step calling `url` on loopback `port`, with `retry` keys.
fn calling(flows: &FlowDir, scheme: &str, port: u16, retry: &str) -> std::path::PathBuf {
    flows.write(
        "call.toml",
        &format!(
            "name = \"call\"\n[[steps]]\nid = \"call\"\nplugin = \"http\"\n\
             allow_hosts = [\"{scheme}://127.0.0.1:{port}\"]\n\
             config.url = \"{scheme}://127.0.0.1:{port}/up\"\n{retry}\n"
        ),
    );
    let payload = flows.path().join("p.json");
    std::fs::write(&payload, "{}").unwrap();
    flows.path().join("call.toml")
}

fn run(flows: &FlowDir, flow: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut command = weir_command();
    command
        .arg("run")
        .arg(flow)
        .arg("--payload")
        .arg(flows.path().join("p.json"))
        .args(args)
        .env_remove("WEIR_EXTRA_CA");
    command
}

#[test]
fn run_trusts_an_extra_ca_for_https_as_serve_does() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("a test cert");
    let sink = Sink::start_tls(
        vec![certified.cert.der().to_vec()],
        certified.key_pair.serialize_der(),
        |_| Reply::json(200, &json!({"secure": true})),
    );
    let flows = FlowDir::empty();
    let ca = flows.path().join("ca.pem");
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let flow = calling(&flows, "https", sink.port(), "");
    let ca = ca.to_str().expect("a UTF-8 temp path");

    let out = run(&flows, &flow, &["--extra-ca", ca]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(line["output"]["body"], json!({"secure": true}), "{stdout}");
    assert_eq!(sink.requests().len(), 1);

    // The environment variable does the same.
    let out = run(&flows, &flow, &[])
        .env("WEIR_EXTRA_CA", ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sink.requests().len(), 2);

    // Without it the certificate is not trusted: the step fails before any request.
    let out = run(&flows, &flow, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TlsCertificateError"), "{stderr}");
    assert_eq!(sink.requests().len(), 2);

    // A file that holds no certificate is a clear error, not a silent default.
    let out = run(&flows, &flow, &["--extra-ca", flow.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("outbound HTTPS"), "{stderr}");
    assert_eq!(sink.requests().len(), 2);
}

/// A loopback upstream that answers 503 to its first `failures` requests, then 200.
fn flaky(failures: usize) -> Sink {
    let seen = Arc::new(AtomicUsize::new(0));
    Sink::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < failures {
            Reply::text(503, "busy")
        } else {
            Reply::json(200, &json!({"ok": true}))
        }
    })
}

#[test]
fn run_retries_a_failing_step_as_serve_does_and_prints_each_attempt() {
    let sink = flaky(1);
    let flows = FlowDir::empty();
    let flow = calling(
        &flows,
        "http",
        sink.port(),
        "retries = 2\nbackoff = \"10ms\"",
    );
    let out = run(&flows, &flow, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(sink.requests().len(), 2, "{stderr}");
    assert!(stderr.contains("attempt 1 of 3"), "{stderr}");
    assert!(
        stderr.contains("503"),
        "the first attempt's error: {stderr}"
    );
    assert!(stderr.contains("retrying in "), "{stderr}");
    assert!(stderr.contains("run succeeded"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(line["output"]["body"], json!({"ok": true}), "{stdout}");

    // Out of attempts: the run fails after 1 + retries calls, as serve's would.
    let sink = flaky(usize::MAX);
    let flows = FlowDir::empty();
    let flow = calling(
        &flows,
        "http",
        sink.port(),
        "retries = 2\nbackoff = \"10ms\"",
    );
    let out = run(&flows, &flow, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(sink.requests().len(), 3, "{stderr}");
    assert!(stderr.contains("attempt 3 of 3"), "{stderr}");
    assert_eq!(stderr.matches("retrying in ").count(), 2, "{stderr}");

    // Without `retries`, one call.
    let sink = flaky(1);
    let flows = FlowDir::empty();
    let flow = calling(&flows, "http", sink.port(), "");
    let out = run(&flows, &flow, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(sink.requests().len(), 1);
}
