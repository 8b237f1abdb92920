//! The MySQL front end against real MariaDB servers (a primary and two GTID replicas started
//! by the test harness): login, queries through the `mariadb` CLI, read/write splitting by
//! `@@server_id`, transaction pooling, session variables that follow the client without
//! pinning, state that pins, KILL.

mod support;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use support::run;
use switchyard::app::Server;
use switchyard::config::Config;
use switchyard::testkit::mariadb::MariaCluster;

fn cluster() -> &'static MariaCluster {
    static C: OnceLock<MariaCluster> = OnceLock::new();
    C.get_or_init(|| MariaCluster::start(2).expect("start MariaDB"))
}

struct Proxy {
    server: Option<Server>,
    port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

fn proxy(db: &str, pool: &str) -> Proxy {
    proxy_with(db, pool, "", "")
}

/// A proxy with extra lines in `[mysql]` and extra `[[user]]` tables.
fn proxy_with(db: &str, pool: &str, mysql: &str, users: &str) -> Proxy {
    let cfg = Config::from_toml(&config_text(db, pool, mysql, users)).expect("valid config");
    started(Server::start(cfg).expect("proxy starts"))
}

/// The config of [`proxy_with`].
fn config_text(db: &str, pool: &str, mysql: &str, users: &str) -> String {
    let c = cluster();
    let replicas: Vec<String> = c
        .replica_ports()
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    format!(
        r#"
[general]
workers = 1
drain_timeout = "2s"

[mysql]
listen = "127.0.0.1:0"
{mysql}

[health]
interval = "200ms"
timeout = "2s"

[pool]
checkout_timeout = "5s"
{pool}

[[user]]
name = "app"
password = "app_pw"
{users}

[[cluster]]
name = "{db}"
protocol = "mysql"
database = "{db}"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]
user = "switchyard"
password = "switchyard_pw"
"#,
        primary = c.primary_port(),
        replicas = replicas.join(", ")
    )
}

fn started(server: Server) -> Proxy {
    let port = server.my_addr.expect("mysql listener").port();
    // Let the health checker see the replicas.
    std::thread::sleep(Duration::from_millis(800));
    Proxy {
        server: Some(server),
        port,
    }
}

/// Run `sql` with the mariadb CLI through the proxy: (ok, stdout, stderr).
fn cli(port: u16, db: &str, sql: &str) -> (bool, String, String) {
    run(Command::new("mariadb").args([
        "--protocol=TCP",
        "-h127.0.0.1",
        &format!("-P{port}"),
        "-uapp",
        "-papp_pw",
        "--skip-ssl",
        // Keep comments: routing hints are comments.
        "--comments",
        "-N",
        "-B",
        db,
        "-e",
        sql,
    ]))
}

fn setup(db: &str, sql: &str) {
    let c = cluster();
    c.create_database(db).unwrap();
    c.query_db(0, Some(db), sql).unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
}

/// mysql_async's options for the app user through the proxy on `port`.
fn async_opts(port: u16, db: &str) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app_pw"))
        .db_name(Some(db))
        .prefer_socket(false)
}

/// The server ids that answered 20 executes of `stmt` (`SELECT @@server_id, sy_tag(?)`).
async fn answered_by(conn: &mut mysql_async::Conn, stmt: &mysql_async::Statement) -> Vec<String> {
    use mysql_async::prelude::*;
    let mut seen = Vec::new();
    for i in 0..20i64 {
        let (id, v): (u32, i64) = conn.exec_first(stmt, (i,)).await.unwrap().unwrap();
        assert_eq!(v, i + 1);
        seen.push(id.to_string());
    }
    seen
}

/// An execute routes by its statement's classification, kept from the prepare, but only
/// while the classifier that made it is in force: once a reload names the statement's
/// function a write (`[routing] write_functions`), the same prepared statement runs on the
/// primary.
#[test]
fn a_reload_that_reclassifies_a_prepared_statement_moves_its_executes() {
    use mysql_async::prelude::*;
    let db = "my_reclassify";
    setup(
        db,
        "CREATE FUNCTION sy_tag(x INT) RETURNS INT DETERMINISTIC RETURN x + 1",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let text = config_text(db, "", "", "");
    std::fs::write(&path, &text).unwrap();
    let p = started(Server::start_file(&path).expect("proxy starts"));
    let primary = cluster().value(0, "SELECT @@server_id").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (before, after) = rt.block_on(async {
        let opts = async_opts(p.port, db);
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let stmt = conn.prep("SELECT @@server_id, sy_tag(?)").await.unwrap();
        let before = answered_by(&mut conn, &stmt).await;
        std::fs::write(
            &path,
            format!("{text}\n[routing]\nwrite_functions = [\"sy_tag\"]\n"),
        )
        .unwrap();
        p.server.as_ref().unwrap().reload().expect("reload");
        let after = answered_by(&mut conn, &stmt).await;
        conn.disconnect().await.unwrap();
        (before, after)
    });
    assert!(
        before.iter().all(|id| *id != primary),
        "a read went to the primary ({primary}) before the reload: {before:?}"
    );
    assert!(
        after.iter().all(|id| *id == primary),
        "after the reload the statement still ran on replicas: {after:?}"
    );
}

#[test]
fn the_mariadb_cli_runs_ddl_dml_and_selects_through_the_proxy() {
    let db = "my_basic";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY, v varchar(20))");
    let p = proxy(db, "");
    let (ok, out, err) = cli(
        p.port,
        db,
        // The CLI sends each statement alone: the read after the write is hinted to the
        // primary (replicas may not have it yet under eventual consistency).
        "INSERT INTO t VALUES (1, 'one'), (2, 'two'); /* switchyard:primary */ SELECT id, v FROM t ORDER BY id; SELECT 1, NULL, 'x'",
    );
    assert!(ok, "{out}{err}");
    assert_eq!(out, "1\tone\n2\ttwo\n1\tNULL\tx\n");
    // Directly on the primary.
    assert_eq!(
        cluster()
            .query_db(0, Some(db), "SELECT count(*) FROM t")
            .unwrap(),
        vec![vec!["2".to_string()]]
    );
    // A wrong password is refused naming the user.
    let (ok, _, err) = run(Command::new("mariadb").args([
        "--protocol=TCP",
        "-h127.0.0.1",
        &format!("-P{}", p.port),
        "-uapp",
        "-pwrong",
        "--skip-ssl",
        db,
        "-e",
        "SELECT 1",
    ]));
    assert!(!ok);
    assert!(err.contains("1045") && err.contains("'app'"), "{err}");
}

#[test]
fn reads_go_to_replicas_and_writes_to_the_primary() {
    let db = "my_routing";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let p = proxy(db, "");
    let c = cluster();
    let primary_id = c.value(0, "SELECT @@server_id").unwrap();
    let replica_ids: Vec<String> = c
        .replicas()
        .iter()
        .map(|&n| c.value(n, "SELECT @@server_id").unwrap())
        .collect();
    // Each statement in its own client: autocommit reads go to the replicas.
    let mut seen = std::collections::HashMap::new();
    for _ in 0..20 {
        let (ok, out, err) = cli(p.port, db, "SELECT @@server_id");
        assert!(ok, "{err}");
        *seen.entry(out.trim().to_string()).or_insert(0) += 1;
    }
    assert!(
        !seen.contains_key(&primary_id),
        "reads reached the primary: {seen:?}"
    );
    for r in &replica_ids {
        assert!(
            seen.get(r).copied().unwrap_or(0) >= 3,
            "replica {r} got too few reads: {seen:?}"
        );
    }
    // Writes reach the primary (a replica would refuse them: read_only, error 1290).
    let (ok, _, err) = cli(p.port, db, "INSERT INTO t VALUES (1)");
    assert!(ok, "{err}");
    // Transactions, locking reads, GET_LOCK and LAST_INSERT_ID() on the primary.
    for sql in [
        "BEGIN; SELECT @@server_id; COMMIT",
        "SELECT @@server_id FROM t FOR UPDATE",
        "SELECT @@server_id, GET_LOCK('x', 0)",
        "SELECT @@server_id, LAST_INSERT_ID()",
    ] {
        let (ok, out, err) = cli(p.port, db, sql);
        assert!(ok, "{sql}: {err}");
        let first = out.split_whitespace().next().unwrap_or("").to_string();
        assert_eq!(first, primary_id, "{sql}");
    }
}

#[test]
fn session_variables_follow_the_client_without_pinning() {
    let db = "my_vars";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    // One connection per backend: if a client were pinned, the next would wait.
    let p = proxy(db, "size = 1");
    let (ok, out, err) = cli(
        p.port,
        db,
        "SET sql_mode = 'ANSI_QUOTES'; SET time_zone = '+03:00'; SELECT @@sql_mode, @@time_zone; \
         INSERT INTO t VALUES (1); SELECT @@sql_mode, @@time_zone; \
         BEGIN; SELECT @@sql_mode; COMMIT",
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "ANSI_QUOTES\t+03:00\nANSI_QUOTES\t+03:00\nANSI_QUOTES\n"
    );
    // Another client does not see them.
    let (ok, out, err) = cli(p.port, db, "SELECT @@time_zone");
    assert!(ok, "{err}");
    assert_ne!(out.trim(), "+03:00");
}

/// Run a Python program (with the port and database as arguments): (ok, stdout, stderr).
fn python(program: &str, port: u16, db: &str) -> (bool, String, String) {
    run(Command::new("python3").args(["-c", program, &port.to_string(), db]))
}

/// How [`kill_query_program`] connects through the proxy's TCP port (`arg`).
const TCP_CONNECT: &str = r#"pymysql.connect(host="127.0.0.1", port=int(arg), user="app", password="app_pw", database=db, read_timeout=40)"#;

/// A Python program (arguments: where to connect, the schema): two PyMySQL connections made
/// by the expression `connect` (of `arg` and `db`); `setup` runs with the first (`victim`),
/// which then runs `SELECT SLEEP(30)`; a second in, the other sends `KILL QUERY` for it.
/// Prints `True` if the sleep ended within 5 s, then what it got.
fn kill_query_program(connect: &str, setup: &str) -> String {
    format!(
        r#"
import sys, time, threading, pymysql
arg, db = sys.argv[1], sys.argv[2]
def conn():
    return {connect}
victim, killer = conn(), conn()
{setup}
vid = victim.thread_id()
result = {{}}
def run():
    t0 = time.time()
    try:
        c = victim.cursor(); c.execute("SELECT SLEEP(30)"); result["rows"] = c.fetchall()
    except Exception as e:
        result["error"] = repr(e)
    result["secs"] = time.time() - t0
th = threading.Thread(target=run); th.start()
time.sleep(1.0)
killer.cursor().execute("KILL QUERY %d" % vid)
th.join(40)
print(result.get("secs", 99) < 5, result)
"#
    )
}

/// mysql-connector-python logs in with caching_sha2_password (its default: the proxy's fast
/// path) and uses server-side prepared statements (the binary protocol), which must work
/// across pooled connections: each execute may land on another connection.
#[test]
fn mysql_connector_python_prepared_statements_and_caching_sha2_login() {
    let db = "my_prepared";
    setup(
        db,
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(20), d double)",
    );
    let p = proxy(db, "size = 2");
    let program = r#"
import sys, mysql.connector
port, db = int(sys.argv[1]), sys.argv[2]
def conn():
    return mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
        database=db, auth_plugin="caching_sha2_password", ssl_disabled=True, connection_timeout=10)
a, b = conn(), conn()
ca, cb = a.cursor(prepared=True), b.cursor(prepared=True)
for i in range(20):
    (ca if i % 2 else cb).execute("INSERT INTO t (id, v, d) VALUES (?, ?, ?)", (i, "v%d" % i, i / 4))
    (a if i % 2 else b).commit()
ca.execute("SELECT v, d FROM t WHERE id = ?", (7,))
print(ca.fetchall())
cb.execute("SELECT count(*) FROM t WHERE id >= ? AND v LIKE ?", (5, "v%"))
print(cb.fetchall())
ca.execute("SELECT v FROM t WHERE id = ?", (3,))
print(ca.fetchall())
a.close(); b.close()
"#;
    let (ok, out, err) = python(program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(out, "[('v7', 1.75)]\n[(15,)]\n[('v3',)]\n", "{err}");
    assert_eq!(
        cluster()
            .query_db(0, Some(db), "SELECT count(*) FROM t")
            .unwrap(),
        vec![vec!["20".to_string()]]
    );
}

/// Pooling stays pooling: clients of a driver that sets NAMES, sql_mode and time zone when it
/// connects (PyMySQL with init_command, as SQLAlchemy setups do) are served by a small pool
/// without timeouts, and each sees its own settings in every transaction.
#[test]
fn many_clients_with_connect_time_sets_share_a_small_pool() {
    let db = "my_pooling";
    setup(
        db,
        "CREATE TABLE t (id int PRIMARY KEY AUTO_INCREMENT, who int)",
    );
    let p = proxy(db, "size = 4");
    let program = r#"
import sys, threading, pymysql
port, db = int(sys.argv[1]), sys.argv[2]
modes = ["ANSI_QUOTES", "STRICT_TRANS_TABLES", "NO_ZERO_DATE", "IGNORE_SPACE"]
zones = ["+01:00", "+02:00", "-05:00", "+09:30"]
errors, done = [], []
def client(i):
    try:
        c = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pw", database=db,
            charset="utf8mb4", connect_timeout=10, read_timeout=20,
            init_command="SET sql_mode='%s', time_zone='%s'" % (modes[i % 4], zones[i % 4]))
        for k in range(3):
            cur = c.cursor()
            cur.execute("INSERT INTO t (who) VALUES (%s)", (i,))
            cur.execute("SELECT @@sql_mode, @@time_zone, @@character_set_client")
            got = cur.fetchone()
            c.commit()
            if got != (modes[i % 4], zones[i % 4], "utf8mb4"):
                errors.append("client %d saw %r" % (i, got))
        c.close()
        done.append(i)
    except Exception as e:
        errors.append("client %d: %r" % (i, e))
threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
for t in threads: t.start()
for t in threads: t.join(60)
print(len(done), len(errors))
for e in errors[:5]: print(e)
"#;
    let (ok, out, err) = python(program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(out.lines().next(), Some("200 0"), "{out}{err}");
    assert_eq!(
        cluster()
            .query_db(0, Some(db), "SELECT count(*) FROM t")
            .unwrap(),
        vec![vec!["600".to_string()]]
    );
}

/// After a client leaves, the next client on that backend connection sees default session
/// variables, no temporary tables, no user locks, no user variables.
#[test]
fn nothing_a_client_leaves_reaches_the_next_one() {
    let db = "my_leaks";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    // One connection per backend and no replicas in play: every client gets the same one.
    let p = proxy(db, "size = 1");
    let baseline = cli(
        p.port,
        db,
        "SELECT @@sql_mode, @@time_zone, @@autocommit, @@wait_timeout",
    )
    .1;
    for leak in [
        "SET sql_mode = 'ANSI'; SET time_zone = '+07:00'; SET autocommit = 0; SET wait_timeout = 77",
        "SET @secret = 42",
        "SET @@session.wait_timeout = 77, @secret = 42",
        "SELECT 1; SET @secret = 42",
        "SELECT 1; LOCK TABLES t WRITE",
        "SELECT 1; PREPARE s FROM 'SELECT 1'",
        "CREATE TEMPORARY TABLE tmp_leak (a int)",
        "CREATE OR REPLACE TEMPORARY TABLE tmp_leak (a int)",
        "create /* c */ temporary table if not exists tmp_leak (a int)",
        "SELECT GET_LOCK('leak_lock', 0)",
        "PREPARE s FROM 'SELECT 1'",
        "BEGIN; INSERT INTO t VALUES (1)",
        "LOCK TABLES t WRITE",
    ] {
        let (ok, _, err) = cli(p.port, db, leak);
        assert!(ok, "{leak}: {err}");
        let (ok, out, err) = cli(
            p.port,
            db,
            "/* switchyard:primary */ SELECT @@sql_mode, @@time_zone, @@autocommit, @@wait_timeout; \
             SELECT @secret IS NULL, IS_USED_LOCK('leak_lock') IS NULL, \
             (SELECT count(*) FROM t) = 0",
        );
        assert!(ok, "{leak}: {err}");
        let mut lines = out.lines();
        assert_eq!(lines.next().map(|l| format!("{l}\n")), Some(baseline.clone()), "{leak}");
        assert_eq!(lines.next(), Some("1\t1\t1"), "{leak}");
        let (ok, _, err) = cli(p.port, db, "SELECT * FROM tmp_leak");
        assert!(!ok && err.contains("1146"), "{leak}: temporary table visible: {err}");
    }
}

/// The same through multi-statements (one COM_QUERY, which the mariadb CLI never sends), where
/// a statement that pins is not always the first one, and through a stored procedure.
#[test]
fn nothing_a_multi_statement_leaves_reaches_the_next_client() {
    let db = "my_leaks_multi";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let p = proxy(db, "size = 1");
    let program = r#"
import sys, pymysql
from pymysql.constants import CLIENT
port, db = int(sys.argv[1]), sys.argv[2]
def conn():
    return pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
        database=db, autocommit=True, client_flag=CLIENT.MULTI_STATEMENTS, read_timeout=20)
# A routine may change a replayed variable and leave unreplayable state in one answer.
c = conn()
c.cursor().execute("CREATE PROCEDURE leak_p() BEGIN SET time_zone = '+03:00'; "
    "CREATE TEMPORARY TABLE tmp_leak (a int); SET @secret = 42; END")
c.close()
bad = []
for leak in ["SELECT 1; SET @secret = 42",
             "SELECT 1; SELECT 2 INTO @secret",
             "DO 1; CREATE TEMPORARY TABLE tmp_leak (a int)",
             "SELECT 1; SELECT GET_LOCK('leak_lock_multi', 0)",
             "SELECT 1; PREPARE s FROM 'SELECT 1'",
             "DO 1; LOCK TABLES t WRITE",
             "DO 1; SET SESSION wait_timeout = 77",
             "CALL leak_p()"]:
    c = conn(); cur = c.cursor(); cur.execute(leak)
    while cur.nextset():
        pass
    c.close()
    c = conn(); cur = c.cursor()
    cur.execute("/* switchyard:primary */ SELECT @secret IS NULL, IS_USED_LOCK('leak_lock_multi') IS NULL, "
                "@@wait_timeout <> 77")
    row = cur.fetchone()
    for probe in ["SELECT * FROM tmp_leak", "EXECUTE s"]:
        try:
            cur.execute(probe)
            row = row + (0,)
        except pymysql.err.MySQLError:
            row = row + (1,)
    if row != (1, 1, 1, 1, 1):
        bad.append((leak, row))
    c.close()
print(bad)
"#;
    let (ok, out, err) = python(program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "[]", "{err}");
    // The same routine, writing (so the server reports its own last_gtid with the state
    // change) and called through the binary protocol (COM_STMT_EXECUTE).
    let program = r#"
import sys, mysql.connector
port, db = int(sys.argv[1]), sys.argv[2]
def conn():
    return mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
        database=db, autocommit=True)
c = conn()
c.cursor().execute("CREATE PROCEDURE leak_w(IN i INT) BEGIN INSERT INTO t VALUES (i); "
    "SET @secret = 42; END")
c.close()
bad = []
for i in range(3):
    c = conn(); cur = c.cursor(prepared=True); cur.execute("CALL leak_w(?)", (1000 + i,))
    c.close()
    c = conn(); cur = c.cursor()
    cur.execute("/* switchyard:primary */ SELECT @secret IS NULL")
    row = cur.fetchone()
    if row != (1,):
        bad.append((i, row))
    c.close()
print(bad)
"#;
    let (ok, out, err) = python(program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "[]", "{err}");
}

/// KILL QUERY with the proxy-issued id of another client stops its statement quickly.
#[test]
fn kill_query_through_the_proxy_stops_a_running_statement() {
    let db = "my_kill";
    setup(db, "SELECT 1");
    let p = proxy(db, "");
    let program = kill_query_program(
        TCP_CONNECT,
        r#"cur = victim.cursor(); cur.execute("SELECT CONNECTION_ID()")"#,
    );
    let (ok, out, err) = python(&program, p.port, db);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("True"), "{out}{err}");
}

/// CONNECTION_ID() is the id the proxy gave the client in the handshake, in every form and
/// inside a transaction: that is the id KILL takes, so a client that learns it this way (the
/// usual way) and hands it to a watchdog stops its own statement, never another client's.
#[test]
fn connection_id_is_the_proxy_id_that_kill_takes() {
    let db = "my_connid";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY, c bigint)");
    let p = proxy(db, "");
    let program = r#"
import sys, time, threading, pymysql
port, db = int(sys.argv[1]), sys.argv[2]
def conn():
    return pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
        database=db, autocommit=True, read_timeout=40)
clients = [conn() for _ in range(6)]
bad = []
for c in clients:
    cur = c.cursor()
    seen = []
    cur.execute("SELECT CONNECTION_ID()"); seen.append(cur.fetchone()[0])
    cur.execute("select connection_id() AS me"); seen.append(cur.fetchone()[0])
    cur.execute("SELECT CONNECTION_ID() + 0, 'connection_id()' FROM DUAL"); row = cur.fetchone()
    seen.append(row[0])
    if row[1] != "connection_id()":
        bad.append(("string literal rewritten", row))
    cur.execute("BEGIN"); cur.execute("SELECT CONNECTION_ID()"); seen.append(cur.fetchone()[0])
    cur.execute("INSERT INTO t VALUES (%s, CONNECTION_ID())", (c.thread_id(),))
    cur.execute("COMMIT")
    # On the primary: a replica may not have the row yet.
    cur.execute("/* switchyard:primary */ SELECT c FROM t WHERE id = %s", (c.thread_id(),))
    seen.append(cur.fetchone()[0])
    if set(seen) != {c.thread_id()}:
        bad.append((c.thread_id(), seen))
# A watchdog kills the statement of the client whose CONNECTION_ID() it was given.
victim, bystander, watchdog = clients[0], clients[1], clients[2]
vcur = victim.cursor(); vcur.execute("SELECT CONNECTION_ID()"); vid = vcur.fetchone()[0]
result = {}
def run(name, c):
    t0 = time.time()
    try:
        k = c.cursor(); k.execute("SELECT SLEEP(3)"); result[name] = ("done", k.fetchall(), time.time() - t0)
    except Exception as e:
        result[name] = ("error", repr(e), time.time() - t0)
threads = [threading.Thread(target=run, args=(n, c)) for n, c in [("victim", victim), ("bystander", bystander)]]
for th in threads: th.start()
time.sleep(0.5)
watchdog.cursor().execute("KILL QUERY %d" % vid)
for th in threads: th.join(40)
if not (result["victim"][2] < 2.5):
    bad.append(("victim not stopped", result["victim"]))
if result["bystander"][0] != "done" or result["bystander"][1] != ((0,),):
    bad.append(("bystander", result["bystander"]))
# A client that kills itself: as directly, KILL QUERY interrupts the KILL (1317) and the
# session goes on; KILL ends it (1927) and the next statement finds the connection gone.
me = clients[3]
seen = []
for q in ["KILL QUERY %d" % me.thread_id(), "SELECT 1", "KILL %d" % me.thread_id(), "SELECT 1"]:
    try:
        cur = me.cursor(); cur.execute(q); seen.append(cur.fetchall())
    except pymysql.err.MySQLError as e:
        seen.append(e.args[0])
if seen[:3] != [1317, ((1,),), 1927] or seen[3] not in (2006, 2013, 0):
    bad.append(("kill self", seen))
print(bad)
"#;
    let (ok, out, err) = python(program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "[]", "{err}");
}

/// read_your_writes with delayed replicas: after a client's write commits, its reads see it
/// (they go to the primary until a replica replayed past the write); with eventual
/// consistency the same loop misses.
#[test]
fn read_your_writes_never_misses_where_eventual_does() {
    let c = MariaCluster::start(2).expect("start MariaDB");
    c.create_database("my_ryw").unwrap();
    c.query_db(0, Some("my_ryw"), "CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
    for n in c.replicas() {
        c.set_master_delay(n, 1).unwrap();
    }
    let program = r#"
import sys, pymysql
port, db, start = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pw", database=db,
    autocommit=True, read_timeout=20)
misses = 0
for i in range(start, start + 60):
    cur = c.cursor()
    cur.execute("INSERT INTO t VALUES (%s)", (i,))
    cur.execute("SELECT count(*) FROM t WHERE id = %s", (i,))
    if cur.fetchone()[0] != 1:
        misses += 1
print(misses)
"#;
    let misses = |consistency: &str, start: u32| {
        let replicas: Vec<String> = c
            .replica_ports()
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let text = format!(
            r#"
[general]
workers = 1
[mysql]
listen = "127.0.0.1:0"
[health]
interval = "100ms"
timeout = "2s"
[[user]]
name = "app"
password = "app_pw"
[[cluster]]
name = "my_ryw"
protocol = "mysql"
database = "my_ryw"
primary = "127.0.0.1:{}"
replicas = [{}]
user = "switchyard"
password = "switchyard_pw"
max_lag = "30s"
consistency = "{consistency}"
"#,
            c.primary_port(),
            replicas.join(", ")
        );
        let server = Server::start(Config::from_toml(&text).unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(800));
        let port = server.my_addr.unwrap().port();
        let (ok, text, err) = run(Command::new("python3").args([
            "-c",
            program,
            &port.to_string(),
            "my_ryw",
            &start.to_string(),
        ]));
        server.shutdown();
        assert!(ok, "{text}{err}");
        text.trim().parse::<u32>().unwrap()
    };
    assert_eq!(
        misses("read_your_writes", 0),
        0,
        "read_your_writes missed a write"
    );
    assert!(
        misses("eventual", 1000) > 0,
        "eventual never missed: the test shows nothing"
    );
}

/// `auth = "cert"` with `[mysql] tls_client_ca_file`: the mariadb CLI with a certificate the
/// authority signed (`--ssl-cert`) logs in as the user its common name names, with no
/// password; without a certificate, without TLS or as another user it gets 1045; a password
/// user still logs in with the certificate presented.
#[test]
fn client_certificates_log_in_users_with_auth_cert() {
    let db = "my_cert";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let pki = support::pki::pki();
    let p = proxy_with(
        db,
        "",
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca_file = \"{}\"",
            pki.server_cert, pki.server_key, pki.ca
        ),
        "\n[[user]]\nname = \"cert_user\"\nauth = \"cert\"\n\n\
         [[user]]\nname = \"other_cert\"\nauth = \"cert\"",
    );
    let port = format!("-P{}", p.port);
    let cert = format!("--ssl-cert={}", pki.client_cert);
    let key = format!("--ssl-key={}", pki.client_key);
    let cli = |user: &str, tls: &[&str]| {
        let mut c = Command::new("mariadb");
        c.args(["--protocol=TCP", "-h127.0.0.1", &port, &format!("-u{user}")])
            .args(tls)
            .args([db, "-N", "-e", "SELECT CONCAT('got ', 40 + 2)"]);
        run(&mut c)
    };
    let (ok, out, err) = cli("cert_user", &["--ssl", &cert, &key]);
    assert!(
        ok && out.contains("got 42"),
        "cert_user with its certificate: {out}{err}"
    );
    for (user, tls) in [
        ("cert_user", vec!["--ssl"]),
        ("cert_user", vec!["--skip-ssl"]),
        ("other_cert", vec!["--ssl", cert.as_str(), key.as_str()]),
    ] {
        let (ok, out, err) = cli(user, &tls);
        assert!(
            !ok && err.contains("1045") && err.contains(user),
            "{user} {tls:?}: {out}{err}"
        );
    }
    let (ok, out, err) = cli("app", &["-papp_pw", "--ssl", &cert, &key]);
    assert!(
        ok && out.contains("got 42"),
        "password user with a certificate: {out}{err}"
    );
}

