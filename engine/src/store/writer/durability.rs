//! How a transaction is committed and made durable: through the journal (the default), or
//! by redb's own fsync; checkpoints; taking back what a failed journal write cannot vouch for;
//! and replaying the journal at open. The rules are in the store's module doc ("Durability").

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable};

use super::super::entry;
use super::super::error::StoreError;
use super::super::journal::{self, Frame};
use super::super::tables::META;
use super::ops;
use super::txn::{OpError, WriteTables};
use super::{MAX_UNSYNCED, Op, Pending, Writer};

/// The writer's journal.
pub(in crate::store) struct JournalLink {
    pub journal: journal::Journal,
    /// The `seq` of the last commit that changed something journaled.
    pub seq: u64,
}

/// The largest journal payload buffer kept from one batch to the next.
const KEEP_REDO: usize = 4 << 20;

impl JournalLink {
    pub(super) fn working(&self) -> bool {
        !self.journal.failed
    }
}

impl Writer {
    /// Commits a batch. With a working journal, the commit is not fsync'd: the batch's
    /// entries are appended to the journal and synced, and only then are the callers that
    /// need durability answered. Without one, redb fsyncs every commit that needs it. A
    /// checkpoint (`Store::sync`, or a journal past its size) is an fsync'd commit either way.
    pub(super) fn commit(&mut self, batch: Vec<Op>) {
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
                        let error = link.journal.append(link.seq, &self.redo).err();
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
        if self.redo.capacity() > KEEP_REDO {
            // Large bodies' entries: their buffer is not kept for the next batches.
            self.redo = Vec::new();
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
            ops::take_back(&mut WriteTables::open(&txn)?, &unconfirmed)?;
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

    pub(super) fn count_commit(&mut self, durable: bool, writes: u64) {
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
                if let Some(fatal) = self.apply_op(&mut tables, op, answers) {
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
        let took = applied.elapsed();
        counters
            .commit_us
            .fetch_add(micros(took), Ordering::Relaxed);
        if let Some(observer) = counters.latency.get() {
            observer.commit(took);
        }
        Ok(())
    }

    /// Makes every earlier commit durable with an empty immediate commit.
    pub(super) fn sync(&mut self) {
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
}

/// Applies the journal's frames that the store does not hold yet, in one durable commit.
/// Returns the store's `seq` before and after.
///
/// A frame whose entries cannot all be applied stops the open with an error naming the file,
/// the frame and the entry: its commit was acknowledged, and starting without it would lose
/// it silently.
pub(in crate::store) fn replay(
    db: &Database,
    frames: &[Frame<'_>],
    path: &Path,
) -> Result<(u64, u64), StoreError> {
    let txn = db.begin_write()?;
    let applied = txn
        .open_table(META)?
        .get(journal::SEQ_KEY)?
        .map_or(0, |guard| guard.value());
    let mut last = applied;
    {
        let mut t = WriteTables::open(&txn)?;
        for frame in frames {
            let seq = frame.seq;
            if seq <= applied {
                continue;
            }
            let at = || {
                format!(
                    "the journal {}, frame of commit {seq} at byte {}",
                    path.display(),
                    frame.offset
                )
            };
            if seq != last + 1 {
                return Err(StoreError::Corrupt(format!(
                    "{}: the store ends at commit {last}, so the journal belongs to another copy \
                     of the store; move it away to open the store without it",
                    at()
                )));
            }
            let entries = entry::decode(frame.payload).map_err(|err| {
                StoreError::Corrupt(format!(
                    "{}: its checksum holds but its entries do not decode ({err}); keep a copy of \
                     both files, and move the journal away to open the store without its commits",
                    at()
                ))
            })?;
            for (index, entry) in entries.iter().enumerate() {
                if let Err(err) = ops::apply(&mut t, entry) {
                    let err = match err {
                        OpError::Op(err) | OpError::Fatal(err) => err,
                    };
                    let run = entry
                        .run()
                        .map(|id| format!(" of run {id}"))
                        .unwrap_or_default();
                    let what = format!(
                        "{}: entry {index} ({}{run}) cannot be applied: {err}",
                        at(),
                        entry.kind()
                    );
                    return Err(match err {
                        StoreError::Storage(_) | StoreError::Unavailable(_) => {
                            StoreError::Storage(what)
                        }
                        _ => StoreError::Corrupt(format!(
                            "{what}; keep a copy of both files, and move the journal away to \
                             open the store without its commits"
                        )),
                    });
                }
            }
            last = seq;
        }
        t.flush_bundle()?;
    }
    if last > applied {
        txn.open_table(META)?.insert(journal::SEQ_KEY, last)?;
    }
    txn.commit()?;
    Ok((applied, last))
}
