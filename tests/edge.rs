//! The HTTP edge against real HTTP upstream servers (src/testkit/http.rs), through real
//! clients: hyper's client, curl (HTTP/2 over TLS), Debian's Chromium driven by playwright-core
//! (tests/drivers/node/browser.js), raw sockets for the abusive ones.

#[path = "support/haproxy.rs"]
mod haproxy;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use switchyard::app::Server;
use switchyard::config::Config;
use switchyard::testkit::http::HttpUpstream;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An answer as a test sees it.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

async fn get_with(
    c: &Client<HttpConnector, Empty<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        c.request(b.body(Empty::new()).unwrap()),
    )
    .await
    .expect("answer within 20 s")
    .expect("request succeeds");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get(url: &str) -> Resp {
    let c = client();
    rt().block_on(get_with(&c, "GET", url, &[]))
}

/// `n` sequential GETs on one keep-alive connection.
fn get_n(url: &str, n: usize) -> Vec<Resp> {
    let c = client();
    rt().block_on(async {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(get_with(&c, "GET", url, &[]).await);
        }
        out
    })
}

/// `n` GETs at once, each on its own client (its own connection).
fn concurrent_gets(url: &str, n: usize) -> Vec<Resp> {
    rt().block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let url = url.to_owned();
                tokio::spawn(async move { get_with(&client(), "GET", &url, &[]).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
}

fn start(text: &str) -> Server {
    let cfg = Config::from_toml(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Server::start(cfg).expect("proxy starts")
}

fn base(s: &Server) -> String {
    format!("http://{}", s.edge_addrs[0])
}

fn servers(ups: &[&HttpUpstream]) -> String {
    ups.iter()
        .map(|u| format!("\"{}\"", u.addr()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One listener, one route to one group; `route` and `upstream` add keys to those tables.
fn simple(ups: &[&HttpUpstream], route: &str, upstream: &str) -> String {
    format!(
        r#"
[general]
workers = 2

[[edge.listener]]
listen = "127.0.0.1:0"

[[edge.route]]
path = "/"
upstream = "web"
{route}

[[edge.upstream]]
name = "web"
servers = [{servers}]
{upstream}
"#,
        servers = servers(ups)
    )
}

/// The upstream pool: a connection idle longer than the group's `idle_timeout` is not used
/// again (a new one is opened), and no more than `max_idle` are kept per server and worker.
#[test]
fn upstream_connections_expire_after_idle_timeout_and_max_idle_caps_the_pool() {
    let up = HttpUpstream::start("pool").unwrap();
    let mut text = simple(&[&up], "", "idle_timeout = \"400ms\"\nmax_idle = 2");
    text = text.replace("workers = 2", "workers = 1");
    let s = start(&text);
    let url = format!("{}/p", base(&s));
    assert!(get_n(&url, 5).iter().all(|r| r.status == 200));
    assert_eq!(
        up.connections(),
        1,
        "sequential requests share one connection"
    );
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(get(&url).status, 200);
    assert_eq!(
        up.connections(),
        2,
        "a connection idle past idle_timeout was reused"
    );
    // Six at once need six connections; two stay idle afterwards, so six more at once open
    // four new ones.
    let burst = || {
        rt().block_on(async {
            let c = client();
            let url = format!("{url}?delay_ms=300");
            let all = (0..6).map(|_| get_with(&c, "GET", &url, &[]));
            futures_util::future::join_all(all).await
        })
    };
    assert!(burst().iter().all(|r| r.status == 200));
    assert_eq!(up.connections(), 2 + 5);
    assert!(burst().iter().all(|r| r.status == 200));
    assert_eq!(
        up.connections(),
        7 + 4,
        "max_idle = 2 kept more or fewer than two"
    );
}

#[test]
fn round_robin_splits_evenly_and_weights_split_in_proportion() {
    let ups: Vec<HttpUpstream> = (0..3)
        .map(|i| HttpUpstream::start(&format!("u{i}")).unwrap())
        .collect();
    let refs: Vec<&HttpUpstream> = ups.iter().collect();
    let s = start(&simple(&refs, "", ""));
    let answers = get_n(&format!("{}/rr", base(&s)), 300);
    assert!(answers.iter().all(|r| r.status == 200));
    let counts: Vec<u64> = ups.iter().map(|u| u.requests_for("/rr")).collect();
    assert_eq!(counts, vec![100, 100, 100]);
    // Upstream connections are pooled: one request at a time needs one connection per
    // upstream and worker (the client may open a second connection, which can land on the
    // other worker), not one per request.
    let conns: Vec<u64> = ups.iter().map(|u| u.connections()).collect();
    assert!(
        conns.iter().all(|&c| (1..=2).contains(&c)),
        "upstream connections were not reused: {conns:?}"
    );
    s.shutdown();

    let weighted = format!(
        r#"
[general]
workers = 2
[[edge.listener]]
listen = "127.0.0.1:0"
[[edge.route]]
path = "/"
upstream = "web"
[[edge.upstream]]
name = "web"
balance = "weighted_round_robin"
servers = [{{ addr = "{}", weight = 3 }}, {{ addr = "{}", weight = 1 }}]
"#,
        ups[0].addr(),
        ups[1].addr()
    );
    let s = start(&weighted);
    // Two clients at once, so both workers pick.
    let url = format!("{}/w", base(&s));
    let (a, b) = std::thread::scope(|sc| {
        let h1 = sc.spawn(|| get_n(&url, 200));
        let h2 = sc.spawn(|| get_n(&url, 200));
        (h1.join().unwrap(), h2.join().unwrap())
    });
    assert!(a.iter().chain(&b).all(|r| r.status == 200));
    let (w3, w1) = (ups[0].requests_for("/w"), ups[1].requests_for("/w"));
    assert_eq!(w3 + w1, 400);
    let share = w3 as f64 / 400.0;
    assert!((share - 0.75).abs() <= 0.05, "3:1 split was {w3}:{w1}");
    s.shutdown();
}

#[test]
fn a_stopped_upstream_costs_no_failed_request_and_comes_back_after_rise() {
    let a = HttpUpstream::start("a").unwrap();
    let b = HttpUpstream::start("b").unwrap();
    let port = b.port();
    let s = start(&simple(
        &[&a, &b],
        "",
        "[edge.upstream.health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 2",
    ));
    let url = format!("{}/h", base(&s));
    assert!(get_n(&url, 20).iter().all(|r| r.status == 200));
    assert!(b.requests_for("/h") > 0);
    b.stop();
    // Even before the checks notice, idempotent requests are retried on the other server.
    let during = get_n(&url, 50);
    assert!(during.iter().all(|r| r.status == 200), "{during:?}");
    // After the fall count: every request goes to `a`.
    std::thread::sleep(Duration::from_millis(200 * 2 + 600));
    let before = a.requests_for("/h");
    let after = get_n(&url, 100);
    assert!(after.iter().all(|r| r.status == 200));
    assert_eq!(a.requests_for("/h") - before, 100);
    let b = HttpUpstream::start_on("b", port).unwrap();
    // Back after `rise` passed checks (400 ms here; polled, so a loaded machine only waits
    // longer).
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.requests_for("/h") == 0 && Instant::now() < deadline {
        assert!(get_n(&url, 5).iter().all(|r| r.status == 200));
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = b.requests_for("/h");
    let back = get_n(&url, 40);
    assert!(back.iter().all(|r| r.status == 200));
    assert_eq!(
        b.requests_for("/h") - before,
        20,
        "the restarted upstream has its turn again"
    );
    s.shutdown();
}

#[test]
fn an_upstream_answering_503_is_retried_for_gets_and_puts_but_not_for_posts() {
    let good = HttpUpstream::start("good").unwrap();
    let bad = HttpUpstream::start("bad").unwrap();
    bad.force_status(Some(503));
    // eject_after = 0: the bad server stays in rotation, so every other request meets it.
    let s = start(&simple(
        &[&good, &bad],
        "",
        "eject_after = 0\nretry_budget = 1.0",
    ));
    let answers = get_n(&format!("{}/r", base(&s)), 40);
    assert!(answers.iter().all(|r| r.status == 200), "{answers:?}");
    assert!(answers.iter().all(|r| r.body.starts_with("good")));
    assert!(bad.requests_for("/r") >= 15, "the bad server was tried");
    // A POST is not idempotent: the client sees the 503 when it meets the bad server.
    let c = client();
    let posts: Vec<u16> = rt().block_on(async {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(
                get_with(&c, "POST", &format!("{}/p", base(&s)), &[])
                    .await
                    .status,
            );
        }
        v
    });
    assert!(posts.contains(&503) && posts.contains(&200), "{posts:?}");
    // A PUT is idempotent: its (small) body is held so the retry can send it again.
    let puts: Vec<(u16, String)> = rt().block_on(async {
        let c: Client<HttpConnector, http_body_util::Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut v = Vec::new();
        for i in 0..6 {
            let req = http::Request::put(format!("{}/echo", base(&s)))
                .body(http_body_util::Full::new(Bytes::from(format!(
                    "payload {i}"
                ))))
                .unwrap();
            let r = c.request(req).await.unwrap();
            let status = r.status().as_u16();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            v.push((status, String::from_utf8_lossy(&body).into_owned()));
        }
        v
    });
    for (i, (status, body)) in puts.iter().enumerate() {
        assert_eq!(*status, 200, "{body}");
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["upstream"], "good", "{doc}");
        assert_eq!(doc["body"], format!("payload {i}"), "{doc}");
    }
    assert!(
        bad.requests_for("/echo") >= 1,
        "the bad server was never met by a PUT"
    );
    s.shutdown();
}

/// The edge section of the admin API's `/status` for the only server of group "web".
fn status_of_server(s: &Server) -> serde_json::Value {
    let body = get(&format!("http://{}/status", s.admin_addr.unwrap())).body;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let edge = &v["edge"];
    assert_eq!(edge["routes"][0]["upstream"], "web", "{edge}");
    assert_eq!(edge["upstreams"][0]["name"], "web", "{edge}");
    edge["upstreams"][0]["servers"][0].clone()
}

/// Also: the admin API's `/status` shows the server down (not eligible) and back up.
#[test]
fn when_every_server_is_down_the_answer_is_503_naming_the_group() {
    let a = HttpUpstream::start("a").unwrap();
    a.set_healthy(false);
    let s = start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        simple(
            &[&a],
            "",
            "[edge.upstream.health]\ninterval = \"100ms\"\ntimeout = \"200ms\"\nfall = 1",
        )
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut r = get(&format!("{}/x", base(&s)));
    while r.status != 503 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        r = get(&format!("{}/x", base(&s)));
    }
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("no server of upstream \"web\" is up"),
        "{}",
        r.body
    );
    let down = status_of_server(&s);
    assert_eq!(down["addr"], a.addr().to_string(), "{down}");
    assert_eq!(
        (&down["up"], &down["eligible"]),
        (&false.into(), &false.into()),
        "{down}"
    );
    a.set_healthy(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&format!("{}/x", base(&s))).status != 200 {
        assert!(Instant::now() < deadline, "the server never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let up = status_of_server(&s);
    assert_eq!(
        (&up["up"], &up["eligible"], &up["outstanding"]),
        (&true.into(), &true.into(), &0.into()),
        "{up}"
    );
    s.shutdown();
}

#[test]
fn cache_serves_fresh_responses_once_keeps_variants_apart_and_coalesces_misses() {
    let u = HttpUpstream::start("c").unwrap();
    let s = start(&simple(&[&u], "cache = true", ""));
    let b = base(&s);
    let hits = get_n(&format!("{b}/fresh?cc=max-age%3D60"), 100);
    assert!(hits
        .iter()
        .all(|r| r.status == 200 && r.body == hits[0].body));
    assert_eq!(u.requests_for("/fresh"), 1);
    assert_eq!(hits[0].headers["x-cache"], "MISS");
    assert_eq!(hits[99].headers["x-cache"], "HIT");
    assert!(hits[99].headers.contains_key("age"));

    let stored = get_n(&format!("{b}/nostore?cc=no-store"), 100);
    assert!(stored.iter().all(|r| r.status == 200));
    assert_eq!(u.requests_for("/nostore"), 100);

    let c = client();
    let url = format!("{b}/vary?cc=max-age%3D60&vary=Accept-Encoding");
    let bodies: Vec<(String, String)> = rt().block_on(async {
        let mut v = Vec::new();
        for enc in ["gzip", "identity", "gzip", "identity", "gzip"] {
            let r = get_with(&c, "GET", &url, &[("accept-encoding", enc)]).await;
            v.push((enc.to_string(), r.body));
        }
        v
    });
    assert_eq!(
        u.requests_for("/vary"),
        2,
        "one upstream request per variant"
    );
    for (enc, body) in &bodies {
        assert!(body.contains(enc.as_str()), "{enc} got {body}");
    }

    // 50 concurrent misses of a slow resource: one upstream request.
    let all = concurrent_gets(&format!("{b}/slow?cc=max-age%3D60&delay_ms=300"), 50);
    assert!(all.iter().all(|r| r.status == 200 && r.body == all[0].body));
    assert_eq!(u.requests_for("/slow"), 1);
    s.shutdown();
}

/// Cacheable responses without a Content-Length (chunked) are kept while they stream to the
/// first client and stored at their end; one larger than `max_object_bytes` streams whole
/// and is not stored; concurrent misses of a streamed one still make one upstream request.
#[test]
fn cache_stores_streamed_responses_and_passes_oversized_ones_whole() {
    let u = HttpUpstream::start("chunks").unwrap();
    let text = format!(
        "{}\n[edge.cache]\nmax_object_bytes = 65536\n",
        simple(&[&u], "cache = true", "")
    );
    let s = start(&text);
    let b = base(&s);
    let all = get_n(
        &format!("{b}/chunk?cc=max-age%3D60&chunked=1&size=5000"),
        20,
    );
    assert!(all.iter().all(|r| r.status == 200 && r.body == all[0].body));
    assert_eq!(all[0].body.len(), 5000);
    assert!(
        all[0].headers.get("content-length").is_none(),
        "{:?}",
        all[0].headers
    );
    assert_eq!(all[0].headers["x-cache"], "MISS");
    assert_eq!(all[19].headers["x-cache"], "HIT");
    assert_eq!(all[19].headers["content-length"], "5000");
    assert_eq!(u.requests_for("/chunk"), 1);

    let big = get_n(&format!("{b}/big?cc=max-age%3D60&chunked=1&size=200000"), 3);
    assert!(big
        .iter()
        .all(|r| r.status == 200 && r.body.len() == 200_000));
    assert_eq!(u.requests_for("/big"), 3, "an oversized body was stored");

    let all = concurrent_gets(
        &format!("{b}/slowchunk?cc=max-age%3D60&chunked=1&delay_ms=300"),
        20,
    );
    assert!(all.iter().all(|r| r.status == 200 && r.body == all[0].body));
    assert_eq!(u.requests_for("/slowchunk"), 1);
    s.shutdown();
}

#[test]
fn rate_limit_answers_429_with_retry_after_on_its_route_only() {
    let u = HttpUpstream::start("r").unwrap();
    let text = format!(
        r#"
[general]
workers = 2
[[edge.listener]]
listen = "127.0.0.1:0"
[[edge.route]]
path = "/limited"
upstream = "web"
rate_limit = {{ rate = 10, burst = 10 }}
[[edge.route]]
path = "/"
upstream = "web"
[[edge.upstream]]
name = "web"
servers = ["{}"]
"#,
        u.addr()
    );
    let s = start(&text);
    let b = base(&s);
    // Eleven requests in the same instant: ten pass, the eleventh waits for a token (100 ms).
    // Sent at once on eleven open connections; a round slower than 100 ms proves nothing
    // (a token came back meanwhile) and is tried again after the bucket refilled.
    let url = format!("{b}/limited");
    let mut verdict = None;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(1100));
        let (answers, took) = rt().block_on(async {
            let clients: Vec<_> = (0..11).map(|_| client()).collect();
            for c in &clients {
                // Open each connection first (a route without a limit).
                assert_eq!(
                    get_with(c, "GET", &format!("{b}/warm"), &[]).await.status,
                    200
                );
            }
            let t0 = Instant::now();
            let tasks: Vec<_> = clients
                .into_iter()
                .map(|c| {
                    let url = url.clone();
                    tokio::spawn(async move { get_with(&c, "GET", &url, &[]).await })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            (out, t0.elapsed())
        });
        if took < Duration::from_millis(100) {
            verdict = Some(answers);
            break;
        }
    }
    let answers = verdict.expect("eleven requests within 100 ms in one of five rounds");
    let limited: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!(answers.iter().filter(|r| r.status == 200).count(), 10);
    assert_eq!(limited.len(), 1);
    let retry: u64 = limited[0].headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1);
    assert!(get_n(&format!("{b}/other"), 30)
        .iter()
        .all(|r| r.status == 200));
    s.shutdown();
}

/// Read one HTTP/1.1 response from `c` (buffered in `pending`): status, headers (lower-case
/// names), body (chunked decoded; none for HEAD, 204 and 304).
fn read_response<C: Read>(
    c: &mut C,
    pending: &mut Vec<u8>,
    head_only: bool,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let fill = |c: &mut C, pending: &mut Vec<u8>| {
        let mut b = [0u8; 16384];
        let n = c.read(&mut b).expect("read");
        assert!(
            n > 0,
            "connection closed early; have {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&b[..n]);
    };
    let (len, status, headers) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut slots);
        if let httparse::Status::Complete(n) = r.parse(pending).unwrap() {
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
        fill(c, pending);
    };
    pending.drain(..len);
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if head_only || status == 204 || status == 304 {
        return (status, headers, body);
    }
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let line_end = loop {
                if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(c, pending);
            };
            let line = String::from_utf8_lossy(&pending[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
            pending.drain(..line_end + 2);
            while pending.len() < size + 2 {
                fill(c, pending);
            }
            body.extend_from_slice(&pending[..size]);
            pending.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while pending.len() < n {
            fill(c, pending);
        }
        body = pending.drain(..n).collect();
    }
    (status, headers, body)
}

/// HTTP/1.1 takes the edge's own fast path while requests are simple: pipelined GET (a
/// chunked answer) and HEAD in one write, the forwarding headers, then on the same
/// connection a POST with a body, which hands the connection to hyper, which serves it and
/// the rest (the `Connection: close` of the last request is honoured). Over plain TCP and
/// over TLS (ALPN http/1.1 offered, and no ALPN at all).
#[test]
fn the_http1_fast_path_serves_simple_requests_then_hands_the_connection_to_hyper() {
    let dir = tempfile::tempdir().unwrap();
    let (der, cert, key) = cert_files_der(dir.path());
    for (what, alpn) in [
        ("plain", None),
        ("tls", Some(&[b"http/1.1".as_slice()][..])),
        ("tls", Some(&[][..])),
    ] {
        let u = HttpUpstream::start("f").unwrap();
        let tls = match alpn {
            None => String::new(),
            Some(_) => format!("\ntls_cert = \"{cert}\"\ntls_key = \"{key}\""),
        };
        let s = start(&simple(&[&u], "", "").replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:0\"{tls}"),
        ));
        let addr = s.edge_addrs[0];
        match alpn {
            None => {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                fast_then_hyper(&mut c, &u, "http");
            }
            Some(alpn) => {
                let mut c = tls_connect(&der, addr, alpn);
                fast_then_hyper(&mut c, &u, "https");
                assert_eq!(c.conn.alpn_protocol(), alpn.first().copied(), "{what}");
            }
        }
        s.shutdown();
    }
}

/// A client that reads each answer only after a pause, through a small receive buffer (the
/// socket fills, the edge's writes wait and resume), gets all of it and the connection takes
/// the next request; bodies of many sizes, by Content-Length and chunked, plain and TLS.
/// (Over TLS the edge flushes at the end of each answer; a test could not make the last
/// records of an answer wait in the TLS layer on loopback, whose writable wake-ups come with
/// room to spare, so it does not show the flush is needed.)
#[test]
fn a_client_that_reads_late_gets_the_whole_of_a_large_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (der, cert, key) = cert_files_der(dir.path());
    let u = HttpUpstream::start("late").unwrap();
    let tls = format!("\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"");
    for over_tls in [false, true] {
        let with = if over_tls { tls.as_str() } else { "" };
        let s = start(&simple(&[&u], "", "").replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:0\"{with}"),
        ));
        let addr = s.edge_addrs[0];
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(8 * 1024).unwrap();
        sock.connect(&addr.into()).unwrap();
        let sock = std::net::TcpStream::from(sock);
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut c: Box<dyn ReadWrite> = if over_tls {
            Box::new(tls_stream(&der, sock, &[]))
        } else {
            Box::new(sock)
        };
        let mut pending = Vec::new();
        for i in 1..=40 {
            let size = i * 7 * 1024 + i;
            let q = if i % 3 == 0 { "&chunked=1" } else { "" };
            let req = format!("GET /blob?size={size}{q} HTTP/1.1\r\nHost: x\r\n\r\n");
            c.write_all(req.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(40));
            let (status, _, body) = read_response(&mut c, &mut pending, false);
            assert_eq!(
                (status, body.len()),
                (200, size),
                "tls {over_tls}, request {i}"
            );
        }
        s.shutdown();
    }
}

/// A TLS client connection to `addr` (a listener with the certificate `der`), offering the
/// ALPN protocols `alpn` (none when empty); reads time out after 10 s.
fn tls_connect(
    der: &rustls::pki_types::CertificateDer<'static>,
    addr: std::net::SocketAddr,
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    tls_stream(der, sock, alpn)
}

/// TLS over `sock` (see [`tls_connect`]).
fn tls_stream(
    der: &rustls::pki_types::CertificateDer<'static>,
    sock: std::net::TcpStream,
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

fn fast_then_hyper<C: Read + Write>(c: &mut C, u: &HttpUpstream, proto: &str) {
    let mut pending = Vec::new();
    c.write_all(
        b"GET /a?chunked=1&size=3000 HTTP/1.1\r\nHost: shop.example\r\n\r\n\
          HEAD /b?size=77 HTTP/1.1\r\nHost: shop.example\r\n\r\n\
          GET /echo HTTP/1.1\r\nHost: shop.example:8080\r\nConnection: keep-alive, X-Secret\r\n\
          X-Secret: 1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    )
    .unwrap();
    let (status, headers, body) = read_response(c, &mut pending, false);
    let get = |h: &Vec<(String, String)>, k: &str| {
        h.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(status, 200);
    assert_eq!(get(&headers, "transfer-encoding"), "chunked");
    assert_eq!(body.len(), 3000);
    assert_eq!(get(&headers, "via"), "1.1 switchyard");
    assert_eq!(get(&headers, "x-request-id").len(), 32);
    let (status, headers, body) = read_response(c, &mut pending, true);
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(get(&headers, "content-length"), "77");
    let (status, _, body) = read_response(c, &mut pending, false);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "shop.example:8080");
    assert_eq!(h["via"], "1.1 switchyard");
    assert_eq!(h["x-forwarded-proto"], proto);
    assert!(h.get("x-secret").is_none(), "{h}");
    assert_eq!(
        u.connections(),
        1,
        "the three requests shared one upstream connection"
    );

    // A body: hyper takes the connection over, with the bytes already read.
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let (status, _, body) = read_response(c, &mut pending, false);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["method"].as_str(), v["body"].as_str()),
        (Some("POST"), Some("hello"))
    );
    c.write_all(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, headers, _) = read_response(c, &mut pending, false);
    assert_eq!(status, 200);
    assert_eq!(get(&headers, "connection"), "close");
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0, "still open: {rest:?}");
}

