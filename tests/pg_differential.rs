//! The proxy answers exactly as the server does: random sessions of raw protocol messages
//! (pipelines of Parse/Bind/Describe/Execute/Close/Flush with Syncs at random places, named
//! and unnamed statements and portals, portals read a row at a time, simple queries of one or
//! several statements, transactions, savepoints, cursors, temporary tables, SQL PREPARE,
//! set_config, DISCARD, errors of every kind mid-pipeline) are sent to the primary directly
//! and through the proxy, round by round, and every answer must be the same: the same
//! messages, rows, command tags, error codes and transaction states. At the end both databases
//! must hold the same rows.
//!
//! The proxy runs in transaction mode with one worker, a pool of two per backend and the
//! replicas in the cluster (read-your-writes), so sessions share backend connections and
//! reads go to replicas: anything one session leaves on a connection (a statement name, a
//! setting, a temporary table, an open transaction) shows up as a difference in the next.
//!
//! Seeded (`SWITCHYARD_PROP_SEED`, printed); bounded in sessions, rounds and time.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::raw::{msg, split, Msg, Raw};
use support::*;

const SESSIONS: usize = 150;
const ROUNDS: usize = 14;

/// A statement of the random mix, with its number of parameters.
struct Stmt {
    sql: &'static str,
    params: usize,
}

const fn s(sql: &'static str, params: usize) -> Stmt {
    Stmt { sql, params }
}

const STATEMENTS: &[Stmt] = &[
    s("SELECT v FROM t WHERE k = $1", 1),
    s("SELECT k, v FROM t ORDER BY k", 0),
    s("INSERT INTO t VALUES ($1, $2)", 2),
    s("UPDATE t SET v = v + 1 WHERE k = $1", 1),
    s("DELETE FROM t WHERE k = $1", 1),
    s("BEGIN", 0),
    s("COMMIT", 0),
    s("ROLLBACK", 0),
    s("SAVEPOINT sp", 0),
    s("ROLLBACK TO SAVEPOINT sp", 0),
    s("RELEASE SAVEPOINT sp", 0),
    // The divisor in a sub-select: a server evaluates it when the statement runs, whatever
    // the plan. With `10 / $1::int` a custom plan (the first five runs of a statement) folds
    // the division when it is bound, so the error comes at the Bind; a generic plan, which a
    // server statement the proxy shares between clients soon has, gives it at the Execute
    // (seed 13217094480785133079; a documented difference).
    s("SELECT 10 / (SELECT $1::int)", 1),
    s("SELECT set_config('application_name', $1, false)", 1),
    s("SELECT set_config('application_name', $1, true)", 1),
    s("SELECT current_setting('application_name')", 0),
    s("START TRANSACTION ISOLATION LEVEL REPEATABLE READ", 0),
    s(
        "WITH d AS (DELETE FROM t WHERE k = $1 RETURNING k) SELECT count(*) FROM d",
        1,
    ),
    s("SELECT nextval('sq')", 0),
    s("LOCK TABLE t IN SHARE MODE", 0),
    s("DECLARE c CURSOR FOR SELECT k FROM t ORDER BY k", 0),
    s(
        "DECLARE c CURSOR WITH HOLD FOR SELECT k FROM t ORDER BY k",
        0,
    ),
    s("FETCH 1 FROM c", 0),
    s("CLOSE c", 0),
    s("CREATE TEMP TABLE tt (a int)", 0),
    s("SELECT count(*) FROM tt", 0),
    s("PREPARE q AS SELECT v FROM t WHERE k = $1", 0),
    s("EXECUTE q(3)", 0),
    s("DEALLOCATE q", 0),
    s("SET statement_timeout = '5s'", 0),
    s("SHOW statement_timeout", 0),
    // Settings the proxy carries from connection to connection in transaction mode (as a
    // simple Query; Sequelize's time zone), and what shows them.
    s("SET TIME ZONE INTERVAL '+05:30' HOUR TO MINUTE", 0),
    s("SET work_mem = '3MB'", 0),
    s(
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        0,
    ),
    s(
        "SELECT current_setting('TimeZone'), current_setting('work_mem'), \
         current_setting('default_transaction_isolation')",
        0,
    ),
    s("RESET ALL", 0),
    s("SELECT pg_advisory_lock(7)", 0),
    s("SELECT pg_advisory_unlock(7)", 0),
    s("SELECT 1 FROM t FOR UPDATE", 0),
    s("LISTEN ch", 0),
    s("UNLISTEN *", 0),
    s("CLOSE ALL", 0),
    s("SELECT pg_advisory_unlock_all()", 0),
    s("DISCARD TEMP", 0),
    s("SET LOCAL statement_timeout = '1s'", 0),
    s("RESET statement_timeout", 0),
    s("SELECT pg_listening_channels()", 0),
    s("COPY (SELECT k, v FROM t ORDER BY k) TO STDOUT", 0),
];

/// COPY t FROM STDIN's data, sent right after the statement (as a driver streaming a COPY
/// does): one row (a key that may be taken), then CopyDone, or now and then CopyFail.
fn copy_in(rng: &mut StdRng, r: &mut Round) {
    let k = rng.gen_range(1..10);
    let v = rng.gen_range(0..100);
    r.bytes
        .extend(msg::copy_data(format!("{k}\t{v}\n").as_bytes()));
    if rng.gen_bool(0.2) {
        let mut b = vec![b'f'];
        b.extend_from_slice(&(4u32 + 5).to_be_bytes());
        b.extend_from_slice(b"stop\0");
        r.bytes.extend(b);
        r.said.push(format!("copy {k} {v}, CopyFail"));
    } else {
        r.bytes.extend(msg::copy_done());
        r.said.push(format!("copy {k} {v}, CopyDone"));
    }
}

/// A parameter for `stmt`: keys 1-6, values 0-99, an occasional zero divisor, names.
fn param(rng: &mut StdRng, stmt: &Stmt, i: usize) -> String {
    if stmt.sql.contains("set_config") {
        return format!("n{}", rng.gen_range(0..4));
    }
    if stmt.sql.contains("10 / ") {
        return rng.gen_range(0..3).to_string();
    }
    if i == 0 {
        rng.gen_range(1..7).to_string()
    } else {
        rng.gen_range(0..100).to_string()
    }
}

/// The statement's text with its parameters written in (for simple queries).
fn literal(stmt: &Stmt, params: &[String]) -> String {
    let mut sql = stmt.sql.to_string();
    for (i, p) in params.iter().enumerate().rev() {
        let lit = if stmt.sql.contains("set_config") {
            format!("'{p}'")
        } else {
            p.clone()
        };
        sql = sql.replace(&format!("${}", i + 1), &lit);
    }
    sql
}

/// One round: the bytes sent in one write, how many ReadyForQuery answer them, and a
/// description for failures.
struct Round {
    bytes: Vec<u8>,
    ready: usize,
    said: Vec<String>,
}

/// The generator's idea of the named statements (it does not know which Parse failed; a
/// wrong guess is an error on both sides, which is fine).
struct Model {
    named: [Option<usize>; 2],
    portal_open: bool,
    /// Sessions running side by side use a table, sequence and lock of their own: this
    /// suffix is appended to their names (empty for the one-at-a-time sessions).
    lane: String,
}

impl Model {
    /// `sql` with the table, sequence and advisory lock of this lane.
    fn sql(&self, sql: &str) -> String {
        if self.lane.is_empty() {
            return sql.to_string();
        }
        let l = &self.lane;
        format!(" {sql} ")
            .replace(" t ", &format!(" t{l} "))
            .replace("'sq'", &format!("'sq{l}'"))
            .replace("(7)", &format!("(7{l})"))
            .trim()
            .to_string()
    }
}

