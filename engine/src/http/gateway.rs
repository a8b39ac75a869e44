//! The webhook gateway: `/hooks/{flow_id}/{token}`.
//!
//! A request is checked in this order, and none of the refusals stores anything: an unknown
//! flow and a wrong token get the same 404 (so a URL cannot be probed for which flows exist);
//! a method the flow does not accept gets 405 with `Allow`; a body over the flow's `max_body`
//! gets 413 (counted over the stream, so chunked bodies are limited too); a request that fails
//! the flow's `verify` gets 401 with the reason; a request head (path, query and headers) over
//! the flow's `max_head` gets 431; a body that does not arrive within the listener's body
//! deadline gets 408 and the connection is closed. Then the request and its run are committed
//! to the store, and only then does the sender get 202 with the run id. What is stored leaves
//! out the URL token (the stored path ends in `[redacted]`) and the credential of the flow's
//! own `token` or `basic` scheme (its header or query parameter reads `[redacted]`); other
//! headers are kept as received.
//! When the store cannot take it, the answer is 503 with `Retry-After`, never a 2xx. A flow
//! with `dedupe` answers a redelivery (same dedupe value) 200 with the first delivery's run,
//! and starts no run. A flow with `respond = "result"` answers with its run's result once the
//! run ends, or 202 after `respond_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};

use super::error::ApiError;
use super::listener::Peer;
use crate::catalog::Catalog;
use crate::flow::{Handshakes, Respond};
use crate::run::content::{self, ContentError};
use crate::run::{Executor, Order, RunResult, payload};
use crate::store::{
    NewRun, RawRequest, RunId, RunOrigin, RunOutcome, RunStatus, Store, StoreError, TokenUsed,
    VerifyUsed,
};
use crate::verify;

/// What the gateway needs.
pub struct Gateway {
    pub catalog: Catalog,
    pub store: Store,
    pub executor: Executor,
    /// The longest a request body may take to arrive, from its head.
    pub body_timeout: Duration,
    /// Peers whose forwarding headers name a webhook's sender (see [`super::client`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where every answer is counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where refusals of known flows are kept.
    pub refusals: super::refusals::Recorder,
}

/// What a redacted credential reads in stored requests.
pub const REDACTED: &str = "[redacted]";

/// The gateway's routes.
pub fn routes(
    gateway: Arc<Gateway>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path!("hooks" / String / String)
        .and(warp::method())
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<Peer>())
        .and(warp::body::stream())
        .then(
            move |flow_id: String,
                  token: String,
                  method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  remote: Option<Peer>,
                  body| {
                let gateway = gateway.clone();
                async move {
                    // Labels the count only once `receive` has matched the URL's token.
                    let flow = flow_id.clone();
                    let request = Incoming {
                        flow_id,
                        token,
                        method,
                        path: path.as_str().to_owned(),
                        query,
                        headers,
                        remote: remote.map(|Peer(addr)| addr),
                    };
                    match receive(&gateway, request, body).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            gateway.metrics.webhook_answered(&flow, status);
                            response
                        }
                        Err(error) => {
                            gateway
                                .metrics
                                .webhook_refused(&flow, error.status.as_u16());
                            error.into_response()
                        }
                    }
                }
            },
        )
}

struct Incoming {
    flow_id: String,
    token: String,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    remote: Option<SocketAddr>,
}

/// The gateway's only refusal with 404, before the URL's token has matched a flow: the
/// metrics count it without a flow label, since the flow id is then whatever the sender wrote.
fn no_such_webhook() -> ApiError {
    ApiError::not_found("no such webhook")
}

