//! A native test harness: call a step the way Weir's host does (JSON in, JSON out) from a
//! plugin's own `cargo test`, without WebAssembly, and see what it logged.

use std::cell::RefCell;

use serde_json::Value;

use crate::{Context, Level, StepError};

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

/// What one call gave: the output JSON or the step's error, and the logs it wrote.
#[derive(Debug)]
pub struct Outcome {
    pub output: Result<Value, StepError>,
    pub logs: Vec<LogLine>,
}

thread_local! {
    static LOGS: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn capture(level: Level, message: &str) {
    LOGS.with(|logs| {
        logs.borrow_mut().push(LogLine {
            level,
            message: message.to_owned(),
        })
    });
}

/// A context for tests: run `test-run`, flow `test-flow`, step `test-step`, attempt 1.
pub fn context() -> Context {
    Context {
        run_id: "test-run".into(),
        flow_id: "test-flow".into(),
        step_id: "test-step".into(),
        attempt: 1,
    }
}

/// Calls `step` with `input` and `config` as JSON, through the same decoding and encoding as
/// the component, and captures its logs.
pub fn call<I, C, O>(
    step: fn(&Context, I, C) -> Result<O, StepError>,
    input: Value,
    config: Value,
) -> Outcome
where
    I: serde::de::DeserializeOwned,
    C: serde::de::DeserializeOwned,
    O: serde::Serialize,
{
    call_with(step, &context(), input, config)
}

/// [`call`] with a context of your own.
pub fn call_with<I, C, O>(
    step: fn(&Context, I, C) -> Result<O, StepError>,
    ctx: &Context,
    input: Value,
    config: Value,
) -> Outcome
where
    I: serde::de::DeserializeOwned,
    C: serde::de::DeserializeOwned,
    O: serde::Serialize,
{
    LOGS.with(|logs| logs.borrow_mut().clear());
    let output = crate::call_json(step, ctx, &input.to_string(), &config.to_string())
        .map(|text| serde_json::from_str(&text).expect("a Serialize value encodes to valid JSON"));
    let logs = LOGS.with(|logs| std::mem::take(&mut *logs.borrow_mut()));
    Outcome { output, logs }
}

/// What Weir's `validate-config` answers for `config`, as the component would: the config
/// deserializes into `step`'s `Config` type and passes `check` (the function named by
/// `#[weir_sdk::step(validate = ...)]`, or `None`). `Err` is the message Weir shows at the
/// flow's `config` line.
pub fn validate_config<I, C, O>(
    _step: fn(&Context, I, C) -> Result<O, StepError>,
    check: Option<crate::ConfigCheck<C>>,
    config: Value,
) -> Result<(), String>
where
    C: serde::de::DeserializeOwned,
{
    crate::validate_json(&config.to_string(), check)
}
