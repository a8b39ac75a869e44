//! Replay: a new run from a stored request, one run or every run a list's filters select.
//!
//! A replay is accepted like a webhook (stored, then queued) but skips what only a sender's
//! delivery needs: the signature check (the stored request passed it, or carried no
//! credential worth checking again) and dedupe (the request is a duplicate by design). It
//! runs the flow's current version, or with `version=original` the version the run ran,
//! from the flow versions the store keeps.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::runs::{Filters, parse_run_id, request_or_404, run_read_error};
use super::{Admin, Result};
use crate::http::error::{ApiError, ErrorBody};
use crate::store::{NewRun, Run, RunId, RunOrigin, StoreError};

/// How many runs a bulk replay starts unless `max` says otherwise.
const DEFAULT_MAX: usize = 100;
/// The most runs one bulk replay may start.
const MAX_MAX: usize = 1000;

/// Which flow version a replay runs.
#[derive(Clone, Copy)]
enum Version {
    /// The flow's version serving now.
    Current,
    /// The version the replayed run ran.
    Original,
}

fn parse_version(value: Option<&String>) -> Result<Version> {
    match value.map(String::as_str) {
        None | Some("current") => Ok(Version::Current),
        Some("original") => Ok(Version::Original),
        Some(other) => Err(ApiError::bad_request(format!(
            "version must be current or original, not '{other}'"
        ))),
    }
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

/// The version a replay of a run of `flow_id` runs, or why it cannot be replayed.
fn version_for(admin: &Admin, run: &Run, version: Version) -> Result<String> {
    let snapshot = admin.catalog.snapshot();
    let flow = &run.flow_id;
    let entry = snapshot.flows.get(flow).ok_or_else(|| {
        conflict(format!(
            "flow '{flow}' is gone (its file was removed), so run {} cannot be replayed",
            run.id
        ))
    })?;
    let live = entry.live.as_ref().ok_or_else(|| {
        conflict(format!(
            "flow '{flow}' is not serving (its file has errors; fix them first), so run {} \
             cannot be replayed",
            run.id
        ))
    })?;
    match version {
        Version::Current => Ok(live.flow.version.clone()),
        Version::Original => {
            let stored = admin
                .store
                .flow_version(flow, &run.flow_version)
                .map_err(ApiError::internal)?;
            match stored {
                Some(_) => Ok(run.flow_version.clone()),
                None => Err(conflict(format!(
                    "version {} of flow '{flow}' is not stored, so run {} cannot be replayed \
                     on it",
                    run.flow_version, run.id
                ))),
            }
        }
    }
}

/// Accepts and queues the replay of `run` on `version`.
async fn replay(admin: &Admin, run: &Run, version: String) -> Result<RunId> {
    let request = request_or_404(admin, run.id)?;
    let body_size = request.body.len() as u64;
    // Queued in its flow's lane, as the version it runs on orders it.
    let order = match admin.catalog.flow_version(&run.flow_id, &version).await {
        Ok(live) => crate::run::Order::of(&live.flow, &request),
        Err(_) => crate::run::Order::unordered(&run.flow_id),
    };
    let new_run = NewRun {
        flow_id: run.flow_id.clone(),
        flow_version: version,
        request,
        dedupe_key: None,
        dedupe_window: None,
    };
    let origin = RunOrigin {
        replay_of: Some(run.id),
        token: None,
        verify: None,
    };
    let accepted = match admin.store.accept_from(new_run, origin).await {
        Ok(accepted) => accepted,
        Err(StoreError::Overloaded) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many webhooks are waiting to be stored; retry shortly",
            )
            .with_header("retry-after", "1"));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    tracing::info!(flow = %run.flow_id, run = %run.id, replay = %accepted.id, "run replayed");
    admin
        .catalog
        .events()
        .run_accepted(accepted.id, &run.flow_id);
    admin.executor.submit(accepted.id, body_size, order);
    Ok(accepted.id)
}

#[utoipa::path(post, path = "/api/runs/{id}/replay", tag = "runs",
    params(
        ("id" = RunId, Path, description = "The run to replay"),
        ("version" = Option<String>, Query, description = "`current` (default): the flow's \
            version serving now; `original`: the version the run ran"),
    ),
    responses(
        (status = 202, description = "The new run, queued: `{\"run_id\", \"replay_of\", \
            \"flow_version\"}`", body = serde_json::Value),
        (status = 400, description = "Not a run id, or a bad `version`", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run's flow is gone, not serving, or lacks the version \
            asked for", body = ErrorBody),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 503, description = "The store is overloaded; retry", body = ErrorBody),
    ))]
