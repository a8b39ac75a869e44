//! Deleting finished runs: everything a run owns goes, nothing else does, live runs stay, and
//! the store checks clean afterwards.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::tests::{dedupe_entries, keyed_run, new_run, step, temp};
use super::*;

/// Accepts a run of `flow` with `body` and, when `finish` is given, runs it to that end with
/// one step.
async fn run(store: &Store, flow: &str, body: &[u8], finish: Option<RunOutcome>) -> RunId {
    let id = store.accept(new_run(flow, body)).await.unwrap().id;
    if let Some(outcome) = finish {
        store.start_run(id).await.unwrap();
        store.record_step(id, step(0, "s")).await.unwrap();
        store.finish(id, outcome, None).await.unwrap();
    }
    id
}

fn all_ids(store: &Store, flow: Option<&str>) -> Vec<RunId> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_runs(&RunFilter {
                flow: flow.map(str::to_owned),
                limit: 100,
                cursor,
                ..RunFilter::default()
            })
            .unwrap();
        ids.extend(page.runs.iter().map(|run| run.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn pruning_deletes_finished_runs_with_everything_they_own_and_spares_live_ones() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let old = run(&store, "a", b"old", Some(RunOutcome::Succeeded)).await;
    let failed = run(&store, "b", b"failed", Some(RunOutcome::Failed)).await;
    let queued = run(&store, "a", b"queued", None).await;
    let running = run(&store, "b", b"running", None).await;
    store.start_run(running).await.unwrap();
    let kept = run(&store, "a", b"kept", Some(RunOutcome::Filtered)).await;

    let pruned = store
        .prune(vec![old, failed, queued, running, old])
        .await
        .unwrap();
    assert_eq!(pruned, 2, "only the finished runs go, each once");
    for id in [old, failed] {
        assert!(store.get_run(id).unwrap().is_none());
        assert!(store.get_request(id).unwrap().is_none());
        assert!(store.get_steps(id).unwrap().is_empty());
    }
    for (id, body) in [
        (queued, &b"queued"[..]),
        (running, b"running"),
        (kept, b"kept"),
    ] {
        assert!(store.get_run(id).unwrap().is_some());
        assert_eq!(store.get_request(id).unwrap().unwrap().body, body);
    }
    assert_eq!(all_ids(&store, None), vec![kept, running, queued]);
    assert_eq!(all_ids(&store, Some("a")), vec![kept, queued]);
    assert_eq!(
        store
            .count_runs(Some("b"), Some(RunStatus::Failed))
            .unwrap(),
        0
    );
    let holdings = store.holdings().unwrap();
    assert_eq!((holdings.runs, holdings.finished), (3, 1));
    assert_eq!(holdings.oldest, Some(queued));
    // Pruning again changes nothing.
    assert_eq!(store.prune(vec![old, failed]).await.unwrap(), 0);

    drop(store);
    let report = check(&path).unwrap();
    assert!(report.is_clean(), "{:?}", report.damaged);
    // The deletion was journaled: it holds after a reopen.
    let store = Store::open(&path).unwrap();
    assert!(store.get_run(old).unwrap().is_none());
    assert_eq!(store.holdings().unwrap().runs, 3);
}

#[tokio::test]
async fn a_pruned_runs_dedupe_value_is_forgotten_and_a_redelivery_is_a_new_run() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let first = store.accept(keyed_run("gh", "d-1", None)).await.unwrap();
    store.start_run(first.id).await.unwrap();
    store
        .finish(first.id, RunOutcome::Succeeded, None)
        .await
        .unwrap();
    assert!(
        store
            .accept(keyed_run("gh", "d-1", None))
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(dedupe_entries(&store, "gh"), 1);

    assert_eq!(store.prune(vec![first.id]).await.unwrap(), 1);
    assert_eq!(dedupe_entries(&store, "gh"), 0);
    let again = store.accept(keyed_run("gh", "d-1", None)).await.unwrap();
    assert!(!again.duplicate);
    assert_ne!(again.id, first.id);
}

#[tokio::test]
async fn a_flows_runs_beyond_its_count_or_age_are_found_oldest_first() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let mut a = Vec::new();
    for i in 0..10u8 {
        a.push(run(&store, "a", &[i], Some(RunOutcome::Succeeded)).await);
        run(&store, "b", &[i], Some(RunOutcome::Succeeded)).await;
    }
    let live = run(&store, "a", b"live", None).await;

    // Keep the 4 newest finished runs of `a`: the 6 oldest go, oldest first, in pages.
    let beyond = store.flow_finished_beyond("a", None, Some(4), 100).unwrap();
    assert_eq!(beyond, a[..6].to_vec());
    assert_eq!(
        store.flow_finished_beyond("a", None, Some(4), 2).unwrap(),
        a[..2].to_vec()
    );
    assert!(
        store
            .flow_finished_beyond("a", None, Some(10), 100)
            .unwrap()
            .is_empty()
    );
    // By age: every finished run received before now.
    let later = SystemTime::now() + Duration::from_secs(1);
    assert_eq!(
        store
            .flow_finished_beyond("a", Some(later), None, 100)
            .unwrap(),
        a
    );
    assert!(
        store
            .flow_finished_beyond("a", Some(SystemTime::UNIX_EPOCH), None, 100)
            .unwrap()
            .is_empty()
    );
    // Globally, oldest first across flows, live runs never.
    let global = store.finished_before(Some(later), 1000).unwrap();
    assert_eq!(global.len(), 20);
    assert!(global.windows(2).all(|w| w[0] < w[1]));
    assert!(!global.contains(&live));

    assert_eq!(store.prune(beyond).await.unwrap(), 6);
    assert_eq!(all_ids(&store, Some("a")).len(), 5);
    assert_eq!(all_ids(&store, Some("b")).len(), 10);
    drop(store);
    assert!(check(&path).unwrap().is_clean());
}