async fn receive<S, B>(gateway: &Gateway, req: Incoming, body: S) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let received_at = SystemTime::now();
    let snapshot = gateway.catalog.snapshot();
    let entry = snapshot
        .flows
        .get(&req.flow_id)
        .ok_or_else(no_such_webhook)?;
    let (Some(token), Some(live)) = (&entry.token, &entry.live) else {
        return Err(no_such_webhook());
    };
    // Both tokens are compared whatever the first gives, so the time taken tells nothing.
    let current = bool::from(token.as_bytes().ct_eq(req.token.as_bytes()));
    let previous = entry
        .previous_token
        .as_ref()
        .is_some_and(|(previous, until)| {
            let matches = bool::from(previous.as_bytes().ct_eq(req.token.as_bytes()));
            matches && received_at < *until
        });
    let token_used = if current {
        TokenUsed::Current
    } else if previous {
        TokenUsed::Previous
    } else {
        return Err(no_such_webhook());
    };
    let spec = &live.flow.webhook;
    let sender = super::client::sender(req.remote, &req.headers, &gateway.trusted_proxies);
    let remote_addr = match (req.remote, sender) {
        // Through a trusted proxy: the sender, as the proxy named it.
        (Some(peer), Some(ip)) if peer.ip() != ip => Some(ip.to_string()),
        (peer, _) => peer.map(|a| a.to_string()),
    };
    // From here on the flow is known: every refusal is kept on record (`super::refusals`).
    let refuse = |error: ApiError, request: &RawRequest, body: bool| {
        gateway.refusals.record(
            &req.flow_id,
            spec.verify.as_ref(),
            request,
            body,
            error.status.as_u16(),
            &error.message,
        );
        error
    };
    let head_only = |req: &Incoming| RawRequest {
        method: req.method.as_str().to_owned(),
        path: String::new(),
        query: req.query.clone(),
        headers: header_pairs(&req.headers),
        body: Vec::new(),
        remote_addr: remote_addr.clone(),
        received_at,
    };
    if let Some(allowed) = &spec.allow_ips
        && !sender.is_some_and(|ip| allowed.iter().any(|net| net.contains(&ip)))
    {
        tracing::info!(flow = %req.flow_id, sender = ?sender, "webhook refused: sender not in allow_ips");
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            match sender {
                Some(ip) => format!("{ip} is not among this flow's allow_ips"),
                None => "the sender's address is unknown (a trusted proxy sent no readable X-Forwarded-For or Forwarded), and this flow has allow_ips".to_owned(),
            },
        );
        return Err(refuse(error, &head_only(&req), false));
    }
    if let Some(answer) = handshake(&spec.handshakes, &req) {
        tracing::info!(flow = %req.flow_id, "handshake answered");
        return answer.map_err(|error| refuse(error, &head_only(&req), false));
    }
    if !spec.methods.iter().any(|m| m == req.method.as_str()) {
        let error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("flow '{}' accepts {}", req.flow_id, spec.methods.join(", ")),
        )
        .with_header("allow", spec.methods.join(", "));
        return Err(refuse(error, &head_only(&req), false));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than this flow's max_body of {} bytes",
                spec.max_body
            ),
        )
    };
    let declared = req
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > spec.max_body) {
        return Err(refuse(too_large(), &head_only(&req), false));
    }
    let head = head_size(&req);
    if head > spec.max_head {
        let error = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request head (path, query and headers) is {head} bytes, over this flow's max_head of {} bytes",
                spec.max_head
            ),
        );
        return Err(refuse(error, &head_only(&req), false));
    }
    let read = tokio::time::timeout(
        gateway.body_timeout,
        read_body(body, spec.max_body, declared.unwrap_or(0)),
    )
    .await;
    let body = match read {
        Ok(Ok(Some(body))) => body,
        Ok(Ok(None)) => return Err(refuse(too_large(), &head_only(&req), false)),
        Ok(Err(error)) => return Err(refuse(error, &head_only(&req), false)),
        Err(_) => {
            let error = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(gateway.body_timeout)
                ),
            )
            .with_header("connection", "close");
            return Err(refuse(error, &head_only(&req), false));
        }
    };

    let mut request = RawRequest {
        method: req.method.as_str().to_owned(),
        path: req.path,
        query: req.query,
        headers: header_pairs(&req.headers),
        body,
        remote_addr,
        received_at,
    };
    let mut verified = None;
    if let Some(verify) = &spec.verify {
        let signed = verify::Request {
            headers: &request.headers,
            query: &request.query,
            body: &request.body,
        };
        match verify.check(&signed, SystemTime::now()) {
            Ok(position) => {
                verified = Some(VerifyUsed {
                    scheme: verify.scheme().to_owned(),
                    secret: u32::try_from(position).unwrap_or(u32::MAX),
                });
            }
            Err(refusal) => {
                // At debug: the refusal recorder logs refusals at most once every few seconds.
                tracing::debug!(flow = %req.flow_id, scheme = verify.scheme(), %refusal, "webhook refused");
                let error = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "the webhook failed its {} check: {refusal}",
                        verify.scheme()
                    ),
                );
                return Err(refuse(error, &request, true));
            }
        }
    }
    if let Err(error) = check_content(&request, spec.max_body) {
        return Err(refuse(error, &request, true));
    }
    if spec.handshakes.slack
        && let Some(challenge) = slack_challenge(&request)
    {
        tracing::info!(flow = %req.flow_id, "Slack url_verification answered");
        return Ok(text_answer(challenge));
    }
    redact_credentials(&mut request, &req.flow_id, spec.verify.as_ref());
    // Only a flow with `dedupe` reads the request here, and most dedupe on a header: the body
    // is decoded only when the query selects nothing without it. A singular query selects the
    // same node, or none, once the body is added, so this only saves work.
    let dedupe_key = spec.dedupe.as_ref().and_then(|_| {
        let mut context = serde_json::Map::new();
        context.insert(
            "webhook".into(),
            Value::Object(payload::request_head(&request)),
        );
        let mut context = Value::Object(context);
        spec.dedupe_key(&context).or_else(|| {
            if let Some(webhook) = context.get_mut("webhook").and_then(Value::as_object_mut) {
                webhook.insert("body".into(), payload::request_body(&request));
            }
            spec.dedupe_key(&context)
        })
    });
    let body_size = request.body.len() as u64;
    let order = Order::of(&live.flow, &request);
    let new_run = NewRun {
        flow_id: req.flow_id.clone(),
        flow_version: live.flow.version.clone(),
        request,
        dedupe_key,
        dedupe_window: spec.dedupe_window,
    };
    let origin = RunOrigin {
        replay_of: None,
        token: Some(token_used),
        verify: verified,
    };
    match gateway.store.accept_from(new_run, origin).await {
        Ok(accepted) => {
            let id = accepted.id;
            tracing::debug!(flow = %req.flow_id, run = %id, "webhook accepted");
            if !accepted.duplicate {
                gateway.catalog.events().run_accepted(id, &req.flow_id);
                match spec.respond {
                    Respond::Accepted => gateway.executor.submit(id, body_size, order),
                    Respond::Result { timeout } => {
                        // `None`: too many senders wait already (the executor counts and
                        // warns), so this one gets the usual 202.
                        if let Some(mut waiting) =
                            gateway.executor.submit_and_wait(id, body_size, order)
                            && let Ok(Some(result)) =
                                tokio::time::timeout(timeout, waiting.result()).await
                        {
                            return Ok(match result.answer {
                                Some(Ok(answer)) => mapped_answer(id, StatusCode::OK, &answer),
                                Some(Err(why)) => failed_answer(id, &why),
                                None => result_response(id, result),
                            });
                        }
                        // Too slow: the sender gets the usual 202, the run goes on.
                    }
                }
            }
            if let (Respond::Accepted, Some(answer)) = (spec.respond, &live.flow.answer)
                && let Ok(answer) = answer.evaluate(&Value::Null)
            {
                return Ok(mapped_answer(id, StatusCode::ACCEPTED, &answer));
            }
            let body = AcceptedAnswer {
                run_id: id,
                status: accepted.status,
                duplicate: accepted.duplicate,
            };
            // A redelivery is answered 200 with the first delivery's run: nothing new was
            // accepted, and the sender stops retrying either way.
            let status = if accepted.duplicate {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
        }
        Err(StoreError::Overloaded) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many webhooks are waiting to be stored; retry shortly",
        )
        .with_header("retry-after", "1")),
        Err(e) => {
            tracing::error!(flow = %req.flow_id, error = %e, "cannot store a webhook");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook could not be stored; retry later",
            )
            .with_header("retry-after", "5"))
        }
    }
}

