//! Pooled HTTP/1.1 connections to upstream servers, driven by the task of the request that
//! uses them. hyper's pooled client runs every connection as a task of its own and talks to
//! it through channels: three task wakeups per request on top of the socket events. Here the
//! request's task polls the connection itself (while waiting for the response head, then
//! inside the response body the client's connection streams out), so a request costs its
//! socket events only. An idle pooled connection is polled by nobody; one the server closed
//! is noticed when it is taken (a poll sees the end) and dropped.

use super::upstream::{Server, UpBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

type Conn = Connection<TokioIo<UpStream>, UpBody>;

/// One upstream connection: the request side and the connection future hyper drives I/O in.
pub struct UpConn {
    send: SendRequest<UpBody>,
    conn: Conn,
}

/// Idle connections of one worker, per server: oldest first, each with the time it went
/// idle. Taken newest first (the warmest socket); the stale are at the front. Holds hyper
/// connections here and the fast path's raw ones (`fast.rs`).
pub struct IdlePool<C> {
    idle: Mutex<Vec<(SocketAddr, IdleList<C>)>>,
}

impl<C> Default for IdlePool<C> {
    fn default() -> Self {
        IdlePool {
            idle: Mutex::new(Vec::new()),
        }
    }
}

/// One server's idle connections, oldest first, each with the time it went idle.
type IdleList<C> = VecDeque<(C, Instant)>;

impl<C> IdlePool<C> {
    /// An idle connection to `addr` that `usable` accepts, if one is left (the stale and the
    /// refused are dropped on the way).
    pub fn take(
        &self,
        addr: SocketAddr,
        idle_timeout: Duration,
        mut usable: impl FnMut(&mut C) -> bool,
    ) -> Option<C> {
        let now = Instant::now();
        loop {
            let mut c = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let (_, q) = idle.iter_mut().find(|(a, _)| *a == addr)?;
                drop_stale(q, now, idle_timeout);
                q.pop_back()?.0
            };
            if usable(&mut c) {
                return Some(c);
            }
        }
    }

    /// Keep `c` for reuse, unless `max_idle` connections to `addr` are kept already.
    pub fn put(&self, addr: SocketAddr, c: C, limits: &Limits) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Servers that left the group (reload, DNS) keep nothing for long: every put also
        // drops the stale of the others, and their emptied lists.
        idle.retain_mut(|(a, q)| {
            drop_stale(q, now, limits.idle_timeout);
            *a == addr || !q.is_empty()
        });
        let i = match idle.iter().position(|(a, _)| *a == addr) {
            Some(i) => i,
            None => {
                idle.push((addr, VecDeque::new()));
                idle.len() - 1
            }
        };
        let q = &mut idle[i].1;
        if q.len() < limits.max_idle {
            q.push_back((c, now));
        }
    }
}

/// The hyper connections of one worker.
pub type WorkerPool = IdlePool<UpConn>;

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (refused, unreachable, timed out).
    Connect(std::io::Error),
    /// The connection failed while the request was sent or its answer awaited.
    Broken(String),
    /// The request itself failed on the way: its body from the client broke off or was
    /// malformed (not the server's fault).
    Request(String),
}

impl SendError {
    pub(super) fn of(e: hyper::Error) -> SendError {
        if e.is_user() {
            SendError::Request(e.to_string())
        } else {
            SendError::Broken(e.to_string())
        }
    }
}

