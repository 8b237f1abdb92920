//! A MySQL client from accept to logged in: the proxy's Initial Handshake, the client's
//! response, authentication, and the choice of cluster.
//!
//! Authentication: the handshake offers `mysql_native_password` with a fresh 20-byte
//! scramble. A client that answers for `caching_sha2_password` (MySQL 8 connectors by
//! default) is checked on the fast path when the user has a plaintext password (the proxy
//! knows what the server would have cached) and told so with AuthMoreData 0x03; otherwise it
//! is switched to `mysql_native_password`. Any other plugin is switched too. A wrong password
//! gets ER_ACCESS_DENIED_ERROR (1045) naming the user. With `[mysql] tls_cert`, the handshake
//! offers CLIENT_SSL and a client's SSLRequest upgrades the connection before its response;
//! over TLS, a caching_sha2_password client of a user with only a stored
//! `mysql_native_hash` gets full authentication (it sends the password, checked against the
//! hash). Without TLS that client is switched to mysql_native_password, or, with `[mysql]
//! rsa_key_exchange = true`, gets full authentication with the RSA public-key exchange (it
//! may ask for the proxy's public key with 0x02 and sends the password encrypted with it).
//!
//! Which cluster: the schema in the handshake response names a cluster with `protocol =
//! "mysql"` by its `database`; otherwise `[mysql] default_cluster` (or the only MySQL
//! cluster), with the client's schema, if any, kept as its current schema there. No match:
//! ER_BAD_DB_ERROR (1049).

use super::auth::{self, NativePasswordHash};
use super::codec::{self, flags::*};
use super::io::{err_payload, read_packet, read_packet_exact, write_packet, Packet, PacketError};
use crate::config::{AuthMethod, Config, Protocol, User};
use crate::net::tls::ClientStream;
use bytes::BytesMut;
use tokio::io::AsyncWrite;

/// Capabilities the proxy offers clients, plus CLIENT_SSL when TLS is configured. Not offered:
/// CLIENT_DEPRECATE_EOF (result sets are forwarded as the servers send them, which the proxy
/// asks for with classic EOF packets), CLIENT_LOCAL_FILES (LOCAL INFILE is refused),
/// compression, query attributes. CLIENT_FOUND_ROWS is honoured for UPDATE (the matched
/// count of the OK's info string replaces the changed count); CLIENT_IGNORE_SPACE adds
/// IGNORE_SPACE to the client's sql_mode (see the session).
pub const OFFERED_CAPS: u64 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_IGNORE_SPACE
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_INTERACTIVE
    | CLIENT_IGNORE_SIGPIPE
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_SESSION_TRACK;

/// A refusal: an ERR packet's code, SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub state: [u8; 5],
    pub message: String,
}

fn refuse(code: u16, state: &[u8; 5], message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        state: *state,
        message: message.into(),
    }
}

/// A client that logged in.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    /// Capabilities both sides have.
    pub caps: u64,
    /// Collation id from the handshake response (sets the client's character set).
    pub charset: u8,
    /// The cluster's `database` (key of the cluster maps).
    pub cluster: String,
    /// The schema to use on the servers, if any.
    pub schema: Option<String>,
    /// Sequence id of the next packet to the client (the final OK has not been sent yet).
    pub next_seq: u8,
    /// The handshake's scramble: a server checks COM_CHANGE_USER against it too, and
    /// Connector/C computes its answer from it even after an AuthSwitchRequest.
    pub scramble: [u8; 20],
    /// `SHA1(password)`, when the login proved it against the user's mysql_native_hash (for
    /// its server logins without a password, see `backend::PassThrough`).
    pub native_stage1: Option<[u8; 20]>,
    /// The user's `max_connections`.
    pub max_connections: Option<usize>,
}

/// Why a login ended early.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Packet(#[from] PacketError),
    #[error("refused: {}", .0.message)]
    Refused(Refusal),
}

