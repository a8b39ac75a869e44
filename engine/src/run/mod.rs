//! Running flows: the queue of accepted runs, a bounded pool of workers, and recovery after a
//! restart.
//!
//! The gateway hands each accepted run's id to [`Executor::submit`]. A dispatcher starts a
//! task per run while fewer than `concurrency` runs are in flight; plugin calls go to tokio's
//! blocking pool (they are synchronous wasmtime calls). Each run is marked running (durably,
//! so a crash from then on counts as an attempt), its steps execute in order and are recorded
//! as they finish, and its final status is written. At startup, [`Executor::recover`] submits
//! every run the store still has queued or running.

pub mod payload;
mod steps;

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use crate::catalog::Catalog;
use crate::store::{RunId, RunOutcome, StepRecord, Store, StoreError};

pub use steps::{Outcome, RunInfo, StepSink, execute_steps};

/// The pool of workers that runs accepted runs.
#[derive(Clone)]
pub struct Executor {
    queue: mpsc::UnboundedSender<RunId>,
}

impl Executor {
    /// Starts the dispatcher; at most `concurrency` runs execute at once.
    pub fn start(catalog: Catalog, store: Store, concurrency: usize) -> Executor {
        let (queue, mut incoming) = mpsc::unbounded_channel::<RunId>();
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        tokio::spawn(async move {
            while let Some(id) = incoming.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (catalog, store) = (catalog.clone(), store.clone());
                tokio::spawn(async move {
                    execute(&catalog, &store, id).await;
                    drop(slot);
                });
            }
        });
        Executor { queue }
    }

    /// Queues a run that the store has accepted.
    pub fn submit(&self, id: RunId) {
        if self.queue.send(id).is_err() {
            // Only when shutting down; the run stays queued in the store and resumes at the
            // next start.
            tracing::debug!(run = %id, "executor stopped; run left queued");
        }
    }

    /// Submits every run the store still holds live (queued, or cut off while running).
    pub async fn recover(&self, store: &Store) -> Result<usize, StoreError> {
        let ids = store.recover().await?;
        let n = ids.len();
        for id in ids {
            self.submit(id);
        }
        if n > 0 {
            tracing::info!(runs = n, "resuming runs left from before the restart");
        }
        Ok(n)
    }
}

struct StoreSink<'a> {
    store: &'a Store,
    id: RunId,
}

impl StepSink for StoreSink<'_> {
    async fn record(&mut self, step: StepRecord) {
        // Queued in order before the run's finish; not awaited, so a run costs two writer
        // round trips (start, finish) whatever its number of steps.
        self.store.record_step_detached(self.id, step);
    }
}

/// Runs one accepted run to its end.
async fn execute(catalog: &Catalog, store: &Store, id: RunId) {
    let run = match store.start_run(id).await {
        Ok(run) => run,
        Err(StoreError::Conflict(_)) => return, // already finished: a duplicate submit
        Err(e) => {
            tracing::error!(run = %id, error = %e, "cannot start run; it stays queued");
            return;
        }
    };
    let finish = |outcome, error: Option<String>| async move {
        if let Err(e) = store.finish_run(id, outcome, error).await {
            tracing::error!(run = %id, error = %e, "recording the end of a run");
        }
    };
    let request = match store.get_request(id) {
        Ok(Some(request)) => request,
        Ok(None) => {
            return finish(
                RunOutcome::Failed,
                Some("the webhook request is missing".into()),
            )
            .await;
        }
        Err(e) => {
            return finish(
                RunOutcome::Failed,
                Some(format!("reading the request: {e}")),
            )
            .await;
        }
    };
    let live = match catalog.flow_version(&run.flow_id, &run.flow_version).await {
        Ok(live) => live,
        Err(message) => return finish(RunOutcome::Failed, Some(message)).await,
    };
    let webhook = payload::webhook_document_for(&run, &request);
    let info = RunInfo {
        run_id: id.to_string(),
        attempt: run.attempt,
    };
    let mut sink = StoreSink { store, id };
    let outcome = execute_steps(live, webhook, &info, &mut sink).await;
    tracing::debug!(run = %id, flow = %run.flow_id, outcome = ?outcome.outcome, "run finished");
    finish(outcome.outcome, outcome.error).await;
}
