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
//!
//! Layout: this file holds the cluster, its options, users and accessors; [`process`] the
//! server processes (binaries, data directories, start, stop, kill, the watchdog);
//! [`replication`] users, CHANGE MASTER, GTID positions and the failover steps; [`client`]
//! the `mariadb` client, its parsed results and the servers' errors.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

mod client;
mod process;
mod replication;

pub use client::SqlError;
use client::*;
use process::*;
pub use replication::gtid_covers;

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