impl From<std::io::Error> for LoginError {
    fn from(e: std::io::Error) -> Self {
        LoginError::Packet(PacketError::Io(e))
    }
}

/// Run the connection phase on `s`: handshake, TLS upgrade when the client asks and `tls`
/// is configured, response, authentication, cluster. On a refusal the ERR packet has been
/// sent (the caller closes).
pub async fn login(
    s: &mut ClientStream,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    buf: &mut BytesMut,
    cfg: &Config,
    w: &super::worker::Worker,
    (connection_id, peer): (u32, crate::net::Peer),
    max_packet: usize,
) -> Result<Login, LoginError> {
    let rsa = w.my.rsa.as_deref();
    let scramble: [u8; 20] = nonce();
    let version = cfg
        .mysql
        .as_ref()
        .map(|m| m.server_version.clone())
        .unwrap_or_default();
    // MariaDB's replication-era prefix: MariaDB connectors look for "MariaDB" after it.
    let announced = if version.contains("MariaDB") && !version.starts_with("5.5.5-") {
        format!("5.5.5-{version}")
    } else {
        version
    };
    let offered = OFFERED_CAPS | if tls.is_some() { CLIENT_SSL } else { 0 };
    let mut out = BytesMut::new();
    codec::put_handshake(
        &mut out,
        &codec::Handshake {
            server_version: announced.as_bytes(),
            connection_id,
            auth_data_1: &scramble[..8],
            capabilities: offered,
            charset: CHARSET_UTF8MB4_GENERAL_CI,
            status: SERVER_STATUS_AUTOCOMMIT,
            auth_data_len: 21,
            auth_data_2: &scramble[8..],
            auth_plugin: Some(MYSQL_NATIVE_PASSWORD),
        },
    );
    write_packet(s, 0, &out).await?;
    let mut first = read_packet_exact(s, buf, max_packet).await?;
    // The response follows the handshake (sequence id 0); MariaDB refuses anything else the
    // same way, and a client that numbers its packets wrongly would misread every answer.
    if first.seq != 1 {
        return Err(send_refusal(s, 2, out_of_order()).await);
    }
    if let Ok(codec::ClientHello::SslRequest(_)) = codec::parse_client_hello(&first.payload) {
        let Some(acceptor) = tls else {
            return Err(send_refusal(
                s,
                first.next_seq,
                refuse(1043, b"08S01", "switchyard: TLS is not offered"),
            )
            .await);
        };
        if !buf.is_empty() {
            // Only the SSLRequest was read: anything more came with it in one packet read.
            return Err(send_refusal(
                s,
                first.next_seq,
                refuse(1043, b"08S01", "Bad handshake: data after SSLRequest"),
            )
            .await);
        }
        s.upgrade(acceptor).await?;
        first = read_packet(s, buf, max_packet).await?;
        if first.seq != 2 {
            return Err(send_refusal(s, 3, out_of_order()).await);
        }
    }
    let hello = match codec::parse_client_hello(&first.payload) {
        Ok(h) => h,
        Err(e) => {
            return Err(send_refusal(
                s,
                first.next_seq,
                refuse(1043, b"08S01", format!("Bad handshake: {e}")),
            )
            .await)
        }
    };
    let resp = match hello {
        codec::ClientHello::Response(r) => r,
        codec::ClientHello::SslRequest(_) => {
            return Err(send_refusal(
                s,
                first.next_seq,
                refuse(1043, b"08S01", "Bad handshake: a second SSLRequest"),
            )
            .await)
        }
    };
    let require_tls = cfg.mysql.as_ref().is_some_and(|m| m.require_tls);
    if require_tls && matches!(s, ClientStream::Plain(_)) {
        // MySQL's answer under require_secure_transport (a Unix socket is secure).
        return Err(send_refusal(
            s,
            first.next_seq,
            refuse(
                3159,
                b"HY000",
                "Connections using insecure transport are prohibited while \
                 --require_secure_transport=ON (switchyard: [mysql] require_tls)",
            ),
        )
        .await);
    }
    let caps = resp.caps.capabilities & offered;
    let user_name = String::from_utf8_lossy(resp.user).into_owned();
    let database = resp
        .database
        .filter(|d| !d.is_empty())
        .map(|d| String::from_utf8_lossy(d).into_owned());
    let charset = resp.caps.charset;
    let plugin = resp.auth_plugin.unwrap_or(MYSQL_NATIVE_PASSWORD).to_vec();
    let mut response = resp.auth_response.to_vec();
    // A user the config names, else one the servers know (auth_query).
    let (user, looked_up) = match cfg.user(&user_name) {
        Some(u) => (Some(u.clone()), None),
        None => match w.look_up(cfg, database.as_deref(), &user_name).await {
            Ok(found) => (found.as_ref().map(|(_, u)| (**u).clone()), found),
            Err(e) => {
                tracing::warn!(user = %user_name, error = %e, "auth_query failed");
                let msg =
                    format!("switchyard: could not look up user '{user_name}' (auth_query): {e}");
                return Err(send_refusal(s, first.next_seq, refuse(1105, b"HY000", msg)).await);
            }
        },
    };
    let from = peer.ip();
    let denied = |using_password: bool| access_denied(&user_name, from, using_password);
    let Some(user) = user else {
        return Err(send_refusal(s, first.next_seq, denied(!response.is_empty())).await);
    };
    if !user.allows(from) {
        // As a server with no account for the user at that host: before any password.
        return Err(send_refusal(s, first.next_seq, denied(!response.is_empty())).await);
    }
    let mut seq = first.next_seq;
    let full_auth = s.is_tls() || rsa.is_some();
    if plugin == CACHING_SHA2_PASSWORD && response.is_empty() && switch_to_sha2(&user, full_auth) {
        // Connector/C, asked for a plugin other than the handshake's, answers with nothing
        // and waits for an AuthSwitchRequest to it (the handshake's scramble was meant for
        // mysql_native_password): switch to caching_sha2_password with the same scramble.
        let (next, payload) =
            switch_plugin(s, buf, max_packet, seq, CACHING_SHA2_PASSWORD, &scramble).await?;
        seq = next;
        response = payload;
    }
    let denied = || denied(!response.is_empty());
    let mut native_stage1 = None;
    let ok = if user.auth == Some(AuthMethod::Cert) {
        // A verified client certificate whose common name is the user name; the password
        // response is not looked at.
        let name = s
            .peer_certificate()
            .and_then(crate::net::der::subject_common_name);
        let ok = name.as_deref() == Some(user_name.as_str());
        if !ok {
            tracing::info!(
                user = %user_name,
                certificate = ?name,
                "client certificate login refused: no certificate, or another common name"
            );
        }
        ok
    } else {
        match check(&user, &plugin, &scramble, &response, full_auth) {
            Check::Passed => {
                if plugin == MYSQL_NATIVE_PASSWORD {
                    native_stage1 = revealed_stage1(&user, &scramble, &response);
                }
                true
            }
            Check::Failed => false,
            Check::FastAuthPassed => {
                // caching_sha2_password fast path: "the scramble matched the cached hash".
                let mut more = BytesMut::new();
                codec::put_auth_more_data(&mut more, &[CACHING_SHA2_FAST_AUTH_SUCCESS]);
                seq = write_packet(s, seq, &more).await?;
                true
            }
            Check::SwitchToNative => {
                let (next, payload) =
                    switch_plugin(s, buf, max_packet, seq, MYSQL_NATIVE_PASSWORD, &scramble)
                        .await?;
                seq = next;
                native_stage1 = revealed_stage1(&user, &scramble, &payload);
                matches!(
                    check(&user, MYSQL_NATIVE_PASSWORD, &scramble, &payload, false),
                    Check::Passed
                )
            }
            Check::FullAuth => {
                // caching_sha2_password full authentication: the client sends its password, in
                // clear over TLS or RSA-encrypted without, checked against the stored
                // mysql_native_password hash.
                let mut more = BytesMut::new();
                codec::put_auth_more_data(&mut more, &[CACHING_SHA2_PERFORM_FULL_AUTH]);
                write_packet(s, seq, &more).await?;
                let Packet {
                    next_seq,
                    mut payload,
                    ..
                } = read_packet(s, buf, max_packet).await?;
                seq = next_seq;
                let password = match rsa.filter(|_| !s.is_tls()) {
                    None => Some(auth::clear_password(&payload).to_vec()),
                    Some(keys) => {
                        if payload[..] == [CACHING_SHA2_REQUEST_PUBLIC_KEY] {
                            more.clear();
                            codec::put_auth_more_data(&mut more, keys.public_pem());
                            write_packet(s, seq, &more).await?;
                            let p = read_packet(s, buf, max_packet).await?;
                            seq = p.next_seq;
                            payload = p.payload;
                        }
                        // Anything that does not decrypt (a password sent in clear on this
                        // plain connection among it) is refused like a wrong password.
                        let password = keys.decrypt_password(&scramble, &payload);
                        if password.is_none() {
                            tracing::info!(
                                user = %user_name,
                                "caching_sha2_password full authentication without TLS: the \
                                 response is not encrypted with the proxy's RSA key"
                            );
                        }
                        password
                    }
                };
                match (
                    password,
                    user.mysql_native_hash
                        .as_deref()
                        .map(NativePasswordHash::parse),
                ) {
                    (Some(pw), Some(Ok(h))) => {
                        native_stage1 = Some(auth::native_stage1(&pw));
                        h.verify_clear(&pw)
                    }
                    _ => false,
                }
            }
        }
    };
    if let Some((cluster, _)) = &looked_up {
        if ok {
            // Pools for the user where the servers see each client's own.
            w.adopt_looked_up();
        } else {
            // The hash may have changed since it was looked up: asked again next time.
            w.my.looked_up.stale(cluster, &user_name);
        }
    }
    if !ok {
        return Err(send_refusal(s, seq, denied()).await);
    }
    let Some((cluster, schema)) = pick_cluster(cfg, database.as_deref()) else {
        let db = database.unwrap_or_default();
        return Err(send_refusal(
            s,
            seq,
            refuse(
                1049,
                b"42000",
                format!("Unknown database '{db}' (no switchyard MySQL cluster serves it)"),
            ),
        )
        .await);
    };
    Ok(Login {
        user: user_name,
        caps,
        charset,
        cluster,
        schema,
        next_seq: seq,
        scramble,
        native_stage1,
        max_connections: cfg.user_connection_limit(Some(&user)),
    })
}

