//! The dispatcher: the queue of accepted runs, and which of them starts next.
//!
//! Accepted runs wait here, in memory, by flow: a run's id, its body's size, its flow and its
//! lane, a few dozen bytes whatever its payload (the payload stays on disk until the run
//! starts), so the queue costs what the FIFO it replaced did. A run starts when all of these
//! hold:
//! - one of the server's `--concurrency` slots is free;
//! - its flow executes fewer runs than the flow's `concurrency` (when it has one);
//! - with `order_by`, no run of its lane executes, and it is its lane's oldest: runs whose
//!   `order_by` values are equal execute one at a time in the order the store accepted them
//!   (their run ids' order; a run where `order_by` selects nothing, or `null`, goes in the
//!   flow's one unkeyed lane, also one at a time); different lanes run in parallel.
//!
//! The order is exact for a webhook sent after the one before it was answered: the run is
//! queued before its `202` leaves. Two webhooks of one lane in flight at once are queued in id
//! order when the lane is busy; when it is idle, the first to reach the dispatcher may start
//! before one accepted a moment earlier in the same commit, which its sender cannot tell from
//! an order of its own.
//!
//! Flows take turns (round-robin over the flows that have a run that may start), so one
//! flow's backlog never holds up another's runs, and a flow at its `concurrency` (or whose
//! lanes are all busy) steps out of the turns without blocking anyone; within a flow, the
//! oldest run that may start goes first. A lane is the hash of the `order_by` value's JSON
//! text: a collision between two values only orders them together, never reorders one.
//!
//! What puts webhooks ahead of runs is not here: runs start as soon as these rules allow, and
//! the store writer commits every waiting accept before run progress (see `store::writer`).
//! Recovery after a restart resubmits live runs oldest first, each with the `order_by` and
//! `concurrency` of the flow version it was accepted under, so a lane keeps its order across
//! a restart, and a changed `order_by` applies to the runs accepted after the change.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::{Executed, Waiters, execute, payload};
use crate::catalog::Catalog;
use crate::flow::Flow;
use crate::metrics::Metrics;
use crate::store::{RawRequest, RunId, Store};

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

/// Where a run queues: its flow, its lane within the flow, and the flow's `concurrency`, as
/// the flow version that accepted it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    flow: String,
    lane: Lane,
    limit: Option<u32>,
}

/// A run's lane within its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    /// The flow has no `order_by`: the run is ordered against no other.
    Free,
    /// `order_by` selected nothing or `null`.
    Unkeyed,
    /// The hash of the JSON text of the value `order_by` selected.
    Key(u64),
}

impl Order {
    /// Where a run of `flow` for `request` queues. With `order_by`, the query is read on
    /// the request's head first and on its decoded body only when the head selects nothing,
    /// as `dedupe` is.
    pub fn of(flow: &Flow, request: &RawRequest) -> Order {
        let lane = match &flow.order_by {
            None => Lane::Free,
            Some(query) => {
                let mut context = serde_json::json!({
                    "webhook": Value::Object(payload::request_head(request)),
                });
                let mut found = query.select(&context).first().map(|v| lane_key(v));
                if found.is_none() {
                    if let Some(webhook) = context.get_mut("webhook").and_then(Value::as_object_mut)
                    {
                        webhook.insert("body".into(), payload::request_body(request));
                    }
                    found = query.select(&context).first().map(|v| lane_key(v));
                }
                found.flatten().map_or(Lane::Unkeyed, Lane::Key)
            }
        };
        Order {
            flow: flow.id.as_str().to_owned(),
            lane,
            limit: flow.concurrency,
        }
    }

    /// A run of a flow whose definition is unknown: no lane, no limit of its own.
    pub fn unordered(flow: &str) -> Order {
        Order {
            flow: flow.to_owned(),
            lane: Lane::Free,
            limit: None,
        }
    }
}

/// The lane of an `order_by` value; `None` for `null`.
fn lane_key(value: &Value) -> Option<u64> {
    if value.is_null() {
        return None;
    }
    // One hasher with fixed keys: equal values hash alike for the life of the process, which
    // is as long as a queue lives.
    let mut hasher = DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    Some(hasher.finish())
}

/// A run handed to the dispatcher: its id, its body's size when the caller knows it, and
/// where it queues.
pub(super) struct Queued {
    pub(super) id: RunId,
    pub(super) body: Option<u64>,
    pub(super) order: Order,
    pub(super) retry: Retry,
}

