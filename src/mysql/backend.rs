//! Connections from the proxy to MySQL / MariaDB servers: connect and log in, run the proxy's
//! own statements, reset, and the state the proxy tracks per connection (thread id for KILL,
//! capabilities, status flags, schema, cleanliness, the front end's bookkeeping).
//!
//! The protocol work is done by two I/O-free state machines, `Login` (connection phase) and
//! `Response` (the answer to one command), fed with whole packets; [`MyConn`] only moves
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

use super::auth;
use super::codec::{self, Kind, Phase, ProtocolError, Reader};
use super::codec::{
    CLIENT_CONNECT_WITH_DB, CLIENT_DEPRECATE_EOF, CLIENT_LONG_FLAG, CLIENT_LONG_PASSWORD,
    CLIENT_MULTI_RESULTS, CLIENT_MULTI_STATEMENTS, CLIENT_PLUGIN_AUTH,
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_PROTOCOL_41, CLIENT_PS_MULTI_RESULTS,
    CLIENT_SECURE_CONNECTION, CLIENT_SESSION_TRACK, CLIENT_TRANSACTIONS,
};
use bytes::{Buf, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
        addr: SocketAddr,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("connecting to {addr} took longer than {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    /// The server answered with ERR (bad password: 1045, unknown database: 1049, too many
    /// connections: 1040, host blocked: 1129, ...).
    #[error("server {addr} refused the login: {code} {message}")]
    Refused {
        addr: SocketAddr,
        code: u16,
        message: String,
    },
    #[error("server {addr} broke the connection protocol: {what}")]
    Protocol { addr: SocketAddr, what: String },
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

/// Where and as whom to connect.
#[derive(Clone, PartialEq)]
pub struct MyTarget {
    pub addr: SocketAddr,
    pub user: String,
    pub password: Option<String>,
    /// Default schema of the connection (`CLIENT_CONNECT_WITH_DB`); none when `None`.
    pub database: Option<String>,
    /// Bound on the whole login: TCP connect, handshake and authentication.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for MyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MyTarget")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("database", &self.database)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// One result of a statement: a result set (columns and rows), or the OK of a statement
/// without one (no columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    /// Column names (empty for a statement that returned no result set).
    pub columns: Vec<String>,
    /// Text-protocol rows; `None` is SQL NULL. Values are decoded as UTF-8, lossily.
    pub rows: Vec<Vec<Option<String>>>,
    /// From the OK of a statement without a result set.
    pub affected_rows: u64,
    pub last_insert_id: u64,
    /// Status flags of the packet that ended this result.
    pub status: u16,
    pub warnings: u16,
}

impl ResultSet {
    /// Index of the column named `name` (exact match first, then ASCII case-insensitive).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name).or_else(|| {
            self.columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(name))
        })
    }

    /// The value of column `name` in row `row`; `None` for NULL, a missing row or column.
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let col = self.column(name)?;
        self.rows.get(row)?.get(col)?.as_deref()
    }
}

/// Everything one command answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// One entry per statement, in order (a multi-statement query has several).
    pub sets: Vec<ResultSet>,
    /// Status flags of the last packet (`SERVER_STATUS_IN_TRANS`, `..._AUTOCOMMIT`, ...).
    pub status: u16,
    /// Session variables the server reported changed (`session_track_system_variables`), in
    /// order.
    pub variables: Vec<(String, String)>,
}

impl QueryResult {
    /// Rows of the first statement that returned a result set (empty if none did).
    pub fn rows(&self) -> &[Vec<Option<String>>] {
        self.sets
            .iter()
            .find(|s| !s.columns.is_empty())
            .map_or(&[], |s| &s.rows)
    }

    /// First column of the first row of [`QueryResult::rows`], if not NULL.
    pub fn value(&self) -> Option<&str> {
        self.rows().first()?.first()?.as_deref()
    }
}

/// One logged-in server connection, idle and ready for a command when handed out.
pub struct MyConn {
    pub stream: TcpStream,
    pub addr: SocketAddr,
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
    pub prepared: HashMap<u64, u32>,
    /// Front end bookkeeping: session variables applied on this connection (name, value).
    pub applied: Vec<(String, String)>,
    /// The target's database: what [`MyConn::reset`] returns the schema to.
    default_schema: Option<String>,
    pub created: Instant,
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
        let addr = t.addr;
        let io = |source| MyConnectError::Io {
            addr,
            source: Arc::new(source),
        };
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
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
            database: t.database.as_deref(),
        };
        let (mut login, first) = Login::start(creds, seq, &payload).map_err(fail)?;
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
            prepared: HashMap::new(),
            applied: Vec::new(),
            default_schema: t.database.clone(),
            created: Instant::now(),
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
            match conn
                .query(&format!("KILL {what}{connection_id}"), timeout)
                .await
            {
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
    stream: &mut TcpStream,
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

// ---------------------------------------------------------------- login (no I/O)

/// Who logs in.
#[derive(Clone, Copy)]
pub(crate) struct Credentials<'a> {
    pub user: &'a str,
    pub password: &'a [u8],
    pub database: Option<&'a str>,
}

