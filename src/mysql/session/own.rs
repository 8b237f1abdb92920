//! What a client asks about its own last statement: `LAST_INSERT_ID()`, `ROW_COUNT()`,
//! `FOUND_ROWS()`, `@@warning_count` and `SHOW WARNINGS`. A server answers them from the
//! session that ran the statement; with transaction pooling the next statement may run on
//! another connection (or on one another client used since), where the answer is someone
//! else's. So the session keeps these results itself: from each statement's final OK or EOF,
//! plus, before a connection is given back, `SHOW WARNINGS` when the statement left warnings
//! and `SELECT FOUND_ROWS()` after `SQL_CALC_FOUND_ROWS` (extra round trips only then). The
//! bare forms of these queries are answered from them when the client holds no connection;
//! any other statement that calls `LAST_INSERT_ID()` gets the client's value set on its
//! connection first (`SELECT LAST_INSERT_ID(n)`), so `INSERT ... VALUES (LAST_INSERT_ID())`
//! works too.

use crate::mysql::codec::{self, flags::*};
use bytes::{BufMut, BytesMut};
// (Shared with the PostgreSQL side: the router's scanner.)
pub(super) use crate::router::lexer::contains_ignore_case;

/// The client's own last-statement results.
#[derive(Debug, Default)]
pub struct OwnResults {
    /// `LAST_INSERT_ID()`: the last id an INSERT of this client generated (kept across
    /// statements that generate none).
    pub last_insert_id: u64,
    /// `ROW_COUNT()`: rows changed by the last statement; -1 after a result set.
    pub row_count: i64,
    /// `FOUND_ROWS()`: rows of the last result set, or what `SQL_CALC_FOUND_ROWS` counted.
    pub found_rows: u64,
    /// `@@warning_count` of the last statement.
    pub warnings: u16,
    /// `SHOW WARNINGS` of the last statement: (level, code, message).
    pub warning_rows: Vec<(String, String, String)>,
    /// The last statement used `SQL_CALC_FOUND_ROWS`: its count is fetched before release.
    pub calc_found_rows: bool,
    /// The last statement's warnings are still to be fetched (before release).
    pub warnings_pending: bool,
    /// What the server holding the client's connection no longer knows as the client does
    /// (`STALE_*`): the connection was just taken (its server's "last statement" is another
    /// client's), the proxy answered the client itself since (COM_PING, an ERR,
    /// COM_SET_OPTION's EOF, one of these questions), or ran a command of its own there.
    /// Those questions are answered here until a statement of the client's sets the value
    /// on the server again.
    pub stale: u8,
    /// `CONNECTION_ID()`: the id the proxy gave the client (a server connection's thread id
    /// is another client's id, or none, to KILL).
    pub connection_id: u32,
}

/// `ROW_COUNT()` (set by every statement).
pub const STALE_ROW_COUNT: u8 = 1;
/// `FOUND_ROWS()` (set by a statement that returns rows).
pub const STALE_FOUND_ROWS: u8 = 2;
/// `@@warning_count` and `SHOW WARNINGS` (set by a statement with conditions).
pub const STALE_WARNINGS: u8 = 4;
pub const STALE_ALL: u8 = STALE_ROW_COUNT | STALE_FOUND_ROWS | STALE_WARNINGS;

impl OwnResults {
    /// The session starts again (COM_RESET_CONNECTION, COM_CHANGE_USER): what its statements
    /// left is gone; its connection id stays.
    pub fn forget(&mut self) {
        *self = OwnResults {
            connection_id: self.connection_id,
            ..Default::default()
        };
    }

    /// A statement ended with an OK packet.
    pub fn ok(&mut self, affected_rows: u64, last_insert_id: u64, warnings: u16) {
        self.row_count = affected_rows as i64;
        self.stale &= !STALE_ROW_COUNT;
        if last_insert_id != 0 {
            self.last_insert_id = last_insert_id;
        }
        self.set_warnings(warnings);
    }

    /// A command that is not a statement (COM_PING, COM_INIT_DB, COM_STMT_RESET) answered
    /// OK: `ROW_COUNT()` is 0; the warnings and `FOUND_ROWS()` stay the last statement's.
    pub fn command_ok(&mut self) {
        self.row_count = 0;
        self.stale &= !STALE_ROW_COUNT;
    }

