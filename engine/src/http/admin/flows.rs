//! Flows: the list and one flow's page.

use std::sync::Arc;

use serde_json::{Value, json};
use warp::reply::Response;

use super::{Admin, Result, json_ok};
use crate::catalog::{Catalog, FlowEntry};
use crate::flow::Respond;
use crate::http::error::{ApiError, ErrorBody};
use crate::store::{RunFilter, WindowStats};

/// What may be wrong with a flow that loads: an `on_failure` naming a flow that does not
/// exist or does not load (its failures then start nothing).
fn warnings(catalog: &Catalog, entry: &FlowEntry) -> Vec<String> {
    let target = entry.live.as_ref().and_then(|l| l.flow.on_failure.as_ref());
    match target {
        Some(target) => {
            let snapshot = catalog.snapshot();
            match snapshot.flows.get(target.as_str()) {
                Some(found) if found.live.is_some() => Vec::new(),
                Some(_) => vec![format!(
                    "on_failure names flow '{target}', which does not load: failed runs start nothing"
                )],
                None => vec![format!(
                    "on_failure names flow '{target}', which does not exist: failed runs start nothing"
                )],
            }
        }
        None => Vec::new(),
    }
}

pub(super) fn flow_json(catalog: &Catalog, entry: &FlowEntry) -> Value {
    let live = entry.live.as_ref().map(|l| &l.flow);
    let mut flow = json!({
        "id": entry.id,
        "name": live.map(|f| f.name.as_str()),
        "description": live.and_then(|f| f.description.as_deref()),
        "webhook_url": catalog.webhook_url(entry),
        "status": entry.status(),
        "errors": entry.errors,
        "version": live.map(|f| f.version.as_str()),
        "serving": live.is_some(),
        "file": entry.file.display().to_string(),
        "methods": live.map(|f| f.webhook.methods.clone()),
        "max_body": live.map(|f| f.webhook.max_body),
        "max_head": live.map(|f| f.webhook.max_head),
        "dedupe": live.and_then(|f| f.webhook.dedupe.as_ref().map(|q| q.as_str().to_owned())),
        "dedupe_from": live.and_then(|f| f.webhook.dedupe_from).map(|from| match from {
            crate::flow::DedupeFrom::Flow => "flow".to_owned(),
            crate::flow::DedupeFrom::Scheme(scheme) => format!("verify scheme {scheme}"),
        }),
        "dedupe_window_ms": live.and_then(|f| f.webhook.dedupe_window)
            .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
        "respond": live.map(|f| match f.webhook.respond {
            Respond::Accepted => json!({ "mode": "accepted" }),
            Respond::Result { timeout } => json!({
                "mode": "result",
                "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }),
        // The scheme only: secrets never leave the flow.
        "verify": live.and_then(|f| f.webhook.verify.as_ref().map(|v| v.scheme())),
        "steps": live.map(|f| f.steps.iter().map(|s| json!({
            "id": s.id.to_string(),
            "plugin": match &s.plugin {
                crate::flow::PluginRef::Builtin(name) => name.clone(),
                crate::flow::PluginRef::Path(path) => path.display().to_string(),
            },
            "input": s.input.to_json(),
            "when": s.when.as_ref().map(|q| q.as_str().to_owned()),
            "config": s.redacted_config(),
            "retries": s.retry.retries,
            "backoff_ms": millis(s.retry.backoff),
            "max_backoff_ms": millis(s.retry.max_backoff),
        })).collect::<Vec<_>>()),
    });
    if let Some(object) = flow.as_object_mut() {
        object.insert(
            "on_failure".into(),
            json!(live.and_then(|f| f.on_failure.as_ref().map(|id| id.as_str()))),
        );
        object.insert("warnings".into(), json!(warnings(catalog, entry)));
        object.insert(
            "concurrency".into(),
            json!(live.and_then(|f| f.concurrency)),
        );
        object.insert(
            "order_by".into(),
            json!(live.and_then(|f| f.order_by.as_ref().map(|q| q.as_str().to_owned()))),
        );
        object.insert(
            "retain".into(),
            json!(live.map(|f| json!({
                "age_ms": f.retain.age.map(millis),
                "runs": f.retain.runs,
            }))),
        );
    }
    flow
}

/// A duration as whole milliseconds, as the API gives them.
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The most index entries read to count a flow's runs of the last 24 hours; past it the
/// count says so.
const RECENT_RUNS_COUNTED: u64 = 100_000;

/// Adds the flow's activity to its JSON: `last_run` (id, status, received_at) and `runs_24h`
/// (capped at [`RECENT_RUNS_COUNTED`], with `runs_24h_capped`). Reads the flow's index and its
/// newest run's summary, never a payload.
pub(super) fn add_activity(admin: &Admin, id: &str, flow: &mut Value) -> Result<()> {
    let newest = admin
        .store
        .list_runs(&RunFilter {
            flow: Some(id.to_owned()),
            limit: 1,
            ..RunFilter::default()
        })
        .map_err(ApiError::internal)?;
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
    let (recent, capped) = admin
        .store
        .count_runs_since(id, since, RECENT_RUNS_COUNTED)
        .map_err(ApiError::internal)?;
    flow["runs_24h"] = json!(recent);
    flow["runs_24h_capped"] = json!(capped);
    let refused = admin
        .store
        .rejection_counts(id)
        .map_err(ApiError::internal)?;
    flow["rejections"] = json!({ "total": refused.values().sum::<u64>(), "by_reason": refused });
    flow["last_run"] = json!(newest.runs.first().map(|run| json!({
        "id": run.id,
        "status": run.status,
        "received_at": run.received_at,
    })));
    Ok(())
}

#[utoipa::path(get, path = "/api/flows", tag = "flows",
    responses(
        (status = 200, description = "`{\"flows\": [...]}`: every flow of the folder with its \
            webhook URL, status, errors, version, steps and activity", body = serde_json::Value),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
pub(super) fn list_flows(admin: Arc<Admin>) -> Result<Response> {
    let snapshot = admin.catalog.snapshot();
    let mut flows = Vec::with_capacity(snapshot.flows.len());
    for entry in snapshot.flows.values() {
        let mut flow = flow_json(&admin.catalog, entry);
        add_activity(&admin, &entry.id, &mut flow)?;
        flows.push(flow);
    }
    json_ok(&json!({ "flows": flows }))
}

/// One flow, with what its page shows beyond the list: `source`, the TOML of the version
/// serving (`version`), and `latest_webhook`, the webhook step's output in its latest run.
#[utoipa::path(get, path = "/api/flows/{id}", tag = "flows",
    params(("id" = String, Path, description = "The flow id (its file name)")),
    responses(
        (status = 200, description = "The flow as listed, with `source` (its TOML) and \
            `latest_webhook`", body = serde_json::Value),
        (status = 404, description = "No such flow", body = ErrorBody),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
pub(super) fn get_flow(id: String, admin: Arc<Admin>) -> Result<Response> {
    let snapshot = admin.catalog.snapshot();
    let entry = snapshot
        .flows
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no flow '{id}'")))?;
    let mut flow = flow_json(&admin.catalog, entry);
    add_activity(&admin, &id, &mut flow)?;
    let source = match entry.live.as_ref() {
        Some(live) => admin
            .store
            .flow_version(&id, &live.flow.version)
            .map_err(ApiError::internal)?,
        None => None,
    };
    flow["source"] = json!(source);
    let latest = admin
        .store
        .list_runs(&RunFilter {
            flow: Some(id.clone()),
            limit: 1,
            ..RunFilter::default()
        })
        .map_err(ApiError::internal)?
        .runs
        .into_iter()
        .next();
    flow["latest_webhook"] = match latest {
        Some(run) => match admin
            .store
            .get_request(run.id)
            .map_err(ApiError::internal)?
        {
            Some(request) => json!({
                "run_id": run.id,
                "output": crate::run::payload::webhook_document_for(&run, &request),
            }),
            None => Value::Null,
        },
        None => Value::Null,
    };
    json_ok(&flow)
}

/// The most refusals on one page.
const MAX_REJECTIONS_PAGE: usize = crate::store::RING as usize;

/// The flow's refused webhooks, newest first: its last 1,000 refusals after its URL's token
/// matched (a wrong signature, method, size, handshake token or sender address), with
/// credentials redacted and at most the first 4 KiB of the body.
#[utoipa::path(get, path = "/api/flows/{id}/rejections", tag = "flows",
    params(
        ("id" = String, Path, description = "The flow id (its file name)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
            description = "Refusals per page (default 50)"),
        ("cursor" = Option<u64>, Query, description = "A page's `next_cursor`: older refusals"),
    ),
    responses(
        (status = 200, description = "A page of refusals, newest first",
            body = crate::store::RejectionPage),
        (status = 400, description = "An unknown parameter or a bad value", body = ErrorBody),
        (status = 404, description = "No such flow", body = ErrorBody),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
pub(super) fn list_rejections(
    id: String,
    query: std::collections::HashMap<String, String>,
    admin: Arc<Admin>,
) -> Result<Response> {
    if !admin.catalog.snapshot().flows.contains_key(&id) {
        return Err(ApiError::not_found(format!("no flow '{id}'")));
    }
    let mut limit = 50;
    let mut cursor = None;
    for (key, value) in &query {
        match key.as_str() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_REJECTIONS_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit '{value}' is not a number from 1 to {MAX_REJECTIONS_PAGE}"
                        ))
                    })?;
            }
            "cursor" => {
                cursor = Some(value.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("cursor '{value}' is not a page's next_cursor"))
                })?);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}' (limit and cursor are known)"
                )));
            }
        }
    }
    let page = admin
        .store
        .rejections(&id, limit, cursor)
        .map_err(ApiError::internal)?;
    json_ok(&serde_json::to_value(page).map_err(ApiError::internal)?)
}

