//! The MySQL connection phase, unframed: the input is one payload, read as every
//! connection-phase packet (handshake v10, HandshakeResponse41 / SSLRequest, AuthSwitch,
//! AuthMoreData) and as OK / ERR with session tracking, under capability sets that include
//! one taken from the input's first byte (which picks flags from a table) so the parsers'
//! flag-dependent layouts are explored with the same bytes.
//!
//! Properties: no panic; every parse that succeeds is rebuilt and parses back to the same
//! value; derived views (scramble, version without MariaDB prefix, session changes,
//! connect attributes) are consistent with the parsed fields.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::mysql::auth;
use switchyard::mysql::codec::*;

/// Flags a capability set is assembled from, one per bit of the selector byte.
const FLAG_TABLE: [u64; 8] = [
    CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS,
    CLIENT_SESSION_TRACK,
    CLIENT_DEPRECATE_EOF,
    CLIENT_LONG_PASSWORD, // set: MySQL; clear: MariaDB extension present
    MARIADB_CLIENT_PROGRESS,
    CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH,
    CLIENT_CONNECT_ATTRS | CLIENT_CONNECT_WITH_DB,
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT_ZSTD_COMPRESSION_ALGORITHM,
];

fuzz_target!(|data: &[u8]| {
    let selected = data.first().map_or(0, |&sel| {
        FLAG_TABLE
            .iter()
            .enumerate()
            .filter(|(i, _)| sel & (1 << i) != 0)
            .fold(0, |acc, (_, f)| acc | f)
    });
    let all41 = CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_SESSION_TRACK;
    for caps in [
        selected,
        all41,
        all41 | CLIENT_DEPRECATE_EOF | MARIADB_CLIENT_PROGRESS,
    ] {
        ok_err(data, caps);
    }
    // The selector byte is also part of the payload: parse with and without it.
    handshake(data);
    client(data);
    auth(data);
    if let Some(rest) = data.get(1..) {
        handshake(rest);
        client(rest);
        for caps in [selected, all41] {
            ok_err(rest, caps);
        }
    }
});

fn built(f: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut b = BytesMut::new();
    f(&mut b);
    b
}

fn handshake(p: &[u8]) {
    let Ok(h) = parse_handshake(p) else { return };
    assert_eq!(p[0], 10);
    assert_eq!(h.auth_data_1.len(), 8);
    let scramble = h.scramble();
    assert!(scramble.len() <= 8 + h.auth_data_2.len());
    assert!(h.version().len() <= h.server_version.len());
    if !has_mariadb_extension(h.capabilities) {
        assert_eq!(h.capabilities >> 32, 0);
    }
    assert_eq!(
        h.auth_plugin.is_some(),
        h.capabilities & CLIENT_PLUGIN_AUTH != 0
    );
    let again = built(|b| put_handshake(b, &h));
    assert_eq!(parse_handshake(&again), Ok(h));
    assert_eq!(classify(&again, Phase::Handshake, 0), Kind::Handshake);
}

fn client(p: &[u8]) {
    match parse_client_hello(p) {
        Ok(ClientHello::SslRequest(c)) => {
            assert_ne!(c.capabilities & CLIENT_SSL, 0);
            let again = built(|b| put_ssl_request(b, &c));
            assert_eq!(again.len(), SSL_REQUEST_LEN);
            assert_eq!(parse_client_hello(&again), Ok(ClientHello::SslRequest(c)));
        }
        Ok(ClientHello::Response(r)) => {
            let flags = r.caps.capabilities;
            assert_ne!(flags & CLIENT_PROTOCOL_41, 0);
            assert!(!r.user.contains(&0));
            assert_eq!(r.database.is_some(), flags & CLIENT_CONNECT_WITH_DB != 0);
            if flags & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA == 0
                && flags & CLIENT_SECURE_CONNECTION != 0
            {
                assert!(r.auth_response.len() <= 255);
            }
            let again = built(|b| put_handshake_response(b, &r));
            assert_eq!(parse_handshake_response(&again), Ok(r));
            if let Some(attrs) = r.connect_attrs {
                for kv in connect_attrs(attrs) {
                    kv.expect("validated by the parser");
                }
            }
        }
        Err(_) => {}
    }
    if let Ok(c) = parse_ssl_request(p) {
        assert_eq!(p.len(), SSL_REQUEST_LEN);
        assert_eq!(parse_ssl_request(&built(|b| put_ssl_request(b, &c))), Ok(c));
    }
}

fn auth(p: &[u8]) {
    if let Ok(sw) = parse_auth_switch(p) {
        assert!(!sw.plugin.contains(&0));
        let again = built(|b| put_auth_switch(b, &sw));
        assert_eq!(parse_auth_switch(&again), Ok(sw));
        assert_eq!(classify(&again, Phase::Auth, 0), Kind::AuthSwitch);
    }
    if let Ok(d) = parse_auth_more_data(p) {
        let again = built(|b| put_auth_more_data(b, d));
        assert_eq!(parse_auth_more_data(&again), Ok(d));
        assert_eq!(classify(&again, Phase::Auth, 0), Kind::AuthMoreData);
        // caching_sha2_password's key exchange: the data as a server's public key (the
        // proxy as a backend client), and as a client's encrypted password (the proxy as a
        // server): errors, never a panic; what decrypts came from a ciphertext of key size.
        let _ = auth::rsa_encrypt_password(d, b"01234567890123456789", b"pw");
        let keys = rsa_keys();
        let mut sized = d.to_vec();
        sized.resize(keys.size(), 0);
        for c in [d, &sized[..]] {
            if keys.decrypt_password(b"01234567890123456789", c).is_some() {
                assert_eq!(c.len(), keys.size());
            }
        }
    }
}

/// One key for the whole run (generating one takes far longer than an iteration).
fn rsa_keys() -> &'static auth::RsaKeys {
    static KEYS: std::sync::OnceLock<auth::RsaKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| auth::RsaKeys::generate().unwrap())
}

fn ok_err(p: &[u8], caps: u64) {
    if let Ok(ok) = parse_ok(p, caps) {
        if ok.session_state.is_some() {
            assert_ne!(caps & CLIENT_SESSION_TRACK, 0);
            assert_ne!(ok.status & SERVER_SESSION_STATE_CHANGED, 0);
        }
        let again = built(|b| put_ok(b, &ok, caps));
        assert_eq!(parse_ok(&again, caps), Ok(ok));
        for change in session_changes(ok.session_state.unwrap_or_default()) {
            let Ok(change) = change else { break };
            let one = built(|b| put_session_change(b, &change));
            assert_eq!(session_changes(&one).next(), Some(Ok(change)));
        }
    }
    if let Ok(err) = parse_err(p) {
        if let Some(state) = err.sql_state {
            assert_eq!(p.get(3), Some(&b'#'));
            assert_eq!(p.get(4..9), Some(&state[..]));
        }
        assert_eq!(parse_err(&built(|b| put_err(b, &err))), Ok(err));
        let kind = classify(p, Phase::Response, caps);
        assert!(kind == Kind::Err || kind == Kind::Progress);
    }
    if let Ok(pr) = parse_progress(p) {
        assert_eq!(parse_progress(&built(|b| put_progress(b, &pr))), Ok(pr));
    }
}
