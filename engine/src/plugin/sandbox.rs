//! The per-call state of a plugin's `Store`: an empty WASI context, the memory limiter and the
//! bounded log buffer that the `log` import and the guest's stdout/stderr write into.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::Limits;
use super::bindings::weir::plugin::log;
use super::outbound::StepHttp;

/// The level of a log line; `stdout` and `stderr` are what the guest printed. Stored and shown
/// as its lowercase name (`info`, `stdout`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Stdout,
    Stderr,
}

impl LogLevel {
    /// The level's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Stdout => "stdout",
            LogLevel::Stderr => "stderr",
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line a plugin logged: what a call returns, and what a step's record keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// How the plugin logged it.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// Log lines of one call, capped in bytes. Shared with the stdout/stderr streams.
#[derive(Debug)]
struct LogBuffer {
    lines: Vec<LogLine>,
    bytes: usize,
    cap: usize,
    dropped: usize,
    /// Partial lines the guest printed without a newline yet (stdout, stderr).
    pending: [Vec<u8>; 2],
}

impl LogBuffer {
    fn push(&mut self, level: LogLevel, message: String) {
        if self.bytes + message.len() > self.cap {
            self.dropped += message.len();
            return;
        }
        self.bytes += message.len();
        self.lines.push(LogLine { level, message });
    }

    /// Splits printed bytes into lines; a partial line waits for its newline (or the end).
    fn print(&mut self, stream: usize, bytes: &[u8]) {
        let level = if stream == 0 {
            LogLevel::Stdout
        } else {
            LogLevel::Stderr
        };
        let room = (self.cap * 2).saturating_sub(self.pending[stream].len());
        let take = bytes.len().min(room);
        self.dropped += bytes.len() - take;
        self.pending[stream].extend_from_slice(&bytes[..take]);
        while let Some(pos) = self.pending[stream].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending[stream].drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.push(level, text);
        }
    }

    fn finish(&mut self) {
        for (stream, level) in [(0, LogLevel::Stdout), (1, LogLevel::Stderr)] {
            if !self.pending[stream].is_empty() {
                let text = String::from_utf8_lossy(&std::mem::take(&mut self.pending[stream]))
                    .into_owned();
                self.push(level, text);
            }
        }
        if self.dropped > 0 {
            let note = format!(
                "[{} log bytes dropped: over the cap of {}]",
                self.dropped, self.cap
            );
            self.lines.push(LogLine {
                level: LogLevel::Warn,
                message: note,
            });
            self.dropped = 0;
        }
    }
}

/// The memory limiter: refuses growth that would take the component's memories, together,
/// past the step's limit, and remembers that it did, so a trap that follows is reported as the
/// memory limit and not as whatever the guest did next.
pub(super) struct Limiter {
    memory_limit: usize,
    /// Bytes of every memory of the instance: each memory's creation and growth pass here.
    memory_used: usize,
    /// The bytes of the last growth allowed, until it is known to have happened.
    memory_last_growth: usize,
    /// The total the refused growth asked for.
    pub(super) memory_refused: Option<usize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_used
            .saturating_add(desired.saturating_sub(current));
        if total > self.memory_limit {
            self.memory_refused = Some(total);
            return Ok(false);
        }
        self.memory_last_growth = total - self.memory_used;
        self.memory_used = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Allowed above but refused by the memory's own maximum: the bytes were not taken.
        self.memory_used -= std::mem::take(&mut self.memory_last_growth);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

/// The data of a plugin's `Store`: one field per capability the host grants (WASI with
/// nothing in it, the log, outbound HTTP through the step's checked sender), beside the
/// limiter. A new capability is a field with its context and policy, and its `...View` impl
/// here, linked in `PluginHost::new`.
pub(super) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    logs: Arc<Mutex<LogBuffer>>,
    /// What the guest reported through `log.panicked` just before it trapped.
    pub(super) panic: Option<String>,
    /// Outbound HTTP: every request goes through the step's checked sender, which refuses
    /// what the step is not granted (all of it, when nothing is).
    http_ctx: WasiHttpCtx,
    http: StepHttp,
}

