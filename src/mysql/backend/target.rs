//! Where and as whom the proxy connects to a MySQL / MariaDB server: the pool's
//! [`crate::pool::Connector`], the password-less logins that pass a client's proof on
//! ([`PassThrough`]), and KILL over a connection of its own.

use super::{MyConn, MyConnectError, MyQueryError, ER_NO_SUCH_THREAD};
use crate::config::BackendAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where and as whom to connect.
#[derive(Clone, PartialEq)]
pub struct MyTarget {
    pub addr: BackendAddr,
    pub user: String,
    pub password: Option<String>,
    /// Default schema of the connection (`CLIENT_CONNECT_WITH_DB`); none when `None`.
    pub database: Option<String>,
    /// Bound on the whole login: TCP connect, handshake and authentication.
    pub connect_timeout: Duration,
    /// TLS to the server (`[[cluster]] tls`).
    pub tls: crate::net::backend_tls::ServerTlsConfig,
    /// Without a `password`: what the client's own login lets the proxy answer the server
    /// with (see [`PassThrough`]).
    pub pass_through: Option<Arc<PassThrough>>,
}

/// How the proxy logs in to servers as a user whose password it does not have, where the
/// servers see each client's own user (`server_login = "client"`), as ProxySQL does: a
/// mysql_native_password client response checked against the user's `mysql_native_hash`
/// reveals `SHA1(password)`, which answers the server's mysql_native_password challenge.
pub struct PassThrough {
    user: String,
    /// `SHA1(SHA1(password))` from the config: only a stage1 of it is taken.
    stored: [u8; 20],
    stage1: Mutex<Option<[u8; 20]>>,
}

impl PartialEq for PassThrough {
    /// The same user and hash from the config (what was learned since does not count).
    fn eq(&self, other: &Self) -> bool {
        (&self.user, &self.stored) == (&other.user, &other.stored)
    }
}

impl PassThrough {
    /// The pass-through for config user `u` in a cluster whose servers see it: `None` when
    /// it has a password for the servers or no mysql_native_hash.
    pub fn of(u: &crate::config::User) -> Option<PassThrough> {
        if u.server_login().1.is_some() {
            return None;
        }
        let stored =
            crate::mysql::auth::NativePasswordHash::parse(u.mysql_native_hash.as_deref()?).ok()?;
        Some(PassThrough {
            user: u.name.clone(),
            stored: stored.0,
            stage1: Mutex::new(None),
        })
    }

    /// Take `stage1` from a verified login, if it is of this user's hash.
    pub fn learn(&self, stage1: [u8; 20]) {
        if crate::mysql::auth::native_hash_of_stage1(&stage1) == self.stored {
            *self.stage1.lock().unwrap() = Some(stage1);
        }
    }

    pub(super) fn stage1(&self) -> Option<[u8; 20]> {
        *self.stage1.lock().unwrap()
    }
}

impl std::fmt::Debug for MyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MyTarget")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("database", &self.database)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl MyTarget {
    /// `KILL QUERY id` (or `KILL id` for the whole connection when `query_only` is false)
    /// over a new connection, within `timeout` in all. It logs in as the target's user, who
    /// owns the connections it opened and so needs no extra privilege to kill them. A thread
    /// that is already gone is not an error. The caller marks the target [`MyConn::killed`].
    pub async fn kill(
        &self,
        connection_id: u32,
        query_only: bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let work = async {
            let mut conn = MyConn::connect(&MyTarget {
                database: None,
                connect_timeout: timeout.min(self.connect_timeout),
                ..self.clone()
            })
            .await
            .map_err(|e| e.to_string())?;
            let what = if query_only { "QUERY " } else { "" };
            let answer = conn
                .query(&format!("KILL {what}{connection_id}"), timeout)
                .await;
            if !conn.broken {
                crate::pool::Reusable::say_goodbye(&mut conn);
            }
            match answer {
                Ok(_) => Ok(()),
                Err(MyQueryError::Server {
                    code: ER_NO_SUCH_THREAD,
                    ..
                }) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "KILL on {} took longer than {timeout:?}",
                    self.addr
                ))
            })
    }
}

impl crate::pool::Connector for MyTarget {
    type Conn = MyConn;
    type Error = MyConnectError;
    type Ext = ();

    async fn connect(&self) -> Result<MyConn, MyConnectError> {
        MyConn::connect(self).await
    }

    fn addr(&self) -> BackendAddr {
        self.addr
    }

    fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    fn timed_out(&self) -> MyConnectError {
        MyConnectError::Timeout {
            addr: self.addr,
            timeout: self.connect_timeout,
        }
    }
}

/// A pool of connections to one MySQL / MariaDB server.
pub type MyPool = crate::pool::BackendPool<MyTarget>;
/// A checked-out MySQL / MariaDB server connection.
pub type MyPooled = crate::pool::Pooled<MyTarget>;
/// Why no MySQL / MariaDB server connection could be checked out.
pub type MyCheckoutError = crate::pool::CheckoutError<MyConnectError>;
