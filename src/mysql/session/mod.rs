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
//! Beside this file: checking out, holding and giving back the backend connection
//! (`lease.rs`), the replay and pinning rules (`state.rs`), answers on their way back
//! (`relay.rs`), commands that change the session as a whole (`commands.rs`:
//! COM_RESET_CONNECTION, COM_CHANGE_USER, KILL), COM_QUERY's classification and routing
//! (`query.rs`), the binary protocol under transaction pooling (`prepared.rs`) and the
//! client's own last-statement results (`own.rs`).

mod commands;
mod lease;
mod own;
mod prepared;
mod query;
mod relay;
mod state;
mod stats;

use state::{charset_vars, names_collations, parse_kill, set_var, unset_var, INFORMATIONAL};
pub use state::{pin_reason, ClientTracking, REPLAYED};

use relay::Answer;

use crate::cluster::{SelectError, Want};
use crate::config::PoolMode;
use crate::mysql::backend::{MyConn, MyPooled, MyQueryError};
use crate::mysql::codec::{self, flags::*, Command};
use crate::mysql::io::{err_payload, ok_payload, read_packet, PacketError};
use crate::mysql::worker::{MyClusterPools, Running, Slot, Worker};
use crate::router::classify::{Class, Reason, Route, TxEffect};
use crate::router::hints::{self, Hint};
use bytes::{Buf, BytesMut};
use prepared::ClientStmt;
use std::future::Future;
use std::pin::Pin;
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

/// What the command whose answer is in flight is, for explaining the session changes the
/// server reports with it (its "state changed" flag covers user variables, temporary tables
/// and locks too, which no variable report names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Only SET / USE / transaction statements, or COM_INIT_DB: reported replayed variables and the schema
    /// explain a state change.
    SetOrUse,
    /// CALL, DO: a routine may do anything besides what it reports; any state change pins.
    Routine,
    /// Anything else: only the server's own informational variables explain a state change.
    Other,
}

impl Origin {
    fn of(reason: Reason) -> Origin {
        match reason {
            Reason::Session | Reason::TransactionControl => Origin::SetOrUse,
            Reason::Utility => Origin::Routine,
            _ => Origin::Other,
        }
    }
}

/// Bytes a client may send ahead while its statement runs before the proxy stops reading
/// (and so stops noticing whether it is still there) until the answer is through.
const CLIENT_READ_AHEAD: usize = 1 << 20;