/// Send an AuthSwitchRequest to `plugin` with `scramble` (sequence id `seq`) and read the
/// client's answer: the sequence id of the next packet to it, and the answer. An answer out
/// of sequence is refused.
async fn switch_plugin(
    s: &mut ClientStream,
    buf: &mut BytesMut,
    max_packet: usize,
    seq: u8,
    plugin: &[u8],
    scramble: &[u8],
) -> Result<(u8, Vec<u8>), LoginError> {
    let mut sw = BytesMut::new();
    put_switch(&mut sw, plugin, scramble);
    let expected = write_packet(s, seq, &sw).await?;
    let Packet {
        seq: got,
        next_seq,
        payload,
    } = read_packet(s, buf, max_packet).await?;
    if got != expected {
        return Err(send_refusal(s, expected.wrapping_add(1), out_of_order()).await);
    }
    Ok((next_seq, payload))
}

/// ER_NET_PACKETS_OUT_OF_ORDER, as MariaDB sends it for a packet with the wrong sequence id.
pub fn out_of_order() -> Refusal {
    refuse(1156, b"08S01", "Got packets out of order")
}

async fn send_refusal<S: AsyncWrite + Unpin>(s: &mut S, seq: u8, r: Refusal) -> LoginError {
    let _ = write_packet(s, seq, &err_payload(r.code, &r.state, &r.message)).await;
    LoginError::Refused(r)
}

