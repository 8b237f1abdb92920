//! The MySQL front end's state: what every MySQL session of the process shares (the
//! registry of proxy-issued connection ids, for KILL) and what each worker thread keeps (its
//! pools per MySQL cluster). Built by `app.rs` from the engine's config; rebuilt by a reload.

use super::backend::{MyPool, MyTarget, PassThrough};
use crate::cluster::ClusterState;
use crate::config::BackendAddr;
use crate::config::{Config, PoolMode, Protocol};
use crate::engine::{ClusterMap, Engine};
use crate::metrics::ClusterMetrics;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// One worker's pools per MySQL cluster, by the cluster's `database` (and per client user
/// where the servers see each client's own).
pub type MyPoolMap = crate::pool::PoolSets<MyClusterPools>;

/// Where a client's statement runs now: the server and that server's connection id, so a
/// `KILL` naming the client's proxy-issued id can be sent there, and the pool the connection
/// came from (the KILL logs in as its user, who may kill its own connections).
#[derive(Clone)]
pub struct Running {
    pub addr: BackendAddr,
    pub thread: u32,
    pub pool: Arc<MyPool>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "thread {} at {}", self.thread, self.addr)
    }
}

/// One client's entry in the registry.
#[derive(Debug, Default)]
pub struct Slot {
    /// The client's connection id (what the handshake, `CONNECTION_ID()` and KILL use).
    pub id: u32,
    /// The backend connection the client holds, if any.
    pub running: Mutex<Option<Running>>,
    /// A KILL was sent for the held connection: it must not go back to a pool.
    pub killed: std::sync::atomic::AtomicBool,
    /// KILL (not KILL QUERY) of the client's id, or `POST /clients/close`: its session ends.
    /// Another client's KILL CONNECTION shuts the reading side of the client's socket, as a
    /// server does, so that a session waiting for the client's next command sees the end at
    /// once (its transaction rolled back, its connection let go) instead of running that
    /// command.
    pub end: Arc<crate::engine::ClientEnd>,
    /// The user the client logged in as (None until it has): only clients of the same user
    /// may KILL its statements, as on a server.
    pub user: Mutex<Option<Arc<str>>>,
    /// What `GET /clients` shows of it, from its login on.
    pub info: std::sync::OnceLock<crate::engine::ClientInfo>,
    /// Its place under its user's `max_connections` (moved by COM_CHANGE_USER).
    pub user_conn: Mutex<Option<crate::engine::UserConn>>,
    /// How long its server has been running its statement (`[pool] query_timeout`).
    pub clock: crate::engine::StatementClock,
}

/// The connection-id bit that tells which of two processes side by side (a handover)
/// issued an id.
pub const ID_PARITY_BIT: u32 = 0x8000_0000;

/// What every MySQL session of the process shares.
#[derive(Default)]
pub struct MyShared {
    next_id: AtomicU32,
    /// This process's parity ([`crate::engine::Lineage`]): the top bit of every connection
    /// id it issues.
    odd: std::sync::atomic::AtomicBool,
    /// Proxy-issued connection ids of the clients connected now.
    clients: Mutex<HashMap<u32, Arc<Slot>>>,
    /// The RSA key for caching_sha2_password's key exchange, with `[mysql] rsa_key_exchange`.
    pub rsa: Option<Arc<crate::mysql::auth::RsaKeys>>,
    /// Users' server logins without a password (see [`PassThrough`]).
    pub pass_throughs: PassThroughs,
    /// Users looked up in the servers (`[[cluster]] auth_query`).
    pub looked_up: super::auth_query::AuthQuery,
    /// The Unix-domain socket this process listens on for MySQL clients (`[mysql] socket`,
    /// read at start like the listener itself): what `@@socket` reads through the proxy.
    pub socket: Option<String>,
}

