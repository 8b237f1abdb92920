//! The classifier's token scanner: SQL text to tokens with byte spans, for both dialects
//! (PostgreSQL dollar quotes and E'' strings; MySQL `#` comments, backticks, `/*! */`). No
//! allocation, no UTF-8 decoding: one lookup in a 256-entry byte-class table dispatches each
//! token, and every byte >= 0x80 is a word byte, so token ends are always char boundaries.

/// How a dialect writes comments, strings and identifiers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lex {
    /// `/* /* */ */` nests (PostgreSQL).
    pub(crate) nested_comments: bool,
    /// `/*! .. */` and `/*M! .. */` are code (MySQL, MariaDB).
    pub(crate) exec_comments: bool,
    /// `#` starts a line comment.
    pub(crate) hash_comments: bool,
    /// `--` starts a comment only when followed by whitespace, a control byte or the end.
    pub(crate) strict_dash: bool,
    /// Backslash escapes inside every string; `"` quotes a string (MySQL).
    pub(crate) mysql_strings: bool,
    /// Backticks quote identifiers.
    pub(crate) backticks: bool,
    /// `$tag$ .. $tag$` (PostgreSQL); otherwise `$` is a word byte.
    pub(crate) dollar_quotes: bool,
}

impl Lex {
    pub(crate) const POSTGRES: Lex = Lex {
        nested_comments: true,
        exec_comments: false,
        hash_comments: false,
        strict_dash: false,
        mysql_strings: false,
        backticks: false,
        dollar_quotes: true,
    };
    pub(crate) const MYSQL: Lex = Lex {
        nested_comments: false,
        exec_comments: true,
        hash_comments: true,
        strict_dash: true,
        mysql_strings: true,
        backticks: true,
        dollar_quotes: false,
    };
    /// For `SET switchyard.route` in either dialect: PostgreSQL rules, plus backtick
    /// identifiers; only what is a comment in both dialects is skipped (no `#`, `--` only
    /// before whitespace, `/*! .. */` is code), so a statement hidden in what one of the two
    /// servers would run is never taken for part of a hint.
    pub(crate) const EITHER: Lex = Lex {
        strict_dash: true,
        exec_comments: true,
        backticks: true,
        ..Lex::POSTGRES
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Keyword, identifier or number.
    Word,
    /// `".."` (PostgreSQL) or `` `..` `` (MySQL) identifier.
    QIdent,
    /// String literal of any kind.
    Str,
    Open,
    Close,
    Dot,
    /// `;` (never returned by a [`Cursor`]).
    Semi,
    /// `:=` (MySQL).
    Assign,
    /// `@`.
    At,
    /// Any other punctuation byte.
    Punct,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Tok {
    pub(crate) fn text(self, s: &str) -> &str {
        &s[self.start..self.end]
    }

    /// For quoted tokens, the text between the quotes (doubled quotes left as they are).
    pub(crate) fn inner(self, s: &str) -> &str {
        let t = self.text(s).as_bytes();
        let Some(open) = t
            .iter()
            .position(|&b| matches!(b, b'\'' | b'"' | b'`' | b'$'))
        else {
            return self.text(s);
        };
        let q = t[open];
        if q == b'$' {
            // $tag$body$tag$
            let Some(tag_len) = t[open + 1..].iter().position(|&b| b == b'$') else {
                return "";
            };
            let body = open + tag_len + 2;
            let tag = &t[open..body];
            let close = if t.len() >= body + tag.len() && t.ends_with(tag) {
                t.len() - tag.len()
            } else {
                t.len()
            };
            return &s[self.start + body..self.start + close];
        }
        let end = if t.len() > open + 1 && t[t.len() - 1] == q {
            t.len() - 1
        } else {
            t.len()
        };
        &s[self.start + open + 1..self.start + end]
    }
}

/// Tokens of a SQL string (all statements); comments and whitespace are skipped.
#[derive(Clone)]
pub(crate) struct Tokens<'a> {
    pub(crate) text: &'a str,
    pub(crate) pos: usize,
    /// A reference, not a copy: the scanner's state stays a few words.
    pub(crate) lex: &'static Lex,
    /// Inside a MySQL `/*! .. */` executable comment.
    pub(crate) in_exec: bool,
    /// A `;` or the end has been reached for the current statement.
    pub(crate) stmt_done: bool,
}

/// What a byte starts, for the scanner's dispatch (the low bits of [`CLASS`]).
const SPACE: u8 = 0;
/// ASCII letter other than `e`/`E`, digit, `_`, any byte >= 0x80.
const WORD: u8 = 1;
/// `e`/`E`: a word, or the start of a PostgreSQL `E'..'` string.
const LETTER_E: u8 = 2;
const DOLLAR: u8 = 3;
const QUOTE: u8 = 4;
const DQUOTE: u8 = 5;
const BACKTICK: u8 = 6;
const OPEN: u8 = 7;
const CLOSE: u8 = 8;
const DOT: u8 = 9;
const SEMI: u8 = 10;
const AT: u8 = 11;
const COLON: u8 = 12;
const DASH: u8 = 13;
const SLASH: u8 = 14;
const HASH: u8 = 15;
const STAR: u8 = 16;
const PUNCT: u8 = 17;
/// Flag: the byte continues a word (`WORD`, `LETTER_E`, `$`).
const CONT: u8 = 0x80;

/// One table lookup per byte instead of a chain of comparisons.
static CLASS: [u8; 256] = {
    let mut t = [PUNCT; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'e' | b'E' => LETTER_E | CONT,
            b'$' => DOLLAR | CONT,
            _ if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 => WORD | CONT,
            _ if b.is_ascii_whitespace() => SPACE,
            b'\'' => QUOTE,
            b'"' => DQUOTE,
            b'`' => BACKTICK,
            b'(' => OPEN,
            b')' => CLOSE,
            b'.' => DOT,
            b';' => SEMI,
            b'@' => AT,
            b':' => COLON,
            b'-' => DASH,
            b'/' => SLASH,
            b'#' => HASH,
            b'*' => STAR,
            _ => PUNCT,
        };
        i += 1;
    }
    t
};