/// The outcome of checking one auth response.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    Passed,
    Failed,
    /// caching_sha2_password's fast path matched.
    FastAuthPassed,
    /// Ask the client for a mysql_native_password response instead.
    SwitchToNative,
    /// caching_sha2_password without the plaintext password, over TLS or with the RSA key
    /// exchange: ask for the password (AuthMoreData 0x04) and check it against the stored
    /// hash.
    FullAuth,
}

/// `full_auth`: the password can be asked for safely (TLS, or the RSA key exchange is on).
fn check(user: &User, plugin: &[u8], scramble: &[u8], response: &[u8], full_auth: bool) -> Check {
    match user.auth {
        Some(AuthMethod::Trust) => return Check::Passed,
        // Client certificates are a PostgreSQL listener's login; a password this user may
        // also have configured does not stand in for one.
        Some(AuthMethod::Cert) => return Check::Failed,
        _ => {}
    }
    let plain = user.password.as_deref().map(str::as_bytes);
    let stored = user
        .mysql_native_hash
        .as_deref()
        .and_then(|h| NativePasswordHash::parse(h).ok());
    let native = |response: &[u8]| match (plain, &stored) {
        (Some([]), _) => response.is_empty(),
        (Some(p), _) => auth::verify_native_password(p, scramble, response),
        (None, Some(h)) => h.verify(scramble, response),
        (None, None) => false,
    };
    if plugin == MYSQL_NATIVE_PASSWORD {
        return if native(response) {
            Check::Passed
        } else {
            Check::Failed
        };
    }
    if plugin == CACHING_SHA2_PASSWORD {
        if let Some(p) = plain {
            let good = if p.is_empty() {
                response.is_empty()
            } else {
                auth::verify_caching_sha2(p, scramble, response)
            };
            return if good {
                Check::FastAuthPassed
            } else {
                Check::Failed
            };
        }
        if full_auth && stored.is_some() {
            return Check::FullAuth;
        }
    }
    if plain.is_some() || stored.is_some() {
        Check::SwitchToNative
    } else {
        Check::Failed
    }
}

