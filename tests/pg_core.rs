//! The transaction-pooling core, message by message: every test here sends the exact protocol
//! messages that a real driver sends (checked against what libpq, tokio-postgres,
//! node-postgres, psycopg and asyncpg do) and checks the result against the server directly.
//! Each one failed before the fix it guards (see the commit that added it).

mod support;

use std::time::Duration;
use support::raw::{msg, split, summary, Raw};
use support::*;

/// A proxy in transaction mode on the shared primary + 2 replicas, with a trust user, one
/// worker and `pool` lines (e.g. `size = 1` to make every client share one connection).
fn core_proxy(db: &str, pool: &str) -> Proxy {
    core_proxy_with(db, pool, "")
}

/// [`core_proxy`] with extra `[postgres]` lines (e.g. `pool_mode = "session"`).
fn core_proxy_with(db: &str, pool: &str, postgres: &str) -> Proxy {
    let c = cluster();
    let replicas: Vec<String> = c
        .replica_ports()
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    start_proxy(&format!(
        r#"
[general]
workers = 1
drain_timeout = "2s"

[postgres]
listen = "127.0.0.1:0"
{postgres}

[health]
interval = "200ms"
timeout = "1s"

[pool]
checkout_timeout = "3s"
{pool}

[[user]]
name = "app"
auth = "trust"

[[cluster]]
name = "{db}"
database = "{db}"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]
user = "postgres"
"#,
        primary = c.primary_port(),
        replicas = replicas.join(", "),
    ))
}

/// A direct connection to the primary (the truth the tests compare with).
async fn direct(db: &str) -> Raw {
    Raw::connect(cluster().primary_port(), "postgres", db, &[]).await
}

async fn setup(db: &str, sql: &str) {
    create_db_on(cluster(), db);
    let mut d = direct(db).await;
    let (_, err) = d.simple(sql).await;
    assert!(err.is_none(), "setup: {err:?}");
    cluster()
        .wait_replay_caught_up(Duration::from_secs(30))
        .unwrap();
}

/// Defect: the proxy answers a bare BEGIN itself and sends it with the transaction's first
/// statement; a named Parse of a new statement text took a connection by another path that
/// did not send the BEGIN, so the UPDATE autocommitted and ROLLBACK undid nothing.
#[tokio::test]
async fn a_named_statement_inside_begin_rollback_commits_nothing() {
    let db = "core_named_in_tx";
    setup(
        db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0)",
    )
    .await;
    let p = core_proxy(db, "");
    for round in 0..3 {
        let mut c = Raw::connect(p.port, "app", db, &[]).await;
        let (_, err) = c.simple("BEGIN").await;
        assert!(err.is_none());
        // node-postgres' named query: Parse(name) Bind Describe Execute Sync, one write.
        let name = format!("upd_{round}_{}", std::process::id());
        let mut b = msg::parse(&name, "UPDATE t SET v = v + 1 WHERE id = $1 RETURNING v");
        b.extend(msg::bind("", &name, &["1"]));
        b.extend(msg::describe_portal(""));
        b.extend(msg::execute(""));
        b.extend(msg::sync());
        c.send(&b).await;
        let (rows, err) = split(&c.until_ready(1).await);
        assert_eq!(err, None);
        assert_eq!(rows.len(), 1);
        // Inside the transaction the client sees its own write.
        assert_eq!(
            c.value("SELECT v FROM t WHERE id = 1").await.as_deref(),
            Some("1")
        );
        let (_, err) = c.simple("ROLLBACK").await;
        assert!(err.is_none());
        let mut d = direct(db).await;
        assert_eq!(
            d.value("SELECT v FROM t WHERE id = 1").await.as_deref(),
            Some("0"),
            "round {round}: the rolled-back UPDATE is on the server"
        );
    }
    // And with COMMIT the write lands exactly once.
    let mut c = Raw::connect(p.port, "app", db, &[]).await;
    c.simple("BEGIN").await;
    let mut b = msg::parse("upd_commit", "UPDATE t SET v = v + 1 WHERE id = $1");
    b.extend(msg::bind("", "upd_commit", &["1"]));
    b.extend(msg::execute(""));
    b.extend(msg::sync());
    c.send(&b).await;
    assert_eq!(split(&c.until_ready(1).await).1, None);
    assert_eq!(c.simple("COMMIT").await.1, None);
    let mut d = direct(db).await;
    assert_eq!(
        d.value("SELECT v FROM t WHERE id = 1").await.as_deref(),
        Some("1")
    );
}

