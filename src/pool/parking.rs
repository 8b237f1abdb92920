//! Parking: a client keeps the clean connection it gave back while no other client needs
//! it (see [`Spot`]).

use super::limits::{coarse_ms, unfit};
use super::{release, BackendPool, Connector, Pooled, Reusable};
use deadpool::managed::Object;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

/// What the pool's recycle check asks of an idle connection, for one that waited elsewhere
/// (a parked one): clean, and nothing arrived from the server meanwhile.
fn fit<C: Connector>(conn: &Pooled<C>) -> bool {
    conn.reusable() && !conn.stale()
}

/// Where a client keeps the clean connection it gave back while nobody else needs it, so
/// that its next transaction, if it goes to the same server, takes it again without a
/// checkout (and finds it hot in the cache, with the client's session state already on it).
/// A parked connection counts as idle: a checkout that finds no idle connection in the pool
/// takes one from a spot before it waits or opens a new one. The pool lists each spot while it
/// may hold a connection.
pub(super) struct Spot<C: Connector> {
    pub(super) conn: Mutex<Option<Pooled<C>>>,
    /// On its pool's list of spots.
    pub(super) listed: std::sync::atomic::AtomicBool,
}

impl<C: Connector> Spot<C> {
    /// The connection parked here, if any, taken out (and no longer counted in `pool`).
    pub(super) fn take(&self, pool: &BackendPool<C>) -> Option<Pooled<C>> {
        let conn = self.conn.lock().unwrap().take()?;
        pool.parked.fetch_sub(1, Relaxed);
        Some(conn)
    }
}

/// A client's parking spots, one at each pool it parked a connection at (see
/// [`BackendPool::park`]): a client whose reads go to a replica and writes to the primary
/// keeps one connection at each while nobody else needs them.
pub struct Parkings<C: Connector>(pub(super) Vec<Parking<C>>);

impl<C: Connector> Default for Parkings<C> {
    fn default() -> Self {
        Parkings(Vec::new())
    }
}

impl<C: Connector> Parkings<C> {
    /// The spot at `pool`, if the client has one.
    pub(super) fn at(&self, pool: &Arc<BackendPool<C>>) -> Option<&Parking<C>> {
        self.0.iter().find(|p| Arc::ptr_eq(&p.pool, pool))
    }

    /// The spot at `pool`, made if the client has none there; spots at pools a reload
    /// closed are given up first.
    fn spot_at(&mut self, pool: &Arc<BackendPool<C>>) -> &Arc<Spot<C>> {
        self.0.retain(|p| !p.pool.pool.is_closed());
        match self.0.iter().position(|p| Arc::ptr_eq(&p.pool, pool)) {
            Some(i) => &self.0[i].spot,
            None => {
                self.0.push(Parking {
                    pool: pool.clone(),
                    spot: Arc::new(Spot {
                        conn: Mutex::new(None),
                        listed: false.into(),
                    }),
                });
                &self.0[self.0.len() - 1].spot
            }
        }
    }

    /// Every parked connection goes back to its pool (the client leaves).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// A client's parking spot at one pool (see [`BackendPool::park`]).
pub struct Parking<C: Connector> {
    pool: Arc<BackendPool<C>>,
    spot: Arc<Spot<C>>,
}

impl<C: Connector> Parking<C> {
    /// The parked connection, if it is still there, clean, and of `pool`; otherwise the
    /// connection (if any) goes back to its pool and the answer is `None`.
    pub fn take_for(&self, pool: &Arc<BackendPool<C>>) -> Option<Pooled<C>> {
        let conn = self.spot.take(&self.pool)?;
        if Arc::ptr_eq(&self.pool, pool)
            && fit(&conn)
            && !pool.pool.manager().retired(conn.stamps())
        {
            Some(conn)
        } else {
            unfit(conn, self.pool.pool.manager().limits);
            None
        }
    }

    /// Give the parked connection (if any) back to its pool (the client leaves).
    fn give_back(&self) {
        if let Some(conn) = self.spot.take(&self.pool) {
            release(conn);
        }
    }
}

impl<C: Connector> Drop for Parking<C> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<C: Connector> BackendPool<C> {
    /// Give `conn` back, or park it in the client's spot at this pool for its next
    /// transaction when it is clean and no other client waits for one of this pool's
    /// connections (see [`Parking`]). Spots at pools a reload closed are given up.
    pub fn park(self: &Arc<Self>, mut conn: Pooled<C>, parkings: &mut Parkings<C>) {
        if !conn.reusable()
            || self.signal().waiting.load(Relaxed) > 0
            || self.pool.is_closed()
            || self.pool.manager().retired(conn.stamps())
        {
            return release(conn);
        }
        // One clock read for both limits, none when neither is set.
        let limits = self.pool.manager().limits;
        if !limits.off() {
            let now = coarse_ms();
            if limits.too_old(conn.stamps(), now) {
                return release(conn);
            }
            conn.stamps_mut().idle_since = now;
        }
        let spot = parkings.spot_at(self);
        // A spot holds one connection: one left there (a checkout that failed before taking
        // it back) goes back to the pool.
        match spot.conn.lock().unwrap().replace(conn) {
            Some(before) => release(before),
            None => {
                self.parked.fetch_add(1, Relaxed);
            }
        }
        if !spot.listed.swap(true, Relaxed) {
            let mut spots = self.spots.lock().unwrap();
            // Spots that hold nothing now (their clients took their connections back, left,
            // or moved to another pool) drop off the list here; one that parks again is
            // listed again. So the list stays about as long as the pool is large.
            if spots.len() >= 2 * self.size + 16 {
                spots.retain(|s| match s.upgrade() {
                    Some(s) if s.conn.lock().unwrap().is_some() => true,
                    Some(s) => {
                        s.listed.store(false, Relaxed);
                        false
                    }
                    None => false,
                });
            }
            spots.push(Arc::downgrade(spot));
        }
        // Parked: another pool of the group refused room may close it.
        for limit in self.pool.manager().limits() {
            limit.nudge();
        }
    }

    /// A connection parked by a client, taken from its spot (the client checks out
    /// normally next time), if one is there and fit for use.
    pub(super) fn take_parked(&self) -> Option<Pooled<C>> {
        if self.parked.load(Relaxed) == 0 {
            return None;
        }
        loop {
            let spot = self.spots.lock().unwrap().pop()?;
            let Some(spot) = spot.upgrade() else { continue };
            spot.listed.store(false, Relaxed);
            match spot.take(self) {
                Some(conn) if fit(&conn) => return Some(conn),
                Some(conn) => unfit(conn, self.pool.manager().limits),
                None => {}
            }
        }
    }

    /// Give back every parked connection (the pool closes).
    pub(super) fn unpark_all(&self) {
        let spots = std::mem::take(&mut *self.spots.lock().unwrap());
        for spot in spots.iter().filter_map(std::sync::Weak::upgrade) {
            spot.listed.store(false, Relaxed);
            if let Some(conn) = spot.take(self) {
                if conn.reusable() {
                    Object::take(conn).say_goodbye();
                } else {
                    release(conn);
                }
            }
        }
    }
}
