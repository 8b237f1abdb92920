//! sysbench through Switchyard's MySQL front end, against the same MariaDB directly and
//! through HAProxy in TCP mode, alternating in one run (results in benches/README.md).
//!
//! ```sh
//! cargo bench --bench mysql_sysbench                       # defaults below
//! DURATION=20 ROUNDS=3 THREADS=8 cargo bench --bench mysql_sysbench
//! ```
//!
//! Servers: a MariaDB primary and `REPLICAS` (default 1) GTID replicas from the test kit
//! (temporary directories, free loopback ports), buffer pool 256 MiB. Data: `sysbench
//! oltp_read_only prepare` with `TABLES` x `TABLE_SIZE` (4 x 10,000) on the primary, directly.
//! Contenders:
//! - `direct`: the primary.
//! - `haproxy`: HAProxy in TCP mode in front of the primary (`mode tcp`, one server).
//! - `switchyard`: for oltp_read_only a cluster with the primary only (every statement on
//!   it: this measures the proxy itself, prepared-statement id mapping included); for
//!   oltp_read_write the cluster with its replicas, transaction pooling, reads split.
//!
//! oltp_read_write runs with `--skip_trx=on` for every contender: sysbench otherwise wraps
//! each event in BEGIN/COMMIT, which keeps every statement of it on the primary (a duplicate
//! key between threads is then an ignored error, like deadlocks). Each run is
//! `THREADS` threads for `DURATION` seconds, server-side prepared statements (sysbench's
//! default); the order of contenders rotates each round; the median TPS per contender is
//! reported with its ratio to direct.
//!
//! Each line also gives the proxy's own CPU (user + system, from `/proc`) per query: HAProxy's
//! process, or this one for Switchyard (the harness idles while sysbench runs). `HOLD=N` keeps
//! the servers and proxies up for N seconds before the runs and prints their ports and pids,
//! for a profiler.
//!
//! `SCHED=batch` runs Switchyard's workers with `[general] worker_scheduling = "batch"`
//! (default "normal"). `UNIX=1` adds HAProxy over the primary's Unix socket and Switchyard
//! over the servers' Unix sockets (`sy-unix`: the primary only for oltp_read_only, the split
//! for oltp_read_write); the clients still reach every proxy over TCP. `BOTH=1` runs oltp_read_write through
//! the Switchyard without replicas as well (`sy-primary`).
//!
//! Needs `sysbench` and `haproxy` (Debian packages of the same names); refuses to run without
//! them rather than report half a table.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard::app::Server;
use switchyard::config::Config;
use switchyard::testkit::mariadb::{MariaCluster, MariaClusterOptions, APP_PASSWORD, APP_USER};

// The allocator the `switchyard` binary runs with (src/main.rs), for the proxy in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sysbench(
    test: &str,
    port: u16,
    threads: u64,
    duration: u64,
    extra: &[&str],
    cmd: &str,
) -> String {
    let out = Command::new("sysbench")
        .arg(test)
        .args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            &format!("--mysql-user={APP_USER}"),
            &format!("--mysql-password={APP_PASSWORD}"),
            "--mysql-db=sbtest",
            &format!("--tables={}", env_or("TABLES", 4)),
            &format!("--table-size={}", env_or("TABLE_SIZE", 10_000)),
            &format!("--threads={threads}"),
            &format!("--time={duration}"),
            "--report-interval=0",
            "--mysql-ssl=off",
        ])
        .args(extra)
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run sysbench (apt-get install sysbench)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sysbench {test} {cmd} on port {port} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// "transactions:  12345  (411.50 per sec.)" -> 411.50
fn tps(report: &str) -> f64 {
    report
        .lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no TPS in sysbench output:\n{report}"))
}

/// "queries:  12345  (411.50 per sec.)" -> 12345
fn queries(report: &str) -> f64 {
    report
        .lines()
        .find(|l| l.trim_start().starts_with("queries:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no query count in sysbench output:\n{report}"))
}

/// User and system CPU seconds process `pid` has used so far (0 = this process, which runs
/// the Switchyard contenders; sysbench is a child and is not counted until it is waited).
fn cpu_seconds(pid: u32) -> f64 {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the stat line, 12 and 13 after the name.
    let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    ticks / 100.0
}

