//! The webhook benchmark: a bare warp server answering the same POST (no storage) against
//! Weir's webhook endpoint (durable accept, a flow with one `transform` step), at concurrency
//! 16 and 64; then how fast Weir finishes the runs it accepted, and its peak memory.
//!
//! Weir runs as its own process (`weir serve`, the release binary next to this one) so its
//! memory is its own, and so does the bare server (`weir-bench bare-server`), so that the two
//! differ only in what they do with a request: a server in the load generator's own runtime
//! has its tasks woken on the same threads as the requests' senders, which no real server has.
//! That in-process server is still measured, as a reference, and shown beside the other.
//!
//! Between the bare server and Weir sits the durable floor ([`floor`](crate::floor)): the bare
//! server answering once the body is on the disk, what keeping every acknowledged webhook on
//! disk costs any server on this machine, apart from what Weir does besides.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use warp::Filter;

use crate::floor::{DurableLog, Writers, WritesBetween};

pub(crate) const PHASE: Duration = Duration::from_secs(5);

pub(crate) struct Load {
    ok: usize,
    pub(crate) refused: usize,
    /// When each request was sent (from the start of the phase) and how long its answer took.
    latencies: Vec<(Duration, Duration)>,
    elapsed: Duration,
}

/// The slice of a phase in which [`Load::tail`] counts the slowest requests.
const TAIL_WINDOW: Duration = Duration::from_millis(100);

impl Load {
    pub(crate) fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut sorted: Vec<Duration> = self.latencies.iter().map(|(_, took)| *took).collect();
        sorted.sort();
        sorted
    }

    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        let sorted = self.sorted();
        if sorted.is_empty() {
            return f64::NAN;
        }
        sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
    }

    /// Where the slowest 1% of requests were sent: in how many of the phase's
    /// [`TAIL_WINDOW`]s, out of how many, and the largest share of them in one window. A tail
    /// spread over every window comes from steady queueing; one bunched in a few windows comes
    /// from stalls (a slow commit, a thread kept off the CPU).
    fn tail(&self) -> (usize, usize, f64) {
        let sorted = self.sorted();
        let Some(&p99) = sorted.get((sorted.len().saturating_sub(1)) * 99 / 100) else {
            return (0, 0, 0.0);
        };
        let window = |sent: Duration| (sent.as_micros() / TAIL_WINDOW.as_micros()) as usize;
        let windows = window(self.elapsed) + 1;
        let mut slow = vec![0usize; windows];
        for (sent, took) in &self.latencies {
            if *took >= p99 {
                slow[window(*sent).min(windows - 1)] += 1;
            }
        }
        let total: usize = slow.iter().sum();
        let busiest = slow.iter().copied().max().unwrap_or(0);
        (
            slow.iter().filter(|n| **n > 0).count(),
            windows,
            busiest as f64 / total.max(1) as f64,
        )
    }
}

fn payload() -> Bytes {
    let issue = serde_json::json!({
        "action": "opened",
        "issue": {"number": 42, "title": "Crash on start", "body": "x".repeat(700),
                  "html_url": "https://github.com/acme/app/issues/42", "user": {"login": "octocat"}}
    });
    Bytes::from(issue.to_string())
}

/// `concurrency` keep-alive connections, each posting as fast as answers come, for `PHASE`.
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
            let (mut ok, mut refused, mut latencies) = (0, 0, Vec::new());
            while Instant::now() < deadline {
                let request = hyper::Request::post(&path)
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                latencies.push((sent - start, sent.elapsed()));
                if status.is_success() {
                    ok += 1;
                } else {
                    refused += 1;
                }
            }
            anyhow::Ok((ok, refused, latencies))
        }));
    }
    let mut total = Load {
        ok: 0,
        refused: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (ok, refused, latencies) = task.await??;
        total.ok += ok;
        total.refused += refused;
        total.latencies.extend(latencies);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// The baseline: warp answering the same POST with the same kind of JSON, storing nothing.
async fn bare_server() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(bare_route()).incoming(listener).run());
    Ok(addr)
}

fn bare_route() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::post()
        .and(warp::path!("hook"))
        .and(warp::body::bytes())
        .map(|body: Bytes| bare_answer(body.len(), true))
}

/// The bare server's answer: `202` with a small JSON body, or `503` if the body could not be
/// put on the disk (the durable floor).
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

