//! The MySQL front end with real drivers, used the way applications use them: the `mariadb`
//! CLI, mysql_async (Rust, its Pool, server-side prepared statements), PyMySQL (as SQLAlchemy
//! drives it: autocommit off, CLIENT_FOUND_ROWS, ROLLBACK on return to its pool),
//! mysql-connector-python (prepared cursors, caching_sha2_password, its pool's
//! COM_RESET_CONNECTION), MariaDB Connector/J (JDBC: autocommit off, PreparedStatement reuse,
//! executeBatch, setReadOnly), node mysql2 (its pool, `execute` = prepared statements) and
//! MariaDB Connector/Python (server-side cursors read with COM_STMT_FETCH, unbuffered
//! results, its resetting pool, COM_CHANGE_USER), MariaDB Connector/Node.js (pipelined
//! commands, prepare-and-execute in one write) and PHP's mysqlnd (PDO as Laravel sets it up,
//! mysqli).
//!
//! Each scenario (a: values and result sets, b: transactions and vanished clients, c: pooling
//! with connect-time settings, d: prepared statements across pooled connections, e: what a
//! session leaves on its connection, f: routing) runs through the proxy and, except for
//! routing, directly against the MariaDB primary on the same starting state; the printed
//! results must be identical. What was committed is read back from the primary. Every
//! program has a deadline after which its process group is killed, and every driver call a
//! timeout: a hang is a failure.
//!
//! The servers: one MariaDB primary (server_id 1) and two GTID replicas (2 and 3) per test
//! binary (`MariaCluster`), users `app` (the clients, directly and through the proxy) and
//! `switchyard` (the proxy's backend login). The tests run one at a time (`serial()`).
//! Drivers are installed by `scripts/install-deps.sh`; scenario programs are in
//! `tests/drivers/mysql/`.

mod support;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use support::drivers::{java_class_path_with, run_bounded, Outcome};
use switchyard::app::Server;
use switchyard::config::Config;
use switchyard::testkit::mariadb::{MariaCluster, APP_PASSWORD, APP_USER};

// ---------------------------------------------------------------------------------------------
// servers, proxies, targets

fn cluster() -> &'static MariaCluster {
    static C: OnceLock<MariaCluster> = OnceLock::new();
    C.get_or_init(|| MariaCluster::start(2).expect("start MariaDB primary + 2 replicas"))
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The primary's `@@server_id` (node 0 starts with server id 1).
const PRIMARY_ID: &str = "1";

struct Proxy {
    server: Option<Server>,
    port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

/// A proxy in front of the shared cluster for database `db`: one worker, `size` connections
/// per backend, with the replicas (read/write splitting) or without. Returns once the
/// primary is up and, with replicas, both are in the read set.
fn start_proxy(db: &str, size: usize, replicas: bool) -> Proxy {
    start_proxy_with(db, size, replicas, "")
}

/// [`start_proxy`] with more lines for the `[mysql]` listener (`mysql_extra`).
fn start_proxy_with(db: &str, size: usize, replicas: bool, mysql_extra: &str) -> Proxy {
    let c = cluster();
    let replicas_line = if replicas {
        let list: Vec<String> = c
            .replica_ports()
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        format!("replicas = [{}]", list.join(", "))
    } else {
        String::new()
    };
    let text = format!(
        r#"
[general]
workers = 1
drain_timeout = "2s"

[mysql]
listen = "127.0.0.1:0"
{mysql_extra}

[health]
interval = "200ms"
timeout = "2s"

[pool]
size = {size}
checkout_timeout = "5s"

[[user]]
name = "{APP_USER}"
password = "{APP_PASSWORD}"

[[cluster]]
name = "{db}"
protocol = "mysql"
database = "{db}"
primary = "127.0.0.1:{primary}"
{replicas_line}
user = "switchyard"
password = "switchyard_pw"
"#,
        primary = c.primary_port(),
    );
    let cfg = Config::from_toml(&text).expect("valid config");
    let server = Server::start(cfg).expect("proxy starts");
    let port = server.my_addr.expect("mysql listener").port();
    let p = Proxy {
        server: Some(server),
        port,
    };
    let want = if replicas { c.replica_ports().len() } else { 0 };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let clusters = p.server.as_ref().unwrap().shared.clusters.load_full();
        let st = &clusters[db];
        let primary_up = st
            .backends
            .iter()
            .any(|b| b.addr.port() == Some(c.primary_port()) && b.is_up());
        let readers = st
            .backends
            .iter()
            .filter(|b| b.addr.port() != Some(c.primary_port()) && b.in_read_set())
            .count();
        if primary_up && readers >= want {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "proxy never saw its backends ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a scenario connects.
#[derive(Debug, Clone)]
struct Target {
    port: u16,
    db: String,
    via_proxy: bool,
}

impl Target {
    fn proxy(p: &Proxy, db: &str) -> Target {
        Target {
            port: p.port,
            db: db.into(),
            via_proxy: true,
        }
    }

    fn direct(db: &str) -> Target {
        Target {
            port: cluster().primary_port(),
            db: db.into(),
            via_proxy: false,
        }
    }

    fn name(&self) -> &'static str {
        if self.via_proxy {
            "proxy"
        } else {
            "primary"
        }
    }
}

/// Creates database `db` on the primary, runs `setup` in it (root) and waits until both
/// replicas replayed it.
fn fresh_db(db: &str, setup: &str) {
    let c = cluster();
    c.create_database(db).expect("create database");
    if !setup.is_empty() {
        c.query_db(0, Some(db), setup)
            .unwrap_or_else(|e| panic!("setup of {db}: {e:#}"));
    }
    c.wait_caught_up(Duration::from_secs(30)).unwrap();
}

fn primary_value(db: &str, sql: &str) -> String {
    cluster()
        .query_db(0, Some(db), sql)
        .unwrap_or_else(|e| panic!("on the primary: {sql}: {e:#}"))
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// drivers and their scenario programs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    PyMysql,
    /// mysql-connector-python.
    Connector,
    /// MariaDB Connector/J.
    ConnectorJ,
    /// node mysql2.
    Mysql2,
    /// MariaDB Connector/Python (`mariadb`, on Connector/C).
    MariadbPy,
    /// PHP's mysqlnd (PDO and mysqli).
    Php,
    /// MariaDB Connector/Node.js (npm `mariadb`), which pipelines.
    MariadbNode,
    /// Active Record on the mysql2 gem (Ruby).
    Ruby,
}

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// MariaDB Connector/J as packaged by Debian (`libmariadb-java`).
const CONNECTOR_J_JAR: &str = "/usr/share/java/mariadb-java-client.jar";

/// Compiles `tests/drivers/mysql/*.java` once per test binary; returns the class directory.
fn java_classes() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("driver-mysql-java");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let src: Vec<PathBuf> = std::fs::read_dir(drivers_dir().join("mysql"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "java"))
            .collect();
        let mut cmd = Command::new("javac");
        cmd.args([
            "-encoding",
            "UTF-8",
            "-cp",
            &java_class_path_with(CONNECTOR_J_JAR),
            "-d",
        ])
        .arg(&out)
        .args(&src)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
        let o = run_bounded(&mut cmd, "javac".into(), Duration::from_secs(120));
        assert!(o.exit == Some(0), "javac failed:\n{}", o.describe());
        out
    })
}

