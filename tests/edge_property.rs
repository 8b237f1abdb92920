//! The HTTP edge as a transparent HTTP/1.1 proxy, as a property: concurrent raw clients send
//! the same random request sequences to a real upstream directly, through the edge (its own
//! HTTP/1.1 fast path, over plain TCP and over TLS) and through the edge with the fast path
//! off (hyper's server), and every answer must match the direct one: status, body, and for `/echo` what the upstream saw
//! (method, path, body and the headers, apart from those a proxy adds or must remove).
//!
//! Meanwhile both edges are reloaded every 100 ms, switching their group between two equal
//! upstreams. The sequences mix methods (GET, HEAD, POST, PUT, DELETE, OPTIONS), bodies by
//! Content-Length or chunked (with chunk extensions and trailers), headers in any case and
//! repeated, `Expect: 100-continue`, answers with a length, chunked or empty (204), requests
//! pipelined in one write or trickled in pieces, and `Connection: close` (both sides close;
//! the client connects again).
//!
//! The run is seeded (`SWITCHYARD_PROP_SEED`, printed on failure) and bounded in clients,
//! requests and time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use switchyard::app::Server;
use switchyard::config::Config;
use switchyard::testkit::http::HttpUpstream;

const CLIENTS: usize = 8;
const ROUNDS: usize = 40;

fn edge_text(servers: &[SocketAddr], fast_path: bool, retries: u32) -> String {
    edge_text_with(servers, fast_path, retries, "")
}

/// [`edge_text`] with more listeners (`listeners`: their TOML).
fn edge_text_with(
    servers: &[SocketAddr],
    fast_path: bool,
    retries: u32,
    listeners: &str,
) -> String {
    let servers: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
[general]
workers = 2

[[edge.listener]]
listen = "127.0.0.1:0"
h1_fast_path = {fast_path}
{listeners}

[[edge.route]]
path = "/"
upstream = "web"
retries = {retries}

[[edge.upstream]]
name = "web"
servers = [{servers}]
"#,
        servers = servers.join(", ")
    )
}

fn edge(up: &HttpUpstream, fast_path: bool) -> Server {
    let text = edge_text(&[up.addr()], fast_path, 1);
    Server::start(Config::from_toml(&text).unwrap()).expect("edge starts")
}

/// While the clients run: both edges reloaded every 100 ms, their group switching between
/// two equal upstreams (one, the other, both; retries 0-2), and now and then a config that
/// does not parse (refused, nothing changes). Returns the reloads applied.
fn reload_edges_until(
    edges: &[(&Server, &std::path::Path, bool, &str)],
    ups: [SocketAddr; 2],
    done: &std::sync::atomic::AtomicBool,
) -> u32 {
    let mut applied = 0;
    let mut step = 0usize;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        step += 1;
        for (server, path, fast_path, listeners) in edges {
            let text = match step % 4 {
                0 => edge_text_with(&ups[..1], *fast_path, 1, listeners),
                1 => edge_text_with(&ups[1..], *fast_path, 0, listeners),
                2 => edge_text_with(&ups, *fast_path, 2, listeners),
                _ => "[[edge.route]]\npath = 7\n".to_string(),
            };
            std::fs::write(path, text).unwrap();
            if server.reload().is_ok() {
                applied += 1;
            }
        }
    }
    applied
}

/// One request as bytes, and what reading its answer needs to know.
struct Req {
    bytes: Vec<u8>,
    head: bool,
    close: bool,
    describe: String,
}

fn token(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| {
            let c = rng.gen_range(0..36u8);
            (if c < 10 { b'0' + c } else { b'a' + c - 10 }) as char
        })
        .collect()
}

/// Printable ASCII (the echo shows the body as text).
fn body_text(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.gen_range(0x20u8..0x7f)).collect()
}