/// The fast path writes the upstream request head itself (no `HeaderMap`); whatever a
/// client sends, the upstream must get what hyper's path sends it: the same headers, each
/// once, forwarding headers joined or replaced the same way, hop-by-hop ones gone. Over
/// plain TCP and over TLS.
#[test]
fn the_fast_path_rewrites_request_heads_exactly_as_the_hyper_path_does() {
    let u = HttpUpstream::start("rw").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (der, cert, key) = cert_files_der(dir.path());
    let tls = (der, format!("\ntls_cert = \"{cert}\"\ntls_key = \"{key}\""));
    // Also with the group's own Host (`host_header`) replacing the client's.
    for group in ["", "host_header = \"api.internal:8443\""] {
        same_heads_on_both_paths(&u, group, None);
        same_heads_on_both_paths(&u, group, Some(&tls));
    }
}

fn same_heads_on_both_paths(
    u: &HttpUpstream,
    group: &str,
    tls: Option<&(rustls::pki_types::CertificateDer<'static>, String)>,
) {
    let listener = |fast: bool| {
        let with = tls.map_or("", |(_, lines)| lines.as_str());
        simple(&[u], "", group).replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:0\"\nh1_fast_path = {fast}{with}"),
        )
    };
    let fast = start(&listener(true));
    let slow = start(&listener(false));
    let heads: [&[u8]; 11] = [
        b"Host: a\r\nConnection: keep-alive, X-Secret, Via\r\nX-Secret: 1\r\nVia: 1.0 gone\r\n",
        b"Host: a\r\nConnection: x-forwarded-for\r\nConnection: X-Request-Id\r\n\
          X-Forwarded-For: 192.0.2.7\r\nX-Request-Id: req-9\r\n",
        b"Host: shop.example\r\n",
        b"Host: Shop.Example:8080\r\nVia: 1.0 cdn\r\nX-Forwarded-For: 203.0.113.9\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Host: spoofed\r\n",
        b"Host: a\r\nX-Forwarded-For: 192.0.2.1\r\nx-forwarded-for: 192.0.2.2\r\n\
          Via: 1.0 one\r\nVIA: 1.0 two\r\n",
        b"Host: a\r\nX-Request-Id: has space\r\nX-Request-Id: second\r\n",
        b"Host: a\r\nX-Request-Id: req-7\r\nX-Request-Id: req-8\r\n",
        b"Host: a\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
          Trailer: x-t\r\nProxy-Connection: keep-alive\r\nX-Custom: 1\r\nx-custom: 2\r\n",
        b"Host: a\r\nConnection: close\r\nClose: named\r\nAccept: */*\r\n",
        b"Host: a\r\nX-Forwarded-For: \r\nVia: caf\xe9\r\n",
        b"Host: a\r\nX-Forwarded-For: caf\xe9\r\nUser-Agent: probe/1.0\r\n",
    ];
    let seen = |s: &Server, head: &[u8]| -> serde_json::Value {
        let mut c: Box<dyn ReadWrite> = match tls {
            None => {
                let c = std::net::TcpStream::connect(s.edge_addrs[0]).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                Box::new(c)
            }
            Some((der, _)) => Box::new(tls_connect(der, s.edge_addrs[0], &[])),
        };
        let mut req = b"GET /echo?x=1 HTTP/1.1\r\n".to_vec();
        req.extend_from_slice(head);
        req.extend_from_slice(b"\r\n");
        c.write_all(&req).unwrap();
        let (status, _, body) = read_response(&mut c, &mut Vec::new(), false);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(head));
        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let h = v["headers"].as_object_mut().unwrap();
        // A generated id differs per request: only its form is compared.
        if let Some(id) = h.get_mut("x-request-id") {
            if id
                .as_str()
                .is_some_and(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                *id = "generated".into();
            }
        }
        v
    };
    for head in heads {
        let (a, b) = (seen(&fast, head), seen(&slow, head));
        if !group.is_empty() {
            assert_eq!(a["headers"]["host"], "api.internal:8443", "{a}");
            let client = String::from_utf8_lossy(head);
            let client = client
                .split("\r\n")
                .next()
                .unwrap()
                .trim_start_matches("Host: ");
            assert_eq!(a["headers"]["x-forwarded-host"], client, "{a}");
        }
        assert_eq!(
            (&a["headers"], &a["path"]),
            (&b["headers"], &b["path"]),
            "fast path (left) and hyper (right) differ for {:?} (tls: {})",
            String::from_utf8_lossy(head),
            tls.is_some()
        );
    }
    fast.shutdown();
    slow.shutdown();
}

