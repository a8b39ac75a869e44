//! The writer: one thread that owns every write transaction and commits writes in groups.
//!
//! Callers send an [`Op`] with a oneshot reply over an unbounded channel. The writer takes
//! whatever is waiting (up to a batch cap), applies it all in one write transaction, commits
//! once, and only then answers each caller: many concurrent accepts share one fsync.
//!
//! Within a batch, an op that fails on its own (unknown run, wrong status, undecodable record)
//! is answered with its error and leaves no trace, because each op reads and checks everything
//! before it writes anything. A failure of the database itself (begin, write or commit) aborts
//! the whole transaction, and every op of the batch is answered with that error: nothing is
//! ever reported written that was not committed.
//!
//! Durability: a batch that holds anything acknowledged to the outside world or that recovery
//! depends on (accept, start_run, recover, tokens, flow versions) is committed with
//! `Durability::Immediate`. A batch of only `record_step`/`finish_run` is committed with
//! `Durability::None` unless `Options::sync_progress` is set. The next durable commit carries
//! it to disk; without one, the writer makes an empty durable commit after [`IDLE_SYNC_DELAY`]
//! without work, or once writes have been unsynced for [`MAX_UNSYNCED`] under steady load.
//! redb commits are ordered, so after a crash the file holds a prefix of the commits that
//! contains every acknowledged accept and start. What may be lost is the latest step records
//! and final statuses; such a run is still in the queue, marked running, so it runs again with
//! its attempt counted (at-least-once).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;
use ulid::Ulid;

use super::error::StoreError;
use super::tables::{
    BODIES, DEDUPE, FLOW_VERSIONS, QUEUE, REQUESTS, RUNS, RUNS_BY_FLOW, RUNS_BY_FLOW_STATUS,
    RUNS_BY_STATUS, RequestRecord, RunRecord, STEPS, TOKENS, decode, encode,
};
use super::types::{Accepted, NewRun, Run, RunId, RunOutcome, RunStatus, StepRecord, to_ms};

/// The longest time progress writes stay unsynced while the writer is kept busy.
pub(super) const MAX_UNSYNCED: Duration = Duration::from_secs(1);

/// How long the writer waits for more work before syncing progress writes. Syncing at once
/// when idle would make a lone executor's next step wait for that fsync anyway.
const IDLE_SYNC_DELAY: Duration = Duration::from_millis(100);

/// A batch stops growing once its request bodies add up to this, to bound its memory.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// Where the writer sends an op's answer.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write for the writer thread.
pub(super) enum Op {
    Accept {
        run: Box<NewRun>,
        permit: AcceptPermit,
        reply: Reply<Accepted>,
    },
    Start {
        id: RunId,
        reply: Reply<Run>,
    },
    Step {
        id: RunId,
        step: Box<StepRecord>,
        reply: Reply<()>,
    },
    Finish {
        id: RunId,
        outcome: RunOutcome,
        error: Option<String>,
        reply: Reply<Run>,
    },
    Token {
        flow_id: String,
        reply: Reply<String>,
    },
    FlowVersion {
        flow_id: String,
        version: String,
        source: String,
        reply: Reply<()>,
    },
    Recover {
        reply: Reply<Vec<RunId>>,
    },
    /// Holds the writer until `resume` is dropped (see `Store::pause_writer`).
    Pause {
        paused: oneshot::Sender<()>,
        resume: std::sync::mpsc::Receiver<()>,
    },
}

impl Op {
    /// Whether the batch holding this op must be committed with an fsync before answering.
    fn needs_sync(&self) -> bool {
        !matches!(self, Op::Step { .. } | Op::Finish { .. } | Op::Pause { .. })
    }

    /// Roughly how many bytes this op adds to a transaction.
    fn weight(&self) -> usize {
        match self {
            Op::Accept { run, .. } => run.request.body.len() + 512,
            Op::Step { .. } => 1024,
            Op::FlowVersion { source, .. } => source.len(),
            _ => 64,
        }
    }

