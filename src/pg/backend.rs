//! Connections from the proxy to PostgreSQL servers: connect, authenticate, and the state the
//! proxy tracks per connection (server parameters, proxy-prepared statements, cleanliness).

use super::codec::{self, put_message, put_startup};
use crate::config::BackendAddr;
use crate::net::backend::BackendStream;
use crate::net::backend_tls::Wish;
use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest message accepted from a server during startup.
const MAX_STARTUP_MESSAGE: usize = 1 << 20;

/// Why a backend connection could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Io {
        addr: BackendAddr,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("connecting to {addr} took longer than {timeout:?}")]
    Timeout {
        addr: BackendAddr,
        timeout: Duration,
    },
    #[error("server {addr} refused the login: {code} {message}")]
    Refused {
        addr: BackendAddr,
        code: String,
        message: String,
    },
    #[error("server {addr} broke the startup protocol: {what}")]
    Protocol { addr: BackendAddr, what: String },
    /// No TLS where the cluster's `tls` requires it, or a handshake that failed (an
    /// unverifiable certificate, a name that does not match).
    #[error("TLS to {addr}: {what}")]
    Tls { addr: BackendAddr, what: String },
    /// `channel_binding = "require"` and the login could not be bound to the server's
    /// certificate.
    #[error(
        "login to {addr}: channel binding required (channel_binding = \"require\"), but {what}"
    )]
    ChannelBinding {
        addr: BackendAddr,
        what: &'static str,
    },
    /// The proxy has nothing to answer the server's authentication request with for this
    /// user (a pass-through login without the secret the server asks for).
    #[error("login to {addr}: {what}")]
    Credentials { addr: BackendAddr, what: String },
}

impl ConnectError {
    /// The server is up and answered, but would not let this user in (a wrong password, no
    /// CONNECT privilege): nothing to mark the server down for, as other users' logins (the
    /// health checks') go on.
    pub fn login_denied(&self) -> bool {
        match self {
            ConnectError::Refused { code, .. } => code.starts_with("28") || code == "42501",
            ConnectError::Credentials { .. } => true,
            _ => false,
        }
    }
}

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendTarget {
    pub addr: BackendAddr,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub connect_timeout: Duration,
    /// application_name the server sees (pool connections and health probes differ).
    pub application_name: &'static str,
    /// TLS to the server (`[[cluster]] tls`); shared with the connections' cancel targets.
    pub tls: std::sync::Arc<crate::net::backend_tls::ServerTlsConfig>,
    /// SCRAM channel binding over TLS (`[[cluster]] channel_binding`).
    pub channel_binding: crate::config::ChannelBindingMode,
    /// Without a `password`: what the client's own login lets the proxy answer the server
    /// with (see [`PassThrough`]).
    pub pass_through: Option<std::sync::Arc<PassThrough>>,
}

/// How the proxy logs in to servers as a user whose password it does not have, where the
/// servers see each client's own user (`server_login = "client"`), as PgBouncer does: an
/// md5 challenge is answered with the md5 hash from the config, a SCRAM-SHA-256 exchange
/// with the keys the user's last login to the proxy proved (the ClientKey its proof revealed,
/// with its verifier's salt, iterations and ServerKey; they work where the server's verifier
/// is the same one, copied from `pg_authid`).
pub struct PassThrough {
    user: String,
    /// The StoredKey of the user's verifier, if it has one: keys are taken only for it.
    stored_key: Option<[u8; 32]>,
    md5_hash: Option<String>,
    keys: std::sync::Mutex<Option<super::auth::ScramKeys>>,
}

impl PartialEq for PassThrough {
    /// The same user and secrets from the config (what was learned since does not count).
    fn eq(&self, other: &Self) -> bool {
        (&self.user, &self.stored_key, &self.md5_hash)
            == (&other.user, &other.stored_key, &other.md5_hash)
    }
}

impl std::fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PassThrough({})", self.user)
    }
}

impl PassThrough {
    /// The pass-through for config user `u` in a cluster whose servers see it: `None` when
    /// it has a password for the servers or nothing to pass.
    pub fn of(u: &crate::config::User) -> Option<PassThrough> {
        if u.server_login().1.is_some() {
            return None;
        }
        let stored_key = u
            .scram_verifier
            .as_deref()
            .and_then(|v| super::auth::ScramVerifier::parse(v).ok())
            .map(|v| v.stored_key);
        (stored_key.is_some() || u.md5_hash.is_some()).then(|| PassThrough {
            user: u.name.clone(),
            stored_key,
            md5_hash: u.md5_hash.clone(),
            keys: Default::default(),
        })
    }

