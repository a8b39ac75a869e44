//! The store at work: accept webhooks, run them, crash (drop and reopen), read back.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, ReadableDatabase};

use super::tables::{REQUESTS, RUNS_BY_FLOW};
use super::*;

fn request(body: &[u8]) -> RawRequest {
    RawRequest {
        method: "POST".into(),
        path: "/hooks/github/tok".into(),
        query: "a=1&a=2&b".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-dup".into(), "one".into()),
            ("x-dup".into(), "two".into()),
        ],
        body: body.to_vec(),
        remote_addr: Some("127.0.0.1:5555".into()),
        received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_750_000_000_123),
    }
}

pub(super) fn new_run(flow: &str, body: &[u8]) -> NewRun {
    NewRun {
        flow_id: flow.into(),
        flow_version: "v1".into(),
        request: request(body),
        dedupe_key: None,
        dedupe_window: None,
    }
}

/// A run of `flow` with the dedupe `key`, held for `window` (for good without one).
pub(super) fn keyed_run(flow: &str, key: &str, window: Option<Duration>) -> NewRun {
    NewRun {
        dedupe_key: Some(key.into()),
        dedupe_window: window,
        ..new_run(flow, b"{}")
    }
}

pub(super) fn step(index: u32, id: &str) -> StepRecord {
    StepRecord {
        index,
        step_id: id.into(),
        plugin: "template".into(),
        status: StepStatus::Succeeded,
        input: Some(serde_json::json!({ "n": index })),
        output: Some(serde_json::json!("out")),
        logs: vec![LogLine {
            level: "info".into(),
            message: format!("step {index}"),
        }],
        error: None,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        duration_us: 37,
        calls: Vec::new(),
        attempts: Vec::new(),
    }
}

/// A directory of its own under the system temp dir, removed when dropped. (The engine has no
/// `tempfile` dependency; this is all the store's tests need.)
pub(super) struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("weir-store-test-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn temp() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new();
    let path = dir.path().join("weir.redb");
    (dir, path)
}

