//! Real PostgreSQL servers for tests and `switchyard demo`: a primary plus N streaming replicas
//! in a temporary directory, on free loopback ports.
//!
//! Everything here is blocking (`std::process`). When the current process runs as root the
//! server tools run as the unprivileged `postgres` user through `runuser`, because postgres
//! refuses to run as root. Servers are stopped by [`PgCluster`]'s `Drop`, by an `atexit`
//! handler (for clusters kept in statics, which are never dropped), and by a detached
//! watchdog shell that stops them if this process dies without running either.
//!
//! The binaries are found through `SWITCHYARD_PG_BIN`, else `/usr/lib/postgresql/15/bin`, else
//! the newest `/usr/lib/postgresql/*/bin`, else `PATH` (as `scripts/install-deps.sh` does).

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Superuser used by the harness (trusted from 127.0.0.1).
pub const SUPERUSER: &str = "postgres";
/// Role that must authenticate with `scram-sha-256` from 127.0.0.1.
pub const SCRAM_USER: &str = "sy_scram";
/// Password of [`SCRAM_USER`].
pub const SCRAM_PASSWORD: &str = "scram_pw";
/// Role that must authenticate with `md5` from 127.0.0.1 (its password is stored as md5).
pub const MD5_USER: &str = "sy_md5";
/// Password of [`MD5_USER`].
pub const MD5_PASSWORD: &str = "md5_pw";
/// Role that must authenticate with cleartext `password` from 127.0.0.1.
pub const PLAIN_USER: &str = "sy_password";
/// Password of [`PLAIN_USER`].
pub const PLAIN_PASSWORD: &str = "plain_pw";

/// How many times a first node start is tried, with a new port after each port conflict.
const PORT_ATTEMPTS: usize = 4;
/// Generous limit for a process to exit or a node to start on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);

/// Options for [`PgCluster::start_with`].
#[derive(Debug, Clone)]
pub struct PgClusterOptions {
    /// Number of streaming replicas besides the primary.
    pub replicas: usize,
    /// Extra `postgresql.conf` lines for every node (replicas copy the primary's file).
    pub extra_conf: Vec<String>,
    /// `max_connections` of every node (default 200).
    pub max_connections: u32,
}

impl Default for PgClusterOptions {
    fn default() -> Self {
        let extra_conf = Vec::new();
        PgClusterOptions {
            replicas: 0,
            extra_conf,
            max_connections: 200,
        }
    }
}

/// How to run the server tools of one cluster.
#[derive(Debug, Clone)]
struct Ctl {
    bin: PathBuf,
    /// Run them as `postgres` via `runuser` (we are root).
    as_postgres: bool,
    /// The cluster's temporary directory (also the tools' working directory).
    root: PathBuf,
}

impl Ctl {
    fn tool(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.current_dir(&self.root).stdin(Stdio::null());
        c
    }

