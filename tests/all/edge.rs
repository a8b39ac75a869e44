//! The HTTP edge against a hostile world (issue 20): timeouts, connection caps, shutdown,
//! admin tokens and Hosts, what is stored of a request, and what an error answer says. Each
//! test talks to a real `weir serve` over loopback, raw sockets where a client library would
//! be too polite.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use weir_tests::{FlowDir, Weir, get_with, post_with, wait_for, weir_command};

/// A flow whose one step outputs the webhook document: what steps see.
const ECHO: &str = r#"
name = "Echo"

[[steps]]
id = "echo"
plugin = "transform"
input = "$.webhook"
"#;

fn echo_flows() -> FlowDir {
    let flows = FlowDir::empty();
    flows.write("echo.toml", ECHO);
    flows
}

/// `host:port` of a `http://host:port…` URL.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn connect(url: &str) -> TcpStream {
    let stream = TcpStream::connect(authority(url)).expect("connect to weir");
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    stream
}

/// Whether the server has closed `stream`: reads (and drops) what it sent; true on end of
/// stream or a reset.
fn is_closed(mut stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Everything the server sends on `stream` until it closes it, or until `within`.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let started = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (all, true),
        }
    }
    (all, false)
}

/// A GET of `path` with `Host: host` and more headers, over a fresh connection: the status
/// and the body.
fn raw_get(url: &str, path: &str, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = connect(url);
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10));
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_request_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--header-timeout", "1s"],
    );
    let url = weir.webhook_url("echo");
    let mut stream = connect(&url);
    let head = format!("POST {url} HTTP/1.1\r\nHost: x\r\n");
    let started = Instant::now();
    let mut bytes = head.bytes().chain(std::iter::repeat(b'a'));
    let closed = loop {
        if started.elapsed() > Duration::from_secs(6) {
            break false;
        }
        let byte = [bytes.next().unwrap_or(b'a')];
        if stream.write_all(&byte).is_err() || is_closed(&stream) {
            break true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(closed, "a trickled head still open after 6 s");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_silent_connection_and_an_idle_keep_alive_close_at_the_idle_timeout() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--idle-timeout", "1s"],
    );
    for listener in [&weir.webhook, &weir.admin] {
        let mut silent = connect(listener);
        let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5));
        assert!(closed, "a silent connection to {listener} stayed open 5 s");
    }
    // Keep-alive: after an answer, the connection waits at most the idle timeout.
    let mut kept = connect(&weir.admin);
    kept.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(closed, "an idle keep-alive connection stayed open 5 s");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[test]
fn a_body_that_does_not_arrive_is_408_at_the_body_deadline() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--body-timeout", "1s"],
    );
    let url = weir.webhook_url("echo");
    let mut stream = connect(&url);
    write!(
        stream,
        "POST {url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"half\": "
    )
    .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(5));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed, "the connection stayed open after the 408");
    assert_eq!(weir.count_runs(), 0);
}

#[test]
fn a_full_webhook_listener_makes_room_for_a_new_sender_and_the_admin_has_its_own_budget() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--max-connections", "16", "--admin-max-connections", "4"],
    );
    let url = weir.webhook_url("echo");
    let idle: Vec<TcpStream> = (0..48).map(|_| connect(&weir.webhook)).collect();
    // A sender with a request to make is served at once: the longest-idle connections give
    // way, and the listener never holds more than its cap.
    let started = Instant::now();
    let answer = post_with(&url, "application/json", b"{}", &[]);
    assert_eq!(answer.status, 202);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let closed = wait_for(Duration::from_secs(5), "idle connections closed", || {
        let closed = idle.iter().filter(|s| is_closed(s)).count();
        (closed >= 48 - 16).then_some(closed)
    });
    assert!(closed <= 48, "{closed}");
    // The admin listener's budget is its own.
    let health = get_with(&format!("{}/api/health", weir.admin), &[]);
    assert_eq!(health.status, 200);
}

