//! The file format: table definitions, their keys, and the stored form of records.
//!
//! Run ids are keys as `u128` (the ULID's integer), which redb orders numerically, so a
//! reverse range scan lists newest first.
//!
//! The layout is shaped by the write path, because one writer thread commits everything:
//!
//! - Accepting a webhook writes two entries: the request with its body and the run's
//!   unchanging facts ([`REQUESTS`]), and the run's live state ([`LIVE`]). The ids are
//!   increasing, so both append at the right edge of their B-trees, whatever the flow: an
//!   index keyed by flow would add one scattered page per busy flow to every durable commit.
//! - The requests of one transaction are stored together, as one value: a [`bundle`]. The
//!   cost of an fsync grows with the number of scattered pages it writes, and a bundle is one
//!   contiguous run of pages where one value per request would be one or more pages each,
//!   spread over the file. A group commit of 32 webhooks of 1.4 KB writes about 13 pages
//!   instead of 30.
//! - While a run is queued or running, its changing state is a fixed 13-byte value in [`LIVE`].
//! - When it ends, it leaves [`LIVE`], its outcome goes to [`OUTCOMES`], and the indexes
//!   ([`RUNS_BY_FLOW`], [`DONE_BY_STATUS`], [`DONE_BY_FLOW_STATUS`]) get their one entry.
//!   Final statuses never change, so the indexes are written once and never moved; and
//!   finishing is progress, mostly committed without an fsync.
//!
//! Queued and running runs are listed by scanning [`LIVE`], which only holds unfinished runs;
//! a flow's live runs are found there too, by the flow id at the head of each request.

use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::types::{RawRequest, Run, RunId, RunStatus, TokenUsed, VerifyUsed, format_ms, from_ms};

/// Bumped when the layout changes incompatibly; a file of another version is refused.
pub(super) const SCHEMA_VERSION: u64 = 3;
/// Key of [`META`] holding [`SCHEMA_VERSION`].
pub(super) const SCHEMA_KEY: &str = "schema_version";

/// Store-wide facts, e.g. the schema version.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// id of a bundle's first run → a [`bundle`] of accepted requests, each with its run's
/// unchanging facts (see [`Envelope::encode`]).
pub(super) const REQUESTS: TableDefinition<u128, &[u8]> = TableDefinition::new("requests");
/// run id → (status code, attempt, started at ms or 0) of every queued or running run; for a
/// retrying run, the third field is when its next attempt is due, in ms.
pub(super) const LIVE: TableDefinition<u128, (u8, u32, u64)> = TableDefinition::new("live");
/// run id → [`Outcome`] (JSON) of every finished run.
pub(super) const OUTCOMES: TableDefinition<u128, &[u8]> = TableDefinition::new("outcomes");
/// (run id, step index) → `StepRecord` (JSON), of the run's latest attempt.
pub(super) const STEPS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("steps");
/// (flow id, run id) for every finished run; also for live runs in a store written by an
/// earlier Weir, which indexed runs when it accepted them.
pub(super) const RUNS_BY_FLOW: TableDefinition<(&str, u128), ()> =
    TableDefinition::new("runs_by_flow");
/// (final status code, run id) for every finished run.
pub(super) const DONE_BY_STATUS: TableDefinition<(u8, u128), ()> =
    TableDefinition::new("done_by_status");
/// (flow id, final status code, run id) for every finished run.
pub(super) const DONE_BY_FLOW_STATUS: TableDefinition<(&str, u8, u128), ()> =
    TableDefinition::new("done_by_flow_status");
/// (flow id, dedupe key) → the run accepted under it.
pub(super) const DEDUPE: TableDefinition<(&str, &str), u128> = TableDefinition::new("dedupe");
/// (flow id, version) → the flow's source text.
pub(super) const FLOW_VERSIONS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("flow_versions");
/// (flow id, version) → the content hashes (hex SHA-256) of its steps' plugins, in step order,
/// separated by `,`. Versions stored before plugins were kept have no entry.
pub(super) const FLOW_VERSION_PLUGINS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("flow_version_plugins");
/// A plugin component's content hash (hex SHA-256) → its bytes: every plugin a stored flow
/// version used, so a run executes the exact code of the version it records.
pub(super) const PLUGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugins");
/// flow id → its webhook URL token.
pub(super) const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");
/// (flow id, run id) → (final status code, duration in ms or [`NO_DURATION`]) of every run
/// that finished since this index exists: what a flow's stats read, never the outcomes.
pub(super) const FINISHED_BY_FLOW: TableDefinition<(&str, u128), (u8, u64)> =
    TableDefinition::new("finished_by_flow");