fn execute_max(portal: &str, rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(portal.as_bytes());
    b.push(0);
    b.extend_from_slice(&rows.to_be_bytes());
    let mut v = vec![b'E'];
    v.extend_from_slice(&((b.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(&b);
    v
}

fn close_portal(portal: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    b.extend_from_slice(portal.as_bytes());
    b.push(0);
    let mut v = vec![b'C'];
    v.extend_from_slice(&((b.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(&b);
    v
}

fn pick(rng: &mut StdRng) -> usize {
    // Data statements more often than the rest.
    if rng.gen_bool(0.4) {
        rng.gen_range(0..5)
    } else {
        rng.gen_range(0..STATEMENTS.len())
    }
}

fn params_for(rng: &mut StdRng, stmt: &Stmt) -> Vec<String> {
    (0..stmt.params).map(|i| param(rng, stmt, i)).collect()
}

/// One extended-protocol step (never a Sync). `first`: in the round's first segment. Named
/// Parses come only there: the proxy answers a Parse of a name the client has already when
/// the Parse arrives, while the server decides when it runs, after the earlier segments of
/// the same write (whose errors may have skipped the Parse or Close that made the name).
/// Drivers do not reuse a name so; that difference is left alone.
fn extended_step(rng: &mut StdRng, m: &mut Model, r: &mut Round, first: bool) {
    let names = ["s1", "s2"];
    let pick_kind = rng.gen_range(0..10);
    let kind = if pick_kind == 4 && !first {
        0
    } else {
        pick_kind
    };
    match kind {
        // The driver's usual unnamed Parse/Bind/Describe/Execute. Not of a START TRANSACTION
        // with an isolation level: after a Parse in the same batch, which takes a snapshot,
        // the server refuses it, and the proxy answers a Parse of a statement it knows
        // without one.
        0..=3 => {
            let mut i = pick(rng);
            while STATEMENTS[i].sql.contains("ISOLATION") {
                i = pick(rng);
            }
            let st = &STATEMENTS[i];
            let ps = params_for(rng, st);
            let refs: Vec<&str> = ps.iter().map(String::as_str).collect();
            r.bytes.extend(msg::parse("", &m.sql(st.sql)));
            r.bytes.extend(msg::bind("", "", &refs));
            if rng.gen_bool(0.5) {
                r.bytes.extend(msg::describe_portal(""));
            }
            r.bytes.extend(msg::execute(""));
            r.said.push(format!("PBE {} {ps:?}", st.sql));
        }
        // Parse a named statement. Not of DISCARD ALL or DEALLOCATE ALL: the proxy drops the
        // client's statement names when such a named statement's CommandComplete comes, not
        // when it is sent (names parsed after it in the same batch go too). Drivers do not
        // prepare those.
        4 => {
            let n = rng.gen_range(0..2);
            // Side by side the pool may be full: the proxy then answers a Parse it has not
            // seen accepted without a server, and reports its error at the first Bind
            // (documented); of the mix only a statement over a temporary table can fail so.
            // Not a START TRANSACTION with an isolation level either: a Parse the proxy puts
            // in front of a Bind or Describe earlier in the batch takes a snapshot, and the
            // server then refuses it (documented; seed 8535807193950421274, side by side).
            // Not `EXECUTE q` either: whether it returns rows depends on the session's own
            // `q`, and in a failed transaction the proxy describes it by what a server said
            // of it in another session (documented; seed 3342894661941285853).
            let mut i = pick(rng);
            while STATEMENTS[i].sql.ends_with(" ALL")
                || STATEMENTS[i].sql.contains("ISOLATION")
                || STATEMENTS[i].sql.starts_with("EXECUTE")
                || (!m.lane.is_empty() && STATEMENTS[i].sql.contains("FROM tt"))
            {
                i = pick(rng);
            }
            r.bytes
                .extend(msg::parse(names[n], &m.sql(STATEMENTS[i].sql)));
            m.named[n] = Some(i);
            r.said.push(format!("P {} {}", names[n], STATEMENTS[i].sql));
        }
        // Bind and execute a named statement, unnamed portal.
        5 | 6 => {
            let n = rng.gen_range(0..2);
            let st = &STATEMENTS[m.named[n].unwrap_or(0)];
            let ps = params_for(rng, st);
            let refs: Vec<&str> = ps.iter().map(String::as_str).collect();
            r.bytes.extend(msg::bind("", names[n], &refs));
            r.bytes.extend(msg::execute(""));
            r.said.push(format!("BE {} {ps:?}", names[n]));
        }
        // A named portal read one row at a time. Not a data-modifying statement: a Parse
        // the proxy injects later in the batch makes its effects visible to the batch's
        // later statements while its portal is suspended (a documented difference).
        7 => {
            let n = rng.gen_range(0..2);
            let st = &STATEMENTS[m.named[n].unwrap_or(1)];
            let ps = params_for(rng, st);
            let refs: Vec<&str> = ps.iter().map(String::as_str).collect();
            r.bytes.extend(msg::bind("p1", names[n], &refs));
            if st.sql.contains("DELETE") {
                r.bytes.extend(msg::execute("p1"));
                r.said.push(format!("B p1 {} {ps:?}; E p1", names[n]));
                return;
            }
            r.bytes.extend(execute_max("p1", 1));
            m.portal_open = true;
            r.said.push(format!("B p1 {} {ps:?}; E p1 max 1", names[n]));
        }
        8 => {
            if m.portal_open && rng.gen_bool(0.6) {
                r.bytes.extend(execute_max("p1", 1));
                r.said.push("E p1 max 1".into());
            } else if rng.gen_bool(0.5) {
                r.bytes.extend(close_portal("p1"));
                m.portal_open = false;
                r.said.push("C portal p1".into());
            } else {
                // Not a FETCH: a server describes it by the cursor as it was when the
                // statement was parsed, and the proxy may parse it again later on the held
                // connection (a documented difference).
                let n = rng.gen_range(0..2);
                if m.named[n].is_some_and(|i| STATEMENTS[i].sql.starts_with("FETCH")) {
                    return;
                }
                r.bytes.extend(msg::describe_statement(names[n]));
                r.said.push(format!("D {}", names[n]));
            }
        }
        _ => {
            if rng.gen_bool(0.15) {
                r.bytes.extend(msg::parse("", &m.sql("COPY t FROM STDIN")));
                r.bytes.extend(msg::bind("", "", &[]));
                r.bytes.extend(msg::execute(""));
                r.said.push("PBE COPY t FROM STDIN".into());
                copy_in(rng, r);
            } else if rng.gen_bool(0.3) {
                r.bytes.extend(msg::flush());
                r.said.push("H".into());
            } else {
                let n = rng.gen_range(0..2);
                r.bytes.extend(msg::close_statement(names[n]));
                m.named[n] = None;
                r.said.push(format!("C {}", names[n]));
            }
        }
    }
}

/// A simple Query of one to three statements, or a SQL DEALLOCATE of a protocol-level
/// statement on its own (as psycopg sends it with an older libpq).
fn simple_step(rng: &mut StdRng, m: &Model, r: &mut Round) {
    if rng.gen_bool(0.1) {
        r.bytes.extend(msg::query(&m.sql("COPY t FROM STDIN")));
        r.ready += 1;
        r.said.push("Q COPY t FROM STDIN".into());
        copy_in(rng, r);
        return;
    }
    if rng.gen_bool(0.15) {
        let sql = match rng.gen_range(0..4) {
            0 => "DISCARD ALL".to_string(),
            1 => "DEALLOCATE ALL".to_string(),
            n => format!("DEALLOCATE s{}", n - 1),
        };
        r.bytes.extend(msg::query(&sql));
        r.ready += 1;
        r.said.push(format!("Q {sql}"));
        return;
    }
    let n = rng.gen_range(1..4);
    let parts: Vec<String> = (0..n)
        .map(|_| {
            let st = &STATEMENTS[pick(rng)];
            m.sql(&literal(st, &params_for(rng, st)))
        })
        .collect();
    let sql = parts.join("; ");
    r.bytes.extend(msg::query(&sql));
    r.ready += 1;
    r.said.push(format!("Q {sql}"));
}

fn round(rng: &mut StdRng, m: &mut Model) -> Round {
    let mut r = Round {
        bytes: Vec::new(),
        ready: 0,
        said: Vec::new(),
    };
    // Segments, each a simple Query or extended steps ending in a Sync (a Query only ever
    // follows a Sync: after an error the server skips everything up to the next Sync).
    for segment in 0..rng.gen_range(1..4) {
        if rng.gen_bool(0.3) {
            simple_step(rng, m, &mut r);
        } else {
            for _ in 0..rng.gen_range(1..5) {
                extended_step(rng, m, &mut r, segment == 0);
            }
            r.bytes.extend(msg::sync());
            r.ready += 1;
            r.said.push("S".into());
            // A portal lives until the transaction ends; the generator forgets it at a Sync.
            m.portal_open = false;
        }
    }
    r
}

/// What a client can tell of an answer: each message's kind and what matters in it. Table
/// OIDs in row descriptions differ between the two databases and ParameterStatus messages
/// are the proxy's to send (it reports the client's settings its own way), so they are left
/// out.
fn normal(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag != b'S')
        .map(|m| match m.tag {
            // A read-only transaction may run on a replica, where the server words the same
            // refusal (same SQLSTATE) as "during recovery".
            b'E' | b'N' => format!(
                "{} {} {}",
                m.tag as char,
                m.field(b'C').unwrap_or_default(),
                m.field(b'M')
                    .unwrap_or_default()
                    .replace("during recovery", "in a read-only transaction")
            ),
            // A client that sets no application_name sees the proxy's backend login value
            // where the server's default is empty (documented; an operator tells the
            // proxy's connections apart by it).
            b'D' => format!(
                "D {:?}",
                m.row()
                    .into_iter()
                    .map(|v| v.filter(|v| v != "switchyard"))
                    .map(|v| v.or(Some(String::new())))
                    .collect::<Vec<_>>()
            ),
            b'C' => format!("C {}", String::from_utf8_lossy(&m.body)),
            b'Z' => format!("Z {}", m.body[0] as char),
            b'T' => {
                let b = &m.body;
                let n = u16::from_be_bytes([b[0], b[1]]) as usize;
                let mut i = 2;
                let mut cols = Vec::new();
                for _ in 0..n {
                    let end = i + b[i..].iter().position(|&c| c == 0).unwrap();
                    let name = String::from_utf8_lossy(&b[i..end]).into_owned();
                    let ty = u32::from_be_bytes([b[end + 7], b[end + 8], b[end + 9], b[end + 10]]);
                    cols.push(format!("{name}:{ty}"));
                    i = end + 19;
                }
                format!("T {}", cols.join(","))
            }
            t => format!("{} {:?}", t as char, m.body),
        })
        .collect()
}

fn setup(db: &str) {
    create_db_on(cluster(), db);
    cluster()
        .psql_db(
            0,
            db,
            "CREATE TABLE t (k int PRIMARY KEY, v int); \
             INSERT INTO t SELECT g, g * 10 FROM generate_series(1, 4) g; \
             CREATE SEQUENCE sq",
        )
        .unwrap();
}

fn config(db: &str) -> String {
    let c = cluster();
    let replicas: Vec<String> = c
        .replica_ports()
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
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
size = 2
checkout_timeout = "10s"

[[user]]
name = "app_trust"
auth = "trust"

[[cluster]]
name = "{db}"
database = "{db}"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]
user = "postgres"
consistency = "read_your_writes"
max_lag = "30s"
"#,
        primary = c.primary_port(),
        replicas = replicas.join(", "),
    )
}

/// Two databases set up alike, one reached directly and one through a fresh proxy (returned).
fn databases_and_proxy(direct_db: &str, proxied_db: &str) -> Proxy {
    setup(direct_db);
    setup(proxied_db);
    cluster()
        .wait_replay_caught_up(std::time::Duration::from_secs(30))
        .unwrap();
    start_proxy(&config(proxied_db))
}

/// [`databases_and_proxy`] for `<name>_direct` and `<name>_proxied`, and a session on each.
async fn pair(name: &str) -> (Proxy, Raw, Raw) {
    let (direct_db, proxied_db) = (format!("{name}_direct"), format!("{name}_proxied"));
    let p = databases_and_proxy(&direct_db, &proxied_db);
    let direct = Raw::connect(cluster().primary_port(), "postgres", &direct_db, &[]).await;
    let proxied = Raw::connect(p.port, "app_trust", &proxied_db, &[]).await;
    (p, direct, proxied)
}

async fn table(raw: &mut Raw, lane: &str) -> Vec<Vec<Option<String>>> {
    let (rows, err) = raw
        .simple(&format!(
            "SELECT k, v FROM t{lane} ORDER BY k; SELECT last_value FROM sq{lane}"
        ))
        .await;
    assert!(err.is_none(), "{err:?}");
    rows
}

/// Send each round to both and compare the answers; panics with the first difference.
async fn same_answers(direct: &mut Raw, proxied: &mut Raw, rounds: &[(Vec<u8>, usize, &str)]) {
    for (i, (bytes, ready, said)) in rounds.iter().enumerate() {
        direct.send(bytes).await;
        let want = normal(&direct.until_ready(*ready).await);
        proxied.send(bytes).await;
        let got = normal(&proxied.until_ready(*ready).await);
        assert_eq!(got, want, "round {i} ({said}): proxied, then direct");
    }
}

/// The differences the random sessions found, each as a fixed session (each failed before
/// its fix): a Parse of a name the client has already is refused (42P05) and the rest of the
/// batch skipped; errors name the client's statements, not the proxy's; a Parse or Close the
/// server skipped after an error in the batch is taken back; DEALLOCATE ALL and DISCARD ALL
/// end the client's statements (the names may be prepared again); SQL DEALLOCATE of a
/// protocol-level statement works; a locally answered ReadyForQuery after a pipelined BEGIN
/// says the transaction is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_names_behave_as_on_the_server() {
    let (_p, mut direct, mut proxied) = pair("names").await;
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let sel = "SELECT v FROM t WHERE k = $1";
    let rounds = vec![
        (cat(&[msg::parse("s1", sel), msg::sync()]), 1, "P s1"),
        // Again: refused, and the insert before it in the batch undone.
        (
            cat(&[
                msg::extended("INSERT INTO t VALUES (9, 90)", &[]),
                msg::parse("s1", "SELECT 1"),
                msg::bind("", "s1", &["1"]),
                msg::execute(""),
                msg::sync(),
            ]),
            1,
            "insert, P s1 again",
        ),
        (msg::query("SELECT count(*) FROM t WHERE k = 9"), 1, "no 9"),
        // A wrong parameter count: the error names s1.
        (
            cat(&[msg::bind("", "s1", &[]), msg::execute(""), msg::sync()]),
            1,
            "B s1 without parameters",
        ),
        // After an error, a Close and a Parse in the same batch are skipped.
        (
            cat(&[
                msg::extended("SELECT 1/0", &[]),
                msg::close_statement("s1"),
                msg::parse("s2", sel),
                msg::sync(),
            ]),
            1,
            "error, C s1, P s2",
        ),
        (
            cat(&[
                msg::bind("", "s1", &["2"]),
                msg::execute(""),
                msg::describe_statement("s2"),
                msg::sync(),
            ]),
            1,
            "B s1, D s2",
        ),
        // DEALLOCATE ALL ends s1; the name can be prepared again.
        (msg::query("DEALLOCATE ALL"), 1, "DEALLOCATE ALL"),
        (
            cat(&[
                msg::parse("s1", "SELECT k FROM t WHERE v = $1"),
                msg::bind("", "s1", &["20"]),
                msg::execute(""),
                msg::sync(),
            ]),
            1,
            "P s1 again after DEALLOCATE ALL",
        ),
        // SQL DEALLOCATE of it, pipelined after a BEGIN: the transaction is open after it.
        (
            cat(&[
                msg::extended("BEGIN", &[]),
                msg::sync(),
                msg::query("DEALLOCATE s1"),
                msg::query("ROLLBACK"),
            ]),
            3,
            "BEGIN; DEALLOCATE s1; ROLLBACK",
        ),
        (
            cat(&[msg::bind("", "s1", &["20"]), msg::execute(""), msg::sync()]),
            1,
            "B s1 after DEALLOCATE",
        ),
        // A Parse the proxy answers itself, then a Query naming it, no Sync between.
        (
            cat(&[msg::parse("s3", sel), msg::query("DEALLOCATE s3")]),
            1,
            "P s3; DEALLOCATE s3",
        ),
        (msg::query("DISCARD ALL"), 1, "DISCARD ALL"),
        (
            cat(&[msg::parse("s1", sel), msg::sync()]),
            1,
            "P s1 after DISCARD ALL",
        ),
    ];
    same_answers(&mut direct, &mut proxied, &rounds).await;
}

/// A batch whose first part fails before its second part arrives (a client writing a long
/// pipeline in pieces, as a JDBC batch does): the server skips the second part up to the
/// Sync. The proxy had queued answers for it and took the server's ReadyForQuery for a
/// protocol violation, closing the client's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_before_its_rest_arrives_is_skipped_as_the_server_does() {
    let (_p, mut direct, mut proxied) = pair("split").await;
    let mut answers = Vec::new();
    for raw in [&mut direct, &mut proxied] {
        let mut got = Vec::new();
        // The first part: an insert, then a statement that fails. No Sync yet.
        let mut first = msg::extended("INSERT INTO t VALUES (7, 70)", &[]);
        first.extend(msg::extended("SELECT 1/0", &[]));
        first.extend(msg::flush());
        raw.send(&first).await;
        got.extend(normal(&raw.until_tag(b'E').await));
        // The rest, once the error is in: skipped up to the Sync.
        let mut rest = msg::parse("s1", "SELECT 1");
        rest.extend(msg::extended("INSERT INTO t VALUES (8, 80)", &[]));
        rest.extend(msg::sync());
        raw.send(&rest).await;
        got.extend(normal(&raw.until_ready(1).await));
        // The connection goes on; the batch left nothing.
        raw.send(&msg::query("SELECT count(*) FROM t WHERE k IN (7, 8)"))
            .await;
        got.extend(normal(&raw.until_ready(1).await));
        raw.send(&msg::parse("s1", "SELECT 2")).await;
        raw.send(&msg::sync()).await;
        got.extend(normal(&raw.until_ready(1).await));
        answers.push(got);
    }
    assert_eq!(answers[1], answers[0], "proxied, then direct");
}

/// A session that made state (a cursor WITH HOLD) in a read-only transaction on a replica
/// is pinned to that replica: its next write is refused by the proxy with a clear error and
/// never sent there (it was sent, and the replica refused it as read-only); after DISCARD ALL
/// it goes to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_to_a_replica_writes_are_refused() {
    let db = "pinned_replica";
    setup(db);
    cluster()
        .wait_replay_caught_up(std::time::Duration::from_secs(30))
        .unwrap();
    let p = start_proxy(&config(db));
    let mut c = Raw::connect(p.port, "app_trust", db, &[]).await;
    // Until the replicas are in the read set, a read-only transaction may use the primary.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        c.simple("BEGIN READ ONLY").await;
        let on_replica = c.value("SELECT pg_is_in_recovery()").await;
        if on_replica.as_deref() == Some("t") {
            break;
        }
        c.simple("ROLLBACK").await;
        assert!(
            std::time::Instant::now() < deadline,
            "no replica in the read set"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, err) = c
        .simple("DECLARE c CURSOR WITH HOLD FOR SELECT k FROM t ORDER BY k")
        .await;
    assert_eq!(err, None);
    c.simple("COMMIT").await;
    c.send(&msg::query("INSERT INTO t VALUES (77, 1)")).await;
    let answer = c.until_ready(1).await;
    let error = answer.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("25006"));
    assert!(
        error.field(b'M').unwrap().starts_with("switchyard: "),
        "{:?}",
        error.field(b'M')
    );
    // The cursor is still there, on the replica.
    assert_eq!(c.value("FETCH 1 FROM c").await.as_deref(), Some("1"));
    c.simple("DISCARD ALL").await;
    let (_, err) = c.simple("INSERT INTO t VALUES (77, 1)").await;
    assert_eq!(err, None);
    assert_eq!(
        cluster()
            .psql_db(0, db, "SELECT count(*) FROM t WHERE k = 77")
            .unwrap()
            .trim(),
        "1"
    );
}