/// The `SHA1(password)` a right mysql_native_password `response` reveals, checked against the
/// user's mysql_native_hash.
pub fn revealed_stage1(user: &User, scramble: &[u8], response: &[u8]) -> Option<[u8; 20]> {
    NativePasswordHash::parse(user.mysql_native_hash.as_deref()?)
        .ok()?
        .stage1(scramble, response)
}

/// COM_CHANGE_USER's check, after the proxy switched the client to `mysql_native_password`
/// with `scramble`: does `response` prove `user`'s password?
pub fn change_user_passes(user: &User, scramble: &[u8], response: &[u8]) -> bool {
    matches!(
        check(user, MYSQL_NATIVE_PASSWORD, scramble, response, false),
        Check::Passed
    )
}

/// The AuthSwitchRequest to `mysql_native_password` with `scramble` (NUL-terminated).
pub fn put_switch_to_native(out: &mut BytesMut, scramble: &[u8]) {
    put_switch(out, MYSQL_NATIVE_PASSWORD, scramble)
}

/// An AuthSwitchRequest to `plugin` with `scramble` (NUL-terminated).
fn put_switch(out: &mut BytesMut, plugin: &[u8], scramble: &[u8]) {
    let mut data = scramble.to_vec();
    data.push(0);
    codec::put_auth_switch(
        out,
        &codec::AuthSwitch {
            plugin,
            data: &data,
        },
    );
}

/// A caching_sha2_password client that sent an empty response is switched to that plugin
/// when the proxy can check a caching_sha2_password answer for `user`: the user has a
/// non-empty plaintext password (fast path), or a stored hash and `full_auth` (TLS or the RSA
/// key exchange). Otherwise the empty response is checked as it is (an empty password), or
/// the client is switched to mysql_native_password.
fn switch_to_sha2(user: &User, full_auth: bool) -> bool {
    if matches!(user.auth, Some(AuthMethod::Trust | AuthMethod::Cert)) {
        return false;
    }
    match user.password.as_deref() {
        Some(p) => !p.is_empty(),
        None => full_auth && user.mysql_native_hash.is_some(),
    }
}

