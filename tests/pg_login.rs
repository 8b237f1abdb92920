//! Logging in: what a client needs from the servers at login, and when.

mod support;

use std::time::Duration;
use support::*;
use switchyard::testkit::pg::{PgCluster, PgClusterOptions};

/// Defect: every login checked out a primary connection, so while the primary was down no
/// client could log in, not even one that only reads. A transaction-mode login needs no
/// server connection once a client with the same startup settings has logged in, and the
/// first one may use a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_clients_log_in_while_the_primary_is_down() {
    let c = PgCluster::start_with(PgClusterOptions {
        replicas: 2,
        ..Default::default()
    })
    .expect("start PostgreSQL");
    create_db_on(&c, "logindb");
    let p = start_proxy(&routing_config(&c, "logindb", ""));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let replicas = c.replica_ports();
    {
        let client = connect(&p.conn_str("logindb")).await;
        served_by(&client, "SELECT inet_server_port()").await;
    }
    c.stop_node(0, true).unwrap();
    // The health checker notices within a few intervals; logins do not depend on it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..5 {
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_postgres::connect(&p.conn_str("logindb"), tokio_postgres::NoTls),
        )
        .await
        .expect("login in time")
        .expect("login while the primary is down");
        tokio::spawn(conn);
        let port = served_by(&client, "SELECT inet_server_port()").await;
        assert!(replicas.contains(&port), "read served by {port}");
        let e = client
            .simple_query("CREATE TABLE t (a int)")
            .await
            .expect_err("no primary to write to");
        assert!(
            e.to_string().contains("primary") || e.code().is_some(),
            "unclear error: {e}"
        );
    }
}

/// The PostgreSQL listener behind a load balancer (`[postgres] proxy_protocol`): psql logs in
/// through HAProxy sending PROXY v1 and v2 headers; tokio-postgres runs statements and its
/// cancel request (a connection of its own, with its own header) stops a sleep; a client
/// straight to the listener (no header) is refused, as is a balancer outside
/// `proxy_protocol_from` and one whose header stops short (at `client_login_timeout`); the
/// Unix socket asks for no header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_load_balancer_log_in_through_proxy_protocol_headers() {
    create_db("ppdb");
    let dir = support::pki::readable_dir("pp-sock");
    let p = start_proxy(&config_text(
        "ppdb",
        "client_login_timeout = \"1s\"",
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!(
            "proxy_protocol = true\nproxy_protocol_from = [\"127.0.0.1/32\"]\nunix_socket_dir = \"{}\"",
            dir.path().display()
        ),
    ));
    let target = format!("127.0.0.1:{}", p.port);
    let lb = support::haproxy::Haproxy::start(&[
        (target.clone(), "send-proxy"),
        (target.clone(), "send-proxy-v2"),
        (target.clone(), "send-proxy-v2 source 127.0.0.2"),
    ]);
    let url = |port: u16| format!("postgres://app:secret@127.0.0.1:{port}/ppdb?sslmode=disable");
    for &port in &lb.ports[..2] {
        let (ok, out, err) = psql(&url(port), &["-Atc", "SELECT 40 + 2"]);
        assert!(ok, "{err}");
        assert_eq!(out.trim(), "42");
    }
    let conn = format!(
        "host=127.0.0.1 port={} user=app password=secret dbname=ppdb",
        lb.ports[1]
    );
    let client = connect(&conn).await;
    let row = client
        .query_one("SELECT $1::int + 1", &[&41i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    // The admin API's client list: one client inside a transaction holds a primary
    // connection, the other holds none.
    let idle = connect(&conn).await;
    idle.simple_query("SELECT 1").await.unwrap();
    client.simple_query("BEGIN; SELECT 1").await.unwrap();
    let (code, body) = admin_request(
        p.admin_addr(),
        "GET",
        "/clients?protocol=postgres&database=ppdb",
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut shown: Vec<_> = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
            assert!(r["id"].as_i64().unwrap() > 0, "{r}");
            (r["user"].clone(), r["state"].clone(), r["server"].clone())
        })
        .collect();
    shown.sort_by_key(|r| r.1.to_string());
    let primary = format!("127.0.0.1:{}", cluster().primary_port());
    assert_eq!(
        shown,
        [
            ("app".into(), "active".into(), primary.into()),
            ("app".into(), "idle".into(), serde_json::Value::Null),
        ],
        "{body}"
    );
    client.simple_query("COMMIT").await.unwrap();
    drop(idle);
    cancel_stops_a_sleep(client, Duration::from_secs(5)).await;
    // Refused: no header; a balancer outside proxy_protocol_from.
    for port in [p.port, lb.ports[2]] {
        let (ok, _, err) = psql(&url(port), &["-Atc", "SELECT 1"]);
        assert!(!ok, "logged in through {port}");
        assert!(
            err.contains("closed the connection") || err.contains("server closed"),
            "{err}"
        );
    }
    // A header that stops short: dropped at client_login_timeout.
    let t0 = std::time::Instant::now();
    let mut c = tokio::net::TcpStream::connect(&target).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut c, b"PROXY TCP4 192.0.2.1 ")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut c, &mut rest),
    )
    .await
    .expect("closed within 10 s")
    .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    // The Unix socket: no header.
    let sock = format!(
        "postgres://app:secret@/ppdb?host={}&port={}",
        dir.path().display(),
        p.port
    );
    let (ok, out, err) = psql(&sock, &["-Atc", "SELECT 7"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "7");
}

