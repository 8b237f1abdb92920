//! Upstream groups: their servers, which of them may get traffic (active checks, passive
//! ejection), how the next one is chosen (round robin, smooth weighted round robin, power of
//! two choices), the retry budget, and the pooled HTTP client each worker uses to reach them.

use crate::config::{Balance, Upstream};
use crate::metrics::{ServerMetrics, UpstreamMetrics};
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The body type sent upstream: the client's own body streamed, or one held whole (empty, or
/// a small body buffered so the request can be sent again on a retry).
pub type UpBody = http_body_util::Either<hyper::body::Incoming, http_body_util::Full<Bytes>>;

/// One server of a group (one resolved address).
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    /// The host of the address as written in the config (a DNS name or an IP): the name a
    /// TLS upstream is reached by unless `tls_server_name` says otherwise.
    pub host: Arc<str>,
    /// "ip:port", the authority requests are sent to.
    pub authority: http::uri::Authority,
    pub weight: u32,
    /// Active checks say it is up (always true without checks).
    up: AtomicBool,
    /// Consecutive failed requests (passive checks).
    fails: AtomicU32,
    /// Until when (ms since the group's epoch) it is ejected; 0: not ejected.
    ejected_until: AtomicU64,
    /// Requests in flight to it, over all workers (each adds to its own shard: the fields
    /// beside it are read for every request).
    pub outstanding: crate::metrics::sharded::ShardedU64,
    /// Consecutive active check results (the health task only).
    pub(crate) streak_ok: AtomicU32,
    pub(crate) streak_fail: AtomicU32,
    pub metrics: ServerMetrics,
}

impl Server {
    fn new((addr, weight, host): &Resolved, up: bool, metrics: ServerMetrics) -> Server {
        let (addr, weight) = (*addr, *weight);
        let authority = addr
            .to_string()
            .parse()
            .expect("a socket address is an authority");
        metrics.up.set(i64::from(up));
        Server {
            addr,
            host: host.clone(),
            authority,
            weight,
            up: AtomicBool::new(up),
            fails: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            outstanding: Default::default(),
            streak_ok: AtomicU32::new(0),
            streak_fail: AtomicU32::new(0),
            metrics,
        }
    }

    /// Active checks' verdict.
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    fn ejected(&self, now_ms: u64) -> bool {
        let until = self.ejected_until.load(Relaxed);
        until != 0 && now_ms < until
    }
}

/// Why an attempt's send failed: the server, or (`request_failed`) the request itself.
pub trait SendFailed: std::fmt::Display {
    fn request_failed(&self) -> bool {
        false
    }
}

impl SendFailed for String {}

/// How one attempt at a server ended ([`Group::attempt`]).
pub enum Attempt<T> {
    /// The answer to give the client.
    Answered(T),
    /// No usable answer; a 502/503 answer is dropped, its status kept.
    Failed(Failure),
}

/// Why an attempt gave the client no answer, and whether another server may be tried.
pub struct Failure {
    pub status: u16,
    pub msg: &'static str,
    pub retry: bool,
}

/// An upstream group.
pub struct Group {
    pub name: String,
    pub cfg: Upstream,
    servers: ArcSwap<Vec<Arc<Server>>>,
    epoch: Instant,
    next: AtomicUsize,
    /// Smooth weighted round robin's current weights, by server index.
    smooth: Mutex<Vec<i64>>,
    budget: RetryBudget,
    pub metrics: UpstreamMetrics,
    edge_metrics: Arc<crate::metrics::Metrics>,
    /// Idle connections per worker, driven by the requests that use them (`conn.rs`).
    pools: Box<[Arc<super::conn::WorkerPool>]>,
    /// HTTP/2 connections per worker (`protocol = "h2"`).
    h2: Box<[super::h2_pool::H2Pool]>,
    /// Idle connections of the HTTP/1.1 fast path (`fast.rs`) per worker.
    raw: Box<[super::fast::RawPool]>,
    pub limits: Arc<super::conn::Limits>,
    /// `host_header`, checked at load.
    pub host_header: Option<http::HeaderValue>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("name", &self.name).finish()
    }
}

/// Why no server could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServer {
    /// Every server is down or ejected.
    AllDown,
    /// Every eligible server was already tried for this request.
    Exhausted,
}

