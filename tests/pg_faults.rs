//! Real faults under the router: lagging replicas, stopped replicas, a restarted primary
//! under idle clients, promotion, and
//! read-your-writes with delayed replay. Each test has its own topology and they run one
//! at a time (they pause, stop and promote servers).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;
use switchyard::testkit::pg::{PgCluster, PgClusterOptions};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn topology(extra_conf: &[&str]) -> PgCluster {
    PgCluster::start_with(PgClusterOptions {
        replicas: 2,
        extra_conf: extra_conf.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .expect("start PostgreSQL")
}

async fn count_reads(client: &tokio_postgres::Client, n: usize) -> HashMap<u16, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        *seen
            .entry(served_by(client, "SELECT inet_server_port()").await)
            .or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_paused_replay_leaves_the_read_set_and_returns() {
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "lagdb");
    let p = start_proxy(&routing_config(
        &c,
        "lagdb",
        "max_lag_bytes = 8388608\nmax_lag = \"30s\"",
    ));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let [r1, r2] = [c.replica_ports()[0], c.replica_ports()[1]];
    let client = connect(&p.conn_str("lagdb")).await;
    client
        .batch_execute("CREATE TABLE big (id int, pad text)")
        .await
        .unwrap();
    c.psql(1, "SELECT pg_wal_replay_pause()").unwrap();
    // About 64 MiB of WAL.
    client
        .batch_execute(
            "INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 55000) g",
        )
        .await
        .unwrap();
    // Two probe intervals (200 ms each) plus slack for the write itself to ship.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = count_reads(&client, 200).await;
    assert_eq!(
        seen.get(&r1),
        None,
        "reads reached the lagging replica: {seen:?}"
    );
    assert_eq!(seen.get(&r2), Some(&200), "{seen:?}");
    c.psql(1, "SELECT pg_wal_replay_resume()").unwrap();
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = count_reads(&client, 200).await;
    assert!(
        seen.get(&r1).copied().unwrap_or(0) >= 40,
        "the replica did not come back: {seen:?}"
    );
}

/// Resumes stopped processes when dropped, so a failing assertion leaves no server stopped.
struct Stopped(Vec<i32>);

impl Stopped {
    fn stop(pids: &[i32]) -> Stopped {
        for &p in pids {
            // SAFETY: sending a signal has no memory-safety preconditions.
            unsafe { libc::kill(p, libc::SIGSTOP) };
        }
        Stopped(pids.to_vec())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGCONT) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_is_not_marked_down_by_slow_probes() {
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "slowdb");
    // A probe every 500 ms with 300 ms to answer; two misses in a row mark a backend down.
    let cfg = routing_config(&c, "slowdb", "").replace(
        "interval = \"200ms\"\ntimeout = \"1s\"",
        "interval = \"500ms\"\ntimeout = \"300ms\"",
    );
    assert!(cfg.contains("300ms"));
    let p = start_proxy(&cfg);
    let health_pid = || {
        c.psql(
            1,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'switchyard-health'",
        )
        .unwrap()
        .trim()
        .parse::<i32>()
        .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe_pid = loop {
        if let Some(pid) = health_pid() {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no health connection on the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = p.backend_transitions("slowdb");
    let pm_file = std::fs::read_to_string(c.data_dir(1).join("postmaster.pid")).unwrap();
    let postmaster: i32 = pm_file.lines().next().unwrap().trim().parse().unwrap();
    // A saturated server: the probe's backend answers 700 ms late, and a new connection
    // would wait 1.3 s for the postmaster. A checker that gave up the slow connection and
    // reconnected would miss two probes in a row and mark the replica down; one that waits
    // for the late answer sees a miss and then a (late) answer.
    {
        let _postmaster = Stopped::stop(&[postmaster]);
        {
            let _probe = Stopped::stop(&[probe_pid]);
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        p.backend_transitions("slowdb"),
        before,
        "a backend changed state: {}",
        p.backends("slowdb")
    );
    assert_eq!(
        health_pid(),
        Some(probe_pid),
        "the checker reconnected instead of waiting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_client_takes_a_returned_connection_while_a_new_one_is_slow() {
    let _g = SERIAL.lock().await;
    let c = PgCluster::start_with(PgClusterOptions {
        replicas: 0,
        ..Default::default()
    })
    .expect("start PostgreSQL");
    c.psql(0, "CREATE DATABASE slowconn").unwrap();
    let cfg = format!(
        "{}\n[pool]\nsize = 2\nconnect_timeout = \"1s\"\ncheckout_timeout = \"4s\"\n",
        routing_config(&c, "slowconn", "").replace("[general]\n", "[general]\nworkers = 1\n")
    );
    let p = start_proxy(&cfg);
    let a = connect(&p.conn_str("slowconn")).await;
    let b = connect(&p.conn_str("slowconn")).await;
    // Both logins used the pool's one connection in turn; A now holds it in a transaction.
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let pm_file = std::fs::read_to_string(c.data_dir(0).join("postmaster.pid")).unwrap();
    let postmaster: i32 = pm_file.lines().next().unwrap().trim().parse().unwrap();
    // The server accepts no new connection for 2.5 s, while the open one keeps working. B
    // needs a connection: the pool has room for a second one, but opening it hangs and
    // times out after 1 s (connect_timeout). A commits after 1.3 s: B must get A's
    // connection then, not an error for the connect that failed meanwhile.
    let stopped = Stopped::stop(&[postmaster]);
    let started = Instant::now();
    let b_query = tokio::spawn(async move {
        let r = b.simple_query("SELECT 2").await.map(|_| ());
        (r, started.elapsed(), b)
    });
    tokio::time::sleep(Duration::from_millis(1300)).await;
    a.batch_execute("COMMIT").await.unwrap();
    let (r, took, _b) = b_query.await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed())).await;
    drop(stopped);
    r.expect("the waiting client was served");
    assert!(
        took < Duration::from_millis(2000),
        "the waiting client was not served when A gave its connection back ({took:?})"
    );
    // The server is back: both clients keep working.
    a.simple_query("SELECT 3").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_replica_lagging_reads_fall_back_or_fail_clearly() {
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "fbdb");
    let fall_primary = start_proxy(&routing_config(&c, "fbdb", "max_lag_bytes = 1048576"));
    let fall_error = start_proxy(&routing_config(
        &c,
        "fbdb",
        "max_lag_bytes = 1048576\nfallback = \"error\"",
    ));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let a = connect(&fall_primary.conn_str("fbdb")).await;
    let b = connect(&fall_error.conn_str("fbdb")).await;
    a.batch_execute("CREATE TABLE f (pad text)").await.unwrap();
    c.psql(1, "SELECT pg_wal_replay_pause()").unwrap();
    c.psql(2, "SELECT pg_wal_replay_pause()").unwrap();
    a.batch_execute("INSERT INTO f SELECT repeat('y', 1000) FROM generate_series(1, 10000)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let seen = count_reads(&a, 50).await;
    assert_eq!(seen.get(&c.primary_port()), Some(&50), "{seen:?}");
    let err = b
        .simple_query("SELECT inet_server_port()")
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server-style error");
    assert_eq!(db.code().code(), "57P03", "{db:?}");
    assert!(db.message().contains("no replica"), "{}", db.message());
    // Writes still work on that proxy, and the session survives the error.
    b.batch_execute("INSERT INTO f VALUES ('z')").await.unwrap();
    c.psql(1, "SELECT pg_wal_replay_resume()").unwrap();
    c.psql(2, "SELECT pg_wal_replay_resume()").unwrap();
}

/// What a relay does with each chunk of bytes in one direction: pass it, possibly changed
/// (`Some(true)`), pass it and then cut the connection (`Some(false)`), or cut the
/// connection without passing it (`None`).
/// Edits a chunk on its way; may put bytes in its second argument, sent 50 ms after the
/// chunk (in a read of their own); `None` ends the connection before the chunk, `Some(false)`
/// after it.
type Tap = Box<dyn FnMut(&mut Vec<u8>, &mut Vec<u8>) -> Option<bool> + Send>;

/// A TCP relay to `to` on a port of its own; `taps` gives each connection its two taps,
/// (proxy to server, server to proxy).
async fn relay(to: u16, taps: impl Fn() -> (Tap, Tap) + Send + 'static) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut from, _)) = l.accept().await {
            let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                continue;
            };
            let (mut up, mut down) = taps();
            tokio::spawn(async move {
                let (mut fr, mut fw) = from.split();
                let (mut sr, mut sw) = server.split();
                tokio::select! {
                    _ = pass(&mut fr, &mut sw, &mut up) => {}
                    _ = pass(&mut sr, &mut fw, &mut down) => {}
                }
            });
        }
    });
    port
}

/// Waits (20 s at most) until the proxy's `backends` of `db` are up and in the read set.
async fn until_readable(p: &Proxy, db: &str, backends: &[usize]) {
    let start = Instant::now();
    while !backends.iter().all(|&i| {
        let b = &p.cluster_state(db).backends[i];
        b.is_up() && b.in_read_set()
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            p.backends(db)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`routing_config`] with each replica `(port, relay)` reached through its relay.
fn via_relays(c: &PgCluster, db: &str, relays: &[(u16, u16)]) -> String {
    let mut text = routing_config(c, db, "");
    for (port, relay) in relays {
        let (from, to) = (
            format!("\"127.0.0.1:{port}\""),
            format!("\"127.0.0.1:{relay}\""),
        );
        assert!(text.contains(&from), "{text}");
        text = text.replace(&from, &to);
    }
    text
}

/// One direction of a relayed connection, until either end or the tap cuts it.
async fn pass(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    tap: &mut Tap,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    let mut later = Vec::new();
    loop {
        let n = r.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        let mut chunk = buf[..n].to_vec();
        let Some(go_on) = tap(&mut chunk, &mut later) else {
            return;
        };
        if w.write_all(&chunk).await.is_err() {
            return;
        }
        if !later.is_empty() {
            w.flush().await.ok();
            tokio::time::sleep(Duration::from_millis(50)).await;
            if w.write_all(&later).await.is_err() {
                return;
            }
            later.clear();
        }
        if !go_on {
            return;
        }
    }
}

/// A relay to `to` that, once `armed` (false at first), cuts a connection on which `trigger`
/// passes from the proxy to the server (the server never sees those bytes), as a server that
/// went away at that moment would; `cuts` counts them. Returns (its port, armed, cuts).
async fn cutting_relay(
    to: u16,
    trigger: &'static [u8],
) -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cuts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (a, n) = (armed.clone(), cuts.clone());
    let port = relay(to, move || {
        let (armed, cuts) = (a.clone(), n.clone());
        let (armed, cuts) = (armed.clone(), cuts.clone());
        let up: Tap = Box::new(move |chunk, _| {
            if armed.load(SeqCst) && chunk.windows(trigger.len()).any(|w| w == trigger) {
                cuts.fetch_add(1, SeqCst);
                return None;
            }
            Some(true)
        });
        (up, Box::new(|_, _| Some(true)))
    })
    .await;
    (port, armed, cuts)
}

/// Where a [`farewell_relay`] puts its goodbye.
#[derive(Clone, Copy, PartialEq)]
enum Bye {
    /// After the whole answer.
    After,
    /// In place of the answer's CommandComplete and ReadyForQuery, in the same read as the
    /// rest of it.
    Amid,
    /// As `Amid`, but 50 ms after the first of the answer (in a read of its own).
    AmidLater,
}

/// A relay to `to` that, once `armed`, follows the next answer to a statement naming
/// `inet_server_port` that ends idle (ReadyForQuery 'I') with a FATAL 57P01 and the end of
/// the connection, as a server shut down in fast mode says goodbye; `farewells` counts them.
/// In the middle of an answer (`Bye::Amid`, `Bye::AmidLater`), the goodbye comes in
/// place of the answer's CommandComplete and ReadyForQuery, after its RowDescription and
/// DataRow: a backend that gets the shutdown signal before it completes the statement
/// flushes what it had buffered with its FATAL (or after it flushed some of the answer).
/// Returns (its port, armed, farewells).
async fn farewell_relay(
    to: u16,
    bye: Bye,
) -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
    let armed = std::sync::Arc::new(AtomicBool::new(false));
    let farewells = std::sync::Arc::new(AtomicU32::new(0));
    let (a, f) = (armed.clone(), farewells.clone());
    let port = relay(to, move || {
        let (armed, farewells) = (a.clone(), f.clone());
        let asked = std::sync::Arc::new(AtomicBool::new(false));
        let seen = asked.clone();
        let up: Tap = Box::new(move |chunk, _| {
            if chunk.windows(16).any(|w| w == b"inet_server_port") {
                seen.store(true, SeqCst);
            }
            Some(true)
        });
        let down: Tap = Box::new(move |chunk, later| {
            // Where the answer's CommandComplete starts (if the chunk has one).
            let mut complete = None;
            let mut at = 0;
            while at + 5 <= chunk.len() {
                if chunk[at] == b'C' {
                    complete = Some(at);
                    break;
                }
                at += 1 + u32::from_be_bytes(chunk[at + 1..at + 5].try_into().unwrap()) as usize;
            }
            let mid_answer = bye != Bye::After;
            let last_word = chunk.ends_with(b"Z\0\0\0\x05I")
                && (!mid_answer || complete.is_some())
                && asked.swap(false, SeqCst)
                && armed.swap(false, SeqCst);
            if !last_word {
                return Some(true);
            }
            if mid_answer {
                chunk.truncate(complete.unwrap());
            }
            // In the middle of an answer, every other goodbye is an immediate shutdown's:
            // a WARNING (a NoticeResponse), then the end of the connection.
            let (tag, severity, why) = if mid_answer && farewells.load(SeqCst) % 2 == 1 {
                (b'N', "WARNING", "immediate shutdown")
            } else {
                (b'E', "FATAL", "administrator")
            };
            let body =
                format!("S{severity}\0V{severity}\0C57P01\0Mterminating connection due to {why} command\0\0");
            let to = if bye == Bye::AmidLater { later } else { chunk };
            to.push(tag);
            to.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
            to.extend_from_slice(body.as_bytes());
            farewells.fetch_add(1, SeqCst);
            Some(false)
        });
        (up, down)
    })
    .await;
    (port, armed, farewells)
}

/// A replica whose connection says goodbye (FATAL 57P01) right after answering a read, as
/// one shut down in fast mode does: the reader, whose connection was going back to the pool
/// anyway, hears nothing of it and reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_after_the_answer_does_not_reach_the_reader() {
    use std::sync::atomic::Ordering::SeqCst;
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "byedb");
    let r1 = c.replica_ports()[0];
    let (relay, armed, farewells) = farewell_relay(r1, Bye::After).await;
    let text = via_relays(&c, "byedb", &[(r1, relay)]);
    let p = start_proxy(&text);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let client = connect(&p.conn_str("byedb")).await;
    let mut errors = Vec::new();
    for _ in 0..5 {
        armed.store(true, SeqCst);
        for _ in 0..10 {
            if let Err(e) = client.simple_query("SELECT inet_server_port()").await {
                errors.push(format!("{e:?}"));
            }
        }
    }
    assert!(errors.is_empty(), "the reader saw errors: {errors:#?}");
    assert!(
        farewells.load(SeqCst) > 0,
        "no goodbye was said: the test tested nothing"
    );
}