fn random_request(rng: &mut StdRng, last: bool) -> Req {
    let method = [
        "GET", "GET", "GET", "HEAD", "POST", "POST", "PUT", "DELETE", "OPTIONS",
    ][rng.gen_range(0..9)];
    let path = match rng.gen_range(0..8) {
        0..=2 => format!("/echo?q={}", token(rng, 4)),
        3 => format!("/blob?size={}", rng.gen_range(0..70_000)),
        4 => format!("/blob?size={}&chunked=1", rng.gen_range(0..20_000)),
        5 => "/x?status=204".to_string(),
        6 => "/x?status=404".to_string(),
        _ => format!("/{}/{}", token(rng, 3), token(rng, 5)),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: example.test\r\n");
    for _ in 0..rng.gen_range(0..4) {
        // Names in any case; some repeated.
        let name: String = format!("X-Prop-{}", rng.gen_range(0..3))
            .chars()
            .map(|c| {
                if rng.gen_bool(0.5) {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        let len = rng.gen_range(0..20);
        head.push_str(&format!("{name}: {}\r\n", token(rng, len)));
    }
    if rng.gen_bool(0.2) {
        head.push_str("Accept: */*\r\nUser-Agent: prop/1\r\n");
    }
    let body_len = match method {
        "POST" | "PUT" => Some(rng.gen_range(0..6000)),
        _ if rng.gen_range(0..10) == 0 => Some(rng.gen_range(0..100)),
        _ => None,
    };
    let body: Option<Vec<u8>> = body_len.map(|n| body_text(rng, n));
    let close = last && rng.gen_range(0..4) == 0;
    if close {
        head.push_str("Connection: close\r\n");
    }
    let mut bytes = Vec::new();
    let mut describe = format!("{method} {path}");
    match body {
        None => {
            head.push_str("\r\n");
            bytes.extend_from_slice(head.as_bytes());
        }
        Some(b) if rng.gen_bool(0.5) => {
            describe.push_str(&format!(" body {} by length", b.len()));
            if b.len() > 1000 && rng.gen_range(0..4) == 0 {
                head.push_str("Expect: 100-continue\r\n");
                describe.push_str(" expect");
            }
            head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            bytes.extend_from_slice(head.as_bytes());
            bytes.extend_from_slice(&b);
        }
        Some(b) => {
            describe.push_str(&format!(" body {} chunked", b.len()));
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            bytes.extend_from_slice(head.as_bytes());
            let mut rest = &b[..];
            while !rest.is_empty() {
                let n = rng.gen_range(1..=rest.len().min(3000));
                let ext = if rng.gen_range(0..5) == 0 { ";x=1" } else { "" };
                bytes.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
                bytes.extend_from_slice(&rest[..n]);
                bytes.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            bytes.extend_from_slice(b"0\r\n");
            if rng.gen_range(0..4) == 0 {
                bytes.extend_from_slice(b"X-Trailer: t\r\n");
                describe.push_str(" trailer");
            }
            bytes.extend_from_slice(b"\r\n");
        }
    }
    Req {
        bytes,
        head: method == "HEAD",
        close,
        describe,
    }
}

/// An answer, as compared across the three targets.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: String,
}

/// Status, lower-case headers, body.
type Raw = (u16, Vec<(String, String)>, Vec<u8>);

struct Conn {
    s: Stream,
    pending: Vec<u8>,
}

/// A client connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.sock.set_read_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Where a client connects: an address, over TLS with this client configuration or not.
type Target = (SocketAddr, Option<Arc<rustls::ClientConfig>>);

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        Conn::open_at(&(addr, None))
    }

    fn open_at((addr, tls): &Target) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        let s = match tls {
            None => Stream::Plain(s),
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
            }
        };
        Conn {
            s,
            pending: Vec::new(),
        }
    }

    /// More bytes; false at the end of the stream.
    fn fill(&mut self) -> Result<bool, String> {
        let mut b = [0u8; 16384];
        match self.s.read(&mut b) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.pending.extend_from_slice(&b[..n]);
                Ok(true)
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    fn fill_or_fail(&mut self, what: &str) -> Result<(), String> {
        if self.fill()? {
            Ok(())
        } else {
            Err(format!("closed in the middle of {what}"))
        }
    }

    fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.pending[..i]).into_owned();
                self.pending.drain(..i + 2);
                return Ok(line);
            }
            self.fill_or_fail("a line")?;
        }
    }

    /// One final answer (1xx interim answers skipped): status, lower-case headers, body.
    fn answer(&mut self, head_only: bool) -> Result<Raw, String> {
        loop {
            let (len, status, headers) = loop {
                let mut slots = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Response::new(&mut slots);
                match r.parse(&self.pending) {
                    Ok(httparse::Status::Complete(n)) => {
                        let h: Vec<(String, String)> = r
                            .headers
                            .iter()
                            .map(|h| {
                                let v = String::from_utf8_lossy(h.value).into_owned();
                                (h.name.to_ascii_lowercase(), v)
                            })
                            .collect();
                        break (n, r.code.unwrap(), h);
                    }
                    Ok(httparse::Status::Partial) => self.fill_or_fail("a response head")?,
                    Err(e) => return Err(format!("bad response head: {e}")),
                }
            };
            self.pending.drain(..len);
            if (100..200).contains(&status) {
                continue;
            }
            let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let mut body = Vec::new();
            if head_only || status == 204 || status == 304 {
                return Ok((status, headers, body));
            }
            if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                loop {
                    let line = self.line()?;
                    let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                        .map_err(|e| format!("chunk size {line:?}: {e}"))?;
                    if size == 0 {
                        // Trailers up to the empty line.
                        while !self.line()?.is_empty() {}
                        break;
                    }
                    while self.pending.len() < size + 2 {
                        self.fill_or_fail("a chunk")?;
                    }
                    body.extend_from_slice(&self.pending[..size]);
                    self.pending.drain(..size + 2);
                }
            } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
                while self.pending.len() < n {
                    self.fill_or_fail("a body")?;
                }
                body = self.pending.drain(..n).collect();
            } else {
                while self.fill()? {}
                body = std::mem::take(&mut self.pending);
            }
            return Ok((status, headers, body));
        }
    }
}

