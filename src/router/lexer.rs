//! A small SQL scanner: splits a string into statements at top-level semicolons and yields the
//! leading words of each, skipping whitespace, `--` and nested `/* */` comments, and never
//! looking inside quoted strings, quoted identifiers or dollar-quoted bodies. No allocation.

use super::tokens::{skip_block_comment, skip_quoted};

/// Up to this many leading words are kept per statement.
pub const WORDS: usize = 4;

/// The leading words of one statement, borrowed from the SQL text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leading<'a> {
    words: [&'a str; WORDS],
    len: usize,
}

impl<'a> Leading<'a> {
    /// Word `i` (0-based), if the statement has that many leading words.
    pub fn word(&self, i: usize) -> Option<&'a str> {
        (i < self.len).then(|| self.words[i])
    }

    /// True if word `i` equals `kw` ignoring ASCII case.
    pub fn is(&self, i: usize, kw: &str) -> bool {
        self.word(i).is_some_and(|w| w.eq_ignore_ascii_case(kw))
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Iterator over statements of a SQL string.
pub struct Statements<'a> {
    text: &'a str,
    pos: usize,
}

/// Split `sql` into statements; empty statements (`;;`) are skipped.
pub fn statements(sql: &str) -> Statements<'_> {
    Statements { text: sql, pos: 0 }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The leading words of the first statement of `sql`, reading no further than needed: for a
/// string known to hold one statement (no `;` byte) this equals `statements(sql).next()`
/// without scanning to the end.
pub fn first_leading(sql: &str) -> Leading<'_> {
    scan_statement(sql, 0, true).0
}

/// The first word of `sql` after whitespace and comments, if the text starts with one.
pub fn first_word(sql: &str) -> Option<&str> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b if b.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i, true),
            b if is_word_byte(b) => {
                let start = i;
                while i < bytes.len() && (is_word_byte(bytes[i]) || bytes[i] == b'$') {
                    i += 1;
                }
                // Word bytes are ASCII or whole UTF-8 sequences.
                return Some(&sql[start..i]);
            }
            _ => return None,
        }
    }
    None
}

/// Scan one statement from `pos`: its leading words and where the next one starts. With
/// `words_only`, stop as soon as no more leading words can follow (the returned position is
/// then meaningless).
fn scan_statement(text: &str, pos: usize, words_only: bool) -> (Leading<'_>, usize) {
    let bytes = text.as_bytes();
    let mut lead = Leading::default();
    let mut words_done = false;
    let mut i = pos;
    while i < bytes.len() {
        if words_only && (words_done || lead.len == WORDS) {
            break;
        }
        let b = bytes[i];
        match b {
            b';' => {
                i += 1;
                break;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i, true),
            b'\'' => {
                words_done = true;
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && (i < 2 || !is_word_byte(bytes[i - 2]));
                i = skip_quoted(bytes, i, b'\'', escapes);
            }
            b'"' => {
                words_done = true;
                i = skip_quoted(bytes, i, b'"', false);
            }
            b'$' => {
                words_done = true;
                i = skip_dollar(bytes, i);
            }
            _ if b.is_ascii_whitespace() => i += 1,
            _ if is_word_byte(b) => {
                let start = i;
                while i < bytes.len() && (is_word_byte(bytes[i]) || bytes[i] == b'$') {
                    i += 1;
                }
                if !words_done && lead.len < WORDS {
                    // Safe slicing: word bytes are ASCII or whole UTF-8 sequences
                    // (every byte >= 0x80 is a word byte).
                    lead.words[lead.len] = &text[start..i];
                    lead.len += 1;
                }
            }
            _ => {
                words_done = true;
                i += 1;
            }
        }
    }
    (lead, i)
}

impl<'a> Statements<'a> {
    /// The next statement's leading words and its text (up to and with its `;`).
    pub fn next_with_text(&mut self) -> Option<(Leading<'a>, &'a str)> {
        while self.pos < self.text.len() {
            let start = self.pos;
            let (lead, end) = scan_statement(self.text, start, false);
            self.pos = end;
            if !lead.is_empty() {
                return Some((lead, &self.text[start..end]));
            }
        }
        None
    }
}

impl<'a> Iterator for Statements<'a> {
    type Item = Leading<'a>;

