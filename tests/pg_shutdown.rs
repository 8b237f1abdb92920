//! SIGTERM drains: no new clients, running transactions finish, then the process exits 0.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::process::Proc;
use support::*;

#[tokio::test]
async fn sigterm_lets_running_transactions_finish_then_exits_zero() {
    create_db("t_drain");
    let port = free_port();
    let text = config_text("t_drain", "", "", "")
        .replace("drain_timeout = \"2s\"", "drain_timeout = \"10s\"")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
    let (_dir, mut child) = run_proxy(&text);
    let conn_str = format!("host=127.0.0.1 port={port} user=app password=secret dbname=t_drain");
    let start = Instant::now();
    let a = loop {
        match tokio_postgres::connect(&conn_str, tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                break c;
            }
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("proxy did not come up: {e}"),
        }
    };
    let idle = connect(&conn_str).await;
    a.batch_execute("CREATE TABLE d (x int)").await.unwrap();
    a.batch_execute("BEGIN; INSERT INTO d VALUES (1)")
        .await
        .unwrap();

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Refused at once, not left in the accept queue until the drain ends.
    let refused = tokio::time::timeout(
        Duration::from_secs(2),
        tokio_postgres::connect(&conn_str, tokio_postgres::NoTls),
    )
    .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a new client was accepted (or left waiting) while draining"
    );
    // The idle client was told the proxy is going away.
    let e = idle.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        e.is_closed() || e.as_db_error().is_some_and(|d| d.code().code() == "57P01"),
        "{e}"
    );
    // The running transaction finishes.
    a.batch_execute("INSERT INTO d VALUES (2); COMMIT")
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("proxy did not exit after draining");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");
    let n = cluster()
        .psql_db(0, "t_drain", "SELECT count(*) FROM d")
        .unwrap();
    assert_eq!(n, "2");
}

/// A proxy process on the config `text` (in a directory kept as long as the first value).
fn run_proxy(text: &str) -> (tempfile::TempDir, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("switchyard.toml");
    std::fs::write(&cfg, text).unwrap();
    let child = Proc(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (dir, child)
}

fn readyz(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    raw.split(' ').nth(1)?.parse().ok()
}

#[test]
fn sigterm_under_pgbench_finishes_started_transactions_and_readiness_drops_at_once() {
    create_db("t_drain16");
    let (port, admin) = (free_port(), free_port());
    let text = config_text("t_drain16", "shutdown_grace = \"1s\"", "", "")
        .replace("drain_timeout = \"2s\"", "drain_timeout = \"10s\"")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let (_dir, mut child) = run_proxy(&text);
    let start = Instant::now();
    while readyz(admin) != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "proxy never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("postgres://app:secret@127.0.0.1:{port}/t_drain16");
    let (ok, out, err) = run(Command::new("pgbench")
        .args(["-i", "-s", "1", "-q"])
        .arg(&url));
    assert!(ok, "{out}{err}");
    let bench = Command::new("pgbench")
        .args(["-M", "simple", "-c", "16", "-j", "2", "-T", "30"])
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(readyz(admin), Some(503), "readiness did not drop at once");
    let status = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "proxy did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(status.success(), "exit status {status}");
    let out = bench.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Clients are turned away only between transactions: at BEGIN (command 4 of the
    // built-in TPC-B-like script), never inside one.
    for line in text.lines().filter(|l| l.contains("aborted in command")) {
        assert!(
            line.contains("aborted in command 4 "),
            "a transaction was cut: {line}\n{text}"
        );
    }
    let failed = text
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .unwrap_or("0");
    assert!(failed.starts_with('0'), "{text}");
    let processed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no processed count:\n{text}"));
    // Every transaction pgbench saw complete is committed, and no other one is.
    let history: u64 = cluster()
        .psql_db(0, "t_drain16", "SELECT count(*) FROM pgbench_history")
        .unwrap()
        .parse()
        .unwrap();
    assert!(processed > 0);
    assert_eq!(history, processed, "{text}");
}
