//! Hostile and broken MySQL clients against the proxy in front of real MariaDB servers, over
//! raw TCP: malformed handshake responses, packets with a wrong sequence id, length prefixes
//! over `general.max_message_bytes`, garbage after login, clients that trickle one byte a
//! second or send nothing (`client_login_timeout`), a wrong password (1045 naming the user),
//! too many clients (1040). Each must get a clear ERR or a close within the configured
//! bounds; other clients keep working; no backend connection is left behind (the pools'
//! open connections all idle again, nothing open on the servers beyond them and the health
//! checks, no transaction left open).
//!
//! The raw client here speaks just enough of the protocol (HandshakeResponse41 with
//! `mysql_native_password`, COM_QUERY with classic EOF packets) to log in and run a
//! statement; the `mariadb` CLI and PyMySQL check what real clients see.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use switchyard::app::Server;
use switchyard::config::Config;
use switchyard::mysql::{auth, codec};
use switchyard::testkit::mariadb::{self, MariaCluster};

/// `client_login_timeout` of the proxies here.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(1);
/// `general.max_message_bytes` of the proxies here.
const MAX_MESSAGE: usize = 65536;
/// Bound on any single read in these tests.
const T: Duration = Duration::from_secs(10);

fn cluster() -> &'static MariaCluster {
    static C: OnceLock<MariaCluster> = OnceLock::new();
    C.get_or_init(|| MariaCluster::start(1).expect("start MariaDB"))
}

struct Proxy {
    server: Option<Server>,
    port: u16,
    db: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl Proxy {
    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// Per backend (primary first): (connections open, idle), summed over workers.
    fn pool_counts(&self) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        for w in self.server().shared.live_workers() {
            for c in w.my.clusters.load().of_database(&self.db) {
                for (i, p) in c.pools.iter().enumerate() {
                    let (open, idle) = p.status();
                    if out.len() <= i {
                        out.resize(i + 1, (0, 0));
                    }
                    out[i].0 += open;
                    out[i].1 += idle;
                }
            }
        }
        out
    }

