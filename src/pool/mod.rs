//! Per-backend connection pools (deadpool, managed). Each worker thread has its own pools so a
//! client and the server connection it uses stay on one thread; the pools of the workers for
//! one server and login share one size ([`PoolGroups`]): a worker at the size closes an idle
//! connection of another to open its own, so none is held to a fixed share.
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
//!
//! Waiting clients are served first come first: a connection given back goes straight to the
//! client that has waited longest, never to one that asks later. With many clients on a
//! small pool the longest wait is then about the queue ahead of a client, not luck.

use crate::config::BackendAddr;
use crate::metrics::ClusterMetrics;
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult, Timeouts};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod cap;
mod limits;
mod looked_up;
mod parking;
mod sets;
pub use cap::{PoolGroups, ServerCap, ServerCaps};
pub use limits::{coarse_ms, tick, PoolLimits, Stamps};
pub use looked_up::{AsUser, LookedUp, FRESH as LOOKED_UP_FRESH};
use parking::Spot;
pub use parking::{Parking, Parkings};
pub use sets::{Login, PerUser, PoolSets};

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
    fn addr(&self) -> BackendAddr;
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
    /// When the connection was opened and last given back (see [`Stamps`]).
    fn stamps(&self) -> Stamps;
    fn stamps_mut(&mut self) -> &mut Stamps;
    /// Tell the server the idle connection is being closed (PostgreSQL's Terminate,
    /// MySQL's COM_QUIT), best effort and without waiting, so that it logs a normal end
    /// rather than an aborted connection.
    fn say_goodbye(&mut self) {}
    /// Idle at a message boundary, though perhaps not reusable (a cancel or KILL was sent
    /// to it): a goodbye is read as one. A connection whose protocol state is unknown
    /// (given back mid-answer or mid-message) is closed without one, as bytes written to it
    /// could be taken as part of a message.
    fn at_rest(&self) -> bool {
        false
    }
    /// The connection's socket, for its server's [`crate::net::backend::SocketList`].
    fn socket(&self) -> Option<std::os::fd::BorrowedFd<'_>>;
    /// Keep the connection's place in that list for as long as the connection lives.
    fn enroll(&mut self, place: crate::net::backend::Enrolled);
}

/// Creates and vets server connections for one backend.
pub struct Manager<C: Connector> {
    pub target: C,
    limits: PoolLimits,
    /// The limit on connections to the server over all its pools, if the cluster has one.
    cap: Option<Arc<ServerCap>>,
    /// The limit on this pool's connections together with the other workers' pools of the
    /// same server and login (the pool's size over all workers; see [`PoolGroups`]).
    group: Option<Arc<ServerCap>>,
    signal: Arc<Signal<C::Error>>,
    /// Clients waiting for a connection, first come first: a connection given back goes
    /// straight to the first of them still waiting (see [`release`]), so a client that asks
    /// later, or the one that gave it back, cannot take it first.
    queue: Mutex<std::collections::VecDeque<Handoff<C>>>,
    /// Raised by [`BackendPool::reconnect`]: connections of an earlier epoch are not reused.
    epoch: AtomicU64,
    /// Connections to close when given back, asked by another worker's pool of the group
    /// that is under its share (see [`ServerCap::admit_in_group`]), and the share this pool
    /// keeps whatever is asked.
    shed: AtomicUsize,
    shed_keep: AtomicUsize,
}

impl<C: Connector> Manager<C> {
    /// Opened before the last [`BackendPool::reconnect`]: to be closed, not reused.
    fn retired(&self, stamps: Stamps) -> bool {
        stamps.epoch < self.epoch.load(Relaxed)
    }

    /// The limits this pool counts under: its group's, then its server's.
    fn limits(&self) -> impl Iterator<Item = &Arc<ServerCap>> {
        self.group.iter().chain(self.cap.iter())
    }
}

type Handoff<C> = tokio::sync::oneshot::Sender<Pooled<C>>;

