//! A logged-in MySQL client: one command at a time, each forwarded to a backend connection
//! checked out of the cluster's pools and its answer streamed back packet by packet
//! (verbatim: result sets are never decoded row by row).
//!
//! Transaction pooling: a connection goes back to its pool after a command whose answer left
//! the server outside a transaction (`SERVER_STATUS_IN_TRANS` clear) with nothing in flight,
//! unless the client is pinned. Session state is handled as drivers use it (README, "MySQL
//! session state"): the character set, schema and the common session variables are tracked
//! per client (the server reports changes through session tracking) and applied on whichever
//! connection the client gets, without pinning; state that cannot be applied again (user
//! variables, temporary tables, GET_LOCK, LOCK TABLES, SQL PREPARE, any change the server
//! reports that is not on the list) pins the client to its connection.
//!
//! The binary protocol (COM_STMT_*) works under transaction pooling (`prepared.rs`). Not
//! yet: COM_CHANGE_USER and TLS; a COM_CHANGE_USER is refused with an ERR naming it.

mod own;
mod prepared;

use crate::cluster::{SelectError, Want};
use crate::config::PoolMode;
use crate::mysql::backend::{MyConn, MyPooled, MyQueryError};
use crate::mysql::codec::{self, flags::*, Command};
use crate::mysql::io::{err_payload, ok_payload, read_packet, PacketError};
use crate::mysql::worker::{MyClusterPools, Running, Slot, Worker};
use crate::router::classify::{Reason, Route, TxEffect};
use crate::router::hints::{self, Hint};
use bytes::{Buf, BytesMut};
use prepared::ClientStmt;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Time allowed for the proxy's own statements on a backend (applying a client's state,
/// resets).
const INTERNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most server statements kept on one backend connection; past it the connection is closed
/// when given back rather than grow without bound.
const MAX_PREPARED_PER_CONN: usize = 5_000;
/// Flush what is queued for the client once it passes this size.
const FLUSH_AT: usize = 64 * 1024;

/// Session variables applied on whichever connection a client gets (reported by the
/// server's session tracking, `SET` by any means). Any other variable a client changes pins it.
pub const REPLAYED: &[&str] = &[
    "autocommit",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
    "sql_mode",
    "time_zone",
    "transaction_isolation",
    "tx_isolation",
    "transaction_read_only",
    "tx_read_only",
    "wait_timeout",
    "interactive_timeout",
    "net_read_timeout",
    "net_write_timeout",
    "sql_select_limit",
    "max_statement_time",
    "max_execution_time",
    "group_concat_max_len",
    "foreign_key_checks",
    "unique_checks",
    "sql_auto_is_null",
    "sql_safe_updates",
    "lc_time_names",
    "div_precision_increment",
    "sql_quote_show_create",
    "default_storage_engine",
    "names",
];

/// Session variables the server reports but no client sets: they describe what happened
/// (MariaDB's `last_gtid` after every write) and are neither applied nor a reason to pin.
const INFORMATIONAL: &[&str] = &["last_gtid"];

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client: {0}")]
    Client(PacketError),
    #[error("client socket: {0}")]
    ClientIo(#[source] std::io::Error),
    #[error("backend: {0}")]
    Backend(String),
    #[error("no backend connection: {0}")]
    Checkout(String),
    /// The client was refused (the ERR has been sent) and is disconnected.
    #[error("refused: {0}")]
    Refused(String),
}

/// Why no connection could be given to the client.
enum AcquireError {
    /// The server refused the client's state (e.g. its schema does not exist).
    Server {
        code: u16,
        sqlstate: String,
        message: String,
    },
    Other(String),
}

impl AcquireError {
    /// The ERR for the client: the server's own, or 1040 naming the cause.
    fn err_payload(&self) -> Vec<u8> {
        match self {
            AcquireError::Server {
                code,
                sqlstate,
                message,
            } => {
                let mut state = *b"HY000";
                if sqlstate.len() == 5 {
                    state.copy_from_slice(sqlstate.as_bytes());
                }
                err_payload(*code, &state, message)
            }
            AcquireError::Other(e) => err_payload(1040, b"08004", &format!("switchyard: {e}")),
        }
    }
}

/// Bytes a client may send ahead while its statement runs before the proxy stops reading
/// (and so stops noticing whether it is still there) until the answer is through.
const CLIENT_READ_AHEAD: usize = 1 << 20;

