//! What the proxy's own statements on a server connection answered (health probes, the
//! session's state replays, KILL), decoded from the text protocol.

/// One result of a statement: a result set (columns and rows), or the OK of a statement
/// without one (no columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    /// Column names (empty for a statement that returned no result set).
    pub columns: Vec<String>,
    /// Text-protocol rows; `None` is SQL NULL. Values are decoded as UTF-8, lossily.
    pub rows: Vec<Vec<Option<String>>>,
    /// From the OK of a statement without a result set.
    pub affected_rows: u64,
    pub last_insert_id: u64,
    /// Status flags of the packet that ended this result.
    pub status: u16,
    pub warnings: u16,
}

impl ResultSet {
    /// Index of the column named `name` (exact match first, then ASCII case-insensitive).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name).or_else(|| {
            self.columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(name))
        })
    }

    /// The value of column `name` in row `row`; `None` for NULL, a missing row or column.
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let col = self.column(name)?;
        self.rows.get(row)?.get(col)?.as_deref()
    }
}

/// Everything one command answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// One entry per statement, in order (a multi-statement query has several).
    pub sets: Vec<ResultSet>,
    /// Status flags of the last packet (`SERVER_STATUS_IN_TRANS`, `..._AUTOCOMMIT`, ...).
    pub status: u16,
    /// Session variables the server reported changed (`session_track_system_variables`), in
    /// order.
    pub variables: Vec<(String, String)>,
}

impl QueryResult {
    /// Rows of the first statement that returned a result set (empty if none did).
    pub fn rows(&self) -> &[Vec<Option<String>>] {
        self.sets
            .iter()
            .find(|s| !s.columns.is_empty())
            .map_or(&[], |s| &s.rows)
    }

    /// First column of the first row of [`QueryResult::rows`], if not NULL.
    pub fn value(&self) -> Option<&str> {
        self.rows().first()?.first()?.as_deref()
    }
}
