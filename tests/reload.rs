//! Live config reload against a real primary with two streaming replicas: reloads under
//! pgbench load (add/remove replicas, weights, pool size, lag limit), and invalid configs
//! sent by SIGHUP to the real binary and by `POST /reload`, which must change nothing.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::process::Proc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Config for database `db` on the shared cluster. `replicas`: (port, weight).
fn reload_config(
    db: &str,
    listen: &str,
    admin: &str,
    replicas: &[(u16, u32)],
    pool_size: usize,
    max_lag: &str,
) -> String {
    let c = cluster();
    let replicas: Vec<String> = replicas
        .iter()
        .map(|(p, w)| format!("{{ addr = \"127.0.0.1:{p}\", weight = {w} }}"))
        .collect();
    format!(
        r#"
[general]
workers = 2
drain_timeout = "2s"

[postgres]
listen = "{listen}"

[admin]
listen = "{admin}"

[pool]
size = {pool_size}
checkout_timeout = "10s"

[health]
interval = "200ms"
timeout = "1s"
rise = 2
fall = 2

[[user]]
name = "app"
password = "secret"

[[cluster]]
name = "{db}"
database = "{db}"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]
user = "postgres"
max_lag = "{max_lag}"
"#,
        primary = c.primary_port(),
        replicas = replicas.join(", "),
    )
}

/// (status, body) of a plain HTTP/1.1 request to the admin API.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .expect("admin request timed out");
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// `switchyard_config_reload_total{result="..."}` from /metrics (0 when absent).
async fn reloads(admin: SocketAddr, result: &str) -> u64 {
    let (_, body) = http(admin, "GET", "/metrics").await;
    let key = format!("switchyard_config_reload_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

/// Servers that answered `n` reads on `client`.
async fn read_ports(client: &tokio_postgres::Client, n: usize) -> HashSet<u16> {
    let mut seen = HashSet::new();
    for _ in 0..n {
        seen.insert(served_by(client, "SELECT inet_server_port()").await);
    }
    seen
}

fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_pgbench_load_lose_nothing_and_drain_removed_replicas() {
    let db = "t_reload_load";
    let c = cluster();
    create_db_on(c, db);
    let (a, b) = (c.replica_ports()[0], c.replica_ports()[1]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let cfg = |replicas: &[(u16, u32)], size: usize, lag: &str| {
        reload_config(db, "127.0.0.1:0", "127.0.0.1:0", replicas, size, lag)
    };
    write_file(&path, &cfg(&[(a, 1), (b, 1)], 8, "10s"));
    let server = switchyard::app::Server::start_file(&path).expect("proxy starts");
    let admin = server.admin_addr.unwrap();
    let port = server.pg_addr.unwrap().port();
    let url = format!("postgres://app:secret@127.0.0.1:{port}/{db}");
    let conn_str = format!("host=127.0.0.1 port={port} user=app password=secret dbname={db}");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let init = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(std::process::Command::new("pgbench").args(["-i", "-s", "1", "-q", &url]))
    })
    .await
    .unwrap();
    assert!(init.0, "pgbench -i: {}{}", init.1, init.2);
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();

    let existing = connect(&conn_str).await;
    assert_eq!(read_ports(&existing, 40).await, HashSet::from([a, b]));

    let bench = tokio::task::spawn_blocking({
        let url = url.clone();
        move || pgbench(&url, &["-M", "prepared", "-c", "8", "-j", "2", "-T", "20"])
    });
    let steps: Vec<String> = vec![
        cfg(&[(a, 1)], 8, "10s"),         // remove B
        cfg(&[(a, 1), (b, 1)], 8, "10s"), // add B back
        cfg(&[(a, 1), (b, 3)], 8, "10s"), // weights
        cfg(&[(a, 1), (b, 3)], 4, "10s"), // pool size
        cfg(&[(a, 1), (b, 3)], 4, "30s"), // lag limit
        cfg(&[(a, 2), (b, 1)], 6, "30s"), // weights and pool size
        cfg(&[(b, 1)], 6, "30s"),         // remove A
        cfg(&[(b, 1), (a, 1)], 6, "5s"),  // add A, lag limit
        cfg(&[(a, 1), (b, 1)], 8, "10s"), // reorder, pool size
        cfg(&[(a, 1)], 8, "10s"),         // remove B for good
    ];
    for (i, text) in steps.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        write_file(&path, text);
        let (status, body) = http(admin, "POST", "/reload").await;
        assert_eq!(status, 200, "reload {i}: {body}");
        assert!(body.starts_with("reloaded: 1 clusters"), "{body}");
        // Reads keep working on the existing connection after every reload.
        existing.simple_query("SELECT 1").await.unwrap();
    }
    let (failed, done, out) = bench.await.unwrap();
    assert_eq!(failed, 0, "{out}");
    assert!(done > 0, "{out}");
    assert_eq!(reloads(admin, "ok").await, 10);
    assert_eq!(reloads(admin, "error").await, 0);

    // B was removed: no read goes there, on the old connection or a new one.
    assert_eq!(read_ports(&existing, 100).await, HashSet::from([a]));
    let fresh = connect(&conn_str).await;
    assert_eq!(read_ports(&fresh, 100).await, HashSet::from([a]));
    let (_, status) = http(admin, "GET", "/status").await;
    assert!(!status.contains(&format!(":{b}\"")), "{status}");
    assert!(status.contains(&format!(":{a}\"")), "{status}");
    // The pools for B were closed: no proxy connection to B is left open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = c
        .psql(
            2,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'switchyard'"),
        )
        .unwrap();
    assert_eq!(
        left.trim(),
        "0",
        "connections still open on the removed replica"
    );
    drop((existing, fresh));
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
}

