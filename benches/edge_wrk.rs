//! The HTTP edge against nginx: wrk (HTTP/1.1, keep-alive) and h2load (HTTP/2 over TLS),
//! all contenders alternating in one run (results in benches/README.md).
//!
//! ```sh
//! cargo bench --bench edge_wrk                                 # defaults below
//! WORKERS=2 DURATION=10 ROUNDS=2 cargo bench --bench edge_wrk
//! PROTOS=h1 BODIES=1k.bin cargo bench --bench edge_wrk         # one scenario
//! SHOW_LATENCY=1 ...                                           # wrk's p50/p75/p90/p99 too
//! SCHED=batch ...                      # the edge's workers under worker_scheduling = "batch"
//! UPSTREAM_TLS=1 ...                    # HTTPS from the proxies to the upstream
//! ```
//!
//! The upstream is nginx (1 worker) serving two static files, `1k.bin` (1 KiB) and `64k.bin`
//! (64 KiB); each file is a scenario of its own. Contenders:
//! - `direct`: the upstream itself.
//! - `nginx`: a second nginx (1 worker), `proxy_pass` to an `upstream {}` block with
//!   `keepalive 64`, `proxy_http_version 1.1` and `proxy_set_header Connection ""`.
//! - `switchyard`: the edge, started in-process (`[general] workers = $WORKERS`, default the
//!   number of cores), one route `/` to one upstream group holding the upstream nginx.
//!
//! HTTP/1.1: `wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency` (2, 64, 10 s); requests
//! per second and the 99th percentile latency; `h1s` is the same over HTTPS to the TLS
//! listeners below (wrk offers no ALPN, so both serve it HTTP/1.1). HTTP/2: `h2load -t$THREADS -c$CONNECTIONS
//! -m$STREAMS -D$DURATION --warm-up-time=1` (STREAMS 10) against `nginx` (`listen ... ssl
//! http2`) and `switchyard` (an edge listener with `tls_cert`/`tls_key`), both on the same
//! self-signed certificate (rcgen) and h2 chosen by ALPN: a timed run, so both get the same
//! wall time however fast they are; requests per second only (h2load gives no percentiles).
//! Upstream connections are HTTP/1.1 for both proxies. With `UPSTREAM_TLS=1` the upstream
//! nginx listens with `ssl` (the same certificate; `direct` is then wrk over HTTPS), nginx
//! proxies with `proxy_pass https://` (TLS sessions reused, its default) and the edge's
//! group has `tls = "require"`; neither proxy checks the certificate.
//!
//! Both nginx instances: `worker_processes 1`, `access_log off`, `sendfile on`, `tcp_nopush on`,
//! `keepalive_requests 100000` (nginx's default 1000 would close client and upstream
//! connections every 1000 requests), every path in a temporary directory; as root they run
//! with `user root` (the default `nobody` cannot read the temporary directory). Each run
//! reports the CPU used by the proxy and by the upstream (utime + stime from /proc, as a
//! percentage of one core); the loaders and all servers share the machine's cores.
//!
//! In the first round each run is preceded by a 2 s unrecorded warm-up; the order of
//! contenders rotates each round; the table gives the median over rounds (the mean of the
//! middle two for an even count). Also: the open-file limit is raised to the hard limit (at
//! most 65536) for this process and both nginx. Needs `wrk`, `nginx` and `h2load`; refuses
//! to run without them (exit status 2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard::app::Server;
use switchyard::config::Config;

// The allocator the `switchyard` binary runs with (src/main.rs), for the proxy in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `PROTOS=h1` or `BODIES=1k.bin` (comma-separated) runs only those scenarios; unset: all.
fn selected(var: &str, item: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.split(',').any(|x| x.trim() == item))
}

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