/// The end of the word whose bytes continue from `i`.
#[inline(always)]
fn word_end(b: &[u8], i: usize) -> usize {
    let mut rest = &b[i..];
    while let [c, tail @ ..] = rest {
        if CLASS[*c as usize] & CONT == 0 {
            break;
        }
        rest = tail;
    }
    b.len() - rest.len()
}

/// From `i` to the end of its line (the `\n` is left for the whitespace skip).
#[inline(always)]
fn line_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |n| i + n)
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(text: &'a str, lex: &'static Lex) -> Self {
        Tokens {
            text,
            pos: 0,
            lex,
            in_exec: false,
            stmt_done: false,
        }
    }

    /// The next token, skipping whitespace and comments first; `None` at the end (with `pos`
    /// at the end). One dispatch on the first byte's class per token or piece of trivia.
    #[inline(always)]
    pub(crate) fn next_tok(&mut self) -> Option<Tok> {
        let b = self.text.as_bytes();
        let lex = self.lex;
        let mut i = self.pos;
        let (kind, start, end) = loop {
            let Some(&c) = b.get(i) else {
                self.pos = b.len();
                return None;
            };
            let start = i;
            let class = CLASS[c as usize];
            // The two commonest cases first, as plain branches: most bytes before a token are
            // single spaces and most tokens are words.
            if class == SPACE {
                i += 1;
                continue;
            }
            if class == WORD | CONT {
                break (Kind::Word, start, word_end(b, start + 1));
            }
            let one = |kind| (kind, start, start + 1);
            break match class & !CONT {
                SPACE | WORD => unreachable!("handled above"),
                LETTER_E => {
                    let end = word_end(b, start + 1);
                    if end == start + 1 && !lex.mysql_strings && b.get(end) == Some(&b'\'') {
                        // E'..' escape string
                        (Kind::Str, start, skip_quoted(b, end, b'\'', true))
                    } else {
                        (Kind::Word, start, end)
                    }
                }
                DOLLAR if !lex.dollar_quotes => (Kind::Word, start, word_end(b, start + 1)),
                DOLLAR => match dollar_tag_end(b, start) {
                    Some(tag_end) => (Kind::Str, start, skip_dollar_body(b, start, tag_end)),
                    None => one(Kind::Punct),
                },
                QUOTE => (
                    Kind::Str,
                    start,
                    skip_quoted(b, start, b'\'', lex.mysql_strings),
                ),
                DQUOTE if lex.mysql_strings => {
                    (Kind::Str, start, skip_quoted(b, start, b'"', true))
                }
                DQUOTE => (Kind::QIdent, start, skip_quoted(b, start, b'"', false)),
                BACKTICK if lex.backticks => {
                    (Kind::QIdent, start, skip_quoted(b, start, b'`', false))
                }
                OPEN => one(Kind::Open),
                CLOSE => one(Kind::Close),
                DOT => one(Kind::Dot),
                SEMI => one(Kind::Semi),
                AT => one(Kind::At),
                COLON if lex.mysql_strings && b.get(start + 1) == Some(&b'=') => {
                    (Kind::Assign, start, start + 2)
                }
                DASH if b.get(start + 1) == Some(&b'-')
                    && !(lex.strict_dash && b.get(start + 2).is_some_and(|&n| n > b' ')) =>
                {
                    i = line_end(b, start);
                    continue;
                }
                HASH if lex.hash_comments => {
                    i = line_end(b, start);
                    continue;
                }
                SLASH if b.get(start + 1) == Some(&b'*') => {
                    if lex.exec_comments {
                        let m = usize::from(b.get(start + 2) == Some(&b'M'));
                        if b.get(start + 2 + m) == Some(&b'!') {
                            // Executable comment: its body is code. Skip the marker and version.
                            i = start + 3 + m;
                            while i < b.len() && b[i].is_ascii_digit() {
                                i += 1;
                            }
                            self.in_exec = true;
                            continue;
                        }
                    }
                    i = skip_block_comment(b, start, lex.nested_comments);
                    continue;
                }
                STAR if self.in_exec && b.get(start + 1) == Some(&b'/') => {
                    self.in_exec = false;
                    i = start + 2;
                    continue;
                }
                _ => one(Kind::Punct),
            };
        };
        debug_assert!(end <= b.len());
        self.pos = end;
        Some(Tok { kind, start, end })
    }
}

