//! The records the store keeps, in the form callers and the admin API see them.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// What a step's record keeps of its plugin call, as the plugin host gives it.
pub use crate::plugin::outbound::CallRecord;
pub use crate::plugin::{LogLevel, LogLine};

/// The id of a run: a ULID, so ids sort by the time the run was accepted.
///
/// The store hands out strictly increasing ids (also across restarts), so "newest first" is a
/// reverse key scan and a cursor is simply the last id seen. Shown and parsed as the
/// 26-character ULID text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
pub struct RunId(Ulid);

impl RunId {
    /// The id as the 128-bit integer it is stored under.
    pub fn as_u128(self) -> u128 {
        self.0.0
    }

    /// When the run was accepted, to the millisecond (the ULID's timestamp).
    pub fn timestamp(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.timestamp_ms())
    }
}

impl From<u128> for RunId {
    fn from(value: u128) -> Self {
        RunId(Ulid(value))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for RunId {
    type Err = ulid::DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ulid::from_string(s).map(RunId)
    }
}

impl Serialize for RunId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a run is in its life.
///
/// `Queued`, `Running` and `Retrying` are live (the run has an entry in the `live` table); the
/// other three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted and on disk, waiting for the executor.
    Queued,
    /// Taken by the executor; after a crash it goes back to `Queued` with `attempt + 1`.
    Running,
    /// Every step succeeded or was skipped.
    Succeeded,
    /// A step failed; `Run::error` says which and why.
    Failed,
    /// A filter step stopped the run on purpose.
    Filtered,
    /// A step failed and waits for its next attempt (`Run::next_attempt_at`); no worker holds
    /// the run meanwhile.
    Retrying,
}

impl RunStatus {
    /// Every status, in the order of their stored codes.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Filtered,
        RunStatus::Retrying,
    ];

    /// Whether the run is over (it has left the `live` table).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            RunStatus::Queued | RunStatus::Running | RunStatus::Retrying
        )
    }

    /// The name used in JSON and in query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Filtered => "filtered",
            RunStatus::Retrying => "retrying",
        }
    }

    /// The byte the status indexes are keyed by. Part of the file format: never renumber.
    pub(super) fn code(self) -> u8 {
        match self {
            RunStatus::Queued => 0,
            RunStatus::Running => 1,
            RunStatus::Succeeded => 2,
            RunStatus::Failed => 3,
            RunStatus::Filtered => 4,
            RunStatus::Retrying => 5,
        }
    }

    /// The inverse of [`RunStatus::code`].
    pub(super) fn from_code(code: u8) -> Option<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.code() == code)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `queued`, `running`, `retrying`, `succeeded`, `failed`, `filtered`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown run status {0:?}: expected queued, running, retrying, succeeded, failed or filtered"
)]
pub struct UnknownStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// How a run ended: the final statuses, so that `finish_run` cannot be asked to finish a run
/// as `Queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every step succeeded or was skipped.
    Succeeded,
    /// A step failed.
    Failed,
    /// A filter step stopped the run.
    Filtered,
}

impl From<RunOutcome> for RunStatus {
    fn from(outcome: RunOutcome) -> Self {
        match outcome {
            RunOutcome::Succeeded => RunStatus::Succeeded,
            RunOutcome::Failed => RunStatus::Failed,
            RunOutcome::Filtered => RunStatus::Filtered,
        }
    }
}

/// A webhook request exactly as it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRequest {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The request path, e.g. `/hooks/github/2xY…`.
    pub path: String,
    /// The raw query string without `?`; empty when there was none.
    pub query: String,
    /// Header names lower-cased; order and repeated headers kept as received.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte. Stored raw; in JSON it is standard base64.
    #[serde(with = "base64_body")]
    pub body: Vec<u8>,
    /// The peer address, when known.
    pub remote_addr: Option<String>,
    /// When the gateway received the request. Kept to the millisecond.
    #[serde(with = "rfc3339_millis")]
    pub received_at: SystemTime,
}

impl RawRequest {
    /// The first value of a header; `name` must be lower-case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook to keep and run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRun {
    /// The flow the webhook triggers.
    pub flow_id: String,
    /// The version (content hash) of the flow that will run it.
    pub flow_version: String,
    /// The request as received.
    pub request: RawRequest,
    /// The flow's dedupe key for this request, if the flow declares one. A second accept with the
    /// same `(flow_id, dedupe_key)` stores nothing and answers with the first run.
    #[serde(default)]
    pub dedupe_key: Option<String>,
    /// How long a dedupe key holds: a delivery whose first run was accepted longer ago than
    /// this is a new run (and the key then names it). `None`: for as long as the first run is
    /// kept.
    #[serde(default)]
    pub dedupe_window: Option<Duration>,
}

