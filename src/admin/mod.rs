//! The HTTP admin API: `/healthz`, `/readyz`, `/status`, `/reload` and `/metrics`.
//!
//! Bound to loopback by default. Bound anywhere else it must have a bearer token
//! ([`check_bind`] refuses otherwise, and so does [`serve`]); with a token configured, every
//! request must carry `Authorization: Bearer <token>` or gets 401.
//!
//! Routes:
//! - `GET /healthz`: 200 `ok` while the process runs.
//! - `GET /readyz`: 200 `ready` or 503 `not ready`, from the `ready` callback (listeners
//!   bound, every cluster has a reachable primary, not draining).
//! - `GET /status`: JSON: clusters, backends, roles, lag, pools, clients; with an HTTP edge,
//!   its listeners, routes and upstream servers' health (`edge`).
//! - `GET /clients`: JSON: every connected database client (protocol, id, address, user,
//!   database, seconds connected, idle/active and the server it holds), filtered by
//!   `?protocol=`, `?database=`, `?user=`.
//! - `POST /reload`: runs the `reload` callback; 200 with its message or 400 with the error.
//! - `POST /pause`, `POST /resume`: a cluster's new transactions wait / go on (see
//!   `cluster::pause`).
//! - `GET /metrics`: Prometheus text format (OpenMetrics if the scraper asks for it).
//!
//! The server is our own accept loop over hyper so that every connection is bounded: a
//! header read timeout, a per-request timeout, a connection cap, a maximum connection
//! lifetime, and at shutdown a short grace period after which connections are aborted.

