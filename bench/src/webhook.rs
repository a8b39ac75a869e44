//! The webhook benchmark: a bare warp server answering the same POST (no storage), the
//! durable floor ([`floor`](crate::floor): the bare server answering once the body is on the
//! disk) and Weir's webhook endpoint (durable accept, a flow with one `transform` step), at
//! concurrency 16 and 64; then how fast Weir finishes the runs it accepted, and its peak
//! memory.
//!
//! Each server runs as a process of its own (`weir serve`, the `weir` binary next to this one;
//! `weir-bench bare-server` for the baselines), with tokio's default runtime, so that the three
//! differ only in what they do with a request and Weir's memory is its own. The floor shows
//! what keeping every acknowledged webhook on this disk costs any server, apart from what Weir
//! does besides.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use warp::Filter;

use crate::floor::DurableLog;

/// How long each server is loaded in each round.
pub(crate) const PHASE: Duration = Duration::from_secs(5);
const CONCURRENCY: [usize; 2] = [16, 64];

/// What one phase of load measured.
pub(crate) struct Load {
    pub(crate) ok: usize,
    pub(crate) refused: usize,
    /// Of the `ok` answers, those that were `202 Accepted` (for `respond = "result"`: the
    /// sender did not get the run's result).
    pub(crate) accepted: usize,
    /// How long each answer took.
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Load {
    pub(crate) fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// `latencies` sorted first.
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies[((self.latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
    }
}

/// A GitHub-like `issues` event of about 850 bytes.
pub(crate) fn payload() -> Bytes {
    let issue = serde_json::json!({
        "action": "opened",
        "issue": {"number": 42, "title": "Crash on start", "body": "x".repeat(700),
                  "html_url": "https://github.com/acme/app/issues/42", "user": {"login": "octocat"}}
    });
    Bytes::from(issue.to_string())
}

/// `concurrency` keep-alive connections, each posting as fast as answers come, for [`PHASE`].
pub(crate) async fn load(addr: SocketAddr, path: &str, concurrency: usize) -> anyhow::Result<Load> {
    let body = payload();
    let deadline = Instant::now() + PHASE;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (body, path) = (body.clone(), path.to_owned());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let (mut ok, mut refused, mut accepted, mut latencies) = (0, 0, 0, Vec::new());
            while Instant::now() < deadline {
                let request = hyper::Request::post(&path)
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                latencies.push(sent.elapsed());
                if status.is_success() {
                    ok += 1;
                    accepted += usize::from(status == hyper::StatusCode::ACCEPTED);
                } else {
                    refused += 1;
                }
            }
            anyhow::Ok((ok, refused, accepted, latencies))
        }));
    }
    let mut total = Load {
        ok: 0,
        refused: 0,
        accepted: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (ok, refused, accepted, latencies) = task.await??;
        total.ok += ok;
        total.refused += refused;
        total.accepted += accepted;
        total.latencies.extend(latencies);
    }
    total.elapsed = start.elapsed();
    total.latencies.sort();
    Ok(total)
}

/// The baselines' answer: `202` with a small JSON body, as Weir answers, or `503` if the body
/// could not be put on the disk (the durable floor).
fn bare_answer(size: usize, stored: bool) -> warp::reply::Response {
    use warp::Reply as _;
    if !stored {
        return warp::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    warp::reply::with_status(
        warp::reply::json(
            &serde_json::json!({"run_id": "01K0000000000000000000000", "size": size}),
        ),
        warp::http::StatusCode::ACCEPTED,
    )
    .into_response()
}

/// `weir-bench bare-server [--durable DIR]`: the bare server, or with `--durable` the durable
/// floor writing to a file in DIR, on tokio's default runtime as `weir serve` is. Prints `bare:
/// ADDR` (and, durable, first `floor: HOW`), serves `POST /hook` until stdin closes.
pub fn serve_bare(durable: Option<PathBuf>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let log = match durable {
            Some(dir) => {
                let (log, how) = DurableLog::start(&dir)?;
                println!("floor: {how}");
                Some(log)
            }
            None => None,
        };
        let hook = warp::post()
            .and(warp::path!("hook"))
            .and(warp::body::bytes())
            .then(move |body: Bytes| {
                let log = log.clone();
                async move {
                    let size = body.len();
                    let stored = match log {
                        Some(log) => log.write(body).await,
                        None => true,
                    };
                    bare_answer(size, stored)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("bare: {}", listener.local_addr()?);
        tokio::spawn(warp::serve(hook).incoming(listener).run());
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await??;
        anyhow::Ok(())
    })
}

/// A baseline's own process; stopped when dropped.
pub(crate) struct BareProcess {
    child: std::process::Child,
    pub(crate) addr: SocketAddr,
}

impl Drop for BareProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bare server in its own process; with `durable`, the durable floor writing in that
/// directory (and how it writes).
pub(crate) fn start_bare(durable: Option<&Path>) -> anyhow::Result<(BareProcess, Option<String>)> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("bare-server");
    if let Some(dir) = durable {
        command.arg("--durable").arg(dir);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting weir-bench bare-server")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut how = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(said) = line.strip_prefix("floor: ") {
            how = Some(said.to_owned());
            continue;
        }
        let addr = line
            .strip_prefix("bare: ")
            .with_context(|| format!("the bare server said {line:?}"))?
            .parse()?;
        return Ok((BareProcess { child, addr }, how));
    }
    bail!("the bare server exited before it served")
}

