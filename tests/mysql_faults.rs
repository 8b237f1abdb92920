//! Real faults under the MySQL front end, against real MariaDB servers (a primary and GTID
//! replicas started by the test harness): a replica whose SQL thread stops (and both of
//! them: fallback to the primary or a clear error), replicas that crash or shut down under
//! readers (their reads retried elsewhere), a primary restarted under idle clients, a client
//! killed inside a transaction,
//! KILL QUERY through the proxy (and a storm of them next to busy neighbours), replicas
//! added and removed by a live reload while clients read, read-your-writes against
//! delayed replicas, and a promotion while the old primary keeps running.
//!
//! Tests that stop replication have a topology of their own; the others share one (two
//! replicas). All of them run one at a time (`SERIAL`): they stop threads, time kills and
//! count where reads went. Clients are the `mariadb` CLI and PyMySQL; every wait is bounded.

mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard::app::Server;
use switchyard::config::Config;
use switchyard::testkit::mariadb::MariaCluster;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    if std::env::var_os("SWITCHYARD_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env(
                "SWITCHYARD_TEST_LOG",
            ))
            .with_writer(std::io::stderr)
            .try_init();
    }
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The topology shared by the tests that do not change it: a primary and two replicas.
fn shared() -> &'static MariaCluster {
    static C: OnceLock<MariaCluster> = OnceLock::new();
    C.get_or_init(|| MariaCluster::start(2).expect("start MariaDB"))
}

/// A topology of its own for a test that stops replication.
fn topology() -> MariaCluster {
    MariaCluster::start(2).expect("start MariaDB")
}

/// Health probe interval of the proxies here.
const INTERVAL: Duration = Duration::from_millis(500);

struct Proxy {
    server: Option<Server>,
    port: u16,
    db: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl Proxy {
    fn start(text: &str, db: &str) -> Proxy {
        let cfg = Config::from_toml(text).expect("valid config");
        Self::wrap(Server::start(cfg).expect("proxy starts"), db)
    }

    fn wrap(server: Server, db: &str) -> Proxy {
        let port = server.my_addr.expect("mysql listener").port();
        Proxy {
            server: Some(server),
            port,
            db: db.to_string(),
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    fn state(&self) -> std::sync::Arc<switchyard::cluster::ClusterState> {
        self.server().shared.clusters.load_full()[&self.db].clone()
    }

    /// Whether backend `i` (0 the primary, then the replicas as configured) may take reads.
    fn in_read_set(&self, i: usize) -> bool {
        let s = self.state();
        let b = &s.backends[i];
        b.is_up() && b.in_read_set()
    }

    /// The proxy's view of the backends, for failure messages.
    fn backends(&self) -> String {
        self.state()
            .backends
            .iter()
            .map(|b| {
                format!(
                    "{} {} up={} read_set={} lag={:?}",
                    b.addr,
                    b.role().as_str(),
                    b.is_up(),
                    b.in_read_set(),
                    b.lag()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// mysql_async's options for the application user through the proxy.
    fn async_opts(&self) -> mysql_async::OptsBuilder {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some("app"))
            .pass(Some("app_pw"))
            .db_name(Some(&self.db))
    }

    /// Waits until `f` holds of the proxy, up to `limit`; the time it took.
    fn wait_for(&self, what: &str, limit: Duration, f: impl Fn(&Proxy) -> bool) -> Duration {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for: {what}; backends: {}",
                self.backends()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        start.elapsed()
    }
}

/// Config for a proxy in front of `c` serving database `db`. `replicas`: node numbers;
/// `cluster_extra` goes into the [[cluster]] table, `general` and `pool` into theirs.
fn config(
    c: &MariaCluster,
    db: &str,
    replicas: &[usize],
    cluster_extra: &str,
    general: &str,
    pool: &str,
) -> String {
    let replicas: Vec<String> = replicas
        .iter()
        .map(|&n| format!("\"127.0.0.1:{}\"", c.port(n)))
        .collect();
    format!(
        r#"
[general]
drain_timeout = "2s"
{general}

[mysql]
listen = "127.0.0.1:0"

[health]
interval = "{interval}ms"
timeout = "2s"
rise = 2
fall = 2

[pool]
checkout_timeout = "5s"
{pool}

[[user]]
name = "app"
password = "app_pw"

[[cluster]]
name = "{db}"
protocol = "mysql"
database = "{db}"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]
user = "switchyard"
password = "switchyard_pw"
{cluster_extra}
"#,
        interval = INTERVAL.as_millis(),
        primary = c.primary_port(),
        replicas = replicas.join(", ")
    )
}

fn setup(c: &MariaCluster, db: &str, sql: &str) {
    c.create_database(db).unwrap();
    c.query_db(0, Some(db), sql).unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
}

fn server_id(c: &MariaCluster, node: usize) -> String {
    c.value(node, "SELECT @@server_id").unwrap()
}

/// Runs `cmd` with its output captured, killed after `limit`: (ok, stdout, stderr).
fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, mut err) = (out_t.join().unwrap(), err_t.join().unwrap());
    if status.is_none() {
        err += &format!("\n(killed after {limit:?})");
    }
    (status.is_some_and(|s| s.success()), out, err)
}

/// Runs a Python program with `args`, bounded by `limit`: (ok, stdout, stderr).
fn python(program: &str, args: &[String], limit: Duration) -> (bool, String, String) {
    run_bounded(
        Command::new("python3").arg("-c").arg(program).args(args),
        limit,
    )
}

/// Runs `sql` with the mariadb CLI through the proxy: (ok, stdout, stderr).
fn cli(port: u16, db: &str, sql: &str) -> (bool, String, String) {
    run_bounded(
        Command::new("mariadb").args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uapp",
            "-papp_pw",
            "--skip-ssl",
            "--connect-timeout=10",
            "-N",
            "-B",
            db,
            "-e",
            sql,
        ]),
        Duration::from_secs(60),
    )
}

/// Common PyMySQL setup: `conn()` connects through the proxy at argv[1] to database argv[2]
/// with autocommit on (so plain reads may go to replicas).
const PY_PRELUDE: &str = r#"
import sys, json, time, threading, random, pymysql
port, db = int(sys.argv[1]), sys.argv[2]
def conn(**kw):
    args = dict(host="127.0.0.1", port=port, user="app", password="app_pw", database=db,
                connect_timeout=10, read_timeout=40, write_timeout=10, autocommit=True)
    args.update(kw)
    return pymysql.connect(**args)
def err_of(e):
    return [e.args[0] if e.args else 0, str(e.args[1]) if len(e.args) > 1 else repr(e)]
"#;

fn py(program: &str, p: &Proxy, extra: &[&str], limit: Duration) -> Value {
    py_at(program, p.port, &p.db, extra, limit)
}

/// [`py`] against any server (a proxy, or a MariaDB node directly: the same users exist).
fn py_at(program: &str, port: u16, db: &str, extra: &[&str], limit: Duration) -> Value {
    let mut args = vec![port.to_string(), db.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let (ok, out, err) = python(&format!("{PY_PRELUDE}{program}"), &args, limit);
    assert!(ok, "python failed:\n{out}\n{err}");
    let last = out.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
}

/// [`py`] on a thread of its own, while the test does something to the servers: the thread
/// returns the program's last line as JSON (it panics if the program failed).
fn py_in_background(
    program: &'static str,
    p: &Proxy,
    extra: &[String],
) -> std::thread::JoinHandle<Value> {
    let (port, db, extra) = (p.port, p.db.clone(), extra.to_vec());
    std::thread::spawn(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        py_at(program, port, &db, &extra, Duration::from_secs(90))
    })
}

/// `n` autocommit reads of `@@server_id` on one PyMySQL connection: (server id -> count,
/// errors as [code, message]).
fn reads(p: &Proxy, n: usize) -> (HashMap<String, u64>, Vec<Value>) {
    let program = r#"
n = int(sys.argv[3])
c = conn()
seen, errors = {}, []
for i in range(n):
    try:
        cur = c.cursor(); cur.execute("SELECT @@server_id"); sid = str(cur.fetchone()[0])
        seen[sid] = seen.get(sid, 0) + 1
    except pymysql.err.MySQLError as e:
        errors.append(err_of(e))
print(json.dumps({"seen": seen, "errors": errors}))
"#;
    let v = py(program, p, &[&n.to_string()], Duration::from_secs(60));
    let seen = v["seen"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    (seen, v["errors"].as_array().unwrap().clone())
}

// ---- 1. a replica whose SQL thread stops ----

#[test]
fn a_replica_with_a_stopped_sql_thread_leaves_the_read_set_and_returns() {
    let _g = serial();
    let c = topology();
    let db = "stall";
    setup(
        &c,
        db,
        "CREATE TABLE t (id int PRIMARY KEY AUTO_INCREMENT, v int)",
    );
    let p = Proxy::start(
        &config(&c, db, &[1, 2], "max_lag = \"30s\"", "workers = 2", ""),
        db,
    );
    let (primary, r1, r2) = (server_id(&c, 0), server_id(&c, 1), server_id(&c, 2));
    p.wait_for(
        "both replicas in the read set",
        Duration::from_secs(10),
        |p| p.in_read_set(1) && p.in_read_set(2),
    );
    let (seen, errors) = reads(&p, 100);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!seen.contains_key(&primary), "{seen:?}");
    assert!(seen.contains_key(&r1) && seen.contains_key(&r2), "{seen:?}");

    c.stop_sql_thread(1).unwrap();
    let stopped = Instant::now();
    // Writes on the primary that replica 1 does not apply.
    let (ok, _, err) = cli(
        p.port,
        db,
        "INSERT INTO t (v) VALUES (1); INSERT INTO t (v) VALUES (2); INSERT INTO t (v) VALUES (3)",
    );
    assert!(ok, "{err}");
    p.wait_for(
        "the stopped replica leaves the read set",
        Duration::from_secs(10),
        |p| !p.in_read_set(1),
    );
    let took = stopped.elapsed();
    eprintln!("left the read set {took:?} after STOP SLAVE SQL_THREAD");
    assert!(
        took <= 2 * INTERVAL,
        "left the read set only after {took:?} (probe interval {INTERVAL:?}); {}",
        p.backends()
    );
    assert!(p.in_read_set(2), "{}", p.backends());
    let (seen, errors) = reads(&p, 200);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        seen.get(&r1),
        None,
        "reads reached the stopped replica: {seen:?}"
    );
    assert_eq!(seen.get(&r2), Some(&200), "{seen:?}");
    // Every read through the proxy sees all three rows (the stalled replica lacks them).
    let (ok, out, err) = cli(p.port, db, &"SELECT count(*) FROM t; ".repeat(20));
    assert!(ok, "{err}");
    assert!(out.lines().all(|l| l == "3"), "{out}");