use crate::metrics::{saturation, ClusterSnapshot, Format, Metrics, TopologySource};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Time a client has to send the request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a handler may take (a reload included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A keep-alive connection is closed after this long, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// At shutdown, time running requests get before their connections are aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Admin connections open at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;

/// Ready-to-serve check, called on every `/readyz` and `/status`.
pub type ReadyFn = dyn Fn() -> bool + Send + Sync;
/// Reload the config: `Ok(message)` or `Err(reason)`. Runs on a blocking thread. It is the
/// reload's job to call [`Metrics::reload`] (reloads also come from signals).
pub type ReloadFn = dyn Fn() -> Result<String, String> + Send + Sync;

/// A section `/status` adds beside the clusters (the HTTP edge's listeners, routes and
/// upstreams), made by whoever owns it; the admin API knows nothing of its contents.
pub type StatusFn = dyn Fn() -> serde_json::Value + Send + Sync;

/// Every connected client of the database front ends (`GET /clients`), made by the process
/// wiring from each protocol's registry.
pub type ClientsFn = dyn Fn() -> Vec<crate::engine::ClientRow> + Send + Sync;

/// End one database client's connection (`POST /clients/close`): its protocol
/// ("postgres", "mysql") and id as `/clients` lists them; false if it is gone.
pub type CloseClientFn = dyn Fn(&str, i64) -> bool + Send + Sync;

/// PgBouncer's RECONNECT for the cluster of that name (`POST /reconnect`): how many idle
/// server connections were closed at once.
pub type ReconnectFn = dyn Fn(&str) -> usize + Send + Sync;

/// Each cluster's name and its pause switch (`POST /pause`, `POST /resume`).
pub type PausesFn = dyn Fn() -> Vec<(String, Arc<crate::cluster::pause::Pause>)> + Send + Sync;

/// What the admin API serves.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub topology: Arc<dyn TopologySource + Send + Sync>,
    pub ready: Arc<ReadyFn>,
    pub reload: Arc<ReloadFn>,
    /// The `edge` section of `/status`, when an HTTP edge runs.
    pub edge_status: Option<Arc<StatusFn>>,
    /// The clusters that can be paused.
    pub pauses: Arc<PausesFn>,
    /// The database clients connected now.
    pub clients: Arc<ClientsFn>,
    pub close_client: Arc<CloseClientFn>,
    pub reconnect: Arc<ReconnectFn>,
    /// Bearer token; required when bound to a non-loopback address.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Refuse a non-loopback admin address without a (non-empty) token.
pub fn check_bind(addr: SocketAddr, token: Option<&str>) -> Result<(), String> {
    let has_token = token.is_some_and(|t| !t.is_empty());
    if is_loopback(&addr) || has_token {
        Ok(())
    } else {
        Err(format!(
            "refusing to start the admin API on {addr} without a token: it is not a loopback \
             address, so set a bearer token for it or bind it to 127.0.0.1"
        ))
    }
}

/// [`check_bind`], then bind.
pub async fn bind(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<TcpListener> {
    check_bind(addr, token).map_err(anyhow::Error::msg)?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the admin API to {addr}: {e}"))
}

/// True when every cluster in the snapshot has a backend that is up with the primary role:
/// a building block for the `ready` callback.
pub fn all_primaries_up(snapshot: &[ClusterSnapshot]) -> bool {
    snapshot
        .iter()
        .all(|c| c.backends.iter().any(|b| b.up && b.role == "primary"))
}

/// The admin routes, with token checking when a token is set.
pub fn router(state: AdminState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/reload", post(reload))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/disable", post(disable))
        .route("/reconnect", post(reconnect))
        .route("/enable", post(enable))
        .route("/metrics", get(metrics))
        .route("/clients", get(clients))
        .route("/clients/close", post(close_clients))
        .route("/queries", get(queries))
        .route("/queries/reset", post(reset_queries))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serve the admin API on `listener` until `shutdown` is cancelled. Refuses (returns an
/// error at once) a non-loopback listener without a token.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
    mut paused: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    check_bind(local, state.token.as_deref()).map_err(anyhow::Error::msg)?;
    let app = router(state);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    tracing::info!(addr = %local, "admin API listening");
    loop {
        // Paused while a new process takes the listener over (`handover_socket`).
        let accepting = !*paused.borrow_and_update();
        let accepted = tokio::select! {
            r = listener.accept(), if accepting => r,
            Ok(()) = paused.changed() => continue,
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin API connection limit reached; closing");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = shutdown.clone();
        conns.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => None,
                _ = stop.cancelled() => None,
            };
            match done {
                Some(Err(e)) => tracing::debug!(%peer, error = %e, "admin connection error"),
                Some(Ok(())) => {}
                None => {
                    // Finish the request in progress, then close.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
        });
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            remaining = conns.len(),
            "admin connections aborted at shutdown"
        );
        conns.abort_all();
    }
    Ok(())
}

type Shared = Arc<AdminState>;

/// Token check and request timeout, in front of every route.
async fn guard(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(token) = state.token.as_deref() {
        if !authorized(req.headers(), token) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "unauthorized: send Authorization: Bearer <token>\n",
            )
                .into_response();
        }
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

/// `Authorization: Bearer <token>`, compared in constant time (over SHA-256 digests, so
/// the token's length does not leak either).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some((scheme, given)) = value
        .iter()
        .position(|&b| b == b' ')
        .map(|i| (&value[..i], &value[i + 1..]))
    else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let given = trim_ascii(given);
    let a = Sha256::digest(given);
    let b = Sha256::digest(token.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Shared>) -> Response {
    if (state.ready)() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

#[derive(Serialize)]
struct StatusBody<'a> {
    version: &'static str,
    ready: bool,
    started: f64,
    clusters: Vec<ClusterStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    edge: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ClusterStatus<'a> {
    name: &'a str,
    /// Paused by `POST /pause` (new transactions wait), and the clients holding a server
    /// connection now.
    paused: bool,
    held: usize,
    /// New clients refused by `POST /disable`.
    disabled: bool,
    clients_active: u64,
    clients_waiting: u64,
    pool_capacity: u64,
    pool_active: u64,
    saturation: f64,
    backends: Vec<BackendStatus<'a>>,
    /// With `server_login = "client"`: each user's connections.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    users: &'a [crate::metrics::UserPools],
}

#[derive(Serialize)]
struct BackendStatus<'a> {
    #[serde(flatten)]
    snapshot: &'a crate::metrics::BackendSnapshot,
    pool_active: u64,
}

