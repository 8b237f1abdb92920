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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
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
    /// Client connections open per user, over both protocols (`[[user]] max_connections`).
    pub user_conns: Arc<UserConns>,
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
            metrics: Arc::new(Metrics::new()),
            listening: Default::default(),
            draining: Default::default(),
            server_caps: Default::default(),
            user_conns: Default::default(),
        }
    }

    /// The config snapshot in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub(crate) fn store_config(&self, config: Arc<Config>) {
        self.config.store(config);
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
    use super::*;

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
