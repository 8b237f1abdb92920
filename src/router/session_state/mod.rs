//! What a SQL string does to the session state of the connection it runs on: which kinds of
//! state it may leave behind, which it clears, and whether it resets settings.
//!
//! In transaction pool mode a client whose statement may leave state is pinned to its backend
//! connection (the session keeps a set of [`State`] kinds per client). Statements that only
//! clear state (asyncpg's reset on release: `pg_advisory_unlock_all()`, `CLOSE ALL`,
//! `UNLISTEN *`, `RESET ALL`; `DISCARD ALL`) never pin, and when they complete outside a
//! transaction they remove the kinds they clear; a client left with none is unpinned.
//! Statements that reset settings (`RESET`, `DISCARD ALL`) make the session re-apply the
//! client's startup parameters, as a direct connection would return to them.
//!
//! What is recognised, anywhere in any statement of the string (comments, strings and
//! dollar-quoted bodies are skipped, so text inside a `DO` body or a function body is not):
//!
//! | statement or call | leaves | clears |
//! |---|---|---|
//! | `SET` (not `LOCAL`, `TRANSACTION`, `CONSTRAINTS`), `set_config(.., .., <not true>)` | settings | |
//! | `SET ROLE`, `SET SESSION AUTHORIZATION`, `LOAD`, `DO`, `CALL`, `setseed()`, `dblink_connect()` | other | |
//! | `pg_advisory_lock[_shared]()`, `pg_try_advisory_lock[_shared]()` | advisory | |
//! | `LISTEN` | listen | |
//! | `CREATE .. TEMP ..`, `CREATE .. pg_temp.x`, `SELECT .. INTO TEMP` | temp | |
//! | `DECLARE .. WITH HOLD` | cursor | |
//! | `PREPARE name` (not `PREPARE TRANSACTION`) | prepared | |
//! | `RESET ALL` | | settings |
//! | `UNLISTEN *` | | listen |
//! | `pg_advisory_unlock_all()` | | advisory |
//! | `CLOSE ALL` | | cursor |
//! | `DEALLOCATE [PREPARE] ALL` | | prepared |
//! | `DISCARD TEMP` | | temp |
//! | `DISCARD ALL` | | everything |
//!
//! `DO` and `CALL` count as leaving "other" state because the code they run is not visible
//! here; a function of the user's own that changes settings is not detected by text (the
//! reported settings the server announces are, see the session).

use super::pg_functions::{is_catalog_function, is_catalog_function_lower};
use super::tokens::{Kind, Lex, Tok, Tokens};

mod scan;
use scan::{scan, tx_end, TxEnd};

/// Kinds of session state, as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct State(u8);

impl State {
    pub const NONE: State = State(0);
    /// Settings: `SET`, `set_config(.., false)`, `SET SESSION CHARACTERISTICS`.
    pub const SETTINGS: State = State(1);
    /// Session-level advisory locks.
    pub const ADVISORY: State = State(1 << 1);
    /// `LISTEN` channels.
    pub const LISTEN: State = State(1 << 2);
    /// Temporary tables, views, functions, sequences.
    pub const TEMP: State = State(1 << 3);
    /// Cursors `WITH HOLD`.
    pub const CURSOR: State = State(1 << 4);
    /// SQL-level prepared statements (`PREPARE`).
    pub const PREPARED: State = State(1 << 5);
    /// Anything else: role, loaded libraries, code whose effect is unknown (`DO`, `CALL`).
    pub const OTHER: State = State(1 << 6);
    pub const ALL: State = State((1 << 7) - 1);

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub const fn union(self, o: State) -> State {
        State(self.0 | o.0)
    }
    pub const fn intersect(self, o: State) -> State {
        State(self.0 & o.0)
    }
    pub const fn minus(self, o: State) -> State {
        State(self.0 & !o.0)
    }
    pub const fn contains(self, o: State) -> bool {
        self.0 & o.0 == o.0
    }

