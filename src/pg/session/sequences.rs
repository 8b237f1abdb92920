//! `currval()` and `lastval()` read the sequence state of the server session, which
//! transaction pooling shares between clients. After an INSERT in autocommit (PHP's
//! `PDO::lastInsertId()`, plain libpq code), the client's next statement may run on a
//! connection another client used since: directly it would read its own value, here it would
//! silently read the other client's. So a client that holds a connection which is not the one
//! it gave back last, or which another client used since (`Session::seq_guard`), is refused
//! (SQLSTATE 55000, as the server refuses `currval` of a sequence the session never used) a
//! statement that reads the sequence state before anything of its own changed it there; on
//! its own connection, untouched since, it gets its value as directly. Statements inside a
//! transaction block are not checked (README: what transaction mode cannot promise).

use super::*;
use crate::pg::codec::Header;
use crate::router::tokens::{Kind, Lex, Tokens};
use std::sync::atomic::{AtomicU64, Ordering};

/// The error a refused statement gets.
pub(super) const REFUSED: &str = "currval()/lastval() outside a transaction read the sequence \
     state of the pooled server connection, which another client used since this client's \
     last statement (transaction pooling): use INSERT ... RETURNING, or read it in the \
     transaction that called nextval()";

/// A number for a new session, unique in the process.
pub(super) fn next_uid() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How a text of one or more statements uses the session's sequence state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeqUse {
    /// A call of `currval` or `lastval` comes before anything that changes it.
    pub reads_first: bool,
    /// Something changes it (as far as the proxy can tell: a call of `nextval` or `setval`,
    /// or an INSERT, MERGE or COPY, which call `nextval` for serial columns).
    pub changes: bool,
}

/// [`SeqUse`] of `sql`. Most texts name none of the four functions: for them one pass for a
/// `v` and a look at the first word.
pub fn seq_use(sql: &[u8]) -> SeqUse {
    const INSERTING: &[&str] = &["insert", "merge", "copy"];
    let calls = memchr::memchr2_iter(b'v', b'V', sql).any(|i| {
        sql.get(i + 1..i + 3)
            .is_some_and(|al| al.eq_ignore_ascii_case(b"al"))
    });
    let Some(text) = calls.then(|| std::str::from_utf8(sql).ok()).flatten() else {
        // (Statements after the first are not looked at: the guard then stays on longer.)
        return SeqUse {
            reads_first: false,
            changes: super::routing::starts_with_any(sql, INSERTING),
        };
    };
    let mut out = SeqUse::default();
    let mut toks = Tokens::new(text, &Lex::POSTGRES);
    let mut first = true;
    let mut prev: Option<&str> = None;
    while let Some(t) = toks.next_tok() {
        let word = &text[t.start..t.end];
        match t.kind {
            Kind::Semi => {
                first = true;
                prev = None;
                continue;
            }
            Kind::Word if first && INSERTING.iter().any(|k| word.eq_ignore_ascii_case(k)) => {
                out.changes = true
            }
            Kind::Open => match prev {
                Some(f)
                    if f.eq_ignore_ascii_case("currval") || f.eq_ignore_ascii_case("lastval") =>
                {
                    out.reads_first |= !out.changes;
                }
                Some(f)
                    if f.eq_ignore_ascii_case("nextval") || f.eq_ignore_ascii_case("setval") =>
                {
                    out.changes = true;
                }
                _ => {}
            },
            _ => {}
        }
        first = false;
        prev = (t.kind == Kind::Word).then_some(word);
    }
    out
}

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// With `seq_guard` on: the message `h` (a Query, the Parse of the unnamed statement, or
    /// the Bind of a named one) opens a batch outside a transaction block and reads the
    /// sequence state before changing it, so it must be refused. A statement that changes
    /// the state makes it the client's own: the guard is off for the rest of the holding.
    pub(super) fn reads_foreign_sequence_state(&mut self, h: &Header) -> bool {
        let body = &self.cin[5..h.wire_len];
        let used = match h.tag {
            // (The text and its NUL: no search for the NUL.)
            b'Q' => body.split_last().map(|(_, sql)| seq_use(sql)),
            b'P' => codec::parse_msg(body)
                .ok()
                .filter(|p| p.name.is_empty())
                .map(|p| seq_use(p.query)),
            b'B' => codec::bind_msg(body)
                .ok()
                .filter(|b| !b.statement.is_empty())
                .and_then(|b| self.stmts.get(b.statement))
                .map(|def| def.seq_use),
            _ => None,
        };
        let Some(used) = used else {
            return false;
        };
        let opens_idle_batch =
            self.tx_status == b'I' && self.deferred_begin.is_none() && self.carried_sets_allowed();
        if used.reads_first && opens_idle_batch {
            tracing::debug!("currval/lastval refused on a connection another client used");
            return true;
        }
        if used.changes {
            self.seq_guard = false;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses(sql: &str) -> (bool, bool) {
        let u = seq_use(sql.as_bytes());
        (u.reads_first, u.changes)
    }

    #[test]
    fn reads_and_changes_of_the_sequence_state_are_told_apart() {
        assert_eq!(uses("SELECT lastval()"), (true, false));
        assert_eq!(uses("select CURRVAL('t_id_seq')"), (true, false));
        assert_eq!(uses("SELECT pg_catalog.lastval ()"), (true, false));
        assert_eq!(uses("SELECT CURRVAL($1)"), (true, false));
        assert_eq!(
            uses("INSERT INTO t (v) VALUES (1); SELECT lastval()"),
            (false, true)
        );
        assert_eq!(uses("SELECT nextval('s'), currval('s')"), (false, true));
        assert_eq!(uses("SELECT currval('s'), nextval('s')"), (true, true));
        assert_eq!(
            uses("SELECT lastval(); INSERT INTO t VALUES (1)"),
            (true, true)
        );
        assert_eq!(uses("insert into t (v) values ('x')"), (false, true));
        assert_eq!(uses("COPY t FROM STDIN"), (false, true));
        assert_eq!(uses("SELECT 1"), (false, false));
        assert_eq!(uses("UPDATE t SET v = 1"), (false, false));
        assert_eq!(uses("SELECT balance FROM t"), (false, false));
        // Not calls: strings, comments, quoted names, other names.
        assert_eq!(uses("SELECT 'lastval()'"), (false, false));
        assert_eq!(uses("SELECT 1 /* currval(x) */"), (false, false));
        assert_eq!(uses("SELECT my_lastval()"), (false, false));
        assert_eq!(uses("SELECT \"lastval\" FROM t"), (false, false));
        assert_eq!(
            uses("UPDATE t SET note = 'currval(s)' WHERE id = lastval()"),
            (true, false)
        );
        assert_eq!(uses("UPDATE t SET id = nextval('s')"), (false, true));
    }
}
