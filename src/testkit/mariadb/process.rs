//! Server processes: finding the binaries, data directories, starting, stopping, killing and
//! the watchdog that stops them if the test process dies.

use super::*;

/// Paths of the MariaDB programs used.
#[derive(Debug, Clone)]
pub(super) struct Tools {
    pub(super) server: PathBuf,
    pub(super) install_db: PathBuf,
    pub(super) client: PathBuf,
    pub(super) admin: PathBuf,
}

pub(super) fn find_tool(name: &str) -> Result<PathBuf> {
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
    pub(super) fn find() -> Result<Tools> {
        Ok(Tools {
            server: find_tool("mariadbd")?,
            install_db: find_tool("mariadb-install-db")?,
            client: find_tool("mariadb")?,
            admin: find_tool("mariadb-admin")?,
        })
    }
}

/// A port that was free a moment ago on 127.0.0.1 (never a standard database port).
pub(super) fn free_port() -> Result<u16> {
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
pub(super) fn output_within(mut c: Command, timeout: Duration, what: &str) -> Result<Output> {
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
pub(super) fn run(c: Command, timeout: Duration, what: &str) -> Result<Output> {
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

pub(super) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `done` every `every` ms until it returns true or `timeout` passes.
pub(super) fn poll(timeout: Duration, every: u64, mut done: impl FnMut() -> bool) -> bool {
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

pub(super) fn alive(pid: i32) -> bool {
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
pub(super) fn procs_under(dir: &Path) -> Vec<i32> {
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
pub(super) fn kill_all_in(dir: &Path) {
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

pub(super) fn mysql_ids() -> Result<(u32, u32)> {
    match crate::testkit::user_ids("mysql") {
        Some(ids) => Ok(ids),
        None => bail!(
            "running as root but there is no `mysql` user to run mariadbd as (the \
             mariadb-server package creates it; run scripts/install-deps.sh)"
        ),
    }
}

/// Parent directory for the cluster: the temp dir, or /tmp when running as root and the temp
/// dir is not traversable by other users, or when its path would make the Unix socket paths
/// too long (108 bytes).
pub(super) fn temp_parent(as_mysql: bool) -> PathBuf {
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
pub(super) fn spawn_watchdog(root: &Path) {
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

impl MariaCluster {
    /// Creates every node's directory and data directory (`mariadb-install-db` once, then
    /// copies).
    pub(super) fn install(&self, owner: Option<(u32, u32)>) -> Result<()> {
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

    pub(super) fn server_command(&self, i: usize, read_only: bool) -> Command {
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
    pub(super) fn spawn_and_wait(
        &self,
        i: usize,
    ) -> std::result::Result<(), (bool, anyhow::Error)> {
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
    pub(super) fn first_start(&self, i: usize) -> Result<()> {
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
    pub(super) fn ping(&self, i: usize) -> bool {
        let mut c = Command::new(&self.tools.admin);
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.nodes[i].socket.display()))
            .args(["--user=root", "--connect-timeout=2", "ping"]);
        c.current_dir(&self.root);
        output_within(c, Duration::from_secs(10), "mariadb-admin ping")
            .is_ok_and(|o| o.status.success())
    }

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
}
