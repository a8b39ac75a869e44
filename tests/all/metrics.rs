//! `GET /metrics` as Prometheus scrapes it: parsed by a Prometheus text parser, its counters
//! move as webhooks arrive (accepted, refused, unrouted) and runs end (succeeded, failed), the
//! queue gauges show a backlog (as `/api/health` counts it), and the admin token guards it.

use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use serde_json::json;
use weir_tests::{FlowDir, HOSTILE_WASM, Weir, get_with, post_json, wait_for};

const TOKEN: &str = "metrics-token-0123456789";

fn bearer() -> [(&'static str, &'static str); 1] {
    [("authorization", "Bearer metrics-token-0123456789")]
}

/// The scrape, parsed.
fn scrape(weir: &Weir) -> Scrape {
    let answer = get_with(&format!("{}/metrics", weir.admin), &bearer());
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        answer.header("content-type")
    );
    let text = String::from_utf8(answer.body).expect("UTF-8");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a Prometheus text scrape")
}

/// The value of the sample `name` whose labels include `labels`; 0 when there is none yet.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map_or(0.0, |s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a single number: {other:?}"),
        })
}

/// The number of observations of the histogram `name` whose labels include `labels`.
fn count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let histogram = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no histogram {name} {labels:?}"));
    match &histogram.value {
        Value::Histogram(buckets) => {
            buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .expect("a +Inf bucket")
                .count
        }
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

/// `GET /api/health`, with the token.
fn health(weir: &Weir) -> serde_json::Value {
    let answer = get_with(&format!("{}/api/health", weir.admin), &bearer());
    assert_eq!(answer.status, 200);
    answer.json()
}

fn url(weir: &Weir, flow: &str) -> String {
    let answer = get_with(&format!("{}/api/flows/{flow}", weir.admin), &bearer());
    assert_eq!(answer.status, 200);
    answer.json()["webhook_url"]
        .as_str()
        .expect("a webhook URL")
        .to_owned()
}

fn wait_run(weir: &Weir, id: &str) -> String {
    wait_for(Duration::from_secs(60), "the run to end", || {
        let answer = get_with(&format!("{}/api/runs/{id}", weir.admin), &bearer());
        let status = answer.json()["run"]["status"].as_str()?.to_owned();
        matches!(status.as_str(), "succeeded" | "failed" | "filtered").then_some(status)
    })
}

#[test]
fn counters_move_as_webhooks_arrive_and_runs_end_behind_the_admin_token() {
    let flows = FlowDir::empty();
    flows.write(
        "ok.toml",
        "name = \"ok\"\n[[steps]]\nid = \"copy\"\nplugin = \"transform\"\ninput.n = \"$.webhook.body.n\"\n",
    );
    flows.write(
        "strict.toml",
        "name = \"strict\"\n[[steps]]\nid = \"needs-title\"\nplugin = \"transform\"\ninput.title = \"$.webhook.body.title\"\n",
    );
    flows.write(
        "signed.toml",
        "name = \"signed\"\n[webhook]\nverify = { scheme = \"github\", secret = \"a-secret-of-some-length\" }\n[[steps]]\nid = \"copy\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-token", TOKEN],
    );

    let denied = weir.api("/metrics");
    assert_eq!(denied.status, 401, "no token");
    let wrong = get_with(
        &format!("{}/metrics", weir.admin),
        &[("authorization", "Bearer not-the-token-at-all")],
    );
    assert_eq!(wrong.status, 401, "a wrong token");

    let before = scrape(&weir);
    assert_eq!(
        value(
            &before,
            "weir_webhooks_received_total",
            &[("flow", "ok"), ("status", "202")]
        ),
        0.0
    );
    let (ok, strict, signed) = (url(&weir, "ok"), url(&weir, "strict"), url(&weir, "signed"));
    let ran: Vec<String> = (0..2)
        .map(|n| post_json(&ok, &json!({ "n": n })).accepted_run_id())
        .collect();
    let failing = post_json(&strict, &json!({ "no": "title" })).accepted_run_id();
    let refused = post_json(&signed, &json!({ "unsigned": true }));
    assert_eq!(refused.status, 401);
    // Made-up flows and tokens: 404, never a series of their own.
    let base = weir.webhook.trim_end_matches('/');
    for path in [
        "/hooks/invented-by-a-sender/abc",
        "/hooks/another-invention/def",
    ] {
        assert_eq!(post_json(&format!("{base}{path}"), &json!({})).status, 404);
    }
    let (ok_base, _token) = ok.rsplit_once('/').expect("a token in the URL");
    let wrong_token = format!("{ok_base}/not-the-token");
    assert_eq!(post_json(&wrong_token, &json!({})).status, 404);
    for id in &ran {
        assert_eq!(wait_run(&weir, id), "succeeded");
    }
    assert_eq!(wait_run(&weir, &failing), "failed");

    // A run is counted just after its end is recorded, which the API shows first.
    let after = wait_for(Duration::from_secs(10), "the runs to be counted", || {
        let now = scrape(&weir);
        let counted = |flow, status| {
            value(
                &now,
                "weir_runs_finished_total",
                &[("flow", flow), ("status", status)],
            )
        };
        (counted("ok", "succeeded") >= 2.0 && counted("strict", "failed") >= 1.0).then_some(now)
    });
    let received = |flow, status| {
        value(
            &after,
            "weir_webhooks_received_total",
            &[("flow", flow), ("status", status)],
        )
    };
    assert_eq!(received("ok", "202"), 2.0);
    assert_eq!(received("strict", "202"), 1.0);
    assert_eq!(received("signed", "401"), 1.0);
    assert_eq!(
        value(
            &after,
            "weir_webhooks_rejected_total",
            &[("flow", "signed"), ("reason", "verify")]
        ),
        1.0
    );
    assert_eq!(value(&after, "weir_webhooks_unrouted_total", &[]), 3.0);
    assert!(
        after.samples.iter().all(|s| s
            .labels
            .get("flow")
            .is_none_or(|f| ["ok", "strict", "signed"].contains(&f))),
        "only flows of the folder label series"
    );
    let finished = |flow, status| {
        value(
            &after,
            "weir_runs_finished_total",
            &[("flow", flow), ("status", status)],
        )
    };
    assert_eq!(finished("ok", "succeeded"), 2.0);
    assert_eq!(finished("strict", "failed"), 1.0);
    assert_eq!(finished("ok", "failed"), 0.0);
    // Two runs of `ok` and the failing one each ran one `transform` step: the failing step's
    // mapping failed before its plugin, and is timed all the same.
    assert_eq!(
        count(
            &after,
            "weir_step_duration_seconds",
            &[("plugin", "transform")]
        ),
        3.0
    );
    assert!(value(&after, "weir_store_size_bytes", &[]) > 0.0);
    // Each accept was made durable by a journal sync, within a commit.
    for latency in [
        "weir_store_commit_duration_seconds",
        "weir_store_journal_sync_duration_seconds",
    ] {
        assert!(
            count(&after, latency, &[]) >= 3.0,
            "{latency}: {}",
            count(&after, latency, &[])
        );
    }
    assert_eq!(value(&after, "weir_runs_queued", &[]), 0.0);
    assert_eq!(value(&after, "weir_queue_oldest_age_seconds", &[]), 0.0);
}

