//! The store: one redb file that keeps every run, its raw request, its step records, the run
//! queue, flow versions and the flows' webhook URL tokens, and beside it a journal
//! (`weir.redb-journal`) that makes the writer's commits durable.
//!
//! Writes go through one writer thread that commits them in groups (see `writer`); reads are
//! plain read transactions on a snapshot, from any thread (see `query`).
//!
//! # Durability
//!
//! Every change the writer makes is an [entry](entry) (a new run, a start, a step record, a
//! finish, a token, a flow version, a requeue, forgotten dedupe values), applied by one
//! function that is also what replays the journal (`writer::ops`). A transaction's entries
//! are committed to redb without an fsync (`Durability::None`: visible to readers at once),
//! then written to the journal as one frame and synced (by direct I/O where the file system
//! has it). One synced sequential write costs a fraction of syncing the 10–40 scattered pages
//! of a redb commit.
//!
//! - **When a `202` leaves** (an `accept` answered `Ok`), the frame of the transaction that
//!   accepted it, and every frame before it, is on the disk. So are those of an answered
//!   `start_run`, `token_for`, `put_flow_version` and `recover`. Step records and final
//!   statuses are answered before their frame is synced: a power loss may take the latest
//!   of them, and the run then runs again with its attempt counted (at-least-once).
//! - **A checkpoint** is a durable redb commit (`Durability::Immediate`). It makes every frame
//!   before it redundant, and the journal starts again at its beginning. The writer
//!   checkpoints when idle for a moment, when the journal passes 64 MiB, on `Store::sync`,
//!   and when the store closes.
//! - **Frames never share a block**: each starts at a 4 KiB boundary and is padded to the
//!   end of its last block (`journal`), so a write torn by a power loss can only damage the
//!   frame being written, never an acknowledged one, whether the disk leaves the sectors it
//!   was writing old, new or garbage. redb makes its own commits safe against torn writes
//!   under the assumptions its design states (a sector rewritten in place is left old or new).
//! - **Recovery** (at open): redb comes back at its last durable commit, which records the
//!   `seq` of the last frame it holds. The journal's frames are read from its start while
//!   their checksums hold and their `seq` follow one another; those after the store's `seq`
//!   are applied, in one durable commit. A frame that passes its checksum but cannot be
//!   applied stops the open with an error naming the journal, the frame and the entry: never
//!   a warning, since its commit may have been acknowledged. Then `recover` requeues the runs
//!   a crash left running, with `attempt + 1`.
//! - The directory is synced after the files are opened (or created), so neither vanishes in
//!   a power loss.
//! - When a frame cannot be written (disk full, I/O error), its callers are answered with the
//!   error, the accepts and starts of its transaction are taken back in a durable commit (a
//!   sender told to retry whose run was kept would have it run twice), and from then on every
//!   commit that must be durable is fsync'd by redb itself. Without the journal
//!   (`Options::journal` off) the same holds from the start.
//!
//! The power-loss tests (`store::power_loss`) check these rules on a simulated disk that
//! drops everything not synced and tears writes at 512-byte sectors.
//!
//! # Invariants
//!
//! - Run ids are strictly increasing ULIDs, also across restarts (the writer never hands out
//!   an id below the largest stored one), so id order is acceptance order.
//! - Every run has a request (with the run's flow and version).
//! - A run has a `live` entry iff its status is `queued`, `running` or `retrying`, and an outcome plus one
//!   entry in each of `runs_by_flow`, `done_by_status` and `done_by_flow_status` iff it
//!   finished; never both (except that stores written before the flow index moved to the end
//!   of a run also index live runs by flow, which listing allows for).
//! - A run's request and live state are written in the same transaction, so a run is either
//!   wholly there or not at all; the same holds for finishing.
//! - The step records of a run are those of its latest attempt: `start_run` clears earlier ones,
//!   except when it resumes a `retrying` run, whose records up to its failed step stay (the
//!   failed step's record, its last, lists the step's attempts).
//! - A flow's token changes only by a rotation, which keeps the one replaced (with the end
//!   of its overlap) in `previous_tokens`; a flow version's source never changes once stored.
//! - A run that finished since `finished_by_flow` exists has one entry there (its status and
//!   duration); a replay has one entry in `replays` under the run it replays.
//! - A dedupe entry `(flow, key)` names the run first accepted under that key, or, with a
//!   `dedupe_window`, the first one accepted after the previous one's window ended.
//!
//! # Life of a run
//!
//! `accept` → queued → `start_run` → running → `finish_run` → succeeded | failed | filtered.
//! A step that fails with retries left: running → `retry` → retrying (with the time of its
//! next attempt, durable) → `start_run` at that time → running again.
//! After a crash, `recover` puts running runs back to queued with `attempt + 1`; retrying runs
//! stay retrying (`retrying_runs` lists them for their timers).