/// HAProxy in TCP mode on `port` in front of `server` (`127.0.0.1:PORT` or a socket path).
fn start_haproxy(dir: &std::path::Path, port: u16, server: &str) -> Child {
    let cfg = dir.join(format!("haproxy-{port}.cfg"));
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 4096\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 1h\n  timeout server 1h\n\nfrontend db\n  bind 127.0.0.1:{port}\n  \
             default_backend primary\n\nbackend primary\n  server p {server}\n"
        ),
    )
    .unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy (apt-get install haproxy)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Switchyard in front of `c`'s primary (and its replicas with `with_replicas`), reaching the
/// servers over TCP, or over their Unix sockets with `unix`.
fn start_switchyard(c: &MariaCluster, with_replicas: bool, unix: bool, pool: u64) -> Server {
    let addr = |n: usize| {
        if unix {
            c.socket_path(n).display().to_string()
        } else {
            format!("127.0.0.1:{}", c.port(n))
        }
    };
    let replicas = if with_replicas {
        let r: Vec<String> = c
            .replicas()
            .iter()
            .map(|&n| format!("\"{}\"", addr(n)))
            .collect();
        format!("replicas = [{}]", r.join(", "))
    } else {
        String::new()
    };
    let text = format!(
        r#"
[general]
workers = {workers}
worker_scheduling = "{sched}"

[mysql]
listen = "127.0.0.1:0"

[health]
interval = "500ms"

[pool]
size = {pool}

[[user]]
name = "{APP_USER}"
password = "{APP_PASSWORD}"

[[cluster]]
name = "sbtest"
protocol = "mysql"
database = "sbtest"
primary = "{primary}"
{replicas}
user = "switchyard"
password = "switchyard_pw"
max_lag = "30s"
"#,
        workers = env_or("WORKERS", 1),
        sched = sched(),
        primary = addr(c.primary()),
    );
    let server = Server::start(Config::from_toml(&text).expect("bench config")).expect("proxy");
    // Let the health checker see the replicas.
    std::thread::sleep(Duration::from_secs(2));
    server
}