/// Why a login failed, before the address is known to the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoginError {
    Refused { code: u16, message: String },
    Protocol(String),
}

impl LoginError {
    fn into_connect_error(self, addr: SocketAddr) -> MyConnectError {
        match self {
            LoginError::Refused { code, message } => MyConnectError::Refused {
                addr,
                code,
                message,
            },
            LoginError::Protocol(what) => MyConnectError::Protocol { addr, what },
        }
    }
}

fn protocol(what: impl Into<String>) -> LoginError {
    LoginError::Protocol(what.into())
}

fn bad(e: ProtocolError) -> LoginError {
    LoginError::Protocol(e.to_string())
}

/// What the login state machine wants next.
#[derive(Debug)]
pub(crate) enum LoginStep {
    /// Write these bytes (one whole packet, header included), then read the next packet.
    Send(BytesMut),
    /// Read the next packet.
    Wait,
    /// Logged in.
    Done(LoggedIn),
}

/// What the server told about itself and the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoggedIn {
    pub connection_id: u32,
    pub server_version: String,
    pub mariadb: bool,
    pub capabilities: u64,
    pub status: u16,
    /// A schema reported by session tracking in the login OK.
    pub schema: Option<String>,
}

/// The connection phase as a client, packet by packet (no I/O): [`Login::start`] with the
/// server's handshake gives the HandshakeResponse41; [`Login::on_packet`] with each further
/// server packet gives what to send or that the login is done.
pub(crate) struct Login {
    password: Vec<u8>,
    /// Expected sequence id of the next server packet.
    next_seq: u8,
    info: LoggedIn,
    /// Plugin whose data was sent last.
    plugin: Vec<u8>,
    switched: bool,
    /// The scramble the last plugin data answered (for the RSA key exchange).
    scramble: Vec<u8>,
    /// caching_sha2_password full authentication: the server's public key was asked for.
    key_requested: bool,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("next_seq", &self.next_seq)
            .field("plugin", &String::from_utf8_lossy(&self.plugin))
            .finish()
    }
}

/// The first response of `plugin` for `password` and `scramble`; `None` for a plugin this
/// client does not speak.
fn auth_response(plugin: &[u8], password: &[u8], scramble: &[u8]) -> Option<Vec<u8>> {
    if password.is_empty()
        && (plugin == codec::MYSQL_NATIVE_PASSWORD || plugin == codec::CACHING_SHA2_PASSWORD)
    {
        return Some(Vec::new());
    }
    if plugin == codec::MYSQL_NATIVE_PASSWORD {
        Some(auth::native_password_scramble(password, scramble).to_vec())
    } else if plugin == codec::CACHING_SHA2_PASSWORD {
        Some(auth::caching_sha2_scramble(password, scramble).to_vec())
    } else {
        None
    }
}

impl Login {
    /// Start from the server's first packet (`seq`, `payload`): the HandshakeResponse41 to
    /// send. An ERR instead of a handshake (too many connections, host blocked) is a refusal.
    pub fn start(
        creds: Credentials<'_>,
        seq: u8,
        payload: &[u8],
    ) -> Result<(Login, BytesMut), LoginError> {
        match codec::classify(payload, Phase::Handshake, 0) {
            Kind::Handshake => {}
            Kind::Err => return Err(refusal(payload)),
            _ => return Err(protocol("first packet is not a handshake")),
        }
        let h = codec::parse_handshake(payload).map_err(bad)?;
        let required = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;
        if h.capabilities & required != required {
            return Err(protocol(
                "server lacks CLIENT_PROTOCOL_41 or CLIENT_SECURE_CONNECTION (pre-4.1 server)",
            ));
        }
        let mut wanted = BACKEND_CAPABILITIES;
        if creds.database.is_some() {
            wanted |= CLIENT_CONNECT_WITH_DB;
        }
        // Bit 0 is CLIENT_LONG_PASSWORD to MySQL and "no MariaDB extensions" to MariaDB,
        // which clears it in its own flags: set it whatever the server says.
        let caps = (wanted & h.capabilities & 0xFFFF_FFFF) | CLIENT_LONG_PASSWORD;
        let scramble = h.scramble();
        // The server's default plugin if spoken here, else mysql_native_password (the server
        // switches to the account's plugin if that is another).
        let offered = h.auth_plugin.unwrap_or(codec::MYSQL_NATIVE_PASSWORD);
        let (plugin, data) = match auth_response(offered, creds.password, &scramble) {
            Some(d) => (offered, d),
            None => (
                codec::MYSQL_NATIVE_PASSWORD,
                auth_response(codec::MYSQL_NATIVE_PASSWORD, creds.password, &scramble)
                    .unwrap_or_default(),
            ),
        };
        let resp = codec::HandshakeResponse {
            caps: codec::ClientCaps {
                capabilities: caps,
                max_packet_size: MAX_PACKET_ANNOUNCED,
                charset: BACKEND_CHARSET,
            },
            user: creds.user.as_bytes(),
            auth_response: &data,
            database: creds.database.map(str::as_bytes),
            auth_plugin: (caps & CLIENT_PLUGIN_AUTH != 0).then_some(plugin),
            connect_attrs: None,
            zstd_level: None,
        };
        let mut body = BytesMut::with_capacity(128);
        codec::put_handshake_response(&mut body, &resp);
        let mut out = BytesMut::with_capacity(body.len() + codec::HEADER_LEN);
        let next_seq = codec::write_packet(&mut out, codec::next_seq(seq), &body);
        let login = Login {
            password: creds.password.to_vec(),
            next_seq,
            info: LoggedIn {
                connection_id: h.connection_id,
                server_version: String::from_utf8_lossy(h.version()).into_owned(),
                mariadb: h.is_mariadb(),
                capabilities: caps,
                status: h.status,
                schema: None,
            },
            plugin: plugin.to_vec(),
            switched: false,
            scramble: scramble.to_vec(),
            key_requested: false,
        };
        Ok((login, out))
    }

