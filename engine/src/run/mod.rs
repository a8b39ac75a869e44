//! Running flows: the queue of accepted runs, a bounded pool of workers, and recovery after a
//! restart.
//!
//! The gateway hands each accepted run's id to [`Executor::submit`], with where it queues
//! ([`Order`]: its flow, its `order_by` lane, its flow's `concurrency`). The dispatcher
//! (`dispatch`) starts a task per run while fewer than `concurrency` runs are in flight,
//! taking from flows in turn and keeping each lane's order; plugin calls (wasmtime
//! async calls that yield every few milliseconds) run on the executor's workers, one per core
//! at most. Each run is marked
//! running (durably, so a crash from then on counts as an attempt), its steps execute in order
//! and are recorded as they finish, and its final status is written. At startup, [`Executor::recover`] submits
//! every run the store still has queued or running.

pub mod content;
mod dispatch;
mod on_failure;
pub mod payload;
mod retry;
mod steps;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::store::{RunId, RunOutcome, RunStatus, StepRecord, StepStatus, Store, StoreError};

pub use dispatch::{DEFAULT_PAYLOAD_BUDGET, Order};
use dispatch::{Dispatcher, PayloadBudget, Queued, enqueue};
pub use steps::{
    FailedStep, Outcome, Resume, RunInfo, StepSink, execute_from, execute_steps, initial_context,
};

/// The pool of workers that runs accepted runs.
#[derive(Clone)]
pub struct Executor {
    queue: mpsc::UnboundedSender<Queued>,
    /// To read the `order_by` and `concurrency` of recovered runs' flow versions.
    catalog: Catalog,
    waiters: Arc<Waiters>,
    /// One permit per run that may execute at once; a run holds one while it executes.
    slots: Arc<Semaphore>,
    concurrency: u32,
    metrics: Arc<Metrics>,
    /// Tells the dispatcher to start no more runs.
    closing: watch::Sender<bool>,
    /// Resumes retrying runs at their time.
    timer: retry::Timer,
    _runtime: Arc<RunRuntime>,
}

/// How a run ended, for a sender waiting for it (`respond = "result"`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub outcome: RunOutcome,
    pub error: Option<String>,
    /// The output of the flow's last step (`null` when it was skipped or did not run).
    pub output: Value,
    /// The flow's `answer` read from the run context, when the run succeeded and the flow has
    /// one; `Err` with why when its mapping could not be read.
    pub answer: Option<Result<Value, String>>,
}

/// The most senders of `respond = "result"` flows that may wait for their runs at once. Past
/// it, a sender gets the usual `202` at once: a waiting sender holds a connection and a task,
/// and a flood of them must not exhaust either.
pub const MAX_WAITING_SENDERS: usize = 4096;

/// The least time between two warnings that senders were turned away, so that a flood of
/// them logs a line per interval with a count rather than a line per webhook.
const TURNED_AWAY_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Senders waiting for their run's result, by run; at most `capacity` at once.
struct Waiters {
    senders: Mutex<HashMap<RunId, oneshot::Sender<RunResult>>>,
    capacity: usize,
    /// Senders answered `202` at once because `capacity` others were waiting.
    turned_away: AtomicU64,
    /// When the last warning about them was logged, and the count it reported.
    warned: Mutex<Option<(Instant, u64)>>,
}

impl Waiters {
    fn new(capacity: usize) -> Waiters {
        Waiters {
            senders: Mutex::new(HashMap::new()),
            capacity,
            turned_away: AtomicU64::new(0),
            warned: Mutex::new(None),
        }
    }

    /// Registers a sender for `id`'s result; `None` when `capacity` senders already wait.
    fn add(self: &Arc<Self>, id: RunId) -> Option<Waiting> {
        let (sender, receiver) = oneshot::channel();
        {
            let mut senders = self.lock();
            if senders.len() >= self.capacity {
                drop(senders);
                self.turn_away(id);
                return None;
            }
            senders.insert(id, sender);
        }
        Some(Waiting {
            id,
            receiver,
            waiters: Arc::clone(self),
        })
    }

