//! The HTTP/1.1 fast path. A plain-TCP client connection starts here: each request whose head
//! is simple (GET or HEAD without a body, origin-form target, one Host, no Upgrade or Expect,
//! a route without cache or rate limit) is proxied
//! by this module's own code: the head is parsed with httparse, rewritten into the upstream
//! request in one buffer, the response head parsed and rewritten the same way, and the body
//! copied as it arrives (by Content-Length, chunked passed through as it is, or until the
//! upstream closes). hyper's server and client cost about twice the CPU per request for the
//! same forwarding (benches/README.md). The first request that is not simple, or an HTTP/2
//! prior-knowledge preface, hands the connection with the bytes already read to hyper
//! (`listener.rs`) for the rest of its life; so does anything httparse refuses (hyper then
//! answers 400 or 431 as it does for every connection).
//!
//! Everything else matches the hyper path (`proxy.rs`): the same header rewriting
//! (`headers.rs` on a `HeaderMap` of the request), server choice, retries within the budget,
//! passive health, timeouts (header read from the first byte, connect, response head, idle
//! between requests), metrics, access log and drain (`Connection: close` on the answer in
//! progress, then the close).

use super::headers;
use super::proxy::{ConnCtx, LogLine};
use super::route::Route;
use super::upstream::Server;
use super::EdgeState;
use crate::config::EdgeListener;
use bytes::{Buf, BufMut, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Headers a request or response may have on this path (more: the request goes to hyper; a
/// response with more is a 502).
const MAX_HEADERS: usize = 96;
/// The HTTP/2 prior-knowledge preface's first line.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// Body bytes at hand from this many on are written to the client from the read buffer
/// itself (fewer are copied behind the head, to leave in one write).
const DIRECT_WRITE: usize = 16 * 1024;
/// Read buffer of a new upstream connection.
const IDLE_BUFFER: usize = 16 * 1024;
/// An idle connection's buffer above this is replaced by a new one of `IDLE_BUFFER`.
const MAX_IDLE_BUFFER: usize = 128 * 1024;
/// Room made in an upstream connection's buffer before each body read.
const READ_CHUNK: usize = 64 * 1024;
/// Largest response head read from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How a connection left the fast path.
pub enum Outcome {
    /// It is finished (closed by either side, idle, drained, or failed).
    Done,
    /// hyper serves the rest: the stream and what was read from it already.
    Handoff(TcpStream, BytesMut),
}

/// Serve `client` until it closes, or hand it to hyper.
pub async fn serve(
    ctx: Arc<ConnCtx>,
    cfg: &EdgeListener,
    mut client: TcpStream,
    shutdown: &CancellationToken,
) -> Outcome {
    let mut buf = BytesMut::with_capacity(4096);
    let mut head = BytesMut::with_capacity(1024);
    loop {
        if buf.is_empty() {
            // Between requests: the idle timeout, or the drain, ends the connection.
            tokio::select! {
                r = tokio::time::timeout(cfg.idle_timeout, client.read_buf(&mut buf)) => {
                    if !matches!(r, Ok(Ok(n)) if n > 0) {
                        return Outcome::Done;
                    }
                }
                _ = shutdown.cancelled() => return Outcome::Done,
            }
        }
        // The rest of the head within header_timeout of its first byte (slowloris).
        let deadline = tokio::time::Instant::now() + cfg.header_timeout;
        let state = ctx.edge.state();
        let prepared = loop {
            if H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
                if buf.len() < H2_PREFACE.len() {
                    match tokio::time::timeout_at(deadline, client.read_buf(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => continue,
                        _ => return Outcome::Done,
                    }
                }
                return Outcome::Handoff(client, buf);
            }
            match prepare(&ctx, &state, &buf, &mut head, shutdown.is_cancelled()) {
                Parsed::Ready(p) => break p,
                Parsed::Handoff => return Outcome::Handoff(client, buf),
                Parsed::Partial if buf.len() > cfg.max_header_bytes => {
                    // hyper answers 431 for it.
                    return Outcome::Handoff(client, buf);
                }
                Parsed::Partial => {
                    match tokio::time::timeout_at(deadline, client.read_buf(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return Outcome::Done,
                    }
                }
            }
        };
        buf.advance(prepared.head_len);
        let keep = exchange(&ctx, &state, &mut client, &head, prepared).await;
        if !keep || shutdown.is_cancelled() {
            let _ = client.shutdown().await;
            return Outcome::Done;
        }
    }
}

/// A request head that takes the fast path.
struct Prepared {
    head_len: usize,
    route: Arc<Route>,
    head_only: bool,
    /// The client asked to close, or the edge is draining.
    close: bool,
    request_id: HeaderValue,
    log: LogLine,
}

enum Parsed {
    Partial,
    Handoff,
    Ready(Box<Prepared>),
}

/// Parse the request head in `buf`; if it takes the fast path, write the upstream request
/// head into `out`.
fn prepare(
    ctx: &ConnCtx,
    state: &EdgeState,
    buf: &[u8],
    out: &mut BytesMut,
    draining: bool,
) -> Parsed {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Handoff,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Handoff;
    };
    let (method, head_only) = match method {
        "GET" => (Method::GET, false),
        "HEAD" => (Method::HEAD, true),
        _ => return Parsed::Handoff,
    };
    if !target.starts_with('/') {
        return Parsed::Handoff;
    }
    let mut map = HeaderMap::with_capacity(req.headers.len() + 6);
    let mut close = draining;
    let mut hosts = 0;
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Parsed::Handoff;
        };
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == UPGRADE || name == EXPECT
        {
            return Parsed::Handoff;
        }
        if name == HOST {
            hosts += 1;
        }
        if name == CONNECTION {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                // Other tokens name hop-by-hop headers, which the rewrite drops.
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Handoff;
                }
            }
        }
        map.append(name, value);
    }
    if hosts != 1 {
        return Parsed::Handoff;
    }
    let origin = http::Uri::default();
    let host = super::route::request_host_of(&map, &origin).into_owned();
    let path = target.split('?').next().unwrap_or(target);
    let Some(route) = state.routes.find(&ctx.listener, &host, path) else {
        return Parsed::Handoff;
    };
    if route.cfg.cache || route.limiter.is_some() {
        return Parsed::Handoff;
    }
    let log_on = state.cfg.access_log != crate::config::AccessLog::Off;
    let mut log = LogLine::fast(&method, target, &host, ctx, log_on);
    let request_id = headers::request_id(&mut map);
    log.request_id = request_id.clone();
    log.route = Some(route.clone());
    let host_value = map.get(HOST).cloned();
    headers::remove_hop_by_hop(&mut map, false);
    headers::add_forwarded(
        &mut map,
        &ctx.client_ip,
        ctx.tls,
        host_value.as_ref(),
        headers::via_for(http::Version::HTTP_11),
    );
    out.clear();
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(route.upstream_path(target).as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in map.iter() {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    Parsed::Ready(Box::new(Prepared {
        head_len,
        route: route.clone(),
        head_only,
        close,
        request_id,
        log,
    }))
}

/// Send the prepared request (`head`) upstream with retries, and its answer to the client.
/// Whether the client connection can take another request.
async fn exchange(
    ctx: &ConnCtx,
    state: &EdgeState,
    client: &mut TcpStream,
    head: &[u8],
    p: Box<Prepared>,
) -> bool {
    let Prepared {
        route,
        head_only,
        mut close,
        request_id,
        mut log,
        ..
    } = *p;
    let started = Instant::now();
    let group = &route.group;
    group.request_started();
    let pool = group.raw_pool(ctx.worker);
    let attempts = 1 + route.cfg.retries;
    let mut tried: Vec<SocketAddr> = Vec::with_capacity(attempts as usize);
    let mut last: Option<(u16, String, Option<SocketAddr>)> = None;
    let mut answer = None;
    for attempt in 0..attempts {
        let server = match group.next_attempt(attempt, &tried, last.is_none()) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(msg) => {
                last = Some((503, msg, None));
                break;
            }
        };
        tried.push(server.addr);
        server
            .outstanding
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = tokio::time::timeout(
            route.cfg.response_timeout,
            send(pool, &server, &group.limits, head, head_only),
        )
        .await;
        server
            .outstanding
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        match sent {
            Err(_) => {
                server.metrics.errors.inc();
                group.failure(&server);
                let msg = "upstream did not answer in time".to_string();
                last = Some((504, msg, Some(server.addr)));
                break;
            }
            Ok(Err(e)) => {
                server.metrics.errors.inc();
                group.failure(&server);
                tracing::debug!(upstream = %group.name, server = %server.addr, error = %e, "upstream request failed");
                let msg = "upstream connection failed".to_string();
                last = Some((502, msg, Some(server.addr)));
            }
            Ok(Ok(up)) => {
                server.metrics.answered(up.status);
                if up.status >= 500 {
                    group.failure(&server);
                } else {
                    group.success(&server);
                }
                if matches!(up.status, 502 | 503) && attempt + 1 < attempts {
                    let msg = "upstream answered with an error".to_string();
                    last = Some((up.status, msg, Some(server.addr)));
                    continue;
                }
                answer = Some((up, server));
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let Some((mut up, server)) = answer else {
        let (status, msg, server) = last.unwrap_or((502, "no upstream answered".to_string(), None));
        log.upstream = server;
        super::proxy::account(ctx, state, &mut log, status, secs);
        let body = format!("switchyard: {msg}\n");
        let mut out = BytesMut::with_capacity(256 + body.len());
        status_line(&mut out, status, None);
        out.put_slice(b"content-type: text/plain; charset=utf-8\r\ncontent-length: ");
        out.put_slice(body.len().to_string().as_bytes());
        out.put_slice(b"\r\nx-request-id: ");
        out.put_slice(request_id.as_bytes());
        if close {
            out.put_slice(b"\r\nconnection: close");
        }
        out.put_slice(b"\r\n\r\n");
        if !head_only {
            out.put_slice(body.as_bytes());
        }
        return client.write_all(&out).await.is_ok() && !close;
    };
    log.upstream = Some(server.addr);
    super::proxy::account(ctx, state, &mut log, up.status, secs);
    if matches!(up.framing, Framing::UntilClose) {
        close = true;
    }
    let mut out = BytesMut::with_capacity(1024);
    if response_head(&up.conn.buf[..up.head_len], &request_id, close, &mut out).is_err() {
        // Checked once already by `send`: cannot happen; answer as a broken upstream.
        return false;
    }
    up.conn.buf.advance(up.head_len);
    let (client_ok, body_done) = copy_body(&mut up, client, out).await;
    if body_done && up.reusable && up.conn.buf.is_empty() {
        if up.conn.buf.capacity() > MAX_IDLE_BUFFER {
            // An unusually large read grew it: an idle connection keeps a small one.
            up.conn.buf = BytesMut::with_capacity(IDLE_BUFFER);
        }
        pool.put(server.addr, up.conn, &group.limits);
    }
    client_ok && body_done && !close
}

/// One upstream connection of the fast path, with what was read from it and not used yet.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
}

/// Idle fast-path connections of one worker.
pub type RawPool = super::conn::IdlePool<RawConn>;

impl RawConn {
    /// An idle connection has nothing to read: data or the end means it is unusable.
    fn usable(&mut self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            && self.buf.is_empty()
    }
}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// An upstream's answer: its head is `conn.buf[..head_len]`.
struct UpResp {
    conn: RawConn,
    head_len: usize,
    status: u16,
    framing: Framing,
    /// The connection may take another request once the body is read.
    reusable: bool,
}

/// Send `head` to `server` on a pooled or new connection and read the response head. A
/// pooled connection that fails before any answer byte (the server closed it meanwhile) is
/// replaced by a new one once.
async fn send(
    pool: &RawPool,
    server: &Server,
    limits: &super::conn::Limits,
    head: &[u8],
    head_only: bool,
) -> Result<UpResp, String> {
    let mut pooled = pool.take(server.addr, limits.idle_timeout, RawConn::usable);
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(c) => c,
            None => connect(server.addr, limits.connect_timeout).await?,
        };
        match round_trip(&mut conn, head, head_only).await {
            Ok(Some((head_len, status, framing, reusable))) => {
                return Ok(UpResp {
                    conn,
                    head_len,
                    status,
                    framing,
                    reusable,
                })
            }
            Ok(None) if reused => continue,
            Ok(None) => return Err("upstream closed the connection before answering".into()),
            Err(e) if reused && e.kind() != std::io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<RawConn, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect: timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    Ok(RawConn {
        stream,
        buf: BytesMut::with_capacity(IDLE_BUFFER),
    })
}

/// Write the request and read the response head (1xx interim answers skipped). `None`: the
/// connection ended before any byte of an answer.
async fn round_trip(
    conn: &mut RawConn,
    head: &[u8],
    head_only: bool,
) -> std::io::Result<Option<(usize, u16, Framing, bool)>> {
    conn.stream.write_all(head).await?;
    loop {
        match parse_response(&conn.buf, head_only) {
            Ok(Some(Head::Interim(n))) => {
                conn.buf.advance(n);
                continue;
            }
            Ok(Some(Head::Final {
                len,
                status,
                framing,
                reusable,
            })) => return Ok(Some((len, status, framing, reusable))),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        if conn.buf.len() > MAX_RESPONSE_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        if conn.stream.read_buf(&mut conn.buf).await? == 0 {
            if conn.buf.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "upstream closed inside the response head",
            ));
        }
    }
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A 1xx answer (not 101) of this many bytes, to skip.
    Interim(usize),
    Final {
        len: usize,
        status: u16,
        framing: Framing,
        reusable: bool,
    },
}

/// Parse a response head at the start of `buf` (`None`: incomplete).
pub fn parse_response(buf: &[u8], head_only: bool) -> Result<Option<Head>, &'static str> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed response head"),
    };
    let status = resp.code.ok_or("no status")?;
    if resp.headers.len() > MAX_HEADERS - 4 {
        // Room for what the rewrite adds (Via, X-Request-Id, Connection).
        return Err("too many response headers");
    }
    if status == 101 {
        return Err("101 Switching Protocols to a request that asked for no upgrade");
    }
    if (100..200).contains(&status) {
        return Ok(Some(Head::Interim(len)));
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = resp.version != Some(1);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or("bad Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length");
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    close = false;
                }
            }
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        Framing::None
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(0)) => Framing::None,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    Ok(Some(Head::Final {
        len,
        status,
        framing,
        reusable: !close && framing != Framing::UntilClose,
    }))
}

