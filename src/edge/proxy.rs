//! One request through the edge: route, rate limit, cache, server choice with retries,
//! timeouts and response headers (upgrades are tunnelled by `upgrade.rs`, the access log
//! line and metrics written by `access_log.rs`).

use super::access_log::{account, LogLine};
use super::cache::Lookup;
use super::headers::{self, X_CACHE, X_REQUEST_ID};
use super::route::Route;
use super::upgrade::{tunnel, websocket_over_h2, websocket_over_h2_answer};
use super::upstream::{Attempt, Server, UpBody};
use super::{Edge, EdgeState};
use crate::config::AccessLog;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Incoming};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// An upstream's body: from a pooled HTTP/1.1 connection (`conn.rs`), or a stream of
/// hyper's own (an HTTP/2 upstream's answer, or the answer to an upgrade request).
pub type UpstreamBody = Either<super::conn::PooledBody, Incoming>;

/// What the edge sends back: the upstream's streamed body (kept for the cache on the way
/// when it has no length up front), or one the edge made or buffered.
pub type RespBody = Either<Streamed, Full<Bytes>>;

/// An upstream body streamed to the client. With `keep`, a copy of what passes is kept and,
/// at the end, stored in the cache: how a cacheable response without a Content-Length
/// (chunked, or ended by close) is cached without delaying the client. Past
/// `max_object_bytes` the copy is dropped and the fill released (waiters go upstream).
pub struct Streamed {
    inner: UpstreamBody,
    keep: Option<Box<Keep>>,
}

struct Keep {
    fill: super::cache::Fill,
    status: StatusCode,
    headers: http::HeaderMap,
    parts: Vec<Bytes>,
    size: usize,
    limit: usize,
    /// Called with the cache's size after a store (the metrics gauges).
    stored: Box<dyn Fn() + Send + Sync>,
}

impl Streamed {
    pub(super) fn plain(inner: UpstreamBody) -> Streamed {
        Streamed { inner, keep: None }
    }