    /// The next server packet of the authentication exchange.
    pub fn on_packet(&mut self, seq: u8, payload: &[u8]) -> Result<LoginStep, LoginError> {
        if seq != self.next_seq {
            return Err(protocol(format!(
                "packet sequence id {seq}, expected {}",
                self.next_seq
            )));
        }
        self.next_seq = codec::next_seq(seq);
        let caps = self.info.capabilities;
        match codec::classify(payload, Phase::Auth, caps) {
            Kind::Ok => {
                let ok = codec::parse_ok(payload, caps).map_err(bad)?;
                self.info.status = ok.status;
                if let Some(state) = ok.session_state {
                    for change in codec::session_changes(state) {
                        if let codec::SessionChange::Schema(s) = change.map_err(bad)? {
                            self.info.schema = Some(String::from_utf8_lossy(s).into_owned());
                        }
                    }
                }
                Ok(LoginStep::Done(self.info.clone()))
            }
            Kind::Err => Err(refusal(payload)),
            Kind::AuthSwitch => {
                if self.switched {
                    return Err(protocol("second authentication switch request"));
                }
                self.switched = true;
                let s = codec::parse_auth_switch(payload).map_err(bad)?;
                let scramble = auth::scramble_from_auth_data(s.data);
                let data = auth_response(s.plugin, &self.password, scramble).ok_or_else(|| {
                    protocol(format!(
                        "server asks for authentication plugin {}, which backend logins do not \
                         support (use mysql_native_password or caching_sha2_password)",
                        String::from_utf8_lossy(s.plugin)
                    ))
                })?;
                self.plugin = s.plugin.to_vec();
                self.scramble = scramble.to_vec();
                Ok(LoginStep::Send(self.send(&data)))
            }
            Kind::AuthMoreData => {
                let data = codec::parse_auth_more_data(payload).map_err(bad)?;
                if self.plugin != codec::CACHING_SHA2_PASSWORD {
                    return Err(protocol("unexpected AuthMoreData"));
                }
                if self.key_requested {
                    // The server's public key: send the password encrypted with it.
                    self.key_requested = false;
                    let sealed = auth::rsa_encrypt_password(data, &self.scramble, &self.password)
                        .map_err(|e| {
                        protocol(format!("caching_sha2_password key exchange: {e}"))
                    })?;
                    return Ok(LoginStep::Send(self.send(&sealed)));
                }
                match data {
                    [codec::CACHING_SHA2_FAST_AUTH_SUCCESS] => Ok(LoginStep::Wait),
                    // Full authentication (the server has no cached hash): backend
                    // connections have no TLS, so ask for the server's RSA public key.
                    [codec::CACHING_SHA2_PERFORM_FULL_AUTH] => {
                        self.key_requested = true;
                        Ok(LoginStep::Send(
                            self.send(&[codec::CACHING_SHA2_REQUEST_PUBLIC_KEY]),
                        ))
                    }
                    _ => Err(protocol("unexpected caching_sha2_password data")),
                }
            }
            _ => Err(protocol("unexpected packet during authentication")),
        }
    }

    /// One packet with `data`, numbered after the server's last.
    fn send(&mut self, data: &[u8]) -> BytesMut {
        let mut out = BytesMut::with_capacity(data.len() + codec::HEADER_LEN);
        self.next_seq = codec::write_packet(&mut out, self.next_seq, data);
        out
    }
}

/// The login refusal in an ERR packet.
fn refusal(payload: &[u8]) -> LoginError {
    match codec::parse_err(payload) {
        Ok(e) => LoginError::Refused {
            code: e.code,
            message: String::from_utf8_lossy(e.message).into_owned(),
        },
        Err(e) => bad(e),
    }
}

// ---------------------------------------------------------------- answers (no I/O)

