//! Connections from the proxy to MySQL / MariaDB servers: connect and log in, run the proxy's
//! own statements, reset, and the state the proxy tracks per connection (thread id for KILL,
//! capabilities, status flags, schema, cleanliness, the front end's bookkeeping).
//!
//! Where and as whom a connection goes is a [`MyTarget`] (`target.rs`, with KILL and the
//! pass-through logins); what the proxy's own statements answered, a [`QueryResult`]
//! (`result.rs`). The protocol work is done by two I/O-free state machines, [`Login`]
//! (connection phase, `login.rs`) and [`Response`] (the answer to one command,
//! `response.rs`), fed with whole packets; [`MyConn`] only moves
//! bytes between them and the socket, under a deadline. Every server byte goes through the
//! checked parsers of [`super::codec`]: malformed input gives an error, never a panic, and
//! sizes are bounded before anything is buffered.
//!
//! **Capabilities.** Backend connections always negotiate [`BACKEND_CAPABILITIES`] (as far as
//! the server offers them), plus `CLIENT_CONNECT_WITH_DB` when the target names a database.
//! `CLIENT_MYSQL` (bit 0) is set, so a MariaDB server uses none of its extended capabilities
//! (no progress reports, no metadata caching, no bulk execution) and every packet has the
//! MySQL layout. A front end that forwards a client's packets verbatim must not grant its
//! client more than the connection's [`MyConn::capabilities`]. Flags that change what the
//! server sends for the same statement and that a session cannot change afterwards
//! (`CLIENT_FOUND_ROWS`, `CLIENT_IGNORE_SPACE`, `CLIENT_INTERACTIVE`, `CLIENT_LOCAL_FILES`) are
//! off.
//!
//! **Authentication.** The plugin the server names is answered: `mysql_native_password`, and
//! `caching_sha2_password` (MySQL 8): the fast path, and after "perform full authentication"
//! the RSA key exchange (the proxy asks for the server's public key and sends the password
//! encrypted with it; backend connections have no TLS). An AuthSwitchRequest
//! to one of these is followed once. A handshake naming another plugin (MariaDB's
//! `client_ed25519`, `auth_gssapi_client`, ...) is answered with `mysql_native_password`, which
//! the server accepts or switches from; a switch to a plugin not listed here, or to
//! `mysql_clear_password` (the password in clear over an unencrypted socket), is refused.
//!
//! **Unusable connections.** [`MyConn::query`] and [`MyConn::reset`] clear
//! [`MyConn::clean`] on every error (and `query` when it leaves a transaction open; it never
//! sets it), so a connection handed back to the pool after a failure is closed unless its
//! owner deliberately marks it clean again. An error that leaves the protocol
//! state unknown (I/O, timeout, bytes that break the protocol) also sets [`MyConn::broken`],
//! which nothing clears: [`crate::pool::Reusable::reusable`] is false from then on and further
//! commands are refused. A server ERR ([`MyQueryError::Server`]) leaves the connection in step
//! with the server (only `clean` is cleared).

mod login;
mod response;
mod result;
mod target;

pub use login::{Credentials, LoggedIn, Login, LoginError, LoginStep, Opening};
pub use response::{Fed, Response};
pub use result::{QueryResult, ResultSet};
pub use target::{MyCheckoutError, MyPool, MyPooled, MyTarget, PassThrough};

