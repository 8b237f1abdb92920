//! Wiring: the shared state every worker sees, the per-worker pools, and process lifecycle.

use crate::config::{parse_addr, Config, WorkerScheduling};
use crate::engine::Engine;
use crate::metrics::{BackendSnapshot, ClusterSnapshot, TopologySource};
use crate::pg::worker::PgShared;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};

pub use crate::engine::ClusterMap;
pub use crate::pg::worker::{ClusterPools, PoolMap};

pub mod handover;
mod workers;
use workers::{reconnect_cluster, run_worker, sweep_pools, sweep_statements, Handoff, Listeners};

/// The process: the protocol-neutral engine (config, topology, classifier, shutdown,
/// metrics; reachable through `Deref`), each front end's shared state, the workers, and the
/// health thread's channel.
pub struct Shared {
    pub engine: Arc<Engine>,
    pub pg: Arc<PgShared>,
    pub my: Arc<crate::mysql::worker::MyShared>,
    /// The HTTP edge, when the config has one at start.
    pub edge: Option<Arc<crate::edge::Edge>>,
    pub workers: Mutex<Vec<Weak<Worker>>>,
    /// Each generation's health checks go to the health thread through this.
    pub(crate) health_tx: tokio::sync::mpsc::UnboundedSender<crate::reload::HealthGeneration>,
    pub(crate) health_rx:
        Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<crate::reload::HealthGeneration>>>,
    /// The listeners this process hands to a new one (`[general] handover_socket`).
    offer: handover::Offer,
    /// True while a new process takes the listeners over: the workers do not accept.
    pub(crate) accept_paused: tokio::sync::watch::Sender<bool>,
}

impl std::ops::Deref for Shared {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

/// What validating the config as text cannot see, checked where the values are used: the TLS
/// certificate and key load, a non-loopback admin listener has a token, SCRAM verifiers
/// parse, the clusters' TLS files load. Run before a config is used (start, `check`, reload), so a reload stays
/// all-or-nothing.
pub fn check_config(cfg: &Config) -> Result<(), crate::config::ConfigError> {
    use crate::config::ConfigError;
    // A listener's certificate and key, and the authorities of its client certificates.
    let listener_tls = |prefix: &str,
                        cert: &Option<String>,
                        key: &Option<String>,
                        ca: &Option<String>|
     -> Result<(), ConfigError> {
        if let (Some(cert), Some(key)) = (cert, key) {
            crate::net::tls::acceptor(cert, key)
                .map_err(|e| ConfigError::invalid(format!("{prefix}.tls_cert"), e))?;
            if let Some(ca) = ca {
                let pem = std::fs::read(ca).map_err(|e| format!("cannot read {ca}: {e}"));
                pem.and_then(|pem| crate::net::tls::roots_from_pem(&pem, ca))
                    .map_err(|e| ConfigError::invalid(format!("{prefix}.tls_client_ca_file"), e))?;
            }
        }
        Ok(())
    };
    if let Some(pg) = &cfg.postgres {
        listener_tls(
            "postgres",
            &pg.tls_cert,
            &pg.tls_key,
            &pg.tls_client_ca_file,
        )?;
    }
    if let Some(my) = &cfg.mysql {
        listener_tls("mysql", &my.tls_cert, &my.tls_key, &my.tls_client_ca_file)?;
    }
    if let Some(e) = &cfg.edge {
        for (i, l) in e.listeners.iter().enumerate() {
            let prefix = format!("edge.listener[{i}]");
            listener_tls(&prefix, &l.tls_cert, &l.tls_key, &l.tls_client_ca_file)?;
        }
        for (i, u) in e.upstreams.iter().enumerate() {
            crate::net::backend_tls::ServerTlsConfig::of_upstream(u)
                .map_err(|e| ConfigError::invalid(format!("edge.upstream[{i}].tls"), e))?;
        }
    }
    if let Some(a) = &cfg.admin {
        let addr = parse_addr(&a.listen).map_err(|e| ConfigError::invalid("admin.listen", e))?;
        crate::admin::check_bind(addr, a.token.as_deref())
            .map_err(|e| ConfigError::invalid("admin.token", e))?;
    }
    for (i, c) in cfg.clusters.iter().enumerate() {
        crate::net::backend_tls::ServerTlsConfig::of_cluster(c)
            .map_err(|e| ConfigError::invalid(format!("cluster[{i}].tls"), e))?;
    }
    for (i, u) in cfg.users.iter().enumerate() {
        if let Some(v) = &u.scram_verifier {
            crate::pg::auth::ScramVerifier::parse(v)
                .map_err(|e| ConfigError::invalid(format!("user[{i}].scram_verifier"), e))?;
        }
    }
    Ok(())
}

/// Load `path` and run every check (as text, then [`check_config`]).
pub fn load_config(path: &std::path::Path) -> Result<Config, crate::config::ConfigError> {
    let cfg = Config::load(path)?;
    check_config(&cfg)?;
    Ok(cfg)
}

impl Shared {
    pub fn new(config: Arc<Config>) -> anyhow::Result<Arc<Shared>> {
        Self::with_path(config, None)
    }

