//! The memory benchmark: Weir's peak resident memory while it takes in and runs four 40 MB
//! webhooks sent at once, against their total size (the target: under 3×).
//!
//! The flow is the usual shape of one that takes large webhooks: it reads a few fields of a
//! large JSON body (a filter on the action, a template of the title), so what it measures is
//! the body's way in (read, stored, read back, decoded) and its mapping into the steps, not a
//! plugin holding the whole body. Weir runs as its own process (`weir serve`, the release
//! binary next to this one, or `--weir`), so its memory is its own; the figure is its `VmHWM`
//! once every run has finished.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Bodies sent at once.
const BODIES: usize = 4;
/// The size of each body: 40 MB.
const BODY_BYTES: usize = 40_000_000;

const FLOW: &str = r#"name = "large"
[webhook]
max_body = "64 MiB"
[[steps]]
id = "opened"
plugin = "filter"
input = "$.webhook.body.action"
config = { equals = "opened" }
[[steps]]
id = "message"
plugin = "template"
input.number = "$.webhook.body.issue.number"
input.title = "$.webhook.body.issue.title"
input.items = "$.webhook.body.count"
config.template = "Issue #{{ number }}: {{ title }} ({{ items }} items)"
"#;

/// A JSON body of `bytes` bytes (a little less): an issue and a long list of line items, the
/// shape of an export or a batch of events.
fn body(bytes: usize) -> Vec<u8> {
    let head = br#"{"action":"opened","issue":{"number":42,"title":"A large batch"},"items":["#;
    let mut out = Vec::with_capacity(bytes);
    out.extend_from_slice(head);
    let mut i = 0usize;
    let tail = 64;
    while out.len() + 160 + tail < bytes {
        if i > 0 {
            out.push(b',');
        }
        write!(
            out,
            r#"{{"id":{i},"sku":"SKU-{i:08}","name":"line item number {i}","qty":{},"price":{}.{:02},"tags":["a","b"]}}"#,
            i % 7 + 1,
            i % 500,
            i % 100
        )
        .expect("writing to a Vec");
        i += 1;
    }
    write!(out, r#"],"count":{i}}}"#).expect("writing to a Vec");
    out
}

struct Weir {
    child: std::process::Child,
    webhook: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_weir(binary: PathBuf, serve_args: &[String]) -> anyhow::Result<Weir> {
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows)?;
    std::fs::write(flows.join("large.toml"), FLOW)?;
    let mut child = Command::new(binary)
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
        .args(serve_args)
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
    Ok(Weir {
        child,
        webhook: webhook.context("webhook address")?,
        admin: admin.context("admin address")?,
        _dir: dir,
    })
}

/// One HTTP/1.1 request on its own connection; the status and the body of the answer. The
/// `Host` is the address itself: the admin API without a token answers only loopback hosts.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("an answer without a head")?;
    let status = std::str::from_utf8(&answer[..split])?
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an answer without a status")?;
    Ok((status, answer[split + 4..].to_vec()))
}

fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let (status, body) = request(addr, "GET", path, b"")?;
    if status != 200 {
        bail!("GET {path}: {status}");
    }
    Ok(serde_json::from_slice(&body)?)
}

/// A memory figure of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Posts `body` to the flow; the run's id.
fn deliver(weir: &Weir, url: &str, body: &[u8]) -> anyhow::Result<String> {
    let (status, answer) = request(weir.webhook, "POST", url, body)?;
    if status != 202 {
        bail!(
            "the webhook was answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    Ok(answer["run_id"].as_str().context("no run id")?.to_owned())
}

/// Waits until each run has finished; their final statuses. Reads the run list, not each run:
/// a run's own page holds its decoded webhook, which would cost the server its body again.
fn finished(weir: &Weir, ids: &[String]) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(900);
    while Instant::now() < deadline {
        let page = get_json(weir.admin, "/api/runs?flow=large&limit=100")?;
        let runs = page["runs"].as_array().context("a page of runs")?;
        let statuses: Vec<String> = ids
            .iter()
            .filter_map(|id| {
                let run = runs.iter().find(|run| run["id"] == id.as_str())?;
                let status = run["status"].as_str()?;
                matches!(status, "succeeded" | "failed" | "filtered").then(|| status.to_owned())
            })
            .collect();
        if statuses.len() == ids.len() {
            return Ok(statuses);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the runs did not finish in 15 minutes")
}

pub fn bench(binary: Option<PathBuf>, serve_args: &[String]) -> anyhow::Result<()> {
    let binary = match binary {
        Some(binary) => binary,
        None => crate::webhook::weir_binary()?,
    };
    let payload = body(BODY_BYTES);
    println!(
        "memory benchmark: {BODIES} bodies of {:.1} MB sent at once to a flow that maps a few \
         fields of each (filter + template); weir {}{}",
        payload.len() as f64 / 1e6,
        binary.display(),
        if serve_args.is_empty() {
            String::new()
        } else {
            format!(" {}", serve_args.join(" "))
        }
    );
    let weir = start_weir(binary, serve_args)?;
    let flow = get_json(weir.admin, "/api/flows/large")?;
    let url = flow["webhook_url"]
        .as_str()
        .context("the flow has no webhook URL")?
        .split_once("/hooks/")
        .map(|(_, path)| format!("/hooks/{path}"))
        .context("a webhook URL without /hooks/")?;
    // A small run first, so that plugins are loaded and the runtime warm before the baseline.
    let small = deliver(&weir, &url, &body(4096))?;
    let small = finished(&weir, &[small])?.remove(0);
    if small != "succeeded" {
        bail!("the warm-up run ended {small}");
    }
    let pid = weir.child.id();
    let baseline = status_mib(pid, "VmRSS:");
    let started = Instant::now();
    let ids = std::thread::scope(|s| {
        let senders: Vec<_> = (0..BODIES)
            .map(|_| s.spawn(|| deliver(&weir, &url, &payload)))
            .collect();
        senders
            .into_iter()
            .map(|sender| sender.join().expect("a sender thread"))
            .collect::<anyhow::Result<Vec<String>>>()
    })?;
    // Runs start as soon as their webhook is stored, so this peak may include some of theirs.
    let accepted_peak = status_mib(pid, "VmHWM:");
    let statuses = finished(&weir, &ids)?;
    let took = started.elapsed();
    if let Some(status) = statuses.iter().find(|s| *s != "succeeded") {
        bail!("a large run ended {status}");
    }
    let peak = status_mib(pid, "VmHWM:");
    let total = (BODIES * payload.len()) as f64 / (1 << 20) as f64;
    println!(
        "  resident before: {baseline:.0} MiB; peak (VmHWM): {peak:.0} MiB = {:.2}x the {total:.0} MiB \
         of bodies (target < 3x); peak above the baseline: {:.0} MiB = {:.2}x; all {BODIES} runs \
         finished in {:.1} s",
        peak / total,
        peak - baseline,
        (peak - baseline) / total,
        took.as_secs_f64()
    );
    println!(
        "  peak when the last of the {BODIES} was answered 202: {accepted_peak:.0} MiB = {:.2}x",
        accepted_peak / total
    );
    Ok(())
}
