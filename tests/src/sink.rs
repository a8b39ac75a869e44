//! Loopback HTTP servers for the outbound tests: they listen on 127.0.0.1 only, record what
//! reaches them (connections, requests) and answer as each test says.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the sink received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON request body")
    }
}

/// How the sink answers a request.
pub enum Reply {
    /// Status, extra headers, body (sent with its length).
    Answer(u16, Vec<(String, String)>, Vec<u8>),
    /// A body of this many bytes without a declared length, then the connection closes.
    Endless(usize),
    /// Never answers; holds the connection until the client goes.
    Never,
}

impl Reply {
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::Answer(
            status,
            vec![("content-type".into(), "application/json".into())],
            body.to_string().into_bytes(),
        )
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Answer(status, vec![], body.as_bytes().to_vec())
    }
}

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

/// A loopback HTTP/1.1 server on an ephemeral port, stopped when dropped.
pub struct Sink {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    /// Starts a sink that answers every request with `handler`'s reply.
    pub fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Sink {
        Sink::start_inner(None, handler)
    }

    /// As [`Sink::start`], over TLS with this certificate chain and key (DER).
    pub fn start_tls(
        chain: Vec<Vec<u8>>,
        key: Vec<u8>,
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Sink {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                chain.into_iter().map(CertificateDer::from).collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .expect("a usable test certificate");
        Sink::start_inner(Some(Arc::new(config)), handler)
    }

    fn start_inner(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let sink = Sink {
            addr,
            connections: Arc::default(),
            requests: Arc::default(),
            stop: Arc::default(),
        };
        let handler: Arc<Handler> = Arc::new(handler);
        let (connections, requests, stop) = (
            sink.connections.clone(),
            sink.requests.clone(),
            sink.stop.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let (handler, requests, tls) = (handler.clone(), requests.clone(), tls.clone());
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                std::thread::spawn(move || match tls {
                    None => serve(stream, &*handler, &requests),
                    Some(config) => {
                        let Ok(connection) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let tls = rustls::StreamOwned::new(connection, stream);
                        serve(tls, &*handler, &requests)
                    }
                });
            }
        });
        sink
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve<S: Read + Write>(mut stream: S, handler: &Handler, requests: &Mutex<Vec<Received>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_owned();
        let target = first.next().unwrap_or("").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        buf.drain(..head_end);
        let body = if chunked {
            match read_chunked(&mut stream, &mut buf) {
                Some(body) => body,
                None => return,
            }
        } else {
            while buf.len() < length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..length).collect()
        };
        let received = Received {
            method,
            target,
            headers,
            body,
        };
        let reply = handler(&received);
        requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(received);
        match reply {
            Reply::Answer(status, headers, body) => {
                let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (name, value) in headers {
                    out.push_str(&format!("{name}: {value}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                if stream
                    .write_all(&bytes)
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
            }
            Reply::Endless(size) => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
                let block = vec![b'x'; 64 << 10];
                let mut sent = 0;
                while sent < size {
                    let n = block.len().min(size - sent);
                    if stream.write_all(&block[..n]).is_err() {
                        return;
                    }
                    sent += n;
                }
                return;
            }
            Reply::Never => {
                while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
                return;
            }
        }
    }
}

/// Reads a chunked body whose first bytes are in `buf`; `None` when the connection ends first.
fn read_chunked<S: Read>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    let mut fill = |buf: &mut Vec<u8>, stream: &mut S| -> Option<()> {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    };
    loop {
        let line_end = loop {
            if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                break pos;
            }
            fill(buf, stream)?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            fill(buf, stream)?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
        if size == 0 {
            return Some(body);
        }
    }
}