#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_limit() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_limited(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[],
        Some((512, 2048)),
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", weir.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["2048", "2048"], "{line}");
}

#[test]
fn sigterm_closes_a_half_sent_request_when_the_grace_period_ends() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--shutdown-grace", "1s"],
    );
    let url = weir.webhook_url("echo");
    let mut half = connect(&url);
    write!(
        half,
        "POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{"
    )
    .unwrap();
    let mut trickle = connect(&url);
    trickle.write_all(b"POST /hooks/echo/").unwrap();
    // Connections are accepted in order: once a later webhook is answered, both are in.
    let answer = post_with(&url, "application/json", b"{}", &[]);
    assert_eq!(answer.status, 202);
    let stopped = weir.stop_within(Duration::from_secs(8));
    let (status, took) = stopped.expect("weir did not exit within 8 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} with a 1 s grace"
    );
    assert!(is_closed(&half));
}

#[test]
fn serve_help_lists_the_connection_limits() {
    let output = weir_command().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--max-connections",
        "--admin-max-connections",
        "--header-timeout",
        "--idle-timeout",
        "--body-timeout",
        "--max-head",
        "--admin-host",
        "WEIR_IDLE_TIMEOUT",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn an_empty_or_short_admin_token_is_refused_at_start() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("weir.redb");
    let serve = |args: &[&str], env: Option<&str>| {
        let mut command = weir_command();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--flows"])
            .arg(flows.path())
            .arg("--data")
            .arg(&db)
            .args(args)
            .env_remove("WEIR_ADMIN_TOKEN");
        if let Some(value) = env {
            command.env("WEIR_ADMIN_TOKEN", value);
        }
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                // It started anyway: stop it before failing.
                let _ = child.kill();
                let _ = child.wait();
                panic!("weir started with {args:?} {env:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    };
    for (args, env) in [
        (
            &["--admin-listen", "127.0.0.1:0", "--admin-token", ""][..],
            None,
        ),
        (&["--admin-listen", "127.0.0.1:0"][..], Some("")),
        (
            &["--admin-listen", "0.0.0.0:0", "--admin-token", ""][..],
            None,
        ),
        (
            &[
                "--admin-listen",
                "127.0.0.1:0",
                "--admin-token",
                "short-token",
            ][..],
            None,
        ),
    ] {
        let (status, stderr) = serve(args, env);
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains("admin token"), "{stderr}");
        assert!(stderr.contains("at least 16"), "{stderr}");
        assert!(
            !stderr.contains("short-token"),
            "the token was printed: {stderr}"
        );
    }
}

#[test]
fn with_a_token_a_request_without_authorization_is_401() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let token = "a-long-enough-admin-token";
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-token", token],
    );
    let url = format!("{}/api/flows", weir.admin);
    assert_eq!(get_with(&url, &[]).status, 401);
    assert_eq!(get_with(&url, &[("authorization", "Bearer ")]).status, 401);
    let bearer = format!("Bearer {token}");
    assert_eq!(get_with(&url, &[("authorization", &bearer)]).status, 200);
    // With a token, the Host is not checked.
    let (status, _) = raw_get(
        &weir.admin,
        "/api/flows",
        "weir.example.com",
        &[("authorization", &bearer)],
    );
    assert_eq!(status, 200);
}

#[test]
fn without_a_token_the_admin_api_answers_only_loopback_hosts_and_admin_hosts() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-host", "weir.internal"],
    );
    let port = authority(&weir.admin)
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .unwrap();
    for host in [
        "evil.example",
        "evil.example:8081",
        "10.0.0.1",
        "127.0.0.1.evil.example",
    ] {
        let (status, body) = raw_get(&weir.admin, "/api/flows", host, &[]);
        assert_eq!(status, 421, "Host {host}: {body}");
        assert!(body.contains("--admin-host"), "{body}");
        assert!(!body.contains("/hooks/"), "{body}");
    }
    for host in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        "127.1.2.3".to_owned(),
        format!("[::1]:{port}"),
        "WEIR.internal:9000".to_owned(),
    ] {
        let (status, body) = raw_get(&weir.admin, "/api/flows", &host, &[]);
        assert_eq!(status, 200, "Host {host}: {body}");
    }
}

