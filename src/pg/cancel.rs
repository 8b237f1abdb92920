//! Cancel requests. Each client gets a proxy-issued (pid, secret) key; while it runs a
//! statement its slot names the backend connection (address and server key) doing the work.
//! A CancelRequest with a matching key is forwarded to that server and nowhere else.

use super::codec::put_cancel_request;
use super::mux::Lane;
use crate::config::BackendAddr;
use crate::engine::{ClientInfo, ClientRow};
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where a client's current statement runs: server address and the server's key, and the
/// TLS settings of the connection when it is encrypted (the cancel then goes over TLS too).
#[derive(Debug, Clone, PartialEq)]
pub struct CancelTarget {
    pub addr: BackendAddr,
    pub pid: i32,
    pub secret: i32,
    pub tls: Option<Arc<crate::net::backend_tls::ServerTlsConfig>>,
}

impl crate::pg::backend::BackendConn {
    /// Where a cancel for the statement running on this connection goes.
    pub fn cancel_target(&self) -> CancelTarget {
        CancelTarget {
            addr: self.addr,
            pid: self.pid,
            secret: self.secret,
            tls: self.cancel_tls.clone(),
        }
    }
}

/// Where a cancel for a client goes now.
#[derive(Clone)]
pub enum CancelRoute {
    /// The server connection the client holds.
    Server(CancelTarget),
    /// A statement queued on a multiplexed lane (see [`super::mux`]).
    Lane(Weak<Lane>, u64),
}

impl CancelRoute {
    /// Carry out a cancel (best effort, bounded in time).
    pub async fn cancel(self, timeout: std::time::Duration) {
        match self {
            CancelRoute::Server(t) => {
                let _ = send_cancel(t, timeout).await;
            }
            CancelRoute::Lane(lane, id) => {
                if let Some(l) = lane.upgrade() {
                    l.cancel(id);
                }
            }
        }
    }

    /// The server connection, for a client holding one.
    pub fn server(&self) -> Option<CancelTarget> {
        match self {
            CancelRoute::Server(t) => Some(t.clone()),
            CancelRoute::Lane(..) => None,
        }
    }
}

/// One client's slot; set while it holds a backend connection or has a statement on a lane.
/// It also records whether a cancel was sent to the held connection: such a connection is
/// not given to another client, because the cancel may reach the server only after the
/// statement it was meant for has ended, and would then stop the next client's statement.
///
/// And it carries the client's [`ClientEnd`](crate::engine::ClientEnd), through which
/// `POST /clients/close` ends the session.
#[derive(Default)]
pub struct CancelSlot {
    route: Mutex<(Option<CancelRoute>, bool)>,
    pub end: Arc<crate::engine::ClientEnd>,
    /// How long its server has been running its statement (`[pool] query_timeout`).
    pub clock: crate::engine::StatementClock,
}

impl CancelSlot {
    /// The client now holds this connection (a cancel was sent to none of it yet).
    pub fn set(&self, t: Option<CancelTarget>) {
        *self.route.lock().unwrap() = (t.map(CancelRoute::Server), false);
    }
    pub fn set_route(&self, r: Option<CancelRoute>) {
        *self.route.lock().unwrap() = (r, false);
    }
    /// The client lets go of its connection: true if a cancel was sent to it meanwhile.
    pub fn clear(&self) -> bool {
        std::mem::take(&mut *self.route.lock().unwrap()).1
    }
    /// Where a cancel goes now, noting that one is sent (in the same critical section as
    /// [`CancelSlot::clear`], so a connection is either still held when the cancel is
    /// noted, and then not reused, or the cancel finds nothing to send to).
    pub fn for_cancel(&self) -> Option<CancelRoute> {
        let mut slot = self.route.lock().unwrap();
        if matches!(slot.0, Some(CancelRoute::Server(_))) {
            slot.1 = true;
        }
        slot.0.clone()
    }
}

/// Process-wide map from proxy-issued pid to its client's entry.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<i32, Entry>>,
    /// This process's parity ([`crate::engine::Lineage`]): the pid bit [`PARITY_BIT`] of
    /// every key it issues.
    odd: std::sync::atomic::AtomicBool,
}

/// The pid bit that tells which of two processes side by side (a handover) issued a key.
pub const PARITY_BIT: i32 = 0x4000_0000;

/// A connected client's key secret, its slot, and what `/clients` shows of it.
struct Entry {
    secret: i32,
    slot: Arc<CancelSlot>,
    info: ClientInfo,
}

/// Removes the client's key from the registry when the session ends.
pub struct CancelKey {
    pub pid: i32,
    pub secret: i32,
    pub slot: Arc<CancelSlot>,
    registry: Arc<CancelRegistry>,
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        self.registry.map.lock().unwrap().remove(&self.pid);
    }
}

impl CancelRegistry {
    /// Issue a fresh key (positive pid, unique among live clients) to the client `info`
    /// describes.
    pub fn issue(self: &Arc<Self>, info: ClientInfo) -> CancelKey {
        let slot = Arc::new(CancelSlot::default());
        let mut map = self.map.lock().unwrap();
        loop {
            let pid = (rand::random::<i32>() & (PARITY_BIT - 1)) | self.parity();
            if pid == 0 || map.contains_key(&pid) {
                continue;
            }
            let secret = rand::random::<i32>();
            let entry = Entry {
                secret,
                slot: slot.clone(),
                info,
            };
            map.insert(pid, entry);
            return CancelKey {
                pid,
                secret,
                slot,
                registry: self.clone(),
            };
        }
    }

    /// Issue keys with this parity from now on.
    pub fn set_odd(&self, odd: bool) {
        self.odd.store(odd, std::sync::atomic::Ordering::Relaxed);
    }

