//! Retention: the background pruner that keeps the store within `weir serve`'s limits
//! (`--retain`, `--retain-runs`, `--retain-bytes`) and each flow's `retain`.
//!
//! Every few seconds it finds the finished runs beyond a limit (reads on a snapshot) and has
//! the store delete them, oldest first, in small writes that wait behind accepts
//! (`Store::prune`). Live runs are never deleted. A run goes once it is beyond any limit: its
//! flow's or the global ones.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::store::{PRUNE_BATCH, RunId, Store, StoreError};

/// How often the pruner looks for runs beyond a limit.
pub const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// How long the pruner waits at least between two measures of the store's used bytes, as a
/// multiple of how long the last one took: the measure reads every page, so at most about a
/// twentieth of the time goes to it.
const MEASURE_SPACING: u32 = 20;

/// The least time between two measures of the used bytes when no byte limit asks for them
/// (they are shown by `/api/health`).
const MEASURE_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

/// The store-wide limits; `None`: no limit. Weir keeps every run unless told otherwise, as
/// it always has: which history matters is the operator's call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Finished runs received longer ago than this go.
    pub age: Option<Duration>,
    /// At most this many runs are kept (the oldest finished ones go).
    pub runs: Option<u64>,
    /// The store's used bytes (see `Store::used_bytes`) are kept under this.
    pub bytes: Option<u64>,
}

impl Limits {
    pub fn is_none(&self) -> bool {
        self.age.is_none() && self.runs.is_none() && self.bytes.is_none()
    }
}

/// The pruner's state between rounds.
pub struct Pruner {
    pub store: Store,
    pub catalog: Catalog,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// When the used bytes were last measured, and how long that took.
    measured: Option<(Instant, Duration)>,
}

impl Pruner {
    pub fn new(store: Store, catalog: Catalog, metrics: Arc<Metrics>, limits: Limits) -> Self {
        Pruner {
            store,
            catalog,
            metrics,
            limits,
            measured: None,
        }
    }

    /// Prunes now and every [`PRUNE_EVERY`] until `stopped`.
    pub async fn run(mut self, stopped: impl std::future::Future<Output = ()>) {
        let mut stopped = std::pin::pin!(stopped);
        loop {
            let round = self.round();
            tokio::select! {
                () = &mut stopped => return,
                result = round => if let Err(e) = result {
                    tracing::warn!(error = %e, "pruning runs failed; trying again later");
                },
            }
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(PRUNE_EVERY) => {}
            }
        }
    }

    /// One round: every limit in turn, each until nothing is beyond it.
    pub async fn round(&mut self) -> Result<(), StoreError> {
        let now = SystemTime::now();
        if let Some(age) = self.limits.age {
            let cutoff = now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
            self.prune_while("age", None, move |store| {
                store.finished_before(Some(cutoff), PRUNE_BATCH)
            })
            .await?;
        }
        if let Some(keep) = self.limits.runs {
            self.prune_while("runs", None, move |store| {
                let excess = store.holdings()?.runs.saturating_sub(keep);
                let take = usize::try_from(excess).map_or(PRUNE_BATCH, |n| n.min(PRUNE_BATCH));
                store.finished_before(None, take)
            })
            .await?;
        }
        let flows: Vec<(String, crate::flow::Retain)> = self
            .catalog
            .snapshot()
            .flows
            .values()
            .filter_map(|entry| {
                let retain = entry.live.as_ref()?.flow.retain;
                (retain != crate::flow::Retain::default()).then(|| (entry.id.clone(), retain))
            })
            .collect();
        for (flow, retain) in flows {
            if let Some(age) = retain.age {
                let cutoff = now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
                let id = flow.clone();
                self.prune_while("age", Some(&flow), move |store| {
                    store.flow_finished_beyond(&id, Some(cutoff), None, PRUNE_BATCH)
                })
                .await?;
            }
            if let Some(keep) = retain.runs {
                let id = flow.clone();
                self.prune_while("runs", Some(&flow), move |store| {
                    store.flow_finished_beyond(&id, None, Some(keep), PRUNE_BATCH)
                })
                .await?;
            }
        }
        self.keep_under_bytes().await
    }

    /// Deletes the runs `find` names until it names none (or none of them can go).
    async fn prune_while(
        &self,
        reason: &'static str,
        flow: Option<&str>,
        find: impl Fn(&Store) -> Result<Vec<RunId>, StoreError> + Send + Clone + 'static,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let (store, find) = (self.store.clone(), find.clone());
            let ids = tokio::task::spawn_blocking(move || find(&store))
                .await
                .map_err(|e| StoreError::Unavailable(format!("the pruner stopped: {e}")))??;
            if ids.is_empty() {
                break;
            }
            let pruned = self.store.prune(ids).await?;
            if pruned == 0 {
                break;
            }
            total += pruned;
            self.metrics.runs_pruned(reason, pruned);
        }
        if total > 0 {
            tracing::debug!(
                reason,
                flow = flow.unwrap_or("*"),
                runs = total,
                "pruned runs"
            );
        }
        Ok(total)
    }

    /// Measures the used bytes when due; over the byte limit, deletes the oldest finished runs
    /// in the share the excess is of what is used (the next round measures again).
    async fn keep_under_bytes(&mut self) -> Result<(), StoreError> {
        let due = match self.measured {
            None => true,
            Some((at, took)) => {
                let spacing = (took * MEASURE_SPACING).max(if self.limits.bytes.is_some() {
                    PRUNE_EVERY
                } else {
                    MEASURE_AT_LEAST_EVERY
                });
                at.elapsed() >= spacing
            }
        };
        if !due {
            return Ok(());
        }
        let started = Instant::now();
        let store = self.store.clone();
        let (used, holdings) = tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((store.used_bytes()?, store.holdings()?))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the pruner stopped: {e}")))??;
        self.measured = Some((Instant::now(), started.elapsed()));
        let Some(limit) = self.limits.bytes else {
            return Ok(());
        };
        if used <= limit || holdings.runs == 0 {
            return Ok(());
        }
        // The runs hold nearly all of the bytes: the excess's share of them goes, and a
        // twentieth more, so that the next measure finds the store under the limit.
        let share = (used - limit) as f64 / used as f64;
        let mut left = ((holdings.runs as f64 * share * 1.05).ceil() as u64).max(1);
        let mut pruned = 0;
        while left > 0 {
            let take = usize::try_from(left).map_or(PRUNE_BATCH, |n| n.min(PRUNE_BATCH));
            let store = self.store.clone();
            let ids = tokio::task::spawn_blocking(move || store.finished_before(None, take))
                .await
                .map_err(|e| StoreError::Unavailable(format!("the pruner stopped: {e}")))??;
            if ids.is_empty() {
                break;
            }
            let n = self.store.prune(ids).await?;
            if n == 0 {
                break;
            }
            pruned += n;
            left = left.saturating_sub(n);
            self.metrics.runs_pruned("bytes", n);
        }
        tracing::debug!(
            used,
            limit,
            runs = pruned,
            "pruned runs over the byte limit"
        );
        Ok(())
    }
}
