//! Reads: plain read transactions on a snapshot, from any thread, never through the writer.
//!
//! They are synchronous and short (a page of runs is a few dozen B-tree lookups); from async
//! code, call them in `tokio::task::spawn_blocking` when a read may be large (a big body, a
//! run with many steps).

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::Store;
use super::error::StoreError;
use super::tables::{
    BODIES, FLOW_VERSIONS, QUEUE, REQUESTS, RUNS, RUNS_BY_FLOW, RUNS_BY_FLOW_STATUS,
    RUNS_BY_STATUS, RequestRecord, RunRecord, STEPS, TOKENS, decode,
};
use super::types::{Page, RawRequest, Run, RunFilter, RunId, RunStatus, StepRecord, from_ms};

impl Store {
    /// The run, or `None` if there is no such run.
    pub fn get_run(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let runs = txn.open_table(RUNS)?;
        let Some(guard) = runs.get(id.as_u128())? else {
            return Ok(None);
        };
        let record: RunRecord = decode(format_args!("run {id}"), guard.value())?;
        Ok(Some(record.to_run(id)))
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
        let Some(guard) = requests.get(id.as_u128())? else {
            return Ok(None);
        };
        let record: RequestRecord = decode(format_args!("request of run {id}"), guard.value())?;
        let bodies = txn.open_table(BODIES)?;
        let body = bodies
            .get(id.as_u128())?
            .ok_or_else(|| StoreError::Corrupt(format!("the body of run {id} is missing")))?
            .value()
            .to_vec();
        Ok(Some(RawRequest {
            method: record.method,
            path: record.path,
            query: record.query,
            headers: record.headers,
            body,
            remote_addr: record.remote_addr,
            received_at: from_ms(record.received_at_ms),
        }))
    }

    /// The source of a stored flow version.
    pub fn flow_version(&self, flow_id: &str, version: &str) -> Result<Option<String>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let versions = txn.open_table(FLOW_VERSIONS)?;
        Ok(versions
            .get((flow_id, version))?
            .map(|guard| guard.value().to_owned()))
    }

    /// The flow's webhook token if one was made; see [`Store::token_for`].
    pub fn token(&self, flow_id: &str) -> Result<Option<String>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let tokens = txn.open_table(TOKENS)?;
        Ok(tokens.get(flow_id)?.map(|guard| guard.value().to_owned()))
    }

    /// Runs, newest first, filtered by flow and/or status, one page at a time.
    ///
    /// Filters use index tables, so a page costs `limit` lookups whatever the number of runs.
    /// Pages follow one another by `cursor` without duplicates or gaps; runs accepted after the
    /// first page are newer than every cursor, so they never shift later pages.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Page, StoreError> {
        let limit = filter.limit.min(RunFilter::MAX_LIMIT);
        if limit == 0 {
            return Ok(Page {
                runs: Vec::new(),
                next_cursor: None,
            });
        }
        // One more than asked, to know whether there is a next page.
        let want = limit + 1;
        let before = filter.cursor.map(RunId::as_u128);
        let txn = self.inner.db.begin_read()?;

        let mut ids = Vec::with_capacity(want);
        match (filter.flow.as_deref(), filter.status) {
            (None, None) => {
                let table = txn.open_table(RUNS)?;
                let upper = before.map_or(Bound::Unbounded, Bound::Excluded);
                for entry in table
                    .range::<u128>((Bound::Unbounded, upper))?
                    .rev()
                    .take(want)
                {
                    ids.push(entry?.0.value());
                }
            }
            (Some(flow), None) => {
                let table = txn.open_table(RUNS_BY_FLOW)?;
                let upper = before.map_or(Bound::Included((flow, u128::MAX)), |id| {
                    Bound::Excluded((flow, id))
                });
                let range = (Bound::Included((flow, 0)), upper);
                for entry in table.range(range)?.rev().take(want) {
                    ids.push(entry?.0.value().1);
                }
            }
            (None, Some(status)) => {
                let table = txn.open_table(RUNS_BY_STATUS)?;
                let code = status.code();
                let upper = before.map_or(Bound::Included((code, u128::MAX)), |id| {
                    Bound::Excluded((code, id))
                });
                let range = (Bound::Included((code, 0)), upper);
                for entry in table.range(range)?.rev().take(want) {
                    ids.push(entry?.0.value().1);
                }
            }
            (Some(flow), Some(status)) => {
                let table = txn.open_table(RUNS_BY_FLOW_STATUS)?;
                let code = status.code();
                let upper = before.map_or(Bound::Included((flow, code, u128::MAX)), |id| {
                    Bound::Excluded((flow, code, id))
                });
                let range = (Bound::Included((flow, code, 0)), upper);
                for entry in table.range(range)?.rev().take(want) {
                    ids.push(entry?.0.value().2);
                }
            }
        }

        let more = ids.len() > limit;
        ids.truncate(limit);
        let runs_table = txn.open_table(RUNS)?;
        let mut runs = Vec::with_capacity(ids.len());
        for key in ids {
            let id = RunId::from(key);
            let guard = runs_table.get(key)?.ok_or_else(|| {
                StoreError::Corrupt(format!("run {id} is indexed but has no record"))
            })?;
            let record: RunRecord = decode(format_args!("run {id}"), guard.value())?;
            runs.push(record.to_run(id));
        }
        let next_cursor = if more {
            runs.last().map(|run| run.id)
        } else {
            None
        };
        Ok(Page { runs, next_cursor })
    }

    /// How many runs match; counts index entries, so it is linear in the answer for a filter
    /// and constant without one.
    pub fn count_runs(
        &self,
        flow: Option<&str>,
        status: Option<RunStatus>,
    ) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let mut count = 0;
        match (flow, status) {
            (None, None) => return Ok(txn.open_table(RUNS)?.len()?),
            (Some(flow), None) => {
                let table = txn.open_table(RUNS_BY_FLOW)?;
                for entry in table.range((flow, 0)..=(flow, u128::MAX))? {
                    entry?;
                    count += 1;
                }
            }
            (None, Some(status)) => {
                let table = txn.open_table(RUNS_BY_STATUS)?;
                let code = status.code();
                for entry in table.range((code, 0)..=(code, u128::MAX))? {
                    entry?;
                    count += 1;
                }
            }
            (Some(flow), Some(status)) => {
                let table = txn.open_table(RUNS_BY_FLOW_STATUS)?;
                let code = status.code();
                for entry in table.range((flow, code, 0)..=(flow, code, u128::MAX))? {
                    entry?;
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// How many runs are live (queued or running).
    pub fn queue_len(&self) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        Ok(txn.open_table(QUEUE)?.len()?)
    }
}
