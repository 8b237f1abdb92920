//! Failure handling: bad logins, hostile bytes, limits, clients that vanish mid-transaction,
//! session state, authentication methods on both sides.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;
use switchyard::testkit::pg as kit;

/// Read whatever the proxy sends until it closes (bounded).
fn read_until_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (out, start.elapsed())
}

fn startup_packet(user: &str, db: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

/// SQLSTATE of the first ErrorResponse in `bytes`.
fn sqlstate(bytes: &[u8]) -> Option<String> {
    let pos = bytes.iter().position(|&b| b == b'E')?;
    let body = &bytes[pos + 5..];
    let mut i = 0;
    while i < body.len() && body[i] != 0 {
        let end = body[i + 1..].iter().position(|&b| b == 0)? + i + 1;
        if body[i] == b'C' {
            return Some(String::from_utf8_lossy(&body[i + 1..end]).into_owned());
        }
        i = end + 1;
    }
    None
}

async fn still_serves(p: &Proxy, db: &str) {
    let c = connect(&p.conn_str(db)).await;
    let v: i32 = c.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
}

#[tokio::test]
async fn bad_logins_get_clear_errors_and_others_keep_working() {
    create_db("t_badlogin");
    let p = start_proxy(&config_text(
        "t_badlogin",
        "client_login_timeout = \"1s\"",
        "",
        "",
    ));
    let conn = |user: &str, pw: &str, db: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={pw} dbname={db}",
            p.port
        )
    };

    let e = tokio_postgres::connect(&conn("app", "wrong", "t_badlogin"), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{e}"
    );
    let e = tokio_postgres::connect(&conn("app", "secret", "nope"), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME),
        "{e}"
    );
    let e = tokio_postgres::connect(&conn("nobody", "x", "t_badlogin"), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{e}"
    );
    still_serves(&p, "t_badlogin").await;

    let port = p.port;
    let raw = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        // Malformed startup: right length, unknown protocol version.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&[0, 0, 0, 8, 0, 9, 0, 9]).unwrap();
        results.push((
            "bad version",
            read_until_close(&mut s, Duration::from_secs(5)),
        ));
        // Startup with garbage parameters (no terminator).
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&[0, 0, 0, 12, 0, 3, 0, 0, b'u', b's', b'e', b'r'])
            .unwrap();
        results.push((
            "garbage params",
            read_until_close(&mut s, Duration::from_secs(5)),
        ));
        // A 2 GiB length prefix.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&[0x80, 0, 0, 0, 0, 3, 0, 0]).unwrap();
        results.push((
            "2 GiB startup",
            read_until_close(&mut s, Duration::from_secs(5)),
        ));
        // A client that sends nothing is closed after client_login_timeout (1 s).
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        results.push(("silent", read_until_close(&mut s, Duration::from_secs(5))));
        results
    })
    .await
    .unwrap();
    for (what, (bytes, took)) in raw {
        assert!(
            took < Duration::from_secs(3),
            "{what}: not closed in time ({took:?})"
        );
        let code = sqlstate(&bytes);
        assert!(code.is_some(), "{what}: no ErrorResponse, got {bytes:?}");
        if what == "silent" {
            assert_eq!(code.as_deref(), Some("08006"), "{what}");
        } else {
            assert_eq!(code.as_deref(), Some("08P01"), "{what}");
        }
    }
    still_serves(&p, "t_badlogin").await;
}

/// A SQL DEALLOCATE whose name is not ASCII, from a client with protocol-level statements
/// (the proxy reads such a DEALLOCATE to follow the client's statements): the server's
/// answer, as directly, and the session goes on. (A name whose seventh byte fell inside a
/// character ended the session with a panic; found by the `pg_frontend` fuzz target.)
#[tokio::test]
async fn a_sql_deallocate_of_a_name_that_is_not_ascii_gets_the_servers_answer() {
    create_db("t_dealloc_utf8");
    let p = proxy("t_dealloc_utf8");
    let client = connect(&p.conn_str("t_dealloc_utf8")).await;
    let one = client.prepare("SELECT 1").await.unwrap();
    for (sql, code) in [
        ("DEALLOCATE stmt_d\u{e9}j\u{e0}", "26000"),
        ("DEALLOCATE PREPARE stmt_d\u{e9}j\u{e0}", "26000"),
        ("DEALLOCATE U$$DR]\u{61e}s1", "42601"),
    ] {
        let e = client.simple_query(sql).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some(code), "{sql}: {e:?}");
        let rows = client.query(&one, &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, i32>(0), 1, "{sql}");
    }
}

#[tokio::test]
async fn oversized_message_after_login_is_a_protocol_error() {
    create_db("t_bigmsg");
    let p = start_proxy(&config_text("t_bigmsg", "max_message_bytes = 4096", "", ""));
    let port = p.port;
    let bytes = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&startup_packet("app_trust", "t_bigmsg"))
            .unwrap();
        // Wait for ReadyForQuery, then announce a 2 GiB Query.
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before ReadyForQuery");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff, b's']).unwrap();
        read_until_close(&mut s, Duration::from_secs(5)).0
    })
    .await
    .unwrap();
    assert_eq!(sqlstate(&bytes).as_deref(), Some("08P01"), "{bytes:?}");
    still_serves(&p, "t_bigmsg").await;
}

#[tokio::test]
async fn clients_over_the_limit_get_a_clear_error_and_the_rest_work() {
    create_db("t_maxconn");
    let p = start_proxy(&config_text(
        "t_maxconn",
        "max_client_connections = 3",
        "",
        "",
    ));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&p.conn_str("t_maxconn")).await);
    }
    let e = tokio_postgres::connect(&p.conn_str("t_maxconn"), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS),
        "{e}"
    );
    let msg = e.as_db_error().unwrap().message();
    assert!(msg.contains("max_client_connections"), "{msg}");
    for c in &held {
        let v: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(v, 1);
    }
    drop(held);
    // Slots are given back when clients leave.
    tokio::time::sleep(Duration::from_millis(300)).await;
    still_serves(&p, "t_maxconn").await;
}

#[tokio::test]
async fn client_killed_inside_a_transaction_leaves_nothing_open() {
    create_db("t_kill");
    // One backend connection per worker, one worker: the next client gets the same pool.
    let p = start_proxy(&config_text("t_kill", "workers = 1", "size = 1", ""));
    let setup = connect(&p.conn_str("t_kill")).await;
    setup
        .batch_execute(
            "CREATE TABLE acct (id int primary key, bal int); INSERT INTO acct VALUES (1, 100)",
        )
        .await
        .unwrap();
    drop(setup);

    let (victim, conn) = tokio_postgres::connect(&p.conn_str("t_kill"), tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn_task = tokio::spawn(conn);
    victim
        .batch_execute("BEGIN; UPDATE acct SET bal = 0 WHERE id = 1")
        .await
        .unwrap();
    // Kill the client: its socket closes with the transaction open.
    conn_task.abort();
    drop(victim);

    let next = connect(&p.conn_str("t_kill")).await;
    next.batch_execute("SET lock_timeout = '3s'").await.unwrap();
    let bal: i32 = next
        .query_one("SELECT bal FROM acct WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        bal, 100,
        "the killed client's uncommitted update is visible"
    );
    // The row lock is gone: this would wait for lock_timeout otherwise.
    next.execute("UPDATE acct SET bal = bal + 1 WHERE id = 1", &[])
        .await
        .unwrap();
    let open: i64 = cluster()
        .psql(0, "SELECT count(*) FROM pg_stat_activity WHERE datname = 't_kill' AND state LIKE 'idle in transaction%'")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(open, 0);
}

#[tokio::test]
async fn session_settings_pin_the_client_and_do_not_leak_to_others() {
    create_db("t_pin");
    let p = start_proxy(&config_text("t_pin", "workers = 1", "size = 1", ""));
    let a = connect(&p.conn_str("t_pin")).await;
    a.batch_execute("SET statement_timeout = '1234s'")
        .await
        .unwrap();
    let v: String = a
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "1234s");
    // `a` is pinned to the only backend connection; a second client has to wait for it, so
    // check the setting did not leak only after `a` leaves.
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = connect(&p.conn_str("t_pin")).await;
    let v: String = b
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "0", "a pinned client's SET leaked to the next client");
}

