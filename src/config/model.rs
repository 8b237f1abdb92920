//! The config file's model. Field docs are the reference; `config/switchyard.toml` is an
//! annotated example.

use super::listeners::{check_proxy_protocol, check_socket_path};
use super::{
    duration, pg_socket_path, AdminSettings, AuthMethod, Cluster, ConfigError, MysqlListener,
    PostgresListener, Protocol, User,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub general: General,
    /// The PostgreSQL listener. Absent: no PostgreSQL listener.
    #[serde(default)]
    pub postgres: Option<PostgresListener>,
    /// The MySQL listener (MySQL and MariaDB clients). Absent: no MySQL listener.
    #[serde(default)]
    pub mysql: Option<MysqlListener>,
    /// Backend pool settings shared by every cluster (a cluster may override `size`).
    #[serde(default)]
    pub pool: PoolSettings,
    /// The admin HTTP API (/metrics, /healthz, /readyz, /status, /reload). Absent: none.
    #[serde(default)]
    pub admin: Option<AdminSettings>,
    /// The HTTP edge: reverse proxy and load balancer for HTTP services. Absent: none.
    #[serde(default)]
    pub edge: Option<super::edge::Edge>,
    /// Health checks and lag monitoring of backends.
    #[serde(default)]
    pub health: Health,
    /// Statement classification settings.
    #[serde(default)]
    pub routing: Routing,
    /// Client users: who may connect to the proxy, and how they authenticate.
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
    /// Database clusters. Clients pick one by the database name they connect to.
    #[serde(default, rename = "cluster")]
    pub clusters: Vec<Cluster>,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// Worker threads, each with its own event loop, listener socket (SO_REUSEPORT) and
    /// backend pools. Default 0: one per CPU core.
    pub workers: usize,
    /// How the kernel schedules the worker threads: "normal" (the default policy) or "batch"
    /// (Linux `SCHED_BATCH`: a worker woken by a packet does not preempt the thread running on
    /// that core, it waits its turn). On a host whose cores are saturated this lets a worker
    /// find several ready connections per wakeup instead of one; on an idle host it makes no
    /// difference. Default "normal". Restart needed.
    pub worker_scheduling: WorkerScheduling,
    /// Most client connections open at once, over all listeners; further clients get a
    /// "too many connections" error (SQLSTATE 53300). Default 1000.
    pub max_client_connections: usize,
    /// Most client connections any one user may have open at once, for users without a
    /// `max_connections` of their own, including those the servers are asked about
    /// (`auth_query`): PgBouncer's `max_user_connections`. Refused as a user's own limit is.
    /// Default: no limit.
    pub max_user_connections: Option<usize>,
    /// Time a new client has to finish startup and authentication. Default "10s".
    #[serde(with = "duration")]
    pub client_login_timeout: Duration,
    /// A database client idle outside a transaction this long is disconnected (PostgreSQL:
    /// FATAL 57P05, as the server's idle_session_timeout; MySQL: ERR 4031, as a MySQL 8
    /// server's wait_timeout), freeing its place under `max_client_connections` and any
    /// server connection it holds (session mode, pinned). PgBouncer's client_idle_timeout.
    /// "0s": never (the default). Applies to clients that connect after it is loaded.
    #[serde(with = "duration")]
    pub client_idle_timeout: Duration,
    /// A database client that takes nothing of what the proxy has for it this long, while
    /// the proxy holds back a server's answer for it (MySQL: any write to it), is
    /// disconnected: its statement is stopped and its server connection closed, so a hung
    /// application cannot keep a pooled connection (MySQL's `net_write_timeout`). Default
    /// "60s"; "0s": never.
    #[serde(with = "duration")]
    pub client_write_timeout: Duration,
    /// Largest protocol message accepted from a client, in bytes; a larger length prefix is
    /// answered with a protocol error and a close. Default 64 MiB.
    pub max_message_bytes: usize,
    /// On SIGTERM/SIGINT: how long running transactions may take to finish before their
    /// connections are closed. Default "30s".
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    /// On SIGTERM/SIGINT readiness goes false at once; new clients are still accepted for
    /// this long (so load balancers notice) before the listeners close. Default "0s".
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Look at the config file this often and reload when its contents changed, as a SIGHUP
    /// would (a Kubernetes ConfigMap update, a deploy that writes the file). A file that
    /// does not load is reported once and changes nothing until it changes again. Default
    /// "0s": off. Takes effect at the next look after a reload.
    #[serde(with = "duration")]
    pub watch_config: Duration,
    /// Statistics per statement (`GET /queries` on the admin API; ProxySQL's query digests):
    /// how many distinct statements (literals as `?`) each worker thread keeps counts for,
    /// per cluster and user. Statements first seen when that many are kept are not counted.
    /// 0 turns the statistics off (the default: they cost about 1 us of the proxy's CPU per
    /// statement, `benches/README.md`); 1000 suits most applications. A reload applies it at
    /// once, so they can be turned on when needed; what is counted stays until
    /// `POST /queries/reset`.
    pub query_digests: usize,
    /// A Unix-domain socket through which a new Switchyard process takes over this one's
    /// listening sockets (a binary upgrade, or a change that needs a restart, without a
    /// refused connection): a process started with this set asks whoever listens there for
    /// its listeners, serves on them, and the old process then drains as on SIGTERM; then the
    /// new one listens at the path. Default: none. Restart needed.
    pub handover_socket: Option<String>,
    /// TCP keepalive on the database protocols' connections, clients' and servers' alike
    /// (PgBouncer's `tcp_keepalive`): a peer that vanished without closing (a powered-off
    /// host, a cut network) is found after `tcp_keepidle` of silence and `tcp_keepcnt`
    /// unanswered probes `tcp_keepintvl` apart, and the connection is closed. A client that
    /// vanished inside a transaction then no longer holds its server connection (and the
    /// locks of its transaction, rolled back) for ever, and a statement waiting on a server
    /// that vanished ends with an error instead of waiting for it. Default true. Applies to
    /// connections opened after it is loaded.
    pub tcp_keepalive: bool,
    /// Silence on a connection before the first keepalive probe. Default "60s".
    #[serde(with = "duration")]
    pub tcp_keepidle: Duration,
    /// Time between unanswered keepalive probes. Default "10s".
    #[serde(with = "duration")]
    pub tcp_keepintvl: Duration,
    /// Unanswered probes after which the connection is closed. Default 6.
    pub tcp_keepcnt: u32,
}

