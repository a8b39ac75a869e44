//! The dispatcher: the queue of accepted runs, and which of them starts next.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::{Waiters, execute, steps};
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::store::{RunId, Store};

/// When runs wait for a burst of webhooks to pass (see [`Executor::start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// Webhooks a second above which the gateway is taking a burst in; 0: runs never wait.
    pub rate: u64,
    /// The longest a run waits for a burst to pass before it runs beside it.
    pub max_wait: Duration,
}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            rate: 1_000,
            max_wait: Duration::from_secs(10),
        }
    }
}

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

/// The window over which arrivals are counted against [`Burst::rate`].
const BURST_WINDOW: Duration = Duration::from_millis(100);

/// How often a run waiting for a burst to pass looks again.
const BURST_POLL: Duration = Duration::from_millis(5);

/// Counts webhooks in [`BURST_WINDOW`]s: the current one and the one before.
pub(super) struct Arrivals {
    /// Webhooks in a window that make a burst; 0: never.
    threshold: u64,
    started: Instant,
    window: AtomicU64,
    current: AtomicU64,
    previous: AtomicU64,
}

impl Arrivals {
    pub(super) fn new(rate: u64) -> Arrivals {
        let per_window = u128::from(rate) * BURST_WINDOW.as_millis();
        Arrivals {
            // At least 1, so that any rate above 0 can make a burst.
            threshold: u64::try_from(per_window.div_ceil(1000)).unwrap_or(u64::MAX),
            started: Instant::now(),
            window: AtomicU64::new(0),
            current: AtomicU64::new(0),
            previous: AtomicU64::new(0),
        }
    }

    fn window_now(&self) -> u64 {
        (self.started.elapsed().as_millis() / BURST_WINDOW.as_millis()) as u64
    }

    /// Counts one webhook. Racing callers may misplace a count at a window's edge; a burst is
    /// hundreds of webhooks, so that does not change the verdict.
    pub(super) fn note(&self) {
        let now = self.window_now();
        let seen = self.window.load(Ordering::Relaxed);
        if now != seen
            && self
                .window
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let finished = self.current.swap(0, Ordering::Relaxed);
            let previous = if now == seen + 1 { finished } else { 0 };
            self.previous.store(previous, Ordering::Relaxed);
        }
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether webhooks arrive at the rate of a burst: the threshold reached in the window now
    /// or the one before it.
    fn busy(&self) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let now = self.window_now();
        let seen = self.window.load(Ordering::Relaxed);
        let current = self.current.load(Ordering::Relaxed);
        if now == seen {
            current.max(self.previous.load(Ordering::Relaxed)) >= self.threshold
        } else if now == seen + 1 {
            current >= self.threshold
        } else {
            false
        }
    }
}

/// Starts queued runs as slots free up.
pub(super) struct Dispatcher {
    pub(super) catalog: Catalog,
    pub(super) store: Store,
    pub(super) waiters: Arc<Waiters>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) closed: watch::Receiver<bool>,
    pub(super) arrivals: Arc<Arrivals>,
    pub(super) max_wait: Duration,
    pub(super) concurrency: u32,
    pub(super) budget: PayloadBudget,
    pub(super) metrics: Arc<Metrics>,
}

impl Dispatcher {
    /// Runs until the executor closes. A run stopped here stays queued in the store and runs
    /// at the next start.
    pub(super) async fn run(
        mut self,
        mut incoming: mpsc::UnboundedReceiver<Queued>,
        mut urgent: mpsc::UnboundedReceiver<Queued>,
    ) {
        loop {
            let mut closed = self.closed.clone();
            let (id, waits) = tokio::select! {
                biased;
                () = closing(&mut closed) => return,
                Some(id) = urgent.recv() => (id, false),
                id = incoming.recv() => match id {
                    Some(id) => (id, true),
                    None => return,
                },
            };
            // Runs leave the queue in order, so only the first can have waited longest. Past
            // its wait, a run starts beside the burst, but only a few at a time (one per
            // core): a long burst still has most of the CPU, and its runs make progress.
            while waits
                && self.arrivals.busy()
                && (waited(id.0) < self.max_wait || self.executing() >= steps::cores())
            {
                tokio::select! {
                    biased;
                    () = closing(&mut closed) => return,
                    Some(first) = urgent.recv() => {
                        if !self.launch(first).await {
                            return;
                        }
                    }
                    () = tokio::time::sleep(BURST_POLL) => {}
                }
            }
            if !self.launch(id).await {
                return;
            }
        }
    }

    /// How many runs execute now.
    fn executing(&self) -> usize {
        (self.concurrency as usize).saturating_sub(self.slots.available_permits())
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

/// How long ago the run was accepted.
fn waited(id: RunId) -> Duration {
    std::time::SystemTime::now()
        .duration_since(id.timestamp())
        .unwrap_or_default()
}
