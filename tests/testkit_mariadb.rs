//! Starts a real MariaDB primary with two GTID replicas through the testkit and exercises what
//! later MySQL proxy tests rely on: replication, read-only replicas, users, lag on demand,
//! crashes, restarts and promotion.

use std::time::{Duration, Instant};
use switchyard::testkit::mariadb::{self, MariaCluster, SqlError};

const T: Duration = Duration::from_secs(30);

fn sql_code(e: &anyhow::Error) -> Option<u32> {
    e.downcast_ref::<SqlError>().map(|e| e.code)
}

fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

fn status(c: &MariaCluster, node: usize, field: &str) -> String {
    let s = c.replica_status(node).unwrap().expect("node is a replica");
    s.get(field)
        .unwrap_or_else(|| panic!("no {field} in {s:?}"))
        .clone()
}

#[test]
fn primary_with_two_replicas() {
    let t0 = Instant::now();
    let c = MariaCluster::start(2).expect("start cluster");
    let startup = t0.elapsed();
    let rss: Vec<u64> = (0..3).map(|n| c.rss_bytes(n).unwrap()).collect();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "MariaDB primary + 2 replicas: start {startup:.2?}, RSS {:.1} MiB in all ({:.1?} MiB)",
        mib(rss.iter().sum()),
        rss.iter().map(|&b| mib(b)).collect::<Vec<_>>()
    );
    assert_eq!(c.node_count(), 3);
    assert_eq!(c.primary(), 0);
    assert_eq!(c.replicas(), vec![1, 2]);
    let ports = [c.primary_port(), c.replica_ports()[0], c.replica_ports()[1]];
    for p in ports {
        assert!(p != 3306 && p != 0);
        std::net::TcpStream::connect(("127.0.0.1", p)).expect("port reachable");
    }
    let root = c.root_dir().to_path_buf();
    for n in 0..3 {
        assert!(c.data_dir(n).starts_with(&root));
        assert!(c.log_path(n).starts_with(&root));
        assert!(c.socket_path(n).starts_with(&root));
    }
    // Settings of every node.
    let settings = "SELECT @@read_only, @@log_bin, @@binlog_format, @@log_slave_updates, \
                    @@gtid_strict_mode, @@skip_name_resolve, @@bind_address, @@server_id";
    assert_eq!(
        c.query(0, settings).unwrap(),
        rows(&[&["0", "1", "ROW", "1", "1", "1", "127.0.0.1", "1"]])
    );
    for n in 1..3 {
        let id = (n + 1).to_string();
        assert_eq!(
            c.query(n, settings).unwrap(),
            rows(&[&["1", "1", "ROW", "1", "1", "1", "127.0.0.1", &id]])
        );
        assert_eq!(status(&c, n, "Slave_IO_Running"), "Yes");
        assert_eq!(status(&c, n, "Slave_SQL_Running"), "Yes");
        assert_eq!(status(&c, n, "Using_Gtid"), "Slave_Pos");
        assert_eq!(status(&c, n, "Master_Port"), c.primary_port().to_string());
    }
    assert_eq!(c.value(0, "SELECT user()").unwrap(), "root@localhost");

    // A write on the primary is on both replicas after the GTID wait.
    c.create_database("kit").unwrap();
    for n in 1..3 {
        assert_eq!(
            c.query(n, "SHOW DATABASES LIKE 'kit'").unwrap(),
            rows(&[&["kit"]])
        );
    }
    c.query_as(
        0,
        mariadb::APP_USER,
        Some(mariadb::APP_PASSWORD),
        Some("kit"),
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO t VALUES (1, 'one'), (2, NULL), (3, 'tab\there')",
    )
    .unwrap();
    c.wait_caught_up(T).unwrap();
    let primary_pos = c.gtid_binlog_pos(0).unwrap();
    for n in 1..3 {
        assert_eq!(
            c.query_db(n, Some("kit"), "SELECT id, v FROM t ORDER BY id")
                .unwrap(),
            rows(&[&["1", "one"], &["2", "NULL"], &["3", "tab\there"]])
        );
        assert_eq!(c.gtid_slave_pos(n).unwrap(), primary_pos);
    }

    // Users: app and the proxy user log in with mysql_native_password; replicas refuse
    // their writes (1290) and app may not read replica status (1227).
    let plugins = c
        .query(
            0,
            "SELECT user, json_value(priv, '$.plugin') FROM mysql.global_priv \
             WHERE user IN ('app', 'switchyard', 'repl') ORDER BY user",
        )
        .unwrap();
    assert_eq!(
        plugins,
        rows(&[
            &["app", "mysql_native_password"],
            &["repl", "mysql_native_password"],
            &["switchyard", "mysql_native_password"]
        ])
    );
    let users = [
        (mariadb::APP_USER, mariadb::APP_PASSWORD),
        (mariadb::PROXY_USER, mariadb::PROXY_PASSWORD),
    ];
    for (user, pw) in users {
        for n in 1..3 {
            let e = c
                .query_as(
                    n,
                    user,
                    Some(pw),
                    Some("kit"),
                    "INSERT INTO t VALUES (9, 'x')",
                )
                .unwrap_err();
            assert_eq!(sql_code(&e), Some(1290), "{user} on node {n}: {e:#}");
            let e = c
                .query_as(n, user, Some(pw), None, "CREATE DATABASE nope")
                .unwrap_err();
            assert_eq!(sql_code(&e), Some(1290), "{user} on node {n}: {e:#}");
            let read = c
                .query_as(n, user, Some(pw), Some("kit"), "SELECT count(*) FROM t")
                .unwrap();
            assert_eq!(read, rows(&[&["3"]]));
            let e = c
                .query_as(n, user, Some("wrong"), None, "SELECT 1")
                .unwrap_err();
            assert_eq!(sql_code(&e), Some(1045), "{e:#}");
        }
        let grants = c
            .query_as(0, user, Some(pw), None, "SHOW GRANTS")
            .unwrap()
            .concat()
            .join("\n");
        assert!(!grants.contains("SUPER") && !grants.contains("READ_ONLY ADMIN"));
        assert!(!grants.contains("ALL PRIVILEGES"), "{grants}");
    }
    let e = c
        .query_as(1, "app", Some("app_pw"), None, "SHOW REPLICA STATUS")
        .unwrap_err();
    assert_eq!(sql_code(&e), Some(1227), "{e:#}");
    let st = c
        .query_as(
            1,
            mariadb::PROXY_USER,
            Some(mariadb::PROXY_PASSWORD),
            None,
            "SHOW REPLICA STATUS",
        )
        .unwrap();
    assert_eq!(st.len(), 1);
    let gtid_sql = "SELECT @@gtid_slave_pos, @@read_only";
    assert_eq!(
        c.query_as(1, "switchyard", Some("switchyard_pw"), None, gtid_sql)
            .unwrap(),
        rows(&[&[&primary_pos, "1"]])
    );

    // Lag by stopping the SQL thread: the replica receives but does not apply.
    c.stop_sql_thread(1).unwrap();
    assert_eq!(status(&c, 1, "Slave_SQL_Running"), "No");
    assert_eq!(status(&c, 1, "Slave_IO_Running"), "Yes");
    c.exec(0, "INSERT INTO kit.t VALUES (4, 'four')").unwrap();
    c.wait_node_caught_up(2, T).unwrap();
    let target = c.gtid_binlog_pos(0).unwrap();
    let io_pos_reached = || status(&c, 1, "Gtid_IO_Pos") == target;
    let t1 = Instant::now();
    while !io_pos_reached() && t1.elapsed() < T {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(io_pos_reached(), "replica 1 did not receive {target}");
    assert!(!mariadb::gtid_covers(&c.gtid_slave_pos(1).unwrap(), &target).unwrap());
    assert_eq!(c.value(1, "SELECT count(*) FROM kit.t").unwrap(), "3");
    assert!(c
        .wait_node_caught_up(1, Duration::from_millis(300))
        .is_err());
    c.start_sql_thread(1).unwrap();
    c.wait_caught_up(T).unwrap();
    assert_eq!(status(&c, 1, "Slave_SQL_Running"), "Yes");
    assert_eq!(
        c.value(1, "SELECT v FROM kit.t WHERE id = 4").unwrap(),
        "four"
    );

    // Lag by MASTER_DELAY. The delay counts from the event's timestamp, which has whole
    // seconds: with a delay of 3 s an event is applied between 2 and 3 s after it was written.
    c.set_master_delay(2, 3).unwrap();
    assert_eq!(status(&c, 2, "SQL_Delay"), "3");
    let written = Instant::now();
    c.exec(0, "INSERT INTO kit.t VALUES (5, 'five')").unwrap();
    let early = c
        .value(2, "SELECT count(*) FROM kit.t WHERE id = 5")
        .unwrap();
    if written.elapsed() < Duration::from_millis(1500) {
        assert_eq!(early, "0", "the delayed replica applied the row at once");
    }
    c.wait_node_caught_up(2, T).unwrap();
    let applied_after = written.elapsed();
    assert!(applied_after >= Duration::from_secs(2), "{applied_after:?}");
    c.set_master_delay(2, 0).unwrap();
    assert_eq!(status(&c, 2, "SQL_Delay"), "0");

    // Kill a replica and start it again: still read-only, replicating, catches up.
    let pid = c.pid(2).unwrap();
    c.kill_node(2).unwrap();
    assert!(!c.is_running(2));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let e = c.query(2, "SELECT 1").unwrap_err();
    assert_eq!(sql_code(&e), Some(2002), "{e:#}");
    c.exec(0, "INSERT INTO kit.t VALUES (6, 'while down')")
        .unwrap();
    c.start_node(2).unwrap();
    c.wait_caught_up(T).unwrap();
    assert_eq!(c.value(2, "SELECT count(*) FROM kit.t").unwrap(), "6");
    assert_eq!(c.value(2, "SELECT @@read_only").unwrap(), "1");
    let e = c
        .query_as(2, "app", Some("app_pw"), Some("kit"), "DELETE FROM t")
        .unwrap_err();
    assert_eq!(sql_code(&e), Some(1290), "{e:#}");

    // Kill the primary and start it again: the replicas reconnect by themselves.
    c.kill_node(0).unwrap();
    c.start_node(0).unwrap();
    assert_eq!(c.value(0, "SELECT @@read_only").unwrap(), "0");
    c.exec(0, "INSERT INTO kit.t VALUES (7, 'after crash')")
        .unwrap();
    c.wait_caught_up(T).unwrap();
    for n in 1..3 {
        assert_eq!(c.value(n, "SELECT count(*) FROM kit.t").unwrap(), "7");
        assert_eq!(status(&c, n, "Slave_IO_Running"), "Yes");
    }

    // A clean stop and start of a replica.
    c.stop_node(1).unwrap();
    assert!(!c.is_running(1));
    assert!(c.stop_node(1).is_err());
    c.start_node(1).unwrap();
    assert!(c.start_node(1).is_err(), "second start of a running node");
    c.exec(0, "INSERT INTO kit.t VALUES (8, 'after stop')")
        .unwrap();
    c.wait_caught_up(T).unwrap();
    assert_eq!(c.value(1, "SELECT count(*) FROM kit.t").unwrap(), "8");

    drop(c);
    assert!(!root.exists(), "{} left behind", root.display());
}

