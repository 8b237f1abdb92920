//! Header rewriting on the way through: hop-by-hop headers removed (RFC 9110 7.6.1),
//! X-Forwarded-For/Proto/Host and Via added, a request id kept or made.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};
use std::net::IpAddr;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that only concern one connection (besides Connection and Upgrade, handled apart).
/// Names, not strings: removing by string parses the name on every call.
pub(super) static HOP_BY_HOP: [&HeaderName; 5] = [
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &http::header::TE,
    &http::header::TRANSFER_ENCODING,
    &http::header::TRAILER,
];

/// Make an HTTP/2 WebSocket CONNECT (RFC 8441) into the HTTP/1.1 upgrade request an upstream
/// takes: GET, `Upgrade: websocket`, a fresh `Sec-WebSocket-Key` (an HTTP/2 client sends
/// none); the client's `Sec-WebSocket-Version`, `-Protocol` and `-Extensions` stay. Returns
/// the key, whose answer the upstream's 101 must carry.
pub fn h1_websocket_request<B>(req: &mut http::Request<B>) -> String {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    *req.method_mut() = http::Method::GET;
    let h = req.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(
        http::header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(&key).expect("base64 is a header value"),
    );
    key
}

/// The `Sec-WebSocket-Accept` answering `key` (RFC 6455, 4.2.2).
pub fn websocket_accept(key: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Remove hop-by-hop headers, including those the Connection header names. With
/// `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay (a WebSocket handshake).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names first: most messages carry few of these, and a removal of an
    // absent name costs a hash and a probe each.
    let (mut listed, mut connection, mut upgrade) = (0u8, false, false);
    for name in headers.keys() {
        if name == CONNECTION {
            connection = true;
        } else if name == UPGRADE {
            upgrade = true;
        } else if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            listed |= 1 << i;
        }
    }
    if connection {
        remove_connection_named(headers, keep_upgrade);
    }
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if listed & (1 << i) != 0 {
            headers.remove(*h);
        }
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else if upgrade {
        headers.remove(UPGRADE);
    }
}

/// Remove Connection and the headers it names (all but Upgrade with `keep_upgrade`).
fn remove_connection_named(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(first) = headers.get(CONNECTION) {
        // Most requests have none, or one plain token: no list to build then.
        let single =
            headers.get_all(CONNECTION).iter().count() == 1 && !first.as_bytes().contains(&b',');
        let remove = |headers: &mut HeaderMap, n: HeaderName| {
            if !(keep_upgrade && n == UPGRADE) {
                headers.remove(&n);
            }
        };
        if single {
            if let Ok(n) = HeaderName::from_bytes(first.as_bytes().trim_ascii()) {
                remove(headers, n);
            }
        } else {
            let named: Vec<HeaderName> = headers
                .get_all(CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
                .collect();
            for n in named {
                remove(headers, n);
            }
        }
        headers.remove(CONNECTION);
    }
}

/// HTTP/2 and HTTP/3 clients may send the cookies as separate `cookie` fields (browsers do,
/// for header compression); before they go to an HTTP/1.1 server they are joined into one,
/// with "; " between them (RFC 9113, 8.2.3): an HTTP/1.1 request has at most one Cookie
/// header (RFC 6265, 5.4), and servers commonly read only the first.
pub fn join_cookies(version: http::Version, headers: &mut HeaderMap) {
    if version < http::Version::HTTP_2 {
        return;
    }
    let mut all = headers.get_all(http::header::COOKIE).iter();
    let (Some(first), Some(_)) = (all.next(), all.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(http::header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(http::header::COOKIE, v);
    }
}

/// Why a request's target is ambiguous, if it is: more than one Host, or none in HTTP/1.1
/// (RFC 9112 3.2 asks for a 400 for both). Refused rather than passed to an upstream that
/// may read another Host. (Content-Length beside Transfer-Encoding is hyper's: it drops the
/// length, reads the chunks and closes the connection after the answer, as RFC 9112 6.1
/// allows.)
pub fn ambiguous(version: http::Version, headers: &HeaderMap) -> Option<&'static str> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Some("more than one Host header"),
        (None, _) if version == http::Version::HTTP_11 => Some("HTTP/1.1 request without Host"),
        _ => None,
    }
}

pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Add the forwarding headers to a request going upstream.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    tls: bool,
    host: Option<&HeaderValue>,
    via: &'static str,
) {
    match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            let joined = format!("{prev}, {}", client.to_str().unwrap_or(""));
            if let Ok(v) = HeaderValue::from_str(&joined) {
                headers.insert(&X_FORWARDED_FOR, v);
            }
        }
        _ => {
            headers.insert(&X_FORWARDED_FOR, client.clone());
        }
    }
    headers.insert(
        &X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Some(h) = host {
        headers.insert(&X_FORWARDED_HOST, h.clone());
    }
    append_via(headers, via);
}

/// Append this hop to Via.
pub fn append_via(headers: &mut HeaderMap, via: &'static str) {
    let value = match headers.get(http::header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {via}")).ok(),
        None => Some(HeaderValue::from_static(via)),
    };
    if let Some(v) = value {
        headers.insert(http::header::VIA, v);
    }
}

/// A client address as forwarding headers write it (IPv4-mapped IPv6 as IPv4).
pub fn client_ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_canonical().to_string()).expect("an address is a header value")
}

/// "1.1 switchyard" or "2.0 switchyard" for the version the client spoke.
pub fn via_for(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "2.0 switchyard",
        http::Version::HTTP_10 => "1.0 switchyard",
        _ => "1.1 switchyard",
    }
}

/// The request id: the client's, if it sent a sane one (1-128 visible ASCII characters),
/// else a new random one. Set on the request going upstream.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        if valid_request_id(v.as_bytes()) {
            return v.clone();
        }
    }
    let v = new_request_id();
    headers.insert(&X_REQUEST_ID, v.clone());
    v
}

/// Whether a client's X-Request-Id is passed on (1 to 128 visible characters).
pub fn valid_request_id(b: &[u8]) -> bool {
    (1..=128).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic())
}

/// A new request id: 32 random hex digits.
pub fn new_request_id() -> HeaderValue {
    let id: u128 = rand::random();
    let mut hex = [0u8; 32];
    for (i, b) in hex.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((id >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&hex).expect("hex is a header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_accept_is_rfc_6455s() {
        // The example of RFC 6455, 1.3.
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn http2_cookie_fields_are_joined_for_http1() {
        let mut h = HeaderMap::new();
        for c in ["a=1", "b=2", "c=3"] {
            h.append(http::header::COOKIE, HeaderValue::from_static(c));
        }
        let mut h1 = h.clone();
        join_cookies(http::Version::HTTP_11, &mut h1);
        assert_eq!(h1.get_all(http::header::COOKIE).iter().count(), 3);
        join_cookies(http::Version::HTTP_2, &mut h);
        let all: Vec<_> = h.get_all(http::header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
        let mut one = HeaderMap::new();
        one.insert(http::header::COOKIE, HeaderValue::from_static("a=1"));
        join_cookies(http::Version::HTTP_2, &mut one);
        assert_eq!(one[http::header::COOKIE], "a=1");
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn one_named_header_and_every_listed_one_go_without_a_connection_list() {
        let mut h = map(&[
            ("connection", " X-Secret "),
            ("x-secret", "1"),
            ("trailer", "x-t"),
            ("upgrade", "h2c"),
            ("via", "1.0 a"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["via"]);
        // Nothing to remove: nothing changes.
        let mut h = map(&[("accept", "*/*"), ("host", "a")]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn an_upgrade_keeps_its_two_headers() {
        let mut h = map(&[
            ("connection", "Upgrade, keep-alive"),
            ("upgrade", "websocket"),
            ("keep-alive", "x"),
        ]);
        assert!(wants_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("keep-alive"));
    }

    #[test]
    fn forwarded_for_appends_and_request_ids_are_kept_or_made() {
        let mut h = map(&[("x-forwarded-for", "203.0.113.7"), ("via", "1.1 cdn")]);
        add_forwarded(
            &mut h,
            &client_ip_value("127.0.0.1".parse().unwrap()),
            true,
            Some(&HeaderValue::from_static("shop")),
            "1.1 switchyard",
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop");
        assert_eq!(h["via"], "1.1 cdn, 1.1 switchyard");
        let mut h = map(&[("x-request-id", "abc-123")]);
        assert_eq!(request_id(&mut h), "abc-123");
        let mut h = map(&[("x-request-id", "bad id with spaces")]);
        let id = request_id(&mut h);
        assert_eq!(id.len(), 32);
        assert_eq!(h["x-request-id"], id);
    }
}