/// A replica's connection says goodbye (FATAL 57P01) in the middle of an answer to a read,
/// after its RowDescription and DataRow, as a backend signalled by a fast shutdown before
/// it completed the statement does. Nothing of it reached the client yet, so the read is
/// taken to another backend and the reader sees no error and no half answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_in_the_middle_of_an_answer_costs_the_reader_no_error() {
    goodbye_in_an_answer(Bye::Amid, "midbyedb").await;
}

/// As above, with the goodbye in a read of its own after the first of the answer (a backend
/// that had flushed part of its answer when the signal came): the start of an answer to a
/// read that may go elsewhere is held until its ReadyForQuery (or up to a bound), so the
/// goodbye still finds nothing passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_after_the_first_of_an_answer_costs_the_reader_no_error() {
    goodbye_in_an_answer(Bye::AmidLater, "latebyedb").await;
}

async fn goodbye_in_an_answer(bye: Bye, db: &str) {
    use std::sync::atomic::Ordering::SeqCst;
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, db);
    let r1 = c.replica_ports()[0];
    let (relay, armed, farewells) = farewell_relay(r1, bye).await;
    let text = via_relays(&c, db, &[(r1, relay)]);
    let p = start_proxy(&text);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut errors = Vec::new();
    for i in 0..6 {
        // A fresh client each round (the first round's replica may still be marked down
        // for the next ones); simple and extended queries.
        until_readable(&p, db, &[1, 2]).await;
        let client = connect(&p.conn_str(db)).await;
        armed.store(true, SeqCst);
        for _ in 0..10 {
            let sql = "SELECT inet_server_port()";
            let rows = if i % 2 == 0 {
                client.simple_query(sql).await.map(|m| m.len())
            } else {
                // (Parse, Bind, Execute of the unnamed statement, as one request.)
                client.query_typed(sql, &[]).await.map(|r| r.len())
            };
            match rows {
                // (Simple: the RowDescription, the row and the CommandComplete.)
                Ok(n) => assert_eq!(n, if i % 2 == 0 { 3 } else { 1 }),
                Err(e) => {
                    // The session is over: the next round has a new client.
                    errors.push(format!("{e:?}"));
                    break;
                }
            }
        }
    }
    assert!(errors.is_empty(), "the reader saw errors: {errors:#?}");
    assert!(
        farewells.load(SeqCst) > 0,
        "no goodbye was said: the test tested nothing"
    );
}

