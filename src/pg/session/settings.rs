//! Bringing a backend connection's settings in line with a client's startup parameters.

/// SQL that moves a connection from `have` settings to `want` (both sorted by name).
pub(crate) fn settings_sql(have: &[(String, String)], want: &[(String, String)]) -> String {
    use std::fmt::Write;
    let timeout = |k: &str| k.eq_ignore_ascii_case("statement_timeout");
    let set = |sql: &mut String, k: &str, v: &str| {
        // set_config() parses the value as a startup option would (lists included).
        let _ = write!(
            sql,
            "SELECT pg_catalog.set_config('{}', '{}', false);",
            k.replace('\'', "''"),
            v.replace('\'', "''")
        );
    };
    let mut sql = String::new();
    for (k, v) in want.iter().filter(|(k, _)| !timeout(k)) {
        if !have
            .iter()
            .any(|(hk, hv)| hk.eq_ignore_ascii_case(k) && hv == v)
        {
            set(&mut sql, k, v);
        }
    }
    for (k, _) in have.iter().filter(|(k, _)| !timeout(k)) {
        if !want.iter().any(|(wk, _)| wk.eq_ignore_ascii_case(k)) {
            let _ = write!(sql, "RESET {};", quote_ident(k));
        }
    }
    // Each statement of the string runs under the statement_timeout in force when it starts:
    // a previous client's (1 ms, say) could cut the changes themselves. So it is switched
    // off first (a SET is the quickest statement there is), and set as wanted last.
    let had = have.iter().find(|(k, _)| timeout(k)).map(|(_, v)| v);
    let wanted = want.iter().find(|(k, _)| timeout(k)).map(|(_, v)| v);
    let others = !sql.is_empty();
    if had.is_some() && others {
        sql.insert_str(0, "SET statement_timeout = 0;");
    }
    if had != wanted || (had.is_some() && others) {
        match wanted {
            Some(v) => set(&mut sql, "statement_timeout", v),
            None => sql.push_str("RESET \"statement_timeout\";"),
        }
    }
    sql
}

/// `base` with `over`'s settings put in (names compare without case), sorted by name.
pub(crate) fn merged(
    base: &[(String, String)],
    over: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| !over.iter().any(|(o, _)| o.eq_ignore_ascii_case(k)))
        .chain(over.iter())
        .cloned()
        .collect();
    out.sort();
    out
}

/// Settings whose values are lists of names: a quoted string given to one is quoted again as a
/// name by `SET`, which `set_config` would not do; only bare names are carried for them.
const NAME_LISTS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
];