/// A view of one statement (or of a parenthesized part of one, `stop_at_close`).
pub(crate) struct Cursor<'t, 'a> {
    pub(crate) toks: &'t mut Tokens<'a>,
    pub(crate) stop_at_close: bool,
    pub(crate) depth: u32,
    pub(crate) done: bool,
    /// End of the last token returned.
    pub(crate) last_end: usize,
}

impl<'t, 'a> Cursor<'t, 'a> {
    pub(crate) fn new(toks: &'t mut Tokens<'a>, stop_at_close: bool) -> Self {
        let last_end = toks.pos;
        Cursor {
            toks,
            stop_at_close,
            depth: 0,
            done: false,
            last_end,
        }
    }

    #[inline(always)]
    pub(crate) fn next(&mut self) -> Option<Tok> {
        if self.done || self.toks.stmt_done {
            return None;
        }
        let Some(t) = self.toks.next_tok() else {
            self.toks.stmt_done = true;
            return None;
        };
        match t.kind {
            Kind::Semi => {
                self.toks.stmt_done = true;
                return None;
            }
            Kind::Open if self.stop_at_close => self.depth += 1,
            Kind::Close if self.stop_at_close => {
                if self.depth == 0 {
                    self.done = true;
                    return None;
                }
                self.depth -= 1;
            }
            _ => {}
        }
        self.last_end = t.end;
        Some(t)
    }