    /// `pg_ctl stop -m immediate` if the node looks running; errors are ignored.
    fn stop_quietly(&self, dir: &Path) {
        if dir.join("postmaster.pid").exists() {
            let mut c = self.tool("pg_ctl");
            c.args(["stop", "-w", "-m", "immediate", "-D"]).arg(dir);
            let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

#[derive(Debug)]
struct Node {
    port: AtomicU16,
    dir: PathBuf,
    log: PathBuf,
}

/// A running primary (node 0) plus streaming replicas (nodes 1..).
#[derive(Debug)]
pub struct PgCluster {
    ctl: Ctl,
    tmp: Option<tempfile::TempDir>,
    nodes: Vec<Node>,
}

/// Clusters not dropped yet, for the `atexit` handler: (tools, data directories).
static REGISTRY: Mutex<Vec<(Ctl, Vec<PathBuf>)>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();

extern "C" fn cleanup_at_exit() {
    let _ = std::panic::catch_unwind(cleanup_registered);
}

/// Stops every cluster that is still running (immediate shutdown) and removes its directory.
/// Runs automatically at process exit; clusters dropped normally are no longer registered.
pub fn cleanup_registered() {
    let entries = std::mem::take(&mut *REGISTRY.lock().unwrap_or_else(|p| p.into_inner()));
    for (ctl, dirs) in entries {
        dirs.iter().for_each(|d| ctl.stop_quietly(d));
        let _ = std::fs::remove_dir_all(&ctl.root);
    }
}

/// Directory holding `initdb`, `pg_ctl`, `pg_basebackup` and `postgres`.
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SWITCHYARD_PG_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.join("initdb").is_file() {
            return Ok(p);
        }
        bail!("SWITCHYARD_PG_BIN={} has no initdb", p.display());
    }
    let base = Path::new("/usr/lib/postgresql");
    if base.join("15/bin/initdb").is_file() {
        return Ok(base.join("15/bin"));
    }
    let entries = std::fs::read_dir(base).into_iter().flatten().flatten();
    let newest = entries
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .ok_or_else(|| anyhow!("PostgreSQL server binaries not found (set SWITCHYARD_PG_BIN)"))
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Runs `c` to completion; an error carries its stderr and stdout.
fn run(mut c: Command, what: &str) -> Result<Output> {
    let out = c
        .output()
        .with_context(|| format!("{what}: cannot spawn"))?;
    if !out.status.success() {
        let (err, so) = (
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
        );
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            err.trim(),
            so.trim()
        );
    }
    Ok(out)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Appends `text` to an existing file (which keeps its owner, also when we are root).
fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path);
    let f = f
        .as_mut()
        .map_err(|e| anyhow!("open {}: {e}", path.display()))?;
    writeln!(f, "\n# added by switchyard testkit\n{text}")?;
    Ok(())
}

/// Polls `done` every `every` until it returns true or `timeout` passes.
fn poll(timeout: Duration, every: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(every));
    }
}

#[derive(Debug, PartialEq)]
enum PidState {
    Alive,
    /// Dead but not reaped yet (by PID 1, which may be slow): postgres still treats lock
    /// files naming it as held.
    Zombie,
    Gone,
}

fn pid_state(pid: i32) -> PidState {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return PidState::Gone;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => match s.rsplit_once(')') {
            Some((_, r)) if r.trim_start().starts_with('Z') => PidState::Zombie,
            _ => PidState::Alive,
        },
        Err(_) => PidState::Gone,
    }
}

fn postmaster_pid(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Live processes whose working directory is `dir`: a postmaster and all its children chdir
/// into the data directory.
fn procs_in_dir(dir: &Path) -> Vec<i32> {
    let (Ok(dir), Ok(entries)) = (dir.canonicalize(), std::fs::read_dir("/proc")) else {
        return Vec::new();
    };
    let pids = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(|&pid| {
        std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir)
            && pid_state(pid) == PidState::Alive
    })
    .collect()
}

/// Waits until postmaster `pid` has exited (a zombie counts) and no other live process (such
/// as an orphaned backend) still runs in data directory `dir`.
fn wait_gone(pid: i32, dir: &Path) -> Result<()> {
    let gone = || pid_state(pid) != PidState::Alive && procs_in_dir(dir).is_empty();
    if !poll(WAIT, 20, gone) {
        bail!(
            "postmaster {pid} or its children {:?} still alive",
            procs_in_dir(dir)
        );
    }
    Ok(())
}

fn postgres_ids() -> Result<(u32, u32)> {
    match super::user_ids("postgres") {
        Some(ids) => Ok(ids),
        None => bail!("running as root but there is no `postgres` user to run the servers as"),
    }
}

/// Parent directory for the cluster: the temp dir, or /tmp when running as root and the temp
/// dir is not traversable by other users.
fn temp_parent(as_postgres: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir();
    let traversable =
        |a: &Path| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 1 != 0);
    if as_postgres && !dir.ancestors().all(traversable) {
        return PathBuf::from("/tmp");
    }
    dir
}