/// The real binary, killed when dropped.
async fn wait_ready(admin: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(admin).await.is_ok()
            && http(admin, "GET", "/readyz").await.0 == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("switchyard did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_by_sighup_and_admin_change_nothing() {
    let db = "t_reload_bad";
    let c = cluster();
    create_db_on(c, db);
    let (a, b) = (c.replica_ports()[0], c.replica_ports()[1]);
    let (pg_port, admin_port) = (free_port(), free_port());
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let listen = format!("127.0.0.1:{pg_port}");
    let good = reload_config(db, &listen, &admin.to_string(), &[(a, 1)], 4, "10s");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    write_file(&path, &good);
    let child = Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--config"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(admin).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let conn_str = format!("host=127.0.0.1 port={pg_port} user=app password=secret dbname={db}");
    let existing = connect(&conn_str).await;
    assert_eq!(read_ports(&existing, 20).await, HashSet::from([a]));

    let bad: Vec<(String, &str)> = vec![
        (good.replace("[pool]", "[pool"), "line"),
        (good.replace("[pool]", "[pool]\nsise = 3"), "sise"),
        (
            good.replace(
                &format!("replicas = [{{ addr = \"127.0.0.1:{a}\", weight = 1 }}]"),
                &format!("replicas = [\"127.0.0.1:{a}\", \"127.0.0.1:{b}\", \"no port here\"]"),
            ),
            "cluster[0].replicas[2]",
        ),
        (good.replace("size = 4", "size = 0"), "pool.size"),
    ];
    let pid = child.0.id() as libc::pid_t;
    let mut errors = 0;
    for (text, key) in &bad {
        assert_ne!(text, &good, "the bad config differs");
        write_file(&path, text);
        // By signal: the error count moves, nothing else.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        errors += 1;
        let mut seen = 0;
        for _ in 0..50 {
            seen = reloads(admin, "error").await;
            if seen >= errors {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, errors, "SIGHUP with a bad config ({key}) counted");
        // By the admin API: 400 naming the key.
        let (status, body) = http(admin, "POST", "/reload").await;
        errors += 1;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(key), "{key} not in {body}");
        // Reads still go where they went, on the old connection and a new one.
        assert_eq!(read_ports(&existing, 20).await, HashSet::from([a]));
        let fresh = connect(&conn_str).await;
        assert_eq!(read_ports(&fresh, 20).await, HashSet::from([a]));
    }
    assert_eq!(reloads(admin, "error").await, 8);
    assert_eq!(reloads(admin, "ok").await, 0);
    let (_, status) = http(admin, "GET", "/status").await;
    assert!(!status.contains(&format!(":{b}\"")), "{status}");

    // A valid file by SIGHUP is applied: B joins, and the existing connection reaches it.
    write_file(
        &path,
        &reload_config(db, &listen, &admin.to_string(), &[(a, 1), (b, 1)], 4, "10s"),
    );
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let mut seen = HashSet::new();
    for _ in 0..50 {
        seen.extend(read_ports(&existing, 10).await);
        if seen.contains(&b) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, HashSet::from([a, b]));
    assert_eq!(reloads(admin, "ok").await, 1);
    assert_eq!(reloads(admin, "error").await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_removed_database_get_3d000_and_others_continue() {
    let db = "t_reload_gone";
    let c = cluster();
    create_db_on(c, db);
    let a = c.replica_ports()[0];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let text = reload_config(db, "127.0.0.1:0", "127.0.0.1:0", &[(a, 1)], 4, "10s");
    write_file(&path, &text);
    let server = switchyard::app::Server::start_file(&path).expect("proxy starts");
    let admin = server.admin_addr.unwrap();
    let port = server.pg_addr.unwrap().port();
    let conn_str =
        |db: &str| format!("host=127.0.0.1 port={port} user=app password=secret dbname={db}");
    let old = connect(&conn_str(db)).await;
    old.simple_query("SELECT 1").await.unwrap();

    // The same servers, now served under another database name only.
    let renamed = text.replace(
        &format!("database = \"{db}\""),
        &format!("database = \"{db}_new\"\nbackend_database = \"{db}\""),
    );
    write_file(&path, &renamed);
    let (status, body) = http(admin, "POST", "/reload").await;
    assert_eq!(status, 200, "{body}");
    let err = old.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("3D000"),
        "{err}"
    );
    let fresh = connect(&conn_str(&format!("{db}_new"))).await;
    assert_eq!(read_ports(&fresh, 10).await, HashSet::from([a]));
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
}

/// Defect: a read whose replica failed before answering is retried elsewhere; after a reload
/// that removed backends, the retry looked up the failed backend by its index in the *new*
/// topology and the session panicked. The client must get its answer from another backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_failing_on_a_replica_removed_by_a_reload_is_retried_not_a_panic() {
    // Logs on, as in production: the panic was in the arguments of a log line.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("switchyard=info")
        .try_init();
    let db = "t_reload_retry";
    let c = cluster();
    create_db_on(c, db);
    c.psql_db(0, db, "CREATE TABLE lk (a int)").unwrap();
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
    let (a, b) = (c.replica_ports()[0], c.replica_ports()[1]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let cfg = |replicas: &[(u16, u32)]| {
        reload_config(db, "127.0.0.1:0", "127.0.0.1:0", replicas, 4, "10s")
    };
    write_file(&path, &cfg(&[(a, 1), (b, 1)]));
    let server = switchyard::app::Server::start_file(&path).expect("proxy starts");
    let admin = server.admin_addr.unwrap();
    let port = server.pg_addr.unwrap().port();
    let conn_str = format!("host=127.0.0.1 port={port} user=app password=secret dbname={db}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // An exclusive lock held on the primary is replayed on the replicas: a read of the table
    // there waits for it before the server has sent anything, so it can still be retried.
    let holder = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        c.primary_port()
    ))
    .await;
    holder
        .batch_execute("BEGIN; LOCK TABLE lk IN ACCESS EXCLUSIVE MODE; SELECT pg_switch_wal()")
        .await
        .unwrap();
    let mut hit = false;
    for attempt in 0..10 {
        let client = connect(&conn_str).await;
        let sql = format!("SELECT count(*) FROM lk /* retry {attempt} */");
        let read = tokio::spawn(async move { client.simple_query(&sql).await.map(|_| ()) });
        // Find the read waiting on replica b (the last backend: index 2).
        let probe = format!(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE '%retry {attempt} */' AND pid <> pg_backend_pid()"
        );
        let mut pid = String::new();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            pid = c.psql_db(2, db, &probe).unwrap().trim().to_string();
            if !pid.is_empty() {
                break;
            }
        }
        if pid.is_empty() {
            // It went to replica a, where it waits for the lock too: leave it.
            continue;
        }
        // Remove replica b (the new topology has two backends), then make b fail the read.
        write_file(&path, &cfg(&[(a, 1)]));
        let (status, body) = http(admin, "POST", "/reload").await;
        assert_eq!(status, 200, "{body}");
        c.psql_db(2, db, &format!("SELECT pg_terminate_backend({pid})"))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.batch_execute("COMMIT").await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("the read finishes");
        answer
            .expect("the session did not panic")
            .expect("the read was retried on another backend");
        hit = true;
        break;
    }
    let _ = holder.batch_execute("COMMIT").await;
    assert!(hit, "no read landed on replica b in 10 tries");
    // The proxy still serves.
    let client = connect(&conn_str).await;
    served_by(&client, "SELECT inet_server_port()").await;
    server.shutdown();
}