/// Defect: a pipeline was routed by its first statement, so a read followed by a write in
/// one batch went to a replica ("cannot execute UPDATE in a read-only transaction").
#[tokio::test]
async fn a_batch_with_a_write_after_a_read_goes_to_the_primary() {
    let db = "core_batch_route";
    setup(
        db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0)",
    )
    .await;
    let p = core_proxy(db, "");
    let mut c = Raw::connect(p.port, "app", db, &[]).await;
    for i in 1..=5 {
        // Extended protocol (psycopg pipeline, pgx Batch): read then write, one Sync.
        let mut b = msg::extended("SELECT 1", &[]);
        b.extend(msg::extended(
            "UPDATE t SET v = v + 1 WHERE id = $1",
            &["1"],
        ));
        b.extend(msg::sync());
        c.send(&b).await;
        let (_, err) = split(&c.until_ready(1).await);
        assert_eq!(err, None, "extended batch {i}");
        // Two Queries in one write.
        let mut b = msg::query("SELECT 1");
        b.extend(msg::query("UPDATE t SET v = v + 1 WHERE id = 1"));
        c.send(&b).await;
        let (_, err) = split(&c.until_ready(2).await);
        assert_eq!(err, None, "two queries {i}");
        // A read batch, then a write batch sent before the read's answer came back.
        let mut b = msg::extended("SELECT pg_sleep(0.05)", &[]);
        b.extend(msg::sync());
        b.extend(msg::extended(
            "UPDATE t SET v = v + 1 WHERE id = $1",
            &["1"],
        ));
        b.extend(msg::sync());
        c.send(&b).await;
        let (_, err) = split(&c.until_ready(2).await);
        assert_eq!(err, None, "read batch then write batch {i}");
    }
    let mut d = direct(db).await;
    assert_eq!(
        d.value("SELECT v FROM t WHERE id = 1").await.as_deref(),
        Some("15")
    );
    // A batch that arrives in pieces is decided when its Sync arrives.
    let mut b = msg::extended("SELECT 1", &[]);
    c.send(&b).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    b = msg::extended("UPDATE t SET v = v + 1 WHERE id = $1", &["1"]);
    b.extend(msg::sync());
    c.send(&b).await;
    assert_eq!(split(&c.until_ready(1).await).1, None);
    assert_eq!(
        d.value("SELECT v FROM t WHERE id = 1").await.as_deref(),
        Some("16")
    );
}