fn status_line(out: &mut BytesMut, status: u16, reason: Option<&str>) {
    out.put_slice(b"HTTP/1.1 ");
    // Three digits always ("012" parses as 12).
    out.put_slice(format!("{status:03}").as_bytes());
    out.put_u8(b' ');
    let canonical = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    out.put_slice(reason.or(canonical).unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
}

/// The client's response head from the upstream's: hop-by-hop headers (and those Connection
/// names) removed but for a chunked Transfer-Encoding passed through as it is, Via appended,
/// the request id set, `Connection: close` when the connection ends after it.
pub fn response_head(
    up: &[u8],
    request_id: &HeaderValue,
    close: bool,
    out: &mut BytesMut,
) -> Result<(), &'static str> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    if !matches!(resp.parse(up), Ok(httparse::Status::Complete(_))) {
        return Err("response head");
    }
    let mut named: Vec<&[u8]> = Vec::new();
    let mut coded = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            named.extend(h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii));
        }
        coded |= h.name.eq_ignore_ascii_case("transfer-encoding");
    }
    status_line(out, resp.code.unwrap_or(502), resp.reason);
    let mut via = false;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        let hop = [
            &b"connection"[..],
            b"keep-alive",
            b"proxy-connection",
            b"te",
            b"trailer",
            b"upgrade",
            b"x-request-id",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
            || named.iter().any(|n| name.eq_ignore_ascii_case(n))
            // With a Transfer-Encoding the length is the coding's (RFC 9112 6.3): a
            // Content-Length beside it must not reach the client.
            || (coded && name.eq_ignore_ascii_case(b"content-length"));
        if hop {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(h.value);
        if name.eq_ignore_ascii_case(b"via") && !via {
            out.put_slice(b", 1.1 switchyard");
            via = true;
        }
        out.put_slice(b"\r\n");
    }
    if !via {
        out.put_slice(b"via: 1.1 switchyard\r\n");
    }
    out.put_slice(b"x-request-id: ");
    out.put_slice(request_id.as_bytes());
    out.put_slice(b"\r\n");
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    Ok(())
}

