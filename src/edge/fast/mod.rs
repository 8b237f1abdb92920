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

//!
//! Layout: this file takes a connection from request head to answer; [`upstream`] holds the
//! upstream connections, their pool, the exchange and the body copy; [`wire`] the byte-level
//! readers and writers (response head, framing, chunked scanner), which are fuzzed
//! (`fuzz/fuzz_targets/edge_h1.rs`).

mod upstream;
mod wire;

pub use upstream::{RawConn, RawPool};
pub use wire::{parse_response, response_head, ChunkScanner, Framing, Head};

use super::headers;
use super::proxy::{ConnCtx, LogLine};
use super::route::Route;
use super::upstream::Attempt;
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
use upstream::{send, write_within};
use wire::{status_line, MAX_HEADERS};

/// The HTTP/2 prior-knowledge preface's first line.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

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
        let keep = exchange(&ctx, &state, &mut client, &head, prepared, cfg.idle_timeout).await;
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
/// Whether the client connection can take another request. Nothing moving for `idle` while
/// the answer is copied ends the connection.
async fn exchange(
    ctx: &ConnCtx,
    state: &EdgeState,
    client: &mut TcpStream,
    head: &[u8],
    p: Box<Prepared>,
    idle: Duration,
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
        let send = send(pool, &server, &group.limits, head, head_only);
        let last_attempt = attempt + 1 == attempts;
        let timeout = route.cfg.response_timeout;
        let status_of = |up: &upstream::UpResp| up.status;
        match group
            .attempt(&server, timeout, last_attempt, status_of, send)
            .await
        {
            Attempt::Answered(up) => {
                answer = Some((up, server));
                break;
            }
            Attempt::Failed(f) => {
                last = Some((f.status, f.msg.to_string(), Some(server.addr)));
                if !f.retry {
                    break;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let Some((up, server)) = answer else {
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
        return write_within(client, &out, idle).await.is_ok() && !close;
    };
    log.upstream = Some(server.addr);
    super::proxy::account(ctx, state, &mut log, up.status, secs);
    if matches!(up.framing, Framing::UntilClose) {
        close = true;
    }
    let mut out = BytesMut::with_capacity(1024);
    if response_head(up.head(), &request_id, close, &mut out).is_err() {
        // Checked once already by `send`: cannot happen; answer as a broken upstream.
        return false;
    }
    let (client_ok, body_done) = up
        .relay(client, out, pool, server.addr, &group.limits, idle)
        .await;
    client_ok && body_done && !close
}
