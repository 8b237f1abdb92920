//! Statement accounting: the `[pool] query_timeout` clock (`time_statement`), and
//! `[general] query_digests` for PostgreSQL clients: each Query counts under the digest of
//! its text, timed from when its server could start on it (it was sent, and what came before
//! it was answered) to its ReadyForQuery; a Query of several statements counts each under its
//! own, timed from the answer before it to its CommandComplete (or the ErrorResponse that
//! ends the rest, which the server skips), or, if the server's answers do not match the
//! statements the text splits into (a function body of several statements), the whole text
//! once; each Execute under the digest of the statement it
//! runs, from then to its CommandComplete or ErrorResponse, however many come before a Sync
//! (a pipeline's statements count one by one, as on a server of one's own; those the server
//! skips after an error do not count). A portal read in parts (Executes with a row limit)
//! counts once, with the time of all its parts. With the statistics off, one atomic load per
//! message that could start a statement.

use super::{Pend, Session};
use crate::metrics::kind;
use crate::metrics::queries::{Owner, Ran};
use crate::router::classify::Dialect;
use crate::router::{digest, lexer};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Longest statement text kept for `GET /queries`.
const MAX_TEXT: usize = 2048;

/// What a Query counts under in the statistics.
#[derive(Debug)]
pub(super) enum QueryStat {
    /// One statement: its digest, and when it was sent.
    One(u64, Instant),
    /// Several statements: counted when the Query is answered.
    Parts(Box<Parts>),
}

/// A Query of several statements: its text, when it was sent, and the span and outcome of
/// each statement the server answered so far.
#[derive(Debug)]
pub(super) struct Parts {
    sql: Box<[u8]>,
    sent: Instant,
    done: Vec<((Instant, Instant), bool)>,
}

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

    /// What a Query of `sql` counts under (None with the statistics off).
    pub(super) fn query_stat(&mut self, sql: &[u8]) -> Option<QueryStat> {
        if !self.stats_on() {
            return None;
        }
        let sent = Instant::now();
        if super::forward::one_statement(sql) {
            return Some(QueryStat::One(self.digest_noted(sql, None), sent));
        }
        Some(QueryStat::Parts(Box::new(Parts {
            sql: sql.into(),
            sent,
            done: Vec::new(),
        })))
    }

    /// A Query was answered (ReadyForQuery); whether anything in it failed.
    pub(super) fn count_batch(&mut self, stat: Option<QueryStat>, failed: bool) {
        match stat {
            None => {}
            Some(QueryStat::One(d, sent)) => {
                let span = self.answered(sent);
                self.record(d, self.held_route, span, failed);
            }
            Some(QueryStat::Parts(p)) => self.count_parts(*p, failed),
        }
    }

    /// Each statement of a Query of several under its own digest, if the server answered
    /// them as the text splits (each answered, or an error ended the rest); else the whole.
    fn count_parts(&mut self, p: Parts, failed: bool) {
        let (start, now) = self.answered(p.sent);
        let texts: Vec<&str> = match std::str::from_utf8(&p.sql) {
            Ok(sql) => {
                let mut split = lexer::statements(sql);
                std::iter::from_fn(|| split.next_with_text().map(|(_, text)| text)).collect()
            }
            Err(_) => Vec::new(),
        };
        let ended_by_error = p.done.last().is_some_and(|(_, failed)| *failed);
        let agrees = !p.done.is_empty()
            && (p.done.len() == texts.len() || (p.done.len() < texts.len() && ended_by_error));
        if !agrees {
            let d = self.digest_noted(&p.sql, None);
            let from = p.done.first().map_or(start, |((from, _), _)| *from);
            self.record(d, self.held_route, (from, now), failed);
            return;
        }
        let ran = Ran::of(self.held_route);
        let owner = Owner::of(&mut self.stats_owner, &self.cluster.state.name, &self.user);
        let stats = &self.worker.shared.metrics.queries;
        for (text, (span, failed)) in texts.iter().zip(&p.done) {
            let d = digest::digest(text, Dialect::Postgres);
            let normalized = || digest::normalized(text, Dialect::Postgres, MAX_TEXT);
            stats.record_new(owner, d, normalized, ran, *span, *failed);
        }
    }

    /// A server finished what was sent at `sent`: from when it could start on it (sent, and
    /// what came before answered) to now.
    fn answered(&mut self, sent: Instant) -> (Instant, Instant) {
        answered(&mut self.last_answered_at, sent)
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

/// What was sent at `sent` is answered now, `last` (the previous answer) updated: from when
/// the server could start on it (sent, and what came before answered) to now.
fn answered(last: &mut Option<Instant>, sent: Instant) -> (Instant, Instant) {
    let now = Instant::now();
    let start = last.map_or(sent, |r| r.max(sent));
    *last = Some(now);
    (start, now)
}

/// A statement of the Query at the head of `pending` was answered: by its CommandComplete,
/// or (`failed`) an ErrorResponse. (Of the session's fields, so that a message being read
/// from the session's buffer can stay borrowed.)
pub(super) fn count_part(
    pending: &mut std::collections::VecDeque<Pend>,
    last_answered_at: &mut Option<Instant>,
    failed: bool,
) {
    if let Some(Pend::Ready {
        stat: Some(QueryStat::Parts(p)),
        ..
    }) = pending.front_mut()
    {
        let span = answered(last_answered_at, p.sent);
        p.done.push((span, failed));
    }
}
