//! The classifier's token scanner: SQL text to tokens with byte spans, for both dialects
//! (PostgreSQL dollar quotes and E'' strings; MySQL `#` comments, backticks, `/*! */`). No
//! allocation.

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
pub(crate) struct Tokens<'a> {
    pub(crate) text: &'a str,
    pub(crate) pos: usize,
    pub(crate) lex: Lex,
    /// Inside a MySQL `/*! .. */` executable comment.
    pub(crate) in_exec: bool,
    /// A `;` or the end has been reached for the current statement.
    pub(crate) stmt_done: bool,
}

/// Byte classes for the scanner's inner loops.
const WORD: u8 = 1; // continues a word: ASCII letter, digit, `_`, `$`, any byte >= 0x80
const SPACE: u8 = 2; // ASCII whitespace
const TRIVIA: u8 = 4; // may start whitespace or a comment (or end a MySQL `/*!`)

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 {
            t[i] = WORD;
        }
        if b.is_ascii_whitespace() {
            t[i] = SPACE | TRIVIA;
        }
        if matches!(b, b'-' | b'/' | b'#' | b'*') {
            t[i] = TRIVIA;
        }
        i += 1;
    }
    t
};

impl<'a> Tokens<'a> {
    pub(crate) fn new(text: &'a str, lex: Lex) -> Self {
        Tokens {
            text,
            pos: 0,
            lex,
            in_exec: false,
            stmt_done: false,
        }
    }

    /// Skip whitespace and comments; `pos` ends at the next token or the end.
    #[inline(always)]
    pub(crate) fn skip_trivia(&mut self) {
        let b = self.text.as_bytes();
        let lex = self.lex;
        let mut i = self.pos;
        while i < b.len() {
            let c = b[i];
            let class = CLASS[c as usize];
            if class & TRIVIA == 0 {
                break;
            } else if class & SPACE != 0 {
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
                if lex.exec_comments {
                    let m = usize::from(b.get(i + 2) == Some(&b'M'));
                    if b.get(i + 2 + m) == Some(&b'!') {
                        // Executable comment: its body is code. Skip the marker and version.
                        i += 3 + m;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                        self.in_exec = true;
                        continue;
                    }
                }
                i = skip_block_comment(b, i, lex.nested_comments);
            } else if c == b'*' && self.in_exec && b.get(i + 1) == Some(&b'/') {
                self.in_exec = false;
                i += 2;
            } else {
                break;
            }
        }
        self.pos = i;
    }

    #[inline(always)]
    pub(crate) fn next_tok(&mut self) -> Option<Tok> {
        self.skip_trivia();
        let b = self.text.as_bytes();
        let lex = self.lex;
        let start = self.pos;
        let c = *b.get(start)?;
        let (kind, end) = match c {
            b';' => (Kind::Semi, start + 1),
            b'(' => (Kind::Open, start + 1),
            b')' => (Kind::Close, start + 1),
            b'.' => (Kind::Dot, start + 1),
            b'@' => (Kind::At, start + 1),
            b':' if lex.mysql_strings && b.get(start + 1) == Some(&b'=') => {
                (Kind::Assign, start + 2)
            }
            b'\'' => (Kind::Str, skip_quoted(b, start, b'\'', lex.mysql_strings)),
            b'"' if lex.mysql_strings => (Kind::Str, skip_quoted(b, start, b'"', true)),
            b'"' => (Kind::QIdent, skip_quoted(b, start, b'"', false)),
            b'`' if lex.backticks => (Kind::QIdent, skip_quoted(b, start, b'`', false)),
            b'$' if lex.dollar_quotes => match dollar_tag_end(b, start) {
                Some(tag_end) => (Kind::Str, skip_dollar_body(b, start, tag_end)),
                None => (Kind::Punct, start + 1),
            },
            _ if CLASS[c as usize] & WORD != 0 => {
                let mut i = start + 1;
                while i < b.len() && CLASS[b[i] as usize] & WORD != 0 {
                    i += 1;
                }
                if !lex.mysql_strings
                    && i == start + 1
                    && (c | 0x20) == b'e'
                    && b.get(i) == Some(&b'\'')
                {
                    // E'..' escape string
                    (Kind::Str, skip_quoted(b, i, b'\'', true))
                } else {
                    (Kind::Word, i)
                }
            }
            _ => (Kind::Punct, start + 1),
        };
        let end = end.min(b.len());
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
