//! `[general] query_digests` for MySQL clients: each COM_QUERY and COM_STMT_EXECUTE is
//! counted under its digest (see `metrics::queries`), timed from when it went to its server
//! until its answer was passed on. With the statistics off, one atomic load per statement.

use super::*;
use crate::metrics::queries::{Owner, Ran};
use crate::router::classify::Dialect;
use crate::router::digest;
use std::time::Instant;

/// Longest statement text kept for `GET /queries` (ProxySQL's default digest length).
pub(super) const MAX_TEXT: usize = 2048;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// When the statistics are on: now, the start of a statement's time.
    pub(super) fn stats_start(&self) -> Option<Instant> {
        self.w.shared.metrics.queries.enabled().then(Instant::now)
    }

    /// Count a statement of text `sql` (digest `digest`, or 0: read it from the text) that
    /// started at `t0` on the held connection, and whether it failed.
    pub(super) fn count_statement(
        &mut self,
        t0: Option<Instant>,
        digest: u64,
        sql: &[u8],
        failed: bool,
    ) {
        let Some(t0) = t0 else {
            return;
        };
        let span = (t0, Instant::now());
        let ran = Ran::of(self.held_route);
        let owner = Owner::of(&mut self.stats_owner, &self.cluster.state.name, &self.user);
        let text = || String::from_utf8_lossy(sql);
        let digest = match digest {
            0 => digest::digest_bytes(sql, Dialect::MySql),
            d => d,
        };
        self.w.shared.metrics.queries.record_new(
            owner,
            digest,
            || digest::normalized(&text(), Dialect::MySql, MAX_TEXT),
            ran,
            span,
            failed,
        );
    }
}
