//! The connection phase as a client, packet by packet (no I/O).

use super::{MyConnectError, BACKEND_CAPABILITIES, BACKEND_CHARSET, MAX_PACKET_ANNOUNCED};
use crate::config::BackendAddr;
use crate::mysql::auth;
use crate::mysql::codec::{self, Kind, Phase, ProtocolError};
use crate::mysql::codec::{
    CLIENT_CONNECT_WITH_DB, CLIENT_LONG_PASSWORD, CLIENT_PLUGIN_AUTH, CLIENT_PROTOCOL_41,
    CLIENT_SECURE_CONNECTION, CLIENT_SSL,
};
use crate::net::backend_tls::Wish;
use bytes::BytesMut;

/// Who logs in.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub user: &'a str,
    pub password: &'a [u8],
    /// Without a password: `SHA1(password)`, which answers mysql_native_password only.
    pub native_stage1: Option<[u8; 20]>,
    pub database: Option<&'a str>,
}

/// Why a login failed, before the address is known to the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    Refused {
        code: u16,
        message: String,
    },
    Protocol(String),
    /// TLS required and not offered.
    Tls(String),
    /// Nothing to answer the server's authentication with (see `MyConnectError::Credentials`).
    Credentials(String),
}

impl LoginError {
    pub(super) fn into_connect_error(self, addr: BackendAddr) -> MyConnectError {
        match self {
            LoginError::Refused { code, message } => MyConnectError::Refused {
                addr,
                code,
                message,
            },
            LoginError::Protocol(what) => MyConnectError::Protocol { addr, what },
            LoginError::Tls(what) => MyConnectError::Tls { addr, what },
            LoginError::Credentials(what) => MyConnectError::Credentials { addr, what },
        }
    }
}

fn protocol(what: impl Into<String>) -> LoginError {
    LoginError::Protocol(what.into())
}

fn bad(e: ProtocolError) -> LoginError {
    LoginError::Protocol(e.to_string())
}

/// What to send first, from [`Login::start`].
#[derive(Debug)]
pub enum Opening {
    /// The HandshakeResponse41 (one whole packet).
    Response(BytesMut),
    /// The SSLRequest packet: send it, run the TLS handshake, then send
    /// [`Login::after_tls`].
    Tls(BytesMut),
}

/// What the login state machine wants next.
#[derive(Debug)]
pub enum LoginStep {
    /// Write these bytes (one whole packet, header included), then read the next packet.
    Send(BytesMut),
    /// Read the next packet.
    Wait,
    /// Logged in.
    Done(LoggedIn),
}

/// What the server told about itself and the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    pub connection_id: u32,
    pub server_version: String,
    pub mariadb: bool,
    pub capabilities: u64,
    pub status: u16,
    /// A schema reported by session tracking in the login OK.
    pub schema: Option<String>,
}

/// The connection phase as a client, packet by packet (no I/O): [`Login::start`] with the
/// server's handshake gives the HandshakeResponse41; [`Login::on_packet`] with each further
/// server packet gives what to send or that the login is done.
pub struct Login {
    password: Vec<u8>,
    native_stage1: Option<[u8; 20]>,
    /// Expected sequence id of the next server packet.
    next_seq: u8,
    info: LoggedIn,
    /// Plugin whose data was sent last.
    plugin: Vec<u8>,
    switched: bool,
    /// The scramble the last plugin data answered (for the RSA key exchange).
    scramble: Vec<u8>,
    /// caching_sha2_password full authentication: the server's public key was asked for.
    key_requested: bool,
    /// The connection is encrypted (full authentication sends the password as it is).
    tls: bool,
    /// The HandshakeResponse41 held back until the TLS handshake is done.
    after_tls: Option<BytesMut>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("next_seq", &self.next_seq)
            .field("plugin", &String::from_utf8_lossy(&self.plugin))
            .finish()
    }
}