/// The cluster (its `database`) and server schema for a client that connected with
/// `database`.
pub fn pick_cluster(cfg: &Config, database: Option<&str>) -> Option<(String, Option<String>)> {
    let mut mysql = cfg.clusters_of(Protocol::Mysql);
    if let Some(db) = database {
        if let Some(c) = cfg.clusters_of(Protocol::Mysql).find(|c| c.database == db) {
            return Some((c.database.clone(), Some(c.backend_database().to_owned())));
        }
    }
    let default = match cfg.mysql.as_ref().and_then(|m| m.default_cluster.clone()) {
        Some(d) => d,
        None => {
            let only = mysql.next()?;
            if mysql.next().is_some() {
                return None;
            }
            only.database.clone()
        }
    };
    let schema = database.map(str::to_owned);
    Some((default, schema))
}

/// ERR 1045 as a server words it: the user at the client's host (`None`: a Unix socket).
pub(crate) fn access_denied(
    user: &str,
    from: Option<std::net::IpAddr>,
    using_password: bool,
) -> Refusal {
    let host = from.map_or("localhost".to_owned(), |ip| ip.to_string());
    let using = if using_password { "YES" } else { "NO" };
    refuse(
        1045,
        b"28000",
        format!("Access denied for user '{user}'@'{host}' (using password: {using})"),
    )
}

/// ERR 1226 for a login past `[[user]] max_connections`, in MySQL's words for an account's
/// MAX_USER_CONNECTIONS.
pub(crate) fn user_limit_err(user: &str, limit: usize) -> Vec<u8> {
    err_payload(
        1226,
        b"42000",
        &format!(
            "User '{user}' has exceeded the 'max_user_connections' resource (current value: {limit})"
        ),
    )
}

/// Serve one accepted MySQL client on this worker: limits, login within
/// `client_login_timeout`, then its session.
pub async fn handle_client(
    w: std::sync::Arc<super::worker::Worker>,
    stream: ClientStream,
    peer: crate::net::Peer,
    conn_id: u64,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let engine = w.shared.clone();
    let open = engine.clients.fetch_add(1, Relaxed) + 1;
    let _slot_count = crate::Decrement(&engine.clients);
    let (id, slot, _registered) = w.my.register();
    // The login in a box of its own, freed when it is over: inline, its states would set the
    // size of the client's task for the whole session.
    let login = Box::pin(log_in(w, stream, peer, conn_id, open, (id, slot)));
    let Some(session) = login.await else {
        return;
    };
    if let Err(e) = session.run().await {
        tracing::info!(conn = conn_id, %peer, error = %e, "mysql session ended with an error");
    }
}