/// Where a queued run stands with retries. A retrying run keeps its `order_by` lane: no
/// later run of the lane starts while it waits for its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// A run to start (new, or recovered).
    No,
    /// A retrying run found at startup: its lane is held until it resumes; nothing starts.
    Hold,
    /// A retrying run whose next attempt is due: it starts first in its lane.
    Resume,
}

/// A lane's waiting runs, oldest first, and whether one of its runs holds it (executing, or
/// retrying: then `held` is that run).
#[derive(Default)]
struct LaneQueue {
    runs: VecDeque<Pending>,
    busy: bool,
    held: Option<RunId>,
}

/// A run waiting in its flow's queue.
struct Pending {
    id: RunId,
    body: Option<u64>,
    /// The order runs were handed over in (oldest first after a restart): which of the
    /// flow's lanes goes first.
    seq: u64,
}

/// A flow's waiting runs.
#[derive(Default)]
struct FlowQueue {
    /// The flow's `concurrency` as its newest run's version says; `None`: no limit of its own.
    limit: Option<u32>,
    running: u32,
    /// Runs of [`Lane::Free`], oldest first.
    free: VecDeque<Pending>,
    /// Runs of the other lanes.
    lanes: HashMap<Lane, LaneQueue>,
    /// The oldest run of every lane where none executes, by `seq`: the runs that may start.
    heads: BTreeMap<u64, Lane>,
    /// Whether the flow is in [`Queues::turns`].
    in_turns: bool,
}

impl FlowQueue {
    /// Whether one of its runs may start now.
    fn startable(&self) -> bool {
        self.limit.is_none_or(|limit| self.running < limit)
            && (!self.free.is_empty() || !self.heads.is_empty())
    }

    fn idle(&self) -> bool {
        self.running == 0 && self.free.is_empty() && self.lanes.is_empty()
    }

    /// Takes its oldest run that may start, and counts it executing.
    fn take(&mut self) -> Option<(Pending, Lane)> {
        let free = self.free.front().map(|run| run.seq);
        let head = self
            .heads
            .first_key_value()
            .map(|(seq, lane)| (*seq, *lane));
        let taken = match (free, head) {
            (Some(free), Some((seq, _))) if free < seq => (self.free.pop_front()?, Lane::Free),
            (Some(_), None) => (self.free.pop_front()?, Lane::Free),
            (_, Some((seq, lane))) => {
                self.heads.remove(&seq);
                let queue = self.lanes.get_mut(&lane)?;
                queue.busy = true;
                (queue.runs.pop_front()?, lane)
            }
            (None, None) => return None,
        };
        self.running += 1;
        Some(taken)
    }
}

/// Every flow's waiting runs, and the turns flows take.
#[derive(Default)]
struct Queues {
    flows: HashMap<String, FlowQueue>,
    /// The flows that have a run that may start, in the order they take turns.
    turns: VecDeque<String>,
    seq: u64,
}

impl Queues {
    fn push(&mut self, queued: Queued) {
        let Order { flow, lane, limit } = queued.order;
        if queued.retry == Retry::Hold {
            if lane != Lane::Free {
                self.hold(flow, lane, queued.id, limit);
            }
            return;
        }
        let waiting = Pending {
            id: queued.id,
            body: queued.body,
            seq: self.seq,
        };
        self.seq += 1;
        let queue = self.flows.entry(flow.clone()).or_default();
        queue.limit = limit;
        match lane {
            Lane::Free => queue.free.push_back(waiting),
            lane => {
                let lane_queue = queue.lanes.entry(lane).or_default();
                if queued.retry == Retry::Resume && lane_queue.held == Some(waiting.id) {
                    // Its next attempt: the lane's first run again.
                    lane_queue.held = None;
                    lane_queue.busy = false;
                }
                // In run id order, which is the order the store accepted them: two webhooks
                // accepted in one commit may reach here in either order.
                let at = lane_queue
                    .runs
                    .iter()
                    .rposition(|run| run.id < waiting.id)
                    .map_or(0, |before| before + 1);
                if at == 0 && !lane_queue.busy {
                    if let Some(head) = lane_queue.runs.front() {
                        queue.heads.remove(&head.seq);
                    }
                    queue.heads.insert(waiting.seq, lane);
                }
                lane_queue.runs.insert(at, waiting);
            }
        }
        self.turn(flow);
    }