/// What a pool's waiting clients are woken by: a connection given back, a background connect
/// that ended, the pool closing.
struct Signal<E> {
    changed: tokio::sync::Notify,
    /// Clients waiting for a connection now.
    waiting: AtomicUsize,
    /// Background connects running now.
    connecting: AtomicUsize,
    /// Those of them inside deadpool's `timeout_get` (counted among its users).
    in_get: AtomicUsize,
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
            in_get: Default::default(),
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
    // return, and a pointer is cheaper to move than the connection's state. The connect
    // future (a login, TLS) is boxed too: it is large, and inline it would make every
    // future that checks a connection out (each client's session, all the time) as large.
    async fn create(&self) -> Result<Box<C::Conn>, C::Error> {
        let mut conn = Box::pin(self.target.connect()).await?;
        if let (Some(ka), Some(fd)) = (&self.limits.keepalive, conn.socket()) {
            crate::net::set_keepalive(fd, ka);
        }
        if let Some(cap) = &self.cap {
            if let Some(place) = conn.socket().and_then(|fd| cap.sockets.enroll(fd)) {
                conn.enroll(place);
            }
        }
        let now = coarse_ms();
        *conn.stamps_mut() = Stamps {
            opened: now,
            idle_since: now,
            epoch: self.epoch.load(Relaxed),
        };
        Ok(Box::new(conn))
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
        if self.retired(conn.stamps()) {
            return Err(RecycleError::message("opened before a reconnect"));
        }
        Ok(())
    }
}

/// A checked-out connection; it goes back to its pool when dropped (see [`release`]).
pub type Pooled<C> = Object<Manager<C>>;

/// Why no connection could be checked out.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError<E: std::error::Error + 'static> {
    #[error("no connection to {addr} became free within checkout_timeout ({timeout:?}; pool size {size})")]
    Timeout {
        addr: BackendAddr,
        timeout: Duration,
        size: usize,
    },
    #[error(transparent)]
    Connect(E),
    #[error("pool for {0} is closed")]
    Closed(BackendAddr),
}

/// The pool of one worker for one backend server.
pub struct BackendPool<C: Connector> {
    pool: managed::Pool<Manager<C>>,
    /// The protocol's own state for this pool (see [`Connector::Ext`]).
    pub ext: C::Ext,
    size: usize,
    checkout_timeout: Duration,
    /// Clients' parking spots that may hold one of this pool's connections (see [`Parking`]).
    spots: Mutex<Vec<std::sync::Weak<Spot<C>>>>,
    /// Connections parked in them now.
    parked: AtomicUsize,
}

/// One worker's pools for one cluster, one per target in `targets`, each kept from `prev`
/// when a reload left its target and limits as they were. `caps` are the limits on
/// connections to those servers over all their pools (see [`ServerCap`]), and `groups` the
/// limits of these pools together with the other workers' pools of the same servers and login
/// (see [`PoolGroups`]), in the same order.
pub fn cluster_pools<C: Connector>(
    targets: impl Iterator<Item = C>,
    prev: Option<&[Arc<BackendPool<C>>]>,
    limits: PoolLimits,
    caps: &[Arc<ServerCap>],
    groups: &[Arc<ServerCap>],
) -> Vec<Arc<BackendPool<C>>> {
    targets
        .zip(caps.iter().zip(groups))
        .map(|(target, (cap, group))| {
            let reuse = prev.into_iter().flatten().find(|p| p.same(&target, limits));
            match reuse {
                Some(p) => p.clone(),
                None => {
                    let pool = Arc::new(BackendPool::new(
                        target,
                        limits,
                        Some(cap.clone()),
                        Some(group.clone()),
                    ));
                    for limit in [cap, group] {
                        limit.join(Arc::downgrade(&pool) as std::sync::Weak<dyn cap::Member>);
                    }
                    pool
                }
            }
        })
        .collect()
}