mod check;
mod compact;
mod entry;
mod error;
mod history;
pub mod journal;
mod prune;
mod query;
mod rejections;
mod tables;
mod types;
mod writer;

#[cfg(test)]
mod power_loss;
#[cfg(test)]
mod prune_tests;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable};
use tokio::sync::oneshot;

pub use check::{CheckReport, check};
pub use compact::{CompactError, Compacted, compact};
pub use error::StoreError;
pub use history::FlowStats;
pub use prune::{Holdings, PRUNE_BATCH, age_of};
pub use rejections::{BODY_KEPT, NewRejection, RING, Rejection, RejectionPage};
pub use tables::{ERROR_FLOW_PATH, REQUEST_HEAD_ROOM};
pub use types::{
    Accepted, AttemptRecord, CallRecord, DamagedRun, LogLevel, LogLine, NewRun, Page, PluginBlob,
    RawRequest, Run, RunFilter, RunId, RunOrigin, RunOutcome, RunStatus, Search, StepErrorRecord,
    StepRecord, StepStatus, TokenUsed, UnknownStatus, VerifyUsed, WindowStats,
};

use tables::Envelope;
use tables::{
    DEDUPE, DONE_BY_FLOW_STATUS, DONE_BY_STATUS, FLOW_VERSION_PLUGINS, FLOW_VERSIONS, LIVE, META,
    OUTCOMES, PLUGINS, REQUESTS, RUNS_BY_FLOW, SCHEMA_KEY, SCHEMA_VERSION, STEPS, TOKENS,
};
use tables::{FINISHED_BY_FLOW, PREVIOUS_TOKENS, REPLAYS};
use writer::{AcceptAnswer, AcceptPermit, Op, Prepared, Reply, Writer, WriterConfig};

/// What the writer has done, for [`Store::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
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
    /// Told each commit's and each journal sync's duration, once set.
    pub latency: std::sync::OnceLock<Arc<dyn LatencyObserver>>,
}

/// Told how long each commit and each journal write (with its sync) took, on the writer
/// thread: implementations must be quick (the metrics' histograms are).
pub trait LatencyObserver: Send + Sync + std::fmt::Debug {
    /// A write transaction's commit (with redb's fsync when it is a durable one).
    fn commit(&self, took: Duration);
    /// A journal frame's write and sync.
    fn journal_sync(&self, took: Duration);
}

/// How the store queues and batches writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How many accepts may wait for the writer (including the batch being committed) before
    /// `accept` answers [`StoreError::Overloaded`] at once. It bounds the memory held by bodies
    /// waiting to be written; other writes are never refused, they only wait.
    pub queue_capacity: usize,
    /// The most writes committed in one transaction. Larger batches share an fsync among more
    /// callers but make each of them wait for a longer transaction.
    pub max_batch: usize,
    /// Also make step records and final statuses durable before answering. Off by default:
    /// they are synced with the next journal frame (without the journal: as soon as the
    /// writer is idle, and at least every second), and losing them in a crash only makes the
    /// run run again.
    pub sync_progress: bool,
    /// redb's page cache, in bytes. Runs are written once and read rarely, so a small cache
    /// keeps the process small without slowing accepts.
    pub cache_size: usize,
    /// Make commits durable through the journal (see [`journal`]) rather than an fsync of
    /// redb's pages. On by default; off, every accept waits for redb's own fsync. A journal
    /// left by an earlier run is applied at open either way.
    pub journal: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue_capacity: 1024,
            max_batch: 512,
            sync_progress: false,
            cache_size: 32 << 20,
            journal: true,
        }
    }
}

