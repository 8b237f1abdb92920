//! The PostgreSQL front end's state: what every PostgreSQL session of the process shares
//! (cancel keys, SCRAM verifiers) and what each worker thread keeps (its pools per cluster,
//! its prepared-statement registry, TLS). Built by `app.rs` from the engine's config;
//! rebuilt by a reload.

use super::backend::{BackendTarget, PassThrough, PgPool};
use super::cancel::CancelRegistry;
use super::prepared::StmtRegistry;
use crate::cluster::ClusterState;
use crate::config::{Config, PoolMode};
use crate::engine::{ClusterMap, Engine};
use crate::metrics::ClusterMetrics;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One worker's pools per cluster, by the database name clients use (and per client user
/// where the servers see each client's own).
pub type PoolMap = crate::pool::PoolSets<ClusterPools>;

/// What every PostgreSQL session of the process shares.
pub struct PgShared {
    pub cancel: Arc<CancelRegistry>,
    /// SCRAM verifiers of the config's users, derived once per config (PBKDF2 is slow by
    /// design: not something to run per login on a worker every session shares).
    pub verifiers: ArcSwap<Verifiers>,
    /// Users' server logins without a password (see [`PassThrough`]).
    pub pass_throughs: PassThroughs,
    /// Users looked up in the servers (`[[cluster]] auth_query`).
    pub looked_up: super::auth_query::AuthQuery,
}

impl PgShared {
    pub fn new(config: &Config) -> PgShared {
        PgShared {
            cancel: Arc::new(CancelRegistry::default()),
            verifiers: ArcSwap::from_pointee(Verifiers::build(config, None)),
            pass_throughs: Default::default(),
            looked_up: Default::default(),
        }
    }

    /// A new config is in force: derive what changed.
    pub fn store_config(&self, config: &Config) {
        let verifiers = Verifiers::build(config, Some(&self.verifiers.load()));
        self.verifiers.store(Arc::new(verifiers));
    }
}

/// The PostgreSQL front end of one worker thread.
pub struct Worker {
    pub shared: Arc<Engine>,
    pub pg: Arc<PgShared>,
    /// Clusters by the database name clients use; swapped by a reload.
    pub clusters: ArcSwap<PoolMap>,
    pub statements: StmtRegistry,
    pub pool_mode: PoolMode,
    /// TLS for clients that ask for it, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The `tls-server-end-point` channel-binding data of the certificate `tls` presents,
    /// when it has one: SCRAM-SHA-256-PLUS is offered to clients over TLS.
    pub tls_end_point: Option<Arc<[u8]>>,
    /// `[postgres] require_tls`: logins over TCP without TLS are refused.
    pub require_tls: bool,
    /// The `looked_up` version `clusters` was built with (see [`Worker::adopt_looked_up`]).
    looked_up_version: std::sync::atomic::AtomicU64,
}

impl Worker {
    /// Build a worker's pools from the config.
    pub fn new(shared: Arc<Engine>, pg: Arc<PgShared>) -> Worker {
        // Generation first: if a reload lands meanwhile, `refresh` catches up.
        let generation = shared.generation.load(Ordering::Acquire);
        let cfg = shared.config();
        let states = shared.clusters.load_full();
        let looked_up_version = pg.looked_up.version();
        let clusters = build_pools(&shared, &pg, &cfg, &states, None, generation);
        let pool_mode = cfg
            .postgres
            .as_ref()
            .map(|p| p.pool_mode)
            .unwrap_or_default();
        let (tls, tls_end_point) = cfg
            .postgres
            .as_ref()
            .and_then(|p| match (&p.tls_cert, &p.tls_key) {
                (Some(c), Some(k)) => {
                    let ca = p.tls_client_ca_file.as_deref();
                    let acceptor = crate::net::tls::acceptor_with_client_ca(c, k, ca).ok()?;
                    let end_point = crate::net::channel_binding::of_pem_file(c);
                    Some((Some(acceptor), end_point.map(Arc::from)))
                }
                _ => None,
            })
            .unwrap_or_default();
        let require_tls = cfg.postgres.as_ref().is_some_and(|p| p.require_tls);
        Worker {
            shared,
            pg,
            clusters: ArcSwap::from_pointee(clusters),
            statements: StmtRegistry::default(),
            pool_mode,
            tls,
            tls_end_point,
            require_tls,
            looked_up_version: looked_up_version.into(),
        }
    }

    /// Bring this worker's pools up to the users looked up so far (a user new to a cluster
    /// whose servers see each client's own user gets its pools; one whose verifier changed,
    /// new ones): the pools of every other user are kept as they are.
    pub fn adopt_looked_up(&self) {
        if self.looked_up_version.load(Ordering::Acquire) < self.pg.looked_up.version() {
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
            && !old.is_empty()
            && self.looked_up_version.load(Ordering::Acquire) >= self.pg.looked_up.version()
        {
            return;
        }
        let cfg = shared.config();
        let states = shared.clusters.load_full();
        let version = self.pg.looked_up.version();
        let new = build_pools(shared, &self.pg, &cfg, &states, Some(&old), generation);
        self.clusters.store(Arc::new(new));
        self.looked_up_version.store(version, Ordering::Release);
        close_unused(&[old], &[self.clusters.load_full()]);
    }
}

/// SCRAM verifiers by user name, for users authenticated with scram-sha-256.
#[derive(Default)]
pub struct Verifiers(HashMap<String, (Option<String>, Arc<super::auth::ScramVerifier>)>);

impl Verifiers {
    /// Verifiers for `config`'s users; one derived from a plaintext password is kept from
    /// `old` when the password did not change.
    pub fn build(config: &Config, old: Option<&Verifiers>) -> Verifiers {
        use super::auth::ScramVerifier;
        use crate::config::AuthMethod;
        let mut map = HashMap::new();
        for u in &config.users {
            if u.effective_auth() != Some(AuthMethod::ScramSha256) {
                continue;
            }
            let entry = match (&u.scram_verifier, &u.password) {
                (Some(v), _) => match ScramVerifier::parse(v) {
                    Ok(v) => (None, Arc::new(v)),
                    Err(_) => continue,
                },
                (None, Some(p)) => match old.and_then(|o| o.0.get(&u.name)) {
                    Some((Some(was), v)) if was == p => (Some(p.clone()), v.clone()),
                    _ => (Some(p.clone()), Arc::new(ScramVerifier::from_password(p))),
                },
                (None, None) => continue,
            };
            map.insert(u.name.clone(), entry);
        }
        Verifiers(map)
    }

