//! Reads over a run history: searching runs by their request, a flow's stats, replay links
//! and previous URL tokens.
//!
//! Like every read, they run on a read transaction's snapshot. A search reads the requests
//! of the runs it scans, so it is bounded by a scan limit; stats read only the
//! `finished_by_flow` index and the live runs, never a request or an outcome.

use std::collections::BTreeMap;
use std::time::SystemTime;

use redb::ReadableDatabase;

use super::Store;
use super::error::StoreError;
use super::query::{id_bounds, live_of_flow, page_of, scan};
use super::tables::{
    Envelope, FINISHED_BY_FLOW, LIVE, NO_DURATION, PREVIOUS_TOKENS, REPLAYS, REQUESTS,
    RUNS_BY_FLOW, bundle,
};
use super::types::{RawRequest, RunFilter, RunId, RunStatus, Search, WindowStats, from_ms, to_ms};

/// A flow's stats over the last hour and the last day, by the time runs were received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub last_hour: WindowStats,
    pub last_day: WindowStats,
}

impl Store {
    /// Runs matching `filter` (flow, status, time window, cursor) for which `test` holds,
    /// newest first: like [`Store::list_runs`], but each run's request is read and tested.
    ///
    /// At most `scan_limit` runs are tested. When the limit stops the scan before the page
    /// is full, the answer says so (`truncated`) and its cursor goes on after the last run
    /// tested, so a client pages through the whole history a bounded step at a time. A run
    /// whose request cannot be read is listed (as damaged) rather than hidden.
    pub fn search_runs(
        &self,
        filter: &RunFilter,
        scan_limit: u64,
        test: &mut dyn FnMut(RunId, RawRequest) -> bool,
    ) -> Result<Search, StoreError> {
        let limit = filter.limit.min(RunFilter::MAX_LIMIT);
        let want = limit + 1;
        let (before, lower) = id_bounds(filter);
        let txn = self.inner.db.begin_read()?;
        let requests = txn.open_table(REQUESTS)?;
        let mut stored = bundle::Descending::new(&requests);
        let mut ids = Vec::with_capacity(want);
        let mut scanned = 0u64;
        let mut last_scanned = None;
        let mut at_limit = false;
        let mut failure = None;
        let mut matches = |id: u128| {
            if id < lower || limit == 0 {
                return false;
            }
            if scanned >= scan_limit {
                at_limit = true;
                return false;
            }
            scanned += 1;
            last_scanned = Some(id);
            let run = RunId::from(id);
            let matched = match stored.find(run) {
                Ok(Some(bytes)) => match Envelope::decode(run, bytes) {
                    Ok(decoded) => test(run, decoded.into_request()),
                    Err(_) => true,
                },
                Ok(None) | Err(StoreError::Corrupt(_)) => true,
                Err(other) => {
                    failure = Some(other);
                    return false;
                }
            };
            if matched {
                ids.push(id);
            }
            ids.len() < want
        };
        scan(
            &txn,
            filter.flow.as_deref(),
            filter.status,
            before,
            &mut matches,
        )?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        let more = ids.len() > limit;
        ids.truncate(limit);
        let (next_cursor, truncated) = if more {
            (ids.last().map(|&key| RunId::from(key)), false)
        } else if at_limit {
            (last_scanned.map(RunId::from), true)
        } else {
            (None, false)
        };
        Ok(Search {
            page: page_of(&txn, &ids, next_cursor)?,
            scanned,
            truncated,
        })
    }