/// From the greeting to a logged-in session; `None` when the client was refused (and told)
/// or left.
async fn log_in(
    w: std::sync::Arc<super::worker::Worker>,
    stream: ClientStream,
    peer: crate::net::Peer,
    conn_id: u64,
    open: usize,
    (id, slot): (u32, std::sync::Arc<super::worker::Slot>),
) -> Option<Box<super::session::Session<ClientStream>>> {
    let engine = w.shared.clone();
    let cfg = engine.config();
    let mut stream = stream;
    // TLS is not offered on a Unix socket.
    let tls = w
        .tls
        .as_ref()
        .filter(|_| matches!(stream, ClientStream::Plain(_)));
    if open > cfg.general.max_client_connections {
        engine.metrics.error("", crate::metrics::kind::CLIENT_LIMIT);
        let err = err_payload(
            1040,
            b"08004",
            &format!(
                "Too many connections (switchyard max_client_connections = {})",
                cfg.general.max_client_connections
            ),
        );
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            write_packet(&mut stream, 0, &err),
        )
        .await;
        return None;
    }
    let mut buf = BytesMut::with_capacity(1024);
    let max = cfg.general.max_message_bytes;
    let login = tokio::time::timeout(
        cfg.general.client_login_timeout,
        // Boxed: large (TLS, the auth exchanges), and inline it would stay part of the
        // connection's task for the whole session.
        Box::pin(login(&mut stream, tls, &mut buf, &cfg, &w, (id, peer), max)),
    )
    .await;
    let l = match login {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::info!(conn = conn_id, %peer, error = %e, "mysql login refused");
            if matches!(e, LoginError::Refused(ref r) if r.code == 1045) {
                engine.metrics.error("", crate::metrics::kind::AUTH_FAILED);
            }
            return None;
        }
        Err(_) => {
            let err = err_payload(
                1043,
                b"08S01",
                "Bad handshake: login did not finish within client_login_timeout",
            );
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                write_packet(&mut stream, 0, &err),
            )
            .await;
            return None;
        }
    };
    let Some(cluster) = w.clusters.load().get(&l.cluster, &l.user).cloned() else {
        let err = err_payload(1049, b"42000", &format!("Unknown database '{}'", l.cluster));
        let _ = write_packet(&mut stream, l.next_seq, &err).await;
        return None;
    };
    if cluster.state.pause.is_disabled() {
        let _ = write_packet(&mut stream, l.next_seq, &disabled_err(&cluster.database)).await;
        return None;
    }
    match engine
        .user_conns
        .admit(&std::sync::Arc::from(l.user.as_str()), l.max_connections)
    {
        Ok(c) => *slot.user_conn.lock().unwrap() = Some(c),
        Err(n) => {
            engine.metrics.error("", crate::metrics::kind::CLIENT_LIMIT);
            let err = user_limit_err(&l.user, n);
            let _ = write_packet(&mut stream, l.next_seq, &err).await;
            return None;
        }
    }
    let _ = slot.info.set(crate::engine::ClientInfo::new(
        peer,
        std::sync::Arc::from(l.user.as_str()),
        std::sync::Arc::from(cluster.database.as_str()),
    ));
    let ok = login_ok(l.caps, l.schema.as_deref());
    if write_packet(&mut stream, l.next_seq, &ok).await.is_err() {
        return None;
    }
    tracing::debug!(conn = conn_id, %peer, user = %l.user, cluster = %l.cluster, "mysql client logged in");
    if let (Some(stage1), Some(p)) = (l.native_stage1, w.my.pass_throughs.get(&l.user)) {
        // For the pools of clusters whose servers see each user, when the config has no
        // password for this one: they log in with what this login proved.
        p.learn(stage1);
    }
    slot.end.set_socket(stream.dup_socket());
    // Boxed: the session's state is reached through a pointer from the task, which stays
    // small.
    Some(Box::new(super::session::Session::new(
        w.clone(),
        cluster,
        stream,
        l,
        slot,
        buf,
    )))
}

/// The refusal of a client of a cluster disabled by `POST /disable`: MySQL 8's answer while
/// the server is in offline mode (MariaDB has no such mode), naming the cause.
pub fn disabled_err(database: &str) -> Vec<u8> {
    err_payload(
        3032,
        b"HY000",
        &format!(
            "The server is currently in offline mode (switchyard: cluster of database '{database}' disabled by POST /disable)"
        ),
    )
}

/// The OK that ends a login. A client with CLIENT_SESSION_TRACK that named a schema is told
/// of it, as the server tells it (its schema tracker is on by default).
pub fn login_ok(caps: u64, schema: Option<&str>) -> Vec<u8> {
    let Some(schema) = schema.filter(|_| caps & CLIENT_SESSION_TRACK != 0) else {
        return super::io::ok_payload(caps, SERVER_STATUS_AUTOCOMMIT);
    };
    let mut entry = BytesMut::new();
    codec::put_lenenc_bytes(&mut entry, schema.as_bytes());
    let mut state = BytesMut::new();
    state.extend_from_slice(&[codec::SESSION_TRACK_SCHEMA]);
    codec::put_lenenc_bytes(&mut state, &entry);
    let mut out = BytesMut::new();
    codec::put_ok(
        &mut out,
        &codec::OkPacket {
            header: codec::OK_HEADER,
            status: SERVER_STATUS_AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED,
            session_state: Some(&state),
            ..Default::default()
        },
        caps,
    );
    out.to_vec()
}

