//! HTTP/2 from the edge to its upstreams (`[[edge.upstream]] protocol = "h2"`): real gRPC
//! servers and clients (grpcio, tests/support/grpc_echo.py) through the edge give exactly what
//! they give directly (unary calls up to 3 MiB, server, client and bidirectional streaming,
//! status codes and details, initial and trailing metadata, deadlines, 200 calls at once on
//! one channel), spread over two servers, over h2c and over TLS with ALPN on either side; and
//! an HTTP server reached over HTTP/2 sees the client's host as :authority, gets bodies of
//! unknown length, answers health checks made over HTTP/2, and refuses nothing an HTTP/1.1
//! group would take but upgrades.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::pki::pki;
use support::process::PortProcess;
use switchyard::app::Server;
use switchyard::config::Config;
use switchyard::testkit::http::HttpUpstream;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/grpc_echo.py");

/// A gRPC server process (stopped when dropped).
struct Grpc;

impl Grpc {
    /// `tls`: serve over TLS with the test authority's server certificate.
    fn start(name: &str, tls: bool) -> PortProcess {
        Self::start_with(name, tls, None)
    }

    /// `max_age_ms`: the server ends each connection with a GOAWAY after that long.
    fn start_with(name: &str, tls: bool, max_age_ms: Option<u64>) -> PortProcess {
        let p = pki();
        let mut cmd = Command::new("python3");
        cmd.args([SCRIPT, "serve", name]);
        if let Some(ms) = max_age_ms {
            cmd.env("MAX_AGE_MS", ms.to_string());
        }
        if tls {
            cmd.args([&p.server_cert, &p.server_key]);
        }
        PortProcess::start(cmd, "grpcio: scripts/install-deps.sh installs it")
    }
}

/// Run grpc_echo.py with `args` (a client mode), bounded in time; it must complete.
fn run_client(args: &[&str], limit: Duration) -> support::drivers::Outcome {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("python3");
    cmd.arg(SCRIPT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let out = support::drivers::run_bounded(&mut cmd, format!("grpc_echo.py {args:?}"), limit);
    out.expect_completed();
    out
}

/// One HTTP/1.1 exchange on a fresh connection to `addr`: `request` out, everything until
/// the server closes (10 s at most per read) back.
fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    answer
}

/// Run the client's scenarios against `target`; (the lines every well-behaved server gives
/// alike, the "servers" line).
fn scenarios(target: &str, ca: Option<&str>, authority: Option<&str>) -> (String, String) {
    let mut args = vec!["client", target, ca.unwrap_or("")];
    args.extend(authority);
    let out = run_client(&args, Duration::from_secs(120));
    let (servers, same): (Vec<&str>, Vec<&str>) = out
        .lines()
        .into_iter()
        .partition(|l| l.starts_with("servers "));
    (same.join("\n"), servers.join("\n"))
}

