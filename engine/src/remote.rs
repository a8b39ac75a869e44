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
