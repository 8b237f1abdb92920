//! `[general] handover_socket`: a new process takes the listening sockets over from a running
//! one (a binary upgrade, a change that needs a restart) while clients of both protocols keep
//! connecting; no connection is refused, no committed transaction lost, the old process
//! drains and exits; cancels and KILLs for the old process's clients reach them through the
//! new one.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::process::Proc;
use support::{cluster as pg_cluster, create_db, free_port};
use switchyard::testkit::mariadb::{self, MariaCluster};

fn maria() -> &'static MariaCluster {
    static C: OnceLock<MariaCluster> = OnceLock::new();
    C.get_or_init(|| MariaCluster::start(0).expect("start MariaDB"))
}

struct Ports {
    pg: u16,
    my: u16,
    admin: u16,
    edge: u16,
}

/// Both front ends and the admin API on fixed ports, the handover socket in `dir`.
fn config(db: &str, ports: &Ports, dir: &std::path::Path, workers: usize) -> String {
    format!(
        r#"
[general]
workers = {workers}
drain_timeout = "20s"
handover_socket = "{sock}"

[postgres]
listen = "127.0.0.1:{pg}"
unix_socket_dir = "{dir}"

[mysql]
listen = "127.0.0.1:{my}"
socket = "{dir}/mysql.sock"

[admin]
listen = "127.0.0.1:{admin}"

[pool]
size = 8

# The edge's upstream is the admin API: its /healthz answers through the edge.
[[edge.listener]]
listen = "127.0.0.1:{edge}"

[[edge.route]]
path = "/"
upstream = "admin"

[[edge.upstream]]
name = "admin"
servers = ["127.0.0.1:{admin}"]

[[user]]
name = "app"
password = "app_pw"

[[user]]
name = "other"
password = "other_pw"

[[cluster]]
name = "{db}"
database = "{db}"
primary = "127.0.0.1:{pg_primary}"
user = "postgres"

[[cluster]]
name = "{db}_my"
protocol = "mysql"
database = "{db}_my"
primary = "127.0.0.1:{my_primary}"
user = "sy_{db}"
password = "switchyard_pw"
"#,
        sock = dir.join("handover.sock").display(),
        dir = dir.display(),
        pg = ports.pg,
        my = ports.my,
        admin = ports.admin,
        edge = ports.edge,
        pg_primary = pg_cluster().primary_port(),
        my_primary = maria().primary_port(),
    )
}

fn setup(db: &str) {
    create_db(db);
    pg_cluster()
        .psql_db(
            0,
            db,
            "CREATE TABLE ledger (client int, n int, PRIMARY KEY (client, n))",
        )
        .unwrap();
    let c = maria();
    let my_db = format!("{db}_my");
    c.create_database(&my_db).unwrap();
    c.query_db(
        0,
        Some(&my_db),
        "CREATE TABLE ledger (client int, n int, PRIMARY KEY (client, n)) ENGINE=InnoDB",
    )
    .unwrap();
    c.exec(
        0,
        &format!(
            "CREATE USER 'sy_{db}'@'%' IDENTIFIED BY 'switchyard_pw'; \
             GRANT {}, {} ON *.* TO 'sy_{db}'@'%'",
            mariadb::APP_PRIVILEGES,
            mariadb::PROXY_EXTRA_PRIVILEGES
        ),
    )
    .unwrap();
}

/// A first process (two workers) for database `db`, its directory, ports and config file.
struct First {
    dir: tempfile::TempDir,
    ports: Ports,
    cfg: std::path::PathBuf,
    a: Proc,
}

fn first(db: &str) -> First {
    setup(db);
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        pg: free_port(),
        my: free_port(),
        admin: free_port(),
        edge: free_port(),
    };
    let cfg = dir.path().join("switchyard.toml");
    std::fs::write(&cfg, config(db, &ports, dir.path(), 2)).unwrap();
    let a = start(&cfg, &dir.path().join("a.log"));
    First { dir, ports, cfg, a }
}

/// Start a proxy process on `cfg` and wait until its admin API answers.
fn start(cfg: &std::path::Path, log: &std::path::Path) -> Proc {
    start_with(cfg, log, &[], "postgres listener ready")
}