    c.start_sql_thread(1).unwrap();
    let started = Instant::now();
    p.wait_for(
        "the replica returns to the read set",
        Duration::from_secs(10),
        |p| p.in_read_set(1),
    );
    eprintln!("back in the read set {:?} after START", started.elapsed());
    let (seen, errors) = reads(&p, 200);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        seen.get(&r1).copied().unwrap_or(0) >= 20,
        "the replica did not come back: {seen:?}"
    );
    assert!(!seen.contains_key(&primary), "{seen:?}");
}

#[test]
fn with_both_replicas_stopped_reads_fall_back_or_fail_clearly() {
    let _g = serial();
    let c = topology();
    let db = "fallback";
    setup(&c, db, "CREATE TABLE t (id int PRIMARY KEY)");
    let to_primary = Proxy::start(&config(&c, db, &[1, 2], "", "workers = 1", ""), db);
    let to_error = Proxy::start(
        &config(&c, db, &[1, 2], "fallback = \"error\"", "workers = 1", ""),
        db,
    );
    let primary = server_id(&c, 0);
    for p in [&to_primary, &to_error] {
        p.wait_for(
            "both replicas in the read set",
            Duration::from_secs(10),
            |p| p.in_read_set(1) && p.in_read_set(2),
        );
    }
    c.stop_sql_thread(1).unwrap();
    c.stop_sql_thread(2).unwrap();
    for p in [&to_primary, &to_error] {
        p.wait_for(
            "both replicas leave the read set",
            Duration::from_secs(10),
            |p| !p.in_read_set(1) && !p.in_read_set(2),
        );
    }
    let (seen, errors) = reads(&to_primary, 50);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(seen.get(&primary), Some(&50), "{seen:?}");

    // fallback = "error": a clear error for the read; the session survives it, writes and
    // hinted reads still work on the same connection.
    let program = r#"
c = conn()
out = {}
try:
    cur = c.cursor(); cur.execute("SELECT @@server_id"); out["read"] = cur.fetchall()
except pymysql.err.MySQLError as e:
    out["read_error"] = err_of(e)
cur = c.cursor(); cur.execute("INSERT INTO t VALUES (1)"); out["insert"] = cur.rowcount
cur = c.cursor(); cur.execute("/* switchyard:primary */ SELECT @@server_id"); out["hinted"] = str(cur.fetchone()[0])
print(json.dumps(out))
"#;
    let v = py(program, &to_error, &[], Duration::from_secs(60));
    let e = &v["read_error"];
    assert!(e.is_array(), "the read did not fail: {v}");
    let msg = e[1].as_str().unwrap();
    assert_eq!(e[0].as_u64(), Some(1290), "{v}");
    assert!(
        msg.contains("no replica") && msg.contains("fallback"),
        "unclear error: {msg}"
    );
    assert_eq!(v["insert"].as_u64(), Some(1), "{v}");
    assert_eq!(v["hinted"].as_str(), Some(primary.as_str()), "{v}");
    // The CLI shows the same error.
    let (ok, _, err) = cli(to_error.port, db, "SELECT 1");
    assert!(
        !ok && err.contains("1290") && err.contains("no replica"),
        "{err}"
    );

    c.start_sql_thread(1).unwrap();
    c.start_sql_thread(2).unwrap();
    to_error.wait_for("replicas back", Duration::from_secs(10), |p| {
        p.in_read_set(1) && p.in_read_set(2)
    });
    let (seen, errors) = reads(&to_error, 50);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!seen.contains_key(&primary), "{seen:?}");
}

// ---- 1b. a replica that dies under readers ----

/// Readers that run until `stop` exists: PyMySQL threads sending text queries and
/// mysql-connector-python threads executing a server-side prepared statement, all with
/// autocommit on, each statement taking a few milliseconds on its server so that some are
/// running when a replica dies. Prints per-server counts and every error.
const DYING_READERS: &str = r#"
import os, mysql.connector
stop = sys.argv[3]
lock = threading.Lock()
seen, errors = {}, []
def note(sid=None, err=None):
    with lock:
        if err is not None:
            errors.append(err)
        else:
            seen[sid] = seen.get(sid, 0) + 1
def text_reader():
    c = conn()
    while not os.path.exists(stop):
        try:
            cur = c.cursor(); cur.execute("SELECT @@server_id, SLEEP(0.004)")
            note(str(cur.fetchone()[0]))
        except pymysql.err.MySQLError as e:
            note(err=["text"] + err_of(e))
            c = conn()
def prepared_reader():
    c = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
                                database=db, autocommit=True, connection_timeout=10)
    while not os.path.exists(stop):
        try:
            cur = c.cursor(prepared=True)
            cur.execute("SELECT @@server_id, SLEEP(?)", (0.004,))
            note(str(cur.fetchone()[0])); cur.close()
        except mysql.connector.Error as e:
            note(err=["prepared", e.errno, str(e)])
            c = mysql.connector.connect(host="127.0.0.1", port=port, user="app",
                                        password="app_pw", database=db, autocommit=True)
SLOW = "SELECT @@server_id, seq, md5(seq), SLEEP(%s) FROM seq_1_to_600"
def slow_reader(prepared):
    # About 30 kB of rows, slowly: more than one write of the server's.
    c = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
                                database=db, autocommit=True, connection_timeout=10)
    while not os.path.exists(stop):
        try:
            cur = c.cursor(prepared=prepared)
            if prepared:
                cur.execute(SLOW.replace("%s", "?"), (0.0005,))
            else:
                cur.execute(SLOW % "0.0005")
            rows = cur.fetchall(); cur.close()
            if len(rows) != 600:
                note(err=["slow", prepared, len(rows)])
            note(str(rows[0][0]))
        except mysql.connector.Error as e:
            note(err=["slow", prepared, e.errno, str(e)])
            c = mysql.connector.connect(host="127.0.0.1", port=port, user="app",
                                        password="app_pw", database=db, autocommit=True)
threads = [threading.Thread(target=text_reader) for _ in range(4)]
threads += [threading.Thread(target=prepared_reader) for _ in range(4)]
threads += [threading.Thread(target=slow_reader, args=(p,)) for p in (False, True)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"seen": seen, "errors": errors}))
"#;