/// Defect: a connection went back to the pool when everything sent was answered and the last
/// ReadyForQuery said idle, although the client's extended batch had not reached its Sync.
/// The next client then ran inside that batch's implicit transaction.
#[tokio::test]
async fn a_connection_is_not_released_before_the_batch_sync() {
    let db = "core_release_sync";
    setup(db, "CREATE TABLE t (who text)").await;
    let p = core_proxy(db, "size = 1");
    let mut a = Raw::connect(p.port, "app", db, &[]).await;
    // Leave the connection idle first (a ReadyForQuery 'I' seen).
    assert_eq!(a.value("SELECT 1").await.as_deref(), Some("1"));
    let mut b = msg::extended("INSERT INTO t VALUES ('a')", &[]);
    b.extend(msg::flush());
    a.send(&b).await;
    let got = a.until_tag(b'C').await;
    assert!(got.iter().all(|m| m.tag != b'E'), "{got:?}");
    // Client B wants a connection now (pool size 1).
    let port = p.port;
    let other = tokio::spawn(async move {
        let mut b = Raw::connect(port, "app", "core_release_sync", &[]).await;
        b.simple("INSERT INTO t VALUES ('b')").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A's batch fails before its Sync: its INSERT must roll back.
    let mut b = msg::extended("SELECT 1/0", &[]);
    b.extend(msg::sync());
    a.send(&b).await;
    let (_, err) = split(&a.until_ready(1).await);
    assert_eq!(err.as_deref(), Some("22012"));
    let (_, err) = tokio::time::timeout(Duration::from_secs(10), other)
        .await
        .expect("B finishes")
        .unwrap();
    assert_eq!(err, None);
    let mut d = direct(db).await;
    let (rows, _) = d.simple("SELECT who FROM t ORDER BY who").await;
    assert_eq!(
        rows,
        vec![vec![Some("b".to_string())]],
        "A's rolled-back row leaked"
    );
}

/// Defect: after anything that pinned the client, Terminate was ignored while the backend
/// was held; asyncpg waits for the socket to close and hung in close().
#[tokio::test]
async fn terminate_closes_a_pinned_client_at_once() {
    let db = "core_terminate";
    setup(db, "SELECT 1").await;
    let p = core_proxy(db, "");
    for pin in [
        "SET application_name = 'x'",
        "SELECT set_config('search_path', 'public', false)",
        "CREATE TEMP TABLE tt (a int)",
        "LISTEN chan",
        "BEGIN",
    ] {
        let mut c = Raw::connect(p.port, "app", db, &[]).await;
        assert_eq!(c.simple(pin).await.1, None, "{pin}");
        c.send(&msg::terminate()).await;
        let start = std::time::Instant::now();
        let next = c.recv_within(Duration::from_secs(5)).await;
        assert!(next.is_none(), "{pin}: got {next:?} after Terminate");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{pin}: the proxy did not close the socket after Terminate"
        );
    }
}

/// Defect: `set_config(..., false)` was not seen as session state: the setting stayed on the
/// pooled connection and reached the next clients (19 of 30 in one measurement).
#[tokio::test]
async fn set_config_and_other_session_state_never_reach_another_client() {
    let db = "core_leaks";
    setup(
        db,
        "CREATE SCHEMA leak; CREATE TABLE leak.t (a int); \
         CREATE FUNCTION leak_fn() RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM set_config('search_path', 'leak', false); \
            PERFORM set_config('work_mem', '3456kB', false); RETURN 1; END $$",
    )
    .await;
    let p = core_proxy(db, "size = 1");
    let leaks = [
        "SELECT set_config('statement_timeout', '1234', false)",
        "SELECT set_config('search_path', 'leak', false)",
        "SELECT pg_catalog.set_config('work_mem', '1234kB', false), 1",
        "SELECT pg_advisory_lock(42)",
        "SELECT 1 AS a INTO TEMP t_leak",
        "CREATE OR REPLACE TEMP VIEW v_leak AS SELECT 1",
        "DO $$ BEGIN PERFORM set_config('work_mem', '2345kB', false); END $$",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "PREPARE p_leak AS SELECT 1",
        "LISTEN leak_chan",
        // A function of the user's whose effect the proxy cannot see: the connection is
        // reset before anyone else gets it.
        "SELECT leak_fn()",
        "SELECT public.leak_fn() FROM generate_series(1, 2)",
    ];
    let check = "/* switchyard:primary */ SELECT \
         (SELECT count(*) FROM pg_settings WHERE source = 'session' \
            AND name NOT IN ('application_name', 'client_encoding', 'DateStyle')) \
       + (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory') \
       + (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()) \
       + (SELECT count(*) FROM pg_cursors) \
       + (SELECT count(*) FROM pg_prepared_statements WHERE name NOT LIKE 'sy\\_%') \
       + (SELECT count(*) FROM pg_listening_channels())";
    for leak in leaks {
        let mut a = Raw::connect(p.port, "app", db, &[]).await;
        assert_eq!(a.simple("/* switchyard:primary */ SELECT 1").await.1, None);
        assert_eq!(a.simple(leak).await.1, None, "{leak}");
        // While A is connected, the one connection is A's: B waits and gets 53300 (a FATAL:
        // the checkout timeout ends the session), or gets the connection clean; it never
        // sees A's state.
        let mut b = Raw::connect(p.port, "app", db, &[]).await;
        match tokio::time::timeout(Duration::from_secs(10), b.simple(check)).await {
            Ok((rows, None)) => assert_eq!(
                rows[0][0].as_deref(),
                Some("0"),
                "{leak}: another client's state is visible"
            ),
            Ok((_, Some(code))) => assert_eq!(code, "53300", "{leak}"),
            Err(_) => panic!("{leak}: check hung"),
        }
        // After A leaves, the connection comes back clean.
        a.send(&msg::terminate()).await;
        assert!(a.recv().await.is_none());
        let mut b = Raw::connect(p.port, "app", db, &[]).await;
        let (rows, err) = b.simple(check).await;
        assert_eq!(err, None, "{leak}: the connection did not come back");
        assert_eq!(rows[0][0].as_deref(), Some("0"), "{leak}: left behind");
    }
}

/// Defect: asyncpg's reset on release (advisory unlock, CLOSE ALL, UNLISTEN * in a DO block,
/// RESET ALL) pinned every client, so a pool of asyncpg connections held every backend
/// connection. Statements that only remove state must not pin, and after a client's SET, the
/// same reset unpins it.
#[tokio::test]
async fn statements_that_only_clear_state_do_not_pin() {
    let db = "core_clear";
    setup(db, "SELECT 1").await;
    let p = core_proxy(db, "size = 1");
    let reset = "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nDO $$\nBEGIN\n    \
        PERFORM * FROM pg_listening_channels() LIMIT 1;\n    IF FOUND THEN\n        \
        UNLISTEN *;\n    END IF;\nEND;\n$$;\nRESET ALL;";
    let mut a = Raw::connect(p.port, "app", db, &[("application_name", "client_a")]).await;
    assert_eq!(a.simple("/* switchyard:primary */ SELECT 1").await.1, None);
    assert_eq!(a.simple(reset).await.1, None);
    assert_eq!(a.simple("SET work_mem = '1234kB'").await.1, None);
    assert_eq!(a.simple(reset).await.1, None);
    // A is still connected; B must get the one connection within checkout_timeout.
    let mut b = Raw::connect(p.port, "app", db, &[]).await;
    let (rows, err) = b
        .simple("/* switchyard:primary */ SELECT current_setting('work_mem'), current_setting('application_name')")
        .await;
    assert_eq!(err, None, "A's reset left it pinned");
    assert_ne!(rows[0][0].as_deref(), Some("1234kB"));
    assert_ne!(rows[0][1].as_deref(), Some("client_a"));
    // RESET ALL returns A to its startup parameters, as on a direct connection.
    assert_eq!(
        a.value("/* switchyard:primary */ SELECT current_setting('application_name')")
            .await
            .as_deref(),
        Some("client_a")
    );
}

/// Defect: COPY FROM STDIN hung. libpq and tokio-postgres send Sync after the Execute that
/// starts the COPY and again after CopyDone; the server ignores the first, so the proxy
/// waited for a ReadyForQuery that never came and never released the connection. Large
/// copies also stalled when the proxy's queue towards the server filled: input left in the
/// buffer got no wakeup once the client had sent everything.
#[tokio::test]
async fn copy_from_stdin_with_a_sync_before_the_data_completes_and_releases() {
    let db = "core_copy";
    setup(db, "CREATE TABLE t (a int, b text)").await;
    let p = core_proxy(db, "size = 1");
    let mut expected = 0u64;
    for (round, rows) in [10usize, 1000, 200_000, 3].into_iter().enumerate() {
        let mut c = Raw::connect(p.port, "app", db, &[]).await;
        let mut b = msg::parse("", "COPY t FROM STDIN");
        b.extend(msg::bind("", "", &[]));
        b.extend(msg::execute(""));
        b.extend(msg::sync());
        c.send(&b).await;
        c.until_tag(b'G').await;
        let mut data = Vec::new();
        for i in 0..rows {
            data.extend_from_slice(format!("{i}\tround {round} row {i}\n").as_bytes());
        }
        let mut out = Vec::new();
        for chunk in data.chunks(8192) {
            out.extend(msg::copy_data(chunk));
        }
        out.extend(msg::copy_done());
        out.extend(msg::sync());
        c.send(&out).await;
        let (_, err) = split(&c.until_ready(1).await);
        assert_eq!(err, None, "round {round}");
        expected += rows as u64;
        // The connection is free again: another client gets it (pool size 1).
        let mut other = Raw::connect(p.port, "app", db, &[]).await;
        assert_eq!(
            other
                .value("/* switchyard:primary */ SELECT count(*) FROM t")
                .await
                .as_deref(),
            Some(expected.to_string().as_str()),
            "round {round}"
        );
    }
}

/// A result far larger than the proxy's queues, whose last messages arrive in the same read
/// as the data before them, reaches the client whole.
#[tokio::test]
async fn a_large_result_arrives_whole() {
    let db = "core_large";
    setup(db, "SELECT 1").await;
    let p = core_proxy(db, "");
    let mut c = Raw::connect_with(p.port, "app", db, &[], Some(4096)).await;
    for round in 0..6 {
        let msgs = {
            c.send(&msg::query(
                "SELECT repeat('x', 100) FROM generate_series(1, 50000); COPY (SELECT repeat('y', 200) FROM generate_series(1, 20000)) TO STDOUT; \
                 DO $$ BEGIN FOR i IN 1..30000 LOOP RAISE NOTICE '%', repeat('n', 100); END LOOP; END $$",
            ))
            .await;
            // A client that is slow to read makes the proxy's queue towards it fill up.
            tokio::time::sleep(Duration::from_millis(200 * round)).await;
            c.until_ready(1).await
        };
        assert_eq!(msgs.iter().filter(|m| m.tag == b'D').count(), 50000);
        assert_eq!(msgs.iter().filter(|m| m.tag == b'd').count(), 20000);
        assert_eq!(msgs.iter().filter(|m| m.tag == b'N').count(), 30000);
    }
}

/// In transaction mode RESET returns a setting to the client's startup value, as on a direct
/// connection (the proxy applies startup parameters on pooled connections).
#[tokio::test]
async fn reset_returns_to_the_startup_value() {
    let db = "core_reset";
    setup(db, "SELECT 1").await;
    for mode in ["transaction", "session"] {
        let p = core_proxy_with(db, "size = 2", &format!("pool_mode = \"{mode}\""));
        // Twice: the second client may get the first one's connection back.
        for round in 0..2 {
            let params = [("application_name", "start_app"), ("DateStyle", "SQL, DMY")];
            let mut c = Raw::connect(p.port, "app", db, &params).await;
            let mut d = Raw::connect(cluster().primary_port(), "postgres", db, &params).await;
            for sql in [
                "SET application_name = 'changed'",
                "RESET application_name",
                "SET datestyle = 'ISO'",
                "RESET datestyle",
                "SET datestyle = 'ISO'",
                // Resetting one setting leaves the client's others alone.
                "SET application_name = 'again'",
                "RESET application_name",
                "RESET ALL",
            ] {
                assert_eq!(c.simple(sql).await.1, None, "{sql}");
                assert_eq!(d.simple(sql).await.1, None, "{sql}");
                let q = "/* switchyard:primary */ SELECT current_setting('application_name') || ' ' || current_setting('DateStyle')";
                assert_eq!(
                    c.value(q).await,
                    d.value(q).await,
                    "{mode} {round}: after {sql}"
                );
            }
        }
        // A client with other settings in session mode gets its own.
        let mut c = Raw::connect(p.port, "app", db, &[("DateStyle", "German")]).await;
        c.simple("SET datestyle = 'ISO'").await;
        c.simple("RESET datestyle").await;
        assert_eq!(
            c.value("SELECT current_setting('DateStyle')")
                .await
                .as_deref(),
            Some("German, DMY"),
            "{mode}"
        );
    }
}

/// A transaction-mode login learns what to report from any backend, a replica included; the
/// client must still be told it may write (libpq's target_session_attrs=read-write reads
/// in_hot_standby and default_transaction_read_only at login).
#[tokio::test]
async fn a_login_answered_from_a_replica_still_reports_a_writable_session() {
    let db = "core_login_rw";
    setup(db, "SELECT 1").await;
    let p = core_proxy(db, "");
    // Let the health checker see the replicas up, so the first login may use one.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for _ in 0..4 {
        let url = format!(
            "host=127.0.0.1 port={} user=app dbname={db} target_session_attrs=read-write",
            p.port
        );
        let (ok, out, err) = psql(&url, &["-Atc", "SELECT 1"]);
        assert!(ok, "{out}{err}");
        let mut c = Raw::connect(p.port, "app", db, &[]).await;
        let get = |k: &str| {
            c.params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("in_hot_standby").as_deref(), Some("off"));
        assert_eq!(get("default_transaction_read_only").as_deref(), Some("off"));
        assert_eq!(
            c.simple("CREATE TABLE IF NOT EXISTS w (a int)").await.1,
            None
        );
    }
}

