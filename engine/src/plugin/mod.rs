//! The WebAssembly host: runs each step of a flow as a sandboxed component under wasmtime.
//!
//! One [`PluginHost`] owns the wasmtime `Engine` (component model, epoch interruption, the
//! pooling allocator where the machine allows it), the `Linker` with the host interfaces, the
//! epoch ticker thread and the on-disk cache of compiled components. A [`Plugin`] is a
//! component compiled once and pre-linked (`InstancePre`); every call gets a fresh `Store`, so
//! no state leaks from one run to the next.
//!
//! Calls are asynchronous and never block the thread that awaits them: WASI's host calls
//! (`sleep`, stdout, ...) are tokio futures, and a guest computing yields to the executor at
//! every epoch tick. A call ends at its deadline whatever the guest is doing: computing, it
//! traps at the first tick past the deadline; waiting in a host call, the call's future is
//! dropped by a timer. Compiling is CPU work of up to seconds: [`PluginHost::compile`] runs it
//! on tokio's blocking threads, and the synchronous `load_*` methods are for callers outside a
//! runtime.
//!
//! A guest gets nothing it was not granted: WASI is linked so that ordinary Rust guests load,
//! but with no preopened directories, no environment, no arguments and no sockets. Its stdout
//! and stderr are captured, bounded, into the step's logs. Outbound HTTP goes through
//! `wasi:http/outgoing-handler` to the hosts the step's flow grants it ([`outbound`]).
//!
//! This module knows nothing of HTTP, flows or storage.

mod builtin;
mod cache;
mod failure;
pub mod outbound;
mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

pub use failure::{ConfigRefused, PluginError, StepErrorKind, StepFailure};
pub use sandbox::{LogLevel, LogLine};

use sandbox::Sandbox;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "step-plugin",
        // The guest runs on a fiber so that WASI's host calls can await; the host's own
        // imports (`log`) answer at once and stay synchronous.
        exports: { default: async },
    });
}

use bindings::weir::plugin::types;

/// The version of the `weir:plugin` WIT package this host speaks (`sdk/wit/step.wit`).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// How often the epoch ticker advances; timeouts are rounded up to this.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Ticks a guest computes before it yields to the executor (and its deadline is checked).
const YIELD_TICKS: u64 = 2;

/// The most memory a step can be granted; the pooling allocator reserves address space for it.
pub const MAX_MEMORY: u64 = 4 << 30;

/// What one step call may use. Flows override `timeout` and `memory` per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for instantiation plus the call, waiting in host calls included.
    pub timeout: Duration,
    /// Linear memory, in bytes, across the component's memories.
    pub memory: u64,
    /// Largest output JSON accepted, in bytes.
    pub max_output: usize,
    /// Log bytes kept per call (the `log` import plus stdout and stderr); the rest is dropped
    /// and counted.
    pub max_logs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory: 64 << 20,
            max_output: 16 << 20,
            max_logs: 64 << 10,
        }
    }
}

/// Where a call comes from; passed to the plugin.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub run_id: String,
    pub flow_id: String,
    pub step_id: String,
    pub attempt: u32,
}

/// What a step call gave.
#[derive(Debug)]
pub struct StepCall {
    /// The output JSON, or why there is none.
    pub result: Result<serde_json::Value, StepFailure>,
    /// What the plugin logged, in order, within [`Limits::max_logs`].
    pub logs: Vec<LogLine>,
    /// Instantiation plus the call.
    pub duration: Duration,
    /// The outbound HTTP calls the step made, in order.
    pub calls: Vec<outbound::CallRecord>,
}

/// Settings of the host itself.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// Where compiled components are kept between restarts; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Use the on-demand allocator even where pooling would work.
    pub no_pooling: bool,
}

impl HostConfig {
    /// The default cache folder: `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`, else
    /// `$HOME/.cache/weir`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
            return Some(dir.into());
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("weir"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/weir"))
    }
}

