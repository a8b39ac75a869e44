//! Reads: plain read transactions on a snapshot, from any thread, never through the writer.
//!
//! They are synchronous and short (a page of runs is a few dozen B-tree lookups); from async
//! code, call them in `tokio::task::spawn_blocking` when a read may be large (a big body, a
//! run with many steps).

use std::ops::Bound;
use std::time::{Duration, SystemTime};

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
};

use super::Store;
use super::error::StoreError;
use super::tables::{
    DEDUPE, DONE_BY_FLOW_STATUS, DONE_BY_STATUS, Envelope, FLOW_VERSION_PLUGINS, FLOW_VERSIONS,
    LIVE, OUTCOMES, PLUGINS, REQUESTS, RUNS_BY_FLOW, STEPS, State, TOKENS, bundle, decode, run_of,
};
use super::types::{
    DamagedRun, Page, RawRequest, Run, RunFilter, RunId, RunStatus, StepRecord, from_ms,
};

/// A dedupe value of a flow and the run it names.
pub(super) type DedupeEntry = (String, u128);

impl Store {
    /// The run, or `None` if there is no such run.
    pub fn get_run(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        run_of(
            &txn.open_table(REQUESTS)?,
            &txn.open_table(LIVE)?,
            &txn.open_table(OUTCOMES)?,
            id,
        )
    }