/// A client after login.
pub struct Session<S> {
    /// Draining: the client has had the one command a drain lets it run (see
    /// `close_for_drain`).
    drain_served: bool,
    w: Arc<Worker>,
    cluster: Arc<MyClusterPools>,
    /// The client's user name (in clusters whose servers see each client's own user, its
    /// pools are that user's).
    user: Arc<str>,
    client: S,
    /// Capabilities agreed with the client.
    caps: u64,
    /// The handshake's scramble (COM_CHANGE_USER is checked against it).
    scramble: [u8; 20],
    max_packet: usize,
    /// `[pool] idle_transaction_timeout` when the client connected (zero: off).
    idle_transaction_timeout: std::time::Duration,
    /// `[general] client_idle_timeout` when the client connected (zero: off).
    client_idle_timeout: std::time::Duration,
    /// `[general] client_write_timeout` when the client connected (zero: off).
    client_write_timeout: std::time::Duration,
    cin: BytesMut,
    cout: BytesMut,
    backend: Option<MyPooled>,
    /// The clean connections the client gave back last, one per server, kept for its next
    /// statements there while no other client needs them (see `pool::Parkings`).
    parking: crate::pool::Parkings<crate::mysql::backend::MyTarget>,
    /// Bytes from the backend not yet handled.
    bin: BytesMut,
    /// A command on its way to the server (kept between commands).
    bout: BytesMut,
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
    /// What kind of command the answer in flight belongs to: which session changes the
    /// server reports it can explain (`relay.rs`).
    origin: Origin,
    /// Status flags of the client's session as last reported.
    status: u16,
    /// What the client's own session tracking would report (with CLIENT_SESSION_TRACK).
    track: state::ClientTracking,
    route_override: Option<Hint>,
    /// Statements the client prepared, by its ids.
    stmts: crate::mysql::IdMap<u32, ClientStmt>,
    next_stmt: u32,
    /// The client id of the last statement prepared, if that prepare succeeded: what
    /// MariaDB's id 0xFFFFFFFF names (a COM_STMT_EXECUTE sent right behind its
    /// COM_STMT_PREPARE, before the id is known, as MariaDB's connectors pipeline them).
    last_prepared: Option<u32>,
    /// The collations the character set statements of the query running name, in order (see
    /// [`state::names_collations`]): MariaDB's session tracking reports the character_set_*
    /// variables of `SET NAMES .. COLLATE ..`, not collation_connection.
    names_collations: std::collections::VecDeque<Option<String>>,
    /// With autocommit off, a `SAVEPOINT` before any statement of the transaction opens it
    /// on the server, which leaves `SERVER_STATUS_IN_TRANS` clear: the connection stays with
    /// the client until the transaction ends (COMMIT, ROLLBACK, autocommit on) or the server
    /// says it is in one.
    implicit_tx: bool,
    /// The status flags may be out of date (an ERR with autocommit off): asked of the
    /// server after the command.
    status_stale: bool,
    /// The last answer relayed: how many statements of its command completed (an OK, or a
    /// result set's EOF), and the error that ended it, if one did. A text of several
    /// statements stops at its first error: the ones after it did not run.
    answered: (usize, Option<u16>),
    /// With the statistics on, for a COM_QUERY that may hold several statements: when each
    /// of its results ended (see `stats::count_parts`).
    result_ends: Option<Vec<std::time::Instant>>,
    /// The statement ids (server's, client's) of the command in flight: the server's errors
    /// are passed on naming the client's.
    err_ids: Option<(u32, u32)>,
    /// COM_STMT_SEND_LONG_DATA went to the held connection: it stays until the execute.
    long_data: bool,
    /// The statements (proxy ids) prepared afresh for the long data of their next execute.
    long_data_fresh: Vec<u64>,
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
    // Metrics of the statement (transaction) on the held connection, as for PostgreSQL.
    /// Why the next connection is taken where it is (`statements_routed_total`'s reason).
    route_reason: &'static str,
    routed_cache: crate::metrics::RoutedCache,
    /// The held connection's `route` label and since when it is held.
    held_route: &'static str,
    held_since: std::time::Instant,
    /// Counts the held connection for PAUSE (see `cluster::pause`).
    pause_hold: Option<crate::cluster::pause::Hold>,
    /// Bytes to the server and to the client while the connection is held.
    bytes_up: u64,
    bytes_down: u64,
    /// Whose statements these are for `[general] query_digests` (made when first needed).
    stats_owner: Option<crate::metrics::queries::Owner>,
    _connected: crate::metrics::GaugeGuard,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub fn new(
        w: Arc<Worker>,
        cluster: Arc<MyClusterPools>,
        client: S,
        login: crate::mysql::startup::Login,
        slot: Arc<Slot>,
        leftover: BytesMut,
    ) -> Self {
        let crate::mysql::startup::Login {
            user,
            caps,
            charset,
            schema,
            scramble,
            ..
        } = login;
        let (max_packet, idle_transaction_timeout, client_idle_timeout, client_write_timeout) = {
            let cfg = w.shared.config();
            (
                cfg.general.max_message_bytes,
                cfg.pool.idle_transaction_timeout,
                cfg.general.client_idle_timeout,
                cfg.general.client_write_timeout,
            )
        };
        let connected = cluster.metrics.client_connected();
        let vars = charset_vars(charset);
        let user: Arc<str> = Arc::from(user);
        *slot.user.lock().unwrap() = Some(user.clone());
        let id = slot.id;
        Session {
            w,
            cluster,
            user,
            client,
            caps,
            scramble,
            max_packet,
            idle_transaction_timeout,
            client_idle_timeout,
            client_write_timeout,
            drain_served: false,
            cin: leftover,
            // Taken when needed (`net::bufs`).
            cout: BytesMut::new(),
            backend: None,
            parking: Default::default(),
            bin: BytesMut::new(),
            bout: BytesMut::new(),
            backend_idx: 0,
            slot,
            login_vars: vars.clone(),
            vars,
            login_schema: schema.clone(),
            schema,
            pinned: None,
            origin: Origin::Other,
            status: SERVER_STATUS_AUTOCOMMIT,
            track: Default::default(),
            route_override: None,
            stmts: Default::default(),
            next_stmt: 0,
            last_prepared: None,
            names_collations: Default::default(),
            implicit_tx: false,
            status_stale: false,
            answered: (0, None),
            result_ends: None,
            err_ids: None,
            long_data: false,
            long_data_fresh: Vec::new(),
            for_write: true,
            ryw: Default::default(),
            own: own::OwnResults {
                connection_id: id,
                ..Default::default()
            },
            multi_statements: caps & CLIENT_MULTI_STATEMENTS != 0,
            ignore_space_pending: caps & CLIENT_IGNORE_SPACE != 0,
            route_reason: "command",
            routed_cache: Default::default(),
            held_route: crate::metrics::ROUTE_PRIMARY,
            held_since: std::time::Instant::now(),
            pause_hold: None,
            bytes_up: 0,
            bytes_down: 0,
            stats_owner: None,
            _connected: connected,
        }
    }

