//! The admin API: JSON under `/api`, on its own listener.
//!
//! - `GET /api/health`
//! - `GET /api/flows`, `GET /api/flows/{id}`
//! - `GET /api/runs?flow=&status=&limit=&cursor=` (newest first; `next_cursor` pages on)
//! - `GET /api/runs/{id}`: the run, its webhook step and every step's record
//! - `GET /api/runs/{id}/payload` (`?raw=true` for the exact bytes)
//! - `GET /api/events`: server-sent events of runs and flows (see `super::ui`)
//! - `GET /metrics`: Prometheus metrics (see [`crate::metrics`])
//! - `GET /api/openapi.json`: the OpenAPI 3.1 document of these routes (see `super::openapi`)
//!
//! When a token is configured, every request needs `Authorization: Bearer <token>`. Without
//! one, the API answers only requests whose `Host` is this machine (a loopback name or
//! address) or one of [`Admin::hosts`]: a web page that points a name of its own at 127.0.0.1
//! (DNS rebinding) gets 421, not the flows. Every answer carries `nosniff`, and stored payloads
//! are served as attachments in a sandbox: they are data from senders, never active content on
//! this origin.
//! The web UI's static files (`super::ui`) carry no data and are served without the token (but
//! with the same `Host` check).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::error::{ApiError, ErrorBody};
use crate::catalog::{Catalog, FlowEntry};
use crate::flow::Respond;
use crate::run::Executor;
use crate::run::payload::{form_to_json, headers_to_json};
use crate::store::{RawRequest, Run, RunFilter, RunId, RunStatus, StepRecord, Store, StoreError};

/// What the admin API needs.
pub struct Admin {
    pub catalog: Catalog,
    pub store: Store,
    pub executor: Executor,
    /// Required as a bearer token when set.
    pub token: Option<String>,
    /// Without a token, the `Host` names (lower-case, without port) accepted besides loopback.
    pub hosts: Vec<String>,
    /// What `/metrics` serves (the executor records into the same).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The store's file, whose length `/metrics` reports.
    pub store_file: std::path::PathBuf,
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
    let origin = warp::host::optional()
        .and(with.clone())
        .and_then(
            |authority: Option<warp::http::uri::Authority>, admin: Arc<Admin>| async move {
                match authority {
                    Some(authority)
                        if admin.token.is_none()
                            && !host_allowed(authority.host(), &admin.hosts) =>
                    {
                        Err(warp::reject::custom(Misdirected(
                            authority.host().to_owned(),
                        )))
                    }
                    _ => Ok(()),
                }
            },
        )
        .untuple_one();
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
        .then(|admin| blocking(move || list_flows(admin)));
    let flow = warp::path!("api" / "flows" / String)
        .and(with.clone())
        .then(|id, admin| blocking(move || get_flow(id, admin)));
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
    let events = super::ui::events(admin.catalog.events().clone()).map(Ok);
    let metrics = warp::path!("metrics")
        .and(with.clone())
        .then(|admin| blocking(move || metrics(admin)));
    let openapi = warp::path!("api" / "openapi.json").map(openapi);

    let api = warp::get()
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
                .unify()
                .or(events)
                .unify()
                .or(metrics)
                .unify()
                .or(openapi)
                .unify(),
        )
        .map(|result: Result<Response>| match result {
            Ok(response) => response,
            Err(error) => error.into_response(),
        });
    // The Host check guards the UI's files as well as the API: both are this origin.
    origin
        .and(super::ui::routes().or(api).unify())
        .recover(recover_unauthorized)
        .unify()
}

#[derive(Debug)]
struct Unauthorized(String);
impl warp::reject::Reject for Unauthorized {}

/// A request for a `Host` this API does not answer to without a token.
#[derive(Debug)]
struct Misdirected(String);
impl warp::reject::Reject for Misdirected {}

async fn recover_unauthorized(
    rejection: warp::Rejection,
) -> std::result::Result<Response, warp::Rejection> {
    if let Some(Misdirected(host)) = rejection.find::<Misdirected>() {
        return Ok(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this admin API has no token, so it answers only to localhost, 127.0.0.1 or [::1] \
                 (and to the names given with --admin-host), not to '{host}'"
            ),
        )
        .into_response());
    }
    match rejection.find::<Unauthorized>() {
        Some(Unauthorized(message)) => Ok(ApiError::new(StatusCode::UNAUTHORIZED, message.clone())
            .with_header("www-authenticate", "Bearer")
            .into_response()),
        None => Err(rejection),
    }
}

