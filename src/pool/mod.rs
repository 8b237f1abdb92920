//! Per-backend connection pools (deadpool, managed). Each worker thread has its own pools so a
//! client and the server connection it uses stay on one thread.
//!
//! The pool only takes back connections marked `clean` (idle, outside a transaction, nothing
//! in flight, no leftover session state); [`release`] closes anything else at once so a
//! dirty connection never waits in the pool holding locks.
//!
//! A checkout takes an idle connection or waits for one. New connections are opened by
//! background tasks and join the pool when ready, so a client is served by whichever comes
//! first: the new connection or one another client gives back. (A server under load can take
//! seconds to accept a new connection while the open ones keep serving; a client that had to
//! wait for its own connect would fail at `connect_timeout` for nothing.)

use crate::metrics::ClusterMetrics;
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult, Timeouts};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a pool needs of one protocol's server connections: where they go and how to open one.
/// Implemented by each protocol (PostgreSQL: `pg::backend::BackendTarget`); the pool itself
/// knows no protocol.
pub trait Connector: PartialEq + Send + Sync + 'static {
    /// A logged-in server connection.
    type Conn: Reusable;
    /// Why a connection could not be opened.
    type Error: std::error::Error + Clone + Send + Sync + 'static;
    /// State a protocol keeps with each pool (PostgreSQL: its multiplexing lanes).
    type Ext: Default + Send + Sync + 'static;
    /// Connect and log in, within [`Connector::connect_timeout`].
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;
    fn addr(&self) -> SocketAddr;
    fn connect_timeout(&self) -> Duration;
    /// The error for a connect that took longer than [`Connector::connect_timeout`].
    fn timed_out(&self) -> Self::Error;
}

/// What the pool asks of a connection given back.
pub trait Reusable: Send + 'static {
    /// Idle and clean (no transaction, nothing in flight, no client state): it may serve
    /// another client.
    fn reusable(&self) -> bool;
    /// The server wrote or closed while the connection sat idle (a FATAL before a shutdown,
    /// a crash): it must not be handed out.
    fn stale(&self) -> bool;
}

/// Creates and vets server connections for one backend.
pub struct Manager<C: Connector> {
    pub target: C,
    signal: Arc<Signal<C::Error>>,
}

/// What a pool's waiting clients are woken by: a connection given back, a background connect
/// that ended, the pool closing.
struct Signal<E> {
    changed: tokio::sync::Notify,
    /// Clients waiting for a connection now.
    waiting: AtomicUsize,
    /// Background connects running now.
    connecting: AtomicUsize,
    /// Failed background connects so far, and the last one's error.
    failures: AtomicU64,
    last_failure: Mutex<Option<E>>,
}

impl<E> Default for Signal<E> {
    fn default() -> Self {
        Signal {
            changed: Default::default(),
            waiting: Default::default(),
            connecting: Default::default(),
            failures: Default::default(),
            last_failure: Mutex::new(None),
        }
    }
}

impl<E> Signal<E> {
    /// A connection came back (or was closed, making room): wake one waiting client, or all
    /// of them when the pool has no connection left (a failed connect then fails them).
    fn returned<M: managed::Manager>(&self, pool: &managed::Pool<M>) {
        if self.waiting.load(Relaxed) > 0 {
            if pool.status().size == 0 {
                self.changed.notify_waiters();
            } else {
                self.changed.notify_one();
            }
        }
    }

    fn failed(&self, e: E) {
        *self.last_failure.lock().unwrap() = Some(e);
        self.failures.fetch_add(1, Relaxed);
        self.changed.notify_waiters();
    }
}

impl<C: Connector> managed::Manager for Manager<C> {
    type Type = Box<C::Conn>;
    type Error = C::Error;

    // Boxed: a checked-out connection moves through several futures on every checkout and
    // return, and a pointer is cheaper to move than the connection's state.
    async fn create(&self) -> Result<Box<C::Conn>, C::Error> {
        self.target.connect().await.map(Box::new)
    }

    async fn recycle(&self, conn: &mut Box<C::Conn>, _: &Metrics) -> RecycleResult<C::Error> {
        if !conn.reusable() {
            return Err(RecycleError::message("connection was not returned clean"));
        }
        if conn.stale() {
            return Err(RecycleError::message(
                "server sent data or closed while idle",
            ));
        }
        Ok(())
    }
}

/// A checked-out connection; it goes back to its pool when dropped (see [`release`]).
pub type Pooled<C> = Object<Manager<C>>;

/// Why no connection could be checked out.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError<E: std::error::Error + 'static> {
    #[error("no connection to {addr} became free within checkout_timeout ({timeout:?}; pool size {size} per worker)")]
    Timeout {
        addr: std::net::SocketAddr,
        timeout: Duration,
        size: usize,
    },
    #[error(transparent)]
    Connect(E),
    #[error("pool for {0} is closed")]
    Closed(std::net::SocketAddr),
}