/// TLS for MySQL clients: the CLI, PyMySQL and mysql-connector-python upgrade with an
/// SSLRequest and verify the proxy's certificate; over TLS a caching_sha2_password client of a
/// user with only a stored mysql_native_password hash gets full authentication (password
/// checked against the hash), a wrong one gets 1045; without TLS the same client is switched
/// to mysql_native_password and still logs in.
#[test]
fn tls_clients_log_in_with_full_caching_sha2_authentication() {
    let db = "my_tls";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = switchyard::net::tls::self_signed(dir.path()).unwrap();
    let hashed = switchyard::mysql::auth::NativePasswordHash::from_password(b"h_pw").to_text();
    let p = proxy_with(
        db,
        "",
        &format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\""),
        &format!("\n[[user]]\nname = \"hashed\"\nmysql_native_hash = \"{hashed}\""),
    );
    // The CLI reports the cipher its library negotiated.
    let (ok, text, err) = run(Command::new("mariadb").args([
        "--protocol=TCP",
        "-h127.0.0.1",
        &format!("-P{}", p.port),
        "-uapp",
        "-papp_pw",
        "--ssl",
        &format!("--ssl-ca={cert}"),
        db,
        "-e",
        "status; SELECT 40 + 2",
    ]));
    assert!(ok, "{text}{err}");
    assert!(text.contains("Cipher in use is"), "{text}");
    assert!(text.contains("42"), "{text}");

    let program = format!(
        r#"
import sys, pymysql, mysql.connector
port, db = int(sys.argv[1]), sys.argv[2]
c = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pw", database=db,
    ssl_ca="{cert}", ssl_verify_cert=True, connect_timeout=10)
cur = c.cursor(); cur.execute("SELECT 1")
print("pymysql", type(c._sock).__name__, cur.fetchall()); c.close()
def connector(tls, password):
    kw = dict(ssl_ca="{cert}", ssl_verify_cert=True) if tls else dict(ssl_disabled=True)
    return mysql.connector.connect(host="127.0.0.1", port=port, user="hashed", password=password,
        database=db, auth_plugin="caching_sha2_password", use_pure=True, connection_timeout=10, **kw)
for tls in (True, False):
    c = connector(tls, "h_pw")
    cur = c.cursor(); cur.execute("SELECT 2")
    print("connector", tls, type(c._socket.sock).__name__, cur.fetchall()); c.close()
    try:
        connector(tls, "wrong")
        print("wrong password accepted")
    except mysql.connector.Error as e:
        print("refused", e.errno)
"#
    );
    let (ok, out, err) = python(&program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out,
        "pymysql SSLSocket ((1,),)\n\
         connector True SSLSocket [(2,)]\n\
         refused 1045\n\
         connector False socket [(2,)]\n\
         refused 1045\n",
        "{err}"
    );
}

/// caching_sha2_password full authentication without TLS by the RSA key exchange (`[mysql]
/// rsa_key_exchange = true`), for a user with only a stored mysql_native_password hash: the
/// mariadb CLI with `--default-auth=caching_sha2_password` (Connector/C, OpenSSL) asks for the
/// proxy's public key and sends its password encrypted; the right password logs in, a wrong
/// one gets 1045 (the same CLI with a plaintext-password user takes the fast path);
/// mysql-connector-python's pure-Python plugin, which answers with the
/// password in clear, is refused with 1045. The key comes from a file `openssl genpkey` wrote;
/// OpenSSL also decrypts what the proxy encrypts as a client of a MySQL 8 backend.
#[test]
fn caching_sha2_full_authentication_by_rsa_key_exchange_without_tls() {
    let db = "my_rsa";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rsa.pem");
    let (ok, out, err) = run(Command::new("openssl").args([
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().unwrap(),
    ]));
    assert!(ok, "{out}{err}");
    let hashed = switchyard::mysql::auth::NativePasswordHash::from_password(b"r_pw").to_text();
    let p = proxy_with(
        db,
        "",
        &format!(
            "rsa_key_exchange = true\nrsa_private_key = \"{}\"",
            key.display()
        ),
        &format!("\n[[user]]\nname = \"hashed\"\nmysql_native_hash = \"{hashed}\""),
    );
    let cli = |user: &str, password: &str| {
        run(Command::new("mariadb").args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{}", p.port),
            &format!("-u{user}"),
            &format!("-p{password}"),
            "--skip-ssl",
            "--default-auth=caching_sha2_password",
            db,
            "-N",
            "-e",
            "SELECT 40 + 2",
        ]))
    };
    // Connector/C answers the handshake with an empty caching_sha2_password response and
    // waits to be switched to it; a user with a plaintext password then takes the fast path.
    for (user, password) in [("hashed", "r_pw"), ("app", "app_pw")] {
        let (ok, out, err) = cli(user, password);
        assert!(ok, "{user}: {out}{err}");
        assert_eq!(out.trim(), "42", "{err}");
        let (ok, out, err) = cli(user, "wrong");
        assert!(!ok, "{out}");
        assert!(err.contains("1045"), "{err}");
        assert!(
            err.contains(&format!("Access denied for user '{user}'")),
            "{err}"
        );
    }

    let program = r#"
import sys, mysql.connector
port, db = int(sys.argv[1]), sys.argv[2]
try:
    mysql.connector.connect(host="127.0.0.1", port=port, user="hashed", password="r_pw",
        database=db, auth_plugin="caching_sha2_password", use_pure=True, ssl_disabled=True,
        connection_timeout=10)
    print("accepted")
except mysql.connector.Error as e:
    print("refused", e.errno)
"#;
    let (ok, out, err) = python(program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(out, "refused 1045\n", "{err}");

    // The other direction, as the proxy logs in to a MySQL 8 backend whose cache is cold:
    // the password it encrypts with a server's public key is what OpenSSL (which MySQL
    // servers decrypt with) reads back.
    let public = dir.path().join("rsa.pub");
    let (ok, out, err) = run(Command::new("openssl").args([
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]));
    assert!(ok, "{out}{err}");
    let scramble: Vec<u8> = (1..=20).collect();
    let sealed = switchyard::mysql::auth::rsa_encrypt_password(
        &std::fs::read(&public).unwrap(),
        &scramble,
        b"backend secret",
    )
    .unwrap();
    let sealed_path = dir.path().join("sealed.bin");
    std::fs::write(&sealed_path, sealed).unwrap();
    let opened = Command::new("openssl")
        .args([
            "pkeyutl",
            "-decrypt",
            "-inkey",
            key.to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-in",
            sealed_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(opened.status.success(), "{opened:?}");
    let clear: Vec<u8> = opened
        .stdout
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ scramble[i % scramble.len()])
        .collect();
    assert_eq!(clear, b"backend secret\0");
}

/// COM_CHANGE_USER as drivers send it (mysql-connector-python's `cmd_change_user`, node
/// mysql2's `changeUser`): the client authenticates as the other user and starts a new
/// session: its transaction rolls back, its settings and temporary table are gone, it is not
/// pinned. A wrong password gets 1045 and an unknown database 1049; as on MariaDB (checked
/// with this driver directly), the connection stays open as the user it was.
#[test]
fn change_user_starts_a_new_session_as_the_other_user() {
    let db = "my_change_user";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let hashed = switchyard::mysql::auth::NativePasswordHash::from_password(b"o_pw").to_text();
    let p = proxy_with(
        db,
        "size = 2",
        "",
        &format!("\n[[user]]\nname = \"other\"\nmysql_native_hash = \"{hashed}\""),
    );
    let program = r#"
import sys, mysql.connector
port, db = int(sys.argv[1]), sys.argv[2]
def connect():
    return mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
        database=db, use_pure=True, connection_timeout=10, autocommit=True)
c = connect()
cur = c.cursor()
cur.execute("SET time_zone = '+05:00'")
cur.execute("CREATE TEMPORARY TABLE tmp (x int)")
cur.execute("START TRANSACTION")
cur.execute("INSERT INTO t VALUES (1)")
c.cmd_change_user(username="other", password="o_pw", database=db)
cur = c.cursor()
cur.execute("SELECT @@time_zone"); print("tz", cur.fetchall())
try:
    cur.execute("SELECT * FROM tmp"); print("tmp", cur.fetchall())
except mysql.connector.Error as e:
    print("tmp error", e.errno)
cur.execute("SELECT count(*) FROM t"); print("rows", cur.fetchall())
cur.execute("INSERT INTO t VALUES (2)")
# On the primary: a replica may not have the row yet.
cur.execute("/* switchyard:primary */ SELECT id FROM t"); print("after", cur.fetchall())
for user, pw, database in (("other", "wrong", db), ("nobody", "x", db), ("other", "o_pw", "no_such_db")):
    c = connect()
    try:
        c.cmd_change_user(username=user, password=pw, database=database)
        print("accepted", user)
    except mysql.connector.Error as e:
        print("refused", e.errno)
    try:
        c.cmd_query("SELECT 1"); print("still open")
    except Exception as e:
        print("closed")
"#;
    let (ok, out, err) = python(program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out,
        "tz [('SYSTEM',)]\n\
         tmp error 1146\n\
         rows [(0,)]\n\
         after [(2,)]\n\
         refused 1045\n\
         still open\n\
         refused 1045\n\
         still open\n\
         refused 1049\n\
         still open\n",
        "{err}"
    );

    let node = format!(
        r#"
const mysql = require('mysql2/promise');
(async () => {{
  const c = await mysql.createConnection({{host: '127.0.0.1', port: {port}, user: 'app',
    password: 'app_pw', database: '{db}', connectTimeout: 10000}});
  await c.query("SET time_zone = '+04:00'");
  await c.changeUser({{user: 'other', password: 'o_pw', database: '{db}'}});
  const [rows] = await c.query('SELECT @@time_zone AS tz');
  const [p] = await c.execute('SELECT id FROM t WHERE id = ?', [2]);
  console.log(rows[0].tz, p.length);
  await c.end();
}})().catch(e => {{ console.log('error', e.message); process.exit(1); }});
"#,
        port = p.port
    );
    let (ok, out, err) = run(Command::new("node").args(["-e", &node]).env(
        "NODE_PATH",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/drivers/node/node_modules"
        ),
    ));
    assert!(ok, "{out}{err}");
    assert_eq!(out, "SYSTEM 1\n");
}

/// In transaction mode a client whose statements go to the same server gets the connection
/// it gave back last while no other client needs it (not merely the one given back last by
/// anyone): two clients that forced the pool to two connections then alternate, and each keeps
/// seeing its own server thread.
#[test]
fn an_idle_client_gets_its_own_connection_back() {
    use mysql_async::prelude::*;
    let db = "my_parking";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let p = proxy(db, "size = 4");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = async_opts(p.port, db);
        let mut a = mysql_async::Conn::new(opts.clone()).await.unwrap();
        let mut b = mysql_async::Conn::new(opts).await.unwrap();
        let thread = "/* switchyard:primary */ SELECT @@pseudo_thread_id";
        // A holds a connection in a transaction while B takes another.
        a.query_drop("BEGIN").await.unwrap();
        let a_thread: u64 = a.query_first(thread).await.unwrap().unwrap();
        let b_thread: u64 = b.query_first(thread).await.unwrap().unwrap();
        assert_ne!(a_thread, b_thread);
        a.query_drop("COMMIT").await.unwrap();
        for round in 0..10 {
            let got_a: u64 = a.query_first(thread).await.unwrap().unwrap();
            let got_b: u64 = b.query_first(thread).await.unwrap().unwrap();
            assert_eq!((got_a, got_b), (a_thread, b_thread), "round {round}");
        }
        a.disconnect().await.unwrap();
        b.disconnect().await.unwrap();
    });
}

/// With reads on the replicas and writes on the primary, an idle client keeps its connection
/// at the primary while it reads elsewhere: alternating the two, it finds its own thread on
/// the primary each time, although the pool has other idle connections there.
#[test]
fn a_client_alternating_reads_and_writes_keeps_its_connection_at_the_primary() {
    use mysql_async::prelude::*;
    let db = "my_parking_split";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let p = proxy(db, "size = 6");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = async_opts(p.port, db);
        let write = "/* switchyard:primary */ SELECT @@server_id, @@pseudo_thread_id";
        // Three connections at the primary, held at once, then idle in the pool.
        let mut warm = Vec::new();
        for _ in 0..3 {
            let mut c = mysql_async::Conn::new(opts.clone()).await.unwrap();
            c.query_drop("BEGIN").await.unwrap();
            warm.push(c);
        }
        for mut c in warm {
            c.query_drop("COMMIT").await.unwrap();
            c.disconnect().await.unwrap();
        }
        let mut clients = [
            mysql_async::Conn::new(opts.clone()).await.unwrap(),
            mysql_async::Conn::new(opts).await.unwrap(),
        ];
        let (primary, _): (u32, u64) = clients[0].query_first(write).await.unwrap().unwrap();
        let read = "SELECT @@server_id, @@pseudo_thread_id";
        let mut threads: [Option<u64>; 2] = [None, None];
        let mut read_elsewhere = 0;
        // A reads, B reads, A writes, B writes.
        let order = [(0, read), (1, read), (0, write), (1, write)];
        for round in 0..12 {
            for (who, sql) in order {
                let (server, thread): (u32, u64) =
                    clients[who].query_first(sql).await.unwrap().unwrap();
                if sql == read {
                    read_elsewhere += usize::from(server != primary);
                    continue;
                }
                assert_eq!(server, primary);
                let first = *threads[who].get_or_insert(thread);
                assert_eq!(
                    thread, first,
                    "round {round}: client {who} got another thread at the primary"
                );
            }
        }
        assert!(
            read_elsewhere >= 20,
            "reads went to the replicas: {read_elsewhere}"
        );
        for c in clients {
            c.disconnect().await.unwrap();
        }
    });
}

