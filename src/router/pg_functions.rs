//! Names of the functions in PostgreSQL 15's `pg_catalog` schema (from `pg_proc`, lower
//! case, sorted). A call of any other name is a function of the user's or of an extension,
//! whose effect on session state the proxy cannot know (see `session_state`).
//!
//! Generated with: `SELECT DISTINCT lower(proname) FROM pg_proc WHERE pronamespace =
//! 'pg_catalog'::regnamespace ORDER BY 1` on a fresh PostgreSQL 15 cluster, kept in
//! `pg_catalog_functions.txt`.

use std::sync::OnceLock;

/// The list, one name per line, sorted (a data file: it is generated, not written).
static LIST: &str = include_str!("pg_catalog_functions.txt");

/// The names, split once, for binary search.
fn catalog_functions() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| LIST.lines().filter(|l| !l.is_empty()).collect())
}

/// True if `name` (any case) is a function in `pg_catalog`.
pub(crate) fn is_catalog_function(name: &str) -> bool {
    if name.len() > 64 || !name.is_ascii() {
        return false;
    }
    let mut buf = [0u8; 64];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name.as_bytes());
    lower.make_ascii_lowercase();
    let Ok(lower) = std::str::from_utf8(lower) else {
        return false;
    };
    is_catalog_function_lower(lower)
}

/// [`is_catalog_function`] for a name already in lower case.
pub(crate) fn is_catalog_function_lower(name: &str) -> bool {
    catalog_functions().binary_search(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_finds_names_in_any_case() {
        let names = catalog_functions();
        assert!(names.len() > 2600, "{}", names.len());
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert!(is_catalog_function("now"));
        assert!(is_catalog_function("COUNT"));
        assert!(is_catalog_function("set_config"));
        assert!(!is_catalog_function("my_function"));
        assert!(!is_catalog_function(""));
    }
}