/// The duration in [`FINISHED_BY_FLOW`] of a run that finished without starting.
pub(super) const NO_DURATION: u64 = u64::MAX;
/// (run id, id of a run replaying it) for every replay.
pub(super) const REPLAYS: TableDefinition<(u128, u128), ()> = TableDefinition::new("replays");
/// flow id → (its token before the latest rotation, until when it stays valid in ms since the
/// Unix epoch).
pub(super) const PREVIOUS_TOKENS: TableDefinition<&str, (&str, u64)> =
    TableDefinition::new("previous_tokens");

/// The request path of a run that an `on_failure` flow started, before the failed run's id.
/// Not an HTTP path, so no webhook can carry it.
pub const ERROR_FLOW_PATH: &str = "on_failure:";

/// What a run keeps from acceptance on: its flow and the request without its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Envelope {
    pub flow_id: String,
    pub flow_version: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub remote_addr: Option<String>,
    pub received_at_ms: u64,
    /// Kept so that deleting the run can delete its dedupe entry too.
    pub dedupe_key: Option<String>,
    /// The run this one replays. Absent from runs that are not replays (and from every run
    /// stored before replays existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<RunId>,
    /// The URL token the webhook came through; absent for replays and older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenUsed>,
    /// How the webhook passed its flow's `verify`; absent when nothing was verified, for
    /// replays and older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyUsed>,
}

/// An envelope and the body it came with, as read back from [`REQUESTS`].
pub(super) struct StoredRequest<'a> {
    pub envelope: Envelope,
    pub body: &'a [u8],
}

impl StoredRequest<'_> {
    /// The request as it arrived.
    pub fn into_request(self) -> RawRequest {
        let envelope = self.envelope;
        RawRequest {
            method: envelope.method,
            path: envelope.path,
            query: envelope.query,
            headers: envelope.headers,
            body: self.body.to_vec(),
            remote_addr: envelope.remote_addr,
            received_at: from_ms(envelope.received_at_ms),
        }
    }
}

impl Envelope {
    /// [`Envelope::encode_owned`] of a borrowed body.
    #[cfg(test)]
    pub fn encode(&self, body: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut out = self.head(body.len())?;
        out.extend_from_slice(body);
        Ok(out)
    }

    /// The stored value: the flow id's length (2 bytes little-endian) and the flow id, the
    /// envelope's JSON length (4 bytes little-endian) and the JSON, then the body's bytes as
    /// they arrived. The body is neither escaped nor copied to be read, and finishing a run
    /// reads its flow id without parsing the JSON.
    ///
    /// Made in the body's own buffer: the body is moved up and the head written before it,
    /// so a large body is not copied into a second buffer (the buffer grows only when it has
    /// less than the head's length to spare: see [`REQUEST_HEAD_ROOM`]).
    pub fn encode_owned(&self, body: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let head = self.head(0)?;
        let mut out = body;
        let body_len = out.len();
        out.resize(body_len + head.len(), 0);
        out.copy_within(..body_len, head.len());
        out[..head.len()].copy_from_slice(&head);
        Ok(out)
    }

    /// Everything before the body, in a buffer with room for `body_len` more bytes.
    fn head(&self, body_len: usize) -> Result<Vec<u8>, StoreError> {
        let flow = self.flow_id.as_bytes();
        let flow_len = u16::try_from(flow.len())
            .map_err(|_| StoreError::Storage("a flow id is longer than 64 KiB".into()))?;
        let mut out = Vec::with_capacity(6 + flow.len() + self.json_size_hint() + body_len);
        out.extend_from_slice(&flow_len.to_le_bytes());
        out.extend_from_slice(flow);
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        serde_json::to_writer(&mut out, self)
            .map_err(|e| StoreError::Storage(format!("encoding a request: {e}")))?;
        let len = u32::try_from(out.len() - at - 4)
            .map_err(|_| StoreError::Storage("a request's headers exceed 4 GiB".into()))?;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        Ok(out)
    }

