//! The checked sender: what `wasi:http/outgoing-handler` does with a guest's request.
//!
//! [`StepHttp`] is the `WasiHttpHooks` of one step call. For each request it matches the URL
//! against the step's grants, resolves the host name with the host's resolver, checks every
//! address ([`super::policy`]), and connects to one of those checked addresses itself, so no
//! second resolution happens between check and connect (DNS rebinding cannot slip through).
//! Redirects are never followed: the guest gets the 3xx, and a request to its `Location` is a
//! new request, checked again. Every stage runs within the step's deadline; the response body
//! streams to the guest in chunks and is cut past the step's cap, so memory stays bounded.
//! Each call is recorded ([`CallRecord`]) for the step's record.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use url::Url;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

use super::Outbound;
use super::policy::{self, Denial, Scheme, TargetHost};

/// How long connecting (name lookup, TCP and TLS handshakes) may take when the server does not
/// say; the step's own deadline still bounds it.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the outbound settings cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("cannot read the extra CA file {path}: {message}")]
    ReadCa { path: String, message: String },
    #[error("the extra CA file {path} holds no usable PEM certificate{message}")]
    BadCa { path: String, message: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// The server's settings of outbound HTTP, shared by every step call: the TLS roots (webpki's,
/// plus an extra CA for tests or private PKI) and the connect timeout.
#[derive(Clone)]
pub struct OutboundConfig {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
}

impl std::fmt::Debug for OutboundConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundConfig")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl OutboundConfig {
    /// webpki's roots, plus every certificate in the PEM file `extra_ca` when given.
    pub fn new(extra_ca: Option<&Path>) -> Result<Self, OutboundError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = extra_ca {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|e| OutboundError::ReadCa {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| OutboundError::BadCa {
                    path: shown.clone(),
                    message: format!(": {e}"),
                })?;
                roots.add(cert).map_err(|e| OutboundError::BadCa {
                    path: shown.clone(),
                    message: format!(": {e}"),
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(OutboundError::BadCa {
                    path: shown,
                    message: String::new(),
                });
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OutboundError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(OutboundConfig {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// The same settings with another connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// One outbound call of a step, as its record shows it (and the store keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallRecord {
    /// The request's method.
    pub method: String,
    /// The URL with every query value replaced by `[redacted]`: query strings carry tokens.
    pub url: String,
    /// The response status, when one came.
    pub status: Option<u16>,
    /// From the request to the end of the response body (or the failure).
    pub duration_ms: u64,
    /// Request body bytes sent.
    pub request_bytes: u64,
    /// Response body bytes received (up to the cap).
    pub response_bytes: u64,
    /// Why the call failed, when it did: `denied: …`, `too large: …`, `timeout: …`, …
    pub error: Option<String>,
}

/// The calls of one step, shared with the tasks that send them.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    inner: Arc<Mutex<CallLogInner>>,
}

#[derive(Debug, Default)]
struct CallLogInner {
    calls: Vec<(CallRecord, Instant)>,
    denied: Option<String>,
}

impl CallLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, CallLogInner> {
        // A poisoned log only means a sender panicked mid-update; the records are still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, record: CallRecord) -> usize {
        let mut inner = self.lock();
        inner.calls.push((record, Instant::now()));
        inner.calls.len() - 1
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut CallRecord)) {
        let mut inner = self.lock();
        if let Some((record, started)) = inner.calls.get_mut(index) {
            f(record);
            record.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
    }

    fn deny(&self, index: usize, denial: &Denial) {
        let message = format!("denied: {denial}");
        self.update(index, |r| r.error = Some(message.clone()));
        let mut inner = self.lock();
        inner.denied.get_or_insert(denial.to_string());
    }

    /// The calls so far, in the order they started.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.iter().map(|(r, _)| r.clone()).collect()
    }

    /// The first denial's message (naming the host), when a call was denied.
    pub fn denied(&self) -> Option<String> {
        self.lock().denied.clone()
    }
}

/// The `WasiHttpHooks` of one step call: its grants and caps, its deadline, the server's
/// settings and the log of its calls.
pub struct StepHttp {
    shared: Arc<Shared>,
}

struct Shared {
    config: OutboundConfig,
    outbound: Outbound,
    deadline: tokio::time::Instant,
    calls: CallLog,
}

impl StepHttp {
    /// Hooks for a step that may do what `outbound` grants until `deadline`.
    pub fn new(
        config: OutboundConfig,
        outbound: Outbound,
        deadline: Instant,
        calls: CallLog,
    ) -> Self {
        StepHttp {
            shared: Arc::new(Shared {
                config,
                outbound,
                deadline: tokio::time::Instant::from_std(deadline),
                calls,
            }),
        }
    }
}

/// Headers a guest may not set: the defaults of wasi:http (`Host` among them, which the host
/// sets from the URL) and every other hop-by-hop header.
fn forbidden_header(name: &HeaderName) -> bool {
    DEFAULT_FORBIDDEN_HEADERS.contains(name) || *name == header::TE || *name == header::TRAILER
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendResult = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

impl WasiHttpHooks for StepHttp {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(forbidden_header)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let shared = self.shared.clone();
        Box::new(async move { send(shared, request, options).await })
    }
}

/// Why a call failed, before it becomes the guest's error code.
enum Failure {
    Denied(Denial),
    Other(String, HttpError),
}

async fn send(
    shared: Arc<Shared>,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    let url_text = request.uri().to_string();
    let parsed = Url::parse(&url_text);
    let index = shared.calls.start(CallRecord {
        method: request.method().to_string(),
        url: parsed
            .as_ref()
            .map(redacted_url)
            .unwrap_or_else(|_| url_text.clone()),
        status: None,
        duration_ms: 0,
        request_bytes: 0,
        response_bytes: 0,
        error: None,
    });
    let outcome = match parsed {
        Ok(url) => connect_and_send(&shared, index, url, request, options).await,
        Err(_) => Err(Failure::Denied(Denial::BadUrl { url: url_text })),
    };
    match outcome {
        Ok(response) => Ok(response),
        Err(Failure::Denied(denial)) => {
            tracing::info!(host = denial.host(), reason = %denial, "outbound call denied");
            shared.calls.deny(index, &denial);
            Err(HttpError::HttpRequestDenied)
        }
        Err(Failure::Other(message, error)) => {
            tracing::debug!(%message, "outbound call failed");
            shared.calls.update(index, |r| {
                r.error.get_or_insert(message);
            });
            Err(error)
        }
    }
}

async fn connect_and_send(
    shared: &Arc<Shared>,
    index: usize,
    url: Url,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), Failure> {
    let deadline = shared.deadline;
    let target = policy::target(&shared.outbound.grants, &url).map_err(Failure::Denied)?;
    let host = target.host.to_string();
    let port = target.port;

    // wasi:http sets `Host` from the URL and forbids the guest to set it; a request whose
    // `Host` names another server than the one connected to is refused all the same.
    let authority = request.uri().authority().map(|a| a.as_str().to_owned());
    for value in request.headers().get_all(header::HOST) {
        if Some(value.as_bytes()) != authority.as_deref().map(str::as_bytes) {
            return Err(Failure::Other(
                format!("forbidden header: Host does not match the URL's host {host}"),
                HttpError::HttpRequestDenied,
            ));
        }
    }
    let max_request = shared.outbound.max_request;
    if let Some(length) = content_length(request.headers())
        && length > max_request
    {
        return Err(Failure::Other(
            format!(
                "too large: the request body is {length} bytes; the step's max_request is {max_request}"
            ),
            HttpError::HttpRequestBodySize(Some(length)),
        ));
    }

    let connect_for = options
        .and_then(|o| o.connect_timeout)
        .map_or(shared.config.connect_timeout, |t| {
            t.min(shared.config.connect_timeout)
        });
    let connect_deadline = deadline.min(tokio::time::Instant::now() + connect_for);
    let timeout = |what: String, error: HttpError| {
        Failure::Other(
            format!("timeout: {what} took longer than the step's deadline or the connect timeout"),
            error,
        )
    };

    // Resolve once; the addresses checked are the addresses connected to.
    let addresses: Vec<IpAddr> = match &target.host {
        TargetHost::Address(ip) => vec![*ip],
        TargetHost::Name(name) => {
            let found = tokio::time::timeout_at(
                connect_deadline,
                tokio::net::lookup_host((name.as_str(), port)),
            )
            .await
            .map_err(|_| timeout(format!("looking up {name}"), HttpError::DnsTimeout))?
            .map_err(|e| {
                Failure::Other(
                    format!("cannot resolve {name}: {e}"),
                    HttpError::DnsError {
                        rcode: Some(e.to_string()),
                        info_code: None,
                    },
                )
            })?;
            let mut ips: Vec<IpAddr> = Vec::new();
            for address in found {
                if !ips.contains(&address.ip()) {
                    ips.push(address.ip());
                }
            }
            ips
        }
    };
    policy::check_addresses(&target, &addresses).map_err(Failure::Denied)?;

    let mut refused = String::new();
    let mut stream = None;
    for ip in &addresses {
        let connect = TcpStream::connect(SocketAddr::new(*ip, port));
        match tokio::time::timeout_at(connect_deadline, connect).await {
            Ok(Ok(connected)) => {
                stream = Some(connected);
                break;
            }
            Ok(Err(e)) => refused = e.to_string(),
            Err(_) => {
                return Err(timeout(
                    format!("connecting to {host}:{port}"),
                    HttpError::ConnectionTimeout,
                ));
            }
        }
    }
    let stream = stream.ok_or_else(|| {
        Failure::Other(
            format!("cannot connect to {host}:{port}: {refused}"),
            HttpError::ConnectionRefused,
        )
    })?;
    let _ = stream.set_nodelay(true);

    let io: Box<dyn Stream> = match target.scheme {
        Scheme::Http => Box::new(stream),
        Scheme::Https => {
            let server_name = match &target.host {
                TargetHost::Address(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
                TargetHost::Name(name) => rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| {
                        Failure::Other(
                            format!("{name} is not a name TLS can check: {e}"),
                            HttpError::TlsProtocolError,
                        )
                    })?,
            };
            let handshake = shared.config.tls.connect(server_name, stream);
            let tls = tokio::time::timeout_at(connect_deadline, handshake)
                .await
                .map_err(|_| {
                    timeout(
                        format!("the TLS handshake with {host}"),
                        HttpError::ConnectionTimeout,
                    )
                })?
                .map_err(|e| {
                    let certificate = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .is_some_and(|inner| matches!(inner, rustls::Error::InvalidCertificate(_)));
                    let error = if certificate {
                        HttpError::TlsCertificateError
                    } else {
                        HttpError::TlsProtocolError
                    };
                    Failure::Other(format!("TLS with {host} failed: {e}"), error)
                })?;
            Box::new(tls)
        }
    };
    let (mut sender, connection) = tokio::time::timeout_at(
        connect_deadline,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| {
        timeout(
            format!("the HTTP handshake with {host}"),
            HttpError::ConnectionTimeout,
        )
    })?
    .map_err(|e| Failure::Other(format!("HTTP with {host} failed: {e}"), HttpError::Hyper(e)))?;
    // The connection serves this one request; it cannot outlive the step.
    tokio::spawn(async move {
        let _ = tokio::time::timeout_at(deadline, connection).await;
    });

    // On the wire the request names only its path; the authority went into `Host`.
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = http::Uri::try_from(path).map_err(|e| {
        Failure::Other(
            format!("invalid request path: {e}"),
            HttpError::HttpRequestUriInvalid,
        )
    })?;
    let body = RequestBody {
        inner: body,
        limit: max_request,
        sent: 0,
        calls: shared.calls.clone(),
        index,
    };
    let first_byte_deadline = options
        .and_then(|o| o.first_byte_timeout)
        .map_or(deadline, |t| deadline.min(tokio::time::Instant::now() + t));
    let response = tokio::time::timeout_at(
        first_byte_deadline,
        sender.send_request(http::Request::from_parts(parts, body)),
    )
    .await
    .map_err(|_| {
        timeout(
            format!("waiting for the answer of {host}"),
            HttpError::ConnectionReadTimeout,
        )
    })?
    .map_err(|e| {
        // The connection task ends at the same deadline and may be dropped first: the request
        // then fails as canceled, but what happened is the timeout.
        if tokio::time::Instant::now() >= first_byte_deadline {
            timeout(
                format!("waiting for the answer of {host}"),
                HttpError::ConnectionReadTimeout,
            )
        } else {
            Failure::Other(format!("{host}: {e}"), HttpError::Hyper(e))
        }
    })?;

    let status = response.status().as_u16();
    shared.calls.update(index, |r| r.status = Some(status));
    let limit = shared.outbound.max_response;
    let declared = content_length(response.headers());
    let response = response.map(|incoming| {
        ResponseBody {
            incoming,
            limit,
            seen: 0,
            declared_over: declared.is_some_and(|length| length > limit),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            calls: shared.calls.clone(),
            index,
            done: false,
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

/// What a connection runs over: TCP, or TLS over TCP.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T> Stream for T where T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The guest's request body, counted and cut past the step's `max_request`.
struct RequestBody {
    inner: WasiBody,
    limit: u64,
    sent: u64,
    calls: CallLog,
    index: usize,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.sent += data.len() as u64;
            let (sent, limit) = (this.sent, this.limit);
            this.calls.update(this.index, |r| r.request_bytes = sent);
            if sent > limit {
                let message = format!(
                    "too large: the request body is over the step's max_request of {limit} bytes"
                );
                this.calls.update(this.index, |r| {
                    r.error.get_or_insert(message);
                });
                return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(sent)))));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The response body as the guest reads it: counted, cut with a `too large` error past the
/// step's `max_response`, and failed when the step's deadline passes.
struct ResponseBody {
    incoming: hyper::body::Incoming,
    limit: u64,
    seen: u64,
    declared_over: bool,
    deadline: Pin<Box<tokio::time::Sleep>>,
    calls: CallLog,
    index: usize,
    done: bool,
}

impl ResponseBody {
    fn fail(
        &mut self,
        message: String,
        error: HttpError,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        self.done = true;
        self.calls.update(self.index, |r| {
            r.error.get_or_insert(message);
        });
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let limit = this.limit;
        let too_large = || {
            format!("too large: the response body is over the step's max_response of {limit} bytes")
        };
        if this.declared_over {
            return this.fail(too_large(), HttpError::HttpResponseBodySize(Some(limit)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return this.fail(
                "timeout: the response body did not end within the step's deadline".to_owned(),
                HttpError::ConnectionReadTimeout,
            );
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    let seen = this.seen;
                    if seen > limit {
                        this.calls.update(this.index, |r| r.response_bytes = limit);
                        return this
                            .fail(too_large(), HttpError::HttpResponseBodySize(Some(limit)));
                    }
                    this.calls.update(this.index, |r| r.response_bytes = seen);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(
                format!("reading the response failed: {e}"),
                HttpError::Hyper(e),
            ),
            Poll::Ready(None) => {
                this.done = true;
                this.calls.update(this.index, |_| {});
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.incoming.is_end_stream()
    }
}

/// `url` with each query value replaced by `[redacted]`, names kept.
pub fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_fragment(None);
    if url.query().is_some() {
        let names: Vec<String> = url
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        if names.is_empty() {
            shown.set_query(None);
        } else {
            let mut pairs = shown.query_pairs_mut();
            pairs.clear();
            for name in names {
                pairs.append_pair(&name, "[redacted]");
            }
        }
    }
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}
