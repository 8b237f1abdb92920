//! Client users (`[[user]]`): their secrets, limits and where they may log in from.

use serde::{Deserialize, Serialize};

/// How a client user proves who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (needs `password` or `scram_verifier`).
    ScramSha256,
    /// MD5 challenge (needs `password` or `md5_hash`).
    Md5,
    /// No password asked. For development only.
    Trust,
    /// A TLS client certificate, signed by the listener's `tls_client_ca_file`, whose
    /// subject's common name is the user name (PostgreSQL's `cert` method; MySQL's `REQUIRE
    /// SUBJECT` without a password).
    Cert,
}

/// A client user.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User name clients log in with.
    pub name: String,
    /// Authentication method. Default: scram-sha-256 when a password or SCRAM verifier is
    /// given, md5 when only an md5 hash is, otherwise required.
    #[serde(default)]
    pub auth: Option<AuthMethod>,
    /// Plaintext password (for development; prefer a verifier or hash).
    #[serde(default)]
    pub password: Option<String>,
    /// SCRAM verifier as stored by PostgreSQL:
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    #[serde(default)]
    pub scram_verifier: Option<String>,
    /// MD5 hash as stored by PostgreSQL: "md5" followed by md5(password || user) in hex.
    #[serde(default)]
    pub md5_hash: Option<String>,
    /// MySQL `mysql_native_password` hash as stored in `mysql.user`: "*" followed by
    /// SHA1(SHA1(password)) in upper-case hex. Lets the user log in through the MySQL
    /// listener without a plaintext password (a plaintext `password` serves both protocols).
    #[serde(default)]
    pub mysql_native_hash: Option<String>,
    /// In clusters with `server_login = "client"`: the user name this user's server
    /// connections log in as. Default: `name`.
    #[serde(default)]
    pub server_user: Option<String>,
    /// In clusters with `server_login = "client"`: the password those logins answer the
    /// server with. Default: `password`; without either, none (the server must trust them).
    #[serde(default)]
    pub server_password: Option<String>,
    /// Most client connections this user may have open at once, over both protocols and
    /// all workers (PostgreSQL's `CONNECTION LIMIT` of a role, MySQL's
    /// `MAX_USER_CONNECTIONS` of an account, ProxySQL's `mysql_users.max_connections`). A
    /// login past it is refused after authentication: PostgreSQL FATAL 53300 "too many
    /// connections for role", MySQL error 1226; so is a MySQL COM_CHANGE_USER to the user.
    /// Default: no limit. A reload changes it for the next logins.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Where this user may log in from: networks ("10.0.0.0/8", "2001:db8::/32", a bare
    /// address) and "local" for the Unix sockets, as a MySQL account's host part or
    /// pg_hba.conf lines per user. The address is the client's own, or the one a PROXY
    /// protocol header named. A client from elsewhere is refused before any password
    /// exchange: PostgreSQL FATAL 28000, MySQL error 1045 naming its host. Default: anywhere.
    #[serde(default)]
    pub allow_from: Vec<String>,
}

impl User {
    /// A user named `name` with no secrets and no options (what the servers' secrets are
    /// added to for a user looked up there).
    pub fn named(name: &str) -> User {
        User {
            name: name.to_owned(),
            auth: None,
            password: None,
            scram_verifier: None,
            md5_hash: None,
            mysql_native_hash: None,
            server_user: None,
            server_password: None,
            max_connections: None,
            allow_from: Vec::new(),
        }
    }

    /// Whether the user may log in from `peer` (`None`: a Unix socket): see `allow_from`.
    pub fn allows(&self, peer: Option<std::net::IpAddr>) -> bool {
        self.allow_from.is_empty()
            || self.allow_from.iter().any(|net| match peer {
                None => net == "local",
                Some(ip) => super::in_network(ip, net),
            })
    }

    /// The name and password this user's server connections log in with where the servers
    /// see each client's own user.
    pub fn server_login(&self) -> (&str, Option<&str>) {
        (
            self.server_user.as_deref().unwrap_or(&self.name),
            self.server_password.as_deref().or(self.password.as_deref()),
        )
    }

    /// The method this user authenticates with after defaults are applied.
    pub fn effective_auth(&self) -> Option<AuthMethod> {
        self.auth.or(
            if self.password.is_some() || self.scram_verifier.is_some() {
                Some(AuthMethod::ScramSha256)
            } else if self.md5_hash.is_some() {
                Some(AuthMethod::Md5)
            } else {
                None
            },
        )
    }
}
