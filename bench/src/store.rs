//! The store benchmark: the store alone, through its own API, no HTTP: accepts per second as
//! concurrent callers grow (and how many writes each commit carries), two run listings on the
//! store that makes, then runs' progress (start, five steps, finish) per second with and
//! without a journal sync per progress commit, by one executor and by sixteen.
//!
//!     cargo run --release -p weir-bench -- store
//!
//! Each figure comes with the commits it took, so that a noisy shared machine shows up as the
//! same batching at a lower rate. Every loop has a fixed count; every store is in a temp dir.

use std::time::{Instant, SystemTime};

use anyhow::{Context as _, ensure};
use weir::store::{
    LogLevel, LogLine, NewRun, Options, RawRequest, RunFilter, RunId, RunOutcome, RunStatus,
    StepRecord, StepStatus, Store,
};

/// Accepts made at each concurrency (fewer when fewer than 8 callers, so that one caller's
/// loop stays short).
const ACCEPTS: usize = 20_000;
/// Flows the accepted runs are spread over.
const FLOWS: usize = 8;
/// Runs each progress round moves through start, [`STEPS`] steps and finish.
const PROGRESS_RUNS: usize = 800;
const STEPS: u32 = 5;

pub fn bench() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        accepts().await?;
        progress().await
    })
}

fn new_run(flow: &str, body: &[u8]) -> NewRun {
    NewRun {
        flow_id: flow.into(),
        flow_version: "bench".into(),
        request: RawRequest {
            method: "POST".into(),
            path: format!("/hooks/{flow}/[redacted]"),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_vec(),
            remote_addr: Some("127.0.0.1:40000".into()),
            received_at: SystemTime::now(),
        },
        dedupe_key: None,
        dedupe_window: None,
    }
}

fn step(index: u32) -> StepRecord {
    StepRecord {
        index,
        step_id: format!("s{index}"),
        plugin: "transform".into(),
        status: StepStatus::Succeeded,
        input: Some(serde_json::json!({ "n": index })),
        output: Some(serde_json::json!("out")),
        logs: vec![LogLine {
            level: LogLevel::Info,
            message: format!("step {index}"),
        }],
        error: None,
        started_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        duration_us: 37,
        calls: Vec::new(),
        attempts: Vec::new(),
    }
}

/// Accepts of 1 KiB bodies by 1, 8, 64 and 256 concurrent callers, then two listings of the
/// store they made.
async fn accepts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("weir.redb")).context("opening the store")?;
    let body = vec![b'x'; 1024];
    println!("accepts (1 KiB bodies, {FLOWS} flows):");
    for callers in [1usize, 8, 64, 256] {
        let per_caller = ACCEPTS / callers.max(8);
        let before = store.stats();
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|caller| {
                let (store, body) = (store.clone(), body.clone());
                tokio::spawn(async move {
                    let flow = format!("flow{}", caller % FLOWS);
                    for _ in 0..per_caller {
                        store.accept(new_run(&flow, &body)).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let elapsed = started.elapsed();
        let after = store.stats();
        let total = callers * per_caller;
        println!(
            "  {callers:>3} concurrent callers: {total} accepts in {elapsed:.2?} = {:>7.0}/s, {:.1} writes per commit",
            total as f64 / elapsed.as_secs_f64(),
            (after.writes - before.writes) as f64 / (after.commits - before.commits).max(1) as f64,
        );
    }
    let live = store.queue_len()?;
    let started = Instant::now();
    let page = store.list_runs(&RunFilter {
        flow: Some("flow3".into()),
        status: Some(RunStatus::Queued),
        limit: 50,
        ..RunFilter::default()
    })?;
    println!(
        "  list 50 queued runs of one flow among {live} live runs: {:?}",
        started.elapsed()
    );
    ensure!(
        page.runs.len() == 50,
        "the listing found {} runs",
        page.runs.len()
    );
    // The worst case of a flow's listing: it reads the flow of every live run.
    let started = Instant::now();
    let page = store.list_runs(&RunFilter {
        flow: Some("no-runs".into()),
        limit: 50,
        ..RunFilter::default()
    })?;
    println!(
        "  list a flow with no runs among {live} live runs: {:?}",
        started.elapsed()
    );
    ensure!(page.runs.is_empty(), "a flow without runs listed some");
    Ok(())
}

/// Runs moved through start, steps and finish by 1 and 16 executors, with progress commits
/// synced and not.
async fn progress() -> anyhow::Result<()> {
    println!("progress (start + {STEPS} steps + finish per run):");
    for sync_progress in [false, true] {
        for executors in [1usize, 16] {
            let dir = tempfile::tempdir()?;
            let options = Options {
                sync_progress,
                ..Options::default()
            };
            let store = Store::open_with(dir.path().join("weir.redb"), options)
                .context("opening the store")?;
            let runs = PROGRESS_RUNS / executors.min(4);
            let mut ids = Vec::with_capacity(runs);
            for _ in 0..runs {
                ids.push(store.accept(new_run("f", b"{}")).await?.id);
            }
            let before = store.stats();
            let started = Instant::now();
            let tasks: Vec<_> = ids
                .chunks(runs.div_ceil(executors))
                .map(<[RunId]>::to_vec)
                .map(|chunk| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for id in chunk {
                            store.start_run(id).await?;
                            for index in 0..STEPS {
                                store.record_step(id, step(index)).await?;
                            }
                            store.finish_run(id, RunOutcome::Succeeded, None).await?;
                        }
                        anyhow::Ok(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            let elapsed = started.elapsed();
            let after = store.stats();
            println!(
                "  sync_progress={sync_progress:<5} {executors:>2} executors: {runs} runs in {elapsed:.2?} = {:>6.0} runs/s, {} commits, {} journal syncs, {} redb fsyncs",
                runs as f64 / elapsed.as_secs_f64(),
                after.commits - before.commits,
                after.journal_syncs - before.journal_syncs,
                after.durable_commits - before.durable_commits,
            );
        }
    }
    Ok(())
}