use super::codec::{self, ProtocolError};
use super::codec::{
    CLIENT_LONG_FLAG, CLIENT_LONG_PASSWORD, CLIENT_MULTI_RESULTS, CLIENT_MULTI_STATEMENTS,
    CLIENT_PLUGIN_AUTH, CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_PROTOCOL_41,
    CLIENT_PS_MULTI_RESULTS, CLIENT_SECURE_CONNECTION, CLIENT_SESSION_TRACK, CLIENT_TRANSACTIONS,
};
use crate::config::BackendAddr;
use crate::net::backend::BackendStream;
use bytes::{Buf, BytesMut};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Capabilities a backend connection asks for (each only if the server offers it; see the
/// module doc). `CLIENT_CONNECT_WITH_DB` is added when the target names a database. Not
/// `CLIENT_DEPRECATE_EOF`: the front end forwards result sets verbatim to clients it does
/// not offer that flag to, so the servers must end them with classic EOF packets too.
pub const BACKEND_CAPABILITIES: u64 = CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_TRANSACTIONS
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_SESSION_TRACK;

/// Run after login and after COM_RESET_CONNECTION: the server reports every session variable
/// a client changes, and any other change of session state, with the OK that follows it.
pub const SESSION_TRACKING_SQL: &str =
    "SET SESSION session_track_system_variables = '*', session_track_state_change = ON";

/// Character set of backend connections: utf8mb4_general_ci (MariaDB's utf8mb4 default).
pub const BACKEND_CHARSET: u8 = codec::CHARSET_UTF8MB4_GENERAL_CI;

/// `max_packet_size` announced to the server (informational; the server's
/// `max_allowed_packet` is what limits it).
const MAX_PACKET_ANNOUNCED: u32 = 1 << 30;
/// Largest logical packet accepted during login.
const MAX_LOGIN_PACKET: usize = 1 << 16;
/// Largest logical packet accepted in the answer to a proxy statement.
const MAX_RESULT_PACKET: usize = 64 << 20;
/// Most payload bytes buffered for the answer to one proxy statement (all result sets).
const MAX_RESULT_BYTES: usize = 64 << 20;
/// Most columns of a result set (MySQL and MariaDB allow 4096 per table).
const MAX_COLUMNS: u64 = 1 << 16;

/// `ER_ACCESS_DENIED_ERROR`: bad user or password.
pub const ER_ACCESS_DENIED: u16 = 1045;
/// `ER_NO_SUCH_THREAD`: KILL of a thread that is gone.
pub const ER_NO_SUCH_THREAD: u16 = 1094;

/// Why a backend connection could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MyConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Io {
        addr: BackendAddr,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("connecting to {addr} took longer than {timeout:?}")]
    Timeout {
        addr: BackendAddr,
        timeout: Duration,
    },
    /// The server answered with ERR (bad password: 1045, unknown database: 1049, too many
    /// connections: 1040, host blocked: 1129, ...).
    #[error("server {addr} refused the login: {code} {message}")]
    Refused {
        addr: BackendAddr,
        code: u16,
        message: String,
    },
    #[error("server {addr} broke the connection protocol: {what}")]
    Protocol { addr: BackendAddr, what: String },
    /// No TLS where the cluster's `tls` requires it, or a handshake that failed (an
    /// unverifiable certificate, a name that does not match).
    #[error("TLS to {addr}: {what}")]
    Tls { addr: BackendAddr, what: String },
    /// The proxy has nothing to answer the server's authentication request with for this
    /// user (a pass-through login the server asks more of than the stored hash answers).
    #[error("login to {addr}: {what}")]
    Credentials { addr: BackendAddr, what: String },
}

impl MyConnectError {
    /// The server is up and answered, but would not let this user in (access denied to the
    /// user or to the schema): nothing to mark the server down for.
    pub fn login_denied(&self) -> bool {
        matches!(
            self,
            MyConnectError::Refused {
                code: 1044 | 1045 | 1698,
                ..
            } | MyConnectError::Credentials { .. }
        )
    }
}

/// Why a proxy statement failed (see the module doc for what each leaves the connection in).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MyQueryError {
    /// The server answered with ERR; the connection is still in step with it. In a
    /// multi-statement query the statements after the failing one did not run.
    #[error("server error {code} ({sqlstate}): {message}")]
    Server {
        code: u16,
        sqlstate: String,
        message: String,
    },
    /// I/O error, timeout or a protocol violation: [`MyConn::broken`] is set.
    #[error("{0}")]
    Broken(String),
}

impl From<MyQueryError> for String {
    fn from(e: MyQueryError) -> String {
        e.to_string()
    }
}