/// Random sessions (see the module). It found the differences the tests above pin down (all
/// fixed). The generator leaves out the differences that remain (the README lists them
/// under "Known differences from a direct connection (PostgreSQL, transaction mode)"):
/// - a Parse answered by the proxy takes no snapshot, so a START TRANSACTION ISOLATION LEVEL
///   after it in the same batch is allowed;
/// - a DISCARD ALL or DEALLOCATE ALL inside a string of statements or run from a named
///   statement drops the client's names when its CommandComplete comes, not where it stands
///   in the pipeline (the generator sends them as Queries of their own);
/// - state made in a read-only transaction on a replica pins the client there, and its
///   writes are then refused by the proxy (see `pinned_to_a_replica_writes_are_refused`),
///   where a server of its own would run them (the generator sends no BEGIN READ ONLY).
///
/// One it cannot leave out, not seen in the 94 runs since (about 13,800 sessions): a
/// statement whose Parse the proxy answered while every connection was taken, used first in
/// a failed transaction with the wrong number of parameters, is refused for the transaction
/// (25P02), not for the count (08P01): no server has described it to the proxy yet.
///
/// A failure names its seed and writes every session's rounds to
/// `/tmp/pg_differential-SEED.log`; `SWITCHYARD_PROP_SEED=SEED` runs the same sessions again,
/// `TRACE_SESSION=N` prints session N's answers round by round, direct and proxied
/// (`TRACE_SESSION=all`: every round with the direct answer, before the proxied one is
/// read, for a proxy that does not answer), and `SWITCHYARD_TEST_LOG=switchyard=debug` the
/// proxy's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_pipelines_through_the_proxy_answer_as_the_server_does() {
    let (direct_db, proxied_db) = ("diff_direct", "diff_proxied");
    let p = databases_and_proxy(direct_db, proxied_db);
    let seed = prop_seed();
    let started = std::time::Instant::now();
    let lane = Lane {
        name: String::new(),
        seed,
        port: p.port,
        direct_db,
        proxied_db,
        sessions: SESSIONS,
    };
    let (compared, rows) = lane.run().await;
    eprintln!(
        "{SESSIONS} sessions, {compared} messages compared, {rows} rows at the end, {:?}",
        started.elapsed()
    );
}