/// `[general] watch_config`: a change to the file is applied without a signal (a replica
/// joins); a file that does not load is counted once as a failed reload, not at every look,
/// and changes nothing; turning the watch off by the file stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_is_watched_when_asked() {
    let db = "t_reload_watch";
    let c = cluster();
    create_db_on(c, db);
    let (a, b) = (c.replica_ports()[0], c.replica_ports()[1]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let config = |replicas: &[(u16, u32)], watch: &str| {
        reload_config(db, "127.0.0.1:0", "127.0.0.1:0", replicas, 4, "10s").replace(
            "[general]\n",
            &format!("[general]\nwatch_config = \"{watch}\"\n"),
        )
    };
    write_file(&path, &config(&[(a, 1)], "200ms"));
    let server = switchyard::app::Server::start_file(&path).expect("proxy starts");
    let admin = server.admin_addr.unwrap();
    let port = server.pg_addr.unwrap().port();
    let client = connect(&format!(
        "host=127.0.0.1 port={port} user=app password=secret dbname={db}"
    ))
    .await;
    assert_eq!(read_ports(&client, 20).await, HashSet::from([a]));

    // B joins by the file alone.
    write_file(&path, &config(&[(a, 1), (b, 1)], "200ms"));
    let mut seen = HashSet::new();
    for _ in 0..50 {
        seen.extend(read_ports(&client, 10).await);
        if seen.contains(&b) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        HashSet::from([a, b]),
        "the changed file was not applied"
    );
    assert_eq!(reloads(admin, "ok").await, 1);

    // A broken file: one failed reload, however many looks, and nothing changes.
    write_file(
        &path,
        &config(&[(a, 1)], "200ms").replace("[pool]", "[pool"),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reloads(admin, "error").await, 1);
    assert_eq!(reloads(admin, "ok").await, 1);
    assert_eq!(read_ports(&client, 40).await, HashSet::from([a, b]));

    // Fixed, with the watch turned off: applied (A only), and the next change is not.
    write_file(&path, &config(&[(a, 1)], "0s"));
    let mut applied = false;
    for _ in 0..50 {
        if reloads(admin, "ok").await == 2 {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(applied, "the fixed file was not applied");
    write_file(&path, &config(&[(a, 1), (b, 1)], "200ms"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        reloads(admin, "ok").await,
        2,
        "a change was applied with the watch off"
    );
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap();
}