/// `SCHED`: the workers' `worker_scheduling`, "normal" unless set.
fn sched() -> String {
    std::env::var("SCHED").unwrap_or_else(|_| "normal".into())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    for tool in ["sysbench", "haproxy"] {
        let found = Command::new(tool)
            .arg(if tool == "haproxy" { "-v" } else { "--version" })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(found, "{tool} is not installed (apt-get install {tool})");
    }
    let (threads, duration, rounds) = (
        env_or("THREADS", 8),
        env_or("DURATION", 15),
        env_or("ROUNDS", 3),
    );
    let replicas = env_or("REPLICAS", 1) as usize;
    let c = MariaCluster::start_with(MariaClusterOptions {
        replicas,
        buffer_pool_mb: 256,
        ..Default::default()
    })
    .expect("start MariaDB");
    c.create_database("sbtest").unwrap();
    sysbench("oltp_read_only", c.primary_port(), 4, 0, &[], "prepare");
    c.wait_caught_up(Duration::from_secs(120)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hp = free_port();
    let mut haproxy = start_haproxy(dir.path(), hp, &format!("127.0.0.1:{}", c.primary_port()));
    // UNIX=1: also HAProxy reaching the primary over its Unix socket.
    let unix = env_or("UNIX", 0) == 1;
    let hp_unix = free_port();
    let mut haproxy_unix = unix.then(|| {
        let sock = c.socket_path(c.primary()).display().to_string();
        start_haproxy(dir.path(), hp_unix, &sock)
    });
    // BOTH=1: oltp_read_write also through the Switchyard without replicas (what the split
    // itself costs on this machine).
    let both = env_or("BOTH", 0) == 1;
    let pool = env_or("POOL", threads);
    let pinned = start_switchyard(&c, false, false, pool);
    let split = start_switchyard(&c, true, false, pool);
    let pinned_port = pinned.my_addr.unwrap().port();
    let split_port = split.my_addr.unwrap().port();
    // UNIX=1: also the two Switchyards reaching the servers over their Unix sockets.
    let unix_sy = unix.then(|| {
        (
            start_switchyard(&c, false, true, pool),
            start_switchyard(&c, true, true, pool),
        )
    });
    let unix_port = |split: bool| {
        unix_sy
            .as_ref()
            .map(|(p, s)| if split { s } else { p }.my_addr.unwrap().port())
    };

    // HOLD=N: keep everything up for N seconds for a profiler, print where it is, run nothing.
    let hold = env_or("HOLD", 0);
    if hold > 0 {
        println!(
            "direct {} haproxy {hp} (pid {}) switchyard primary-only {pinned_port} \
             split {split_port} (pid {}); holding {hold} s",
            c.primary_port(),
            haproxy.id(),
            std::process::id()
        );
        if let (Some(p), Some(s)) = (unix_port(false), unix_port(true)) {
            println!("haproxy-unix {hp_unix} sy-unix primary-only {p} split {s}");
        }
        std::thread::sleep(Duration::from_secs(hold));
    }
    let workloads: [(&str, &[&str], u16); 2] = [
        ("oltp_read_only", &[], pinned_port),
        (
            "oltp_read_write",
            // Without transactions, two threads may delete and insert the same id at once:
            // the duplicate key is counted as an ignored error, as sysbench does for deadlocks.
            &["--skip_trx=on", "--mysql-ignore-errors=1062,1213,1205,1020"],
            split_port,
        ),
    ];
    let mut results: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut cpu: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for (test, extra, sy_port) in workloads {
            let mut contenders = vec![
                ("direct", c.primary_port()),
                ("haproxy", hp),
                ("switchyard", sy_port),
            ];
            if unix {
                contenders.push(("haproxy-unix", hp_unix));
                if let Some(port) = unix_port(sy_port == split_port) {
                    contenders.push(("sy-unix", port));
                }
            }
            if both && sy_port == split_port {
                contenders.push(("sy-primary", pinned_port));
            }
            let n = contenders.len();
            contenders.rotate_left(round as usize % n);
            for (name, port) in contenders {
                // The proxy's own CPU per query: HAProxy's process, or this one for Switchyard.
                let pid = match name {
                    "direct" => None,
                    "haproxy" => Some(haproxy.id()),
                    "haproxy-unix" => haproxy_unix.as_ref().map(Child::id),
                    _ => Some(0),
                };
                let before = pid.map(cpu_seconds);
                let report = sysbench(test, port, threads, duration, extra, "run");
                let t = tps(&report);
                let us = match (pid, before) {
                    (Some(p), Some(b)) => (cpu_seconds(p) - b) * 1e6 / queries(&report),
                    _ => 0.0,
                };
                eprintln!("round {round} {test:16} {name:11} {t:9.1} TPS {us:6.2} us CPU/query");
                results.entry((test, name)).or_default().push(t);
                cpu.entry((test, name)).or_default().push(us);
            }
        }
    }
    println!(
        "\nsysbench {threads} threads, {duration} s x {rounds} rounds, {} tables x {} rows, \
         {replicas} replica(s), switchyard pool {pool}, workers {} ({} scheduling)",
        env_or("TABLES", 4),
        env_or("TABLE_SIZE", 10_000),
        env_or("WORKERS", 1),
        sched()
    );
    println!(
        "{:18} {:11} {:>10} {:>8} {:>16}",
        "test", "contender", "TPS", "x direct", "proxy us/query"
    );
    for (test, _, _) in workloads {
        let direct = median(&mut results[&(test, "direct")].clone());
        for name in [
            "direct",
            "haproxy",
            "haproxy-unix",
            "switchyard",
            "sy-primary",
            "sy-unix",
        ] {
            let Some(r) = results.get(&(test, name)) else {
                continue;
            };
            let m = median(&mut r.clone());
            let us = median(&mut cpu[&(test, name)].clone());
            println!("{test:18} {name:11} {m:10.1} {:8.2} {us:16.2}", m / direct);
        }
    }
    // The machine's pace drifts between rounds by more than the contenders differ: each
    // round's Switchyard runs against the direct and HAProxy runs of the same round.
    println!(
        "\nby round: {:18} {:11} {:>24} {:>24}",
        "test", "contender", "x direct (median)", "x haproxy (median)"
    );
    for (test, _, _) in workloads {
        for name in ["switchyard", "sy-primary", "sy-unix"] {
            let Some(r) = results.get(&(test, name)) else {
                continue;
            };
            let by = |other: &str| {
                let mut v: Vec<f64> = r
                    .iter()
                    .zip(&results[&(test, other)])
                    .map(|(a, b)| a / b)
                    .collect();
                let list: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
                format!("{} ({:.2})", list.join(" "), median(&mut v))
            };
            println!(
                "by round: {test:18} {name:11} {:>24} {:>24}",
                by("direct"),
                by("haproxy")
            );
        }
    }
    pinned.shutdown();
    split.shutdown();
    if let Some((p, s)) = unix_sy {
        p.shutdown();
        s.shutdown();
    }
    for h in std::iter::once(&mut haproxy).chain(haproxy_unix.as_mut()) {
        let _ = h.kill();
        let _ = h.wait();
    }
}