    /// Take `keys` from a verified SCRAM login, if they are of this user's verifier.
    pub fn learn(&self, keys: super::auth::ScramKeys) {
        use sha2::Digest;
        let stored: [u8; 32] = sha2::Sha256::digest(keys.client_key).into();
        if self.stored_key == Some(stored) {
            *self.keys.lock().unwrap() = Some(keys);
        }
    }

    fn keys(&self) -> Option<super::auth::ScramKeys> {
        self.keys.lock().unwrap().clone()
    }
}

/// One SCRAM exchange with a server: by password, or by a user's keys.
enum ScramExchange {
    Password(ScramSha256),
    Keys(super::auth::ScramKeyClient),
}

/// One authenticated server connection, idle and ready for a query when handed out.
pub struct BackendConn {
    pub stream: BackendStream,
    pub addr: BackendAddr,
    /// The server's BackendKeyData, used to forward cancels.
    pub pid: i32,
    pub secret: i32,
    /// ParameterStatus values the server reported, kept current as it reports changes.
    pub server_params: Vec<(String, String)>,
    /// Client-requested settings applied on top of the server defaults (sorted by name).
    pub applied: Vec<(String, String)>,
    /// Client settings sent in the startup packet (session mode: `RESET` returns to them).
    pub startup: Vec<(String, String)>,
    /// Proxy-named prepared statements that exist on this connection.
    pub prepared: HashSet<u64, foldhash::fast::RandomState>,
    /// True only when the connection is idle outside a transaction with nothing in flight and
    /// no client session state; the pool refuses to take it back otherwise.
    pub clean: bool,
    /// A client's cancel was sent to this connection: never reused (see `CancelSlot`).
    pub cancelled: bool,
    /// The TLS settings the connection was made with, when it is encrypted: its cancel
    /// requests go over TLS too (the server's key never crosses the network in clear).
    pub cancel_tls: Option<std::sync::Arc<crate::net::backend_tls::ServerTlsConfig>>,
    /// Something ran whose effect on session state is unknown (a function outside
    /// `pg_catalog`): the connection is reset before another client gets it.
    pub state_unknown: bool,
    pub created: Instant,
    /// When its pool opened it and last took it back (its lifetime and idle limits).
    pub stamps: crate::pool::Stamps,
    /// The session whose sequence state (`currval()`, `lastval()`) this connection has, as
    /// far as the proxy knows; 0 for none (see `Session::seq_guard`).
    pub seq_owner: u64,
    /// Its place among its server's open connections (see `net::backend::SocketList`).
    pub enrolled: Option<crate::net::backend::Enrolled>,
}

impl std::fmt::Debug for BackendConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConn")
            .field("addr", &self.addr)
            .field("pid", &self.pid)
            .field("clean", &self.clean)
            .finish()
    }
}

impl BackendConn {
    /// Connect and authenticate within the target's connect timeout.
    pub async fn connect(t: &BackendTarget) -> Result<BackendConn, ConnectError> {
        Self::connect_with(t, &[]).await
    }

