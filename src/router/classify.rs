//! Protocol-neutral statement classification: where may a SQL string run, and what does it do
//! to transaction state.
//!
//! # How it works
//!
//! 1. A hand-written token scanner (`Tokens`, in [`super::tokens`]: one byte-class table
//!    lookup per byte, no UTF-8 decoding) walks the text once, per dialect: it skips
//!    whitespace and comments (`--`, nested `/* */` for PostgreSQL; `#`, `-- `, flat `/* */`
//!    for MySQL, where `/*! ... */` and `/*M! ... */` are *code*, as the server runs them), and
//!    never looks inside strings (`'..'`, `E'..'`, dollar quotes; MySQL `".."` and backslash
//!    escapes) or quoted identifiers (`".."`, MySQL backticks). For PostgreSQL it follows the
//!    same skipping rules as [`super::lexer`] (a test checks that both split statements and
//!    find leading words alike), but that lexer yields only the leading words, without byte
//!    positions and without MySQL's rules, while this needs every token and where it is.
//! 2. The **fast path** decides from the first words of each statement (INSERT -> primary,
//!    SHOW -> replica, BEGIN READ ONLY -> replica, ...). For a read-shaped statement (SELECT,
//!    WITH, VALUES, TABLE, or any of them in parentheses) it scans the rest of the statement
//!    once for what makes a read a write (`read_scan`): a locking clause, `INTO`, a call of a
//!    write function (built-in list plus `write_functions` from the config, schema-qualified
//!    or not, quoted or not), MySQL user-variable assignment (`:=`) and
//!    `SQL_CALC_FOUND_ROWS`, MariaDB `NEXT VALUE FOR`. None of this allocates.
//! 3. Only a read-shaped statement that also contains `INSERT`, `UPDATE`, `DELETE` or `MERGE`
//!    as a word (outside a locking clause, not after a `.`, not a call such as MySQL's
//!    `INSERT(str, ..)`) goes to the **slow path** (`slow_path.rs`): `sqlparser` decides
//!    whether that is a data-modifying CTE (`WITH d AS (DELETE .. RETURNING *) SELECT ..` -> primary,
//!    [`Reason::WritingCte`]), a DML main statement (`WITH x AS (..) INSERT ..` ->
//!    [`Reason::Write`]) or just a column called `update` (a read). A parse failure routes to
//!    the primary ([`Reason::ParseError`]). Statements longer than [`MAX_PARSE_BYTES`] or
//!    [`MAX_PARSE_TOKENS`] are not parsed (bounded time and stack; sqlparser's AST is dropped
//!    recursively): they get the conservative verdict (primary, `Write` or `WritingCte`).
//! 4. **Cache** (`cache`: sharded, bounded, keyed by the whole text, never by a hash alone).
//!    Slow-path verdicts are kept by their statement text from the first parse. A string of
//!    [`CACHE_MIN_BYTES`] or more that starts like a read is looked up whole before it is
//!    scanned (for a long statement a lookup costs far less than the scan), and kept from its
//!    second sighting, so statements with inline literals, which never repeat, are never
//!    copied. Shorter strings, and those whose first word decides (INSERT ..), skip the cache.
//!    Lookups borrow the text; only an insertion allocates.
//! 5. A leading hint (`/* switchyard:primary */`, see [`super::hints`]) overrides the result:
//!    `primary` always; `replica` only for statements that are reads anyway or that the
//!    classifier could not understand ([`Reason::Unknown`], [`Reason::ParseError`]). A replica
//!    hint never sends a known write, lock, session or transaction statement to a replica.
//!
//! Anything not recognised goes to the primary ([`Reason::Unknown`]); an empty string (or only
//! comments) is [`Reason::Empty`], also primary.
//!
//! # Decisions worth knowing
//!
//! * `SELECT "nextval"('s')` is a call of `nextval` (a quoted identifier is still the function
//!   name), so it goes to the primary; quoted names are compared case-insensitively, which is
//!   conservative (`"NEXTVAL"(..)` also counts). A MySQL `"nextval"(..)` is a string, not a call.
//! * A data-modifying statement is only found at the top level of a WITH (or a parenthesized
//!   query), which is the only place PostgreSQL runs one; MySQL has none. Deeper ones that
//!   sqlparser accepts are server errors, not writes.
//! * `EXPLAIN` without ANALYZE never executes: replica (also for `EXPLAIN INSERT`, which a hot
//!   standby plans fine). `EXPLAIN ANALYZE x` and MariaDB `ANALYZE SELECT ..` classify `x`.
//! * `COPY t TO STDOUT` and `COPY (query) TO STDOUT` are reads when the query is; `COPY .. TO
//!   'file'|PROGRAM` writes on the server host: primary ([`Reason::Utility`]). `COPY .. FROM`
//!   is a write.
//! * `COMMIT AND CHAIN` / `ROLLBACK AND CHAIN` keep a transaction open: [`TxEffect::None`], so
//!   the session keeps tracking the open transaction. `PREPARE TRANSACTION` ends the session's
//!   transaction ([`TxEffect::End`]); `COMMIT PREPARED` / `ROLLBACK PREPARED` do not touch it.
//! * MySQL `SHOW WARNINGS|ERRORS|COUNT(*) ..|PROFILE|PROFILES`, `GET DIAGNOSTICS`,
//!   `@@warning_count`/`@@error_count`, `FOUND_ROWS()`, `ROW_COUNT()` and `SQL_CALC_FOUND_ROWS`
//!   describe the previous statement on the same connection: primary, not a replica.
//! * `SET switchyard.route ..` / `RESET switchyard.route` are [`Reason::Hint`] statements: the
//!   session answers them itself (see [`super::hints::route_setting`]).
//! * MySQL strings are scanned with backslash escapes (the default `sql_mode`); PostgreSQL
//!   strings without (`standard_conforming_strings = on`, the default since 9.1).
//! * A multi-statement string is split at every `;` outside quotes and comments (like the
//!   server's simple-query protocol). Its route is the primary unless every statement goes to a
//!   replica; its reason is that of the first statement sent to the primary (or of the first
//!   statement); its transaction effect is that of the first statement. COMMIT and ROLLBACK
//!   route to the primary, so `BEGIN READ ONLY; SELECT ..; COMMIT` in one string does too.

use super::cache::VerdictCache;
use super::hints;
use super::read_scan::{self, WriteFunctions};
use super::slow_path;
use super::tokens::{Cursor, Kind, Lex, Tok, Tokens};
pub use super::verdict::{Class, Dialect, Reason, Route, TxEffect};
use super::verdict::{READ, UNKNOWN};

/// A string at least this long that starts like a read (SELECT, WITH, VALUES, TABLE, `(`) is
/// looked up in the cache by its whole text before it is scanned, and kept on its second
/// sighting. Shorter strings are scanned every time: that costs about as much as a lookup,
/// and it keeps never-repeating statements with inline literals (pgbench's
/// `SELECT .. WHERE aid = 42`) off the cache's locks.
pub const CACHE_MIN_BYTES: usize = 128;
/// Read-shaped statements longer than this are not given to sqlparser (time and stack bound);
/// they get the conservative verdict instead. This also bounds a cache key.
pub const MAX_PARSE_BYTES: usize = 16 * 1024;
/// Same, in tokens: sqlparser builds operator chains iteratively but drops them recursively,
/// so the depth of its AST (and the stack used to drop it) grows with the token count.
pub const MAX_PARSE_TOKENS: usize = 2048;
/// EXPLAIN ANALYZE / COPY (query) / MariaDB ANALYZE nesting deeper than this is `Unknown`.
const MAX_NESTING: u32 = 4;

/// Classifies statements; cheap to share between threads (`Send + Sync`).
pub struct Classifier {
    dialect: Dialect,
    lex: &'static Lex,
    write_functions: WriteFunctions,
    cache_entries: usize,
    cache: VerdictCache<Class>,
    /// The operator's `[[routing.rule]]`s for this dialect, if any.
    rules: Option<super::rules::Rules>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("dialect", &self.dialect)
            .field("write_functions", &self.write_functions)
            .field("cache_entries", &self.cache_entries)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// `write_functions`: extra function names whose calls make a read a write (from the
    /// config). Matching ignores ASCII case and schema: `audit.log_event` and `log_event` both
    /// match any call of `log_event`. `cache_entries`: how many verdicts to keep (slow-path
    /// statements, and long read-shaped strings seen twice; 0 disables the cache).
    pub fn new(dialect: Dialect, write_functions: &[String], cache_entries: usize) -> Self {
        Classifier {
            dialect,
            lex: match dialect {
                Dialect::Postgres => &Lex::POSTGRES,
                Dialect::MySql => &Lex::MYSQL,
            },
            write_functions: WriteFunctions::new(write_functions),
            cache_entries,
            cache: VerdictCache::new(cache_entries),
            rules: None,
        }
    }

