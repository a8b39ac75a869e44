//! `weir check`: walks a whole store and its journal and reports every damaged record.
//!
//! redb verifies its header at open and repairs its allocation state after an unclean
//! shutdown, but reads no page checksum on the way: a flipped byte in a record is found when
//! the record is decoded, or by redb's integrity check (every page's checksum), which this
//! runs first. Then every record of every table is decoded as Weir reads it, and every index
//! entry is checked against the record it points to; and every journal frame that passes its
//! checksum is decoded. The store is not changed, except that redb's check may repair its own
//! allocation state.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use sha2::{Digest, Sha256};

use super::entry;
use super::error::StoreError;
use super::journal;
use super::rejections::Rejection;
use super::tables::{
    DONE_BY_FLOW_STATUS, DONE_BY_STATUS, Envelope, FLOW_VERSION_PLUGINS, FLOW_VERSIONS, LIVE, META,
    OUTCOMES, Outcome, PLUGINS, REQUESTS, RUNS_BY_FLOW, STEPS, State, TOKENS, bundle, decode,
};
use super::tables::{
    FINISHED_BY_FLOW, PREVIOUS_TOKENS, REDELIVERIES, REJECTION_COUNTS, REJECTION_NEXT, REJECTIONS,
    REPLAYS,
};
use super::types::{RunId, RunStatus, StepRecord};

/// What `weir check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Every damaged record, one line each, naming it.
    pub damaged: Vec<String>,
    /// Runs whose request was read whole.
    pub runs: u64,
    /// Records read, of every table.
    pub records: u64,
    /// Journal frames that follow the store: commits Weir applies when it next starts.
    pub pending_commits: u64,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// Checks the store file at `path` and its journal. `Err` only when the file cannot be
/// opened at all (missing, locked by a running Weir, not a redb file).
pub fn check(path: &Path) -> Result<CheckReport, StoreError> {
    let mut db = Database::builder().open(path).map_err(|e| {
        StoreError::Storage(format!("cannot open the store {}: {e}", path.display()))
    })?;
    let mut report = CheckReport::default();
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => report.damaged.push(
            "redb: the file failed redb's integrity check and redb repaired it (commits not yet \
             durable were rolled back)"
                .into(),
        ),
        Err(e) => report
            .damaged
            .push(format!("redb: the file fails redb's integrity check: {e}")),
    }
    let txn = db.begin_read()?;
    let walks: [(&str, Walk); 7] = [
        ("requests", requests),
        ("live", live),
        ("outcomes", outcomes),
        ("steps", steps),
        ("indexes", indexes),
        ("flows", flows),
        ("receiving", receiving),
    ];
    for (name, walk) in walks {
        // redb panics on a string key or value that is not UTF-8; a damaged table must not
        // stop the walk of the others.
        match catch_unwind(AssertUnwindSafe(|| walk(&txn, &mut report))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => report
                .damaged
                .push(format!("{name}: the table cannot be read to its end: {e}")),
            Err(_) => report.damaged.push(format!(
                "{name}: reading the table failed on a damaged entry (not UTF-8)"
            )),
        }
    }
    let seq = txn
        .open_table(META)?
        .get(journal::SEQ_KEY)?
        .map_or(0, |guard| guard.value());
    drop(txn);
    check_journal(&journal::path_for(path), seq, &mut report);
    Ok(report)
}

/// A walk of some tables, adding what it finds to the report.
type Walk = fn(&ReadTransaction, &mut CheckReport) -> Result<(), StoreError>;

fn requests(txn: &ReadTransaction, report: &mut CheckReport) -> Result<(), StoreError> {
    let table = txn.open_table(REQUESTS)?;
    for entry in table.iter()? {
        let (key, value) = entry?;
        report.records += 1;
        let first = key.value();
        let ids: Vec<u128> = match bundle::ids(first, value.value()) {
            Ok(ids) => ids.collect(),
            Err(e) => {
                report.damaged.push(format!(
                    "request bundle from run {}: {e}",
                    RunId::from(first)
                ));
                continue;
            }
        };
        for id in ids {
            let id = RunId::from(id);
            let decoded = bundle::find(&table, id).and_then(|found| match found {
                Some(found) => Envelope::decode(id, found.bytes()).map(|_| ()),
                None => Err(StoreError::Corrupt(format!(
                    "run {id} is listed in its bundle but cannot be found"
                ))),
            });
            match decoded {
                Ok(()) => report.runs += 1,
                Err(e) => report.damaged.push(format!("run {id}: {e}")),
            }
        }
    }
    Ok(())
}

