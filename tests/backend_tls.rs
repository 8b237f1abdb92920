//! TLS from the proxy to the servers (`[[cluster]] tls`), against a PostgreSQL primary and
//! replica and a MariaDB primary and replica that the test turns TLS on for, with a
//! certificate authority of its own: each mode reaches the servers as it says (the servers'
//! own views, `pg_stat_ssl` and `Ssl_version`, show the encryption), accounts that the
//! servers accept only over TLS or only with a client certificate log in, and every
//! certificate or name that must not pass is refused with the reason.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::pki::{pki, readable_dir, write_readable};
use switchyard::testkit::mariadb::{MariaCluster, MariaClusterOptions};
use switchyard::testkit::pg::PgCluster;

/// A PostgreSQL primary and replica with TLS on; `tls_user` may log in only over TLS,
/// `cert_user` only over TLS with a client certificate the test authority signed, `cb_user`
/// with a SCRAM password.
fn pg() -> &'static PgCluster {
    static C: OnceLock<PgCluster> = OnceLock::new();
    C.get_or_init(|| tls_cluster(1))
}

/// A primary of its own, set up as [`pg`], for the tests that reach it through the relay
/// (`start_relay`): the relay ends its connections as it likes, and the server log of
/// [`pg`] must show only the proxy's polite closes (see
/// `postgres_servers_are_reached_over_tls_as_each_cluster_says`).
fn relay_pg() -> &'static PgCluster {
    static C: OnceLock<PgCluster> = OnceLock::new();
    C.get_or_init(|| tls_cluster(0))
}

