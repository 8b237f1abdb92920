//! Accepting and serving client connections of one edge listener on one worker: the
//! connection limit, TLS (ALPN h2/http1.1), hyper's HTTP/1.1 and HTTP/2 server with the
//! header timeout and header size limit, the idle timeout, and the polite close on drain
//! (HTTP/1.1: `Connection: close` after the request in progress; HTTP/2: GOAWAY).

use super::proxy::{handle, ClientCert, ConnCtx, FIRST_AWAITED, FIRST_NOT_YET};
use super::Edge;
use crate::config::EdgeListener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accept on `listener` until `shutdown`; each connection runs on `tracker` (the worker
/// waits for it when draining).
pub async fn serve(
    edge: Arc<Edge>,
    name: Arc<str>,
    listener: tokio::net::TcpListener,
    worker: usize,
    shutdown: CancellationToken,
    mut paused: tokio::sync::watch::Receiver<bool>,
    tracker: TaskTracker,
) {
    let count = edge.conn_counter(&name);
    let gauge = edge.metrics.edge.listener(&name);
    loop {
        // Paused while a new process takes the listeners over (`handover_socket`).
        let accepting = !*paused.borrow_and_update();
        let (stream, peer) = tokio::select! {
            Ok(()) = paused.changed() => continue,
            r = listener.accept(), if accepting => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, listener = %name, "edge accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let state = edge.state();
        let Some(cfg) = state.cfg.listeners.iter().find(|l| l.name() == &*name) else {
            continue;
        };
        if count.fetch_add(1, Relaxed) >= cfg.max_connections {
            count.fetch_sub(1, Relaxed);
            tracing::debug!(listener = %name, "edge connection limit reached; closing");
            continue;
        }
        gauge.inc();
        let slot = Slot {
            count: count.clone(),
            gauge: gauge.clone(),
        };
        let tls = state.tls.get(&*name).cloned();
        let cfg = cfg.clone();
        let shutdown = shutdown.clone();
        let (edge, name) = (edge.clone(), name.clone());
        // The task's future is as large as its largest state: a TLS connection's (its
        // handshake, its stream) and hyper's connection are boxed, allocated only for the
        // connections that have them, so a plain connection idle on the fast path holds only
        // the fast path's loop.
        tracker.spawn(async move {
            let _slot = slot;
            let mut stream = stream;
            let peer = match proxied_peer(&cfg, &mut stream, peer).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!(listener = %name, %peer, error = %e, "edge connection refused (proxy_protocol)");
                    return;
                }
            };
            let ctx = Arc::new(ConnCtx {
                tls: tls.is_some(),
                edge,
                listener: name,
                peer,
                worker,
                requests: Default::default(),
                client_ip: super::headers::client_ip_value(peer.ip()),
                client_cert: None,
            });
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(AtomicU64::new(0));
            if let Some(acceptor) = tls {
                let io = Tracked {
                    inner: stream,
                    last: activity.clone(),
                };
                // Boxed in a statement of its own: a temporary lives (in the task) until its
                // statement ends, past the await.
                let conn = Box::pin(serve_tls(acceptor, io, ctx, &cfg, activity, shutdown));
                return conn.await;
            }
            let (stream, read) = match cfg.h1_fast_path {
                true => match super::fast::serve(ctx.clone(), &cfg, stream, &shutdown).await {
                    super::fast::Outcome::Done => return,
                    super::fast::Outcome::Handoff(s, read) => (s, read.freeze()),
                },
                false => (stream, bytes::Bytes::new()),
            };
            let io = Tracked {
                inner: Rewind {
                    read,
                    inner: stream,
                },
                last: activity.clone(),
            };
            let conn = Box::pin(run(TokioIo::new(io), ctx, &cfg, activity, shutdown));
            conn.await
        });
    }
}

/// One TLS connection: the handshake within `header_timeout`, then HTTP/1.1 (ALPN chose it,
/// or the client offered none) on the fast path as for plain HTTP, h2 on hyper.
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    io: Tracked<tokio::net::TcpStream>,
    ctx: Arc<ConnCtx>,
    cfg: &EdgeListener,
    activity: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let s = match tokio::time::timeout(cfg.header_timeout, acceptor.accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tracing::debug!(error = %e, "edge TLS handshake failed"),
        Err(_) => return tracing::debug!("edge TLS handshake timed out"),
    };
    let ctx = match cfg.tls_client_ca_file {
        None => ctx,
        Some(_) => with_client_cert(&ctx, s.get_ref().1),
    };
    let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let (s, read) = match cfg.h1_fast_path && !h2 {
        true => match super::fast::serve(ctx.clone(), cfg, s, &shutdown).await {
            super::fast::Outcome::Done => return,
            super::fast::Outcome::Handoff(s, read) => (s, read.freeze()),
        },
        false => (s, bytes::Bytes::new()),
    };
    let io = Rewind { read, inner: s };
    let conn = Box::pin(run(TokioIo::new(io), ctx, cfg, activity, shutdown));
    conn.await
}

