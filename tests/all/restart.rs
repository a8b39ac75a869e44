//! Restart and crash: every acknowledged webhook runs to the end, across a graceful stop and
//! across SIGKILL at random moments, and a flow's URL survives both.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use weir_tests::{FlowDir, HOSTILE_WASM, Weir, post_json, send, wait_for};

/// A fixed public base, so URLs compare across restarts on new ephemeral ports.
const PUBLIC: &str = "https://hooks.example.test";

fn slow_flow(ms: u64) -> String {
    format!(
        "name = \"slow\"\n[[steps]]\nid = \"spin\"\nplugin = \"{HOSTILE_WASM}\"\ninput = \"$.webhook.body\"\nconfig = {{ mode = \"spin\", ms = {ms} }}\n"
    )
}

#[test]
fn runs_queued_before_a_stop_finish_after_it_and_the_url_is_unchanged() {
    let flows = FlowDir::empty();
    flows.write("slow.toml", &slow_flow(300));
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("weir.redb");

    let weir = Weir::start_with(
        flows.path(),
        &db,
        &["--concurrency", "1", "--public-url", PUBLIC],
    );
    let url = weir.webhook_url("slow");
    let local = url.replacen(PUBLIC, &weir.webhook, 1);
    let ids: Vec<String> = (0..6)
        .map(|i| {
            let answer = post_json(&local, &json!({ "n": i }));
            assert_eq!(answer.status, 202);
            answer.json()["run_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let queued = weir.api("/api/runs?status=queued").json()["runs"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        queued >= 3,
        "only {queued} runs were still queued at the stop"
    );
    assert!(weir.stop().success(), "a graceful stop exits 0");

    let weir = Weir::start_with(
        flows.path(),
        &db,
        &["--concurrency", "4", "--public-url", PUBLIC],
    );
    assert_eq!(weir.webhook_url("slow"), url, "the URL survives a restart");
    for (i, id) in ids.iter().enumerate() {
        let run = weir.wait_run(id);
        assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
        assert_eq!(run["steps"][0]["output"], json!({ "n": i }));
    }
}

/// Sends webhooks from a few threads until told to stop; returns the acknowledged run ids.
fn send_until(url: &str, stop: &AtomicBool, acked: &Mutex<Vec<String>>) {
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = json!({ "thread": t, "n": n }).to_string();
                    match send("POST", url, "application/json", body.as_bytes()) {
                        Ok(answer) if answer.status == 202 => {
                            let id = answer.json()["run_id"].as_str().unwrap().to_owned();
                            acked.lock().unwrap().push(id);
                        }
                        Ok(answer) => {
                            assert_eq!(answer.status, 503, "only 202 or 503 are acceptable")
                        }
                        // The server was killed under us: this one was never acknowledged.
                        Err(_) => return,
                    }
                }
            });
        }
    });
}

#[test]
fn every_acknowledged_webhook_survives_sigkill_at_random_moments() {
    let flows = FlowDir::empty();
    flows.write(
        "fast.toml",
        "name = \"fast\"\n[[steps]]\nid = \"copy\"\nplugin = \"transform\"\ninput = \"$.webhook.body\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("weir.redb");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut url = None;
    let mut kills = 0;
    let mut rng = fastrand::Rng::new();
    while kills < 5 || acked.lock().unwrap().len() < 2000 {
        let weir = Weir::start_with(flows.path(), &db, &["--public-url", PUBLIC]);
        let this_url = weir.webhook_url("fast");
        assert_eq!(
            url.get_or_insert_with(|| this_url.clone()),
            &this_url,
            "the URL survives crashes"
        );
        // The public URL is fixed; the port this process listens on is not.
        let this_url = this_url.replacen(PUBLIC, &weir.webhook, 1);
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (url, stop, acked) = (this_url.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || send_until(&url, &stop, &acked))
        };
        // Kill at a random moment: after a random number of further acknowledgements.
        let target = acked.lock().unwrap().len() + rng.usize(150..600);
        wait_for(
            Duration::from_secs(120),
            "webhooks to be acknowledged",
            || (acked.lock().unwrap().len() >= target).then_some(()),
        );
        weir.kill();
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        sender.join().unwrap();
    }

    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 2000);
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "a run id was handed out twice");

    let weir = Weir::start(flows.path(), &db);
    wait_for(
        Duration::from_secs(180),
        "every acknowledged run to finish",
        || {
            let live = weir.api("/api/runs?status=queued&limit=1").json()["runs"]
                .as_array()
                .unwrap()
                .len()
                + weir.api("/api/runs?status=running&limit=1").json()["runs"]
                    .as_array()
                    .unwrap()
                    .len();
            (live == 0).then_some(())
        },
    );
    for id in &acked {
        let answer = weir.api(&format!("/api/runs/{id}"));
        assert_eq!(
            answer.status, 200,
            "acknowledged run {id} is missing after {kills} kills"
        );
        let run = answer.json();
        assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
        assert!(run["steps"][0]["output"]["n"].is_u64(), "{run:#}");
    }
}

