//! Routing hints written by the client.
//!
//! * Per statement: a leading comment `/* switchyard:primary */` or `/* switchyard:replica */`
//!   (also `-- switchyard:replica` and MySQL's `# switchyard:replica`), before the first
//!   keyword. Whitespace inside the comment and ASCII case do not matter
//!   (`/*SWITCHYARD : Replica*/` counts); the comment must hold nothing else. Several leading
//!   comments may precede the statement; the first hint among them wins. MySQL executable
//!   comments (`/*! .. */`, `/*M! .. */`) are code, not hints: the search stops there.
//!   How a hint combines with the classification is in [`super::classify`]: `primary` always
//!   wins, `replica` only for reads and for statements the classifier did not understand.
//! * Per session: `SET [SESSION] switchyard.route = 'primary'|'replica'|'auto'` (or `TO`, any
//!   quotes or none, any case, optional `;`), `SET switchyard.route TO DEFAULT` and
//!   `RESET switchyard.route` (both mean `auto`). The session answers these itself; they never
//!   reach a backend. `SET LOCAL switchyard.route ..` (transaction scope) and unknown values
//!   are not recognised ([`route_setting`] returns `None`), so the classifier routes them like
//!   any SET. Only comments that both dialects agree on may surround it (`/* */`, `-- ` with a
//!   space); anything else after the value (`# x`, `--x`, `/*! .. */`, a second statement)
//!   makes it not a route setting, so no statement is ever swallowed with it.

use super::tokens::{skip_block_comment, Kind, Lex, Tokens};

/// A client's routing hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Primary,
    Replica,
}

/// The hint in the comments before the first keyword of `sql`, if any. Never allocates.
pub fn leading_hint(sql: &str) -> Option<Hint> {
    let b = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let rest = &b[i..];
        if rest.starts_with(b"/*") {
            if rest.get(2) == Some(&b'!') || rest.starts_with(b"/*M!") {
                return None;
            }
            // The body up to the first `*/` (a hint comment has no nested comment).
            let body = &rest[2..];
            let body_len = body
                .windows(2)
                .position(|w| w == b"*/")
                .unwrap_or(body.len());
            if let Some(h) = hint_text(&body[..body_len]) {
                return Some(h);
            }
            i = skip_block_comment(b, i, true);
        } else if rest.starts_with(b"--") || rest.first() == Some(&b'#') {
            let skip = if rest[0] == b'#' { 1 } else { 2 };
            let body = &rest[skip..];
            let line = body.iter().position(|&c| c == b'\n').unwrap_or(body.len());
            if let Some(h) = hint_text(&body[..line]) {
                return Some(h);
            }
            i += skip + line;
        } else {
            return None;
        }
    }
}

/// `switchyard:primary` / `switchyard:replica`, ignoring ASCII whitespace and case.
fn hint_text(body: &[u8]) -> Option<Hint> {
    let squeezed = || {
        body.iter()
            .filter(|c| !c.is_ascii_whitespace())
            .map(u8::to_ascii_lowercase)
    };
    if squeezed().eq(b"switchyard:primary".iter().copied()) {
        Some(Hint::Primary)
    } else if squeezed().eq(b"switchyard:replica".iter().copied()) {
        Some(Hint::Replica)
    } else {
        None
    }
}

