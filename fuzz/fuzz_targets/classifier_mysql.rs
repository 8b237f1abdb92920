//! The MySQL dialect of the statement classifier (`router::classify` with `Dialect::MySql`)
//! and the MySQL session's pin rules (`mysql::session::pin_reason`), on arbitrary UTF-8,
//! with invariants that hold whatever the text is:
//!
//! - deterministic, and the verdict cache never changes an answer;
//! - only reads, honoured hints and read-only transaction starts go to a replica;
//! - a leading `/* switchyard:primary */` always wins;
//! - a string whose first statement is a write goes to the primary, whatever follows it;
//! - a read put in front of a statement does not change where it goes (a multi-statement
//!   string goes to a replica only if every statement does).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switchyard::mysql::session::pin_reason;
use switchyard::router::classify::{Class, Classifier, Dialect, Reason, Route, TxEffect};
use switchyard::router::hints::{leading_hint, route_setting, Hint};

/// One classifier with a small cache (evicts often) and one without.
fn classifiers() -> &'static (Classifier, Classifier) {
    static C: OnceLock<(Classifier, Classifier)> = OnceLock::new();
    C.get_or_init(|| {
        let fns = ["my_audit".to_string(), "billing.charge".to_string()];
        (
            Classifier::new(Dialect::MySql, &fns, 16),
            Classifier::new(Dialect::MySql, &fns, 0),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (cached, uncached) = classifiers();
    let a = cached.classify(text);
    assert_eq!(cached.classify(text), a, "cached twice");
    assert_eq!(uncached.classify(text), a, "cache vs no cache");
    check(a);
    let _ = pin_reason(text, a.reason);
    let hint = leading_hint(text);
    let setting = route_setting(text);
    if hint == Some(Hint::Primary) {
        // (A statement that goes to the primary anyway keeps its own reason.)
        assert_eq!(a.route, Route::Primary, "primary hint not honoured: {a:?}");
        assert_ne!(a.reason, Reason::Read, "{a:?}");
    }
    if setting.is_some() {
        assert_eq!(a.reason, Reason::Hint, "route setting not classified as one");
    }

    // A primary hint sends anything to the primary; what went there anyway keeps its reason.
    // (Put before a hint of `text`'s own, it replaces that one: the reason is not compared.)
    let hinted = uncached.classify(&format!("/* switchyard:primary */ {text}"));
    assert_eq!(hinted.route, Route::Primary, "primary hint not honoured");
    if hint.is_none() {
        let want = if a.route == Route::Primary {
            a.reason
        } else {
            Reason::Hint
        };
        assert_eq!(hinted.reason, want, "primary hint ({a:?} without it)");
    }

    let after_write = uncached.classify(&format!("INSERT INTO t VALUES (1); {text}"));
    assert_eq!(
        after_write.route,
        Route::Primary,
        "a write followed by {text:?} left the primary: {after_write:?}"
    );

    // A leading hint or route setting of `text` is no longer leading once a statement is put
    // in front; an empty `text` adds nothing to a read.
    if hint.is_none() && setting.is_none() && !matches!(a.reason, Reason::Empty | Reason::Hint)
    {
        let after_read = uncached.classify(&format!("SELECT 1; {text}"));
        check(after_read);
        assert_eq!(
            after_read.route, a.route,
            "a read in front of {text:?} moved it: {a:?} alone, {after_read:?} after a read"
        );
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