    /// Client connections the proxy counts as open.
    fn clients(&self) -> usize {
        self.server()
            .shared
            .clients
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Nothing is left behind: within a few seconds no client is counted, every pooled
    /// connection is idle, each server has no connection of the proxy's user beyond the
    /// pool's and the health check's, and none of them is inside a transaction.
    fn assert_nothing_leaked(&self, what: &str) {
        let c = cluster();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let counts = self.pool_counts();
            let mut problems = Vec::new();
            if self.clients() != 0 {
                problems.push(format!("{} clients still counted", self.clients()));
            }
            for (i, &(open, idle)) in counts.iter().enumerate() {
                if open != idle {
                    problems.push(format!("backend {i}: {open} open, {idle} idle"));
                }
                let on_server = threads_of(c, i, &backend_user(&self.db));
                // The pool's connections plus the health check's.
                if on_server > open + 1 {
                    problems.push(format!(
                        "backend {i}: {on_server} server connections of the proxy, pool has {open}"
                    ));
                }
            }
            // Of this test's server user only: the other tests of the binary run beside it.
            let open_here = format!(
                "SELECT count(*) FROM information_schema.innodb_trx t \
                 JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id \
                 WHERE p.user = '{}'",
                backend_user(&self.db)
            );
            let trx = c.value(0, &open_here).unwrap();
            if trx != "0" {
                problems.push(format!("{trx} transactions open on the primary"));
            }
            if problems.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: left behind: {problems:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Connections of `user` on `node`.
fn threads_of(c: &MariaCluster, node: usize, user: &str) -> usize {
    c.value(
        node,
        &format!("SELECT count(*) FROM information_schema.processlist WHERE user = '{user}'"),
    )
    .unwrap()
    .parse()
    .unwrap()
}

/// The backend user of the proxy serving `db`: one per test, so that what is open on the
/// servers can be told apart from the other tests' proxies.
fn backend_user(db: &str) -> String {
    format!("sy_{db}")
}

fn proxy(db: &str, general: &str) -> Proxy {
    proxy_with(db, general, "")
}

/// [`proxy`] with more `[pool]` settings.
fn proxy_with(db: &str, general: &str, pool: &str) -> Proxy {
    let c = cluster();
    let text = format!(
        r#"
[general]
workers = 2
drain_timeout = "2s"
client_login_timeout = "{login}ms"
max_message_bytes = {MAX_MESSAGE}
{general}

[mysql]
listen = "127.0.0.1:0"

[health]
interval = "200ms"
timeout = "2s"

[pool]
size = 4
checkout_timeout = "5s"
{pool}

[[user]]
name = "app"
password = "app_pw"

[[cluster]]
name = "{db}"
protocol = "mysql"
database = "{db}"
primary = "127.0.0.1:{primary}"
replicas = ["127.0.0.1:{replica}"]
user = "{user}"
password = "switchyard_pw"
"#,
        user = backend_user(db),
        login = LOGIN_TIMEOUT.as_millis(),
        primary = c.primary_port(),
        replica = c.replica_ports()[0],
    );
    let cfg = Config::from_toml(&text).expect("valid config");
    let server = Server::start(cfg).expect("proxy starts");
    let port = server.my_addr.expect("mysql listener").port();
    std::thread::sleep(Duration::from_millis(600));
    Proxy {
        server: Some(server),
        port,
        db: db.to_string(),
    }
}

/// Database `db` with `sql` run in it, and the backend user of its proxy.
fn setup(db: &str, sql: &str) {
    let c = cluster();
    c.create_database(db).unwrap();
    c.query_db(0, Some(db), sql).unwrap();
    let user = backend_user(db);
    c.exec(
        0,
        &format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'switchyard_pw'; \
             GRANT {}, {} ON *.* TO '{user}'@'%'",
            mariadb::APP_PRIVILEGES,
            mariadb::PROXY_EXTRA_PRIVILEGES
        ),
    )
    .unwrap();
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
}

// ---- a raw client ----

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    codec::write_packet(&mut out, seq, payload);
    out.to_vec()
}

/// Read one packet: (sequence id, payload).
fn read_packet(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((h[3], body))
}

/// An ERR packet's code and message.
fn err_of(payload: &[u8]) -> Option<(u16, String)> {
    let e = codec::parse_err(payload).ok()?;
    Some((e.code, String::from_utf8_lossy(e.message).into_owned()))
}

/// Connect and read the proxy's handshake: (stream, scramble).
fn open(port: u16) -> (TcpStream, Vec<u8>) {
    try_open(port).expect("a handshake")
}

/// Connect and read the proxy's first packet: (stream, scramble), or the ERR it sent instead
/// of a handshake.
fn try_open(port: u16) -> Result<(TcpStream, Vec<u8>), (u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let (_, hs) = read_packet(&mut s).expect("a first packet");
    if let Some(e) = err_of(&hs) {
        return Err(e);
    }
    let h = codec::parse_handshake(&hs).expect("a valid handshake");
    Ok((s, h.scramble()))
}

const CAPS: u64 = codec::CLIENT_LONG_PASSWORD
    | codec::CLIENT_LONG_FLAG
    | codec::CLIENT_PROTOCOL_41
    | codec::CLIENT_TRANSACTIONS
    | codec::CLIENT_SECURE_CONNECTION
    | codec::CLIENT_MULTI_STATEMENTS
    | codec::CLIENT_MULTI_RESULTS
    | codec::CLIENT_PLUGIN_AUTH;

/// A HandshakeResponse41 payload for `user` / `password` (`mysql_native_password`).
fn response(scramble: &[u8], user: &str, password: &str, db: Option<&str>) -> Vec<u8> {
    let auth = auth::native_password_scramble(password.as_bytes(), scramble);
    let mut caps = CAPS;
    if db.is_some() {
        caps |= codec::CLIENT_CONNECT_WITH_DB;
    }
    let mut out = bytes::BytesMut::new();
    codec::put_handshake_response(
        &mut out,
        &codec::HandshakeResponse {
            caps: codec::ClientCaps {
                capabilities: caps,
                max_packet_size: 1 << 24,
                charset: 45,
            },
            user: user.as_bytes(),
            auth_response: &auth,
            database: db.map(str::as_bytes),
            auth_plugin: Some(b"mysql_native_password"),
            ..Default::default()
        },
    );
    out.to_vec()
}

/// Log in as app: the logged-in stream, or the ERR (code, message).
fn login(port: u16, db: &str) -> Result<TcpStream, (u16, String)> {
    let (mut s, scramble) = try_open(port)?;
    s.write_all(&frame(1, &response(&scramble, "app", "app_pw", Some(db))))
        .unwrap();
    let (_, p) = read_packet(&mut s).expect("login answer");
    match p.first() {
        Some(0x00) => Ok(s),
        _ => Err(err_of(&p).unwrap_or((0, format!("{p:?}")))),
    }
}

/// A length-encoded integer at `p[*at]`.
fn lenenc(p: &[u8], at: &mut usize) -> Option<u64> {
    let b = *p.get(*at)?;
    *at += 1;
    let n = match b {
        0xfb => return None,
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        b => return Some(u64::from(b)),
    };
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(p.get(*at..*at + n)?);
    *at += n;
    Some(u64::from_le_bytes(v))
}

/// Run one statement with COM_QUERY: its text rows, or the ERR (code, message). Expects
/// classic EOF packets (the proxy does not offer CLIENT_DEPRECATE_EOF).
fn query(s: &mut TcpStream, sql: &str) -> Result<Vec<Vec<Option<String>>>, (u16, String)> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    s.write_all(&frame(0, &p)).unwrap();
    let (_, first) = read_packet(s).expect("an answer");
    match first.first() {
        Some(0x00) => return Ok(Vec::new()),
        Some(0xff) => return Err(err_of(&first).unwrap()),
        _ => {}
    }
    let columns = lenenc(&first, &mut 0).unwrap();
    for _ in 0..columns {
        read_packet(s).unwrap();
    }
    let (_, eof) = read_packet(s).unwrap();
    assert_eq!(eof[0], 0xfe, "EOF after the column definitions");
    let mut rows = Vec::new();
    loop {
        let (_, p) = read_packet(s).unwrap();
        if p[0] == 0xfe && p.len() < 9 {
            return Ok(rows);
        }
        if p[0] == 0xff {
            return Err(err_of(&p).unwrap());
        }
        let mut at = 0;
        let mut row = Vec::new();
        for _ in 0..columns {
            if p[at] == 0xfb {
                at += 1;
                row.push(None);
                continue;
            }
            let n = lenenc(&p, &mut at).unwrap() as usize;
            row.push(Some(String::from_utf8_lossy(&p[at..at + n]).into_owned()));
            at += n;
        }
        rows.push(row);
    }
}

/// What a connection ended with: the bytes the proxy sent, whether it closed, time taken.
type Ended = (Vec<u8>, bool, Duration);

/// Everything the proxy sends until it closes the connection or `limit` passes.
fn read_until_close(s: &mut TcpStream, limit: Duration) -> Ended {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (out, false, start.elapsed());
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (out, true, start.elapsed()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (out, false, start.elapsed())
            }
            // Reset by the peer: closed.
            Err(_) => return (out, true, start.elapsed()),
        }
    }
}

