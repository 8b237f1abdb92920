//! Running the real-driver scenario programs of `tests/drivers/` (Python: psycopg 3 and
//! asyncpg; Node: node-postgres; Java: pgjdbc) against the proxy or straight against the
//! PostgreSQL primary, each bounded by a timeout after which its process group is killed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{cluster, Proxy};

/// Where a scenario connects: the server under test and the primary to verify against.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub db: String,
}

impl Target {
    /// The proxy, as the SCRAM user `app`.
    pub fn proxy(p: &Proxy, db: &str) -> Target {
        Target {
            port: p.port,
            user: "app".into(),
            password: "secret".into(),
            db: db.into(),
        }
    }

    /// The shared cluster's primary, as the trusted superuser.
    pub fn direct(db: &str) -> Target {
        Target {
            port: cluster().primary_port(),
            user: "postgres".into(),
            password: String::new(),
            db: db.into(),
        }
    }

    pub fn is_direct(&self) -> bool {
        self.port == cluster().primary_port()
    }
}

/// A scenario program's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Python,
    Node,
    Java,
    /// PHP's pdo_pgsql (`tests/drivers/php/scenarios.php`).
    Php,
    /// Active Record on ruby-pg (`tests/drivers/ruby/scenarios.rb`).
    Ruby,
    /// Perl's DBI on DBD::Pg (`tests/drivers/perl/scenarios.pl`).
    Perl,
}

/// What a scenario run produced.
#[derive(Debug)]
pub struct Outcome {
    pub what: String,
    pub exit: Option<i32>,
    pub timed_out: bool,
    pub took: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// True when the program ran to its end (exit 0, printed END).
    pub fn completed(&self) -> bool {
        !self.timed_out && self.exit == Some(0) && self.stdout.lines().any(|l| l == "END")
    }

    /// Panics with everything the program said unless it completed.
    pub fn expect_completed(&self) -> &Self {
        assert!(self.completed(), "{}", self.describe());
        self
    }

    /// Result lines (stdout without the END marker).
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().filter(|l| *l != "END").collect()
    }

    /// The value after `key: ` on the first line starting with it.
    pub fn value(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}: ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    pub fn describe(&self) -> String {
        let tail: Vec<&str> = self.stderr.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{}: exit {:?}{} after {:.1?}\n--- stdout ---\n{}\n--- stderr (tail) ---\n{}",
            self.what,
            self.exit,
            if self.timed_out {
                " (TIMED OUT, killed)"
            } else {
                ""
            },
            self.took,
            self.stdout,
            tail.join("\n")
        )
    }
}

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// pgjdbc as packaged by Debian (`libpostgresql-jdbc-java`).
pub const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// A Java class path of `driver_jar` with HikariCP and Spring's JDBC transactions as Debian
/// packages them (`libhikaricp-java`, `libspring-jdbc-java`, `libspring-transaction-java`).
pub fn java_class_path_with(driver_jar: &str) -> String {
    [
        "HikariCP.jar",
        "slf4j-api.jar",
        "slf4j-nop.jar",
        "spring3-jdbc.jar",
        "spring3-transaction.jar",
        "spring3-core.jar",
        "spring3-beans.jar",
        "commons-logging.jar",
    ]
    .iter()
    .fold(driver_jar.to_string(), |cp, j| {
        format!("{cp}:/usr/share/java/{j}")
    })
}

/// The PostgreSQL Java scenarios' class path.
fn java_class_path() -> String {
    java_class_path_with(PGJDBC_JAR)
}

/// Compiles `tests/drivers/java/*.java` once per test binary; returns the class directory.
fn java_classes() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("driver-java");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let src: Vec<PathBuf> = std::fs::read_dir(drivers_dir().join("java"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "java"))
            .collect();
        let o = Command::new("javac")
            .args(["-encoding", "UTF-8", "-cp", &java_class_path(), "-d"])
            .arg(&out)
            .args(&src)
            .output()
            .expect("javac (scripts/install-deps.sh installs a JDK)");
        assert!(
            o.status.success(),
            "javac failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        out
    })
}

/// Runs scenario `name` with `args` of the `lang` program against `target` (verifying against
/// the primary, database `target.db`); kills it after `limit`.
pub fn run_scenario(
    lang: Lang,
    name: &str,
    args: &[&str],
    target: &Target,
    limit: Duration,
) -> Outcome {
    let dir = drivers_dir();
    let mut cmd = match lang {
        Lang::Python => {
            let mut c = Command::new("python3");
            c.arg("-u").arg(dir.join("python/scenarios.py"));
            c
        }
        Lang::Node => {
            let mut c = Command::new("node");
            c.arg(dir.join("node/scenarios.js"));
            c
        }
        Lang::Java => {
            let classes = java_classes();
            let mut c = Command::new("java");
            c.arg("-cp")
                .arg(format!("{}:{}", classes.display(), java_class_path()))
                .arg("Scenarios");
            c
        }
        Lang::Php => {
            let mut c = Command::new("php");
            c.arg(dir.join("php/scenarios.php"));
            c
        }
        Lang::Ruby => {
            let mut c = Command::new("ruby");
            c.arg(dir.join("ruby/scenarios.rb"));
            c
        }
        Lang::Perl => {
            let mut c = Command::new("perl");
            c.arg(dir.join("perl/scenarios.pl"));
            c
        }
    };
    cmd.arg(name).args(args);
    cmd.env("SY_HOST", "127.0.0.1")
        .env("SY_PORT", target.port.to_string())
        .env("SY_USER", &target.user)
        .env("SY_PASSWORD", &target.password)
        .env("SY_DB", &target.db)
        .env("SY_DIRECT_PORT", cluster().primary_port().to_string())
        .env("SY_DIRECT_USER", "postgres")
        .env("SY_DIRECT_DB", &target.db)
        .env_remove("PGPASSWORD")
        .env_remove("PGOPTIONS")
        .env_remove("PGAPPNAME")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let what = format!(
        "{lang:?} scenario {name} {args:?} against {}:{}",
        if target.is_direct() {
            "primary"
        } else {
            "proxy"
        },
        target.port
    );
    run_bounded(&mut cmd, what, limit)
}

