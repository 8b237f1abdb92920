//! The HTTP edge: a reverse proxy and load balancer for the application tier, beside the
//! database front ends. It shares config, reload, metrics, admin and shutdown with them and
//! imports nothing from `pg/` or `mysql/`.
//!
//! Layout, in the order a request passes through:
//! - [`listener`]: accept (per worker, SO_REUSEPORT), connection limit, TLS with ALPN,
//!   HTTP/1.1 and HTTP/2 (hyper), header and idle timeouts, polite drain.
//! - [`fast`]: the HTTP/1.1 fast path plain connections start on: simple GET/HEAD requests
//!   proxied by our own code; anything else hands the connection to hyper.
//! - [`route`]: host and longest path prefix to a route and its upstream group.
//! - [`ratelimit`]: per-client-IP token buckets of a route (429).
//! - [`cache`]: the shared response cache with request coalescing.
//! - [`proxy`]: one request: headers ([`headers`]), server choice, retries, timeouts,
//!   upgrades, metrics and the access log.
//! - [`upstream`]: groups, their servers, balancing, passive ejection, the retry budget.
//! - [`conn`]: per-worker pools of upstream connections, driven by the request that uses them.
//! - [`health`]: active checks and DNS re-resolution, on their own thread.
//!
//! Routing state is one immutable generation ([`EdgeState`]) swapped whole by a reload;
//! a request holds the generation it started with. Server health survives a reload for
//! servers that stay.

mod access_log;
pub mod cache;
mod clock;
pub mod conn;
pub mod fast;
pub mod h2_pool;
pub mod headers;
pub mod health;
pub mod listener;
pub mod proxy;
pub mod ratelimit;
pub mod route;
pub mod upgrade;
pub mod upstream;

use crate::config::Edge as EdgeCfg;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use upstream::Group;

/// One generation of routing state.
pub struct EdgeState {
    pub cfg: EdgeCfg,
    pub routes: route::RouteTable,
    pub groups: HashMap<String, Arc<Group>>,
    /// TLS acceptors by listener name (certificates read at start and at every reload).
    pub tls: HashMap<String, tokio_rustls::TlsAcceptor>,
    pub cache: Arc<cache::Cache>,
}

/// The edge, shared by every worker.
pub struct Edge {
    state: ArcSwap<EdgeState>,
    /// Tells the health thread about each new generation.
    generations: tokio::sync::watch::Sender<Arc<EdgeState>>,
    pub metrics: Arc<Metrics>,
    pub workers: usize,
    /// Open connections per listener name, over all workers (for `max_connections`).
    conns: HashMap<String, Arc<AtomicUsize>>,
    access: AccessWriter,
}

impl Edge {
    /// Build the first generation (certificates are read here).
    pub fn new(cfg: &EdgeCfg, metrics: Arc<Metrics>, workers: usize) -> Result<Edge, String> {
        let state = Arc::new(build_state(cfg, None, &metrics, workers)?);
        let conns = cfg
            .listeners
            .iter()
            .map(|l| (l.name().to_string(), Arc::new(AtomicUsize::new(0))))
            .collect();
        Ok(Edge {
            state: ArcSwap::new(state.clone()),
            generations: tokio::sync::watch::channel(state).0,
            access: AccessWriter::new(cfg.access_log_file.as_deref())?,
            metrics,
            workers,
            conns,
        })
    }

    /// The generation in force now.
    pub fn state(&self) -> Arc<EdgeState> {
        self.state.load_full()
    }

    /// Build the next generation from `cfg` without applying it (may fail: a certificate
    /// that does not load). Servers that stay keep their health.
    pub fn prepare(&self, cfg: &EdgeCfg) -> Result<Arc<EdgeState>, String> {
        let old = self.state.load_full();
        Ok(Arc::new(build_state(
            cfg,
            Some(&old),
            &self.metrics,
            self.workers,
        )?))
    }

    /// Put a prepared generation in force (cannot fail).
    pub fn commit(&self, state: Arc<EdgeState>) {
        if let Err(e) = self.access.reopen(state.cfg.access_log_file.as_deref()) {
            tracing::warn!(error = %e, "access log file stays as it was");
        }
        self.metrics.edge.clear_servers();
        for g in state.groups.values() {
            g.refresh_gauges();
        }
        self.state.store(state.clone());
        let _ = self.generations.send(state);
    }

    /// Open-connection counter of a listener.
    pub fn conn_counter(&self, listener: &str) -> Arc<AtomicUsize> {
        self.conns.get(listener).cloned().unwrap_or_default()
    }