/// What the writer has done since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Stats {
    /// Write transactions committed.
    pub commits: u64,
    /// Of those, the ones committed with an fsync of redb (checkpoints, when the journal is on).
    pub durable_commits: u64,
    /// Writes (accepts, steps, …) committed, across all transactions.
    pub writes: u64,
    /// The most writes committed in one transaction.
    pub largest_batch: u64,
    /// Accepts waiting for the writer now.
    pub waiting_accepts: usize,
    /// Time the writer spent applying writes to its transactions, in microseconds.
    pub apply_us: u64,
    /// Time the writer spent committing (writing pages out and syncing), in microseconds.
    pub commit_us: u64,
    /// Writes to the journal, each followed by an fsync.
    pub journal_syncs: u64,
    /// Bytes written to the journal.
    pub journal_bytes: u64,
    /// Time spent writing and syncing the journal, in microseconds.
    pub journal_sync_us: u64,
    /// Whether the journal is written by direct I/O (`O_DIRECT | O_DSYNC`), rather than
    /// through the page cache and `fdatasync` (file systems without direct I/O, or no journal).
    pub journal_direct: bool,
}

/// A handle on the store; clones share the same file and writer.
///
/// The file is closed when the last handle is dropped: the drop waits for the writer to
/// commit what is still queued, so it may block for the length of one commit.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    /// `None` only while dropping.
    ops: Option<Sender<Op>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    waiting_accepts: Arc<AtomicUsize>,
    queue_capacity: usize,
    counters: Arc<Counters>,
    /// The last [`Store::used_bytes`] measured, and when.
    used: Mutex<Option<(u64, std::time::SystemTime)>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain what is queued, sync and stop.
        self.ops = None;
        let handle = match self.writer.get_mut() {
            Ok(slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the store writer panicked");
        }
    }
}

/// Holds the writer still while alive; see [`Store::pause_writer`].
#[doc(hidden)]
pub struct WriterPause {
    _resume: mpsc::Sender<()>,
}

/// The most dedupe entries one write forgets, so that a sweep never holds the writer long.
const FORGET_BATCH: usize = 1000;

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

