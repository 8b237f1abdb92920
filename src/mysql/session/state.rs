//! The rules for a client's session state under transaction pooling: which variables are
//! applied on whichever connection the client gets, which statements pin it to its
//! connection, and the SQL text for applying them.

use crate::router::classify::Reason;

/// Session variables applied on whichever connection a client gets (reported by the
/// server's session tracking, `SET` by any means). Any other variable a client changes pins it.
use std::collections::VecDeque;

pub const REPLAYED: &[&str] = &[
    "autocommit",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
    "sql_mode",
    "time_zone",
    "transaction_isolation",
    "tx_isolation",
    "transaction_read_only",
    "tx_read_only",
    "wait_timeout",
    "interactive_timeout",
    "net_read_timeout",
    "net_write_timeout",
    "sql_select_limit",
    "max_statement_time",
    "max_execution_time",
    "group_concat_max_len",
    "foreign_key_checks",
    "unique_checks",
    "sql_auto_is_null",
    "sql_safe_updates",
    "lc_time_names",
    "div_precision_increment",
    "sql_quote_show_create",
    "default_storage_engine",
    "names",
];

/// Session variables the server reports but no client sets: they describe what happened
/// (MariaDB's `last_gtid` after every write) and are neither applied nor a reason to pin.
pub(super) const INFORMATIONAL: &[&str] = &["last_gtid"];

/// Why `sql` (classified as `reason`) pins a client, if it does: state the proxy cannot
/// apply on another connection.
pub fn pin_reason(sql: &str, reason: Reason) -> Option<&'static str> {
    let upper = sql.trim_start().to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().take(4).collect();
    let w = |i: usize| words.get(i).copied().unwrap_or("");
    if w(0) == "CREATE" && (w(1) == "TEMPORARY" || w(2) == "TEMPORARY") {
        return Some("temporary table");
    }
    if w(0) == "LOCK" && (w(1) == "TABLES" || w(1) == "TABLE") {
        return Some("LOCK TABLES");
    }
    if (w(0) == "FLUSH" && upper.contains("READ LOCK"))
        || (w(0) == "BACKUP" && w(1) == "STAGE")
        || (w(0) == "LOCK" && w(1) == "INSTANCE")
    {
        // A global read lock held by the connection: it must stay with its client until
        // UNLOCK TABLES / BACKUP STAGE END (or the reset when the client leaves).
        return Some("global read lock");
    }
    if w(0) == "PREPARE" {
        return Some("SQL PREPARE");
    }
    if w(0) == "HANDLER" {
        return Some("HANDLER");
    }
    if upper.contains("GET_LOCK") {
        return Some("GET_LOCK");
    }
    // User variables: assigned now, read later (the server does not report them by name).
    // A CALL's OUT or INOUT parameter may be a user variable (`CALL p(?, @out)`): the
    // server assigns it without reporting a state change.
    if upper.contains(":=")
        || ((w(0) == "SET" || w(0) == "CALL") && names_user_variable(&upper))
        || upper.contains("INTO @")
    {
        return Some("user variable");
    }
    if w(0) == "SET" && (w(1) == "TRANSACTION") {
        return Some("SET TRANSACTION (next transaction)");
    }
    let _ = reason;
    None
}

/// Whether `sql` names a user variable (`@name`, not a system variable's `@@name`); a SET
/// may assign both at once (`SET @@session.time_zone = '+01:00', @a = 1`).
fn names_user_variable(sql: &str) -> bool {
    let b = sql.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'@' && (i == 0 || b[i - 1] != b'@') && b.get(i + 1).is_some_and(|&n| n != b'@')
    })
}

/// `KILL [QUERY | CONNECTION] n`: (query only, n).
pub(super) fn parse_kill(sql: &str) -> Option<(bool, u32)> {
    let mut words = sql.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("KILL") {
        return None;
    }
    let mut w = words.next()?;
    let mut query_only = false;
    if w.eq_ignore_ascii_case("QUERY") {
        query_only = true;
        w = words.next()?;
    } else if w.eq_ignore_ascii_case("CONNECTION") {
        w = words.next()?;
    }
    let id = w.trim_end_matches(';').parse().ok()?;
    words.next().is_none().then_some((query_only, id))
}

/// The system variables a server's session tracking reports by default
/// (`session_track_system_variables` of MariaDB 10.11 and MySQL 8).
const DEFAULT_TRACKED: &[&str] = &[
    "autocommit",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "time_zone",
];

