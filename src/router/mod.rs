//! Statement classification: a hand-written scanner for leading keywords (no allocation) and
//! the session-state rules built on it.
pub mod classify;
pub mod hints;
pub mod lexer;
pub mod session_state;
pub mod tokens;