impl super::upstream::SendFailed for SendError {
    fn request_failed(&self) -> bool {
        matches!(self, SendError::Request(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Broken(e) | SendError::Request(e) => write!(f, "{e}"),
        }
    }
}

/// Settings a send needs from the group.
pub struct Limits {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    /// HTTPS to the servers (`tls` of the group); `None`: plain HTTP.
    pub tls: Option<crate::net::backend_tls::ServerTlsConfig>,
}

impl Limits {
    /// The URI scheme of the group's servers.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

impl WorkerPool {
    /// Send `req` to `addr` on a pooled or new connection; the response's body gives the
    /// connection back to this pool when it ends.
    pub async fn send(
        self: &Arc<Self>,
        server: &Server,
        req: http::Request<UpBody>,
        limits: Arc<Limits>,
    ) -> Result<http::Response<PooledBody>, SendError> {
        let addr = server.addr;
        let mut c = match self.take(addr, limits.idle_timeout, UpConn::usable) {
            Some(c) => c,
            None => {
                let (send, conn) = handshake(open(server, &limits).await?).await?;
                UpConn { send, conn }
            }
        };
        let (resp, _) = head_while_driving(c.send.send_request(req), &mut c.conn).await;
        let resp = resp?;
        let (parts, body) = resp.into_parts();
        let done = body.is_end_stream();
        let mut pooled = PooledBody {
            body,
            conn: Some(c),
            home: (self.clone(), addr, limits),
        };
        if done {
            pooled.give_back();
        }
        Ok(http::Response::from_parts(parts, pooled))
    }
}

/// Drop the connections of `q` idle for `timeout` or longer (they are at its front).
fn drop_stale<C>(q: &mut IdleList<C>, now: Instant, timeout: Duration) {
    while q
        .front()
        .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= timeout)
    {
        q.pop_front();
    }
}

impl UpConn {
    /// Whether the connection can take a request: its connection future has not ended (a
    /// closed socket ends it) and the request side is ready.
    fn usable(&mut self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        if Pin::new(&mut self.conn).poll(&mut cx).is_ready() {
            return false;
        }
        matches!(self.send.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }
}

/// The hyper path's upstream connection: TCP with quick-acks as [`QuickAck`] says, and TLS
/// over it when the group asks for it.
pub type UpStream = MaybeTls<QuickAck>;

/// A new connection to `server` for hyper's path (see [`open_with`]).
pub async fn open(server: &Server, limits: &Limits) -> Result<UpStream, SendError> {
    open_with(server, limits, |tcp| QuickAck {
        tcp,
        reads_since_write: 0,
    })
    .await
}

/// A new connection to `server`: TCP (no Nagle), wrapped by `wrap`, then the TLS handshake
/// when the group asks for it, all within the connect timeout. A failed handshake is a
/// failed connect (another server may be tried).
pub async fn open_with<S>(
    server: &Server,
    limits: &Limits,
    wrap: impl FnOnce(tokio::net::TcpStream) -> S,
) -> Result<MaybeTls<S>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let timeout = limits.connect_timeout;
    let opening = async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await?;
        let _ = tcp.set_nodelay(true);
        let tcp = wrap(tcp);
        let Some(tls) = &limits.tls else {
            return Ok(MaybeTls::Plain(tcp));
        };
        let name = tls.server_name(&server.host).ok_or_else(|| {
            let why = format!("{:?} is not a name TLS can use", server.host);
            std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
        })?;
        let stream = tls.handshake_named(tcp, name).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("TLS handshake with {}: {e}", server.addr))
        })?;
        Ok(MaybeTls::Tls(Box::new(stream)))
    };
    match tokio::time::timeout(timeout, opening).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(SendError::Connect(e)),
        Err(_) => Err(SendError::Connect(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection within {timeout:?}"),
        ))),
    }
}

/// HTTP/1.1 on a new connection: the request side and the connection's future.
pub async fn handshake<B>(
    stream: UpStream,
) -> Result<(SendRequest<B>, Connection<TokioIo<UpStream>, B>), SendError>
where
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Broken(e.to_string()))
}

/// Drive `conn` until `answer`, a request sent on it, has the response head. Also says
/// whether the connection ended meanwhile (closed or failed: the answer then has its error).
async fn head_while_driving<C: Future + Unpin>(
    answer: impl Future<Output = hyper::Result<http::Response<Incoming>>>,
    conn: &mut C,
) -> (Result<http::Response<Incoming>, SendError>, bool) {
    let mut answer = std::pin::pin!(answer);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = answer.as_mut().poll(cx) {
            return Poll::Ready((r.map_err(SendError::of), false));
        }
        if Pin::new(&mut *conn).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let r = match answer.as_mut().poll(cx) {
            Poll::Ready(r) => r.map_err(SendError::of),
            Poll::Pending => Err(SendError::Broken("upstream connection closed".into())),
        };
        Poll::Ready((r, true))
    })
    .await
}