/// The answer to a handshake that the request head alone decides: Meta's subscription (a
/// `GET` with `hub.mode`), Microsoft Graph's `validationToken` and a `GET ?challenge=`, each
/// only where the flow enables it. `None`: not a handshake, the request goes on as a webhook.
fn handshake(handshakes: &Handshakes, req: &Incoming) -> Option<Result<Response, ApiError>> {
    if req.query.is_empty() {
        return None;
    }
    let param = |name: &str| {
        form_urlencoded::parse(req.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let get = req.method == Method::GET;
    if let Some(expected) = &handshakes.meta_verify_token
        && get
        && let Some(mode) = param("hub.mode")
    {
        let token = param("hub.verify_token").unwrap_or_default();
        let matches = bool::from(token.as_bytes().ct_eq(expected.as_bytes()));
        return Some(match param("hub.challenge") {
            Some(challenge) if mode == "subscribe" && matches => Ok(text_answer(challenge)),
            _ if mode != "subscribe" => Err(ApiError::bad_request(format!(
                "hub.mode is \"{mode}\"; only \"subscribe\" is answered"
            ))),
            None => Err(ApiError::bad_request("hub.challenge is missing")),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "hub.verify_token does not match this flow's meta_verify_token",
            )),
        });
    }
    if handshakes.graph
        && let Some(token) = param("validationToken")
    {
        return Some(Ok(text_answer(token)));
    }
    if handshakes.echo_challenge
        && get
        && let Some(challenge) = param("challenge")
    {
        return Some(Ok(text_answer(challenge)));
    }
    None
}

