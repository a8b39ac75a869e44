//! Support for Weir's tests: the paths of built artefacts, a shared plugin host, and helpers
//! that start Weir and talk to it the way a user would.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weir::plugin::{HostConfig, PluginHost};

/// The test guests built by `tests/build.rs`.
pub const HOSTILE_WASM: &str = env!("WEIR_TEST_HOSTILE_WASM");

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repo")
        .to_owned()
}

/// The cargo target directory of this build.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The `weir` binary. The README's test command builds it before the tests run
/// (`cargo build -p weir`); `WEIR_BIN` points elsewhere.
pub fn weir_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WEIR_BIN") {
        return bin.into();
    }
    let bin = target_dir().join("debug/weir");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p weir` (the README's test command does)",
        bin.display()
    );
    bin
}

/// One plugin host for the whole test binary, with its compile cache in a temp folder, so each
/// component is compiled once.
pub fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let cache = std::env::temp_dir().join(format!("weir-test-cache-{}", std::process::id()));
        PluginHost::new(HostConfig {
            cache_dir: Some(cache),
            no_pooling: false,
        })
        .expect("the plugin host starts")
    })
}

/// Polls `check` until it returns `Some`, or panics after `deadline` with `what`.
pub fn wait_for<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The resident memory of this process, in bytes (Linux).
pub fn resident_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