    /// Store what was kept (the body ended).
    fn finish(&mut self) {
        if let Some(k) = self.keep.take() {
            let Keep {
                fill,
                status,
                headers,
                parts,
                stored,
                ..
            } = *k;
            let body = match parts.len() {
                1 => parts.into_iter().next().unwrap_or_default(),
                _ => Bytes::from(parts.concat()),
            };
            fill.store(status, &headers, body);
            stored();
        }
    }
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = <UpstreamBody as Body>::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        let r = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(k), Some(data)) = (&mut this.keep, frame.data_ref()) {
                    k.size += data.len();
                    if k.size > k.limit {
                        this.keep = None;
                    } else {
                        k.parts.push(data.clone());
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            // A failed body is not stored (dropping the fill releases waiters).
            Poll::Ready(Some(Err(_))) => this.keep = None,
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// What a connection's requests share.
#[derive(Clone)]
pub struct ConnCtx {
    pub edge: Arc<Edge>,
    /// The listener's name.
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub tls: bool,
    /// The worker serving the connection (which pooled client to use).
    pub worker: usize,
    /// What the connection's requests are doing, seen by the loop that serves it.
    pub requests: Arc<ConnRequests>,
    /// The client's address as X-Forwarded-For text, made once per connection.
    pub client_ip: HeaderValue,
    /// On a listener with `tls_client_ca_file`: what the handshake learned of the client's
    /// certificate (`None` on other listeners: no headers about it are added or dropped).
    pub client_cert: Option<ClientCert>,
}

/// What a connection's requests are doing, shared by the loop serving the connection
/// (hyper's path) and its requests.
#[derive(Default)]
pub struct ConnRequests {
    /// In progress (the idle timeout only closes connections with none).
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// [`FIRST_NOT_YET`], [`FIRST_STARTED`] or [`FIRST_AWAITED`].
    pub first: std::sync::atomic::AtomicU8,
}

/// No request has started on the connection.
pub const FIRST_NOT_YET: u8 = 0;
/// A request has started on the connection.
pub const FIRST_STARTED: u8 = 1;
/// A drain began before the connection's first request (the client connected just before
/// this process stopped accepting): that request, if it comes within the grace, is served
/// and answered with `Connection: close` (HTTP/1).
pub const FIRST_AWAITED: u8 = 2;

/// A client certificate on a listener with `tls_client_ca_file`.
#[derive(Clone, Debug)]
pub enum ClientCert {
    /// None presented (an "optional" listener).
    Absent,
    /// Verified by the handshake; its subject common name, if it has one that is a valid
    /// header value.
    Verified(Option<HeaderValue>),
}

static X_SSL_CLIENT_VERIFY: http::HeaderName = http::HeaderName::from_static("x-ssl-client-verify");
static X_SSL_CLIENT_CN: http::HeaderName = http::HeaderName::from_static("x-ssl-client-cn");

impl ClientCert {
    /// Replace whatever the client sent of the two headers with what the handshake showed.
    fn set_headers(&self, headers: &mut http::HeaderMap) {
        headers.remove(&X_SSL_CLIENT_VERIFY);
        headers.remove(&X_SSL_CLIENT_CN);
        let (verify, cn) = self.values();
        if let Some(cn) = cn {
            headers.insert(&X_SSL_CLIENT_CN, cn.clone());
        }
        headers.insert(&X_SSL_CLIENT_VERIFY, HeaderValue::from_static(verify));
    }

    /// X-SSL-Client-Verify's value, and X-SSL-Client-CN's if it is sent.
    pub fn values(&self) -> (&'static str, Option<&HeaderValue>) {
        match self {
            ClientCert::Absent => ("NONE", None),
            ClientCert::Verified(cn) => ("SUCCESS", cn.as_ref()),
        }
    }

    /// One of the two headers this sets (the client's own are dropped).
    pub fn is_its_header(name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(X_SSL_CLIENT_VERIFY.as_str().as_bytes())
            || name.eq_ignore_ascii_case(X_SSL_CLIENT_CN.as_str().as_bytes())
    }
}

/// Serve one request. Never fails: every problem is an HTTP answer.
pub async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    use std::sync::atomic::Ordering::Relaxed;
    let requests = &*ctx.requests;
    requests.in_flight.fetch_add(1, Relaxed);
    let _done = crate::Decrement(&requests.in_flight);
    // The last of the connection when a drain was waiting for this first request.
    let last = requests.first.load(Relaxed) != FIRST_STARTED
        && requests.first.swap(FIRST_STARTED, Relaxed) == FIRST_AWAITED
        && req.version() < http::Version::HTTP_2;
    let started = Instant::now();
    let state = ctx.edge.state();
    let mut log = LogLine::new(&req, &ctx, state.cfg.access_log != AccessLog::Off);
    let mut resp = serve(&ctx, &state, req, &mut log).await;
    // New with every request: over HTTP/2 it is sent as a literal never indexed, or each one
    // would go into the connection's HPACK table and, once the table is full, push out the
    // headers that repeat (which then go out whole again).
    let mut id = log.request_id.clone();
    id.set_sensitive(true);
    resp.headers_mut().insert(&X_REQUEST_ID, id);
    if last && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let secs = started.elapsed().as_secs_f64();
    account(&ctx, &state, &mut log, resp.status().as_u16(), secs);
    Ok(resp)
}

async fn serve(
    ctx: &ConnCtx,
    state: &EdgeState,
    mut req: Request<Incoming>,
    log: &mut LogLine,
) -> Response<RespBody> {
    log.request_id = headers::request_id(req.headers_mut());
    // Before the cache sees the request (a `Vary: Cookie` key) and before it goes upstream.
    headers::join_cookies(req.version(), req.headers_mut());
    // An HTTP/2 client's WebSocket (RFC 8441: extended CONNECT with `:protocol =
    // websocket`) goes upstream as an HTTP/1.1 upgrade with a key of the edge's own.
    let ws_key = match websocket_over_h2(&req) {
        true => Some(headers::h1_websocket_request(&mut req)),
        false => None,
    };
    if req.method() == Method::CONNECT {
        // A reverse proxy, not a forward one: no tunnels to wherever the client names.
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported");
        r.headers_mut().insert(
            http::header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
        );
        return r;
    }
    if let Some(why) = headers::ambiguous(req.version(), req.headers()) {
        let mut r = error(StatusCode::BAD_REQUEST, why);
        if req.version() < Version::HTTP_2 {
            // What follows on the connection cannot be framed with certainty.
            r.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        return r;
    }
    let host = super::route::request_host_of(req.headers(), req.uri()).into_owned();
    let Some(route) = state.routes.find(&ctx.listener, &host, req.uri().path()) else {
        return error(StatusCode::NOT_FOUND, "no route for this host and path");
    };
    log.route = Some(route.clone());
    if let Some(l) = &route.limiter {
        if let Err(wait) = l.check(ctx.peer.ip()) {
            route.metrics.rate_limited.inc();
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
    }
    let upgrade = ws_key.is_some()
        || req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers());
    let mut fill = None;
    let method = req.method().clone();
    let cache_key = if route.cfg.cache {
        format!(
            "{host}{}",
            req.uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        )
    } else {
        String::new()
    };
    if route.cfg.cache && !upgrade && (method == Method::GET || method == Method::HEAD) {
        let wait = state.cfg.cache.lock_timeout;
        match state
            .cache
            .lookup(&method, &cache_key, req.headers(), wait)
            .await
        {
            Lookup::Hit(stored) => {
                ctx.edge.metrics.edge.cache_lookup("hit");
                log.cache = "HIT";
                let (parts, body) = stored.respond(req.method(), req.headers()).into_parts();
                return Response::from_parts(parts, Either::Right(Full::new(body)));
            }
            Lookup::Bypass => ctx.edge.metrics.edge.cache_lookup("bypass"),
            Lookup::Miss(f) => {
                ctx.edge.metrics.edge.cache_lookup("miss");
                log.cache = "MISS";
                fill = Some(f);
            }
        }
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let version = req.version();
    let (mut resp, server) = match forward(ctx, route, req, upgrade, &host).await {
        Ok(ok) => ok,
        Err(e) => {
            log.upstream = e.server;
            return e.response;
        }
    };
    log.upstream = Some(server.addr);
    if route.cfg.cache && !is_safe(&method) && !resp.status().is_server_error() {
        // A write through the edge makes its stored responses stale (RFC 9111 4.4).
        state.cache.purge(&cache_key);
    }
    if let Some(key) = &ws_key {
        return websocket_over_h2_answer(resp, key, client_upgrade);
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(on_client) = client_upgrade {
            let on_upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(on_client, on_upstream));
        }
    }
    let (mut parts, body) = resp.into_parts();
    // The client's version, not the upstream's (an HTTP/1.0 upstream must not make a
    // keep-alive HTTP/1.1 client connection close).
    parts.version = version;
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        headers::append_via(&mut parts.headers, headers::via_for(version));
        return Response::from_parts(parts, Either::Right(Full::new(Bytes::new())));
    }
    headers::remove_hop_by_hop(&mut parts.headers, false);
    headers::append_via(&mut parts.headers, headers::via_for(version));
    if let Some(fill) = fill {
        parts
            .headers
            .insert(&X_CACHE, HeaderValue::from_static("MISS"));
        let small = body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= state.cfg.cache.max_object_bytes as u64);
        if small && fill.cacheable(parts.status, &parts.headers) {
            // Buffer it whole: it is stored, then sent.
            match tokio::time::timeout(route.cfg.response_timeout, body.collect()).await {
                Ok(Ok(collected)) => {
                    let bytes = collected.to_bytes();
                    fill.store(parts.status, &parts.headers, bytes.clone());
                    let s = state.cache.stats();
                    ctx.edge.metrics.edge.cache_size(s.bytes, s.entries);
                    return Response::from_parts(parts, Either::Right(Full::new(bytes)));
                }
                _ => return error(StatusCode::BAD_GATEWAY, "upstream response body failed"),
            }
        }
        if body.size_hint().exact().is_none() && fill.cacheable(parts.status, &parts.headers) {
            // No length up front: streamed, and kept on the way for the cache.
            let (cache, metrics) = (state.cache.clone(), ctx.edge.metrics.clone());
            let keep = Keep {
                fill,
                status: parts.status,
                headers: parts.headers.clone(),
                parts: Vec::new(),
                size: 0,
                limit: state.cfg.cache.max_object_bytes,
                stored: Box::new(move || {
                    let s = cache.stats();
                    metrics.edge.cache_size(s.bytes, s.entries);
                }),
            };
            let body = Streamed {
                inner: body,
                keep: Some(Box::new(keep)),
            };
            return Response::from_parts(parts, Either::Left(body));
        }
    }
    Response::from_parts(parts, Either::Left(Streamed::plain(body)))
}

