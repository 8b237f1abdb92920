//! Real MariaDB servers for tests and `switchyard demo`: a primary plus N GTID replicas in one
//! temporary directory, on free loopback ports.
//!
//! Everything here is blocking (`std::process`), like [`super::pg`]. `mariadb-install-db` runs
//! once; every node gets a copy of that data directory, so the nodes start with identical data
//! and the replicas replay the primary's binary log from its first event (users included).
//! Each node runs `mariadbd --no-defaults` (no `/etc/mysql` file is read) with binlog ROW,
//! `--log-slave-updates`, `--gtid-strict-mode=1` and `--skip-name-resolve`, bound to
//! 127.0.0.1; replicas use `MASTER_USE_GTID=slave_pos` and run with `--read-only=1`.
//!
//! When the current process runs as root, `mariadbd --user=mysql` drops its privileges itself
//! and the temporary directory belongs to `mysql`. The servers are children of this process;
//! they are killed by [`MariaCluster`]'s `Drop`, by an `atexit` handler (for clusters kept in
//! statics, which are never dropped), and by a detached watchdog shell that kills every process
//! whose working directory is inside the cluster's directory if this process dies without
//! running either. The data is thrown away, so teardown is SIGKILL, not a clean shutdown.
//!
//! The binaries are found in `SWITCHYARD_MARIADB_BIN` (one directory holding all four tools),
//! else `/usr/sbin` and `/usr/bin`, else `PATH` (`scripts/install-deps.sh` installs them).
//!
//! Users (created on the primary, replicated to every replica):
//! - `root` ([`ROOT_USER`]): the harness, without a password, over each node's Unix socket
//!   (`root@localhost`) and from 127.0.0.1 over TCP. All privileges.
//! - [`REPL_USER`]: `REPLICATION SLAVE` only; the replicas' connection to their source.
//! - [`APP_USER`]: an application as a proxy's client would log in, `mysql_native_password`,
//!   with [`APP_PRIVILEGES`] on `*.*` (data and schema changes) and no administrative
//!   privilege: no `SUPER`, no `READ_ONLY ADMIN`, so a read-only replica refuses its writes
//!   with error 1290, and `SHOW REPLICA STATUS` is denied (1227).
//! - [`PROXY_USER`]: the proxy's backend and health-check login, `mysql_native_password`, with
//!   [`APP_PRIVILEGES`] plus [`PROXY_EXTRA_PRIVILEGES`] (`BINLOG MONITOR` for `SHOW MASTER
//!   STATUS` / `SHOW BINARY LOGS`, `SLAVE MONITOR` for `SHOW REPLICA STATUS`). Also no `SUPER`
//!   or `READ_ONLY ADMIN`: replicas refuse its writes too.
//!
//! Reading `@@gtid_binlog_pos`, `@@gtid_slave_pos`, `@@read_only` and calling
//! `MASTER_GTID_WAIT` needs no privilege, so both application users can do it.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// The harness's superuser (no password; Unix socket or 127.0.0.1).
pub const ROOT_USER: &str = "root";
/// Replication login of the replicas (`REPLICATION SLAVE` only).
pub const REPL_USER: &str = "repl";
/// Password of [`REPL_USER`].
pub const REPL_PASSWORD: &str = "repl_pw";
/// Application user (`mysql_native_password`, [`APP_PRIVILEGES`], nothing administrative).
pub const APP_USER: &str = "app";
/// Password of [`APP_USER`].
pub const APP_PASSWORD: &str = "app_pw";
/// Proxy backend and health-check user: [`APP_PRIVILEGES`] plus [`PROXY_EXTRA_PRIVILEGES`].
pub const PROXY_USER: &str = "switchyard";
/// Password of [`PROXY_USER`].
pub const PROXY_PASSWORD: &str = "switchyard_pw";
/// Privileges of [`APP_USER`] and [`PROXY_USER`] on `*.*`.
pub const APP_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, \
     INDEX, ALTER, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, \
     CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER";
/// What [`PROXY_USER`] has beyond [`APP_PRIVILEGES`].
pub const PROXY_EXTRA_PRIVILEGES: &str = "BINLOG MONITOR, SLAVE MONITOR";

/// How many times a first node start is tried, with a new port after each port conflict.
const PORT_ATTEMPTS: usize = 4;
/// Generous limit for a process to exit or a node to start on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(60);
/// Limit for one client command (connect plus statement).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Size of every node's InnoDB redo log (set at install time and at every start).
const REDO_LOG: &str = "--innodb-log-file-size=8M";

/// Options for [`MariaCluster::start_with`].
#[derive(Debug, Clone)]
pub struct MariaClusterOptions {
    /// Number of GTID replicas besides the primary.
    pub replicas: usize,
    /// `max_connections` of every node (default 200).
    pub max_connections: u32,
    /// `innodb_buffer_pool_size` of every node in MiB (default 16).
    pub buffer_pool_mb: u32,
    /// Extra `mariadbd` arguments for every node (such as `--wait-timeout=30`).
    pub extra_args: Vec<String>,
}

impl Default for MariaClusterOptions {
    fn default() -> Self {
        MariaClusterOptions {
            replicas: 0,
            max_connections: 200,
            buffer_pool_mb: 16,
            extra_args: Vec::new(),
        }
    }
}