/// TCP keepalive timing for a socket (`[general] tcp_keepalive` and the keys after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl General {
    /// The keepalive to set on database connections, if on.
    pub fn keepalive(&self) -> Option<Keepalive> {
        self.tcp_keepalive.then_some(Keepalive {
            idle: self.tcp_keepidle,
            interval: self.tcp_keepintvl,
            count: self.tcp_keepcnt,
        })
    }
}

impl Default for General {
    fn default() -> Self {
        General {
            workers: 0,
            worker_scheduling: WorkerScheduling::Normal,
            max_client_connections: 1000,
            max_user_connections: None,
            client_login_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::ZERO,
            client_write_timeout: Duration::from_secs(60),
            max_message_bytes: 64 << 20,
            drain_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::ZERO,
            watch_config: Duration::ZERO,
            query_digests: 0,
            handover_socket: None,
            tcp_keepalive: true,
            tcp_keepidle: Duration::from_secs(60),
            tcp_keepintvl: Duration::from_secs(10),
            tcp_keepcnt: 6,
        }
    }
}

/// The kernel's scheduling policy for worker threads (`[general] worker_scheduling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WorkerScheduling {
    /// The default policy (SCHED_OTHER).
    #[default]
    Normal,
    /// SCHED_BATCH: no preemption of the running thread when a worker wakes.
    Batch,
}

/// How backend connections are shared between clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A client holds one backend connection for its whole session.
    Session,
    /// A client holds a backend connection for one transaction (or one statement outside a
    /// transaction). Session state (SET, LISTEN, SQL PREPARE, temporary tables, ...) pins the
    /// client to its backend connection for the rest of its session.
    #[default]
    Transaction,
}