/// A `SET` of one setting that the proxy can carry to the client's other connections itself
/// (transaction mode) instead of keeping the client on this one: `SET [SESSION] name {= | TO}
/// value[, value ...]` or `SET [SESSION] TIME ZONE value`, alone in the text, where each value
/// is a number, a bare word or a string without backslashes. Returns the setting's name (in
/// lower case) and the value as `set_config` takes it. None for anything else (`LOCAL`,
/// `ROLE`, `SESSION AUTHORIZATION`, `TRANSACTION`, `DEFAULT`, quoted names, comments, ...):
/// that pins the client as before.
pub fn plain_set(sql: &str) -> Option<(String, String)> {
    let s = sql.trim();
    let set = match lead(s) {
        Lead::Set => true,
        Lead::SetConfig => false,
        Lead::Other => return None,
    };
    let s = s.strip_suffix(';').unwrap_or(s).trim_end();
    if s.contains("--")
        || s.contains("/*")
        || s.contains('\\')
        || s.chars()
            .any(|c| c.is_control() && !c.is_ascii_whitespace())
    {
        return None;
    }
    let toks = set_tokens(s)?;
    if !set {
        return set_config_call(&toks);
    }
    let word = |i: usize| match toks.get(i) {
        Some(SetTok::Word(w)) => Some(w.to_ascii_lowercase()),
        _ => None,
    };
    let mut i = 0;
    if word(i)? != "set" {
        return None;
    }
    i += 1;
    let session = word(i).as_deref() == Some("session");
    if session {
        i += 1;
    }
    let name = match word(i)?.as_str() {
        "characteristics" if session => return characteristics(&toks[i + 1..]),
        "local" | "role" | "session" | "transaction" | "constraints" | "authorization"
        | "characteristics" => return None,
        "time" if word(i + 1).as_deref() == Some("zone") => {
            i += 2;
            "timezone".to_string()
        }
        // `SET NAMES 'utf8'` (Laravel's and Doctrine's connect statement) is `SET
        // client_encoding`.
        "names" if matches!(toks.get(i + 1), Some(SetTok::Str(_))) => {
            i += 1;
            "client_encoding".to_string()
        }
        name if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => return None,
        name => {
            i += 1;
            match (toks.get(i), word(i).as_deref()) {
                (Some(SetTok::Eq), _) | (_, Some("to")) => i += 1,
                _ => return None,
            }
            name.to_string()
        }
    };
    if never_carried(&name) {
        return None;
    }
    // `SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE` (Sequelize's): carried with the value
    // the server reports, as `-7` below.
    if let [SetTok::Word(interval), SetTok::Str(_), rest @ ..] = &toks[i..] {
        let qualifier =
            |t: &SetTok| matches!(t, SetTok::Word(w) if w.chars().all(|c| c.is_ascii_alphabetic()));
        if name == "timezone"
            && interval.eq_ignore_ascii_case("interval")
            && rest.iter().all(qualifier)
        {
            return Some((name, String::new()));
        }
    }
    let values: Vec<&SetTok> = toks[i..].iter().step_by(2).collect();
    let separated = toks[i..]
        .iter()
        .skip(1)
        .step_by(2)
        .all(|t| *t == SetTok::Comma);
    if values.is_empty() || !separated || toks[i..].len() % 2 == 0 {
        return None;
    }
    if NAME_LISTS.contains(&name.as_str()) {
        // Each name as the server keeps it: SET quotes it again where it needs quotes (knex
        // sends `set search_path to "app","public"`).
        let mut names = Vec::with_capacity(values.len());
        for v in values {
            names.push(quote_ident_as_server(&list_name(v)?));
        }
        return Some((name, names.join(", ")));
    }
    let value = match values[..] {
        [SetTok::Str(v)] => v.clone(),
        [SetTok::Word(v)]
            if v.eq_ignore_ascii_case("default") || v.eq_ignore_ascii_case("local") =>
        {
            return None
        }
        // `SET TIME ZONE -7` counts hours the SQL way, `set_config` the POSIX way: the value
        // carried is the one the server reports (see `REPORTED`).
        [SetTok::Word(v)]
            if name == "timezone" && !v.starts_with(|c: char| c.is_ascii_alphabetic()) =>
        {
            String::new()
        }
        _ => {
            let mut parts = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    SetTok::Word(w) if !w.eq_ignore_ascii_case("default") => {
                        parts.push(identifier_folded(w))
                    }
                    SetTok::Ident(w) if valid_ident(w) => parts.push(w.clone()),
                    _ => return None,
                }
            }
            parts.join(", ")
        }
    };
    Some((name, value))
}

/// A bare word as the server's scanner leaves it: a name folded to lower case, a number as
/// written.
fn identifier_folded(w: &str) -> String {
    if w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        w.to_ascii_lowercase()
    } else {
        w.to_string()
    }
}

/// A quoted name the server takes without a notice: not empty, not cut at 63 bytes.
fn valid_ident(w: &str) -> bool {
    !w.is_empty() && w.len() < 64
}

/// One name of a `search_path`-like list as SET takes it: a bare name (folded), a quoted name
/// or a string. None for anything else (a number, `DEFAULT`, an empty or overlong name).
fn list_name(t: &SetTok) -> Option<String> {
    let name = match t {
        SetTok::Word(w)
            if w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && !w.contains('.')
                && !w.eq_ignore_ascii_case("default") =>
        {
            w.to_ascii_lowercase()
        }
        SetTok::Ident(w) | SetTok::Str(w) => w.clone(),
        _ => return None,
    };
    valid_ident(&name).then_some(name)
}