/// Starts a detached shell that stops the servers and removes the directory if this process
/// dies (even by SIGKILL) while the directory still exists.
fn spawn_watchdog(ctl: &Ctl, dirs: &[PathBuf]) {
    const SCRIPT: &str = r#"pid=$1; root=$2; pgctl=$3; aspg=$4; shift 4
(
  while kill -0 "$pid" 2>/dev/null && [ -d "$root" ]; do
    case "$(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null)" in " Z"*) break;; esac
    sleep 1
  done
  if [ -d "$root" ]; then
    for d in "$@"; do
      if [ "$aspg" = 1 ]; then runuser -u postgres -- "$pgctl" stop -m immediate -D "$d"
      else "$pgctl" stop -m immediate -D "$d"; fi
    done
    rm -rf "$root"
  fi
) </dev/null >/dev/null 2>&1 &"#;
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("sh");
    c.args(["-c", SCRIPT, "sh", &std::process::id().to_string()]);
    c.arg(&ctl.root).arg(ctl.bin.join("pg_ctl"));
    c.arg(if ctl.as_postgres { "1" } else { "0" }).args(dirs);
    c.current_dir(&ctl.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Own process group: a Ctrl-C aimed at the tests must not kill the watchdog too.
    let _ = c.process_group(0).status();
}

impl PgCluster {
    /// Starts a primary plus `replicas` streaming replicas with default options.
    pub fn start(replicas: usize) -> Result<PgCluster> {
        PgCluster::start_with(PgClusterOptions {
            replicas,
            ..Default::default()
        })
    }

