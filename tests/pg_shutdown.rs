//! SIGTERM drains: no new clients, running transactions finish, then the process exits 0.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("switchyard.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    assert!(
        tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
            .await
            .is_err(),
        "a new client was accepted while draining"
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