impl MyShared {
    /// The shared state for `cfg`: reads `[mysql] rsa_private_key`, or generates a key, when
    /// the RSA key exchange is on.
    pub fn new(cfg: &crate::config::Config) -> Result<MyShared, String> {
        let rsa = match cfg.mysql.as_ref().filter(|m| m.rsa_key_exchange) {
            None => None,
            Some(m) => Some(Arc::new(match &m.rsa_private_key {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("mysql.rsa_private_key {path}: {e}"))?;
                    crate::mysql::auth::RsaKeys::from_pem(&text)
                        .map_err(|e| format!("mysql.rsa_private_key {path}: {e}"))?
                }
                None => crate::mysql::auth::RsaKeys::generate()?,
            })),
        };
        Ok(MyShared {
            rsa,
            socket: cfg.mysql.as_ref().and_then(|m| m.socket.clone()),
            ..Default::default()
        })
    }

    /// A new client's connection id and its registry slot (removed when the guard drops).
    pub fn register(self: &Arc<Self>) -> (u32, Arc<Slot>, SlotGuard) {
        let mut map = self.clients.lock().unwrap();
        let id = loop {
            let n = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            let id = (n & !ID_PARITY_BIT) | self.parity();
            if id != 0 && !map.contains_key(&id) {
                break id;
            }
        };
        let slot = Arc::new(Slot {
            id,
            ..Slot::default()
        });
        map.insert(id, slot.clone());
        (
            id,
            slot,
            SlotGuard {
                shared: self.clone(),
                id,
            },
        )
    }

    /// Issue ids with this parity from now on.
    pub fn set_odd(&self, odd: bool) {
        self.odd.store(odd, Ordering::Relaxed);
    }

    fn parity(&self) -> u32 {
        if self.odd.load(Ordering::Relaxed) {
            ID_PARITY_BIT
        } else {
            0
        }
    }

    /// Whether this process issued connection id `id` (rather than the one it took over
    /// from).
    pub fn issued_here(&self, id: u32) -> bool {
        id & ID_PARITY_BIT == self.parity()
    }

    /// `KILL [QUERY] id` by a client logged in as `user`: as a server does for a user
    /// without the privilege to kill others' threads, only the statements of clients logged
    /// in as the same user may be stopped.
    pub fn kill_as(&self, id: u32, query_only: bool, user: &str) -> crate::engine::RelayOutcome {
        use crate::engine::RelayOutcome;
        let Some(slot) = self.lookup(id) else {
            return RelayOutcome::Unknown;
        };
        if slot.user.lock().unwrap().as_deref() != Some(user) {
            return RelayOutcome::NotOwner;
        }
        slot.kill(query_only);
        RelayOutcome::Done
    }

    /// The slot of a connected client.
    pub fn lookup(&self, id: u32) -> Option<Arc<Slot>> {
        self.clients.lock().unwrap().get(&id).cloned()
    }

    /// End the connection of client `id` (`POST /clients/close`), as a KILL CONNECTION
    /// would; false if no such client is connected.
    pub fn close(&self, id: u32) -> bool {
        match self.lookup(id) {
            Some(slot) => {
                slot.kill(false);
                true
            }
            None => false,
        }
    }

    /// `[pool] query_timeout` at `now` ([`crate::engine::Engine::clock_ms`]): a statement
    /// that ran `limit` ms is stopped as another client's `KILL QUERY` would stop it (the
    /// connection is then not pooled again); a client whose server has not answered `grace`
    /// ms after that is disconnected as `POST /clients/close` would.
    pub fn sweep_overdue(&self, now: u64, limit: u64, grace: u64) {
        use crate::engine::Overdue;
        let due: Vec<(Arc<Slot>, Overdue)> = {
            let map = self.clients.lock().unwrap();
            map.values()
                .filter_map(|slot| Some((slot.clone(), slot.clock.overdue(now, limit, grace)?)))
                .collect()
        };
        for (slot, what) in due {
            let client = slot
                .info
                .get()
                .map(|i| {
                    let (user, database) = i.login.lock().unwrap().clone();
                    format!("{user}@{database}")
                })
                .unwrap_or_default();
            match what {
                Overdue::Stop => {
                    tracing::info!(
                        id = slot.id,
                        client,
                        "a statement ran past query_timeout: killed"
                    );
                    slot.kill(true);
                }
                Overdue::Disconnect => {
                    tracing::warn!(
                        id = slot.id,
                        client,
                        "the server did not answer a statement killed for query_timeout: the \
                         client is disconnected"
                    );
                    slot.end.end();
                }
            }
        }
    }

    /// Every logged-in client as `GET /clients` lists it.
    pub fn clients(&self) -> Vec<crate::engine::ClientRow> {
        let map = self.clients.lock().unwrap();
        map.values()
            .filter_map(|slot| {
                let info = slot.info.get()?;
                let server = slot
                    .running
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map(|r| format!("{} thread {}", r.addr, r.thread));
                Some(info.row("mysql", i64::from(slot.id), server))
            })
            .collect()
    }
}

impl Slot {
    /// KILL QUERY (`query_only`) or KILL CONNECTION of this client: the statement running on
    /// the server connection it holds, if any, is stopped (and that connection never pooled
    /// again); KILL CONNECTION also ends the session (see [`crate::engine::ClientEnd`]).
    pub fn kill(&self, query_only: bool) {
        let running = {
            // `killed` is set under the lock `detach` takes to let go of the connection: the
            // session either still holds it and will close it, or has already let go and no
            // KILL is sent (one sent for a connection back in the pool would stop whoever
            // takes it next).
            let running = self.running.lock().unwrap();
            if running.is_some() {
                self.killed.store(true, Ordering::Relaxed);
            }
            running.clone()
        };
        if !query_only {
            self.end.end();
        }
        if let Some(r) = running {
            // As the user whose connection it is (the client killed may log in to the servers
            // as another user than the one who asked).
            let t = r.pool.target().clone();
            tokio::spawn(async move {
                if let Err(e) = t
                    .kill(r.thread, true, std::time::Duration::from_secs(5))
                    .await
                {
                    tracing::warn!(error = %e, "KILL QUERY on the backend failed");
                }
            });
        }
    }
}