/// Backend pool settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// Most connections to each backend server (per login), over all worker threads. Each
    /// worker has a pool of its own and opens connections as its clients need them; at the
    /// size, one idle on another worker is closed to make room, so no worker's clients wait
    /// while another's connections sit idle. Default 20.
    pub size: usize,
    /// How long a client waits for a free backend connection before it gets an error
    /// (SQLSTATE 53300) naming this limit. Default "5s".
    #[serde(with = "duration")]
    pub checkout_timeout: Duration,
    /// Time to connect and authenticate to a backend server. Default "5s". New connections
    /// are opened in the background while clients wait: a waiting client takes whichever
    /// comes first, the new connection or one another client gives back; a connect that
    /// fails or times out fails the clients waiting at that moment if the pool has no open
    /// connection left; otherwise they wait for one to come back, up to checkout_timeout.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Statement run on a backend connection before another client gets it after a
    /// session-mode (or pinned) client leaves. Default "DISCARD ALL".
    pub reset_query: String,
    /// Multiplexed reads: 0 (default) = off, at most 64. With N > 0, a plain `SELECT` sent
    /// as a simple query outside a transaction (transaction mode only) shares a server
    /// connection with up to N-1 such statements of other clients, sent in batches, instead
    /// of taking a connection of its own. This saves the server a wakeup, a read and a write
    /// per statement. The price: a slow statement holds up the other statements of its batch
    /// (README, "Multiplexed reads"; src/pg/mux.rs). Applies to clients that connect after
    /// the setting is loaded.
    pub multiplex_depth: usize,
    /// While a cluster is paused (admin API `POST /pause`), how long a client's next
    /// transaction waits for `POST /resume` before it gets an error (SQLSTATE 57P03; MySQL
    /// 1040). Default "60s".
    #[serde(with = "duration")]
    pub pause_timeout: Duration,
    /// A server connection this old is closed when it is next given back, instead of going
    /// back to the pool (PgBouncer's server_lifetime): long-lived server processes' memory,
    /// and connections made before a failover or a change of grants, do not live forever.
    /// "0s": never. Default "1h".
    #[serde(with = "duration")]
    pub server_lifetime: Duration,
    /// An idle server connection given back this long ago is closed, so pools shrink after a
    /// burst (PgBouncer's server_idle_timeout). "0s": never. Default "10m".
    #[serde(with = "duration")]
    pub server_idle_timeout: Duration,
    /// A client that holds a server connection inside a transaction and sends nothing for
    /// this long is disconnected (PostgreSQL: FATAL 25P03; MySQL: ERR 4031 and a close) and
    /// its transaction rolled back, so that a forgotten transaction does not keep a pooled
    /// connection and its locks (PgBouncer's idle_transaction_timeout, ProxySQL's
    /// max_transaction_idle_time). "0s": never (the default). Applies to clients that
    /// connect after the setting is loaded.
    #[serde(with = "duration")]
    pub idle_transaction_timeout: Duration,
    /// A statement (PostgreSQL: a Query, or an extended batch up to its Sync) that a server
    /// has been running this long is stopped as the client's own cancel would stop it
    /// (PostgreSQL: a cancel request, the client gets 57014; MySQL: `KILL QUERY`, 1317) and
    /// the client keeps its connection; the server connection is closed afterwards instead of
    /// pooled. A server that has not answered as long again after that (at least
    /// [`QUERY_TIMEOUT_GRACE`]: a stopped statement's rollback takes time too) has the client
    /// disconnected as `POST /clients/close` would. Time waiting for the client (COPY
    /// from it) does not count. PgBouncer's query_timeout, ProxySQL's default_query_timeout.
    /// "0s": never (the default). Takes effect at once on reload, for every client.
    #[serde(with = "duration")]
    pub query_timeout: Duration,
}

