//! The HTTP/1.1 fast path. A client connection starts here, plain or TLS (after the
//! handshake, when ALPN did not choose h2): each request whose head is simple (GET or HEAD
//! without a body, origin-form target, one Host, no Upgrade or Expect, a route without cache
//! or rate limit) is proxied by this module's own code: the head is parsed with httparse,
//! rewritten into the upstream request in one buffer, the response head parsed and
//! rewritten the same way, and the body
//! copied as it arrives (by Content-Length, chunked passed through as it is, or until the
//! upstream closes). hyper's server and client cost about twice the CPU per request for the
//! same forwarding (benches/README.md). The first request that is not simple, or an HTTP/2
//! prior-knowledge preface, hands the connection with the bytes already read to hyper
//! (`listener.rs`) for the rest of its life; so does anything httparse refuses (hyper then
//! answers 400 or 431 as it does for every connection).
//!
//! Everything else matches the hyper path (`proxy.rs`): the same header rewriting (done on
//! the bytes of the head, with `headers.rs`'s rules; `tests/edge.rs` compares the two
//! paths' upstream requests), server choice, retries within the budget,
//! passive health, timeouts (header read from the first byte, connect, response head, idle
//! between requests), metrics, access log, the client certificate's headers on a listener
//! that asks for one, and drain (`Connection: close` on the answer in progress, then the
//! close).

//!
//! Layout: this file takes a connection from request head to answer; [`upstream`] holds the
//! upstream connections, their pool, the exchange and the body copy; [`wire`] the byte-level
//! readers and writers (response head, framing, chunked scanner), which are fuzzed
//! (`fuzz/fuzz_targets/edge_h1.rs`).

mod upstream;
mod wire;

pub use upstream::{RawConn, RawPool};
use wire::Known;
pub use wire::{parse_response, response_head, ChunkScanner, Framing, Head};

use super::access_log::LogLine;
use super::headers;
use super::proxy::{ClientCert, ConnCtx};
use super::route::Route;
use super::upstream::Attempt;
use super::EdgeState;
use crate::config::EdgeListener;
use crate::net::bufs;
use bytes::{Buf, BufMut, BytesMut};
use http::{HeaderValue, Method};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use upstream::{send, write_within};
use wire::{put_line, status_line, Lines, MAX_HEADERS};

/// The HTTP/2 prior-knowledge preface's first line.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// How a connection left the fast path.
pub enum Outcome<S> {
    /// It is finished (closed by either side, idle, drained, or failed).
    Done,
    /// hyper serves the rest: the stream and what was read from it already.
    Handoff(S, BytesMut),
}