/// Runs scenario `name` of `driver`'s program (Python, Node or Java) against `target`,
/// killed after `limit`.
fn run_program(
    driver: Driver,
    name: &str,
    args: &[&str],
    target: &Target,
    limit: Duration,
) -> Outcome {
    let dir = drivers_dir().join("mysql");
    let mut cmd = match driver {
        Driver::PyMysql | Driver::Connector => {
            let mut c = Command::new("python3");
            c.arg("-u").arg(dir.join("scenarios.py"));
            c.arg(if driver == Driver::PyMysql {
                "pymysql"
            } else {
                "connector"
            });
            c
        }
        Driver::MariadbPy => {
            let mut c = Command::new("python3");
            c.arg("-u").arg(dir.join("mariadb_scenarios.py"));
            c
        }
        Driver::Php => {
            let mut c = Command::new("php");
            c.arg(dir.join("scenarios.php"));
            c
        }
        Driver::Ruby => {
            let mut c = Command::new("ruby");
            c.arg(drivers_dir().join("ruby/scenarios.rb"));
            c
        }
        Driver::MariadbNode => {
            let mut c = Command::new("node");
            c.arg(dir.join("mariadb_scenarios.js"))
                .env("NODE_PATH", drivers_dir().join("node/node_modules"));
            c
        }
        Driver::Mysql2 => {
            let mut c = Command::new("node");
            c.arg(dir.join("scenarios.js"))
                .env("NODE_PATH", drivers_dir().join("node/node_modules"));
            c
        }
        Driver::ConnectorJ => {
            let classes = java_classes();
            let mut c = Command::new("java");
            c.args(["-Xss1m", "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-cp"])
                .arg(format!(
                    "{}:{}",
                    classes.display(),
                    java_class_path_with(CONNECTOR_J_JAR)
                ))
                .arg("MyScenarios");
            c
        }
    };
    cmd.arg(name).args(args);
    cmd.env("SY_HOST", "127.0.0.1")
        .env("SY_PORT", target.port.to_string())
        .env("SY_USER", APP_USER)
        .env("SY_PASSWORD", APP_PASSWORD)
        .env("SY_DB", &target.db)
        .env("SY_DIRECT_PORT", cluster().primary_port().to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONHASHSEED", "0")
        .env("TZ", "UTC")
        .env_remove("MYSQL_PWD")
        .env_remove("MYSQL_HOST")
        .env_remove("MYSQL_TCP_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let what = format!(
        "{driver:?} scenario {name} {args:?} against the {} (port {})",
        target.name(),
        target.port
    );
    run_bounded(&mut cmd, what, limit)
}

/// Runs scenario `name` of any driver against `target`.
fn run_scenario(
    driver: Driver,
    name: &str,
    args: &[&str],
    target: &Target,
    limit: Duration,
) -> Outcome {
    run_program(driver, name, args, target, limit)
}

/// A line diff of two outcomes' outputs (longest common subsequence), for failure messages:
/// `- ` lines only directly on the primary, `+ ` lines only through the proxy.
fn diff(via: &Outcome, direct: &Outcome) -> String {
    let a = direct.lines();
    let b = via.lines();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut s = String::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            s.push_str(&format!("  + proxy:  {}\n", b[j]));
            j += 1;
        } else {
            s.push_str(&format!("  - direct: {}\n", a[i]));
            i += 1;
        }
    }
    s
}

fn assert_same(driver: Driver, scenario: &str, via: &Outcome, direct: &Outcome) {
    if std::env::var_os("MYDRV_SHOW").is_some() {
        eprintln!("{}\n{}", via.describe(), direct.describe());
    }
    assert!(
        via.lines() == direct.lines(),
        "{driver:?} {scenario}: through the proxy differs from directly on the primary:\n{}",
        diff(via, direct)
    );
}

/// Runs scenario `name` of `driver` with `args` through `p` (dropped after) and directly on
/// the primary, `reset` before each run, each within `limit`; both must complete, `meant` must
/// hold of the direct run's output (`what` says what went wrong when it does not), and the
/// outputs must be equal.
fn compared_with_direct(
    (driver, name, args): (Driver, &str, &[&str]),
    (p, db): (Proxy, &str),
    limit: Duration,
    reset: &dyn Fn(),
    (what, meant): (&str, &dyn Fn(&str) -> bool),
) {
    reset();
    let via = run_scenario(driver, name, args, &Target::proxy(&p, db), limit);
    drop(p);
    reset();
    let direct = run_scenario(driver, name, args, &Target::direct(db), limit);
    direct.expect_completed();
    via.expect_completed();
    assert!(meant(&direct.stdout), "{what}:\n{}", direct.stdout);
    assert_same(driver, name, &via, &direct);
}