/// `[[user]] max_connections`: a user's client connections are capped over the whole proxy;
/// the login past the cap is refused after authentication with the SQLSTATE and words
/// PostgreSQL uses for a role's CONNECTION LIMIT (compared with a role limited on the
/// server directly), other users are not affected, a client that leaves frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_caps_a_users_clients_as_a_roles_connection_limit_does() {
    create_db("limitdb");
    let c = cluster();
    c.psql(
        0,
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lim') THEN \
         CREATE ROLE lim LOGIN PASSWORD 'lim_pw' CONNECTION LIMIT 2; END IF; END $$",
    )
    .unwrap();
    let text = config_text("limitdb", "", "", "").replace(
        "password = \"secret\"\n",
        "password = \"secret\"\nmax_connections = 2\n",
    );
    assert!(text.contains("max_connections = 2"));
    let p = start_proxy(&text);
    // (code, message) of a third login while two are held, then a login after one left.
    async fn third(conn: String) -> (Option<String>, String, i32) {
        let a = connect(&conn).await;
        let b = connect(&conn).await;
        let refused = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .err()
            .and_then(|e| e.as_db_error().cloned());
        drop(a);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = connect(&conn).await;
        let n: i32 = again.query_one("SELECT 40 + 2", &[]).await.unwrap().get(0);
        drop(b);
        match refused {
            Some(e) => (Some(e.code().code().to_owned()), e.message().to_owned(), n),
            None => (None, String::new(), n),
        }
    }
    let direct = third(format!(
        "host=127.0.0.1 port={} user=lim password=lim_pw dbname=limitdb",
        c.primary_port()
    ))
    .await;
    let proxied = third(p.conn_str("limitdb")).await;
    assert_eq!(
        (direct.0.as_deref(), direct.1.as_str(), direct.2),
        (Some("53300"), "too many connections for role \"lim\"", 42)
    );
    assert_eq!(proxied.0.as_deref(), Some("53300"), "{proxied:?}");
    assert!(
        proxied
            .1
            .starts_with("too many connections for role \"app\""),
        "{proxied:?}"
    );
    assert_eq!(proxied.2, 42);
    // Another user of the proxy is not counted with app.
    let held: Vec<_> = futures_hold(&p.conn_str("limitdb"), 2).await;
    let other = connect(&format!(
        "host=127.0.0.1 port={} user=app_md5 password=secret5 dbname=limitdb",
        p.port
    ))
    .await;
    other.simple_query("SELECT 1").await.unwrap();
    drop(held);
}

