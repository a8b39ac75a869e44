//! One run's steps, in order: `when`, input mapping, the plugin call, the record.

use std::sync::{Arc, LazyLock};
use std::time::{Instant, SystemTime};

use futures_util::FutureExt as _;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::catalog::LiveFlow;
use crate::flow::{Redactor, Step};
use crate::plugin::{CallContext, Limits, StepFailure};
use crate::store::{AttemptRecord, RunOutcome, StepErrorRecord, StepRecord, StepStatus};

/// Plugin calls running at once, process-wide, of steps that may not call out: one per core.
/// Such a call is CPU work, so more calls than cores only add memory (each holds a pooled
/// instance) and latency. Runs waiting here hold no instance.
static CALL_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(cores()));

/// Plugin calls running at once of steps granted outbound HTTP. Such a call mostly waits on
/// its upstream (the guest yields to the runtime while it waits, and at every epoch tick while
/// it computes), so it must not hold one of the few CPU slots: a slow upstream would stall
/// every flow. With `CALL_SLOTS` this stays within the plugin pool's component instances.
const OUTBOUND_CALLS: usize = 128;
static OUTBOUND_CALL_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(OUTBOUND_CALLS));

/// The machine's cores, as the OS reports them (2 when it cannot say).
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Where step records go as they are made: the store for a served run, the terminal for
/// `weir run`.
pub trait StepSink {
    fn record(&mut self, step: StepRecord) -> impl Future<Output = ()> + Send;
}

/// How a run's steps ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub outcome: RunOutcome,
    /// Which step failed or filtered, and why.
    pub error: Option<String>,
    /// The run context at the end: `{"webhook": …, "steps": {"<id>": {"output": …}}}`.
    pub context: Value,
    /// For a failed run: the step that failed, as recorded (its `${ENV}` values masked).
    pub failed_step: Option<FailedStep>,
    /// For a failed step that may run again: when its next attempt is due. The run is then
    /// not over; the caller schedules it (or ends it failed, like `weir run`).
    pub retry_at: Option<SystemTime>,
}

/// The step that failed a run, and why: what an `on_failure` flow is told.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedStep {
    pub id: String,
    pub plugin: String,
    /// The mapped input, when the step got that far.
    pub input: Value,
    pub error: StepErrorRecord,
}

impl FailedStep {
    fn of(record: &StepRecord) -> Option<FailedStep> {
        Some(FailedStep {
            id: record.step_id.clone(),
            plugin: record.plugin.clone(),
            input: record.input.clone().unwrap_or(Value::Null),
            error: record.error.clone()?,
        })
    }
}

/// Where a run's steps start: the first, or a step that failed earlier and runs again, with
/// its earlier attempts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resume {
    /// The index of the step to run first.
    pub index: usize,
    /// The earlier attempts of that step.
    pub attempts: Vec<AttemptRecord>,
}

/// Who is running: ids passed to plugins.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub attempt: u32,
}

/// Runs every step of `live` on the webhook document, recording each into `sink`.
pub async fn execute_steps(
    live: Arc<LiveFlow>,
    webhook: Value,
    info: &RunInfo,
    sink: &mut impl StepSink,
) -> Outcome {
    let context = initial_context(webhook, None);
    execute_from(live, context, Resume::default(), info, sink).await
}

/// A run context before its first step: `{"webhook": …, "steps": {}}`, and `failed` for a
/// run of an `on_failure` flow.
pub fn initial_context(webhook: Value, failed: Option<Value>) -> Value {
    // Not `json!`, which would copy the webhook document through serde's serializer.
    let mut context = Map::with_capacity(3);
    context.insert("webhook".into(), webhook);
    if let Some(failed) = failed {
        context.insert("failed".into(), failed);
    }
    context.insert("steps".into(), Value::Object(Map::new()));
    Value::Object(context)
}