/// `weir serve` on a temporary folder; stopped when dropped.
pub(crate) struct WeirProcess {
    child: std::process::Child,
    pub(crate) webhook: SocketAddr,
    pub(crate) admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `weir` binary next to this one. Run through cargo, it is built first, in this binary's
/// profile, so that the figures are of the current code; with `weir-bench` itself in the same
/// command, so that the two share one resolution of features and nothing is compiled twice.
pub(crate) fn weir_binary() -> anyhow::Result<PathBuf> {
    let weir = std::env::current_exe()?.with_file_name("weir");
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "weir", "-p", "weir-bench"]);
        build.current_dir(env!("CARGO_MANIFEST_DIR"));
        // Under `cargo run`, cargo sets CARGO_*/RUSTFLAGS-like variables for the running
        // binary; inherited by this inner build they change the fingerprint of every
        // dependency and force a full rebuild. The inner build must see the user's env.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR" {
                build.env_remove(key.as_ref());
            }
        }
        build.env_remove("LD_LIBRARY_PATH");
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().context("building the weir binary")?;
        if !status.success() {
            bail!("building the weir binary failed");
        }
    }
    if !weir.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p weir` first",
            weir.display()
        );
    }
    Ok(weir)
}

fn start_weir() -> anyhow::Result<WeirProcess> {
    start_weir_with(
        "name = \"bench\"\n[[steps]]\nid = \"shape\"\nplugin = \"transform\"\n\
         input = { number = \"$.webhook.body.issue.number\", title = \"$.webhook.body.issue.title\" }\n",
    )
}

/// `weir serve` on ephemeral ports with one flow, `bench`, of this text.
pub(crate) fn start_weir_with(flow: &str) -> anyhow::Result<WeirProcess> {
    start_weir_on(flow, None, &[])
}

/// [`start_weir_with`] on the store file `data` (default: a new one in the temporary folder),
/// with extra `weir serve` arguments.
pub(crate) fn start_weir_on(
    flow: &str,
    data: Option<&Path>,
    extra: &[&str],
) -> anyhow::Result<WeirProcess> {
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows)?;
    std::fs::write(flows.join("bench.toml"), flow)?;
    let data = data.map_or_else(|| dir.path().join("weir.redb"), Path::to_path_buf);
    let mut child = Command::new(weir_binary()?)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--flows",
        ])
        .arg(&flows)
        .arg("--data")
        .arg(&data)
        .args(extra)
        .env("WEIR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting weir serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut webhook, mut admin) = (None, None);
    while webhook.is_none() || admin.is_none() {
        let line = lines.next().context("weir exited before it served")??;
        if let Some(url) = line.strip_prefix("webhooks: http://") {
            webhook = Some(url.parse()?);
        } else if let Some(url) = line.strip_prefix("admin: http://") {
            admin = Some(url.parse()?);
        }
    }
    Ok(WeirProcess {
        child,
        webhook: webhook.context("webhook address")?,
        admin: admin.context("admin address")?,
        _dir: dir,
    })
}

pub(crate) async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    // The admin API answers only loopback Host names when it has no token.
    let request = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))?;
    let body = sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(serde_json::from_slice(&body.to_bytes())?)
}

/// The runs `/api/health` counts as not finished: queued, running and retrying (builds before
/// 2026-12-03 count all three in `runs_in_queue`, so that a build can be compared with them).
fn unfinished(health: &serde_json::Value) -> Option<u64> {
    let queued = health["runs_in_queue"].as_u64()?;
    let others = ["runs_running", "runs_retrying"]
        .iter()
        .filter_map(|key| health[key].as_u64())
        .sum::<u64>();
    Some(queued + others)
}

/// Returns once Weir has no run left that is not finished.
pub(crate) async fn wait_drained(weir: &WeirProcess) -> anyhow::Result<()> {
    loop {
        let health = get_json(weir.admin, "/api/health").await?;
        if unfinished(&health) == Some(0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_memory_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What one round of one concurrency measured.
struct Round {
    /// The bare server: the baseline.
    bare: f64,
    /// The durable floor: the bare server writing each body to the disk before it answers.
    floor: f64,
    weir: f64,
    weir_p99: f64,
    /// Runs accepted in the round divided by the time until all of them had finished.
    runs_per_s: f64,
}

/// The median of `values`, then the lowest and the highest.
pub(crate) fn median(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// `weir-bench webhook`: `rounds` rounds at each concurrency, each a bare phase, a durable
/// floor phase and a Weir phase one after the other, so that the noise of a shared machine
/// falls on all three; then the median of the rounds.
pub fn bench(rounds: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (bare, _) = start_bare(None)?;
        let floor_dir = tempfile::tempdir()?;
        let (floor, floor_how) = start_bare(Some(floor_dir.path()))?;
        let weir = start_weir()?;
        let flows = get_json(weir.admin, "/api/flows").await?;
        let url = flows["flows"][0]["webhook_url"]
            .as_str()
            .context("the bench flow's URL")?;
        let hook_path = url
            .split_once("/hooks/")
            .map(|(_, rest)| format!("/hooks/{rest}"))
            .context("webhook path")?;
        println!(
            "webhook benchmark: {}-byte JSON POSTs over keep-alive connections, {} s per phase, \
             {rounds} round(s) per concurrency; durable floor: 1 writer thread, {}",
            payload().len(),
            PHASE.as_secs(),
            floor_how.unwrap_or_default()
        );
        let mut summary = Vec::new();
        for concurrency in CONCURRENCY {
            let mut measured = Vec::new();
            for round in 1..=rounds {
                println!("-- c={concurrency}, round {round} of {rounds}");
                measured.push(
                    weir_round(&weir, [bare.addr, floor.addr], &hook_path, concurrency).await?,
                );
            }
            summary.push((concurrency, measured));
        }
        println!("== median of {rounds} round(s) (lowest–highest)");
        println!(
            "| | Weir | bare warp | Weir / bare | durable floor | floor / bare | Weir / floor | Weir p99 | runs finished |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for (concurrency, measured) in summary.iter().rev() {
            let range = |of: &dyn Fn(&Round) -> f64, scale: f64, digits: usize| {
                let (mid, lo, hi) = median(measured.iter().map(of));
                let (mid, lo, hi) = (mid / scale, lo / scale, hi / scale);
                format!("{mid:.digits$} ({lo:.digits$}–{hi:.digits$})")
            };
            println!(
                "| concurrency {concurrency} | {}k/s | {}k/s | {} | {}k/s | {} | {} | {} ms | {}/s |",
                range(&|r| r.weir, 1e3, 1),
                range(&|r| r.bare, 1e3, 1),
                range(&|r| r.weir / r.bare, 1.0, 2),
                range(&|r| r.floor, 1e3, 1),
                range(&|r| r.floor / r.bare, 1.0, 2),
                range(&|r| r.weir / r.floor, 1.0, 2),
                range(&|r| r.weir_p99, 1.0, 2),
                range(&|r| r.runs_per_s, 1.0, 0),
            );
        }
        let health = get_json(weir.admin, "/api/health").await?;
        println!(
            "weir peak memory (VmHWM): {:.1} MiB; runs not finished: {}",
            peak_memory_mib(weir.child.id()),
            unfinished(&health).map_or_else(|| "unknown".to_owned(), |n| n.to_string())
        );
        println!(
            "targets: weir >= 0.5 x bare req/s, p99 <= 10 ms at c=64, >= 5,000 runs/s, < 150 MiB"
        );
        anyhow::Ok(())
    })
}

/// A bare phase, a durable floor phase, then a Weir phase at the same concurrency, then Weir
/// finishing every run it accepted; prints what each did.
async fn weir_round(
    weir: &WeirProcess,
    [bare, floor]: [SocketAddr; 2],
    hook_path: &str,
    concurrency: usize,
) -> anyhow::Result<Round> {
    let base = load(bare, "/hook", concurrency).await?;
    let durable = load(floor, "/hook", concurrency).await?;
    wait_drained(weir).await?;
    let weir_cpu = cpu_seconds(weir.child.id());
    let started = Instant::now();
    let ours = load(weir.webhook, hook_path, concurrency).await?;
    let accepted_for = started.elapsed();
    let weir_cpu = cpu_seconds(weir.child.id()) - weir_cpu;
    wait_drained(weir).await?;
    let drained = started.elapsed();
    println!(
        "{:<24} {:>10} {:>9} {:>9} {:>8}",
        "", "req/s", "p50 ms", "p99 ms", "non-2xx"
    );
    for (name, l) in [
        ("bare warp", &base),
        ("durable floor", &durable),
        ("weir (durable accept)", &ours),
    ] {
        println!(
            "{name:<24} {:>10.0} {:>9.2} {:>9.2} {:>8}",
            l.rps(),
            l.percentile_ms(0.5),
            l.percentile_ms(0.99),
            l.refused
        );
    }
    println!(
        "  weir / bare {:.2}, floor / bare {:.2}, weir / floor {:.2}; weir's CPU {:.0} µs per accepted webhook",
        ours.rps() / base.rps(),
        durable.rps() / base.rps(),
        ours.rps() / durable.rps(),
        weir_cpu * 1e6 / ours.ok.max(1) as f64,
    );
    let runs_per_s = ours.ok as f64 / drained.as_secs_f64();
    println!(
        "  {} runs accepted in {:.1} s, all finished after {:.1} s: {:.0} runs/s",
        ours.ok,
        accepted_for.as_secs_f64(),
        drained.as_secs_f64(),
        runs_per_s
    );
    Ok(Round {
        bare: base.rps(),
        floor: durable.rps(),
        weir: ours.rps(),
        weir_p99: ours.percentile_ms(0.99),
        runs_per_s,
    })
}