/// The wasmtime engine, linker, epoch ticker and compile cache shared by every plugin.
pub struct PluginHost {
    engine: Engine,
    linker: Arc<Linker<Sandbox>>,
    cache: Option<cache::Cache>,
    pooling: bool,
    ticker_stop: Arc<AtomicBool>,
    outbound: outbound::OutboundConfig,
}

impl PluginHost {
    /// Builds the engine (trying the pooling allocator first), links the host interfaces and
    /// starts the epoch ticker.
    pub fn new(config: HostConfig) -> Result<Self, PluginError> {
        let (engine, pooling) = if config.no_pooling {
            (
                Engine::new(&engine_config(false)).map_err(PluginError::engine)?,
                false,
            )
        } else {
            match Engine::new(&engine_config(true)) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                    (
                        Engine::new(&engine_config(false)).map_err(PluginError::engine)?,
                        false,
                    )
                }
            }
        };
        let mut linker = Linker::<Sandbox>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(PluginError::engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(PluginError::engine)?;
        bindings::StepPlugin::add_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |s| s)
            .map_err(PluginError::engine)?;
        let outbound =
            outbound::OutboundConfig::new(None).map_err(|e| PluginError::Engine(e.to_string()))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("weir-epoch".into())
                .spawn(move || {
                    // Ticks follow the wall clock, not the number of wake-ups: on a loaded
                    // machine a late wake-up catches up, so deadlines stay deadlines.
                    let start = Instant::now();
                    let mut ticks: u128 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        let due = start.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                        while ticks < due {
                            engine.increment_epoch();
                            ticks += 1;
                        }
                    }
                })
                .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        }
        let cache = config.cache_dir.map(|dir| cache::Cache::new(dir, &engine));
        Ok(PluginHost {
            engine,
            linker: Arc::new(linker),
            cache,
            pooling,
            ticker_stop,
            outbound,
        })
    }

    /// Sets how steps' outbound calls are made (TLS roots, connect timeout), for the plugins
    /// loaded from now on.
    pub fn set_outbound(&mut self, config: outbound::OutboundConfig) {
        self.outbound = config;
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles (or loads from the cache) a component and links it. `name` is how errors and
    /// logs refer to it.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let started = Instant::now();
        let compile = || {
            tracing::info!(plugin = name, bytes = bytes.len(), "compiling plugin");
            Component::new(&self.engine, bytes)
        };
        let loaded = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, bytes, compile),
            None => compile().map(|c| (c, false)),
        };
        let (component, cached) = loaded.map_err(|e| PluginError::Invalid {
            plugin: name.to_owned(),
            // One line: wasmparser's messages can span several (byte arrays).
            message: format!("{e:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })?;
        check_contract(name, &component, &self.engine)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::StepPluginPre::new)
            .map_err(|e| PluginError::Invalid {
                plugin: name.to_owned(),
                message: format!("{e:#}"),
            })?;
        if cached {
            tracing::debug!(plugin = name, elapsed = ?started.elapsed(), "plugin loaded from the cache");
        } else {
            tracing::info!(plugin = name, elapsed = ?started.elapsed(), "plugin compiled");
        }
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                name: name.to_owned(),
                engine: self.engine.clone(),
                pre,
                from_cache: cached,
                outbound: self.outbound.clone(),
            }),
        })
    }

    /// As [`PluginHost::load_bytes`], on one of tokio's blocking threads: compiling takes up to
    /// seconds of CPU, which must not stall the runtime's workers (webhooks, runs).
    pub async fn compile(
        self: &Arc<Self>,
        name: String,
        bytes: Arc<[u8]>,
    ) -> Result<Plugin, PluginError> {
        let host = Arc::clone(self);
        let plugin = name.clone();
        tokio::task::spawn_blocking(move || host.load_bytes(&name, &bytes))
            .await
            .unwrap_or_else(|e| {
                Err(PluginError::Invalid {
                    plugin,
                    message: format!("compiling stopped: {e}"),
                })
            })
    }

    /// As [`PluginHost::load_builtin`], on one of tokio's blocking threads.
    pub async fn compile_builtin(self: &Arc<Self>, name: &str) -> Result<Plugin, PluginError> {
        let bytes = Self::builtin_bytes(name).ok_or_else(|| PluginError::Unknown {
            name: name.to_owned(),
            known: Self::builtin_names().collect::<Vec<_>>().join(", "),
        })?;
        self.compile(name.to_owned(), bytes.into()).await
    }

    /// Reads and loads a `.wasm` component file.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| PluginError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        self.load_bytes(&path.display().to_string(), &bytes)
    }

    /// The names of the plugins built into this binary.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        builtin::PLUGINS.iter().map(|(name, _)| *name)
    }

    /// The component bytes of a built-in plugin, as embedded in this binary.
    pub fn builtin_bytes(name: &str) -> Option<&'static [u8]> {
        builtin::PLUGINS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| *bytes)
    }

    /// Loads one built-in plugin by name.
    pub fn load_builtin(&self, name: &str) -> Result<Plugin, PluginError> {
        let (_, bytes) = builtin::PLUGINS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| PluginError::Unknown {
                name: name.to_owned(),
                known: Self::builtin_names().collect::<Vec<_>>().join(", "),
            })?;
        self.load_bytes(name, bytes)
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Refuses a component built against another version of the `weir:plugin` package with a
/// message saying what to do, rather than the linker's "missing import".
fn check_contract(name: &str, component: &Component, engine: &Engine) -> Result<(), PluginError> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(n, _)| n)
        .chain(ty.exports(engine).map(|(n, _)| n));
    for item in names {
        if let Some(rest) = item.strip_prefix("weir:plugin/") {
            let found = rest.split_once('@').map_or("unversioned", |(_, v)| v);
            if found != CONTRACT_VERSION {
                return Err(PluginError::Contract {
                    plugin: name.to_owned(),
                    found: found.to_owned(),
                    expected: CONTRACT_VERSION,
                });
            }
        }
    }
    Ok(())
}