    /// About what the envelope's JSON takes, a little more when nothing needs escaping, so
    /// that encoding it seldom grows the buffer.
    fn json_size_hint(&self) -> usize {
        let strings = [
            &self.flow_id,
            &self.flow_version,
            &self.method,
            &self.path,
            &self.query,
        ];
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 6)
            .sum();
        let optional = [&self.remote_addr, &self.dedupe_key]
            .iter()
            .filter_map(|value| value.as_ref().map(String::len))
            .sum::<usize>();
        // Keys, quotes and punctuation take about 150 bytes; the rest is room for escapes.
        192 + strings.iter().map(|s| s.len()).sum::<usize>() + headers + optional
    }

    /// The flow id of a stored value, without decoding the rest.
    pub fn flow_of(id: RunId, bytes: &[u8]) -> Result<&str, StoreError> {
        Ok(split(id, bytes)?.0)
    }

    /// The inverse of [`Envelope::encode`].
    pub fn decode(id: RunId, bytes: &[u8]) -> Result<StoredRequest<'_>, StoreError> {
        let (_, json, body) = split(id, bytes)?;
        let envelope = decode(format_args!("request of run {id}"), json)?;
        Ok(StoredRequest { envelope, body })
    }
}

/// A stored request's flow id, envelope JSON and body.
fn split(id: RunId, bytes: &[u8]) -> Result<(&str, &[u8], &[u8]), StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("request of run {id}: {why}"));
    let (flow_len, rest) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("too short"))?;
    let flow_len = usize::from(u16::from_le_bytes(*flow_len));
    let (flow, rest) = rest
        .split_at_checked(flow_len)
        .ok_or_else(|| corrupt("truncated flow id"))?;
    let flow = std::str::from_utf8(flow).map_err(|_| corrupt("the flow id is not UTF-8"))?;
    let (json_len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("too short"))?;
    let json_len = u32::from_le_bytes(*json_len) as usize;
    let (json, body) = rest
        .split_at_checked(json_len)
        .ok_or_else(|| corrupt("truncated"))?;
    Ok((flow, json, body))
}

/// What a buffer holding a request's body should have to spare for the stored request's
/// head (flow id, method, path, query, headers: [`Envelope::encode_owned`]) to be written
/// before the body without moving it into a larger buffer. A larger head still works.
pub const REQUEST_HEAD_ROOM: usize = 16 << 10;

/// Bundles: the requests accepted in one transaction, stored as one value.
///
/// Layout: the number of requests `n` (4 bytes), then `n` entries of (run id: 16 bytes,
/// end offset of its record: 4 bytes), then the records one after another. All numbers are
/// little-endian; ids are increasing within a bundle and from one bundle to the next, so a
/// run's bundle is the last one whose key (its first id) is not above the run's id.
pub(super) mod bundle {
    use std::ops::Range;

    use redb::{AccessGuard, ReadableTable};

    use super::super::error::StoreError;
    use super::super::types::RunId;

    const ENTRY: usize = 20;

    /// A bundle is closed once its records reach this size; a larger request is stored alone.
    /// It bounds what reading one run's request reads.
    pub const TARGET_BYTES: usize = 64 << 10;

    /// Requests being put together into one bundle.
    #[derive(Default)]
    pub struct Builder {
        entries: Vec<(u128, u32)>,
        records: Vec<u8>,
    }

    impl Builder {
        pub fn is_empty(&self) -> bool {
            self.entries.is_empty()
        }

        /// Whether `len` more bytes still fit, by [`TARGET_BYTES`]; an empty bundle takes any.
        pub fn fits(&self, len: usize) -> bool {
            self.is_empty() || self.records.len() + len <= TARGET_BYTES
        }

        /// Adds a record; ids must be increasing.
        pub fn push(&mut self, id: u128, record: &[u8]) -> Result<(), StoreError> {
            debug_assert!(self.entries.last().is_none_or(|(last, _)| *last < id));
            let end = u32::try_from(self.records.len() + record.len())
                .map_err(|_| StoreError::Storage("a request exceeds 4 GiB".into()))?;
            self.records.extend_from_slice(record);
            self.entries.push((id, end));
            Ok(())
        }

