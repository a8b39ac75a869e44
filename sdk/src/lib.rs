//! Write Weir step plugins in plain Rust.
//!
//! A step is one function from a serde input and config to a serde output:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use weir_sdk::{Context, StepError};
//!
//! #[derive(Deserialize)]
//! struct Input { name: String }
//!
//! #[derive(Deserialize)]
//! struct Config { greeting: String }
//!
//! #[derive(Serialize)]
//! struct Output { text: String }
//!
//! #[weir_sdk::step]
//! fn run(_ctx: &Context, input: Input, config: Config) -> Result<Output, StepError> {
//!     weir_sdk::info!("greeting {}", input.name);
//!     Ok(Output { text: format!("{}, {}!", config.greeting, input.name) })
//! }
//!
//! let out = weir_sdk::testing::call(run, serde_json::json!({"name": "Ada"}),
//!                                   serde_json::json!({"greeting": "Hello"}));
//! assert_eq!(out.output.unwrap(), serde_json::json!({"text": "Hello, Ada!"}));
//! assert_eq!(out.logs[0].message, "greeting Ada");
//! ```
//!
//! Weir checks a step's config when the flow loads (`validate-config`): the config must
//! deserialize into the step's `Config`, and pass the check named by `#[weir_sdk::step(validate
//! = path)]` when there is one (`fn(&Config) -> Result<(), StepError>`), so a config the step
//! cannot use is an error at the flow's `config` line, not at its first run. `?` works on any
//! `std::error::Error` inside a step (it becomes `StepError::Internal`), and a panic is
//! reported to Weir with its message and location (the step's error kind is `panic`).
//!
//! Every call runs in a fresh instance of the component: Weir instantiates it anew for each
//! `run` and each `validate-config`, so that nothing one run leaves in memory reaches the next.
//! A step parses and compiles its config (a regex, a template, a schema) once per call; state
//! kept in a `static` between calls (a `OnceLock`, a cache keyed by the config text) starts
//! empty every time, so it is never hit and only adds code.
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the result is a WebAssembly
//! component that Weir runs with `plugin = "path/to/name.wasm"`. See `sdk/README.md`.

// Lets generated code name `::weir_sdk` inside this crate too.
extern crate self as weir_sdk;

mod error;
pub mod http;
mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use error::StepError;
pub use log::{Level, emit as log};
pub use serde_json::{Value, json};
pub use weir_sdk_macros::step;

/// Config type for steps that take no config: accepts anything and keeps nothing.
pub type NoConfig = serde::de::IgnoredAny;

/// Where a call comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The run's id (time-ordered, unique).
    pub run_id: String,
    /// The flow's id: its file name without `.toml`.
    pub flow_id: String,
    /// This step's id in the flow.
    pub step_id: String,
    /// 1 for the first attempt; raised when a run is executed again after a crash.
    pub attempt: u32,
}

/// The one path from JSON text to a typed call and back, shared by the component export and
/// the native test harness, so tests exercise exactly what the host will call.
fn call_json<I, C, O>(
    f: fn(&Context, I, C) -> Result<O, StepError>,
    ctx: &Context,
    input: &str,
    config: &str,
) -> Result<String, StepError>
where
    I: serde::de::DeserializeOwned,
    C: serde::de::DeserializeOwned,
    O: serde::Serialize,
{
    let config: C = serde_json::from_str(config).map_err(|e| StepError::Config(e.to_string()))?;
    let input: I =
        serde_json::from_str(input).map_err(|e| StepError::InvalidInput(e.to_string()))?;
    let output = f(ctx, input, config)?;
    serde_json::to_string(&output)
        .map_err(|e| StepError::Internal(format!("output is not JSON: {e}")))
}

/// A step's deeper check of its config, beyond deserializing it: `#[weir_sdk::step(validate =
/// path)]` names one.
pub type ConfigCheck<C> = fn(&C) -> Result<(), StepError>;

/// The one path of `validate-config`, shared by the component export and the native test
/// harness: the config deserializes into the step's `Config`, then passes the step's check.
/// The error is the message the host shows at the step's `config` line.
fn validate_json<C>(config: &str, check: Option<ConfigCheck<C>>) -> Result<(), String>
where
    C: serde::de::DeserializeOwned,
{
    let config: C = serde_json::from_str(config).map_err(|e| e.to_string())?;
    match check {
        Some(check) => check(&config).map_err(|e| e.message().to_owned()),
        None => Ok(()),
    }
}

#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use wit_bindgen;

    #[cfg(target_arch = "wasm32")]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "step-plugin",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "::weir_sdk::__private::bindings",
            runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
        });
    }

    /// Ties a step and its config check together natively, where nothing else uses the check:
    /// a check of the wrong type is a compile error in the plugin's own `cargo test` too.
    pub const fn check_type<I, C, O>(
        _step: fn(&crate::Context, I, C) -> Result<O, crate::StepError>,
        _check: Option<crate::ConfigCheck<C>>,
    ) {
    }

    /// Reports a panic to the host (message and location) instead of printing it: the host
    /// records the step's error as `panic` with that message. Installed before the step runs.
    #[cfg(target_arch = "wasm32")]
    fn report_panics() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                bindings::weir::plugin::log::panicked(&message, &location);
            }));
        });
    }

    /// Called by the code `#[step]` generates inside the component.
    #[cfg(target_arch = "wasm32")]
    pub fn guest_run<I, C, O>(
        f: fn(&crate::Context, I, C) -> Result<O, crate::StepError>,
        ctx: bindings::weir::plugin::types::Context,
        input: &str,
        config: &str,
    ) -> Result<String, bindings::weir::plugin::types::StepError>
    where
        I: serde::de::DeserializeOwned,
        C: serde::de::DeserializeOwned,
        O: serde::Serialize,
    {
        use bindings::weir::plugin::types::StepError as Wit;
        report_panics();
        let ctx = crate::Context {
            run_id: ctx.run_id,
            flow_id: ctx.flow_id,
            step_id: ctx.step_id,
            attempt: ctx.attempt,
        };
        crate::call_json(f, &ctx, input, config).map_err(|e| match e {
            crate::StepError::InvalidInput(m) => Wit::InvalidInput(m),
            crate::StepError::Config(m) => Wit::Config(m),
            crate::StepError::Upstream(m) => Wit::Upstream(m),
            crate::StepError::Internal(m) => Wit::Internal(m),
            crate::StepError::Filtered(m) => Wit::Filtered(m),
        })
    }

    /// Called by the code `#[step]` generates inside the component, for `validate-config`.
    /// `_step` only fixes the config type: it is the step function, never called here.
    #[cfg(target_arch = "wasm32")]
    pub fn guest_validate<I, C, O>(
        _step: fn(&crate::Context, I, C) -> Result<O, crate::StepError>,
        check: Option<crate::ConfigCheck<C>>,
        config: &str,
    ) -> Result<(), String>
    where
        C: serde::de::DeserializeOwned,
    {
        report_panics();
        crate::validate_json(config, check)
    }
}
