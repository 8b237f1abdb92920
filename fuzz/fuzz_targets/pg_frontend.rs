//! Frontend (client -> proxy) framing and the message bodies the proxy decodes.
//!
//! Mirrors `Session::process_client`: read a header, stop at an error or an incomplete
//! message, otherwise decode the body by tag and advance. Each decoded message is also
//! re-encoded the way the proxy rewrites it (statement names replaced) and decoded again.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::pg::codec::{self, header, Header};
use switchyard::router::session_state;

/// Bounds the proxy uses: smallest allowed `general.max_message_bytes`, the login-phase
/// limit, and the default `max_message_bytes`.
const MAXES: [usize; 3] = [1024, 16 * 1024, 64 << 20];

fuzz_target!(|data: &[u8]| {
    for max in MAXES {
        frame_all(data, max);
    }
});

fn frame_all(mut buf: &[u8], max: usize) {
    loop {
        let h = match header(buf, max) {
            Ok(Some(h)) => h,
            Ok(None) => {
                assert!(buf.len() < 5, "no header although 5 bytes are there");
                return;
            }
            Err(_) => return,
        };
        check_header(buf, h, max);
        if buf.len() < h.wire_len {
            return; // incomplete: the proxy would read more
        }
        decode(h.tag, &buf[5..h.wire_len]);
        buf = &buf[h.wire_len..];
    }
}

fn check_header(buf: &[u8], h: Header, max: usize) {
    assert!(h.wire_len >= 5, "wire_len {} < 5", h.wire_len);
    assert!(h.wire_len <= max + 1, "wire_len {} > max+1 ({max})", h.wire_len);
    assert_eq!(h.tag, buf[0]);
    assert_eq!(h.body_len(), h.wire_len - 5);
}

fn decode(tag: u8, body: &[u8]) {
    match tag {
        b'Q' => {
            if let Ok(sql) = codec::query_msg(body) {
                assert_eq!(sql.len() + 1, body.len());
                effect(sql);
            }
        }
        b'P' => {
            if let Ok(p) = codec::parse_msg(body) {
                assert_eq!(
                    p.name.len() + p.query.len() + 2 + p.param_types.len(),
                    body.len()
                );
                assert!(p.param_types.len() >= 2 && (p.param_types.len() - 2) % 4 == 0);
                effect(p.query);
                // The proxy re-sends Parse under its own statement name.
                let mut out = BytesMut::new();
                codec::put_parse(&mut out, b"sy_1", p.query, p.param_types);
                let again = codec::parse_msg(reframe(&out, b'P')).expect("re-encoded Parse");
                assert_eq!(
                    (again.name, again.query, again.param_types),
                    (&b"sy_1"[..], p.query, p.param_types)
                );
            }
        }
        b'B' => {
            if let Ok(b) = codec::bind_msg(body) {
                assert_eq!(
                    b.portal.len() + b.statement.len() + 2 + b.rest.len(),
                    body.len()
                );
                assert!(!b.portal.contains(&0) && !b.statement.contains(&0));
                // The counts the proxy checks in a failed transaction: read within the body.
                if let Some((formats, _params)) = codec::bind_counts(b.rest) {
                    assert!(2 + 2 * formats as usize + 2 <= b.rest.len());
                }
                let mut out = BytesMut::new();
                codec::put_bind(&mut out, &b, b"sy_1");
                let again = codec::bind_msg(reframe(&out, b'B')).expect("re-encoded Bind");
                assert_eq!(
                    (again.portal, again.statement, again.rest),
                    (b.portal, &b"sy_1"[..], b.rest)
                );
            }
        }
        b'D' | b'C' => {
            if let Ok((kind, name)) = codec::target_msg(body) {
                assert!(kind == b'S' || kind == b'P');
                assert_eq!(name.len() + 2, body.len());
                let mut out = BytesMut::new();
                codec::put_target(&mut out, tag, kind, b"sy_1");
                let again = codec::target_msg(reframe(&out, tag)).expect("re-encoded target");
                assert_eq!(again, (kind, &b"sy_1"[..]));
            }
        }
        _ => {}
    }
}

/// Frames a message the proxy built and returns its body, checking the header.
fn reframe(out: &[u8], tag: u8) -> &[u8] {
    let h = header(out, usize::MAX)
        .expect("proxy-built header")
        .expect("complete header");
    assert_eq!((h.tag, h.wire_len), (tag, out.len()));
    &out[5..]
}

fn effect(sql: &[u8]) {
    if let Ok(text) = std::str::from_utf8(sql) {
        let _ = session_state::effect(text);
        // A Query the proxy may answer itself (SQL DEALLOCATE of a protocol statement).
        if let Some(name) = switchyard::pg::prepared::deallocate_target(text) {
            assert!(!name.is_empty());
            assert!(!text.contains(';') || text.trim_end().ends_with(';') || text.contains('"'));
            assert!(!name.eq_ignore_ascii_case("all") || text.contains('"'));
        }
    }
}