async fn status(State(state): State<Shared>) -> Response {
    let snapshot = state.topology.snapshot();
    let pauses = (state.pauses)();
    let clusters = snapshot
        .iter()
        .map(|c| {
            let (active, waiting) = state.metrics.clients(&c.name);
            let pause = pauses.iter().find(|(n, _)| *n == c.name).map(|(_, p)| p);
            ClusterStatus {
                name: &c.name,
                paused: pause.is_some_and(|p| p.is_paused()),
                held: pause.map_or(0, |p| p.held()),
                disabled: pause.is_some_and(|p| p.is_disabled()),
                clients_active: active,
                clients_waiting: waiting,
                pool_capacity: c.pool_capacity(),
                pool_active: c.pool_active(),
                saturation: saturation(c, waiting),
                backends: c
                    .backends
                    .iter()
                    .map(|b| BackendStatus {
                        snapshot: b,
                        pool_active: b.pool_active(),
                    })
                    .collect(),
                users: &c.users,
            }
        })
        .collect();
    let body = StatusBody {
        version: env!("CARGO_PKG_VERSION"),
        ready: (state.ready)(),
        started: state.metrics.started(),
        clusters,
        edge: state.edge_status.as_ref().map(|f| f()),
    };
    Json(body).into_response()
}

async fn reload(State(state): State<Shared>) -> Response {
    let f = state.reload.clone();
    match tokio::task::spawn_blocking(move || f()).await {
        Ok(Ok(msg)) => (StatusCode::OK, with_newline(msg)).into_response(),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, with_newline(e)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "config reload task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "reload failed\n").into_response()
        }
    }
}

/// The clusters a pause or resume names (`?cluster=NAME`, all without it); 404 for an
/// unknown name.
#[allow(clippy::result_large_err)]
fn picked_clusters(
    state: &AdminState,
    query: Option<&str>,
) -> Result<Vec<(String, Arc<crate::cluster::pause::Pause>)>, Response> {
    let mut all = (state.pauses)();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    match query_param(query, "cluster") {
        None => Ok(all),
        Some(name) => {
            let one: Vec<_> = all.into_iter().filter(|(n, _)| *n == name).collect();
            if one.is_empty() {
                Err((
                    StatusCode::NOT_FOUND,
                    format!("no cluster named {name:?}\n"),
                )
                    .into_response())
            } else {
                Ok(one)
            }
        }
    }
}

/// The value of `key` in a query string (no percent-decoding: names and numbers only).
fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Longest `?wait=` a pause takes (under the request timeout).
const MAX_PAUSE_WAIT: Duration = Duration::from_secs(25);

/// `POST /pause[?cluster=NAME][&wait=SECONDS]`: new transactions of the cluster(s) wait
/// (up to `pool.pause_timeout` each) until `POST /resume`; running ones finish. Answers when
/// no client holds a server connection any more (200, `"drained": true`) or after `wait`
/// seconds (default 10, at most 25) with the count still held (202; still paused).
async fn pause(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    let picked = match picked_clusters(&state, uri.query()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let wait = match query_param(uri.query(), "wait").map(str::parse::<f64>) {
        None => Duration::from_secs(10),
        Some(Ok(s)) if s >= 0.0 && s.is_finite() => Duration::from_secs_f64(s).min(MAX_PAUSE_WAIT),
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "wait must be a number of seconds\n",
            )
                .into_response()
        }
    };
    let names: Vec<&str> = picked.iter().map(|(n, _)| n.as_str()).collect();
    for (_, p) in &picked {
        p.pause();
    }
    tracing::warn!(clusters = ?names, "paused: new transactions wait until POST /resume");
    let deadline = tokio::time::Instant::now() + wait;
    let mut held = 0;
    for (_, p) in &picked {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        held += p.until_drained(left).await;
    }
    let code = if held == 0 {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let body = serde_json::json!({ "paused": names, "held": held, "drained": held == 0 });
    (code, Json(body)).into_response()
}

