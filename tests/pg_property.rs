//! Transaction atomicity and session isolation as a property: many concurrent clients, each
//! doing a random mix of transactions (simple and extended BEGIN, named and unnamed
//! statements, pipelines, COMMIT, ROLLBACK, errors, disconnects mid-transaction) through the
//! proxy in transaction mode with a small pool, keep a ledger of what each was told was
//! committed. At the end the database must hold exactly the committed rows, and during the
//! run no client may see another client's uncommitted row or setting.
//!
//! Meanwhile the config is reloaded every 100 ms: the pool size changes, the replicas leave
//! the cluster and come back, and a config that does not parse is refused.
//!
//! The run is seeded (`SWITCHYARD_PROP_SEED`, printed on failure) and bounded in clients,
//! transactions and time.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio_postgres::{Client, NoTls};

const CLIENTS: usize = 12;
const TRANSACTIONS: usize = 30;

/// The proxy's config: two workers, `size` connections per backend and worker, the replicas
/// in the cluster or not, reads multiplexed `mux` deep (0: off).
fn config_for(db: &str, size: usize, with_replicas: bool, mux: usize) -> String {
    let c = cluster();
    let replicas: Vec<String> = if with_replicas {
        c.replica_ports()
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect()
    } else {
        Vec::new()
    };
    format!(
        r#"
[general]
workers = 2
drain_timeout = "2s"

[postgres]
listen = "127.0.0.1:0"

[health]
interval = "200ms"
timeout = "1s"

[pool]
size = {size}
checkout_timeout = "20s"
multiplex_depth = {mux}

[[user]]
name = "app"
password = "secret"

[[cluster]]
name = "{db}"
database = "{db}"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]
user = "postgres"
"#,
        primary = c.primary_port(),
        replicas = replicas.join(", "),
    )
}

/// While the clients run: reloads every 100 ms that change the pool size, remove the replicas
/// and add them back, and now and then a config that does not parse (which must change
/// nothing). Returns how many reloads were applied and refused, and how many statements the
/// replaced pools had multiplexed (a lower bound: pools kept by a reload count again).
fn reload_until(
    shared: &switchyard::app::Shared,
    path: &std::path::Path,
    db: &str,
    mux: usize,
    done: &AtomicBool,
) -> (u32, u32, u64) {
    let (mut ok, mut failed, mut multiplexed) = (0, 0, 0);
    let mut step = 0usize;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        step += 1;
        let text = match step % 5 {
            0 => config_for(db, 4, true, mux),
            1 => config_for(db, 3, true, mux),
            2 => config_for(db, 3, false, mux),
            3 => "[general]\nworkers = \"two\"\n".to_string(),
            _ => config_for(db, 5, false, mux),
        };
        std::fs::write(path, text).unwrap();
        // What the pools about to be replaced multiplexed.
        for w in shared.live_workers() {
            for c in w.pg.clusters.load().of_database(db) {
                for p in &c.pools {
                    multiplexed += p.ext.stats().statements;
                }
            }
        }
        match switchyard::reload::reload(shared) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    (ok, failed, multiplexed)
}