#[test]
fn a_raw_payload_is_an_attachment_in_a_sandbox_and_every_admin_answer_is_nosniff() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let script = b"<script>fetch('/api/flows').then(r=>r.json()).then(d=>document.title=d.flows[0].webhook_url)</script>";
    let answer = post_with(&weir.webhook_url("echo"), "text/html", script, &[]);
    assert_eq!(answer.status, 202);
    let run_id = answer.json()["run_id"].as_str().unwrap().to_owned();
    let raw = weir.api(&format!("/api/runs/{run_id}/payload?raw=true"));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, script);
    let disposition = raw.header("content-disposition").unwrap_or_default();
    assert!(disposition.starts_with("attachment"), "{disposition:?}");
    assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
    let csp = raw.header("content-security-policy").unwrap_or_default();
    assert!(csp.split(';').any(|d| d.trim() == "sandbox"), "{csp:?}");
    for path in [
        "/api/flows".to_owned(),
        "/api/health".to_owned(),
        format!("/api/runs/{run_id}"),
        "/api/nothing-here".to_owned(),
        "/api/runs/not-a-run".to_owned(),
    ] {
        let answer = weir.api(&path);
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[test]
fn the_url_token_and_the_flows_own_credential_are_not_stored() {
    let flows = echo_flows();
    let secret = "query-secret-0123456789";
    let bearer = "bearer-secret-0123456789";
    flows.write(
        "by-query.toml",
        &format!(
            "{ECHO}\n[webhook]\nverify = {{ scheme = \"token\", token = \"{secret}\", query = \"key\" }}\n"
        ),
    );
    flows.write(
        "by-bearer.toml",
        &format!("{ECHO}\n[webhook]\nverify = {{ scheme = \"token\", token = \"{bearer}\" }}\n"),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let by_query = weir.webhook_url("by-query");
    let by_bearer = weir.webhook_url("by-bearer");
    let url_token = |url: &str| url.rsplit('/').next().unwrap().to_owned();

    let answer = post_with(
        &format!("{by_query}?a=1&key={secret}&b=2"),
        "application/json",
        b"{}",
        &[("x-other", "kept as sent")],
    );
    assert_eq!(answer.status, 202);
    let first = answer.json()["run_id"].as_str().unwrap().to_owned();
    let answer = post_with(
        &by_bearer,
        "application/json",
        b"{}",
        &[("authorization", &format!("Bearer {bearer}"))],
    );
    assert_eq!(answer.status, 202);
    let second = answer.json()["run_id"].as_str().unwrap().to_owned();

    for (run_id, url) in [(&first, &by_query), (&second, &by_bearer)] {
        let run = weir.wait_run(run_id);
        let payload = weir.api(&format!("/api/runs/{run_id}/payload")).json();
        let stored = format!("{run}{payload}");
        for secret in [secret, bearer, &url_token(url)] {
            assert!(!stored.contains(secret), "{secret} is stored: {stored}");
        }
        // What the step saw is what is stored.
        let seen = &run["steps"][0]["output"];
        assert!(
            seen["path"].as_str().unwrap().ends_with("/[redacted]"),
            "{seen}"
        );
    }
    let payload = weir.api(&format!("/api/runs/{first}/payload")).json();
    assert_eq!(
        payload["query"],
        json!({"a": "1", "key": "[redacted]", "b": "2"})
    );
    assert_eq!(payload["headers"]["x-other"], "kept as sent");
    let payload = weir.api(&format!("/api/runs/{second}/payload")).json();
    assert_eq!(payload["headers"]["authorization"], "Bearer [redacted]");
    // The log names the flows' URLs without their tokens.
    let logs = weir.logs();
    assert!(logs.contains("flow ready"), "{logs}");
    for url in [&by_query, &by_bearer] {
        assert!(
            !logs.contains(&url_token(url)),
            "the log shows a URL token: {logs}"
        );
    }
}

#[test]
fn a_request_head_over_max_head_is_431_and_stores_nothing() {
    let flows = echo_flows();
    flows.write(
        "small.toml",
        &format!("{ECHO}\n[webhook]\nmax_body = \"100 B\"\nmax_head = \"1 KiB\"\n"),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let small = weir.webhook_url("small");
    let kib2 = "h".repeat(2048);
    let answer = post_with(&small, "application/json", b"{}", &[("x-big", &kib2)]);
    assert_eq!(answer.status, 431);
    let answer = post_with(&format!("{small}?q={kib2}"), "application/json", b"{}", &[]);
    assert_eq!(answer.status, 431);
    // The server-wide cap (64 KiB by default) holds for every flow.
    let kib100 = "h".repeat(100 << 10);
    let echo = weir.webhook_url("echo");
    let big = weir_tests::send("POST", &echo, "application/json", b"{}");
    assert_eq!(big.unwrap().status, 202);
    let mut stream = connect(&echo);
    write!(
        stream,
        "POST {echo} HTTP/1.1\r\nHost: x\r\nX-Big: {kib100}\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(weir.count_runs(), 1);
    assert_eq!(weir.flow("small")["max_head"], 1024);
}

#[test]
fn a_run_id_that_is_not_canonical_is_400() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let answer = post_with(&weir.webhook_url("echo"), "application/json", b"{}", &[]);
    let run_id = answer.json()["run_id"].as_str().unwrap().to_owned();
    weir.wait_run(&run_id);
    let overflowing = format!("8{}", &run_id[1..]);
    for id in [overflowing, run_id.to_lowercase()] {
        for path in [format!("/api/runs/{id}"), format!("/api/runs/{id}/payload")] {
            assert_eq!(weir.api(&path).status, 400, "{path}");
        }
    }
    assert_eq!(weir.api(&format!("/api/runs/{run_id}")).status, 200);
}

#[test]
fn h2c_is_not_spoken_and_a_malformed_connection_is_no_error_in_the_log() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    for listener in [&weir.webhook, &weir.admin] {
        // HTTP/2 with prior knowledge: the preface, then an empty SETTINGS frame.
        let mut h2 = connect(listener);
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .unwrap();
        let (answer, _) = read_until_closed(&mut h2, Duration::from_secs(3));
        // An HTTP/2 server answers with its own SETTINGS frame (type 4 in the 4th byte).
        assert!(
            !(answer.len() >= 9 && answer[3] == 4),
            "{listener} speaks h2c: {answer:?}"
        );
        let mut garbage = connect(listener);
        garbage
            .write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
            .unwrap();
        let (answer, closed) = read_until_closed(&mut garbage, Duration::from_secs(3));
        assert!(closed);
        assert!(!String::from_utf8_lossy(&answer).contains("Rejection"));
    }
    // The server still answers, and logged nothing at ERROR for its clients' mistakes.
    assert_eq!(weir.api("/api/health").status, 200);
    let logs = weir.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
}

#[test]
fn a_rejection_answer_never_shows_internal_debug_text() {
    let flows = echo_flows();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    // A header that is not text fails warp's header filter.
    let mut stream = connect(&weir.admin);
    stream
        .write_all(b"GET /api/flows HTTP/1.1\r\nHost: localhost\r\nAuthorization: \xff\xfe\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    for internal in ["Rejection", "InvalidHeader", "MethodNotAllowed", "{ name"] {
        assert!(!answer.contains(internal), "{internal} in {answer}");
    }
    assert!(
        answer.contains("authorization header is not valid"),
        "{answer}"
    );
}