/// What `accept` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The run's id: the new run, or for a duplicate the run first accepted under its dedupe
    /// key.
    pub id: RunId,
    /// That run's status: `queued` for a new run.
    pub status: RunStatus,
    /// True when the request was a duplicate and nothing new was stored or queued.
    pub duplicate: bool,
}

/// A run as listed and shown: everything but the request body and the steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    /// Time-ordered id.
    pub id: RunId,
    /// The flow that runs it.
    pub flow_id: String,
    /// The flow version it was accepted for.
    pub flow_version: String,
    /// Where it is in its life.
    pub status: RunStatus,
    /// 1 for the first try; one more each time a crash interrupted it.
    pub attempt: u32,
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub received_at: String,
    /// When the current attempt started.
    pub started_at: Option<String>,
    /// When it reached a final status.
    pub finished_at: Option<String>,
    /// `finished_at - started_at` in milliseconds.
    pub duration_ms: Option<u64>,
    /// Short summary of a failure: which step failed and why.
    pub error: Option<String>,
    /// The request's HTTP method.
    pub method: String,
    /// The request's `content-type` header.
    pub content_type: Option<String>,
    /// The request body's size in bytes.
    pub body_size: u64,
    /// When a `retrying` run's next attempt is due, RFC 3339 UTC with milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// For a run an `on_failure` flow started: the failed run it handles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_flow_of: Option<RunId>,
    /// The run this one replays (`POST /api/runs/{id}/replay`), if it is a replay.
    pub replay_of: Option<RunId>,
    /// Which of the flow's URL tokens the webhook came through: `current`, or `previous`
    /// during a rotation's overlap; `null` for a replay and for runs stored before tokens
    /// were recorded.
    pub token: Option<TokenUsed>,
    /// How the webhook passed its flow's `verify`; absent when the flow verifies nothing, for
    /// a replay, and for runs stored before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyUsed>,
}

/// How a webhook passed its flow's `verify`: the scheme, and which of the flow's secrets it was
/// valid under, by position (never the value), so that an admin rotating a secret can see
/// when senders stopped using the old one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyUsed {
    /// The scheme, as written in the flow: `github`, `stripe`, `slack`, `standard-webhooks`,
    /// `hmac`, `token` or `basic`.
    #[schema(example = "github")]
    pub scheme: String,
    /// The position, from 0, of the matching secret in the flow's `secret` list (`token` or
    /// `password` for those schemes); 0 when the flow has one secret.
    #[schema(example = 1)]
    pub secret: u32,
}

/// Which of a flow's webhook URL tokens a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenUsed {
    /// The flow's token.
    Current,
    /// The token it had before its latest rotation, still valid during the overlap.
    Previous,
}

/// Where a new run comes from, besides its request: what [`crate::store::Store::accept_from`]
/// keeps with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunOrigin {
    /// The run it replays: recorded on the new run, and the old one lists the new one.
    pub replay_of: Option<RunId>,
    /// The URL token the webhook came through.
    pub token: Option<TokenUsed>,
    /// How the webhook passed its flow's `verify`.
    pub verify: Option<VerifyUsed>,
}

/// What happened to one step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The plugin returned an output.
    Succeeded,
    /// The plugin returned an error or trapped.
    Failed,
    /// The step's condition was false; it did not run.
    Skipped,
    /// The step stopped the run on purpose.
    Filtered,
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepErrorRecord {
    /// E.g. `invalid_input`, `config`, `upstream`, `internal`, `timeout`, `trap`.
    pub kind: String,
    /// The message, as the plugin or the host gave it.
    pub message: String,
}

/// The record of one step of one attempt of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRecord {
    /// Position in the flow, from 0; steps are listed in this order.
    pub index: u32,
    /// The step's id in the flow.
    pub step_id: String,
    /// The plugin that ran it.
    pub plugin: String,
    /// What happened.
    pub status: StepStatus,
    /// The mapped input, when the step got that far.
    pub input: Option<serde_json::Value>,
    /// The output, when it succeeded.
    pub output: Option<serde_json::Value>,
    /// What the plugin logged.
    pub logs: Vec<LogLine>,
    /// Why it failed.
    pub error: Option<StepErrorRecord>,
    /// When it started, RFC 3339 UTC with milliseconds.
    pub started_at: String,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// The outbound HTTP calls the step made, in order (absent from records written before
    /// steps could make any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<CallRecord>,
    /// Every attempt of a step that may retry (`retries` in its flow), oldest first; the
    /// record's other fields are those of the latest. Absent for steps without retries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
}

