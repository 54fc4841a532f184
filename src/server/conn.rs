//! The webhook's accept loop and the bounds on every connection.
//!
//! - `TCP_NODELAY` on every accepted socket: small responses must not wait for the peer's delayed
//!   ACK (Nagle), which costs ~40 ms on HTTP/2.
//! - At most `max_connections` at once, each holding a permit from accept to close. Beyond it a
//!   new connection is accepted and closed at once (and counted): the client learns immediately,
//!   and the kernel backlog never fills with connections whose clients gave up long ago.
//! - A header deadline on every request of an HTTP/1.1 connection, counted from the request's
//!   first byte, so a head trickled a byte at a time is cut off; time spent idle between requests
//!   does not count (see below).
//! - An idle timeout: a connection with no request in flight for `idle_timeout` is closed
//!   (HTTP/1.1) or sent GOAWAY (HTTP/2). It must be longer than the API server's own idle timeout
//!   for pooled webhook connections (Go's `IdleConnTimeout`, 90 s): the client must be the one to
//!   close an idle HTTP/1.1 connection, or a POST it writes at that moment fails, and Go does not
//!   retry a written POST. GOAWAY is safe (Go retries streams the server did not process).
//! - HTTP/2 keep-alive pings drop dead peers; streams per connection and header sizes are capped.
//! - A stop in two steps: [`Phase::Draining`] (keep accepting and serving, HTTP/1.1 responses say
//!   `Connection: close`), then [`Phase::Closing`] (stop accepting, shut every connection down
//!   gracefully, wait for them up to the grace period).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, Version};
use axum_server::tls_rustls::RustlsConfig;
use futures::FutureExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::metrics::Metrics;

/// Concurrent HTTP/2 streams per connection (the API server multiplexes reviews on one).
pub const H2_MAX_STREAMS: u32 = 250;
/// HTTP/2 PING interval, and how long an unanswered PING may stay unanswered.
pub const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
pub const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 header list (HPACK-decoded) per request.
pub const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// HTTP/1.1 read buffer, which a request head must fit in (hyper's default is ~400 KiB).
pub const H1_MAX_BUF: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the first byte of a request to its complete head (HTTP/1.1); also the TLS
    /// handshake's budget and how long a connection told to close may take to do so.
    pub header_timeout: Duration,
    /// No request in flight for this long: closed (HTTP/1.1) or GOAWAY (HTTP/2).
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Where the server is in its life; every connection watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// After SIGTERM, for `--shutdown-delay`: still accepting and serving, `/readyz` fails, and
    /// HTTP/1.1 responses carry `Connection: close` so clients move to other replicas.
    Draining,
    /// Not accepting; connections finish what they have and close.
    Closing,
}

/// Accepts one connection and turns Nagle's algorithm off on it.
pub async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (tcp, peer) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    Ok((tcp, peer))
}

/// What a connection serves: a response to every request (failures are responses too).
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}

pub struct Server<H> {
    limits: Limits,
    tls: RustlsConfig,
    handler: Arc<H>,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
    /// No ALPN: HTTP/1.1, or HTTP/2 with prior knowledge.
    either: auto::Builder<TokioExecutor>,
    draining: Arc<AtomicBool>,
    last_reject_warning: AtomicU64,
    started: Instant,
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timeout starts when it begins waiting for the next head, i.e. counts
    // idle time: the connection task enforces a first-byte deadline instead.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(H1_MAX_BUF)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST);
    b
}