#[tokio::test]
async fn freed_pages_are_reused_so_the_file_stops_growing() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let body = vec![b'x'; 2000];
    let mut lengths = Vec::new();
    for round in 0..6 {
        let mut ids = Vec::new();
        for _ in 0..300 {
            ids.push(run(&store, "f", &body, Some(RunOutcome::Succeeded)).await);
        }
        // Checkpoint, so redb may hand the freed pages out again.
        store.sync().await.unwrap();
        store.prune(ids).await.unwrap();
        store.sync().await.unwrap();
        if round >= 1 {
            lengths.push(std::fs::metadata(&path).unwrap().len());
        }
    }
    let (first, last) = (lengths[0], *lengths.last().unwrap());
    assert!(
        last <= first + first / 4,
        "the file grew from {first} to {last} bytes while as many runs came as went: {lengths:?}"
    );
    assert_eq!(store.holdings().unwrap().runs, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever runs of whatever flows are pruned, in one go or in pieces, every other run
    /// reads back as it was, and the store checks clean.
    #[test]
    fn pruning_any_set_leaves_every_other_run_whole(
        runs in proptest::collection::vec((0..3u8, any::<bool>(), 1..3000usize), 1..60),
        doomed in proptest::collection::vec(any::<bool>(), 60),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (_dir, path) = temp();
            let store = Store::open(&path).unwrap();
            let mut made = Vec::new();
            for (i, (flow, finished, size)) in runs.iter().enumerate() {
                let flow = format!("f{flow}");
                let body = vec![i as u8; *size];
                let outcome = finished.then_some(RunOutcome::Succeeded);
                made.push((run(&store, &flow, &body, outcome).await, flow, body, *finished));
            }
            let chosen: Vec<RunId> = made
                .iter()
                .zip(&doomed)
                .filter(|(_, doomed)| **doomed)
                .map(|((id, ..), _)| *id)
                .collect();
            let expected = made
                .iter()
                .zip(&doomed)
                .filter(|((.., finished), doomed)| **doomed && *finished)
                .count() as u64;
            prop_assert_eq!(store.prune(chosen).await.unwrap(), expected);
            for ((id, flow, body, finished), doomed) in made.iter().zip(&doomed) {
                let gone = *doomed && *finished;
                let read = store.get_request(*id).unwrap();
                prop_assert_eq!(read.is_none(), gone);
                if let Some(request) = read {
                    prop_assert_eq!(&request.body, body);
                    prop_assert_eq!(&store.get_run(*id).unwrap().unwrap().flow_id, flow);
                }
            }
            let kept = made.len() as u64 - expected;
            prop_assert_eq!(store.holdings().unwrap().runs, kept);
            prop_assert_eq!(all_ids(&store, None).len() as u64, kept);
            drop(store);
            let report = check(&path).unwrap();
            prop_assert!(report.is_clean(), "{:?}", report.damaged);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn compaction_shrinks_a_pruned_store_keeps_what_it_holds_and_refuses_an_open_one() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let body = vec![b'y'; 4000];
    let mut ids = Vec::new();
    for _ in 0..400 {
        ids.push(run(&store, "f", &body, Some(RunOutcome::Succeeded)).await);
    }
    let kept = run(&store, "f", b"kept", None).await;
    store.prune(ids).await.unwrap();
    match compact(&path) {
        Err(CompactError::InUse(_)) => {}
        other => panic!("compacting an open store: {other:?}"),
    }
    drop(store);

    let done = compact(&path).unwrap();
    assert!(
        done.after < done.before / 2,
        "compaction took {} bytes to {}",
        done.before,
        done.after
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), done.after);
    assert!(check(&path).unwrap().is_clean());
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get_request(kept).unwrap().unwrap().body, b"kept");
    assert_eq!(store.holdings().unwrap().runs, 1);
    drop(store);
    assert!(matches!(
        compact(&path.with_file_name("none.redb")),
        Err(CompactError::Missing(_))
    ));
}
