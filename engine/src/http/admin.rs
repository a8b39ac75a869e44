//! The admin API: JSON under `/api`, on its own listener.
//!
//! - `GET /api/health`
//! - `GET /api/flows`, `GET /api/flows/{id}`
//! - `GET /api/runs?flow=&status=&limit=&cursor=` (newest first; `next_cursor` pages on)
//! - `GET /api/runs/{id}`: the run, its webhook step and every step's record
//! - `GET /api/runs/{id}/payload` (`?raw=true` for the exact bytes)
//!
//! When a token is configured, every request needs `Authorization: Bearer <token>`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::error::ApiError;
use crate::catalog::{Catalog, FlowEntry};
use crate::flow::Respond;
use crate::run::Executor;
use crate::run::payload::{Body, form_to_json, headers_to_json};
use crate::store::{RawRequest, RunFilter, RunId, RunStatus, Store};

/// What the admin API needs.
pub struct Admin {
    pub catalog: Catalog,
    pub store: Store,
    pub executor: Executor,
    /// Required as a bearer token when set.
    pub token: Option<String>,
}

type Result<T> = std::result::Result<T, ApiError>;

/// The admin routes.
pub fn routes(
    admin: Arc<Admin>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with = {
        let admin = admin.clone();
        warp::any().map(move || admin.clone())
    };
    let auth = warp::header::optional::<String>("authorization")
        .and(with.clone())
        .and_then(|header: Option<String>, admin: Arc<Admin>| async move {
            match check_token(&admin, header.as_deref()) {
                Ok(()) => Ok(()),
                Err(e) => Err(warp::reject::custom(Unauthorized(e.message))),
            }
        })
        .untuple_one();

    let health = warp::path!("api" / "health").and(with.clone()).map(health);
    let flows = warp::path!("api" / "flows")
        .and(with.clone())
        .map(list_flows);
    let flow = warp::path!("api" / "flows" / String)
        .and(with.clone())
        .map(get_flow);
    let runs = warp::path!("api" / "runs")
        .and(warp::query::<HashMap<String, String>>())
        .and(with.clone())
        .then(|query, admin| blocking(move || list_runs(query, admin)));
    let run = warp::path!("api" / "runs" / String)
        .and(with.clone())
        .then(|id, admin| blocking(move || get_run(id, admin)));
    let payload = warp::path!("api" / "runs" / String / "payload")
        .and(warp::query::<HashMap<String, String>>())
        .and(with.clone())
        .then(|id, query, admin| blocking(move || get_payload(id, query, admin)));

    warp::get()
        .and(auth)
        .and(
            health
                .or(flows)
                .unify()
                .or(flow)
                .unify()
                .or(runs)
                .unify()
                .or(run)
                .unify()
                .or(payload)
                .unify(),
        )
        .map(|result: Result<Response>| match result {
            Ok(response) => response,
            Err(error) => error.into_response(),
        })
        .recover(recover_unauthorized)
        .unify()
}

#[derive(Debug)]
struct Unauthorized(String);
impl warp::reject::Reject for Unauthorized {}

async fn recover_unauthorized(
    rejection: warp::Rejection,
) -> std::result::Result<Response, warp::Rejection> {
    match rejection.find::<Unauthorized>() {
        Some(Unauthorized(message)) => Ok(ApiError::new(StatusCode::UNAUTHORIZED, message.clone())
            .with_header("www-authenticate", "Bearer")
            .into_response()),
        None => Err(rejection),
    }
}

fn check_token(admin: &Admin, header: Option<&str>) -> Result<()> {
    let Some(expected) = &admin.token else {
        return Ok(());
    };
    let given = header.and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid admin token is required (Authorization: Bearer …)",
        ))
    }
}

/// Runs a handler that reads the store on tokio's blocking pool. Reads are synchronous redb
/// transactions, and a page of 500 runs or a large body would otherwise hold a runtime worker
/// that also answers webhooks.
async fn blocking(handler: impl FnOnce() -> Result<Response> + Send + 'static) -> Result<Response> {
    tokio::task::spawn_blocking(handler)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("the read failed: {e}"))))
}

fn json_ok(value: &Value) -> Result<Response> {
    Ok(warp::reply::json(value).into_response())
}