#[test]
fn promote_and_repoint() {
    let c = MariaCluster::start(2).expect("start cluster");
    c.create_database("kit").unwrap();
    c.exec(
        0,
        "CREATE TABLE kit.t (id INT PRIMARY KEY); INSERT INTO kit.t VALUES (1)",
    )
    .unwrap();
    c.wait_caught_up(T).unwrap();

    // Failover: the primary dies, replica 1 is promoted, replica 2 follows it.
    c.kill_node(0).unwrap();
    c.promote(1).unwrap();
    assert_eq!(c.primary(), 1);
    assert_eq!(c.primary_port(), c.port(1));
    assert!(c.replica_status(1).unwrap().is_none());
    assert_eq!(c.value(1, "SELECT @@read_only").unwrap(), "0");
    c.query_as(
        1,
        "app",
        Some("app_pw"),
        Some("kit"),
        "INSERT INTO t VALUES (2)",
    )
    .unwrap();
    c.replicate_from(2, 1).unwrap();
    assert_eq!(c.replicas(), vec![2]);
    assert_eq!(status(&c, 2, "Master_Port"), c.port(1).to_string());
    c.wait_caught_up(T).unwrap();
    assert_eq!(c.value(2, "SELECT count(*) FROM kit.t").unwrap(), "2");

    // The old primary comes back and rejoins as a replica of the new one.
    c.start_node(0).unwrap();
    assert_eq!(c.value(0, "SELECT @@read_only").unwrap(), "0");
    c.replicate_from(0, 1).unwrap();
    assert_eq!(c.replicas(), vec![0, 2]);
    c.exec(1, "INSERT INTO kit.t VALUES (3)").unwrap();
    c.wait_caught_up(T).unwrap();
    for n in [0, 2] {
        assert_eq!(c.value(n, "SELECT count(*) FROM kit.t").unwrap(), "3");
        assert_eq!(c.value(n, "SELECT @@read_only").unwrap(), "1");
    }
    // Restarted as a replica, node 0 stays read-only.
    c.stop_node(0).unwrap();
    c.start_node(0).unwrap();
    let e = c
        .query_as(
            0,
            "app",
            Some("app_pw"),
            Some("kit"),
            "INSERT INTO t VALUES (4)",
        )
        .unwrap_err();
    assert_eq!(sql_code(&e), Some(1290), "{e:#}");
}