#[utoipa::path(get, path = "/api/flows/{id}/stats", tag = "flows",
    params(("id" = String, Path, description = "The flow id (its file name)")),
    responses(
        (status = 200, description = "Runs received in the last hour and the last day: counts \
            by status, p50 and p95 of the finished runs' durations", body = FlowStatsBody),
        (status = 404, description = "No such flow", body = ErrorBody),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
pub(super) fn flow_stats(id: String, admin: Arc<Admin>) -> Result<Response> {
    if !admin.catalog.snapshot().flows.contains_key(&id) {
        return Err(ApiError::not_found(format!("no flow '{id}'")));
    }
    let stats = admin
        .store
        .flow_stats(&id, std::time::SystemTime::now())
        .map_err(ApiError::internal)?;
    let body = FlowStatsBody {
        flow_id: id,
        last_hour: stats.last_hour,
        last_day: stats.last_day,
    };
    json_ok(&serde_json::to_value(body).map_err(ApiError::internal)?)
}

/// `GET /api/flows/{id}/stats`. Windows are by the time runs were received; a run finished
/// by a Weir older than these stats is not counted.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct FlowStatsBody {
    flow_id: String,
    last_hour: WindowStats,
    last_day: WindowStats,
}

/// How long a rotated-out token stays valid unless `overlap` says otherwise.
const DEFAULT_OVERLAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[utoipa::path(post, path = "/api/flows/{id}/rotate-token", tag = "flows",
    params(
        ("id" = String, Path, description = "The flow id (its file name)"),
        ("overlap" = Option<String>, Query, description = "How long the current URL keeps \
            working beside the new one, e.g. `1h` (default `24h`; `0s` ends it now)"),
    ),
    responses(
        (status = 200, description = "`{\"flow_id\", \"webhook_url\", \"previous_expires_at\"}`: \
            the new URL, and when the old one stops working", body = serde_json::Value),
        (status = 400, description = "A bad `overlap` or an unknown parameter", body = ErrorBody),
        (status = 404, description = "No such flow", body = ErrorBody),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be written", body = ErrorBody),
    ))]
pub(super) async fn rotate_token(
    id: String,
    query: std::collections::HashMap<String, String>,
    admin: Arc<Admin>,
) -> Result<Response> {
    let mut overlap = DEFAULT_OVERLAP;
    for (key, value) in &query {
        match key.as_str() {
            "overlap" => {
                overlap = humantime::parse_duration(value).map_err(|_| {
                    ApiError::bad_request(format!(
                        "overlap '{value}' is not a duration such as 1h, 30m or 0s"
                    ))
                })?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}': use overlap"
                )));
            }
        }
    }
    let (_, until) = admin
        .catalog
        .rotate_token(&id, overlap)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no flow '{id}'")))?;
    let snapshot = admin.catalog.snapshot();
    let url = snapshot
        .flows
        .get(&id)
        .and_then(|entry| admin.catalog.webhook_url(entry));
    json_ok(&json!({
        "flow_id": id,
        "webhook_url": url,
        "previous_expires_at": humantime::format_rfc3339_millis(until).to_string(),
    }))
}