/// Waits (bounded) until the primary has no open InnoDB transaction; returns the ones left.
fn open_transactions_left() -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let rows = cluster()
            .query(
                0,
                "SELECT trx_mysql_thread_id, trx_state, trx_rows_locked, trx_query \
                 FROM information_schema.innodb_trx",
            )
            .unwrap();
        if rows.is_empty() || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// the scenarios, for any driver

/// Runs `scenario` through a proxy (pool 4, replicas) and directly on a fresh database; the
/// outputs must be equal.
fn same_as_direct(driver: Driver, scenario: &str, limit: Duration) {
    let _g = serial();
    let db = &format!("mydrv_{scenario}_{driver:?}").to_lowercase();
    fresh_db(db, "");
    compared_with_direct(
        (driver, scenario, &[]),
        (start_proxy(db, 4, true), db),
        limit,
        &|| {},
        ("", &|_| true),
    );
}

/// a. Values of every common type (NULLs, unicode, decimals, dates, BLOBs), column metadata,
/// affected-row counts, errors, multi-statements and CALL results, parameters of every type;
/// through the proxy exactly as directly.
fn values_match_direct(driver: Driver) {
    let _g = serial();
    let db = &format!("mydrv_values_{driver:?}").to_lowercase();
    fresh_db(db, "");
    let p = start_proxy(db, 4, true);
    let limit = Duration::from_secs(90);
    let via = run_scenario(driver, "types", &[], &Target::proxy(&p, db), limit);
    let direct = run_scenario(driver, "types", &[], &Target::direct(db), limit);
    drop(p);
    direct.expect_completed();
    via.expect_completed();
    assert_same(driver, "types", &via, &direct);
}

/// b. COMMIT and ROLLBACK are visible on the primary exactly when they should be; a client
/// whose socket drops (or whose process is killed) inside a transaction leaves no transaction
/// and no row lock: another client updates the row within a second.
fn transactions_behave_as_on_the_primary(driver: Driver) {
    let _g = serial();
    let db = &format!("mydrv_tx_{driver:?}").to_lowercase();
    fresh_db(db, "");
    let p = start_proxy(db, 4, true);
    let limit = Duration::from_secs(90);
    let via = run_scenario(driver, "tx", &[], &Target::proxy(&p, db), limit);
    let left = open_transactions_left();
    let direct = run_scenario(driver, "tx", &[], &Target::direct(db), limit);
    drop(p);
    direct.expect_completed();
    via.expect_completed();
    for key in [
        "row locked by the dropped client updated within 1s:",
        "row locked by the killed process updated within 1s:",
    ] {
        if let Some(l) = via.lines().iter().find(|l| l.starts_with(key)) {
            assert!(
                l.contains("True") || l.contains("true"),
                "{driver:?}: {l}\n{}",
                via.describe()
            );
        }
    }
    assert!(
        left.is_empty(),
        "{driver:?}: transactions still open on the primary after the proxied run: {left:?}"
    );
    assert_same(driver, "tx", &via, &direct);
}

/// c. The driver's pool (2 pools of `size`, each with its own sql_mode and time_zone set at
/// connect) runs many short transactions over a proxy pool of 2 per backend: no errors, no
/// timeouts, every connection sees its own settings in every transaction, the primary holds
/// exactly what was committed.
fn pool_keeps_settings(driver: Driver, threads: usize, per_thread: usize, size: usize) {
    let _g = serial();
    let db = &format!("mydrv_pool_{driver:?}").to_lowercase();
    fresh_db(db, "");
    let p = start_proxy(db, 2, true);
    let (t, n, s) = (
        threads.to_string(),
        per_thread.to_string(),
        size.to_string(),
    );
    let args = [t.as_str(), n.as_str(), s.as_str()];
    let limit = Duration::from_secs(180);
    let via = run_scenario(driver, "pool", &args, &Target::proxy(&p, db), limit);
    drop(p);
    let direct = run_scenario(driver, "pool", &args, &Target::direct(db), limit);
    direct.expect_completed();
    via.expect_completed();
    assert_eq!(via.value("errors"), Some("0"), "{}", via.describe());
    assert_eq!(via.value("wrong settings"), Some("0"), "{}", via.describe());
    assert_eq!(
        via.value("primary counter"),
        via.value("committed"),
        "{}",
        via.describe()
    );
    assert_same(driver, "pool", &via, &direct);
}

/// d. The same statements prepared and executed many times from several pooled connections
/// (parameter types changing between executions), closed and prepared again, and a statement
/// prepared in one transaction executed in later ones.
fn prepared_statements_survive_pooling(driver: Driver, threads: usize, rounds: usize) {
    let _g = serial();
    let db = &format!("mydrv_prep_{driver:?}").to_lowercase();
    fresh_db(db, "");
    let p = start_proxy(db, 2, true);
    let (t, r) = (threads.to_string(), rounds.to_string());
    let args = [t.as_str(), r.as_str()];
    let limit = Duration::from_secs(150);
    let via = run_scenario(driver, "prepared", &args, &Target::proxy(&p, db), limit);
    drop(p);
    let direct = run_scenario(driver, "prepared", &args, &Target::direct(db), limit);
    direct.expect_completed();
    via.expect_completed();
    let want = (threads * rounds).to_string();
    assert_eq!(via.value("ok"), Some(want.as_str()), "{}", via.describe());
    assert_same(driver, "prepared", &via, &direct);
}

/// g. Autocommit clients ask about their own last statement (LAST_INSERT_ID(), ROW_COUNT(),
/// FOUND_ROWS(), SHOW WARNINGS, @@warning_count) while other clients run the same: each must
/// get the answer about its own statement, as directly. (Through a proxy pool of 2 per
/// backend, consecutive statements of one client often run on different connections.)
fn own_statement_results_stay_with_the_client(driver: Driver) {
    let _g = serial();
    let db = &format!("mydrv_own_{driver:?}").to_lowercase();
    fresh_db(db, "");
    let p = start_proxy(db, 2, true);
    let args = ["8", "10"];
    let limit = Duration::from_secs(120);
    let via = run_scenario(driver, "own_results", &args, &Target::proxy(&p, db), limit);
    drop(p);
    let direct = run_scenario(driver, "own_results", &args, &Target::direct(db), limit);
    direct.expect_completed();
    via.expect_completed();
    assert_same(driver, "own_results", &via, &direct);
}