#[test]
fn a_run_cut_off_while_running_runs_again_with_its_attempt_raised() {
    let flows = FlowDir::empty();
    flows.write("slow.toml", &slow_flow(1500));
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("weir.redb");
    let weir = Weir::start(flows.path(), &db);
    let answer = post_json(&weir.webhook_url("slow"), &json!({ "n": 1 }));
    let id = answer.json()["run_id"].as_str().unwrap().to_owned();
    wait_for(Duration::from_secs(30), "the run to start", || {
        (weir.api(&format!("/api/runs/{id}")).json()["run"]["status"] == "running").then_some(())
    });
    weir.kill();

    let weir = Weir::start(flows.path(), &db);
    let run = weir.wait_run(&id);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["attempt"], 2, "{run:#}");
    assert_eq!(
        run["steps"].as_array().unwrap().len(),
        1,
        "only the last attempt's steps: {run:#}"
    );
}

#[test]
fn a_graceful_stop_lets_executing_runs_finish_and_leaves_queued_ones_for_the_next_start() {
    let flows = FlowDir::empty();
    flows.write("slow.toml", &slow_flow(1000));
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("weir.redb");
    let weir = Weir::start_with(flows.path(), &db, &["--concurrency", "1"]);
    let url = weir.webhook_url("slow");
    let executing = post_json(&url, &json!({ "n": 1 })).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let queued = post_json(&url, &json!({ "n": 2 })).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(30), "the first run to start", || {
        (weir.api(&format!("/api/runs/{executing}")).json()["run"]["status"] == "running")
            .then_some(())
    });
    assert!(weir.stop().success(), "a graceful stop exits 0");

    // The executing run finished before the exit, in its first attempt; the queued one was
    // left queued and runs after the restart.
    let weir = Weir::start_with(flows.path(), &db, &["--concurrency", "1"]);
    let run = weir.api(&format!("/api/runs/{executing}")).json();
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["attempt"], 1, "{run:#}");
    let run = weir.wait_run(&queued);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["attempt"], 1, "{run:#}");
}

#[test]
fn a_run_longer_than_the_shutdown_grace_is_cut_off_and_runs_again() {
    let flows = FlowDir::empty();
    flows.write("slow.toml", &slow_flow(3000));
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("weir.redb");
    let weir = Weir::start_with(flows.path(), &db, &["--shutdown-grace", "100ms"]);
    let id = post_json(&weir.webhook_url("slow"), &json!({ "n": 1 })).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(30), "the run to start", || {
        (weir.api(&format!("/api/runs/{id}")).json()["run"]["status"] == "running").then_some(())
    });
    let logs = weir.stderr.clone();
    assert!(weir.stop().success());
    wait_for(Duration::from_secs(10), "the cut-off warning", || {
        let logs = logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.contains("still executing at the end of the grace period")
            .then_some(())
    });

    // Cut off, not finished: it runs again, its attempt counted.
    let weir = Weir::start(flows.path(), &db);
    let run = weir.wait_run(&id);
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["attempt"], 2, "{run:#}");
}