impl Store {
    /// Opens the store at `path` with default [`Options`], creating the file if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::open_with(path, Options::default())
    }

    /// Opens the store at `path`, creating the file and its tables if needed, and starts the
    /// writer thread.
    ///
    /// Fails with [`StoreError::Storage`] if the file cannot be opened (e.g. another process
    /// has it open) and [`StoreError::Corrupt`] if it was written by an incompatible version.
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Store, StoreError> {
        let path = path.as_ref();
        if !path.exists() {
            create(path)?;
        }
        let db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(path)
            .map_err(|e| {
                StoreError::Storage(format!("cannot open the store {}: {e}", path.display()))
            })?;
        let journal_path = journal::path_for(path);
        let (journal_file, journal_data) = journal::open(&journal_path)?;
        // The store file's name, like the journal's (synced by `journal::open`), must survive
        // a power loss.
        journal::sync_dir(path)?;
        let direct = options
            .journal
            .then(|| journal::open_direct(&journal_path))
            .flatten();
        let io = journal::FileIo::new(journal_file, direct, journal_path.clone());
        let store = Store::open_parts(db, Box::new(io), journal_data, journal_path, &options)?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(store)
    }

    /// Opens the store on a redb database and its journal (`journal_data`: the journal's
    /// content, written through `io` from its start): applies the journal, then starts the
    /// writer. Tests open stores on simulated disks this way.
    fn open_parts(
        db: Database,
        io: Box<dyn journal::JournalIo>,
        journal_data: Vec<u8>,
        journal_path: std::path::PathBuf,
        options: &Options,
    ) -> Result<Store, StoreError> {
        prepare(&db)?;
        let (applied, seq) = writer::replay(&db, &journal::frames(&journal_data), &journal_path)?;
        drop(journal_data);
        if seq > applied {
            tracing::info!(
                commits = seq - applied,
                journal = %journal_path.display(),
                "applied the journal's commits that the store did not hold"
            );
        }
        let last_id = last_id(&db)?;
        let counters = Arc::new(Counters::default());
        let db = Arc::new(db);
        let journal = options.journal.then(|| writer::JournalLink {
            journal: journal::Journal::new(io, journal_path, Arc::clone(&counters)),
            seq,
        });

        let (ops, receiver) = mpsc::channel();
        let writer = Writer {
            db: Arc::clone(&db),
            ops: receiver,
            config: WriterConfig {
                max_batch: options.max_batch.max(1),
                sync_progress: options.sync_progress,
            },
            counters: Arc::clone(&counters),
            last_id,
            unsynced_since: None::<Instant>,
            deferred: Default::default(),
            last_accept: None,
            journal,
            redo: Vec::new(),
            unconfirmed: Vec::new(),
            housekeeping: Default::default(),
            housekeeping_passed: 0,
        };
        let handle = std::thread::Builder::new()
            .name("weir-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store writer: {e}")))?;

        Ok(Store {
            inner: Arc::new(Inner {
                db,
                ops: Some(ops),
                writer: Mutex::new(Some(handle)),
                waiting_accepts: Arc::new(AtomicUsize::new(0)),
                queue_capacity: options.queue_capacity,
                counters,
                used: Mutex::new(None),
            }),
        })
    }

    /// Keeps a webhook and queues its run. Answers once the run and its request are on disk
    /// (fsync'd), sharing the commit with every other write waiting at the time.
    ///
    /// Fails at once with [`StoreError::Overloaded`] when too many accepts are already waiting;
    /// with [`StoreError::Unavailable`] or [`StoreError::Storage`] when nothing could be
    /// committed. An `Ok` is never given for a run that is not on disk.
    pub async fn accept(&self, run: NewRun) -> Result<Accepted, StoreError> {
        self.accept_from(run, RunOrigin::default()).await
    }

    /// [`Store::accept`], keeping where the run comes from: the URL token it came through,
    /// or the run it replays (then linked both ways, in the same transaction).
    pub async fn accept_from(
        &self,
        run: NewRun,
        origin: RunOrigin,
    ) -> Result<Accepted, StoreError> {
        let permit =
            AcceptPermit::try_acquire(&self.inner.waiting_accepts, self.inner.queue_capacity)
                .ok_or(StoreError::Overloaded)?;
        let request = run.request;
        let envelope = Envelope {
            flow_id: run.flow_id,
            flow_version: run.flow_version,
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            remote_addr: request.remote_addr,
            received_at_ms: types::to_ms(request.received_at),
            dedupe_key: run.dedupe_key,
            replay_of: origin.replay_of,
            token: origin.token,
            verify: origin.verify,
        };
        let bytes = envelope.encode_owned(request.body)?;
        let prepared = Prepared {
            flow_id: envelope.flow_id,
            dedupe_key: envelope.dedupe_key,
            dedupe_window: run.dedupe_window,
            bytes,
            replay_of: origin.replay_of,
        };
        let answer = self
            .call(|reply| Op::Accept {
                run: Box::new(prepared),
                permit,
                reply,
            })
            .await?;
        Ok(match answer {
            AcceptAnswer::New(id) => Accepted {
                id,
                status: RunStatus::Queued,
                duplicate: false,
            },
            AcceptAnswer::Duplicate(run) => Accepted {
                id: run.id,
                status: run.status,
                duplicate: true,
            },
        })
    }

    /// Marks a queued run running and clears any steps of an earlier attempt. Durable before it
    /// answers, so a crash from here on counts as an attempt.
    ///
    /// [`StoreError::Conflict`] if the run is not queued; [`StoreError::NotFound`] if unknown.
    pub async fn start_run(&self, id: RunId) -> Result<Run, StoreError> {
        Ok(self.claim_run(id).await?.0)
    }

    /// [`Store::start_run`], also answering with the run's request: what the executor needs to
    /// run it, read in the same transaction.
    ///
    /// The request is decoded after the run is marked running, so a [`StoreError::Corrupt`]
    /// answer leaves the run running: finish it as failed.
    pub async fn claim_run(&self, id: RunId) -> Result<(Run, RawRequest), StoreError> {
        let (state, bytes) = self.call(|reply| Op::Start { id, reply }).await?;
        let stored = Envelope::decode(id, &bytes)?;
        let run = state.to_run(id, &stored.envelope, stored.body.len());
        Ok((run, stored.into_request()))
    }

    /// Records one step of a running run (replacing a record with the same index).
    ///
    /// Not fsync'd on its own (see [`Options::sync_progress`]); visible to reads at once.
    pub async fn record_step(&self, id: RunId, step: StepRecord) -> Result<(), StoreError> {
        let (index, step_id, bytes) = encode_step(&step)?;
        self.call(|reply| Op::Step {
            id,
            index,
            step_id,
            bytes,
            reply,
        })
        .await
    }

    /// [`Store::record_step`] without waiting for the answer: the write is queued at once (so
    /// it stays ordered before a later `finish_run` of the same run) and a failure is only
    /// logged by the writer. For the executor, which must not wait a commit per step.
    pub fn record_step_detached(&self, id: RunId, step: StepRecord) {
        let (reply, _answer) = oneshot::channel();
        let sent = encode_step(&step).and_then(|(index, step_id, bytes)| {
            self.send(Op::Step {
                id,
                index,
                step_id,
                bytes,
                reply,
            })
        });
        if let Err(e) = sent {
            tracing::warn!(run = %id, error = %e, "cannot record a step");
        }
    }

    /// Gives a queued or running run its final status and takes it off the queue.
    /// `duration_ms` is measured from `started_at`.
    ///
    /// Not fsync'd on its own (see [`Options::sync_progress`]): after a crash the run may be
    /// found live again and run again, which at-least-once allows.
    pub async fn finish_run(
        &self,
        id: RunId,
        outcome: RunOutcome,
        error: Option<String>,
    ) -> Result<Run, StoreError> {
        self.finish(id, outcome, error).await?;
        self.get_run(id)?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")))
    }

    /// [`Store::finish_run`] without reading the finished run back: what the executor uses.
    pub async fn finish(
        &self,
        id: RunId,
        outcome: RunOutcome,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.call(|reply| Op::Finish {
            id,
            outcome,
            error,
            reply,
        })
        .await
    }

    /// Sets a running run to retry its failed step at `next_at`: the run becomes `retrying`
    /// and keeps its step records (the failed step's record is the last). Durable before it
    /// answers, so a restart finds the schedule ([`Store::retrying_runs`]); a later
    /// `claim_run` resumes it.
    pub async fn retry(&self, id: RunId, next_at: std::time::SystemTime) -> Result<(), StoreError> {
        let next_at_ms = types::to_ms(next_at);
        self.call(|reply| Op::Retry {
            id,
            next_at_ms,
            reply,
        })
        .await
    }

    /// The flow's webhook URL token, made the first time it is asked for: 128 random bits,
    /// base64url without padding (22 characters). Changes only by [`Store::rotate_token`].
    pub async fn token_for(&self, flow_id: &str) -> Result<String, StoreError> {
        if let Some(token) = self.token(flow_id)? {
            return Ok(token);
        }
        let flow_id = flow_id.to_owned();
        self.call(|reply| Op::Token { flow_id, reply }).await
    }

    /// Gives the flow a new webhook token; the one it had stays valid until `previous_until`
    /// (see [`Store::previous_token`]). Durable before it answers with the new token.
    pub async fn rotate_token(
        &self,
        flow_id: &str,
        previous_until: std::time::SystemTime,
    ) -> Result<String, StoreError> {
        let flow_id = flow_id.to_owned();
        let previous_until_ms = types::to_ms(previous_until);
        self.call(|reply| Op::RotateToken {
            flow_id,
            previous_until_ms,
            reply,
        })
        .await
    }

    /// Keeps the source of a flow version and the plugin each of its steps runs (in step
    /// order; a blob already stored under its hash is not written again). Storing the same
    /// version again does nothing; another source or plugins under the same version is a
    /// [`StoreError::Conflict`].
    pub async fn put_flow_version(
        &self,
        flow_id: &str,
        version: &str,
        source: &str,
        plugins: Vec<PluginBlob>,
    ) -> Result<(), StoreError> {
        let (flow_id, version, source) =
            (flow_id.to_owned(), version.to_owned(), source.to_owned());
        self.call(|reply| Op::FlowVersion {
            flow_id,
            version,
            source,
            plugins,
            reply,
        })
        .await
    }

    /// Every live run, oldest first, for the executor to run at startup, before serving.
    ///
    /// Runs left `running` by a crash go back to `queued` with `attempt + 1` (committed before
    /// this answers); queued runs are returned as they are.
    pub async fn recover(&self) -> Result<Vec<RunId>, StoreError> {
        self.call(|reply| Op::Recover { reply }).await
    }

    /// Forgets the dedupe values of `flow_id` whose first run was accepted longer than `window`
    /// ago. Under that window they dedupe nothing any more (a delivery that carries one again
    /// is a new run, which then takes the value over), so forgetting them changes no answer;
    /// it keeps the table from growing by one entry per delivery for good. Returns how many
    /// were forgotten.
    ///
    /// The flow's entries are read in a read transaction, away from the writer; the writer
    /// only deletes, `FORGET_BATCH` at a time behind waiting accepts, each entry only if it
    /// still names the run it was read with.
    pub async fn prune_dedupe(&self, flow_id: &str, window: Duration) -> Result<u64, StoreError> {
        let mut forgotten = 0;
        let mut after = None;
        loop {
            let (store, flow) = (self.clone(), flow_id.to_owned());
            let (entries, next) = tokio::task::spawn_blocking(move || {
                store.expired_dedupe(&flow, window, after.as_deref(), FORGET_BATCH)
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("the dedupe sweep stopped: {e}")))??;
            if !entries.is_empty() {
                let flow_id = flow_id.to_owned();
                forgotten += self
                    .call(|reply| Op::ForgetDedupe {
                        flow_id,
                        entries,
                        reply,
                    })
                    .await?;
            }
            match next {
                Some(key) => after = Some(key),
                None => return Ok(forgotten),
            }
        }
    }

    /// Tells `observer` the duration of every commit and journal sync from now on; only the
    /// first observer given is kept.
    pub fn observe_latency(&self, observer: Arc<dyn LatencyObserver>) {
        let _ = self.inner.counters.latency.set(observer);
    }

    /// What the writer has done so far: commits versus writes shows how well group commit
    /// batches.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            commits: c.commits.load(Ordering::Relaxed),
            durable_commits: c.durable_commits.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
            waiting_accepts: self.inner.waiting_accepts.load(Ordering::Relaxed),
            apply_us: c.apply_us.load(Ordering::Relaxed),
            commit_us: c.commit_us.load(Ordering::Relaxed),
            journal_syncs: c.journal_syncs.load(Ordering::Relaxed),
            journal_bytes: c.journal_bytes.load(Ordering::Relaxed),
            journal_sync_us: c.journal_sync_us.load(Ordering::Relaxed),
            journal_direct: c.journal_direct.load(Ordering::Relaxed),
        }
    }

    /// Makes every write answered so far durable (one fsync'd commit), for a clean stop:
    /// progress writes are otherwise synced only after the writer has been idle a moment.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.call(|reply| Op::Sync { reply }).await
    }

    /// Test hook: stops the writer until the returned guard is dropped, so tests can fill the
    /// queue and see `Overloaded` (e.g. the gateway's 503). Writes sent meanwhile wait.
    /// Dropping the last `Store` while a pause is held never returns.
    #[doc(hidden)]
    pub async fn pause_writer(&self) -> Result<WriterPause, StoreError> {
        let (paused, is_paused) = oneshot::channel();
        let (resume_guard, resume) = mpsc::channel();
        self.send(Op::Pause { paused, resume })?;
        is_paused.await.map_err(|_| writer_gone())?;
        Ok(WriterPause {
            _resume: resume_guard,
        })
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        let ops = self.inner.ops.as_ref().ok_or_else(writer_gone)?;
        ops.send(op).map_err(|_| writer_gone())
    }

    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(op(reply))?;
        answer.await.map_err(|_| writer_gone())?
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Creates the tables of a new file, checks the schema version of an old one, and returns the
/// largest run id stored.
/// A step's index, id and stored form, made on the caller's thread rather than the writer's.
fn encode_step(step: &StepRecord) -> Result<(u32, String, Vec<u8>), StoreError> {
    let bytes = tables::encode("step", step)?;
    Ok((step.index, step.step_id.clone(), bytes))
}