/// Whether `host` (a URI host: a name, an IPv4 address or a bracketed IPv6 address) names
/// this machine, or is one of `extra`.
fn host_allowed(host: &str, extra: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || extra.contains(&host) {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// What every admin answer carries: the browser never guesses a type from the bytes (the UI
/// shares this origin, and stored payloads are served from it).
pub fn harden(mut response: Response) -> Response {
    response.headers_mut().insert(
        "x-content-type-options",
        warp::http::HeaderValue::from_static("nosniff"),
    );
    response
}

fn check_token(admin: &Admin, header: Option<&str>) -> Result<()> {
    let Some(expected) = &admin.token else {
        return Ok(());
    };
    // The scheme name is case-insensitive and followed by one or more spaces (RFC 7235).
    let given = header
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim_start_matches(' '));
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

/// The server's state: flows loaded, runs waiting, the store's writer.
#[utoipa::path(get, path = "/api/health", tag = "server",
    responses(
        (status = 200, description = "Version, flows, runs in the queue, the store's writer, \
            senders waiting for results", body = serde_json::Value),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
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
fn metrics(admin: Arc<Admin>) -> Result<Response> {
    let live = admin.store.queue_len().map_err(ApiError::internal)?;
    let executing = admin.executor.executing() as u64;
    let oldest = admin.store.oldest_queued().map_err(ApiError::internal)?;
    let sample = crate::metrics::Sample {
        queued: live.saturating_sub(executing),
        executing,
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
fn openapi() -> Result<Response> {
    json_ok(&super::openapi::document())
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
        })).collect::<Vec<_>>()),
    })
}

/// The most runs read to count a flow's runs of the last 24 hours; past it the count says so.
const RECENT_RUNS_READ: usize = RunFilter::MAX_LIMIT;