    /// What `/status` of the admin API shows of the edge: listeners with their open
    /// connections, routes, and each upstream group's servers with their health (up by the
    /// active checks, ejected by the passive ones, eligible for traffic) and requests in
    /// flight.
    pub fn status(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let state = self.state();
        let listeners: Vec<_> = state
            .cfg
            .listeners
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name(),
                    "listen": l.listen,
                    "tls": l.tls_cert.is_some(),
                    "connections": self.conn_counter(l.name()).load(Relaxed),
                })
            })
            .collect();
        let routes: Vec<_> = state
            .routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "upstream": r.group.name,
                    "strip_prefix": r.cfg.strip_prefix,
                    "cache": r.cfg.cache,
                    "rate_limited": r.limiter.is_some(),
                })
            })
            .collect();
        let mut names: Vec<&String> = state.groups.keys().collect();
        names.sort();
        let upstreams: Vec<_> = names
            .into_iter()
            .map(|name| {
                let g = &state.groups[name];
                let servers: Vec<_> = g
                    .servers()
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "addr": s.addr.to_string(),
                            "weight": s.weight,
                            "up": s.is_up(),
                            "ejected": g.is_ejected(s),
                            "eligible": g.eligible(s),
                            "outstanding": s.outstanding.level(),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": name,
                    "balance": g.cfg.balance,
                    "tls": g.cfg.tls,
                    "protocol": g.cfg.protocol,
                    "servers": servers,
                })
            })
            .collect();
        serde_json::json!({
            "listeners": listeners,
            "routes": routes,
            "upstreams": upstreams,
        })
    }

    /// Subscribe to new generations (the health thread).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<EdgeState>> {
        self.generations.subscribe()
    }

    /// Write one access log line (the format decides `line`'s shape).
    pub(crate) fn access_log(&self, line: &str) {
        self.access.write(line);
    }
}

/// Build a generation: groups (keeping the state of servers that stay), routes, TLS
/// acceptors, and the cache (kept when its size settings did not change).
fn build_state(
    cfg: &EdgeCfg,
    old: Option<&EdgeState>,
    metrics: &Arc<Metrics>,
    workers: usize,
) -> Result<EdgeState, String> {
    let mut tls = HashMap::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        if let (Some(cert), Some(key)) = (&l.tls_cert, &l.tls_key) {
            let client = l
                .tls_client_ca_file
                .as_deref()
                .map(|path| crate::net::tls::ClientCa {
                    path,
                    required: l.tls_client_verify == crate::config::ClientVerify::Required,
                });
            let a = crate::net::tls::build_acceptor(cert, key, &[b"h2", b"http/1.1"], client)
                .map_err(|e| format!("edge.listener[{i}].tls_cert: {e}"))?;
            tls.insert(l.name().to_string(), a);
        }
    }
    let groups: HashMap<String, Arc<Group>> = cfg
        .upstreams
        .iter()
        .map(|u| {
            let prev = old.and_then(|o| o.groups.get(&u.name)).map(|g| g.as_ref());
            (
                u.name.clone(),
                Arc::new(Group::new(u, prev, metrics, workers)),
            )
        })
        .collect();
    let routes = cfg
        .routes
        .iter()
        .map(|r| {
            let group = groups
                .get(&r.upstream)
                .cloned()
                .ok_or_else(|| format!("edge route to unknown upstream {:?}", r.upstream))?;
            // A limiter survives a reload that keeps the route and its limit, so a reload
            // does not hand every client a fresh burst.
            let limiter = r.rate_limit.map(|rl| {
                old.and_then(|o| {
                    o.routes
                        .routes()
                        .iter()
                        .find(|p| {
                            p.cfg.rate_limit == r.rate_limit && p.name == route::route_name(r)
                        })
                        .and_then(|p| p.limiter.clone())
                })
                .unwrap_or_else(|| {
                    Arc::new(ratelimit::RateLimiter::new(
                        rl.rate,
                        rl.burst.unwrap_or(rl.rate.ceil().max(1.0) as u32),
                    ))
                })
            });
            let m = metrics.edge.route(&route::route_name(r));
            Ok(Arc::new(route::Route::new(r, group, limiter, m)))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let cache = match old {
        Some(o)
            if o.cfg.cache.max_bytes == cfg.cache.max_bytes
                && o.cfg.cache.max_object_bytes == cfg.cache.max_object_bytes =>
        {
            o.cache.clone()
        }
        _ => Arc::new(cache::Cache::new(
            cfg.cache.max_bytes,
            cfg.cache.max_object_bytes,
        )),
    };
    Ok(EdgeState {
        cfg: cfg.clone(),
        routes: route::RouteTable::new(routes),
        groups,
        tls,
        cache,
    })
}

/// Where access log lines go: a file opened for appending, or standard output.
struct AccessWriter {
    file: Mutex<Option<(String, std::fs::File)>>,
}

impl AccessWriter {
    fn new(path: Option<&str>) -> Result<AccessWriter, String> {
        let w = AccessWriter {
            file: Mutex::new(None),
        };
        w.reopen(path)?;
        Ok(w)
    }

    fn reopen(&self, path: Option<&str>) -> Result<(), String> {
        let mut cur = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match path {
            None => *cur = None,
            Some(p) if cur.as_ref().is_some_and(|(open, _)| open == p) => {}
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("cannot open access log {p}: {e}"))?;
                *cur = Some((p.to_string(), f));
            }
        }
        Ok(())
    }

    fn write(&self, line: &str) {
        use std::io::Write;
        let mut cur = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let r = match cur.as_mut() {
            Some((_, f)) => f.write_all(line.as_bytes()),
            None => std::io::stdout().lock().write_all(line.as_bytes()),
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "access log write failed");
        }
    }
}