#[tokio::test]
async fn startup_parameters_follow_the_client_across_pooled_connections() {
    create_db("t_params");
    let p = start_proxy(&config_text("t_params", "workers = 1", "size = 1", ""));
    let a = connect(&format!(
        "{} application_name=alpha options='-c search_path=s_a,public'",
        p.conn_str("t_params")
    ))
    .await;
    let b = connect(&format!("{} application_name=beta", p.conn_str("t_params"))).await;
    for _ in 0..3 {
        let r = a
            .query_one(
                "SELECT current_setting('application_name'), current_setting('search_path')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (r.get::<_, String>(0), r.get::<_, String>(1)),
            ("alpha".into(), "s_a,public".into())
        );
        let r = b
            .query_one(
                "SELECT current_setting('application_name'), current_setting('search_path')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (r.get::<_, String>(0), r.get::<_, String>(1)),
            ("beta".into(), "\"$user\", public".into())
        );
    }
}

#[tokio::test]
async fn session_mode_resets_connections_between_clients() {
    create_db("t_sess");
    let p = start_proxy(&config_text(
        "t_sess",
        "workers = 1",
        "size = 1",
        "pool_mode = \"session\"",
    ));
    let a = connect(&p.conn_str("t_sess")).await;
    a.batch_execute("SET work_mem = '7MB'; PREPARE q AS SELECT 1; CREATE TEMP TABLE tmp (x int)")
        .await
        .unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = connect(&p.conn_str("t_sess")).await;
    let v: String = b.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(v, "4MB");
    assert!(
        b.batch_execute("EXECUTE q").await.is_err(),
        "prepared statement survived the reset"
    );
    let n: i64 = b
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'tmp'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn md5_and_trust_clients_and_every_backend_auth_method() {
    create_db("t_auth");
    let c = cluster();
    for (user, pw) in [
        (kit::SCRAM_USER, kit::SCRAM_PASSWORD),
        (kit::MD5_USER, kit::MD5_PASSWORD),
        (kit::PLAIN_USER, kit::PLAIN_PASSWORD),
    ] {
        let text = config_text("t_auth", "", "", "").replace(
            "user = \"postgres\"",
            &format!("user = \"{user}\"\npassword = \"{pw}\""),
        );
        let p = start_proxy(&text);
        for (cu, cp) in [("app", "secret"), ("app_md5", "secret5"), ("app_trust", "")] {
            let (ok, out, err) = psql(
                &p.url(cu, cp, "t_auth"),
                &["-At", "-c", "SELECT current_user"],
            );
            assert!(ok, "client {cu} via backend user {user}: {err}");
            assert_eq!(out.trim(), user);
        }
        let (ok, _, err) = psql(&p.url("app_md5", "wrong", "t_auth"), &["-c", "SELECT 1"]);
        assert!(
            !ok && err.contains("password authentication failed"),
            "{err}"
        );
    }
    // A backend password that is wrong gives the client a clear error naming the server.
    let text = config_text("t_auth", "", "", "").replace(
        "user = \"postgres\"",
        &format!("user = \"{}\"\npassword = \"bad\"", kit::SCRAM_USER),
    );
    let p = start_proxy(&text);
    let (ok, _, err) = psql(&p.url("app", "secret", "t_auth"), &["-c", "SELECT 1"]);
    assert!(!ok && err.contains("refused the login"), "{err}");
    let _ = c;
}

#[test]
fn tls_is_offered_when_configured_and_refused_cleanly_otherwise() {
    create_db("t_tls");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = switchyard::net::tls::self_signed(dir.path()).unwrap();
    let tls = format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\"");
    let p = start_proxy(&config_text("t_tls", "", "", &tls));
    let url = format!("{}?sslmode=require", p.url("app", "secret", "t_tls"));
    let (ok, out, err) = psql(&url, &["-c", "\\conninfo", "-c", "SELECT 42"]);
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");
    assert!(out.contains("42"), "{out}");

    let plain = proxy("t_tls");
    let url = format!("{}?sslmode=require", plain.url("app", "secret", "t_tls"));
    let (ok, _, err) = psql(&url, &["-c", "SELECT 1"]);
    assert!(!ok && err.contains("server does not support SSL"), "{err}");
    let url = format!("{}?sslmode=prefer", plain.url("app", "secret", "t_tls"));
    let (ok, out, err) = psql(&url, &["-At", "-c", "SELECT 1"]);
    assert!(ok && out.trim() == "1", "{err}");
}