/// Copy the response body (after the head already in `out`) to the client, as it arrives:
/// what is at hand goes out before the next read from the upstream (a small answer leaves
/// in one write with its head). Returns whether the client took everything, and whether
/// the body was read to its end.
async fn copy_body(up: &mut UpResp, client: &mut TcpStream, mut out: BytesMut) -> (bool, bool) {
    let mut chunks = ChunkScanner::default();
    let mut left = match up.framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut done = matches!(up.framing, Framing::None);
    loop {
        if !done && !up.conn.buf.is_empty() {
            let take = match up.framing {
                Framing::Length(_) => (left.min(up.conn.buf.len() as u64)) as usize,
                Framing::Chunked => match chunks.scan(&up.conn.buf) {
                    Ok(n) => n,
                    Err(_) => {
                        // A malformed chunked body: what arrived goes out, then both close.
                        let _ = client.write_all(&out).await;
                        return (false, false);
                    }
                },
                _ => up.conn.buf.len(),
            };
            if out.is_empty() && take >= DIRECT_WRITE {
                // Large pieces go out from the read buffer itself.
                if client.write_all(&up.conn.buf[..take]).await.is_err() {
                    return (false, false);
                }
            } else {
                out.put_slice(&up.conn.buf[..take]);
            }
            up.conn.buf.advance(take);
            match up.framing {
                Framing::Length(_) => {
                    left -= take as u64;
                    done = left == 0;
                }
                Framing::Chunked => done = chunks.done(),
                _ => {}
            }
        }
        if !out.is_empty() && (done || up.conn.buf.is_empty()) {
            if client.write_all(&out).await.is_err() {
                return (false, done && up.conn.buf.is_empty());
            }
            out.clear();
        }
        if done {
            return (true, up.conn.buf.is_empty());
        }
        if up.conn.buf.is_empty() {
            up.conn.buf.reserve(READ_CHUNK);
            match up.conn.stream.read_buf(&mut up.conn.buf).await {
                // The end of a close-delimited body; any other body was cut short.
                Ok(0) | Err(_) => return (matches!(up.framing, Framing::UntilClose), false),
                Ok(_) => {}
            }
        }
    }
}