/// The first response of `plugin` for `password` (or `stage1`, which answers
/// mysql_native_password only) and `scramble`; `None` for a plugin this client does not speak.
fn auth_response(
    plugin: &[u8],
    password: &[u8],
    stage1: Option<&[u8; 20]>,
    scramble: &[u8],
) -> Option<Vec<u8>> {
    if let Some(stage1) = stage1.filter(|_| password.is_empty()) {
        return (plugin == codec::MYSQL_NATIVE_PASSWORD)
            .then(|| auth::native_scramble_from_stage1(stage1, scramble).to_vec());
    }
    if password.is_empty()
        && (plugin == codec::MYSQL_NATIVE_PASSWORD || plugin == codec::CACHING_SHA2_PASSWORD)
    {
        return Some(Vec::new());
    }
    if plugin == codec::MYSQL_NATIVE_PASSWORD {
        Some(auth::native_password_scramble(password, scramble).to_vec())
    } else if plugin == codec::CACHING_SHA2_PASSWORD {
        Some(auth::caching_sha2_scramble(password, scramble).to_vec())
    } else {
        None
    }
}

impl Login {
    /// Start from the server's first packet (`seq`, `payload`): the HandshakeResponse41 to
    /// send, or first an SSLRequest when `tls` asks for it and the server offers it. An ERR
    /// instead of a handshake (too many connections, host blocked) is a refusal.
    pub fn start(
        creds: Credentials<'_>,
        tls: Wish,
        seq: u8,
        payload: &[u8],
    ) -> Result<(Login, Opening), LoginError> {
        match codec::classify(payload, Phase::Handshake, 0) {
            Kind::Handshake => {}
            Kind::Err => return Err(refusal(payload)),
            _ => return Err(protocol("first packet is not a handshake")),
        }
        let h = codec::parse_handshake(payload).map_err(bad)?;
        let required = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;
        if h.capabilities & required != required {
            return Err(protocol(
                "server lacks CLIENT_PROTOCOL_41 or CLIENT_SECURE_CONNECTION (pre-4.1 server)",
            ));
        }
        let mut wanted = BACKEND_CAPABILITIES;
        if creds.database.is_some() {
            wanted |= CLIENT_CONNECT_WITH_DB;
        }
        // Bit 0 is CLIENT_LONG_PASSWORD to MySQL and "no MariaDB extensions" to MariaDB,
        // which clears it in its own flags: set it whatever the server says.
        let encrypt = match tls {
            Wish::Off => false,
            _ if h.capabilities & CLIENT_SSL != 0 => true,
            Wish::IfOffered => false,
            Wish::Required => {
                return Err(LoginError::Tls(
                    "the server does not offer TLS, which the cluster's tls setting requires"
                        .into(),
                ))
            }
        };
        if encrypt {
            wanted |= CLIENT_SSL;
        }
        let caps = (wanted & h.capabilities & 0xFFFF_FFFF) | CLIENT_LONG_PASSWORD;
        let scramble = h.scramble();
        // The server's default plugin if spoken here, else mysql_native_password (the server
        // switches to the account's plugin if that is another).
        let offered = h.auth_plugin.unwrap_or(codec::MYSQL_NATIVE_PASSWORD);
        let stage1 = creds.native_stage1.as_ref();
        let (plugin, data) = match auth_response(offered, creds.password, stage1, &scramble) {
            Some(d) => (offered, d),
            None => (
                codec::MYSQL_NATIVE_PASSWORD,
                auth_response(
                    codec::MYSQL_NATIVE_PASSWORD,
                    creds.password,
                    stage1,
                    &scramble,
                )
                .unwrap_or_default(),
            ),
        };
        let resp = codec::HandshakeResponse {
            caps: codec::ClientCaps {
                capabilities: caps,
                max_packet_size: MAX_PACKET_ANNOUNCED,
                charset: BACKEND_CHARSET,
            },
            user: creds.user.as_bytes(),
            auth_response: &data,
            database: creds.database.map(str::as_bytes),
            auth_plugin: (caps & CLIENT_PLUGIN_AUTH != 0).then_some(plugin),
            connect_attrs: None,
            zstd_level: None,
        };
        let mut body = BytesMut::with_capacity(128);
        codec::put_handshake_response(&mut body, &resp);
        let mut seq = codec::next_seq(seq);
        let mut ssl_request = None;
        if encrypt {
            // An SSLRequest is the response's first 32 bytes: capabilities, maximum packet
            // size, character set and the zero filler.
            let mut out = BytesMut::with_capacity(32 + codec::HEADER_LEN);
            seq = codec::write_packet(&mut out, seq, &body[..32]);
            ssl_request = Some(out);
        }
        let mut out = BytesMut::with_capacity(body.len() + codec::HEADER_LEN);
        let next_seq = codec::write_packet(&mut out, seq, &body);
        let mut login = Login {
            password: creds.password.to_vec(),
            native_stage1: creds.native_stage1,
            next_seq,
            info: LoggedIn {
                connection_id: h.connection_id,
                server_version: String::from_utf8_lossy(h.version()).into_owned(),
                mariadb: h.is_mariadb(),
                capabilities: caps,
                status: h.status,
                schema: None,
            },
            plugin: plugin.to_vec(),
            switched: false,
            scramble: scramble.to_vec(),
            key_requested: false,
            tls: encrypt,
            after_tls: None,
        };
        let opening = match ssl_request {
            Some(request) => {
                login.after_tls = Some(out);
                Opening::Tls(request)
            }
            None => Opening::Response(out),
        };
        Ok((login, opening))
    }