    /// The answer of an op that was never applied because its batch failed first.
    fn unapplied(self) -> Pending {
        match self {
            Op::Accept { permit, reply, .. } => pending(reply, Err(unanswered()), permit),
            Op::Start { reply, .. } | Op::Finish { reply, .. } => {
                pending(reply, Err(unanswered()), ())
            }
            Op::Step { reply, .. } | Op::FlowVersion { reply, .. } => {
                pending(reply, Err(unanswered()), ())
            }
            Op::Token { reply, .. } => pending(reply, Err(unanswered()), ()),
            Op::Recover { reply } => pending(reply, Err(unanswered()), ()),
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
}

/// How the writer batches and syncs.
#[derive(Debug, Clone)]
pub(super) struct WriterConfig {
    pub max_batch: usize,
    pub sync_progress: bool,
}

/// The answer to one op, sent once the batch's fate is known: `None` when the batch committed,
/// the batch's error otherwise.
type Pending = Box<dyn FnOnce(Option<StoreError>) + Send>;

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

/// Every table, opened once per batch.
struct WriteTables<'t> {
    runs: Table<'t, u128, &'static [u8]>,
    requests: Table<'t, u128, &'static [u8]>,
    bodies: Table<'t, u128, &'static [u8]>,
    steps: Table<'t, (u128, u32), &'static [u8]>,
    queue: Table<'t, u128, ()>,
    by_flow: Table<'t, (&'static str, u128), ()>,
    by_status: Table<'t, (u8, u128), ()>,
    by_flow_status: Table<'t, (&'static str, u8, u128), ()>,
    dedupe: Table<'t, (&'static str, &'static str), u128>,
    flow_versions: Table<'t, (&'static str, &'static str), &'static str>,
    tokens: Table<'t, &'static str, &'static str>,
}

impl<'t> WriteTables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(WriteTables {
            runs: txn.open_table(RUNS)?,
            requests: txn.open_table(REQUESTS)?,
            bodies: txn.open_table(BODIES)?,
            steps: txn.open_table(STEPS)?,
            queue: txn.open_table(QUEUE)?,
            by_flow: txn.open_table(RUNS_BY_FLOW)?,
            by_status: txn.open_table(RUNS_BY_STATUS)?,
            by_flow_status: txn.open_table(RUNS_BY_FLOW_STATUS)?,
            dedupe: txn.open_table(DEDUPE)?,
            flow_versions: txn.open_table(FLOW_VERSIONS)?,
            tokens: txn.open_table(TOKENS)?,
        })
    }

    fn load_run(&self, id: RunId) -> Result<RunRecord, OpError> {
        let guard = self
            .runs
            .get(id.as_u128())?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")))?;
        Ok(decode(format_args!("run {id}"), guard.value())?)
    }

    fn put_run(&mut self, id: RunId, bytes: &[u8]) -> Result<(), OpError> {
        self.runs.insert(id.as_u128(), bytes)?;
        Ok(())
    }

    /// Adds a new run to the flow and status indexes.
    fn index(&mut self, id: RunId, flow_id: &str, status: RunStatus) -> Result<(), OpError> {
        let id = id.as_u128();
        self.by_flow.insert((flow_id, id), ())?;
        self.by_status.insert((status.code(), id), ())?;
        self.by_flow_status
            .insert((flow_id, status.code(), id), ())?;
        Ok(())
    }

    /// Moves a run from one status to another in the status indexes.
    fn reindex(
        &mut self,
        id: RunId,
        flow_id: &str,
        from: RunStatus,
        to: RunStatus,
    ) -> Result<(), OpError> {
        if from == to {
            return Ok(());
        }
        let id = id.as_u128();
        self.by_status.remove((from.code(), id))?;
        self.by_status.insert((to.code(), id), ())?;
        self.by_flow_status.remove((flow_id, from.code(), id))?;
        self.by_flow_status.insert((flow_id, to.code(), id), ())?;
        Ok(())
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
}

