//! The operations: what each write changes, as [entries](crate::store::entry), and the one
//! function that applies an entry to a transaction's tables.
//!
//! [`apply`] is the only code that changes the tables (apart from [`take_back`], which runs
//! when the journal can no longer be written). The writer decides an op's entry (a new run's
//! id, the time, a token's random bits), applies it with [`apply`] and journals it; recovery
//! applies the journal's entries with the same [`apply`]. So every change is journaled, and a
//! replayed entry makes the change it made the first time.
//!
//! An entry reads and checks everything before it writes anything, so an entry that fails on
//! its own (unknown run, wrong status, undecodable record) leaves no trace in the transaction.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redb::ReadableTable;
use ulid::Ulid;

use super::super::entry::Entry;
use super::super::error::StoreError;
use super::super::query::DedupeEntry;
use super::super::tables::{Envelope, NO_DURATION, Outcome, State, bundle, encode};
use super::super::types::{PluginBlob, RunId, RunOutcome, RunStatus, to_ms};
use super::txn::{OpError, WriteTables};
use super::{AcceptAnswer, JournalLink, Op, Pending, Prepared, Writer, settle};

/// What applying an entry gives back to the op that made it.
pub(super) enum Applied {
    Done,
    /// A run started: its new state and its stored request.
    Started(State, Vec<u8>),
}