fn tls_cluster(replicas: usize) -> PgCluster {
    let p = pki();
    let c = PgCluster::start(replicas).expect("start PostgreSQL");
    c.psql(
        0,
        "CREATE ROLE tls_user LOGIN SUPERUSER; CREATE ROLE cert_user LOGIN SUPERUSER; \
             SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE cb_user LOGIN SUPERUSER PASSWORD 'cb_pw'",
    )
    .unwrap();
    for node in 0..=replicas {
        c.enable_tls(node, &p.pem.server_cert, &p.pem.server_key, Some(&p.pem.ca))
            .unwrap();
        c.prepend_hba(
            node,
            "hostssl all tls_user 127.0.0.1/32 trust\n\
                 hostnossl all tls_user 127.0.0.1/32 reject\n\
                 host all cb_user 127.0.0.1/32 scram-sha-256\n\
                 hostssl all cert_user 127.0.0.1/32 cert\n\
                 hostnossl all cert_user 127.0.0.1/32 reject\n",
        )
        .unwrap();
    }
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
    // The reloads are asynchronous: wait until a plain login of tls_user is refused and
    // a TLS one works, on both nodes.
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in 0..=replicas {
        let url = |mode: &str| {
            format!(
                "host=127.0.0.1 port={} user=tls_user dbname=postgres sslmode={mode}",
                c.port(node)
            )
        };
        loop {
            let (plain, _, _) = support::psql(&url("disable"), &["-c", "SELECT 1"]);
            let (tls, _, _) = support::psql(&url("require"), &["-c", "SELECT 1"]);
            if !plain && tls {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node}: TLS settings not in effect"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    c
}

fn pg_config(extra_clusters: &str) -> String {
    let c = pg();
    format!(
        r#"
[general]
workers = 1
drain_timeout = "2s"

[postgres]
listen = "127.0.0.1:0"

[health]
interval = "200ms"
timeout = "1s"

[pool]
server_idle_timeout = "1s"

[[user]]
name = "app"
password = "secret"
{extra_clusters}
"#,
    )
    .replace("PRIMARY", &c.primary_port().to_string())
    .replace("REPLICA", &c.replica_ports()[0].to_string())
}

/// One cluster block for the test's PostgreSQL servers: database `db`, as `user`, `tls` lines.
fn pg_cluster(db: &str, user: &str, tls: &str) -> String {
    format!(
        r#"
[[cluster]]
name = "{db}"
database = "{db}"
backend_database = "postgres"
primary = "127.0.0.1:PRIMARY"
replicas = ["127.0.0.1:REPLICA"]
user = "{user}"
{tls}
"#
    )
}

fn conn_str(port: u16, db: &str) -> String {
    format!("host=127.0.0.1 port={port} user=app password=secret dbname={db}")
}

/// Whether the connection that ran it was encrypted, and the port of its server.
const PG_SSL: &str =
    "SELECT ssl::text || ' ' || inet_server_port() FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

async fn one_value(client: &tokio_postgres::Client, sql: &str) -> String {
    for m in client.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap_or("NULL").to_owned();
        }
    }
    panic!("no row from {sql}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_servers_are_reached_over_tls_as_each_cluster_says() {
    let p = pki();
    let c = pg();
    let ca = format!("tls_ca_file = \"{}\"", p.ca);
    let clusters = [
        // The default (prefer) takes TLS when the server offers it.
        pg_cluster("pg_prefer", "tls_user", ""),
        pg_cluster(
            "pg_full",
            "tls_user",
            &format!("tls = \"verify-full\"\n{ca}"),
        ),
        pg_cluster(
            "pg_full_named",
            "tls_user",
            &format!("tls = \"verify-full\"\n{ca}\ntls_server_name = \"db.switchyard.test\""),
        ),
        // verify-ca does not look at the name; the client certificate logs cert_user in.
        pg_cluster(
            "pg_cert",
            "cert_user",
            &format!(
                "tls = \"verify-ca\"\n{ca}\ntls_server_name = \"other.example\"\n\
                 tls_cert = \"{}\"\ntls_key = \"{}\"",
                p.client_cert, p.client_key
            ),
        ),
    ]
    .concat();
    let proxy = support::start_proxy(&pg_config(&clusters));
    // Let the health checks see both servers.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let direct = c
        .psql(
            0,
            "SELECT md5(string_agg(md5(i::text), ',')) FROM generate_series(1, 50000) i",
        )
        .unwrap();
    for db in ["pg_prefer", "pg_full", "pg_full_named", "pg_cert"] {
        let client = support::connect(&conn_str(proxy.port, db)).await;
        // Reads go to the replica, a transaction to the primary: both encrypted.
        let read = one_value(&client, PG_SSL).await;
        assert_eq!(read, format!("true {}", c.replica_ports()[0]), "{db}");
        client.batch_execute("BEGIN").await.unwrap();
        let in_tx = one_value(&client, PG_SSL).await;
        client.batch_execute("COMMIT").await.unwrap();
        assert_eq!(in_tx, format!("true {}", c.primary_port()), "{db}");
        // A larger answer and the extended protocol arrive whole through TLS.
        let big = one_value(
            &client,
            "/* switchyard:primary */ SELECT md5(string_agg(md5(i::text), ',')) \
             FROM generate_series(1, 50000) i",
        )
        .await;
        assert_eq!(big, direct, "{db}");
        let row = client
            .query_one("SELECT $1::text || current_user", &[&"user="])
            .await
            .unwrap();
        let who: String = row.get(0);
        let user = if db == "pg_cert" {
            "cert_user"
        } else {
            "tls_user"
        };
        assert_eq!(who, format!("user={user}"), "{db}");
        // A statement larger than the socket takes at once arrives whole (rustls holds what
        // the socket did not take until it is flushed).
        let big = "x".repeat(24 << 20);
        let len = tokio::time::timeout(
            Duration::from_secs(60),
            one_value(&client, &format!("SELECT length('{big}')")),
        )
        .await
        .unwrap_or_else(|_| panic!("{db}: a 24 MiB statement did not complete"));
        assert_eq!(len, (24 << 20).to_string(), "{db}");
    }
    // A cancel still reaches the server (CancelRequest needs no login).
    let client = support::connect(&conn_str(proxy.port, "pg_full")).await;
    support::cancel_stops_a_sleep(client, Duration::from_secs(2)).await;

    // Idle connections close after a second, with Terminate inside TLS and close_notify, and
    // the health checks' at shutdown: the servers see no connection of tls_user left, and
    // log none as dropped (a connection closed with unread bytes is reset; one closed
    // without close_notify is an "unexpected eof").
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = c
            .psql(
                0,
                "SELECT count(*) FROM pg_stat_activity WHERE usename IN ('tls_user', 'cert_user') \
                 AND application_name = 'switchyard'",
            )
            .unwrap();
        if left == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "{left} server connections stay");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(proxy);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in 0..2 {
        let log = std::fs::read_to_string(c.log_path(node)).unwrap();
        let dropped: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("could not receive data") || l.contains("unexpected eof"))
            .collect();
        assert!(dropped.is_empty(), "node {node}: {dropped:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_that_must_not_pass_are_refused_with_the_reason() {
    let p = pki();
    let clusters = [
        // tls_user may not log in without TLS.
        pg_cluster("pg_off", "tls_user", "tls = \"disable\""),
        // Signed by another authority.
        pg_cluster(
            "pg_wrong_ca",
            "tls_user",
            &format!("tls = \"verify-ca\"\ntls_ca_file = \"{}\"", p.other_ca),
        ),
        // Not the name on the certificate.
        pg_cluster(
            "pg_wrong_name",
            "tls_user",
            &format!(
                "tls = \"verify-full\"\ntls_ca_file = \"{}\"\ntls_server_name = \"other.example\"",
                p.ca
            ),
        ),
        // No client certificate.
        pg_cluster(
            "pg_no_cert",
            "cert_user",
            &format!("tls = \"verify-ca\"\ntls_ca_file = \"{}\"", p.ca),
        ),
    ]
    .concat();
    let proxy = support::start_proxy(&pg_config(&clusters));
    for (db, reason) in [
        ("pg_off", "no encryption"),
        ("pg_wrong_ca", "UnknownIssuer"),
        ("pg_wrong_name", "not valid for name"),
        ("pg_no_cert", "certificate"),
    ] {
        let r = tokio_postgres::connect(&conn_str(proxy.port, db), tokio_postgres::NoTls).await;
        let message = match r {
            Err(e) => format!("{e:?}"),
            Ok((client, conn)) => {
                tokio::spawn(conn);
                match client.simple_query("SELECT 1").await {
                    Err(e) => format!("{e:?}"),
                    Ok(_) => panic!("{db}: a query passed"),
                }
            }
        };
        eprintln!("{db}: {message}");
        assert!(message.contains(reason), "{db}: {message}");
    }
}

/// A TLS relay with a certificate of its own in front of the PostgreSQL primary
/// (`support/pg_tls_relay.py`; it takes only connections that start with SSLRequest).
fn start_relay() -> (support::process::PortProcess, tempfile::TempDir) {
    let dir = readable_dir("sy-relay");
    let (cert, key) = switchyard::net::tls::self_signed(dir.path()).unwrap();
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/pg_tls_relay.py"
    ))
    .arg(relay_pg().primary_port().to_string())
    .args([&cert, &key]);
    let relay = support::process::PortProcess::start(cmd, "python3 with its ssl module");
    (relay, dir)
}