/// A replica that crashes (SIGKILL) or shuts down cleanly while ten clients read through
/// the proxy (two of them 600 rows slowly, an answer the server sends in several writes): a
/// read none of whose answer reached the client yet is sent to the other replica, so no
/// client sees an error, and nothing reaches the primary while a replica is up.
#[test]
fn a_replica_that_dies_under_readers_costs_them_no_error() {
    let _g = serial();
    let c = topology();
    let db = "dying";
    setup(&c, db, "CREATE TABLE t (id int PRIMARY KEY)");
    let text = config(&c, db, &[1, 2], "", "workers = 2", "size = 8")
        + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let p = Proxy::start(&text, db);
    p.wait_for(
        "both replicas in the read set",
        Duration::from_secs(10),
        |p| p.in_read_set(1) && p.in_read_set(2),
    );
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let readers = py_in_background(DYING_READERS, &p, &[stop.display().to_string()]);
    std::thread::sleep(Duration::from_secs(1));
    c.kill_node(1).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    c.start_node(1).unwrap();
    p.wait_for("the restarted replica back", Duration::from_secs(20), |p| {
        p.in_read_set(1)
    });
    std::thread::sleep(Duration::from_millis(500));
    c.stop_node(2).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&stop, "").unwrap();
    let v = readers.join().unwrap();
    let errors = v["errors"].as_array().unwrap();
    let seen = v["seen"].as_object().unwrap();
    assert!(
        errors.is_empty(),
        "readers saw errors: {errors:?} (reads {seen:?})"
    );
    let primary = server_id(&c, 0);
    assert!(
        !seen.contains_key(&primary),
        "reads reached the primary: {seen:?}"
    );
    let total: u64 = seen.values().map(|n| n.as_u64().unwrap()).sum();
    assert!(total > 200, "too few reads: {seen:?}");
    // The reads were retried (the test would not show anything if none had been in flight).
    let (_, body) = http(p.server().admin_addr.unwrap(), "GET", "/metrics");
    let retried = metric_sum(
        &cluster_metrics(&body, db),
        "switchyard_errors_total",
        &["kind=\"replica_retry\""],
    );
    assert!(retried >= 1.0, "no read was retried");
    eprintln!("reads {seen:?}, {retried} retried");
    c.start_node(2).unwrap();
}

/// A TCP relay to `to` on a port of its own. Once `armed` (false at first), the first chunk
/// from the server of more than 4 KiB (the start of a large answer; health probes' answers
/// are small) is passed on only in part, its first 2 KiB, and then the connection is cut
/// both ways, as when a server is killed while it sends an answer. Returns (its port,
/// armed, cuts).
fn answer_cutting_relay(
    to: u16,
) -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let armed = Arc::new(AtomicBool::new(false));
    let cuts = Arc::new(AtomicU32::new(0));
    let (a, n) = (armed.clone(), cuts.clone());
    std::thread::spawn(move || {
        for from in l.incoming() {
            let Ok(from) = from else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let (armed, cuts) = (a.clone(), n.clone());
            let (mut up_r, mut up_w) = (from.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_r, &mut up_w);
                let _ = up_w.shutdown(Shutdown::Write);
            });
            let (mut down_r, mut down_w) = (server, from);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match down_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if n > 4096 && armed.swap(false, SeqCst) {
                        let _ = down_w.write_all(&buf[..2048]);
                        cuts.fetch_add(1, SeqCst);
                        break;
                    }
                    if down_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = down_r.shutdown(Shutdown::Both);
                let _ = down_w.shutdown(Shutdown::Both);
            });
        }
    });
    (port, armed, cuts)
}

/// A replica's connection ends after it sent the start of an answer (a column count, the
/// columns, some rows), as when the server is killed while it sends a large result: none of
/// it had left the proxy yet (an answer goes out whole up to 64 KiB), so the read goes to
/// another replica and the reader sees the whole answer and no error, for text and
/// prepared statements alike.
#[test]
fn a_replica_lost_in_the_middle_of_an_answer_costs_the_reader_no_error() {
    use mysql_async::prelude::*;
    use std::sync::atomic::Ordering::SeqCst;
    let _g = serial();
    let c = shared();
    let db = "midcut";
    setup(c, db, "CREATE TABLE t (id int PRIMARY KEY)");
    let (relay, armed, cuts) = answer_cutting_relay(c.port(1));
    let text = config(c, db, &[1, 2], "", "workers = 1", "size = 4").replace(
        &format!("\"127.0.0.1:{}\"", c.port(1)),
        &format!("\"127.0.0.1:{relay}\""),
    );
    let p = Proxy::start(&text, db);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = p.async_opts();
    // About 36 KB of rows: more than one read from the server, less than one flush.
    let sql = "SELECT seq, repeat('x', 100), @@server_id FROM seq_1_to_300";
    let mut errors = Vec::new();
    let mut served: HashMap<String, u32> = HashMap::new();
    // Answers cut, to text queries and to prepared ones.
    let mut cut = [0u32; 2];
    for attempt in 0..80 {
        if cut.iter().all(|&n| n >= 2) {
            break;
        }
        let before = cuts.load(SeqCst);
        p.wait_for(
            "both replicas in the read set",
            Duration::from_secs(20),
            |p| p.in_read_set(1) && p.in_read_set(2),
        );
        armed.store(true, SeqCst);
        let r: Result<Vec<(u64, String, u64)>, mysql_async::Error> = rt.block_on(async {
            let mut conn = mysql_async::Conn::new(opts.clone()).await?;
            let rows = if attempt % 2 == 0 {
                conn.query(sql).await?
            } else {
                conn.exec(sql, ()).await?
            };
            conn.disconnect().await?;
            Ok(rows)
        });
        match r {
            Ok(rows) => {
                assert_eq!(rows.len(), 300, "a partial answer");
                *served.entry(rows[0].2.to_string()).or_default() += 1;
            }
            Err(e) => errors.push(format!("attempt {attempt}: {e}")),
        }
        if cuts.load(SeqCst) > before {
            cut[attempt % 2] += 1;
        }
    }
    armed.store(false, SeqCst);
    assert!(errors.is_empty(), "the reader saw errors: {errors:#?}");
    assert!(
        cut.iter().all(|&n| n >= 2),
        "too few answers cut (text, prepared: {cut:?}): the test tested little; served \
         {served:?}"
    );
    assert!(
        !served.contains_key(&server_id(c, 0)),
        "reads reached the primary: {served:?}"
    );
}

/// A replica stops answering without closing its connections (its `mariadbd` stopped: from
/// the proxy's side a powered-off host or a network partition looks the same) while readers
/// have statements running on it, text and prepared. Its probes mark it down, its
/// connections are closed (`[health] close_replica_connections`), and the reads that were
/// waiting on it run again on the other replica: every reader goes on, with no error, while
/// the replica is still stopped. Directly, they would wait as long as the server is away.
#[test]
fn reads_on_a_replica_that_stops_answering_run_again_elsewhere() {
    use mysql_async::prelude::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;
    const READERS: usize = 8;
    const SLOW: &str = "SELECT SLEEP(0.3), @@server_id";
    let _g = serial();
    let c = shared();
    let db = "frozen";
    setup(c, db, "CREATE TABLE t (id int PRIMARY KEY)");
    let text = config(c, db, &[1, 2], "", "workers = 2", "size = 8")
        .replace("timeout = \"2s\"\nrise", "timeout = \"1s\"\nrise");
    assert!(text.contains("timeout = \"1s\"\nrise"), "{text}");
    let p = Proxy::start(&text, db);
    p.wait_for(
        "both replicas in the read set",
        Duration::from_secs(20),
        |p| p.in_read_set(1) && p.in_read_set(2),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opts = p.async_opts();
    let stop = Arc::new(AtomicBool::new(false));
    let done: Arc<Vec<AtomicUsize>> = Arc::new((0..READERS).map(|_| AtomicUsize::new(0)).collect());
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let (stop, done, opts) = (stop.clone(), done.clone(), opts.clone());
            rt.spawn(async move {
                let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                let mut errors = Vec::new();
                while !stop.load(Relaxed) {
                    let r: Result<Vec<(u8, u64)>, _> = if i % 2 == 0 {
                        conn.query(SLOW).await
                    } else {
                        conn.exec(SLOW, ()).await
                    };
                    match r {
                        Ok(_) => {
                            done[i].fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            errors.push(format!("reader {i}: {e}"));
                            break;
                        }
                    }
                }
                errors
            })
        })
        .collect();
    // Wait until reads are running on replica 1, then stop it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running = c
            .query(
                1,
                "SELECT count(*) FROM information_schema.processlist \
                 WHERE info LIKE 'SELECT SLEEP(0.3)%'",
            )
            .unwrap();
        if running[0][0].parse::<u32>().unwrap_or(0) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no reads ran on replica 1");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = c.pid(1).expect("replica 1 runs") as i32;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "mariadbd");
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    struct Resume(i32);
    impl Drop for Resume {
        fn drop(&mut self) {
            // SAFETY: as above.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    let resume = Resume(pid);
    // Down after two probes with no answer (~2.5 s); then every reader must make progress
    // while the replica is still stopped.
    std::thread::sleep(Duration::from_secs(4));
    let before: Vec<usize> = done.iter().map(|d| d.load(Relaxed)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<usize> = done.iter().map(|d| d.load(Relaxed)).collect();
    let stuck: Vec<usize> = (0..READERS).filter(|&i| after[i] == before[i]).collect();
    let state = p.backends();
    drop(resume);
    stop.store(true, Relaxed);
    let errors: Vec<String> = readers
        .into_iter()
        .flat_map(|r| rt.block_on(r).unwrap())
        .collect();
    assert!(
        stuck.is_empty(),
        "readers {stuck:?} were still waiting on the stopped replica ({before:?} -> \
         {after:?}); {state}"
    );
    assert!(errors.is_empty(), "readers saw errors: {errors:#?}");
    // Back, it takes reads again, and no connection closed under it is handed out.
    p.wait_for("the resumed replica back", Duration::from_secs(20), |p| {
        p.in_read_set(1)
    });
    let (served, errors) = reads(&p, 200);
    assert!(
        errors.is_empty(),
        "reads after the resume failed: {errors:?}"
    );
    assert!(
        served.contains_key(&server_id(c, 1)),
        "the resumed replica served no read: {served:?}"
    );
}

/// Clients that write and read, wait for `go` to exist, and write and read again: PyMySQL
/// (text) and mysql-connector-python (prepared) threads, autocommit on. Prints every error.
const RETURNING_CLIENTS: &str = r#"
import os, mysql.connector
go, n = sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
errors, done = [], []
def text_client(i):
    c = conn()
    for round in range(2):
        if round == 1:
            while not os.path.exists(go): time.sleep(0.02)
        try:
            cur = c.cursor(); cur.execute("INSERT INTO t VALUES (%s)", (i * 10 + round,))
            cur.execute("SELECT count(*) FROM t WHERE id = %s", (i * 10 + round,)); cur.fetchall()
            with lock: done.append(i * 10 + round)
        except pymysql.err.MySQLError as e:
            with lock: errors.append(["text", round] + err_of(e))
def prepared_client(i):
    c = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
                                database=db, autocommit=True, connection_timeout=10)
    for round in range(2):
        if round == 1:
            while not os.path.exists(go): time.sleep(0.02)
        try:
            cur = c.cursor(prepared=True)
            cur.execute("INSERT INTO t VALUES (?)", (i * 10 + round,))
            cur.execute("SELECT count(*) FROM t WHERE id = ?", (i * 10 + round,)); cur.fetchall()
            cur.close()
            with lock: done.append(i * 10 + round)
        except mysql.connector.Error as e:
            with lock: errors.append(["prepared", round, e.errno, str(e)])
threads = [threading.Thread(target=text_client, args=(i,)) for i in range(n)]
threads += [threading.Thread(target=prepared_client, args=(i,)) for i in range(n, 2 * n)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"errors": errors, "done": sorted(done)}))
"#;

