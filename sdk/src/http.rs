//! Outbound HTTP from a step, on top of the standard `wasi:http/outgoing-handler`.
//!
//! A step reaches only the hosts its flow grants it (`allow_hosts` on the step); Weir checks
//! every request after resolving its name, refuses private and loopback addresses unless
//! granted by literal address, never follows redirects, and caps bodies and time. Calls are
//! blocking and return typed errors:
//!
//! ```no_run
//! use weir_sdk::http;
//!
//! # fn post() -> Result<(), weir_sdk::StepError> {
//! let response = http::post_json("https://hooks.slack.com/services/T/B/X",
//!                                &serde_json::json!({"text": "hello"}))?;
//! assert!(response.status < 300);
//! # Ok(())
//! # }
//! ```
//!
//! Any other wasi:http client (`wstd`, `waki`) works in a plugin just as well; this module is
//! a small convenience. Outside a component (a plugin's native `cargo test`) every call fails
//! with [`HttpError::Unavailable`].

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StepError;

/// An outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ... (upper-case).
    pub method: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Header names and values, in order; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// The body, when there is one.
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body and `content-type: application/json` (unless one is set already).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| HttpError::InvalidRequest(format!("the body is not JSON: {e}")))?;
        if !self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            self.headers
                .push(("content-type".into(), "application/json".into()));
        }
        self.body = Some(body);
        Ok(self)
    }

    /// Sends the request and reads the whole response. Any status is a response; see
    /// [`Response::error_for_status`].
    pub fn send(&self) -> Result<Response, HttpError> {
        imp::send(self)
    }
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names (lower-case) and values, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            HttpError::InvalidResponse(format!("the body is not the JSON expected: {e}"))
        })
    }

    /// The response when its status is 2xx, else [`HttpError::Status`].
    pub fn error_for_status(self) -> Result<Response, HttpError> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(HttpError::Status {
                status: self.status,
                body: excerpt(&self.body),
            })
        }
    }
}

/// The first 512 bytes of a body as text, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    if body.len() > 512 {
        format!("{text}…")
    } else {
        text
    }
}

/// Why a call gave no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL, a header or the body cannot be sent.
    InvalidRequest(String),
    /// Weir refused the call: the host is not granted to the step, or resolves to an address
    /// the step may not reach. The step's record says which.
    Denied(String),
    /// The response (or request) body is over the step's cap.
    TooLarge(String),
    /// The call ran out of time (connect timeout or the step's deadline).
    Timeout(String),
    /// The host could not be resolved or connected to, or TLS failed.
    Connect(String),
    /// The server answered with a status the caller does not accept.
    Status { status: u16, body: String },
    /// The response body is not what was expected.
    InvalidResponse(String),
    /// Any other protocol failure.
    Protocol(String),
    /// Outside a WebAssembly component (a native test): there is no host to send through.
    Unavailable,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            HttpError::Denied(m) => write!(f, "denied: {m}"),
            HttpError::TooLarge(m) => write!(f, "too large: {m}"),
            HttpError::Timeout(m) => write!(f, "timeout: {m}"),
            HttpError::Connect(m) => write!(f, "connection failed: {m}"),
            HttpError::Status { status, body } if body.is_empty() => {
                write!(f, "unexpected status {status}")
            }
            HttpError::Status { status, body } => write!(f, "unexpected status {status}: {body}"),
            HttpError::InvalidResponse(m) => write!(f, "invalid response: {m}"),
            HttpError::Protocol(m) => write!(f, "HTTP failed: {m}"),
            HttpError::Unavailable => {
                write!(
                    f,
                    "outbound HTTP is only available to a step running in Weir"
                )
            }
        }
    }
}

// Not `std::error::Error` on purpose: `?` in a step turns any other error into an `internal`
// step error, and an HTTP failure is `upstream` (the `From` below).

/// A failed call fails the step as `upstream` (a request the step could not even build as
/// `invalid-input`); Weir records a refused call as `denied` itself.
impl From<HttpError> for StepError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::InvalidRequest(_) => StepError::InvalidInput(e.to_string()),
            _ => StepError::Upstream(e.to_string()),
        }
    }
}

/// `GET url`, 2xx only.
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::new("GET", url).send()?.error_for_status()
}

/// `POST url` with `value` as JSON, 2xx only.
pub fn post_json<T: Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, HttpError> {
    Request::new("POST", url)
        .json(value)?
        .send()?
        .error_for_status()
}