/// Adds the flow's activity to its JSON: `last_run` (id, status, received_at) and `runs_24h`
/// (capped at [`RECENT_RUNS_READ`], with `runs_24h_capped`). Reads run summaries only, never
/// a payload.
fn add_activity(admin: &Admin, id: &str, flow: &mut Value) -> Result<()> {
    let page = admin
        .store
        .list_runs(&RunFilter {
            flow: Some(id.to_owned()),
            limit: RECENT_RUNS_READ,
            ..RunFilter::default()
        })
        .map_err(ApiError::internal)?;
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
    let recent = page
        .runs
        .iter()
        .take_while(|run| run.id.timestamp() >= since)
        .count();
    flow["runs_24h"] = json!(recent);
    flow["runs_24h_capped"] = json!(recent == page.runs.len() && page.next_cursor.is_some());
    flow["last_run"] = json!(page.runs.first().map(|run| json!({
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
fn list_flows(admin: Arc<Admin>) -> Result<Response> {
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
fn get_flow(id: String, admin: Arc<Admin>) -> Result<Response> {
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

/// Where the flow's `verify` scheme carries its credential: header names and query parameter
/// names whose values the UI shows as `•••`. Signatures are not secrets and stay.
fn credential_places(admin: &Admin, flow_id: &str) -> (Vec<String>, Vec<String>) {
    use crate::verify::{TokenPlace, Verify};
    let snapshot = admin.catalog.snapshot();
    let verify = snapshot
        .flows
        .get(flow_id)
        .and_then(|e| e.live.as_ref())
        .and_then(|l| l.flow.webhook.verify.as_ref());
    match verify {
        Some(Verify::Basic { .. })
        | Some(Verify::Token {
            place: TokenPlace::Bearer,
            ..
        }) => (vec!["authorization".into()], Vec::new()),
        Some(Verify::Token {
            place: TokenPlace::Header(name),
            ..
        }) => (vec![name.clone()], Vec::new()),
        Some(Verify::Token {
            place: TokenPlace::Query(name),
            ..
        }) => (Vec::new(), vec![name.clone()]),
        _ => (Vec::new(), Vec::new()),
    }
}

/// A run id in its canonical form (26 upper-case Crockford base32 characters): other
/// spellings that decode (lower case, or an overflowing first character that wraps to
/// another run's id) are refused rather than mapped to some run.
fn parse_run_id(id: &str) -> Result<RunId> {
    id.parse::<RunId>()
        .ok()
        .filter(|run| run.to_string() == id)
        .ok_or_else(|| ApiError::bad_request(format!("'{id}' is not a run id")))
}

#[utoipa::path(get, path = "/api/runs", tag = "runs",
    params(
        ("flow" = Option<String>, Query, description = "Only runs of this flow"),
        ("status" = Option<RunStatus>, Query, description = "Only runs with this status"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
            description = "Runs per page (default 50)"),
        ("cursor" = Option<RunId>, Query, description = "A page's `next_cursor`: runs older than it"),
    ),
    responses(
        (status = 200, description = "A page of runs, newest first", body = RunsPage),
        (status = 400, description = "An unknown parameter or a bad value", body = ErrorBody),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
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
    // A run whose records cannot be read is a row of its own, so the rest of the page serves.
    let mut runs: Vec<RunRow> = page
        .runs
        .into_iter()
        .map(RunRow::Run)
        .chain(page.damaged.into_iter().map(|damaged| {
            RunRow::Damaged(DamagedRow {
                id: damaged.id,
                status: "damaged".into(),
                error: damaged.error,
            })
        }))
        .collect();
    runs.sort_by_key(|row| std::cmp::Reverse(row.id()));
    let page = RunsPage {
        runs,
        next_cursor: page.next_cursor,
    };
    json_ok(&serde_json::to_value(page).map_err(ApiError::internal)?)
}

/// `GET /api/runs`: a page of runs, newest first.
#[derive(Serialize, ToSchema)]
pub struct RunsPage {
    runs: Vec<RunRow>,
    /// Pass as `cursor` for the next page; `null` when this page is the last.
    next_cursor: Option<RunId>,
}

/// A row of [`RunsPage`]: a run, or a run whose stored records cannot be read.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum RunRow {
    Run(Run),
    Damaged(DamagedRow),
}

impl RunRow {
    fn id(&self) -> RunId {
        match self {
            RunRow::Run(run) => run.id,
            RunRow::Damaged(damaged) => damaged.id,
        }
    }
}

/// A run whose stored records cannot be read (`weir check` tells more).
#[derive(Serialize, ToSchema)]
pub struct DamagedRow {
    id: RunId,
    /// Always `damaged`.
    status: String,
    /// What is wrong with it.
    error: String,
}

/// A store error of one run's records: a damaged record says so (an admin can act on it);
/// anything else is an internal error.
fn run_read_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Corrupt(message) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "this run's stored records are damaged ({message}); `weir check` lists every damaged record"
            ),
        ),
        other => ApiError::internal(other),
    }
}

fn request_or_404(admin: &Admin, id: RunId) -> Result<RawRequest> {
    admin
        .store
        .get_request(id)
        .map_err(run_read_error)?
        .ok_or_else(|| ApiError::not_found(format!("no run '{id}'")))
}

#[utoipa::path(get, path = "/api/runs/{id}", tag = "runs",
    params(("id" = RunId, Path, description = "The run id")),
    responses(
        (status = 200, description = "The run, its webhook step and every step's record",
            body = RunDetail),
        (status = 400, description = "Not a run id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
fn get_run(id: String, admin: Arc<Admin>) -> Result<Response> {
    let id = parse_run_id(&id)?;
    let run = admin
        .store
        .get_run(id)
        .map_err(run_read_error)?
        .ok_or_else(|| ApiError::not_found(format!("no run '{id}'")))?;
    let request = request_or_404(&admin, id)?;
    let steps = admin.store.get_steps(id).map_err(run_read_error)?;
    let webhook = crate::run::payload::webhook_document_for(&run, &request);
    json_ok(
        &serde_json::to_value(RunDetail {
            run,
            webhook: WebhookStep {
                step_id: "webhook".into(),
                output: webhook,
            },
            steps,
        })
        .map_err(ApiError::internal)?,
    )
}

/// `GET /api/runs/{id}`.
#[derive(Serialize, ToSchema)]
pub struct RunDetail {
    run: Run,
    /// The flow's first step.
    webhook: WebhookStep,
    /// Every other step's record, in flow order.
    steps: Vec<StepRecord>,
}

/// The webhook step of a run.
#[derive(Serialize, ToSchema)]
pub struct WebhookStep {
    /// Always `webhook`.
    step_id: String,
    /// The run context's `$.webhook`: method, path, query, headers, body, received_at, run_id.
    output: Value,
}

#[utoipa::path(get, path = "/api/runs/{id}/payload", tag = "runs",
    params(
        ("id" = RunId, Path, description = "The run id"),
        ("raw" = Option<bool>, Query, description = "`true`: the exact bytes received, as an \
            attachment under the sender's content type"),
    ),
    responses(
        (status = 200, description = "The request: method, headers, query and the body decoded \
            (or with `raw=true`, the body's bytes)", content(
            (serde_json::Value = "application/json"),
            (Vec<u8> = "application/octet-stream"),
        )),
        (status = 400, description = "Not a run id, or `raw` is not true or false", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    ))]
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
        // The sender's bytes under the sender's type, but never rendered on this origin: a
        // download (attachment), no type sniffing (`harden`), and a sandbox without scripts
        // should a browser display it anyway.
        let mut response = Response::new(request.body.into());
        let value = content_type.unwrap_or_else(|| "application/octet-stream".into());
        let headers = response.headers_mut();
        let value = warp::http::HeaderValue::from_str(&value)
            .unwrap_or_else(|_| warp::http::HeaderValue::from_static("application/octet-stream"));
        headers.insert("content-type", value);
        if let Ok(value) =
            warp::http::HeaderValue::from_str(&format!("attachment; filename=\"{id}.bin\""))
        {
            headers.insert("content-disposition", value);
        }
        headers.insert(
            "content-security-policy",
            warp::http::HeaderValue::from_static("sandbox; default-src 'none'"),
        );
        return Ok(harden(response));
    }
    let body = crate::run::payload::request_body_decoded(&request);
    let encoding = body.encoding();
    let flow_id = admin
        .store
        .get_run(id)
        .map_err(ApiError::internal)?
        .map(|run| run.flow_id);
    let (secret_headers, secret_query) = flow_id
        .as_deref()
        .map(|flow| credential_places(&admin, flow))
        .unwrap_or_default();
    json_ok(&json!({
        "flow_id": flow_id,
        "secret_headers": secret_headers,
        "secret_query": secret_query,
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
