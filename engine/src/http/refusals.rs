//! Refused webhooks on record: the gateway hands each refusal made after a URL's token
//! matched its flow to a [`Recorder`], which keeps it in the flow's ring in the store
//! (`crate::store::rejections`) off the answer path. Unknown flows and wrong tokens are never
//! recorded (a sender who does not know a URL leaves no trace but a count).
//!
//! A flood of forgeries cannot slow accepted webhooks: recording never waits (a full queue
//! drops the row and counts it), rows are written in batches behind accepts, and each flow's
//! ring has a fixed number of slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::gateway::{REDACTED, redact_credentials, redact_parameter};
use crate::store::{BODY_KEPT, NewRejection, RawRequest, Store};
use crate::verify::Verify;

/// Refusals waiting to be written; past it, new ones are dropped.
const QUEUE: usize = 4096;
/// The most refusals written in one store op.
const BATCH: usize = 256;

/// Where the gateway reports refusals.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<NewRejection>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the task that writes refusals into `store`; it ends when every `Recorder` is dropped.
    pub fn start(store: Store) -> Recorder {
        let (queue, mut rows) = mpsc::channel::<NewRejection>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rows.recv_many(&mut batch, BATCH).await > 0 {
                if let Err(e) = store.record_rejections(std::mem::take(&mut batch)).await {
                    tracing::warn!(error = %e, "refused webhooks could not be kept");
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