/// The unnamed statement in one batch, its Describe and Bind in later ones: what libpq's
/// `PQprepare(conn, "", ..)` then `PQdescribePrepared(conn, "")` send (psql's `\gdesc`).
/// The batch ends in between, so another connection may serve the next one.
async fn unnamed_across_batches(c: &mut Raw, query_between: bool) -> (String, String) {
    let mut b = msg::parse("", "SELECT $1::int + 1 AS n");
    b.extend(msg::sync());
    c.send(&b).await;
    let got = c.until_ready(1).await;
    assert!(got.iter().all(|m| m.tag != b'E'), "{}", summary(&got));
    if query_between {
        let (_, err) = c.simple("SELECT 2").await;
        assert_eq!(err, None);
    }
    let mut b = msg::describe_statement("");
    b.extend(msg::sync());
    b.extend(msg::bind("", "", &["41"]));
    b.extend(msg::execute(""));
    b.extend(msg::sync());
    c.send(&b).await;
    let got = c.until_ready(2).await;
    let (rows, err) = split(&got);
    (summary(&got), err.unwrap_or_else(|| format!("{rows:?}")))
}

/// Defect: the unnamed statement of one batch was looked for on whatever connection served
/// the next (psql's `\gdesc` failed in PostgreSQL's regression suite: "unnamed prepared
/// statement does not exist"). A Query in between ends it, through the proxy as directly.
#[tokio::test]
async fn the_unnamed_statement_outlives_its_batch_as_on_the_server() {
    let db = "core_unnamed_batches";
    setup(db, "SELECT 1").await;
    let p = core_proxy(db, "size = 2");
    for query_between in [false, true] {
        let mut d = direct(db).await;
        let want = unnamed_across_batches(&mut d, query_between).await;
        for round in 0..6 {
            let mut a = Raw::connect(p.port, "app", db, &[]).await;
            // Another client holds a connection meanwhile (in turns, the one A used).
            let mut other = Raw::connect(p.port, "app", db, &[]).await;
            if round % 2 == 1 {
                let (_, err) = other.simple("BEGIN; SELECT 1").await;
                assert_eq!(err, None);
            }
            let got = unnamed_across_batches(&mut a, query_between).await;
            assert_eq!(
                got.1, want.1,
                "round {round}, query between: {query_between}: {}",
                got.0
            );
            drop(other);
        }
    }
}

