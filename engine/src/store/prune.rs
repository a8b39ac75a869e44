//! Retention's side of the store: which finished runs lie beyond a limit (read on a snapshot,
//! away from the writer), deleting them in small writes queued behind accepts, and what the
//! store holds (for `/api/health` and the byte limit).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};

use super::Store;
use super::error::StoreError;
use super::tables::{LIVE, OUTCOMES, REQUESTS, RUNS_BY_FLOW};
use super::types::{RunId, to_ms};
use super::writer::Op;

/// The most runs one prune write deletes: a transaction of this size takes a few
/// milliseconds, so the accepts queued behind it wait no longer than that.
pub const PRUNE_BATCH: usize = 256;

/// The most request bundles one prune write rewrites. Runs of a flow pruned on their own are
/// spread over bundles shared with other flows' runs, and each such bundle (up to 64 KiB) is
/// written again without them.
const PRUNE_BUNDLES: usize = 32;

/// What the store holds, for `/api/health`: cheap to read (counts kept by redb and the first
/// key of a table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Holdings {
    /// Runs kept, live and finished.
    pub runs: u64,
    /// Of those, the finished ones (the ones retention may delete).
    pub finished: u64,
    /// The oldest run's id, if any run is kept.
    pub oldest: Option<RunId>,
}

/// The id below every run received at `time` or later.
fn id_before(time: SystemTime) -> u128 {
    u128::from(to_ms(time)) << 80
}

impl Store {
    /// Deletes those of `ids` that are finished runs, with their request, steps, index entries
    /// and dedupe entries; live and unknown runs are left alone. Answers how many were deleted.
    ///
    /// The deletion goes to the writer in writes of at most [`PRUNE_BATCH`] runs, each of which
    /// waits for a transaction without accepts (or joins one after a short wait), so that
    /// retention never holds up webhooks.
    pub async fn prune(&self, ids: Vec<RunId>) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let store = self.clone();
        let chunks = tokio::task::spawn_blocking(move || store.prune_chunks(ids))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the prune stopped: {e}")))??;
        let mut pruned = 0;
        for ids in chunks {
            pruned += self.call(|reply| Op::Prune { ids, reply }).await?;
        }
        Ok(pruned)
    }

    /// `ids`, sorted and split into writes of at most [`PRUNE_BATCH`] runs and
    /// [`PRUNE_BUNDLES`] request bundles each.
    fn prune_chunks(&self, ids: Vec<RunId>) -> Result<Vec<Vec<RunId>>, StoreError> {
        let ids: BTreeSet<u128> = ids.into_iter().map(RunId::as_u128).collect();
        let txn = self.inner.db.begin_read()?;
        let requests = txn.open_table(REQUESTS)?;
        let mut chunks = Vec::new();
        let mut chunk = Vec::new();
        let mut bundles = 0;
        // The current bundle's key range: [first, next).
        let mut current: Option<(u128, u128)> = None;
        for key in ids {
            let same = current.is_some_and(|(first, next)| first <= key && key < next);
            if !same {
                let Some(entry) = requests.range(..=key)?.next_back() else {
                    continue;
                };
                let first = entry?.0.value();
                let next = match requests.range(first + 1..)?.next() {
                    Some(entry) => entry?.0.value(),
                    None => u128::MAX,
                };
                current = Some((first, next));
                bundles += 1;
            }
            if chunk.len() == PRUNE_BATCH || (!same && bundles > PRUNE_BUNDLES) {
                chunks.push(std::mem::take(&mut chunk));
                bundles = 1;
            }
            chunk.push(RunId::from(key));
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    /// Up to `limit` finished runs received before `before` (all of them without it), oldest
    /// first.
    pub fn finished_before(
        &self,
        before: Option<SystemTime>,
        limit: usize,
    ) -> Result<Vec<RunId>, StoreError> {
        let end = before.map_or(u128::MAX, id_before);
        let txn = self.inner.db.begin_read()?;
        let outcomes = txn.open_table(OUTCOMES)?;
        let mut ids = Vec::new();
        for entry in outcomes.range(..end)?.take(limit) {
            ids.push(RunId::from(entry?.0.value()));
        }
        Ok(ids)
    }

    /// Up to `limit` finished runs of `flow_id`, oldest first, that are received before
    /// `before` (when given) or are not among its `keep` newest finished runs (when given).
    /// Reads at most `keep` index entries to find where the newest end.
    pub fn flow_finished_beyond(
        &self,
        flow_id: &str,
        before: Option<SystemTime>,
        keep: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunId>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let by_flow = txn.open_table(RUNS_BY_FLOW)?;
        let mut end = before.map_or(0, id_before);
        if let Some(keep) = keep {
            // The newest run beyond the `keep` newest, and every older one, go.
            let mut newest = by_flow.range((flow_id, 0)..=(flow_id, u128::MAX))?.rev();
            let beyond = match usize::try_from(keep) {
                Ok(keep) => newest.nth(keep),
                Err(_) => None,
            };
            if let Some(entry) = beyond {
                end = end.max(entry?.0.value().1.saturating_add(1));
            }
        }
        let mut ids = Vec::new();
        if end == 0 {
            return Ok(ids);
        }
        let outcomes = txn.open_table(OUTCOMES)?;
        for entry in by_flow.range((flow_id, 0)..(flow_id, end))? {
            let key = entry?.0.value().1;
            // Stores written by an earlier Weir also index live runs by flow.
            if outcomes.get(key)?.is_some() {
                ids.push(RunId::from(key));
                if ids.len() == limit {
                    break;
                }
            }
        }
        Ok(ids)
    }

    /// How many runs the store keeps and its oldest: counts redb keeps, and one key.
    pub fn holdings(&self) -> Result<Holdings, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let live = txn.open_table(LIVE)?.len()?;
        let finished = txn.open_table(OUTCOMES)?.len()?;
        let oldest = txn
            .open_table(REQUESTS)?
            .first()?
            .map(|(first, _)| RunId::from(first.value()));
        Ok(Holdings {
            runs: live + finished,
            finished,
            oldest,
        })
    }

    /// The bytes the store's tables take in the file: what a compacted file would hold, and
    /// what stays in use when freed pages are reused. Walks every page of every table, so it
    /// reads about as much as the file holds: call it on a blocking thread, and not often.
    /// The result is also kept for [`Store::last_used_bytes`].
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let mut used = 0u64;
        for handle in txn.list_tables()? {
            let table = txn.open_untyped_table(handle.clone()).map_err(|e| {
                StoreError::Storage(format!("opening table {}: {e}", handle.name()))
            })?;
            let stats = table.stats()?;
            used += stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
        }
        let measured = (used, SystemTime::now());
        match self.inner.used.lock() {
            Ok(mut last) => *last = Some(measured),
            Err(poisoned) => *poisoned.into_inner() = Some(measured),
        }
        Ok(used)
    }

    /// The last [`Store::used_bytes`] measured, and when; `None` before the first.
    pub fn last_used_bytes(&self) -> Option<(u64, SystemTime)> {
        match self.inner.used.lock() {
            Ok(last) => *last,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// The age of the run `id` at `now`, zero for a run from the future.
pub fn age_of(id: RunId, now: SystemTime) -> Duration {
    now.duration_since(id.timestamp()).unwrap_or_default()
}
