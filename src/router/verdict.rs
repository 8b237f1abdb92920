//! What the classifier answers: the route a SQL string may take, why, and what it does to
//! transaction state. Protocol-neutral: the PostgreSQL and MySQL sessions both read it.

use super::hints::Hint;

/// Which SQL dialect the text is in (how comments, strings and identifiers are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    MySql,
}

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Primary,
    Replica,
}

/// Why a route was chosen (used as a metrics label: keep names short snake_case via `as_str()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A plain read.
    Read,
    /// DML: INSERT, UPDATE, DELETE, MERGE, REPLACE, COPY FROM, LOAD DATA, NOTIFY.
    Write,
    /// CREATE, ALTER, DROP, TRUNCATE, GRANT, REVOKE, COMMENT, RENAME, ...
    Ddl,
    /// A locking read (FOR UPDATE/SHARE, LOCK IN SHARE MODE) or LOCK/UNLOCK TABLE(S).
    Locking,
    /// A call of a function that writes or depends on the primary's session state.
    WriteFunction,
    /// SELECT ... INTO (a new table, variables, a file).
    SelectInto,
    /// A WITH whose CTE modifies data.
    WritingCte,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SET TRANSACTION, XA, ...
    TransactionControl,
    /// Session state: SET, RESET, PREPARE, EXECUTE, LISTEN, DECLARE, USE, ... (the session
    /// decides whether it pins the client or replays the state).
    Session,
    /// A routing hint decided, or the statement is a `switchyard.route` setting.
    Hint,
    /// One of the operator's `[[routing.rule]]`s decided.
    Rule,
    /// Not recognised.
    Unknown,
    /// The slow path could not parse the statement.
    ParseError,
    /// No statement at all (empty, only comments or semicolons).
    Empty,
    /// Maintenance or procedural code: VACUUM, ANALYZE, REFRESH, CALL, DO, CHECKPOINT, ...
    Utility,
}

impl Reason {
    /// Short snake_case name for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Read => "read",
            Reason::Write => "write",
            Reason::Ddl => "ddl",
            Reason::Locking => "locking",
            Reason::WriteFunction => "write_function",
            Reason::SelectInto => "select_into",
            Reason::WritingCte => "writing_cte",
            Reason::TransactionControl => "transaction_control",
            Reason::Session => "session",
            Reason::Hint => "hint",
            Reason::Rule => "rule",
            Reason::Unknown => "unknown",
            Reason::ParseError => "parse_error",
            Reason::Empty => "empty",
            Reason::Utility => "utility",
        }
    }
}

/// What a statement does to transaction state (for the session to track).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxEffect {
    None,
    /// BEGIN / START TRANSACTION (MySQL also XA START).
    Begin {
        read_only: bool,
    },
    /// COMMIT/ROLLBACK/END/ABORT (not ROLLBACK TO SAVEPOINT, not ... AND CHAIN),
    /// PREPARE TRANSACTION, XA COMMIT/ROLLBACK.
    End,
    /// `SET TRANSACTION READ ONLY` (PostgreSQL: this transaction; MySQL: the next one).
    SetTransactionReadOnly,
    /// SAVEPOINT, RELEASE (SAVEPOINT), ROLLBACK TO (SAVEPOINT).
    Savepoint,
}

/// The classification of a SQL string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub route: Route,
    pub reason: Reason,
    pub tx: TxEffect,
}

impl Class {
    /// This classification overridden by a hint (a leading comment, or a session's
    /// `SET switchyard.route`), keeping invariant 1: `Primary` always wins; `Replica` only
    /// for a statement that may run on a replica anyway or that the classifier did not
    /// understand (`Unknown`, `ParseError`) and that does not touch transaction state. A
    /// known write, lock, write function, session or transaction statement stays where it is.
    /// The reason becomes [`Reason::Hint`] when the hint is honoured.
    /// [`Class::with_hint`] for a `[[routing.rule]]`: where it decides, the reason says so.
    pub fn with_rule(self, route: Hint) -> Class {
        let c = self.with_hint(route);
        if c.reason == Reason::Hint && self != c {
            Class::new(c.route, Reason::Rule, c.tx)
        } else {
            c
        }
    }

    pub fn with_hint(self, hint: Hint) -> Class {
        match hint {
            // A statement that goes to the primary anyway keeps its reason: a write stays a
            // write for whoever checks (a session held on a replica refuses it).
            Hint::Primary if self.route == Route::Primary => self,
            Hint::Primary => Class::new(Route::Primary, Reason::Hint, self.tx),
            Hint::Replica => {
                let overridable = self.route == Route::Replica
                    || (matches!(self.reason, Reason::Unknown | Reason::ParseError)
                        && self.tx == TxEffect::None);
                if overridable {
                    Class::new(Route::Replica, Reason::Hint, self.tx)
                } else {
                    self
                }
            }
        }
    }

    pub(super) const fn new(route: Route, reason: Reason, tx: TxEffect) -> Class {
        Class { route, reason, tx }
    }
    pub(super) const fn primary(reason: Reason) -> Class {
        Class::new(Route::Primary, reason, TxEffect::None)
    }
    pub(super) const fn replica(reason: Reason) -> Class {
        Class::new(Route::Replica, reason, TxEffect::None)
    }
}

pub(super) const READ: Class = Class::replica(Reason::Read);
pub(super) const UNKNOWN: Class = Class::primary(Reason::Unknown);