    /// Serve the client until it quits or goes away, then give back or close its connection.
    pub async fn run(mut self: Box<Self>) -> Result<(), SessionError> {
        let r = self.serve().await;
        self.finish().await;
        r
    }

    /// Draining, and this client holds no server connection. One idle a while is told at
    /// once (unasked, as a server shutting down does). One busy a moment ago is likely to
    /// send again soon (a pool's check, or the next transaction): the session waits for
    /// that, up to [`crate::engine::DRAIN_IDLE_MS`], then tells it unasked. A pool's check
    /// (COM_PING, `SELECT 1`) finds the connection closed, which every pool takes for a dead
    /// connection to replace (with one to the process that took the listeners over, after a
    /// handover); an ERR answer some pools take for the application's error. The first
    /// other command since the drain began runs (returned): a check that passed just before
    /// the drain is followed by the transaction it was for. Any after that is answered with
    /// ERR 1053 (it did not run) and the connection closed.
    async fn close_for_drain(&mut self, idle_from: u64) -> Option<crate::mysql::io::Packet> {
        if let Some(rest) = crate::engine::drain_wait(idle_from) {
            let next = read_packet(&mut self.client, &mut self.cin, self.max_packet);
            match tokio::time::timeout(rest, next).await {
                Ok(Ok(p)) => return self.drain_decide(p).await,
                Ok(Err(_)) => return None,
                Err(_) => {}
            }
        }
        let _ = self.send(0, &shutdown_err()).await;
        None
    }

    /// Draining: the command `p` of a client between transactions runs (returned) or not
    /// (see [`Self::close_for_drain`]).
    async fn drain_decide(
        &mut self,
        p: crate::mysql::io::Packet,
    ) -> Option<crate::mysql::io::Packet> {
        if is_ping(&p.payload) {
            return None;
        }
        if self.drain_served {
            let _ = self.send(p.next_seq, &shutdown_err()).await;
            return None;
        }
        self.drain_served = true;
        Some(p)
    }