    /// Like [`BackendConn::connect`], with a client's settings in the startup packet (they
    /// become the connection's defaults, which `RESET` returns to).
    pub async fn connect_with(
        t: &BackendTarget,
        settings: &[(String, String)],
    ) -> Result<BackendConn, ConnectError> {
        match tokio::time::timeout(t.connect_timeout, Self::connect_inner(t, settings)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                addr: t.addr,
                timeout: t.connect_timeout,
            }),
        }
    }

    async fn connect_inner(
        t: &BackendTarget,
        settings: &[(String, String)],
    ) -> Result<BackendConn, ConnectError> {
        let addr = t.addr;
        let io = |source| ConnectError::Io {
            addr,
            source: std::sync::Arc::new(source),
        };
        let proto = |what: &str| ConnectError::Protocol {
            addr,
            what: what.to_owned(),
        };
        let mut stream = BackendStream::connect(addr).await.map_err(io)?;
        match negotiate_tls(&mut stream, t).await {
            // "prefer" as libpq's: a TLS handshake that fails is retried without TLS.
            Err(e @ ConnectError::Tls { .. }) if t.tls.wish(addr) == Wish::IfOffered => {
                tracing::warn!(server = %addr, error = %e, "TLS failed; connecting without it (tls = \"prefer\")");
                stream = BackendStream::connect(addr).await.map_err(io)?;
            }
            r => r?,
        }
        let mut out = BytesMut::with_capacity(256);
        let mut params: Vec<(&str, &str)> = vec![
            ("user", &t.user),
            ("database", &t.database),
            ("application_name", t.application_name),
            ("client_encoding", "UTF8"),
        ];
        for (k, v) in settings {
            match params.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
                Some(p) => p.1 = v,
                None => params.push((k, v)),
            }
        }
        put_startup(&mut out, &params);
        stream.write_all(&out).await.map_err(io)?;
        let mut buf = BytesMut::with_capacity(4096);
        let mut scram: Option<ScramExchange> = None;
        // SCRAM-SHA-256-PLUS was chosen (then a server that says "logged in" has checked the
        // binding: it ends its SCRAM exchange only after that).
        let mut bound = false;
        let cancel_tls = stream.is_tls().then(|| t.tls.clone());
        let mut conn = BackendConn {
            stream,
            addr,
            pid: 0,
            secret: 0,
            server_params: Vec::new(),
            applied: Vec::new(),
            startup: settings.to_vec(),
            prepared: HashSet::default(),
            clean: false,
            cancelled: false,
            cancel_tls,
            state_unknown: false,
            created: Instant::now(),
            stamps: Default::default(),
            seq_owner: 0,

            enrolled: None,
        };
        loop {
            let (tag, body) = read_message(&mut conn.stream, addr, &mut buf).await?;
            match tag {
                b'R' => {
                    if body.len() < 4 {
                        return Err(proto("short Authentication message"));
                    }
                    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let data = &body[4..];
                    out.clear();
                    let password = t.password.as_deref().unwrap_or("");
                    let require = t.channel_binding == crate::config::ChannelBindingMode::Require;
                    if !matches!(code, 10..=12) && !bound && require {
                        // Logged in (0) or asked for a password (3, 5) without SCRAM. Said
                        // goodbye to as any connection the proxy ends (Terminate, and TLS's
                        // close_notify), not dropped on the server.
                        crate::pool::Reusable::say_goodbye(&mut conn);
                        return Err(ConnectError::ChannelBinding {
                            addr,
                            what: "the server authenticated the proxy without SCRAM",
                        });
                    }
                    let no_secret = |what: &str| ConnectError::Credentials {
                        addr,
                        what: format!(
                            "the server asks for {what}, which the proxy does not have for user \
                             \"{}\" (server_login = \"client\" without a server_password)",
                            t.user
                        ),
                    };
                    let pass = t.pass_through.as_deref().filter(|_| t.password.is_none());
                    match code {
                        0 => continue,
                        3 if pass.is_some() => {
                            conn.stream.goodbye(&[]);
                            return Err(no_secret("a cleartext password"));
                        }
                        3 => {
                            let mut p = password.as_bytes().to_vec();
                            p.push(0);
                            put_message(&mut out, b'p', &p);
                        }
                        5 => {
                            if data.len() != 4 {
                                return Err(proto("bad md5 salt"));
                            }
                            let salt = [data[0], data[1], data[2], data[3]];
                            let hash = match pass {
                                None => postgres_protocol::authentication::md5_hash(
                                    t.user.as_bytes(),
                                    password.as_bytes(),
                                    salt,
                                ),
                                Some(pass) => {
                                    let answer = pass.md5_hash.as_deref().and_then(|h| {
                                        super::auth::md5_response_from_stored(h, salt)
                                    });
                                    match answer {
                                        Some(a) => a,
                                        None => {
                                            conn.stream.goodbye(&[]);
                                            return Err(no_secret("an md5 password"));
                                        }
                                    }
                                }
                            };
                            let mut p = hash.into_bytes();
                            p.push(0);
                            put_message(&mut out, b'p', &p);
                        }
                        10 => {
                            let choice = scram_choice(
                                addr,
                                data,
                                conn.stream.tls_end_point(),
                                t.channel_binding,
                            );
                            let (mechanism, cb) = match choice {
                                Ok(c) => c,
                                Err(e) => {
                                    // Over TLS a close_notify first: the server then sees
                                    // the client leave during authentication, which it does
                                    // not log, rather than a broken connection.
                                    conn.stream.goodbye(&[]);
                                    return Err(e);
                                }
                            };
                            bound = mechanism == SCRAM_PLUS;
                            let s = match pass {
                                None => ScramExchange::Password(ScramSha256::new(
                                    password.as_bytes(),
                                    cb,
                                )),
                                Some(pass) => {
                                    let Some(keys) = pass.keys() else {
                                        conn.stream.goodbye(&[]);
                                        return Err(no_secret(
                                            "SCRAM-SHA-256 (its keys come from the user's \
                                             login with the verifier in the config)",
                                        ));
                                    };
                                    // The same GS2 flag the password exchange would send.
                                    let end_point = conn.stream.tls_end_point();
                                    let (gs2, data): (&[u8], _) = match end_point {
                                        Some(e) if bound => (b"p=tls-server-end-point,,", e),
                                        Some(_)
                                            if t.channel_binding
                                                == crate::config::ChannelBindingMode::Prefer =>
                                        {
                                            (b"y,,", Vec::new())
                                        }
                                        _ => (b"n,,", Vec::new()),
                                    };
                                    ScramExchange::Keys(super::auth::ScramKeyClient::new(
                                        keys, gs2, data,
                                    ))
                                }
                            };
                            let first = match &s {
                                ScramExchange::Password(s) => s.message().to_vec(),
                                ScramExchange::Keys(k) => k.client_first(),
                            };
                            scram = Some(s);
                            let mut p = mechanism.to_vec();
                            p.push(0);
                            p.extend_from_slice(&(first.len() as i32).to_be_bytes());
                            p.extend_from_slice(&first);
                            put_message(&mut out, b'p', &p);
                        }
                        11 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| proto("SASLContinue before SASL"))?;
                            let msg = match s {
                                ScramExchange::Password(s) => {
                                    s.update(data).map_err(|e| proto(&format!("SCRAM: {e}")))?;
                                    s.message().to_vec()
                                }
                                ScramExchange::Keys(k) => match k.client_final(data) {
                                    Ok(m) => m,
                                    Err(super::auth::AuthError::WrongPassword) => {
                                        conn.stream.goodbye(&[]);
                                        return Err(ConnectError::Credentials {
                                            addr,
                                            what: format!(
                                                "the server's SCRAM verifier for \"{}\" is \
                                                 not the one in the proxy's config (another \
                                                 salt or iteration count)",
                                                t.user
                                            ),
                                        });
                                    }
                                    Err(e) => return Err(proto(&format!("SCRAM: {e}"))),
                                },
                            };
                            put_message(&mut out, b'p', &msg);
                        }
                        12 => {
                            match scram.take().ok_or_else(|| proto("SASLFinal before SASL"))? {
                                ScramExchange::Password(mut s) => s.finish(data),
                                ScramExchange::Keys(k) => k
                                    .verify_server_final(data)
                                    .map_err(|e| std::io::Error::other(e.to_string())),
                            }
                            .map_err(|e| proto(&format!("SCRAM: {e}")))?;
                            continue;
                        }
                        other => {
                            return Err(proto(&format!(
                                "unsupported authentication request {other}"
                            )))
                        }
                    }
                    conn.stream.write_all(&out).await.map_err(io)?;
                }
                b'S' => {
                    if let Some((k, v)) = codec::parameter_status(&body) {
                        set_param(&mut conn.server_params, k, v);
                    }
                }
                b'K' => {
                    if body.len() != 8 {
                        return Err(proto("bad BackendKeyData"));
                    }
                    conn.pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    conn.secret = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                }
                b'Z' => {
                    conn.clean = body.first() == Some(&b'I');
                    conn.server_params.sort();
                    return Ok(conn);
                }
                b'E' => {
                    return Err(ConnectError::Refused {
                        addr,
                        code: codec::error_field(&body, b'C').unwrap_or("").to_owned(),
                        message: codec::error_field(&body, b'M').unwrap_or("").to_owned(),
                    })
                }
                b'N' | b'v' => {}
                _ => return Err(proto("unexpected message during startup")),
            }
        }
    }

    /// Run proxy-originated statements (simple protocol) and wait for ReadyForQuery,
    /// absorbing the results. ParameterStatus changes are recorded. Used for resets and for
    /// applying a client's settings; any error makes the connection unusable.
    pub async fn run_internal(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<(), InternalError> {
        self.simple_query(sql, timeout).await.map(drop)
    }

    /// Run one query (simple protocol) and return the text values of its first row.
    /// For the health checker; errors are strings for logging.
    pub async fn query_row(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<Option<String>>, String> {
        self.simple_query(sql, timeout)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "query returned no row".into())
    }

    /// Send `sql` as one Query and read up to ReadyForQuery within `timeout`: the first
    /// row's text values, if any. A server error, or a connection left anything but idle,
    /// is an error; ParameterStatus changes are recorded.
    pub(super) async fn simple_query(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Option<Vec<Option<String>>>, InternalError> {
        use InternalError::Broken;
        let work = async {
            let mut out = BytesMut::with_capacity(sql.len() + 8);
            codec::put_query(&mut out, sql);
            self.stream
                .write_all(&out)
                .await
                .map_err(|e| Broken(e.to_string()))?;
            let mut buf = BytesMut::with_capacity(1024);
            let mut row = None;
            let mut error = None;
            loop {
                let (tag, body) = read_message(&mut self.stream, self.addr, &mut buf)
                    .await
                    .map_err(|e| match e {
                        // (Not a login: the startup's wording would mislead.)
                        ConnectError::Protocol { addr, what } => {
                            Broken(format!("server {addr}: {what}"))
                        }
                        e => Broken(e.to_string()),
                    })?;
                match tag {
                    b'D' if row.is_none() => {
                        row = Some(data_row(&body).ok_or(Broken("malformed DataRow".into()))?)
                    }
                    b'E' => {
                        error = Some(
                            codec::error_field(&body, b'M')
                                .unwrap_or("error")
                                .to_owned(),
                        )
                    }
                    b'S' => {
                        if let Some((k, v)) = codec::parameter_status(&body) {
                            set_param(&mut self.server_params, k, v);
                        }
                    }
                    b'Z' => {
                        if !buf.is_empty() {
                            return Err(Broken("unexpected data after ReadyForQuery".into()));
                        }
                        return match (error, body.first()) {
                            (Some(e), _) => Err(InternalError::Refused(e)),
                            (None, Some(b'I')) => Ok(row),
                            _ => Err(Broken("not idle after internal statement".into())),
                        };
                    }
                    _ => {}
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Broken(format!("no answer within {timeout:?}"))),
        }
    }
}

/// Why a statement the proxy ran itself failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InternalError {
    /// The server answered with an error and was ready for more: the statement was refused
    /// (a setting's value it does not take), the connection is fine.
    #[error("{0}")]
    Refused(String),
    /// The connection ended, broke the protocol or did not answer in time: the server may be
    /// going away.
    #[error("{0}")]
    Broken(String),
}

/// Text values of a DataRow body.
fn data_row(body: &[u8]) -> Option<Vec<Option<String>>> {
    let n = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    let mut rest = &body[2..];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        if len < 0 {
            out.push(None);
        } else {
            let v = rest.get(..len as usize)?;
            out.push(Some(String::from_utf8_lossy(v).into_owned()));
            rest = &rest[len as usize..];
        }
    }
    Some(out)
}

