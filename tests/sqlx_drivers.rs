//! sqlx (Rust), the async driver most Rust applications use, through the proxy on both
//! protocols, used the way applications use it: its pool (more client connections than the
//! proxy has server connections), its per-connection `after_connect` settings, its cached
//! named statements (PostgreSQL `sqlx_s_N`, MySQL COM_STMT_PREPARE ids) that outlive the
//! server connection they were prepared on, transactions that commit, roll back, or are
//! dropped (sqlx then sends the ROLLBACK with the connection's next use), errors inside
//! transactions, and, on MySQL, its connect-time
//! `SET sql_mode=(SELECT CONCAT(@@sql_mode, ',PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION')),
//! time_zone='+00:00',NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;`.
//!
//! Each test keeps a ledger of what every task was told was committed; the table must end
//! equal to it exactly, and every transaction must see its own connection's settings. The
//! same tasks run directly against the primary first, so a scenario that the server itself
//! answers differently is a test bug, not a proxy bug. Every await has a deadline: a hang is a
//! failure.

mod support;

use sqlx::{Connection, Executor, Row};
use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;
use support::drivers::{drivers_config, wait_replicas_ready};
use support::*;
use switchyard::testkit::mariadb::{MariaCluster, APP_PASSWORD, APP_USER};

/// Bound on any one test's driver work.
const LIMIT: Duration = Duration::from_secs(120);

/// What one task did: (rows it was told were committed, transactions that saw other settings
/// than their connection's).
type TaskResult = (Vec<(i32, i32)>, Vec<String>);

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// One task's work on a connection of a PostgreSQL pool, given a time zone and application
/// name of the task's own: `rounds` rounds, each a check that the connection's settings are in
/// force inside a transaction, a committed insert (named statement, parameters), a
/// transaction rolled back after a unique violation, one dropped uncommitted, a read of the
/// task's own rows outside a transaction and an unnamed statement.
async fn pg_task(pool: sqlx::PgPool, task: i32, rounds: i32) -> Result<TaskResult, sqlx::Error> {
    let mut committed = Vec::new();
    let mut wrong = Vec::new();
    // The task's own connection (a client of the proxy's), with settings of its own.
    let mut conn = pool.acquire().await?;
    let zone_want = format!("Etc/GMT-{}", task % 12 + 1);
    conn.execute(&*format!("SET TIME ZONE '{zone_want}'"))
        .await?;
    conn.execute(&*format!("SET application_name = 'sqlx-{task}'"))
        .await?;
    for n in 0..rounds {
        let mut tx = conn.begin().await?;
        let zone: String = sqlx::query_scalar("SELECT current_setting('TimeZone')")
            .fetch_one(&mut *tx)
            .await?;
        let app: String = sqlx::query_scalar("SELECT current_setting('application_name')")
            .fetch_one(&mut *tx)
            .await?;
        let after: String = sqlx::query_scalar("SELECT current_setting('lock_timeout')")
            .fetch_one(&mut *tx)
            .await?;
        if zone != zone_want || app != format!("sqlx-{task}") || after != "5s" {
            wrong.push(format!(
                "task {task} round {n}: zone {zone}, application_name {app}, lock_timeout {after}"
            ));
        }
        sqlx::query("INSERT INTO ledger (task, n) VALUES ($1, $2)")
            .bind(task)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        committed.push((task, n));

        // A duplicate: the server fails the transaction; sqlx rolls it back.
        let mut tx = conn.begin().await?;
        sqlx::query("INSERT INTO ledger (task, n) VALUES ($1, $2)")
            .bind(task)
            .bind(1000 + n)
            .execute(&mut *tx)
            .await?;
        let dup = sqlx::query("INSERT INTO ledger (task, n) VALUES ($1, $2)")
            .bind(task)
            .bind(n)
            .execute(&mut *tx)
            .await;
        match dup {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {}
            other => wrong.push(format!("task {task} round {n}: duplicate gave {other:?}")),
        }
        tx.rollback().await?;

        // Dropped without commit: sqlx sends the ROLLBACK with the connection's next use.
        {
            let mut tx = conn.begin().await?;
            sqlx::query("INSERT INTO ledger (task, n) VALUES ($1, $2)")
                .bind(task)
                .bind(2000 + n)
                .execute(&mut *tx)
                .await?;
        }

        // Outside a transaction (a replica may serve it and lag: at most what was committed).
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE task = $1")
            .bind(task)
            .fetch_one(&mut *conn)
            .await?;
        if seen > i64::from(n) + 1 {
            wrong.push(format!("task {task} round {n}: sees {seen} rows"));
        }
        // An unnamed (not persistent) statement, as `persistent(false)` sends it.
        let v: i32 = sqlx::query_scalar("SELECT $1::int + 1")
            .bind(n)
            .persistent(false)
            .fetch_one(&mut *conn)
            .await?;
        if v != n + 1 {
            wrong.push(format!("task {task} round {n}: {v}"));
        }
    }
    Ok((committed, wrong))
}

