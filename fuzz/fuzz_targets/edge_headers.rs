//! The HTTP edge's own readers of untrusted header text: the response cache (request and
//! response Cache-Control, Expires/Date/Age, Vary, conditional requests), the hop-by-hop
//! filter, the upgrade test, the request-id check and the host a request names. HTTP framing
//! itself is hyper's.
//!
//! Input: lines "name: value"; a line "--" separates request headers from response headers;
//! the first byte picks the method and the status. Properties: no panic; a lookup that
//! found a stored response answers with a well-formed response; after the hop-by-hop filter
//! no hop-by-hop header is left; HTTP/2 cookie fields join into one header with every field.
#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use switchyard::edge::cache::{Cache, Lookup};
use switchyard::edge::headers;

fn parse(text: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            h.append(n, v);
        }
    }
    h
}

/// Poll a future that must not wait (lookups with a zero wait never do).
fn now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

const STATUSES: [u16; 8] = [200, 203, 204, 301, 304, 404, 500, 206];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let method = if sel & 1 == 0 { Method::GET } else { Method::HEAD };
    let status = StatusCode::from_u16(STATUSES[usize::from(sel >> 1) % 8]).unwrap();
    let split = rest.windows(3).position(|w| w == b"\n--").unwrap_or(rest.len());
    let req = parse(&rest[..split]);
    let resp = parse(rest.get(split + 3..).unwrap_or_default());

    let cache = Cache::new(1 << 16, 1 << 12);
    for round in 0..2 {
        match now(cache.lookup(&method, "host/path", &req, Duration::ZERO)) {
            Some(Lookup::Miss(fill)) => {
                if fill.cacheable(status, &resp) {
                    fill.store(status, &resp, Bytes::from_static(b"body"));
                }
            }
            Some(Lookup::Hit(stored)) => {
                let r = stored.respond(&method, &req);
                assert!(r.status().as_u16() >= 200, "round {round}");
            }
            Some(Lookup::Bypass) | None => {}
        }
    }

    let mut h = resp.clone();
    let upgrade = headers::wants_upgrade(&h);
    headers::remove_hop_by_hop(&mut h, upgrade);
    for name in ["keep-alive", "te", "transfer-encoding", "proxy-connection", "trailer"] {
        assert!(!h.contains_key(name), "{name} survived");
    }
    let hosts = req.get_all(http::header::HOST).iter().count();
    let v10 = http::Version::HTTP_10;
    assert_eq!(headers::ambiguous(v10, &req).is_some(), hosts > 1);
    let v11 = http::Version::HTTP_11;
    assert_eq!(headers::ambiguous(v11, &req).is_some(), hosts != 1);
    let mut h = req.clone();
    let id = headers::request_id(&mut h);
    assert!(!id.is_empty());
    // HTTP/2 cookie fields joined for HTTP/1.1: at most one Cookie header afterwards, holding
    // every field's bytes (a value that cannot be a header value leaves them as they were).
    let mut h = req.clone();
    let fields: Vec<Vec<u8>> =
        h.get_all(http::header::COOKIE).iter().map(|v| v.as_bytes().to_vec()).collect();
    headers::join_cookies(http::Version::HTTP_2, &mut h);
    let after: Vec<&[u8]> = h.get_all(http::header::COOKIE).iter().map(|v| v.as_bytes()).collect();
    if after.len() == 1 {
        assert_eq!(after[0], fields.join(&b"; "[..]).as_slice());
    } else {
        assert_eq!(after, fields.iter().map(|v| v.as_slice()).collect::<Vec<_>>());
    }
    let uri: http::Uri = "/x".parse().unwrap();
    let host = switchyard::edge::route::request_host_of(&req, &uri);
    assert!(!host.bytes().any(|b| b.is_ascii_uppercase()));
});