    /// The next token if it is a word.
    pub(crate) fn next_word(&mut self) -> Option<&'a str> {
        let text = self.toks.text;
        self.next()
            .filter(|t| t.kind == Kind::Word)
            .map(|t| t.text(text))
    }

    pub(crate) fn drain(&mut self) {
        while self.next().is_some() {}
    }

    /// Calls `f` with each remaining token, as [`Cursor::next`] would return them. The
    /// scanner's state lives in locals for the loop (a cursor only refers to its `Tokens`),
    /// which lets the compiler keep it in registers: the read-shaped scan of a long statement
    /// spends most of its time here.
    #[inline(always)]
    pub(crate) fn for_each(&mut self, mut f: impl FnMut(Tok)) {
        let mut toks = self.toks.clone();
        let mut cur = Cursor {
            toks: &mut toks,
            stop_at_close: self.stop_at_close,
            depth: self.depth,
            done: self.done,
            last_end: self.last_end,
        };
        while let Some(t) = cur.next() {
            f(t);
        }
        (self.depth, self.done, self.last_end) = (cur.depth, cur.done, cur.last_end);
        *self.toks = toks;
    }

    /// Transaction modes in the rest of the statement: `Some(true)` for READ ONLY,
    /// `Some(false)` for READ WRITE (which wins), `None` if neither.
    pub(crate) fn read_only_mode(&mut self) -> Option<bool> {
        let text = self.toks.text;
        let mut mode = None;
        let mut prev_read = false;
        while let Some(t) = self.next() {
            let is_word = t.kind == Kind::Word;
            let w = t.text(text);
            if prev_read && is_word {
                if w.eq_ignore_ascii_case("ONLY") && mode.is_none() {
                    mode = Some(true);
                } else if w.eq_ignore_ascii_case("WRITE") {
                    mode = Some(false);
                }
            }
            prev_read = is_word && w.eq_ignore_ascii_case("READ");
        }
        mode
    }
}