    async fn serve(&mut self) -> Result<(), SessionError> {
        let shutdown = self.w.shared.shutdown.clone();
        loop {
            if self.slot.end.is_ended() {
                return Ok(());
            }
            let idle = self.idle_limit();
            let packet = if self.backend.is_none() || idle.is_some() {
                let watch_shutdown = self.backend.is_none();
                if watch_shutdown {
                    // Waiting for the client with no server: the empty buffers go back (see
                    // `net::bufs`; the client's own is taken only while a read finds bytes).
                    crate::net::bufs::give_all([&mut self.cout, &mut self.bin, &mut self.bout]);
                }
                let idle_from = crate::pool::coarse_ms();
                let past_idle = async {
                    match idle {
                        Some((limit, _)) => tokio::time::sleep(limit).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    // A command already sent is served (its answer would otherwise be the
                    // unasked goodbye below, out of sequence).
                    biased;
                    // Once the drain has let one command run, the next is the drain's.
                    p = read_packet(&mut self.client, &mut self.cin, self.max_packet),
                        if !(self.drain_served && watch_shutdown) => match p {
                            Ok(p) if watch_shutdown && shutdown.is_cancelled() => {
                                match self.drain_decide(p).await {
                                    Some(p) => Ok(p),
                                    None => return Ok(()),
                                }
                            }
                            other => other,
                        },
                    _ = shutdown.cancelled(), if watch_shutdown => {
                        match self.close_for_drain(idle_from).await {
                            Some(p) => Ok(p),
                            None => return Ok(()),
                        }
                    }
                    _ = past_idle => {
                        let (limit, in_tx) = idle.expect("armed only with a limit");
                        if in_tx {
                            return self.idle_in_transaction(limit).await;
                        }
                        // As a MySQL 8 server past wait_timeout: the error, unasked, then the
                        // close.
                        let msg = format!(
                            "switchyard: the client was disconnected because of inactivity \
                             (idle for longer than {limit:?}, client_idle_timeout)"
                        );
                        let _ = self.send(0, &err_payload(4031, b"HY000", &msg)).await;
                        return Err(SessionError::Refused(msg));
                    }
                }
            } else {
                read_packet(&mut self.client, &mut self.cin, self.max_packet).await
            };
            // Buffers given back while waiting, for the command's answers.
            crate::net::bufs::take_all([&mut self.cout, &mut self.bout]);
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
            let command = Command::from_byte(first);
            self.origin = match command {
                Command::InitDb => Origin::SetOrUse,
                _ => Origin::Other,
            };
            if command != Command::Quit && self.held_server_fenced() {
                // The server this client holds (in a transaction, pinned, session mode) was
                // demoted by a newer primary: nothing more goes to it, and what the client
                // began there is rolled back with the connection.
                let addr = self.cluster.state.backends[self.backend_idx].addr;
                let msg = format!(
                    "switchyard: the server {addr} this session used is no longer the primary \
                     (a newer primary was promoted); reconnect"
                );
                if !command.has_no_response() {
                    let _ = self.send(seq, &err_payload(1927, b"70100", &msg)).await;
                }
                if let Some(conn) = self.backend.as_mut() {
                    conn.broken = true;
                }
                return Err(SessionError::Refused(msg));
            }
            // Set by COM_QUERY for its own text; nothing else names a collation.
            self.names_collations.clear();
            match command {
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
                Command::ProcessKill => {
                    // COM_PROCESS_KILL (mysqli::kill): `KILL CONNECTION id` as a command.
                    match packet.payload.get(1..5) {
                        Some(id) => {
                            let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                            self.kill(false, id).await?
                        }
                        None => {
                            let err = err_payload(1047, b"08S01", "malformed COM_PROCESS_KILL");
                            self.send(seq, &err).await?
                        }
                    }
                }
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
    /// Sends the proxy's own one-packet answer to a command; an OK or ERR is the client's
    /// last statement result, as if the server had sent it.
    /// The client sat idle in its transaction past `limit`: the connection is closed now
    /// (the server rolls back and releases the locks), and the client learns it from the
    /// answer to its next command (MySQL 8's ER_CLIENT_INTERACTION_TIMEOUT, numbered as the
    /// client expects: an error sent unasked would be out of sequence for most drivers),
    /// then the session ends.
    fn idle_in_transaction(
        &mut self,
        limit: std::time::Duration,
    ) -> Pin<Box<impl Future<Output = Result<(), SessionError>> + '_>> {
        // Boxed (once, at the end): see [`Session::acquire`].
        Box::pin(self.end_idle_transaction(limit))
    }

    async fn end_idle_transaction(
        &mut self,
        limit: std::time::Duration,
    ) -> Result<(), SessionError> {
        self.finish().await;
        let msg = format!(
            "switchyard: idle in a transaction for longer than {limit:?} \
             (idle_transaction_timeout); the transaction was rolled back"
        );
        let shutdown = self.w.shared.shutdown.clone();
        let next = tokio::select! {
            p = read_packet(&mut self.client, &mut self.cin, self.max_packet) => p.ok(),
            _ = shutdown.cancelled() => None,
        };
        if let Some(p) = next {
            let quit = p.payload.first().map(|&b| Command::from_byte(b)) == Some(Command::Quit);
            if !quit {
                let _ = self
                    .send(p.next_seq, &err_payload(4031, b"HY000", &msg))
                    .await;
            }
        }
        Err(SessionError::Refused(msg))
    }

    /// How long the client may be idle now, and whether inside a transaction: `[pool]
    /// idle_transaction_timeout` when it holds a connection inside a transaction, `[general]
    /// client_idle_timeout` otherwise. No timer when the one that applies is off.
    fn idle_limit(&self) -> Option<(std::time::Duration, bool)> {
        let in_tx = self.backend.as_ref().is_some_and(|c| c.in_transaction());
        let limit = if in_tx {
            self.idle_transaction_timeout
        } else {
            self.client_idle_timeout
        };
        (!limit.is_zero()).then_some((limit, in_tx))
    }

    async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<(), SessionError> {
        self.note_own_answer(payload);
        codec::write_packet(&mut self.cout, seq, payload);
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), SessionError> {
        if self.cout.is_empty() {
            return Ok(());
        }
        let write = async {
            self.client.write_all(&self.cout).await?;
            self.client.flush().await
        };
        // A client that takes nothing for `client_write_timeout` (a server's
        // net_write_timeout) is let go, and with it the server connection it holds.
        let r = if self.client_write_timeout.is_zero() {
            write.await
        } else {
            crate::net::within(self.client_write_timeout, write).await
        };
        self.cout.clear();
        if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::TimedOut) {
            self.cluster
                .metrics
                .error(crate::metrics::kind::CLIENT_WRITE_TIMEOUT);
        }
        r.map_err(SessionError::ClientIo)
    }

    /// Before the connection goes: what only it knows about the client's last statement
    /// (its warnings, what SQL_CALC_FOUND_ROWS counted). SHOW WARNINGS first: a SELECT clears
    /// them.
    async fn capture_own_results(&mut self) {
        let (warnings, calc) = (self.own.warnings_pending, self.own.calc_found_rows);
        if !warnings && !calc {
            return;
        }
        // Boxed, as are the session's other rare waits (see [`Session::acquire`]).
        let capture = Box::pin(self.capture_now(warnings, calc));
        capture.await
    }

    async fn capture_now(&mut self, warnings: bool, calc: bool) {
        self.own.warnings_pending = false;
        self.own.calc_found_rows = false;
        let Some(conn) = self.backend.as_mut() else {
            return;
        };
        // SHOW WARNINGS and SELECT FOUND_ROWS() are results of their own on the server.
        self.own.stale |= own::STALE_ROW_COUNT | own::STALE_FOUND_ROWS;
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
    async fn answer_own(&mut self, q: &own::OwnQuery, binary: bool) -> Result<(), SessionError> {
        let results = self
            .vars
            .iter()
            .find(|(k, _)| k == "character_set_results")
            .map_or("utf8mb4", |(_, v)| v.as_str());
        let (id, widest) = crate::mysql::collations::results_charset(results);
        let text = own::TextCharset { id, widest };
        let packets = self.own.answer(q, self.status, binary, text);
        let mut seq = 1u8;
        for p in packets {
            seq = codec::write_packet(&mut self.cout, seq, &p);
        }
        self.flush().await
    }
}

/// A pool's check of a connection: COM_PING, or `SELECT 1` as a query.
fn is_ping(payload: &[u8]) -> bool {
    match payload.split_first() {
        Some((&b, rest)) => match Command::from_byte(b) {
            Command::Ping => true,
            Command::Query => {
                let text = rest.trim_ascii();
                let text = text.strip_suffix(b";").unwrap_or(text).trim_ascii();
                text.eq_ignore_ascii_case(b"select 1")
            }
            _ => false,
        },
        None => false,
    }
}

/// ERR 1053, what a client of a draining proxy is told (as a server shutting down says).
fn shutdown_err() -> Vec<u8> {
    err_payload(1053, b"08S01", "Server shutdown in progress (switchyard)")
}
