//! The MySQL front end answers exactly as the server does: random sessions of raw commands
//! (COM_QUERY with one or several statements, COM_STMT_PREPARE / EXECUTE / FETCH /
//! SEND_LONG_DATA / RESET / CLOSE with cursors, re-executions that do not send their parameter
//! types again, MariaDB's "last prepared statement" id pipelined behind its prepare,
//! COM_PING, COM_INIT_DB, COM_SET_OPTION, COM_FIELD_LIST, COM_RESET_CONNECTION; transactions,
//! savepoints, autocommit off, session variables, user variables, temporary tables, user
//! locks, warnings, LAST_INSERT_ID, FOUND_ROWS, errors; clients with and without session
//! tracking and CLIENT_FOUND_ROWS) are sent to a MariaDB server directly
//! and, through the proxy, to another MariaDB server with a replica, command by command. Every
//! answer must be the same packets, byte for byte, with two normalizations: a statement id the
//! server or the proxy issued (each side's own), and that id where an error message repeats
//! it.
//!
//! The proxy runs in transaction mode with one worker, a pool of three per backend for three
//! sessions open at a time, and the replica in the cluster (read-your-writes), so sessions
//! share backend connections and reads go to the replica: anything one session leaves on a
//! connection (a variable, a statement, a temporary table, an open transaction, a warning)
//! shows up as a difference in another. At the end both servers must hold the same rows.
//! A second form runs three lanes of such sessions side by side through one proxy, each lane
//! on tables and a user lock of its own, so that clients of different lanes take each other's
//! parked connections while they run.
//!
//! Both servers have TLS on, and the proxy reaches its servers over TLS (`tls = "require"`),
//! so the comparison also covers the proxy's TLS server stream (the clients connect in plain).
//!
//! Seeded (`SWITCHYARD_PROP_SEED`, printed); bounded in sessions, commands and time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use switchyard::app::Server;
use switchyard::mysql::{auth, codec};
use switchyard::testkit::mariadb::{MariaCluster, MariaClusterOptions, APP_PASSWORD, APP_USER};

const DB: &str = "differential";
const SESSIONS: usize = 120;
const COMMANDS: usize = 40;
const OPEN: usize = 3;
const T: Duration = Duration::from_secs(15);

const SETUP: &str = "CREATE TABLE t (k INT PRIMARY KEY, v INT NOT NULL); \
                     CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, v INT, b BLOB); \
                     INSERT INTO t VALUES (1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)";

/// The tests share the servers and count their open transactions: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static M: std::sync::Mutex<()> = std::sync::Mutex::new(());
    M.lock().unwrap_or_else(|p| p.into_inner())
}

fn servers() -> &'static (MariaCluster, MariaCluster) {
    static C: OnceLock<(MariaCluster, MariaCluster)> = OnceLock::new();
    C.get_or_init(|| {
        let tls = tls_args();
        let start = |replicas| {
            MariaCluster::start_with(MariaClusterOptions {
                replicas,
                extra_args: tls.clone(),
                ..Default::default()
            })
        };
        let direct = start(0).expect("start the direct MariaDB");
        let proxied = start(1).expect("start MariaDB primary + 1 replica");
        for c in [&direct, &proxied] {
            // A lock wait (sessions share rows and gaps) ends the same way on both sides, soon.
            c.exec(0, "SET GLOBAL innodb_lock_wait_timeout = 1")
                .unwrap();
            c.create_database(DB).unwrap();
        }
        // Gap locks reach as far as the next index record, and a deleted row stays a record
        // until InnoDB's purge removes it, whenever that runs on each server. So a statement
        // could wait for a gap lock on one server (ER_LOCK_WAIT_TIMEOUT) and not on the other
        // (seen once in CI). A read view held open on each primary from before the tables
        // exist keeps purge from removing any of their rows on either side: the gaps are the
        // same on both, whatever purge's timing.
        static SNAPSHOTS: OnceLock<Vec<Conn>> = OnceLock::new();
        SNAPSHOTS.get_or_init(|| {
            [&direct, &proxied]
                .map(|c| {
                    let mut hold = connect(c.primary_port(), plain_caps());
                    let ok = run(&mut hold, "START TRANSACTION WITH CONSISTENT SNAPSHOT");
                    assert_eq!(err_in(&ok), None, "a read view to hold purge back");
                    hold
                })
                .into()
        });
        for c in [&direct, &proxied] {
            c.query_db(0, Some(DB), SETUP).unwrap();
            c.wait_caught_up(Duration::from_secs(30)).unwrap();
        }
        (direct, proxied)
    })
}

/// `mariadbd` arguments for TLS with a throwaway self-signed certificate, in a directory the
/// servers' user can read, removed when the test process exits.
fn tls_args() -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    extern "C" fn remove() {
        if let Some(d) = DIR.get() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("switchyard-mytls-")
        .tempdir()
        .unwrap()
        .keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    if DIR.set(dir.clone()).is_ok() {
        // SAFETY: registers a plain extern "C" function that never unwinds.
        unsafe { libc::atexit(remove) };
    }
    let (cert, key) = switchyard::net::tls::self_signed(&dir).unwrap();
    for f in [&cert, &key] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    vec![format!("--ssl-cert={cert}"), format!("--ssl-key={key}")]
}

fn start_proxy(dir: &std::path::Path, size: usize) -> Server {
    start_proxy_in(dir, size, "transaction")
}

fn start_proxy_in(dir: &std::path::Path, size: usize, pool_mode: &str) -> Server {
    let (_, c) = servers();
    let text = format!(
        r#"
[general]
workers = 1
drain_timeout = "2s"

[mysql]
listen = "127.0.0.1:0"
pool_mode = "{pool_mode}"

[health]
interval = "100ms"
timeout = "2s"

[pool]
size = {size}
checkout_timeout = "5s"

[[user]]
name = "{APP_USER}"
password = "{APP_PASSWORD}"

[[cluster]]
name = "{DB}"
protocol = "mysql"
database = "{DB}"
primary = "127.0.0.1:{primary}"
replicas = ["127.0.0.1:{replica}"]
user = "switchyard"
password = "switchyard_pw"
consistency = "read_your_writes"
max_lag = "30s"
tls = "require"
"#,
        primary = c.primary_port(),
        replica = c.replica_ports()[0],
    );
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    let server = Server::start_file(&path).expect("proxy");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let clusters = server.shared.clusters.load_full();
        let st = &clusters[DB];
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

// ---- a raw client, its own reading of the answers ----

/// A packet: sequence id and payload.
type Packet = (u8, Vec<u8>);

struct Conn {
    s: TcpStream,
    deprecate_eof: bool,
    /// The capabilities agreed.
    caps: u64,
    /// What the server (or proxy) said at login.
    login: Packet,
}

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

fn read_packet(s: &mut TcpStream) -> std::io::Result<Packet> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((h[3], body))
}

fn connect(port: u16, caps: u64) -> Conn {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_nodelay(true).unwrap();
    let (_, hs) = read_packet(&mut s).expect("a handshake");
    let h = codec::parse_handshake(&hs).expect("a valid handshake");
    let auth = auth::native_password_scramble(APP_PASSWORD.as_bytes(), &h.scramble());
    // As a real client: only what the server offers (and nothing of MariaDB's extension).
    let caps = (caps | codec::CLIENT_CONNECT_WITH_DB) & h.capabilities & 0xFFFF_FFFF;
    let mut out = bytes::BytesMut::new();
    codec::put_handshake_response(
        &mut out,
        &codec::HandshakeResponse {
            caps: codec::ClientCaps {
                capabilities: caps,
                max_packet_size: 1 << 24,
                charset: 45,
            },
            user: APP_USER.as_bytes(),
            auth_response: &auth,
            database: Some(DB.as_bytes()),
            auth_plugin: Some(b"mysql_native_password"),
            ..Default::default()
        },
    );
    s.write_all(&frame(1, &out)).unwrap();
    let mut login = read_packet(&mut s).expect("a login answer");
    if login.1.first() == Some(&0xFE) {
        // An auth switch: plugin name, NUL, new scramble.
        let p = &login.1[1..];
        let nul = p.iter().position(|&b| b == 0).unwrap();
        assert_eq!(&p[..nul], b"mysql_native_password", "auth switch to {p:?}");
        let mut seed = p[nul + 1..].to_vec();
        if seed.last() == Some(&0) {
            seed.pop();
        }
        let again = auth::native_password_scramble(APP_PASSWORD.as_bytes(), &seed);
        s.write_all(&frame(login.0 + 1, &again)).unwrap();
        login = read_packet(&mut s).expect("a login answer after the switch");
    }
    assert_eq!(login.1.first(), Some(&0), "login failed: {login:?}");
    Conn {
        s,
        deprecate_eof: caps & codec::CLIENT_DEPRECATE_EOF != 0,
        caps,
        login,
    }
}

