//! Why a plugin could not load, and why a step call gave no output: a step error the plugin
//! returned is told apart from a timeout, the memory limit, a stack overflow, a panic or
//! another trap, and from output the host refused.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use wasmtime::Trap;

use super::Limits;
use super::bindings::weir::plugin::types;
use super::sandbox::Sandbox;

/// A plugin that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot read plugin {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("plugin {plugin} is not a valid Weir step component: {message}")]
    Invalid { plugin: String, message: String },
    #[error("no built-in plugin is named '{name}'; the built-in plugins are: {known}")]
    Unknown { name: String, known: String },
    #[error(
        "plugin {plugin} was built for Weir's plugin contract {found} (weir:plugin@{found}); this \
         Weir speaks {expected}: rebuild the plugin with the current weir-sdk"
    )]
    Contract {
        plugin: String,
        found: String,
        expected: &'static str,
    },
}

/// Why a step's config was refused by its plugin's `validate-config`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigRefused {
    /// The plugin's own message.
    #[error("{0}")]
    Invalid(String),
    /// `validate-config` itself failed (trapped, panicked, ran out of time).
    #[error("checking the config failed: {0}")]
    Failed(StepFailure),
}

impl PluginError {
    pub(super) fn engine(e: wasmtime::Error) -> Self {
        PluginError::Engine(format!("{e:#}"))
    }
}

/// The kinds of error a plugin can return itself (the WIT `step-error` variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepErrorKind {
    InvalidInput,
    Config,
    Upstream,
    Internal,
    Filtered,
}

impl StepErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepErrorKind::InvalidInput => "invalid-input",
            StepErrorKind::Config => "config",
            StepErrorKind::Upstream => "upstream",
            StepErrorKind::Internal => "internal",
            StepErrorKind::Filtered => "filtered",
        }
    }
}

/// Why a step call produced no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepFailure {
    /// The plugin returned an error.
    #[error("{}: {message}", kind.as_str())]
    Step {
        kind: StepErrorKind,
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("timeout: the step ran longer than {}", humantime::format_duration(*after))]
    Timeout { after: Duration },
    /// The plugin needed more memory than the step is granted.
    #[error(
        "memory limit: the step needed {} bytes; its limit is {limit} bytes",
        requested
    )]
    MemoryLimit { limit: u64, requested: u64 },
    /// Unbounded recursion.
    #[error("stack overflow: the step's call stack grew past its limit")]
    StackOverflow,
    /// The plugin panicked, and reported its message and location through `log.panicked`.
    #[error("panic: {message}")]
    Panic { message: String },
    /// Any other trap (out-of-bounds access, unreachable, instantiation failure, ...).
    #[error("trap: {message}")]
    Trap { message: String },
    /// The output is larger than the cap.
    #[error("output too large: {size} bytes; the cap is {cap} bytes")]
    OutputTooLarge { size: usize, cap: usize },
    /// The output is not JSON.
    #[error("output is not JSON: {message}")]
    OutputNotJson { message: String },
    /// The step called a host (or an address) it is not granted; the message names it.
    #[error("denied: {message}")]
    Denied { message: String },
}

impl StepFailure {
    /// A short machine-readable name of the failure: the step error's kind, or `timeout`,
    /// `memory-limit`, `stack-overflow`, `panic`, `trap`, `output-too-large`,
    /// `output-not-json`, `denied`.
    pub fn kind(&self) -> &'static str {
        match self {
            StepFailure::Step { kind, .. } => kind.as_str(),
            StepFailure::Timeout { .. } => "timeout",
            StepFailure::MemoryLimit { .. } => "memory-limit",
            StepFailure::StackOverflow => "stack-overflow",
            StepFailure::Panic { .. } => "panic",
            StepFailure::Trap { .. } => "trap",
            StepFailure::OutputTooLarge { .. } => "output-too-large",
            StepFailure::OutputNotJson { .. } => "output-not-json",
            StepFailure::Denied { .. } => "denied",
        }
    }

    /// True when the plugin asked for the run to stop as `filtered`.
    pub fn is_filtered(&self) -> bool {
        matches!(
            self,
            StepFailure::Step {
                kind: StepErrorKind::Filtered,
                ..
            }
        )
    }

    pub(super) fn from_step_error(e: types::StepError) -> Self {
        let (kind, message) = match e {
            types::StepError::InvalidInput(m) => (StepErrorKind::InvalidInput, m),
            types::StepError::Config(m) => (StepErrorKind::Config, m),
            types::StepError::Upstream(m) => (StepErrorKind::Upstream, m),
            types::StepError::Internal(m) => (StepErrorKind::Internal, m),
            types::StepError::Filtered(m) => (StepErrorKind::Filtered, m),
        };
        StepFailure::Step { kind, message }
    }
}

/// Accepts the plugin's output if it is JSON and under the cap.
pub(super) fn check_output(
    output: String,
    max_output: usize,
) -> Result<serde_json::Value, StepFailure> {
    if output.len() > max_output {
        return Err(StepFailure::OutputTooLarge {
            size: output.len(),
            cap: max_output,
        });
    }
    serde_json::from_str(&output).map_err(|e| StepFailure::OutputNotJson {
        message: e.to_string(),
    })
}

/// Tells what a trap (or any error out of instantiation or the call) was.
pub(super) fn classify_trap(
    err: &wasmtime::Error,
    sandbox: &Sandbox,
    limits: &Limits,
) -> StepFailure {
    if let Some(requested) = sandbox.limiter.memory_refused {
        return StepFailure::MemoryLimit {
            limit: limits.memory,
            requested: requested as u64,
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => StepFailure::Timeout {
            after: limits.timeout,
        },
        Some(Trap::StackOverflow) => StepFailure::StackOverflow,
        Some(trap) => match &sandbox.panic {
            Some(message) => StepFailure::Panic {
                message: message.clone(),
            },
            None => StepFailure::Trap {
                message: trap.to_string(),
            },
        },
        None => StepFailure::Trap {
            message: format!("{err:#}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_checked_for_size_then_json() {
        assert_eq!(
            check_output("x".repeat(11), 10),
            Err(StepFailure::OutputTooLarge { size: 11, cap: 10 })
        );
        assert!(matches!(
            check_output("{nope".into(), 100),
            Err(StepFailure::OutputNotJson { .. })
        ));
        assert_eq!(check_output("[1]".into(), 100), Ok(serde_json::json!([1])));
    }
}