/// What a client that asked for CLIENT_SESSION_TRACK is told of, as the server would tell it
/// with the client's own `session_track_*` settings. The servers' connections track every
/// variable and every state change for the proxy; the client's answers carry only its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTracking {
    /// The variables tracked (lowercase), or None for `*`.
    variables: Option<Vec<String>>,
    schema: bool,
    state_change: bool,
}

impl Default for ClientTracking {
    fn default() -> Self {
        ClientTracking {
            variables: Some(DEFAULT_TRACKED.iter().map(|v| v.to_string()).collect()),
            schema: true,
            state_change: false,
        }
    }
}

impl ClientTracking {
    /// Takes in a change of one of the client's `session_track_*` variables (reported by the
    /// server under its new value).
    pub fn note(&mut self, name: &str, value: &str) {
        let on = |v: &str| v.eq_ignore_ascii_case("ON") || v == "1";
        match name {
            "session_track_system_variables" => {
                self.variables = if value.split(',').any(|v| v.trim() == "*") {
                    None
                } else {
                    Some(
                        value
                            .split(',')
                            .map(|v| v.trim().to_ascii_lowercase())
                            .filter(|v| !v.is_empty())
                            .collect(),
                    )
                }
            }
            "session_track_schema" => self.schema = on(value),
            "session_track_state_change" => self.state_change = on(value),
            _ => {}
        }
    }

    /// Whether a state change flag with no session state information (an EOF packet's) is
    /// the client's to see.
    pub fn tracks_state_change(&self) -> bool {
        self.state_change
    }

    /// The entries of a server's session state information (an OK packet's) that this
    /// client is told of, in order. Anything unreadable is passed on as it is.
    pub fn filter(&self, state: &[u8]) -> Vec<u8> {
        use crate::mysql::codec::{self, wire};
        let mut out = Vec::with_capacity(state.len());
        let mut at = 0;
        while at < state.len() {
            let kind = state[at];
            let Ok((len, n)) = wire::read_lenenc(&state[at + 1..]) else {
                out.extend_from_slice(&state[at..]);
                break;
            };
            let wire::LenEnc::Int(len) = len else {
                out.extend_from_slice(&state[at..]);
                break;
            };
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let end = (at + 1 + n).saturating_add(len);
            if end > state.len() {
                out.extend_from_slice(&state[at..]);
                break;
            }
            let keep = match kind {
                codec::SESSION_TRACK_SYSTEM_VARIABLES => match &self.variables {
                    None => true,
                    Some(names) => wire::read_lenenc_bytes(&state[at + 1 + n..end])
                        .ok()
                        .and_then(|(name, _)| name)
                        .is_none_or(|name| {
                            names
                                .iter()
                                .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
                        }),
                },
                codec::SESSION_TRACK_SCHEMA => self.schema,
                codec::SESSION_TRACK_STATE_CHANGE => self.state_change,
                _ => true,
            };
            if keep {
                out.extend_from_slice(&state[at..end]);
            }
            at = end;
        }
        out
    }
}

pub(super) fn set_var(vars: &mut Vec<(String, String)>, name: String, value: String) {
    match vars.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
        Ok(i) => vars[i].1 = value,
        Err(i) => vars.insert(i, (name, value)),
    }
}

pub(super) fn unset_var(vars: &mut Vec<(String, String)>, name: &str) {
    vars.retain(|(k, _)| k != name);
}

/// For each statement of `sql` that sets the connection's character set (`SET NAMES`,
/// `SET CHARACTER SET` / `CHARSET`, `SET character_set_connection`), in order: the collation
/// it names (`SET NAMES cs COLLATE collation`, quotes taken off, lowercased), if any. Each
/// report of a new character_set_connection without collation_connection takes the next.
/// Allocates nothing for a text that mentions none of them.
pub fn names_collations(sql: &str) -> VecDeque<Option<String>> {
    // NAMES, or CHAR for CHARSET, CHARACTER SET and character_set_connection.
    let mentions = |w: &[u8]| super::own::contains_ignore_case(sql.as_bytes(), w);
    if !mentions(b"NAMES") && !mentions(b"CHAR") {
        return VecDeque::new();
    }
    crate::router::tokens::mysql_statements(sql)
        .into_iter()
        .filter_map(|stmt| {
            let upper = stmt.trim_start().to_ascii_uppercase();
            let words: Vec<&str> = upper
                .split(|c: char| c.is_ascii_whitespace() || c == ',' || c == '=')
                .filter(|w| !w.is_empty())
                .collect();
            if words.first() != Some(&"SET") {
                return None;
            }
            let sets_charset = words.iter().any(|w| {
                matches!(*w, "NAMES" | "CHARSET" | "CHARACTER")
                    || w.trim_start_matches("@@SESSION.")
                        .trim_start_matches("SESSION.")
                        == "CHARACTER_SET_CONNECTION"
            });
            sets_charset.then(|| names_collation(&words))
        })
        .collect()
}

