//! The `mariadb` client: queries as root or another user, results parsed from its batch
//! output, and the server's errors.

use super::*;

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
    pub(super) fn parse(node: usize, stderr: &str) -> Option<SqlError> {
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

/// Undoes the `mariadb --batch` escaping of one field (`\t`, `\n`, `\0`, `\\`).
pub(super) fn unescape(field: &str) -> String {
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

pub(super) fn parse_rows(stdout: &[u8]) -> Vec<Vec<String>> {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .map(|l| l.split('\t').map(unescape).collect())
        .collect()
}

pub(super) fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

impl MariaCluster {
    pub(super) fn client(&self) -> Command {
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
    pub(super) fn run_client(&self, node: usize, mut c: Command, sql: &str) -> Result<Vec<u8>> {
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

    pub(super) fn root_client(&self, node: usize, db: Option<&str>, names: bool) -> Command {
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

    /// Creates database `name` on the primary and waits until every running replica of the
    /// primary has replayed it.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.exec(self.primary(), &format!("CREATE DATABASE `{name}`"))?;
        self.wait_caught_up(WAIT)
    }
}