/// The primary restarts while clients sit idle between statements (their connections
/// parked with them or idle in the pool, all dead afterwards): their next statements run
/// on new connections, with no error, as behind a pooler; directly each would have lost its
/// connection.
#[test]
fn a_restarted_primary_costs_idle_clients_no_error() {
    let _g = serial();
    let c = topology();
    let db = "restart";
    setup(&c, db, "CREATE TABLE t (id int PRIMARY KEY)");
    let p = Proxy::start(&config(&c, db, &[1, 2], "", "workers = 2", "size = 4"), db);
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let clients = py_in_background(
        RETURNING_CLIENTS,
        &p,
        &[go.display().to_string(), "4".into()],
    );
    // Every client has written once (its row is on the primary).
    let start = Instant::now();
    while c.value(0, &format!("SELECT count(*) FROM {db}.t")).unwrap() != "8" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first round never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    c.stop_node(0).unwrap();
    c.start_node(0).unwrap();
    p.wait_for("the primary up again", Duration::from_secs(20), |p| {
        p.state().backends[0].is_up()
    });
    std::fs::write(&go, "").unwrap();
    let v = clients.join().unwrap();
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    assert_eq!(v["done"].as_array().unwrap().len(), 16, "{v}");
    assert_eq!(
        c.value(0, &format!("SELECT count(*) FROM {db}.t")).unwrap(),
        "16"
    );
}