pub(crate) fn skip_block_comment(b: &[u8], mut i: usize, nested: bool) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') && (nested || depth == 0) {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// From the opening quote at `i` to just past the closing one (or the end).
pub(crate) fn skip_quoted(b: &[u8], mut i: usize, quote: u8, backslash_escapes: bool) -> usize {
    i += 1;
    while i < b.len() {
        let c = b[i];
        if backslash_escapes && c == b'\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// If a dollar-quote tag (`$tag$`, tag possibly empty) starts at `i`, the index just past it.
pub(crate) fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len()
        && (b[j].is_ascii_alphabetic()
            || b[j] == b'_'
            || b[j] >= 0x80
            || (j > i + 1 && b[j].is_ascii_digit()))
    {
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

/// Past the closing tag of a dollar-quoted body whose opening tag is `b[i..tag_end]`.
pub(crate) fn skip_dollar_body(b: &[u8], i: usize, tag_end: usize) -> usize {
    let tag = &b[i..tag_end];
    let mut k = tag_end;
    while k + tag.len() <= b.len() {
        if b[k] == b'$' && &b[k..k + tag.len()] == tag {
            return k + tag.len();
        }
        k += 1;
    }
    b.len()
}

/// The statements of a MySQL text (split at top-level `;`, never inside strings, quoted
/// identifiers or comments), each without its `;`; empty ones skipped.
pub fn mysql_statements(sql: &str) -> Vec<&str> {
    let mut toks = Tokens::new(sql, &Lex::MYSQL);
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(t) = toks.next_tok() {
        if t.kind == Kind::Semi {
            if !sql[start..t.start].trim().is_empty() {
                out.push(&sql[start..t.start]);
            }
            start = t.end;
        }
    }
    if !sql[start..].trim().is_empty() {
        out.push(&sql[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn mysql_statements_split_at_top_level_semicolons() {
        assert_eq!(
            mysql_statements(
                "SET NAMES latin1; SELECT ';', `a;b`, 'it\\';s' /* ; */;; SELECT 2 -- ;\n"
            ),
            vec![
                "SET NAMES latin1",
                " SELECT ';', `a;b`, 'it\\';s' /* ; */",
                " SELECT 2 -- ;\n"
            ]
        );
        assert_eq!(mysql_statements("SELECT 1"), vec!["SELECT 1"]);
        assert!(mysql_statements(" ; ").is_empty());
    }

    use super::*;

    fn kinds<'a>(sql: &'a str, lex: &'static Lex) -> Vec<(Kind, &'a str)> {
        let mut t = Tokens::new(sql, lex);
        std::iter::from_fn(|| t.next_tok())
            .map(|tok| (tok.kind, tok.text(sql)))
            .collect()
    }

    use Kind::*;

    #[test]
    fn dollar_quotes_params_and_words() {
        let pg = &Lex::POSTGRES;
        assert_eq!(
            kinds("$1 $$a;b$$ $t$ x $t$ a$b $", pg),
            [
                (Punct, "$"),
                (Word, "1"),
                (Str, "$$a;b$$"),
                (Str, "$t$ x $t$"),
                (Word, "a$b"),
                (Punct, "$"),
            ]
        );
        // A tag may not start with a digit; an unterminated body runs to the end.
        assert_eq!(kinds("$1$", pg), [(Punct, "$"), (Word, "1$")]);
        assert_eq!(kinds("$a$ never closed", pg), [(Str, "$a$ never closed")]);
        assert_eq!(kinds("$é$x$é$", pg), [(Str, "$é$x$é$")]);
        // MySQL: `$` is a word byte.
        assert_eq!(kinds("$a$ b", &Lex::MYSQL), [(Word, "$a$"), (Word, "b")]);
    }

    #[test]
    fn comments_nest_only_in_postgres() {
        assert_eq!(
            kinds("/* a /* b */ c */ x -- y\nz", &Lex::POSTGRES),
            [(Word, "x"), (Word, "z")]
        );
        assert_eq!(
            kinds("/* a /* b */ c */ x", &Lex::MYSQL),
            [(Word, "c"), (Punct, "*"), (Punct, "/"), (Word, "x")]
        );
        assert_eq!(kinds("/* never closed", &Lex::POSTGRES), []);
        assert_eq!(kinds("x /", &Lex::POSTGRES), [(Word, "x"), (Punct, "/")]);
    }

    #[test]
    fn escape_strings() {
        let pg = &Lex::POSTGRES;
        assert_eq!(
            kinds(r"E'it\'s' e'\\' x", pg),
            [(Str, r"E'it\'s'"), (Str, r"e'\\'"), (Word, "x")]
        );
        // Only a lone `e` starts one; `xe'..'` is a word and a plain string.
        assert_eq!(
            kinds(r"xe'a\' b", pg),
            [(Word, "xe"), (Str, r"'a\'"), (Word, "b")]
        );
        assert_eq!(
            kinds("'it''s' 'open", pg),
            [(Str, "'it''s'"), (Str, "'open")]
        );
        // MySQL: `e` is just a word, and every string has backslash escapes.
        assert_eq!(
            kinds(r"e'a\'b' ", &Lex::MYSQL),
            [(Word, "e"), (Str, r"'a\'b'")]
        );
    }

    #[test]
    fn mysql_quotes_comments_and_code_comments() {
        let my = &Lex::MYSQL;
        assert_eq!(
            kinds("`a``b` \"s\\\"t\" # c\nx --y -- z\nw", my),
            [
                (QIdent, "`a``b`"),
                (Str, "\"s\\\"t\""),
                (Word, "x"),
                (Punct, "-"),
                (Punct, "-"),
                (Word, "y"),
                (Word, "w"),
            ]
        );
        assert_eq!(
            kinds("/*!50000 FOR UPDATE */ /*M!100 x */ @a := 1", my),
            [
                (Word, "FOR"),
                (Word, "UPDATE"),
                (Word, "x"),
                (At, "@"),
                (Word, "a"),
                (Assign, ":="),
                (Word, "1"),
            ]
        );
        // PostgreSQL: `#` and backticks are punctuation, `"` quotes an identifier.
        assert_eq!(
            kinds("# `x` \"a\"\"b\"", &Lex::POSTGRES),
            [
                (Punct, "#"),
                (Punct, "`"),
                (Word, "x"),
                (Punct, "`"),
                (QIdent, "\"a\"\"b\""),
            ]
        );
    }

    #[test]
    fn single_byte_tokens_and_non_ascii_words() {
        assert_eq!(
            kinds("f(a.b);@x,é1 ", &Lex::POSTGRES),
            [
                (Word, "f"),
                (Open, "("),
                (Word, "a"),
                (Dot, "."),
                (Word, "b"),
                (Close, ")"),
                (Semi, ";"),
                (At, "@"),
                (Word, "x"),
                (Punct, ","),
                (Word, "é1"),
            ]
        );
    }

    /// The scanner before its dispatch became a table (comparison chains per byte), kept as
    /// the specification the fast one must match token for token.
    fn reference(text: &str, lex: &Lex) -> Vec<(Kind, usize, usize)> {
        let b = text.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
        let (mut i, mut in_exec, mut out) = (0, false, Vec::new());
        loop {
            // Trivia.
            while i < b.len() {
                let c = b[i];
                if c.is_ascii_whitespace() {
                    i += 1;
                } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
                    if lex.strict_dash && b.get(i + 2).is_some_and(|&n| n > b' ') {
                        break;
                    }
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                } else if c == b'#' && lex.hash_comments {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
                    let m = usize::from(b.get(i + 2) == Some(&b'M'));
                    if lex.exec_comments && b.get(i + 2 + m) == Some(&b'!') {
                        i += 3 + m;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                        in_exec = true;
                    } else {
                        i = skip_block_comment(b, i, lex.nested_comments);
                    }
                } else if c == b'*' && in_exec && b.get(i + 1) == Some(&b'/') {
                    in_exec = false;
                    i += 2;
                } else {
                    break;
                }
            }
            let start = i;
            let Some(&c) = b.get(start) else {
                return out;
            };
            let (kind, end) = match c {
                b';' => (Semi, start + 1),
                b'(' => (Open, start + 1),
                b')' => (Close, start + 1),
                b'.' => (Dot, start + 1),
                b'@' => (At, start + 1),
                b':' if lex.mysql_strings && b.get(start + 1) == Some(&b'=') => (Assign, start + 2),
                b'\'' => (Str, skip_quoted(b, start, b'\'', lex.mysql_strings)),
                b'"' if lex.mysql_strings => (Str, skip_quoted(b, start, b'"', true)),
                b'"' => (QIdent, skip_quoted(b, start, b'"', false)),
                b'`' if lex.backticks => (QIdent, skip_quoted(b, start, b'`', false)),
                b'$' if lex.dollar_quotes => match dollar_tag_end(b, start) {
                    Some(tag_end) => (Str, skip_dollar_body(b, start, tag_end)),
                    None => (Punct, start + 1),
                },
                _ if word(c) => {
                    let mut j = start + 1;
                    while j < b.len() && word(b[j]) {
                        j += 1;
                    }
                    if !lex.mysql_strings
                        && j == start + 1
                        && (c | 0x20) == b'e'
                        && b.get(j) == Some(&b'\'')
                    {
                        (Str, skip_quoted(b, j, b'\'', true))
                    } else {
                        (Word, j)
                    }
                }
                _ => (Punct, start + 1),
            };
            i = end.min(b.len());
            out.push((kind, start, i));
        }
    }

    #[test]
    fn matches_the_reference_scanner() {
        const PIECES: &[&str] = &[
            " ", "\n", "\t", "x", "E", "e", "é", "1", "_", "$", "$$", "$a$", "'", "''", "\"", "`",
            "\\", "(", ")", ".", ";", "@", ":", ":=", "=", "-", "--", "-- ", "/", "/*", "*/", "*",
            "/*!", "/*M!", "/*!5", "#", ",", "+", "\u{0b}", "\r",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (rand() % 24) as usize;
            let sql: String = (0..len)
                .map(|_| PIECES[(rand() % PIECES.len() as u64) as usize])
                .collect();
            for lex in [&Lex::POSTGRES, &Lex::MYSQL, &Lex::EITHER] {
                let mut t = Tokens::new(&sql, lex);
                let ours: Vec<_> = std::iter::from_fn(|| t.next_tok())
                    .map(|t| (t.kind, t.start, t.end))
                    .collect();
                assert_eq!(ours, reference(&sql, lex), "{sql:?} {lex:?}");
                assert_eq!(t.pos, sql.len(), "{sql:?}");
            }
        }
    }
}
