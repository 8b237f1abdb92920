//! The protocol-neutral state every front end shares: the config snapshot, the live topology,
//! the statement classifier, shutdown, metrics and client counts. Front ends (`pg/`, and
//! `mysql/` next) read it; `app.rs` builds it and `reload.rs` swaps its snapshots whole.
//! Nothing here knows a wire protocol.

use crate::cluster::ClusterState;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::router::classify::{Classifier, Dialect};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Live topology per cluster, by the database name clients use.
pub type ClusterMap = HashMap<String, Arc<ClusterState>>;

/// State shared by every worker thread and front end. Config, topology and classifier are
/// snapshots that a reload ([`crate::reload`]) swaps whole.
pub struct Engine {
    config: ArcSwap<Config>,
    /// The file the config came from; a reload reads it again.
    pub config_path: Option<std::path::PathBuf>,
    /// Live topology per cluster, by the database name clients use.
    pub clusters: ArcSwap<ClusterMap>,
    /// Statement classifier for PostgreSQL's dialect (shared cache).
    pub classifier: ArcSwap<Classifier>,
    /// The same for MySQL's dialect.
    pub classifier_mysql: ArcSwap<Classifier>,
    /// Bumped by every successful reload, after the workers' pools were swapped.
    pub generation: AtomicU64,
    /// Worker threads (how pool sizes are split).
    pub worker_count: usize,
    /// Serialises reloads.
    pub(crate) reload_lock: Mutex<()>,
    /// Client connections open now, over all workers and protocols.
    pub clients: AtomicUsize,
    /// Cancelled when the process starts draining.
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
    /// Listeners bound and workers started.
    pub listening: AtomicBool,
    /// Set on SIGTERM/SIGINT: readiness is false from then on.
    pub draining: AtomicBool,
    /// The limits on connections per server (`[[cluster]] max_server_connections`).
    pub server_caps: crate::pool::ServerCaps,
    /// The limits of each pool over the worker threads (`[pool] size`, `pool_size`).
    pub pool_groups: crate::pool::PoolGroups,
    /// Client connections open per user, over both protocols (`[[user]] max_connections`).
    pub user_conns: Arc<UserConns>,
    /// `[pool] query_timeout` of the config in force, in milliseconds (0: off). Sessions read
    /// it before each statement, so a reload changes it for everyone at once.
    pub query_timeout_ms: AtomicU64,
    /// What [`Engine::clock_ms`] counts from.
    started: std::time::Instant,
    /// Which of two consecutive processes this is, and the way to the one it took over from
    /// (`[general] handover_socket`).
    pub lineage: Lineage,
}

/// Draining: a client that has waited this long (ms, by the pools' coarse clock) since its
/// last exchange is closed at once; one busy more recently is told at its next message, or
/// after this long without one (see the sessions' drain).
pub const DRAIN_IDLE_MS: u64 = 1000;

/// Draining: how long a session whose client has been idle since `idle_from` (the pools'
/// coarse clock, [`crate::pool::coarse_ms`]) waits for its next message before telling it
/// unasked; `None`: idle [`DRAIN_IDLE_MS`] already. The coarse clock moves once a second
/// (and not at all once the drain began), so two readings can be up to a second further
/// apart than the times they stand for: a client is taken as idle that long only when the
/// clock says a second more. (Taken at its word, a client that had just had its answer
/// could be told unasked, and then read the goodbye as the answer to its next statement.)
pub fn drain_wait(idle_from: u64) -> Option<std::time::Duration> {
    drain_wait_at(crate::pool::coarse_ms(), idle_from)
}

/// [`drain_wait`] with the coarse clock reading `now`.
fn drain_wait_at(now: u64, idle_from: u64) -> Option<std::time::Duration> {
    const CLOCK_STEP_MS: u64 = 1000;
    let idle_for = now.saturating_sub(idle_from);
    let surely = idle_for.saturating_sub(CLOCK_STEP_MS);
    (surely < DRAIN_IDLE_MS).then(|| std::time::Duration::from_millis(DRAIN_IDLE_MS - surely))
}

/// A cancel request or KILL that names a client of the process this one took the listeners
/// over from (while that one drains), relayed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// A PostgreSQL cancel request's key.
    PgCancel { pid: i32, secret: i32 },
    /// A MySQL `KILL [QUERY]` by a client logged in as `user`.
    MyKill {
        id: u32,
        query_only: bool,
        user: String,
    },
}