fn wait_listening(port: u16, what: &str, mut alive: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(alive(), "{what} exited before listening on {port}");
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An nginx master process (and its worker), stopped when dropped, also on a panic.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Run nginx with `servers` (the inside of `http {}`) from its own directory `dir`.
    fn start(dir: PathBuf, servers: &str, ports: &[u16]) -> Nginx {
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        let nofile = raise_nofile();
        let conf = format!(
            "{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             worker_rlimit_nofile {nofile};\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  default_type application/octet-stream;\n  \
             sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
             scgi_temp_path {d}/scgi;\n{servers}}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let mut n = Nginx { child, dir };
        for &port in ports {
            let child = &mut n.child;
            wait_listening(port, "nginx", || matches!(child.try_wait(), Ok(None)));
        }
        n
    }

    /// The master and its workers.
    fn pids(&self) -> Vec<u32> {
        let m = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{m}/task/{m}/children"));
        let mut pids: Vec<u32> = children
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        pids.push(m);
        pids
    }

    /// Lines of its error log at level warn or worse.
    fn complaints(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let lines = log.lines().filter(|l| !l.contains("[notice]"));
        lines.map(String::from).collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raise this process's open-file limit to its hard limit (at most 65536): a proxy holds a
/// client and an upstream connection per request in flight (640 with h2load). The new limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [11] utime, [12] stime.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// CPU seconds (user + system, all threads) used so far by the processes `pids`.
fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks: u64 = pids
        .iter()
        .map(|p| {
            let s = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let v = stat_fields(&s);
            let at = |i: usize| v.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            at(11) + at(12)
        })
        .sum();
    ticks as f64 / hz
}

/// What one load run measured.
#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    p99_ms: f64,
    errors: u64,
    proxy_cpu: f64,
    upstream_cpu: f64,
}