/// One logged-in server connection, idle and ready for a command when handed out.
pub struct MyConn {
    pub stream: BackendStream,
    pub addr: BackendAddr,
    /// The server's id of this connection (`CONNECTION_ID()`), for `KILL [QUERY] id`.
    pub connection_id: u32,
    /// Server version without MariaDB's `5.5.5-` prefix (`10.11.6-MariaDB-0+deb12u1`).
    pub server_version: String,
    /// A MariaDB server (rather than MySQL).
    pub mariadb: bool,
    /// Capabilities negotiated with the server (see [`BACKEND_CAPABILITIES`]).
    pub capabilities: u64,
    /// Status flags of the last OK / EOF seen (`SERVER_STATUS_IN_TRANS`,
    /// `SERVER_STATUS_AUTOCOMMIT`, ...). A front end that forwards answers itself keeps it
    /// current.
    pub status: u16,
    /// The current default schema as last reported (login, session tracking in OKs, which
    /// reports every `USE` / COM_INIT_DB). A front end that forwards answers itself keeps it
    /// current: [`MyConn::reset`] relies on it to return to the target's database.
    pub schema: Option<String>,
    /// Idle, outside a transaction, nothing in flight, no client session state: the pool
    /// takes it back only then.
    pub clean: bool,
    /// A KILL was sent for this connection: never reused (the KILL may arrive late and stop
    /// the next client's statement).
    pub killed: bool,
    /// The protocol state is unknown (an I/O error, a timeout or malformed bytes in
    /// [`MyConn::query`] or [`MyConn::reset`]): never reused, no further commands.
    pub broken: bool,
    /// Something ran whose effect on session state is unknown: reset before reuse.
    pub state_unknown: bool,
    /// Whether the server takes several statements in one COM_QUERY on this connection (on
    /// at login; COM_SET_OPTION switches it); `None` when unknown (after a reset).
    pub multi_statements: Option<bool>,
    /// Front end bookkeeping: proxy statement id -> this connection's statement id.
    pub prepared: crate::mysql::IdMap<u64, u32>,
    /// Front end bookkeeping: session variables applied on this connection (name, value).
    pub applied: Vec<(String, String)>,
    /// Front end bookkeeping: this connection's `LAST_INSERT_ID()` as its OKs reported it
    /// (0 after login and reset), `None` when unknown.
    pub last_insert_id: Option<u64>,
    /// The target's database: what [`MyConn::reset`] returns the schema to.
    default_schema: Option<String>,
    pub created: Instant,
    /// When its pool opened it and last took it back (its lifetime and idle limits).
    pub stamps: crate::pool::Stamps,
    /// Its place among its server's open connections (see `net::backend::SocketList`).
    pub enrolled: Option<crate::net::backend::Enrolled>,
}

impl std::fmt::Debug for MyConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MyConn")
            .field("addr", &self.addr)
            .field("connection_id", &self.connection_id)
            .field("status", &self.status)
            .field("clean", &self.clean)
            .field("killed", &self.killed)
            .field("broken", &self.broken)
            .finish()
    }
}

impl MyConn {
    /// Connect and log in within the target's connect timeout.
    pub async fn connect(t: &MyTarget) -> Result<MyConn, MyConnectError> {
        match tokio::time::timeout(t.connect_timeout, Self::connect_inner(t)).await {
            Ok(r) => r,
            Err(_) => Err(MyConnectError::Timeout {
                addr: t.addr,
                timeout: t.connect_timeout,
            }),
        }
    }

    async fn connect_inner(t: &MyTarget) -> Result<MyConn, MyConnectError> {
        use crate::net::backend_tls::Wish;
        let wish = t.tls.wish(t.addr);
        match Self::login(t, wish).await {
            // PREFERRED as MySQL's clients: a TLS handshake that fails is retried without.
            Err(e @ MyConnectError::Tls { .. }) if wish == Wish::IfOffered => {
                tracing::warn!(server = %t.addr, error = %e, "TLS failed; connecting without it (tls = \"prefer\")");
                Self::login(t, Wish::Off).await
            }
            r => r,
        }
    }