/// Whether run `id` has a request, for the tables that point to runs.
fn has_request(txn: &ReadTransaction, id: RunId) -> Result<bool, StoreError> {
    let table = txn.open_table(REQUESTS)?;
    Ok(bundle::find(&table, id).ok().flatten().is_some())
}

fn live(txn: &ReadTransaction, report: &mut CheckReport) -> Result<(), StoreError> {
    for entry in txn.open_table(LIVE)?.iter()? {
        let (key, value) = entry?;
        report.records += 1;
        let id = RunId::from(key.value());
        if let Err(e) = State::from_live(id, value.value()) {
            report.damaged.push(format!("run {id}: {e}"));
        }
        if !has_request(txn, id)? {
            report
                .damaged
                .push(format!("run {id}: live, but its request is missing"));
        }
    }
    Ok(())
}

fn outcomes(txn: &ReadTransaction, report: &mut CheckReport) -> Result<(), StoreError> {
    for entry in txn.open_table(OUTCOMES)?.iter()? {
        let (key, value) = entry?;
        report.records += 1;
        let id = RunId::from(key.value());
        if let Err(e) = decode::<Outcome>(format_args!("outcome of run {id}"), value.value()) {
            report.damaged.push(format!("run {id}: {e}"));
        }
        if !has_request(txn, id)? {
            report
                .damaged
                .push(format!("run {id}: finished, but its request is missing"));
        }
    }
    Ok(())
}

fn steps(txn: &ReadTransaction, report: &mut CheckReport) -> Result<(), StoreError> {
    for entry in txn.open_table(STEPS)?.iter()? {
        let (key, value) = entry?;
        report.records += 1;
        let (id, index) = key.value();
        let id = RunId::from(id);
        if let Err(e) =
            decode::<StepRecord>(format_args!("step {index} of run {id}"), value.value())
        {
            report.damaged.push(format!("run {id}: {e}"));
        }
    }
    Ok(())
}

