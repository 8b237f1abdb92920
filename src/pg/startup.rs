//! From accept to a logged-in session: SSL/GSS negotiation, cancel requests, the startup
//! packet, client authentication, and the login messages.

use super::auth::{self, ScramServer, ScramVerifier};
use super::codec::{self, Startup};
use super::session::Session;
use crate::config::AuthMethod;
use crate::net::tls::ClientStream;
use crate::net::Peer;
use crate::pg::worker::Worker;
use bytes::{Buf, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest message accepted from a client before it has logged in.
const MAX_LOGIN_MESSAGE: usize = 16 * 1024;

/// A login that failed, with what the client is told.
#[derive(Debug)]
struct Refusal {
    code: &'static str,
    message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Serve one accepted client connection to the end.
pub async fn handle_client(worker: Arc<Worker>, stream: ClientStream, peer: Peer, conn_id: u64) {
    let shared = worker.shared.clone();
    let open = shared.clients.fetch_add(1, Ordering::Relaxed) + 1;
    let _slot = crate::Decrement(&shared.clients);
    // The login in a box of its own, freed when it is over: inline, its states (the refusals,
    // the login's locals) would set the size of the client's task for the whole session.
    let login = Box::pin(log_in(worker, stream, peer, conn_id, open));
    let Some(Ready {
        session,
        out,
        user_conn: _user_conn,
    }) = login.await
    else {
        return;
    };
    if let Err(e) = session.run(out).await {
        tracing::info!(conn = conn_id, %peer, error = %e, "session ended with an error");
    }
}

/// A client that logged in: its session, the login's last messages for it, and its place
/// in its user's connection count.
struct Ready {
    session: Box<Session<ClientStream>>,
    out: BytesMut,
    user_conn: crate::engine::UserConn,
}

/// From the first byte to a logged-in session; `None` when the client was refused (and
/// told) or left.
async fn log_in(
    worker: Arc<Worker>,
    stream: ClientStream,
    peer: Peer,
    conn_id: u64,
    open: usize,
) -> Option<Ready> {
    let shared = worker.shared.clone();
    let config = shared.config();
    let general = &config.general;
    let over_limit = open > general.max_client_connections;
    let mut buf = BytesMut::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + general.client_login_timeout;
    let mut tcp = stream;
    // The login's futures are boxed: they are large (TLS, SCRAM), and inline they would
    // stay part of the connection's task for the whole session.
    let negotiated =
        tokio::time::timeout_at(deadline, Box::pin(negotiate(&worker, &mut tcp, &mut buf))).await;
    let (mut stream, first) = match negotiated {
        Ok(Ok(Some(Negotiated::Plain(Startup::Startup { .. }))))
            if worker.require_tls && matches!(tcp, ClientStream::Plain(_)) =>
        {
            let r = refuse(
                "28000",
                "switchyard: TLS required (require_tls): connect with sslmode=require or stronger",
            );
            shared.metrics.error("", crate::metrics::kind::AUTH_FAILED);
            refuse_client(&mut tcp, r, conn_id, peer).await;
            return None;
        }
        Ok(Ok(Some(Negotiated::Plain(p)))) => (tcp, p),
        Ok(Ok(Some(Negotiated::StartTls))) => {
            match tokio::time::timeout_at(deadline, Box::pin(start_tls(&worker, tcp, &mut buf)))
                .await
            {
                Ok(Some((s, Ok(p)))) => (s, p),
                Ok(Some((mut s, Err(r)))) => {
                    refuse_client(&mut s, r, conn_id, peer).await;
                    return None;
                }
                _ => return None,
            }
        }
        Ok(Ok(None)) => return None,
        Ok(Err(r)) => {
            refuse_client(&mut tcp, r, conn_id, peer).await;
            return None;
        }
        Err(_) => {
            let r = refuse(
                "08006",
                "switchyard: login did not finish within client_login_timeout",
            );
            refuse_client(&mut tcp, r, conn_id, peer).await;
            return None;
        }
    };
    let login = tokio::time::timeout_at(
        deadline,
        Box::pin(login(
            &worker,
            &mut stream,
            &mut buf,
            first,
            (over_limit, peer),
        )),
    )
    .await;
    let refusal = match login {
        Ok(Ok(Some(l))) => 'logged_in: {
            if l.cluster.state.pause.is_disabled() {
                // As PostgreSQL answers for a database with ALLOW_CONNECTIONS false: after
                // authentication.
                let _ = stream.write_all(&l.out).await;
                break 'logged_in refuse(
                    "55000",
                    format!(
                        "database \"{}\" is not currently accepting connections (switchyard: disabled by POST /disable)",
                        l.cluster.database
                    ),
                );
            }
            let user_conn = match shared.user_conns.admit(&l.user, l.max_connections) {
                Ok(c) => c,
                Err(n) => {
                    // As PostgreSQL checks a role's CONNECTION LIMIT: after authentication
                    // (the SCRAM exchange's last message goes first).
                    let _ = stream.write_all(&l.out).await;
                    break 'logged_in refuse(
                        "53300",
                        format!(
                            "too many connections for role \"{}\" (switchyard max_connections = {n})",
                            l.user
                        ),
                    );
                }
            };
            let key = worker.pg.cancel.issue(crate::engine::ClientInfo::new(
                peer,
                l.user.clone(),
                Arc::from(l.cluster.database.as_str()),
            ));
            let (pid, secret) = (key.pid, key.secret);
            key.slot.end.set_socket(stream.dup_socket());
            // Boxed: the session's state is reached through a pointer from the task, which
            // stays small (see `net::bufs` for what an idle client holds).
            let mut session = Box::new(Session::new(
                worker.clone(),
                (l.cluster, l.user),
                stream,
                l.wanted,
                key,
                buf,
            ));
            let mut out = l.out;
            let params = match Box::pin(session.login()).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!(conn = conn_id, %peer, error = %e, "no backend for new client");
                    session.refuse_login(&e).await;
                    return None;
                }
            };
            codec::put_auth(&mut out, 0, &[]);
            for (k, v) in params {
                codec::put_parameter_status(&mut out, &k, &v);
            }
            codec::put_backend_key(&mut out, pid, secret);
            codec::put_ready(&mut out, b'I');
            tracing::debug!(conn = conn_id, %peer, "client logged in");
            return Some(Ready {
                session,
                out,
                user_conn,
            });
        }
        Ok(Ok(None)) => return None,
        Ok(Err(r)) => r,
        Err(_) => refuse(
            "08006",
            "switchyard: login did not finish within client_login_timeout",
        ),
    };
    let kind = match refusal.code {
        "28P01" | "28000" => Some(crate::metrics::kind::AUTH_FAILED),
        "53300" => Some(crate::metrics::kind::CLIENT_LIMIT),
        "08P01" => Some(crate::metrics::kind::CLIENT_PROTOCOL),
        _ => None,
    };
    if let Some(kind) = kind {
        shared.metrics.error("", kind);
    }
    refuse_client(&mut stream, refusal, conn_id, peer).await;
    None
}

