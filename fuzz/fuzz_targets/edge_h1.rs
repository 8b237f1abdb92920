//! The HTTP/1.1 fast path's own readers of upstream bytes (`edge/fast/wire.rs`): the response
//! head parser that picks the body framing, the rewriter of the head for the client, and the
//! chunked-body scanner that finds where a body ends. Request heads are httparse's, and any
//! it refuses go to hyper.
//!
//! Input: the first byte picks HEAD or GET and where to split the rest; the rest is read as
//! a response head, and as a chunked body. Properties: no panic; a head that parses rewrites
//! into one that parses again with the same status and no Content-Length beside a
//! Transfer-Encoding; the scanner reports the same end whether the bytes come at once or in
//! two pieces, and never more bytes than it was given.
#![no_main]

use bytes::BytesMut;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use switchyard::edge::fast::{parse_response, response_head, ChunkScanner, Head};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let head_only = sel & 1 == 1;
    if let Ok(Some(Head::Final { len, status, .. })) = parse_response(rest, head_only) {
        assert!(len <= rest.len());
        let mut out = BytesMut::new();
        response_head(rest, &HeaderValue::from_static("id"), sel & 2 == 2, &mut out)
            .expect("a head that parsed rewrites");
        // Re-read with room for the headers the rewrite adds (Via, X-Request-Id, Connection).
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut again = httparse::Response::new(&mut slots);
        match again.parse(&out) {
            Ok(httparse::Status::Complete(n)) => {
                assert_eq!(n, out.len());
                assert_eq!(again.code, Some(status));
            }
            r => panic!("rewritten head does not parse: {r:?} {out:?}"),
        }
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        assert!(!(text.contains("\ntransfer-encoding:") && text.contains("\ncontent-length:")));
    }
    // Chunked scanning, whole and split at a point the selector picks.
    let whole = {
        let mut s = ChunkScanner::default();
        s.scan(rest).map(|n| (n, s.done()))
    };
    if let Ok((n, _)) = whole {
        assert!(n <= rest.len());
    }
    let cut = (sel as usize * 7) % (rest.len() + 1);
    let mut s = ChunkScanner::default();
    let split = s.scan(&rest[..cut]).and_then(|a| {
        if s.done() {
            Ok((a, true))
        } else {
            s.scan(&rest[cut..]).map(|b| (a + b, s.done()))
        }
    });
    match (whole, split) {
        (Ok(w), Ok(p)) => assert_eq!(w, p),
        (Err(_), Err(_)) => {}
        // An error after the end (in bytes past it) is not seen by the whole scan.
        (w, p) => panic!("whole {w:?} vs split {p:?}"),
    }
});