/// The ERR packets in a byte stream of whole packets: (code, message) each.
fn errs(bytes: &[u8]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], 0]) as usize;
        let Some(p) = bytes.get(at + 4..at + 4 + len) else {
            break;
        };
        if p.first() == Some(&0xff) {
            if let Some(e) = err_of(p) {
                out.push(e);
            }
        }
        at += 4 + len;
    }
    out
}

/// A logged-in client through the proxy still gets answers.
fn still_serves(p: &Proxy) {
    let mut s = login(p.port, &p.db).expect("a normal client logs in");
    assert_eq!(
        query(&mut s, "SELECT 7").expect("a normal client's statement"),
        vec![vec![Some("7".to_string())]]
    );
    assert_eq!(
        query(&mut s, "/* switchyard:primary */ SELECT 8").unwrap(),
        vec![vec![Some("8".to_string())]]
    );
}

/// The `mariadb` CLI through the proxy: (ok, stdout, stderr).
fn cli(port: u16, user: &str, password: &str, db: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("mariadb")
        .args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{port}"),
            &format!("-u{user}"),
            &format!("-p{password}"),
            "--skip-ssl",
            "--connect-timeout=10",
            "-N",
            "-B",
            db,
            "-e",
            sql,
        ])
        .output()
        .expect("run mariadb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- the tests ----

/// What goes wrong before login completes gets an ERR and a close, within the login timeout
/// (plus slack) at most, and changes nothing for anyone else.
#[test]
fn broken_logins_get_an_err_or_a_close_in_time() {
    let db = "sf_login";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let p = proxy(db, "");
    let port = p.port;
    // A normal client that stays logged in throughout.
    let mut bystander = login(port, db).unwrap();
    assert!(query(&mut bystander, "SELECT 1").is_ok());

    // (what, expected ERR code or None for "a close is enough", result)
    let mut results: Vec<(&str, Option<u16>, Ended)> = Vec::new();
    let bound = LOGIN_TIMEOUT + Duration::from_secs(3);

    // Not a handshake response at all.
    let (mut s, _) = open(port);
    s.write_all(&frame(1, &[1, 2, 3])).unwrap();
    results.push((
        "garbage response",
        Some(1043),
        read_until_close(&mut s, bound),
    ));

    // The 32-byte prefix alone without CLIENT_SSL.
    let (mut s, scramble) = open(port);
    let full = response(&scramble, "app", "app_pw", Some(db));
    s.write_all(&frame(1, &full[..32])).unwrap();
    results.push((
        "truncated response",
        Some(1043),
        read_until_close(&mut s, bound),
    ));

    // An SSLRequest: TLS is not offered.
    let (mut s, _) = open(port);
    let mut ssl = bytes::BytesMut::new();
    codec::put_ssl_request(
        &mut ssl,
        &codec::ClientCaps {
            capabilities: CAPS,
            max_packet_size: 1 << 24,
            charset: 45,
        },
    );
    s.write_all(&frame(1, &ssl)).unwrap();
    results.push(("SSLRequest", Some(1043), read_until_close(&mut s, bound)));

    // A valid response with the wrong sequence id (5 instead of 1): MariaDB answers
    // ER_NET_PACKETS_OUT_OF_ORDER (1156) and closes.
    let (mut s, scramble) = open(port);
    s.write_all(&frame(5, &response(&scramble, "app", "app_pw", Some(db))))
        .unwrap();
    results.push((
        "wrong sequence id",
        Some(1156),
        read_until_close(&mut s, bound),
    ));

    // A length prefix over max_message_bytes (the body never comes).
    let (mut s, _) = open(port);
    let len = (MAX_MESSAGE as u32 + 1).to_le_bytes();
    s.write_all(&[len[0], len[1], len[2], 1]).unwrap();
    results.push(("oversized length", None, read_until_close(&mut s, bound)));

    // The largest length a header can declare, with a few bytes of body.
    let (mut s, _) = open(port);
    s.write_all(&[0xff, 0xff, 0xff, 1, 0, 0, 0]).unwrap();
    results.push(("16 MiB length", None, read_until_close(&mut s, bound)));

    // Connects and sends nothing.
    let (mut s, _) = open(port);
    results.push(("silent", Some(1043), read_until_close(&mut s, bound)));

    // A valid response, one byte a second: the login timeout ends it.
    let (mut s, scramble) = open(port);
    let trickle = frame(1, &response(&scramble, "app", "app_pw", Some(db)));
    let start = Instant::now();
    let mut got = Vec::new();
    let mut closed = false;
    for b in &trickle {
        if s.write_all(&[*b]).is_err() || start.elapsed() > bound {
            break;
        }
        // Wait a second for an answer before the next byte.
        let (bytes, c, _) = read_until_close(&mut s, Duration::from_secs(1));
        got.extend(bytes);
        if c {
            closed = true;
            break;
        }
        if !got.is_empty() {
            break;
        }
    }
    if !closed {
        let (bytes, c, _) = read_until_close(&mut s, bound);
        got.extend(bytes);
        closed = c;
    }
    results.push((
        "one byte a second",
        Some(1043),
        (got, closed, start.elapsed()),
    ));

    for (what, code, (bytes, closed, took)) in &results {
        assert!(
            closed,
            "{what}: not closed within {bound:?} (got {bytes:?})"
        );
        assert!(took <= &bound, "{what}: took {took:?}");
        let errs = errs(bytes);
        match code {
            Some(code) => {
                assert_eq!(
                    errs.first().map(|e| e.0),
                    Some(*code),
                    "{what}: expected ERR {code}, got {errs:?} ({bytes:?})"
                );
            }
            None => assert!(
                bytes.is_empty() || !errs.is_empty(),
                "{what}: neither an ERR nor a plain close: {bytes:?}"
            ),
        }
        // Nobody is logged in by a broken login (an OK would be 0x00 at payload start).
        assert!(
            !bytes
                .get(4)
                .is_some_and(|&b| b == 0x00 && bytes.len() >= 11),
            "{what}: logged in: {bytes:?}"
        );
    }
    let silent = &results.iter().find(|r| r.0 == "silent").unwrap().2;
    assert!(
        errs(&silent.0)[0].1.contains("client_login_timeout"),
        "{:?}",
        errs(&silent.0)
    );
    assert!(
        silent.2 >= LOGIN_TIMEOUT - Duration::from_millis(100),
        "closed before the login timeout: {:?}",
        silent.2
    );

    assert_eq!(
        query(&mut bystander, "SELECT 2").unwrap(),
        vec![vec![Some("2".to_string())]]
    );
    drop(bystander);
    still_serves(&p);
    p.assert_nothing_leaked("broken logins");
}

/// A wrong password is refused with 1045 naming the user, for real clients too; an unknown
/// user the same way; an unknown database (with no default cluster to fall back on: two
/// MySQL clusters) with 1049.
#[test]
fn wrong_passwords_and_unknown_users_get_1045_naming_the_user() {
    let db = "sf_auth";
    setup(db, "SELECT 1");
    let p = proxy(db, "");
    let e = login(p.port, db).map(drop);
    assert!(e.is_ok(), "{e:?}");
    let (mut s, scramble) = open(p.port);
    s.write_all(&frame(1, &response(&scramble, "app", "wrong", Some(db))))
        .unwrap();
    let (bytes, closed, _) = read_until_close(&mut s, T);
    assert!(closed);
    let e = errs(&bytes);
    assert_eq!(e.len(), 1, "{bytes:?}");
    assert_eq!(e[0].0, 1045);
    assert!(e[0].1.contains("'app'"), "{}", e[0].1);

    let (ok, _, err) = cli(p.port, "app", "wrong", db, "SELECT 1");
    assert!(!ok);
    assert!(err.contains("1045") && err.contains("'app'"), "{err}");
    let (ok, _, err) = cli(p.port, "nobody", "x", db, "SELECT 1");
    assert!(!ok);
    assert!(err.contains("1045") && err.contains("'nobody'"), "{err}");

    let program = r#"
import sys, pymysql
try:
    pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="bad",
                    database=sys.argv[2], connect_timeout=10)
    print("connected")
except pymysql.err.OperationalError as e:
    print(e.args[0], e.args[1])
"#;
    let out = Command::new("python3")
        .args(["-c", program, &p.port.to_string(), db])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("1045 ") && text.contains("'app'"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    still_serves(&p);
    p.assert_nothing_leaked("bad logins");
}

/// Past `max_client_connections`, a new client gets 1040 naming the limit; the clients
/// within it keep working, and a slot is free again once one leaves.
#[test]
fn too_many_clients_get_1040_and_the_rest_work() {
    let db = "sf_limit";
    setup(db, "SELECT 1");
    let p = proxy(db, "max_client_connections = 3");
    let mut held: Vec<TcpStream> = (0..3).map(|_| login(p.port, db).unwrap()).collect();
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    let (bytes, closed, _) = read_until_close(&mut s, T);
    assert!(closed);
    let e = errs(&bytes);
    assert_eq!(e.first().map(|e| e.0), Some(1040), "{bytes:?}");
    assert!(e[0].1.contains("max_client_connections = 3"), "{}", e[0].1);
    let (ok, _, err) = cli(p.port, "app", "app_pw", db, "SELECT 1");
    assert!(!ok);
    assert!(err.contains("1040"), "{err}");
    for s in &mut held {
        assert_eq!(
            query(s, "SELECT 3").unwrap(),
            vec![vec![Some("3".to_string())]]
        );
    }
    held.pop();
    // The slot is given back when the client leaves.
    let deadline = Instant::now() + T;
    let mut again = loop {
        match login(p.port, db) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "no slot freed: {e:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(query(&mut again, "SELECT 4").is_ok());
    drop(again);
    drop(held);
    p.assert_nothing_leaked("client limit");
}

/// After login: a length prefix over `max_message_bytes` gets ERR 1153 and a close before
/// any body is sent; a command with a wrong sequence id gets ERR 1156 and a close (as
/// MariaDB does); garbage of every command byte gets answers or a close and never a hang;
/// a client that breaks off inside a transaction leaves nothing open.
#[test]
fn hostile_bytes_after_login_are_refused_and_leave_nothing_behind() {
    let db = "sf_garbage";
    setup(
        db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0)",
    );
    let p = proxy(db, "");
    let port = p.port;
    let mut bystander = login(port, db).unwrap();

    // Oversized: only the header is sent.
    let mut s = login(port, db).unwrap();
    let len = (MAX_MESSAGE as u32 + 1).to_le_bytes();
    s.write_all(&[len[0], len[1], len[2], 0]).unwrap();
    let (bytes, closed, _) = read_until_close(&mut s, T);
    assert!(closed, "oversized: not closed");
    assert_eq!(errs(&bytes).first().map(|e| e.0), Some(1153), "{bytes:?}");

    // Oversized while holding a connection inside a transaction.
    let mut s = login(port, db).unwrap();
    query(&mut s, "BEGIN").unwrap();
    query(&mut s, "UPDATE t SET v = v + 1 WHERE id = 1").unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0]).unwrap();
    let (bytes, closed, _) = read_until_close(&mut s, T);
    assert!(closed, "oversized in a transaction: not closed");
    assert_eq!(errs(&bytes).first().map(|e| e.0), Some(1153), "{bytes:?}");

    // A command with sequence id 3 instead of 0.
    let mut s = login(port, db).unwrap();
    s.write_all(&frame(3, b"\x03SELECT 1")).unwrap();
    let (bytes, closed, _) = read_until_close(&mut s, T);
    assert!(closed, "wrong sequence id: not closed ({bytes:?})");
    assert_eq!(errs(&bytes).first().map(|e| e.0), Some(1156), "{bytes:?}");

    // Every command byte with a tail of pseudo-random bytes, then the client's end of the
    // connection closes: answers (or nothing) and a close, in time.
    let mut x: u32 = 0x1234_5678;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for cmd in (0u8..=0x20).chain([0x3f, 0x80, 0xfe, 0xff]) {
        for tail in [0usize, 1, 4, 9, 40] {
            let mut p = vec![cmd];
            p.extend((0..tail).map(|_| rand() as u8));
            cases.push(frame(0, &p));
        }
    }
    // An empty packet; bytes that are not even a whole header; a stream of random frames.
    cases.push(frame(0, &[]));
    cases.push(vec![5, 0]);
    let mut stream = Vec::new();
    for _ in 0..20 {
        let n = (rand() % 30) as usize;
        let body: Vec<u8> = (0..n).map(|_| rand() as u8).collect();
        stream.extend(frame(0, &body));
    }
    cases.push(stream);
    // Statements inside a transaction, then garbage.
    let mut in_tx = frame(0, b"\x03BEGIN");
    in_tx.extend(frame(0, b"\x03UPDATE t SET v = v + 1 WHERE id = 1"));
    in_tx.extend((0..50).map(|_| rand() as u8));
    cases.push(in_tx);
    for (i, case) in cases.iter().enumerate() {
        let mut s = login(port, db).unwrap();
        let _ = s.write_all(case);
        let _ = s.shutdown(Shutdown::Write);
        let (_, closed, took) = read_until_close(&mut s, T);
        assert!(
            closed,
            "case {i} ({:?}): not closed within {took:?}",
            &case[..case.len().min(16)]
        );
    }

    // Neighbours were not disturbed.
    assert_eq!(
        query(&mut bystander, "SELECT v FROM t WHERE id = 1").unwrap(),
        vec![vec![Some("0".to_string())]],
        "an update of a broken-off transaction is visible"
    );
    // The row is not locked by anything left open.
    query(&mut bystander, "SET innodb_lock_wait_timeout = 2").unwrap();
    query(&mut bystander, "UPDATE t SET v = 10 WHERE id = 1").unwrap();
    drop(bystander);
    still_serves(&p);
    p.assert_nothing_leaked("garbage after login");
}