impl<H: Handler> Server<H> {
    pub fn new(
        limits: Limits,
        tls: RustlsConfig,
        handler: Arc<H>,
        metrics: Arc<Metrics>,
        draining: Arc<AtomicBool>,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            tls,
            handler,
            metrics,
            h1: builder().http1_only(),
            h2: builder().http2_only(),
            either: builder(),
            draining,
            last_reject_warning: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Accepts until `phase` is [`Phase::Closing`], then waits up to `grace` for the open
    /// connections to finish.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        mut phase: watch::Receiver<Phase>,
        grace: Duration,
    ) {
        loop {
            let accepted = tokio::select! {
                a = accept(&listener) => a,
                () = closing(&mut phase) => break,
            };
            match accepted {
                Ok((tcp, peer)) => match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(self.clone().connection(tcp, peer, permit, phase.clone()));
                    }
                    Err(_) => self.reject(tcp, peer),
                },
                Err(e) => {
                    // EMFILE/ENFILE: the queued connection stays queued; back off instead of
                    // spinning on the same error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        let open = self.open();
        tracing::info!(
            open,
            grace_seconds = grace.as_secs_f64(),
            "stopped accepting; draining connections"
        );
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        match tokio::time::timeout(grace, self.permits.acquire_many(all)).await {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(
                open = self.open(),
                "shutdown grace elapsed; closing the remaining connections"
            ),
        }
    }

    fn open(&self) -> usize {
        self.limits.max_connections - self.permits.available_permits()
    }

    fn reject(&self, tcp: TcpStream, peer: SocketAddr) {
        drop(tcp);
        self.metrics.connections_rejected.inc();
        // One warning per 10 s at most: a flood of these must not become a flood of logs.
        let now = self.started.elapsed().as_secs();
        let last = self.last_reject_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 10)
            && self
                .last_reject_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                %peer,
                max_connections = self.limits.max_connections,
                rejected_total = self.metrics.connections_rejected.get(),
                "connection closed: --max-connections are open"
            );
        }
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        mut phase: watch::Receiver<Phase>,
    ) {
        let _permit = permit;
        let _open = OpenConnection::new(&self.metrics);
        tracing::debug!(%peer, nodelay = tcp.nodelay().unwrap_or(false), "connection accepted");
        let limits = self.limits;
        let acceptor = TlsAcceptor::from(self.tls.get_inner());
        let tls = match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake not done within --header-timeout");
                return;
            }
        };
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let (builder, h2) = match alpn.as_deref() {
            Some(b"h2") => (&self.h2, true),
            Some(b"http/1.1") => (&self.h1, false),
            _ => (&self.either, false),
        };
        let state = Arc::new(ConnState::new(h2));
        let io = TokioIo::new(Watched {
            inner: tls,
            state: state.clone(),
        });
        let service = Tracked {
            handler: self.handler.clone(),
            state: state.clone(),
            draining: self.draining.clone(),
        };
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);

        // The connection's clock: woken at least every `period`, each wake computes the exact
        // next deadline from the state, so no per-request timer or wake-up is needed.
        let period = limits.header_timeout.min(limits.idle_timeout);
        let mut close_by: Option<Instant> = None;
        let mut told_to_close = false;
        loop {
            let now = Instant::now();
            let wake = match close_by {
                Some(t) => t,
                None => match state.next_deadline(&limits) {
                    Some((t, _)) => t.min(now + period),
                    None => now + period,
                },
            };
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    if close_by.is_some_and(|t| Instant::now() >= t) {
                        tracing::debug!(%peer, "connection did not close in time; dropped");
                        return;
                    }
                    match state.next_deadline(&limits) {
                        Some((t, Expiry::Header)) if close_by.is_none() && Instant::now() >= t => {
                            tracing::debug!(%peer, "request head not complete within --header-timeout of its first byte; connection closed");
                            return;
                        }
                        Some((t, Expiry::Idle)) if close_by.is_none() && Instant::now() >= t => {
                            tracing::debug!(%peer, h2 = state.h2.load(Ordering::Relaxed), "idle for --idle-timeout; closing");
                            conn.as_mut().graceful_shutdown();
                            close_by = Some(Instant::now() + limits.header_timeout);
                        }
                        _ => {}
                    }
                }
                () = closing(&mut phase), if !told_to_close => {
                    told_to_close = true;
                    if close_by.is_none() {
                        // Bounded by the server's shutdown grace, after which the process exits.
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

async fn closing(phase: &mut watch::Receiver<Phase>) {
    // A dropped sender also means the server is going away.
    let _ = phase.wait_for(|p| *p == Phase::Closing).await;
}

/// Counts the connection in `open_connections` while it lives.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.open_connections.inc();
        Self(metrics.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.dec();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Header,
    Idle,
}

/// What the connection's clock needs to know, shared by the IO wrapper (bytes arriving), the
/// service wrapper (requests starting and finishing) and the connection task.
struct ConnState {
    base: Instant,
    h2: AtomicBool,
    in_flight: AtomicU32,
    /// Nanoseconds after `base` when the last request finished (or the handshake did).
    idle_since: AtomicU64,
    /// 1 + nanoseconds after `base` of the first byte read while no request was in flight; 0
    /// when none has been.
    head_started: AtomicU64,
}

impl ConnState {
    fn new(h2: bool) -> Self {
        Self {
            base: Instant::now(),
            h2: AtomicBool::new(h2),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
        }
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(self.nanos() + 1, Ordering::Relaxed);
        }
    }

    fn request_started(self: &Arc<Self>, h2: bool) -> InFlight {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The next deadline and what it is, or `None` while a request is in flight (the handler's
    /// own `--request-timeout` bounds it).
    fn next_deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle = self.at(self.idle_since.load(Ordering::Relaxed)) + limits.idle_timeout;
        // HTTP/2 frames (PING, SETTINGS, WINDOW_UPDATE) arrive on an idle connection; only
        // HTTP/1.1 has a head to trickle between requests.
        let head = self.head_started.load(Ordering::Relaxed);
        if head != 0 && !self.h2.load(Ordering::Relaxed) {
            let header = self.at(head - 1) + limits.header_timeout;
            if header < idle {
                return Some((header, Expiry::Header));
            }
        }
        Some((idle, Expiry::Idle))
    }
}

/// One request in flight; the connection is idle again when the last one is dropped.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        s.idle_since.store(s.nanos(), Ordering::Relaxed);
        s.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The TLS stream, noting when bytes arrive with no request in flight.
struct Watched<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The handler, counting requests in flight on the connection.
struct Tracked<H> {
    handler: Arc<H>,
    state: Arc<ConnState>,
    draining: Arc<AtomicBool>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<H: Handler> hyper::service::Service<Request<Incoming>> for Tracked<H> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let h2 = req.version() == Version::HTTP_2;
        let in_flight = self.state.request_started(h2);
        let close = !h2 && self.draining.load(Ordering::Relaxed);
        let head = req.method() == Method::HEAD;
        // `map`, not an async block: a block would hold the handler's future twice (as what it
        // captured and as what it awaits), and this future is boxed and moved per request.
        let response = self.handler.clone().handle(req).map(move |mut resp| {
            if head {
                resp = without_body(resp);
            }
            if close {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(in_flight);
            Ok(resp)
        });
        Box::pin(response)
    }
}

/// A response to HEAD: the headers a GET gets, its length included, and no body. hyper drops
/// the body itself on HTTP/1.1 only; on HTTP/2 it would send DATA, a protocol error for the
/// client (Go's resets the stream).
fn without_body(resp: Response<Body>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    if let Some(len) = hyper::body::Body::size_hint(&body).exact() {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Response::from_parts(parts, Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (server_side, _) = accept(&listener).await.unwrap();
        // getsockopt(TCP_NODELAY) on the server's end of a real connection.
        assert!(server_side.nodelay().unwrap());
        let client = client.await.unwrap();
        assert!(!client.nodelay().unwrap(), "the option is per socket");
    }

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1,
        }
    }

    #[test]
    fn idle_time_does_not_count_toward_the_header_deadline() {
        let s = Arc::new(ConnState::new(false));
        let l = limits();
        let (t, why) = s.next_deadline(&l).unwrap();
        assert_eq!(why, Expiry::Idle);
        assert_eq!(t, s.base + l.idle_timeout);
        // A first byte starts the header clock.
        s.bytes_arrived();
        let (t, why) = s.next_deadline(&l).unwrap();
        assert_eq!(why, Expiry::Header);
        assert!(t <= Instant::now() + l.header_timeout);
        // A request in flight has no connection deadline; its end starts the idle clock again.
        let req = s.request_started(false);
        assert!(s.next_deadline(&l).is_none());
        s.bytes_arrived(); // the body
        drop(req);
        let (t, why) = s.next_deadline(&l).unwrap();
        assert_eq!(why, Expiry::Idle);
        assert!(t > Instant::now() + l.idle_timeout - Duration::from_secs(1));
    }

    #[test]
    fn h2_frames_between_requests_do_not_start_a_header_deadline() {
        let s = Arc::new(ConnState::new(true));
        s.bytes_arrived();
        assert_eq!(s.next_deadline(&limits()).unwrap().1, Expiry::Idle);
        // Nor on a connection found to be HTTP/2 by its first request.
        let s = Arc::new(ConnState::new(false));
        drop(s.request_started(true));
        s.bytes_arrived();
        assert_eq!(s.next_deadline(&limits()).unwrap().1, Expiry::Idle);
    }
}