/// A failed forward: the answer for the client and the server that failed, if any.
struct Failed {
    response: Response<RespBody>,
    server: Option<SocketAddr>,
}

fn failed(status: StatusCode, msg: &str, server: Option<&Server>) -> Failed {
    Failed {
        response: error(status, msg),
        server: server.map(|s| s.addr),
    }
}

/// Send the request to a server of the route's group; an idempotent request (with no body,
/// or one of known length up to [`RETRY_BODY_BYTES`], read first) that fails to connect or
/// gets 502/503 goes to another server, within the retry budget.
async fn forward(
    ctx: &ConnCtx,
    route: &Route,
    req: Request<Incoming>,
    upgrade: bool,
    host: &str,
) -> Result<(Response<UpstreamBody>, Arc<Server>), Failed> {
    let group = &route.group;
    let (mut parts, body) = req.into_parts();
    // An idempotent request's body of known length up to RETRY_BODY_BYTES is read first, so
    // that a retry can send it again; a longer or chunked one streams and is not retried.
    let mut held = None;
    let mut body = Some(body);
    let wants_retry = idempotent(&parts.method) && !upgrade && route.cfg.retries > 0;
    let small = body.as_ref().is_some_and(|b| {
        !b.is_end_stream() && b.size_hint().exact().is_some_and(|n| n <= RETRY_BODY_BYTES)
    });
    if let Some(b) = body.take_if(|_| wants_retry && small) {
        match tokio::time::timeout(route.cfg.response_timeout, b.collect()).await {
            Ok(Ok(b)) => held = Some(b.to_bytes()),
            Ok(Err(_)) => {
                return Err(failed(StatusCode::BAD_REQUEST, "request body failed", None));
            }
            Err(_) => {
                return Err(failed(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body did not arrive in time",
                    None,
                ));
            }
        }
    }
    let retryable = idempotent(&parts.method)
        && !upgrade
        && (held.is_some() || body.as_ref().is_some_and(|b| b.is_end_stream()));
    // The original path is reused as is (no copy) unless the route strips a prefix.
    let original = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let path = match route.upstream_path(original.as_str()) {
        std::borrow::Cow::Borrowed(p) if p.len() == original.as_str().len() => original,
        p => match p.parse() {
            Ok(p) => p,
            Err(_) => return Err(failed(StatusCode::BAD_REQUEST, "bad request path", None)),
        },
    };
    let h2 = group.is_h2();
    if h2 && upgrade {
        return Err(failed(
            StatusCode::BAD_GATEWAY,
            "upgrades need an HTTP/1.1 upstream",
            None,
        ));
    }
    // "TE: trailers" is the one TE HTTP/2 allows; gRPC clients send it and servers may
    // insist on it.
    let te_trailers = h2
        && parts.headers.get_all(http::header::TE).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
    let via = headers::via_for(parts.version);
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    if te_trailers {
        parts
            .headers
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let host_value = parts
        .headers
        .get(http::header::HOST)
        .cloned()
        // An HTTP/2 request names its host in the authority, port included: sent as is.
        .or_else(|| {
            let authority = parts.uri.authority().map(|a| a.as_str()).unwrap_or(host);
            HeaderValue::from_str(authority).ok()
        })
        // HTTP/1.0 without Host: the server's own name is sent (HTTP/1.1 requires one).
        .filter(|h| !h.is_empty());
    headers::add_forwarded(
        &mut parts.headers,
        &ctx.client_ip,
        ctx.tls,
        host_value.as_ref(),
        via,
    );
    if let Some(cert) = &ctx.client_cert {
        cert.set_headers(&mut parts.headers);
    }
    // The group's own Host, if it sets one, replaces the client's (kept in X-Forwarded-Host).
    let host_value = group.host_header.clone().or(host_value);
    let h2_authority = if h2 {
        // HTTP/2 names the host in the authority (the server's address without a Host),
        // and sends no Host header.
        parts.headers.remove(http::header::HOST);
        let host = host_value.as_ref().and_then(|h| h.to_str().ok());
        host.and_then(|h| h.parse::<http::uri::Authority>().ok())
    } else {
        if let Some(h) = &host_value {
            // HTTP/2 clients name the host in the authority only; HTTP/1.1 upstreams need it.
            parts.headers.insert(http::header::HOST, h.clone());
        }
        None
    };
    group.request_started();
    let attempts = 1 + if retryable { route.cfg.retries } else { 0 };
    let mut tried: Vec<SocketAddr> = Vec::with_capacity(attempts as usize);
    let mut last: Option<Failed> = None;
    for attempt in 0..attempts {
        let server = match group.next_attempt(attempt, &tried, last.is_none()) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(msg) => return Err(failed(StatusCode::SERVICE_UNAVAILABLE, &msg, None)),
        };
        tried.push(server.addr);
        // Origin-form: a server given the absolute form must take the host from it and
        // ignore Host (RFC 9112, 3.2.2), which would hide the client's Host from name-based
        // virtual hosts.
        let uri = if h2 {
            let authority = h2_authority.clone();
            http::Uri::builder()
                .scheme(group.limits.scheme())
                .authority(authority.unwrap_or_else(|| server.authority.clone()))
                .path_and_query(path.clone())
                .build()
        } else {
            http::Uri::builder().path_and_query(path.clone()).build()
        };
        let Ok(uri) = uri else {
            return Err(failed(StatusCode::BAD_REQUEST, "bad request path", None));
        };
        let mut up = Request::new(match (&held, retryable, body.take()) {
            (Some(b), _, _) => Either::Right(Full::new(b.clone())),
            (None, false, Some(b)) => Either::Left(b),
            _ => Either::Right(Full::new(Bytes::new())),
        } as UpBody);
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.headers_mut() = parts.headers.clone();
        if up.body().size_hint().exact().is_none() && !h2 {
            // A body of unknown length goes out chunked. hyper's client would send a GET,
            // HEAD or CONNECT with such a body as having none (it assumes they never have
            // one) unless the header says chunked, and the client's body bytes would then be
            // left unread on its connection.
            up.headers_mut().insert(
                http::header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        if h2 {
            *up.version_mut() = Version::HTTP_2;
        } else {
            if host_value.is_none() {
                if let Ok(h) = HeaderValue::from_str(server.authority.as_str()) {
                    up.headers_mut().insert(http::header::HOST, h);
                }
            }
            *up.version_mut() = Version::HTTP_11;
        }
        let send = async {
            if h2 {
                let r = group
                    .h2_pool(ctx.worker)
                    .send(&server, up, &group.limits)
                    .await;
                r.map(|r| r.map(Either::Right))
            } else if upgrade {
                let r = super::conn::send_upgrade(&server, up, &group.limits).await;
                r.map(|r| r.map(Either::Right))
            } else {
                let pool = group.pool(ctx.worker);
                let r = pool.send(&server, up, group.limits.clone()).await;
                r.map(|r| r.map(Either::Left))
            }
        };
        let last_attempt = attempt + 1 == attempts;
        let status_of = |r: &Response<_>| r.status().as_u16();
        let expired = tokio::time::sleep(route.cfg.response_timeout);
        // Boxed: hyper's request future is large, and moving it into the attempt copied it.
        let send = Box::pin(send);
        match group
            .attempt_until(&server, expired, last_attempt, status_of, send)
            .await
        {
            Attempt::Answered(resp) => return Ok((resp, server)),
            Attempt::Failed(f) => {
                let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY);
                let failure = failed(status, f.msg, Some(&server));
                if !f.retry {
                    return Err(failure);
                }
                last = Some(failure);
            }
        }
    }
    Err(last.unwrap_or_else(|| failed(StatusCode::BAD_GATEWAY, "no upstream answered", None)))
}

/// Largest request body held in memory so that an idempotent request (PUT, DELETE, ...) can
/// be retried with it.
const RETRY_BODY_BYTES: u64 = 64 * 1024;

fn is_safe(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// An answer the edge makes itself.
pub fn error(status: StatusCode, msg: &str) -> Response<RespBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "switchyard: {msg}\n"
    )))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
