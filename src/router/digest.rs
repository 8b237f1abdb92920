//! Statement digests for the query statistics (`GET /queries`, ProxySQL's query digests,
//! PostgreSQL's `pg_stat_statements`): a statement's text with its literals replaced by `?`,
//! comments dropped and white space made single, so that `SELECT * FROM t WHERE id = 7` and
//! `select *  from t where id=8 -- again` are counted as one statement.
//!
//! * **Literals**: strings of every kind (PostgreSQL `E''` and dollar quotes, MySQL `""`) and
//!   numbers (`7`, `1.5`, `1e3`, `0x1F`) become `?`. Parameters stay what they are (`$1`,
//!   `?`): they are the statement's own. `NULL`, `TRUE` and `FALSE` stay, being part of its
//!   shape.
//! * **Case**: words are compared without ASCII case (the text shown is the first one seen);
//!   quoted identifiers as written. A `;` at the end is dropped.
//! * **The hash** ([`digest`]) is a multiply-fold hash over the normalised tokens, eight
//!   bytes at a time, computed without allocating, the same in every thread and process: the
//!   statistics of different worker threads add up by it. The text ([`normalized`]) is built only for a statement not seen
//!   before.

use super::classify::Dialect;
use super::tokens::{Kind, Lex, Tok, Tokens};

/// One normalised token and where its text starts and ends in the statement.
#[derive(Clone, Copy)]
enum Norm<'a> {
    /// Text kept, compared without ASCII case when `fold`.
    Text(&'a str, bool),
    /// A literal.
    Lit,
}

type Span = (usize, usize);

fn lex(dialect: Dialect) -> &'static Lex {
    match dialect {
        Dialect::Postgres => &Lex::POSTGRES,
        Dialect::MySql => &Lex::MYSQL,
    }
}