/// mariadb-dump and a restore with the mariadb client pointed at the proxy, as an operator
/// backs up and restores through the address applications use: dumps with
/// `--single-transaction` (a consistent-snapshot transaction) and with its default table locks
/// (LOCK TABLES ... READ, which pins) must equal the direct dump, and the dump restored through
/// the proxy (user variables, `LOCK TABLES ... WRITE`, `ALTER TABLE ... DISABLE KEYS`,
/// multi-row INSERTs) must give back tables whose direct dump equals the original's.
#[test]
fn mariadb_dump_and_restore_through_the_proxy_round_trip() {
    let db = "dumpdb";
    setup(
        db,
        "CREATE TABLE dm_parent (id INT PRIMARY KEY, name VARCHAR(50) UNIQUE); \
         CREATE TABLE dm_t (id INT AUTO_INCREMENT PRIMARY KEY, parent INT, \
           v VARCHAR(100), b BLOB, d DECIMAL(10,2), at DATETIME(3), j JSON, \
           KEY (v), FOREIGN KEY (parent) REFERENCES dm_parent (id)) \
           DEFAULT CHARSET=utf8mb4 COMMENT 'dumped through switchyard'; \
         INSERT INTO dm_parent VALUES (1, 'one'), (2, 'two'); \
         INSERT INTO dm_t (parent, v, b, d, at, j) SELECT 1 + seq % 2, \
           CONCAT('row ', seq, '\\t\"q\\'é'), UNHEX(MD5(seq)), seq / 7, \
           '2026-01-01 10:00:00.123', JSON_OBJECT('g', seq) FROM seq_1_to_3000",
    );
    let p = proxy(db, "size = 4");
    let c = cluster();
    let dump = |port: u16, extra: &[&str]| -> String {
        let mut cmd = Command::new("mariadb-dump");
        cmd.args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uapp",
            "-papp_pw",
            "--skip-ssl",
            "--skip-dump-date",
        ])
        .args(extra)
        .args([db, "dm_parent", "dm_t"]);
        let (ok, out, err) = run(&mut cmd);
        assert!(ok, "mariadb-dump on port {port}: {err}");
        // The version in the header is the one each greeting gave.
        out.lines()
            .filter(|l| !l.starts_with("-- Server version"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let original = dump(c.primary_port(), &["--single-transaction"]);
    assert!(original.contains("INSERT INTO `dm_t` VALUES") && original.contains("row 3000"));
    let via = dump(p.port, &["--single-transaction"]);
    assert!(
        via == original,
        "the dump through the proxy differs from the direct one"
    );
    let locked = dump(p.port, &[]);
    assert!(
        locked == dump(c.primary_port(), &[]),
        "the dump with table locks through the proxy differs from the direct one"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dump.sql");
    std::fs::write(&file, &via).unwrap();
    c.query_db(0, Some(db), "DROP TABLE dm_t, dm_parent")
        .unwrap();
    let (ok, _, err) = cli(p.port, db, &format!("source {}", file.display()));
    assert!(ok, "the restore through the proxy failed: {err}");
    assert!(
        dump(c.primary_port(), &["--single-transaction"]) == original,
        "the tables restored through the proxy differ from the original"
    );
}

/// The servers named by their Unix-domain sockets instead of host:port: the health checker
/// finds them, autocommit reads spread over the replicas, writes and locking reads reach the
/// primary, and KILL QUERY reaches the replica running the statement.
#[test]
fn servers_named_by_their_unix_sockets_split_reads_take_writes_and_kill() {
    let db = "my_unix";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let c = cluster();
    let socket = |n: usize| c.socket_path(n).display().to_string();
    let tcp = config_text(db, "", "", "");
    let replicas: Vec<String> = c
        .replicas()
        .iter()
        .map(|&n| format!("\"{}\"", socket(n)))
        .collect();
    let replicas_line = tcp
        .lines()
        .find(|l| l.starts_with("replicas = "))
        .unwrap()
        .to_owned();
    let text = tcp
        .replace(
            &format!("primary = \"127.0.0.1:{}\"", c.primary_port()),
            &format!("primary = \"{}\"", socket(0)),
        )
        .replace(
            &replicas_line,
            &format!("replicas = [{}]", replicas.join(", ")),
        );
    assert!(
        text.contains(&format!("primary = \"{}\"", socket(0))),
        "{text}"
    );
    let p = started(Server::start(Config::from_toml(&text).unwrap()).expect("proxy starts"));

    let primary_id = c.value(0, "SELECT @@server_id").unwrap();
    let mut seen = std::collections::HashMap::new();
    for _ in 0..20 {
        let (ok, out, err) = cli(p.port, db, "SELECT @@server_id");
        assert!(ok, "{err}");
        *seen.entry(out.trim().to_string()).or_insert(0) += 1;
    }
    assert!(
        !seen.contains_key(&primary_id),
        "reads reached the primary: {seen:?}"
    );
    for &n in &c.replicas() {
        let id = c.value(n, "SELECT @@server_id").unwrap();
        assert!(
            seen.get(&id).copied().unwrap_or(0) >= 3,
            "replica {id}: {seen:?}"
        );
    }
    let (ok, _, err) = cli(p.port, db, "INSERT INTO t VALUES (1)");
    assert!(ok, "{err}");
    let (ok, out, err) = cli(p.port, db, "SELECT @@server_id FROM t FOR UPDATE");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), primary_id);

    let program = kill_query_program(TCP_CONNECT, "");
    let (ok, out, err) = python(&program, p.port, db);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("True"), "{out}{err}");
}

/// With `[mysql] socket`, clients reach the proxy as they reach a local MariaDB: the mariadb
/// CLI with `--socket`, PyMySQL with `unix_socket`, the same logins, prepared statements and
/// KILL QUERY; the file goes at shutdown.
#[test]
fn clients_reach_the_proxy_over_its_unix_socket() {
    let db = "my_unixsock";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("switchyard.sock");
    let s = sock.display().to_string();
    let p = proxy_with(db, "", &format!("socket = \"{s}\""), "");
    let cli_sock = |password: &str, sql: &str| {
        run(Command::new("mariadb").args([
            &format!("--socket={s}"),
            "-uapp",
            &format!("-p{password}"),
            "-N",
            "-B",
            db,
            "-e",
            sql,
        ]))
    };
    let (ok, out, err) = cli_sock("app_pw", "INSERT INTO t VALUES (1); SELECT count(*) FROM t");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1");
    let (ok, _, err) = cli_sock("wrong", "SELECT 1");
    assert!(!ok, "a wrong password logged in");
    assert!(err.contains("1045") && err.contains("'app'"), "{err}");

    let program = kill_query_program(
        r#"pymysql.connect(unix_socket=arg, user="app", password="app_pw", database=db, read_timeout=40)"#,
        r#"c = victim.cursor(); c.execute("SELECT id + %s FROM t WHERE id = %s", (41, 1)); assert c.fetchall() == ((42,),)"#,
    );
    let (ok, out, err) = run(Command::new("python3").args(["-c", &program, &s, db]));
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("True"), "{out}{err}");
    drop(p);
    assert!(!sock.exists(), "the socket file outlived the proxy");
}

/// PAUSE/RESUME for a MySQL cluster: the transaction running at the pause finishes, a new
/// client's statement waits and runs after the resume, one that waits past `pause_timeout`
/// gets an error (1040) and the connection goes on.
#[test]
fn pause_lets_running_transactions_finish_and_holds_new_ones_until_resume() {
    use mysql_async::prelude::*;
    let db = "my_pause";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let text = config_text(db, "pause_timeout = \"2s\"", "", "")
        .replace("[pool]\n", "[admin]\nlisten = \"127.0.0.1:0\"\n\n[pool]\n");
    let server = Server::start(Config::from_toml(&text).unwrap()).expect("proxy starts");
    let admin = server.admin_addr.unwrap();
    let p = started(server);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let post = |path: &'static str| {
            tokio::task::spawn_blocking(move || support::admin_request(admin, "POST", path))
        };
        let mut a = mysql_async::Conn::new(async_opts(p.port, db))
            .await
            .unwrap();
        a.query_drop("START TRANSACTION").await.unwrap();
        a.query_drop("INSERT INTO t VALUES (1)").await.unwrap();

        let (code, body) = post("/pause?cluster=my_pause&wait=0.5").await.unwrap();
        assert_eq!(code, 202, "{body}");
        assert!(body.contains("\"held\":1"), "{body}");

        // (mysql_async's connect runs a query of its own: that is what waits first.)
        let port = p.port;
        let waiting = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut b = mysql_async::Conn::new(async_opts(port, db)).await.unwrap();
            let v: Option<i64> = b.query_first("SELECT 41 + 1").await.unwrap();
            (v, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiting.is_finished(),
            "a statement ran on a paused cluster"
        );

        a.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
        a.query_drop("COMMIT").await.unwrap();
        let (code, body) = post("/pause?cluster=my_pause&wait=5").await.unwrap();
        assert_eq!(code, 200, "{body}");
        assert!(
            !waiting.is_finished(),
            "a statement ran on a paused cluster"
        );

        let (code, _) = post("/resume").await.unwrap();
        assert_eq!(code, 200);
        let (v, waited) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the held statement did not run after the resume")
            .unwrap();
        assert_eq!(v, Some(42));
        assert!(waited >= Duration::from_millis(500), "{waited:?}");

        // Past pause_timeout: an error, and the connection still serves after the resume.
        let mut c = mysql_async::Conn::new(async_opts(p.port, db))
            .await
            .unwrap();
        post("/pause?wait=0").await.unwrap();
        let started = std::time::Instant::now();
        let err = c.query_drop("SELECT count(*) FROM t").await.unwrap_err();
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        match err {
            mysql_async::Error::Server(e) => {
                assert_eq!(e.code, 1040, "{e:?}");
                assert!(e.message.contains("paused"), "{e:?}");
            }
            e => panic!("{e:?}"),
        }
        post("/resume").await.unwrap();
        let n: Option<i64> = c.query_first("SELECT count(*) FROM t").await.unwrap();
        assert_eq!(n, Some(2));
    });
}

/// The proxy's connections on every server now (`information_schema.processlist`), the
/// health checker's included.
fn proxy_connections(c: &MariaCluster) -> usize {
    (0..=c.replicas().len())
        .map(|n| {
            c.value(
                n,
                "SELECT count(*) FROM information_schema.processlist WHERE user = 'switchyard'",
            )
            .unwrap()
            .parse::<usize>()
            .unwrap()
        })
        .sum()
}

/// `server_idle_timeout` for MySQL: after a burst the pools shrink back (pooled and parked
/// connections alike), and clients go on on new connections. `server_lifetime`: a connection
/// past it is not handed out again (its client's next statement runs on another server
/// thread).
#[test]
fn idle_server_connections_close_and_old_ones_are_replaced() {
    use mysql_async::prelude::*;
    let db = "my_idle";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let c = cluster();
    // (Limits are measured on a clock the sweeper advances once a second: a second or more.)
    let p = proxy(db, "server_idle_timeout = \"2s\"\nserver_lifetime = \"3s\"");
    let baseline = proxy_connections(c);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..6 {
            conns.push(
                mysql_async::Conn::new(async_opts(p.port, db))
                    .await
                    .unwrap(),
            );
        }
        let work = conns.iter_mut().enumerate().map(|(i, conn)| async move {
            conn.query_drop("SELECT SLEEP(0.3)").await.unwrap();
            conn.exec_drop("INSERT INTO t VALUES (?)", (i,))
                .await
                .unwrap();
        });
        futures_util::future::join_all(work).await;
        let opened = proxy_connections(c);
        assert!(
            opened >= baseline + 4,
            "burst: {opened}, baseline {baseline}"
        );
        let quiet = std::time::Instant::now();
        while proxy_connections(c) > baseline {
            assert!(
                quiet.elapsed() < Duration::from_secs(10),
                "idle server connections stay open: {} (baseline {baseline})",
                proxy_connections(c)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            quiet.elapsed() >= Duration::from_millis(700),
            "{:?}",
            quiet.elapsed()
        );
        // Closed with COM_QUIT: the servers log no aborted connection of this proxy's pools
        // (the other tests' proxies share these servers: only this database is looked at).
        for n in 0..=c.replicas().len() {
            let log = std::fs::read_to_string(c.log_path(n)).unwrap_or_default();
            let aborted: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("Aborted connection") && l.contains("db: 'my_idle'"))
                .collect();
            assert!(aborted.is_empty(), "node {n}: {aborted:?}");
        }
        let n: Option<i64> = conns[0]
            .query_first("SELECT count(*) FROM t")
            .await
            .unwrap();
        assert_eq!(n, Some(6));

        // Lifetime: a busy client (never idle a second) still moves to a new server thread
        // once its connection is three seconds old.
        let started = std::time::Instant::now();
        let first = server_thread(&mut conns[1]).await;
        let mut moved = false;
        while started.elapsed() < Duration::from_secs(8) {
            if server_thread(&mut conns[1]).await != first {
                moved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(moved, "the connection outlived server_lifetime");
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    });
}

/// The server thread that runs `conn`'s next statement on the primary (the proxy answers
/// CONNECTION_ID() with the client's own id; `@@pseudo_thread_id` is the server's).
async fn server_thread(conn: &mut mysql_async::Conn) -> u64 {
    use mysql_async::prelude::*;
    conn.query_first("/* switchyard:primary */ SELECT @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap()
}

/// `idle_transaction_timeout`: a client idle inside a transaction is disconnected (ERR 4031)
/// and its transaction rolled back, its row lock released; a client idle outside one, and one
/// waiting for a slow statement inside one, are not.
#[test]
fn a_client_idle_in_a_transaction_is_disconnected_after_the_timeout() {
    use mysql_async::prelude::*;
    let db = "my_idle_tx";
    setup(
        db,
        "CREATE TABLE t (id int PRIMARY KEY, x int); INSERT INTO t VALUES (1, 1)",
    );
    let p = proxy(db, "idle_transaction_timeout = \"1s\"");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut idle = mysql_async::Conn::new(async_opts(p.port, db))
            .await
            .unwrap();
        let mut busy = mysql_async::Conn::new(async_opts(p.port, db))
            .await
            .unwrap();
        let mut outside = mysql_async::Conn::new(async_opts(p.port, db))
            .await
            .unwrap();
        idle.query_drop("START TRANSACTION").await.unwrap();
        idle.query_drop("UPDATE t SET x = 2 WHERE id = 1")
            .await
            .unwrap();
        idle.query_drop("INSERT INTO t VALUES (10, 10)")
            .await
            .unwrap();
        busy.query_drop("START TRANSACTION").await.unwrap();
        // Longer than the timeout, but the wait is for the server.
        busy.query_drop("SELECT SLEEP(1.6)").await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let e = idle
            .query_drop("COMMIT")
            .await
            .expect_err("a client idle in its transaction for 2 s committed");
        let e = e.to_string();
        assert!(
            e.contains("4031") && e.contains("idle_transaction_timeout"),
            "{e}"
        );
        // Rolled back: the row lock is gone and nothing committed.
        outside
            .query_drop("SET SESSION innodb_lock_wait_timeout = 2")
            .await
            .unwrap();
        outside
            .query_drop("UPDATE t SET x = 1 WHERE id = 1")
            .await
            .unwrap();
        let n: i64 = outside
            .query_first("/* switchyard:primary */ SELECT COUNT(*) FROM t WHERE x IN (2, 10)")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        busy.query_drop("COMMIT").await.unwrap();
        outside.query_drop("SELECT 1").await.unwrap();
    });
}