    /// With the operator's routing rules (pattern, route; see [`super::rules`]).
    pub fn with_rules(mut self, rules: &[(String, hints::Hint)]) -> Self {
        self.rules = super::rules::Rules::new(rules);
        self
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Classify a whole SQL string (may hold several statements). Multi-statement: Primary
    /// unless every statement is a read; tx = the effect of the FIRST statement, reason of the
    /// deciding statement (the first one sent to the primary, else the first one).
    ///
    /// A leading hint comment is already applied (see [`Class::with_hint`]).
    pub fn classify(&self, sql: &str) -> Class {
        let mut toks = Tokens::new(sql, self.lex);
        // The first token decides whether the whole string goes through the cache and whether
        // a hint comment can precede it; the statement loop then starts at it, without
        // reading the comments before it again.
        let first = toks.next_tok();
        let key = first
            .filter(|&t| self.whole_string_cached(sql, t))
            .map(|_| self.cache.hash(sql));
        if let Some(hash) = key {
            if let Some(c) = self.cache.get(hash, sql) {
                return c;
            }
        }
        if let Some(t) = first {
            toks.pos = t.start;
        }
        let mut c = self.classify_statements(toks);
        // A hint is a comment before the first token (`#` counts in either dialect, so a
        // PostgreSQL string may start with one as a token).
        let hinted = first.is_none_or(|t| t.start > 0 || t.kind == Kind::Punct)
            && match hints::leading_hint(sql) {
                Some(h) => {
                    c = c.with_hint(h);
                    true
                }
                None => false,
            };
        // The operator's rules, for a statement that carries no hint of its own.
        if let Some(h) = self
            .rules
            .as_ref()
            .filter(|_| !hinted)
            .and_then(|r| r.route(sql))
        {
            c = c.with_rule(h);
        }
        if let Some(hash) = key {
            self.cache.insert_if_seen(hash, sql, c);
        }
        c
    }

    /// Number of entries in the cache (slow-path statements, long read-shaped strings).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Whether `sql`, whose first token is `first`, is looked up whole ([`CACHE_MIN_BYTES`]).
    fn whole_string_cached(&self, sql: &str, first: Tok) -> bool {
        self.cache.is_enabled()
            && (CACHE_MIN_BYTES..=MAX_PARSE_BYTES).contains(&sql.len())
            && match first.kind {
                Kind::Open => true,
                Kind::Word => {
                    let w = first.text(sql);
                    ["SELECT", "WITH", "VALUES", "TABLE"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k))
                }
                _ => false,
            }
    }

    fn classify_statements(&self, mut toks: Tokens<'_>) -> Class {
        let sql = toks.text;
        let mut acc: Option<Class> = None;
        loop {
            toks.stmt_done = false;
            let mut cur = Cursor::new(&mut toks, false);
            let Some(first) = cur.next() else {
                if cur.toks.pos >= sql.len() {
                    break;
                }
                continue; // an empty statement (`;;`)
            };
            let c = self.statement(&mut cur, first, 0);
            let acc = acc.get_or_insert(c);
            if c.route == Route::Primary && acc.route == Route::Replica {
                acc.route = Route::Primary;
                acc.reason = c.reason;
            }
            if acc.route == Route::Primary {
                // Nothing later can change the route, the reason or the first tx effect.
                break;
            }
            cur.drain();
        }
        acc.unwrap_or(Class::primary(Reason::Empty))
    }

    /// One statement whose first token is `first`; consumes at most to its end.
    fn statement(&self, cur: &mut Cursor<'_, '_>, first: Tok, nesting: u32) -> Class {
        if nesting > MAX_NESTING {
            return UNKNOWN;
        }
        let text = cur.toks.text;
        match first.kind {
            Kind::Word => {}
            Kind::Open => return self.parenthesized(cur, first),
            _ => return UNKNOWN,
        }
        let w = first.text(text);
        if w.len() == 6 && w.eq_ignore_ascii_case("SELECT") {
            return self.read_shaped(cur, first); // the commonest statement, before the table
        }
        let my = self.dialect == Dialect::MySql;
        let mut buf = [0u8; 16];
        match upper(w, &mut buf) {
            b"SELECT" | b"WITH" | b"VALUES" | b"TABLE" => self.read_shaped(cur, first),
            b"SHOW" => {
                if my {
                    if let Some(w) = cur.next_word() {
                        if ["WARNINGS", "ERRORS", "COUNT", "PROFILE", "PROFILES"]
                            .iter()
                            .any(|k| w.eq_ignore_ascii_case(k))
                        {
                            return Class::primary(Reason::Session);
                        }
                    }
                }
                READ
            }
            b"EXPLAIN" => self.explain(cur, nesting),
            b"DESC" | b"DESCRIBE" if my => self.explain(cur, nesting),
            b"INSERT" | b"UPDATE" | b"DELETE" | b"MERGE" => Class::primary(Reason::Write),
            b"REPLACE" if my => Class::primary(Reason::Write),
            b"COPY" if !my => self.copy(cur, nesting),
            b"CREATE" | b"ALTER" | b"TRUNCATE" | b"GRANT" | b"REVOKE" | b"COMMENT"
            | b"SECURITY" | b"REASSIGN" | b"IMPORT" | b"RENAME" => Class::primary(Reason::Ddl),
            b"DROP" => {
                if my
                    && cur
                        .next_word()
                        .is_some_and(|w| w.eq_ignore_ascii_case("PREPARE"))
                {
                    Class::primary(Reason::Session)
                } else {
                    Class::primary(Reason::Ddl)
                }
            }
            b"ANALYZE" | b"ANALYSE" if my => self.mariadb_analyze(cur, nesting),
            b"VACUUM" | b"ANALYZE" | b"ANALYSE" | b"CLUSTER" | b"REINDEX" | b"CHECKPOINT"
            | b"REFRESH" | b"CALL" | b"DO" => Class::primary(Reason::Utility),
            b"OPTIMIZE" | b"REPAIR" | b"CHECK" | b"CHECKSUM" | b"FLUSH" | b"KILL" | b"PURGE"
            | b"INSTALL" | b"UNINSTALL" | b"CHANGE" | b"STOP" | b"BINLOG" | b"CACHE"
            | b"SHUTDOWN" | b"RESTART" | b"CLONE"
                if my =>
            {
                Class::primary(Reason::Utility)
            }
            b"LOCK" | b"UNLOCK" => Class::primary(Reason::Locking),
            b"NOTIFY" => Class::primary(Reason::Write),
            b"RESET" => self.setting(cur, first, nesting),
            b"LISTEN" | b"UNLISTEN" | b"EXECUTE" | b"DEALLOCATE" | b"DISCARD" | b"DECLARE"
            | b"FETCH" | b"MOVE" | b"CLOSE" => Class::primary(Reason::Session),
            b"USE" | b"HANDLER" if my => Class::primary(Reason::Session),
            b"GET" if my => Class::primary(Reason::Session),
            b"HELP" if my => READ,
            b"PREPARE" => {
                if !my
                    && cur
                        .next_word()
                        .is_some_and(|w| w.eq_ignore_ascii_case("TRANSACTION"))
                {
                    Class::new(Route::Primary, Reason::TransactionControl, TxEffect::End)
                } else {
                    Class::primary(Reason::Session)
                }
            }
            b"LOAD" => {
                if !my {
                    return Class::primary(Reason::Session);
                }
                match cur.next_word().map(|w| upper(w, &mut buf)) {
                    Some(b"DATA" | b"XML") => Class::primary(Reason::Write),
                    Some(b"INDEX") => Class::primary(Reason::Utility),
                    _ => UNKNOWN,
                }
            }
            b"SET" => self.setting(cur, first, nesting),
            b"BEGIN" => {
                if my {
                    return match cur.next_word() {
                        Some(w) if w.eq_ignore_ascii_case("NOT") => Class::primary(Reason::Utility),
                        _ => begin(false),
                    };
                }
                begin(cur.read_only_mode() == Some(true))
            }
            b"START" => match cur.next_word() {
                Some(w) if w.eq_ignore_ascii_case("TRANSACTION") => {
                    begin(cur.read_only_mode() == Some(true))
                }
                _ if my => Class::primary(Reason::Utility),
                _ => UNKNOWN,
            },
            b"COMMIT" | b"END" | b"ROLLBACK" | b"ABORT" => end(cur),
            b"SAVEPOINT" | b"RELEASE" => tx_control(TxEffect::Savepoint),
            b"XA" if my => match cur.next_word().map(|w| upper(w, &mut buf)) {
                Some(b"START" | b"BEGIN") => tx_control(TxEffect::Begin { read_only: false }),
                Some(b"COMMIT" | b"ROLLBACK") => tx_control(TxEffect::End),
                _ => tx_control(TxEffect::None),
            },
            _ => UNKNOWN,
        }
    }

    /// `(SELECT 1) UNION (SELECT 2)`: read-shaped if the first word is.
    fn parenthesized(&self, cur: &mut Cursor<'_, '_>, first: Tok) -> Class {
        loop {
            match cur.next() {
                Some(t) if t.kind == Kind::Open => continue,
                Some(t) if t.kind == Kind::Word => {
                    let mut buf = [0u8; 16];
                    return match upper(t.text(cur.toks.text), &mut buf) {
                        b"SELECT" | b"WITH" | b"VALUES" | b"TABLE" => self.read_shaped(cur, first),
                        _ => UNKNOWN,
                    };
                }
                _ => return UNKNOWN,
            }
        }
    }