/// What the other process did with a [`Relayed`] request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Carried out (a cancel: sent, if the key matched; there is no answer to a cancel).
    Done,
    /// No such client there.
    Unknown,
    /// A KILL of a client logged in as another user.
    NotOwner,
    /// The other process is gone, or did not answer.
    Gone,
}

/// Carries a [`Relayed`] request to the process this one took over from.
pub type RelayFn = dyn Fn(Relayed) -> tokio::sync::oneshot::Receiver<RelayOutcome> + Send + Sync;

/// Two processes live side by side during a handover; each issues the ids clients name in
/// cancels and KILLs (PostgreSQL backend pids, MySQL connection ids) with one bit set to its
/// parity, the new one the opposite of the old, so an id tells which process issued it.
pub struct Lineage {
    /// This process's parity (set at start, before the first client).
    pub odd: AtomicBool,
    /// The way to the previous process while it drains.
    predecessor: tokio::sync::watch::Sender<Predecessor>,
}

/// Where a process stands with the one it took the listeners over from.
#[derive(Clone)]
enum Predecessor {
    /// None (never was, or it has ended).
    None,
    /// Taking over: this process serves already and will know the way once the previous
    /// one has been told (`ready`); a relay waits for that.
    Awaited,
    /// Draining; requests for its clients go this way.
    Draining(Arc<RelayFn>),
}

impl Default for Lineage {
    fn default() -> Lineage {
        Lineage {
            odd: AtomicBool::new(false),
            predecessor: tokio::sync::watch::Sender::new(Predecessor::None),
        }
    }
}

impl Lineage {
    pub fn is_odd(&self) -> bool {
        self.odd.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Is there a previous process (draining, or being taken over from)?
    pub fn has_predecessor(&self) -> bool {
        !matches!(*self.predecessor.borrow(), Predecessor::None)
    }

    /// A previous process is being taken over from: relays wait for
    /// [`Self::predecessor_draining`].
    pub fn await_predecessor(&self) {
        self.predecessor.send_replace(Predecessor::Awaited);
    }

    /// The way to the previous process once it has been told to drain (None: there is
    /// none). Not if it has ended already ([`Self::predecessor_gone`] came first).
    pub fn predecessor_draining(&self, relay: Option<Arc<RelayFn>>) {
        self.predecessor.send_if_modified(|p| {
            let awaited = matches!(p, Predecessor::Awaited);
            if awaited {
                *p = relay.map_or(Predecessor::None, Predecessor::Draining);
            }
            awaited
        });
    }

    /// The previous process has ended.
    pub fn predecessor_gone(&self) {
        self.predecessor.send_replace(Predecessor::None);
    }

    /// Relay `r` to the previous process and wait (bounded) for what it did.
    pub async fn relay(&self, r: Relayed) -> RelayOutcome {
        let mut way = self.predecessor.subscribe();
        let go = async move {
            let settled = way.wait_for(|p| !matches!(p, Predecessor::Awaited));
            let relay = match &*settled.await.map_err(|_| ())? {
                Predecessor::Draining(relay) => relay.clone(),
                _ => return Ok(RelayOutcome::Unknown),
            };
            relay(r).await.map_err(|_| ())
        };
        match tokio::time::timeout(std::time::Duration::from_secs(6), go).await {
            Ok(Ok(outcome)) => outcome,
            _ => RelayOutcome::Gone,
        }
    }
}

impl Engine {
    pub fn new(
        config: Arc<Config>,
        config_path: Option<std::path::PathBuf>,
        clusters: ClusterMap,
        worker_count: usize,
    ) -> Engine {
        let classifier = new_classifier(&config);
        let classifier_mysql = new_classifier_for(&config, Dialect::MySql);
        let query_timeout_ms = AtomicU64::new(query_timeout_ms(&config));
        let metrics = Arc::new(Metrics::new());
        metrics.queries.set_max(config.general.query_digests);
        Engine {
            config: ArcSwap::new(config),
            config_path,
            clusters: ArcSwap::from_pointee(clusters),
            classifier: ArcSwap::from_pointee(classifier),
            classifier_mysql: ArcSwap::from_pointee(classifier_mysql),
            generation: AtomicU64::new(0),
            worker_count,
            reload_lock: Mutex::new(()),
            clients: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            metrics,
            listening: Default::default(),
            draining: Default::default(),
            server_caps: Default::default(),
            pool_groups: Default::default(),
            user_conns: Default::default(),
            query_timeout_ms,
            started: std::time::Instant::now(),
            lineage: Lineage::default(),
        }
    }

