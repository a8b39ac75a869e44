//! Refused webhooks on record: the gateway hands each refusal made after a URL's token
//! matched its flow to a [`Recorder`], which keeps it in the flow's ring in the store
//! (`crate::store::rejections`) off the answer path. Unknown flows and wrong tokens are never
//! recorded (a sender who does not know a URL leaves no trace but a count).
//!
//! A flood of forgeries cannot slow accepted webhooks: recording never waits (a full queue
//! drops the row and counts it), rows are written in batches behind accepts, and each flow's
//! ring has a fixed number of slots.
//!
//! Each refusal kept is announced on the event bus as `webhook.refused` once it is in the store
//! (a reader that sees the event finds the row in the list), at most [`ANNOUNCE_RATE`] a
//! second: past that a flood would push run events out of readers' reach, so the refusals
//! not announced are counted in the next event's `unannounced` (the reader reloads the list).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

use super::gateway::{REDACTED, redact_credentials, redact_parameter};
use crate::events::{Events, Refused};
use crate::store::{BODY_KEPT, NewRejection, RawRequest, Store};
use crate::verify::Verify;

/// Refusals waiting to be written; past it, new ones are dropped.
const QUEUE: usize = 4096;
/// The most refusals written in one store op.
const BATCH: usize = 256;
/// The most `webhook.refused` events a second, on average; as many may come at once.
pub const ANNOUNCE_RATE: u32 = 50;

/// Where the gateway reports refusals.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<NewRejection>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the task that writes refusals into `store` and announces them on `events`; it
    /// ends when every `Recorder` is dropped.
    pub fn start(store: Store, events: Events) -> Recorder {
        let (queue, mut rows) = mpsc::channel::<NewRejection>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut announcer = Announcer::new(events);
            let mut log = RefusalLog::default();
            while rows.recv_many(&mut batch, BATCH).await > 0 {
                let heads: Vec<Head> = batch.iter().map(Head::of).collect();
                match store.record_rejections(std::mem::take(&mut batch)).await {
                    Ok(seqs) => {
                        for (head, seq) in heads.iter().zip(seqs) {
                            log.refused(head);
                            announcer.announce(head, seq);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "refused webhooks could not be kept"),
                }
            }
        });
        Recorder {
            queue,
            dropped: Arc::default(),
        }
    }

    /// Refusals dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Keeps the refusal of `request` (its head, and its body when `body` is true) with the
    /// flow's credentials, the URL token and any `Authorization` redacted, under the reason
    /// `/metrics` counts it by.
    pub fn record(
        &self,
        flow_id: &str,
        verify: Option<&Verify>,
        request: &RawRequest,
        body: bool,
        status: u16,
        message: &str,
    ) {
        let mut head = RawRequest {
            method: request.method.clone(),
            path: String::new(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body: Vec::new(),
            remote_addr: request.remote_addr.clone(),
            received_at: request.received_at,
        };
        redact_credentials(&mut head, flow_id, verify);
        for (name, value) in &mut head.headers {
            if name.eq_ignore_ascii_case("authorization")
                || name.eq_ignore_ascii_case("proxy-authorization")
                || name.eq_ignore_ascii_case("cookie")
            {
                *value = match value.split_once(' ') {
                    Some((scheme, _)) if name.eq_ignore_ascii_case("authorization") => {
                        format!("{scheme} {REDACTED}")
                    }
                    _ => REDACTED.to_owned(),
                };
            }
        }
        head.query = redact_parameter(&head.query, "hub.verify_token");
        let row = NewRejection {
            flow_id: flow_id.to_owned(),
            at: request.received_at,
            reason: crate::metrics::refusal(status),
            status,
            message: message.to_owned(),
            remote_addr: head.remote_addr,
            method: head.method,
            path: head.path,
            query: head.query,
            headers: head.headers,
            body: body.then(|| request.body[..request.body.len().min(BODY_KEPT)].to_vec()),
            body_size: body.then_some(request.body.len() as u64),
        };
        if self.queue.try_send(row).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                flow = flow_id,
                "a refused webhook was not kept: the queue is full"
            );
        }
    }
}

