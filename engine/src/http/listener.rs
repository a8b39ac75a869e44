//! The connection layer under both listeners: accepting, bounding and closing connections.
//!
//! Each listener serves HTTP/1.1 only (no `h2c`: no sender needs it and it would be a second
//! protocol to bound) through hyper's connection builder, with warp's routes as the service.
//! What no request may hold for long is bounded here:
//!
//! - at most [`EdgeLimits::max_connections`] connections at once, each holding a permit of the
//!   listener's own semaphore, so one listener's flood cannot use up the other's budget;
//! - a connection with no request in progress and no byte received is closed after
//!   [`EdgeLimits::idle_timeout`] (a silent socket, or keep-alive between requests);
//! - a connection that started sending a request head must finish it within
//!   [`EdgeLimits::header_timeout`] of its first byte (a trickling sender);
//! - a request head is at most [`EdgeLimits::max_head`] bytes (hyper answers 431);
//! - when the listener is full, a new connection closes the one that has waited longest
//!   without a request in progress (idle or still sending its head), so that idle and
//!   trickling clients cannot keep a sender that is ready to talk out. Connections with a
//!   request in progress are never closed this way: their own deadlines bound them (the
//!   gateway's body deadline, `respond_timeout`), and a streaming response (such as server-sent
//!   events) lives as long as its client reads it.
//! - at shutdown the listener stops accepting, asks every connection to finish its request
//!   and close, and closes whatever is left at the deadline it is given.
//!
//! Errors of single connections (malformed requests, resets, timeouts) are the client's, and
//! are logged at `debug`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use warp::http;

/// What one listener allows its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// From a request head's first byte until it is complete.
    pub header_timeout: Duration,
    /// How long a connection may stay open without a request in progress and without
    /// receiving a byte.
    pub idle_timeout: Duration,
    /// The largest request head (request line and headers), in bytes.
    pub max_head: usize,
}

/// The least `max_head`: hyper's read buffer cannot be smaller.
pub const MIN_MAX_HEAD: usize = 8 * 1024;

/// The client's address, as a request extension (`warp::ext::optional::<Peer>()`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `service` on `listener` within `limits` until `shutdown` resolves with the instant
/// by which every connection must be closed.
pub async fn serve<S>(
    name: &'static str,
    listener: TcpListener,
    service: S,
    limits: EdgeLimits,
    shutdown: impl Future<Output = Instant>,
) where
    S: tower_service::Service<
            http::Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let tracker = Arc::new(Tracker::new());
    let (drain, draining) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_header_size(limits.max_head.max(MIN_MAX_HEAD))
        .header_read_timeout(None)
        .keep_alive(true);
    let sweeper = tokio::spawn(sweep(tracker.clone(), limits));
    let mut shutdown = std::pin::pin!(shutdown);

    let deadline = loop {
        let (stream, peer) = tokio::select! {
            deadline = &mut shutdown => break deadline,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(name, &e).await;
                    continue;
                }
            },
        };
        // The listener's budget leaves room for this one accepted socket beyond the cap.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracker.evict_one();
                tokio::select! {
                    deadline = &mut shutdown => break deadline,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break Instant::now(),
                    },
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = tracker.register();
        let service = Edge {
            inner: service.clone(),
            conn: conn.clone(),
            peer: Peer(peer),
        };
        let http = http.clone();
        let mut draining = draining.clone();
        let tracker = tracker.clone();
        tokio::spawn(async move {
            // Dropped in reverse order: the socket closes before the permit returns, so the
            // listener never holds more open sockets than its budget.
            let _permit = permit;
            let _registered = Registered {
                tracker,
                conn: conn.clone(),
            };
            let io = TokioIo::new(Watched {
                inner: stream,
                conn: conn.clone(),
            });
            let connection = http.serve_connection(io, service);
            let mut connection = std::pin::pin!(connection);
            let mut asked_to_finish = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = conn.close.notified() => {
                        tracing::debug!(listener = name, %peer, "connection closed: idle, slow or displaced");
                        break;
                    }
                    _ = draining.wait_for(|d| *d), if !asked_to_finish => {
                        asked_to_finish = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    };

    drop(listener);
    let _ = drain.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout_at(deadline, permits.acquire_many(all))
        .await
        .is_err()
    {
        let left = tracker.close_all();
        tracing::info!(
            listener = name,
            connections = left,
            "closing the connections still open at the end of the grace period"
        );
        let _ = permits.acquire_many(all).await;
    }
    sweeper.abort();
}

/// Waits after an accept error: a connection that failed before it was accepted is the
/// client's problem; anything else (out of file descriptors) is worth a pause, so the loop
/// does not spin.
async fn accept_failed(name: &'static str, e: &std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) {
        tracing::debug!(listener = name, error = %e, "a connection failed before it was accepted");
        return;
    }
    tracing::warn!(listener = name, error = %e, "cannot accept connections; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Where a connection is: waiting for a request, receiving a request head, or with requests
/// in progress.
const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;
/// Told to close; not chosen again.
const CLOSING: u8 = 3;

/// One open connection, as the sweeper and eviction see it.
struct Conn {
    id: u64,
    state: AtomicU8,
    /// Requests whose answer is not sent yet.
    busy: AtomicUsize,
    /// When the connection entered its state, by [`clock`].
    since: AtomicU64,
    close: Notify,
}

impl Conn {
    fn close(&self) {
        self.state.store(CLOSING, Ordering::Release);
        self.close.notify_one();
    }
}

/// Milliseconds since the first reading: the clock of every connection's `since`.
fn clock() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The listener's open connections.
struct Tracker {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Tracker {
    fn new() -> Tracker {
        Tracker {
            next: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        }
    }

    fn register(self: &Arc<Self>) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            state: AtomicU8::new(IDLE),
            busy: AtomicUsize::new(0),
            since: AtomicU64::new(clock()),
            close: Notify::new(),
        });
        self.lock().insert(conn.id, conn.clone());
        conn
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the connection that has waited longest without a request in progress; false
    /// when every connection has one.
    fn evict_one(&self) -> bool {
        let victim = self
            .lock()
            .values()
            .filter(|c| matches!(c.state.load(Ordering::Acquire), IDLE | HEAD))
            .min_by_key(|c| c.since.load(Ordering::Acquire))
            .cloned();
        match victim {
            Some(conn) => {
                conn.close();
                true
            }
            None => false,
        }
    }

    /// Closes every connection; returns how many there were.
    fn close_all(&self) -> usize {
        let conns = self.lock();
        for conn in conns.values() {
            conn.close();
        }
        conns.len()
    }
}

/// Removes its connection from the tracker when the connection's task ends.
struct Registered {
    tracker: Arc<Tracker>,
    conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.tracker.lock().remove(&self.conn.id);
    }
}