async fn connect_as(port: u16, db: &str, me: usize) -> Client {
    let conn = format!(
        "host=127.0.0.1 port={port} user=app password=secret dbname={db} application_name=c{me}"
    );
    let (client, conn) = tokio_postgres::connect(&conn, NoTls)
        .await
        .unwrap_or_else(|e| panic!("client {me} connect: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Stops the reloader however the test ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Commit,
    Rollback,
    /// A statement fails; the client rolls back.
    Error,
    /// The client goes away with the transaction open.
    Disconnect,
    /// No BEGIN: one autocommitted statement.
    Autocommit,
}

type Param = dyn tokio_postgres::types::ToSql + Sync;

/// What one client saw that it must not have.
type Violation = String;

/// One client's run: returns the rows it was told were committed, and violations seen.
async fn client_run(
    port: u16,
    db: &'static str,
    me: usize,
    seed: u64,
) -> (BTreeSet<(i32, i32)>, Vec<Violation>) {
    let mut rng = StdRng::seed_from_u64(seed ^ (me as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut committed = BTreeSet::new();
    let mut bad = Vec::new();
    let mut client = connect_as(port, db, me).await;
    // Some clients keep a session setting (this pins them): others must never see it.
    let mut tagged = rng.gen_bool(0.25);
    if tagged {
        client
            .simple_query(&format!("SELECT set_config('prop.tag', 'c{me}', false)"))
            .await
            .unwrap();
    }
    let mut insert = client
        .prepare("INSERT INTO ledger (client, seq, doomed) VALUES ($1, $2, $3)")
        .await
        .unwrap();
    let me_i = me as i32;
    let mut seq = 0i32;
    for _ in 0..TRANSACTIONS {
        let end = match rng.gen_range(0..100) {
            0..=34 => End::Commit,
            35..=54 => End::Rollback,
            55..=64 => End::Error,
            65..=71 => End::Disconnect,
            _ => End::Autocommit,
        };
        let doomed = !matches!(end, End::Commit | End::Autocommit);
        let mut mine = Vec::new();
        if end == End::Autocommit {
            seq += 1;
            let r = if rng.gen_bool(0.5) {
                client
                    .simple_query(&format!(
                        "INSERT INTO ledger (client, seq, doomed) VALUES ({me}, {seq}, false)"
                    ))
                    .await
                    .map(|_| ())
            } else {
                client
                    .execute(&insert, &[&me_i, &seq, &false])
                    .await
                    .map(|_| ())
            };
            r.unwrap_or_else(|e| panic!("client {me}: autocommit insert: {e}"));
            committed.insert((me_i, seq));
            check(&client, me, tagged, &mut bad).await;
            continue;
        }
        let begin = match rng.gen_range(0..4) {
            0 => "BEGIN",
            1 => "START TRANSACTION",
            2 => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            _ => "begin",
        };
        if rng.gen_bool(0.3) {
            // Extended protocol BEGIN (a named statement in tokio-postgres).
            client.execute(begin, &[]).await.unwrap();
        } else {
            client.batch_execute(begin).await.unwrap();
        }
        for _ in 0..rng.gen_range(1..=4) {
            match rng.gen_range(0..5) {
                0 => {
                    seq += 1;
                    client
                        .simple_query(&format!(
                            "INSERT INTO ledger (client, seq, doomed) VALUES ({me}, {seq}, {doomed})"
                        ))
                        .await
                        .unwrap();
                    mine.push(seq);
                }
                1 => {
                    seq += 1;
                    client
                        .execute(&insert, &[&me_i, &seq, &doomed])
                        .await
                        .unwrap();
                    mine.push(seq);
                }
                2 => {
                    // A statement text prepared on the spot (a new named statement).
                    seq += 1;
                    let sql = format!(
                        "INSERT INTO ledger (client, seq, doomed) VALUES ($1, $2, $3) /* {} */",
                        rng.gen::<u32>()
                    );
                    client.execute(&sql, &[&me_i, &seq, &doomed]).await.unwrap();
                    mine.push(seq);
                }
                3 => {
                    // A pipeline: two inserts and a read in flight at once.
                    let (a, b) = (seq + 1, seq + 2);
                    seq += 2;
                    let p1: [&Param; 3] = [&me_i, &a, &doomed];
                    let p2: [&Param; 3] = [&me_i, &b, &doomed];
                    let p3: [&Param; 1] = [&me_i];
                    let f1 = client.execute(&insert, &p1);
                    let f2 = client.execute(&insert, &p2);
                    let f3 = client.query_one("SELECT count(*) FROM ledger WHERE client = $1", &p3);
                    let (r1, r2, r3) = futures_util::join!(f1, f2, f3);
                    r1.unwrap();
                    r2.unwrap();
                    r3.unwrap();
                    mine.extend([a, b]);
                }
                _ => {
                    // Inside the transaction the client sees its own rows.
                    let n: i64 = client
                        .query_one(
                            "SELECT count(*) FROM ledger WHERE client = $1 AND seq = ANY($2)",
                            &[&me_i, &mine],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    if n != mine.len() as i64 {
                        bad.push(format!(
                            "client {me} sees {n} of its {} rows in its transaction",
                            mine.len()
                        ));
                    }
                }
            }
        }
        match end {
            End::Commit => {
                client
                    .batch_execute("COMMIT")
                    .await
                    .unwrap_or_else(|e| panic!("client {me}: COMMIT: {e}"));
                committed.extend(mine.iter().map(|s| (me_i, *s)));
            }
            End::Rollback => client.batch_execute("ROLLBACK").await.unwrap(),
            End::Error => {
                let e = client.simple_query("SELECT 1/0").await.unwrap_err();
                assert_eq!(e.code().map(|c| c.code()), Some("22012"), "client {me}");
                let e = client.simple_query("SELECT 1").await.unwrap_err();
                assert_eq!(e.code().map(|c| c.code()), Some("25P02"), "client {me}");
                client.batch_execute("ROLLBACK").await.unwrap();
            }
            End::Disconnect => {
                drop(client);
                client = connect_as(port, db, me).await;
                insert = client
                    .prepare("INSERT INTO ledger (client, seq, doomed) VALUES ($1, $2, $3)")
                    .await
                    .unwrap();
                tagged = false;
            }
            End::Autocommit => unreachable!(),
        }
        check(&client, me, tagged, &mut bad).await;
    }
    (committed, bad)
}

/// Between transactions: no other client's uncommitted (doomed) row is visible, and the
/// client's settings are its own.
async fn check(client: &Client, me: usize, tagged: bool, bad: &mut Vec<Violation>) {
    // A plain read as a simple Query (what multiplexing may batch with other clients').
    let rows = client
        .simple_query("SELECT count(*) FROM ledger WHERE doomed")
        .await
        .unwrap_or_else(|e| panic!("client {me}: simple check: {e}"));
    let seen = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    if seen.as_deref() != Some("0") {
        bad.push(format!(
            "client {me} reads {seen:?} rows of transactions that never committed (simple Query)"
        ));
    }
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM ledger WHERE doomed), \
                    current_setting('application_name'), \
                    current_setting('prop.tag', true)",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("client {me}: check: {e}"));
    let doomed: i64 = row.get(0);
    let app: String = row.get(1);
    let tag: Option<String> = row.get(2);
    if doomed != 0 {
        bad.push(format!(
            "client {me} sees {doomed} rows of transactions that never committed"
        ));
    }
    if app != format!("c{me}") {
        bad.push(format!("client {me} has application_name {app:?}"));
    }
    let tag = tag.unwrap_or_default();
    let expected = if tagged {
        format!("c{me}")
    } else {
        String::new()
    };
    if tag != expected {
        bad.push(format!(
            "client {me} sees prop.tag {tag:?}, expected {expected:?}"
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_random_transactions_commit_exactly_what_clients_were_told() {
    property("prop_ledger", 0).await;
}

/// The same with reads multiplexed on shared server connections (`multiplex_depth = 8`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_holds_with_reads_multiplexed() {
    property("prop_ledger_mux", 8).await;
}

async fn property(db: &'static str, mux: usize) {
    ledger_db(db);
    let seed = prop_seed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config_for(db, 4, true, mux)).unwrap();
    let p = start_proxy_file(&path);
    let port = p.port;
    // The config is reloaded every 100 ms while the clients run.
    let done = Arc::new(AtomicBool::new(false));
    let reloader = {
        let (shared, done) = (p.shared(), done.clone());
        std::thread::spawn(move || reload_until(&shared, &path, db, mux, &done))
    };
    let _stop = StopOnDrop(done);
    let runs: Vec<_> = (0..CLIENTS)
        .map(|me| tokio::spawn(client_run(port, db, me, seed)))
        .collect();
    let mut committed = BTreeSet::new();
    let mut bad = Vec::new();
    for r in runs {
        let (c, b) = tokio::time::timeout(Duration::from_secs(240), r)
            .await
            .unwrap_or_else(|_| panic!("a client did not finish (seed {seed})"))
            .unwrap_or_else(|e| panic!("a client failed (seed {seed}): {e}"));
        committed.extend(c);
        bad.extend(b);
    }
    drop(_stop);
    let (reloaded, refused, multiplexed) = reloader.join().unwrap();
    eprintln!(
        "{} rows committed; {reloaded} reloads applied, {refused} refused; \
         {multiplexed} statements multiplexed",
        committed.len()
    );
    if mux > 0 {
        assert!(multiplexed > 0, "nothing was multiplexed");
    }
    assert!(bad.is_empty(), "seed {seed}: {bad:#?}");
    assert!(
        reloaded >= 4 && refused >= 1,
        "too few reloads during the run to mean anything"
    );
    // The truth, read directly from the primary.
    let d = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        cluster().primary_port()
    ))
    .await;
    let rows = d
        .query("SELECT client, seq, doomed FROM ledger", &[])
        .await
        .unwrap();
    let doomed: Vec<(i32, i32)> = rows
        .iter()
        .filter(|r| r.get::<_, bool>(2))
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        doomed.is_empty(),
        "seed {seed}: rows of transactions that did not commit: {doomed:?}"
    );
    let on_server: BTreeSet<(i32, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let lost: Vec<_> = committed.difference(&on_server).collect();
    let extra: Vec<_> = on_server.difference(&committed).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "seed {seed}: committed but missing {lost:?}; on the server but never committed {extra:?}"
    );
    assert!(
        committed.len() > CLIENTS * 5,
        "too little was committed to mean anything"
    );
    drop(p);
    // Nothing the proxy held stays open on the server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open: i64 = d
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "seed {seed}: transactions left open on the server");
}

// ---------------------------------------------------------------------------------------------
// Cancel requests at random moments

/// Clients 0..VICTIMS get CancelRequests at random moments; the others never may be stopped.
const VICTIMS: usize = 4;
const CANCEL_CLIENTS: usize = 8;
const CANCEL_ROUNDS: usize = 40;

/// What a statement's failure was: a cancel (57014) or anything else (which fails the test).
fn cancelled(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
}

/// One client of the cancel property: returns the rows it was told were committed, its
/// violations, and how many of its statements were cancelled.
async fn cancel_client(
    port: u16,
    db: &'static str,
    me: usize,
    seed: u64,
    tokens: Arc<std::sync::Mutex<Vec<Option<tokio_postgres::CancelToken>>>>,
) -> (BTreeSet<(i32, i32)>, Vec<Violation>, u32) {
    let mut rng = StdRng::seed_from_u64(seed ^ (me as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let client = connect_as(port, db, me).await;
    if me < VICTIMS {
        tokens.lock().unwrap()[me] = Some(client.cancel_token());
    }
    let insert = client
        .prepare("INSERT INTO ledger (client, seq, doomed) VALUES ($1, $2, false)")
        .await
        .unwrap();
    let me_i = me as i32;
    let (mut committed, mut bad, mut stopped) = (BTreeSet::new(), Vec::new(), 0u32);
    let mut seq = 0i32;
    // A statement's failure: a cancel is allowed for a victim only; anything else never.
    let mut failed = |what: &str, e: tokio_postgres::Error, bad: &mut Vec<Violation>| {
        if !cancelled(&e) {
            panic!("client {me}: {what}: {e} ({:?})", e.as_db_error());
        }
        stopped += 1;
        if me >= VICTIMS {
            bad.push(format!(
                "client {me} (never cancelled) had {what} cancelled"
            ));
        }
    };
    for _ in 0..CANCEL_ROUNDS {
        match rng.gen_range(0..6) {
            0 => {
                seq += 1;
                let sql =
                    format!("INSERT INTO ledger (client, seq, doomed) VALUES ({me}, {seq}, false)");
                match client.simple_query(&sql).await {
                    Ok(_) => {
                        committed.insert((me_i, seq));
                    }
                    Err(e) => failed("an insert", e, &mut bad),
                }
            }
            1 => {
                seq += 1;
                match client.execute(&insert, &[&me_i, &seq]).await {
                    Ok(_) => {
                        committed.insert((me_i, seq));
                    }
                    Err(e) => failed("a prepared insert", e, &mut bad),
                }
            }
            2 => {
                // A plain read, which multiplexing batches with other clients' reads.
                if let Err(e) = client
                    .simple_query("SELECT count(*) FROM ledger WHERE NOT doomed")
                    .await
                {
                    failed("a read", e, &mut bad);
                }
            }
            3 => {
                if let Err(e) = client.simple_query("SELECT pg_sleep(0.03)").await {
                    failed("a sleep", e, &mut bad);
                }
            }
            _ => {
                // A transaction: a cancel anywhere in it means nothing of it commits.
                let (a, b) = (seq + 1, seq + 2);
                seq += 2;
                let body = async {
                    client.batch_execute("BEGIN").await?;
                    client.execute(&insert, &[&me_i, &a]).await?;
                    client.simple_query("SELECT pg_sleep(0.01)").await?;
                    client.execute(&insert, &[&me_i, &b]).await?;
                    client.batch_execute("COMMIT").await
                };
                match body.await {
                    Ok(()) => {
                        committed.extend([(me_i, a), (me_i, b)]);
                    }
                    Err(e) => {
                        failed("a transaction's statement", e, &mut bad);
                        // The ROLLBACK is a victim's statement too, which a cancel may hit
                        // (a run failed on exactly that, 2026-12-04): tried again.
                        while let Err(e) = client.batch_execute("ROLLBACK").await {
                            failed("a ROLLBACK", e, &mut bad);
                        }
                    }
                }
            }
        }
    }
    (committed, bad, stopped)
}

async fn cancel_property(db: &'static str, mux: usize) {
    ledger_db(db);
    let seed = prop_seed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config_for(db, 3, true, mux)).unwrap();
    let p = start_proxy_file(&path);
    let port = p.port;
    let tokens: Arc<std::sync::Mutex<Vec<Option<tokio_postgres::CancelToken>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; VICTIMS]));
    let done = Arc::new(AtomicBool::new(false));
    // Cancels to a random victim every 2-20 ms, whatever it is doing (or not).
    let canceller = {
        let (tokens, done) = (tokens.clone(), done.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut sent = 0u32;
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(2..20))).await;
                let victim = rng.gen_range(0..VICTIMS);
                let token = tokens.lock().unwrap()[victim].clone();
                if let Some(t) = token {
                    let _ = t.cancel_query(NoTls).await;
                    sent += 1;
                }
            }
            sent
        })
    };
    let runs: Vec<_> = (0..CANCEL_CLIENTS)
        .map(|me| tokio::spawn(cancel_client(port, db, me, seed, tokens.clone())))
        .collect();
    let (mut committed, mut bad, mut stopped) = (BTreeSet::new(), Vec::new(), 0);
    for r in runs {
        let (c, b, s) = tokio::time::timeout(Duration::from_secs(240), r)
            .await
            .unwrap_or_else(|_| panic!("a client did not finish (seed {seed})"))
            .unwrap_or_else(|e| panic!("a client failed (seed {seed}): {e}"));
        committed.extend(c);
        bad.extend(b);
        stopped += s;
    }
    done.store(true, Ordering::Relaxed);
    let sent = canceller.await.unwrap();
    eprintln!(
        "{sent} cancels sent, {stopped} statements cancelled, {} rows committed",
        committed.len()
    );
    assert!(bad.is_empty(), "seed {seed}: {bad:#?}");
    assert!(
        stopped > 0,
        "no statement was ever cancelled: the test means nothing"
    );
    let d = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        cluster().primary_port()
    ))
    .await;
    let rows = d
        .query("SELECT client, seq FROM ledger", &[])
        .await
        .unwrap();
    let on_server: BTreeSet<(i32, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let lost: Vec<_> = committed.difference(&on_server).collect();
    let extra: Vec<_> = on_server.difference(&committed).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "seed {seed}: committed but missing {lost:?}; on the server but never committed {extra:?}"
    );
    drop(p);
}