/// Polls a future once, so that its first step (for `accept`: taking a place in the queue) runs.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn accept_then_read_back() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    // Every byte value, not valid UTF-8: the body is kept as bytes.
    let body: Vec<u8> = (0..=255u8).chain([0xff, 0x00, 0xc3]).collect();
    let accepted = store.accept(new_run("github", &body)).await.unwrap();
    assert!(!accepted.duplicate);
    assert_eq!(accepted.status, RunStatus::Queued);
    let run = store.get_run(accepted.id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.attempt, 1);
    assert_eq!(run.flow_id, "github");
    assert_eq!(run.flow_version, "v1");
    assert_eq!(run.received_at, "2025-06-15T15:06:40.123Z");
    assert_eq!(run.method, "POST");
    assert_eq!(run.content_type.as_deref(), Some("application/json"));
    assert_eq!(run.body_size, body.len() as u64);
    assert_eq!(
        (run.started_at.as_ref(), run.finished_at.as_ref()),
        (None, None)
    );

    assert_eq!(store.get_request(run.id).unwrap(), Some(request(&body)));
    assert_eq!(store.get_steps(run.id).unwrap(), vec![]);
    assert_eq!(store.queue_len().unwrap(), 1);

    // The id round-trips as text, and JSON shows it as text.
    assert_eq!(run.id.to_string().parse::<RunId>().unwrap(), run.id);
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(json["id"], run.id.to_string());
    assert_eq!(json["status"], "queued");
    let raw = serde_json::to_value(request(b"hi")).unwrap();
    assert_eq!(raw["body"], "aGk=");
    assert_eq!(raw["received_at"], "2025-06-15T15:06:40.123Z");
    let back: RawRequest = serde_json::from_value(raw).unwrap();
    assert_eq!(back, request(b"hi"));

    let unknown = RunId::from(7);
    assert_eq!(store.get_run(unknown).unwrap(), None);
    assert_eq!(store.get_request(unknown).unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_share_commits_and_survive_reopen() {
    const TASKS: usize = 64;
    const PER_TASK: usize = 32;
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let body = vec![b'x'; 1024];

    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..PER_TASK {
                let flow = format!("flow{}", t % 4);
                ids.push(store.accept(new_run(&flow, &body)).await.unwrap().id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let stats = store.stats();
    let total = TASKS * PER_TASK;
    println!(
        "{total} accepts from {TASKS} tasks in {elapsed:?}: {:.0}/s, {} commits, largest batch {}",
        total as f64 / elapsed.as_secs_f64(),
        stats.commits,
        stats.largest_batch
    );
    assert_eq!(stats.writes, total as u64);
    assert!(
        stats.commits * 4 < total as u64,
        "group commit should batch: {stats:?}"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "ids are unique");
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.count_runs(None, None).unwrap(), total as u64);
    for id in &ids {
        let run = store
            .get_run(*id)
            .unwrap()
            .expect("accepted run is on disk");
        assert_eq!(run.status, RunStatus::Queued);
        assert_eq!(store.get_request(*id).unwrap().unwrap().body, body);
    }
    assert_eq!(store.recover().await.unwrap(), ids, "queue oldest first");
    // New ids keep growing after a reopen.
    let newer = store.accept(new_run("flow0", b"")).await.unwrap().id;
    assert!(newer > *ids.last().unwrap());
}

/// Reads every page of a listing.
fn all_pages(store: &Store, mut filter: RunFilter) -> Vec<RunId> {
    let mut seen = Vec::new();
    loop {
        let page = store.list_runs(&filter).unwrap();
        assert!(page.runs.len() <= filter.limit);
        seen.extend(page.runs.iter().map(|run| run.id));
        match page.next_cursor {
            Some(cursor) => {
                assert_eq!(page.runs.len(), filter.limit, "only full pages have a next");
                assert_eq!(Some(cursor), page.runs.last().map(|run| run.id));
                filter.cursor = Some(cursor);
            }
            None => return seen,
        }
    }
}

#[tokio::test]
async fn list_runs_newest_first_by_flow_and_status_with_cursors() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let mut all = Vec::new();
    for i in 0..23 {
        let flow = if i % 3 == 0 { "a" } else { "b" };
        all.push((flow, store.accept(new_run(flow, b"{}")).await.unwrap().id));
    }
    // Finish some runs of each flow: every fourth succeeds, every fifth fails.
    let mut status = std::collections::HashMap::new();
    for (i, (_, id)) in all.iter().enumerate() {
        let s = if i % 4 == 0 {
            store.start_run(*id).await.unwrap();
            store
                .finish_run(*id, RunOutcome::Succeeded, None)
                .await
                .unwrap();
            RunStatus::Succeeded
        } else if i % 5 == 0 {
            store.start_run(*id).await.unwrap();
            RunStatus::Running
        } else {
            RunStatus::Queued
        };
        status.insert(*id, s);
    }
    let newest_first = |keep: &dyn Fn(&str, RunId) -> bool| -> Vec<RunId> {
        all.iter()
            .rev()
            .filter(|(flow, id)| keep(flow, *id))
            .map(|(_, id)| *id)
            .collect()
    };

    for limit in [1, 2, 5, 23, 50] {
        let filter = |flow: Option<&str>, status: Option<RunStatus>| RunFilter {
            flow: flow.map(str::to_owned),
            status,
            limit,
            cursor: None,
            ..RunFilter::default()
        };
        assert_eq!(
            all_pages(&store, filter(None, None)),
            newest_first(&|_, _| true)
        );
        assert_eq!(
            all_pages(&store, filter(Some("a"), None)),
            newest_first(&|f, _| f == "a")
        );
        for s in RunStatus::ALL {
            assert_eq!(
                all_pages(&store, filter(None, Some(s))),
                newest_first(&|_, id| status[&id] == s),
                "status {s}"
            );
            assert_eq!(
                all_pages(&store, filter(Some("b"), Some(s))),
                newest_first(&|f, id| f == "b" && status[&id] == s),
                "flow b, status {s}"
            );
            assert_eq!(
                store.count_runs(Some("b"), Some(s)).unwrap(),
                newest_first(&|f, id| f == "b" && status[&id] == s).len() as u64
            );
        }
        assert!(all_pages(&store, filter(Some("nope"), None)).is_empty());
    }
    assert_eq!(store.count_runs(None, None).unwrap(), 23);
    assert_eq!(store.count_runs(Some("a"), None).unwrap(), 8);

    // A run accepted between pages does not disturb the next pages.
    let first = store
        .list_runs(&RunFilter {
            limit: 10,
            ..RunFilter::default()
        })
        .unwrap();
    store.accept(new_run("a", b"")).await.unwrap();
    let rest = all_pages(
        &store,
        RunFilter {
            limit: 10,
            cursor: first.next_cursor,
            ..RunFilter::default()
        },
    );
    let mut paged: Vec<_> = first.runs.iter().map(|run| run.id).collect();
    paged.extend(rest);
    assert_eq!(paged, newest_first(&|_, _| true));

    let empty = store
        .list_runs(&RunFilter {
            limit: 0,
            ..RunFilter::default()
        })
        .unwrap();
    assert!(empty.runs.is_empty() && empty.next_cursor.is_none());
}

#[tokio::test]
async fn a_run_starts_records_steps_and_finishes() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let id = store.accept(new_run("f", b"{}")).await.unwrap().id;

    let running = store.start_run(id).await.unwrap();
    assert_eq!(running.status, RunStatus::Running);
    assert!(running.started_at.is_some());
    // Recorded out of order, listed by index.
    for i in [2, 0, 1] {
        store
            .record_step(id, step(i, &format!("s{i}")))
            .await
            .unwrap();
    }
    let mut failed = step(3, "post");
    failed.status = StepStatus::Failed;
    failed.output = None;
    failed.error = Some(StepErrorRecord {
        kind: "upstream".into(),
        message: "503 from hooks.slack.com".into(),
    });
    store.record_step(id, failed.clone()).await.unwrap();

    let done = store
        .finish_run(
            id,
            RunOutcome::Failed,
            Some("step post: upstream: 503".into()),
        )
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("step post: upstream: 503"));
    assert!(done.finished_at.is_some() && done.duration_ms.is_some());
    assert_eq!(store.queue_len().unwrap(), 0);
    drop(store);

    // Progress writes are not fsync'd one by one, but closing the store syncs them.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get_run(id).unwrap(), Some(done));
    let steps = store.get_steps(id).unwrap();
    assert_eq!(
        steps.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(steps[1], step(1, "s1"));
    assert_eq!(steps[3], failed);
    assert!(
        store.recover().await.unwrap().is_empty(),
        "finished runs are not live"
    );
}