/// The count per server name in a "servers a=120 b=80" line.
fn counts(line: &str) -> Vec<(String, u32)> {
    line.trim_start_matches("servers ")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

#[test]
fn grpc_through_the_edge_is_grpc_directly_over_h2c_and_tls() {
    let p = pki();
    let (a, b, t) = (
        Grpc::start("a", false),
        Grpc::start("b", false),
        Grpc::start("t", true),
    );
    let text = format!(
        r#"
[general]
workers = 2
[[edge.listener]]
name = "plain"
listen = "127.0.0.1:0"
[[edge.listener]]
name = "tls"
listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
[[edge.route]]
path = "/"
upstream = "grpc"
[[edge.route]]
host = "secure.test"
path = "/"
upstream = "grpc-tls"
[[edge.upstream]]
name = "grpc"
protocol = "h2"
servers = ["127.0.0.1:{pa}", "127.0.0.1:{pb}"]
[[edge.upstream]]
name = "grpc-tls"
protocol = "h2"
servers = ["localhost:{pt}"]
tls = "verify-full"
tls_ca_file = "{ca}"
"#,
        cert = p.server_cert,
        key = p.server_key,
        ca = p.ca,
        pa = a.port,
        pb = b.port,
        pt = t.port,
    );
    let cfg = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let s = Server::start(cfg).expect("edge starts");
    let (plain, tls) = (s.edge_addrs[0], s.edge_addrs[1]);

    let (direct, _) = scenarios(&format!("127.0.0.1:{}", a.port), None, None);
    assert!(
        direct.contains("fail: NOT_FOUND no such thing: thing"),
        "{direct}"
    );
    assert!(direct.contains("unary 3145728: same=True"), "{direct}");

    // h2c to the edge, h2c to two servers: the same answers, spread over both.
    let (through, servers) = scenarios(&plain.to_string(), None, None);
    assert_eq!(through, direct, "through the edge (h2c both sides)");
    let c = counts(&servers);
    assert_eq!(c.len(), 2, "{servers}");
    assert!(c.iter().all(|(_, n)| *n >= 60), "{servers}");

    // The host routes to the group whose server speaks TLS (ALPN h2, certificate checked).
    let (through, servers) = scenarios(&plain.to_string(), None, Some("secure.test"));
    assert_eq!(through, direct, "through the edge to a TLS server");
    assert_eq!(servers, "servers t=200");

    // TLS from the client to the edge too (the edge's listener offers h2 by ALPN).
    let target = format!("localhost:{}", tls.port());
    let (through, _) = scenarios(&target, Some(&p.ca), None);
    assert_eq!(through, direct, "TLS to the edge, h2c to the servers");
    let (through, servers) = scenarios(&target, Some(&p.ca), Some("secure.test"));
    assert_eq!(through, direct, "TLS on both sides");
    assert_eq!(servers, "servers t=200");
    s.shutdown();
}

#[test]
fn an_http2_group_sends_the_authority_streams_bodies_and_checks_health_over_http2() {
    let u = HttpUpstream::start("h2").unwrap();
    let text = format!(
        r#"
[general]
workers = 2
[admin]
listen = "127.0.0.1:0"
[[edge.listener]]
listen = "127.0.0.1:0"
[[edge.route]]
path = "/"
upstream = "web"
[[edge.upstream]]
name = "web"
protocol = "h2"
servers = ["{}"]
[edge.upstream.health]
interval = "100ms"
rise = 1
fall = 1
"#,
        u.addr()
    );
    let s = Server::start(Config::from_toml(&text).unwrap()).expect("edge starts");
    let edge = s.edge_addrs[0];

    // HTTP/1.1 client, HTTP/2 upstream: the Host is the :authority, hop-by-hop headers go,
    // a chunked body arrives whole.
    let answer = exchange(
        edge,
        b"POST /echo HTTP/1.1\r\nHost: app.example:8080\r\nTE: trailers\r\nX-Custom: 1\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = answer.split_once("\r\n\r\n").unwrap().1;
    let json = json.lines().find(|l| l.starts_with('{')).unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["version"], "HTTP/2.0", "{v}");
    assert_eq!(v["authority"], "app.example:8080", "{v}");
    assert_eq!(v["body"], "hello world", "{v}");
    assert_eq!(v["headers"]["x-custom"], "1", "{v}");
    assert_eq!(v["headers"]["te"], "trailers", "{v}");
    assert!(v["headers"].get("host").is_none(), "{v}");
    assert!(v["headers"].get("transfer-encoding").is_none(), "{v}");

    // An upgrade cannot go to an HTTP/2 group: 502, said so.
    let mut c = std::net::TcpStream::connect(edge).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = c.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");

    // Health checks over HTTP/2 see the server, and its failing takes it out.
    let checks = u.health_requests();
    let deadline = Instant::now() + Duration::from_secs(10);
    while u.health_requests() < checks + 3 {
        assert!(Instant::now() < deadline, "no health checks arrive");
        std::thread::sleep(Duration::from_millis(50));
    }
    u.set_healthy(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = exchange(
            edge,
            b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("no server of upstream"), "{answer}");
            break;
        }
        assert!(Instant::now() < deadline, "still served: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.shutdown();
}

/// gRPC servers end connections after `max_connection_age` with a GOAWAY: calls arriving
/// after it go on a new connection (none fails), on one server as on two.
#[test]
fn calls_keep_succeeding_while_the_server_ends_connections_with_goaway() {
    let (a, b) = (
        Grpc::start_with("a", false, Some(300)),
        Grpc::start_with("b", false, Some(300)),
    );
    for servers in [vec![a.port], vec![a.port, b.port]] {
        let list: Vec<String> = servers
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let text = format!(
            "[general]\nworkers = 1\n[[edge.listener]]\nlisten = \"127.0.0.1:0\"\n\
             [[edge.route]]\npath = \"/\"\nupstream = \"g\"\n\
             [[edge.upstream]]\nname = \"g\"\nprotocol = \"h2\"\nservers = [{}]\n\
             eject_after = 0\n",
            list.join(", ")
        );
        let s = Server::start(Config::from_toml(&text).unwrap()).expect("edge starts");
        let edge = s.edge_addrs[0].to_string();
        let out = run_client(&["repeat", &edge, "60", "30"], Duration::from_secs(60));
        assert_eq!(out.value("answered"), Some("60"), "{}", out.describe());
        // The servers did end connections meanwhile (each call names the connection it came
        // on): at least three in about two seconds at a 300 ms age.
        let conns: u32 = out.value("connections").unwrap().parse().unwrap();
        assert!(conns >= 3, "{}", out.describe());
        s.shutdown();
    }
}

/// What the frame-level HTTP/2 server below does with the streams it gets.
#[derive(Clone, Copy, PartialEq)]
enum Unprocessed {
    /// On its first connection: holds the first request; at the second, sends GOAWAY naming
    /// the first as the last it takes (the second was not processed), then answers the first.
    GoAway,
    /// Resets the first request that has a body with REFUSED_STREAM after its first DATA
    /// frame (part of the body was sent; the server took none of it).
    Refused,
}

/// An h2c server written at the frame level, so that it can refuse streams the way real
/// servers do at the worst moment (a race otherwise: gRPC servers' `max_connection_age`).
/// Every stream it answers gets "conn N: <the request body>". Returns the port and the
/// count of requests seen.
fn unprocessing_server(mode: Unprocessed) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    use std::sync::atomic::{AtomicBool, AtomicU32};
    use std::sync::Arc;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicU32::new(0));
    let refused = Arc::new(AtomicBool::new(false));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for (n, c) in l.incoming().enumerate() {
            let Ok(c) = c else { return };
            let (seen, refused) = (counter.clone(), refused.clone());
            std::thread::spawn(move || serve_frames(c, n + 1, mode, &seen, &refused));
        }
    });
    (port, seen)
}

