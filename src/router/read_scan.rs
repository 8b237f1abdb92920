//! The scan of a read-shaped statement (SELECT, WITH, VALUES, TABLE) for what makes a read
//! a write: a locking clause, `INTO`, a call of a write function (built-in or configured,
//! schema-qualified or not, quoted or not), MySQL `:=`, `SQL_CALC_FOUND_ROWS` and
//! `@@warning_count`-style variables, MariaDB `NEXT VALUE FOR`, and DML words (which
//! [`super::classify`] then gives to sqlparser). One pass over the tokens, no allocation.

use super::classify::{Class, Reason, Route, TxEffect};
use super::tokens::{Cursor, Kind, Tok};

/// The rest of the statement under `cur`, scanned once. Most tokens need no work beyond
/// their kind: a word is compared with keywords only when its length and first byte
/// match one ([`keyword`]), a name before `(` with write functions only when it passes
/// [`FnFilter`].
#[inline(never)]
pub(super) fn scan(cur: &mut Cursor<'_, '_>, fns: &WriteFunctions, my: bool) -> Flags {
    let text = cur.toks.text;
    let bytes = text.as_bytes();
    let mut f = Flags::default();
    let mut depth = 0u32;
    // The previous token, and which keyword it was.
    let mut prev = Tok {
        kind: Kind::Punct,
        start: 0,
        end: 0,
    };
    let mut prev_kw = Kw::Other;
    // The previous token was a DML word; this one decides (a `(` makes it a call).
    let mut pending_dml = false;
    // Consecutive `@` (MySQL system variables).
    let mut ats = 0u8;
    cur.for_each(|t| {
        f.tokens += 1;
        if pending_dml && !matches!(t.kind, Kind::Open | Kind::Dot) {
            f.dml_at(depth);
        }
        pending_dml = false;
        let mut kw = Kw::Other;
        match t.kind {
            Kind::Word if prev.kind != Kind::Dot => {
                kw = keyword(&bytes[t.start..t.end]);
                if kw != Kw::Other {
                    pending_dml = f.keyword(kw, prev_kw, my, ats);
                }
            }
            Kind::Open => {
                if matches!(prev.kind, Kind::Word | Kind::QIdent) && fns.called(text, prev) {
                    f.write_fn = true;
                }
                depth += 1;
            }
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Assign => f.session = true,
            _ => {}
        }
        ats = if t.kind == Kind::At {
            ats.saturating_add(1)
        } else {
            0
        };
        prev = t;
        prev_kw = kw;
    });
    if pending_dml {
        f.dml_at(depth);
    }
    f
}

/// What the scan of a read-shaped statement found.
#[derive(Debug, Default)]
pub(super) struct Flags {
    /// A DML word at the top level (`WITH x AS (..) INSERT ..`).
    pub(super) dml_top: bool,
    /// A DML word in parentheses (a CTE or a subquery).
    pub(super) dml_nested: bool,
    locking: bool,
    into: bool,
    write_fn: bool,
    session: bool,
    /// Tokens scanned.
    pub(super) tokens: usize,
}

impl Flags {
    /// A DML word at parenthesis depth `depth` was not a function call.
    fn dml_at(&mut self, depth: u32) {
        if depth == 0 {
            self.dml_top = true;
        } else {
            self.dml_nested = true;
        }
    }

    /// Records what keyword `kw` after `prev` means; true if it is a DML word (which the
    /// next token confirms, see [`scan`]).
    fn keyword(&mut self, kw: Kw, prev: Kw, my: bool, ats: u8) -> bool {
        match kw {
            Kw::Update | Kw::Share | Kw::No | Kw::Key if prev == Kw::For => self.locking = true,
            Kw::In if my && prev == Kw::Lock => self.locking = true,
            Kw::Value if matches!(prev, Kw::Next | Kw::Previous) => self.write_fn = true,
            Kw::Into => self.into = true,
            Kw::SqlCalcFoundRows if my => self.session = true,
            Kw::WarningCount | Kw::ErrorCount if my && ats >= 1 => self.session = true,
            Kw::Identity | Kw::LastInsertId if my && ats >= 1 => self.write_fn = true,
            _ => {}
        }
        let locking_update = kw == Kw::Update && matches!(prev, Kw::For | Kw::Key);
        matches!(kw, Kw::Insert | Kw::Update | Kw::Delete | Kw::Merge) && !locking_update
    }

