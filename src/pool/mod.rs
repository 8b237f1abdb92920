//! Per-backend connection pools (deadpool, managed). Each worker thread has its own pools so a
//! client and the server connection it uses stay on one thread.
//!
//! The pool only takes back connections marked `clean` (idle, outside a transaction, nothing
//! in flight, no leftover session state); [`release`] closes anything else at once so a
//! dirty connection never waits in the pool holding locks.

use crate::pg::backend::{BackendConn, BackendTarget, ConnectError};
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult, Timeouts};
use std::time::Duration;

/// Creates and vets server connections for one backend.
pub struct PgManager {
    pub target: BackendTarget,
}

impl managed::Manager for PgManager {
    type Type = BackendConn;
    type Error = ConnectError;

    async fn create(&self) -> Result<BackendConn, ConnectError> {
        BackendConn::connect(&self.target).await
    }

    async fn recycle(&self, conn: &mut BackendConn, _: &Metrics) -> RecycleResult<ConnectError> {
        if !conn.clean {
            return Err(RecycleError::message("connection was not returned clean"));
        }
        // An idle connection has nothing to say. If the server wrote anyway (a FATAL before
        // a shutdown or crash) or closed it, the socket is readable: drop it. This uses the
        // readiness the event loop already recorded, so it costs no system call.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if conn.stream.poll_read_ready(&mut cx).is_ready() {
            return Err(RecycleError::message(
                "server sent data or closed while idle",
            ));
        }
        Ok(())
    }
}

pub type Pooled = Object<PgManager>;

/// Why no connection could be checked out.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("no connection to {addr} became free within checkout_timeout ({timeout:?}; pool size {size} per worker)")]
    Timeout {
        addr: std::net::SocketAddr,
        timeout: Duration,
        size: usize,
    },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("pool for {0} is closed")]
    Closed(std::net::SocketAddr),
}

/// The pool of one worker for one backend server.
pub struct BackendPool {
    pool: managed::Pool<PgManager>,
    size: usize,
    checkout_timeout: Duration,
}

impl BackendPool {
    pub fn new(target: BackendTarget, size: usize, checkout_timeout: Duration) -> BackendPool {
        let create = target.connect_timeout;
        let pool = managed::Pool::builder(PgManager { target })
            .max_size(size)
            .runtime(deadpool::Runtime::Tokio1)
            .create_timeout(Some(create))
            .queue_mode(managed::QueueMode::Lifo)
            .build()
            .expect("a runtime is set, so building cannot fail");
        BackendPool {
            pool,
            size,
            checkout_timeout,
        }
    }

    /// Whether this pool is what `target`, `size` and `checkout_timeout` would build (a
    /// reload then keeps it).
    pub fn same(&self, target: &BackendTarget, size: usize, checkout_timeout: Duration) -> bool {
        self.pool.manager().target == *target
            && self.size == size
            && self.checkout_timeout == checkout_timeout
            && !self.pool.is_closed()
    }

    /// No more checkouts; idle connections close now, connections in use when returned.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Most connections this pool opens.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.pool.manager().target.addr
    }

    /// Check out a connection, waiting up to `checkout_timeout` for one to come back.
    pub async fn checkout(&self) -> Result<Pooled, CheckoutError> {
        match self.checkout_now().await? {
            Some(conn) => Ok(conn),
            None => self.checkout_waiting().await,
        }
    }

    /// Check out an idle connection, or open one if the pool has room; `Ok(None)` when every
    /// connection is in use. Arms no timer and never waits for another client.
    pub async fn checkout_now(&self) -> Result<Option<Pooled>, CheckoutError> {
        match self.pool.timeout_get(&self.timeouts(Duration::ZERO)).await {
            Ok(conn) => Ok(Some(conn)),
            Err(PoolError::Timeout(managed::TimeoutType::Wait)) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Wait up to `checkout_timeout` for a connection (after [`BackendPool::checkout_now`]
    /// found none).
    pub async fn checkout_waiting(&self) -> Result<Pooled, CheckoutError> {
        tracing::trace!(status = ?self.pool.status(), "checkout waits");
        self.pool
            .timeout_get(&self.timeouts(self.checkout_timeout))
            .await
            .map_err(|e| self.error(e))
    }

    fn timeouts(&self, wait: Duration) -> Timeouts {
        Timeouts {
            wait: Some(wait),
            create: Some(self.pool.manager().target.connect_timeout),
            recycle: None,
        }
    }

    fn error(&self, e: PoolError<ConnectError>) -> CheckoutError {
        match e {
            PoolError::Backend(e) => CheckoutError::Connect(e),
            PoolError::Timeout(managed::TimeoutType::Create) => {
                CheckoutError::Connect(ConnectError::Timeout {
                    addr: self.addr(),
                    timeout: self.pool.manager().target.connect_timeout,
                })
            }
            PoolError::Timeout(_) => CheckoutError::Timeout {
                addr: self.addr(),
                timeout: self.checkout_timeout,
                size: self.size,
            },
            _ => CheckoutError::Closed(self.addr()),
        }
    }

    /// (connections open, idle connections)
    pub fn status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.available)
    }
}

/// Give a connection back: to the pool if clean, otherwise closed now (the server then rolls
/// back whatever transaction it had open).
pub fn release(conn: Pooled) {
    if !conn.clean {
        drop(Object::take(conn));
    }
}
