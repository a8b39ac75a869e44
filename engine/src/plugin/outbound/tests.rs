//! The checked sender against loopback servers started here: every request goes to
//! 127.0.0.1 or [::1], whatever the code under test does with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wasmtime_wasi_http::{Error as HttpError, WasiBody, WasiHttpHooks};

use super::*;

/// A loopback server that answers every connection with `answer` (or never, when `None`) and
/// counts connections.
struct Sink {
    port: u16,
    connections: Arc<AtomicUsize>,
}

async fn sink(answer: Option<Vec<u8>>) -> Sink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match answer {
                    Some(answer) => {
                        let _ = socket.write_all(&answer).await;
                        let _ = socket.shutdown().await;
                    }
                    // Never answers; holds the connection until the client goes.
                    None => {
                        while let Ok(n) = socket.read(&mut buf).await
                            && n > 0
                        {}
                    }
                }
            });
        }
    });
    Sink { port, connections }
}

fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn step(grants: &[&str], allow_private: bool, timeout: Duration) -> (StepHttp, CallLog) {
    let outbound = Outbound {
        grants: Grants {
            hosts: grants.iter().map(|g| Grant::parse(g).unwrap()).collect(),
            allow_private,
        },
        max_response: 1024,
        max_request: 1024,
    };
    let calls = CallLog::default();
    let hooks = StepHttp::new(
        OutboundConfig::new(None).unwrap(),
        outbound,
        Instant::now() + timeout,
        calls.clone(),
    );
    (hooks, calls)
}

fn request(method: &str, url: &str, body: &'static [u8]) -> http::Request<WasiBody> {
    let uri: http::Uri = url.parse().unwrap();
    http::Request::builder()
        .method(method)
        .header(http::header::HOST, uri.authority().unwrap().as_str())
        .uri(uri)
        .body(
            Full::new(Bytes::from_static(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap()
}

/// Sends and reads the whole body: (status, body) or the error.
async fn call(
    hooks: &mut StepHttp,
    req: http::Request<WasiBody>,
) -> Result<(u16, Vec<u8>), HttpError> {
    let future = hooks.send_request(req, None, Box::new(async { Ok(()) }));
    let (response, _io) = Box::into_pin(future).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok((status, body))
}

#[tokio::test]
async fn a_granted_call_reaches_the_server_and_is_recorded() {
    let server = sink(Some(answer(
        "200 OK",
        "content-type: application/json\r\n",
        b"{\"ok\":true}",
    )))
    .await;
    let url = format!("http://127.0.0.1:{}/hook?token=s3cret&x=1", server.port);
    let (mut hooks, calls) = step(
        &[&format!("http://127.0.0.1:{}", server.port)],
        false,
        Duration::from_secs(5),
    );
    let (status, body) = call(&mut hooks, request("POST", &url, b"{\"text\":\"hi\"}"))
        .await
        .unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"{\"ok\":true}"[..]));
    let calls = calls.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.method, "POST");
    assert_eq!(
        c.url,
        format!(
            "http://127.0.0.1:{}/hook?token=%5Bredacted%5D&x=%5Bredacted%5D",
            server.port
        )
    );
    assert_eq!(
        (c.status, c.request_bytes, c.response_bytes),
        (Some(200), 13, 11)
    );
    assert_eq!(c.error, None);
}

#[tokio::test]
async fn loopback_forms_are_refused_without_a_literal_grant_and_never_connected() {
    let server = sink(Some(answer("200 OK", "", b"no"))).await;
    let port = server.port;
    for (grant, url) in [
        (
            format!("http://*:{port}"),
            format!("http://127.0.0.1:{port}/"),
        ),
        (format!("http://*:{port}"), format!("http://[::1]:{port}/")),
        (
            format!("http://*:{port}"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
        ),
        (
            format!("http://*:{port}"),
            format!("http://2130706433:{port}/"),
        ),
        (
            format!("http://*:{port}"),
            format!("http://localhost:{port}/"),
        ),
        (
            format!("http://localhost:{port}"),
            format!("http://localhost:{port}/"),
        ),
        (
            format!("http://example.com:{port}"),
            format!("http://127.0.0.1:{port}/"),
        ),
    ] {
        let (mut hooks, calls) = step(&[&grant], false, Duration::from_secs(5));
        let err = call(&mut hooks, request("GET", &url, b""))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpError::HttpRequestDenied),
            "{url} under {grant}: {err}"
        );
        let denied = calls.denied().expect("a denial is recorded");
        assert!(
            calls.calls()[0]
                .error
                .as_deref()
                .unwrap()
                .starts_with("denied: "),
            "{denied}"
        );
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    // The exact name with allow_private reaches it.
    let (mut hooks, _) = step(
        &[&format!("http://localhost:{port}")],
        true,
        Duration::from_secs(5),
    );
    let url = format!("http://localhost:{port}/");
    // localhost may resolve to ::1 first, where nothing listens; 127.0.0.1 answers.
    let (status, _) = call(&mut hooks, request("GET", &url, b"")).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn denial_names_the_host() {
    let (mut hooks, calls) = step(&[], false, Duration::from_secs(5));
    let err = call(&mut hooks, request("GET", "http://127.0.0.1:9/x", b""))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::HttpRequestDenied));
    assert_eq!(
        calls.denied().unwrap(),
        "http://127.0.0.1:9 is not granted to this step; add it to the step's allow_hosts (granted: none)"
    );
}