/// SCRAM-SHA-256-PLUS over TLS: libpq with `channel_binding=require` and node-postgres with
/// `enableChannelBinding` log in (each computes the certificate's end point itself, so a
/// wrong hash on the proxy's side fails the login); plain SCRAM still works over TLS; a
/// client that asks for PLUS over plain TCP, where it was not offered, is refused with 08P01.
#[test]
fn scram_channel_binding_is_offered_over_tls() {
    create_db("t_cbind");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = switchyard::net::tls::self_signed(dir.path()).unwrap();
    let tls = format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\"");
    let p = start_proxy(&config_text("t_cbind", "", "", &tls));
    let url = |q: &str| format!("{}?{q}", p.url("app", "secret", "t_cbind"));
    let (ok, out, err) = psql(
        &url("sslmode=require&channel_binding=require"),
        &["-At", "-c", "SELECT 42"],
    );
    assert!(ok && out.trim() == "42", "channel_binding=require: {err}");
    let (ok, out, err) = psql(
        &url("sslmode=require&channel_binding=disable"),
        &["-At", "-c", "SELECT 7"],
    );
    assert!(ok && out.trim() == "7", "channel_binding=disable: {err}");
    // A wrong password over a bound exchange is the usual refusal.
    let bad = format!(
        "{}?sslmode=require&channel_binding=require",
        p.url("app", "wrong", "t_cbind")
    );
    let (ok, _, err) = psql(&bad, &["-c", "SELECT 1"]);
    assert!(
        !ok && err.contains("password authentication failed"),
        "{err}"
    );

    // Drivers that do not bind (asyncpg) or decide by themselves (pgjdbc) log in over TLS
    // as they do to a PostgreSQL server that offers PLUS.
    let asyncpg = format!(
        "import asyncio, ssl, asyncpg
async def main():
    ctx = ssl.create_default_context(); ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = await asyncpg.connect(host='127.0.0.1', port={port}, user='app', password='secret',
        database='t_cbind', ssl=ctx)
    print('value', await c.fetchval('SELECT 40 + 2')); await c.close()
asyncio.run(main())",
        port = p.port
    );
    let (ok, out, err) = run(std::process::Command::new("python3").args(["-c", &asyncpg]));
    assert!(
        ok && out.contains("value 42"),
        "asyncpg over TLS: {out}{err}"
    );
    let java = dir.path().join("Tls.java");
    std::fs::write(
        &java,
        format!(
            "public class Tls {{ public static void main(String[] a) throws Exception {{
               try (var c = java.sql.DriverManager.getConnection(
                   \"jdbc:postgresql://127.0.0.1:{port}/t_cbind?sslmode=require&user=app&password=secret\");
                    var r = c.createStatement().executeQuery(\"SELECT 40 + 2\")) {{
                 r.next(); System.out.println(\"value \" + r.getInt(1)); }} }} }}",
            port = p.port
        ),
    )
    .unwrap();
    let (ok, out, err) = run(std::process::Command::new("java")
        .args(["-cp", support::drivers::PGJDBC_JAR])
        .arg(&java));
    assert!(
        ok && out.contains("value 42"),
        "pgjdbc over TLS: {out}{err}"
    );

    // A certificate signed with ECDSA P-384 and SHA-384: the end point is a SHA-384 hash,
    // which libpq computes the same way.
    let key384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert384 = params.self_signed(&key384).unwrap();
    let (c384, k384) = (dir.path().join("p384.pem"), dir.path().join("p384.key"));
    std::fs::write(&c384, cert384.pem()).unwrap();
    std::fs::write(&k384, key384.serialize_pem()).unwrap();
    let tls384 = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        c384.display(),
        k384.display()
    );
    let p384 = start_proxy(&config_text("t_cbind", "", "", &tls384));
    let url384 = format!(
        "{}?sslmode=require&channel_binding=require",
        p384.url("app", "secret", "t_cbind")
    );
    let (ok, out, err) = psql(&url384, &["-At", "-c", "SELECT 384"]);
    assert!(ok && out.trim() == "384", "P-384 certificate: {err}");

    let node_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/drivers/node");
    let script = format!(
        "const {{ Client }} = require('pg');
         (async () => {{
           const c = new Client({{ host: '127.0.0.1', port: {port}, user: 'app',
             password: 'secret', database: 't_cbind', enableChannelBinding: true,
             ssl: {{ rejectUnauthorized: false }} }});
           await c.connect();
           const r = await c.query('SELECT 40 + 2 AS v');
           console.log('value', r.rows[0].v);
           await c.end();
         }})().catch(e => {{ console.error(e.message); process.exit(1); }});",
        port = p.port
    );
    let mut node = std::process::Command::new("node");
    node.args(["-e", &script]).current_dir(node_dir);
    let (ok, out, err) = run(&mut node);
    assert!(ok && out.contains("value 42"), "node-postgres: {out} {err}");

    // Over plain TCP only SCRAM-SHA-256 is offered; choosing PLUS there is refused.
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.write_all(&startup_packet("app", "t_cbind")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], b'R');
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    assert_eq!(u32::from_be_bytes([head[5], head[6], head[7], head[8]]), 10);
    let mut mechs = vec![0u8; len - 8];
    s.read_exact(&mut mechs).unwrap();
    assert_eq!(
        mechs, b"SCRAM-SHA-256\0\0",
        "mechanisms offered over plain TCP"
    );
    let first = b"p=tls-server-end-point,,n=,r=abcdefghijkl";
    let mut body = b"SCRAM-SHA-256-PLUS\0".to_vec();
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    s.write_all(&msg).unwrap();
    let (answer, _) = read_until_close(&mut s, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.first() == Some(&b'E') && text.contains("08P01") && text.contains("mechanism"),
        "{text}"
    );
}

/// `auth = "cert"` with `[postgres] tls_client_ca_file` (PostgreSQL's `cert` method, PgBouncer's
/// `auth_type = cert`): psql with a certificate the authority signed logs in as the user its
/// common name names; without one, over plain TCP, or as another user it is refused (28000);
/// a password user still logs in with or without a certificate; a certificate from another
/// authority fails the handshake.
#[test]
fn client_certificates_log_in_users_with_auth_cert() {
    create_db("t_cert");
    let p = support::pki::pki();
    let dir = tempfile::tempdir().unwrap();
    // libpq refuses a key file others may read.
    let private = |name: &str, pem: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path.display().to_string()
    };
    let key = private(
        "client.key",
        &std::fs::read_to_string(&p.client_key).unwrap(),
    );
    // A certificate for the same name from an authority the proxy does not know.
    let (stranger_cert, stranger_key) = support::pki::stranger_client_cert(dir.path());

    let listener = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca_file = \"{}\"",
        p.server_cert, p.server_key, p.ca
    );
    let text = format!(
        "{}\n[[user]]\nname = \"cert_user\"\nauth = \"cert\"\n\n\
         [[user]]\nname = \"other_cert\"\nauth = \"cert\"\n",
        config_text("t_cert", "", "", &listener)
    );
    let proxy = start_proxy(&text);
    let url = |user: &str, extra: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password=secret dbname=t_cert {extra}",
            proxy.port
        )
    };
    let with_cert = format!("sslmode=require sslcert={} sslkey={key}", p.client_cert);
    let none = "sslmode=require sslcert=/nonexistent sslkey=/nonexistent";

    let (ok, out, err) = psql(&url("cert_user", &with_cert), &["-At", "-c", "SELECT 42"]);
    assert!(
        ok && out.trim() == "42",
        "cert_user with its certificate: {err}"
    );
    for (user, extra, want) in [
        ("cert_user", none, "requires a valid client certificate"),
        (
            "cert_user",
            "sslmode=disable",
            "requires a valid client certificate",
        ),
        (
            "other_cert",
            with_cert.as_str(),
            "certificate authentication failed",
        ),
    ] {
        let (ok, _, err) = psql(&url(user, extra), &["-c", "SELECT 1"]);
        assert!(!ok && err.contains(want), "{user} {extra}: {err}");
    }
    for extra in [with_cert.as_str(), none] {
        let (ok, out, err) = psql(&url("app", extra), &["-At", "-c", "SELECT 7"]);
        assert!(ok && out.trim() == "7", "password user, {extra}: {err}");
    }
    let stranger = format!("sslmode=require sslcert={stranger_cert} sslkey={stranger_key}");
    let (ok, _, err) = psql(&url("cert_user", &stranger), &["-c", "SELECT 1"]);
    assert!(!ok, "a certificate from another authority was taken");
    eprintln!("stranger: {err}");

    // Without the authorities, "cert" users are a config error.
    let bad = format!(
        "{}\n[[user]]\nname = \"cert_user\"\nauth = \"cert\"\n",
        config_text("t_cert", "", "", "")
    );
    let e = switchyard::config::Config::from_toml(&bad).unwrap_err();
    assert!(e.to_string().contains("tls_client_ca_file"), "{e}");
}