    /// Milliseconds since the engine was made, plus one (never 0): the time
    /// [`StatementClock`]s hold.
    pub fn clock_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// The clock reading to start a statement's [`StatementClock`] with, when
    /// `[pool] query_timeout` is on; `None` when it is off (nothing to time).
    pub fn statement_start(&self) -> Option<u64> {
        (self.query_timeout_ms.load(Ordering::Relaxed) != 0).then(|| self.clock_ms())
    }

    /// The config snapshot in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub(crate) fn store_config(&self, config: Arc<Config>) {
        self.query_timeout_ms
            .store(query_timeout_ms(&config), Ordering::Relaxed);
        self.metrics.queries.set_max(config.general.query_digests);
        self.config.store(config);
    }
}

fn query_timeout_ms(config: &Config) -> u64 {
    let t = config.pool.query_timeout;
    // A limit under a millisecond is one millisecond, not off.
    if t.is_zero() {
        0
    } else {
        (t.as_millis() as u64).max(1)
    }
}

/// When the statement a client's server connection is running now started, for
/// `[pool] query_timeout`: kept in the client's registry slot (its cancel key or KILL id),
/// where the sweep on the health thread ([`StatementClock::overdue`]) finds statements that
/// ran too long and stops them as the client's own cancel would. The session starts it when
/// a server begins to owe it an answer and stops it when nothing is owed; with the limit off
/// it is never touched.
#[derive(Debug, Default)]
pub struct StatementClock(AtomicU64);

/// Set in a [`StatementClock`] once the sweep stopped its statement; the rest is then the
/// time it did.
const STOPPED: u64 = 1 << 63;

/// What the sweep does about a statement ([`StatementClock::overdue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdue {
    /// Stop the statement (a cancel request, `KILL QUERY`).
    Stop,
    /// The server has not answered since it was stopped: end the client's connection.
    Disconnect,
}

impl StatementClock {
    /// A statement started at `now` ([`Engine::clock_ms`]). Whether the one before it was
    /// stopped by the sweep (the session reports it).
    pub fn start(&self, now: u64) -> bool {
        self.0.swap(now, Ordering::Relaxed) & STOPPED != 0
    }

    /// Nothing is owed to the client now. Whether the sweep stopped the statement.
    pub fn stop(&self) -> bool {
        self.0.swap(0, Ordering::Relaxed) & STOPPED != 0
    }

    /// Whether the sweep stopped the statement running now.
    pub fn was_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed) & STOPPED != 0
    }

    /// At `now`, with statements allowed `limit` ms and servers `grace` ms to answer once
    /// stopped: what to do, if anything. Each statement is stopped once and its client
    /// disconnected once; a statement that starts meanwhile is left alone (the swap fails).
    pub fn overdue(&self, now: u64, limit: u64, grace: u64) -> Option<Overdue> {
        let v = self.0.load(Ordering::Relaxed);
        if v == 0 {
            return None;
        }
        let (since, next, what) = if v & STOPPED == 0 {
            (v, now | STOPPED, Overdue::Stop)
        } else {
            // Stopped at `since`, so the grace counts from the stop; once disconnected the
            // mark is the latest time there is, so nothing is done twice.
            (v & !STOPPED, u64::MAX, Overdue::Disconnect)
        };
        let wait = if what == Overdue::Stop { limit } else { grace };
        if now < since.saturating_add(wait) {
            return None;
        }
        self.0
            .compare_exchange(v, next, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| what)
    }
}

/// The PostgreSQL statement classifier `config` asks for.
pub(crate) fn new_classifier(config: &Config) -> Classifier {
    new_classifier_for(config, Dialect::Postgres)
}

/// The statement classifier `config` asks for, in `dialect`.
pub(crate) fn new_classifier_for(config: &Config, dialect: Dialect) -> Classifier {
    use crate::config::{Protocol, RuleRoute};
    use crate::router::hints::Hint;
    let protocol = match dialect {
        Dialect::Postgres => Protocol::Postgres,
        Dialect::MySql => Protocol::Mysql,
    };
    let rules: Vec<(String, Hint)> = config
        .routing
        .rules
        .iter()
        .filter(|r| r.protocol.is_none_or(|p| p == protocol))
        .map(|r| {
            let hint = match r.route {
                RuleRoute::Primary => Hint::Primary,
                RuleRoute::Replica => Hint::Replica,
            };
            (r.pattern.clone(), hint)
        })
        .collect();
    Classifier::new(
        dialect,
        &config.routing.write_functions,
        config.routing.cache_entries,
    )
    .with_rules(&rules)
}