/// The response timeout is per request and the idle timeout runs from the last answer, on
/// both HTTP/1.1 paths (the fast path keeps one timer per connection for both): on one
/// keep-alive connection, answers that each take most of the response timeout all arrive
/// (together longer than it); a slower one gets 504 at the timeout and the connection serves
/// on; a pause shorter than the idle timeout keeps the connection, a longer one ends it.
#[test]
fn response_and_idle_timeouts_hold_per_request_on_a_keep_alive_connection() {
    let u = HttpUpstream::start("slow").unwrap();
    for fast in [true, false] {
        let text = simple(&[&u], "response_timeout = \"1s\"\nretries = 0", "").replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:0\"\nidle_timeout = \"2s\"\nh1_fast_path = {fast}"),
        );
        let s = start(&text);
        let mut c = std::net::TcpStream::connect(s.edge_addrs[0]).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut pending = Vec::new();
        let mut get = |c: &mut std::net::TcpStream, path: &str| {
            let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
            c.write_all(req.as_bytes()).unwrap();
            let t0 = Instant::now();
            let (status, _, _) = read_response(c, &mut pending, false);
            (status, t0.elapsed())
        };
        for i in 0..3 {
            let (status, took) = get(&mut c, "/a?delay_ms=600");
            assert_eq!(
                status, 200,
                "fast path {fast}: answer {i} of 600 ms took {took:?}"
            );
        }
        let (status, took) = get(&mut c, "/a?delay_ms=2500");
        assert_eq!(status, 504, "fast path {fast}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(1800),
            "fast path {fast}: 504 after {took:?}, response_timeout 1s"
        );
        assert_eq!(get(&mut c, "/a?delay_ms=100").0, 200, "fast path {fast}");
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(
            get(&mut c, "/a").0,
            200,
            "fast path {fast}: closed before idle_timeout"
        );
        std::thread::sleep(Duration::from_millis(2800));
        let mut rest = Vec::new();
        let n = c.read_to_end(&mut rest);
        assert!(
            matches!(n, Ok(0)) && rest.is_empty(),
            "fast path {fast}: still open after idle_timeout: {n:?} {rest:?}"
        );
        s.shutdown();
    }
}