/// The durable floor (see [`floor`](crate::floor)): the bare server, answering once the body
/// is on the disk.
async fn floor_server(log: DurableLog) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stats = {
        let log = log.clone();
        warp::get()
            .and(warp::path!("stats"))
            .map(move || warp::reply::json(&log.stats()))
    };
    let hook = warp::post()
        .and(warp::path!("hook"))
        .and(warp::body::bytes())
        .then(move |body: Bytes| {
            let log = log.clone();
            async move {
                let size = body.len();
                bare_answer(size, log.write(body).await)
            }
        });
    tokio::spawn(warp::serve(hook.or(stats)).incoming(listener).run());
    Ok(addr)
}

/// `weir-bench bare-server [--durable DIR]`: the baseline in a process of its own, with the
/// same runtime as `weir serve` (tokio's default: a worker per core); with `--durable`, the
/// durable floor, writing to a file in DIR. Prints `bare: ADDR` (and, durable, `floor: HOW`),
/// serves until stdin closes.
pub fn serve_bare(durable: Option<PathBuf>, writers: Writers) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let addr = match durable {
            Some(dir) => {
                let (log, how) = DurableLog::start(&dir, writers)?;
                let addr = floor_server(log).await?;
                println!("floor: {how}");
                addr
            }
            None => bare_server().await?,
        };
        println!("bare: {addr}");
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await??;
        anyhow::Ok(())
    })
}

/// The bare server's own process; stopped when dropped.
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
/// directory with those writers (and how it writes).
pub(crate) fn start_bare(
    durable: Option<(&Path, Writers)>,
) -> anyhow::Result<(BareProcess, Option<String>)> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("bare-server");
    if let Some((dir, writers)) = durable {
        command.arg("--durable").arg(dir).arg("--writers").arg(
            clap::ValueEnum::to_possible_value(&writers)
                .context("a floor's writers")?
                .get_name(),
        );
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

struct WeirProcess {
    child: std::process::Child,
    webhook: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `weir` next to this binary, rebuilt first when run through cargo so the figures
/// are of the current code.
pub(crate) fn weir_binary() -> anyhow::Result<PathBuf> {
    let weir = std::env::current_exe()?.with_file_name("weir");
    if let Ok(cargo) = std::env::var("CARGO") {
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "weir", "--bin", "weir"])
            .status()
            .context("building the weir binary")?;
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
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows)?;
    std::fs::write(
        flows.join("bench.toml"),
        "name = \"bench\"\n[[steps]]\nid = \"shape\"\nplugin = \"transform\"\n\
         input = { number = \"$.webhook.body.issue.number\", title = \"$.webhook.body.issue.title\" }\n",
    )?;
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
        .arg(dir.path().join("weir.redb"))
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
    let request = hyper::Request::get(path)
        .header("host", "bench")
        .body(Full::new(Bytes::new()))?;
    let body = sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(serde_json::from_slice(&body.to_bytes())?)
}