/// `n` open clients of `conn`.
async fn futures_hold(conn: &str, n: usize) -> Vec<tokio_postgres::Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(connect(conn).await);
    }
    out
}

/// `[[user]] allow_from`: a user that may log in only from some addresses (and "local", the
/// Unix socket) is refused from others with 28000 before any password exchange, as a server
/// without a pg_hba.conf line for the client; HAProxy relaying from 127.0.0.5 (its `source`)
/// is let in, psql straight from 127.0.0.1 is not, the Unix socket is; other users are not
/// affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_from_refuses_a_user_from_other_addresses_before_its_password() {
    create_db("allowdb");
    let dir = support::pki::readable_dir("allow-sock");
    let text = config_text(
        "allowdb",
        "",
        "",
        &format!("unix_socket_dir = \"{}\"", dir.path().display()),
    )
    .replace(
        "password = \"secret\"\n",
        "password = \"secret\"\nallow_from = [\"127.0.0.5/32\", \"local\"]\n",
    );
    assert!(text.contains("allow_from"));
    let p = start_proxy(&text);
    let lb =
        support::haproxy::Haproxy::start(&[(format!("127.0.0.1:{}", p.port), "source 127.0.0.5")]);
    let url = |port: u16, user: &str, pw: &str| {
        format!("postgres://{user}:{pw}@127.0.0.1:{port}/allowdb?sslmode=disable")
    };
    let (ok, out, err) = psql(&url(lb.ports[0], "app", "secret"), &["-Atc", "SELECT 42"]);
    assert!(ok && out.trim() == "42", "{out}{err}");
    // From 127.0.0.1: refused, the right password or not (no exchange happens).
    for pw in ["secret", "wrong"] {
        let (ok, _, err) = psql(&url(p.port, "app", pw), &["-Atc", "SELECT 1"]);
        assert!(!ok);
        assert!(
            err.contains(
                "no allow_from entry for host \"127.0.0.1\", user \"app\", database \"allowdb\""
            ),
            "{err}"
        );
    }
    let e = tokio_postgres::connect(&p.conn_str("allowdb"), tokio_postgres::NoTls)
        .await
        .err()
        .and_then(|e| e.as_db_error().cloned())
        .expect("refused");
    assert_eq!(e.code().code(), "28000");
    let sock = format!(
        "postgres://app:secret@/allowdb?host={}&port={}",
        dir.path().display(),
        p.port
    );
    let (ok, out, err) = psql(&sock, &["-Atc", "SELECT 7"]);
    assert!(ok && out.trim() == "7", "{out}{err}");
    let (ok, out, err) = psql(&url(p.port, "app_md5", "secret5"), &["-Atc", "SELECT 8"]);
    assert!(ok && out.trim() == "8", "{out}{err}");
}

/// Connects to `conn`; the second half resolves with how the connection ended.
async fn connect_watched(
    conn: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::oneshot::Receiver<Result<(), tokio_postgres::Error>>,
) {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(connection.await);
    });
    (client, rx)
}

/// The SQLSTATE a watched connection ended with, waiting up to five seconds.
async fn ended_with(
    rx: tokio::sync::oneshot::Receiver<Result<(), tokio_postgres::Error>>,
) -> Option<String> {
    let ended = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("the connection ended")
        .unwrap();
    ended
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_owned()))
}