async fn refuse_client<S: AsyncWrite + Unpin>(
    stream: &mut S,
    r: Refusal,
    conn_id: u64,
    peer: Peer,
) {
    tracing::info!(conn = conn_id, %peer, code = r.code, reason = %r.message, "login refused");
    let mut out = BytesMut::new();
    codec::put_error(&mut out, "FATAL", r.code, &r.message);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(&out).await?;
        stream.flush().await
    })
    .await;
}

/// Where the plain-text part of negotiation ended.
enum Negotiated {
    /// The first real startup-phase packet, on the plain connection.
    Plain(Startup),
    /// The client asked for TLS and was told yes: the handshake comes next.
    StartTls,
}

/// SSL and GSS negotiation on the plain connection.
async fn negotiate(
    worker: &Worker,
    tcp: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<Option<Negotiated>, Refusal> {
    // No TLS on a Unix socket, as PostgreSQL has none there.
    let tls = worker.tls.is_some() && matches!(tcp, ClientStream::Plain(_));
    loop {
        match read_startup(tcp, buf).await? {
            None => return Ok(None),
            Some(Startup::Ssl) if tls => {
                if !buf.is_empty() {
                    // Bytes sent before the handshake could come from a third party.
                    return Err(refuse("08P01", "data received before the TLS handshake"));
                }
                tcp.write_all(b"S")
                    .await
                    .map_err(|e| refuse("08006", e.to_string()))?;
                return Ok(Some(Negotiated::StartTls));
            }
            Some(Startup::Ssl) | Some(Startup::GssEnc) => {
                tcp.write_all(b"N")
                    .await
                    .map_err(|e| refuse("08006", e.to_string()))?;
            }
            Some(p) => return Ok(Some(Negotiated::Plain(p))),
        }
    }
}

/// TLS handshake, then the first startup packet inside TLS.
async fn start_tls(
    worker: &Worker,
    plain: ClientStream,
    buf: &mut BytesMut,
) -> Option<(ClientStream, Result<Startup, Refusal>)> {
    let acceptor = worker.tls.clone()?;
    let ClientStream::Plain(tcp) = plain else {
        return None;
    };
    let tls = acceptor.accept(tcp).await.ok()?;
    let mut stream = ClientStream::Tls(Box::new(tls));
    let first = match read_startup(&mut stream, buf).await {
        Ok(Some(Startup::Ssl | Startup::GssEnc)) => {
            Err(refuse("08P01", "encryption request inside TLS"))
        }
        Ok(Some(p)) => Ok(p),
        Ok(None) => return None,
        Err(r) => Err(r),
    };
    Some((stream, first))
}

/// Read one startup-phase packet.
async fn read_startup<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<Option<Startup>, Refusal> {
    loop {
        match codec::decode_startup(buf) {
            Ok(Some((m, used))) => {
                buf.advance(used);
                return Ok(Some(m));
            }
            Ok(None) => {}
            Err(e) => return Err(refuse("08P01", format!("invalid startup packet: {e}"))),
        }
        if s.read_buf(buf)
            .await
            .map_err(|e| refuse("08006", e.to_string()))?
            == 0
        {
            return Ok(None);
        }
    }
}

/// Read one tagged message of the login phase (password, SASL).
async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<(u8, Vec<u8>), Refusal> {
    loop {
        match codec::header(buf, MAX_LOGIN_MESSAGE) {
            Ok(Some(h)) if buf.len() >= h.wire_len => {
                let body = buf[5..h.wire_len].to_vec();
                buf.advance(h.wire_len);
                return Ok((h.tag, body));
            }
            Ok(_) => {}
            Err(e) => return Err(refuse("08P01", format!("invalid message: {e}"))),
        }
        if s.read_buf(buf)
            .await
            .map_err(|e| refuse("08006", e.to_string()))?
            == 0
        {
            return Err(refuse("08006", "client closed the connection during login"));
        }
    }
}

/// Who logged in and what they asked for.
struct LoggedIn {
    cluster: Arc<crate::pg::worker::ClusterPools>,
    user: Arc<str>,
    /// The user's `max_connections`.
    max_connections: Option<usize>,
    wanted: Arc<Vec<(String, String)>>,
    /// Messages already due to the client (the SCRAM final message).
    out: BytesMut,
}

async fn login(
    worker: &Arc<Worker>,
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    first: Startup,
    (over_limit, peer): (bool, Peer),
) -> Result<Option<LoggedIn>, Refusal> {
    let shared = &worker.shared;
    let params = match first {
        Startup::Cancel { pid, secret } => {
            if let Some(route) = worker.pg.cancel.lookup(pid, secret) {
                route.cancel(Duration::from_secs(5)).await;
            } else if !worker.pg.cancel.issued_here(pid) {
                // A client of the process this one took over from, still draining.
                let relayed = crate::engine::Relayed::PgCancel { pid, secret };
                shared.lineage.relay(relayed).await;
            }
            return Ok(None);
        }
        Startup::Startup { params } => params,
        Startup::Ssl | Startup::GssEnc => {
            return Err(refuse("08P01", "unexpected encryption request"))
        }
    };
    let max = shared.config().general.max_client_connections;
    if over_limit {
        return Err(refuse(
            "53300",
            format!("sorry, too many clients already (switchyard max_client_connections = {max})"),
        ));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = get("user").ok_or_else(|| {
        refuse(
            "28000",
            "no PostgreSQL user name specified in startup packet",
        )
    })?;
    let database = get("database").filter(|d| !d.is_empty()).unwrap_or(user);
    if get("replication").is_some_and(|r| r != "false" && r != "off" && r != "0") {
        return Err(refuse(
            "08P01",
            "switchyard does not proxy replication connections",
        ));
    }
    let cfg = shared.config();
    // A user the config names, else one the servers know (auth_query): a user they do not
    // know goes through the same exchange against a verifier nothing matches.
    let configured = cfg.user(user);
    let from = peer.ip();
    if configured.is_some_and(|u| !u.allows(from)) {
        // As a server with no pg_hba.conf line for the client: before any password.
        let host = from.map_or("[local]".to_owned(), |ip| ip.to_string());
        return Err(refuse(
            "28000",
            format!(
                "no allow_from entry for host \"{host}\", user \"{user}\", database \"{database}\" (switchyard)"
            ),
        ));
    }
    let looked_up = match configured {
        Some(_) => None,
        None => Some(look_up(worker, &cfg, database, user).await?),
    };
    let unknown;
    let (u, verifier) = match (configured, &looked_up) {
        (Some(u), _) => (u, worker.pg.verifiers.load().get(user)),
        (None, Some((_, Some(found)))) => (&found.user, found.verifier.clone()),
        (None, _) => {
            unknown = crate::config::User {
                auth: Some(AuthMethod::ScramSha256),
                ..crate::config::User::named(user)
            };
            let mock = Arc::new(super::auth_query::mock_verifier());
            (&unknown, Some(mock))
        }
    };
    let mut out = BytesMut::with_capacity(512);
    // SCRAM-SHA-256-PLUS is offered over TLS with a certificate that has an end point.
    let end_point = worker.tls_end_point.as_deref().filter(|_| stream.is_tls());
    let cert_name = stream
        .peer_certificate()
        .map(|c| crate::net::der::subject_common_name(c).ok_or(()));
    let tls = LoginTls {
        end_point,
        cert_name,
    };
    let authenticated = authenticate(stream, buf, &mut out, (user, u), verifier, tls).await;
    if let Some((cluster, found)) = &looked_up {
        match &authenticated {
            // The verifier may have changed since it was looked up: asked again next time.
            Err(_) => worker.pg.looked_up.stale(cluster, user),
            // Pools for the user where the servers see each client's own.
            Ok(_) if found.is_some() => worker.adopt_looked_up(),
            Ok(_) => {}
        }
    }
    if let Some(keys) = authenticated? {
        // For the pools of clusters whose servers see each user (when it has no password
        // for them): they log in with what this login proved.
        if let Some(p) = worker.pg.pass_throughs.get(user) {
            p.learn(keys);
        }
    }
    let Some(cluster) = worker.clusters.load().get(database, user).cloned() else {
        if worker.clusters.load().serves(database) {
            // A reload removed the user since it was checked.
            return Err(refuse(
                "28000",
                format!("switchyard: no such user \"{user}\""),
            ));
        }
        return Err(refuse(
            "3D000",
            format!("database \"{database}\" does not exist (no switchyard cluster serves it)"),
        ));
    };
    let wanted = Arc::new(client_settings(&params)?);
    Ok(Some(LoggedIn {
        cluster,
        user: Arc::from(user),
        max_connections: cfg.user_connection_limit(configured),
        wanted,
        out,
    }))
}

/// Ask the servers of the cluster serving `database` about `user` (`auth_query`): the
/// cluster's name and what they said (`None`: no such user, or none with a password). Refused
/// where the cluster does not look users up, or when its servers could not be asked.
async fn look_up(
    worker: &Worker,
    cfg: &crate::config::Config,
    database: &str,
    user: &str,
) -> Result<(String, Option<Arc<super::auth_query::Found>>), Refusal> {
    let no_such_user = || refuse("28000", format!("switchyard: no such user \"{user}\""));
    let c = cfg
        .clusters_of(crate::config::Protocol::Postgres)
        .find(|c| c.database == database && c.auth_query.is_some())
        .ok_or_else(no_such_user)?;
    let state = worker.shared.clusters.load().get(&c.database).cloned();
    let state = state.ok_or_else(no_such_user)?;
    let metrics = &worker.shared.metrics;
    match super::auth_query::lookup(&worker.pg.looked_up, metrics, cfg, c, &state, user).await {
        Ok(found) => Ok((c.name.clone(), found)),
        Err(e) => {
            tracing::warn!(cluster = %c.name, user, error = %e, "auth_query failed");
            Err(refuse(
                "08006",
                format!("switchyard: could not look up user \"{user}\" (auth_query): {e}"),
            ))
        }
    }
}

/// What the TLS session brings to a login: the channel-binding end point SCRAM-SHA-256-PLUS
/// may use, and the common name of the client certificate the handshake verified (`Err` for
/// a certificate without a readable one).
struct LoginTls<'a> {
    end_point: Option<&'a [u8]>,
    cert_name: Option<Result<String, ()>>,
}

/// Run the configured authentication exchange; on success nothing is written yet for
/// AuthenticationOk (the caller sends it with the login messages). A SCRAM login gives the
/// keys its proof revealed.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    (name, user): (&str, &crate::config::User),
    verifier: Option<Arc<ScramVerifier>>,
    tls: LoginTls<'_>,
) -> Result<Option<auth::ScramKeys>, Refusal> {
    let end_point = tls.end_point;
    let failed = || {
        refuse(
            "28P01",
            format!("password authentication failed for user \"{name}\""),
        )
    };
    let io = |e: std::io::Error| refuse("08006", e.to_string());
    match user.effective_auth() {
        Some(AuthMethod::Trust) => Ok(None),
        // As PostgreSQL's `cert` method: a verified certificate whose CN is the user name.
        Some(AuthMethod::Cert) => match tls.cert_name {
            None => Err(refuse(
                "28000",
                "connection requires a valid client certificate",
            )),
            Some(Ok(cn)) if cn == name => Ok(None),
            Some(cn) => Err(refuse(
                "28000",
                format!(
                    "certificate authentication failed for user \"{name}\": the certificate's \
                     common name is {}",
                    cn.map_or_else(
                        |()| "missing or unreadable".to_owned(),
                        |cn| format!("{cn:?}")
                    )
                ),
            )),
        },
        Some(AuthMethod::Md5) => {
            let stored = match (&user.md5_hash, &user.password) {
                (Some(h), _) => h.clone(),
                (None, Some(p)) => auth::md5_stored_hash(name, p),
                (None, None) => return Err(failed()),
            };
            let salt = auth::md5_salt();
            out.clear();
            codec::put_auth(out, 5, &salt);
            s.write_all(out).await.map_err(io)?;
            let (tag, body) = read_message(s, buf).await?;
            if tag != b'p' {
                return Err(refuse("08P01", "expected a password message"));
            }
            out.clear();
            if auth::verify_md5_response(&stored, salt, &body) {
                Ok(None)
            } else {
                Err(failed())
            }
        }
        Some(AuthMethod::ScramSha256) => {
            // Derived when the config was loaded (see `app::Verifiers`).
            let verifier = verifier.ok_or_else(failed)?;
            out.clear();
            match end_point {
                Some(_) => {
                    codec::put_auth_sasl(out, &[auth::SCRAM_SHA_256_PLUS, auth::SCRAM_SHA_256])
                }
                None => codec::put_auth_sasl(out, &[auth::SCRAM_SHA_256]),
            }
            s.write_all(out).await.map_err(io)?;
            let (tag, body) = read_message(s, buf).await?;
            let (mechanism, data) = sasl_initial(tag, &body)
                .ok_or_else(|| refuse("08P01", "malformed SASLInitialResponse"))?;
            let cb = match (mechanism, end_point) {
                (auth::SCRAM_SHA_256, None) => auth::ChannelBinding::NotOffered,
                (auth::SCRAM_SHA_256, Some(_)) => auth::ChannelBinding::Declined,
                (auth::SCRAM_SHA_256_PLUS, Some(data)) => {
                    auth::ChannelBinding::TlsServerEndPoint(data.to_vec())
                }
                _ => {
                    return Err(refuse(
                        "08P01",
                        format!(
                        "client selected an invalid SASL authentication mechanism {mechanism:?}"
                    ),
                    ))
                }
            };
            let mut server = ScramServer::new((*verifier).clone()).with_channel_binding(cb);
            let first = server
                .handle_client_first(data)
                .map_err(|e| scram_refusal(e, &failed))?;
            out.clear();
            codec::put_auth(out, 11, &first);
            s.write_all(out).await.map_err(io)?;
            let (tag, body) = read_message(s, buf).await?;
            if tag != b'p' {
                return Err(refuse("08P01", "expected a SASLResponse"));
            }
            let last = server
                .handle_client_final(&body)
                .map_err(|e| scram_refusal(e, &failed))?;
            out.clear();
            codec::put_auth(out, 12, &last);
            Ok(server.client_keys())
        }
        None => Err(failed()),
    }
}