fn health(admin: Arc<Admin>) -> Result<Response> {
    let snapshot = admin.catalog.snapshot();
    let queued = admin.store.queue_len().map_err(ApiError::internal)?;
    json_ok(&json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "flows": snapshot.flows.len(),
        "flows_with_errors": snapshot.flows.values().filter(|e| !e.errors.is_empty()).count(),
        "runs_in_queue": queued,
        "store": admin.store.stats(),
        "senders_waiting_for_results": admin.executor.wait_stats(),
    }))
}

fn flow_json(catalog: &Catalog, entry: &FlowEntry) -> Value {
    let live = entry.live.as_ref().map(|l| &l.flow);
    json!({
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
        "dedupe": live.and_then(|f| f.webhook.dedupe.as_ref().map(|q| q.as_str().to_owned())),
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
            "when": s.when.as_ref().map(|q| q.as_str().to_owned()),
            "config": s.redacted_config(),
        })).collect::<Vec<_>>()),
    })
}

fn list_flows(admin: Arc<Admin>) -> Result<Response> {
    let snapshot = admin.catalog.snapshot();
    let flows: Vec<Value> = snapshot
        .flows
        .values()
        .map(|e| flow_json(&admin.catalog, e))
        .collect();
    json_ok(&json!({ "flows": flows }))
}

fn get_flow(id: String, admin: Arc<Admin>) -> Result<Response> {
    let snapshot = admin.catalog.snapshot();
    let entry = snapshot
        .flows
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no flow '{id}'")))?;
    json_ok(&flow_json(&admin.catalog, entry))
}

fn parse_run_id(id: &str) -> Result<RunId> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("'{id}' is not a run id")))
}

fn list_runs(query: HashMap<String, String>, admin: Arc<Admin>) -> Result<Response> {
    let mut filter = RunFilter::default();
    for (key, value) in &query {
        match key.as_str() {
            "flow" => filter.flow = Some(value.clone()),
            "status" => filter.status = Some(value.parse::<RunStatus>().map_err(|_| {
                ApiError::bad_request(format!(
                    "status '{value}' is not one of queued, running, succeeded, failed, filtered"
                ))
            })?),
            "limit" => {
                filter.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=RunFilter::MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit must be a number from 1 to {}",
                            RunFilter::MAX_LIMIT
                        ))
                    })?
            }
            "cursor" => filter.cursor = Some(parse_run_id(value)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}': use flow, status, limit, cursor"
                )));
            }
        }
    }
    let page = admin.store.list_runs(&filter).map_err(ApiError::internal)?;
    json_ok(&json!({ "runs": page.runs, "next_cursor": page.next_cursor }))
}

fn request_or_404(admin: &Admin, id: RunId) -> Result<RawRequest> {
    admin
        .store
        .get_request(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no run '{id}'")))
}

fn get_run(id: String, admin: Arc<Admin>) -> Result<Response> {
    let id = parse_run_id(&id)?;
    let run = admin
        .store
        .get_run(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no run '{id}'")))?;
    let request = request_or_404(&admin, id)?;
    let steps = admin.store.get_steps(id).map_err(ApiError::internal)?;
    let webhook = crate::run::payload::webhook_document_for(&run, &request);
    json_ok(&json!({
        "run": run,
        "webhook": { "step_id": "webhook", "output": webhook },
        "steps": steps,
    }))
}

fn get_payload(id: String, query: HashMap<String, String>, admin: Arc<Admin>) -> Result<Response> {
    let id = parse_run_id(&id)?;
    let request = request_or_404(&admin, id)?;
    let content_type = request.header("content-type").map(str::to_owned);
    let raw = match query.get("raw").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "raw must be true or false, not '{other}'"
            )));
        }
    };
    if raw {
        let mut response = Response::new(request.body.into());
        let value = content_type.unwrap_or_else(|| "application/octet-stream".into());
        if let Ok(value) = warp::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert("content-type", value);
        }
        return Ok(response);
    }
    let body = Body::decode(content_type.as_deref(), &request.body);
    let encoding = body.encoding();
    json_ok(&json!({
        "run_id": id.to_string(),
        "method": request.method,
        "path": request.path,
        "query": form_to_json(request.query.as_bytes()),
        "headers": headers_to_json(&request.headers),
        "content_type": content_type,
        "size": request.body.len(),
        "body_encoding": encoding,
        "body": body.into_value(),
        "received_at": humantime::format_rfc3339_millis(request.received_at).to_string(),
        "remote_addr": request.remote_addr,
    }))
}
