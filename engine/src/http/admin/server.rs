//! Health, metrics and the OpenAPI document.

use std::sync::Arc;

use serde_json::json;
use warp::reply::{Reply, Response};

use super::{Admin, Result, json_ok};
use crate::http::error::{ApiError, ErrorBody};

/// The server's state: flows loaded, runs waiting, the store's writer, what the store holds.
#[utoipa::path(get, path = "/api/health", tag = "server",
    responses(
        (status = 200, description = "Version, flows, the runs not yet finished \
            (`runs_in_queue`: waiting for their turn; `runs_running`: executing now; \
            `runs_retrying`: waiting for a step's next attempt), the store's writer, \
            senders waiting for results, and `storage`: the store file's length \
            (`file_bytes`), the bytes its tables use (`used_bytes`, as last measured by the \
            pruner at `used_measured_at`; null before the first measure), the runs kept \
            (`runs`, of them `finished`) and the oldest run's id and age in seconds", body = serde_json::Value),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
pub(super) fn health(admin: Arc<Admin>) -> Result<Response> {
    let snapshot = admin.catalog.snapshot();
    let backlog = backlog(&admin)?;
    let holdings = admin.store.holdings().map_err(ApiError::internal)?;
    let now = std::time::SystemTime::now();
    let used = admin.store.last_used_bytes();
    let storage = json!({
        "file_bytes": std::fs::metadata(&admin.store_file).map_or(0, |m| m.len()),
        "used_bytes": used.map(|(bytes, _)| bytes),
        "used_measured_at": used.map(|(_, at)| humantime::format_rfc3339_millis(at).to_string()),
        "runs": holdings.runs,
        "finished": holdings.finished,
        "oldest_run_id": holdings.oldest,
        "oldest_run_age_s": holdings.oldest.map(|id| crate::store::age_of(id, now).as_secs_f64()),
    });
    json_ok(&json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "flows": snapshot.flows.len(),
        "flows_with_errors": snapshot.flows.values().filter(|e| !e.errors.is_empty()).count(),
        "runs_in_queue": backlog.queued,
        "runs_running": backlog.executing,
        "runs_retrying": backlog.retrying,
        "store": admin.store.stats(),
        "storage": storage,
        "senders_waiting_for_results": admin.executor.wait_stats(),
    }))
}

/// The runs not yet finished, by what they wait for; health and metrics count them alike.
struct Backlog {
    /// Waiting for their turn to execute.
    queued: u64,
    /// Executing now.
    executing: u64,
    /// Waiting for a step's next attempt.
    retrying: u64,
}

/// The store counts every live run; the executor knows which of them execute or wait for a
/// retry, so the rest are queued. The counts are read one after the other: a run that moves
/// between the reads can show under the wrong heading for a moment.
fn backlog(admin: &Admin) -> Result<Backlog> {
    let live = admin.store.queue_len().map_err(ApiError::internal)?;
    let executing = admin.executor.executing() as u64;
    let retrying = admin.executor.retrying() as u64;
    Ok(Backlog {
        queued: live.saturating_sub(executing).saturating_sub(retrying),
        executing,
        retrying,
    })
}

/// The metrics, with the gauges read now: the queue from the store (live runs less those
/// executing, and the oldest queued run's age) and the store file's length.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses(
        (status = 200, description = "Prometheus metrics in the OpenMetrics text format",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
pub(super) fn metrics(admin: Arc<Admin>) -> Result<Response> {
    let backlog = backlog(&admin)?;
    let oldest = admin.store.oldest_queued().map_err(ApiError::internal)?;
    let sample = crate::metrics::Sample {
        queued: backlog.queued,
        executing: backlog.executing,
        retrying: backlog.retrying,
        oldest_queued: oldest.map(|id| {
            std::time::SystemTime::now()
                .duration_since(id.timestamp())
                .unwrap_or_default()
        }),
        store_bytes: std::fs::metadata(&admin.store_file).map_or(0, |m| m.len()),
    };
    let text = admin
        .metrics
        .render(sample)
        .map_err(|e| ApiError::internal(format!("encoding the metrics: {e}")))?;
    Ok(
        warp::reply::with_header(text, "content-type", crate::metrics::CONTENT_TYPE)
            .into_response(),
    )
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "server",
    responses(
        (status = 200, description = "This document: OpenAPI 3.1", body = serde_json::Value),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
    ))]
pub(super) fn openapi() -> Result<Response> {
    json_ok(&crate::http::openapi::document())
}