/// What [`Response::feed`] learned from one packet.
#[derive(Debug)]
pub(crate) enum Fed {
    /// The answer goes on.
    More,
    /// The answer is complete.
    Done(QueryResult),
    /// The server answered ERR; the answer is complete.
    Failed(MyQueryError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Start of a statement's result: OK, ERR or a column count.
    First,
    /// Column definitions still to come.
    Columns(u64),
    /// The EOF after the column definitions (without `CLIENT_DEPRECATE_EOF`).
    ColumnsEof,
    Rows,
    Done,
}

/// The answer to one command (COM_QUERY, COM_RESET_CONNECTION, COM_INIT_DB) as a client,
/// packet by packet (no I/O). Text-protocol result sets only.
pub(crate) struct Response {
    caps: u64,
    at: At,
    result: QueryResult,
    current: ResultSet,
    bytes: usize,
    /// The last schema change reported by session tracking.
    pub schema: Option<String>,
}

impl Response {
    pub fn new(caps: u64) -> Response {
        Response {
            caps,
            at: At::First,
            result: QueryResult::default(),
            current: ResultSet::default(),
            bytes: 0,
            schema: None,
        }
    }

    /// The next packet's payload. `Err` is a protocol violation.
    pub fn feed(&mut self, payload: &[u8]) -> Result<Fed, String> {
        self.bytes = self.bytes.saturating_add(payload.len());
        if self.bytes > MAX_RESULT_BYTES {
            return Err(format!("answer larger than {MAX_RESULT_BYTES} bytes"));
        }
        let caps = self.caps;
        let phase = if self.at == At::First {
            Phase::Response
        } else {
            Phase::Rows
        };
        let kind = codec::classify(payload, phase, caps);
        match (self.at, kind) {
            (At::Done, _) => Err("packet after the end of the answer".into()),
            (_, Kind::Progress) => Ok(Fed::More),
            (_, Kind::Err) => {
                let e = codec::parse_err(payload).map_err(|e| e.to_string())?;
                self.at = At::Done;
                Ok(Fed::Failed(MyQueryError::Server {
                    code: e.code,
                    sqlstate: e
                        .sql_state
                        .map(|s| String::from_utf8_lossy(&s).into_owned())
                        .unwrap_or_else(|| "HY000".into()),
                    message: String::from_utf8_lossy(e.message).into_owned(),
                }))
            }
            (At::First, Kind::Ok) => {
                let ok = codec::parse_ok(payload, caps).map_err(|e| e.to_string())?;
                self.current.affected_rows = ok.affected_rows;
                self.current.last_insert_id = ok.last_insert_id;
                self.end_statement(ok.status, ok.warnings, ok.session_state)
            }
            (At::First, Kind::Data) => {
                let (n, _) = codec::parse_column_count(payload, caps).map_err(|e| e.to_string())?;
                if n == 0 || n > MAX_COLUMNS {
                    return Err(format!("result set with {n} columns"));
                }
                self.at = At::Columns(n);
                Ok(Fed::More)
            }
            (At::First, Kind::Eof) => {
                // COM_SET_OPTION's answer.
                let eof = codec::parse_eof(payload, caps).map_err(|e| e.to_string())?;
                self.end_statement(eof.status, eof.warnings, None)
            }
            (At::First, Kind::LocalInfile) => {
                Err("LOCAL INFILE request, which this connection did not enable".into())
            }
            (At::Columns(left), Kind::Data) => {
                self.current
                    .columns
                    .push(column_name(payload).map_err(|e| e.to_string())?);
                self.at = match left - 1 {
                    0 if caps & CLIENT_DEPRECATE_EOF != 0 => At::Rows,
                    0 => At::ColumnsEof,
                    n => At::Columns(n),
                };
                Ok(Fed::More)
            }
            (At::ColumnsEof, Kind::Eof) => {
                codec::parse_eof(payload, caps).map_err(|e| e.to_string())?;
                self.at = At::Rows;
                Ok(Fed::More)
            }
            (At::Rows, Kind::Data) => {
                let row =
                    text_row(payload, self.current.columns.len()).map_err(|e| e.to_string())?;
                self.current.rows.push(row);
                Ok(Fed::More)
            }
            (At::Rows, Kind::Eof) => {
                let eof = codec::parse_eof(payload, caps).map_err(|e| e.to_string())?;
                self.end_statement(eof.status, eof.warnings, None)
            }
            (At::Rows, Kind::EofOk) => {
                let ok = codec::parse_ok(payload, caps).map_err(|e| e.to_string())?;
                self.end_statement(ok.status, ok.warnings, ok.session_state)
            }
            (at, kind) => Err(format!("unexpected {kind:?} packet ({at:?})")),
        }
    }