        /// The value of a bundle of one record (a request larger than [`TARGET_BYTES`],
        /// stored alone without first being copied into a builder).
        pub fn alone(id: u128, record: &[u8]) -> Result<Vec<u8>, StoreError> {
            let end = u32::try_from(record.len())
                .map_err(|_| StoreError::Storage("a request exceeds 4 GiB".into()))?;
            let mut out = Vec::with_capacity(4 + ENTRY + record.len());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&end.to_le_bytes());
            out.extend_from_slice(record);
            Ok(out)
        }

        /// The key (first id) and value of the bundle; the builder is empty afterwards.
        pub fn take(&mut self) -> Option<(u128, Vec<u8>)> {
            let first = self.entries.first()?.0;
            let mut out = Vec::with_capacity(4 + self.entries.len() * ENTRY + self.records.len());
            // At most 4 GiB of records of at least 0 bytes each; never more than u32 of them in
            // practice, as each one is a request.
            out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
            for (id, end) in &self.entries {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&end.to_le_bytes());
            }
            out.extend_from_slice(&self.records);
            self.entries.clear();
            self.records.clear();
            Some((first, out))
        }
    }

    /// Reads a bundle's directory.
    struct Directory<'a> {
        entries: &'a [u8],
        records_at: usize,
    }

    impl<'a> Directory<'a> {
        fn read(key: u128, bundle: &'a [u8]) -> Result<Self, StoreError> {
            let corrupt = || StoreError::Corrupt(format!("bundle {}: truncated", RunId::from(key)));
            let (count, rest) = bundle.split_first_chunk::<4>().ok_or_else(corrupt)?;
            let count = u32::from_le_bytes(*count) as usize;
            let entries = rest.get(..count * ENTRY).ok_or_else(corrupt)?;
            Ok(Directory {
                entries,
                records_at: 4 + count * ENTRY,
            })
        }

        fn len(&self) -> usize {
            self.entries.len() / ENTRY
        }

        fn id(&self, index: usize) -> u128 {
            let at = index * ENTRY;
            let mut bytes = [0; 16];
            bytes.copy_from_slice(&self.entries[at..at + 16]);
            u128::from_le_bytes(bytes)
        }

        fn end(&self, index: usize) -> usize {
            let at = index * ENTRY + 16;
            let mut bytes = [0; 4];
            bytes.copy_from_slice(&self.entries[at..at + 4]);
            u32::from_le_bytes(bytes) as usize
        }

        /// Where record `index` lies in the bundle.
        fn range(&self, index: usize, bundle_len: usize) -> Option<Range<usize>> {
            let start = if index == 0 { 0 } else { self.end(index - 1) };
            let range = self.records_at + start..self.records_at + self.end(index);
            (range.start <= range.end && range.end <= bundle_len).then_some(range)
        }
    }

    /// Every run id of a bundle, in order.
    pub fn ids(
        key: u128,
        bundle: &[u8],
    ) -> Result<impl DoubleEndedIterator<Item = u128> + '_, StoreError> {
        let directory = Directory::read(key, bundle)?;
        Ok((0..directory.len()).map(move |index| directory.id(index)))
    }

    /// Every record of a bundle: its run id and where its bytes lie in the bundle.
    pub fn records(key: u128, bundle: &[u8]) -> Result<Vec<(u128, Range<usize>)>, StoreError> {
        let directory = Directory::read(key, bundle)?;
        (0..directory.len())
            .map(|index| {
                let range = directory.range(index, bundle.len()).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "bundle {}: a record lies outside it",
                        RunId::from(key)
                    ))
                })?;
                Ok((directory.id(index), range))
            })
            .collect()
    }

    /// One run's stored request, borrowed from its bundle.
    pub struct Found<'a> {
        guard: AccessGuard<'a, &'static [u8]>,
        range: Range<usize>,
    }

    impl Found<'_> {
        pub fn bytes(&self) -> &[u8] {
            &self.guard.value()[self.range.clone()]
        }
    }

    /// The stored request of run `id`, or `None` when no bundle holds it.
    pub fn find<'a>(
        table: &'a impl ReadableTable<u128, &'static [u8]>,
        id: RunId,
    ) -> Result<Option<Found<'a>>, StoreError> {
        let Some(entry) = table.range(..=id.as_u128())?.next_back() else {
            return Ok(None);
        };
        let (first, guard) = entry?;
        let range = record_of(id, first.value(), guard.value())?;
        Ok(range.map(|range| Found { guard, range }))
    }

    /// Where run `id`'s record lies in the bundle whose first id is `first`, if it is there.
    fn record_of(
        id: RunId,
        first: u128,
        bundle: &[u8],
    ) -> Result<Option<Range<usize>>, StoreError> {
        let key = id.as_u128();
        let directory = Directory::read(first, bundle)?;
        let (mut low, mut high) = (0, directory.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if directory.id(middle) < key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        if low == directory.len() || directory.id(low) != key {
            return Ok(None);
        }
        let range = directory.range(low, bundle.len()).ok_or_else(|| {
            StoreError::Corrupt(format!("bundle of run {id}: a record lies outside it"))
        })?;
        Ok(Some(range))
    }

    /// Finds the stored requests of runs asked for newest first, looking each bundle up once
    /// for all of its runs rather than once per run.
    pub struct Descending<'a, T> {
        table: &'a T,
        /// The bundle of the last run asked for: its first id, and the bundle.
        current: Option<(u128, AccessGuard<'a, &'static [u8]>)>,
    }

    impl<'a, T: ReadableTable<u128, &'static [u8]>> Descending<'a, T> {
        pub fn new(table: &'a T) -> Self {
            Descending {
                table,
                current: None,
            }
        }

        /// The stored request of run `id`, which must be older than every run asked for
        /// before; `None` when no bundle holds it.
        pub fn find(&mut self, id: RunId) -> Result<Option<&[u8]>, StoreError> {
            let key = id.as_u128();
            // Bundles hold consecutive id ranges, so an older run is in the current bundle
            // as long as it is not older than the bundle's first run.
            if !matches!(&self.current, Some((first, _)) if *first <= key) {
                self.current = match self.table.range(..=key)?.next_back() {
                    Some(entry) => {
                        let (first, guard) = entry?;
                        Some((first.value(), guard))
                    }
                    None => None,
                };
            }
            let Some((first, guard)) = &self.current else {
                return Ok(None);
            };
            let bundle = guard.value();
            Ok(record_of(id, *first, bundle)?.map(|range| &bundle[range]))
        }
    }

    /// The largest run id stored, if any.
    pub fn last_id(
        table: &impl ReadableTable<u128, &'static [u8]>,
    ) -> Result<Option<u128>, StoreError> {
        let Some((first, guard)) = table.last()? else {
            return Ok(None);
        };
        Ok(ids(first.value(), guard.value())?.next_back())
    }
}

