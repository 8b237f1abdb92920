//! A cluster in the config: its servers, the protocol they speak, how reads are split and how
//! far a replica may lag, and TLS to its servers.

use super::{duration, ConfigError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Wire protocol a cluster speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Postgres,
    Mysql,
}

/// A primary and its replicas.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Name used in logs and metrics.
    pub name: String,
    /// Wire protocol of the servers. Default "postgres".
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// Database name clients connect to in order to reach this cluster.
    pub database: String,
    /// Database name on the servers. Default: same as `database`.
    #[serde(default)]
    pub backend_database: Option<String>,
    /// Primary server, "host:port", or the absolute path of its Unix-domain socket on this
    /// host (MariaDB's `socket`; PostgreSQL's `<unix_socket_directories>/.s.PGSQL.<port>`).
    pub primary: String,
    /// Replica servers: "host:port" or a socket path as for `primary`, or
    /// `{ addr = "host:port", weight = 2 }` to weight read selection (default weight 1).
    /// Default: none.
    #[serde(default)]
    pub replicas: Vec<ReplicaSpec>,
    /// User the proxy logs in to the servers as.
    pub user: String,
    /// That user's password (SCRAM-SHA-256, md5 and cleartext are answered). Default: none
    /// (trust).
    #[serde(default)]
    pub password: Option<String>,
    /// Whom the servers see clients' statements come from: "cluster" (default: every client's
    /// connections log in as `user`, and all clients share one pool per server) or "client"
    /// (each as the client's own user, its `server_user` and `server_password`, on pools of
    /// its own per server, so the servers' grants, row security and logs apply per user;
    /// `user` then runs only the health checks).
    #[serde(default)]
    pub server_login: ServerLogin,
    /// Clients whose user is not in the config log in with the password verifier this query
    /// returns from the servers (PgBouncer's `auth_query`; MaxScale reads its users from the
    /// servers too): it runs on the primary, as `auth_user`, with `$1` the client's user name
    /// (as a string literal), and its last column is the secret as the servers store it:
    /// `SCRAM-SHA-256$...` or an md5 hash from `pg_authid`, a `mysql_native_password` hash
    /// ("*" and 40 hex digits) from `mysql.user`. No row, NULL or another kind of secret fails
    /// the login as a wrong password does. Default: none (only config users log in).
    /// Typical: "SELECT usename, passwd FROM pg_shadow WHERE usename = $1" (or a SECURITY
    /// DEFINER function over it, for a less privileged `auth_user`); "SELECT
    /// authentication_string FROM mysql.user WHERE User = $1 AND Host = '%'".
    #[serde(default)]
    pub auth_query: Option<String>,
    /// The user `auth_query` runs as, and its password. Default: `user` and `password`.
    #[serde(default)]
    pub auth_user: Option<String>,
    #[serde(default)]
    pub auth_password: Option<String>,
    /// The database (MySQL: default schema) `auth_query` runs in, so that one lookup function
    /// serves every cluster (PgBouncer's `auth_dbname`). Default: `backend_database` (MySQL:
    /// none).
    #[serde(default)]
    pub auth_database: Option<String>,
    /// Overrides `pool.size` for this cluster's backends.
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// Most connections the proxy opens to each of this cluster's servers for clients, over
    /// all users' pools and all workers (PgBouncer's `max_db_connections`). At the limit a
    /// pool that needs one more closes an idle connection of another pool of that server,
    /// or its clients wait (within `checkout_timeout`) for one to close. Health checks and
    /// KILL connections are not counted. Default 0: no limit.
    #[serde(default)]
    pub max_server_connections: usize,
    /// Send reads to replicas (true) or everything to the primary (false). Default true.
    /// Without replicas nothing is classified and everything goes to the primary.
    #[serde(default = "default_true")]
    pub read_write_split: bool,
    /// A replica whose replay is more than this far behind (time) leaves the read set; it
    /// comes back once under half of it. Default "10s".
    #[serde(default = "default_max_lag", with = "duration")]
    pub max_lag: Duration,
    /// Same limit in bytes of WAL not yet replayed. Default 0: no byte limit.
    #[serde(default)]
    pub max_lag_bytes: u64,
    /// When no replica qualifies for a read: "primary" (send it there) or "error".
    /// Default "primary".
    #[serde(default)]
    pub fallback: Fallback,
    /// "eventual" (default) or "read_your_writes": after a client's write commits, its reads
    /// go only to replicas that replayed past the primary's position observed after it.
    #[serde(default)]
    pub consistency: Consistency,
    /// TLS on the connections to this cluster's servers (pool, health checks, KILL): see
    /// [`ServerTls`]. Default "prefer". A server named by its Unix socket is never reached
    /// over TLS (nothing leaves the host; libpq does the same).
    #[serde(default)]
    pub tls: ServerTls,
    /// PEM file of the certificate authorities that sign the servers' certificates; needed by
    /// "verify-ca" and "verify-full". Default: none.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// Name the servers' certificates must carry under "verify-full". Default: the address's
    /// IP (the certificate then needs it as an IP subject alternative name).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Client certificate (PEM, chain) and its key presented to servers that ask for one
    /// (`clientcert` in pg_hba.conf, `REQUIRE X509` in MariaDB); given together. Default: none.
    #[serde(default)]
    pub tls_cert: Option<String>,
    #[serde(default)]
    pub tls_key: Option<String>,
    /// SCRAM channel binding (SCRAM-SHA-256-PLUS, `tls-server-end-point`) when logging in to
    /// PostgreSQL servers over TLS, by libpq's `channel_binding` names: "prefer" (default:
    /// used when the server offers it), "require" (a server that does not, or a login
    /// without SCRAM or without TLS, is refused) or "disable". Ties the login to the
    /// certificate the server presented, so a relay in the middle cannot pass it on.
    #[serde(default)]
    pub channel_binding: ChannelBindingMode,
}