/// Applies one entry to the transaction.
pub(super) fn apply(t: &mut WriteTables<'_>, entry: &Entry) -> Result<Applied, OpError> {
    match entry {
        Entry::Accept {
            id,
            flow_id,
            dedupe_key,
            bytes,
        } => store_new(t, *id, flow_id, dedupe_key.as_deref(), bytes)?,
        Entry::Start { id, at_ms } => {
            let (state, request) = start(t, *id, *at_ms)?;
            return Ok(Applied::Started(state, request));
        }
        Entry::Step {
            id,
            index,
            step_id,
            bytes,
        } => record_step(t, *id, *index, step_id, bytes)?,
        Entry::Finish {
            id,
            outcome,
            error,
            at_ms,
        } => finish(t, *id, *outcome, error.clone(), *at_ms)?,
        Entry::Token { flow_id, token } => {
            t.tokens()?.insert(flow_id.as_str(), token.as_str())?;
        }
        Entry::FlowVersion {
            flow_id,
            version,
            source,
            plugins,
        } => store_flow_version(t, flow_id, version, source, plugins)?,
        Entry::Requeue { ids } => requeue(t, ids)?,
        Entry::ForgetDedupe { flow_id, entries } => {
            forget_dedupe(t, flow_id, entries)?;
        }
        Entry::Retry { id, next_at_ms } => retry(t, *id, *next_at_ms)?,
        Entry::Reject {
            flow_id,
            seq,
            reason,
            bytes,
        } => {
            let slot = u16::try_from(seq % crate::store::RING).unwrap_or(u16::MAX);
            t.rejections()?
                .insert((flow_id.as_str(), slot), bytes.as_slice())?;
            t.rejection_next()?.insert(flow_id.as_str(), seq + 1)?;
            let counts = t.rejection_counts()?;
            let count = counts
                .get((flow_id.as_str(), reason.as_str()))?
                .map_or(0, |v| v.value());
            counts.insert((flow_id.as_str(), reason.as_str()), count + 1)?;
        }
        Entry::Redelivered { id } => {
            let table = t.redeliveries()?;
            let count = table.get(id.as_u128())?.map_or(0, |v| v.value());
            table.insert(id.as_u128(), count + 1)?;
        }
        Entry::Replayed { of, id } => {
            t.replays()?.insert((of.as_u128(), id.as_u128()), ())?;
        }
        Entry::RotateToken {
            flow_id,
            token,
            previous,
            previous_until_ms,
        } => {
            t.tokens()?.insert(flow_id.as_str(), token.as_str())?;
            t.previous_tokens()?
                .insert(flow_id.as_str(), (previous.as_str(), *previous_until_ms))?;
        }
        Entry::Prune { ids } => super::prune::prune(t, ids)?,
    }
    Ok(Applied::Done)
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
    if bytes.len() >= bundle::TARGET_BYTES {
        // Alone, after the bundle in progress (whose ids are all lower), so that a large
        // body is copied once on its way into redb rather than twice through a builder.
        t.flush_bundle()?;
        t.requests
            .insert(key, bundle::Builder::alone(key, bytes)?.as_slice())?;
    } else {
        if !t.bundle.fits(bytes.len()) {
            t.flush_bundle()?;
        }
        t.bundle.push(key, bytes)?;
    }
    t.live.insert(key, State::queued().to_live())?;
    if let Some(dedupe_key) = dedupe_key {
        t.dedupe()?.insert((flow_id, dedupe_key), key)?;
    }
    Ok(())
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

/// Queued or Retrying → Running: the run's new state and its stored request, to execute.
/// Clears the steps of an earlier, interrupted attempt; a retrying run keeps its steps, and
/// resumes from the one that failed.
fn start(t: &mut WriteTables<'_>, id: RunId, at_ms: u64) -> Result<(State, Vec<u8>), OpError> {
    let mut state = live_state(t, id, "start")?;
    let retrying = state.status == RunStatus::Retrying;
    if state.status != RunStatus::Queued && !retrying {
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
    state.next_attempt_at_ms = None;
    t.live.insert(key, state.to_live())?;
    if state.attempt > 1 && !retrying {
        t.steps()?
            .retain_in((key, 0)..=(key, u32::MAX), |_, _| false)?;
    }
    Ok((state, bytes))
}

/// Running → Retrying until `next_at_ms`: a step failed and runs again then. The run keeps
/// its step records; the failed step's record is its last.
fn retry(t: &mut WriteTables<'_>, id: RunId, next_at_ms: u64) -> Result<(), OpError> {
    let mut state = live_state(t, id, "retry")?;
    if state.status != RunStatus::Running {
        return Err(StoreError::Conflict(format!(
            "run {id} cannot retry: it is {}, not running",
            state.status
        ))
        .into());
    }
    state.status = RunStatus::Retrying;
    state.started_at_ms = None;
    state.next_attempt_at_ms = Some(next_at_ms);
    t.live.insert(id.as_u128(), state.to_live())?;
    Ok(())
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
    let duration = state
        .started_at_ms
        .map_or(NO_DURATION, |start| at_ms.saturating_sub(start));
    t.finished_by_flow()?
        .insert((flow_id.as_str(), key), (status.code(), duration))?;
    Ok(())
}

/// The flow's stored token, if it has one.
pub(super) fn stored_token(
    t: &mut WriteTables<'_>,
    flow_id: &str,
) -> Result<Option<String>, OpError> {
    Ok(t.tokens()?
        .get(flow_id)?
        .map(|token| token.value().to_owned()))
}

/// A new token: 128 random bits, base64url without padding.
pub(super) fn new_token(flow_id: &str) -> Result<String, OpError> {
    let mut bits = [0u8; 16];
    getrandom::fill(&mut bits).map_err(|e| {
        StoreError::Storage(format!(
            "no randomness for the token of flow {flow_id:?}: {e}"
        ))
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bits))
}

fn plugin_hashes(plugins: &[PluginBlob]) -> String {
    plugins
        .iter()
        .map(|p| p.hash.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether this flow version is stored already, the same; a [`StoreError::Conflict`] if it
/// is stored with another source or other plugins.
pub(super) fn flow_version_stored(
    t: &mut WriteTables<'_>,
    flow_id: &str,
    version: &str,
    source: &str,
    plugins: &[PluginBlob],
) -> Result<bool, OpError> {
    let same_source = t
        .flow_versions()?
        .get((flow_id, version))?
        .map(|existing| existing.value() == source);
    let Some(same_source) = same_source else {
        return Ok(false);
    };
    let hashes = plugin_hashes(plugins);
    let same_plugins = t
        .flow_version_plugins()?
        .get((flow_id, version))?
        .is_none_or(|stored| stored.value() == hashes);
    if same_source && same_plugins {
        return Ok(true);
    }
    Err(StoreError::Conflict(format!(
        "flow {flow_id:?} version {version:?} is already stored with another source"
    ))
    .into())
}

/// Keeps a flow version's source and its plugins.
fn store_flow_version(
    t: &mut WriteTables<'_>,
    flow_id: &str,
    version: &str,
    source: &str,
    plugins: &[PluginBlob],
) -> Result<(), OpError> {
    for plugin in plugins {
        // Content-addressed: a blob stored once serves every version that uses it.
        if t.plugins()?.get(plugin.hash.as_str())?.is_none() {
            t.plugins()?
                .insert(plugin.hash.as_str(), &plugin.bytes[..])?;
        }
    }
    t.flow_versions()?.insert((flow_id, version), source)?;
    t.flow_version_plugins()?
        .insert((flow_id, version), plugin_hashes(plugins).as_str())?;
    Ok(())
}

/// Deletes the flow's dedupe entries that still name the run they were read with; answers
/// how many.
pub(super) fn forget_dedupe(
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

/// Every live run but the retrying ones (their timers resume them), oldest first, and of
/// those the running ones (interrupted by a crash).
pub(super) fn live_runs(t: &mut WriteTables<'_>) -> Result<(Vec<RunId>, Vec<RunId>), OpError> {
    let mut ids = Vec::new();
    let mut running = Vec::new();
    for entry in t.live.iter()? {
        let (key, value) = entry?;
        let id = RunId::from(key.value());
        match State::from_live(id, value.value())?.status {
            RunStatus::Retrying => continue,
            RunStatus::Running => running.push(id),
            _ => {}
        }
        ids.push(id);
    }
    Ok((ids, running))
}

/// Puts running runs back to queued, attempt + 1.
fn requeue(t: &mut WriteTables<'_>, ids: &[RunId]) -> Result<(), OpError> {
    let mut states = Vec::with_capacity(ids.len());
    for id in ids {
        let mut state = live_state(t, *id, "be queued again")?;
        if state.status != RunStatus::Running {
            return Err(StoreError::Conflict(format!(
                "run {id} cannot be queued again: it is {}, not running",
                state.status
            ))
            .into());
        }
        state.status = RunStatus::Queued;
        state.attempt = state.attempt.saturating_add(1);
        state.started_at_ms = None;
        states.push((id, state));
    }
    for (id, state) in states {
        tracing::info!(run_id = %id, attempt = state.attempt, "interrupted run queued again");
        t.live.insert(id.as_u128(), state.to_live())?;
    }
    Ok(())
}

/// An accept or start of a transaction, answered once its journal frame is synced.
pub(in crate::store) enum Unconfirmed {
    /// A new run, with its flow and dedupe value if the flow dedupes, and the run it replays
    /// if it is a replay.
    Accepted {
        id: RunId,
        dedupe: Option<(String, String)>,
        replay_of: Option<RunId>,
    },
    /// A run marked running.
    Started { id: RunId },
}

/// Undoes accepts and starts whose journal frame could not be written: accepted runs are
/// deleted (with their dedupe entries and their place among their original's replays),
/// started runs queued again. The one change that is
/// not an entry: it is made once the journal is known to be unwritable, in a durable commit.
pub(super) fn take_back(
    t: &mut WriteTables<'_>,
    unconfirmed: &[Unconfirmed],
) -> Result<(), StoreError> {
    for change in unconfirmed {
        match change {
            Unconfirmed::Accepted {
                id,
                dedupe,
                replay_of,
            } => {
                let key = id.as_u128();
                t.live.remove(key)?;
                if let Some(original) = replay_of {
                    t.replays()?.remove((original.as_u128(), key))?;
                }
                // A bundle's key is its first run's id, and every bundle the transaction
                // wrote holds only its own runs.
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
    Ok(())
}

impl Writer {
    /// Applies `entry` to the transaction and adds it to the transaction's journal frame: the
    /// only way an op changes the store.
    pub(super) fn change(
        &mut self,
        t: &mut WriteTables<'_>,
        entry: &Entry,
    ) -> Result<Applied, OpError> {
        let mark = self.redo.len();
        if self.journal.as_ref().is_some_and(JournalLink::working) {
            entry.encode(&mut self.redo)?;
        }
        let applied = apply(t, entry);
        if applied.is_err() {
            self.redo.truncate(mark);
        }
        applied
    }

    /// Applies one op; returns the error that must abort the batch, if any.
    pub(super) fn apply_op(
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
            Op::Start { id, reply } => {
                let entry = Entry::Start {
                    id,
                    at_ms: now_ms(),
                };
                let result = match self.change(t, &entry) {
                    Ok(Applied::Started(state, request)) => {
                        self.unconfirmed.push(Unconfirmed::Started { id });
                        Ok((state, request))
                    }
                    Ok(Applied::Done) => Err(OpError::Op(StoreError::Storage(format!(
                        "starting run {id} gave back no request"
                    )))),
                    Err(err) => Err(err),
                };
                settle(result, reply, (), answers)
            }
            Op::Step {
                id,
                index,
                step_id,
                bytes,
                reply,
            } => {
                let entry = Entry::Step {
                    id,
                    index,
                    step_id,
                    bytes,
                };
                let result = self.change(t, &entry).map(|_| ());
                settle(result, reply, (), answers)
            }
            Op::Finish {
                id,
                outcome,
                error,
                reply,
            } => {
                let entry = Entry::Finish {
                    id,
                    outcome,
                    error,
                    at_ms: now_ms(),
                };
                let result = self.change(t, &entry).map(|_| ());
                settle(result, reply, (), answers)
            }
            Op::Token { flow_id, reply } => {
                let result = self.token(t, flow_id);
                settle(result, reply, (), answers)
            }
            Op::RotateToken {
                flow_id,
                previous_until_ms,
                reply,
            } => {
                let result = self.rotate_token(t, flow_id, previous_until_ms);
                settle(result, reply, (), answers)
            }
            Op::FlowVersion {
                flow_id,
                version,
                source,
                plugins,
                reply,
            } => {
                let result = flow_version_stored(t, &flow_id, &version, &source, &plugins)
                    .and_then(|stored| {
                        if stored {
                            return Ok(());
                        }
                        let entry = Entry::FlowVersion {
                            flow_id,
                            version,
                            source,
                            plugins,
                        };
                        self.change(t, &entry).map(|_| ())
                    });
                settle(result, reply, (), answers)
            }
            Op::Recover { reply } => {
                let result = live_runs(t).and_then(|(ids, running)| {
                    if !running.is_empty() {
                        self.change(t, &Entry::Requeue { ids: running })?;
                    }
                    Ok(ids)
                });
                settle(result, reply, (), answers)
            }
            Op::ForgetDedupe {
                flow_id,
                entries,
                reply,
            } => {
                let result = self.forget(t, flow_id, entries);
                settle(result, reply, (), answers)
            }
            Op::Retry {
                id,
                next_at_ms,
                reply,
            } => {
                let result = self.change(t, &Entry::Retry { id, next_at_ms }).map(|_| ());
                settle(result, reply, (), answers)
            }
            Op::Reject { rows, reply } => {
                let result = self.reject(t, rows);
                settle(result, reply, (), answers)
            }
            Op::Prune { ids, reply } => {
                let result = self.prune(t, ids);
                settle(result, reply, (), answers)
            }
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

    fn accept(&mut self, t: &mut WriteTables<'_>, new: Prepared) -> Result<AcceptAnswer, OpError> {
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
                Ok(run) => {
                    self.change(t, &Entry::Redelivered { id })?;
                    return Ok(AcceptAnswer::Duplicate(Box::new(run)));
                }
                // The first run was deleted (retention): accept this one as new.
                Err(OpError::Op(StoreError::NotFound(_))) => {}
                Err(err) => return Err(err),
            }
        }
        let id = self.next_id();
        let Prepared {
            flow_id,
            dedupe_key,
            bytes,
            replay_of,
            ..
        } = new;
        let mut entry = Entry::Accept {
            id,
            flow_id,
            dedupe_key,
            bytes,
        };
        self.change(t, &entry)?;
        // A link names two stored runs: an original pruned since the replay was asked for gets
        // none (the replay's own record still names it). Taken back with the accept if the
        // journal cannot be written.
        let replay_of = match replay_of {
            None => None,
            Some(of) => match t.load_state(of) {
                Err(OpError::Op(StoreError::NotFound(_))) => None,
                Err(OpError::Fatal(err)) => return Err(OpError::Fatal(err)),
                // Stored, though its state may be damaged.
                Ok(_) | Err(OpError::Op(_)) => Some(of),
            },
        };
        if let Some(of) = replay_of {
            self.change(t, &Entry::Replayed { of, id })?;
        }
        if let Entry::Accept {
            flow_id,
            dedupe_key,
            ..
        } = &mut entry
        {
            let dedupe = dedupe_key.take().map(|key| (std::mem::take(flow_id), key));
            self.unconfirmed.push(Unconfirmed::Accepted {
                id,
                dedupe,
                replay_of,
            });
        }
        Ok(AcceptAnswer::New(id))
    }

    /// The flow's token, made and stored on first use.
    fn token(&mut self, t: &mut WriteTables<'_>, flow_id: String) -> Result<String, OpError> {
        if let Some(token) = stored_token(t, &flow_id)? {
            return Ok(token);
        }
        let token = new_token(&flow_id)?;
        self.change(
            t,
            &Entry::Token {
                flow_id,
                token: token.clone(),
            },
        )?;
        Ok(token)
    }

    /// Keeps refusals in their flows' rings, each numbered after the flow's last; answers
    /// their numbers.
    fn reject(
        &mut self,
        t: &mut WriteTables<'_>,
        rows: Vec<crate::store::NewRejection>,
    ) -> Result<Vec<u64>, OpError> {
        let mut seqs = Vec::with_capacity(rows.len());
        for row in rows {
            let seq = t
                .rejection_next()?
                .get(row.flow_id.as_str())?
                .map_or(0, |v| v.value());
            let entry = Entry::Reject {
                bytes: row.encode(seq)?,
                flow_id: row.flow_id,
                seq,
                reason: row.reason.to_owned(),
            };
            self.change(t, &entry)?;
            seqs.push(seq);
        }
        Ok(seqs)
    }

    /// Replaces the flow's token by a new one; the one replaced stays valid until
    /// `previous_until_ms`. A flow without a token gets one, with nothing to keep.
    fn rotate_token(
        &mut self,
        t: &mut WriteTables<'_>,
        flow_id: String,
        previous_until_ms: u64,
    ) -> Result<String, OpError> {
        let Some(previous) = stored_token(t, &flow_id)? else {
            return self.token(t, flow_id);
        };
        let token = new_token(&flow_id)?;
        self.change(
            t,
            &Entry::RotateToken {
                flow_id,
                token: token.clone(),
                previous,
                previous_until_ms,
            },
        )?;
        Ok(token)
    }

    /// Forgets those of `entries` that still name their run; answers how many.
    fn forget(
        &mut self,
        t: &mut WriteTables<'_>,
        flow_id: String,
        entries: Vec<DedupeEntry>,
    ) -> Result<u64, OpError> {
        let mut current = Vec::with_capacity(entries.len());
        for (key, run) in entries {
            let names = t
                .dedupe()?
                .get((flow_id.as_str(), key.as_str()))?
                .map(|v| v.value());
            if names == Some(run) {
                current.push((key, run));
            }
        }
        if current.is_empty() {
            return Ok(0);
        }
        let forgotten = current.len() as u64;
        self.change(
            t,
            &Entry::ForgetDedupe {
                flow_id,
                entries: current,
            },
        )?;
        Ok(forgotten)
    }
}

fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}
