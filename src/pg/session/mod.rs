//! A logged-in PostgreSQL client: forwards its messages to a backend connection and the
//! answers back, checking connections out of the pool and returning them at transaction
//! boundaries.
//!
//! Data path: one task per client drives both sockets from a single poll function, so the
//! client and its backend connection stay on one thread and a statement costs one read and
//! one write on each side. Every complete message in a read is forwarded with one write.
//! Messages are scanned, not decoded: only the few the proxy must understand are parsed
//! (the backend's ReadyForQuery and ParameterStatus; the client's Query, Parse, Bind,
//! Describe and Close).
//!
//! Invariant: a backend connection is released only when the backend said ReadyForQuery with
//! status idle, nothing sent to it is unanswered, and the client left no session state on it.

mod backend_msgs;
mod carried;
mod client_msgs;
mod ending;
mod forward;
mod lease;
mod muxed;
mod pump;
mod routing;
mod sequences;
mod settings;
mod statements;
mod stats;

use crate::cluster::Want;
use crate::config::PoolMode;
use crate::pg::backend::{CheckoutError, Pooled};
use crate::pg::cancel::CancelKey;
use crate::pg::codec;
use crate::pg::prepared::NameHash;
use crate::pg::prepared::StmtDef;
use crate::pg::worker::{ClusterPools, Worker};
use crate::pool;
use crate::router::hints::Hint;
use crate::router::session_state::State;
use bytes::{Buf, BytesMut};
pub use carried::one_plain_set;
use pump::Pump;
pub use sequences::{seq_use, SeqUse};
pub(crate) use settings::settings_sql;
pub use settings::{plain_set, plain_sets};
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Read no more from one side while this much is waiting to be written to the other.
const HIGH_WATER: usize = 256 * 1024;
/// Messages from servers larger than this are refused (PostgreSQL's own limit is 1 GiB).
const MAX_BACKEND_MESSAGE: usize = (1 << 30) + 64;
/// Time allowed for the proxy's own statements (resets, settings) on a backend.
const INTERNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most proxy-prepared statements kept on one backend connection; past it the connection is
/// closed on release rather than grow without bound.
const MAX_PREPARED_PER_BACKEND: usize = 5_000;

/// A batch of one plain `SET` the proxy carries if the batch is nothing else (pgjdbc sends
/// Parse/Bind/Execute/Sync of the unnamed statement; libpq's `PQexecPrepared` of a named one,
/// as PHP's pdo_pgsql sends Laravel's connection SETs, Bind/Describe/Execute/Sync).
#[derive(Debug)]
struct SetBatch {
    /// The setting and its value as written.
    kv: (String, String),
    /// The statement is bound (to the unnamed portal) / its Execute was sent.
    bound: bool,
    executed: bool,
    /// It runs inside a transaction block (one open before the batch, or the BEGIN the
    /// batch opened with, as pgjdbc sends one with autocommit off): carried if the block
    /// commits (see `Session::tx_sets`).
    in_tx: bool,
}