/// Refuses, before anything is stored, a body its flow could not read: a `Content-Encoding`
/// Weir does not know (415), one that does not decode (400) or decodes past `max_body` (413,
/// found by streaming it into nothing), and a multipart form with too many parts (413).
fn check_content(request: &RawRequest, max_body: u64) -> Result<(), ApiError> {
    let encoding = request.header("content-encoding");
    let answer = |error: ContentError| {
        let status = match error {
            ContentError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ContentError::Corrupt { .. } => StatusCode::BAD_REQUEST,
            ContentError::TooLarge(_) | ContentError::TooManyParts => StatusCode::PAYLOAD_TOO_LARGE,
        };
        ApiError::new(status, error.to_string())
    };
    content::check_decoded(encoding, &request.body, max_body).map_err(answer)?;
    if let Some(content_type) = request.header("content-type")
        && content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    {
        let body = content::decode(encoding, request.body.clone(), max_body)
            .map_err(|(error, _)| answer(error))?;
        content::multipart(content_type, &body).map_err(answer)?;
    }
    Ok(())
}

/// The challenge of a Slack `url_verification` body, once the request passed `verify`.
fn slack_challenge(request: &RawRequest) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct UrlVerification {
        #[serde(rename = "type")]
        kind: String,
        challenge: String,
    }
    let body: UrlVerification = serde_json::from_slice(&request.body).ok()?;
    (body.kind == "url_verification").then_some(body.challenge)
}

