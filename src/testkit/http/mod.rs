//! Real HTTP upstream servers for the HTTP edge's tests and for `switchyard demo`.
//!
//! An [`HttpUpstream`] is a small but genuine HTTP server: it speaks HTTP/1.1 with keep-alive
//! and HTTP/2 cleartext (prior knowledge) through hyper-util's auto builder, so the edge load
//! balancer in front of it is exercised against the same protocol machinery a production
//! backend would use, not a canned byte stream.
//!
//! Each upstream owns one OS thread running a tokio current-thread runtime. That keeps it
//! independent of whatever runtime the test (or the demo) runs in: it can be started and
//! stopped from synchronous code, and a test's runtime blocking never stalls the upstream.
//!
//! Endpoints (every response carries `X-Upstream: <name>`):
//! - `/healthz`: `200 ok` or `503 unhealthy` ([`HttpUpstream::set_healthy`]); counted apart.
//! - `/echo`: JSON describing the request as received (method, path, version, headers), so
//!   edge tests can assert what the proxy forwarded.
//! - `/ws`: a WebSocket echo server (RFC 6455).
//! - `/page`: an HTML page whose script drives a WebSocket and two fetches through the edge,
//!   for a headless-browser test.
//! - anything else: `200 text/plain` `"<name> <METHOD> <path>\n"`.
//!
//! Query parameters on every path but `/healthz`: `status`, `cc`, `vary`, `size`,
//! `delay_ms`, `expires`, `chunked` (see `Params` below).

mod websocket;

pub use websocket::client_frame as ws_client_frame;
use websocket::ws_handshake;
#[cfg(test)]
use websocket::{accept_key, ws_session};

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// Largest body `size=N` produces; larger asks are a 400, not a silently shorter body.
const MAX_SIZE: usize = 16 << 20;
/// `delay_ms` is clamped to this so a typo cannot hang a test run for hours.
const MAX_DELAY_MS: u64 = 60_000;
/// Request bodies are read (so keep-alive stays in sync) up to this size; beyond it, 413.
const MAX_REQUEST_BODY: usize = 16 << 20;
/// `start_on` keeps retrying a busy port this long: a restarted upstream's old listener or
/// connections may still hold it for a moment.
const BIND_RETRY_FOR: Duration = Duration::from_secs(5);
/// Bound on distinct paths tracked by `requests_for`, so a fuzzing client cannot grow the
/// map without limit. Paths first seen beyond it are still served but not counted per path.
const MAX_TRACKED_PATHS: usize = 65_536;
/// `chunked=1` splits the body into this many pieces at most...
const CHUNK_PIECES: usize = 4;
/// ...and pauses between them so each piece really leaves as its own write.
const CHUNK_PAUSE: Duration = Duration::from_millis(5);

/// A running HTTP upstream on 127.0.0.1. Stopped by [`HttpUpstream::stop`] or on drop.
pub struct HttpUpstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .finish()
    }
}

impl HttpUpstream {
    /// Start on 127.0.0.1 and a free port. `name` is returned in bodies and the `X-Upstream`
    /// header.
    pub fn start(name: &str) -> io::Result<HttpUpstream> {
        Self::start_on(name, 0)
    }