    /// Counts a sender turned away, and warns at most once per
    /// [`TURNED_AWAY_WARNING_EVERY`].
    fn turn_away(&self, id: RunId) {
        let total = self.turned_away.fetch_add(1, Ordering::Relaxed) + 1;
        let mut warned = self
            .warned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let since = match *warned {
            Some((at, _)) if at.elapsed() < TURNED_AWAY_WARNING_EVERY => return,
            Some((_, count)) => total.saturating_sub(count),
            None => total,
        };
        *warned = Some((Instant::now(), total));
        tracing::warn!(
            run = %id,
            turned_away = since,
            waiting = self.capacity,
            "too many senders wait for their results; answering 202 at once (a count since the \
             last such warning)"
        );
    }

    /// Whether a sender waits for `id`'s result.
    fn is_waiting(&self, id: RunId) -> bool {
        let senders = self.lock();
        !senders.is_empty() && senders.contains_key(&id)
    }

    /// Hands the result to the run's waiter, if one is still there.
    fn notify(&self, id: RunId, result: RunResult) {
        let waiter = {
            let mut senders = self.lock();
            if senders.is_empty() {
                return;
            }
            senders.remove(&id)
        };
        if let Some(waiter) = waiter {
            // The sender may have given up (timeout, disconnect): nothing to do then.
            let _ = waiter.send(result);
        }
    }

    /// Drops `id`'s waiter, if any: its sender stops waiting at once.
    fn forget(&self, id: RunId) {
        let waiter = self.lock().remove(&id);
        drop(waiter);
    }