/// Sessions one after another, each compared round by round with a direct session.
struct Lane {
    /// Suffix of the table, sequence and lock it uses (see [`Model::sql`]).
    name: String,
    seed: u64,
    port: u16,
    direct_db: &'static str,
    proxied_db: &'static str,
    sessions: usize,
}

impl Lane {
    /// Run them; the messages compared and the rows the table ends with (the same in both
    /// databases).
    async fn run(self) -> (usize, usize) {
        let Lane {
            name,
            seed,
            port,
            direct_db,
            proxied_db,
            sessions,
        } = self;
        let primary = cluster().primary_port();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut compared = 0usize;
        let mut everything: Vec<String> = Vec::new();
        let log = format!("/tmp/pg_differential-{seed}{name}.log");
        for session in 0..sessions {
            // Read-your-writes is each client's own: a new session may read from a replica
            // that has not replayed an earlier session's writes yet (a direct session never
            // would).
            tokio::task::block_in_place(|| {
                cluster()
                    .wait_replay_caught_up(std::time::Duration::from_secs(30))
                    .unwrap()
            });
            let mut direct = Raw::connect(primary, "postgres", direct_db, &[]).await;
            let mut proxied = Raw::connect(port, "app_trust", proxied_db, &[]).await;
            let mut m = Model {
                named: [None, None],
                portal_open: false,
                lane: name.clone(),
            };
            let mut history: Vec<String> = Vec::new();
            for n in 0..rng.gen_range(1..ROUNDS) {
                let r = round(&mut rng, &mut m);
                direct.send(&r.bytes).await;
                let want = normal(&direct.until_ready(r.ready).await);
                if std::env::var("TRACE_SESSION").is_ok_and(|s| s == "all") {
                    eprintln!(
                        "SESSION {session} ROUND {n}: {}\n direct: {}",
                        r.said.join(" | "),
                        want.join(" ; ")
                    );
                }
                proxied.send(&r.bytes).await;
                let got = normal(&proxied.until_ready(r.ready).await);
                if std::env::var("TRACE_SESSION").ok() == Some(session.to_string()) {
                    eprintln!(
                        "ROUND {n}: {}\n direct: {}\n proxied: {}",
                        r.said.join(" | "),
                        want.join(" ; "),
                        got.join(" ; ")
                    );
                }
                history.push(format!("round {n}: {}", r.said.join(" | ")));
                everything.push(format!(
                    "session {session} round {n}: {}",
                    r.said.join(" | ")
                ));
                if got != want {
                    // Whatever an earlier session left on a connection may be the cause.
                    let _ = std::fs::write(&log, everything.join("\n"));
                    let first = got
                        .iter()
                        .zip(&want)
                        .position(|(a, b)| a != b)
                        .unwrap_or(got.len().min(want.len()));
                    panic!(
                        "seed {seed}, lane '{name}', session {session}: answers differ at \
                         message {first} (every session's rounds are in {log})\nsent:\n  {}\n\
                         direct:\n  {}\nproxied:\n  {}",
                        history.join("\n  "),
                        want.join("\n  "),
                        got.join("\n  ")
                    );
                }
                compared += want.len();
            }
            // Leave politely or not at all, whatever is open.
            if rng.gen_bool(0.7) {
                direct.send(&msg::terminate()).await;
                proxied.send(&msg::terminate()).await;
                everything.push(format!("session {session}: Terminate"));
            } else {
                everything.push(format!("session {session}: dropped"));
            }
            drop(direct);
            drop(proxied);
            if !name.is_empty() {
                // Another lane's failure may come from what this one did.
                let _ = std::fs::write(&log, everything.join("\n"));
            }
        }
        // Both databases hold the same rows (through a fresh session each; the proxied one
        // reads from the primary).
        let mut direct = Raw::connect(primary, "postgres", direct_db, &[]).await;
        let mut proxied = Raw::connect(primary, "postgres", proxied_db, &[]).await;
        let (a, b) = (
            table(&mut direct, &name).await,
            table(&mut proxied, &name).await,
        );
        assert_eq!(a, b, "seed {seed}, lane '{name}': the databases differ");
        (compared, a.len())
    }
}

/// Sessions side by side: three lanes of random sessions at once through one proxy (one
/// worker, a pool of two per backend, so they wait for each other's connections and get
/// connections the others used; plain reads multiplexed, `multiplex_depth = 4`), each lane with a table, sequence and advisory lock of its own
/// so that what one lane is told does not depend on the others; each compared with direct
/// sessions as above. What one client leaves on a connection, or takes from one, shows up as
/// a difference in another lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sessions_side_by_side_answer_as_the_server_does() {
    const LANES: usize = 3;
    let (direct_db, proxied_db) = ("side_direct", "side_proxied");
    for db in [direct_db, proxied_db] {
        setup(db);
        for lane in 0..LANES {
            cluster()
                .psql_db(
                    0,
                    db,
                    &format!(
                        "CREATE TABLE t{lane} (k int PRIMARY KEY, v int); \
                         INSERT INTO t{lane} SELECT g, g * 10 FROM generate_series(1, 4) g; \
                         CREATE SEQUENCE sq{lane}"
                    ),
                )
                .unwrap();
        }
    }
    cluster()
        .wait_replay_caught_up(std::time::Duration::from_secs(30))
        .unwrap();
    // Plain reads of different clients may share a connection (multiplexed lanes).
    let p = start_proxy(&config(proxied_db).replace(
        "[pool]\nsize = 2\n",
        "[pool]\nsize = 2\nmultiplex_depth = 4\n",
    ));
    let seed = prop_seed();
    let started = std::time::Instant::now();
    let lanes: Vec<_> = (0..LANES)
        .map(|lane| {
            tokio::spawn(
                Lane {
                    name: lane.to_string(),
                    seed: seed.wrapping_add(lane as u64),
                    port: p.port,
                    direct_db,
                    proxied_db,
                    sessions: SESSIONS / LANES,
                }
                .run(),
            )
        })
        .collect();
    let mut compared = 0;
    for lane in lanes {
        match lane.await {
            Ok((n, _)) => compared += n,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!(
        "{LANES} lanes of {} sessions, {compared} messages compared, {:?}",
        SESSIONS / LANES,
        started.elapsed()
    );
}

/// Found by the random sessions (seed 6658657118882290437): a named Parse the proxy put off
/// (no connection was free), an error in the batch before the Bind that brought the
/// statement to the connection (the server skipped that Parse), and a Bind of it in the next
/// batch, sent before the error came: the proxy took the statement for being there, and the
/// client was told it does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_parsed_before_an_error_in_its_batch_stays() {
    let (_p, mut direct, mut proxied) = pair("kept").await;
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let ins = "INSERT INTO t VALUES ($1, $2)";
    let rounds = vec![(
        cat(&[
            msg::parse("s2", ins),
            close_portal("p1"),
            msg::extended("ROLLBACK TO SAVEPOINT sp", &[]),
            msg::bind("", "s2", &["4", "55"]),
            msg::execute(""),
            msg::sync(),
            msg::extended("RESET ALL", &[]),
            msg::bind("", "s2", &["4", "10"]),
            msg::execute(""),
            msg::sync(),
        ]),
        2,
        "P s2, error, B s2, S, then B s2",
    )];
    same_answers(&mut direct, &mut proxied, &rounds).await;
}