/// A cluster block reaching the primary through the relay on `port`, as `cb_user` over TLS.
fn relay_cluster(port: u16, db: &str, extra: &str) -> String {
    format!(
        r#"
[[cluster]]
name = "{db}"
database = "{db}"
backend_database = "postgres"
primary = "127.0.0.1:{port}"
user = "cb_user"
password = "cb_pw"
tls = "require"
{extra}
"#
    )
}

/// A cancel for a statement on an encrypted server connection goes over TLS too (as libpq
/// 17 sends it): through a relay that takes nothing but TLS, `pg_sleep(30)` is cancelled
/// within seconds (a CancelRequest sent in plain would be dropped by the relay, and the
/// statement would run on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_to_encrypted_connections_go_over_tls() {
    let (relay, _dir) = start_relay();
    let clusters = relay_cluster(relay.port, "pg_cancel_tls", "channel_binding = \"disable\"");
    let proxy = support::start_proxy(&pg_config(&clusters));
    let url = conn_str(proxy.port, "pg_cancel_tls");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(
        one_value(&client, PG_SSL).await.split(' ').next(),
        Some("true")
    );
    support::cancel_stops_a_sleep(client, Duration::from_secs(5)).await;
}

/// `channel_binding`: SCRAM logins to the servers over TLS are bound to the certificate the
/// proxy sees (SCRAM-SHA-256-PLUS). Directly, "require" logs in (PostgreSQL checked the
/// binding against its own certificate) and reads reach the replica too; through a relay that
/// presents a certificate of its own, the bound login fails, with "prefer" (the default)
/// too, while "disable" passes the same relay; "require" refuses a server that lets the
/// proxy in without SCRAM, and a cluster without TLS is a config error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_logins_to_the_servers_are_bound_to_their_certificates() {
    let c = pg();
    let log_at: Vec<usize> = (0..2)
        .map(|n| std::fs::read_to_string(c.log_path(n)).unwrap().len())
        .collect();
    let (relay, _dir) = start_relay();
    let through_relay = |db: &str, mode: &str| relay_cluster(relay.port, db, mode);
    let clusters = [
        pg_cluster(
            "pg_cb",
            "cb_user",
            "password = \"cb_pw\"\ntls = \"require\"\nchannel_binding = \"require\"",
        ),
        pg_cluster(
            "pg_cb_trust",
            "tls_user",
            "tls = \"require\"\nchannel_binding = \"require\"",
        ),
        through_relay("pg_relay_require", "channel_binding = \"require\""),
        through_relay("pg_relay_prefer", ""),
        through_relay("pg_relay_disable", "channel_binding = \"disable\""),
        // cb_user's own logins, by the keys its login to the proxy proves (the proxy has
        // only the server's verifier), bound to the server's certificate.
        pg_cluster(
            "pg_cb_own",
            "cb_user",
            "password = \"cb_pw\"\ntls = \"require\"\nchannel_binding = \"require\"\n\
             server_login = \"client\"",
        ),
        format!(
            "[[user]]\nname = \"cb_user\"\nscram_verifier = \"{}\"\n",
            c.psql(
                0,
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'cb_user'"
            )
            .unwrap()
        ),
    ]
    .concat();
    let proxy = support::start_proxy(&pg_config(&clusters));
    let connect = |db: &'static str| {
        let url = conn_str(proxy.port, db);
        async move {
            let r = tokio_postgres::connect(&url, tokio_postgres::NoTls).await;
            let (client, conn) = r.map_err(|e| format!("{e:?}"))?;
            tokio::spawn(conn);
            Ok::<_, String>(client)
        }
    };

    let client = connect("pg_cb").await.unwrap();
    let primary = one_value(&client, &format!("/* switchyard:primary */ {PG_SSL}")).await;
    assert_eq!(primary, format!("true {}", c.primary_port()));
    // The replica's connections log in the same way (the health checks too: it serves reads).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read = one_value(&client, PG_SSL).await;
        if read == format!("true {}", c.replica_ports()[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no read reached the replica: {read}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let url = format!(
        "host=127.0.0.1 port={} user=cb_user password=cb_pw dbname=pg_cb_own",
        proxy.port
    );
    let (own, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let sql = format!("/* switchyard:primary */ SELECT current_user || ' ' || ({PG_SSL})");
    assert_eq!(
        one_value(&own, &sql).await,
        format!("cb_user true {}", c.primary_port())
    );

    let client = connect("pg_relay_disable").await.unwrap();
    assert_eq!(one_value(&client, "SELECT 41 + 1").await, "42");

    for (db, reason) in [
        ("pg_relay_require", "channel binding"),
        ("pg_relay_prefer", "channel binding"),
        ("pg_cb_trust", "without SCRAM"),
    ] {
        let message = match connect(db).await {
            Err(e) => e,
            Ok(client) => match client.simple_query("SELECT 1").await {
                Err(e) => format!("{e:?}"),
                Ok(_) => panic!("{db}: a query passed"),
            },
        };
        eprintln!("{db}: {message}");
        assert!(message.contains(reason), "{db}: {message}");
    }

    for (tls, why) in [
        ("tls = \"prefer\"", "needs TLS"),
        ("tls = \"disable\"", "needs TLS"),
    ] {
        let text = pg_config(&pg_cluster(
            "pg_cb_bad",
            "cb_user",
            &format!("{tls}\nchannel_binding = \"require\""),
        ));
        let e = switchyard::config::Config::from_toml(&text).unwrap_err();
        assert!(
            e.to_string().contains("channel_binding") && e.to_string().contains(why),
            "{e}"
        );
    }

    // The logins the proxy refused itself (a server that let it in without SCRAM) were ended
    // politely: the servers logged no broken connection meanwhile.
    drop(proxy);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (node, at) in log_at.into_iter().enumerate() {
        let log = std::fs::read_to_string(c.log_path(node)).unwrap();
        let dropped: Vec<&str> = log[at..]
            .lines()
            .filter(|l| l.contains("could not receive data") || l.contains("unexpected eof"))
            .collect();
        assert!(dropped.is_empty(), "node {node}: {dropped:#?}");
    }
}

#[test]
fn a_cluster_whose_tls_files_do_not_load_is_a_config_error() {
    let p = pki();
    let text = pg_config(&pg_cluster(
        "pg_bad",
        "tls_user",
        "tls = \"verify-full\"\ntls_ca_file = \"/nonexistent/ca.pem\"",
    ));
    let cfg = switchyard::config::Config::from_toml(&text).unwrap();
    let e = switchyard::app::check_config(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("cluster[0].tls") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    // A key that is not the certificate's.
    let text = pg_config(&pg_cluster(
        "pg_bad",
        "tls_user",
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            p.client_cert, p.server_key
        ),
    ));
    let cfg = switchyard::config::Config::from_toml(&text).unwrap();
    let e = switchyard::app::check_config(&cfg).unwrap_err().to_string();
    assert!(e.contains("do not fit"), "{e}");
    // verify-ca without an authority.
    let text = pg_config(&pg_cluster("pg_bad", "tls_user", "tls = \"verify-ca\""));
    let e = switchyard::config::Config::from_toml(&text)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tls_ca_file"), "{e}");
}

/// A MariaDB primary and replica with TLS on; `tls_user` must use TLS (`REQUIRE SSL`),
/// `x509_user` a client certificate too (`REQUIRE X509`).
fn maria() -> &'static MariaCluster {
    static C: OnceLock<MariaCluster> = OnceLock::new();
    C.get_or_init(|| {
        let p = pki();
        let c = MariaCluster::start_with(MariaClusterOptions {
            replicas: 1,
            extra_args: vec![
                format!("--ssl-cert={}", p.server_cert),
                format!("--ssl-key={}", p.server_key),
                format!("--ssl-ca={}", p.ca),
            ],
            ..Default::default()
        })
        .expect("start MariaDB");
        c.exec(
            0,
            "CREATE USER tls_user@'%' IDENTIFIED BY 'tls_pw' REQUIRE SSL;\
             GRANT ALL ON *.* TO tls_user@'%';\
             CREATE USER kill_user@'%' IDENTIFIED BY 'kill_pw' REQUIRE SSL;\
             GRANT ALL ON *.* TO kill_user@'%';\
             CREATE USER x509_user@'%' IDENTIFIED BY 'x509_pw' REQUIRE X509;\
             GRANT ALL ON *.* TO x509_user@'%';\
             CREATE DATABASE my_tls;\
             CREATE TABLE my_tls.t (id int PRIMARY KEY, v mediumtext)",
        )
        .unwrap();
        c.wait_caught_up(Duration::from_secs(30)).unwrap();
        c
    })
}

fn my_config(clusters: &str) -> String {
    let c = maria();
    format!(
        r#"
[general]
workers = 1
drain_timeout = "2s"

[mysql]
listen = "127.0.0.1:0"

[health]
interval = "200ms"
timeout = "2s"

[[user]]
name = "app"
password = "app_pw"
{clusters}
"#
    )
    .replace("PRIMARY", &c.primary_port().to_string())
    .replace("REPLICA", &c.replica_ports()[0].to_string())
}

fn my_cluster(db: &str, user: &str, password: &str, tls: &str) -> String {
    format!(
        r#"
[[cluster]]
name = "{db}"
protocol = "mysql"
database = "{db}"
backend_database = "my_tls"
primary = "127.0.0.1:PRIMARY"
replicas = ["127.0.0.1:REPLICA"]
user = "{user}"
password = "{password}"
{tls}
"#
    )
}

fn my_opts(port: u16, db: &str) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app_pw"))
        .db_name(Some(db))
        .prefer_socket(false)
}

