//! Statement accounting: the `[pool] query_timeout` clock (`time_statement`), and
//! `[general] query_digests` for PostgreSQL clients: each Query counts under the digest of
//! its text, timed from when its server could start on it (it was sent, and what came before
//! it was answered) to its ReadyForQuery; each Execute under the digest of the statement it
//! runs, from then to its CommandComplete or ErrorResponse, however many come before a Sync
//! (a pipeline's statements count one by one, as on a server of one's own; those the server
//! skips after an error do not count). A portal read in parts (Executes with a row limit)
//! counts once, with the time of all its parts. With the statistics off, one atomic load per
//! message that could start a statement.

use super::Session;
use crate::metrics::kind;
use crate::metrics::queries::{Owner, Ran};
use crate::router::classify::Dialect;
use crate::router::digest;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Longest statement text kept for `GET /queries`.
const MAX_TEXT: usize = 2048;

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// `[pool] query_timeout`, before each wait: the statement clock in the client's cancel
    /// slot runs while a server owes the client an answer (and is not waiting for the
    /// client's COPY data), from the start of each batch; the sweep on the health thread
    /// cancels a statement that runs too long. One atomic load per wait when it is off.
    pub(super) fn time_statement(&mut self) {
        let owed =
            self.backend.is_some() && !self.pending.is_empty() && self.copy_in_mark.is_none();
        match self.clock_batch {
            Some(batch) if owed && batch == self.batches_done => {}
            _ if owed => {
                if let Some(now) = self.worker.shared.statement_start() {
                    if self.key.slot.clock.start(now) {
                        self.cluster.metrics.error(kind::QUERY_TIMEOUT);
                    }
                    self.clock_batch = Some(self.batches_done);
                }
            }
            Some(_) => {
                self.clock_batch = None;
                if self.key.slot.clock.stop() {
                    self.cluster.metrics.error(kind::QUERY_TIMEOUT);
                }
            }
            None => {}
        }
    }

    pub(super) fn stats_on(&self) -> bool {
        self.worker.shared.metrics.queries.enabled()
    }

    /// Record a run on a server of `route` (a metrics route label) in the statistics.
    fn record(&mut self, d: u64, route: &str, span: (Instant, Instant), failed: bool) {
        let ran = Ran::of(route);
        let owner = Owner::of(&mut self.stats_owner, &self.cluster.state.name, &self.user);
        self.worker
            .shared
            .metrics
            .queries
            .record(owner, d, ran, span, failed);
    }

    /// The digest of statement text `sql`, with a place kept for it in the statistics (0
    /// when they are off). `known`: its digest, when already read.
    pub(super) fn digest_noted(&mut self, sql: &[u8], known: Option<u64>) -> u64 {
        if !self.stats_on() {
            return 0;
        }
        let d = known.unwrap_or_else(|| digest::digest_bytes(sql, Dialect::Postgres));
        // The statement this session noted last, in this generation of the tables, is there
        // (tables are only ever cleared whole): no lookup for a statement run again.
        let stats = &self.worker.shared.metrics.queries;
        let owner = Owner::of(&mut self.stats_owner, &self.cluster.state.name, &self.user);
        let noted = (owner.key(d), stats.generation());
        if self.last_noted == noted {
            return d;
        }
        let made = stats.note(owner, d, || {
            digest::normalized(&String::from_utf8_lossy(sql), Dialect::Postgres, MAX_TEXT)
        });
        if made {
            self.last_noted = noted;
        }
        d
    }

    /// A batch of digest `stat.0`, sent at `stat.1`, was answered (ReadyForQuery); whether
    /// anything in it failed.
    pub(super) fn count_batch(&mut self, stat: Option<(u64, Instant)>, failed: bool) {
        let Some((d, sent)) = stat else {
            return;
        };
        let (start, now) = self.answered(sent);
        self.record(d, self.held_route, (start, now), failed);
    }

    /// A server finished what was sent at `sent`: from when it could start on it (sent, and
    /// what came before answered) to now.
    fn answered(&mut self, sent: Instant) -> (Instant, Instant) {
        let now = Instant::now();
        let start = self.last_answered_at.map_or(sent, |r| r.max(sent));
        self.last_answered_at = Some(now);
        (start, now)
    }

    /// An Execute of digest `stat.0`, sent at `stat.1`, was answered: with its
    /// CommandComplete, or an ErrorResponse (`failed`), or, `suspended`, with as many rows
    /// as its limit allowed (PortalSuspended: its time is kept for the Execute that ends the
    /// portal, which counts once).
    pub(super) fn count_execute(
        &mut self,
        (d, sent): (u64, Instant),
        failed: bool,
        suspended: bool,
    ) {
        let (start, now) = self.answered(sent);
        let mut took = now.saturating_duration_since(start);
        match self.suspended {
            Some((s, before)) if s == d => {
                took += before;
                self.suspended = None;
            }
            // Another statement's portal is read in parts now: the one left part-read
            // before counts as it stands. (Interleaved with whole statements it waits.)
            Some(_) if suspended => self.count_suspended(),
            _ => {}
        }
        if suspended {
            self.suspended = Some((d, took));
            return;
        }
        let from = now.checked_sub(took).unwrap_or(start);
        self.record(d, self.held_route, (from, now), failed);
    }

    /// A portal left part-read (closed, or its transaction ended) counts as it stands.
    pub(super) fn count_suspended(&mut self) {
        if let Some((d, took)) = self.suspended.take() {
            let now = Instant::now();
            let from = now.checked_sub(took).unwrap_or(now);
            self.record(d, self.held_route, (from, now), false);
        }
    }

    /// A statement that ran on a multiplexed connection to a server of `route` (`sql`, from
    /// `started`), answered with `answer`.
    pub(super) fn count_muxed(
        &mut self,
        sql: &[u8],
        route: &'static str,
        started: Instant,
        answer: &[u8],
    ) {
        if !self.stats_on() {
            return;
        }
        let d = self.digest_noted(sql, None);
        self.record(d, route, (started, Instant::now()), has_error(answer));
    }
}

/// Whether the backend messages in `buf` include an ErrorResponse.
fn has_error(mut buf: &[u8]) -> bool {
    while buf.len() >= 5 {
        if buf[0] == b'E' {
            return true;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        buf = buf.get(1 + len..).unwrap_or_default();
    }
    false
}