/// Send an upgrade request (WebSocket) on a connection of its own. The request's task drives
/// it until the answer's head is in (a request given up on closes it), then a task of this
/// worker finishes it: after a 101 it hands the connection to the tunnel
/// (`hyper::upgrade::on` the response), otherwise it ends with the answer's body.
pub async fn send_upgrade(
    server: &Server,
    req: http::Request<UpBody>,
    limits: &Limits,
) -> Result<http::Response<Incoming>, SendError> {
    let (mut send, conn) = handshake(open(server, limits).await?).await?;
    let mut conn = conn.with_upgrades();
    let (resp, ended) = head_while_driving(send.send_request(req), &mut conn).await;
    let resp = resp?;
    if !ended {
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream upgrade connection ended with an error");
            }
        });
    }
    Ok(resp)
}

/// An upstream connection's bytes: plain, or TLS over them.
pub enum MaybeTls<S> {
    Plain(S),
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

impl<S> MaybeTls<S> {
    /// The stream under TLS, if any.
    pub fn inner(&self) -> &S {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(t) => t.get_ref().0,
        }
    }
}

type Io<'a, T> = Pin<&'a mut T>;

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Io<'_, Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => {
                // Records rustls still holds go out before waiting for the answer to them
                // (see `net::backend`).
                if let Poll::Ready(Err(e)) =
                    tokio::io::AsyncWrite::poll_flush(Pin::new(&mut **s), cx)
                {
                    return Poll::Ready(Err(e));
                }
                Pin::new(&mut **s).poll_read(cx, buf)
            }
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite
    for MaybeTls<S>
{
    fn poll_write(
        self: Io<'_, Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Io<'_, Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Io<'_, Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Io<'_, Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A response body from upstream that drives its connection while it is read, and gives the
/// connection back to its pool once the body ended (dropped early: the connection closes).
pub struct PooledBody {
    body: Incoming,
    conn: Option<UpConn>,
    home: (Arc<WorkerPool>, SocketAddr, Arc<Limits>),
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some(mut c) = self.conn.take() {
            // Let the connection see the end of the response before it is reused.
            let waker = std::task::Waker::noop();
            let _ = Pin::new(&mut c.conn).poll(&mut Context::from_waker(waker));
            let (pool, addr, limits) = &self.home;
            pool.put(*addr, c, limits);
        }
    }
}

impl Body for PooledBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Some(c) = &mut this.conn {
            if Pin::new(&mut c.conn).poll(cx).is_ready() {
                // Ended (closed, or failed): the body has what arrived, or its error.
                this.conn = None;
            }
        }
        let r = Pin::new(&mut this.body).poll_frame(cx);
        // A reader may stop at the last frame once `is_end_stream` says so, without asking
        // for the end: give the connection back at either.
        match &r {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.give_back(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An upstream socket that acknowledges a response at once when it is large or spans more
/// than one read. Otherwise an upstream that holds back its last partial segment until the
/// previous ones are acknowledged (Nagle, nginx's `tcp_nopush`) waits out this end's delayed
/// ACK (40 ms on Linux) on a fraction of large answers (the fast path does the same, see
/// `fast/upstream.rs`). Linux leaves quick-ack mode by itself when the connection turns
/// interactive again (the next request), so it is set again per such answer: one
/// `setsockopt` each; small answers that come in one read pay none.
/// A first read this large sets quick-ack at once (see [`QuickAck`]).
const QUICKACK_FIRST_READ: usize = 4096;

pub struct QuickAck {
    tcp: tokio::net::TcpStream,
    reads_since_write: u8,
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        if matches!(r, Poll::Ready(Ok(()))) && got > 0 {
            self.reads_since_write = self.reads_since_write.saturating_add(1);
            // A large first read (hyper may take a large answer whole after the stall, so
            // a second read can come too late), or a second read: set once per answer. A
            // small answer that comes in one read costs no system call.
            let first_large = self.reads_since_write == 1 && got >= QUICKACK_FIRST_READ;
            let second = self.reads_since_write == 2;
            if first_large || second {
                self.reads_since_write = 2;
                let _ = socket2::SockRef::from(&self.tcp).set_quickack(true);
            }
        }
        r
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.reads_since_write = 0;
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.reads_since_write = 0;
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