impl Group {
    /// Build a group from its config; servers whose address (and weight) the previous
    /// generation had keep their state (health, ejection, counters).
    pub fn new(
        cfg: &Upstream,
        old: Option<&Group>,
        metrics: &Arc<crate::metrics::Metrics>,
        workers: usize,
    ) -> Group {
        let group = Group {
            name: cfg.name.clone(),
            cfg: cfg.clone(),
            servers: ArcSwap::from_pointee(Vec::new()),
            epoch: old.map(|o| o.epoch).unwrap_or_else(Instant::now),
            next: AtomicUsize::new(0),
            smooth: Mutex::new(Vec::new()),
            budget: RetryBudget::new(cfg.retry_budget),
            metrics: metrics.edge.upstream(&cfg.name),
            edge_metrics: metrics.clone(),
            pools: (0..workers.max(1)).map(|_| Default::default()).collect(),
            raw: (0..workers.max(1)).map(|_| Default::default()).collect(),
            h2: (0..workers.max(1)).map(|_| Default::default()).collect(),
            host_header: cfg
                .host_header
                .as_deref()
                .and_then(|h| http::HeaderValue::from_str(h).ok()),
            limits: Arc::new(super::conn::Limits {
                connect_timeout: cfg.connect_timeout,
                idle_timeout: cfg.idle_timeout,
                max_idle: cfg.max_idle,
                tls: crate::net::backend_tls::ServerTlsConfig::for_upstream(cfg),
            }),
        };
        let resolved: Vec<Resolved> = cfg
            .servers
            .iter()
            .flat_map(|s| {
                let host = host_of(s.addr());
                let found = resolve(s.addr()).into_iter();
                found.map(move |a| (a, s.weight(), host.clone()))
            })
            .collect();
        let prev = old.map(|o| o.servers.load_full());
        group.set_servers(&resolved, prev.as_deref().map(|v| v.as_slice()));
        group
    }

    /// Replace the server list (start, reload, DNS change), keeping the state of servers
    /// that stay.
    pub fn set_servers(&self, resolved: &[Resolved], prev: Option<&[Arc<Server>]>) {
        let list: Vec<Arc<Server>> = resolved
            .iter()
            .map(|r| {
                let (addr, weight, host) = r;
                let same =
                    |s: &&Arc<Server>| s.addr == *addr && s.weight == *weight && s.host == *host;
                match prev.and_then(|p| p.iter().find(same)) {
                    Some(s) => {
                        s.metrics.up.set(i64::from(s.is_up()));
                        s.clone()
                    }
                    // A new server is up until its checks say otherwise, as HAProxy does;
                    // without checks only passive ejection takes it out.
                    None => Arc::new(Server::new(
                        r,
                        true,
                        self.edge_metrics.edge.server(&self.name, &addr.to_string()),
                    )),
                }
            })
            .collect();
        *self.smooth.lock().unwrap() = vec![0; list.len()];
        self.servers.store(Arc::new(list));
    }