fn prepare(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let stored = meta.get(SCHEMA_KEY)?.map(|guard| guard.value());
        match stored {
            None => {
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "the file has store schema version {other}; this weir reads version {SCHEMA_VERSION}"
                )));
            }
        }
        // Opening a table in a write transaction creates it, so reads never miss one.
        txn.open_table(LIVE)?;
        txn.open_table(OUTCOMES)?;
        txn.open_table(STEPS)?;
        txn.open_table(RUNS_BY_FLOW)?;
        txn.open_table(DONE_BY_STATUS)?;
        txn.open_table(DONE_BY_FLOW_STATUS)?;
        txn.open_table(DEDUPE)?;
        txn.open_table(FLOW_VERSIONS)?;
        txn.open_table(FLOW_VERSION_PLUGINS)?;
        txn.open_table(PLUGINS)?;
        txn.open_table(TOKENS)?;
        txn.open_table(REQUESTS)?;
        txn.open_table(tables::REJECTIONS)?;
        txn.open_table(tables::REJECTION_NEXT)?;
        txn.open_table(tables::REJECTION_COUNTS)?;
        txn.open_table(tables::REDELIVERIES)?;
        txn.open_table(FINISHED_BY_FLOW)?;
        txn.open_table(REPLAYS)?;
        txn.open_table(PREVIOUS_TOKENS)?;
    }
    txn.commit()?;
    Ok(())
}