#[tokio::test]
async fn writes_that_do_not_fit_the_run_status_are_refused() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let unknown = RunId::from(42);
    assert!(matches!(
        store.start_run(unknown).await,
        Err(StoreError::NotFound(_))
    ));
    let id = store.accept(new_run("f", b"")).await.unwrap().id;
    assert!(matches!(
        store.record_step(id, step(0, "s")).await,
        Err(StoreError::Conflict(_))
    ));
    store.start_run(id).await.unwrap();
    assert!(matches!(
        store.start_run(id).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .finish_run(id, RunOutcome::Filtered, None)
        .await
        .unwrap();
    assert!(matches!(
        store.finish_run(id, RunOutcome::Succeeded, None).await,
        Err(StoreError::Conflict(_))
    ));
    // A refused write leaves no trace, and the writer goes on.
    assert_eq!(
        store.get_run(id).unwrap().unwrap().status,
        RunStatus::Filtered
    );
    assert!(store.get_steps(id).unwrap().is_empty());
    store.accept(new_run("f", b"")).await.unwrap();
}

#[tokio::test]
async fn recover_requeues_interrupted_runs_with_the_attempt_counted() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let interrupted = store.accept(new_run("f", b"1")).await.unwrap().id;
    let waiting = store.accept(new_run("f", b"2")).await.unwrap().id;
    let finished = store.accept(new_run("f", b"3")).await.unwrap().id;
    store.start_run(interrupted).await.unwrap();
    store.record_step(interrupted, step(0, "a")).await.unwrap();
    store.record_step(interrupted, step(1, "b")).await.unwrap();
    store.start_run(finished).await.unwrap();
    store
        .finish_run(finished, RunOutcome::Succeeded, None)
        .await
        .unwrap();
    drop(store); // the "crash": nothing finishes the running run

    let store = Store::open(&path).unwrap();
    assert_eq!(store.recover().await.unwrap(), vec![interrupted, waiting]);
    let again = store.get_run(interrupted).unwrap().unwrap();
    assert_eq!((again.status, again.attempt), (RunStatus::Queued, 2));
    assert_eq!(again.started_at, None);
    let still = store.get_run(waiting).unwrap().unwrap();
    assert_eq!((still.status, still.attempt), (RunStatus::Queued, 1));
    let by_status = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        })
        .unwrap();
    assert!(by_status.runs.is_empty(), "the status index follows");

    // The second attempt starts afresh: the first attempt's steps are gone.
    let restarted = store.start_run(interrupted).await.unwrap();
    assert_eq!(restarted.attempt, 2);
    assert!(store.get_steps(interrupted).unwrap().is_empty());
    store.record_step(interrupted, step(0, "a")).await.unwrap();
    assert_eq!(store.get_steps(interrupted).unwrap().len(), 1);
    drop(store);

    // Recovering twice counts the attempt again only if it was running again.
    let store = Store::open(&path).unwrap();
    store.recover().await.unwrap();
    assert_eq!(store.get_run(interrupted).unwrap().unwrap().attempt, 3);
    store.recover().await.unwrap();
    assert_eq!(store.get_run(interrupted).unwrap().unwrap().attempt, 3);
}

#[tokio::test]
async fn a_retrying_run_keeps_its_steps_and_schedule_across_reopen() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let id = store.accept(new_run("f", b"1")).await.unwrap().id;
    let queued = store.accept(new_run("f", b"2")).await.unwrap().id;
    store.start_run(id).await.unwrap();
    store.record_step(id, step(0, "a")).await.unwrap();
    store.record_step(id, step(1, "b")).await.unwrap();
    let due = SystemTime::UNIX_EPOCH + Duration::from_millis(1_900_000_000_250);
    store.retry(id, due).await.unwrap();
    assert!(
        matches!(store.retry(id, due).await, Err(StoreError::Conflict(_))),
        "only a running run can be set to retry"
    );
    let run = store.get_run(id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Retrying);
    assert_eq!(
        run.next_attempt_at.as_deref(),
        Some("2030-03-17T17:46:40.250Z")
    );
    assert_eq!(run.started_at, None);
    let listed = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Retrying),
            ..RunFilter::default()
        })
        .unwrap();
    assert_eq!(listed.runs.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.recover().await.unwrap(),
        vec![queued],
        "a retrying run waits for its time; recovery does not queue it"
    );
    assert_eq!(store.retrying_runs().unwrap(), vec![(id, due)]);
    let run = store.get_run(id).unwrap().unwrap();
    assert_eq!((run.status, run.attempt), (RunStatus::Retrying, 1));

    // Its next attempt resumes: the steps so far stay.
    let resumed = store.start_run(id).await.unwrap();
    assert_eq!(
        (resumed.status, resumed.next_attempt_at),
        (RunStatus::Running, None)
    );
    assert_eq!(store.get_steps(id).unwrap().len(), 2);
    assert!(store.retrying_runs().unwrap().is_empty());
    store
        .finish_run(id, RunOutcome::Succeeded, None)
        .await
        .unwrap();
}

/// Accepts go before run progress in the writer, but a steady stream of them never stops a run
/// from starting, recording its steps and finishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_accepts_does_not_starve_run_progress() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let id = store.accept(new_run("f", b"{}")).await.unwrap().id;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..32)
        .map(|_| {
            let (store, stop, accepted) = (store.clone(), stop.clone(), accepted.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    store.accept(new_run("g", &[b'x'; 512])).await.unwrap();
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let the stream get going before the run moves.
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < deadline, "the accepts never got going");
        tokio::task::yield_now().await;
    }

    let before = accepted.load(Ordering::Relaxed);
    let progress = async {
        store.start_run(id).await.unwrap();
        for index in 0..20 {
            store.record_step(id, step(index, "s")).await.unwrap();
        }
        store
            .finish_run(id, RunOutcome::Succeeded, None)
            .await
            .unwrap()
    };
    let finished = tokio::time::timeout(Duration::from_secs(30), progress)
        .await
        .expect("the run's progress was starved by the accepts");
    let during = accepted.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(finished.status, RunStatus::Succeeded);
    assert_eq!(store.get_steps(id).unwrap().len(), 20);
    // The accepts really were flowing the whole time the run progressed.
    assert!(
        during > 22,
        "only {during} accepts while the run progressed"
    );
}

