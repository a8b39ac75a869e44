//! Crashes: a killed writer loses no acknowledged write, and the journal brings back every answered one.

use super::*;

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
            "store::tests::crash::crash_child",
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