/// A replica's connection ends while the client's settings are being applied to it (the
/// pooled connection was fine when taken, the server went away then): nothing of the
/// client's reached it, so the read goes to another backend and the client sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lost_while_settings_are_applied_costs_the_reader_no_error() {
    use std::sync::atomic::Ordering::SeqCst;
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "cutdb");
    let r1 = c.replica_ports()[0];
    let (relay, armed, cuts) = cutting_relay(r1, b"set_config(").await;
    let text = via_relays(&c, "cutdb", &[(r1, relay)]);
    let p = start_proxy(&text);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Pooled connections on both replicas, with this client's settings.
    let a = connect(&p.conn_str("cutdb")).await;
    let seen = count_reads(&a, 20).await;
    assert!(
        seen.contains_key(&r1),
        "replica 1 (through the relay) served no read: {seen:?}"
    );
    // Another client's settings differ: every connection it takes gets them first.
    armed.store(true, SeqCst);
    let b = connect(&format!("{} application_name=b", p.conn_str("cutdb"))).await;
    let mut errors = Vec::new();
    for _ in 0..20 {
        if let Err(e) = b.simple_query("SELECT inet_server_port()").await {
            errors.push(format!("{e:?}"));
        }
    }
    assert!(errors.is_empty(), "the reader saw errors: {errors:#?}");
    assert!(
        cuts.load(SeqCst) > 0,
        "no connection was cut: the test tested nothing"
    );
}