    fn next(&mut self) -> Option<Leading<'a>> {
        self.next_with_text().map(|(lead, _)| lead)
    }
}

/// `$tag$ ... $tag$` (tag may be empty). A `$` that does not open a tag (e.g. `$1`) is one byte.
fn skip_dollar(bytes: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < bytes.len()
        && (bytes[j].is_ascii_alphabetic()
            || bytes[j] == b'_'
            || (j > i + 1 && bytes[j].is_ascii_digit()))
    {
        j += 1;
    }
    if bytes.get(j) != Some(&b'$') {
        return i + 1;
    }
    let tag = &bytes[i..=j];
    let mut k = j + 1;
    while k + tag.len() <= bytes.len() {
        if &bytes[k..k + tag.len()] == tag {
            return k + tag.len();
        }
        k += 1;
    }
    bytes.len()
}

/// Whether `hay` contains `needle`, ignoring ASCII case. No allocation.
pub fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let Some(last_start) = hay.len().checked_sub(needle.len()) else {
        return false;
    };
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    // Candidates by their first byte (memchr), then the rest compared.
    memchr::memchr2_iter(lower, upper, hay)
        .take_while(|&i| i <= last_start)
        .any(|i| hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_ignore_case_finds_words_anywhere_in_any_case() {
        // Against the plain definition, on every split of a few texts.
        let plain = |hay: &[u8], needle: &[u8]| {
            needle.is_empty()
                || hay
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle))
        };
        let texts: [&[u8]; 6] = [
            b"SELECT v INTO @u FROM t",
            b"insert into t select 1",
            b"Into",
            b"IN",
            b"",
            b"iIiINTOinto\xff",
        ];
        for hay in texts {
            for needle in [&b"INTO"[..], b"SELECT", b"i", b"", b"into\xff", b"IINTO"] {
                for cut in 0..=hay.len() {
                    assert_eq!(
                        contains_ignore_case(&hay[..cut], needle),
                        plain(&hay[..cut], needle),
                        "{:?} in {:?}",
                        String::from_utf8_lossy(needle),
                        String::from_utf8_lossy(&hay[..cut])
                    );
                }
            }
        }
    }

    fn firsts(sql: &str) -> Vec<Vec<String>> {
        statements(sql)
            .map(|l| {
                (0..WORDS)
                    .filter_map(|i| l.word(i))
                    .map(str::to_ascii_uppercase)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn first_leading_matches_the_full_scan_of_one_statement() {
        for sql in [
            "select 1",
            "  /* a /* b */ */ SET search_path = x",
            "-- c\nCREATE LOCAL TEMP TABLE t (a int)",
            "DEALLOCATE PREPARE ALL",
            "select 'it''s' as x, $$ body $$",
            "E'\\'' select",
            "\"q\" a b c d e",
            "(select 1)",
            "",
            "   ",
            "/* only a comment */",
            "a b c d e f g h",
        ] {
            let full = statements(sql).next().unwrap_or_default();
            assert_eq!(first_leading(sql), full, "{sql:?}");
        }
    }

    #[test]
    fn splits_and_skips_comments() {
        assert_eq!(
            firsts("/* c /* nested */ */ select 1; -- x\n insert into t values (';')"),
            vec![vec!["SELECT", "1"], vec!["INSERT", "INTO", "T", "VALUES"]]
        );
    }

    #[test]
    fn quotes_hide_semicolons() {
        assert_eq!(firsts("select ';' ; set x = 1").len(), 2);
        assert_eq!(firsts(r#"select "a;b" from t; begin"#).len(), 2);
        assert_eq!(firsts(r"select E'\';' ; begin").len(), 2);
        assert_eq!(firsts("do $body$ begin; end $body$; select $1").len(), 2);
        assert_eq!(firsts("select $$;$$;;;commit").len(), 2);
    }

    #[test]
    fn words_stop_at_punctuation() {
        assert_eq!(firsts("select(1)"), vec![vec!["SELECT"]]);
        assert_eq!(firsts("set local x = 1"), vec![vec!["SET", "LOCAL", "X"]]);
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for s in ["'abc", "\"abc", "/* x", "$a$ never", "E'\\", "$", "--"] {
            let _ = firsts(s);
        }
    }
}
