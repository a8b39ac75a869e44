//! The in-process event bus behind `GET /api/events`: runs accepted, started and finished, and
//! flows loaded, changed, errored or removed, for pages that show them live.
//!
//! Publishing never blocks and never waits for a reader: each event gets the next id, goes
//! into a bounded ring (for `Last-Event-ID` resume) and onto a bounded broadcast channel. A
//! reader that falls more than [`CHANNEL_CAPACITY`] events behind is dropped (its stream ends;
//! it reconnects and resumes from the ring, or is told to `reset`), so a slow reader costs a
//! fixed amount of memory, never a growing buffer.
//!
//! Event ids are `<boot>-<seq>`: `boot` names this process, so that an id from before a
//! restart is recognised as such rather than matched against the new numbering.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::catalog::ReloadReport;
use crate::store::{Run, RunId, RunOutcome, RunStatus};

/// Events kept for readers that reconnect with `Last-Event-ID`.
pub const RING_CAPACITY: usize = 1024;

/// How far a reader may fall behind the newest event before it is dropped.
pub const CHANNEL_CAPACITY: usize = 256;

/// One event: what happened (`kind`, the SSE event name) and its JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its place in this process's sequence, from 0.
    pub seq: u64,
    /// `run.accepted`, `run.started`, `run.retrying`, `run.finished`, `flow.loaded`, `flow.changed`,
    /// `flow.errored`, `flow.removed` or `webhook.refused`.
    pub kind: &'static str,
    /// The event's data as JSON text.
    pub data: String,
}

/// A `webhook.refused` event: never the request's headers, query or body.
pub struct Refused<'a> {
    pub flow_id: &'a str,
    /// Its `seq` in `GET /api/flows/{id}/rejections`.
    pub refusal_id: u64,
    /// The status and message the sender got, and the reason it is counted under.
    pub status: u16,
    pub reason: &'a str,
    pub message: &'a str,
    pub received_at: SystemTime,
    /// Refusals kept before this one without an event of their own (over the rate).
    pub unannounced: u64,
}

/// What a new reader gets: the events it missed, then the live ones.
pub struct Subscription {
    /// The id the reader gave is unknown here (too old for the ring, or from before a
    /// restart): it may have missed events and should reload what it shows.
    pub reset: bool,
    /// The events after the reader's `Last-Event-ID`, oldest first.
    pub backlog: Vec<Arc<Event>>,
    /// The events published from now on.
    pub receiver: broadcast::Receiver<Arc<Event>>,
    /// This process's id prefix, to name the events.
    pub boot: Arc<str>,
}

impl Subscription {
    /// The SSE id of an event of this subscription.
    pub fn id_of(&self, event: &Event) -> String {
        format!("{}-{}", self.boot, event.seq)
    }
}

/// The bus. Cheap to clone; every clone publishes to the same readers.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Bus>,
}

struct Bus {
    boot: Arc<str>,
    ring: Mutex<Ring>,
    sender: broadcast::Sender<Arc<Event>>,
    /// True once the server stops: open streams end, so that a graceful stop does not wait
    /// for readers that never hang up.
    closed: watch::Sender<bool>,
}

struct Ring {
    next: u64,
    events: VecDeque<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// A bus with no events yet.
    pub fn new() -> Events {
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Events {
            inner: Arc::new(Bus {
                boot: format!("{boot:x}").into(),
                ring: Mutex::new(Ring {
                    next: 0,
                    events: VecDeque::with_capacity(RING_CAPACITY),
                }),
                sender,
                closed: watch::Sender::new(false),
            }),
        }
    }

    /// Publishes one event.
    pub fn publish(&self, kind: &'static str, data: &Value) {
        let mut ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        let event = Arc::new(Event {
            seq: ring.next,
            kind,
            data: data.to_string(),
        });
        ring.next += 1;
        if ring.events.len() == RING_CAPACITY {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // Sent under the lock, so that a new reader sees each event exactly once: in its
        // backlog or on its receiver. No reader: nothing to do.
        let _ = self.inner.sender.send(event);
    }

    /// Ends every open stream, now and later: the server is stopping.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Resolves once [`Events::close`] was called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closed = self.inner.closed.subscribe();
        async move {
            // An error means the bus is gone: closed too.
            let _ = closed.wait_for(|closed| *closed).await;
        }
    }