/// Runs the steps of `live` from `resume.index` on, in `context` (which holds the outputs of
/// the steps before it), recording each into `sink`.
pub async fn execute_from(
    live: Arc<LiveFlow>,
    mut context: Value,
    resume: Resume,
    info: &RunInfo,
    sink: &mut impl StepSink,
) -> Outcome {
    let flow = &live.flow;
    let redactor = &flow.redactor;
    let mut earlier_attempts = resume.attempts;
    for (index, step) in flow.steps.iter().enumerate().skip(resume.index) {
        // Attempts before this one: only the first step run may have some.
        let prior = std::mem::take(&mut earlier_attempts);
        let attempt = u32::try_from(prior.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let started_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let started = Instant::now();
        let mut record = StepRecord {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            step_id: step.id.to_string(),
            plugin: plugin_name(step),
            status: StepStatus::Skipped,
            input: None,
            output: None,
            logs: Vec::new(),
            error: None,
            started_at,
            duration_us: 0,
            calls: Vec::new(),
            attempts: Vec::new(),
        };
        if !step.should_run(&context) {
            // A skipped step's output is null, so later steps can still refer to it.
            set_output(&mut context, step, Value::Null, true);
            sink.record(masked(record, redactor)).await;
            continue;
        }
        let input = match step.input.evaluate(&context) {
            Ok(input) => input,
            Err(e) => {
                let message = e.to_string();
                record.status = StepStatus::Failed;
                record.error = Some(StepErrorRecord {
                    kind: "mapping".into(),
                    message: message.clone(),
                });
                record.duration_us = micros(started);
                add_attempt(&mut record, step, prior, attempt);
                let record = masked(record, redactor);
                let failed_step = FailedStep::of(&record);
                sink.record(record).await;
                return Outcome {
                    outcome: RunOutcome::Failed,
                    error: Some(masked_text(
                        format!("step '{}' failed: mapping: {message}", step.id),
                        redactor,
                    )),
                    context,
                    failed_step,
                    retry_at: None,
                };
            }
        };
        let plugin = live.plugins[index].clone();
        let call_ctx = CallContext {
            run_id: info.run_id.clone(),
            flow_id: flow.id.to_string(),
            step_id: step.id.to_string(),
            // Every try of this step so far: the run's (a crash counts) and its retries.
            attempt: info.attempt.saturating_add(attempt - 1),
        };
        let limits = Limits {
            timeout: step.timeout.unwrap_or(Limits::default().timeout),
            memory: step.memory.unwrap_or(Limits::default().memory),
            ..Limits::default()
        };
        let input_text = input.to_string();
        let config_text = step.config.to_string();
        let slots: &Semaphore = if step.outbound.grants.hosts.is_empty() {
            &CALL_SLOTS
        } else {
            &OUTBOUND_CALL_SLOTS
        };
        let slot = slots.acquire().await;
        // Awaited here: the guest yields to this runtime at every epoch tick and every host
        // call that waits, so a long call holds no worker. A panic in the host is caught here
        // and fails the step.
        let call = std::panic::AssertUnwindSafe(plugin.call_granted(
            &call_ctx,
            &input_text,
            &config_text,
            &limits,
            &step.outbound,
        ))
        .catch_unwind()
        .await;
        drop(slot);
        record.input = Some(input);
        record.duration_us = micros(started);
        let call = match call {
            Ok(call) => call,
            Err(panic) => {
                // A bug in the host, not the step's fault.
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let message = masked_text(message, redactor);
                tracing::error!(run = %info.run_id, step = %step.id, %message, "the plugin host panicked");
                record.status = StepStatus::Failed;
                record.error = Some(StepErrorRecord {
                    kind: "internal".into(),
                    message: format!("the plugin host failed: {message}"),
                });
                add_attempt(&mut record, step, prior, attempt);
                let record = masked(record, redactor);
                let failed_step = FailedStep::of(&record);
                sink.record(record).await;
                return Outcome {
                    outcome: RunOutcome::Failed,
                    error: Some(format!("step '{}' failed: the plugin host failed", step.id)),
                    context,
                    failed_step,
                    retry_at: None,
                };
            }
        };
        record.calls = call.calls;
        record.logs = call.logs;
        match call.result {
            Ok(output) => {
                record.status = StepStatus::Succeeded;
                record.output = Some(output.clone());
                set_output(&mut context, step, output, false);
                add_attempt(&mut record, step, prior, attempt);
                sink.record(masked(record, redactor)).await;
            }
            Err(failure) => {
                let filtered = failure.is_filtered();
                let message = failure_message(&failure);
                record.status = if filtered {
                    StepStatus::Filtered
                } else {
                    StepStatus::Failed
                };
                record.error = Some(StepErrorRecord {
                    kind: failure.kind().to_owned(),
                    message: message.clone(),
                });
                add_attempt(&mut record, step, prior, attempt);
                let retry_at = (!filtered
                    && attempt <= step.retry.retries
                    && step.retry.retries_on(failure.kind()))
                .then(|| SystemTime::now() + step.retry.delay(attempt, random_unit()));
                if let (Some(at), Some(last)) = (retry_at, record.attempts.last_mut()) {
                    last.retry_at = Some(humantime::format_rfc3339_millis(at).to_string());
                }
                let record = masked(record, redactor);
                let failed_step = (!filtered).then(|| FailedStep::of(&record)).flatten();
                sink.record(record).await;
                let (outcome, verb) = if filtered {
                    (RunOutcome::Filtered, "filtered the run")
                } else {
                    (RunOutcome::Failed, "failed")
                };
                let tries = if step.retry.retries > 0 {
                    format!(" (attempt {attempt} of {})", step.retry.retries + 1)
                } else {
                    String::new()
                };
                return Outcome {
                    outcome,
                    error: Some(masked_text(
                        format!("step '{}' {verb}{tries}: {failure}", step.id),
                        redactor,
                    )),
                    context,
                    failed_step,
                    retry_at,
                };
            }
        }
    }
    Outcome {
        outcome: RunOutcome::Succeeded,
        error: None,
        context,
        failed_step: None,
        retry_at: None,
    }
}

/// Lists this attempt after the `prior` ones in the record of a step that may retry.
fn add_attempt(record: &mut StepRecord, step: &Step, prior: Vec<AttemptRecord>, attempt: u32) {
    if step.retry.retries == 0 && prior.is_empty() {
        return;
    }
    record.attempts = prior;
    record.attempts.push(AttemptRecord {
        attempt,
        started_at: record.started_at.clone(),
        duration_us: record.duration_us,
        error: record.error.clone(),
        retry_at: None,
    });
}

/// A random number in `[0, 1)` for jitter; 0.5 (the backoff itself) when the OS has none.
fn random_unit() -> f64 {
    match getrandom::u64() {
        Ok(bits) => (bits >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

/// The record as it may be stored and shown: the flow's `${ENV}` values masked in its input,
/// output, logs and error (see [`crate::flow::Redactor`]). Every record leaves
/// [`execute_steps`] through here; the run context keeps the values unmasked for later steps.
fn masked(mut record: StepRecord, redactor: &Redactor) -> StepRecord {
    if redactor.is_empty() {
        return record;
    }
    for value in [&mut record.input, &mut record.output]
        .into_iter()
        .flatten()
    {
        redactor.value(value);
    }
    for line in &mut record.logs {
        redactor.string(&mut line.message);
    }
    if let Some(error) = &mut record.error {
        redactor.string(&mut error.message);
    }
    for attempt in &mut record.attempts {
        if let Some(error) = &mut attempt.error {
            redactor.string(&mut error.message);
        }
    }
    for call in &mut record.calls {
        redactor.string(&mut call.url);
        if let Some(error) = &mut call.error {
            redactor.string(error);
        }
    }
    record
}

/// A run's error as it may be stored and shown.
fn masked_text(mut text: String, redactor: &Redactor) -> String {
    redactor.string(&mut text);
    text
}

pub(super) fn set_output(context: &mut Value, step: &Step, output: Value, skipped: bool) {
    let mut entry = Map::new();
    entry.insert("output".into(), output);
    if skipped {
        entry.insert("skipped".into(), Value::Bool(true));
    }
    if let Some(steps) = context.get_mut("steps").and_then(Value::as_object_mut) {
        steps.insert(step.id.to_string(), Value::Object(entry));
    }
}

fn plugin_name(step: &Step) -> String {
    match &step.plugin {
        crate::flow::PluginRef::Builtin(name) => name.clone(),
        crate::flow::PluginRef::Path(path) => path.display().to_string(),
    }
}

/// The failure's message without its kind (the record keeps the kind apart).
fn failure_message(failure: &StepFailure) -> String {
    match failure {
        StepFailure::Step { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}