/// `tasks` tasks on one sqlx pool of `tasks` connections at `url` (each connection gets a
/// lock_timeout at connect). Returns every task's result.
async fn pg_run(url: &str, tasks: i32, rounds: i32) -> Vec<TaskResult> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(tasks as u32)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("SET lock_timeout = '5s'").await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("sqlx pool at {url}: {e}"));
    let handles: Vec<_> = (0..tasks)
        .map(|t| tokio::spawn(pg_task(pool.clone(), t, rounds)))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(
            h.await
                .unwrap()
                .unwrap_or_else(|e| panic!("a task at {url}: {e}")),
        );
    }
    pool.close().await;
    out
}

/// Rows in `ledger` of database `db` on the primary, as (task, n).
fn pg_rows(db: &str) -> BTreeSet<(i32, i32)> {
    let text = support::drivers::primary_sql(db, "SELECT task, n FROM ledger ORDER BY 1, 2");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (a, b) = l.split_once('|').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

fn check(results: Vec<TaskResult>, rows: BTreeSet<(i32, i32)>, what: &str) {
    let mut told = BTreeSet::new();
    for (committed, wrong) in results {
        assert!(wrong.is_empty(), "{what}: {wrong:#?}");
        told.extend(committed);
    }
    assert_eq!(
        rows, told,
        "{what}: the table is not what the clients were told"
    );
}

/// sqlx's PgPool of 16 over a proxy with 2 server connections per backend and its replicas:
/// named statements on whichever connection a transaction gets, per-connection settings,
/// committed, failed, rolled back and dropped transactions; the table ends equal to the
/// ledger, directly and through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_postgres_pool_named_statements_and_transactions_match_the_ledger() {
    let db = "sqlx_pg";
    support::drivers::fresh_db(
        db,
        "CREATE TABLE ledger (task int, n int, PRIMARY KEY (task, n))",
    );
    let direct = format!(
        "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
        cluster().primary_port()
    );
    let results = tokio::time::timeout(LIMIT, pg_run(&direct, 16, 10))
        .await
        .expect("direct run in time");
    check(results, pg_rows(db), "directly");
    support::drivers::primary_sql(db, "TRUNCATE ledger");

    let p = start_proxy(&drivers_config(db, 2, 2, true));
    wait_replicas_ready(&p, db);
    let via = format!(
        "postgres://app:secret@127.0.0.1:{}/{db}?sslmode=disable",
        p.port
    );
    let results = tokio::time::timeout(LIMIT, pg_run(&via, 16, 10))
        .await
        .expect("run through the proxy in time");
    check(results, pg_rows(db), "through the proxy");
}

// ---------------------------------------------------------------------------------------------
// MySQL

fn maria() -> &'static MariaCluster {
    static C: OnceLock<MariaCluster> = OnceLock::new();
    C.get_or_init(|| MariaCluster::start(1).expect("start MariaDB primary + replica"))
}

struct MyProxy {
    server: Option<switchyard::app::Server>,
    port: u16,
}