    /// A statement's result ended with `status`: the next one follows or the answer is done.
    fn end_statement(
        &mut self,
        status: u16,
        warnings: u16,
        session: Option<&[u8]>,
    ) -> Result<Fed, String> {
        if let Some(state) = session {
            for change in codec::session_changes(state) {
                match change.map_err(|e| e.to_string())? {
                    codec::SessionChange::Schema(s) => {
                        self.schema = Some(String::from_utf8_lossy(s).into_owned())
                    }
                    codec::SessionChange::SystemVariable { name, value } => {
                        self.result.variables.push((
                            String::from_utf8_lossy(name).into_owned(),
                            String::from_utf8_lossy(value).into_owned(),
                        ))
                    }
                    _ => {}
                }
            }
        }
        let mut set = std::mem::take(&mut self.current);
        set.status = status;
        set.warnings = warnings;
        self.result.sets.push(set);
        self.result.status = status;
        if status & codec::SERVER_MORE_RESULTS_EXISTS != 0 {
            self.at = At::First;
            return Ok(Fed::More);
        }
        self.at = At::Done;
        Ok(Fed::Done(std::mem::take(&mut self.result)))
    }
}

/// The column name (`name`, the fifth string) of a ColumnDefinition41.
fn column_name(payload: &[u8]) -> Result<String, ProtocolError> {
    let mut r = Reader::new(payload, "column definition");
    for _ in 0..4 {
        r.lenenc_bytes()?; // catalog, schema, table, org_table
    }
    let name = r.lenenc_bytes()?;
    r.lenenc_bytes()?; // org_name
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// A text-protocol row of `n` values.
fn text_row(payload: &[u8], n: usize) -> Result<Vec<Option<String>>, ProtocolError> {
    let mut r = Reader::new(payload, "text row");
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        row.push(
            r.lenenc_bytes_or_null()?
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        );
    }
    r.finish()?;
    Ok(row)
}

// ---------------------------------------------------------------- pool

impl crate::pool::Connector for MyTarget {
    type Conn = MyConn;
    type Error = MyConnectError;
    type Ext = ();

    async fn connect(&self) -> Result<MyConn, MyConnectError> {
        MyConn::connect(self).await
    }