/// A replica's connection ends under reads made with named prepared statements (as
/// tokio-postgres, asyncpg and pgjdbc make them): a Bind of a statement the client prepared
/// long before, and a statement prepared and described for the first time. Nothing of the
/// request reached the server, so it runs on the other replica, where the proxy first
/// brings the statements the request uses to the state the lost connection had: the client
/// sees no error and each answer is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lost_under_prepared_statement_reads_costs_the_reader_no_error() {
    use std::sync::atomic::Ordering::SeqCst;
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "namedb");
    let r1 = c.replica_ports()[0];
    // The marker travels in a Bind's parameter, or in a Parse's text.
    let (relay, armed, cuts) = cutting_relay(r1, b"cut-here").await;
    let text = via_relays(&c, "namedb", &[(r1, relay)]);
    let p = start_proxy(&text);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let client = connect(&p.conn_str("namedb")).await;
    let stmt = client
        .prepare("SELECT $1::text || ' ' || inet_server_port()")
        .await
        .unwrap();
    // Both replicas' connections get the statement.
    let mut seen = HashMap::new();
    for _ in 0..20 {
        let row = client.query_one(&stmt, &[&"warm"]).await.unwrap();
        let v: String = row.get(0);
        *seen.entry(v).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "reads did not reach both replicas: {seen:?}");
    armed.store(true, SeqCst);
    let mut errors = Vec::new();
    // Each cut marks the replica down until the health checks take it back.
    let (mut bind_cuts, mut parse_cuts) = (0, 0);
    for i in 0..16 {
        until_readable(&p, "namedb", &[1]).await;
        let before = cuts.load(SeqCst);
        // Prepared long before: only its Bind names the marker.
        match client.query_one(&stmt, &[&"cut-here"]).await {
            Ok(row) => {
                let v: String = row.get(0);
                if !v.starts_with("cut-here ") {
                    errors.push(format!("bind {i}: answered {v:?}"));
                }
            }
            Err(e) => errors.push(format!("bind {i}: {e:?}")),
        }
        bind_cuts += cuts.load(SeqCst) - before;
        until_readable(&p, "namedb", &[1]).await;
        let before = cuts.load(SeqCst);
        // Prepared now (Parse, Describe, Sync; then Bind, Execute, Sync), a text the
        // proxy has not seen before.
        let sql = format!("SELECT 'cut-here {i}', $1::int + 1");
        match client.query_one(sql.as_str(), &[&i]).await {
            Ok(row) => {
                let (t, n): (String, i32) = (row.get(0), row.get(1));
                if t != format!("cut-here {i}") || n != i + 1 {
                    errors.push(format!("parse {i}: answered {t:?} {n}"));
                }
            }
            Err(e) => errors.push(format!("parse {i}: {e:?}")),
        }
        parse_cuts += cuts.load(SeqCst) - before;
    }
    assert!(errors.is_empty(), "the reader saw errors: {errors:#?}");
    assert!(
        bind_cuts > 0 && parse_cuts > 0,
        "no cut under a Bind ({bind_cuts}) or a Parse ({parse_cuts}): the test tested little"
    );
}

/// As above, when the other replica's connection lacks the statement the lost request
/// bound (prepared on the first replica only, while the second was unreachable): the replay
/// waits there for the statement to be prepared and its result type checked, as a client's
/// Bind on a connection that lacks it does. No error, each answer the client's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_lost_on_a_replica_is_replayed_where_its_statement_must_be_prepared() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "lackdb");
    let (r1, r2) = (c.replica_ports()[0], c.replica_ports()[1]);
    let (relay1, armed, cuts) = cutting_relay(r1, b"cut-here").await;
    // Replica 2 unreachable while `away` is set: every connection through it is cut.
    let away = Arc::new(AtomicBool::new(false));
    let gone = away.clone();
    let relay2 = relay(r2, move || {
        let gone = gone.clone();
        let up: Tap = Box::new(move |_, _| (!gone.load(SeqCst)).then_some(true));
        (up, Box::new(|_, _| Some(true)))
    })
    .await;
    let text = via_relays(&c, "lackdb", &[(r1, relay1), (r2, relay2)]);
    let p = start_proxy(&text);
    let client = connect(&p.conn_str("lackdb")).await;
    let mut errors = Vec::new();
    for i in 0..12 {
        until_readable(&p, "lackdb", &[1, 2]).await;
        // Prepared while replica 2 is away: on replica 1's connection only.
        away.store(true, SeqCst);
        let sql = format!("SELECT $1::text || ' ' || {i} || ' ' || inet_server_port()");
        let stmt = match client.prepare(&sql).await {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("prepare {i}: {e:?}"));
                continue;
            }
        };
        away.store(false, SeqCst);
        until_readable(&p, "lackdb", &[1, 2]).await;
        armed.store(true, SeqCst);
        match client.query_one(&stmt, &[&"cut-here"]).await {
            Ok(row) => {
                let v: String = row.get(0);
                if !v.starts_with(&format!("cut-here {i} ")) {
                    errors.push(format!("bind {i}: answered {v:?}"));
                }
            }
            Err(e) => errors.push(format!("bind {i}: {e:?}")),
        }
        armed.store(false, SeqCst);
    }
    assert!(errors.is_empty(), "the reader saw errors: {errors:#?}");
    assert!(
        cuts.load(SeqCst) > 0,
        "no Bind was cut on replica 1: the test tested nothing"
    );
    // A table the statement reads gains a column after it was prepared: wherever the Bind
    // runs (replayed after a cut or not), the client gets the server's refusal of a
    // statement whose result type changed (0A000), never rows of columns it was not told of.
    for i in 0..3 {
        c.psql_db(
            0,
            "lackdb",
            &format!("CREATE TABLE lt{i} (a int); INSERT INTO lt{i} VALUES (1)"),
        )
        .unwrap();
        c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
        until_readable(&p, "lackdb", &[1, 2]).await;
        away.store(true, SeqCst);
        let stmt = client
            .prepare(&format!("SELECT * FROM lt{i} WHERE $1::text IS NOT NULL"))
            .await
            .unwrap();
        away.store(false, SeqCst);
        until_readable(&p, "lackdb", &[1, 2]).await;
        c.psql_db(0, "lackdb", &format!("ALTER TABLE lt{i} ADD COLUMN b int"))
            .unwrap();
        c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
        armed.store(true, SeqCst);
        let r = client.query(&stmt, &[&"cut-here"]).await;
        armed.store(false, SeqCst);
        let code = r
            .as_ref()
            .err()
            .and_then(|e| e.code())
            .map(|c| c.code().to_owned());
        assert_eq!(code.as_deref(), Some("0A000"), "table {i}: {r:?}");
    }
}

/// About 13 kB of rows, slowly (some 0.1 s): more than PostgreSQL's 8 kB send buffer.
const SLOW_ROWS: &str = "SELECT g, md5(g::text), pg_sleep(0.0003) FROM generate_series(1, 300) g";