/// Run `tool` with the whitespace-separated `args`; its standard output.
fn run_tool(tool: &str, args: &str) -> String {
    let out = Command::new(tool)
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// "2.13ms" -> 2.13, in milliseconds.
fn wrk_ms(v: &str) -> Option<f64> {
    let unit = v.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let n: f64 = v[..v.len() - unit.len()].parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(n * scale)
}

/// Requests per second, p99 latency in ms, errors.
fn wrk(url: &str, threads: u64, conns: u64, secs: u64) -> (f64, f64, u64) {
    let args = format!("-t{threads} -c{conns} -d{secs}s --latency {url}");
    let out = run_tool("wrk", &args);
    let after = |key: &str| {
        out.lines()
            .find_map(|l| l.trim_start().strip_prefix(key).map(str::trim))
    };
    let rps = after("Requests/sec:").and_then(|v| v.parse().ok());
    let p99 = after("99%").and_then(wrk_ms);
    let (Some(rps), Some(p99_ms)) = (rps, p99) else {
        panic!("no Requests/sec or 99% latency in wrk output:\n{out}")
    };
    // "Non-2xx or 3xx responses: 3", "Socket errors: connect 0, read 0, write 0, timeout 0"
    let mut errors = after("Non-2xx or 3xx responses:").map_or(0, |v| v.parse().unwrap_or(0));
    if let Some(s) = after("Socket errors:") {
        errors += s
            .split(',')
            .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    if errors > 0 {
        eprintln!("wrk {url}: {errors} errors\n{out}");
    }
    if std::env::var_os("SHOW_LATENCY").is_some() {
        let dist: Vec<String> = ["50%", "75%", "90%", "99%"]
            .iter()
            .filter_map(|k| Some(format!("p{} {}", &k[..2], after(k)?)))
            .collect();
        eprintln!("wrk {url}: {}", dist.join(", "));
    }
    (rps, p99_ms, errors)
}

/// Requests per second, no latency percentile (NaN), errors.
fn h2load(url: &str, threads: u64, conns: u64, streams: u64, secs: u64) -> (f64, f64, u64) {
    let args = format!("-t{threads} -c{conns} -m{streams} -D{secs} --warm-up-time=1 {url}");
    let out = run_tool("h2load", &args);
    assert!(
        out.contains("Application protocol: h2"),
        "h2load {url} did not negotiate h2:\n{out}"
    );
    // "finished in 10.00s, 51234.50 req/s, 60.12MB/s"
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|v| v.strip_suffix(" req/s"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no req/s in h2load output:\n{out}"));
    // "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
    // and "status codes: N 2xx, N 3xx, N 4xx, N 5xx"
    let count = |prefix: &str, what: &[&str]| -> u64 {
        let Some(l) = out.lines().find_map(|l| l.strip_prefix(prefix)) else {
            return 0;
        };
        l.split(", ")
            .filter_map(|p| p.trim().split_once(' '))
            .filter(|(_, name)| what.contains(name))
            .filter_map(|(n, _)| n.parse::<u64>().ok())
            .sum()
    };
    let errors = count("requests: ", &["failed", "errored", "timeout"])
        + count("status codes: ", &["4xx", "5xx"]);
    if errors > 0 {
        eprintln!("h2load {url}: {errors} errors\n{out}");
    }
    (rps, f64::NAN, errors)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `v` with `digits` decimals, "-" for NaN (nothing measured).
fn show(v: f64, digits: usize) -> String {
    match v.is_nan() {
        true => "-".into(),
        false => format!("{v:.digits$}"),
    }
}

fn self_signed(dir: &Path) -> (String, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).expect("self-signed certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let missing: Vec<&str> = [("wrk", "-v"), ("nginx", "-v"), ("h2load", "--version")]
        .into_iter()
        .filter(|(tool, flag)| {
            let mut run = Command::new(tool);
            run.arg(flag).stdout(Stdio::null()).stderr(Stdio::null());
            run.status().is_err()
        })
        .map(|(tool, _)| tool)
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "edge_wrk needs wrk, nginx and h2load; missing: {}.\n\
             Install them: apt-get install wrk nginx-light nghttp2-client \
             (or nginx instead of nginx-light)",
            missing.join(", ")
        );
        std::process::exit(2);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let workers = env_or("WORKERS", cores);
    let (secs, rounds) = (env_or("DURATION", 10), env_or("ROUNDS", 2));
    let (conns, threads) = (env_or("CONNECTIONS", 64), env_or("THREADS", 2));
    let streams = env_or("STREAMS", 10);
    let sched = std::env::var("SCHED").unwrap_or_else(|_| "normal".into());

    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let bodies = [("1k.bin", 1024usize), ("64k.bin", 64 * 1024)];
    for (name, size) in bodies {
        let data: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(www.join(name), data).unwrap();
    }
    let (cert, key) = self_signed(tmp.path());

    let up_tls = std::env::var("UPSTREAM_TLS").is_ok_and(|v| v == "1");
    let (up_listen, up_scheme, group_tls) = match up_tls {
        true => (
            format!(" ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key}"),
            "https",
            "tls = \"require\"",
        ),
        false => (String::new(), "http", ""),
    };
    let up = free_port();
    let upstream = Nginx::start(
        tmp.path().join("upstream"),
        &format!(
            "  server {{\n    listen 127.0.0.1:{up}{up_listen};\n    root {};\n    location / {{ }}\n  }}\n",
            www.display()
        ),
        &[up],
    );
    let (np, nps) = (free_port(), free_port());
    let location = format!(
        "    location / {{\n      proxy_pass {up_scheme}://web;\n      \
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n"
    );
    let proxy = Nginx::start(
        tmp.path().join("proxy"),
        &format!(
            "  upstream web {{\n    server 127.0.0.1:{up};\n    keepalive 64;\n  }}\n  \
             server {{\n    listen 127.0.0.1:{np};\n{location}  }}\n  \
             server {{\n    listen 127.0.0.1:{nps} ssl http2;\n    ssl_certificate {cert};\n    \
             ssl_certificate_key {key};\n{location}  }}\n"
        ),
        &[np, nps],
    );
    let config = format!(
        r#"
[general]
workers = {workers}
worker_scheduling = "{sched}"

[[edge.listener]]
name = "plain"
listen = "127.0.0.1:0"

[[edge.listener]]
name = "tls"
listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"

[[edge.route]]
path = "/"
upstream = "web"

[[edge.upstream]]
name = "web"
servers = ["127.0.0.1:{up}"]
{group_tls}
"#
    );
    let server = Server::start(Config::from_toml(&config).expect("bench config")).expect("edge");
    let (sp, sps) = (server.edge_addrs[0].port(), server.edge_addrs[1].port());
    wait_listening(sp, "switchyard", || true);

    let (up_pids, proxy_pids) = (upstream.pids(), proxy.pids());
    assert!(
        up_pids.len() > 1 && proxy_pids.len() > 1,
        "nginx workers not found"
    );
    let measure = |name: &str, load: &dyn Fn() -> (f64, f64, u64)| -> Run {
        let proxy_cpu = || match name {
            "nginx" => cpu_seconds(&proxy_pids),
            "switchyard" => cpu_seconds(&[std::process::id()]),
            _ => f64::NAN,
        };
        let (p0, u0, t0) = (proxy_cpu(), cpu_seconds(&up_pids), Instant::now());
        let (rps, p99_ms, errors) = load();
        let wall = t0.elapsed().as_secs_f64();
        Run {
            rps,
            p99_ms,
            errors,
            proxy_cpu: (proxy_cpu() - p0) / wall * 100.0,
            upstream_cpu: (cpu_seconds(&up_pids) - u0) / wall * 100.0,
        }
    };
    let load = |proto: &str, port: u16, file: &str, secs: u64| match proto {
        "h1" => wrk(
            &format!(
                "{}://127.0.0.1:{port}/{file}",
                if port == up { up_scheme } else { "http" }
            ),
            threads,
            conns,
            secs,
        ),
        "h1s" => wrk(
            &format!("https://127.0.0.1:{port}/{file}"),
            threads,
            conns,
            secs,
        ),
        _ => {
            let url = format!("https://127.0.0.1:{port}/{file}");
            h2load(&url, threads, conns, streams, secs)
        }
    };
    let h1 = [("direct", up), ("nginx", np), ("switchyard", sp)];
    let h2 = [("nginx", nps), ("switchyard", sps)];
    let suites: [(&str, &[(&str, u16)]); 3] = [("h1", &h1), ("h1s", &h2), ("h2", &h2)];
    let mut results: BTreeMap<(&str, &str, &str), Vec<Run>> = BTreeMap::new();
    for round in 0..rounds {
        for (file, _) in bodies {
            for (proto, contenders) in suites {
                let mut order = contenders.to_vec();
                let n = order.len();
                order.rotate_left(round as usize % n);
                if !selected("PROTOS", proto) || !selected("BODIES", file) {
                    continue;
                }
                for (name, port) in order {
                    if round == 0 {
                        load(proto, port, file, 2); // warm-up, not recorded
                    }
                    let r = measure(name, &|| load(proto, port, file, secs));
                    eprintln!(
                        "round {round} {proto} {file:8} {name:10} {:9.0} req/s  p99 {:>5} ms  \
                         proxy cpu {:>3}%  upstream cpu {:3.0}%",
                        r.rps,
                        show(r.p99_ms, 2),
                        show(r.proxy_cpu, 0),
                        r.upstream_cpu
                    );
                    results.entry((proto, file, name)).or_default().push(r);
                }
            }
        }
    }
    for (name, n) in [("upstream", &upstream), ("proxy", &proxy)] {
        let lines = n.complaints();
        if !lines.is_empty() {
            let first = lines[..lines.len().min(5)].join("\n");
            eprintln!(
                "nginx {name}: {} error log lines; first:\n{first}",
                lines.len()
            );
        }
    }
    server.shutdown();
    drop(proxy);
    drop(upstream);

    // Median over rounds; "-" where there is nothing (no p99 from h2load, no proxy for direct,
    // no direct over h2).
    let med = |proto, file, name, f: fn(&Run) -> f64| -> f64 {
        let runs = results.get(&(proto, file, name));
        runs.map_or(f64::NAN, |r| median(r.iter().map(f).collect()))
    };
    println!(
        "\nHTTP/1.1 (h1s: over TLS): wrk -t{threads} -c{conns} -d{secs}s --latency; HTTP/2: h2load -t{threads} \
         -c{conns} -m{streams} -D{secs} --warm-up-time=1 (TLS, h2 by ALPN); median of {rounds} \
         round(s); switchyard workers {workers} ({sched} scheduling); {cores} cores; upstream \
         over {up_scheme}\n"
    );
    println!(
        "| proto | body | contender | req/s | p99 ms | proxy CPU % | upstream CPU % | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (proto, contenders) in suites {
        for (file, _) in bodies {
            for &(name, _) in contenders {
                let Some(runs) = results.get(&(proto, file, name)) else {
                    continue;
                };
                let errors: u64 = runs.iter().map(|r| r.errors).sum();
                println!(
                    "| {proto} | {file} | {name} | {:.0} | {} | {} | {:.0} | {errors} |",
                    med(proto, file, name, |r| r.rps),
                    show(med(proto, file, name, |r| r.p99_ms), 2),
                    show(med(proto, file, name, |r| r.proxy_cpu), 0),
                    med(proto, file, name, |r| r.upstream_cpu),
                );
            }
        }
    }
    println!("\n| proto | body | switchyard/direct req/s | switchyard/nginx req/s | switchyard/nginx p99 |");
    println!("|---|---|---|---|---|");
    for (proto, _) in suites {
        for (file, _) in bodies {
            if !results.contains_key(&(proto, file, "switchyard")) {
                continue;
            }
            let rps = |name| med(proto, file, name, |r| r.rps);
            let p99 = |name| med(proto, file, name, |r| r.p99_ms);
            println!(
                "| {proto} | {file} | {} | {:.2} | {} |",
                show(rps("switchyard") / rps("direct"), 2),
                rps("switchyard") / rps("nginx"),
                show(p99("switchyard") / p99("nginx"), 2),
            );
        }
    }
    // The machine's pace drifts between rounds by more than the contenders differ, so each
    // round is also compared with itself: the two proxies' runs of one round are minutes apart
    // at most.
    println!(
        "\n| proto | body | switchyard/nginx req/s by round | median | p99 by round | median | \
         rounds with more req/s | rounds with a p99 no higher |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (proto, _) in suites {
        for (file, _) in bodies {
            let (Some(s), Some(n)) = (
                results.get(&(proto, file, "switchyard")),
                results.get(&(proto, file, "nginx")),
            ) else {
                continue;
            };
            let rps: Vec<f64> = s.iter().zip(n).map(|(s, n)| s.rps / n.rps).collect();
            let p99: Vec<f64> = s.iter().zip(n).map(|(s, n)| s.p99_ms / n.p99_ms).collect();
            let list = |v: &[f64]| v.iter().map(|r| show(*r, 2)).collect::<Vec<_>>().join(" ");
            let won = |v: &[f64]| v.iter().filter(|r| **r >= 1.0).count();
            let low = |v: &[f64]| v.iter().filter(|r| **r <= 1.0).count();
            println!(
                "| {proto} | {file} | {} | {:.2} | {} | {} | {}/{} | {} |",
                list(&rps),
                median(rps.clone()),
                list(&p99),
                show(median(p99.clone()), 2),
                won(&rps),
                rps.len(),
                if p99.iter().any(|r| r.is_nan()) {
                    "-".to_string()
                } else {
                    format!("{}/{}", low(&p99), p99.len())
                },
            );
        }
    }
}