/// What is compared of an answer: for `/echo`, the request the upstream saw without what a
/// proxy adds (forwarding headers, Via, the request id) or must not pass on (hop-by-hop
/// headers), and without how the body was framed (a proxy may re-frame it).
fn comparable(status: u16, headers: &[(String, String)], body: &[u8]) -> Result<Answer, String> {
    if !headers.iter().any(|(n, _)| n == "x-upstream") {
        return Err(format!(
            "status {status} not from the upstream: {headers:?}"
        ));
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let is_echo = headers
        .iter()
        .any(|(n, v)| n == "content-type" && v.starts_with("application/json"));
    if !is_echo || body.is_empty() {
        return Ok(Answer { status, body: text });
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("echo is not JSON: {e}: {text}"))?;
    let o = v.as_object_mut().unwrap();
    o.remove("hit");
    let h = o["headers"].as_object_mut().unwrap();
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "via",
        "x-request-id",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "expect",
    ] {
        h.remove(name);
    }
    Ok(Answer {
        status,
        body: v.to_string(),
    })
}

/// Send `reqs` on `c` (all in one write, or in pieces with pauses) and read every answer.
fn exchange(c: &mut Conn, reqs: &[Req], pieces: Option<usize>) -> Result<Vec<Answer>, String> {
    let all: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.iter().copied()).collect();
    match pieces {
        None => c.s.write_all(&all).map_err(|e| format!("write: {e}"))?,
        Some(n) => {
            for piece in all.chunks(all.len().div_ceil(n).max(1)) {
                c.s.write_all(piece).map_err(|e| format!("write: {e}"))?;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    let mut out = Vec::new();
    for r in reqs {
        let (status, headers, body) = c.answer(r.head)?;
        out.push(comparable(status, &headers, &body)?);
        if r.close {
            // The answer to `Connection: close` ends the connection.
            if c.fill()? {
                return Err("data after the answer to Connection: close".into());
            }
        }
    }
    Ok(out)
}

fn client_run(me: usize, seed: u64, targets: &[Target; 4]) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed ^ (me as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let names = [
        "direct",
        "edge (fast path)",
        "edge (hyper)",
        "edge (fast path, TLS)",
    ];
    let mut conns: Vec<Conn> = targets.iter().map(Conn::open_at).collect();
    let mut bad = Vec::new();
    for round in 0..ROUNDS {
        let n = rng.gen_range(1..=3);
        let reqs: Vec<Req> = (0..n)
            .map(|i| random_request(&mut rng, i == n - 1))
            .collect();
        let pieces = (rng.gen_range(0..5) == 0).then(|| rng.gen_range(2..6));
        let what: Vec<&str> = reqs.iter().map(|r| r.describe.as_str()).collect();
        let answers: Vec<Result<Vec<Answer>, String>> = conns
            .iter_mut()
            .map(|c| exchange(c, &reqs, pieces))
            .collect();
        let direct = match &answers[0] {
            Ok(a) => a,
            Err(e) => panic!("client {me} round {round}: direct: {e} ({what:?})"),
        };
        for (i, got) in answers.iter().enumerate().skip(1) {
            match got {
                Err(e) => bad.push(format!(
                    "client {me} round {round} {}: {e} for {what:?}",
                    names[i]
                )),
                Ok(a) if a != direct => bad.push(format!(
                    "client {me} round {round} {}: {what:?}\n  got  {a:?}\n  want {direct:?}",
                    names[i]
                )),
                Ok(_) => {}
            }
        }
        if !bad.is_empty() {
            return bad;
        }
        if reqs.last().is_some_and(|r| r.close) {
            conns = targets.iter().map(Conn::open_at).collect();
        }
    }
    bad
}

#[test]
fn random_http1_exchanges_through_the_edge_match_the_upstream_directly() {
    let seed = prop_seed();
    // Two upstreams of the same name answer alike: the edges are switched between them.
    let up = HttpUpstream::start("prop").unwrap();
    let up2 = HttpUpstream::start("prop").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (fast_file, slow_file) = (dir.path().join("fast.toml"), dir.path().join("slow.toml"));
    // The fast-path edge has a TLS listener too (HTTP/1.1: the client offers no ALPN).
    let (tls_client, tls_listener) = tls_pair(dir.path());
    std::fs::write(
        &fast_file,
        edge_text_with(&[up.addr()], true, 1, &tls_listener),
    )
    .unwrap();
    std::fs::write(&slow_file, edge_text(&[up.addr()], false, 1)).unwrap();
    let fast = Server::start_file(&fast_file).expect("edge starts");
    let slow = Server::start_file(&slow_file).expect("edge starts");
    let targets: [Target; 4] = [
        (up.addr(), None),
        (fast.edge_addrs[0], None),
        (slow.edge_addrs[0], None),
        (fast.edge_addrs[1], Some(tls_client)),
    ];
    let done = std::sync::atomic::AtomicBool::new(false);
    let (bad, reloads) = std::thread::scope(|s| {
        let edges = [
            (&fast, fast_file.as_path(), true, tls_listener.as_str()),
            (&slow, slow_file.as_path(), false, ""),
        ];
        let done = &done;
        let reloader = s.spawn(move || reload_edges_until(&edges, [up.addr(), up2.addr()], done));
        let targets = &targets;
        let runs: Vec<_> = (0..CLIENTS)
            .map(|me| s.spawn(move || client_run(me, seed, targets)))
            .collect();
        let mut bad = Vec::new();
        let mut panicked = false;
        for r in runs {
            match r.join() {
                Ok(b) => bad.extend(b),
                Err(_) => panicked = true,
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let reloads = reloader.join().unwrap();
        assert!(!panicked, "a client panicked (seed {seed})");
        (bad, reloads)
    });
    eprintln!("{reloads} reloads applied");
    assert!(
        reloads >= 4,
        "too few reloads during the run to mean anything"
    );
    assert!(bad.is_empty(), "seed {seed}:\n{}", bad.join("\n"));
    fast.shutdown();
    slow.shutdown();
}

/// A self-signed certificate in `dir`: a client configuration that trusts it, and an edge
/// listener (TOML) that serves it.
fn tls_pair(dir: &std::path::Path) -> (Arc<rustls::ClientConfig>, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let listener = format!(
        "[[edge.listener]]\nname = \"tls\"\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    (Arc::new(cfg), listener)
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 (prior knowledge) through the edge against HTTP/1.1 directly

type H2Body = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;

/// A request as the property sends it over HTTP/2 and, for the comparison, over HTTP/1.1.
struct H2Req {
    method: http::Method,
    path: String,
    headers: Vec<(String, String)>,
    /// Cookie pairs: one `cookie` field each over HTTP/2 (as browsers send them), one
    /// `Cookie: a=1; b=2` over HTTP/1.1 (RFC 9113, 8.2.3).
    cookies: Vec<String>,
    body: Vec<u8>,
    /// Streamed in pieces with no length over HTTP/2.
    streamed: bool,
}

fn random_h2_request(rng: &mut StdRng) -> H2Req {
    let method = ["GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"][rng.gen_range(0..7)];
    let path = match rng.gen_range(0..5) {
        0..=2 => format!("/echo?q={}", token(rng, 4)),
        3 => format!("/blob?size={}", rng.gen_range(0..70_000)),
        _ => format!("/blob?size={}&chunked=1", rng.gen_range(0..20_000)),
    };
    let headers = (0..rng.gen_range(0..4))
        .map(|_| {
            let len = rng.gen_range(0..20);
            (format!("x-prop-{}", rng.gen_range(0..3)), token(rng, len))
        })
        .collect();
    let cookies = (0..rng.gen_range(0..4))
        .map(|i| format!("c{i}={}", token(rng, 6)))
        .collect();
    let body_len = match method {
        "POST" | "PUT" => rng.gen_range(0..40_000),
        _ if rng.gen_range(0..8) == 0 => rng.gen_range(1..200),
        _ => 0,
    };
    H2Req {
        method: method.parse().unwrap(),
        path,
        headers,
        cookies,
        body: body_text(rng, body_len),
        streamed: rng.gen_bool(0.5),
    }
}

fn h2_body(r: &H2Req) -> H2Body {
    use http_body_util::BodyExt;
    if !r.streamed {
        return http_body_util::Full::new(bytes::Bytes::from(r.body.clone())).boxed();
    }
    let frames: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>> = r
        .body
        .chunks(7000)
        .map(|c| Ok(hyper::body::Frame::data(bytes::Bytes::copy_from_slice(c))))
        .collect();
    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

fn h2_request(r: &H2Req) -> http::Request<H2Body> {
    let mut b = http::Request::builder()
        .method(r.method.clone())
        .uri(format!("http://example.test{}", r.path));
    for (k, v) in &r.headers {
        b = b.header(k, v);
    }
    for c in &r.cookies {
        b = b.header("cookie", c);
    }
    b.body(h2_body(r)).unwrap()
}

fn h1_request(r: &H2Req) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut b = http::Request::builder()
        .method(r.method.clone())
        .uri(&r.path)
        .header("host", "example.test");
    for (k, v) in &r.headers {
        b = b.header(k, v);
    }
    if !r.cookies.is_empty() {
        b = b.header("cookie", r.cookies.join("; "));
    }
    b.body(http_body_util::Full::new(bytes::Bytes::from(
        r.body.clone(),
    )))
    .unwrap()
}

async fn h2_answer<B>(resp: http::Response<B>) -> Result<Answer, String>
where
    B: hyper::body::Body,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    comparable(status, &headers, &body)
}

/// One client: one HTTP/2 connection to the edge with up to four requests in flight at once,
/// each also sent over HTTP/1.1 to the upstream directly.
async fn h2_client_run(me: usize, seed: u64, edge: SocketAddr, up: SocketAddr) -> Vec<String> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut rng = StdRng::seed_from_u64(seed ^ (me as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let tcp = tokio::net::TcpStream::connect(edge).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 handshake with the edge");
    tokio::spawn(conn);
    let tcp = tokio::net::TcpStream::connect(up).await.unwrap();
    let (mut direct, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut bad = Vec::new();
    for round in 0..ROUNDS / 2 {
        let reqs: Vec<H2Req> = (0..rng.gen_range(1..=4))
            .map(|_| random_h2_request(&mut rng))
            .collect();
        let via_edge = futures_util::future::join_all(reqs.iter().map(|r| {
            let mut send = send.clone();
            let req = h2_request(r);
            async move {
                let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
                h2_answer(resp).await
            }
        }))
        .await;
        for (r, got) in reqs.iter().zip(via_edge) {
            let what = format!(
                "{} {} body {}{} cookies {}",
                r.method,
                r.path,
                r.body.len(),
                if r.streamed { " streamed" } else { "" },
                r.cookies.len()
            );
            direct.ready().await.unwrap();
            let want = h2_answer(direct.send_request(h1_request(r)).await.unwrap())
                .await
                .unwrap_or_else(|e| panic!("client {me} round {round}: direct: {e} ({what})"));
            match got {
                Err(e) => bad.push(format!("h2 client {me} round {round}: {e} for {what}")),
                Ok(a) if a != want => bad.push(format!(
                    "h2 client {me} round {round}: {what}\n  got  {a:?}\n  want {want:?}"
                )),
                Ok(_) => {}
            }
        }
        if !bad.is_empty() {
            break;
        }
    }
    bad
}

#[test]
fn random_http2_requests_through_the_edge_match_http1_directly() {
    let seed = prop_seed();
    let up = HttpUpstream::start("prop2").unwrap();
    let edge = edge(&up, true);
    let (at, to) = (edge.edge_addrs[0], up.addr());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bad: Vec<String> = rt.block_on(async {
        let runs: Vec<_> = (0..CLIENTS)
            .map(|me| tokio::spawn(h2_client_run(me, seed, at, to)))
            .collect();
        let mut bad = Vec::new();
        for r in runs {
            let r = tokio::time::timeout(Duration::from_secs(120), r)
                .await
                .unwrap_or_else(|_| panic!("an HTTP/2 client did not finish (seed {seed})"));
            bad.extend(r.unwrap_or_else(|_| panic!("a client panicked (seed {seed})")));
        }
        bad
    });
    assert!(bad.is_empty(), "seed {seed}:\n{}", bad.join("\n"));
    edge.shutdown();
}

// ---------------------------------------------------------------------------------------------
// The response cache under concurrent random GETs

/// The resources of the cache property: (path and query, cacheable).
fn cache_resources() -> Vec<(String, bool)> {
    let mut v = Vec::new();
    for k in 0..4 {
        v.push((format!("/r{k}?cc=max-age%3D60&vary=X-V"), true));
    }
    v.push((
        "/s0?cc=max-age%3D60&vary=X-V&size=3000&chunked=1".into(),
        true,
    ));
    v.push(("/u0?cc=max-age%3D60".into(), true));
    v.push(("/n0?cc=no-store&vary=X-V".into(), false));
    v.push(("/p0?cc=private%2C%20max-age%3D60&vary=X-V".into(), false));
    v
}

/// One GET of the cache property, as the client saw it.
struct Seen {
    resource: usize,
    variant: Option<&'static str>,
    head: bool,
    body: String,
    x_cache: String,
}

fn cache_client_run(me: usize, seed: u64, edge: SocketAddr) -> Result<Vec<Seen>, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ (me as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let resources = cache_resources();
    let mut c = Conn::open(edge);
    let mut out = Vec::new();
    for _ in 0..60 {
        let resource = rng.gen_range(0..resources.len());
        let variant = [None, Some("a"), Some("b"), Some("B")][rng.gen_range(0..4)];
        let head = rng.gen_range(0..5) == 0;
        let method = if head { "HEAD" } else { "GET" };
        let mut req = format!(
            "{method} {} HTTP/1.1\r\nHost: example.test\r\n",
            resources[resource].0
        );
        if let Some(v) = variant {
            req.push_str(&format!("X-V: {v}\r\n"));
        }
        req.push_str("\r\n");
        c.s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        // A HEAD answer with a body would show as garbage before the next answer.
        let (status, headers, body) = c.answer(head)?;
        if status != 200 {
            return Err(format!("{method} {} got {status}", resources[resource].0));
        }
        let x_cache = headers
            .iter()
            .find(|(n, _)| n == "x-cache")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        out.push(Seen {
            resource,
            variant,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
            x_cache,
        });
    }
    Ok(out)
}

#[test]
fn concurrent_random_gets_through_the_cache_see_their_own_variant_and_one_fetch_each() {
    let seed = prop_seed();
    let up = HttpUpstream::start("prop").unwrap();
    let text = format!(
        r#"
[general]
workers = 2

[[edge.listener]]
listen = "127.0.0.1:0"

[[edge.route]]
path = "/"
upstream = "web"
cache = true

[[edge.upstream]]
name = "web"
servers = ["{addr}"]
"#,
        addr = up.addr()
    );
    let edge = Server::start(Config::from_toml(&text).unwrap()).expect("edge starts");
    let at = edge.edge_addrs[0];
    let runs: Vec<_> = (0..CLIENTS)
        .map(|me| std::thread::spawn(move || cache_client_run(me, seed, at)))
        .collect();
    let mut seen = Vec::new();
    for (me, r) in runs.into_iter().enumerate() {
        match r.join().unwrap() {
            Ok(s) => seen.extend(s),
            Err(e) => panic!("seed {seed}: client {me}: {e}"),
        }
    }
    let resources = cache_resources();
    let mut bad = Vec::new();
    for (i, (path, cacheable)) in resources.iter().enumerate() {
        let name = path.split('?').next().unwrap();
        // GETs are checked for their variant and counted; a HEAD may be answered from the
        // cache or go upstream (then it counts as a fetch).
        let heads = seen.iter().filter(|s| s.resource == i && s.head).count();
        let of: Vec<&Seen> = seen.iter().filter(|s| s.resource == i && !s.head).collect();
        let varies = path.contains("vary=");
        let mut variants = std::collections::BTreeMap::<Option<&str>, Vec<&Seen>>::new();
        for s in &of {
            // The upstream's line for the varied header names the request's own value.
            if varies {
                let line = format!("x-v: {}\n", s.variant.unwrap_or(""));
                if !s.body.contains(&line) {
                    bad.push(format!(
                        "{path} with X-V {:?} got another variant: {:?}",
                        s.variant,
                        s.body.lines().take(2).collect::<Vec<_>>()
                    ));
                }
            }
            if s.x_cache != "HIT" && s.x_cache != "MISS" {
                bad.push(format!("{path}: X-Cache {:?}", s.x_cache));
            }
            variants
                .entry(if varies { s.variant } else { None })
                .or_default()
                .push(s);
        }
        let fetched = up.requests_for(name) as usize;
        if *cacheable {
            // One upstream request per variant, and every answer of a variant is that one.
            if fetched < variants.len() || fetched > variants.len() + heads {
                bad.push(format!(
                    "{path}: {fetched} upstream requests for {} variants and {heads} HEADs",
                    variants.len()
                ));
            }
            for (v, list) in &variants {
                if list.iter().any(|s| s.body != list[0].body) {
                    bad.push(format!("{path} variant {v:?}: answers differ"));
                }
            }
        } else {
            if fetched != of.len() + heads {
                bad.push(format!(
                    "{path}: {fetched} upstream requests for {} GETs and {heads} HEADs",
                    of.len()
                ));
            }
            if of.iter().any(|s| s.x_cache == "HIT") {
                bad.push(format!("{path}: answered from the cache"));
            }
        }
    }
    assert!(bad.is_empty(), "seed {seed}:\n{}", bad.join("\n"));
    edge.shutdown();
}

// ---------------------------------------------------------------------------------------------
// Upstream answers of every framing

/// What the scripted upstream sends for `path`, and whether it closes the connection after.
fn scripted(path: &str) -> (&'static [u8], bool) {
    match path {
        "/head" => (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Upstream: raw\r\n\r\n", false),
        "/not-modified" => (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\nETag: \"x\"\r\nX-Upstream: raw\r\n\r\n",
            false,
        ),
        "/no-content" => (b"HTTP/1.1 204 No Content\r\nX-Upstream: raw\r\n\r\n", false),
        "/until-close" => (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Upstream: raw\r\n\r\nhello until close",
            true,
        ),
        "/early-hints" => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Upstream: raw\r\n\r\nok",
            false,
        ),
        "/continue" => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Upstream: raw\r\n\r\nyes",
            false,
        ),
        "/trailers" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Upstream: raw\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            false,
        ),
        "/cookies" => (
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/\r\n\
              content-LENGTH: 2\r\nX-Upstream: raw\r\n\r\nhi",
            false,
        ),
        "/http10" => (
            b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\nX-Upstream: raw\r\n\r\nold!",
            true,
        ),
        "/short" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nX-Upstream: raw\r\n\r\nonly some",
            true,
        ),
        _ => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Upstream: raw\r\n\r\nplain", false),
    }
}

/// A raw HTTP/1.1 upstream answering each request with its path's script (requests have no
/// bodies here). Runs until the listener's thread is dropped with the process.
fn scripted_upstream() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                loop {
                    let (len, path) = loop {
                        let mut slots = [httparse::EMPTY_HEADER; 64];
                        let mut r = httparse::Request::new(&mut slots);
                        match r.parse(&buf) {
                            Ok(httparse::Status::Complete(n)) => {
                                break (n, r.path.unwrap_or("/").to_owned())
                            }
                            Ok(httparse::Status::Partial) => {}
                            Err(_) => return,
                        }
                        let mut b = [0u8; 4096];
                        match s.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    };
                    buf.drain(..len);
                    let (answer, close) = scripted(&path);
                    if s.write_all(answer).is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn upstream_answers_of_every_framing_reach_the_client_and_the_connection_goes_on() {
    let up = scripted_upstream();
    for fast_path in [true, false] {
        let text = format!(
            r#"
[general]
workers = 1

[[edge.listener]]
listen = "127.0.0.1:0"
h1_fast_path = {fast_path}

[[edge.route]]
path = "/"
upstream = "raw"
response_timeout = "5s"

[[edge.upstream]]
name = "raw"
servers = ["{up}"]
eject_after = 0
"#
        );
        let edge = Server::start(Config::from_toml(&text).unwrap()).expect("edge starts");
        let at = edge.edge_addrs[0];
        let cases: [(&str, &str, u16, &str); 10] = [
            ("HEAD", "/head", 200, ""),
            ("GET", "/not-modified", 304, ""),
            ("GET", "/no-content", 204, ""),
            ("GET", "/until-close", 200, "hello until close"),
            ("GET", "/early-hints", 200, "ok"),
            ("GET", "/continue", 200, "yes"),
            ("GET", "/trailers", 200, "hello world"),
            ("GET", "/cookies", 200, "hi"),
            ("GET", "/http10", 200, "old!"),
            ("GET", "/plain", 200, "plain"),
        ];
        let path_name = if fast_path { "fast path" } else { "hyper" };
        let mut c = Conn::open(at);
        for (method, path, status, body) in cases {
            let req = format!("{method} {path} HTTP/1.1\r\nHost: example.test\r\n\r\n");
            c.s.write_all(req.as_bytes()).unwrap();
            let (got, headers, got_body) = c
                .answer(method == "HEAD")
                .unwrap_or_else(|e| panic!("{path_name}: {method} {path}: {e}"));
            assert_eq!(
                (got, String::from_utf8_lossy(&got_body).as_ref()),
                (status, body),
                "{path_name}: {method} {path}"
            );
            if path == "/cookies" {
                let cookies: Vec<&str> = headers
                    .iter()
                    .filter(|(n, _)| n == "set-cookie")
                    .map(|(_, v)| v.as_str())
                    .collect();
                assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"], "{path_name}");
            }
            // The same connection serves the next request (or the edge closed it cleanly
            // after an answer it could only end by closing).
            c.s.write_all(b"GET /plain HTTP/1.1\r\nHost: example.test\r\n\r\n")
                .unwrap();
            match c.answer(false) {
                Ok((200, _, b)) if b == b"plain" => {}
                Err(e) if e.contains("closed") && path == "/until-close" => c = Conn::open(at),
                other => panic!("{path_name}: after {method} {path}: {other:?}"),
            }
        }
        // An answer cut short by the upstream: the client must not get it as complete.
        c.s.write_all(b"GET /short HTTP/1.1\r\nHost: example.test\r\n\r\n")
            .unwrap();
        match c.answer(false) {
            Ok((200, _, b)) if b.len() == 50 => {
                panic!("{path_name}: a cut answer arrived as complete")
            }
            Ok((502, _, _)) | Err(_) => {}
            other => panic!("{path_name}: cut answer: {other:?}"),
        }
        edge.shutdown();
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile framing: the edge and the upstream never disagree on where a request ends

/// Request sequences that try to make the edge and the upstream see different requests
/// (request smuggling): each carries a `/smuggled` request that the upstream must only ever
/// see as a request the client got an answer to.
const HOSTILE: &[&str] = &[
    // Both framings: chunked wins (the Content-Length is dropped), the edge closes after.
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    // Two different lengths.
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 45\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 45\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    // Lengths a lax parser reads differently.
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5 \r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    // Transfer codings that are not (only, or last) chunked.
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \tchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    // Header syntax a lax parser accepts.
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nFoo: bar\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    // Chunk sizes a lax parser reads differently.
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    // HTTP/1.0 with a chunked body (no transfer codings in 1.0).
    "POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    // A GET with a body the next request hides in.
    "GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    // Bare CR and NUL in a header value.
    "POST /echo HTTP/1.1\r\nHost: x\r\nX-A: a\rTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\nContent-Length: 5\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
];

/// Every answer on `c` until the edge closes it or stays silent for a while: (status, whether
/// the upstream made it, body).
fn all_answers(c: &mut Conn) -> Vec<(u16, bool, Vec<u8>)> {
    let _ = c.s.set_read_timeout(Some(Duration::from_millis(700)));
    let mut out = Vec::new();
    while let Ok((status, headers, body)) = c.answer(false) {
        let upstream = headers.iter().any(|(n, _)| n == "x-upstream");
        out.push((status, upstream, body));
    }
    out
}

#[test]
fn hostile_framing_never_lets_a_request_reach_the_upstream_unanswered() {
    let up = HttpUpstream::start("prop").unwrap();
    for fast_path in [true, false] {
        let edge = edge(&up, fast_path);
        let at = edge.edge_addrs[0];
        let path_name = if fast_path { "fast path" } else { "hyper" };
        let mut bad = Vec::new();
        for (i, raw) in HOSTILE.iter().enumerate() {
            let before = (up.requests(), up.requests_for("/smuggled"));
            let mut c = Conn::open(at);
            c.s.write_all(raw.as_bytes()).unwrap();
            let answers = all_answers(&mut c);
            // Let anything the edge forwarded arrive before counting.
            std::thread::sleep(Duration::from_millis(100));
            let after = (up.requests(), up.requests_for("/smuggled"));
            let from_upstream = answers.iter().filter(|(_, u, _)| *u).count() as u64;
            let smuggled_answered = answers
                .iter()
                .any(|(_, u, b)| *u && String::from_utf8_lossy(b).contains("/smuggled"));
            let summary: Vec<(u16, bool)> = answers.iter().map(|(s, u, _)| (*s, *u)).collect();
            // Every request the upstream saw was answered: by it, or by the edge when the
            // request's body failed on the way (400).
            let by_edge_for_body =
                answers.iter().filter(|(s, u, _)| !*u && *s == 400).count() as u64;
            if after.0 - before.0 > from_upstream + by_edge_for_body {
                bad.push(format!(
                    "{path_name} case {i}: the upstream got {} requests, the client {from_upstream} answers from it {summary:?}",
                    after.0 - before.0
                ));
            }
            if answers.iter().any(|(s, u, _)| !*u && *s >= 500) {
                bad.push(format!(
                    "{path_name} case {i}: a server error for the client's own bad request {summary:?}"
                ));
            }
            if after.1 > before.1 && !smuggled_answered {
                bad.push(format!(
                    "{path_name} case {i}: /smuggled reached the upstream unanswered {summary:?}"
                ));
            }
            if answers.is_empty() {
                bad.push(format!("{path_name} case {i}: no answer at all"));
            }
        }
        // Broken request bodies are the client's fault: however many, the server is not
        // ejected for them (five failures in a row would eject it).
        for _ in 0..8 {
            let mut c = Conn::open(at);
            c.s.write_all(HOSTILE[16].as_bytes()).unwrap();
            all_answers(&mut c);
        }
        let mut c = Conn::open(at);
        c.s.write_all(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        match c.answer(false) {
            Ok((200, h, _)) if h.iter().any(|(n, _)| n == "x-upstream") => {}
            other => bad.push(format!("{path_name}: after broken bodies: {other:?}")),
        }
        edge.shutdown();
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

/// The run's seed: `SWITCHYARD_PROP_SEED` if set, else a random one; printed either way, so a
/// failing run can be repeated.
fn prop_seed() -> u64 {
    use rand::Rng;
    let seed = std::env::var("SWITCHYARD_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("SWITCHYARD_PROP_SEED={seed}");
    seed
}