/// `require_tls`: a login over TCP without TLS is refused with 28000 (psql's sslmode=disable,
/// and sslmode=prefer never falls back to it); over TLS, over the Unix socket and a cancel
/// request sent in plain (libpq before 17) are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_refuses_plain_logins_over_tcp_only() {
    create_db("t_tls_req");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = switchyard::net::tls::self_signed(dir.path()).unwrap();
    let socket_dir = dir.path().display().to_string();
    let listener = format!(
        "tls_cert = \"{cert}\"\ntls_key = \"{key}\"\nrequire_tls = true\n\
         unix_socket_dir = \"{socket_dir}\""
    );
    let p = start_proxy(&config_text("t_tls_req", "", "", &listener));
    let url = |mode: &str| format!("{}?sslmode={mode}", p.url("app", "secret", "t_tls_req"));
    let (ok, _, err) = psql(&url("disable"), &["-c", "SELECT 1"]);
    assert!(!ok, "a plain login was served");
    assert!(err.contains("TLS required"), "{err}");
    for mode in ["prefer", "require"] {
        let (ok, out, err) = psql(&url(mode), &["-At", "-c", "SELECT 42"]);
        assert!(ok && out.trim() == "42", "{mode}: {err}");
    }
    let local = format!(
        "host={socket_dir} port={} user=app password=secret dbname=t_tls_req",
        p.port
    );
    let (ok, out, err) = psql(&local, &["-At", "-c", "SELECT 43"]);
    assert!(ok && out.trim() == "43", "{err}");
    // tokio-postgres without TLS support sends its cancel request in plain.
    let (client, conn) = tokio_postgres::connect(&local, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let token = client.cancel_token();
    let sleep = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(20)").await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .unwrap();
    token
        .cancel_query_raw(tcp, tokio_postgres::NoTls)
        .await
        .unwrap();
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), sleep)
        .await
        .expect("the cancel sent in plain did not stop the statement")
        .unwrap();
    let e = r.expect_err("the sleep was not cancelled");
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e:?}");
}

#[tokio::test]
async fn notifications_reach_a_listening_client_and_empty_queries_work() {
    create_db("t_listen");
    let p = proxy("t_listen");
    let (listener, mut conn) =
        tokio_postgres::connect(&p.conn_str("t_listen"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(m)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    listener.batch_execute("LISTEN chan").await.unwrap();
    let sender = connect(&p.conn_str("t_listen")).await;
    sender.batch_execute("NOTIFY chan, 'hello'").await.unwrap();
    // The listener is pinned to its backend, so the notification arrives with its next
    // round trip at the latest.
    listener.batch_execute("").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("hello"));
    let r = listener.simple_query("").await.unwrap();
    assert!(
        r.is_empty()
            || r.iter()
                .all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
    );
}

/// The config of [`servers_see_each_clients_own_user`]: carol's server password is `carol`;
/// `users` are more `[[user]]` tables.
fn own_user_config(db: &str, carol: &str, users: &str) -> String {
    routing_config(cluster(), db, "server_login = \"client\"")
        + &format!(
            r#"
[pool]
size = 2

[[user]]
name = "ou_alice"
password = "alice-to-proxy"
server_password = "alice-to-server"

[[user]]
name = "ou_bob"
password = "bob-pw"

[[user]]
name = "ou_carol"
password = "carol-to-proxy"
server_password = "{carol}"

{users}
"#
        )
}

/// With `server_login = "client"` the servers see each client's own user (PgBouncer's
/// default): grants apply per user, on the primary and on the replicas, and a connection
/// logged in as one user never serves another, however the clients interleave. A user the
/// server refuses gets the server's error and the servers stay up; a reload that mends its
/// password lets it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_see_each_clients_own_user() {
    let db = "t_own_user";
    create_db(db);
    let c = cluster();
    c.psql(
        0,
        "DROP ROLE IF EXISTS ou_alice; DROP ROLE IF EXISTS ou_bob; DROP ROLE IF EXISTS ou_carol; \
         CREATE ROLE ou_alice LOGIN PASSWORD 'alice-to-server'; \
         CREATE ROLE ou_bob LOGIN PASSWORD 'bob-pw'; \
         CREATE ROLE ou_carol LOGIN PASSWORD 'carol-to-server'; \
         DROP ROLE IF EXISTS ou_dave; DROP ROLE IF EXISTS ou_erin; DROP ROLE IF EXISTS ou_frank; \
         CREATE ROLE ou_dave LOGIN PASSWORD 'dave-pw'; \
         CREATE ROLE ou_frank LOGIN PASSWORD 'frank-pw'; \
         SET password_encryption = 'md5'; CREATE ROLE ou_erin LOGIN PASSWORD 'erin-pw'",
    )
    .unwrap();
    // Their logins check passwords (the kit's servers trust the rest); erin's by md5.
    for node in 0..=c.replica_ports().len() {
        c.prepend_hba(
            node,
            "host all ou_erin 127.0.0.1/32 md5\n\
             host all ou_alice,ou_bob,ou_carol,ou_dave,ou_frank 127.0.0.1/32 scram-sha-256",
        )
        .unwrap();
    }
    // Users the proxy has no password for, only the secrets the server keeps: dave's SCRAM
    // verifier and erin's md5 hash as copied from pg_authid, and for frank a verifier of
    // his password with another salt than the server's.
    let secret = |role: &str| {
        c.psql(
            0,
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
        )
        .unwrap()
    };
    let frank = switchyard::pg::auth::ScramVerifier::from_password("frank-pw").to_text();
    let users = format!(
        "[[user]]\nname = \"ou_dave\"\nscram_verifier = \"{}\"\n\n\
         [[user]]\nname = \"ou_erin\"\nmd5_hash = \"{}\"\n\n\
         [[user]]\nname = \"ou_frank\"\nscram_verifier = \"{frank}\"\n",
        secret("ou_dave"),
        secret("ou_erin")
    );
    let direct = |user: &str, pw: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={pw} dbname={db}",
            c.primary_port()
        )
    };
    let admin = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        c.primary_port()
    ))
    .await;
    admin
        .batch_execute(
            "CREATE TABLE alice_only (v int); INSERT INTO alice_only VALUES (7); \
             GRANT SELECT ON alice_only TO ou_alice; \
             CREATE TABLE ledger (who text, n int); GRANT SELECT, INSERT ON ledger TO ou_alice, ou_bob",
        )
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
    // What the server says directly, to compare with.
    let bob_direct = connect(&direct("ou_bob", "bob-pw")).await;
    let denied_direct = bob_direct
        .simple_query("SELECT v FROM alice_only")
        .await
        .unwrap_err()
        .code()
        .cloned();
    assert_eq!(
        denied_direct,
        Some(tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, own_user_config(db, "wrong", &users)).unwrap();
    let p = start_proxy_file(&path);
    let via = |user: &str, pw: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={pw} dbname={db}",
            p.port
        )
    };
    support::drivers::wait_replicas_ready(&p, db);
    let alice = connect(&via("ou_alice", "alice-to-proxy")).await;
    let bob = connect(&via("ou_bob", "bob-pw")).await;
    // A read (a replica), inside a transaction (the primary), extended protocol.
    for (client, who) in [(&alice, "ou_alice"), (&bob, "ou_bob")] {
        let (read, port) = one_row(client, "SELECT current_user, inet_server_port()").await;
        assert_eq!(read, who);
        assert_ne!(
            port,
            c.primary_port().to_string(),
            "the read went to a replica"
        );
        client.batch_execute("BEGIN").await.unwrap();
        let (tx, port) = one_row(client, "SELECT session_user, inet_server_port()").await;
        assert_eq!((tx.as_str(), port), (who, c.primary_port().to_string()));
        client.batch_execute("COMMIT").await.unwrap();
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), who);
    }
    let v: i32 = alice
        .query_one("SELECT v FROM alice_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 7);
    let denied = bob
        .simple_query("SELECT v FROM alice_only")
        .await
        .unwrap_err();
    assert_eq!(denied.code().cloned(), denied_direct, "{denied}");

    // Many clients of both users interleaving on a pool of two per server: each always sees
    // itself, and what each wrote is recorded as its own.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (user, pw) = if i % 2 == 0 {
            ("ou_alice", "alice-to-proxy")
        } else {
            ("ou_bob", "bob-pw")
        };
        let url = via(user, pw);
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await;
            for n in 0..25 {
                let got = match n % 3 {
                    0 => one_row(&client, "SELECT current_user, 0").await.0,
                    1 => client
                        .query_one("SELECT current_user::text", &[])
                        .await
                        .unwrap()
                        .get(0),
                    _ => {
                        client.batch_execute("BEGIN").await.unwrap();
                        let sql = format!("INSERT INTO ledger VALUES (current_user, {n})");
                        client.batch_execute(&sql).await.unwrap();
                        let who = one_row(&client, "SELECT current_user, 0").await.0;
                        client.batch_execute("COMMIT").await.unwrap();
                        who
                    }
                };
                assert_eq!(
                    got, user,
                    "client {i} ({user}) was served as {got} at step {n}"
                );
            }
            user
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = admin
        .query(
            "SELECT who, count(*) FROM ledger GROUP BY who ORDER BY who",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        counts,
        [("ou_alice".to_string(), 64), ("ou_bob".to_string(), 64)]
    );
    // The capacity the saturation gauge divides by counts the pools of users with a
    // connection open (two users, three servers, two each at most), not the pools of all
    // seven users in the config, most never used.
    let (capacity, pooled) = {
        use switchyard::metrics::TopologySource;
        let snapshot = p.shared().snapshot();
        let s = snapshot.iter().find(|s| s.name == db).unwrap().clone();
        (s.pool_capacity(), s.users)
    };
    assert!((1..=12).contains(&capacity), "capacity {capacity}");
    // /status lists the users whose pools hold connections.
    let names: Vec<&str> = pooled.iter().map(|u| u.user.as_str()).collect();
    assert_eq!(names, ["ou_alice", "ou_bob"], "{pooled:?}");
    assert!(
        pooled.iter().all(|u| u.open >= 1 && u.open <= 6),
        "{pooled:?}"
    );

    // carol's server password is wrong: the server's own error, and nobody else is hurt.
    let before = p.backend_transitions(db);
    // (Her login needs a server connection: the first of a user's logins learns what the
    // servers report at login on one.)
    let err = tokio_postgres::connect(&via("ou_carol", "carol-to-proxy"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("carol's login is refused by the server");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(p.backend_transitions(db), before, "{}", p.backends(db));
    assert_eq!(
        one_row(&alice, "SELECT current_user, 0").await.0,
        "ou_alice"
    );

    // Without a password in the config: dave's SCRAM login gives the keys his server
    // logins use, erin's md5 challenge is answered with her hash; frank's keys do not fit
    // the server's verifier, which the proxy says.
    for (user, pw) in [("ou_dave", "dave-pw"), ("ou_erin", "erin-pw")] {
        let client = connect(&via(user, pw)).await;
        assert_eq!(one_row(&client, "SELECT current_user, 0").await.0, user);
        client.batch_execute("BEGIN").await.unwrap();
        assert_eq!(one_row(&client, "SELECT current_user, 0").await.0, user);
        client.batch_execute("COMMIT").await.unwrap();
    }
    let err = tokio_postgres::connect(&via("ou_frank", "frank-pw"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("frank's server login fails");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err}"
    );
    let msg = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        msg.as_deref().is_some_and(|m| m.contains("verifier")),
        "{msg:?}"
    );
    assert_eq!(p.backend_transitions(db), before, "{}", p.backends(db));

    // asyncpg's own pools, as applications use them (named prepared statements, its reset
    // query on every release, transactions), for alice and for dave, whose server logins pass
    // his SCRAM proof on: every answer names the user it was asked as.
    let program = format!(
        "import asyncio, asyncpg
async def work(pool, user, n):
    for i in range(n):
        assert await pool.fetchval('SELECT current_user') == user
        async with pool.acquire() as c:
            async with c.transaction():
                who, v = await c.fetchrow('SELECT current_user::text, $1::int + 1', i)
                assert (who, v) == (user, i + 1), (who, v)
async def main():
    pools = {{u: await asyncpg.create_pool(host='127.0.0.1', port={port}, user=u, password=pw,
        database='{db}', min_size=2, max_size=4)
        for u, pw in [('ou_alice', 'alice-to-proxy'), ('ou_dave', 'dave-pw')]}}
    await asyncio.gather(*[work(pools[u], u, 20) for u in pools for _ in range(6)])
    for p in pools.values():
        await p.close()
    print('asyncpg ok')
asyncio.run(main())",
        port = p.port
    );
    let (ok, out, err) = run(std::process::Command::new("python3").args(["-c", &program]));
    assert!(ok && out.contains("asyncpg ok"), "asyncpg: {out}{err}");

    // A reload with the right password: carol's new pools log in.
    std::fs::write(&path, own_user_config(db, "carol-to-server", &users)).unwrap();
    switchyard::reload::reload(&p.shared()).unwrap();
    let carol = connect(&via("ou_carol", "carol-to-proxy")).await;
    assert_eq!(
        one_row(&carol, "SELECT current_user, 0").await.0,
        "ou_carol"
    );
    assert_eq!(one_row(&bob, "SELECT current_user, 0").await.0, "ou_bob");
}

