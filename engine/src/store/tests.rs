//! The store at work: accept webhooks, run them, crash (drop and reopen), read back.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, ReadableDatabase};

use super::tables::{REQUESTS, RUNS_BY_FLOW};
use super::*;

mod crash;
mod damage;
mod dedupe;
mod flows;
mod listing;
mod open;
mod requests;
mod runs;

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
            level: LogLevel::Info,
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