/// The TLS version of the server connection that runs it (empty without TLS) and the
/// server's port.
const MY_SSL: &str =
    "SELECT CONCAT(VARIABLE_VALUE, ' ', @@port) FROM information_schema.SESSION_STATUS \
     WHERE VARIABLE_NAME = 'SSL_VERSION'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_servers_are_reached_over_tls_as_each_cluster_says() {
    use mysql_async::prelude::*;
    let p = pki();
    let c = maria();
    let ca = format!("tls_ca_file = \"{}\"", p.ca);
    let clusters = [
        my_cluster("my_prefer", "tls_user", "tls_pw", ""),
        my_cluster(
            "my_full",
            "tls_user",
            "tls_pw",
            &format!("tls = \"verify-full\"\n{ca}"),
        ),
        my_cluster(
            "my_x509",
            "x509_user",
            "x509_pw",
            &format!(
                "tls = \"verify-ca\"\n{ca}\ntls_cert = \"{}\"\ntls_key = \"{}\"",
                p.client_cert, p.client_key
            ),
        ),
        my_cluster("my_off", "tls_user", "tls_pw", "tls = \"disable\""),
        my_cluster(
            "my_wrong_ca",
            "tls_user",
            "tls_pw",
            &format!("tls = \"verify-ca\"\ntls_ca_file = \"{}\"", p.other_ca),
        ),
        my_cluster("my_no_cert", "x509_user", "x509_pw", "tls = \"require\""),
        my_cluster("my_kill", "kill_user", "kill_pw", "tls = \"require\""),
    ]
    .concat();
    let cfg = switchyard::config::Config::from_toml(&my_config(&clusters)).unwrap();
    let server = switchyard::app::Server::start(cfg).unwrap();
    let port = server.my_addr.unwrap().port();
    tokio::time::sleep(Duration::from_millis(800)).await;
    for (i, db) in ["my_prefer", "my_full", "my_x509"].into_iter().enumerate() {
        let mut conn = mysql_async::Conn::new(my_opts(port, db)).await.unwrap();
        let read: String = conn.query_first(MY_SSL).await.unwrap().unwrap();
        let (version, at) = read.split_once(' ').unwrap();
        assert!(version.starts_with("TLSv1."), "{db}: {read}");
        assert_eq!(at, c.replica_ports()[0].to_string(), "{db}");
        // Writes, prepared statements and the answer to them over TLS to the primary.
        let id = i as i64 + 1;
        let big = "y".repeat(12 << 20);
        let len: i64 = tokio::time::timeout(
            Duration::from_secs(60),
            conn.query_first(format!("SELECT LENGTH('{big}')")),
        )
        .await
        .unwrap_or_else(|_| panic!("{db}: a 12 MiB statement did not complete"))
        .unwrap()
        .unwrap();
        assert_eq!(len, 12 << 20, "{db}");
        conn.exec_drop("INSERT INTO t VALUES (?, REPEAT('x', 100000))", (id,))
            .await
            .unwrap();
        let len: i64 = conn
            .exec_first("SELECT LENGTH(v) FROM t FOR UPDATE", ())
            .await
            .unwrap()
            .unwrap();
        assert!(len == 100000, "{db}: {len}");
        let written: String = conn
            .query_first(format!("/* switchyard:primary */ {MY_SSL}"))
            .await
            .unwrap()
            .unwrap();
        assert!(written.starts_with("TLSv1."), "{db}: {written}");
        assert!(
            written.ends_with(&c.primary_port().to_string()),
            "{db}: {written}"
        );
        conn.disconnect().await.unwrap();
    }
    // KILL QUERY logs in to the server as the cluster's user: over TLS too.
    let mut victim = mysql_async::Conn::new(my_opts(port, "my_kill"))
        .await
        .unwrap();
    let mut killer = mysql_async::Conn::new(my_opts(port, "my_kill"))
        .await
        .unwrap();
    let id = victim.id();
    let sleeper = tokio::spawn(async move {
        let t0 = Instant::now();
        let r: Result<Option<i64>, _> = victim.query_first("SELECT SLEEP(30)").await;
        (t0.elapsed(), r.map_err(|e| e.to_string()))
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    killer.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let (took, r) = sleeper.await.unwrap();
    assert!(took < Duration::from_secs(5), "{took:?} {r:?}");

    for (db, reason) in [
        ("my_off", "Access denied"),
        ("my_wrong_ca", "UnknownIssuer"),
        ("my_no_cert", "Access denied"),
    ] {
        let r = async {
            let mut conn = mysql_async::Conn::new(my_opts(port, db)).await?;
            conn.query_drop("SELECT 1").await
        }
        .await;
        let e = r.expect_err(db).to_string();
        eprintln!("{db}: {e}");
        assert!(e.contains(reason), "{db}: {e}");
    }
    // Every connection the proxy opened as these users (pool, health checks, the KILL's
    // and the one it stopped a statement on, never reused) was closed with COM_QUIT inside
    // TLS: MariaDB logs none of them as aborted.
    server.shutdown();
    std::thread::sleep(Duration::from_millis(500));
    for node in 0..2 {
        let log = std::fs::read_to_string(c.log_path(node)).unwrap();
        let aborted: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("Aborted connection")
                    && ["tls_user", "x509_user", "kill_user"]
                        .iter()
                        .any(|u| l.contains(&format!("user: '{u}'")))
            })
            .collect();
        assert!(aborted.is_empty(), "node {node}: {aborted:#?}");
    }
}

