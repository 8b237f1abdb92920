//! Replication lag against real servers: a replica cut from the primary must look stale
//! (it reports replay == receive, so "caught up with what it received" says nothing), and an
//! idle primary, or one inside a long transaction with no commit, must not look like lag.
//! Each test has its own topology and they run one at a time.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;
use switchyard::testkit::pg::{PgCluster, PgClusterOptions};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn topology() -> PgCluster {
    PgCluster::start_with(PgClusterOptions {
        replicas: 2,
        // No background commits (autovacuum, analyze): the tests control every commit.
        extra_conf: vec!["autovacuum = off".to_string()],
        ..Default::default()
    })
    .expect("start PostgreSQL")
}

/// One row of `SHOW switchyard.backends`, as the proxy answers it to a client.
#[derive(Debug, Clone)]
struct BackendRow {
    port: u16,
    in_read_set: bool,
    lag_bytes: u64,
    lag_seconds: f64,
}

async fn show_backends(client: &tokio_postgres::Client) -> Vec<BackendRow> {
    let msgs = client
        .simple_query("SHOW switchyard.backends")
        .await
        .expect("SHOW switchyard.backends");
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(BackendRow {
                port: r.get("address")?.rsplit(':').next()?.parse().ok()?,
                in_read_set: r.get("in_read_set")? == "true",
                lag_bytes: r.get("lag_bytes")?.parse().ok()?,
                lag_seconds: r.get("lag_seconds")?.parse().ok()?,
            }),
            _ => None,
        })
        .collect()
}

async fn row_of(client: &tokio_postgres::Client, port: u16) -> BackendRow {
    let rows = show_backends(client).await;
    rows.iter()
        .find(|r| r.port == port)
        .cloned()
        .unwrap_or_else(|| panic!("no row for port {port}: {rows:?}"))
}

