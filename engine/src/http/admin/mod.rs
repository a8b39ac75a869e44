//! The admin API: JSON under `/api`, on its own listener.
//!
//! - `GET /api/health`
//! - `GET /api/flows`, `GET /api/flows/{id}`
//! - `GET /api/runs?flow=&status=&since=&until=&q=&limit=&cursor=` (newest first;
//!   `next_cursor` pages on)
//! - `GET /api/runs/{id}`: the run, its webhook step and every step's record
//! - `GET /api/runs/{id}/payload` (`?raw=true` for the exact bytes)
//! - `GET /api/flows/{id}/stats`: counts and durations over the last hour and day
//! - `POST /api/runs/{id}/replay`, `POST /api/runs/replay?flow=&status=&since=&max=&dry_run=`
//! - `POST /api/flows/{id}/rotate-token?overlap=24h`
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

use serde_json::Value;
use subtle::ConstantTimeEq;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::error::ApiError;
use crate::catalog::Catalog;
use crate::run::Executor;
use crate::store::Store;

pub(super) mod flows;
pub(super) mod replay;
pub(super) mod runs;
pub(super) mod server;

use flows::{flow_stats, get_flow, list_flows, list_rejections, rotate_token};
use replay::{replay_run, replay_runs};
use runs::{get_payload, get_run, list_runs};
use server::{health, metrics, openapi};

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

pub(super) type Result<T> = std::result::Result<T, ApiError>;

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
    let rejections = warp::path!("api" / "flows" / String / "rejections")
        .and(warp::query::<HashMap<String, String>>())
        .and(with.clone())
        .then(|id, query, admin| blocking(move || list_rejections(id, query, admin)));
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
    let stats = warp::path!("api" / "flows" / String / "stats")
        .and(with.clone())
        .then(|id, admin| blocking(move || flow_stats(id, admin)));
    let events = super::ui::events(admin.catalog.events().clone()).map(Ok);
    let metrics = warp::path!("metrics")
        .and(with.clone())
        .then(|admin| blocking(move || metrics(admin)));
    let openapi = warp::path!("api" / "openapi.json").map(openapi);

    let api = warp::get()
        .and(auth.clone())
        .and(
            health
                .or(flows)
                .unify()
                .or(flow)
                .unify()
                .or(rejections)
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
                .unify()
                .or(stats)
                .unify(),
        )
        .map(|result: Result<Response>| match result {
            Ok(response) => response,
            Err(error) => error.into_response(),
        });
    // Each POST route checks its path before its method, so that other paths keep their own
    // rejection (a 404, a bad header) rather than a 405 from here.
    let post_method = warp::post().and(auth.clone());
    let replay_many = warp::path!("api" / "runs" / "replay")
        .and(post_method.clone())
        .and(warp::query::<HashMap<String, String>>())
        .and(with.clone())
        .then(|query, admin| async move { replay_runs(query, admin).await });
    let replay_one = warp::path!("api" / "runs" / String / "replay")
        .and(post_method.clone())
        .and(warp::query::<HashMap<String, String>>())
        .and(with.clone())
        .then(|id, query, admin| async move { replay_run(id, query, admin).await });
    let rotate = warp::path!("api" / "flows" / String / "rotate-token")
        .and(post_method)
        .and(warp::query::<HashMap<String, String>>())
        .and(with.clone())
        .then(|id, query, admin| async move { rotate_token(id, query, admin).await });
    let post =
        replay_many
            .or(replay_one)
            .unify()
            .or(rotate)
            .unify()
            .map(|result: Result<Response>| match result {
                Ok(response) => response,
                Err(error) => error.into_response(),
            });
    // Another method on a POST route: 405 naming POST (the catch-all answer names GET).
    let post_only = warp::path!("api" / "runs" / "replay")
        .map(|| ())
        .or(warp::path!("api" / "runs" / String / "replay").map(|_| ()))
        .unify()
        .or(warp::path!("api" / "flows" / String / "rotate-token").map(|_| ()))
        .unify()
        .and(auth)
        .map(|()| {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this route takes POST")
                .with_header("allow", "POST")
                .into_response()
        });
    let api = api.or(post).unify().or(post_only).unify();
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
pub(super) async fn blocking(
    handler: impl FnOnce() -> Result<Response> + Send + 'static,
) -> Result<Response> {
    tokio::task::spawn_blocking(handler)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("the read failed: {e}"))))
}

pub(super) fn json_ok(value: &Value) -> Result<Response> {
    Ok(warp::reply::json(value).into_response())
}