#[test]
fn forwarding_headers_are_added_and_hop_by_hop_headers_removed() {
    let u = HttpUpstream::start("e").unwrap();
    let s = start(&simple(&[&u], "", ""));
    let c = client();
    let r = rt().block_on(get_with(
        &c,
        "GET",
        &format!("{}/echo?q=1", base(&s)),
        &[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "hop"),
            ("keep-alive", "timeout=5"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-request-id", "req-42"),
            ("host", "shop.example"),
        ],
    ));
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example");
    assert_eq!(h["host"], "shop.example");
    assert_eq!(h["via"], "1.1 switchyard");
    assert_eq!(h["x-request-id"], "req-42");
    assert!(
        h.get("x-secret").is_none() && h.get("keep-alive").is_none(),
        "{h}"
    );
    assert_eq!(v["path"], "/echo?q=1");
    assert_eq!(r.headers["x-request-id"], "req-42");
    assert_eq!(r.headers["via"], "1.1 switchyard");
    // Without an id of its own the request gets one, sent both ways.
    let r = get(&format!("{}/echo", base(&s)));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v["headers"]["x-request-id"].as_str().unwrap(),
        r.headers["x-request-id"].to_str().unwrap()
    );
    s.shutdown();
}

#[test]
fn slow_headers_are_cut_at_the_header_timeout_and_oversized_ones_get_431() {
    let u = HttpUpstream::start("s").unwrap();
    let text = simple(&[&u], "", "").replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nheader_timeout = \"2s\"\nmax_header_bytes = 8192",
    );
    let s = start(&text);
    let addr = s.edge_addrs[0];
    // Slowloris: one byte a second.
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let t0 = Instant::now();
    let mut closed = false;
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890".iter() {
        if c.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match c.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {
                closed = true; // an error answer, then the close
                break;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(950));
        if t0.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let took = t0.elapsed();
    assert!(
        closed,
        "a one-byte-a-second client still connected after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "closed after {took:?}");

    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let big = "a".repeat(20_000);
    let _ = c.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    s.shutdown();
}