#[tokio::test]
async fn tokens_are_random_url_safe_and_stable_across_reopen() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.token("github").unwrap(), None);
    let github = store.token_for("github").await.unwrap();
    let stripe = store.token_for("stripe").await.unwrap();
    assert_eq!(github.len(), 22);
    assert!(
        github
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    assert_ne!(github, stripe);
    assert_eq!(store.token_for("github").await.unwrap(), github);
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.token_for("github").await.unwrap(), github);
    assert_eq!(store.token("stripe").unwrap(), Some(stripe));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_tokens_agree() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.token_for("race").await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
}

#[tokio::test]
async fn flow_versions_are_kept_once() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    store
        .put_flow_version("f", "abc", "name = 'x'", Vec::new())
        .await
        .unwrap();
    store
        .put_flow_version("f", "abc", "name = 'x'", Vec::new())
        .await
        .unwrap();
    store
        .put_flow_version("f", "def", "name = 'y'", Vec::new())
        .await
        .unwrap();
    assert!(matches!(
        store
            .put_flow_version("f", "abc", "other", Vec::new())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.flow_version("f", "abc").unwrap().as_deref(),
        Some("name = 'x'")
    );
    assert_eq!(
        store.flow_version("f", "def").unwrap().as_deref(),
        Some("name = 'y'")
    );
    assert_eq!(store.flow_version("g", "abc").unwrap(), None);
}

#[tokio::test]
async fn flow_versions_keep_their_plugins_by_content_hash() {
    let (_dir, path) = temp();
    let blob = |hash: &str, bytes: &[u8]| PluginBlob {
        hash: hash.to_owned(),
        bytes: bytes.into(),
    };
    {
        let store = Store::open(&path).unwrap();
        store
            .put_flow_version(
                "f",
                "v1",
                "name = 'x'",
                vec![blob("aa", b"old"), blob("bb", b"b")],
            )
            .await
            .unwrap();
        // A second version sharing one plugin: the shared blob is kept once.
        store
            .put_flow_version(
                "f",
                "v2",
                "name = 'x'",
                vec![blob("cc", b"new"), blob("bb", b"b")],
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .put_flow_version("f", "v1", "name = 'x'", vec![blob("cc", b"new")])
                .await,
            Err(StoreError::Conflict(_))
        ));
        store.sync().await.unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.flow_version_plugins("f", "v1").unwrap(),
        Some(vec!["aa".to_owned(), "bb".to_owned()])
    );
    assert_eq!(
        store.flow_version_plugins("f", "v2").unwrap(),
        Some(vec!["cc".to_owned(), "bb".to_owned()])
    );
    assert_eq!(
        store.plugin_blob("aa").unwrap().as_deref(),
        Some(&b"old"[..])
    );
    assert_eq!(
        store.plugin_blob("cc").unwrap().as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(store.plugin_blob("zz").unwrap(), None);
    assert_eq!(store.flow_version_plugins("g", "v1").unwrap(), None);
}