    /// A statement ended with an ERR packet: the server counts the error as the statement's
    /// one condition (`@@warning_count` 1, `SHOW WARNINGS` lists it) and `ROW_COUNT()` is -1.
    pub fn error(&mut self, code: u16, message: &[u8]) {
        self.row_count = -1;
        self.stale &= !(STALE_ROW_COUNT | STALE_WARNINGS);
        self.warnings = 1;
        self.warnings_pending = false;
        self.warning_rows = vec![(
            "Error".to_string(),
            code.to_string(),
            String::from_utf8_lossy(message).into_owned(),
        )];
    }

    /// A result set of `rows` rows ended (EOF).
    pub fn result_set(&mut self, rows: u64, warnings: u16) {
        self.row_count = -1;
        self.found_rows = rows;
        self.stale &= !(STALE_ROW_COUNT | STALE_FOUND_ROWS);
        self.set_warnings(warnings);
    }

    fn set_warnings(&mut self, warnings: u16) {
        if warnings > 0 {
            self.stale &= !STALE_WARNINGS;
        }
        self.warnings = warnings;
        self.warnings_pending = warnings > 0;
        self.warning_rows.clear();
    }
}

impl OwnResults {
    /// Whether `q` is answered here although the client holds a connection.
    pub fn answers_while_held(&self, q: &OwnQuery) -> bool {
        let bit = match q {
            OwnQuery::ConnectionId(_) => return true,
            // The connection's own value is set to the client's before a statement reads it.
            OwnQuery::LastInsertId(_) => return false,
            OwnQuery::RowCount(_) => STALE_ROW_COUNT,
            OwnQuery::FoundRows(_) => STALE_FOUND_ROWS,
            OwnQuery::WarningCount(_) | OwnQuery::ShowWarnings => STALE_WARNINGS,
        };
        self.stale & bit != 0
    }
}

/// A query about the client's own last statement, in the bare form answered locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnQuery {
    /// `SELECT <expr>` with the expression as typed (the column name).
    LastInsertId(String),
    RowCount(String),
    FoundRows(String),
    WarningCount(String),
    ConnectionId(String),
    ShowWarnings,
}

/// `sql` as one of the bare forms (case-insensitive, surrounding blanks and one trailing `;`
/// allowed), if it is one.
pub fn own_query(sql: &str) -> Option<OwnQuery> {
    // The bare forms are short; anything longer is answered by a server, without a copy.
    if sql.len() > 96 {
        return None;
    }
    let s = sql.trim();
    let s = s.strip_suffix(';').unwrap_or(s).trim_end();
    if s.eq_ignore_ascii_case("SHOW WARNINGS") {
        return Some(OwnQuery::ShowWarnings);
    }
    // Every other bare form calls a function or reads an @@ variable.
    if !s.contains('(') && !s.contains("@@") {
        return None;
    }
    let (head, expr) = s.split_at_checked(6)?;
    if !head.eq_ignore_ascii_case("SELECT") || !expr.starts_with(|c: char| c.is_ascii_whitespace())
    {
        return None;
    }
    let expr = expr.trim();
    // An alias, with or without AS, names the column.
    let lower = expr.to_ascii_lowercase();
    let (head, alias) = match lower.rfind(" as ") {
        Some(i) => (&expr[..i], Some(&expr[i + 4..])),
        None => match expr.rfind(|c: char| c.is_ascii_whitespace()) {
            Some(i) if known(&expr[..i]).is_some() => (&expr[..i], Some(&expr[i + 1..])),
            _ => (expr, None),
        },
    };
    let name = match alias {
        Some(a) => unquote(a.trim())?,
        None => head.trim().to_owned(),
    };
    Some(match known(head)? {
        0 => OwnQuery::LastInsertId(name),
        1 => OwnQuery::RowCount(name),
        2 => OwnQuery::FoundRows(name),
        3 | 4 => OwnQuery::WarningCount(name),
        _ => OwnQuery::ConnectionId(name),
    })
}