/// Replicas stop under sixteen readers (half with settings of their own): one in immediate
/// mode (its backends' last word is a WARNING), then the other in fast mode (a FATAL 57P01,
/// often right after the answer to a statement, on a connection the client is letting go).
/// Two of the readers read 300 rows slowly, an answer the server sends in two writes, so a
/// stop can come after the first. No reader sees an error; each replica serves reads again
/// once restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_in_immediate_or_fast_mode_costs_readers_no_error() {
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "stopdb");
    let p = start_proxy(&routing_config(&c, "stopdb", ""));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut cs = p.conn_str("stopdb");
        if i % 2 == 1 {
            cs.push_str(&format!(" application_name=reader{i}"));
        }
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&cs).await;
            let (mut ok, mut errors) = (0, Vec::new());
            let (sql, rows) = if i % 8 == 6 {
                (SLOW_ROWS, 300)
            } else {
                ("SELECT inet_server_port()", 1)
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.simple_query(sql).await {
                    Ok(m) => {
                        let n = m
                            .iter()
                            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
                            .count();
                        assert_eq!(n, rows, "{sql}");
                        ok += 1;
                    }
                    Err(e) => {
                        // The proxy closes a session whose backend died mid-statement: like
                        // a real application, reconnect.
                        errors.push(format!("{e:?}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        client = connect(&cs).await;
                    }
                }
            }
            (ok, errors)
        }));
    }
    for (node, immediate) in [(1, true), (2, false), (1, false)] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.stop_node(node, immediate).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.start_node(node).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let (ok, errors) = t.await.unwrap();
        assert!(ok > 0);
        assert!(errors.is_empty(), "a client saw errors: {errors:#?}");
    }
    // Restarted, they take reads again.
    let client = connect(&p.conn_str("stopdb")).await;
    let mut seen = HashMap::new();
    for _ in 0..50 {
        seen.extend(count_reads(&client, 20).await);
        if c.replica_ports().iter().all(|r| seen.contains_key(r)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        c.replica_ports().iter().all(|r| seen.contains_key(r)),
        "a restarted replica never served a read: {seen:?}"
    );
}

/// The postmaster of node `node` of `c` and every process it started.
fn server_processes(c: &PgCluster, node: usize) -> Vec<i32> {
    let pm_file = std::fs::read_to_string(c.data_dir(node).join("postmaster.pid")).unwrap();
    let postmaster: i32 = pm_file.lines().next().unwrap().trim().parse().unwrap();
    let mut out = vec![postmaster];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent's pid is the second field after the command's closing parenthesis.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(postmaster) {
            out.push(pid);
        }
    }
    out
}

/// A replica stops answering without closing its connections (every process of it stopped:
/// from the proxy's side a powered-off host or a network partition looks the same) while
/// readers have statements running on it, simple and prepared. Its probes mark it down, its
/// connections are closed (`[health] close_replica_connections`), and the reads that were
/// waiting on it run again on the other replica: every reader goes on, with no error, while
/// the replica is still stopped. Directly, they would wait as long as the server is away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_a_replica_that_stops_answering_run_again_elsewhere() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;
    const READERS: usize = 8;
    const SLOW: &str = "SELECT pg_sleep(0.3), inet_server_port()";
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "frozendb");
    let p = start_proxy(&routing_config(&c, "frozendb", ""));
    until_readable(&p, "frozendb", &[1, 2]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done: Arc<Vec<AtomicUsize>> = Arc::new((0..READERS).map(|_| AtomicUsize::new(0)).collect());
    let mut tasks = Vec::new();
    for i in 0..READERS {
        let (stop, done) = (stop.clone(), done.clone());
        let cs = p.conn_str("frozendb");
        tasks.push(tokio::spawn(async move {
            let client = connect(&cs).await;
            let prepared = client.prepare(SLOW).await.unwrap();
            let mut errors = Vec::new();
            while !stop.load(Relaxed) {
                let result = if i % 2 == 0 {
                    client.simple_query(SLOW).await.map(drop)
                } else {
                    client.query(&prepared, &[]).await.map(drop)
                };
                match result {
                    Ok(()) => {
                        done[i].fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        errors.push(format!("{e:?}"));
                        break;
                    }
                }
            }
            errors
        }));
    }
    // Wait until reads are running on replica 1, then stop all of it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running = c
            .psql(
                1,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(0.3)%' \
                 AND state = 'active'",
            )
            .unwrap();
        if running.trim().parse::<u32>().unwrap_or(0) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no reads ran on replica 1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let frozen = Stopped::stop(&server_processes(&c, 1));
    // Down after two probes with no answer (~2.2 s with a 1 s timeout); then every reader
    // must make progress while the replica is still stopped.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before: Vec<usize> = done.iter().map(|d| d.load(Relaxed)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Vec<usize> = done.iter().map(|d| d.load(Relaxed)).collect();
    let stuck: Vec<usize> = (0..READERS).filter(|&i| after[i] == before[i]).collect();
    let state = p.backends("frozendb");
    drop(frozen);
    stop.store(true, Relaxed);
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await.unwrap());
    }
    assert!(
        stuck.is_empty(),
        "readers {stuck:?} were still waiting on the stopped replica ({before:?} -> {after:?}); {state}"
    );
    assert!(errors.is_empty(), "readers saw errors: {errors:#?}");
    // Back, it takes reads again, and no connection closed under it is handed out.
    let client = connect(&p.conn_str("frozendb")).await;
    let r1 = c.replica_ports()[0];
    let mut seen = HashMap::new();
    for _ in 0..50 {
        seen.extend(count_reads(&client, 20).await);
        if seen.contains_key(&r1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.contains_key(&r1),
        "the resumed replica never served a read: {seen:?}"
    );
    let seen = count_reads(&client, 200).await;
    assert_eq!(seen.values().sum::<usize>(), 200, "{seen:?}");
}

