//! Wiring: the shared state every worker sees, the per-worker pools, and process lifecycle.

use crate::cluster::ClusterState;
use crate::config::{parse_addr, Config, PoolMode};
use crate::metrics::{BackendSnapshot, ClusterMetrics, ClusterSnapshot, Metrics, TopologySource};
use crate::pg::backend::BackendTarget;
use crate::pg::cancel::CancelRegistry;
use crate::pg::prepared::StmtRegistry;
use crate::pool::BackendPool;
use crate::router::classify::{Classifier, Dialect};
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// State shared by every worker thread.
pub struct Shared {
    pub config: Arc<Config>,
    /// Live topology per cluster, by the database name clients use.
    pub clusters: HashMap<String, Arc<ClusterState>>,
    /// Statement classifier (shared cache).
    pub classifier: Classifier,
    pub cancel: Arc<CancelRegistry>,
    /// Client connections open now, over all workers.
    pub clients: AtomicUsize,
    /// Cancelled when the process starts draining.
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
    /// Every worker's pools per cluster (by database name), for metrics and /status.
    pub pools: std::sync::Mutex<HashMap<String, Vec<Arc<ClusterPools>>>>,
    /// Listeners bound and workers started.
    pub listening: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new(config: Arc<Config>) -> anyhow::Result<Arc<Shared>> {
        let mut clusters = HashMap::new();
        for c in &config.clusters {
            let state = ClusterState::new(c).map_err(anyhow::Error::msg)?;
            clusters.insert(c.database.clone(), Arc::new(state));
        }
        let classifier = Classifier::new(
            Dialect::Postgres,
            &config.routing.write_functions,
            config.routing.cache_entries,
        );
        Ok(Arc::new(Shared {
            config,
            clusters,
            classifier,
            cancel: Arc::new(CancelRegistry::default()),
            clients: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            metrics: Arc::new(Metrics::new()),
            pools: Default::default(),
            listening: Default::default(),
        }))
    }

    /// Ready to serve: listening, not draining, and every cluster has a primary that is up.
    pub fn ready(&self) -> bool {
        self.listening.load(std::sync::atomic::Ordering::Relaxed)
            && !self.shutdown.is_cancelled()
            && crate::admin::all_primaries_up(&self.snapshot())
    }

    /// Credentials and database for connections to `cluster`'s servers (address of the
    /// primary; callers replace it).
    pub fn backend_target(&self, c: &crate::config::Cluster) -> BackendTarget {
        BackendTarget {
            addr: parse_addr(&c.primary).expect("validated"),
            user: c.user.clone(),
            password: c.password.clone(),
            database: c.backend_database().to_owned(),
            connect_timeout: self.config.pool.connect_timeout,
            application_name: "switchyard",
        }
    }
}

/// One cluster's pools on one worker, aligned with `state.backends`.
pub struct ClusterPools {
    pub state: Arc<ClusterState>,
    pub pools: Vec<BackendPool>,
    pub metrics: ClusterMetrics,
}

impl TopologySource for Shared {
    fn snapshot(&self) -> Vec<ClusterSnapshot> {
        let pools = self.pools.lock().unwrap();
        let mut out = Vec::new();
        for c in &self.config.clusters {
            let state = &self.clusters[&c.database];
            let workers = pools.get(&c.database).map(Vec::as_slice).unwrap_or(&[]);
            let backends = state
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let (mut size, mut open, mut idle) = (0, 0, 0);
                    for w in workers {
                        let (o, id) = w.pools[i].status();
                        size += w.pools[i].size() as u64;
                        open += o as u64;
                        idle += id as u64;
                    }
                    BackendSnapshot {
                        addr: b.addr.to_string(),
                        role: b.role().as_str(),
                        up: b.is_up(),
                        in_read_set: b.in_read_set(),
                        lag_seconds: b.lag().as_secs_f64(),
                        lag_bytes: b.lag_bytes(),
                        in_flight: b.outstanding() as u64,
                        transitions: b.transitions.load(std::sync::atomic::Ordering::Relaxed),
                        pool_size: size,
                        pool_open: open,
                        pool_idle: idle,
                    }
                })
                .collect();
            out.push(ClusterSnapshot {
                name: state.name.clone(),
                backends,
            });
        }
        out
    }
}

/// What one worker thread owns.
pub struct Worker {
    pub shared: Arc<Shared>,
    /// Clusters by the database name clients use.
    pub clusters: HashMap<String, Arc<ClusterPools>>,
    pub statements: StmtRegistry,
    pub pool_mode: PoolMode,
    /// TLS for clients that ask for it, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Worker {
    /// Build a worker's pools from the config; `workers` splits each pool size.
    pub fn new(shared: Arc<Shared>, workers: usize) -> Worker {
        let cfg = shared.config.clone();
        let mut clusters = HashMap::new();
        for c in &cfg.clusters {
            let total = c.pool_size.unwrap_or(cfg.pool.size);
            let size = total.div_ceil(workers.max(1)).max(1);
            let state = shared.clusters[&c.database].clone();
            let base = shared.backend_target(c);
            let pools = state
                .backends
                .iter()
                .map(|b| {
                    let target = BackendTarget {
                        addr: b.addr,
                        ..base.clone()
                    };
                    BackendPool::new(target, size, cfg.pool.checkout_timeout)
                })
                .collect();
            let metrics = shared.metrics.cluster_handles(&state.name);
            let cp = Arc::new(ClusterPools {
                state,
                pools,
                metrics,
            });
            shared
                .pools
                .lock()
                .unwrap()
                .entry(c.database.clone())
                .or_default()
                .push(cp.clone());
            clusters.insert(c.database.clone(), cp);
        }
        let pool_mode = cfg
            .postgres
            .as_ref()
            .map(|p| p.pool_mode)
            .unwrap_or_default();
        let tls = cfg
            .postgres
            .as_ref()
            .and_then(|p| match (&p.tls_cert, &p.tls_key) {
                (Some(c), Some(k)) => crate::net::tls::acceptor(c, k).ok(),
                _ => None,
            });
        Worker {
            shared,
            clusters,
            statements: StmtRegistry::default(),
            pool_mode,
            tls,
        }
    }
}