impl Sandbox {
    pub(super) fn new(limits: &Limits, http: StepHttp) -> Self {
        let logs = Arc::new(Mutex::new(LogBuffer {
            lines: Vec::new(),
            bytes: 0,
            cap: limits.max_logs,
            dropped: 0,
            pending: [Vec::new(), Vec::new()],
        }));
        // Nothing granted: no preopened directories, no environment, no arguments, no network,
        // no name lookups. Only stdout and stderr, captured into the logs.
        let wasi = WasiCtx::builder()
            .stdout(Capture {
                logs: logs.clone(),
                stream: 0,
            })
            .stderr(Capture {
                logs: logs.clone(),
                stream: 1,
            })
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_limit: usize::try_from(limits.memory).unwrap_or(usize::MAX),
                memory_used: 0,
                memory_last_growth: 0,
                memory_refused: None,
            },
            logs,
            panic: None,
            http_ctx: WasiHttpCtx::new(),
            http,
        }
    }

    pub(super) fn into_logs(self) -> Vec<LogLine> {
        let mut logs = lock(&self.logs);
        logs.finish();
        std::mem::take(&mut logs.lines)
    }
}

fn lock(logs: &Mutex<LogBuffer>) -> std::sync::MutexGuard<'_, LogBuffer> {
    // A poisoned buffer only means a writer panicked mid-push; the lines are still usable.
    logs.lock().unwrap_or_else(|e| e.into_inner())
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Sandbox {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl log::Host for Sandbox {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        lock(&self.logs).push(level, message);
    }

    fn panicked(&mut self, message: String, location: String) {
        // Bounded like a log line: the guest chooses the message.
        let mut text = if location.is_empty() {
            message
        } else {
            format!("{message} (at {location})")
        };
        let cap = lock(&self.logs).cap;
        if text.len() > cap {
            let mut cut = cap;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        self.panic.get_or_insert(text);
    }
}

impl super::bindings::weir::plugin::types::Host for Sandbox {}

/// The guest's stdout or stderr: every write succeeds (so `println!` never panics in the
/// guest), and what fits under the cap becomes log lines.
#[derive(Clone)]
struct Capture {
    logs: Arc<Mutex<LogBuffer>>,
    stream: usize,
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        lock(&self.logs).print(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        lock(&self.logs).print(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Instance, Module, Store};

    use super::Limiter;

    /// The limit holds across a component's memories together: a module with two memories
    /// may grow the first to most of the limit, and then the second only within what is left.
    #[test]
    fn the_memory_limit_counts_every_memory_together() {
        const PAGE: usize = 64 << 10;
        let engine = Engine::default();
        let module = Module::new(
            &engine,
            wat::parse_str(
                r#"(module
                    (memory $a 0)
                    (memory $b 0)
                    (func (export "grow_a") (param i32) (result i32) (memory.grow $a (local.get 0)))
                    (func (export "grow_b") (param i32) (result i32) (memory.grow $b (local.get 0))))"#,
            )
            .expect("valid WAT"),
        )
        .expect("multi-memory is on");
        let mut store = Store::new(
            &engine,
            Limiter {
                memory_limit: 10 * PAGE,
                memory_used: 0,
                memory_last_growth: 0,
                memory_refused: None,
            },
        );
        store.limiter(|limiter| limiter);
        let instance = Instance::new(&mut store, &module, &[]).expect("instantiates");
        let grow_a = instance
            .get_typed_func::<i32, i32>(&mut store, "grow_a")
            .unwrap();
        let grow_b = instance
            .get_typed_func::<i32, i32>(&mut store, "grow_b")
            .unwrap();
        assert_eq!(grow_a.call(&mut store, 8).unwrap(), 0, "8 of 10 pages");
        assert_eq!(
            grow_b.call(&mut store, 4).unwrap(),
            -1,
            "8 + 4 pages pass the limit"
        );
        assert_eq!(store.data().memory_refused, Some(12 * PAGE));
        assert_eq!(grow_b.call(&mut store, 2).unwrap(), 0, "8 + 2 pages fit");
        assert_eq!(grow_a.call(&mut store, 1).unwrap(), -1);
    }
}