/// The primary restarts (fast and immediate shutdown) while clients sit idle between
/// statements: their server connections, idle in the pool, are dead afterwards, and the
/// clients' next statements (simple and extended, writes and reads) run on new ones with no
/// error, as behind PgBouncer; directly, each client would have lost its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_primary_costs_idle_clients_no_error() {
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "restart");
    let p = start_proxy(&routing_config(&c, "restart", ""));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(connect(&p.conn_str("restart")).await);
    }
    clients[0]
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let mut id = 0;
    for immediate in [false, true] {
        for (i, client) in clients.iter().enumerate() {
            id += 1;
            if i % 2 == 0 {
                client
                    .simple_query(&format!("INSERT INTO t VALUES ({id})"))
                    .await
                    .unwrap();
            } else {
                client
                    .execute("INSERT INTO t VALUES ($1)", &[&id])
                    .await
                    .unwrap();
            }
        }
        c.stop_node(0, immediate).unwrap();
        c.start_node(0).unwrap();
        let start = Instant::now();
        while !p.cluster_state("restart").backends[0].is_up() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{}",
                p.backends("restart")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (i, client) in clients.iter().enumerate() {
            id += 1;
            let r = if i % 2 == 0 {
                client
                    .simple_query(&format!("INSERT INTO t VALUES ({id})"))
                    .await
                    .map(|_| ())
            } else {
                client
                    .execute("INSERT INTO t VALUES ($1)", &[&id])
                    .await
                    .map(|_| ())
            };
            r.unwrap_or_else(|e| {
                panic!("client {i} after the restart (immediate: {immediate}): {e:?}")
            });
            let n: i64 = client
                .query_one(
                    "/* switchyard:primary */ SELECT count(*) FROM t WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 1);
        }
    }
    let n: i64 = clients[0]
        .query_one("/* switchyard:primary */ SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 32);
}

/// Sixteen writers, each with a ledger of what it was told, while the primary stops (fast,
/// immediate) and crashes (SIGKILL) under them and starts again. Each attempt bumps the
/// writer's counter row and logs the new value with the attempt's number in the same
/// transaction, in four ways: one statement (simple and extended), a transaction of
/// extended statements, and a simple multi-statement BEGIN ... COMMIT. At the end, per
/// writer: the log has exactly the counter's number of rows (no transaction half applied),
/// every attempt the writer was told committed is logged once, no attempt is logged twice
/// (none applied again by a retry the writer did not see), and every logged attempt is one
/// it was told committed or saw fail (its answer lost). Every writer commits again after
/// the last restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_under_primary_restarts_keep_their_ledgers() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "ledger");
    c.psql_db(
        0,
        "ledger",
        "CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL); \
         INSERT INTO c SELECT g, 0 FROM generate_series(0, 15) g; \
         CREATE TABLE log (id int, n int, k int, PRIMARY KEY (id, n))",
    )
    .unwrap();
    let p = start_proxy(&routing_config(&c, "ledger", ""));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (stop, restarted) = (
        std::sync::Arc::new(AtomicBool::new(false)),
        std::sync::Arc::new(AtomicBool::new(false)),
    );
    let mut tasks = Vec::new();
    for w in 0..16i32 {
        let mut cs = p.conn_str("ledger");
        if w % 2 == 1 {
            cs.push_str(&format!(" application_name=writer{w}"));
        }
        let (stop, restarted) = (stop.clone(), restarted.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&cs).await;
            let mut ledger = Ledger::default();
            let bump = "WITH u AS (UPDATE c SET n = n + 1 WHERE id = $1 RETURNING id, n) \
                        INSERT INTO log SELECT id, n, $2 FROM u";
            let mut k = 0i32;
            while !stop.load(Relaxed) {
                k += 1;
                let simple = |sql: &str| {
                    sql.replace("$1", &w.to_string())
                        .replace("$2", &k.to_string())
                };
                let way = ((k + w) % 4) as usize;
                let r = match way {
                    0 => client.simple_query(&simple(bump)).await.map(|_| ()),
                    1 => client.execute(bump, &[&w, &k]).await.map(|_| ()),
                    2 => {
                        async {
                            let tx = client.transaction().await?;
                            tx.execute("UPDATE c SET n = n + 1 WHERE id = $1", &[&w])
                                .await?;
                            tx.execute(
                                "INSERT INTO log SELECT id, n, $2 FROM c WHERE id = $1",
                                &[&w, &k],
                            )
                            .await?;
                            tx.commit().await
                        }
                        .await
                    }
                    _ => client
                        .simple_query(&simple(
                            "BEGIN; UPDATE c SET n = n + 1 WHERE id = $1; \
                             INSERT INTO log SELECT id, n, $2 FROM c WHERE id = $1; COMMIT",
                        ))
                        .await
                        .map(|_| ()),
                };
                match r {
                    Ok(()) => ledger.note(k, way, true, restarted.load(Relaxed)),
                    Err(_) => {
                        ledger.note(k, way, false, false);
                        // Whether it committed is unknown; the session may be gone: as an
                        // application would, connect again (the proxy takes logins while
                        // the primary is down).
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        client = connect(&cs).await;
                    }
                }
            }
            (w, ledger)
        }));
    }
    for mode in ["fast", "immediate", "kill", "fast"] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        match mode {
            "kill" => c.kill_node(0).unwrap(),
            m => c.stop_node(0, m == "immediate").unwrap(),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.start_node(0).unwrap();
    }
    restarted.store(true, Relaxed);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Relaxed);
    let mut wrong = Vec::new();
    for t in tasks {
        let (w, ledger) = t.await.unwrap();
        let n: usize = c
            .psql_db(0, "ledger", &format!("SELECT n FROM c WHERE id = {w}"))
            .unwrap()
            .parse()
            .unwrap();
        let logged: Vec<i32> = c
            .psql_db(
                0,
                "ledger",
                &format!("SELECT k FROM log WHERE id = {w} ORDER BY k"),
            )
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        if let Some(why) = ledger.broken(n, &logged) {
            wrong.push(format!("writer {w}: {why}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promoted_replica_without_restart() {
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "promo");
    let p = start_proxy(&routing_config(&c, "promo", ""));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let client = connect(&p.conn_str("promo")).await;
    client
        .batch_execute("CREATE TABLE t (x int)")
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    c.stop_node(0, true).unwrap();
    c.promote(1).unwrap();
    let new_primary = c.replica_ports()[0];
    // Must succeed within five probe intervals (5 x 200 ms) of the promotion.
    let start = Instant::now();
    let mut done = None;
    let mut last_error = String::new();
    while start.elapsed() < Duration::from_secs(5) {
        match tokio_postgres::connect(&p.conn_str("promo"), tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                match client
                    .simple_query("INSERT INTO t VALUES (1) RETURNING inet_server_port()")
                    .await
                {
                    Ok(rows) => {
                        let port = rows.iter().find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                r.get(0).map(|v| v.parse::<u16>().unwrap())
                            }
                            _ => None,
                        });
                        if port.is_some() {
                            done = port;
                            break;
                        }
                    }
                    Err(e) => last_error = format!("insert: {e:?}"),
                }
            }
            Err(e) => last_error = format!("connect: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "last error: {last_error}\nbackends: {}",
        p.backends("promo")
    );
    let took = start.elapsed();
    eprintln!("writes reached the promoted replica after {took:?}");
    assert_eq!(
        done,
        Some(new_primary),
        "writes did not reach the promoted replica"
    );
    assert!(took <= Duration::from_millis(5 * 200), "took {took:?}");
}

async fn ryw_misses(p: &Proxy, db: &str, first_id: usize, iterations: usize) -> usize {
    let client = connect(&p.conn_str(db)).await;
    let mut misses = 0;
    for i in first_id..first_id + iterations {
        client
            .batch_execute(&format!("INSERT INTO r VALUES ({i})"))
            .await
            .unwrap();
        let rows = client
            .simple_query(&format!("SELECT count(*) FROM r WHERE id = {i}"))
            .await
            .unwrap();
        let seen = rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("1")),
        );
        if !seen {
            misses += 1;
        }
    }
    misses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_never_misses_where_eventual_does() {
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "rywdb");
    for n in 1..=2 {
        c.psql(n, "ALTER SYSTEM SET recovery_min_apply_delay = '300ms'")
            .unwrap();
        c.psql(n, "SELECT pg_reload_conf()").unwrap();
    }
    let ryw = start_proxy(&routing_config(
        &c,
        "rywdb",
        "consistency = \"read_your_writes\"\nmax_lag = \"30s\"",
    ));
    let eventual = start_proxy(&routing_config(&c, "rywdb", "max_lag = \"30s\""));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let setup = connect(&ryw.conn_str("rywdb")).await;
    setup
        .batch_execute("CREATE TABLE r (id int)")
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    assert_eq!(ryw_misses(&ryw, "rywdb", 0, 1000).await, 0);
    let missed = ryw_misses(&eventual, "rywdb", 1_000_000, 100).await;
    assert!(
        missed >= 1,
        "eventual consistency never missed: the test cannot tell the modes apart"
    );
}