    /// Start on a given port (used to restart a stopped upstream on the same address).
    /// Retries binding for up to 5 s while the port is still held; the socket uses
    /// SO_REUSEADDR so connections of a previous instance in TIME_WAIT do not block it.
    pub fn start_on(name: &str, port: u16) -> io::Result<HttpUpstream> {
        Self::start_at(name, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Start on a given address: another loopback address than 127.0.0.1 (the whole of
    /// 127.0.0.0/8 is local on Linux), port 0 for a free one.
    pub fn start_at(name: &str, at: SocketAddr) -> io::Result<HttpUpstream> {
        let shared = Arc::new(Shared::new(name));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<io::Result<SocketAddr>>(1);
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        // Thread names may not contain NUL; the name is only cosmetic there.
        let thread_name = format!("http-upstream-{}", name.replace('\0', ""));
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let rt = match rt {
                    Ok(rt) => rt,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                rt.block_on(async move {
                    let bound = bind_with_retry(at)
                        .await
                        .and_then(|l| Ok((l.local_addr()?, l)));
                    match bound {
                        Ok((addr, listener)) => {
                            let _ = ready_tx.send(Ok(addr));
                            accept_loop(listener, thread_shared, stop_rx).await;
                        }
                        Err(e) => drop(ready_tx.send(Err(e))),
                    }
                });
                // The listener is gone once block_on returns. Dropping the runtime drops every
                // connection task (HTTP and WebSocket alike), which closes their sockets: a
                // proxy's pooled keep-alive connections see the close, as with a real restart.
                drop(rt);
            })?;
        match ready_rx.recv() {
            Ok(Ok(addr)) => Ok(HttpUpstream {
                shared,
                addr,
                stop_tx: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(
                    "http upstream thread ended before binding",
                ))
            }
        }
    }

    /// The bound address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port; pass it to [`HttpUpstream::start_on`] to restart on the same address.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`, handy for configs and clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Requests served so far (all paths except /healthz), counted on arrival.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (health checks included).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Health-check requests (/healthz) served so far.
    pub fn health_requests(&self) -> u64 {
        self.shared.health_requests.load(Ordering::SeqCst)
    }

    /// Requests served for exactly this path (without query), e.g. "/cache".
    pub fn requests_for(&self, path: &str) -> u64 {
        lock(&self.shared.per_path).get(path).copied().unwrap_or(0)
    }

    /// Force every non-health response to this status (None = normal behaviour). A value
    /// that is not a valid final status (below 200 or above 999) forces 500 instead.
    /// While forced, `/ws` answers with the forced status instead of upgrading.
    pub fn force_status(&self, status: Option<u16>) {
        *lock(&self.shared.forced) = status;
    }

    /// /healthz answers 200 when true (default), 503 when false.
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Stop: close the listener and every open connection, and join the thread.
    /// Also done on drop.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// State shared between the handle and the server thread.
struct Shared {
    name: String,
    /// `X-Upstream` value; None when the name is not a valid header value.
    name_header: Option<HeaderValue>,
    requests: AtomicU64,
    health_requests: AtomicU64,
    connections: AtomicU64,
    per_path: Mutex<HashMap<String, u64>>,
    forced: Mutex<Option<u16>>,
    healthy: AtomicBool,
}

impl Shared {
    fn new(name: &str) -> Shared {
        Shared {
            name: name.to_owned(),
            name_header: HeaderValue::from_str(name).ok(),
            requests: AtomicU64::new(0),
            health_requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            per_path: Mutex::new(HashMap::new()),
            forced: Mutex::new(None),
            healthy: AtomicBool::new(true),
        }
    }

    /// Count one request for `path`; returns the new count (the "hit" number).
    fn count_path(&self, path: &str) -> u64 {
        let mut map = lock(&self.per_path);
        if map.len() >= MAX_TRACKED_PATHS && !map.contains_key(path) {
            return 1;
        }
        let n = map.entry(path.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    fn forced_status(&self) -> Option<StatusCode> {
        lock(&self.forced).map(|code| {
            StatusCode::from_u16(code)
                .ok()
                .filter(|s| !s.is_informational())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }

    /// A response with the given status, content type and body, plus `X-Upstream`.
    fn response(
        &self,
        status: StatusCode,
        content_type: &'static str,
        body: UpBody,
    ) -> Response<UpBody> {
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        if !content_type.is_empty() {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        if let Some(v) = &self.name_header {
            headers.insert(HeaderName::from_static("x-upstream"), v.clone());
        }
        resp
    }

    fn text(&self, status: StatusCode, text: impl Into<Bytes>) -> Response<UpBody> {
        self.response(status, "text/plain", UpBody::full(text.into()))
    }
}

/// Lock ignoring poisoning: the data (counters, a status) stays meaningful after a panic
/// elsewhere, and the upstream must never panic itself because of one.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn bind_with_retry(at: SocketAddr) -> io::Result<TcpListener> {
    let deadline = Instant::now() + BIND_RETRY_FOR;
    loop {
        match bind(at) {
            Ok(l) => return Ok(l),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && at.port() != 0
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn bind(at: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(at)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop_rx: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            // A send or a dropped sender both mean stop.
            _ = &mut stop_rx => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // E.g. EMFILE: keep serving rather than die; the pause avoids a busy loop.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| handle(Arc::clone(&shared), req));
    // The auto builder sniffs the HTTP/2 preface and falls back to HTTP/1.1; "with upgrades"
    // lets a 101 response hand the raw connection to the WebSocket task.
    let builder = auto::Builder::new(TokioExecutor::new());
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<UpBody>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        shared.health_requests.fetch_add(1, Ordering::SeqCst);
        shared.count_path(&path);
        return Ok(if shared.healthy.load(Ordering::SeqCst) {
            shared.text(StatusCode::OK, "ok")
        } else {
            shared.text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
        });
    }
    // Counted on arrival, so a test can see a request reached the upstream even while it
    // is still delayed (e.g. to check a proxy timeout).
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let hit = shared.count_path(&path);
    let forced = shared.forced_status();
    let mut resp = respond(&shared, req, &path, hit, forced.is_none()).await;
    if let Some(status) = forced {
        *resp.status_mut() = status;
    }
    // These statuses never carry a body; HTTP/2 would otherwise send DATA for them.
    if matches!(
        resp.status(),
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
    ) {
        *resp.body_mut() = UpBody::empty();
        resp.headers_mut().remove(header::CONTENT_TYPE);
    }
    Ok(resp)
}

async fn respond(
    shared: &Shared,
    req: Request<Incoming>,
    path: &str,
    hit: u64,
    ws_allowed: bool,
) -> Response<UpBody> {
    let params = match Params::parse(req.uri().query().unwrap_or("")) {
        Ok(p) => p,
        Err(why) => return shared.text(StatusCode::BAD_REQUEST, format!("bad query: {why}\n")),
    };
    if let Some(delay) = params.delay {
        tokio::time::sleep(delay).await;
    }
    if path == "/ws" && ws_allowed && params.status.is_none() {
        return ws_handshake(shared, req);
    }

    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return shared.text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        Err(_) => return shared.text(StatusCode::BAD_REQUEST, "could not read request body\n"),
    };

    // With cc or vary the test is about caching: the body must tell a cached copy from a
    // fresh one (the hit number) and one variant from another (the varied header's value).
    let caching = params.cache_control.is_some() || params.vary.is_some();
    let counter_text = caching.then(|| {
        let mut text = format!("{} hit {}\n", shared.name, hit);
        if let Some(name) = &params.vary {
            text.push_str(&format!(
                "{}: {}\n",
                name,
                joined_header(&parts.headers, name)
            ));
        }
        text
    });

    let (content_type, mut payload): (&'static str, Vec<u8>) = match path {
        "/echo" => ("application/json", echo_json(shared, &parts, &body, hit)),
        "/page" => (
            "text/html; charset=utf-8",
            page_html(&shared.name, hit).into_bytes(),
        ),
        _ => match &counter_text {
            Some(text) => ("text/plain", text.clone().into_bytes()),
            None => (
                "text/plain",
                format!("{} {} {}\n", shared.name, parts.method, path).into_bytes(),
            ),
        },
    };
    if let Some(size) = params.size {
        // Exactly `size` bytes of 'x'; when caching, the counter text leads so variants and
        // hits stay distinguishable.
        payload = counter_text.map(String::into_bytes).unwrap_or_default();
        payload.resize(size, b'x');
    }

    let status = params.status.unwrap_or(StatusCode::OK);
    let body = if params.chunked {
        UpBody::chunked(Bytes::from(payload))
    } else {
        UpBody::full(Bytes::from(payload))
    };
    let mut resp = shared.response(status, content_type, body);
    let headers = resp.headers_mut();
    if let Some(cc) = params.cache_control {
        headers.insert(header::CACHE_CONTROL, cc);
    }
    if let Some(vary) = params.vary {
        headers.insert(header::VARY, HeaderValue::from(vary));
    }
    if let Some(secs) = params.expires {
        let now = unix_now();
        // Both come from the same clock reading, so a cache computes exactly `secs` of
        // freshness from them.
        if let Ok(v) = HeaderValue::from_str(&http_date(now)) {
            headers.insert(header::DATE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&http_date(now.saturating_add(secs))) {
            headers.insert(header::EXPIRES, v);
        }
    }
    resp
}

/// All values of a request header, joined by ", " (lossy UTF-8); empty when absent.
fn joined_header(headers: &HeaderMap, name: &HeaderName) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The request as this upstream saw it, after whatever the proxy did to it. Headers with one
/// value map to a string, repeated headers to an array in arrival order.
fn echo_json(shared: &Shared, parts: &Parts, body: &Bytes, hit: u64) -> Vec<u8> {
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let mut values: Vec<serde_json::Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = if values.len() == 1 {
            values.swap_remove(0)
        } else {
            serde_json::Value::Array(values)
        };
        headers.insert(name.as_str().to_owned(), value);
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_else(|| parts.uri.path());
    let doc = serde_json::json!({
        "upstream": shared.name,
        "method": parts.method.as_str(),
        "path": path,
        // Version's Debug text is exactly "HTTP/1.1", "HTTP/2.0", ...
        "version": format!("{:?}", parts.version),
        // HTTP/2 carries the host in :authority, which is not a header.
        "authority": parts.uri.authority().map(|a| a.as_str()),
        "headers": headers,
        "hit": hit,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(body),
    });
    let mut out = serde_json::to_vec(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Escape text for HTML element content.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page for the headless-browser test of the edge. Everything it touches is addressed
/// relative to its own origin, so it works behind the edge on any port, over http or https.
/// The test waits for `document.title == 'done'` and reads `#result`.
const PAGE_SCRIPT: &str = r#"<script>
(function () {
  function finish(text) {
    document.getElementById('result').textContent = text;
    document.title = 'done';
  }
  // A throw inside the executor (e.g. a bad URL) rejects the promise too.
  function wsEcho(message) {
    return new Promise(function (resolve, reject) {
      var ws = new WebSocket((location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws');
      var timer = setTimeout(function () { ws.close(); reject(new Error('websocket timeout')); }, 10000);
      ws.onopen = function () { ws.send(message); };
      ws.onmessage = function (ev) { clearTimeout(timer); ws.close(1000); resolve(String(ev.data)); };
      ws.onerror = function () { clearTimeout(timer); reject(new Error('websocket error')); };
    });
  }
  function fetchStatus(path) {
    return fetch(location.origin + path, { cache: 'no-store' })
      .then(function (r) { return r.text().then(function () { return r.status; }); });
  }
  Promise.all([wsEcho('ping-through-edge'), fetchStatus('/a/echo'), fetchStatus('/b/echo')])
    .then(function (v) { finish('ws=' + v[0] + ' a=' + v[1] + ' b=' + v[2]); })
    .catch(function (e) { finish('error: ' + (e && e.message ? e.message : String(e))); });
})();
</script>"#;

fn page_html(name: &str, hit: u64) -> String {
    format!(
        "<!doctype html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>switchyard edge test</title>\n</head>\n<body>\n<h1>Switchyard edge test</h1>\n<p>served by {} (hit {})</p>\n<div id=\"result\">running</div>\n{}\n</body>\n</html>\n",
        html_escape(name),
        hit,
        PAGE_SCRIPT
    )
}

/// The query parameters honoured on every non-health path. Unknown ones are ignored;
/// malformed known ones make the response a 400 naming the problem.
#[derive(Debug, Default)]
struct Params {
    /// `status=N`: respond with N (200..=999; 1xx cannot be a final response).
    status: Option<StatusCode>,
    /// `cc=<url-encoded value>`: the Cache-Control header.
    cache_control: Option<HeaderValue>,
    /// `vary=<header name>`: the Vary header; the body shows the request's value of it.
    vary: Option<HeaderName>,
    /// `size=N`: a body of exactly N bytes (at most 16 MiB).
    size: Option<usize>,
    /// `delay_ms=N`: wait before answering (clamped to 60 s).
    delay: Option<Duration>,
    /// `expires=N`: Expires N seconds from now (negative: in the past), plus Date.
    expires: Option<i64>,
    /// `chunked=1`: stream the body in pieces without Content-Length.
    chunked: bool,
}

impl Params {
    fn parse(query: &str) -> Result<Params, String> {
        fn num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
            value
                .parse()
                .map_err(|_| format!("{key}={value} is not a number"))
        }
        let mut p = Params::default();
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (percent_decode(key), percent_decode(value));
            let bad = || format!("{key}={value}");
            match key.as_str() {
                "status" => {
                    let status = StatusCode::from_u16(num(&key, &value)?).map_err(|_| bad())?;
                    if status.is_informational() {
                        return Err(format!("{} is not a final status", bad()));
                    }
                    p.status = Some(status);
                }
                "cc" => p.cache_control = Some(HeaderValue::from_str(&value).map_err(|_| bad())?),
                "vary" => {
                    p.vary = Some(HeaderName::from_bytes(value.as_bytes()).map_err(|_| bad())?)
                }
                "size" => {
                    let n: usize = num(&key, &value)?;
                    if n > MAX_SIZE {
                        return Err(format!("{} exceeds {MAX_SIZE}", bad()));
                    }
                    p.size = Some(n);
                }
                "delay_ms" => {
                    let n: u64 = num(&key, &value)?;
                    p.delay = Some(Duration::from_millis(n.min(MAX_DELAY_MS)));
                }
                // About a century either way keeps the date arithmetic far from overflow.
                "expires" => {
                    p.expires = Some(num::<i64>(&key, &value)?.clamp(-3_200_000_000, 3_200_000_000))
                }
                "chunked" => {
                    p.chunked = match value.as_str() {
                        "1" | "true" | "" => true,
                        "0" | "false" => false,
                        _ => return Err(bad()),
                    }
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

/// Decode `%XX` escapes and `+` (form encoding) in a query component. Malformed escapes are
/// kept literally; invalid UTF-8 is replaced rather than rejected.
fn percent_decode(s: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match (b, hex(bytes.get(i)), hex(bytes.get(i + 1))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            (b'+', _, _) => out.push(b' '),
            (b, _, _) => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unix_now() -> i64 {
    // Seconds fit i64 for the next 292 billion years; a clock before 1970 reads as 1970.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// IMF-fixdate (RFC 9110 section 5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
fn http_date(unix: i64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7) as usize;
    let (year, month, day) = civil_date(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[weekday],
        day,
        MONTHS[(month - 1) as usize % 12],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Proleptic Gregorian (year, month 1..=12, day 1..=31) for a count of days since 1970-01-01.
/// Works in 400-year eras (146,097 days each) with years starting on 1 March, so the leap
/// day is the last day of a year and month lengths follow the 153-days-per-5-months pattern.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153; // 0 = March .. 11 = February
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = march_month + if march_month < 10 { 3 } else { -9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Response body: one piece with a known length, or several pieces streamed with short
/// pauses and no length (so HTTP/1.1 uses chunked transfer coding).
#[derive(Default)]
struct UpBody {
    pieces: VecDeque<Bytes>,
    streamed: bool,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl UpBody {
    fn empty() -> UpBody {
        UpBody::default()
    }

    fn full(data: Bytes) -> UpBody {
        let mut body = UpBody::empty();
        if !data.is_empty() {
            body.pieces.push_back(data);
        }
        body
    }

    fn chunked(data: Bytes) -> UpBody {
        let mut body = UpBody::empty();
        body.streamed = true;
        let piece = data.len().div_ceil(CHUNK_PIECES).max(1);
        let mut rest = data;
        while !rest.is_empty() {
            let take = piece.min(rest.len());
            body.pieces.push_back(rest.split_to(take));
        }
        body
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(sleep) = this.pause.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        match this.pieces.pop_front() {
            None => Poll::Ready(None),
            Some(piece) => {
                if this.streamed && !this.pieces.is_empty() {
                    this.pause = Some(Box::pin(tokio::time::sleep(CHUNK_PAUSE)));
                }
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.streamed && self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.streamed {
            SizeHint::default()
        } else {
            SizeHint::with_exact(self.pieces.iter().map(|p| p.len() as u64).sum())
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper::client::conn::{http1, http2};

    pub(super) type Sender1 = http1::SendRequest<Full<Bytes>>;

    pub(super) async fn h1(addr: SocketAddr) -> Sender1 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    async fn h2(addr: SocketAddr) -> http2::SendRequest<Full<Bytes>> {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    pub(super) struct Reply {
        pub(super) status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    }

    impl Reply {
        fn text(&self) -> String {
            String::from_utf8(self.body.to_vec()).unwrap()
        }
        pub(super) fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).map(|v| v.to_str().unwrap())
        }
        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    pub(super) async fn send(sender: &mut Sender1, req: Request<Full<Bytes>>) -> Reply {
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub(super) async fn get(sender: &mut Sender1, uri: &str) -> Reply {
        let req = Request::get(uri)
            .header("host", "upstream.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(sender, req).await
    }

    #[tokio::test]
    async fn default_path_counters_and_health() {
        let up = HttpUpstream::start("alpha").unwrap();
        assert_eq!(up.name(), "alpha");
        assert_eq!(up.addr().ip(), Ipv4Addr::LOCALHOST);
        let mut c = h1(up.addr()).await;

        let r = get(&mut c, "/hello?x=1").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text(), "alpha GET /hello\n");
        assert_eq!(r.header("x-upstream"), Some("alpha"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("content-length"), Some("17"));

        let req = Request::post("/submit")
            .header("host", "upstream.test")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        assert_eq!(send(&mut c, req).await.text(), "alpha POST /submit\n");

        let r = get(&mut c, "/healthz").await;
        assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
        assert_eq!(r.header("x-upstream"), Some("alpha"));

        assert_eq!(up.requests(), 2);
        assert_eq!(up.health_requests(), 1);
        assert_eq!(up.requests_for("/hello"), 1);
        assert_eq!(up.requests_for("/submit"), 1);
        assert_eq!(up.requests_for("/nothing"), 0);

        up.set_healthy(false);
        let r = get(&mut c, "/healthz").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
        );
        up.set_healthy(true);
        assert_eq!(get(&mut c, "/healthz").await.status, StatusCode::OK);
        assert_eq!(up.health_requests(), 3);
        assert_eq!(up.requests(), 2);
    }

    #[tokio::test]
    async fn force_status_and_status_param() {
        let up = HttpUpstream::start("beta").unwrap();
        let mut c = h1(up.addr()).await;

        up.force_status(Some(503));
        assert_eq!(
            get(&mut c, "/x").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&mut c, "/echo").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&mut c, "/x?status=201").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Health checks are not affected.
        assert_eq!(get(&mut c, "/healthz").await.status, StatusCode::OK);
        up.force_status(Some(42));
        assert_eq!(
            get(&mut c, "/x").await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        up.force_status(None);
        assert_eq!(get(&mut c, "/x").await.status, StatusCode::OK);

        let r = get(&mut c, "/x?status=404").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.text(), "beta GET /x\n");
        let r = get(&mut c, "/x?status=204").await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.body.is_empty());
        // The connection stays usable after a bodiless response.
        assert_eq!(
            get(&mut c, "/x?status=500").await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );

        for bad in [
            "status=abc",
            "status=100",
            "status=1000",
            "size=zz",
            "size=16777217",
            "chunked=maybe",
            "cc=%0A",
            "vary=bad%20name",
            "expires=soon",
        ] {
            let r = get(&mut c, &format!("/x?{bad}")).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(r.text().starts_with("bad query"), "{bad}");
        }
        assert_eq!(
            get(&mut c, "/x?unknown=1&&=&status").await.status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(get(&mut c, "/x?unknown=1&&=").await.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn size_chunked_delay_expires() {
        let up = HttpUpstream::start("gamma").unwrap();
        let mut c = h1(up.addr()).await;

        let r = get(&mut c, "/blob?size=100000").await;
        assert_eq!(r.body.len(), 100_000);
        assert!(r.body.iter().all(|b| *b == b'x'));
        assert_eq!(r.header("content-length"), Some("100000"));

        let r = get(&mut c, "/blob?size=0").await;
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-length"), Some("0"));

        let r = get(&mut c, "/blob?size=1000&chunked=1").await;
        assert_eq!(r.body.len(), 1000);
        assert!(r.header("content-length").is_none());
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));

        let r = get(&mut c, "/blob?chunked=1").await;
        assert_eq!(r.text(), "gamma GET /blob\n");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));

        // The maximum size is accepted.
        let r = get(&mut c, "/big?size=16777216").await;
        assert_eq!(r.body.len(), MAX_SIZE);

        let started = Instant::now();
        let r = get(&mut c, "/slow?delay_ms=200").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(200));

        let r = get(&mut c, "/exp?expires=60").await;
        let date = r.header("date").unwrap().to_owned();
        let expires = r.header("expires").unwrap().to_owned();
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
        assert!(
            expires.ends_with(" GMT") && expires.len() == 29,
            "{expires}"
        );
        assert_ne!(date, expires);
    }

    #[tokio::test]
    async fn raw_chunked_wire_format() {
        let up = HttpUpstream::start("raw").unwrap();
        let mut s = TcpStream::connect(up.addr()).await.unwrap();
        s.write_all(b"GET /c?size=20&chunked=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("content-length"),
            "{head}"
        );
        // Four pieces of five bytes, then the last chunk.
        assert_eq!(
            body,
            "5\r\nxxxxx\r\n5\r\nxxxxx\r\n5\r\nxxxxx\r\n5\r\nxxxxx\r\n0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn cache_control_and_vary_counter_bodies() {
        let up = HttpUpstream::start("delta").unwrap();
        let mut c = h1(up.addr()).await;

        let r = get(&mut c, "/cache?cc=public%2C%20max-age%3D60").await;
        assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
        assert_eq!(r.text(), "delta hit 1\n");
        let r = get(&mut c, "/cache?cc=max-age%3D60").await;
        assert_eq!(r.text(), "delta hit 2\n");

        let req = Request::get("/cache?cc=max-age%3D60&vary=Accept-Language")
            .header("host", "upstream.test")
            .header("accept-language", "fr")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = send(&mut c, req).await;
        assert_eq!(r.header("vary"), Some("accept-language"));
        assert_eq!(r.text(), "delta hit 3\naccept-language: fr\n");

        let r = get(&mut c, "/cache?vary=Accept-Language").await;
        assert_eq!(r.text(), "delta hit 4\naccept-language: \n");
        assert!(r.header("cache-control").is_none());

        // size pads the counter body to exactly N bytes.
        let r = get(&mut c, "/cache?cc=no-store&size=20").await;
        assert_eq!(r.text(), "delta hit 5\nxxxxxxxx");

        assert_eq!(up.requests_for("/cache"), 5);
        assert_eq!(up.requests(), 5);
    }

    #[tokio::test]
    async fn echo_over_http1_and_http2() {
        let up = HttpUpstream::start("echoer").unwrap();
        let mut c = h1(up.addr()).await;
        let req = Request::post("/echo?a=1&b=2")
            .header("host", "upstream.test")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let r = send(&mut c, req).await;
        assert_eq!(r.header("content-type"), Some("application/json"));
        let j = r.json();
        assert_eq!(j["upstream"], "echoer");
        assert_eq!(j["method"], "POST");
        assert_eq!(j["path"], "/echo?a=1&b=2");
        assert_eq!(j["version"], "HTTP/1.1");
        assert_eq!(j["headers"]["host"], "upstream.test");
        assert_eq!(j["headers"]["x-forwarded-for"], "10.0.0.1");
        assert_eq!(j["headers"]["x-multi"], serde_json::json!(["one", "two"]));
        assert_eq!(j["body"], "hello");
        assert_eq!(j["body_len"], 5);
        assert_eq!(j["hit"], 1);

        let mut c2 = h2(up.addr()).await;
        let uri = format!("http://{}/echo?v=2", up.addr());
        let req = Request::get(uri)
            .header("x-request-id", "abc")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c2.send_request(req).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.headers()["x-upstream"], "echoer");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["version"], "HTTP/2.0");
        assert_eq!(j["path"], "/echo?v=2");
        assert_eq!(j["headers"]["x-request-id"], "abc");
        assert_eq!(j["authority"], up.addr().to_string());
        assert_eq!(j["hit"], 2);

        // HTTP/2 also carries the other features: chunked (no content-length), size, 204.
        let uri = format!("http://{}/blob?size=70000&chunked=1", up.addr());
        let resp = c2
            .send_request(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert!(resp.headers().get("content-length").is_none());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 70_000);
        let uri = format!("http://{}/x?status=204", up.addr());
        let resp = c2
            .send_request(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        // /ws over HTTP/2 is not an upgrade: a plain 400.
        let uri = format!("http://{}/ws", up.addr());
        let resp = c2
            .send_request(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(up.requests(), 5);
    }

    #[tokio::test]
    async fn page_has_the_script_pieces() {
        let up = HttpUpstream::start("pager<&>").unwrap();
        let mut c = h1(up.addr()).await;
        let r = get(&mut c, "/page").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let html = r.text();
        for piece in [
            "<div id=\"result\">",
            "location.protocol === 'https:' ? 'wss' : 'ws'",
            "location.host + '/ws'",
            "ws.send(message)",
            "'ping-through-edge'",
            "fetchStatus('/a/echo')",
            "fetchStatus('/b/echo')",
            "'ws=' + v[0] + ' a=' + v[1] + ' b=' + v[2]",
            "'error: '",
            "document.title = 'done'",
            "pager&lt;&amp;&gt;",
        ] {
            assert!(html.contains(piece), "missing {piece:?}");
        }
    }

    // ---- WebSocket ----

    pub(super) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// Read an HTTP response head byte by byte (so no frame bytes are consumed).
    pub(super) async fn read_head(s: &mut TcpStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let b = s.read_u8().await.unwrap();
            head.push(b);
            assert!(head.len() < 8192);
        }
        String::from_utf8(head).unwrap()
    }

    pub(super) async fn ws_connect(addr: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // The RFC 6455 section 1.3 example.
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        s
    }

    pub(super) async fn assert_eof(s: &mut TcpStream) {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("connection should close")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }

    /// Send one keep-alive request on a raw connection and read exactly its response.
    async fn raw_keepalive_get(s: &mut TcpStream, path: &str) -> String {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(s).await;
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        String::from_utf8(body).unwrap()
    }

    #[tokio::test]
    async fn stop_closes_connections_and_restart_reuses_the_port() {
        let up = HttpUpstream::start("one").unwrap();
        let addr = up.addr();
        let mut kept = TcpStream::connect(addr).await.unwrap();
        assert_eq!(raw_keepalive_get(&mut kept, "/k").await, "one GET /k\n");
        let mut ws = ws_connect(addr).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();

        up.stop();
        assert_eof(&mut kept).await;
        assert_eof(&mut ws).await;
        assert_eof(&mut idle).await;
        assert!(TcpStream::connect(addr).await.is_err());

        let up = HttpUpstream::start_on("two", addr.port()).unwrap();
        assert_eq!(up.addr(), addr);
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        assert_eq!(raw_keepalive_get(&mut fresh, "/k").await, "two GET /k\n");
        assert_eq!(raw_keepalive_get(&mut fresh, "/k").await, "two GET /k\n");
        assert_eq!(up.requests(), 2);
        drop(up);
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn start_on_waits_for_a_busy_port() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(holder);
        });
        let started = Instant::now();
        let up = HttpUpstream::start_on("late", port).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(up.port(), port);
        assert_eq!(up.url(), format!("http://127.0.0.1:{port}"));
        release.join().unwrap();
    }

    /// A tiny deterministic generator, so the garbage tests need no extra dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u8 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as u8
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next()).collect()
        }
    }

    #[tokio::test]
    async fn garbage_never_panics_or_kills_the_server() {
        let mut rng = Lcg(7);
        // The frame parser, driven directly so a panic would fail this test.
        for round in 0..200 {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let session = tokio::spawn(ws_session(server));
            let mut junk = rng.bytes(1 + round * 7 % 900);
            if round % 2 == 0 {
                // Often start with a plausible masked header so deeper paths are reached.
                junk.splice(
                    0..0,
                    [0x80 | (round as u8 % 16), 0x80 | (round as u8 % 128)],
                );
            }
            let _ = client.write_all(&junk).await;
            drop(client);
            let result = tokio::time::timeout(Duration::from_secs(5), session)
                .await
                .unwrap();
            assert!(result.is_ok(), "ws_session panicked on round {round}");
        }
        for _ in 0..500 {
            let raw: String = rng
                .bytes(40)
                .into_iter()
                .map(|b| char::from(b % 96 + 32))
                .collect();
            let _ = Params::parse(&raw);
            let _ = percent_decode(&raw);
        }

        let up = HttpUpstream::start("sturdy").unwrap();
        for _ in 0..20 {
            let mut s = TcpStream::connect(up.addr()).await.unwrap();
            let _ = s.write_all(&rng.bytes(3000)).await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        }
        let mut ws = ws_connect(up.addr()).await;
        let _ = ws.write_all(&rng.bytes(5000)).await;
        let mut c = h1(up.addr()).await;
        assert_eq!(get(&mut c, "/alive").await.text(), "sturdy GET /alive\n");
    }

    #[tokio::test]
    async fn head_keeps_the_connection_in_sync() {
        let up = HttpUpstream::start("h").unwrap();
        let mut s = TcpStream::connect(up.addr()).await.unwrap();
        s.write_all(b"HEAD /x?size=50 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-length: 50"), "{head}");
        assert_eq!(raw_keepalive_get(&mut s, "/y").await, "h GET /y\n");
    }

    #[test]
    fn http_date_and_helpers() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
        assert_eq!(percent_decode("a%2Cb+c%zz%4"), "a,b c%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            html_escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