/// In a failed transaction, a Bind or Describe of a statement the held connection does not
/// have (it was prepared before the transaction, elsewhere): the Parse the proxy would put in
/// front of it is refused there (25P02), so the proxy answers as the server would: a Bind
/// with the wrong number of parameters is a protocol error (08P01), a Describe of a statement
/// without result columns is answered; the rest are refused (25P02). Also when the Bind
/// comes in the same write as the statement that fails the transaction. And a Parse of a name
/// the client has is checked by a server (a missing table is reported before the name).
/// Found by the random sessions; each case failed before its fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_answers_for_statements_its_connection_lacks() {
    let (p, mut direct, mut proxied) = pair("failed").await;
    let (sel, ins) = (
        "SELECT v FROM t WHERE k = $1",
        "INSERT INTO t VALUES ($1, $2)",
    );
    let cat = |parts: &[Vec<u8>]| parts.concat();
    // Another session prepares both statements in a transaction it keeps open (a pool of
    // two: the failed transaction below gets the other connection, which has neither).
    let mut other = Raw::connect(p.port, "app_trust", "failed_proxied", &[]).await;
    other.send(&msg::query("BEGIN")).await;
    other.until_ready(1).await;
    other
        .send(&cat(&[
            msg::parse("a", sel),
            msg::bind("", "a", &["1"]),
            msg::execute(""),
            msg::parse("b", ins),
            msg::describe_statement("b"),
            msg::sync(),
        ]))
        .await;
    assert!(split(&other.until_ready(1).await).1.is_none());
    let rounds = vec![
        (
            cat(&[msg::parse("s1", sel), msg::parse("s2", ins), msg::sync()]),
            1,
            "P s1, P s2",
        ),
        (msg::query("BEGIN; SELECT 1/0"), 1, "a failed transaction"),
        (
            cat(&[msg::bind("", "s1", &[]), msg::execute(""), msg::sync()]),
            1,
            "B s1 without its parameter",
        ),
        (
            cat(&[msg::describe_statement("s2"), msg::sync()]),
            1,
            "D s2 (no result columns)",
        ),
        (
            cat(&[msg::describe_statement("s1"), msg::sync()]),
            1,
            "D s1 (a result)",
        ),
        (
            cat(&[
                msg::bind("", "s2", &["1", "2"]),
                msg::execute(""),
                msg::sync(),
            ]),
            1,
            "B s2",
        ),
        (msg::query("ROLLBACK"), 1, "ROLLBACK"),
        // The same, the Bind and Describe in the write that fails the transaction.
        (
            cat(&[
                msg::query("BEGIN; SELECT 1/0"),
                msg::bind("", "s1", &["1", "2"]),
                msg::execute(""),
                msg::sync(),
                msg::describe_statement("s2"),
                msg::sync(),
                msg::query("ROLLBACK"),
            ]),
            4,
            "failed, B s1 with two, D s2, ROLLBACK",
        ),
        (
            cat(&[
                msg::parse("s2", "SELECT count(*) FROM no_such_table"),
                msg::sync(),
            ]),
            1,
            "P s2 again, of a missing table",
        ),
        // A Parse of a name the client has, in a failed transaction on a connection that
        // lacks the statement (seed 11966369948814075528): a server refuses a statement that
        // does not end the transaction (25P02) before it looks at the name, and reports the
        // name of one that does (42P05).
        (msg::query("BEGIN; SELECT 1/0"), 1, "a failed transaction"),
        (
            cat(&[msg::parse("s2", "ROLLBACK"), msg::sync()]),
            1,
            "P s2 ROLLBACK",
        ),
        (
            cat(&[msg::parse("s1", "SELECT 2"), msg::sync()]),
            1,
            "P s1 SELECT 2",
        ),
        (msg::query("ROLLBACK"), 1, "ROLLBACK"),
        (
            cat(&[
                msg::query("BEGIN; SELECT 1/0"),
                msg::parse("s1", "COMMIT"),
                msg::sync(),
                msg::parse("s2", "SELECT 3"),
                msg::sync(),
                msg::query("ROLLBACK"),
            ]),
            4,
            "failed, P s1 COMMIT, P s2 SELECT 3, ROLLBACK",
        ),
    ];
    same_answers(&mut direct, &mut proxied, &rounds).await;
    other.send(&msg::query("ROLLBACK")).await;
    other.until_ready(1).await;
}

/// State made after a clear of its kind in the same write, in one Query string or in the
/// next Query of a pipeline (found by the random sessions, seed 17557189331631620332): the
/// clear's answer came after the proxy had noted the new state, and unpinned the client, so
/// its connection went back to the pool with the statement, the lock and the setting on it.
/// And state made by a string that starts by ending a failed transaction (seed
/// 14487756246822156114: `ROLLBACK; LISTEN ch` was taken to fail as a whole). The next
/// clients must not see any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_made_after_a_clear_in_the_same_write_is_not_left_to_others() {
    let (p, _direct, _proxied) = pair("cleared").await;
    let sessions: [&[(Vec<u8>, usize)]; 8] = [
        &[(msg::query("DEALLOCATE ALL; PREPARE q AS SELECT 1"), 1)],
        &[(
            [
                msg::query("DEALLOCATE ALL"),
                msg::query("PREPARE q AS SELECT 1"),
            ]
            .concat(),
            2,
        )],
        &[(
            [
                msg::query("RESET ALL"),
                msg::query("SELECT set_config('application_name', 'left', false)"),
            ]
            .concat(),
            2,
        )],
        &[
            (msg::query("BEGIN"), 1),
            (msg::query("SELECT 1/0"), 1),
            (msg::query("ROLLBACK; LISTEN ch"), 1),
        ],
        // A setting made by a statement prepared earlier (nothing in the write's text says
        // so), reported at the ReadyForQuery of a Query that resets another setting.
        &[
            (
                [
                    msg::parse("s1", "SELECT set_config('application_name', $1, false)"),
                    msg::sync(),
                ]
                .concat(),
                1,
            ),
            (msg::query("RESET ALL"), 1),
            (
                [
                    msg::bind("", "s1", &["left2"]),
                    msg::execute(""),
                    msg::query("RESET statement_timeout"),
                ]
                .concat(),
                1,
            ),
        ],
        // A clear that a later ROLLBACK of the same string undoes (seed 1533926166986188492,
        // side by side: `RESET ALL; ROLLBACK; ...` unpinned a client whose application_name
        // stayed set, and the next client on its connection saw it).
        &[
            (
                msg::query("SELECT set_config('application_name', 'left3', false)"),
                1,
            ),
            (msg::query("RESET ALL; ROLLBACK"), 1),
        ],
        &[
            (msg::query("LISTEN ch"), 1),
            (msg::query("BEGIN; UNLISTEN *; ROLLBACK"), 1),
        ],
        &[
            (
                msg::query("SELECT set_config('application_name', 'left4', false)"),
                1,
            ),
            (msg::query("BEGIN"), 1),
            (
                msg::query("SAVEPOINT a; RESET ALL; ROLLBACK TO a; COMMIT"),
                1,
            ),
        ],
    ];
    for (i, writes) in sessions.iter().enumerate() {
        let mut answers = Vec::new();
        // A session leaves after its writes; the next ones (the pool hands out the
        // connection given back last first) look for what it made.
        for (port, user, db) in [
            (cluster().primary_port(), "postgres", "cleared_direct"),
            (p.port, "app_trust", "cleared_proxied"),
        ] {
            let mut leaving = Raw::connect(port, user, db, &[]).await;
            let mut got = Vec::new();
            for (write, ready) in writes.iter() {
                leaving.send(write).await;
                got.extend(normal(&leaving.until_ready(*ready).await));
            }
            leaving.send(&msg::terminate()).await;
            drop(leaving);
            for _ in 0..3 {
                let mut next = Raw::connect(port, user, db, &[]).await;
                next.send(&msg::query(
                    "BEGIN; SELECT current_setting('application_name'), \
                     pg_listening_channels()",
                ))
                .await;
                got.extend(normal(&next.until_ready(1).await));
                next.send(&msg::query("DEALLOCATE q")).await;
                got.extend(normal(&next.until_ready(1).await));
                next.send(&msg::query("COMMIT")).await;
                got.extend(normal(&next.until_ready(1).await));
                next.send(&msg::terminate()).await;
            }
            answers.push(got);
        }
        assert_eq!(answers[1], answers[0], "session {i}: proxied, then direct");
    }
}

/// A statement another session prepared over its temporary table is no proof for this one:
/// its Parse goes to a server, which says the table is not there (found by the random
/// sessions, seed 6710094692921620406: the proxy answered ParseComplete itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parse_over_another_sessions_temporary_table_is_refused() {
    let (p, mut direct, mut proxied) = pair("temp").await;
    let sql = "SELECT count(*) FROM tt";
    let mut maker = Raw::connect(p.port, "app_trust", "temp_proxied", &[]).await;
    maker
        .send(&msg::query("CREATE TEMP TABLE tt (a int)"))
        .await;
    maker.until_ready(1).await;
    maker
        .send(&[msg::parse("a", sql), msg::sync()].concat())
        .await;
    assert!(split(&maker.until_ready(1).await).1.is_none());
    let rounds = vec![(
        [msg::parse("s1", sql), msg::sync()].concat(),
        1,
        "P s1 over a table this session does not have",
    )];
    same_answers(&mut direct, &mut proxied, &rounds).await;
}