/// What `webhook.refused` tells of a refusal: never its headers, query or body.
struct Head {
    flow_id: String,
    status: u16,
    reason: &'static str,
    message: String,
    at: std::time::SystemTime,
}

impl Head {
    fn of(row: &NewRejection) -> Head {
        Head {
            flow_id: row.flow_id.clone(),
            status: row.status,
            reason: row.reason,
            message: row.message.clone(),
            at: row.at,
        }
    }
}

/// Logs refusals at `WARN`, the first at once and then at most one line every
/// [`LOG_EVERY`] with the number refused since the last line, so that a flood of forgeries
/// cannot fill the logs.
#[derive(Default)]
struct RefusalLog {
    logged: Option<Instant>,
    quiet: u64,
}

/// The least time between two log lines of refusals.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl RefusalLog {
    fn refused(&mut self, head: &Head) {
        if self.logged.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.quiet += 1;
            return;
        }
        self.logged = Some(Instant::now());
        // Taken outside the macro, which skips its fields when WARN is off.
        let unlogged = std::mem::take(&mut self.quiet);
        tracing::warn!(
            flow = %head.flow_id,
            status = head.status,
            reason = head.reason,
            message = %head.message,
            unlogged_since_last_line = unlogged,
            "webhook refused (each refusal is on /api/flows/{}/rejections)",
            head.flow_id
        );
    }
}

/// Publishes `webhook.refused` events under a token bucket of [`ANNOUNCE_RATE`] a second.
struct Announcer {
    events: Events,
    tokens: f64,
    filled: Instant,
    unannounced: u64,
}

impl Announcer {
    fn new(events: Events) -> Announcer {
        Announcer {
            events,
            tokens: f64::from(ANNOUNCE_RATE),
            filled: Instant::now(),
            unannounced: 0,
        }
    }

    fn announce(&mut self, head: &Head, seq: u64) {
        let now = Instant::now();
        let rate = f64::from(ANNOUNCE_RATE);
        self.tokens =
            (self.tokens + now.duration_since(self.filled).as_secs_f64() * rate).min(rate);
        self.filled = now;
        if self.tokens < 1.0 {
            self.unannounced += 1;
            return;
        }
        self.tokens -= 1.0;
        self.events.webhook_refused(&Refused {
            flow_id: &head.flow_id,
            refusal_id: seq,
            status: head.status,
            reason: head.reason,
            message: &head.message,
            received_at: head.at,
            unannounced: std::mem::take(&mut self.unannounced),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            flow_id: "f".into(),
            status: 401,
            reason: "verify",
            message: "bad signature".into(),
            at: std::time::SystemTime::now(),
        }
    }

    #[test]
    fn a_burst_of_refusals_is_logged_once_with_a_count() {
        let mut log = RefusalLog::default();
        for _ in 0..1000 {
            log.refused(&head());
        }
        assert!(log.logged.is_some());
        assert_eq!(log.quiet, 999, "one line, the rest counted for the next");
        log.logged = Instant::now().checked_sub(LOG_EVERY);
        log.refused(&head());
        assert_eq!(log.quiet, 0, "the next line carries the count");
    }

    #[test]
    fn a_burst_past_the_rate_is_counted_in_the_next_event() {
        let events = Events::new();
        let mut reader = events.subscribe(None).receiver;
        let mut announcer = Announcer::new(events);
        let burst = u64::from(ANNOUNCE_RATE) + 10;
        for seq in 0..burst {
            announcer.announce(&head(), seq);
        }
        let mut seen = 0;
        while let Ok(event) = reader.try_recv() {
            assert_eq!(event.kind, "webhook.refused");
            seen += 1;
        }
        assert!(
            (u64::from(ANNOUNCE_RATE)..burst).contains(&seen),
            "{seen} of {burst} announced at once"
        );
        // Once the bucket refills, the next event says how many went unannounced.
        announcer.filled -= std::time::Duration::from_secs(1);
        announcer.announce(&head(), burst);
        let last = reader.try_recv().expect("announced after a refill");
        let data: serde_json::Value = serde_json::from_str(&last.data).unwrap();
        assert_eq!(data["refusal_id"], burst);
        assert_eq!(data["unannounced"], burst - seen);
        assert_eq!(data["reason"], "verify");
        assert_eq!(data["status"], 401);
    }
}
