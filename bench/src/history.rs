//! The history benchmark: a store of a million finished runs across 100 flows, made through
//! the store's own API, then the admin API's list, deep-cursor and stats queries on it
//! through HTTP, each timed over a few hundred requests.
//!
//!     cargo run --release -p weir-bench -- history [--runs N] [--flows N] [--requests N]
//!
//! [`fill`] makes the store; other phases (pruning) can start from it.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use weir::store::{
    LogLine, NewRun, Options, RawRequest, RunOutcome, StepRecord, StepStatus, Store,
};

/// What [`fill`] made.
pub struct Filled {
    /// The flow ids, `f000`, `f001`, …
    pub flows: Vec<String>,
    pub runs: u64,
    pub took: Duration,
}

/// The flow a run of index `n` belongs to.
fn flow_of(n: u64, flows: usize) -> String {
    format!("f{:03}", n % flows as u64)
}

/// Fills the store at `path` with `runs` finished runs spread evenly over `flows` flows, the
/// way Weir makes them (accept, claim, one step record, finish): 80% succeeded, 15% failed,
/// 5% filtered, each with a small GitHub-like JSON body and one step's input and output.
/// Many runs are in flight at once, so the writer commits them in large groups.
pub fn fill(path: &Path, runs: u64, flows: usize) -> anyhow::Result<Filled> {
    let options = Options {
        queue_capacity: 4096,
        max_batch: 2048,
        ..Options::default()
    };
    let store = Store::open_with(path, options).context("opening the store")?;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut workers = Vec::new();
        for _ in 0..512 {
            let (store, next) = (store.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= runs {
                        return anyhow::Ok(());
                    }
                    one_run(&store, n, flows).await?;
                    if n > 0 && n.is_multiple_of(100_000) {
                        eprintln!("  {n} runs stored");
                    }
                }
            }));
        }
        for worker in workers {
            worker.await??;
        }
        store.sync().await?;
        anyhow::Ok(())
    })?;
    drop(store);
    Ok(Filled {
        flows: (0..flows as u64).map(|n| flow_of(n, flows)).collect(),
        runs,
        took: started.elapsed(),
    })
}

/// Stores run `n` from its acceptance to its end.
async fn one_run(store: &Store, n: u64, flows: usize) -> anyhow::Result<()> {
    let flow = flow_of(n, flows);
    let body = serde_json::json!({
        "action": if n.is_multiple_of(3) { "opened" } else { "closed" },
        "issue": { "number": n, "title": format!("Issue {n}"), "user": { "login": format!("user{}", n % 977) } },
        "repository": { "full_name": "acme/app" },
    });
    let request = RawRequest {
        method: "POST".into(),
        path: format!("/hooks/{flow}/[redacted]"),
        query: String::new(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("user-agent".into(), "GitHub-Hookshot/abc123".into()),
            ("x-github-event".into(), "issues".into()),
        ],
        body: serde_json::to_vec(&body)?,
        remote_addr: Some("127.0.0.1:40000".into()),
        received_at: SystemTime::now(),
    };
    let accepted = store
        .accept(NewRun {
            flow_id: flow.clone(),
            flow_version: "0123456789abcdef".into(),
            request,
            dedupe_key: None,
            dedupe_window: None,
        })
        .await?;
    let id = accepted.id;
    store.claim_run(id).await?;
    // By the run's turn within its flow, so that every flow has the same mix.
    let (outcome, status, error) = match (n / flows as u64) % 20 {
        0..=15 => (RunOutcome::Succeeded, StepStatus::Succeeded, None),
        16..=18 => (
            RunOutcome::Failed,
            StepStatus::Failed,
            Some("upstream: 502 Bad Gateway"),
        ),
        _ => (RunOutcome::Filtered, StepStatus::Filtered, None),
    };
    let input = serde_json::json!({ "number": n, "title": format!("Issue {n}") });
    store
        .record_step(
            id,
            StepRecord {
                index: 0,
                step_id: "shape".into(),
                plugin: "transform".into(),
                status,
                output: error.is_none().then(|| input.clone()),
                input: Some(input),
                logs: vec![LogLine {
                    level: weir::store::LogLevel::Info,
                    message: "shaped".into(),
                }],
                error: error.map(|message| weir::store::StepErrorRecord {
                    kind: "upstream".into(),
                    message: message.into(),
                }),
                started_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                duration_us: 40 + n % 500,
                calls: Vec::new(),
                attempts: Vec::new(),
            },
        )
        .await?;
    store
        .finish_run(id, outcome, error.map(|e| format!("step shape: {e}")))
        .await?;
    Ok(())
}

