//! Entries: every change the writer makes to the store, in the form the journal keeps it.
//!
//! An entry carries every decision already taken (the new run's id, the time a run started, a
//! token's random bits), so applying it again at recovery makes exactly the change it made
//! the first time. The writer changes the tables only by applying entries
//! (`writer::ops::apply`), and journals every entry it applies.
//!
//! Encoding: a kind byte, then the fields in order; numbers little-endian, ids as 16 bytes,
//! byte strings as a 4-byte length and the bytes, an optional string as 0, or 1 and the string.

use std::sync::Arc;

use super::error::StoreError;
use super::types::{PluginBlob, RunId, RunOutcome};

/// One change, as the writer applied it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Entry {
    /// A new run, queued, with its request (the `REQUESTS` record).
    Accept {
        id: RunId,
        flow_id: String,
        dedupe_key: Option<String>,
        bytes: Vec<u8>,
    },
    /// A queued run marked running at `at_ms`.
    Start { id: RunId, at_ms: u64 },
    /// A step record of a running run.
    Step {
        id: RunId,
        index: u32,
        step_id: String,
        bytes: Vec<u8>,
    },
    /// A live run given its final status.
    Finish {
        id: RunId,
        outcome: RunOutcome,
        error: Option<String>,
        at_ms: u64,
    },
    /// A flow's webhook token, made.
    Token { flow_id: String, token: String },
    /// A flow version's source and its plugins, stored.
    FlowVersion {
        flow_id: String,
        version: String,
        source: String,
        plugins: Vec<PluginBlob>,
    },
    /// Running runs put back to queued, attempt + 1 (recovery after a crash).
    Requeue { ids: Vec<RunId> },
    /// Dedupe values of a flow forgotten, each only if it still names the run given.
    ForgetDedupe {
        flow_id: String,
        entries: Vec<(String, u128)>,
    },
    /// A running run whose step failed, set to retry it at `next_at_ms`.
    Retry { id: RunId, next_at_ms: u64 },
    /// A refused webhook of a flow, numbered `seq`, kept in its ring (see `rejections`).
    Reject {
        flow_id: String,
        seq: u64,
        reason: String,
        bytes: Vec<u8>,
    },
    /// A redelivery answered with the run.
    Redelivered { id: RunId },
    /// Run `id` (accepted in the same transaction) replays run `of`.
    Replayed { of: RunId, id: RunId },
    /// A flow's token replaced by `token`; `previous` stays valid until `previous_until_ms`.
    RotateToken {
        flow_id: String,
        token: String,
        previous: String,
        previous_until_ms: u64,
    },
    /// Finished runs deleted (retention), with their request, steps, index entries and the
    /// dedupe entries that name them. Every id is a finished run when it is applied.
    Prune { ids: Vec<RunId> },
}

impl Entry {
    /// The run it changes, for error messages; `None` for entries about flows.
    pub fn run(&self) -> Option<RunId> {
        match self {
            Entry::Accept { id, .. }
            | Entry::Start { id, .. }
            | Entry::Step { id, .. }
            | Entry::Finish { id, .. }
            | Entry::Retry { id, .. }
            | Entry::Redelivered { id } => Some(*id),
            Entry::Requeue { ids } | Entry::Prune { ids } => ids.first().copied(),
            Entry::Replayed { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// What kind of change it is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Accept { .. } => "accept",
            Entry::Start { .. } => "start",
            Entry::Step { .. } => "step",
            Entry::Finish { .. } => "finish",
            Entry::Token { .. } => "token",
            Entry::FlowVersion { .. } => "flow version",
            Entry::Requeue { .. } => "requeue",
            Entry::ForgetDedupe { .. } => "forget dedupe values",
            Entry::Retry { .. } => "retry",
            Entry::Reject { .. } => "reject",
            Entry::Redelivered { .. } => "redelivered",
            Entry::Replayed { .. } => "replay link",
            Entry::RotateToken { .. } => "token rotation",
            Entry::Prune { .. } => "prune",
        }
    }

    /// Appends the entry to `out`. Fails, writing nothing, only for a field over 4 GiB.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        let at = out.len();
        let result = self.encode_into(&mut Writer(out));
        if result.is_err() {
            out.truncate(at);
        }
        result
    }

