//! The writer: one thread that owns every write transaction and commits writes in groups.
//!
//! Callers send an [`Op`] with a oneshot reply over an unbounded channel. The writer takes
//! whatever is waiting (up to a batch cap), applies it all in one write transaction, commits
//! once, and only then answers each caller: many concurrent accepts share one fsync.
//!
//! Accepts come first: run progress (start, step, finish) waits in [`Writer::deferred`] and
//! only a small share of it joins a transaction that holds accepts (see [`Writer::schedule`]),
//! so a burst of webhooks is answered at the speed of small commits and its runs catch up.
//!
//! Within a batch, an op that fails on its own (unknown run, wrong status, undecodable record)
//! is answered with its error and leaves no trace, because each op reads and checks everything
//! before it writes anything. A failure of the database itself (begin, write or commit) aborts
//! the whole transaction, and every op of the batch is answered with that error: nothing is
//! ever reported written that was not committed.
//!
//! Durability, with the journal (the default, see [`super::journal`]): every commit is a
//! `Durability::None` commit, visible to readers at once, and its changes go to the journal as
//! one frame, which the writer appends and syncs right after the commit. The callers that need
//! durability (accept, start_run) are answered once that frame is synced; step records and
//! final statuses are answered at once and synced with the next frame. The rare ops that are
//! not journaled (tokens, flow versions, recover, sync) are committed with
//! `Durability::Immediate`: a checkpoint, which also lets the journal start again. So are
//! commits once the journal is large, and an empty commit after [`IDLE_SYNC_DELAY`] without
//! work. After a crash, redb holds the last checkpoint and the journal the commits after it,
//! so every acknowledged accept and start is kept. What may be lost is the latest step
//! records and final statuses; such a run is still in the `live` table, marked running, so it
//! runs again with its attempt counted (at-least-once). When a frame cannot be written, its
//! callers are answered with the error, and in a durable commit the runs the batch accepted
//! are deleted again and those it started queued again ([`Writer::take_back`]): senders told
//! to retry whose runs were kept would have their webhooks run twice.
//!
//! Without the journal (`Options::journal` off, or after the journal failed to write): a batch
//! that holds anything acknowledged to the outside world or that recovery depends on is
//! committed with `Durability::Immediate`. A batch of only `record_step`/`finish_run` (and
//! forgetting expired dedupe values) is committed with `Durability::None` unless
//! `Options::sync_progress` is set; the next durable commit carries it to disk, or an empty
//! durable commit after [`IDLE_SYNC_DELAY`] without work, or once writes have been unsynced for
//! [`MAX_UNSYNCED`] under steady load.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;
use ulid::Ulid;

use super::error::StoreError;
use super::journal::{self, Entry, Pending, Redo};
use super::query::DedupeEntry;
use super::tables::{
    DEDUPE, DONE_BY_FLOW_STATUS, DONE_BY_STATUS, Envelope, FLOW_VERSION_PLUGINS, FLOW_VERSIONS,
    LIVE, META, OUTCOMES, Outcome, PLUGINS, REQUESTS, RUNS_BY_FLOW, STEPS, State, TOKENS, bundle,
    encode, run_of, state_of,
};
use super::types::{PluginBlob, Run, RunId, RunOutcome, RunStatus, to_ms};

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
            Op::Start { .. } | Op::Step { .. } | Op::Finish { .. } | Op::ForgetDedupe { .. }
        )
    }

    /// Whether this op is not journaled, so the batch holding it is committed with an fsync
    /// of redb itself (a checkpoint). All are rare.
    fn needs_checkpoint(&self) -> bool {
        matches!(
            self,
            Op::Token { .. } | Op::FlowVersion { .. } | Op::Recover { .. } | Op::Sync { .. }
        )
    }

    /// Whether the batch holding this op must be durable before answering.
    /// Forgetting expired dedupe entries need not: an entry that comes back after a crash is
    /// expired still, and is forgotten again.
    fn needs_sync(&self) -> bool {
        !matches!(
            self,
            Op::Step { .. } | Op::Finish { .. } | Op::Pause { .. } | Op::ForgetDedupe { .. }
        )
    }

    /// Roughly how many bytes this op adds to a transaction.
    fn weight(&self) -> usize {
        match self {
            Op::Accept { run, .. } => run.bytes.len(),
            Op::Step { bytes, .. } => bytes.len(),
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
            Op::Finish { reply, .. } => pending(reply, Err(unanswered()), ()),
            Op::Step { reply, .. } | Op::FlowVersion { reply, .. } => {
                pending(reply, Err(unanswered()), ())
            }
            Op::Token { reply, .. } => pending(reply, Err(unanswered()), ()),
            Op::Recover { reply } => pending(reply, Err(unanswered()), ()),
            Op::ForgetDedupe { reply, .. } => pending(reply, Err(unanswered()), ()),
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

/// What the writer has done, for `Store::stats`.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub commits: AtomicU64,
    pub durable_commits: AtomicU64,
    pub writes: AtomicU64,
    pub largest_batch: AtomicU64,
    pub apply_us: AtomicU64,
    pub commit_us: AtomicU64,
    pub journal_syncs: AtomicU64,
    pub journal_bytes: AtomicU64,
    pub journal_sync_us: AtomicU64,
    pub journal_direct: AtomicBool,
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

/// Why an op failed: on its own (answer it, go on with the batch), or because the database
/// failed (abort the batch).
enum OpError {
    Op(StoreError),
    Fatal(StoreError),
}

impl From<StoreError> for OpError {
    fn from(err: StoreError) -> Self {
        OpError::Op(err)
    }
}

macro_rules! fatal_from {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for OpError {
            fn from(err: $ty) -> Self {
                OpError::Fatal(StoreError::from(err))
            }
        }
    )*};
}