    async fn login(
        t: &MyTarget,
        wish: crate::net::backend_tls::Wish,
    ) -> Result<MyConn, MyConnectError> {
        let addr = t.addr;
        let io = |source| MyConnectError::Io {
            addr,
            source: Arc::new(source),
        };
        let mut stream = BackendStream::connect(addr).await.map_err(io)?;
        let mut buf = BytesMut::with_capacity(1024);
        let fail = |e: LoginError| e.into_connect_error(addr);
        let read_fail = |e: ReadError| match e {
            ReadError::Io(e) => io(e),
            e => MyConnectError::Protocol {
                addr,
                what: e.to_string(),
            },
        };
        let (seq, payload) = read_packet(&mut stream, &mut buf, MAX_LOGIN_PACKET)
            .await
            .map_err(read_fail)?;
        let creds = Credentials {
            user: &t.user,
            password: t.password.as_deref().unwrap_or("").as_bytes(),
            native_stage1: match (&t.password, &t.pass_through) {
                (None, Some(p)) => Some(p.stage1().ok_or_else(|| MyConnectError::Credentials {
                    addr: t.addr,
                    what: format!(
                        "no password for user \"{}\" yet: the proxy logs in as it with what \
                         its own login proves against its mysql_native_hash (server_login = \
                         \"client\" without a server_password)",
                        t.user
                    ),
                })?),
                _ => None,
            },
            database: t.database.as_deref(),
        };
        let (mut login, opening) = Login::start(creds, wish, seq, &payload).map_err(fail)?;
        let first = match opening {
            Opening::Response(first) => first,
            Opening::Tls(request) => {
                if !buf.is_empty() {
                    return Err(MyConnectError::Protocol {
                        addr,
                        what: "unexpected data before the TLS handshake".into(),
                    });
                }
                let tls = |what: String| MyConnectError::Tls { addr, what };
                stream
                    .write_all(&request)
                    .await
                    .map_err(|e| tls(format!("sending SSLRequest: {e}")))?;
                stream
                    .start_tls(&t.tls)
                    .await
                    .map_err(|e| tls(format!("handshake failed: {e}")))?;
                login.after_tls()
            }
        };
        stream.write_all(&first).await.map_err(io)?;
        let done = loop {
            let (seq, payload) = read_packet(&mut stream, &mut buf, MAX_LOGIN_PACKET)
                .await
                .map_err(read_fail)?;
            match login.on_packet(seq, &payload).map_err(fail)? {
                LoginStep::Send(out) => stream.write_all(&out).await.map_err(io)?,
                LoginStep::Wait => {}
                LoginStep::Done(done) => break done,
            }
        };
        if !buf.is_empty() {
            return Err(MyConnectError::Protocol {
                addr,
                what: "unexpected data after the login OK".into(),
            });
        }
        let mut conn = MyConn {
            stream,
            addr,
            connection_id: done.connection_id,
            server_version: done.server_version,
            mariadb: done.mariadb,
            capabilities: done.capabilities,
            status: done.status,
            schema: done.schema.or_else(|| t.database.clone()),
            clean: done.status & codec::SERVER_STATUS_IN_TRANS == 0,
            killed: false,
            broken: false,
            state_unknown: false,
            multi_statements: Some(true),
            prepared: Default::default(),
            applied: Vec::new(),
            last_insert_id: Some(0),
            default_schema: t.database.clone(),
            created: Instant::now(),
            stamps: Default::default(),

            enrolled: None,
        };
        conn.track_session(t.connect_timeout)
            .await
            .map_err(|e| MyConnectError::Protocol {
                addr,
                what: format!("turning session tracking on: {e}"),
            })?;
        Ok(conn)
    }

    /// Turn on the session tracking the front end relies on (see [`SESSION_TRACKING_SQL`]).
    async fn track_session(&mut self, timeout: Duration) -> Result<(), MyQueryError> {
        if self.capabilities & CLIENT_SESSION_TRACK == 0 {
            return Ok(());
        }
        let clean = self.clean;
        self.query(SESSION_TRACKING_SQL, timeout).await?;
        self.clean = clean;
        Ok(())
    }

    /// Inside a transaction, as of the last status seen.
    pub fn in_transaction(&self) -> bool {
        self.status & codec::SERVER_STATUS_IN_TRANS != 0
    }

