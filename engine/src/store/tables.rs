//! The file format: table definitions, their keys, and the stored form of records.
//!
//! Run ids are keys as `u128` (the ULID's integer), which redb orders numerically, so a
//! reverse range scan lists newest first. Records are JSON; request bodies are raw bytes in a
//! table of their own so that listing or showing runs never reads them.

use redb::TableDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::types::{Run, RunId, RunStatus, format_ms};

/// Bumped when the layout changes incompatibly; a file of another version is refused.
pub(super) const SCHEMA_VERSION: u64 = 1;
/// Key of [`META`] holding [`SCHEMA_VERSION`].
pub(super) const SCHEMA_KEY: &str = "schema_version";

/// Store-wide facts, e.g. the schema version.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// run id → [`RunRecord`] (JSON).
pub(super) const RUNS: TableDefinition<u128, &[u8]> = TableDefinition::new("runs");
/// run id → [`RequestRecord`] (JSON): the request without its body.
pub(super) const REQUESTS: TableDefinition<u128, &[u8]> = TableDefinition::new("requests");
/// run id → the request body, raw.
pub(super) const BODIES: TableDefinition<u128, &[u8]> = TableDefinition::new("bodies");
/// (run id, step index) → `StepRecord` (JSON), of the run's latest attempt.
pub(super) const STEPS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("steps");
/// run id of every live (queued or running) run.
pub(super) const QUEUE: TableDefinition<u128, ()> = TableDefinition::new("queue");
/// (flow id, run id) for every run.
pub(super) const RUNS_BY_FLOW: TableDefinition<(&str, u128), ()> =
    TableDefinition::new("runs_by_flow");
/// (status code, run id) for every run, following status changes.
pub(super) const RUNS_BY_STATUS: TableDefinition<(u8, u128), ()> =
    TableDefinition::new("runs_by_status");
/// (flow id, status code, run id) for every run, following status changes.
pub(super) const RUNS_BY_FLOW_STATUS: TableDefinition<(&str, u8, u128), ()> =
    TableDefinition::new("runs_by_flow_status");
/// (flow id, dedupe key) → the run accepted under it.
pub(super) const DEDUPE: TableDefinition<(&str, &str), u128> = TableDefinition::new("dedupe");
/// (flow id, version) → the flow's source text.
pub(super) const FLOW_VERSIONS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("flow_versions");
/// flow id → its webhook URL token.
pub(super) const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");

/// A run as stored: times as milliseconds since the epoch, formatted only when shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RunRecord {
    pub flow_id: String,
    pub flow_version: String,
    pub status: RunStatus,
    pub attempt: u32,
    pub received_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub error: Option<String>,
    pub method: String,
    pub content_type: Option<String>,
    pub body_size: u64,
    /// Kept so that deleting the run can delete its dedupe entry too.
    pub dedupe_key: Option<String>,
}

impl RunRecord {
    pub fn to_run(&self, id: RunId) -> Run {
        let duration_ms = match (self.started_at_ms, self.finished_at_ms) {
            (Some(start), Some(end)) => Some(end.saturating_sub(start)),
            _ => None,
        };
        Run {
            id,
            flow_id: self.flow_id.clone(),
            flow_version: self.flow_version.clone(),
            status: self.status,
            attempt: self.attempt,
            received_at: format_ms(self.received_at_ms),
            started_at: self.started_at_ms.map(format_ms),
            finished_at: self.finished_at_ms.map(format_ms),
            duration_ms,
            error: self.error.clone(),
            method: self.method.clone(),
            content_type: self.content_type.clone(),
            body_size: self.body_size,
        }
    }
}

/// A request as stored, without its body (see [`BODIES`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub remote_addr: Option<String>,
    pub received_at_ms: u64,
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