fatal_from!(redb::StorageError, redb::TableError);

/// The tables of one batch's transaction. The two every accept writes are opened with it;
/// the others when an op first needs them: opening a table is not free, and a burst of
/// accepts makes batches that need no other.
struct WriteTables<'t> {
    txn: &'t WriteTransaction,
    requests: Table<'t, u128, &'static [u8]>,
    live: Table<'t, u128, (u8, u32, u64)>,
    outcomes: Option<Table<'t, u128, &'static [u8]>>,
    steps: Option<Table<'t, (u128, u32), &'static [u8]>>,
    by_flow: Option<Table<'t, (&'static str, u128), ()>>,
    done_by_status: Option<Table<'t, (u8, u128), ()>>,
    done_by_flow_status: Option<Table<'t, (&'static str, u8, u128), ()>>,
    dedupe: Option<Table<'t, (&'static str, &'static str), u128>>,
    flow_versions: Option<Table<'t, (&'static str, &'static str), &'static str>>,
    flow_version_plugins: Option<Table<'t, (&'static str, &'static str), &'static str>>,
    plugins: Option<Table<'t, &'static str, &'static [u8]>>,
    tokens: Option<Table<'t, &'static str, &'static str>>,
    /// The requests accepted in this transaction and not yet stored.
    bundle: bundle::Builder,
}

/// The table in `slot`, opened in `txn` the first time.
fn lazy<'a, 't, K: redb::Key + 'static, V: redb::Value + 'static>(
    slot: &'a mut Option<Table<'t, K, V>>,
    txn: &'t WriteTransaction,
    definition: redb::TableDefinition<K, V>,
) -> Result<&'a mut Table<'t, K, V>, redb::TableError> {
    match slot {
        Some(table) => Ok(table),
        None => Ok(slot.insert(txn.open_table(definition)?)),
    }
}

macro_rules! lazy_tables {
    ($($name:ident: $definition:ident, $key:ty, $value:ty;)*) => {
        impl<'t> WriteTables<'t> {
            $(
                fn $name(&mut self) -> Result<&mut Table<'t, $key, $value>, redb::TableError> {
                    lazy(&mut self.$name, self.txn, $definition)
                }
            )*
        }
    };
}

lazy_tables! {
    outcomes: OUTCOMES, u128, &'static [u8];
    steps: STEPS, (u128, u32), &'static [u8];
    by_flow: RUNS_BY_FLOW, (&'static str, u128), ();
    done_by_status: DONE_BY_STATUS, (u8, u128), ();
    done_by_flow_status: DONE_BY_FLOW_STATUS, (&'static str, u8, u128), ();
    dedupe: DEDUPE, (&'static str, &'static str), u128;
    flow_versions: FLOW_VERSIONS, (&'static str, &'static str), &'static str;
    flow_version_plugins: FLOW_VERSION_PLUGINS, (&'static str, &'static str), &'static str;
    plugins: PLUGINS, &'static str, &'static [u8];
    tokens: TOKENS, &'static str, &'static str;
}

impl<'t> WriteTables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(WriteTables {
            txn,
            requests: txn.open_table(REQUESTS)?,
            live: txn.open_table(LIVE)?,
            outcomes: None,
            steps: None,
            by_flow: None,
            done_by_status: None,
            done_by_flow_status: None,
            dedupe: None,
            flow_versions: None,
            flow_version_plugins: None,
            plugins: None,
            tokens: None,
            bundle: bundle::Builder::default(),
        })
    }

    /// Stores the requests accepted so far as one bundle. Called before the transaction
    /// commits and before anything reads [`REQUESTS`] in it.
    fn flush_bundle(&mut self) -> Result<(), redb::StorageError> {
        if let Some((key, value)) = self.bundle.take() {
            self.requests.insert(key, value.as_slice())?;
        }
        Ok(())
    }

    /// What `read` makes of a live run's stored request.
    fn with_request<R>(
        &mut self,
        id: RunId,
        read: impl FnOnce(&[u8]) -> Result<R, StoreError>,
    ) -> Result<R, OpError> {
        self.flush_bundle()?;
        let found = bundle::find(&self.requests, id)
            .map_err(fatal_if_storage)?
            .ok_or_else(|| StoreError::Corrupt(format!("run {id} is live but has no request")))?;
        Ok(read(found.bytes())?)
    }

    /// The run's state; `NotFound` for an unknown run.
    fn load_state(&mut self, id: RunId) -> Result<State, OpError> {
        let outcomes = lazy(&mut self.outcomes, self.txn, OUTCOMES)?;
        state_of(&self.live, outcomes, id)
            .map_err(fatal_if_storage)?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")).into())
    }

    /// The run as shown; `NotFound` for an unknown run.
    fn load_run(&mut self, id: RunId) -> Result<Run, OpError> {
        let outcomes = lazy(&mut self.outcomes, self.txn, OUTCOMES)?;
        run_of(&self.requests, &self.live, outcomes, id)
            .map_err(fatal_if_storage)?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")).into())
    }
}