fn h2_frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HEADERS with ":status: 200" (HPACK static index 8) and its content-length (a literal
/// with the static table's name 28), then the body as one DATA frame.
fn h2_answer(stream: u32, body: &[u8]) -> Vec<u8> {
    let len = body.len().to_string();
    let mut block = vec![0x88, 0x0f, 0x0d, len.len() as u8];
    block.extend_from_slice(len.as_bytes());
    let mut out = h2_frame(1, 0x4, stream, &block);
    out.extend(h2_frame(0, 0x1, stream, body));
    out
}

fn serve_frames(
    mut c: std::net::TcpStream,
    conn: usize,
    mode: Unprocessed,
    seen: &std::sync::atomic::AtomicU32,
    refused: &std::sync::atomic::AtomicBool,
) {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut preface = [0u8; 24];
    if c.read_exact(&mut preface).is_err() {
        return;
    }
    let _ = c.write_all(&h2_frame(4, 0, 0, &[]));
    let mut bodies: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut held: Option<u32> = None;
    let mut dropped: Vec<u32> = Vec::new();
    loop {
        let mut head = [0u8; 9];
        if c.read_exact(&mut head).is_err() {
            return;
        }
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let (ty, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if c.read_exact(&mut payload).is_err() {
            return;
        }
        let end_stream = flags & 0x1 != 0;
        let mut out = Vec::new();
        match ty {
            // SETTINGS and PING get their ACKs; GOAWAY from the client ends the connection.
            4 if flags & 0x1 == 0 => out = h2_frame(4, 0x1, 0, &[]),
            6 if flags & 0x1 == 0 => out = h2_frame(6, 0x1, 0, &payload),
            7 => return,
            1 => {
                seen.fetch_add(1, Ordering::SeqCst);
                bodies.insert(stream, Vec::new());
                if mode == Unprocessed::GoAway && conn == 1 {
                    match held {
                        None => held = Some(stream),
                        Some(first) => {
                            // GOAWAY: last stream id `first`, NO_ERROR.
                            let mut p = first.to_be_bytes().to_vec();
                            p.extend_from_slice(&0u32.to_be_bytes());
                            out = h2_frame(7, 0, 0, &p);
                            out.extend(h2_answer(first, b"held"));
                            dropped.push(stream);
                        }
                    }
                } else if end_stream {
                    out = h2_answer(stream, format!("conn {conn}: ").as_bytes());
                }
            }
            0 if !dropped.contains(&stream) => {
                if mode == Unprocessed::Refused && !refused.swap(true, Ordering::SeqCst) {
                    // RST_STREAM, REFUSED_STREAM (7).
                    out = h2_frame(3, 0, stream, &7u32.to_be_bytes());
                    dropped.push(stream);
                } else if let Some(b) = bodies.get_mut(&stream) {
                    b.extend_from_slice(&payload);
                    if end_stream {
                        let mut body = format!("conn {conn}: ").into_bytes();
                        body.extend_from_slice(b);
                        out = h2_answer(stream, &body);
                    }
                }
            }
            _ => {}
        }
        if !out.is_empty() && c.write_all(&out).is_err() {
            return;
        }
    }
}

/// The body of an HTTP/1.1 answer (read until the edge closes), or the whole answer if it is
/// not a 200.
fn body_of_200(answer: &str) -> &str {
    if !answer.starts_with("HTTP/1.1 200") {
        return answer;
    }
    answer.split_once("\r\n\r\n").map_or(answer, |(_, b)| b)
}

/// A stream the server says it did not process (beyond a GOAWAY's last stream id, or reset
/// with REFUSED_STREAM) is sent again, body and all, whatever its method: the server did
/// nothing with it. gRPC servers end connections this way every `max_connection_age`.
#[test]
fn a_stream_the_server_did_not_process_is_sent_again_with_its_body() {
    for mode in [Unprocessed::GoAway, Unprocessed::Refused] {
        let (port, seen) = unprocessing_server(mode);
        let text = format!(
            "[general]\nworkers = 1\n[[edge.listener]]\nlisten = \"127.0.0.1:0\"\n\
             [[edge.route]]\npath = \"/\"\nupstream = \"g\"\n\
             [[edge.upstream]]\nname = \"g\"\nprotocol = \"h2\"\n\
             servers = [\"127.0.0.1:{port}\"]\neject_after = 0\n"
        );
        let s = Server::start(Config::from_toml(&text).unwrap()).expect("edge starts");
        let edge = s.edge_addrs[0];
        if mode == Unprocessed::GoAway {
            let first = std::thread::spawn(move || {
                exchange(
                    edge,
                    b"GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while seen.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                assert!(Instant::now() < deadline, "the first request never arrived");
                std::thread::sleep(Duration::from_millis(10));
            }
            let second = exchange(
                edge,
                b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\
                  Connection: close\r\n\r\nhello world",
            );
            assert_eq!(body_of_200(&second), "conn 2: hello world", "{second}");
            let first = first.join().unwrap();
            assert_eq!(body_of_200(&first), "held", "{first}");
        } else {
            // The body goes out in two parts with a pause between: the server refuses the
            // stream after the first, and the edge sends both again on a new stream.
            let mut c = std::net::TcpStream::connect(edge).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(
                b"POST /refused HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                  Connection: close\r\n\r\n5\r\nhello\r\n",
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            c.write_all(b"6\r\n world\r\n0\r\n\r\n").unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).unwrap();
            assert_eq!(body_of_200(&answer), "conn 1: hello world", "{answer}");
            assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
        }
        s.shutdown();
    }
}