    /// A new reader, resuming after `last_event_id` when given.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        let ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = self.inner.sender.subscribe();
        let (reset, backlog) = match last_event_id.map(|id| self.resume_point(id)) {
            None => (false, Vec::new()),
            Some(None) => (true, Vec::new()),
            Some(Some(last)) => {
                let oldest = ring.events.front().map_or(ring.next, |e| e.seq);
                if last >= ring.next || last.saturating_add(1) < oldest {
                    (true, Vec::new())
                } else {
                    let backlog = ring
                        .events
                        .iter()
                        .filter(|e| e.seq > last)
                        .cloned()
                        .collect();
                    (false, backlog)
                }
            }
        };
        Subscription {
            reset,
            backlog,
            receiver,
            boot: self.inner.boot.clone(),
        }
    }

    /// The sequence number in an id of this process; `None` for any other id.
    fn resume_point(&self, id: &str) -> Option<u64> {
        let (boot, seq) = id.trim().rsplit_once('-')?;
        if boot != &*self.inner.boot {
            return None;
        }
        seq.parse().ok()
    }

    /// The gateway stored a new run.
    pub fn run_accepted(&self, id: RunId, flow_id: &str) {
        self.publish(
            "run.accepted",
            &json!({ "run_id": id, "flow_id": flow_id, "status": RunStatus::Queued, "at": now() }),
        );
    }

    /// The executor started a run (`run` as the store marked it running).
    pub fn run_started(&self, run: &Run) {
        self.publish(
            "run.started",
            &json!({
                "run_id": run.id, "flow_id": run.flow_id, "status": run.status,
                "attempt": run.attempt, "at": now(),
            }),
        );
    }

    /// A step of the run failed and will be tried again at `next_attempt_at`.
    pub fn run_retrying(&self, id: RunId, flow_id: &str, next_attempt_at: SystemTime) {
        self.publish(
            "run.retrying",
            &json!({
                "run_id": id, "flow_id": flow_id, "status": RunStatus::Retrying,
                "next_attempt_at": humantime::format_rfc3339_millis(next_attempt_at).to_string(),
                "at": now(),
            }),
        );
    }

    /// A run reached its final status.
    pub fn run_finished(&self, id: RunId, flow_id: &str, outcome: RunOutcome) {
        self.publish(
            "run.finished",
            &json!({
                "run_id": id, "flow_id": flow_id, "status": RunStatus::from(outcome), "at": now(),
            }),
        );
    }

    /// A refused webhook was kept (see [`Refused`]).
    pub fn webhook_refused(&self, refused: &Refused<'_>) {
        self.publish(
            "webhook.refused",
            &json!({
                "flow_id": refused.flow_id, "refusal_id": refused.refusal_id,
                "status": refused.status, "reason": refused.reason, "message": refused.message,
                "received_at": humantime::format_rfc3339_millis(refused.received_at).to_string(),
                "unannounced": refused.unannounced, "at": now(),
            }),
        );
    }

    /// The catalog swapped in a new set of flows.
    pub fn flows_reloaded(&self, report: &ReloadReport) {
        let kinds = [
            ("flow.loaded", &report.added),
            ("flow.changed", &report.changed),
            ("flow.errored", &report.failed),
            ("flow.removed", &report.removed),
        ];
        for (kind, ids) in kinds {
            for id in ids {
                self.publish(kind, &json!({ "flow_id": id, "at": now() }));
            }
        }
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(events: &[Arc<Event>]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_reader_resumes_after_its_last_event_id() {
        let events = Events::new();
        let mut first = events.subscribe(None);
        for i in 0..5 {
            events.publish("flow.changed", &json!({ "i": i }));
        }
        assert_eq!(first.receiver.try_recv().map(|e| e.seq), Ok(0));
        assert_eq!(first.receiver.try_recv().map(|e| e.seq), Ok(1));
        let id = first.id_of(&Event {
            seq: 2,
            kind: "flow.changed",
            data: String::new(),
        });
        let resumed = events.subscribe(Some(&id));
        assert!(!resumed.reset);
        assert_eq!(seqs(&resumed.backlog), [3, 4]);
    }

    #[test]
    fn an_id_the_ring_no_longer_holds_or_from_another_process_asks_for_a_reset() {
        let events = Events::new();
        let boot = events.subscribe(None).boot;
        for i in 0..RING_CAPACITY + 10 {
            events.publish("run.accepted", &json!({ "i": i }));
        }
        assert!(events.subscribe(Some(&format!("{boot}-3"))).reset);
        let kept = events.subscribe(Some(&format!("{boot}-9")));
        assert!(!kept.reset, "the oldest event kept follows id 9");
        assert_eq!(kept.backlog.len(), RING_CAPACITY);
        assert!(events.subscribe(Some("17-3")).reset, "another process");
        assert!(events.subscribe(Some("nonsense")).reset);
        assert!(
            events.subscribe(Some(&format!("{boot}-99999"))).reset,
            "an id from the future"
        );
    }

    #[test]
    fn a_reader_that_falls_behind_is_told_so_rather_than_buffered() {
        let events = Events::new();
        let mut slow = events.subscribe(None);
        for i in 0..CHANNEL_CAPACITY + 1 {
            events.publish("run.accepted", &json!({ "i": i }));
        }
        assert!(matches!(
            slow.receiver.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