/// `[mysql] require_tls`: a login over TCP without TLS gets 3159 (MySQL's answer under
/// require_secure_transport); over TLS and over the Unix socket clients are served.
#[test]
fn require_tls_refuses_plain_logins_over_tcp_only() {
    let db = "my_tls_req";
    setup(db, "SELECT 1");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = switchyard::net::tls::self_signed(dir.path()).unwrap();
    let sock = dir.path().join("switchyard.sock").display().to_string();
    let p = proxy_with(
        db,
        "",
        &format!(
            "tls_cert = \"{cert}\"\ntls_key = \"{key}\"\nrequire_tls = true\nsocket = \"{sock}\""
        ),
        "",
    );
    let cli = |args: &[&str]| {
        let mut c = Command::new("mariadb");
        c.args(args)
            .args(["-uapp", "-papp_pw", "-N", "-B", db, "-e", "SELECT 40 + 2"]);
        run(&mut c)
    };
    let port = format!("-P{}", p.port);
    let (ok, _, err) = cli(&["--protocol=TCP", "-h127.0.0.1", &port, "--skip-ssl"]);
    assert!(!ok, "a plain login was served");
    assert!(
        err.contains("3159") && err.contains("insecure transport"),
        "{err}"
    );
    let ca = format!("--ssl-ca={cert}");
    let (ok, out, err) = cli(&["--protocol=TCP", "-h127.0.0.1", &port, "--ssl", &ca]);
    assert!(ok && out.trim() == "42", "{err}");
    let (ok, out, err) = cli(&[&format!("--socket={sock}")]);
    assert!(ok && out.trim() == "42", "{err}");
}

/// `client_idle_timeout`: a client idle outside a transaction is disconnected (ERR 4031 sent
/// unasked, as a MySQL 8 server past wait_timeout, then the close); one that keeps talking,
/// and one idle inside a transaction (the other setting's business, off here), are not.
#[test]
fn a_client_idle_outside_a_transaction_is_disconnected_after_the_timeout() {
    use mysql_async::prelude::*;
    let db = "my_idle_client";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let text = config_text(db, "", "", "").replace(
        "[general]\nworkers = 1\n",
        "[general]\nworkers = 1\nclient_idle_timeout = \"1s\"\n",
    );
    assert!(text.contains("client_idle_timeout"));
    let p = started(Server::start(Config::from_toml(&text).unwrap()).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut idle = mysql_async::Conn::new(async_opts(p.port, db))
            .await
            .unwrap();
        let mut talking = mysql_async::Conn::new(async_opts(p.port, db))
            .await
            .unwrap();
        let mut in_tx = mysql_async::Conn::new(async_opts(p.port, db))
            .await
            .unwrap();
        idle.query_drop("SELECT 1").await.unwrap();
        in_tx.query_drop("START TRANSACTION").await.unwrap();
        in_tx.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
        for _ in 0..5 {
            talking.query_drop("SELECT 1").await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        idle.query_drop("SELECT 1")
            .await
            .expect_err("a client idle for 2 s was served");
        in_tx.query_drop("COMMIT").await.unwrap();
        let n: i64 = talking
            .query_first("/* switchyard:primary */ SELECT COUNT(*) FROM t")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
    });
}

/// mysql_async's options for `user` through the proxy on `port` (or a server's).
fn user_opts(port: u16, db: &str, user: &str, password: &str) -> mysql_async::OptsBuilder {
    async_opts(port, db).user(Some(user)).pass(Some(password))
}

