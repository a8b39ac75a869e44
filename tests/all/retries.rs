//! Step retries and error flows through HTTP: a flaky upstream (a loopback server of the
//! test) is retried with backoff until it answers, every attempt is listed on the run, the
//! schedule survives a SIGKILL between attempts, traps retry only when asked, and a run that
//! fails for good starts its `on_failure` flow with its context, once, without loops.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_parse::{Scrape, Value as Sample};
use serde_json::{Value, json};
use weir_tests::sink::{Reply, Sink};
use weir_tests::{FlowDir, HOSTILE_WASM, Weir, get, post_json, wait_for};

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

/// A flow whose `echo` step passes the body on and whose `call` step posts it upstream.
fn calling_flow(sink: &Sink, retry: &str, extra: &str) -> String {
    format!(
        r#"name = "calls upstream"
{extra}
[[steps]]
id = "echo"
plugin = "{HOSTILE_WASM}"
input = "$.webhook.body"
config = {{ mode = "echo" }}

[[steps]]
id = "call"
plugin = "http"
allow_hosts = ["http://127.0.0.1:{port}"]
input.body = "$.steps.echo.output"
config.url = "{url}"
{retry}
"#,
        port = sink.port(),
        url = sink.url("/upstream"),
    )
}

fn send(weir: &Weir, flow: &str, body: &Value) -> String {
    let answer = post_json(&weir.webhook_url(flow), body);
    assert_eq!(
        answer.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()["run_id"]
        .as_str()
        .expect("a run id")
        .to_owned()
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step_id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {run:#}"))
}

fn retries_counted(weir: &Weir, flow: &str) -> f64 {
    let answer = get(&format!("{}/metrics", weir.admin));
    assert_eq!(answer.status, 200);
    let text = String::from_utf8(answer.body).expect("UTF-8");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a scrape");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "weir_step_retries_total")
        .find(|s| s.labels.get("flow") == Some(flow))
        .map_or(0.0, |s| match s.value {
            Sample::Counter(v) | Sample::Untyped(v) => v,
            _ => panic!("weir_step_retries_total is not a counter"),
        })
}

#[test]
fn a_flaky_upstream_succeeds_on_the_third_attempt_and_every_attempt_is_listed() {
    let sink = flaky(2);
    let flows = FlowDir::empty();
    flows.write(
        "flaky.toml",
        &calling_flow(&sink, "retries = 3\nbackoff = \"200ms\"", ""),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let id = send(&weir, "flaky", &json!({"order": 42}));
    let run = weir.wait_run(&id);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");

    let call = step(&run, "call");
    assert_eq!(call["status"], "succeeded");
    assert_eq!(call["output"]["status"], 200);
    let attempts = call["attempts"]
        .as_array()
        .expect("the attempts are listed");
    assert_eq!(attempts.len(), 3, "{call:#}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["attempt"], n + 1);
    }
    for failed in &attempts[..2] {
        assert_eq!(failed["error"]["kind"], "upstream", "{failed:#}");
        assert!(failed["error"]["message"].as_str().unwrap().contains("503"));
        assert!(failed["retry_at"].is_string());
    }
    assert!(attempts[2]["error"].is_null());
    // Exponential: the second wait is about twice the first.
    let at = |a: &Value, key: &str| humantime::parse_rfc3339(a[key].as_str().unwrap()).unwrap();
    let wait = |n: usize| {
        at(&attempts[n + 1], "started_at")
            .duration_since(at(&attempts[n], "started_at"))
            .unwrap()
    };
    assert!(wait(0) >= Duration::from_millis(200), "{:?}", wait(0));
    assert!(wait(1) >= Duration::from_millis(400), "{:?}", wait(1));

    // The earlier step ran once: the retries resumed at the failed step with its output.
    assert_eq!(step(&run, "echo")["output"], json!({"order": 42}));
    assert!(at(step(&run, "echo"), "started_at") <= at(&attempts[0], "started_at"));
    let requests = sink.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.json() == json!({"order": 42})));
    assert_eq!(retries_counted(&weir, "flaky"), 2.0);
}

#[test]
fn exhausted_retries_fail_the_run_and_start_its_error_flow_once() {
    let sink = flaky(usize::MAX);
    let flows = FlowDir::empty();
    flows.write(
        "flaky.toml",
        &calling_flow(
            &sink,
            "retries = 1\nbackoff = \"100ms\"",
            "on_failure = \"alerts\"",
        ),
    );
    // The error flow fails too, and names itself: it must not start again.
    flows.write(
        "alerts.toml",
        &format!(
            r#"name = "alerts"
on_failure = "alerts"

[[steps]]
id = "note"
plugin = "{HOSTILE_WASM}"
input.failed = "$.failed"
input.body = "$.webhook.body"
config = {{ mode = "echo" }}

[[steps]]
id = "page"
plugin = "{HOSTILE_WASM}"
config = {{ mode = "error" }}
"#
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let id = send(&weir, "flaky", &json!({"order": 7}));
    let run = weir.wait_run(&id);
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    assert!(
        run["run"]["error"]
            .as_str()
            .unwrap()
            .contains("attempt 2 of 2"),
        "{run:#}"
    );
    assert_eq!(step(&run, "call")["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(sink.requests().len(), 2);

    let error_run_id = wait_for(Duration::from_secs(30), "the error flow's run", || {
        let page = weir.api("/api/runs?flow=alerts").json();
        page["runs"][0]["id"].as_str().map(str::to_owned)
    });
    let error_run = weir.wait_run(&error_run_id);
    assert_eq!(
        error_run["run"]["error_flow_of"],
        id.as_str(),
        "{error_run:#}"
    );
    assert_eq!(
        error_run["run"]["status"], "failed",
        "the error flow fails too"
    );
    let seen = &step(&error_run, "note")["output"];
    assert_eq!(
        seen["body"],
        json!({"order": 7}),
        "$.webhook is the failed run's"
    );
    let failed = &seen["failed"];
    assert_eq!(failed["run"]["id"], id.as_str());
    assert_eq!(failed["run"]["flow"], "flaky");
    assert_eq!(failed["run"]["status"], "failed");
    assert_eq!(failed["run"]["received_at"], run["run"]["received_at"]);
    assert_eq!(failed["step"]["id"], "call");
    assert_eq!(failed["step"]["plugin"], "http");
    assert_eq!(failed["step"]["input"], json!({"body": {"order": 7}}));
    assert_eq!(failed["error"]["kind"], "upstream");
    assert!(failed["error"]["message"].as_str().unwrap().contains("503"));

    // The error run started nothing when it failed (it starts before its run is finished).
    let alerts = weir.api("/api/runs?flow=alerts").json();
    assert_eq!(alerts["runs"].as_array().unwrap().len(), 1, "{alerts:#}");
    assert_eq!(weir.count_runs(), 2);
    assert_eq!(retries_counted(&weir, "flaky"), 1.0);
}

#[test]
fn a_retry_schedule_survives_a_sigkill_between_attempts() {
    let sink = flaky(1);
    let flows = FlowDir::empty();
    flows.write(
        "flaky.toml",
        &calling_flow(&sink, "retries = 2\nbackoff = \"3s\"", ""),
    );
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("weir.redb");
    let weir = Weir::start(flows.path(), &db);
    let id = send(&weir, "flaky", &json!({"n": 1}));
    let waiting = wait_for(Duration::from_secs(30), "the run to be retrying", || {
        let run = weir.api(&format!("/api/runs/{id}")).json();
        (run["run"]["status"] == "retrying").then_some(run)
    });
    assert!(waiting["run"]["next_attempt_at"].is_string(), "{waiting:#}");
    let listed = weir.api("/api/runs?status=retrying").json();
    assert_eq!(listed["runs"][0]["id"], id.as_str(), "{listed:#}");
    assert_eq!(sink.requests().len(), 1);
    weir.kill();

    let weir = Weir::start(flows.path(), &db);
    let run = weir.wait_run(&id);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    let attempts = step(&run, "call")["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2, "{run:#}");
    assert_eq!(attempts[0]["error"]["kind"], "upstream");
    assert!(attempts[1]["error"].is_null());
    // The second attempt waited for its time, across the restart.
    let due = humantime::parse_rfc3339(attempts[0]["retry_at"].as_str().unwrap()).unwrap();
    let started = humantime::parse_rfc3339(attempts[1]["started_at"].as_str().unwrap()).unwrap();
    assert!(started >= due, "{started:?} before {due:?}");
    assert_eq!(sink.requests().len(), 2);
}

#[test]
fn traps_are_retried_only_when_the_step_says_so() {
    let flows = FlowDir::empty();
    let panicking = |extra: &str| {
        format!(
            "name = \"panics\"\non_failure = \"nowhere\"\n[[steps]]\nid = \"boom\"\nplugin = \"{HOSTILE_WASM}\"\nconfig = {{ mode = \"panic\" }}\nretries = 2\nbackoff = \"100ms\"\n{extra}\n"
        )
    };
    flows.write("plain.toml", &panicking(""));
    flows.write("asked.toml", &panicking("retry_on_trap = true"));
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));

    let plain = weir.wait_run(&send(&weir, "plain", &json!({})));
    assert_eq!(plain["run"]["status"], "failed");
    let attempts = step(&plain, "boom")["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 1, "{plain:#}");
    assert_eq!(attempts[0]["error"]["kind"], "panic");
    assert!(attempts[0]["retry_at"].is_null());

    let asked = weir.wait_run(&send(&weir, "asked", &json!({})));
    assert_eq!(asked["run"]["status"], "failed");
    let attempts = step(&asked, "boom")["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 3, "{asked:#}");
    assert!(attempts.iter().all(|a| a["error"]["kind"] == "panic"));

    // `on_failure` names a flow that does not exist: the flow says so, a failure is logged,
    // nothing starts.
    let flow = weir.flow("plain");
    assert_eq!(flow["status"], "ok");
    assert_eq!(flow["on_failure"], "nowhere");
    assert_eq!(flow["steps"][0]["retries"], 2);
    assert!(
        flow["warnings"][0]
            .as_str()
            .unwrap()
            .contains("'nowhere', which does not exist"),
        "{flow:#}"
    );
    assert_eq!(weir.count_runs(), 2);
    wait_for(
        Duration::from_secs(10),
        "the skipped error flow logged",
        || {
            weir.logs()
                .contains("the on_failure flow does not exist")
                .then_some(())
        },
    );
}

/// A run waiting for its next attempt is counted as retrying, not as queued or executing.
#[test]
fn a_run_waiting_for_its_retry_is_counted_as_retrying() {
    let sink = flaky(usize::MAX);
    let flows = FlowDir::empty();
    flows.write(
        "down.toml",
        &calling_flow(&sink, "retries = 2\nbackoff = \"10m\"", ""),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let id = send(&weir, "down", &json!({"order": 1}));
    let gauge = |name: &str| {
        let answer = get(&format!("{}/metrics", weir.admin));
        let text = String::from_utf8(answer.body).expect("UTF-8");
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a scrape");
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                Sample::Gauge(v) | Sample::Untyped(v) => v,
                _ => panic!("{name} is not a gauge"),
            })
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    wait_for(Duration::from_secs(30), "the run to be retrying", || {
        (weir.api(&format!("/api/runs/{id}")).json()["run"]["status"] == "retrying").then_some(())
    });
    assert_eq!(gauge("weir_runs_retrying"), 1.0);
    assert_eq!(gauge("weir_runs_queued"), 0.0);
    assert_eq!(gauge("weir_runs_executing"), 0.0);
    let health = weir.api("/api/health").json();
    assert_eq!(health["runs_retrying"], 1, "{health:#}");
    assert_eq!(health["runs_in_queue"], 0, "{health:#}");
    assert_eq!(health["runs_running"], 0, "{health:#}");
}
