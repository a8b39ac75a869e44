//! A run's life: start, steps, finish, retries, recovery, and the writer's order of accepts and progress.

use super::*;

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