/// Serve `client` (TCP, or TLS that did not choose h2) until it closes, or hand it to hyper.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<ConnCtx>,
    cfg: &EdgeListener,
    mut client: S,
    shutdown: &CancellationToken,
) -> Outcome<S> {
    // The request's bytes, the upstream request head, and the answer to the client (head
    // and what of the body is at hand): taken from the worker's free list for a request and
    // given back between requests (`net::bufs`), so an idle keep-alive connection holds none.
    let mut buf = BytesMut::new();
    let mut head = BytesMut::new();
    let mut out = BytesMut::new();
    // Between requests the connection may stay idle for idle_timeout after its last answer;
    // an upstream has the route's response_timeout to answer. One timer per connection for
    // both, not one per request: it is never set later than the deadline that runs, and is
    // moved on only when it fires early (the connection answered since it was set) or when a
    // response deadline is earlier than it.
    let mut idle_since = tokio::time::Instant::now();
    let idle_timer = tokio::time::sleep_until(idle_since + cfg.idle_timeout);
    tokio::pin!(idle_timer);
    // No request read yet: a drain that starts now lets the first one come (the client
    // connected before this process stopped accepting) and serves it.
    let mut first = true;
    loop {
        while buf.is_empty() {
            head.clear();
            out.clear();
            bufs::give_all([&mut head, &mut out]);
            // Between requests: the idle timeout, or the drain, ends the connection.
            tokio::select! {
                r = bufs::read(&mut client, &mut buf, 4096) => {
                    if !matches!(r, Ok(n) if n > 0) {
                        return Outcome::Done;
                    }
                }
                _ = idle_timer.as_mut() => {
                    let due = idle_since + cfg.idle_timeout;
                    if due <= idle_timer.deadline() {
                        return Outcome::Done;
                    }
                    idle_timer.as_mut().reset(due);
                }
                _ = shutdown.cancelled() => {
                    if !first {
                        return Outcome::Done;
                    }
                    let grace = Duration::from_millis(crate::engine::DRAIN_IDLE_MS);
                    match tokio::time::timeout(grace, bufs::read(&mut client, &mut buf, 4096)).await {
                        Ok(Ok(n)) if n > 0 => first = false,
                        _ => return Outcome::Done,
                    }
                }
            }
        }
        // The rest of the head within header_timeout of its first byte (slowloris): the
        // clock is read only when the head did not come whole.
        let mut deadline = None;
        let mut head_deadline =
            || *deadline.get_or_insert_with(|| tokio::time::Instant::now() + cfg.header_timeout);
        bufs::take_all([&mut head, &mut out]);
        let state = ctx.edge.state();
        let prepared = loop {
            if H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
                if buf.len() < H2_PREFACE.len() {
                    match tokio::time::timeout_at(head_deadline(), client.read_buf(&mut buf)).await
                    {
                        Ok(Ok(n)) if n > 0 => continue,
                        _ => return Outcome::Done,
                    }
                }
                return Outcome::Handoff(client, buf);
            }
            match prepare(&ctx, &state, &buf, &mut head, shutdown.is_cancelled()) {
                Parsed::Ready(p) => {
                    first = false;
                    break p;
                }
                Parsed::Handoff => return Outcome::Handoff(client, buf),
                Parsed::Partial if buf.len() > cfg.max_header_bytes => {
                    // hyper answers 431 for it.
                    return Outcome::Handoff(client, buf);
                }
                Parsed::Partial => {
                    match tokio::time::timeout_at(head_deadline(), client.read_buf(&mut buf)).await
                    {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return Outcome::Done,
                    }
                }
            }
        };
        buf.advance(prepared.head_len);
        // Boxed (in a statement of its own, or the temporary would live in this future past
        // the await): the exchange's state (some 4 KiB) is held only while a request is in
        // progress, not by every idle keep-alive connection.
        let exchange = Box::pin(exchange(
            &ctx,
            &state,
            &mut client,
            &head,
            Own {
                out: &mut out,
                timer: idle_timer.as_mut(),
            },
            prepared,
            cfg.idle_timeout,
        ));
        let (keep, answered) = exchange.await;
        idle_since = answered;
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
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut slots) {
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
    // The head is written out as it came, less the hop-by-hop headers and those the edge
    // sets, then the edge's own: the rewrite of `headers.rs` (which the hyper path does on a
    // `HeaderMap`) without building one. A head this cannot mirror simply (a Connection
    // header that is not text, or names many headers) goes to hyper.
    let mut close = draining;
    // The headers Connection names (hop-by-hop for this hop: they go too).
    let mut named: [&[u8]; MAX_CONNECTION_TOKENS] = [b""; MAX_CONNECTION_TOKENS];
    let mut n_named = 0;
    let mut host = None;
    let mut request_id = None;
    let mut forwarded_for: Option<&[u8]> = None;
    let mut via: Option<&[u8]> = None;
    // Each header's kind, found once by its name (for the second pass below too).
    let mut kinds = [ReqHeader::Other; MAX_HEADERS];
    for (h, kind) in req.headers.iter().zip(kinds.iter_mut()) {
        if !h
            .value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
        {
            return Parsed::Handoff;
        }
        *kind = ReqHeader::of(h.name.as_bytes());
        if *kind == ReqHeader::Other
            && ctx.client_cert.is_some()
            && ClientCert::is_its_header(h.name.as_bytes())
        {
            *kind = ReqHeader::Dropped;
        }
        match *kind {
            ReqHeader::Handoff => return Parsed::Handoff,
            ReqHeader::Host => {
                if host.replace(h.value).is_some() {
                    return Parsed::Handoff;
                }
            }
            ReqHeader::Connection => {
                if visible(h.value).is_none() {
                    return Parsed::Handoff;
                }
                for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        return Parsed::Handoff;
                    }
                    // Keep-Alive is dropped anyway (see `wire::parse_and_rewrite`).
                    if token.is_empty() || token.eq_ignore_ascii_case(b"keep-alive") {
                        continue;
                    }
                    if n_named == named.len() {
                        return Parsed::Handoff;
                    }
                    named[n_named] = token;
                    n_named += 1;
                }
            }
            ReqHeader::RequestId => {
                request_id.get_or_insert(h.value);
            }
            ReqHeader::ForwardedFor => {
                forwarded_for.get_or_insert(h.value);
            }
            ReqHeader::Via => {
                via.get_or_insert(h.value);
            }
            ReqHeader::Dropped | ReqHeader::Other => {}
        }
    }
    let Some(host_value) = host else {
        return Parsed::Handoff;
    };
    let named = &named[..n_named];
    let is_named = |name: &[u8]| named.iter().any(|t| t.eq_ignore_ascii_case(name));
    // As on hyper's path, the headers Connection names are gone before the forwarding
    // headers are joined to what the client sent.
    if is_named(b"x-forwarded-for") {
        forwarded_for = None;
    }
    if is_named(b"via") {
        via = None;
    }
    let drop_request_id = is_named(b"x-request-id");
    let host = super::route::host_of(visible(host_value).unwrap_or(""));
    let path = target.split('?').next().unwrap_or(target);
    let Some(route) = state.routes.find(&ctx.listener, &host, path) else {
        return Parsed::Handoff;
    };
    if route.cfg.cache || route.limiter.is_some() || route.group.is_h2() {
        return Parsed::Handoff;
    }
    let log_on = state.cfg.access_log != crate::config::AccessLog::Off;
    let mut log = LogLine::fast(&method, target, &host, ctx, log_on);
    // A valid X-Request-Id is passed on as it is (every such header); otherwise the edge's
    // replaces them.
    let (request_id, own_id) = match request_id.filter(|v| headers::valid_request_id(v)) {
        Some(v) => (HeaderValue::from_bytes(v).expect("checked above"), false),
        None => (headers::new_request_id(), true),
    };
    log.request_id = request_id.clone();
    log.route = Some(route.clone());
    out.clear();
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(route.upstream_path(target).as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    let mut lines = Lines::new(buf, head_len);
    for (i, (h, kind)) in req.headers.iter().zip(kinds).enumerate() {
        // Hop-by-hop (RFC 9110 7.6.1; Upgrade and Transfer-Encoding never reach here), or
        // set by the edge.
        let dropped = match kind {
            ReqHeader::Connection
            | ReqHeader::Dropped
            | ReqHeader::ForwardedFor
            | ReqHeader::Via => true,
            ReqHeader::RequestId => own_id || drop_request_id,
            ReqHeader::Host => route.group.host_header.is_some(),
            _ => false,
        } || (!named.is_empty() && is_named(h.name.as_bytes()));
        if !dropped {
            lines.keep(out, req.headers, i);
        }
    }
    lines.flush(out);
    if let Some(h) = &route.group.host_header {
        put_line(out, b"host", &[h.as_bytes()]);
    }
    if own_id && !drop_request_id {
        put_line(out, b"x-request-id", &[request_id.as_bytes()]);
    }
    // X-Forwarded-For: the client appended to the first value there was (when it is text).
    out.put_slice(b"x-forwarded-for: ");
    if let Some(prev) = forwarded_for
        .and_then(visible)
        .filter(|p| !p.trim().is_empty())
    {
        out.put_slice(prev.as_bytes());
        out.put_slice(b", ");
    }
    out.put_slice(ctx.client_ip.as_bytes());
    out.put_slice(b"\r\n");
    put_line(
        out,
        b"x-forwarded-proto",
        &[if ctx.tls { b"https" } else { b"http" }],
    );
    put_line(out, b"x-forwarded-host", &[host_value]);
    out.put_slice(b"via: ");
    if let Some(prev) = via.and_then(visible) {
        out.put_slice(prev.as_bytes());
        out.put_slice(b", ");
    }
    out.put_slice(headers::via_for(http::Version::HTTP_11).as_bytes());
    out.put_slice(b"\r\n");
    if let Some(cert) = &ctx.client_cert {
        let (verify, cn) = cert.values();
        if let Some(cn) = cn {
            put_line(out, b"x-ssl-client-cn", &[cn.as_bytes()]);
        }
        put_line(out, b"x-ssl-client-verify", &[verify.as_bytes()]);
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

/// Most headers one request's Connection headers may name on the fast path.
const MAX_CONNECTION_TOKENS: usize = 8;

/// What the fast path does with a request header, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqHeader {
    /// Passed on as it is.
    Other,
    /// A request with it goes to hyper: a body (Content-Length, Transfer-Encoding), an
    /// Upgrade, an Expect.
    Handoff,
    Host,
    Connection,
    RequestId,
    /// Set by the edge with the client's value first.
    ForwardedFor,
    Via,
    /// Hop-by-hop (RFC 9110 7.6.1), or replaced by the edge's own (X-Forwarded-Proto/Host).
    Dropped,
}

impl ReqHeader {
    fn of(name: &[u8]) -> ReqHeader {
        match Known::of(name) {
            Known::Expect | Known::Upgrade | Known::ContentLength | Known::TransferEncoding => {
                ReqHeader::Handoff
            }
            Known::Host => ReqHeader::Host,
            Known::Connection => ReqHeader::Connection,
            Known::RequestId => ReqHeader::RequestId,
            Known::ForwardedFor => ReqHeader::ForwardedFor,
            Known::Via => ReqHeader::Via,
            Known::Te
            | Known::Trailer
            | Known::KeepAlive
            | Known::ProxyConnection
            | Known::ForwardedHost
            | Known::ForwardedProto => ReqHeader::Dropped,
            Known::Other => ReqHeader::Other,
        }
    }
}

/// The header's value as text when it is visible ASCII (as `HeaderValue::to_str` takes it).
fn visible(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}

/// What a client connection keeps from one request to the next: its answer buffer and its
/// one timer (see [`serve`]).
struct Own<'a> {
    out: &'a mut BytesMut,
    timer: Pin<&'a mut Sleep>,
}