/// A client keeps the clean connection it gave back for its next statement only while no
/// other client needs it: eight clients that each ran a statement and sit idle, on pools of
/// two connections per worker, all get a connection for their next statements (taken from
/// an idle client's spot, or they would wait out `checkout_timeout`), each sees its own
/// session variables on it, parked connections count as idle in the pool gauges, and
/// nothing is left behind when they leave.
#[test]
fn connections_kept_by_idle_clients_go_to_clients_that_need_one() {
    let db = "sf_parking";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY, who int)");
    let p = proxy(db, "");
    let zones = [
        "+01:00", "+02:00", "+03:00", "+04:00", "-01:00", "-02:00", "-03:00", "-04:00",
    ];
    let mut clients: Vec<TcpStream> = zones.iter().map(|_| login(p.port, db).unwrap()).collect();
    for (c, zone) in clients.iter_mut().zip(zones) {
        query(c, &format!("SET time_zone = '{zone}'")).unwrap();
        query(c, "/* switchyard:primary */ SELECT 1").unwrap();
    }
    // Every client idle: the pools' connections are idle, whether parked or in the pool.
    // A session gives its connection back just after the client has its answer, so the
    // gauges settle a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut counts = p.pool_counts();
    while counts.iter().any(|&(open, idle)| open != idle) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        counts = p.pool_counts();
    }
    for (i, &(open, idle)) in counts.iter().enumerate() {
        assert_eq!(open, idle, "backend {i}: {open} open, {idle} idle");
    }
    for round in 0..5 {
        for (n, (c, zone)) in clients.iter_mut().zip(zones).enumerate() {
            let id = round * 100 + n;
            query(c, &format!("INSERT INTO t VALUES ({id}, {n})")).unwrap();
            let rows = query(
                c,
                &format!("/* switchyard:primary */ SELECT @@time_zone, who FROM t WHERE id = {id}"),
            )
            .unwrap();
            assert_eq!(
                rows,
                vec![vec![Some(zone.to_string()), Some(n.to_string())]],
                "client {n}, round {round}"
            );
        }
    }
    drop(clients);
    p.assert_nothing_leaked("parked connections");
}