/// Finds where a chunked body ends (RFC 9112 7.1), fed the bytes as they come; the bytes
/// themselves go through unchanged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChunkScanner {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line: the size so far, whether a digit was seen, in an extension.
    #[default]
    SizeStart,
    Size {
        size: u64,
        ext: bool,
    },
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

impl ChunkScanner {
    /// Whether the last chunk and the trailer section have been seen.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consume bytes of `data` up to the end of the body; how many belong to it (all of
    /// `data` unless the body ends inside it).
    pub fn scan(&mut self, data: &[u8]) -> Result<usize, &'static str> {
        use ChunkState::*;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.state = match self.state {
                Done => return Ok(i),
                SizeStart => match hex(b) {
                    Some(d) => Size {
                        size: u64::from(d),
                        ext: false,
                    },
                    None => return Err("chunk size expected"),
                },
                Size { size, ext } => match (b, ext) {
                    (b'\r', _) => SizeLf { size },
                    (b'\n', _) => self.after_size(size),
                    (_, true) => Size { size, ext },
                    (b';' | b' ' | b'\t', false) => Size { size, ext: true },
                    (_, false) => match hex(b) {
                        Some(d) if size >> 60 == 0 => Size {
                            size: size << 4 | u64::from(d),
                            ext,
                        },
                        Some(_) => return Err("chunk size too large"),
                        None => return Err("bad chunk size"),
                    },
                },
                SizeLf { size } if b == b'\n' => self.after_size(size),
                SizeLf { .. } => return Err("LF expected after chunk size"),
                Data(n) => {
                    let take = (n.min((data.len() - i) as u64)) as usize;
                    i += take;
                    self.state = if take as u64 == n {
                        DataCr
                    } else {
                        Data(n - take as u64)
                    };
                    continue;
                }
                DataCr if b == b'\r' => DataLf,
                DataCr if b == b'\n' => SizeStart,
                DataCr => return Err("CRLF expected after chunk data"),
                DataLf if b == b'\n' => SizeStart,
                DataLf => return Err("LF expected after chunk data"),
                TrailerStart if b == b'\r' => EndLf,
                TrailerStart if b == b'\n' => Done,
                TrailerStart => TrailerLine,
                TrailerLine if b == b'\r' => TrailerLf,
                TrailerLine if b == b'\n' => TrailerStart,
                TrailerLine => TrailerLine,
                TrailerLf if b == b'\n' => TrailerStart,
                TrailerLf => return Err("LF expected in trailer"),
                EndLf if b == b'\n' => Done,
                EndLf => return Err("LF expected at the end of the body"),
            };
            i += 1;
        }
        Ok(if self.state == Done { i } else { data.len() })
    }

    fn after_size(&self, size: u64) -> ChunkState {
        if size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data(size)
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` chunked into pieces of the given sizes, with a trailer when asked.
    fn chunked(body: &[u8], sizes: &[usize], trailer: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = n.clamp(1, rest.len());
            out.extend_from_slice(format!("{n:x};ext=1\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n");
        if trailer {
            out.extend_from_slice(b"X-Sum: 1\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn chunk_scanner_finds_the_end_however_the_bytes_arrive() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for (sizes, trailer) in [
            (&[1usize][..], false),
            (&[7, 300, 4096], true),
            (&[5000], false),
        ] {
            let enc = chunked(&body, sizes, trailer);
            let mut next = enc.clone();
            next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            for step in [1, 3, 64, next.len()] {
                let mut s = ChunkScanner::default();
                let mut used = 0;
                for piece in next.chunks(step) {
                    if s.done() {
                        break;
                    }
                    used += s.scan(piece).unwrap();
                }
                assert!(s.done(), "step {step}");
                assert_eq!(used, enc.len(), "step {step}");
            }
        }
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nabcdeXX",
            b"0\r\nX: y\rZ",
            b"fffffffffffffffff\r\n",
        ] {
            assert!(ChunkScanner::default().scan(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn response_heads_choose_the_framing() {
        let f = |head: &str, head_only: bool| match parse_response(head.as_bytes(), head_only) {
            Ok(Some(Head::Final {
                framing, reusable, ..
            })) => (framing, reusable),
            r => panic!("{head}: {r:?}"),
        };
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            (Framing::Length(5), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            (Framing::None, true)
        );
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            ),
            (Framing::Chunked, true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\n\r\n", false),
            (Framing::UntilClose, false)
        );
        assert!(!f("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).1);
        assert_eq!(
            f(
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
                false
            ),
            (Framing::None, false)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n", false),
            Ok(Some(Head::Interim(37)))
        );
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false),
            Ok(None)
        );
    }

    #[test]
    fn response_head_drops_hop_by_hop_and_adds_via_and_the_request_id() {
        let up = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
                   Keep-Alive: timeout=5\r\nVia: 1.0 lb\r\nTransfer-Encoding: chunked\r\n\
                   X-Request-Id: theirs\r\nContent-Type: text/plain\r\n\r\n";
        let mut out = BytesMut::new();
        let smuggle = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        response_head(smuggle, &HeaderValue::from_static("id"), false, &mut out).unwrap();
        assert!(
            !String::from_utf8_lossy(&out).contains("Content-Length"),
            "{out:?}"
        );
        out.clear();
        response_head(up, &HeaderValue::from_static("ours"), true, &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "HTTP/1.1 200 OK\r\nVia: 1.0 lb, 1.1 switchyard\r\nTransfer-Encoding: chunked\r\n\
             Content-Type: text/plain\r\nx-request-id: ours\r\nconnection: close\r\n\r\n"
        );
    }
}
