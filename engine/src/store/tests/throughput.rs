//! Throughput of accepts and progress (ignored: run by hand).

use super::*;

/// `cargo test --release -- --ignored --nocapture accept_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn accept_throughput() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let body = vec![b'x'; 1024];
    for tasks in [1usize, 8, 64, 256] {
        let per_task = 20_000 / tasks.max(8);
        let before = store.stats();
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let store = store.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let flow = format!("flow{}", t % 8);
                        store.accept(new_run(&flow, &body)).await.unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let elapsed = started.elapsed();
        let after = store.stats();
        let total = tasks * per_task;
        println!(
            "{tasks:>3} concurrent callers: {total} accepts in {elapsed:.2?} = {:>7.0}/s, {:.1} per commit",
            total as f64 / elapsed.as_secs_f64(),
            (after.writes - before.writes) as f64 / (after.commits - before.commits) as f64,
        );
    }
    let started = Instant::now();
    let page = store
        .list_runs(&RunFilter {
            flow: Some("flow3".into()),
            status: Some(RunStatus::Queued),
            limit: 50,
            cursor: None,
            ..RunFilter::default()
        })
        .unwrap();
    println!(
        "list 50 of flow3 among {} runs: {:?}",
        store.count_runs(None, None).unwrap(),
        started.elapsed()
    );
    assert_eq!(page.runs.len(), 50);
    // The worst case of a flow's listing: it reads the flow of every live run.
    let started = Instant::now();
    let page = store
        .list_runs(&RunFilter {
            flow: Some("no-runs".into()),
            status: None,
            limit: 50,
            cursor: None,
            ..RunFilter::default()
        })
        .unwrap();
    println!(
        "list a flow with no runs among {} live runs: {:?}",
        store.queue_len().unwrap(),
        started.elapsed()
    );
    assert!(page.runs.is_empty());
}

/// `cargo test --release -- --ignored --nocapture progress_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn progress_throughput() {
    for sync_progress in [false, true] {
        for executors in [1usize, 16] {
            let (_dir, path) = temp();
            let options = Options {
                sync_progress,
                ..Options::default()
            };
            let store = Store::open_with(&path, options).unwrap();
            let runs = 800 / executors.min(4);
            let mut ids = Vec::new();
            for _ in 0..runs {
                ids.push(store.accept(new_run("f", b"{}")).await.unwrap().id);
            }
            let before = store.stats();
            let started = Instant::now();
            let chunks: Vec<Vec<RunId>> = ids
                .chunks(runs.div_ceil(executors))
                .map(<[RunId]>::to_vec)
                .collect();
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for id in chunk {
                            store.start_run(id).await.unwrap();
                            for i in 0..5 {
                                store.record_step(id, step(i, "s")).await.unwrap();
                            }
                            store
                                .finish_run(id, RunOutcome::Succeeded, None)
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
            let elapsed = started.elapsed();
            let after = store.stats();
            println!(
                "sync_progress={sync_progress:<5} {executors:>2} executors: {runs} runs x (start + 5 steps + finish) in {elapsed:.2?} = {:>6.0} runs/s, {} commits ({} fsync'd)",
                runs as f64 / elapsed.as_secs_f64(),
                after.commits - before.commits,
                after.durable_commits - before.durable_commits,
            );
        }
    }
}