/// `200` with `text` as `text/plain`: what every handshake answers. The text is the sender's
/// own, so it is never sniffed as anything else.
fn text_answer(text: String) -> Response {
    let mut response =
        warp::reply::with_header(text, "content-type", "text/plain; charset=utf-8").into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-content-type-options",
        warp::http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cache-control",
        warp::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The body of a `202` (or of the `200` to a redelivery).
#[derive(Serialize)]
struct AcceptedAnswer {
    run_id: RunId,
    status: RunStatus,
    duplicate: bool,
}

/// The answer of a `respond = "result"` webhook whose run ended in time: `200` with the last
/// step's output as JSON when it succeeded, `204` when it was filtered, `500` with the error
/// when it failed. `x-weir-run-id` and `x-weir-run-status` say which run and how it ended.
fn result_response(id: RunId, result: RunResult) -> Response {
    let mut response = match result.outcome {
        RunOutcome::Succeeded => {
            warp::reply::with_status(warp::reply::json(&result.output), StatusCode::OK)
                .into_response()
        }
        RunOutcome::Filtered => StatusCode::NO_CONTENT.into_response(),
        RunOutcome::Failed => {
            let message = result.error.unwrap_or_else(|| "the run failed".into());
            let body = json!({
                "error": { "status": 500, "message": format!("run {id} failed: {message}") },
                "run_id": id.to_string(),
            });
            warp::reply::with_status(warp::reply::json(&body), StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
    };
    let status = RunStatus::from(result.outcome);
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-weir-run-id", id.to_string()),
        ("x-weir-run-status", status.to_string()),
    ] {
        if let Ok(value) = warp::http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// The answer a flow's `answer` describes (`{status, headers, body}`, checked when the flow
/// loaded or, read from a run, here): a string body is sent as text, any other as JSON, and
/// `x-weir-run-id` names the run. A mapped answer that cannot be sent is a `500` that says why.
fn mapped_answer(id: RunId, default: StatusCode, answer: &Value) -> Response {
    if let Err(why) = crate::flow::check_answer(answer) {
        return failed_answer(id, &why);
    }
    let status = answer
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(default);
    let (body, content_type) = match answer.get("body") {
        None | Some(Value::Null) => (Vec::new(), None),
        Some(Value::String(text)) => (text.clone().into_bytes(), Some("text/plain; charset=utf-8")),
        Some(other) => (other.to_string().into_bytes(), Some("application/json")),
    };
    let mut response = warp::reply::with_status(body, status).into_response();
    let headers = response.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(
            "content-type",
            warp::http::HeaderValue::from_static(content_type),
        );
    }
    for (name, value) in answer
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let (Ok(name), Some(Ok(value))) = (
            warp::http::HeaderName::from_bytes(name.as_bytes()),
            value.as_str().map(warp::http::HeaderValue::from_str),
        ) {
            headers.insert(name, value);
        }
    }
    if let Ok(value) = warp::http::HeaderValue::from_str(&id.to_string()) {
        headers.insert("x-weir-run-id", value);
    }
    response
}

/// `500` for a run whose `answer` could not be read or sent.
fn failed_answer(id: RunId, why: &str) -> Response {
    let body = json!({
        "error": { "status": 500, "message": format!("run {id} succeeded, but its answer cannot be sent: {why}") },
        "run_id": id.to_string(),
    });
    warp::reply::with_status(warp::reply::json(&body), StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

/// Reads the body; `None` as soon as it passes `max` bytes. `declared` (the content length,
/// at most `max`, plus [`crate::store::REQUEST_HEAD_ROOM`]) is allocated once the first bytes
/// come, so that a large body is copied neither as it grows nor when it is stored, and a
/// sender that sends nothing is given nothing.
async fn read_body<S, B>(
    mut stream: S,
    max: u64,
    declared: u64,
) -> Result<Option<Vec<u8>>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if body.len() as u64 + chunk.remaining() as u64 > max {
            return Ok(None);
        }
        if body.capacity() == 0 {
            // With room for the stored request's head, which the store writes before the
            // body in this same buffer.
            let declared = usize::try_from(declared.min(max)).unwrap_or(0);
            body.reserve_exact(declared.saturating_add(crate::store::REQUEST_HEAD_ROOM));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(Some(body))
}

/// The headers as stored: names lower-case, values as text (invalid UTF-8 replaced).
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The size of a request head as the sender wrote it: the request line (method, path and
/// query) and each header line.
fn head_size(req: &Incoming) -> u64 {
    let line =
        req.method.as_str().len() + req.path.len() + req.query.len() + " ? HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum();
    (line + headers) as u64
}

/// Takes out of a verified request the credentials that would let whoever reads a stored run
/// send webhooks to this flow: the URL token in the path, and what the flow's own `token` or
/// `basic` scheme checked (its header, keeping an auth scheme word such as `Bearer`, or its
/// query parameter). Signatures of the HMAC schemes stay: they sign one body and are no key.
pub(super) fn redact_credentials(
    request: &mut RawRequest,
    flow_id: &str,
    verify: Option<&verify::Verify>,
) {
    request.path = format!("/hooks/{flow_id}/{REDACTED}");
    let (header, parameter) = match verify {
        Some(verify::Verify::Token { place, .. }) => match place {
            verify::TokenPlace::Bearer => (Some("authorization"), None),
            verify::TokenPlace::Header(name) => (Some(name.as_str()), None),
            verify::TokenPlace::Query(name) => (None, Some(name.as_str())),
        },
        Some(verify::Verify::Basic { .. }) => (Some("authorization"), None),
        _ => (None, None),
    };
    if let Some(header) = header {
        for (name, value) in &mut request.headers {
            if name.eq_ignore_ascii_case(header) {
                *value = match value.split_once(' ') {
                    Some((scheme, _)) if header == "authorization" => {
                        format!("{scheme} {REDACTED}")
                    }
                    _ => REDACTED.to_owned(),
                };
            }
        }
    }
    if let Some(parameter) = parameter {
        request.query = redact_parameter(&request.query, parameter);
    }
}

/// `query` with the value of every `name` parameter replaced by [`REDACTED`].
pub(super) fn redact_parameter(query: &str, name: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    query
        .split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            let decoded = form_urlencoded::parse(key.as_bytes())
                .next()
                .map(|(key, _)| key.into_owned())
                .unwrap_or_default();
            if decoded == name {
                format!("{key}={REDACTED}")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}
