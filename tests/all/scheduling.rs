//! Scheduling through HTTP: `order_by` lanes, per-flow `concurrency`, and flows taking turns.
//! Each flow's step is the `http` built-in posting to a loopback sink this test starts, which
//! sees when each run's call arrives and holds it as long as the test says.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use weir_tests::sink::{Reply, Sink};
use weir_tests::{FlowDir, Weir, post_json, wait_for};

/// A flow whose one step posts the webhook's body to `sink`.
fn calling_flow(top: &str, sink: &Sink) -> String {
    format!(
        r#"name = "calls"
{top}
[[steps]]
id = "call"
plugin = "http"
allow_hosts = ["http://127.0.0.1:{port}"]
input.body = "$.webhook.body"
config.url = "{url}"
"#,
        port = sink.port(),
        url = sink.url("/call")
    )
}

/// What the sink saw: calls in flight now (in total and by key), the most at once, and every
/// call in the order it arrived.
#[derive(Default)]
struct Seen {
    in_flight: usize,
    by_key: HashMap<String, usize>,
    most: usize,
    most_for_one_key: usize,
    arrived: Vec<Value>,
}

/// A gate the sink's calls wait at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }
}

/// A sink that records each call (its JSON body's `key`) and holds it `hold` (after `gate`
/// opens, when there is one).
fn recording_sink(hold: Duration, gate: Option<Arc<Gate>>) -> (Sink, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let recorded = Arc::clone(&seen);
    let sink = Sink::start(move |request| {
        let body = request.json();
        let key = body["key"].as_str().unwrap_or_default().to_owned();
        {
            let mut seen = recorded.lock().unwrap_or_else(|e| e.into_inner());
            seen.in_flight += 1;
            seen.most = seen.most.max(seen.in_flight);
            let for_key = seen.by_key.entry(key.clone()).or_default();
            *for_key += 1;
            let for_key = *for_key;
            seen.most_for_one_key = seen.most_for_one_key.max(for_key);
            seen.arrived.push(body);
        }
        if let Some(gate) = &gate {
            gate.pass();
        }
        // The server holds each call: this is the slow upstream, not a pause in the test.
        std::thread::sleep(hold);
        let mut seen = recorded.lock().unwrap_or_else(|e| e.into_inner());
        seen.in_flight -= 1;
        if let Some(for_key) = seen.by_key.get_mut(&key) {
            *for_key -= 1;
        }
        Reply::json(200, &json!({"ok": true}))
    });
    (sink, seen)
}

