//! The statement-by-statement scan behind [`super::effect_scanned`]: each statement's
//! leading words, calls and clauses, merged in order, with a rollback undoing the clears
//! and resets before it.

use super::*;

/// Words that end one PL/pgSQL statement and start the next (besides `;`).
const PLPGSQL_BREAKS: [&str; 6] = ["BEGIN", "THEN", "ELSE", "LOOP", "EXCEPTION", "ELSIF"];

/// The token scan. In `plpgsql` mode (the body of a `DO` block) block keywords also start a
/// statement, and `EXECUTE` (dynamic SQL, which cannot be read) counts as unknown state.
pub(super) fn scan(sql: &str, plpgsql: bool) -> Effect {
    let mut toks = Tokens::new(sql, &Lex::POSTGRES);
    let mut total = Scanned::default();
    let mut st = Stmt::default();
    while let Some(t) = toks.next_tok() {
        if t.kind == Kind::Semi {
            total.then(std::mem::take(&mut st));
            continue;
        }
        if plpgsql && t.kind == Kind::Word {
            let w = t.text(sql);
            if PLPGSQL_BREAKS.iter().any(|k| w.eq_ignore_ascii_case(k)) {
                total.then(std::mem::take(&mut st));
                continue;
            }
            if w.eq_ignore_ascii_case("EXECUTE") {
                total.total.adds |= State::OTHER;
            }
        }
        st.token(sql, t);
    }
    total.then(st);
    total.total
}

/// How a statement ends the transaction it runs in, if it does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TxEnd {
    None,
    /// `COMMIT`, `END`: what came before stands.
    Commit,
    /// `ROLLBACK`, `ABORT`: what came since the last commit is undone (a multi-statement
    /// string outside a transaction is one implicit transaction: `RESET ALL; ROLLBACK` ends
    /// it with the reset undone).
    Rollback,
    /// `ROLLBACK TO` a savepoint (`ROLLBACK PREPARED` too, to be safe): some of it is undone.
    RollbackTo,
}

/// [`TxEnd`] of a statement by its leading words.
pub(super) fn tx_end(lead: &[&str]) -> TxEnd {
    let is = |i: usize, w: &str| lead.get(i).is_some_and(|l| l.eq_ignore_ascii_case(w));
    if is(0, "COMMIT") && !is(1, "PREPARED") || is(0, "END") {
        TxEnd::Commit
    } else if is(0, "ROLLBACK") || is(0, "ABORT") {
        if is(1, "PREPARED") || lead.iter().any(|w| w.eq_ignore_ascii_case("TO")) {
            TxEnd::RollbackTo
        } else {
            TxEnd::Rollback
        }
    } else {
        TxEnd::None
    }
}

/// The effect of a string so far, and what of it a later rollback cannot undo.
#[derive(Default)]
struct Scanned {
    total: Effect,
    /// Clears and resets up to the last commit in the string.
    settled: (State, bool, bool),
}

impl Scanned {
    /// The statement `st` follows. A rollback undoes the clears and resets since the last
    /// commit of the string (`UNLISTEN *`, `DISCARD TEMP` and `RESET` are transactional); a
    /// rollback to a savepoint may undo any clear, and no reset is taken back for it (the
    /// startup parameters are applied again, as after a reset that stands).
    fn then(&mut self, st: Stmt) {
        let end = tx_end(&st.lead[..st.nlead]);
        let t = &mut self.total;
        let (clears, resets_settings, resets_all) = self.settled;
        match end {
            TxEnd::Rollback => {
                t.clears = t.clears.intersect(clears);
                (t.resets_settings, t.resets_all) = (resets_settings, resets_all);
            }
            TxEnd::RollbackTo => t.clears = t.clears.intersect(clears),
            TxEnd::Commit | TxEnd::None => {}
        }
        t.merge(st.finish());
        if end == TxEnd::Commit {
            self.settled = (t.clears, t.resets_settings, t.resets_all);
        }
    }
}

