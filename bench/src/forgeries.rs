//! A flood of forgeries against accepted webhooks (issue 23): one flow verifying GitHub's
//! HMAC signature, loaded with validly signed webhooks at concurrency 32, alone (phase A) and
//! then while as many connections again send the same webhook with a wrong signature as fast
//! as answers come (phase B). Both phases run in every round, one after the other, so that a
//! noisy machine falls on both; their ratio is the figure.
//!
//! Every loop is bounded: each valid connection sends its share of `--requests`, and the
//! forgers stop when the valid load is done or when they sent [`FORGERY_CAP`] times as many.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hmac::{KeyInit as _, Mac as _};
use http_body_util::{BodyExt, Full};

use crate::webhook::{WeirProcess, get_json, median, payload, start_weir_with, wait_drained};

const CONCURRENCY: usize = 32;
/// Forging connections in phase B.
const FORGERS: usize = 32;
/// The forgers stop after this many times `--requests`, if the valid load is still going.
const FORGERY_CAP: u64 = 20;
const SECRET: &str = "bench-github-webhook-secret-0123456789";

fn flow() -> String {
    format!(
        "name = \"bench\"\n[webhook]\nverify = {{ scheme = \"github\", secret = \"{SECRET}\" }}\n\
         [[steps]]\nid = \"shape\"\nplugin = \"transform\"\n\
         input = {{ number = \"$.webhook.body.issue.number\", title = \"$.webhook.body.issue.title\" }}\n"
    )
}

/// `sha256=` and the HMAC-SHA256 of `body` under `secret`, as GitHub signs.
fn signature(secret: &str, body: &[u8]) -> anyhow::Result<String> {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).context("an HMAC key")?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// The valid load of one phase.
struct Valid {
    ok: usize,
    other: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Valid {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn p99_ms(&self) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let at = ((self.latencies.len() - 1) as f64 * 0.99).round() as usize;
        self.latencies[at].as_secs_f64() * 1e3
    }
}

/// One keep-alive connection; a new one when the server closed it.
struct Connection {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Connection {
    fn new(addr: SocketAddr) -> Connection {
        Connection { addr, sender: None }
    }

    /// Posts `body` to `path` with `headers`; answers the status.
    async fn post(
        &mut self,
        path: &str,
        body: &Bytes,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<hyper::StatusCode> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().context("a connection")?;
        sender.ready().await?;
        let mut request = hyper::Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(request.body(Full::new(body.clone()))?)
            .await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// `requests` validly signed webhooks over [`CONCURRENCY`] connections, each with its own
/// delivery id (the scheme dedupes on it).
async fn valid_load(
    addr: SocketAddr,
    path: &str,
    requests: usize,
    round: usize,
    phase: char,
) -> anyhow::Result<Valid> {
    let body = payload();
    let signed = signature(SECRET, &body)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let share = requests / CONCURRENCY + usize::from(worker < requests % CONCURRENCY);
        let (body, path, signed) = (body.clone(), path.to_owned(), signed.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::new(addr);
            let (mut ok, mut other, mut latencies) = (0, 0, Vec::with_capacity(share));
            for i in 0..share {
                let delivery = format!("bench-{round}-{phase}-{worker}-{i}");
                let sent = Instant::now();
                let status = connection
                    .post(
                        &path,
                        &body,
                        &[
                            ("x-github-event", "issues"),
                            ("x-github-delivery", &delivery),
                            ("x-hub-signature-256", &signed),
                        ],
                    )
                    .await?;
                latencies.push(sent.elapsed());
                if status.is_success() {
                    ok += 1;
                } else {
                    other += 1;
                }
            }
            anyhow::Ok((ok, other, latencies))
        }));
    }
    let mut valid = Valid {
        ok: 0,
        other: 0,
        latencies: Vec::with_capacity(requests),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (ok, other, latencies) = task.await??;
        valid.ok += ok;
        valid.other += other;
        valid.latencies.extend(latencies);
    }
    valid.elapsed = start.elapsed();
    valid.latencies.sort();
    Ok(valid)
}

/// What the forgers did in phase B.
struct Forged {
    /// Answered 401 (refused on their signature).
    refused: u64,
    /// Answered anything else (none expected).
    other: u64,
}

