//! The writer: one thread that owns every write transaction and commits writes in groups.
//!
//! Callers send an [`Op`] with a oneshot reply over an unbounded channel. The writer takes
//! whatever is waiting (up to a batch cap), applies it all in one write transaction, commits
//! once, and only then answers each caller: many concurrent accepts share one sync.
//!
//! This module is the loop and its scheduling; [`ops`] is what each op changes (as journal
//! entries), [`durability`] how a transaction is committed and made durable (the journal,
//! checkpoints, replay at open). The rules they keep are in the store's module doc.
//!
//! Accepts come first: run progress (start, step, finish) waits in [`Writer::deferred`] and
//! only a small share of it joins a transaction that holds accepts (see [`Writer::schedule`]),
//! so a burst of webhooks is answered at the speed of small commits and its runs catch up.
//!
//! Within a batch, an op that fails on its own (unknown run, wrong status, undecodable record)
//! is answered with its error and leaves no trace (see [`ops`]). A failure of the database
//! itself (begin, write or commit) aborts the whole transaction, and every op of the batch is
//! answered with that error: nothing is ever reported written that was not committed.

mod durability;
mod ops;
mod prune;
mod txn;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use redb::Database;
use tokio::sync::oneshot;

use super::Counters;
use super::error::StoreError;
use super::query::DedupeEntry;
use super::tables::State;
use super::types::{PluginBlob, Run, RunId, RunOutcome};

pub(super) use durability::{JournalLink, replay};
use ops::Unconfirmed;
use txn::OpError;

/// A function that answers one caller once its batch's fate is known: `None` when it
/// committed (and, where needed, its journal frame is synced), the batch's error otherwise.
pub(super) type Pending = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// The longest time progress writes stay unsynced while the writer is kept busy.
pub(super) const MAX_UNSYNCED: Duration = Duration::from_secs(1);

/// How long the writer waits for more work before syncing progress writes. Syncing at once
/// when idle would make a lone executor's next step wait for that fsync anyway.
const IDLE_SYNC_DELAY: Duration = Duration::from_millis(100);

/// How many run progress writes (start, step, finish) may join a transaction that holds
/// accepts; see [`Writer::schedule`].
const PROGRESS_BESIDE_ACCEPTS: usize = 8;

/// The most run progress writes in a transaction without accepts while webhooks are arriving
/// (one was accepted within [`BURST_WINDOW`]), so that the next accepts never wait behind a
/// long commit.
const PROGRESS_IN_BURST: usize = 32;

/// The most run progress writes in one transaction once webhooks stopped arriving: big
/// transactions drain the queue fastest.
const MAX_PROGRESS: usize = 256;

/// How long after an accept the writer still expects more, and keeps its transactions small.
const BURST_WINDOW: Duration = Duration::from_millis(50);

/// How many transactions with accepts a waiting prune lets go first before it joins one: so
/// that retention keeps up with a steady stream of webhooks (a prune of `PRUNE_BATCH` runs
/// per this many group commits deletes faster than webhooks arrive), while only one commit
/// in this many carries its work.
const HOUSEKEEPING_EVERY: u32 = 4;

/// A batch stops growing once its request bodies add up to this, to bound its memory.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// An accept as the writer takes it: encoded by the caller, so the one writer thread only
/// inserts.
pub(super) struct Prepared {
    pub flow_id: String,
    pub dedupe_key: Option<String>,
    /// See [`crate::store::NewRun::dedupe_window`].
    pub dedupe_window: Option<Duration>,
    /// The [`REQUESTS`] value: see [`Envelope::encode`].
    pub bytes: Vec<u8>,
    /// The run it replays: linked both ways in the same transaction.
    pub replay_of: Option<RunId>,
}

/// What the writer did with an accept.
pub(super) enum AcceptAnswer {
    /// Stored under this new id.
    New(RunId),
    /// A duplicate of this run, already stored under the same dedupe key.
    Duplicate(Box<Run>),
}