/// The server's error code of a failed statement.
fn server_code(r: Result<impl std::fmt::Debug, mysql_async::Error>) -> u16 {
    match r {
        Err(mysql_async::Error::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// With `server_login = "client"` the servers see each client's own user (ProxySQL's and
/// PgBouncer's habit): grants apply per user on the primary and the replicas, a connection
/// logged in as one user never serves another however the clients interleave, a user the
/// server refuses gets its error while the servers stay up, and KILL QUERY works between
/// clients of one user (logging in as that user, who may kill its own threads) but not
/// across users (ERR 1095, as a server says).
#[test]
fn servers_see_each_clients_own_user() {
    use mysql_async::prelude::*;
    let db = "my_own_user";
    setup(
        db,
        "CREATE TABLE alice_only (v int); INSERT INTO alice_only VALUES (7); \
         CREATE TABLE ledger (who varchar(80), n int)",
    );
    let c = cluster();
    let mut grants = String::new();
    for (u, pw) in [
        ("ou_alice", "alice-to-server"),
        ("ou_bob", "bob-pw"),
        ("ou_carol", "carol-to-server"),
        ("ou_dave", "dave-pw"),
    ] {
        grants += &format!(
            "DROP USER IF EXISTS '{u}'@'%'; CREATE USER '{u}'@'%' IDENTIFIED BY '{pw}'; \
             GRANT SELECT, INSERT ON {db}.ledger TO '{u}'@'%';"
        );
    }
    grants += &format!("GRANT SELECT ON {db}.alice_only TO 'ou_alice'@'%';");
    c.query(0, &grants).unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
    // dave: only the hash the server keeps, copied from mysql.user; the proxy logs in as
    // him with what his own login proves.
    let dave_hash = c
        .value(
            0,
            "SELECT authentication_string FROM mysql.user WHERE user = 'ou_dave'",
        )
        .unwrap();
    let users = format!(
        "{}\n[[user]]\nname = \"ou_dave\"\nmysql_native_hash = \"{dave_hash}\"\n",
        r#"
[[user]]
name = "ou_alice"
password = "alice-to-proxy"
server_password = "alice-to-server"

[[user]]
name = "ou_bob"
password = "bob-pw"

[[user]]
name = "ou_carol"
password = "carol-to-proxy"
server_password = "wrong"
"#
    );
    let text = config_text(db, "size = 2", "", &users) + "server_login = \"client\"\n";
    let p = started(Server::start(Config::from_toml(&text).unwrap()).unwrap());
    let transitions = || -> Vec<u64> {
        let clusters = p.server.as_ref().unwrap().shared.clusters.load_full();
        let st = &clusters[db];
        st.backends
            .iter()
            .map(|b| b.transitions.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    };
    let primary_id = c.value(0, "SELECT @@server_id").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let port = p.port;
        let alice = || mysql_async::Conn::new(user_opts(port, db, "ou_alice", "alice-to-proxy"));
        let bob = || mysql_async::Conn::new(user_opts(port, db, "ou_bob", "bob-pw"));
        // What the server says to bob directly, to compare with.
        let mut bob_direct =
            mysql_async::Conn::new(user_opts(c.primary_port(), db, "ou_bob", "bob-pw"))
                .await
                .unwrap();
        let denied = server_code(bob_direct.query_drop("SELECT v FROM alice_only").await);
        bob_direct.disconnect().await.unwrap();

        let mut a = alice().await.unwrap();
        let mut b = bob().await.unwrap();
        for (conn, who) in [(&mut a, "ou_alice@%"), (&mut b, "ou_bob@%")] {
            let (user, id): (String, String) = conn
                .query_first("SELECT CURRENT_USER(), @@server_id")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(user, who);
            assert_ne!(id, primary_id, "an autocommit read goes to a replica");
            conn.query_drop("START TRANSACTION").await.unwrap();
            let (user, id): (String, String) = conn
                .query_first("SELECT CURRENT_USER(), @@server_id")
                .await
                .unwrap()
                .unwrap();
            assert_eq!((user.as_str(), id), (who, primary_id.clone()));
            conn.query_drop("COMMIT").await.unwrap();
            let user: String = conn
                .exec_first("SELECT CURRENT_USER()", ())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(user, who, "a prepared statement");
        }
        let v: i32 = a
            .query_first("SELECT v FROM alice_only")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, 7);
        assert_eq!(
            server_code(b.query_drop("SELECT v FROM alice_only").await),
            denied
        );

        // Many clients of both users interleaving on a pool of two per server.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (user, pw) = if i % 2 == 0 {
                ("ou_alice", "alice-to-proxy")
            } else {
                ("ou_bob", "bob-pw")
            };
            let opts = user_opts(port, db, user, pw);
            tasks.push(tokio::spawn(async move {
                let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                for n in 0..24 {
                    let got: String = match n % 3 {
                        0 => conn.query_first("SELECT CURRENT_USER()").await,
                        1 => conn.exec_first("SELECT CURRENT_USER()", ()).await,
                        _ => {
                            conn.query_drop("START TRANSACTION").await.unwrap();
                            let sql = "INSERT INTO ledger VALUES (CURRENT_USER(), ?)";
                            conn.exec_drop(sql, (n,)).await.unwrap();
                            let who = conn.query_first("SELECT CURRENT_USER()").await;
                            conn.query_drop("COMMIT").await.unwrap();
                            who
                        }
                    }
                    .unwrap()
                    .unwrap();
                    assert_eq!(got, format!("{user}@%"), "client {i} at step {n}");
                }
                conn.disconnect().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let counts = c
            .query_db(
                0,
                Some(db),
                "SELECT who, count(*) FROM ledger GROUP BY who ORDER BY who",
            )
            .unwrap();
        assert_eq!(
            counts,
            [
                vec!["ou_alice@%".to_string(), "64".into()],
                vec!["ou_bob@%".into(), "64".into()]
            ]
        );

        // carol's server password is wrong: the server's error, nobody else hurt.
        let before = transitions();
        // (mysql_async's connect already runs a statement.)
        let carol = mysql_async::Conn::new(user_opts(port, db, "ou_carol", "carol-to-proxy")).await;
        assert_eq!(server_code(carol), 1045);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            transitions(),
            before,
            "a refused login marked a server down"
        );
        let user: String = a
            .query_first("SELECT CURRENT_USER()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user, "ou_alice@%");

        // dave, by the hash alone: on a replica, on the primary, prepared; and KILL QUERY
        // between two of his clients, which logs in to the server as him too.
        let mut dave = mysql_async::Conn::new(user_opts(port, db, "ou_dave", "dave-pw"))
            .await
            .unwrap();
        let (user, id): (String, String) = dave
            .query_first("SELECT CURRENT_USER(), @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user, "ou_dave@%");
        assert_ne!(id, primary_id);
        dave.query_drop("START TRANSACTION").await.unwrap();
        dave.exec_drop("INSERT INTO ledger VALUES (CURRENT_USER(), ?)", (1,))
            .await
            .unwrap();
        dave.query_drop("COMMIT").await.unwrap();
        let user: String = dave
            .exec_first("SELECT CURRENT_USER()", ())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user, "ou_dave@%");

        // COM_CHANGE_USER moves the client to the other user's pools, and back: its
        // statements then run as that user (mysql_async re-prepares as drivers do).
        for (user, pw) in [
            ("ou_bob", "bob-pw"),
            ("ou_dave", "dave-pw"),
            ("ou_bob", "bob-pw"),
        ] {
            let opts = mysql_async::ChangeUserOpts::new()
                .with_user(Some(user.into()))
                .with_pass(Some(pw.into()))
                .with_db_name(Some(db.into()));
            dave.change_user(opts).await.unwrap();
            let who: String = dave
                .query_first("SELECT CURRENT_USER()")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(who, format!("{user}@%"));
            dave.query_drop("START TRANSACTION").await.unwrap();
            let who: String = dave
                .exec_first("SELECT CURRENT_USER()", ())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(who, format!("{user}@%"), "in a transaction, prepared");
            dave.query_drop("COMMIT").await.unwrap();
        }

        // SQLAlchemy's pools over PyMySQL, as applications use them (its ROLLBACK on every
        // return to the pool), for alice and for dave, whose server logins pass his
        // mysql_native_password proof on, from threads at once.
        let program = r#"
import sys, threading, sqlalchemy
port, db = sys.argv[1], sys.argv[2]
bad = []
def work(user, pw):
    engine = sqlalchemy.create_engine(
        f"mysql+pymysql://{user}:{pw}@127.0.0.1:{port}/{db}", pool_size=2, max_overflow=0)
    for i in range(15):
        with engine.connect() as c:
            who = c.execute(sqlalchemy.text("SELECT CURRENT_USER()")).scalar()
            if who != user + "@%": bad.append((user, who))
        with engine.begin() as c:
            c.execute(sqlalchemy.text("INSERT INTO ledger VALUES (CURRENT_USER(), :n)"), {"n": i})
    engine.dispose()
threads = [threading.Thread(target=work, args=u) for u in
           [("ou_alice", "alice-to-proxy"), ("ou_dave", "dave-pw")] * 3]
for t in threads: t.start()
for t in threads: t.join()
print("sqlalchemy", "ok" if not bad else bad)
"#;
        let (ok, out, err) = python(program, port, db);
        assert!(ok && out.contains("sqlalchemy ok"), "{out}{err}");

        // KILL QUERY: not across users; between two clients of alice, yes.
        let mut victim = alice().await.unwrap();
        let id: u32 = victim
            .query_first("SELECT CONNECTION_ID()")
            .await
            .unwrap()
            .unwrap();
        let sleeper = tokio::spawn(async move {
            let t0 = std::time::Instant::now();
            let r: Result<Option<i64>, _> = victim.query_first("SELECT SLEEP(30)").await;
            (t0.elapsed(), r.map_err(|e| e.to_string()))
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            server_code(b.query_drop(format!("KILL QUERY {id}")).await),
            1095
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !sleeper.is_finished(),
            "bob's KILL stopped alice's statement"
        );
        a.query_drop(format!("KILL QUERY {id}")).await.unwrap();
        let (took, r) = sleeper.await.unwrap();
        assert!(took < Duration::from_secs(5), "not killed: {took:?} {r:?}");
    });
}

/// `max_server_connections` on a MariaDB cluster: clients of two users alternating on one
/// place at the primary each get it in turn (an idle connection of the other user is closed
/// to make room), and the server never has more than one of theirs.
#[test]
fn server_connection_limit_holds_for_mariadb_users() {
    use mysql_async::prelude::*;
    let db = "my_cap";
    setup(db, "CREATE TABLE t (who varchar(80), n int)");
    let c = cluster();
    let mut sql = String::new();
    for u in ["cap_ann", "cap_ben"] {
        sql += &format!(
            "DROP USER IF EXISTS '{u}'@'%'; CREATE USER '{u}'@'%' IDENTIFIED BY 'pw'; \
             GRANT SELECT, INSERT ON {db}.t TO '{u}'@'%';"
        );
    }
    c.query(0, &sql).unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
    let users = "[[user]]\nname = \"cap_ann\"\npassword = \"pw\"\n\n\
                 [[user]]\nname = \"cap_ben\"\npassword = \"pw\"\n";
    let text = config_text(db, "size = 4", "", users)
        + "server_login = \"client\"\nmax_server_connections = 1\nread_write_split = false\n";
    let p = started(Server::start(Config::from_toml(&text).unwrap()).unwrap());
    let theirs = || -> usize {
        let rows = c
            .query(
                0,
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE USER IN ('cap_ann', 'cap_ben')",
            )
            .unwrap();
        rows[0][0].parse().unwrap()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let most = rt.block_on(async {
        let mut ann = mysql_async::Conn::new(user_opts(p.port, db, "cap_ann", "pw"))
            .await
            .unwrap();
        let mut ben = mysql_async::Conn::new(user_opts(p.port, db, "cap_ben", "pw"))
            .await
            .unwrap();
        let mut most = 0;
        for n in 0..10 {
            for (conn, who) in [(&mut ann, "cap_ann@%"), (&mut ben, "cap_ben@%")] {
                conn.query_drop("START TRANSACTION").await.unwrap();
                conn.exec_drop("INSERT INTO t VALUES (CURRENT_USER(), ?)", (n,))
                    .await
                    .unwrap();
                let got: String = conn
                    .query_first("SELECT CURRENT_USER()")
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, who);
                conn.query_drop("COMMIT").await.unwrap();
                most = most.max(theirs());
            }
        }
        most
    });
    assert_eq!(most, 1, "server connections of the two users at once");
    let rows = c
        .query_db(
            0,
            Some(db),
            "SELECT who, COUNT(*) FROM t GROUP BY who ORDER BY who",
        )
        .unwrap();
    assert_eq!(
        rows,
        [
            vec!["cap_ann@%".to_string(), "10".into()],
            vec!["cap_ben@%".into(), "10".into()]
        ]
    );
}

/// Users the config does not name log in with the mysql_native_password hash the servers keep
/// (`auth_query`; MaxScale reads its users from the servers the same way), run as a user of its
/// own that may read mysql.user: seen by the servers as themselves (their proof passed on),
/// through mysql_async, COM_CHANGE_USER and SQLAlchemy's pools over PyMySQL. Unknown users,
/// users without a password and wrong passwords get 1045; a changed password counts from the
/// next login; while the lookup user cannot log in, users already seen go on and others are
/// told why.
#[test]
fn users_the_servers_know_log_in_through_auth_query() {
    use mysql_async::prelude::*;
    let db = "my_auth_query";
    setup(db, "CREATE TABLE notes (who varchar(80), n int)");
    let c = cluster();
    let mut grants = String::new();
    for (u, pw) in [
        ("aq_alice", "alice-pw"),
        ("aq_bob", "bob-pw"),
        ("aq_dave", "dave-pw"),
        ("aq_nopw", ""),
    ] {
        grants += &format!(
            "DROP USER IF EXISTS '{u}'@'%'; CREATE USER '{u}'@'%' IDENTIFIED BY '{pw}'; \
             GRANT SELECT, INSERT ON {db}.notes TO '{u}'@'%';"
        );
    }
    grants += "DROP USER IF EXISTS 'aq_lookup'@'%'; \
               CREATE USER 'aq_lookup'@'%' IDENTIFIED BY 'lookup-pw'; \
               GRANT SELECT ON mysql.user TO 'aq_lookup'@'%'; \
               DROP USER IF EXISTS 'aq_carol'@'%';";
    c.query(0, &grants).unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
    let config = |lookup_pw: &str| {
        config_text(db, "size = 2", "", "")
            + &format!(
                "server_login = \"client\"\n\
                 auth_query = \"SELECT authentication_string FROM mysql.user WHERE User = $1 AND Host = '%'\"\n\
                 auth_user = \"aq_lookup\"\nauth_password = \"{lookup_pw}\"\n"
            )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config("lookup-pw")).unwrap();
    let p = started(Server::start_file(&path).expect("proxy starts"));
    let shared = p.server.as_ref().unwrap().shared.clone();
    let primary_id = c.value(0, "SELECT @@server_id").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let port = p.port;
        let login = |user: &str, pw: &str| mysql_async::Conn::new(user_opts(port, db, user, pw));
        for (user, pw) in [("aq_alice", "alice-pw"), ("aq_bob", "bob-pw")] {
            let mut conn = login(user, pw).await.unwrap();
            let (who, id): (String, String) = conn
                .query_first("SELECT CURRENT_USER(), @@server_id")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(who, format!("{user}@%"));
            assert_ne!(id, primary_id, "an autocommit read goes to a replica");
            conn.query_drop("START TRANSACTION").await.unwrap();
            conn.exec_drop("INSERT INTO notes VALUES (CURRENT_USER(), ?)", (1,))
                .await
                .unwrap();
            let (who, id): (String, String) = conn
                .exec_first("SELECT CURRENT_USER(), CAST(@@server_id AS CHAR)", ())
                .await
                .unwrap()
                .unwrap();
            assert_eq!((who, id), (format!("{user}@%"), primary_id.clone()));
            conn.query_drop("COMMIT").await.unwrap();
            conn.disconnect().await.unwrap();
        }
        // Refused as a server refuses: 1045, whatever the reason.
        for (user, pw, why) in [
            ("aq_alice", "not-alices", "a wrong password"),
            ("aq_nobody", "x", "an unknown user"),
            ("aq_nopw", "x", "a user without a password"),
        ] {
            let e = login(user, pw).await.expect_err(why);
            assert_eq!(server_code(Err::<(), _>(e)), 1045, "{why}");
        }
        // COM_CHANGE_USER from alice to dave (first seen here), to bob and back.
        let mut conn = login("aq_alice", "alice-pw").await.unwrap();
        for (user, pw) in [
            ("aq_dave", "dave-pw"),
            ("aq_bob", "bob-pw"),
            ("aq_alice", "alice-pw"),
        ] {
            let opts = mysql_async::ChangeUserOpts::new()
                .with_user(Some(user.into()))
                .with_pass(Some(pw.into()))
                .with_db_name(Some(db.into()));
            conn.change_user(opts).await.unwrap();
            let who: String = conn
                .exec_first("SELECT CURRENT_USER()", ())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(who, format!("{user}@%"));
        }

        // SQLAlchemy's pools over PyMySQL from threads, for both users.
        let program = r#"
import sys, threading, sqlalchemy
port, db = sys.argv[1], sys.argv[2]
bad = []
def work(user, pw):
    engine = sqlalchemy.create_engine(
        f"mysql+pymysql://{user}:{pw}@127.0.0.1:{port}/{db}", pool_size=2, max_overflow=0)
    for i in range(10):
        with engine.connect() as c:
            who = c.execute(sqlalchemy.text("SELECT CURRENT_USER()")).scalar()
            if who != user + "@%": bad.append((user, who))
    engine.dispose()
threads = [threading.Thread(target=work, args=u) for u in
           [("aq_alice", "alice-pw"), ("aq_bob", "bob-pw")] * 3]
for t in threads: t.start()
for t in threads: t.join()
print("sqlalchemy", "ok" if not bad else bad)
"#;
        let (ok, out, err) = python(program, port, db);
        assert!(ok && out.contains("sqlalchemy ok"), "{out}{err}");

        // A changed password: the old one fails, the new one logs in, and the servers take
        // the new proof.
        c.query(0, "ALTER USER 'aq_alice'@'%' IDENTIFIED BY 'alice-new'")
            .unwrap();
        c.wait_caught_up(Duration::from_secs(30)).unwrap();
        tokio::time::sleep(switchyard::pool::LOOKED_UP_FRESH).await;
        let e = login("aq_alice", "alice-pw")
            .await
            .expect_err("old password");
        assert_eq!(server_code(Err::<(), _>(e)), 1045);
        let mut alice = login("aq_alice", "alice-new").await.unwrap();
        for sql in [
            "SELECT CURRENT_USER()",
            "SELECT CURRENT_USER() FROM notes LIMIT 1",
        ] {
            let who: String = alice.query_first(sql).await.unwrap().unwrap();
            assert_eq!(who, "aq_alice@%");
        }

        // The lookup user's password wrong after a reload: bob, seen before, logs in; carol,
        // created since, is told why not; mended, she logs in.
        std::fs::write(&path, config("wrong")).unwrap();
        switchyard::reload::reload(&shared).unwrap();
        tokio::time::sleep(switchyard::pool::LOOKED_UP_FRESH).await;
        let mut bob = login("aq_bob", "bob-pw").await.unwrap();
        let who: String = bob
            .query_first("SELECT CURRENT_USER()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(who, "aq_bob@%");
        let carol = format!(
            "CREATE USER 'aq_carol'@'%' IDENTIFIED BY 'carol-pw'; \
             GRANT SELECT ON {db}.* TO 'aq_carol'@'%'"
        );
        c.query(0, &carol).unwrap();
        c.wait_caught_up(Duration::from_secs(30)).unwrap();
        let e = login("aq_carol", "carol-pw")
            .await
            .expect_err("lookup fails");
        let msg = e.to_string();
        assert_eq!(server_code(Err::<(), _>(e)), 1105, "{msg}");
        assert!(msg.contains("auth_query"), "{msg}");
        let text = shared.metrics.encode(&*shared);
        let series = format!("switchyard_errors_total{{cluster=\"{db}\",kind=\"auth_query\"}} ");
        assert!(text.lines().any(|l| l.starts_with(&series)), "{text}");
        std::fs::write(&path, config("lookup-pw")).unwrap();
        switchyard::reload::reload(&shared).unwrap();
        let mut carol = login("aq_carol", "carol-pw").await.unwrap();
        let who: String = carol
            .query_first("SELECT CURRENT_USER()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(who, "aq_carol@%");
        // Config users log in as before (as themselves here).
        let mut app = mysql_async::Conn::new(async_opts(port, db)).await.unwrap();
        let who: String = app
            .query_first("SELECT CURRENT_USER()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(who, "app@%");
        for conn in [conn, alice, bob, carol, app] {
            conn.disconnect().await.unwrap();
        }
    });
    let rows = c
        .query_db(0, Some(db), "SELECT who FROM notes ORDER BY who")
        .unwrap();
    assert_eq!(rows, [["aq_alice@%"], ["aq_bob@%"]]);
}

/// The MySQL listener behind a load balancer (`[mysql] proxy_protocol`): the mariadb CLI
/// logs in and runs statements through HAProxy sending PROXY v1 and v2 headers; KILL QUERY
/// (a connection of its own, through the balancer too) stops a neighbour's statement; a
/// client straight to the listener (no header) is refused, one of the Unix socket is not
/// asked for one, and a balancer outside `proxy_protocol_from` is refused.
#[test]
fn clients_behind_a_load_balancer_log_in_through_proxy_protocol_headers() {
    let db = "ppdb";
    setup(db, "CREATE TABLE t (id INT PRIMARY KEY)");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("my.sock");
    let p = proxy_with(
        db,
        "",
        &format!(
            "proxy_protocol = true\nproxy_protocol_from = [\"127.0.0.1\"]\nsocket = \"{}\"",
            sock.display()
        ),
        "[admin]\nlisten = \"127.0.0.1:0\"",
    );
    let lb = support::haproxy::Haproxy::start(&[
        (format!("127.0.0.1:{}", p.port), "send-proxy"),
        (format!("127.0.0.1:{}", p.port), "send-proxy-v2"),
        (
            format!("127.0.0.1:{}", p.port),
            "send-proxy-v2 source 127.0.0.2",
        ),
    ]);
    for (i, &port) in lb.ports[..2].iter().enumerate() {
        let (ok, out, err) = cli(
            port,
            db,
            &format!("INSERT INTO t VALUES ({i}); /* switchyard:primary */ SELECT COUNT(*) FROM t"),
        );
        assert!(ok, "{err}");
        assert_eq!(out.trim(), (i + 1).to_string());
    }
    // KILL QUERY through the balancer (its own connection, its own header) stops the
    // statement of a client behind it.
    let program = kill_query_program(
        TCP_CONNECT,
        r#"cur = victim.cursor(); cur.execute("SELECT CONNECTION_ID()")"#,
    );
    let (ok, out, err) = python(&program, lb.ports[1], db);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("True"), "{out}{err}");
    // Straight to the listener: no header, refused.
    let (ok, _, err) = cli(p.port, db, "SELECT 1");
    assert!(!ok, "a client without a header logged in");
    assert!(
        err.contains("2013") || err.contains("2006") || err.contains("Lost connection"),
        "{err}"
    );
    // The admin API's client list names each client by the address the header carried
    // (PyMySQL connects from 127.0.0.3 and 127.0.0.4), its proxy-issued id (CONNECTION_ID())
    // and, for the one inside a transaction, the primary connection it holds.
    let admin = p.server.as_ref().unwrap().admin_addr.unwrap();
    let program = format!(
        r#"
import sys, json, urllib.request, pymysql
port, db = int(sys.argv[1]), sys.argv[2]
def conn(src):
    return pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
        database=db, autocommit=True, bind_address=src)
a, b = conn("127.0.0.3"), conn("127.0.0.4")
ca, cb = a.cursor(), b.cursor()
ca.execute("SELECT CONNECTION_ID()"); ida = ca.fetchone()[0]
cb.execute("SELECT CONNECTION_ID()"); idb = cb.fetchone()[0]
ca.execute("BEGIN"); ca.execute("SELECT * FROM t FOR UPDATE"); ca.fetchall()
got = json.load(urllib.request.urlopen("http://{admin}/clients?protocol=mysql&database=" + db))
rows = {{r["addr"].rsplit(":", 1)[0]: r for r in got["clients"]}}
print(json.dumps([rows["127.0.0.3"]["id"] == ida, rows["127.0.0.3"]["state"],
    rows["127.0.0.3"]["server"].split(" ")[0], rows["127.0.0.3"]["user"],
    rows["127.0.0.4"]["id"] == idb, rows["127.0.0.4"]["state"], rows["127.0.0.4"]["server"]]))
"#
    );
    let (ok, out, err) = python(&program, lb.ports[1], db);
    assert!(ok, "{out}{err}");
    let primary = format!("127.0.0.1:{}", cluster().primary_port());
    assert_eq!(
        out.trim(),
        format!("[true, \"active\", \"{primary}\", \"app\", true, \"idle\", null]"),
        "{err}"
    );
    // A balancer connecting from outside `proxy_protocol_from`: refused.
    let (ok, _, err) = cli(lb.ports[2], db, "SELECT 1");
    assert!(!ok, "a balancer outside proxy_protocol_from was trusted");
    assert!(
        err.contains("2013") || err.contains("2006") || err.contains("Lost connection"),
        "{err}"
    );
    // The Unix socket sends none and needs none.
    let (ok, out, err) = run(Command::new("mariadb").args([
        &format!("--socket={}", sock.display()),
        "-uapp",
        "-papp_pw",
        "--comments",
        "-N",
        db,
        "-e",
        "/* switchyard:primary */ SELECT COUNT(*) FROM t",
    ]));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "2");
}

/// `[[user]] max_connections`: a user's client connections are capped over the whole proxy,
/// and the one past the cap gets the error a MariaDB server gives for an account's
/// MAX_USER_CONNECTIONS, in the same words (compared with one made directly); other users
/// are not affected; a connection that leaves frees its place; COM_CHANGE_USER to a user at
/// its cap is refused the same way and the connection goes on as the user it was.
#[test]
fn max_connections_caps_a_users_clients_as_max_user_connections_does() {
    let db = "my_userlimit";
    setup(db, "SELECT 1");
    let c = cluster();
    c.query(
        0,
        "CREATE USER IF NOT EXISTS lim@'%' IDENTIFIED BY 'lim_pw' WITH MAX_USER_CONNECTIONS 2",
    )
    .unwrap();
    c.query(0, &format!("GRANT SELECT ON {db}.* TO lim@'%'"))
        .unwrap();
    let p = proxy_with(
        db,
        "",
        "",
        "max_connections = 2\n\n[[user]]\nname = \"other\"\npassword = \"other_pw\"",
    );
    let program = r#"
import sys, json, pymysql, mysql.connector
port, db = int(sys.argv[1]), sys.argv[2]
user, pw = sys.argv[3], sys.argv[4]
def conn(u=user, p=pw):
    return pymysql.connect(host="127.0.0.1", port=port, user=u, password=p, database=db)
def refusal(f):
    try:
        f()
        return None
    except Exception as e:
        return [e.args[0], e.args[1]]
out = {}
held = [conn(), conn()]
out["third"] = refusal(conn)
if user == "app":
    o = conn("other", "other_pw"); cur = o.cursor(); cur.execute("SELECT 1")
    out["other"] = cur.fetchone()[0]
    # COM_CHANGE_USER (mysql-connector-python) to the user at its cap.
    m = mysql.connector.connect(host="127.0.0.1", port=port, user="other", password="other_pw",
        database=db, use_pure=True)
    try:
        m.cmd_change_user(username="app", password="app_pw", database=db)
        out["change"] = None
    except mysql.connector.Error as e:
        out["change"] = [e.errno, e.msg]
    mc = m.cursor(); mc.execute("SELECT CURRENT_USER() IS NOT NULL"); out["still"] = mc.fetchone()[0]
held[0].close()
import time; time.sleep(0.3)
c = conn(); cur = c.cursor(); cur.execute("SELECT 40 + 2"); out["after_leave"] = cur.fetchone()[0]
print(json.dumps(out))
"#;
    let run_as = |port: u16, user: &str, pw: &str| {
        let (ok, out, err) =
            run(Command::new("python3").args(["-c", program, &port.to_string(), db, user, pw]));
        assert!(ok, "{out}{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    let direct = run_as(c.primary_port(), "lim", "lim_pw");
    let proxied = run_as(p.port, "app", "app_pw");
    assert_eq!(
        direct["third"],
        serde_json::json!([
            1226,
            "User 'lim' has exceeded the 'max_user_connections' resource (current value: 2)"
        ])
    );
    assert_eq!(
        proxied["third"],
        serde_json::json!([
            1226,
            "User 'app' has exceeded the 'max_user_connections' resource (current value: 2)"
        ])
    );
    assert_eq!(proxied["other"], 1);
    assert_eq!(proxied["change"][0], 1226, "{proxied}");
    assert_eq!(proxied["still"], 1);
    assert_eq!(
        (&direct["after_leave"], &proxied["after_leave"]),
        (&42.into(), &42.into())
    );
}

/// `[[user]] allow_from`: a user that may log in only from some addresses is refused from
/// others with the error MariaDB gives for an account at another host (compared with one
/// made directly: `'u'@'127.0.0.3'` reached from 127.0.0.4), before its password is
/// checked; a wrong password names the user at the client's host, as MariaDB does; COM_CHANGE_USER to it from elsewhere is refused too; other users are not
/// affected.
#[test]
fn allow_from_refuses_a_user_from_other_hosts_as_an_account_host_does() {
    let db = "my_allowfrom";
    setup(db, "SELECT 1");
    let c = cluster();
    c.query(
        0,
        "CREATE USER IF NOT EXISTS hosted@'127.0.0.3' IDENTIFIED BY 'hosted_pw'",
    )
    .unwrap();
    c.query(0, &format!("GRANT SELECT ON {db}.* TO hosted@'127.0.0.3'"))
        .unwrap();
    let p = proxy_with(
        db,
        "",
        "",
        "\n[[user]]\nname = \"hosted\"\npassword = \"hosted_pw\"\nallow_from = [\"127.0.0.3/32\"]",
    );
    let program = r#"
import sys, json, pymysql, mysql.connector
port, db = int(sys.argv[1]), sys.argv[2]
def attempt(user, pw, src):
    try:
        c = pymysql.connect(host="127.0.0.1", port=port, user=user, password=pw, database=db,
            bind_address=src)
        cur = c.cursor(); cur.execute("SELECT 40 + 2"); return cur.fetchone()[0]
    except pymysql.err.OperationalError as e:
        return [e.args[0], e.args[1]]
out = {"ok": attempt("hosted", "hosted_pw", "127.0.0.3"),
       "elsewhere": attempt("hosted", "hosted_pw", "127.0.0.4"),
       "wrong_pw_elsewhere": attempt("hosted", "nope", "127.0.0.4"),
       "wrong_pw_here": attempt("hosted", "nope", "127.0.0.3")}
if len(sys.argv) > 3:
    out["app"] = attempt("app", "app_pw", "127.0.0.4")
    m = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
        database=db, use_pure=True)
    try:
        m.cmd_change_user(username="hosted", password="hosted_pw", database=db)
        out["change"] = None
    except mysql.connector.Error as e:
        out["change"] = e.errno
print(json.dumps(out))
"#;
    let go = |port: u16, extra: &[&str]| {
        let (ok, out, err) = run(Command::new("python3")
            .args(["-c", program, &port.to_string(), db])
            .args(extra));
        assert!(ok, "{out}{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    let direct = go(c.primary_port(), &[]);
    let proxied = go(p.port, &["proxy"]);
    let refused = serde_json::json!([
        1045,
        "Access denied for user 'hosted'@'127.0.0.4' (using password: YES)"
    ]);
    for got in [&direct, &proxied] {
        assert_eq!(got["ok"], 42, "{got}");
        assert_eq!(got["elsewhere"], refused, "{got}");
        // Refused for the host before the password counts: the same answer.
        assert_eq!(got["wrong_pw_elsewhere"], refused, "{got}");
        assert_eq!(
            got["wrong_pw_here"],
            serde_json::json!([
                1045,
                "Access denied for user 'hosted'@'127.0.0.3' (using password: YES)"
            ]),
            "{got}"
        );
    }
    assert_eq!(proxied["app"], 42);
    assert_eq!(proxied["change"], 1045);
}

/// KILL CONNECTION of a client that sits idle inside a transaction ends its session at once,
/// as on a server: its transaction is rolled back and its row lock freed without waiting for
/// its next command (another client takes the lock within a second), and its next command
/// finds the connection gone. Compared with the same scenario straight against MariaDB.
#[test]
fn kill_connection_of_an_idle_client_in_a_transaction_frees_its_locks_at_once() {
    let db = "my_killidle";
    setup(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 0)",
    );
    let p = proxy(db, "");
    let program = r#"
import sys, time, json, pymysql
port, db = int(sys.argv[1]), sys.argv[2]
def conn():
    return pymysql.connect(host="127.0.0.1", port=port, user=sys.argv[3], password=sys.argv[4],
        database=db, autocommit=True, read_timeout=20)
victim, killer, waiter = conn(), conn(), conn()
v = victim.cursor()
v.execute("BEGIN"); v.execute("UPDATE t SET v = v + 1 WHERE id = 1")
killer.cursor().execute("KILL CONNECTION %d" % victim.thread_id())
w = waiter.cursor()
w.execute("SET SESSION innodb_lock_wait_timeout = 3")
t0 = time.time()
try:
    w.execute("UPDATE t SET v = v + 10 WHERE id = 1")
    took = round(time.time() - t0, 1) < 2
except Exception as e:
    took = repr(e)
try:
    v.execute("SELECT 1"); after = "answered"
except Exception as e:
    after = "gone"
w.execute("SELECT v FROM t WHERE id = 1")
print(json.dumps([took, after, w.fetchone()[0]]))
w.execute("UPDATE t SET v = 0 WHERE id = 1")
"#;
    let go = |port: u16, user: &str, pw: &str| {
        let (ok, out, err) =
            run(Command::new("python3").args(["-c", program, &port.to_string(), db, user, pw]));
        assert!(ok, "{out}{err}");
        out.trim().to_owned()
    };
    let c = cluster();
    let direct = go(c.primary_port(), "switchyard", "switchyard_pw");
    let proxied = go(p.port, "app", "app_pw");
    assert_eq!(direct, r#"[true, "gone", 10]"#);
    assert_eq!(proxied, direct);
}

/// `POST /clients/close?protocol=mysql&id=N` ends a client as a server's `KILL CONNECTION`
/// does, compared with KILL CONNECTION straight against MariaDB: an idle client finds its
/// connection gone at its next command; one idle inside a transaction has it rolled back and
/// its row lock freed at once; one running `SLEEP(30)` has the statement stopped within a
/// second, with the same error; a bystander goes on. An unknown id is 404.
#[test]
fn the_admin_api_closes_a_client_as_kill_connection_does() {
    let db = "my_adminclose";
    setup(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 0)",
    );
    let p = proxy_with(db, "", "", "[admin]\nlisten = \"127.0.0.1:0\"");
    let admin = p.server.as_ref().unwrap().admin_addr.unwrap();
    let program = r#"
import sys, time, json, threading, urllib.request, urllib.error, pymysql
port, db, user, pw, how = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
def conn():
    return pymysql.connect(host="127.0.0.1", port=port, user=user, password=pw,
        database=db, autocommit=True, read_timeout=40)
killer = conn()
def close(id):
    if how == "kill":
        killer.cursor().execute("KILL CONNECTION %d" % id)
    else:
        req = urllib.request.Request("http://%s/clients/close?protocol=mysql&id=%d" % (how, id),
                                     method="POST")
        body = json.load(urllib.request.urlopen(req))
        assert body["closed"] == 1, body
idle, locker, sleeper, bystander = conn(), conn(), conn(), conn()
idle.cursor().execute("SELECT 1")
l = locker.cursor(); l.execute("BEGIN"); l.execute("UPDATE t SET v = v + 1 WHERE id = 1")
slept = {}
def sleep():
    t0 = time.time()
    try:
        sleeper.cursor().execute("SELECT SLEEP(30)"); slept["r"] = "answered"
    except pymysql.err.MySQLError as e:
        slept["r"] = e.args[0]
    slept["fast"] = time.time() - t0 < 3
th = threading.Thread(target=sleep); th.start()
time.sleep(0.5)
out = []
close(idle.thread_id())
try:
    idle.cursor().execute("SELECT 1"); out.append("answered")
except pymysql.err.MySQLError as e:
    out.append(e.args[0])
close(locker.thread_id())
b = bystander.cursor()
b.execute("SET SESSION innodb_lock_wait_timeout = 3")
t0 = time.time()
b.execute("UPDATE t SET v = v + 10 WHERE id = 1")
out.append(time.time() - t0 < 2)
b.execute("SELECT v FROM t WHERE id = 1"); out.append(b.fetchone()[0])
t0 = time.time()
close(sleeper.thread_id())
th.join(10)
out += [slept.get("r"), slept.get("fast")]
b.execute("SELECT 1"); out.append(b.fetchone()[0])
if how != "kill":
    try:
        close(idle.thread_id()); out.append("closed twice")
    except urllib.error.HTTPError as e:
        out.append(e.code)
b.execute("UPDATE t SET v = 0 WHERE id = 1")
print(json.dumps(out))
"#;
    let go = |port: u16, user: &str, pw: &str, how: &str| {
        let (ok, out, err) = run(Command::new("python3").args([
            "-c",
            program,
            &port.to_string(),
            db,
            user,
            pw,
            how,
        ]));
        assert!(ok, "{out}{err}");
        out.trim().to_owned()
    };
    let c = cluster();
    let direct = go(c.primary_port(), "switchyard", "switchyard_pw", "kill");
    let proxied = go(p.port, "app", "app_pw", &admin.to_string());
    assert_eq!(direct, r#"[2013, true, 10, 2013, true, 1]"#);
    assert_eq!(proxied, direct.replace(", 1]", ", 1, 404]"));
}

/// `POST /disable`: new MySQL clients of the cluster are refused after they authenticate
/// (3032, MySQL 8's offline-mode answer, naming the cause; a wrong password is still 1045),
/// also a COM_CHANGE_USER into it from another cluster's client (which goes on as it was);
/// connected clients go on; `/status` shows it; `POST /enable` lets them in again.
#[test]
fn a_disabled_cluster_refuses_new_mysql_clients_and_serves_connected_ones() {
    let db = "my_disabled";
    let other = "my_disabled_other";
    setup(db, "SELECT 1");
    setup(other, "SELECT 1");
    let c = cluster();
    // A second cluster, that stays enabled: its client's COM_CHANGE_USER into the disabled
    // one is refused too.
    let text = config_text(db, "", "", "\n[admin]\nlisten = \"127.0.0.1:0\"")
        + &format!(
            r#"
[[cluster]]
name = "{other}"
protocol = "mysql"
database = "{other}"
primary = "127.0.0.1:{primary}"
user = "switchyard"
password = "switchyard_pw"
"#,
            primary = c.primary_port()
        );
    let p = started(
        Server::start(Config::from_toml(&text).expect("valid config")).expect("proxy starts"),
    );
    let admin = p.server.as_ref().unwrap().admin_addr.unwrap();
    let program = format!(
        r#"
import sys, json, urllib.request, pymysql
port, db = int(sys.argv[1]), sys.argv[2]
def conn(pw="app_pw"):
    return pymysql.connect(host="127.0.0.1", port=port, user="app", password=pw,
        database=db, autocommit=True)
def post(path):
    return json.load(urllib.request.urlopen(urllib.request.Request("http://{admin}" + path, method="POST")))
def attempt(pw="app_pw"):
    try:
        c = conn(pw); c.cursor().execute("SELECT 1"); return "in"
    except pymysql.err.MySQLError as e:
        return [e.args[0], "offline mode" in str(e.args[1]) and db in str(e.args[1])]
out = []
connected = conn()
out.append(post("/disable?cluster=" + db)["disabled"])
out.append(attempt())
out.append(attempt("wrong")[0])
cur = connected.cursor(); cur.execute("SELECT 41 + 1"); out.append(cur.fetchone()[0])
import mysql.connector
elsewhere = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
    database="{other}", use_pure=True, autocommit=True)
try:
    elsewhere.cmd_change_user(username="app", password="app_pw", database=db); out.append("moved in")
except mysql.connector.Error as e:
    out.append(e.errno)
cur = elsewhere.cursor(); cur.execute("SELECT DATABASE()"); out.append(cur.fetchone()[0])
status = json.load(urllib.request.urlopen("http://{admin}/status"))
out.append([c["disabled"] for c in status["clusters"] if c["name"] == db])
out.append(post("/enable?cluster=" + db)["enabled"])
out.append(attempt())
print(json.dumps(out))
"#
    );
    let (ok, out, err) = python(&program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.trim(),
        format!(r#"[["{db}"], [3032, true], 1045, 42, 3032, "{other}", [true], ["{db}"], "in"]"#)
    );
}

/// `POST /reconnect` for a MySQL cluster: the idle client's next statement runs on a new
/// server connection, a client inside a transaction finishes it on its own, after which that
/// connection closes; no server thread from before serves a statement again.
#[test]
fn reconnect_replaces_the_pooled_mysql_server_connections() {
    let db = "my_reconnect";
    setup(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 0)",
    );
    let p = proxy_with(db, "", "", "[admin]\nlisten = \"127.0.0.1:0\"");
    let admin = p.server.as_ref().unwrap().admin_addr.unwrap();
    let program = format!(
        r#"
import sys, json, time, uuid, urllib.request, pymysql
port, db = int(sys.argv[1]), sys.argv[2]
def conn():
    return pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pw",
        database=db, autocommit=True)
def thread(c):
    # A token of its own: a thread that has just answered may still show its statement.
    tok = uuid.uuid4().hex
    cur = c.cursor()
    cur.execute("/* switchyard:primary */ SELECT ID FROM information_schema.PROCESSLIST "
                "WHERE INFO LIKE '%%probe-" + tok + "%%' /* probe-" + tok + " */")
    rows = cur.fetchall()
    assert len(rows) == 1, rows
    return rows[0][0]
idle, in_tx = conn(), conn()
t = in_tx.cursor(); t.execute("BEGIN"); t.execute("UPDATE t SET v = v + 1 WHERE id = 1")
tx_before = thread(in_tx)
before = thread(idle)
out = [thread(idle) == before]
req = urllib.request.Request("http://{admin}/reconnect?cluster=" + db, method="POST")
out.append(json.load(urllib.request.urlopen(req))["reconnect"])
after = thread(idle)
out.append(after not in (before, tx_before))
out.append(thread(in_tx) == tx_before)
t.execute("COMMIT")
seen = set(thread(c) for c in (idle, in_tx) for _ in range(10))
out.append(sorted(seen & {{before, tx_before}}))
time.sleep(1)
check = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pw", database=db)
cur = check.cursor()
cur.execute("/* switchyard:primary */ SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID IN (%s, %s)", (before, tx_before))
out.append(cur.fetchone()[0])
print(json.dumps(out))
"#
    );
    let (ok, out, err) = python(&program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.trim(),
        format!(r#"[true, ["{db}"], true, true, [], 0]"#)
    );
}

/// `[general] max_user_connections` reaches MySQL clients too: a user without a
/// `max_connections` of its own gets that limit (1226, as for an account's
/// MAX_USER_CONNECTIONS); one that leaves frees its place.
#[test]
fn max_user_connections_limits_mysql_users_without_a_limit_of_their_own() {
    let db = "my_userdefault";
    setup(db, "SELECT 1");
    let text =
        config_text(db, "", "", "").replace("[general]\n", "[general]\nmax_user_connections = 2\n");
    let p = started(
        Server::start(Config::from_toml(&text).expect("valid config")).expect("proxy starts"),
    );
    let program = r#"
import sys, json, pymysql
port, db = int(sys.argv[1]), sys.argv[2]
def conn():
    return pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pw", database=db)
a, b = conn(), conn()
out = []
try:
    conn(); out.append("third let in")
except pymysql.err.MySQLError as e:
    out.append(e.args[0])
b.close()
import time; time.sleep(0.3)
c = conn(); cur = c.cursor(); cur.execute("SELECT 42"); out.append(cur.fetchone()[0])
print(json.dumps(out))
"#;
    let (ok, out, err) = python(program, p.port, db);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "[1226, 42]");
}

/// `[[routing.rule]]`s for MySQL clients: a read a rule sends to the primary goes there (by
/// `@@server_id`), a rule for PostgreSQL clients only does nothing here, other reads stay on
/// the replicas, and a catch-all replica rule leaves writes on the primary.
#[test]
fn routing_rules_route_mysql_reads_and_leave_writes_on_the_primary() {
    let db = "my_rules";
    setup(db, "CREATE TABLE t (id INT)");
    let text = config_text(db, "", "", "")
        + r#"
[[routing.rule]]
match = "(?i)as\\s+pg_only"
route = "primary"
protocol = "postgres"

[[routing.rule]]
match = "(?i)as\\s+fresh"
route = "primary"

[[routing.rule]]
match = ".*"
route = "replica"
"#;
    let p = started(
        Server::start(Config::from_toml(&text).expect("valid config")).expect("proxy starts"),
    );
    let c = cluster();
    let primary = c.value(0, "SELECT @@server_id").unwrap();
    let sql = "SELECT @@server_id AS fresh; SELECT @@server_id AS pg_only; \
               SELECT @@server_id; INSERT INTO t VALUES (1)";
    for _ in 0..5 {
        let (ok, out, err) = cli(p.port, db, sql);
        assert!(ok, "{err}");
        let ids: Vec<&str> = out.lines().collect();
        assert_eq!(ids.len(), 3, "{out}");
        assert_eq!(ids[0], primary, "{out}");
        assert_ne!(ids[1], primary, "{out}");
        assert_ne!(ids[2], primary, "{out}");
    }
    assert_eq!(
        c.value(0, &format!("SELECT count(*) FROM {db}.t")).unwrap(),
        "5"
    );
}

/// `[general] query_digests` and `GET /queries`: statements counted under
/// their digests, as ProxySQL's `stats_mysql_query_digest` counts them. mysql_async's
/// prepared INSERT (COM_STMT_EXECUTE) 20 times, text SELECTs with 10 different literals
/// (one digest, served by the replicas), and 3 failing statements; texts of several
/// statements, each counted under its own digest (as performance_schema's digests count
/// them), one of them stopped by an error (the statement after it neither runs nor counts);
/// sorted by count, limited, reset.
#[test]
fn statements_are_counted_under_their_digests() {
    use mysql_async::prelude::*;
    let db = "my_digests";
    setup(db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)");
    let text = config_text(db, "", "", "[admin]\nlisten = \"127.0.0.1:0\"")
        .replace("[general]\n", "[general]\nquery_digests = 1000\n");
    let p = started(Server::start(Config::from_toml(&text).unwrap()).unwrap());
    let admin = p.server.as_ref().unwrap().admin_addr.unwrap();
    assert_eq!(
        support::admin_request(admin, "POST", "/queries/reset").0,
        200
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = mysql_async::Conn::new(async_opts(p.port, db))
            .await
            .unwrap();
        for i in 0..20 {
            conn.exec_drop("INSERT INTO t VALUES (?, ?)", (i, i * 2))
                .await
                .unwrap();
        }
        for i in 0..10 {
            conn.query_drop(format!("SELECT v FROM t WHERE id = {i}"))
                .await
                .unwrap();
        }
        for _ in 0..3 {
            assert!(conn.query_drop("SELECT * FROM missing").await.is_err());
        }
        for i in 0..2 {
            conn.query_drop(format!(
                "UPDATE t SET v = {i} WHERE id = 3; SELECT v FROM t WHERE id = 3;\n\
                 INSERT INTO t (id, v) VALUES ({}, 1);",
                100 + i
            ))
            .await
            .unwrap();
        }
        let stopped = "SELECT v FROM t WHERE id = 4; SELECT * FROM missing; DELETE FROM t";
        assert!(conn.query_drop(stopped).await.is_err());
        // On the primary: a replica may not have replayed the last inserts yet.
        let rows: Vec<u64> = conn
            .query("/* switchyard:primary */ SELECT count(*) FROM t")
            .await
            .unwrap();
        assert_eq!(rows, [22], "the DELETE after the error did not run");
        // One statement for the server, though the text has `;` in it; and a CALL, which
        // answers with one result more than its procedure returns: each text once, whole.
        conn.query_drop("CREATE PROCEDURE two() BEGIN SELECT 1; SELECT 2; END")
            .await
            .unwrap();
        conn.query_drop("CALL two(); DO 7").await.unwrap();
        // Three results, then the ERR: as many results as statements before the failed one
        // if the CALL were one, which it is not.
        let call_then_error = "CALL two(); SELECT * FROM missing; DO 1; DO 2";
        assert!(conn.query_drop(call_then_error).await.is_err());
        conn.disconnect().await.unwrap();
    });
    let (status, body) = support::admin_request(admin, "GET", &format!("/queries?cluster={db}"));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = |query: &str| {
        v["queries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["query"] == query)
            .unwrap_or_else(|| panic!("no {query:?} in {body}"))
            .clone()
    };
    let insert = row("INSERT INTO t VALUES (?, ?)");
    assert_eq!(
        (
            &insert["count"],
            &insert["errors"],
            &insert["primary"],
            &insert["replica"]
        ),
        (&20.into(), &0.into(), &20.into(), &0.into()),
        "{insert}"
    );
    assert_eq!(insert["user"], "app");
    let select = row("SELECT v FROM t WHERE id = ?");
    assert_eq!(
        (&select["count"], &select["errors"], &select["replica"]),
        (&13.into(), &0.into(), &10.into()),
        "{select}"
    );
    let missing = row("SELECT * FROM missing");
    assert_eq!(
        (&missing["count"], &missing["errors"]),
        (&4.into(), &4.into())
    );
    for query in [
        "UPDATE t SET v = ? WHERE id = ?",
        "INSERT INTO t (id, v) VALUES (?, ?)",
    ] {
        let r = row(query);
        assert_eq!(
            (&r["count"], &r["errors"], &r["primary"]),
            (&2.into(), &0.into(), &2.into()),
            "{r}"
        );
    }
    let texts: Vec<&str> = v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["query"].as_str())
        .collect();
    let whole = |q: &str| q.starts_with("CREATE PROCEDURE two()") || q.starts_with("CALL two()");
    assert!(
        texts
            .iter()
            .all(|q| whole(q) || (!q.contains(';') && !q.contains("DELETE"))),
        "each statement on its own, none after the error: {texts:?}"
    );
    let mut wholes: Vec<_> = v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["query"].as_str().is_some_and(whole))
        .map(|r| (r["query"].as_str().unwrap(), r["count"].as_u64().unwrap()))
        .collect();
    wholes.sort();
    assert_eq!(
        wholes,
        [
            ("CALL two(); DO ?", 1),
            ("CALL two(); SELECT * FROM missing; DO ?; DO ?", 1),
            ("CREATE PROCEDURE two() BEGIN SELECT ?; SELECT ?; END", 1)
        ]
    );
    assert!(insert["total_ms"].as_f64().unwrap() > 0.0);
    assert!(insert["min_ms"].as_f64() <= insert["max_ms"].as_f64());
    // Most frequent first, one of them.
    let (_, body) = support::admin_request(admin, "GET", "/queries?sort=count&limit=1");
    let top: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(top["queries"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(
        top["queries"][0]["query"], "INSERT INTO t VALUES (?, ?)",
        "{body}"
    );
    assert_eq!(
        support::admin_request(admin, "GET", "/queries?sort=nonsense").0,
        400
    );
    assert_eq!(
        support::admin_request(admin, "POST", "/queries/reset").0,
        200
    );
    let (_, body) = support::admin_request(admin, "GET", "/queries");
    let after: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(after["queries"].as_array().unwrap().len(), 0, "{body}");
}