/// [`FORGERS`] connections posting the webhook under a wrong signature until `stop` is set
/// or `cap` forgeries went.
async fn forge(
    addr: SocketAddr,
    path: &str,
    stop: Arc<AtomicBool>,
    cap: u64,
) -> anyhow::Result<Forged> {
    let body = payload();
    let wrong = signature("not-the-secret", &body)?;
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..FORGERS {
        let (body, path, wrong) = (body.clone(), path.to_owned(), wrong.clone());
        let (stop, sent) = (stop.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::new(addr);
            let (mut refused, mut other) = (0u64, 0u64);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < cap {
                let delivery = format!("forged-{worker}-{i}");
                i += 1;
                let status = connection
                    .post(
                        &path,
                        &body,
                        &[
                            ("x-github-event", "issues"),
                            ("x-github-delivery", &delivery),
                            ("x-hub-signature-256", &wrong),
                        ],
                    )
                    .await?;
                if status == hyper::StatusCode::UNAUTHORIZED {
                    refused += 1;
                } else {
                    other += 1;
                }
            }
            anyhow::Ok((refused, other))
        }));
    }
    let mut forged = Forged {
        refused: 0,
        other: 0,
    };
    for task in tasks {
        let (refused, other) = task.await??;
        forged.refused += refused;
        forged.other += other;
    }
    Ok(forged)
}

async fn hook_path(weir: &WeirProcess) -> anyhow::Result<String> {
    let flows = get_json(weir.admin, "/api/flows").await?;
    let flow = &flows["flows"][0];
    anyhow::ensure!(
        flow["status"] == "ok",
        "the bench flow did not load: {flow}"
    );
    let url = flow["webhook_url"]
        .as_str()
        .context("the bench flow's URL")?;
    url.split_once("/hooks/")
        .map(|(_, rest)| format!("/hooks/{rest}"))
        .context("webhook path")
}

/// One round's figures.
struct Round {
    alone: Valid,
    flooded: Valid,
    forgeries_per_s: f64,
}

/// `weir-bench forgeries [--requests N] [--rounds N]`.
pub fn bench(requests: usize, rounds: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let weir = start_weir_with(&flow())?;
        let path = hook_path(&weir).await?;
        println!(
            "forgeries benchmark: GitHub-signed webhooks to a one-step flow, {requests} per \
             phase at concurrency {CONCURRENCY}; phase B adds {FORGERS} connections of \
             forged signatures; {rounds} round(s){}",
            if cfg!(debug_assertions) {
                " (DEBUG build: figures are not release figures)"
            } else {
                ""
            }
        );
        let cap = FORGERY_CAP * requests as u64;
        let mut measured = Vec::new();
        for round in 1..=rounds {
            wait_drained(&weir).await?;
            let alone = valid_load(weir.webhook, &path, requests, round, 'a').await?;
            wait_drained(&weir).await?;
            let stop = Arc::new(AtomicBool::new(false));
            let forgers = tokio::spawn({
                let (path, stop) = (path.clone(), stop.clone());
                let addr = weir.webhook;
                async move { forge(addr, &path, stop, cap).await }
            });
            let flooded = valid_load(weir.webhook, &path, requests, round, 'b').await?;
            stop.store(true, Ordering::Relaxed);
            let forged = forgers.await??;
            let forgeries_per_s =
                (forged.refused + forged.other) as f64 / flooded.elapsed.as_secs_f64();
            println!(
                "-- round {round} of {rounds}: A {:.0} accepted/s p99 {:.2} ms; B {:.0} \
                 accepted/s p99 {:.2} ms with {forgeries_per_s:.0} forgeries/s ({} refused \
                 401, {} other); B/A {:.2}; valid not 2xx: {} A, {} B",
                alone.rps(),
                alone.p99_ms(),
                flooded.rps(),
                flooded.p99_ms(),
                forged.refused,
                forged.other,
                flooded.rps() / alone.rps(),
                alone.other,
                flooded.other,
            );
            measured.push(Round {
                alone,
                flooded,
                forgeries_per_s,
            });
        }
        let flows = get_json(weir.admin, "/api/flows").await?;
        println!(
            "refusals on record for the flow: {} (its ring keeps the newest 1000)",
            flows["flows"][0]["rejections"]["total"]
        );
        let range = |of: &dyn Fn(&Round) -> f64, digits: usize| {
            let (mid, lo, hi) = median(measured.iter().map(of));
            format!("{mid:.digits$} ({lo:.digits$}–{hi:.digits$})")
        };
        println!("== median of {rounds} round(s) (lowest–highest)");
        println!("| | accepted/s | p99 ms | forgeries/s |");
        println!("|---|---|---|---|");
        println!(
            "| A: valid alone | {} | {} | |",
            range(&|r| r.alone.rps(), 0),
            range(&|r| r.alone.p99_ms(), 2)
        );
        println!(
            "| B: valid + forgeries | {} | {} | {} |",
            range(&|r| r.flooded.rps(), 0),
            range(&|r| r.flooded.p99_ms(), 2),
            range(&|r| r.forgeries_per_s, 0)
        );
        println!(
            "| B/A | {} | {} | |",
            range(&|r| r.flooded.rps() / r.alone.rps(), 2),
            range(&|r| r.flooded.p99_ms() / r.alone.p99_ms(), 2)
        );
        anyhow::Ok(())
    })
}