/// A DEALLOCATE ALL pipelined behind an unanswered batch, then a Close of a client statement
/// and an error (found by the random sessions, seed 6727738166285681210): the Close, answered
/// by the proxy, was taken back when the error came, after the DEALLOCATE ALL had ended the
/// name, and the name lived on. A Query that drops every statement now waits for the answers
/// before it, so the names end where it stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_deallocate_all_ends_names_where_it_stands() {
    let (_p, mut direct, mut proxied) = pair("dropall").await;
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let sel = "SELECT k, v FROM t ORDER BY k";
    let rounds = vec![
        (cat(&[msg::parse("s2", sel), msg::sync()]), 1, "P s2"),
        (
            cat(&[
                msg::extended("RELEASE SAVEPOINT sp", &[]),
                msg::sync(),
                msg::query("DEALLOCATE ALL"),
                msg::describe_statement("s1"),
                msg::close_statement("s2"),
                msg::sync(),
            ]),
            3,
            "error, S, DEALLOCATE ALL, D s1 (error), C s2, S",
        ),
        (
            cat(&[msg::bind("", "s2", &[]), msg::execute(""), msg::sync()]),
            1,
            "B s2",
        ),
        (
            cat(&[
                msg::parse("s3", sel),
                msg::sync(),
                msg::query("DISCARD ALL"),
                msg::parse("s3", sel),
                msg::bind("", "s3", &[]),
                msg::execute(""),
                msg::sync(),
            ]),
            3,
            "P s3, S, DISCARD ALL, P s3 again",
        ),
    ];
    same_answers(&mut direct, &mut proxied, &rounds).await;
}

/// In a failed transaction a Parse under a new name of a statement the connection has already
/// is refused as a server refuses it, also behind a Close the server answers first and in
/// the write that fails the transaction (found by the side-by-side sessions, seeds
/// 11237561110892760935 and 11288363351939263779: the proxy answered ParseComplete itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parse_in_a_failed_transaction_is_refused_where_the_statement_is() {
    let (_p, mut direct, mut proxied) = pair("refused").await;
    let cat = |parts: &[Vec<u8>]| parts.concat();
    // A write: prepared on the primary, where the transaction below runs.
    let sel = "UPDATE t SET v = v WHERE k = $1";
    let rounds = vec![
        (cat(&[msg::parse("s1", sel), msg::sync()]), 1, "P s1"),
        (msg::query("BEGIN; SELECT 1/0"), 1, "a failed transaction"),
        (
            cat(&[close_portal("p1"), msg::parse("s2", sel), msg::sync()]),
            1,
            "C portal, P s2 (the same statement)",
        ),
        (msg::query("ROLLBACK"), 1, "ROLLBACK"),
        (
            cat(&[
                msg::query("BEGIN; SELECT 1/0"),
                close_portal("p1"),
                msg::parse("s3", sel),
                msg::sync(),
                msg::query("ROLLBACK"),
            ]),
            3,
            "failed, C portal, P s3, ROLLBACK",
        ),
        (
            cat(&[
                msg::bind("", "s2", &["1"]),
                msg::execute(""),
                msg::sync(),
                msg::bind("", "s3", &["1"]),
                msg::execute(""),
                msg::sync(),
                msg::bind("", "s1", &["1"]),
                msg::execute(""),
                msg::sync(),
            ]),
            3,
            "B s2, B s3, B s1",
        ),
    ];
    same_answers(&mut direct, &mut proxied, &rounds).await;
}

/// A DISCARD ALL in a transaction whose BEGIN the proxy answered and sent in front of it (found
/// by the random sessions, seed 13108375435314446700): the server refuses it (a transaction
/// block), but the proxy took the connection it had just got for idle and dropped the
/// client's statement names at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discard_all_after_a_deferred_begin_keeps_the_names() {
    let (_p, mut direct, mut proxied) = pair("deferred").await;
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let rounds = vec![
        (
            cat(&[
                msg::parse("s2", "INSERT INTO t VALUES ($1, $2)"),
                msg::sync(),
            ]),
            1,
            "P s2",
        ),
        (
            msg::query("START TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
            1,
            "START TRANSACTION",
        ),
        (
            cat(&[
                msg::query("DISCARD ALL"),
                msg::extended("COMMIT", &[]),
                msg::sync(),
            ]),
            2,
            "DISCARD ALL in the transaction, COMMIT",
        ),
        (
            cat(&[msg::bind("", "s2", &["5"]), msg::execute(""), msg::sync()]),
            1,
            "B s2",
        ),
    ];
    same_answers(&mut direct, &mut proxied, &rounds).await;
}

/// A reset that a ROLLBACK in the same string undoes leaves the client's own values: the
/// proxy re-applies the client's startup parameters after a reset, and must not after one
/// that did not happen. A reset before a COMMIT, or before a savepoint rolled back to, stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_undone_by_a_rollback_leaves_the_clients_values() {
    let (direct_db, proxied_db) = ("undone_direct", "undone_proxied");
    let p = databases_and_proxy(direct_db, proxied_db);
    let startup = [("application_name", "mine")];
    let mut direct = Raw::connect(cluster().primary_port(), "postgres", direct_db, &startup).await;
    let mut proxied = Raw::connect(p.port, "app_trust", proxied_db, &startup).await;
    let show = || msg::query("BEGIN; SELECT current_setting('application_name'); COMMIT");
    let rounds = vec![
        (msg::query("SET application_name = 'changed'"), 1, "SET"),
        (msg::query("RESET ALL; ROLLBACK"), 1, "RESET ALL; ROLLBACK"),
        (show(), 1, "show"),
        (
            msg::query("RESET ALL; COMMIT; BEGIN; ROLLBACK"),
            1,
            "reset, committed",
        ),
        (show(), 1, "show"),
        (msg::query("SET application_name = 'changed'"), 1, "SET"),
        (
            msg::query("BEGIN; RESET ALL; SAVEPOINT a; ROLLBACK TO a; COMMIT"),
            1,
            "reset before a savepoint",
        ),
        (show(), 1, "show"),
        (msg::query("SET application_name = 'again'"), 1, "SET"),
        (
            msg::query("ABORT; RESET application_name; ROLLBACK; RESET work_mem"),
            1,
            "reset undone, another after",
        ),
        (show(), 1, "show"),
    ];
    same_answers(&mut direct, &mut proxied, &rounds).await;
}

/// Found by the random sessions (seed 4093619825988155098, the "no ReadyForQuery within
/// 20s" seen once before): a Parse of a name the client has, refused on a replica, then in
/// the same write SQL `DEALLOCATE` of that name (answered by the proxy) and a batch with a
/// write. The batch waited for the replica connection to be let go, which happened once the
/// proxy's own answer went out; nothing looked at the batch again, and the session waited
/// for client input that was already there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deallocate_after_a_refused_parse_lets_the_batch_after_it_run() {
    let (p, mut direct, mut proxied) = pair("dealloc").await;
    // Another session first uses both statements, so that the proxy knows them (a Parse of
    // a known statement is answered without a server).
    let mut other = Raw::connect(p.port, "app_trust", "dealloc_proxied", &[]).await;
    for _ in 0..2 {
        other
            .send(
                &[
                    msg::parse("a", "INSERT INTO t VALUES ($1, $2)"),
                    msg::bind("", "a", &["100", "1"]),
                    msg::execute(""),
                    msg::parse("b", "SELECT v FROM t WHERE k = $1"),
                    msg::bind("", "b", &["100"]),
                    msg::execute(""),
                    msg::sync(),
                    msg::query("DELETE FROM t WHERE k = 100"),
                ]
                .concat(),
            )
            .await;
        other.until_ready(2).await;
    }
    other.send(&msg::terminate()).await;
    drop(other);
    let rounds = vec![
        (
            [
                msg::parse("s1", "INSERT INTO t VALUES ($1, $2)"),
                msg::sync(),
            ]
            .concat(),
            1,
            "P s1",
        ),
        (
            [
                msg::parse("s1", "SELECT v FROM t WHERE k = $1"),
                msg::sync(),
                msg::query("DEALLOCATE s1"),
                msg::extended("SELECT k, v FROM t ORDER BY k", &[]),
                msg::extended("INSERT INTO t VALUES ($1, $2)", &["1", "88"]),
                msg::extended("LISTEN ch", &[]),
                msg::extended("BEGIN", &[]),
                msg::sync(),
            ]
            .concat(),
            3,
            "P s1 again, DEALLOCATE s1, a batch",
        ),
    ];
    same_answers(&mut direct, &mut proxied, &rounds).await;
}

/// [`pair`] through a proxy with one primary connection and no replicas (and
/// `checkout_timeout` when given), so that every batch of the session meets what earlier
/// ones left on it.
async fn one_connection_pair(name: &str, checkout_timeout: &str) -> (Proxy, Raw, Raw) {
    let (direct_db, proxied_db) = (format!("{name}_direct"), format!("{name}_proxied"));
    setup(&direct_db);
    setup(&proxied_db);
    let mut config = config(&proxied_db)
        .replace("size = 2", "size = 1")
        .replace("replicas = [", "# replicas = [");
    if !checkout_timeout.is_empty() {
        config = config.replace(
            "checkout_timeout = \"10s\"",
            &format!("checkout_timeout = \"{checkout_timeout}\""),
        );
    }
    let p = start_proxy(&config);
    let direct = Raw::connect(cluster().primary_port(), "postgres", &direct_db, &[]).await;
    let proxied = Raw::connect(p.port, "app_trust", &proxied_db, &[]).await;
    (p, direct, proxied)
}