/// What a command's answer looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Result sets (COM_QUERY, COM_STMT_EXECUTE), as many as the status flags announce.
    Results,
    /// COM_STMT_PREPARE: OK with the counts, then parameter and column definitions.
    Prepare,
    /// COM_STMT_FETCH and COM_FIELD_LIST: rows or definitions up to a terminator.
    UpToEnd,
    /// One packet (OK, ERR, EOF).
    One,
    /// Nothing (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    None,
}

const MORE_RESULTS: u16 = 0x0008;
const CURSOR_EXISTS: u16 = 0x0040;

fn is_end(p: &[u8]) -> bool {
    p.first() == Some(&0xFE) && p.len() < 0xFF_FFFF
}

fn lenenc(p: &[u8], at: &mut usize) -> u64 {
    let b = p[*at];
    *at += 1;
    let n = match b {
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return u64::from(b),
    };
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(&p[*at..*at + n]);
    *at += n;
    u64::from_le_bytes(v)
}

/// The status flags of an OK or EOF packet.
fn status(p: &[u8], deprecate_eof: bool) -> u16 {
    if p[0] == 0xFE && (!deprecate_eof || p.len() < 9) {
        // EOF: header, warnings, status.
        return u16::from_le_bytes([p[3], p[4]]);
    }
    let mut at = 1;
    lenenc(p, &mut at);
    lenenc(p, &mut at);
    u16::from_le_bytes([p[at], p[at + 1]])
}

impl Conn {
    fn read(&mut self) -> Result<Packet, String> {
        read_packet(&mut self.s).map_err(|e| format!("read: {e}"))
    }

    /// Reads one whole answer of `shape`.
    fn answer(&mut self, shape: Shape, out: &mut Vec<Packet>) -> Result<(), String> {
        match shape {
            Shape::None => Ok(()),
            Shape::One => {
                out.push(self.read()?);
                Ok(())
            }
            Shape::UpToEnd => loop {
                let p = self.read()?;
                let done = p.1[0] == 0xFF || is_end(&p.1);
                out.push(p);
                if done {
                    return Ok(());
                }
            },
            Shape::Prepare => {
                let p = self.read()?;
                if p.1[0] != 0 {
                    out.push(p);
                    return Ok(());
                }
                let cols = u16::from_le_bytes([p.1[5], p.1[6]]) as usize;
                let params = u16::from_le_bytes([p.1[7], p.1[8]]) as usize;
                out.push(p);
                for n in [params, cols] {
                    for _ in 0..n {
                        out.push(self.read()?);
                    }
                    if n > 0 && !self.deprecate_eof {
                        out.push(self.read()?);
                    }
                }
                Ok(())
            }
            Shape::Results => loop {
                let p = self.read()?;
                let first = p.1[0];
                if first == 0xFF {
                    out.push(p);
                    return Ok(());
                }
                if first == 0x00 {
                    let more = status(&p.1, self.deprecate_eof) & MORE_RESULTS != 0;
                    out.push(p);
                    if more {
                        continue;
                    }
                    return Ok(());
                }
                assert_ne!(first, 0xFB, "LOCAL INFILE is not in the mix");
                if first == 0xFE {
                    out.push(p);
                    return Err("an EOF packet where a result was due".into());
                }
                let mut at = 0;
                let cols = lenenc(&p.1, &mut at);
                out.push(p);
                for _ in 0..cols {
                    out.push(self.read()?);
                }
                if !self.deprecate_eof {
                    let eof = self.read()?;
                    let st = status(&eof.1, false);
                    out.push(eof);
                    if st & CURSOR_EXISTS != 0 {
                        return Ok(());
                    }
                }
                let end = loop {
                    let p = self.read()?;
                    if p.1[0] == 0xFF {
                        out.push(p);
                        return Ok(());
                    }
                    if is_end(&p.1) {
                        break p;
                    }
                    out.push(p);
                };
                let st = status(&end.1, self.deprecate_eof);
                out.push(end);
                if st & MORE_RESULTS == 0 {
                    return Ok(());
                }
            },
        }
    }
}

// ---- the random mix ----

/// A statement of the mix and its number of `?` parameters. `K` in the text is the session's
/// own key (sessions do not lock each other's rows).
struct Stmt {
    sql: &'static str,
    params: usize,
    /// Reads rows (may be executed with a cursor).
    select: bool,
}

/// Questions about the session's last statement (`own` in the proxy): asked alone in a
/// COM_QUERY, as applications ask them. In a multi-statement, or prepared, they are answered
/// by whichever server connection runs them (a documented limitation), except
/// `LAST_INSERT_ID()`, `ROW_COUNT()` and `FOUND_ROWS()` prepared.
fn bare_only(sql: &str) -> bool {
    sql.contains("WARNINGS")
        || sql.contains("@@warning_count")
        || sql.contains("ROW_COUNT()")
        || sql.contains("FOUND_ROWS()")
}

fn query_only(sql: &str) -> bool {
    sql.contains("WARNINGS") || sql.contains("@@warning_count")
}

const fn s(sql: &'static str, params: usize, select: bool) -> Stmt {
    Stmt {
        sql,
        params,
        select,
    }
}

const STATEMENTS: &[Stmt] = &[
    s("SELECT v FROM t WHERE k = ?", 1, true),
    s("SELECT k, v FROM t ORDER BY k", 0, true),
    s("SELECT k, v FROM t WHERE k >= ? ORDER BY k", 1, true),
    s("INSERT INTO t VALUES (?, ?)", 2, false),
    s("INSERT IGNORE INTO t VALUES (?, ?)", 2, false),
    s("UPDATE t SET v = v + 1 WHERE k = ?", 1, false),
    s("DELETE FROM t WHERE k = ?", 1, false),
    s("INSERT INTO a (v) VALUES (?)", 1, false),
    s("INSERT INTO a (v, b) VALUES (?, ?)", 2, false),
    s("SELECT id, v, b FROM a ORDER BY id DESC LIMIT 3", 0, true),
    s("SELECT LAST_INSERT_ID()", 0, true),
    s("SELECT ROW_COUNT()", 0, true),
    s(
        "SELECT SQL_CALC_FOUND_ROWS k FROM t ORDER BY k LIMIT 1",
        0,
        true,
    ),
    s("SELECT FOUND_ROWS()", 0, true),
    s("SELECT 10 / ?", 1, true),
    s("SHOW WARNINGS", 0, true),
    s("SELECT @@warning_count", 0, true),
    s("BEGIN", 0, false),
    s("COMMIT", 0, false),
    s("ROLLBACK", 0, false),
    s("SAVEPOINT sp", 0, false),
    s("ROLLBACK TO SAVEPOINT sp", 0, false),
    s("RELEASE SAVEPOINT sp", 0, false),
    s("SET autocommit = 0", 0, false),
    s("SET autocommit = 1", 0, false),
    s("SELECT @@autocommit, @@in_transaction", 0, true),
    s("SET time_zone = '+03:00'", 0, false),
    s("SET time_zone = '-05:30'", 0, false),
    s("SET sql_mode = 'ANSI_QUOTES'", 0, false),
    s("SET sql_mode = DEFAULT", 0, false),
    s("SET NAMES latin1", 0, false),
    s("SET NAMES utf8mb4", 0, false),
    s(
        "SELECT @@time_zone, @@sql_mode, @@character_set_client, @@character_set_results",
        0,
        true,
    ),
    s("SET @u = ?", 1, false),
    s("SELECT @u", 0, true),
    s("CREATE TEMPORARY TABLE tt (x INT)", 0, false),
    s("INSERT INTO tt VALUES (?)", 1, false),
    s("SELECT count(*) FROM tt", 0, true),
    s("DROP TEMPORARY TABLE tt", 0, false),
    s("SELECT GET_LOCK('dl', 0)", 0, true),
    s("SELECT RELEASE_LOCK('dl')", 0, true),
    s("SELECT IS_USED_LOCK('dl') IS NOT NULL", 0, true),
    s("PREPARE q FROM 'SELECT v FROM t WHERE k = 3'", 0, false),
    s("EXECUTE q", 0, true),
    s("DEALLOCATE PREPARE q", 0, false),
    s("SELECT v FROM t WHERE k = ? FOR UPDATE", 1, true),
    s("SELECT DATABASE()", 0, true),
    s("SELECT nosuchcolumn FROM t", 0, true),
    s(
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        0,
        false,
    ),
    s("SELECT @@tx_isolation, @@tx_read_only", 0, true),
    s("SET SESSION sql_select_limit = 2", 0, false),
    s("SET SESSION sql_select_limit = DEFAULT", 0, false),
    s("USE differential", 0, false),
    s("SELECT v INTO @u FROM t WHERE k = ?", 1, false),
    s("UPDATE t SET v = v WHERE k = ?", 1, false),
];

