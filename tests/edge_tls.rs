//! HTTPS from the edge to its upstream servers (`[[edge.upstream]] tls`), against upstreams
//! that speak TLS through OpenSSL (Python's ssl module, tests/support/https_upstream.py) with
//! certificates from the tests' own authority: each mode reaches the servers as it says (the
//! servers report the TLS version, ALPN, the name sent by SNI and the client certificate they
//! saw), certificates and names that must not pass get 502, connections are pooled across
//! requests, large bodies pass both ways, upgrades tunnel, health checks go over TLS, and a
//! reload that fixes the settings takes effect.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::pki::pki;
use support::process::PortProcess;
use switchyard::app::Server;

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

/// An HTTPS upstream process (stopped when dropped).
struct Https;

impl Https {
    /// `client_ca`: require a client certificate signed by it.
    fn start(name: &str, client_ca: Option<&str>) -> PortProcess {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/https_upstream.py"
        );
        let p = pki();
        let mut cmd = Command::new("python3");
        cmd.args([script, name, &p.server_cert, &p.server_key]);
        if let Some(ca) = client_ca {
            cmd.arg(ca);
        }
        PortProcess::start(cmd, "python3 with its ssl module")
    }
}

type TestClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Status and body of one request (20 s at most).
async fn request(c: &TestClient, method: &str, url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), c.request(req))
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no answer within 20 s"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

fn get(url: &str) -> (u16, Vec<u8>) {
    rt().block_on(request(&client(), "GET", url, Vec::new()))
}

/// The upstream's /whoami answer through the edge.
fn whoami(url: &str) -> serde_json::Value {
    let (status, body) = get(url);
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The expected body of /big?n=N.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 256) as u8).collect()
}

/// One group per case, each behind the route "/<name>/" (stripped).
fn config(groups: &[(&str, String, &str)]) -> String {
    let mut text = String::from(
        "[general]\nworkers = 2\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[edge.listener]]\nlisten = \"127.0.0.1:0\"\n\
         [[edge.listener]]\nname = \"hyper\"\nlisten = \"127.0.0.1:0\"\nh1_fast_path = false\n",
    );
    for (name, server, extra) in groups {
        text.push_str(&format!(
            "[[edge.route]]\npath = \"/{name}/\"\nstrip_prefix = true\nupstream = \"{name}\"\n\
             retries = 0\n\
             [[edge.upstream]]\nname = \"{name}\"\nservers = [\"{server}\"]\n{extra}\n"
        ));
    }
    text
}