    /// The flow's runs received in the last hour and the last day (before `now`): counts by
    /// status, and p50/p95 of the finished runs' durations. Reads one index entry per
    /// finished run in the day, and the live runs.
    pub fn flow_stats(&self, flow_id: &str, now: SystemTime) -> Result<FlowStats, StoreError> {
        let now_ms = to_ms(now);
        let hour = u128::from(now_ms.saturating_sub(3_600_000)) << 80;
        let day = u128::from(now_ms.saturating_sub(86_400_000)) << 80;
        let txn = self.inner.db.begin_read()?;
        let mut hour_stats = Window::default();
        let mut day_stats = Window::default();
        let finished = txn.open_table(FINISHED_BY_FLOW)?;
        for entry in finished.range((flow_id, day)..=(flow_id, u128::MAX))? {
            let (key, value) = entry?;
            let id = key.value().1;
            let (code, duration) = value.value();
            let status = RunStatus::from_code(code).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "run {} is indexed with status code {code}",
                    RunId::from(id)
                ))
            })?;
            day_stats.add(status, duration);
            if id >= hour {
                hour_stats.add(status, duration);
            }
        }
        let (live, requests) = (txn.open_table(LIVE)?, txn.open_table(REQUESTS)?);
        for entry in live_of_flow(&live, &requests, flow_id, None)? {
            let (id, (code, _, _)) = entry?;
            if id < day {
                // Newest first: the rest are older still.
                break;
            }
            let Some(status) = RunStatus::from_code(code) else {
                continue;
            };
            day_stats.add(status, NO_DURATION);
            if id >= hour {
                hour_stats.add(status, NO_DURATION);
            }
        }
        Ok(FlowStats {
            last_hour: hour_stats.finish(),
            last_day: day_stats.finish(),
        })
    }

    /// How many of the flow's runs were received at or after `since`, counting at most `cap`
    /// (then `true`: there are more). Reads the flow's index of finished runs and the live
    /// runs, never a finished run's records.
    pub fn count_runs_since(
        &self,
        flow_id: &str,
        since: SystemTime,
        cap: u64,
    ) -> Result<(u64, bool), StoreError> {
        let from = u128::from(to_ms(since)) << 80;
        let txn = self.inner.db.begin_read()?;
        let by_flow = txn.open_table(RUNS_BY_FLOW)?;
        let mut count = 0;
        for entry in by_flow.range((flow_id, from)..=(flow_id, u128::MAX))? {
            entry?;
            if count == cap {
                return Ok((count, true));
            }
            count += 1;
        }
        let (live, requests) = (txn.open_table(LIVE)?, txn.open_table(REQUESTS)?);
        for entry in live_of_flow(&live, &requests, flow_id, None)? {
            let (id, _) = entry?;
            if id < from {
                // Newest first: the rest are older still.
                break;
            }
            // A store written by an earlier Weir also indexed live runs: counted above.
            if by_flow.get((flow_id, id))?.is_some() {
                continue;
            }
            if count == cap {
                return Ok((count, true));
            }
            count += 1;
        }
        Ok((count, false))
    }

    /// The runs replaying run `id`, oldest first.
    pub fn replays_of(&self, id: RunId) -> Result<Vec<RunId>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(REPLAYS)?;
        let key = id.as_u128();
        let mut out = Vec::new();
        for entry in table.range((key, 0)..=(key, u128::MAX))? {
            out.push(RunId::from(entry?.0.value().1));
        }
        Ok(out)
    }

    /// The flow's token before its latest rotation and until when it is accepted, if the
    /// flow was ever rotated (the time may be past).
    pub fn previous_token(
        &self,
        flow_id: &str,
    ) -> Result<Option<(String, SystemTime)>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(PREVIOUS_TOKENS)?;
        Ok(table.get(flow_id)?.map(|guard| {
            let (token, until_ms) = guard.value();
            (token.to_owned(), from_ms(until_ms))
        }))
    }
}

/// Counts and durations of one window, being gathered.
#[derive(Default)]
struct Window {
    counts: BTreeMap<String, u64>,
    durations: Vec<u64>,
}

impl Window {
    fn add(&mut self, status: RunStatus, duration_ms: u64) {
        *self.counts.entry(status.as_str().to_owned()).or_default() += 1;
        if duration_ms != NO_DURATION {
            self.durations.push(duration_ms);
        }
    }

    fn finish(mut self) -> WindowStats {
        self.durations.sort_unstable();
        WindowStats {
            p50_ms: percentile(&self.durations, 50),
            p95_ms: percentile(&self.durations, 95),
            counts: self.counts,
        }
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `p`% of
/// the values at or below it.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::percentile;
    use crate::store::tests::{new_run, temp};
    use crate::store::{RunOutcome, Store};

    #[tokio::test]
    async fn runs_since_are_counted_per_flow_up_to_the_cap() {
        let (_dir, path) = temp();
        let store = Store::open(&path).unwrap();
        // Run ids carry the time they were accepted.
        let before = SystemTime::now() - Duration::from_secs(60);
        let mut a = Vec::new();
        for flow in ["a", "a", "a", "b"] {
            a.push(store.accept(new_run(flow, b"{}")).await.unwrap().id);
        }
        // Live and finished runs alike.
        store.start_run(a[0]).await.unwrap();
        store
            .finish_run(a[0], RunOutcome::Succeeded, None)
            .await
            .unwrap();
        assert_eq!(store.count_runs_since("a", before, 10).unwrap(), (3, false));
        assert_eq!(store.count_runs_since("a", before, 3).unwrap(), (3, false));
        assert_eq!(store.count_runs_since("a", before, 2).unwrap(), (2, true));
        assert_eq!(store.count_runs_since("b", before, 10).unwrap(), (1, false));
        assert_eq!(store.count_runs_since("c", before, 10).unwrap(), (0, false));
        let later = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(store.count_runs_since("a", later, 10).unwrap(), (0, false));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), Some(50));
        assert_eq!(percentile(&values, 95), Some(95));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[1, 2], 50), Some(1));
        assert_eq!(percentile(&[], 50), None);
    }
}
