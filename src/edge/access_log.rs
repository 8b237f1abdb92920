//! The access log: one line per request (text or JSON) and the route's metrics, written
//! when its answer is known, for both HTTP/1.1 paths.

use super::proxy::ConnCtx;
use super::route::Route;
use super::EdgeState;
use crate::config::AccessLog;
use http::{HeaderValue, Method, Request, Version};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

/// A request's answer is known: the route's metrics and the access log line.
pub(super) fn account(ctx: &ConnCtx, state: &EdgeState, log: &mut LogLine, status: u16, secs: f64) {
    if let Some(r) = &log.route {
        r.metrics.answered(status, secs);
    }
    log.status = status;
    log.secs = secs;
    match state.cfg.access_log {
        AccessLog::Off => {}
        AccessLog::Text => ctx.edge.access_log(&log.text()),
        AccessLog::Json => ctx.edge.access_log(&log.json()),
    }
}

/// What the access log says about a request.
pub(super) struct LogLine {
    method: Method,
    path: String,
    version: Version,
    host: String,
    client: SocketAddr,
    listener: Arc<str>,
    pub(super) request_id: HeaderValue,
    pub(super) route: Option<Arc<Route>>,
    pub(super) upstream: Option<SocketAddr>,
    pub(super) cache: &'static str,
    status: u16,
    secs: f64,
}

impl LogLine {
    /// For an HTTP/1.1 request of the fast path (`fast.rs`), from its parsed head.
    pub(super) fn fast(
        method: &Method,
        target: &str,
        host: &str,
        ctx: &ConnCtx,
        on: bool,
    ) -> LogLine {
        let text = |t: &str| if on { t.to_owned() } else { String::new() };
        LogLine::of(method, Version::HTTP_11, text(target), text(host), ctx)
    }

    /// `on`: the access log is written (otherwise the texts are not copied).
    pub(super) fn new(req: &Request<Incoming>, ctx: &ConnCtx, on: bool) -> LogLine {
        let path = match req.uri().path_and_query() {
            Some(p) if on => p.as_str().to_string(),
            _ => String::new(),
        };
        let host = if on {
            super::route::request_host_of(req.headers(), req.uri()).into_owned()
        } else {
            String::new()
        };
        LogLine::of(req.method(), req.version(), path, host, ctx)
    }

    fn of(method: &Method, version: Version, path: String, host: String, ctx: &ConnCtx) -> LogLine {
        LogLine {
            method: method.clone(),
            path,
            version,
            host,
            client: ctx.peer,
            listener: ctx.listener.clone(),
            request_id: HeaderValue::from_static("-"),
            route: None,
            upstream: None,
            cache: "-",
            status: 0,
            secs: 0.0,
        }
    }

    fn version(&self) -> &'static str {
        match self.version {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_09 => "HTTP/0.9",
            _ => "HTTP/1.1",
        }
    }

    fn text(&self) -> String {
        format!(
            "{} {} {} \"{} {} {}\" {} {:.3}ms upstream={} route={} cache={} listener={} request_id={}\n",
            super::clock::rfc3339_now(),
            self.client.ip(),
            self.host,
            self.method,
            self.path.escape_debug(),
            self.version(),
            self.status,
            self.secs * 1000.0,
            self.upstream.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            self.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-"),
            self.cache,
            self.listener,
            self.request_id.to_str().unwrap_or("-"),
        )
    }

    fn json(&self) -> String {
        let mut s = serde_json::json!({
            "time": super::clock::rfc3339_now(),
            "client": self.client.ip().to_string(),
            "host": self.host,
            "method": self.method.as_str(),
            "path": self.path,
            "protocol": self.version(),
            "status": self.status,
            "duration_ms": (self.secs * 1e6).round() / 1e3,
            "upstream": self.upstream.map(|a| a.to_string()),
            "route": self.route.as_ref().map(|r| r.name.clone()),
            "cache": self.cache,
            "listener": &*self.listener,
            "request_id": self.request_id.to_str().unwrap_or("-"),
        })
        .to_string();
        s.push('\n');
        s
    }
}
