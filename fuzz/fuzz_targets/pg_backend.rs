//! Backend (server -> proxy) framing plus the bodies the proxy reads: ErrorResponse /
//! NoticeResponse fields and ParameterStatus.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::pg::codec::{self, header};

/// `MAX_STARTUP_MESSAGE` in src/pg/backend.rs and `MAX_BACKEND_MESSAGE` in
/// src/pg/session.rs, plus a small bound so over-long lengths are exercised too.
const MAXES: [usize; 3] = [1024, 1 << 20, (1 << 30) + 64];

/// SQLSTATE, message, severity (localized and not), detail, and codes that never occur.
const FIELDS: [u8; 8] = [b'C', b'M', b'S', b'V', b'D', b'H', 0, 0xff];

fuzz_target!(|data: &[u8]| {
    for max in MAXES {
        let mut buf = data;
        loop {
            let h = match header(buf, max) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    assert!(buf.len() < 5);
                    break;
                }
                Err(_) => break,
            };
            assert!(h.wire_len >= 5 && h.wire_len <= max + 1, "{h:?} max {max}");
            assert_eq!(h.tag, buf[0]);
            if buf.len() < h.wire_len {
                break;
            }
            body(&buf[5..h.wire_len]);
            buf = &buf[h.wire_len..];
        }
    }
    // The decoders also run on the raw input, whatever the framing says.
    body(data);
});

fn body(body: &[u8]) {
    for code in FIELDS {
        if let Some(v) = codec::error_field(body, code) {
            assert!(code != 0, "field code 0 is the terminator");
            assert!(v.len() + 2 <= body.len());
            assert!(!v.contains('\0'));
            assert!(within(body, v.as_bytes()));
        }
    }
    // An error rewritten for the client (a proxy statement name replaced by the client's):
    // well framed, each field as edited, the others as they were.
    if codec::edit_error(body, |_, _| None).is_some() {
        panic!("nothing edited, yet a new message");
    }
    if let Some(out) = codec::edit_error(body, |field, text| {
        (field == b'M').then(|| {
            switchyard::pg::prepared::with_client_name(text, b"c")
                .unwrap_or_else(|| text.to_uppercase())
        })
    }) {
        let h = header(&out, 1 << 30).unwrap().unwrap();
        assert_eq!((h.tag, h.wire_len), (b'E', out.len()));
        let edited = &out[5..];
        for code in FIELDS {
            if code != b'M' && code != 0 {
                assert_eq!(codec::error_field(edited, code), codec::error_field(body, code));
            }
        }
        let m = codec::error_field(edited, b'M').expect("the edited field");
        assert!(!m.contains("\"sy_0\""));
    }
    // A RowDescription's result type: at most the body's size, and only of whole columns.
    if let Some(t) = codec::row_type(body) {
        assert!(t.len() <= body.len());
        assert_eq!(&t[..2], &body[..2]);
    }
    if let Some((name, value)) = codec::parameter_status(body) {
        assert_eq!(name.len() + value.len() + 2, body.len());
        assert!(within(body, name.as_bytes()) && within(body, value.as_bytes()));
    }
}

/// `part` is a sub-slice of `whole` (borrowed from it, not copied).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}