/// CancelRequests at random moments reach only the client they were meant for: the others'
/// statements are never cancelled, and every client's ledger matches the primary (a cancelled
/// statement or transaction committed nothing, an answered one everything).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cancels_stop_only_their_own_clients_statements() {
    cancel_property("prop_cancel", 0).await;
}

/// The same with reads multiplexed: a cancel of a statement on a lane must not stop the
/// other statements of its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cancels_stop_only_their_own_clients_statements_with_reads_multiplexed() {
    cancel_property("prop_cancel_mux", 8).await;
}

/// A fresh database `db` with the ledger table, replayed on the replicas.
fn ledger_db(db: &str) {
    create_db_on(cluster(), db);
    cluster()
        .psql_db(
            0,
            db,
            "CREATE TABLE ledger (client int, seq int, doomed bool, PRIMARY KEY (client, seq))",
        )
        .unwrap();
    cluster()
        .wait_replay_caught_up(Duration::from_secs(30))
        .unwrap();
}

/// One client of the query_timeout property: `rounds` random statements, reads (simple and
/// extended) and transactions that write, a quarter of them sleeping past the limit (20 s
/// against 2 s; the others at most 0.14 s). The property: a statement is stopped only once it
/// has run for the limit (a short one the server was slow to answer may be, and is counted),
/// a long one always is. Returns the rows it was told were committed, its violations, and
/// how many long and short statements were stopped.
async fn timeout_client(
    port: u16,
    db: &'static str,
    me: usize,
    seed: u64,
    rounds: i32,
) -> (BTreeSet<(i32, i32)>, Vec<String>, (u32, u32)) {
    let mut rng = StdRng::seed_from_u64(seed ^ (me as u64 + 1).wrapping_mul(0x9e37_79b9));
    let client = connect(&format!(
        "host=127.0.0.1 port={port} user=app password=secret dbname={db}"
    ))
    .await;
    let me_i = me as i32;
    let (mut committed, mut bad, mut stopped) = (BTreeSet::new(), Vec::new(), (0, 0));
    for seq in 0..rounds {
        let long = rng.gen_bool(0.25);
        let sleep = if long {
            20.0
        } else {
            f64::from(rng.gen_range(1..15)) / 100.0
        };
        let read = rng.gen_bool(0.5);
        if !read {
            client.batch_execute("BEGIN").await.unwrap();
            client
                .execute(
                    "INSERT INTO ledger VALUES ($1, $2, $3)",
                    &[&me_i, &seq, &long],
                )
                .await
                .unwrap();
        }
        let t0 = std::time::Instant::now();
        let r = if read && rng.gen_bool(0.5) {
            client
                .simple_query(&format!("SELECT pg_sleep({sleep})"))
                .await
                .map(drop)
        } else {
            client
                .query("SELECT pg_sleep($1)", &[&sleep])
                .await
                .map(drop)
        };
        let took = t0.elapsed();
        let was_stopped = r.as_ref().err().is_some_and(|e| {
            cancelled(e)
                && e.as_db_error()
                    .is_some_and(|d| d.message().contains("query_timeout"))
        });
        let what = format!("client {me} statement {seq} (long {long}, {took:?}): {r:?}");
        match support::timeout_verdict(long, was_stopped, r.is_ok(), took) {
            Err(why) => bad.push(format!("{what}: {why}")),
            Ok(()) if was_stopped && long => stopped.0 += 1,
            Ok(()) if was_stopped => stopped.1 += 1,
            Ok(()) => {}
        }
        if !read {
            // Stopped, the transaction failed: the client rolls back.
            if r.is_err() {
                client.batch_execute("ROLLBACK").await.unwrap();
            } else {
                client.batch_execute("COMMIT").await.unwrap();
                committed.insert((me_i, seq));
            }
        }
    }
    (committed, bad, stopped)
}

