//! The MySQL front end against real MariaDB servers (a primary and two GTID replicas started
//! by the test harness): login, queries through the `mariadb` CLI, read/write splitting by
//! `@@server_id`, transaction pooling, session variables that follow the client without
//! pinning, state that pins, KILL.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
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
    let c = cluster();
    let replicas: Vec<String> = c
        .replica_ports()
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let text = format!(
        r#"
[general]
workers = 1
drain_timeout = "2s"

[mysql]
listen = "127.0.0.1:0"

[health]
interval = "200ms"
timeout = "2s"

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
"#,
        primary = c.primary_port(),
        replicas = replicas.join(", ")
    );
    let cfg = Config::from_toml(&text).expect("valid config");
    let server = Server::start(cfg).expect("proxy starts");
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
    let out = Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uapp",
            "-papp_pw",
            "--skip-ssl",
            "-N",
            "-B",
            db,
            "-e",
            sql,
        ])
        .output()
        .expect("run mariadb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn setup(db: &str, sql: &str) {
    let c = cluster();
    c.create_database(db).unwrap();
    c.query_db(0, Some(db), sql).unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
}

#[test]
fn the_mariadb_cli_runs_ddl_dml_and_selects_through_the_proxy() {
    let db = "my_basic";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY, v varchar(20))");
    let p = proxy(db, "");
    let (ok, out, err) = cli(
        p.port,
        db,
        "INSERT INTO t VALUES (1, 'one'), (2, 'two'); SELECT id, v FROM t ORDER BY id; SELECT 1, NULL, 'x'",
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
    let out = Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{}", p.port),
            "-uapp",
            "-pwrong",
            "--skip-ssl",
            db,
            "-e",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
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
    // Writes, transactions, locking reads, GET_LOCK and LAST_INSERT_ID() on the primary.
    for sql in [
        "INSERT INTO t VALUES (1); SELECT @@server_id",
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
