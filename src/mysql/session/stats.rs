//! `[general] query_digests` for MySQL clients: each COM_QUERY and COM_STMT_EXECUTE is
//! counted under its digest (see `metrics::queries`), timed from when it went to its server
//! until its answer was passed on; each statement of a COM_QUERY of several under its own.
//! With the statistics off, one atomic load per statement.

use super::*;
use crate::metrics::queries::{Owner, Ran};
use crate::router::classify::Dialect;
use crate::router::digest;
use crate::router::lexer;
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

    /// Count a COM_QUERY whose text `sql` may hold several statements, started at `t0`, whose
    /// results ended at `ends` (an ERR after them, if `answered` says so): each statement
    /// under its own digest, timed from the end of the result before it (the first from
    /// `t0`) to the end of its own, as the server runs them one after the other. An ERR ends
    /// the text: the statement it answered counts as failed, the ones after it did not run
    /// and do not count. A text the server split otherwise than at its `;` (a stored
    /// program's body) or with a CALL in it counts whole, once, as before.
    pub(super) fn count_parts(&mut self, t0: Option<Instant>, sql: &[u8], ends: &[Instant]) {
        let Some(t0) = t0 else {
            return;
        };
        let failed = self.answered.1.is_some();
        let text = String::from_utf8_lossy(sql);
        let texts = digest::statements(&text, Dialect::MySql);
        // A CALL answers with as many results as its procedure returns, and one more: the
        // count alone cannot tell which result ended which statement.
        let call = |t: &&str| lexer::first_word(t).is_some_and(|w| w.eq_ignore_ascii_case("CALL"));
        let agrees = !texts.iter().any(call)
            && if failed {
                ends.len() < texts.len()
            } else {
                !ends.is_empty() && ends.len() == texts.len()
            };
        if !agrees {
            return self.count_statement(Some(t0), 0, sql, failed);
        }
        let ran = Ran::of(self.held_route);
        let owner = Owner::of(&mut self.stats_owner, &self.cluster.state.name, &self.user);
        let stats = &self.w.shared.metrics.queries;
        let now = Instant::now();
        let mut from = t0;
        for (i, text) in texts
            .iter()
            .enumerate()
            .take(ends.len() + usize::from(failed))
        {
            let (to, failed) = ends.get(i).map_or((now, true), |&end| (end, false));
            let normalized = || digest::normalized(text, Dialect::MySql, MAX_TEXT);
            let d = digest::digest(text, Dialect::MySql);
            stats.record_new(owner, d, normalized, ran, (from, to), failed);
            from = to;
        }
    }
}
