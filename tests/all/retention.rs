//! Retention through HTTP: the pruner deletes finished runs beyond a flow's `retain` or
//! `weir serve`'s `--retain*` limits, never a live run; `/api/health` shows what the store
//! holds; `weir compact` shrinks a stopped store and refuses a live one.

use std::time::Duration;

use serde_json::{Value, json};
use weir_tests::{FlowDir, Weir, post_json, post_with, wait_for, weir_command};

/// Long enough for a few pruner rounds (one every 5 s) on a loaded machine.
const PRUNED_WITHIN: Duration = Duration::from_secs(60);

/// The ids of every run of `flow` the API lists, newest first.
fn run_ids(weir: &Weir, flow: &str) -> Vec<String> {
    let page = weir
        .api(&format!("/api/runs?flow={flow}&limit=1000"))
        .json();
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| run["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Sends `n` webhooks to `flow` and waits for their runs to finish; their ids, oldest first.
fn send_finished(weir: &Weir, flow: &str, n: usize, body: &Value) -> Vec<String> {
    let url = weir.webhook_url(flow);
    let ids: Vec<String> = (0..n)
        .map(|_| {
            let answer = post_json(&url, body);
            assert_eq!(
                answer.status,
                202,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
            answer.json()["run_id"].as_str().expect("run id").to_owned()
        })
        .collect();
    for id in &ids {
        weir.wait_run(id);
    }
    ids
}

fn pruned_total(weir: &Weir, reason: &str) -> u64 {
    let text = String::from_utf8(weir.api("/metrics").body).expect("metrics text");
    let line = format!("weir_runs_pruned_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.parse().expect("a count"))
}

const QUICK: &str = "name = \"quick\"\n";

#[test]
fn runs_past_the_global_age_go_while_queued_and_running_runs_stay() {
    let flows = FlowDir::empty();
    flows.write("quick.toml", QUICK);
    flows.write(
        "slow.toml",
        &format!(
            "name = \"slow\"\n[[steps]]\nid = \"spin\"\nplugin = \"{}\"\ntimeout = \"120s\"\n\
             config = {{ mode = \"spin\", ms = 60000 }}\n",
            weir_tests::HOSTILE_WASM
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--retain", "1s", "--concurrency", "1"],
    );
    let quick = send_finished(&weir, "quick", 5, &json!({}));
    // One slow run takes the only execution slot; the next waits queued behind it.
    let slow_url = weir.webhook_url("slow");
    let running = post_json(&slow_url, &json!({})).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(30), "the slow run to start", || {
        (weir.api(&format!("/api/runs/{running}")).json()["run"]["status"] == "running")
            .then_some(())
    });
    let queued = post_json(&slow_url, &json!({})).json()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();

    wait_for(PRUNED_WITHIN, "the quick runs to be pruned by age", || {
        run_ids(&weir, "quick").is_empty().then_some(())
    });
    for id in &quick {
        assert_eq!(weir.api(&format!("/api/runs/{id}")).status, 404);
    }
    assert_eq!(pruned_total(&weir, "age"), 5);
    // Both slow runs are past the age too, but live: they stay.
    let status = |id: &str| weir.api(&format!("/api/runs/{id}")).json()["run"]["status"].clone();
    assert_eq!(status(&running), "running");
    assert_eq!(status(&queued), "queued");
    let health = weir.api("/api/health").json();
    assert_eq!(health["storage"]["runs"], 2, "{health}");
}

#[test]
fn a_flow_keeps_its_newest_runs_by_count_and_by_age_and_other_flows_keep_theirs() {
    let flows = FlowDir::empty();
    flows.write(
        "counted.toml",
        "name = \"counted\"\nretain = { runs = 3 }\n",
    );
    flows.write(
        "brief.toml",
        "name = \"brief\"\nretain = { age = \"1s\" }\n",
    );
    flows.write("other.toml", "name = \"other\"\n");
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let counted = send_finished(&weir, "counted", 8, &json!({}));
    let brief = send_finished(&weir, "brief", 2, &json!({}));
    let other = send_finished(&weir, "other", 4, &json!({}));

    wait_for(
        PRUNED_WITHIN,
        "counted to keep 3 runs and brief none",
        || {
            (run_ids(&weir, "counted").len() == 3 && run_ids(&weir, "brief").is_empty())
                .then_some(())
        },
    );
    let newest: Vec<String> = counted[5..].iter().rev().cloned().collect();
    assert_eq!(run_ids(&weir, "counted"), newest);
    assert_eq!(run_ids(&weir, "other").len(), other.len());
    for id in brief.iter().chain(&counted[..5]) {
        assert_eq!(weir.api(&format!("/api/runs/{id}")).status, 404);
    }
    assert_eq!(pruned_total(&weir, "runs"), 5);
    assert_eq!(pruned_total(&weir, "age"), 2);
}

#[test]
fn the_global_count_keeps_the_newest_runs_across_flows() {
    let flows = FlowDir::empty();
    flows.write("quick.toml", QUICK);
    flows.write("other.toml", "name = \"other\"\n");
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--retain-runs", "4"],
    );
    send_finished(&weir, "quick", 4, &json!({}));
    let last = send_finished(&weir, "other", 4, &json!({}));
    wait_for(PRUNED_WITHIN, "the store to keep 4 runs", || {
        (weir.count_runs() == 4).then_some(())
    });
    assert!(run_ids(&weir, "quick").is_empty());
    assert_eq!(run_ids(&weir, "other").len(), last.len());
    assert_eq!(pruned_total(&weir, "runs"), 4);
}

#[test]
fn over_the_byte_limit_the_oldest_runs_go_until_the_store_uses_less() {
    let flows = FlowDir::empty();
    flows.write("quick.toml", QUICK);
    let data = tempfile::tempdir().unwrap();
    let limit: u64 = 512 << 10;
    let weir = Weir::start_with(
        flows.path(),
        &data.path().join("weir.redb"),
        &["--retain-bytes", "512KiB"],
    );
    let big = json!({ "filler": "x".repeat(16 << 10) });
    // About 1.6 MB of payloads: three times the limit.
    let ids = send_finished(&weir, "quick", 100, &big);
    let used = wait_for(
        PRUNED_WITHIN,
        "the store to use less than the limit",
        || {
            let health = weir.api("/api/health").json();
            let storage = &health["storage"];
            let runs = storage["runs"].as_u64()?;
            let used = storage["used_bytes"].as_u64()?;
            (runs < 100 && used <= limit).then_some(used)
        },
    );
    assert!(used > 0);
    let kept = run_ids(&weir, "quick");
    assert!(!kept.is_empty(), "every run was pruned");
    // Oldest first: what is left is the newest.
    assert_eq!(kept[0], ids[ids.len() - 1]);
    assert_eq!(weir.api(&format!("/api/runs/{}", ids[0])).status, 404);
    assert!(pruned_total(&weir, "bytes") >= 100 - kept.len() as u64);
}

#[test]
fn a_pruned_runs_dedupe_value_no_longer_holds() {
    let flows = FlowDir::empty();
    flows.write(
        "keyed.toml",
        "name = \"keyed\"\nretain = { runs = 1 }\n[webhook]\ndedupe = \"$.webhook.headers['x-id']\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let url = weir.webhook_url("keyed");
    let send = |id: &str| post_with(&url, "application/json", b"{}", &[("x-id", id)]);
    let first = send("a");
    assert_eq!(first.status, 202);
    let first_id = first.json()["run_id"].as_str().unwrap().to_owned();
    weir.wait_run(&first_id);
    let again = send("a");
    assert_eq!(
        again.status, 200,
        "a redelivery while the run is kept is a duplicate"
    );
    assert_eq!(again.json()["duplicate"], true);

    let second = send("b").json()["run_id"].as_str().unwrap().to_owned();
    weir.wait_run(&second);
    wait_for(PRUNED_WITHIN, "the first run to be pruned", || {
        (weir.api(&format!("/api/runs/{first_id}")).status == 404).then_some(())
    });
    let after = send("a");
    assert_eq!(
        after.status,
        202,
        "{}",
        String::from_utf8_lossy(&after.body)
    );
    assert_eq!(after.json()["duplicate"], false);
    assert_ne!(after.json()["run_id"].as_str().unwrap(), first_id);
}

#[test]
fn health_shows_the_store_size_runs_kept_and_the_oldest_runs_age() {
    let flows = FlowDir::empty();
    flows.write("quick.toml", QUICK);
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start(flows.path(), &data.path().join("weir.redb"));
    let ids = send_finished(&weir, "quick", 3, &json!({ "n": 1 }));
    let health = weir.api("/api/health").json();
    let storage = &health["storage"];
    assert_eq!(storage["runs"], 3, "{health}");
    assert_eq!(storage["finished"], 3);
    assert_eq!(storage["oldest_run_id"], ids[0].as_str());
    let age = storage["oldest_run_age_s"].as_f64().expect("an age");
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(storage["file_bytes"].as_u64().expect("file bytes") > 0);
    // The pruner measures the used bytes when it starts.
    let used = wait_for(Duration::from_secs(30), "the used bytes", || {
        weir.api("/api/health").json()["storage"]["used_bytes"].as_u64()
    });
    assert!(used > 0 && used <= storage["file_bytes"].as_u64().unwrap());
}

#[test]
fn compact_shrinks_a_stopped_store_and_refuses_a_running_ones() {
    let flows = FlowDir::empty();
    flows.write("quick.toml", QUICK);
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("weir.redb");
    let weir = Weir::start_with(flows.path(), &file, &["--retain-runs", "1"]);
    let big = json!({ "filler": "z".repeat(16 << 10) });
    let ids = send_finished(&weir, "quick", 60, &big);
    wait_for(PRUNED_WITHIN, "the store to keep 1 run", || {
        (weir.count_runs() == 1).then_some(())
    });

    let refused = weir_command()
        .args(["compact", "--data"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("in use"), "{stderr}");

    assert!(weir.stop().success());
    let before = std::fs::metadata(&file).unwrap().len();
    let done = weir_command()
        .args(["compact", "--data"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        stdout.contains("before") && stdout.contains("after"),
        "{stdout}"
    );
    let after = std::fs::metadata(&file).unwrap().len();
    assert!(after < before, "compaction left {after} of {before} bytes");

    // The compacted store serves what it kept.
    let weir = Weir::start(flows.path(), &file);
    let last = ids.last().unwrap();
    assert_eq!(weir.api(&format!("/api/runs/{last}")).status, 200);
    assert_eq!(weir.count_runs(), 1);
}