/// A client that asks for a large body and stops reading it is closed once nothing has moved
/// for the idle timeout, on the fast path (GET) and on hyper's (POST), and its upstream
/// connection is not kept: the edge does not wait on a stalled client forever.
#[test]
fn a_client_that_stops_reading_a_response_is_closed_at_the_idle_timeout() {
    let u = HttpUpstream::start("s").unwrap();
    let text = simple(&[&u], "", "").replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nidle_timeout = \"1s\"",
    );
    let s = start(&text);
    let addr = s.edge_addrs[0];
    const SIZE: usize = 16 << 20;
    for request in [
        format!("GET /?size={SIZE} HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("POST /?size={SIZE} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"),
    ] {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        // Read nothing while the socket buffers fill and the idle timeout passes.
        std::thread::sleep(Duration::from_secs(4));
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let ended = loop {
            match c.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
            if got > SIZE {
                break false;
            }
        };
        let method = &request[..4];
        assert!(
            ended,
            "{method}: the connection did not end ({got} bytes read)"
        );
        assert!(
            got < SIZE,
            "{method}: a stalled client got the whole body ({got} bytes): it was waited for"
        );
    }
    s.shutdown();
}

/// Least-outstanding balancing counts requests in flight per server; a client that goes away
/// while its request waits for the upstream must not stay counted (on either path).
#[test]
fn a_client_that_leaves_mid_request_stops_counting_as_outstanding() {
    let u = HttpUpstream::start("s").unwrap();
    let s = start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        simple(&[&u], "", "balance = \"least_request\"")
    ));
    let addr = s.edge_addrs[0];
    for request in [
        "GET /?delay_ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /?delay_ms=1500 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    ] {
        let method = &request[..4];
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while status_of_server(&s)["outstanding"] != 1 {
            assert!(
                Instant::now() < deadline,
                "{method}: never counted outstanding"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(c);
        // Uncounted when the edge lets go of the abandoned request: at once, or when the
        // upstream answers after its delay; never, before the fix.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let server = status_of_server(&s);
            if server["outstanding"] == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{method}: {server}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    s.shutdown();
}

/// Requests whose target or framing is ambiguous: two Host headers are refused (400) as RFC
/// 9112 asks and nginx does, instead of being passed to an upstream that may read the other;
/// Content-Length beside Transfer-Encoding is read by the chunks alone, reaches the upstream
/// without the length, and the connection is closed after the answer (RFC 9112 6.1). An
/// HTTP/1.1 request without Host is refused (400), an HTTP/1.0 one reaches the upstream with
/// the server's name as its Host. CONNECT is refused (405): the edge is no forward proxy.
#[test]
fn ambiguous_requests_are_refused_and_a_missing_host_is_supplied() {
    let u = HttpUpstream::start("s").unwrap();
    let s = start(&simple(&[&u], "", ""));
    let addr = s.edge_addrs[0];
    let exchange = |request: &str| {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let ended = c.read_to_end(&mut out).is_ok();
        (ended, String::from_utf8_lossy(&out).into_owned())
    };
    let echo_of = |answer: &str| -> serde_json::Value {
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
    };
    let before = u.requests();
    let (_, answer) =
        exchange("GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        u.requests(),
        before,
        "a request with two hosts reached the upstream"
    );
    // No Connection: close: the edge must close by itself.
    let (ended, answer) = exchange(
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    );
    assert!(ended, "the connection stayed open: {answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let echo = echo_of(&answer);
    assert_eq!(echo["body"], "hi", "{echo}");
    assert!(echo["headers"]["content-length"].is_null(), "{echo}");
    // A reverse proxy is no forward proxy: CONNECT is not passed on (nor is it a tunnel).
    let before = u.requests();
    let (_, answer) =
        exchange("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert_eq!(u.requests(), before, "CONNECT reached the upstream");
    let (_, answer) = exchange("GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let (_, answer) = exchange("GET /echo HTTP/1.0\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let echo = echo_of(&answer);
    assert_eq!(echo["headers"]["host"], u.addr().to_string(), "{echo}");
    s.shutdown();
}

/// A WebSocket client frame (masked, FIN).
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    switchyard::testkit::http::ws_client_frame(true, opcode, payload)
}

#[test]
fn websocket_upgrades_pass_through_and_echo() {
    let u = HttpUpstream::start("ws").unwrap();
    let s = start(&simple(&[&u], "", ""));
    let mut c = std::net::TcpStream::connect(s.edge_addrs[0]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="));
    for msg in [&b"hello through the edge"[..], &vec![7u8; 70_000][..]] {
        c.write_all(&ws_frame(if msg.len() < 100 { 1 } else { 2 }, msg))
            .unwrap();
        let mut h = [0u8; 2];
        c.read_exact(&mut h).unwrap();
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                c.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                c.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        c.read_exact(&mut payload).unwrap();
        assert_eq!(payload, msg);
    }
    s.shutdown();
}

/// A self-signed certificate for 127.0.0.1 and localhost, written to `dir`.
fn cert_files(dir: &std::path::Path) -> (String, String) {
    let (_, cert, key) = cert_files_der(dir);
    (cert, key)
}

/// [`cert_files`], and the certificate itself (for a client to trust).
fn cert_files_der(
    dir: &std::path::Path,
) -> (rustls::pki_types::CertificateDer<'static>, String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let der = ck.cert.der().clone();
    (der, cert.display().to_string(), key.display().to_string())
}

/// Two upstreams behind a TLS listener: "/" and "/a/" (stripped) to `a`, "/b/" (stripped) to
/// `b`; access log as JSON into `log`.
fn tls_config(a: &HttpUpstream, b: &HttpUpstream, cert: &str, key: &str, log: &str) -> String {
    format!(
        r#"
[general]
workers = 2
[edge]
access_log = "json"
access_log_file = "{log}"
[[edge.listener]]
name = "https"
listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
[[edge.route]]
path = "/"
upstream = "a"
[[edge.route]]
path = "/a/"
strip_prefix = true
upstream = "a"
[[edge.route]]
path = "/b/"
strip_prefix = true
upstream = "b"
[[edge.upstream]]
name = "a"
servers = ["{}"]
[[edge.upstream]]
name = "b"
servers = ["{}"]
"#,
        a.addr(),
        b.addr()
    )
}

#[test]
fn tls_listener_speaks_http2_by_alpn_to_curl() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path());
    let a = HttpUpstream::start("a").unwrap();
    let b = HttpUpstream::start("b").unwrap();
    let log = dir.path().join("access.log");
    let s = start(&tls_config(&a, &b, &cert, &key, &log.display().to_string()));
    let url = format!("https://127.0.0.1:{}/b/echo", s.edge_addrs[0].port());
    let out = std::process::Command::new("curl")
        .args(["-sk", "--http2", "-w", "\n%{http_version}", &url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "{text}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["upstream"], "b");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    assert_eq!(v["headers"]["via"], "2.0 switchyard");
    // The HTTP/2 authority, port included, is the Host the upstream sees.
    let authority = format!("127.0.0.1:{}", s.edge_addrs[0].port());
    assert_eq!(v["headers"]["host"], authority.as_str());
    assert_eq!(v["headers"]["x-forwarded-host"], authority.as_str());
    // HTTP/1.1 over the same listener.
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1");
    s.shutdown();
    let log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[0]["protocol"], "HTTP/2.0");
    assert_eq!(lines[0]["route"], "*/b/");
    assert_eq!(lines[1]["protocol"], "HTTP/1.1");
}

#[test]
fn headless_chromium_loads_a_page_over_tls_with_a_websocket_and_two_routes() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromium is installed (scripts/install-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path());
    let a = HttpUpstream::start("a").unwrap();
    let b = HttpUpstream::start("b").unwrap();
    let log = dir.path().join("access.log");
    let s = start(&tls_config(&a, &b, &cert, &key, &log.display().to_string()));
    let url = format!("https://127.0.0.1:{}/page", s.edge_addrs[0].port());
    // playwright-core drives the browser and waits in real time for the page's script (a
    // `--dump-dom --virtual-time-budget` run fast-forwards the page's timers past a
    // WebSocket handshake that is still going on under load).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/drivers/node/browser.js");
    let mut child = std::process::Command::new("node")
        .arg(script)
        .arg(&url)
        .arg(chromium)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node starts");
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t0.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.is_some(), "the browser did not finish in 90 s");
    assert!(
        out.contains("RESULT ws=ping-through-edge a=200 b=200"),
        "page result: {out}\n{err}"
    );
    s.shutdown();
    let log = std::fs::read_to_string(&log).unwrap();
    let page: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["path"] == "/page")
        .collect();
    assert!(!page.is_empty(), "{log}");
    assert_eq!(page[0]["protocol"], "HTTP/2.0", "{log}");
    assert!(
        log.contains("\"/ws\""),
        "the WebSocket went through the edge: {log}"
    );
    assert!(
        log.contains("\"/b/echo\"") && log.contains("\"/a/echo\""),
        "{log}"
    );
}

#[test]
fn metrics_count_requests_per_route_and_server_health() {
    let u = HttpUpstream::start("m").unwrap();
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        simple(&[&u], "cache = true", "")
    );
    let s = start(&text);
    get_n(&format!("{}/m?cc=max-age%3D60", base(&s)), 3);
    get_n(&format!("{}/m?status=500", base(&s)), 1);
    let m = get(&format!("http://{}/metrics", s.admin_addr.unwrap())).body;
    let has = |needle: &str| {
        assert!(
            m.lines().any(|l| l.starts_with(needle)),
            "no line starting with {needle} in\n{}",
            m.lines()
                .filter(|l| l.contains("edge"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    has("switchyard_edge_requests_total{route=\"*/\",class=\"2xx\"} 3");
    has("switchyard_edge_requests_total{route=\"*/\",class=\"5xx\"} 1");
    has(&format!(
        "switchyard_edge_upstream_up{{upstream=\"web\",server=\"{}\"}} 1",
        u.addr()
    ));
    has("switchyard_edge_cache_lookups_total{result=\"hit\"} 2");
    has("switchyard_edge_request_duration_seconds_count{route=\"*/\"} 4");
    has("switchyard_edge_connections{listener=\"127.0.0.1:0\"}");
    s.shutdown();
}

#[test]
fn reload_moves_a_route_without_dropping_open_connections() {
    let a = HttpUpstream::start("a").unwrap();
    let b = HttpUpstream::start("b").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sy.toml");
    let text = |to: &HttpUpstream| simple(&[to], "", "");
    std::fs::write(&path, text(&a)).unwrap();
    let s = Server::start_file(&path).unwrap();
    let url = format!("{}/re", base(&s));
    let c = client();
    rt().block_on(async {
        // A slow request is in flight on one connection while the reload happens.
        let slow = {
            let url = format!("{url}?delay_ms=800");
            let c = c.clone();
            tokio::spawn(async move { get_with(&c, "GET", &url, &[]).await })
        };
        let first = get_with(&c, "GET", &url, &[]).await;
        assert!(first.body.starts_with("a "), "{}", first.body);
        std::fs::write(&path, text(&b)).unwrap();
        let msg = s.reload().expect("reload succeeds");
        assert!(msg.contains("1 edge routes"), "{msg}");
        let after = get_with(&c, "GET", &url, &[]).await;
        assert!(after.body.starts_with("b "), "{}", after.body);
        let slow = slow.await.unwrap();
        assert_eq!(slow.status, 200);
        assert!(slow.body.starts_with("a "));
    });
    // A reload with a broken certificate changes nothing.
    std::fs::write(
        &path,
        text(&a).replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"",
        ),
    )
    .unwrap();
    assert!(s.reload().is_err());
    assert!(get(&url).body.starts_with("b "));
    s.shutdown();
}

#[test]
fn sigterm_style_shutdown_finishes_requests_in_flight_then_refuses() {
    let u = HttpUpstream::start("d").unwrap();
    let s = start(&simple(&[&u], "", ""));
    let addr = s.edge_addrs[0];
    let url = format!("http://{addr}/slow?delay_ms=700");
    let inflight = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    s.shutdown();
    let r = inflight.join().unwrap();
    assert_eq!(r.status, 200, "the request in flight finished");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed"
    );
}

/// A group's DNS names are resolved again every `resolve_interval`: the name moves from one
/// upstream's address to another's and the traffic follows, without a reload. The proxy runs
/// as its own process with nss_wrapper (Debian's libnss-wrapper) preloaded, which answers
/// name lookups from a hosts file the test rewrites.
#[test]
fn dns_names_are_resolved_again_on_the_interval() {
    let wrapper = std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path().join("libnss_wrapper.so")))
        .find(|p| p.exists())
        .expect("libnss_wrapper.so missing (apt-get install libnss-wrapper; install-deps does)");
    let a = HttpUpstream::start_at("a", "127.0.0.2:0".parse().unwrap()).unwrap();
    let port = a.port();
    let b = HttpUpstream::start_at("b", format!("127.0.0.3:{port}").parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 app.switchyard.test\n").unwrap();
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[general]
workers = 1

[[edge.listener]]
listen = "{listen}"

[[edge.route]]
path = "/"
upstream = "web"

[[edge.upstream]]
name = "web"
servers = ["app.switchyard.test:{port}"]
resolve_interval = "200ms"
"#
        ),
    )
    .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _proxy = Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("LD_PRELOAD", &wrapper)
            .env("NSS_WRAPPER_HOSTS", &hosts)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://{listen}/dns");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < deadline, "the proxy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(get_n(&url, 10).iter().all(|r| r.status == 200));
    assert_eq!((a.requests_for("/dns"), b.requests_for("/dns")), (10, 0));
    // Move the name; within a few intervals every request goes to the new address.
    // A new file in its place: nss_wrapper reads a hosts file again when its inode or
    // modification second changes.
    let next = dir.path().join("hosts.next");
    std::fs::write(&next, "127.0.0.3 app.switchyard.test\n").unwrap();
    std::fs::rename(&next, &hosts).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = b.requests_for("/dns");
        assert_eq!(get(&url).status, 200);
        if b.requests_for("/dns") > before {
            break;
        }
        assert!(Instant::now() < deadline, "the name was not resolved again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let at_a = a.requests_for("/dns");
    assert!(get_n(&url, 10).iter().all(|r| r.status == 200));
    assert_eq!(
        a.requests_for("/dns"),
        at_a,
        "the old address still got traffic"
    );
}