    /// The HandshakeResponse41 to send once the TLS handshake that [`Opening::Tls`] asked
    /// for is done (empty if none was asked for).
    pub fn after_tls(&mut self) -> BytesMut {
        self.after_tls.take().unwrap_or_default()
    }

    /// The next server packet of the authentication exchange.
    pub fn on_packet(&mut self, seq: u8, payload: &[u8]) -> Result<LoginStep, LoginError> {
        if seq != self.next_seq {
            return Err(protocol(format!(
                "packet sequence id {seq}, expected {}",
                self.next_seq
            )));
        }
        self.next_seq = codec::next_seq(seq);
        let caps = self.info.capabilities;
        match codec::classify(payload, Phase::Auth, caps) {
            Kind::Ok => {
                let ok = codec::parse_ok(payload, caps).map_err(bad)?;
                self.info.status = ok.status;
                if let Some(state) = ok.session_state {
                    for change in codec::session_changes(state) {
                        if let codec::SessionChange::Schema(s) = change.map_err(bad)? {
                            self.info.schema = Some(String::from_utf8_lossy(s).into_owned());
                        }
                    }
                }
                Ok(LoginStep::Done(self.info.clone()))
            }
            Kind::Err => Err(refusal(payload)),
            Kind::AuthSwitch => {
                if self.switched {
                    return Err(protocol("second authentication switch request"));
                }
                self.switched = true;
                let s = codec::parse_auth_switch(payload).map_err(bad)?;
                let scramble = auth::scramble_from_auth_data(s.data);
                let stage1 = self.native_stage1.as_ref();
                let data =
                    auth_response(s.plugin, &self.password, stage1, scramble).ok_or_else(|| {
                        match stage1 {
                            // The password is not known: only mysql_native_password can be
                            // answered (from what the client's own login proved).
                            Some(_) if self.password.is_empty() => {
                                LoginError::Credentials(format!(
                            "the server asks for authentication plugin {}, which needs the \
                             password; the proxy has only the user's mysql_native_password \
                             hash (give the user a server_password)",
                            String::from_utf8_lossy(s.plugin)
                        ))
                            }
                            _ => protocol(format!(
                                "server asks for authentication plugin {}, which backend logins \
                             do not support (use mysql_native_password or caching_sha2_password)",
                                String::from_utf8_lossy(s.plugin)
                            )),
                        }
                    })?;
                self.plugin = s.plugin.to_vec();
                self.scramble = scramble.to_vec();
                Ok(LoginStep::Send(self.send(&data)))
            }
            Kind::AuthMoreData => {
                let data = codec::parse_auth_more_data(payload).map_err(bad)?;
                if self.plugin != codec::CACHING_SHA2_PASSWORD {
                    return Err(protocol("unexpected AuthMoreData"));
                }
                if self.key_requested {
                    // The server's public key: send the password encrypted with it.
                    self.key_requested = false;
                    let sealed = auth::rsa_encrypt_password(data, &self.scramble, &self.password)
                        .map_err(|e| {
                        protocol(format!("caching_sha2_password key exchange: {e}"))
                    })?;
                    return Ok(LoginStep::Send(self.send(&sealed)));
                }
                match data {
                    [codec::CACHING_SHA2_FAST_AUTH_SUCCESS] => Ok(LoginStep::Wait),
                    // Full authentication (the server has no cached hash): over TLS the
                    // password itself, NUL-terminated.
                    [codec::CACHING_SHA2_PERFORM_FULL_AUTH] if self.tls => {
                        let mut p = self.password.clone();
                        p.push(0);
                        Ok(LoginStep::Send(self.send(&p)))
                    }
                    // Without TLS, ask for the server's RSA public key.
                    [codec::CACHING_SHA2_PERFORM_FULL_AUTH] => {
                        self.key_requested = true;
                        Ok(LoginStep::Send(
                            self.send(&[codec::CACHING_SHA2_REQUEST_PUBLIC_KEY]),
                        ))
                    }
                    _ => Err(protocol("unexpected caching_sha2_password data")),
                }
            }
            _ => Err(protocol("unexpected packet during authentication")),
        }
    }