/// Ends at `due` on the connection's `timer`, which is never set later than a deadline that
/// is running (it may be earlier: then it is moved on to `due` when it fires).
async fn expires(mut timer: Pin<&mut Sleep>, due: tokio::time::Instant) {
    loop {
        timer.as_mut().await;
        if timer.deadline() >= due {
            return;
        }
        timer.as_mut().reset(due);
    }
}

/// Send the prepared request (`head`) upstream with retries, and its answer to the client.
/// Whether the client connection can take another request, and when the answer was done.
/// Nothing moving for `idle` while the answer is copied ends the connection.
async fn exchange<S: AsyncWrite + Unpin>(
    ctx: &ConnCtx,
    state: &EdgeState,
    client: &mut S,
    head: &[u8],
    own: Own<'_>,
    p: Box<Prepared>,
    idle: Duration,
) -> (bool, tokio::time::Instant) {
    let Own { out, mut timer } = own;
    let Prepared {
        route,
        head_only,
        mut close,
        request_id,
        mut log,
        ..
    } = *p;
    let started = tokio::time::Instant::now();
    let group = &route.group;
    let timeout = route.cfg.response_timeout;
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
        let send = send(
            pool,
            &server,
            &group.limits,
            head,
            head_only,
            (&request_id, &mut *out),
        );
        let last_attempt = attempt + 1 == attempts;
        let status_of = |up: &upstream::UpResp| up.status;
        // The response timeout runs from this attempt's start, on the connection's timer.
        let due = if attempt == 0 {
            started
        } else {
            tokio::time::Instant::now()
        } + timeout;
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        let expired = expires(timer.as_mut(), due);
        match group
            .attempt_until(&server, expired, last_attempt, status_of, send)
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
    let answered = tokio::time::Instant::now();
    let secs = (answered - started).as_secs_f64();
    let Some((up, server)) = answer else {
        let (status, msg, server) = last.unwrap_or((502, "no upstream answered".to_string(), None));
        log.upstream = server;
        super::access_log::account(ctx, state, &mut log, status, secs);
        let body = format!("switchyard: {msg}\n");
        out.clear();
        status_line(out, status, None);
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
        return match write_within(client, out, idle).await {
            Ok(false) => (!close, answered),
            Ok(true) => (!close, tokio::time::Instant::now()),
            Err(_) => (false, answered),
        };
    };
    log.upstream = Some(server.addr);
    super::access_log::account(ctx, state, &mut log, up.status, secs);
    if matches!(up.framing, Framing::UntilClose) {
        close = true;
    }
    // `send` wrote the client's head from this answer's; it ends here.
    wire::finish_head(out, close);
    let (client_ok, body_done, waited) = up
        .relay(client, out, pool, server.addr, &group.limits, idle)
        .await;
    // The connection is idle from the end of the answer: the head's arrival, unless copying
    // the answer had to wait.
    let done = if waited {
        tokio::time::Instant::now()
    } else {
        answered
    };
    (client_ok && body_done && !close, done)
}