    /// The servers now.
    pub fn servers(&self) -> Arc<Vec<Arc<Server>>> {
        self.servers.load_full()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether passive checks have `s` ejected now.
    pub fn is_ejected(&self, s: &Server) -> bool {
        s.ejected(self.now_ms())
    }

    /// Whether `s` may get traffic now.
    pub fn eligible(&self, s: &Server) -> bool {
        s.is_up() && !s.ejected(self.now_ms())
    }

    /// Choose a server for a request, skipping those in `tried` (addresses).
    pub fn pick(&self, tried: &[SocketAddr]) -> Result<Arc<Server>, NoServer> {
        let servers = self.servers.load();
        let now = self.now_ms();
        let ok = |s: &Server| s.is_up() && !s.ejected(now) && !tried.contains(&s.addr);
        if !servers.iter().any(|s| ok(s)) {
            return Err(if servers.iter().any(|s| s.is_up() && !s.ejected(now)) {
                NoServer::Exhausted
            } else {
                NoServer::AllDown
            });
        }
        let n = servers.len();
        let chosen = match self.cfg.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Relaxed);
                (0..n)
                    .map(|i| &servers[(start + i) % n])
                    .find(|s| ok(s))
                    .cloned()
            }
            Balance::WeightedRoundRobin => {
                // Smooth weighted round robin: every eligible server gains its weight, the
                // one with the most goes and loses the total. Interleaves 3:1 as a,a,b,a.
                let mut cur = self.smooth.lock().unwrap();
                if cur.len() != n {
                    *cur = vec![0; n];
                }
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, s) in servers.iter().enumerate() {
                    if !ok(s) {
                        continue;
                    }
                    cur[i] += i64::from(s.weight);
                    total += i64::from(s.weight);
                    if best.is_none_or(|b| cur[i] > cur[b]) {
                        best = Some(i);
                    }
                }
                best.map(|b| {
                    cur[b] -= total;
                    servers[b].clone()
                })
            }
            Balance::LeastRequest => {
                let eligible: Vec<&Arc<Server>> = servers.iter().filter(|s| ok(s)).collect();
                let a = eligible[rand::random::<usize>() % eligible.len()];
                let b = eligible[rand::random::<usize>() % eligible.len()];
                // Compare outstanding/weight without dividing: a.out * b.w vs b.out * a.w.
                let load =
                    |x: &Server, other: &Server| x.outstanding.level() * u64::from(other.weight);
                Some(if load(b, a) < load(a, b) { b } else { a }.clone())
            }
        };
        chosen.ok_or(NoServer::Exhausted)
    }

    /// `s` answered a request with `status`: counted, and a 5xx is a failure for passive
    /// health.
    pub fn answered(&self, s: &Server, status: u16) {
        s.metrics.answered(status);
        if status >= 500 {
            self.failure(s, &format_args!("status {status}"));
        } else {
            self.success(s);
        }
    }

    /// A request to `s` got no answer (connect failure, broken connection, timeout).
    pub fn unanswered(&self, s: &Server, why: &dyn std::fmt::Display) {
        s.metrics.errors.inc();
        self.failure(s, why);
    }

    /// One attempt at `server`, the same for both HTTP paths: `send` runs until `expired`
    /// ends (the route's response timeout: a sleep on hyper's path, the connection's timer
    /// on the fast path) while the request counts as outstanding on the server (for
    /// least-request balancing; uncounted however the attempt ends, a client that went away
    /// included), and the outcome is recorded for metrics and passive health. No answer in
    /// time is final (504); a failed connection (502) may be retried, and so may a 502 or 503
    /// answer unless `last` is set.
    pub async fn attempt_until<T, E: SendFailed>(
        &self,
        server: &Server,
        expired: impl std::future::Future<Output = ()>,
        last: bool,
        status_of: impl FnOnce(&T) -> u16,
        send: impl std::future::Future<Output = Result<T, E>>,
    ) -> Attempt<T> {
        let counted = server.outstanding.hold();
        let sent = tokio::select! {
            biased;
            r = send => Ok(r),
            _ = expired => Err(()),
        };
        drop(counted);
        match sent {
            Err(_) => {
                self.unanswered(server, &"no answer in time");
                Attempt::Failed(Failure {
                    status: 504,
                    msg: "upstream did not answer in time",
                    retry: false,
                })
            }
            Ok(Err(e)) if e.request_failed() => {
                // The client's request broke off or was malformed on the way: no fault of
                // the server's (or a client could get healthy servers ejected), not retried.
                tracing::debug!(upstream = %self.name, server = %server.addr, error = %e, "request failed on its way upstream");
                Attempt::Failed(Failure {
                    status: 400,
                    msg: "the request body failed",
                    retry: false,
                })
            }
            Ok(Err(e)) => {
                self.unanswered(server, &e);
                tracing::debug!(upstream = %self.name, server = %server.addr, error = %e, "upstream request failed");
                Attempt::Failed(Failure {
                    status: 502,
                    msg: "upstream connection failed",
                    retry: true,
                })
            }
            Ok(Ok(answer)) => {
                let status = status_of(&answer);
                self.answered(server, status);
                if matches!(status, 502 | 503) && !last {
                    return Attempt::Failed(Failure {
                        status,
                        msg: "upstream answered with an error",
                        retry: true,
                    });
                }
                Attempt::Answered(answer)
            }
        }
    }

    /// A request to `s` got an answer that is not a failure.
    fn success(&self, s: &Server) {
        if s.fails.load(Relaxed) != 0 {
            s.fails.store(0, Relaxed);
        }
    }

    /// A request to `s` failed (no answer, or a 5xx): after `eject_after` in a row the
    /// server is ejected for `eject_for`, logged with `why` the last one failed.
    fn failure(&self, s: &Server, why: &dyn std::fmt::Display) {
        let n = s.fails.fetch_add(1, Relaxed) + 1;
        if self.cfg.eject_after != 0 && n >= self.cfg.eject_after {
            s.fails.store(0, Relaxed);
            let until = self.now_ms() + self.cfg.eject_for.as_millis() as u64;
            s.ejected_until.store(until.max(1), Relaxed);
            s.metrics.ejections.inc();
            s.metrics.up.set(0);
            tracing::warn!(upstream = %self.name, server = %s.addr, after = n,
                cooldown = ?self.cfg.eject_for, last_failure = %why, "upstream server ejected");
        }
    }

    /// Active checks moved `s` up or down.
    pub fn set_up(&self, s: &Server, up: bool) {
        if up && !s.is_up() {
            // Back after `rise` passed checks: it was seen to recover, so a passive
            // ejection from its outage ends too.
            s.ejected_until.store(0, Relaxed);
            s.fails.store(0, Relaxed);
        }
        if s.up.swap(up, Relaxed) != up {
            tracing::info!(upstream = %self.name, server = %s.addr, up, "upstream server health changed");
        }
        s.metrics.up.set(i64::from(up && !s.ejected(self.now_ms())));
    }

    /// Refresh the up gauges (an ejection that ran out shows as up again).
    pub fn refresh_gauges(&self) {
        let now = self.now_ms();
        for s in self.servers.load().iter() {
            s.metrics.up.set(i64::from(s.is_up() && !s.ejected(now)));
        }
    }

    /// Count a first attempt; whether a retry may be spent now.
    pub fn request_started(&self) {
        self.budget.deposit();
    }

    pub fn may_retry(&self) -> bool {
        self.budget.withdraw()
    }

    /// This worker's idle connections of the group.
    pub fn pool(&self, worker: usize) -> &Arc<super::conn::WorkerPool> {
        &self.pools[worker % self.pools.len()]
    }

    /// This worker's HTTP/2 connections (`protocol = "h2"`).
    pub fn h2_pool(&self, worker: usize) -> &super::h2_pool::H2Pool {
        &self.h2[worker % self.h2.len()]
    }

    /// Requests go to the servers over HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.cfg.protocol == crate::config::UpstreamProtocol::H2
    }

    /// The server for attempt number `attempt` (from 0) of a request that already tried
    /// `tried`: `Ok(None)` when no further attempt may be made (the retry budget is spent,
    /// or every eligible server was tried); `Err` with the answer's text when no server is
    /// up and `nothing_failed` yet (counted as such). A retry is counted here.
    pub fn next_attempt(
        &self,
        attempt: u32,
        tried: &[SocketAddr],
        nothing_failed: bool,
    ) -> Result<Option<Arc<Server>>, String> {
        if attempt > 0 {
            if !self.may_retry() {
                return Ok(None);
            }
            self.metrics.retries.inc();
        }
        match self.pick(tried) {
            Ok(s) => Ok(Some(s)),
            Err(NoServer::AllDown) if nothing_failed => {
                self.metrics.no_upstream.inc();
                Err(format!("no server of upstream {:?} is up", self.name))
            }
            Err(_) => Ok(None),
        }
    }

    /// The fast path's idle connections of `worker`.
    pub fn raw_pool(&self, worker: usize) -> &super::fast::RawPool {
        &self.raw[worker % self.raw.len()]
    }
}