const LEAK_SETUP: &str = "CREATE TABLE leak_t (id INT PRIMARY KEY, v INT NOT NULL); \
                          INSERT INTO leak_t VALUES (1, 0)";

/// What the next client of a connection finds: session variables, user variables, locks,
/// temporary tables, SQL prepared statements, open transaction, uncommitted rows. Run with
/// the `mariadb` CLI (the same detector for every driver).
fn detect(target: &Target) -> Vec<String> {
    let checks = [
        "SELECT 'vars', @@session.sql_mode, @@session.time_zone, @@session.autocommit, \
         @@session.transaction_isolation, @@session.max_statement_time, \
         @@session.wait_timeout, @@session.sql_select_limit, @@session.lc_time_names, \
         @@character_set_client, @@character_set_results, @@collation_connection, DATABASE()",
        "SELECT 'in_transaction', @@in_transaction",
        "SELECT 'user variables', @secret IS NULL, @leak_n IS NULL",
        "SELECT 'lock free', IS_USED_LOCK('sy_leak_lock') IS NULL, IS_FREE_LOCK('sy_leak_lock')",
        "SELECT 'committed', v FROM leak_t WHERE id = 1",
        "SELECT 'temporary table', count(*) FROM tmp_leak",
        "EXECUTE leak_stmt",
    ];
    let mut lines = Vec::new();
    for sql in checks {
        let (ok, out, err) = cli::exec(target, &[], sql);
        if ok {
            lines.push(out.trim_end().replace('\n', " | "));
        } else {
            lines.push(format!("{sql}: {}", cli::error_code(&err)));
        }
    }
    lines
}