/// `POST /disable[?cluster=NAME]`: new clients of the cluster(s) are refused at login
/// (PgBouncer's DISABLE; PostgreSQL's answer for a database that does not allow
/// connections), connected ones go on; `POST /enable` lets them in again. With
/// `POST /clients/close?database=D` the clients connected can then be let go.
async fn disable(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    set_disabled(&state, uri.query(), true)
}

/// `POST /enable[?cluster=NAME]`: see [`disable`].
async fn enable(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    set_disabled(&state, uri.query(), false)
}

fn set_disabled(state: &AdminState, query: Option<&str>, disabled: bool) -> Response {
    let picked = match picked_clusters(state, query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    for (_, p) in &picked {
        p.set_disabled(disabled);
    }
    let names: Vec<&str> = picked.iter().map(|(n, _)| n.as_str()).collect();
    let word = if disabled { "disabled" } else { "enabled" };
    tracing::warn!(clusters = ?names, "{word}: new clients {}", if disabled { "refused" } else { "admitted" });
    Json(serde_json::json!({ word: names })).into_response()
}

/// `POST /reconnect[?cluster=NAME]` (PgBouncer's RECONNECT): every server connection of the
/// cluster(s) open now is closed instead of reused, the idle ones at once, the ones in use
/// when their client gives them back (a transaction finishes on its connection); new ones
/// are opened as needed. For when what a new connection gets has changed: settings made with
/// `ALTER ROLE` / `ALTER DATABASE ... SET`, a server behind the same address replaced.
async fn reconnect(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    let picked = match picked_clusters(&state, uri.query()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let names: Vec<&str> = picked.iter().map(|(n, _)| n.as_str()).collect();
    let closed: usize = names.iter().map(|n| (state.reconnect)(n)).sum();
    tracing::warn!(clusters = ?names, idle_closed = closed, "reconnect: server connections open now will not be reused");
    Json(serde_json::json!({ "reconnect": names, "idle_closed": closed })).into_response()
}

/// `POST /resume[?cluster=NAME]`: the waiting transactions go on.
async fn resume(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    let picked = match picked_clusters(&state, uri.query()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    for (_, p) in &picked {
        p.resume();
    }
    let names: Vec<&str> = picked.iter().map(|(n, _)| n.as_str()).collect();
    tracing::warn!(clusters = ?names, "resumed");
    Json(serde_json::json!({ "resumed": names })).into_response()
}

/// `GET /clients[?protocol=P][&database=D][&user=U]`: the connected database clients, by
/// protocol and id, as PgBouncer's `SHOW CLIENTS` lists them.
async fn clients(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    let rows = matching_clients(&state, uri.query());
    Json(serde_json::json!({ "count": rows.len(), "clients": rows })).into_response()
}

/// The connected clients that `protocol`, `id`, `database` and `user` in `q` (each optional)
/// all match, sorted.
fn matching_clients(state: &AdminState, q: Option<&str>) -> Vec<crate::engine::ClientRow> {
    let want = |key: &str, value: &str| query_param(q, key).is_none_or(|v| v == value);
    let mut rows: Vec<_> = (state.clients)()
        .into_iter()
        .filter(|r| want("protocol", r.protocol) && want("database", &r.database))
        .filter(|r| want("user", &r.user) && want("id", &r.id.to_string()))
        .collect();
    rows.sort_by(|a, b| (a.protocol, a.id).cmp(&(b.protocol, b.id)));
    rows
}

/// `POST /clients/close?[protocol=P&]id=N` (or `user=U`, `database=D`, together with the
/// others as `/clients` takes them): end those clients' connections, as PgBouncer's
/// `KILL_CLIENT` and a server's `pg_terminate_backend` / `KILL CONNECTION` do. A statement
/// running is stopped, a transaction rolled back; a PostgreSQL client is told (FATAL 57P01),
/// a MySQL client finds its connection gone, as after a server's KILL. At least one of `id`,
/// `user` and `database` is required (400); an `id` that matches no client: 404.
async fn close_clients(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    let q = uri.query();
    if ["id", "user", "database"]
        .iter()
        .all(|k| query_param(q, k).is_none())
    {
        return (
            StatusCode::BAD_REQUEST,
            "name the clients to close: id, user or database (with protocol)\n",
        )
            .into_response();
    }
    let closed: Vec<_> = matching_clients(&state, q)
        .into_iter()
        .filter(|r| (state.close_client)(r.protocol, r.id))
        .collect();
    if closed.is_empty() && query_param(q, "id").is_some() {
        return (StatusCode::NOT_FOUND, "no such client\n").into_response();
    }
    for r in &closed {
        tracing::info!(protocol = r.protocol, id = r.id, user = %r.user, database = %r.database, addr = %r.addr, "closing a client (admin API)");
    }
    Json(serde_json::json!({ "closed": closed.len(), "clients": closed })).into_response()
}

/// `GET /queries[?cluster=C][&user=U][&sort=total|count|mean|max|errors][&limit=N]`: the
/// statement statistics (`[general] query_digests`, ProxySQL's `stats_mysql_query_digest`),
/// the worker threads' counts added up, most total time first unless `sort` says otherwise,
/// the first `limit` (default 100). 400 for an unknown `sort` or a `limit` that is not a
/// number.
async fn queries(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    let q = uri.query();
    let limit = match query_param(q, "limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) => n,
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "limit: a number\n").into_response(),
    };
    let stats = &state.metrics.queries;
    let want = |key: &str, value: &str| query_param(q, key).is_none_or(|v| v == value);
    let mut rows: Vec<_> = stats
        .rows()
        .into_iter()
        .filter(|r| want("cluster", &r.cluster) && want("user", &r.user))
        .collect();
    let by = |f: fn(&crate::metrics::queries::QueryRow) -> f64| {
        move |a: &crate::metrics::queries::QueryRow, b: &crate::metrics::queries::QueryRow| {
            f(b).total_cmp(&f(a))
        }
    };
    match query_param(q, "sort").unwrap_or("total") {
        "total" => rows.sort_by(by(|r| r.total_ms)),
        "count" => rows.sort_by(by(|r| r.count as f64)),
        "mean" => rows.sort_by(by(|r| r.mean_ms)),
        "max" => rows.sort_by(by(|r| r.max_ms)),
        "errors" => rows.sort_by(by(|r| r.errors as f64)),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "sort: total, count, mean, max or errors\n",
            )
                .into_response()
        }
    }
    let total = rows.len();
    rows.truncate(limit);
    Json(serde_json::json!({
        "enabled": stats.enabled(),
        "since": stats.since(),
        "dropped": stats.dropped(),
        "statements": total,
        "queries": rows,
    }))
    .into_response()
}