    /// The next run to start: the oldest that may start of the flow whose turn it is.
    fn next(&mut self) -> Option<(String, Lane, Pending)> {
        while let Some(flow) = self.turns.pop_front() {
            let Some(queue) = self.flows.get_mut(&flow) else {
                continue;
            };
            queue.in_turns = false;
            let Some((run, lane)) = queue.take() else {
                continue;
            };
            self.turn(flow.clone());
            return Some((flow, lane, run));
        }
        None
    }

    /// Holds `lane` of `flow` for run `id`, which waits for its next attempt.
    fn hold(&mut self, flow: String, lane: Lane, id: RunId, limit: Option<u32>) {
        let queue = self.flows.entry(flow).or_default();
        queue.limit = limit;
        let lane_queue = queue.lanes.entry(lane).or_default();
        if !lane_queue.busy
            && let Some(head) = lane_queue.runs.front()
        {
            queue.heads.remove(&head.seq);
        }
        lane_queue.busy = true;
        lane_queue.held = Some(id);
    }

    /// A run of `flow` in `lane` ended (or will not run here); `retrying`: it will be back
    /// for its next attempt, and keeps its lane until then.
    fn done(&mut self, flow: String, lane: Lane, retrying: Option<RunId>) {
        let Some(queue) = self.flows.get_mut(&flow) else {
            return;
        };
        queue.running = queue.running.saturating_sub(1);
        if let (Some(id), true) = (retrying, lane != Lane::Free) {
            if let Some(lane_queue) = queue.lanes.get_mut(&lane) {
                lane_queue.held = Some(id);
            }
            // The lane stays busy: its other runs wait.
            self.turn(flow);
            return;
        }
        if let Entry::Occupied(mut entry) = queue.lanes.entry(lane) {
            let lane_queue = entry.get_mut();
            lane_queue.busy = false;
            match lane_queue.runs.front() {
                Some(next) => {
                    queue.heads.insert(next.seq, lane);
                }
                None => {
                    entry.remove();
                }
            }
        }
        if queue.idle() {
            self.flows.remove(&flow);
        } else {
            self.turn(flow);
        }
    }

    /// Puts `flow` in the turns if one of its runs may start and it is not there yet.
    fn turn(&mut self, flow: String) {
        if let Some(queue) = self.flows.get_mut(&flow)
            && !queue.in_turns
            && queue.startable()
        {
            queue.in_turns = true;
            self.turns.push_back(flow);
        }
    }
}

/// A run that left its slot: its flow and lane, and its id when it is retrying (it keeps its
/// lane until its next attempt).
type Ended = ((String, Lane), Option<RunId>);

/// Starts queued runs as slots free up.
pub(super) struct Dispatcher {
    pub(super) timer: super::retry::Timer,
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
    pub(super) async fn run(self, mut incoming: mpsc::UnboundedReceiver<Queued>) {
        let mut queues = Queues::default();
        // Runs that ended, with their flow and lane; sent after their slot is released.
        let (ended, mut endings) = mpsc::unbounded_channel::<Ended>();
        let mut closed = self.closed.clone();
        loop {
            // Start every run that may start now.
            while !queues.turns.is_empty() {
                let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                    break;
                };
                let Some((flow, lane, run)) = queues.next() else {
                    break;
                };
                self.launch(run, slot, (flow, lane), ended.clone());
            }
            tokio::select! {
                biased;
                () = closing(&mut closed) => return,
                Some(((flow, lane), retrying)) = endings.recv() => queues.done(flow, lane, retrying),
                queued = incoming.recv() => match queued {
                    Some(queued) => queues.push(queued),
                    None => return,
                },
            }
        }
    }

    /// Executes `run` in a task of its own, holding `slot` until it ends.
    fn launch(
        &self,
        run: Pending,
        slot: OwnedSemaphorePermit,
        place: (String, Lane),
        ended: mpsc::UnboundedSender<Ended>,
    ) {
        let timer = self.timer.clone();
        let (catalog, store, waiters, budget, metrics) = (
            self.catalog.clone(),
            self.store.clone(),
            self.waiters.clone(),
            self.budget.clone(),
            self.metrics.clone(),
        );
        let Pending { id, body, .. } = run;
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
            let retry_at = match execute(&catalog, &store, id, &waiters, &metrics, &timer).await {
                Executed::Done(result) => {
                    waiters.notify(id, result);
                    None
                }
                // Not run here, or not over: a sender waiting for it gets its 202 at once.
                Executed::NotRun => {
                    waiters.forget(id);
                    None
                }
                Executed::RetryAt(at) => {
                    waiters.forget(id);
                    Some(at)
                }
            };
            drop(payload);
            drop(slot);
            // The dispatcher is gone only when the executor closes. Sent before the retry is
            // scheduled, so that the lane is held before the run can come back.
            let _ = ended.send((place, retry_at.map(|_| id)));
            if let Some(at) = retry_at {
                timer.schedule(id, at);
            }
        });
    }
}