    fn encode_into(&self, w: &mut Writer<'_>) -> Result<(), StoreError> {
        match self {
            Entry::Accept {
                id,
                flow_id,
                dedupe_key,
                bytes,
            } => {
                w.u8(1);
                w.id(*id);
                w.blob(flow_id.as_bytes())?;
                w.optional(dedupe_key.as_deref())?;
                w.blob(bytes)?;
            }
            Entry::Start { id, at_ms } => {
                w.u8(2);
                w.id(*id);
                w.u64(*at_ms);
            }
            Entry::Step {
                id,
                index,
                step_id,
                bytes,
            } => {
                w.u8(3);
                w.id(*id);
                w.u32(*index);
                w.blob(step_id.as_bytes())?;
                w.blob(bytes)?;
            }
            Entry::Finish {
                id,
                outcome,
                error,
                at_ms,
            } => {
                w.u8(4);
                w.id(*id);
                w.u8(match outcome {
                    RunOutcome::Succeeded => 0,
                    RunOutcome::Failed => 1,
                    RunOutcome::Filtered => 2,
                });
                w.optional(error.as_deref())?;
                w.u64(*at_ms);
            }
            Entry::Token { flow_id, token } => {
                w.u8(5);
                w.blob(flow_id.as_bytes())?;
                w.blob(token.as_bytes())?;
            }
            Entry::FlowVersion {
                flow_id,
                version,
                source,
                plugins,
            } => {
                w.u8(6);
                w.blob(flow_id.as_bytes())?;
                w.blob(version.as_bytes())?;
                w.blob(source.as_bytes())?;
                w.count(plugins.len())?;
                for plugin in plugins {
                    w.blob(plugin.hash.as_bytes())?;
                    w.blob(&plugin.bytes)?;
                }
            }
            Entry::Requeue { ids } => {
                w.u8(7);
                w.count(ids.len())?;
                for id in ids {
                    w.id(*id);
                }
            }
            Entry::ForgetDedupe { flow_id, entries } => {
                w.u8(8);
                w.blob(flow_id.as_bytes())?;
                w.count(entries.len())?;
                for (key, run) in entries {
                    w.blob(key.as_bytes())?;
                    w.id(RunId::from(*run));
                }
            }
            Entry::Retry { id, next_at_ms } => {
                w.u8(30);
                w.id(*id);
                w.u64(*next_at_ms);
            }
            Entry::Reject {
                flow_id,
                seq,
                reason,
                bytes,
            } => {
                w.u8(20);
                w.blob(flow_id.as_bytes())?;
                w.u64(*seq);
                w.blob(reason.as_bytes())?;
                w.blob(bytes)?;
            }
            Entry::Redelivered { id } => {
                w.u8(21);
                w.id(*id);
            }
            Entry::Replayed { of, id } => {
                w.u8(9);
                w.id(*of);
                w.id(*id);
            }
            Entry::RotateToken {
                flow_id,
                token,
                previous,
                previous_until_ms,
            } => {
                w.u8(10);
                w.blob(flow_id.as_bytes())?;
                w.blob(token.as_bytes())?;
                w.blob(previous.as_bytes())?;
                w.u64(*previous_until_ms);
            }
            Entry::Prune { ids } => {
                w.u8(40);
                w.count(ids.len())?;
                for id in ids {
                    w.id(*id);
                }
            }
        }
        Ok(())
    }
}