/// Plain `SET`s of an open transaction block, and how the block ended so far.
#[derive(Debug, Default)]
pub(crate) struct TxSets {
    sets: Vec<(String, String)>,
    /// A CommandComplete said COMMIT.
    committed: bool,
    /// Something the proxy does not follow: a savepoint (ROLLBACK TO has the tag of a
    /// ROLLBACK), PREPARE TRANSACTION, a COMMIT that leaves a block open (AND CHAIN), a RESET
    /// in the block.
    unsure: bool,
}

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client socket: {0}")]
    ClientIo(#[source] io::Error),
    #[error("backend socket: {0}")]
    BackendIo(#[source] io::Error),
    #[error("client protocol violation: {0}")]
    ClientProtocol(String),
    #[error("backend protocol violation: {0}")]
    BackendProtocol(String),
    #[error("backend closed the connection")]
    BackendClosed,
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    #[error("applying client settings on the backend failed: {0}")]
    Settings(String),
    /// The backend failed (its connection ended, or one for the client's settings could not
    /// be opened) while the client's settings were being applied: nothing of the client's
    /// reached it, so a read is tried on another backend.
    #[error("the backend failed while the client's settings were applied: {0}")]
    InstallBroken(String),
    #[error(transparent)]
    Select(#[from] crate::cluster::SelectError),
    #[error("database \"{0}\" is no longer served (removed by a config reload)")]
    ClusterRemoved(String),
    #[error("the server {0} this session used is no longer the primary (a newer primary was promoted); reconnect")]
    Fenced(crate::config::BackendAddr),
    #[error("{0}")]
    Paused(String),
    /// The client sat idle inside a transaction longer than `[pool] idle_transaction_timeout`.
    #[error("idle in transaction for longer than {0:?} (idle_transaction_timeout); the transaction was rolled back")]
    IdleInTransaction(Duration),
    /// The client sat idle outside a transaction longer than `[general] client_idle_timeout`.
    #[error("idle for longer than {0:?} (client_idle_timeout)")]
    IdleSession(Duration),
    /// The client took nothing of its results for `[general] client_write_timeout` while a
    /// server's answer waited for it.
    #[error("the client read nothing of its results for {0:?} (client_write_timeout)")]
    ClientStalled(Duration),
}

/// The error for a client idle past a limit (see `Session::idle_limit`).
type IdleError = fn(Duration) -> SessionError;

/// What a message sent to the backend will be answered with, in order.
#[derive(Debug)]
enum Pend {
    /// Parse under a proxy name (`id`) or the client's own name (`id` None).
    Parse {
        def: Option<Arc<StmtDef>>,
        client_name: Option<ClientName>,
        injected: bool,
        /// Of the unnamed statement (transaction mode; see `Session::unnamed_parse`).
        unnamed: bool,
    },
    /// The client's name of the statement it binds or describes and the proxy statement it
    /// stands for, when the server knows it by the proxy's name (an error naming it is given
    /// the client's; a statement the server finds stale is retired, see `on_backend_message`).
    Bind(Option<Named>),
    Describe(Option<Named>),
    /// `copy_mark`: the session's count of copy ends when it was sent (see `copy_in_mark`).
    /// `stat`: for the query statistics, the digest of the statement it runs and when it was
    /// sent.
    Execute {
        copy_mark: u32,
        stat: Option<(u64, std::time::Instant)>,
    },
    /// `injected`: sent by the proxy (its CloseComplete is not forwarded).
    Close {
        injected: bool,
    },
    /// Sync, Query or FunctionCall: answered up to ReadyForQuery. `clears`: session state a
    /// Query removes if it completes without error outside a transaction; `resets`: it resets
    /// settings (the server's reports of changed settings are expected).
    Ready {
        copy_mark: u32,
        clears: State,
        resets: bool,
        /// A Query of plain `SET`s (see `settings::plain_sets`) sent outside a transaction:
        /// if it completes without error, the settings become the client's own, applied on
        /// every connection it gets, and pin nothing.
        sets: Option<Box<[(String, String)]>>,
        /// Carried settings a statement of it resets (see `Session::settled_reset`).
        forgets: Option<Box<[String]>>,
        /// `sets` ran inside a transaction block: they wait for its end (`tx_sets`).
        in_tx: bool,
        /// For the query statistics: what a Query counts under (a Sync's statements count at
        /// their Executes).
        stat: Option<stats::QueryStat>,
    },
    /// Answered by the proxy itself when it reaches the head of the queue. `undo`: the
    /// client statement it created or closed, taken back if the server skips past it (an
    /// error earlier in the batch), as the server would never have seen it.
    Synthetic(u8, Option<Undo>),
    /// Whole messages the proxy answers itself (rare: SHOW/SET switchyard.*, errors).
    Local(Box<[u8]>),
    /// A client's Parse of a name it has already, sent as a Parse of that statement's proxy
    /// name (which the connection has): the server refuses it in the order it checks a
    /// Parse (aborted transaction, syntax, then the name), and an error naming the proxy
    /// statement is given the client's name.
    Reparse(ClientName),
    /// A Describe the proxy sent after its Parse of a statement: for one it had never
    /// prepared, the ParameterDescription (kept here until the rest comes) and RowDescription
    /// or NoData become the statement's `shape`; for one that has a shape, the result type is
    /// checked against it (another one makes the statement stale, see `StmtDef::stale`). The
    /// client gets none of them. `hold`: the client's next message waits for this answer (a
    /// Bind or Describe of the statement, which must not reach the server if it is stale).
    /// `repoint`: a client statement that knows no result type yet (its Parse just went to
    /// the server, or was answered by the proxy and nothing followed): if the statement is
    /// stale, this name goes to a new statement of the same text instead of being refused.
    Learn {
        def: Arc<StmtDef>,
        param_desc: Option<Box<[u8]>>,
        hold: bool,
        repoint: Option<ClientName>,
    },
    /// A statement the proxy sent for itself (a deferred BEGIN, the client's settings again
    /// after a RESET): its answers up to and including ReadyForQuery are not forwarded, except
    /// ParameterStatus (the client learns the settings it has again).
    Swallow,
}

/// A client's name of a prepared statement, shared (not copied) by the pending answers that
/// name it.
type ClientName = Arc<[u8]>;

/// A client statement's name and the proxy statement it is prepared as.
type Named = (ClientName, Arc<StmtDef>);

/// A locally answered Parse or Close of a client statement, to take back.
#[derive(Debug)]
enum Undo {
    Parsed(ClientName),
    Closed(ClientName, Arc<StmtDef>),
}

enum Step {
    Done,
    NeedBackend(Want),
    /// A plain read that may share a multiplexed connection (see `muxed`).
    Mux(Want),
    /// A Parse arrived with no backend held: use one if free now, else answer it locally.
    ParseWithoutBackend(Want),
    Terminate,
}

enum Event {
    Client,
    Backend,
    ClientEof,
    Shutdown,
}

/// A client after login.
pub struct Session<C> {
    worker: Arc<Worker>,
    cluster: Arc<ClusterPools>,
    /// The client's user name (in clusters whose servers see each client's own user, its
    /// pools are that user's).
    user: Arc<str>,
    client: C,
    mode: PoolMode,
    max_message: usize,
    /// `[pool] multiplex_depth` when the client connected (0: off).
    mux_depth: usize,
    /// `[pool] idle_transaction_timeout` when the client connected (zero: off).
    idle_transaction_timeout: Duration,
    /// `[general] client_idle_timeout` when the client connected (zero: off).
    client_idle_timeout: Duration,
    /// Either of the two is on.
    idle_limits_on: bool,
    /// When the session last began waiting for its client (the pools' coarse clock): how
    /// a drain tells a client idle a while from one busy a moment ago.
    idle_from: u64,
    /// Whether the client may still run a transaction the drain has not seen begin.
    drain_allowance: bool,
    /// `[general] client_write_timeout` when the client connected (zero: off).
    client_write_timeout: Duration,
    /// `[pool] query_timeout`: the count of ReadyForQuery from servers when the statement
    /// clock was started (`None`: not running). A batch that ends while more are owed
    /// starts the clock again for the next.
    clock_batch: Option<u64>,
    /// ReadyForQuery messages the servers sent this session.
    batches_done: u64,
    /// Client settings to apply on every backend connection (sorted by name): its startup
    /// parameters, and in transaction mode the plain `SET`s it ran since (`recorded`).
    wanted: Arc<Vec<(String, String)>>,
    /// The client's startup parameters (what `RESET` returns to).
    startup: Arc<Vec<(String, String)>>,
    /// Settings of plain `SET`s the client ran outside a transaction (transaction mode).
    recorded: Vec<(String, String)>,
    /// The client changed settings some way the proxy does not carry over (`set_config()`,
    /// a function, `SET LOCAL` aside): a settings pin then stays until they are reset.
    sets_unknown: bool,
    /// The Query being forwarded is a plain `SET` the proxy carries (see `Pend::Ready`).
    plain_set_now: bool,
    /// Plain `SET`s that ran in the open transaction block (each a Query of its own, as
    /// psycopg sends a connection's first SET when not in autocommit): carried if the block
    /// commits, dropped if it rolls back (see `Session::settle_tx_sets`).
    tx_sets: Option<TxSets>,
    /// The open batch began with a plain `SET`: a Parse of it as the unnamed statement, or
    /// a Bind of a named statement that is one (see `follow_set_batch`).
    set_batch: Option<SetBatch>,
    /// How far the open batch is a lone BEGIN opened outside a transaction with nothing in
    /// flight: 1 parsed (unnamed), 2 bound, 3 executed, 0 not (see `follow_begin_batch`).
    begin_batch: u8,
    key: CancelKey,
    /// This session, among every session of the process (see `seq_guard`).
    uid: u64,
    /// The server connection with the client's sequence state: where it last changed it
    /// (address, backend pid).
    seq_home: Option<(crate::config::BackendAddr, i32)>,
    /// Transaction mode: the held connection's sequence state (`currval()`, `lastval()`) is
    /// not the client's (not its home, or another client held it since) until the client
    /// changes it here (see `sequences`).
    seq_guard: bool,
    backend: Option<Pooled>,
    /// Bytes from the client not yet handled / bytes for the backend not yet written.
    cin: BytesMut,
    bout: BytesMut,
    /// Bytes from the backend not yet handled / bytes for the client not yet written.
    bin: BytesMut,
    cout: BytesMut,
    pending: VecDeque<Pend>,
    /// Body bytes of a streamed backend message still to pass through (or to drop, with
    /// `skip_drops`: a row of a statement the proxy sent for itself).
    skip: usize,
    skip_drops: bool,
    tx_status: u8,
    /// Session state this client left on its backend connection (transaction mode): while
    /// not empty the client is pinned to that connection.
    pins: State,
    /// An extended-protocol batch was forwarded without its Sync yet: the server may be inside
    /// the batch's implicit transaction (or skipping to Sync after an error), so the
    /// connection is not released.
    batch_open: bool,
    /// A statement that resets settings (`RESET`, `DISCARD ALL`) is in the open batch: apply
    /// these startup settings of the client's again after its Sync.
    reapply_at_sync: Option<Vec<(String, String)>>,
    /// Carried settings a statement in the open batch resets (see `Pend::Ready::forgets`).
    forget_at_sync: Vec<String>,
    /// A Parse in the open batch says ROLLBACK or ABORT (see `Session::reset_to_settle`;
    /// looked for only while the client has carried settings).
    rollback_in_batch: bool,
    /// CopyDone/CopyFail messages forwarded so far. A Sync sent after a statement that
    /// started COPY FROM STDIN and before the copy's end is ignored by the server.
    copy_ends: u32,
    /// The server is in COPY FROM STDIN started by the statement sent at this `copy_ends`.
    copy_in_mark: Option<u32>,
    /// The server sent an ErrorResponse since the last ReadyForQuery.
    error_seen: bool,
    /// Client input is waiting because the backend's queue was full / backend input because
    /// the client's was: the pump must come back when there is room (no read will wake it).
    cin_blocked: bool,
    bin_blocked: bool,
    /// Client statement name -> definition (transaction mode only).
    stmts: HashMap<ClientName, Arc<StmtDef>, NameHash>,
    /// Client statements the proxy answered the Parse of and the client has not bound or
    /// described since: it knows nothing of their result type yet.
    untold: std::collections::HashSet<ClientName, NameHash>,
    /// The next Parse is answered by the proxy and sent to a server when first used.
    defer_parse: bool,
    /// Index (in the cluster's backends) of the held connection's server.
    backend_idx: usize,
    /// The held connection was chosen for writes (primary), not for a read.
    for_write: bool,
    /// `SET switchyard.route`: None = automatic.
    route_override: Option<Hint>,
    /// Read-your-writes floor (see `cluster::ReadYourWrites`).
    ryw: crate::cluster::ReadYourWrites,
    /// Bytes sent to a replica not yet answered, for one retry elsewhere if it fails
    /// before answering; `replay_ok` is false when they cannot be replayed.
    replay: BytesMut,
    replay_ok: bool,
    /// The proxy statements `replay` uses, each with whether `replay` itself prepares it
    /// (its Parse is in there: the held connection did not have it) or takes it as there.
    /// Another connection is brought to the same state before the replay (see
    /// `retry_on_another`).
    replay_stmts: Vec<(Arc<StmtDef>, bool)>,
    /// A replay waiting for checks of the result types of statements it uses, with those
    /// statements (see `release_held_replay`).
    held_replay: Option<Box<(BytesMut, Vec<Arc<StmtDef>>)>>,
    /// The held connection answered something (the client's or the proxy's own), and whether
    /// any of it was forwarded to the client.
    responded: bool,
    client_saw: bool,
    /// Transaction mode: the client's last Parse of the unnamed statement (the whole
    /// message; empty when it has none), and whether the held connection has it. A Bind or
    /// Describe of the unnamed statement in a later batch, on another connection, gets the
    /// Parse again in front of it (psql's `\gdesc`, libpq's `PQprepare` with an empty name).
    unnamed_parse: Vec<u8>,
    unnamed_here: bool,
    /// The query statistics (`[general] query_digests`, see `stats`): whose statements
    /// these are; the digests of the unnamed statement and of the last statement bound (0:
    /// none); when the server last finished a statement; a portal read in parts so far (its
    /// digest and the time its parts took).
    stats_owner: Option<crate::metrics::queries::Owner>,
    unnamed_digest: u64,
    bound_digest: u64,
    last_answered_at: Option<std::time::Instant>,
    suspended: Option<(u64, std::time::Duration)>,
    /// The statement (its key in the table, the statistics' generation) this session last
    /// made sure of a place for in its worker's table.
    last_noted: (u64, u64),
    /// After an error the proxy raised in an extended-protocol batch: drop messages up to
    /// Sync, then answer ReadyForQuery.
    discard_until_sync: bool,
    /// The server failed a message of an extended batch whose Sync the proxy has not sent
    /// yet: it skips what follows up to that Sync, so the proxy drops it (the Sync goes).
    server_skips: bool,
    /// DEALLOCATE ALL / DISCARD ALL whose statements were dropped when they were sent (see
    /// `drop_prepared_now`) and whose CommandComplete has not come.
    dropped_ahead: u32,
    /// A BEGIN the proxy answered without a backend, sent in front of the transaction's
    /// first statement once it is known where that goes (see `routing::defer_begin`).
    deferred_begin: Option<Box<[u8]>>,
    /// Metrics: why the held connection was chosen, where, since when, and bytes moved.
    route_reason: &'static str,
    held_route: &'static str,
    held_since: std::time::Instant,
    /// Counts the held connection for PAUSE (see `cluster::pause`).
    pause_hold: Option<crate::cluster::pause::Hold>,
    bytes_up: u64,
    bytes_down: u64,
    routed_cache: crate::metrics::RoutedCache,
    _connected: crate::metrics::GaugeGuard,
}

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        worker: Arc<Worker>,
        (cluster, user): (Arc<ClusterPools>, Arc<str>),
        client: C,
        wanted: Arc<Vec<(String, String)>>,
        key: CancelKey,
        leftover: BytesMut,
    ) -> Self {
        let mode = worker.pool_mode;
        let cfg = worker.shared.config();
        let max_message = cfg.general.max_message_bytes;
        let mux_depth = cfg.pool.multiplex_depth;
        let idle_transaction_timeout = cfg.pool.idle_transaction_timeout;
        let client_idle_timeout = cfg.general.client_idle_timeout;
        let client_write_timeout = cfg.general.client_write_timeout;
        let connected = cluster.metrics.client_connected();
        Session {
            worker,
            cluster,
            user,
            client,
            mode,
            max_message,
            mux_depth,
            idle_transaction_timeout,
            client_idle_timeout,
            idle_limits_on: !(idle_transaction_timeout.is_zero() && client_idle_timeout.is_zero()),
            idle_from: 0,
            drain_allowance: true,
            client_write_timeout,
            clock_batch: None,
            batches_done: 0,
            startup: wanted.clone(),
            wanted,
            recorded: Vec::new(),
            sets_unknown: false,
            plain_set_now: false,
            tx_sets: None,
            set_batch: None,
            begin_batch: 0,
            key,
            uid: sequences::next_uid(),
            seq_home: None,
            seq_guard: false,
            backend: None,
            cin: leftover,
            // Taken when needed (`net::bufs`).
            bout: BytesMut::new(),
            bin: BytesMut::new(),
            cout: BytesMut::new(),
            pending: VecDeque::new(),
            skip: 0,
            skip_drops: false,
            tx_status: b'I',
            pins: State::NONE,
            batch_open: false,
            reapply_at_sync: None,
            forget_at_sync: Vec::new(),
            rollback_in_batch: false,
            copy_ends: 0,
            copy_in_mark: None,
            error_seen: false,
            cin_blocked: false,
            bin_blocked: false,
            stmts: HashMap::default(),
            untold: Default::default(),
            defer_parse: false,
            backend_idx: 0,
            for_write: true,
            route_override: None,
            ryw: Default::default(),
            replay: BytesMut::new(),
            replay_ok: false,
            replay_stmts: Vec::new(),
            held_replay: None,
            responded: false,
            client_saw: false,
            unnamed_parse: Vec::new(),
            stats_owner: None,
            unnamed_digest: 0,
            bound_digest: 0,
            last_answered_at: None,
            suspended: None,
            last_noted: (0, u64::MAX),
            unnamed_here: false,
            discard_until_sync: false,
            server_skips: false,
            dropped_ahead: 0,
            deferred_begin: None,
            route_reason: "login",
            held_route: crate::metrics::ROUTE_PRIMARY,
            held_since: std::time::Instant::now(),
            pause_hold: None,
            bytes_up: 0,
            bytes_down: 0,
            routed_cache: Default::default(),
            _connected: connected,
        }
    }

    /// The client left session state on its connection (transaction mode).
    fn pinned(&self) -> bool {
        !self.pins.is_empty()
    }

    /// Everything sent to the backend is answered (nothing queued, nothing in flight).
    fn drained(&self) -> bool {
        self.pending.is_empty() && self.bout.is_empty() && self.skip == 0
    }

    /// How long the wait about to start may last, when it is for the client with nothing in
    /// flight: `[pool] idle_transaction_timeout` inside a transaction that holds a server
    /// connection, `[general] client_idle_timeout` outside a transaction; and the error
    /// past it. No timer otherwise, and none for a setting that is off.
    fn idle_limit(&self) -> Option<(Duration, IdleError)> {
        if !self.drained() || self.deferred_begin.is_some() {
            return None;
        }
        let (limit, over): (Duration, IdleError) = if self.tx_status != b'I' {
            // Nothing held: no connection to free.
            self.backend.as_ref()?;
            (
                self.idle_transaction_timeout,
                SessionError::IdleInTransaction,
            )
        } else {
            (self.client_idle_timeout, SessionError::IdleSession)
        };
        (!limit.is_zero()).then_some((limit, over))
    }

    /// The held connection is idle between batches outside a transaction: nothing in flight,
    /// no extended batch without its Sync, no COPY.
    fn idle_between_batches(&self) -> bool {
        self.drained() && self.tx_status == b'I' && !self.batch_open && self.copy_in_mark.is_none()
    }

    /// Serve the client until it leaves, then put the backend connection back or close it.
    pub async fn run(mut self: Box<Self>, login: BytesMut) -> Result<(), SessionError> {
        // (Taken as it is: `cout` is empty here.)
        self.cout.unsplit(login);
        self.maybe_release();
        let shutdown = self.worker.shared.shutdown.clone().cancelled_owned();
        let mut shutdown = Box::pin(shutdown);
        let mut result = self.serve(&mut shutdown).await;
        if result.is_err() && self.key.slot.end.is_ended() {
            // Closed from outside: over TLS the read side's end reads as an error, not an
            // end of stream; the client is told why all the same.
            result = self.close_from_outside().await;
        } else if let Err(e) = &result {
            self.report_fatal(e).await;
        }
        self.finish().await;
        result
    }

    async fn serve(
        &mut self,
        shutdown: &mut Pin<Box<WaitForCancellationFutureOwned>>,
    ) -> Result<(), SessionError> {
        loop {
            if self.key.slot.end.is_ended() {
                return self.close_from_outside().await;
            }
            // Draining: a client between transactions starts at most one more (see
            // `drain_admits`).
            if self.backend.is_none()
                && self.deferred_begin.is_none()
                && !self.cin.is_empty()
                && self.worker.shared.shutdown.is_cancelled()
                && !self.drain_admits()
            {
                return self.close_for_shutdown().await;
            }
            loop {
                match self.process_client()? {
                    Step::Done => break,
                    Step::Terminate => {
                        // The client waits for the socket to close: close it now; the
                        // backend's cleanup (`finish`) comes after, off the client's path.
                        self.flush_client().await;
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), self.client.shutdown())
                                .await;
                        return Ok(());
                    }
                    Step::NeedBackend(want) => self.acquire_for(want).await?,
                    Step::Mux(want) => {
                        // A paused cluster: the read waits in acquire_for like any other.
                        if self.cluster.state.pause.is_paused() || !self.run_muxed(want).await? {
                            self.acquire_for(want).await?;
                        }
                    }
                    Step::ParseWithoutBackend(want) => {
                        if !self.acquire_if_free(want).await? {
                            self.defer_parse = true;
                        }
                    }
                }
            }
            let before = (self.pending.len(), self.backend.is_some());
            self.emit_synthetics();
            self.maybe_release();
            if !self.cin.is_empty() && before != (self.pending.len(), self.backend.is_some()) {
                // Input waited for these (answers the proxy gives, the connection let go):
                // look at it again before waiting for more.
                continue;
            }
            self.time_statement();
            self.idle_from = crate::pool::coarse_ms();
            // Both limits off (the default): nothing to look at.
            let idle_limit =
                if self.cout.len() >= HIGH_WATER && !self.client_write_timeout.is_zero() {
                    // The client is what holds the server's answer back: it must take some of
                    // it in time.
                    Some((
                        self.client_write_timeout,
                        SessionError::ClientStalled as IdleError,
                    ))
                } else if self.idle_limits_on {
                    self.idle_limit()
                } else {
                    None
                };
            let event = {
                let backend = self.backend.as_deref_mut().map(|b| &mut b.stream);
                let watch_shutdown = backend.is_none() && self.deferred_begin.is_none();
                let mut io = Pump {
                    client: &mut self.client,
                    backend,
                    cin: &mut self.cin,
                    bout: &mut self.bout,
                    bin: &mut self.bin,
                    cout: &mut self.cout,
                    cin_blocked: self.cin_blocked,
                    bin_blocked: self.bin_blocked,
                    shutdown: watch_shutdown.then_some(shutdown.as_mut()),
                };
                match idle_limit {
                    // Waiting for the client, with a limit on how long it may be idle.
                    Some((limit, over)) => tokio::time::timeout(limit, poll_fn(|cx| io.poll(cx)))
                        .await
                        .unwrap_or_else(|_| Err(over(limit))),
                    None => poll_fn(|cx| io.poll(cx)).await,
                }
            };
            // Buffers given back while waiting (`net::bufs`), for the answers to come.
            crate::net::bufs::take_all([&mut self.bout, &mut self.cout]);
            let event = match event {
                Ok(e) => e,
                Err(e @ (SessionError::BackendClosed | SessionError::BackendIo(_))) => {
                    self.retry_elsewhere(e).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match event {
                Event::Client => {}
                Event::Backend => {
                    match self.process_backend() {
                        Ok(()) => {}
                        // A replica going away before it answered anything (57P01): retry.
                        Err(e @ SessionError::BackendClosed) => self.retry_elsewhere(e).await?,
                        Err(e) => return Err(e),
                    }
                    self.emit_synthetics();
                    // A statement answered: its clock stops before anything else is awaited.
                    self.time_statement();
                }
                Event::ClientEof if self.key.slot.end.is_ended() => {
                    return self.close_from_outside().await
                }
                Event::ClientEof => return Ok(()),
                Event::Shutdown => {
                    if !self.close_for_drain().await? {
                        return Ok(());
                    }
                }
            }
        }
    }
}

impl<C> Drop for Session<C> {
    fn drop(&mut self) {
        // Only reached with a backend still held if the session was cut off (runtime shutdown):
        // its state is unknown, so it is closed, never pooled.
        if let Some(mut conn) = self.backend.take() {
            self.cluster.state.backends[self.backend_idx].end();
            conn.clean = false;
            pool::release(conn);
        }
    }
}
