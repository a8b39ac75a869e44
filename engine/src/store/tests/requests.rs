//! Accepted requests: they read back exactly, alone or committed together, from many tasks and threads.

use super::*;

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

#[test]
fn a_store_is_shared_across_threads() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<Store>();
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