    /// The verdict when no DML is involved.
    pub(super) fn verdict(&self) -> Class {
        let reason = if self.locking {
            Reason::Locking
        } else if self.into {
            Reason::SelectInto
        } else if self.write_fn {
            Reason::WriteFunction
        } else if self.session {
            Reason::Session
        } else {
            Reason::Read
        };
        let route = if reason == Reason::Read {
            Route::Replica
        } else {
            Route::Primary
        };
        Class {
            route,
            reason,
            tx: TxEffect::None,
        }
    }
}

/// Words the read-shaped scan reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kw {
    Other,
    For,
    Update,
    Share,
    No,
    Key,
    Lock,
    In,
    Into,
    Insert,
    Delete,
    Merge,
    Next,
    Previous,
    Value,
    SqlCalcFoundRows,
    WarningCount,
    ErrorCount,
    Identity,
    LastInsertId,
}

/// The words [`keyword`] knows, lowercase.
pub(super) const KEYWORDS: [(Kw, &str); 19] = [
    (Kw::No, "no"),
    (Kw::In, "in"),
    (Kw::For, "for"),
    (Kw::Key, "key"),
    (Kw::Into, "into"),
    (Kw::Lock, "lock"),
    (Kw::Next, "next"),
    (Kw::Share, "share"),
    (Kw::Merge, "merge"),
    (Kw::Value, "value"),
    (Kw::Update, "update"),
    (Kw::Insert, "insert"),
    (Kw::Delete, "delete"),
    (Kw::Previous, "previous"),
    (Kw::Identity, "identity"),
    (Kw::ErrorCount, "error_count"),
    (Kw::WarningCount, "warning_count"),
    (Kw::LastInsertId, "last_insert_id"),
    (Kw::SqlCalcFoundRows, "sql_calc_found_rows"),
];

/// `KEYWORD_AT[len][first byte & 31]`: 1 + the index in [`KEYWORDS`] of the only keyword of
/// that length whose first letter maps there (either case maps alike), or 0.
static KEYWORD_AT: [[u8; 32]; 20] = {
    let mut t = [[0u8; 32]; 20];
    let mut i = 0;
    while i < KEYWORDS.len() {
        let w = KEYWORDS[i].1.as_bytes();
        let slot = &mut t[w.len()][(w[0] & 31) as usize];
        assert!(*slot == 0, "two keywords share a length and a first letter");
        *slot = i as u8 + 1;
        i += 1;
    }
    t
};

/// The keyword `w` is, ignoring ASCII case: a table lookup by length and first byte finds
/// the only candidate, and one comparison confirms it. Most words stop at the lookup.
pub(super) fn keyword(w: &[u8]) -> Kw {
    let (Some(&first), Some(row)) = (w.first(), KEYWORD_AT.get(w.len())) else {
        return Kw::Other;
    };
    match row[usize::from(first & 31)] {
        0 => Kw::Other,
        k => {
            let (kw, name) = KEYWORDS[usize::from(k) - 1];
            if w.eq_ignore_ascii_case(name.as_bytes()) {
                kw
            } else {
                Kw::Other
            }
        }
    }
}

/// Built-in functions that write, take locks or read the primary's session state.
/// Lowercase; compared ignoring ASCII case.
pub(super) const WRITE_FUNCTIONS: &[&str] = &[
    // PostgreSQL (nextval/setval/lastval also MariaDB sequences)
    "nextval",
    "setval",
    "currval",
    "lastval",
    "pg_notify",
    "set_config",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_reload_conf",
    "pg_switch_wal",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_emit_message",
    "txid_current",
    "pg_current_xact_id",
    "lowrite",
    // MySQL / MariaDB
    "get_lock",
    "release_lock",
    "release_all_locks",
    "is_used_lock",
    "is_free_lock",
    "last_insert_id",
    "found_rows",
    "row_count",
    "master_pos_wait",
    "source_pos_wait",
    "master_gtid_wait",
];