/// Ending a client's connection from outside its session: `POST /clients/close` (the admin
/// API, as PgBouncer's `KILL_CLIENT`) or, for MySQL, another client's `KILL CONNECTION`. The
/// session notices either way: it checks [`ClientEnd::is_ended`] before each command or
/// batch, and a session waiting for its client reads the end of the connection at once,
/// because the reading side of the client's socket (a second descriptor of it, kept here) is
/// shut. A session still there after [`END_GRACE`] (stuck writing to a client that reads
/// nothing) has both sides shut, which fails that write. Nothing on the statement path
/// touches this but the one atomic load.
#[derive(Debug, Default)]
pub struct ClientEnd {
    ended: AtomicBool,
    socket: Mutex<Option<std::os::fd::OwnedFd>>,
}

/// How long a session ended from outside has to say goodbye before its socket is shut both
/// ways.
pub const END_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl ClientEnd {
    /// Keep a second descriptor of the client's socket (`None`: the stream has none).
    pub fn set_socket(&self, fd: Option<std::os::fd::OwnedFd>) {
        *self.socket.lock().unwrap() = fd;
    }

    /// Whether the connection was ended from outside (or by the client's own KILL of itself).
    pub fn is_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Mark it ended without waking the session (it is the one ending itself).
    pub fn mark_ended(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Mark it ended and wake its session: the reading side is shut now, both sides after
    /// [`END_GRACE`] if the session has not let go of it by then. Needs a Tokio runtime.
    pub fn end(self: &Arc<Self>) {
        self.mark_ended();
        self.shut(std::net::Shutdown::Read);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(END_GRACE).await;
            if let Some(end) = weak.upgrade() {
                end.shut(std::net::Shutdown::Both);
            }
        });
    }

    fn shut(&self, how: std::net::Shutdown) {
        if let Some(fd) = self.socket.lock().unwrap().as_ref() {
            let _ = socket2::SockRef::from(fd).shutdown(how);
        }
    }
}

/// What `GET /clients` (the admin API) shows of one connected client, as PgBouncer's
/// `SHOW CLIENTS` and ProxySQL's process list do: fixed when it logs in; the server
/// connection it holds now comes from each protocol's registry (its cancel or KILL slot,
/// which the statement path keeps anyway), so listing clients costs the statement path
/// nothing.
#[derive(Debug)]
pub struct ClientInfo {
    /// The client's address (the one a PROXY protocol header named, if any).
    pub addr: String,
    /// Its IP address (`None`: a Unix socket), what `[[user]] allow_from` is checked against.
    pub ip: Option<std::net::IpAddr>,
    pub since: std::time::SystemTime,
    /// User and database (the cluster's `database`) it is logged in as; replaced on a
    /// MySQL COM_CHANGE_USER.
    pub login: Mutex<(Arc<str>, Arc<str>)>,
}

impl ClientInfo {
    pub fn new(peer: crate::net::Peer, user: Arc<str>, database: Arc<str>) -> ClientInfo {
        ClientInfo {
            addr: peer.to_string(),
            ip: peer.ip(),
            since: std::time::SystemTime::now(),
            login: Mutex::new((user, database)),
        }
    }

    /// One `/clients` row for this client; `server`: the server it holds now, if any.
    pub fn row(&self, protocol: &'static str, id: i64, server: Option<String>) -> ClientRow {
        let (user, database) = self.login.lock().unwrap().clone();
        ClientRow {
            protocol,
            id,
            addr: self.addr.clone(),
            user: user.to_string(),
            database: database.to_string(),
            connected_secs: self.since.elapsed().map(|d| d.as_secs()).unwrap_or(0),
            state: if server.is_some() { "active" } else { "idle" },
            server,
        }
    }
}

/// One client as `GET /clients` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientRow {
    /// "postgres" or "mysql".
    pub protocol: &'static str,
    /// The id the client knows itself by: PostgreSQL's BackendKeyData pid, MySQL's
    /// connection id (what `pg_cancel_backend`-style tools and `KILL` name).
    pub id: i64,
    pub addr: String,
    pub user: String,
    pub database: String,
    pub connected_secs: u64,
    /// "active": holds a server connection (a transaction or statement in progress, or a
    /// session pinned to it); "idle": holds none.
    pub state: &'static str,
    /// The server it holds a connection to (`addr`, MySQL: `addr thread N`; a multiplexed
    /// PostgreSQL statement: "multiplexed").
    pub server: Option<String>,
}

