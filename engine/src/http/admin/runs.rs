//! Runs: the list, one run with its steps, and its payload.

use std::sync::Arc;

use serde_json::{Value, json};
use warp::reply::Response;

use super::{Admin, Result, harden, json_ok};
use crate::http::error::{ApiError, ErrorBody};
use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;

use crate::run::payload::{form_to_json, headers_to_json};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::{RawRequest, Run, RunFilter, RunId, RunStatus, Search, StepRecord, StoreError};

/// A run id in its canonical form (26 upper-case Crockford base32 characters): other
/// spellings that decode (lower case, or an overflowing first character that wraps to
/// another run's id) are refused rather than mapped to some run.
pub(super) fn parse_run_id(id: &str) -> Result<RunId> {
    id.parse::<RunId>()
        .ok()
        .filter(|run| run.to_string() == id)
        .ok_or_else(|| ApiError::bad_request(format!("'{id}' is not a run id")))
}

/// The most runs a `q` search reads per request unless `scan_limit` says otherwise.
pub(super) const DEFAULT_SCAN_LIMIT: u64 = 10_000;
/// The most runs a `q` search may be asked to read per request.
pub(super) const MAX_SCAN_LIMIT: u64 = 100_000;

/// A list's filters, as the list and bulk replay read them from the query string.
pub(super) struct Filters {
    pub filter: RunFilter,
    /// A JSONPath over `{"webhook": …}`, the run context's webhook document: a run matches
    /// when it selects something.
    pub q: Option<crate::flow::Query>,
    pub scan_limit: u64,
}

impl Filters {
    /// Reads `flow`, `status`, `since`, `until`, `q`, `scan_limit`, and `limit` and `cursor`
    /// when `paged`; any other key is handed to `other`, which refuses it by answering false.
    pub(super) fn parse(
        query: &HashMap<String, String>,
        paged: bool,
        mut other: impl FnMut(&str, &str) -> Result<bool>,
    ) -> Result<Filters> {
        let mut filters = Filters {
            filter: RunFilter::default(),
            q: None,
            scan_limit: DEFAULT_SCAN_LIMIT,
        };
        let now = SystemTime::now();
        for (key, value) in query {
            let filter = &mut filters.filter;
            match key.as_str() {
                "flow" => filter.flow = Some(value.clone()),
                "status" => filter.status = Some(value.parse::<RunStatus>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "status '{value}' is not one of queued, running, retrying, succeeded, failed, filtered"
                    ))
                })?),
                "since" => filter.since_ms = Some(parse_time("since", value, now)?),
                "until" => filter.until_ms = Some(parse_time("until", value, now)?),
                "q" => {
                    filters.q = Some(crate::flow::Query::parse(value).map_err(|e| {
                        ApiError::bad_request(format!("q is not a JSONPath query: {e}"))
                    })?)
                }
                "scan_limit" => {
                    filters.scan_limit = value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| (1..=MAX_SCAN_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "scan_limit must be a number from 1 to {MAX_SCAN_LIMIT}"
                            ))
                        })?
                }
                "limit" if paged => {
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
                "cursor" if paged => filter.cursor = Some(parse_run_id(value)?),
                other_key => {
                    if !other(other_key, value)? {
                        let known = if paged {
                            "flow, status, since, until, q, scan_limit, limit, cursor"
                        } else {
                            "flow, status, since, until, q, scan_limit, max, dry_run"
                        };
                        return Err(ApiError::bad_request(format!(
                            "unknown parameter '{other_key}': use {known}"
                        )));
                    }
                }
            }
        }
        if let (Some(since), Some(until)) = (filters.filter.since_ms, filters.filter.until_ms)
            && since > until
        {
            return Err(ApiError::bad_request("since is later than until"));
        }
        Ok(filters)
    }

    /// The page the filters select: by the indexes alone, or with `q`, by reading and testing
    /// at most `scan_limit` runs' requests. Answers the page, how many runs were tested and
    /// whether the limit stopped the scan.
    pub(super) fn run(&self, store: &crate::store::Store) -> Result<Search> {
        match &self.q {
            None => Ok(Search {
                page: store.list_runs(&self.filter).map_err(ApiError::internal)?,
                scanned: 0,
                truncated: false,
            }),
            Some(q) => {
                // `$.webhook.body[?@.action=='opened']` asks whether the body matches. In RFC
                // 9535 a filter tests an object's member values, never the object, so a
                // filter right on an object body tests the body itself, as Goessner's and
                // Jayway's JSONPath do: the body is seen as a one-element array.
                let on_body = q.as_str().starts_with("$.webhook.body[?");
                let mut test = |id: RunId, request: RawRequest| {
                    let mut webhook =
                        crate::run::payload::webhook_document(&id.to_string(), &request);
                    if on_body && webhook["body"].is_object() {
                        let body = webhook["body"].take();
                        webhook["body"] = Value::Array(vec![body]);
                    }
                    let document = json!({ "webhook": webhook });
                    !q.select(&document).is_empty()
                };
                store
                    .search_runs(&self.filter, self.scan_limit, &mut test)
                    .map_err(ApiError::internal)
            }
        }
    }
}