/// The least time a server has to answer after `[pool] query_timeout` stopped its statement
/// before the client is disconnected (it has as long as the limit when that is longer).
pub const QUERY_TIMEOUT_GRACE: Duration = Duration::from_secs(5);

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            size: 20,
            checkout_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            reset_query: "DISCARD ALL".into(),
            multiplex_depth: 0,
            pause_timeout: Duration::from_secs(60),
            server_lifetime: Duration::from_secs(3600),
            server_idle_timeout: Duration::from_secs(600),
            idle_transaction_timeout: Duration::ZERO,
            query_timeout: Duration::ZERO,
        }
    }
}

/// Active health checks, the same for every backend.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Time between probes of each backend (role, replay position, lag). Default "1s".
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A probe not answered within this counts as failed. Default "1s". The probe is not
    /// abandoned: the next round waits for its answer on the same connection, and a late
    /// answer counts as alive (a saturated server is slow, not down). A probe with no answer
    /// for max(10 x timeout, 10s) closes its connection and a new one is opened.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Consecutive good probes that bring a down backend back. Default 2.
    pub rise: u32,
    /// Consecutive failed probes that mark a backend down. Default 2. (A connection error
    /// on the statement path marks it down at once.)
    pub fall: u32,
    /// When the probes mark a replica down (`fall` failed probes in a row; a late answer
    /// counts as alive, not failed), shut down every connection the proxy has to it, as HAProxy's
    /// `on-marked-down shutdown-sessions` does. A server that vanished without closing them
    /// (a powered-off host, a network partition, a stopped process) otherwise leaves the
    /// reads running there waiting as long as it is away. A read whose answer has not started
    /// to reach its client is then run again on another server; a client inside a
    /// transaction there gets an error, as if the server had closed the connection. A
    /// primary's connections are never closed this way (a write's outcome would be unknown).
    /// Default true.
    pub close_replica_connections: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
            close_replica_connections: true,
        }
    }
}

/// Statement routing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Functions that write (beyond the built-in list: nextval, setval, pg_advisory_*, ...);
    /// a SELECT calling one goes to the primary. Default: none.
    pub write_functions: Vec<String>,
    /// Distinct statement texts whose classification is cached (statements the slow path
    /// parsed, and long SELECTs seen at least twice; 0 disables the cache). Default 10000.
    pub cache_entries: usize,
    /// Routing rules from the operator's side (`[[routing.rule]]`), as ProxySQL's query
    /// rules: the first whose pattern matches a statement's text routes it as a leading
    /// hint would. Default: none.
    #[serde(rename = "rule")]
    pub rules: Vec<RouteRule>,
}

/// One `[[routing.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// A regular expression (Rust's `regex` syntax; `(?i)` for any case) searched for in the
    /// statement's text.
    #[serde(rename = "match")]
    pub pattern: String,
    /// "primary": the statement goes to the primary; "replica": a read (or a statement the
    /// classifier does not know) may go to a replica, as `/* switchyard:replica */` allows;
    /// writes and transaction control stay on the primary whatever a rule says.
    pub route: RuleRoute,
    /// Only for clients of this protocol ("postgres" or "mysql"). Default: both.
    #[serde(default)]
    pub protocol: Option<Protocol>,
}

/// Where a `[[routing.rule]]` sends what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleRoute {
    Primary,
    Replica,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            write_functions: Vec::new(),
            cache_entries: 10_000,
            rules: Vec::new(),
        }
    }
}

/// Resolve "host:port" to a socket address (numeric hosts and `localhost`).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| format!("bad port in {text:?}"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("{text:?} is not host:port ({e})"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

impl Config {
    /// The most client connections `user` may have open at once: its own `max_connections`,
    /// else `[general] max_user_connections`; `None` for no limit. `user` is `None` for one
    /// the config does not name (found through `auth_query`).
    pub fn user_connection_limit(&self, user: Option<&super::User>) -> Option<usize> {
        user.and_then(|u| u.max_connections)
            .or(self.general.max_user_connections)
    }