/// `lastval()` and `currval()` read the sequence state of the server session, which
/// transaction pooling shares between clients: after an INSERT in autocommit (PHP's
/// `PDO::lastInsertId()`, plain libpq code), the next statement may run on a connection
/// another client used since, and directly nothing like that happens. The proxy must never
/// answer another client's value: four clients over a pool of two, inserting in turn and
/// then asking (extended and simple protocol, `lastval()` and `currval('seq')`), get their own
/// id or SQLSTATE 55000 from the proxy; inside the transaction that inserted (Doctrine's
/// `INSERT` then `SELECT CURRVAL`), or in the same string after the INSERT, the answer is
/// always the right one; and a client alone gets its own connection back and its own value.
/// Before: 40 of 80 interleaved answers were another client's id.
#[tokio::test]
async fn lastval_and_currval_never_answer_another_clients_value() {
    let db = "t_lastval";
    setup(db, "CREATE TABLE lv (id serial PRIMARY KEY, who int)").await;
    let p = core_proxy(db, "size = 2");
    let mut cs = Vec::new();
    for _ in 0..4 {
        cs.push(
            connect(&format!(
                "host=127.0.0.1 port={} user=app dbname={db}",
                p.port
            ))
            .await,
        );
    }
    let insert = "INSERT INTO lv (who) VALUES ($1) RETURNING id";
    let (mut right, mut refused) = (0, 0);
    let mut check =
        |i: usize, what: &str, got: Result<i64, tokio_postgres::Error>, want: i64| match got {
            Ok(v) => {
                assert_eq!(v, want, "client {i}, {what}: another client's value");
                right += 1;
            }
            Err(e) => {
                let db = e.as_db_error().unwrap_or_else(|| panic!("{what}: {e}"));
                assert_eq!(db.code().code(), "55000", "{what}: {db:?}");
                assert!(db.message().contains("switchyard"), "{what}: {db:?}");
                refused += 1;
            }
        };
    for round in 0..10 {
        let mut ids = Vec::new();
        for (i, c) in cs.iter().enumerate() {
            let id: i32 = c.query_one(insert, &[&(i as i32)]).await.unwrap().get(0);
            ids.push(i64::from(id));
        }
        for (i, c) in cs.iter().enumerate() {
            let sql = if round % 2 == 0 {
                "SELECT lastval()"
            } else {
                "SELECT currval('lv_id_seq')"
            };
            let got = c.query_one(sql, &[]).await.map(|r| r.get::<_, i64>(0));
            check(i, sql, got, ids[i]);
            let got = c.simple_query(sql).await.map(|m| {
                m.iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                        _ => None,
                    })
                    .expect("a row")
            });
            check(i, "simple", got, ids[i]);
        }
        // In the transaction that inserted, and after the INSERT in one string: right.
        for (i, c) in cs.iter_mut().enumerate() {
            let tx = c.transaction().await.unwrap();
            let id: i32 = tx.query_one(insert, &[&(i as i32)]).await.unwrap().get(0);
            let cur: i64 = tx
                .query_one("SELECT currval('lv_id_seq')", &[])
                .await
                .unwrap()
                .get(0);
            tx.commit().await.unwrap();
            assert_eq!(cur, i64::from(id), "client {i}: currval in its transaction");
            let m = c
                .simple_query(&format!(
                    "INSERT INTO lv (who) VALUES ({}); SELECT who FROM lv WHERE id = lastval()",
                    100 + i
                ))
                .await
                .unwrap();
            let who = m.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            });
            assert_eq!(who, Some((100 + i).to_string()), "client {i}: one string");
        }
    }
    eprintln!("interleaved lastval/currval: {right} right, {refused} refused");
    assert!(right > 0 && refused > 0, "right {right}, refused {refused}");
    // A client alone: its connection comes back to it, and so does its value.
    let c = &cs[0];
    for _ in 0..10 {
        let id: i32 = c.query_one(insert, &[&0i32]).await.unwrap().get(0);
        let got: i64 = c
            .query_one("SELECT lastval()", &[])
            .await
            .expect("a client alone gets its own value")
            .get(0);
        assert_eq!(got, i64::from(id));
    }
}