/// e. After a dirty session of the driver (session variables, user variables, a temporary
/// table, GET_LOCK, SQL and protocol prepared statements, an open transaction; ended with
/// COM_QUIT or a dropped socket), the next client on the proxy's single connection sees
/// what it sees on a fresh direct connection.
fn nothing_leaks_to_the_next_client(driver: Driver) {
    let _g = serial();
    let db = &format!("mydrv_leak_{driver:?}").to_lowercase();
    fresh_db(db, LEAK_SETUP);
    let baseline = detect(&Target::direct(db));
    let mut failures = Vec::new();
    for (how, tx) in [
        ("quit", "notx"),
        ("drop", "notx"),
        ("quit", "tx"),
        ("drop", "tx"),
    ] {
        let how = &format!("{how} {tx}");
        let p = start_proxy(db, 1, false);
        let via = Target::proxy(&p, db);
        let clean = detect(&via);
        if clean != baseline {
            failures.push(format!(
                "{how}: a fresh proxied session differs from a direct one: {clean:#?} vs \
                 {baseline:#?}"
            ));
        }
        let (q, t) = how.split_once(' ').unwrap();
        let d = run_scenario(driver, "dirty", &[q, t], &via, Duration::from_secs(60));
        let in_tx = if t == "tx" { "tx 1" } else { "notx 0" };
        if !d.completed() || d.value("dirty") != Some(in_tx) {
            failures.push(format!("{how}: dirty session failed\n{}", d.describe()));
            continue;
        }
        let found = detect(&via);
        drop(p);
        for (f, b) in found.iter().zip(&baseline) {
            if f != b {
                failures.push(format!(
                    "{how}: the next client found  {f}\n        a fresh connection has {b}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{driver:?}: {} leaks:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// f. With `SELECT @@server_id` in the statements: autocommit reads (text and prepared) are
/// spread over both replicas and never reach the primary; writes, reads inside transactions,
/// locking reads and everything with autocommit off run on the primary.
fn routing_splits_reads_and_writes(driver: Driver) {
    let _g = serial();
    let db = &format!("mydrv_route_{driver:?}").to_lowercase();
    fresh_db(db, "");
    let p = start_proxy(db, 4, true);
    let via = run_scenario(
        driver,
        "routing",
        &["30"],
        &Target::proxy(&p, db),
        Duration::from_secs(90),
    );
    drop(p);
    via.expect_completed();
    let replica_ids: Vec<String> = cluster()
        .replicas()
        .iter()
        .map(|&n| cluster().value(n, "SELECT @@server_id").unwrap())
        .collect();
    let mut reads: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut problems = Vec::new();
    for l in via.lines() {
        let Some((what, id)) = l.rsplit_once(" on ") else {
            continue;
        };
        let id = id.trim().to_string();
        if what.starts_with("autocommit text read") || what.starts_with("autocommit prepared read")
        {
            *reads
                .entry(what.to_string())
                .or_default()
                .entry(id)
                .or_default() += 1;
        } else if what == "writes executed" {
            if id != format!("[{PRIMARY_ID}]") {
                problems.push(format!("writes ran on {id}"));
            }
        } else if id != PRIMARY_ID {
            problems.push(format!("{what} ran on server {id}, not the primary"));
        }
    }
    assert!(
        !reads.is_empty(),
        "no autocommit reads reported\n{}",
        via.describe()
    );
    for (what, seen) in &reads {
        if seen.contains_key(PRIMARY_ID) {
            problems.push(format!("{what}: reached the primary: {seen:?}"));
        }
        for r in &replica_ids {
            if !seen.contains_key(r) {
                problems.push(format!("{what}: replica {r} got none: {seen:?}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{driver:?}: {}\n{}",
        problems.join("\n"),
        via.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// PyMySQL

#[test]
fn pymysql_values_metadata_errors_and_multi_results_match_direct() {
    values_match_direct(Driver::PyMysql);
}

#[test]
fn pymysql_commit_rollback_and_vanished_clients_behave_as_on_the_primary() {
    transactions_behave_as_on_the_primary(Driver::PyMysql);
}

#[test]
fn pymysql_pools_of_8_over_a_proxy_pool_of_2_keep_their_settings_without_timeouts() {
    pool_keeps_settings(Driver::PyMysql, 16, 20, 8);
}

/// Django (5.2, on PyMySQL) with persistent connections: six threads over a proxy pool of two,
/// in transaction mode. Each new Django connection sets its isolation level (`SET SESSION
/// TRANSACTION ISOLATION LEVEL READ COMMITTED`) and reads the server's variables; none of it
/// may keep a server connection, and each thread must see its own isolation level in every
/// transaction while a plain client beside it sees the server's. Compared with a direct run.
#[test]
fn django_connections_share_a_small_pool_with_their_isolation_level() {
    let _g = serial();
    let db = "mydrv_django";
    fresh_db(db, "");
    let table = || {
        cluster()
            .query_db(
                0,
                Some(db),
                "DROP TABLE IF EXISTS dj_t; CREATE TABLE dj_t (id INT AUTO_INCREMENT PRIMARY KEY, \
                 who INT, n INT NOT NULL DEFAULT 0, at DATETIME(6))",
            )
            .expect("dj_t");
    };
    compared_with_direct(
        (Driver::PyMysql, "django", &["6", "4"]),
        (start_proxy(db, 2, false), db),
        Duration::from_secs(150),
        &table,
        (
            "Django set no isolation level, or the plain client saw no other",
            &|out: &str| out.contains("READ-COMMITTED") && out.contains("REPEATABLE-READ"),
        ),
    );
}

/// Active Record (Rails 6.1's ORM on the mysql2 gem) as a Rails application uses it: a pool
/// of six connections, each set up by the mysql2 adapter with one SET of its names and
/// collation, sql_mode, sql_auto_is_null, wait_timeout and the configured time zone and
/// group_concat_max_len, used by six threads at once over a proxy pool of two: models created
/// and found, transactions committed and rolled back, a unique violation. What each thread
/// sees and a plain client's settings between rounds must be as directly on the primary.
#[test]
fn active_record_connections_share_a_small_pool_with_their_settings() {
    let _g = serial();
    let db = "mydrv_rails";
    fresh_db(db, "");
    let table = || {
        cluster()
            .query_db(
                0,
                Some(db),
                "DROP TABLE IF EXISTS ar_item; CREATE TABLE ar_item (id INT AUTO_INCREMENT \
                 PRIMARY KEY, who INT, note VARCHAR(200))",
            )
            .expect("ar_item");
    };
    compared_with_direct(
        (Driver::Ruby, "rails_mysql", &["6", "4"]),
        (start_proxy(db, 2, false), db),
        Duration::from_secs(150),
        &table,
        ("the scenario did not run as meant", &|out: &str| {
            out.contains("utf8mb4_unicode_ci")
                && out.contains("+02:00 | 4096")
                && out.contains("duplicate Mysql2::Error")
                && !out.contains("error")
        }),
    );
}

/// Spring's transactions over HikariCP on MariaDB Connector/J (Debian's Spring 4.3, HikariCP
/// 2.7, Connector/J 2.7), reads split to the replicas: isolation levels set before each
/// transaction and put back after it, read-only transactions, a pool with its own isolation
/// level, every connection of both pools open at once over a proxy pool of two per server.
/// Each thread's isolation level and access mode in and out of its transactions, a plain
/// client's between rounds, and the rows committed must be as directly.
#[test]
fn connector_j_spring_transactions_with_isolation_levels_share_a_small_pool() {
    let _g = serial();
    let db = "mydrv_spring";
    fresh_db(db, "");
    compared_with_direct(
        (Driver::ConnectorJ, "spring", &["6", "4"]),
        (start_proxy(db, 2, true), db),
        Duration::from_secs(150),
        &|| {},
        (
            "Spring's transactions were not as configured",
            &|out: &str| {
                out.contains("in transaction SERIALIZABLE")
                    && out.contains("READ_COMMITTED: in transaction READ-COMMITTED")
                    && out.contains("committed: 0:4 1:4 2:4 3:4 4:4 5:4")
            },
        ),
    );
}

#[test]
fn pymysql_repeated_and_sql_prepared_statements_survive_pooling() {
    prepared_statements_survive_pooling(Driver::PyMysql, 6, 30);
}

#[test]
fn pymysql_dirty_sessions_leave_nothing_for_the_next_client() {
    nothing_leaks_to_the_next_client(Driver::PyMysql);
}

#[test]
fn pymysql_autocommit_reads_use_replicas_and_writes_the_primary() {
    routing_splits_reads_and_writes(Driver::PyMysql);
}

// ---------------------------------------------------------------------------------------------
// mysql-connector-python

#[test]
fn connector_python_values_binary_results_and_multi_results_match_direct() {
    values_match_direct(Driver::Connector);
}

#[test]
fn connector_python_commit_rollback_and_vanished_clients_behave_as_on_the_primary() {
    transactions_behave_as_on_the_primary(Driver::Connector);
}

#[test]
fn connector_python_pools_of_8_over_a_proxy_pool_of_2_keep_their_settings_without_timeouts() {
    pool_keeps_settings(Driver::Connector, 16, 20, 8);
}

#[test]
fn connector_python_prepared_cursors_survive_pooling_closing_and_later_transactions() {
    prepared_statements_survive_pooling(Driver::Connector, 6, 30);
}

#[test]
fn connector_python_dirty_sessions_leave_nothing_for_the_next_client() {
    nothing_leaks_to_the_next_client(Driver::Connector);
}

#[test]
fn connector_python_autocommit_reads_use_replicas_and_writes_the_primary() {
    routing_splits_reads_and_writes(Driver::Connector);
}

#[test]
fn pymysql_last_insert_id_row_count_and_warnings_answer_the_clients_own_statement() {
    own_statement_results_stay_with_the_client(Driver::PyMysql);
}

#[test]
fn connector_python_last_insert_id_row_count_and_warnings_answer_the_clients_own_statement() {
    own_statement_results_stay_with_the_client(Driver::Connector);
}

// ---------------------------------------------------------------------------------------------
// node mysql2

#[test]
fn mysql2_values_metadata_session_flags_and_multi_results_match_direct() {
    values_match_direct(Driver::Mysql2);
}

#[test]
fn mysql2_commit_rollback_and_vanished_clients_behave_as_on_the_primary() {
    transactions_behave_as_on_the_primary(Driver::Mysql2);
}

#[test]
fn mysql2_pools_of_8_over_a_proxy_pool_of_2_keep_their_settings_without_timeouts() {
    pool_keeps_settings(Driver::Mysql2, 16, 20, 8);
}

#[test]
fn mysql2_execute_statements_survive_pooling_unprepare_and_later_transactions() {
    prepared_statements_survive_pooling(Driver::Mysql2, 6, 30);
}

#[test]
fn mysql2_dirty_sessions_leave_nothing_for_the_next_client() {
    nothing_leaks_to_the_next_client(Driver::Mysql2);
}

#[test]
fn mysql2_autocommit_reads_use_replicas_and_writes_the_primary() {
    routing_splits_reads_and_writes(Driver::Mysql2);
}

#[test]
fn mysql2_last_insert_id_row_count_and_warnings_answer_the_clients_own_statement() {
    own_statement_results_stay_with_the_client(Driver::Mysql2);
}

// ---------------------------------------------------------------------------------------------
// MariaDB Connector/J

#[test]
fn connector_j_statement_cancel_stops_its_own_statement_as_directly() {
    same_as_direct(Driver::ConnectorJ, "cancel", Duration::from_secs(120));
}

#[test]
fn connector_j_values_metadata_and_multi_results_match_direct() {
    values_match_direct(Driver::ConnectorJ);
}

#[test]
fn connector_j_commit_rollback_and_vanished_clients_behave_as_on_the_primary() {
    transactions_behave_as_on_the_primary(Driver::ConnectorJ);
}

#[test]
fn connector_j_pools_of_8_over_a_proxy_pool_of_2_keep_their_settings_without_timeouts() {
    pool_keeps_settings(Driver::ConnectorJ, 16, 20, 8);
}

#[test]
fn connector_j_prepared_statements_survive_pooling_and_later_transactions() {
    prepared_statements_survive_pooling(Driver::ConnectorJ, 6, 30);
}

#[test]
fn connector_j_dirty_sessions_leave_nothing_for_the_next_client() {
    nothing_leaks_to_the_next_client(Driver::ConnectorJ);
}

#[test]
fn connector_j_autocommit_reads_use_replicas_and_writes_the_primary() {
    routing_splits_reads_and_writes(Driver::ConnectorJ);
}

#[test]
fn connector_j_last_insert_id_row_count_and_warnings_answer_the_clients_own_statement() {
    own_statement_results_stay_with_the_client(Driver::ConnectorJ);
}

// ---------------------------------------------------------------------------------------------
// MariaDB Connector/Python: what only it does among these drivers (tests/drivers/mysql/
// mariadb_scenarios.py).

#[test]
fn mariadb_connector_python_server_side_cursors_fetch_as_directly() {
    // COM_STMT_EXECUTE with a cursor flag, then COM_STMT_FETCH a few rows at a time, with
    // other statements and a second cursor between the fetches.
    same_as_direct(Driver::MariadbPy, "cursors", Duration::from_secs(90));
}

#[test]
fn mariadb_connector_python_unbuffered_results_read_slowly_as_directly() {
    same_as_direct(Driver::MariadbPy, "unbuffered", Duration::from_secs(90));
}

#[test]
fn mariadb_connector_python_change_user_and_its_refusals_as_directly() {
    // Connector/C answers COM_CHANGE_USER from the handshake's scramble, also after an
    // AuthSwitchRequest; a refusal leaves the connection open on MariaDB.
    same_as_direct(Driver::MariadbPy, "change_user", Duration::from_secs(90));
}

#[test]
fn mariadb_connector_python_pool_resets_leave_nothing_for_the_next_user() {
    same_as_direct(Driver::MariadbPy, "pool", Duration::from_secs(90));
}

// ---------------------------------------------------------------------------------------------
// MariaDB Connector/Node.js: pipelined commands (tests/drivers/mysql/mariadb_scenarios.js).

#[test]
fn mariadb_connector_node_pipelined_queries_and_executes_match_direct() {
    // `execute` sends COM_STMT_PREPARE and COM_STMT_EXECUTE back to back, the execute naming
    // statement 0xFFFFFFFF, "the one just prepared".
    same_as_direct(Driver::MariadbNode, "pipeline", Duration::from_secs(90));
}

#[test]
fn mariadb_connector_node_pool_resets_leave_nothing_for_the_next_user() {
    same_as_direct(Driver::MariadbNode, "pool", Duration::from_secs(90));
}

// ---------------------------------------------------------------------------------------------
// PHP's mysqlnd (tests/drivers/mysql/scenarios.php).

#[test]
fn php_pdo_and_mysqli_as_applications_use_them_match_direct() {
    same_as_direct(Driver::Php, "app", Duration::from_secs(90));
}

#[test]
fn php_connections_keep_their_names_collation_mode_and_zone_as_directly() {
    // MariaDB's session tracking reports SET NAMES .. COLLATE as the three character_set_*
    // variables only, not collation_connection.
    same_as_direct(Driver::Php, "settings", Duration::from_secs(90));
}

#[test]
fn php_mysqli_kill_stops_the_other_connection_as_directly() {
    // mysqli::kill sends COM_PROCESS_KILL, not a KILL statement.
    same_as_direct(Driver::Php, "kill", Duration::from_secs(90));
}

#[test]
fn php_values_over_the_servers_max_allowed_packet_get_its_error_as_directly() {
    // The server answers 1153 and closes before reading the whole packet; the proxy's
    // write fails, and the server's ERR must still reach the client.
    same_as_direct(Driver::Php, "big", Duration::from_secs(90));
}

// ---------------------------------------------------------------------------------------------
// mysql_async (Rust): its Pool with per-connection init statements, server-side prepared
// statements from its statement cache, transactions through its API.

/// One task's work through a mysql_async pool: `rounds` transactions, each inserting one row
/// with a prepared statement and committing (even rounds) or rolling back (odd), checking
/// that its connection still has the settings the pool's init statements gave it, and
/// reading its own row back with another prepared statement. Returns the rows it committed.
async fn mysql_async_task(
    pool: mysql_async::Pool,
    task: u32,
    rounds: u32,
    want_tz: &'static str,
) -> Result<Vec<u32>, String> {
    use mysql_async::prelude::*;
    let mut committed = Vec::new();
    for round in 0..rounds {
        let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
        let (tz, mode): (String, String) = conn
            .query_first("SELECT @@time_zone, @@sql_mode")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no row")?;
        if tz != want_tz || !mode.contains("ANSI_QUOTES") {
            return Err(format!("task {task} round {round}: settings {tz} {mode}"));
        }
        let n = task * 1000 + round;
        let mut tx = conn
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .map_err(|e| e.to_string())?;
        tx.exec_drop("INSERT INTO ledger (n, task) VALUES (?, ?)", (n, task))
            .await
            .map_err(|e| e.to_string())?;
        let seen: Option<u32> = tx
            .exec_first("SELECT task FROM ledger WHERE n = ?", (n,))
            .await
            .map_err(|e| e.to_string())?;
        if seen != Some(task) {
            return Err(format!(
                "task {task}: its own uncommitted row read as {seen:?}"
            ));
        }
        if round % 2 == 0 {
            tx.commit().await.map_err(|e| e.to_string())?;
            committed.push(n);
        } else {
            tx.rollback().await.map_err(|e| e.to_string())?;
        }
        drop(conn);
    }
    Ok(committed)
}

/// mysql_async's Pool of 8 per process, 16 tasks, over a proxy pool of 2 per backend: every
/// connection keeps the settings its init statements made, prepared statements work on
/// whichever server connection runs them, and the primary ends with exactly the committed
/// rows. The same program runs directly against the primary first.
#[test]
fn mysql_async_pool_prepared_statements_and_transactions_match_the_ledger() {
    let _g = serial();
    let db = "drv_mysql_async";
    fresh_db(
        db,
        "CREATE TABLE ledger (n int PRIMARY KEY, task int NOT NULL) ENGINE=InnoDB",
    );
    let p = start_proxy(db, 2, true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    for (target, base) in [(Target::direct(db), 0u32), (Target::proxy(&p, db), 100)] {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(target.port)
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .db_name(Some(db))
            .init(vec![
                "SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_TRANS_TABLES'",
                "SET time_zone = '+03:00'",
            ])
            .pool_opts(
                mysql_async::PoolOpts::default()
                    .with_constraints(mysql_async::PoolConstraints::new(0, 8).unwrap()),
            );
        let pool = mysql_async::Pool::new(opts);
        let committed: Vec<u32> = rt.block_on(async {
            let tasks: Vec<_> = (0..16)
                .map(|t| tokio::spawn(mysql_async_task(pool.clone(), base + t, 20, "+03:00")))
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                let r = tokio::time::timeout(Duration::from_secs(120), t)
                    .await
                    .unwrap_or_else(|_| panic!("{}: a task did not finish in 120 s", target.name()))
                    .unwrap();
                all.extend(r.unwrap_or_else(|e| panic!("{}: {e}", target.name())));
            }
            pool.disconnect().await.unwrap();
            all
        });
        assert_eq!(committed.len(), 16 * 10, "{}", target.name());
        let on_primary = primary_value(
            db,
            &format!(
                "SELECT count(*) FROM ledger WHERE task BETWEEN {base} AND {}",
                base + 15
            ),
        );
        assert_eq!(
            on_primary,
            committed.len().to_string(),
            "{}: the primary holds other rows than those committed",
            target.name()
        );
    }
}

/// mysql_async used with its default options, as applications use it: after logging in over
/// TCP it reads `@@socket` and, when that names a socket file it can open, connects again
/// there (`prefer_socket`, on by default) and uses that connection
/// instead. Through the proxy, `@@socket` must name the proxy's own socket, or none: the
/// MariaDB servers' socket files are on this host too, and a client that followed one
/// would talk to that server directly, its writes to a read-only replica included. Without a
/// socket of its own the proxy answers NULL and the client stays on TCP; with one
/// (`[mysql] socket`) the client moves to it and is still served by the proxy. Either way,
/// from a `Conn` and from a `Pool`: writes reach the primary and reads spread over both
/// replicas.
#[test]
fn mysql_async_with_its_default_options_stays_with_the_proxy() {
    use mysql_async::prelude::*;
    let _g = serial();
    let db = "drv_mysql_async_socket";
    fresh_db(db, "CREATE TABLE t (n int PRIMARY KEY) ENGINE=InnoDB");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("switchyard.sock").display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (i, own_socket) in [None, Some(sock.as_str())].into_iter().enumerate() {
        let extra = own_socket.map_or(String::new(), |s| format!("socket = \"{s}\""));
        let p = start_proxy_with(db, 2, true, &extra);
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(p.port)
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .db_name(Some(db));
        let (socket, ids) = rt.block_on(async {
            let mut conn = mysql_async::Conn::new(opts.clone()).await.unwrap();
            let socket: Option<String> =
                conn.query_first("SELECT @@socket").await.unwrap().unwrap();
            let base = 10 * i as i32;
            conn.exec_drop("INSERT INTO t VALUES (?)", (base + 1,))
                .await
                .unwrap_or_else(|e| panic!("socket {own_socket:?}: a write from a Conn: {e}"));
            let pool = mysql_async::Pool::new(opts);
            let mut pooled = pool.get_conn().await.unwrap();
            pooled
                .query_drop(format!("INSERT INTO t VALUES ({})", base + 2))
                .await
                .unwrap_or_else(|e| panic!("socket {own_socket:?}: a write from a Pool: {e}"));
            let mut ids = BTreeMap::new();
            for c in [&mut conn, &mut pooled] {
                for _ in 0..30 {
                    let id: String = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
                    *ids.entry(id).or_insert(0) += 1;
                }
            }
            drop(pooled);
            pool.disconnect().await.unwrap();
            conn.disconnect().await.unwrap();
            (socket, ids)
        });
        assert_eq!(socket.as_deref(), own_socket, "@@socket through the proxy");
        assert!(
            !ids.contains_key(PRIMARY_ID) && ids.len() == 2,
            "socket {own_socket:?}: reads not spread over the replicas only: {ids:?}"
        );
    }
    assert_eq!(
        primary_value(db, "SELECT group_concat(n ORDER BY n) FROM t"),
        "1,2,11,12"
    );
}

/// One of 200 clients: connects with its own connect-time SETs (character set, sql_mode,
/// time zone, autocommit, as drivers do), then runs `rounds` short transactions, each reading
/// its settings back and inserting one row. Returns what it saw that was not its own.
async fn own_settings_client(port: u16, db: &str, k: u32, rounds: u32) -> Result<u32, String> {
    use mysql_async::prelude::*;
    let charsets = ["utf8mb4", "latin1", "utf8mb3", "ascii"];
    let modes = [
        "ANSI_QUOTES",
        "STRICT_TRANS_TABLES",
        "NO_ZERO_DATE",
        "PIPES_AS_CONCAT",
    ];
    let (cs, mode) = (charsets[k as usize % 4], modes[(k as usize / 4) % 4]);
    let tz = format!("+{:02}:{:02}", k % 13, (k % 4) * 15);
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(APP_USER))
        .pass(Some(APP_PASSWORD))
        .db_name(Some(db))
        .init(vec![
            format!("SET NAMES {cs}"),
            format!("SET SESSION sql_mode = '{mode}'"),
            format!("SET time_zone = '{tz}'"),
            "SET autocommit = 1".to_string(),
        ]);
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|e| format!("client {k}: connect: {e}"))?;
    let mut wrong = 0;
    for r in 0..rounds {
        let mut tx = conn
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .map_err(|e| format!("client {k}: begin: {e}"))?;
        let (m, z, c): (String, String, String) = tx
            .query_first("SELECT @@sql_mode, @@time_zone, @@character_set_client")
            .await
            .map_err(|e| format!("client {k}: select: {e}"))?
            .ok_or("no row")?;
        if m != mode || z != tz || c != cs {
            wrong += 1;
        }
        tx.query_drop(format!(
            "INSERT INTO seen (client, round) VALUES ({k}, {r})"
        ))
        .await
        .map_err(|e| format!("client {k}: insert: {e}"))?;
        tx.commit()
            .await
            .map_err(|e| format!("client {k}: commit: {e}"))?;
    }
    conn.disconnect().await.map_err(|e| e.to_string())?;
    Ok(wrong)
}

/// Pooling stays pooling: 200 clients that set NAMES, sql_mode, time_zone and autocommit
/// when they connect, all connected at once and each running short transactions, are served
/// by a pool of 10 server connections per backend without a checkout timeout (connect-time
/// SETs pin nobody), and every transaction sees its own client's settings.
#[test]
fn two_hundred_clients_with_connect_time_sets_share_a_pool_of_10() {
    let _g = serial();
    let db = "drv_200";
    fresh_db(
        db,
        "CREATE TABLE seen (client int, round int, PRIMARY KEY (client, round))",
    );
    let p = start_proxy(db, 10, true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let port = p.port;
    let results: Vec<Result<u32, String>> = rt.block_on(async {
        let tasks: Vec<_> = (0..200u32)
            .map(|k| tokio::spawn(async move { own_settings_client(port, "drv_200", k, 5).await }))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(
                tokio::time::timeout(Duration::from_secs(180), t)
                    .await
                    .map_err(|_| "a client did not finish in 180 s".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .and_then(|r| r),
            );
        }
        out
    });
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} clients failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let wrong: u32 = results.iter().map(|r| *r.as_ref().unwrap()).sum();
    assert_eq!(wrong, 0, "transactions saw another client's settings");
    assert_eq!(primary_value(db, "SELECT count(*) FROM seen"), "1000");
    // The proxy never had more than its 10 connections to the primary (plus its probe).
    let on_primary = primary_value(
        db,
        "SELECT count(*) FROM information_schema.processlist WHERE user = 'switchyard'",
    );
    assert!(
        on_primary.parse::<u32>().unwrap() <= 11,
        "{on_primary} server connections"
    );
}

// ---------------------------------------------------------------------------------------------
// the mariadb CLI

mod cli {
    use super::*;

    /// Runs `sql` with the mariadb CLI against `target` (batch mode, no column names, extra
    /// options first): (ok, stdout, stderr).
    pub fn exec(target: &Target, extra: &[&str], sql: &str) -> (bool, String, String) {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .args(extra)
            .args([
                "--protocol=TCP",
                "-h127.0.0.1",
                "--connect-timeout=10",
                "--skip-ssl",
                "-N",
                "-B",
            ])
            .arg(format!("-P{}", target.port))
            .arg(format!("-u{APP_USER}"))
            .arg(&target.db)
            .arg("-e")
            .arg(sql)
            .env("MYSQL_PWD", APP_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let o = run_bounded(
            &mut cmd,
            format!("mariadb -e {sql:?}"),
            Duration::from_secs(60),
        );
        (o.exit == Some(0) && !o.timed_out, o.stdout, o.stderr)
    }

    /// `ERROR 1146 (42S02)` out of the CLI's stderr.
    pub fn error_code(stderr: &str) -> String {
        stderr
            .lines()
            .find(|l| l.starts_with("ERROR "))
            .map(|l| l.split(" at line").next().unwrap_or(l).to_string())
            .unwrap_or_else(|| stderr.trim().to_string())
    }
}