/// Whether `a` and `b` are the very same pools, in the same order (a set rebuilt for the same
/// generation that changed nothing is kept as it was).
pub fn same_pools<C: Connector>(a: &[Arc<BackendPool<C>>], b: &[Arc<BackendPool<C>>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
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
    pub fn new(
        target: C,
        limits: PoolLimits,
        cap: Option<Arc<ServerCap>>,
        group: Option<Arc<ServerCap>>,
    ) -> BackendPool<C> {
        let PoolLimits {
            size,
            checkout_timeout,
            ..
        } = limits;
        let create = target.connect_timeout();
        let signal = Arc::new(Signal::default());
        let pool = managed::Pool::builder(Manager {
            target,
            limits,
            cap,
            group,
            signal,
            queue: Default::default(),
            epoch: AtomicU64::new(0),
            shed: AtomicUsize::new(0),
            shed_keep: AtomicUsize::new(0),
        })
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
            spots: Mutex::new(Vec::new()),
            parked: AtomicUsize::new(0),
        }
    }

    /// Whether this pool is what `target` and `limits` would build (a reload then keeps it).
    pub fn same(&self, target: &C, limits: PoolLimits) -> bool {
        self.pool.manager().target == *target
            && self.pool.manager().limits == limits
            && !self.pool.is_closed()
    }

    /// No more checkouts; idle connections close now, connections in use when returned.
    pub fn close(&self) {
        for mut conn in self.pool.retain(|_, _| false).removed {
            conn.say_goodbye();
        }
        self.pool.close();
        self.unpark_all();
        self.signal().changed.notify_waiters();
        self.freed();
    }

    /// Connections of this pool closed: other pools of the server may have room now.
    pub(super) fn freed(&self) {
        for limit in self.pool.manager().limits() {
            limit.freed();
        }
    }

    /// Connections in the pool now. deadpool's `available - waiting` is its size minus its
    /// users, and users are the connections checked out plus the callers inside
    /// `timeout_get`: the background connects while they run (this worker's pool has no
    /// other callers there when this is asked). A connect reserved but not yet started is
    /// not among them (counting it made a checkout open a connection of its own, past the
    /// server's connection limit).
    fn idle(&self) -> usize {
        let s = self.pool.status();
        let in_get = self.signal().in_get.load(Relaxed);
        (s.available + in_get).saturating_sub(s.waiting)
    }

    /// Nobody waits and the pool may open another connection (its size and the connects
    /// under way are below its maximum).
    pub fn has_room(&self) -> bool {
        let s = self.pool.status();
        let connecting = self.signal().connecting.load(Relaxed);
        s.waiting == 0
            && self.signal().waiting.load(Relaxed) == 0
            && s.size + connecting < s.max_size
            && self
                .pool
                .manager()
                .group
                .as_ref()
                .is_none_or(|g| g.has_room())
    }

    fn signal(&self) -> &Arc<Signal<C::Error>> {
        &self.pool.manager().signal
    }

    /// Most connections this pool opens: its size over all worker threads, which its group
    /// (the other workers' pools of the same server and login) shares.
    pub fn size(&self) -> usize {
        self.size
    }

    /// What tells this pool's group apart (see [`PoolGroups`]): equal for the pools of every
    /// worker that share one size; a pool without a group is a group of its own.
    pub fn group_id(&self) -> usize {
        match &self.pool.manager().group {
            Some(g) => Arc::as_ptr(g) as usize,
            None => self as *const Self as usize,
        }
    }

    /// Where and as whom this pool connects.
    pub fn target(&self) -> &C {
        &self.pool.manager().target
    }

    pub fn addr(&self) -> BackendAddr {
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

    /// [`BackendPool::checkout_metered`] for a client with a parking spot: the connection it
    /// parked here, if it is still there, before any other (a zero wait).
    pub async fn checkout_parked_first(
        self: &Arc<Self>,
        parkings: &Parkings<C>,
        metrics: &ClusterMetrics,
    ) -> Result<Pooled<C>, CheckoutError<C::Error>> {
        if let Some(conn) = parkings.at(self).and_then(|p| p.take_for(self)) {
            metrics.checkout_wait(Duration::ZERO);
            return Ok(conn);
        }
        self.checkout_metered(metrics).await
    }

    /// [`BackendPool::checkout_metered`]'s common case with no future to keep (see
    /// [`BackendPool::checkout_now_or_never`]): `None` when it would have to wait.
    pub fn checkout_metered_now(&self, metrics: &ClusterMetrics) -> Option<Pooled<C>> {
        let conn = self.checkout_now_or_never()?;
        metrics.checkout_wait(Duration::ZERO);
        Some(conn)
    }

    /// [`BackendPool::checkout_parked_first`]'s common case with no future to keep: `None`
    /// when it would have to wait.
    pub fn checkout_parked_first_now(
        self: &Arc<Self>,
        parkings: &Parkings<C>,
        metrics: &ClusterMetrics,
    ) -> Option<Pooled<C>> {
        let conn = parkings
            .at(self)
            .and_then(|p| p.take_for(self))
            .or_else(|| self.checkout_now_or_never())?;
        metrics.checkout_wait(Duration::ZERO);
        Some(conn)
    }

    /// Check out an idle connection; `Ok(None)` when none is idle (then
    /// [`BackendPool::checkout_waiting`] opens one in the background if there is room). Arms no
    /// timer and never waits.
    pub async fn checkout_now(&self) -> Result<Option<Pooled<C>>, CheckoutError<C::Error>> {
        if self.idle() == 0 {
            return if self.pool.is_closed() {
                Err(CheckoutError::Closed(self.addr()))
            } else {
                Ok(self.take_parked())
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

    /// [`BackendPool::checkout_now`] with no future to keep: its connection when it finishes
    /// at once (the common case: an idle connection that passes its check), else `None`: it
    /// would have had to wait (a connect, which deadpool starts when every idle connection
    /// failed its check; dropped here at its first wait) or it failed. The caller then takes the
    /// async way, which starts over and meets the same error if there is one. A session's
    /// checkout runs this first, so that the async way's future, boxed, is allocated only when
    /// it is needed.
    pub fn checkout_now_or_never(&self) -> Option<Pooled<C>> {
        let now = std::pin::pin!(self.checkout_now());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match now.poll(&mut cx) {
            std::task::Poll::Ready(Ok(conn)) => conn,
            _ => None,
        }
    }

    /// Wait up to `checkout_timeout` for a connection (after [`BackendPool::checkout_now`]
    /// found none): one given back by another client or one opened in the background,
    /// whichever comes first. Waiting clients are served first come first (see [`release`]).
    /// A background connect that fails while this waits fails it too when the pool has no
    /// open connection left.
    pub async fn checkout_waiting(&self) -> Result<Pooled<C>, CheckoutError<C::Error>> {
        tracing::trace!(status = ?self.pool.status(), "checkout waits");
        let signal = self.signal().clone();
        let since = tokio::time::Instant::now();
        let deadline = since + self.checkout_timeout;
        let failures = signal.failures.load(Relaxed);
        signal.waiting.fetch_add(1, Relaxed);
        let _waiting = crate::Decrement(&signal.waiting);
        let mut place = Place(self.queue_up());
        let mut connect_failed = false;
        loop {
            let notified = signal.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // One that went idle while this queued up (given back when nobody was queued).
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
            // Refused by the server's connection limit: woken when a connection of the server
            // is given back or closes, and in any case it looks again every 100 ms.
            let capped = !connect_failed && !self.grow(since.elapsed() >= TAKE_PLACE_AFTER);
            tokio::select! {
                biased;
                handed = &mut place.0 => match handed {
                    Ok(conn) => return Ok(conn),
                    // The pool is gone.
                    Err(_) => return Err(CheckoutError::Closed(self.addr())),
                },
                _ = &mut notified => {}
                _ = tokio::time::sleep(Duration::from_millis(100)), if capped => {}
                _ = tokio::time::sleep_until(deadline) => {
                    // One handed over just now is taken, not lost.
                    place.0.close();
                    return match place.0.try_recv() {
                        Ok(conn) => Ok(conn),
                        Err(_) => Err(CheckoutError::Timeout {
                            addr: self.addr(),
                            timeout: self.checkout_timeout,
                            size: self.size,
                        }),
                    };
                }
            }
        }
    }

    /// A place at the end of the queue of waiting clients.
    fn queue_up(&self) -> tokio::sync::oneshot::Receiver<Pooled<C>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut queue = self.pool.manager().queue.lock().unwrap();
        // Places of clients that stopped waiting (served otherwise, timed out, gone) are
        // skipped when a connection comes back; here they are cleared when they pile up.
        if queue.len() >= 2 * self.size + 16 {
            queue.retain(|tx| !tx.is_closed());
        }
        queue.push_back(tx);
        rx
    }

    /// Open one more connection in the background if the pool has room and fewer connects
    /// run than clients wait. It joins the pool when ready (waking a waiting client); a
    /// failure wakes every waiting client with the error. False when the server's connection
    /// limit or the pool's group left no room (see [`ServerCap`], [`PoolGroups`]). At the
    /// group's size an idle connection of another worker's pool is closed to make room only
    /// for a client that is `patient` (it has waited [`TAKE_PLACE_AFTER`]).
    fn grow(&self, patient: bool) -> bool {
        let signal = self.signal();
        let status = self.pool.status();
        let connecting = signal.connecting.load(Relaxed);
        if status.size + connecting >= status.max_size || connecting >= signal.waiting.load(Relaxed)
        {
            return true;
        }
        let reserve = || {
            signal.connecting.fetch_add(1, Relaxed);
            true
        };
        let manager = self.pool.manager();
        let admitted = match (&manager.group, &manager.cap) {
            (Some(group), Some(cap)) => {
                group.admit_in_group(self, patient, || cap.admit(self, reserve))
            }
            (Some(group), None) => group.admit_in_group(self, patient, reserve),
            (None, Some(cap)) => cap.admit(self, reserve),
            (None, None) => reserve(),
        };
        // At the pool's or the server's limit with nothing idle to close: the clients wait
        // for a connection of the group to close or go idle (`ServerCap::freed` and `nudge`
        // wake them).
        if !admitted {
            return false;
        }
        let pool = self.pool.clone();
        let timeouts = self.timeouts(Duration::ZERO);
        tokio::spawn(async move {
            let signal = pool.manager().signal.clone();
            // In the same poll as timeout_get counts this caller among its users.
            signal.in_get.fetch_add(1, Relaxed);
            let got = pool.timeout_get(&timeouts).await;
            signal.in_get.fetch_sub(1, Relaxed);
            signal.connecting.fetch_sub(1, Relaxed);
            match got {
                // Into the pool, waking a waiting client.
                Ok(conn) => release(conn),
                Err(e) => {
                    match connect_error(e, &pool.manager().target) {
                        Ok(e) => signal.failed(e),
                        // Every permit taken meanwhile, or the pool closed: nothing to open.
                        Err(_) => signal.changed.notify_waiters(),
                    }
                    // The place it held at the limits is free again.
                    for limit in pool.manager().limits() {
                        limit.freed();
                    }
                }
            }
        });
        true
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

    /// (connections open, idle connections); parked connections count as idle.
    pub fn status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.available + self.parked.load(Relaxed))
    }
}

impl<C: Connector> cap::Member for BackendPool<C> {
    fn held(&self) -> usize {
        self.pool.status().size + self.signal().connecting.load(Relaxed)
    }

    fn close_idle(&self) -> bool {
        let mut taken = false;
        let removed = self
            .pool
            .retain(|_, _| std::mem::replace(&mut taken, true))
            .removed;
        if let Some(mut conn) = removed.into_iter().next() {
            conn.say_goodbye();
            return true;
        }
        match self.take_parked() {
            Some(conn) => {
                Object::take(conn).say_goodbye();
                true
            }
            None => false,
        }
    }

    fn wake(&self) {
        if self.signal().waiting.load(Relaxed) > 0 {
            self.signal().changed.notify_waiters();
        }
    }

    fn waiting(&self) -> bool {
        self.signal().waiting.load(Relaxed) > 0
    }

    fn shed_one(&self, keep: usize) -> bool {
        let size = self.pool.status().size;
        let m = self.pool.manager();
        m.shed_keep.store(keep, Relaxed);
        m.shed
            .fetch_update(Relaxed, Relaxed, |n| (size > keep + n).then_some(n + 1))
            .is_ok()
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
    let limits = pool
        .as_ref()
        .map(|p| p.manager().limits)
        .filter(|l| !l.off());
    let now = limits.map(|_| coarse_ms());
    let freed = || {
        for limit in pool.iter().flat_map(|p| p.manager().limits()) {
            limit.freed();
        }
    };
    if !conn.reusable() {
        let mut conn = Object::take(conn);
        if conn.at_rest() {
            conn.say_goodbye();
        }
        freed();
    } else if pool.as_ref().is_some_and(shed) {
        // Its place goes to another worker's pool of the group, under its share.
        Object::take(conn).say_goodbye();
        freed();
    } else if limits
        .zip(now)
        .is_some_and(|(l, now)| l.too_old(conn.stamps(), now))
        || pool
            .as_ref()
            .is_some_and(|p| p.manager().retired(conn.stamps()))
    {
        Object::take(conn).say_goodbye();
        freed();
    } else if let Some(pool) = pool.as_ref().filter(|p| !p.is_closed()) {
        // Straight to the client that has waited longest, if one waits.
        let mut conn = conn;
        if let Some(now) = now {
            conn.stamps_mut().idle_since = now;
        }
        loop {
            let Some(next) = pool.manager().queue.lock().unwrap().pop_front() else {
                break;
            };
            match next.send(conn) {
                Ok(()) => return,
                // That client stopped waiting.
                Err(back) => conn = back,
            }
        }
        drop(conn);
    } else {
        drop(conn);
    }
    if let Some(pool) = pool {
        pool.manager().signal.returned(&pool);
        // Idle now (or closed): another pool of the group refused room may close it.
        for limit in pool.manager().limits() {
            limit.nudge();
        }
    }
}

/// How long a client waits for a connection of its own worker's pool before, at the size of
/// its pool group, one idle on another worker is closed to make room (see [`PoolGroups`]).
/// Under a steady load every worker's clients are served by connections given back within
/// a few milliseconds, and moving a place would only cost a new server connection each time;
/// a worker whose clients wait longer while another's connections sit idle takes them.
const TAKE_PLACE_AFTER: Duration = Duration::from_millis(100);

/// Whether a connection given back to `pool` is to be closed for another worker's pool of
/// its group (see [`cap::Member::shed_one`]): one was asked and the pool holds more than its
/// share. Requests left when it is down to its share are dropped (the pool that asked was
/// served otherwise meanwhile).
fn shed<C: Connector>(pool: &managed::Pool<Manager<C>>) -> bool {
    let m = pool.manager();
    if m.shed.load(Relaxed) == 0 {
        return false;
    }
    if pool.status().size <= m.shed_keep.load(Relaxed) {
        m.shed.store(0, Relaxed);
        return false;
    }
    m.shed
        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// A waiting client's place in its pool's queue. A connection handed to it after it stopped
/// waiting (it was served otherwise, or failed) is given back, to the next one.
struct Place<C: Connector>(tokio::sync::oneshot::Receiver<Pooled<C>>);

impl<C: Connector> Drop for Place<C> {
    fn drop(&mut self) {
        self.0.close();
        if let Ok(conn) = self.0.try_recv() {
            release(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, thiserror::Error)]
    #[error("no connect in this test")]
    struct NoConnect;

    #[derive(PartialEq)]
    struct Fake;

    struct FakeConn(u32, Stamps);

    impl Reusable for FakeConn {
        fn reusable(&self) -> bool {
            true
        }
        fn stale(&self) -> bool {
            false
        }
        fn stamps(&self) -> Stamps {
            self.1
        }
        fn stamps_mut(&mut self) -> &mut Stamps {
            &mut self.1
        }
        fn socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
            None
        }
        fn enroll(&mut self, _: crate::net::backend::Enrolled) {}
    }

    fn limits(size: usize, checkout_timeout: Duration) -> PoolLimits {
        PoolLimits::new(size, checkout_timeout)
    }

    static OPENED: AtomicUsize = AtomicUsize::new(0);

    impl Connector for Fake {
        type Conn = FakeConn;
        type Error = NoConnect;
        type Ext = ();
        async fn connect(&self) -> Result<FakeConn, NoConnect> {
            Ok(FakeConn(
                OPENED.fetch_add(1, Relaxed) as u32,
                Stamps::default(),
            ))
        }
        fn addr(&self) -> BackendAddr {
            "127.0.0.1:1".parse().unwrap()
        }
        fn connect_timeout(&self) -> Duration {
            Duration::from_secs(1)
        }
        fn timed_out(&self) -> NoConnect {
            NoConnect
        }
    }

    /// Idle connections past the idle timeout close at the next sweep, in the pool and
    /// parked; one past its lifetime closes when given back; the pool opens new ones after.
    #[tokio::test]
    async fn idle_and_old_connections_close() {
        // Connections are stamped with the coarse clock, which the sweeper advances; here
        // each step advances it first.
        let idle = PoolLimits {
            idle_timeout: Duration::from_millis(100),
            ..limits(3, Duration::from_millis(200))
        };
        let pool = Arc::new(BackendPool::new(Fake, idle, None, None));
        tick();
        let (a, b, c) = (
            pool.checkout().await.unwrap(),
            pool.checkout().await.unwrap(),
            pool.checkout().await.unwrap(),
        );
        let mut parking = Parkings::default();
        tick();
        release(a);
        pool.park(b, &mut parking);
        assert_eq!(pool.sweep(), 0, "nothing is idle long enough yet");
        tokio::time::sleep(Duration::from_millis(60)).await;
        tick();
        release(c);
        tokio::time::sleep(Duration::from_millis(60)).await;
        // a (pooled) and b (parked) waited 120 ms, c 60 ms.
        assert_eq!(pool.sweep(), 2);
        assert_eq!(pool.status(), (1, 1));
        assert!(parking.at(&pool).unwrap().take_for(&pool).is_none());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(pool.sweep(), 1);
        assert_eq!(pool.status(), (0, 0));
        let fresh = pool.checkout().await.unwrap();
        drop(fresh);

        let old = PoolLimits {
            lifetime: Duration::from_millis(50),
            ..limits(2, Duration::from_millis(200))
        };
        let pool = Arc::new(BackendPool::new(Fake, old, None, None));
        tick();
        let conn = pool.checkout().await.unwrap();
        let first = conn.0;
        release(conn);
        let conn = pool.checkout().await.unwrap();
        assert_eq!(conn.0, first, "young: pooled and handed out again");
        tokio::time::sleep(Duration::from_millis(60)).await;
        tick();
        release(conn);
        assert_eq!(pool.status(), (0, 0), "old: closed when given back");
        let conn = pool.checkout().await.unwrap();
        assert_ne!(conn.0, first);
        release(conn);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(pool.sweep(), 1, "an old idle one closes at the sweep");
    }

    /// Two workers' pools of one server, in one group of `size` (see [`PoolGroups`]).
    fn two_workers_pools(size: usize, checkout_timeout: Duration) -> Vec<Arc<BackendPool<Fake>>> {
        let addr: BackendAddr = "127.0.0.1:1".parse().unwrap();
        let group = PoolGroups::default().for_login("c", "", std::iter::once(addr), size);
        (0..2)
            .map(|_| {
                let pool = Arc::new(BackendPool::new(
                    Fake,
                    limits(size, checkout_timeout),
                    None,
                    Some(group[0].clone()),
                ));
                group[0].join(Arc::downgrade(&pool) as std::sync::Weak<dyn cap::Member>);
                pool
            })
            .collect()
    }

    /// Two workers' pools of one group of 2: either may use both places, an idle connection
    /// of the other is closed to make room, and together they never hold more than 2.
    #[tokio::test]
    async fn pools_of_one_group_share_its_size_and_take_each_others_idle_places() {
        let pools = two_workers_pools(2, Duration::from_millis(300));
        let (a, b) = (&pools[0], &pools[1]);
        // The first worker's clients take both places and give them back.
        let (one, two) = (a.checkout().await.unwrap(), a.checkout().await.unwrap());
        assert!(!a.has_room() && !b.has_room());
        drop((one, two));
        assert_eq!(a.status(), (2, 2));
        // The second worker's clients close them one at a time to open their own.
        let three = b.checkout().await.unwrap();
        assert_eq!((a.status(), b.status()), ((1, 1), (1, 0)));
        let four = b.checkout().await.unwrap();
        assert_eq!((a.status(), b.status()), ((0, 0), (2, 0)));
        // Both in use: a third client waits, and gets one given back.
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.checkout().await.map(|c| c.0) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(three);
        let got = waiting.await.unwrap().expect("the place given back");
        assert_eq!(
            a.status().0 + b.status().0,
            2,
            "never more than the group's size"
        );
        drop(four);
        let _ = got;
    }

    /// A worker's pool that holds the whole size of its group, all in use, gives a place
    /// back when another worker's pool under its share (the size over the workers) needs
    /// one: the next connection it is given back is closed instead of kept, and the other
    /// pool opens one. It gives back no more than down to its share.
    #[tokio::test]
    async fn a_pool_over_its_share_gives_a_place_to_one_under_it() {
        let pools = two_workers_pools(4, Duration::from_secs(2));
        let (a, b) = (&pools[0], &pools[1]);
        let mut busy = Vec::new();
        for _ in 0..4 {
            busy.push(a.checkout().await.unwrap());
        }
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.checkout().await })
            })
            .collect();
        // And as many of the first pool's own, which would take every connection it is given
        // back.
        let own: Vec<_> = (0..3)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move { a.checkout().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(waiting.iter().chain(&own).all(|w| !w.is_finished()));
        // Given back: closed for the other pool, which opens its own in the place, twice;
        // the third goes to the first pool's first waiting client.
        for _ in 0..3 {
            release(busy.pop().unwrap());
        }
        // Each client keeps what it got.
        let mut got = [Vec::new(), Vec::new()];
        for (side, w) in waiting
            .into_iter()
            .map(|w| (0, w))
            .chain(own.into_iter().map(|w| (1, w)))
        {
            if let Ok(conn) = tokio::time::timeout(Duration::from_millis(300), w).await {
                got[side].push(conn.unwrap().unwrap());
            }
        }
        let [served, kept] = got;
        assert_eq!(served.len(), 2, "the pool under its share got two places");
        assert_eq!(kept.len(), 1);
        assert_eq!(a.status(), (2, 0), "the other kept its share");
        assert_eq!(b.status(), (2, 0));
        drop((kept, busy, served));
    }

    /// A parked connection goes back to its client, or to any client that finds the pool
    /// empty; and the list of spots stays short however many clients park.
    #[tokio::test]
    async fn parked_connections_serve_their_client_or_anyone_in_need() {
        let pool = Arc::new(BackendPool::new(
            Fake,
            limits(2, Duration::from_millis(200)),
            None,
            None,
        ));
        let mut a = Parkings::default();
        let conn = pool.checkout().await.unwrap();
        let id = conn.0;
        pool.park(conn, &mut a);
        assert_eq!(pool.status(), (1, 1), "a parked connection counts as idle");
        // Its client takes it back.
        let again = a.at(&pool).unwrap().take_for(&pool).unwrap();
        assert_eq!(again.0, id);
        pool.park(again, &mut a);
        // Another client, finding the pool empty, takes it from the spot.
        let taken = pool
            .checkout_now()
            .await
            .unwrap()
            .expect("the parked connection");
        assert_eq!(taken.0, id);
        assert!(a.at(&pool).unwrap().take_for(&pool).is_none());
        pool.park(taken, &mut a);
        // Many clients that stay connected, each parking a connection, taking it back and
        // giving it to the pool (as when its next statement goes to another server): their
        // empty spots do not pile up on the list.
        let mut clients: Vec<Parkings<Fake>> = (0..200).map(|_| Parkings::default()).collect();
        for round in 0..3 {
            for c in clients.iter_mut() {
                let conn = match c.at(&pool).and_then(|p| p.take_for(&pool)) {
                    Some(conn) => conn,
                    None => pool.checkout().await.unwrap(),
                };
                pool.park(conn, c);
                release(c.at(&pool).unwrap().take_for(&pool).unwrap());
                assert!(
                    pool.spots.lock().unwrap().len() <= 2 * pool.size + 17,
                    "round {round}: {} spots listed",
                    pool.spots.lock().unwrap().len()
                );
            }
        }
        drop(clients);
        drop(a);
        assert_eq!(pool.parked.load(Relaxed), 0);
        let (open, idle) = pool.status();
        assert_eq!(open, idle, "every connection back in the pool");
        assert!(open <= 2);
    }

    /// A client whose transactions go to two servers (reads to a replica, writes to the
    /// primary) keeps a connection parked at each: taking one back leaves the other parked.
    #[tokio::test]
    async fn a_client_keeps_a_connection_parked_at_each_server() {
        let primary = Arc::new(BackendPool::new(
            Fake,
            limits(2, Duration::from_millis(200)),
            None,
            None,
        ));
        let replica = Arc::new(BackendPool::new(
            Fake,
            limits(2, Duration::from_millis(200)),
            None,
            None,
        ));
        let metrics = crate::metrics::Metrics::new().cluster_handles("c");
        let mut a = Parkings::default();
        let (p, r) = (
            primary.checkout().await.unwrap(),
            replica.checkout().await.unwrap(),
        );
        let (p_id, r_id) = (p.0, r.0);
        primary.park(p, &mut a);
        replica.park(r, &mut a);
        for _ in 0..3 {
            let r = replica.checkout_parked_first(&a, &metrics).await.unwrap();
            assert_eq!(r.0, r_id);
            replica.park(r, &mut a);
            let p = primary.checkout_parked_first(&a, &metrics).await.unwrap();
            assert_eq!(p.0, p_id, "the primary's connection stayed parked");
            primary.park(p, &mut a);
        }
        assert_eq!(
            (primary.parked.load(Relaxed), replica.parked.load(Relaxed)),
            (1, 1)
        );
        // A pool a reload closed: its spot is given up at the next park elsewhere.
        primary.close();
        let r = replica.checkout_parked_first(&a, &metrics).await.unwrap();
        replica.park(r, &mut a);
        assert_eq!(a.0.len(), 1);
        a.clear();
        assert_eq!(replica.parked.load(Relaxed), 0);
        assert_eq!(replica.status(), (1, 1));
    }

    /// Waiting clients are served in the order they came, and a connection given back goes to
    /// the first of them: not to a client that asks after them (the one that gave it back,
    /// asking again at once, included). Otherwise, with many clients on a small pool, one
    /// that keeps losing the race waits until checkout_timeout while the rest are served.
    #[tokio::test]
    async fn a_connection_given_back_goes_to_the_client_that_waited_longest() {
        let pool = Arc::new(BackendPool::new(
            Fake,
            limits(1, Duration::from_secs(5)),
            None,
            None,
        ));
        let held = pool.checkout().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for who in 1..=3 {
            let (pool, order) = (pool.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let conn = pool.checkout().await.unwrap();
                order.lock().unwrap().push(who);
                tokio::task::yield_now().await;
                release(conn);
            }));
            // Each waits before the next asks.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(pool.signal().waiting.load(Relaxed), 3);
        // Given back, and asked for again at once by the same client.
        release(held);
        let again = pool.checkout().await.unwrap();
        order.lock().unwrap().push(0);
        release(again);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 3, 0]);
    }

    /// A closed pool (a reload replaced it) hands nothing on: its waiting clients are told it
    /// closed, and the connection given back closes; a client that stopped waiting takes
    /// nothing with it.
    #[tokio::test]
    async fn a_closed_pool_hands_no_connection_to_its_waiting_clients() {
        let pool = Arc::new(BackendPool::new(
            Fake,
            limits(1, Duration::from_millis(50)),
            None,
            None,
        ));
        let held = pool.checkout().await.unwrap();
        // One that gives up: its place in the queue is skipped later.
        let gone = pool.checkout().await;
        assert!(matches!(gone, Err(CheckoutError::Timeout { .. })));
        let p = pool.clone();
        let waiter = tokio::spawn(async move { p.checkout().await.map(|c| c.0) });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        pool.close();
        release(held);
        assert!(matches!(
            waiter.await.unwrap(),
            Err(CheckoutError::Closed(_))
        ));
        assert_eq!(pool.status(), (0, 0), "the connection closed");
    }
}