/// The proxy's server connections to `db` on every node now (pg_stat_activity).
fn server_connections(db: &str) -> usize {
    let c = cluster();
    (0..c.node_count())
        .map(|n| {
            c.psql(
                n,
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
                     AND application_name = 'switchyard'"
                ),
            )
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
        })
        .sum()
}

/// `server_idle_timeout`: after a burst the pools shrink back to nothing (the servers see
/// the connections go), and the next client is served on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_server_connections_close_after_the_idle_timeout() {
    setup("t_idle", "CREATE TABLE t (x int)").await;
    // (Limits are measured on a clock the sweeper advances once a second: a second or more.)
    let p = core_proxy("t_idle", "server_idle_timeout = \"2s\"");
    let clients = {
        let url = p.conn_str("t_idle");
        futures_util::future::join_all((0..6).map(|_| connect(&url))).await
    };
    futures_util::future::join_all(clients.iter().enumerate().map(|(i, c)| async move {
        c.simple_query("SELECT pg_sleep(0.3)").await.unwrap();
        c.execute("INSERT INTO t VALUES ($1)", &[&(i as i32)])
            .await
            .unwrap();
    }))
    .await;
    let opened = server_connections("t_idle");
    assert!(
        opened >= 4,
        "the burst opened only {opened} server connections"
    );
    let quiet = std::time::Instant::now();
    while server_connections("t_idle") > 0 {
        assert!(
            quiet.elapsed() < Duration::from_secs(10),
            "idle server connections stay open: {}",
            server_connections("t_idle")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        quiet.elapsed() >= Duration::from_millis(700),
        "closed too soon: {:?}",
        quiet.elapsed()
    );
    let n: i64 = clients[0]
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 6);
}