async fn wait_drained(weir: &WeirProcess) -> anyhow::Result<()> {
    loop {
        let health = get_json(weir.admin, "/api/health").await?;
        if health["runs_in_queue"] == 0 {
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
    /// The bare server in its own process: the baseline.
    bare: f64,
    /// The bare server in this process, for reference.
    bare_here: f64,
    /// The durable floor: the bare server writing each body to the disk before it answers.
    floor: f64,
    weir: f64,
    weir_p99: f64,
    /// Runs accepted in the round divided by the time until all of them had finished.
    runs_per_s: f64,
}

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

/// `rounds` rounds at each concurrency, each two bare phases (in this process, then in its
/// own), a durable floor phase, then a Weir phase, so that the noise of a shared machine falls
/// on all; then the median of the rounds.
pub fn bench(rounds: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let bare_here = bare_server().await?;
        let (bare, _) = start_bare(None)?;
        let floor_dir = tempfile::tempdir()?;
        let (floor, floor_how) = start_bare(Some((floor_dir.path(), Writers::One)))?;
        let floor_how = floor_how.unwrap_or_default();
        let weir = start_weir()?;
        let flows = get_json(weir.admin, "/api/flows").await?;
        let url = flows["flows"][0]["webhook_url"].as_str().context("the bench flow's URL")?.to_owned();
        let hook_path = url
            .split_once("/hooks/")
            .map(|(_, rest)| format!("/hooks/{rest}"))
            .context("webhook path")?;
        println!(
            "webhook benchmark: {}-byte JSON POSTs over keep-alive connections, {} s per phase, {rounds} round(s) per concurrency",
            payload().len(),
            PHASE.as_secs()
        );
        let mut summary = Vec::new();
        for concurrency in [16, 64] {
            let mut measured = Vec::new();
            for round in 1..=rounds {
                println!("-- c={concurrency}, round {round} of {rounds}");
                println!("{:<34} {:>10} {:>9} {:>9} {:>8}", "", "req/s", "p50 ms", "p99 ms", "non-2xx");
                measured.push(
                    weir_round(&weir, [bare_here, bare.addr, floor.addr], &hook_path, concurrency).await?,
                );
            }
            summary.push((concurrency, measured));
        }
        println!("== median of {rounds} round(s) (lowest–highest)");
        for (concurrency, measured) in &summary {
            let (bare, bare_lo, bare_hi) = median(measured.iter().map(|r| r.bare));
            let (here, here_lo, here_hi) = median(measured.iter().map(|r| r.bare_here));
            let (ratio_here, ratio_here_lo, ratio_here_hi) =
                median(measured.iter().map(|r| r.weir / r.bare_here));
            let (weir, weir_lo, weir_hi) = median(measured.iter().map(|r| r.weir));
            let (ratio, ratio_lo, ratio_hi) = median(measured.iter().map(|r| r.weir / r.bare));
            let (p99, p99_lo, p99_hi) = median(measured.iter().map(|r| r.weir_p99));
            let (floor, floor_lo, floor_hi) = median(measured.iter().map(|r| r.floor));
            let (floor_ratio, floor_ratio_lo, floor_ratio_hi) =
                median(measured.iter().map(|r| r.floor / r.bare));
            let (of_floor, of_floor_lo, of_floor_hi) =
                median(measured.iter().map(|r| r.weir / r.floor));
            let (runs, runs_lo, runs_hi) = median(measured.iter().map(|r| r.runs_per_s));
            println!(
                "c={concurrency}: bare {bare:.0} req/s ({bare_lo:.0}–{bare_hi:.0}), weir {weir:.0} ({weir_lo:.0}–{weir_hi:.0}), \
                 ratio {ratio:.2} ({ratio_lo:.2}–{ratio_hi:.2}), weir p99 {p99:.2} ms ({p99_lo:.2}–{p99_hi:.2}), \
                 completed runs {runs:.0}/s ({runs_lo:.0}–{runs_hi:.0})"
            );
            println!(
                "     durable floor ({floor_how}) {floor:.0} req/s ({floor_lo:.0}–{floor_hi:.0}), floor / bare {floor_ratio:.2} \
                 ({floor_ratio_lo:.2}–{floor_ratio_hi:.2}), weir / floor {of_floor:.2} ({of_floor_lo:.2}–{of_floor_hi:.2})"
            );
            println!(
                "     reference: bare in the load generator's process {here:.0} req/s ({here_lo:.0}–{here_hi:.0}), \
                 weir / that {ratio_here:.2} ({ratio_here_lo:.2}–{ratio_here_hi:.2})"
            );
        }
        let health = get_json(weir.admin, "/api/health").await?;
        println!("weir peak memory (VmHWM): {:.1} MiB; runs still queued: {}", peak_memory_mib(weir.child.id()), health["runs_in_queue"]);
        println!("targets: weir >= 0.5 x bare req/s, p99 <= 10 ms at c=64, >= 5,000 runs/s, < 150 MiB");
        anyhow::Ok(())
    })
}