/// Found with postgres.js (`pg_drivers::postgres_js_habits_...`): after a table changed shape,
/// a server refuses a statement prepared before (0A000, "cached plan must not change result
/// type"), and drivers prepare the text again, under a new name or the same after a Close.
/// The proxy shares one server statement per text, so the new Parse led to the same stale
/// statement and failed again, for good. Now the text gets a new statement; one prepared
/// before the change still fails as on a server. One primary connection, no replicas, so
/// that every batch meets the statement where it went stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_a_schema_change_made_stale_can_be_prepared_again() {
    let (_p, mut direct, mut proxied) = one_connection_pair("stale", "").await;
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let sel = "SELECT * FROM alt";
    let run = |stmt: &str| {
        cat(&[
            msg::bind("", stmt, &[]),
            msg::describe_portal(""),
            msg::execute(""),
            msg::sync(),
        ])
    };
    let rounds = vec![
        (
            msg::query("CREATE TABLE alt (a int); INSERT INTO alt VALUES (1)"),
            1,
            "create",
        ),
        (cat(&[msg::parse("s1", sel), run("s1")]), 1, "P s1, run"),
        (
            msg::query("ALTER TABLE alt ADD COLUMN b int DEFAULT 5"),
            1,
            "alter",
        ),
        (run("s1"), 1, "run s1: stale"),
        (cat(&[msg::parse("s2", sel), run("s2")]), 1, "P s2, run"),
        (
            cat(&[msg::close_statement("s1"), msg::parse("s1", sel), run("s1")]),
            1,
            "C s1, P s1, run",
        ),
        (run("s1"), 1, "run s1"),
        (
            msg::query("ALTER TABLE alt DROP COLUMN b; BEGIN"),
            1,
            "drop the column, BEGIN",
        ),
        (run("s2"), 1, "run s2 in the transaction: stale"),
        (msg::query("ROLLBACK"), 1, "ROLLBACK"),
        (cat(&[msg::parse("s3", sel), run("s3")]), 1, "P s3, run"),
        (
            cat(&[msg::describe_statement("s2"), msg::sync()]),
            1,
            "describe s2: stale",
        ),
        (cat(&[msg::parse("s4", sel), run("s4")]), 1, "P s4, run"),
    ];
    same_answers(&mut direct, &mut proxied, &rounds).await;
}

/// A statement prepared before its table changed shape, bound or described on a server
/// connection the proxy has to prepare it on anew (the one it was prepared on is gone), is
/// refused as stale (0A000), as on a server of its own, and stays so until prepared again:
/// the client was told the old columns and must never get rows of the new ones. A statement
/// whose columns did not change runs there as before. The proxied session's server
/// connection is ended (`pg_terminate_backend`) between the change and the runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_statement_prepared_anew_on_another_connection_is_refused() {
    let proxied_db = "stale2_proxied";
    let (_p, mut direct, mut proxied) = one_connection_pair("stale2", "").await;
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let run = |stmt: &str| cat(&[msg::bind("", stmt, &[]), msg::execute(""), msg::sync()]);
    let (all, one) = ("SELECT * FROM alt2", "SELECT a FROM alt2 WHERE a = $1");
    let before = vec![
        (
            msg::query("CREATE TABLE alt2 (a int); INSERT INTO alt2 VALUES (1)"),
            1,
            "create",
        ),
        (
            cat(&[
                msg::parse("s1", all),
                msg::describe_statement("s1"),
                msg::parse("k", one),
                msg::describe_statement("k"),
                run("s1"),
            ]),
            1,
            "P s1, P k, run s1",
        ),
        (
            msg::query("ALTER TABLE alt2 ADD COLUMN b int DEFAULT 5"),
            1,
            "alter",
        ),
    ];
    same_answers(&mut direct, &mut proxied, &before).await;
    // The proxied session's connection ends; its next batch gets a new one.
    let mut admin = Raw::connect(cluster().primary_port(), "postgres", "postgres", &[]).await;
    let (_, err) = admin
        .simple(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{proxied_db}' AND backend_type = 'client backend'"
        ))
        .await;
    assert!(err.is_none(), "{err:?}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let bind_k = cat(&[msg::bind("", "k", &["1"]), msg::execute(""), msg::sync()]);
    let after = vec![
        (run("s1"), 1, "run s1: stale"),
        (bind_k.clone(), 1, "run k: its columns did not change"),
        (run("s1"), 1, "run s1 again: still stale"),
        (
            cat(&[msg::describe_statement("s1"), msg::sync()]),
            1,
            "describe s1: stale",
        ),
        (
            cat(&[msg::query("BEGIN"), run("s1"), bind_k.clone()]),
            3,
            "run s1 in a transaction: it fails",
        ),
        (msg::query("ROLLBACK"), 1, "ROLLBACK"),
        (
            cat(&[
                msg::close_statement("s1"),
                msg::parse("s1", all),
                msg::describe_statement("s1"),
                run("s1"),
            ]),
            1,
            "C s1, P s1, run: the new columns",
        ),
        (bind_k, 1, "run k"),
    ];
    same_answers(&mut direct, &mut proxied, &after).await;
}

