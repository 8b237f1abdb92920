//! A limit on the connections to one server over every pool that reaches it (each user's
//! own, each worker's): `[[cluster]] max_server_connections`, PgBouncer's
//! `max_db_connections`. A pool that needs one more connection at the limit first closes an
//! idle connection of another pool of that server (PgBouncer waits for one to time out
//! instead); with none idle its clients wait, within `checkout_timeout`, for a connection of
//! that server to close.

use crate::config::BackendAddr;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

/// What the limit asks of a pool.
pub trait Member: Send + Sync {
    /// Connections open and being opened.
    fn held(&self) -> usize;
    /// Close one idle (or parked) connection; whether there was one.
    fn close_idle(&self) -> bool;
    /// A connection of the server closed: clients waiting for one may try again.
    fn wake(&self);
}

/// The limit for one server of one cluster.
#[derive(Default)]
pub struct ServerCap {
    /// 0: no limit.
    max: AtomicUsize,
    /// Every pool of the server (dead ones are dropped as they are met).
    members: Mutex<Vec<Weak<dyn Member>>>,
    /// A pool was refused room since the last wakeup: a connection given back or parked
    /// anywhere at the server wakes the waiting clients (it can be closed for them).
    starved: std::sync::atomic::AtomicBool,
    /// Every open connection of those pools, to be ended at once when the server's probes
    /// find it gone (`[health] close_replica_connections`).
    pub sockets: Arc<crate::net::backend::SocketList>,
}

impl ServerCap {
    pub fn max(&self) -> usize {
        self.max.load(Relaxed)
    }

    pub fn join(&self, member: Weak<dyn Member>) {
        let mut members = self.members.lock().unwrap();
        members.retain(|m| m.strong_count() > 0);
        members.push(member);
    }

    /// Whether `me` may open one more connection: under the limit, or once an idle
    /// connection of another pool was closed. `reserve` (counting the connect in `me`'s
    /// `held`) runs under the same lock as the count, so two pools never both take the last
    /// place.
    pub fn admit(&self, me: &dyn Member, reserve: impl FnOnce()) -> bool {
        let max = self.max();
        if max == 0 {
            reserve();
            return true;
        }
        let members = self.members.lock().unwrap();
        let live: Vec<Arc<dyn Member>> = members.iter().filter_map(Weak::upgrade).collect();
        let held: usize = live.iter().map(|m| m.held()).sum();
        let me = me as *const dyn Member as *const ();
        let room = held < max
            || live
                .iter()
                .filter(|m| Arc::as_ptr(m) as *const () != me)
                .any(|m| m.close_idle());
        if room {
            reserve();
        } else {
            self.starved.store(true, Relaxed);
        }
        room
    }

    /// A connection of the server went idle: if a pool was refused room, wake the waiting
    /// clients (one load when none was).
    pub fn nudge(&self) {
        if self.starved.load(Relaxed) && self.starved.swap(false, Relaxed) {
            self.freed();
        }
    }

    /// A connection of the server closed (or a connect ended without one): wake the clients
    /// of every pool of it that may be waiting for room.
    pub fn freed(&self) {
        if self.max() == 0 {
            return;
        }
        let live: Vec<Arc<dyn Member>> = self
            .members
            .lock()
            .unwrap()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for m in live {
            m.wake();
        }
    }
}

/// The limits of every server, by cluster name and address; kept across reloads (a reload
/// sets their maximum), so that the pools a reload keeps and the ones it makes count
/// together.
#[derive(Default)]
pub struct ServerCaps(Mutex<HashMap<(String, BackendAddr), Arc<ServerCap>>>);

impl ServerCaps {
    /// The limits of cluster `c`'s servers at `addrs`, set to its `max_server_connections`
    /// (also for the pools a reload keeps).
    pub fn for_cluster(
        &self,
        c: &crate::config::Cluster,
        addrs: impl Iterator<Item = BackendAddr>,
    ) -> Vec<Arc<ServerCap>> {
        addrs
            .map(|a| self.of(&c.name, a, c.max_server_connections))
            .collect()
    }

    /// The open connections to server `addr` of cluster `cluster`, over all its pools.
    pub fn sockets_of(
        &self,
        cluster: &str,
        addr: BackendAddr,
    ) -> Arc<crate::net::backend::SocketList> {
        let mut all = self.0.lock().unwrap();
        all.entry((cluster.to_owned(), addr))
            .or_default()
            .sockets
            .clone()
    }

    /// The limit of server `addr` of cluster `cluster`, set to `max` (0: none).
    pub fn of(&self, cluster: &str, addr: BackendAddr, max: usize) -> Arc<ServerCap> {
        let cap = self
            .0
            .lock()
            .unwrap()
            .entry((cluster.to_owned(), addr))
            .or_default()
            .clone();
        cap.max.store(max, Relaxed);
        cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[derive(Default)]
    struct Fake {
        open: AtomicUsize,
        idle: AtomicUsize,
        woken: AtomicBool,
    }

    impl Member for Fake {
        fn held(&self) -> usize {
            self.open.load(Relaxed)
        }
        fn close_idle(&self) -> bool {
            let idle = self.idle.load(Relaxed);
            if idle == 0 {
                return false;
            }
            self.idle.store(idle - 1, Relaxed);
            self.open.fetch_sub(1, Relaxed);
            true
        }
        fn wake(&self) {
            self.woken.store(true, Relaxed);
        }
    }

    #[test]
    fn the_last_place_goes_once_and_idle_connections_of_others_make_room() {
        let caps = ServerCaps::default();
        let addr: BackendAddr = "127.0.0.1:5432".parse().unwrap();
        let cap = caps.of("c", addr, 2);
        let (a, b) = (Arc::new(Fake::default()), Arc::new(Fake::default()));
        cap.join(Arc::downgrade(&(a.clone() as Arc<dyn Member>)));
        cap.join(Arc::downgrade(&(b.clone() as Arc<dyn Member>)));
        let grow = |m: &Arc<Fake>| {
            cap.admit(m.as_ref(), || {
                m.open.fetch_add(1, Relaxed);
            })
        };
        assert!(grow(&a) && grow(&a));
        // At the limit, nothing idle: b waits.
        assert!(!grow(&b));
        assert_eq!(b.held(), 0);
        // One of a's goes idle: b closes it and takes its place.
        a.idle.store(1, Relaxed);
        assert!(grow(&b));
        assert_eq!((a.held(), b.held()), (1, 1));
        // A pool's own idle connections are not closed to make room for it.
        a.idle.store(1, Relaxed);
        assert!(!grow(&a));
        assert_eq!(a.held(), 1);
        cap.freed();
        assert!(a.woken.load(Relaxed) && b.woken.load(Relaxed));
        // The same cap after a reload, with no limit.
        let same = caps.of("c", addr, 0);
        assert!(Arc::ptr_eq(&same, &cap));
        assert!(grow(&a) && grow(&a));
    }
}
