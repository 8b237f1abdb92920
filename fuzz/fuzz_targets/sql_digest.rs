//! Statement digests for the query statistics (`router::digest`), both dialects: any text
//! gets a digest and a bounded normalised text, and the normalised text (literals already
//! `?`, comments gone) has the digest of the statement it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::router::classify::Dialect;
use switchyard::router::digest::{digest, normalized};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for dialect in [Dialect::Postgres, Dialect::MySql] {
        let d = digest(text, dialect);
        assert_ne!(d, 0);
        let short = normalized(text, dialect, 64);
        assert!(short.len() <= 64 + 3, "{short:?}");
        let whole = normalized(text, dialect, usize::MAX);
        assert_eq!(
            digest(&whole, dialect),
            d,
            "{dialect:?}: {text:?} normalised to {whole:?}"
        );
    }
});