/// How a finished run ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Outcome {
    pub status: RunStatus,
    pub attempt: u32,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: u64,
    pub error: Option<String>,
}

/// A run's changing state, from [`LIVE`] or [`OUTCOMES`].
#[derive(Debug, Clone)]
pub(super) struct State {
    pub status: RunStatus,
    pub attempt: u32,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub error: Option<String>,
    /// When a retrying run's next attempt is due.
    pub next_attempt_at_ms: Option<u64>,
}

impl State {
    /// A fresh run's state.
    pub fn queued() -> State {
        State {
            status: RunStatus::Queued,
            attempt: 1,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            next_attempt_at_ms: None,
        }
    }

    /// The state of a live run from its [`LIVE`] value.
    pub fn from_live(
        id: RunId,
        (code, attempt, started): (u8, u32, u64),
    ) -> Result<State, StoreError> {
        let status = RunStatus::from_code(code)
            .filter(|status| !status.is_final())
            .ok_or_else(|| StoreError::Corrupt(format!("run {id} has live status code {code}")))?;
        let retrying = status == RunStatus::Retrying;
        Ok(State {
            status,
            attempt,
            started_at_ms: (started != 0 && !retrying).then_some(started),
            finished_at_ms: None,
            error: None,
            next_attempt_at_ms: retrying.then_some(started),
        })
    }

    /// The [`LIVE`] value of a live run.
    pub fn to_live(&self) -> (u8, u32, u64) {
        let third = if self.status == RunStatus::Retrying {
            self.next_attempt_at_ms
        } else {
            self.started_at_ms
        };
        (self.status.code(), self.attempt, third.unwrap_or(0))
    }

