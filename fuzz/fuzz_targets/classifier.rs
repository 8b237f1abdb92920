//! The statement classifier (`router::classify`) for both dialects, plus the hint parsers
//! (`router::hints::leading_hint`, `route_setting`) and the PostgreSQL session's reader of
//! plain `SET`s it carries (`pg::session::plain_sets`), on arbitrary UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switchyard::router::classify::{Class, Classifier, Dialect, Reason, Route, TxEffect};
use switchyard::router::hints::{leading_hint, route_setting, Hint};

/// Per dialect: one classifier with a small cache (evicts often) and one without.
fn classifiers() -> &'static [(Classifier, Classifier); 2] {
    static C: OnceLock<[(Classifier, Classifier); 2]> = OnceLock::new();
    C.get_or_init(|| {
        let fns = ["my_audit".to_string(), "billing.charge".to_string()];
        [Dialect::Postgres, Dialect::MySql]
            .map(|d| (Classifier::new(d, &fns, 16), Classifier::new(d, &fns, 0)))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A SET the proxy carries: a lower-case name that is not one it must leave alone, and a
    // value set_config() can take (no NUL).
    // A string of them: each one such a SET, and the text starts as one does.
    if let Some(sets) = switchyard::pg::session::plain_sets(text) {
        assert!(!sets.is_empty());
        for (name, value) in &sets {
            assert!(!name.is_empty() && *name == name.to_ascii_lowercase(), "{name}");
            assert!(!["role", "session_authorization"].contains(&name.as_str()));
            assert!(!name.starts_with("transaction") && !value.contains('\0'));
        }
        let lead = text
            .trim_start_matches(|c: char| c == ';' || c.is_whitespace())
            .as_bytes();
        assert!(lead[..3].eq_ignore_ascii_case(b"set") || lead[..6].eq_ignore_ascii_case(b"select"));
        if !text.contains(';') {
            assert_eq!(switchyard::pg::session::plain_set(text), sets.first().cloned());
        }
    }
    let hint = leading_hint(text);
    let setting = route_setting(text);
    for (cached, uncached) in classifiers() {
        let a = cached.classify(text);
        // Deterministic, and the cache never changes an answer.
        assert_eq!(cached.classify(text), a, "cached twice");
        assert_eq!(uncached.classify(text), a, "cache vs no cache");
        check(a);
        if hint == Some(Hint::Primary) {
            // (A statement that goes to the primary anyway keeps its own reason.)
            assert_eq!(a.route, Route::Primary, "primary hint not honoured: {a:?}");
            assert_ne!(a.reason, Reason::Read, "{a:?}");
        }
        if setting.is_some() {
            assert_eq!(
                a.reason,
                Reason::Hint,
                "route setting not classified as one"
            );
        }
    }
});

fn check(a: Class) {
    // Only reads, honoured hints and read-only transaction starts may go to a replica.
    if a.route == Route::Replica {
        assert!(
            matches!(
                a.reason,
                Reason::Read | Reason::Hint | Reason::TransactionControl
            ),
            "{a:?}"
        );
        if a.reason == Reason::TransactionControl {
            assert!(
                matches!(
                    a.tx,
                    TxEffect::Begin { read_only: true } | TxEffect::SetTransactionReadOnly
                ),
                "{a:?}"
            );
        }
    }
    if a.reason == Reason::Empty {
        assert_eq!(a.route, Route::Primary);
        assert_eq!(a.tx, TxEffect::None);
    }
    if matches!(a.tx, TxEffect::Begin { read_only: false } | TxEffect::End) {
        assert_eq!(a.route, Route::Primary, "{a:?}");
    }
}