/// Client connections open per user name, over both protocols and all workers: what
/// `[[user]] max_connections` is checked against. Every logged-in client counts (a user
/// without a limit too, so that a limit a reload adds counts the connections already open).
#[derive(Debug, Default)]
pub struct UserConns(Mutex<HashMap<Arc<str>, usize>>);

impl UserConns {
    /// Count one more connection of `user` unless it has `limit` open already (then
    /// `Err(limit)`). The count drops with the returned guard.
    pub fn admit(
        self: &Arc<Self>,
        user: &Arc<str>,
        limit: Option<usize>,
    ) -> Result<UserConn, usize> {
        let mut map = self.0.lock().unwrap();
        let open = map.get(user).copied().unwrap_or(0);
        if let Some(limit) = limit.filter(|&l| open >= l) {
            return Err(limit);
        }
        map.insert(user.clone(), open + 1);
        Ok(UserConn {
            conns: self.clone(),
            user: user.clone(),
        })
    }

    /// Connections `user` has open now.
    pub fn open(&self, user: &str) -> usize {
        self.0.lock().unwrap().get(user).copied().unwrap_or(0)
    }
}

/// One counted connection of a user; uncounted when dropped.
#[derive(Debug)]
pub struct UserConn {
    conns: Arc<UserConns>,
    user: Arc<str>,
}

impl Drop for UserConn {
    fn drop(&mut self) {
        let mut map = self.conns.0.lock().unwrap();
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {

    /// The coarse clock reads a whole step apart for a client that had its answer a moment
    /// before the step: the drain still waits for its next message (before, it was told
    /// unasked at once, and read the goodbye as the answer to its next statement). One idle
    /// two steps is told at once.
    #[test]
    fn a_drain_waits_for_a_client_the_coarse_clock_makes_look_idle() {
        let now = 60_000;
        let full = Some(std::time::Duration::from_millis(DRAIN_IDLE_MS));
        assert_eq!(drain_wait_at(now, now), full);
        assert_eq!(
            drain_wait_at(now, now - 1000),
            full,
            "one step: maybe a moment ago"
        );
        assert_eq!(
            drain_wait_at(now, now - 1500),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(
            drain_wait_at(now, now - 2000),
            None,
            "two steps: at least one second"
        );
    }
    use super::*;

    #[test]
    fn a_statement_is_stopped_once_and_its_client_disconnected_once() {
        let c = StatementClock::default();
        assert_eq!(c.overdue(10_000, 100, 50), None, "nothing runs");
        assert!(!c.start(1_000));
        assert_eq!(c.overdue(1_099, 100, 50), None);
        assert_eq!(c.overdue(1_100, 100, 50), Some(Overdue::Stop));
        assert!(c.was_stopped());
        assert_eq!(c.overdue(1_120, 100, 50), None, "stopped once");
        assert_eq!(c.overdue(1_150, 100, 50), Some(Overdue::Disconnect));
        assert_eq!(c.overdue(9_999_999, 100, 50), None, "disconnected once");
        assert!(c.stop(), "the session learns its statement was stopped");
        assert!(!c.stop());
        // A statement that finished in time, and the next one, which starts afresh.
        assert!(!c.start(2_000));
        assert!(!c.start(2_090));
        assert_eq!(c.overdue(2_150, 100, 50), None);
        assert_eq!(c.overdue(2_190, 100, 50), Some(Overdue::Stop));
        assert!(
            c.start(2_200),
            "the next statement learns the last one was stopped"
        );
        assert_eq!(c.overdue(2_250, 100, 50), None);
    }

    #[test]
    fn user_connections_are_counted_and_limited() {
        let conns = Arc::new(UserConns::default());
        let (alice, bob): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
        let a1 = conns.admit(&alice, Some(2)).unwrap();
        let a2 = conns.admit(&alice, Some(2)).unwrap();
        assert_eq!(conns.admit(&alice, Some(2)).unwrap_err(), 2);
        // Another user's count is its own; no limit, no refusal.
        let b: Vec<_> = (0..5).map(|_| conns.admit(&bob, None).unwrap()).collect();
        assert_eq!((conns.open("alice"), conns.open("bob")), (2, 5));
        drop(a1);
        let a3 = conns.admit(&alice, Some(2)).unwrap();
        drop((a2, a3, b));
        assert_eq!((conns.open("alice"), conns.open("bob")), (0, 0));
        assert!(conns.0.lock().unwrap().is_empty(), "no residue");
    }
}