/// Plain `SET`s outside a transaction (pgjdbc sends `SET extra_float_digits = 3` when it
/// connects, Rails four of them) pinned the client to its server connection for good, so a
/// pool of Java clients was a pool of pinned connections and the next client waited out
/// `checkout_timeout`. Now the proxy carries such a setting to every connection the client
/// gets, as it does its startup parameters: the client answers as on a server of its own
/// (a rolled-back `SET`, `SET LOCAL` and `RESET` included), another client sharing the one
/// server connection still gets it in between, and sees none of the first client's settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sets_follow_the_client_without_pinning_it() {
    let (p, mut direct, mut proxied) = one_connection_pair("sets", "1s").await;
    let mut other = Raw::connect(p.port, "app_trust", "sets_proxied", &[]).await;
    let show = "SELECT current_setting('work_mem'), current_setting('extra_float_digits'), \
                current_setting('TimeZone'), current_setting('search_path'), \
                current_setting('statement_timeout'), \
                current_setting('default_transaction_isolation'), \
                current_setting('default_transaction_read_only')";
    let (zone, _) = other.simple("SELECT current_setting('TimeZone')").await;
    let zone = zone[0][0].clone();
    // (text, what it is, whether the client holds no connection after it: the other client
    // can have the one there is).
    let q = msg::query;
    let x = |sql: &str| [msg::extended(sql, &[]), msg::sync()].concat();
    let rounds: Vec<(Vec<u8>, &str, bool)> = vec![
        (q("SET extra_float_digits = 3"), "pgjdbc's", true),
        (q("SET client_min_messages TO 'warning'"), "Rails'", true),
        (
            q("SET SESSION timezone TO 'Asia/Tokyo'"),
            "a time zone",
            true,
        ),
        (q("SET work_mem = '3MB'"), "work_mem", true),
        (q("SET search_path = public, pg_catalog"), "a list", true),
        (q(show), "all of them", true),
        (
            q("SET LOCAL statement_timeout = '7s'"),
            "SET LOCAL outside a transaction",
            true,
        ),
        (q("RESET work_mem"), "RESET", true),
        (q("SET TIME ZONE 'UTC'"), "SET TIME ZONE", true),
        (q(show), "after RESET", true),
        (q("SET statement_timeout = 8000"), "another", true),
        (q("DISCARD ALL"), "DISCARD ALL", true),
        (q(show), "after DISCARD ALL", true),
        (q("SET work_mem = '2MB'"), "again", true),
        // The same in the extended protocol (pgjdbc's way).
        (x("SET extra_float_digits = 2"), "extended", true),
        (x("SET work_mem = '7MB'"), "extended again", true),
        (q(show), "after the extended ones", true),
        (
            x("SET work_mem = 'lots'"),
            "an extended SET that fails",
            true,
        ),
        (q(show), "after it", true),
        (
            q("SELECT set_config('TimeZone', 'America/New_York', false)"),
            "Django's set_config()",
            true,
        ),
        (
            x("SELECT pg_catalog.set_config('work_mem', '12MB', false)"),
            "set_config() extended",
            true,
        ),
        (q(show), "after set_config()", true),
        (
            q("SET client_min_messages TO warning;SET TIME ZONE INTERVAL '+05:30' HOUR TO MINUTE;"),
            "Sequelize's string of SETs",
            true,
        ),
        (q(show), "after the string", true),
        (q("SET TIME ZONE -7"), "hours the SQL way", true),
        (q(show), "after them", true),
        (
            q("SET work_mem = '13MB'; SET nosuch_setting = 1"),
            "a string with a SET that fails",
            true,
        ),
        (q(show), "after the failed string", true),
        // A reset of a carried setting that is undone: the setting stays, as directly (the
        // client stays on the connection that knows).
        (
            [
                msg::extended("RESET work_mem", &[]),
                msg::extended("SELECT 1 / 0", &[]),
                msg::sync(),
            ]
            .concat(),
            "a RESET in a batch that fails",
            false,
        ),
        (q(show), "work_mem kept", false),
        (q("RESET ALL"), "RESET ALL", true),
        (q("SET work_mem = '14MB'"), "carried again", true),
        (q("BEGIN; RESET work_mem; ROLLBACK"), "a RESET rolled back", false),
        (q(show), "work_mem kept again", false),
        (q("RESET ALL"), "RESET ALL again", true),
        // pgjdbc's setTransactionIsolation and setReadOnly (readOnlyMode=always).
        (
            x("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
            "SET SESSION CHARACTERISTICS",
            true,
        ),
        (
            q("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
            "read only by default",
            true,
        ),
        (q(show), "after SET SESSION CHARACTERISTICS", true),
        (
            q("BEGIN; SELECT current_setting('transaction_isolation'), \
               current_setting('transaction_read_only'); COMMIT"),
            "a transaction with them",
            true,
        ),
        (
            q("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
            "read write",
            true,
        ),
        (
            q("SET default_transaction_isolation = 'serializable'"),
            "default_transaction_isolation",
            true,
        ),
        (q(show), "after them all", true),
        (q("RESET default_transaction_isolation"), "RESET of one", true),
        (q(show), "after the RESET", true),
        (q("RESET ALL"), "RESET ALL a third time", true),
        // Names as the server keeps them: knex's quoted search_path, a keyword, folded words.
        (
            q("set search_path to \"Knex_App\",\"public\""),
            "knex's search_path",
            true,
        ),
        (q(show), "after knex's", true),
        (
            q("SET search_path = 'user', Public, \"a\"\"b\""),
            "a keyword and a quote in a name",
            true,
        ),
        (q(show), "after the keyword", true),
        (q("SET myapp.tenant = Acme"), "a bare word folded", true),
        (
            q("SELECT current_setting('myapp.tenant')"),
            "the folded word",
            true,
        ),
        (q("RESET ALL"), "RESET ALL a fourth time", true),
        // A named statement that is a plain SET, prepared in a batch of its own and executed
        // in another (libpq's PQprepare and PQexecPrepared: PHP's pdo_pgsql, as Laravel sets
        // up its connections): carried when its Execute is the batch; pinned elsewhere.
        (
            [msg::parse("pdo_stmt_1", "set work_mem to '15MB'"), msg::sync()].concat(),
            "a named SET prepared",
            true,
        ),
        (q(show), "after the Parse alone", true),
        (
            [
                msg::bind("", "pdo_stmt_1", &[]),
                msg::describe_portal(""),
                msg::execute(""),
                msg::sync(),
            ]
            .concat(),
            "the named SET executed",
            true,
        ),
        (q(show), "after the named SET", true),
        (q("DEALLOCATE pdo_stmt_1"), "DEALLOCATE of it", true),
        (q("SET NAMES 'LATIN1'"), "SET NAMES", true),
        (
            q("SELECT current_setting('client_encoding')"),
            "the encoding",
            true,
        ),
        (q("RESET ALL"), "RESET ALL after SET NAMES", true),
        (
            q("SELECT current_setting('client_encoding')"),
            "the encoding after RESET ALL",
            true,
        ),
        (
            [msg::parse("pdo_stmt_2", "set time zone 'Asia/Kolkata'"), msg::sync()].concat(),
            "another named SET prepared",
            true,
        ),
        (q("BEGIN"), "BEGIN before a named SET", false),
        (
            [msg::bind("", "pdo_stmt_2", &[]), msg::execute(""), msg::sync()].concat(),
            "a named SET in a transaction",
            false,
        ),
        (q("COMMIT"), "its COMMIT", false),
        (q(show), "pinned by the named SET in a transaction", false),
        (q("RESET ALL"), "RESET ALL a fifth time", true),
        (
            [
                msg::bind("", "pdo_stmt_2", &[]),
                msg::execute(""),
                msg::parse("", "SELECT 1"),
                msg::bind("", "", &[]),
                msg::execute(""),
                msg::sync(),
            ]
            .concat(),
            "a named SET with another statement in its batch",
            false,
        ),
        (q(show), "pinned by the named SET in a batch", false),
        (q("RESET ALL"), "RESET ALL a sixth time", true),
        // SETs in a transaction block, each a Query of its own (psycopg's first statement
        // when not in autocommit): carried once the block commits, gone if it rolls back.
        (q("BEGIN"), "BEGIN before SETs", false),
        (q("SET work_mem = '6MB'"), "SET in a block", false),
        (q("SET TIME ZONE 'Europe/Rome'"), "a reported one in a block", false),
        (q("COMMIT"), "the block commits", true),
        (q(show), "after the committed block", true),
        (q("BEGIN"), "BEGIN again", false),
        (q("SET work_mem = '8MB'"), "SET in a block rolled back", false),
        (q("SET TIME ZONE 'Asia/Tokyo'"), "a zone rolled back", false),
        (q("ROLLBACK"), "ROLLBACK", true),
        (q(show), "after the rollback", true),
        (q("BEGIN"), "BEGIN a third time", false),
        (q("SET statement_timeout = 9000"), "SET in a block that fails", false),
        (q("SELECT 1 / 0"), "the failure", false),
        (q("COMMIT"), "COMMIT of a failed block", true),
        (q(show), "after the failed block", true),
        (q("BEGIN"), "BEGIN with a savepoint", false),
        (q("SAVEPOINT s"), "SAVEPOINT", false),
        (q("SET work_mem = '9MB'"), "SET after the savepoint", false),
        (q("ROLLBACK TO s"), "ROLLBACK TO", false),
        (q("COMMIT"), "COMMIT after ROLLBACK TO", false),
        (q(show), "pinned by the savepoint", false),
        (q("RESET ALL"), "RESET ALL a seventh time", true),
        // pgjdbc with autocommit off: its BEGIN and a SET in one batch (Hikari's setSchema);
        // carried when the block commits, gone when it rolls back.
        (
            [
                msg::extended("BEGIN", &[]),
                msg::parse("", "SET SESSION search_path TO 'pg_catalog'"),
                msg::bind("", "", &[]),
                msg::describe_portal(""),
                msg::execute(""),
                msg::sync(),
            ]
            .concat(),
            "pgjdbc's BEGIN and SET",
            false,
        ),
        (x(show), "in the block", false),
        (x("COMMIT"), "the block with the SET commits", true),
        (q(show), "after the committed extended SET", true),
        (
            [
                msg::extended("BEGIN", &[]),
                msg::extended("SET work_mem = '16MB'", &[]),
                msg::sync(),
            ]
            .concat(),
            "BEGIN and SET again",
            false,
        ),
        (q("ROLLBACK"), "rolled back", true),
        (q(show), "after the rolled back extended SET", true),
        (q("BEGIN"), "BEGIN, then an extended SET", false),
        (x("SET statement_timeout = 17000"), "an extended SET in the block", false),
        (x("SET TIME ZONE 'Pacific/Auckland'"), "another", false),
        (q("COMMIT"), "the block commits again", true),
        (q(show), "after them", true),
        (
            [
                msg::extended("BEGIN", &[]),
                msg::extended("SET work_mem = '18MB'", &[]),
                msg::extended("COMMIT", &[]),
                msg::sync(),
            ]
            .concat(),
            "BEGIN, SET and COMMIT in one batch",
            false,
        ),
        (q(show), "pinned by it", false),
        (q("RESET ALL"), "RESET ALL after the extended blocks", true),
        (q("BEGIN"), "BEGIN with a RESET", false),
        (q("SET work_mem = '10MB'"), "SET before a RESET", false),
        (q("RESET work_mem"), "RESET in the block", false),
        (q("COMMIT"), "COMMIT after the RESET", false),
        (q(show), "pinned by the RESET", false),
        (q("RESET ALL"), "RESET ALL an eighth time", true),
        // Not carried: the client stays on its connection (pinned), as before.
        (
            q("BEGIN; SET work_mem = '5MB'; ROLLBACK"),
            "rolled back",
            false,
        ),
        (q(show), "work_mem as before", false),
        (q("BEGIN"), "BEGIN", false),
        (q("SET work_mem = '6MB'"), "SET in a transaction", false),
        (q("COMMIT"), "COMMIT", false),
        (q(show), "the committed SET", false),
        (
            q("SELECT set_config('work_mem', '9MB', false), 1"),
            "set_config() beside another column",
            false,
        ),
        (q("SET work_mem = '1MB'"), "a plain SET after", false),
        (q(show), "pinned still", false),
        (q("RESET ALL"), "RESET ALL", true),
        (
            q("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY"),
            "several modes at once",
            false,
        ),
        (q(show), "pinned by them", false),
        (q("RESET ALL"), "RESET ALL once more", true),
        (q(show), "after RESET ALL", true),
    ];
    for (i, (bytes, said, free)) in rounds.iter().enumerate() {
        direct.send(bytes).await;
        let want = normal(&direct.until_ready(1).await);
        proxied.send(bytes).await;
        let got = normal(&proxied.until_ready(1).await);
        assert_eq!(got, want, "round {i} ({said}): proxied, then direct");
        if !free {
            continue;
        }
        // The other client gets the one server connection in between, with none of this
        // client's settings.
        let (rows, err) = other.simple(show).await;
        assert!(
            err.is_none(),
            "round {i} ({said}): the other client: {err:?}"
        );
        assert_eq!(
            rows,
            vec![vec![
                Some("4MB".to_string()),
                Some("1".to_string()),
                zone.clone(),
                Some("\"$user\", public".to_string()),
                Some("0".to_string()),
                Some("read committed".to_string()),
                Some("off".to_string()),
            ]],
            "round {i} ({said}): the other client sees the first one's settings"
        );
    }
}
