//! Which statements leave session state behind on a backend connection.
//!
//! In transaction pool mode a client that runs one of these is pinned to its backend
//! connection for the rest of its session (the connection is reset before anyone else gets
//! it). Pinning is chosen over replaying because it is always correct; replay of SET is
//! cheaper and may come later. See README "Session state in transaction mode".

use super::lexer::{first_leading, first_word, statements, Leading};

/// What a SQL string does to session state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effect {
    /// Leaves session state behind: pin the client.
    pub pins: bool,
    /// Drops every prepared statement on the connection (DISCARD ALL, DEALLOCATE ALL).
    pub drops_prepared: bool,
}

/// Scan every statement of `sql`.
pub fn effect(sql: &str) -> Effect {
    // Every Query and Parse passes here. Without a `;` byte (other than a final one, as
    // pgbench and many drivers send) there is one statement, and only its leading words
    // matter: no need to scan the rest.
    let b = sql.as_bytes().trim_ascii_end();
    if !b.strip_suffix(b";").unwrap_or(b).contains(&b';') {
        // Most statements are ruled out by their first word alone.
        let w = first_word(sql).unwrap_or("");
        if !EFFECT_WORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) {
            return Effect::default();
        }
        return statement_effect(&first_leading(sql));
    }
    let mut e = Effect::default();
    for s in statements(sql) {
        let one = statement_effect(&s);
        e.pins |= one.pins;
        e.drops_prepared |= one.drops_prepared;
    }
    e
}

/// The common case decided on bytes, before any UTF-8 check or token scan: `true` when `sql`
/// is one statement (no `;` but a final one) whose first word is a plain ASCII word that no
/// statement with an effect starts with. `false` means: ask [`effect`].
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
    let w = &rest[..len];
    !EFFECT_WORDS
        .iter()
        .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
}

/// Every first word `statement_effect` can give an effect to.
const EFFECT_WORDS: [&str; 9] = [
    "SET",
    "CREATE",
    "RESET",
    "PREPARE",
    "LISTEN",
    "LOAD",
    "DECLARE",
    "DISCARD",
    "DEALLOCATE",
];

fn statement_effect(s: &Leading<'_>) -> Effect {
    let pins = if s.is(0, "SET") {
        !(s.is(1, "LOCAL") || s.is(1, "TRANSACTION"))
    } else if s.is(0, "CREATE") {
        s.is(1, "TEMP")
            || s.is(1, "TEMPORARY")
            || ((s.is(1, "LOCAL") || s.is(1, "GLOBAL"))
                && (s.is(2, "TEMP") || s.is(2, "TEMPORARY")))
    } else {
        EFFECT_WORDS[2..].iter().any(|kw| s.is(0, kw))
    };
    let drops_prepared = (s.is(0, "DISCARD") && s.is(1, "ALL"))
        || (s.is(0, "DEALLOCATE") && (s.is(1, "ALL") || (s.is(1, "PREPARE") && s.is(2, "ALL"))));
    Effect {
        pins,
        drops_prepared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "SET search_path = x;  \n",
            "SETx = 1",
            "set_config",
            "LISTEN chan",
            "listen chan;",
            "PREPARE p AS SELECT 1",
            "create temp table t (a int)",
            "CREATE TABLE t (a int)",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "RESET ALL",
            "DISCARD ALL",
            "DEALLOCATE ALL",
            "LOAD 'x'",
            "/* hi */ LOAD 'auto_explain'",
            "-- c\nSET a = 1",
            "(SELECT 1)",
            "\u{b}SET a = 1",
            "SÉT a = 1",
            "select 1; set a = 1",
            "select ';'",
            "",
            "   ",
            ";",
            "BEGIN",
            "COMMIT;",
        ];
        for sql in cases {
            if surely_no_effect(sql.as_bytes()) {
                assert_eq!(effect(sql), Effect::default(), "{sql:?}");
            }
        }
        assert!(surely_no_effect(cases[0].as_bytes()));
        assert!(surely_no_effect(b"  \n\tSELECT 1 ;  "));
        assert!(!surely_no_effect(b"SET a = 1"));
        assert!(!surely_no_effect(b"/* x */ SELECT 1"));
    }

    #[test]
    fn session_statements_pin() {
        for sql in [
            "SET search_path = x",
            "set session timezone = 'UTC'",
            "SET search_path = x;  \n",
            "select 1 ; ; LISTEN chan;",
            "select ';'; SET a = 1",
            "select 1; LISTEN chan",
            "PREPARE p AS SELECT 1",
            "create temp table t (a int)",
            "CREATE LOCAL TEMPORARY TABLE t (a int)",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "RESET ALL",
            "/* hi */ LOAD 'auto_explain'",
        ] {
            assert!(effect(sql).pins, "{sql}");
        }
    }

    #[test]
    fn transaction_scoped_statements_do_not_pin() {
        for sql in [
            "SET LOCAL statement_timeout = 0",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SELECT 'SET x = 1'",
            "BEGIN; UPDATE t SET a = 1; COMMIT",
            "create table settings (a int)",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "select 1 -- ; SET x = 1",
        ] {
            assert!(!effect(sql).pins, "{sql}");
        }
    }

    /// The fast paths in `effect` agree with scanning every statement.
    #[test]
    fn fast_paths_agree_with_the_full_scan() {
        let full = |sql: &str| {
            let mut e = Effect::default();
            for s in statements(sql) {
                let one = statement_effect(&s);
                e.pins |= one.pins;
                e.drops_prepared |= one.drops_prepared;
            }
            e
        };
        for sql in [
            "SET x = 1",
            "  -- c\n set local x = 1;",
            "/* a */ DISCARD ALL ;",
            "deallocate prepare all",
            "SELECT 1;",
            "select $$;$$",
            "(SET x = 1)",
            "create temporary table t ()",
            "CREATE TABLE t ()",
            "LISTEN c;   ",
            "\"set\" x",
            "",
            ";",
            "settings",
        ] {
            assert_eq!(effect(sql), full(sql), "{sql:?}");
        }
    }

    #[test]
    fn discard_all_drops_prepared() {
        assert!(effect("DISCARD ALL").drops_prepared);
        assert!(effect("deallocate all").drops_prepared);
        assert!(effect("DEALLOCATE PREPARE ALL").drops_prepared);
        assert!(!effect("DEALLOCATE p1").drops_prepared);
    }
}
