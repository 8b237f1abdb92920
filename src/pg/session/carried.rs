//! Settings that follow the client from connection to connection: plain `SET`s the proxy
//! carries instead of pinning (recorded when their answer comes, see `backend_msgs.rs`), and
//! the client's startup values applied again after a `RESET`.

use super::{Pend, Session};
use crate::pg::codec;
use crate::router::lexer::contains_ignore_case;
use crate::router::session_state::{self, Effect, State};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// The client's startup settings that the statement `sql` (with effect `e`) resets.
    pub(super) fn settings_reset_by(&self, sql: &[u8], e: &Effect) -> Vec<(String, String)> {
        if e.resets_all {
            return (*self.startup).clone();
        }
        let names = std::str::from_utf8(sql)
            .map(session_state::reset_names)
            .unwrap_or_default();
        self.startup
            .iter()
            .filter(|(k, _)| names.iter().any(|n| n.eq_ignore_ascii_case(k)))
            .cloned()
            .collect()
    }

    /// `sql` (a simple Query) is made of plain `SET`s the proxy carries to the client's other
    /// connections (transaction mode, nothing else in flight). Outside a transaction they
    /// are the client's own as soon as they succeed (see `Pend::Ready`); inside a block that
    /// has not failed (`true`), they wait for its end (see `settle_tx_sets`).
    pub(super) fn carried_sets(&self, sql: &[u8]) -> Option<(Vec<(String, String)>, bool)> {
        self.carried_sets_at(sql, self.batch_open)
    }

    /// [`Self::carried_sets`] as if a batch were open (`batch_open`) or not.
    fn carried_sets_at(
        &self,
        sql: &[u8],
        batch_open: bool,
    ) -> Option<(Vec<(String, String)>, bool)> {
        if batch_open || self.in_flight() {
            return None;
        }
        let in_tx = match self.tx_status {
            b'I' if self.deferred_begin.is_none() => false,
            b'T' if !self.tx_sets.as_ref().is_some_and(|t| t.unsure) => true,
            _ => return None,
        };
        Some((
            super::settings::plain_sets(std::str::from_utf8(sql).ok()?)?,
            in_tx,
        ))
    }

    /// One carried `SET` (see [`Self::carried_sets`]): the setting and whether it waits for
    /// the end of a transaction block.
    fn carried_one(&self, sql: &[u8], batch_open: bool) -> Option<((String, String), bool)> {
        let (mut kv, in_tx) = self.carried_sets_at(sql, batch_open)?;
        (kv.len() == 1).then(|| (kv.pop().expect("one"), in_tx))
    }

    /// No batch is open and no statement is in flight: the transaction status is current.
    pub(super) fn carried_sets_allowed(&self) -> bool {
        !self.batch_open && !self.in_flight()
    }

    /// A statement or a Sync sent to the server is unanswered.
    fn in_flight(&self) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p, Pend::Execute { .. } | Pend::Ready { .. }))
    }

    /// A CommandComplete while SETs of the open block wait for its end.
    pub(super) fn note_tx_end(&mut self, end: TxEnd) {
        let Some(t) = self.tx_sets.as_mut() else {
            return;
        };
        match end {
            TxEnd::Commit => t.committed = true,
            TxEnd::Unsure => t.unsure = true,
            TxEnd::Other => {}
        }
    }

    /// ReadyForQuery while SETs of a transaction block wait (`tx_sets`): the block is over
    /// (idle) or not. Committed: they are the client's own from now on, as any carried SET.
    /// Rolled back (a ROLLBACK, a failed block): they are gone on the server too, nothing to
    /// carry. Anything else (a savepoint, PREPARE TRANSACTION, COMMIT AND CHAIN): the client
    /// stays on its connection, which knows.
    pub(super) fn settle_tx_sets(&mut self) {
        let Some(t) = self.tx_sets.as_ref() else {
            return;
        };
        if t.unsure || self.sets_unknown || (t.committed && self.tx_status != b'I') {
            self.tx_sets = None;
            if self.pins.is_empty() {
                tracing::debug!("client pinned: settings of a transaction it did not follow");
            }
            self.pins |= State::SETTINGS;
            self.sets_unknown = true;
            return;
        }
        if self.tx_status != b'I' {
            return;
        }
        let t = self.tx_sets.take().unwrap_or_default();
        if t.committed {
            // (The block committed before anything else in this Query failed: recorded all
            // the same.)
            let error = std::mem::replace(&mut self.error_seen, false);
            self.carry_sets(t.sets);
            self.error_seen = error;
        } else if self.pins == State::SETTINGS && !self.sets_unknown {
            tracing::debug!("client unpinned: its transaction's SETs were rolled back");
            self.pins = State::NONE;
        }
    }

    /// The batch that opened with a carried `SET` (`set_batch`) goes on with a message
    /// `tag`: its Bind, Describes, one Execute, Flushes and the Sync keep it so; anything
    /// else makes it a batch whose settings the proxy does not carry (the client stays
    /// pinned).
    pub(super) fn follow_set_batch(&mut self, tag: u8, body: &[u8]) {
        let Some(batch) = self.set_batch.as_mut() else {
            return;
        };
        let keeps = match tag {
            b'B' => {
                !std::mem::replace(&mut batch.bound, true)
                    && codec::bind_msg(body)
                        .is_ok_and(|b| b.statement.is_empty() && b.portal.is_empty())
            }
            b'E' => {
                batch.bound
                    && body.first() == Some(&0)
                    && !std::mem::replace(&mut batch.executed, true)
            }
            b'D' | b'H' | b'S' => true,
            _ => false,
        };
        if !keeps {
            self.set_batch = None;
            self.sets_unknown = true;
        }
    }

    /// A Bind of the client's named statement `query`, a plain `SET` (see `one_plain_set`),
    /// to `portal`, in a batch that had other messages before it (`batch_was_open`) or not.
    /// Opening a batch outside a transaction with nothing in flight, it is carried if the
    /// batch is only its Describe, Execute and Sync (libpq's `PQexecPrepared`: PHP's
    /// pdo_pgsql runs Laravel's connection SETs so); anywhere else it pins, as any SET the
    /// proxy does not carry.
    pub(super) fn bind_named_set(&mut self, query: &[u8], portal: &[u8], batch_was_open: bool) {
        let carried = if portal.is_empty() {
            self.carried_one(query, batch_was_open)
        } else {
            None
        };
        self.plain_set_now = carried.is_some();
        self.note_session_effect(query);
        self.plain_set_now = false;
        if let Some((kv, in_tx)) = carried {
            self.set_batch = Some(super::SetBatch {
                kv,
                bound: true,
                executed: false,
                in_tx,
            });
        }
    }

    /// A Parse of the unnamed statement `query`: if it is one plain `SET` the proxy can
    /// carry, the setting and whether it waits for the end of a transaction block. Carried
    /// when it opens its batch (outside a block with nothing in flight, or inside one that
    /// has not failed), or follows the lone BEGIN its batch opened with (`begin_batch`).
    pub(super) fn extended_set(&mut self, query: &[u8]) -> Option<((String, String), bool)> {
        if std::mem::replace(&mut self.begin_batch, 0) == 3 {
            let kv = std::str::from_utf8(query).ok().and_then(plain_set_alone)?;
            return Some((kv, true));
        }
        self.carried_one(query, self.batch_open)
    }

    /// A Parse of the unnamed statement `query` opens a batch with a lone BEGIN outside a
    /// transaction, nothing in flight (pgjdbc's with autocommit off, before its first
    /// statement).
    pub(super) fn opens_begin_batch(&self, query: &[u8]) -> bool {
        super::routing::starts_with_any(query, &["begin", "start"])
            && self.tx_status == b'I'
            && self.deferred_begin.is_none()
            && self.carried_sets_allowed()
            && std::str::from_utf8(query).is_ok_and(|q| {
                matches!(
                    self.worker.shared.classifier.load().classify(q).tx,
                    crate::router::classify::TxEffect::Begin { .. }
                )
            })
    }

    /// The batch that opened with a lone BEGIN (`begin_batch`) goes on with a message `tag`:
    /// its Bind and Execute (unnamed statement and portal), Describes and Flushes keep it so,
    /// and the Parse after its Execute is looked at by `extended_set`; anything else ends it.
    pub(super) fn follow_begin_batch(&mut self, tag: u8, body: &[u8]) {
        self.begin_batch = match (self.begin_batch, tag) {
            (1, b'B')
                if codec::bind_msg(body)
                    .is_ok_and(|b| b.statement.is_empty() && b.portal.is_empty()) =>
            {
                2
            }
            (2, b'E') if body.first() == Some(&0) => 3,
            (n, b'D' | b'H') if n < 3 => n,
            (3, b'P') => 3,
            _ => 0,
        };
    }

    /// The client's carried `SET`s that a statement resetting settings (`e`) ends, once it
    /// commits (a direct connection returns to the startup values, which the proxy applies
    /// again): see `settled_reset`.
    pub(super) fn carried_reset_by(&self, sql: &[u8], e: &Effect) -> Vec<String> {
        if self.recorded.is_empty() {
            return Vec::new();
        }
        let names = (!e.resets_all).then(|| {
            std::str::from_utf8(sql)
                .map(session_state::reset_names)
                .unwrap_or_default()
        });
        self.recorded
            .iter()
            .filter(|(k, _)| {
                names
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(k)))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Carried settings `names` reset by a Query or batch, to settle at its ReadyForQuery
    /// (see `settled_reset`). One that may also roll the reset back (`may_roll_back`: it
    /// says ROLLBACK or ABORT somewhere): whether the reset holds only the server knows, so
    /// the client stays on its connection now.
    pub(super) fn reset_to_settle(
        &mut self,
        names: Vec<String>,
        may_roll_back: bool,
    ) -> Option<Box<[String]>> {
        if names.is_empty() {
            return None;
        }
        if !may_roll_back {
            return Some(names.into_boxed_slice());
        }
        self.pin_for_reset();
        None
    }

    fn pin_for_reset(&mut self) {
        if self.pins.is_empty() {
            tracing::debug!("client pinned: a reset of its carried settings may not hold");
        }
        self.pins |= State::SETTINGS;
        self.sets_unknown = true;
    }

    /// The Query or batch with a statement that resets the carried settings `names` is
    /// answered. Committed (no error, no transaction open): they end, and the held
    /// connection is reset before another client gets it. Otherwise the reset may have been
    /// rolled back, or may be yet: the connection holds the truth, so the client stays on it.
    pub(super) fn settled_reset(&mut self, names: &[String]) {
        if !self.error_seen && self.tx_status == b'I' {
            self.recorded
                .retain(|(k, _)| !names.iter().any(|n| n.eq_ignore_ascii_case(k)));
            self.wanted = Arc::new(super::settings::merged(&self.startup, &self.recorded));
            if let Some(conn) = self.backend.as_mut() {
                conn.state_unknown = true;
            }
        } else {
            self.pin_for_reset();
        }
    }

    /// A Parse of a statement that resets settings: apply them again after the batch's Sync.
    pub(super) fn reapply_later(&mut self, sql: &[u8], e: &Effect) {
        if !e.resets_settings {
            return;
        }
        // A RESET in a block with SETs waiting for its end may undo them.
        if let Some(t) = self.tx_sets.as_mut() {
            t.unsure = true;
        }
        for name in self.carried_reset_by(sql, e) {
            if !self.forget_at_sync.contains(&name) {
                self.forget_at_sync.push(name);
            }
        }
        let again = self.settings_reset_by(sql, e);
        let pending = self.reapply_at_sync.get_or_insert_with(Vec::new);
        for kv in again {
            if !pending.contains(&kv) {
                pending.push(kv);
            }
        }
    }

    /// After a statement that resets settings: send the client's startup values of those
    /// settings again (a direct connection returns to them), its answers swallowed.
    pub(super) fn reapply_settings(&mut self, settings: &[(String, String)]) {
        if settings.is_empty() {
            return;
        }
        let sql = super::settings_sql(&[], settings);
        codec::put_query(&mut self.bout, &sql);
        self.unnamed_here = false;
        self.pending.push_back(Pend::Swallow);
    }
}