/// The first row's first two columns of a simple query.
async fn one_row(client: &tokio_postgres::Client, sql: &str) -> (String, String) {
    for m in client.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return (r.get(0).unwrap().into(), r.get(1).unwrap().into());
        }
    }
    panic!("no row from {sql}");
}

/// The first row's first column of a simple query.
async fn one_value(client: &tokio_postgres::Client, sql: &str) -> String {
    for m in client.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap().into();
        }
    }
    panic!("no row from {sql}");
}

/// Server connections of the `cap_*` users open now, as the server counts them.
async fn count(admin: &tokio_postgres::Client) -> i64 {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE usename IN ('cap_alice', 'cap_bob')";
    admin.query_one(sql, &[]).await.unwrap().get(0)
}

/// `max_server_connections` holds over every user's pools and every worker: two users'
/// clients never have more than the limit open at the server, a client of one user waits
/// while the other's transactions hold every place, and takes a place as soon as one of
/// them goes idle (its connection is closed for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_connection_limit_holds_over_users_and_idle_ones_make_room() {
    let db = "t_cap";
    create_db(db);
    let c = cluster();
    c.psql(
        0,
        "DROP ROLE IF EXISTS cap_alice; DROP ROLE IF EXISTS cap_bob; \
         CREATE ROLE cap_alice LOGIN; CREATE ROLE cap_bob LOGIN",
    )
    .unwrap();
    let text = config_text(
        db,
        "workers = 2",
        "size = 8\ncheckout_timeout = \"10s\"",
        "",
    ) + "server_login = \"client\"\nmax_server_connections = 2\n\n\
         [[user]]\nname = \"cap_alice\"\nauth = \"trust\"\n\n\
         [[user]]\nname = \"cap_bob\"\nauth = \"trust\"\n";
    let p = start_proxy(&text);
    let via = |user: &str| format!("host=127.0.0.1 port={} user={user} dbname={db}", p.port);
    let admin = std::sync::Arc::new(
        connect(&format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            c.primary_port()
        ))
        .await,
    );

    // alice's two transactions hold both places.
    let a1 = connect(&via("cap_alice")).await;
    let a2 = connect(&via("cap_alice")).await;
    for a in [&a1, &a2] {
        a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }
    assert_eq!(count(&admin).await, 2);
    let bob = tokio::spawn({
        let url = via("cap_bob");
        async move {
            let b = connect(&url).await;
            one_row(&b, "SELECT current_user, 0").await.0
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!bob.is_finished(), "bob got a connection beyond the limit");
    assert_eq!(count(&admin).await, 2);
    // One of alice's goes idle: closed for bob, who goes on.
    a1.batch_execute("COMMIT").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), bob).await;
    assert_eq!(got.expect("bob waited on").unwrap(), "cap_bob");
    assert!(count(&admin).await <= 2);
    a2.batch_execute("COMMIT").await.unwrap();

    // Many clients of both users at once, watched from the server's side.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shared = p.shared();
    let watcher = tokio::spawn({
        let (stop, admin) = (stop.clone(), admin.clone());
        async move {
            let mut most = 0;
            let mut most_proxy = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(count(&admin).await);
                use switchyard::metrics::TopologySource;
                let open = shared
                    .snapshot()
                    .iter()
                    .find(|s| s.name == db)
                    .unwrap()
                    .backends[0]
                    .pool_open;
                most_proxy = most_proxy.max(open);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (most, most_proxy)
        }
    });
    let mut tasks = Vec::new();
    for i in 0..12 {
        let user = if i % 2 == 0 { "cap_alice" } else { "cap_bob" };
        let url = via(user);
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await;
            for _ in 0..15 {
                client.batch_execute("BEGIN").await.unwrap();
                let who = one_row(&client, "SELECT current_user, pg_sleep(0.005)")
                    .await
                    .0;
                assert_eq!(who, user);
                client.batch_execute("COMMIT").await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (most, most_proxy) = watcher.await.unwrap();
    eprintln!("most connections at once: {most} seen by the server, {most_proxy} by the proxy");
    assert!(
        (1..=2).contains(&most_proxy),
        "{most_proxy} open at the proxy at once"
    );
    // (The server may still count a connection closed to make room for a moment.)
    assert!((1..=3).contains(&most), "{most} seen by the server at once");
}

/// Users the config does not name log in with the verifier the servers keep
/// (`auth_query`, PgBouncer's): through a SECURITY DEFINER function run by a user of its own
/// where the servers see each client's own user (SCRAM keys and md5 hashes passed on), and
/// straight from pg_shadow where every client runs as the cluster's user. Unknown users,
/// users without a password and wrong passwords fail as a wrong password does; a changed
/// password counts from the next login; a reload keeps the users' pools; config users go on
/// as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_the_servers_know_log_in_through_auth_query() {
    let db = "t_auth_query";
    let shared_db = "t_auth_query_shared";
    create_db(db);
    let c = cluster();
    c.psql(
        0,
        "DROP ROLE IF EXISTS aq_alice; DROP ROLE IF EXISTS aq_bob; DROP ROLE IF EXISTS aq_nopw; \
         DROP ROLE IF EXISTS aq_lookup; \
         CREATE ROLE aq_alice LOGIN PASSWORD 'alice-pw'; CREATE ROLE aq_nopw LOGIN; \
         CREATE ROLE aq_lookup LOGIN PASSWORD 'lookup-pw'; \
         SET password_encryption = 'md5'; CREATE ROLE aq_bob LOGIN PASSWORD 'bob-pw'",
    )
    .unwrap();
    c.psql_db(
        0,
        db,
        "CREATE SCHEMA lookup; \
         CREATE FUNCTION lookup.get_auth(p_user text) RETURNS TABLE (usename name, passwd text) \
         LANGUAGE sql SECURITY DEFINER AS \
         $$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_user $$; \
         REVOKE ALL ON FUNCTION lookup.get_auth(text) FROM PUBLIC; \
         GRANT USAGE ON SCHEMA lookup TO aq_lookup; \
         GRANT EXECUTE ON FUNCTION lookup.get_auth(text) TO aq_lookup; \
         CREATE TABLE notes (who text, n int); GRANT SELECT, INSERT ON notes TO aq_alice, aq_bob",
    )
    .unwrap();
    for node in 0..=c.replica_ports().len() {
        c.prepend_hba(
            node,
            "host all aq_bob 127.0.0.1/32 md5\n\
             host all aq_alice,aq_nopw,aq_lookup 127.0.0.1/32 scram-sha-256",
        )
        .unwrap();
    }
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
    let config = |lookup_pw: &str| {
        routing_config(cluster(), db, "server_login = \"client\"")
            + &format!(
                r#"auth_query = "SELECT * FROM lookup.get_auth($1)"
auth_user = "aq_lookup"
auth_password = "{lookup_pw}"

[[cluster]]
name = "{shared_db}"
database = "{shared_db}"
backend_database = "{db}"
primary = "127.0.0.1:{primary}"
user = "postgres"
auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1 AND current_database() = 'postgres'"
auth_database = "postgres"

[pool]
size = 2
"#,
                primary = c.primary_port()
            )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config("lookup-pw")).unwrap();
    let p = start_proxy_file(&path);
    support::drivers::wait_replicas_ready(&p, db);
    let via = |user: &str, pw: &str, db: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={pw} dbname={db}",
            p.port
        )
    };
    let refused = |user: &str, pw: &str, db: &str| {
        let url = via(user, pw, db);
        async move {
            tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .err()
                .unwrap_or_else(|| panic!("{url} logged in"))
        }
    };

    // Looked up, and seen by the servers as themselves: alice by SCRAM on the replicas and
    // the primary, bob by md5.
    for (user, pw) in [("aq_alice", "alice-pw"), ("aq_bob", "bob-pw")] {
        let client = connect(&via(user, pw, db)).await;
        let (who, port) = one_row(&client, "SELECT current_user, inet_server_port()").await;
        assert_eq!(who, user);
        assert_ne!(
            port,
            c.primary_port().to_string(),
            "the read went to a replica"
        );
        client.batch_execute("BEGIN").await.unwrap();
        client
            .batch_execute("INSERT INTO notes VALUES (current_user, 1)")
            .await
            .unwrap();
        let (who, port) = one_row(&client, "SELECT session_user, inet_server_port()").await;
        assert_eq!((who.as_str(), port), (user, c.primary_port().to_string()));
        client.batch_execute("COMMIT").await.unwrap();
    }
    // Where every client runs as the cluster's user, only the login is the user's own (looked
    // up in another database: the query finds nobody elsewhere).
    let shared = connect(&via("aq_alice", "alice-pw", shared_db)).await;
    assert_eq!(
        one_row(&shared, "SELECT current_user, 0").await.0,
        "postgres"
    );

    // Refusals read as a wrong password's, whatever the reason.
    for (user, pw, why) in [
        ("aq_alice", "not-alices", "a wrong password"),
        ("aq_bob", "not-bobs", "a wrong md5 password"),
        ("aq_nobody", "x", "an unknown user"),
        ("aq_nopw", "x", "a user without a password"),
    ] {
        let err = refused(user, pw, db).await;
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
            "{why}: {err}"
        );
    }
    // A user of a database whose cluster does not look users up is unknown there.
    let other = "t_auth_query_none";
    let err = refused("aq_alice", "alice-pw", other).await;
    assert!(err.code().is_some(), "{err}");

    // asyncpg pools of a looked-up user (named statements, its reset on release).
    let program = format!(
        "import asyncio, asyncpg
async def work(pool, n):
    for i in range(n):
        assert await pool.fetchval('SELECT current_user') == 'aq_alice'
        async with pool.acquire() as c:
            async with c.transaction():
                v = await c.fetchval('SELECT $1::int + 1', i)
                assert v == i + 1, v
async def main():
    pool = await asyncpg.create_pool(host='127.0.0.1', port={port}, user='aq_alice',
        password='alice-pw', database='{db}', min_size=4, max_size=8)
    await asyncio.gather(*[work(pool, 20) for _ in range(8)])
    await pool.close()
    print('asyncpg ok')
asyncio.run(main())",
        port = p.port
    );
    let (ok, out, err) = run(std::process::Command::new("python3").args(["-c", &program]));
    assert!(ok && out.contains("asyncpg ok"), "asyncpg: {out}{err}");

    // A changed password: the old one no longer logs in, the new one does (the entry is
    // asked again after the failure), and the servers take the new proof.
    c.psql(0, "ALTER ROLE aq_alice PASSWORD 'alice-new'")
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
    tokio::time::sleep(switchyard::pool::LOOKED_UP_FRESH).await;
    let err = refused("aq_alice", "alice-pw", db).await;
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err}"
    );
    let alice = connect(&via("aq_alice", "alice-new", db)).await;
    for sql in [
        "SELECT current_user, 0",
        "SELECT current_user, 1 FROM notes LIMIT 1",
    ] {
        assert_eq!(one_row(&alice, sql).await.0, "aq_alice");
    }

    // A reload keeps looked-up users' pools; one with the lookup user's password wrong
    // leaves users already seen logging in and tells others why not.
    switchyard::reload::reload(&p.shared()).unwrap();
    assert_eq!(
        one_row(&alice, "SELECT current_user, 0").await.0,
        "aq_alice"
    );
    std::fs::write(&path, config("wrong")).unwrap();
    switchyard::reload::reload(&p.shared()).unwrap();
    tokio::time::sleep(switchyard::pool::LOOKED_UP_FRESH).await;
    let again = connect(&via("aq_bob", "bob-pw", db)).await;
    assert_eq!(one_row(&again, "SELECT current_user, 0").await.0, "aq_bob");
    c.psql(
        0,
        "DROP ROLE IF EXISTS aq_carol; CREATE ROLE aq_carol LOGIN PASSWORD 'carol-pw'",
    )
    .unwrap();
    let err = refused("aq_carol", "carol-pw", db).await;
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::CONNECTION_FAILURE),
        "{err}"
    );
    let msg = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        msg.as_deref().is_some_and(|m| m.contains("auth_query")),
        "{msg:?}"
    );
    // Operators see the failures counted.
    let text = {
        let shared = p.shared();
        shared.metrics.encode(&*shared)
    };
    let series = format!("switchyard_errors_total{{cluster=\"{db}\",kind=\"auth_query\"}} ");
    assert!(text.lines().any(|l| l.starts_with(&series)), "{text}");
    // Mended: carol, created after the proxy started, logs in.
    std::fs::write(&path, config("lookup-pw")).unwrap();
    switchyard::reload::reload(&p.shared()).unwrap();
    let carol = connect(&via("aq_carol", "carol-pw", db)).await;
    assert_eq!(
        one_row(&carol, "SELECT current_user, 0").await.0,
        "aq_carol"
    );
    // Config users log in as before.
    let app = connect(&via("app", "secret", shared_db)).await;
    assert_eq!(one_row(&app, "SELECT current_user, 0").await.0, "postgres");
    let rows = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        c.primary_port()
    ))
    .await
    .query("SELECT who FROM notes ORDER BY who", &[])
    .await
    .unwrap();
    let who: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(who, ["aq_alice", "aq_bob"]);
}