    /// The steps of the run's latest attempt, by index; empty for an unknown run.
    pub fn get_steps(&self, id: RunId) -> Result<Vec<StepRecord>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let steps = txn.open_table(STEPS)?;
        let key = id.as_u128();
        let mut out = Vec::new();
        for entry in steps.range((key, 0)..=(key, u32::MAX))? {
            let (k, v) = entry?;
            let (_, index) = k.value();
            out.push(decode(format_args!("step {index} of run {id}"), v.value())?);
        }
        Ok(out)
    }

    /// The request as it arrived, body included, or `None` if there is no such run.
    pub fn get_request(&self, id: RunId) -> Result<Option<RawRequest>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let requests = txn.open_table(REQUESTS)?;
        let Some(found) = bundle::find(&requests, id)? else {
            return Ok(None);
        };
        Ok(Some(Envelope::decode(id, found.bytes())?.into_request()))
    }

    /// The source of a stored flow version.
    pub fn flow_version(&self, flow_id: &str, version: &str) -> Result<Option<String>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let versions = txn.open_table(FLOW_VERSIONS)?;
        Ok(versions
            .get((flow_id, version))?
            .map(|guard| guard.value().to_owned()))
    }

    /// The content hashes of a stored flow version's plugins, in step order; `None` for a
    /// version stored before plugins were kept with it.
    pub fn flow_version_plugins(
        &self,
        flow_id: &str,
        version: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(FLOW_VERSION_PLUGINS)?;
        Ok(table.get((flow_id, version))?.map(|guard| {
            let hashes = guard.value();
            if hashes.is_empty() {
                Vec::new()
            } else {
                hashes.split(',').map(str::to_owned).collect()
            }
        }))
    }

    /// A plugin's bytes by content hash, as a flow version stored them.
    pub fn plugin_blob(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(PLUGINS)?;
        Ok(table.get(hash)?.map(|guard| guard.value().to_vec()))
    }

    /// The flow's webhook token if one was made; see [`Store::token_for`].
    pub fn token(&self, flow_id: &str) -> Result<Option<String>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let tokens = txn.open_table(TOKENS)?;
        Ok(tokens.get(flow_id)?.map(|guard| guard.value().to_owned()))
    }

    /// Runs, newest first, filtered by flow and/or status, one page at a time.
    ///
    /// Without a filter and by a final status, a page costs `limit` index lookups whatever the
    /// number of runs. Queued and running runs are found by scanning the live runs (only
    /// unfinished ones), newest first; by flow, a page merges that flow's finished runs (an
    /// index) with its live runs (that scan, reading each live run's flow). Pages follow one another by `cursor` without
    /// duplicates or gaps; runs accepted after the first page are newer than every cursor, so
    /// they never shift later pages.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Page, StoreError> {
        let limit = filter.limit.min(RunFilter::MAX_LIMIT);
        if limit == 0 {
            return Ok(Page {
                runs: Vec::new(),
                damaged: Vec::new(),
                next_cursor: None,
            });
        }
        // One more than asked, to know whether there is a next page.
        let want = limit + 1;
        let (before, lower) = id_bounds(filter);
        let txn = self.inner.db.begin_read()?;
        let mut ids = Vec::with_capacity(want);
        let mut matches = |id: u128| {
            if id < lower {
                return false;
            }
            ids.push(id);
            ids.len() < want
        };
        scan(
            &txn,
            filter.flow.as_deref(),
            filter.status,
            before,
            &mut matches,
        )?;

        let more = ids.len() > limit;
        ids.truncate(limit);
        let next_cursor = if more {
            ids.last().map(|&key| RunId::from(key))
        } else {
            None
        };
        page_of(&txn, &ids, next_cursor)
    }

    /// How many runs match: constant without a filter; linear in the answer for a final
    /// status; linear in the live runs for `queued` or `running`, and for a flow, plus its
    /// finished runs.
    pub fn count_runs(
        &self,
        flow: Option<&str>,
        status: Option<RunStatus>,
    ) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        if flow.is_none() && status.is_none() {
            // Every run is either live or finished.
            return Ok(txn.open_table(LIVE)?.len()? + txn.open_table(OUTCOMES)?.len()?);
        }
        let mut count = 0;
        scan(&txn, flow, status, None, &mut |_| {
            count += 1;
            true
        })?;
        Ok(count)
    }

    /// Up to `limit` dedupe entries of the flow, as (value, run), whose run was accepted
    /// longer than `window` ago, in key order after the key `after`; and the key to go on after
    /// when `limit` was reached.
    pub(super) fn expired_dedupe(
        &self,
        flow_id: &str,
        window: Duration,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DedupeEntry>, Option<String>), StoreError> {
        let Some(cutoff) = SystemTime::now().checked_sub(window) else {
            return Ok((Vec::new(), None));
        };
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(DEDUPE)?;
        let lower = match after {
            Some(key) => Bound::Excluded((flow_id, key)),
            None => Bound::Included((flow_id, "")),
        };
        let mut expired = Vec::new();
        for entry in table.range::<(&str, &str)>((lower, Bound::Unbounded))? {
            let (key, run) = entry?;
            let (flow, value) = key.value();
            if flow != flow_id {
                break;
            }
            // The accept's test, negated: a first run at or after the cutoff still dedupes.
            if RunId::from(run.value()).timestamp() < cutoff {
                expired.push((value.to_owned(), run.value()));
                if expired.len() >= limit {
                    return Ok((expired, Some(value.to_owned())));
                }
            }
        }
        Ok((expired, None))
    }

    /// How many runs are live (queued, running or retrying).
    pub fn queue_len(&self) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        Ok(txn.open_table(LIVE)?.len()?)
    }

    /// Every retrying run with the time its next attempt is due, oldest run first.
    pub fn retrying_runs(&self) -> Result<Vec<(RunId, SystemTime)>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let mut runs = Vec::new();
        for entry in txn.open_table(LIVE)?.iter()? {
            let (id, live) = entry?;
            let id = RunId::from(id.value());
            let state = State::from_live(id, live.value())?;
            if let Some(at) = state.next_attempt_at_ms {
                runs.push((id, from_ms(at)));
            }
        }
        Ok(runs)
    }

    /// The oldest run still queued (accepted, not started), if any. The live runs ahead of
    /// it are running (at most the executor's concurrency) or retrying, so this reads few
    /// entries unless many runs wait for a retry.
    pub fn oldest_queued(&self) -> Result<Option<RunId>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        for entry in txn.open_table(LIVE)?.iter()? {
            let (id, live) = entry?;
            if live.value().0 == RunStatus::Queued.code() {
                return Ok(Some(RunId::from(id.value())));
            }
        }
        Ok(None)
    }
}

