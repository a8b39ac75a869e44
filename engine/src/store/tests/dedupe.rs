//! Dedupe keys: a redelivery names its first run within the window, and expired keys are forgotten.

use super::*;

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