/// Whom a cluster's servers see clients' statements come from (see `Cluster::server_login`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServerLogin {
    #[default]
    Cluster,
    Client,
}

/// SCRAM channel binding on the proxy's logins to PostgreSQL servers (libpq's
/// `channel_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelBindingMode {
    Disable,
    #[default]
    Prefer,
    Require,
}

/// TLS to a cluster's servers, by the names libpq's `sslmode` uses (MySQL's `--ssl-mode`
/// DISABLED, PREFERRED, REQUIRED, VERIFY_CA and VERIFY_IDENTITY mean the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTls {
    /// Never.
    Disable,
    /// When the server offers it, without checking its certificate; plain otherwise.
    #[default]
    Prefer,
    /// Always (a server without TLS is an error); the certificate is not checked.
    Require,
    /// Always, with a certificate signed by `tls_ca_file`.
    VerifyCa,
    /// As verify-ca, and the certificate names the server (`tls_server_name`, or its IP).
    VerifyFull,
}

impl ServerTls {
    /// The certificate is checked against `tls_ca_file`.
    pub fn verifies(self) -> bool {
        matches!(self, ServerTls::VerifyCa | ServerTls::VerifyFull)
    }

    /// A server without TLS is refused.
    pub fn required(self) -> bool {
        !matches!(self, ServerTls::Disable | ServerTls::Prefer)
    }

    /// The rules between the TLS keys of a cluster or an upstream group: the verifying modes
    /// need `tls_ca_file`, and a client certificate comes with its key. `key` names a key in
    /// the error.
    pub(super) fn check_keys(
        self,
        has_ca_file: bool,
        cert_without_key: bool,
        key: impl Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        if self.verifies() && !has_ca_file {
            return Err(ConfigError::invalid(
                key("tls_ca_file"),
                "verify-ca and verify-full need the certificate authorities' PEM file",
            ));
        }
        if cert_without_key {
            return Err(ConfigError::invalid(
                key("tls_cert"),
                "tls_cert and tls_key must be given together",
            ));
        }
        Ok(())
    }
}

/// A replica address with an optional weight.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ReplicaSpec {
    Addr(String),
    Weighted {
        addr: String,
        #[serde(default = "default_weight")]
        weight: u32,
    },
}

impl ReplicaSpec {
    pub fn addr(&self) -> &str {
        match self {
            ReplicaSpec::Addr(a) | ReplicaSpec::Weighted { addr: a, .. } => a,
        }
    }
    pub fn weight(&self) -> u32 {
        match self {
            ReplicaSpec::Addr(_) => 1,
            ReplicaSpec::Weighted { weight, .. } => *weight,
        }
    }
}

fn default_weight() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

fn default_max_lag() -> Duration {
    Duration::from_secs(10)
}

/// What to do with a read when no replica qualifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    #[default]
    Primary,
    Error,
}

/// Read consistency per cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    #[default]
    Eventual,
    ReadYourWrites,
}

fn default_protocol() -> Protocol {
    Protocol::Postgres
}

impl Cluster {
    /// The checks of one cluster's own keys (`cluster[i]`); names and databases unique over
    /// all clusters are checked by [`super::Config::validate`].
    pub(super) fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let key = |f: &str| format!("cluster[{i}].{f}");
        super::parse_backend_addr(&self.primary)
            .map_err(|e| ConfigError::invalid(key("primary"), e))?;
        for (j, r) in self.replicas.iter().enumerate() {
            if r.weight() == 0 {
                return Err(ConfigError::invalid(
                    format!("cluster[{i}].replicas[{j}].weight"),
                    "must be at least 1",
                ));
            }
            super::parse_backend_addr(r.addr())
                .map_err(|e| ConfigError::invalid(format!("cluster[{i}].replicas[{j}]"), e))?;
        }
        if self.pool_size == Some(0) {
            return Err(ConfigError::invalid(key("pool_size"), "must be at least 1"));
        }
        if self.channel_binding == ChannelBindingMode::Require {
            let why = if self.protocol != Protocol::Postgres {
                Some("channel binding is a PostgreSQL (SCRAM) login feature")
            } else if !self.tls.required() {
                Some("\"require\" needs TLS to the servers: tls = \"require\" or stronger")
            } else if std::iter::once(self.primary.as_str())
                .chain(self.replicas.iter().map(|r| r.addr()))
                .any(|a| a.starts_with('/'))
            {
                Some("\"require\" needs TLS, which a server named by its Unix socket never uses")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ConfigError::invalid(key("channel_binding"), why));
            }
        }
        match &self.auth_query {
            Some(q) if !q.contains("$1") => {
                return Err(ConfigError::invalid(
                    key("auth_query"),
                    "must take the user name as $1",
                ))
            }
            None if self.auth_user.is_some()
                || self.auth_password.is_some()
                || self.auth_database.is_some() =>
            {
                return Err(ConfigError::invalid(
                    key("auth_user"),
                    "auth_user, auth_password and auth_database are for auth_query, which is \
                     not set",
                ))
            }
            _ => {}
        }
        self.tls.check_keys(
            self.tls_ca_file.is_some(),
            self.tls_cert.is_some() != self.tls_key.is_some(),
            key,
        )
    }

    /// Who runs `auth_query`: `auth_user` with `auth_password`, else `user` with `password`.
    pub fn auth_login(&self) -> (String, Option<String>) {
        match &self.auth_user {
            Some(u) => (u.clone(), self.auth_password.clone()),
            None => (self.user.clone(), self.password.clone()),
        }
    }

    pub fn backend_database(&self) -> &str {
        self.backend_database.as_deref().unwrap_or(&self.database)
    }
}