    /// SELECT / WITH / VALUES / TABLE: scan the rest; parse only if a DML word appears.
    fn read_shaped(&self, cur: &mut Cursor<'_, '_>, first: Tok) -> Class {
        let f = read_scan::scan(cur, &self.write_functions, self.dialect == Dialect::MySql);
        if !(f.dml_top || f.dml_nested) {
            return f.verdict();
        }
        let text = &cur.toks.text[first.start..cur.last_end.max(first.end)];
        let conservative = Class::primary(if f.dml_top {
            Reason::Write
        } else {
            Reason::WritingCte
        });
        if text.len() > MAX_PARSE_BYTES || f.tokens > MAX_PARSE_TOKENS {
            return conservative;
        }
        // Parsing allocates anyway: keep its verdict from the first sighting.
        let hash = self.cache.hash(text);
        if let Some(c) = self.cache.get(hash, text) {
            return c;
        }
        let c = slow_path::parse(self.dialect, text, &f);
        self.cache.insert(hash, text, c);
        c
    }

    /// EXPLAIN (PostgreSQL and MySQL), MySQL DESCRIBE/DESC.
    fn explain(&self, cur: &mut Cursor<'_, '_>, nesting: u32) -> Class {
        let text = cur.toks.text;
        let mut analyze = false;
        let mut tok = cur.next();
        if self.dialect == Dialect::Postgres {
            if tok.is_some_and(|t| t.kind == Kind::Open) {
                // EXPLAIN (option [value], ...)
                let mut last_was_analyze = false;
                loop {
                    match cur.next() {
                        None => return READ,
                        Some(t) if t.kind == Kind::Close => break,
                        Some(t) if t.kind == Kind::Word => {
                            let w = t.text(text);
                            if last_was_analyze {
                                if ["FALSE", "OFF", "0", "NO"]
                                    .iter()
                                    .any(|k| w.eq_ignore_ascii_case(k))
                                {
                                    analyze = false;
                                }
                                last_was_analyze = false;
                            } else if w.eq_ignore_ascii_case("ANALYZE")
                                || w.eq_ignore_ascii_case("ANALYSE")
                            {
                                analyze = true;
                                last_was_analyze = true;
                            }
                        }
                        Some(_) => last_was_analyze = false,
                    }
                }
                tok = cur.next();
            } else {
                while let Some(t) = tok.filter(|t| t.kind == Kind::Word) {
                    let w = t.text(text);
                    if w.eq_ignore_ascii_case("ANALYZE") || w.eq_ignore_ascii_case("ANALYSE") {
                        analyze = true;
                    } else if !w.eq_ignore_ascii_case("VERBOSE") {
                        break;
                    }
                    tok = cur.next();
                }
            }
        } else {
            // MySQL: EXPLAIN [ANALYZE] [FORMAT = x] [EXTENDED | PARTITIONS] stmt
            while let Some(t) = tok.filter(|t| t.kind == Kind::Word) {
                let w = t.text(text);
                if w.eq_ignore_ascii_case("ANALYZE") {
                    analyze = true;
                } else if w.eq_ignore_ascii_case("FORMAT") {
                    if cur.next().is_some_and(|t| t.kind == Kind::Punct) {
                        cur.next();
                    }
                } else if !(w.eq_ignore_ascii_case("EXTENDED")
                    || w.eq_ignore_ascii_case("PARTITIONS"))
                {
                    break;
                }
                tok = cur.next();
            }
        }
        match tok {
            Some(t) if analyze => {
                let inner = self.statement(cur, t, nesting + 1);
                Class::new(inner.route, inner.reason, TxEffect::None)
            }
            _ => READ,
        }
    }

    /// MariaDB `ANALYZE [FORMAT=JSON] <statement>` runs the statement; `ANALYZE TABLE` is
    /// maintenance.
    fn mariadb_analyze(&self, cur: &mut Cursor<'_, '_>, nesting: u32) -> Class {
        let text = cur.toks.text;
        let mut tok = cur.next();
        if tok.is_some_and(|t| t.kind == Kind::Word && t.text(text).eq_ignore_ascii_case("FORMAT"))
        {
            if cur.next().is_some_and(|t| t.kind == Kind::Punct) {
                cur.next();
            }
            tok = cur.next();
        }
        let Some(t) = tok else {
            return Class::primary(Reason::Utility);
        };
        let mut buf = [0u8; 16];
        match (t.kind, upper(t.text(text), &mut buf)) {
            (Kind::Open, _)
            | (
                Kind::Word,
                b"SELECT" | b"WITH" | b"VALUES" | b"INSERT" | b"UPDATE" | b"DELETE" | b"REPLACE",
            ) => {
                let inner = self.statement(cur, t, nesting + 1);
                Class::new(inner.route, inner.reason, TxEffect::None)
            }
            _ => Class::primary(Reason::Utility),
        }
    }

    /// PostgreSQL COPY.
    fn copy(&self, cur: &mut Cursor<'_, '_>, nesting: u32) -> Class {
        let text = cur.toks.text;
        let mut inner = None;
        let mut depth = 0u32;
        let mut first = true;
        while let Some(t) = cur.next() {
            match t.kind {
                Kind::Open if first => {
                    let mut sub = Cursor::new(cur.toks, true);
                    inner = Some(match sub.next() {
                        Some(t) => {
                            let c = self.statement(&mut sub, t, nesting + 1);
                            sub.drain();
                            c
                        }
                        None => UNKNOWN,
                    });
                    if cur.toks.stmt_done {
                        return UNKNOWN;
                    }
                }
                Kind::Open => depth += 1,
                Kind::Close => depth = depth.saturating_sub(1),
                Kind::Word if depth == 0 => {
                    let w = t.text(text);
                    if w.eq_ignore_ascii_case("FROM") {
                        return Class::primary(Reason::Write);
                    }
                    if w.eq_ignore_ascii_case("TO") {
                        let stdout = cur
                            .next_word()
                            .is_some_and(|w| w.eq_ignore_ascii_case("STDOUT"));
                        return match inner {
                            _ if !stdout => Class::primary(Reason::Utility),
                            Some(c) => Class::new(c.route, c.reason, TxEffect::None),
                            None => READ,
                        };
                    }
                }
                _ => {}
            }
            first = false;
        }
        UNKNOWN
    }

    /// SET / RESET (first word `first`).
    fn setting(&self, cur: &mut Cursor<'_, '_>, first: Tok, nesting: u32) -> Class {
        let text = cur.toks.text;
        let is_set = first.text(text).eq_ignore_ascii_case("SET");
        let mut w = cur.next_word();
        let mut scoped = false;
        if is_set {
            if let Some(x) = w {
                if ["SESSION", "LOCAL", "GLOBAL", "PERSIST", "PERSIST_ONLY"]
                    .iter()
                    .any(|k| x.eq_ignore_ascii_case(k))
                {
                    scoped = true;
                    w = cur.next_word();
                }
            }
        }
        match w {
            Some(x)
                if is_set
                    && !scoped
                    && self.dialect == Dialect::MySql
                    && x.eq_ignore_ascii_case("STATEMENT") =>
            {
                self.set_statement(cur, nesting)
            }
            Some(x) if is_set && x.eq_ignore_ascii_case("TRANSACTION") => {
                if scoped {
                    // MySQL SET SESSION TRANSACTION ..: a session characteristic.
                    return Class::primary(Reason::Session);
                }
                if cur.read_only_mode() == Some(true) {
                    Class::new(
                        Route::Replica,
                        Reason::TransactionControl,
                        TxEffect::SetTransactionReadOnly,
                    )
                } else {
                    tx_control(TxEffect::None)
                }
            }
            Some(x) if x.eq_ignore_ascii_case("switchyard") => {
                cur.drain();
                let stmt = &text[first.start..cur.last_end.max(first.end)];
                if hints::route_setting(stmt).is_some() {
                    Class::primary(Reason::Hint)
                } else {
                    Class::primary(Reason::Session)
                }
            }
            // MySQL RESET MASTER|REPLICA|QUERY CACHE|PERSIST: administration.
            _ if !is_set && self.dialect == Dialect::MySql => Class::primary(Reason::Utility),
            _ => Class::primary(Reason::Session),
        }
    }

    /// MariaDB `SET STATEMENT var = value [, ..] FOR statement`: the variables hold for that
    /// one statement (MariaDB Connector/J's and the Node.js connector's query timeout is
    /// `max_statement_time` set so), which goes where it would go alone, with the hint
    /// comment it starts with, if any (the prefix is put before the application's text).
    fn set_statement(&self, cur: &mut Cursor<'_, '_>, nesting: u32) -> Class {
        let text = cur.toks.text;
        let mut depth = 0u32;
        while let Some(t) = cur.next() {
            match t.kind {
                Kind::Open => depth += 1,
                Kind::Close => depth = depth.saturating_sub(1),
                Kind::Word if depth == 0 && t.text(text).eq_ignore_ascii_case("FOR") => {
                    let Some(inner) = cur.next() else {
                        break;
                    };
                    let c = self.statement(cur, inner, nesting + 1);
                    return hints::leading_hint(&text[t.end..inner.start])
                        .map_or(c, |h| c.with_hint(h));
                }
                _ => {}
            }
        }
        // No statement after the variables: the server refuses it.
        Class::primary(Reason::Session)
    }
}

