//! What Weir counts and measures for Prometheus, served as `GET /metrics` on the admin
//! listener in the OpenMetrics text format (which Prometheus scrapes natively).
//!
//! One [`Metrics`] holds the registry. `serve` makes it and hands it to whoever records (the
//! gateway, the executor, the admin API that samples the gauges at each scrape); nothing is
//! process-global, so several servers in one process never mix their counts.
//!
//! Labels stay bounded, whatever senders do: `flow` is set only for requests whose URL token
//! matched a flow of the flows folder (everything else is one unlabelled counter, so a sender
//! inventing flow ids cannot create series), `status` and `reason` come from fixed sets, and
//! `plugin` is a built-in's name or the `.wasm` path a flow names.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::store::LatencyObserver;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answered {
    flow: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rejected {
    flow: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Finished {
    flow: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Flow {
    flow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pruned {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Plugin {
    plugin: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Store latencies (a commit, a journal sync): 50 µs to about 3 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// The store's latencies, as its writer reports them (see [`Metrics::store_latency`]).
#[derive(Debug, Clone)]
pub struct StoreLatency {
    commit: Histogram,
    journal_sync: Histogram,
}

impl LatencyObserver for StoreLatency {
    fn commit(&self, took: Duration) {
        self.commit.observe(took.as_secs_f64());
    }

    fn journal_sync(&self, took: Duration) {
        self.journal_sync.observe(took.as_secs_f64());
    }
}

/// Step durations: 1 ms to about 65 s, doubling.
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The registry and every metric in it. Cheap to record into from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    answered: Family<Answered, Counter>,
    rejected: Family<Rejected, Counter>,
    unrouted: Counter,
    finished: Family<Finished, Counter>,
    retries: Family<Flow, Counter>,
    step_seconds: HistogramFamily<Plugin>,
    queued: Gauge,
    executing: Gauge,
    retrying: Gauge,
    oldest_queued: Gauge<f64, AtomicU64>,
    store_bytes: Gauge,
    store_latency: StoreLatency,
    pruned: Family<Pruned, Counter>,
}

/// What the gauges show, read when a scrape comes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Runs accepted and not yet executing.
    pub queued: u64,
    /// Runs executing now.
    pub executing: u64,
    /// Runs waiting for their next attempt after a step failed.
    pub retrying: u64,
    /// How long the oldest queued run has waited; `None` when none waits.
    pub oldest_queued: Option<Duration>,
    /// The store file's length in bytes.
    pub store_bytes: u64,
}

/// Why a webhook that reached its flow was refused, by the status it was refused with.
pub fn refusal(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "verify",
        403 => "forbidden",
        405 => "method",
        408 => "body_timeout",
        413 => "too_large",
        415 => "unsupported_encoding",
        431 => "head_too_large",
        503 => "unavailable",
        _ => "other",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("weir");
        let answered = Family::<Answered, Counter>::default();
        registry.register(
            "webhooks_received",
            "Webhooks that reached a flow (its URL token matched), by flow and answer status",
            answered.clone(),
        );
        let rejected = Family::<Rejected, Counter>::default();
        registry.register(
            "webhooks_rejected",
            "Webhooks that reached a flow and were refused, nothing stored, by flow and reason \
             (bad_request, verify, forbidden, method, body_timeout, too_large, \
             unsupported_encoding, head_too_large, unavailable, other)",
            rejected.clone(),
        );
        let unrouted = Counter::default();
        registry.register(
            "webhooks_unrouted",
            "Webhooks answered 404: no such flow, or a wrong URL token (not labelled by flow)",
            unrouted.clone(),
        );
        let finished = Family::<Finished, Counter>::default();
        registry.register(
            "runs_finished",
            "Runs that reached a final status, by flow and status",
            finished.clone(),
        );
        let retries = Family::<Flow, Counter>::default();
        registry.register(
            "step_retries",
            "Failed steps set to run again (each retry scheduled), by flow",
            retries.clone(),
        );
        let step_seconds: HistogramFamily<Plugin> = Family::new_with_constructor(step_histogram);
        registry.register_with_unit(
            "step_duration",
            "How long steps that ran took (skipped steps excluded), by plugin",
            Unit::Seconds,
            step_seconds.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "runs_queued",
            "Runs accepted and waiting to execute",
            queued.clone(),
        );
        let executing = Gauge::default();
        registry.register("runs_executing", "Runs executing now", executing.clone());
        let retrying = Gauge::default();
        registry.register(
            "runs_retrying",
            "Runs waiting for their next attempt after a step failed",
            retrying.clone(),
        );
        let oldest_queued = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "queue_oldest_age",
            "How long the oldest queued run has waited (0 when none waits)",
            Unit::Seconds,
            oldest_queued.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register_with_unit(
            "store_size",
            "The store file's length",
            Unit::Bytes,
            store_bytes.clone(),
        );
        let store_latency = StoreLatency {
            commit: latency_histogram(),
            journal_sync: latency_histogram(),
        };
        registry.register_with_unit(
            "store_commit_duration",
            "How long the store's write transactions took to commit (group commits; with redb's \
             fsync for the durable ones)",
            Unit::Seconds,
            store_latency.commit.clone(),
        );
        registry.register_with_unit(
            "store_journal_sync_duration",
            "How long each journal frame took to write and sync (what makes an accept durable)",
            Unit::Seconds,
            store_latency.journal_sync.clone(),
        );
        let pruned = Family::<Pruned, Counter>::default();
        registry.register(
            "runs_pruned",
            "Finished runs deleted by retention, by the limit they were beyond (age, runs, bytes)",
            pruned.clone(),
        );
        Metrics {
            registry,
            pruned,
            store_latency,
            answered,
            rejected,
            unrouted,
            finished,
            retries,
            step_seconds,
            queued,
            executing,
            retrying,
            oldest_queued,
            store_bytes,
        }
    }

    /// Counts a webhook of `flow` that the gateway took in (stored, or answered by a
    /// handshake) and answered with `status`, whatever that status (a flow may map its own).
    pub fn webhook_answered(&self, flow: &str, status: u16) {
        self.answered
            .get_or_create(&Answered {
                flow: flow.to_owned(),
                status,
            })
            .inc();
    }

    /// Counts a webhook the gateway refused with `status`, storing nothing. `flow` is the
    /// flow id from its URL, trusted only when the refusal is not 404: the gateway refuses
    /// with 404 until the URL's token matched a flow, so a 404 is counted without it.
    pub fn webhook_refused(&self, flow: &str, status: u16) {
        if status == 404 {
            self.unrouted.inc();
            return;
        }
        self.webhook_answered(flow, status);
        self.rejected
            .get_or_create(&Rejected {
                flow: flow.to_owned(),
                reason: refusal(status),
            })
            .inc();
    }

    /// Counts a run of `flow` that ended with `status` (`succeeded`, `failed`, `filtered`).
    pub fn run_finished(&self, flow: &str, status: &'static str) {
        self.finished
            .get_or_create(&Finished {
                flow: flow.to_owned(),
                status,
            })
            .inc();
    }

    /// Counts a failed step of a run of `flow` set to run again.
    pub fn step_retried(&self, flow: &str) {
        self.retries
            .get_or_create(&Flow {
                flow: flow.to_owned(),
            })
            .inc();
    }

    /// Records how long a step of `plugin` took.
    pub fn step_ran(&self, plugin: &str, took: Duration) {
        self.step_seconds
            .get_or_create(&Plugin {
                plugin: plugin.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts `runs` finished runs deleted by retention for `reason` (`age`, `runs`, `bytes`).
    pub fn runs_pruned(&self, reason: &'static str, runs: u64) {
        self.pruned.get_or_create(&Pruned { reason }).inc_by(runs);
    }

    /// What the store's writer reports its latencies to (`Store::observe_latency`).
    pub fn store_latency(&self) -> std::sync::Arc<StoreLatency> {
        std::sync::Arc::new(self.store_latency.clone())
    }

    /// The text of a scrape, with the gauges set from `sample`.
    pub fn render(&self, sample: Sample) -> Result<String, std::fmt::Error> {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.queued.set(gauge(sample.queued));
        self.executing.set(gauge(sample.executing));
        self.retrying.set(gauge(sample.retrying));
        self.oldest_queued
            .set(sample.oldest_queued.map_or(0.0, |age| age.as_secs_f64()));
        self.store_bytes.set(gauge(sample.store_bytes));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_labelled_by_reason_and_404s_carry_no_flow() {
        let metrics = Metrics::new();
        metrics.webhook_answered("github", 202);
        metrics.webhook_refused("github", 401);
        metrics.webhook_refused("made-up-by-a-sender", 404);
        // A flow's own answer is no refusal, whatever its status.
        metrics.webhook_answered("github", 404);
        metrics.run_finished("github", "failed");
        metrics.step_ran("filter", Duration::from_millis(3));
        let text = metrics
            .render(Sample {
                queued: 2,
                oldest_queued: Some(Duration::from_millis(1500)),
                ..Sample::default()
            })
            .expect("renders");
        for line in [
            "weir_webhooks_received_total{flow=\"github\",status=\"202\"} 1",
            "weir_webhooks_received_total{flow=\"github\",status=\"401\"} 1",
            "weir_webhooks_rejected_total{flow=\"github\",reason=\"verify\"} 1",
            "weir_webhooks_unrouted_total 1",
            "weir_webhooks_received_total{flow=\"github\",status=\"404\"} 1",
            "weir_runs_finished_total{flow=\"github\",status=\"failed\"} 1",
            "weir_step_duration_seconds_count{plugin=\"filter\"} 1",
            "weir_runs_queued 2",
            "weir_queue_oldest_age_seconds 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("made-up-by-a-sender"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