/// Insert or replace a (name, value) pair.
pub fn set_param(params: &mut Vec<(String, String)>, name: &str, value: &str) {
    match params.iter_mut().find(|(k, _)| k == name) {
        Some(p) => p.1 = value.to_owned(),
        None => params.push((name.to_owned(), value.to_owned())),
    }
}

/// Ask for TLS as the target's `tls` wants (an SSLRequest before the startup packet).
async fn negotiate_tls(stream: &mut BackendStream, t: &BackendTarget) -> Result<(), ConnectError> {
    let addr = t.addr;
    let fail = |what: String| ConnectError::Tls { addr, what };
    let wish = t.tls.wish(addr);
    if wish == Wish::Off {
        return Ok(());
    }
    stream
        .write_all(&codec::SSL_REQUEST_PACKET)
        .await
        .map_err(|e| fail(format!("sending SSLRequest: {e}")))?;
    // Exactly one byte: anything the server sent after it before the handshake would be
    // unencrypted bytes injected into the session (CVE-2021-23222).
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| fail(format!("reading the answer to SSLRequest: {e}")))?;
    match answer[0] {
        b'S' => stream
            .start_tls(&t.tls)
            .await
            .map_err(|e| fail(format!("handshake failed: {e}"))),
        b'N' if wish == Wish::IfOffered => Ok(()),
        b'N' => Err(fail(format!(
            "the server does not offer TLS, which tls = {:?} requires",
            t.tls.mode()
        ))),
        other => Err(fail(format!(
            "unexpected answer {other:#04x} to SSLRequest"
        ))),
    }
}