    fn stats(&self) -> WaitStats {
        WaitStats {
            waiting: self.lock().len(),
            turned_away: self.turned_away.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, oneshot::Sender<RunResult>>> {
        // The map stays consistent whatever panicked while holding it.
        self.senders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Senders of `respond = "result"` flows, for `GET /api/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WaitStats {
    /// Waiting for their run's result now.
    pub waiting: usize,
    /// Answered `202` at once since the start, because [`MAX_WAITING_SENDERS`] others waited.
    pub turned_away: u64,
}

/// A sender's wait for its run's result. Dropping it (the sender timed out or hung up) frees
/// its place among the [`MAX_WAITING_SENDERS`].
pub struct Waiting {
    id: RunId,
    receiver: oneshot::Receiver<RunResult>,
    waiters: Arc<Waiters>,
}

impl Waiting {
    /// The run's result once it ends; `None` when the run will not end in this process (it
    /// was already started elsewhere, or the executor is stopping).
    pub async fn result(&mut self) -> Option<RunResult> {
        (&mut self.receiver).await.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.waiters.forget(self.id);
    }
}

/// The executor's own tokio runtime: plugin calls and the runs' outbound I/O stay off the
/// threads that answer webhooks.
struct RunRuntime(Option<tokio::runtime::Runtime>);

impl Drop for RunRuntime {
    fn drop(&mut self) {
        // Runs cut off here are still live in the store and run again after a restart.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Executor {
    /// Starts the dispatcher; at most `concurrency` runs execute at once.
    ///
    /// Runs start as soon as a slot is free: the one rule that puts accepts ahead of runs is
    /// the store writer's (see `store::writer`), which commits every waiting accept before
    /// run progress, so a burst of webhooks is answered at the speed of small commits while
    /// runs keep going with their share.
    ///
    /// Beside their number, executing runs hold at most `payload_budget` bytes of request body
    /// at once (0: no budget): a run waits for room for its body before its request is read.
    /// Finished runs and the steps they ran are counted in `metrics`.
    pub fn start(
        catalog: Catalog,
        store: Store,
        concurrency: usize,
        payload_budget: u64,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Executor> {
        // Plugin calls run on these workers (see `steps::CALL_SLOTS`), at most one per core; the
        // one more worker takes claims, records and finishes while every core runs wasm.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(steps::cores() + 1)
            .thread_name("weir-run")
            .enable_time()
            // Steps' outbound HTTP calls (name lookups, sockets) run on these workers.
            .enable_io()
            .build()?;
        let (queue, incoming) = mpsc::unbounded_channel::<Queued>();
        // Semaphore permits are u32; more runs at once than that would not fit in memory anyway.
        let concurrency = u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX);
        let slots = Arc::new(Semaphore::new(concurrency as usize));
        let waiters = Arc::new(Waiters::new(MAX_WAITING_SENDERS));
        let (closing, closed) = watch::channel(false);
        let timer = retry::Timer::new(
            queue.clone(),
            runtime.handle().clone(),
            catalog.clone(),
            store.clone(),
        );
        let dispatcher = Dispatcher {
            timer: timer.clone(),
            catalog: catalog.clone(),
            store,
            waiters: waiters.clone(),
            slots: slots.clone(),
            closed,
            budget: PayloadBudget::new(payload_budget),
            metrics: metrics.clone(),
        };
        runtime.spawn(dispatcher.run(incoming));
        Ok(Executor {
            queue,
            catalog,
            waiters,
            slots,
            concurrency,
            metrics,
            closing,
            timer,
            _runtime: Arc::new(RunRuntime(Some(runtime))),
        })
    }

    /// For a graceful stop: starts no more runs and waits up to `grace` for the runs already
    /// executing to finish. Returns how many were still executing when `grace` ran out; those
    /// are cut off when the executor is dropped and run again at the next start (their attempt
    /// counted), like queued runs that never started.
    pub async fn drain(&self, grace: Duration) -> usize {
        let _ = self.closing.send(true);
        let all = self.slots.acquire_many(self.concurrency);
        match tokio::time::timeout(grace, all).await {
            Ok(_) => 0,
            Err(_) => (self.concurrency as usize).saturating_sub(self.slots.available_permits()),
        }
    }

    /// Queues a run and returns where its result will come once it ends, or `None` when
    /// [`MAX_WAITING_SENDERS`] already wait (the run is queued all the same). Dropping the
    /// [`Waiting`] gives up waiting; the run goes on either way.
    /// `body` is the size of the run's request body.
    pub fn submit_and_wait(&self, id: RunId, body: u64, order: Order) -> Option<Waiting> {
        let waiting = self.waiters.add(id);
        let body = Some(body);
        enqueue(
            &self.queue,
            Queued {
                id,
                body,
                order,
                retry: dispatch::Retry::No,
            },
        );
        waiting
    }

    /// How many runs execute now (each holds a slot from before its claim until it ends).
    pub fn executing(&self) -> usize {
        (self.concurrency as usize).saturating_sub(self.slots.available_permits())
    }

    /// Runs waiting for their next attempt after a step failed (retrying, not yet due).
    pub fn retrying(&self) -> usize {
        self.timer.waiting()
    }

    /// The metrics runs are counted in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// How many senders wait for their runs' results, and how many were turned away.
    pub fn wait_stats(&self) -> WaitStats {
        self.waiters.stats()
    }

    /// Queues a run that the store has just accepted, whose request body is `body` bytes.
    /// `order` says where it queues (see [`Order::of`]).
    pub fn submit(&self, id: RunId, body: u64, order: Order) {
        let body = Some(body);
        enqueue(
            &self.queue,
            Queued {
                id,
                body,
                order,
                retry: dispatch::Retry::No,
            },
        );
    }

    /// Submits every run the store still holds live (queued, or cut off while running), and
    /// sets a timer for every retrying run at its next attempt (at once when it is past).
    pub async fn recover(&self, store: &Store) -> Result<usize, StoreError> {
        // Retrying runs hold their `order_by` lanes before any other run is queued, so that
        // none of a lane's later runs starts before their next attempt.
        let retrying = store.retrying_runs()?;
        for (id, _) in &retrying {
            let mut held = dispatch::recovered(&self.catalog, store, *id).await;
            held.retry = dispatch::Retry::Hold;
            enqueue(&self.queue, held);
        }
        let ids = store.recover().await?;
        let n = ids.len();
        for id in ids {
            enqueue(
                &self.queue,
                dispatch::recovered(&self.catalog, store, id).await,
            );
        }
        if n > 0 {
            tracing::info!(runs = n, "resuming runs left from before the restart");
        }
        if !retrying.is_empty() {
            tracing::info!(runs = retrying.len(), "resuming the retry schedule of runs");
        }
        for (id, at) in &retrying {
            self.timer.schedule(*id, *at);
        }
        Ok(n + retrying.len())
    }
}

struct StoreSink<'a> {
    store: &'a Store,
    id: RunId,
    metrics: &'a Metrics,
}

impl StepSink for StoreSink<'_> {
    async fn record(&mut self, step: StepRecord) {
        if step.status != StepStatus::Skipped {
            self.metrics
                .step_ran(&step.plugin, Duration::from_micros(step.duration_us));
        }
        // Queued in order before the run's finish; not awaited, so a run costs two writer
        // round trips (start, finish) whatever its number of steps.
        self.store.record_step_detached(self.id, step);
    }
}

/// Runs one accepted run to its end; its result, or `None` when it did not run here. The
/// result carries the last step's output only when a sender waits for it.
/// How [`execute`] left a run.
enum Executed {
    /// It reached its final status.
    Done(RunResult),
    /// It was not run here (already started elsewhere, or the store failed; it stays queued).
    NotRun,
    /// A step failed with attempts left: the run is retrying until this time.
    RetryAt(SystemTime),
}

async fn execute(
    catalog: &Catalog,
    store: &Store,
    id: RunId,
    waiters: &Waiters,
    metrics: &Metrics,
    timer: &retry::Timer,
) -> Executed {
    // `flow` is empty only for a run whose stored request cannot be read.
    let finish = |flow: String, outcome, error: Option<String>, output, answer| async move {
        // Counted before the store says so, so that a reader who sees the run finished also
        // sees it counted.
        metrics.run_finished(&flow, RunStatus::from(outcome).as_str());
        if let Err(e) = store.finish(id, outcome, error.clone()).await {
            tracing::error!(run = %id, error = %e, "recording the end of a run");
        }
        catalog.events().run_finished(id, &flow, outcome);
        Executed::Done(RunResult {
            outcome,
            error,
            output,
            answer,
        })
    };
    let (run, request) = match store.claim_run(id).await {
        Ok(claimed) => claimed,
        // Already started or finished: a duplicate submit.
        Err(StoreError::Conflict(_)) => return Executed::NotRun,
        Err(StoreError::Corrupt(message)) => {
            // The run is marked running but its stored request cannot be read: end it, with
            // the reason shown, rather than retry it at every start.
            tracing::error!(run = %id, error = %message, "cannot read the run's request");
            return finish(
                String::new(),
                RunOutcome::Failed,
                Some(format!("reading the request: {message}")),
                Value::Null,
                None,
            )
            .await;
        }
        Err(e) => {
            tracing::error!(run = %id, error = %e, "cannot start run; it stays queued");
            return Executed::NotRun;
        }
    };
    catalog.events().run_started(&run);
    let live = match catalog.flow_version(&run.flow_id, &run.flow_version).await {
        Ok(live) => live,
        Err(message) => {
            return finish(
                run.flow_id,
                RunOutcome::Failed,
                Some(message),
                Value::Null,
                None,
            )
            .await;
        }
    };
    let flow = Arc::clone(&live);
    let mut context = match on_failure::context_of(&run, &request.body) {
        Some(context) => context,
        None => steps::initial_context(
            payload::webhook_document_owned(&run, request, flow.flow.body_reads()),
            None,
        ),
    };
    // Only a flow with retries has retrying runs, whose steps resume where they failed.
    let resume = if flow.flow.steps.iter().any(|s| s.retry.retries > 0) {
        match store.get_steps(id) {
            Ok(records) => retry::resume_point(&flow.flow, &records, &mut context),
            Err(e) => {
                tracing::warn!(run = %id, error = %e, "cannot read the steps of a run; it runs from its first step");
                None
            }
        }
    } else {
        None
    };
    let info = RunInfo {
        run_id: id.to_string(),
        attempt: run.attempt,
    };
    let mut sink = StoreSink { store, id, metrics };
    let mut outcome =
        steps::execute_from(live, context, resume.unwrap_or_default(), &info, &mut sink).await;
    if let Some(at) = outcome.retry_at {
        match store.retry(id, at).await {
            Ok(()) => {
                metrics.step_retried(&run.flow_id);
                tracing::info!(run = %id, flow = %run.flow_id, error = outcome.error.as_deref().unwrap_or(""), next_attempt_at = %humantime::format_rfc3339_millis(at), "step failed; retrying");
                catalog.events().run_retrying(id, &run.flow_id, at);
                // Not over: a sender waiting for the result gets its 202 now, and the
                // dispatcher sets the timer once it holds the run's lane.
                return Executed::RetryAt(at);
            }
            Err(e) => {
                tracing::error!(run = %id, error = %e, "cannot schedule a retry; the run fails");
            }
        }
    }
    tracing::debug!(run = %id, flow = %run.flow_id, outcome = ?outcome.outcome, "run finished");
    if outcome.outcome == RunOutcome::Failed
        && let Some(target) = &flow.flow.on_failure
    {
        // Before the run is finished: a crash between the two runs it again, and the error
        // run's dedupe key keeps it to one.
        let webhook = outcome
            .context
            .get("webhook")
            .cloned()
            .unwrap_or(Value::Null);
        on_failure::start(
            catalog,
            store,
            timer,
            target.as_str(),
            &run,
            outcome.failed_step.as_ref(),
            outcome.error.as_deref(),
            webhook,
        )
        .await;
    }
    // Read before the last step's output is taken out of the context.
    let answer = match &flow.flow.answer {
        Some(answer) if outcome.outcome == RunOutcome::Succeeded && waiters.is_waiting(id) => {
            Some(answer.evaluate(&outcome.context).map_err(|e| e.to_string()))
        }
        _ => None,
    };
    let mut output = match flow.flow.steps.last() {
        Some(last) if waiters.is_waiting(id) => outcome
            .context
            .get_mut("steps")
            .and_then(|steps| steps.get_mut(last.id.as_str()))
            .and_then(|step| step.get_mut("output"))
            .map(Value::take)
            .unwrap_or(Value::Null),
        _ => Value::Null,
    };
    // The sender is served what the API would show: `${ENV}` values masked.
    flow.flow.redactor.value(&mut output);
    let answer = answer.map(|answer| {
        answer.map(|mut value| {
            flow.flow.redactor.value(&mut value);
            value
        })
    });
    finish(run.flow_id, outcome.outcome, outcome.error, output, answer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: RunOutcome) -> RunResult {
        RunResult {
            outcome,
            error: None,
            output: Value::Null,
            answer: None,
        }
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_its_runs_result() {
        let waiters = Arc::new(Waiters::new(8));
        let (a, b) = (RunId::from(1u128), RunId::from(2u128));
        let mut waiting = waiters.add(a).expect("room to wait");
        assert!(waiters.is_waiting(a));
        assert!(!waiters.is_waiting(b));
        waiters.notify(b, result(RunOutcome::Failed));
        waiters.notify(a, result(RunOutcome::Succeeded));
        assert_eq!(
            waiting.result().await.map(|r| r.outcome),
            Some(RunOutcome::Succeeded)
        );
        assert!(!waiters.is_waiting(a), "a notified waiter is gone");
    }

    #[tokio::test]
    async fn a_run_that_does_not_run_here_releases_its_sender_at_once() {
        let waiters = Arc::new(Waiters::new(8));
        let id = RunId::from(7u128);
        let mut waiting = waiters.add(id).expect("room to wait");
        waiters.forget(id);
        let released = tokio::time::timeout(Duration::from_secs(5), waiting.result()).await;
        assert_eq!(released.map(|r| r.is_none()), Ok(true));
    }

    #[test]
    fn senders_past_the_cap_are_not_kept_and_giving_up_frees_a_place() {
        let waiters = Arc::new(Waiters::new(2));
        let first = waiters.add(RunId::from(1u128)).expect("first place");
        let _second = waiters.add(RunId::from(2u128)).expect("second place");
        assert!(waiters.add(RunId::from(3u128)).is_none(), "the cap holds");
        assert!(waiters.add(RunId::from(4u128)).is_none(), "the cap holds");
        assert_eq!(
            waiters.stats(),
            WaitStats {
                waiting: 2,
                turned_away: 2
            },
            "the senders turned away are counted"
        );
        // The first sender times out or hangs up.
        drop(first);
        assert!(!waiters.is_waiting(RunId::from(1u128)));
        assert_eq!(waiters.stats().waiting, 1);
        assert!(
            waiters.add(RunId::from(3u128)).is_some(),
            "its place is free again"
        );
        assert_eq!(waiters.stats().turned_away, 2);
    }
}
