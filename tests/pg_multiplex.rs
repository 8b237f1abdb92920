//! Multiplexed reads (`[pool] multiplex_depth`): plain SELECTs of different clients share
//! server connections in batches. Every test runs one worker, so that concurrent clients
//! share lanes, and checks answers against what the statement gives alone.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio_postgres::{Client, SimpleQueryMessage};

fn mux_proxy(db: &str) -> Proxy {
    start_proxy(&config_text(
        db,
        "workers = 1",
        "size = 8\nmultiplex_depth = 8",
        "",
    ))
}

/// Rows of a simple query as text.
async fn rows(c: &Client, sql: &str) -> Result<Vec<Vec<String>>, tokio_postgres::Error> {
    let msgs = c.simple_query(sql).await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

fn kv_db(db: &str) {
    create_db(db);
    cluster()
        .psql_db(
            0,
            db,
            "CREATE TABLE kv (k int PRIMARY KEY, v text); \
             INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 1000) g",
        )
        .unwrap();
}

async fn clients(p: &Proxy, db: &str, n: usize) -> Vec<Arc<Client>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(connect(&p.conn_str(db)).await));
    }
    out
}

/// Many clients, reads that succeed, fail and return many rows, all at once: every client
/// gets exactly its own answer, and the statements really went out in shared batches.
#[tokio::test]
async fn concurrent_reads_are_batched_and_each_client_gets_its_own_answer() {
    kv_db("t_mux_answers");
    let p = mux_proxy("t_mux_answers");
    let cs = clients(&p, "t_mux_answers", 12).await;
    let mut tasks = Vec::new();
    for (n, c) in cs.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..150usize {
                let k = 1 + (n * 150 + i) % 1000;
                match i % 10 {
                    3 => {
                        let e = rows(&c, "SELECT 1/0").await.expect_err("division by zero");
                        assert_eq!(
                            e.code(),
                            Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO),
                            "{e}"
                        );
                    }
                    7 => {
                        let r = rows(&c, &format!("SELECT k FROM kv WHERE k <= {k} ORDER BY k"))
                            .await
                            .unwrap();
                        assert_eq!(r.len(), k);
                        assert_eq!(r[k - 1][0], k.to_string());
                    }
                    _ => {
                        let r = rows(&c, &format!("SELECT k, v FROM kv WHERE k = {k}"))
                            .await
                            .unwrap();
                        assert_eq!(r, vec![vec![k.to_string(), format!("v{k}")]]);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = p.mux_stats("t_mux_answers");
    // A statement that meets no concurrency, or finds no lane with room and no idle
    // connection for a new one, takes a connection of its own; most were multiplexed.
    assert!(s.statements >= 12 * 150 / 2, "{s:?}");
    assert!(
        s.batches < s.statements,
        "no statement shared a batch: {s:?}"
    );
}

/// A failing statement in a shared batch rolls the batch back: the others run again alone
/// and get their normal answers, the failing one its error.
#[tokio::test]
async fn a_failed_batch_runs_its_statements_again_alone() {
    kv_db("t_mux_rerun");
    let p = mux_proxy("t_mux_rerun");
    let _holder = hold_contention(&p, "t_mux_rerun").await;
    let cs = clients(&p, "t_mux_rerun", 5).await;
    // Statements queued while the lane works on a 200 ms statement go out as one batch.
    // Arrival is timing-dependent, so try a few times until a batch did fail.
    for attempt in 0..10 {
        let before = p.mux_stats("t_mux_rerun");
        let head = cs[0].clone();
        let slow = tokio::spawn(async move { rows(&head, "SELECT pg_sleep(0.2), 'head'").await });
        tokio::time::sleep(Duration::from_millis(3)).await;
        let mut tasks = Vec::new();
        for (i, c) in cs[1..].iter().enumerate() {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                if i == 1 {
                    let e = rows(&c, "SELECT k / 0 FROM kv WHERE k = 1")
                        .await
                        .unwrap_err();
                    assert_eq!(
                        e.code(),
                        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
                    );
                } else {
                    let r = rows(&c, &format!("SELECT v FROM kv WHERE k = {}", i + 1))
                        .await
                        .unwrap();
                    assert_eq!(r, vec![vec![format!("v{}", i + 1)]]);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(slow.await.unwrap().unwrap()[0][1], "head");
        let after = p.mux_stats("t_mux_rerun");
        if after.reruns > before.reruns {
            return;
        }
        eprintln!("attempt {attempt}: no shared batch failed ({after:?}); again");
    }
    panic!("in 10 attempts no batch with the failing statement formed");
}

/// Background reads on one client, so that statements meet concurrency (without it a
/// statement takes the ordinary path: there is nothing to batch it with). Returns the count
/// of statements done so far and the task (which ends when `stop` is set).
fn background_reads(
    c: Arc<Client>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (
    Arc<std::sync::atomic::AtomicU64>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let d = done.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Relaxed) {
            let r = rows(&c, "SELECT pg_sleep(0.001), 'bg'").await;
            let r = r.unwrap_or_else(|e| panic!("a background read failed: {e:?}"));
            assert_eq!(r[0][1], "bg");
            d.fetch_add(1, Relaxed);
        }
    });
    (done, task)
}

/// Wait until `n` reaches `at_least`, or give up when `unless` has finished.
async fn wait_count(
    n: &std::sync::atomic::AtomicU64,
    at_least: u64,
    unless: &tokio::task::JoinHandle<impl Sized>,
) {
    while n.load(std::sync::atomic::Ordering::Relaxed) < at_least && !unless.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client inside a transaction: it holds a server connection, so every other statement on
/// that backend meets concurrency and is multiplexed (without any, a statement takes the
/// ordinary path: there is nothing to batch it with).
async fn hold_contention(p: &Proxy, db: &str) -> Client {
    let c = connect(&p.conn_str(db)).await;
    c.batch_execute("BEGIN; SELECT 1").await.unwrap();
    c
}

/// A slow statement holds up only its own batch: a statement waiting for its lane's next
/// batch moves to the ordinary path once another statement finds the lane stuck, and later
/// reads go elsewhere, all finishing while it still runs.
#[tokio::test]
async fn a_slow_read_does_not_hold_up_later_reads() {
    kv_db("t_mux_hol");
    let p = mux_proxy("t_mux_hol");
    let _holder = hold_contention(&p, "t_mux_hol").await;
    let cs = clients(&p, "t_mux_hol", 3).await;
    let direct = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster().primary_port()
    ))
    .await;
    let slow_client = cs[0].clone();
    let slow = tokio::spawn(async move { rows(&slow_client, "SELECT pg_sleep(3)").await });
    // Once the server runs it, the next statement queues for the lane's next batch (if it
    // comes within 10 ms; otherwise it goes elsewhere at once, and the test holds too).
    loop {
        let n: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE query = 'SELECT pg_sleep(3)' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(!slow.is_finished());
    }
    let queued_client = cs[2].clone();
    let queued =
        tokio::spawn(async move { rows(&queued_client, "SELECT v FROM kv WHERE k = 99").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for k in 1..=20 {
        let r = rows(&cs[1], &format!("SELECT v FROM kv WHERE k = {k}"))
            .await
            .unwrap();
        assert_eq!(r, vec![vec![format!("v{k}")]]);
    }
    // The later reads found the lane stuck and moved the queued one to its own connection.
    let r = queued.await.unwrap().unwrap();
    assert_eq!(r, vec![vec!["v99".to_string()]]);
    assert!(!slow.is_finished(), "the reads waited for the slow one");
    slow.await.unwrap().unwrap();
    let s = p.mux_stats("t_mux_hol");
    assert!(s.statements >= 2, "{s:?}");
}

/// Cancels, some arriving just as their statement ends: only the cancelled client ever sees
/// "canceling statement"; a cancel that hits a neighbour on the lane is absorbed (that
/// statement runs again).
#[tokio::test]
async fn a_cancel_reaches_only_the_cancelled_statement() {
    kv_db("t_mux_cancel");
    let p = mux_proxy("t_mux_cancel");
    let cs = clients(&p, "t_mux_cancel", 5).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut neighbours = Vec::new();
    for c in cs[1..].iter() {
        let c = c.clone();
        let stop = stop.clone();
        neighbours.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = rows(&c, "SELECT pg_sleep(0.002), 'ok'").await;
                let r = r.unwrap_or_else(|e| panic!("a neighbour's statement failed: {e:?}"));
                assert_eq!(r[0][1], "ok");
                n += 1;
            }
            n
        }));
    }
    let victim = cs[0].clone();
    let token = victim.cancel_token();
    let (mut cancelled, mut finished) = (0, 0);
    for i in 0..120u64 {
        let v = victim.clone();
        let q = tokio::spawn(async move { rows(&v, "SELECT pg_sleep(0.01)").await });
        // Cancel at different moments: before, around and after the statement's end.
        tokio::time::sleep(Duration::from_micros((i * 137) % 14_000)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(10), q)
            .await
            .expect("statement hung after a cancel")
            .unwrap()
        {
            Ok(_) => finished += 1,
            Err(e) => {
                assert_eq!(
                    e.code(),
                    Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
                    "{e}"
                );
                cancelled += 1;
            }
        }
    }
    assert!(cancelled > 0, "no cancel took effect ({finished} finished)");
    // A long statement, sent while the neighbours keep the lanes busy, is stopped at once.
    let v = victim.clone();
    let q = tokio::spawn(async move { rows(&v, "SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), q)
        .await
        .expect("pg_sleep(30) was not cancelled")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for n in neighbours {
        assert!(n.await.unwrap() > 0);
    }
}

/// Clients with different settings never share a connection; reads inside a transaction
/// are not multiplexed (they see the transaction's own writes).
#[tokio::test]
async fn settings_and_transactions_are_respected() {
    kv_db("t_mux_state");
    let p = mux_proxy("t_mux_state");
    let holder = hold_contention(&p, "t_mux_state").await;
    let mut tasks = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let cs = format!("{} application_name={name}", p.conn_str("t_mux_state"));
        tasks.push(tokio::spawn(async move {
            let c = connect(&cs).await;
            for _ in 0..100 {
                let r = rows(&c, "SELECT current_setting('application_name')")
                    .await
                    .unwrap();
                assert_eq!(r[0][0], name);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = p.mux_stats("t_mux_state");
    assert!(s.statements >= 150, "{s:?}");
    drop(holder);

    let c = connect(&p.conn_str("t_mux_state")).await;
    c.batch_execute("BEGIN; INSERT INTO kv VALUES (5000, 'mine')")
        .await
        .unwrap();
    let r = rows(&c, "SELECT v FROM kv WHERE k = 5000").await.unwrap();
    assert_eq!(r, vec![vec!["mine".to_string()]]);
    c.batch_execute("ROLLBACK").await.unwrap();
    let r = rows(&c, "SELECT v FROM kv WHERE k = 5000").await.unwrap();
    assert!(r.is_empty());
}

/// The lane's server connection is terminated under a running statement: every statement
/// on it runs again on a connection of its own and the clients see normal answers.
#[tokio::test]
async fn a_lost_lane_connection_reruns_its_statements() {
    kv_db("t_mux_lost");
    let p = mux_proxy("t_mux_lost");
    let cs = clients(&p, "t_mux_lost", 2).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done, bg) = background_reads(cs[1].clone(), stop.clone());
    let never = tokio::spawn(std::future::pending::<()>());
    wait_count(&done, 20, &never).await;
    never.abort();
    // The statement meets concurrency (the background reads) and so goes to a lane, unless
    // it arrives in a gap between them; then it runs on a connection of its own, where a
    // terminated backend is an error for the client. Try until it went to a lane.
    for attempt in 0..10 {
        let a = connect(&p.conn_str("t_mux_lost")).await;
        let slow = tokio::spawn(async move { rows(&a, "SELECT pg_sleep(1), 'survived'").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed = cluster()
            .psql_db(
                0,
                "postgres",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = 't_mux_lost' AND query LIKE '%pg_sleep(1)%' \
                 AND state = 'active' AND pid <> pg_backend_pid()",
            )
            .unwrap();
        assert_eq!(killed.trim(), "1");
        let r = tokio::time::timeout(Duration::from_secs(10), slow)
            .await
            .expect("rerun hung")
            .unwrap();
        match r {
            Ok(r) => {
                assert_eq!(r[0][1], "survived");
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                bg.await.unwrap();
                for c in &cs {
                    let r = rows(c, "SELECT v FROM kv WHERE k = 7").await.unwrap();
                    assert_eq!(r[0][0], "v7");
                }
                return;
            }
            Err(e) => {
                assert_eq!(
                    e.code(),
                    Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN),
                    "{e}"
                );
                eprintln!("attempt {attempt}: the statement ran on its own connection; again");
            }
        }
    }
    panic!("in 10 attempts the statement never went to a lane");
}

/// pgbench through multiplexing: -S in simple mode is multiplexed; the default TPC-B-like
/// script (transactions with writes) and the extended protocol are not, and all complete.
#[test]
fn pgbench_with_multiplexing_has_no_failures() {
    create_db("t_mux_pgbench");
    let p = start_proxy(&config_text(
        "t_mux_pgbench",
        "query_digests = 1000",
        "size = 10\nmultiplex_depth = 8",
        "",
    ));
    let url = p.url("app", "secret", "t_mux_pgbench");
    let mut c = std::process::Command::new("pgbench");
    c.args(["-i", "-s", "1", "-q"]).arg(&url);
    let (ok, out, err) = run(&mut c);
    assert!(ok, "pgbench -i failed: {out}{err}");
    for args in [
        &["-S", "-M", "simple", "-c", "16", "-j", "2", "-t", "300"][..],
        &["-M", "simple", "-c", "16", "-j", "2", "-t", "50"][..],
        &["-S", "-M", "extended", "-c", "16", "-j", "2", "-t", "100"][..],
    ] {
        p.shared().metrics.queries.reset();
        let (failed, done, out) = pgbench(&url, args);
        assert_eq!(failed, 0, "{args:?}: {out}");
        let want: u64 = args[args.len() - 1].parse::<u64>().unwrap() * 16;
        assert_eq!(done, want, "{args:?}: {out}");
        // The statement statistics count it once per run, multiplexed or not.
        if args[0] == "-S" && args[2] == "simple" {
            let rows = p.shared().metrics.queries.rows();
            let select = rows
                .iter()
                .find(|r| r.query == "SELECT abalance FROM pgbench_accounts WHERE aid = ?")
                .unwrap_or_else(|| panic!("{rows:?}"));
            assert_eq!((select.count, select.errors), (want, 0), "{select:?}");
        }
    }
    let s = p.mux_stats("t_mux_pgbench");
    assert!(s.statements >= 16 * 300 / 2, "{s:?}");
    assert!(s.batches < s.statements, "{s:?}");
}

/// A Query string of several reads is no single statement: it takes the ordinary path and
/// every statement of it is answered (found by `tests/pg_differential.rs`'s side-by-side
/// sessions: it went into a lane and only the first statement was answered).
#[tokio::test]
async fn a_string_of_several_reads_gets_every_answer() {
    kv_db("t_mux_string");
    let p = mux_proxy("t_mux_string");
    let _holder = hold_contention(&p, "t_mux_string").await;
    let c = connect(&p.conn_str("t_mux_string")).await;
    for _ in 0..5 {
        let r = rows(
            &c,
            "SELECT k FROM kv WHERE k = 1; SELECT k FROM kv WHERE k = 2; SELECT 'three'",
        )
        .await
        .unwrap();
        assert_eq!(r, vec![vec!["1"], vec!["2"], vec!["three"]]);
    }
}

/// PAUSE counts a multiplexed statement while it waits for its answer, as it counts a
/// transaction on a connection of its own: with clients sending `pg_sleep` reads that share
/// lanes, every pause reports the cluster drained only once none of them runs on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_reports_drained_only_when_no_multiplexed_statement_runs() {
    let db = "t_mux_pause";
    create_db(db);
    let text = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        config_text(db, "workers = 1", "size = 8\nmultiplex_depth = 8", "")
    );
    let p = start_proxy(&text);
    let admin = p.admin_addr();
    let post =
        |path: String| tokio::task::spawn_blocking(move || admin_request(admin, "POST", &path));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in clients(&p, db, 12).await {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rows(&c, "SELECT pg_sleep(0.15)").await.unwrap();
            }
        }));
    }
    // Statements the server runs for the proxy's clients now.
    let running = || {
        cluster()
            .psql_db(
                0,
                db,
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE query LIKE 'SELECT pg_sleep(0.15)%' AND state = 'active'",
            )
            .unwrap()
            .trim()
            .to_string()
    };
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(400 + 70 * round)).await;
        let (code, body) = post(format!("/pause?cluster={db}&wait=10")).await.unwrap();
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"drained\":true"), "{body}");
        let now = tokio::task::spawn_blocking(running).await.unwrap();
        assert_eq!(
            now, "0",
            "round {round}: statements ran after the pause said drained"
        );
        let (code, body) = post(format!("/resume?cluster={db}")).await.unwrap();
        assert_eq!(code, 200, "{body}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("a client hung")
            .unwrap();
    }
    let stats = p.mux_stats(db);
    assert!(
        stats.statements > 0,
        "no statement was multiplexed: {stats:?}"
    );
}