/// Where the writer sends an op's answer.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write for the writer thread.
pub(super) enum Op {
    Accept {
        run: Box<Prepared>,
        permit: AcceptPermit,
        reply: Reply<AcceptAnswer>,
    },
    Start {
        id: RunId,
        reply: Reply<(State, Vec<u8>)>,
    },
    Step {
        id: RunId,
        index: u32,
        /// For error messages.
        step_id: String,
        /// The `StepRecord`'s JSON, encoded by the caller.
        bytes: Vec<u8>,
        reply: Reply<()>,
    },
    Finish {
        id: RunId,
        outcome: RunOutcome,
        error: Option<String>,
        reply: Reply<()>,
    },
    Token {
        flow_id: String,
        reply: Reply<String>,
    },
    /// Gives the flow a new token, keeping its current one valid until `previous_until_ms`;
    /// answers the new token.
    RotateToken {
        flow_id: String,
        previous_until_ms: u64,
        reply: Reply<String>,
    },
    FlowVersion {
        flow_id: String,
        version: String,
        source: String,
        plugins: Vec<PluginBlob>,
        reply: Reply<()>,
    },
    Recover {
        reply: Reply<Vec<RunId>>,
    },
    /// Deletes these dedupe entries of the flow, each only if it still names that run (a
    /// newer delivery may have taken the value over since it was read). Answers how many.
    ForgetDedupe {
        flow_id: String,
        entries: Vec<DedupeEntry>,
        reply: Reply<u64>,
    },
    /// Sets a running run to retry at `next_at_ms` (ms since the epoch). Durable before it
    /// answers, so the schedule survives a crash.
    Retry {
        id: RunId,
        next_at_ms: u64,
        reply: Reply<()>,
    },
    /// Refused webhooks to keep in their flows' rings.
    Reject {
        rows: Vec<crate::store::NewRejection>,
        /// Each row's number in its flow's ring, in the rows' order.
        reply: Reply<Vec<u64>>,
    },
    /// Deletes those of these runs that are finished (retention); answers how many. Waits
    /// for a transaction without accepts (see [`Writer::schedule`]).
    Prune {
        ids: Vec<RunId>,
        reply: Reply<u64>,
    },
    /// A durable commit of nothing: every write answered before it is on disk after it.
    Sync {
        reply: Reply<()>,
    },
    /// Holds the writer until `resume` is dropped (see `Store::pause_writer`).
    Pause {
        paused: oneshot::Sender<()>,
        resume: std::sync::mpsc::Receiver<()>,
    },
}

impl Op {
    /// Whether this op may wait behind accepts: a run's progress, and housekeeping.
    fn is_progress(&self) -> bool {
        matches!(
            self,
            Op::Start { .. }
                | Op::Step { .. }
                | Op::Finish { .. }
                | Op::ForgetDedupe { .. }
                | Op::Retry { .. }
                | Op::Reject { .. }
        )
    }

    /// Whether the batch holding this op is committed with an fsync of redb itself (a
    /// checkpoint), journal or not: only `Store::sync` asks for it.
    fn needs_checkpoint(&self) -> bool {
        matches!(self, Op::Sync { .. })
    }

    /// Whether the batch holding this op must be durable before answering.
    /// Forgetting expired dedupe entries need not: an entry that comes back after a crash is
    /// expired still, and is forgotten again.
    /// Nor need prunes: a run pruned again after a crash is still past its retention.
    fn needs_sync(&self) -> bool {
        !matches!(
            self,
            Op::Step { .. }
                | Op::Finish { .. }
                | Op::Pause { .. }
                | Op::ForgetDedupe { .. }
                | Op::Reject { .. }
                | Op::Prune { .. }
        )
    }

    /// Roughly how many bytes this op adds to a transaction.
    fn weight(&self) -> usize {
        match self {
            Op::Accept { run, .. } => run.bytes.len(),
            Op::Step { bytes, .. } => bytes.len(),
            Op::Reject { rows, .. } => rows
                .iter()
                .map(|r| {
                    256 + r
                        .body
                        .as_ref()
                        .map_or(0, Vec::len)
                        .min(crate::store::BODY_KEPT)
                })
                .sum(),
            Op::FlowVersion {
                source, plugins, ..
            } => source.len() + plugins.iter().map(|p| p.bytes.len()).sum::<usize>(),
            _ => 64,
        }
    }