fn status(weir: &Weir, run: &str) -> String {
    weir.api(&format!("/api/runs/{run}")).json()["run"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// 200 webhooks from 20 senders at once, 4 per key over 5 keys, each sender posting its 10 in
/// turn: runs of one key never overlap and each sender's run in the order it sent them, while
/// different keys run at the same time.
#[test]
fn order_by_keeps_each_keys_order_while_keys_run_in_parallel() {
    let (sink, seen) = recording_sink(Duration::from_millis(15), None);
    let flows = FlowDir::empty();
    flows.write(
        "ordered.toml",
        &calling_flow("order_by = \"$.webhook.body.key\"", &sink),
    );
    let data = tempfile::tempdir().expect("temp dir");
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--concurrency", "32"],
    );
    let url = weir.webhook_url("ordered");
    let runs: Vec<String> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..20)
            .map(|sender| {
                let url = &url;
                scope.spawn(move || {
                    let key = format!("customer-{}", sender % 5);
                    (0..10)
                        .map(|n| {
                            let body = json!({"key": key, "sender": sender, "n": n});
                            post_json(url, &body).accepted_run_id()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|s| s.join().expect("sender"))
            .collect()
    });
    assert_eq!(runs.len(), 200);
    for run in &runs {
        assert_eq!(weir.wait_run(run)["run"]["status"], "succeeded");
    }
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(seen.arrived.len(), 200, "every run called once");
    assert_eq!(
        seen.most_for_one_key, 1,
        "runs of one key never execute at once"
    );
    assert!(
        seen.most >= 2,
        "different keys run at the same time (at most {} did)",
        seen.most
    );
    let mut last: HashMap<u64, i64> = HashMap::new();
    for call in &seen.arrived {
        let sender = call["sender"].as_u64().expect("sender");
        let n = call["n"].as_i64().expect("n");
        let before = last.insert(sender, n).unwrap_or(-1);
        assert_eq!(
            n,
            before + 1,
            "sender {sender}'s runs execute in the order it sent them"
        );
    }
}

/// With two slots for the whole server, a flow with `concurrency = 1` whose upstream hangs
/// takes one of them; another flow's runs keep going through the other.
#[test]
fn a_flow_at_its_concurrency_does_not_hold_up_another_flow() {
    let gate = Arc::new(Gate::default());
    let (sink, seen) = recording_sink(Duration::ZERO, Some(Arc::clone(&gate)));
    let flows = FlowDir::empty();
    flows.write("slow.toml", &calling_flow("concurrency = 1", &sink));
    flows.write(
        "quick.toml",
        "name = \"quick\"\n[[steps]]\nid = \"shape\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().expect("temp dir");
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--concurrency", "2"],
    );
    let slow_url = weir.webhook_url("slow");
    let slow: Vec<String> = (0..5)
        .map(|n| post_json(&slow_url, &json!({"key": "k", "n": n})).accepted_run_id())
        .collect();
    wait_for(Duration::from_secs(30), "the first slow call", || {
        (seen.lock().unwrap_or_else(|e| e.into_inner()).arrived.len() == 1).then_some(())
    });
    let quick_url = weir.webhook_url("quick");
    for n in 0..5 {
        let run = post_json(&quick_url, &json!({"n": n})).accepted_run_id();
        assert_eq!(weir.wait_run(&run)["run"]["status"], "succeeded");
    }
    let statuses: Vec<String> = slow.iter().map(|run| status(&weir, run)).collect();
    assert_eq!(
        statuses,
        ["running", "queued", "queued", "queued", "queued"],
        "the slow flow holds one run at a time, still blocked"
    );
    gate.open();
    for run in &slow {
        assert_eq!(weir.wait_run(run)["run"]["status"], "succeeded");
    }
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(seen.most, 1, "concurrency = 1 ran one call at a time");
    assert_eq!(seen.arrived.len(), 5);
}

/// `concurrency = 2`: 12 runs of a flow whose upstream is slow never have more than two
/// calls in flight, and do have two.
#[test]
fn concurrency_caps_a_flows_runs_at_once() {
    let (sink, seen) = recording_sink(Duration::from_millis(40), None);
    let flows = FlowDir::empty();
    flows.write("capped.toml", &calling_flow("concurrency = 2", &sink));
    let data = tempfile::tempdir().expect("temp dir");
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("capped");
    let runs: Vec<String> = (0..12)
        .map(|n| post_json(&url, &json!({"key": format!("k{n}")})).accepted_run_id())
        .collect();
    for run in &runs {
        assert_eq!(weir.wait_run(run)["run"]["status"], "succeeded");
    }
    assert_eq!(seen.lock().unwrap_or_else(|e| e.into_inner()).most, 2);

    // The run API agrees: at no run's start were more than two of them executing.
    let times: Vec<(String, String)> = runs
        .iter()
        .map(|run| {
            let run = weir.api(&format!("/api/runs/{run}")).json();
            (
                run["run"]["started_at"]
                    .as_str()
                    .expect("started_at")
                    .to_owned(),
                run["run"]["finished_at"]
                    .as_str()
                    .expect("finished_at")
                    .to_owned(),
            )
        })
        .collect();
    for (start, _) in &times {
        let executing = times
            .iter()
            .filter(|(s, f)| s <= start && start < f)
            .count();
        assert!(executing <= 2, "{executing} runs executing at {start}");
    }
}

/// A lane keeps its order across a SIGKILL: the run cut off while executing runs again first,
/// then the queued ones in the order they were accepted; and a reload that changes `order_by`
/// orders the runs accepted after it by the new key.
#[test]
fn a_lane_keeps_its_order_across_a_kill_and_a_reload_changes_it_for_later_runs() {
    let gate = Arc::new(Gate::default());
    let (sink, seen) = recording_sink(Duration::ZERO, Some(Arc::clone(&gate)));
    let flows = FlowDir::empty();
    flows.write(
        "ordered.toml",
        &calling_flow("order_by = \"$.webhook.body.key\"", &sink),
    );
    let data = tempfile::tempdir().expect("temp dir");
    let db = data.path().join("weir.redb");
    let weir = Weir::start(flows.path(), &db);
    let url = weir.webhook_url("ordered");
    let runs: Vec<String> = (0..4)
        .map(|n| post_json(&url, &json!({"key": "k", "n": n})).accepted_run_id())
        .collect();
    wait_for(Duration::from_secs(30), "the first call", || {
        (seen.lock().unwrap_or_else(|e| e.into_inner()).arrived.len() == 1).then_some(())
    });
    weir.kill();
    gate.open();

    let weir = Weir::start(flows.path(), &db);
    for run in &runs {
        assert_eq!(weir.wait_run(run)["run"]["status"], "succeeded");
    }
    let order: Vec<i64> = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .arrived
        .iter()
        .filter_map(|call| call["n"].as_i64())
        .collect();
    assert_eq!(
        order,
        [0, 0, 1, 2, 3],
        "the cut-off run again, then the rest in order"
    );

    // Reordered by `group` from now on: two groups run side by side.
    let gate = Arc::new(Gate::default());
    let (sink, seen) = recording_sink(Duration::ZERO, Some(Arc::clone(&gate)));
    flows.write(
        "ordered.toml",
        &calling_flow("order_by = \"$.webhook.body.group\"", &sink),
    );
    wait_for(Duration::from_secs(30), "the reload", || {
        weir.flow("ordered")["source"]
            .as_str()
            .is_some_and(|source| source.contains("body.group"))
            .then_some(())
    });
    let url = weir.webhook_url("ordered");
    for (key, group) in [("k", "a"), ("k", "b")] {
        post_json(&url, &json!({"key": key, "group": group})).accepted_run_id();
    }
    wait_for(
        Duration::from_secs(30),
        "both groups' calls at once",
        || (seen.lock().unwrap_or_else(|e| e.into_inner()).in_flight == 2).then_some(()),
    );
    gate.open();
}

/// Calls that wait on their upstream do not hold the CPU's plugin slots (one per core): more
/// runs than the machine has cores all have their call in flight at once, and a flow without
/// outbound calls still runs meanwhile.
#[test]
fn calls_waiting_on_an_upstream_do_not_take_every_plugin_slot() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let calls = (cores + 4).min(64);
    let gate = Arc::new(Gate::default());
    let (sink, seen) = recording_sink(Duration::ZERO, Some(Arc::clone(&gate)));
    let flows = FlowDir::empty();
    flows.write("slow.toml", &calling_flow("", &sink));
    flows.write(
        "quick.toml",
        "name = \"quick\"\n[[steps]]\nid = \"shape\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().expect("temp dir");
    let weir = Weir::start_with(flows.path(), &data.path().join("weir.redb"), &[]);
    let slow_url = weir.webhook_url("slow");
    let slow: Vec<String> = (0..calls)
        .map(|n| post_json(&slow_url, &json!({"key": "k", "n": n})).accepted_run_id())
        .collect();
    wait_for(
        Duration::from_secs(30),
        &format!("{calls} calls in flight at once on {cores} cores"),
        || (seen.lock().unwrap_or_else(|e| e.into_inner()).in_flight == calls).then_some(()),
    );
    let quick = post_json(&weir.webhook_url("quick"), &json!({"n": 1})).accepted_run_id();
    assert_eq!(weir.wait_run(&quick)["run"]["status"], "succeeded");
    gate.open();
    for run in &slow {
        assert_eq!(weir.wait_run(run)["run"]["status"], "succeeded");
    }
}

/// A run waiting for a retry keeps its `order_by` lane: a later webhook of the same key runs
/// only after the retried run succeeded.
#[test]
fn a_retrying_run_is_not_overtaken_by_its_keys_later_runs() {
    let arrivals = Arc::new(Mutex::new(Vec::<(u64, u16)>::new()));
    let seen = Arc::clone(&arrivals);
    let sink = Sink::start(move |request| {
        let n = request.json()["n"].as_u64().unwrap_or_default();
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        // The first call of run 1 fails; every other call succeeds.
        let status = if n == 1 && seen.iter().all(|(m, _)| *m != 1) {
            503
        } else {
            200
        };
        seen.push((n, status));
        Reply::json(status, &json!({"n": n}))
    });
    let flows = FlowDir::empty();
    flows.write(
        "ordered.toml",
        &format!(
            "{}retries = 2\nbackoff = \"500ms\"\n",
            calling_flow("order_by = \"$.webhook.body.key\"", &sink)
        ),
    );
    let data = tempfile::tempdir().expect("temp dir");
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("ordered");
    let first = post_json(&url, &json!({"key": "k", "n": 1})).accepted_run_id();
    wait_for(
        Duration::from_secs(30),
        "the first run to be retrying",
        || (status(&weir, &first) == "retrying").then_some(()),
    );
    let second = post_json(&url, &json!({"key": "k", "n": 2})).accepted_run_id();
    for run in [&first, &second] {
        assert_eq!(weir.wait_run(run)["run"]["status"], "succeeded");
    }
    let arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        arrivals,
        [(1, 503), (1, 200), (2, 200)],
        "the retry before the key's next run"
    );
}