fn engine_config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Deep recursion in a guest ends as a stack-overflow trap well before the host's stack.
    config.max_wasm_stack(1 << 20);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(512)
            .total_tables(512)
            .max_memory_size(MAX_MEMORY as usize)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
            .max_core_instances_per_component(16)
            // A fresh instance per call makes resetting a slot the hot path. Keeping the first
            // MiBs of memory resident, and resetting only the pages a call touched (found with
            // Linux's PAGEMAP_SCAN where the kernel has it) with memset, avoids a page fault per
            // touched page on the next call and the TLB shootdowns madvise costs on every core.
            .linear_memory_keep_resident(4 << 20)
            // One fiber stack per instance: every call runs on one.
            .total_stacks(256)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .decommit_batch_size(16);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

struct PluginInner {
    name: String,
    engine: Engine,
    pre: bindings::StepPluginPre<Sandbox>,
    from_cache: bool,
    outbound: outbound::OutboundConfig,
}

/// A compiled, linked plugin. Cheap to clone; calls from many threads at once are fine.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Plugin {
    /// How the plugin was named when it loaded (built-in name or file path).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// True when the compiled component came from the disk cache instead of the compiler.
    pub fn from_cache(&self) -> bool {
        self.inner.from_cache
    }

    /// A fresh store for one call within `limits`: a computing guest reaches an epoch
    /// deadline every `YIELD_TICKS`; past the call's deadline it traps, otherwise it yields so
    /// other tasks on this worker go on.
    fn store(
        &self,
        limits: &Limits,
        deadline: Instant,
        http: outbound::StepHttp,
    ) -> Store<Sandbox> {
        let mut store = Store::new(&self.inner.engine, Sandbox::new(limits, http));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(YIELD_TICKS);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(YIELD_TICKS)
            })
        });
        store
    }

    /// Runs the step once in a fresh sandbox, within `limits`. Never blocks the thread: the
    /// guest yields to the executor every few milliseconds and at every host call that waits.
    /// The step gets no outbound HTTP; see [`Plugin::call_granted`].
    pub async fn call(
        &self,
        ctx: &CallContext,
        input: &str,
        config: &str,
        limits: &Limits,
    ) -> StepCall {
        self.call_granted(ctx, input, config, limits, &outbound::Outbound::default())
            .await
    }

    /// As [`Plugin::call`], with the outbound HTTP the step is granted. A call the grants
    /// refuse fails the step as `denied`, naming the host, whatever the guest made of it.
    pub async fn call_granted(
        &self,
        ctx: &CallContext,
        input: &str,
        config: &str,
        limits: &Limits,
        grants: &outbound::Outbound,
    ) -> StepCall {
        let started = Instant::now();
        let calls = outbound::CallLog::default();
        // Outbound calls end a little before the step does, so the guest still gets to see
        // (and report) a call's timeout.
        let margin = (limits.timeout / 10).min(Duration::from_secs(1));
        let http = outbound::StepHttp::new(
            self.inner.outbound.clone(),
            grants.clone(),
            started + limits.timeout - margin,
            calls.clone(),
        );
        let mut store = self.store(limits, started + limits.timeout, http);
        let wit_ctx = types::Context {
            run_id: ctx.run_id.clone(),
            flow_id: ctx.flow_id.clone(),
            step_id: ctx.step_id.clone(),
            attempt: ctx.attempt,
        };
        let (input, config) = (input.to_owned(), config.to_owned());
        let pre = &self.inner.pre;
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .weir_plugin_step()
                .call_run(&mut store, &wit_ctx, &input, &config)
                .await
        };
        // A guest waiting in a host call (a `sleep`) reaches no epoch deadline: the timer
        // drops the call, which unwinds the guest's fiber.
        let outcome = tokio::time::timeout(limits.timeout, call).await;
        let duration = started.elapsed();
        let sandbox = store.into_data();
        let result = match outcome {
            Ok(Ok(Ok(output))) => failure::check_output(output, limits.max_output),
            Ok(Ok(Err(step_error))) => Err(StepFailure::from_step_error(step_error)),
            Ok(Err(trap)) => Err(failure::classify_trap(&trap, &sandbox, limits)),
            Err(_elapsed) => Err(StepFailure::Timeout {
                after: limits.timeout,
            }),
        };
        let result = match calls.denied() {
            Some(message) => Err(StepFailure::Denied { message }),
            None => result,
        };
        StepCall {
            result,
            logs: sandbox.into_logs(),
            duration,
            calls: calls.calls(),
        }
    }

    /// Asks the plugin whether it can run with `config` (its `validate-config` export), in a
    /// fresh sandbox within `limits`: `Err` with the plugin's message when it cannot.
    pub async fn validate_config(
        &self,
        config: &str,
        limits: &Limits,
    ) -> Result<(), ConfigRefused> {
        let started = Instant::now();
        // No grants: checking a config never reaches the network.
        let http = outbound::StepHttp::new(
            self.inner.outbound.clone(),
            outbound::Outbound::default(),
            started + limits.timeout,
            outbound::CallLog::default(),
        );
        let mut store = self.store(limits, started + limits.timeout, http);
        let config = config.to_owned();
        let pre = &self.inner.pre;
        let check = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .weir_plugin_step()
                .call_validate_config(&mut store, &config)
                .await
        };
        let outcome = tokio::time::timeout(limits.timeout, check).await;
        let sandbox = store.into_data();
        match outcome {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(message))) => Err(ConfigRefused::Invalid(message)),
            Ok(Err(trap)) => Err(ConfigRefused::Failed(failure::classify_trap(
                &trap, &sandbox, limits,
            ))),
            Err(_elapsed) => Err(ConfigRefused::Failed(StepFailure::Timeout {
                after: limits.timeout,
            })),
        }
    }
}