/// The parts of an `http(s)://authority/path?query` URL (the fragment dropped).
fn split_url(url: &str) -> Result<(bool, &str, &str), HttpError> {
    let bad = || {
        HttpError::InvalidRequest(format!(
            "`{url}` is not an http:// or https:// URL with a host"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(bad()),
    };
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok((https, authority, path))
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{HttpError, Request, Response, split_url};

    pub(super) fn send(request: &Request) -> Result<Response, HttpError> {
        split_url(&request.url)?;
        Err(HttpError::Unavailable)
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

    use super::{HttpError, Request, Response, split_url};

    pub(super) fn send(request: &Request) -> Result<Response, HttpError> {
        let (https, authority, path) = split_url(&request.url)?;
        let mut entries: Vec<(String, Vec<u8>)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        // A known length goes out as `content-length` rather than chunked, which some servers
        // (and signature schemes) do not take.
        if let Some(body) = &request.body
            && !entries.iter().any(|(n, _)| n == "content-length")
        {
            entries.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        let headers = Fields::from_list(&entries).map_err(|e| {
            HttpError::InvalidRequest(format!(
                "a header cannot be sent ({e:?}): hop-by-hop headers and Host are set by Weir"
            ))
        })?;
        let outgoing = OutgoingRequest::new(headers);
        let method = match request.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        };
        let invalid =
            |what: &str| HttpError::InvalidRequest(format!("invalid {what} in `{}`", request.url));
        outgoing
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        outgoing
            .set_authority(Some(authority))
            .map_err(|()| invalid("host"))?;
        let path = if path.is_empty() { "/" } else { path };
        outgoing
            .set_path_with_query(Some(path))
            .map_err(|()| invalid("path"))?;
        let body = outgoing
            .body()
            .map_err(|()| HttpError::Protocol("the request body is not available".into()))?;
        let future = outgoing_handler::handle(outgoing, None).map_err(from_code)?;
        {
            let stream = body.write().map_err(|()| {
                HttpError::Protocol("the request body stream is not available".into())
            })?;
            for chunk in request.body.as_deref().unwrap_or_default().chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(from_stream)?;
            }
        }
        OutgoingBody::finish(body, None).map_err(from_code)?;

        let response = loop {
            match future.get() {
                Some(result) => break result,
                None => future.subscribe().block(),
            }
        };
        let response = response
            .map_err(|()| HttpError::Protocol("the response was already taken".into()))?
            .map_err(from_code)?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| HttpError::Protocol("the response body is not available".into()))?;
        let mut body = Vec::new();
        {
            let stream = incoming.stream().map_err(|()| {
                HttpError::Protocol("the response body stream is not available".into())
            })?;
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(e) => return Err(from_stream(e)),
                }
            }
        }
        let trailers = IncomingBody::finish(incoming);
        drop(trailers);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn from_stream(e: StreamError) -> HttpError {
        match e {
            StreamError::LastOperationFailed(error) => {
                match wasip2::http::types::http_error_code(&error) {
                    Some(code) => from_code(code),
                    // A body error may come as text only; its words still tell the cases
                    // apart that a step reports differently.
                    None => {
                        let text = error.to_debug_string();
                        let lower = text.to_ascii_lowercase();
                        if lower.contains("size exceeds limit") {
                            HttpError::TooLarge(format!(
                                "the response body is over the step's cap ({text})"
                            ))
                        } else if lower.contains("timeout") || lower.contains("timed out") {
                            HttpError::Timeout(text)
                        } else {
                            HttpError::Protocol(text)
                        }
                    }
                }
            }
            StreamError::Closed => HttpError::Protocol("the stream closed early".into()),
        }
    }

    fn from_code(code: ErrorCode) -> HttpError {
        match code {
            ErrorCode::HttpRequestDenied => {
                HttpError::Denied("Weir refused the call; the step's record says why".into())
            }
            ErrorCode::HttpResponseBodySize(limit) => HttpError::TooLarge(match limit {
                Some(limit) => format!("the response body is over the step's cap of {limit} bytes"),
                None => "the response body is over the step's cap".into(),
            }),
            ErrorCode::HttpRequestBodySize(_) => {
                HttpError::TooLarge("the request body is over the step's cap".into())
            }
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => HttpError::Timeout(format!("{code:?}")),
            ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_) => HttpError::Connect(format!("{code:?}")),
            ErrorCode::DestinationIpProhibited => {
                HttpError::Denied("the destination address is prohibited".into())
            }
            other => HttpError::Protocol(format!("{other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        assert_eq!(
            split_url("https://hooks.slack.com/services/T?x=1#f").unwrap(),
            (true, "hooks.slack.com", "/services/T?x=1")
        );
        assert_eq!(
            split_url("HTTP://127.0.0.1:9000").unwrap(),
            (false, "127.0.0.1:9000", "")
        );
        assert_eq!(split_url("http://h?q").unwrap(), (false, "h", "?q"));
        for bad in ["ftp://x/", "hooks.slack.com", "http:///x", "https://u:p@h/"] {
            assert!(
                matches!(split_url(bad), Err(HttpError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn natively_calls_are_unavailable_and_fail_the_step_as_upstream() {
        let err = post_json("https://example.com/x", &serde_json::json!({})).unwrap_err();
        assert_eq!(err, HttpError::Unavailable);
        assert_eq!(StepError::from(err).kind(), "upstream");
        let err = get("not a url").unwrap_err();
        assert_eq!(StepError::from(err).kind(), "invalid-input");
    }

    #[test]
    fn responses_check_status_and_parse_json() {
        let ok = Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"ok":true}"#.to_vec(),
        };
        assert_eq!(ok.header("Content-Type"), Some("application/json"));
        assert_eq!(
            ok.json::<serde_json::Value>().unwrap(),
            serde_json::json!({"ok": true})
        );
        let err = Response {
            status: 404,
            headers: vec![],
            body: b"no such channel".to_vec(),
        }
        .error_for_status()
        .unwrap_err();
        assert_eq!(err.to_string(), "unexpected status 404: no such channel");
    }

    #[test]
    fn json_bodies_set_the_content_type_once() {
        let r = Request::new("post", "http://h/")
            .header("Content-Type", "application/vnd.api+json")
            .json(&[1, 2])
            .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.body.as_deref(), Some(&b"[1,2]"[..]));
    }
}
