//! The front ends' listeners: `[postgres]`, `[mysql]` and `[admin]`, and the checks of
//! their keys that the whole config's validation calls.

use super::{ConfigError, PoolMode};
use serde::{Deserialize, Serialize};

/// The PostgreSQL front end.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresListener {
    /// Address to listen on, e.g. "127.0.0.1:6432".
    pub listen: String,
    /// Pool mode for PostgreSQL clients. Default "transaction".
    #[serde(default)]
    pub pool_mode: PoolMode,
    /// PEM certificate chain for TLS to clients. With `tls_key`, SSLRequest is accepted;
    /// without, clients are told 'N' (no TLS). Default: none.
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// PEM private key matching `tls_cert`. Default: none.
    #[serde(default)]
    pub tls_key: Option<String>,
    /// Refuse logins over TCP without TLS (FATAL 28000), as PgBouncer's
    /// `client_tls_sslmode = require`; needs `tls_cert`. Clients of the Unix socket and
    /// cancel requests (which libpq before 17 sends unencrypted) are not refused. Default
    /// false. Needs a restart.
    #[serde(default)]
    pub require_tls: bool,
    /// PEM file of the certificate authorities whose client certificates are accepted (as
    /// PgBouncer's `client_tls_ca_file`): a client over TLS may then present a certificate,
    /// which must chain to one of them (one that does not fails the handshake), and users
    /// with `auth = "cert"` log in by it. Needs `tls_cert`. Default: none (no client
    /// certificates asked for). Needs a restart.
    #[serde(default)]
    pub tls_client_ca_file: Option<String>,
    /// Also listen on a Unix-domain socket in this directory, named as PostgreSQL names its
    /// own: `<dir>/.s.PGSQL.<port of listen>`, so `psql -h <dir> -p <port>` and libpq's
    /// `host=<dir>` reach the proxy. Mode 0777 (logins are still checked). Default: none.
    /// Needs a restart.
    #[serde(default)]
    pub unix_socket_dir: Option<String>,
    /// Each TCP connection starts with a PROXY protocol header (version 1 or 2) from a load
    /// balancer in front (HAProxy's `send-proxy` / `send-proxy-v2`, nginx's
    /// `proxy_protocol on`, a cloud load balancer's "proxy protocol"), and the client it names
    /// is the one logged (a `LOCAL` header, a balancer's own health check, keeps the
    /// balancer's address). A connection without a valid header is closed. Clients of the
    /// Unix socket send none. Default false. Read at each new connection (a reload changes
    /// it).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the networks the balancers connect from ("10.0.0.0/8",
    /// "::1", ...); a connection from any other address is closed before a byte is read,
    /// since whoever can reach the listener could otherwise claim any address. Default: any
    /// address. Read at each connection (a reload changes it).
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
}

/// PostgreSQL's name for the socket of a server listening on `port` in `dir`.
pub fn pg_socket_path(dir: &str, port: u16) -> std::path::PathBuf {
    std::path::Path::new(dir).join(format!(".s.PGSQL.{port}"))
}

/// A Unix socket path fits `sun_path` (108 bytes with the terminating NUL) and is absolute.
pub(super) fn check_socket_path(path: &std::path::Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    if path.as_os_str().len() > 107 {
        return Err(format!(
            "{} is longer than a Unix socket path may be (107 bytes)",
            path.display()
        ));
    }
    Ok(())
}

/// `proxy_protocol_from` names networks, and only with `proxy_protocol` on (`section` is
/// the key's prefix).
pub(super) fn check_proxy_protocol(
    section: &str,
    on: bool,
    from: &[String],
) -> Result<(), ConfigError> {
    let key = format!("{section}.proxy_protocol_from");
    if !on && !from.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "is only used with proxy_protocol = true",
        ));
    }
    for net in from {
        super::parse_network(net).map_err(|e| ConfigError::invalid(key.clone(), e))?;
    }
    Ok(())
}