/// A statement or connection error reported by the `mariadb` client, such as
/// `ERROR 1290 (HY000) at line 1: The MariaDB server is running with the --read-only option
/// ...`. Errors returned by the query methods can be downcast to it
/// (`err.downcast_ref::<SqlError>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// Node the statement ran on.
    pub node: usize,
    /// Server error code (1290 read-only, 1227 access denied, 1045 bad login) or client error
    /// code (2002 cannot connect through the socket, 2003 cannot connect over TCP, 2013 lost
    /// connection).
    pub code: u32,
    /// SQLSTATE, such as `HY000`.
    pub sqlstate: String,
    /// The message after the code.
    pub message: String,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {}: ERROR {} ({}): {}",
            self.node, self.code, self.sqlstate, self.message
        )
    }
}

impl std::error::Error for SqlError {}

impl SqlError {
    /// Parses the client's `ERROR 1290 (HY000) at line 1: message` line out of its stderr.
    fn parse(node: usize, stderr: &str) -> Option<SqlError> {
        let line = stderr.lines().find(|l| l.starts_with("ERROR "))?;
        let rest = &line["ERROR ".len()..];
        let (code, rest) = rest.split_once(' ')?;
        let code = code.parse().ok()?;
        let rest = rest.strip_prefix('(')?;
        let (sqlstate, rest) = rest.split_once(')')?;
        let message = rest.split_once(": ").map_or(rest, |(_, m)| m).trim();
        Some(SqlError {
            node,
            code,
            sqlstate: sqlstate.to_string(),
            message: message.to_string(),
        })
    }
}

/// Paths of the MariaDB programs used.
#[derive(Debug, Clone)]
struct Tools {
    server: PathBuf,
    install_db: PathBuf,
    client: PathBuf,
    admin: PathBuf,
}

fn find_tool(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SWITCHYARD_MARIADB_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
        bail!("SWITCHYARD_MARIADB_BIN has no {name} ({})", p.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")];
    dirs.into_iter()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "MariaDB program {name} not found (run scripts/install-deps.sh, or set \
                 SWITCHYARD_MARIADB_BIN)"
            )
        })
}

impl Tools {
    fn find() -> Result<Tools> {
        Ok(Tools {
            server: find_tool("mariadbd")?,
            install_db: find_tool("mariadb-install-db")?,
            client: find_tool("mariadb")?,
            admin: find_tool("mariadb-admin")?,
        })
    }
}

#[derive(Debug)]
struct Node {
    port: AtomicU16,
    /// `nodeN`: socket, pid file, error log, tmpdir.
    dir: PathBuf,
    /// `nodeN/data`: the data directory (and the server's working directory).
    data: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    /// The running `mariadbd`, our child.
    child: Mutex<Option<Child>>,
}

/// Who replicates from whom.
#[derive(Debug, Clone)]
struct Topology {
    primary: usize,
    /// Source of each node, `None` for the primary and for detached nodes (a promoted
    /// replica's old primary).
    upstream: Vec<Option<usize>>,
}

/// A running MariaDB primary (node 0 at first) plus GTID replicas (nodes 1..).
#[derive(Debug)]
pub struct MariaCluster {
    tools: Tools,
    as_mysql: bool,
    root: PathBuf,
    tmp: Option<tempfile::TempDir>,
    nodes: Vec<Node>,
    opts: MariaClusterOptions,
    topo: Mutex<Topology>,
}

/// Directories of the clusters not dropped yet, for the `atexit` handler.
static REGISTRY: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

extern "C" fn cleanup_at_exit() {
    let _ = std::panic::catch_unwind(cleanup_registered);
}

/// Kills the servers of every MariaDB cluster that is still running and removes its
/// directory. Runs automatically at process exit; clusters dropped normally are no longer
/// registered.
pub fn cleanup_registered() {
    let roots = std::mem::take(&mut *lock(&REGISTRY));
    for root in roots {
        kill_all_in(&root);
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// A port that was free a moment ago on 127.0.0.1 (never a standard database port).
fn free_port() -> Result<u16> {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if ![3306, 3307, 5432, 6432].contains(&port) {
            return Ok(port);
        }
    }
}

/// Runs `c` with a time limit (its process is SIGKILLed after `timeout`); returns its output
/// whatever its exit status.
fn output_within(mut c: Command, timeout: Duration, what: &str) -> Result<Output> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().with_context(|| format!("{what}: cannot spawn"))?;
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.with_context(|| format!("{what}: wait")),
        Err(_) => {
            // SAFETY: sending a signal has no memory-safety preconditions; the child is not
            // reaped until the waiting thread sees it exit, so the pid is still its own.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(5));
            bail!("{what}: no answer within {timeout:?} (killed)")
        }
    }
}

