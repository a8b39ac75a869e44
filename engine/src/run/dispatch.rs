//! The dispatcher: the queue of accepted runs, and which of them starts next.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::{Waiters, execute};
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::store::{RunId, Store};

/// How many bytes of request body the runs that execute at once may hold, when `serve` is not
/// told (`--payload-budget`): the largest body a flow may take, so that one such run executes
/// alone and small ones by the hundred.
pub const DEFAULT_PAYLOAD_BUDGET: u64 = crate::flow::MAX_MAX_BODY;

/// The bytes of request body executing runs may hold at once, beside their number: a run's
/// body is read, decoded and mapped into its steps' inputs, several times its size in memory
/// (see `weir-bench memory`), so a few large bodies can take more memory than hundreds of
/// small ones. A run reserves its body's size before its request is read; a body larger than
/// the whole budget runs alone. Counted in KiB, the semaphore's permits.
#[derive(Clone)]
pub(super) struct PayloadBudget {
    /// `None`: no budget (`--payload-budget 0`).
    permits: Option<Arc<Semaphore>>,
    total: u32,
}

impl PayloadBudget {
    pub(super) fn new(bytes: u64) -> PayloadBudget {
        let total = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        PayloadBudget {
            permits: (total > 0).then(|| Arc::new(Semaphore::new(total as usize))),
            total,
        }
    }

    /// Waits until `body` bytes fit in the budget (all of it, for a larger body) and holds
    /// them until the permit is dropped.
    async fn reserve(&self, body: u64) -> Option<OwnedSemaphorePermit> {
        let permits = self.permits.as_ref()?;
        let want = u32::try_from(body.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total);
        if want == 0 {
            return None;
        }
        permits.clone().acquire_many_owned(want).await.ok()
    }
}

/// A run handed to the dispatcher: its id, and its body's size when the caller knows it.
pub(super) type Queued = (RunId, Option<u64>);

/// Starts queued runs as slots free up.
pub(super) struct Dispatcher {
    pub(super) catalog: Catalog,
    pub(super) store: Store,
    pub(super) waiters: Arc<Waiters>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) closed: watch::Receiver<bool>,
    pub(super) budget: PayloadBudget,
    pub(super) metrics: Arc<Metrics>,
}

impl Dispatcher {
    /// Runs until the executor closes. A run stopped here stays queued in the store and runs
    /// at the next start.
    pub(super) async fn run(mut self, mut incoming: mpsc::UnboundedReceiver<Queued>) {
        loop {
            let mut closed = self.closed.clone();
            let queued = tokio::select! {
                biased;
                () = closing(&mut closed) => return,
                queued = incoming.recv() => match queued {
                    Some(queued) => queued,
                    None => return,
                },
            };
            if !self.launch(queued).await {
                return;
            }
        }
    }

    /// Starts `id` once a slot is free; false when the executor closed first.
    async fn launch(&mut self, (id, body): Queued) -> bool {
        let slot = tokio::select! {
            biased;
            () = closing(&mut self.closed) => return false,
            slot = self.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return false,
            },
        };
        let (catalog, store, waiters, budget, metrics) = (
            self.catalog.clone(),
            self.store.clone(),
            self.waiters.clone(),
            self.budget.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            // Recovered runs come without their size: the run's record has it, without its
            // body.
            let body = match body {
                Some(body) => body,
                None => store
                    .get_run(id)
                    .ok()
                    .flatten()
                    .map_or(0, |run| run.body_size),
            };
            let payload = budget.reserve(body).await;
            match execute(&catalog, &store, id, &waiters, &metrics).await {
                Some(result) => waiters.notify(id, result),
                // Not run here: a sender waiting for it gets its 202 at once.
                None => waiters.forget(id),
            }
            drop(payload);
            drop(slot);
        });
        true
    }
}

/// Hands a run to the dispatcher.
pub(super) fn enqueue(queue: &mpsc::UnboundedSender<Queued>, queued: Queued) {
    let id = queued.0;
    if queue.send(queued).is_err() {
        // Only when shutting down; the run stays queued in the store and resumes at the next
        // start.
        tracing::debug!(run = %id, "executor stopped; run left queued");
    }
}

/// Returns once the executor is closing.
async fn closing(closed: &mut watch::Receiver<bool>) {
    // An error means the executor is gone: closing too.
    let _ = closed.wait_for(|closing| *closing).await;
}
