//! The flow author's command line: `weir validate` for CI and `weir run` to try a flow on a
//! payload without a server.

use weir_tests::{FlowDir, Weir, repo_root, weir_command};

#[test]
fn validate_passes_the_bundled_flows() {
    let out = weir_command()
        .arg("validate")
        .arg(repo_root().join("flows"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("ok: ").count(), 3, "{stdout}");
}

#[test]
fn validate_reports_every_error_with_file_line_and_column_and_exits_1() {
    let flows = FlowDir::empty();
    flows.write("good.toml", "name = \"good\"\n");
    flows.write(
        "bad.toml",
        "name = \"bad\"\ncolour = \"red\"\n[[steps]]\nid = \"a\"\nplugin = \"nope\"\ninput = \"$.webhook[\"\n",
    );
    let out = weir_command()
        .arg("validate")
        .arg(flows.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let bad = flows.path().join("bad.toml").display().to_string();
    assert!(
        stderr.contains(&format!("{bad}:2:1")),
        "unknown key at 2:1: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{bad}:5:")),
        "unknown plugin on line 5: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{bad}:6:")),
        "bad JSONPath on line 6: {stderr}"
    );
    assert!(stderr.contains("1 of 2 flow files have errors"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: "));
}

#[test]
fn validate_compiles_the_wasm_files_flows_name() {
    let flows = FlowDir::empty();
    std::fs::write(flows.path().join("broken.wasm"), b"not a component").unwrap();
    flows.write(
        "uses-broken.toml",
        "name = \"b\"\n[[steps]]\nid = 'shape'\n  plugin = \"./broken.wasm\"\n",
    );
    flows.write(
        "builtin.toml",
        "name = \"ok\"\n[[steps]]\nid = \"shape\"\nplugin = \"transform\"\n",
    );
    let out = weir_command()
        .arg("validate")
        .arg(flows.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let broken = flows.path().join("uses-broken.toml").display().to_string();
    assert!(
        stderr.contains(&format!("{broken}:4:12: error: in step 'shape'")),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 2 flow files have errors"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("builtin.toml"), "{stdout}");
}

#[test]
fn run_executes_a_flow_locally_and_prints_each_step() {
    let work = tempfile::tempdir().unwrap();
    let payload = work.path().join("issue.json");
    std::fs::write(
        &payload,
        r#"{"action":"opened","issue":{"number":7,"title":"Typo","html_url":"https://x/7","user":{"login":"ada"}}}"#,
    )
    .unwrap();
    let out = weir_command()
        .arg("run")
        .arg(repo_root().join("flows/github-issues.toml"))
        .arg("--payload")
        .arg(&payload)
        .args(["--header", "X-GitHub-Event: issues"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["step"], "slack");
    assert_eq!(
        lines[2]["output"]["text"],
        "New issue #7: Typo by ada (https://x/7)"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("run succeeded"));
}

#[test]
fn run_exits_1_when_a_step_fails() {
    let flows = FlowDir::empty();
    flows.write("f.toml", "name = \"f\"\n[[steps]]\nid = \"t\"\nplugin = \"transform\"\ninput = \"$.webhook.body.missing\"\n");
    let payload = flows.path().join("p.json");
    std::fs::write(&payload, "{}").unwrap();
    let out = weir_command()
        .arg("run")
        .arg(flows.path().join("f.toml"))
        .arg("--payload")
        .arg(&payload)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("$.webhook.body.missing"));
}

/// `weir run` applies the flow's `verify` as the gateway would, and shows the dedupe key.
#[test]
fn run_checks_the_signature_and_shows_the_dedupe_key() {
    let flows = FlowDir::empty();
    flows.write(
        "f.toml",
        "name = \"f\"\n[webhook]\ndedupe = \"$.webhook.body.id\"\n\
         verify = { scheme = \"token\", token = \"${RUN_TOKEN}\", header = \"x-token\" }\n\
         [[steps]]\nid = \"t\"\nplugin = \"transform\"\ninput = \"$.webhook.body.id\"\n",
    );
    let payload = flows.path().join("p.json");
    std::fs::write(&payload, r#"{"id":"evt_9"}"#).unwrap();
    let run = |token: &str| {
        weir_command()
            .arg("run")
            .arg(flows.path().join("f.toml"))
            .arg("--payload")
            .arg(&payload)
            .args(["--header", &format!("X-Token: {token}")])
            .env("RUN_TOKEN", "t0ken")
            .output()
            .unwrap()
    };
    let good = run("t0ken");
    let stderr = String::from_utf8_lossy(&good.stderr);
    assert!(good.status.success(), "{stderr}");
    assert!(
        stderr.contains("verify: the token check passes"),
        "{stderr}"
    );
    assert!(stderr.contains("dedupe key: evt_9"), "{stderr}");

    let bad = run("guess");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "would be refused with 401: it fails its token check: the credentials do not match"
        ),
        "{stderr}"
    );
    assert!(bad.stdout.is_empty(), "no step ran");
}

#[test]
fn log_format_json_writes_one_json_object_per_log_line() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--log-format", "json"],
    );
    // Startup logs at least one line (the flows it loaded) before it prints its addresses.
    let logs = weir_tests::wait_for(std::time::Duration::from_secs(10), "a log line", || {
        let logs = weir.logs();
        (!logs.trim().is_empty()).then_some(logs)
    });
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(event["level"].is_string(), "{line}");
        assert!(event["fields"]["message"].is_string(), "{line}");
        assert!(event["timestamp"].is_string(), "{line}");
    }

    let out = weir_command()
        .args(["validate", "--log-format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad format is a usage error");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("possible values: text, json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `weir check` on a store: clean, then with a record's bytes flipped on disk, then missing.
#[test]
fn check_reports_each_damaged_record_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("weir.redb");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = |marker: &str| weir::store::NewRun {
        flow_id: "f".into(),
        flow_version: "v1".into(),
        request: weir::store::RawRequest {
            method: "POST".into(),
            path: "/hooks/f/t".into(),
            query: String::new(),
            headers: vec![("x-marker".into(), marker.into())],
            body: b"{}".to_vec(),
            remote_addr: None,
            received_at: std::time::SystemTime::now(),
        },
        dedupe_key: None,
        dedupe_window: None,
    };
    let bad = runtime.block_on(async {
        let store = weir::store::Store::open(&data).unwrap();
        store.accept(request("fine-one")).await.unwrap();
        let bad = store.accept(request("flip-these-bytes")).await.unwrap().id;
        store.accept(request("fine-two")).await.unwrap();
        bad
    });
    let check = || weir_check(&data);
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("3 runs") && stdout.contains("0 damaged"),
        "{stdout}"
    );

    let flipped = weir_tests::flip_marker(&data, b"flip-these-bytes");
    assert!(flipped > 0, "the record is not in the file");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("damaged: run {bad}:")), "{stdout}");

    let out = weir_command()
        .args(["check", "--data"])
        .arg(dir.path().join("missing.redb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the store"));
}