/// A client that asks for a large result and then reads nothing of it (a hung application)
/// would hold its server connection for as long as it lives: the proxy stops reading from
/// the server once it holds a quarter of a MiB for the client, and the server waits. With
/// `[general] client_write_timeout`, once the client has taken nothing for that long its
/// session ends, the statement is cancelled and the connection closed: the next client of a
/// pool of one gets a connection at once, and the server runs nothing for the stuck one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_results_frees_its_server_connection() {
    create_db("t_stuck");
    let p = start_proxy(&config_text(
        "t_stuck",
        "workers = 1\nclient_write_timeout = \"1s\"",
        "size = 1\ncheckout_timeout = \"10s\"",
        "",
    ));
    // Logged in (and the login's parameters learnt) before the stuck client takes the pool.
    let next = connect(&p.conn_str("t_stuck")).await;
    next.simple_query("SELECT 1").await.unwrap();
    let mut stuck =
        support::raw::Raw::connect_with(p.port, "app_trust", "t_stuck", &[], Some(4096)).await;
    stuck
        .send(&support::raw::msg::query(
            "SELECT repeat('x', 1000) FROM generate_series(1, 1000000)",
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), next.simple_query("SELECT 1")).await;
    let took = t0.elapsed();
    assert!(matches!(r, Ok(Ok(_))), "{r:?}");
    assert!(
        took < Duration::from_secs(5),
        "the next client waited {took:?}"
    );
    let running = cluster()
        .psql(
            0,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 1000000)%' \
             AND state = 'active' AND pid <> pg_backend_pid()",
        )
        .unwrap();
    assert_eq!(
        running.trim(),
        "0",
        "the stuck client's statement still runs"
    );
    drop(stuck);
}

