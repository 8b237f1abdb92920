//! Real drivers used the way applications use them (node-postgres named queries, psycopg 3
//! pipelines and server-side prepares, asyncpg pools with their reset query and COPY, pgjdbc
//! prepared statements and batches, postgres.js with its pipelining and statement cache), plus a raw protocol client for what drivers do only
//! sometimes (Flush without Sync, two Queries in one write).
//!
//! Each scenario program (tests/drivers/) runs through the proxy and, where a comparison makes
//! sense, directly against the primary on the same starting state; its outputs must agree, and
//! what it committed is read back from the primary. Every program and every driver call has a
//! timeout: a hang is a failure. The proxy runs in transaction mode with small pools, so
//! backend connections pass between clients often and leaks show.
//!
//! The tests run one at a time (`serial()`): on a 2-core machine two of these at once would
//! turn timing into failures. The leak tests, whose many cases mostly wait on their programs
//! and time nothing, run their cases two at a time, each in a database of its own
//! (`two_at_a_time`). Drivers are installed by `scripts/install-deps.sh`.

mod support;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::drivers::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs an async test body on a runtime of its own (after `serial()` was taken: the guard is
/// never held across an await).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Proxy with replicas (read/write splitting on), one worker, `size` connections per backend.
fn split_proxy(db: &str, size: usize) -> Proxy {
    let p = start_proxy(&drivers_config(db, 1, size, true));
    wait_replicas_ready(&p, db);
    p
}

const T_ROWS: &str =
    "DROP TABLE IF EXISTS t; CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); \
     INSERT INTO t SELECT g, 0 FROM generate_series(1, 10) g";

fn reset_t(db: &str) -> impl Fn() + '_ {
    move || {
        primary_sql(db, T_ROWS);
        cluster()
            .wait_replay_caught_up(Duration::from_secs(30))
            .unwrap();
    }
}

/// Lines that differ between two outcomes' outputs, for failure messages.
fn diff(proxy: &Outcome, direct: &Outcome) -> String {
    let a = proxy.lines();
    let b = direct.lines();
    let mut s = String::new();
    for l in &b {
        if !a.contains(l) {
            s.push_str(&format!("  direct only: {l}\n"));
        }
    }
    for l in &a {
        if !b.contains(l) {
            s.push_str(&format!("  proxy only:  {l}\n"));
        }
    }
    s
}

/// What a scenario's direct run must show to have done what it is there for.
type Meant<'a> = dyn Fn(&[&str]) -> bool + 'a;