    /// Names of the kinds in the set, for logs and errors.
    pub fn names(self) -> Vec<&'static str> {
        const NAMES: [&str; 7] = [
            "settings", "advisory", "listen", "temp", "cursor", "prepared", "other",
        ];
        (0..7)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| NAMES[i])
            .collect()
    }
}

impl std::ops::BitOrAssign for State {
    fn bitor_assign(&mut self, o: State) {
        *self = self.union(o);
    }
}

/// What a SQL string does to session state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effect {
    /// State it may leave behind: the client is pinned.
    pub adds: State,
    /// State it removes when it completes (outside a transaction).
    pub clears: State,
    /// Settings return to the connection's defaults (`RESET`, `DISCARD ALL`): the client's
    /// startup parameters must be applied again.
    pub resets_settings: bool,
    /// All settings return to the connection's defaults (`RESET ALL`, `DISCARD ALL`); without
    /// it only the ones [`reset_names`] lists do.
    pub resets_all: bool,
    /// Every prepared statement of the connection is gone (`DISCARD ALL`, `DEALLOCATE ALL`).
    pub drops_prepared: bool,
    /// It calls a function that is not in `pg_catalog` (the user's own, an extension's): what
    /// it does to session state is unknown, so the connection is reset before reuse.
    pub unknown: bool,
}

impl Effect {
    pub fn is_none(&self) -> bool {
        *self == Effect::default()
    }

    /// `o` is the statement after: what it leaves is not cleared by one before it
    /// (`DEALLOCATE ALL; PREPARE q ...` leaves a prepared statement).
    fn merge(&mut self, o: Effect) {
        self.adds |= o.adds;
        self.clears = self.clears.minus(o.adds).union(o.clears);
        self.resets_settings |= o.resets_settings;
        self.resets_all |= o.resets_all;
        self.drops_prepared |= o.drops_prepared;
        self.unknown |= o.unknown;
    }
}

/// First words of statements that can have an effect.
const EFFECT_WORDS: [&str; 13] = [
    "SET",
    "RESET",
    "CREATE",
    "PREPARE",
    "LISTEN",
    "UNLISTEN",
    "LOAD",
    "DECLARE",
    "CLOSE",
    "DISCARD",
    "DEALLOCATE",
    "DO",
    "CALL",
];

/// Statements that define things: names before `(` there are not calls.
const DDL_WORDS: [&str; 6] = ["CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE"];

/// Words (lower case) that take a parenthesis without being a function call: keywords of
/// the grammar, type names with modifiers, and constructs that look like calls but are not
/// in `pg_proc`.
fn is_paren_word(w: &[u8]) -> bool {
    // By length first: one comparison picks the few candidates.
    match w.len() {
        2 => matches!(w, b"as" | b"by" | b"do" | b"in" | b"is" | b"on" | b"or"),
        3 => matches!(
            w,
            b"all" | b"and" | b"any" | b"bit" | b"dec" | b"for" | b"key" | b"not" | b"row" | b"set"
        ),
        4 => matches!(
            w,
            b"case"
                | b"cast"
                | b"char"
                | b"cube"
                | b"else"
                | b"from"
                | b"join"
                | b"like"
                | b"over"
                | b"sets"
                | b"some"
                | b"then"
                | b"time"
                | b"trim"
                | b"when"
        ),
        5 => matches!(
            w,
            b"array"
                | b"check"
                | b"float"
                | b"ilike"
                | b"least"
                | b"limit"
                | b"union"
                | b"using"
                | b"where"
        ),
        6 => matches!(
            w,
            b"except"
                | b"exists"
                | b"filter"
                | b"having"
                | b"nullif"
                | b"offset"
                | b"rollup"
                | b"select"
                | b"values"
        ),
        7 => matches!(
            w,
            b"between"
                | b"decimal"
                | b"default"
                | b"exclude"
                | b"extract"
                | b"include"
                | b"lateral"
                | b"numeric"
                | b"overlay"
                | b"similar"
                | b"varchar"
                | b"varying"
        ),
        8 => matches!(
            w,
            b"coalesce"
                | b"conflict"
                | b"distinct"
                | b"greatest"
                | b"grouping"
                | b"inherits"
                | b"interval"
                | b"position"
        ),
        9 => matches!(
            w,
            b"character" | b"intersect" | b"returning" | b"substring" | b"timestamp"
        ),
        _ => false,
    }
}

