//! The event stream the UI lives on (`GET /api/events`), over plain HTTP: its events, resume
//! from `Last-Event-ID` (only later events), `reset` when it cannot resume, the heartbeat of an
//! idle stream, and the admin token.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use weir_tests::{FlowDir, Weir, get, get_with, post_json};

const WAIT: Duration = Duration::from_secs(10);

/// Whether `lines` hold a whole `kind` event (its blank line read).
fn ended(lines: &[String], kind: &str) -> bool {
    let name = format!("event:{kind}");
    lines
        .iter()
        .position(|l| *l == name)
        .is_some_and(|at| lines[at..].iter().any(String::is_empty))
}

/// One server-sent event.
struct Block {
    event: String,
    id: String,
    data: serde_json::Value,
}

/// The events among `lines` (blank-line separated `field: value` blocks; comments skipped).
fn blocks(lines: &[String]) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current = Block {
        event: String::new(),
        id: String::new(),
        data: serde_json::Value::Null,
    };
    for line in lines {
        if line.is_empty() {
            if !current.event.is_empty() {
                out.push(std::mem::replace(
                    &mut current,
                    Block {
                        event: String::new(),
                        id: String::new(),
                        data: serde_json::Value::Null,
                    },
                ));
            }
        } else if let Some(v) = line.strip_prefix("event:") {
            current.event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("id:") {
            current.id = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            current.data = serde_json::from_str(v.trim()).unwrap_or(serde_json::Value::Null);
        }
    }
    out
}

/// Reads SSE lines from `stream` until `done` says so or the deadline passes.
fn read_events(
    reader: &mut BufReader<TcpStream>,
    deadline: Duration,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let start = Instant::now();
    let mut lines = Vec::new();
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while start.elapsed() < deadline && !done(&lines) {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => lines.push(line.trim_end().to_owned()),
            Err(_) => continue,
        }
    }
    lines
}

fn open_events(admin: &str, headers: &[(&str, &str)]) -> BufReader<TcpStream> {
    let address = admin.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    let mut request =
        format!("GET /api/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    BufReader::new(stream)
}

#[test]
fn the_event_stream_resumes_from_last_event_id_and_says_reset_when_it_cannot() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let hook = weir.webhook_url("contact-form");

    let mut first = open_events(&weir.admin, &[]);
    let head = read_events(&mut first, WAIT, |l| l.iter().any(|l| l.is_empty()));
    assert!(head[0].contains("200"), "{head:?}");
    assert!(
        head.iter()
            .any(|l| l.eq_ignore_ascii_case("content-type: text/event-stream")),
        "{head:?}"
    );
    let id = post_json(&hook, &json!({"email": "a@b.c", "message": "hi"})).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lines = read_events(&mut first, WAIT, |l| ended(l, "run.finished"));
    let events = blocks(&lines);
    let kinds: Vec<&str> = events.iter().map(|b| b.event.as_str()).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind);
    let (accepted, started, finished) = (
        at("run.accepted").unwrap_or_else(|| panic!("{lines:?}")),
        at("run.started").unwrap_or_else(|| panic!("{lines:?}")),
        at("run.finished").unwrap_or_else(|| panic!("{lines:?}")),
    );
    assert!(accepted < started && started < finished, "{kinds:?}");
    for event in &events[accepted..=finished] {
        assert_eq!(event.data["run_id"], json!(id), "{lines:?}");
    }
    assert_eq!(events[accepted].data["flow_id"], "contact-form");
    assert_eq!(events[finished].data["status"], "succeeded");
    let accepted_id = events[accepted].id.clone();
    drop(first);

    // Resume after the accept: the start and the finish again, not the accept.
    let mut resumed = open_events(&weir.admin, &[("Last-Event-ID", &accepted_id)]);
    let lines = read_events(&mut resumed, WAIT, |l| ended(l, "run.finished"));
    assert!(
        !lines.iter().any(|l| l == "event:run.accepted"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "event:run.started"), "{lines:?}");
    assert!(!lines.iter().any(|l| l == "event:reset"), "{lines:?}");

    // An id this server never gave: reset, so that the page reloads its list.
    let mut unknown = open_events(&weir.admin, &[("Last-Event-ID", "0-12")]);
    let lines = read_events(&mut unknown, WAIT, |l| ended(l, "reset"));
    assert!(lines.iter().any(|l| l == "event:reset"), "{lines:?}");

    // The UI's pages answer with the strict policy; unknown paths stay 404s.
    let page = get(&format!("{}/runs/{id}", weir.admin));
    assert_eq!(page.status, 200);
    let csp = page
        .header("content-security-policy")
        .unwrap_or_default()
        .to_owned();
    for part in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "script-src 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(String::from_utf8_lossy(&page.body).contains("/ui/app.js"));
    assert_eq!(get(&format!("{}/nope/nope", weir.admin)).status, 404);
    assert_eq!(get(&format!("{}/ui/nope.js", weir.admin)).status, 404);

    // An open stream does not hold up a graceful stop: the server ends it.
    let mut open = open_events(&weir.admin, &[]);
    read_events(&mut open, WAIT, |l| l.iter().any(|l| l.is_empty()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stopping = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(weir.stop());
    });
    let status = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("weir stops within 15 s with an event stream open");
    assert!(
        status.success(),
        "{status:?} after {:?}",
        stopping.elapsed()
    );
}

