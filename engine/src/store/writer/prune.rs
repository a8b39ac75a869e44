//! Deleting finished runs (retention): what an [`Entry::Prune`] changes, and the writer's
//! side of [`Op::Prune`](super::Op::Prune).
//!
//! A pruned run leaves every table keyed by run: its outcome, its four index entries (stats
//! included), its step records, its redelivery count, its replay links both ways, its record
//! in its request bundle (the bundle is rewritten without it, or removed when it held nothing
//! else), and the dedupe entry that names it. Live runs are never
//! pruned: the writer keeps only finished runs in the entry, and applying an entry that names
//! a live or unknown run fails without writing anything.

use std::collections::{BTreeMap, BTreeSet};

use redb::ReadableTable;

use super::super::entry::Entry;
use super::super::error::StoreError;
use super::super::tables::{Envelope, bundle};
use super::super::types::{RunId, RunStatus};
use super::Writer;
use super::txn::{OpError, WriteTables, fatal_if_storage};

/// A run about to be pruned: what its index entries are keyed by.
struct Doomed {
    id: RunId,
    status: RunStatus,
    flow_id: String,
    dedupe_key: Option<String>,
    replay_of: Option<RunId>,
}

/// The finished run's index facts; a conflict for a live run, `NotFound` for an unknown one.
fn doomed(t: &mut WriteTables<'_>, id: RunId) -> Result<Doomed, OpError> {
    let state = t.load_state(id)?;
    if !state.status.is_final() {
        return Err(StoreError::Conflict(format!(
            "run {id} cannot be pruned: it is {}, not finished",
            state.status
        ))
        .into());
    }
    t.flush_bundle()?;
    let found = bundle::find(&t.requests, id)
        .map_err(fatal_if_storage)?
        .ok_or_else(|| StoreError::Corrupt(format!("run {id} is finished but has no request")))?;
    let stored = Envelope::decode(id, found.bytes())?;
    Ok(Doomed {
        id,
        status: state.status,
        flow_id: stored.envelope.flow_id,
        dedupe_key: stored.envelope.dedupe_key,
        replay_of: stored.envelope.replay_of,
    })
}

/// Deletes the finished runs `ids` (duplicates allowed) with everything they own.
pub(super) fn prune(t: &mut WriteTables<'_>, ids: &[RunId]) -> Result<(), OpError> {
    let ids: BTreeSet<u128> = ids.iter().map(|id| id.as_u128()).collect();
    // Everything is read and checked before anything is written.
    let mut runs = Vec::with_capacity(ids.len());
    for &key in &ids {
        runs.push(doomed(t, RunId::from(key))?);
    }
    let bundles = bundles_of(t, &ids)?;
    for run in &runs {
        let key = run.id.as_u128();
        let code = run.status.code();
        t.outcomes()?.remove(key)?;
        t.done_by_status()?.remove((code, key))?;
        t.done_by_flow_status()?
            .remove((run.flow_id.as_str(), code, key))?;
        t.by_flow()?.remove((run.flow_id.as_str(), key))?;
        t.finished_by_flow()?.remove((run.flow_id.as_str(), key))?;
        t.redeliveries()?.remove(key)?;
        // Replay links both ways: the run's own replays, and its place among its original's.
        t.replays()?
            .retain_in((key, 0)..=(key, u128::MAX), |_, _| false)?;
        if let Some(original) = run.replay_of {
            t.replays()?.remove((original.as_u128(), key))?;
        }
        t.steps()?
            .retain_in((key, 0)..=(key, u32::MAX), |_, _| false)?;
        if let Some(dedupe_key) = &run.dedupe_key {
            let entry = (run.flow_id.as_str(), dedupe_key.as_str());
            let names = t.dedupe()?.get(entry)?.map(|guard| guard.value());
            if names == Some(key) {
                t.dedupe()?.remove(entry)?;
            }
        }
    }
    for first in bundles {
        rewrite_bundle(t, first, &ids)?;
    }
    Ok(())
}

/// The keys of the bundles holding `ids`.
fn bundles_of(t: &mut WriteTables<'_>, ids: &BTreeSet<u128>) -> Result<BTreeSet<u128>, OpError> {
    let mut bundles = BTreeSet::new();
    let mut current: Option<(u128, u128)> = None;
    for &key in ids {
        // Ids are visited in order, so one lookup serves every id up to the next bundle.
        if let Some((first, next)) = current
            && first <= key
            && key < next
        {
            continue;
        }
        let (first, _) = t
            .requests
            .range(..=key)?
            .next_back()
            .transpose()?
            .map(|(first, value)| (first.value(), value))
            .ok_or_else(|| {
                StoreError::Corrupt(format!("run {} has no bundle", RunId::from(key)))
            })?;
        let next = t
            .requests
            .range(first + 1..)?
            .next()
            .transpose()?
            .map_or(u128::MAX, |(next, _)| next.value());
        bundles.insert(first);
        current = Some((first, next));
    }
    Ok(bundles)
}

/// Stores the bundle whose key is `first` again without the records of `ids`, under its first
/// remaining run's id (so that a run's bundle is still the last one whose key is not above
/// its id), or removes it when nothing remains.
fn rewrite_bundle(
    t: &mut WriteTables<'_>,
    first: u128,
    ids: &BTreeSet<u128>,
) -> Result<(), OpError> {
    let Some(value) = t.requests.remove(first)? else {
        return Ok(());
    };
    let old = value.value().to_vec();
    drop(value);
    let mut kept = bundle::Builder::default();
    for (id, range) in bundle::records(first, &old)? {
        if !ids.contains(&id) {
            kept.push(id, &old[range])?;
        }
    }
    if let Some((key, bytes)) = kept.take() {
        t.requests.insert(key, bytes.as_slice())?;
    }
    Ok(())
}

impl Writer {
    /// Prunes those of `ids` that are finished runs now; answers how many.
    pub(super) fn prune(
        &mut self,
        t: &mut WriteTables<'_>,
        ids: Vec<RunId>,
    ) -> Result<u64, OpError> {
        let mut finished: BTreeMap<u128, RunId> = BTreeMap::new();
        for id in ids {
            match t.load_state(id) {
                Ok(state) if state.status.is_final() => {
                    finished.insert(id.as_u128(), id);
                }
                // Live runs stay; a run pruned already is gone.
                Ok(_) | Err(OpError::Op(StoreError::NotFound(_))) => {}
                Err(err) => return Err(err),
            }
        }
        if finished.is_empty() {
            return Ok(0);
        }
        let ids: Vec<RunId> = finished.into_values().collect();
        let count = ids.len() as u64;
        self.change(t, &Entry::Prune { ids })?;
        Ok(count)
    }
}