/// Removes a client's registry slot when its session ends.
pub struct SlotGuard {
    shared: Arc<MyShared>,
    id: u32,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.shared.clients.lock().unwrap().remove(&self.id);
    }
}

/// Proxy ids of distinct prepared statement texts, per worker: a backend connection records
/// which of them it has prepared (`MyConn::prepared`: proxy id -> the server's id).
#[derive(Default)]
pub struct StmtIds {
    /// By parse context and text (the client's bytes).
    ids: Mutex<HashMap<Box<[u8]>, u64>>,
    next: std::sync::atomic::AtomicU64,
}

impl StmtIds {
    /// Most distinct texts remembered before the map starts over.
    const LIMIT: usize = 50_000;

    /// The proxy id of `sql` prepared in `context` (what else the server fixes at prepare
    /// time: schema, sql_mode, character set and collation). Ids never repeat (also after the
    /// map starts over), so a connection that prepared an old id never mistakes a new text
    /// for it.
    pub fn intern(&self, context: &str, sql: &[u8]) -> u64 {
        let mut key = Vec::with_capacity(context.len() + 1 + sql.len());
        key.extend_from_slice(context.as_bytes());
        key.push(0);
        key.extend_from_slice(sql);
        let mut map = self.ids.lock().unwrap();
        if let Some(id) = map.get(key.as_slice()) {
            return *id;
        }
        if map.len() >= Self::LIMIT {
            map.clear();
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        map.insert(key.into(), id);
        id
    }
}

/// The MySQL front end of one worker thread.
pub struct Worker {
    pub shared: Arc<Engine>,
    pub my: Arc<MyShared>,
    pub stmts: StmtIds,
    /// MySQL clusters by `database`; swapped by a reload.
    pub clusters: ArcSwap<MyPoolMap>,
    pub pool_mode: PoolMode,
    /// TLS for clients that send an SSLRequest, when `[mysql] tls_cert` is set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The `looked_up` version `clusters` was built with (see [`Worker::adopt_looked_up`]).
    looked_up_version: std::sync::atomic::AtomicU64,
}

impl Worker {
    /// Build a worker's pools from the config.
    pub fn new(shared: Arc<Engine>, my: Arc<MyShared>) -> Worker {
        let generation = shared.generation.load(Ordering::Acquire);
        let cfg = shared.config();
        let states = shared.clusters.load_full();
        let looked_up_version = my.looked_up.version();
        let clusters = build_pools(&shared, &my, &cfg, &states, None, generation);
        let pool_mode = cfg.mysql.as_ref().map(|m| m.pool_mode).unwrap_or_default();
        let tls = cfg
            .mysql
            .as_ref()
            .and_then(|m| match (&m.tls_cert, &m.tls_key) {
                (Some(c), Some(k)) => {
                    let ca = m.tls_client_ca_file.as_deref();
                    crate::net::tls::acceptor_with_client_ca(c, k, ca).ok()
                }
                _ => None,
            });
        Worker {
            shared,
            my,
            stmts: StmtIds::default(),
            clusters: ArcSwap::from_pointee(clusters),
            pool_mode,
            tls,
            looked_up_version: looked_up_version.into(),
        }
    }

    /// `user`, unknown to the config, as the servers of the cluster a client connecting with
    /// `database` reaches know it (`auth_query`): with the cluster's name. `Ok(None)` when
    /// that cluster does not look users up or its servers know no such user (with a
    /// mysql_native_password hash).
    pub async fn look_up(
        &self,
        cfg: &Config,
        database: Option<&str>,
        user: &str,
    ) -> Result<Option<(String, Arc<crate::config::User>)>, String> {
        let Some((key, _)) = super::startup::pick_cluster(cfg, database) else {
            return Ok(None);
        };
        let Some(c) = cfg
            .clusters_of(Protocol::Mysql)
            .find(|c| c.database == key && c.auth_query.is_some())
        else {
            return Ok(None);
        };
        let Some(state) = self.shared.clusters.load().get(&c.database).cloned() else {
            return Ok(None);
        };
        let metrics = &self.shared.metrics;
        let found =
            super::auth_query::lookup(&self.my.looked_up, metrics, cfg, c, &state, user).await?;
        Ok(found.map(|u| (c.name.clone(), u)))
    }

    /// Bring this worker's pools up to the users looked up so far (a user new to a cluster
    /// whose servers see each client's own user gets its pools; one whose hash changed, new
    /// ones): the pools of every other user are kept as they are.
    pub fn adopt_looked_up(&self) {
        if self.looked_up_version.load(Ordering::Acquire) < self.my.looked_up.version() {
            self.refresh();
        }
    }

