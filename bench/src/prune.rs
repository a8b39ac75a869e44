//! The retention benchmark: a store filled with finished runs through the store's own API,
//! then served by `weir serve` while its pruner deletes half of them and webhooks keep
//! arriving (the ingest rate during pruning, against the rate without it in the same
//! process, before and after); then many more runs come and go under the same limit, and the
//! file's length is compared before and after.
//!
//! The fill here is the benchmark's own (accept, start, finish per run, 512 at a time, so the
//! writer batches them as it batches webhooks); the history benchmark's fill makes the same
//! kind of store.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use weir::store::{NewRun, RawRequest, RunOutcome, Store};

use crate::webhook::{PHASE, WeirProcess, get_json, load, payload, start_weir_on, wait_drained};

/// A flow without steps: its runs finish as soon as they start, so the store and the pruner
/// are what is measured.
const FLOW: &str = "name = \"bench\"\n";
const CONCURRENCY: usize = 64;
/// Runs accepted, started and finished at once while filling.
const FILL_TASKS: usize = 512;

/// Fills the store at `path` with `runs` finished runs of flow `bench`; the time it took.
async fn fill(path: &Path, runs: usize) -> anyhow::Result<Duration> {
    let store = Store::open(path).context("opening the store to fill")?;
    let body = payload().to_vec();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..FILL_TASKS {
        let (store, body) = (store.clone(), body.clone());
        let share = runs / FILL_TASKS + usize::from(task < runs % FILL_TASKS);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                let run = NewRun {
                    flow_id: "bench".into(),
                    flow_version: "fill".into(),
                    request: RawRequest {
                        method: "POST".into(),
                        path: "/hooks/bench/[redacted]".into(),
                        query: String::new(),
                        headers: vec![("content-type".into(), "application/json".into())],
                        body: body.clone(),
                        remote_addr: Some("127.0.0.1:1".into()),
                        received_at: std::time::SystemTime::now(),
                    },
                    dedupe_key: None,
                    dedupe_window: None,
                };
                let id = store.accept(run).await?.id;
                store.start_run(id).await?;
                store.finish(id, RunOutcome::Succeeded, None).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    store.sync().await?;
    Ok(started.elapsed())
}

/// The runs the store keeps, from `/api/health`.
async fn runs_kept(weir: &WeirProcess) -> anyhow::Result<u64> {
    let health = get_json(weir.admin, "/api/health").await?;
    health["storage"]["runs"]
        .as_u64()
        .context("no storage.runs in /api/health")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

pub fn bench(runs: usize, churn: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("weir.redb");
        let took = fill(&data, runs).await?;
        let filled = std::fs::metadata(&data)?.len();
        println!(
            "fill: {runs} finished runs through the store API in {:.1} s ({:.0} runs/s), file {:.0} MiB",
            took.as_secs_f64(),
            runs as f64 / took.as_secs_f64(),
            mib(filled)
        );

        // The same store served twice: without a limit, then with one that is half of it.
        let rate_without = {
            let weir = start_weir_on(FLOW, Some(&data), &[])?;
            let path = webhook_path(&weir).await?;
            let without = load(weir.webhook, &path, CONCURRENCY).await?;
            wait_drained(&weir).await?;
            without.rps()
        };
        let keep = (runs / 2).to_string();
        let weir = start_weir_on(FLOW, Some(&data), &["--retain-runs", &keep])?;
        let path = webhook_path(&weir).await?;
        let before = runs_kept(&weir).await?;
        let pruning_started = Instant::now();
        let during = load(weir.webhook, &path, CONCURRENCY).await?;
        let after_window = runs_kept(&weir).await?;
        // Runs the pruner deleted in the window: what was kept, plus what came, less what is.
        let pruned_in_window = (before + during.ok as u64).saturating_sub(after_window);
        let half = (runs / 2) as u64;
        while runs_kept(&weir).await? > half + CONCURRENCY as u64 * 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pruning_took = pruning_started.elapsed();
        wait_drained(&weir).await?;
        let after = load(weir.webhook, &path, CONCURRENCY).await?;
        println!(
            "ingest, concurrency {CONCURRENCY}, {:.0} s each: without a limit {:.0}/s; \
             while the pruner deleted {pruned_in_window} runs {:.0}/s (p99 {:.1} ms); \
             after {:.0}/s (p99 {:.1} ms); during / without = {:.2}",
            PHASE.as_secs_f64(),
            rate_without,
            during.rps(),
            during.percentile_ms(0.99),
            after.rps(),
            after.percentile_ms(0.99),
            during.rps() / rate_without
        );
        println!(
            "pruning {} of {} runs down to {half} took {:.1} s while webhooks arrived",
            before.saturating_sub(half),
            before,
            pruning_took.as_secs_f64()
        );

        // Steady state: as many runs come as go.
        wait_until_pruned(&weir, half).await?;
        let steady = std::fs::metadata(&data)?.len();
        let mut sent = 0;
        let started = Instant::now();
        let mut lengths = Vec::new();
        while sent < churn {
            sent += load(weir.webhook, &path, CONCURRENCY).await?.ok;
            lengths.push(format!("{:.0}", mib(std::fs::metadata(&data)?.len())));
        }
        println!(
            "file length (MiB) after each {:.0} s of churn: {}",
            PHASE.as_secs_f64(),
            lengths.join(", ")
        );
        wait_drained(&weir).await?;
        wait_until_pruned(&weir, half).await?;
        let churned = std::fs::metadata(&data)?.len();
        println!(
            "steady state: {sent} more runs came and went in {:.0} s (kept {half}); the file \
             was {:.1} MiB before and {:.1} MiB after ({:+.1}%)",
            started.elapsed().as_secs_f64(),
            mib(steady),
            mib(churned),
            (churned as f64 / steady as f64 - 1.0) * 100.0
        );
        anyhow::Ok(())
    })
}

/// Waits until the pruner has brought the store back to `keep` runs.
async fn wait_until_pruned(weir: &WeirProcess, keep: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while runs_kept(weir).await? > keep {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pruner did not bring the store to {keep} runs in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The path of flow `bench`'s webhook URL.
async fn webhook_path(weir: &WeirProcess) -> anyhow::Result<String> {
    let flow = get_json(weir.admin, "/api/flows/bench").await?;
    let url = flow["webhook_url"].as_str().context("no webhook_url")?;
    let at = url.find("/hooks/").context("a webhook URL has /hooks/")?;
    Ok(url[at..].to_owned())
}