/// The pool of one worker for one backend server.
pub struct BackendPool<C: Connector> {
    pool: managed::Pool<Manager<C>>,
    /// The protocol's own state for this pool (see [`Connector::Ext`]).
    pub ext: C::Ext,
    size: usize,
    checkout_timeout: Duration,
}

/// One worker's share of a pool of `total` connections per backend (at least one).
pub fn worker_share(total: usize, workers: usize) -> usize {
    total.div_ceil(workers.max(1)).max(1)
}

/// One worker's pools for one cluster, one per target in `targets`, each kept from `prev`
/// when a reload left its target, size and checkout timeout as they were.
pub fn cluster_pools<C: Connector>(
    targets: impl Iterator<Item = C>,
    prev: Option<&[Arc<BackendPool<C>>]>,
    size: usize,
    checkout_timeout: Duration,
) -> Vec<Arc<BackendPool<C>>> {
    targets
        .map(|target| {
            let reuse = prev
                .into_iter()
                .flatten()
                .find(|p| p.same(&target, size, checkout_timeout));
            match reuse {
                Some(p) => p.clone(),
                None => Arc::new(BackendPool::new(target, size, checkout_timeout)),
            }
        })
        .collect()
}

/// Close every pool of `olds` that is not among `news` (after a reload swapped them): idle
/// connections close now, connections in use when their transaction ends.
pub fn close_unused<'a, C: Connector + 'a>(
    olds: impl Iterator<Item = &'a Arc<BackendPool<C>>>,
    news: impl Iterator<Item = &'a Arc<BackendPool<C>>>,
) {
    let kept: Vec<*const BackendPool<C>> = news.map(Arc::as_ptr).collect();
    for p in olds {
        if !kept.contains(&Arc::as_ptr(p)) {
            p.close();
        }
    }
}

impl<C: Connector> BackendPool<C> {
    pub fn new(target: C, size: usize, checkout_timeout: Duration) -> BackendPool<C> {
        let create = target.connect_timeout();
        let signal = Arc::new(Signal::default());
        let pool = managed::Pool::builder(Manager { target, signal })
            .max_size(size)
            .runtime(deadpool::Runtime::Tokio1)
            .create_timeout(Some(create))
            .queue_mode(managed::QueueMode::Lifo)
            .build()
            .expect("a runtime is set, so building cannot fail");
        BackendPool {
            pool,
            ext: C::Ext::default(),
            size,
            checkout_timeout,
        }
    }

    /// Whether this pool is what `target`, `size` and `checkout_timeout` would build (a
    /// reload then keeps it).
    pub fn same(&self, target: &C, size: usize, checkout_timeout: Duration) -> bool {
        self.pool.manager().target == *target
            && self.size == size
            && self.checkout_timeout == checkout_timeout
            && !self.pool.is_closed()
    }

    /// No more checkouts; idle connections close now, connections in use when returned.
    pub fn close(&self) {
        self.pool.close();
        self.signal().changed.notify_waiters();
    }

    /// Connections in the pool now. deadpool's `available - waiting` is its size minus its
    /// users, and users are the connections checked out plus the callers inside
    /// `timeout_get`: the background connects while they run (this worker's pool has no
    /// other callers there when this is asked).
    fn idle(&self) -> usize {
        let s = self.pool.status();
        let connecting = self.signal().connecting.load(Relaxed);
        (s.available + connecting).saturating_sub(s.waiting)
    }

    fn signal(&self) -> &Arc<Signal<C::Error>> {
        &self.pool.manager().signal
    }

    /// Most connections this pool opens.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Where and as whom this pool connects.
    pub fn target(&self) -> &C {
        &self.pool.manager().target
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.pool.manager().target.addr()
    }

    /// Check out a connection, waiting up to `checkout_timeout` for one to come back.
    pub async fn checkout(&self) -> Result<Pooled<C>, CheckoutError<C::Error>> {
        match self.checkout_now().await? {
            Some(conn) => Ok(conn),
            None => self.checkout_waiting().await,
        }
    }

    /// [`BackendPool::checkout`] as a client session does it, observed in the cluster's
    /// metrics: the wait goes to `checkout_wait` and, while it lasts, the client counts in
    /// `clients{state="waiting"}` (saturation). The common case, an idle connection, neither
    /// waits nor counts as waiting, and is observed as a zero wait without reading the clock.
    pub async fn checkout_metered(
        &self,
        metrics: &ClusterMetrics,
    ) -> Result<Pooled<C>, CheckoutError<C::Error>> {
        if let Some(conn) = self.checkout_now().await? {
            metrics.checkout_wait(Duration::ZERO);
            return Ok(conn);
        }
        let started = std::time::Instant::now();
        let _waiting = metrics.client_waiting();
        let got = self.checkout_waiting().await;
        metrics.checkout_wait(started.elapsed());
        got
    }