/// Runs scenario `name` of `lang` with `args` through `proxy` and directly on the primary
/// (`reset` before each run, `limit` for each); both must complete, `meant` must hold of the
/// direct run's lines (the scenario did what it is there for; `what` says what went wrong when
/// it does not), and the two outputs must be equal line for line.
fn same_as_direct(
    (lang, name, args): (Lang, &str, &[&str]),
    proxy: &Target,
    limit: Duration,
    reset: &dyn Fn(),
    (what, meant): (&str, &Meant<'_>),
) {
    let (via, direct) = run_both(lang, name, args, proxy, limit, reset);
    direct.expect_completed();
    via.expect_completed();
    assert!(
        meant(&direct.lines()),
        "{lang:?} {name} directly: {what}: {:?}",
        direct.lines()
    );
    assert_eq!(
        via.lines(),
        direct.lines(),
        "{lang:?} {name} through the proxy differs from direct:\n{}",
        diff(&via, &direct)
    );
}

// ---------------------------------------------------------------------------------------------
// a. node-postgres named queries inside transactions

/// Defect targeted: the proxy answered BEGIN itself and a named Parse of new statement text
/// took a backend without sending the deferred BEGIN, so the UPDATE autocommitted.
#[test]
fn node_named_queries_in_transactions_commit_exactly_what_the_client_committed() {
    let _g = serial();
    let db = "drv_node_named";
    fresh_db(db, "");
    let p = split_proxy(db, 2);
    let (via, direct) = run_both(
        Lang::Node,
        "named_tx",
        &[],
        &Target::proxy(&p, db),
        Duration::from_secs(90),
        &reset_t(db),
    );
    direct.expect_completed();
    via.expect_completed();
    // What the driver and the primary saw must be what a direct connection sees: the row is
    // unchanged during and after a rolled-back transaction, changed once after COMMIT.
    assert_eq!(via.value("direct during tx"), Some("0"), "{}", via.stdout);
    assert_eq!(
        via.value("direct after ROLLBACK"),
        Some("0"),
        "{}",
        via.stdout
    );
    assert_eq!(
        via.value("direct after COMMIT"),
        Some("1"),
        "{}",
        via.stdout
    );
    assert_eq!(
        via.lines(),
        direct.lines(),
        "node-postgres through the proxy differs from direct:\n{}",
        diff(&via, &direct)
    );
}

// ---------------------------------------------------------------------------------------------
// b. session state of one client is never seen by others

const LEAK_KINDS: [&str; 7] = [
    "statement_timeout",
    "search_path",
    "advisory_lock",
    "select_into_temp",
    "temp_view",
    "do_set_config",
    "function_set_config",
];

const LEAK_SETUP: &str = "CREATE SCHEMA leak_schema; \
     CREATE FUNCTION leak_fn() RETURNS int LANGUAGE plpgsql AS \
     $$ BEGIN PERFORM set_config('work_mem', '2345kB', false); RETURN 1; END $$";

/// Client A leaves state by each `LEAK_KINDS` means (keeping its connection open, or closing
/// it); then 30 fresh clients check settings, locks, temp objects, a pg_sleep and a COPY, in a
/// transaction, with a primary hint and plainly. Their findings must equal direct ones.
fn session_state_does_not_leak(driver: &str, db: &str) {
    let cases: Vec<(&str, &str)> = LEAK_KINDS
        .iter()
        .flat_map(|&kind| [(kind, "keep"), (kind, "close")])
        .collect();
    let found = two_at_a_time(db, LEAK_SETUP, &cases, |db, &(kind, keep)| {
        let args = [driver, kind, keep, "30"];
        let limit = Duration::from_secs(240);
        // Direct first; then a proxy of its own per case, so that a leak (a session
        // advisory lock on a pooled connection, say) cannot spill into the next case.
        let direct = run_scenario(Lang::Python, "leak", &args, &Target::direct(db), limit);
        direct.expect_completed();
        let p = split_proxy(db, 2);
        let via = run_scenario(Lang::Python, "leak", &args, &Target::proxy(&p, db), limit);
        drop(p);
        if !via.completed() {
            Some(format!(
                "{kind}/{keep}: did not complete\n{}",
                via.describe()
            ))
        } else if via.lines() != direct.lines() {
            Some(format!(
                "{kind}/{keep}: other clients saw A's state\n{}",
                diff(&via, &direct)
            ))
        } else {
            None
        }
    });
    let failures: Vec<String> = found.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{} of {} leak cases failed ({driver}):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn psycopg_session_state_of_one_client_is_never_seen_by_30_others() {
    let _g = serial();
    session_state_does_not_leak("psycopg", "drv_leak_pg3");
}

#[test]
fn asyncpg_session_state_of_one_client_is_never_seen_by_30_others() {
    let _g = serial();
    session_state_does_not_leak("asyncpg", "drv_leak_apg");
}

// ---------------------------------------------------------------------------------------------
// c. session-leak detector

/// (language, driver argument, dirty kind) of every dirtying session the detector follows.
const DIRTY: &[(Lang, &str, &str)] = &[
    (Lang::Python, "psycopg", "set"),
    (Lang::Python, "psycopg", "set_application_name"),
    (Lang::Python, "psycopg", "set_config"),
    (Lang::Python, "psycopg", "set_config_search_path"),
    (Lang::Python, "psycopg", "statement_timeout"),
    (Lang::Python, "psycopg", "do_set_config"),
    (Lang::Python, "psycopg", "function_set_config"),
    (Lang::Python, "psycopg", "temp_table"),
    (Lang::Python, "psycopg", "select_into_temp"),
    (Lang::Python, "psycopg", "temp_view"),
    (Lang::Python, "psycopg", "advisory_lock"),
    (Lang::Python, "psycopg", "listen"),
    (Lang::Python, "psycopg", "sql_prepare"),
    (Lang::Python, "psycopg", "cursor_with_hold"),
    (Lang::Python, "psycopg", "read_only_default"),
    (Lang::Python, "psycopg", "protocol_prepare"),
    (Lang::Python, "asyncpg", "set"),
    (Lang::Python, "asyncpg", "set_config"),
    (Lang::Python, "asyncpg", "do_set_config"),
    (Lang::Python, "asyncpg", "temp_table"),
    (Lang::Python, "asyncpg", "advisory_lock"),
    (Lang::Python, "asyncpg", "listen"),
    (Lang::Python, "asyncpg", "sql_prepare"),
    (Lang::Python, "asyncpg", "cursor_with_hold"),
    (Lang::Python, "asyncpg", "protocol_prepare"),
    (Lang::Node, "", "named_and_set"),
    (Lang::Node, "", "named_in_tx"),
    (Lang::Java, "", "prepared_threshold"),
    (Lang::Java, "", "read_only"),
];

/// The detector's report from `driver` on `target` (primary-hinted queries: pg_settings with
/// source 'session', temp relations, advisory locks, prepared statements other than the
/// proxy's `sy_*`, LISTEN channels, cursors).
fn detect(driver: &str, target: &Target) -> Outcome {
    let o = run_scenario(
        Lang::Python,
        "detect",
        &[driver],
        target,
        Duration::from_secs(60),
    );
    o.expect_completed();
    o
}

/// The detector's lines with what the proxy legitimately sets taken out, decided by comparing
/// with a fresh direct connection of the same driver (`direct`):
/// - settings the driver's own startup packet sets (source 'client' directly): the proxy
///   applies them with set_config(), so they show with source 'session' through it;
/// - `application_name = switchyard`, the proxy's own backend login value, which a client
///   that sets none sees instead of an empty one;
/// - the `client_settings` line itself (the proxy's backend logins differ from the driver's).
fn normalized(o: &Outcome, direct: &Outcome) -> Vec<String> {
    let startup: Vec<String> = direct
        .value("client_settings")
        .unwrap_or("")
        .split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.to_string())
        .collect();
    o.lines()
        .into_iter()
        .filter(|l| !l.starts_with("client_settings: "))
        .map(|l| {
            if let Some(v) = l.strip_prefix("session_settings: ") {
                let kept: Vec<&str> = v
                    .split(',')
                    .filter(|kv| !kv.is_empty() && !startup.iter().any(|s| s == kv))
                    .collect();
                format!("session_settings: {}", kept.join(","))
            } else if l == "application_name: switchyard"
                && direct.value("application_name") == Some("")
            {
                "application_name: ".to_string()
            } else {
                l.to_string()
            }
        })
        .collect()
}

fn diff_lines(found: &[String], want: &[String]) -> String {
    let mut s = String::new();
    for l in want.iter().filter(|l| !found.contains(l)) {
        s.push_str(&format!("  clean connection: {l}\n"));
    }
    for l in found.iter().filter(|l| !want.contains(l)) {
        s.push_str(&format!("  found:            {l}\n"));
    }
    s
}

/// Defects targeted: whatever a session leaves on its backend connection (SET, set_config,
/// DO, functions, temp objects, advisory locks, LISTEN, prepared statements, cursors WITH
/// HOLD, session characteristics) reaching the next client of that connection. Each case gets
/// a new proxy with one worker, one primary connection and no replicas, so the detector surely
/// gets the connection the dirty session used (or a new one, if the proxy closed it).
/// The proxy's own `sy_*` prepared statements are not counted (its documented statement cache).
#[test]
fn leak_detector_finds_nothing_on_a_connection_after_any_client_session() {
    let _g = serial();
    let db = "drv_detect";
    fresh_db(db, LEAK_SETUP);
    let mut failures = Vec::new();
    let mut baselines = Vec::new();
    for driver in ["psycopg", "asyncpg"] {
        let baseline = detect(driver, &Target::direct(db));
        let want = normalized(&baseline, &baseline);
        // The proxy itself must leave nothing a fresh direct connection does not have.
        let p = start_proxy(&drivers_config(db, 1, 1, false));
        let clean = normalized(&detect(driver, &Target::proxy(&p, db)), &baseline);
        if clean != want {
            failures.push(format!(
                "{driver}: a clean proxied connection differs from a direct one\n{}",
                diff_lines(&clean, &want)
            ));
        }
        drop(p);
        baselines.push((driver, baseline, want));
    }
    let cases: Vec<_> = baselines
        .iter()
        .flat_map(|b| DIRTY.iter().map(move |d| (b, d)))
        .collect();
    let found = two_at_a_time(
        db,
        LEAK_SETUP,
        &cases,
        |db, &((driver, baseline, want), &(lang, dirtier, kind))| {
            let p = start_proxy(&drivers_config(db, 1, 1, false));
            let via = Target::proxy(&p, db);
            let args: Vec<&str> = match lang {
                Lang::Python => vec![dirtier, kind],
                _ => vec![kind],
            };
            let d = run_scenario(lang, "dirty", &args, &via, Duration::from_secs(60));
            if !d.completed() {
                return Some(format!(
                    "dirty {lang:?} {dirtier} {kind}: did not complete\n{}",
                    d.describe()
                ));
            }
            let found = normalized(&detect(driver, &via), baseline);
            (found != *want).then(|| {
                format!(
                    "after {lang:?} {dirtier} {kind}, {driver} found:\n{}",
                    diff_lines(&found, want)
                )
            })
        },
    );
    failures.extend(found.into_iter().flatten());
    assert!(
        failures.is_empty(),
        "{} of {} cases leaked:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// d. asyncpg pool bigger than the proxy's pool

/// Defect targeted: asyncpg's reset query on release (pg_advisory_unlock_all(), CLOSE ALL,
/// UNLISTEN *, RESET ALL) only removes state, yet pins the client, so 20 pooled client
/// connections hold 20 backend connections and the rest wait into checkout_timeout (53300).
#[test]
fn asyncpg_pool_of_20_over_a_proxy_pool_of_4_serves_500_cycles_without_checkout_timeouts() {
    let _g = serial();
    let db = "drv_apg_pool";
    let setup = "CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL); \
                 INSERT INTO counter VALUES (1, 0); CREATE TABLE ledger (i int)";
    fresh_db(db, setup);
    let p = split_proxy(db, 4);
    let via = run_scenario(
        Lang::Python,
        "pool_stress",
        &["500", "40"],
        &Target::proxy(&p, db),
        Duration::from_secs(260),
    );
    let reset = || {
        primary_sql(db, "UPDATE counter SET n = 0; TRUNCATE ledger");
    };
    reset();
    let direct = run_scenario(
        Lang::Python,
        "pool_stress",
        &["500", "40"],
        &Target::direct(db),
        Duration::from_secs(260),
    );
    direct.expect_completed();
    via.expect_completed();
    assert_eq!(via.value("errors"), Some("0"), "{}", via.stdout);
    assert_eq!(via.value("counter"), Some("100"), "{}", via.stdout);
    assert_eq!(via.value("ledger"), Some("50"), "{}", via.stdout);
    // After one pooled connection's SET application_name = 'x' and asyncpg's RESET ALL on
    // release, nobody else sees 'x'. (What RESET ALL goes back to differs: '' directly, the
    // proxy's own backend login value `switchyard` through it; that is not compared.)
    let after = via.value("after SET application_name").unwrap_or("");
    assert!(
        after.starts_with("errors=0 ") && !after.contains("'x'"),
        "{}",
        via.stdout
    );
    let key = "after SET application_name:";
    let strip = |o: &Outcome| -> Vec<String> {
        o.lines()
            .into_iter()
            .filter(|l| !l.starts_with(key))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        strip(&via),
        strip(&direct),
        "asyncpg pool through the proxy differs from direct:\n{}",
        diff(&via, &direct)
    );
}

// ---------------------------------------------------------------------------------------------
// e. pipelines and server-side prepared statements

/// Defect targeted: a psycopg pipeline (several statements up to one Sync) is routed by its
/// first statement; `SELECT 1` sends it to a replica and the UPDATE fails with 25006.
#[test]
fn psycopg_pipelines_and_prepared_statements_behave_as_on_the_primary() {
    let _g = serial();
    let db = "drv_pg3_pipeline";
    fresh_db(db, "");
    let p = split_proxy(db, 2);
    let (via, direct) = run_both(
        Lang::Python,
        "pipeline",
        &[],
        &Target::proxy(&p, db),
        Duration::from_secs(120),
        &reset_t(db),
    );
    direct.expect_completed();
    via.expect_completed();
    assert_eq!(
        via.value("autocommit pipeline"),
        Some("1 1"),
        "{}",
        via.stdout
    );
    assert_eq!(
        via.lines(),
        direct.lines(),
        "psycopg through the proxy differs from direct:\n{}",
        diff(&via, &direct)
    );
}

/// A minimal frontend for hand-built protocol messages (trust login, no TLS).
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

const RAW_WAIT: Duration = Duration::from_secs(10);

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstr(sql))
}

/// Parse (unnamed, no parameter types), Bind (no parameters, text results), Execute.
fn pbe(sql: &str) -> Vec<u8> {
    let mut p = cstr("");
    p.extend_from_slice(&cstr(sql));
    p.extend_from_slice(&0i16.to_be_bytes());
    let mut out = msg(b'P', &p);
    let mut b = vec![0u8, 0u8]; // portal "", statement ""
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    out.extend(msg(b'B', &b));
    let mut e = cstr("");
    e.extend_from_slice(&0i32.to_be_bytes());
    out.extend(msg(b'E', &e));
    out
}

impl Raw {
    async fn connect(port: u16, user: &str, db: &str) -> Raw {
        let s = tokio::time::timeout(RAW_WAIT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connect timed out")
            .expect("connect");
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", db)] {
            body.extend(cstr(k));
            body.extend(cstr(v));
        }
        body.push(0);
        let mut start = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        start.extend(body);
        let mut r = Raw { s, buf: Vec::new() };
        r.send(&start).await;
        let got = r.until(b'Z').await;
        assert!(got.iter().all(|(t, _)| *t != b'E'), "login failed: {got:?}");
        r
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(RAW_WAIT, self.s.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write");
    }

    /// Messages up to and including the first with tag `last` (bounded by RAW_WAIT).
    async fn until(&mut self, last: u8) -> Vec<(u8, Vec<u8>)> {
        self.try_until(last, RAW_WAIT).await.unwrap_or_else(|got| {
            panic!(
                "no {:?} within {RAW_WAIT:?}; got {}",
                last as char,
                show(&got)
            )
        })
    }

    async fn try_until(
        &mut self,
        last: u8,
        limit: Duration,
    ) -> Result<Vec<(u8, Vec<u8>)>, Vec<(u8, Vec<u8>)>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        loop {
            while self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() < 1 + len {
                    break;
                }
                let tag = self.buf[0];
                let body = self.buf[5..1 + len].to_vec();
                self.buf.drain(..1 + len);
                out.push((tag, body));
                if tag == last {
                    return Ok(out);
                }
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(out),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Messages as (tag, text) for failure messages.
fn show(msgs: &[(u8, Vec<u8>)]) -> String {
    let v: Vec<String> = msgs
        .iter()
        .map(|(t, b)| format!("{}:{:?}", *t as char, String::from_utf8_lossy(b)))
        .collect();
    format!("[{}]", v.join(", "))
}

/// SQLSTATE of the first ErrorResponse among `msgs`.
fn sqlstate(msgs: &[(u8, Vec<u8>)]) -> Option<String> {
    let (_, body) = msgs.iter().find(|(t, _)| *t == b'E')?;
    body.split(|b| *b == 0)
        .find_map(|f| f.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
}

fn count(db: &str, sql: &str) -> i64 {
    primary_sql(db, sql).parse().unwrap()
}

/// Defect targeted: several messages in one read are routed by the first; `SELECT 1` followed
/// by an INSERT in the same write goes to a replica and the INSERT fails with 25006.
#[test]
fn two_queries_in_one_write_with_a_write_second_reach_the_primary() {
    let _g = serial();
    block_on(async {
        let db = "drv_two_queries";
        fresh_db(db, "CREATE TABLE r (who text)");
        let p = split_proxy(db, 2);
        let mut c = Raw::connect(p.port, "app_trust", db).await;
        let mut both = query("SELECT 1");
        both.extend(query("INSERT INTO r VALUES ('two')"));
        c.send(&both).await;
        let first = c.until(b'Z').await;
        let second = c.until(b'Z').await;
        assert_eq!(sqlstate(&first), None, "SELECT 1 failed: {first:?}");
        assert_eq!(
            sqlstate(&second),
            None,
            "the INSERT sent in the same write as SELECT 1 failed: {:?}",
            String::from_utf8_lossy(&second.iter().find(|m| m.0 == b'E').unwrap().1)
        );
        assert_eq!(count(db, "SELECT count(*) FROM r WHERE who = 'two'"), 1);

        // The same as a pipeline of the extended protocol: read then write up to one Sync.
        let mut batch = pbe("SELECT 2");
        batch.extend(pbe("INSERT INTO r VALUES ('ext')"));
        batch.extend(msg(b'S', &[]));
        c.send(&batch).await;
        let got = c.until(b'Z').await;
        assert_eq!(sqlstate(&got), None, "extended read+write batch: {got:?}");
        assert_eq!(count(db, "SELECT count(*) FROM r WHERE who = 'ext'"), 1);
    });
}

// ---------------------------------------------------------------------------------------------
// f. COPY

/// Defect targeted: COPY FROM STDIN through the proxy hangs (the server sits in ClientRead).
#[test]
fn asyncpg_copy_records_to_table_on_fresh_connections_commits_every_row() {
    let _g = serial();
    let db = "drv_apg_copy";
    fresh_db(db, "CREATE TABLE copied (k int, j int, s text)");
    // 200 copies four at a time (10 to 100,000 rows each), then 200 more one at a time (10 to
    // 20,000 rows): the hang of issue 10 showed both ways. Sizes are log-uniform, seeded.
    for args in [["200", "4", "11", "100000"], ["200", "1", "12", "20000"]] {
        let how = format!("{} copies, {} at a time", args[0], args[1]);
        let limit = Duration::from_secs(240);
        // Straight to the primary, the same copies all finish well within their timeouts.
        let direct = run_scenario(
            Lang::Python,
            "copy_stress",
            &args,
            &Target::direct(db),
            limit,
        );
        direct.expect_completed();
        assert_eq!(
            direct.value("copies ok"),
            Some(args[0]),
            "direct, {how}: {}",
            direct.describe()
        );
        primary_sql(db, "TRUNCATE copied");
        // As many connections per backend as concurrent copiers: a checkout timeout can only
        // come from a connection that a finished (or abandoned) copy did not give back.
        let p = split_proxy(db, 4);
        let via = run_scenario(
            Lang::Python,
            "copy_stress",
            &args,
            &Target::proxy(&p, db),
            limit,
        );
        via.expect_completed();
        let reported: i64 = via
            .value("rows copied (reported ok)")
            .unwrap()
            .parse()
            .unwrap();
        let stored = count(db, "SELECT count(*) FROM copied");
        assert_eq!(
            stored, reported,
            "{how}: rows in the table differ from the copies reported successful"
        );
        assert_eq!(
            via.value("copies ok"),
            Some(args[0]),
            "{how}: {}",
            via.describe()
        );
        primary_sql(db, "TRUNCATE copied");
    }
}

#[test]
fn psycopg_copy_from_stdin_and_to_stdout_behave_as_on_the_primary() {
    let _g = serial();
    let db = "drv_pg3_copy";
    fresh_db(db, "");
    let p = split_proxy(db, 2);
    let reset = || {
        primary_sql(
            db,
            "DROP TABLE IF EXISTS t2; CREATE TABLE t2 (id int PRIMARY KEY, s text)",
        );
        cluster()
            .wait_replay_caught_up(Duration::from_secs(30))
            .unwrap();
    };
    same_as_direct(
        (Lang::Python, "copy_psycopg", &["20000"]),
        &Target::proxy(&p, db),
        Duration::from_secs(120),
        &reset,
        ("completing", &|_| true),
    );
}

/// COPY FROM STDIN in the extended protocol the way libpq-style drivers send it: Parse, Bind,
/// Execute, Sync, then CopyData..., CopyDone, Sync. The server ignores the first Sync (it
/// arrives in copy-in mode) and answers CommandComplete and one ReadyForQuery after the second.
/// Defect targeted: COPY FROM STDIN hangs through the proxy (the server sits in ClientRead).
#[test]
fn raw_extended_protocol_copy_in_completes_and_the_session_goes_on() {
    let _g = serial();
    block_on(async {
        let db = "drv_raw_copy";
        fresh_db(db, "CREATE TABLE c (id int, s text)");
        let p = split_proxy(db, 2);
        let mut c = Raw::connect(p.port, "app_trust", db).await;
        let mut start = pbe("COPY c FROM STDIN");
        start.extend(msg(b'S', &[]));
        c.send(&start).await;
        let got = c.until(b'G').await;
        let tags: Vec<char> = got.iter().map(|(t, _)| *t as char).collect();
        assert_eq!(tags, ['1', '2', 'G'], "{got:?}");
        let mut data = String::new();
        for i in 0..1000 {
            data.push_str(&format!("{i}\trow {i}\n"));
        }
        let mut rest = msg(b'd', data.as_bytes());
        rest.extend(msg(b'c', &[]));
        rest.extend(msg(b'S', &[]));
        c.send(&rest).await;
        let got = c.try_until(b'Z', RAW_WAIT).await.unwrap_or_else(|got| {
            panic!("no ReadyForQuery within {RAW_WAIT:?} after CopyDone + Sync; got {got:?}")
        });
        let tags: Vec<char> = got.iter().map(|(t, _)| *t as char).collect();
        assert_eq!(tags, ['C', 'Z'], "{got:?}");
        assert!(got[0].1.starts_with(b"COPY 1000"), "{got:?}");
        // Exactly one ReadyForQuery: the next statement's answer is its own.
        c.send(&query("SELECT count(*) FROM c")).await;
        let got = c.until(b'Z').await;
        let tags: Vec<char> = got.iter().map(|(t, _)| *t as char).collect();
        assert_eq!(tags, ['T', 'D', 'C', 'Z'], "{got:?}");
        assert_eq!(count(db, "SELECT count(*) FROM c"), 1000);

        // The same through a named statement prepared in a round trip of its own first
        // (Parse "s0", Describe, Sync), the way tokio-postgres' copy_in does it.
        let mut prep = msg(
            b'P',
            &[cstr("s0"), cstr("COPY c FROM STDIN"), vec![0, 0]].concat(),
        );
        prep.extend(msg(b'D', &[b"S".to_vec(), cstr("s0")].concat()));
        prep.extend(msg(b'S', &[]));
        c.send(&prep).await;
        let got = c.until(b'Z').await;
        assert_eq!(sqlstate(&got), None, "{got:?}");
        let mut start = msg(b'B', &[cstr(""), cstr("s0"), vec![0; 6]].concat());
        start.extend(msg(b'E', &[cstr(""), vec![0; 4]].concat()));
        start.extend(msg(b'S', &[]));
        c.send(&start).await;
        let got = c.until(b'G').await;
        let tags: Vec<char> = got.iter().map(|(t, _)| *t as char).collect();
        assert_eq!(tags, ['2', 'G'], "{got:?}");
        let mut rest = msg(b'd', data.as_bytes());
        rest.extend(msg(b'c', &[]));
        rest.extend(msg(b'S', &[]));
        c.send(&rest).await;
        let got = c.try_until(b'Z', RAW_WAIT).await.unwrap_or_else(|got| {
            panic!("named COPY: no ReadyForQuery after CopyDone + Sync; got {got:?}")
        });
        let tags: Vec<char> = got.iter().map(|(t, _)| *t as char).collect();
        assert_eq!(tags, ['C', 'Z'], "named COPY: {got:?}");
        assert_eq!(count(db, "SELECT count(*) FROM c"), 2000);
    });
}

/// tokio-postgres' copy_in: the statement goes out in the extended protocol with a Sync, then
/// CopyData..., CopyDone (libpq-like), bounded by a timeout.
#[test]
fn tokio_postgres_copy_in_commits_all_rows() {
    use futures_util::SinkExt;
    let _g = serial();
    block_on(async {
        let db = "drv_tpg_copy";
        fresh_db(db, "CREATE TABLE c (id int, s text)");
        let p = split_proxy(db, 2);
        let client = connect(&p.conn_str(db)).await;
        let work = async {
            for round in 0..5 {
                let sink = client.copy_in("COPY c FROM STDIN").await?;
                let mut sink = std::pin::pin!(sink);
                let mut data = String::new();
                for i in 0..20_000 {
                    data.push_str(&format!("{i}\tround {round}\n"));
                }
                sink.send(bytes::Bytes::from(data)).await?;
                let n = sink.finish().await?;
                assert_eq!(n, 20_000);
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        tokio::time::timeout(Duration::from_secs(60), work)
            .await
            .expect("tokio-postgres copy_in hung")
            .expect("copy_in failed");
        assert_eq!(count(db, "SELECT count(*) FROM c"), 100_000);
    });
}

#[test]
fn pgbench_initializes_scale_2_through_the_proxy() {
    let _g = serial();
    let db = "drv_pgbench";
    fresh_db(db, "");
    let p = split_proxy(db, 2);
    let mut cmd = std::process::Command::new("pgbench");
    cmd.args(["-i", "-s", "2", "-q"])
        .arg(p.url("app", "secret", db))
        .env_remove("PGPASSWORD")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let o = run_bounded(&mut cmd, "pgbench -i -s 2".into(), Duration::from_secs(90));
    assert!(o.exit == Some(0) && !o.timed_out, "{}", o.describe());
    assert_eq!(count(db, "SELECT count(*) FROM pgbench_accounts"), 200_000);
}

// ---------------------------------------------------------------------------------------------
// g. closing after pinning

/// Defect targeted: the proxy ignores Terminate while it holds a backend for a pinned client,
/// so asyncpg's close() (Terminate, then wait for the server to close) never returns.
#[test]
fn asyncpg_close_returns_promptly_after_pinning_statements() {
    let _g = serial();
    let db = "drv_apg_close";
    fresh_db(db, "CREATE SCHEMA leak_schema");
    let p = split_proxy(db, 2);
    let via = run_scenario(
        Lang::Python,
        "close_after_pin",
        &[],
        &Target::proxy(&p, db),
        Duration::from_secs(120),
    );
    let direct = run_scenario(
        Lang::Python,
        "close_after_pin",
        &[],
        &Target::direct(db),
        Duration::from_secs(120),
    );
    direct.expect_completed();
    via.expect_completed();
    assert_eq!(
        via.lines(),
        direct.lines(),
        "asyncpg close through the proxy differs from direct:\n{}",
        diff(&via, &direct)
    );
}

/// 9 asyncpg and psycopg clients doing random things (pinning, transactions, locks, LISTEN,
/// DISCARD ALL) for 20 s, reconnecting; every close must return within its timeout.
#[test]
fn mixed_random_clients_all_close_within_their_timeouts() {
    let _g = serial();
    let db = "drv_mixed_close";
    fresh_db(db, &format!("CREATE SCHEMA leak_schema; {T_ROWS}"));
    // More connections per backend than clients: pinning alone cannot exhaust the pool.
    let p = split_proxy(db, 10);
    let args = ["20", "9", "7"];
    let direct = run_scenario(
        Lang::Python,
        "mixed_close",
        &args,
        &Target::direct(db),
        Duration::from_secs(150),
    );
    direct.expect_completed();
    assert_eq!(
        direct.value("closes timed out"),
        Some("0"),
        "{}",
        direct.describe()
    );
    let via = run_scenario(
        Lang::Python,
        "mixed_close",
        &args,
        &Target::proxy(&p, db),
        Duration::from_secs(150),
    );
    via.expect_completed();
    assert_eq!(via.value("clients failed"), Some("0"), "{}", via.describe());
    assert_eq!(
        via.value("statements failed without an SQL error"),
        Some("0"),
        "{}",
        via.describe()
    );
    assert_eq!(
        via.value("closes timed out"),
        Some("0"),
        "{}",
        via.describe()
    );
    assert_eq!(via.value("closes ok"), Some("yes"), "{}", via.describe());
}

// ---------------------------------------------------------------------------------------------
// h. pgjdbc

/// Defects targeted: pgjdbc's named server-side statements (after prepareThreshold=5) inside a
/// transaction must follow its BEGIN; batches with writes must reach the primary as a whole;
/// read-only connections work.
#[test]
fn pgjdbc_prepared_statements_batches_and_read_only_connections() {
    let _g = serial();
    let db = "drv_jdbc";
    fresh_db(db, "");
    let p = split_proxy(db, 2);
    let reset = || {
        primary_sql(
            db,
            &format!(
                "{T_ROWS}; DROP TABLE IF EXISTS b; CREATE TABLE b (id int PRIMARY KEY, s text)"
            ),
        );
        cluster()
            .wait_replay_caught_up(Duration::from_secs(30))
            .unwrap();
    };
    let (via, direct) = run_both(
        Lang::Java,
        "jdbc",
        &[],
        &Target::proxy(&p, db),
        Duration::from_secs(120),
        &reset,
    );
    direct.expect_completed();
    via.expect_completed();
    assert_eq!(
        via.value("direct after rollback"),
        Some("0"),
        "{}",
        via.stdout
    );
    assert_eq!(
        via.lines(),
        direct.lines(),
        "pgjdbc through the proxy differs from direct:\n{}",
        diff(&via, &direct)
    );
}

/// A listening client that sends nothing meanwhile (psycopg's `notifies()`, asyncpg's
/// `add_listener`: a job queue waiting for work) gets each notification when it is sent
/// (plain, by `pg_notify`, at a commit; none from a rollback or after UNLISTEN), as it does
/// directly.
#[test]
fn idle_listeners_get_notifications_as_they_are_sent() {
    let _g = serial();
    let db = "drv_listen";
    fresh_db(db, "");
    let p = split_proxy(db, 2);
    same_as_direct(
        (Lang::Python, "listen", &[]),
        &Target::proxy(&p, db),
        Duration::from_secs(120),
        &|| {},
        ("notifications missing", &|lines| {
            lines.contains(&"psycopg idle listener got ['one', 'two', 'in a transaction']")
                && lines.contains(&"asyncpg listener got ['a', 'b']")
        }),
    );
}

/// pgjdbc reading a query in parts (autocommit off and a fetch size: Executes with a row
/// limit, PortalSuspended, other statements between the fetches), plainly and by a named
/// server statement, and with `autosave` (a SAVEPOINT before each statement of a
/// transaction, a failed statement rolled back to it by the driver): as directly, and the
/// rows committed are those the driver reported inserted.
#[test]
fn pgjdbc_fetches_in_parts_and_autosave_behave_as_on_the_primary() {
    let _g = serial();
    let db = "drv_jdbc_fetch";
    fresh_db(db, "");
    let p = split_proxy(db, 2);
    same_as_direct(
        (Lang::Java, "fetch", &[]),
        &Target::proxy(&p, db),
        Duration::from_secs(120),
        &|| {},
        ("rows missing", &|lines| {
            lines.contains(
                &"fetched in parts (prepared=true): rows 1000 sum 500500 counts between 5500",
            ) && lines.contains(&"autosave always: committed 2001,2002,2003")
        }),
    );
}

/// psycopg's named (server-side) cursors, in a transaction and WITH HOLD in autocommit,
/// read 7 rows at a time with other statements between, and scrolled: as directly.
#[test]
fn psycopg_named_cursors_behave_as_on_the_primary() {
    let _g = serial();
    let db = "drv_named_cursors";
    fresh_db(db, "");
    let p = split_proxy(db, 2);
    same_as_direct(
        (Lang::Python, "named_cursors", &[]),
        &Target::proxy(&p, db),
        Duration::from_secs(120),
        &|| {},
        ("rows missing", &|lines| {
            lines.contains(&"named cursor withhold=True: rows 500 sum 125250")
        }),
    );
}

/// Cancels as the drivers send them: psycopg's `cancel_safe()` (libpq's new cancel API,
/// which asks for encryption first) and `cancel()`, asyncpg's on a timeout (alone and in a
/// pool that resets connections on release), pgjdbc's `setQueryTimeout` and
/// `Statement.cancel()`. Each stops its own client's running statement (a read on a replica,
/// a statement in a transaction, a write) and the connection goes on; cancels at random
/// moments, some after the statement ended, never stop a neighbour's statement; everything
/// reads as it does directly against the primary, and exactly the committed rows are there.
#[test]
fn driver_cancels_stop_their_own_statement_and_never_a_neighbours() {
    let _g = serial();
    let db = "drv_cancel";
    fresh_db(db, "");
    let p = split_proxy(db, 4);
    let reset = || {
        primary_sql(
            db,
            "DROP TABLE IF EXISTS cancelled, neighbours; \
             CREATE TABLE cancelled (i int); CREATE TABLE neighbours (i int)",
        );
        cluster()
            .wait_replay_caught_up(Duration::from_secs(30))
            .unwrap();
    };
    let stopped: [(Lang, &str); 2] = [
        (
            Lang::Python,
            "psycopg random cancels: some stopped True, other errors {}",
        ),
        (Lang::Java, "read (cancel): 57014 within 5s=true"),
    ];
    for (lang, line) in stopped {
        same_as_direct(
            (lang, "cancel", &[]),
            &Target::proxy(&p, db),
            Duration::from_secs(240),
            &reset,
            ("statements not stopped", &|lines| lines.contains(&line)),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// i. release before Sync

/// Proxy with one worker, one primary connection, no replicas: a client that gets the
/// connection while another's batch is unfinished would run inside that batch's implicit
/// transaction.
fn single_connection_proxy(db: &str) -> Proxy {
    start_proxy(&drivers_config(db, 1, 1, false))
}

/// Defect targeted: the proxy gives the backend connection back after the answers to
/// Parse/Bind/Execute + Flush, before Sync, while the server is still inside the batch's
/// implicit transaction; the next client's statements then run in (and commit) it.
#[test]
fn a_batch_flushed_without_sync_keeps_its_connection_until_sync() {
    let _g = serial();
    block_on(async {
        let db = "drv_flush";
        fresh_db(db, "CREATE TABLE r (who text)");
        let p = single_connection_proxy(db);

        // 1. A's INSERT + Flush, then B's autocommit INSERT, then A's failing statement + Sync:
        //    A's implicit transaction rolls back, B's insert persists.
        let mut a = Raw::connect(p.port, "app_trust", db).await;
        let mut first = pbe("INSERT INTO r VALUES ('a1')");
        first.extend(msg(b'H', &[]));
        a.send(&first).await;
        let got = a.until(b'C').await;
        assert_eq!(sqlstate(&got), None, "{got:?}");
        let b_conn = p.conn_str(db);
        let b = tokio::spawn(async move {
            let started = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(20), async {
                let b = connect(&b_conn).await;
                b.batch_execute("INSERT INTO r VALUES ('b1')").await
            })
            .await;
            (r, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut rest = pbe("SELECT 1 / 0");
        rest.extend(msg(b'S', &[]));
        a.send(&rest).await;
        let got = a.until(b'Z').await;
        assert_eq!(sqlstate(&got).as_deref(), Some("22012"), "{got:?}");
        let (r, took) = b.await.unwrap();
        let r = r.unwrap_or_else(|_| panic!("B hung for 20 s"));
        assert!(r.is_ok(), "B failed after {took:?}: {r:?}");
        assert_eq!(
            count(db, "SELECT count(*) FROM r WHERE who = 'a1'"),
            0,
            "A's INSERT committed although its batch failed before Sync (B's statement ran in \
             A's implicit transaction)"
        );
        assert_eq!(count(db, "SELECT count(*) FROM r WHERE who = 'b1'"), 1);

        // 2. An error in the middle of A's batch before Sync: the server skips everything up to
        //    Sync on that connection, so B must not get it in the meantime.
        let mut batch = pbe("INSERT INTO r VALUES ('a2')");
        batch.extend(pbe("SELECT 1 / 0"));
        batch.extend(msg(b'H', &[]));
        a.send(&batch).await;
        let got = a.until(b'E').await;
        assert_eq!(sqlstate(&got).as_deref(), Some("22012"), "{got:?}");
        let b_conn = p.conn_str(db);
        let b = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                let b = connect(&b_conn).await;
                b.batch_execute("INSERT INTO r VALUES ('b2')").await
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.send(&msg(b'S', &[])).await;
        let got = a.until(b'Z').await;
        assert!(got.iter().all(|(t, _)| *t != b'E'), "{got:?}");
        let r = b.await.unwrap();
        let r = r.unwrap_or_else(|_| panic!("B hung for 20 s after A's mid-batch error"));
        assert!(r.is_ok(), "B failed: {r:?}");
        assert_eq!(count(db, "SELECT count(*) FROM r WHERE who = 'a2'"), 0);
        assert_eq!(count(db, "SELECT count(*) FROM r WHERE who = 'b2'"), 1);

        // A still works afterwards.
        a.send(&query("SELECT 1")).await;
        let got = a.until(b'Z').await;
        assert_eq!(sqlstate(&got), None, "{got:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// postgres.js: prepared statements on (its default), pipelining, Flush before Bind

/// Proxy with the replicas and read-your-writes, so that a client reads what it wrote as it
/// would directly; one worker, `size` connections per backend.
fn ryw_split_proxy(db: &str, size: usize) -> Proxy {
    let config = drivers_config(db, 1, size, true) + "consistency = \"read_your_writes\"\n";
    let p = start_proxy(&config);
    wait_replicas_ready(&p, db);
    p
}

/// postgres.js used as its documentation shows (sql.begin with savepoints, queries issued
/// together and so pipelined, cursors, forEach, COPY streams, simple strings, describe,
/// LISTEN/NOTIFY, a reserved connection, session settings and a temp table) must answer
/// through the proxy exactly as it does directly, and commit the same rows. Its query with
/// parameters starts as Parse + Describe + Flush, so the proxy holds a connection for a batch
/// that has no Sync yet, between the driver's writes.
#[test]
fn postgres_js_habits_through_the_proxy_answer_as_the_primary_does() {
    let _g = serial();
    let db = "drv_pgjs";
    fresh_db(db, "");
    let p = ryw_split_proxy(db, 4);
    let reset = || {
        primary_sql(
            db,
            &format!("DROP SCHEMA IF EXISTS pgjs_s CASCADE; {T_ROWS}"),
        );
        cluster()
            .wait_replay_caught_up(Duration::from_secs(30))
            .unwrap();
    };
    same_as_direct(
        (Lang::Node, "pgjs_habits", &[]),
        &Target::proxy(&p, db),
        Duration::from_secs(90),
        &reset,
        ("completing", &|_| true),
    );
}

const LEDGER: &str = "DROP TABLE IF EXISTS acct, ledger; \
     CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL); \
     INSERT INTO acct SELECT g, 1000 FROM generate_series(1, 10) g; \
     CREATE TABLE ledger (worker int, seq int, amount int, PRIMARY KEY (worker, seq))";

/// 24 workers share a postgres.js pool of 6 connections over a proxy pool of 3 primary
/// connections: random transfers (a quarter rolled back), inserts (some refused as
/// duplicates), savepoints rolled back inside committed transactions, reads of an invariant
/// sum (on the replicas) and writes pipelined with reads. Each worker keeps a ledger of what it
/// was told; the primary must end holding exactly that, the sum must never be seen broken,
/// and the output must equal a direct run's (what commits is drawn from a seed, not timing).
#[test]
fn postgres_js_pool_of_24_workers_commits_exactly_what_each_was_told() {
    let _g = serial();
    let db = "drv_pgjs_ledger";
    fresh_db(db, "");
    let p = ryw_split_proxy(db, 3);
    let reset = || {
        primary_sql(db, LEDGER);
        cluster()
            .wait_replay_caught_up(Duration::from_secs(30))
            .unwrap();
    };
    let args = ["24", "25", "6", "11"];
    let (via, direct) = run_both(
        Lang::Node,
        "pgjs_ledger",
        &args,
        &Target::proxy(&p, db),
        Duration::from_secs(90),
        &reset,
    );
    direct.expect_completed();
    via.expect_completed();
    for o in [&via, &direct] {
        assert_eq!(o.value("unexpected"), Some("[]"), "{}", o.describe());
        assert_eq!(o.value("sum violations"), Some("0"), "{}", o.describe());
        assert_eq!(o.value("balances wrong"), Some("[]"), "{}", o.describe());
        assert_eq!(
            o.value("rows extra"),
            Some("[] missing: []"),
            "{}",
            o.describe()
        );
    }
    assert_eq!(
        via.lines(),
        direct.lines(),
        "postgres.js through the proxy differs from direct:\n{}",
        diff(&via, &direct)
    );
}

// h. a table changes shape under prepared statements

/// Defect targeted: asyncpg keeps every query prepared. After ALTER TABLE, a statement
/// prepared before, bound on a server connection the proxy prepares it on anew (the one it was
/// prepared on ended), returned rows of the new columns to a client told the old ones; a
/// server refuses its own stale statement (0A000) and asyncpg prepares it again, or, inside a
/// transaction, reports it. Six connections over a proxy pool of two primary connections,
/// which are ended after each change; the output must equal a direct run's.
#[test]
fn asyncpg_statements_prepared_before_alter_table_answer_as_on_the_primary() {
    stale_statements_answer_as_on_the_primary(
        Lang::Python,
        "stale_after_alter",
        "6",
        "drv_apg_stale",
    );
}

/// Run `scenario` (`conns` connections) over a proxy pool of two primary connections and
/// directly, with a fresh `stale_t` each time; the outputs must be the same.
fn stale_statements_answer_as_on_the_primary(lang: Lang, scenario: &str, conns: &str, db: &str) {
    let _g = serial();
    fresh_db(db, "");
    let p = start_proxy(&drivers_config(db, 1, 2, false));
    let reset = || {
        primary_sql(
            db,
            "DROP TABLE IF EXISTS stale_t; CREATE TABLE stale_t (id int PRIMARY KEY, v int); \
             INSERT INTO stale_t VALUES (1, 10), (2, 20)",
        );
    };
    same_as_direct(
        (lang, scenario, &[conns]),
        &Target::proxy(&p, db),
        Duration::from_secs(120),
        &reset,
        ("completing", &|_| true),
    );
}

/// Django with persistent connections (`CONN_MAX_AGE=None`), six threads over a proxy pool of
/// two, in transaction mode: Django runs `SELECT set_config('TimeZone', 'UTC', false)` on each
/// new connection (the server reports 'Etc/UTC'), which pinned every Django connection to a
/// server connection: the third thread could not connect. Each thread's transactions and
/// reads, the time zone each sees, and a plain client's time zone between rounds must be as
/// directly against the primary.
#[test]
fn django_connections_share_a_small_pool_with_their_time_zone() {
    connect_time_settings_share_a_small_pool(
        Lang::Python,
        "django",
        "drv_django",
        "CREATE TABLE dj_t (id serial PRIMARY KEY, who int, at timestamptz)",
        "TimeZone UTC",
    );
}

/// The same with Sequelize (v6, on node-postgres): each of its connections sends `SET
/// client_min_messages TO warning;SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE;` as one
/// Query, which pinned it.
#[test]
fn sequelize_connections_share_a_small_pool_with_their_time_zone() {
    connect_time_settings_share_a_small_pool(
        Lang::Node,
        "sequelize",
        "drv_sequelize",
        "CREATE TABLE sq_item (id serial PRIMARY KEY, who int, at timestamptz)",
        "<+00>-00",
    );
}

/// SQLAlchemy 2 (Core and ORM) on psycopg 3 and on asyncpg, with reads split to the
/// replicas: QueuePools with pre-ping, an engine-wide REPEATABLE READ, and read-only
/// serializable (deferrable) connections through execution options, as applications
/// configure them. Every thread's and task's isolation levels, and the rows committed, must
/// be as directly on the primary. Before, the read-only serializable transactions went to a
/// replica, which refuses them (0A000).
#[test]
fn sqlalchemy_engines_with_isolation_levels_answer_as_on_the_primary() {
    let _g = serial();
    let db = "drv_sqlalchemy";
    fresh_db(db, "");
    let p = split_proxy(db, 2);
    let reset = || {
        primary_sql(
            db,
            "DROP TABLE IF EXISTS sa_item; CREATE TABLE sa_item (id serial PRIMARY KEY, who int)",
        );
        cluster()
            .wait_replay_caught_up(Duration::from_secs(30))
            .unwrap();
    };
    same_as_direct(
        (Lang::Python, "sqlalchemy", &["6", "4"]),
        &Target::proxy(&p, db),
        Duration::from_secs(150),
        &reset,
        (
            "SQLAlchemy's transactions were not as configured",
            &|lines: &[&str]| {
                lines
                    .iter()
                    .any(|l| l.contains("read-only serializable serializable on on"))
                    && lines.iter().any(|l| l.starts_with("committed: 0:4 "))
            },
        ),
    );
}

/// knex (v3, on node-postgres) with a `searchPath`: each connection it opens sends `set
/// search_path to "knex_app","public"`, which pinned it (a quoted name): six knex connections
/// over a proxy pool of two, and the plain client beside them could not get one. Each
/// worker's rows and search_path in and out of its transactions, and the plain client's
/// search_path between rounds, must be as directly on the primary.
#[test]
fn knex_connections_with_a_search_path_share_a_small_pool() {
    let _g = serial();
    let db = "drv_knex";
    fresh_db(db, "");
    let p = start_proxy(&drivers_config(db, 1, 2, false));
    let reset = || {
        primary_sql(
            db,
            "DROP SCHEMA IF EXISTS knex_app CASCADE; CREATE SCHEMA knex_app; \
             CREATE TABLE knex_app.kx_item (id serial PRIMARY KEY, who int)",
        );
    };
    same_as_direct(
        (Lang::Node, "knex", &["6", "4"]),
        &Target::proxy(&p, db),
        Duration::from_secs(150),
        &reset,
        (
            "knex set no search_path, or the plain client saw it",
            &|lines: &[&str]| {
                lines
                    .iter()
                    .any(|l| l.contains("round 3: in transaction knex_app, public"))
                    && lines
                        .iter()
                        .any(|l| l.contains("search_path \"$user\", public"))
            },
        ),
    );
}

/// A HikariCP pool with autoCommit off and a schema, as Hibernate applications configure one:
/// Hikari's setSchema on each new connection is pgjdbc's `SET SESSION search_path TO
/// 'hk_app'` behind a BEGIN of its own, in one batch, which lasts if the application's first
/// transaction commits. Six threads (every connection open at once) over a proxy pool of two;
/// each thread's schema in every transaction, the rows committed and a plain client's
/// search_path between rounds must be as directly on the primary. Before: the SET in the
/// transaction pinned every connection (the third got checkout_timeout).
#[test]
fn hikari_pools_with_a_schema_and_autocommit_off_share_a_small_pool() {
    let _g = serial();
    let db = "drv_hikari_schema";
    fresh_db(db, "");
    let p = start_proxy(&drivers_config(db, 1, 2, false));
    let reset = || {
        primary_sql(
            db,
            "DROP SCHEMA IF EXISTS hk_app CASCADE; CREATE SCHEMA hk_app; \
             CREATE TABLE hk_app.hk_item (id serial PRIMARY KEY, who int, round int)",
        );
    };
    same_as_direct(
        (Lang::Java, "hikari_schema", &["6", "4"]),
        &Target::proxy(&p, db),
        Duration::from_secs(150),
        &reset,
        ("the scenario did not run as meant", &|lines: &[&str]| {
            lines
                .iter()
                .any(|l| l.starts_with("thread 5: round 3.1: 5 in hk_app / hk_app"))
                && lines.iter().any(|l| l.ends_with("rolled back"))
                && lines
                    .iter()
                    .any(|l| l == &"plain connection, round 3: \"$user\", public")
        }),
    );
}

/// Active Record (Rails 6.1's ORM on ruby-pg) as a Rails application uses it: a pool of six
/// connections, each set up by the PostgreSQL adapter (client encoding, client_min_messages,
/// `search_path TO ar_app,public`, standard_conforming_strings, the time zone and configured
/// `variables`, each a plain statement), used by six threads at once over a proxy pool of two:
/// models created and found through Active Record's named prepared statements, transactions
/// committed and rolled back, a unique violation. What each thread sees and a plain client's
/// settings between rounds must be as directly on the primary.
#[test]
fn active_record_pools_share_a_small_pool() {
    let _g = serial();
    let db = "drv_rails";
    fresh_db(db, "");
    let p = start_proxy(&drivers_config(db, 1, 2, false));
    let reset = || {
        primary_sql(
            db,
            "DROP SCHEMA IF EXISTS ar_app CASCADE; CREATE SCHEMA ar_app; \
             CREATE TABLE ar_app.ar_item (id serial PRIMARY KEY, who int, note text)",
        );
    };
    same_as_direct(
        (Lang::Ruby, "rails", &["6", "4"]),
        &Target::proxy(&p, db),
        Duration::from_secs(150),
        &reset,
        ("the scenario did not run as meant", &|lines: &[&str]| {
            lines.iter().any(|l| {
                l == &"thread 5: round 3: session ar_app, public | UTC | 15s | 4s | warning"
            }) && lines
                .iter()
                .any(|l| l.contains("duplicate PG::UniqueViolation"))
                && !lines.iter().any(|l| l.contains("error"))
        }),
    );
}

/// Perl's DBI on DBD::Pg with AutoCommit off, as Perl applications (Mojolicious, Catalyst,
/// DBIx::Class) use it: six handles, each setting its time zone and search_path in its first
/// transaction (DBD::Pg begins one before the first statement after each commit or rollback),
/// statements prepared on the server once they run again and deallocated when their handle
/// goes, inserts committed or rolled back, used in turn from one process over a proxy pool of
/// two. What each handle sees and a plain connection's settings must be as directly.
#[test]
fn perl_dbi_handles_with_autocommit_off_share_a_small_pool() {
    let _g = serial();
    let db = "drv_dbi";
    fresh_db(db, "");
    let p = start_proxy(&drivers_config(db, 1, 2, false));
    let reset = || {
        primary_sql(
            db,
            "DROP SCHEMA IF EXISTS dbi_app CASCADE; CREATE SCHEMA dbi_app; \
             CREATE TABLE dbi_app.dbi_item (id serial PRIMARY KEY, who int, note text)",
        );
    };
    same_as_direct(
        (Lang::Perl, "dbi", &["6", "4"]),
        &Target::proxy(&p, db),
        Duration::from_secs(150),
        &reset,
        ("the scenario did not run as meant", &|lines: &[&str]| {
            lines
                .iter()
                .any(|l| l == &"r3 c5 Asia/Tokyo dbi_app, public 5")
                && lines.iter().any(|l| l.ends_with("rolled back"))
                && lines
                    .iter()
                    .any(|l| l.starts_with("r3 plain \"$user\", public"))
        }),
    );
}

/// PHP's pdo_pgsql as Laravel uses it (Laravel's PDO options, native prepares): six
/// connections, each set up as Laravel's PostgresConnector does (`set names`, `set time zone`
/// and `set search_path to "lv_app"`, each a named statement `pdo_stmt_N` prepared and then
/// executed in a batch of its own, freed with a SQL `DEALLOCATE`), used in turn from one
/// process as php-fpm workers use theirs, over a proxy pool of two: reads with parameters,
/// transactions with `insert ... returning` and `lastInsertId`, rollbacks, a failed
/// transaction; a plain connection after each round sees the defaults. Everything each sees
/// must be as directly on the primary. Before: the named SETs pinned every connection (the
/// third got checkout_timeout).
#[test]
fn php_pdo_laravel_connections_share_a_small_pool() {
    let _g = serial();
    let db = "drv_laravel";
    fresh_db(db, "");
    let p = start_proxy(&drivers_config(db, 1, 2, false));
    let reset = || {
        primary_sql(
            db,
            "DROP SCHEMA IF EXISTS lv_app CASCADE; CREATE SCHEMA lv_app; \
             CREATE TABLE lv_app.lv_item (id serial PRIMARY KEY, who int, note text, \
             created_at timestamptz)",
        );
    };
    same_as_direct(
        (Lang::Php, "laravel", &["6", "4"]),
        &Target::proxy(&p, db),
        Duration::from_secs(150),
        &reset,
        ("the scenario did not run as meant", &|lines: &[&str]| {
            lines
                .iter()
                .any(|l| l.starts_with("r3 w1 session [\"Asia\\/Tokyo\",\"lv_app\""))
                && lines
                    .iter()
                    .any(|l| l.contains("duplicate [\"23505\",true]"))
                && lines.iter().any(|l| l.ends_with("\"rolled back\""))
        }),
    );
}

/// Spring's transactions over HikariCP (Debian's Spring 4.3 and HikariCP 2.7 on pgjdbc), with
/// reads split to the replicas: a TransactionTemplate with an isolation level makes pgjdbc
/// send `SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL ...` before the
/// transaction and again after it, and a Hikari pool with `transactionIsolation` sends it once
/// per connection. Six threads (every connection of both pools open at once) over a proxy pool
/// of one connection per server; each thread's isolation levels in and out of its
/// transactions (read-only ones too), the rows committed, and a plain client's default between
/// rounds must be as directly on the primary. Before: each such statement pinned the client
/// (the plain client could not log in); carried, the serializable clients' reads and read-only
/// transactions went to a replica, which refuses serializable transactions.
#[test]
fn spring_transactions_with_isolation_levels_share_a_small_pool() {
    let _g = serial();
    let db = "drv_spring";
    fresh_db(db, "");
    let p = split_proxy(db, 1);
    let reset = || {
        primary_sql(
            db,
            "DROP TABLE IF EXISTS sp_t; CREATE TABLE sp_t (id serial PRIMARY KEY, who int)",
        );
        cluster()
            .wait_replay_caught_up(Duration::from_secs(30))
            .unwrap();
    };
    same_as_direct(
        (Lang::Java, "spring", &["6", "4"]),
        &Target::proxy(&p, db),
        Duration::from_secs(150),
        &reset,
        (
            "no serializable transaction directly",
            &|lines: &[&str]| {
                lines
                    .iter()
                    .any(|l| l.contains("in transaction 3 serializable / serializable"))
                    && lines
                        .iter()
                        .any(|l| l.contains("committed: 0:4 1:4 2:4 3:4 4:4 5:4"))
            },
        ),
    );
}

/// psycopg 3 connections as the library makes them (not autocommit), each setting its time
/// zone and statement_timeout when it connects, inside the transaction psycopg opens, then
/// committing (one thread rolls back instead): a SET in a transaction block pinned the client,
/// so the third connection over a proxy pool of two could not get one.
#[test]
fn psycopg_default_connections_set_up_in_a_transaction_share_a_small_pool() {
    connect_time_settings_share_a_small_pool(
        Lang::Python,
        "psycopg_defaults",
        "drv_psycopg_defaults",
        "CREATE TABLE pd_t (id serial PRIMARY KEY, who int, at timestamptz)",
        "'America/Lima', '6s'",
    );
}

/// Run `scenario` (six clients of a framework that sets the time zone when it connects, four
/// rounds) over a proxy pool of two and directly, on a fresh `table`; the outputs must be the
/// same, and show the framework's zone (`zone`) beside the server's own for a plain client.
fn connect_time_settings_share_a_small_pool(
    lang: Lang,
    scenario: &str,
    db: &str,
    table: &str,
    zone: &str,
) {
    let _g = serial();
    // The name Debian's initdb writes, whatever this machine's zone.
    fresh_db(
        db,
        &format!("ALTER DATABASE {db} SET timezone TO 'Etc/UTC'"),
    );
    let p = start_proxy(&drivers_config(db, 1, 2, false));
    let reset = || {
        let name = table.split_whitespace().nth(2).expect("CREATE TABLE name");
        primary_sql(db, &format!("DROP TABLE IF EXISTS {name}; {table}"));
    };
    same_as_direct(
        (lang, scenario, &["6", "4"]),
        &Target::proxy(&p, db),
        Duration::from_secs(150),
        &reset,
        (
            "no time zone was set, or the plain client saw no other",
            &|lines: &[&str]| {
                lines.iter().any(|l| l.contains(zone))
                    && lines.iter().any(|l| l.contains("TimeZone Etc/UTC"))
            },
        ),
    );
}

/// The same with pgjdbc, whose statements become named server statements after five runs:
/// four connections over a proxy pool of two, the proxy's connections ended after each change;
/// the output must equal a direct run's. pgjdbc runs `SET extra_float_digits = 3` when it
/// connects, which pinned each connection to a server connection: the third could not even
/// log in (checkout_timeout); the proxy now carries such a setting instead.
#[test]
fn pgjdbc_statements_prepared_before_alter_table_answer_as_on_the_primary() {
    stale_statements_answer_as_on_the_primary(Lang::Java, "stale", "4", "drv_jdbc_stale");
}
