//! Retrying runs: the timers that resume them when their next attempt is due, and where a
//! resumed run picks up.
//!
//! A run whose step failed with attempts left is set `retrying` in the store (durably, with
//! the time of its next attempt) and leaves its worker: nothing holds a slot while it waits. A
//! timer task hands it back to the dispatcher at its time; the claim that follows makes it
//! running again with its step records kept, and its steps resume at the failed one, the
//! earlier ones' outputs read back from their records. After a restart, recovery sets a timer
//! for every retrying run (at once for those already due).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use serde_json::Value;
use tokio::sync::mpsc;

use super::dispatch::{Queued, Retry, enqueue, recovered};
use super::steps::{Resume, set_output};
use crate::catalog::Catalog;
use crate::flow::Flow;
use crate::store::Store;
use crate::store::{RunId, StepRecord, StepStatus};

/// Hands runs back to the dispatcher, now or later.
#[derive(Clone)]
pub(super) struct Timer {
    queue: mpsc::UnboundedSender<Queued>,
    runtime: tokio::runtime::Handle,
    /// To queue a run where its flow's `order_by` and `concurrency` say.
    catalog: Catalog,
    store: Store,
    /// Runs whose next attempt is scheduled and not yet due.
    waiting: Arc<AtomicUsize>,
}

impl Timer {
    pub(super) fn new(
        queue: mpsc::UnboundedSender<Queued>,
        runtime: tokio::runtime::Handle,
        catalog: Catalog,
        store: Store,
    ) -> Timer {
        Timer {
            queue,
            runtime,
            catalog,
            store,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs waiting for their next attempt (retrying, not yet due).
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Queues `id` at `at` (at once when that has passed). The waiting task holds no slot; it
    /// dies with the executor, and the run stays retrying in the store for the next start.
    pub(super) fn schedule(&self, id: RunId, at: SystemTime) {
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        let this = self.clone();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.runtime.spawn(async move {
            tokio::time::sleep(wait).await;
            this.waiting.fetch_sub(1, Ordering::Relaxed);
            let mut queued = recovered(&this.catalog, &this.store, id).await;
            queued.retry = Retry::Resume;
            enqueue(&this.queue, queued);
        });
    }

    /// Queues `id` now, for a run just accepted whose request body is `body` bytes.
    pub(super) fn submit(&self, id: RunId, body: u64) {
        let this = self.clone();
        self.runtime.spawn(async move {
            let mut queued = recovered(&this.catalog, &this.store, id).await;
            queued.body = Some(body);
            enqueue(&this.queue, queued);
        });
    }
}

/// Where a run resumed after a retry picks up, from its step records: the last record is the
/// failed step (with its attempts), and the records before it give the earlier steps'
/// outputs, which are put into `context`. `None` when the records are not those of a retry
/// (the run then runs from its first step).
///
/// The outputs are read back as stored, with the flow's `${ENV}` values masked: a later step
/// that maps a secret out of an earlier step's output sees the mask after a retry.
pub(super) fn resume_point(
    flow: &Flow,
    records: &[StepRecord],
    context: &mut Value,
) -> Option<Resume> {
    let (failed, earlier) = records.split_last()?;
    let index = failed.index as usize;
    if failed.status != StepStatus::Failed
        || failed.attempts.is_empty()
        || index >= flow.steps.len()
        || earlier.len() != index
    {
        return None;
    }
    for (position, record) in earlier.iter().enumerate() {
        let step = flow.steps.get(position)?;
        if record.index as usize != position || record.step_id != step.id.as_str() {
            return None;
        }
        match record.status {
            StepStatus::Succeeded => {
                set_output(
                    context,
                    step,
                    record.output.clone().unwrap_or(Value::Null),
                    false,
                );
            }
            StepStatus::Skipped => set_output(context, step, Value::Null, true),
            StepStatus::Failed | StepStatus::Filtered => return None,
        }
    }
    Some(Resume {
        index,
        attempts: failed.attempts.clone(),
    })
}