/// One attempt of a step that may retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    /// 1 for the first.
    pub attempt: u32,
    /// When it started, RFC 3339 UTC with milliseconds.
    pub started_at: String,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// Why it failed; `None` for the attempt that succeeded.
    pub error: Option<StepErrorRecord>,
    /// When the next attempt was due, for a failed attempt that was retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

/// Which runs `list_runs` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunFilter {
    /// Only runs of this flow.
    pub flow: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// At most this many runs (capped at [`RunFilter::MAX_LIMIT`]).
    pub limit: usize,
    /// Continue after this id: only runs older than it.
    pub cursor: Option<RunId>,
    /// Only runs received at or after this time (milliseconds since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Only runs received at or before this time (milliseconds since the Unix epoch).
    pub until_ms: Option<u64>,
}

impl RunFilter {
    /// The largest page `list_runs` returns, whatever `limit` asks for.
    pub const MAX_LIMIT: usize = 1000;
}

impl Default for RunFilter {
    /// Every run, 50 to a page, from the newest.
    fn default() -> Self {
        RunFilter {
            flow: None,
            status: None,
            limit: 50,
            cursor: None,
            since_ms: None,
            until_ms: None,
        }
    }
}

/// One page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The runs.
    pub runs: Vec<Run>,
    /// The runs of this page that cannot be read (damaged records), newest first; with
    /// `runs`, they make up the page.
    #[serde(default)]
    pub damaged: Vec<DamagedRun>,
    /// Pass as `cursor` for the next page; `None` when this page is the last.
    pub next_cursor: Option<RunId>,
}

/// What [`crate::store::Store::search_runs`] went through to fill a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The page: the matching runs, and the cursor to go on from.
    pub page: Page,
    /// Runs read and tested.
    pub scanned: u64,
    /// Whether the scan stopped at its limit before the page was full or the runs ran out;
    /// `page.next_cursor` then goes on after the last run scanned.
    pub truncated: bool,
}

/// One flow's finished runs received in a window: counts by status and durations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowStats {
    /// Runs by status (finished ones, and those queued or running now).
    pub counts: std::collections::BTreeMap<String, u64>,
    /// The median duration of the finished runs that started, in milliseconds.
    pub p50_ms: Option<u64>,
    /// The 95th percentile of the same.
    pub p95_ms: Option<u64>,
}

/// A run whose stored records cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DamagedRun {
    pub id: RunId,
    /// What is wrong with it.
    pub error: String,
}

/// Milliseconds since the Unix epoch; times before it count as 0.
pub(super) fn to_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_ms`].
pub(super) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// RFC 3339, UTC, milliseconds: `2026-03-21T10:04:05.123Z`.
pub(super) fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(from_ms(ms)).to_string()
}

mod base64_body {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(body: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(body))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

mod rfc3339_millis {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// A plugin component as a flow version keeps it: its content hash (hex SHA-256) and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginBlob {
    pub hash: String,
    pub bytes: std::sync::Arc<[u8]>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A step record as stores hold it (logs with their level by name, an outbound call)
    /// reads back and writes the same JSON: stores written before the engine shared one
    /// `LogLine` and one `CallRecord` keep reading.
    #[test]
    fn a_stored_step_record_reads_and_writes_the_same_json() {
        let stored = json!({
            "index": 0,
            "step_id": "notify",
            "plugin": "http",
            "status": "failed",
            "input": {"text": "hi"},
            "output": null,
            "logs": [
                {"level": "trace", "message": "a"},
                {"level": "debug", "message": "b"},
                {"level": "info", "message": "c"},
                {"level": "warn", "message": "d"},
                {"level": "error", "message": "e"},
                {"level": "stdout", "message": "f"},
                {"level": "stderr", "message": "g"}
            ],
            "error": {"kind": "upstream", "message": "503"},
            "started_at": "2026-01-01T00:00:00.000Z",
            "duration_us": 37,
            "calls": [{
                "method": "POST",
                "url": "https://hooks.example/x?token=[redacted]",
                "status": 503,
                "duration_ms": 12,
                "request_bytes": 14,
                "response_bytes": 3,
                "error": null
            }]
        });
        let record: StepRecord = serde_json::from_value(stored.clone()).unwrap();
        let levels: Vec<&str> = record.logs.iter().map(|l| l.level.as_str()).collect();
        assert_eq!(
            levels,
            [
                "trace", "debug", "info", "warn", "error", "stdout", "stderr"
            ]
        );
        assert_eq!(record.logs[5].level, LogLevel::Stdout);
        assert_eq!(record.calls[0].status, Some(503));
        assert_eq!(serde_json::to_value(&record).unwrap(), stored);
    }
}