/// Words (lower case) after which a name followed by `(` is a relation, alias or statement
/// name with a column or parameter list, not a call.
fn is_name_before_paren(w: &[u8]) -> bool {
    matches!(
        w,
        b"into"
            | b"table"
            | b"as"
            | b"with"
            | b"recursive"
            | b"on"
            | b"references"
            | b"copy"
            | b"prepare"
            | b"execute"
    )
}

/// True if `name (` is surely not a function call (see [`is_paren_word`], [`is_name_before_paren`]).
fn not_a_call(name: &str, before: Option<(Kind, &str)>) -> bool {
    let mut buf = [0u8; 32];
    if lower(name.as_bytes(), &mut buf).is_some_and(is_paren_word) {
        return true;
    }
    match before {
        // `f(..) AS t(a, b)` is covered by AS; `unnest(x) t(a)` by the `)` before the alias.
        Some((Kind::Close, _)) => true,
        Some((Kind::Word, w)) => {
            let mut buf = [0u8; 32];
            lower(w.as_bytes(), &mut buf).is_some_and(is_name_before_paren)
        }
        _ => false,
    }
}

/// Functions whose call leaves (or clears) state.
fn call_effect(name: &str) -> Effect {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    let mut e = Effect::default();
    if is("pg_advisory_lock")
        || is("pg_advisory_lock_shared")
        || is("pg_try_advisory_lock")
        || is("pg_try_advisory_lock_shared")
    {
        e.adds = State::ADVISORY;
    } else if is("pg_advisory_unlock_all") {
        e.clears = State::ADVISORY;
    } else if is("setseed") || is("dblink_connect") || is("dblink_connect_u") {
        e.adds = State::OTHER;
    }
    e
}

/// The common case decided on bytes, before any UTF-8 check or token scan: `true` when `sql`
/// is one statement (no `;` but a final one, no comment) whose first word is a plain ASCII
/// word that no statement with an effect starts with, in which every `(` surely opens no
/// call with an effect or an unknown one (see [`harmless_paren`]), and which, if it is a
/// read, has no `temp` (`INTO TEMP`). `false` means: ask [`effect`]. Never `true` where the
/// full scan finds an effect (a unit test and the `sql_lexer` fuzz target check that).
pub fn surely_no_effect(sql: &[u8]) -> bool {
    let b = sql.trim_ascii_end();
    let b = b.strip_suffix(b";").unwrap_or(b);
    if b.contains(&b';') {
        return false;
    }
    let Some(start) = b.iter().position(|c| !c.is_ascii_whitespace()) else {
        return false;
    };
    let rest = &b[start..];
    let len = rest
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    // A comment, a parenthesis or a quote first, or a word that goes on with a digit, `_`,
    // `$` or a non-ASCII letter: the full path.
    if len == 0
        || rest
            .get(len)
            .is_some_and(|&c| c == b'_' || c == b'$' || c.is_ascii_digit() || !c.is_ascii())
    {
        return false;
    }
    let mut buf = [0u8; 32];
    let Some(w) = lower(&rest[..len], &mut buf) else {
        return false;
    };
    if is_effect_word(w) {
        return false;
    }
    if matches!(w, b"select" | b"with" | b"values" | b"table") && has_temp(rest) {
        return false;
    }
    // Every name before a parenthesis needs a look: calls are where the effects hide. After
    // a comment's start the bytes before a `(` may not be the token before it: the full scan.
    if !rest.contains(&b'(') {
        return true;
    }
    let mut i = 0;
    while let Some(p) = memchr::memchr3(b'(', b'-', b'/', &rest[i..]) {
        let at = i + p;
        let surely = match rest[at] {
            b'(' => harmless_paren(rest, at),
            b'-' => rest.get(at + 1) != Some(&b'-'),
            _ => rest.get(at + 1) != Some(&b'*'),
        };
        if !surely {
            return false;
        }
        i = at + 1;
    }
    true
}