#[tokio::test]
async fn redirects_are_handed_to_the_guest_not_followed() {
    let target = sink(Some(answer("200 OK", "", b"followed"))).await;
    let server = sink(Some(answer(
        "302 Found",
        &format!("location: http://127.0.0.1:{}/elsewhere\r\n", target.port),
        b"",
    )))
    .await;
    let (mut hooks, calls) = step(
        &[&format!("http://127.0.0.1:{}", server.port)],
        false,
        Duration::from_secs(5),
    );
    let url = format!("http://127.0.0.1:{}/", server.port);
    let (status, _) = call(&mut hooks, request("GET", &url, b"")).await.unwrap();
    assert_eq!(status, 302);
    assert_eq!(calls.calls().len(), 1);
    assert_eq!(target.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_deadline() {
    let server = sink(None).await;
    let (mut hooks, calls) = step(
        &[&format!("http://127.0.0.1:{}", server.port)],
        false,
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{}/", server.port);
    let err = call(&mut hooks, request("GET", &url, b""))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::ConnectionReadTimeout), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        calls.calls()[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("timeout: ")
    );
}

#[tokio::test]
async fn responses_over_the_cap_are_cut() {
    let big = vec![b'x'; 4096];
    // Declared length over the cap, and a body without a declared length.
    let declared = sink(Some(answer("200 OK", "", &big))).await;
    let mut chunked = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
    chunked.extend_from_slice(&big);
    let undeclared = sink(Some(chunked)).await;
    for server in [declared, undeclared] {
        let (mut hooks, calls) = step(
            &[&format!("http://127.0.0.1:{}", server.port)],
            false,
            Duration::from_secs(5),
        );
        let url = format!("http://127.0.0.1:{}/", server.port);
        let err = call(&mut hooks, request("GET", &url, b""))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpError::HttpResponseBodySize(Some(1024))),
            "{err}"
        );
        let record = &calls.calls()[0];
        assert!(
            record.error.as_deref().unwrap().starts_with("too large: "),
            "{record:?}"
        );
        assert!(record.response_bytes <= 1024);
    }
}

#[tokio::test]
async fn request_bodies_over_the_cap_are_refused() {
    let server = sink(Some(answer("200 OK", "", b""))).await;
    let (mut hooks, calls) = step(
        &[&format!("http://127.0.0.1:{}", server.port)],
        false,
        Duration::from_secs(5),
    );
    let url = format!("http://127.0.0.1:{}/", server.port);
    static BIG: [u8; 2048] = [b'y'; 2048];
    let err = call(&mut hooks, request("POST", &url, &BIG))
        .await
        .unwrap_err();
    assert!(!matches!(err, HttpError::HttpRequestDenied), "{err}");
    assert!(
        calls.calls()[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("too large: ")
    );
}

#[test]
fn hop_by_hop_headers_are_forbidden() {
    for name in [
        "host",
        "connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "keep-alive",
    ] {
        assert!(sender_forbidden(name), "{name}");
    }
    assert!(!sender_forbidden("authorization"));
    assert!(!sender_forbidden("content-type"));
}

fn sender_forbidden(name: &str) -> bool {
    let (mut hooks, _) = step(&[], false, Duration::from_secs(1));
    hooks.is_forbidden_header(&http::HeaderName::from_bytes(name.as_bytes()).unwrap())
}