async fn count_reads(client: &tokio_postgres::Client, sql: &str, n: usize) -> HashMap<u16, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        *seen.entry(served_by(client, sql).await).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_from_the_primary_leaves_the_read_set_and_returns() {
    let _g = SERIAL.lock().await;
    let c = topology();
    create_db_on(&c, "cutdb");
    // Time limit only (no byte limit), as in the measured failure.
    let p = start_proxy(&routing_config(&c, "cutdb", "max_lag = \"2s\""));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let [r1, r2] = [c.replica_ports()[0], c.replica_ports()[1]];
    let client = connect(&p.conn_str("cutdb")).await;
    client
        .batch_execute("CREATE TABLE before_cut (x int)")
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    let conninfo = c.disconnect_replica(1).unwrap();
    let cut_at = Instant::now();
    client
        .batch_execute("CREATE TABLE h6 (x int)")
        .await
        .unwrap();
    // The primary keeps writing; replica 1 gets none of it. Within max_lag plus a few
    // health intervals (200 ms) it must leave the read set.
    let mut i = 0;
    let left = loop {
        client
            .batch_execute(&format!("INSERT INTO h6 VALUES ({i})"))
            .await
            .unwrap();
        i += 1;
        let row = row_of(&client, r1).await;
        if !row.in_read_set {
            break row;
        }
        // max_lag plus 15 probe intervals: room for a loaded machine.
        assert!(
            cut_at.elapsed() < Duration::from_secs(2) + Duration::from_secs(3),
            "the cut replica is still in the read set {:?} after the cut: {row:?}; {}",
            cut_at.elapsed(),
            p.backends("cutdb")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "cut replica left the read set after {:?}: {left:?}",
        cut_at.elapsed()
    );
    // Over max_lag (SHOW rounds to milliseconds: just over 2 s may read 2.000).
    assert!(left.lag_seconds >= 2.0, "{left:?}");
    assert!(left.lag_bytes > 0, "{left:?}");
    // Reads go to the other replica, and see the new table.
    let seen = count_reads(&client, "SELECT inet_server_port() FROM h6 LIMIT 1", 100).await;
    assert_eq!(
        seen.get(&r1),
        None,
        "reads reached the cut replica: {seen:?}"
    );
    assert_eq!(seen.get(&r2), Some(&100), "{seen:?}");
    // Streaming again, it catches up and returns (lag under half the limit).
    c.reconnect_replica(1, &conninfo).unwrap();
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
    let back_from = Instant::now();
    loop {
        let row = row_of(&client, r1).await;
        if row.in_read_set {
            assert!(row.lag_seconds <= 1.0, "{row:?}");
            break;
        }
        assert!(
            back_from.elapsed() < Duration::from_secs(5),
            "the replica did not return: {row:?}; {}",
            p.backends("cutdb")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = count_reads(&client, "SELECT inet_server_port() FROM h6 LIMIT 1", 200).await;
    assert!(
        seen.get(&r1).copied().unwrap_or(0) >= 40,
        "the replica did not come back: {seen:?}"
    );
}

/// Asserts for `how_long` that both replicas stay in the read set with a lag under `max`,
/// polling the proxy's own view and `SHOW switchyard.backends`.
async fn replicas_stay(
    p: &Proxy,
    db: &str,
    client: &tokio_postgres::Client,
    replicas: &[u16],
    max: f64,
    how_long: Duration,
    what: &str,
) {
    let before = p.backend_transitions(db);
    let start = Instant::now();
    let mut worst = 0.0f64;
    while start.elapsed() < how_long {
        for &r in replicas {
            let row = row_of(client, r).await;
            worst = worst.max(row.lag_seconds);
            assert!(
                row.in_read_set && row.lag_seconds < max,
                "{what}: replica {r} after {:?}: {row:?}; {}",
                start.elapsed(),
                p.backends(db)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        p.backend_transitions(db),
        before,
        "{what}: a backend changed state: {}",
        p.backends(db)
    );
    eprintln!("{what}: worst replica lag seen {worst:.3} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_primary_or_a_long_transaction_is_not_lag() {
    let _g = SERIAL.lock().await;
    let c = topology();
    create_db_on(&c, "idledb");
    let max_lag = 3.0;
    let p = start_proxy(&routing_config(&c, "idledb", "max_lag = \"3s\""));
    let replicas = c.replica_ports();
    let client = connect(&p.conn_str("idledb")).await;
    client
        .batch_execute("CREATE TABLE l (id int, pad text)")
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;

    // 1. No commit and no write at all for twice max_lag.
    replicas_stay(
        &p,
        "idledb",
        &client,
        &replicas,
        max_lag,
        Duration::from_secs(6),
        "idle primary",
    )
    .await;

    // 2. One transaction open on the primary, writing (WAL streams and replays all the
    // time) but never committing, for more than twice max_lag; nothing else commits. The
    // last replayed commit gets older and older, yet the replicas keep up.
    let primary = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=idledb",
        c.primary_port()
    ))
    .await;
    primary.batch_execute("BEGIN").await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut batches = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                primary
                    .batch_execute(
                        "INSERT INTO l SELECT g, repeat('p', 100) FROM generate_series(1, 2000) g",
                    )
                    .await
                    .unwrap();
                batches += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (primary, batches)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    replicas_stay(
        &p,
        "idledb",
        &client,
        &replicas,
        max_lag,
        Duration::from_secs(6),
        "long transaction",
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (primary, batches) = writer.await.unwrap();
    eprintln!("the open transaction inserted {batches} batches");
    // 3. The transaction stays open, idle: still no lag.
    replicas_stay(
        &p,
        "idledb",
        &client,
        &replicas,
        max_lag,
        Duration::from_secs(4),
        "idle open transaction",
    )
    .await;
    primary.batch_execute("ROLLBACK").await.unwrap();
    let seen = count_reads(&client, "SELECT inet_server_port()", 100).await;
    assert_eq!(seen.get(&c.primary_port()), None, "{seen:?}");
}