/// True if `b` contains `temp` in any case.
fn has_temp(b: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = memchr::memchr2(b't', b'T', &b[i..]) {
        let at = i + p;
        if b.len() - at >= 4 && b[at + 1..at + 4].eq_ignore_ascii_case(b"emp") {
            return true;
        }
        i = at + 1;
    }
    false
}

/// `w` in ASCII lower case in `buf`, if it fits.
fn lower<'b>(w: &[u8], buf: &'b mut [u8; 32]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..w.len())?;
    // A plain loop: short words, and no call to memcpy.
    for (o, c) in out.iter_mut().zip(w) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

/// A first word (lower case) of a statement that can have an effect: [`EFFECT_WORDS`].
fn is_effect_word(w: &[u8]) -> bool {
    matches!(
        w,
        b"set"
            | b"reset"
            | b"create"
            | b"prepare"
            | b"listen"
            | b"unlisten"
            | b"load"
            | b"declare"
            | b"close"
            | b"discard"
            | b"deallocate"
            | b"do"
            | b"call"
    )
}

/// Bytes after which a `(` opens an expression (never `-` or `/`: they may end a comment;
/// never `.` or a quote: they may end a qualified or quoted name).
fn operator(c: u8) -> bool {
    matches!(
        c,
        b'(' | b','
            | b'='
            | b'<'
            | b'>'
            | b'+'
            | b'*'
            | b'|'
            | b'&'
            | b'!'
            | b'~'
            | b'^'
            | b'%'
            | b'['
            | b':'
    )
}