/// Like [`output_within`], but a failure exit is an error carrying stderr and stdout.
fn run(c: Command, timeout: Duration, what: &str) -> Result<Output> {
    let out = output_within(c, timeout, what)?;
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

/// Polls `done` every `every` ms until it returns true or `timeout` passes.
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

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(s.rsplit_once(')'), Some((_, r)) if r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Live processes whose working directory is `dir` or inside it (`mariadbd` works in its data
/// directory).
fn procs_under(dir: &Path) -> Vec<i32> {
    let (Ok(dir), Ok(entries)) = (dir.canonicalize(), std::fs::read_dir("/proc")) else {
        return Vec::new();
    };
    let pids = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(|&pid| {
        std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(&dir))
            && alive(pid)
    })
    .collect()
}

/// SIGKILLs every process working inside `dir` and waits (bounded) until they are gone,
/// reaping those that are children of this process (at exit, the servers of a cluster kept in
/// a static would otherwise stay zombies until PID 1 reaps them).
fn kill_all_in(dir: &Path) {
    let mut killed: Vec<i32> = Vec::new();
    let kill = || {
        let pids = procs_under(dir);
        for &pid in &pids {
            // SAFETY: sending a signal has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            if !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        // 0: our child, still running. -1 (not our child) or the pid (reaped): done with it.
        // SAFETY: waitpid with WNOHANG and a null status pointer only reaps or reports.
        killed
            .retain(|&pid| unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0);
        pids.is_empty() && killed.is_empty()
    };
    poll(Duration::from_secs(10), 20, kill);
}

fn mysql_ids() -> Result<(u32, u32)> {
    let name = std::ffi::CString::new("mysql").expect("no NUL");
    // SAFETY: getpwnam returns NULL or a pointer to static storage, read immediately.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!(
            "running as root but there is no `mysql` user to run mariadbd as (the \
             mariadb-server package creates it; run scripts/install-deps.sh)"
        );
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Parent directory for the cluster: the temp dir, or /tmp when running as root and the temp
/// dir is not traversable by other users, or when its path would make the Unix socket paths
/// too long (108 bytes).
fn temp_parent(as_mysql: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir();
    let traversable =
        |a: &Path| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 1 != 0);
    let too_long = dir.as_os_str().len() > 60;
    if too_long || (as_mysql && !dir.ancestors().all(traversable)) {
        return PathBuf::from("/tmp");
    }
    dir
}

/// Starts a detached shell that kills the servers and removes the directory if this process
/// dies (even by SIGKILL) while the directory still exists.
fn spawn_watchdog(root: &Path) {
    const SCRIPT: &str = r#"pid=$1; root=$2
(
  while kill -0 "$pid" 2>/dev/null && [ -d "$root" ]; do
    case "$(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null)" in " Z"*) break;; esac
    sleep 1
  done
  if [ -d "$root" ]; then
    for i in 1 2 3 4 5; do
      found=0
      for p in /proc/[0-9]*; do
        c=$(readlink "$p/cwd" 2>/dev/null) || continue
        case "$c/" in "$root"/*) kill -9 "${p#/proc/}"; found=1;; esac
      done
      [ "$found" = 0 ] && break
      sleep 1
    done
    rm -rf "$root"
  fi
) </dev/null >/dev/null 2>&1 &"#;
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("sh");
    c.args(["-c", SCRIPT, "sh", &std::process::id().to_string()]);
    c.arg(root);
    // Outside the directory: it kills whatever works inside it.
    c.current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Own process group: a Ctrl-C aimed at the tests must not kill the watchdog too.
    let _ = c.process_group(0).status();
}

/// Undoes the `mariadb --batch` escaping of one field (`\t`, `\n`, `\0`, `\\`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn parse_rows(stdout: &[u8]) -> Vec<Vec<String>> {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .map(|l| l.split('\t').map(unescape).collect())
        .collect()
}

/// Parses a GTID list such as `0-1-7,1-2-3` into domain -> (server id, sequence number).
fn parse_gtids(list: &str) -> Result<BTreeMap<u32, (u32, u64)>> {
    let mut out = BTreeMap::new();
    for g in list.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let parts: Vec<&str> = g.split('-').collect();
        let [d, s, n] = parts[..] else {
            bail!("bad GTID {g:?} in {list:?}");
        };
        let bad = || anyhow!("bad GTID {g:?} in {list:?}");
        let d = d.parse().map_err(|_| bad())?;
        out.insert(
            d,
            (s.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?),
        );
    }
    Ok(out)
}

/// Whether GTID position `have` (such as a replica's `@@gtid_slave_pos`) includes everything
/// in `want` (such as the primary's `@@gtid_binlog_pos`): for every replication domain of
/// `want`, `have` has reached at least its sequence number (GTID strict mode keeps sequence
/// numbers of one domain increasing across servers).
pub fn gtid_covers(have: &str, want: &str) -> Result<bool> {
    let (have, want) = (parse_gtids(have)?, parse_gtids(want)?);
    Ok(want
        .iter()
        .all(|(d, (_, seq))| have.get(d).is_some_and(|(_, h)| h >= seq)))
}

fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

impl MariaCluster {
    /// Starts a primary plus `replicas` GTID replicas with default options.
    pub fn start(replicas: usize) -> Result<MariaCluster> {
        MariaCluster::start_with(MariaClusterOptions {
            replicas,
            ..Default::default()
        })
    }

    /// Starts a primary plus `opts.replicas` GTID replicas, creates the users and waits until
    /// every replica replicates and has replayed the primary's binary log.
    pub fn start_with(opts: MariaClusterOptions) -> Result<MariaCluster> {
        let t0 = Instant::now();
        let tools = Tools::find()?;
        // SAFETY: geteuid has no preconditions.
        let as_mysql = unsafe { libc::geteuid() } == 0;
        let owner = if as_mysql { Some(mysql_ids()?) } else { None };
        let tmp = tempfile::Builder::new()
            .prefix("switchyard-mariadb-")
            .tempdir_in(temp_parent(as_mysql))
            .context("create temporary directory")?;
        let root = tmp.path().canonicalize().context("canonicalize temp dir")?;
        ATEXIT.call_once(|| {
            // SAFETY: registers a plain extern "C" function that never unwinds.
            unsafe { libc::atexit(cleanup_at_exit) };
        });
        lock(&REGISTRY).push(root.clone());
        spawn_watchdog(&root);
        let nodes: Vec<Node> = (0..=opts.replicas)
            .map(|i| {
                let dir = root.join(format!("node{i}"));
                Node {
                    port: AtomicU16::new(0),
                    data: dir.join("data"),
                    socket: dir.join("mariadbd.sock"),
                    log: dir.join("error.log"),
                    dir,
                    child: Mutex::new(None),
                }
            })
            .collect();
        let topo = Topology {
            primary: 0,
            upstream: (0..nodes.len()).map(|i| (i > 0).then_some(0)).collect(),
        };
        let cluster = MariaCluster {
            tools,
            as_mysql,
            root,
            tmp: Some(tmp),
            nodes,
            opts,
            topo: Mutex::new(topo),
        };
        // On error the cluster is dropped here, which kills whatever already started.
        cluster.install(owner)?;
        for i in 0..cluster.nodes.len() {
            cluster.first_start(i)?;
        }
        cluster.create_users()?;
        for i in 1..cluster.nodes.len() {
            cluster.change_master(i, 0)?;
        }
        cluster.wait_replicating(WAIT)?;
        cluster.wait_caught_up(WAIT)?;
        eprintln!(
            "testkit: MariaDB primary on port {}, replicas on {:?}, ready in {:.2?} ({})",
            cluster.primary_port(),
            cluster.replica_ports(),
            t0.elapsed(),
            cluster.root.display()
        );
        Ok(cluster)
    }

    /// Creates every node's directory and data directory (`mariadb-install-db` once, then
    /// copies).
    fn install(&self, owner: Option<(u32, u32)>) -> Result<()> {
        let chown = |p: &Path| -> Result<()> {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .with_context(|| format!("chown {} to mysql", p.display()))?;
            }
            Ok(())
        };
        chown(&self.root)?;
        for n in &self.nodes {
            std::fs::create_dir(&n.dir).with_context(|| format!("mkdir {}", n.dir.display()))?;
            chown(&n.dir)?;
        }
        let first = &self.nodes[0];
        // As root, run it as `mysql` through runuser rather than with `--user=mysql`: with
        // `--user` the script also chowns and chmods the PAM plugin's helper under
        // /usr/lib/mysql/plugin, outside our directory.
        let mut c = if self.as_mysql {
            let mut c = Command::new("runuser");
            c.args(["-u", "mysql", "--"]).arg(&self.tools.install_db);
            c
        } else {
            Command::new(&self.tools.install_db)
        };
        c.arg("--no-defaults");
        c.arg(format!("--datadir={}", first.data.display()));
        // Never /tmp: a starting MariaDB server deletes every `#sql*` file in its tmpdir, so
        // two bootstraps sharing /tmp delete each other's temporary tables ("Could not remove
        // temporary table: '/tmp/#sql-temptable-28ac-1-3', error: 2", then "ERROR: 1051
        // Unknown table 'mysql.tmp_user_sys'" and the install fails).
        c.arg(format!("--tmpdir={}", first.dir.display()));
        c.args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            REDO_LOG,
            "--innodb-buffer-pool-size=16M",
        ]);
        c.current_dir(&self.root);
        run(c, WAIT, "mariadb-install-db")?;
        for n in &self.nodes[1..] {
            let mut c = Command::new("cp");
            c.arg("-a").arg(&first.data).arg(&n.data);
            run(c, WAIT, "copy of the installed data directory")?;
        }
        Ok(())
    }

    fn server_command(&self, i: usize, read_only: bool) -> Command {
        let n = &self.nodes[i];
        let mut c = Command::new(&self.tools.server);
        c.arg("--no-defaults");
        if self.as_mysql {
            c.arg("--user=mysql");
        }
        let path_args = [
            ("--datadir", &n.data),
            ("--socket", &n.socket),
            ("--pid-file", &n.dir.join("mariadbd.pid")),
            ("--log-error", &n.log),
            // Its own tmpdir, for the same reason as in `install`.
            ("--tmpdir", &n.dir),
        ];
        for (flag, p) in path_args {
            c.arg(format!("{flag}={}", p.display()));
        }
        c.arg(format!("--port={}", self.port(i)));
        c.arg(format!("--server-id={}", i + 1));
        c.arg(format!("--max-connections={}", self.opts.max_connections));
        c.arg(format!(
            "--innodb-buffer-pool-size={}M",
            self.opts.buffer_pool_mb
        ));
        c.arg(format!("--read-only={}", u8::from(read_only)));
        c.args([
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--log-bin=binlog",
            "--relay-log=relay-bin",
            "--binlog-format=ROW",
            "--log-slave-updates",
            "--gtid-strict-mode=1",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            // Test speed and size only: not crash safe against an OS crash (a killed
            // process loses nothing), small caches.
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            REDO_LOG,
            "--innodb-log-buffer-size=2M",
            "--key-buffer-size=1M",
            "--aria-pagecache-buffer-size=8M",
        ]);
        c.args(&self.opts.extra_args);
        c.current_dir(&n.dir).stdin(Stdio::null());
        c
    }

    /// Starts `mariadbd` for node `i` on its current port and waits until it answers a ping.
    /// Returns whether a failure was a port conflict, with the error.
    fn spawn_and_wait(&self, i: usize) -> std::result::Result<(), (bool, anyhow::Error)> {
        let n = &self.nodes[i];
        let mut slot = lock(&n.child);
        if let Some(child) = slot.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Err((false, anyhow!("node {i} is already running")));
            }
        }
        *slot = None;
        let read_only = lock(&self.topo).upstream[i].is_some();
        let mut c = self.server_command(i, read_only);
        // Early messages (before the error log is open) go to console.log.
        let console = n.dir.join("console.log");
        let io = std::fs::File::create(&console)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| (false, anyhow!("create {}: {e}", console.display())))?;
        c.stdout(io.0).stderr(io.1);
        {
            use std::os::unix::process::CommandExt;
            // Own process group: a Ctrl-C aimed at the tests does not reach the servers (the
            // watchdog stops them if the test process dies).
            c.process_group(0);
        }
        // Only what this attempt writes to the error log tells whether its port was taken.
        let log_start = std::fs::metadata(&n.log).map_or(0, |m| m.len() as usize);
        let mut child = c
            .spawn()
            .map_err(|e| (false, anyhow!("node {i}: cannot spawn mariadbd: {e}")))?;
        let tail = || {
            format!(
                "--- tail of {} ---\n{}\n{}",
                n.log.display(),
                log_tail(&n.log, 30),
                log_tail(&console, 10)
            )
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read(&n.log).unwrap_or_default();
                let log = String::from_utf8_lossy(log.get(log_start..).unwrap_or_default());
                let conflict =
                    log.contains("Address already in use") || log.contains("Bind on TCP/IP port");
                return Err((
                    conflict,
                    anyhow!(
                        "node {i}: mariadbd exited during start-up ({status})\n{}",
                        tail()
                    ),
                ));
            }
            if self.ping(i) {
                *slot = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err((
                    false,
                    anyhow!("node {i}: not ready after {WAIT:?}\n{}", tail()),
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// First start of a node: picks a free port, and another one after a port conflict.
    fn first_start(&self, i: usize) -> Result<()> {
        let mut attempt = 1;
        loop {
            self.nodes[i].port.store(free_port()?, Ordering::SeqCst);
            match self.spawn_and_wait(i) {
                Ok(()) => return Ok(()),
                Err((true, e)) if attempt < PORT_ATTEMPTS => {
                    eprintln!("testkit: node {i}: port conflict, retrying: {e:#}");
                    attempt += 1;
                }
                Err((_, e)) => return Err(e),
            }
        }
    }

    /// `mariadb-admin ping` over the node's socket: true once the server accepts connections.
    fn ping(&self, i: usize) -> bool {
        let mut c = Command::new(&self.tools.admin);
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.nodes[i].socket.display()))
            .args(["--user=root", "--connect-timeout=2", "ping"]);
        c.current_dir(&self.root);
        output_within(c, Duration::from_secs(10), "mariadb-admin ping")
            .is_ok_and(|o| o.status.success())
    }

    fn create_users(&self) -> Result<()> {
        // Root only on the socket and 127.0.0.1: the entries for the host name and ::1 are
        // ignored with --skip-name-resolve and only add warnings to every log.
        let stray = self.query(
            0,
            "SELECT user, host FROM mysql.global_priv WHERE user = 'root' \
             AND host NOT IN ('localhost', '127.0.0.1')",
        )?;
        let mut sql = String::new();
        for row in stray {
            sql += &format!("DROP USER {}@{};", sql_quote(&row[0]), sql_quote(&row[1]));
        }
        let native = |user: &str, pw: &str| {
            format!(
                "CREATE USER '{user}'@'%' IDENTIFIED VIA mysql_native_password USING \
                 PASSWORD({});",
                sql_quote(pw)
            )
        };
        sql += &native(REPL_USER, REPL_PASSWORD);
        sql += &format!("GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%';");
        sql += &native(APP_USER, APP_PASSWORD);
        sql += &format!("GRANT {APP_PRIVILEGES} ON *.* TO '{APP_USER}'@'%';");
        sql += &native(PROXY_USER, PROXY_PASSWORD);
        sql += &format!(
            "GRANT {APP_PRIVILEGES}, {PROXY_EXTRA_PRIVILEGES} ON *.* TO '{PROXY_USER}'@'%';"
        );
        self.exec(0, &sql).context("create users")
    }

    /// `CHANGE MASTER TO` `source` with GTID `slave_pos`, `START SLAVE`, `read_only=1`.
    fn change_master(&self, node: usize, source: usize) -> Result<()> {
        let sql = format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{REPL_USER}', \
             MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; \
             START SLAVE; SET GLOBAL read_only=1",
            self.port(source),
            sql_quote(REPL_PASSWORD)
        );
        self.exec(node, &sql)
            .with_context(|| format!("make node {node} a replica of node {source}"))?;
        let mut t = lock(&self.topo);
        t.upstream[node] = Some(source);
        Ok(())
    }

    /// Waits until both replication threads of every running replica of the primary run.
    fn wait_replicating(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for node in self.current_replicas() {
            let left = deadline.saturating_duration_since(Instant::now());
            let running = || {
                self.replica_status(node).is_ok_and(|s| {
                    s.is_some_and(|s| {
                        s.get("Slave_IO_Running").is_some_and(|v| v == "Yes")
                            && s.get("Slave_SQL_Running").is_some_and(|v| v == "Yes")
                    })
                })
            };
            if !poll(left, 20, running) {
                bail!(
                    "replica {node} not replicating after {timeout:?}: {:?}\n--- tail of {} \
                     ---\n{}",
                    self.replica_status(node),
                    self.nodes[node].log.display(),
                    log_tail(&self.nodes[node].log, 20)
                );
            }
        }
        Ok(())
    }

    /// Running nodes that replicate from the current primary.
    fn current_replicas(&self) -> Vec<usize> {
        let t = lock(&self.topo).clone();
        (0..self.nodes.len())
            .filter(|&n| t.upstream[n] == Some(t.primary) && self.is_running(n))
            .collect()
    }

    // ---- SQL ----

    fn client(&self) -> Command {
        let mut c = Command::new(&self.tools.client);
        c.arg("--no-defaults");
        c.args([
            "--batch",
            "--connect-timeout=10",
            "--default-character-set=utf8mb4",
        ]);
        for v in [
            "MYSQL_PWD",
            "MYSQL_HOST",
            "MYSQL_TCP_PORT",
            "MYSQL_UNIX_PORT",
        ] {
            c.env_remove(v);
        }
        c.current_dir(&self.root);
        c
    }

    /// Runs the client command `c` for `node`; a failure is an [`SqlError`] when the client
    /// printed an `ERROR` line.
    fn run_client(&self, node: usize, mut c: Command, sql: &str) -> Result<Vec<u8>> {
        c.arg("-e").arg(sql);
        let out = output_within(c, CLIENT_TIMEOUT, &format!("mariadb on node {node}"))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        match SqlError::parse(node, &err) {
            Some(e) => Err(anyhow::Error::new(e)),
            None => bail!(
                "mariadb on node {node} failed ({}): {}",
                out.status,
                err.trim()
            ),
        }
    }

    fn root_client(&self, node: usize, db: Option<&str>, names: bool) -> Command {
        let mut c = self.client();
        c.arg(format!("--socket={}", self.nodes[node].socket.display()))
            .arg("--user=root");
        if !names {
            c.arg("--skip-column-names");
        }
        if let Some(db) = db {
            c.arg(format!("--database={db}"));
        }
        c
    }

    /// Runs `sql` (one or more statements) as root over `node`'s socket and returns the rows
    /// of its result sets, each a vector of column values (`NULL` comes back as `"NULL"`).
    pub fn query(&self, node: usize, sql: &str) -> Result<Vec<Vec<String>>> {
        self.query_db(node, None, sql)
    }

    /// Like [`MariaCluster::query`], with `db` as the default database.
    pub fn query_db(&self, node: usize, db: Option<&str>, sql: &str) -> Result<Vec<Vec<String>>> {
        let out = self.run_client(node, self.root_client(node, db, false), sql)?;
        Ok(parse_rows(&out))
    }

    /// Runs `sql` as root on `node` and ignores any rows.
    pub fn exec(&self, node: usize, sql: &str) -> Result<()> {
        self.query(node, sql).map(drop)
    }

    /// First column of the first row of `sql` run as root on `node`.
    pub fn value(&self, node: usize, sql: &str) -> Result<String> {
        let rows = self.query(node, sql)?;
        rows.into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| anyhow!("node {node}: no rows from {sql:?}"))
    }

    /// Runs one statement as root on `node`; each row as column name -> value.
    pub fn query_named(&self, node: usize, sql: &str) -> Result<Vec<BTreeMap<String, String>>> {
        let out = self.run_client(node, self.root_client(node, None, true), sql)?;
        let mut rows = parse_rows(&out).into_iter();
        let Some(names) = rows.next() else {
            return Ok(Vec::new());
        };
        Ok(rows
            .map(|r| names.iter().cloned().zip(r).collect())
            .collect())
    }

    /// Runs `sql` over TCP (127.0.0.1, the node's port) as `user` with `password` (none if
    /// `None`; the client never prompts), with `db` as the default database if given.
    pub fn query_as(
        &self,
        node: usize,
        user: &str,
        password: Option<&str>,
        db: Option<&str>,
        sql: &str,
    ) -> Result<Vec<Vec<String>>> {
        let mut c = self.client();
        c.args(["--protocol=TCP", "--host=127.0.0.1", "--skip-column-names"])
            .arg(format!("--port={}", self.port(node)))
            .arg(format!("--user={user}"));
        match password {
            // Through the environment, so it does not show in `ps`.
            Some(p) => c.env("MYSQL_PWD", p),
            None => c.arg("--skip-password"),
        };
        if let Some(db) = db {
            c.arg(format!("--database={db}"));
        }
        Ok(parse_rows(&self.run_client(node, c, sql)?))
    }

    /// `SHOW REPLICA STATUS` of `node` as column name -> value (`Slave_IO_Running`,
    /// `Slave_SQL_Running`, `Seconds_Behind_Master`, `Gtid_IO_Pos`, `SQL_Delay`, ...);
    /// `None` when the node is not configured as a replica.
    pub fn replica_status(&self, node: usize) -> Result<Option<BTreeMap<String, String>>> {
        Ok(self
            .query_named(node, "SHOW REPLICA STATUS")?
            .into_iter()
            .next())
    }

    /// `@@gtid_binlog_pos` of `node`: the last GTID of each domain in its binary log.
    pub fn gtid_binlog_pos(&self, node: usize) -> Result<String> {
        self.value(node, "SELECT @@gtid_binlog_pos")
    }

    /// `@@gtid_slave_pos` of `node`: the last GTID of each domain it replayed as a replica.
    pub fn gtid_slave_pos(&self, node: usize) -> Result<String> {
        self.value(node, "SELECT @@gtid_slave_pos")
    }

    /// Creates database `name` on the primary and waits until every running replica of the
    /// primary has replayed it.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.exec(self.primary(), &format!("CREATE DATABASE `{name}`"))?;
        self.wait_caught_up(WAIT)
    }

    /// Waits until every running replica of the current primary has replayed the primary's
    /// binary log up to its `@@gtid_binlog_pos` at the time of the call (compared with each
    /// replica's `@@gtid_slave_pos`). Stopped replicas are skipped.
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<()> {
        let target = self.gtid_binlog_pos(self.primary())?;
        let deadline = Instant::now() + timeout;
        for node in self.current_replicas() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_replayed(node, &target, left)?;
        }
        Ok(())
    }

    /// Waits until replica `node` has replayed its primary's binary log up to the primary's
    /// `@@gtid_binlog_pos` at the time of the call.
    pub fn wait_node_caught_up(&self, node: usize, timeout: Duration) -> Result<()> {
        let target = self.gtid_binlog_pos(self.primary())?;
        self.wait_replayed(node, &target, timeout)
    }

    /// Waits until `@@gtid_slave_pos` of `node` covers GTID position `target`.
    pub fn wait_replayed(&self, node: usize, target: &str, timeout: Duration) -> Result<()> {
        let mut last = String::new();
        let done = || match self.gtid_slave_pos(node) {
            Ok(pos) => {
                let ok = gtid_covers(&pos, target).unwrap_or(false);
                last = pos;
                ok
            }
            Err(e) => {
                last = format!("{e:#}");
                false
            }
        };
        if !poll(timeout, 20, done) {
            bail!(
                "replica {node} has not replayed up to {target:?} after {timeout:?} (it is at \
                 {last:?}; status {:?})",
                self.replica_status(node)
                    .ok()
                    .flatten()
                    .map(|s| s.get("Last_Error").cloned().unwrap_or_default())
            );
        }
        Ok(())
    }

    // ---- replication control ----

    /// `STOP SLAVE SQL_THREAD` on replica `node`: it keeps receiving events but stops
    /// applying them (`Slave_SQL_Running: No`).
    pub fn stop_sql_thread(&self, node: usize) -> Result<()> {
        self.exec(node, "STOP SLAVE SQL_THREAD")
    }

    /// `START SLAVE SQL_THREAD` on replica `node`.
    pub fn start_sql_thread(&self, node: usize) -> Result<()> {
        self.exec(node, "START SLAVE SQL_THREAD")
    }

    /// `STOP SLAVE` (both threads) on replica `node`.
    pub fn stop_replication(&self, node: usize) -> Result<()> {
        self.exec(node, "STOP SLAVE")
    }

    /// `START SLAVE` (both threads) on replica `node`.
    pub fn start_replication(&self, node: usize) -> Result<()> {
        self.exec(node, "START SLAVE")
    }

    /// Makes replica `node` apply each event `seconds` after the primary wrote it
    /// (`CHANGE MASTER TO MASTER_DELAY`; 0 turns it off). Restarts its replication threads.
    pub fn set_master_delay(&self, node: usize, seconds: u32) -> Result<()> {
        self.exec(
            node,
            &format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY={seconds}; START SLAVE"),
        )
    }

    /// Promotes replica `node`: `STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0`. Events
    /// it received but had not applied yet are dropped (wait with
    /// [`MariaCluster::wait_node_caught_up`] first for a loss-free switch). The old primary
    /// is left alone and counts as detached (neither primary nor replica) from then on.
    pub fn promote(&self, node: usize) -> Result<()> {
        self.exec(node, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0")
            .with_context(|| format!("promote node {node}"))?;
        let mut t = lock(&self.topo);
        t.upstream[node] = None;
        t.primary = node;
        Ok(())
    }

    /// Makes `node` replicate from `source` with GTID `slave_pos` and `read_only=1`. A node
    /// that was not a replica (an old primary) first takes its own `@@gtid_binlog_pos` as its
    /// `@@gtid_slave_pos`, so it continues from what it already has.
    pub fn replicate_from(&self, node: usize, source: usize) -> Result<()> {
        if node == source {
            bail!("node {node} cannot replicate from itself");
        }
        let was_replica = lock(&self.topo).upstream[node].is_some();
        let mut sql = String::from("STOP SLAVE;");
        if !was_replica {
            sql += "SET GLOBAL read_only=1; SET GLOBAL gtid_slave_pos=@@gtid_binlog_pos;";
        }
        self.exec(node, &sql)
            .with_context(|| format!("prepare node {node} to replicate"))?;
        if was_replica {
            // Keep nothing of the old source's connection but the GTID position.
            self.exec(node, "RESET SLAVE ALL")?;
        }
        self.change_master(node, source)
    }

    // ---- processes ----

    /// Stops `node` cleanly (`mariadb-admin shutdown`) and waits until its process is gone.
    pub fn stop_node(&self, node: usize) -> Result<()> {
        let n = &self.nodes[node];
        let mut slot = lock(&n.child);
        let Some(mut child) = slot.take() else {
            bail!("node {node} is not running");
        };
        let mut c = Command::new(&self.tools.admin);
        c.arg("--no-defaults")
            .arg(format!("--socket={}", n.socket.display()))
            .args(["--user=root", "--connect-timeout=10", "shutdown"]);
        c.current_dir(&self.root);
        if let Err(e) = run(c, WAIT, &format!("mariadb-admin shutdown on node {node}")) {
            *slot = Some(child);
            return Err(e);
        }
        if !poll(WAIT, 20, || !matches!(child.try_wait(), Ok(None))) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "node {node} still running {WAIT:?} after shutdown (killed)\n{}",
                log_tail(&n.log, 20)
            );
        }
        Ok(())
    }

    /// SIGKILLs `node` (a crash) and waits until its process is gone.
    pub fn kill_node(&self, node: usize) -> Result<()> {
        let n = &self.nodes[node];
        let Some(mut child) = lock(&n.child).take() else {
            bail!("node {node} is not running");
        };
        let _ = child.kill();
        if !poll(WAIT, 10, || !matches!(child.try_wait(), Ok(None))) {
            bail!(
                "node {node} (pid {}) survived SIGKILL for {WAIT:?}",
                child.id()
            );
        }
        if !poll(WAIT, 20, || procs_under(&n.data).is_empty()) {
            bail!(
                "processes still working in {}: {:?}",
                n.data.display(),
                procs_under(&n.data)
            );
        }
        Ok(())
    }

    /// Starts a stopped or killed `node` again on its old port and waits until it accepts
    /// connections. A replica gets `--read-only=1` and resumes replicating by itself.
    pub fn start_node(&self, node: usize) -> Result<()> {
        self.spawn_and_wait(node).map_err(|(_, e)| e)
    }

    /// Whether `node`'s server process is running.
    pub fn is_running(&self, node: usize) -> bool {
        let mut slot = lock(&self.nodes[node].child);
        let running = slot
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if !running {
            *slot = None;
        }
        running
    }

    /// Process id of `node`'s `mariadbd`, if running.
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.is_running(node)
            .then(|| lock(&self.nodes[node].child).as_ref().map(Child::id))
            .flatten()
    }

    /// Resident memory of `node`'s `mariadbd` in bytes (`VmRSS`), if running.
    pub fn rss_bytes(&self, node: usize) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(node)?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    // ---- layout ----

    /// Index of the current primary (0 until [`MariaCluster::promote`]).
    pub fn primary(&self) -> usize {
        lock(&self.topo).primary
    }

    /// Nodes configured as replicas (of any source), in node order.
    pub fn replicas(&self) -> Vec<usize> {
        let t = lock(&self.topo);
        (0..self.nodes.len())
            .filter(|&n| t.upstream[n].is_some())
            .collect()
    }

    /// Port of the current primary.
    pub fn primary_port(&self) -> u16 {
        self.port(self.primary())
    }

    /// Ports of the nodes configured as replicas, in node order.
    pub fn replica_ports(&self) -> Vec<u16> {
        self.replicas().into_iter().map(|n| self.port(n)).collect()
    }

    /// TCP port of `node` on 127.0.0.1.
    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].port.load(Ordering::SeqCst)
    }

    /// Number of nodes (primary plus replicas).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Unix socket of `node` (root logs in there without a password).
    pub fn socket_path(&self, node: usize) -> &Path {
        &self.nodes[node].socket
    }

    /// Data directory of `node`.
    pub fn data_dir(&self, node: usize) -> &Path {
        &self.nodes[node].data
    }

    /// Error log of `node`.
    pub fn log_path(&self, node: usize) -> &Path {
        &self.nodes[node].log
    }

    /// The cluster's temporary directory (removed when the cluster is dropped).
    pub fn root_dir(&self) -> &Path {
        &self.root
    }
}

impl Drop for MariaCluster {
    fn drop(&mut self) {
        for n in &self.nodes {
            if let Some(mut child) = lock(&n.child).take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        kill_all_in(&self.root);
        lock(&REGISTRY).retain(|r| *r != self.root);
        if let Some(tmp) = self.tmp.take() {
            let _ = tmp.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions() {
        assert!(gtid_covers("0-1-7", "0-1-7").unwrap());
        assert!(gtid_covers("0-2-9", "0-1-7").unwrap());
        assert!(!gtid_covers("0-1-6", "0-1-7").unwrap());
        assert!(!gtid_covers("", "0-1-1").unwrap());
        assert!(gtid_covers("", "").unwrap());
        assert!(gtid_covers("0-1-7,1-3-2", "1-3-2, 0-1-5").unwrap());
        assert!(!gtid_covers("0-1-7", "0-1-5,1-3-2").unwrap());
        assert!(gtid_covers("0-1-x", "0-1-1").is_err());
    }

    #[test]
    fn client_output_and_errors() {
        let rows = parse_rows(b"a\\tb\tNULL\n\\\\x\\ny\t\n");
        assert_eq!(
            rows,
            vec![
                vec!["a\tb".to_string(), "NULL".to_string()],
                vec!["\\x\ny".to_string(), String::new()]
            ]
        );
        let e = SqlError::parse(
            1,
            "--------------\nINSERT ...\n--------------\n\nERROR 1290 (HY000) at line 1: The \
             MariaDB server is running with the --read-only option so it cannot execute this \
             statement\n",
        )
        .unwrap();
        assert_eq!((e.code, e.sqlstate.as_str()), (1290, "HY000"));
        assert!(e.message.starts_with("The MariaDB server is running"));
        let e = SqlError::parse(2, "ERROR 2002 (HY000): Can't connect to local server").unwrap();
        assert_eq!(e.code, 2002);
        assert_eq!(e.message, "Can't connect to local server");
    }
}