/// Spawns `cmd` (in its own process group) and waits at most `limit`, then kills the group.
pub fn run_bounded(cmd: &mut Command, what: String, limit: Duration) -> Outcome {
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id() as i32;
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = so.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = se.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            timed_out = true;
            // SAFETY: signalling our own child's process group; no memory is involved.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Anything the group left behind (it should be nothing) goes too, so the pipes close.
    // SAFETY: as above.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    Outcome {
        what,
        exit: status.and_then(|s| s.code()),
        timed_out,
        took: start.elapsed(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Runs a scenario against the proxy and then directly against the primary (after `reset`
/// restored the same database state before each run); returns (proxy, direct).
pub fn run_both(
    lang: Lang,
    name: &str,
    args: &[&str],
    proxy: &Target,
    limit: Duration,
    reset: &dyn Fn(),
) -> (Outcome, Outcome) {
    reset();
    let via_proxy = run_scenario(lang, name, args, proxy, limit);
    reset();
    let direct = run_scenario(lang, name, args, &Target::direct(&proxy.db), limit);
    (via_proxy, direct)
}

/// Config for a proxy in front of the shared cluster serving database `db`: `workers` worker
/// threads, `pool_size` connections per backend (split over workers), with the replicas
/// (read/write splitting on) or without, fast health checks. Users: `app` (SCRAM, password
/// `secret`) and `app_trust` (no password).
pub fn drivers_config(db: &str, workers: usize, pool_size: usize, replicas: bool) -> String {
    let c = cluster();
    let replicas = if replicas {
        let list: Vec<String> = c
            .replica_ports()
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        format!("replicas = [{}]", list.join(", "))
    } else {
        String::new()
    };
    format!(
        r#"
[general]
drain_timeout = "2s"
workers = {workers}

[postgres]
listen = "127.0.0.1:0"

[pool]
size = {pool_size}
checkout_timeout = "5s"

[health]
interval = "200ms"
timeout = "1s"
rise = 2
fall = 2

[[user]]
name = "app"
password = "secret"

[[user]]
name = "app_trust"
auth = "trust"

[[cluster]]
name = "{db}"
database = "{db}"
primary = "127.0.0.1:{primary}"
{replicas}
user = "postgres"
"#,
        primary = c.primary_port(),
    )
}

/// Runs SQL on the primary in database `db` (panics on error); returns psql's -At output.
pub fn primary_sql(db: &str, sql: &str) -> String {
    cluster()
        .psql_db(0, db, sql)
        .unwrap_or_else(|e| panic!("on the primary, {db}: {sql}: {e:#}"))
}

/// Creates database `db` (replicated), runs `setup` in it on the primary and waits until the
/// replicas replayed it.
pub fn fresh_db(db: &str, setup: &str) {
    let c = cluster();
    super::create_db_on(c, db);
    if !setup.is_empty() {
        primary_sql(db, setup);
    }
    c.wait_replay_caught_up(Duration::from_secs(30)).unwrap();
}

/// Runs `case(db, item)` for every item of `items`, two at a time: one thread works in
/// database `db`, the other in `{db}_2` (both made afresh by [`fresh_db`] with `setup`), so
/// that cases running at once never share a database (advisory locks, for one, are per
/// database). For cases that mostly wait on their scenario programs; each thread still runs
/// its cases one after another. The results come in the order of `items`.
pub fn two_at_a_time<T: Sync, R: Send>(
    db: &str,
    setup: &str,
    items: &[T],
    case: impl Fn(&str, &T) -> R + Sync,
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dbs = [db.to_string(), format!("{db}_2")];
    for d in &dbs {
        fresh_db(d, setup);
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let threads: Vec<_> = dbs
            .iter()
            .map(|d| {
                let (next, case) = (&next, &case);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return mine;
                        };
                        mine.push((i, case(d, item)));
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Waits until the proxy sees every replica of `db` up and in its read set (bounded).
pub fn wait_replicas_ready(p: &Proxy, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let b = p.backends(db);
        if b.matches("read_set=true").count() >= cluster().replica_ports().len() {
            return;
        }
        assert!(Instant::now() < deadline, "replicas never ready: {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