#[cfg(test)]
mod tests {
    use super::ReqHeader;

    /// The fast path drops the same request headers as hyper's path (`headers.rs`), in any
    /// case, and hands a request with a body, an Upgrade or an Expect to hyper.
    #[test]
    fn request_header_kinds_agree_with_the_hop_by_hop_list() {
        for name in super::headers::HOP_BY_HOP {
            let kind = ReqHeader::of(name.as_str().as_bytes());
            assert!(
                matches!(kind, ReqHeader::Dropped | ReqHeader::Handoff),
                "{name}: {kind:?}"
            );
        }
        let cases: [(&str, ReqHeader); 12] = [
            ("Host", ReqHeader::Host),
            ("CONNECTION", ReqHeader::Connection),
            ("X-Request-Id", ReqHeader::RequestId),
            ("X-Forwarded-For", ReqHeader::ForwardedFor),
            ("Via", ReqHeader::Via),
            ("X-Forwarded-Proto", ReqHeader::Dropped),
            ("x-forwarded-host", ReqHeader::Dropped),
            ("Content-Length", ReqHeader::Handoff),
            ("Transfer-Encoding", ReqHeader::Handoff),
            ("Upgrade", ReqHeader::Handoff),
            ("Expect", ReqHeader::Handoff),
            ("Accept", ReqHeader::Other),
        ];
        for (name, kind) in cases {
            assert_eq!(ReqHeader::of(name.as_bytes()), kind, "{name}");
        }
        // Same length as a listed name, but another name.
        for name in [
            "hosts",
            "vie",
            "connectiom",
            "x-request-ie",
            "content-lengtx",
        ] {
            assert_eq!(ReqHeader::of(name.as_bytes()), ReqHeader::Other, "{name}");
        }
    }
}
