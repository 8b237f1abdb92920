//! MySQL / MariaDB backend connections and the MariaDB health probe against real servers
//! (`testkit::mariadb`): logins as the proxy's and an application's user, refusals, proxy
//! statements with several result sets, transaction status flags, COM_RESET_CONNECTION, KILL,
//! the pool, and the prober's roles, positions, stalls and promotion (also through the health
//! checker). Loopback only; every wait is bounded.
//!
//! The tests that only read and write their own tables share one primary + replica; the
//! prober test changes the topology (stops threads, promotes) and has its own.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use switchyard::cluster::health::{self, Prober};
use switchyard::cluster::{ClusterState, Role};
use switchyard::config::BackendAddr;
use switchyard::mysql::backend::*;
use switchyard::mysql::codec;
use switchyard::mysql::probe::MyProber;
use switchyard::pool::{PoolLimits, Reusable};
use switchyard::testkit::mariadb::{self, MariaCluster};

/// Bound on every proxy statement and login in these tests.
const T: Duration = Duration::from_secs(10);
/// Bound on waiting for replication or the health checker.
const WAIT: Duration = Duration::from_secs(30);

static SHARED: OnceLock<MariaCluster> = OnceLock::new();

/// A primary with one replica and databases `sy` and `sy2`, shared by the tests that do not
/// change the topology.
fn shared() -> &'static MariaCluster {
    SHARED.get_or_init(|| {
        let c = MariaCluster::start(1).expect("start MariaDB");
        c.create_database("sy").unwrap();
        c.create_database("sy2").unwrap();
        c
    })
}

fn addr(c: &MariaCluster, node: usize) -> BackendAddr {
    SocketAddr::from(([127, 0, 0, 1], c.port(node))).into()
}

fn target(c: &MariaCluster, node: usize, user: &str, password: &str, db: Option<&str>) -> MyTarget {
    MyTarget {
        addr: addr(c, node),
        user: user.into(),
        password: Some(password.into()),
        database: db.map(Into::into),
        connect_timeout: T,
        tls: switchyard::net::backend_tls::ServerTlsConfig::disabled(),
        pass_through: None,
    }
}

fn proxy_target(c: &MariaCluster, node: usize, db: Option<&str>) -> MyTarget {
    target(c, node, mariadb::PROXY_USER, mariadb::PROXY_PASSWORD, db)
}

async fn value(conn: &mut MyConn, sql: &str) -> Option<String> {
    let r = conn
        .query(sql, T)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    r.value().map(str::to_string)
}

fn server_code(r: Result<QueryResult, MyQueryError>) -> u16 {
    match r {
        Err(MyQueryError::Server { code, .. }) => code,
        r => panic!("expected a server error, got {r:?}"),
    }
}

