//! Support for Weir's tests: the paths of built artefacts, a shared plugin host, and helpers
//! that start Weir and talk to it the way a user would.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weir::plugin::{HostConfig, PluginHost};

pub mod browser;
pub mod sink;

/// The test guests built by `tests/build.rs`.
pub const HOSTILE_WASM: &str = env!("WEIR_TEST_HOSTILE_WASM");
/// A guest on the bare WIT contract that echoes its input string unchecked.
pub const RAW_WASM: &str = env!("WEIR_TEST_RAW_WASM");

/// The folder the test guests are built in.
pub fn test_guests_dir() -> PathBuf {
    PathBuf::from(HOSTILE_WASM)
        .parent()
        .expect("a guest is in a folder")
        .to_owned()
}

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

/// The `weir` binary, built once per test process with `cargo build -p weir` so that a plain
/// `cargo test` never runs a stale or missing binary (cargo releases its build lock before
/// tests run, so this nested build does not wait on the outer one). `WEIR_BIN` points
/// elsewhere and skips the build.
pub fn weir_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("WEIR_BIN") {
            return bin.into();
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "weir", "--bin", "weir"])
            .current_dir(repo_root())
            .stdin(std::process::Stdio::null())
            .status()
            .expect("cargo runs to build the weir binary");
        assert!(status.success(), "`cargo build -p weir` failed: {status}");
        let bin = target_dir().join("debug/weir");
        assert!(bin.exists(), "{} is missing after the build", bin.display());
        bin
    })
    .clone()
}

/// A compiled-plugin cache folder of its own, removed when dropped: a server started by a
/// test never reads or writes the user's `~/.cache/weir`, nor another test's cache.
pub fn plugin_cache() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("weir-test-plugin-cache")
        .tempdir()
        .expect("a temp dir for the plugin cache")
}

/// The compiled-plugin cache of the short-lived `weir` commands of this test process (see
/// [`weir_command`]): a temp folder of this process, never the user's `~/.cache/weir`.
pub fn process_plugin_cache() -> &'static std::path::Path {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE.get_or_init(plugin_cache).path()
}

/// A `weir` command with this test process's own plugin cache.
pub fn weir_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(weir_bin());
    cmd.env("WEIR_CACHE_DIR", process_plugin_cache());
    cmd
}

/// One plugin host for the whole test binary, with its compile cache in a temp folder, so each
/// component is compiled once.
pub fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        PluginHost::new(HostConfig {
            cache_dir: Some(process_plugin_cache().to_owned()),
            no_pooling: false,
        })
        .expect("the plugin host starts")
    })
}

/// Runs a future to its end on a runtime of its own (a plugin call, from a synchronous test).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the test")
        .block_on(future)
}

/// Polls `check` until it returns `Some`, or panics after `deadline` with `what`.
pub fn wait_for<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
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

/// The peak resident memory (`VmHWM`) of process `pid`, in bytes (Linux).
pub fn peak_memory_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The `run_id` of a 2xx answer (a webhook's, a replay's); panics with the body otherwise.
    pub fn run_id(&self) -> String {
        assert!(
            (200..300).contains(&self.status),
            "{}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.json()["run_id"].as_str().expect("a run id").to_owned()
    }

    /// The `run_id` of a webhook answered `202 Accepted`; panics with the body otherwise.
    pub fn accepted_run_id(&self) -> String {
        assert_eq!(self.status, 202, "{}", String::from_utf8_lossy(&self.body));
        self.run_id()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect is an answer to check, never a request to make: tests only talk to
            // loopback servers they started.
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    })
}

fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, String> {
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// GET `url`.
pub fn get(url: &str) -> Answer {
    answer(agent().get(url).call()).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET `url` with extra headers.
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = agent().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.call()).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Sends `body` with `method` and a content type; `Err` when no answer came (connection
/// refused or reset).
pub fn send(method: &str, url: &str, content_type: &str, body: &[u8]) -> Result<Answer, String> {
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", content_type)
        .body(body.to_vec())
        .map_err(|e| e.to_string())?;
    answer(agent().run(request))
}

/// POSTs `body` with a content type and extra headers.
pub fn post_with(url: &str, content_type: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
    let mut request = ureq::http::Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", content_type);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(body.to_vec())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    answer(agent().run(request)).unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// POSTs `body` as JSON.
pub fn post_json(url: &str, body: &serde_json::Value) -> Answer {
    send("POST", url, "application/json", body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// A flows folder in a temp dir, filled from the repository's `flows/` or by the test.
pub struct FlowDir {
    pub dir: tempfile::TempDir,
}

impl FlowDir {
    /// An empty folder.
    pub fn empty() -> FlowDir {
        FlowDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A copy of the bundled example flows.
    pub fn examples() -> FlowDir {
        let flows = FlowDir::empty();
        for entry in std::fs::read_dir(repo_root().join("flows"))
            .expect("flows/ exists")
            .flatten()
        {
            std::fs::copy(entry.path(), flows.path().join(entry.file_name())).expect("copy a flow");
        }
        flows
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a flow file the way an editor that saves in place does.
    pub fn write(&self, name: &str, source: &str) {
        std::fs::write(self.path().join(name), source).expect("write a flow");
    }
}

/// A `weir serve` process on ephemeral ports, killed when dropped.
pub struct Weir {
    child: std::process::Child,
    /// This server's compiled-plugin cache; removed with it.
    _cache: tempfile::TempDir,
    pub webhook: String,
    pub admin: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Weir {
    /// Starts `weir serve` on `flows` and the store file `data`.
    pub fn start(flows: &std::path::Path, data: &std::path::Path) -> Weir {
        Weir::start_with(flows, data, &[])
    }

    /// As [`Weir::start`], with extra arguments.
    pub fn start_with(flows: &std::path::Path, data: &std::path::Path, extra: &[&str]) -> Weir {
        Weir::start_with_env(flows, data, extra, &[])
    }

    /// As [`Weir::start_with`], with extra environment variables for the server.
    pub fn start_with_env(
        flows: &std::path::Path,
        data: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Weir {
        Weir::start_limited(flows, data, extra, env, None)
    }

    /// As [`Weir::start_with_env`], the server's open-files limit set to `nofile` (soft,
    /// hard) in the child only, as `ulimit -n` would.
    pub fn start_limited(
        flows: &std::path::Path,
        data: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
        nofile: Option<(u64, u64)>,
    ) -> Weir {
        use std::io::{BufRead, BufReader};
        use std::os::unix::process::CommandExt as _;
        use std::process::{Command, Stdio};
        let cache = plugin_cache();
        let mut command = Command::new(weir_bin());
        if let Some((soft, hard)) = nofile {
            let limit = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--flows",
            ])
            .arg(flows)
            .arg("--data")
            .arg(data)
            // The test guests are built outside every flows folder; flows may name them.
            .arg("--plugin-dir")
            .arg(test_guests_dir())
            .args(extra)
            .env("WEIR_CACHE_DIR", cache.path())
            .envs(env.iter().copied())
            .env("WEIR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        {
            let pipe = child.stderr.take().expect("stderr is piped");
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut all = stderr.lock().unwrap_or_else(|e| e.into_inner());
                    all.push_str(&line);
                    all.push('\n');
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut webhook, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while webhook.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("webhooks: ") {
                        webhook = Some(url.to_owned());
                    } else if let Some(url) = line.strip_prefix("admin: ") {
                        admin = Some(url.to_owned());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "weir did not start: {}",
                        stderr.lock().unwrap_or_else(|e| e.into_inner())
                    );
                }
            }
        }
        Weir {
            child,
            _cache: cache,
            webhook: webhook.unwrap_or_default(),
            admin: admin.unwrap_or_default(),
            stderr,
        }
    }

    /// GET on the admin API, e.g. `api("/api/flows")`.
    pub fn api(&self, path: &str) -> Answer {
        get(&format!("{}{path}", self.admin))
    }

    /// The flow as the admin API shows it.
    pub fn flow(&self, id: &str) -> serde_json::Value {
        let answer = self.api(&format!("/api/flows/{id}"));
        assert_eq!(
            answer.status,
            200,
            "GET /api/flows/{id}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()
    }

    /// The flow's webhook URL.
    pub fn webhook_url(&self, flow: &str) -> String {
        self.flow(flow)["webhook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("flow {flow} has no webhook_url"))
            .to_owned()
    }

    /// Waits until the run reaches a final status and returns `GET /api/runs/{id}`.
    pub fn wait_run(&self, run_id: &str) -> serde_json::Value {
        wait_for(
            Duration::from_secs(60),
            &format!("run {run_id} to finish"),
            || {
                let answer = self.api(&format!("/api/runs/{run_id}"));
                if answer.status != 200 {
                    return None;
                }
                let run = answer.json();
                let status = run["run"]["status"].as_str().unwrap_or("");
                matches!(status, "succeeded" | "failed" | "filtered").then_some(run)
            },
        )
    }

    /// The total number of runs the API lists (all pages).
    pub fn count_runs(&self) -> usize {
        let mut count = 0;
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/runs?limit=1000&cursor={c}"),
                None => "/api/runs?limit=1000".to_owned(),
            };
            let page = self.api(&path).json();
            count += page["runs"].as_array().map_or(0, Vec::len);
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return count,
            }
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().expect("weir exits")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits up to `within` for the process to exit: its status and how long it
    /// took, or `None` (and the process is killed) when it did not exit in time.
    pub fn stop_within(mut self, within: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let pid = self.child.id() as libc::pid_t;
        let started = Instant::now();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, started.elapsed()));
            }
            if started.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server logged so far.
    pub fn logs(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Overwrites the first four bytes of every copy of `marker` in the file (with bytes that are
/// not UTF-8), as a damaged disk would; how many copies it found.
pub fn flip_marker(path: &Path, marker: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).expect("the file reads");
    let mut flipped = 0;
    while let Some(at) = bytes.windows(marker.len()).position(|w| w == marker) {
        bytes[at..at + 4].copy_from_slice(b"\xff\xfe\xfd\xfc");
        flipped += 1;
    }
    std::fs::write(path, bytes).expect("the file writes");
    flipped
}