    /// Check every cross-field rule; the error names the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.general;
        if g.max_client_connections == 0 {
            return Err(ConfigError::invalid(
                "general.max_client_connections",
                "must be at least 1",
            ));
        }
        if g.max_user_connections == Some(0) {
            return Err(ConfigError::invalid(
                "general.max_user_connections",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        for (i, r) in self.routing.rules.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&r.pattern) {
                return Err(ConfigError::invalid(
                    format!("routing.rule[{i}].match"),
                    format!("not a regular expression: {e}"),
                ));
            }
        }
        // The kernel takes whole seconds, 1 to 32767, and 1 to 127 probes.
        for (key, d) in [
            ("general.tcp_keepidle", g.tcp_keepidle),
            ("general.tcp_keepintvl", g.tcp_keepintvl),
        ] {
            if d < Duration::from_secs(1) || d > Duration::from_secs(32767) || d.subsec_nanos() != 0
            {
                return Err(ConfigError::invalid(
                    key,
                    "must be whole seconds from 1s to 32767s",
                ));
            }
        }
        if !(1..=127).contains(&g.tcp_keepcnt) {
            return Err(ConfigError::invalid(
                "general.tcp_keepcnt",
                "must be from 1 to 127",
            ));
        }
        if g.max_message_bytes < 1024 {
            return Err(ConfigError::invalid(
                "general.max_message_bytes",
                "must be at least 1024",
            ));
        }
        if let Some(pg) = &self.postgres {
            let addr =
                parse_addr(&pg.listen).map_err(|e| ConfigError::invalid("postgres.listen", e))?;
            if let Some(dir) = &pg.unix_socket_dir {
                // The port of a `listen` on port 0 is known only once bound: five digits.
                let port = if addr.port() == 0 { 65535 } else { addr.port() };
                check_socket_path(&pg_socket_path(dir, port))
                    .map_err(|e| ConfigError::invalid("postgres.unix_socket_dir", e))?;
            }
            if pg.require_tls && pg.tls_cert.is_none() {
                return Err(ConfigError::invalid(
                    "postgres.require_tls",
                    "needs tls_cert and tls_key",
                ));
            }
            if pg.tls_cert.is_some() != pg.tls_key.is_some() {
                return Err(ConfigError::invalid(
                    "postgres.tls_cert",
                    "tls_cert and tls_key must be given together",
                ));
            }
            if pg.tls_client_ca_file.is_some() && pg.tls_cert.is_none() {
                return Err(ConfigError::invalid(
                    "postgres.tls_client_ca_file",
                    "needs tls_cert and tls_key (client certificates come over TLS)",
                ));
            }
            check_proxy_protocol("postgres", pg.proxy_protocol, &pg.proxy_protocol_from)?;
        }

        if let Some(my) = &self.mysql {
            parse_addr(&my.listen).map_err(|e| ConfigError::invalid("mysql.listen", e))?;
            if let Some(path) = &my.socket {
                check_socket_path(std::path::Path::new(path))
                    .map_err(|e| ConfigError::invalid("mysql.socket", e))?;
            }
            if my.require_tls && my.tls_cert.is_none() {
                return Err(ConfigError::invalid(
                    "mysql.require_tls",
                    "needs tls_cert and tls_key",
                ));
            }
            if my.tls_cert.is_some() != my.tls_key.is_some() {
                return Err(ConfigError::invalid(
                    "mysql.tls_cert",
                    "tls_cert and tls_key must be given together",
                ));
            }
            if my.tls_client_ca_file.is_some() && my.tls_cert.is_none() {
                return Err(ConfigError::invalid(
                    "mysql.tls_client_ca_file",
                    "needs tls_cert and tls_key (client certificates come over TLS)",
                ));
            }
            check_proxy_protocol("mysql", my.proxy_protocol, &my.proxy_protocol_from)?;
            if my.rsa_private_key.is_some() && !my.rsa_key_exchange {
                return Err(ConfigError::invalid(
                    "mysql.rsa_private_key",
                    "is only used with rsa_key_exchange = true",
                ));
            }
            if let Some(d) = &my.default_cluster {
                if !self.clusters_of(Protocol::Mysql).any(|c| &c.database == d) {
                    return Err(ConfigError::invalid(
                        "mysql.default_cluster",
                        format!("no cluster with protocol = \"mysql\" has database {d:?}"),
                    ));
                }
            }
            if my.server_version.is_empty() || my.server_version.contains('\0') {
                return Err(ConfigError::invalid(
                    "mysql.server_version",
                    "must be non-empty text",
                ));
            }
        }
        if self.health.interval.is_zero() || self.health.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "health.interval",
                "interval and timeout must be above 0",
            ));
        }
        if self.health.rise == 0 || self.health.fall == 0 {
            return Err(ConfigError::invalid(
                "health.rise",
                "rise and fall must be at least 1",
            ));
        }
        if let Some(a) = &self.admin {
            parse_addr(&a.listen).map_err(|e| ConfigError::invalid("admin.listen", e))?;
        }
        if let Some(e) = &self.edge {
            e.validate()?;
        }
        if self.pool.multiplex_depth > 64 {
            // Each statement on a lane may hold an answer of up to 4 MiB until its batch
            // ends; the bound keeps a lane's memory bounded too.
            return Err(ConfigError::invalid(
                "pool.multiplex_depth",
                "must be at most 64 (0 turns multiplexing off)",
            ));
        }
        if self.pool.size == 0 {
            return Err(ConfigError::invalid("pool.size", "must be at least 1"));
        }
        if self.pool.checkout_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "pool.checkout_timeout",
                "must be above 0",
            ));
        }
        if self.pool.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "pool.connect_timeout",
                "must be above 0",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = |f: &str| format!("user[{i}].{f}");
            if u.name.is_empty() {
                return Err(ConfigError::invalid(key("name"), "must not be empty"));
            }
            for net in u.allow_from.iter().filter(|n| *n != "local") {
                super::parse_network(net).map_err(|e| {
                    ConfigError::invalid(key("allow_from"), format!("{e}, or \"local\""))
                })?;
            }
            if !names.insert(u.name.as_str()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("user {:?} is defined twice", u.name),
                ));
            }
            match u.effective_auth() {
                // A user known to the MySQL listener only.
                None if u.mysql_native_hash.is_some() => {}
                None => {
                    return Err(ConfigError::invalid(
                        key("auth"),
                        "give auth = \"trust\" or a password, scram_verifier or md5_hash",
                    ))
                }
                Some(AuthMethod::ScramSha256) => {
                    // The verifier's format is checked where it is used (`app::check_config`):
                    // the config reads nothing of the protocols.
                    if u.scram_verifier.is_none() && u.password.is_none() {
                        return Err(ConfigError::invalid(
                            key("auth"),
                            "scram-sha-256 needs password or scram_verifier",
                        ));
                    }
                }
                Some(AuthMethod::Md5) => match &u.md5_hash {
                    Some(h) if !(h.len() == 35 && h.starts_with("md5")) => {
                        return Err(ConfigError::invalid(
                            key("md5_hash"),
                            "must be \"md5\" and 32 hex digits",
                        ))
                    }
                    None if u.password.is_none() => {
                        return Err(ConfigError::invalid(
                            key("auth"),
                            "md5 needs password or md5_hash",
                        ))
                    }
                    _ => {}
                },
                Some(AuthMethod::Trust) => {}
                Some(AuthMethod::Cert) => {
                    let client_ca = self
                        .postgres
                        .as_ref()
                        .is_some_and(|p| p.tls_client_ca_file.is_some())
                        || self
                            .mysql
                            .as_ref()
                            .is_some_and(|m| m.tls_client_ca_file.is_some());
                    if !client_ca {
                        return Err(ConfigError::invalid(
                            key("auth"),
                            "\"cert\" needs tls_client_ca_file in [postgres] or [mysql] (the \
                             authorities that sign client certificates)",
                        ));
                    }
                }
            }
        }
        let mut dbs = std::collections::HashSet::new();
        let mut cnames = std::collections::HashSet::new();
        for (i, c) in self.clusters.iter().enumerate() {
            let key = |f: &str| format!("cluster[{i}].{f}");
            if !cnames.insert(c.name.as_str()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("cluster {:?} is defined twice", c.name),
                ));
            }
            if !dbs.insert(c.database.as_str()) {
                return Err(ConfigError::invalid(
                    key("database"),
                    format!("database {:?} is served by two clusters", c.database),
                ));
            }
            c.validate(i)?;
        }
        Ok(())
    }

    pub fn cluster_for_database(&self, db: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.database == db)
    }

    /// The clusters a front end of `protocol` serves.
    pub fn clusters_of(&self, protocol: Protocol) -> impl Iterator<Item = &Cluster> {
        self.clusters.iter().filter(move |c| c.protocol == protocol)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [postgres]
        listen = "127.0.0.1:6432"

        [[user]]
        name = "app"
        password = "secret"

        [[cluster]]
        name = "main"
        database = "app"
        primary = "127.0.0.1:5432"
        replicas = ["127.0.0.1:5433"]
        user = "postgres"
    "#;

    #[test]
    fn defaults_apply() {
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(
            c.postgres.as_ref().unwrap().pool_mode,
            PoolMode::Transaction
        );
        assert_eq!(c.pool.size, 20);
        assert_eq!(c.users[0].effective_auth(), Some(AuthMethod::ScramSha256));
        assert_eq!(c.clusters[0].backend_database(), "app");
    }

    #[test]
    fn mysql_listener_and_clusters() {
        let my = r#"
            [mysql]
            listen = "127.0.0.1:3307"
            default_cluster = "shop"

            [[user]]
            name = "web"
            mysql_native_hash = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"

            [[cluster]]
            name = "shop"
            protocol = "mysql"
            database = "shop"
            primary = "127.0.0.1:3306"
            user = "switchyard"
        "#;
        let c = Config::from_toml(&format!(
            "{GOOD}
{my}"
        ))
        .unwrap();
        assert_eq!(c.mysql.as_ref().unwrap().pool_mode, PoolMode::Transaction);
        assert_eq!(c.clusters_of(Protocol::Mysql).count(), 1);
        assert_eq!(c.clusters_of(Protocol::Postgres).count(), 1);
        let e = Config::from_toml(&format!(
            "{GOOD}
{}",
            my.replace("default_cluster = \"shop\"", "default_cluster = \"app\"")
        ))
        .unwrap_err();
        assert!(e.to_string().contains("mysql.default_cluster"), "{e}");
    }

    #[test]
    fn auth_query_takes_the_user_as_1() {
        let with = |lines: &str| {
            Config::from_toml(&GOOD.replace(
                "user = \"postgres\"",
                &format!("user = \"postgres\"\n{lines}"),
            ))
        };
        let ok = with("auth_query = \"SELECT usename, passwd FROM pg_shadow WHERE usename = $1\"\nauth_user = \"lookup\"").unwrap();
        assert_eq!(ok.clusters[0].auth_user.as_deref(), Some("lookup"));
        let e = with("auth_query = \"SELECT passwd FROM pg_shadow\"").unwrap_err();
        assert!(e.to_string().starts_with("cluster[0].auth_query"), "{e}");
        let e = with("auth_user = \"lookup\"").unwrap_err();
        assert!(e.to_string().starts_with("cluster[0].auth_user"), "{e}");
    }

    #[test]
    fn proxy_protocol_from_names_networks_and_needs_proxy_protocol() {
        let with = |lines: &str| {
            Config::from_toml(&GOOD.replace(
                "listen = \"127.0.0.1:6432\"",
                &format!("listen = \"127.0.0.1:6432\"\n{lines}"),
            ))
        };
        let ok =
            with("proxy_protocol = true\nproxy_protocol_from = [\"10.0.0.0/8\", \"::1\"]").unwrap();
        assert!(ok.postgres.as_ref().unwrap().proxy_protocol);
        let e = with("proxy_protocol = true\nproxy_protocol_from = [\"10.0.0.0/40\"]").unwrap_err();
        assert!(
            e.to_string().starts_with("postgres.proxy_protocol_from"),
            "{e}"
        );
        let e = with("proxy_protocol_from = [\"10.0.0.0/8\"]").unwrap_err();
        assert!(
            e.to_string().contains("only used with proxy_protocol"),
            "{e}"
        );
    }

    #[test]
    fn allow_from_names_networks_or_local() {
        let with = |line: &str| {
            Config::from_toml(&GOOD.replace(
                "password = \"secret\"",
                &format!("password = \"secret\"\n{line}"),
            ))
        };
        let ok = with("allow_from = [\"10.0.0.0/8\", \"local\"]").unwrap();
        let u = &ok.users[0];
        assert!(u.allows(Some("10.9.8.7".parse().unwrap())));
        assert!(u.allows(None));
        assert!(!u.allows(Some("11.0.0.1".parse().unwrap())));
        let any = with("").unwrap();
        assert!(
            any.users[0].allows(Some("11.0.0.1".parse().unwrap())) && any.users[0].allows(None)
        );
        let e = with("allow_from = [\"localhost\"]").unwrap_err();
        assert!(e.to_string().starts_with("user[0].allow_from"), "{e}");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let e = Config::from_toml(&format!("{GOOD}\n[pool]\nsizee = 3\n")).unwrap_err();
        assert!(e.to_string().contains("sizee"), "{e}");
    }

    #[test]
    fn bad_replica_address_names_the_key() {
        let e = Config::from_toml(&GOOD.replace("127.0.0.1:5433", "nonsense")).unwrap_err();
        assert!(e.to_string().starts_with("cluster[0].replicas[0]"), "{e}");
    }

    #[test]
    fn multiplex_depth_is_bounded() {
        let base = "[postgres]\nlisten = \"127.0.0.1:6432\"\n[[cluster]]\nname = \"m\"\ndatabase = \"m\"\nprimary = \"127.0.0.1:5432\"\nuser = \"u\"\n";
        let ok = Config::from_toml(&format!("[pool]\nmultiplex_depth = 64\n{base}")).unwrap();
        assert_eq!(ok.pool.multiplex_depth, 64);
        let e = Config::from_toml(&format!("[pool]\nmultiplex_depth = 65\n{base}")).unwrap_err();
        assert!(e.to_string().contains("pool.multiplex_depth"), "{e}");
    }

    #[test]
    fn tcp_keepalive_timing_is_what_the_kernel_takes() {
        let base = "[postgres]\nlisten = \"127.0.0.1:6432\"\n[[cluster]]\nname = \"m\"\ndatabase = \"m\"\nprimary = \"127.0.0.1:5432\"\nuser = \"u\"\n";
        let with = |general: &str| Config::from_toml(&format!("[general]\n{general}\n{base}"));
        let ka = with("tcp_keepidle = \"2m\"\ntcp_keepcnt = 3").unwrap();
        assert_eq!(
            ka.general.keepalive(),
            Some(Keepalive {
                idle: Duration::from_secs(120),
                interval: Duration::from_secs(10),
                count: 3
            })
        );
        assert_eq!(
            with("tcp_keepalive = false").unwrap().general.keepalive(),
            None
        );
        for (bad, key) in [
            ("tcp_keepidle = \"500ms\"", "general.tcp_keepidle"),
            ("tcp_keepidle = \"1500ms\"", "general.tcp_keepidle"),
            ("tcp_keepintvl = \"0s\"", "general.tcp_keepintvl"),
            ("tcp_keepintvl = \"10h\"", "general.tcp_keepintvl"),
            ("tcp_keepcnt = 0", "general.tcp_keepcnt"),
            ("tcp_keepcnt = 128", "general.tcp_keepcnt"),
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.to_string().starts_with(key), "{bad}: {e}");
        }
    }

    #[test]
    fn zero_pool_size_is_rejected() {
        let e = Config::from_toml(&format!("{GOOD}\n[pool]\nsize = 0\n")).unwrap_err();
        assert!(e.to_string().starts_with("pool.size"), "{e}");
    }

    #[test]
    fn user_without_credentials_is_rejected() {
        let e = Config::from_toml(&GOOD.replace("password = \"secret\"", "")).unwrap_err();
        assert!(e.to_string().starts_with("user[0].auth"), "{e}");
    }
}