#[tokio::test]
async fn a_redelivered_webhook_is_not_queued_twice() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let with_key = |flow: &str, key: &str| NewRun {
        dedupe_key: Some(key.into()),
        ..new_run(flow, b"{}")
    };
    // Two deliveries in the same batch, and one later.
    let (first, second) = tokio::join!(
        store.accept(with_key("gh", "delivery-1")),
        store.accept(with_key("gh", "delivery-1"))
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_ne!(first.duplicate, second.duplicate);
    assert_eq!(first.id, second.id);
    let later = store.accept(with_key("gh", "delivery-1")).await.unwrap();
    assert!(later.duplicate);
    assert_eq!(later.id, first.id);
    // The key is per flow.
    assert!(
        !store
            .accept(with_key("other", "delivery-1"))
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(store.count_runs(Some("gh"), None).unwrap(), 1);
    assert_eq!(store.queue_len().unwrap(), 2);
}

#[tokio::test]
async fn a_dedupe_key_holds_for_its_window_then_names_the_new_run() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let with_window = |window: Duration| keyed_run("stripe", "evt_1", Some(window));
    let first = store
        .accept(with_window(Duration::from_millis(50)))
        .await
        .unwrap();
    assert!(!first.duplicate);
    // Within a window of an hour, the same key is the first run.
    let within = store
        .accept(with_window(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(within.duplicate);
    assert_eq!(within.id, first.id);
    // Once the first run is older than the window, the delivery is a new run.
    let deadline = Instant::now() + Duration::from_secs(10);
    let later = loop {
        let answer = store
            .accept(with_window(Duration::from_millis(50)))
            .await
            .unwrap();
        if !answer.duplicate {
            break answer;
        }
        assert_eq!(answer.id, first.id);
        assert!(Instant::now() < deadline, "the window never ended");
        tokio::task::yield_now().await;
    };
    assert_ne!(later.id, first.id);
    // And the key now names the new run.
    let again = store
        .accept(with_window(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, later.id);
    assert_eq!(store.count_runs(Some("stripe"), None).unwrap(), 2);
}

#[tokio::test]
async fn a_flow_lists_its_live_runs_once_also_from_a_store_that_indexed_them_at_accept() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let mut ids = Vec::new();
    for flow in ["a", "b", "a", "a"] {
        ids.push(store.accept(new_run(flow, b"{}")).await.unwrap().id);
    }
    store.start_run(ids[0]).await.unwrap();
    store
        .finish_run(ids[0], RunOutcome::Succeeded, None)
        .await
        .unwrap();
    // Stores written before the flow index moved to the end of a run also hold live runs.
    {
        let txn = store.inner.db.begin_write().unwrap();
        txn.open_table(RUNS_BY_FLOW)
            .unwrap()
            .insert(("a", ids[2].as_u128()), ())
            .unwrap();
        txn.commit().unwrap();
    }
    let filter = RunFilter {
        flow: Some("a".into()),
        status: None,
        limit: 1,
        cursor: None,
        ..RunFilter::default()
    };
    assert_eq!(all_pages(&store, filter), vec![ids[3], ids[2], ids[0]]);
    assert_eq!(store.count_runs(Some("a"), None).unwrap(), 3);
    assert_eq!(store.count_runs(Some("b"), None).unwrap(), 1);
}

/// The dedupe entries of a flow, by reading the table.
pub(super) fn dedupe_entries(store: &Store, flow: &str) -> usize {
    let txn = store.inner.db.begin_read().unwrap();
    let table = txn.open_table(DEDUPE).unwrap();
    table
        .range::<(&str, &str)>((flow, "")..)
        .unwrap()
        .map(|entry| entry.unwrap())
        .take_while(|(key, _)| key.value().0 == flow)
        .count()
}

#[tokio::test]
async fn expired_dedupe_values_are_forgotten_in_batches_and_only_those() {
    let (_dir, path) = temp();
    let count = FORGET_BATCH * 2 + 100;
    let store = Store::open_with(
        &path,
        Options {
            queue_capacity: count,
            ..Options::default()
        },
    )
    .unwrap();
    let keyed = |flow: &str, key: String| keyed_run(flow, &key, None);
    // More than one batch of them, accepted together.
    let accepts = (0..count).map(|i| store.accept(keyed("stripe", format!("evt_{i}"))));
    for accepted in futures_util::future::join_all(accepts).await {
        assert!(!accepted.unwrap().duplicate);
    }
    let other = store.accept(keyed("github", "d_1".into())).await.unwrap();
    assert_eq!(dedupe_entries(&store, "stripe"), count);

    // Nothing is an hour old.
    let hour = Duration::from_secs(3600);
    assert_eq!(store.prune_dedupe("stripe", hour).await.unwrap(), 0);
    assert_eq!(dedupe_entries(&store, "stripe"), count);

    // Under a window of 1 ms, every one expires: all are forgotten, over several batches.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut forgotten = 0;
    while forgotten < count as u64 {
        forgotten += store
            .prune_dedupe("stripe", Duration::from_millis(1))
            .await
            .unwrap();
        assert!(Instant::now() < deadline, "only {forgotten} forgotten");
    }
    assert_eq!(forgotten, count as u64);
    assert_eq!(dedupe_entries(&store, "stripe"), 0);
    // The runs stay; only their dedupe values go.
    assert_eq!(
        store.count_runs(Some("stripe"), None).unwrap(),
        count as u64
    );
    // Another flow's entries are its own.
    assert_eq!(dedupe_entries(&store, "github"), 1);
    let again = store.accept(keyed("github", "d_1".into())).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, other.id);
}

#[tokio::test]
async fn an_entry_taken_over_after_it_was_read_is_not_forgotten() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let keyed = |window: Duration| keyed_run("stripe", "evt", Some(window));
    let first = store.accept(keyed(Duration::from_millis(1))).await.unwrap();
    // Read as expired once the first run is older than the window...
    let deadline = Instant::now() + Duration::from_secs(10);
    let stale = loop {
        let (entries, _) = store
            .expired_dedupe("stripe", Duration::from_millis(1), None, 10)
            .unwrap();
        if !entries.is_empty() {
            break entries;
        }
        assert!(Instant::now() < deadline, "never expired");
        tokio::task::yield_now().await;
    };
    assert_eq!(stale, vec![("evt".to_owned(), first.id.as_u128())]);
    // ... then a new delivery takes the value over before the delete comes.
    let second = store.accept(keyed(Duration::from_millis(1))).await.unwrap();
    assert!(!second.duplicate);
    let forgotten = store
        .call(|reply| Op::ForgetDedupe {
            flow_id: "stripe".into(),
            entries: stale,
            reply,
        })
        .await
        .unwrap();
    assert_eq!(forgotten, 0);
    let again = store
        .accept(keyed(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(again.duplicate, "the value still names the second run");
    assert_eq!(again.id, second.id);
}

#[tokio::test]
async fn a_full_queue_refuses_accepts_at_once() {
    let (_dir, path) = temp();
    let store = Store::open_with(
        &path,
        Options {
            queue_capacity: 2,
            ..Options::default()
        },
    )
    .unwrap();
    let pause = store.pause_writer().await.unwrap();

    let mut a = pin!(store.accept(new_run("f", b"a")));
    let mut b = pin!(store.accept(new_run("f", b"b")));
    assert!(poll_once(a.as_mut()).is_pending());
    assert!(poll_once(b.as_mut()).is_pending());
    assert_eq!(store.stats().waiting_accepts, 2);
    let refused = store.accept(new_run("f", b"c")).await;
    assert_eq!(refused, Err(StoreError::Overloaded));
    // Other writes are not refused; they wait.
    let mut token = pin!(store.token_for("f"));
    assert!(poll_once(token.as_mut()).is_pending());

    drop(pause);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(!token.await.unwrap().is_empty());
    assert_eq!(store.stats().waiting_accepts, 0);
    assert_eq!(store.count_runs(None, None).unwrap(), 2);
    assert!(store.get_run(a.id).unwrap().is_some() && store.get_run(b.id).unwrap().is_some());
    // Room again.
    store.accept(new_run("f", b"c")).await.unwrap();
}

#[tokio::test]
async fn a_record_that_cannot_be_decoded_is_reported_corrupt() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let id = store.accept(new_run("f", b"")).await.unwrap().id;
    drop(store);
    {
        let db = Database::create(&path).unwrap();
        let mut bundle = super::tables::bundle::Builder::default();
        bundle
            .push(id.as_u128(), b"\x01\0f\x08\0\0\0not json")
            .unwrap();
        let (key, value) = bundle.take().unwrap();
        assert_eq!(key, id.as_u128());
        let txn = db.begin_write().unwrap();
        txn.open_table(REQUESTS)
            .unwrap()
            .insert(key, value.as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert!(db.begin_read().is_ok());
    }
    let store = Store::open(&path).unwrap();
    assert!(matches!(store.get_run(id), Err(StoreError::Corrupt(_))));
    // Listed as damaged, in a page that serves.
    let page = store.list_runs(&RunFilter::default()).unwrap();
    assert!(page.runs.is_empty());
    assert_eq!(page.damaged.len(), 1);
    assert_eq!(page.damaged[0].id, id);
    assert!(matches!(
        store.start_run(id).await,
        Err(StoreError::Corrupt(_))
    ));
    // Recovery still finds it (its state is intact); only reading the request fails.
    assert_eq!(store.recover().await.unwrap(), vec![id]);
    // Claiming marked it running, so the executor can end it as failed, for good.
    store
        .finish(id, RunOutcome::Failed, Some("reading the request".into()))
        .await
        .unwrap();
    assert_eq!(store.queue_len().unwrap(), 0);
    // The writer is still serving.
    store.accept(new_run("f", b"")).await.unwrap();
}

#[tokio::test]
async fn a_second_open_of_the_same_file_fails_cleanly() {
    let (_dir, path) = temp();
    let _store = Store::open(&path).unwrap();
    assert!(matches!(Store::open(&path), Err(StoreError::Storage(_))));
}

#[test]
fn status_text_round_trips() {
    for status in RunStatus::ALL {
        assert_eq!(status.to_string().parse::<RunStatus>(), Ok(status));
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            serde_json::json!(status.as_str())
        );
    }
    assert!("done".parse::<RunStatus>().is_err());
    let filter: RunFilter =
        serde_json::from_value(serde_json::json!({ "status": "failed", "flow": "gh" })).unwrap();
    assert_eq!(filter.limit, 50);
    assert_eq!(filter.status, Some(RunStatus::Failed));
}

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

#[test]
fn a_store_is_shared_across_threads() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<Store>();
}