fn begin(read_only: bool) -> Class {
    Class::new(
        if read_only {
            Route::Replica
        } else {
            Route::Primary
        },
        Reason::TransactionControl,
        TxEffect::Begin { read_only },
    )
}

fn tx_control(tx: TxEffect) -> Class {
    Class::new(Route::Primary, Reason::TransactionControl, tx)
}

/// COMMIT / END / ROLLBACK / ABORT and what follows.
fn end(cur: &mut Cursor<'_, '_>) -> Class {
    let text = cur.toks.text;
    let mut prev_and = false;
    let mut prev_no = false;
    while let Some(t) = cur.next() {
        if t.kind != Kind::Word {
            prev_and = false;
            continue;
        }
        let w = t.text(text);
        if w.eq_ignore_ascii_case("TO") {
            return tx_control(TxEffect::Savepoint);
        }
        if w.eq_ignore_ascii_case("PREPARED") {
            return tx_control(TxEffect::None);
        }
        if w.eq_ignore_ascii_case("CHAIN") && prev_and && !prev_no {
            return tx_control(TxEffect::None);
        }
        let is_and = w.eq_ignore_ascii_case("AND");
        prev_no = !is_and && prev_and && w.eq_ignore_ascii_case("NO");
        prev_and = is_and || prev_no;
    }
    tx_control(TxEffect::End)
}