/// `[pool] query_timeout`: a statement its server has run that long is cancelled as the
/// client's own cancel request would cancel it, and the client goes on, as after the
/// server's own statement_timeout: outside a transaction at once, inside one after ROLLBACK.
/// The clock counts per batch (pipelined statements each under the limit are left alone)
/// and not while the server waits for the client's COPY data; a reload turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_past_query_timeout_are_cancelled_and_their_clients_go_on() {
    use tokio_postgres::error::SqlState;
    let db = "t_qtimeout";
    create_db(db);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let config = |limit: &str| {
        config_text(
            db,
            "",
            &format!("size = 2\nquery_timeout = \"{limit}\""),
            "",
        )
    };
    std::fs::write(&path, config("1s")).unwrap();
    let p = start_proxy_file(&path);
    let a = connect(&p.conn_str(db)).await;
    let cancelled = |e: tokio_postgres::Error, what: &str| {
        let d = e
            .as_db_error()
            .unwrap_or_else(|| panic!("{what}: not a server error: {e:?}"));
        assert_eq!(d.code(), &SqlState::QUERY_CANCELED, "{what}: {d:?}");
        assert!(d.message().contains("query_timeout"), "{what}: {d:?}");
    };
    // Simple protocol.
    let t0 = Instant::now();
    let e = a.simple_query("SELECT pg_sleep(30)").await.unwrap_err();
    cancelled(e, "simple");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(one_value(&a, "SELECT 1").await, "1");
    // Extended protocol inside a transaction: the transaction is failed, as
    // the server fails it on its own timeout, until the client rolls back.
    a.batch_execute("BEGIN").await.unwrap();
    let e = a.query("SELECT pg_sleep($1)", &[&30f64]).await.unwrap_err();
    cancelled(e, "extended, in a transaction");
    let e = a.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{e:?}"
    );
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(one_value(&a, "SELECT 2").await, "2");
    // Three pipelined statements of 0.6 s each (1.8 s in all): each is its own batch.
    let q = "SELECT pg_sleep(0.6)::text";
    let (x, y, z) = tokio::join!(a.query(q, &[]), a.query(q, &[]), a.query(q, &[]));
    for r in [x, y, z] {
        assert!(r.is_ok(), "a pipelined statement under the limit: {r:?}");
    }
    // COPY from a client that takes 1.5 s over its data: the server waits for the client.
    a.batch_execute("CREATE TABLE copied (x int)")
        .await
        .unwrap();
    let mut raw = support::raw::Raw::connect(p.port, "app_trust", db, &[]).await;
    raw.send(&support::raw::msg::query("COPY copied FROM STDIN"))
        .await;
    raw.until_tag(b'G').await;
    raw.send(&support::raw::msg::copy_data(b"1\n")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    raw.send(&support::raw::msg::copy_data(b"2\n")).await;
    raw.send(&support::raw::msg::copy_done()).await;
    let (_, err) = support::raw::split(&raw.until_ready(1).await);
    assert_eq!(err, None, "COPY from a slow client");
    assert_eq!(one_value(&a, "SELECT count(*) FROM copied").await, "2");
    // Counted for operators: the two stopped above.
    let text = {
        let shared = p.shared();
        shared.metrics.encode(&*shared)
    };
    let series = format!("switchyard_errors_total{{cluster=\"{db}\",kind=\"query_timeout\"}} 2");
    assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
    // Off by reload, for the clients connected already.
    std::fs::write(&path, config("0s")).unwrap();
    switchyard::reload::reload(&p.shared()).unwrap();
    a.simple_query("SELECT pg_sleep(1.5)").await.unwrap();
}