/// A certificate and key (PEM) for a P-521 ECDSA key, which OpenSSL serves and rustls does
/// not speak: every TLS handshake with it fails.
fn p521_pair() -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let (ok, out, err) = support::run(std::process::Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:secp521r1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]));
    assert!(ok, "{out}{err}");
    (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

/// "prefer" as libpq's and MySQL's PREFERRED: a server that offers TLS but whose handshake
/// fails is reached without TLS; "require" refuses it with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_connects_without_tls_when_the_handshake_fails() {
    use mysql_async::prelude::*;
    let (cert, key) = p521_pair();
    let pg = PgCluster::start(0).expect("start PostgreSQL");
    pg.enable_tls(0, &cert, &key, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pg.psql(0, "SHOW ssl").unwrap() != "on" {
        assert!(Instant::now() < deadline, "ssl not on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cluster = |db: &str, tls: &str| {
        format!(
            "[[cluster]]\nname = \"{db}\"\ndatabase = \"{db}\"\nbackend_database = \"postgres\"\n\
             primary = \"127.0.0.1:{}\"\nuser = \"postgres\"\ntls = \"{tls}\"\n",
            pg.primary_port()
        )
    };
    let text = format!(
        "[general]\nworkers = 1\n[postgres]\nlisten = \"127.0.0.1:0\"\n\
         [[user]]\nname = \"app\"\npassword = \"secret\"\n{}{}",
        cluster("pg_prefer", "prefer"),
        cluster("pg_require", "require")
    );
    let proxy = support::start_proxy(&text);
    let client = support::connect(&conn_str(proxy.port, "pg_prefer")).await;
    assert_eq!(
        one_value(&client, PG_SSL).await,
        format!("false {}", pg.primary_port())
    );
    let e =
        match tokio_postgres::connect(&conn_str(proxy.port, "pg_require"), tokio_postgres::NoTls)
            .await
        {
            Ok(_) => panic!("pg_require: connected"),
            Err(e) => format!("{e:?}"),
        };
    assert!(e.contains("handshake failed"), "{e}");

    // The same with MariaDB, whose certificate files need only be readable.
    let dir = readable_dir("switchyard-p521-");
    let cert_path = write_readable(&dir, "c.pem", &cert);
    let key_path = write_readable(&dir, "k.pem", &key);
    let my = MariaCluster::start_with(MariaClusterOptions {
        extra_args: vec![
            format!("--ssl-cert={cert_path}"),
            format!("--ssl-key={key_path}"),
        ],
        ..Default::default()
    })
    .expect("start MariaDB");
    assert_eq!(my.value(0, "SELECT @@have_ssl").unwrap(), "YES");
    let cluster = |db: &str, tls: &str| {
        format!(
            "[[cluster]]\nname = \"{db}\"\nprotocol = \"mysql\"\ndatabase = \"{db}\"\n\
             backend_database = \"mysql\"\nprimary = \"127.0.0.1:{}\"\nuser = \"switchyard\"\n\
             password = \"switchyard_pw\"\ntls = \"{tls}\"\n",
            my.primary_port()
        )
    };
    let text = format!(
        "[general]\nworkers = 1\n[mysql]\nlisten = \"127.0.0.1:0\"\n\
         [[user]]\nname = \"app\"\npassword = \"app_pw\"\n{}{}",
        cluster("my_prefer", "prefer"),
        cluster("my_require", "require")
    );
    let cfg = switchyard::config::Config::from_toml(&text).unwrap();
    let server = switchyard::app::Server::start(cfg).unwrap();
    let port = server.my_addr.unwrap().port();
    let mut conn = mysql_async::Conn::new(my_opts(port, "my_prefer"))
        .await
        .unwrap();
    let plain: String = conn.query_first(MY_SSL).await.unwrap().unwrap();
    assert_eq!(plain, format!(" {}", my.primary_port()), "no TLS version");
    drop(conn);
    let e = async {
        let mut conn = mysql_async::Conn::new(my_opts(port, "my_require")).await?;
        conn.query_drop("SELECT 1").await
    }
    .await
    .expect_err("my_require")
    .to_string();
    assert!(e.contains("handshake failed"), "{e}");
    server.shutdown();
}
