//! When a pool closes connections it would otherwise keep: `server_lifetime` and
//! `server_idle_timeout`, measured on a coarse clock the sweeper advances, so that the
//! statement path reads no clock for them.

use super::{release, BackendPool, Connector, Pooled, Reusable};
use deadpool::managed::Object;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// When a server connection was opened and last given back, in [`coarse_ms`]: what the
/// pool's lifetime and idle limits are measured in; and the pool's reconnect epoch when it
/// was opened (see [`BackendPool::reconnect`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stamps {
    pub opened: u64,
    pub idle_since: u64,
    pub epoch: u64,
}

static COARSE_MS: AtomicU64 = AtomicU64::new(0);

fn process_start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds since the process started, as of the last [`tick`] (the sweeper's, once a
/// second): connections are stamped with it when given back, so the statement path reads no
/// clock for the pool's limits (they are minutes long; a second is close enough).
pub fn coarse_ms() -> u64 {
    COARSE_MS.load(Relaxed)
}

/// Advance [`coarse_ms`] to now; now.
pub fn tick() -> u64 {
    let ms = process_start().elapsed().as_millis() as u64;
    COARSE_MS.fetch_max(ms, Relaxed);
    ms
}

/// How a pool is built: its size per worker, how long a checkout waits, and when it closes
/// connections it would otherwise keep. A reload that changes any of them builds new pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    pub size: usize,
    pub checkout_timeout: Duration,
    /// A connection this old is closed when given back instead of pooled (zero: never).
    pub lifetime: Duration,
    /// An idle connection given back this long ago is closed by [`BackendPool::sweep`]
    /// (zero: never).
    pub idle_timeout: Duration,
    /// TCP keepalive set on each new connection (`[general] tcp_keepalive`).
    pub keepalive: Option<crate::config::Keepalive>,
}

impl PoolLimits {
    /// `size` connections per worker, checkouts waiting up to `checkout_timeout`, kept
    /// however old or idle.
    pub fn new(size: usize, checkout_timeout: Duration) -> PoolLimits {
        PoolLimits {
            size,
            checkout_timeout,
            lifetime: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            keepalive: None,
        }
    }

    /// The limits `[pool]` (and `[general]`'s TCP keepalive) set, for pools of `size`
    /// connections per worker.
    pub fn of(cfg: &crate::config::Config, size: usize) -> PoolLimits {
        PoolLimits {
            size,
            checkout_timeout: cfg.pool.checkout_timeout,
            lifetime: cfg.pool.server_lifetime,
            idle_timeout: cfg.pool.server_idle_timeout,
            keepalive: cfg.general.keepalive(),
        }
    }

    /// Neither limit is set: no clock is read for them.
    pub(super) fn off(&self) -> bool {
        self.lifetime.is_zero() && self.idle_timeout.is_zero()
    }

    /// `conn` is past the lifetime or the idle timeout at `now` ([`coarse_ms`]).
    pub(super) fn expired<T: Reusable>(&self, conn: &T, now: u64) -> bool {
        let stamps = conn.stamps();
        self.too_old(stamps, now)
            || (!self.idle_timeout.is_zero()
                && now.saturating_sub(stamps.idle_since) >= self.idle_timeout.as_millis() as u64)
    }

    /// Past the lifetime at `now`: closed when given back.
    pub(super) fn too_old(&self, stamps: Stamps, now: u64) -> bool {
        !self.lifetime.is_zero()
            && now.saturating_sub(stamps.opened) >= self.lifetime.as_millis() as u64
    }
}

/// A parked connection not taken: closed if past its pool's `limits`, else given back.
pub(super) fn unfit<C: Connector>(conn: Pooled<C>, limits: PoolLimits) {
    if conn.reusable() && limits.expired(conn.as_ref().as_ref(), coarse_ms()) {
        let pool = Object::pool(&conn);
        Object::take(conn).say_goodbye();
        if let Some(pool) = pool {
            pool.manager().signal.returned(&pool);
        }
    } else {
        release(conn);
    }
}

impl<C: Connector> BackendPool<C> {
    /// PgBouncer's RECONNECT: every connection open now is closed instead of reused, the idle
    /// ones (in the pool and parked) at once, the ones in use when they are given back (a
    /// transaction finishes on its connection); the pool opens new ones as needed. How many
    /// closed now.
    pub fn reconnect(&self) -> usize {
        self.pool.manager().epoch.fetch_add(1, Relaxed);
        self.sweep()
    }

    /// Close the idle connections past the lifetime or the idle timeout, in the pool and
    /// parked by clients (see [`PoolLimits`]); how many. Run once a second by the sweeper.
    pub fn sweep(&self) -> usize {
        let manager = self.pool.manager();
        let limits = manager.limits;
        let epoch = manager.epoch.load(Relaxed);
        if limits.off() && epoch == 0 {
            return 0;
        }
        let now = tick();
        let gone = |c: &C::Conn| limits.expired(c, now) || c.stamps().epoch < epoch;
        let removed = self.pool.retain(|conn, _| !gone(conn.as_ref())).removed;
        let mut closed = removed.len();
        for mut conn in removed {
            conn.say_goodbye();
        }
        if self.parked.load(Relaxed) > 0 {
            let spots: Vec<_> = self
                .spots
                .lock()
                .unwrap()
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .collect();
            for spot in spots {
                let mut slot = spot.conn.lock().unwrap();
                let old = slot.as_ref().is_some_and(|c| gone(c.as_ref().as_ref()));
                if old {
                    if let Some(conn) = slot.take() {
                        self.parked.fetch_sub(1, Relaxed);
                        drop(slot);
                        Object::take(conn).say_goodbye();
                        closed += 1;
                    }
                }
            }
        }
        if closed > 0 {
            self.signal().returned(&self.pool);
        }
        closed
    }
}