pub(super) async fn replay_run(
    id: String,
    query: HashMap<String, String>,
    admin: Arc<Admin>,
) -> Result<Response> {
    if let Some(other) = query.keys().find(|key| *key != "version") {
        return Err(ApiError::bad_request(format!(
            "unknown parameter '{other}': use version"
        )));
    }
    let version = parse_version(query.get("version"))?;
    let id = parse_run_id(&id)?;
    let run = admin
        .store
        .get_run(id)
        .map_err(run_read_error)?
        .ok_or_else(|| ApiError::not_found(format!("no run '{id}'")))?;
    let flow_version = version_for(&admin, &run, version)?;
    let new = replay(&admin, &run, flow_version.clone()).await?;
    let body = json!({ "run_id": new, "replay_of": id, "flow_version": flow_version });
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
}

#[utoipa::path(post, path = "/api/runs/replay", tag = "runs",
    params(
        ("flow" = Option<String>, Query, description = "Only runs of this flow"),
        ("status" = Option<String>, Query, description = "Only runs with this status"),
        ("since" = Option<String>, Query, description = "Only runs received at or after this \
            time: RFC 3339 UTC, or an age such as `1h`"),
        ("until" = Option<String>, Query, description = "Only runs received at or before this time"),
        ("q" = Option<String>, Query, description = "A JSONPath over the webhook document, as \
            in the list"),
        ("scan_limit" = Option<u32>, Query, description = "With `q`: the most runs tested"),
        ("max" = Option<u32>, Query, minimum = 1, maximum = 1000,
            description = "The most runs replayed (default 100), the newest that match"),
        ("dry_run" = Option<bool>, Query, description = "`true`: only say how many runs (and \
            which) would be replayed"),
        ("version" = Option<String>, Query, description = "`current` (default) or `original`"),
    ),
    responses(
        (status = 200, description = "`{\"count\", \"run_ids\", \"replays\": [{\"of\", \"run_id\"}], \
            \"dry_run\", \"scanned\", \"truncated\"}`; with `dry_run`, `run_ids` are the runs \
            that would be replayed", body = serde_json::Value),
        (status = 400, description = "An unknown parameter or a bad value", body = ErrorBody),
        (status = 409, description = "A matching run's flow is gone or not serving; nothing was \
            replayed", body = ErrorBody),
        (status = 401, description = "A token is set and the request does not carry it", body = ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine", body = ErrorBody),
        (status = 503, description = "The store is overloaded; retry", body = ErrorBody),
    ))]
pub(super) async fn replay_runs(
    query: HashMap<String, String>,
    admin: Arc<Admin>,
) -> Result<Response> {
    let mut max = DEFAULT_MAX;
    let mut dry_run = false;
    let mut version = Version::Current;
    let mut filters = Filters::parse(&query, false, |key, value| {
        match key {
            "max" => {
                max = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_MAX).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("max must be a number from 1 to {MAX_MAX}"))
                    })?
            }
            "dry_run" => {
                dry_run = match value {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "dry_run must be true or false, not '{other}'"
                        )));
                    }
                }
            }
            "version" => version = parse_version(Some(&value.to_owned()))?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    filters.filter.limit = max;
    let search = {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || filters.run(&admin.store))
            .await
            .map_err(|e| ApiError::internal(format!("the read failed: {e}")))??
    };
    if let Some(damaged) = search.page.damaged.first() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "run {} matches but its stored records are damaged ({}); `weir check` lists \
                 every damaged record",
                damaged.id, damaged.error
            ),
        ));
    }
    // Oldest first, as the sender sent them.
    let mut runs = search.page.runs;
    runs.reverse();
    let mut answer = json!({
        "dry_run": dry_run,
        "count": runs.len(),
        "scanned": search.scanned,
        "truncated": search.truncated,
    });
    if dry_run {
        answer["run_ids"] = json!(runs.iter().map(|run| run.id).collect::<Vec<_>>());
        return Ok(warp::reply::json(&answer).into_response());
    }
    // Every flow is checked before anything starts, so a refusal replays nothing.
    let flows: BTreeSet<&str> = runs.iter().map(|run| run.flow_id.as_str()).collect();
    let mut versions = HashMap::new();
    for run in &runs {
        let key = (run.flow_id.as_str(), run.flow_version.as_str());
        if let std::collections::hash_map::Entry::Vacant(slot) = versions.entry(key) {
            slot.insert(version_for(&admin, run, version)?);
        }
    }
    tracing::info!(runs = runs.len(), flows = flows.len(), "bulk replay");
    let mut replays = Vec::with_capacity(runs.len());
    for run in &runs {
        let flow_version = versions[&(run.flow_id.as_str(), run.flow_version.as_str())].clone();
        let new = replay(&admin, run, flow_version).await?;
        replays.push((run.id, new));
    }
    answer["run_ids"] = json!(replays.iter().map(|(_, new)| new).collect::<Vec<_>>());
    answer["replays"] = json!(
        replays
            .iter()
            .map(|(of, new)| json!({ "of": of, "run_id": new }))
            .collect::<Vec<_>>()
    );
    Ok(warp::reply::json(&answer).into_response())
}