/// A read error of the database aborts the batch; an undecodable record fails only its op.
fn fatal_if_storage(err: StoreError) -> OpError {
    match err {
        StoreError::Corrupt(_) | StoreError::NotFound(_) | StoreError::Conflict(_) => {
            OpError::Op(err)
        }
        other => OpError::Fatal(other),
    }
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
    pub redo: Redo,
    /// The accepts and starts of the transaction being written: taken back (see
    /// [`Writer::take_back`]) if its journal frame cannot be written.
    pub unconfirmed: Vec<Unconfirmed>,
}

/// An accept or start of the transaction being written, answered once its journal frame is
/// synced.
pub(super) enum Unconfirmed {
    /// A new run, with its flow and dedupe value if the flow dedupes.
    Accepted {
        id: RunId,
        dedupe: Option<(String, String)>,
    },
    /// A run marked running.
    Started { id: RunId },
}

/// The writer's journal.
pub(super) struct JournalLink {
    pub journal: journal::Journal,
    /// The `seq` of the last commit that changed something journaled.
    pub seq: u64,
}

impl JournalLink {
    fn working(&self) -> bool {
        !self.journal.failed
    }
}

impl Writer {
    /// Serves ops until every `Store` handle is gone, then makes everything durable.
    pub(super) fn run(mut self) {
        tracing::debug!("store writer started");
        let mut open = true;
        while open || !self.deferred.is_empty() {
            let mut incoming = Vec::new();
            if open && self.deferred.is_empty() {
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
    fn schedule(&mut self, incoming: Vec<Op>) -> Vec<Op> {
        let mut batch = Vec::with_capacity(incoming.len());
        for op in incoming {
            if op.is_progress() {
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
        batch
    }

    /// Commits a batch. With a working journal, the commit is not fsync'd: the batch's
    /// entries are appended to the journal and synced, and only then are the callers that
    /// need durability answered. Without one, or for ops that are not journaled, redb
    /// fsyncs the commit (a checkpoint, which also lets the journal start again).
    fn commit(&mut self, batch: Vec<Op>) {
        let journaled = self.journal.as_ref().is_some_and(JournalLink::working);
        let durable = if journaled {
            batch.iter().any(Op::needs_checkpoint)
                || self
                    .journal
                    .as_ref()
                    .is_some_and(|j| j.journal.want_checkpoint)
        } else {
            self.config.sync_progress
                || batch.iter().any(Op::needs_sync)
                || self
                    .unsynced_since
                    .is_some_and(|since| since.elapsed() >= MAX_UNSYNCED)
        };
        let via_journal = journaled && !durable;
        let size = batch.len() as u64;
        let mut now = Vec::with_capacity(batch.len());
        let mut synced = Vec::new();
        let mut ops = batch.into_iter();
        self.redo.clear();
        self.unconfirmed.clear();
        let result = self.write(&mut ops, durable, via_journal, &mut now, &mut synced);
        now.extend(ops.map(Op::unapplied));
        match result {
            Ok(()) => {
                self.count_commit(durable, size);
                // What needs no sync is answered before the journal's fsync.
                for answer in now {
                    answer(None);
                }
                if let Some(link) = &mut self.journal {
                    if !self.redo.is_empty() {
                        link.seq += 1;
                    }
                    if via_journal {
                        let error = link.journal.append(link.seq, self.redo.bytes()).err();
                        if error.is_some() {
                            self.take_back();
                        }
                        for answer in synced {
                            answer(error.clone());
                        }
                    } else if durable {
                        link.journal.checkpointed();
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, writes = size, "group commit failed");
                for answer in now.into_iter().chain(synced) {
                    answer(Some(err.clone()));
                }
            }
        }
    }

    /// Undoes the accepts and starts of the last transaction, whose journal frame could not be
    /// written, in a durable commit: their callers are answered with an error. A sender told
    /// to retry whose run was kept would have its webhook run twice, so accepted runs are
    /// deleted; started runs are queued again, as the executor then believes them. The commit
    /// also makes the transaction's journal sequence number durable, so that its frame, should
    /// part of it have reached the disk, is never applied again at start.
    fn take_back(&mut self) {
        if self.unconfirmed.is_empty() {
            return;
        }
        let unconfirmed = std::mem::take(&mut self.unconfirmed);
        let result = (|| -> Result<(), StoreError> {
            let txn = self.db.begin_write()?;
            {
                let mut t = WriteTables::open(&txn)?;
                for change in &unconfirmed {
                    match change {
                        Unconfirmed::Accepted { id, dedupe } => {
                            let key = id.as_u128();
                            t.live.remove(key)?;
                            // A bundle's key is its first run's id, and every bundle the
                            // transaction wrote holds only its own runs.
                            t.requests.remove(key)?;
                            if let Some((flow_id, dedupe_key)) = dedupe {
                                let table = t.dedupe()?;
                                let entry = (flow_id.as_str(), dedupe_key.as_str());
                                if table.get(entry)?.is_some_and(|first| first.value() == key) {
                                    table.remove(entry)?;
                                }
                            }
                        }
                        Unconfirmed::Started { id } => {
                            let mut state = match t.load_state(*id) {
                                Ok(state) => state,
                                Err(OpError::Op(_)) => continue,
                                Err(OpError::Fatal(err)) => return Err(err),
                            };
                            if state.status == RunStatus::Running {
                                state.status = RunStatus::Queued;
                                state.started_at_ms = None;
                                t.live.insert(id.as_u128(), state.to_live())?;
                            }
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.count_commit(true, 0);
                tracing::warn!(
                    writes = unconfirmed.len(),
                    "the accepts and starts of a batch whose journal write failed were taken back"
                );
            }
            Err(err) => tracing::error!(
                error = %err,
                writes = unconfirmed.len(),
                "the accepts and starts of a batch whose journal write failed could not be taken \
                 back: those runs will run although their callers were answered with an error"
            ),
        }
    }

    fn count_commit(&mut self, durable: bool, writes: u64) {
        let counters = &self.counters;
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.writes.fetch_add(writes, Ordering::Relaxed);
        counters.largest_batch.fetch_max(writes, Ordering::Relaxed);
        if durable {
            counters.durable_commits.fetch_add(1, Ordering::Relaxed);
            self.unsynced_since = None;
        } else if self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
    }

    /// Applies ops in one transaction and commits it. Stops at the first fatal error, leaving
    /// the rest of `ops` unapplied.
    /// `via_journal`: the answers of ops that need durability go to `synced`, to be sent once
    /// the journal holds them; all others go to `now`.
    fn write(
        &mut self,
        ops: &mut impl Iterator<Item = Op>,
        durable: bool,
        via_journal: bool,
        now: &mut Vec<Pending>,
        synced: &mut Vec<Pending>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        let started = Instant::now();
        {
            let mut tables = WriteTables::open(&txn)?;
            for op in ops.by_ref() {
                let answers = if via_journal && (op.needs_sync() || self.config.sync_progress) {
                    &mut *synced
                } else {
                    &mut *now
                };
                if let Some(fatal) = self.apply(&mut tables, op, answers) {
                    // Dropping the transaction aborts it.
                    return Err(fatal);
                }
            }
            tables.flush_bundle()?;
            if let Some(journal) = &self.journal
                && !self.redo.is_empty()
            {
                txn.open_table(META)?
                    .insert(journal::SEQ_KEY, journal.seq + 1)?;
            }
        }
        let applied = Instant::now();
        txn.commit()?;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let counters = &self.counters;
        counters
            .apply_us
            .fetch_add(micros(applied - started), Ordering::Relaxed);
        counters
            .commit_us
            .fetch_add(micros(applied.elapsed()), Ordering::Relaxed);
        Ok(())
    }

    /// Makes every earlier commit durable with an empty immediate commit.
    fn sync(&mut self) {
        let result = self
            .db
            .begin_write()
            .map_err(StoreError::from)
            .and_then(|txn| txn.commit().map_err(StoreError::from));
        match result {
            Ok(()) => {
                self.count_commit(true, 0);
                if let Some(link) = &mut self.journal {
                    link.journal.checkpointed();
                }
            }
            Err(err) => {
                // The next durable commit will try again; until then progress writes may be
                // lost in a crash, which at-least-once tolerates.
                tracing::error!(error = %err, "syncing progress writes failed");
                self.unsynced_since = None;
            }
        }
    }

    /// Applies one op; returns the error that must abort the batch, if any.
    fn apply(
        &mut self,
        t: &mut WriteTables<'_>,
        op: Op,
        answers: &mut Vec<Pending>,
    ) -> Option<StoreError> {
        match op {
            Op::Accept { run, permit, reply } => {
                let result = self.accept(t, &run);
                if let Ok(AcceptAnswer::New(id)) = &result {
                    self.redo
                        .accept(*id, &run.flow_id, run.dedupe_key.as_deref(), &run.bytes);
                    let Prepared {
                        flow_id,
                        dedupe_key,
                        ..
                    } = *run;
                    self.unconfirmed.push(Unconfirmed::Accepted {
                        id: *id,
                        dedupe: dedupe_key.map(|key| (flow_id, key)),
                    });
                }
                settle(result, reply, permit, answers)
            }
            Op::Start { id, reply } => {
                let at_ms = now_ms();
                let result = start(t, id, at_ms);
                if result.is_ok() {
                    self.redo.start(id, at_ms);
                    self.unconfirmed.push(Unconfirmed::Started { id });
                }
                settle(result, reply, (), answers)
            }
            Op::Step {
                id,
                index,
                step_id,
                bytes,
                reply,
            } => {
                let result = record_step(t, id, index, &step_id, &bytes);
                if result.is_ok() {
                    self.redo.step(id, index, &step_id, &bytes);
                }
                settle(result, reply, (), answers)
            }
            Op::Finish {
                id,
                outcome,
                error,
                reply,
            } => {
                let at_ms = now_ms();
                let result = finish(t, id, outcome, error.clone(), at_ms);
                if result.is_ok() {
                    self.redo.finish(id, outcome, error.as_deref(), at_ms);
                }
                settle(result, reply, (), answers)
            }
            Op::Token { flow_id, reply } => settle(token(t, &flow_id), reply, (), answers),
            Op::FlowVersion {
                flow_id,
                version,
                source,
                plugins,
                reply,
            } => settle(
                flow_version(t, &flow_id, &version, &source, &plugins),
                reply,
                (),
                answers,
            ),
            Op::Recover { reply } => settle(recover(t), reply, (), answers),
            Op::ForgetDedupe {
                flow_id,
                entries,
                reply,
            } => settle(forget_dedupe(t, &flow_id, &entries), reply, (), answers),
            Op::Sync { reply } => settle(Ok(()), reply, (), answers),
            Op::Pause { paused, resume } => {
                let _ = paused.send(());
                // Returns once the pause guard's sender is dropped.
                let _ = resume.recv();
                None
            }
        }
    }

    /// A new id, larger than any before it even if the clock went back.
    fn next_id(&mut self) -> RunId {
        let fresh = Ulid::generate().0;
        // Incrementing the random part keeps ULID order; u128::MAX is 10889 AD.
        self.last_id = fresh.max(self.last_id.saturating_add(1));
        RunId::from(self.last_id)
    }

    fn accept(&mut self, t: &mut WriteTables<'_>, new: &Prepared) -> Result<AcceptAnswer, OpError> {
        let first = match &new.dedupe_key {
            Some(key) => t
                .dedupe()?
                .get((new.flow_id.as_str(), key.as_str()))?
                .map(|guard| guard.value()),
            None => None,
        };
        // A first run accepted before the window is history: this delivery is a new run.
        let cutoff = new
            .dedupe_window
            .and_then(|window| SystemTime::now().checked_sub(window));
        if let Some(first) = first
            && cutoff.is_none_or(|cutoff| RunId::from(first).timestamp() >= cutoff)
        {
            let id = RunId::from(first);
            // The first run may be in this transaction's bundle.
            t.flush_bundle()?;
            match t.load_run(id) {
                Ok(run) => return Ok(AcceptAnswer::Duplicate(Box::new(run))),
                // The first run was deleted (retention): accept this one as new.
                Err(OpError::Op(StoreError::NotFound(_))) => {}
                Err(err) => return Err(err),
            }
        }
        let id = self.next_id();
        store_new(t, id, &new.flow_id, new.dedupe_key.as_deref(), &new.bytes)?;
        Ok(AcceptAnswer::New(id))
    }
}

/// Stores a new run, queued, with its request.
fn store_new(
    t: &mut WriteTables<'_>,
    id: RunId,
    flow_id: &str,
    dedupe_key: Option<&str>,
    bytes: &[u8],
) -> Result<(), OpError> {
    let key = id.as_u128();
    if !t.bundle.fits(bytes.len()) {
        t.flush_bundle()?;
    }
    t.bundle.push(key, bytes)?;
    t.live.insert(key, State::queued().to_live())?;
    if let Some(dedupe_key) = dedupe_key {
        t.dedupe()?.insert((flow_id, dedupe_key), key)?;
    }
    Ok(())
}

/// Applies the journal's frames that the store does not hold yet, in one durable commit.
/// Returns the store's `seq` before and after.
pub(super) fn replay(
    db: &Database,
    frames: &[(u64, &[u8])],
    journal: &std::path::Path,
) -> Result<(u64, u64), StoreError> {
    let txn = db.begin_write()?;
    let applied = txn
        .open_table(META)?
        .get(journal::SEQ_KEY)?
        .map_or(0, |guard| guard.value());
    let mut last = applied;
    {
        let mut t = WriteTables::open(&txn)?;
        for (seq, payload) in frames {
            if *seq <= applied {
                continue;
            }
            if *seq != last + 1 {
                return Err(StoreError::Corrupt(format!(
                    "the journal {} goes on from commit {seq}, but the store ends at commit {last}: \
                     it belongs to another copy of the store; move it away to open the store without it",
                    journal.display()
                )));
            }
            for entry in journal::decode(payload)? {
                let result = match entry {
                    Entry::Accept {
                        id,
                        flow_id,
                        dedupe_key,
                        bytes,
                    } => store_new(&mut t, id, &flow_id, dedupe_key.as_deref(), &bytes),
                    Entry::Start { id, at_ms } => start(&mut t, id, at_ms).map(|_| ()),
                    Entry::Step {
                        id,
                        index,
                        step_id,
                        bytes,
                    } => record_step(&mut t, id, index, &step_id, &bytes),
                    Entry::Finish {
                        id,
                        outcome,
                        error,
                        at_ms,
                    } => finish(&mut t, id, outcome, error, at_ms),
                };
                match result {
                    Ok(()) => {}
                    // Entries replay onto exactly the state they were first applied to, so
                    // this does not happen; if it does, the rest is still worth keeping.
                    Err(OpError::Op(err)) => {
                        tracing::warn!(seq, error = %err, "a journal entry did not apply again")
                    }
                    Err(OpError::Fatal(err)) => return Err(err),
                }
            }
            last = *seq;
        }
        t.flush_bundle()?;
    }
    if last > applied {
        txn.open_table(META)?.insert(journal::SEQ_KEY, last)?;
    }
    txn.commit()?;
    Ok((applied, last))
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

fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

/// The live state of a run, or why the run cannot `action`: unknown, or already finished.
fn live_state(t: &mut WriteTables<'_>, id: RunId, action: &str) -> Result<State, OpError> {
    let state = t.load_state(id)?;
    if state.status.is_final() {
        return Err(StoreError::Conflict(format!(
            "run {id} cannot {action}: it already finished as {}",
            state.status
        ))
        .into());
    }
    Ok(state)
}

/// Queued → Running: the run's new state and its stored request, to execute. Clears the
/// steps of an earlier, interrupted attempt.
fn start(t: &mut WriteTables<'_>, id: RunId, at_ms: u64) -> Result<(State, Vec<u8>), OpError> {
    let mut state = live_state(t, id, "start")?;
    if state.status != RunStatus::Queued {
        return Err(StoreError::Conflict(format!(
            "run {id} cannot start: it is {}, not queued",
            state.status
        ))
        .into());
    }
    let key = id.as_u128();
    let bytes = t.with_request(id, |bytes| Ok(bytes.to_vec()))?;
    state.status = RunStatus::Running;
    state.started_at_ms = Some(at_ms);
    t.live.insert(key, state.to_live())?;
    if state.attempt > 1 {
        t.steps()?
            .retain_in((key, 0)..=(key, u32::MAX), |_, _| false)?;
    }
    Ok((state, bytes))
}

/// Stores a step of a running run, replacing one with the same index.
fn record_step(
    t: &mut WriteTables<'_>,
    id: RunId,
    index: u32,
    step_id: &str,
    bytes: &[u8],
) -> Result<(), OpError> {
    let state = live_state(t, id, &format!("record step {step_id:?}"))?;
    if state.status != RunStatus::Running {
        return Err(StoreError::Conflict(format!(
            "cannot record step {step_id:?} of run {id}: it is {}, not running",
            state.status
        ))
        .into());
    }
    t.steps()?.insert((id.as_u128(), index), bytes)?;
    Ok(())
}

/// Queued or Running → a final status: the run leaves [`LIVE`] for [`OUTCOMES`] and the
/// status indexes.
fn finish(
    t: &mut WriteTables<'_>,
    id: RunId,
    outcome: RunOutcome,
    error: Option<String>,
    at_ms: u64,
) -> Result<(), OpError> {
    let state = live_state(t, id, "finish")?;
    let key = id.as_u128();
    let flow_id = t.with_request(id, |bytes| Ok(Envelope::flow_of(id, bytes)?.to_owned()))?;
    let status = RunStatus::from(outcome);
    let bytes = encode(
        "outcome",
        &Outcome {
            status,
            attempt: state.attempt,
            started_at_ms: state.started_at_ms,
            finished_at_ms: at_ms,
            error,
        },
    )?;
    t.outcomes()?.insert(key, bytes.as_slice())?;
    t.live.remove(key)?;
    t.done_by_status()?.insert((status.code(), key), ())?;
    t.done_by_flow_status()?
        .insert((flow_id.as_str(), status.code(), key), ())?;
    t.by_flow()?.insert((flow_id.as_str(), key), ())?;
    Ok(())
}

/// The flow's token, made on first use: 128 random bits, base64url without padding.
fn token(t: &mut WriteTables<'_>, flow_id: &str) -> Result<String, OpError> {
    if let Some(existing) = t.tokens()?.get(flow_id)? {
        return Ok(existing.value().to_owned());
    }
    let mut bits = [0u8; 16];
    getrandom::fill(&mut bits).map_err(|e| {
        StoreError::Storage(format!(
            "no randomness for the token of flow {flow_id:?}: {e}"
        ))
    })?;
    let token = URL_SAFE_NO_PAD.encode(bits);
    t.tokens()?.insert(flow_id, token.as_str())?;
    Ok(token)
}

/// Keeps a flow version's source; storing the same again is a no-op.
fn flow_version(
    t: &mut WriteTables<'_>,
    flow_id: &str,
    version: &str,
    source: &str,
    plugins: &[PluginBlob],
) -> Result<(), OpError> {
    let hashes = plugins
        .iter()
        .map(|p| p.hash.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let same_source = t
        .flow_versions()?
        .get((flow_id, version))?
        .map(|existing| existing.value() == source);
    if let Some(same_source) = same_source {
        let same_plugins = t
            .flow_version_plugins()?
            .get((flow_id, version))?
            .is_none_or(|stored| stored.value() == hashes);
        if same_source && same_plugins {
            return Ok(());
        }
        return Err(StoreError::Conflict(format!(
            "flow {flow_id:?} version {version:?} is already stored with another source"
        ))
        .into());
    }
    for plugin in plugins {
        // Content-addressed: a blob stored once serves every version that uses it.
        if t.plugins()?.get(plugin.hash.as_str())?.is_none() {
            t.plugins()?
                .insert(plugin.hash.as_str(), &plugin.bytes[..])?;
        }
    }
    t.flow_versions()?.insert((flow_id, version), source)?;
    t.flow_version_plugins()?
        .insert((flow_id, version), hashes.as_str())?;
    Ok(())
}

/// Deletes the flow's dedupe entries that still name the run they were read with; answers
/// how many.
fn forget_dedupe(
    t: &mut WriteTables<'_>,
    flow_id: &str,
    entries: &[DedupeEntry],
) -> Result<u64, OpError> {
    let mut forgotten = 0;
    for (key, run) in entries {
        let names = t.dedupe()?.get((flow_id, key.as_str()))?.map(|v| v.value());
        if names == Some(*run) {
            t.dedupe()?.remove((flow_id, key.as_str()))?;
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

/// Every live run, oldest first; interrupted (running) ones go back to queued, attempt + 1.
fn recover(t: &mut WriteTables<'_>) -> Result<Vec<RunId>, OpError> {
    let mut ids = Vec::new();
    let mut interrupted = Vec::new();
    for entry in t.live.iter()? {
        let (key, value) = entry?;
        let id = RunId::from(key.value());
        let mut state = State::from_live(id, value.value())?;
        if state.status == RunStatus::Running {
            state.status = RunStatus::Queued;
            state.attempt = state.attempt.saturating_add(1);
            state.started_at_ms = None;
            interrupted.push((id, state));
        }
        ids.push(id);
    }
    for (id, state) in interrupted {
        tracing::info!(run_id = %id, attempt = state.attempt, "interrupted run queued again");
        t.live.insert(id.as_u128(), state.to_live())?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::create(dir.path().join("w.redb")).expect("database");
        let (_ops, receiver) = std::sync::mpsc::channel();
        let writer = Writer {
            db: Arc::new(db),
            ops: receiver,
            config: WriterConfig {
                max_batch: 512,
                sync_progress: false,
            },
            counters: Arc::default(),
            last_id: 0,
            unsynced_since: None,
            deferred: VecDeque::new(),
            last_accept: None,
            journal: None,
            redo: Redo::default(),
            unconfirmed: Vec::new(),
        };
        (dir, writer)
    }

    fn accept(waiting: &Arc<AtomicUsize>) -> Op {
        Op::Accept {
            run: Box::new(Prepared {
                flow_id: "f".into(),
                dedupe_key: None,
                dedupe_window: None,
                bytes: Vec::new(),
            }),
            permit: AcceptPermit::try_acquire(waiting, usize::MAX).expect("permit"),
            reply: oneshot::channel().0,
        }
    }

    /// An accept of flow `f` with this dedupe value, and where its answer arrives.
    fn deduped_accept(
        waiting: &Arc<AtomicUsize>,
        dedupe_key: &str,
    ) -> (Op, oneshot::Receiver<Result<AcceptAnswer, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let op = Op::Accept {
            run: Box::new(Prepared {
                flow_id: "f".into(),
                dedupe_key: Some(dedupe_key.into()),
                dedupe_window: None,
                bytes: b"the request".to_vec(),
            }),
            permit: AcceptPermit::try_acquire(waiting, usize::MAX).expect("permit"),
            reply,
        };
        (op, answer)
    }

    /// How many runs the store holds, and how many request bundles.
    fn stored(writer: &Writer) -> (u64, u64) {
        use redb::{ReadableDatabase, ReadableTableMetadata};
        let txn = writer.db.begin_read().expect("read");
        let live = txn.open_table(LIVE).expect("live").len().expect("len");
        let requests = txn
            .open_table(REQUESTS)
            .expect("requests")
            .len()
            .expect("len");
        (live, requests)
    }

    /// Gives the writer a journal opened read-only, so that its writes fail as on a full or
    /// broken disk.
    fn give_failing_journal(writer: &mut Writer, dir: &tempfile::TempDir) {
        let path = dir.path().join("w.redb-journal");
        std::fs::write(&path, b"").expect("create");
        let read_only = std::fs::File::open(&path).expect("open");
        writer.journal = Some(JournalLink {
            journal: journal::Journal::new(read_only, path, Arc::clone(&writer.counters)),
            seq: 0,
        });
    }

    #[test]
    fn when_the_journal_cannot_be_written_the_accept_fails_is_taken_back_and_later_ones_fsync_redb()
    {
        let (dir, mut writer) = writer();
        give_failing_journal(&mut writer, &dir);
        let waiting = Arc::new(AtomicUsize::new(0));
        let durable = |writer: &Writer| writer.counters.durable_commits.load(Ordering::Relaxed);

        let (first, first_answer) = deduped_accept(&waiting, "delivery-1");
        let (other, other_answer) = deduped_accept(&waiting, "delivery-2");
        writer.commit(vec![first, other]);
        for answer in [first_answer, other_answer] {
            match answer.blocking_recv().expect("answered") {
                Err(err) => assert!(
                    err.to_string().contains("writing the journal"),
                    "unexpected error: {err}"
                ),
                Ok(_) => panic!("an accept was answered Ok although its journal write failed"),
            }
        }
        // The senders were told it failed, so nothing of theirs stays to run: taken back in
        // a durable commit.
        assert_eq!(stored(&writer), (0, 0));
        assert_eq!(durable(&writer), 1);

        // The journal is not tried again: the sender's retry is a new run (not a duplicate of
        // the one taken back), made durable by redb's own fsync.
        let (retry, answer) = deduped_accept(&waiting, "delivery-1");
        writer.commit(vec![retry]);
        assert!(matches!(
            answer.blocking_recv().expect("answered"),
            Ok(AcceptAnswer::New(_))
        ));
        assert_eq!(stored(&writer), (1, 1));
        assert_eq!(durable(&writer), 2);
    }

    #[test]
    fn a_start_whose_journal_write_fails_leaves_the_run_queued() {
        let (dir, mut writer) = writer();
        let waiting = Arc::new(AtomicUsize::new(0));
        // Accepted while there is no journal: made durable by redb.
        let (op, answer) = deduped_accept(&waiting, "delivery-1");
        writer.commit(vec![op]);
        let Ok(AcceptAnswer::New(id)) = answer.blocking_recv().expect("answered") else {
            panic!("the accept failed");
        };

        give_failing_journal(&mut writer, &dir);
        let (reply, answer) = oneshot::channel();
        writer.commit(vec![Op::Start { id, reply }]);
        assert!(
            answer.blocking_recv().expect("answered").is_err(),
            "a start was answered Ok although its journal write failed"
        );
        let status = {
            use redb::ReadableDatabase;
            let txn = writer.db.begin_read().expect("read");
            let live = txn.open_table(LIVE).expect("live");
            let value = live.get(id.as_u128()).expect("get").expect("still live");
            State::from_live(id, value.value()).expect("state").status
        };
        assert_eq!(status, RunStatus::Queued);
    }

    fn step(index: u32) -> Op {
        Op::Step {
            id: RunId::from(1),
            index,
            step_id: format!("s{index}"),
            bytes: Vec::new(),
            reply: oneshot::channel().0,
        }
    }

    /// The step indexes of a batch's progress ops, in order, and its number of accepts.
    fn shape(batch: &[Op]) -> (Vec<u32>, usize) {
        let steps = batch
            .iter()
            .filter_map(|op| match op {
                Op::Step { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        let accepts = batch
            .iter()
            .filter(|op| matches!(op, Op::Accept { .. }))
            .count();
        (steps, accepts)
    }

    #[test]
    fn accepts_go_first_and_progress_follows_in_order() {
        let (_dir, mut writer) = writer();
        let waiting = Arc::new(AtomicUsize::new(0));

        // A burst: every accept joins the transaction, progress only up to its share.
        let mut incoming: Vec<Op> = (0..600).map(step).collect();
        incoming.extend((0..40).map(|_| accept(&waiting)));
        let (steps, accepts) = shape(&writer.schedule(incoming));
        assert_eq!(accepts, 40);
        assert_eq!(
            steps,
            (0..PROGRESS_BESIDE_ACCEPTS as u32).collect::<Vec<_>>()
        );

        // More accepts keep coming: progress still moves, a share at a time, in order.
        let (steps, accepts) = shape(&writer.schedule(vec![accept(&waiting)]));
        assert_eq!(accepts, 1);
        let next = PROGRESS_BESIDE_ACCEPTS as u32;
        assert_eq!(steps, (next..2 * next).collect::<Vec<_>>());

        // A gap between accepts: a small transaction of progress alone.
        let (steps, _) = shape(&writer.schedule(Vec::new()));
        assert_eq!(steps.len(), PROGRESS_IN_BURST);
        assert_eq!(steps[0], 2 * next);

        // The burst is over: large transactions drain what is left.
        writer.last_accept = Some(Instant::now() - BURST_WINDOW * 2);
        let left = writer.deferred.len();
        let (steps, _) = shape(&writer.schedule(Vec::new()));
        assert_eq!(steps.len(), MAX_PROGRESS.min(left));
        assert!(steps.windows(2).all(|w| w[0] + 1 == w[1]));
        let mut rest = Vec::new();
        while !writer.deferred.is_empty() {
            rest.extend(shape(&writer.schedule(Vec::new())).0);
        }
        assert_eq!(rest.len(), left - steps.len());
        assert_eq!(rest.first(), steps.last().map(|last| last + 1).as_ref());
        assert_eq!(rest.last(), Some(&599));
        assert!(writer.deferred.is_empty());
    }
}