/// `w` in ASCII upper case in `buf`, or `b""` if it is longer than `buf`.
fn upper<'b>(w: &str, buf: &'b mut [u8; 16]) -> &'b [u8] {
    let b = w.as_bytes();
    if b.len() > buf.len() {
        return b"";
    }
    for (d, s) in buf.iter_mut().zip(b) {
        *d = s.to_ascii_uppercase();
    }
    &buf[..b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reason::*;

    const PG: u8 = 1;
    const MY: u8 = 2;
    const BOTH: u8 = 3;
    const NONE: TxEffect = TxEffect::None;
    const BEGIN_RW: TxEffect = TxEffect::Begin { read_only: false };
    const BEGIN_RO: TxEffect = TxEffect::Begin { read_only: true };
    const END: TxEffect = TxEffect::End;
    const SP: TxEffect = TxEffect::Savepoint;
    const STRO: TxEffect = TxEffect::SetTransactionReadOnly;

    fn route_of(reason: Reason, tx: TxEffect) -> Route {
        match (reason, tx) {
            (Read, _) | (_, TxEffect::Begin { read_only: true }) | (_, STRO) => Route::Replica,
            _ => Route::Primary,
        }
    }

    /// (dialects, sql, reason, tx); the route follows from the reason (see `route_of`), except
    /// where `ROUTED` lists it explicitly.
    const TABLE: &[(u8, &str, Reason, TxEffect)] = &[
        // --- plain reads
        (BOTH, "SELECT 1", Read, NONE),
        (BOTH, "select * from t where id = 1", Read, NONE),
        (BOTH, "SELECT a, b FROM t WHERE id = $1", Read, NONE),
        (BOTH, "  \n\tSELECT 1  ", Read, NONE),
        (BOTH, "SELECT 1;", Read, NONE),
        (BOTH, "/* x */ select 1", Read, NONE),
        (BOTH, "-- c\nSELECT 1", Read, NONE),
        (PG, "/* a /* nested */ b */ SELECT 1", Read, NONE),
        (BOTH, "SELECT count(*), max(x), coalesce(a, b) FROM t", Read, NONE),
        (BOTH, "SELECT 'for update' FROM t", Read, NONE),
        (BOTH, "SELECT 'nextval(1)', 'delete from t' FROM t", Read, NONE),
        (BOTH, "SELECT 1 -- FOR UPDATE", Read, NONE),
        (BOTH, "SELECT 1 /* FOR UPDATE */", Read, NONE),
        (PG, "SELECT $$ delete from t; $$", Read, NONE),
        (PG, "SELECT $body$ DELETE FROM t $body$ AS x", Read, NONE),
        (PG, "SELECT $a$ $b$ insert $b$ $a$", Read, NONE),
        (PG, "SELECT E'it\\'s; DELETE FROM t' FROM t", Read, NONE),
        (PG, "SELECT 'it''s; for update'", Read, NONE),
        (PG, "SELECT \"for update\", \"into\" FROM t", Read, NONE),
        (PG, "SELECT \"update\" FROM t", Read, NONE),
        (PG, "SELECT t.update, t.delete FROM t", Read, NONE),
        (BOTH, "SELECT update FROM t", Read, NONE),
        (BOTH, "SELECT * FROM t WHERE merge = 1", Read, NONE),
        (BOTH, "SELECT pg_sleep(1), sleep(1), now()", Read, NONE),
        (BOTH, "SELECT my_nextval(1), nextval_x FROM t", Read, NONE),
        (BOTH, "SELECT nextval FROM t", Read, NONE),
        (PG, "SELECT txid_current_if_assigned()", Read, NONE),
        (PG, "SELECT substring(x FROM 1 FOR 2) FROM t", Read, NONE),
        (PG, "SELECT * FROM t ORDER BY 1 FETCH FIRST 5 ROWS ONLY", Read, NONE),
        (PG, "SELECT $1::int", Read, NONE),
        (BOTH, "(SELECT 1) UNION (SELECT 2)", Read, NONE),
        (BOTH, "((SELECT 1))", Read, NONE),
        (BOTH, "VALUES (1)", Read, NONE),
        (BOTH, "VALUES (1), (2)", Read, NONE),
        (BOTH, "TABLE x", Read, NONE),
        (BOTH, "SELECT 1; SELECT 2", Read, NONE),
        (BOTH, "SELECT 1;;; SELECT 2;", Read, NONE),
        (BOTH, "WITH x AS (SELECT 1) SELECT * FROM x", Read, NONE),
        (PG, "WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n+1 FROM t WHERE n < 9) SELECT sum(n) FROM t", Read, NONE),
        (PG, "WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x", Read, NONE),
        (BOTH, "WITH x AS (SELECT update FROM t) SELECT * FROM x", Read, NONE),
        (BOTH, "SELECT * FROM t WHERE id IN (SELECT id FROM u)", Read, NONE),
        (MY, "SELECT INSERT('abc', 1, 2, 'x'), REPLACE(a, 'b', 'c') FROM t", Read, NONE),
        (MY, "SELECT `update`, `for` FROM `t`", Read, NONE),
        (MY, "SELECT \"nextval\"('s')", Read, NONE),
        (MY, "SELECT 'a\\' FOR UPDATE' FROM t", Read, NONE),
        (MY, "SELECT 1 # FOR UPDATE", Read, NONE),
        (MY, "SELECT 1 -- FOR UPDATE", Read, NONE),
        (MY, "SELECT /*+ MAX_EXECUTION_TIME(100) */ a FROM t", Read, NONE),
        (MY, "SELECT @@version, @x", Read, NONE),
        (MY, "SELECT a FROM t LIMIT 1; SELECT b FROM u", Read, NONE),
        // --- reads that are writes
        (BOTH, "SELECT * FROM t FOR UPDATE", Locking, NONE),
        (PG, "SELECT * FROM t FOR NO KEY UPDATE OF t SKIP LOCKED", Locking, NONE),
        (PG, "SELECT * FROM t FOR SHARE", Locking, NONE),
        (PG, "SELECT * FROM t FOR KEY SHARE NOWAIT", Locking, NONE),
        (PG, "SELECT * FROM t FOR /* c */ UPDATE", Locking, NONE),
        (PG, "SELECT * FROM (SELECT * FROM t FOR UPDATE) s", Locking, NONE),
        (PG, "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", Locking, NONE),
        (MY, "SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE", Locking, NONE),
        (MY, "SELECT * FROM t FOR SHARE", Locking, NONE),
        (MY, "SELECT * FROM t /*!50000 FOR UPDATE */", Locking, NONE),
        (MY, "SELECT 1--1 FOR UPDATE", Locking, NONE),
        (BOTH, "SELECT * INTO new_t FROM t", SelectInto, NONE),
        (MY, "SELECT a INTO @x FROM t LIMIT 1", SelectInto, NONE),
        (MY, "SELECT a FROM t INTO OUTFILE '/tmp/x'", SelectInto, NONE),
        (BOTH, "SELECT nextval('s')", WriteFunction, NONE),
        (PG, "select pg_catalog.nextval('s')", WriteFunction, NONE),
        (PG, "SELECT NEXTVAL ('s')", WriteFunction, NONE),
        (PG, "SELECT \"nextval\"('s')", WriteFunction, NONE),
        (PG, "SELECT \"pg_catalog\".\"setval\"('s', 1)", WriteFunction, NONE),
        (PG, "SELECT currval('s'), lastval()", WriteFunction, NONE),
        (PG, "SELECT id FROM t WHERE x = (SELECT nextval('s'))", WriteFunction, NONE),
        (PG, "SELECT pg_advisory_lock(1)", WriteFunction, NONE),
        (PG, "SELECT pg_try_advisory_xact_lock(1, 2)", WriteFunction, NONE),
        (PG, "SELECT pg_advisory_unlock_all()", WriteFunction, NONE),
        (PG, "SELECT pg_notify('c', 'x')", WriteFunction, NONE),
        (PG, "SELECT set_config('search_path', '', false)", WriteFunction, NONE),
        (PG, "SELECT pg_terminate_backend(123)", WriteFunction, NONE),
        (PG, "SELECT pg_create_logical_replication_slot('s', 'pgoutput')", WriteFunction, NONE),
        (PG, "SELECT lo_import('/tmp/x')", WriteFunction, NONE),
        (PG, "SELECT txid_current()", WriteFunction, NONE),
        (PG, "SELECT pg_current_xact_id()", WriteFunction, NONE),
        (PG, "VALUES (nextval('s'))", WriteFunction, NONE),
        (PG, "WITH x AS (SELECT nextval('s')) SELECT * FROM x", WriteFunction, NONE),
        (MY, "SELECT GET_LOCK('a', 1)", WriteFunction, NONE),
        (MY, "SELECT release_lock('a')", WriteFunction, NONE),
        (MY, "SELECT LAST_INSERT_ID()", WriteFunction, NONE),
        (MY, "SELECT `last_insert_id`()", WriteFunction, NONE),
        (MY, "SELECT @@IDENTITY", WriteFunction, NONE),
        (MY, "SELECT FOUND_ROWS()", WriteFunction, NONE),
        (MY, "SELECT ROW_COUNT()", WriteFunction, NONE),
        (MY, "SELECT MASTER_POS_WAIT('f', 4)", WriteFunction, NONE),
        (MY, "SELECT NEXT VALUE FOR s", WriteFunction, NONE),
        (MY, "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 5", Session, NONE),
        (MY, "SELECT @x := 1", Session, NONE),
        (MY, "SELECT @@warning_count", Session, NONE),
        // --- writing CTEs and DML in read-shaped statements (slow path)
        (PG, "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", WritingCte, NONE),
        (PG, "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x", WritingCte, NONE),
        (PG, "with x as (update t set a = 1 returning id) select * from x", WritingCte, NONE),
        (PG, "WITH a AS (SELECT 1), b AS (DELETE FROM t RETURNING *) SELECT * FROM a, b", WritingCte, NONE),
        (BOTH, "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", Write, NONE),
        (PG, "WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved", Write, NONE),
        (BOTH, "WITH x AS (SELECT 1) DELETE FROM t WHERE a IN (SELECT * FROM x)", Write, NONE),
        (BOTH, "WITH x AS (SELECT 1) UPDATE t SET a = 1", Write, NONE),
        (PG, "SELECT * FROM t WHERE (delete", ParseError, NONE),
        // --- DML
        (BOTH, "INSERT INTO t VALUES (1)", Write, NONE),
        (BOTH, "insert into t (a) values ('select')", Write, NONE),
        (BOTH, "UPDATE t SET a = 1", Write, NONE),
        (BOTH, "DELETE FROM t", Write, NONE),
        (PG, "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", Write, NONE),
        (MY, "REPLACE INTO t VALUES (1)", Write, NONE),
        (MY, "LOAD DATA INFILE '/x' INTO TABLE t", Write, NONE),
        (MY, "LOAD XML LOCAL INFILE 'x' INTO TABLE t", Write, NONE),
        (PG, "COPY t FROM STDIN", Write, NONE),
        (PG, "COPY t (a, b) FROM STDIN WITH (FORMAT csv)", Write, NONE),
        (PG, "NOTIFY chan, 'x'", Write, NONE),
        (BOTH, "SELECT 1; DELETE FROM t", Write, NONE),
        (BOTH, "SELECT 1; SELECT 2; UPDATE t SET a = 1; SELECT 3", Write, NONE),
        (PG, "/* x */ -- y\n /* z */ INSERT INTO t DEFAULT VALUES", Write, NONE),
        // --- COPY to the client
        (PG, "COPY t TO STDOUT", Read, NONE),
        (PG, "copy t (a, b) to stdout with (format csv)", Read, NONE),
        (PG, "COPY (SELECT * FROM t) TO STDOUT", Read, NONE),
        (PG, "COPY (SELECT a FROM t WHERE b = 'x') TO STDOUT (FORMAT binary)", Read, NONE),
        (PG, "COPY (DELETE FROM t RETURNING *) TO STDOUT", Write, NONE),
        (PG, "COPY (SELECT nextval('s')) TO STDOUT", WriteFunction, NONE),
        (PG, "COPY t TO '/tmp/t.csv'", Utility, NONE),
        (PG, "COPY t TO PROGRAM 'gzip > /tmp/x'", Utility, NONE),
        (PG, "COPY (SELECT 1", Unknown, NONE),
        // --- EXPLAIN
        (BOTH, "EXPLAIN SELECT * FROM t", Read, NONE),
        (PG, "EXPLAIN DELETE FROM t", Read, NONE),
        (PG, "EXPLAIN VERBOSE UPDATE t SET a = 1", Read, NONE),
        (PG, "EXPLAIN ANALYZE SELECT * FROM t", Read, NONE),
        (PG, "EXPLAIN ANALYZE DELETE FROM t", Write, NONE),
        (PG, "EXPLAIN ANALYSE VERBOSE INSERT INTO t VALUES (1)", Write, NONE),
        (PG, "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", Write, NONE),
        (PG, "EXPLAIN (FORMAT JSON, ANALYZE true) UPDATE t SET a = 1", Write, NONE),
        (PG, "EXPLAIN (ANALYZE false) DELETE FROM t", Read, NONE),
        (PG, "EXPLAIN (ANALYZE off, COSTS) DELETE FROM t", Read, NONE),
        (PG, "EXPLAIN (ANALYZE) SELECT * FROM t FOR UPDATE", Locking, NONE),
        (PG, "EXPLAIN ANALYZE WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", WritingCte, NONE),
        (PG, "EXPLAIN ANALYZE EXPLAIN ANALYZE EXPLAIN ANALYZE EXPLAIN ANALYZE EXPLAIN ANALYZE SELECT 1", Unknown, NONE),
        (MY, "EXPLAIN FORMAT=JSON DELETE FROM t", Read, NONE),
        (MY, "EXPLAIN ANALYZE SELECT * FROM t", Read, NONE),
        (MY, "EXPLAIN ANALYZE FORMAT=TREE DELETE FROM t", Write, NONE),
        (MY, "DESC t", Read, NONE),
        (MY, "DESCRIBE t", Read, NONE),
        (MY, "ANALYZE TABLE t", Utility, NONE),
        (MY, "ANALYZE FORMAT=JSON SELECT * FROM t", Read, NONE),
        (MY, "ANALYZE DELETE FROM t", Write, NONE),
        // --- SHOW and friends
        (BOTH, "SHOW search_path", Read, NONE),
        (PG, "SHOW ALL", Read, NONE),
        (MY, "SHOW TABLES", Read, NONE),
        (MY, "SHOW CREATE TABLE t", Read, NONE),
        (MY, "SHOW WARNINGS", Session, NONE),
        (MY, "SHOW COUNT(*) ERRORS", Session, NONE),
        (MY, "HELP 'select'", Read, NONE),
        // --- DDL
        (BOTH, "CREATE TABLE t (a int)", Ddl, NONE),
        (BOTH, "create temporary table t (a int)", Ddl, NONE),
        (BOTH, "ALTER TABLE t ADD COLUMN b int", Ddl, NONE),
        (BOTH, "DROP TABLE t", Ddl, NONE),
        (BOTH, "TRUNCATE t", Ddl, NONE),
        (BOTH, "GRANT SELECT ON t TO u", Ddl, NONE),
        (BOTH, "REVOKE ALL ON t FROM u", Ddl, NONE),
        (PG, "COMMENT ON TABLE t IS 'x'", Ddl, NONE),
        (PG, "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql", Ddl, NONE),
        (PG, "CREATE TABLE t AS SELECT * FROM u", Ddl, NONE),
        (MY, "RENAME TABLE a TO b", Ddl, NONE),
        // --- utility and procedural
        (PG, "VACUUM t", Utility, NONE),
        (PG, "VACUUM (ANALYZE) t", Utility, NONE),
        (PG, "ANALYZE t", Utility, NONE),
        (PG, "CLUSTER t", Utility, NONE),
        (PG, "REINDEX TABLE t", Utility, NONE),
        (PG, "CHECKPOINT", Utility, NONE),
        (PG, "REFRESH MATERIALIZED VIEW CONCURRENTLY mv", Utility, NONE),
        (BOTH, "CALL p(1)", Utility, NONE),
        (PG, "DO $$ BEGIN DELETE FROM t; END $$", Utility, NONE),
        (PG, "DO $body$ BEGIN PERFORM 1; COMMIT; END $body$ LANGUAGE plpgsql", Utility, NONE),
        (MY, "DO SLEEP(1)", Utility, NONE),
        (MY, "OPTIMIZE TABLE t", Utility, NONE),
        (MY, "FLUSH PRIVILEGES", Utility, NONE),
        (MY, "KILL 42", Utility, NONE),
        (MY, "RESET QUERY CACHE", Utility, NONE),
        (MY, "LOAD INDEX INTO CACHE t", Utility, NONE),
        (MY, "BEGIN NOT ATOMIC SELECT 1; END", Utility, NONE),
        // --- locking statements
        (PG, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", Locking, NONE),
        (PG, "LOCK t", Locking, NONE),
        (MY, "LOCK TABLES t READ", Locking, NONE),
        (MY, "UNLOCK TABLES", Locking, NONE),
        // --- session state
        (BOTH, "SET search_path = x", Session, NONE),
        (PG, "SET LOCAL statement_timeout = 0", Session, NONE),
        (PG, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", Session, NONE),
        (PG, "RESET ALL", Session, NONE),
        (BOTH, "PREPARE p AS SELECT 1", Session, NONE),
        (BOTH, "EXECUTE p", Session, NONE),
        (BOTH, "DEALLOCATE p", Session, NONE),
        (PG, "DEALLOCATE ALL", Session, NONE),
        (PG, "LISTEN chan", Session, NONE),
        (PG, "UNLISTEN *", Session, NONE),
        (PG, "DISCARD ALL", Session, NONE),
        (PG, "DECLARE c CURSOR WITH HOLD FOR SELECT 1", Session, NONE),
        (PG, "FETCH 10 FROM c", Session, NONE),
        (PG, "MOVE NEXT IN c", Session, NONE),
        (PG, "CLOSE c", Session, NONE),
        (PG, "LOAD 'auto_explain'", Session, NONE),
        (MY, "USE db", Session, NONE),
        (MY, "SET NAMES utf8mb4", Session, NONE),
        (MY, "SET STATEMENT max_statement_time=20 FOR SELECT * FROM t", Read, NONE),
        (MY, "set statement max_statement_time = 1.5, sql_mode = concat(@@sql_mode, ',ANSI') for select 1", Read, NONE),
        (MY, "SET STATEMENT max_statement_time=20 FOR UPDATE t SET a = 1", Write, NONE),
        (MY, "SET STATEMENT max_statement_time=20 FOR SELECT * FROM t FOR UPDATE", Locking, NONE),
        (MY, "SET STATEMENT max_statement_time=20 FOR SELECT 1; INSERT INTO t VALUES (1)", Write, NONE),
        (MY, "SET STATEMENT max_statement_time=20 FOR SET @x = 1", Session, NONE),
        (MY, "SET STATEMENT max_statement_time=20", Session, NONE),
        (MY, "SET SESSION STATEMENT max_statement_time=20 FOR SELECT 1", Session, NONE),
        (PG, "SET STATEMENT x = 1 FOR SELECT 1", Session, NONE),
        (MY, "SET @x = 1", Session, NONE),
        (MY, "SET autocommit = 0", Session, NONE),
        (MY, "SET SESSION TRANSACTION READ ONLY", Session, NONE),
        (MY, "/*!40101 SET NAMES utf8 */", Session, NONE),
        (MY, "PREPARE s FROM 'SELECT 1'", Session, NONE),
        (MY, "DROP PREPARE s", Session, NONE),
        (MY, "HANDLER t OPEN", Session, NONE),
        (MY, "GET DIAGNOSTICS @n = NUMBER", Session, NONE),
        (BOTH, "SET switchyard.route = 'replica'", Hint, NONE),
        (BOTH, "RESET switchyard.route", Hint, NONE),
        (BOTH, "SET switchyard.route = 'elsewhere'", Session, NONE),
        // --- transaction control
        (BOTH, "BEGIN", TransactionControl, BEGIN_RW),
        (BOTH, "begin work", TransactionControl, BEGIN_RW),
        (PG, "BEGIN TRANSACTION ISOLATION LEVEL READ COMMITTED", TransactionControl, BEGIN_RW),
        (PG, "BEGIN READ ONLY", TransactionControl, BEGIN_RO),
        (PG, "BEGIN TRANSACTION READ ONLY DEFERRABLE", TransactionControl, BEGIN_RO),
        (PG, "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY", TransactionControl, BEGIN_RO),
        (PG, "BEGIN READ WRITE", TransactionControl, BEGIN_RW),
        (BOTH, "START TRANSACTION", TransactionControl, BEGIN_RW),
        (BOTH, "START TRANSACTION READ ONLY", TransactionControl, BEGIN_RO),
        (BOTH, "start transaction read write", TransactionControl, BEGIN_RW),
        (MY, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", TransactionControl, BEGIN_RO),
        (MY, "BEGIN READ ONLY", TransactionControl, BEGIN_RW),
        (BOTH, "COMMIT", TransactionControl, END),
        (BOTH, "COMMIT WORK", TransactionControl, END),
        (PG, "END", TransactionControl, END),
        (PG, "END TRANSACTION", TransactionControl, END),
        (BOTH, "ROLLBACK", TransactionControl, END),
        (PG, "ABORT", TransactionControl, END),
        (BOTH, "COMMIT AND NO CHAIN", TransactionControl, END),
        (BOTH, "COMMIT AND CHAIN", TransactionControl, NONE),
        (BOTH, "ROLLBACK AND CHAIN", TransactionControl, NONE),
        (BOTH, "ROLLBACK TO SAVEPOINT a", TransactionControl, SP),
        (BOTH, "ROLLBACK TO a", TransactionControl, SP),
        (BOTH, "ROLLBACK WORK TO SAVEPOINT a", TransactionControl, SP),
        (BOTH, "SAVEPOINT a", TransactionControl, SP),
        (BOTH, "RELEASE SAVEPOINT a", TransactionControl, SP),
        (PG, "RELEASE a", TransactionControl, SP),
        (PG, "PREPARE TRANSACTION 'x'", TransactionControl, END),
        (PG, "COMMIT PREPARED 'x'", TransactionControl, NONE),
        (PG, "ROLLBACK PREPARED 'x'", TransactionControl, NONE),
        (BOTH, "SET TRANSACTION READ ONLY", TransactionControl, STRO),
        (PG, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", TransactionControl, STRO),
        (BOTH, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", TransactionControl, NONE),
        (BOTH, "SET TRANSACTION READ WRITE", TransactionControl, NONE),
        (MY, "XA START 'x'", TransactionControl, BEGIN_RW),
        (MY, "XA END 'x'", TransactionControl, NONE),
        (MY, "XA COMMIT 'x'", TransactionControl, END),
        // --- multi-statement: route from all, tx from the first
        (BOTH, "BEGIN; INSERT INTO t VALUES (1); COMMIT", TransactionControl, BEGIN_RW),
        (PG, "BEGIN READ ONLY; SELECT 1", TransactionControl, BEGIN_RO),
        (PG, "BEGIN READ ONLY; SELECT 1; COMMIT", TransactionControl, BEGIN_RO),
        (BOTH, "SELECT 1; BEGIN", TransactionControl, NONE),
        (BOTH, "SELECT 1; COMMIT", TransactionControl, NONE),
        (BOTH, "COMMIT; SELECT 1", TransactionControl, END),
        // --- empty and unknown
        (BOTH, "", Empty, NONE),
        (BOTH, "   ", Empty, NONE),
        (BOTH, "/* only a comment */", Empty, NONE),
        (BOTH, "-- only a comment", Empty, NONE),
        (BOTH, ";;;", Empty, NONE),
        (BOTH, " ; /* x */ ; ", Empty, NONE),
        (MY, "# only a comment", Empty, NONE),
        (BOTH, "FROBNICATE t", Unknown, NONE),
        (BOTH, "'just a string'", Unknown, NONE),
        (BOTH, "(", Unknown, NONE),
        (BOTH, "(DELETE FROM t)", Unknown, NONE),
        (BOTH, "SELECT 1; FROBNICATE", Unknown, NONE),
        (PG, "REPLACE INTO t VALUES (1)", Unknown, NONE),
        (PG, "USE db", Unknown, NONE),
        (MY, "COPY t FROM STDIN", Unknown, NONE),
    ];

    /// Rows where the route is not the one `route_of` derives.
    const ROUTED: &[(u8, &str, Route)] = &[
        (BOTH, "SELECT 1; BEGIN", Route::Primary),
        (
            BOTH,
            "BEGIN; INSERT INTO t VALUES (1); COMMIT",
            Route::Primary,
        ),
        (PG, "BEGIN READ ONLY; SELECT 1; COMMIT", Route::Primary),
        (BOTH, "SELECT 1; COMMIT", Route::Primary),
    ];

    fn classifiers() -> [(u8, Classifier); 2] {
        [
            (PG, Classifier::new(Dialect::Postgres, &[], 64)),
            (MY, Classifier::new(Dialect::MySql, &[], 64)),
        ]
    }

    #[test]
    fn classification_table() {
        let mut checked = 0;
        let mut failures = Vec::new();
        for (dialects, sql, reason, tx) in TABLE {
            for (d, c) in &classifiers() {
                if dialects & d == 0 {
                    continue;
                }
                let route = ROUTED
                    .iter()
                    .find(|(ds, s, _)| ds & d != 0 && s == sql)
                    .map(|r| r.2)
                    .unwrap_or_else(|| route_of(*reason, *tx));
                let want = Class::new(route, *reason, *tx);
                let got = c.classify(sql);
                if got != want {
                    failures.push(format!(
                        "{:?}: {sql:?}\n  got  {got:?}\n  want {want:?}",
                        c.dialect()
                    ));
                }
                // Same answer a second time (through the cache where the slow path ran).
                assert_eq!(c.classify(sql), got, "{:?} (again): {sql:?}", c.dialect());
                checked += 1;
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(TABLE.len() >= 150, "{} rows", TABLE.len());
        assert!(checked >= 250, "{checked} checks");
    }

    #[test]
    fn reasons_are_short_snake_case() {
        let all = [
            Read,
            Write,
            Ddl,
            Locking,
            WriteFunction,
            SelectInto,
            WritingCte,
            TransactionControl,
            Session,
            Hint,
            Unknown,
            ParseError,
            Empty,
            Utility,
        ];
        let mut seen = std::collections::HashSet::new();
        for r in all {
            let s = r.as_str();
            assert!(s.len() <= 20 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(seen.insert(s), "{s} twice");
        }
    }

    #[test]
    fn configured_write_functions() {
        let fns = [
            "my_audit".to_string(),
            "Billing.Charge".to_string(),
            " ".to_string(),
        ];
        for d in [Dialect::Postgres, Dialect::MySql] {
            let c = Classifier::new(d, &fns, 16);
            let plain = Classifier::new(d, &[], 16);
            for sql in [
                "SELECT my_audit(1)",
                "SELECT MY_AUDIT(1)",
                "select x, my_audit ( 'a' ) from t",
                "SELECT public.my_audit(1)",
                "SELECT billing.charge(1, 2)",
                "SELECT charge(3)",
                "VALUES (my_audit(1))",
            ] {
                assert_eq!(c.classify(sql), Class::primary(WriteFunction), "{sql}");
                assert_eq!(plain.classify(sql), READ, "{sql}");
            }
            for sql in [
                "SELECT my_audit FROM t",
                "SELECT 'my_audit(1)'",
                "SELECT my_audit_x(1)",
            ] {
                assert_eq!(c.classify(sql), READ, "{sql}");
            }
        }
    }

    #[test]
    fn hints_override() {
        let c = Classifier::new(Dialect::Postgres, &[], 16);
        let hint = |sql| c.classify(sql);
        let p = |reason, tx| Class::new(Route::Primary, reason, tx);
        let r = |reason, tx| Class::new(Route::Replica, reason, tx);
        assert_eq!(hint("/* switchyard:primary */ SELECT 1"), p(Hint, NONE));
        // MariaDB's connectors put their query timeout before the application's text.
        let my = Classifier::new(Dialect::MySql, &[], 16);
        let timed =
            |sql: &str| my.classify(&format!("SET STATEMENT max_statement_time=2 FOR {sql}"));
        assert_eq!(timed("/* switchyard:primary */ SELECT 1"), p(Hint, NONE));
        assert_eq!(timed("/* switchyard:replica */ SELECT 1"), r(Hint, NONE));
        assert_eq!(
            timed("/* switchyard:replica */ DELETE FROM t"),
            p(Write, NONE)
        );
        assert_eq!(timed("/* other */ SELECT 1"), READ);
        assert_eq!(hint("/* switchyard:replica */ SELECT 1"), r(Hint, NONE));
        assert_eq!(hint("-- switchyard:primary\nSELECT 1"), p(Hint, NONE));
        assert_eq!(
            hint("/*switchyard:primary*/ BEGIN READ ONLY"),
            p(Hint, BEGIN_RO)
        );
        // A replica hint helps where the classifier is unsure...
        assert_eq!(hint("/* switchyard:replica */ FROBNICATE"), r(Hint, NONE));
        assert_eq!(
            hint("/* switchyard:replica */ SELECT * FROM t WHERE (delete"),
            r(Hint, NONE)
        );
        // ...but never sends a known write, lock, session or transaction statement there.
        for sql in [
            "/* switchyard:replica */ DELETE FROM t",
            "/* switchyard:replica */ SELECT nextval('s')",
            "/* switchyard:replica */ SELECT * FROM t FOR UPDATE",
            "/* switchyard:replica */ SET x = 1",
            "/* switchyard:replica */ BEGIN",
            "/* switchyard:replica */ SELECT 1; DELETE FROM t",
            "/* switchyard:replica */",
        ] {
            assert_eq!(c.classify(sql).route, Route::Primary, "{sql}");
            assert_ne!(c.classify(sql).reason, Hint, "{sql}");
        }
        // Not leading: no effect.
        assert_eq!(hint("SELECT 1 /* switchyard:primary */"), READ);
        // The same rule for a session's route setting.
        let write = c.classify("DELETE FROM t");
        assert_eq!(write.with_hint(hints::Hint::Replica), write);
        // A primary hint leaves what goes to the primary anyway as it was: a write keeps
        // its reason (a session held on a replica refuses it by that reason).
        assert_eq!(write.with_hint(hints::Hint::Primary), write);
        assert_eq!(
            c.classify("/* switchyard:primary */ DELETE FROM t"),
            c.classify("DELETE FROM t")
        );
        assert_eq!(READ.with_hint(hints::Hint::Replica), r(Hint, NONE));
        assert_eq!(READ.with_hint(hints::Hint::Primary), p(Hint, NONE));
    }

    #[test]
    fn cache_is_consistent_and_bounded() {
        let c = Classifier::new(Dialect::Postgres, &[], 8);
        let sql = "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x";
        // A parsed statement is kept from its first sighting (parsing allocates anyway).
        let first = c.classify(sql);
        assert_eq!(c.cached(), 1);
        assert_eq!(c.classify(sql), first);
        assert_eq!(c.cached(), 1);
        // The slow path's key is the statement text without surrounding comments or other
        // statements.
        let commented = format!("/* a */ {sql} /* trace=1 */");
        assert_eq!(c.classify(&commented), first);
        assert_eq!(c.classify(&commented), first);
        assert_eq!(c.classify(&format!("SELECT 1; {sql}")), first);
        assert_eq!(c.cached(), 1);
        // A short string the scanner decides alone is never kept, however often it comes.
        let read = "WITH x AS (SELECT 1) SELECT * FROM x";
        assert_eq!(c.classify(read), READ);
        assert_eq!(c.classify(read), READ);
        assert_eq!(c.classify(read), READ);
        assert_eq!(c.cached(), 1);
        for i in 0..1000 {
            let q = format!("WITH x{i} AS (DELETE FROM t RETURNING *) SELECT * FROM x{i}");
            assert_eq!(c.classify(&q), first);
            let read = format!("SELECT update, {i} FROM t");
            assert_eq!(c.classify(&read), READ);
            assert!(c.cached() <= 8, "{} entries", c.cached());
        }
        assert_eq!(c.classify(sql), first);
        // Cache disabled: same answers, nothing kept.
        let none = Classifier::new(Dialect::Postgres, &[], 0);
        assert_eq!(none.classify(sql), first);
        assert_eq!(none.classify(sql), first);
        assert_eq!(none.cached(), 0);
        // Fast-path statements never enter the cache.
        let fast = Classifier::new(Dialect::Postgres, &[], 8);
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "BEGIN",
            "SELECT nextval('s')",
        ] {
            fast.classify(sql);
        }
        assert_eq!(fast.cached(), 0);
    }

    /// A SELECT of `CACHE_MIN_BYTES` or more.
    fn long_select() -> String {
        let cols: Vec<String> = (0..30).map(|i| format!("col_{i}")).collect();
        let sql = format!("SELECT {} FROM t WHERE id = 1", cols.join(", "));
        assert!(sql.len() >= CACHE_MIN_BYTES);
        sql
    }

    #[test]
    fn long_read_shaped_strings_are_cached_whole_from_their_second_sighting() {
        let c = Classifier::new(Dialect::Postgres, &["my_audit".to_string()], 64);
        let plain = Classifier::new(Dialect::Postgres, &["my_audit".to_string()], 0);
        let long = long_select();
        assert_eq!(c.classify(&long), READ);
        assert_eq!(c.cached(), 0);
        assert_eq!(c.classify(&long), READ);
        assert_eq!(c.cached(), 1);
        assert_eq!(c.classify(&long), READ);
        assert_eq!(c.cached(), 1);
        // An entry holds the final answer (hint included) of exactly that text.
        let pad = "x".repeat(CACHE_MIN_BYTES);
        for sql in [
            format!("/* switchyard:primary */ {long}"),
            format!("/* switchyard:replica */ {long}"),
            format!("-- switchyard:replica\n{long} FOR UPDATE"),
            format!("{long} FOR UPDATE"),
            format!("{long} FOR UPDATX"),
            format!("({long}) UNION (SELECT my_audit(1))"),
            format!("{long}; DELETE FROM t"),
            format!("{long}; SELECT 2"),
            format!("WITH w AS (DELETE FROM t RETURNING *) {long}"),
            format!("with w as (select 1) {long}"),
            format!("VALUES (nextval('s'), '{pad}')"),
            format!("TABLE t /* {pad} */"),
        ] {
            let want = plain.classify(&sql);
            for _ in 0..3 {
                assert_eq!(c.classify(&sql), want, "{sql}");
            }
        }
        // Writes and other statements decide on their first words: never looked up.
        let before = c.cached();
        let insert = format!("INSERT INTO t VALUES ('{pad}')");
        let set = format!("SET application_name = '{pad}'");
        for _ in 0..3 {
            assert_eq!(c.classify(&insert), Class::primary(Write));
            assert_eq!(c.classify(&set), Class::primary(Session));
        }
        assert_eq!(c.cached(), before);
        // Long statements that never repeat (inline literals) are never kept.
        let fresh = Classifier::new(Dialect::Postgres, &[], 64);
        for i in 0..500 {
            assert_eq!(fresh.classify(&format!("{long} AND k = {i}")), READ);
        }
        assert_eq!(fresh.cached(), 0);
    }

    #[test]
    fn cached_answers_agree_across_threads() {
        let c = std::sync::Arc::new(Classifier::new(Dialect::Postgres, &[], 32));
        let long = long_select();
        let texts: Vec<(String, Class)> = (0..16)
            .map(|i| {
                let (sql, class) = if i % 2 == 0 {
                    (format!("{long} AND k = {i}"), READ)
                } else {
                    (
                        format!("{long} AND k = {i} FOR UPDATE"),
                        Class::primary(Locking),
                    )
                };
                (sql, class)
            })
            .collect();
        let texts = std::sync::Arc::new(texts);
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let (c, texts) = (c.clone(), texts.clone());
                std::thread::spawn(move || {
                    for j in 0..2000 {
                        let (sql, want) = &texts[(j * 5 + n) % texts.len()];
                        assert_eq!(c.classify(sql), *want, "{sql}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!((1..=32).contains(&c.cached()), "{}", c.cached());
    }

    #[test]
    fn write_function_filter_lets_every_name_through() {
        let configured = [
            "_audit".to_string(),
            "9lives".to_string(),
            "ünïcode_fn".to_string(),
            "a_function_name_longer_than_31_bytes_for_sure".to_string(),
            "x".to_string(),
        ];
        let c = Classifier::new(Dialect::Postgres, &configured, 0);
        let my = Classifier::new(Dialect::MySql, &configured, 0);
        use read_scan::{WRITE_FUNCTIONS, WRITE_FUNCTION_PREFIXES};
        let names = WRITE_FUNCTIONS
            .iter()
            .map(|f| f.to_string())
            .chain(WRITE_FUNCTION_PREFIXES.iter().map(|p| format!("{p}x")))
            .chain(
                WRITE_FUNCTION_PREFIXES
                    .iter()
                    .map(|p| format!("{p}{}", "y".repeat(40))),
            )
            .chain(configured.iter().cloned());
        for name in names {
            for sql in [
                format!("SELECT {name}(1)"),
                format!("SELECT s.{}(1)", name.to_ascii_uppercase()),
                format!("SELECT \"{name}\"(1)"),
            ] {
                assert_eq!(c.classify(&sql), Class::primary(WriteFunction), "{sql}");
            }
            let sql = format!("SELECT `{name}` (1)");
            assert_eq!(my.classify(&sql), Class::primary(WriteFunction), "{sql}");
        }
        for sql in [
            "SELECT count(1), now(), lo_(1), pg_create_(1), y(1), \"\"(1)",
            "SELECT nextvalx(1), xnextval(1), \"nextval \"(1)",
        ] {
            assert_eq!(c.classify(sql), READ, "{sql}");
        }
    }

    #[test]
    fn oversized_statements_are_not_parsed() {
        let c = Classifier::new(Dialect::Postgres, &[], 8);
        let big = format!(
            "WITH x AS (DELETE FROM t RETURNING *) SELECT {} FROM x",
            "1+".repeat(MAX_PARSE_TOKENS) + "1"
        );
        assert_eq!(c.classify(&big), Class::primary(WritingCte));
        let big_top = format!(
            "WITH x AS (SELECT 1) INSERT INTO t SELECT {}1",
            "1+".repeat(20_000)
        );
        assert_eq!(c.classify(&big_top), Class::primary(Write));
        // Neither was parsed. Only the first is short enough to be kept whole, from its
        // second sighting.
        assert_eq!(c.cached(), 0);
        assert_eq!(c.classify(&big), Class::primary(WritingCte));
        assert_eq!(c.cached(), 1);
        assert_eq!(c.classify(&big_top), Class::primary(Write));
        assert_eq!(c.cached(), 1);
        assert_eq!(c.classify(&big), Class::primary(WritingCte));
        // Deep expressions within the limit parse and drop on a small stack.
        let deep = format!(
            "SELECT update, {}1 FROM t",
            "1+".repeat(MAX_PARSE_TOKENS / 2 - 8)
        );
        let h = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || Classifier::new(Dialect::Postgres, &[], 0).classify(&deep))
            .unwrap();
        assert_eq!(h.join().unwrap(), READ);
        // Deep nesting: sqlparser stops at its recursion limit without exhausting the stack
        // of a thread the size of a tokio worker's (2 MiB), even in a debug build.
        for n in [10, 20, 31, 40, 200] {
            let sqls = [
                format!(
                    "SELECT {}update{} FROM t",
                    "(SELECT ".repeat(n),
                    ")".repeat(n)
                ),
                format!("SELECT {}1{} FROM (DELETE", "f(".repeat(n), ")".repeat(n)),
                format!(
                    "WITH x AS (DELETE FROM t) SELECT {}1{}",
                    "(".repeat(n),
                    ")".repeat(n)
                ),
            ];
            let h = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let c = Classifier::new(Dialect::Postgres, &[], 0);
                    sqls.iter().map(|s| c.classify(s).route).collect::<Vec<_>>()
                })
                .unwrap();
            let routes = h.join().unwrap();
            assert_eq!(routes[1..], [Route::Primary, Route::Primary], "n = {n}");
        }
    }

    #[test]
    fn classifier_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Classifier>();
        let c = std::sync::Arc::new(Classifier::new(Dialect::MySql, &[], 4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for j in 0..200 {
                        let q = format!("WITH a AS (SELECT {i}) DELETE FROM t WHERE id = {j}");
                        assert_eq!(c.classify(&q), Class::primary(Write));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(c.cached() <= 4);
    }

    /// Tiny deterministic generator (xorshift) so the property test needs no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_input_never_panics() {
        const PIECES: &[&str] = &[
            "SELECT",
            "select",
            " ",
            "(",
            ")",
            ";",
            "'",
            "\"",
            "`",
            "$$",
            "$a$",
            "/*",
            "*/",
            "--",
            "#",
            "\n",
            "/*!",
            "*/",
            "E'",
            "\\",
            "FOR",
            "UPDATE",
            "INTO",
            "WITH",
            "AS",
            "DELETE",
            "INSERT",
            "nextval",
            "EXPLAIN",
            "ANALYZE",
            "COPY",
            "TO",
            "STDOUT",
            "FROM",
            "BEGIN",
            "READ",
            "ONLY",
            ".",
            "@",
            ":=",
            "SET",
            "switchyard",
            "route",
            "=",
            "é",
            "x",
        ];
        let pg = Classifier::new(Dialect::Postgres, &["f".to_string()], 32);
        let my = Classifier::new(Dialect::MySql, &["f".to_string()], 32);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..2000 {
            let len = (rng.next() % 64) as usize;
            let s = if i % 2 == 0 {
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                (0..len)
                    .map(|_| PIECES[(rng.next() % PIECES.len() as u64) as usize])
                    .collect()
            };
            for c in [&pg, &my] {
                let a = c.classify(&s);
                assert_eq!(c.classify(&s), a, "{s:?}");
                if a.route == Route::Replica {
                    assert!(
                        matches!(a.reason, Read | Hint | TransactionControl),
                        "{s:?}"
                    );
                }
            }
            let _ = hints::leading_hint(&s);
            let _ = hints::route_setting(&s);
        }
    }

    #[test]
    fn statement_split_agrees_with_lexer() {
        // For PostgreSQL text, both scanners see the same statements and leading words.
        use crate::router::lexer;
        for sql in [
            "select 1; insert into t values (';')",
            "/* c /* nested */ */ select 1; -- x\n update t set a = 1",
            "select ';' ; set x = 1",
            r#"select "a;b" from t; begin"#,
            "select 'x'';' ; begin",
            "do $body$ begin; end $body$; select $1",
            "select $$;$$;;;commit",
        ] {
            let mut ours = Vec::new();
            let mut toks = Tokens::new(sql, &Lex::POSTGRES);
            loop {
                toks.stmt_done = false;
                let mut cur = Cursor::new(&mut toks, false);
                let mut words = Vec::new();
                let mut words_done = false;
                while let Some(t) = cur.next() {
                    if t.kind == Kind::Word && !words_done && words.len() < lexer::WORDS {
                        words.push(t.text(sql).to_string());
                    } else {
                        words_done = true;
                    }
                }
                if !words.is_empty() {
                    ours.push(words);
                }
                if cur.toks.pos >= sql.len() {
                    break;
                }
            }
            let theirs: Vec<Vec<String>> = lexer::statements(sql)
                .map(|l| {
                    (0..lexer::WORDS)
                        .filter_map(|i| l.word(i))
                        .map(String::from)
                        .collect()
                })
                .collect();
            assert_eq!(ours, theirs, "{sql}");
        }
    }
}