/// The scan of one statement.
#[derive(Default)]
struct Stmt<'a> {
    /// Leading words (up to 4, before any other token).
    lead: [&'a str; 4],
    nlead: usize,
    lead_done: bool,
    /// The token right after the first word is `*` (`UNLISTEN *`).
    star_second: bool,
    tokens: usize,
    prev: Option<(Kind, &'a str)>,
    prev2: Option<(Kind, &'a str)>,
    prev3: Option<(Kind, &'a str)>,
    depth: u32,
    /// Inside the arguments of a `set_config(` call: its depth, commas seen at that depth,
    /// and the third argument's tokens (count, and whether the one token is `true`).
    set_config: Option<(u32, u32, u32, bool)>,
    with_hold: bool,
    into_temp: bool,
    pg_temp: bool,
    /// The body of a `DO` block (its first string).
    do_body: Option<&'a str>,
    calls: Effect,
}

impl<'a> Stmt<'a> {
    fn token(&mut self, sql: &'a str, t: Tok) {
        let text = t.text(sql);
        self.tokens += 1;
        if self.tokens == 2 && t.kind == Kind::Punct && text == "*" {
            self.star_second = true;
        }
        if !self.lead_done {
            if t.kind == Kind::Word && self.nlead < 4 {
                self.lead[self.nlead] = text;
                self.nlead += 1;
            } else {
                self.lead_done = true;
            }
        }
        if let Some((d, commas, n3, is_true)) = &mut self.set_config {
            match t.kind {
                Kind::Close if self.depth == *d => {
                    // End of the call: local only when the third argument is `true`.
                    if !(*commas == 2 && *n3 == 1 && *is_true) {
                        self.calls.adds |= State::SETTINGS;
                    }
                    self.set_config = None;
                }
                Kind::Punct if self.depth == *d && text == "," => *commas += 1,
                _ if *commas == 2 => {
                    *n3 += 1;
                    *is_true = t.kind == Kind::Word && text.eq_ignore_ascii_case("true");
                }
                _ => {}
            }
        }
        if t.kind == Kind::Str
            && self.do_body.is_none()
            && self.nlead > 0
            && self.lead[0].eq_ignore_ascii_case("DO")
        {
            self.do_body = Some(t.inner(sql));
        }
        match t.kind {
            Kind::Open => {
                self.depth += 1;
                if let Some((k @ (Kind::Word | Kind::QIdent), name)) = self.prev {
                    let name = if k == Kind::QIdent {
                        name.trim_matches('"')
                    } else {
                        name
                    };
                    if name.eq_ignore_ascii_case("set_config") {
                        self.set_config = Some((self.depth, 0, 0, false));
                    } else {
                        self.calls.merge(call_effect(name));
                    }
                    if k == Kind::QIdent || !not_a_call(name, self.prev2) {
                        self.calls.unknown |= !self.known_function(name);
                    }
                }
            }
            Kind::Close => self.depth = self.depth.saturating_sub(1),
            Kind::Word => {
                let is = |w: &str| text.eq_ignore_ascii_case(w);
                let prev_is = |p: Option<(Kind, &str)>, w: &str| {
                    p.is_some_and(|(k, s)| k == Kind::Word && s.eq_ignore_ascii_case(w))
                };
                if is("TEMP") || is("TEMPORARY") {
                    let after_into = prev_is(self.prev, "INTO")
                        || (prev_is(self.prev2, "INTO")
                            && (prev_is(self.prev, "LOCAL") || prev_is(self.prev, "GLOBAL")));
                    self.into_temp |= after_into;
                } else if is("HOLD") && prev_is(self.prev, "WITH") {
                    self.with_hold = true;
                } else if is("pg_temp") {
                    self.pg_temp = true;
                }
            }
            _ => {}
        }
        self.prev3 = self.prev2;
        self.prev2 = self.prev;
        self.prev = Some((t.kind, text));
    }

    /// Whether a call of `name` (the token before `(`) is of a `pg_catalog` function: an
    /// unqualified name in the catalog, or one qualified with `pg_catalog`.
    fn known_function(&self, name: &str) -> bool {
        match self.prev2 {
            Some((Kind::Dot, _)) => {
                matches!(self.prev3, Some((Kind::Word | Kind::QIdent, s))
                    if s.trim_matches('"').eq_ignore_ascii_case("pg_catalog"))
                    && is_catalog_function(name)
            }
            _ => is_catalog_function(name),
        }
    }

    fn finish(mut self) -> Effect {
        if let Some((..)) = self.set_config.take() {
            // Unterminated call: assume the worst.
            self.calls.adds |= State::SETTINGS;
        }
        let mut e = self.calls;
        // Definitions name functions and columns without calling anything.
        if DDL_WORDS
            .iter()
            .any(|w| self.lead[0].eq_ignore_ascii_case(w))
            && self.nlead > 0
        {
            e.unknown = false;
        }
        let w = |i: usize| if i < self.nlead { self.lead[i] } else { "" };
        let is = |i: usize, kw: &str| w(i).eq_ignore_ascii_case(kw);
        let first = w(0);
        let first = EFFECT_WORDS
            .iter()
            .find(|k| first.eq_ignore_ascii_case(k))
            .copied()
            .unwrap_or("");
        match first {
            "SET" => {
                if is(1, "LOCAL") || is(1, "TRANSACTION") || is(1, "CONSTRAINTS") {
                } else if is(1, "ROLE")
                    || (is(1, "SESSION") && (is(2, "AUTHORIZATION") || is(2, "ROLE")))
                {
                    e.adds |= State::OTHER;
                } else {
                    e.adds |= State::SETTINGS;
                }
            }
            "RESET" => {
                e.resets_settings = true;
                if is(1, "ALL") {
                    e.clears |= State::SETTINGS;
                    e.resets_all = true;
                }
            }
            "DISCARD" => {
                if is(1, "ALL") {
                    e.clears = State::ALL;
                    e.resets_settings = true;
                    e.resets_all = true;
                    e.drops_prepared = true;
                } else if is(1, "TEMP") || is(1, "TEMPORARY") {
                    e.clears |= State::TEMP;
                }
            }
            "DEALLOCATE" if is(1, "ALL") || (is(1, "PREPARE") && is(2, "ALL")) => {
                e.clears |= State::PREPARED;
                e.drops_prepared = true;
            }
            "PREPARE" if !is(1, "TRANSACTION") => e.adds |= State::PREPARED,
            "LISTEN" => e.adds |= State::LISTEN,
            "UNLISTEN" if self.star_second => e.clears |= State::LISTEN,
            "DECLARE" if self.with_hold => e.adds |= State::CURSOR,
            "CLOSE" if is(1, "ALL") => e.clears |= State::CURSOR,
            "LOAD" | "CALL" => e.adds |= State::OTHER,
            // The block's statements count as if sent one by one (one level deep: a block
            // cannot contain another except through EXECUTE, which is unknown state).
            "DO" => match self.do_body {
                Some(body) => e.merge(scan(body, true)),
                None => e.adds |= State::OTHER,
            },
            "CREATE" => {
                let temp_word = (1..4).any(|i| is(i, "TEMP") || is(i, "TEMPORARY"));
                if temp_word || self.pg_temp {
                    e.adds |= State::TEMP;
                }
            }
            _ => {}
        }
        if self.into_temp {
            e.adds |= State::TEMP;
        }
        e
    }
}