/// A client after login.
pub struct Session<S> {
    w: Arc<Worker>,
    cluster: Arc<MyClusterPools>,
    client: S,
    /// Capabilities agreed with the client.
    caps: u64,
    max_packet: usize,
    cin: BytesMut,
    cout: BytesMut,
    backend: Option<MyPooled>,
    /// Bytes from the backend not yet handled.
    bin: BytesMut,
    backend_idx: usize,
    slot: Arc<Slot>,
    // What the client's session is, wherever it runs.
    /// Session variables (sorted by name), starting with the handshake's character set.
    vars: Vec<(String, String)>,
    schema: Option<String>,
    /// The schema the client logged in with (COM_RESET_CONNECTION returns to it).
    login_schema: Option<String>,
    login_vars: Vec<(String, String)>,
    /// Why the client is pinned to its connection, if it is.
    pinned: Option<&'static str>,
    /// Status flags of the client's session as last reported.
    status: u16,
    route_override: Option<Hint>,
    /// Statements the client prepared, by its ids.
    stmts: HashMap<u32, ClientStmt>,
    next_stmt: u32,
    /// COM_STMT_SEND_LONG_DATA went to the held connection: it stays until the execute.
    long_data: bool,
    /// The held connection was chosen for writes (the primary).
    for_write: bool,
    /// Read-your-writes floor (see `cluster::ReadYourWrites`).
    ryw: crate::cluster::ReadYourWrites,
    /// What the client may ask about its own last statement (see `own`).
    own: own::OwnResults,
    /// CLIENT_MULTI_STATEMENTS as the client negotiated it or set it since (COM_SET_OPTION).
    multi_statements: bool,
    /// The client asked for CLIENT_IGNORE_SPACE and its sql_mode does not have it yet.
    ignore_space_pending: bool,
    _connected: crate::metrics::GaugeGuard,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        w: Arc<Worker>,
        cluster: Arc<MyClusterPools>,
        client: S,
        caps: u64,
        charset: u8,
        schema: Option<String>,
        slot: Arc<Slot>,
        leftover: BytesMut,
    ) -> Self {
        let max_packet = w.shared.config().general.max_message_bytes;
        let connected = cluster.metrics.client_connected();
        let vars = charset_vars(charset);
        Session {
            w,
            cluster,
            client,
            caps,
            max_packet,
            cin: leftover,
            cout: BytesMut::with_capacity(16 * 1024),
            backend: None,
            bin: BytesMut::with_capacity(16 * 1024),
            backend_idx: 0,
            slot,
            login_vars: vars.clone(),
            vars,
            login_schema: schema.clone(),
            schema,
            pinned: None,
            status: SERVER_STATUS_AUTOCOMMIT,
            route_override: None,
            stmts: HashMap::new(),
            next_stmt: 0,
            long_data: false,
            for_write: true,
            ryw: Default::default(),
            own: Default::default(),
            multi_statements: caps & CLIENT_MULTI_STATEMENTS != 0,
            ignore_space_pending: caps & CLIENT_IGNORE_SPACE != 0,
            _connected: connected,
        }
    }

    /// Serve the client until it quits or goes away, then give back or close its connection.
    pub async fn run(mut self) -> Result<(), SessionError> {
        let r = self.serve().await;
        self.finish().await;
        r
    }

    async fn serve(&mut self) -> Result<(), SessionError> {
        let shutdown = self.w.shared.shutdown.clone();
        loop {
            if self.slot.terminate.load(Relaxed) {
                return Ok(());
            }
            let packet = if self.backend.is_none() {
                tokio::select! {
                    p = read_packet(&mut self.client, &mut self.cin, self.max_packet) => p,
                    _ = shutdown.cancelled() => {
                        let err = err_payload(1053, b"08S01", "Server shutdown in progress (switchyard)");
                        let _ = self.send(0, &err).await;
                        return Ok(());
                    }
                }
            } else {
                read_packet(&mut self.client, &mut self.cin, self.max_packet).await
            };
            let packet = match packet {
                Ok(p) => p,
                Err(PacketError::Closed) => return Ok(()),
                Err(PacketError::Protocol(e)) => {
                    let err = err_payload(
                        1153,
                        b"08S01",
                        &format!("Got a packet bigger than 'max_allowed_packet' or malformed: {e}"),
                    );
                    let _ = self.send(0, &err).await;
                    return Err(SessionError::Client(PacketError::Protocol(e)));
                }
                Err(e) => return Err(SessionError::Client(e)),
            };
            let seq = packet.next_seq;
            if packet.seq != 0 {
                // Every command starts a new exchange at 0. MariaDB answers anything else
                // with ER_NET_PACKETS_OUT_OF_ORDER and closes; so does the proxy (the answer
                // is numbered as the client's packet asks, so it can read it).
                let r = crate::mysql::startup::out_of_order();
                let _ = self
                    .send(seq, &err_payload(r.code, &r.state, &r.message))
                    .await;
                return Err(SessionError::Client(PacketError::Protocol(
                    codec::ProtocolError::Sequence {
                        got: packet.seq,
                        expected: 0,
                    },
                )));
            }
            let Some(&first) = packet.payload.first() else {
                self.send(seq, &err_payload(1047, b"08S01", "Unknown command"))
                    .await?;
                continue;
            };
            match Command::from_byte(first) {
                Command::Quit => return Ok(()),
                Command::Ping => self.send(seq, &ok_payload(self.caps, self.status)).await?,
                Command::Query => self.com_query(&packet.payload).await?,
                Command::InitDb | Command::FieldList | Command::Statistics => {
                    self.forward_command(first, &packet.payload).await?
                }
                Command::SetOption => {
                    // Applied to the server connection with the client's next query (see
                    // `com_query`). The reply is an EOF.
                    match packet.payload.get(1..3) {
                        Some([0, 0]) => self.multi_statements = true,
                        Some([1, 0]) => self.multi_statements = false,
                        _ => {
                            let err = err_payload(1047, b"08S01", "Unknown COM_SET_OPTION");
                            self.send(seq, &err).await?;
                            continue;
                        }
                    }
                    let mut eof = BytesMut::new();
                    codec::put_eof(
                        &mut eof,
                        &codec::EofPacket {
                            warnings: 0,
                            status: self.status,
                        },
                        self.caps,
                    );
                    self.send(seq, &eof).await?;
                }
                Command::ResetConnection => self.com_reset(seq).await?,
                Command::BinlogDump | Command::BinlogDumpGtid | Command::RegisterSlave => {
                    self.send(
                        seq,
                        &err_payload(1047, b"08S01", "switchyard does not proxy replication"),
                    )
                    .await?
                }
                Command::StmtPrepare => self.com_stmt_prepare(&packet.payload).await?,
                Command::StmtExecute => self.com_stmt_execute(&packet.payload).await?,
                Command::StmtSendLongData => self.com_stmt_send_long_data(&packet.payload).await?,
                Command::StmtClose => self.com_stmt_close(&packet.payload).await?,
                Command::StmtReset => self.com_stmt_reset(&packet.payload).await?,
                Command::StmtFetch => self.com_stmt_fetch(&packet.payload).await?,
                Command::ChangeUser => self.com_change_user(&packet.payload).await?,
                _ => {
                    self.send(seq, &err_payload(1047, b"08S01", "Unknown command"))
                        .await?
                }
            }
            if self.may_release() {
                self.capture_own_results().await;
            }
            self.maybe_release();
        }
    }

    /// Frame `payload` at `seq` and write it, with anything queued.
    async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<(), SessionError> {
        codec::write_packet(&mut self.cout, seq, payload);
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), SessionError> {
        if self.cout.is_empty() {
            return Ok(());
        }
        let r = tokio::time::timeout(Duration::from_secs(60), async {
            self.client.write_all(&self.cout).await?;
            self.client.flush().await
        })
        .await;
        self.cout.clear();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SessionError::ClientIo(e)),
            Err(_) => Err(SessionError::ClientIo(std::io::ErrorKind::TimedOut.into())),
        }
    }

    async fn com_query(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let sql = match codec::parse_query(payload, self.caps) {
            Ok(q) => q.sql.to_vec(),
            Err(e) => {
                let err = err_payload(1064, b"42000", &format!("malformed COM_QUERY: {e}"));
                return self.send(1, &err).await;
            }
        };
        let text = String::from_utf8_lossy(&sql).into_owned();
        if let Some(route) = hints::route_setting(&text) {
            self.route_override = route;
            return self.send(1, &ok_payload(self.caps, self.status)).await;
        }
        if let Some((query_only, id)) = parse_kill(&text) {
            return self.kill(query_only, id).await;
        }
        self.note_pins(&text);
        if self.backend.is_none() {
            if let Some(q) = own::own_query(&text) {
                return self.answer_own(&q).await;
            }
        }
        self.own.calc_found_rows = own::calcs_found_rows(&text);
        if self.backend.is_none() {
            let want = match self.want_for(&text) {
                Ok(w) => w,
                Err(e) => {
                    let err = err_payload(1290, b"HY000", &format!("switchyard: {e}"));
                    return self.send(1, &err).await;
                }
            };
            if !self.acquire_or_tell(want).await? {
                return Ok(());
            }
            if own::mentions_last_insert_id(&text) {
                // The connection's LAST_INSERT_ID() is another session's: set the client's.
                let sql = format!("SELECT LAST_INSERT_ID({})", self.own.last_insert_id);
                let conn = self.backend.as_mut().expect("just acquired");
                if let Err(e) = conn.query(&sql, INTERNAL_TIMEOUT).await {
                    return Err(SessionError::Backend(e.to_string()));
                }
            }
        }
        // The servers' connections take several statements per query unless the client of
        // the moment did not ask to: a server then refuses a multi-statement text itself.
        let multi = self.multi_statements;
        let conn = self.backend.as_mut().expect("a connection is held");
        if let Err(e) = conn.ensure_multi_statements(multi, INTERNAL_TIMEOUT).await {
            conn.clean = false;
            return Err(SessionError::Backend(e.to_string()));
        }
        self.forward(payload, Answer::Query).await
    }

    /// COM_INIT_DB, COM_FIELD_LIST, COM_STATISTICS: run on the held connection, or on one
    /// taken for this command (a replica will do: none of them writes).
    async fn forward_command(&mut self, cmd: u8, payload: &[u8]) -> Result<(), SessionError> {
        if self.backend.is_none() {
            // A connection taken here may be kept (session mode, pinned): only one that is
            // given back after the command may be a replica's.
            let want = if self.pinned.is_none() && self.w.pool_mode == PoolMode::Transaction {
                Want::Replica { min_lsn: None }
            } else {
                Want::Primary
            };
            if !self.acquire_or_tell(want).await? {
                return Ok(());
            }
        }
        let answer = match Command::from_byte(cmd) {
            Command::FieldList => Answer::FieldList,
            Command::Statistics => Answer::Single,
            _ => Answer::Query,
        };
        // A new schema (COM_INIT_DB) comes back in the OK's session tracking.
        self.forward(payload, answer).await
    }

    /// COM_RESET_CONNECTION: the client's session returns to how it logged in; nothing it set
    /// is kept (and it is no longer pinned).
    async fn com_reset(&mut self, seq: u8) -> Result<(), SessionError> {
        if let Some(conn) = self.backend.as_mut() {
            if conn.reset(INTERNAL_TIMEOUT).await.is_ok() {
                conn.applied.clear();
            } else {
                conn.clean = false;
            }
        }
        self.vars = self.login_vars.clone();
        self.schema = self.login_schema.clone();
        self.own = Default::default();
        self.pinned = None;
        self.status = SERVER_STATUS_AUTOCOMMIT;
        self.send(seq, &ok_payload(self.caps, self.status)).await
    }

    /// COM_CHANGE_USER: the client authenticates again (always switched to
    /// `mysql_native_password` with a new scramble: the handshake's is long gone) and starts a
    /// new session as that user, in the cluster and schema it names, with its character set:
    /// its connection is given back as at the end of a session (a transaction in progress
    /// rolls back), its statements and settings are gone, it is no longer pinned. A wrong
    /// password, an unknown user or database gets an ERR and the connection is closed.
    async fn com_change_user(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let cu = match codec::parse_change_user(payload, self.caps) {
            Ok(cu) => cu,
            Err(e) => {
                let err = err_payload(1043, b"08S01", &format!("Bad handshake: {e}"));
                let _ = self.send(1, &err).await;
                return Err(SessionError::Client(PacketError::Protocol(e)));
            }
        };
        let name = String::from_utf8_lossy(cu.user).into_owned();
        let database =
            (!cu.database.is_empty()).then(|| String::from_utf8_lossy(cu.database).into_owned());
        let charset = cu.charset.and_then(|c| u8::try_from(c).ok());
        let refuse = |code: u16, state: &[u8; 5], msg: String| (code, *state, msg);
        let denied = |sent: bool| {
            refuse(
                1045,
                b"28000",
                format!(
                    "Access denied for user '{name}' (using password: {})",
                    if sent { "YES" } else { "NO" }
                ),
            )
        };
        if self.caps & CLIENT_PLUGIN_AUTH == 0 {
            let (code, state, msg) = denied(!cu.auth_response.is_empty());
            let _ = self.send(1, &err_payload(code, &state, &msg)).await;
            return Err(SessionError::Refused(msg));
        }
        let scramble = super::startup::nonce();
        let mut sw = BytesMut::new();
        super::startup::put_switch_to_native(&mut sw, &scramble);
        self.send(1, &sw).await?;
        let resp = match read_packet(&mut self.client, &mut self.cin, self.max_packet).await {
            Ok(p) => p,
            Err(e) => return Err(SessionError::Client(e)),
        };
        if resp.seq != 2 {
            let r = super::startup::out_of_order();
            let _ = self
                .send(3, &err_payload(r.code, &r.state, &r.message))
                .await;
            return Err(SessionError::Refused(r.message));
        }
        let cfg = self.w.shared.config();
        let passed = cfg
            .user(&name)
            .is_some_and(|u| super::startup::change_user_passes(u, &scramble, &resp.payload));
        let picked = super::startup::pick_cluster(&cfg, database.as_deref());
        let next = self
            .w
            .clusters
            .load()
            .get(picked.as_ref().map_or("", |(c, _)| c.as_str()))
            .cloned();
        let (cluster, schema) = match (passed, picked, next) {
            (true, Some((_, schema)), Some(cluster)) => (cluster, schema),
            (passed, _, _) => {
                let (code, state, msg) = if passed {
                    refuse(
                        1049,
                        b"42000",
                        format!(
                            "Unknown database '{}' (no switchyard MySQL cluster serves it)",
                            database.unwrap_or_default()
                        ),
                    )
                } else {
                    denied(!resp.payload.is_empty())
                };
                let _ = self
                    .send(resp.next_seq, &err_payload(code, &state, &msg))
                    .await;
                return Err(SessionError::Refused(msg));
            }
        };
        // The old session ends here, as if the client had left.
        self.finish().await;
        self.cluster = cluster;
        self._connected = self.cluster.metrics.client_connected();
        let vars = match charset {
            Some(c) => charset_vars(c),
            None => self.login_vars.clone(),
        };
        self.login_vars = vars.clone();
        self.vars = vars;
        self.login_schema = schema.clone();
        self.schema = schema;
        self.pinned = None;
        self.status = SERVER_STATUS_AUTOCOMMIT;
        self.route_override = None;
        self.stmts.clear();
        self.long_data = false;
        self.own = Default::default();
        if self.schema.is_some() {
            // The schema must exist, as a direct server checks at once (1049 otherwise).
            if let Err(e) = self.acquire(Want::Primary).await {
                let _ = self.send(resp.next_seq, &e.err_payload()).await;
                return Err(SessionError::Refused("change user: schema refused".into()));
            }
        }
        tracing::debug!(user = %name, cluster = %self.cluster.database, "mysql client changed user");
        self.send(resp.next_seq, &ok_payload(self.caps, self.status))
            .await
    }

    /// Where the statement `sql` may run when the client holds no connection.
    fn want_for(&mut self, sql: &str) -> Result<Want, SelectError> {
        let state = self.cluster.state.clone();
        let mut class = self.w.shared.classifier_mysql.load().classify(sql);
        if let Some(h) = self.route_override {
            if hints::leading_hint(sql).is_none() {
                class = class.with_hint(h);
            }
        }
        let autocommit = self.status & SERVER_STATUS_AUTOCOMMIT != 0;
        let read = self.w.pool_mode == PoolMode::Transaction
            && self.pinned.is_none()
            && autocommit
            && state.split
            && match class.tx {
                TxEffect::Begin { read_only } => read_only,
                TxEffect::None => class.route == Route::Replica,
                _ => false,
            };
        if read {
            // Read-your-writes: a replica only once the position after the client's last
            // write is known, and only one that replayed past it.
            if let Some(min_lsn) = self.ryw.min_position(&state) {
                let want = Want::Replica { min_lsn };
                state.select(want, None)?;
                return Ok(want);
            }
        }
        state.primary()?;
        Ok(Want::Primary)
    }

    /// Statements whose session state cannot be applied again elsewhere pin the client (what
    /// the server's session tracking reports is handled with the answer).
    fn note_pins(&mut self, sql: &str) {
        if self.w.pool_mode != PoolMode::Transaction || self.pinned.is_some() {
            return;
        }
        let class = self.w.shared.classifier_mysql.load().classify(sql);
        if let Some(why) = pin_reason(sql, class.reason) {
            tracing::debug!(reason = why, "mysql client pinned to its connection");
            self.pinned = Some(why);
        }
    }

    /// [`Self::acquire`], or tell the client why not (false): the server's own error when
    /// applying the client's state failed (an unknown schema: 1049, as directly), else 1040.
    async fn acquire_or_tell(&mut self, want: Want) -> Result<bool, SessionError> {
        match self.acquire(want).await {
            Ok(()) => Ok(true),
            Err(e) => {
                self.send(1, &e.err_payload()).await?;
                Ok(false)
            }
        }
    }

    /// Check out a connection and bring it to the client's session state.
    async fn acquire(&mut self, want: Want) -> Result<(), AcquireError> {
        self.refresh_cluster().map_err(AcquireError::Other)?;
        self.for_write = matches!(want, Want::Primary);
        let state = self.cluster.state.clone();
        let mut exclude = None;
        loop {
            let idx = state
                .select(want, exclude)
                .map_err(|e| AcquireError::Other(e.to_string()))?;
            let pool = self.cluster.pools[idx].clone();
            match pool.checkout().await {
                Ok(conn) => return self.install(conn, idx).await,
                Err(crate::pool::CheckoutError::Connect(e)) => {
                    state.backends[idx].mark_failed(&e.to_string());
                    if matches!(want, Want::Primary) || exclude.is_some() {
                        return Err(AcquireError::Other(e.to_string()));
                    }
                    exclude = Some(idx);
                }
                Err(e) => return Err(AcquireError::Other(e.to_string())),
            }
        }
    }

    async fn install(&mut self, mut conn: MyPooled, idx: usize) -> Result<(), AcquireError> {
        conn.clean = false;
        let sql = self.state_sql(&conn);
        if !sql.is_empty() {
            let multi = if sql.contains("; ") {
                conn.ensure_multi_statements(true, INTERNAL_TIMEOUT).await
            } else {
                Ok(())
            };
            if let Err(e) = match multi {
                Ok(()) => conn.query(&sql, INTERNAL_TIMEOUT).await,
                Err(e) => Err(e),
            } {
                crate::pool::release(conn);
                return Err(match e {
                    MyQueryError::Server {
                        code,
                        sqlstate,
                        message,
                    } => AcquireError::Server {
                        code,
                        sqlstate,
                        message,
                    },
                    e => AcquireError::Other(format!("applying the session's state failed: {e}")),
                });
            }
        }
        conn.applied = self.vars.clone();
        conn.schema = self.schema.clone();
        if std::mem::take(&mut self.ignore_space_pending) {
            // CLIENT_IGNORE_SPACE: a server adds IGNORE_SPACE to the session's sql_mode at
            // login. Done on the first connection the client gets, the result kept as the
            // client's (and login) sql_mode from then on.
            let sql = "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',IGNORE_SPACE')";
            match conn.query(sql, INTERNAL_TIMEOUT).await {
                Ok(r) => {
                    if let Some((_, mode)) = r.variables.iter().find(|(k, _)| k == "sql_mode") {
                        for vars in [&mut self.vars, &mut self.login_vars, &mut conn.applied] {
                            set_var(vars, "sql_mode".into(), mode.clone());
                        }
                    }
                }
                Err(e) => {
                    crate::pool::release(conn);
                    return Err(AcquireError::Other(format!("CLIENT_IGNORE_SPACE: {e}")));
                }
            }
        }
        *self.slot.running.lock().unwrap() = Some(Running {
            addr: conn.addr,
            thread: conn.connection_id,
        });
        self.cluster.state.backends[idx].begin();
        self.backend_idx = idx;
        self.backend = Some(conn);
        self.bin.clear();
        Ok(())
    }

    /// The statements that bring `conn` to the client's character set, schema and session
    /// variables ("" when it is there already).
    fn state_sql(&self, conn: &MyConn) -> String {
        let mut parts = Vec::new();
        if conn.schema != self.schema {
            if let Some(s) = &self.schema {
                parts.push(format!("USE `{}`", s.replace('`', "``")));
            }
        }
        let mut sets = Vec::new();
        for (k, v) in &self.vars {
            if !conn.applied.iter().any(|(ak, av)| ak == k && av == v) {
                sets.push(format!("{k} = {}", sql_value(v)));
            }
        }
        for (k, _) in &conn.applied {
            if !self.vars.iter().any(|(vk, _)| vk == k) {
                sets.push(format!("{k} = DEFAULT"));
            }
        }
        if !sets.is_empty() {
            parts.push(format!("SET SESSION {}", sets.join(", ")));
        }
        parts.join("; ")
    }

    /// After a reload, move to this worker's current pools for the client's cluster.
    fn refresh_cluster(&mut self) -> Result<(), String> {
        let now = self
            .w
            .shared
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        if self.cluster.generation == now || self.backend.is_some() {
            return Ok(());
        }
        match self.w.clusters.load().get(&self.cluster.database) {
            Some(c) => {
                self.cluster = c.clone();
                Ok(())
            }
            None => Err(format!(
                "database {:?} is no longer served (removed by a config reload)",
                self.cluster.database
            )),
        }
    }

    /// Send `payload` (a command) to the held connection and stream the answer back.
    async fn forward(&mut self, payload: &[u8], answer: Answer) -> Result<(), SessionError> {
        let conn = self.backend.as_mut().expect("a connection is held");
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        codec::write_packet(&mut out, 0, payload);
        if let Err(e) = conn.stream.write_all(&out).await {
            conn.clean = false;
            conn.broken = true;
            return Err(SessionError::Backend(e.to_string()));
        }
        match self.relay(answer).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(c) = self.backend.as_mut() {
                    c.broken = true;
                    c.clean = false;
                }
                Err(e)
            }
        }
    }

    /// Stream one command's answer from the backend to the client, tracking status flags and
    /// session changes.
    async fn relay(&mut self, answer: Answer) -> Result<(), SessionError> {
        let mut at = if answer == Answer::Fetch {
            At::Rows
        } else {
            At::First
        };
        let mut continued = false;
        let mut rows = 0u64;
        loop {
            let (header_len, payload_len, first) = self.next_backend_packet().await?;
            let wire = header_len + payload_len;
            // The rest of a packet of 16 MiB or more: passed on, never read as a new packet.
            let continues = payload_len == codec::MAX_PACKET_PAYLOAD;
            if std::mem::replace(&mut continued, continues) {
                self.pass(wire);
                continue;
            }
            let ended = match (at, answer) {
                (_, Answer::Single) => {
                    self.pass(wire);
                    true
                }
                (At::First, _) | (At::Next, _) => match first {
                    Some(codec::OK_HEADER) if answer != Answer::FieldList => {
                        let more = self.on_ok(wire)?;
                        at = At::Next;
                        !more
                    }
                    Some(codec::ERR_HEADER) => {
                        self.pass(wire);
                        true
                    }
                    Some(codec::EOF_HEADER) if answer == Answer::FieldList && payload_len < 9 => {
                        self.on_eof(wire);
                        true
                    }
                    Some(codec::LOCAL_INFILE_HEADER) if answer == Answer::Query => {
                        // The servers are never told the client may send files; if one asks
                        // anyway, it gets an empty file.
                        self.pass_back_local_infile(wire).await?;
                        at = At::Next;
                        false
                    }
                    _ if answer == Answer::FieldList => {
                        self.pass(wire);
                        false
                    }
                    _ => {
                        // A result set: a column count.
                        let n = self.column_count(header_len, payload_len);
                        self.pass(wire);
                        at = At::Columns(n);
                        false
                    }
                },
                (At::Columns(n), _) => {
                    self.pass(wire);
                    at = if n <= 1 {
                        At::ColumnsEof
                    } else {
                        At::Columns(n - 1)
                    };
                    false
                }
                (At::ColumnsEof, _) => {
                    // The EOF after the column definitions (the servers run without
                    // CLIENT_DEPRECATE_EOF).
                    self.pass(wire);
                    at = At::Rows;
                    false
                }
                (At::Rows, _) => match first {
                    Some(codec::EOF_HEADER) if payload_len < 9 => {
                        let caps = self
                            .backend
                            .as_ref()
                            .map_or(CLIENT_PROTOCOL_41, |c| c.capabilities);
                        let warnings =
                            codec::parse_eof(&self.bin[4..wire], caps).map_or(0, |e| e.warnings);
                        self.own.result_set(std::mem::take(&mut rows), warnings);
                        let more = self.on_eof(wire);
                        at = At::Next;
                        !more
                    }
                    Some(codec::ERR_HEADER) => {
                        self.pass(wire);
                        true
                    }
                    _ => {
                        rows += 1;
                        self.pass(wire);
                        false
                    }
                },
            };
            if ended {
                return self.flush().await;
            }
            if self.cout.len() >= FLUSH_AT {
                self.flush().await?;
            }
        }
    }

    /// Make sure a whole packet (or, for large rows, at least its header) is buffered:
    /// (header length, payload length, first payload byte).
    async fn next_backend_packet(&mut self) -> Result<(usize, usize, Option<u8>), SessionError> {
        loop {
            if self.bin.len() >= 4 {
                let len = u32::from_le_bytes([self.bin[0], self.bin[1], self.bin[2], 0]) as usize;
                if self.bin.len() >= 4 + len.min(1) {
                    // Whole packets only: rows are forwarded as they are, and a packet up to
                    // 16 MiB is bounded.
                    if self.bin.len() >= 4 + len {
                        return Ok((4, len, self.bin.get(4).copied()));
                    }
                }
            }
            let conn = self.backend.as_mut().expect("a connection is held");
            self.bin.reserve(16 * 1024);
            // The client is watched meanwhile: what it sends early (pipelining drivers) waits
            // in `cin`; a client that goes away has its statement and transaction stopped.
            let client_room = self.cin.len() < CLIENT_READ_AHEAD;
            // No timer here: a statement may run as long as it does directly, and arming one
            // per answer cost a wakeup of the runtime's driver per statement.
            let n = tokio::select! {
                r = conn.stream.read_buf(&mut self.bin) => {
                    r.map_err(|e| SessionError::Backend(e.to_string()))?
                }
                r = self.client.read_buf(&mut self.cin), if client_room => {
                    match r {
                        Ok(n) if n > 0 => continue,
                        Ok(_) => {
                            self.kill_held_connection();
                            return Err(SessionError::Client(PacketError::Closed));
                        }
                        Err(e) => {
                            self.kill_held_connection();
                            return Err(SessionError::ClientIo(e));
                        }
                    }
                }
            };
            if n == 0 {
                return Err(SessionError::Backend("server closed the connection".into()));
            }
        }
    }

    /// Queue the packet at the head of the backend buffer for the client, as it is.
    fn pass(&mut self, wire: usize) {
        self.cout.extend_from_slice(&self.bin[..wire]);
        self.bin.advance(wire);
    }

    fn column_count(&self, header: usize, len: usize) -> u64 {
        match codec::read_lenenc(&self.bin[header..header + len]) {
            Ok((codec::LenEnc::Int(n), _)) => n,
            _ => 0,
        }
    }

    /// An EOF packet: note its status; true if more results follow.
    fn on_eof(&mut self, wire: usize) -> bool {
        let payload = &self.bin[4..wire];
        let caps = self
            .backend
            .as_ref()
            .map_or(CLIENT_PROTOCOL_41, |c| c.capabilities);
        let status = codec::parse_eof(payload, caps).map(|e| e.status).ok();
        if let Some(status) = status {
            self.note_status(status);
        }
        self.pass(wire);
        status.is_some_and(|s| s & SERVER_MORE_RESULTS_EXISTS != 0)
    }

    /// An OK packet: note its status and session changes; pass it on (without the session
    /// state for a client that did not ask for it). True if more results follow.
    fn on_ok(&mut self, wire: usize) -> Result<bool, SessionError> {
        let backend_caps = self.backend.as_ref().map_or(0, |c| c.capabilities);
        let payload = self.bin[4..wire].to_vec();
        let seq = self.bin[3];
        let Ok(mut ok) = codec::parse_ok(&payload, backend_caps) else {
            self.pass(wire);
            return Ok(false);
        };
        // A client that asked for CLIENT_FOUND_ROWS counts matched rows, not changed ones
        // (SQLAlchemy's optimistic version checks rely on it); the servers' connections are
        // shared, so they run without it and the count comes from the UPDATE's info string.
        let mut rewrite = ok.session_state.is_some() && self.caps & CLIENT_SESSION_TRACK == 0;
        if self.caps & CLIENT_FOUND_ROWS != 0 {
            if let Some(matched) = rows_matched(ok.info) {
                if matched != ok.affected_rows {
                    ok.affected_rows = matched;
                    rewrite = true;
                }
            }
        }
        self.note_status(ok.status);
        self.own
            .ok(ok.affected_rows, ok.last_insert_id, ok.warnings);
        if let Some(state) = ok.session_state {
            self.note_session_changes(state);
        }
        let more = ok.status & SERVER_MORE_RESULTS_EXISTS != 0;
        if rewrite {
            let mut p = BytesMut::new();
            codec::put_ok(&mut p, &ok, self.caps);
            codec::write_packet(&mut self.cout, seq, &p);
            self.bin.advance(wire);
        } else {
            self.pass(wire);
        }
        Ok(more)
    }

    fn note_status(&mut self, status: u16) {
        self.status = status;
        if let Some(c) = self.backend.as_mut() {
            c.status = status;
        }
    }

    /// Session changes the server reported with an OK: replayed variables and the schema are
    /// kept for the client; anything else pins it.
    fn note_session_changes(&mut self, state: &[u8]) {
        let mut explained = false;
        let mut changed = false;
        for change in codec::session_changes(state) {
            let Ok(change) = change else { break };
            match change {
                codec::SessionChange::SystemVariable { name, value } => {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    let value = String::from_utf8_lossy(value).into_owned();
                    if INFORMATIONAL.contains(&name.as_str()) {
                        // Set by the server itself: the state change it flags is explained.
                        explained = true;
                        continue;
                    }
                    if REPLAYED.contains(&name.as_str()) {
                        set_var(&mut self.vars, name.clone(), value.clone());
                        if let Some(c) = self.backend.as_mut() {
                            set_var(&mut c.applied, name, value);
                        }
                        explained = true;
                    } else if self.w.pool_mode == PoolMode::Transaction && self.pinned.is_none() {
                        tracing::debug!(variable = %name, "mysql client pinned: a session variable not applied elsewhere changed");
                        self.pinned = Some("session variable");
                    }
                }
                codec::SessionChange::Schema(s) => {
                    let s = String::from_utf8_lossy(s).into_owned();
                    self.schema = Some(s.clone());
                    if let Some(c) = self.backend.as_mut() {
                        c.schema = Some(s);
                    }
                    explained = true;
                }
                codec::SessionChange::StateChange(_) => changed = true,
                _ => {}
            }
        }
        if changed
            && !explained
            && self.w.pool_mode == PoolMode::Transaction
            && self.pinned.is_none()
        {
            tracing::debug!("mysql client pinned: the server reported a session state change");
            self.pinned = Some("session state");
        }
    }

    /// A LOCAL INFILE request: answer the server with an empty file and pass on what it says.
    async fn pass_back_local_infile(&mut self, wire: usize) -> Result<(), SessionError> {
        let seq = self.bin[3];
        self.bin.advance(wire);
        let conn = self.backend.as_mut().expect("held");
        let mut out = BytesMut::new();
        codec::write_packet(&mut out, seq.wrapping_add(1), &[]);
        conn.stream
            .write_all(&out)
            .await
            .map_err(|e| SessionError::Backend(e.to_string()))
    }

    /// `KILL [QUERY|CONNECTION] id` with a proxy-issued id: sent to the server connection
    /// that client holds now. Never reaches another client's statement: only the client's
    /// own connection is named, and that connection is closed afterwards, not pooled.
    async fn kill(&mut self, query_only: bool, id: u32) -> Result<(), SessionError> {
        let Some(slot) = self.w.my.lookup(id) else {
            let err = err_payload(1094, b"HY000", &format!("Unknown thread id: {id}"));
            return self.send(1, &err).await;
        };
        let running = {
            // `killed` is set under the lock `detach` takes to let go of the connection: the
            // session either still holds it and will close it, or has already let go and no
            // KILL is sent (one sent for a connection back in the pool would stop whoever
            // takes it next).
            let running = slot.running.lock().unwrap();
            if running.is_some() {
                slot.killed.store(true, Relaxed);
            }
            *running
        };
        if !query_only {
            slot.terminate.store(true, Relaxed);
        }
        if let Some(r) = running {
            let target = self
                .cluster
                .pools
                .iter()
                .find(|p| p.addr() == r.addr)
                .map(|p| p.target().clone());
            if let Some(t) = target {
                tokio::spawn(async move {
                    if let Err(e) = t.kill(r.thread, true, Duration::from_secs(5)).await {
                        tracing::warn!(error = %e, "KILL QUERY on the backend failed");
                    }
                });
            }
        }
        self.send(1, &ok_payload(self.caps, self.status)).await
    }

    /// The client left while its statement ran: the server connection is killed (the
    /// statement stops, its transaction rolls back, its locks go; a closed socket alone is
    /// not noticed by a statement waiting for a lock) and never reused.
    fn kill_held_connection(&mut self) {
        let Some(conn) = self.backend.as_mut() else {
            return;
        };
        conn.killed = true;
        conn.broken = true;
        conn.clean = false;
        let (addr, thread) = (conn.addr, conn.connection_id);
        let target = self
            .cluster
            .pools
            .iter()
            .find(|p| p.addr() == addr)
            .map(|p| p.target().clone());
        if let Some(t) = target {
            tokio::spawn(async move {
                if let Err(e) = t.kill(thread, false, Duration::from_secs(5)).await {
                    tracing::warn!(error = %e, "KILL of a gone client's connection failed");
                }
            });
        }
    }

    /// Whether the session allows giving the held connection back (transaction mode).
    fn may_release(&self) -> bool {
        self.backend.is_some()
            && self.w.pool_mode == PoolMode::Transaction
            && self.pinned.is_none()
            && !self.long_data
            && self.status & SERVER_STATUS_IN_TRANS == 0
            && !self.slot.terminate.load(Relaxed)
    }

    /// Before the connection goes: what only it knows about the client's last statement
    /// (its warnings, what SQL_CALC_FOUND_ROWS counted). SHOW WARNINGS first: a SELECT clears
    /// them.
    async fn capture_own_results(&mut self) {
        let (warnings, calc) = (self.own.warnings_pending, self.own.calc_found_rows);
        if !warnings && !calc {
            return;
        }
        self.own.warnings_pending = false;
        self.own.calc_found_rows = false;
        let Some(conn) = self.backend.as_mut() else {
            return;
        };
        if warnings {
            if let Ok(r) = conn.query("SHOW WARNINGS", INTERNAL_TIMEOUT).await {
                self.own.warning_rows = r
                    .rows()
                    .iter()
                    .map(|row| {
                        let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                        (col(0), col(1), col(2))
                    })
                    .collect();
            }
        }
        if calc {
            if let Ok(r) = conn.query("SELECT FOUND_ROWS()", INTERNAL_TIMEOUT).await {
                if let Some(n) = r.value().and_then(|v| v.parse().ok()) {
                    self.own.found_rows = n;
                }
            }
        }
    }

    /// Answer a query about the client's own last statement (no connection held).
    async fn answer_own(&mut self, q: &own::OwnQuery) -> Result<(), SessionError> {
        let packets = self.own.answer(q, self.status);
        let mut seq = 1u8;
        for p in packets {
            seq = codec::write_packet(&mut self.cout, seq, &p);
        }
        self.flush().await
    }

    /// Give the connection back when the client's session allows (transaction mode).
    fn maybe_release(&mut self) {
        if !self.may_release() {
            return;
        }
        if let Some(conn) = self.detach() {
            crate::pool::release(conn);
        }
    }

    fn detach(&mut self) -> Option<MyPooled> {
        let mut conn = self.backend.take()?;
        {
            // Under the lock `kill` sets `killed` with (see there).
            let mut running = self.slot.running.lock().unwrap();
            *running = None;
            if self.slot.killed.swap(false, Relaxed) {
                conn.killed = true;
            }
        }
        self.cluster.state.backends[self.backend_idx].end();
        if self.for_write {
            self.ryw.wrote(&self.cluster.state);
        }
        conn.clean = !conn.broken
            && !conn.state_unknown
            && conn.status & SERVER_STATUS_IN_TRANS == 0
            && conn.prepared.len() <= MAX_PREPARED_PER_CONN;
        Some(conn)
    }

    /// The client is gone: a connection inside a transaction or pinned is reset (or
    /// closed), never handed on as it is.
    async fn finish(&mut self) {
        let in_tx = self.status & SERVER_STATUS_IN_TRANS != 0;
        let pinned = self.pinned.is_some() || self.w.pool_mode == PoolMode::Session;
        let Some(mut conn) = self.detach() else {
            return;
        };
        if in_tx || conn.broken || conn.killed {
            conn.clean = false;
        } else if pinned {
            conn.clean = conn.reset(INTERNAL_TIMEOUT).await.is_ok();
            conn.applied.clear();
        }
        crate::pool::release(conn);
    }
}