/// The MySQL front end.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlListener {
    /// Address to listen on, e.g. "127.0.0.1:3307". Changing it needs a restart.
    pub listen: String,
    /// Also listen on a Unix-domain socket at this path (what clients give as `--socket`,
    /// `unix_socket`), mode 0777 (logins are still checked). Default: none. Needs a restart.
    #[serde(default)]
    pub socket: Option<String>,
    /// Pool mode for MySQL clients. Default "transaction".
    #[serde(default)]
    pub pool_mode: PoolMode,
    /// The cluster (its `database`) a client gets when the schema it connects with names no
    /// MySQL cluster, or when it connects without one. Default: the only MySQL cluster if
    /// there is exactly one; otherwise such a client is refused.
    #[serde(default)]
    pub default_cluster: Option<String>,
    /// Server version announced to clients in the handshake (drivers read it to pick
    /// features). Default "10.11.0-MariaDB-switchyard" (MariaDB's "5.5.5-" prefix is added
    /// on the wire).
    #[serde(default = "default_mysql_version")]
    pub server_version: String,
    /// PEM certificate chain for TLS to clients. With `tls_key`, the handshake offers
    /// CLIENT_SSL and an SSLRequest upgrades the connection; without, TLS is not offered.
    /// Default: none.
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// PEM private key matching `tls_cert`. Default: none.
    #[serde(default)]
    pub tls_key: Option<String>,
    /// Refuse logins over TCP without TLS (ERR 3159, as MySQL's
    /// `require_secure_transport = ON`); needs `tls_cert`. Clients of the Unix socket are not
    /// refused. Default false. Needs a restart.
    #[serde(default)]
    pub require_tls: bool,
    /// PEM file of the certificate authorities whose client certificates are accepted, as
    /// for `[postgres]`: a client over TLS may present a certificate (`--ssl-cert`), which
    /// must chain to them, and users with `auth = "cert"` log in by it. Needs `tls_cert`.
    /// Default: none. Needs a restart.
    #[serde(default)]
    pub tls_client_ca_file: Option<String>,
    /// `caching_sha2_password` full authentication without TLS by the RSA key exchange, as
    /// a MySQL 8 server does it: a client of a user with only a `mysql_native_hash` is asked
    /// for its password, fetches the proxy's public key and sends the password encrypted.
    /// Off (the default), such a client is switched to `mysql_native_password` instead,
    /// which every connector supports and which never sends the password; some connectors
    /// (mysql-connector-python's pure-Python one) answer a full-auth request on a plain
    /// connection with the password in clear, which the proxy then refuses. Needs a restart.
    #[serde(default)]
    pub rsa_key_exchange: bool,
    /// PEM RSA private key (PKCS#8 or PKCS#1) for `rsa_key_exchange`. Default: a 2048-bit key
    /// generated when the proxy starts (clients that pin the server's public key need a file).
    #[serde(default)]
    pub rsa_private_key: Option<String>,
    /// Each TCP connection starts with a PROXY protocol header (version 1 or 2) from a load
    /// balancer in front (HAProxy's `send-proxy` / `send-proxy-v2`, nginx's
    /// `proxy_protocol on`, a cloud load balancer's "proxy protocol"), and the client it names
    /// is the one logged (a `LOCAL` header, a balancer's own health check, keeps the
    /// balancer's address). A connection without a valid header is closed. Clients of the
    /// Unix socket send none. Default false. Read at each new connection (a reload changes
    /// it).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the networks the balancers connect from ("10.0.0.0/8",
    /// "::1", ...); a connection from any other address is closed before a byte is read,
    /// since whoever can reach the listener could otherwise claim any address. Default: any
    /// address. Read at each connection (a reload changes it).
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
}

fn default_mysql_version() -> String {
    "10.11.0-MariaDB-switchyard".into()
}

/// The admin HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Address of the admin API. Default "127.0.0.1:9187". A non-loopback address needs
    /// `token`.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Bearer token every admin request must carry. Default: none (loopback only).
    #[serde(default)]
    pub token: Option<String>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9187".into()
}
