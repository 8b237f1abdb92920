//! The proxy's side of a backend MySQL / MariaDB connection, I/O-free: the login state
//! machine (`Login`: handshake, auth switch, caching_sha2 more-data, OK / ERR) and the
//! command answer reader (`Response`: OK, ERR, text result sets, multi-results, session
//! tracking), fed with server packets cut from the input.
//!
//! Input: byte 0 picks capability flags for `Response` and whether the login asks for TLS
//! (never, if offered, always); then packets, each a length byte and
//! that many payload bytes (the last one takes what is left). Login packets carry the sequence
//! id the login expects unless the length byte's top bit says otherwise.
//!
//! The whole input is also the session state information of an OK packet, filtered for a
//! client that tracks some of it.
//!
//! Properties: no panic; every packet `Login` asks to send is one whole packet whose sequence
//! id follows the server's (after an SSLRequest, the response that follows it); once the login or the answer is over, feeding more is refused
//! (never a second ending).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::mysql::backend::{Credentials, Fed, Login, LoginStep, Opening, Response};
use switchyard::mysql::backend::BACKEND_CAPABILITIES;
use switchyard::mysql::codec::{frame, CLIENT_DEPRECATE_EOF, CLIENT_SESSION_TRACK};
use switchyard::mysql::session::ClientTracking;
use switchyard::net::backend_tls::Wish;

const CREDS: [Credentials<'static>; 3] = [
    Credentials {
        user: "app",
        password: b"secret",
        native_stage1: None,
        database: Some("db"),
    },
    Credentials {
        user: "",
        password: b"",
        native_stage1: None,
        database: None,
    },
    // A login passed through: SHA1(password) learned from the client, no password.
    Credentials {
        user: "app",
        password: b"",
        native_stage1: Some([7; 20]),
        database: Some("db"),
    },
];

/// Cut `data` into (flag, payload) packets.
fn packets(mut data: &[u8]) -> Vec<(bool, &[u8])> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let n = usize::from(len & 0x7f).min(rest.len());
        let n = if out.len() == 15 { rest.len() } else { n };
        out.push((len & 0x80 != 0, &rest[..n]));
        data = &rest[n..];
    }
    out
}

/// The sequence id of the one whole packet in `out`.
fn sent_seq(out: &[u8]) -> u8 {
    let f = frame(out, usize::MAX)
        .expect("the login sends well-formed packets")
        .expect("a whole packet");
    assert_eq!(f.wire_len, out.len(), "exactly one packet");
    f.seq
}

fn login(creds: Credentials<'static>, tls: Wish, packets: &[(bool, &[u8])]) {
    let Some(((_, first), rest)) = packets.split_first() else {
        return;
    };
    let Ok((mut login, opening)) = Login::start(creds, tls, 0, first) else {
        return;
    };
    let out = match opening {
        Opening::Response(out) => {
            assert!(login.after_tls().is_empty(), "a response held back without TLS");
            out
        }
        Opening::Tls(request) => {
            assert_ne!(tls, Wish::Off, "TLS asked for against the settings");
            let out = login.after_tls();
            assert_eq!(sent_seq(&out), sent_seq(&request).wrapping_add(1));
            out
        }
    };
    let mut next = sent_seq(&out).wrapping_add(1);
    let mut done = false;
    for &(wrong, p) in rest {
        let seq = if wrong { next.wrapping_add(7) } else { next };
        match login.on_packet(seq, p) {
            Ok(LoginStep::Send(out)) => {
                assert!(!done, "a login sent more after it was done");
                next = sent_seq(&out).wrapping_add(1);
            }
            Ok(LoginStep::Wait) => {
                assert!(!done, "a login waited after it was done");
                next = seq.wrapping_add(1);
            }
            Ok(LoginStep::Done(_)) => {
                assert!(!done, "a login ended twice");
                done = true;
            }
            Err(_) => return,
        }
    }
}

fn answer(caps: u64, packets: &[(bool, &[u8])]) {
    let mut r = Response::new(caps);
    let mut ended = false;
    for &(_, p) in packets {
        match r.feed(p) {
            Ok(Fed::More) => assert!(!ended, "an answer went on after it ended"),
            Ok(Fed::Done(_)) | Ok(Fed::Failed(_)) => {
                assert!(!ended, "an answer ended twice");
                ended = true;
            }
            Err(_) => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let packets = packets(rest);
    let tls = [Wish::Off, Wish::IfOffered, Wish::Required][usize::from(sel >> 2) % 3];
    for creds in CREDS {
        login(creds, tls, &packets);
    }
    let mut caps = BACKEND_CAPABILITIES;
    if sel & 1 != 0 {
        caps |= CLIENT_DEPRECATE_EOF;
    }
    if sel & 2 == 0 {
        caps &= !CLIENT_SESSION_TRACK;
    }
    answer(caps, &packets);
    tracking(rest);
});

/// The session state a tracking client is told of (`ClientTracking::filter`) on the raw
/// input: never longer than what the server said, and all of it when the client tracks
/// everything.
fn tracking(state: &[u8]) {
    let mut t = ClientTracking::default();
    assert!(t.filter(state).len() <= state.len());
    t.note("session_track_system_variables", "*");
    t.note("session_track_state_change", "ON");
    assert_eq!(t.filter(state), state);
}