fn indexes(txn: &ReadTransaction, report: &mut CheckReport) -> Result<(), StoreError> {
    let outcomes = txn.open_table(OUTCOMES)?;
    let finished = |id: u128| -> Result<bool, StoreError> { Ok(outcomes.get(id)?.is_some()) };
    for entry in txn.open_table(DONE_BY_STATUS)?.iter()? {
        let (code, id) = entry?.0.value();
        report.records += 1;
        if !finished(id)? {
            report.damaged.push(format!(
                "index of status {code}: run {} has no outcome",
                RunId::from(id)
            ));
        }
    }
    for entry in txn.open_table(DONE_BY_FLOW_STATUS)?.iter()? {
        let key = entry?.0;
        let (flow, code, id) = key.value();
        report.records += 1;
        if !finished(id)? {
            report.damaged.push(format!(
                "index of flow {flow:?} and status {code}: run {} has no outcome",
                RunId::from(id)
            ));
        }
    }
    let live = txn.open_table(LIVE)?;
    for entry in txn.open_table(RUNS_BY_FLOW)?.iter()? {
        let key = entry?.0;
        let (flow, id) = key.value();
        report.records += 1;
        if !finished(id)? && live.get(id)?.is_none() {
            report.damaged.push(format!(
                "index of flow {flow:?}: run {} is neither live nor finished",
                RunId::from(id)
            ));
        }
    }
    // Tables a store written by an earlier Weir does not have yet.
    match txn.open_table(FINISHED_BY_FLOW) {
        Ok(table) => {
            for entry in table.iter()? {
                let (key, value) = entry?;
                let (flow, id) = key.value();
                report.records += 1;
                let (code, _) = value.value();
                if !finished(id)? || RunStatus::from_code(code).is_none_or(|s| !s.is_final()) {
                    report.damaged.push(format!(
                        "stats index of flow {flow:?}: run {} has no outcome or status code {code}",
                        RunId::from(id)
                    ));
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // A replay link names two stored runs: pruning either removes the link.
    if let Some(table) = added_later(txn.open_table(REPLAYS))? {
        for entry in table.iter()? {
            let (of, id) = entry?.0.value();
            report.records += 1;
            let (of, id) = (RunId::from(of), RunId::from(id));
            for run in [of, id] {
                if !has_request(txn, run)? {
                    report.damaged.push(format!(
                        "replay link from run {of} to run {id}: run {run} is missing"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn flows(txn: &ReadTransaction, report: &mut CheckReport) -> Result<(), StoreError> {
    for entry in txn.open_table(TOKENS)?.iter()? {
        entry?;
        report.records += 1;
    }
    for entry in txn.open_table(FLOW_VERSIONS)?.iter()? {
        entry?;
        report.records += 1;
    }
    let plugins = txn.open_table(PLUGINS)?;
    for entry in plugins.iter()? {
        let (hash, bytes) = entry?;
        report.records += 1;
        let actual = hex::encode(Sha256::digest(bytes.value()));
        if actual != hash.value() {
            report.damaged.push(format!(
                "plugin {}: its bytes no longer hash to it",
                hash.value()
            ));
        }
    }
    for entry in txn.open_table(FLOW_VERSION_PLUGINS)?.iter()? {
        let (key, hashes) = entry?;
        report.records += 1;
        let (flow, version) = key.value();
        for hash in hashes.value().split(',').filter(|h| !h.is_empty()) {
            if plugins.get(hash)?.is_none() {
                report.damaged.push(format!(
                    "flow {flow:?} version {version:?}: plugin {hash} is missing"
                ));
            }
        }
    }
    Ok(())
}

/// What the gateway keeps beside runs: rotated-out tokens (each of a flow that still has a
/// token), refusals (each decodes), their counts, and redelivery counts (each of a stored run).
/// Stores written before a table existed lack it; that is no damage.
fn receiving(txn: &ReadTransaction, report: &mut CheckReport) -> Result<(), StoreError> {
    let tokens = txn.open_table(TOKENS)?;
    if let Some(previous) = added_later(txn.open_table(PREVIOUS_TOKENS))? {
        for entry in previous.iter()? {
            let (flow, _) = entry?;
            report.records += 1;
            if tokens.get(flow.value())?.is_none() {
                report.damaged.push(format!(
                    "flow {:?}: a previous token is kept but the flow has no token",
                    flow.value()
                ));
            }
        }
    }
    if let Some(rejections) = added_later(txn.open_table(REJECTIONS))? {
        for entry in rejections.iter()? {
            let (key, value) = entry?;
            report.records += 1;
            let (flow, slot) = key.value();
            let what = format_args!("rejection slot {slot} of flow {flow}");
            if let Err(e) = decode::<Rejection>(what, value.value()) {
                report.damaged.push(e.to_string());
            }
        }
    }
    if let Some(next) = added_later(txn.open_table(REJECTION_NEXT))? {
        for entry in next.iter()? {
            entry?;
            report.records += 1;
        }
    }
    if let Some(counts) = added_later(txn.open_table(REJECTION_COUNTS))? {
        for entry in counts.iter()? {
            entry?;
            report.records += 1;
        }
    }
    if let Some(redeliveries) = added_later(txn.open_table(REDELIVERIES))? {
        for entry in redeliveries.iter()? {
            let (id, _) = entry?;
            report.records += 1;
            let id = RunId::from(id.value());
            if !has_request(txn, id)? {
                report.damaged.push(format!(
                    "run {id}: redeliveries are counted but the run is missing"
                ));
            }
        }
    }
    Ok(())
}

/// A table that stores written by an earlier Weir may not have: `None` when it is missing.
fn added_later<T>(table: Result<T, redb::TableError>) -> Result<Option<T>, StoreError> {
    match table {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn check_journal(path: &Path, seq: u64, report: &mut CheckReport) {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            report
                .damaged
                .push(format!("journal {}: cannot be read: {e}", path.display()));
            return;
        }
    };
    for frame in journal::frames(&data) {
        if frame.seq <= seq {
            continue;
        }
        report.pending_commits += 1;
        if let Err(e) = entry::decode(frame.payload) {
            report.damaged.push(format!(
                "journal {}, frame of commit {} at byte {}: its checksum holds but {e}",
                path.display(),
                frame.seq,
                frame.offset
            ));
        }
    }
}
