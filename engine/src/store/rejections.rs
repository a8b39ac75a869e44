//! Refused webhooks on record: per flow, the last [`RING`] refusals in a ring of fixed slots,
//! and a count per reason; and each run's redeliveries.
//!
//! A refusal is written into slot `seq % RING` of its flow, so a flood of forgeries
//! overwrites the oldest rows and never grows the file past `RING` rows per flow. Recording
//! goes through the writer as progress (behind accepts, without an fsync of its own): a
//! refusal lost to a power cut is a lost diagnostic, never lost data.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine;
use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};

use super::Store;
use super::error::StoreError;
use super::tables::{REDELIVERIES, REJECTION_COUNTS, REJECTIONS, decode};
use super::types::{RunId, format_ms, to_ms};
use super::writer::Op;

/// Refusals kept per flow.
pub const RING: u64 = 1000;
/// The most bytes of a refused body kept.
pub const BODY_KEPT: usize = 4096;

/// A refusal as the gateway reports it.
#[derive(Debug, Clone)]
pub struct NewRejection {
    pub flow_id: String,
    pub at: SystemTime,
    /// A short word for counting: `verify`, `method`, `too_large`, …
    pub reason: &'static str,
    /// The HTTP status the sender got, and the message it read.
    pub status: u16,
    pub message: String,
    pub remote_addr: Option<String>,
    pub method: String,
    /// Path and query with the URL token and credentials already redacted.
    pub path: String,
    pub query: String,
    /// Headers with credentials already redacted.
    pub headers: Vec<(String, String)>,
    /// The body's first [`BODY_KEPT`] bytes, when it was read before the refusal.
    pub body: Option<Vec<u8>>,
    /// The body's whole size, when known.
    pub body_size: Option<u64>,
}

/// A refusal as kept and listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rejection {
    /// Its number among the flow's refusals (the cursor of the list).
    pub seq: u64,
    pub at: String,
    pub reason: String,
    pub status: u16,
    pub message: String,
    pub remote_addr: Option<String>,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The body's first 4 KiB: text when it is UTF-8, else base64 (see `body_encoding`);
    /// absent when the request was refused before its body was read.
    pub body: Option<String>,
    /// `utf-8` or `base64`.
    pub body_encoding: Option<String>,
    pub body_size: Option<u64>,
    /// Whether `body` is cut short of the body.
    pub body_truncated: bool,
}

impl NewRejection {
    /// The stored record, numbered `seq`.
    pub(super) fn encode(&self, seq: u64) -> Result<Vec<u8>, StoreError> {
        let (body, body_encoding, truncated) = match &self.body {
            None => (None, None, false),
            Some(bytes) => {
                let kept = &bytes[..bytes.len().min(BODY_KEPT)];
                let truncated = self
                    .body_size
                    .map_or(bytes.len() > kept.len(), |size| size > kept.len() as u64);
                match std::str::from_utf8(kept) {
                    Ok(text) => (Some(text.to_owned()), Some("utf-8"), truncated),
                    Err(_) => (
                        Some(base64::engine::general_purpose::STANDARD.encode(kept)),
                        Some("base64"),
                        truncated,
                    ),
                }
            }
        };
        let record = Rejection {
            seq,
            at: format_ms(to_ms(self.at)),
            reason: self.reason.to_owned(),
            status: self.status,
            message: self.message.clone(),
            remote_addr: self.remote_addr.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body,
            body_encoding: body_encoding.map(str::to_owned),
            body_size: self.body_size,
            body_truncated: truncated,
        };
        serde_json::to_vec(&record)
            .map_err(|e| StoreError::Storage(format!("encoding a rejection: {e}")))
    }
}

/// A page of a flow's refusals, newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RejectionPage {
    pub rejections: Vec<Rejection>,
    /// Pass as `cursor` for the older ones; absent on the last page.
    pub next_cursor: Option<u64>,
}

impl Store {
    /// Records refusals (behind accepts; not synced on their own); answers each one's number
    /// in its flow's ring (its `seq`), in the order of `rows`.
    pub async fn record_rejections(&self, rows: Vec<NewRejection>) -> Result<Vec<u64>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|reply| Op::Reject { rows, reply }).await
    }

    /// The flow's refusals older than `before` (all when `None`), newest first, at most `limit`.
    pub fn rejections(
        &self,
        flow_id: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<RejectionPage, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(REJECTIONS)?;
        let mut rows = Vec::new();
        for entry in table.range((flow_id, 0u16)..=(flow_id, u16::MAX))? {
            let (key, value) = entry?;
            let slot = key.value().1;
            let row: Rejection = decode(
                format_args!("rejection slot {slot} of flow {flow_id}"),
                value.value(),
            )?;
            if before.is_none_or(|before| row.seq < before) {
                rows.push(row);
            }
        }
        rows.sort_unstable_by_key(|row| std::cmp::Reverse(row.seq));
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok(RejectionPage {
            next_cursor: more.then(|| rows.last().map(|r| r.seq)).flatten(),
            rejections: rows,
        })
    }

    /// How many of the flow's webhooks were refused, by reason, since the store was made.
    pub fn rejection_counts(&self, flow_id: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(REJECTION_COUNTS)?;
        let mut counts = BTreeMap::new();
        for entry in table.range((flow_id, "")..)? {
            let (key, value) = entry?;
            let (flow, reason) = key.value();
            if flow != flow_id {
                break;
            }
            counts.insert(reason.to_owned(), value.value());
        }
        Ok(counts)
    }

    /// How many redeliveries (duplicates by the flow's dedupe value) the run was answered for.
    pub fn redeliveries(&self, id: RunId) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(REDELIVERIES)?;
        Ok(table.get(id.as_u128())?.map_or(0, |v| v.value()))
    }
}
