//! Starts a real PostgreSQL primary with two streaming replicas through the testkit.

use std::time::{Duration, Instant};
use switchyard::testkit::pg::{self, PgCluster};

#[test]
fn primary_with_two_replicas() {
    let t0 = Instant::now();
    let c = PgCluster::start(2).expect("start cluster");
    eprintln!("cluster start took {:?}", t0.elapsed());
    assert_eq!(c.node_count(), 3);
    assert_eq!(c.replica_ports().len(), 2);
    assert_eq!(c.psql(0, "SELECT pg_is_in_recovery()").unwrap(), "f");
    for n in 1..3 {
        assert_eq!(c.psql(n, "SELECT pg_is_in_recovery()").unwrap(), "t");
        assert!(
            c.psql(n, "CREATE TABLE nope (x int)").is_err(),
            "replica {n} accepted a write"
        );
    }
    assert_eq!(
        c.psql(0, "SELECT count(*) FROM pg_stat_replication")
            .unwrap(),
        "2"
    );

    c.psql(0, "CREATE TABLE kit_t (id int primary key, v text)")
        .unwrap();
    c.psql(
        0,
        "INSERT INTO kit_t SELECT g, 'v' || g FROM generate_series(1, 100) g",
    )
    .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    for n in 1..3 {
        assert_eq!(
            c.psql(n, "SELECT count(*), max(v) FROM kit_t").unwrap(),
            "100|v99"
        );
    }
    c.psql(0, "CREATE DATABASE kit_db").unwrap();
    c.psql_db(
        0,
        "kit_db",
        "CREATE TABLE d (x int); INSERT INTO d VALUES (7)",
    )
    .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    assert_eq!(c.psql_db(2, "kit_db", "SELECT x FROM d").unwrap(), "7");

    let roles = [
        (pg::SCRAM_USER, pg::SCRAM_PASSWORD, "SCRAM-SHA-256$"),
        (pg::MD5_USER, pg::MD5_PASSWORD, "md5"),
        (pg::PLAIN_USER, pg::PLAIN_PASSWORD, "SCRAM-SHA-256$"),
    ];
    for (user, password, prefix) in roles {
        for n in 0..3 {
            let who = c.psql_as(n, user, Some(password), "postgres", "SELECT current_user");
            assert_eq!(who.unwrap(), user, "node {n}");
            let bad = c
                .psql_as(n, user, Some("wrong"), "postgres", "SELECT 1")
                .unwrap_err();
            assert!(
                format!("{bad:#}").contains("authentication failed"),
                "{bad:#}"
            );
            assert!(c.psql_as(n, user, None, "postgres", "SELECT 1").is_err());
        }
        let stored = c
            .psql(
                0,
                &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'"),
            )
            .unwrap();
        assert!(stored.starts_with(prefix), "{user}: {stored}");
    }
}

#[test]
fn kill_restart_and_promote() {
    let c = PgCluster::start(1).expect("start cluster");
    let dir = c.data_dir(1).to_path_buf();
    assert!(dir.join("postmaster.pid").exists());

    c.kill_node(1).unwrap();
    assert!(c.psql(1, "SELECT 1").is_err());
    c.start_node(1).unwrap();
    c.psql(
        0,
        "CREATE TABLE after_kill (x int); INSERT INTO after_kill VALUES (1)",
    )
    .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    assert_eq!(c.psql(1, "SELECT x FROM after_kill").unwrap(), "1");

    c.stop_node(1, true).unwrap();
    c.start_node(1).unwrap();
    c.stop_node(0, false).unwrap();
    c.promote(1).unwrap();
    assert_eq!(c.psql(1, "SELECT pg_is_in_recovery()").unwrap(), "f");
    c.psql(1, "INSERT INTO after_kill VALUES (2)").unwrap();

    let root = dir.parent().unwrap().to_path_buf();
    drop(c);
    assert!(!root.exists(), "{} left behind", root.display());
}