/// With the listener's `proxy_protocol` on, take the PROXY header off the connection (within
/// `header_timeout`) and return the client it names; a peer outside `proxy_protocol_from`
/// or one without a valid header is refused (closed without an answer).
async fn proxied_peer(
    cfg: &EdgeListener,
    stream: &mut tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) -> Result<std::net::SocketAddr, String> {
    if !cfg.proxy_protocol {
        return Ok(peer);
    }
    let from = &cfg.proxy_protocol_from;
    crate::net::proxy_protocol::accept(stream, peer, from, cfg.header_timeout).await
}

/// The connection's context with what the TLS handshake verified of the client's
/// certificate.
fn with_client_cert(ctx: &Arc<ConnCtx>, tls: &rustls::ServerConnection) -> Arc<ConnCtx> {
    let cert = match tls.peer_certificates().and_then(|c| c.first()) {
        None => ClientCert::Absent,
        Some(c) => ClientCert::Verified(
            crate::net::der::subject_common_name(c)
                .and_then(|cn| http::HeaderValue::from_str(&cn).ok()),
        ),
    };
    let mut with = ConnCtx::clone(ctx);
    with.client_cert = Some(cert);
    Arc::new(with)
}

/// Serve HTTP on one connection until it ends, it is idle too long, or the drain closes it.
async fn run<I>(
    io: TokioIo<I>,
    ctx: Arc<ConnCtx>,
    cfg: &EdgeListener,
    activity: Arc<AtomicU64>,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        // WebSockets over HTTP/2 (RFC 8441), announced in SETTINGS.
        .enable_connect_protocol()
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX));
    let requests = ctx.requests.clone();
    // Boxed: hyper moves each request's future into a task of its own (HTTP/2) and the
    // proxy's state machine is large; a pointer moves for free.
    let svc = hyper::service::service_fn(move |req| Box::pin(handle(ctx.clone(), req)));
    let conn = b.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let idle = cfg.idle_timeout;
    let tick = (idle / 4).max(Duration::from_millis(100));
    let mut closing = false;
    // A drain that began before the first request: hyper would close the connection at once
    // (nothing read yet, or the TLS handshake only just done), so the client that connected
    // just before this process stopped accepting gets up to a second for that request
    // (`handle` answers it with `Connection: close`), as on the fast path.
    let grace = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(grace);
    let mut awaiting_first = false;
    // The I/O count seen at the last tick, and since when it has not moved.
    let (mut seen, mut quiet_since) = (activity.load(Relaxed), Instant::now());
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "edge connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                let first = &requests.first;
                if first.compare_exchange(FIRST_NOT_YET, FIRST_AWAITED, Relaxed, Relaxed).is_ok() {
                    let wait = Duration::from_millis(crate::engine::DRAIN_IDLE_MS);
                    grace.as_mut().reset(tokio::time::Instant::now() + wait);
                    awaiting_first = true;
                } else {
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = grace.as_mut(), if awaiting_first => {
                awaiting_first = false;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => {
                let now = activity.load(Relaxed);
                if now != seen {
                    (seen, quiet_since) = (now, Instant::now());
                } else if requests.in_flight.load(Relaxed) == 0 && quiet_since.elapsed() >= idle {
                    if closing {
                        // A polite close waits for the answer being written; nothing has
                        // moved for another idle period (a client that stopped reading): drop.
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                    (closing, quiet_since) = (true, Instant::now());
                }
            }
        }
    }
}

/// Gives back a listener's connection slot.
struct Slot {
    count: Arc<AtomicUsize>,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Relaxed);
        self.gauge.dec();
    }
}

/// A stream whose first reads return bytes read from it before (by the fast path).
struct Rewind<S> {
    read: bytes::Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            let head = self.read.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream that counts its reads and writes (for the idle timeout: the connection's
/// watchdog compares the count between its ticks; no clock is read per operation).
struct Tracked<S> {
    inner: S,
    last: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last.fetch_add(1, Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.fetch_add(1, Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.fetch_add(1, Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