    /// Check out an idle connection; `Ok(None)` when none is idle (then
    /// [`BackendPool::checkout_waiting`] opens one in the background if there is room). Arms no
    /// timer and never waits.
    pub async fn checkout_now(&self) -> Result<Option<Pooled<C>>, CheckoutError<C::Error>> {
        if self.idle() == 0 {
            return if self.pool.is_closed() {
                Err(CheckoutError::Closed(self.addr()))
            } else {
                Ok(None)
            };
        }
        // An idle connection that fails its recycle check is dropped and the next one tried;
        // with none left deadpool would connect here, which is rare enough to allow.
        match self.pool.timeout_get(&self.timeouts(Duration::ZERO)).await {
            Ok(conn) => Ok(Some(conn)),
            Err(PoolError::Timeout(managed::TimeoutType::Wait)) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Wait up to `checkout_timeout` for a connection (after [`BackendPool::checkout_now`]
    /// found none): one given back by another client or one opened in the background,
    /// whichever comes first. A background connect that fails while this waits fails it too
    /// when the pool has no open connection left.
    pub async fn checkout_waiting(&self) -> Result<Pooled<C>, CheckoutError<C::Error>> {
        tracing::trace!(status = ?self.pool.status(), "checkout waits");
        let signal = self.signal().clone();
        let deadline = tokio::time::Instant::now() + self.checkout_timeout;
        let failures = signal.failures.load(Relaxed);
        signal.waiting.fetch_add(1, Relaxed);
        let _waiting = crate::Decrement(&signal.waiting);
        let mut connect_failed = false;
        loop {
            let notified = signal.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(conn) = self.checkout_now().await? {
                return Ok(conn);
            }
            // A failed connect fails this client only if no open connection can come back to
            // it (a starved server may time out a connect while it serves the open ones);
            // otherwise it waits on, up to checkout_timeout, and another connect is tried.
            if signal.failures.load(Relaxed) != failures {
                if self.pool.status().size == 0 {
                    if let Some(e) = signal.last_failure.lock().unwrap().clone() {
                        return Err(CheckoutError::Connect(e));
                    }
                }
                // No new connect for this client after one failed: it waits for a
                // connection to come back (or the pool to empty), not in a connect loop.
                connect_failed = true;
            }
            if !connect_failed {
                self.grow();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(CheckoutError::Timeout {
                    addr: self.addr(),
                    timeout: self.checkout_timeout,
                    size: self.size,
                });
            }
        }
    }

    /// Open one more connection in the background if the pool has room and fewer connects
    /// run than clients wait. It joins the pool when ready (waking a waiting client); a
    /// failure wakes every waiting client with the error.
    fn grow(&self) {
        let signal = self.signal();
        let status = self.pool.status();
        let connecting = signal.connecting.load(Relaxed);
        if status.size + connecting >= status.max_size || connecting >= signal.waiting.load(Relaxed)
        {
            return;
        }
        signal.connecting.fetch_add(1, Relaxed);
        let pool = self.pool.clone();
        let timeouts = self.timeouts(Duration::ZERO);
        tokio::spawn(async move {
            let got = pool.timeout_get(&timeouts).await;
            let signal = pool.manager().signal.clone();
            signal.connecting.fetch_sub(1, Relaxed);
            match got {
                // Into the pool, waking a waiting client.
                Ok(conn) => release(conn),
                Err(e) => match connect_error(e, &pool.manager().target) {
                    Ok(e) => signal.failed(e),
                    // Every permit taken meanwhile, or the pool closed: nothing to open.
                    Err(_) => signal.changed.notify_waiters(),
                },
            }
        });
    }

    fn timeouts(&self, wait: Duration) -> Timeouts {
        Timeouts {
            wait: Some(wait),
            create: Some(self.pool.manager().target.connect_timeout()),
            recycle: None,
        }
    }

    fn error(&self, e: PoolError<C::Error>) -> CheckoutError<C::Error> {
        match connect_error(e, &self.pool.manager().target) {
            Ok(e) => CheckoutError::Connect(e),
            Err(PoolError::Timeout(_)) => CheckoutError::Timeout {
                addr: self.addr(),
                timeout: self.checkout_timeout,
                size: self.size,
            },
            Err(_) => CheckoutError::Closed(self.addr()),
        }
    }

    /// (connections open, idle connections)
    pub fn status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.available)
    }
}

/// A failed connect in `e` (the server's error, or the connect timeout), or `e` itself when
/// it is about the pool (no permit within the wait, closed).
fn connect_error<C: Connector>(
    e: PoolError<C::Error>,
    target: &C,
) -> Result<C::Error, PoolError<C::Error>> {
    match e {
        PoolError::Backend(e) => Ok(e),
        PoolError::Timeout(managed::TimeoutType::Create) => Ok(target.timed_out()),
        e => Err(e),
    }
}

/// Give a connection back: to the pool if clean, otherwise closed now (the server then rolls
/// back whatever transaction it had open). Either way a waiting client is woken: it can take
/// the connection, or open one in the freed place.
pub fn release<C: Connector>(conn: Pooled<C>) {
    let pool = Object::pool(&conn);
    if !conn.reusable() {
        drop(Object::take(conn));
    } else {
        drop(conn);
    }
    if let Some(pool) = pool {
        pool.manager().signal.returned(&pool);
    }
}
