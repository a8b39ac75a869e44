//! The command line's calls to a running Weir's admin API: `weir replay` and
//! `weir token rotate`.
//!
//! One plain HTTP/1.1 request per command (the admin API listens on loopback unless a token
//! is set), through hyper, which the binary already carries.

use std::time::Duration;

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Where the admin API is and how to get in.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// The running Weir's admin API.
    #[arg(
        long = "admin",
        default_value = "http://127.0.0.1:8081",
        env = "WEIR_ADMIN_URL"
    )]
    pub url: String,
    /// The admin token, when the server has one.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// How long a call may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `POST {admin}{path}?{query}` and answers the JSON it got back; an error answer
/// becomes an error carrying the API's message.
pub fn post(
    admin: &AdminArgs,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<serde_json::Value> {
    let mut url = url::Url::parse(&admin.url)
        .with_context(|| format!("--admin {:?} is not a URL", admin.url))?;
    if url.scheme() != "http" {
        bail!(
            "--admin {}: only http:// is supported (put a TLS proxy's loopback side here)",
            admin.url
        );
    }
    let host = url
        .host_str()
        .with_context(|| format!("--admin {} has no host", admin.url))?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    url.set_path(path);
    url.query_pairs_mut()
        .clear()
        .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    let target = match url.query() {
        Some(q) if !q.is_empty() => format!("{}?{q}", url.path()),
        _ => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let mut request = hyper::Request::post(target).header("host", authority);
    if let Some(token) = &admin.admin_token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .header("content-length", "0")
        .body(Empty::<Bytes>::new())
        .context("building the request")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    let (status, body) = runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, async {
            let address = (host.trim_matches(['[', ']']), port);
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .with_context(|| format!("cannot reach the admin API at {}", admin.url))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .context("talking to the admin API")?;
            tokio::spawn(connection);
            let answer = sender
                .send_request(request)
                .await
                .context("talking to the admin API")?;
            let status = answer.status();
            let body = answer
                .into_body()
                .collect()
                .await
                .context("reading the admin API's answer")?
                .to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .with_context(|| format!("the admin API at {} did not answer in time", admin.url))?
    })?;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    if !status.is_success() {
        let message = json["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| json.to_string());
        bail!("the admin API answered {status}: {message}");
    }
    Ok(json)
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The run to replay; without it, the filters below select the runs.
    pub run_id: Option<String>,
    /// Only runs of this flow.
    #[arg(long, conflicts_with = "run_id")]
    pub flow: Option<String>,
    /// Only runs with this status (e.g. failed).
    #[arg(long, conflicts_with = "run_id")]
    pub status: Option<String>,
    /// Only runs received at or after this time: an age (1h, 7d) or RFC 3339 UTC.
    #[arg(long, conflicts_with = "run_id")]
    pub since: Option<String>,
    /// Only runs received at or before this time.
    #[arg(long, conflicts_with = "run_id")]
    pub until: Option<String>,
    /// Only runs whose webhook matches this JSONPath, e.g. "$.webhook.body[?@.action=='opened']".
    #[arg(long, conflicts_with = "run_id")]
    pub q: Option<String>,
    /// The most runs replayed (the API's default is 100, its cap 1000).
    #[arg(long, conflicts_with = "run_id")]
    pub max: Option<u32>,
    /// Only say how many runs would be replayed.
    #[arg(long, conflicts_with = "run_id")]
    pub dry_run: bool,
    /// Run the version each run ran (`original`) rather than the flow's current one.
    #[arg(long, value_parser = ["current", "original"])]
    pub version: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Give a flow a new webhook URL; the old one keeps working for --overlap.
    Rotate {
        /// The flow id.
        flow: String,
        /// How long the old URL keeps working (e.g. 1h; 0s ends it now). Default: 24h.
        #[arg(long)]
        overlap: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `weir replay`: prints each new run id (or, with --dry-run, each run that would go) on a line
/// of its own, and a summary on stderr.
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(version) = &args.version {
        query.push(("version", version.clone()));
    }
    if let Some(id) = &args.run_id {
        let answer = post(&args.admin, &format!("/api/runs/{id}/replay"), &query)?;
        println!("{}", answer["run_id"].as_str().unwrap_or_default());
        eprintln!(
            "replayed {id} as {} (flow version {})",
            answer["run_id"].as_str().unwrap_or_default(),
            answer["flow_version"].as_str().unwrap_or_default()
        );
        return Ok(());
    }
    let filters = [
        ("flow", &args.flow),
        ("status", &args.status),
        ("since", &args.since),
        ("until", &args.until),
        ("q", &args.q),
    ];
    for (name, value) in filters {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    if query.iter().all(|(name, _)| *name == "version") {
        bail!("give a run id, or filters (--flow, --status, --since, --until, --q) to select runs");
    }
    if let Some(max) = args.max {
        query.push(("max", max.to_string()));
    }
    if args.dry_run {
        query.push(("dry_run", "true".into()));
    }
    let answer = post(&args.admin, "/api/runs/replay", &query)?;
    for id in answer["run_ids"].as_array().into_iter().flatten() {
        println!("{}", id.as_str().unwrap_or_default());
    }
    let count = answer["count"].as_u64().unwrap_or(0);
    if args.dry_run {
        eprintln!("{count} runs would be replayed");
    } else {
        eprintln!("replayed {count} runs");
    }
    if answer["truncated"] == true {
        eprintln!(
            "the search stopped at its scan limit after {} runs: narrow it (--since, --flow) to look further",
            answer["scanned"]
        );
    }
    Ok(())
}

/// `weir token rotate`: prints the new webhook URL, and on stderr when the old one expires.
pub fn rotate_token(flow: &str, overlap: Option<String>, admin: &AdminArgs) -> anyhow::Result<()> {
    let query: Vec<_> = overlap.map(|o| ("overlap", o)).into_iter().collect();
    let answer = post(admin, &format!("/api/flows/{flow}/rotate-token"), &query)?;
    println!("{}", answer["webhook_url"].as_str().unwrap_or_default());
    eprintln!(
        "the previous URL of flow {flow} works until {}",
        answer["previous_expires_at"].as_str().unwrap_or_default()
    );
    Ok(())
}