/// A run the store still holds live at startup, queued where the flow version that accepted
/// it says; a run whose version or request cannot be read queues unordered (it fails with the
/// reason when it executes).
pub(super) async fn recovered(catalog: &Catalog, store: &Store, id: RunId) -> Queued {
    let run = store.get_run(id).ok().flatten();
    let body = run.as_ref().map(|run| run.body_size);
    let order = match &run {
        None => Order::unordered(""),
        Some(run) => match catalog.flow_version(&run.flow_id, &run.flow_version).await {
            Err(_) => Order::unordered(&run.flow_id),
            Ok(live) if live.flow.order_by.is_none() => Order {
                flow: run.flow_id.clone(),
                lane: Lane::Free,
                limit: live.flow.concurrency,
            },
            Ok(live) => match store.get_request(id) {
                Ok(Some(request)) => Order::of(&live.flow, &request),
                _ => Order::unordered(&run.flow_id),
            },
        },
    };
    Queued {
        id,
        body,
        order,
        retry: Retry::No,
    }
}

/// Hands a run to the dispatcher.
pub(super) fn enqueue(queue: &mpsc::UnboundedSender<Queued>, queued: Queued) {
    let id = queued.id;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: u128, flow: &str, lane: Lane, limit: Option<u32>) -> Queued {
        Queued {
            id: RunId::from(id),
            body: None,
            order: Order {
                flow: flow.to_owned(),
                lane,
                limit,
            },
            retry: Retry::No,
        }
    }

    /// Takes every run that may start now: (flow, lane, id).
    fn start_all(queues: &mut Queues) -> Vec<(String, Lane, RunId)> {
        let mut started = Vec::new();
        while let Some((flow, lane, run)) = queues.next() {
            started.push((flow, lane, run.id));
        }
        started
    }

    #[test]
    fn a_lane_runs_one_at_a_time_in_order_while_lanes_run_in_parallel() {
        let mut queues = Queues::default();
        let (a, b) = (Lane::Key(1), Lane::Key(2));
        for (id, lane) in [
            (1, a),
            (2, b),
            (3, a),
            (4, Lane::Unkeyed),
            (5, b),
            (6, Lane::Unkeyed),
        ] {
            queues.push(queued(id, "f", lane, None));
        }
        let ids = |started: Vec<(String, Lane, RunId)>| -> Vec<u128> {
            started
                .into_iter()
                .map(|(_, _, id)| (1..=6).find(|n| RunId::from(*n) == id).unwrap_or(0))
                .collect()
        };
        assert_eq!(ids(start_all(&mut queues)), vec![1, 2, 4], "one per lane");
        queues.done("f".into(), b, None);
        assert_eq!(ids(start_all(&mut queues)), vec![5]);
        queues.done("f".into(), a, None);
        queues.done("f".into(), Lane::Unkeyed, None);
        assert_eq!(ids(start_all(&mut queues)), vec![3, 6], "oldest first");
        for lane in [a, b, Lane::Unkeyed] {
            queues.done("f".into(), lane, None);
        }
        assert!(queues.flows.is_empty(), "an idle flow leaves no trace");
        assert!(queues.turns.is_empty());
    }

    #[test]
    fn a_lane_keeps_run_id_order_whatever_order_runs_are_handed_over_in() {
        let mut queues = Queues::default();
        let lane = Lane::Key(7);
        for id in [5u128, 3, 4, 1, 2] {
            queues.push(queued(id, "f", lane, None));
        }
        let mut order = Vec::new();
        while let Some((flow, lane, run)) = queues.next() {
            assert!(queues.next().is_none(), "one at a time");
            order.push(run.id);
            queues.done(flow, lane, None);
        }
        assert_eq!(order, [1u128, 2, 3, 4, 5].map(RunId::from));
    }

    #[test]
    fn a_retrying_run_keeps_its_lane_until_its_next_attempt() {
        let mut queues = Queues::default();
        let (a, b) = (Lane::Key(1), Lane::Key(2));
        for (id, lane) in [(1, a), (2, a), (3, b)] {
            queues.push(queued(id, "f", lane, None));
        }
        assert_eq!(start_all(&mut queues).len(), 2, "1 and 3");
        // Run 1 fails with attempts left: run 2 of its lane waits; lane b goes on.
        queues.done("f".into(), a, Some(RunId::from(1u128)));
        queues.done("f".into(), b, None);
        assert!(start_all(&mut queues).is_empty());
        queues.push(queued(4, "f", b, None));
        assert_eq!(
            start_all(&mut queues),
            vec![("f".into(), b, RunId::from(4u128))]
        );
        // Its next attempt is due: it goes first, then run 2.
        let mut resumed = queued(1, "f", a, None);
        resumed.retry = Retry::Resume;
        queues.push(resumed);
        assert_eq!(
            start_all(&mut queues),
            vec![("f".into(), a, RunId::from(1u128))]
        );
        queues.done("f".into(), a, None);
        assert_eq!(
            start_all(&mut queues),
            vec![("f".into(), a, RunId::from(2u128))]
        );
    }

    #[test]
    fn after_a_restart_a_retrying_run_holds_its_lane_before_others_queue() {
        let mut queues = Queues::default();
        let a = Lane::Key(1);
        let mut held = queued(1, "f", a, None);
        held.retry = Retry::Hold;
        queues.push(held);
        queues.push(queued(2, "f", a, None));
        queues.push(queued(3, "f", Lane::Free, None));
        assert_eq!(
            start_all(&mut queues),
            vec![("f".into(), Lane::Free, RunId::from(3u128))],
            "the held lane's run waits"
        );
        let mut resumed = queued(1, "f", a, None);
        resumed.retry = Retry::Resume;
        queues.push(resumed);
        assert_eq!(
            start_all(&mut queues),
            vec![("f".into(), a, RunId::from(1u128))]
        );
    }

    #[test]
    fn a_flow_at_its_concurrency_steps_aside_and_flows_take_turns() {
        let mut queues = Queues::default();
        for id in 1..=100 {
            queues.push(queued(id, "busy", Lane::Free, Some(2)));
        }
        for id in 101..=103 {
            queues.push(queued(id, "quiet", Lane::Free, None));
        }
        let started = start_all(&mut queues);
        let busy = started.iter().filter(|(flow, ..)| flow == "busy").count();
        assert_eq!(busy, 2, "no more than its concurrency");
        assert_eq!(started.len(), 5, "the other flow's runs are not held up");
        queues.done("busy".into(), Lane::Free, None);
        assert_eq!(
            start_all(&mut queues),
            vec![("busy".into(), Lane::Free, RunId::from(3u128))]
        );

        // Without limits, flows alternate rather than run in arrival order.
        let mut queues = Queues::default();
        for id in 1..=10 {
            queues.push(queued(id, "a", Lane::Free, None));
        }
        queues.push(queued(11, "b", Lane::Free, None));
        let order: Vec<RunId> = (0..3)
            .filter_map(|_| queues.next().map(|(_, _, run)| run.id))
            .collect();
        assert_eq!(order, [1u128, 11, 2].map(RunId::from));
    }

    #[test]
    fn equal_values_share_a_lane_and_null_or_nothing_is_unkeyed() {
        let flow = |order_by: &str| {
            let source = format!("name = \"x\"\norder_by = \"{order_by}\"\n");
            crate::flow::parse_flow_with(
                std::path::Path::new("/f/x.toml"),
                &source,
                &crate::flow::LoadContext {
                    env: &|_| None,
                    is_builtin: &|_| true,
                    plugin_exists: &|_| false,
                    plugin_places: &crate::flow::PluginPlaces::default(),
                },
            )
            .expect("flow loads")
        };
        let request = |body: &str| RawRequest {
            method: "POST".into(),
            path: "/hooks/x".into(),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            remote_addr: None,
            received_at: std::time::SystemTime::UNIX_EPOCH,
        };
        let by_customer = flow("$.webhook.body.customer");
        let lane = |body: &str| Order::of(&by_customer, &request(body)).lane;
        assert_eq!(
            lane(r#"{"customer":"acme","n":1}"#),
            lane(r#"{"customer":"acme","n":2}"#)
        );
        assert_ne!(
            lane(r#"{"customer":"acme"}"#),
            lane(r#"{"customer":"globex"}"#)
        );
        assert_ne!(lane(r#"{"customer":1}"#), lane(r#"{"customer":"1"}"#));
        assert_eq!(lane(r#"{"customer":null}"#), Lane::Unkeyed);
        assert_eq!(lane(r#"{"other":1}"#), Lane::Unkeyed);
        assert_eq!(lane("not json"), Lane::Unkeyed);
    }
}
