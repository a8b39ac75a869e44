//! The web UI on the admin listener, and the event stream its pages listen to.
//!
//! The UI is plain HTML, CSS and JavaScript modules from `engine/ui/`, embedded in the binary
//! at build time: no build step, no request to any other origin, and a strict
//! `Content-Security-Policy` (no inline script or style, no framing). Its pages are routed in
//! the browser; every page URL answers `index.html`, so a page reloads to itself. The static
//! files carry no data, so they are served without the admin token; the data comes from
//! `/api/*`, which asks for it.
//!
//! `GET /api/events` is a server-sent event stream of the [`Events`] bus (see
//! `crate::events`): ids resume with `Last-Event-ID`, a `reset` event says the reader missed
//! events and should reload, a comment every [`HEARTBEAT`] keeps proxies from closing an idle
//! stream, and a reader that falls behind is dropped rather than buffered for.

use std::convert::Infallible;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use tokio::sync::broadcast::error::RecvError;
use warp::Filter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

use crate::events::{Event, Events, Subscription};

/// The policy of every UI response: only this origin, no inline code, never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// How often an idle event stream carries a comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The UI's files: name under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../ui/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../ui/icon.svg"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/dom.js"),
    ),
    (
        "json.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/json.js"),
    ),
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/live.js"),
    ),
    (
        "webhooks.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/webhooks.js"),
    ),
    (
        "payload.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/payload.js"),
    ),
    (
        "run.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/run.js"),
    ),
    (
        "flows.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/flows.js"),
    ),
];

/// Whether `path` is a page of the UI (routed in the browser).
fn is_page(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        [""] | ["flows"] | ["flows", _] | ["runs", _] | ["runs", _, "payload"]
    )
}

fn asset(name: &str) -> Option<Response> {
    let (_, content_type, bytes) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
    let mut response = Response::new((*bytes).into());
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // The files change with the binary; the browser asks again rather than guess.
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    Some(response)
}

/// `GET /ui/{file}` and every page URL (which answers `index.html`).
pub fn routes() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let files = warp::path!("ui" / String)
        .and_then(|name: String| async move { asset(&name).ok_or_else(warp::reject::not_found) });
    let pages = warp::path::full().and_then(|path: warp::path::FullPath| async move {
        if is_page(path.as_str()) {
            asset("index.html").ok_or_else(warp::reject::not_found)
        } else {
            Err(warp::reject::not_found())
        }
    });
    warp::get().and(files.or(pages).unify())
}

/// `GET /api/events`; the caller checks the admin token first.
#[utoipa::path(get, path = "/api/events", tag = "server",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "The last event seen: the stream starts after it (or says it was reset)")),
    responses(
        (status = 200, description = "Server-sent events: runs accepted, started and finished, \
            flows changed, webhooks refused (`webhook.refused`: `flow_id`, `refusal_id`, \
            `status`, `reason`, `message`, `received_at`, `unannounced`); a heartbeat comment \
            every few seconds", content_type = "text/event-stream",
            body = String),
        (status = 401, description = "A token is set and the request does not carry it",
            body = super::error::ErrorBody),
        (status = 421, description = "No token is set and the request's Host is not this machine",
            body = super::error::ErrorBody),
    ))]
pub fn events(
    events: Events,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("api" / "events")
        .and(warp::header::optional::<String>("last-event-id"))
        .map(move |last: Option<String>| {
            let subscription = events.subscribe(last.as_deref());
            let closed = events.closed();
            let mut response = warp::sse::reply(
                warp::sse::keep_alive()
                    .interval(HEARTBEAT)
                    .text("heartbeat")
                    .stream(event_stream(subscription, closed)),
            )
            .into_response();
            response
                .headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-store"));
            *response.status_mut() = StatusCode::OK;
            response
        })
}

fn sse(subscription_boot: &str, event: &Event) -> warp::sse::Event {
    warp::sse::Event::default()
        .id(format!("{subscription_boot}-{}", event.seq))
        .event(event.kind)
        .data(event.data.clone())
}

/// Tells the reader it may have missed events: reload what you show.
fn reset() -> warp::sse::Event {
    warp::sse::Event::default().event("reset").data("{}")
}

/// The reset notice (when due), the backlog, then live events until the reader lags or the
/// server stops.
fn event_stream(
    subscription: Subscription,
    closed: impl Future<Output = ()> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<warp::sse::Event, Infallible>> + Send + 'static {
    let Subscription {
        reset: reset_due,
        backlog,
        receiver,
        boot,
    } = subscription;
    let first = reset_due.then(reset);
    let earlier: Vec<warp::sse::Event> = first
        .into_iter()
        .chain(backlog.iter().map(|e| sse(&boot, e)))
        .collect();
    let closed = Box::pin(closed);
    let live = stream::unfold(Some((receiver, closed, boot)), |state| async move {
        let (mut receiver, mut closed, boot) = state?;
        let event = tokio::select! {
            () = &mut closed => return None,
            event = receiver.recv() => event,
        };
        match event {
            Ok(event) => {
                let sse = sse(&boot, &event);
                Some((sse, Some((receiver, closed, boot))))
            }
            Err(RecvError::Lagged(missed)) => {
                // One last event, then the stream ends: the reader reloads what it shows
                // and reconnects, and nothing it missed was held for it.
                tracing::debug!(missed, "dropping an event stream reader that fell behind");
                Some((reset(), None))
            }
            Err(RecvError::Closed) => None,
        }
    });
    stream::iter(earlier).chain(live).map(Ok)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use serde_json::json;

    use super::{event_stream, is_page};
    use crate::events::{CHANNEL_CAPACITY, Events};

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_disconnected_and_one_that_keeps_up_is_not() {
        let events = Events::new();
        let slow = event_stream(events.subscribe(None), events.closed());
        let mut slow = std::pin::pin!(slow);
        for i in 0..=CHANNEL_CAPACITY {
            events.publish("run.accepted", &json!({ "i": i }));
        }
        // The stream says reset and ends instead of holding every event for the reader.
        let rest = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let mut events = Vec::new();
            while let Some(Ok(event)) = slow.next().await {
                events.push(event.to_string());
            }
            events
        })
        .await
        .expect("the stream ends");
        assert_eq!(
            rest,
            ["event:reset\ndata:{}\n\n"],
            "nothing it missed is buffered"
        );

        let live = event_stream(events.subscribe(None), events.closed());
        let mut live = std::pin::pin!(live);
        events.publish("flow.changed", &json!({}));
        assert!(live.next().await.is_some());
        events.close();
        assert!(live.next().await.is_none(), "closing ends open streams");
    }

    #[test]
    fn page_urls_are_the_uis_and_nothing_else() {
        for page in [
            "/",
            "/flows",
            "/flows/github-issues",
            "/runs/01K",
            "/runs/01K/payload",
        ] {
            assert!(is_page(page), "{page}");
        }
        for other in ["/api/flows", "/hooks/a/b", "/flows/a/b", "/runs", "/x"] {
            assert!(!is_page(other), "{other}");
        }
    }
}