/// The entries of a frame's payload, in order.
pub(super) fn decode(payload: &[u8]) -> Result<Vec<Entry>, StoreError> {
    let mut cursor = Cursor(payload);
    let mut entries = Vec::new();
    while !cursor.0.is_empty() {
        entries.push(cursor.entry()?);
    }
    Ok(entries)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn id(&mut self, id: RunId) {
        self.0.extend_from_slice(&id.as_u128().to_le_bytes());
    }

    fn count(&mut self, n: usize) -> Result<(), StoreError> {
        let n = u32::try_from(n)
            .map_err(|_| StoreError::Storage("a journal entry holds over 4 Gi items".into()))?;
        self.u32(n);
        Ok(())
    }

    fn blob(&mut self, value: &[u8]) -> Result<(), StoreError> {
        let len = u32::try_from(value.len())
            .map_err(|_| StoreError::Storage("a journal entry's field exceeds 4 GiB".into()))?;
        self.u32(len);
        self.0.extend_from_slice(value);
        Ok(())
    }

    fn optional(&mut self, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.blob(value.as_bytes())?;
            }
        }
        Ok(())
    }
}

/// Reads entries back; every read checks its bounds, since the frame's checksum is the only
/// thing vouching for it.
struct Cursor<'a>(&'a [u8]);

