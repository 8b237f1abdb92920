//! Where a session's next transaction or statement goes: classification, hints, the
//! session's route setting, read-your-writes, replica failure and retry, and the statements
//! the proxy answers itself (`SET switchyard.route`, `SHOW switchyard.backends`).

use super::{Pend, Session, SessionError};
use crate::cluster::{SelectError, Want};
use crate::config::PoolMode;
use crate::metrics::kind;
use crate::pg::codec::{self, Header};
use crate::pool;
use crate::router::classify::{Class, Route, TxEffect};
use crate::router::hints::{self, Hint};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest request kept for a retry on another replica.
const MAX_REPLAY: usize = 1 << 20;

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// Decide what kind of backend the message at the head of the input needs. Called only
    /// when no backend is held, i.e. at the start of a transaction or a statement outside one.
    pub(super) fn want_for(&mut self, h: &Header) -> Result<Want, SelectError> {
        if self.deferred_begin.is_some() {
            return self.want_after_begin(h);
        }
        let body = &self.cin[5..h.wire_len];
        let sql = match h.tag {
            b'Q' => codec::query_msg(body).ok(),
            b'P' => codec::parse_msg(body).ok().map(|p| p.query),
            b'B' => match codec::bind_msg(body) {
                Ok(b) if !b.statement.is_empty() => {
                    self.stmts.get(b.statement).map(|d| &d.query[..])
                }
                _ => None,
            },
            b'D' => match codec::target_msg(body) {
                Ok((b'S', name)) if !name.is_empty() => self.stmts.get(name).map(|d| &d.query[..]),
                _ => None,
            },
            _ => None,
        };
        let sql = sql.and_then(|s| std::str::from_utf8(s).ok());
        let (read, reason) = self.is_read(sql);
        self.route_reason = reason;
        let state = self.cluster.state.clone();
        if !read {
            state.primary()?;
            return Ok(Want::Primary);
        }
        match self.ryw_min_lsn() {
            Some(min_lsn) => {
                let want = Want::Replica { min_lsn };
                state.select(want, None)?;
                Ok(want)
            }
            None => {
                self.route_reason = "read_your_writes";
                Ok(Want::Primary)
            }
        }
    }

    /// A bare `BEGIN` / `START TRANSACTION` (read-write or unspecified) with splitting on is
    /// answered by the proxy; the real BEGIN goes out with the transaction's first statement,
    /// so `SET TRANSACTION READ ONLY` there can still send the transaction to a replica. The
    /// transaction's snapshot is taken at its first statement either way; only `now()`
    /// (transaction start time) moves to that statement.
    pub(super) fn defer_begin(&mut self, h: &Header) -> bool {
        if self.mode != PoolMode::Transaction
            || self.pinned
            || !self.cluster.state.split
            || self.deferred_begin.is_some()
        {
            return false;
        }
        let Ok(sql) = codec::query_msg(&self.cin[5..h.wire_len]) else {
            return false;
        };
        // Cheap test first: this runs for every Query that starts a transaction or runs
        // outside one.
        if !starts_with_any(sql, &["begin", "start"]) {
            return false;
        }
        let Ok(sql) = std::str::from_utf8(sql) else {
            return false;
        };
        let mut stmts = crate::router::lexer::statements(sql);
        let first = stmts.next();
        if !first.is_some_and(|w| w.is(0, "BEGIN") || w.is(0, "START"))
            || stmts.next().is_some()
            || hints::leading_hint(sql).is_some()
        {
            return false;
        }
        if self.worker.shared.classifier.load().classify(sql).tx
            != (TxEffect::Begin { read_only: false })
        {
            return false;
        }
        self.deferred_begin = Some(self.cin[..h.wire_len].into());
        self.tx_status = b'T';
        let mut out = BytesMut::new();
        codec::put_command_complete(&mut out, "BEGIN");
        codec::put_ready(&mut out, b'T');
        self.pending.push_back(Pend::Local(out.to_vec().into()));
        true
    }

    /// Where the first statement after a deferred BEGIN goes; an empty transaction
    /// (COMMIT/ROLLBACK right away) is answered here too.
    fn want_after_begin(&mut self, h: &Header) -> Result<Want, SelectError> {
        let sql = match h.tag {
            b'Q' => codec::query_msg(&self.cin[5..h.wire_len])
                .ok()
                .and_then(|s| std::str::from_utf8(s).ok()),
            _ => None,
        };
        let class = sql.map(|s| self.worker.shared.classifier.load().classify(s));
        match class.map(|c| c.tx) {
            Some(TxEffect::SetTransactionReadOnly)
                if self.route_override != Some(Hint::Primary) =>
            {
                let Some(min_lsn) = self.ryw_min_lsn() else {
                    self.cluster.state.primary()?;
                    return Ok(Want::Primary);
                };
                let want = Want::Replica { min_lsn };
                self.cluster.state.select(want, None)?;
                Ok(want)
            }
            _ => {
                self.cluster.state.primary()?;
                Ok(Want::Primary)
            }
        }
    }

    /// Send the deferred BEGIN ahead of everything else on the new connection.
    pub(super) fn send_deferred_begin(&mut self) {
        if let Some(begin) = self.deferred_begin.take() {
            let mut bytes = BytesMut::with_capacity(begin.len() + self.bout.len());
            bytes.extend_from_slice(&begin);
            bytes.extend_from_slice(&self.bout);
            self.bout = bytes;
            self.pending.push_front(Pend::Swallow);
            if self.replay_ok {
                let mut r = BytesMut::with_capacity(begin.len() + self.replay.len());
                r.extend_from_slice(&begin);
                r.extend_from_slice(&self.replay);
                self.replay = r;
            }
        }
    }

    /// True if `sql` may run on a replica.
    fn is_read(&self, sql: Option<&str>) -> (bool, &'static str) {
        if self.mode != PoolMode::Transaction {
            return (false, "session_mode");
        }
        if self.pinned {
            return (false, "pinned");
        }
        if !self.cluster.state.split {
            return (false, "split_off");
        }
        let Some(sql) = sql else {
            return (false, "protocol");
        };
        // classify() applies a leading hint comment itself; the session setting applies the
        // same rule: a replica hint never sends a write, lock or BEGIN to a replica.
        let mut class: Class = self.worker.shared.classifier.load().classify(sql);
        if let Some(h) = self.route_override {
            if hints::leading_hint(sql).is_none() {
                class = class.with_hint(h);
            }
        }
        let read = match class.tx {
            TxEffect::Begin { read_only } => read_only,
            TxEffect::None => class.route == Route::Replica,
            _ => false,
        };
        (read, class.reason.as_str())
    }

    /// Read-your-writes: `Some(floor)` if a replica may serve this client now (floor = the
    /// position it must have replayed), `None` if the read must go to the primary.
    fn ryw_min_lsn(&mut self) -> Option<Option<u64>> {
        if let Some(round) = self.ryw_round {
            match self.cluster.state.primary_lsn_since(round) {
                Some(lsn) => {
                    self.ryw_floor = Some(self.ryw_floor.map_or(lsn, |f| f.max(lsn)));
                    self.ryw_round = None;
                }
                None => return None,
            }
        }
        Some(self.ryw_floor)
    }

    /// Check out a connection for `want`. A backend that cannot be reached is marked down and,
    /// for reads, another eligible one (or the fallback) is tried.
    pub(super) async fn acquire_for(&mut self, want: Want) -> Result<(), SessionError> {
        self.refresh_cluster()?;
        let mut exclude = None;
        let mut reloaded = 0;
        loop {
            let state = self.cluster.state.clone();
            let idx = state.select(want, exclude).map_err(SessionError::Select)?;
            // The common case, an idle connection, neither waits nor counts as waiting, and
            // is observed as a zero wait without reading the clock.
            let pool = &self.cluster.pools[idx];
            let got = match pool.checkout_now().await {
                Ok(Some(conn)) => {
                    self.cluster
                        .metrics
                        .checkout_wait(std::time::Duration::ZERO);
                    Ok(conn)
                }
                Ok(None) => {
                    let started = std::time::Instant::now();
                    let _waiting = self.cluster.metrics.client_waiting();
                    let got = pool.checkout_waiting().await;
                    self.cluster.metrics.checkout_wait(started.elapsed());
                    got
                }
                Err(e) => Err(e),
            };
            match got {
                Ok(conn) => {
                    self.install(conn, idx, matches!(want, Want::Primary))
                        .await?;
                    self.send_deferred_begin();
                    return Ok(());
                }
                Err(pool::CheckoutError::Connect(e)) => {
                    self.cluster.metrics.error(kind::CONNECT);
                    state.backends[idx].mark_failed(&e.to_string());
                    if matches!(want, Want::Primary) || exclude.is_some() {
                        return Err(pool::CheckoutError::Connect(e).into());
                    }
                    exclude = Some(idx);
                }
                // A reload closed this pool (raced with it, or waited in it): move to the
                // new pools and try again there.
                Err(pool::CheckoutError::Closed(_)) if reloaded < 3 => {
                    reloaded += 1;
                    self.refresh_cluster()?;
                    exclude = None;
                }
                Err(e) => {
                    self.cluster.metrics.error(kind::CHECKOUT_TIMEOUT);
                    return Err(e.into());
                }
            }
        }
    }

    /// After a reload, move to this worker's current pools for the client's database. Only
    /// called with no backend held, so a transaction never changes generation midway; the
    /// old pools drain as their last connections come back. A database the new config no
    /// longer serves ends the session.
    pub(super) fn refresh_cluster(&mut self) -> Result<(), SessionError> {
        let now = self
            .worker
            .shared
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        if self.cluster.generation == now || self.backend.is_some() {
            return Ok(());
        }
        let map = self.worker.clusters.load();
        match map.get(&self.cluster.database) {
            Some(c) => {
                self.cluster = c.clone();
                self.routed_cache.clear();
                Ok(())
            }
            None => Err(SessionError::ClusterRemoved(self.cluster.database.clone())),
        }
    }

    /// Remember what was just queued for a replica, for one retry elsewhere.
    pub(super) fn keep_for_replay(&mut self, before: usize) {
        let added = &self.bout[before.min(self.bout.len())..];
        if self.replay.len() + added.len() > MAX_REPLAY {
            self.replay_ok = false;
            self.replay = BytesMut::new();
        } else {
            self.replay.extend_from_slice(added);
        }
    }

    /// A backend connection failed. If it was a replica that had not answered anything yet,
    /// mark it down and send the same request to another eligible backend; otherwise the
    /// client gets the error.
    pub(super) async fn retry_elsewhere(&mut self, e: SessionError) -> Result<(), SessionError> {
        let idx = self.backend_idx;
        let state = self.cluster.state.clone();
        state.backends[idx].mark_failed(&e.to_string());
        if self.for_write || self.responded || !self.replay_ok || self.replay.is_empty() {
            return Err(e);
        }
        self.cluster.metrics.error(kind::REPLICA_RETRY);
        let replay = std::mem::take(&mut self.replay);
        if let Some(mut dead) = self.detach() {
            dead.clean = false;
            pool::release(dead);
        }
        let want = Want::Replica {
            min_lsn: self.ryw_floor,
        };
        // A reload may have replaced the pools meanwhile: skip the failed server by address.
        let failed = state.backends[idx].addr;
        self.refresh_cluster()?;
        let state = self.cluster.state.clone();
        let skip = state.backends.iter().position(|b| b.addr == failed);
        let next = state.select(want, skip).map_err(|_| e)?;
        let conn = self.cluster.pools[next].checkout().await?;
        self.install(conn, next, false).await?;
        tracing::info!(from = %state.backends[idx].addr, to = %state.backends[next].addr, "read retried on another backend");
        self.bout.clear();
        self.bout.extend_from_slice(&replay);
        self.bin.clear();
        // Only one retry per request.
        self.replay_ok = false;
        Ok(())
    }

    /// Statements the proxy answers itself. Returns true if the Query was handled.
    pub(super) fn answer_locally(&mut self, h: &Header) -> Result<bool, SessionError> {
        let Ok(sql) = codec::query_msg(&self.cin[5..h.wire_len]) else {
            return Ok(false);
        };
        // Every Query passes here: rule most out by their first letters.
        if !starts_with_any(sql, &["set", "reset", "show"]) {
            return Ok(false);
        }
        let Ok(sql) = std::str::from_utf8(sql) else {
            return Ok(false);
        };
        let mut out = BytesMut::new();
        if let Some(route) = hints::route_setting(sql) {
            self.route_override = route;
            codec::put_command_complete(&mut out, "SET");
        } else if is_show_backends(sql) {
            self.put_backends_table(&mut out);
        } else {
            return Ok(false);
        }
        codec::put_ready(&mut out, self.tx_status);
        self.pending.push_back(Pend::Local(out.to_vec().into()));
        Ok(true)
    }

    fn put_backends_table(&self, out: &mut BytesMut) {
        let cols = [
            "address",
            "role",
            "state",
            "in_read_set",
            "lag_bytes",
            "lag_seconds",
            "in_flight",
            "transitions",
        ];
        codec::put_row_description(out, &cols);
        let state = &self.cluster.state;
        for b in &state.backends {
            let row = [
                b.addr.to_string(),
                b.role().as_str().to_string(),
                if b.is_up() { "up" } else { "down" }.to_string(),
                b.in_read_set().to_string(),
                b.lag_bytes().to_string(),
                format!("{:.3}", b.lag().as_secs_f64()),
                b.outstanding().to_string(),
                b.transitions
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ];
            codec::put_data_row(out, &row);
        }
        codec::put_command_complete(out, &format!("SHOW {}", state.backends.len()));
    }

    /// Answer a message with an error without a backend: a Query gets the error and
    /// ReadyForQuery; an extended-protocol message gets the error and the rest of its batch
    /// is dropped up to Sync, as a server would.
    pub(super) fn reject(&mut self, h: &Header, code: &str, message: &str) {
        let mut out = BytesMut::new();
        codec::put_error(&mut out, "ERROR", code, &format!("switchyard: {message}"));
        if h.tag == b'Q' {
            codec::put_ready(&mut out, self.tx_status);
        } else if h.tag != b'S' {
            self.discard_until_sync = true;
        } else {
            codec::put_ready(&mut out, self.tx_status);
        }
        self.pending.push_back(Pend::Local(out.to_vec().into()));
    }
}

/// True if `sql`, after leading whitespace, starts with one of `words` (ASCII, any case).
/// A statement with a leading comment is not matched (it then takes the general path).
pub(super) fn starts_with_any(sql: &[u8], words: &[&str]) -> bool {
    let t = sql.trim_ascii_start();
    words
        .iter()
        .any(|w| t.len() >= w.len() && t[..w.len()].eq_ignore_ascii_case(w.as_bytes()))
}

fn is_show_backends(sql: &str) -> bool {
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty());
    matches!(
        (words.next(), words.next(), words.next()),
        (Some(a), Some(b), None) if a.eq_ignore_ascii_case("show") && b.eq_ignore_ascii_case("switchyard.backends")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_backends_is_recognised() {
        assert!(is_show_backends("SHOW switchyard.backends"));
        assert!(is_show_backends("  show SWITCHYARD.BACKENDS ;"));
        assert!(!is_show_backends("SHOW switchyard.backends x"));
        assert!(!is_show_backends("SHOW search_path"));
    }
}