/// `weir check` also reads what the gateway keeps beside runs: a damaged refusal is reported
/// by flow and slot, and the runs stay clean.
#[test]
fn check_reports_a_damaged_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("weir.redb");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refusal = |message: &str| weir::store::NewRejection {
        flow_id: "f".into(),
        at: std::time::SystemTime::now(),
        reason: "verify",
        status: 401,
        message: message.into(),
        remote_addr: Some("127.0.0.1:5000".into()),
        method: "POST".into(),
        path: "/hooks/f/[redacted]".into(),
        query: String::new(),
        headers: vec![("x-marker".into(), "kept".into())],
        body: Some(b"{}".to_vec()),
        body_size: Some(2),
    };
    runtime.block_on(async {
        let store = weir::store::Store::open(&data).unwrap();
        store
            .record_rejections(vec![refusal("fine"), refusal("flip-these-bytes")])
            .await
            .unwrap();
    });
    let check = || weir_check(&data);
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");

    let flipped = weir_tests::flip_marker(&data, b"flip-these-bytes");
    assert!(flipped > 0, "the refusal is not in the file");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("rejection slot 1 of flow f"), "{stdout}");
}

/// `weir check --data FILE`, its output.
fn weir_check(data: &std::path::Path) -> std::process::Output {
    weir_command()
        .args(["check", "--data"])
        .arg(data)
        .output()
        .unwrap()
}