fn corrupt(why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("a journal entry {why}"))
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or_else(|| corrupt("is cut short"))?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let mut raw = [0; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut raw = [0; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    fn id(&mut self) -> Result<RunId, StoreError> {
        let mut raw = [0; 16];
        raw.copy_from_slice(self.take(16)?);
        Ok(RunId::from(u128::from_le_bytes(raw)))
    }

    /// A count of items each at least `min` bytes long, checked against what is left so that
    /// a damaged count cannot make a huge allocation.
    fn count(&mut self, min: usize) -> Result<usize, StoreError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err(corrupt("counts more items than it holds"));
        }
        Ok(n)
    }

    fn blob(&mut self) -> Result<Vec<u8>, StoreError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    fn string(&mut self) -> Result<String, StoreError> {
        String::from_utf8(self.blob()?).map_err(|_| corrupt("holds invalid UTF-8"))
    }

    fn optional(&mut self) -> Result<Option<String>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            other => Err(corrupt(format_args!("has option tag {other}"))),
        }
    }

    fn entry(&mut self) -> Result<Entry, StoreError> {
        Ok(match self.u8()? {
            1 => Entry::Accept {
                id: self.id()?,
                flow_id: self.string()?,
                dedupe_key: self.optional()?,
                bytes: self.blob()?,
            },
            2 => Entry::Start {
                id: self.id()?,
                at_ms: self.u64()?,
            },
            3 => Entry::Step {
                id: self.id()?,
                index: self.u32()?,
                step_id: self.string()?,
                bytes: self.blob()?,
            },
            4 => Entry::Finish {
                id: self.id()?,
                outcome: match self.u8()? {
                    0 => RunOutcome::Succeeded,
                    1 => RunOutcome::Failed,
                    2 => RunOutcome::Filtered,
                    other => return Err(corrupt(format_args!("has outcome {other}"))),
                },
                error: self.optional()?,
                at_ms: self.u64()?,
            },
            5 => Entry::Token {
                flow_id: self.string()?,
                token: self.string()?,
            },
            6 => {
                let (flow_id, version, source) = (self.string()?, self.string()?, self.string()?);
                let count = self.count(8)?;
                let mut plugins = Vec::with_capacity(count);
                for _ in 0..count {
                    plugins.push(PluginBlob {
                        hash: self.string()?,
                        bytes: Arc::from(self.blob()?),
                    });
                }
                Entry::FlowVersion {
                    flow_id,
                    version,
                    source,
                    plugins,
                }
            }
            7 => {
                let count = self.count(16)?;
                let mut ids = Vec::with_capacity(count);
                for _ in 0..count {
                    ids.push(self.id()?);
                }
                Entry::Requeue { ids }
            }
            8 => {
                let flow_id = self.string()?;
                let count = self.count(20)?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    entries.push((self.string()?, self.id()?.as_u128()));
                }
                Entry::ForgetDedupe { flow_id, entries }
            }
            30 => Entry::Retry {
                id: self.id()?,
                next_at_ms: self.u64()?,
            },
            20 => Entry::Reject {
                flow_id: self.string()?,
                seq: self.u64()?,
                reason: self.string()?,
                bytes: self.blob()?,
            },
            21 => Entry::Redelivered { id: self.id()? },
            9 => Entry::Replayed {
                of: self.id()?,
                id: self.id()?,
            },
            10 => Entry::RotateToken {
                flow_id: self.string()?,
                token: self.string()?,
                previous: self.string()?,
                previous_until_ms: self.u64()?,
            },
            40 => {
                let count = self.count(16)?;
                let mut ids = Vec::with_capacity(count);
                for _ in 0..count {
                    ids.push(self.id()?);
                }
                Entry::Prune { ids }
            }
            other => return Err(corrupt(format_args!("has kind {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn outcome() -> impl Strategy<Value = RunOutcome> {
        prop_oneof![
            Just(RunOutcome::Succeeded),
            Just(RunOutcome::Failed),
            Just(RunOutcome::Filtered)
        ]
    }

    fn id() -> impl Strategy<Value = RunId> {
        any::<u128>().prop_map(RunId::from)
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            (id(), ".{0,8}", proptest::option::of(".{0,8}"), bytes()).prop_map(
                |(id, flow_id, dedupe_key, bytes)| Entry::Accept {
                    id,
                    flow_id,
                    dedupe_key,
                    bytes
                }
            ),
            (id(), any::<u64>()).prop_map(|(id, at_ms)| Entry::Start { id, at_ms }),
            (id(), any::<u32>(), ".{0,8}", bytes()).prop_map(|(id, index, step_id, bytes)| {
                Entry::Step {
                    id,
                    index,
                    step_id,
                    bytes,
                }
            }),
            (
                id(),
                outcome(),
                proptest::option::of(".{0,8}"),
                any::<u64>()
            )
                .prop_map(|(id, outcome, error, at_ms)| Entry::Finish {
                    id,
                    outcome,
                    error,
                    at_ms
                }),
            (".{0,8}", ".{0,8}").prop_map(|(flow_id, token)| Entry::Token { flow_id, token }),
            (
                ".{0,8}",
                ".{0,8}",
                ".{0,16}",
                proptest::collection::vec((".{0,8}", bytes()), 0..3)
            )
                .prop_map(|(flow_id, version, source, plugins)| Entry::FlowVersion {
                    flow_id,
                    version,
                    source,
                    plugins: plugins
                        .into_iter()
                        .map(|(hash, bytes)| PluginBlob {
                            hash,
                            bytes: Arc::from(bytes),
                        })
                        .collect(),
                }),
            proptest::collection::vec(id(), 0..4).prop_map(|ids| Entry::Requeue { ids }),
            (
                ".{0,8}",
                proptest::collection::vec((".{0,8}", any::<u128>()), 0..4)
            )
                .prop_map(|(flow_id, entries)| Entry::ForgetDedupe { flow_id, entries }),
            (id(), any::<u64>()).prop_map(|(id, next_at_ms)| Entry::Retry { id, next_at_ms }),
            (".{0,8}", any::<u64>(), ".{0,8}", bytes()).prop_map(
                |(flow_id, seq, reason, bytes)| Entry::Reject {
                    flow_id,
                    seq,
                    reason,
                    bytes
                }
            ),
            id().prop_map(|id| Entry::Redelivered { id }),
            (id(), id()).prop_map(|(of, id)| Entry::Replayed { of, id }),
            (".{0,8}", ".{0,8}", ".{0,8}", any::<u64>()).prop_map(
                |(flow_id, token, previous, previous_until_ms)| Entry::RotateToken {
                    flow_id,
                    token,
                    previous,
                    previous_until_ms,
                }
            ),
            proptest::collection::vec(id(), 0..4).prop_map(|ids| Entry::Prune { ids }),
        ]
    }

    proptest! {
        #[test]
        fn entries_round_trip_exactly(entries in proptest::collection::vec(entry(), 0..8)) {
            let mut payload = Vec::new();
            for entry in &entries {
                entry.encode(&mut payload).unwrap();
            }
            prop_assert_eq!(decode(&payload).unwrap(), entries.clone());
            // Cut anywhere, the payload reads as the entries before the cut or as an error.
            for cut in 0..payload.len() {
                if let Ok(read) = decode(&payload[..cut]) {
                    prop_assert_eq!(&read[..], &entries[..read.len()]);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&payload);
        }
    }
}