/// The page of these runs (newest first), each read with its state; a run whose records
/// cannot be read is reported in `damaged`, and the rest of the page still serves.
pub(super) fn page_of(
    txn: &ReadTransaction,
    ids: &[u128],
    next_cursor: Option<RunId>,
) -> Result<Page, StoreError> {
    let (requests, live, outcomes) = (
        txn.open_table(REQUESTS)?,
        txn.open_table(LIVE)?,
        txn.open_table(OUTCOMES)?,
    );
    let mut runs = Vec::with_capacity(ids.len());
    let mut damaged = Vec::new();
    for &key in ids {
        let id = RunId::from(key);
        match run_of(&requests, &live, &outcomes, id) {
            Ok(Some(run)) => runs.push(run),
            Ok(None) => damaged.push(DamagedRun {
                id,
                error: format!("run {id} is indexed but has no request"),
            }),
            Err(StoreError::Corrupt(error)) => damaged.push(DamagedRun { id, error }),
            Err(other) => return Err(other),
        }
    }
    Ok(Page {
        runs,
        damaged,
        next_cursor,
    })
}

/// The ids a filter's cursor and time window allow: below `before` (when set), and at or
/// above `lower`. A run id's top 48 bits are its acceptance time in milliseconds.
pub(super) fn id_bounds(filter: &RunFilter) -> (Option<u128>, u128) {
    let until = filter
        .until_ms
        .map(|ms| u128::from(ms.saturating_add(1)) << 80);
    let cursor = filter.cursor.map(RunId::as_u128);
    let before = match (cursor, until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let lower = filter.since_ms.map_or(0, |ms| u128::from(ms) << 80);
    (before, lower)
}

/// Calls `found` with the id of every run matching `flow` and `status` that is older than
/// `before`, newest first, until it returns false.
pub(super) fn scan(
    txn: &ReadTransaction,
    flow: Option<&str>,
    status: Option<RunStatus>,
    before: Option<u128>,
    found: &mut dyn FnMut(u128) -> bool,
) -> Result<(), StoreError> {
    match (flow, status) {
        (None, None) => {
            // Bundles hold increasing ids, so newest first is bundles from the last, each
            // read backwards.
            let table = txn.open_table(REQUESTS)?;
            let upper = before.map_or(Bound::Unbounded, Bound::Excluded);
            for entry in table.range::<u128>((Bound::Unbounded, upper))?.rev() {
                let (first, value) = entry?;
                let Ok(ids) = bundle::ids(first.value(), value.value()) else {
                    // Damaged: listed by its first run, which reads as damaged.
                    if !found(first.value()) {
                        return Ok(());
                    }
                    continue;
                };
                for id in ids.rev() {
                    if before.is_some_and(|before| id >= before) {
                        continue;
                    }
                    if !found(id) {
                        return Ok(());
                    }
                }
            }
        }
        (Some(flow), None) => {
            // Finished runs are in the flow index; live ones are not yet (it is written when
            // a run ends, so that accepting one appends to no per-flow page). Both come newest
            // first; a store written before that change also indexes live runs, hence the
            // equal ids.
            let index = txn.open_table(RUNS_BY_FLOW)?;
            let upper = before.map_or(Bound::Included((flow, u128::MAX)), |id| {
                Bound::Excluded((flow, id))
            });
            let mut finished = index
                .range((Bound::Included((flow, 0)), upper))?
                .rev()
                .map(|entry| entry.map(|(key, _)| key.value().1));
            let (live, requests) = (txn.open_table(LIVE)?, txn.open_table(REQUESTS)?);
            let mut live =
                live_of_flow(&live, &requests, flow, before)?.map(|r| r.map(|(id, _)| id));
            let mut next_finished = finished.next().transpose()?;
            let mut next_live = live.next().transpose()?;
            loop {
                let newest = match (next_finished, next_live) {
                    (Some(f), Some(l)) => f.max(l),
                    (Some(f), None) => f,
                    (None, Some(l)) => l,
                    (None, None) => break,
                };
                if next_finished == Some(newest) {
                    next_finished = finished.next().transpose()?;
                }
                if next_live == Some(newest) {
                    next_live = live.next().transpose()?;
                }
                if !found(newest) {
                    break;
                }
            }
        }
        (None, Some(status)) if !status.is_final() => {
            let live = txn.open_table(LIVE)?;
            let upper = before.map_or(Bound::Unbounded, Bound::Excluded);
            for entry in live.range::<u128>((Bound::Unbounded, upper))?.rev() {
                let (key, value) = entry?;
                let id = RunId::from(key.value());
                // A state that cannot be read is listed, and reads as damaged.
                let matches =
                    State::from_live(id, value.value()).map_or(true, |s| s.status == status);
                if matches && !found(id.as_u128()) {
                    break;
                }
            }
        }
        (Some(flow), Some(status)) if !status.is_final() => {
            let (live, requests) = (txn.open_table(LIVE)?, txn.open_table(REQUESTS)?);
            for entry in live_of_flow(&live, &requests, flow, before)? {
                let (id, value) = entry?;
                let matches =
                    State::from_live(RunId::from(id), value).map_or(true, |s| s.status == status);
                if matches && !found(id) {
                    break;
                }
            }
        }
        (None, Some(status)) => {
            let table = txn.open_table(DONE_BY_STATUS)?;
            let code = status.code();
            let upper = before.map_or(Bound::Included((code, u128::MAX)), |id| {
                Bound::Excluded((code, id))
            });
            for entry in table.range((Bound::Included((code, 0)), upper))?.rev() {
                if !found(entry?.0.value().1) {
                    break;
                }
            }
        }
        (Some(flow), Some(status)) => {
            let table = txn.open_table(DONE_BY_FLOW_STATUS)?;
            let code = status.code();
            let upper = before.map_or(Bound::Included((flow, code, u128::MAX)), |id| {
                Bound::Excluded((flow, code, id))
            });
            for entry in table
                .range((Bound::Included((flow, code, 0)), upper))?
                .rev()
            {
                if !found(entry?.0.value().2) {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// A live run's id and its [`LIVE`] value.
pub(super) type LiveRun = (u128, (u8, u32, u64));

/// The live runs of `flow` older than `before`, newest first, with their [`LIVE`] values. The
/// flow of each is read from its request: live runs are few, and this keeps the accept from
/// writing a per-flow index entry.
pub(super) fn live_of_flow<'a>(
    live: &'a ReadOnlyTable<u128, (u8, u32, u64)>,
    requests: &'a ReadOnlyTable<u128, &'static [u8]>,
    flow: &'a str,
    before: Option<u128>,
) -> Result<impl Iterator<Item = Result<LiveRun, StoreError>> + 'a, StoreError> {
    let upper = before.map_or(Bound::Unbounded, Bound::Excluded);
    let runs = live.range::<u128>((Bound::Unbounded, upper))?.rev();
    let mut stored = bundle::Descending::new(requests);
    Ok(runs.filter_map(move |entry| {
        let of_flow = || -> Result<Option<LiveRun>, StoreError> {
            let (key, value) = entry?;
            let id = RunId::from(key.value());
            let request = stored.find(id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("run {id} is live but has no request"))
            })?;
            Ok((Envelope::flow_of(id, request)? == flow).then(|| (key.value(), value.value())))
        };
        match of_flow() {
            // A run whose request cannot be read has no known flow: it is listed (as damaged)
            // among all runs, not among a flow's.
            Err(StoreError::Corrupt(_)) => None,
            other => other.transpose(),
        }
    }))
}