/// A server address found for a group: address, weight, and the host it was written with.
pub type Resolved = (SocketAddr, u32, Arc<str>);

/// The host of "host:port" (as written: a DNS name, an IP, or a bracketed IPv6 address).
pub fn host_of(text: &str) -> Arc<str> {
    text.rsplit_once(':').map_or(text, |(h, _)| h).into()
}

/// Resolve "host:port" to its addresses (an IP literal resolves to itself). A name that
/// does not resolve gives none: the group then has fewer servers until it does.
pub fn resolve(text: &str) -> Vec<SocketAddr> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return vec![a];
    }
    use std::net::ToSocketAddrs;
    match text.to_socket_addrs() {
        Ok(it) => {
            let mut v: Vec<SocketAddr> = it.collect();
            v.sort();
            v.dedup();
            v
        }
        Err(e) => {
            tracing::warn!(server = text, error = %e, "upstream name does not resolve");
            Vec::new()
        }
    }
}

/// Whether any server of the config is a DNS name (so the group is resolved again).
pub fn has_names(cfg: &Upstream) -> bool {
    cfg.servers
        .iter()
        .any(|s| s.addr().parse::<SocketAddr>().is_err())
}

/// Retries may add `ratio` of the requests of the current 10 s window, plus 3 per second: a
/// group that fails everything sees at most (1 + ratio) times its load, not (1 + retries)
/// times. Atomics only: every request deposits, from every worker.
struct RetryBudget {
    ratio: f64,
    created: Instant,
    /// The window's number (seconds since `created` / 10).
    window: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

const BUDGET_WINDOW: Duration = Duration::from_secs(10);

impl RetryBudget {
    fn new(ratio: f64) -> RetryBudget {
        RetryBudget {
            ratio,
            created: Instant::now(),
            window: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Start a new window when the clock moved past the current one (one thread wins the
    /// swap and resets the counts; a count lost in that instant does not matter).
    fn roll(&self) {
        let now = self.created.elapsed().as_secs() / BUDGET_WINDOW.as_secs();
        let cur = self.window.load(Relaxed);
        if now != cur
            && self
                .window
                .compare_exchange(cur, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.requests.store(0, Relaxed);
            self.retries.store(0, Relaxed);
        }
    }

    fn deposit(&self) {
        self.roll();
        self.requests.fetch_add(1, Relaxed);
    }

    fn withdraw(&self) -> bool {
        self.roll();
        let floor = 3 * BUDGET_WINDOW.as_secs();
        let allowed = (self.requests.load(Relaxed) as f64 * self.ratio) as u64 + floor;
        self.retries
            .fetch_update(Relaxed, Relaxed, |r| (r < allowed).then_some(r + 1))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServerSpec, Upstream};

    fn group(balance: &str, servers: &[(&str, u32)]) -> Group {
        let list = servers
            .iter()
            .map(|(a, w)| format!("{{ addr = \"{a}\", weight = {w} }}"))
            .collect::<Vec<_>>()
            .join(", ");
        let cfg: Upstream = toml::from_str(&format!(
            "name = \"g\"\nbalance = \"{balance}\"\nservers = [{list}]"
        ))
        .unwrap();
        assert!(matches!(cfg.servers[0], ServerSpec::Weighted { .. }));
        Group::new(&cfg, None, &Arc::new(crate::metrics::Metrics::new()), 1)
    }

    fn counts(g: &Group, n: usize) -> Vec<usize> {
        let servers = g.servers();
        let mut c = vec![0; servers.len()];
        for _ in 0..n {
            let s = g.pick(&[]).unwrap();
            c[servers.iter().position(|x| x.addr == s.addr).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_takes_turns_and_ignores_weights() {
        let g = group(
            "round_robin",
            &[("127.0.0.1:1", 1), ("127.0.0.1:2", 5), ("127.0.0.1:3", 1)],
        );
        assert_eq!(counts(&g, 300), vec![100, 100, 100]);
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves_by_weight() {
        let g = group(
            "weighted_round_robin",
            &[("127.0.0.1:1", 3), ("127.0.0.1:2", 1)],
        );
        let order: Vec<u16> = (0..8).map(|_| g.pick(&[]).unwrap().addr.port()).collect();
        assert_eq!(order, vec![1, 1, 2, 1, 1, 1, 2, 1]);
        assert_eq!(counts(&g, 400), vec![300, 100]);
    }

    #[test]
    fn least_request_prefers_the_idle_server() {
        let g = group("least_request", &[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)]);
        g.servers()[0].outstanding.add(50);
        let c = counts(&g, 1000);
        // Only a draw of the busy server twice picks it (1 in 4).
        assert!(c[1] > 700, "{c:?}");
    }

    #[test]
    fn ejection_after_consecutive_failures_skips_the_server() {
        let mut g = group("round_robin", &[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)]);
        g.cfg.eject_after = 3;
        let bad = g.servers()[0].clone();
        g.failure(&bad, &"test");
        g.failure(&bad, &"test");
        g.success(&bad);
        g.failure(&bad, &"test");
        g.failure(&bad, &"test");
        assert!(g.eligible(&bad), "a success in between resets the count");
        g.failure(&bad, &"test");
        assert!(!g.eligible(&bad));
        assert_eq!(counts(&g, 10), vec![0, 10]);
        g.set_up(&g.servers()[1], false);
        assert_eq!(g.pick(&[]).unwrap_err(), NoServer::AllDown);
    }

    #[test]
    fn tried_servers_are_skipped_then_exhausted() {
        let g = group("round_robin", &[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)]);
        let a = g.pick(&[]).unwrap();
        let b = g.pick(&[a.addr]).unwrap();
        assert_ne!(a.addr, b.addr);
        assert_eq!(g.pick(&[a.addr, b.addr]).unwrap_err(), NoServer::Exhausted);
    }

    #[test]
    fn retry_budget_caps_retries() {
        let b = RetryBudget::new(0.2);
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..1000).filter(|_| b.withdraw()).count();
        assert_eq!(granted, 20 + 30);
    }
}