fn sasl_mechanisms(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == 0).take_while(|m| !m.is_empty())
}

const SCRAM: &[u8] = b"SCRAM-SHA-256";
const SCRAM_PLUS: &[u8] = b"SCRAM-SHA-256-PLUS";

/// The SASL mechanism to answer an AuthenticationSASL offering `offered` with, and the
/// channel binding to use, as libpq chooses: PLUS over TLS when the server offers it (unless
/// disabled); over TLS without it, the plain mechanism saying the client could have bound
/// ("y": a server that did offer PLUS then knows the offer was stripped on the way);
/// `require` refuses anything but PLUS.
fn scram_choice(
    addr: BackendAddr,
    offered: &[u8],
    end_point: Option<Vec<u8>>,
    mode: crate::config::ChannelBindingMode,
) -> Result<(&'static [u8], ChannelBinding), ConnectError> {
    use crate::config::ChannelBindingMode as Mode;
    let plus = sasl_mechanisms(offered).any(|m| m == SCRAM_PLUS);
    let plain = sasl_mechanisms(offered).any(|m| m == SCRAM);
    match (mode, end_point) {
        (Mode::Prefer | Mode::Require, Some(end_point)) if plus => {
            Ok((SCRAM_PLUS, ChannelBinding::tls_server_end_point(end_point)))
        }
        (Mode::Require, end_point) => Err(ConnectError::ChannelBinding {
            addr,
            what: if end_point.is_none() {
                "the connection has no TLS certificate to bind to"
            } else {
                "the server does not offer SCRAM-SHA-256-PLUS"
            },
        }),
        _ if !plain => Err(ConnectError::Protocol {
            addr,
            what: "server offers no SCRAM-SHA-256".into(),
        }),
        (Mode::Prefer, Some(_)) => Ok((SCRAM, ChannelBinding::unrequested())),
        _ => Ok((SCRAM, ChannelBinding::unsupported())),
    }
}