/// The port that ran `sql` (which must return `inet_server_port()`), or the error.
async fn write_port(client: &tokio_postgres::Client, sql: &str) -> Result<u16, String> {
    let rows = client
        .simple_query(sql)
        .await
        .map_err(|e| format!("{e:?}"))?;
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .ok_or_else(|| "no row".to_string())
}

/// Split brain: replica 1 is promoted while the old primary keeps running, writable. Writes
/// through the proxy must reach the promoted replica within a few health intervals and never
/// go back; then the proxy's connections on it are terminated (as by an administrator), and
/// writes must still go to it, not back to the old primary. With `checkpoint`, the promoted
/// replica runs a CHECKPOINT first (its control file then shows the new timeline); without,
/// it keeps the old timeline there during the whole test.
async fn split_brain(db: &str, checkpoint: bool) {
    // A long checkpoint_timeout paces the checkpoint that follows the promotion over a long
    // time (about 100 ms per dirty buffer), so the promoted replica's control file keeps the
    // old timeline during the test unless a CHECKPOINT is asked for.
    let c = topology(&["checkpoint_timeout = '1h'", "max_wal_size = '4GB'"]);
    create_db_on(&c, db);
    let p = start_proxy(&routing_config(&c, db, "max_lag = \"2s\""));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let [old, new] = [c.primary_port(), c.replica_ports()[0]];
    let client = connect(&p.conn_str(db)).await;
    // About 16 MB: dirty buffers on the replica for the post-promotion checkpoint to write.
    client
        .batch_execute(
            "CREATE TABLE t (id serial, pad text); \
             INSERT INTO t (pad) SELECT repeat('s', 1000) FROM generate_series(1, 12000)",
        )
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
    let insert = "INSERT INTO t (pad) VALUES ('b') RETURNING inet_server_port()";
    assert_eq!(write_port(&client, insert).await, Ok(old));
    c.promote(1).unwrap();
    if checkpoint {
        c.psql(1, "CHECKPOINT").unwrap();
        assert_eq!(c.checkpoint_timeline(1).unwrap(), 2);
    }
    let promoted_at = Instant::now();
    let mut ports = Vec::new();
    let mut first_new = None;
    while promoted_at.elapsed() < Duration::from_secs(5) {
        let port = write_port(&client, insert).await.unwrap();
        ports.push(port);
        if port == new && first_new.is_none() {
            first_new = Some(promoted_at.elapsed());
        }
        // Once moved, keep writing for a while: no write may go back.
        if first_new.is_some_and(|t| promoted_at.elapsed() > t + Duration::from_millis(1500)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !checkpoint {
        assert_eq!(
            c.checkpoint_timeline(1).unwrap(),
            1,
            "the promoted replica finished a checkpoint: the test cannot tell the timeline sources apart"
        );
    }
    let first_new = first_new.unwrap_or_else(|| {
        panic!(
            "writes never reached the promoted replica: {}",
            p.backends(db)
        )
    });
    eprintln!("writes reached the promoted replica after {first_new:?}");
    let moved = ports.iter().position(|&port| port == new).unwrap();
    assert!(
        ports[moved..].iter().all(|&port| port == new),
        "a write went back to the old primary: {ports:?}"
    );
    // A statement running on the new primary through the proxy has its server connection
    // terminated (as by an administrator): a connection error on the statement path.
    let victim = connect(&p.conn_str(db)).await;
    let sleeping = tokio::spawn(async move {
        victim
            .simple_query("/* switchyard:primary */ SELECT pg_sleep(30)")
            .await
            .map(|_| ())
    });
    let find = "FROM pg_stat_activity WHERE query LIKE '%SELECT pg_sleep(30)' \
                AND state = 'active' AND pid <> pg_backend_pid()";
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.psql(1, &format!("SELECT count(*) {find}")).unwrap() != "1" {
        assert!(
            Instant::now() < deadline,
            "the statement never ran on the new primary"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.psql(1, &format!("SELECT pg_terminate_backend(pid) {find}"))
        .unwrap();
    let killed = tokio::time::timeout(Duration::from_secs(10), sleeping)
        .await
        .expect("the terminated statement ended")
        .unwrap();
    assert!(killed.is_err(), "the terminated statement succeeded");
    let mut client = client;
    let mut after = Vec::new();
    let mut errors = 0;
    let since = Instant::now();
    // Longer than `rise` (2) probe intervals: the time a backend marked down by a connection
    // error stays down.
    while since.elapsed() < Duration::from_secs(2) {
        match write_port(&client, insert).await {
            Ok(port) => after.push(port),
            Err(e) => {
                // The session whose connection was terminated ends: reconnect, as an
                // application would.
                errors += 1;
                assert!(errors <= 5, "writes keep failing: {e}");
                client = connect(&p.conn_str(db)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !after.is_empty() && after.iter().all(|&port| port == new),
        "after a terminated connection writes went elsewhere: {after:?}; {}",
        p.backends(db)
    );
    // The old primary is fenced, and the split brain was counted.
    let state = p.cluster_state(db);
    assert!(state.backends[0].is_fenced(), "{}", p.backends(db));
    assert!(!state.backends[1].is_fenced(), "{}", p.backends(db));
    assert!(
        state
            .split_brains
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // Replica 2 still follows the old primary, on the old timeline: it has none of the new
    // primary's writes and leaves the read set once that is longer than max_lag; reads then
    // fall back to the new primary (never to the fenced old one).
    let deadline = promoted_at + Duration::from_secs(10);
    while state.backends[2].in_read_set() {
        assert!(Instant::now() < deadline, "{}", p.backends(db));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..20 {
        assert_eq!(
            served_by(&client, "SELECT inet_server_port()").await,
            new,
            "{}",
            p.backends(db)
        );
    }
    // Both nodes still accept writes directly: it really was a split brain.
    assert_eq!(c.psql(0, "SELECT pg_is_in_recovery()").unwrap(), "f");
    assert_eq!(c.psql(1, "SELECT pg_is_in_recovery()").unwrap(), "f");
    if !checkpoint {
        assert_eq!(c.checkpoint_timeline(1).unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_writes_follow_the_newer_timeline_before_any_checkpoint() {
    let _g = SERIAL.lock().await;
    split_brain("splitdb", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_a_terminated_connection_does_not_move_writes_back() {
    let _g = SERIAL.lock().await;
    split_brain("splitdb2", true).await;
}

/// A client pipelines two autocommit statements across a promotion: the first runs on the
/// old primary, the second is sent after the proxy fenced it. The held connection is idle
/// between them and carries no session state, so the second statement goes to the new
/// primary; the session is not ended (it would be if it held a transaction or state there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_sent_after_fencing_follows_the_new_primary() {
    let _g = SERIAL.lock().await;
    let db = "fencedb";
    let c = topology(&[]);
    create_db_on(&c, db);
    // A trust user as well, for the raw client below.
    let config = routing_config(&c, db, "max_lag = \"2s\"").replace(
        "[[cluster]]",
        "[[user]]\nname = \"raw\"\nauth = \"trust\"\n\n[[cluster]]",
    );
    let p = start_proxy(&config);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let [old, new] = [c.primary_port(), c.replica_ports()[0]];
    let client = connect(&p.conn_str(db)).await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
    let state = p.cluster_state(db);
    // Another client has an extended batch open on the old primary (no Sync yet) when it is
    // fenced: its Sync must end the session at once (the batch began there), not wait for
    // answers that only the Sync would bring.
    let mut raw = raw::Raw::connect(p.port, "raw", db, &[]).await;
    raw.send(&raw::msg::extended("INSERT INTO t VALUES (10)", &[]))
        .await;
    // And a client inside a transaction there: the answer to its statement running across
    // the fencing still reaches it; its next statement ends the session (rolled back).
    let txc = connect(&p.conn_str(db)).await;
    txc.batch_execute("BEGIN; INSERT INTO t VALUES (20)")
        .await
        .unwrap();
    let slow = write_port(
        &client,
        "/* switchyard:primary */ SELECT inet_server_port() FROM pg_sleep(3)",
    );
    let tx_slow = write_port(&txc, "SELECT inet_server_port() FROM pg_sleep(3.1)");
    let fenced = async {
        // Both slow statements are running on the old primary when the replica is promoted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while c
            .psql(
                0,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FROM pg_sleep(3%' \
                 AND pid <> pg_backend_pid()",
            )
            .unwrap()
            != "2"
        {
            assert!(Instant::now() < deadline, "the slow statements never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.promote(1).unwrap();
        c.psql(1, "CHECKPOINT").unwrap();
        while !state.backends[0].is_fenced() {
            assert!(Instant::now() < deadline, "{}", p.backends(db));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = write_port(
            &client,
            "INSERT INTO t VALUES (1) RETURNING inet_server_port()",
        );
        let tx_after = write_port(&txc, "SELECT inet_server_port()");
        tokio::join!(after, tx_after)
    };
    let (slow, tx_slow, (after, tx_after)) = tokio::join!(slow, tx_slow, fenced);
    assert_eq!(slow, Ok(old), "the slow statement ran where it started");
    assert_eq!(after, Ok(new), "{}", p.backends(db));
    assert_eq!(tx_slow, Ok(old), "the answer to what ran there comes first");
    let tx_after = tx_after.expect_err("a statement of a transaction on the fenced server");
    assert!(tx_after.contains("E08006"), "{tx_after}");
    raw.send(&raw::msg::sync()).await;
    let answer = raw.until_ready(1).await;
    let fatal = answer
        .iter()
        .find(|m| m.tag == b'E')
        .and_then(|m| m.field(b'C'));
    assert_eq!(fatal.as_deref(), Some("08006"), "{}", raw::summary(&answer));
    for node in [0, 1] {
        assert_eq!(
            c.psql_db(node, db, "SELECT count(*) FROM t WHERE id IN (10, 20)")
                .unwrap(),
            "0"
        );
    }
    // The session goes on.
    assert_eq!(
        write_port(
            &client,
            "INSERT INTO t VALUES (2) RETURNING inet_server_port()"
        )
        .await,
        Ok(new)
    );
}

/// A planned switchover behind PAUSE: writers keep writing (autocommit and two-statement
/// transactions) while the operator pauses the cluster, stops the primary, promotes a
/// replica, waits for the proxy to see it, and resumes. No writer sees an error, every write
/// a writer was told committed is on the new primary, and nothing else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_behind_pause_costs_clients_no_error_and_no_write() {
    let _g = SERIAL.lock().await;
    let c = topology(&[]);
    create_db_on(&c, "switchover");
    let text = format!(
        "{}\n[pool]\npause_timeout = \"30s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        routing_config(&c, "switchover", "")
    );
    let p = start_proxy(&text);
    let admin = p.admin_addr();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let setup = connect(&p.conn_str("switchover")).await;
    setup
        .batch_execute("CREATE TABLE ledger (writer int, n int, PRIMARY KEY (writer, n))")
        .await
        .unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6i32 {
        let (conn, stop) = (p.conn_str("switchover"), stop.clone());
        writers.push(tokio::spawn(async move {
            let client = connect(&conn).await;
            let (mut told, mut errors) = (Vec::new(), Vec::new());
            let mut n = 0i32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = if n % 3 == 2 {
                    client
                        .batch_execute(&format!(
                            "BEGIN; INSERT INTO ledger VALUES ({w}, {n}); \
                             INSERT INTO ledger VALUES ({w}, {}); COMMIT",
                            n + 1
                        ))
                        .await
                        .map(|_| vec![n, n + 1])
                } else {
                    client
                        .execute("INSERT INTO ledger VALUES ($1, $2)", &[&w, &n])
                        .await
                        .map(|_| vec![n])
                };
                match r {
                    Ok(ns) => told.extend(ns.into_iter().map(|n| (w, n))),
                    Err(e) => errors.push(format!("writer {w} row {n}: {e:?}")),
                }
                n += 2;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (told, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (code, body) =
        tokio::task::spawn_blocking(move || admin_request(admin, "POST", "/pause?wait=10"))
            .await
            .unwrap();
    assert_eq!(code, 200, "not drained: {body}");
    let paused_at = Instant::now();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    c.stop_node(0, false).unwrap();
    c.promote(1).unwrap();
    let state = p.cluster_state("switchover");
    while state.primary().ok() != Some(1) {
        assert!(
            paused_at.elapsed() < Duration::from_secs(20),
            "the proxy did not take the promoted replica as primary: {}",
            p.backends("switchover")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body) = tokio::task::spawn_blocking(move || admin_request(admin, "POST", "/resume"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    eprintln!("paused for {:?}", paused_at.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut told = Vec::new();
    for w in writers {
        let (t, errors) = w.await.unwrap();
        assert!(errors.is_empty(), "writers saw errors: {errors:?}");
        told.extend(t);
    }
    told.sort();
    let new_primary = format!(
        "host=127.0.0.1 port={} user=postgres dbname=switchover",
        c.replica_ports()[0]
    );
    let direct = connect(&new_primary).await;
    let mut on_server: Vec<(i32, i32)> = direct
        .query("SELECT writer, n FROM ledger", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    on_server.sort();
    assert!(told.len() > 100, "too few writes to tell: {}", told.len());
    assert_eq!(
        on_server, told,
        "the new primary differs from what writers were told"
    );
}