#[test]
fn dns_named_servers_resolve_and_connection_limits_and_idle_timeouts_hold() {
    let u = HttpUpstream::start("n").unwrap();
    let text = format!(
        r#"
[general]
workers = 1
[[edge.listener]]
listen = "127.0.0.1:0"
max_connections = 2
idle_timeout = "1s"
[[edge.route]]
path = "/"
upstream = "web"
[[edge.upstream]]
name = "web"
servers = ["localhost:{}"]
resolve_interval = "200ms"
"#,
        u.port()
    );
    let s = start(&text);
    let addr = s.edge_addrs[0];
    let request = |c: &mut std::net::TcpStream| -> String {
        c.write_all(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut a = std::net::TcpStream::connect(addr).unwrap();
    let mut b = std::net::TcpStream::connect(addr).unwrap();
    for c in [&mut a, &mut b] {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(request(c).starts_with("HTTP/1.1 200"));
    }
    assert_eq!(u.requests_for("/k"), 2, "the name resolved to the upstream");
    // A third connection while two are open is closed at once, unanswered.
    let mut third = std::net::TcpStream::connect(addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = third.write_all(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    assert!(
        matches!(third.read(&mut buf), Ok(0) | Err(_)),
        "a connection over max_connections was served"
    );
    // Idle for more than idle_timeout: closed by the edge.
    let t0 = Instant::now();
    let mut byte = [0u8; 1];
    let r = a.read(&mut byte);
    assert!(matches!(r, Ok(0)), "{r:?}");
    let idle = t0.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(4),
        "closed after {idle:?}"
    );
    // A slot is free again.
    drop((a, b));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(&format!("http://{addr}/again")).status, 200);
    s.shutdown();
}

#[test]
fn a_reload_serves_the_new_certificate_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (one_dir, two_dir) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir_all(&one_dir).unwrap();
    std::fs::create_dir_all(&two_dir).unwrap();
    let (cert1, key1) = cert_files(&one_dir);
    let (cert2, key2) = cert_files(&two_dir);
    // The listener reads the files at "live.pem"/"live.key"; a reload reads them again.
    let (live_cert, live_key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(&cert1, &live_cert).unwrap();
    std::fs::copy(&key1, &live_key).unwrap();
    let u = HttpUpstream::start("t").unwrap();
    let text = simple(&[&u], "", "").replace(
        "listen = \"127.0.0.1:0\"",
        &format!(
            "listen = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
            live_cert.display(),
            live_key.display()
        ),
    );
    let path = dir.path().join("sy.toml");
    std::fs::write(&path, text).unwrap();
    let s = Server::start_file(&path).unwrap();
    let url = format!("https://localhost:{}/", s.edge_addrs[0].port());
    // curl trusts exactly one of the two certificates at a time.
    let trusted_by = |ca: &str| {
        std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                ca,
                &url,
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap()
    };
    assert_eq!(trusted_by(&cert1), "200");
    assert_ne!(trusted_by(&cert2), "200");
    std::fs::copy(&cert2, &live_cert).unwrap();
    std::fs::copy(&key2, &live_key).unwrap();
    s.reload().expect("reload with the new certificate");
    assert_eq!(trusted_by(&cert2), "200");
    assert_ne!(trusted_by(&cert1), "200");
    s.shutdown();
}

/// Over HTTP/2 the X-Request-Id of each response (new every time) is not put in the
/// connection's HPACK table: if it were, the table would fill after some fifty responses and
/// push out the headers every response repeats, which would then go out whole again. So on
/// one connection every response's headers cost about the same number of bytes.
#[test]
fn http2_responses_keep_their_repeated_headers_indexed() {
    let u = HttpUpstream::start("e").unwrap();
    let s = start(&simple(&[&u], "", ""));
    let addr = s.edge_addrs[0];
    let sizes = rt().block_on(async move {
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = read.clone();
        let io = tokio_util::io::InspectReader::new(
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            move |b: &[u8]| {
                counter.fetch_add(b.len(), std::sync::atomic::Ordering::Relaxed);
            },
        );
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(io),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut sizes = Vec::new();
        for i in 0..160 {
            let before = read.load(std::sync::atomic::Ordering::Relaxed);
            let req = http::Request::get(format!("http://{addr}/echo?n={i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let after = read.load(std::sync::atomic::Ordering::Relaxed);
            // Frame headers and the header block: what is not body.
            sizes.push(after - before - body.len());
        }
        sizes
    });
    // After the first responses (settings, the table filling with the repeated headers), a
    // response's headers may grow by a new Date (once a second), never by the whole set.
    let steady = &sizes[5..];
    let (min, max) = (steady.iter().min().unwrap(), steady.iter().max().unwrap());
    assert!(
        max - min < 40,
        "bytes besides the body per response: {sizes:?}"
    );
    s.shutdown();
}

/// curl's status and body for `url`, from the local address `from` (a loopback address of
/// its own, so the client each hop sees differs), with curl's extra `args`.
fn curl_from(from: &str, url: &str, args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "--interface",
            from,
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

/// Listeners behind a load balancer (`proxy_protocol`): HAProxy, sending PROXY v1 and v2
/// headers, relays curl's connections made from other loopback addresses; the upstream is
/// told of the client the header names (X-Forwarded-For), the access log names it, and the
/// rate limit counts per that client, over the fast path, hyper's HTTP/2 and TLS. curl's
/// own `--haproxy-protocol` header is read too. A client without a header, one that sends
/// garbage, and a balancer outside `proxy_protocol_from` are refused; a `LOCAL` header (a
/// balancer's health check) keeps the connection's own address.
#[test]
fn listeners_behind_a_load_balancer_see_the_client_in_the_proxy_protocol_header() {
    let u = HttpUpstream::start("pp").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path());
    let log = dir.path().join("access.log");
    let text = format!(
        r#"
[general]
workers = 2
[edge]
access_log = "json"
access_log_file = "{log}"
[[edge.listener]]
name = "pp"
listen = "127.0.0.1:0"
proxy_protocol = true
proxy_protocol_from = ["127.0.0.0/8"]
header_timeout = "1s"
[[edge.listener]]
name = "pps"
listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
proxy_protocol = true
[[edge.listener]]
name = "strict"
listen = "127.0.0.1:0"
proxy_protocol = true
proxy_protocol_from = ["127.0.0.9", "::1/128"]
[[edge.route]]
path = "/limited"
upstream = "web"
rate_limit = {{ rate = 0.01, burst = 1 }}
[[edge.route]]
path = "/"
upstream = "web"
[[edge.upstream]]
name = "web"
servers = ["{}"]
"#,
        u.addr(),
        log = log.display()
    );
    let s = start(&text);
    let (pp, pps, strict) = (s.edge_addrs[0], s.edge_addrs[1], s.edge_addrs[2]);
    let lb = haproxy::Haproxy::start(&[
        (pp.to_string(), "send-proxy"),
        (pp.to_string(), "send-proxy-v2"),
        (pps.to_string(), "send-proxy-v2"),
        (strict.to_string(), "send-proxy-v2"),
    ]);
    let via = |i: usize| format!("127.0.0.1:{}", lb.ports[i]);
    let forwarded_for = |body: &str| -> String {
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
        v["headers"]["x-forwarded-for"].as_str().unwrap().to_owned()
    };
    // v1 and v2 from HAProxy, over the fast path and over hyper's HTTP/2.
    let (code, body) = curl_from("127.0.0.2", &format!("http://{}/echo", via(0)), &[]);
    assert_eq!(
        (code.as_str(), forwarded_for(&body)),
        ("200", "127.0.0.2".into())
    );
    let (code, body) = curl_from("127.0.0.3", &format!("http://{}/echo", via(1)), &[]);
    assert_eq!(
        (code.as_str(), forwarded_for(&body)),
        ("200", "127.0.0.3".into())
    );
    let h2 = ["--http2-prior-knowledge"];
    let (code, body) = curl_from("127.0.0.4", &format!("http://{}/echo", via(1)), &h2);
    assert_eq!(
        (code.as_str(), forwarded_for(&body)),
        ("200", "127.0.0.4".into())
    );
    // TLS after the header, HTTP/2 by ALPN.
    let (code, body) = curl_from(
        "127.0.0.5",
        &format!("https://{}/echo", via(2)),
        &["--http2"],
    );
    assert_eq!(
        (code.as_str(), forwarded_for(&body)),
        ("200", "127.0.0.5".into())
    );
    // curl's own PROXY v1 line, straight to the listener.
    let own = ["--haproxy-protocol"];
    let (code, body) = curl_from("127.0.0.6", &format!("http://{pp}/echo"), &own);
    assert_eq!(
        (code.as_str(), forwarded_for(&body)),
        ("200", "127.0.0.6".into())
    );
    // The rate limit's buckets are the real clients', not the balancer's.
    let limited = format!("http://{}/limited", via(1));
    assert_eq!(curl_from("127.0.0.7", &limited, &[]).0, "200");
    assert_eq!(curl_from("127.0.0.7", &limited, &[]).0, "429");
    assert_eq!(curl_from("127.0.0.8", &limited, &[]).0, "200");
    // The access log names the clients.
    let logged = std::fs::read_to_string(&log).unwrap();
    for client in ["127.0.0.2", "127.0.0.5", "127.0.0.8"] {
        assert!(
            logged.contains(&format!("\"client\":\"{client}\"")),
            "{client} not in {logged}"
        );
    }
    // Refused: no header (the client's request is not a header), HAProxy from outside
    // `proxy_protocol_from`.
    assert_eq!(
        curl_from("127.0.0.2", &format!("http://{pp}/echo"), &[]).0,
        "000"
    );
    assert_eq!(
        curl_from("127.0.0.2", &format!("http://{}/echo", via(3)), &[]).0,
        "000"
    );
    // A LOCAL header, then a request: the connection's own address; a header cut short is
    // dropped at `header_timeout`; garbage after a good signature is refused at once.
    let mut c = std::net::TcpStream::connect(pp).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\"x-forwarded-for\":\"127.0.0.1\""),
        "{answer}"
    );
    for (bytes, within) in [
        (&b"PROXY TCP4 192.0.2.1 "[..], Duration::from_secs(5)),
        (
            b"PROXY TCP4 192.0.2.1 10.0.0.1 x 1\r\nGET / HTTP/1.1\r\n\r\n",
            Duration::from_millis(900),
        ),
    ] {
        let mut c = std::net::TcpStream::connect(pp).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t0 = Instant::now();
        c.write_all(bytes).unwrap();
        let mut rest = Vec::new();
        let n = c.read_to_end(&mut rest).unwrap_or(0);
        assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&rest));
        assert!(
            t0.elapsed() < within,
            "{:?} took {:?}",
            String::from_utf8_lossy(bytes),
            t0.elapsed()
        );
    }
}