/// Which of the bare expressions `expr` is (blanks and case ignored).
fn known(expr: &str) -> Option<usize> {
    let compact: String = expr
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    [
        "last_insert_id()",
        "row_count()",
        "found_rows()",
        "@@warning_count",
        "@@session.warning_count",
        "connection_id()",
    ]
    .iter()
    .position(|k| *k == compact)
}

/// A column alias: a plain identifier, or one in backquotes or quotes.
fn unquote(a: &str) -> Option<String> {
    for q in ['`', '"', '\''] {
        if let Some(inner) = a.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return (!inner.contains(q)).then(|| inner.to_owned());
        }
    }
    (!a.is_empty()
        && a.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$'))
    .then(|| a.to_owned())
}

/// [`with_connection_id`] on the statement's bytes as the client sent them, in any character
/// set: each byte is read as one character (what the rewrite looks at, keywords, quotes and
/// comments, is ASCII in the character sets clients use), so bytes that are not UTF-8 (a
/// latin1 or cp1251 client's) come back unchanged.
pub fn with_connection_id_bytes(sql: &[u8], id: u32) -> Option<Vec<u8>> {
    if !contains_ignore_case(sql, b"connection_id") {
        return None;
    }
    let chars: String = sql.iter().map(|&b| char::from(b)).collect();
    let out = with_connection_id(&chars, id)?;
    Some(out.chars().map(|c| c as u8).collect())
}