impl Writer {
    /// Serves ops until every `Store` handle is gone, then makes everything durable.
    pub(super) fn run(mut self) {
        tracing::debug!("store writer started");
        loop {
            let first = if self.unsynced_since.is_some() {
                match self.ops.recv_timeout(IDLE_SYNC_DELAY) {
                    Ok(op) => op,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        self.sync();
                        break;
                    }
                }
            } else {
                match self.ops.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                }
            };
            let batch = self.gather(first);
            self.commit(batch);
        }
        tracing::debug!("store writer stopped");
    }

    /// The first op and whatever else is already waiting, up to the caps.
    fn gather(&mut self, first: Op) -> Vec<Op> {
        let mut bytes = first.weight();
        let mut batch = vec![first];
        while batch.len() < self.config.max_batch && bytes < MAX_BATCH_BYTES {
            match self.ops.try_recv() {
                Ok(op) => {
                    bytes += op.weight();
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        batch
    }

    fn commit(&mut self, batch: Vec<Op>) {
        let durable = self.config.sync_progress
            || batch.iter().any(Op::needs_sync)
            || self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= MAX_UNSYNCED);
        let size = batch.len() as u64;
        let mut answers = Vec::with_capacity(batch.len());
        let mut ops = batch.into_iter();
        let result = self.write(&mut ops, durable, &mut answers);
        answers.extend(ops.map(Op::unapplied));
        match result {
            Ok(()) => {
                self.count_commit(durable, size);
                for answer in answers {
                    answer(None);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, writes = size, "group commit failed");
                for answer in answers {
                    answer(Some(err.clone()));
                }
            }
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
    fn write(
        &mut self,
        ops: &mut impl Iterator<Item = Op>,
        durable: bool,
        answers: &mut Vec<Pending>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut tables = WriteTables::open(&txn)?;
            for op in ops.by_ref() {
                if let Some(fatal) = self.apply(&mut tables, op, answers) {
                    // Dropping the transaction aborts it.
                    return Err(fatal);
                }
            }
        }
        txn.commit()?;
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
            Ok(()) => self.count_commit(true, 0),
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
                let result = self.accept(t, *run);
                settle(result, reply, permit, answers)
            }
            Op::Start { id, reply } => settle(start(t, id), reply, (), answers),
            Op::Step { id, step, reply } => settle(record_step(t, id, &step), reply, (), answers),
            Op::Finish {
                id,
                outcome,
                error,
                reply,
            } => settle(finish(t, id, outcome, error), reply, (), answers),
            Op::Token { flow_id, reply } => settle(token(t, &flow_id), reply, (), answers),
            Op::FlowVersion {
                flow_id,
                version,
                source,
                reply,
            } => settle(
                flow_version(t, &flow_id, &version, &source),
                reply,
                (),
                answers,
            ),
            Op::Recover { reply } => settle(recover(t), reply, (), answers),
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

    fn accept(&mut self, t: &mut WriteTables<'_>, new: NewRun) -> Result<Accepted, OpError> {
        if let Some(key) = &new.dedupe_key
            && let Some(first) = t.dedupe.get((new.flow_id.as_str(), key.as_str()))?
        {
            let id = RunId::from(first.value());
            drop(first);
            match t.load_run(id) {
                Ok(record) => {
                    return Ok(Accepted {
                        run: record.to_run(id),
                        duplicate: true,
                    });
                }
                // The first run was deleted (retention): accept this one as new.
                Err(OpError::Op(StoreError::NotFound(_))) => {}
                Err(err) => return Err(err),
            }
        }

        let request = new.request;
        let received_at_ms = to_ms(request.received_at);
        let record = RunRecord {
            flow_id: new.flow_id,
            flow_version: new.flow_version,
            status: RunStatus::Queued,
            attempt: 1,
            received_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            method: request.method.clone(),
            content_type: request.header("content-type").map(str::to_owned),
            body_size: request.body.len() as u64,
            dedupe_key: new.dedupe_key,
        };
        let stored_request = RequestRecord {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            remote_addr: request.remote_addr,
            received_at_ms,
        };
        let run_bytes = encode("run", &record)?;
        let request_bytes = encode("request", &stored_request)?;

        let id = self.next_id();
        let key = id.as_u128();
        t.put_run(id, &run_bytes)?;
        t.requests.insert(key, request_bytes.as_slice())?;
        t.bodies.insert(key, request.body.as_slice())?;
        t.queue.insert(key, ())?;
        t.index(id, &record.flow_id, RunStatus::Queued)?;
        if let Some(dedupe_key) = &record.dedupe_key {
            t.dedupe
                .insert((record.flow_id.as_str(), dedupe_key.as_str()), key)?;
        }
        Ok(Accepted {
            run: record.to_run(id),
            duplicate: false,
        })
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

fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

/// Queued → Running. Clears the steps of an earlier, interrupted attempt.
fn start(t: &mut WriteTables<'_>, id: RunId) -> Result<Run, OpError> {
    let mut record = t.load_run(id)?;
    if record.status != RunStatus::Queued {
        return Err(StoreError::Conflict(format!(
            "run {id} cannot start: it is {}, not queued",
            record.status
        ))
        .into());
    }
    record.status = RunStatus::Running;
    record.started_at_ms = Some(now_ms());
    record.finished_at_ms = None;
    record.error = None;
    let bytes = encode("run", &record)?;

    t.put_run(id, &bytes)?;
    t.reindex(id, &record.flow_id, RunStatus::Queued, RunStatus::Running)?;
    let key = id.as_u128();
    t.steps
        .retain_in((key, 0)..=(key, u32::MAX), |_, _| false)?;
    Ok(record.to_run(id))
}

/// Stores a step of a running run, replacing one with the same index.
fn record_step(t: &mut WriteTables<'_>, id: RunId, step: &StepRecord) -> Result<(), OpError> {
    let record = t.load_run(id)?;
    if record.status != RunStatus::Running {
        return Err(StoreError::Conflict(format!(
            "cannot record step {:?} of run {id}: it is {}, not running",
            step.step_id, record.status
        ))
        .into());
    }
    let bytes = encode("step", step)?;
    t.steps
        .insert((id.as_u128(), step.index), bytes.as_slice())?;
    Ok(())
}

/// Queued or Running → a final status; the run leaves the queue.
fn finish(
    t: &mut WriteTables<'_>,
    id: RunId,
    outcome: RunOutcome,
    error: Option<String>,
) -> Result<Run, OpError> {
    let mut record = t.load_run(id)?;
    if record.status.is_final() {
        return Err(StoreError::Conflict(format!(
            "run {id} cannot finish: it already finished as {}",
            record.status
        ))
        .into());
    }
    let from = record.status;
    record.status = outcome.into();
    record.finished_at_ms = Some(now_ms());
    record.error = error;
    let bytes = encode("run", &record)?;

    t.put_run(id, &bytes)?;
    t.reindex(id, &record.flow_id, from, record.status)?;
    t.queue.remove(id.as_u128())?;
    Ok(record.to_run(id))
}

/// The flow's token, made on first use: 128 random bits, base64url without padding.
fn token(t: &mut WriteTables<'_>, flow_id: &str) -> Result<String, OpError> {
    if let Some(existing) = t.tokens.get(flow_id)? {
        return Ok(existing.value().to_owned());
    }
    let mut bits = [0u8; 16];
    getrandom::fill(&mut bits).map_err(|e| {
        StoreError::Storage(format!(
            "no randomness for the token of flow {flow_id:?}: {e}"
        ))
    })?;
    let token = URL_SAFE_NO_PAD.encode(bits);
    t.tokens.insert(flow_id, token.as_str())?;
    Ok(token)
}

/// Keeps a flow version's source; storing the same again is a no-op.
fn flow_version(
    t: &mut WriteTables<'_>,
    flow_id: &str,
    version: &str,
    source: &str,
) -> Result<(), OpError> {
    if let Some(existing) = t.flow_versions.get((flow_id, version))? {
        if existing.value() == source {
            return Ok(());
        }
        return Err(StoreError::Conflict(format!(
            "flow {flow_id:?} version {version:?} is already stored with another source"
        ))
        .into());
    }
    t.flow_versions.insert((flow_id, version), source)?;
    Ok(())
}

/// Every live run, oldest first; interrupted (running) ones go back to queued, attempt + 1.
fn recover(t: &mut WriteTables<'_>) -> Result<Vec<RunId>, OpError> {
    let mut ids = Vec::new();
    for entry in t.queue.iter()? {
        let (key, _) = entry?;
        ids.push(RunId::from(key.value()));
    }
    // Read and check everything before writing anything.
    let mut interrupted = Vec::new();
    for &id in &ids {
        let mut record = t.load_run(id).map_err(|err| match err {
            OpError::Op(StoreError::NotFound(_)) => OpError::Op(StoreError::Corrupt(format!(
                "run {id} is in the queue but has no record"
            ))),
            other => other,
        })?;
        match record.status {
            RunStatus::Queued => {}
            RunStatus::Running => {
                record.status = RunStatus::Queued;
                record.attempt = record.attempt.saturating_add(1);
                record.started_at_ms = None;
                interrupted.push((id, encode("run", &record)?, record.flow_id));
            }
            done => {
                return Err(
                    StoreError::Corrupt(format!("run {id} is in the queue but {done}")).into(),
                );
            }
        }
    }
    for (id, bytes, flow_id) in interrupted {
        tracing::info!(run_id = %id, flow_id, "interrupted run queued again");
        t.put_run(id, &bytes)?;
        t.reindex(id, &flow_id, RunStatus::Running, RunStatus::Queued)?;
    }
    Ok(ids)
}