/// WebSockets over HTTP/2 (RFC 8441): the edge announces SETTINGS_ENABLE_CONNECT_PROTOCOL;
/// an extended CONNECT with `:protocol = websocket` from the `h2` crate's client (as a
/// browser sends it on its HTTP/2 connection) reaches the HTTP/1.1 upstream as an upgrade
/// with a key of the edge's own, is answered 200 once the upstream's 101 carries the right
/// accept, and the stream then carries WebSocket frames both ways (text and a 70 KB binary
/// message, beside an ordinary request on the same connection); an upstream that answers
/// with an error passes its status on; a CONNECT without `:protocol` is still refused.
#[test]
fn websockets_over_http2_reach_an_http1_upstream() {
    let u = HttpUpstream::start("ws2").unwrap();
    let s = start(&simple(&[&u], "", ""));
    let addr = s.edge_addrs[0];
    rt().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut send = send.ready().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !send.is_extended_connect_protocol_enabled() {
            assert!(
                Instant::now() < deadline,
                "no SETTINGS_ENABLE_CONNECT_PROTOCOL"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            send = send.ready().await.unwrap();
        }
        let connect = |path: &str, protocol: Option<&str>| {
            let mut req = http::Request::builder()
                .method("CONNECT")
                .uri(format!("http://{addr}{path}"))
                .header("sec-websocket-version", "13")
                .body(())
                .unwrap();
            if let Some(p) = protocol {
                req.extensions_mut().insert(h2::ext::Protocol::from(p));
            }
            req
        };
        let (answer, mut up) = send
            .send_request(connect("/ws", Some("websocket")), false)
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["via"], "2.0 switchyard");
        assert!(resp.headers().get("sec-websocket-accept").is_none());
        let mut down = resp.into_body();
        // An ordinary request on the same connection meanwhile.
        let plain = http::Request::builder()
            .uri(format!("http://{addr}/echo"))
            .body(())
            .unwrap();
        let (answer, _) = send.send_request(plain, true).unwrap();
        assert_eq!(answer.await.unwrap().status(), 200);
        for msg in [&b"hello over h2"[..], &vec![9u8; 70_000][..]] {
            let opcode = if msg.len() < 100 { 1 } else { 2 };
            up.send_data(Bytes::from(ws_frame(opcode, msg)), false)
                .unwrap();
            let mut got: Vec<u8> = Vec::new();
            let header = match msg.len() {
                n if n < 126 => 2,
                n if n <= 65535 => 4,
                _ => 10,
            };
            while got.len() < header + msg.len() {
                let chunk = tokio::time::timeout(Duration::from_secs(10), down.data())
                    .await
                    .expect("echo within 10 s")
                    .expect("stream open")
                    .unwrap();
                let _ = down.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got[0], 0x80 | opcode);
            assert!(got[header..] == *msg, "echo differs ({} bytes)", got.len());
        }
        up.send_data(Bytes::from(ws_frame(8, b"")), true).unwrap();
        // The upstream refuses (it answers /nows with 404): the client sees it.
        let (answer, _) = send
            .send_request(connect("/nows?status=404", Some("websocket")), false)
            .unwrap();
        assert_eq!(answer.await.unwrap().status(), 404);
        // No :protocol: a forward-proxy CONNECT, still refused.
        let (answer, _) = send.send_request(connect("/ws", None), false).unwrap();
        let status = answer.await.map(|r| r.status().as_u16());
        assert!(matches!(status, Ok(405) | Err(_)), "{status:?}");
    });
}