/// `sql` with every call of `CONNECTION_ID()` replaced by `id` (the client's own), if it has
/// any: outside string literals, quoted identifiers and comments, not as part of a longer
/// name. (A call inside a MariaDB executable comment `/*! .. */` is left to the server.)
pub fn with_connection_id(sql: &str, id: u32) -> Option<String> {
    const NAME: &[u8] = b"connection_id";
    if !contains_ignore_case(sql.as_bytes(), NAME) {
        return None;
    }
    let b = sql.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut out = String::with_capacity(sql.len());
    let (mut i, mut copied, mut replaced) = (0, 0, false);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' && q != b'`' { 2 } else { 1 };
                }
                i += 1;
            }
            b'#' => i = sql[i..].find('\n').map_or(b.len(), |n| i + n),
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = sql[i..].find('\n').map_or(b.len(), |n| i + n)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2)
            }
            c if (i == 0 || (!word(b[i - 1]) && b[i - 1] != b'.'))
                && c.eq_ignore_ascii_case(&b'c')
                && b.len() >= i + NAME.len()
                && b[i..i + NAME.len()].eq_ignore_ascii_case(NAME) =>
            {
                let mut j = i + NAME.len();
                let blanks = |j: &mut usize| {
                    while *j < b.len() && b[*j].is_ascii_whitespace() {
                        *j += 1;
                    }
                };
                blanks(&mut j);
                if b.get(j) == Some(&b'(') {
                    j += 1;
                    blanks(&mut j);
                    if b.get(j) == Some(&b')') {
                        out.push_str(&sql[copied..i]);
                        out.push_str(&id.to_string());
                        copied = j + 1;
                        replaced = true;
                        i = j + 1;
                        continue;
                    }
                }
                i += NAME.len();
            }
            _ => i += 1,
        }
    }
    if !replaced {
        return None;
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    Some(out)
}

/// `sql` with `@@socket` (or `@@global.socket`) read as `socket`, the proxy's own MySQL
/// socket file (NULL when it listens on none), when the statement is a plain list of system
/// variables (`SELECT @@a, @@b [[AS] name], ...`): what mysql_async and Rust's `mysql` crate
/// send after logging in. With their default `prefer_socket` they then connect again through
/// the file `@@socket` names and use that connection instead; the server's file, on a host
/// that runs the servers too, is the server itself: the client would leave the proxy for
/// whichever server answered (a replica, for this read). The column keeps its name; other
/// shapes go to the server as they are (a rewrite of the text is safe only where the whole
/// statement is understood).
pub fn with_own_socket(sql: &str, socket: Option<&str>) -> Option<Vec<u8>> {
    // (Most statements have no "@@": that is looked at first.)
    if !sql.contains("@@") || sql.len() > 512 || !sql.is_ascii() {
        return None;
    }
    let s = sql.trim();
    let s = s.strip_suffix(';').unwrap_or(s).trim_end();
    let (head, list) = s.split_at_checked(6)?;
    if !head.eq_ignore_ascii_case("SELECT") || !list.starts_with(|c: char| c.is_ascii_whitespace())
    {
        return None;
    }
    let value = match socket {
        // A character-set introducer and hex digits: no quoting rule of any sql_mode applies.
        Some(path) => {
            let hex: String = path.bytes().map(|b| format!("{b:02X}")).collect();
            format!("_utf8mb4 X'{hex}'")
        }
        None => "NULL".to_owned(),
    };
    let mut out = String::from("SELECT ");
    let mut replaced = false;
    for (k, item) in list.split(',').enumerate() {
        let item = item.trim();
        let name = item.strip_prefix("@@")?;
        let end = name
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(name.len());
        let (var, alias) = (&item[..2 + end], item[2 + end..].trim());
        if !alias.is_empty() {
            let bare = match alias.get(..3) {
                Some(w) if w.eq_ignore_ascii_case("as ") => alias[3..].trim(),
                _ => alias,
            };
            unquote(bare)?;
        }
        if k > 0 {
            out.push_str(", ");
        }
        let v = name[..end].to_ascii_lowercase();
        if v == "socket" || v == "global.socket" {
            out.push_str(&value);
            if alias.is_empty() {
                out.push_str(&format!(" AS `{var}`"));
            } else {
                out.push(' ');
                out.push_str(alias);
            }
            replaced = true;
        } else {
            out.push_str(item);
        }
    }
    replaced.then(|| out.into_bytes())
}

/// Whether `sql` calls `LAST_INSERT_ID` anywhere (the value must be the client's there).
pub fn mentions_last_insert_id(sql: &str) -> bool {
    contains_ignore_case(sql.as_bytes(), b"last_insert_id")
}

/// Whether `sql` uses `SQL_CALC_FOUND_ROWS`.
pub fn calcs_found_rows(sql: &str) -> bool {
    contains_ignore_case(sql.as_bytes(), b"sql_calc_found_rows")
}

/// Whether a statement of `sql` that ran is a `SELECT ... INTO` (it sets `FOUND_ROWS()`
/// without a result set). Another statement's `INTO` (`INSERT INTO`) beside a `SELECT` is not
/// one. `ran` statements completed, and `failed` is the error that stopped the next, if one
/// did: a `SELECT ... INTO` that found more than one row (1172) has counted them, one refused
/// before it ran has not, and the statements after it never ran. (A `CALL` answers with a
/// result per `SELECT` it runs, which counts them too high after it.)
pub(super) fn selects_into(sql: &[u8], ran: usize, failed: Option<u16>) -> bool {
    if !contains_ignore_case(sql, b"INTO") {
        return false;
    }
    let sql = String::from_utf8_lossy(sql);
    let mut statements = crate::router::lexer::statements(&sql);
    std::iter::from_fn(|| statements.next_with_text())
        .enumerate()
        .take_while(|(i, _)| *i < ran || (*i == ran && failed == Some(ER_TOO_MANY_ROWS)))
        .any(|(_, (lead, text))| {
            lead.is(0, "SELECT") && contains_ignore_case(text.as_bytes(), b"INTO")
        })
}

/// "Result consisted of more than one row": a `SELECT ... INTO` that counted its rows.
const ER_TOO_MANY_ROWS: u16 = 1172;

const TYPE_LONGLONG: u8 = 0x08;
const TYPE_VAR_STRING: u8 = 0xfd;
const TYPE_LONG: u8 = 0x03;
const NOT_NULL: u16 = 0x0001;
const UNSIGNED: u16 = 0x0020;
const BINARY: u16 = 0x0080;
const CHARSET_BINARY: u16 = 63;
const CHARSET_UTF8MB4: u16 = 45;

/// One column of a result set the proxy builds. A text column's `length` is in characters.
struct Column<'a> {
    name: &'a str,
    kind: u8,
    flags: u16,
    length: u32,
}

/// How text columns are described to the client: its results' character set (the default
/// collation's id) and that character set's most bytes per character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextCharset {
    pub id: u8,
    pub widest: u32,
}

impl Default for TextCharset {
    fn default() -> Self {
        TextCharset {
            id: CHARSET_UTF8MB4 as u8,
            widest: 4,
        }
    }
}

/// The packets (payloads) of a result set: column count, definitions, EOF, rows, EOF (the
/// proxy never offers CLIENT_DEPRECATE_EOF). `status` goes in both EOFs. Rows in the text
/// protocol, or in the binary one (the answer to a COM_STMT_EXECUTE).
fn result_set(
    columns: &[Column<'_>],
    rows: &[Vec<String>],
    status: u16,
    binary: bool,
    text: TextCharset,
) -> Vec<BytesMut> {
    let mut out = Vec::with_capacity(columns.len() + rows.len() + 3);
    let mut p = BytesMut::new();
    codec::put_column_count(&mut p, columns.len() as u64, None);
    out.push(p);
    for c in columns {
        let mut p = BytesMut::new();
        for s in ["def", "", "", ""] {
            codec::put_lenenc_bytes(&mut p, s.as_bytes());
        }
        codec::put_lenenc_bytes(&mut p, c.name.as_bytes());
        codec::put_lenenc_bytes(&mut p, b"");
        codec::put_lenenc_int(&mut p, 0x0c);
        let numeric = c.kind != TYPE_VAR_STRING;
        if numeric {
            p.put_u16_le(CHARSET_BINARY);
            p.put_u32_le(c.length);
        } else {
            p.put_u16_le(u16::from(text.id));
            p.put_u32_le(c.length * text.widest);
        }
        p.put_u8(c.kind);
        p.put_u16_le(c.flags | if numeric { BINARY } else { 0 });
        // Decimals: none for integers; 39 ("not fixed") for strings, as the server says.
        p.put_u8(if numeric { 0 } else { 39 });
        p.put_u16_le(0);
        out.push(p);
    }
    let eof = |status| {
        let mut p = BytesMut::new();
        codec::put_eof(
            &mut p,
            &codec::EofPacket {
                warnings: 0,
                status,
            },
            CLIENT_PROTOCOL_41,
        );
        p
    };
    out.push(eof(status));
    for row in rows {
        let mut p = BytesMut::new();
        if binary {
            // Header, then a NULL bitmap offset by two bits (no value is NULL here).
            p.put_u8(0);
            p.put_bytes(0, (columns.len() + 7 + 2) / 8);
        }
        for (c, v) in columns.iter().zip(row) {
            match (binary, c.kind) {
                (true, TYPE_LONGLONG) => {
                    // The value as typed: unsigned or signed, the same 8 bytes either way.
                    let n = v
                        .parse::<u64>()
                        .unwrap_or_else(|_| v.parse::<i64>().unwrap_or(0) as u64);
                    p.put_u64_le(n);
                }
                (true, TYPE_LONG) => p.put_u32_le(v.parse().unwrap_or(0)),
                _ => codec::put_lenenc_bytes(&mut p, v.as_bytes()),
            }
        }
        out.push(p);
    }
    out.push(eof(status));
    out
}

impl OwnResults {
    /// The answer to `q` as result-set packets, and what the query itself leaves behind (a
    /// SELECT clears the warnings and makes ROW_COUNT() -1, as on the server).
    pub fn answer(
        &mut self,
        q: &OwnQuery,
        status: u16,
        binary: bool,
        text: TextCharset,
    ) -> Vec<BytesMut> {
        let one = |name: &str, kind: u8, flags: u16, value: String| {
            result_set(
                &[Column {
                    name,
                    kind,
                    flags,
                    length: 21,
                }],
                &[vec![value]],
                status,
                binary,
                text,
            )
        };
        let packets = match q {
            OwnQuery::LastInsertId(n) => {
                let flags = UNSIGNED | NOT_NULL;
                one(n, TYPE_LONGLONG, flags, self.last_insert_id.to_string())
            }
            OwnQuery::RowCount(n) => one(n, TYPE_LONGLONG, NOT_NULL, self.row_count.to_string()),
            OwnQuery::FoundRows(n) => one(n, TYPE_LONGLONG, NOT_NULL, self.found_rows.to_string()),
            // A system variable: nullable, as the server describes it.
            OwnQuery::WarningCount(n) => one(n, TYPE_LONGLONG, UNSIGNED, self.warnings.to_string()),
            OwnQuery::ConnectionId(n) => {
                let flags = UNSIGNED | NOT_NULL;
                one(n, TYPE_LONGLONG, flags, self.connection_id.to_string())
            }
            OwnQuery::ShowWarnings => {
                let rows: Vec<Vec<String>> = self
                    .warning_rows
                    .iter()
                    .map(|(l, c, m)| vec![l.clone(), c.clone(), m.clone()])
                    .collect();
                let cols = [
                    Column {
                        name: "Level",
                        kind: TYPE_VAR_STRING,
                        flags: NOT_NULL,
                        length: 7,
                    },
                    Column {
                        name: "Code",
                        kind: TYPE_LONG,
                        flags: NOT_NULL | UNSIGNED,
                        length: 4,
                    },
                    Column {
                        name: "Message",
                        kind: TYPE_VAR_STRING,
                        flags: NOT_NULL,
                        length: 512,
                    },
                ];
                // A result of the server's: ROW_COUNT() -1, FOUND_ROWS() its rows; the
                // warnings stay (SHOW WARNINGS does not clear them).
                self.row_count = -1;
                self.found_rows = rows.len() as u64;
                self.stale |= STALE_ROW_COUNT | STALE_FOUND_ROWS;
                return result_set(&cols, &rows, status, binary, text);
            }
        };
        // A SELECT without tables: ROW_COUNT() -1, FOUND_ROWS() 1, the warnings as they were
        // (a server clears them for statements that use tables). The server did not see it.
        self.row_count = -1;
        self.found_rows = 1;
        self.stale |= STALE_ROW_COUNT | STALE_FOUND_ROWS;
        packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_into_is_a_select_statement_with_into() {
        for (sql, want) in [
            ("SELECT v INTO @u FROM t WHERE k = 1", true),
            ("select v from t where k = 1 into @u", true),
            ("/* c */ SELECT 1 INTO @x; SELECT 2", true),
            ("INSERT INTO t VALUES (1); SELECT 2", false),
            (
                "DROP TEMPORARY TABLE tt; SELECT LAST_INSERT_ID(); INSERT INTO tt VALUES (1)",
                false,
            ),
            ("INSERT INTO t SELECT * FROM u", false),
            ("SELECT 1", false),
            ("UPDATE t SET v = 1; SELECT v INTO @u FROM t", true),
        ] {
            assert_eq!(selects_into(sql.as_bytes(), 9, None), want, "{sql}");
        }
    }

    #[test]
    fn a_select_into_that_did_not_run_counts_nothing() {
        let sql = b"INSERT INTO tt VALUES (43); DROP TEMPORARY TABLE tt; SELECT v INTO @u FROM t";
        // All ran; the INSERT failed (the rest never ran); the DROP failed.
        assert!(selects_into(sql, 3, None));
        assert!(!selects_into(sql, 0, Some(1146)));
        assert!(!selects_into(sql, 1, Some(1051)));
        // The SELECT ... INTO itself failed: with too many rows it counted them, refused
        // outright it did not.
        assert!(selects_into(sql, 2, Some(1172)));
        assert!(!selects_into(sql, 2, Some(1054)));
        assert!(selects_into(b"SELECT 1 INTO @a; SELECT 2", 1, Some(1054)));
    }

    #[test]
    fn connection_id_rewrite_never_panics_and_only_replaces_calls() {
        let pieces = [
            "'",
            "\"",
            "`",
            "\\",
            "#",
            "--",
            "- ",
            "/*",
            "*/",
            "\n",
            " ",
            "(",
            ")",
            "é",
            "x",
            "connection_id",
            "CONNECTION_ID()",
            ".",
            "_",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            let mut sql = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                sql.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            if let Some(out) = with_connection_id(&sql, 7) {
                // Each replacement drops at least "connection_id()" for "7".
                assert!(out.len() < sql.len(), "{sql:?} -> {out:?}");
            }
        }
    }

    #[test]
    fn connection_id_rewrite_keeps_bytes_of_other_character_sets() {
        // latin1 'é' (0xE9) and cp1251 'Я' (0xDF) around the call, not UTF-8.
        let sql = b"SELECT '\xe9\xdf', CONNECTION_ID(), '\xe9'";
        let out = with_connection_id_bytes(sql, 42).unwrap();
        assert_eq!(out, b"SELECT '\xe9\xdf', 42, '\xe9'".to_vec());
        assert_eq!(with_connection_id_bytes(b"SELECT '\xe9'", 42), None);
    }

    #[test]
    fn connection_id_calls_are_replaced_outside_literals_and_comments() {
        let r = |s: &str| with_connection_id(s, 42);
        assert_eq!(r("SELECT CONNECTION_ID()").as_deref(), Some("SELECT 42"));
        assert_eq!(
            r("insert into t values (connection_id ( ), 'connection_id()')").as_deref(),
            Some("insert into t values (42, 'connection_id()')")
        );
        assert_eq!(r("SELECT 'it''s connection_id()'"), None);
        assert_eq!(r("SELECT \"a\\\" connection_id()\""), None);
        assert_eq!(r("SELECT `connection_id()` FROM t"), None);
        assert_eq!(r("SELECT 1 -- connection_id()"), None);
        assert_eq!(r("SELECT 1 # connection_id()"), None);
        assert_eq!(r("SELECT /* connection_id() */ 1"), None);
        assert_eq!(r("SELECT my_connection_id(), t.connection_id()"), None);
        assert_eq!(r("SELECT connection_id"), None);
        assert_eq!(
            r("SELECT CONNECTION_ID()=CONNECTION_ID(),'é'").as_deref(),
            Some("SELECT 42=42,'é'")
        );
        assert_eq!(r("SELECT 'é\\"), None);
        assert!(matches!(
            own_query("select connection_id() AS me"),
            Some(OwnQuery::ConnectionId(n)) if n == "me"
        ));
    }

    #[test]
    fn socket_reads_the_proxys_own_in_plain_variable_lists_only() {
        let r = |s: &str, sock| with_own_socket(s, sock).map(|v| String::from_utf8(v).unwrap());
        // What mysql_async sends after logging in.
        assert_eq!(
            r("SELECT @@max_allowed_packet,@@wait_timeout,@@socket", None).as_deref(),
            Some("SELECT @@max_allowed_packet, @@wait_timeout, NULL AS `@@socket`")
        );
        assert_eq!(
            r("select @@SOCKET;", Some("/run/sy.sock")).as_deref(),
            Some("SELECT _utf8mb4 X'2F72756E2F73792E736F636B' AS `@@SOCKET`")
        );
        assert_eq!(
            r("SELECT @@global.socket AS s, @@port `p`", None).as_deref(),
            Some("SELECT NULL AS s, @@port `p`")
        );
        assert_eq!(
            r("SELECT  @@socket  where_to ", Some("a'b\\c")).as_deref(),
            Some("SELECT _utf8mb4 X'6127625C63' where_to")
        );
        // Anything else is the server's to answer, as it is.
        for other in [
            "SELECT @@port",
            "SELECT @@session.socket",
            "SELECT @@socketx",
            "SELECT @@socket FROM dual",
            "SELECT @@socket IS NULL",
            "SELECT CONCAT(@@socket, 'x')",
            "SET @s = @@socket",
            "SELECT @@socket AS `a,b`",
            "/* c */ SELECT @@socket",
            "SELECT 1, @@socket",
            "SELECT @@socket AS 'é'",
        ] {
            assert_eq!(r(other, None), None, "{other}");
        }
    }

    #[test]
    fn bare_forms_only() {
        assert_eq!(
            own_query("select last_insert_id()"),
            Some(OwnQuery::LastInsertId("last_insert_id()".into()))
        );
        assert_eq!(
            own_query("  SELECT  ROW_COUNT( ) ; "),
            Some(OwnQuery::RowCount("ROW_COUNT( )".into()))
        );
        assert_eq!(
            own_query("SELECT @@session.warning_count"),
            Some(OwnQuery::WarningCount("@@session.warning_count".into()))
        );
        assert_eq!(own_query("show warnings"), Some(OwnQuery::ShowWarnings));
        assert_eq!(own_query("SELECT LAST_INSERT_ID() + 1"), None);
        assert_eq!(own_query("SELECT FOUND_ROWS() FROM t"), None);
        assert_eq!(own_query("SELECTROW_COUNT()"), None);
        assert_eq!(own_query("SHOW WARNINGS LIMIT 1"), None);
        assert_eq!(
            own_query("SELECT ROW_COUNT() AS v"),
            Some(OwnQuery::RowCount("v".into()))
        );
        assert_eq!(
            own_query("select @@warning_count `n`"),
            Some(OwnQuery::WarningCount("n".into()))
        );
        assert_eq!(own_query("SELECT FOUND_ROWS() AS a b"), None);
        assert_eq!(own_query("SELECT FOUND_ROWS() + 1 AS v"), None);
        assert!(mentions_last_insert_id(
            "INSERT INTO c VALUES (Last_Insert_Id(), 1)"
        ));
        assert!(calcs_found_rows("select sql_calc_found_rows * from t"));
    }

    #[test]
    fn an_execute_is_answered_with_binary_rows_and_the_servers_column_flags() {
        let mut o = OwnResults::default();
        o.ok(3, 0, 0);
        let text = o.answer(
            &OwnQuery::RowCount("ROW_COUNT()".into()),
            2,
            false,
            TextCharset::default(),
        );
        o.ok(3, 0, 0);
        let binary = o.answer(
            &OwnQuery::RowCount("ROW_COUNT()".into()),
            2,
            true,
            TextCharset::default(),
        );
        assert_eq!(text.len(), 5);
        assert_eq!(binary.len(), 5);
        // Definitions and EOFs are the same; the row: header, NULL bitmap, 8 bytes.
        assert_eq!(text[..3], binary[..3]);
        assert_eq!(&text[3][..], b"\x013");
        assert_eq!(&binary[3][..], &[0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        o.error(1146, b"Table 'x.t' doesn't exist");
        let row = o.answer(
            &OwnQuery::RowCount("ROW_COUNT()".into()),
            2,
            true,
            TextCharset::default(),
        );
        assert_eq!(&row[3][2..], &(-1i64).to_le_bytes());
        // ROW_COUNT() is NOT NULL, @@warning_count is not (flags after the type byte).
        let flags = |p: &BytesMut| u16::from_le_bytes([p[p.len() - 5], p[p.len() - 4]]);
        let wc = o.answer(
            &OwnQuery::WarningCount("@@warning_count".into()),
            2,
            false,
            TextCharset::default(),
        );
        assert_eq!(flags(&row[1]) & NOT_NULL, NOT_NULL);
        assert_eq!(flags(&wc[1]) & NOT_NULL, 0);
        // An error is the statement's one condition.
        o.error(1146, b"Table 'x.t' doesn't exist");
        assert_eq!(o.warnings, 1);
        assert_eq!(o.warning_rows[0].0, "Error");
        assert_eq!(o.row_count, -1);
    }

    #[test]
    fn results_follow_the_last_statement() {
        let mut o = OwnResults::default();
        o.ok(1, 7, 0);
        o.ok(3, 0, 2);
        assert_eq!((o.last_insert_id, o.row_count, o.warnings), (7, 3, 2));
        assert!(o.warnings_pending);
        let packets = o.answer(
            &OwnQuery::LastInsertId("LAST_INSERT_ID()".into()),
            2,
            false,
            TextCharset::default(),
        );
        // count, one definition, EOF, one row, EOF
        assert_eq!(packets.len(), 5);
        assert_eq!(&packets[3][..], b"\x017");
        // A SELECT without tables: the warnings stay the last statement's, as on a server.
        assert_eq!((o.row_count, o.found_rows, o.warnings), (-1, 1, 2));
    }
}