/// Closes the connections that were idle or sent their head too slowly, a few times per
/// shortest timeout.
async fn sweep(tracker: Arc<Tracker>, limits: EdgeLimits) {
    let shortest = limits.idle_timeout.min(limits.header_timeout);
    let every = (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let idle = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let head = u64::try_from(limits.header_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = clock();
        for conn in tracker.lock().values() {
            let waited = now.saturating_sub(conn.since.load(Ordering::Acquire));
            let late = match conn.state.load(Ordering::Acquire) {
                IDLE => waited > idle,
                HEAD => waited > head,
                _ => false,
            };
            if late {
                conn.close();
            }
        }
    }
}

/// The socket, telling its connection's tracker entry when a request head starts.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self
                .conn
                .state
                .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.conn.since.store(clock(), Ordering::Release);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The listener's service: warp's routes, with the client's address as a request extension
/// and each request counted on its connection until its answer is sent.
struct Edge<S> {
    inner: S,
    conn: Arc<Conn>,
    peer: Peer,
}

/// The body type of warp's answers.
type WarpBody = <warp::reply::Response as ResponseBody>::Body;

trait ResponseBody {
    type Body;
}

impl<B> ResponseBody for http::Response<B> {
    type Body = B;
}

impl<S> hyper::service::Service<http::Request<Incoming>> for Edge<S>
where
    S: tower_service::Service<
            http::Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Counted<WarpBody>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        let busy = Busy::start(self.conn.clone());
        request.extensions_mut().insert(self.peer);
        let mut inner = self.inner.clone();
        // warp's service is always ready.
        let answer = inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| Counted { body, _busy: busy }))
        })
    }
}

/// A request in progress on its connection, from its complete head until its answer's body
/// is sent (or dropped).
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        let _ = conn
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state != CLOSING).then_some(BUSY)
            });
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.since.store(clock(), Ordering::Release);
            let _ = self
                .0
                .state
                .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// An answer's body, holding its request's [`Busy`] until it is sent.
struct Counted<B> {
    body: B,
    _busy: Busy,
}

impl<B: http_body::Body + Unpin> http_body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