    /// Autocommit on, as of the last status seen.
    pub fn autocommit(&self) -> bool {
        self.status & codec::SERVER_STATUS_AUTOCOMMIT != 0
    }

    /// Send `sql` as one COM_QUERY on an idle connection and read its whole answer within
    /// `timeout`: every result set of a multi-statement query (text rows decoded), the status
    /// flags of the last packet (recorded in [`MyConn::status`]) and schema changes
    /// (recorded in [`MyConn::schema`]). For health probes and the proxy's own statements;
    /// see the module doc for what an error leaves the connection in.
    pub async fn query(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<QueryResult, MyQueryError> {
        let mut payload = BytesMut::with_capacity(sql.len() + 1);
        codec::put_query(&mut payload, sql.as_bytes(), self.capabilities);
        self.command(&payload, timeout).await
    }

    /// COM_RESET_CONNECTION (MySQL 5.7.3+, MariaDB 10.2.4+) within `timeout`: rolls back a
    /// transaction, drops temporary tables and prepared statements, releases user locks
    /// (GET_LOCK) and table locks, and returns session variables, user variables and the
    /// character set to their defaults; session tracking is turned on again
    /// ([`SESSION_TRACKING_SQL`]). MariaDB keeps the current schema, so when the client
    /// changed it, a COM_INIT_DB returns it to the target's database (a target without one
    /// keeps the schema the client chose: the next client gets its own applied). On success
    /// the connection is clean, with the front end's bookkeeping (`prepared`, `applied`,
    /// `state_unknown`) cleared.
    pub async fn reset(&mut self, timeout: Duration) -> Result<(), MyQueryError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.command(&[codec::Command::ResetConnection.byte()], timeout)
            .await?;
        self.prepared.clear();
        self.applied.clear();
        self.last_insert_id = Some(0);
        self.state_unknown = false;
        self.multi_statements = None;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.track_session(left).await?;
        // Without a default schema the schema stays (COM_RESET_CONNECTION keeps it); a client
        // gets its own applied when it takes the connection.
        if let (true, Some(db)) = (
            self.schema != self.default_schema,
            self.default_schema.clone(),
        ) {
            let mut p = BytesMut::with_capacity(db.len() + 1);
            codec::put_init_db(&mut p, db.as_bytes());
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.command(&p, left).await?;
            self.schema = Some(db);
        }
        self.clean = !self.in_transaction();
        Ok(())
    }

    /// Make the server take several statements per COM_QUERY (`on`) or only one, as the
    /// client of the moment negotiated: COM_SET_OPTION, sent only when the connection is not
    /// in that mode already.
    pub async fn ensure_multi_statements(
        &mut self,
        on: bool,
        timeout: Duration,
    ) -> Result<(), MyQueryError> {
        if self.multi_statements == Some(on) {
            return Ok(());
        }
        let mut p = BytesMut::with_capacity(3);
        codec::put_set_option(&mut p, if on { 0 } else { 1 });
        self.command(&p, timeout).await?;
        self.multi_statements = Some(on);
        Ok(())
    }

    /// Send one command packet (sequence id 0) and read its answer, within `timeout`.
    async fn command(
        &mut self,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<QueryResult, MyQueryError> {
        if self.broken {
            self.clean = false;
            return Err(MyQueryError::Broken(
                "connection is unusable after an earlier error".into(),
            ));
        }
        let r = match tokio::time::timeout(timeout, self.exchange(payload)).await {
            Ok(r) => r,
            Err(_) => Err(MyQueryError::Broken(format!(
                "no answer from {} within {timeout:?}",
                self.addr
            ))),
        };
        match &r {
            Ok(res) => {
                self.status = res.status;
                if self.in_transaction() {
                    self.clean = false;
                }
            }
            Err(e) => {
                self.clean = false;
                self.broken |= matches!(e, MyQueryError::Broken(_));
            }
        }
        r
    }

    async fn exchange(&mut self, payload: &[u8]) -> Result<QueryResult, MyQueryError> {
        let broken = MyQueryError::Broken;
        let mut out = BytesMut::with_capacity(payload.len() + codec::HEADER_LEN);
        codec::write_packet(&mut out, 0, payload);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| broken(format!("write to {}: {e}", self.addr)))?;
        let mut buf = BytesMut::with_capacity(4096);
        let mut response = Response::new(self.capabilities);
        let mut expected = 1u8;
        loop {
            let (seq, payload) = read_packet(&mut self.stream, &mut buf, MAX_RESULT_PACKET)
                .await
                .map_err(|e| broken(format!("reading from {}: {e}", self.addr)))?;
            if seq != expected {
                return Err(broken(format!(
                    "packet sequence id {seq}, expected {expected}"
                )));
            }
            expected = codec::next_seq(seq);
            let fed = response
                .feed(&payload)
                .map_err(|e| broken(format!("server {}: {e}", self.addr)))?;
            let end = match fed {
                Fed::More => continue,
                Fed::Done(r) => Ok(r),
                Fed::Failed(e) => Err(e),
            };
            if !buf.is_empty() {
                return Err(broken("unexpected data after the answer".into()));
            }
            if let Some(schema) = response.schema.take() {
                self.schema = Some(schema);
            }
            return end;
        }
    }
}

