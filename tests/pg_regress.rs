//! PostgreSQL's own regression suite through the proxy: runs `tests/pg_regress/run.sh`
//! (directly, session mode, transaction mode; a fresh server per mode) and checks the results
//! against `tests/pg_regress/expected.toml`:
//! - directly, every test passes;
//! - in session mode, only tests that observe pooling itself may fail;
//! - in transaction mode, the run ends (no hang) and only tests that observe this client's own
//!   session semantics across transactions may fail;
//! - no diff shows another client's state (`leak_signatures`), even in an allowed test.
//!
//! Tests listed as proxy bugs are not allowed: this test fails while they fail.
//!
//! Environment: `SWITCHYARD_SKIP_PG_REGRESS=1` skips it; `PG_REGRESS_RESULTS=DIR` checks the
//! results of an earlier `run.sh` in DIR instead of running it; `PG_REGRESS_TIMEOUT` (seconds
//! per mode, default 300) is passed on to the script.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MODES: [&str; 3] = ["direct", "session", "transaction"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    tests: usize,
    leak_signatures: Vec<String>,
    direct: ModeExpected,
    session: ModeExpected,
    transaction: ModeExpected,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeExpected {
    #[serde(default)]
    allow: BTreeMap<String, String>,
    #[serde(default)]
    bugs: BTreeMap<String, String>,
}

impl Expected {
    fn mode(&self, mode: &str) -> &ModeExpected {
        match mode {
            "direct" => &self.direct,
            "session" => &self.session,
            _ => &self.transaction,
        }
    }
}

/// One mode's `result` file (key=value lines written by run.sh).
struct ModeResult(BTreeMap<String, String>);

impl ModeResult {
    fn read(path: &Path) -> Option<ModeResult> {
        let text = std::fs::read_to_string(path).ok()?;
        let map = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        Some(ModeResult(map))
    }

    fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }

    fn num(&self, key: &str) -> usize {
        self.get(key).parse().unwrap_or(0)
    }

    fn list(&self, key: &str) -> BTreeSet<String> {
        self.get(key)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs run.sh into `out`, bounded in time; returns its exit status (None: killed).
fn run_script(out: &Path) -> Option<i32> {
    std::fs::create_dir_all(out).expect("create the results directory");
    let per_mode: u64 = std::env::var("PG_REGRESS_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    // Three modes, plus preparing (download and build once), initdb and server starts.
    let limit = Duration::from_secs(3 * per_mode + 600);
    let log = std::fs::File::create(out.join("run.log")).expect("create run.log");
    let mut child = Command::new("bash")
        .arg(manifest_dir().join("tests/pg_regress/run.sh"))
        .env("SWITCHYARD_BIN", env!("CARGO_BIN_EXE_switchyard"))
        .env("PG_REGRESS_OUT", out)
        .env("PG_REGRESS_TIMEOUT", per_mode.to_string())
        .current_dir(manifest_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        // Its own process group, so that a run past the limit can be stopped as a whole (the
        // script's trap then stops the servers and the proxy it started).
        .process_group(0)
        .spawn()
        .expect("spawn bash tests/pg_regress/run.sh");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for run.sh") {
            return status.code();
        }
        if started.elapsed() > limit {
            let pgid = child.id() as i32;
            // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(30) {
                if child.try_wait().ok().flatten().is_some() {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            // SAFETY: as above.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The changed lines of one test's diff (without the file headers).
fn changed_lines(out: &Path, mode: &str, test: &str) -> Vec<String> {
    let path = out.join(mode).join("diffs").join(format!("{test}.diff"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .map(str::to_string)
        .collect()
}

fn excerpt(out: &Path, mode: &str, test: &str) -> String {
    let lines = changed_lines(out, mode, test);
    let mut s: String = lines
        .iter()
        .take(4)
        .map(|l| format!("\n        {l}"))
        .collect();
    if lines.len() > 4 {
        s.push_str(&format!("\n        ... ({} changed lines)", lines.len()));
    }
    s
}

/// Checks one mode; returns the problems found.
fn check_mode(out: &Path, expected: &Expected, mode: &str, r: &ModeResult) -> Vec<String> {
    let exp = expected.mode(mode);
    let mut problems = Vec::new();
    match r.get("status") {
        "ok" => {}
        "hung" => problems.push(format!(
            "{mode}: pg_regress did not finish within its timeout (a hang); unfinished tests: {}",
            r.get("unfinished_tests")
        )),
        other => problems.push(format!(
            "{mode}: the run did not complete (status {other:?}); see {}",
            out.join(mode).join("pg_regress.log").display()
        )),
    }
    if r.get("status") == "ok" && r.num("total") != expected.tests {
        problems.push(format!(
            "{mode}: pg_regress ran {} tests, expected.toml says {}",
            r.get("total"),
            expected.tests
        ));
    }
    if r.get("proxy_alive_at_end") == "no" {
        problems.push(format!(
            "{mode}: the proxy had exited before the end of the run; see {}",
            out.join(mode).join("proxy.log").display()
        ));
    }
    for test in r.list("failed_tests") {
        let leaks: Vec<String> = changed_lines(out, mode, &test)
            .into_iter()
            .filter(|l| l.starts_with('+'))
            .filter(|l| expected.leak_signatures.iter().any(|s| l.contains(s)))
            .take(3)
            .collect();
        let leak_note = if leaks.is_empty() {
            String::new()
        } else {
            format!(
                "; its diff shows another client's state:\n        {}",
                leaks.join("\n        ")
            )
        };
        if let Some(reason) = exp.bugs.get(&test) {
            problems.push(format!(
                "{mode}: {test} fails (known proxy bug: {reason}){}",
                excerpt(out, mode, &test)
            ));
        } else if !exp.allow.contains_key(&test) {
            let what = if leaks.is_empty() {
                excerpt(out, mode, &test)
            } else {
                leak_note
            };
            problems.push(format!(
                "{mode}: {test} fails and is not allowed (new failure){what}"
            ));
        } else if !leaks.is_empty() {
            problems.push(format!(
                "{mode}: {test} is allowed to fail, but not like this{leak_note}"
            ));
        }
    }
    problems
}

#[test]
fn pg_regress_direct_session_transaction() {
    if std::env::var_os("SWITCHYARD_SKIP_PG_REGRESS").is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("SWITCHYARD_SKIP_PG_REGRESS is set: not running pg_regress");
        return;
    }
    let expected_path = manifest_dir().join("tests/pg_regress/expected.toml");
    let expected: Expected = toml::from_str(
        &std::fs::read_to_string(&expected_path).expect("read tests/pg_regress/expected.toml"),
    )
    .expect("tests/pg_regress/expected.toml parses");
    assert!(
        expected.direct.bugs.is_empty() && expected.direct.allow.is_empty(),
        "directly, nothing may be allowed to fail"
    );

    let (out, exit) = match std::env::var_os("PG_REGRESS_RESULTS") {
        Some(dir) => (PathBuf::from(dir), Some(0)),
        None => {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pg_regress");
            let exit = run_script(&out);
            (out, exit)
        }
    };
    let log = out.join("run.log");
    let Some(code) = exit else {
        panic!(
            "tests/pg_regress/run.sh did not end in time and was killed; last lines of {}:\n{}",
            log.display(),
            tail(&log, 30)
        );
    };
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    eprintln!("{summary}");

    let mut problems = Vec::new();
    for mode in MODES {
        let Some(r) = ModeResult::read(&out.join(mode).join("result")) else {
            problems.push(format!(
                "{mode}: no result (run.sh exited with {code}); last lines of {}:\n{}",
                log.display(),
                tail(&log, 30)
            ));
            continue;
        };
        let exp = expected.mode(mode);
        let failed = r.list("failed_tests");
        for test in exp.allow.keys() {
            if !failed.contains(test) {
                eprintln!("note: {mode}: {test} is allowed to fail but passed this time");
            }
        }
        problems.extend(check_mode(&out, &expected, mode, &r));
    }
    assert!(
        problems.is_empty(),
        "pg_regress through Switchyard ({} problems; diffs under {}, expectations in {}):\n- {}",
        problems.len(),
        out.display(),
        expected_path.display(),
        problems.join("\n- ")
    );
}