#[test]
fn a_backlog_shows_in_the_queue_gauges() {
    let flows = FlowDir::empty();
    flows.write(
        "slow.toml",
        &format!(
            "name = \"slow\"\n[[steps]]\nid = \"spin\"\nplugin = \"{HOSTILE_WASM}\"\ninput = \"$.webhook.body\"\nconfig = {{ mode = \"spin\", ms = 400 }}\n"
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--admin-token", TOKEN, "--concurrency", "1"],
    );
    let slow = url(&weir, "slow");
    let ids: Vec<String> = (0..4)
        .map(|n| post_json(&slow, &json!({ "n": n })).accepted_run_id())
        .collect();
    // One executes, the others wait: the oldest of them since it was accepted. Health counts
    // them the same way.
    wait_for(Duration::from_secs(30), "a backlog in the gauges", || {
        let now = scrape(&weir);
        let health = health(&weir);
        (value(&now, "weir_runs_executing", &[]) == 1.0
            && value(&now, "weir_runs_queued", &[]) >= 1.0
            && value(&now, "weir_queue_oldest_age_seconds", &[]) > 0.0
            && health["runs_running"] == 1
            && health["runs_in_queue"].as_u64() >= Some(1)
            && health["runs_retrying"] == 0)
            .then_some(())
    });
    for id in &ids {
        assert_eq!(wait_run(&weir, id), "succeeded");
    }
    // A run's slot is freed just after its end is recorded.
    let done = wait_for(Duration::from_secs(10), "the queue to empty", || {
        let now = scrape(&weir);
        (value(&now, "weir_runs_executing", &[]) == 0.0).then_some(now)
    });
    assert_eq!(value(&done, "weir_runs_queued", &[]), 0.0);
    assert_eq!(value(&done, "weir_queue_oldest_age_seconds", &[]), 0.0);
    let health = health(&weir);
    assert_eq!(
        [
            &health["runs_in_queue"],
            &health["runs_running"],
            &health["runs_retrying"]
        ],
        [0, 0, 0],
        "{health:#}"
    );
    assert_eq!(
        value(
            &done,
            "weir_runs_finished_total",
            &[("flow", "slow"), ("status", "succeeded")]
        ),
        4.0
    );
}