/// Sixteen mysql_async writers (half with connect-time settings of their own), each with a
/// ledger of what it was told, while the primary is shut down and crashes (SIGKILL) under
/// them and starts again. Each attempt bumps the writer's counter row and logs the new value
/// with the attempt's number in one transaction, begun four ways: a multi-statement text,
/// START TRANSACTION with prepared statements, `autocommit = 0` with text statements, and
/// the driver's own transaction. The ledgers are checked as in `tests/pg_faults.rs`: no
/// transaction half applied, none told committed missing, none applied twice, nothing there
/// the writer did not attempt, and commits again after the last restart.
#[test]
fn writers_under_primary_restarts_keep_their_ledgers() {
    use mysql_async::prelude::*;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let _g = serial();
    let c = topology();
    let db = "ledger";
    let mut setup_sql = String::from(
        "CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL); \
         CREATE TABLE log (id int, n int, k int, PRIMARY KEY (id, n));",
    );
    for w in 0..16 {
        setup_sql.push_str(&format!("INSERT INTO c VALUES ({w}, 0);"));
    }
    setup(&c, db, &setup_sql);
    let p = Proxy::start(&config(&c, db, &[1, 2], "", "workers = 2", "size = 4"), db);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, restarted) = (
        std::sync::Arc::new(AtomicBool::new(false)),
        std::sync::Arc::new(AtomicBool::new(false)),
    );
    let writers: Vec<_> = (0..16i32)
        .map(|w| {
            let (stop, restarted) = (stop.clone(), restarted.clone());
            let mut opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(p.port)
                .user(Some("app"))
                .pass(Some("app_pw"))
                .db_name(Some(db));
            if w % 2 == 1 {
                opts = opts.init(vec!["SET NAMES latin1, time_zone = '+01:00'"]);
            }
            rt.spawn(async move {
                let connect = || async {
                    loop {
                        // The proxy takes logins while the primary is down.
                        match mysql_async::Conn::new(opts.clone()).await {
                            Ok(conn) => return conn,
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                };
                let mut conn = connect().await;
                let mut ledger = support::Ledger::default();
                let mut k = 0i32;
                while !stop.load(Relaxed) {
                    k += 1;
                    let bump = format!("UPDATE c SET n = n + 1 WHERE id = {w}");
                    let log = format!("INSERT INTO log SELECT id, n, {k} FROM c WHERE id = {w}");
                    let way = ((k + w) % 4) as usize;
                    let r = match way {
                        0 => {
                            conn.query_drop(format!("BEGIN; {bump}; {log}; COMMIT"))
                                .await
                        }
                        1 => {
                            async {
                                conn.query_drop("START TRANSACTION").await?;
                                conn.exec_drop("UPDATE c SET n = n + 1 WHERE id = ?", (w,))
                                    .await?;
                                conn.exec_drop(
                                    "INSERT INTO log SELECT id, n, ? FROM c WHERE id = ?",
                                    (k, w),
                                )
                                .await?;
                                conn.query_drop("COMMIT").await
                            }
                            .await
                        }
                        2 => {
                            async {
                                conn.query_drop("SET autocommit = 0").await?;
                                conn.query_drop(&bump).await?;
                                conn.query_drop(&log).await?;
                                conn.query_drop("COMMIT").await?;
                                conn.query_drop("SET autocommit = 1").await
                            }
                            .await
                        }
                        _ => {
                            async {
                                let mut tx = conn.start_transaction(Default::default()).await?;
                                tx.query_drop(&bump).await?;
                                tx.query_drop(&log).await?;
                                tx.commit().await
                            }
                            .await
                        }
                    };
                    match r {
                        Ok(()) => ledger.note(k, way, true, restarted.load(Relaxed)),
                        Err(_) => {
                            ledger.note(k, way, false, false);
                            // Whether it committed is unknown; as an application would,
                            // start again on a new connection.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            conn = connect().await;
                        }
                    }
                }
                (w, ledger)
            })
        })
        .collect();
    for kill in [false, true, false, true] {
        std::thread::sleep(Duration::from_millis(1500));
        if kill {
            c.kill_node(0).unwrap();
        } else {
            c.stop_node(0).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        c.start_node(0).unwrap();
    }
    restarted.store(true, Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Relaxed);
    let mut wrong = Vec::new();
    for t in writers {
        let (w, ledger) = rt.block_on(t).unwrap();
        let n: usize = c
            .value(0, &format!("SELECT n FROM {db}.c WHERE id = {w}"))
            .unwrap()
            .parse()
            .unwrap();
        let logged: Vec<i32> = c
            .query(
                0,
                &format!("SELECT k FROM {db}.log WHERE id = {w} ORDER BY k"),
            )
            .unwrap()
            .iter()
            .map(|r| r[0].parse().unwrap())
            .collect();
        if let Some(why) = ledger.broken(n, &logged) {
            wrong.push(format!("writer {w}: {why}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ---- 2. a client killed inside a transaction ----

/// A PyMySQL client that runs `stmts` inside a transaction, says "ready" and waits to be
/// killed. With `last_running`, it says "ready" just before its last statement, which it
/// then runs (so the kill arrives while that statement runs).
fn victim(port: u16, db: &str, stmts: &[&str], last_running: bool) -> Child {
    let program = format!(
        r#"{PY_PRELUDE}
c = conn()
stmts = json.loads(sys.argv[3])
last_running = sys.argv[4] == "1"
cur = c.cursor()
cur.execute("BEGIN")
for s in (stmts[:-1] if last_running else stmts):
    cur.execute(s)
print("ready", flush=True)
if last_running:
    cur.execute(stmts[-1])
time.sleep(60)
"#
    );
    let mut child = Command::new("python3")
        .args([
            "-c",
            &program,
            &port.to_string(),
            db,
            &serde_json::to_string(stmts).unwrap(),
            if last_running { "1" } else { "0" },
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "victim said {line:?}");
    child
}

/// How long an UPDATE of the row `id = 1` took (with `innodb_lock_wait_timeout` set to
/// `lock_wait` seconds), or its error; and the balance it then read.
fn update_row(port: u16, db: &str, lock_wait: u32) -> Value {
    let program = r#"
c = conn()
cur = c.cursor()
cur.execute("SET SESSION innodb_lock_wait_timeout = %d" % int(sys.argv[3]))
out = {}
t0 = time.time()
try:
    cur.execute("UPDATE acct SET bal = bal + 1 WHERE id = 1")
    out["secs"] = time.time() - t0
except pymysql.err.MySQLError as e:
    out["error"] = err_of(e)
    out["secs"] = time.time() - t0
cur.execute("SELECT bal FROM acct WHERE id = 1")
out["bal"] = cur.fetchone()[0]
print(json.dumps(out))
"#;
    py_at(
        program,
        port,
        db,
        &[&lock_wait.to_string()],
        Duration::from_secs(60),
    )
}

fn open_transactions(c: &MariaCluster) -> String {
    c.value(0, "SELECT count(*) FROM information_schema.innodb_trx")
        .unwrap()
}

fn kill_child(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_client_killed_inside_a_transaction_leaves_no_lock_and_no_transaction() {
    let _g = serial();
    let c = shared();
    let db = "killed_tx";
    setup(
        c,
        db,
        "CREATE TABLE acct (id int PRIMARY KEY, bal int); INSERT INTO acct VALUES (1, 100)",
    );
    // One worker and one connection per backend: the next client gets the same pool, and
    // would get the killed client's connection if it were handed on.
    let p = Proxy::start(&config(c, db, &[1, 2], "", "workers = 1", "size = 1"), db);
    let child = victim(p.port, db, &["UPDATE acct SET bal = 0 WHERE id = 1"], false);
    assert_eq!(open_transactions(c), "1");
    // SIGKILL: the kernel closes its socket with the transaction open.
    kill_child(child);
    let v = update_row(p.port, db, 1);
    eprintln!("after the kill: {v}");
    assert!(v.get("error").is_none(), "the row stayed locked: {v}");
    assert!(v["secs"].as_f64().unwrap() < 1.0, "{v}");
    assert_eq!(
        v["bal"].as_i64(),
        Some(101),
        "the killed client's update was not rolled back: {v}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_transactions(c) != "0" {
        assert!(Instant::now() < deadline, "a transaction stayed open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The same, killed while a statement of its transaction runs (`SELECT SLEEP(20)`). Directly
/// on MariaDB, the server notices the dead client within its 5 s check interval of SLEEP and
/// rolls back; through the proxy, whose backend connection stays open, the row must not stay
/// locked longer than that (the proxy should notice the client is gone and stop the
/// statement, as the PostgreSQL front end cancels it).
#[test]
fn a_client_killed_while_its_statement_runs_leaves_no_lock() {
    let _g = serial();
    let c = shared();
    let db = "killed_stmt";
    setup(
        c,
        db,
        "CREATE TABLE acct (id int PRIMARY KEY, bal int); INSERT INTO acct VALUES (1, 100)",
    );
    let stmts = ["UPDATE acct SET bal = 0 WHERE id = 1", "SELECT SLEEP(20)"];
    // Baseline, directly on the primary.
    let child = victim(c.primary_port(), db, &stmts, true);
    std::thread::sleep(Duration::from_millis(300));
    kill_child(child);
    let direct = update_row(c.primary_port(), db, 8);
    eprintln!("directly: {direct}");
    assert!(direct.get("error").is_none(), "{direct}");
    assert_eq!(direct["bal"].as_i64(), Some(101), "{direct}");

    let p = Proxy::start(&config(c, db, &[1, 2], "", "workers = 1", "size = 4"), db);
    let child = victim(p.port, db, &stmts, true);
    // Let the SLEEP start on the server.
    std::thread::sleep(Duration::from_millis(300));
    kill_child(child);
    let v = update_row(p.port, db, 8);
    eprintln!("through the proxy: {v}");
    assert!(
        v.get("error").is_none(),
        "the row stayed locked by the dead client's running statement: {v}"
    );
    assert_eq!(v["bal"].as_i64(), Some(102), "{v}");
}

// ---- 3. KILL QUERY ----

#[test]
fn kill_query_stops_a_running_statement_and_never_a_neighbours() {
    let _g = serial();
    let c = shared();
    let db = "killq";
    setup(
        c,
        db,
        "CREATE TABLE n (id int PRIMARY KEY, v int); \
         INSERT INTO n VALUES (1, 0), (2, 0), (3, 0), (4, 0)",
    );
    // Primary only, two workers, two connections each for three clients each: the victim's
    // connections are reused by the neighbours all the time (the pools hand out the
    // connection returned last), and clients wait for one now and then.
    let p = Proxy::start(&config(c, db, &[], "", "workers = 2", "size = 4"), db);

    let program = r#"
victim, killer = conn(), conn()
res = {}
def run():
    t0 = time.time()
    try:
        cur = victim.cursor(); cur.execute("SELECT SLEEP(30)"); res["rows"] = cur.fetchall()
    except pymysql.err.MySQLError as e:
        res["error"] = err_of(e)
    res["end"] = time.time()
th = threading.Thread(target=run); th.start()
time.sleep(1.0)
cur = killer.cursor(); cur.execute("KILL QUERY %d" % victim.thread_id())
killed_at = time.time()
th.join(40)
res["after_kill"] = res.get("end", 1e18) - killed_at
cur = victim.cursor(); cur.execute("SELECT 5"); res["next"] = cur.fetchone()[0]
print(json.dumps(res))
"#;
    let v = py(program, &p, &[], Duration::from_secs(60));
    eprintln!("one KILL QUERY: {v}");
    let after = v["after_kill"].as_f64().unwrap();
    assert!(
        after < 1.0,
        "SLEEP(30) ran on {after} s after the KILL: {v}"
    );
    assert_eq!(
        v["next"].as_i64(),
        Some(5),
        "the victim's session did not survive: {v}"
    );

    // 100 KILL QUERY at varied moments against one client (running, between statements,
    // inside a transaction, while it waits for a connection) while four neighbours run short
    // statements all the time: none of theirs is ever interrupted.
    let program = r#"
random.seed(7)
victim, killer = conn(), conn()
vid = victim.thread_id()
done = threading.Event()
stats = {"victim_ok": 0, "victim_interrupted": 0, "victim_other": [], "kills": 0,
         "neighbour_ok": 0, "neighbour_errors": [], "victim_slowest": []}
lock = threading.Lock()
def victim_loop():
    while not done.is_set():
        kind = random.random()
        t0 = time.time()
        try:
            cur = victim.cursor()
            if kind < 0.5:
                cur.execute("SELECT SLEEP(%f)" % (random.random() * 0.03))
            elif kind < 0.7:
                cur.execute("SELECT 1")
            elif kind < 0.9:
                cur.execute("BEGIN"); cur.execute("SELECT SLEEP(0.01)")
                cur.execute("UPDATE n SET v = v + 1 WHERE id = 4"); cur.execute("COMMIT")
            else:
                cur.execute("SELECT count(*) FROM n WHERE SLEEP(0.005) = 0")
            cur.fetchall()
            stats["victim_ok"] += 1
        except pymysql.err.MySQLError as e:
            code = e.args[0] if e.args else 0
            if code in (1317, 1927) or "interrupted" in str(e):
                stats["victim_interrupted"] += 1
            else:
                stats["victim_other"].append(err_of(e))
            try:
                victim.rollback()
            except Exception:
                pass
        stats["victim_slowest"] = sorted(stats["victim_slowest"] + [[round(time.time() - t0, 3), round(kind, 2), round(t0 - start, 3)]])[-3:]
def neighbour(i):
    c = conn()
    while not done.is_set():
        kind = random.random()
        try:
            cur = c.cursor()
            if kind < 0.4:
                cur.execute("SELECT SLEEP(0.005)")
            elif kind < 0.6:
                cur.execute("SELECT v FROM n WHERE id = %d" % i)
            elif kind < 0.8:
                cur.execute("UPDATE n SET v = v + 1 WHERE id = %d" % i)
            else:
                cur.execute("BEGIN"); cur.execute("SELECT SLEEP(0.003)")
                cur.execute("UPDATE n SET v = v + 1 WHERE id = %d" % i); cur.execute("COMMIT")
            cur.fetchall()
            with lock:
                stats["neighbour_ok"] += 1
        except Exception as e:
            with lock:
                stats["neighbour_errors"].append([i] + err_of(e))
            try:
                c.close()
            except Exception:
                pass
            c = conn()
start = time.time()
threads = [threading.Thread(target=victim_loop)] + \
          [threading.Thread(target=neighbour, args=(i,)) for i in (1, 2, 3)] + \
          [threading.Thread(target=neighbour, args=(1,))]
for t in threads: t.start()
time.sleep(0.3)
for k in range(100):
    time.sleep(random.random() * 0.04)
    cur = killer.cursor(); cur.execute("KILL QUERY %d" % vid)
    stats["kills"] += 1
time.sleep(0.3)
done.set()
for t in threads: t.join(60)
print(json.dumps(stats))
"#;
    let v = py(program, &p, &[], Duration::from_secs(120));
    eprintln!("KILL QUERY storm: {v}");
    assert_eq!(v["kills"].as_u64(), Some(100), "{v}");
    assert!(v["neighbour_ok"].as_u64().unwrap() > 100, "{v}");
    assert_eq!(
        v["neighbour_errors"].as_array().unwrap().len(),
        0,
        "a neighbour's statement failed: {v}"
    );
    assert!(
        v["victim_interrupted"].as_u64().unwrap() >= 1,
        "no kill reached the victim: {v}"
    );
    assert_eq!(
        v["victim_other"].as_array().unwrap().len(),
        0,
        "the victim saw unexpected errors: {v}"
    );
}

/// A client that writes is not pinned by it. MariaDB reports `last_gtid` through session
/// tracking after every transaction that wrote; the proxy took it for a session variable the
/// client changed and pinned the client: it then held a connection for its whole session
/// (others waited for the pool) and sent all its reads to the primary. Found by the KILL
/// storm above, whose neighbours, once they had written, held both connections of their
/// worker for good and starved the victim.
#[test]
fn a_client_that_writes_is_not_pinned() {
    let _g = serial();
    let c = shared();
    let db = "nopin";
    setup(
        c,
        db,
        "CREATE TABLE t (id int PRIMARY KEY AUTO_INCREMENT, v int)",
    );
    let p = Proxy::start(&config(c, db, &[1, 2], "", "workers = 1", "size = 1"), db);
    let primary = server_id(c, 0);
    let program = r#"
a, b = conn(), conn()
out = {"errors": []}
cur = a.cursor(); cur.execute("INSERT INTO t (v) VALUES (1)")
cur.execute("BEGIN"); cur.execute("INSERT INTO t (v) VALUES (2)"); cur.execute("COMMIT")
# A stays connected. With one primary connection in the pool, B can only write if A gave
# its connection back.
t0 = time.time()
try:
    cb = b.cursor(); cb.execute("INSERT INTO t (v) VALUES (3)")
except pymysql.err.MySQLError as e:
    out["errors"].append(err_of(e))
out["b_secs"] = time.time() - t0
seen = {}
for i in range(20):
    cur.execute("SELECT @@server_id"); sid = str(cur.fetchone()[0])
    seen[sid] = seen.get(sid, 0) + 1
out["a_reads"] = seen
print(json.dumps(out))
"#;
    let v = py(program, &p, &[], Duration::from_secs(60));
    eprintln!("{v}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 0, "{v}");
    assert!(
        v["a_reads"].get(&primary).is_none(),
        "the writer's reads all went to the primary (pinned): {v}"
    );
    assert_eq!(
        c.value(0, &format!("SELECT count(*) FROM `{db}`.t"))
            .unwrap(),
        "3"
    );
}

// ---- 5. live reload adds and removes a replica ----

/// (status, body) of a plain HTTP/1.1 request to the admin API.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The metric lines of `body` for cluster `db`.
fn cluster_metrics<'a>(body: &'a str, db: &str) -> Vec<&'a str> {
    let label = format!("cluster=\"{db}\"");
    body.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .collect()
}

#[test]
fn reload_adds_and_removes_a_replica_while_clients_read() {
    let _g = serial();
    let c = shared();
    let db = "reload_my";
    setup(c, db, "CREATE TABLE t (id int PRIMARY KEY)");
    let (primary, r1, r2) = (server_id(c, 0), server_id(c, 1), server_id(c, 2));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let cfg = |replicas: &[usize]| {
        config(c, db, replicas, "", "workers = 2", "size = 8")
            + "\n[admin]\nlisten = \"127.0.0.1:0\"\n"
    };
    write_file(&path, &cfg(&[1]));
    let p = Proxy::wrap(Server::start_file(&path).expect("proxy starts"), db);
    let admin = p.server().admin_addr.unwrap();
    p.wait_for("replica 1 in the read set", Duration::from_secs(10), |p| {
        p.in_read_set(1)
    });

    // Readers: four clients reading all the time (every 40 reads one of them reconnects),
    // each read logged with its start time, until the stop file appears.
    let stop = dir.path().join("stop");
    let log = dir.path().join("reads.log");
    let program = format!(
        r#"{PY_PRELUDE}
stop, log = sys.argv[3], sys.argv[4]
import os
lines, errors, lock = [], [], threading.Lock()
def reader(i):
    c, n = conn(), 0
    while not os.path.exists(stop):
        t0 = time.time()
        try:
            cur = c.cursor(); cur.execute("SELECT @@server_id"); sid = cur.fetchone()[0]
            with lock:
                lines.append("%.6f %s" % (t0, sid))
        except Exception as e:
            with lock:
                errors.append(err_of(e))
        n += 1
        if n % 40 == 0:
            c.close(); c = conn()
ts = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join(120)
open(log, "w").write("\n".join(lines))
print(json.dumps({{"reads": len(lines), "errors": errors}}))
"#
    );
    let readers = Command::new("python3")
        .args([
            "-c",
            &program,
            &p.port.to_string(),
            db,
            stop.to_str().unwrap(),
            log.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    // Add replica 2.
    write_file(&path, &cfg(&[1, 2]));
    let before_add = now();
    let (status, body) = http(admin, "POST", "/reload");
    let added = now();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("3 backends"), "{body}");
    std::thread::sleep(Duration::from_millis(2000));
    let (_, metrics_both) = http(admin, "GET", "/metrics");

    // Remove replica 1.
    write_file(&path, &cfg(&[2]));
    let (status, body) = http(admin, "POST", "/reload");
    let removed = now();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("2 backends"), "{body}");
    std::thread::sleep(Duration::from_millis(2000));
    let (_, metrics_after) = http(admin, "GET", "/metrics");

    std::fs::write(&stop, "").unwrap();
    let out = readers.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["errors"].as_array().unwrap().len(),
        0,
        "readers saw errors across the reloads: {summary}"
    );
    let reads: Vec<(f64, String)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            let t = f.next().unwrap().parse().unwrap();
            (t, f.next().unwrap().to_string())
        })
        .collect();
    let count = |from: f64, to: f64, sid: &str| {
        reads
            .iter()
            .filter(|(t, s)| *t >= from && *t < to && s == sid)
            .count()
    };
    let total = |from: f64, to: f64| reads.iter().filter(|(t, _)| *t >= from && *t < to).count();
    eprintln!(
        "reads: {} before the add (r1 {}), {} between (r1 {}, r2 {}), {} after the removal (r1 {}, r2 {})",
        total(0.0, added),
        count(0.0, added, &r1),
        total(added, removed),
        count(added, removed, &r1),
        count(added, removed, &r2),
        total(removed, f64::MAX),
        count(removed, f64::MAX, &r1),
        count(removed, f64::MAX, &r2),
    );
    assert!(
        total(0.0, added) > 50,
        "too few reads before the first reload"
    );
    // Reads on the primary while both replicas are healthy: the replica-choice race of
    // `replica_choice_never_falls_back_while_replicas_are_eligible` (about 1 in 3,000 here).
    // Reported; tolerated here as long as it stays that rare.
    let on_primary: Vec<String> = reads
        .iter()
        .filter(|(_, s)| *s == primary)
        .map(|(t, _)| format!("{:+.3}s/{:+.3}s", t - added, t - removed))
        .collect();
    eprintln!("reads on the primary (start after the add/removal): {on_primary:?}");
    assert!(
        on_primary.len() * 100 <= reads.len(),
        "reads reached the primary: {on_primary:?}"
    );
    // Reads that started well before the reload began (a read that started just before it
    // may be routed after it).
    assert_eq!(
        count(0.0, before_add - 0.5, &r2),
        0,
        "replica 2 read before it was added"
    );
    assert!(
        count(added, removed, &r2) > 20,
        "the added replica got no reads"
    );
    assert!(
        count(added, removed, &r1) > 20,
        "replica 1 stopped reading early"
    );
    assert_eq!(
        count(removed, f64::MAX, &r1),
        0,
        "the removed replica served reads that started after the reload"
    );
    assert!(
        total(removed, f64::MAX) > 50,
        "too few reads after the removal"
    );

    // The removed replica's pools drain and its health checks stop: no connection of the
    // proxy is left on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = c
            .value(
                1,
                "SELECT count(*) FROM information_schema.processlist WHERE user = 'switchyard'",
            )
            .unwrap();
        if n == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} proxy connections left on the removed replica"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Metrics carry the cluster: every backend with its role and health, and the removed one
    // no more.
    let addr = |n: usize| format!("backend=\"127.0.0.1:{}\"", c.port(n));
    let both = cluster_metrics(&metrics_both, db);
    let after = cluster_metrics(&metrics_after, db);
    eprintln!("metrics of the MySQL cluster:\n{}", after.join("\n"));
    for n in [0, 1, 2] {
        assert!(
            both.iter()
                .any(|l| l.starts_with("switchyard_backend_up{") && l.contains(&addr(n))),
            "no switchyard_backend_up for node {n}:\n{}",
            both.join("\n")
        );
    }
    assert!(
        !after.iter().any(|l| l.contains(&addr(1))),
        "the removed replica is still in the metrics"
    );
    assert!(
        after.iter().any(|l| l.starts_with("switchyard_backend_up{")
            && l.contains(&addr(2))
            && l.contains("role=\"replica\"")
            && l.ends_with(" 1")),
        "{}",
        after.join("\n")
    );
    // The cluster's protocol is one info series, not a label on every backend series.
    assert!(
        after
            .iter()
            .any(|l| l.starts_with("switchyard_cluster_info{") && l.contains("protocol=\"mysql\"")),
        "{}",
        after.join("\n")
    );
}

/// The pool gauges of a MySQL cluster (`switchyard_backend_connections`, `..._open`,
/// `..._pool_capacity`, and `switchyard_saturation` built from them) report its pools.
#[test]
fn mysql_pool_gauges_report_the_mysql_pools() {
    let _g = serial();
    let c = shared();
    let db = "pool_metrics";
    setup(c, db, "CREATE TABLE t (id int PRIMARY KEY)");
    let text = config(c, db, &[1], "", "workers = 1", "size = 4")
        + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let p = Proxy::start(&text, db);
    let admin = p.server().admin_addr.unwrap();
    // Leave idle connections in the pools of the primary and the replica.
    let (ok, _, err) = cli(p.port, db, "INSERT INTO t VALUES (1); SELECT 1");
    assert!(ok, "{err}");
    let (_, body) = http(admin, "GET", "/metrics");
    let lines = cluster_metrics(&body, db);
    let value = |name: &str, n: usize| -> f64 {
        let backend = format!("backend=\"127.0.0.1:{}\"", c.port(n));
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&backend))
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse().unwrap())
            .unwrap_or_else(|| panic!("no {name} for node {n}:\n{}", lines.join("\n")))
    };
    assert_eq!(value("switchyard_backend_pool_capacity", 0), 4.0);
    assert!(value("switchyard_backend_connections_open", 0) >= 1.0);
    assert!(value("switchyard_backend_connections_open", 1) >= 1.0);
}

/// A metric of `lines` with all of `labels`, summed (0 when none).
fn metric_sum(lines: &[&str], name: &str, labels: &[&str]) -> f64 {
    lines
        .iter()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The MySQL front end feeds the same statement metrics as PostgreSQL's: each statement
/// routed (route and reason), its duration, bytes both ways, checkout waits, and clients
/// waiting for a connection (which `switchyard_saturation` is built from, so an autoscaler
/// sees a MySQL cluster queue).
#[test]
fn mysql_statements_feed_routing_duration_bytes_and_wait_metrics() {
    let _g = serial();
    let c = shared();
    let db = "stmt_metrics";
    setup(c, db, "CREATE TABLE t (id int PRIMARY KEY)");
    let text = config(c, db, &[1], "", "workers = 1", "size = 1")
        + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let p = Proxy::start(&text, db);
    let admin = p.server().admin_addr.unwrap();
    std::thread::sleep(INTERVAL * 4);
    let reads = "SELECT @@server_id;\n".repeat(25);
    let (ok, out, err) = cli(p.port, db, &format!("{reads}INSERT INTO t VALUES (1)"));
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 25, "{out}");
    let (_, body) = http(admin, "GET", "/metrics");
    let lines = cluster_metrics(&body, db);
    let all = lines.join("\n");
    let routed = "switchyard_statements_routed_total";
    let replica = "route=\"replica\"";
    let primary = "route=\"primary\"";
    assert_eq!(
        metric_sum(&lines, routed, &[replica, "reason=\"read\""]),
        25.0,
        "{all}"
    );
    assert_eq!(
        metric_sum(&lines, routed, &[primary, "reason=\"write\""]),
        1.0,
        "{all}"
    );
    let durations = "switchyard_statement_duration_seconds_count";
    assert_eq!(metric_sum(&lines, durations, &[replica]), 25.0, "{all}");
    assert!(metric_sum(&lines, durations, &[primary]) >= 1.0, "{all}");
    for dir in ["client_to_backend", "backend_to_client"] {
        let bytes = metric_sum(&lines, "switchyard_bytes_total", &[dir]);
        assert!(bytes > 25.0 * 20.0, "{dir}: {bytes}\n{all}");
    }
    let waits = metric_sum(&lines, "switchyard_checkout_wait_seconds_count", &[]);
    assert!(waits >= 26.0, "{all}");

    // One client holds the primary's only connection in a transaction; another's write
    // waits for it, and is seen waiting.
    let port = p.port;
    let holder = std::thread::spawn(move || {
        cli(
            port,
            "stmt_metrics",
            "BEGIN; INSERT INTO t VALUES (2); SELECT SLEEP(3); COMMIT",
        )
    });
    std::thread::sleep(Duration::from_millis(700));
    let waiter = std::thread::spawn(move || cli(port, "stmt_metrics", "INSERT INTO t VALUES (3)"));
    std::thread::sleep(Duration::from_millis(700));
    let (_, body) = http(admin, "GET", "/metrics");
    let during = cluster_metrics(&body, db);
    let waiting = metric_sum(
        &during,
        "switchyard_client_connections",
        &["state=\"waiting\""],
    );
    let saturation = metric_sum(&during, "switchyard_saturation", &[]);
    for t in [holder, waiter] {
        let (ok, _, err) = t.join().unwrap();
        assert!(ok, "{err}");
    }
    assert_eq!(waiting, 1.0, "{}", during.join("\n"));
    assert!(saturation > 0.0, "{}", during.join("\n"));
    let (_, body) = http(admin, "GET", "/metrics");
    let after = cluster_metrics(&body, db);
    let waiting = metric_sum(
        &after,
        "switchyard_client_connections",
        &["state=\"waiting\""],
    );
    assert_eq!(waiting, 0.0, "{}", after.join("\n"));
}

// ---- 6. read-your-writes ----

/// `n` iterations of an insert then a select of that row, each its own autocommit statement
/// on one connection: how many selects did not see their row.
fn ryw_misses(p: &Proxy, first_id: usize, n: usize) -> (u64, HashMap<String, u64>) {
    let program = r#"
first, n = int(sys.argv[3]), int(sys.argv[4])
c = conn()
misses, seen = 0, {}
for i in range(first, first + n):
    cur = c.cursor()
    cur.execute("INSERT INTO r VALUES (%d)" % i)
    cur.execute("SELECT count(*), @@server_id FROM r WHERE id = %d" % i)
    cnt, sid = cur.fetchone()
    seen[str(sid)] = seen.get(str(sid), 0) + 1
    if cnt != 1:
        misses += 1
print(json.dumps({"misses": misses, "seen": seen}))
"#;
    let v = py(
        program,
        p,
        &[&first_id.to_string(), &n.to_string()],
        Duration::from_secs(300),
    );
    let seen = v["seen"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    (v["misses"].as_u64().unwrap(), seen)
}

#[test]
fn read_your_writes_never_misses_where_eventual_does() {
    let _g = serial();
    let c = topology();
    let db = "ryw";
    setup(&c, db, "CREATE TABLE r (id int PRIMARY KEY)");
    for n in [1, 2] {
        c.set_master_delay(n, 1).unwrap();
    }
    let ryw = Proxy::start(
        &config(
            &c,
            db,
            &[1, 2],
            "consistency = \"read_your_writes\"\nmax_lag = \"30s\"",
            "workers = 1",
            "",
        ),
        db,
    );
    let eventual = Proxy::start(
        &config(&c, db, &[1, 2], "max_lag = \"30s\"", "workers = 1", ""),
        db,
    );
    for p in [&ryw, &eventual] {
        p.wait_for("replicas in the read set", Duration::from_secs(10), |p| {
            p.in_read_set(1) && p.in_read_set(2)
        });
    }
    let (missed, seen) = ryw_misses(&eventual, 1_000_000, 100);
    eprintln!("eventual: {missed} misses in 100; reads by server {seen:?}");
    assert!(
        missed >= 1,
        "eventual consistency never missed: the test cannot tell the modes apart"
    );
    let (missed, seen) = ryw_misses(&ryw, 0, 1000);
    eprintln!("read_your_writes: {missed} misses in 1000; reads by server {seen:?}");
    assert_eq!(missed, 0, "read_your_writes missed its own writes");
}

// ---- 7. promotion while the old primary keeps running ----

/// A replica is promoted while the old primary stays writable (split brain), with clients
/// connected through PyMySQL the whole time:
/// - an autocommit writer's next insert goes to the new primary, on the same connection;
/// - a client inside a transaction on the old primary gets an error on its next statement
///   and its connection is closed: nothing more reaches the fenced server, and its open
///   transaction is rolled back there (not committed);
/// - a new client writes to the new primary.
#[test]
fn writes_follow_a_promoted_replica_and_a_transaction_on_the_old_primary_ends() {
    let _g = serial();
    let c = topology();
    let db = "promo";
    setup(
        &c,
        db,
        "CREATE TABLE t (v int PRIMARY KEY, sid int NOT NULL)",
    );
    let p = Proxy::start(&config(&c, db, &[1, 2], "", "", ""), db);
    p.wait_for("the primary known", Duration::from_secs(10), |p| {
        p.state().primary() == Ok(0)
    });
    let dir = tempfile::tempdir().unwrap();
    let (ready, promoted) = (dir.path().join("ready"), dir.path().join("promoted"));
    let program = r#"
ready, promoted = sys.argv[3], sys.argv[4]
def wait_file(path):
    t0 = time.time()
    while not os.path.exists(path):
        if time.time() - t0 > 40: raise SystemExit("no " + path)
        time.sleep(0.02)
import os
ins = "INSERT INTO t (v, sid) VALUES (%s, @@server_id)"
out = {"errors": {}}
w, tx = conn(), conn()
w.cursor().execute(ins, (1,))
cur = tx.cursor(); cur.execute("BEGIN"); cur.execute(ins, (2,))
open(ready, "w").close()
wait_file(promoted)
w.cursor().execute(ins, (3,))
try:
    cur.execute(ins, (4,)); cur.execute("COMMIT")
    out["tx"] = "committed"
except pymysql.err.MySQLError as e:
    out["tx"] = err_of(e)
try:
    tx.cursor().execute("SELECT 1")
    out["tx_after"] = "answered"
except pymysql.err.MySQLError as e:
    out["tx_after"] = err_of(e)
conn().cursor().execute(ins, (5,))
print(json.dumps(out))
"#;
    let promote = {
        let (ready, promoted) = (ready.clone(), promoted.clone());
        let state = p.state();
        let c = &c;
        move || {
            let t0 = Instant::now();
            while !ready.exists() {
                assert!(
                    t0.elapsed() < Duration::from_secs(40),
                    "the clients never got ready"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            c.wait_node_caught_up(1, Duration::from_secs(30)).unwrap();
            c.promote(1).unwrap();
            while !(state.primary() == Ok(1) && state.backends[0].is_fenced()) {
                assert!(
                    t0.elapsed() < Duration::from_secs(40),
                    "the proxy never fenced the old primary"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            write_file(&promoted, "");
        }
    };
    let v = std::thread::scope(|s| {
        let t = s.spawn(promote);
        let ready_s = ready.display().to_string();
        let promoted_s = promoted.display().to_string();
        let v = py(
            program,
            &p,
            &[&ready_s, &promoted_s],
            Duration::from_secs(90),
        );
        t.join().unwrap();
        v
    });
    eprintln!("{v}");
    let (old, new) = (server_id(&c, 0), server_id(&c, 1));
    let rows = |node: usize| {
        c.value(
            node,
            &format!("SELECT GROUP_CONCAT(v, ':', sid ORDER BY v) FROM `{db}`.t"),
        )
        .unwrap()
    };
    // Inserts 3 and 5 ran on the new primary; 1 is on both (replicated before promotion).
    assert_eq!(rows(1), format!("1:{old},3:{new},5:{new}"), "{v}");
    // The transaction's statement after the promotion failed, and so did the connection.
    assert!(
        v["tx"].is_array(),
        "the transaction went on on the fenced server: {v}"
    );
    assert!(v["tx_after"].is_array(), "{v}");
    // Nothing of it was committed on the old primary, and no transaction stays open there.
    let t0 = Instant::now();
    loop {
        let open = c
            .value(0, "SELECT count(*) FROM information_schema.innodb_trx")
            .unwrap();
        if open == "0" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "a transaction stays open on the old primary"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rows(0), format!("1:{old}"), "{v}");
}

// ---- replica choice under concurrency (no servers) ----

/// Replica choice with replicas that are all eligible never falls back, however the
/// in-flight counts move meanwhile. Found by the reload test above: with four clients on two
/// workers, about one read in 3,000 went to the primary with both replicas healthy.
/// `ClusterState::select` reads each replica's in-flight count twice (once for the minimum,
/// once to pick among those at it); a statement beginning or ending on another worker between
/// the two reads leaves no replica at the minimum, and the read falls back to the primary
/// (with `fallback = "error"`: the client gets a spurious "no replica" error).
#[test]
fn replica_choice_never_falls_back_while_replicas_are_eligible() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;
    use switchyard::cluster::{ClusterState, Want};
    let cfg = Config::from_toml(
        r#"
[[cluster]]
name = "c"
database = "d"
primary = "127.0.0.1:1"
replicas = ["127.0.0.1:2", "127.0.0.1:3"]
user = "u"
fallback = "error"
"#,
    )
    .unwrap();
    let state = Arc::new(ClusterState::new(&cfg.clusters[0]).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (state, stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                for i in [1, 2] {
                    state.backends[i].begin();
                    state.backends[i].end();
                }
            }
        })
    };
    let mut fell_back = 0;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        n += 1;
        if !matches!(
            state.select(Want::Replica { min_lsn: None }, None),
            Ok(1 | 2)
        ) {
            fell_back += 1;
        }
    }
    stop.store(true, Relaxed);
    churn.join().unwrap();
    assert_eq!(fell_back, 0, "{fell_back} of {n} reads found no replica");
}

// ---- planned switchover behind PAUSE ----

/// A planned MariaDB switchover behind PAUSE: writers keep writing (autocommit and
/// two-statement transactions) while the operator pauses the cluster, makes the old primary
/// read-only, promotes a caught-up replica, points the others at it and resumes. No writer
/// sees an error, and the new primary holds exactly the rows the writers were told committed.
#[test]
fn a_switchover_behind_pause_costs_clients_no_error_and_no_write() {
    use mysql_async::prelude::*;
    let _g = serial();
    let c = topology();
    let db = "switchover";
    setup(
        &c,
        db,
        "CREATE TABLE ledger (w int, n int, PRIMARY KEY (w, n))",
    );
    let text = config(
        &c,
        db,
        &[1, 2],
        "",
        "\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        "pause_timeout = \"30s\"",
    );
    let p = Proxy::start(&text, db);
    let admin = p.server().admin_addr.unwrap();
    p.wait_for("the primary known", Duration::from_secs(10), |p| {
        p.state().primary() == Ok(0)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..6i32)
        .map(|w| {
            let stop = stop.clone();
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(p.port)
                .user(Some("app"))
                .pass(Some("app_pw"))
                .db_name(Some(db))
                .prefer_socket(false);
            rt.spawn(async move {
                let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                let (mut told, mut errors) = (Vec::new(), Vec::new());
                let mut n = 0i32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = if n % 3 == 2 {
                        async {
                            conn.query_drop("START TRANSACTION").await?;
                            conn.exec_drop("INSERT INTO ledger VALUES (?, ?)", (w, n))
                                .await?;
                            conn.exec_drop("INSERT INTO ledger VALUES (?, ?)", (w, n + 1))
                                .await?;
                            conn.query_drop("COMMIT").await?;
                            Ok::<_, mysql_async::Error>(vec![n, n + 1])
                        }
                        .await
                    } else {
                        conn.exec_drop("INSERT INTO ledger VALUES (?, ?)", (w, n))
                            .await
                            .map(|_| vec![n])
                    };
                    match r {
                        Ok(ns) => told.extend(ns.into_iter().map(|n| (w, n))),
                        Err(e) => errors.push(format!("writer {w} row {n}: {e:?}")),
                    }
                    n += 2;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (told, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let (code, body) = support::admin_request(admin, "POST", "/pause?wait=10");
    assert_eq!(code, 200, "not drained: {body}");
    let paused_at = Instant::now();
    c.exec(0, "SET GLOBAL read_only=1").unwrap();
    c.wait_node_caught_up(1, Duration::from_secs(30)).unwrap();
    c.promote(1).unwrap();
    c.replicate_from(0, 1).unwrap();
    c.replicate_from(2, 1).unwrap();
    p.wait_for(
        "the promoted replica taken as primary",
        Duration::from_secs(20),
        |p| p.state().primary() == Ok(1),
    );
    let (code, body) = support::admin_request(admin, "POST", "/resume");
    assert_eq!(code, 200, "{body}");
    eprintln!("paused for {:?}", paused_at.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut told = Vec::new();
    for w in writers {
        let (t, errors) = rt.block_on(w).unwrap();
        assert!(errors.is_empty(), "writers saw errors: {errors:?}");
        told.extend(t);
    }
    told.sort();
    let rows = c
        .query_db(1, Some(db), "SELECT w, n FROM ledger ORDER BY w, n")
        .unwrap();
    let on_server: Vec<(i32, i32)> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    assert!(told.len() > 100, "too few writes to tell: {}", told.len());
    assert_eq!(
        on_server, told,
        "the new primary differs from what writers were told"
    );
}