/// Walk `sql`'s normalised tokens.
fn walk<'a>(sql: &'a str, dialect: Dialect, mut emit: impl FnMut(Norm<'a>, Span)) {
    let mut toks = Tokens::new(sql, lex(dialect));
    let b = sql.as_bytes();
    let is_number = |t: &Tok| t.kind == Kind::Word && b[t.start].is_ascii_digit();
    let mut next = toks.next_tok();
    while let Some(t) = next {
        next = toks.next_tok();
        let text = t.text(sql);
        match t.kind {
            Kind::Str => emit(Norm::Lit, (t.start, t.end)),
            _ if is_number(&t) => {
                // `1.5` comes as `1`, `.`, `5`: one literal.
                let mut end = t.end;
                if let Some(dot) = next.filter(|d| d.kind == Kind::Dot && d.start == end) {
                    let mut ahead = toks.clone();
                    if let Some(frac) = ahead
                        .next_tok()
                        .filter(|f| f.start == dot.end && is_number(f))
                    {
                        end = frac.end;
                        toks = ahead;
                        next = toks.next_tok();
                    }
                }
                emit(Norm::Lit, (t.start, end));
            }
            Kind::Punct
                if text == "$" && next.is_some_and(|n| n.start == t.end && is_number(&n)) =>
            {
                // A parameter, `$1`: kept.
                let n = next.expect("checked");
                next = toks.next_tok();
                emit(Norm::Text(&sql[t.start..n.end], false), (t.start, n.end));
            }
            Kind::QIdent => emit(Norm::Text(text, false), (t.start, t.end)),
            // `;`s that end the text are not part of the statement: `SELECT 1;` alone and
            // `SELECT 1` of `SELECT 1; SELECT 2` are one statement. Others are kept, a run
            // of them at once (looked through once).
            Kind::Semi => {
                if next.is_some_and(|n| n.kind == Kind::Semi) {
                    let mut ahead = toks.clone();
                    let mut after = next;
                    while after.is_some_and(|n| n.kind == Kind::Semi) {
                        after = ahead.next_tok();
                    }
                    if after.is_none() {
                        break;
                    }
                } else if next.is_none() {
                    break;
                }
                emit(Norm::Text(text, true), (t.start, t.end));
                while let Some(n) = next.filter(|n| n.kind == Kind::Semi) {
                    emit(Norm::Text(n.text(sql), true), (n.start, n.end));
                    next = toks.next_tok();
                }
            }
            _ => emit(Norm::Text(text, true), (t.start, t.end)),
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// Eight bytes (little-endian, zero-padded) with ASCII capitals made small, all at once.
#[inline(always)]
fn folded(x: u64) -> u64 {
    let low7 = x & !HIGHS;
    let at_least_a = low7.wrapping_add((0x80 - u64::from(b'A')) * ONES);
    let past_z = low7.wrapping_add((0x80 - u64::from(b'Z') - 1) * ONES);
    // High bit of each byte in `A..=Z` (bytes >= 0x80 excluded by `!x`).
    let capitals = at_least_a & !past_z & !x & HIGHS;
    x | (capitals >> 2)
}

#[inline(always)]
fn mix(h: u64, word: u64) -> u64 {
    let m = u128::from(h ^ word) * u128::from(MUL);
    (m as u64) ^ ((m >> 64) as u64)
}

/// The digest of `sql` in `dialect` (see the module's notes); 0 never comes out of it. Each
/// token is hashed eight bytes at a time (capitals folded eight at a time too), its length
/// mixed in after it, so that `a b` and `ab` differ.
pub fn digest(sql: &str, dialect: Dialect) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    walk(sql, dialect, |n, _| {
        let (bytes, fold) = match n {
            Norm::Lit => (&b"?"[..], false),
            Norm::Text(t, fold) => (t.as_bytes(), fold),
        };
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let x = u64::from_le_bytes(c.try_into().expect("eight bytes"));
            h = mix(h, if fold { folded(x) } else { x });
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            let x = u64::from_le_bytes(b);
            h = mix(h, if fold { folded(x) } else { x });
        }
        h = mix(h, bytes.len() as u64 | 1 << 63);
    });
    h.max(1)
}

/// [`digest`] of statement bytes (text in another encoding than UTF-8 read as UTF-8 with
/// replacement characters).
pub fn digest_bytes(sql: &[u8], dialect: Dialect) -> u64 {
    match std::str::from_utf8(sql) {
        Ok(text) => digest(text, dialect),
        Err(_) => digest(&String::from_utf8_lossy(sql), dialect),
    }
}

/// The normalised text of `sql`, cut at about `max` bytes (with `...` after it): its tokens
/// with one space where it had white space or a comment between them.
pub fn normalized(sql: &str, dialect: Dialect, max: usize) -> String {
    let mut out = String::with_capacity(sql.len().min(max) + 4);
    // Where the last token ended (None before the first).
    let mut prev_end = None;
    let mut full = false;
    walk(sql, dialect, |n, (start, end)| {
        if full {
            return;
        }
        let t = match n {
            Norm::Lit => "?",
            Norm::Text(t, _) => t,
        };
        // One space where the statement had any (or a comment), and between two minus
        // signs (`--` would start a comment).
        let space =
            prev_end.is_some_and(|e| e < start) || (out.ends_with('-') && t.starts_with('-'));
        if out.len() + usize::from(space) + t.len() > max {
            out.push_str("...");
            full = true;
            return;
        }
        if space {
            out.push(' ');
        }
        out.push_str(t);
        prev_end = Some(end);
    });
    out
}

/// The statements of `sql`: split at each `;` outside strings, quoted names and comments,
/// each from its first token to its last (the comments around it left out); empty ones
/// (`;;`, a final `;`) are not there. For a text the server runs as several statements (a
/// MySQL COM_QUERY with multi-statements): a body with `;` inside it (a stored program's
/// BEGIN ... END) splits here where the server does not.
pub fn statements(sql: &str, dialect: Dialect) -> Vec<&str> {
    let mut toks = Tokens::new(sql, lex(dialect));
    let mut out = Vec::new();
    let mut span: Option<(usize, usize)> = None;
    while let Some(t) = toks.next_tok() {
        if t.kind == Kind::Semi {
            if let Some((from, to)) = span.take() {
                out.push(&sql[from..to]);
            }
            continue;
        }
        span = Some((span.map_or(t.start, |(from, _)| from), t.end));
    }
    if let Some((from, to)) = span {
        out.push(&sql[from..to]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_splits_into_its_statements_where_the_server_would() {
        assert_eq!(
            statements(
                "INSERT INTO t VALUES (1, ';') ; /* a; */ SELECT `a;b` FROM t # c;\n;;SELECT 2;",
                MY
            ),
            [
                "INSERT INTO t VALUES (1, ';')",
                "SELECT `a;b` FROM t",
                "SELECT 2"
            ]
        );
        assert_eq!(
            statements("SELECT 'it\\'s;' ; DO 1", MY),
            ["SELECT 'it\\'s;'", "DO 1"]
        );
        assert_eq!(statements("SELECT 1", MY), ["SELECT 1"]);
        assert!(statements(" ; -- nothing", MY).is_empty());
        assert_eq!(
            statements("SELECT $$a;b$$; SELECT 2", PG),
            ["SELECT $$a;b$$", "SELECT 2"]
        );
        for s in statements("SELECT 1 ; SELECT * FROM t WHERE id = 'x;y'", MY) {
            assert_eq!(digest(s, MY), digest(&format!("{s};"), MY), "{s}");
        }
    }

    const PG: Dialect = Dialect::Postgres;
    const MY: Dialect = Dialect::MySql;

    #[test]
    fn literals_comments_space_and_case_do_not_make_another_statement() {
        let same = [
            "SELECT * FROM t WHERE id = 7",
            "select *  from t where id=8 -- again",
            "/* app */ SELECT * FROM t\nWHERE id = 1.5",
            "SELECT * FROM t WHERE id = 'seven'",
            "SELECT * FROM t WHERE id = 7;",
            "SELECT * FROM t WHERE id = 7 ; -- the end",
            "SELECT * FROM t WHERE id = 7;;",
            "SELECT * FROM t WHERE id = 7 ; ;\n;",
        ];
        for s in same {
            assert_eq!(digest(s, PG), digest(same[0], PG), "{s}");
        }
        // The normalised text has its statement's digest (found by the fuzz target: `;;`).
        for s in [";;", ";", "; ;SELECT 1;;", "SELECT 1;;SELECT 2;;;", ";;;x;"] {
            for d in [PG, MY] {
                let n = normalized(s, d, usize::MAX);
                assert_eq!(digest(&n, d), digest(s, d), "{s:?} normalised to {n:?}");
            }
        }
        assert_eq!(
            normalized("SELECT 1;;SELECT 2;;;", PG, 100),
            "SELECT ?;;SELECT ?"
        );
        assert_eq!(normalized(same[1], PG, 1000), "select * from t where id=?");
        let other = [
            "SELECT * FROM t WHERE id = $1",
            "SELECT * FROM u WHERE id = 7",
            "SELECT * FROM \"T\" WHERE id = 7",
            "SELECT * FROM t WHERE id = 7 AND x IS NULL",
            "SELECT * FROM t WHERE id = -7",
        ];
        for s in other {
            assert_ne!(digest(s, PG), digest(same[0], PG), "{s}");
        }
        assert_eq!(
            normalized(
                "SELECT a.b, f($1, 'x', 2.5) FROM a WHERE c::int > 0x1f;",
                PG,
                1000
            ),
            "SELECT a.b, f($1, ?, ?) FROM a WHERE c::int > ?"
        );
    }

    #[test]
    fn each_dialect_reads_its_own_strings_and_comments() {
        assert_eq!(
            normalized("SELECT \"a\", `b` # note\n FROM t WHERE x = ?", MY, 1000),
            "SELECT ?, `b` FROM t WHERE x = ?"
        );
        assert_eq!(
            normalized("SELECT $$a;b$$, E'c\\'d' FROM t", PG, 1000),
            "SELECT ?, ? FROM t"
        );
        // A MySQL executable comment is code.
        assert_eq!(
            normalized("/*!40101 SET NAMES utf8 */", MY, 1000),
            "SET NAMES utf8"
        );
    }

    #[test]
    fn capitals_are_folded_eight_at_a_time_and_nothing_else_is() {
        let all: Vec<u8> = (0..=255).collect();
        for c in all.chunks(8) {
            let x = u64::from_le_bytes(c.try_into().unwrap());
            let want: Vec<u8> = c.iter().map(u8::to_ascii_lowercase).collect();
            assert_eq!(folded(x).to_le_bytes().to_vec(), want);
        }
        assert_eq!(digest("SELECT Abc", PG), digest("select aBC", PG));
        assert_ne!(digest("SELECT \"Abc\"", PG), digest("SELECT \"abc\"", PG));
        assert_ne!(digest("SELECT ab c", PG), digest("SELECT a bc", PG));
    }

    #[test]
    fn long_texts_are_cut_but_hashed_whole() {
        let long = format!("SELECT {} FROM t", vec!["a"; 500].join(", "));
        let text = normalized(&long, PG, 100);
        assert!(text.len() <= 103 && text.ends_with("..."), "{text}");
        let longer = format!("SELECT {} FROM t", vec!["a"; 501].join(", "));
        assert_ne!(digest(&long, PG), digest(&longer, PG));
        assert_ne!(digest("", PG), 0);
    }
}
