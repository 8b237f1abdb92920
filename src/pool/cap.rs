//! Limits on the connections of a group of pools, each worker thread's pool a member:
//! - to one server over every pool that reaches it (each user's own, each worker's):
//!   `[[cluster]] max_server_connections`, PgBouncer's `max_db_connections` ([`ServerCaps`]);
//! - of one pool over the worker threads (`[pool] size`, a cluster's `pool_size`): every
//!   worker has its own pool of a server for a login, and together they hold at most that
//!   many connections ([`PoolGroups`]). A worker's pool is not held to a share of the size:
//!   when its clients need more while another worker's connections sit idle, it takes their
//!   place, as a single pool would have handed them over.
//!
//! A pool that needs one more connection at a limit first closes an idle connection of
//! another pool of the group (PgBouncer waits for one to time out instead); with none idle
//! its clients wait, within `checkout_timeout`, for a connection of the group to close or go
//! idle.

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
    /// Close one connection in use when it is next given back, instead of keeping it, as
    /// long as the pool then holds more than `keep`; whether that was asked.
    fn shed_one(&self, keep: usize) -> bool;
    /// Clients wait for a connection of this pool now.
    fn waiting(&self) -> bool;
}

/// The members of `live` other than `me`.
fn others<'a>(
    live: &'a [Arc<dyn Member>],
    me: &dyn Member,
) -> impl Iterator<Item = &'a Arc<dyn Member>> + 'a {
    let me = me as *const dyn Member as *const ();
    live.iter()
        .filter(move |m| Arc::as_ptr(m) as *const () != me)
}

/// The limit for one server of one cluster.
#[derive(Default)]
pub struct ServerCap {
    /// 0: no limit.
    max: AtomicUsize,
    /// Every pool of the server (dead ones are dropped as they are met). Locked only to
    /// read or change the list: what is done with its pools (closing a connection, which
    /// may give another back and wake this limit's clients) is done without it.
    members: Mutex<Vec<Weak<dyn Member>>>,
    /// Held through one admission (count, close, reserve), so that two pools never both
    /// take the last place.
    admitting: Mutex<()>,
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
    /// `held`, or first asking another limit, which may refuse: false) runs under the same
    /// lock as the count, so two pools never both take the last place. Limits asked inside
    /// one another are always asked in the same order (a pool's own group first, then its
    /// server's), so their locks are too.
    pub fn admit(&self, me: &dyn Member, reserve: impl FnOnce() -> bool) -> bool {
        let max = self.max();
        if max == 0 {
            return reserve();
        }
        let _one_at_a_time = self.admitting.lock().unwrap();
        let live = self.live();
        let held: usize = live.iter().map(|m| m.held()).sum();
        let room = held < max || others(&live, me).any(|m| m.close_idle());
        if !room {
            self.starved.store(true, Relaxed);
            return false;
        }
        reserve()
    }

    /// [`ServerCap::admit`] for a pool group (see [`PoolGroups`]), whose members are the
    /// workers' pools of one server and login. Under the size, `me` may open one more. At
    /// the size, each worker is owed an equal share (the size over the workers, rounded
    /// down): a pool under its share closes an idle connection of another at once, or, with
    /// none idle, asks one over its share to close a connection when it is next given back
    /// ([`Member::shed_one`]; that wakes this group's clients). A pool at or over its share
    /// takes another's idle place only for a client that is `patient` (it has waited a
    /// while): under a steady load connections given back serve each worker's own clients,
    /// and moving a place costs a new server connection.
    pub fn admit_in_group(
        &self,
        me: &dyn Member,
        patient: bool,
        reserve: impl FnOnce() -> bool,
    ) -> bool {
        let max = self.max();
        let _one_at_a_time = self.admitting.lock().unwrap();
        let live = self.live();
        let held: usize = live.iter().map(|m| m.held()).sum();
        let share = max / live.len().max(1);
        let owed = me.held() < share;
        if held < max {
            // A free place goes first to a pool under its share whose clients wait (one
            // given up for it, see below).
            let first = owed || !others(&live, me).any(|m| m.waiting() && m.held() < share);
            return first && reserve();
        }
        if (owed || patient) && others(&live, me).any(|m| m.close_idle()) {
            return reserve();
        }
        if owed {
            let _ = others(&live, me).any(|m| m.held() > share && m.shed_one(share));
        }
        if patient {
            // Woken when a connection of the group goes idle (it can be closed for it).
            self.starved.store(true, Relaxed);
        }
        false
    }

    /// Whether the pools under this limit hold fewer connections than it allows (always,
    /// without a limit).
    pub fn has_room(&self) -> bool {
        let max = self.max();
        max == 0 || self.live().iter().map(|m| m.held()).sum::<usize>() < max
    }

    /// The pools under this limit that are still open.
    fn live(&self) -> Vec<Arc<dyn Member>> {
        let members = self.members.lock().unwrap();
        members.iter().filter_map(Weak::upgrade).collect()
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
        for m in self.live() {
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

/// The limits of every pool over the worker threads, by cluster name, login (the client
/// user a cluster with `server_login = "client"` logs in as; "" for the cluster's own user)
/// and server address; kept across reloads (a reload sets their maximum), so that the pools
/// a reload keeps and the ones it makes count together.
#[derive(Default)]
pub struct PoolGroups(Mutex<HashMap<(String, String, BackendAddr), Arc<ServerCap>>>);

impl PoolGroups {
    /// The groups of cluster `cluster`'s pools for `login` at `addrs`, each set to hold at
    /// most `size` connections.
    pub fn for_login(
        &self,
        cluster: &str,
        login: &str,
        addrs: impl Iterator<Item = BackendAddr>,
        size: usize,
    ) -> Vec<Arc<ServerCap>> {
        let mut all = self.0.lock().unwrap();
        addrs
            .map(|a| {
                let group = all
                    .entry((cluster.to_owned(), login.to_owned(), a))
                    .or_default()
                    .clone();
                group.max.store(size.max(1), Relaxed);
                group
            })
            .collect()
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
        fn shed_one(&self, _: usize) -> bool {
            false
        }
        fn waiting(&self) -> bool {
            false
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
                true
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
