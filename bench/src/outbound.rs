//! `weir-bench outbound`: a flow of one `http` step posting each webhook's body to a loopback
//! sink (the bare warp server of `webhook`). Prints completed runs/s, and the latency a call
//! adds over the sink's own: the step's median duration (instantiation, the checked sender, a
//! new connection per call) against the median of direct POSTs to the sink, each on a new
//! connection as the step makes them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::webhook::{PHASE, get_json, load, median, start_bare, start_weir_with, wait_drained};

/// Concurrent webhook senders while runs/s is measured.
const CONCURRENCY: usize = 16;
/// Direct requests to the sink, and runs sampled for their step's duration.
const SAMPLES: usize = 200;

/// One POST to the sink on a connection of its own; how long until its answer was read.
async fn direct(sink: SocketAddr) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(sink).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::post("/hook")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"issue":{"number":1}}"#)))?;
    sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(started.elapsed())
}

pub fn bench() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (sink, _) = start_bare(None)?;
        let flow = format!(
            "name = \"bench\"\n[[steps]]\nid = \"post\"\nplugin = \"http\"\n\
             allow_hosts = [\"http://127.0.0.1:{port}\"]\ninput.body = \"$.webhook.body\"\n\
             config.url = \"http://127.0.0.1:{port}/hook\"\n",
            port = sink.addr.port()
        );
        let weir = start_weir_with(&flow)?;
        let flows = get_json(weir.admin, "/api/flows").await?;
        let url = flows["flows"][0]["webhook_url"]
            .as_str()
            .with_context(|| format!("the bench flow's URL in {flows}"))?;
        let hook_path = url
            .split_once("/hooks/")
            .map(|(_, rest)| format!("/hooks/{rest}"))
            .context("webhook path")?;

        let mut own = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            own.push(direct(sink.addr).await?.as_secs_f64() * 1e3);
        }
        let (own_ms, own_lo, own_hi) = median(own.into_iter());

        let started = Instant::now();
        let sent = load(weir.webhook, &hook_path, CONCURRENCY).await?;
        wait_drained(&weir).await?;
        let drained = started.elapsed();
        let runs_per_s = sent.ok as f64 / drained.as_secs_f64();

        let runs = get_json(weir.admin, &format!("/api/runs?limit={SAMPLES}")).await?;
        let mut steps = Vec::new();
        let mut failed = 0;
        for run in runs["runs"].as_array().context("a run list")? {
            let id = run["id"].as_str().context("a run id")?;
            let detail = get_json(weir.admin, &format!("/api/runs/{id}")).await?;
            let step = &detail["steps"][0];
            if step["status"] != "succeeded" {
                failed += 1;
                continue;
            }
            if let Some(us) = step["duration_us"].as_u64() {
                steps.push(us as f64 / 1e3);
            }
        }
        anyhow::ensure!(!steps.is_empty(), "no run of the bench flow succeeded");
        let (step_ms, step_lo, step_hi) = median(steps.into_iter());
        println!(
            "outbound benchmark: one `http` step POSTing each webhook's body to a loopback sink; \
             {CONCURRENCY} senders for {} s",
            PHASE.as_secs()
        );
        println!("| | median (lowest–highest) |");
        println!("|---|---|");
        println!("| sink's own POST, new connection | {own_ms:.2} ms ({own_lo:.2}–{own_hi:.2}) |");
        println!("| `http` step, whole call | {step_ms:.2} ms ({step_lo:.2}–{step_hi:.2}) |");
        println!("| added by the step | {:.2} ms |", step_ms - own_ms);
        println!(
            "| completed runs/s | {runs_per_s:.0} ({} accepted, {failed} of the sampled runs failed) |",
            sent.ok
        );
        anyhow::Ok(())
    })
}