/// The collation after `NAMES .. COLLATE` in a SET statement's words.
fn names_collation(words: &[&str]) -> Option<String> {
    let names = words.iter().position(|w| *w == "NAMES")?;
    let collate = names + words[names..].iter().position(|w| *w == "COLLATE")?;
    let name = words
        .get(collate + 1)?
        .trim_matches(|c| c == '\'' || c == '"' || c == '`');
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

/// The character set variables: applied together, by [`state_sql`].
const CHARSET_VARS: [&str; 4] = [
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
];

/// The statements that bring a connection whose variables are `applied` and whose schema is
/// `conn_schema` to a client's `vars` and `schema` ("" when it is there already).
///
/// The character set goes first, with `SET NAMES cs COLLATE collation`: that also gives
/// character_set_client the collation, which a prepared statement's string parameters take
/// (`SET character_set_client` alone gives the character set's default collation, and
/// `? = 'A'` then mixes two collations). The other character set variables follow as the
/// client has them, collation_connection last (setting character_set_connection resets it);
/// a collation the client left unknown (SET NAMES without COLLATE) is the character set's
/// default.
pub(super) fn state_sql(
    vars: &[(String, String)],
    applied: &[(String, String)],
    schema: Option<&str>,
    conn_schema: Option<&str>,
) -> String {
    fn get<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
        list.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    if conn_schema == schema && vars == applied {
        // The common case: the connection already has the client's state.
        return String::new();
    }
    let mut parts = Vec::new();
    if conn_schema != schema {
        if let Some(s) = schema {
            parts.push(format!("USE `{}`", s.replace('`', "``")));
        }
    }
    // One SET statement: NAMES first, then the variables (SESSION applies to each).
    let mut names = None;
    let mut sets = Vec::new();
    if CHARSET_VARS.iter().any(|k| get(vars, k) != get(applied, k)) {
        match (
            get(vars, "character_set_client"),
            get(vars, "collation_connection"),
        ) {
            (Some(cs), Some(c)) if c.starts_with(&format!("{cs}_")) => {
                names = Some(format!("NAMES {} COLLATE {}", sql_value(cs), sql_value(c)))
            }
            (Some(cs), _) => names = Some(format!("NAMES {}", sql_value(cs))),
            (None, _) => sets.push("character_set_client = DEFAULT".to_string()),
        }
        for k in &CHARSET_VARS[1..] {
            match get(vars, k) {
                // `SET character_set_results = NULL` (MySQL Connector/J's: results as
                // stored) is reported as an empty value.
                Some("") if *k == "character_set_results" => sets.push(format!("{k} = NULL")),
                Some(v) => sets.push(format!("{k} = {}", sql_value(v))),
                None if *k == "collation_connection" => {}
                None => sets.push(format!("{k} = DEFAULT")),
            }
        }
    }
    for (k, v) in vars {
        if !CHARSET_VARS.contains(&k.as_str()) && get(applied, k) != Some(v.as_str()) {
            sets.push(format!("{k} = {}", sql_value(v)));
        }
    }
    for (k, _) in applied {
        if !CHARSET_VARS.contains(&k.as_str()) && get(vars, k).is_none() {
            sets.push(format!("{k} = DEFAULT"));
        }
    }
    match (names, sets.is_empty()) {
        (Some(n), true) => parts.push(format!("SET {n}")),
        (Some(n), false) => parts.push(format!("SET {n}, SESSION {}", sets.join(", "))),
        (None, false) => parts.push(format!("SET SESSION {}", sets.join(", "))),
        (None, true) => {}
    }
    parts.join("; ")
}

/// A variable's value as SQL: numbers as they are, anything else quoted.
pub(super) fn sql_value(v: &str) -> String {
    let numeric = !v.is_empty()
        && v.trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.');
    if numeric {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
    }
}

/// The session variables a character set id from the handshake sets: its collation's
/// (`crate::mysql::collations`), or the servers' default (utf8mb4_general_ci) for an id
/// MariaDB does not have or takes from no client.
pub(super) fn charset_vars(id: u8) -> Vec<(String, String)> {
    let (cs, coll) =
        crate::mysql::collations::by_id(id).unwrap_or(("utf8mb4", "utf8mb4_general_ci"));
    let mut v = vec![
        ("character_set_client".to_string(), cs.to_string()),
        ("character_set_connection".to_string(), cs.to_string()),
        ("character_set_results".to_string(), cs.to_string()),
        ("collation_connection".to_string(), coll.to_string()),
    ];
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session state information: (type, data) entries, each length-prefixed.
    fn state(entries: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, data) in entries {
            out.push(*kind);
            out.push(data.len() as u8);
            out.extend_from_slice(data);
        }
        out
    }

    fn var(name: &str, value: &str) -> (u8, Vec<u8>) {
        let mut d = vec![name.len() as u8];
        d.extend_from_slice(name.as_bytes());
        d.push(value.len() as u8);
        d.extend_from_slice(value.as_bytes());
        (0, d)
    }

    fn schema(name: &str) -> (u8, Vec<u8>) {
        let mut d = vec![name.len() as u8];
        d.extend_from_slice(name.as_bytes());
        (1, d)
    }

    #[test]
    fn a_tracking_client_is_told_what_its_own_settings_track() {
        let changed = (2, b"\x011".to_vec());
        let all = state(&[
            var("time_zone", "+03:00"),
            changed.clone(),
            var("sql_mode", "ANSI_QUOTES"),
            schema("shop"),
            var("character_set_client", "latin1"),
        ]);
        let mut t = ClientTracking::default();
        // By default: the five variables servers track, the schema, no state change flag.
        assert_eq!(
            t.filter(&all),
            state(&[
                var("time_zone", "+03:00"),
                schema("shop"),
                var("character_set_client", "latin1"),
            ])
        );
        assert!(!t.tracks_state_change());
        t.note("session_track_system_variables", "*");
        t.note("session_track_state_change", "ON");
        assert_eq!(t.filter(&all), all);
        assert!(t.tracks_state_change());
        t.note("session_track_system_variables", "sql_mode, Time_Zone");
        t.note("session_track_schema", "OFF");
        assert_eq!(
            t.filter(&all),
            state(&[
                var("time_zone", "+03:00"),
                changed,
                var("sql_mode", "ANSI_QUOTES")
            ])
        );
        t.note("session_track_system_variables", "");
        t.note("session_track_state_change", "0");
        assert_eq!(t.filter(&all), Vec::<u8>::new());
        // What does not read as entries is passed on as it is, never dropped or cut.
        for cut in 0..all.len() {
            let f = ClientTracking::default().filter(&all[..cut]);
            assert!(f.len() <= cut);
        }
        assert_eq!(
            ClientTracking::default().filter(&[0, 0xFF, 1, 2]),
            vec![0, 0xFF, 1, 2]
        );
    }

    #[test]
    fn the_character_set_is_replayed_with_set_names_and_its_collation() {
        let v = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            let mut v: Vec<_> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            v.sort();
            v
        };
        let login = charset_vars(45);
        let mut laravel = login.clone();
        set_var(
            &mut laravel,
            "collation_connection".into(),
            "utf8mb4_unicode_ci".into(),
        );
        set_var(&mut laravel, "time_zone".into(), "+00:00".into());
        assert_eq!(
            state_sql(&laravel, &login, Some("app"), Some("app")),
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci', SESSION \
             character_set_connection = 'utf8mb4', character_set_results = 'utf8mb4', \
             collation_connection = 'utf8mb4_unicode_ci', time_zone = '+00:00'"
        );
        assert_eq!(state_sql(&laravel, &laravel, None, None), "");
        let mut raw = login.clone();
        set_var(&mut raw, "character_set_results".into(), String::new());
        assert_eq!(
            state_sql(&raw, &login, None, None),
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci', SESSION \
             character_set_connection = 'utf8mb4', character_set_results = NULL, \
             collation_connection = 'utf8mb4_general_ci'"
        );
        // SET NAMES latin1 (no COLLATE): the collation is latin1's default.
        let names = v(&[
            ("character_set_client", "latin1"),
            ("character_set_connection", "latin1"),
            ("character_set_results", "latin1"),
        ]);
        assert_eq!(
            state_sql(&names, &laravel, None, None),
            "SET NAMES 'latin1', SESSION character_set_connection = 'latin1', \
             character_set_results = 'latin1', time_zone = DEFAULT"
        );
        assert_eq!(
            state_sql(&login, &names, Some("a`b"), None),
            "USE `a``b`; SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci', SESSION \
             character_set_connection = 'utf8mb4', character_set_results = 'utf8mb4', collation_connection = 'utf8mb4_general_ci'"
        );
    }

    #[test]
    fn set_names_collation_is_read_from_the_statement() {
        let c = |s: &str| Vec::from(names_collations(s));
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            c("set names 'utf8mb4' collate 'utf8mb4_unicode_ci'"),
            vec![some("utf8mb4_unicode_ci")]
        );
        assert_eq!(
            c("SET NAMES latin1 COLLATE latin1_bin, time_zone = '+00:00'"),
            vec![some("latin1_bin")]
        );
        assert_eq!(
            c("SET NAMES utf8mb4 COLLATE `utf8mb4_BIN`;"),
            vec![some("utf8mb4_bin")]
        );
        assert_eq!(c("SET NAMES utf8mb4"), vec![None]);
        assert_eq!(c("SET CHARACTER SET cp1251"), vec![None]);
        assert_eq!(
            c("SET @@session.character_set_connection = latin1"),
            vec![None]
        );
        assert!(c("SELECT 'names' COLLATE latin1_bin").is_empty());
        assert!(c("SET sql_mode = 'ANSI'").is_empty());
        assert_eq!(c("SET NAMES utf8mb4 COLLATE"), vec![None]);
        assert_eq!(c("SET NAMES utf8mb4 COLLATE ''"), vec![None]);
        // One per statement that sets the character set, in order.
        assert_eq!(
            c("SET NAMES latin1; SELECT 'names; collate x'; SET NAMES utf8mb4 COLLATE utf8mb4_bin"),
            vec![None, some("utf8mb4_bin")]
        );
    }

    #[test]
    fn kill_statements_parse() {
        assert_eq!(parse_kill("KILL 42"), Some((false, 42)));
        assert_eq!(parse_kill("kill query 7;"), Some((true, 7)));
        assert_eq!(parse_kill("KILL CONNECTION 9"), Some((false, 9)));
        assert_eq!(parse_kill("KILL 42 43"), None);
        assert_eq!(parse_kill("SELECT 1"), None);
    }

    #[test]
    fn what_pins() {
        for sql in [
            "CREATE TEMPORARY TABLE t (a int)",
            "SET @a = 1",
            "SET @@session.time_zone = '+01:00', @a = 1",
            "SET @@sql_mode = 'ANSI', @`a b` = 2",
            "SELECT @a := 1",
            "SELECT 1 INTO @x",
            "CALL p(?, @out)",
            "call p(1, @`o`)",
            "SELECT GET_LOCK('l', 1)",
            "LOCK TABLES t WRITE",
            "PREPARE s FROM 'SELECT 1'",
            "FLUSH TABLES WITH READ LOCK",
            "flush tables t1, t2 with read lock",
            "BACKUP STAGE START",
            "LOCK INSTANCE FOR BACKUP",
        ] {
            assert!(pin_reason(sql, Reason::Unknown).is_some(), "{sql}");
        }
        for sql in [
            "SET NAMES utf8mb4",
            "SET sql_mode = 'ANSI'",
            "SET SESSION time_zone = '+00:00'",
            "SELECT @@version",
            "SET @@session.time_zone = '+01:00', @@sql_mode = 'ANSI'",
            "UPDATE t SET a = 1",
            "USE shop",
            "CALL p(1, 2)",
        ] {
            assert!(pin_reason(sql, Reason::Unknown).is_none(), "{sql}");
        }
    }

    #[test]
    fn values_are_quoted_unless_numeric() {
        assert_eq!(sql_value("100"), "100");
        assert_eq!(sql_value("-1.5"), "-1.5");
        assert_eq!(sql_value("+00:00"), "'+00:00'");
        assert_eq!(sql_value("it's"), "'it''s'");
        assert_eq!(sql_value("ON"), "'ON'");
    }
}