#[tokio::test]
async fn a_file_of_another_schema_version_is_refused() {
    let (_dir, path) = temp();
    drop(Store::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(super::tables::META)
            .unwrap()
            .insert(super::tables::SCHEMA_KEY, 99)
            .unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(Store::open(&path), Err(StoreError::Corrupt(_))));
}

const CRASH_DIR: &str = "WEIR_STORE_CRASH_DIR";

/// The child half of `acknowledged_accepts_survive_a_crash`: does nothing unless run by it.
/// Accepts webhooks from many tasks, writes down each acknowledged id, starts and finishes some
/// runs, then exits without closing the store, while accepts are still in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by acknowledged_accepts_survive_a_crash"]
async fn crash_child() {
    use std::io::Write;
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let store = Store::open(dir.join("weir.redb")).unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(
        std::fs::File::create(dir.join("acked")).unwrap(),
    ));
    let note = |file: &std::sync::Mutex<std::fs::File>, line: String| {
        let mut file = file.lock().unwrap();
        writeln!(file, "{line}").unwrap();
        file.flush().unwrap();
    };

    let started = store.accept(new_run("f", b"s")).await.unwrap().id;
    let finished = store.accept(new_run("f", b"f")).await.unwrap().id;
    store.start_run(started).await.unwrap();
    store.record_step(started, step(0, "a")).await.unwrap();
    store.start_run(finished).await.unwrap();
    store
        .finish_run(finished, RunOutcome::Succeeded, None)
        .await
        .unwrap();
    note(&acked, format!("started {started}"));
    note(&acked, format!("finished {finished}"));

    let (count_tx, mut count_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..32 {
        let store = store.clone();
        let acked = acked.clone();
        let count_tx = count_tx.clone();
        tokio::spawn(async move {
            loop {
                let id = store.accept(new_run("f", b"{}")).await.unwrap().id;
                note(&acked, format!("accepted {id}"));
                let _ = count_tx.send(());
            }
        });
    }
    for _ in 0..500 {
        count_rx.recv().await;
    }
    // No destructor runs: the writer is cut off wherever it is.
    std::process::exit(17);
}

#[test]
fn acknowledged_accepts_survive_a_crash() {
    let dir = TempDir::new();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::crash_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(17), "the child crashed as planned");

    let notes = std::fs::read_to_string(dir.path().join("acked")).unwrap();
    let id_of = |what: &str| -> Vec<RunId> {
        notes
            .lines()
            .filter_map(|line| line.strip_prefix(what))
            .map(|id| id.trim().parse().unwrap())
            .collect()
    };
    let accepted = id_of("accepted ");
    assert!(accepted.len() >= 500);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = Store::open(dir.path().join("weir.redb")).unwrap();
    let live = runtime.block_on(store.recover()).unwrap();
    for id in &accepted {
        let run = store
            .get_run(*id)
            .unwrap()
            .expect("acknowledged run survives");
        assert_eq!(run.status, RunStatus::Queued);
        assert!(live.contains(id));
    }
    // The started run was cut off: it runs again, its attempt counted.
    let started = store.get_run(id_of("started ")[0]).unwrap().unwrap();
    assert_eq!((started.status, started.attempt), (RunStatus::Queued, 2));
    // The finished run's final status may not have been synced: then it runs again too.
    let finished = store.get_run(id_of("finished ")[0]).unwrap().unwrap();
    assert!(
        finished.status == RunStatus::Succeeded
            || (finished.status == RunStatus::Queued && finished.attempt == 2),
        "{finished:?}"
    );
    // Ids keep growing past everything that survived.
    let newest = live.iter().max().copied().unwrap();
    let next = runtime
        .block_on(store.accept(new_run("f", b"")))
        .unwrap()
        .id;
    assert!(next > newest);
}