/// What a command's answer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// OK, ERR, or result sets (possibly several).
    Query,
    /// COM_FIELD_LIST: column definitions up to an EOF, or ERR.
    FieldList,
    /// COM_STATISTICS: one packet.
    Single,
    /// COM_STMT_FETCH: rows up to an EOF, or ERR.
    Fetch,
}

/// Where in an answer the next packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    First,
    /// After a result that said more follow.
    Next,
    Columns(u64),
    ColumnsEof,
    Rows,
}

/// "Rows matched: 3  Changed: 0  Warnings: 0" (an UPDATE's OK info): the matched count.
fn rows_matched(info: &[u8]) -> Option<u64> {
    let rest = info.strip_prefix(b"Rows matched: ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Why `sql` (classified as `reason`) pins a client, if it does: state the proxy cannot
/// apply on another connection.
pub fn pin_reason(sql: &str, reason: Reason) -> Option<&'static str> {
    let upper = sql.trim_start().to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().take(4).collect();
    let w = |i: usize| words.get(i).copied().unwrap_or("");
    if w(0) == "CREATE" && (w(1) == "TEMPORARY" || w(2) == "TEMPORARY") {
        return Some("temporary table");
    }
    if w(0) == "LOCK" && (w(1) == "TABLES" || w(1) == "TABLE") {
        return Some("LOCK TABLES");
    }
    if w(0) == "PREPARE" {
        return Some("SQL PREPARE");
    }
    if w(0) == "HANDLER" {
        return Some("HANDLER");
    }
    if upper.contains("GET_LOCK") {
        return Some("GET_LOCK");
    }
    // User variables: assigned now, read later (the server does not report them by name).
    if upper.contains(":=")
        || (w(0) == "SET" && upper.contains('@') && !upper.contains("@@"))
        || upper.contains("INTO @")
    {
        return Some("user variable");
    }
    if w(0) == "SET" && (w(1) == "TRANSACTION") {
        return Some("SET TRANSACTION (next transaction)");
    }
    let _ = reason;
    None
}

/// `KILL [QUERY | CONNECTION] n`: (query only, n).
fn parse_kill(sql: &str) -> Option<(bool, u32)> {
    let mut words = sql.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("KILL") {
        return None;
    }
    let mut w = words.next()?;
    let mut query_only = false;
    if w.eq_ignore_ascii_case("QUERY") {
        query_only = true;
        w = words.next()?;
    } else if w.eq_ignore_ascii_case("CONNECTION") {
        w = words.next()?;
    }
    let id = w.trim_end_matches(';').parse().ok()?;
    words.next().is_none().then_some((query_only, id))
}

fn set_var(vars: &mut Vec<(String, String)>, name: String, value: String) {
    match vars.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
        Ok(i) => vars[i].1 = value,
        Err(i) => vars.insert(i, (name, value)),
    }
}