/// A client that asks for a large result and then reads nothing of it (a hung application):
/// with `[general] client_write_timeout`, once it has taken nothing for that long its session
/// ends and the server connection it held is closed (the server stops the statement), as a
/// server's `net_write_timeout` ends such a connection; other clients are served meanwhile.
#[test]
fn a_client_that_stops_reading_its_results_lets_go_of_its_server_connection() {
    let db = "my_stuck";
    setup(db, "SELECT 1");
    let p = proxy(db, "client_write_timeout = \"1s\"");
    let c = cluster();
    let mut s = login(p.port, db).unwrap();
    let sql = "/* switchyard:primary */ SELECT REPEAT('x', 1000) FROM seq_1_to_1000000";
    let mut payload = vec![0x03];
    payload.extend_from_slice(sql.as_bytes());
    s.write_all(&frame(0, &payload)).unwrap();
    let running = || {
        c.value(
            0,
            "SELECT count(*) FROM information_schema.processlist \
             WHERE info LIKE '%seq_1_to_1000000%' AND id <> CONNECTION_ID()",
        )
        .unwrap()
            == "1"
    };
    let t0 = Instant::now();
    while !running() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the statement never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    still_serves(&p);
    let t0 = Instant::now();
    while running() {
        assert!(
            t0.elapsed() < Duration::from_secs(6),
            "the stuck client's statement still runs after {:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = read_until_close(&mut s, Duration::from_secs(10));
    assert!(
        gone.1,
        "the stuck client's connection stayed open: {} bytes, {:?}",
        gone.0.len(),
        gone.2
    );
    still_serves(&p);
}

/// `[pool] query_timeout` for MySQL clients: a statement its server has run that long is
/// stopped as another client's `KILL QUERY` would stop it, and the client goes on as after
/// one: the statement gets the server's 1317, its message naming the limit; one waiting for
/// a row lock is stopped the same way while its transaction stays open (the server rolls
/// back only the statement); statements under the limit are left alone. Nothing is left
/// behind.
#[test]
fn statements_past_query_timeout_are_killed_and_their_clients_go_on() {
    let db = "my_qtimeout";
    setup(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO t VALUES (1, 0)",
    );
    let p = proxy_with(db, "", "query_timeout = \"1s\"");
    let mut s = login(p.port, db).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        query(&mut s, "SELECT SLEEP(30)"),
        Err((
            1317,
            "Query execution was interrupted (query_timeout exceeded)".to_string()
        )),
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(
        query(&mut s, "SELECT 7").unwrap(),
        vec![vec![Some("7".to_string())]]
    );
    // A statement waiting for another client's row lock.
    let mut holder = login(p.port, db).unwrap();
    query(&mut holder, "BEGIN").unwrap();
    query(&mut holder, "UPDATE t SET v = v + 1 WHERE id = 1").unwrap();
    query(&mut s, "BEGIN").unwrap();
    query(&mut s, "INSERT INTO t VALUES (2, 0)").unwrap();
    let t0 = Instant::now();
    let (code, message) = query(&mut s, "UPDATE t SET v = 5 WHERE id = 1").unwrap_err();
    assert_eq!(code, 1317, "{message}");
    assert!(message.contains("query_timeout"), "{message}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    query(&mut s, "COMMIT").unwrap();
    query(&mut holder, "ROLLBACK").unwrap();
    assert_eq!(
        cluster()
            .value(0, &format!("SELECT COUNT(*) FROM {db}.t WHERE id = 2"))
            .unwrap(),
        "1",
        "the transaction kept what it did before the stopped statement"
    );
    // Three statements of 0.6 s: each under the limit.
    for _ in 0..3 {
        assert_eq!(
            query(&mut s, "SELECT SLEEP(0.6)").unwrap(),
            vec![vec![Some("0".to_string())]]
        );
    }
    let text = p.server().shared.metrics.encode(&*p.server().shared);
    let series = format!("switchyard_errors_total{{cluster=\"{db}\",kind=\"query_timeout\"}} 2");
    assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
    drop((s, holder));
    p.assert_nothing_leaked("after query_timeout");
}

/// TCP keepalive (`[general] tcp_keepalive`, on by default) is set on the client's
/// connection to the proxy and on the proxy's connection to the server, with the configured
/// idle time (the same check as PostgreSQL's in `pg_safety.rs`: loopback cannot lose a
/// probe's answer, so what is checked is the kernel's timer on both sockets, against the
/// same with the setting off).
#[test]
fn client_and_server_connections_have_tcp_keepalive() {
    let db = "keepalive";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let primary = cluster().primary_port();
    for on in [true, false] {
        let p = proxy(db, &format!("tcp_keepalive = {on}\ntcp_keepidle = \"37s\""));
        let mut s = login(p.port, db).expect("login");
        // The statement finds its own row: the proxy's server connection, at its end.
        let rows = query(
            &mut s,
            "/* switchyard:primary */ SELECT host FROM information_schema.processlist \
             WHERE info LIKE '%keepalive-marker%'",
        )
        .unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        let host = rows[0][0].clone().unwrap();
        let proxy_side: u16 = host.rsplit(':').next().unwrap().parse().unwrap();
        let timers = switchyard::testkit::socket_timers(&[(p.port, 0), (proxy_side, primary)]);
        switchyard::testkit::assert_keepalive(&["client", "server"], &timers, on, 37);
    }
}

/// `[pool] size` is the pool's size over all worker threads (as in `pg_safety.rs`'s test of
/// the same name): clients of one worker that all need a connection at once get them while
/// the other worker's connections sit idle (closed to make room), and the server never sees
/// more than `size` connections from the pool.
#[test]
fn busy_clients_of_one_worker_use_the_connections_another_leaves_idle() {
    use std::sync::atomic::Ordering::Relaxed;
    const SIZE: usize = 4; // the `[pool] size` of `proxy_with`
    let db = "sf_groups";
    setup(db, "CREATE TABLE t (id int PRIMARY KEY)");
    let p = proxy(db, "");
    let shared = p.server().shared.clone();
    let loads = || -> Vec<usize> {
        shared
            .live_workers()
            .iter()
            .map(|w| w.load.load(Relaxed))
            .collect()
    };
    let started = Instant::now();
    while loads().len() < 2 {
        assert!(started.elapsed() < T, "workers never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIZE clients on each worker, told apart by the worker whose client count grows.
    let mut on: [Vec<TcpStream>; 2] = [Vec::new(), Vec::new()];
    while on.iter().any(|c| c.len() < SIZE) {
        assert!(
            on[0].len() + on[1].len() < 8 * SIZE,
            "clients land on one worker only"
        );
        let before = loads();
        let client = login(p.port, db).unwrap();
        let after = loads();
        let w = (0..2)
            .find(|&w| after[w] > before[w])
            .expect("a worker took the client");
        if on[w].len() < SIZE {
            on[w].push(client);
        }
    }
    let [first, second] = on;
    let all_at_once = |clients: Vec<TcpStream>, sql: &'static str| {
        clients
            .into_iter()
            .map(|mut c| {
                std::thread::spawn(move || {
                    query(&mut c, sql).unwrap();
                    c
                })
            })
            .collect::<Vec<_>>()
    };
    // The second worker's clients open connections to the primary and leave them idle.
    for t in all_at_once(second, "/* switchyard:primary */ SELECT SLEEP(0.3)") {
        t.join().unwrap();
    }
    // The first worker's clients all need one at once, for a while.
    let busy = all_at_once(first, "/* switchyard:primary */ SELECT SLEEP(1.5)");
    let count = |sql: &str| -> usize { cluster().query(0, sql).unwrap()[0][0].parse().unwrap() };
    let (mut running, mut open) = (0, 0);
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(100));
        running = running.max(count(
            "SELECT count(*) FROM information_schema.processlist \
             WHERE info LIKE '%SELECT SLEEP(1.5)'",
        ));
        open = open.max(count(&format!(
            "SELECT count(*) FROM information_schema.processlist WHERE user = '{}'",
            backend_user(db)
        )));
    }
    for t in busy {
        t.join().unwrap();
    }
    assert_eq!(
        running, SIZE,
        "the busy worker's clients ran {running} at a time, with {SIZE} connections in the pool"
    );
    // The pool's connections, and the health checks' one.
    assert!(
        open <= SIZE + 1,
        "{open} server connections for a pool of {SIZE}"
    );
}