    pub fn get(&self, user: &str) -> Option<Arc<super::auth::ScramVerifier>> {
        self.0.get(user).map(|(_, v)| v.clone())
    }
}

/// Credentials and database for connections to `c`'s servers under `cfg` (address of the
/// primary; callers replace it).
pub fn backend_target(cfg: &Config, c: &crate::config::Cluster) -> BackendTarget {
    BackendTarget {
        addr: crate::config::parse_backend_addr(&c.primary).expect("validated"),
        user: c.user.clone(),
        password: c.password.clone(),
        database: c.backend_database().to_owned(),
        connect_timeout: cfg.pool.connect_timeout,
        application_name: "switchyard",
        tls: Arc::new(crate::net::backend_tls::ServerTlsConfig::for_cluster(c)),
        channel_binding: c.channel_binding,
        pass_through: None,
    }
}

/// One cluster's pools on one worker, aligned with `state.backends`. Built for one config
/// generation; pools that did not change are shared with the next generation's.
pub struct ClusterPools {
    pub state: Arc<ClusterState>,
    pub pools: Vec<Arc<PgPool>>,
    pub metrics: ClusterMetrics,
    /// The database name clients use.
    pub database: String,
    /// The config generation this was built for.
    pub generation: u64,
    /// What the servers report at login (ParameterStatus) to a client with given startup
    /// settings, learned from the first such client: later logins in transaction mode need no
    /// server connection (and work while the primary is down).
    pub login_params: LoginParams,
}

/// Name-value pairs: a client's startup settings, or the ParameterStatus values it gets.
pub type Settings = Arc<Vec<(String, String)>>;

/// Login ParameterStatus values by the client's startup settings; bounded.
#[derive(Default)]
pub struct LoginParams(std::sync::Mutex<HashMap<Settings, Settings>>);

impl LoginParams {
    /// Distinct startup-setting sets remembered (the map is emptied when it is full).
    const MAX: usize = 256;

    pub fn get(&self, wanted: &Settings) -> Option<Settings> {
        self.0.lock().unwrap().get(wanted).cloned()
    }

    pub fn put(&self, wanted: Settings, params: Vec<(String, String)>) {
        let mut map = self.0.lock().unwrap();
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(wanted, Arc::new(params));
    }
}

/// Each user's [`PassThrough`], shared by all its pools.
pub type PassThroughs = crate::pool::PerUser<PassThrough>;

/// One worker's pools for `cfg` and `states`, reusing unchanged pools from `old`.
#[allow(clippy::too_many_arguments)]
pub fn build_pools(
    shared: &Engine,
    pg: &PgShared,
    cfg: &Config,
    states: &ClusterMap,
    old: Option<&PoolMap>,
    generation: u64,
) -> PoolMap {
    let mut out = PoolMap::default();
    for c in cfg.clusters_of(crate::config::Protocol::Postgres) {
        let size = c.pool_size.unwrap_or(cfg.pool.size);
        let state = &states[&c.database];
        let base = backend_target(cfg, c);
        let caps = shared
            .server_caps
            .for_cluster(c, state.backends.iter().map(|b| b.addr));
        let looked_up = pg.looked_up.users_of(&c.name);
        out.add_cluster(cfg, c, old, &looked_up, |login, prev| {
            let pass_through = login.client.and_then(|u| {
                PassThrough::of(u).map(|p| pg.pass_throughs.get_or_insert(&u.name, p))
            });
            let targets = state.backends.iter().map(|b| BackendTarget {
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
            // was, with what it learned.
            if let Some(p) = prev.filter(|p| {
                p.generation == generation
                    && Arc::ptr_eq(&p.state, state)
                    && crate::pool::same_pools(&p.pools, &pools)
            }) {
                return p.clone();
            }
            Arc::new(ClusterPools {
                metrics: shared.metrics.cluster_handles(&state.name),
                state: state.clone(),
                pools,
                database: c.database.clone(),
                generation,
                login_params: Default::default(),
            })
        });
    }
    out
}

/// Close every pool in `olds` that no map in `news` uses: idle connections close now,
/// connections in use are closed when their transaction ends.
pub fn close_unused(olds: &[Arc<PoolMap>], news: &[Arc<PoolMap>]) {
    fn pools(maps: &[Arc<PoolMap>]) -> impl Iterator<Item = &Arc<PgPool>> {
        maps.iter().flat_map(|m| m.all()).flat_map(|c| &c.pools)
    }
    crate::pool::close_unused(pools(olds), pools(news));
}