/// A parameter value: the first parameter of a statement on `t`'s key is one of the
/// session's own keys (`base` + 1-8; a key may be taken: duplicate key errors), the others
/// values, with an occasional zero divisor.
fn param(rng: &mut StdRng, stmt: &Stmt, i: usize, base: i64) -> i64 {
    if stmt.sql.contains("10 / ") {
        return rng.gen_range(0..3);
    }
    let keyed = stmt.sql.contains("k = ?")
        || stmt.sql.contains("k >= ?")
        || stmt.sql.contains("INTO t VALUES");
    if i == 0 && keyed {
        return base + rng.gen_range(1..9);
    }
    rng.gen_range(0..100)
}

fn literal(stmt: &Stmt, params: &[i64]) -> String {
    let mut out = String::new();
    let mut it = params.iter();
    for ch in stmt.sql.chars() {
        if ch == '?' {
            out.push_str(&it.next().unwrap().to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// One command as sent to both sides. Statement slots are resolved per side when sent.
#[derive(Debug, Clone)]
enum Cmd {
    Query(String),
    Prepare(usize, &'static str),
    /// Slot, values (None is NULL), send the types, open a cursor, values sent as long data.
    Execute {
        slot: usize,
        values: Vec<Option<i64>>,
        types: bool,
        cursor: bool,
        long: Vec<usize>,
    },
    /// MariaDB's id 0xFFFFFFFF: the statement prepared just before, in the same write.
    ExecuteLast(Vec<Option<i64>>),
    Fetch(usize, u32),
    LongData(usize, u16, Vec<u8>),
    Reset(usize),
    Close(usize),
    Ping,
    InitDb(&'static str),
    SetOption(u16),
    FieldList(&'static str),
    ResetConnection,
    Unknown(u8),
}

impl Cmd {
    fn shape(&self) -> Shape {
        match self {
            Cmd::Query(_) | Cmd::Execute { .. } | Cmd::ExecuteLast(_) => Shape::Results,
            Cmd::Prepare(..) => Shape::Prepare,
            Cmd::Fetch(..) | Cmd::FieldList(_) => Shape::UpToEnd,
            Cmd::LongData(..) | Cmd::Close(_) => Shape::None,
            _ => Shape::One,
        }
    }
}

/// One side's view of the statement slots: the id its server (or the proxy) issued; and the
/// lane its session runs in (tables and lock names of its own), if any.
#[derive(Default)]
struct Side {
    ids: Vec<Option<u32>>,
    lane: Option<usize>,
}

/// `text` for a session in `lane`: the tables `t` and `a` and the user lock `dl` get the
/// lane's number (`t1`, `a1`, `dl1`), so that lanes running side by side do not see each
/// other's rows or locks. Whole words only, in quoted text too (`PREPARE q FROM '...'`).
fn in_lane(text: &str, lane: Option<usize>) -> String {
    let Some(lane) = lane else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len() + 8);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(word);
        if matches!(word.as_str(), "t" | "a" | "dl") {
            out.push_str(&lane.to_string());
        }
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' || ch == '@' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// An id never issued, for slots whose prepare failed.
const NO_ID: u32 = 4_000_000;

impl Side {
    fn id(&self, slot: usize) -> u32 {
        self.ids.get(slot).copied().flatten().unwrap_or(NO_ID)
    }
}

fn put_values(out: &mut Vec<u8>, values: &[Option<i64>], types: bool, long: &[usize]) {
    if values.is_empty() {
        return;
    }
    let mut nulls = vec![0u8; values.len().div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        if v.is_none() && !long.contains(&i) {
            nulls[i / 8] |= 1 << (i % 8);
        }
    }
    out.extend_from_slice(&nulls);
    out.push(u8::from(types));
    if types {
        for i in 0..values.len() {
            // Long data goes as a BLOB; the rest as LONGLONG.
            if long.contains(&i) {
                out.extend_from_slice(&[0xFC, 0]);
            } else {
                out.extend_from_slice(&[0x08, 0]);
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        if let (Some(v), false) = (v, long.contains(&i)) {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// The payload of `cmd` for a side.
fn payload(cmd: &Cmd, side: &Side) -> Vec<u8> {
    let mut p = Vec::new();
    match cmd {
        Cmd::Query(sql) => {
            p.push(0x03);
            p.extend_from_slice(in_lane(sql, side.lane).as_bytes());
        }
        Cmd::Prepare(_, sql) => {
            p.push(0x16);
            p.extend_from_slice(in_lane(sql, side.lane).as_bytes());
        }
        Cmd::Execute {
            slot,
            values,
            types,
            cursor,
            long,
        } => {
            p.push(0x17);
            p.extend_from_slice(&side.id(*slot).to_le_bytes());
            p.push(u8::from(*cursor));
            p.extend_from_slice(&1u32.to_le_bytes());
            put_values(&mut p, values, *types, long);
        }
        Cmd::ExecuteLast(values) => {
            p.push(0x17);
            p.extend_from_slice(&u32::MAX.to_le_bytes());
            p.push(0);
            p.extend_from_slice(&1u32.to_le_bytes());
            put_values(&mut p, values, true, &[]);
        }
        Cmd::Fetch(slot, rows) => {
            p.push(0x1C);
            p.extend_from_slice(&side.id(*slot).to_le_bytes());
            p.extend_from_slice(&rows.to_le_bytes());
        }
        Cmd::LongData(slot, param, data) => {
            p.push(0x18);
            p.extend_from_slice(&side.id(*slot).to_le_bytes());
            p.extend_from_slice(&param.to_le_bytes());
            p.extend_from_slice(data);
        }
        Cmd::Reset(slot) => {
            p.push(0x1A);
            p.extend_from_slice(&side.id(*slot).to_le_bytes());
        }
        Cmd::Close(slot) => {
            p.push(0x19);
            p.extend_from_slice(&side.id(*slot).to_le_bytes());
        }
        Cmd::Ping => p.push(0x0E),
        Cmd::InitDb(db) => {
            p.push(0x02);
            p.extend_from_slice(db.as_bytes());
        }
        Cmd::SetOption(o) => {
            p.push(0x1B);
            p.extend_from_slice(&o.to_le_bytes());
        }
        Cmd::FieldList(table) => {
            p.push(0x04);
            p.extend_from_slice(in_lane(table, side.lane).as_bytes());
            p.push(0);
        }
        Cmd::ResetConnection => p.push(0x1F),
        Cmd::Unknown(c) => p.push(*c),
    }
    p
}

/// The slot a command names, if any.
fn slot_of(cmd: &Cmd) -> Option<usize> {
    match cmd {
        Cmd::Execute { slot, .. }
        | Cmd::Fetch(slot, _)
        | Cmd::LongData(slot, ..)
        | Cmd::Reset(slot)
        | Cmd::Close(slot)
        | Cmd::Prepare(slot, _) => Some(*slot),
        _ => None,
    }
}

/// The generator's idea of a session: which statement was prepared in each slot last, and
/// what the questions about the last statement may be asked after.
struct Model {
    slots: Vec<Option<usize>>,
    /// A query that read a table ran since the session began (or was reset): before it,
    /// `FOUND_ROWS()` is the server's own idea (1, or 0 after a COM_PING); the proxy says 0.
    queried: bool,
    /// The last command was one statement in a COM_QUERY that uses a table. The server
    /// clears its warnings only for statements that use tables: after any other,
    /// `@@warning_count` and `SHOW WARNINGS` add up more than one statement's (a documented
    /// limitation of the proxy, which keeps the last statement's).
    after_table: bool,
    /// Which slots have been executed since their prepare. MariaDB 10.11 stores bytes of
    /// its own memory in a BLOB sent as long data to a statement executed before with that
    /// parameter bound as a number (the proxy, which may run it on a connection where it is
    /// new, stores the data): long data only for a statement's first execute.
    executed: Vec<bool>,
    /// Statements (indexes) executed with a cursor in this session: not prepared again.
    cursor_texts: Vec<usize>,
}

fn uses_table(sql: &str) -> bool {
    [
        " t ", " t(", " a ", " a(", " tt", "INTO t", "UPDATE t", "FROM t", "FROM a",
    ]
    .iter()
    .any(|w| sql.contains(w))
}

const SLOTS: usize = 4;

fn random_cmds(rng: &mut StdRng, model: &mut Model, base: i64) -> Vec<Cmd> {
    let (queried, after_table) = (model.queried, model.after_table);
    model.after_table = false;
    let cmds = random_cmds_in(rng, model, base, queried, after_table);
    let mut last_prepared = None;
    for c in &cmds {
        match c {
            Cmd::Prepare(slot, _) => {
                model.executed[*slot] = false;
                last_prepared = Some(*slot);
            }
            Cmd::Execute { slot, .. } => model.executed[*slot] = true,
            Cmd::ExecuteLast(_) => {
                if let Some(slot) = last_prepared {
                    model.executed[slot] = true;
                }
            }
            _ => {}
        }
    }
    cmds
}

fn random_cmds_in(
    rng: &mut StdRng,
    model: &mut Model,
    base: i64,
    queried: bool,
    after_table: bool,
) -> Vec<Cmd> {
    let allowed =
        |sql: &str| (queried || !sql.contains("FOUND_ROWS()")) && (after_table || !query_only(sql));
    let stmt_at = |rng: &mut StdRng| loop {
        let i = rng.gen_range(0..STATEMENTS.len());
        if allowed(STATEMENTS[i].sql) {
            return i;
        }
    };
    let values_for = |rng: &mut StdRng, st: &Stmt| -> Vec<Option<i64>> {
        (0..st.params)
            .map(|i| {
                if rng.gen_ratio(1, 12) {
                    None
                } else {
                    Some(param(rng, st, i, base))
                }
            })
            .collect()
    };
    match rng.gen_range(0..100) {
        0..=29 => {
            let st = &STATEMENTS[stmt_at(rng)];
            let params: Vec<i64> = (0..st.params).map(|i| param(rng, st, i, base)).collect();
            model.after_table = uses_table(st.sql);
            // Reads that cannot fail (a failed one leaves FOUND_ROWS() as it was). After
            // SHOW WARNINGS a server's FOUND_ROWS() is its own idea (3, its column count, where
            // the proxy that answered it says its row count): not asked.
            model.queried |= st.sql.ends_with("ORDER BY k") || st.sql.contains("FROM a ORDER");
            if st.sql.contains("WARNINGS") {
                model.queried = false;
            }
            vec![Cmd::Query(literal(st, &params))]
        }
        30..=37 => {
            // Several statements in one COM_QUERY.
            let n = rng.gen_range(2..4);
            let parts: Vec<String> = (0..n)
                .map(|_| {
                    let st = loop {
                        let st = &STATEMENTS[stmt_at(rng)];
                        if !bare_only(st.sql) {
                            break st;
                        }
                    };
                    let params: Vec<i64> =
                        (0..st.params).map(|i| param(rng, st, i, base)).collect();
                    literal(st, &params)
                })
                .collect();
            vec![Cmd::Query(parts.join("; "))]
        }
        38..=47 => {
            let slot = rng.gen_range(0..SLOTS);
            let i = stmt_at(rng);
            if query_only(STATEMENTS[i].sql) || model.cursor_texts.contains(&i) {
                return vec![Cmd::Ping];
            }
            model.slots[slot] = Some(i);
            vec![Cmd::Prepare(slot, STATEMENTS[i].sql)]
        }
        48..=65 => {
            let slot = rng.gen_range(0..SLOTS);
            let Some(i) = model.slots[slot] else {
                return vec![Cmd::Ping];
            };
            let st = &STATEMENTS[i];
            let mut values = values_for(rng, st);
            let mut long = Vec::new();
            let mut cmds = Vec::new();
            // Long data goes where applications send it: into a BLOB.
            if st.sql.contains("(v, b)") && !model.executed[slot] && rng.gen_ratio(1, 2) {
                // With a NULL beside it, MariaDB 10.11 stores bytes of its own memory in the
                // BLOB instead of the long data: never NULL here.
                values[0] = Some(rng.gen_range(0..100));
                let p = 1;
                values[p] = None;
                long.push(p);
                for _ in 0..rng.gen_range(1..3) {
                    let data: Vec<u8> = format!("{}", rng.gen_range(1..9)).into_bytes();
                    cmds.push(Cmd::LongData(slot, p as u16, data));
                }
            }
            // A question about the last statement is the proxy's to answer, but not through a
            // cursor: that one the held connection answers. Nor on a text another slot of
            // the session holds, or prepares later: a client's second prepare of a text
            // replaces the server statement the first one's cursor is on (a documented
            // difference).
            let cursor = st.select
                && !bare_only(st.sql)
                && model.slots.iter().filter(|s| **s == Some(i)).count() == 1
                && rng.gen_ratio(1, 3);
            if cursor {
                model.cursor_texts.push(i);
            }
            cmds.push(Cmd::Execute {
                slot,
                values,
                types: true,
                cursor,
                long,
            });
            cmds
        }
        66..=70 => {
            let slot = rng.gen_range(0..SLOTS);
            let Some(i) = model.slots[slot] else {
                return vec![Cmd::Ping];
            };
            let st = &STATEMENTS[i];
            let values = values_for(rng, st);
            // A re-execution without the types (drivers send them once).
            vec![Cmd::Execute {
                slot,
                values,
                types: false,
                cursor: false,
                long: Vec::new(),
            }]
        }
        71..=75 => vec![Cmd::Fetch(rng.gen_range(0..SLOTS), rng.gen_range(1..4))],
        76..=77 => vec![Cmd::Reset(rng.gen_range(0..SLOTS))],
        78..=80 => {
            let slot = rng.gen_range(0..SLOTS);
            vec![Cmd::Close(slot)]
        }
        81..=84 => {
            // Prepare and execute in one write, the way MariaDB Connector/J pipelines them.
            let slot = rng.gen_range(0..SLOTS);
            let i = stmt_at(rng);
            if query_only(STATEMENTS[i].sql) || model.cursor_texts.contains(&i) {
                return vec![Cmd::Ping];
            }
            model.slots[slot] = Some(i);
            let st = &STATEMENTS[i];
            vec![
                Cmd::Prepare(slot, st.sql),
                Cmd::ExecuteLast(values_for(rng, st)),
            ]
        }
        85..=86 => vec![Cmd::Ping],
        87..=88 => vec![Cmd::InitDb(if rng.gen_ratio(1, 3) {
            "nosuchdb"
        } else {
            DB
        })],
        89..=90 => vec![Cmd::SetOption(rng.gen_range(0..2))],
        91..=92 => vec![Cmd::FieldList(if rng.gen_bool(0.5) { "t" } else { "a" })],
        93..=95 => {
            model.queried = false;
            vec![Cmd::ResetConnection]
        }
        96 => vec![Cmd::Unknown(0x40)],
        _ => {
            // Close then use the closed statement.
            let slot = rng.gen_range(0..SLOTS);
            vec![Cmd::Close(slot), Cmd::Reset(slot)]
        }
    }
}

/// Normalizes a side's answer: the statement id of a prepare OK, and `(id)` in error
/// messages.
fn normalize(answer: &mut [Packet], cmd: &Cmd, side: &mut Side, tracked: bool) {
    if let (Cmd::Prepare(slot, _), Some(first)) = (cmd, answer.first_mut()) {
        if first.1[0] == 0 && first.1.len() >= 9 {
            let id = u32::from_le_bytes(first.1[1..5].try_into().unwrap());
            if side.ids.len() <= *slot {
                side.ids.resize(*slot + 1, None);
            }
            side.ids[*slot] = Some(id);
            first.1[1..5].copy_from_slice(&[0; 4]);
        } else if side.ids.len() > *slot {
            side.ids[*slot] = None;
        }
    }
    let id = match (cmd, slot_of(cmd)) {
        (Cmd::Prepare(..), _) | (_, None) => None,
        (_, Some(slot)) => Some(side.id(slot)),
    };
    for p in answer.iter_mut() {
        sort_session_state(&mut p.1, tracked);
    }
    if let Some(id) = id {
        let from = format!("({id})");
        for p in answer.iter_mut() {
            if p.1.first() == Some(&0xFF) {
                let text = String::from_utf8_lossy(&p.1).replace(&from, "(ID)");
                p.1 = text.into_bytes();
            }
        }
    }
}

/// The entries of an OK packet's session state information, sorted: a server lists the
/// variables it tracks in the order of its own table of them, which differs between a
/// tracking list and `*` (the proxy's connections track `*`); clients take them as a set.
fn sort_session_state(p: &mut Vec<u8>, tracked: bool) {
    if !tracked || p.first() != Some(&0x00) {
        return;
    }
    if let Some(sorted) = sorted_state(p) {
        *p = sorted;
    }
}

/// A length-encoded integer, or None past the end.
fn lenenc_at(p: &[u8], at: &mut usize) -> Option<usize> {
    let n = match *p.get(*at)? {
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        b => {
            *at += 1;
            return Some(usize::from(b));
        }
    };
    let bytes = p.get(*at + 1..*at + 1 + n)?;
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(bytes);
    *at += 1 + n;
    usize::try_from(u64::from_le_bytes(v)).ok()
}

/// An OK packet (with session tracking) with its state entries sorted; None for anything
/// that does not read as one (a binary row also starts with 0x00).
fn sorted_state(p: &[u8]) -> Option<Vec<u8>> {
    let mut at = 1;
    lenenc_at(p, &mut at)?;
    lenenc_at(p, &mut at)?;
    let status = u16::from_le_bytes([*p.get(at)?, *p.get(at + 1)?]);
    if status & 0x4000 == 0 {
        return None;
    }
    at += 4;
    let info = lenenc_at(p, &mut at)?;
    at += info;
    let start = at;
    let total = lenenc_at(p, &mut at)?;
    let body = at;
    if body + total != p.len() {
        return None;
    }
    let mut entries = Vec::new();
    while at < p.len() {
        let from = at;
        at += 1;
        let n = lenenc_at(p, &mut at)?;
        at += n;
        entries.push(p.get(from..at)?.to_vec());
    }
    entries.sort();
    let mut out = p[..body].to_vec();
    let _ = start;
    for e in entries {
        out.extend_from_slice(&e);
    }
    Some(out)
}

fn show(answer: &[Packet]) -> Vec<String> {
    answer
        .iter()
        .map(|(seq, p)| {
            let text: String = p
                .iter()
                .map(|&b| match b {
                    b' '..=b'~' => (b as char).to_string(),
                    _ => format!("\\x{b:02x}"),
                })
                .collect();
            format!("{seq}:{text}")
        })
        .collect()
}

struct Session {
    direct: Conn,
    proxy: Conn,
    d: Side,
    p: Side,
    model: Model,
    said: Vec<String>,
}

fn open_session(rng: &mut StdRng, proxy_port: u16) -> Session {
    let (direct, _) = servers();
    let mut caps = codec::CLIENT_LONG_PASSWORD
        | codec::CLIENT_LONG_FLAG
        | codec::CLIENT_PROTOCOL_41
        | codec::CLIENT_TRANSACTIONS
        | codec::CLIENT_SECURE_CONNECTION
        | codec::CLIENT_MULTI_STATEMENTS
        | codec::CLIENT_MULTI_RESULTS
        | codec::CLIENT_PS_MULTI_RESULTS
        | codec::CLIENT_PLUGIN_AUTH;
    // Asked for, but the proxy does not offer it: both sides end up without it.
    if rng.gen_bool(0.5) {
        caps |= codec::CLIENT_DEPRECATE_EOF;
    }
    // UPDATE reports rows matched rather than changed.
    if rng.gen_bool(0.3) {
        caps |= codec::CLIENT_FOUND_ROWS;
    }
    if rng.gen_bool(0.3) {
        caps |= codec::CLIENT_SESSION_TRACK;
    }
    // The proxy first: the server is then asked for what the proxy agreed to, so that both
    // sides speak the same protocol.
    let p = connect(proxy_port, caps);
    let d = connect(direct.primary_port(), p.caps);
    assert_eq!(
        d.caps | 1,
        p.caps | 1,
        "MariaDB clears CLIENT_MYSQL; nothing else differs"
    );
    Session {
        direct: d,
        proxy: p,
        d: Side::default(),
        p: Side::default(),
        model: Model {
            slots: vec![None; SLOTS],
            queried: false,
            after_table: false,
            executed: vec![false; SLOTS],
            cursor_texts: Vec::new(),
        },
        said: vec![format!("caps {caps:#x}")],
    }
}

/// Every round of every session, in order, written out when the test fails.
static LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn write_log(seed: u64) -> String {
    let path = std::env::temp_dir().join(format!("mysql_differential-{seed}.log"));
    let log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    let _ = std::fs::write(&path, log.join("\n"));
    path.display().to_string()
}

/// Sends `cmds` in one write to each side, reads the answers, and compares them.
fn round(sess: &mut Session, cmds: &[Cmd], seed: u64, n: usize) {
    for (conn, side) in [(&mut sess.direct, &sess.d), (&mut sess.proxy, &sess.p)] {
        let mut bytes = Vec::new();
        for c in cmds {
            bytes.extend_from_slice(&frame(0, &payload(c, side)));
        }
        conn.s.write_all(&bytes).unwrap();
    }
    sess.said.push(format!("{cmds:?}"));
    LOG.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{n}: {cmds:?}"));
    for cmd in cmds {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let ra = sess.direct.answer(cmd.shape(), &mut a);
        let rb = sess.proxy.answer(cmd.shape(), &mut b);
        let tracked = sess.proxy.caps & codec::CLIENT_SESSION_TRACK != 0;
        normalize(&mut a, cmd, &mut sess.d, tracked);
        normalize(&mut b, cmd, &mut sess.p, tracked);
        if ra.is_err() || rb.is_err() || a != b {
            if std::env::var("DIFF_TRX").is_ok() {
                let (_, proxied) = servers();
                eprintln!(
                    "proxied trx: {:?}",
                    proxied.query(
                        0,
                        "SELECT trx_id, trx_state, trx_mysql_thread_id, trx_query, trx_rows_locked, trx_lock_structs FROM information_schema.innodb_trx"
                    )
                );
                eprintln!(
                    "proxied status: {:?}",
                    proxied.query(0, "SHOW ENGINE INNODB STATUS")
                );
            }
            panic!(
                "session {n} (seed {seed}): answers differ at {cmd:?}\n direct: {ra:?} {:#?}\n \
                 proxy:  {rb:?} {:#?}\nsession so far:\n  {}\nall sessions: {}",
                show(&a),
                show(&b),
                sess.said.join("\n  "),
                write_log(seed)
            );
        }
    }
    // A command with no answer, last in its write: make sure both sides took it before the
    // next round (a ping answers after it).
    if cmds.last().map(Cmd::shape) == Some(Shape::None) {
        round(sess, &[Cmd::Ping], seed, n);
    }
}

fn seed() -> u64 {
    match std::env::var("SWITCHYARD_PROP_SEED") {
        Ok(s) => s.parse().expect("SWITCHYARD_PROP_SEED is a number"),
        Err(_) => rand::random(),
    }
}

fn table(c: &MariaCluster, sql: &str) -> Vec<Vec<String>> {
    c.query_db(0, Some(DB), sql).unwrap()
}

#[test]
fn raw_commands_are_answered_as_the_server_answers_them() {
    differential("transaction", SESSIONS);
}

/// The same in session mode: each client keeps its connection, so only the proxy's own
/// answers and rewriting can differ.
#[test]
fn raw_commands_in_session_mode_are_answered_as_the_server_answers_them() {
    differential("session", SESSIONS / 3);
}

fn differential(pool_mode: &str, sessions: usize) {
    let _serial = serial();
    let seed = seed();
    eprintln!("mysql_differential ({pool_mode} mode) seed {seed} (SWITCHYARD_PROP_SEED to repeat)");
    let (direct, proxied) = servers();
    let dir = tempfile::tempdir().unwrap();
    let server = start_proxy_in(dir.path(), 3, pool_mode);
    let port = server.my_addr.expect("a MySQL listener").port();
    run_sessions(None, seed, port, sessions, OPEN);
    // Give the proxy a moment to hand back the last connections, then compare the data.
    std::thread::sleep(Duration::from_millis(300));
    compare_tables(direct, proxied, None, seed);
}

/// Three lanes of random sessions side by side through one proxy (two open at a time in
/// each, a pool of six per server), each lane on tables and a user lock of its own: what a
/// session of one lane leaves on a connection shows up in another lane's answers, and the
/// connections parked by clients of one lane are taken by clients of the others.
#[test]
fn sessions_in_lanes_side_by_side_answer_as_the_server_does() {
    const LANES: usize = 3;
    const LANE_OPEN: usize = 2;
    let _serial = serial();
    let seed = seed();
    eprintln!("mysql_differential (lanes) seed {seed} (SWITCHYARD_PROP_SEED to repeat)");
    let (direct, proxied) = servers();
    for c in [direct, proxied] {
        for lane in 0..LANES {
            c.query_db(0, Some(DB), &in_lane(LANE_SETUP, Some(lane)))
                .unwrap();
        }
        c.wait_caught_up(Duration::from_secs(30)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start_proxy(dir.path(), LANES * LANE_OPEN);
    let port = server.my_addr.expect("a MySQL listener").port();
    std::thread::scope(|s| {
        let lanes: Vec<_> = (0..LANES)
            .map(|lane| {
                s.spawn(move || run_sessions(Some(lane), seed, port, SESSIONS / LANES, LANE_OPEN))
            })
            .collect();
        for l in lanes {
            if let Err(e) = l.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    for lane in 0..LANES {
        compare_tables(direct, proxied, Some(lane), seed);
    }
}

/// The tables of a lane, made anew (see [`in_lane`]).
const LANE_SETUP: &str = "DROP TABLE IF EXISTS t, a; \
                          CREATE TABLE t (k INT PRIMARY KEY, v INT NOT NULL); \
                          CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, v INT, b BLOB); \
                          INSERT INTO t VALUES (1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)";

/// At the end, both servers hold the same rows (in a lane's tables, for a lane).
fn compare_tables(direct: &MariaCluster, proxied: &MariaCluster, lane: Option<usize>, seed: u64) {
    for sql in [
        "SELECT k, v FROM t ORDER BY k",
        "SELECT id, v, b FROM a ORDER BY id",
    ] {
        let sql = in_lane(sql, lane);
        assert_eq!(
            table(direct, &sql),
            table(proxied, &sql),
            "seed {seed}: the servers differ at the end: {sql} (all sessions: {})",
            write_log(seed)
        );
    }
}

/// `sessions` random sessions, `open` at a time, interleaved at random, each sent to the
/// direct server and through the proxy on `port` and compared answer by answer.
fn run_sessions(lane: Option<usize>, seed: u64, port: u16, sessions: usize, open_at_once: usize) {
    let (_, proxied) = servers();
    // Each lane its own stream of the one seed.
    let mut rng = StdRng::seed_from_u64(lane.map_or(seed, |l| seed.wrapping_add(l as u64 + 1)));
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut open: Vec<(usize, Session, usize)> = Vec::new();
    let mut watch = Watch::new(proxied);
    let mut last = None;
    let mut started = 0;
    // Session numbers (in the log and the panic message) say the lane: 1000 per lane.
    let first = lane.map_or(0, |l| 1000 * (l + 1));
    while (started < sessions || !open.is_empty()) && Instant::now() < deadline {
        if open.len() < open_at_once && started < sessions {
            let mut sess = open_session(&mut rng, port);
            sess.d.lane = lane;
            sess.p.lane = lane;
            assert_eq!(
                show(std::slice::from_ref(&sess.direct.login)),
                show(std::slice::from_ref(&sess.proxy.login)),
                "the logins' OK packets differ"
            );
            open.push((first + started, sess, rng.gen_range(1..COMMANDS)));
            started += 1;
            continue;
        }
        let at = rng.gen_range(0..open.len());
        if last != Some(open[at].0) {
            // Another session's writes are on the replica before this one reads: the proxy
            // keeps a client's reads after its own writes (read_your_writes), not after
            // everyone's, where the direct server shows everyone's at once.
            watch.caught_up();
            last = Some(open[at].0);
        }
        let (n, sess, left) = &mut open[at];
        let cmds = random_cmds(&mut rng, &mut sess.model, (*n as i64 % 50) * 10);
        round(sess, &cmds, seed, *n);
        *left -= 1;
        if *left == 0 {
            let (_, mut sess, _) = open.swap_remove(at);
            // COM_QUIT, as a client that is done says it (disconnects with a transaction
            // open are the property tests' business).
            for c in [&mut sess.direct, &mut sess.proxy] {
                let _ = c.s.write_all(&frame(0, &[0x01]));
                let _ = c.s.read(&mut [0u8; 1]);
            }
        }
    }
}

/// The proxied primary and its replica, to wait until the replica has everything.
struct Watch {
    primary: Conn,
    replica: Conn,
}

impl Watch {
    fn new(c: &MariaCluster) -> Watch {
        Watch {
            primary: connect(c.primary_port(), plain_caps()),
            replica: connect(c.replica_ports()[0], plain_caps()),
        }
    }

    fn caught_up(&mut self) {
        let deadline = Instant::now() + T;
        loop {
            let want = text_value(&run(&mut self.primary, "SELECT @@gtid_binlog_pos"));
            let have = text_value(&run(&mut self.replica, "SELECT @@gtid_slave_pos"));
            if switchyard::testkit::mariadb::gtid_covers(&have, &want).unwrap_or(false) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replica never caught up: {have} < {want}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The first column of the only row of a text result set.
fn text_value(answer: &[Packet]) -> String {
    let row = &answer[answer.len() - 2].1;
    let mut at = 0;
    let n = lenenc(row, &mut at) as usize;
    String::from_utf8_lossy(&row[at..at + n]).into_owned()
}

/// One statement through the raw client: its answer.
fn run(c: &mut Conn, sql: &str) -> Vec<Packet> {
    let cmd = Cmd::Query(sql.to_string());
    c.s.write_all(&frame(0, &payload(&cmd, &Side::default())))
        .unwrap();
    let mut out = Vec::new();
    c.answer(cmd.shape(), &mut out).unwrap();
    out
}

/// With autocommit off, a statement that fails still opens a transaction (and keeps the
/// locks it took): the ERR says nothing of it. The proxy must keep the client's connection
/// for that transaction and report it, never give it to another client, whose connection
/// set-up (`SET autocommit = 1`) would commit it, or leave it idle in the pool holding locks.
#[test]
fn a_failed_statement_with_autocommit_off_keeps_its_transaction() {
    let _serial = serial();
    let (direct, proxied) = servers();
    for c in [direct, proxied] {
        c.query_db(
            0,
            Some(DB),
            "CREATE TABLE IF NOT EXISTS u (k INT PRIMARY KEY); INSERT IGNORE INTO u VALUES (1)",
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    // One connection per backend: a connection given back is the next client's.
    let server = start_proxy(dir.path(), 1);
    let port = server.my_addr.expect("a MySQL listener").port();
    let caps = codec::CLIENT_LONG_PASSWORD
        | codec::CLIENT_LONG_FLAG
        | codec::CLIENT_PROTOCOL_41
        | codec::CLIENT_TRANSACTIONS
        | codec::CLIENT_SECURE_CONNECTION
        | codec::CLIENT_MULTI_RESULTS
        | codec::CLIENT_PLUGIN_AUTH;
    let mut d = connect(direct.primary_port(), caps);
    let mut p = connect(port, caps);
    for sql in [
        "SET autocommit = 0",
        // k = 2 goes in, k = 1 is there: the statement fails and is undone, its
        // transaction stays open.
        "INSERT INTO u VALUES (2), (1)",
    ] {
        assert_eq!(show(&run(&mut d, sql)), show(&run(&mut p, sql)), "{sql}");
    }
    let ping = |c: &mut Conn| {
        c.s.write_all(&frame(0, &[0x0E])).unwrap();
        let mut out = Vec::new();
        c.answer(Shape::One, &mut out).unwrap();
        show(&out)
    };
    let (pd, pp) = (ping(&mut d), ping(&mut p));
    assert_eq!(pd, pp, "COM_PING's status after the failed statement");
    // Another client through the proxy: it must not get (and commit) that transaction.
    let mut other = connect(port, caps);
    let seen = run(&mut other, "SELECT @@in_transaction");
    assert_eq!(
        show(&seen)[3],
        "4:\\x010",
        "another client sees a transaction of its own"
    );
    drop(other);
    // The client's transaction is still its own: open, on its connection.
    for sql in [
        "SELECT @@in_transaction",
        "ROLLBACK",
        "SELECT @@in_transaction",
    ] {
        assert_eq!(show(&run(&mut d, sql)), show(&run(&mut p, sql)), "{sql}");
    }
}

fn plain_caps() -> u64 {
    codec::CLIENT_LONG_PASSWORD
        | codec::CLIENT_LONG_FLAG
        | codec::CLIENT_PROTOCOL_41
        | codec::CLIENT_TRANSACTIONS
        | codec::CLIENT_SECURE_CONNECTION
        | codec::CLIENT_MULTI_RESULTS
        | codec::CLIENT_PLUGIN_AUTH
}

/// The ERR of an answer: (code, message).
fn err_in(answer: &[Packet]) -> Option<(u16, String)> {
    let p = &answer.first()?.1;
    (p.first() == Some(&0xFF)).then(|| {
        let code = u16::from_le_bytes([p[1], p[2]]);
        (code, String::from_utf8_lossy(&p[9..]).into_owned())
    })
}

/// State made on a replica in a read-only transaction (a user variable) pins the client to
/// that replica's connection. A write after the transaction must not be sent there: the
/// proxy refuses it, says why, and the client's reset ends the pin.
#[test]
fn pinned_to_a_replica_writes_are_refused() {
    let _serial = serial();
    let (_, proxied) = servers();
    proxied
        .query_db(
            0,
            Some(DB),
            "CREATE TABLE IF NOT EXISTS r (k INT PRIMARY KEY); INSERT IGNORE INTO r VALUES (1)",
        )
        .unwrap();
    proxied.wait_caught_up(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start_proxy(dir.path(), 2);
    let port = server.my_addr.expect("a MySQL listener").port();
    let mut c = connect(port, plain_caps());
    let replica_id = proxied.value(1, "SELECT @@server_id").unwrap();
    for sql in ["START TRANSACTION READ ONLY", "SET @u = 1"] {
        assert_eq!(err_in(&run(&mut c, sql)), None, "{sql}");
    }
    let on = run(&mut c, "SELECT @@server_id");
    assert_eq!(
        show(&on)[3],
        format!("4:\\x0{}{replica_id}", replica_id.len()),
        "the read-only transaction runs on the replica"
    );
    assert_eq!(err_in(&run(&mut c, "COMMIT")), None);
    let refused = err_in(&run(&mut c, "DELETE FROM r WHERE k = 1")).expect("an ERR");
    assert_eq!(refused.0, 1290);
    assert!(
        refused
            .1
            .starts_with("switchyard: this session keeps state"),
        "{refused:?}"
    );
    // Also a write with a primary hint (a hint routes; it does not make a write movable).
    let refused = err_in(&run(
        &mut c,
        "/* switchyard:primary */ DELETE FROM r WHERE k = 1",
    ))
    .expect("an ERR for the hinted write");
    assert_eq!(refused.0, 1290, "{refused:?}");
    assert!(
        refused
            .1
            .starts_with("switchyard: this session keeps state"),
        "sent to the replica: {refused:?}"
    );
    assert_eq!(
        proxied
            .value(0, &format!("SELECT count(*) FROM {DB}.r"))
            .unwrap(),
        "1",
        "the write did not run"
    );
    // Reads still go where the state is.
    assert_eq!(show(&run(&mut c, "SELECT @u"))[3], "4:\\x011");
    // COM_RESET_CONNECTION ends the session's state, and the pin.
    c.s.write_all(&frame(0, &[0x1F])).unwrap();
    let mut out = Vec::new();
    c.answer(Shape::One, &mut out).unwrap();
    assert_eq!(out[0].1[0], 0, "reset: {:?}", show(&out));
    assert_eq!(err_in(&run(&mut c, "DELETE FROM r WHERE k = 1")), None);
    assert_eq!(
        proxied
            .value(0, &format!("SELECT count(*) FROM {DB}.r"))
            .unwrap(),
        "0"
    );
}

/// `LAST_INSERT_ID()` is the client's own wherever its statement runs: prepared, in a
/// multi-statement, on a connection another client inserted on last.
#[test]
fn last_insert_id_is_the_clients_own_in_every_form() {
    let _serial = serial();
    // A table of its own: the random test compares `a` on both servers.
    let (_, proxied) = servers();
    proxied
        .query_db(
            0,
            Some(DB),
            "CREATE TABLE IF NOT EXISTS li (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One connection per backend: every client's statements run on the same connection.
    let server = start_proxy(dir.path(), 1);
    let port = server.my_addr.expect("a MySQL listener").port();
    let caps = plain_caps() | codec::CLIENT_MULTI_STATEMENTS;
    let mut a = connect(port, caps);
    let mut b = connect(port, caps);
    assert_eq!(err_in(&run(&mut a, "INSERT INTO li (v) VALUES (1)")), None);
    let value = |answer: &[Packet]| show(answer)[3].clone();
    // b inserted nothing: 0, in each form.
    assert_eq!(value(&run(&mut b, "SELECT LAST_INSERT_ID()")), "4:\\x010");
    let multi = run(&mut b, "SELECT LAST_INSERT_ID() + 0; SELECT 1");
    assert_eq!(value(&multi), "4:\\x010");
    b.s.write_all(&frame(
        0,
        &payload(
            &Cmd::Prepare(0, "SELECT LAST_INSERT_ID() + 0"),
            &Side::default(),
        ),
    ))
    .unwrap();
    let mut prepared = Vec::new();
    b.answer(Shape::Prepare, &mut prepared).unwrap();
    let mut side = Side::default();
    normalize(&mut prepared, &Cmd::Prepare(0, ""), &mut side, false);
    let exec = Cmd::Execute {
        slot: 0,
        values: vec![],
        types: true,
        cursor: false,
        long: vec![],
    };
    b.s.write_all(&frame(0, &payload(&exec, &side))).unwrap();
    let mut out = Vec::new();
    b.answer(Shape::Results, &mut out).unwrap();
    assert_eq!(
        out[3].1,
        vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        "{:?}",
        show(&out)
    );
    // And a's is still a's.
    let mine = value(&run(&mut a, "SELECT LAST_INSERT_ID() + 0"));
    assert_ne!(mine, "4:\\x010");
}

/// A prepared statement runs on whichever connection the client gets, where the server
/// statement may be shared with other clients of the same text. MariaDB 10.11 stores bytes of
/// its own memory instead of long data (COM_STMT_SEND_LONG_DATA) in a parameter an earlier
/// execute of that server statement bound as a number: one client's execute must not make
/// another's BLOB garbage.
#[test]
fn long_data_lands_whatever_another_client_executed_before() {
    let _serial = serial();
    let (_, proxied) = servers();
    proxied
        .query_db(
            0,
            Some(DB),
            "CREATE TABLE IF NOT EXISTS ld (id INT AUTO_INCREMENT PRIMARY KEY, v INT, b BLOB)",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One connection per backend: both clients' statements run on the same connection.
    let server = start_proxy(dir.path(), 1);
    let port = server.my_addr.expect("a MySQL listener").port();
    let sql = "INSERT INTO ld (v, b) VALUES (?, ?)";
    let go = |c: &mut Conn, side: &mut Side, cmd: Cmd| {
        c.s.write_all(&frame(0, &payload(&cmd, side))).unwrap();
        let mut out = Vec::new();
        c.answer(cmd.shape(), &mut out).unwrap();
        normalize(&mut out, &cmd, side, false);
        assert_ne!(
            out.first().map(|p| p.1[0]),
            Some(0xFF),
            "{cmd:?}: {:?}",
            show(&out)
        );
    };
    let (mut a, mut b) = (connect(port, plain_caps()), connect(port, plain_caps()));
    let (mut sa, mut sb) = (Side::default(), Side::default());
    // Both prepare: the connection keeps one server statement for the text, the last one
    // prepared, which the first client's execute then runs with numbers.
    go(&mut a, &mut sa, Cmd::Prepare(0, sql));
    go(&mut b, &mut sb, Cmd::Prepare(0, sql));
    let numbers = Cmd::Execute {
        slot: 0,
        values: vec![Some(1), Some(2)],
        types: true,
        cursor: false,
        long: vec![],
    };
    go(&mut a, &mut sa, numbers);
    go(&mut b, &mut sb, Cmd::LongData(0, 1, b"7".to_vec()));
    go(&mut b, &mut sb, Cmd::LongData(0, 1, b"7".to_vec()));
    let streamed = Cmd::Execute {
        slot: 0,
        values: vec![Some(3), None],
        types: true,
        cursor: false,
        long: vec![1],
    };
    go(&mut b, &mut sb, streamed);
    // And the first client's statement still works after it.
    let again = Cmd::Execute {
        slot: 0,
        values: vec![Some(4), Some(5)],
        types: true,
        cursor: false,
        long: vec![],
    };
    go(&mut a, &mut sa, again);
    let rows = proxied
        .query_db(0, Some(DB), "SELECT v, b FROM ld ORDER BY id DESC LIMIT 3")
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec!["4".to_string(), "5".to_string()],
            vec!["3".to_string(), "77".to_string()],
            vec!["1".to_string(), "2".to_string()],
        ]
    );
}

/// A client that prepares, executes and closes the same statement again and again (Go's
/// database/sql does it for every parameterised query) must not leave server statements
/// behind on the connection it uses: a server refuses every prepare, for every client, past
/// `max_prepared_stmt_count`.
#[test]
fn preparing_the_same_statement_again_leaves_no_server_statement_behind() {
    let _serial = serial();
    let (_, proxied) = servers();
    let dir = tempfile::tempdir().unwrap();
    let server = start_proxy(dir.path(), 1);
    let port = server.my_addr.expect("a MySQL listener").port();
    let count = || -> i64 {
        proxied
            .value(
                0,
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT'",
            )
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut c = connect(port, plain_caps());
    let before = count();
    for _ in 0..50 {
        let mut side = Side::default();
        for cmd in [
            Cmd::Prepare(0, "UPDATE t SET v = v WHERE k = ?"),
            Cmd::Execute {
                slot: 0,
                values: vec![Some(1)],
                types: true,
                cursor: false,
                long: vec![],
            },
            Cmd::Close(0),
        ] {
            c.s.write_all(&frame(0, &payload(&cmd, &side))).unwrap();
            let mut out = Vec::new();
            c.answer(cmd.shape(), &mut out).unwrap();
            normalize(&mut out, &cmd, &mut side, false);
        }
    }
    // A ping makes sure the last close went through.
    c.s.write_all(&frame(0, &[0x0E])).unwrap();
    c.answer(Shape::One, &mut Vec::new()).unwrap();
    let after = count();
    assert!(
        after - before <= 2,
        "server statements went from {before} to {after} for one statement prepared 50 times"
    );
}

/// `FOUND_ROWS()` after a multi-statement string that holds a `SELECT` and another
/// statement's `INTO` (`INSERT INTO`): not a `SELECT ... INTO`, so what the proxy knows of the
/// client's `FOUND_ROWS()` stays the proxy's to answer. Here the proxy answered
/// `SELECT ROW_COUNT()` itself (which makes `FOUND_ROWS()` 1 on a server); the held
/// connection's server still says 0. Seen failing (seed 777348479134688428 of the random
/// test) when any string with both words made the server's value the client's.
#[test]
fn found_rows_after_insert_into_beside_a_select_is_the_clients() {
    let _serial = serial();
    let (direct, _) = servers();
    let dir = tempfile::tempdir().unwrap();
    let server = start_proxy(dir.path(), 2);
    let port = server.my_addr.expect("a MySQL listener").port();
    let caps = plain_caps() | codec::CLIENT_MULTI_STATEMENTS;
    let mut d = connect(direct.primary_port(), caps);
    let mut p = connect(port, caps);
    for c in [&mut d, &mut p] {
        run(c, &format!("USE {DB}"));
    }
    for step in [
        // A user variable pins the client to its connection.
        "SET @u = 1",
        // No rows: FOUND_ROWS() is 0 on both.
        "/* switchyard:primary */ SELECT k FROM t WHERE k > 100000",
        "PING",
        // After a COM_PING, the proxy answers ROW_COUNT() itself.
        "SELECT ROW_COUNT()",
        // The DROP fails: nothing after it runs.
        "DROP TEMPORARY TABLE no_such_tt; SELECT 1; INSERT INTO t VALUES (100001, 1)",
        "SELECT FOUND_ROWS()",
    ] {
        let (a, b) = if step == "PING" {
            let mut out = [Vec::new(), Vec::new()];
            for (c, o) in [&mut d, &mut p].into_iter().zip(out.iter_mut()) {
                c.s.write_all(&frame(0, &[0x0E])).unwrap();
                c.answer(Shape::One, o).unwrap();
            }
            let [a, b] = out;
            (a, b)
        } else {
            (run(&mut d, step), run(&mut p, step))
        };
        assert_eq!(show(&a), show(&b), "{step}");
    }
}

/// `FOUND_ROWS()` after a prepared `SELECT SQL_CALC_FOUND_ROWS ... LIMIT 1` whose connection
/// went back to the pool: what the statement counted (3), as a server says. Seen failing
/// (seed 6654803146634016238 of the lanes test: 1 where the server said 14) when only text
/// statements were looked at for SQL_CALC_FOUND_ROWS.
#[test]
fn found_rows_after_a_prepared_calc_found_rows_select_is_what_it_counted() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = start_proxy(dir.path(), 2);
    let port = server.my_addr.expect("a MySQL listener").port();
    let mut sess = open_session(&mut StdRng::seed_from_u64(0), port);
    let prepare = Cmd::Prepare(
        0,
        "SELECT SQL_CALC_FOUND_ROWS x FROM \
         (SELECT 1 AS x UNION ALL SELECT 2 UNION ALL SELECT 3) AS d ORDER BY x LIMIT 1",
    );
    let execute = Cmd::Execute {
        slot: 0,
        values: Vec::new(),
        types: false,
        cursor: false,
        long: Vec::new(),
    };
    // (Two rounds: an execute names the id its prepare's answer gave.)
    round(&mut sess, &[prepare], 0, 0);
    round(&mut sess, &[execute], 0, 0);
    let (a, b) = (
        run(&mut sess.direct, "SELECT FOUND_ROWS()"),
        run(&mut sess.proxy, "SELECT FOUND_ROWS()"),
    );
    assert_eq!(text_value(&a), "3", "the server's FOUND_ROWS()");
    assert_eq!(text_value(&b), "3", "the proxy's FOUND_ROWS()");
}