/// The requests of one group commit are stored as bundles: each reads back byte for byte,
/// a large one is stored alone, pages of runs cross bundles without gaps or repeats, a
/// redelivery within the same commit is recognised, and ids keep growing after a reopen.
#[tokio::test]
async fn requests_committed_together_read_back_exactly() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let body = |i: usize| -> Vec<u8> {
        let len = match i % 10 {
            3 => 30_000,
            7 => 200_000,
            _ => i * 37,
        };
        (0..len).map(|b| (b * 31 + i) as u8).collect()
    };
    let with_key = |key: &str| NewRun {
        dedupe_key: Some(key.into()),
        ..new_run("a", b"keyed")
    };

    let accepted: Vec<Accepted> = {
        let pause = store.pause_writer().await.unwrap();
        let accepts = futures_util::future::join_all(
            (0..40)
                .map(|i| new_run(if i % 2 == 0 { "a" } else { "b" }, &body(i)))
                .chain([with_key("delivery-1"), with_key("delivery-1")])
                .map(|run| store.accept(run)),
        );
        let mut accepts = pin!(accepts);
        assert!(poll_once(accepts.as_mut()).is_pending());
        assert_eq!(store.stats().waiting_accepts, 42);
        drop(pause);
        accepts.await.into_iter().map(Result::unwrap).collect()
    };

    // The redelivery is answered with the first delivery's run.
    let (accepted, keyed) = accepted.split_at(40);
    assert!(!keyed[0].duplicate && keyed[1].duplicate);
    assert_eq!(keyed[0].id, keyed[1].id);
    assert_eq!(store.count_runs(None, None).unwrap(), 41);

    for (i, accepted) in accepted.iter().enumerate() {
        let request = store.get_request(accepted.id).unwrap().unwrap();
        assert_eq!(request.body, body(i), "body of request {i}");
        assert_eq!(request, self::request(&body(i)));
        let run = store.get_run(accepted.id).unwrap().unwrap();
        assert_eq!(run.body_size, body(i).len() as u64);
    }
    // One commit, several bundles: the large bodies do not share theirs.
    let bundles = {
        let db = &store.inner.db;
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(REQUESTS).unwrap();
        redb::ReadableTableMetadata::len(&table).unwrap()
    };
    assert!(
        (5..41).contains(&bundles),
        "{bundles} bundles for 41 requests"
    );

    // Newest first, in pages that cross bundles.
    let mut ids: Vec<RunId> = accepted.iter().map(|a| a.id).collect();
    ids.push(keyed[0].id);
    ids.sort();
    ids.reverse();
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_runs(&RunFilter {
                limit: 7,
                cursor,
                ..RunFilter::default()
            })
            .unwrap();
        listed.extend(page.runs.iter().map(|run| run.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, ids);
    // A flow's runs, all live: found by reading each one's flow in those bundles.
    let of_a: Vec<RunId> = {
        let mut of_a: Vec<RunId> = accepted.iter().step_by(2).map(|a| a.id).collect();
        of_a.push(keyed[0].id);
        of_a.sort();
        of_a.reverse();
        of_a
    };
    for limit in [1, 3, 50] {
        let filter = RunFilter {
            flow: Some("a".into()),
            limit,
            ..RunFilter::default()
        };
        assert_eq!(all_pages(&store, filter), of_a, "pages of {limit}");
    }

    drop(store);
    let store = Store::open(&path).unwrap();
    let later = store.accept(new_run("a", b"later")).await.unwrap().id;
    assert!(later > ids[0]);
    assert_eq!(
        store.get_request(ids[0]).unwrap().unwrap().body,
        b"keyed".to_vec()
    );
}

/// What a crash leaves: the store file and its journal as they are at this moment, copied while
/// the writer is held still. Also the store file alone: what redb holds without the journal.
async fn crash_copies(
    store: &Store,
    path: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let pause = store.pause_writer().await.unwrap();
    let dir = path.parent().unwrap();
    let stamp = ulid::Ulid::generate();
    let crashed = dir.join(format!("crashed-{stamp}.redb"));
    let redb_only = dir.join(format!("redb-only-{stamp}.redb"));
    std::fs::copy(path, &crashed).unwrap();
    std::fs::copy(journal::path_for(path), journal::path_for(&crashed)).unwrap();
    std::fs::copy(path, &redb_only).unwrap();
    drop(pause);
    (crashed, redb_only)
}

#[tokio::test]
async fn after_a_crash_the_journal_brings_back_every_answered_write() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    // A checkpoint can come between the writes and the copy (the writer makes one when idle);
    // then redb holds everything alone and the journal is not put to the test: go again.
    for attempt in 1.. {
        let accepts = (0..20).map(|i| store.accept(new_run("github", format!("{i}").as_bytes())));
        let accepted = futures_util::future::join_all(accepts).await;
        let ids: Vec<RunId> = accepted.into_iter().map(|a| a.unwrap().id).collect();
        let (done, running) = (ids[0], ids[1]);
        store.start_run(done).await.unwrap();
        store.record_step(done, step(0, "shape")).await.unwrap();
        store
            .finish(done, RunOutcome::Succeeded, None)
            .await
            .unwrap();
        store.start_run(running).await.unwrap();
        // Answered once its frame, and so every frame before it, is synced.
        let last = store.accept(new_run("stripe", b"last")).await.unwrap().id;
        let (crashed, redb_only) = crash_copies(&store, &path).await;
        let stats = store.stats();
        assert!(
            stats.journal_syncs > 0 && stats.journal_bytes > 0,
            "{stats:?}"
        );

        let redb_alone = Store::open_with(
            &redb_only,
            Options {
                journal: false,
                ..Options::default()
            },
        )
        .unwrap();
        let replay_needed = redb_alone.get_run(last).unwrap().is_none();
        drop(redb_alone);
        if !replay_needed {
            assert!(attempt < 20, "the writer checkpointed before every copy");
            continue;
        }

        let reopened = Store::open(&crashed).unwrap();
        for id in ids.iter().chain([&last]) {
            assert!(reopened.get_run(*id).unwrap().is_some(), "run {id} lost");
        }
        let done_run = reopened.get_run(done).unwrap().unwrap();
        assert_eq!(done_run.status, RunStatus::Succeeded);
        assert_eq!(reopened.get_steps(done).unwrap(), vec![step(0, "shape")]);
        assert_eq!(
            reopened.get_run(running).unwrap().unwrap().status,
            RunStatus::Running
        );
        assert_eq!(
            reopened.get_run(last).unwrap().unwrap().status,
            RunStatus::Queued
        );
        assert_eq!(reopened.get_request(last).unwrap().unwrap().body, b"last");
        // New runs get new ids, after the replayed ones.
        let next = reopened
            .accept(new_run("github", b"next"))
            .await
            .unwrap()
            .id;
        assert!(next > last);
        drop(reopened);
        // Opened again, nothing is applied twice.
        let again = Store::open(&crashed).unwrap();
        assert_eq!(again.get_steps(done).unwrap(), vec![step(0, "shape")]);
        assert!(again.get_run(next).unwrap().is_some());
        return;
    }
}