    /// The answer of an op that was never applied because its batch failed first.
    fn unapplied(self) -> Pending {
        match self {
            Op::Accept { permit, reply, .. } => pending(reply, Err(unanswered()), permit),
            Op::Start { reply, .. } => pending(reply, Err(unanswered()), ()),
            Op::Finish { reply, .. } | Op::Retry { reply, .. } => {
                pending(reply, Err(unanswered()), ())
            }
            Op::Step { reply, .. } | Op::FlowVersion { reply, .. } => {
                pending(reply, Err(unanswered()), ())
            }
            Op::Token { reply, .. } | Op::RotateToken { reply, .. } => {
                pending(reply, Err(unanswered()), ())
            }
            Op::Recover { reply } => pending(reply, Err(unanswered()), ()),
            Op::ForgetDedupe { reply, .. } => pending(reply, Err(unanswered()), ()),
            Op::Reject { reply, .. } => pending(reply, Err(unanswered()), ()),
            Op::Prune { reply, .. } => pending(reply, Err(unanswered()), ()),
            Op::Sync { reply } => pending(reply, Err(unanswered()), ()),
            Op::Pause { .. } => Box::new(|_| {}),
        }
    }
}

fn unanswered() -> StoreError {
    StoreError::Storage("the batch failed before this write was applied".into())
}

/// A place among the accepts allowed to wait for the writer; given back when dropped.
pub(super) struct AcceptPermit(Arc<AtomicUsize>);

impl AcceptPermit {
    /// Takes a place if fewer than `capacity` are taken.
    pub(super) fn try_acquire(waiting: &Arc<AtomicUsize>, capacity: usize) -> Option<Self> {
        let before = waiting.fetch_add(1, Ordering::AcqRel);
        if before >= capacity {
            waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(AcceptPermit(Arc::clone(waiting)))
    }
}

impl Drop for AcceptPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How the writer batches and syncs.
#[derive(Debug, Clone)]
pub(super) struct WriterConfig {
    pub max_batch: usize,
    pub sync_progress: bool,
}

/// The answer to one op, sent once the batch's fate is known: `None` when the batch committed,
/// the batch's error otherwise.
fn pending<T: Send + 'static>(
    reply: Reply<T>,
    result: Result<T, StoreError>,
    guard: impl Send + 'static,
) -> Pending {
    Box::new(move |batch_error| {
        // Give the accept's place back before answering, so the caller may accept again at once.
        drop(guard);
        let _ = reply.send(match batch_error {
            Some(err) => Err(err),
            None => result,
        });
    })
}

/// The writer thread's state.
pub(super) struct Writer {
    pub db: Arc<Database>,
    pub ops: Receiver<Op>,
    pub config: WriterConfig,
    pub counters: Arc<Counters>,
    /// The largest run id handed out; new ids are always larger.
    pub last_id: u128,
    /// Since when commits have been waiting for an fsync; `None` when all are durable.
    pub unsynced_since: Option<Instant>,
    /// Run progress waiting its turn, oldest first (see [`Writer::schedule`]).
    pub deferred: VecDeque<Op>,
    /// When the last transaction with accepts was put together.
    pub last_accept: Option<Instant>,
    /// `None` when the store runs without a journal: every commit that needs to be durable
    /// is then fsync'd by redb.
    pub journal: Option<JournalLink>,
    /// The journal entries of the transaction being written.
    pub redo: Vec<u8>,
    /// The accepts and starts of the transaction being written: taken back (see
    /// `Writer::take_back`) if its journal frame cannot be written.
    pub unconfirmed: Vec<Unconfirmed>,
    /// Prunes waiting for a transaction without accepts (see [`Writer::schedule`]).
    pub housekeeping: VecDeque<Op>,
    /// Transactions with accepts committed while the first of [`Writer::housekeeping`] waited.
    pub housekeeping_passed: u32,
}