/// Two bare phases and a durable floor phase (`[in this process, in its own, the floor]`),
/// then a Weir phase at the same concurrency, then Weir finishing every run it accepted;
/// prints what each did.
async fn weir_round(
    weir: &WeirProcess,
    [bare_here, bare, floor]: [SocketAddr; 3],
    hook_path: &str,
    concurrency: usize,
) -> anyhow::Result<Round> {
    let here = load(bare_here, "/hook", concurrency).await?;
    let base = load(bare, "/hook", concurrency).await?;
    let floor_before = get_json(floor, "/stats").await?;
    let durable = load(floor, "/hook", concurrency).await?;
    let floor_after = get_json(floor, "/stats").await?;
    wait_drained(weir).await?;
    let before = get_json(weir.admin, "/api/health").await?["store"].clone();
    let (weir_cpu, bench_cpu) = (
        cpu_seconds(weir.child.id()),
        cpu_seconds(std::process::id()),
    );
    // For profilers: `perf record -p <pid>` can start on this line.
    eprintln!("weir phase, c={concurrency}: weir pid {}", weir.child.id());
    let started = Instant::now();
    let ours = load(weir.webhook, hook_path, concurrency).await?;
    let accepted_for = started.elapsed();
    let weir_cpu = cpu_seconds(weir.child.id()) - weir_cpu;
    let bench_cpu = cpu_seconds(std::process::id()) - bench_cpu;
    let at_end = get_json(weir.admin, "/api/health").await?["store"].clone();
    let drain_cpu = cpu_seconds(weir.child.id());
    wait_drained(weir).await?;
    let drained = started.elapsed();
    let drain_cpu = cpu_seconds(weir.child.id()) - drain_cpu;
    for (name, l) in [
        (format!("bare warp (bench process), c={concurrency}"), &here),
        (format!("bare warp (own process), c={concurrency}"), &base),
        (format!("durable floor, c={concurrency}"), &durable),
        (format!("weir (durable accept), c={concurrency}"), &ours),
    ] {
        println!(
            "{name:<34} {:>10.0} {:>9.2} {:>9.2} {:>8}",
            l.rps(),
            l.percentile_ms(0.5),
            l.percentile_ms(0.99),
            l.refused
        );
    }
    for (name, ratio) in [
        ("weir / bare", ours.rps() / base.rps()),
        ("floor / bare", durable.rps() / base.rps()),
        ("weir / floor", ours.rps() / durable.rps()),
    ] {
        println!(
            "{:<34} {ratio:>10.2}",
            format!("  ratio {name}, c={concurrency}")
        );
    }
    let floor_writes = WritesBetween::new(&floor_before, &floor_after);
    println!(
        "  durable floor: {:.0} writes of {:.1} KiB ({:.1} bodies each), {:.2} ms each",
        floor_writes.writes, floor_writes.kib_each, floor_writes.bodies_each, floor_writes.ms_each
    );
    let (with_slow, windows, busiest) = ours.tail();
    println!(
        "  slowest 1% of weir's answers: sent in {with_slow} of the phase's {windows} {} ms windows, {:.0}% of them in the busiest one",
        TAIL_WINDOW.as_millis(),
        busiest * 100.0
    );
    println!(
        "  CPU during the weir phase: weir {:.2} s ({:.0} µs per accepted webhook), load generator {:.2} s",
        weir_cpu,
        weir_cpu * 1e6 / ours.ok.max(1) as f64,
        bench_cpu
    );
    let after = get_json(weir.admin, "/api/health").await?["store"].clone();
    for (what, from, to) in [
        ("during the phase", &before, &at_end),
        ("draining after it", &at_end, &after),
    ] {
        let delta = |key: &str| to[key].as_f64().unwrap_or(0.0) - from[key].as_f64().unwrap_or(0.0);
        let commits = delta("commits").max(1.0);
        let syncs = delta("journal_syncs").max(1.0);
        println!(
            "  store {what}: {:.0} commits ({:.0} checkpoints), {:.1} writes each, {:.2} ms applying + {:.2} ms committing each; \
             {:.0} journal syncs of {:.1} KiB, {:.2} ms each{}",
            commits,
            delta("durable_commits"),
            delta("writes") / commits,
            delta("apply_us") / commits / 1e3,
            delta("commit_us") / commits / 1e3,
            delta("journal_syncs"),
            delta("journal_bytes") / syncs / 1024.0,
            delta("journal_sync_us") / syncs / 1e3,
            if to["journal_direct"].as_bool() == Some(true) {
                " (direct I/O)"
            } else {
                " (page cache and fdatasync)"
            },
        );
    }
    let runs_per_s = ours.ok as f64 / drained.as_secs_f64();
    println!(
        "  draining: {:.1} s, weir CPU {:.2} s; {} runs accepted in {:.1} s, all finished after {:.1} s: {:.0} runs/s",
        (drained - accepted_for).as_secs_f64(),
        drain_cpu,
        ours.ok,
        accepted_for.as_secs_f64(),
        drained.as_secs_f64(),
        runs_per_s
    );
    Ok(Round {
        bare: base.rps(),
        bare_here: here.rps(),
        floor: durable.rps(),
        weir: ours.rps(),
        weir_p99: ours.percentile_ms(0.99),
        runs_per_s,
    })
}
