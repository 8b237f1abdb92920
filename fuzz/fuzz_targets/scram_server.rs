//! Server side of SCRAM-SHA-256 and MD5 response checking, on client-chosen bytes.
//!
//! Input: byte 0 = length of the client-first-message; then client-first, then
//! client-final. The server nonce is random, so the harness replaces every `%n` in the
//! client-final with the combined nonce the server answered; that lets the fuzzer get
//! past the nonce check to the channel-binding, proof decoding and verification code. The
//! last byte picks the channel binding offered and chosen (none, declined, bound).
//!
//! The same halves also feed the client side the proxy runs with a user's keys
//! (`ScramKeyClient`, server-chosen bytes): `first` as the server-first-message, with every
//! `%n` replaced by the client's nonce, and `fin` as the server-final-message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switchyard::pg::auth::{
    md5_response_from_stored, md5_stored_hash, verify_md5_response, AuthError, ChannelBinding,
    ScramKeyClient, ScramKeys, ScramServer, ScramVerifier,
};

const NONCE_MARK: &[u8] = b"%n";

fn verifier() -> &'static ScramVerifier {
    static V: OnceLock<ScramVerifier> = OnceLock::new();
    V.get_or_init(|| ScramVerifier::from_password("pw"))
}

fn md5_stored() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| md5_stored_hash("u", "pw"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&at, rest)) = data.split_first() else {
        return;
    };
    let (first, fin) = rest.split_at((at as usize).min(rest.len()));

    // The last byte picks what was offered and chosen of channel binding.
    let cb = match data.last().map_or(0, |b| b % 3) {
        0 => ChannelBinding::NotOffered,
        1 => ChannelBinding::Declined,
        _ => ChannelBinding::TlsServerEndPoint(vec![0xab; 32]),
    };
    let mut server = ScramServer::new(verifier().clone()).with_channel_binding(cb);
    match server.handle_client_first(first) {
        Ok(server_first) => {
            assert!(server_first.starts_with(b"r="));
            let nonce = &server_first[2..server_first.iter().position(|&b| b == b',').unwrap()];
            let fin = replace(fin, NONCE_MARK, nonce);
            match server.handle_client_final(&fin) {
                Ok(server_final) => assert!(server_final.starts_with(b"v=")),
                Err(AuthError::Malformed(_)) | Err(AuthError::WrongPassword) => {}
            }
            // The exchange is over either way.
            assert!(server.handle_client_final(&fin).is_err());
        }
        Err(_) => assert!(server.handle_client_final(fin).is_err()),
    }
    assert!(server.handle_client_first(first).is_err());

    // A fresh server must refuse a client-final first.
    let mut fresh = ScramServer::new(verifier().clone());
    assert!(fresh.handle_client_final(rest).is_err());

    if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(v) = ScramVerifier::parse(text) {
            assert!(v.iterations >= 1 && !v.salt.is_empty());
            // to_text is the inverse of parse up to base64 canonicalization and whitespace.
            assert_eq!(ScramVerifier::parse(&v.to_text()).as_ref(), Ok(&v));
        }
        let salt = salt(data);
        let _ = verify_md5_response(text, salt, rest);
        if let Some(expected) = md5_response_from_stored(text, salt) {
            assert!(verify_md5_response(text, salt, expected.as_bytes()));
        }
    }
    let _ = verify_md5_response(md5_stored(), salt(data), rest);

    let v = verifier();
    let keys = ScramKeys {
        iterations: v.iterations,
        salt: v.salt.clone(),
        client_key: [7; 32],
        server_key: v.server_key,
    };
    let mut client = ScramKeyClient::new(keys, b"n,,", Vec::new());
    let own = client.client_first();
    let nonce = &own[own.len() - 24..];
    assert!(client.verify_server_final(fin).is_err(), "nothing to verify yet");
    if let Ok(answer) = client.client_final(&replace(first, NONCE_MARK, nonce)) {
        assert!(answer.starts_with(b"c=biws,r="));
        let _ = client.verify_server_final(fin);
    }
});

fn salt(data: &[u8]) -> [u8; 4] {
    let mut s = [0u8; 4];
    for (d, b) in s.iter_mut().zip(data) {
        *d = *b;
    }
    s
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}