/// Polls `f` every 50 ms until it is true or `WAIT` passes.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to `WAIT`) until the server no longer lists thread `id`: its socket is closed.
async fn wait_thread_gone(t: &MyTarget, id: u32) {
    let mut watcher = MyConn::connect(t).await.unwrap();
    let sql = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}");
    let t0 = Instant::now();
    while value(&mut watcher, &sql).await.as_deref() != Some("0") {
        assert!(
            t0.elapsed() < WAIT,
            "thread {id} still listed after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the event loop record the closed socket's readiness.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn logins_and_refusals() {
    let c = shared();
    let t0 = Instant::now();
    let mut conn = MyConn::connect(&proxy_target(c, 0, Some("sy")))
        .await
        .unwrap();
    eprintln!("login as switchyard: {:?}", t0.elapsed());
    assert!(conn.mariadb, "{}", conn.server_version);
    assert!(
        conn.server_version.contains("MariaDB"),
        "{}",
        conn.server_version
    );
    assert!(!conn.server_version.starts_with("5.5.5-"));
    for flag in [
        codec::CLIENT_PROTOCOL_41,
        codec::CLIENT_SESSION_TRACK,
        codec::CLIENT_MULTI_STATEMENTS,
        codec::CLIENT_MULTI_RESULTS,
        codec::CLIENT_PS_MULTI_RESULTS,
        codec::CLIENT_CONNECT_WITH_DB,
    ] {
        assert!(conn.capabilities & flag != 0, "{flag:#x} not negotiated");
    }
    // Classic EOF packets (the front end forwards result sets to clients without
    // DEPRECATE_EOF), no LOCAL INFILE.
    assert!(conn.capabilities & codec::CLIENT_DEPRECATE_EOF == 0);
    assert!(conn.capabilities & codec::CLIENT_LOCAL_FILES == 0);
    assert!(conn.clean && !conn.killed && !conn.broken && conn.reusable());
    assert!(conn.autocommit() && !conn.in_transaction());
    assert_eq!(conn.schema.as_deref(), Some("sy"));
    assert_eq!(
        value(&mut conn, "SELECT CONNECTION_ID()").await,
        Some(conn.connection_id.to_string())
    );
    assert_eq!(
        value(&mut conn, "SELECT CURRENT_USER()").await.as_deref(),
        Some("switchyard@%")
    );
    assert_eq!(
        value(&mut conn, "SELECT DATABASE()").await.as_deref(),
        Some("sy")
    );
    assert_eq!(
        value(&mut conn, "SELECT @@character_set_client")
            .await
            .as_deref(),
        Some("utf8mb4")
    );

    // The application user, on the replica, without a default schema.
    let mut app = MyConn::connect(&target(
        c,
        1,
        mariadb::APP_USER,
        mariadb::APP_PASSWORD,
        None,
    ))
    .await
    .unwrap();
    assert_eq!(app.schema, None);
    assert_eq!(value(&mut app, "SELECT DATABASE()").await, None);
    assert_eq!(
        value(&mut app, "SELECT @@read_only").await.as_deref(),
        Some("1")
    );

    // Refusals carry the server's code.
    let refused = |r: Result<MyConn, MyConnectError>| match r {
        Err(MyConnectError::Refused { code, message, .. }) => (code, message),
        r => panic!("expected a refusal, got {r:?}"),
    };
    let (code, message) =
        refused(MyConn::connect(&target(c, 0, mariadb::APP_USER, "wrong", None)).await);
    assert_eq!(code, ER_ACCESS_DENIED, "{message}");
    assert!(message.contains("Access denied"), "{message}");
    let mut no_pw = target(c, 0, mariadb::APP_USER, "", None);
    no_pw.password = None;
    assert_eq!(refused(MyConn::connect(&no_pw).await).0, ER_ACCESS_DENIED);
    let (code, _) = refused(MyConn::connect(&proxy_target(c, 0, Some("no_such_db"))).await);
    assert_eq!(code, 1049);

    // Nothing listening: an I/O error. A server that accepts and never speaks: the timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let mut t = proxy_target(c, 0, None);
    t.addr = closed_addr.into();
    assert!(matches!(
        MyConn::connect(&t).await,
        Err(MyConnectError::Io { .. })
    ));
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    t.addr = silent.local_addr().unwrap().into();
    t.connect_timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    assert!(matches!(
        MyConn::connect(&t).await,
        Err(MyConnectError::Timeout { .. })
    ));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn empty_password_and_an_auth_switch_to_a_plugin_not_spoken() {
    let c = shared();
    // Not binary-logged: the replica need not have the plugin.
    c.exec(
        0,
        "SET sql_log_bin = 0; INSTALL SONAME 'auth_ed25519'; \
         CREATE USER 'ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed_pw'); \
         CREATE USER 'nopw'@'%'",
    )
    .unwrap();
    // An account without a password: no password, or an empty one, logs in.
    let mut t = target(c, 0, "nopw", "", None);
    MyConn::connect(&t).await.unwrap();
    t.password = None;
    let mut conn = MyConn::connect(&t).await.unwrap();
    assert_eq!(
        value(&mut conn, "SELECT CURRENT_USER()").await.as_deref(),
        Some("nopw@%")
    );
    // The server switches to client_ed25519 for this account: refused, naming the plugin.
    match MyConn::connect(&target(c, 0, "ed", "ed_pw", None)).await {
        Err(MyConnectError::Protocol { what, .. }) => {
            assert!(what.contains("client_ed25519"), "{what}")
        }
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn statements_with_several_results_and_errors() {
    let c = shared();
    let mut conn = MyConn::connect(&proxy_target(c, 0, Some("sy")))
        .await
        .unwrap();
    let r = conn
        .query(
            "SELECT 1 AS a, NULL AS b, 'x''y' AS c; \
             CREATE TABLE IF NOT EXISTS multi (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT); \
             INSERT INTO multi (v) VALUES ('one'), ('two'); \
             SELECT v FROM multi ORDER BY id",
            T,
        )
        .await
        .unwrap();
    assert_eq!(r.sets.len(), 4, "{r:?}");
    assert_eq!(r.sets[0].columns, ["a", "b", "c"]);
    assert_eq!(
        r.sets[0].rows,
        vec![vec![Some("1".to_string()), None, Some("x'y".to_string())]]
    );
    assert!(r.sets[1].columns.is_empty());
    assert_eq!(r.sets[2].affected_rows, 2);
    assert!(r.sets[2].last_insert_id > 0);
    assert!(r.sets[3].rows.len() >= 2);
    assert_eq!(r.sets[3].get(0, "v"), Some("one"));
    assert!(r.status & codec::SERVER_MORE_RESULTS_EXISTS == 0);
    for s in &r.sets[..3] {
        assert!(s.status & codec::SERVER_MORE_RESULTS_EXISTS != 0);
    }

    // A procedure returning two result sets (CLIENT_PS_MULTI_RESULTS / MULTI_RESULTS).
    conn.query(
        "CREATE OR REPLACE PROCEDURE two_sets() BEGIN SELECT 1 AS one; SELECT 2 AS two, 3 AS three; END",
        T,
    )
    .await
    .unwrap();
    let r = conn.query("CALL two_sets()", T).await.unwrap();
    assert_eq!(r.sets.len(), 3, "two result sets and the CALL's OK: {r:?}");
    assert_eq!(r.sets[1].get(0, "three"), Some("3"));

    // Many rows in many packets.
    let r = conn
        .query("SELECT seq, REPEAT('z', 300) FROM seq_1_to_20000", T)
        .await
        .unwrap();
    assert_eq!(r.rows().len(), 20000);
    assert_eq!(r.rows()[19999][0].as_deref(), Some("20000"));

    // A server error: the connection stays in step (only `clean` is cleared).
    assert_eq!(server_code(conn.query("SELEC 1", T).await), 1064);
    assert!(!conn.broken && !conn.clean);
    conn.clean = true;
    // An error in the middle of a multi-statement query stops it there.
    match conn
        .query("SELECT 1; SELECT * FROM no_such_table; SELECT 3", T)
        .await
    {
        Err(MyQueryError::Server {
            code,
            sqlstate,
            message,
        }) => {
            assert_eq!((code, sqlstate.as_str()), (1146, "42S02"), "{message}");
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(
        value(&mut conn, "SELECT 'still fine'").await.as_deref(),
        Some("still fine")
    );

    // Schema changes are tracked.
    conn.query("USE sy2", T).await.unwrap();
    assert_eq!(conn.schema.as_deref(), Some("sy2"));
    conn.query("USE sy", T).await.unwrap();
    assert_eq!(conn.schema.as_deref(), Some("sy"));

    // A statement past its timeout: the connection is broken for good.
    let t0 = Instant::now();
    match conn
        .query("SELECT SLEEP(5)", Duration::from_millis(300))
        .await
    {
        Err(MyQueryError::Broken(m)) => assert!(m.contains("within"), "{m}"),
        r => panic!("{r:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(conn.broken && !conn.reusable());
    conn.clean = true;
    assert!(!conn.reusable());
    assert!(matches!(
        conn.query("SELECT 1", T).await,
        Err(MyQueryError::Broken(_))
    ));
}

#[tokio::test]
async fn transaction_status_flags() {
    let c = shared();
    let mut conn = MyConn::connect(&proxy_target(c, 0, Some("sy")))
        .await
        .unwrap();
    conn.query("CREATE TABLE IF NOT EXISTS tx (id INT PRIMARY KEY)", T)
        .await
        .unwrap();
    assert!(conn.clean);
    let r = conn.query("BEGIN", T).await.unwrap();
    assert!(r.status & codec::SERVER_STATUS_IN_TRANS != 0);
    assert!(conn.in_transaction() && !conn.clean);
    conn.query(
        "INSERT INTO tx VALUES (1) ON DUPLICATE KEY UPDATE id = id",
        T,
    )
    .await
    .unwrap();
    assert!(conn.in_transaction());
    conn.query("COMMIT", T).await.unwrap();
    assert!(!conn.in_transaction() && conn.autocommit());
    // Autocommit off: the server reports it, and the next statement opens a transaction.
    let r = conn.query("SET autocommit = 0", T).await.unwrap();
    assert!(!conn.autocommit());
    eprintln!(
        "tracked variables after SET autocommit = 0: {:?}",
        r.variables
    );
    assert!(
        r.variables
            .iter()
            .any(|(k, v)| k == "autocommit" && v == "OFF"),
        "{:?}",
        r.variables
    );
    conn.query("SELECT * FROM tx", T).await.unwrap();
    assert!(conn.in_transaction());
    conn.query("ROLLBACK; SET autocommit = 1", T).await.unwrap();
    assert!(!conn.in_transaction() && conn.autocommit());
}

#[tokio::test]
async fn reset_connection_clears_session_state() {
    let c = shared();
    let t = proxy_target(c, 0, Some("sy"));
    let mut conn = MyConn::connect(&t).await.unwrap();
    let id = conn.connection_id;
    conn.query(
        "CREATE TABLE IF NOT EXISTS reset_t (id INT PRIMARY KEY); \
         DELETE FROM reset_t; \
         SET @x = 42; \
         SET SESSION sql_mode = 'ANSI_QUOTES'; \
         CREATE TEMPORARY TABLE tmp_reset (v INT); \
         PREPARE st FROM 'SELECT 1'; \
         BEGIN; INSERT INTO reset_t VALUES (1)",
        T,
    )
    .await
    .unwrap();
    assert_eq!(
        value(&mut conn, "SELECT GET_LOCK('sy_reset_lock', 0)")
            .await
            .as_deref(),
        Some("1")
    );
    conn.query("USE sy2", T).await.unwrap();
    conn.prepared.insert(1, 7);
    conn.applied.push(("sql_mode".into(), "ANSI_QUOTES".into()));
    conn.state_unknown = true;
    assert!(conn.in_transaction() && !conn.clean);
    let default_mode = value(&mut conn, "SELECT @@GLOBAL.sql_mode").await;

    let t0 = Instant::now();
    conn.reset(T).await.unwrap();
    eprintln!("COM_RESET_CONNECTION: {:?}", t0.elapsed());
    assert!(conn.clean && conn.reusable() && !conn.in_transaction());
    assert!(conn.prepared.is_empty() && conn.applied.is_empty() && !conn.state_unknown);
    assert_eq!(conn.connection_id, id);
    assert_eq!(
        value(&mut conn, "SELECT CONNECTION_ID()").await,
        Some(id.to_string())
    );
    assert_eq!(value(&mut conn, "SELECT @x").await, None);
    assert_eq!(
        value(&mut conn, "SELECT @@SESSION.sql_mode").await,
        default_mode
    );
    assert_eq!(
        server_code(conn.query("SELECT * FROM tmp_reset", T).await),
        1146
    );
    assert_eq!(server_code(conn.query("EXECUTE st", T).await), 1243);
    assert_eq!(
        value(&mut conn, "SELECT IS_USED_LOCK('sy_reset_lock')").await,
        None
    );
    assert_eq!(
        value(&mut conn, "SELECT DATABASE()").await.as_deref(),
        Some("sy")
    );
    assert_eq!(conn.schema.as_deref(), Some("sy"));
    assert_eq!(
        value(&mut conn, "SELECT COUNT(*) FROM reset_t")
            .await
            .as_deref(),
        Some("0")
    );
    // Another session can take the lock.
    let mut other = MyConn::connect(&t).await.unwrap();
    assert_eq!(
        value(&mut other, "SELECT GET_LOCK('sy_reset_lock', 0)")
            .await
            .as_deref(),
        Some("1")
    );

    // Without a default schema the schema a client chose stays (MariaDB keeps it).
    let mut bare = MyConn::connect(&proxy_target(c, 0, None)).await.unwrap();
    bare.query("USE sy", T).await.unwrap();
    bare.reset(T).await.unwrap();
    assert!(bare.clean);
    assert_eq!(
        value(&mut bare, "SELECT DATABASE()").await.as_deref(),
        Some("sy")
    );
    assert_eq!(bare.schema.as_deref(), Some("sy"));
}

#[tokio::test]
async fn pool_checkout_release_and_stale_connections() {
    let c = shared();
    let t = proxy_target(c, 0, Some("sy"));
    let pool = MyPool::new(
        t.clone(),
        PoolLimits::new(2, Duration::from_secs(5)),
        None,
        None,
    );
    let mut a = pool.checkout().await.unwrap();
    let id = a.connection_id;
    assert_eq!(value(&mut a, "SELECT 1").await.as_deref(), Some("1"));
    switchyard::pool::release(a);
    assert_eq!(pool.status(), (1, 1));
    // The same connection comes back.
    let mut a = pool.checkout().await.unwrap();
    assert_eq!(a.connection_id, id);
    // Left inside a transaction: closed on release, not pooled.
    a.query("BEGIN", T).await.unwrap();
    switchyard::pool::release(a);
    assert_eq!(pool.status().0, 0);
    let mut b = pool.checkout().await.unwrap();
    assert_ne!(b.connection_id, id);
    let id = b.connection_id;
    // Killed: never reused.
    b.killed = true;
    switchyard::pool::release(b);
    let b = pool.checkout().await.unwrap();
    assert_ne!(b.connection_id, id);
    let id = b.connection_id;
    switchyard::pool::release(b);
    // Killed by the server while idle in the pool: stale, replaced at the next checkout.
    t.kill(id, false, T).await.unwrap();
    wait_thread_gone(&t, id).await;
    let mut b = pool.checkout().await.unwrap();
    assert_ne!(b.connection_id, id);
    assert_eq!(value(&mut b, "SELECT 2").await.as_deref(), Some("2"));
    // Two at once, then the limit.
    let c2 = pool.checkout().await.unwrap();
    let t0 = Instant::now();
    let small = MyPool::new(
        t.clone(),
        PoolLimits::new(1, Duration::from_millis(200)),
        None,
        None,
    );
    let held = small.checkout().await.unwrap();
    assert!(matches!(
        small.checkout().await,
        Err(MyCheckoutError::Timeout { .. })
    ));
    assert!(t0.elapsed() < Duration::from_secs(3));
    drop((held, c2, b));
    // A pool whose server refuses the login reports the refusal.
    let bad = MyPool::new(
        target(c, 0, "switchyard", "wrong", None),
        PoolLimits::new(1, Duration::from_secs(5)),
        None,
        None,
    );
    match bad.checkout().await {
        Err(MyCheckoutError::Connect(MyConnectError::Refused { code, .. })) => {
            assert_eq!(code, ER_ACCESS_DENIED)
        }
        r => panic!("{:?}", r.map(|c| c.connection_id)),
    }
}

#[tokio::test]
async fn kill_query_and_connection() {
    let c = shared();
    let t = proxy_target(c, 0, Some("sy"));
    let mut victim = MyConn::connect(&t).await.unwrap();
    let id = victim.connection_id;
    let running = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = victim
            .query("SELECT SLEEP(20)", Duration::from_secs(30))
            .await;
        (victim, r, t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.kill(id, true, T).await.unwrap();
    let (mut victim, r, took) = running.await.unwrap();
    assert!(took < Duration::from_secs(10), "{took:?}");
    eprintln!("KILL QUERY of SLEEP answers {r:?} after {took:?}");
    // The statement is stopped, the connection lives on.
    victim.killed = true;
    assert!(!victim.reusable());
    assert_eq!(
        value(&mut victim, "SELECT 'alive'").await.as_deref(),
        Some("alive")
    );
    // KILL of the connection ends it; a thread that is gone is not an error.
    t.kill(id, false, T).await.unwrap();
    wait_thread_gone(&t, id).await;
    assert!(victim.stale());
    assert!(victim.query("SELECT 1", T).await.is_err());
    t.kill(id, false, T).await.unwrap();
}

// ---------------------------------------------------------------- the prober

fn prober(c: &MariaCluster, user: &str, password: &str) -> MyProber {
    MyProber {
        target: target(c, 0, user, password, Some("sy")),
    }
}

async fn probe_of(p: &MyProber, conn: &mut MyConn) -> health::Probe {
    p.probe(conn, T).await.unwrap()
}

/// The sequence number of a single-domain GTID position.
fn seq(pos: &str) -> u64 {
    pos.rsplit('-').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_roles_positions_stalls_and_promotion() {
    let c = MariaCluster::start(2).expect("start MariaDB");
    c.create_database("sy").unwrap();
    let p = prober(&c, mariadb::PROXY_USER, mariadb::PROXY_PASSWORD);
    let mut conns = Vec::new();
    for n in 0..3 {
        conns.push(p.connect(addr(&c, n), T).await.unwrap());
    }
    let t0 = Instant::now();
    let primary = probe_of(&p, &mut conns[0]).await;
    eprintln!("one probe: {:?}", t0.elapsed());
    assert!(!primary.in_recovery && !primary.stalled, "{primary:?}");
    assert_eq!(primary.timeline, 1, "only its own GTIDs: takeover point 1");
    assert_eq!(primary.lsn, seq(&c.gtid_binlog_pos(0).unwrap()));
    for (n, conn) in conns.iter_mut().enumerate().skip(1) {
        let r = probe_of(&p, conn).await;
        assert!(r.in_recovery && !r.stalled, "{n}: {r:?}");
        assert_eq!((r.timeline, r.lsn), (0, primary.lsn), "{n}");
    }

    // Writes move the primary; the replicas follow.
    c.query_db(
        0,
        Some("sy"),
        "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)",
    )
    .unwrap();
    for i in 0..5 {
        c.query_db(0, Some("sy"), &format!("INSERT INTO t (v) VALUES ({i})"))
            .unwrap();
    }
    let after = probe_of(&p, &mut conns[0]).await;
    assert_eq!(after.lsn, primary.lsn + 6);
    c.wait_caught_up(WAIT).unwrap();
    for (n, conn) in conns.iter_mut().enumerate().skip(1) {
        assert_eq!(probe_of(&p, conn).await.lsn, after.lsn, "{n}");
    }

    // SQL thread stopped: stalled, behind; started again: caught up.
    c.stop_sql_thread(1).unwrap();
    c.query_db(0, Some("sy"), "INSERT INTO t (v) VALUES (100)")
        .unwrap();
    let r = probe_of(&p, &mut conns[1]).await;
    assert!(r.in_recovery && r.stalled, "{r:?}");
    assert_eq!(r.lsn, after.lsn);
    c.start_sql_thread(1).unwrap();
    c.wait_caught_up(WAIT).unwrap();
    let r = probe_of(&p, &mut conns[1]).await;
    assert!(!r.stalled && r.lsn == after.lsn + 1, "{r:?}");
    // IO thread stopped: stalled too.
    c.exec(2, "STOP SLAVE IO_THREAD").unwrap();
    assert!(probe_of(&p, &mut conns[2]).await.stalled);
    c.exec(2, "START SLAVE IO_THREAD").unwrap();
    assert!(!probe_of(&p, &mut conns[2]).await.stalled);

    // Without SLAVE MONITOR the probe fails and says why.
    let app = prober(&c, mariadb::APP_USER, mariadb::APP_PASSWORD);
    let mut app_conn = app.connect(addr(&c, 1), T).await.unwrap();
    let e = app.probe(&mut app_conn, T).await.unwrap_err();
    assert!(e.contains("SLAVE MONITOR"), "{e}");

    // The health checker: a replica whose SQL thread stops leaves the read set and returns.
    let config = format!(
        "[health]\ninterval = \"200ms\"\ntimeout = \"2s\"\nrise = 1\nfall = 2\n\
         [[cluster]]\nname = \"maria\"\ndatabase = \"sy\"\nprimary = \"{}\"\nuser = \"switchyard\"\n\
         replicas = [\"{}\", \"{}\"]\nmax_lag = \"30s\"\n",
        addr(&c, 0),
        addr(&c, 1),
        addr(&c, 2)
    );
    let cfg = switchyard::config::Config::from_toml(&config).unwrap();
    let state = Arc::new(ClusterState::new(&cfg.clusters[0]).unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let checker = tokio::spawn(health::run(
        state.clone(),
        p.clone(),
        cfg.health.clone(),
        Vec::new(),
        shutdown.clone(),
    ));
    let s = state.clone();
    eventually("roles seen", || {
        s.backends[0].role() == Role::Primary
            && s.backends[0].timeline() == 1
            && s.backends[1].role() == Role::Replica
            && s.backends[2].role() == Role::Replica
    })
    .await;
    assert!(s.backends[2].in_read_set());
    c.stop_sql_thread(2).unwrap();
    eventually("stalled replica leaves the read set", || {
        !s.backends[2].in_read_set()
    })
    .await;
    // The primary is idle: by position the replica is not behind, it is out only as stalled.
    assert!(s.backends[1].in_read_set());
    c.start_sql_thread(2).unwrap();
    eventually("replica back in the read set", || {
        s.backends[2].in_read_set()
    })
    .await;

    // Promotion: node 1 takes over while node 0 keeps running writable (split brain).
    c.query_db(0, Some("sy"), "INSERT INTO t (v) VALUES (200)")
        .unwrap();
    c.wait_node_caught_up(1, WAIT).unwrap();
    let before = probe_of(&p, &mut conns[0]).await;
    c.promote(1).unwrap();
    let promoted = probe_of(&p, &mut conns[1]).await;
    assert!(!promoted.in_recovery && !promoted.stalled, "{promoted:?}");
    assert_eq!(promoted.lsn, before.lsn);
    assert_eq!(
        promoted.timeline,
        before.lsn + 1,
        "takeover point: the old primary's last position + 1"
    );
    assert!(promoted.timeline > before.timeline);
    c.query_db(1, Some("sy"), "INSERT INTO t (v) VALUES (300)")
        .unwrap();
    let r = probe_of(&p, &mut conns[1]).await;
    assert_eq!((r.lsn, r.timeline), (before.lsn + 1, promoted.timeline));
    eventually(
        "the promoted node takes writes, the old primary is fenced",
        || {
            s.primary() == Ok(1)
                && s.backends[1].role() == Role::Primary
                && s.backends[0].is_fenced()
        },
    )
    .await;
    // Node 2 still follows the old primary: it lacks the new primary's write and, once the
    // new primary has moved on, ages until it leaves the read set (max_lag 30 s: not waited
    // for here); its position is behind. (Were the old primary to take as many writes from
    // elsewhere, node 2's number would match the new primary's: see `mysql::probe`.)
    let r = probe_of(&p, &mut conns[2]).await;
    assert!(r.in_recovery && r.lsn < before.lsn + 1, "{r:?}");
    // The old primary takes a write of its own (split brain) and is prepared to replicate
    // while still writable (`gtid_slave_pos` set to its binlog position): its takeover point
    // stays 1, below the promoted node's, so it cannot take the writes back.
    c.query_db(0, Some("sy"), "INSERT INTO t (v) VALUES (400)")
        .unwrap();
    c.exec(0, "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos")
        .unwrap();
    let old = probe_of(&p, &mut conns[0]).await;
    assert!(!old.in_recovery && old.timeline == 1, "{old:?}");
    assert!(old.lsn >= promoted.timeline, "{old:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(s.primary(), Ok(1));
    assert!(s.backends[0].is_fenced());
    shutdown.cancel();
    let _ = tokio::time::timeout(T, checker).await;
}