#[test]
fn the_event_stream_asks_for_the_admin_token_like_every_admin_route() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let token = "ui-test-admin-token-7d1e0c";
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-token", token],
    );
    let url = format!("{}/api/events", weir.admin);
    assert_eq!(get(&url).status, 401);
    assert_eq!(
        get_with(&url, &[("authorization", "Bearer wrong-token-wrong-token")]).status,
        401
    );
    let mut stream = open_events(
        &weir.admin,
        &[("Authorization", &format!("Bearer {token}"))],
    );
    let head = read_events(&mut stream, WAIT, |l| l.iter().any(|l| l.is_empty()));
    assert!(head[0].contains("200"), "{head:?}");
    // The UI's files carry no data and load without it, so the sign-in form can show.
    assert_eq!(get(&format!("{}/", weir.admin)).status, 200);
    assert_eq!(get(&format!("{}/ui/app.js", weir.admin)).status, 200);
}

/// The heartbeat the README states: "a comment every 15 s keeps the stream open".
const HEARTBEAT: Duration = Duration::from_secs(15);

/// An idle stream gets its heartbeat comment within the stated interval (and nothing else);
/// a reader resuming from an event gets exactly the events after it, none before.
#[test]
fn an_idle_stream_beats_and_a_resume_gets_only_later_events() {
    let flows = FlowDir::examples();
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));

    let mut idle = open_events(&weir.admin, &[]);
    let head = read_events(&mut idle, WAIT, |l| l.iter().any(|l| l.is_empty()));
    assert!(head[0].contains("200"), "{head:?}");
    let opened = Instant::now();
    // A little more than the interval: the timer starts as the stream does, a moment before
    // the head was read here.
    let lines = read_events(&mut idle, HEARTBEAT + Duration::from_secs(2), |l| {
        l.iter().any(|l| l.starts_with(':'))
    });
    let beat = opened.elapsed();
    let comments: Vec<&String> = lines.iter().filter(|l| l.starts_with(':')).collect();
    assert!(
        !comments.is_empty(),
        "no heartbeat within {beat:?} of an idle stream: {lines:?}"
    );
    assert!(comments[0].contains("heartbeat"), "{lines:?}");
    assert!(
        blocks(&lines).is_empty(),
        "an idle stream carries only comments: {lines:?}"
    );
    drop(idle);

    // Two runs, one after the other; a reader that saw the first one finish resumes.
    let hook = weir.webhook_url("contact-form");
    let mut stream = open_events(&weir.admin, &[]);
    read_events(&mut stream, WAIT, |l| l.iter().any(|l| l.is_empty()));
    let send = |n: u32| {
        post_json(
            &hook,
            &json!({"email": "a@b.c", "message": format!("hi {n}")}),
        )
        .json()["run_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = send(1);
    let lines = read_events(&mut stream, WAIT, |l| ended(l, "run.finished"));
    let seen = blocks(&lines);
    let first_finished = seen
        .iter()
        .find(|b| b.event == "run.finished" && b.data["run_id"] == json!(first))
        .unwrap_or_else(|| panic!("{lines:?}"))
        .id
        .clone();
    drop(stream);
    let second = send(2);
    weir.wait_run(&second);

    let mut resumed = open_events(&weir.admin, &[("Last-Event-ID", &first_finished)]);
    let lines = read_events(&mut resumed, WAIT, |l| ended(l, "run.finished"));
    let events = blocks(&lines);
    let kinds: Vec<&str> = events.iter().map(|b| b.event.as_str()).collect();
    assert_eq!(
        kinds,
        ["run.accepted", "run.started", "run.finished"],
        "{lines:?}"
    );
    for event in &events {
        assert_eq!(event.data["run_id"], json!(second), "{lines:?}");
    }
    // Ids are `<boot>-<sequence>`: each later than the one resumed from.
    let seq = |id: &str| -> u64 { id.rsplit('-').next().unwrap().parse().unwrap() };
    let from = seq(&first_finished);
    assert!(
        events.iter().all(|e| seq(&e.id) > from),
        "{first_finished}: {lines:?}"
    );
}

/// A run whose step fails with attempts left says so on the stream, with its next attempt's
/// time, before it finishes.
#[test]
fn a_retrying_run_is_announced_with_its_next_attempt() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&calls);
    let sink = weir_tests::sink::Sink::start(move |_| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            weir_tests::sink::Reply::text(503, "busy")
        } else {
            weir_tests::sink::Reply::json(200, &json!({"ok": true}))
        }
    });
    let flows = FlowDir::empty();
    flows.write(
        "flaky.toml",
        &format!(
            "name = \"flaky\"\n[[steps]]\nid = \"call\"\nplugin = \"http\"\n\
             allow_hosts = [\"http://127.0.0.1:{port}\"]\ninput.body = \"$.webhook.body\"\n\
             config.url = \"{url}\"\nretries = 1\nbackoff = \"200ms\"\n",
            port = sink.port(),
            url = sink.url("/up")
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let mut stream = open_events(&weir.admin, &[]);
    read_events(&mut stream, WAIT, |l| l.iter().any(String::is_empty));
    let id = post_json(&weir.webhook_url("flaky"), &json!({"n": 1})).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lines = read_events(&mut stream, Duration::from_secs(30), |l| {
        ended(l, "run.finished")
    });
    let events = blocks(&lines);
    let kinds: Vec<&str> = events.iter().map(|b| b.event.as_str()).collect();
    let at = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {lines:?}"))
    };
    assert!(at("run.retrying") < at("run.finished"), "{kinds:?}");
    let retrying = &events[at("run.retrying")].data;
    assert_eq!(retrying["run_id"], json!(id));
    assert_eq!(retrying["flow_id"], "flaky");
    assert_eq!(retrying["status"], "retrying");
    assert!(
        retrying["next_attempt_at"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .is_some(),
        "{retrying}"
    );
    let finished = &events[at("run.finished")].data;
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["flow_id"], "flaky");
}