/// Whether `sql` says ROLLBACK or ABORT anywhere (in any case): a reset in it may be undone.
pub(super) fn may_roll_back(sql: &[u8]) -> bool {
    contains_ignore_case(sql, b"rollback") || contains_ignore_case(sql, b"abort")
}

/// What a CommandComplete says about the end of a transaction block with carried SETs.
pub(super) enum TxEnd {
    Commit,
    /// A savepoint (its ROLLBACK TO is tagged as a ROLLBACK) or PREPARE TRANSACTION.
    Unsure,
    Other,
}

impl TxEnd {
    /// From the CommandComplete body (its tag and NUL).
    pub(super) fn of(body: &[u8]) -> TxEnd {
        match body.strip_suffix(b"\0").unwrap_or(body) {
            b"COMMIT" => TxEnd::Commit,
            b"SAVEPOINT" | b"RELEASE" | b"PREPARE TRANSACTION" => TxEnd::Unsure,
            _ => TxEnd::Other,
        }
    }
}

/// `sql` is one plain `SET` the proxy can carry (see `settings::plain_sets`).
pub fn one_plain_set(sql: &[u8]) -> bool {
    super::routing::starts_with_any(sql, &["set"])
        && std::str::from_utf8(sql)
            .ok()
            .and_then(plain_set_alone)
            .is_some()
}

/// The setting of `sql` when it is one plain `SET` alone.
fn plain_set_alone(sql: &str) -> Option<(String, String)> {
    let mut kv = super::settings::plain_sets(sql)?;
    (kv.len() == 1).then(|| kv.pop().expect("one"))
}

#[cfg(test)]
mod tests {
    use super::may_roll_back;

    #[test]
    fn a_text_that_may_roll_back_says_so_in_any_case() {
        for yes in [
            "BEGIN; RESET work_mem; ROLLBACK",
            "reset all; abort",
            "ROLLBACK TO SAVEPOINT a",
            "RESET ALL; RollBack",
        ] {
            assert!(may_roll_back(yes.as_bytes()), "{yes}");
        }
        for no in [
            "RESET ALL",
            "DISCARD ALL",
            "BEGIN; RESET work_mem; COMMIT",
            "",
        ] {
            assert!(!may_roll_back(no.as_bytes()), "{no}");
        }
    }
}