    /// Starts a primary plus `opts.replicas` streaming replicas and waits until every replica
    /// is in recovery and streaming.
    pub fn start_with(opts: PgClusterOptions) -> Result<PgCluster> {
        let t0 = Instant::now();
        let bin = pg_bin_dir()?;
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let tmp = tempfile::Builder::new()
            .prefix("switchyard-pg-")
            .tempdir_in(temp_parent(as_postgres))
            .context("create temporary directory")?;
        let root = tmp.path().to_path_buf();
        if as_postgres {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .with_context(|| format!("chown {} to postgres", root.display()))?;
        }
        let nodes: Vec<Node> = (0..=opts.replicas)
            .map(|i| Node {
                port: AtomicU16::new(0),
                dir: root.join(format!("node{i}")),
                log: root.join(format!("node{i}.log")),
            })
            .collect();
        let dirs: Vec<PathBuf> = nodes.iter().map(|n| n.dir.clone()).collect();
        let ctl = Ctl {
            bin,
            as_postgres,
            root,
        };
        ATEXIT.call_once(|| {
            // SAFETY: registers a plain extern "C" function that never unwinds.
            unsafe { libc::atexit(cleanup_at_exit) };
        });
        REGISTRY
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ctl.clone(), dirs.clone()));
        spawn_watchdog(&ctl, &dirs);
        let cluster = PgCluster {
            ctl,
            tmp: Some(tmp),
            nodes,
        };
        // On error the cluster is dropped here, which stops whatever already started.
        cluster.init_primary(&opts)?;
        for i in 1..=opts.replicas {
            cluster.init_replica(i)?;
        }
        cluster.wait_streaming()?;
        eprintln!(
            "testkit: PostgreSQL primary on port {}, replicas on {:?}, ready in {:.2?} ({})",
            cluster.primary_port(),
            cluster.replica_ports(),
            t0.elapsed(),
            cluster.ctl.root.display()
        );
        Ok(cluster)
    }

    fn init_primary(&self, opts: &PgClusterOptions) -> Result<()> {
        let dir = &self.nodes[0].dir;
        let mut result = Err(anyhow!("initdb not run"));
        for locale in ["C.UTF-8", "C"] {
            let mut c = self.ctl.tool("initdb");
            c.arg("-D")
                .arg(dir)
                .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]);
            c.args(["--no-sync", &format!("--locale={locale}")]);
            result = run(c, "initdb");
            if result.is_ok() {
                break;
            }
            let _ = std::fs::remove_dir_all(dir);
        }
        result?;
        let conf = format!(
            "listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             wal_level = replica\n\
             max_wal_senders = 10\n\
             max_replication_slots = 10\n\
             hot_standby = on\n\
             fsync = off\n\
             full_page_writes = off\n\
             max_connections = {}\n\
             shared_buffers = 32MB\n\
             {}",
            dir.display(),
            opts.max_connections,
            opts.extra_conf.join("\n")
        );
        append(&dir.join("postgresql.conf"), &conf)?;
        // The password lines come before the trust lines, which would match first otherwise.
        let hba = format!(
            "local all all trust\n\
             host all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n\
             host all {MD5_USER} 127.0.0.1/32 md5\n\
             host all {PLAIN_USER} 127.0.0.1/32 password\n\
             host all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n"
        );
        // Overwrites the file initdb made, so it keeps its owner.
        std::fs::write(dir.join("pg_hba.conf"), hba).context("write pg_hba.conf")?;
        self.first_start(0)?;
        let roles = format!(
            "SET password_encryption = 'scram-sha-256';\
             CREATE ROLE {SCRAM_USER} LOGIN SUPERUSER PASSWORD '{SCRAM_PASSWORD}';\
             CREATE ROLE {PLAIN_USER} LOGIN SUPERUSER PASSWORD '{PLAIN_PASSWORD}';\
             SET password_encryption = 'md5';\
             CREATE ROLE {MD5_USER} LOGIN SUPERUSER PASSWORD '{MD5_PASSWORD}';"
        );
        self.psql(0, &roles).context("create password roles")?;
        Ok(())
    }

    fn init_replica(&self, i: usize) -> Result<()> {
        let dir = &self.nodes[i].dir;
        let mut c = self.ctl.tool("pg_basebackup");
        let args = format!(
            "-h 127.0.0.1 -p {} -U {SUPERUSER} -R -X stream -C -S slot{i} -c fast --no-sync -D",
            self.primary_port()
        );
        c.args(args.split(' ')).arg(dir);
        run(c, &format!("pg_basebackup for replica {i}"))?;
        let socket_dir = format!("unix_socket_directories = '{}'", dir.display());
        append(&dir.join("postgresql.conf"), &socket_dir)?;
        self.first_start(i)
    }

    /// First start of a node: picks a free port, and another one after a port conflict.
    fn first_start(&self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            node.port.store(port, Ordering::SeqCst);
            append(&node.dir.join("postgresql.conf"), &format!("port = {port}"))?;
            let result = self.pg_ctl_start(i);
            let log = log_tail(&node.log, 20);
            let conflict = log.contains("could not bind") || log.contains("already in use");
            if result.is_ok() || !conflict || attempt == PORT_ATTEMPTS {
                return result;
            }
            attempt += 1;
        }
    }

    fn pg_ctl_start(&self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let mut c = self.ctl.tool("pg_ctl");
        c.args(["start", "-w", "-t", "60", "-D"])
            .arg(&node.dir)
            .arg("-l")
            .arg(&node.log);
        let tail = || {
            format!(
                "--- tail of {} ---\n{}",
                node.log.display(),
                log_tail(&node.log, 30)
            )
        };
        run(c, &format!("pg_ctl start node {i}")).map_err(|e| anyhow!("{e:#}\n{}", tail()))?;
        Ok(())
    }

    fn wait_streaming(&self) -> Result<()> {
        let want = (self.nodes.len() - 1).to_string();
        let sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'";
        let ready = || {
            self.psql(0, sql).is_ok_and(|n| n == want)
                && (1..self.nodes.len()).all(|n| {
                    self.psql(n, "SELECT pg_is_in_recovery()")
                        .is_ok_and(|r| r == "t")
                })
        };
        if !poll(WAIT, 50, ready) {
            bail!(
                "replicas not all streaming after {WAIT:?}: {:?}",
                self.psql(0, sql)
            );
        }
        Ok(())
    }

    /// Runs `sql` as the superuser in database `postgres` on `node` (0 = primary, 1.. =
    /// replicas); returns the trimmed unaligned, tuples-only output (`|` between columns).
    pub fn psql(&self, node: usize, sql: &str) -> Result<String> {
        self.psql_db(node, "postgres", sql)
    }

    /// Like [`PgCluster::psql`], in database `db`.
    pub fn psql_db(&self, node: usize, db: &str, sql: &str) -> Result<String> {
        self.psql_as(node, SUPERUSER, None, db, sql)
    }

    /// Runs `sql` over TCP as `user`, with `password` if given (never prompts), in database
    /// `db` on `node`.
    pub fn psql_as(
        &self,
        node: usize,
        user: &str,
        password: Option<&str>,
        db: &str,
        sql: &str,
    ) -> Result<String> {
        let own = self.ctl.bin.join("psql");
        let mut c = Command::new(if own.is_file() {
            own
        } else {
            PathBuf::from("psql")
        });
        c.args("-X -A -t -q -w -v ON_ERROR_STOP=1 -h 127.0.0.1 -p".split(' '));
        c.args([
            &self.port(node).to_string(),
            "-U",
            user,
            "-d",
            db,
            "-c",
            sql,
        ]);
        c.stdin(Stdio::null())
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE");
        c.env("PGCONNECT_TIMEOUT", "10");
        if let Some(p) = password {
            c.env("PGPASSWORD", p);
        }
        let out = run(c, &format!("psql on node {node}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Port of the primary.
    pub fn primary_port(&self) -> u16 {
        self.port(0)
    }

    /// Ports of the replicas, in node order (nodes 1..).
    pub fn replica_ports(&self) -> Vec<u16> {
        (1..self.nodes.len()).map(|i| self.port(i)).collect()
    }

    /// Port of `node` (0 = primary).
    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].port.load(Ordering::SeqCst)
    }

    /// Number of nodes (primary plus replicas).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Data directory of `node`.
    pub fn data_dir(&self, node: usize) -> &Path {
        &self.nodes[node].dir
    }

    /// Server log of `node`.
    pub fn log_path(&self, node: usize) -> &Path {
        &self.nodes[node].log
    }

    /// Directory holding the PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.ctl.bin
    }

    /// Stops `node` with `pg_ctl stop` (`-m immediate` simulates a crash, else `-m fast`) and
    /// waits until all its processes are gone.
    pub fn stop_node(&self, node: usize, immediate: bool) -> Result<()> {
        let dir = &self.nodes[node].dir;
        let pid = postmaster_pid(dir);
        let mut c = self.ctl.tool("pg_ctl");
        let mode = if immediate { "immediate" } else { "fast" };
        c.args(["stop", "-w", "-t", "60", "-m", mode, "-D"])
            .arg(dir);
        run(c, &format!("pg_ctl stop node {node}"))?;
        pid.map_or(Ok(()), |pid| wait_gone(pid, dir))
    }

    /// SIGKILLs the postmaster of `node` (a crash) and waits until it and its children are gone.
    pub fn kill_node(&self, node: usize) -> Result<()> {
        let dir = &self.nodes[node].dir;
        let pid = postmaster_pid(dir).ok_or_else(|| anyhow!("node {node}: no postmaster.pid"))?;
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_gone(pid, dir)
    }

    /// Starts a stopped or killed `node` again, on its old port.
    pub fn start_node(&self, node: usize) -> Result<()> {
        let dir = &self.nodes[node].dir;
        if let Some(pid) = postmaster_pid(dir) {
            wait_gone(pid, dir)?;
            if pid_state(pid) == PidState::Zombie {
                // Dead with all its children but not reaped: postgres would refuse the lock
                // files naming it, so remove them.
                let _ = std::fs::remove_file(dir.join("postmaster.pid"));
                for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    if e.file_name().to_string_lossy().starts_with(".s.PGSQL.") {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        self.pg_ctl_start(node)
    }

    /// Turns TLS on at `node` with this certificate chain and key (PEM), and `ca` as the
    /// authorities whose client certificates it trusts (`cert` lines in pg_hba.conf); the
    /// files go into the data directory, owned by the server's user. Takes effect by reload.
    pub fn enable_tls(&self, node: usize, cert: &str, key: &str, ca: Option<&str>) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = &self.nodes[node].dir;
        let mut files = vec![("server.crt", cert), ("server.key", key)];
        if let Some(ca) = ca {
            files.push(("root.crt", ca));
        }
        for (name, pem) in files {
            let path = dir.join(name);
            std::fs::write(&path, pem).with_context(|| format!("write {}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            if self.ctl.as_postgres {
                let (uid, gid) = postgres_ids()?;
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            }
        }
        let mut settings = vec![
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
        ];
        if ca.is_some() {
            settings.push(("ssl_ca_file", "root.crt"));
        }
        settings.push(("ssl", "on"));
        // One statement per call: ALTER SYSTEM cannot run inside a transaction block.
        for (name, value) in settings {
            self.psql(node, &format!("ALTER SYSTEM SET {name} = '{value}'"))?;
        }
        self.psql(node, "SELECT pg_reload_conf()")?;
        Ok(())
    }

    /// Puts `lines` at the top of `node`'s pg_hba.conf (they match before the kit's own) and
    /// reloads.
    pub fn prepend_hba(&self, node: usize, lines: &str) -> Result<()> {
        let path = self.nodes[node].dir.join("pg_hba.conf");
        let old = std::fs::read_to_string(&path).context("read pg_hba.conf")?;
        // Overwritten in place, so it keeps its owner.
        std::fs::write(&path, format!("{}\n{old}", lines.trim_end()))
            .context("write pg_hba.conf")?;
        self.psql(node, "SELECT pg_reload_conf()")?;
        Ok(())
    }

    /// Promotes replica `node` to a primary and waits for the promotion to finish.
    pub fn promote(&self, node: usize) -> Result<()> {
        let r = self.psql(node, "SELECT pg_promote(wait => true)")?;
        if r != "t" {
            bail!("pg_promote on node {node} returned {r:?}");
        }
        Ok(())
    }

    /// Cuts replica `node` from its upstream: its WAL receiver stops and does not come back
    /// (`primary_conninfo` emptied with `ALTER SYSTEM`, then a reload; PostgreSQL 13+), while
    /// the server keeps serving reads of what it already replayed. Returns the old
    /// `primary_conninfo`, for [`PgCluster::reconnect_replica`].
    pub fn disconnect_replica(&self, node: usize) -> Result<String> {
        let conninfo = self.psql(node, "SHOW primary_conninfo")?;
        self.psql(node, "ALTER SYSTEM SET primary_conninfo = ''")?;
        self.psql(node, "SELECT pg_reload_conf()")?;
        let gone = || {
            self.psql(node, "SELECT count(*) FROM pg_stat_wal_receiver")
                .is_ok_and(|n| n == "0")
        };
        if !poll(WAIT, 20, gone) {
            bail!("replica {node}: WAL receiver still running after {WAIT:?}");
        }
        Ok(conninfo)
    }

    /// Gives replica `node` its `conninfo` back (see [`PgCluster::disconnect_replica`]) and
    /// waits until it streams again.
    pub fn reconnect_replica(&self, node: usize, conninfo: &str) -> Result<()> {
        let quoted = conninfo.replace('\'', "''");
        self.psql(
            node,
            &format!("ALTER SYSTEM SET primary_conninfo = '{quoted}'"),
        )?;
        self.psql(node, "SELECT pg_reload_conf()")?;
        let streaming = || {
            self.psql(node, "SELECT status FROM pg_stat_wal_receiver")
                .is_ok_and(|s| s == "streaming")
        };
        if !poll(WAIT, 20, streaming) {
            bail!("replica {node} not streaming after {WAIT:?}");
        }
        Ok(())
    }

    /// Timeline of `node`'s last checkpoint (`pg_control_checkpoint()`), which a promoted
    /// replica keeps until its first checkpoint after the promotion.
    pub fn checkpoint_timeline(&self, node: usize) -> Result<u32> {
        let tl = self.psql(node, "SELECT timeline_id FROM pg_control_checkpoint()")?;
        tl.parse()
            .with_context(|| format!("node {node}: checkpoint timeline {tl:?}"))
    }

    /// Waits until every replica has replayed the primary's WAL up to the primary's position
    /// at the time of the call.
    pub fn wait_replay_caught_up(&self, timeout: Duration) -> Result<()> {
        let target = self.psql(0, "SELECT pg_current_wal_lsn()")?;
        let deadline = Instant::now() + timeout;
        let sql = format!(
            "SELECT coalesce(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{target}') >= 0, false)"
        );
        for node in 1..self.nodes.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if !poll(left, 10, || self.psql(node, &sql).is_ok_and(|s| s == "t")) {
                bail!("replica {node} has not replayed up to {target} after {timeout:?}");
            }
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.nodes
            .iter()
            .for_each(|n| self.ctl.stop_quietly(&n.dir));
        REGISTRY
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(c, _)| c.root != self.ctl.root);
        if let Some(tmp) = self.tmp.take() {
            let _ = tmp.close();
        }
    }
}