#[test]
fn https_upstreams_are_reached_as_each_mode_says_and_refused_when_they_must_be() {
    let p = pki();
    let a = Https::start("a", None);
    let m = Https::start("mtls", Some(&p.ca));
    // Checked by the health groups only, so that the counts of `a` are the requests'.
    let h = Https::start("checked", None);
    let ip = format!("127.0.0.1:{}", a.port);
    let ca = format!("tls_ca_file = \"{}\"", p.ca);
    let other_ca = format!("tls_ca_file = \"{}\"", p.other_ca);
    let full = format!("tls = \"verify-full\"\n{ca}");
    let named = format!("{full}\ntls_server_name = \"db.switchyard.test\"");
    let client_cert = format!(
        "{full}\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        p.client_cert, p.client_key
    );
    let wrong_ca = format!("tls = \"verify-ca\"\n{other_ca}");
    let wrong_name = format!("{full}\ntls_server_name = \"other.example\"");
    let health =
        "tls = \"require\"\n[edge.upstream.health]\ninterval = \"100ms\"\nrise = 1\nfall = 1";
    let bad_health =
        format!("{wrong_ca}\n[edge.upstream.health]\ninterval = \"100ms\"\nrise = 1\nfall = 1");
    let groups = [
        ("req", ip.clone(), "tls = \"require\""),
        ("full", format!("localhost:{}", a.port), full.as_str()),
        ("ip", ip.clone(), full.as_str()),
        ("named", ip.clone(), named.as_str()),
        (
            "cert",
            format!("localhost:{}", m.port),
            client_cert.as_str(),
        ),
        ("nocert", format!("localhost:{}", m.port), full.as_str()),
        ("wrongca", ip.clone(), wrong_ca.as_str()),
        ("wrongname", ip.clone(), wrong_name.as_str()),
        ("plain", ip.clone(), ""),
        ("health", format!("127.0.0.1:{}", h.port), health),
        (
            "badhealth",
            format!("127.0.0.1:{}", h.port),
            bad_health.as_str(),
        ),
    ];
    let text = config(&groups);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sy.toml");
    std::fs::write(&path, &text).unwrap();
    let s = Server::start_file(&path).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    let base = format!("http://{}", s.edge_addrs[0]);
    // GETs start on the fast path on the first listener, on hyper's on the second.
    let hyper = format!("http://{}", s.edge_addrs[1]);
    for base in [&base, &hyper] {
        // What each server saw: TLS 1.3, http/1.1 by ALPN, SNI only for names, the client's
        // Host passed on, the client certificate where one is configured.
        let w = whoami(&format!("{base}/req/whoami"));
        assert_eq!(w["tls"], "TLSv1.3", "{w}");
        assert_eq!(w["alpn"], "http/1.1", "{w}");
        assert_eq!(w["sni"], serde_json::Value::Null, "{w}");
        assert_eq!(w["client_cert"], serde_json::Value::Null, "{w}");
        assert_eq!(w["host"], base.trim_start_matches("http://"), "{w}");
        assert_eq!(whoami(&format!("{base}/full/whoami"))["sni"], "localhost");
        assert_eq!(whoami(&format!("{base}/ip/whoami"))["tls"], "TLSv1.3");
        assert_eq!(
            whoami(&format!("{base}/named/whoami"))["sni"],
            "db.switchyard.test"
        );
        let w = whoami(&format!("{base}/cert/whoami"));
        assert_eq!(w["client_cert"], "commonName=cert_user", "{w}");
        assert_eq!(w["name"], "mtls");

        // Refused: an unknown authority, a wrong name, no client certificate where one is
        // required, plain HTTP to a TLS port. Each is a 502, and the servers saw the handshakes
        // fail (or, for plain HTTP, never start).
        let failed_before = stats(base, "req")["failed"].as_u64().unwrap();
        for case in ["wrongca", "wrongname", "nocert", "plain"] {
            let (status, body) = get(&format!("{base}/{case}/whoami"));
            assert_eq!(status, 502, "{case}: {}", String::from_utf8_lossy(&body));
        }
        let failed_after = stats(base, "req")["failed"].as_u64().unwrap();
        assert!(
            failed_after >= failed_before + 3,
            "{failed_before} -> {failed_after}"
        );

        // Pooled: 60 requests on one client connection open at most a couple of upstream
        // connections (one per worker that serves them), not 60 handshakes.
        let before = stats(base, "req")["handshakes"].as_u64().unwrap();
        let conns: std::collections::HashSet<u64> = rt().block_on(async {
            let c = client();
            let mut seen = std::collections::HashSet::new();
            for _ in 0..60 {
                let (status, body) =
                    request(&c, "GET", &format!("{base}/req/whoami"), vec![]).await;
                assert_eq!(status, 200);
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                seen.insert(v["conn"].as_u64().unwrap());
            }
            seen
        });
        let after = stats(base, "req")["handshakes"].as_u64().unwrap();
        assert!(conns.len() <= 2, "{conns:?}");
        assert!(after - before <= 3, "{before} -> {after}");

        // Large bodies both ways, one at a time and many at once.
        let (status, body) = get(&format!("{base}/req/big?n={}", 24 << 20));
        assert_eq!(status, 200);
        assert!(body == pattern(24 << 20), "24 MiB body differs");
        let upload: Vec<u8> = (0..(12usize << 20)).map(|i| (i * 7 % 251) as u8).collect();
        let (status, echoed) = rt().block_on(request(
            &client(),
            "POST",
            &format!("{base}/req/echo"),
            upload.clone(),
        ));
        assert_eq!(status, 200);
        assert!(echoed == upload, "12 MiB upload echoed differently");
        rt().block_on(async {
            let c = client();
            let all = (0..24).map(|i| {
                let c = c.clone();
                let url = format!("{base}/req/big?n={}", 300_000 + i * 1000);
                tokio::spawn(async move { request(&c, "GET", &url, vec![]).await })
            });
            for (i, r) in futures_util::future::join_all(all)
                .await
                .into_iter()
                .enumerate()
            {
                let (status, body) = r.unwrap();
                assert_eq!(status, 200);
                assert!(body == pattern(300_000 + i * 1000), "body {i} differs");
            }
        });
    }

    // An upgrade tunnels over TLS.
    let mut c = std::net::TcpStream::connect(s.edge_addrs[0]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(
        b"GET /req/tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
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
    let sent: Vec<u8> = (0..200_000).map(|i| (i % 253) as u8).collect();
    c.write_all(&sent).unwrap();
    let mut back = vec![0u8; sent.len()];
    c.read_exact(&mut back).unwrap();
    assert!(back == sent, "tunnelled bytes differ");
    drop(c);

    // Health checks over TLS: the checked group's server is up, the one whose checks cannot
    // verify the certificate goes down and its route answers 503.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, bad) = (server_up(&s, "health"), server_up(&s, "badhealth"));
        if ok && !bad {
            break;
        }
        assert!(Instant::now() < deadline, "health: {ok}, badhealth: {bad}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let w = whoami(&format!("{base}/health/whoami"));
    assert_eq!(
        (&w["name"], &w["tls"]),
        (&"checked".into(), &"TLSv1.3".into())
    );
    assert_eq!(get(&format!("{base}/badhealth/whoami")).0, 503);

    // A reload that gives "wrongca" the right authority fixes it; one naming a CA file that
    // does not exist is refused and changes nothing.
    let fixed = text.replace(&other_ca, &ca);
    std::fs::write(&path, &fixed).unwrap();
    s.reload().expect("reload succeeds");
    assert_eq!(whoami(&format!("{base}/wrongca/whoami"))["tls"], "TLSv1.3");
    std::fs::write(&path, fixed.replace(&p.ca, "/nonexistent/ca.pem")).unwrap();
    let err = s.reload().expect_err("a missing CA file is refused");
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    assert_eq!(whoami(&format!("{base}/full/whoami"))["sni"], "localhost");
    s.shutdown();
}

/// The upstream's handshake counts, read through the edge's group `group`.
fn stats(base: &str, group: &str) -> serde_json::Value {
    let (status, body) = get(&format!("{base}/{group}/stats"));
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

/// Whether the admin API shows the only server of `group` up and eligible.
fn server_up(s: &Server, group: &str) -> bool {
    let (_, body) = get(&format!("http://{}/status", s.admin_addr.unwrap()));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let g = v["edge"]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == group)
        .unwrap_or_else(|| panic!("no group {group}: {v}"))
        .clone();
    g["servers"][0]["up"] == true && g["servers"][0]["eligible"] == true
}

#[test]
fn upstream_tls_settings_that_cannot_work_are_config_errors() {
    let p = pki();
    let check = |extra: &str| {
        let text = config(&[("g", "127.0.0.1:1".to_string(), extra)]);
        let cfg = switchyard::config::Config::from_toml(&text);
        cfg.map_err(|e| e.to_string())
            .and_then(|c| switchyard::app::check_config(&c).map_err(|e| e.to_string()))
    };
    assert!(check("tls = \"require\"").is_ok());
    let cases = [
        ("tls = \"prefer\"", "edge.upstream[0].tls"),
        ("tls = \"verify-full\"", "tls_ca_file"),
        ("tls = \"require\"\ntls_cert = \"/x.pem\"", "tls_cert"),
        (
            "tls = \"verify-ca\"\ntls_ca_file = \"/nonexistent/ca.pem\"",
            "/nonexistent/ca.pem",
        ),
        (
            &format!(
                "tls = \"require\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
                p.client_cert, p.server_key
            ),
            "do not fit",
        ),
    ];
    for (extra, want) in cases {
        let err = check(extra).expect_err(extra);
        assert!(err.contains(want), "{extra}: {err}");
    }
}

/// Mutual TLS on an edge listener (`tls_client_ca_file`): curl with a certificate the test
/// authority signed is served and the upstream sees `X-SSL-Client-Verify: SUCCESS` and the
/// certificate's common name, whatever the client sent in those headers; without a
/// certificate an "optional" listener serves it with `NONE`, a "required" one fails the
/// handshake; a certificate from another authority fails on both.
#[test]
fn client_certificates_on_an_edge_listener_reach_the_upstream_as_headers() {
    let p = pki();
    let up = switchyard::testkit::http::HttpUpstream::start("echo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (stranger_cert, stranger_key) = support::pki::stranger_client_cert(dir.path());
    let listener = |name: &str, verify: &str| {
        format!(
            "[[edge.listener]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca_file = \"{}\"\n\
             tls_client_verify = \"{verify}\"\n",
            p.server_cert, p.server_key, p.ca
        )
    };
    let text = format!(
        "[general]\nworkers = 1\n\n{}\n{}\n\
         [[edge.route]]\npath = \"/\"\nupstream = \"web\"\n\n\
         [[edge.upstream]]\nname = \"web\"\nservers = [\"{}\"]\n",
        listener("optional", "optional"),
        listener("required", "required"),
        up.addr()
    );
    let cfg = switchyard::config::Config::from_toml(&text).unwrap();
    let s = Server::start(cfg).unwrap();
    let url = |i: usize| format!("https://127.0.0.1:{}/echo", s.edge_addrs[i].port());
    let cert = ["--cert", &p.client_cert, "--key", &p.client_key];
    let stranger = ["--cert", &stranger_cert, "--key", &stranger_key];
    let curl_as = |i: usize, version: &str, extra: &[&str]| -> Result<serde_json::Value, String> {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "10", version])
            .args([
                "-H",
                "X-SSL-Client-CN: forged",
                "-H",
                "X-SSL-Client-Verify: SUCCESS",
            ])
            .args(extra)
            .arg(url(i))
            .output()
            .expect("curl runs");
        if !out.status.success() {
            return Err(format!("curl {:?}", out.status.code()));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(v["headers"].clone())
    };
    // The echo upstream's view of the request headers, or curl's exit status; the same over
    // HTTP/2 (hyper's path) and HTTP/1.1 (the edge's fast path), both chosen by ALPN.
    let curl = |i: usize, extra: &[&str]| -> Result<serde_json::Value, String> {
        let [h2, h1] = ["--http2", "--http1.1"].map(|version| curl_as(i, version, extra));
        let cert_headers = |r: &Result<serde_json::Value, String>| {
            r.as_ref()
                .map(|h| {
                    (
                        h["x-ssl-client-verify"].clone(),
                        h["x-ssl-client-cn"].clone(),
                    )
                })
                // Refused either way (curl's exit status differs by where it noticed).
                .map_err(|_| ())
        };
        assert_eq!(
            cert_headers(&h2),
            cert_headers(&h1),
            "listener {i}: HTTP/2 (left) and HTTP/1.1 (right) differ"
        );
        h2
    };
    for i in 0..2 {
        let h = curl(i, &cert).unwrap();
        assert_eq!(h["x-ssl-client-verify"], "SUCCESS", "{h}");
        assert_eq!(h["x-ssl-client-cn"], "cert_user", "{h}");
        let r = curl(i, &stranger);
        assert!(
            r.is_err(),
            "listener {i}: a stranger's certificate was taken: {r:?}"
        );
    }
    let h = curl(0, &[]).unwrap();
    assert_eq!(h["x-ssl-client-verify"], "NONE", "{h}");
    assert!(
        h.get("x-ssl-client-cn").is_none(),
        "a forged name passed: {h}"
    );
    let r = curl(1, &[]);
    assert!(
        r.is_err(),
        "the required listener served a client without a certificate: {r:?}"
    );
    s.shutdown();
}