/// Read one whole tagged message (startup/internal use only; the session forwards instead).
async fn read_message(
    stream: &mut BackendStream,
    addr: BackendAddr,
    buf: &mut BytesMut,
) -> Result<(u8, Vec<u8>), ConnectError> {
    loop {
        match codec::header(buf, MAX_STARTUP_MESSAGE) {
            Err(e) => {
                return Err(ConnectError::Protocol {
                    addr,
                    what: e.to_string(),
                })
            }
            Ok(Some(h)) if buf.len() >= h.wire_len => {
                let body = buf[5..h.wire_len].to_vec();
                buf.advance(h.wire_len);
                return Ok((h.tag, body));
            }
            _ => {}
        }
        buf.reserve(4096);
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|source| ConnectError::Io {
                addr,
                source: std::sync::Arc::new(source),
            })?;
        if n == 0 {
            return Err(ConnectError::Protocol {
                addr,
                what: "server closed the connection".into(),
            });
        }
    }
}

impl crate::pool::Connector for BackendTarget {
    type Conn = BackendConn;
    type Error = ConnectError;
    /// Multiplexed reads on the pool's connections (used only when configured).
    type Ext = std::sync::Arc<super::mux::Mux>;

    async fn connect(&self) -> Result<BackendConn, ConnectError> {
        BackendConn::connect(self).await
    }

    fn addr(&self) -> BackendAddr {
        self.addr
    }

    fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    fn timed_out(&self) -> ConnectError {
        ConnectError::Timeout {
            addr: self.addr,
            timeout: self.connect_timeout,
        }
    }
}

impl crate::pool::Reusable for BackendConn {
    fn reusable(&self) -> bool {
        self.clean && !self.cancelled
    }

    fn at_rest(&self) -> bool {
        self.clean
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
        self.stream.goodbye(&[b'X', 0, 0, 0, 4]);
    }

    /// An idle connection has nothing to say. If the server wrote anyway or closed it, the
    /// socket is readable. This uses the readiness the event loop already recorded, so it
    /// costs no system call.
    fn stale(&self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_ready()
    }
}

/// A pool of connections to one PostgreSQL server.
pub type PgPool = crate::pool::BackendPool<BackendTarget>;
/// A checked-out PostgreSQL server connection.
pub type Pooled = crate::pool::Pooled<BackendTarget>;
/// Why no PostgreSQL server connection could be checked out.
pub type CheckoutError = crate::pool::CheckoutError<ConnectError>;