/// `SET switchyard.route = 'primary'|'replica'|'auto'` (also `TO`, quotes optional,
/// case-insensitive, optional trailing semicolon, `SET SESSION ..`, `= DEFAULT`,
/// `RESET switchyard.route`): `Some(Some(hint))`, or `Some(None)` for auto; `None` if the
/// statement is not that. Never allocates.
pub fn route_setting(sql: &str) -> Option<Option<Hint>> {
    let mut t = Tokens::new(sql, &Lex::EITHER);
    let word = |t: &mut Tokens<'_>| -> Option<&str> {
        let tok = t.next_tok()?;
        (tok.kind == Kind::Word).then(|| tok.text(sql))
    };
    let first = word(&mut t)?;
    let is_set = first.eq_ignore_ascii_case("SET");
    if !is_set && !first.eq_ignore_ascii_case("RESET") {
        return None;
    }
    let mut name = word(&mut t)?;
    if is_set && name.eq_ignore_ascii_case("SESSION") {
        name = word(&mut t)?;
    }
    if !name.eq_ignore_ascii_case("switchyard") || t.next_tok()?.kind != Kind::Dot {
        return None;
    }
    if !word(&mut t)?.eq_ignore_ascii_case("route") {
        return None;
    }
    let value = if is_set {
        let op = t.next_tok()?;
        let is_op = match op.kind {
            Kind::Punct => op.text(sql) == "=",
            Kind::Word => op.text(sql).eq_ignore_ascii_case("TO"),
            _ => false,
        };
        if !is_op {
            return None;
        }
        let v = t.next_tok()?;
        let v = match v.kind {
            Kind::Word => v.text(sql),
            Kind::Str | Kind::QIdent => {
                let text = v.text(sql).as_bytes();
                let open = text.iter().position(|&c| matches!(c, b'\'' | b'"' | b'`'));
                match open {
                    // Terminated: ends with its opening quote, which is not that same byte.
                    Some(o) if text.len() >= o + 2 && text[text.len() - 1] == text[o] => {
                        v.inner(sql)
                    }
                    _ => return None,
                }
            }
            _ => return None,
        };
        if v.eq_ignore_ascii_case("primary") {
            Some(Hint::Primary)
        } else if v.eq_ignore_ascii_case("replica") {
            Some(Hint::Replica)
        } else if v.eq_ignore_ascii_case("auto") || v.eq_ignore_ascii_case("default") {
            None
        } else {
            return None;
        }
    } else {
        None
    };
    match t.next_tok() {
        None => Some(value),
        Some(s) if s.kind == Kind::Semi && t.next_tok().is_none() => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_hints() {
        let cases: &[(&str, Option<Hint>)] = &[
            ("/* switchyard:primary */ SELECT 1", Some(Hint::Primary)),
            ("/*switchyard:replica*/SELECT 1", Some(Hint::Replica)),
            (
                "  /*  SwitchYard : REPLICA  */\nselect 1",
                Some(Hint::Replica),
            ),
            ("/* \tswitchyard:\nprimary */ select 1", Some(Hint::Primary)),
            ("-- switchyard:replica\nSELECT 1", Some(Hint::Replica)),
            ("--switchyard:primary\nSELECT 1", Some(Hint::Primary)),
            ("# switchyard:replica\nSELECT 1", Some(Hint::Replica)),
            (
                "/* app */ /* switchyard:replica */ SELECT 1",
                Some(Hint::Replica),
            ),
            (
                "-- x\n/* switchyard:primary */ SELECT 1",
                Some(Hint::Primary),
            ),
            (
                "/* switchyard:primary */ /* switchyard:replica */ SELECT 1",
                Some(Hint::Primary),
            ),
            (
                "/* /* nested */ */ /* switchyard:replica */ SELECT 1",
                Some(Hint::Replica),
            ),
            ("SELECT 1 /* switchyard:replica */", None),
            ("SELECT /* switchyard:replica */ 1", None),
            ("/* switchyard:replica please */ SELECT 1", None),
            ("/* switchyard:standby */ SELECT 1", None),
            ("/* switchyard */ SELECT 1", None),
            ("/*!40101 switchyard:replica */ SELECT 1", None),
            ("/*! */ /* switchyard:replica */ SELECT 1", None),
            ("'/* switchyard:replica */'", None),
            ("/* switchyard:replica", Some(Hint::Replica)),
            ("", None),
            ("/*", None),
            ("--", None),
            ("   ", None),
        ];
        for (sql, want) in cases {
            assert_eq!(leading_hint(sql), *want, "{sql:?}");
        }
    }

    #[test]
    fn route_settings() {
        use Hint::*;
        let cases: &[(&str, Option<Option<Hint>>)] = &[
            ("SET switchyard.route = 'replica'", Some(Some(Replica))),
            ("SET switchyard.route = 'primary'", Some(Some(Primary))),
            ("SET switchyard.route = 'auto'", Some(None)),
            ("set SWITCHYARD.ROUTE to Replica", Some(Some(Replica))),
            ("SET switchyard.route TO primary;", Some(Some(Primary))),
            (
                "SET switchyard.route = \"replica\" ;  ",
                Some(Some(Replica)),
            ),
            ("SET switchyard.route = `auto`", Some(None)),
            (
                "SET SESSION switchyard.route = 'REPLICA'",
                Some(Some(Replica)),
            ),
            (
                "  /* c */ SET switchyard . route = 'replica' -- why\n",
                Some(Some(Replica)),
            ),
            ("SET switchyard.route TO DEFAULT", Some(None)),
            ("RESET switchyard.route", Some(None)),
            ("reset switchyard.route;", Some(None)),
            ("SET switchyard.route = 'nowhere'", None),
            ("SET switchyard.route = ''", None),
            ("SET switchyard.route", None),
            ("SET switchyard.route =", None),
            ("SET switchyard.route = 'replica' 'x'", None),
            ("SET switchyard.route = 'replica'; SELECT 1", None),
            ("SET LOCAL switchyard.route = 'replica'", None),
            ("SET switchyard.other = 'replica'", None),
            ("SET search_path = 'replica'", None),
            ("SELECT 'SET switchyard.route = replica'", None),
            ("SET switchyard.route = 'replica", None),
            ("SET switchyard.route := 'replica'", None),
            ("SET switchyard.route = replica # x", None),
            ("SET switchyard.route = replica --x; DELETE FROM t", None),
            ("SET switchyard.route = replica /*!; DELETE FROM t */", None),
            (
                "SET switchyard.route = replica /* ok */ -- ok\n",
                Some(Some(Replica)),
            ),
            ("", None),
        ];
        for (sql, want) in cases {
            assert_eq!(route_setting(sql), *want, "{sql:?}");
        }
    }
}
