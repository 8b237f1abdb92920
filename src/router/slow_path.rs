//! The classifier's slow path: sqlparser decides whether the DML words in a read-shaped
//! statement make it a write (a data-modifying CTE, a DML main statement) or not (a column
//! called `update`). Only statements the token scan could not decide come here.

use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::parser::Parser;

use super::read_scan::Flags;
use super::verdict::{Class, Dialect, Reason, UNKNOWN};

/// sqlparser's nesting limit (its default is 50). Deeper statements are parse errors (primary).
/// Lower than the default because a stack overflow would abort the whole proxy: in a debug
/// build one level of nesting can take tens of KiB of stack.
const PARSE_RECURSION_LIMIT: usize = 32;

/// Parse `text` (one statement) in `dialect`; a read with no DML gets `f`'s verdict.
pub(super) fn parse(dialect: Dialect, text: &str, f: &Flags) -> Class {
    let parse = |d: &dyn sqlparser::dialect::Dialect| {
        Parser::new(d)
            .with_recursion_limit(PARSE_RECURSION_LIMIT)
            .try_with_sql(text)
            .and_then(|mut p| p.parse_statements())
    };
    let parsed = match dialect {
        Dialect::Postgres => parse(&sqlparser::dialect::PostgreSqlDialect {}),
        Dialect::MySql => parse(&sqlparser::dialect::MySqlDialect {}),
    };
    let stmts = match parsed {
        Ok(s) if s.len() == 1 => s,
        _ => return Class::primary(Reason::ParseError),
    };
    match &stmts[0] {
        Statement::Query(q) => match query_dml(q, true, 0) {
            Dml::Top => Class::primary(Reason::Write),
            Dml::Nested => Class::primary(Reason::WritingCte),
            Dml::None => f.verdict(),
        },
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_) => Class::primary(Reason::Write),
        _ => UNKNOWN,
    }
}

/// Where a data-modifying statement sits in a parsed query.
enum Dml {
    None,
    /// The main statement (`WITH x AS (..) INSERT ..`).
    Top,
    /// In a CTE or a nested parenthesized query.
    Nested,
}

fn query_dml(q: &Query, top: bool, depth: u32) -> Dml {
    if depth > 64 {
        return Dml::Nested; // deeper than the parser allows anyway; be conservative
    }
    let mut nested = false;
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            if !matches!(query_dml(&cte.query, false, depth + 1), Dml::None) {
                nested = true;
            }
        }
    }
    match set_expr_dml(&q.body, depth + 1) {
        Some(true) if top => Dml::Top,
        Some(_) => Dml::Nested,
        None if nested => Dml::Nested,
        None => Dml::None,
    }
}

/// `Some(true)`: the body itself is DML; `Some(false)`: DML below it.
fn set_expr_dml(e: &SetExpr, depth: u32) -> Option<bool> {
    if depth > 64 {
        return Some(false);
    }
    match e {
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            Some(true)
        }
        SetExpr::Query(q) => match query_dml(q, false, depth + 1) {
            Dml::None => None,
            _ => Some(false),
        },
        SetExpr::SetOperation { left, right, .. } => {
            match (
                set_expr_dml(left, depth + 1),
                set_expr_dml(right, depth + 1),
            ) {
                (None, None) => None,
                _ => Some(false),
            }
        }
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => None,
    }
}
