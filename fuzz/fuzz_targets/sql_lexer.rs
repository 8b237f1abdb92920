//! The SQL statement splitter and the session-state classifier built on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::router::lexer::{statements, WORDS};
use switchyard::router::session_state;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut words: Vec<&str> = Vec::new();
    let mut count = 0usize;
    for lead in statements(text) {
        count += 1;
        // Each statement yields at least one word and consumes at least one byte.
        assert!(count <= text.len(), "more statements than bytes");
        assert!(!lead.is_empty());
        assert!(lead.word(WORDS).is_none());
        for i in 0..WORDS {
            if let Some(w) = lead.word(i) {
                words.push(w);
            }
        }
    }
    let (start, end) = (text.as_ptr() as usize, text.as_ptr() as usize + text.len());
    for w in words {
        assert!(!w.is_empty());
        let p = w.as_ptr() as usize;
        // Borrowed from the input, so it is a substring of it (a pointer check instead of
        // `text.contains(w)`, which would make this target quadratic).
        assert!(p >= start && p + w.len() <= end, "word {w:?} not inside input");
        let first = w.as_bytes()[0];
        assert!(
            first.is_ascii_alphanumeric() || first == b'_' || first >= 0x80,
            "word {w:?} starts with a non-word byte"
        );
    }
    let e = session_state::effect(text);
    for name in session_state::reset_names(text) {
        assert!(!name.is_empty());
    }
    // The byte-level fast path may only skip statements the full scan finds harmless.
    if session_state::surely_no_effect(data) {
        assert_eq!(e, session_state::Effect::default(), "fast path missed an effect");
    }
});