/// A time given as RFC 3339 in UTC (`2026-03-21T10:04:05Z`) or as an age before now (`90s`,
/// `1h`, `7d`), in milliseconds since the Unix epoch.
fn parse_time(name: &str, value: &str, now: SystemTime) -> Result<u64> {
    let time = humantime::parse_rfc3339_weak(value).ok().or_else(|| {
        humantime::parse_duration(value)
            .ok()
            .map(|age| now.checked_sub(age).unwrap_or(UNIX_EPOCH))
    });
    let time = time.ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name} '{value}' is neither an RFC 3339 UTC time (2026-03-21T10:04:05Z) nor an age \
             such as 1h or 7d"
        ))
    })?;
    Ok(time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

#[utoipa::path(get, path = "/api/runs", tag = "runs",
    params(
        ("flow" = Option<String>, Query, description = "Only runs of this flow"),
        ("status" = Option<RunStatus>, Query, description = "Only runs with this status"),
        ("since" = Option<String>, Query, description = "Only runs received at or after this \
            time: RFC 3339 UTC, or an age such as `1h` or `7d`"),
        ("until" = Option<String>, Query, description = "Only runs received at or before this \
            time: RFC 3339 UTC, or an age such as `1h` or `7d`"),
        ("q" = Option<String>, Query, description = "A JSONPath over the run context's webhook \
            document, e.g. `$.webhook.body[?@.action=='opened']`: only runs where it selects \
            something. Reads each run's request, so at most `scan_limit` runs are tested"),
        ("scan_limit" = Option<u32>, Query, minimum = 1, maximum = 100000,
            description = "With `q`: the most runs tested in this request (default 10000)"),
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
pub(super) fn list_runs(query: HashMap<String, String>, admin: Arc<Admin>) -> Result<Response> {
    let filters = Filters::parse(&query, true, |_, _| Ok(false))?;
    let Search {
        page,
        scanned,
        truncated,
    } = filters.run(&admin.store)?;
    // A run whose records cannot be read is a row of its own, so the rest of the page serves.
    let mut runs: Vec<RunRow> = page
        .runs
        .into_iter()
        .map(|run| RunRow::Run(Box::new(run)))
        .chain(page.damaged.into_iter().map(|damaged| {
            RunRow::Damaged(DamagedRow {
                id: damaged.id,
                status: "damaged".into(),
                error: damaged.error,
            })
        }))
        .collect();
    runs.sort_by_key(|row| std::cmp::Reverse(row.id()));
    let searched = filters.q.is_some();
    let page = RunsPage {
        runs,
        next_cursor: page.next_cursor,
        scanned: searched.then_some(scanned),
        truncated: searched.then_some(truncated),
    };
    json_ok(&serde_json::to_value(page).map_err(ApiError::internal)?)
}

/// `GET /api/runs`: a page of runs, newest first.
#[derive(Serialize, ToSchema)]
pub struct RunsPage {
    runs: Vec<RunRow>,
    /// Pass as `cursor` for the next page; `null` when this page is the last.
    next_cursor: Option<RunId>,
    /// With `q`: how many runs were read and tested for this page.
    #[serde(skip_serializing_if = "Option::is_none")]
    scanned: Option<u64>,
    /// With `q`: true when `scan_limit` stopped the scan before the page was full;
    /// `next_cursor` then goes on after the last run tested.
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<bool>,
}

/// A row of [`RunsPage`]: a run, or a run whose stored records cannot be read.
// Damaged rows are rare and a page holds at most 1,000 rows: boxing the common one would cost
// an allocation per row to save memory that is not short.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum RunRow {
    Run(Box<Run>),
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
pub(super) fn run_read_error(e: StoreError) -> ApiError {
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

pub(super) fn request_or_404(admin: &Admin, id: RunId) -> Result<RawRequest> {
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
pub(super) fn get_run(id: String, admin: Arc<Admin>) -> Result<Response> {
    let id = parse_run_id(&id)?;
    let run = admin
        .store
        .get_run(id)
        .map_err(run_read_error)?
        .ok_or_else(|| ApiError::not_found(format!("no run '{id}'")))?;
    let request = request_or_404(&admin, id)?;
    let steps = admin.store.get_steps(id).map_err(run_read_error)?;
    let replays = admin.store.replays_of(id).map_err(ApiError::internal)?;
    let webhook = crate::run::payload::webhook_document_for(&run, &request);
    let redeliveries = admin.store.redeliveries(id).map_err(run_read_error)?;
    json_ok(
        &serde_json::to_value(RunDetail {
            run,
            replays,
            webhook: WebhookStep {
                step_id: "webhook".into(),
                output: webhook,
            },
            steps,
            redeliveries,
        })
        .map_err(ApiError::internal)?,
    )
}

/// `GET /api/runs/{id}`.
#[derive(Serialize, ToSchema)]
pub struct RunDetail {
    run: Run,
    /// The runs that replay this one, oldest first.
    replays: Vec<RunId>,
    /// The flow's first step.
    webhook: WebhookStep,
    /// Every other step's record, in flow order.
    steps: Vec<StepRecord>,
    /// Redeliveries of its webhook (same dedupe value) answered with this run.
    redeliveries: u64,
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
pub(super) fn get_payload(
    id: String,
    query: HashMap<String, String>,
    admin: Arc<Admin>,
) -> Result<Response> {
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