/// `[pool] query_timeout` when the server does not answer even the cancel (here: its backend
/// process stopped by SIGSTOP): the client is disconnected `QUERY_TIMEOUT_GRACE` (5 s, longer
/// than the limit here) after the cancel, told FATAL 57P01 as `POST /clients/close` tells it,
/// and the connection is closed, never pooled: the next client of the pool of one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_the_query_timeout_cancel_costs_only_its_client() {
    let db = "t_qhang";
    create_db(db);
    let p = start_proxy(&config_text(
        db,
        "",
        "size = 1\ncheckout_timeout = \"20s\"\nquery_timeout = \"1s\"",
        "",
    ));
    let mut raw = support::raw::Raw::connect(p.port, "app_trust", db, &[]).await;
    assert_eq!(raw.simple("BEGIN").await.1, None);
    let pid = raw.value("SELECT pg_backend_pid()").await.unwrap();
    struct Resume(String);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0])
                .status();
        }
    }
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stopped.success());
    let resume = Resume(pid.clone());
    let t0 = Instant::now();
    raw.send(&support::raw::msg::query("SELECT 1")).await;
    let mut msgs = Vec::new();
    while let Some(m) = raw.recv_within(Duration::from_secs(20)).await {
        msgs.push(m);
    }
    let took = t0.elapsed();
    drop(resume);
    let fatal = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .map(|m| (m.field(b'S'), m.field(b'C')));
    assert_eq!(
        fatal,
        Some((Some("FATAL".to_string()), Some("57P01".to_string()))),
        "{}",
        support::raw::summary(&msgs)
    );
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(15),
        "disconnected after {took:?}"
    );
    // The pool's one connection was closed, not handed on: a new client gets a new backend.
    let mut next = support::raw::Raw::connect(p.port, "app_trust", db, &[]).await;
    assert_eq!(next.simple("BEGIN").await.1, None);
    let other = next.value("SELECT pg_backend_pid()").await.unwrap();
    assert_ne!(other, pid);
    assert_eq!(next.simple("COMMIT").await.1, None);
    let t0 = Instant::now();
    loop {
        let left = cluster()
            .psql(
                0,
                &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
            )
            .unwrap();
        if left.trim() == "0" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "backend {pid} lives on"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// TCP keepalive (`[general] tcp_keepalive`, on by default) is set on the client's
/// connection to the proxy and on the proxy's connection to the server, with the configured
/// idle time, so that a peer that vanishes without closing (a powered-off host, a cut
/// network) is found: a client gone inside a transaction no longer holds its server
/// connection and its locks for ever, and a statement waiting on a vanished server ends.
/// (Loopback cannot lose a probe's answer; what is checked is the kernel's timer on both
/// sockets, against the same with the setting off.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_server_connections_have_tcp_keepalive() {
    let db = "keepalivedb";
    create_db(db);
    let server_port = cluster().primary_port();
    for on in [true, false] {
        let general = format!("tcp_keepalive = {on}\ntcp_keepidle = \"37s\"");
        let p = start_proxy(&config_text(db, &general, "", ""));
        let client = connect(&p.conn_str(db)).await;
        // The port the proxy's server connection has at its end.
        let row = client
            .query_one("SELECT inet_client_port()", &[])
            .await
            .unwrap();
        let proxy_side: i32 = row.get(0);
        let timers =
            switchyard::testkit::socket_timers(&[(p.port, 0), (proxy_side as u16, server_port)]);
        switchyard::testkit::assert_keepalive(&["client", "server"], &timers, on, 37);
    }
}

/// `[pool] size` is the pool's size over all worker threads, not a fixed share of it per
/// worker: clients of one worker that all need a connection at once get them while another
/// worker's connections sit idle (one of those is closed to make room, as PgBouncer's single
/// pool would simply hand it over), and the server never sees more than `size` connections.
/// Clients are placed by the kernel and the proxy's balancing, so each one's worker is read
/// from the workers' client counts as it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_clients_of_one_worker_use_the_connections_another_leaves_idle() {
    use std::sync::atomic::Ordering::Relaxed;
    const SIZE: usize = 4;
    let db = "sharedpooldb";
    create_db(db);
    let p = start_proxy(&config_text(
        db,
        "workers = 2",
        &format!("size = {SIZE}\ncheckout_timeout = \"20s\""),
        "",
    ));
    let shared = p.shared();
    let loads = || -> Vec<usize> {
        shared
            .live_workers()
            .iter()
            .map(|w| w.load.load(Relaxed))
            .collect()
    };
    let started = Instant::now();
    while loads().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "workers never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIZE clients on each worker.
    let mut on: [Vec<tokio_postgres::Client>; 2] = [Vec::new(), Vec::new()];
    while on.iter().any(|c| c.len() < SIZE) {
        assert!(
            on[0].len() + on[1].len() < 8 * SIZE,
            "clients land on one worker only"
        );
        let before = loads();
        let client = connect(&p.conn_str(db)).await;
        let after = loads();
        let w = (0..2)
            .find(|&w| after[w] > before[w])
            .expect("a worker took the client");
        if on[w].len() < SIZE {
            on[w].push(client);
        }
    }
    let [first, second] = on;
    // The second worker's clients open connections and leave them idle in its pool.
    futures_util::future::join_all(
        second
            .iter()
            .map(|c| c.simple_query("SELECT pg_sleep(0.3)")),
    )
    .await
    .into_iter()
    .for_each(|r| drop(r.unwrap()));
    // The first worker's clients all need one at once, for a second.
    let watch = |sql: &'static str| async move {
        cluster()
            .psql_db(0, db, sql)
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    let busy = futures_util::future::join_all(
        first.iter().map(|c| c.simple_query("SELECT pg_sleep(1.5)")),
    );
    let sample = async {
        let (mut running, mut open) = (0, 0);
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            running = running.max(
                watch(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(1.5)' \
                     AND state = 'active'",
                )
                .await,
            );
            open = open.max(
                watch(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'switchyard'",
                )
                .await,
            );
        }
        (running, open)
    };
    let (results, (running, open)) = tokio::join!(busy, sample);
    results.into_iter().for_each(|r| drop(r.unwrap()));
    assert_eq!(
        running, SIZE,
        "the busy worker's clients ran {running} at a time, with {SIZE} connections in the pool"
    );
    assert!(
        open <= SIZE,
        "{open} server connections for a pool of {SIZE}"
    );
}