/// `[pool] query_timeout` under load: 8 clients on pools smaller than they are (3 per
/// server), each running random reads and writing transactions, a quarter of them sleeping
/// past the limit. Every long one is stopped, with the proxy's message, before its own end;
/// no statement is stopped before it has run for the limit, whichever connection
/// it lands on after another client's statement was cancelled there (the stopped connection
/// is closed, never handed on, so a late cancel cannot reach it); the primary ends holding
/// exactly what the clients were told was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_stops_only_the_statements_that_run_too_long() {
    let db = "prop_qtimeout";
    ledger_db(db);
    let seed = prop_seed();
    let text = config_for(db, 3, true, 0).replace("[pool]\n", "[pool]\nquery_timeout = \"2s\"\n");
    let p = start_proxy(&text);
    support::drivers::wait_replicas_ready(&p, db);
    let runs: Vec<_> = (0..8)
        .map(|me| tokio::spawn(timeout_client(p.port, db, me, seed, 8)))
        .collect();
    let (mut committed, mut bad, mut stopped) = (BTreeSet::new(), Vec::new(), (0, 0));
    for r in runs {
        let (c, b, s) = tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .unwrap_or_else(|_| panic!("a client did not finish (seed {seed})"))
            .unwrap();
        committed.extend(c);
        bad.extend(b);
        stopped = (stopped.0 + s.0, stopped.1 + s.1);
    }
    eprintln!(
        "{} long and {} short statements stopped (short ones the server held past the \
         limit), {} rows committed",
        stopped.0,
        stopped.1,
        committed.len()
    );
    assert!(bad.is_empty(), "seed {seed}: {bad:#?}");
    assert!(
        stopped.0 > 0,
        "seed {seed}: nothing was long: the test means nothing"
    );
    let d = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        cluster().primary_port()
    ))
    .await;
    let rows = d
        .query("SELECT client, seq FROM ledger", &[])
        .await
        .unwrap();
    let on_server: BTreeSet<(i32, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(on_server, committed, "seed {seed}");
}