/// Keywords the server's `quote_identifier` quotes (PostgreSQL 15's reserved, column-name and
/// type-or-function-name keywords; unreserved ones stay bare).
const QUOTED_KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// A name as the server writes it back (its `quote_identifier`): bare if it is lower-case
/// letters, digits and `_` (not first a digit) and no keyword that needs quotes, else in
/// double quotes with inner ones doubled.
fn quote_ident_as_server(name: &str) -> String {
    let bare = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !QUOTED_KEYWORDS.contains(&name);
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A simple Query of one or more plain `SET`s (see [`plain_set`]) and nothing else, such as
/// Sequelize's `SET client_min_messages TO warning;SET TIME ZONE ...;`: the server runs them in
/// one implicit transaction, so either all of them take effect or none.
pub fn plain_sets(sql: &str) -> Option<Vec<(String, String)>> {
    if lead(sql.trim_start_matches(|c: char| c == ';' || c.is_whitespace())) == Lead::Other {
        return None;
    }
    if !sql.contains(';') {
        return plain_set(sql).map(|kv| vec![kv]);
    }
    let mut sets = Vec::new();
    // The quote a string or name is open with.
    let mut quoted: Option<char> = None;
    let mut start = 0;
    for (at, c) in sql.char_indices().chain([(sql.len(), ';')]) {
        match (c, quoted) {
            ('\'' | '"', None) => quoted = Some(c),
            (c, Some(q)) if c == q => quoted = None,
            (';', None) => {
                let one = &sql[start..at];
                if !one.trim().is_empty() {
                    sets.push(plain_set(one)?);
                }
                start = at + 1;
            }
            _ => {}
        }
    }
    (!sets.is_empty() && quoted.is_none()).then_some(sets)
}

#[derive(PartialEq)]
enum Lead {
    Set,
    SetConfig,
    Other,
}

/// How `s` (trimmed at the start) begins: `SET` and a blank, `SELECT` and a blank and a
/// `set_config` call, or anything else. Every Query and unnamed Parse of a client in
/// transaction mode comes here: most are neither, and leave at once.
fn lead(s: &str) -> Lead {
    let b = s.as_bytes();
    let word = |b: &[u8], word: &[u8]| {
        b.len() > word.len()
            && b[..word.len()].eq_ignore_ascii_case(word)
            && b[word.len()].is_ascii_whitespace()
    };
    let starts =
        |b: &[u8], with: &[u8]| b.len() >= with.len() && b[..with.len()].eq_ignore_ascii_case(with);
    if word(b, b"set") {
        return Lead::Set;
    }
    if word(b, b"select") {
        let call = b[6..].trim_ascii_start();
        if starts(call, b"set_config") || starts(call, b"pg_catalog.set_config") {
            return Lead::SetConfig;
        }
    }
    Lead::Other
}

/// Settings that are not plain: who the session is, and what its open transaction is (the
/// defaults for its transactions, `default_transaction_*`, are plain).
fn never_carried(name: &str) -> bool {
    name == "role" || name == "session_authorization" || name.starts_with("transaction")
}

/// `SET SESSION CHARACTERISTICS AS TRANSACTION` and one mode (what pgjdbc's
/// `setTransactionIsolation` sends): the `default_transaction_*` setting it changes, and the
/// value as `set_config` takes it. Several modes in one statement: None (pins).
fn characteristics(toks: &[SetTok]) -> Option<(String, String)> {
    let mut words = Vec::with_capacity(toks.len());
    for t in toks {
        match t {
            SetTok::Word(w) => words.push(w.to_ascii_lowercase()),
            _ => return None,
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (name, value) = match words[..] {
        ["as", "transaction", "isolation", "level", ref level @ ..] => {
            let value = match level {
                ["serializable"] => "serializable",
                ["repeatable", "read"] => "repeatable read",
                ["read", "committed"] => "read committed",
                ["read", "uncommitted"] => "read uncommitted",
                _ => return None,
            };
            ("default_transaction_isolation", value)
        }
        ["as", "transaction", "read", "only"] => ("default_transaction_read_only", "on"),
        ["as", "transaction", "read", "write"] => ("default_transaction_read_only", "off"),
        ["as", "transaction", "deferrable"] => ("default_transaction_deferrable", "on"),
        ["as", "transaction", "not", "deferrable"] => ("default_transaction_deferrable", "off"),
        _ => return None,
    };
    Some((name.to_string(), value.to_string()))
}

/// `SELECT [pg_catalog.]set_config('name', 'value', false)` (Django's way to set the time
/// zone): the setting and value as a plain `SET` gives them. The value goes to `set_config`
/// again on the client's other connections, so it is taken as it is (lists included).
fn set_config_call(toks: &[SetTok]) -> Option<(String, String)> {
    let [SetTok::Word(select), SetTok::Word(function), SetTok::Open, SetTok::Str(name), SetTok::Comma, SetTok::Str(value), SetTok::Comma, SetTok::Word(local), SetTok::Close] =
        toks
    else {
        return None;
    };
    let function = function.to_ascii_lowercase();
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !select.eq_ignore_ascii_case("select")
        || !(function == "set_config" || function == "pg_catalog.set_config")
        || !local.eq_ignore_ascii_case("false")
        || !valid_name
    {
        return None;
    }
    let name = name.to_ascii_lowercase();
    if never_carried(&name) {
        return None;
    }
    Some((name, value.clone()))
}

#[derive(Debug, PartialEq, Eq)]
enum SetTok {
    /// A bare word or number (letters, digits, `_`, `.`, `$`, a leading sign).
    Word(String),
    /// A single-quoted string, its quotes taken off.
    Str(String),
    /// A double-quoted name, its quotes taken off.
    Ident(String),
    Eq,
    Comma,
    Open,
    Close,
}

fn set_tokens(s: &str) -> Option<Vec<SetTok>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'=' {
            out.push(SetTok::Eq);
            i += 1;
        } else if c == b',' {
            out.push(SetTok::Comma);
            i += 1;
        } else if c == b'(' || c == b')' {
            out.push(if c == b'(' {
                SetTok::Open
            } else {
                SetTok::Close
            });
            i += 1;
        } else if c == b'\'' || c == b'"' {
            let mut v = Vec::new();
            i += 1;
            loop {
                match b.get(i) {
                    Some(&q) if q == c && b.get(i + 1) == Some(&c) => {
                        v.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&x) => {
                        v.push(x);
                        i += 1;
                    }
                    None => return None,
                }
            }
            let v = String::from_utf8(v).ok()?;
            out.push(if c == b'"' {
                SetTok::Ident(v)
            } else {
                SetTok::Str(v)
            });
        } else if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'+') {
            // (Not `$`: `$$x$$` is a string, `$1` a parameter.)
            let start = i;
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'$'))
            {
                i += 1;
            }
            out.push(SetTok::Word(s[start..i].to_string()));
        } else {
            return None;
        }
    }
    Some(out)
}