    /// One packet with `data`, numbered after the server's last.
    fn send(&mut self, data: &[u8]) -> BytesMut {
        let mut out = BytesMut::with_capacity(data.len() + codec::HEADER_LEN);
        self.next_seq = codec::write_packet(&mut out, self.next_seq, data);
        out
    }
}

/// The login refusal in an ERR packet.
fn refusal(payload: &[u8]) -> LoginError {
    match codec::parse_err(payload) {
        Ok(e) => LoginError::Refused {
            code: e.code,
            message: String::from_utf8_lossy(e.message).into_owned(),
        },
        Err(e) => bad(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, ok, payload};
    use super::*;
    use crate::mysql::codec::*;

    const SCRAMBLE: &[u8; 20] = b"abcdefghij0123456789";
    const PASSWORD: &[u8] = b"secret";

    fn handshake(plugin: &[u8], caps: u64) -> Vec<u8> {
        payload(|b| {
            put_handshake(
                b,
                &Handshake {
                    server_version: b"5.5.5-10.11.6-MariaDB",
                    connection_id: 42,
                    auth_data_1: &SCRAMBLE[..8],
                    capabilities: caps,
                    charset: 45,
                    status: SERVER_STATUS_AUTOCOMMIT,
                    auth_data_len: 21,
                    auth_data_2: &SCRAMBLE[8..],
                    auth_plugin: Some(plugin),
                },
            )
        })
    }

    /// What a MariaDB 10.11 server offers (CLIENT_MYSQL clear, some extended flags).
    const MARIADB_CAPS: u64 =
        (0xF7FE | 0x81BF_0000) | MARIADB_CLIENT_PROGRESS | MARIADB_CLIENT_STMT_BULK_OPERATIONS;

    /// [`Login::start`] without TLS: the HandshakeResponse41.
    fn start(
        creds: Credentials<'_>,
        seq: u8,
        payload: &[u8],
    ) -> Result<(Login, BytesMut), LoginError> {
        let (login, opening) = Login::start(creds, Wish::Off, seq, payload)?;
        match opening {
            Opening::Response(out) => Ok((login, out)),
            Opening::Tls(_) => panic!("TLS was not asked for"),
        }
    }

    fn creds(db: Option<&'static str>) -> Credentials<'static> {
        Credentials {
            user: "switchyard",
            password: PASSWORD,
            native_stage1: None,
            database: db,
        }
    }

    /// The response packet `out` (one packet): its sequence id and parsed body.
    fn sent(out: &BytesMut) -> (u8, Vec<u8>) {
        let f = frame(out, usize::MAX).unwrap().unwrap();
        assert_eq!(f.wire_len, out.len(), "one packet");
        (f.seq, f.payload(out).into_owned())
    }

    #[test]
    fn tls_is_asked_for_before_the_response() {
        let with_ssl = 0xFFFF_FFFF;
        let (mut login, opening) = Login::start(
            creds(Some("db")),
            Wish::IfOffered,
            0,
            &handshake(CACHING_SHA2_PASSWORD, with_ssl),
        )
        .unwrap();
        let Opening::Tls(request) = opening else {
            panic!("no SSLRequest")
        };
        let (seq, body) = sent(&request);
        assert_eq!((seq, body.len()), (1, 32));
        let caps = parse_ssl_request(&body).unwrap();
        assert_ne!(caps.capabilities & CLIENT_SSL, 0);
        let (seq, body) = sent(&login.after_tls());
        assert_eq!(seq, 2);
        let resp = parse_handshake_response(&body).unwrap();
        assert_eq!(
            resp.caps.capabilities, caps.capabilities,
            "the same flags twice"
        );
        assert_eq!(resp.user, b"switchyard");
        // Full authentication over TLS: the password itself, no key exchange.
        let full = payload(|b| put_auth_more_data(b, &[CACHING_SHA2_PERFORM_FULL_AUTH]));
        let LoginStep::Send(out) = login.on_packet(3, &full).unwrap() else {
            panic!("no password")
        };
        assert_eq!(sent(&out), (4, b"secret\0".to_vec()));
        assert!(matches!(
            login
                .on_packet(5, &ok(SERVER_STATUS_AUTOCOMMIT, caps.capabilities))
                .unwrap(),
            LoginStep::Done(_)
        ));

        // A server without TLS: plain when preferred, refused when required.
        let plain = handshake(MYSQL_NATIVE_PASSWORD, with_ssl & !CLIENT_SSL);
        let (_, opening) = Login::start(creds(None), Wish::IfOffered, 0, &plain).unwrap();
        let Opening::Response(out) = opening else {
            panic!("TLS against a server without it")
        };
        let (_, body) = sent(&out);
        assert_eq!(
            parse_handshake_response(&body).unwrap().caps.capabilities & CLIENT_SSL,
            0
        );
        match Login::start(creds(None), Wish::Required, 0, &plain) {
            Err(LoginError::Tls(m)) => assert!(m.contains("does not offer TLS"), "{m}"),
            r => panic!("{:?}", r.map(|_| ())),
        }
        // Not asked for: never, even when offered.
        let offered = handshake(MYSQL_NATIVE_PASSWORD, with_ssl);
        let (_, opening) = Login::start(creds(None), Wish::Off, 0, &offered).unwrap();
        assert!(matches!(opening, Opening::Response(_)));
    }

    #[test]
    fn native_password_login() {
        let (mut login, out) = start(
            creds(Some("app")),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        let (seq, body) = sent(&out);
        assert_eq!(seq, 1);
        let resp = parse_handshake_response(&body).unwrap();
        let caps = resp.caps.capabilities;
        for flag in [
            CLIENT_PROTOCOL_41,
            CLIENT_SECURE_CONNECTION,
            CLIENT_PLUGIN_AUTH,
            CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
            CLIENT_TRANSACTIONS,
            CLIENT_MULTI_STATEMENTS,
            CLIENT_MULTI_RESULTS,
            CLIENT_PS_MULTI_RESULTS,
            CLIENT_SESSION_TRACK,
            CLIENT_CONNECT_WITH_DB,
            CLIENT_MYSQL,
        ] {
            assert!(caps & flag != 0, "{flag:#x} missing");
        }
        for flag in [
            CLIENT_DEPRECATE_EOF,
            CLIENT_LOCAL_FILES,
            CLIENT_FOUND_ROWS,
            CLIENT_SSL,
            MARIADB_CLIENT_PROGRESS,
        ] {
            assert!(caps & flag == 0, "{flag:#x} set");
        }
        assert_eq!(resp.caps.charset, CHARSET_UTF8MB4_GENERAL_CI);
        assert_eq!(resp.user, b"switchyard");
        assert_eq!(resp.database, Some(&b"app"[..]));
        assert_eq!(resp.auth_plugin, Some(MYSQL_NATIVE_PASSWORD));
        assert!(auth::verify_native_password(
            PASSWORD,
            SCRAMBLE,
            resp.auth_response
        ));
        let done = match login
            .on_packet(2, &ok(SERVER_STATUS_AUTOCOMMIT, caps))
            .unwrap()
        {
            LoginStep::Done(d) => d,
            s => panic!("{s:?}"),
        };
        assert_eq!(done.connection_id, 42);
        assert_eq!(done.server_version, "10.11.6-MariaDB");
        assert!(done.mariadb);
        assert_eq!(done.capabilities, caps);
        assert_eq!(done.status, SERVER_STATUS_AUTOCOMMIT);
    }

    #[test]
    fn auth_switch_to_native_password_uses_the_new_scramble() {
        // The server's default is a plugin not spoken here: the client answers with native
        // password anyway, the server switches (to native password, with a fresh scramble).
        let (mut login, out) =
            start(creds(None), 0, &handshake(b"client_ed25519", MARIADB_CAPS)).unwrap();
        let (_, body) = sent(&out);
        let resp = parse_handshake_response(&body).unwrap();
        assert_eq!(resp.auth_plugin, Some(MYSQL_NATIVE_PASSWORD));
        assert_eq!(resp.database, None);
        assert!(resp.caps.capabilities & CLIENT_CONNECT_WITH_DB == 0);
        let fresh = b"ZYXWVUTSRQ9876543210";
        let switch = payload(|b| {
            put_auth_switch(
                b,
                &AuthSwitch {
                    plugin: MYSQL_NATIVE_PASSWORD,
                    data: &[&fresh[..], &[0]].concat(),
                },
            )
        });
        let out = match login.on_packet(2, &switch).unwrap() {
            LoginStep::Send(out) => out,
            s => panic!("{s:?}"),
        };
        let (seq, body) = sent(&out);
        assert_eq!(seq, 3);
        assert!(auth::verify_native_password(PASSWORD, fresh, &body));
        assert!(!auth::verify_native_password(PASSWORD, SCRAMBLE, &body));
        // A second switch is refused; the OK ends the login.
        let caps = resp.caps.capabilities;
        assert!(matches!(
            login.on_packet(4, &ok(0, caps)).unwrap(),
            LoginStep::Done(_)
        ));
        let (mut login, _) = start(
            creds(None),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        assert!(matches!(
            login.on_packet(2, &switch),
            Ok(LoginStep::Send(_))
        ));
        assert!(matches!(
            login.on_packet(4, &switch),
            Err(LoginError::Protocol(_))
        ));
    }

    #[test]
    fn caching_sha2_fast_path_and_refusals() {
        let mysql8 = 0xFFFF_FFFF & !CLIENT_SSL;
        let (mut login, out) =
            start(creds(None), 0, &handshake(CACHING_SHA2_PASSWORD, mysql8)).unwrap();
        let (_, body) = sent(&out);
        let resp = parse_handshake_response(&body).unwrap();
        assert_eq!(resp.auth_plugin, Some(CACHING_SHA2_PASSWORD));
        assert!(auth::verify_caching_sha2(
            PASSWORD,
            SCRAMBLE,
            resp.auth_response
        ));
        let fast = payload(|b| put_auth_more_data(b, &[CACHING_SHA2_FAST_AUTH_SUCCESS]));
        assert!(matches!(
            login.on_packet(2, &fast).unwrap(),
            LoginStep::Wait
        ));
        let caps = resp.caps.capabilities;
        assert!(matches!(
            login
                .on_packet(3, &ok(SERVER_STATUS_AUTOCOMMIT, caps))
                .unwrap(),
            LoginStep::Done(_)
        ));
        // Full authentication: the public key is asked for and the password sent encrypted
        // with it, for the server to decrypt with its private key.
        let (mut login, _) =
            start(creds(None), 0, &handshake(CACHING_SHA2_PASSWORD, mysql8)).unwrap();
        let full = payload(|b| put_auth_more_data(b, &[CACHING_SHA2_PERFORM_FULL_AUTH]));
        let LoginStep::Send(out) = login.on_packet(2, &full).unwrap() else {
            panic!("no key request")
        };
        assert_eq!(sent(&out), (3, vec![CACHING_SHA2_REQUEST_PUBLIC_KEY]));
        let keys = auth::RsaKeys::generate().unwrap();
        let key = payload(|b| put_auth_more_data(b, keys.public_pem()));
        let LoginStep::Send(out) = login.on_packet(4, &key).unwrap() else {
            panic!("no encrypted password")
        };
        let (seq, sealed) = sent(&out);
        assert_eq!(seq, 5);
        assert_eq!(
            keys.decrypt_password(SCRAMBLE, &sealed).as_deref(),
            Some(PASSWORD)
        );
        assert!(matches!(
            login
                .on_packet(6, &ok(SERVER_STATUS_AUTOCOMMIT, caps))
                .unwrap(),
            LoginStep::Done(_)
        ));
        // A key packet that is not a key: a clear error.
        let (mut login, _) =
            start(creds(None), 0, &handshake(CACHING_SHA2_PASSWORD, mysql8)).unwrap();
        login.on_packet(2, &full).unwrap();
        let junk = payload(|b| put_auth_more_data(b, b"not a key"));
        match login.on_packet(4, &junk) {
            Err(LoginError::Protocol(m)) => assert!(m.contains("key exchange"), "{m}"),
            r => panic!("{r:?}"),
        }
        // A switch to a plugin not spoken here, or to the clear-text one.
        for plugin in [MYSQL_CLEAR_PASSWORD, CLIENT_ED25519] {
            let (mut login, _) = start(
                creds(None),
                0,
                &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
            )
            .unwrap();
            let switch = payload(|b| {
                put_auth_switch(
                    b,
                    &AuthSwitch {
                        plugin,
                        data: b"x\0",
                    },
                )
            });
            match login.on_packet(2, &switch) {
                Err(LoginError::Protocol(m)) => assert!(m.contains("plugin"), "{m}"),
                r => panic!("{r:?}"),
            }
        }
    }

    #[test]
    fn refusals_and_protocol_errors() {
        let (mut login, _) = start(
            creds(None),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        assert_eq!(
            login.on_packet(2, &err(1045, "Access denied")).unwrap_err(),
            LoginError::Refused {
                code: 1045,
                message: "Access denied".into()
            }
        );
        // Too many connections: ERR instead of a handshake.
        let e = start(creds(None), 0, &err(1040, "Too many connections")).unwrap_err();
        assert!(matches!(e, LoginError::Refused { code: 1040, .. }));
        // Wrong sequence id, unexpected packets, a pre-4.1 server.
        let (mut login, _) = start(
            creds(None),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        assert!(login.on_packet(5, &ok(0, CLIENT_PROTOCOL_41)).is_err());
        let (mut login, _) = start(
            creds(None),
            0,
            &handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS),
        )
        .unwrap();
        assert!(login.on_packet(2, b"\x42hello").is_err());
        assert!(start(creds(None), 0, &handshake(MYSQL_NATIVE_PASSWORD, 0x0200)).is_err());
        assert!(start(creds(None), 0, b"").is_err());
    }

    #[test]
    fn login_never_panics_on_cut_or_random_bytes() {
        let hs = handshake(MYSQL_NATIVE_PASSWORD, MARIADB_CAPS);
        for cut in 0..hs.len() {
            let _ = start(creds(None), 0, &hs[..cut]);
        }
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = p.first_mut() {
                *b = [0x00, 0x01, 0xFE, 0xFF, 0x0A][(next() % 5) as usize];
            }
            let _ = start(creds(None), 0, &p);
            let (mut login, _) = start(creds(None), 0, &hs).unwrap();
            let _ = login.on_packet(2, &p);
        }
    }
}