    fn parity(&self) -> i32 {
        if self.odd.load(std::sync::atomic::Ordering::Relaxed) {
            PARITY_BIT
        } else {
            0
        }
    }

    /// Whether this process issued `pid` (rather than the one it took over from).
    pub fn issued_here(&self, pid: i32) -> bool {
        pid & PARITY_BIT == self.parity()
    }

    /// Where the statement of the client with this key runs, if the key matches.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<CancelRoute> {
        let map = self.map.lock().unwrap();
        let entry = map.get(&pid)?;
        // Compare without an early exit so timing does not reveal the secret.
        let same = (entry.secret ^ secret) == 0;
        if same {
            entry.slot.for_cancel()
        } else {
            None
        }
    }
}

impl CancelRegistry {
    /// End the connection of the client with proxy pid `pid` (`POST /clients/close`); false
    /// if no such client is connected.
    pub fn close(&self, pid: i32) -> bool {
        let end = self
            .map
            .lock()
            .unwrap()
            .get(&pid)
            .map(|e| e.slot.end.clone());
        match end {
            Some(end) => {
                end.end();
                true
            }
            None => false,
        }
    }

    /// `[pool] query_timeout` at `now` ([`crate::engine::Engine::clock_ms`]): a statement
    /// that ran `limit` ms is cancelled as its client's own cancel request would cancel it
    /// (the connection is then not pooled again); a client whose server has not answered
    /// `grace` ms after that is disconnected as `POST /clients/close` would.
    pub fn sweep_overdue(&self, now: u64, limit: u64, grace: u64) {
        use crate::engine::Overdue;
        let due: Vec<(i32, Arc<CancelSlot>, Overdue, String)> = {
            let map = self.map.lock().unwrap();
            map.iter()
                .filter_map(|(pid, e)| {
                    let what = e.slot.clock.overdue(now, limit, grace)?;
                    let (user, database) = e.info.login.lock().unwrap().clone();
                    Some((*pid, e.slot.clone(), what, format!("{user}@{database}")))
                })
                .collect()
        };
        for (pid, slot, what, client) in due {
            match what {
                Overdue::Stop => {
                    tracing::info!(pid, client, "a statement ran past query_timeout: cancelled");
                    if let Some(route) = slot.for_cancel() {
                        tokio::spawn(route.cancel(std::time::Duration::from_secs(5)));
                    }
                }
                Overdue::Disconnect => {
                    tracing::warn!(
                        pid,
                        client,
                        "the server did not answer a statement cancelled for query_timeout: \
                         the client is disconnected"
                    );
                    slot.end.end();
                }
            }
        }
    }

    /// Every connected client as `GET /clients` lists it.
    pub fn clients(&self) -> Vec<ClientRow> {
        let map = self.map.lock().unwrap();
        map.iter()
            .map(|(pid, Entry { slot, info, .. })| {
                let server = match &slot.route.lock().unwrap().0 {
                    Some(CancelRoute::Server(t)) => Some(t.addr.to_string()),
                    Some(CancelRoute::Lane(..)) => Some("multiplexed".to_owned()),
                    None => None,
                };
                info.row("postgres", i64::from(*pid), server)
            })
            .collect()
    }
}

/// Send a CancelRequest to a server (best effort, bounded in time).
pub async fn send_cancel(
    target: CancelTarget,
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    let work = async {
        let mut s = crate::net::backend::BackendStream::connect(target.addr).await?;
        if let Some(tls) = &target.tls {
            // As libpq 17 does: SSLRequest, the handshake the connection had, then the
            // CancelRequest inside it (servers take it there). No fallback to plain.
            s.write_all(&crate::pg::codec::SSL_REQUEST_PACKET).await?;
            let mut answer = [0u8; 1];
            s.read_exact(&mut answer).await?;
            if answer[0] != b'S' {
                return Err(std::io::Error::other(
                    "the server refused TLS for the cancel request",
                ));
            }
            s.start_tls(tls).await?;
        }
        let mut b = BytesMut::with_capacity(16);
        put_cancel_request(&mut b, target.pid, target.secret);
        s.write_all(&b).await?;
        s.shutdown().await
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "cancel timed out",
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_checked() {
        let reg = Arc::new(CancelRegistry::default());
        let info = |user: &str| {
            ClientInfo::new(
                crate::net::Peer::Tcp("10.0.0.1:5".parse().unwrap()),
                user.into(),
                "db".into(),
            )
        };
        let a = reg.issue(info("alice"));
        let b = reg.issue(info("bob"));
        assert_ne!(a.pid, b.pid);
        let t = CancelTarget {
            addr: "127.0.0.1:1".parse().unwrap(),
            pid: 42,
            secret: 7,
            tls: None,
        };
        a.slot.set(Some(t.clone()));
        let server = |r: Option<CancelRoute>| r.and_then(|r| r.server());
        assert_eq!(server(reg.lookup(a.pid, a.secret)), Some(t));
        assert!(reg.lookup(a.pid, a.secret.wrapping_add(1)).is_none());
        assert!(reg.lookup(b.pid, b.secret).is_none());
        // The client list: alice holds a connection, bob none.
        let mut rows = reg.clients();
        rows.sort_by(|x, y| x.user.cmp(&y.user));
        let shown: Vec<_> = rows
            .iter()
            .map(|r| (r.id, &*r.user, r.state, r.server.as_deref(), &*r.addr))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    i64::from(a.pid),
                    "alice",
                    "active",
                    Some("127.0.0.1:1"),
                    "10.0.0.1:5"
                ),
                (i64::from(b.pid), "bob", "idle", None, "10.0.0.1:5")
            ]
        );
        let pid = a.pid;
        drop(a);
        assert!(reg.lookup(pid, 0).is_none());
        assert_eq!(reg.clients().len(), 1);
    }
}