/// Creates a new, empty store file at `path` as one step: made beside it and linked into
/// place once complete, so that a power loss during the first start leaves either no file or
/// a whole one (redb cannot open a file whose creation was cut short).
fn create(path: &Path) -> Result<(), StoreError> {
    let io = |what: &str, e: std::io::Error| {
        StoreError::Storage(format!("cannot {what} the store {}: {e}", path.display()))
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let new = path.with_file_name(name);
    match std::fs::remove_file(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("create", e)),
        _ => {}
    }
    let db = Database::builder().create(&new).map_err(|e| {
        StoreError::Storage(format!("cannot create the store {}: {e}", new.display()))
    })?;
    prepare(&db)?;
    drop(db);
    // A link, unlike a rename, never replaces a store another process created meanwhile.
    match std::fs::hard_link(&new, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => std::fs::rename(&new, path).map_err(|e| io("create", e))?,
    }
    match std::fs::remove_file(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("create", e)),
        _ => {}
    }
    journal::sync_dir(path)
}

/// The largest run id stored.
fn last_id(db: &Database) -> Result<u128, StoreError> {
    let txn = redb::ReadableDatabase::begin_read(db)?;
    let requests = txn.open_table(REQUESTS)?;
    Ok(tables::bundle::last_id(&requests)?.unwrap_or(0))
}