/// Prefixes of built-in write functions: pg_advisory_lock*, pg_advisory_xact_lock*,
/// pg_advisory_unlock*, pg_try_advisory_*, pg_create_*, lo_*, pg_logical_slot_get_*.
pub(super) const WRITE_FUNCTION_PREFIXES: &[&str] = &[
    "pg_advisory_",
    "pg_try_advisory_",
    "pg_create_",
    "lo_",
    "pg_logical_slot_get_",
];

/// Bit `min(len, 31)` of entry `first_byte & 31` is set if some write function of that
/// length (or, for a prefix, of some length) starts with a byte that maps there: a two-load
/// filter that spares most calls (`count(`, `now(`) the comparisons with every name.
type FnFilter = [u32; 32];

/// The built-in write functions plus the configured ones.
pub(super) struct WriteFunctions {
    /// Configured names: lowercased, without schema qualification.
    configured: Box<[Box<str>]>,
    filter: FnFilter,
}

impl std::fmt::Debug for WriteFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.configured.fmt(f)
    }
}

impl WriteFunctions {
    /// `configured`: extra names from the config. Matching ignores ASCII case and schema:
    /// `audit.log_event` and `log_event` both match any call of `log_event`.
    pub(super) fn new(configured: &[String]) -> Self {
        let configured: Box<[Box<str>]> = configured
            .iter()
            .map(|f| {
                let f = f.trim();
                let last = f.rsplit('.').next().unwrap_or(f);
                last.trim_matches(|c| c == '"' || c == '`')
                    .to_ascii_lowercase()
                    .into_boxed_str()
            })
            .filter(|f| !f.is_empty())
            .collect();
        let mut filter = [0; 32];
        for f in WRITE_FUNCTIONS
            .iter()
            .copied()
            .chain(configured.iter().map(|f| &**f))
        {
            fn_filter_add(&mut filter, f.as_bytes(), false);
        }
        for p in WRITE_FUNCTION_PREFIXES {
            fn_filter_add(&mut filter, p.as_bytes(), true);
        }
        WriteFunctions { configured, filter }
    }

    /// Whether the word or quoted identifier `name` (before a `(`) names a write function.
    #[inline(always)]
    fn called(&self, text: &str, name: Tok) -> bool {
        let name = match name.kind {
            Kind::QIdent => name.inner(text).as_bytes(),
            _ => &text.as_bytes()[name.start..name.end],
        };
        // Two loads reject most names; the comparisons are out of line.
        let Some(&first) = name.first() else {
            return false;
        };
        self.filter[usize::from(first & 31)] >> name.len().min(31) & 1 != 0 && self.contains(name)
    }

    #[inline(never)]
    fn contains(&self, name: &[u8]) -> bool {
        builtin_write_function(name)
            || self
                .configured
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f.as_bytes()))
    }
}

fn fn_filter_add(filter: &mut FnFilter, name: &[u8], prefix: bool) {
    let Some(&first) = name.first() else {
        return;
    };
    let entry = &mut filter[usize::from(first & 31)];
    if prefix {
        for len in name.len() + 1..32 {
            *entry |= 1 << len;
        }
    } else {
        *entry |= 1 << name.len().min(31);
    }
}

fn builtin_write_function(name: &[u8]) -> bool {
    WRITE_FUNCTIONS
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f.as_bytes()))
        || WRITE_FUNCTION_PREFIXES
            .iter()
            .any(|p| name.len() > p.len() && name[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_by_length_and_first_letter() {
        for (kw, name) in KEYWORDS {
            assert_eq!(keyword(name.as_bytes()), kw, "{name}");
            assert_eq!(keyword(name.to_ascii_uppercase().as_bytes()), kw, "{name}");
            // Same length and first letter, one byte off.
            let mut near = name.as_bytes().to_vec();
            *near.last_mut().unwrap() ^= 0x01;
            assert_eq!(keyword(&near), Kw::Other, "{near:?}");
        }
        for w in [
            "", "i", "id", "on", "fob", "nexus", "select", "updates", "é",
        ] {
            assert_eq!(keyword(w.as_bytes()), Kw::Other, "{w}");
        }
        assert_eq!(keyword("x".repeat(40).as_bytes()), Kw::Other);
    }
}