// ---------------------------------------------------------------- reading packets

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("{0}")]
    Protocol(ProtocolError),
}

/// Read one logical packet (continuations joined): its first sequence id and payload.
/// Bytes after it stay in `buf`.
async fn read_packet(
    stream: &mut BackendStream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(u8, Vec<u8>), ReadError> {
    loop {
        if let Some(f) = codec::frame(buf, max).map_err(ReadError::Protocol)? {
            let payload = f.payload(buf).into_owned();
            buf.advance(f.wire_len);
            return Ok((f.seq, payload));
        }
        buf.reserve(8192);
        if stream.read_buf(buf).await.map_err(ReadError::Io)? == 0 {
            return Err(ReadError::Closed);
        }
    }
}

// ---------------------------------------------------------------- pool

impl crate::pool::Reusable for MyConn {
    fn reusable(&self) -> bool {
        self.clean && !self.killed && !self.broken
    }

    fn at_rest(&self) -> bool {
        self.clean && !self.broken
    }

    fn stamps(&self) -> crate::pool::Stamps {
        self.stamps
    }

    fn stamps_mut(&mut self) -> &mut crate::pool::Stamps {
        &mut self.stamps
    }

    fn socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.stream.fd()
    }

    fn enroll(&mut self, place: crate::net::backend::Enrolled) {
        self.enrolled = Some(place);
    }

    fn say_goodbye(&mut self) {
        // COM_QUIT: one-byte payload 0x01, sequence 0.
        self.stream.goodbye(&[1, 0, 0, 0, 0x01]);
    }

    /// An idle connection has nothing to say. If the server wrote anyway (the ERR of a KILL,
    /// a `wait_timeout` disconnect) or closed it, the socket is readable. This uses the
    /// readiness the event loop already recorded, so it costs no system call.
    fn stale(&self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::codec::*;

    /// The server side of a transcript: payloads built with the codec's builders.
    pub(super) fn payload(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut b = BytesMut::new();
        f(&mut b);
        b.to_vec()
    }

    pub(super) fn ok(status: u16, caps: u64) -> Vec<u8> {
        payload(|b| {
            put_ok(
                b,
                &OkPacket {
                    status,
                    ..Default::default()
                },
                caps,
            )
        })
    }

    pub(super) fn err(code: u16, msg: &str) -> Vec<u8> {
        payload(|b| {
            put_err(
                b,
                &ErrPacket {
                    code,
                    sql_state: Some(*b"28000"),
                    message: msg.as_bytes(),
                },
            )
        })
    }

    #[test]
    fn target_debug_hides_the_password() {
        let t = MyTarget {
            addr: "127.0.0.1:3306".parse().unwrap(),
            user: "u".into(),
            password: Some("hunter2".into()),
            database: None,
            connect_timeout: Duration::from_secs(1),
            tls: crate::net::backend_tls::ServerTlsConfig::disabled(),
            pass_through: None,
        };
        let s = format!("{t:?}");
        assert!(!s.contains("hunter2") && s.contains("<set>"), "{s}");
    }
}