/// A connection accepted before a drain began whose first request had not come yet (a client
/// that connected just before a handover or SIGTERM) has up to a second for that request,
/// which is served with `Connection: close`; one that sends nothing is closed after that
/// second. On every kind of listener: the HTTP/1.1 fast path, hyper's path
/// (`h1_fast_path = false`), and TLS (handshake done before the drain, and handshake begun
/// after it; on the fast path, and on hyper's).
#[test]
fn a_connection_opened_just_before_a_drain_has_its_first_request_served() {
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let (der, cert, key) = cert_files_der(dir.path());
    let u = HttpUpstream::start("d").unwrap();
    let s = start(&format!(
        r#"
[general]
workers = 1
[[edge.listener]]
name = "fast"
listen = "127.0.0.1:0"
[[edge.listener]]
name = "hyper"
listen = "127.0.0.1:0"
h1_fast_path = false
[[edge.listener]]
name = "tls"
listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
[[edge.listener]]
name = "tls_hyper"
listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
h1_fast_path = false
[[edge.route]]
path = "/"
upstream = "web"
[[edge.upstream]]
name = "web"
servers = ["{}"]
"#,
        u.addr()
    ));
    let [fast, hyper, tls, tls_hyper] = [0, 1, 2, 3].map(|i| s.edge_addrs[i]);
    let tls_client = |addr| tls_connect(&der, addr, &[]);
    let timeouts = |c: &TcpStream| c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let plain = [fast, fast, hyper, hyper].map(|a| {
        let c = TcpStream::connect(a).unwrap();
        timeouts(&c);
        c
    });
    let [mut handshaken, mut handshaken_hyper] = [tls, tls_hyper].map(tls_client);
    for c in [&mut handshaken, &mut handshaken_hyper] {
        timeouts(&c.sock);
        while c.conn.is_handshaking() {
            c.conn.complete_io(&mut c.sock).unwrap();
        }
    }
    let late_handshake = tls_client(tls);
    timeouts(&late_handshake.sock);
    let silent = TcpStream::connect(hyper).unwrap();
    timeouts(&silent);
    // Accepted before the drain begins.
    std::thread::sleep(Duration::from_millis(200));
    let draining = std::thread::spawn(move || s.shutdown());
    std::thread::sleep(Duration::from_millis(300));
    let request = b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n";
    let check = |what: &str, mut c: Box<dyn ReadWrite>| {
        c.write_all(request).unwrap();
        let mut answer = Vec::new();
        let r = c.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(
            text.starts_with("http/1.1 200") && text.contains("connection: close"),
            "{what}: {r:?} {text:?}"
        );
    };
    let [f1, f2, h1, h2] = plain;
    check("fast path", Box::new(f1));
    check("hyper path", Box::new(h1));
    check("tls, handshake before the drain", Box::new(handshaken));
    check(
        "tls on hyper's path, handshake before the drain",
        Box::new(handshaken_hyper),
    );
    check(
        "tls, handshake after the drain began",
        Box::new(late_handshake),
    );
    // The second connection of each plain kind waited 0.3 s more: still within its second.
    check("fast path, second", Box::new(f2));
    check("hyper path, second", Box::new(h2));
    let t0 = Instant::now();
    let mut silent = silent;
    let n = silent.read(&mut [0u8; 64]);
    assert!(matches!(n, Ok(0)), "{n:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    draining.join().unwrap();
    assert!(TcpStream::connect(fast).is_err(), "listener closed");
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
