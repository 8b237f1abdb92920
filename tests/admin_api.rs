//! The admin API over real HTTP on loopback: health, readiness, status, reload, the token
//! rule, and `/metrics` checked by the Python Prometheus client's parsers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use switchyard::admin::{self, AdminState};
use switchyard::metrics::{kind, BackendSnapshot, ClusterSnapshot, Metrics, TopologySource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct FakeTopology(Mutex<Vec<ClusterSnapshot>>);

impl TopologySource for FakeTopology {
    fn snapshot(&self) -> Vec<ClusterSnapshot> {
        self.0.lock().unwrap().clone()
    }
}

fn cluster() -> ClusterSnapshot {
    ClusterSnapshot {
        name: "main".into(),
        backends: vec![
            BackendSnapshot {
                addr: "127.0.0.1:15432".into(),
                role: "primary",
                up: true,
                in_read_set: false,
                pool_size: 8,
                pool_open: 5,
                pool_idle: 1,
                in_flight: 4,
                transitions: 2,
                ..Default::default()
            },
            BackendSnapshot {
                addr: "127.0.0.1:15433".into(),
                role: "replica",
                up: true,
                in_read_set: true,
                lag_seconds: 0.25,
                lag_bytes: 8192,
                pool_size: 8,
                pool_open: 2,
                pool_idle: 2,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

struct Harness {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    reload_ok: Arc<AtomicBool>,
    /// The pause switch of cluster "main".
    pause: Arc<switchyard::cluster::pause::Pause>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    /// Serve on `bind` (port 0); requests go to 127.0.0.1 on the bound port.
    async fn start(bind: &str, token: Option<&str>) -> Harness {
        let metrics = Arc::new(Metrics::new());
        let ready = Arc::new(AtomicBool::new(true));
        let reload_ok = Arc::new(AtomicBool::new(true));
        let topology = Arc::new(FakeTopology(Mutex::new(vec![cluster()])));
        let pause = Arc::new(switchyard::cluster::pause::Pause::default());
        let state = AdminState {
            metrics: metrics.clone(),
            topology,
            ready: {
                let ready = ready.clone();
                Arc::new(move || ready.load(Ordering::SeqCst))
            },
            reload: {
                let ok = reload_ok.clone();
                let metrics = metrics.clone();
                Arc::new(move || {
                    let ok = ok.load(Ordering::SeqCst);
                    metrics.reload(ok);
                    if ok {
                        Ok("config reloaded: 1 cluster".to_string())
                    } else {
                        Err("config.toml: clusters[0].primary: invalid address \"nope\""
                            .to_string())
                    }
                })
            },
            token: token.map(str::to_owned),
            edge_status: None,
            clients: Arc::new(Vec::new),
            close_client: Arc::new(|_: &str, _: i64| false),
            reconnect: Arc::new(|_: &str| 0),
            pauses: {
                let pause = pause.clone();
                Arc::new(move || vec![("main".to_string(), pause.clone())])
            },
        };
        let listener = TcpListener::bind(bind).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(admin::serve(
            listener,
            state,
            shutdown.clone(),
            not_paused(),
        ));
        Harness {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            metrics,
            ready,
            reload_ok,
            pause,
            shutdown,
            server,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        http(self.addr, "GET", path, &[]).await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("admin server stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let work = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method == "POST" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("admin request timed out");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

#[tokio::test]
async fn health_ready_status_reload() {
    let h = Harness::start("127.0.0.1:0", None).await;

    let r = h.get("/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    let r = h.get("/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    h.ready.store(false, Ordering::SeqCst);
    let r = h.get("/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (503, "not ready\n"));
    h.ready.store(true, Ordering::SeqCst);
    assert_eq!(h.get("/readyz").await.status, 200);

    // Clients recorded by sessions show up in /status.
    let cm = h.metrics.cluster_handles("main");
    let _client1 = cm.client_connected();
    let _client2 = cm.client_connected();
    let _waiting = cm.client_waiting();
    let r = h.get("/status").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let c = &v["clusters"][0];
    assert_eq!(c["name"], "main");
    assert_eq!(c["clients_active"], 2);
    assert_eq!(c["clients_waiting"], 1);
    assert_eq!(c["pool_capacity"], 16);
    assert_eq!(c["pool_active"], 4);
    // (1 waiting + 4 active) / 16
    assert_eq!(c["saturation"], 5.0 / 16.0);
    let primary = &c["backends"][0];
    assert_eq!(primary["addr"], "127.0.0.1:15432");
    assert_eq!(primary["role"], "primary");
    assert_eq!(primary["up"], true);
    assert_eq!(primary["pool_open"], 5);
    assert_eq!(primary["pool_idle"], 1);
    assert_eq!(primary["pool_active"], 4);
    assert_eq!(primary["in_flight"], 4);
    assert_eq!(primary["transitions"], 2);
    let replica = &c["backends"][1];
    assert_eq!(replica["role"], "replica");
    assert_eq!(replica["in_read_set"], true);
    assert_eq!(replica["lag_seconds"], 0.25);
    assert_eq!(replica["lag_bytes"], 8192);

    let r = http(h.addr, "POST", "/reload", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "config reloaded: 1 cluster\n")
    );
    h.reload_ok.store(false, Ordering::SeqCst);
    let r = http(h.addr, "POST", "/reload", &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("invalid address \"nope\""), "{}", r.body);
    // Reload is POST only; unknown paths are 404.
    assert_eq!(h.get("/reload").await.status, 405);
    assert_eq!(h.get("/nope").await.status, 404);

    let r = h.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    assert!(r
        .body
        .contains("switchyard_config_reload_total{result=\"error\"} 1\n"));
    assert!(r
        .body
        .contains("switchyard_config_reload_total{result=\"ok\"} 1\n"));

    h.stop().await;
}

/// `POST /pause` waits for the clients holding a connection (202 with the count after
/// `wait`, 200 once none is left), `/status` shows it, `POST /resume` lifts it; an unknown
/// cluster is 404 and a bad `wait` 400.
#[tokio::test]
async fn pause_waits_for_held_connections_and_resume_lifts_it() {
    let h = Harness::start("127.0.0.1:0", None).await;
    let hold = h.pause.hold();
    let r = http(h.addr, "POST", "/pause?cluster=main&wait=0.2", &[]).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["held"], 1);
    assert_eq!(v["drained"], false);
    assert!(h.pause.is_paused());
    let status: serde_json::Value = serde_json::from_str(&h.get("/status").await.body).unwrap();
    assert_eq!(status["clusters"][0]["paused"], true);
    assert_eq!(status["clusters"][0]["held"], 1);

    // Drained while the request waits.
    let addr = h.addr;
    let waiting = tokio::spawn(async move { http(addr, "POST", "/pause?wait=5", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(hold);
    let r = waiting.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["drained"], true);
    assert_eq!(v["paused"][0], "main");

    assert_eq!(
        http(h.addr, "POST", "/pause?cluster=nope", &[])
            .await
            .status,
        404
    );
    assert_eq!(
        http(h.addr, "POST", "/pause?wait=soon", &[]).await.status,
        400
    );
    assert_eq!(h.get("/pause").await.status, 405);
    let r = http(h.addr, "POST", "/resume", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!h.pause.is_paused());
    let status: serde_json::Value = serde_json::from_str(&h.get("/status").await.body).unwrap();
    assert_eq!(status["clusters"][0]["paused"], false);
    h.stop().await;
}

#[tokio::test]
async fn token_required_when_set() {
    // Bound to every address (so a token is mandatory), queried on loopback.
    let h = Harness::start("0.0.0.0:0", Some("s3cret-token")).await;
    for path in ["/healthz", "/readyz", "/status", "/metrics", "/nope"] {
        let r = h.get(path).await;
        assert_eq!(r.status, 401, "{path} without a token");
        assert_eq!(r.headers["www-authenticate"], "Bearer");
        let r = http(h.addr, "GET", path, &[("Authorization", "Bearer wrong")]).await;
        assert_eq!(r.status, 401, "{path} with a wrong token");
        let r = http(
            h.addr,
            "GET",
            path,
            &[("Authorization", "Basic s3cret-token")],
        )
        .await;
        assert_eq!(r.status, 401, "{path} with the wrong scheme");
    }
    let auth = [("Authorization", "Bearer s3cret-token")];
    let r = http(h.addr, "GET", "/healthz", &auth).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(http(h.addr, "GET", "/readyz", &auth).await.status, 200);
    assert_eq!(http(h.addr, "GET", "/status", &auth).await.status, 200);
    assert_eq!(http(h.addr, "GET", "/metrics", &auth).await.status, 200);
    assert_eq!(http(h.addr, "POST", "/reload", &[]).await.status, 401);
    assert_eq!(http(h.addr, "POST", "/reload", &auth).await.status, 200);
    assert_eq!(http(h.addr, "GET", "/nope", &auth).await.status, 404);
    h.stop().await;
}

#[tokio::test]
async fn non_loopback_without_token_refuses_to_start() {
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(admin::check_bind(addr("127.0.0.1:9000"), None).is_ok());
    assert!(admin::check_bind(addr("[::1]:9000"), None).is_ok());
    let err = admin::check_bind(addr("0.0.0.0:9000"), None).unwrap_err();
    assert!(
        err.contains("0.0.0.0:9000") && err.contains("token"),
        "{err}"
    );
    assert!(admin::check_bind(addr("0.0.0.0:9000"), Some("")).is_err());
    assert!(admin::check_bind(addr("0.0.0.0:9000"), Some("t0ken")).is_ok());
    assert!(admin::check_bind(addr("192.0.2.1:9000"), Some("t0ken")).is_ok());

    assert!(admin::bind(addr("0.0.0.0:0"), None).await.is_err());

    // serve() itself refuses such a listener.
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let state = AdminState {
        metrics: Arc::new(Metrics::new()),
        topology: Arc::new(FakeTopology(Mutex::new(vec![]))),
        ready: Arc::new(|| true),
        reload: Arc::new(|| Ok(String::new())),
        token: None,
        edge_status: None,
        clients: Arc::new(Vec::new),
        close_client: Arc::new(|_: &str, _: i64| false),
        reconnect: Arc::new(|_: &str| 0),
        pauses: Arc::new(Vec::new),
    };
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        admin::serve(listener, state, CancellationToken::new(), not_paused()),
    )
    .await
    .expect("serve returns at once");
    assert!(r.unwrap_err().to_string().contains("token"));
}

/// Make sure Python's `prometheus_client` is importable (installing it once if needed).
fn ensure_prometheus_client() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let have = |py: &str| {
            Command::new("python3")
                .args(["-c", py])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !have("import prometheus_client") {
            let st = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "prometheus_client"])
                .status()
                .expect("run python3 -m pip");
            assert!(st.success(), "pip install prometheus_client failed");
        }
        assert!(
            have("import prometheus_client"),
            "prometheus_client not importable"
        );
    });
}

/// One parsed sample: (family type, sample name, labels, value).
type Sample = (String, String, HashMap<String, String>, f64);

/// Parse exposition text with the Python client's parser `module` (the Prometheus text
/// parser or the strict OpenMetrics one).
fn python_parse(text: &str, module: &str) -> Vec<Sample> {
    ensure_prometheus_client();
    let script = format!(
        "import sys, json\n\
         from {module} import text_string_to_metric_families as p\n\
         out = [[f.type, s.name, s.labels, repr(float(s.value))] for f in p(sys.stdin.read()) for s in f.samples]\n\
         print(json.dumps(out))\n"
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{module} rejected the exposition: {}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, String, HashMap<String, String>, String)> =
        serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter()
        .map(|(t, n, l, v)| (t, n, l, v.parse().unwrap()))
        .collect()
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|(_, n, l, _)| {
        n == name
            && l.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
    })
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(samples, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .3
}

fn kind_of<'a>(samples: &'a [Sample], name: &str) -> &'a str {
    &samples
        .iter()
        .find(|(_, n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
        .0
}

fn record(m: &Metrics) {
    for _ in 0..7 {
        m.routed("main", "replica", "read");
    }
    let cm = m.cluster_handles("main");
    cm.routed("primary", "write");
    cm.routed("primary", "write");
    cm.routed("primary", "write");
    cm.checkout_wait(Duration::from_micros(30));
    cm.checkout_wait(Duration::from_millis(3));
    cm.statement("replica", Duration::from_millis(2));
    cm.statement("primary", Duration::from_secs(90));
    m.statement("main", "primary", 0.004);
    cm.bytes(1234, 56789);
    m.bytes("main", 6, 0);
    cm.error(kind::CHECKOUT_TIMEOUT);
    m.error("main", kind::NO_REPLICA);
    m.error("", kind::AUTH_FAILED);
    m.client_active("main", 3);
    m.client_waiting("main", 2);
    m.reload(true);
    m.reload(false);
}

#[tokio::test]
async fn metrics_parse_with_prometheus_client() {
    let h = Harness::start("127.0.0.1:0", None).await;
    record(&h.metrics);

    let r = h.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let s = python_parse(&r.body, "prometheus_client.parser");

    let routed = "switchyard_statements_routed_total";
    assert_eq!(kind_of(&s, routed), "counter");
    let main_replica_read = [
        ("cluster", "main"),
        ("route", "replica"),
        ("reason", "read"),
    ];
    assert_eq!(value(&s, routed, &main_replica_read), 7.0);
    let main_primary_write = [
        ("cluster", "main"),
        ("route", "primary"),
        ("reason", "write"),
    ];
    assert_eq!(value(&s, routed, &main_primary_write), 3.0);

    assert_eq!(kind_of(&s, "switchyard_build_info"), "gauge");
    assert_eq!(
        value(
            &s,
            "switchyard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    let cl = |state| [("cluster", "main"), ("state", state)];
    assert_eq!(
        value(&s, "switchyard_client_connections", &cl("active")),
        3.0
    );
    assert_eq!(
        value(&s, "switchyard_client_connections", &cl("waiting")),
        2.0
    );

    // Histograms: checkout wait 30 µs (first bucket) and 3 ms.
    let wait = "switchyard_checkout_wait_seconds";
    assert_eq!(kind_of(&s, &format!("{wait}_count")), "histogram");
    assert_eq!(
        value(&s, &format!("{wait}_count"), &[("cluster", "main")]),
        2.0
    );
    let sum = value(&s, &format!("{wait}_sum"), &[("cluster", "main")]);
    assert!((sum - 0.00303).abs() < 1e-9, "{sum}");
    let le = |b| [("cluster", "main"), ("le", b)];
    assert_eq!(value(&s, &format!("{wait}_bucket"), &le("0.00005")), 1.0);
    assert_eq!(value(&s, &format!("{wait}_bucket"), &le("+Inf")), 2.0);
    let stmt = "switchyard_statement_duration_seconds";
    let route = |r| [("cluster", "main"), ("route", r)];
    assert_eq!(value(&s, &format!("{stmt}_count"), &route("primary")), 2.0);
    assert_eq!(value(&s, &format!("{stmt}_count"), &route("replica")), 1.0);
    let primary_inf = [("cluster", "main"), ("route", "primary"), ("le", "+Inf")];
    let primary_60 = [("cluster", "main"), ("route", "primary"), ("le", "60.0")];
    assert_eq!(value(&s, &format!("{stmt}_bucket"), &primary_inf), 2.0);
    assert_eq!(value(&s, &format!("{stmt}_bucket"), &primary_60), 1.0);

    let bytes = "switchyard_bytes_total";
    assert_eq!(kind_of(&s, bytes), "counter");
    let dir = |d| [("cluster", "main"), ("direction", d)];
    assert_eq!(value(&s, bytes, &dir("client_to_backend")), 1240.0);
    assert_eq!(value(&s, bytes, &dir("backend_to_client")), 56789.0);

    let errors = "switchyard_errors_total";
    let err = |c, k| [("cluster", c), ("kind", k)];
    assert_eq!(value(&s, errors, &err("main", "checkout_timeout")), 1.0);
    assert_eq!(value(&s, errors, &err("main", "no_replica")), 1.0);
    assert_eq!(value(&s, errors, &err("", "auth_failed")), 1.0);

    assert_eq!(
        value(&s, "switchyard_config_reload_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        value(&s, "switchyard_config_reload_total", &[("result", "error")]),
        1.0
    );
    assert_eq!(
        value(&s, "switchyard_config_last_reload_successful", &[]),
        0.0
    );
    let last_ok = value(
        &s,
        "switchyard_config_last_reload_success_timestamp_seconds",
        &[],
    );
    assert!(last_ok > 1.6e9, "{last_ok}");

    // Topology, copied at scrape time.
    let p = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("cluster", "main"), ("backend", "127.0.0.1:15432")];
        l.extend_from_slice(extra);
        l
    };
    let r = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("cluster", "main"), ("backend", "127.0.0.1:15433")];
        l.extend_from_slice(extra);
        l
    };
    assert_eq!(
        value(&s, "switchyard_backend_up", &p(&[("role", "primary")])),
        1.0
    );
    assert_eq!(
        value(&s, "switchyard_backend_up", &r(&[("role", "replica")])),
        1.0
    );
    assert_eq!(value(&s, "switchyard_backend_in_read_set", &r(&[])), 1.0);
    assert_eq!(value(&s, "switchyard_backend_in_read_set", &p(&[])), 0.0);
    assert_eq!(
        value(&s, "switchyard_replication_lag_seconds", &r(&[])),
        0.25
    );
    assert_eq!(
        value(&s, "switchyard_replication_lag_bytes", &r(&[])),
        8192.0
    );
    assert_eq!(
        value(
            &s,
            "switchyard_backend_connections",
            &p(&[("state", "active")])
        ),
        4.0
    );
    assert_eq!(
        value(
            &s,
            "switchyard_backend_connections",
            &p(&[("state", "idle")])
        ),
        1.0
    );
    assert_eq!(
        value(&s, "switchyard_backend_connections_open", &p(&[])),
        5.0
    );
    assert_eq!(value(&s, "switchyard_backend_pool_capacity", &p(&[])), 8.0);
    assert_eq!(value(&s, "switchyard_backend_in_flight", &p(&[])), 4.0);
    assert_eq!(
        kind_of(&s, "switchyard_backend_transitions_total"),
        "counter"
    );
    assert_eq!(
        value(&s, "switchyard_backend_transitions_total", &p(&[])),
        2.0
    );
    // (2 waiting + 4 active) / 16
    assert_eq!(
        value(&s, "switchyard_saturation", &[("cluster", "main")]),
        6.0 / 16.0
    );
    assert!(value(&s, "switchyard_process_start_time_seconds", &[]) > 1.6e9);

    // A scraper that asks for OpenMetrics gets it, and the strict parser accepts it.
    let r = http(
        h.addr,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("application/openmetrics-text"));
    assert!(r.body.ends_with("# EOF\n"));
    let s = python_parse(&r.body, "prometheus_client.openmetrics.parser");
    assert_eq!(value(&s, routed, &main_replica_read), 7.0);
    assert_eq!(kind_of(&s, routed), "counter");

    h.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_keepalive_connections() {
    let h = Harness::start("127.0.0.1:0", None).await;
    // A keep-alive client that sent one request and then idles.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // And one that never finishes its request.
    let mut slow = TcpStream::connect(h.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.stop().await;
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}

/// The admin API's accept pause (a handover), never set here.
fn not_paused() -> tokio::sync::watch::Receiver<bool> {
    tokio::sync::watch::Sender::new(false).subscribe()
}
