//! Transaction atomicity and session isolation as a property, for the MySQL front end: many
//! concurrent mysql_async clients, each doing a random mix of transactions through the proxy
//! in transaction mode with a pool smaller than the number of clients, keep a ledger of what
//! each was told was committed. At the end the primary must hold exactly the committed rows,
//! and during the run no client may see another client's uncommitted row, time zone or user
//! variable.
//!
//! The mix: transactions begun by `BEGIN`, `START TRANSACTION [READ WRITE]`, `SET autocommit =
//! 0` or inside a multi-statement; inserts as text, as a prepared statement the driver caches,
//! as a statement prepared on the spot (sometimes closed again), and as multi-statements with
//! several result sets; reads of the client's own uncommitted rows; COMMIT, ROLLBACK, a
//! duplicate-key error inside the transaction (which leaves it open, as on the server) then
//! ROLLBACK, COM_QUIT, COM_RESET_CONNECTION or COM_CHANGE_USER with the transaction open,
//! whole transactions in one COM_QUERY, and autocommitted inserts. A quarter of the clients set
//! a user variable (which pins them); clients leave between transactions and come back. Half
//! the clients take a connection from their own mysql_async pool for each transaction and
//! give it back after (the pool resets it with COM_RESET_CONNECTION), some with the
//! transaction still open.
//!
//! Meanwhile the config is reloaded every 100 ms: the pool size changes, the replica leaves
//! the cluster and comes back, and a config that does not parse is refused.
//!
//! The run is seeded (`SWITCHYARD_PROP_SEED`, printed on failure) and bounded in clients,
//! transactions and time.

mod support;

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use switchyard::app::Server;
use switchyard::testkit::mariadb::{MariaCluster, APP_PASSWORD, APP_USER};

const CLIENTS: usize = 12;
const TRANSACTIONS: usize = 60;
const DB: &str = "prop_ledger";

fn cluster() -> &'static MariaCluster {
    static C: OnceLock<MariaCluster> = OnceLock::new();
    C.get_or_init(|| MariaCluster::start(1).expect("start MariaDB primary + 1 replica"))
}

/// The proxy's config: two workers, `size` connections per backend and worker for twelve
/// clients (most statements run on a connection another client used just before), the
/// replica in the read set or not.
fn config_text(size: usize, replica: bool) -> String {
    config_text_for(DB, size, replica)
}

fn config_text_for(db: &str, size: usize, replica: bool) -> String {
    let c = cluster();
    let replicas = if replica {
        format!("replicas = [\"127.0.0.1:{}\"]", c.replica_ports()[0])
    } else {
        String::new()
    };
    format!(
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
checkout_timeout = "20s"

[[user]]
name = "{APP_USER}"
password = "{APP_PASSWORD}"

[[cluster]]
name = "{db}"
protocol = "mysql"
database = "{db}"
primary = "127.0.0.1:{primary}"
{replicas}
user = "switchyard"
password = "switchyard_pw"
"#,
        primary = c.primary_port(),
    )
}

/// The proxy, started from `path` (so that it can be reloaded), once the primary is up and
/// the replica is in the read set.
fn start_proxy(path: &std::path::Path) -> Server {
    start_proxy_for(path, DB)
}

fn start_proxy_for(path: &std::path::Path, db: &str) -> Server {
    start_proxy_with(path, db, &config_text_for(db, 3, true))
}

