//! Statement classification: a hand-written scanner for leading keywords (no allocation) and
//! the session-state rules built on it.
//!
//! Layout: `tokens` turns text into tokens (both dialects); `classify` decides where a
//! statement may run, with `read_scan` (what makes a SELECT a write) and `cache` (verdicts by
//! whole text); `hints` reads routing hints; `lexer` and `session_state` are the lighter
//! leading-word scanner and the session rules built on it.
mod cache;
pub mod classify;
pub mod digest;
pub mod hints;
pub mod lexer;
mod pg_functions;
mod read_scan;
pub mod rules;
pub mod session_state;
mod slow_path;
pub mod tokens;
mod verdict;