/// 20 random bytes for a scramble, avoiding NUL and '$' (some clients stop at NUL).
pub fn nonce() -> [u8; 20] {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut out = [0u8; 20];
    for b in &mut out {
        *b = rng.gen_range(1..=127u8);
        if *b == b'$' {
            *b = b'%';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(toml: &str) -> User {
        let cfg = Config::from_toml(&format!(
            "[mysql]\nlisten = \"127.0.0.1:0\"\n[[user]]\nname = \"u\"\n{toml}\n"
        ))
        .unwrap();
        cfg.users[0].clone()
    }

    #[test]
    fn native_and_caching_sha2_responses_are_checked() {
        let s = [7u8; 20];
        let plain = user("password = \"pw\"");
        let r = auth::native_password_scramble(b"pw", &s);
        assert_eq!(
            check(&plain, MYSQL_NATIVE_PASSWORD, &s, &r, false),
            Check::Passed
        );
        assert_eq!(
            check(&plain, MYSQL_NATIVE_PASSWORD, &s, &[1; 20], false),
            Check::Failed
        );
        let r = auth::caching_sha2_scramble(b"pw", &s);
        assert_eq!(
            check(&plain, CACHING_SHA2_PASSWORD, &s, &r, false),
            Check::FastAuthPassed
        );
        let hashed = user(&format!(
            "mysql_native_hash = \"{}\"",
            NativePasswordHash::from_password(b"pw").to_text()
        ));
        assert_eq!(
            check(&hashed, CACHING_SHA2_PASSWORD, &s, &r, false),
            Check::SwitchToNative
        );
        assert_eq!(
            check(&hashed, CACHING_SHA2_PASSWORD, &s, &r, true),
            Check::FullAuth
        );
        let r = auth::native_password_scramble(b"pw", &s);
        assert_eq!(
            check(&hashed, MYSQL_NATIVE_PASSWORD, &s, &r, false),
            Check::Passed
        );
        assert_eq!(
            check(&plain, b"sha256_password", &s, &r, false),
            Check::SwitchToNative
        );
        // A "cert" user is refused here even with the right password.
        let mut cert = plain.clone();
        cert.auth = Some(AuthMethod::Cert);
        assert_eq!(
            check(&cert, MYSQL_NATIVE_PASSWORD, &s, &r, false),
            Check::Failed
        );
        assert!(!switch_to_sha2(&cert, true));
    }

    #[test]
    fn clusters_are_picked_by_schema_then_default() {
        let cfg = Config::from_toml(
            r#"
            [mysql]
            listen = "127.0.0.1:0"
            default_cluster = "shop"
            [[cluster]]
            name = "shop"
            protocol = "mysql"
            database = "shop"
            backend_database = "shop_prod"
            primary = "127.0.0.1:3306"
            user = "s"
            [[cluster]]
            name = "crm"
            protocol = "mysql"
            database = "crm"
            primary = "127.0.0.1:3307"
            user = "s"
            "#,
        )
        .unwrap();
        assert_eq!(
            pick_cluster(&cfg, Some("crm")),
            Some(("crm".into(), Some("crm".into())))
        );
        assert_eq!(
            pick_cluster(&cfg, Some("shop")),
            Some(("shop".into(), Some("shop_prod".into())))
        );
        assert_eq!(
            pick_cluster(&cfg, Some("other")),
            Some(("shop".into(), Some("other".into())))
        );
        assert_eq!(pick_cluster(&cfg, None), Some(("shop".into(), None)));
    }
}