/// A variable's value as SQL: numbers as they are, anything else quoted.
fn sql_value(v: &str) -> String {
    let numeric = !v.is_empty()
        && v.trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.');
    if numeric {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
    }
}

/// The session variables a character set id from the handshake sets.
fn charset_vars(id: u8) -> Vec<(String, String)> {
    let (cs, coll) = match id {
        8 => ("latin1", "latin1_swedish_ci"),
        11 => ("ascii", "ascii_general_ci"),
        33 => ("utf8mb3", "utf8mb3_general_ci"),
        46 => ("utf8mb4", "utf8mb4_bin"),
        63 => ("binary", "binary"),
        83 => ("utf8mb3", "utf8mb3_bin"),
        192 => ("utf8mb3", "utf8mb3_unicode_ci"),
        224 => ("utf8mb4", "utf8mb4_unicode_ci"),
        _ => ("utf8mb4", "utf8mb4_general_ci"),
    };
    let mut v = vec![
        ("character_set_client".to_string(), cs.to_string()),
        ("character_set_connection".to_string(), cs.to_string()),
        ("character_set_results".to_string(), cs.to_string()),
        ("collation_connection".to_string(), coll.to_string()),
    ];
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matched_rows_come_from_the_info_string() {
        assert_eq!(
            rows_matched(b"Rows matched: 3  Changed: 0  Warnings: 0"),
            Some(3)
        );
        assert_eq!(
            rows_matched(b"Records: 3  Duplicates: 0  Warnings: 0"),
            None
        );
        assert_eq!(rows_matched(b""), None);
    }

    #[test]
    fn kill_statements_parse() {
        assert_eq!(parse_kill("KILL 42"), Some((false, 42)));
        assert_eq!(parse_kill("kill query 7;"), Some((true, 7)));
        assert_eq!(parse_kill("KILL CONNECTION 9"), Some((false, 9)));
        assert_eq!(parse_kill("KILL 42 43"), None);
        assert_eq!(parse_kill("SELECT 1"), None);
    }

    #[test]
    fn what_pins() {
        for sql in [
            "CREATE TEMPORARY TABLE t (a int)",
            "SET @a = 1",
            "SELECT @a := 1",
            "SELECT 1 INTO @x",
            "SELECT GET_LOCK('l', 1)",
            "LOCK TABLES t WRITE",
            "PREPARE s FROM 'SELECT 1'",
        ] {
            assert!(pin_reason(sql, Reason::Unknown).is_some(), "{sql}");
        }
        for sql in [
            "SET NAMES utf8mb4",
            "SET sql_mode = 'ANSI'",
            "SET SESSION time_zone = '+00:00'",
            "SELECT @@version",
            "UPDATE t SET a = 1",
            "USE shop",
        ] {
            assert!(pin_reason(sql, Reason::Unknown).is_none(), "{sql}");
        }
    }

    #[test]
    fn values_are_quoted_unless_numeric() {
        assert_eq!(sql_value("100"), "100");
        assert_eq!(sql_value("-1.5"), "-1.5");
        assert_eq!(sql_value("+00:00"), "'+00:00'");
        assert_eq!(sql_value("it's"), "'it''s'");
        assert_eq!(sql_value("ON"), "'ON'");
    }
}