    /// Like [`Shared::new`], remembering the file a reload reads again.
    pub fn with_path(
        config: Arc<Config>,
        config_path: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Arc<Shared>> {
        let clusters = crate::reload::build_states(&config, None).map_err(anyhow::Error::msg)?;
        let pg = Arc::new(PgShared::new(&config));
        let engine = Arc::new(Engine::new(
            config.clone(),
            config_path,
            clusters,
            worker_count(&config),
        ));
        let (health_tx, health_rx) = tokio::sync::mpsc::unbounded_channel();
        let edge = match &config.edge {
            Some(e) => Some(Arc::new(
                crate::edge::Edge::new(e, engine.metrics.clone(), engine.worker_count)
                    .map_err(anyhow::Error::msg)?,
            )),
            None => None,
        };
        Ok(Arc::new(Shared {
            engine,
            pg,
            edge,
            my: Arc::new(crate::mysql::worker::MyShared::new(&config).map_err(anyhow::Error::msg)?),
            workers: Default::default(),
            health_tx,
            health_rx: Mutex::new(Some(health_rx)),
            offer: Default::default(),
            accept_paused: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// A new config is in force everywhere (engine and front ends).
    pub(crate) fn store_config(&self, config: Arc<Config>) {
        self.pg.store_config(&config);
        self.engine.store_config(config);
    }

    /// Every live worker.
    pub fn live_workers(&self) -> Vec<Arc<Worker>> {
        self.workers
            .lock()
            .unwrap()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Ready to serve: listening, not draining, and every cluster has a primary that is up.
    pub fn ready(&self) -> bool {
        self.listening.load(std::sync::atomic::Ordering::Relaxed)
            && !self.draining.load(std::sync::atomic::Ordering::Relaxed)
            && !self.shutdown.is_cancelled()
            && crate::admin::all_primaries_up(&self.snapshot())
    }
}

/// Worker threads for `config` (0 = one per core).
fn worker_count(config: &Config) -> usize {
    match config.general.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
}

impl TopologySource for Shared {
    fn snapshot(&self) -> Vec<ClusterSnapshot> {
        let workers_all = self.live_workers();
        let clusters = self.clusters.load();
        let mut out = Vec::new();
        for c in &self.config().clusters {
            let Some(state) = clusters.get(&c.database) else {
                continue;
            };
            // Each protocol's pools, where built for this topology (they line up with its
            // backends): per backend, (size, open, idle, multiplexing).
            let stats = |i: usize| -> (u64, u64, u64, crate::metrics::MuxStats) {
                let mut acc = (0u64, 0u64, 0u64, crate::metrics::MuxStats::default());
                // Each worker has a pool per server and login, and a pool's size is that of
                // its group over all workers: counted once per group. A cluster whose servers
                // see each client's own user has a group per user: the size of one that has
                // no connection open is no capacity, as no other user can use it (else the
                // many idle users' sets would hide a busy one's queue).
                let per_user = c.server_login == crate::config::ServerLogin::Client;
                let mut groups: std::collections::HashMap<usize, (usize, usize)> =
                    std::collections::HashMap::new();
                let mut add = |group: usize, size: usize, (open, idle): (usize, usize)| {
                    let g = groups.entry(group).or_default();
                    g.0 = size;
                    g.1 += open;
                    acc.1 += open as u64;
                    acc.2 += idle as u64;
                };
                for w in &workers_all {
                    for p in w.pg.clusters.load().of_database(&c.database) {
                        if Arc::ptr_eq(&p.state, state) {
                            let pool = &p.pools[i];
                            acc.3 += pool.ext.stats();
                            add(pool.group_id(), pool.size(), pool.status());
                        }
                    }
                    for p in w.my.clusters.load().of_database(&c.database) {
                        if Arc::ptr_eq(&p.state, state) {
                            let pool = &p.pools[i];
                            add(pool.group_id(), pool.size(), pool.status());
                        }
                    }
                }
                acc.0 = groups
                    .values()
                    .filter(|(_, open)| !per_user || *open > 0)
                    .map(|(size, _)| *size as u64)
                    .sum();
                acc
            };
            let backends = state
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let (size, open, idle, multiplex) = stats(i);
                    BackendSnapshot {
                        addr: b.addr.to_string(),
                        role: b.role().as_str(),
                        up: b.is_up(),
                        in_read_set: b.in_read_set(),
                        lag_seconds: b.lag().as_secs_f64(),
                        lag_bytes: b.lag_bytes(),
                        in_flight: b.outstanding(),
                        transitions: b.transitions.load(std::sync::atomic::Ordering::Relaxed),
                        fenced: b.is_fenced(),
                        pool_size: size,
                        pool_open: open,
                        pool_idle: idle,
                        multiplex,
                    }
                })
                .collect();
            out.push(ClusterSnapshot {
                name: state.name.clone(),
                protocol: match c.protocol {
                    crate::config::Protocol::Postgres => "postgres",
                    crate::config::Protocol::Mysql => "mysql",
                },
                backends,
                split_brains: state
                    .split_brains
                    .load(std::sync::atomic::Ordering::Relaxed),
                users: user_pools(&workers_all, &c.database, state),
            });
        }
        out
    }
}

/// The connections each user's own pools of `database`'s cluster hold, over every worker and
/// server (users with none left out), by name.
fn user_pools(
    workers: &[Arc<Worker>],
    database: &str,
    state: &Arc<crate::cluster::ClusterState>,
) -> Vec<crate::metrics::UserPools> {
    let mut by_user: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    let pg: Vec<_> = workers.iter().map(|w| w.pg.clusters.load_full()).collect();
    let my: Vec<_> = workers.iter().map(|w| w.my.clusters.load_full()).collect();
    let mut add = |user, (open, idle): (usize, usize)| {
        let e = by_user.entry(user).or_default();
        e.0 += open as u64;
        e.1 += idle as u64;
    };
    for sets in &pg {
        for (user, p) in sets.users_of(database) {
            if Arc::ptr_eq(&p.state, state) {
                p.pools.iter().for_each(|pool| add(user, pool.status()));
            }
        }
    }
    for sets in &my {
        for (user, p) in sets.users_of(database) {
            if Arc::ptr_eq(&p.state, state) {
                p.pools.iter().for_each(|pool| add(user, pool.status()));
            }
        }
    }
    by_user
        .into_iter()
        .filter(|(_, (open, _))| *open > 0)
        .map(|(user, (open, idle))| crate::metrics::UserPools {
            user: user.to_owned(),
            open,
            idle,
        })
        .collect()
}

/// What one worker thread owns.
pub struct Worker {
    /// This worker's PostgreSQL front end (its pools, statements, TLS).
    pub pg: Arc<crate::pg::worker::Worker>,
    /// This worker's MySQL front end (its pools).
    pub my: Arc<crate::mysql::worker::Worker>,
    /// Client connections this worker serves now; accepts are balanced on it.
    pub load: AtomicUsize,
    /// Where other workers hand over connections they accepted (see [`pick_worker`]).
    handoff: tokio::sync::mpsc::UnboundedSender<Handoff>,
}

/// A running proxy: worker threads with their listeners. Dropping it does not stop it; call
/// [`Server::shutdown`].
pub struct Server {
    /// Where the PostgreSQL listener is bound (port resolved if 0 was asked).
    pub pg_addr: Option<std::net::SocketAddr>,
    /// Where the MySQL listener is bound.
    pub my_addr: Option<std::net::SocketAddr>,
    /// The Unix-domain sockets the PostgreSQL and MySQL front ends listen on, if configured
    /// (removed at shutdown).
    pub pg_socket: Option<std::path::PathBuf>,
    pub my_socket: Option<std::path::PathBuf>,
    /// Where the admin API is bound, if configured.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Where each edge listener is bound, in config order.
    pub edge_addrs: Vec<std::net::SocketAddr>,
    pub shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The handover socket this process listens on, and the identity of its file.
    handover: Option<((u64, u64), std::path::PathBuf)>,
}

impl Server {
    /// Bind listeners and start the workers.
    pub fn start(config: Config) -> anyhow::Result<Server> {
        Self::start_with(config, None)
    }

    /// Load `path` and start; reloads (SIGHUP, `POST /reload`) read `path` again.
    ///
    /// With `[general] handover_socket`, a process that hands its listeners to a new one
    /// sends itself SIGTERM, so that it drains as it would on that signal: a program that
    /// embeds a `Server` with a handover socket must handle SIGTERM (as `main` does).
    pub fn start_file(path: &std::path::Path) -> anyhow::Result<Server> {
        let config = load_config(path)?;
        Self::start_with(config, Some(path.to_path_buf()))
    }

    fn start_with(config: Config, path: Option<std::path::PathBuf>) -> anyhow::Result<Server> {
        config.validate()?;
        check_config(&config)?;
        let config = Arc::new(config);
        let shared = Shared::with_path(config.clone(), path)?;
        let workers = shared.worker_count;
        // A process already serving at the handover socket hands over its listeners.
        let handover_path = config
            .general
            .handover_socket
            .as_deref()
            .map(std::path::PathBuf::from);
        shared.offer.on.store(
            handover_path.is_some(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut inherited = match &handover_path {
            Some(p) => handover::take(p)?,
            None => None,
        };
        if let Some(i) = &inherited {
            shared
                .lineage
                .odd
                .store(!i.odd, std::sync::atomic::Ordering::Relaxed);
            // Cancels and KILLs for its clients that reach this process before `ready`
            // wait for the way to it.
            shared.lineage.await_predecessor();
        }
        shared.pg.cancel.set_odd(shared.lineage.is_odd());
        shared.my.set_odd(shared.lineage.is_odd());
        // One socket per worker for each address: inherited ones first, then bound.
        let mut tcp = |role: &str, listen: &str| -> anyhow::Result<Vec<std::net::TcpListener>> {
            let addr = parse_addr(listen).map_err(anyhow::Error::msg)?;
            let mut ls = match &mut inherited {
                Some(i) => i.take_tcp(role, addr),
                None => Vec::new(),
            };
            let bound = ls.first().map(|l| l.local_addr()).transpose()?;
            if ls.len() < workers {
                let more = crate::net::bind_reuseport(bound.unwrap_or(addr), workers - ls.len())
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({role}): {e}"))?;
                ls.extend(more);
            }
            for l in &ls {
                shared.offer.tcp(role, l)?;
            }
            Ok(ls)
        };
        // Worker i accepts on sockets i, i + workers, ...
        let deal = |ls: Vec<std::net::TcpListener>| -> Vec<Vec<std::net::TcpListener>> {
            let mut out: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
            for (j, l) in ls.into_iter().enumerate() {
                out[j % workers].push(l);
            }
            out
        };
        let pg_listeners = match &config.postgres {
            Some(pg) => tcp("postgres", &pg.listen)?,
            None => Vec::new(),
        };
        let pg_addr = pg_listeners.first().map(|l| l.local_addr()).transpose()?;
        let my_listeners = match &config.mysql {
            Some(my) => tcp("mysql", &my.listen)?,
            None => Vec::new(),
        };
        let my_addr = my_listeners.first().map(|l| l.local_addr()).transpose()?;
        // Per edge listener: its name and the sockets dealt to each worker.
        let mut edge_addrs = Vec::new();
        let mut edge_sockets: Vec<(Arc<str>, Vec<Vec<std::net::TcpListener>>)> = Vec::new();
        for l in config.edge.iter().flat_map(|e| &e.listeners) {
            let ls = tcp(&format!("edge:{}", l.name()), &l.listen)?;
            edge_addrs.push(ls[0].local_addr()?);
            edge_sockets.push((Arc::from(l.name()), deal(ls)));
        }
        let admin_listener = match &config.admin {
            Some(a) => {
                let addr = parse_addr(&a.listen).map_err(anyhow::Error::msg)?;
                crate::admin::check_bind(addr, a.token.as_deref()).map_err(anyhow::Error::msg)?;
                let taken = inherited
                    .as_mut()
                    .and_then(|i| i.take_tcp("admin", addr).pop());
                let l = match taken {
                    Some(l) => l,
                    None => std::net::TcpListener::bind(addr)
                        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin): {e}"))?,
                };
                l.set_nonblocking(true)?;
                shared.offer.tcp("admin", &l)?;
                Some((l, a.token.clone()))
            }
            None => None,
        };
        let (mut listeners, mut my_listeners) = (deal(pg_listeners), deal(my_listeners));
        // Unix-domain sockets: one listening socket, accepted on by every worker.
        let pg_socket = match (&config.postgres, pg_addr) {
            (Some(pg), Some(addr)) => pg
                .unix_socket_dir
                .as_deref()
                .map(|dir| crate::config::pg_socket_path(dir, addr.port())),
            _ => None,
        };
        let my_socket = config
            .mysql
            .as_ref()
            .and_then(|m| m.socket.as_deref())
            .map(std::path::PathBuf::from);
        let mut bind_unix = |role: &str, path: &Option<std::path::PathBuf>| -> anyhow::Result<_> {
            let Some(p) = path.as_deref() else {
                return Ok(None);
            };
            let l = match inherited.as_mut().and_then(|i| i.take_unix(role, p)) {
                Some(l) => l,
                None => crate::net::bind_unix(p)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", p.display()))?,
            };
            shared.offer.unix(role, p, &l)?;
            Ok(Some(l))
        };
        let pg_unix = bind_unix("postgres-unix", &pg_socket)?;
        let my_unix = bind_unix("mysql-unix", &my_socket)?;
        let clone_unix = |l: &Option<std::os::unix::net::UnixListener>| -> anyhow::Result<_> {
            Ok(l.as_ref().map(|l| l.try_clone()).transpose()?)
        };
        let conn_ids = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut threads = Vec::new();
        for (i, (listener, my_listener)) in listeners
            .iter_mut()
            .zip(my_listeners.iter_mut())
            .enumerate()
        {
            let listeners = Listeners {
                pg: std::mem::take(listener),
                my: std::mem::take(my_listener),
                pg_unix: clone_unix(&pg_unix)?,
                my_unix: clone_unix(&my_unix)?,
                edge: edge_sockets
                    .iter_mut()
                    .flat_map(|(name, ls)| {
                        std::mem::take(&mut ls[i])
                            .into_iter()
                            .map(|l| (name.clone(), l))
                    })
                    .collect(),
                index: i,
            };
            let shared = shared.clone();
            let conn_ids = conn_ids.clone();
            let scheduling = config.general.worker_scheduling;
            let t = std::thread::Builder::new()
                .name(format!("switchyard-w{i}"))
                .spawn(move || {
                    crate::metrics::sharded::set_thread_shard(i);
                    if let Err(e) = set_scheduling(scheduling) {
                        tracing::warn!(
                            worker = i,
                            error = %e,
                            "could not set worker_scheduling; the worker runs with the default policy"
                        );
                    }
                    let rt = thread_runtime();
                    rt.block_on(run_worker(shared, listeners, conn_ids));
                })?;
            threads.push(t);
        }
        threads.push(start_health_checks(&shared)?);
        if shared.config_path.is_some() {
            let watched = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("switchyard-watch".into())
                    .spawn(move || crate::reload::watch(&watched))?,
            );
        }
        if let Some(edge) = &shared.edge {
            let (edge, stop) = (edge.clone(), shared.shutdown.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("switchyard-edge".into())
                    .spawn(move || {
                        thread_runtime().block_on(crate::edge::health::run(edge, stop));
                    })?,
            );
        }
        let admin_addr = match admin_listener {
            Some((l, token)) => {
                let bound = l.local_addr()?;
                threads.push(start_admin(&shared, l, token)?);
                Some(bound)
            }
            None => None,
        };
        shared
            .listening
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Serving: the previous process may stop accepting now; then this one is the one a
        // next process takes over from.
        // What could still fail happens before that: the listener at the handover path is
        // bound beside it now and only moved there after.
        let beside = match &handover_path {
            Some(p) => Some(crate::net::handover::listen_beside(p).map_err(|e| {
                anyhow::anyhow!("cannot listen beside {} (handover): {e}", p.display())
            })?),
            None => None,
        };
        if let Some(i) = inherited {
            let gone = shared.clone();
            let relay = i.ready(move || gone.lineage.predecessor_gone())?;
            shared.lineage.predecessor_draining(relay);
        }
        let handover = match (handover_path, beside) {
            (Some(p), Some(beside)) => match handover::serve(shared.clone(), p.clone(), beside) {
                Ok(id) => Some((id, p)),
                Err(e) => {
                    // Serving already: no next handover from this process, but no outage.
                    tracing::error!(error = %e, "no handover socket; a new process cannot take over from this one");
                    None
                }
            },
            _ => None,
        };
        Ok(Server {
            handover,
            admin_addr,
            edge_addrs,
            pg_addr,
            my_addr,
            pg_socket,
            my_socket,
            shared,
            threads,
        })
    }

    /// Read the config file again and apply it (see [`crate::reload::reload`]).
    pub fn reload(&self) -> Result<String, String> {
        crate::reload::reload(&self.shared)
    }

    /// Stop accepting, let running transactions finish (up to `drain_timeout`), then close
    /// everything and wait for the workers to end.
    pub fn shutdown(self) {
        self.shared
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let handed_over = self
            .shared
            .offer
            .handed_over
            .load(std::sync::atomic::Ordering::Relaxed);
        // Not handed over: the listeners close with the workers' copies.
        self.shared.offer.withdraw();
        let grace = self.shared.config().general.shutdown_grace;
        if !grace.is_zero() && !handed_over {
            tracing::info!(grace = ?grace, "not ready; still accepting during shutdown_grace");
            std::thread::sleep(grace);
        }
        self.shared.shutdown.cancel();
        for t in self.threads {
            let _ = t.join();
        }
        if !handed_over {
            // The new process serves on these sockets when there is one.
            for path in self.pg_socket.iter().chain(&self.my_socket) {
                let _ = std::fs::remove_file(path);
            }
        }
        if let Some(((dev, ino), path)) = &self.handover {
            use std::os::unix::fs::MetadataExt;
            // Removed only while it is still this process's (a new process renamed its own
            // over it after a handover).
            if let Ok(m) = std::fs::metadata(path) {
                if (m.dev(), m.ino()) == (*dev, *ino) {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// The admin API on its own thread, so a slow scrape never delays a worker.
fn start_admin(
    shared: &Arc<Shared>,
    l: std::net::TcpListener,
    token: Option<String>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let shared = shared.clone();
    Ok(std::thread::Builder::new()
        .name("switchyard-admin".into())
        .spawn(move || {
            let rt = thread_runtime();
            rt.block_on(async {
                let listener = tokio::net::TcpListener::from_std(l).expect("listener registers");
                let ready_shared = shared.clone();
                let state = crate::admin::AdminState {
                    metrics: shared.metrics.clone(),
                    topology: shared.clone(),
                    ready: Arc::new(move || ready_shared.ready()),
                    reload: Arc::new({
                        let shared = shared.clone();
                        move || crate::reload::reload(&shared)
                    }),
                    token,
                    clients: Arc::new({
                        let shared = shared.clone();
                        move || {
                            let mut rows = shared.pg.cancel.clients();
                            rows.extend(shared.my.clients());
                            rows
                        }
                    }),
                    close_client: Arc::new({
                        let shared = shared.clone();
                        move |protocol: &str, id: i64| match protocol {
                            "postgres" => {
                                i32::try_from(id).is_ok_and(|pid| shared.pg.cancel.close(pid))
                            }
                            "mysql" => u32::try_from(id).is_ok_and(|id| shared.my.close(id)),
                            _ => false,
                        }
                    }),
                    reconnect: Arc::new({
                        let shared = shared.clone();
                        move |name: &str| reconnect_cluster(&shared, name)
                    }),
                    pauses: Arc::new({
                        let shared = shared.clone();
                        move || {
                            shared
                                .clusters
                                .load()
                                .values()
                                .map(|s| (s.name.clone(), s.pause.clone()))
                                .collect()
                        }
                    }),
                    edge_status: shared
                        .edge
                        .clone()
                        .map(|edge| Arc::new(move || edge.status()) as Arc<crate::admin::StatusFn>),
                };
                if let Err(e) = crate::admin::serve(
                    listener,
                    state,
                    shared.shutdown.clone(),
                    shared.accept_paused.subscribe(),
                )
                .await
                {
                    tracing::error!(error = %e, "admin API stopped");
                }
            });
        })?)
}

/// One thread runs the health checks of every cluster until shutdown. Each config
/// generation's checks get a child token; a reload cancels the previous generation's.
fn start_health_checks(shared: &Arc<Shared>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let shared = shared.clone();
    let mut rx = shared
        .health_rx
        .lock()
        .unwrap()
        .take()
        .ok_or_else(|| anyhow::anyhow!("health checks already started"))?;
    crate::reload::send_health(&shared, &shared.config(), &shared.clusters.load_full());
    Ok(std::thread::Builder::new()
        .name("switchyard-health".into())
        .spawn(move || {
            let rt = thread_runtime();
            rt.spawn(sweep_pools(shared.clone()));
            rt.spawn(sweep_statements(shared.clone()));
            rt.block_on(crate::reload::run_health(shared, &mut rx));
        })?)
}

/// Puts the calling thread under `policy` (Linux: `sched_setscheduler` on this thread;
/// SCHED_BATCH needs no privilege). Elsewhere only "normal" is possible.
fn set_scheduling(policy: WorkerScheduling) -> std::io::Result<()> {
    match policy {
        WorkerScheduling::Normal => Ok(()),
        #[cfg(target_os = "linux")]
        WorkerScheduling::Batch => {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: `param` is a valid sched_param for the call; pid 0 is this thread.
            let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        #[cfg(not(target_os = "linux"))]
        WorkerScheduling::Batch => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "SCHED_BATCH is Linux only",
        )),
    }
}

/// The runtime of one proxy thread (worker, admin, health): IO and timers only, no signal
/// or process driver (those would run on every park).
fn thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::worker::Verifiers;
    use std::time::Duration;

    fn config(password: &str) -> Config {
        Config::from_toml(&toml_of(password)).unwrap()
    }

    fn toml_of(password: &str) -> String {
        format!(
            r#"
[postgres]
listen = "127.0.0.1:0"

[[user]]
name = "app"
password = "{password}"

[[user]]
name = "other"
auth = "trust"

[[cluster]]
name = "c"
database = "c"
primary = "127.0.0.1:5432"
user = "postgres"
"#
        )
    }

    /// `worker_scheduling = "batch"` puts every worker thread under SCHED_BATCH (Linux policy
    /// 3, field 41 of /proc/<pid>/task/<tid>/stat). Only this test asks for it, so any worker
    /// thread of this process under that policy is one of this server's.
    #[cfg(target_os = "linux")]
    #[test]
    fn batch_scheduling_reaches_every_worker_thread() {
        let batch_workers = || {
            let mut n = 0;
            for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
                let policy = after_name.split_whitespace().nth(38);
                if comm.starts_with("switchyard-w") && policy == Some("3") {
                    n += 1;
                }
            }
            n
        };
        assert_eq!(batch_workers(), 0);
        let text = format!(
            "[general]\nworkers = 3\nworker_scheduling = \"batch\"\n{}",
            toml_of("secret")
        );
        let server = Server::start(Config::from_toml(&text).unwrap()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while batch_workers() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(batch_workers(), 3);
        server.shutdown();
    }

    /// What text validation cannot see is refused before the config is used, naming the key.
    #[test]
    fn runtime_checks_name_the_key_at_fault() {
        assert!(check_config(&config("secret")).is_ok());
        let mut c = config("secret");
        c.users[0].scram_verifier = Some("SCRAM-SHA-256$nonsense".into());
        let e = check_config(&c).unwrap_err().to_string();
        assert!(e.contains("user[0].scram_verifier"), "{e}");
        let c = Config::from_toml(&format!(
            "[admin]\nlisten = \"0.0.0.0:0\"\n{}",
            toml_of("secret")
        ))
        .unwrap();
        let e = check_config(&c).unwrap_err().to_string();
        assert!(e.contains("admin.token"), "{e}");
    }

    /// PBKDF2 runs when a config is loaded, not per login: a reload with the same password
    /// keeps the verifier (and its salt); a changed password gets a new one.
    #[test]
    fn scram_verifiers_are_derived_once_per_password() {
        let first = Verifiers::build(&config("secret"), None);
        let v1 = first.get("app").expect("scram user");
        assert!(first.get("other").is_none(), "trust users need none");
        let again = Verifiers::build(&config("secret"), Some(&first));
        assert!(Arc::ptr_eq(&v1, &again.get("app").unwrap()));
        let changed = Verifiers::build(&config("new-secret"), Some(&again));
        assert!(!Arc::ptr_eq(&v1, &changed.get("app").unwrap()));
    }
}