fn quote_ident(name: &str) -> String {
    // Names may contain dots (extension.setting): quote each part.
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_sets_are_recognised_and_the_rest_are_not() {
        let yes = |sql: &str, name: &str, value: &str| {
            assert_eq!(
                plain_set(sql),
                Some((name.to_string(), value.to_string())),
                "{sql}"
            );
        };
        // What drivers send when they connect: pgjdbc, Rails, others.
        yes("SET extra_float_digits = 3", "extra_float_digits", "3");
        yes(
            "SET client_min_messages TO 'warning'",
            "client_min_messages",
            "warning",
        );
        yes(
            "SET standard_conforming_strings = on",
            "standard_conforming_strings",
            "on",
        );
        yes("SET intervalstyle = iso_8601", "intervalstyle", "iso_8601");
        yes("SET SESSION timezone TO 'UTC';", "timezone", "UTC");
        yes("set time zone 'Europe/Paris'", "timezone", "Europe/Paris");
        yes("set names 'utf8'", "client_encoding", "utf8");
        yes("SET SESSION NAMES 'LATIN1';", "client_encoding", "LATIN1");
        yes("SET application_name = 'it''s'", "application_name", "it's");
        yes(
            "SET search_path = app, public",
            "search_path",
            "app, public",
        );
        yes("SET search_path TO 'app'", "search_path", "app");
        // Names in a search_path as the server writes them back (SHOW search_path).
        yes(
            "SET search_path = 'My Schema'",
            "search_path",
            "\"My Schema\"",
        );
        yes(
            "SET search_path = \"Sch\", public",
            "search_path",
            "\"Sch\", public",
        );
        yes(
            "set search_path to \"app\",\"public\"",
            "search_path",
            "app, public",
        );
        yes(
            "SET search_path = App, \"user\", 'select', \"a\"\"b\", '$user', _x1",
            "search_path",
            "app, \"user\", \"select\", \"a\"\"b\", \"$user\", _x1",
        );
        yes("SET search_path = 'a,b'", "search_path", "\"a,b\"");
        // Bare words are folded as the server's scanner folds names.
        yes("SET myapp.x = Foo", "myapp.x", "foo");
        yes(
            "SET application_name = \"MyApp\"",
            "application_name",
            "MyApp",
        );
        yes("SET x.y = 1E3", "x.y", "1E3");
        yes("SET statement_timeout = '5s'", "statement_timeout", "5s");
        yes("SET work_mem = 64MB", "work_mem", "64MB");
        yes("SET myapp.tenant = '42'", "myapp.tenant", "42");
        yes("SET DateStyle = 'ISO, MDY'", "datestyle", "ISO, MDY");
        yes("SET lock_timeout = -1", "lock_timeout", "-1");
        // pgjdbc's setTransactionIsolation and setReadOnly (readOnlyMode=always).
        yes(
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "default_transaction_isolation",
            "serializable",
        );
        yes(
            "set session characteristics as transaction isolation level repeatable read",
            "default_transaction_isolation",
            "repeatable read",
        );
        yes(
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "default_transaction_isolation",
            "read committed",
        );
        yes(
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "default_transaction_read_only",
            "on",
        );
        yes(
            "SET SESSION CHARACTERISTICS AS TRANSACTION NOT DEFERRABLE",
            "default_transaction_deferrable",
            "off",
        );
        yes(
            "SET default_transaction_read_only = on",
            "default_transaction_read_only",
            "on",
        );
        yes(
            "SET default_transaction_isolation TO 'repeatable read'",
            "default_transaction_isolation",
            "repeatable read",
        );
        for no in [
            "SET LOCAL work_mem = '1MB'",
            "SET ROLE admin",
            "SET role = admin",
            "SET SESSION AUTHORIZATION bob",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY, DEFERRABLE",
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ",
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL 'serializable'",
            "SET SESSION CHARACTERISTICS TRANSACTION READ ONLY",
            "SET CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET transaction_read_only = on",
            "SET transaction_isolation = serializable",
            "SET CONSTRAINTS ALL DEFERRED",
            "SET work_mem TO DEFAULT",
            "SET NAMES DEFAULT",
            "SET NAMES",
            "SET NAMES 'utf8', 'latin1'",
            "SET TIME ZONE LOCAL",
            "SET TIME ZONE INTERVAL 7",
            "SET timezone = INTERVAL '+00:00' HOUR TO MINUTE, 1",
            "SET work_mem = $$1MB$$",
            "SET work_mem = $1",
            "SET search_path = ''",
            "SET search_path = \"\"",
            "SET search_path = 1a",
            "SET search_path = a.b",
            "SET search_path = DEFAULT, public",
            "SET \"work_mem\" = '1MB'",
            "SET application_name = E'a\\nb'",
            "SET work_mem = '1MB'; SET x.y = 1",
            "SET work_mem = '1MB' -- note",
            "SET /* c */ work_mem = '1MB'",
            "SET work_mem '1MB'",
            "SET work_mem =",
            "SET work_mem = 'unterminated",
            "SET a = 1 2",
            "SET a = 1,",
            "SET-OA = 1",
            "SET a = 'x\0y'",
            "SET a = 'x\u{7}y'",
            "SELECT set_config('work_mem', '1MB', true)",
            "SELECT set_config('work_mem', $1, false)",
            "SELECT set_config('role', 'bob', false)",
            "SELECT set_config('transaction_isolation', 'serializable', false)",
            "SELECT set_config('Work Mem', '1MB', false)",
            "SELECT set_config('work_mem', '1MB', false), 1",
            "SELECT set_config('work_mem', '1MB', false) FROM t",
            "SELECT set_config('work_mem', E'1MB', false)",
            "SELECT set_config('work_mem', '1MB', false); SELECT 1",
            "SELECT x.set_config('work_mem', '1MB', false)",
            "SELECT set_config(('work_mem'), '1MB', false)",
            "SELECTset_config('work_mem', '1MB', false)",
            "SELECT 1",
            "RESET work_mem",
        ] {
            assert_eq!(plain_set(no), None, "{no}");
        }
    }

    #[test]
    fn strings_of_plain_sets_and_time_zones_the_server_reports() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        // Sequelize (v6), when it connects; the time zone's value comes from the server's
        // report (an empty one here).
        assert_eq!(
            plain_sets("SET client_min_messages TO warning;SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE;"),
            Some(vec![kv("client_min_messages", "warning"), kv("timezone", "")])
        );
        assert_eq!(
            plain_sets("SET standard_conforming_strings=on; SET TIME ZONE 'Asia/Kolkata'"),
            Some(vec![
                kv("standard_conforming_strings", "on"),
                kv("timezone", "Asia/Kolkata")
            ])
        );
        assert_eq!(
            plain_sets("SET TIME ZONE -7"),
            Some(vec![kv("timezone", "")])
        );
        assert_eq!(
            plain_sets("SET application_name = 'a;b'; SET work_mem = '2MB';;"),
            Some(vec![kv("application_name", "a;b"), kv("work_mem", "2MB")])
        );
        for no in [
            "SET a = 1; SELECT 1",
            "SELECT 1; SET a = 1",
            "BEGIN; SET a = 1; COMMIT",
            "SET a = 1; SET LOCAL b = 2",
            "SET a = 'x; SET b = 2",
            "SET a = 1 -- ; SET b = 2",
            ";",
            "",
        ] {
            assert_eq!(plain_sets(no), None, "{no}");
        }
    }

    #[test]
    fn set_config_calls_of_a_literal_setting_are_plain_sets() {
        let yes = |sql: &str, name: &str, value: &str| {
            assert_eq!(
                plain_set(sql),
                Some((name.to_string(), value.to_string())),
                "{sql}"
            );
        };
        // Django, when the server's TimeZone is not the one it wants.
        yes(
            "SELECT set_config('TimeZone', 'UTC', false)",
            "timezone",
            "UTC",
        );
        yes(
            "select pg_catalog.set_config('search_path', 'a, \"B\"', FALSE);",
            "search_path",
            "a, \"B\"",
        );
        yes(
            "SELECT set_config ( 'app.user_id' , '42' , false )",
            "app.user_id",
            "42",
        );
    }

    #[test]
    fn settings_sql_sets_changes_and_resets_leftovers() {
        let have = vec![
            ("application_name".to_string(), "a".to_string()),
            ("search_path".into(), "x".into()),
        ];
        let want = vec![("application_name".to_string(), "b'c".to_string())];
        assert_eq!(
            settings_sql(&have, &want),
            "SELECT pg_catalog.set_config('application_name', 'b''c', false);RESET \"search_path\";"
        );
        assert_eq!(settings_sql(&want, &want), "");
        // A previous client's statement_timeout could cut the changes: off first, the
        // wanted one last.
        let tiny = vec![
            ("application_name".to_string(), "a".to_string()),
            ("statement_timeout".to_string(), "1".to_string()),
        ];
        assert_eq!(
            settings_sql(&tiny, &want),
            "SET statement_timeout = 0;\
             SELECT pg_catalog.set_config('application_name', 'b''c', false);\
             RESET \"statement_timeout\";"
        );
        let own = vec![
            ("statement_timeout".to_string(), "1".to_string()),
            ("TimeZone".to_string(), "UTC".to_string()),
        ];
        assert_eq!(
            settings_sql(&tiny, &own),
            "SET statement_timeout = 0;\
             SELECT pg_catalog.set_config('TimeZone', 'UTC', false);\
             RESET \"application_name\";\
             SELECT pg_catalog.set_config('statement_timeout', '1', false);"
        );
        assert_eq!(settings_sql(&own, &own), "");
        // Names compare without case: a setting is not reset after it was set.
        let have = vec![("TimeZone".to_string(), "UTC".to_string())];
        let want = vec![("timezone".to_string(), "UTC".to_string())];
        assert_eq!(settings_sql(&have, &want), "");
        assert_eq!(
            merged(&have, &[("timezone".into(), "Asia/Tokyo".into())]),
            vec![("timezone".to_string(), "Asia/Tokyo".to_string())]
        );
    }
}