    fn addr(&self) -> SocketAddr {
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

impl crate::pool::Reusable for MyConn {
    fn reusable(&self) -> bool {
        self.clean && !self.killed && !self.broken
    }

    /// An idle connection has nothing to say. If the server wrote anyway (the ERR of a KILL,
    /// a `wait_timeout` disconnect) or closed it, the socket is readable. This uses the
    /// readiness the event loop already recorded, so it costs no system call.
    fn stale(&self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_ready()
    }
}

/// A pool of connections to one MySQL / MariaDB server.
pub type MyPool = crate::pool::BackendPool<MyTarget>;
/// A checked-out MySQL / MariaDB server connection.
pub type MyPooled = crate::pool::Pooled<MyTarget>;
/// Why no MySQL / MariaDB server connection could be checked out.
pub type MyCheckoutError = crate::pool::CheckoutError<MyConnectError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::codec::*;

    const SCRAMBLE: &[u8; 20] = b"abcdefghij0123456789";
    const PASSWORD: &[u8] = b"secret";

    /// The server side of a transcript: payloads built with the codec's builders.
    fn payload(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut b = BytesMut::new();
        f(&mut b);
        b.to_vec()
    }

    fn handshake(plugin: &[u8], caps: u64) -> Vec<u8> {
        payload(|b| {
            put_handshake(
                b,
                &Handshake {
                    server_version: b"5.5.5-10.11.6-MariaDB",
                    connection_id: 42,
                    auth_data_1: &SCRAMBLE[..8],
                    capabilities: caps,
                    charset: 45,
                    status: SERVER_STATUS_AUTOCOMMIT,
                    auth_data_len: 21,
                    auth_data_2: &SCRAMBLE[8..],
                    auth_plugin: Some(plugin),
                },
            )
        })
    }

    /// What a MariaDB 10.11 server offers (CLIENT_MYSQL clear, some extended flags).
    const MARIADB_CAPS: u64 =
        (0xF7FE | 0x81BF_0000) | MARIADB_CLIENT_PROGRESS | MARIADB_CLIENT_STMT_BULK_OPERATIONS;

    fn ok(status: u16, caps: u64) -> Vec<u8> {
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

    fn err(code: u16, msg: &str) -> Vec<u8> {
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

    fn creds(db: Option<&'static str>) -> Credentials<'static> {
        Credentials {
            user: "switchyard",
            password: PASSWORD,
            database: db,
        }
    }

    /// The response packet `out` (one packet): its sequence id and parsed body.
    fn sent(out: &BytesMut) -> (u8, Vec<u8>) {
        let f = frame(out, usize::MAX).unwrap().unwrap();
        assert_eq!(f.wire_len, out.len(), "one packet");
        (f.seq, f.payload(out).into_owned())
    }

    #[test]
    fn native_password_login() {
        let (mut login, out) = Login::start(
            creds(Some("app")),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        let (seq, body) = sent(&out);
        assert_eq!(seq, 1);
        let resp = parse_handshake_response(&body).unwrap();
        let caps = resp.caps.capabilities;
        for flag in [
            CLIENT_PROTOCOL_41,
            CLIENT_SECURE_CONNECTION,
            CLIENT_PLUGIN_AUTH,
            CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
            CLIENT_TRANSACTIONS,
            CLIENT_MULTI_STATEMENTS,
            CLIENT_MULTI_RESULTS,
            CLIENT_PS_MULTI_RESULTS,
            CLIENT_SESSION_TRACK,
            CLIENT_CONNECT_WITH_DB,
            CLIENT_MYSQL,
        ] {
            assert!(caps & flag != 0, "{flag:#x} missing");
        }
        for flag in [
            CLIENT_DEPRECATE_EOF,
            CLIENT_LOCAL_FILES,
            CLIENT_FOUND_ROWS,
            CLIENT_SSL,
            MARIADB_CLIENT_PROGRESS,
        ] {
            assert!(caps & flag == 0, "{flag:#x} set");
        }
        assert_eq!(resp.caps.charset, CHARSET_UTF8MB4_GENERAL_CI);
        assert_eq!(resp.user, b"switchyard");
        assert_eq!(resp.database, Some(&b"app"[..]));
        assert_eq!(resp.auth_plugin, Some(MYSQL_NATIVE_PASSWORD));
        assert!(auth::verify_native_password(
            PASSWORD,
            SCRAMBLE,
            resp.auth_response
        ));
        let done = match login
            .on_packet(2, &ok(SERVER_STATUS_AUTOCOMMIT, caps))
            .unwrap()
        {
            LoginStep::Done(d) => d,
            s => panic!("{s:?}"),
        };
        assert_eq!(done.connection_id, 42);
        assert_eq!(done.server_version, "10.11.6-MariaDB");
        assert!(done.mariadb);
        assert_eq!(done.capabilities, caps);
        assert_eq!(done.status, SERVER_STATUS_AUTOCOMMIT);
    }

    #[test]
    fn auth_switch_to_native_password_uses_the_new_scramble() {
        // The server's default is a plugin not spoken here: the client answers with native
        // password anyway, the server switches (to native password, with a fresh scramble).
        let (mut login, out) =
            Login::start(creds(None), 0, &handshake(b"client_ed25519", MARIADB_CAPS)).unwrap();
        let (_, body) = sent(&out);
        let resp = parse_handshake_response(&body).unwrap();
        assert_eq!(resp.auth_plugin, Some(MYSQL_NATIVE_PASSWORD));
        assert_eq!(resp.database, None);
        assert!(resp.caps.capabilities & CLIENT_CONNECT_WITH_DB == 0);
        let fresh = b"ZYXWVUTSRQ9876543210";
        let switch = payload(|b| {
            put_auth_switch(
                b,
                &AuthSwitch {
                    plugin: MYSQL_NATIVE_PASSWORD,
                    data: &[&fresh[..], &[0]].concat(),
                },
            )
        });
        let out = match login.on_packet(2, &switch).unwrap() {
            LoginStep::Send(out) => out,
            s => panic!("{s:?}"),
        };
        let (seq, body) = sent(&out);
        assert_eq!(seq, 3);
        assert!(auth::verify_native_password(PASSWORD, fresh, &body));
        assert!(!auth::verify_native_password(PASSWORD, SCRAMBLE, &body));
        // A second switch is refused; the OK ends the login.
        let caps = resp.caps.capabilities;
        assert!(matches!(
            login.on_packet(4, &ok(0, caps)).unwrap(),
            LoginStep::Done(_)
        ));
        let (mut login, _) = Login::start(
            creds(None),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        assert!(matches!(
            login.on_packet(2, &switch),
            Ok(LoginStep::Send(_))
        ));
        assert!(matches!(
            login.on_packet(4, &switch),
            Err(LoginError::Protocol(_))
        ));
    }

    #[test]
    fn caching_sha2_fast_path_and_refusals() {
        let mysql8 = 0xFFFF_FFFF & !CLIENT_SSL;
        let (mut login, out) =
            Login::start(creds(None), 0, &handshake(CACHING_SHA2_PASSWORD, mysql8)).unwrap();
        let (_, body) = sent(&out);
        let resp = parse_handshake_response(&body).unwrap();
        assert_eq!(resp.auth_plugin, Some(CACHING_SHA2_PASSWORD));
        assert!(auth::verify_caching_sha2(
            PASSWORD,
            SCRAMBLE,
            resp.auth_response
        ));
        let fast = payload(|b| put_auth_more_data(b, &[CACHING_SHA2_FAST_AUTH_SUCCESS]));
        assert!(matches!(
            login.on_packet(2, &fast).unwrap(),
            LoginStep::Wait
        ));
        let caps = resp.caps.capabilities;
        assert!(matches!(
            login
                .on_packet(3, &ok(SERVER_STATUS_AUTOCOMMIT, caps))
                .unwrap(),
            LoginStep::Done(_)
        ));
        // Full authentication: the public key is asked for and the password sent encrypted
        // with it, for the server to decrypt with its private key.
        let (mut login, _) =
            Login::start(creds(None), 0, &handshake(CACHING_SHA2_PASSWORD, mysql8)).unwrap();
        let full = payload(|b| put_auth_more_data(b, &[CACHING_SHA2_PERFORM_FULL_AUTH]));
        let LoginStep::Send(out) = login.on_packet(2, &full).unwrap() else {
            panic!("no key request")
        };
        assert_eq!(sent(&out), (3, vec![CACHING_SHA2_REQUEST_PUBLIC_KEY]));
        let keys = auth::RsaKeys::generate().unwrap();
        let key = payload(|b| put_auth_more_data(b, keys.public_pem()));
        let LoginStep::Send(out) = login.on_packet(4, &key).unwrap() else {
            panic!("no encrypted password")
        };
        let (seq, sealed) = sent(&out);
        assert_eq!(seq, 5);
        assert_eq!(
            keys.decrypt_password(SCRAMBLE, &sealed).as_deref(),
            Some(PASSWORD)
        );
        assert!(matches!(
            login
                .on_packet(6, &ok(SERVER_STATUS_AUTOCOMMIT, caps))
                .unwrap(),
            LoginStep::Done(_)
        ));
        // A key packet that is not a key: a clear error.
        let (mut login, _) =
            Login::start(creds(None), 0, &handshake(CACHING_SHA2_PASSWORD, mysql8)).unwrap();
        login.on_packet(2, &full).unwrap();
        let junk = payload(|b| put_auth_more_data(b, b"not a key"));
        match login.on_packet(4, &junk) {
            Err(LoginError::Protocol(m)) => assert!(m.contains("key exchange"), "{m}"),
            r => panic!("{r:?}"),
        }
        // A switch to a plugin not spoken here, or to the clear-text one.
        for plugin in [MYSQL_CLEAR_PASSWORD, CLIENT_ED25519] {
            let (mut login, _) = Login::start(
                creds(None),
                0,
                &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
            )
            .unwrap();
            let switch = payload(|b| {
                put_auth_switch(
                    b,
                    &AuthSwitch {
                        plugin,
                        data: b"x\0",
                    },
                )
            });
            match login.on_packet(2, &switch) {
                Err(LoginError::Protocol(m)) => assert!(m.contains("plugin"), "{m}"),
                r => panic!("{r:?}"),
            }
        }
    }

    #[test]
    fn refusals_and_protocol_errors() {
        let (mut login, _) = Login::start(
            creds(None),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        assert_eq!(
            login.on_packet(2, &err(1045, "Access denied")).unwrap_err(),
            LoginError::Refused {
                code: 1045,
                message: "Access denied".into()
            }
        );
        // Too many connections: ERR instead of a handshake.
        let e = Login::start(creds(None), 0, &err(1040, "Too many connections")).unwrap_err();
        assert!(matches!(e, LoginError::Refused { code: 1040, .. }));
        // Wrong sequence id, unexpected packets, a pre-4.1 server.
        let (mut login, _) = Login::start(
            creds(None),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        assert!(login.on_packet(5, &ok(0, CLIENT_PROTOCOL_41)).is_err());
        let (mut login, _) = Login::start(
            creds(None),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        assert!(login.on_packet(2, b"\x42hello").is_err());
        assert!(Login::start(creds(None), 0, &handshake(MYSQL_NATIVE_PASSWORD, 0x0200)).is_err());
        assert!(Login::start(creds(None), 0, b"").is_err());
    }

    #[test]
    fn login_never_panics_on_cut_or_random_bytes() {
        let hs = handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS);
        for cut in 0..hs.len() {
            let _ = Login::start(creds(None), 0, &hs[..cut]);
        }
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = p.first_mut() {
                *b = [0x00, 0x01, 0xFE, 0xFF, 0x0A][(next() % 5) as usize];
            }
            let _ = Login::start(creds(None), 0, &p);
            let (mut login, _) = Login::start(creds(None), 0, &hs).unwrap();
            let _ = login.on_packet(2, &p);
        }
    }

    // ------------------------------------------------------------ answers

    const CAPS: u64 = BACKEND_CAPABILITIES | CLIENT_DEPRECATE_EOF;

    fn column_def(name: &str) -> Vec<u8> {
        payload(|b| {
            for s in ["def", "", "", "", name, name] {
                put_lenenc_bytes(b, s.as_bytes());
            }
            put_lenenc_int(b, 0x0c);
            b.extend_from_slice(&[45, 0, 0, 1, 0, 0, 253, 0, 0, 0, 0, 0]);
        })
    }

    fn row(values: &[Option<&str>]) -> Vec<u8> {
        payload(|b| {
            for v in values {
                match v {
                    Some(s) => put_lenenc_bytes(b, s.as_bytes()),
                    None => b.extend_from_slice(&[LENENC_NULL]),
                }
            }
        })
    }

    fn eof_ok(status: u16) -> Vec<u8> {
        payload(|b| {
            put_ok(
                b,
                &OkPacket {
                    header: EOF_HEADER,
                    status,
                    ..Default::default()
                },
                CAPS,
            )
        })
    }

    fn feed_all(caps: u64, packets: &[Vec<u8>]) -> Result<Fed, String> {
        let mut r = Response::new(caps);
        let (last, init) = packets.split_last().unwrap();
        for p in init {
            assert!(matches!(r.feed(p)?, Fed::More));
        }
        r.feed(last)
    }

    #[test]
    fn multi_statement_answer() {
        // SELECT 1 AS a, NULL AS b; UPDATE ...; SELECT 'x' AS c  (with CLIENT_DEPRECATE_EOF)
        let more = SERVER_STATUS_AUTOCOMMIT | SERVER_MORE_RESULTS_EXISTS;
        let update_ok = payload(|b| {
            put_ok(
                b,
                &OkPacket {
                    affected_rows: 3,
                    last_insert_id: 7,
                    status: more,
                    ..Default::default()
                },
                CAPS,
            )
        });
        let packets = vec![
            payload(|b| put_column_count(b, 2, None)),
            column_def("a"),
            column_def("b"),
            row(&[Some("1"), None]),
            eof_ok(more),
            update_ok,
            payload(|b| put_column_count(b, 1, None)),
            column_def("c"),
            row(&[Some("x")]),
            row(&[Some("")]),
            eof_ok(SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_IN_TRANS),
        ];
        let Fed::Done(r) = feed_all(CAPS, &packets).unwrap() else {
            panic!()
        };
        assert_eq!(r.sets.len(), 3);
        assert_eq!(r.sets[0].columns, ["a", "b"]);
        assert_eq!(r.sets[0].rows, vec![vec![Some("1".to_string()), None]]);
        assert_eq!(r.sets[0].get(0, "A"), Some("1"));
        assert_eq!((r.sets[1].affected_rows, r.sets[1].last_insert_id), (3, 7));
        assert!(r.sets[1].columns.is_empty());
        assert_eq!(r.sets[2].rows.len(), 2);
        assert_eq!(r.status, SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_IN_TRANS);
        assert_eq!(r.value(), Some("1"));
    }

    #[test]
    fn classic_eof_answer_and_errors() {
        let caps = CAPS & !CLIENT_DEPRECATE_EOF;
        let eof = |status| {
            payload(|b| {
                put_eof(
                    b,
                    &EofPacket {
                        warnings: 0,
                        status,
                    },
                    caps,
                )
            })
        };
        let packets = vec![
            payload(|b| put_column_count(b, 1, None)),
            column_def("v"),
            eof(0),
            row(&[Some("ok")]),
            eof(SERVER_STATUS_AUTOCOMMIT),
        ];
        let Fed::Done(r) = feed_all(caps, &packets).unwrap() else {
            panic!()
        };
        assert_eq!(r.rows(), &[vec![Some("ok".to_string())]]);
        // ERR after the first statement of a multi-statement query ends the answer.
        let packets = vec![ok(SERVER_MORE_RESULTS_EXISTS, CAPS), err(1064, "syntax")];
        match feed_all(CAPS, &packets).unwrap() {
            Fed::Failed(MyQueryError::Server {
                code,
                sqlstate,
                message,
            }) => {
                assert_eq!(
                    (code, sqlstate.as_str(), message.as_str()),
                    (1064, "28000", "syntax")
                )
            }
            f => panic!("{f:?}"),
        }
        // A row with the wrong number of values, a packet after the end, LOCAL INFILE.
        let mut r = Response::new(CAPS);
        r.feed(&payload(|b| put_column_count(b, 2, None))).unwrap();
        r.feed(&column_def("a")).unwrap();
        r.feed(&column_def("b")).unwrap();
        assert!(r.feed(&row(&[Some("1")])).is_err());
        let mut r = Response::new(CAPS);
        assert!(matches!(r.feed(&ok(0, CAPS)).unwrap(), Fed::Done(_)));
        assert!(r.feed(&ok(0, CAPS)).is_err());
        assert!(Response::new(CAPS).feed(b"\xFBfile").is_err());
        assert!(Response::new(CAPS)
            .feed(&payload(|b| put_column_count(b, 0, None)))
            .is_err());
    }

    #[test]
    fn session_tracking_reports_schema_and_variables() {
        let mut state = BytesMut::new();
        put_session_change(&mut state, &SessionChange::Schema(b"other"));
        put_session_change(
            &mut state,
            &SessionChange::SystemVariable {
                name: b"autocommit",
                value: b"OFF",
            },
        );
        let p = payload(|b| {
            put_ok(
                b,
                &OkPacket {
                    status: SERVER_SESSION_STATE_CHANGED,
                    session_state: Some(&state),
                    ..Default::default()
                },
                CAPS,
            )
        });
        let mut r = Response::new(CAPS);
        let Fed::Done(res) = r.feed(&p).unwrap() else {
            panic!()
        };
        assert_eq!(r.schema.as_deref(), Some("other"));
        assert_eq!(
            res.variables,
            [("autocommit".to_string(), "OFF".to_string())]
        );
    }

    #[test]
    fn answers_never_panic_on_random_bytes() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5_000 {
            for caps in [CAPS, CAPS & !CLIENT_DEPRECATE_EOF] {
                let mut r = Response::new(caps);
                for _ in 0..8 {
                    let len = (next() % 24) as usize;
                    let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    if let Some(b) = p.first_mut() {
                        *b = [0x00, 0x01, 0x02, 0xFB, 0xFC, 0xFE, 0xFF][(next() % 7) as usize];
                    }
                    if !matches!(r.feed(&p), Ok(Fed::More)) {
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn target_debug_hides_the_password() {
        let t = MyTarget {
            addr: "127.0.0.1:3306".parse().unwrap(),
            user: "u".into(),
            password: Some("hunter2".into()),
            database: None,
            connect_timeout: Duration::from_secs(1),
        };
        let s = format!("{t:?}");
        assert!(!s.contains("hunter2") && s.contains("<set>"), "{s}");
    }
}