/// Whether the `(` at `at` in a comment-free statement surely opens no call with an effect
/// or of an unknown function, judged from the bytes before it: an expression's parenthesis
/// (after an operator, a comma or a parenthesis), a keyword or type that takes one
/// ([`is_paren_word`]), a name after a word that introduces a relation or alias
/// ([`is_name_before_paren`]) or after a `)`, a `pg_catalog` function without an effect. Anything else
/// (a quoted or qualified name, a `$`, a non-ASCII byte) is left to the full scan.
fn harmless_paren(b: &[u8], at: usize) -> bool {
    let word_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
    let skip_space = |mut i: usize| {
        while i > 0 && b[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        i
    };
    let end = skip_space(at);
    let Some(&c) = end.checked_sub(1).and_then(|i| b.get(i)) else {
        return true;
    };
    if !word_byte(c) {
        return operator(c);
    }
    let mut start = end;
    while start > 0 && word_byte(b[start - 1]) {
        start -= 1;
    }
    let mut buf = [0u8; 32];
    let Some(name) = lower(&b[start..end], &mut buf) else {
        return false;
    };
    if name.contains(&b'$')
        || (start > 0 && !b[start - 1].is_ascii_whitespace() && !operator(b[start - 1]))
    {
        // Qualified (`schema.f`), quoted or glued to something else: the full scan decides.
        return false;
    }
    if is_paren_word(name) {
        return true;
    }
    let before = skip_space(start);
    if let Some(&c) = before.checked_sub(1).and_then(|i| b.get(i)) {
        if c == b')' {
            return true;
        }
        let mut w0 = before;
        while w0 > 0 && word_byte(b[w0 - 1]) {
            w0 -= 1;
        }
        let mut pbuf = [0u8; 32];
        if lower(&b[w0..before], &mut pbuf).is_some_and(is_name_before_paren) {
            return true;
        }
    }
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    is_catalog_function_lower(name) && call_effect(name).is_none() && name != "set_config"
}

/// Scan every statement of `sql`.
pub fn effect(sql: &str) -> Effect {
    if surely_no_effect(sql.as_bytes()) {
        return Effect::default();
    }
    effect_scanned(sql)
}

/// [`effect`] without the byte-level fast path (for a caller that already tried it).
pub fn effect_scanned(sql: &str) -> Effect {
    scan(sql, false)
}

/// The settings that `RESET name` statements in `sql` reset (lower case; `TIME ZONE` is
/// `timezone`). `RESET ALL` is not listed: see [`Effect::resets_all`].
pub fn reset_names(sql: &str) -> Vec<String> {
    let mut toks = Tokens::new(sql, &Lex::POSTGRES);
    let mut out = Vec::new();
    // Names reset up to the last commit of the string: a rollback undoes the rest.
    let mut settled = 0;
    let mut stmt: Vec<Tok> = Vec::new();
    let mut flush = |stmt: &mut Vec<Tok>| {
        let lead: Vec<&str> = stmt
            .iter()
            .take(4)
            .take_while(|t| t.kind == Kind::Word)
            .map(|t| t.text(sql))
            .collect();
        match tx_end(&lead) {
            TxEnd::Commit => settled = out.len(),
            TxEnd::Rollback => out.truncate(settled),
            TxEnd::RollbackTo | TxEnd::None => {}
        }
        let first = stmt.first().map(|t| t.text(sql));
        if first.is_some_and(|w| w.eq_ignore_ascii_case("RESET")) && stmt.len() > 1 {
            let name: String = stmt[1..]
                .iter()
                .map(|t| {
                    if t.kind == Kind::QIdent {
                        t.inner(sql)
                    } else {
                        t.text(sql)
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
                .replace(" . ", ".")
                .to_ascii_lowercase();
            let name = match name.as_str() {
                "time zone" => "timezone".to_string(),
                "all" => String::new(),
                _ => name,
            };
            if !name.is_empty() {
                out.push(name);
            }
        }
        stmt.clear();
    };
    while let Some(t) = toks.next_tok() {
        if t.kind == Kind::Semi {
            flush(&mut stmt);
        } else {
            stmt.push(t);
        }
    }
    flush(&mut stmt);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adds(sql: &str) -> State {
        effect(sql).adds
    }

    #[test]
    fn the_byte_fast_path_never_misses_an_effect() {
        let cases = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "select 1",
            "  \n\tSELECT 1 ;  ",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "SET search_path = x",
            "set session timezone = 'UTC'",
            "SETx = 1",
            "set_config",
            "select set_config('a', 'b', false)",
            "select pg_advisory_lock(1)",
            "select 1 into temp t",
            "LISTEN chan",
            "unlisten *",
            "PREPARE p AS SELECT 1",
            "create temp table t (a int)",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "RESET ALL",
            "DISCARD ALL",
            "DEALLOCATE ALL",
            "close all",
            "do $$ begin end $$",
            "call p()",
            "LOAD 'x'",
            "/* hi */ LOAD 'auto_explain'",
            "-- c\nSET a = 1",
            "(SELECT 1)",
            "\u{b}SET a = 1",
            "SÉT a = 1",
            "select 1; set a = 1",
            "select ';'",
            "",
            ";",
            "BEGIN",
        ];
        for sql in cases {
            if surely_no_effect(sql.as_bytes()) {
                let full = scan(sql, false);
                assert!(full.is_none(), "{sql:?}: {full:?}");
            }
        }
        for (sql, surely) in [
            ("SELECT lower(name), count(*) FROM t WHERE a IN (1,2) AND b=abs(c)", true),
            ("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)", true),
            ("SELECT x::numeric(10, 2) FROM unnest(a) u(x)", true),
            ("UPDATE t SET temp = temp + 1 WHERE id = 3", true),
            ("SELECT my_func(1)", false),
            ("SELECT f/* c */(1)", false),
            ("SELECT f --c\n(1)", false),
            ("SELECT \"f\"(1)", false),
            ("SELECT pg_catalog.lower(x)", false),
            ("SELECT set_config('a', 'b', false)", false),
            ("select pg_advisory_lock(1)", false),
            ("SELECT a FROM t WHERE b = 'temp'", false),
            ("SELECT x FROM t WHERE y=my_func(2)", false),
        ] {
            assert_eq!(surely_no_effect(sql.as_bytes()), surely, "{sql}");
            if surely {
                assert!(scan(sql, false).is_none(), "{sql}");
            }
        }
        assert!(surely_no_effect(cases[0].as_bytes()));
        assert!(surely_no_effect(b"  \n\tSELECT 1 ;  "));
        assert!(!surely_no_effect(b"SET a = 1"));
        assert!(!surely_no_effect(b"/* x */ SELECT 1"));
        assert!(!surely_no_effect(b"SELECT SET_CONFIG('a','b',false)"));
    }

    #[test]
    fn statements_that_leave_state_pin() {
        for (sql, kind) in [
            ("SET search_path = x", State::SETTINGS),
            ("set session timezone = 'UTC'", State::SETTINGS),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                State::SETTINGS,
            ),
            ("select 1 ; ; LISTEN chan;", State::LISTEN),
            ("select ';'; SET a = 1", State::SETTINGS),
            ("PREPARE p AS SELECT 1", State::PREPARED),
            ("create temp table t (a int)", State::TEMP),
            ("CREATE LOCAL TEMPORARY TABLE t (a int)", State::TEMP),
            ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", State::TEMP),
            (
                "create or replace function pg_temp.f() returns int language sql as 'select 1'",
                State::TEMP,
            ),
            ("CREATE TABLE pg_temp.t (a int)", State::TEMP),
            ("SELECT 1 AS a INTO TEMP t_leak", State::TEMP),
            ("select * into temporary table x from y", State::TEMP),
            ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", State::CURSOR),
            ("/* hi */ LOAD 'auto_explain'", State::OTHER),
            (
                "DO $$ BEGIN PERFORM set_config('a', 'b', false); END $$",
                State::SETTINGS,
            ),
            ("DO $$ BEGIN SET search_path = x; END $$", State::SETTINGS),
            (
                "do language plpgsql $b$ begin if true then listen c; end if; end $b$",
                State::LISTEN,
            ),
            ("DO $$ BEGIN EXECUTE 'SET a = ' || 1; END $$", State::OTHER),
            (
                "DO 'BEGIN PERFORM set_config(''a'', ''b'', false); END'",
                State::SETTINGS,
            ),
            ("CALL p(1)", State::OTHER),
            ("SET ROLE other", State::OTHER),
            ("SET SESSION AUTHORIZATION other", State::OTHER),
            (
                "SELECT set_config('statement_timeout', '1', false)",
                State::SETTINGS,
            ),
            (
                "select pg_catalog.set_config('search_path', 'x', false)",
                State::SETTINGS,
            ),
            ("SELECT \"set_config\"('a', 'b', false)", State::SETTINGS),
            (
                "select set_config('a', (select 'b'), is_local)",
                State::SETTINGS,
            ),
            (
                "UPDATE t SET v = set_config('a', 'b', false)",
                State::SETTINGS,
            ),
            ("SELECT pg_advisory_lock(42)", State::ADVISORY),
            ("select pg_try_advisory_lock_shared(1, 2)", State::ADVISORY),
            ("select setseed(0.5)", State::OTHER),
        ] {
            assert_eq!(adds(sql), kind, "{sql}");
        }
    }

    #[test]
    fn transaction_scoped_and_clearing_statements_do_not_pin() {
        for sql in [
            "SET LOCAL statement_timeout = 0",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET CONSTRAINTS ALL DEFERRED",
            "SELECT 'SET x = 1'",
            "BEGIN; UPDATE t SET a = 1; COMMIT",
            "create table settings (a int)",
            "create table temperature (a int)",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "select 1 -- ; SET x = 1",
            "select set_config('a', 'b', true)",
            "select set_config('a', 'b', TRUE), 1",
            "select pg_advisory_xact_lock(1)",
            "select pg_advisory_unlock(1)",
            "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;",
            "DECLARE c CURSOR FOR SELECT 1",
            "PREPARE TRANSACTION 'x'",
            "DISCARD ALL",
            "RESET search_path",
            "DEALLOCATE p",
            "select temp from readings",
            "DO_NOTHING",
            "DO $$ BEGIN UPDATE t SET a = 1; PERFORM set_config('a', 'b', true); END $$",
            "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM t; END $$",
        ] {
            assert!(adds(sql).is_empty(), "{sql}: {:?}", effect(sql));
        }
    }

    #[test]
    fn clearing_statements_clear_their_kind() {
        let e = effect("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;");
        assert_eq!(
            e.clears,
            State::ADVISORY
                .union(State::CURSOR)
                .union(State::LISTEN)
                .union(State::SETTINGS)
        );
        assert!(e.resets_settings);
        assert!(!e.drops_prepared);
        let d = effect("DISCARD ALL");
        assert_eq!(d.clears, State::ALL);
        assert!(d.resets_settings && d.drops_prepared);
        assert_eq!(effect("DISCARD TEMP").clears, State::TEMP);
        assert_eq!(effect("unlisten chan").clears, State::NONE);
        assert_eq!(effect("RESET work_mem").clears, State::NONE);
        assert!(effect("RESET work_mem").resets_settings);
        // A rollback after a clear may undo it; a clear after one stands.
        for sql in [
            "RESET ALL; ROLLBACK",
            "BEGIN; UNLISTEN *; ABORT",
            "SAVEPOINT a; DISCARD TEMP; rollback to a; COMMIT",
        ] {
            assert_eq!(effect(sql).clears, State::NONE, "{sql}");
        }
        assert_eq!(effect("ROLLBACK; RESET ALL").clears, State::SETTINGS);
        // A reset undone is no reset; one committed before the rollback stands, and so does
        // one before a savepoint rolled back to (its clear is not counted, to be safe).
        assert!(!effect("RESET ALL; ROLLBACK").resets_settings);
        let committed = effect("RESET ALL; COMMIT; BEGIN; ROLLBACK");
        assert_eq!(committed.clears, State::SETTINGS);
        assert!(committed.resets_settings && committed.resets_all);
        let to = effect("BEGIN; RESET ALL; SAVEPOINT a; ROLLBACK TO a; COMMIT");
        assert_eq!(to.clears, State::NONE);
        assert!(to.resets_settings && to.resets_all);
        let sql = "ABORT; RESET application_name; ROLLBACK; RESET work_mem";
        assert_eq!(reset_names(sql), ["work_mem"]);
        assert!(effect(sql).resets_settings && !effect(sql).resets_all);
        assert_eq!(
            reset_names("RESET a; END; RESET b; ROLLBACK TO s; RESET c; ROLLBACK"),
            ["a"]
        );
    }

    #[test]
    fn state_made_after_a_clear_in_one_string_stays() {
        let e = effect("DEALLOCATE ALL; PREPARE q AS SELECT 1");
        assert_eq!(e.adds, State::PREPARED);
        assert!(!e.clears.contains(State::PREPARED), "{e:?}");
        let e = effect("RESET ALL; SELECT pg_advisory_lock(1); CLOSE ALL");
        assert_eq!(e.adds, State::ADVISORY);
        assert_eq!(e.clears, State::SETTINGS.union(State::CURSOR));
        // Made, then cleared: cleared.
        let e = effect("PREPARE q AS SELECT 1; DEALLOCATE ALL");
        assert!(e.clears.contains(State::PREPARED));
    }

    #[test]
    fn calls_of_functions_outside_the_catalog_are_unknown() {
        for sql in [
            "SELECT my_func(1)",
            "select public.now()",
            "SELECT \"MyFunc\"()",
            "UPDATE t SET a = app.f(a)",
            "INSERT INTO t VALUES (myschema.next_id())",
            "DO $$ BEGIN PERFORM my_setup(); END $$",
            "WITH x AS (SELECT f()) SELECT * FROM x",
        ] {
            assert!(effect(sql).unknown, "{sql}");
            assert!(effect(sql).adds.is_empty(), "{sql}");
        }
        for sql in [
            "SELECT count(*), now(), coalesce(a, 1), lower(b) FROM t WHERE a IN (1, 2)",
            "SELECT pg_catalog.lower('A')",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
            "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET (a, b) = (1, 2)",
            "SELECT x::numeric(10, 2), y::varchar(20), z::character varying(3) FROM t",
            "SELECT * FROM unnest(ARRAY[1,2]) AS u(x), generate_series(1, 3) g(i)",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r",
            "SELECT sum(a) OVER (PARTITION BY b), count(*) FILTER (WHERE c) FROM t",
            "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'select 1'",
            "CREATE TABLE t (a numeric(10, 2) CHECK (a > 0), PRIMARY KEY (a))",
            "CREATE INDEX i ON t USING btree (a)",
            "COPY t (a, b) FROM STDIN",
            "PREPARE p (int) AS SELECT 1",
            "SELECT EXISTS (SELECT 1), ROW(1, 2), CAST(1 AS int), EXTRACT(year FROM now())",
        ] {
            assert!(!effect(sql).unknown, "{sql}");
        }
    }

    #[test]
    fn the_effect_word_match_is_the_list() {
        for w in EFFECT_WORDS {
            assert!(is_effect_word(w.to_ascii_lowercase().as_bytes()), "{w}");
        }
        assert!(!is_effect_word(b"select"));
    }

    #[test]
    fn asyncpg_reset_clears_without_pinning() {
        // asyncpg's reset on release (its UNLISTEN is inside a DO block).
        let sql = "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nDO $$\nBEGIN\n    PERFORM * FROM pg_listening_channels() LIMIT 1;\n    IF FOUND THEN\n        UNLISTEN *;\n    END IF;\nEND;\n$$;\nRESET ALL;";
        let e = effect(sql);
        assert!(e.adds.is_empty(), "{e:?}");
        assert_eq!(
            e.clears,
            State::ADVISORY
                .union(State::CURSOR)
                .union(State::LISTEN)
                .union(State::SETTINGS)
        );
        assert!(e.resets_settings);
    }

    #[test]
    fn reset_names_are_found() {
        assert_eq!(reset_names("RESET datestyle"), vec!["datestyle"]);
        assert_eq!(
            reset_names("reset \"DateStyle\"; RESET TIME ZONE; reset myext . x; RESET ALL"),
            vec!["datestyle", "timezone", "myext.x"]
        );
        assert!(reset_names("SELECT 1").is_empty());
        assert!(effect("RESET ALL").resets_all);
        assert!(!effect("RESET work_mem").resets_all);
    }

    #[test]
    fn discard_all_drops_prepared() {
        assert!(effect("DISCARD ALL").drops_prepared);
        assert!(effect("deallocate all").drops_prepared);
        assert!(effect("DEALLOCATE PREPARE ALL").drops_prepared);
        assert!(!effect("DEALLOCATE p1").drops_prepared);
    }

    #[test]
    fn bodies_and_strings_are_not_read() {
        assert!(adds("SELECT 'set_config(''a'',''b'',false)'").is_empty());
        assert!(adds("select $$ select pg_advisory_lock(1) $$").is_empty());
        assert!(adds("select 1 /* set_config('a','b',false) */").is_empty());
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for s in [
            "select set_config('a'",
            "set_config(",
            "'abc",
            "$a$ x",
            "(((",
            ")))",
        ] {
            let _ = effect(s);
        }
    }
}