/// Ids `/clients` lists for database `db`.
fn client_ids(p: &Proxy, db: &str) -> Vec<i64> {
    let (code, body) = admin_request(
        p.admin_addr(),
        "GET",
        &format!("/clients?protocol=postgres&database={db}"),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// `POST /clients/close` (PgBouncer's KILL_CLIENT): an idle client is told as a server's
/// `pg_terminate_backend` tells its client (compared with one directly on the primary); one
/// idle inside a transaction has it rolled back and its row lock freed at once; one running
/// `pg_sleep(30)` has the statement stopped on the server; the others go on; an unknown id
/// is 404 and a close naming no client 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_closes_a_client_and_ends_what_it_ran() {
    let db = "closedb";
    create_db(db);
    let c = cluster();
    c.psql_db(
        0,
        db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0)",
    )
    .unwrap();
    let p = start_proxy(&config_text(
        db,
        "",
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "",
    ));
    let conn = p.conn_str(db);
    // Directly: what a terminated client is told.
    let direct = format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        c.primary_port()
    );
    let (x, x_end) = connect_watched(&direct).await;
    x.simple_query("SELECT 1").await.unwrap();
    c.psql_db(
        0,
        db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE usename = 'postgres' AND pid <> pg_backend_pid() AND datname = 'closedb'",
    )
    .unwrap();
    let direct_code = ended_with(x_end).await;
    assert_eq!(direct_code.as_deref(), Some("57P01"));

    // One id per client, in the order they connect.
    let mut ids = Vec::new();
    let new_client = |seen: &mut Vec<i64>| -> i64 {
        let now = client_ids(&p, db);
        let fresh: Vec<_> = now.iter().filter(|i| !seen.contains(i)).copied().collect();
        assert_eq!(fresh.len(), 1, "{now:?} {seen:?}");
        seen.push(fresh[0]);
        fresh[0]
    };
    let (idle, idle_end) = connect_watched(&conn).await;
    idle.simple_query("SELECT 1").await.unwrap();
    let idle_id = new_client(&mut ids);
    let (locker, locker_end) = connect_watched(&conn).await;
    locker
        .simple_query("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    let locker_id = new_client(&mut ids);
    let (sleeper, sleeper_end) = connect_watched(&conn).await;
    let sleeper_id = new_client(&mut ids);
    let sleeping = tokio::spawn(async move { sleeper.simple_query("SELECT pg_sleep(30)").await });
    let (bystander, _bystander_end) = connect_watched(&conn).await;
    bystander.simple_query("SELECT 1").await.unwrap();
    new_client(&mut ids);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let close = |q: &str| admin_request(p.admin_addr(), "POST", &format!("/clients/close?{q}"));
    let (code, body) = close(&format!("protocol=postgres&id={idle_id}"));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["closed"], 1, "{body}");
    assert_eq!(v["clients"][0]["id"], idle_id, "{body}");
    assert_eq!(ended_with(idle_end).await, direct_code, "told as directly");
    assert!(idle.simple_query("SELECT 1").await.is_err());

    // Inside a transaction: rolled back, the lock gone at once.
    let (code, body) = close(&format!("id={locker_id}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(ended_with(locker_end).await.as_deref(), Some("57P01"));
    let updated = bystander
        .simple_query("SET lock_timeout = '2s'; UPDATE t SET v = v + 10 WHERE id = 1")
        .await;
    assert!(updated.is_ok(), "the row stayed locked: {updated:?}");
    let v = c.psql_db(0, db, "SELECT v FROM t WHERE id = 1").unwrap();
    assert_eq!(
        v.trim(),
        "10",
        "the closed client's update was not rolled back"
    );

    // A statement running: stopped on the server too.
    let t0 = std::time::Instant::now();
    let (code, body) = close(&format!("protocol=postgres&id={sleeper_id}"));
    assert_eq!(code, 200, "{body}");
    let r = tokio::time::timeout(Duration::from_secs(5), sleeping)
        .await
        .expect("the sleeping client was answered")
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    let _ = ended_with(sleeper_end).await;
    let mut stopped = false;
    while t0.elapsed() < Duration::from_secs(5) {
        let n = c
            .psql_db(
                0,
                db,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' \
                 AND state = 'active' AND pid <> pg_backend_pid()",
            )
            .unwrap();
        if n.trim() == "0" {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped, "pg_sleep still runs on the server");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // The bystander goes on; the closed ones are gone from the list.
    bystander.simple_query("SELECT 1").await.unwrap();
    let left = client_ids(&p, db);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left.contains(&idle_id) && !left.contains(&locker_id));
    let (code, _) = close(&format!("protocol=postgres&id={idle_id}"));
    assert_eq!(code, 404);
    let (code, _) = close("protocol=postgres");
    assert_eq!(code, 400);
    // By user: every client of it.
    let (code, body) = close(&format!("protocol=postgres&user=app&database={db}"));
    assert_eq!(code, 200, "{body}");
    assert!(bystander.simple_query("SELECT 1").await.is_err());
}

/// `POST /disable` (PgBouncer's DISABLE): new clients of the cluster are refused after they
/// authenticate, with the answer PostgreSQL gives for a database that does not allow
/// connections (compared with `ALTER DATABASE ... ALLOW_CONNECTIONS false` directly);
/// clients already connected go on; `/status` shows it; `POST /enable` lets them in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_cluster_refuses_new_clients_as_a_closed_database_does() {
    let db = "disabledb";
    create_db(db);
    let c = cluster();
    let p = start_proxy(&config_text(
        db,
        "",
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "",
    ));
    let connected = connect(&p.conn_str(db)).await;
    // Directly: what a client of a database that takes no connections is told.
    c.psql(0, &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
        .unwrap();
    let direct = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            c.primary_port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("refused directly");
    c.psql(0, &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
        .unwrap();
    let (code, body) = admin_request(p.admin_addr(), "POST", &format!("/disable?cluster={db}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["disabled"][0],
        db
    );
    let refused = tokio_postgres::connect(&p.conn_str(db), tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused through the proxy");
    assert_eq!(refused.code(), direct.code(), "{refused} / {direct}");
    let (want, got) = (direct.to_string(), refused.to_string());
    assert!(
        got.starts_with(&want),
        "told differently: {got:?} (directly {want:?})"
    );
    // A wrong password is still a wrong password.
    let wrong = tokio_postgres::connect(
        &p.conn_str(db).replace("password=secret", "password=nope"),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(wrong.code().map(|c| c.code()), Some("28P01"), "{wrong}");
    connected.simple_query("SELECT 1").await.unwrap();
    let (_, status) = admin_request(p.admin_addr(), "GET", "/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["clusters"][0]["disabled"], true, "{status}");
    let (code, body) = admin_request(p.admin_addr(), "POST", "/enable");
    assert_eq!(code, 200, "{body}");
    let again = connect(&p.conn_str(db)).await;
    again.simple_query("SELECT 1").await.unwrap();
    let (code, _) = admin_request(p.admin_addr(), "POST", "/disable?cluster=nosuch");
    assert_eq!(code, 404);
}

/// The server process and `work_mem` of the connection a statement of `client` runs on.
async fn ask(client: &tokio_postgres::Client) -> String {
    client
        .simple_query("SELECT pg_backend_pid()::text || ' ' || current_setting('work_mem')")
        .await
        .unwrap()
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap()
}

/// `POST /reconnect` (PgBouncer's RECONNECT): after `ALTER DATABASE ... SET work_mem`, which
/// only new server connections pick up, the proxy's clients still see the old value on the
/// connections pooled before; after the reconnect an idle client's next statement runs on a
/// new connection with the new value, a client inside a transaction finishes it on its own
/// connection, which is then closed, and no connection opened before it is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replaces_the_pooled_server_connections() {
    let db = "reconnectdb";
    create_db(db);
    let c = cluster();
    let p = start_proxy(&config_text(
        db,
        "workers = 1",
        "size = 4\n[admin]\nlisten = \"127.0.0.1:0\"",
        "",
    ));
    let idle = connect(&p.conn_str(db)).await;
    let in_tx = connect(&p.conn_str(db)).await;
    in_tx.simple_query("BEGIN").await.unwrap();
    let tx_before = ask(&in_tx).await;
    let before = ask(&idle).await;
    c.psql(0, &format!("ALTER DATABASE {db} SET work_mem = '7MB'"))
        .unwrap();
    // Pooled connections keep what they had (the idle client's is parked with it).
    let again = ask(&idle).await;
    assert_eq!(again, before);
    assert!(before.ends_with(" 4MB"), "{before}");
    let (code, body) = admin_request(p.admin_addr(), "POST", &format!("/reconnect?cluster={db}"));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reconnect"][0], db, "{body}");
    let after = ask(&idle).await;
    assert!(after.ends_with(" 7MB"), "{after} (before {before})");
    // The transaction goes on where it was.
    assert_eq!(ask(&in_tx).await, tx_before);
    in_tx.simple_query("COMMIT").await.unwrap();
    let old: Vec<String> = [&before, &tx_before]
        .iter()
        .map(|s| s.split(' ').next().unwrap().to_owned())
        .collect();
    for _ in 0..20 {
        let now = ask(&in_tx).await;
        assert!(now.ends_with(" 7MB"), "{now}");
        assert!(
            !old.contains(&now.split(' ').next().unwrap().to_owned()),
            "{now} reused"
        );
    }
    let start = std::time::Instant::now();
    loop {
        let left = c
            .psql(
                0,
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid IN ({})",
                    old.join(", ")
                ),
            )
            .unwrap();
        if left.trim() == "0" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "old connections still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.psql(0, &format!("ALTER DATABASE {db} RESET work_mem"))
        .unwrap();
}

/// `[general] max_user_connections` (PgBouncer's): every user without a `max_connections` of
/// its own gets that limit, counted per user: the third client of `app` is refused as a
/// role's CONNECTION LIMIT refuses, while `app_md5` has places of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_user_connections_limits_every_user_without_a_limit_of_its_own() {
    let db = "userlimitdb";
    create_db(db);
    let p = start_proxy(&config_text(db, "max_user_connections = 2", "", ""));
    let a = connect(&p.conn_str(db)).await;
    let b = connect(&p.conn_str(db)).await;
    let refused = tokio_postgres::connect(&p.conn_str(db), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a third client of app was let in");
    let e = refused.as_db_error().expect("a server error");
    assert_eq!(e.code().code(), "53300", "{e}");
    assert!(
        e.message()
            .starts_with("too many connections for role \"app\""),
        "{e}"
    );
    let md5 = |n: usize| {
        let url = format!(
            "host=127.0.0.1 port={} user=app_md5 password=secret5 dbname={db}",
            p.port
        );
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(connect(&url).await);
            }
            out
        }
    };
    let others = md5(2).await;
    others[1].simple_query("SELECT 1").await.unwrap();
    a.simple_query("SELECT 1").await.unwrap();
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = connect(&p.conn_str(db)).await;
    c.simple_query("SELECT 1").await.unwrap();
}

/// `POST /clients/close` of a client connected over TLS while its statement runs: psql is
/// told what `pg_terminate_backend` tells it, inside TLS, and ends at once.
#[test]
fn the_admin_api_closes_a_tls_client_and_tells_it_why() {
    let db = "closetlsdb";
    create_db(db);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = switchyard::net::tls::self_signed(dir.path()).unwrap();
    let p = start_proxy(&config_text(
        db,
        "",
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\""),
    ));
    let url = format!("{}?sslmode=require", p.url("app", "secret", db));
    let sleeper = std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        let r = psql(&url, &["-c", "SELECT pg_sleep(30)"]);
        (r, t0.elapsed())
    });
    // Its id, once it is running its statement.
    let start = std::time::Instant::now();
    let id = loop {
        let (_, body) = admin_request(p.admin_addr(), "GET", &format!("/clients?database={db}"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(r) = v["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["state"] == "active")
        {
            break r["id"].as_i64().unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    let (code, body) = admin_request(
        p.admin_addr(),
        "POST",
        &format!("/clients/close?protocol=postgres&id={id}"),
    );
    assert_eq!(code, 200, "{body}");
    let ((ok, _, err), took) = sleeper.join().unwrap();
    assert!(!ok);
    assert!(
        err.contains("terminating connection due to administrator command"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}