#[test]
fn a_journal_from_another_copy_of_the_store_is_refused() {
    let (_dir, path) = temp();
    drop(Store::open(&path).unwrap());
    // Commit 5 cannot follow a store that holds none.
    let mut frames = Vec::new();
    journal::frame(&mut frames, 5, b"");
    std::fs::write(journal::path_for(&path), frames).unwrap();
    let Err(err) = Store::open(&path) else {
        panic!("a journal that does not follow the store was applied");
    };
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("belongs to another copy of the store") && !message.contains("  "),
        "{message}"
    );
    assert!(
        err.to_string().contains("another copy of the store"),
        "{err}"
    );
}

#[test]
fn a_journal_entry_that_cannot_be_applied_stops_the_open_naming_file_frame_and_entry() {
    let (_dir, path) = temp();
    drop(Store::open(&path).unwrap());
    // A checksummed frame that follows the store (commit 1) but starts a run it never had.
    let mut payload = Vec::new();
    let missing = RunId::from(42);
    entry::Entry::Start {
        id: missing,
        at_ms: 1,
    }
    .encode(&mut payload)
    .unwrap();
    let mut frames = Vec::new();
    journal::frame(&mut frames, 1, &payload);
    let journal_path = journal::path_for(&path);
    std::fs::write(&journal_path, &frames).unwrap();
    let Err(err) = Store::open(&path) else {
        panic!("a journal entry that cannot be applied was skipped");
    };
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let message = err.to_string();
    for part in [
        journal_path.display().to_string(),
        "frame of commit 1 at byte 0".into(),
        format!("entry 0 (start of run {missing})"),
        "not found".into(),
    ] {
        assert!(message.contains(&part), "{part:?} missing from: {message}");
    }
    // Nothing was applied, and the next open says the same again.
    assert!(Store::open(&path).is_err());
}

#[test]
fn a_store_file_is_created_whole_beside_its_final_name() {
    let (dir, path) = temp();
    // A file left by a first start cut short is not in the way.
    std::fs::write(dir.path().join("weir.redb.new"), b"half a file").unwrap();
    drop(Store::open(&path).unwrap());
    assert!(!dir.path().join("weir.redb.new").exists());
    assert!(Store::open(&path).is_ok());
}

/// Overwrites every copy of `marker` in the file with bytes that are not UTF-8; how many.
fn damage(path: &std::path::Path, marker: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let mut damaged = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(marker.len()).position(|w| w == marker) {
        let start = at + found;
        bytes[start..start + 4].copy_from_slice(b"\xff\xfe\xfd\xfc");
        damaged += 1;
        at = start + marker.len();
    }
    std::fs::write(path, bytes).unwrap();
    damaged
}

#[tokio::test]
async fn a_damaged_record_is_a_row_of_its_own_and_check_reports_it() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let first = store.accept(new_run("github", b"one")).await.unwrap().id;
    let mut marked = new_run("github", b"two");
    marked
        .request
        .headers
        .push(("x-marker".into(), "damage-me-please".into()));
    let bad = store.accept(marked).await.unwrap().id;
    let last = store.accept(new_run("github", b"three")).await.unwrap().id;
    drop(store);
    let report = check(&path).unwrap();
    assert!(report.is_clean(), "{:?}", report.damaged);
    assert_eq!(report.runs, 3);

    assert!(damage(&path, b"damage-me-please") > 0);
    let report = check(&path).unwrap();
    assert!(
        report
            .damaged
            .iter()
            .any(|line| line.starts_with(&format!("run {bad}:"))),
        "{:?}",
        report.damaged
    );
    assert!(
        !report
            .damaged
            .iter()
            .any(|line| line.contains(&first.to_string()) || line.contains(&last.to_string())),
        "{:?}",
        report.damaged
    );

    // The store still opens, and a page holding the damaged run serves the others.
    let store = Store::open(&path).unwrap();
    let page = store.list_runs(&RunFilter::default()).unwrap();
    let ids: Vec<RunId> = page.runs.iter().map(|run| run.id).collect();
    assert_eq!(ids, [last, first]);
    assert_eq!(page.damaged.len(), 1);
    assert_eq!(page.damaged[0].id, bad);
    assert!(page.damaged[0].error.contains(&bad.to_string()));
    // Pages follow one another past it.
    let first_page = store
        .list_runs(&RunFilter {
            limit: 2,
            ..RunFilter::default()
        })
        .unwrap();
    assert_eq!(first_page.next_cursor, Some(bad));
}
