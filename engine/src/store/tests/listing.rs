//! Listing runs: newest first, by flow and status, in pages with cursors.

use super::*;

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