impl Drop for MyProxy {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

/// A proxy for MariaDB database `db` with its replica and `size` server connections per
/// backend; returns once both backends are ready.
fn my_proxy(db: &str, size: usize) -> MyProxy {
    let c = maria();
    let text = format!(
        r#"
[general]
workers = 2
drain_timeout = "2s"

[mysql]
listen = "127.0.0.1:0"

[health]
interval = "200ms"
timeout = "2s"

[pool]
size = {size}
checkout_timeout = "10s"

[[user]]
name = "{APP_USER}"
password = "{APP_PASSWORD}"

[[cluster]]
name = "{db}"
protocol = "mysql"
database = "{db}"
primary = "127.0.0.1:{primary}"
replicas = ["127.0.0.1:{replica}"]
user = "switchyard"
password = "switchyard_pw"
"#,
        primary = c.primary_port(),
        replica = c.replica_ports()[0],
    );
    let cfg = switchyard::config::Config::from_toml(&text).expect("valid config");
    let server = switchyard::app::Server::start(cfg).expect("proxy starts");
    let port = server.my_addr.expect("mysql listener").port();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let clusters = server.shared.clusters.load_full();
        let ready = clusters[db]
            .backends
            .iter()
            .all(|b| b.is_up() && (b.addr.port() == Some(c.primary_port()) || b.in_read_set()));
        if ready {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "backends never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    MyProxy {
        server: Some(server),
        port,
    }
}

/// One task's work on a connection of a MySQL pool, given a time zone of the task's own:
/// `rounds` transactions, each checking that the connection's settings are in force (sqlx's
/// connect-time sql_mode with PIPES_AS_CONCAT and NAMES, the task's time zone) and inserting
/// a row with a prepared statement; a duplicate key inside a transaction, then a rollback; a
/// dropped transaction; a read outside a transaction.
async fn my_task(pool: sqlx::MySqlPool, task: i32, rounds: i32) -> Result<TaskResult, sqlx::Error> {
    let mut committed = Vec::new();
    let mut wrong = Vec::new();
    // The task's own connection (a client of the proxy's), with a time zone of its own.
    let mut conn = pool.acquire().await?;
    let zone_want = format!("+0{}:00", task % 9 + 1);
    conn.execute(&*format!("SET time_zone = '{zone_want}'"))
        .await?;
    for n in 0..rounds {
        let mut tx = conn.begin().await?;
        let row = sqlx::query(
            "SELECT @@time_zone, 'a' || 'b', @@character_set_client, @@collation_connection",
        )
        .fetch_one(&mut *tx)
        .await?;
        let (zone, piped): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let (cs, coll): (String, String) = (row.try_get(2)?, row.try_get(3)?);
        if zone != zone_want || piped != "ab" || cs != "utf8mb4" || coll != "utf8mb4_unicode_ci" {
            wrong.push(format!("task {task} round {n}: {zone} {piped} {cs} {coll}"));
        }
        sqlx::query("INSERT INTO ledger (task, n) VALUES (?, ?)")
            .bind(task)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        committed.push((task, n));

        let mut tx = conn.begin().await?;
        sqlx::query("INSERT INTO ledger (task, n) VALUES (?, ?)")
            .bind(task)
            .bind(1000 + n)
            .execute(&mut *tx)
            .await?;
        let dup = sqlx::query("INSERT INTO ledger (task, n) VALUES (?, ?)")
            .bind(task)
            .bind(n)
            .execute(&mut *tx)
            .await;
        match dup {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23000") => {}
            other => wrong.push(format!("task {task} round {n}: duplicate gave {other:?}")),
        }
        tx.rollback().await?;

        {
            let mut tx = conn.begin().await?;
            sqlx::query("INSERT INTO ledger (task, n) VALUES (?, ?)")
                .bind(task)
                .bind(2000 + n)
                .execute(&mut *tx)
                .await?;
        }

        let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE task = ?")
            .bind(task)
            .fetch_one(&mut *conn)
            .await?;
        if seen > i64::from(n) + 1 {
            wrong.push(format!("task {task} round {n}: sees {seen} rows"));
        }
    }
    Ok((committed, wrong))
}

/// `tasks` tasks on one sqlx MySqlPool of `tasks` connections.
async fn my_run(port: u16, db: &str, tasks: i32, rounds: i32) -> Vec<TaskResult> {
    use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
    let opts = MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(APP_USER)
        .password(APP_PASSWORD)
        .database(db)
        .ssl_mode(MySqlSslMode::Disabled);
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(tasks as u32)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts)
        .await
        .unwrap_or_else(|e| panic!("sqlx pool at port {port}: {e}"));
    let handles: Vec<_> = (0..tasks)
        .map(|t| tokio::spawn(my_task(pool.clone(), t, rounds)))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(
            h.await
                .unwrap()
                .unwrap_or_else(|e| panic!("a task at port {port}: {e}")),
        );
    }
    pool.close().await;
    out
}

fn my_rows(db: &str) -> BTreeSet<(i32, i32)> {
    maria()
        .query_db(0, Some(db), "SELECT task, n FROM ledger")
        .unwrap()
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect()
}

/// sqlx's MySqlPool of 16 over a proxy with 2 server connections per backend: sqlx's
/// connect-time SET (a sql_mode computed by a subquery, a time zone, NAMES with a collation)
/// and a per-connection time zone are carried to whichever server connection a transaction
/// gets without pinning the client (16 clients on 2 connections would otherwise time out);
/// prepared statements, duplicates, rollbacks and dropped transactions; the table ends equal
/// to the ledger, directly and through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_mysql_pool_connect_time_settings_and_transactions_match_the_ledger() {
    let db = "sqlx_my";
    let c = maria();
    c.create_database(db).unwrap();
    c.query_db(
        0,
        Some(db),
        "CREATE TABLE ledger (task INT, n INT, PRIMARY KEY (task, n)) ENGINE=InnoDB",
    )
    .unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
    let results = tokio::time::timeout(LIMIT, my_run(c.primary_port(), db, 16, 10))
        .await
        .expect("direct run in time");
    check(results, my_rows(db), "directly");
    c.query_db(0, Some(db), "TRUNCATE ledger").unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();

    let p = my_proxy(db, 2);
    let results = tokio::time::timeout(LIMIT, my_run(p.port, db, 16, 10))
        .await
        .expect("run through the proxy in time");
    check(results, my_rows(db), "through the proxy");
}
