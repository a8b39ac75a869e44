//! Damaged records: reported as corrupt, one row of their own, and found by `check`.

use super::*;

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

/// A replay link naming a run that is not stored (a take-back that left it, say) is damage
/// `check` names; links between stored runs are not.
#[tokio::test]
async fn check_reports_a_replay_link_to_a_missing_run() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let original = store.accept(new_run("f", b"one")).await.unwrap().id;
    let replay = store.accept(new_run("f", b"two")).await.unwrap().id;
    drop(store);
    let missing = RunId::from(replay.as_u128() + 1);
    let link = |of: RunId, id: RunId| {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(super::tables::REPLAYS)
            .unwrap()
            .insert((of.as_u128(), id.as_u128()), ())
            .unwrap();
        txn.commit().unwrap();
    };
    link(original, replay);
    let report = check(&path).unwrap();
    assert!(report.is_clean(), "{:?}", report.damaged);

    link(original, missing);
    let report = check(&path).unwrap();
    assert_eq!(
        report.damaged,
        [format!(
            "replay link from run {original} to run {missing}: run {missing} is missing"
        )]
    );
}