    /// Rebuild this worker's pools if a reload happened since they were built, or users were
    /// looked up since (pools that did not change are kept).
    pub fn refresh(&self) {
        let shared = &self.shared;
        let _guard = shared.reload_lock.lock().unwrap();
        let generation = shared.generation.load(Ordering::Acquire);
        let old = self.clusters.load_full();
        if old.all().all(|c| c.generation == generation)
            && self.looked_up_version.load(Ordering::Acquire) >= self.my.looked_up.version()
        {
            return;
        }
        let cfg = shared.config();
        let states = shared.clusters.load_full();
        let version = self.my.looked_up.version();
        let new = build_pools(shared, &self.my, &cfg, &states, Some(&old), generation);
        self.clusters.store(Arc::new(new));
        self.looked_up_version.store(version, Ordering::Release);
        close_unused(&[old], &[self.clusters.load_full()]);
    }
}

/// One MySQL cluster's pools on one worker, aligned with `state.backends`.
pub struct MyClusterPools {
    pub state: Arc<ClusterState>,
    pub pools: Vec<Arc<MyPool>>,
    pub metrics: ClusterMetrics,
    /// The cluster's `database` (its key).
    pub database: String,
    /// The config generation this was built for.
    pub generation: u64,
}

/// Where and as whom the proxy connects to `c`'s servers (address of the primary; callers
/// replace it). No default schema: each client's is applied on the connection it gets.
pub fn backend_target(cfg: &Config, c: &crate::config::Cluster) -> MyTarget {
    MyTarget {
        addr: crate::config::parse_backend_addr(&c.primary).expect("validated"),
        user: c.user.clone(),
        password: c.password.clone(),
        database: None,
        connect_timeout: cfg.pool.connect_timeout,
        tls: crate::net::backend_tls::ServerTlsConfig::for_cluster(c),
        pass_through: None,
    }
}

/// Each user's [`PassThrough`], shared by all its pools.
pub type PassThroughs = crate::pool::PerUser<PassThrough>;

/// One worker's MySQL pools for `cfg` and `states`, reusing unchanged pools from `old`.
#[allow(clippy::too_many_arguments)]
pub fn build_pools(
    shared: &Engine,
    my: &MyShared,
    cfg: &Config,
    states: &ClusterMap,
    old: Option<&MyPoolMap>,
    generation: u64,
) -> MyPoolMap {
    let mut out = MyPoolMap::default();
    for c in cfg.clusters_of(Protocol::Mysql) {
        let size = c.pool_size.unwrap_or(cfg.pool.size);
        let state = &states[&c.database];
        let base = backend_target(cfg, c);
        let caps = shared
            .server_caps
            .for_cluster(c, state.backends.iter().map(|b| b.addr));
        let looked_up = my.looked_up.users_of(&c.name);
        out.add_cluster(cfg, c, old, &looked_up, |login, prev| {
            let pass_through = login.client.and_then(|u| {
                PassThrough::of(u).map(|p| my.pass_throughs.get_or_insert(&u.name, p))
            });
            let targets = state.backends.iter().map(|b| MyTarget {
                addr: b.addr,
                user: login.user.to_owned(),
                password: login.password.map(str::to_owned),
                pass_through: pass_through.clone(),
                ..base.clone()
            });
            let pools = crate::pool::cluster_pools(
                targets,
                prev.map(|p| p.pools.as_slice()),
                crate::pool::PoolLimits::of(cfg, size),
                &caps,
                &shared.pool_groups.for_login(
                    &c.name,
                    login.client.map_or("", |u| u.name.as_str()),
                    state.backends.iter().map(|b| b.addr),
                    size,
                ),
            );
            // The same pools for the same generation (a user looked up since): the set as it
            // was.
            if let Some(p) = prev.filter(|p| {
                p.generation == generation
                    && Arc::ptr_eq(&p.state, state)
                    && crate::pool::same_pools(&p.pools, &pools)
            }) {
                return p.clone();
            }
            Arc::new(MyClusterPools {
                metrics: shared.metrics.cluster_handles(&state.name),
                state: state.clone(),
                pools,
                database: c.database.clone(),
                generation,
            })
        });
    }
    out
}

/// Close every pool in `olds` that no map in `news` uses.
pub fn close_unused(olds: &[Arc<MyPoolMap>], news: &[Arc<MyPoolMap>]) {
    fn pools(maps: &[Arc<MyPoolMap>]) -> impl Iterator<Item = &Arc<MyPool>> {
        maps.iter().flat_map(|m| m.all()).flat_map(|c| &c.pools)
    }
    crate::pool::close_unused(pools(olds), pools(news));
}