/// A running proxy: worker threads with their listeners. Dropping it does not stop it; call
/// [`Server::shutdown`].
pub struct Server {
    /// Where the PostgreSQL listener is bound (port resolved if 0 was asked).
    pub pg_addr: Option<std::net::SocketAddr>,
    /// Where the admin API is bound, if configured.
    pub admin_addr: Option<std::net::SocketAddr>,
    pub shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Bind listeners and start the workers.
    pub fn start(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let config = Arc::new(config);
        let workers = match config.general.workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let shared = Shared::new(config.clone())?;
        let (pg_addr, mut listeners): (_, Vec<Option<std::net::TcpListener>>) =
            match &config.postgres {
                Some(pg) => {
                    let addr = parse_addr(&pg.listen).map_err(anyhow::Error::msg)?;
                    let ls = crate::net::bind_reuseport(addr, workers)
                        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                    (
                        Some(ls[0].local_addr()?),
                        ls.into_iter().map(Some).collect(),
                    )
                }
                None => (None, (0..workers).map(|_| None).collect()),
            };
        let conn_ids = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut threads = Vec::new();
        for (i, listener) in listeners.iter_mut().enumerate() {
            let listener = listener.take();
            let shared = shared.clone();
            let conn_ids = conn_ids.clone();
            let t = std::thread::Builder::new()
                .name(format!("switchyard-w{i}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("tokio runtime");
                    rt.block_on(run_worker(shared, workers, listener, conn_ids));
                })?;
            threads.push(t);
        }
        threads.push(start_health_checks(&shared)?);
        let admin_addr = match &config.admin {
            Some(a) => {
                let addr = parse_addr(&a.listen).map_err(anyhow::Error::msg)?;
                crate::admin::check_bind(addr, a.token.as_deref()).map_err(anyhow::Error::msg)?;
                let l = std::net::TcpListener::bind(addr)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin): {e}"))?;
                l.set_nonblocking(true)?;
                let bound = l.local_addr()?;
                threads.push(start_admin(&shared, l, a.token.clone())?);
                Some(bound)
            }
            None => None,
        };
        shared
            .listening
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Server {
            admin_addr,
            pg_addr,
            shared,
            threads,
        })
    }

    /// Stop accepting, let running transactions finish (up to `drain_timeout`), then close
    /// everything and wait for the workers to end.
    pub fn shutdown(self) {
        self.shared.shutdown.cancel();
        for t in self.threads {
            let _ = t.join();
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
    Ok(std::thread::Builder::new().name("switchyard-admin".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async {
            let listener = tokio::net::TcpListener::from_std(l).expect("listener registers");
            let ready_shared = shared.clone();
            let state = crate::admin::AdminState {
                metrics: shared.metrics.clone(),
                topology: shared.clone(),
                ready: Arc::new(move || ready_shared.ready()),
                reload: Arc::new(|| Err("live reload is not implemented yet: the running config was not changed".to_string())),
                token,
            };
            if let Err(e) = crate::admin::serve(listener, state, shared.shutdown.clone()).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
    })?)
}

/// One thread runs the health checks of every cluster until shutdown.
fn start_health_checks(shared: &Arc<Shared>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let shared = shared.clone();
    Ok(std::thread::Builder::new()
        .name("switchyard-health".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async {
                let mut tasks = Vec::new();
                for c in &shared.config.clusters {
                    let state = shared.clusters[&c.database].clone();
                    let target = shared.backend_target(c);
                    let health = shared.config.health.clone();
                    tasks.push(tokio::spawn(crate::cluster::health::run(
                        state,
                        target,
                        health,
                        shared.shutdown.clone(),
                    )));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })?)
}

async fn run_worker(
    shared: Arc<Shared>,
    workers: usize,
    listener: Option<std::net::TcpListener>,
    conn_ids: Arc<std::sync::atomic::AtomicU64>,
) {
    let worker = Arc::new(Worker::new(shared.clone(), workers));
    let tracker = tokio_util::task::TaskTracker::new();
    if let Some(l) = listener {
        let l = tokio::net::TcpListener::from_std(l).expect("listener registers with the runtime");
        loop {
            let accepted = tokio::select! {
                r = l.accept() => r,
                _ = shared.shutdown.cancelled() => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let id = conn_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracker.spawn(crate::pg::startup::handle_client(
                        worker.clone(),
                        stream,
                        peer,
                        id,
                    ));
                }
                Err(e) => {
                    // Out of descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    } else {
        shared.shutdown.cancelled().await;
    }
    tracker.close();
    let drain = shared.config.general.drain_timeout;
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(
            remaining = tracker.len(),
            "drain timeout reached; closing remaining clients"
        );
    }
}