impl Writer {
    /// Serves ops until every `Store` handle is gone, then makes everything durable.
    pub(super) fn run(mut self) {
        tracing::debug!("store writer started");
        let mut open = true;
        while open || !self.deferred.is_empty() || !self.housekeeping.is_empty() {
            let mut incoming = Vec::new();
            if open && self.deferred.is_empty() && self.housekeeping.is_empty() {
                match self.wait() {
                    Some(op) => incoming.push(op),
                    None => {
                        open = false;
                        continue;
                    }
                }
            }
            if open {
                open = self.gather(&mut incoming);
            }
            let batch = self.schedule(incoming);
            if !batch.is_empty() {
                self.commit(batch);
            }
        }
        if self.unsynced_since.is_some() {
            self.sync();
        }
        tracing::debug!("store writer stopped");
    }

    /// Waits for the next op; syncs progress writes when none comes for a while. `None` once
    /// every `Store` handle is gone.
    fn wait(&mut self) -> Option<Op> {
        loop {
            if self.unsynced_since.is_none() {
                return self.ops.recv().ok();
            }
            match self.ops.recv_timeout(IDLE_SYNC_DELAY) {
                Ok(op) => return Some(op),
                Err(RecvTimeoutError::Timeout) => self.sync(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Adds whatever else is already waiting, up to the caps; false once the channel closed.
    fn gather(&mut self, batch: &mut Vec<Op>) -> bool {
        let mut bytes: usize = batch.iter().map(Op::weight).sum();
        while batch.len() < self.config.max_batch && bytes < MAX_BATCH_BYTES {
            match self.ops.try_recv() {
                Ok(op) => {
                    bytes += op.weight();
                    batch.push(op);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// The next transaction's ops: everything that arrived, except that run progress (start,
    /// step, finish) goes through [`Writer::deferred`] in arrival order, and only
    /// [`PROGRESS_BESIDE_ACCEPTS`] of it joins a transaction that holds accepts,
    /// [`PROGRESS_IN_BURST`] one without while webhooks keep arriving, and [`MAX_PROGRESS`] any
    /// other. Accepts are
    /// what senders wait on; progress can wait (the runs are safe on disk), so under a burst
    /// the commits stay small and quick and the runs catch up once the burst is over.
    ///
    /// A prune (large: hundreds of runs) joins only a transaction without accepts, one at a
    /// time, unless [`HOUSEKEEPING_EVERY`] transactions with accepts went first.
    fn schedule(&mut self, incoming: Vec<Op>) -> Vec<Op> {
        let mut batch = Vec::with_capacity(incoming.len());
        for op in incoming {
            if matches!(op, Op::Prune { .. }) {
                self.housekeeping.push_back(op);
            } else if op.is_progress() {
                self.deferred.push_back(op);
            } else {
                batch.push(op);
            }
        }
        let accepts = batch
            .iter()
            .filter(|op| matches!(op, Op::Accept { .. }))
            .count();
        let now = Instant::now();
        let budget = if accepts > 0 {
            self.last_accept = Some(now);
            PROGRESS_BESIDE_ACCEPTS
        } else if self
            .last_accept
            .is_some_and(|at| now.duration_since(at) < BURST_WINDOW)
        {
            PROGRESS_IN_BURST
        } else {
            MAX_PROGRESS
        };
        let take = budget.min(self.deferred.len());
        batch.extend(self.deferred.drain(..take));
        if !self.housekeeping.is_empty() {
            if accepts == 0 || self.housekeeping_passed >= HOUSEKEEPING_EVERY {
                batch.extend(self.housekeeping.pop_front());
                self.housekeeping_passed = 0;
            } else {
                self.housekeeping_passed += 1;
            }
        }
        batch
    }
}

fn settle<T: Send + 'static>(
    result: Result<T, OpError>,
    reply: Reply<T>,
    guard: impl Send + 'static,
    answers: &mut Vec<Pending>,
) -> Option<StoreError> {
    let (result, fatal) = match result {
        Ok(value) => (Ok(value), None),
        Err(OpError::Op(err)) => (Err(err), None),
        Err(OpError::Fatal(err)) => (Err(err.clone()), Some(err)),
    };
    answers.push(pending(reply, result, guard));
    fatal
}

#[cfg(test)]
mod tests;