/// `POST /queries/reset`: forget the statement statistics counted so far.
async fn reset_queries(State(state): State<Shared>) -> Response {
    state.metrics.queries.reset();
    tracing::info!("statement statistics reset (admin API)");
    Json(serde_json::json!({ "reset": true })).into_response()
}

fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

async fn metrics(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = state.metrics.encode_as(state.topology.as_ref(), format);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_token_check() {
        assert!(authorized(&headers("Bearer s3cret"), "s3cret"));
        assert!(authorized(&headers("bearer  s3cret "), "s3cret"));
        assert!(!authorized(&headers("Bearer s3cre"), "s3cret"));
        assert!(!authorized(&headers("Basic s3cret"), "s3cret"));
        assert!(!authorized(&headers("Bearer"), "s3cret"));
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn bind_rules() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_bind(a("127.0.0.1:9000"), None).is_ok());
        assert!(check_bind(a("[::1]:9000"), None).is_ok());
        assert!(check_bind(a("[::ffff:127.0.0.1]:9000"), None).is_ok());
        assert!(check_bind(a("0.0.0.0:9000"), None).is_err());
        assert!(check_bind(a("0.0.0.0:9000"), Some("")).is_err());
        assert!(check_bind(a("[::]:9000"), Some("t")).is_ok());
    }
}