/// [`start`] with more environment variables, until its log has `serving` (the admin API
/// listens before a new process tells the old one; "postgres listener ready" comes after).
fn start_with(
    cfg: &std::path::Path,
    log: &std::path::Path,
    env: &[(&str, &str)],
    serving: &str,
) -> Proc {
    let child = Proc(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--config"])
            .arg(cfg)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = child.id();
    loop {
        // Ready once this process answers: its log says it serves.
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(serving) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxy {pid} did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Wait (bounded) for `child` to exit; its status.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("proxy {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

fn pg_url(port: u16, db: &str, user: &str) -> String {
    format!("host=127.0.0.1 port={port} user={user} password={user}_pw dbname={db}")
}

fn my_opts(port: u16, db: &str, user: &str) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(format!("{user}_pw")))
        .db_name(Some(db))
        .prefer_socket(false)
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// (protocol, client, n) of every transaction whose COMMIT was answered OK.
    committed: Mutex<Vec<(char, i32, i32)>>,
    /// Failed connection attempts, with the error.
    refused: Mutex<Vec<String>>,
    /// Errors inside a transaction (after BEGIN was answered): a drain must let those finish.
    broken: Mutex<Vec<String>>,
    /// Idle connections the old process closed (57P01, or closed) between transactions.
    closed_idle: AtomicU64,
}

impl Tally {
    fn push(list: &Mutex<Vec<String>>, what: String) {
        list.lock().unwrap().push(what);
    }
}

/// A PostgreSQL client that connects afresh for each transaction (`fresh`) or keeps one
/// connection, reconnecting when the proxy closes it between transactions.
async fn pg_client(url: String, id: i32, fresh: bool, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut n = 0;
    let mut conn: Option<tokio_postgres::Client> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok((c, task)) => {
                    tokio::spawn(task);
                    conn = Some(c);
                }
                Err(e) => {
                    Tally::push(&tally.refused, format!("pg {id}: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let c = conn.as_ref().unwrap();
        n += 1;
        if let Err(e) = c.batch_execute("BEGIN").await {
            // Between transactions: the old process may close an idle client.
            let idle_close = e.is_closed()
                || e.as_db_error().is_some_and(|d| d.code().code() == "57P01")
                || e.to_string().contains("connection closed");
            if idle_close {
                tally.closed_idle.fetch_add(1, Ordering::Relaxed);
            } else {
                Tally::push(&tally.broken, format!("pg {id} BEGIN: {e}"));
            }
            conn = None;
            continue;
        }
        let sql = format!("INSERT INTO ledger VALUES ({id}, {n}); SELECT pg_sleep(0.002)");
        let r = match c.batch_execute(&sql).await {
            Ok(()) => c.batch_execute("COMMIT").await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => tally.committed.lock().unwrap().push(('p', id, n)),
            Err(e) => {
                Tally::push(&tally.broken, format!("pg {id} in transaction: {e}"));
                conn = None;
            }
        }
        if fresh {
            conn = None;
        }
    }
}

/// The MySQL counterpart of [`pg_client`].
async fn my_client(
    opts: mysql_async::OptsBuilder,
    id: i32,
    fresh: bool,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    use mysql_async::prelude::*;
    let mut n = 0;
    let mut conn: Option<mysql_async::Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match mysql_async::Conn::new(opts.clone()).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    // Refused or reset: the listener failed. Otherwise the login went through
                    // and the draining process closed the connection before mysql_async's
                    // own first query was answered (as MariaDB does at shutdown: ERR 1053,
                    // unasked).
                    let text = e.to_string();
                    if text.contains("refused") || text.contains("reset") {
                        Tally::push(&tally.refused, format!("mysql {id}: {e}"));
                    } else {
                        tally.closed_idle.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        n += 1;
        if c.query_drop("BEGIN").await.is_err() {
            // The old process closes an idle client between transactions.
            tally.closed_idle.fetch_add(1, Ordering::Relaxed);
            conn = None;
            continue;
        }
        let r = async {
            c.exec_drop("INSERT INTO ledger VALUES (?, ?)", (id, n))
                .await?;
            c.query_drop("DO SLEEP(0.002)").await?;
            c.query_drop("COMMIT").await
        }
        .await;
        match r {
            Ok(()) => tally.committed.lock().unwrap().push(('m', id, n)),
            Err(e) => {
                Tally::push(&tally.broken, format!("mysql {id} in transaction: {e}"));
                conn = None;
            }
        }
        if fresh {
            if let Some(c) = conn.take() {
                let _ = c.disconnect().await;
            }
        }
    }
}

/// Connects over and over at the protocol level until `stop`: each connection must be
/// answered (MySQL: the server greeting; PostgreSQL: the password request for a startup
/// message). Returns the failures.
/// Where a prober connects.
#[derive(Clone)]
enum Target {
    Tcp(u16),
    Unix(std::path::PathBuf),
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

async fn prober(kind: char, target: Target, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut failures = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let r: std::io::Result<()> = async {
            let mut s: Box<dyn Stream> = match &target {
                Target::Tcp(port) => {
                    Box::new(tokio::net::TcpStream::connect(("127.0.0.1", *port)).await?)
                }
                Target::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            };
            match kind {
                'm' => {
                    let mut head = [0u8; 5];
                    s.read_exact(&mut head).await?;
                    if head[4] != 10 {
                        return Err(std::io::Error::other(format!("not a greeting: {head:?}")));
                    }
                }
                'p' => {
                    let mut body = Vec::new();
                    body.extend_from_slice(&196608i32.to_be_bytes());
                    body.extend_from_slice(b"user\0app\0database\0t_handover\0\0");
                    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
                    msg.extend_from_slice(&body);
                    s.write_all(&msg).await?;
                    let mut tag = [0u8; 1];
                    s.read_exact(&mut tag).await?;
                    if tag[0] != b'R' {
                        let tag = tag[0] as char;
                        return Err(std::io::Error::other(format!("answered {tag:?}")));
                    }
                }
                _ => {
                    let head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
                    s.write_all(head).await?;
                    let mut answer = Vec::new();
                    s.read_to_end(&mut answer).await?;
                    if !answer.starts_with(b"HTTP/1.1 200") {
                        let text = String::from_utf8_lossy(&answer);
                        return Err(std::io::Error::other(format!("edge answered {text:?}")));
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            failures.push(format!("{kind}: {e}"));
        }
    }
    (n, failures)
}

/// Rows of the ledgers, as (protocol, client, n).
fn ledgers(db: &str) -> Vec<(char, i32, i32)> {
    let mut out = Vec::new();
    let pg = pg_cluster()
        .psql_db(0, db, "SELECT client || ',' || n FROM ledger")
        .unwrap();
    let my = maria()
        .query_db(0, Some(&format!("{db}_my")), "SELECT client, n FROM ledger")
        .unwrap();
    for line in pg.lines().filter(|l| !l.is_empty()) {
        let (a, b) = line.split_once(',').unwrap();
        out.push(('p', a.parse().unwrap(), b.parse().unwrap()));
    }
    for row in my {
        out.push(('m', row[0].parse().unwrap(), row[1].parse().unwrap()));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handovers_under_load_refuse_nobody_and_lose_nothing() {
    let db = "t_handover";
    let First {
        dir,
        ports,
        cfg,
        mut a,
    } = first(db);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for id in 0..8 {
        let url = pg_url(ports.pg, db, "app");
        tasks.push(tokio::spawn(pg_client(
            url,
            id,
            id < 4,
            stop.clone(),
            tally.clone(),
        )));
        let opts = my_opts(ports.my, &format!("{db}_my"), "app");
        tasks.push(tokio::spawn(my_client(
            opts,
            id,
            id < 4,
            stop.clone(),
            tally.clone(),
        )));
    }
    let targets = [
        ('p', Target::Tcp(ports.pg)),
        ('m', Target::Tcp(ports.my)),
        ('e', Target::Tcp(ports.edge)),
        (
            'p',
            Target::Unix(dir.path().join(format!(".s.PGSQL.{}", ports.pg))),
        ),
        ('m', Target::Unix(dir.path().join("mysql.sock"))),
    ];
    let probes: Vec<_> = targets
        .into_iter()
        .map(|(kind, target)| tokio::spawn(prober(kind, target, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // B takes over with more workers (more sockets than A had), C from B with one worker
    // (several inherited sockets per worker); each waits for its predecessor to exit.
    let mut b = None;
    for (name, workers) in [("b", 3), ("c", 1)] {
        std::fs::write(&cfg, config(db, &ports, dir.path(), workers)).unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let next = start(&cfg, &log);
        let old = b.as_mut().unwrap_or(&mut a);
        let status = wait_exit(old, Duration::from_secs(30));
        assert!(status.success(), "the old process exited with {status}");
        // The new process learns that its predecessor is gone (then it may be taken over).
        tokio::time::sleep(Duration::from_millis(600)).await;
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("took over the listeners"), "{text}");
        b = Some(next);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let before = tally.committed.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("client finished")
            .unwrap();
    }
    let mut c = b.unwrap();
    sigterm(&c);
    assert!(wait_exit(&mut c, Duration::from_secs(30)).success());
    // The last process removed its socket files; none of the earlier ones had.
    for f in [
        "handover.sock".to_owned(),
        "mysql.sock".to_owned(),
        format!(".s.PGSQL.{}", ports.pg),
    ] {
        assert!(!dir.path().join(&f).exists(), "{f} left behind");
    }

    let (mut probed, mut failed) = (0, Vec::new());
    for p in probes {
        let (n, f) = p.await.unwrap();
        probed += n;
        failed.extend(f);
    }
    let probes = probed;
    assert!(
        failed.is_empty(),
        "{} of {probes} connections not answered: {failed:?}",
        failed.len()
    );
    let refused = tally.refused.lock().unwrap().clone();
    assert!(refused.is_empty(), "connections refused: {refused:?}");
    let broken = tally.broken.lock().unwrap().clone();
    assert!(broken.is_empty(), "transactions broken: {broken:?}");
    let mut committed = tally.committed.lock().unwrap().clone();
    committed.sort();
    assert!(
        committed.len() > before,
        "clients stopped committing after the handovers"
    );
    assert_eq!(
        ledgers(db),
        committed,
        "the ledgers differ from what was committed"
    );
    eprintln!(
        "committed {}, {probes} probes answered, idle clients closed by the old processes {}",
        committed.len(),
        tally.closed_idle.load(Ordering::Relaxed)
    );
}

/// Two statements running on the first process: a PostgreSQL client's `pg_sleep(30)` (in a
/// transaction when asked) and a MySQL client's `SLEEP(30)`.
struct Sleepers {
    token: tokio_postgres::CancelToken,
    y_id: u32,
    x_sleep: tokio::task::JoinHandle<(tokio_postgres::Client, Result<(), tokio_postgres::Error>)>,
    y_sleep: tokio::task::JoinHandle<(mysql_async::Conn, Result<(), mysql_async::Error>)>,
}

async fn sleepers(ports: &Ports, db: &str, my_db: &str, in_tx: bool) -> Sleepers {
    use mysql_async::prelude::*;
    let (x, task) = tokio_postgres::connect(&pg_url(ports.pg, db, "app"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(task);
    let token = x.cancel_token();
    if in_tx {
        x.batch_execute("BEGIN").await.unwrap();
    }
    let x_sleep = tokio::spawn(async move {
        let r = x.batch_execute("SELECT pg_sleep(30)").await;
        (x, r)
    });
    let mut y = mysql_async::Conn::new(my_opts(ports.my, my_db, "app"))
        .await
        .unwrap();
    let y_id = y.id();
    let y_sleep = tokio::spawn(async move {
        let r = y.query_drop("SELECT SLEEP(30)").await;
        (y, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    Sleepers {
        token,
        y_id,
        x_sleep,
        y_sleep,
    }
}

/// The PostgreSQL sleeper ends within 10 s, cancelled (57014); its client.
async fn expect_cancelled(
    x_sleep: tokio::task::JoinHandle<(tokio_postgres::Client, Result<(), tokio_postgres::Error>)>,
) -> tokio_postgres::Client {
    let (x, r) = tokio::time::timeout(Duration::from_secs(10), x_sleep)
        .await
        .expect("the PostgreSQL statement on A was cancelled")
        .unwrap();
    let e = r.expect_err("pg_sleep(30) was cancelled");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("57014"),
        "{e}"
    );
    x
}

/// The MySQL sleeper ends within 10 s, stopped by KILL QUERY (1317); its connection.
async fn expect_killed(
    y_sleep: tokio::task::JoinHandle<(mysql_async::Conn, Result<(), mysql_async::Error>)>,
) -> mysql_async::Conn {
    let (y, r) = tokio::time::timeout(Duration::from_secs(10), y_sleep)
        .await
        .expect("the MySQL statement on A was stopped")
        .unwrap();
    match r {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1317, "{e}"),
        other => panic!("SLEEP after KILL QUERY: {other:?}"),
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancels_and_kills_reach_the_draining_process_through_the_new_one() {
    use mysql_async::prelude::*;
    let db = "t_handover_relay";
    let my_db = format!("{db}_my");
    let First {
        dir,
        ports,
        cfg,
        mut a,
    } = first(db);

    // On A: a PostgreSQL statement inside a transaction, and a MySQL one (A drains until
    // they end).
    let Sleepers {
        token,
        y_id,
        x_sleep,
        y_sleep,
    } = sleepers(&ports, db, &my_db, true).await;

    let mut b = start(&cfg, &dir.path().join("b.log"));
    // Nobody may take over from B while A still drains (the ids' parity would repeat).
    let c = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&c.stderr);
    assert!(!c.status.success(), "a third process started");
    assert!(err.contains("still draining"), "{err}");

    // New clients reach B; its ids have the other parity.
    let mut z = mysql_async::Conn::new(my_opts(ports.my, &my_db, "app"))
        .await
        .unwrap();
    assert_ne!(
        z.id() & 0x8000_0000,
        y_id & 0x8000_0000,
        "ids of both processes"
    );
    // Through B: another user may not stop A's client; its own user may.
    let mut o = mysql_async::Conn::new(my_opts(ports.my, &my_db, "other"))
        .await
        .unwrap();
    match o.query_drop(format!("KILL QUERY {y_id}")).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1095, "{e}"),
        other => panic!("KILL by another user: {other:?}"),
    }
    let unknown = y_id ^ 0x7;
    match z.query_drop(format!("KILL QUERY {unknown}")).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1094, "{e}"),
        other => panic!("KILL of an unknown id: {other:?}"),
    }
    let t = Instant::now();
    z.query_drop(format!("KILL QUERY {y_id}")).await.unwrap();
    drop(expect_killed(y_sleep).await);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // A PostgreSQL cancel request lands on B (A accepts no more) and is relayed.
    let t = Instant::now();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let x = expect_cancelled(x_sleep).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let _ = x.batch_execute("ROLLBACK").await;
    drop(x);

    // A has nothing left to wait for.
    assert!(wait_exit(&mut a, Duration::from_secs(25)).success());
    sigterm(&b);
    assert!(wait_exit(&mut b, Duration::from_secs(25)).success());
    drop(z);
    drop(o);
}

/// The new process serves on the listeners a moment before it tells the old one to drain
/// (and learns the way to relay to it): a cancel or KILL for the old process's client that
/// lands in that moment waits for the way, and is not taken for an unknown id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancels_and_kills_that_land_before_the_new_process_is_ready_wait_for_it() {
    use mysql_async::prelude::*;
    let db = "t_handover_early";
    let my_db = format!("{db}_my");
    let First {
        dir,
        ports,
        cfg,
        mut a,
    } = first(db);
    let Sleepers {
        token,
        y_id,
        x_sleep,
        y_sleep,
    } = sleepers(&ports, db, &my_db, false).await;

    // B serves (A has stopped accepting) and waits 3 s before telling A.
    let a_log = dir.path().join("a.log");
    let hold = [("SWITCHYARD_TEST_HOLD_READY_MS", "3000")];
    let mut b = start_with(
        &cfg,
        &dir.path().join("b.log"),
        &hold,
        "admin API listening",
    );
    let t = Instant::now();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let mut z = mysql_async::Conn::new(my_opts(ports.my, &my_db, "app"))
        .await
        .unwrap();
    let a_text = std::fs::read_to_string(&a_log).unwrap();
    assert!(
        !a_text.contains("handed over to a new process"),
        "A was told before the cancel and KILL were sent ({:?} after B served): the test \
         missed the moment it is about\n{a_text}\nB:\n{}",
        t.elapsed(),
        std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default()
    );
    z.query_drop(format!("KILL QUERY {y_id}"))
        .await
        .expect("KILL QUERY of A's client, sent to B before it was ready");
    drop(expect_cancelled(x_sleep).await);
    drop(expect_killed(y_sleep).await);
    assert!(wait_exit(&mut a, Duration::from_secs(25)).success());
    sigterm(&b);
    assert!(wait_exit(&mut b, Duration::from_secs(25)).success());
    drop(z);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_process_that_fails_changes_nothing() {
    let db = "t_handover_fail";
    let First {
        dir,
        ports,
        cfg,
        mut a,
    } = first(db);
    let url = pg_url(ports.pg, db, "app");
    let idle = support::connect(&url).await;

    // B takes the listeners, then cannot bind an address of its own (held here without
    // SO_REUSEPORT) and exits.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bad = config(db, &ports, dir.path(), 2).replace(
        "[[edge.route]]",
        &format!(
            "[[edge.listener]]\nname = \"second\"\nlisten = \"{}\"\n\n[[edge.route]]",
            held.local_addr().unwrap()
        ),
    );
    let bad_cfg = dir.path().join("bad.toml");
    std::fs::write(&bad_cfg, bad).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--config"])
        .arg(&bad_cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the bad process started: {err}");
    assert!(err.contains("cannot listen"), "{err}");
    assert!(
        err.contains("took over the listeners"),
        "it never took them: {err}"
    );

    // A serves on as before: its client, new clients at once, and its listeners can still
    // be handed over.
    assert!(a.try_wait().unwrap().is_none(), "A exited");
    idle.simple_query("SELECT 1").await.unwrap();
    let t = Instant::now();
    let fresh = tokio::time::timeout(Duration::from_secs(2), support::connect(&url))
        .await
        .expect("A accepts again");
    fresh.simple_query("SELECT 1").await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // B, configured without the MySQL Unix socket: that socket closes, its file goes.
    let sock = dir.path().join("mysql.sock");
    assert!(sock.exists());
    let without =
        config(db, &ports, dir.path(), 2).replace(&format!("socket = \"{}\"", sock.display()), "");
    std::fs::write(&cfg, without).unwrap();
    let mut b = start(&cfg, &dir.path().join("b.log"));
    assert!(
        !sock.exists(),
        "the socket file B does not serve on is still there"
    );
    let e = idle.simple_query("SELECT 1").await;
    assert!(wait_exit(&mut a, Duration::from_secs(25)).success());
    drop((e, idle, fresh));
    let after = support::connect(&url).await;
    after.simple_query("SELECT 1").await.unwrap();
    sigterm(&b);
    assert!(wait_exit(&mut b, Duration::from_secs(25)).success());
}

/// SQLAlchemy pools (psycopg and PyMySQL, `pool_pre_ping`, as SQLAlchemy recommends for
/// servers that close connections) writing through two handovers: the applications see no
/// error at all, and every row they were told is committed is there and no other. (The old
/// process answers a pool's check with the connection's end, so the pool replaces it, and
/// lets the transaction after a check that passed just before the drain run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_applications_see_no_error_across_handovers() {
    let db = "t_handover_pool";
    let First {
        dir,
        ports,
        cfg,
        mut a,
    } = first(db);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/drivers/python/handover_pool.py");
    let urls = [
        (
            1,
            format!(
                "postgresql+psycopg://app:app_pw@127.0.0.1:{}/{db}",
                ports.pg
            ),
        ),
        (
            2,
            format!("mysql+pymysql://app:app_pw@127.0.0.1:{}/{db}_my", ports.my),
        ),
    ];
    let apps: Vec<_> = urls
        .iter()
        .map(|(tag, url)| {
            Command::new("python3")
                .arg(&script)
                .args([url.as_str(), "6", "8", &tag.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut old = a;
    for (i, workers) in [(0, 3), (1, 2)] {
        tokio::time::sleep(Duration::from_millis(1800)).await;
        std::fs::write(&cfg, config(db, &ports, dir.path(), workers)).unwrap();
        let next = start(&cfg, &dir.path().join(format!("n{i}.log")));
        assert!(wait_exit(&mut old, Duration::from_secs(30)).success());
        old = next;
    }
    let mut committed = Vec::new();
    for app in apps {
        let out = tokio::task::spawn_blocking(move || app.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let errors: Vec<_> = text.lines().filter(|l| l.starts_with("error")).collect();
        assert!(errors.is_empty(), "the applications saw errors: {errors:?}");
        for line in text.lines().filter(|l| l.starts_with("ok ")) {
            let f: Vec<&str> = line.split(' ').collect();
            let kind = if f[1] == "1" { 'p' } else { 'm' };
            committed.push((kind, f[2].parse().unwrap(), f[3].parse().unwrap()));
        }
    }
    committed.sort();
    assert!(committed.len() > 100, "{} transactions", committed.len());
    assert_eq!(ledgers(db), committed);
    eprintln!(
        "{} transactions committed by the pooled applications, none failed",
        committed.len()
    );
    sigterm(&old);
    assert!(wait_exit(&mut old, Duration::from_secs(30)).success());
    a = old;
    drop(a);
}