/// Times `requests` GETs of `path` on one kept connection; answers p50 and p99 in ms.
async fn time_get(addr: SocketAddr, path: &str, requests: usize) -> anyhow::Result<(f64, f64)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut took = Vec::with_capacity(requests);
    // A few first, not counted: the first reads bring the pages into the cache.
    for round in 0..requests + 10 {
        let request = hyper::Request::get(path)
            .header("host", addr.to_string())
            .body(Full::new(Bytes::new()))?;
        let start = Instant::now();
        let answer = sender.send_request(request).await?;
        let status = answer.status();
        let body = answer.into_body().collect().await?.to_bytes();
        let elapsed = start.elapsed();
        if !status.is_success() {
            bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        if round >= 10 {
            took.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    took.sort_by(f64::total_cmp);
    let at = |p: f64| took[((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1];
    Ok((at(0.50), at(0.99)))
}

/// `weir serve` on the filled store, with the flows it names (so stats know them).
struct Served {
    child: std::process::Child,
    admin: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, flows_dir: &Path) -> anyhow::Result<Served> {
    let mut child = Command::new(crate::webhook::weir_binary()?)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--flows",
        ])
        .arg(flows_dir)
        .arg("--data")
        .arg(data)
        .env("WEIR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting weir serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let admin = loop {
        let line = lines.next().context("weir exited before it served")??;
        if let Some(url) = line.strip_prefix("admin: http://") {
            break url.parse()?;
        }
    };
    // Keep reading stdout so that the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Served { child, admin })
}

pub fn bench(runs: u64, flows: usize, requests: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("weir.redb");
    // Built before the fill, so that building does not share the machine with it.
    crate::webhook::weir_binary()?;
    println!("history: filling a store with {runs} runs across {flows} flows (store API)");
    let filled = fill(&data, runs, flows)?;
    let size = std::fs::metadata(&data)?.len();
    println!(
        "  filled in {:.1} s ({:.0} runs/s); store file {:.0} MiB",
        filled.took.as_secs_f64(),
        filled.runs as f64 / filled.took.as_secs_f64(),
        size as f64 / (1 << 20) as f64
    );
    let flows_dir = dir.path().join("flows");
    std::fs::create_dir(&flows_dir)?;
    for flow in &filled.flows {
        std::fs::write(
            flows_dir.join(format!("{flow}.toml")),
            format!(
                "name = \"{flow}\"\n[[steps]]\nid = \"shape\"\nplugin = \"transform\"\n\
                 input = {{ number = \"$.webhook.body.issue.number\" }}\n"
            ),
        )?;
    }
    let served = serve(&data, &flows_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let admin = served.admin;
        let flow = &filled.flows[filled.flows.len() / 2];
        // The cursor 10,000 runs deep, by paging as a client would.
        let mut cursor = String::new();
        for _ in 0..10 {
            let path = if cursor.is_empty() {
                "/api/runs?limit=1000".to_owned()
            } else {
                format!("/api/runs?limit=1000&cursor={cursor}")
            };
            let page = crate::webhook::get_json(admin, &path).await?;
            cursor = page["next_cursor"]
                .as_str()
                .context("fewer than 10,000 runs")?
                .to_owned();
        }
        let stats = crate::webhook::get_json(admin, &format!("/api/flows/{flow}/stats")).await?;
        println!(
            "  {flow} in the last day: {} (p50 {} ms, p95 {} ms)",
            stats["last_day"]["counts"], stats["last_day"]["p50_ms"], stats["last_day"]["p95_ms"]
        );
        let queries = [
            (
                "first page of 50, one flow",
                format!("/api/runs?flow={flow}&limit=50"),
            ),
            (
                "first page of 50, status failed",
                "/api/runs?status=failed&limit=50".to_owned(),
            ),
            (
                "page of 50, one flow, status failed",
                format!("/api/runs?flow={flow}&status=failed&limit=50"),
            ),
            (
                "page of 50, 10,000 runs deep by cursor",
                format!("/api/runs?limit=50&cursor={cursor}"),
            ),
            (
                "flow stats (hour and day)",
                format!("/api/flows/{flow}/stats"),
            ),
        ];
        println!("  {requests} requests each, one connection, after 10 not counted:");
        for (what, path) in &queries {
            let (p50, p99) = time_get(admin, path, requests).await?;
            let verdict = if p99 <= 20.0 { "ok" } else { "OVER 20 ms" };
            println!("    {what:<40} p50 {p50:>6.2} ms   p99 {p99:>6.2} ms   {verdict}");
        }
        anyhow::Ok(())
    })?;
    drop(served);
    Ok(())
}