/// A refused webhook of a known flow is announced once it is on record, with its refusal id,
/// status and reason, and never the request's credentials or body; a wrong token is not.
#[test]
fn a_refused_webhook_is_announced_once_it_is_on_record() {
    const SECRET: &str = "github-webhook-secret-for-events";
    let flows = FlowDir::empty();
    flows.write(
        "signed.toml",
        "name = \"signed\"\n[webhook]\nverify = { scheme = \"github\", secret = \"${GH}\" }\n\
         [[steps]]\nid = \"echo\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with_env(
        flows.path(),
        &data.path().join("weir.redb"),
        &[],
        &[("GH", SECRET)],
    );
    let mut stream = open_events(&weir.admin, &[]);
    read_events(&mut stream, WAIT, |l| l.iter().any(String::is_empty));
    let url = weir.webhook_url("signed");
    let token = url.rsplit('/').next().unwrap().to_owned();

    let wrong_token = weir_tests::post_with(
        &format!("{url}x"),
        "application/json",
        b"{}",
        &[("x-hub-signature-256", "sha256=00")],
    );
    assert_eq!(wrong_token.status, 404);
    let forged = weir_tests::post_with(
        &url,
        "application/json",
        b"{\"card\": \"4242-body-never-announced\"}",
        &[
            ("x-hub-signature-256", "sha256=00"),
            ("authorization", "Bearer sk-live-never-announced"),
        ],
    );
    assert_eq!(forged.status, 401);

    let lines = read_events(&mut stream, WAIT, |l| ended(l, "webhook.refused"));
    let text = lines.join("\n");
    for secret in [
        token.as_str(),
        SECRET,
        "sk-live-never-announced",
        "4242-body-never-announced",
    ] {
        assert!(!text.contains(secret), "{secret} is in {text}");
    }
    let events = blocks(&lines);
    let refused: Vec<&Block> = events
        .iter()
        .filter(|b| b.event == "webhook.refused")
        .collect();
    assert_eq!(refused.len(), 1, "only the known flow's refusal: {lines:?}");
    let event = &refused[0].data;
    assert_eq!(event["flow_id"], "signed");
    assert_eq!(event["status"], 401);
    assert_eq!(event["reason"], "verify");
    assert_eq!(event["unannounced"], 0);
    assert!(
        event["received_at"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .is_some(),
        "{event}"
    );
    // The refusal it names is already in the list, under the same id.
    let page = weir.api("/api/flows/signed/rejections").json();
    assert_eq!(page["rejections"][0]["seq"], event["refusal_id"], "{page}");
    assert_eq!(page["rejections"][0]["status"], 401);
}