fn scram_refusal(e: auth::AuthError, failed: &dyn Fn() -> Refusal) -> Refusal {
    match e {
        auth::AuthError::WrongPassword => failed(),
        other => refuse("08P01", format!("SCRAM: {other}")),
    }
}

/// SASLInitialResponse: mechanism, Int32 length, data.
fn sasl_initial(tag: u8, body: &[u8]) -> Option<(&str, &[u8])> {
    if tag != b'p' {
        return None;
    }
    let (mech, rest) = codec::cstr(body)?;
    if rest.len() < 4 {
        return None;
    }
    let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let data = &rest[4..];
    (len >= 0 && len as usize == data.len()).then_some((mech, data))
}

/// Startup parameters that are settings to carry to every backend connection, sorted.
fn client_settings(params: &[(String, String)]) -> Result<Vec<(String, String)>, Refusal> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: &str| -> Result<(), Refusal> {
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(refuse(
                "42704",
                format!("invalid configuration parameter name \"{k}\""),
            ));
        }
        crate::pg::backend::set_param(&mut out, &k.to_ascii_lowercase(), v);
        Ok(())
    };
    for (k, v) in params {
        match k.as_str() {
            "user" | "database" | "replication" => {}
            "options" => {
                // "-c name=value" pairs (also "--name=value"), separated by spaces.
                let mut words = v.split_ascii_whitespace();
                while let Some(w) = words.next() {
                    let kv = if w == "-c" {
                        words.next().unwrap_or("")
                    } else if let Some(rest) = w.strip_prefix("-c").or_else(|| w.strip_prefix("--"))
                    {
                        rest
                    } else {
                        return Err(refuse(
                            "08P01",
                            format!("unsupported option \"{w}\" in options"),
                        ));
                    };
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        refuse("08P01", format!("option \"{kv}\" is not name=value"))
                    })?;
                    put(&k.replace('-', "_"), v)?;
                }
            }
            _ => put(k, v)?,
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_exclude_identity_and_parse_options() {
        let s = client_settings(&p(&[
            ("user", "u"),
            ("database", "d"),
            ("application_name", "psql"),
            ("options", "-c search_path=x --statement-timeout=5s"),
        ]))
        .unwrap();
        assert_eq!(
            s,
            p(&[
                ("application_name", "psql"),
                ("search_path", "x"),
                ("statement_timeout", "5s")
            ])
        );
        assert!(client_settings(&p(&[("bad;name", "x")])).is_err());
        assert!(client_settings(&p(&[("options", "-X")])).is_err());
    }

    #[test]
    fn sasl_initial_checks_length() {
        let mut b = b"SCRAM-SHA-256\0".to_vec();
        b.extend_from_slice(&3i32.to_be_bytes());
        b.extend_from_slice(b"abc");
        assert_eq!(sasl_initial(b'p', &b), Some(("SCRAM-SHA-256", &b"abc"[..])));
        assert_eq!(sasl_initial(b'p', &b[..b.len() - 1]), None);
        assert_eq!(sasl_initial(b'Q', &b), None);
    }
}