/// [`start_proxy_for`] with the config `text`.
fn start_proxy_with(path: &std::path::Path, db: &str, text: &str) -> Server {
    let c = cluster();
    std::fs::write(path, text).unwrap();
    let server = Server::start_file(path).expect("proxy");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let clusters = server.shared.clusters.load_full();
        let st = &clusters[db];
        let primary_up = st
            .backends
            .iter()
            .any(|b| b.addr.port() == Some(c.primary_port()) && b.is_up());
        let reader = st
            .backends
            .iter()
            .any(|b| b.addr.port() != Some(c.primary_port()) && b.in_read_set());
        if primary_up && reader {
            return server;
        }
        assert!(Instant::now() < deadline, "proxy never saw its backends");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// While the clients run: reloads every 100 ms that change the pool size, remove the replica
/// and add it back, and now and then a config that does not parse (which must change
/// nothing). Returns how many reloads succeeded and failed.
fn reload_until(server: &Server, path: &std::path::Path, done: &AtomicBool) -> (u32, u32) {
    let (mut ok, mut failed) = (0, 0);
    let mut step = 0usize;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        step += 1;
        let text = match step % 5 {
            0 => config_text(3, true),
            1 => config_text(2, true),
            2 => config_text(2, false),
            3 => "[general]\nworkers = \"two\"\n".to_string(),
            _ => config_text(4, false),
        };
        std::fs::write(path, text).unwrap();
        match server.reload() {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Client `me`'s own time zone (set at connect, replayed by the proxy without pinning).
fn zone(me: usize) -> String {
    format!("+{:02}:{:02}", me % 13, (me % 4) * 15)
}

fn opts_for(port: u16, me: usize) -> OptsBuilder {
    opts_for_db(port, me, DB)
}

fn opts_for_db(port: u16, me: usize, db: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(APP_USER))
        .pass(Some(APP_PASSWORD))
        .db_name(Some(db))
        .prefer_socket(false)
        // `setup` runs again after COM_RESET_CONNECTION and COM_CHANGE_USER (`init` does not).
        .setup(vec![format!("SET time_zone = '{}'", zone(me))])
}

async fn connect_as_db(port: u16, me: usize, db: &str) -> Conn {
    Conn::new(opts_for_db(port, me, db))
        .await
        .unwrap_or_else(|e| panic!("client {me} connect: {e}"))
}

async fn connect_as(port: u16, me: usize) -> Conn {
    Conn::new(opts_for(port, me))
        .await
        .unwrap_or_else(|e| panic!("client {me} connect: {e}"))
}

/// A connection from the client's own mysql_async pool (at most two), which resets each one
/// it gets back (COM_RESET_CONNECTION, then the setup statements again), as its default is.
async fn from_pool(pool: &Pool, me: usize) -> Conn {
    pool.get_conn()
        .await
        .unwrap_or_else(|e| panic!("client {me}: pool: {e}"))
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Commit,
    Rollback,
    /// A duplicate key inside the transaction (it stays open); the client rolls back.
    Error,
    /// COM_QUIT with the transaction open.
    Disconnect,
    /// COM_RESET_CONNECTION with the transaction open (the server rolls it back).
    Reset,
    /// COM_CHANGE_USER (the same user) with the transaction open.
    ChangeUser,
    /// No transaction: one autocommitted insert.
    Autocommit,
    /// `BEGIN; INSERT ...; INSERT ...; COMMIT` (or ROLLBACK) in one COM_QUERY.
    Whole,
}

const INSERT: &str = "INSERT INTO ledger (client, seq, doomed) VALUES (?, ?, ?)";

fn insert_text(me: usize, seq: i32, doomed: bool) -> String {
    format!("INSERT INTO ledger (client, seq, doomed) VALUES ({me}, {seq}, {doomed})")
}

/// Rows of client `me` with a seq in `seqs`, as this session sees them.
async fn own_rows(conn: &mut Conn, me: usize, seqs: &[i32]) -> i64 {
    if seqs.is_empty() {
        return 0;
    }
    let list: Vec<String> = seqs.iter().map(|s| s.to_string()).collect();
    conn.query_first(format!(
        "SELECT count(*) FROM ledger WHERE client = {me} AND seq IN ({})",
        list.join(",")
    ))
    .await
    .unwrap_or_else(|e| panic!("client {me}: own rows: {e}"))
    .unwrap()
}

/// One client's run: the rows it was told were committed, and what it saw that it must not.
async fn client_run(port: u16, me: usize, seed: u64) -> (BTreeSet<(i32, i32)>, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(seed ^ (me as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut committed = BTreeSet::new();
    let mut bad = Vec::new();
    // Odd clients use a mysql_async pool: a connection per transaction, given back to it.
    let pool = (me % 2 == 1).then(|| {
        let limits = PoolConstraints::new(0, 2).unwrap();
        Pool::new(opts_for(port, me).pool_opts(PoolOpts::default().with_constraints(limits)))
    });
    let mut conn = match &pool {
        Some(p) => from_pool(p, me).await,
        None => connect_as(port, me).await,
    };
    let mut tagged = pool.is_none() && rng.gen_bool(0.25);
    if tagged {
        conn.query_drop(format!("SET @tag = 'c{me}'"))
            .await
            .unwrap();
    }
    let me_i = me as i32;
    let mut seq = 0i32;
    for t in 0..TRANSACTIONS {
        if let Some(p) = &pool {
            // The last connection goes back to the pool, which resets it.
            conn = from_pool(p, me).await;
        } else if t > 0 && rng.gen_range(0..8) == 0 {
            // Leave between transactions and come back, tagged or not: a session that was
            // pinned hands its connection on, and the next client must not see its state.
            conn.disconnect().await.unwrap();
            conn = connect_as(port, me).await;
            tagged = rng.gen_bool(0.25);
            if tagged {
                conn.query_drop(format!("SET @tag = 'c{me}'"))
                    .await
                    .unwrap();
            }
            check(&mut conn, me, tagged, &mut bad).await;
        }
        let end = match rng.gen_range(0..100) {
            0..=29 => End::Commit,
            30..=44 => End::Rollback,
            45..=54 => End::Error,
            55..=59 => End::Disconnect,
            60..=62 => End::Reset,
            63..=64 => End::ChangeUser,
            65..=89 => End::Autocommit,
            _ => End::Whole,
        };
        let doomed = !matches!(end, End::Commit | End::Autocommit);
        let ctx = format!("client {me} transaction {t} ({end:?})");
        match end {
            End::Autocommit => {
                seq += 1;
                let r = if rng.gen_bool(0.5) {
                    conn.query_drop(insert_text(me, seq, false)).await
                } else {
                    conn.exec_drop(INSERT, (me_i, seq, false)).await
                };
                r.unwrap_or_else(|e| panic!("{ctx}: insert: {e}"));
                committed.insert((me_i, seq));
                check(&mut conn, me, tagged, &mut bad).await;
                continue;
            }
            End::Whole => {
                let (a, b) = (seq + 1, seq + 2);
                seq += 2;
                let commit = rng.gen_bool(0.5);
                let sql = format!(
                    "BEGIN; {}; {}; {}",
                    insert_text(me, a, !commit),
                    insert_text(me, b, !commit),
                    if commit { "COMMIT" } else { "ROLLBACK" }
                );
                conn.query_drop(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                if commit {
                    committed.extend([(me_i, a), (me_i, b)]);
                }
                check(&mut conn, me, tagged, &mut bad).await;
                continue;
            }
            _ => {}
        }
        let mut mine: Vec<i32> = Vec::new();
        let implicit = rng.gen_range(0..6) == 0;
        if implicit {
            // autocommit off: the first statement opens the transaction.
            conn.query_drop("SET autocommit = 0").await.unwrap();
        } else {
            match rng.gen_range(0..4) {
                0 => conn.query_drop("BEGIN").await.unwrap(),
                1 => conn.query_drop("START TRANSACTION").await.unwrap(),
                2 => conn
                    .query_drop("start transaction read write")
                    .await
                    .unwrap(),
                _ => {
                    // BEGIN and the first insert in one COM_QUERY.
                    seq += 1;
                    conn.query_drop(format!("BEGIN; {}", insert_text(me, seq, doomed)))
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: BEGIN; INSERT: {e}"));
                    mine.push(seq);
                }
            }
        }
        for _ in 0..rng.gen_range(1..=4) {
            match rng.gen_range(0..5) {
                0 => {
                    seq += 1;
                    conn.query_drop(insert_text(me, seq, doomed))
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: text insert: {e}"));
                    mine.push(seq);
                }
                1 => {
                    // The driver prepares this once per connection and executes it again.
                    seq += 1;
                    conn.exec_drop(INSERT, (me_i, seq, doomed))
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: prepared insert: {e}"));
                    mine.push(seq);
                }
                2 => {
                    // A statement prepared on the spot, sometimes closed again.
                    seq += 1;
                    let sql = format!("{INSERT} /* {} */", rng.gen::<u32>());
                    let stmt = conn
                        .prep(sql)
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: prepare: {e}"));
                    conn.exec_drop(&stmt, (me_i, seq, doomed))
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: execute: {e}"));
                    if rng.gen_bool(0.5) {
                        conn.close(stmt).await.unwrap();
                    }
                    mine.push(seq);
                }
                3 => {
                    // Two inserts and a count, three results from one COM_QUERY.
                    let (a, b) = (seq + 1, seq + 2);
                    seq += 2;
                    let sql = format!(
                        "{}; {}; SELECT count(*) FROM ledger WHERE client = {me}",
                        insert_text(me, a, doomed),
                        insert_text(me, b, doomed)
                    );
                    let mut result = conn
                        .query_iter(sql)
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: multi-statement: {e}"));
                    let mut sets = 0;
                    while !result.is_empty() {
                        let _: Vec<mysql_async::Row> = result.collect().await.unwrap();
                        sets += 1;
                    }
                    drop(result);
                    if sets != 3 {
                        bad.push(format!("{ctx}: {sets} results of a three-statement query"));
                    }
                    mine.extend([a, b]);
                }
                _ => {
                    let n = own_rows(&mut conn, me, &mine).await;
                    if n != mine.len() as i64 {
                        bad.push(format!(
                            "{ctx}: sees {n} of its {} rows inside its transaction",
                            mine.len()
                        ));
                    }
                }
            }
        }
        match end {
            End::Commit => {
                conn.query_drop("COMMIT")
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: COMMIT: {e}"));
                committed.extend(mine.iter().map(|s| (me_i, *s)));
            }
            End::Rollback => conn.query_drop("ROLLBACK").await.unwrap(),
            End::Error => {
                // A key this transaction inserted: the statement fails, the transaction
                // stays open with its rows, as on the server.
                if mine.is_empty() {
                    seq += 1;
                    conn.exec_drop(INSERT, (me_i, seq, true)).await.unwrap();
                    mine.push(seq);
                }
                let first = mine[0];
                let e = conn
                    .exec_drop(INSERT, (me_i, first, true))
                    .await
                    .expect_err("a duplicate key");
                match e {
                    mysql_async::Error::Server(ref s) if s.code == 1062 => {}
                    other => panic!("{ctx}: expected 1062, got {other}"),
                }
                let n = own_rows(&mut conn, me, &mine).await;
                if n != mine.len() as i64 {
                    bad.push(format!(
                        "{ctx}: after an error sees {n} of its {} rows",
                        mine.len()
                    ));
                }
                conn.query_drop("ROLLBACK").await.unwrap();
            }
            End::Disconnect => match &pool {
                // Given back to the pool with the transaction open (the driver does not know
                // of a BEGIN sent as text): its reset must roll it back.
                Some(p) => conn = from_pool(p, me).await,
                None => {
                    conn.disconnect()
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: quit: {e}"));
                    conn = connect_as(port, me).await;
                    tagged = false;
                }
            },
            End::Reset => {
                conn.reset()
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: reset: {e}"));
                tagged = false;
            }
            End::ChangeUser => {
                conn.change_user(Default::default())
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: change user: {e}"));
                tagged = false;
            }
            End::Autocommit | End::Whole => unreachable!(),
        }
        if implicit && matches!(end, End::Commit | End::Rollback | End::Error) {
            conn.query_drop("SET autocommit = 1").await.unwrap();
        }
        check(&mut conn, me, tagged, &mut bad).await;
    }
    match pool {
        Some(p) => {
            drop(conn);
            p.disconnect().await.unwrap();
        }
        None => conn.disconnect().await.unwrap(),
    }
    (committed, bad)
}

/// Between transactions: no other client's uncommitted (doomed) row is visible, and the time
/// zone and user variable are the client's own.
/// Asked twice: routed as the proxy likes (a replica, unless the client is pinned), and on the
/// primary, where transactions and pinned sessions leave their connections.
async fn check(conn: &mut Conn, me: usize, tagged: bool, bad: &mut Vec<String>) {
    for hint in ["", "/* switchyard:primary */ "] {
        check_one(conn, hint, me, tagged, bad).await;
    }
}

async fn check_one(conn: &mut Conn, hint: &str, me: usize, tagged: bool, bad: &mut Vec<String>) {
    let (doomed, tz, tag): (i64, String, Option<String>) = conn
        .query_first(format!(
            "{hint}SELECT (SELECT count(*) FROM ledger WHERE doomed), @@time_zone, @tag"
        ))
        .await
        .unwrap_or_else(|e| panic!("client {me}: check: {e}"))
        .unwrap();
    if doomed != 0 {
        bad.push(format!(
            "client {me} sees {doomed} rows of transactions that never committed ({hint})"
        ));
    }
    if tz != zone(me) {
        bad.push(format!(
            "client {me} has time zone {tz}, set {} ({hint})",
            zone(me)
        ));
    }
    let want = tagged.then(|| format!("c{me}"));
    if tag != want {
        bad.push(format!(
            "client {me} sees @tag {tag:?}, expected {want:?} ({hint})"
        ));
    }
}

#[test]
fn concurrent_random_transactions_commit_exactly_what_clients_were_told() {
    ledger_db(DB);
    let seed = prop_seed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let proxy = start_proxy(&path);
    let port = proxy.my_addr.unwrap().port();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let done = AtomicBool::new(false);
    let ((committed, bad), (reloaded, refused)) = std::thread::scope(|s| {
        let reloader = s.spawn(|| reload_until(&proxy, &path, &done));
        // Stops the reloader however the run ends (the scope waits for it, even in a panic).
        let _stop = StopOnDrop(&done);
        let run = rt.block_on(async {
            let runs: Vec<_> = (0..CLIENTS)
                .map(|me| tokio::spawn(client_run(port, me, seed)))
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
            (committed, bad)
        });
        drop(_stop);
        (run, reloader.join().unwrap())
    });
    eprintln!(
        "{} rows committed; {reloaded} reloads applied, {refused} refused",
        committed.len()
    );
    assert!(
        reloaded >= 4 && refused >= 1,
        "too few reloads during the run to mean anything"
    );
    assert!(bad.is_empty(), "seed {seed}: {bad:#?}");
    assert_ledger(DB, &committed, seed);
    assert!(
        committed.len() > CLIENTS * 10,
        "too little was committed to mean anything"
    );
    proxy.shutdown();
}

// ---------------------------------------------------------------------------------------------
// KILL QUERY at random moments

const VICTIMS: usize = 4;
const KILL_CLIENTS: usize = 8;
const KILL_ROUNDS: usize = 40;

/// One client of the kill property: the rows it was told were committed, its violations, and
/// how many of its statements were stopped.
async fn kill_client_in(
    port: u16,
    me: usize,
    seed: u64,
    ids: std::sync::Arc<std::sync::Mutex<Vec<Option<u32>>>>,
    db: &'static str,
) -> (BTreeSet<(i32, i32)>, Vec<String>, u32) {
    let mut rng = StdRng::seed_from_u64(seed ^ (me as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut conn = connect_as_db(port, me, db).await;
    if me < VICTIMS {
        ids.lock().unwrap()[me] = Some(conn.id());
    }
    let me_i = me as i32;
    let (mut committed, mut bad, mut stopped) = (BTreeSet::new(), Vec::new(), 0u32);
    let mut seq = 0i32;
    // A statement stopped by a KILL QUERY: allowed for a victim only. Any other error fails.
    let mut interrupted = |what: &str, bad: &mut Vec<String>| {
        stopped += 1;
        if me >= VICTIMS {
            bad.push(format!("client {me} (never killed) had {what} interrupted"));
        }
    };
    let is_kill =
        |e: &mysql_async::Error| matches!(e, mysql_async::Error::Server(s) if s.code == 1317);
    for _ in 0..KILL_ROUNDS {
        match rng.gen_range(0..5) {
            0 | 1 => {
                seq += 1;
                let r = if rng.gen_bool(0.5) {
                    conn.query_drop(insert_text(me, seq, false)).await
                } else {
                    conn.exec_drop(INSERT, (me_i, seq, false)).await
                };
                match r {
                    Ok(()) => {
                        committed.insert((me_i, seq));
                    }
                    Err(e) if is_kill(&e) => interrupted("an insert", &mut bad),
                    Err(e) => panic!("client {me}: insert: {e}"),
                }
            }
            2 => {
                // SLEEP answers 1 instead of failing when its statement is killed.
                match conn.query_first::<i64, _>("SELECT SLEEP(0.03)").await {
                    Ok(Some(0)) => {}
                    Ok(_) => interrupted("a sleep", &mut bad),
                    Err(e) if is_kill(&e) => interrupted("a sleep", &mut bad),
                    Err(e) => panic!("client {me}: sleep: {e}"),
                }
            }
            3 => match conn
                .query_first::<i64, _>("SELECT count(*) FROM ledger WHERE NOT doomed")
                .await
            {
                Ok(_) => {}
                Err(e) if is_kill(&e) => interrupted("a read", &mut bad),
                Err(e) => panic!("client {me}: read: {e}"),
            },
            _ => {
                // A transaction: a kill anywhere in it and the client rolls all of it back.
                let (a, b) = (seq + 1, seq + 2);
                seq += 2;
                let mut failed = None;
                for (i, step) in ["BEGIN", "a", "SELECT SLEEP(0.01)", "b", "COMMIT"]
                    .iter()
                    .enumerate()
                {
                    let r = match *step {
                        "a" => conn.exec_drop(INSERT, (me_i, a, false)).await,
                        "b" => conn.exec_drop(INSERT, (me_i, b, false)).await,
                        sql => conn.query_drop(sql).await,
                    };
                    if let Err(e) = r {
                        if !is_kill(&e) {
                            panic!("client {me}: transaction step {i}: {e}");
                        }
                        failed = Some(i);
                        break;
                    }
                }
                match failed {
                    None => {
                        committed.extend([(me_i, a), (me_i, b)]);
                    }
                    Some(_) => {
                        interrupted("a transaction's statement", &mut bad);
                        conn.query_drop("ROLLBACK")
                            .await
                            .unwrap_or_else(|e| panic!("client {me}: ROLLBACK: {e}"));
                    }
                }
            }
        }
    }
    conn.disconnect().await.unwrap();
    (committed, bad, stopped)
}

/// KILL QUERY from another connection at random moments (every 2-20 ms, to one of four victim
/// clients, by the id the proxy gave them) stops only that client's statements: the other
/// clients' statements are never interrupted, and every ledger matches the primary.
#[test]
fn random_kills_stop_only_their_own_clients_statements() {
    const KDB: &str = "prop_kill";
    ledger_db(KDB);
    let seed = prop_seed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let proxy = start_proxy_for(&path, KDB);
    let port = proxy.my_addr.unwrap().port();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (committed, bad, stopped, sent) = rt.block_on(async {
        let ids = std::sync::Arc::new(std::sync::Mutex::new(vec![None; VICTIMS]));
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let killer = {
            let (ids, done) = (ids.clone(), done.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut k = connect_as_db(port, 99, KDB).await;
                let mut sent = 0u32;
                while !done.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(2..20))).await;
                    let victim = rng.gen_range(0..VICTIMS);
                    let id = ids.lock().unwrap()[victim];
                    if let Some(id) = id {
                        // An id whose client runs nothing now is an error; that is fine.
                        let _ = k.query_drop(format!("KILL QUERY {id}")).await;
                        sent += 1;
                    }
                }
                let _ = k.disconnect().await;
                sent
            })
        };
        let runs: Vec<_> = (0..KILL_CLIENTS)
            .map(|me| tokio::spawn(kill_client_in(port, me, seed, ids.clone(), KDB)))
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
        (committed, bad, stopped, killer.await.unwrap())
    });
    eprintln!(
        "{sent} kills sent, {stopped} statements stopped, {} rows committed",
        committed.len()
    );
    assert!(bad.is_empty(), "seed {seed}: {bad:#?}");
    assert!(
        stopped > 0,
        "no statement was ever killed: the test means nothing"
    );
    assert_ledger(KDB, &committed, seed);
    proxy.shutdown();
}

// ---------------------------------------------------------------------------------------------
// Writes in disguise never reach the replica

/// SQL keywords of the statements below, whose case the disguise changes.
const KEYWORDS: &[&str] = &[
    "INSERT",
    "INTO",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "SELECT",
    "FROM",
    "WHERE",
    "SET",
    "CALL",
    "TRUNCATE",
    "CREATE",
    "DROP",
    "ALTER",
    "TABLE",
    "IGNORE",
    "VALUES",
    "ON",
    "DUPLICATE",
    "KEY",
    "ORDER",
    "BY",
    "LIMIT",
    "JOIN",
    "WITH",
    "AS",
    "COMMENT",
    "IF",
    "NOT",
    "EXISTS",
];

/// Writes in every disguise, each written at random (a comment before it, `#` comments,
/// keyword case, whitespace, a trailing semicolon) and sent at random as COM_QUERY or as a
/// prepared statement, in autocommit: none may reach the replica. The replica runs with
/// `read_only` and the proxy's user may not bypass it, so a write that got there shows as
/// error 1290. Reads in disguise must still work.
#[test]
fn writes_in_any_disguise_never_reach_the_replica() {
    const WDB: &str = "prop_disguise";
    let c = cluster();
    c.create_database(WDB).unwrap();
    c.query_db(
        0,
        Some(WDB),
        "CREATE TABLE w (id int AUTO_INCREMENT PRIMARY KEY, port int) ENGINE=InnoDB; \
         CREATE TABLE scratch (i int) ENGINE=InnoDB; \
         CREATE PROCEDURE p_ins() INSERT INTO w (port) VALUES (8)",
    )
    .unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
    let seed = prop_seed();
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_proxy_for(&dir.path().join("switchyard.toml"), WDB);
    let port = proxy.my_addr.unwrap().port();
    let writes = [
        "INSERT INTO w (port) VALUES (1)",
        "insert into w set port = 2",
        "INSERT IGNORE INTO w (id, port) VALUES (1, 1)",
        "INSERT INTO w (id, port) VALUES (1, 1) ON DUPLICATE KEY UPDATE port = port",
        "REPLACE INTO w (id, port) VALUES (1, 1)",
        "INSERT INTO w (port) SELECT port FROM w WHERE id < 0",
        "UPDATE w SET port = port WHERE id < 0",
        "UPDATE w SET port = port ORDER BY id LIMIT 1",
        "DELETE FROM w WHERE id < 0",
        "DELETE w FROM w JOIN scratch ON w.id = scratch.i",
        "CALL p_ins()",
        "TRUNCATE scratch",
        "CREATE TABLE IF NOT EXISTS scratch2 (i int)",
        "DROP TABLE IF EXISTS scratch3",
        "ALTER TABLE scratch COMMENT = 'x'",
        "/*!40000 INSERT INTO w (port) VALUES (3) */",
        "/*M!100100 INSERT INTO w (port) VALUES (4) */",
    ];
    let reads = [
        "SELECT count(*) FROM w",
        "SELECT 'INSERT INTO w VALUES (1)'",
        "SELECT 1 /* UPDATE w SET port = 1 */",
        "SELECT 1 # DELETE FROM w",
        "WITH x AS (SELECT id FROM w) SELECT count(*) FROM x",
        "VALUES (1), (2)",
    ];
    let disguise = |sql: &str, rng: &mut StdRng| -> String {
        let mut out = String::new();
        match rng.gen_range(0..5) {
            0 => out.push_str("/* hello */ "),
            1 => out.push_str("-- note\n"),
            2 => out.push_str("# note\n"),
            3 => out.push_str("\n\t  "),
            _ => {}
        }
        // Keyword case (table names are case-sensitive here, keywords are not).
        let n = rng.gen_range(0..3);
        let text: String = sql
            .split_inclusive(|ch: char| !ch.is_ascii_alphanumeric() && ch != '_')
            .map(|piece| {
                let word =
                    piece.trim_end_matches(|ch: char| !ch.is_ascii_alphanumeric() && ch != '_');
                if n == 0 || !KEYWORDS.contains(&word.to_ascii_uppercase().as_str()) {
                    return piece.to_string();
                }
                let rest = &piece[word.len()..];
                let w = if n == 1 {
                    word.to_ascii_uppercase()
                } else {
                    word.to_ascii_lowercase()
                };
                format!("{w}{rest}")
            })
            .collect();
        out.push_str(&text);
        if rng.gen_bool(0.3) {
            out.push(';');
        }
        out
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bad: Vec<String> = rt.block_on(async {
        // The detector works: a write sent to the replica directly is refused with 1290.
        let mut direct = connect_as_db(c.replica_ports()[0], 0, WDB).await;
        match direct.query_drop(writes[0]).await {
            Err(mysql_async::Error::Server(e)) if e.code == 1290 => {}
            other => panic!("a write on the replica itself: {other:?}"),
        }
        direct.disconnect().await.unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut conn = connect_as_db(port, 0, WDB).await;
        let mut bad = Vec::new();
        for round in 0..300 {
            let write = rng.gen_bool(0.8);
            let base = if write {
                writes[rng.gen_range(0..writes.len())]
            } else {
                reads[rng.gen_range(0..reads.len())]
            };
            let sql = disguise(base, &mut rng);
            let prepared = rng.gen_bool(0.5);
            let r = if prepared {
                conn.exec_drop(sql.as_str(), ()).await
            } else {
                conn.query_drop(sql.as_str()).await
            };
            match r {
                Ok(()) => {}
                Err(mysql_async::Error::Server(e)) if e.code == 1290 => bad.push(format!(
                    "round {round} ({}): {sql:?} reached the replica: {}",
                    if prepared { "prepared" } else { "text" },
                    e.message
                )),
                // Not every statement can be prepared (the server says so itself, 1295).
                Err(mysql_async::Error::Server(e)) if prepared && e.code == 1295 => {}
                Err(e) => panic!("seed {seed}: round {round}: {sql:?} failed on its own: {e}"),
            }
        }
        conn.disconnect().await.unwrap();
        bad
    });
    assert!(bad.is_empty(), "seed {seed}:\n{}", bad.join("\n"));
    proxy.shutdown();
}

/// The run's seed: `SWITCHYARD_PROP_SEED` if set, else a random one; printed either way, so a
/// failing run can be repeated.
fn prop_seed() -> u64 {
    use rand::Rng;
    let seed = std::env::var("SWITCHYARD_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("SWITCHYARD_PROP_SEED={seed}");
    seed
}

/// Once every client has gone: no transaction is left open on the primary in `db` (the
/// other tests of this binary run beside it, on databases of their own, with transactions
/// of their own), no row of a transaction that did not commit (`doomed`) is there, and its
/// ledger holds exactly the `committed` rows.
fn assert_ledger(db: &str, committed: &BTreeSet<(i32, i32)>, seed: u64) {
    let c = cluster();
    let deadline = Instant::now() + Duration::from_secs(10);
    let open_here = format!(
        "SELECT count(*) FROM information_schema.innodb_trx t \
         JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id \
         WHERE p.db = '{db}'"
    );
    loop {
        let open = c.value(0, &open_here).unwrap();
        if open == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {open} transactions open on the primary after every client left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The truth, read directly from the primary.
    let rows = c
        .query_db(0, Some(db), "SELECT client, seq, doomed FROM ledger")
        .unwrap();
    let doomed: Vec<&Vec<String>> = rows.iter().filter(|r| r[2] != "0").collect();
    assert!(
        doomed.is_empty(),
        "seed {seed}: rows of transactions that did not commit: {doomed:?}"
    );
    let on_server: BTreeSet<(i32, i32)> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    let lost: Vec<_> = committed.difference(&on_server).collect();
    let extra: Vec<_> = on_server.difference(committed).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "seed {seed}: committed but missing {lost:?}; on the server but never committed {extra:?}"
    );
}

/// A fresh database `db` with the ledger table, replicated.
fn ledger_db(db: &str) {
    let c = cluster();
    c.create_database(db).unwrap();
    c.query_db(
        0,
        Some(db),
        "CREATE TABLE ledger (client int, seq int, doomed bool, PRIMARY KEY (client, seq)) \
         ENGINE=InnoDB",
    )
    .unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
}

/// One client of the query_timeout property: `rounds` random statements, reads (text and
/// prepared) and transactions that write, a quarter of them sleeping past the limit (20 s
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
    let mut conn = connect_as_db(port, me, db).await;
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
            conn.query_drop("BEGIN").await.unwrap();
            conn.exec_drop("INSERT INTO ledger VALUES (?, ?, ?)", (me_i, seq, long))
                .await
                .unwrap();
        }
        let t0 = Instant::now();
        let r: Result<Option<i64>, _> = if read && rng.gen_bool(0.5) {
            conn.query_first(format!("SELECT SLEEP({sleep})")).await
        } else {
            conn.exec_first("SELECT SLEEP(?)", (sleep,)).await
        };
        let took = t0.elapsed();
        // Stopped: 1317 naming the limit, or (a lone SLEEP in the binary protocol, as the
        // server answers a KILL QUERY of one) the sleep's 1.
        let was_stopped = match &r {
            Err(mysql_async::Error::Server(s)) => {
                s.code == 1317 && s.message.contains("query_timeout")
            }
            Ok(Some(1)) => true,
            _ => false,
        };
        let what = format!("client {me} statement {seq} (long {long}, {took:?}): {r:?}");
        match support::timeout_verdict(long, was_stopped, r.is_ok(), took) {
            Err(why) => bad.push(format!("{what}: {why}")),
            Ok(()) if was_stopped && long => stopped.0 += 1,
            Ok(()) if was_stopped => stopped.1 += 1,
            Ok(()) => {}
        }
        if !read {
            // Stopped, the client rolls back (the server stopped the statement only).
            if was_stopped || r.is_err() {
                conn.query_drop("ROLLBACK").await.unwrap();
            } else {
                conn.query_drop("COMMIT").await.unwrap();
                committed.insert((me_i, seq));
            }
        }
    }
    let _ = conn.disconnect().await;
    (committed, bad, stopped)
}

/// `[pool] query_timeout` under load: 8 clients on pools smaller than they are (3 per server
/// and worker), random reads and writing transactions, a quarter sleeping past the limit.
/// Every long one gets the proxy's KILL QUERY (1317 naming the limit) before its own end;
/// no statement is stopped before it has run for the limit, whichever connection it
/// lands on after another client's statement was killed there (a killed connection is
/// closed, never handed on); the primary ends holding exactly what the clients were told was
/// committed, and nothing is left open. (With a 0.8 s limit, short sleeps were stopped in 2
/// runs of 10: a `KILL QUERY` of one `SLEEP` took the server 2.0 s (MariaDB retries waking a
/// thread that waits on a condition for up to 2 s) and held up the other sleeps meanwhile;
/// hence the property is "never before the limit", not "never a short one".)
#[test]
fn query_timeout_stops_only_the_statements_that_run_too_long() {
    let db = "prop_qtimeout";
    ledger_db(db);
    let seed = prop_seed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let text = config_text_for(db, 3, true).replace("[pool]\n", "[pool]\nquery_timeout = \"2s\"\n");
    let server = start_proxy_with(&path, db, &text);
    let port = server.my_addr.unwrap().port();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (committed, bad, stopped) = rt.block_on(async {
        let runs: Vec<_> = (0..8)
            .map(|me| tokio::spawn(timeout_client(port, db, me, seed, 8)))
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
        (committed, bad, stopped)
    });
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
    let on_server: BTreeSet<(i32, i32)> = cluster()
        .query_db(0, Some(db), "SELECT client, seq FROM ledger")
        .unwrap()
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    assert_eq!(on_server, committed, "seed {seed}");
    // This database's transactions only: the binary's other tests share the server.
    let open = || {
        cluster()
            .value(
                0,
                &format!(
                    "SELECT COUNT(*) FROM information_schema.innodb_trx t JOIN \
                     information_schema.processlist p ON p.id = t.trx_mysql_thread_id \
                     WHERE p.db = '{db}'"
                ),
            )
            .unwrap()
    };
    let t0 = Instant::now();
    while open() != "0" {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "transactions left open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.shutdown();
}