    pub fn from_outcome(outcome: Outcome) -> State {
        State {
            status: outcome.status,
            attempt: outcome.attempt,
            started_at_ms: outcome.started_at_ms,
            finished_at_ms: Some(outcome.finished_at_ms),
            error: outcome.error,
            next_attempt_at_ms: None,
        }
    }

    /// The run as shown, from its envelope, body size and state.
    pub fn to_run(&self, id: RunId, envelope: &Envelope, body_size: usize) -> Run {
        let duration_ms = match (self.started_at_ms, self.finished_at_ms) {
            (Some(start), Some(end)) => Some(end.saturating_sub(start)),
            _ => None,
        };
        Run {
            id,
            flow_id: envelope.flow_id.clone(),
            flow_version: envelope.flow_version.clone(),
            status: self.status,
            attempt: self.attempt,
            received_at: format_ms(envelope.received_at_ms),
            started_at: self.started_at_ms.map(format_ms),
            finished_at: self.finished_at_ms.map(format_ms),
            duration_ms,
            error: self.error.clone(),
            method: envelope.method.clone(),
            content_type: envelope
                .headers
                .iter()
                .find(|(name, _)| name == "content-type")
                .map(|(_, value)| value.clone()),
            body_size: body_size as u64,
            next_attempt_at: self.next_attempt_at_ms.map(format_ms),
            error_flow_of: envelope
                .path
                .strip_prefix(ERROR_FLOW_PATH)
                .and_then(|id| id.parse().ok()),
            replay_of: envelope.replay_of,
            token: envelope.token,
            verify: envelope.verify.clone(),
        }
    }
}

/// Encodes a record. Our records always serialize (no maps with non-string keys), but a
/// failure is still reported rather than unwrapped.
pub(super) fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Storage(format!("encoding {what}: {e}")))
}

/// Decodes a stored record; a failure means the file holds something we did not write.
pub(super) fn decode<T: DeserializeOwned>(
    what: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The state of a run: live or finished; `None` when the run has neither.
pub(super) fn state_of(
    live: &impl ReadableTable<u128, (u8, u32, u64)>,
    outcomes: &impl ReadableTable<u128, &'static [u8]>,
    id: RunId,
) -> Result<Option<State>, StoreError> {
    if let Some(value) = live.get(id.as_u128())? {
        return State::from_live(id, value.value()).map(Some);
    }
    match outcomes.get(id.as_u128())? {
        Some(bytes) => Ok(Some(State::from_outcome(decode(
            format_args!("outcome of run {id}"),
            bytes.value(),
        )?))),
        None => Ok(None),
    }
}

/// The run as shown, or `None` when there is no such run.
pub(super) fn run_of(
    requests: &impl ReadableTable<u128, &'static [u8]>,
    live: &impl ReadableTable<u128, (u8, u32, u64)>,
    outcomes: &impl ReadableTable<u128, &'static [u8]>,
    id: RunId,
) -> Result<Option<Run>, StoreError> {
    let Some(found) = bundle::find(requests, id)? else {
        return Ok(None);
    };
    let stored = Envelope::decode(id, found.bytes())?;
    let state = state_of(live, outcomes, id)?.ok_or_else(|| {
        StoreError::Corrupt(format!("run {id} has neither a live state nor an outcome"))
    })?;
    Ok(Some(state.to_run(id, &stored.envelope, stored.body.len())))
}

/// (flow id, slot) → a refused webhook (`rejections::Rejection`, JSON): the flow's ring of
/// its last `rejections::RING` refusals, slot = seq % RING.
pub(super) const REJECTIONS: TableDefinition<(&str, u16), &[u8]> =
    TableDefinition::new("rejections");
/// flow id → the seq its next refusal gets.
pub(super) const REJECTION_NEXT: TableDefinition<&str, u64> =
    TableDefinition::new("rejection_next");
/// (flow id, reason) → how many of its webhooks were refused for it.
pub(super) const REJECTION_COUNTS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("rejection_counts");
/// run id → redeliveries answered with it (absent: none).
pub(super) const REDELIVERIES: TableDefinition<u128, u64> = TableDefinition::new("redeliveries");

#[cfg(test)]
mod tests;