/// `server_lifetime`: a server connection past it is closed, not handed out again; the
/// client goes on on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_past_their_lifetime_are_replaced() {
    setup("t_lifetime", "CREATE TABLE t (x int)").await;
    let p = core_proxy(
        "t_lifetime",
        "server_lifetime = \"3s\"\nserver_idle_timeout = \"0s\"",
    );
    let c = connect(&p.conn_str("t_lifetime")).await;
    async fn pid(c: &tokio_postgres::Client) -> i32 {
        c.query_one("INSERT INTO t VALUES (1) RETURNING pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    }
    let first = pid(&c).await;
    assert_eq!(pid(&c).await, first, "a young connection is reused");
    // Past the lifetime, measured on the sweeper's clock (a second coarse).
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let later = pid(&c).await;
    assert_ne!(
        later, first,
        "a connection past its lifetime was handed out again"
    );
    let alive = cluster()
        .psql(
            0,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {first}"),
        )
        .unwrap();
    assert_eq!(alive.trim(), "0", "the old connection is still open");
}

/// `idle_transaction_timeout`: a client idle inside a transaction is disconnected with 25P03
/// and its transaction rolled back (its row lock released, its connection closed); a client
/// idle outside one, and one waiting for a slow statement inside one, are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_idle_in_a_transaction_is_disconnected_after_the_timeout() {
    setup(
        "t_idle_tx",
        "CREATE TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (1)",
    )
    .await;
    let p = core_proxy("t_idle_tx", "idle_transaction_timeout = \"1s\"");
    let url = p.conn_str("t_idle_tx");
    let idle = connect(&url).await;
    let busy = connect(&url).await;
    let outside = connect(&url).await;
    idle.batch_execute("BEGIN; UPDATE t SET x = 2 WHERE x = 1; INSERT INTO t VALUES (10)")
        .await
        .unwrap();
    busy.batch_execute("BEGIN").await.unwrap();
    // A statement that runs longer than the timeout: the wait is for the server.
    busy.simple_query("SELECT 1 FROM t, pg_sleep(1.6) LIMIT 1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let e = idle
        .simple_query("COMMIT")
        .await
        .expect_err("a client idle in its transaction for 2 s committed");
    let code = e.code().map(|c| c.code().to_owned());
    assert!(code.as_deref() == Some("25P03") || e.is_closed(), "{e:?}");
    // Rolled back: the row lock is gone (a writer gets it at once) and nothing committed.
    outside
        .batch_execute("SET lock_timeout = '2s'; UPDATE t SET x = 1 WHERE x = 1")
        .await
        .unwrap();
    let rows: i64 = outside
        .query_one("SELECT count(*) FROM t WHERE x IN (2, 10)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    // The busy client's transaction and the idle-outside client are intact.
    busy.batch_execute("COMMIT").await.unwrap();
    outside.simple_query("SELECT 1").await.unwrap();
}

/// `client_idle_timeout`: a client idle outside a transaction is disconnected with 57P05;
/// one that keeps talking, and one idle inside a transaction (that is the other setting's
/// business, off here), are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_idle_outside_a_transaction_is_disconnected_after_the_timeout() {
    setup("t_idle_client", "CREATE TABLE t (x int)").await;
    let c = cluster();
    let p = start_proxy(&format!(
        "[general]\nworkers = 1\nclient_idle_timeout = \"1s\"\n[postgres]\nlisten = \"127.0.0.1:0\"\n\
         [[user]]\nname = \"app\"\npassword = \"secret\"\n\
         [[cluster]]\nname = \"t_idle_client\"\ndatabase = \"t_idle_client\"\n\
         primary = \"127.0.0.1:{}\"\nuser = \"postgres\"\n",
        c.primary_port()
    ));
    let url = p.conn_str("t_idle_client");
    let idle = connect(&url).await;
    let talking = connect(&url).await;
    let in_tx = connect(&url).await;
    idle.simple_query("SELECT 1").await.unwrap();
    in_tx
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    for _ in 0..5 {
        talking.simple_query("SELECT 1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let e = idle
        .simple_query("SELECT 1")
        .await
        .expect_err("a client idle for 2 s was served");
    let code = e.code().map(|c| c.code().to_owned());
    assert!(code.as_deref() == Some("57P05") || e.is_closed(), "{e:?}");
    in_tx.batch_execute("COMMIT").await.unwrap();
    let n: i64 = talking
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// A client's `statement_timeout` of 1 ms (set by `set_config`, so carried to every
/// connection it gets) must not cut the proxy's own statement that puts the next client's
/// settings on that connection, although that statement starts under the old timeout. Each
/// next client asks for a time zone its server process has not loaded yet (a file read,
/// slower than a millisecond).
#[tokio::test]
async fn a_tiny_statement_timeout_does_not_cut_the_next_clients_settings() {
    let db = "core_tiny_timeout";
    setup(db, "SELECT 1").await;
    let p = core_proxy(db, "size = 1");
    let mut a = Raw::connect(p.port, "app", db, &[]).await;
    let (_, err) = a
        .simple("SELECT set_config('statement_timeout', '1', false)")
        .await;
    assert_eq!(err, None);
    let zones = [
        "Asia/Tokyo",
        "America/Lima",
        "Africa/Nairobi",
        "Europe/Oslo",
        "Australia/Perth",
        "America/Halifax",
        "Asia/Kolkata",
        "Pacific/Auckland",
        "Europe/Lisbon",
        "America/Bogota",
        "Asia/Dubai",
        "Africa/Lagos",
    ];
    let mut failures = Vec::new();
    for zone in zones {
        // A's setting goes onto the primary's one connection, then B takes it.
        let (_, err) = a.simple("/* switchyard:primary */ SELECT 1").await;
        assert_eq!(err, None);
        let mut b = Raw::connect(p.port, "app", db, &[("TimeZone", zone)]).await;
        let (rows, err) = b
            .simple("/* switchyard:primary */ SELECT current_setting('TimeZone')")
            .await;
        if err.is_some() || rows.first().and_then(|r| r[0].as_deref()) != Some(zone) {
            failures.push(format!("{zone}: {rows:?} {err:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
