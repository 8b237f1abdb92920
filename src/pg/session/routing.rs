//! Where a session's next transaction or statement goes: classification, hints, the
//! session's route setting, read-your-writes, replica failure and retry, and the statements
//! the proxy answers itself (`SET switchyard.route`, `SHOW switchyard.backends`).

use super::{Pend, Session, SessionError, HIGH_WATER};
use crate::cluster::pause::Hold;
use crate::cluster::{SelectError, Want};
use crate::config::PoolMode;
use crate::metrics::kind;
use crate::pg::backend::{CheckoutError, Pooled};
use crate::pg::codec::{self, Header};
use crate::pg::prepared;
use crate::router::classify::{Class, Route, TxEffect};
use crate::router::hints::{self, Hint};
use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest request kept for a retry on another replica.
const MAX_REPLAY: usize = 1 << 20;

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// Decide what kind of backend the batch at the head of the input needs: a replica only
    /// if every statement in it is a read. A batch is one Query, or the extended-protocol
    /// messages up to and including a Sync. Called only when no backend is held, i.e. at the
    /// start of a transaction or of a batch outside one. `Ok(None)`: the batch is not whole
    /// yet (no Sync so far) and the server would not answer it before its Sync or a Flush
    /// anyway, so the decision waits for more input.
    pub(super) fn want_for_batch(&mut self, h: &Header) -> Result<Option<Want>, SelectError> {
        if self.deferred_begin.is_some() {
            return self.want_after_begin(h).map(Some);
        }
        let (read, reason) = match self.route_fixed() {
            Some(reason) => (false, reason),
            None => match self.scan_batch() {
                Batch::Incomplete if self.cin.len() < HIGH_WATER => return Ok(None),
                Batch::Incomplete => (false, "batch"),
                Batch::NotRead(reason) => (false, reason),
                Batch::Read(reason) => (true, reason),
            },
        };
        self.route_reason = reason;
        let state = self.cluster.state.clone();
        if !read {
            state.primary()?;
            return Ok(Some(Want::Primary));
        }
        match self.ryw_min_lsn() {
            Some(min_lsn) => {
                let want = Want::Replica { min_lsn };
                state.select(want, None)?;
                Ok(Some(want))
            }
            None => {
                self.route_reason = "read_your_writes";
                Ok(Some(Want::Primary))
            }
        }
    }

    /// True when the client holds a connection chosen for reads, between batches and outside
    /// a transaction, and the next batch is not all reads (or not whole yet): it must not go
    /// to that connection.
    pub(super) fn next_batch_leaves_replica(&self) -> bool {
        if self.for_write
            || self.mode != PoolMode::Transaction
            || self.batch_open
            || self.copy_in_mark.is_some()
            || (self.pending.is_empty() && self.tx_status != b'I')
        {
            return false;
        }
        !matches!(self.scan_batch(), Batch::Read(_))
    }

    /// Why every statement of this client goes to the primary now, if it does.
    fn route_fixed(&self) -> Option<&'static str> {
        if self.mode != PoolMode::Transaction {
            Some("session_mode")
        } else if self.pinned() {
            Some("pinned")
        } else if !self.cluster.state.split {
            Some("split_off")
        } else if self.serializable_default() {
            Some("serializable")
        } else {
            None
        }
    }

    /// The client's transactions are serializable unless it says otherwise (its carried
    /// `default_transaction_isolation`, or its startup value): a hot standby refuses them
    /// ("cannot use serializable mode in a hot standby"), so its reads stay on the primary.
    fn serializable_default(&self) -> bool {
        self.wanted.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("default_transaction_isolation")
                && v.trim().eq_ignore_ascii_case("serializable")
        })
    }

    /// Classify the batch at the head of the input (see [`Self::want_for_batch`]).
    pub(super) fn scan_batch(&self) -> Batch {
        let mut off = 0;
        let mut extended = false;
        let mut unnamed = false;
        let mut reason = "read";
        while let Ok(Some(h)) = codec::header(&self.cin[off..], self.max_message) {
            if self.cin.len() - off < h.wire_len {
                break;
            }
            let body = &self.cin[off + 5..off + h.wire_len];
            off += h.wire_len;
            let sql = match h.tag {
                b'Q' if !extended => match codec::query_msg(body) {
                    Ok(sql) => Some(sql),
                    Err(_) => return Batch::NotRead("protocol"),
                },
                b'P' => match codec::parse_msg(body) {
                    Ok(p) => {
                        unnamed |= p.name.is_empty();
                        Some(p.query)
                    }
                    Err(_) => return Batch::NotRead("protocol"),
                },
                b'B' => match codec::bind_msg(body) {
                    // The unnamed statement: read if parsed in this batch (checked there).
                    Ok(b) if b.statement.is_empty() && unnamed => None,
                    Ok(b) => match self.stmts.get(b.statement) {
                        Some(def) => Some(&def.query[..]),
                        None => return Batch::NotRead("protocol"),
                    },
                    Err(_) => return Batch::NotRead("protocol"),
                },
                b'D' | b'E' | b'C' => None,
                b'S' => return Batch::Read(reason),
                // Flush, FunctionCall, copy messages, a Query inside an extended batch.
                _ => return Batch::NotRead("protocol"),
            };
            if h.tag != b'Q' {
                extended = true;
            }
            if let Some(sql) = sql {
                let sql = std::str::from_utf8(sql).ok();
                let (read, why) = self.is_read(sql);
                if !read {
                    return Batch::NotRead(why);
                }
                reason = why;
            }
            if h.tag == b'Q' {
                return Batch::Read(reason);
            }
        }
        if extended {
            Batch::Incomplete
        } else {
            // Nothing whole at the head: nothing to route yet (the caller saw a message).
            Batch::NotRead("protocol")
        }
    }

    /// A bare `BEGIN` / `START TRANSACTION` (read-write or unspecified) with splitting on is
    /// answered by the proxy; the real BEGIN goes out with the transaction's first statement,
    /// so `SET TRANSACTION READ ONLY` there can still send the transaction to a replica. The
    /// transaction's snapshot is taken at its first statement either way; only `now()`
    /// (transaction start time) moves to that statement.
    pub(super) fn defer_begin(&mut self, h: &Header) -> bool {
        if self.mode != PoolMode::Transaction
            || self.pinned()
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
        let start = first.as_ref().is_some_and(|w| w.is(0, "START"));
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
        // The server's tag for what the client sent.
        codec::put_command_complete(&mut out, if start { "START TRANSACTION" } else { "BEGIN" });
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
        let serializable = sql.is_some_and(|s| serializable(s.as_bytes()))
            || self.deferred_begin.as_deref().is_some_and(serializable);
        match class.map(|c| c.tx) {
            Some(TxEffect::SetTransactionReadOnly)
                if self.route_override != Some(Hint::Primary) && !serializable =>
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

    /// Send the deferred BEGIN ahead of everything else on the new connection. Called by
    /// `install`, which every path that gives the client a connection goes through.
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

    /// True if `sql` may run on a replica (the caller checked [`Self::route_fixed`]).
    fn is_read(&self, sql: Option<&str>) -> (bool, &'static str) {
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
            TxEffect::Begin { read_only } if read_only && serializable(sql.as_bytes()) => {
                return (false, "serializable");
            }
            TxEffect::Begin { read_only } => read_only,
            TxEffect::None => class.route == Route::Replica,
            _ => false,
        };
        (read, class.reason.as_str())
    }

    /// Read-your-writes: `Some(floor)` if a replica may serve this client now (floor = the
    /// position it must have replayed), `None` if the read must go to the primary.
    fn ryw_min_lsn(&mut self) -> Option<Option<u64>> {
        let state = self.cluster.state.clone();
        self.ryw.min_position(&state)
    }

    /// Check out a connection for `want`. A backend that cannot be reached is marked down and,
    /// for reads, another eligible one (or the fallback) is tried.
    ///
    /// The common case (not paused, an idle connection with the client's settings) takes no
    /// future at all; anything else runs in a box. Inline, the checkout's future (about
    /// 1 KiB) would be part of every client's task for its whole life, idle or not (see
    /// `benches/README.md`, memory per client); boxed every time, it cost an allocation per
    /// transaction (some 250 instructions with mimalloc, whose one-at-a-time reuse of a
    /// block takes its slow path).
    pub(super) async fn acquire_for(&mut self, want: Want) -> Result<(), SessionError> {
        let Some((conn, idx, hold)) = self.take_at_once(want) else {
            let check_out = Box::pin(self.check_out(want));
            return check_out.await;
        };
        if self.install_waits(&conn) {
            // As a connection checked out the async way: a read whose connection breaks
            // while the client's settings are applied is taken elsewhere.
            let install = Box::pin(self.check_out_held(want, hold, Some((conn, idx))));
            return install.await;
        }
        self.install_ready(conn, idx, matches!(want, Want::Primary), hold);
        Ok(())
    }

    /// [`Self::check_out`]'s common case, with no wait: an idle connection of the backend
    /// `want` selects, the cluster not paused. `None` for anything else (and any error),
    /// which `check_out` meets again from the start.
    fn take_at_once(&mut self, want: Want) -> Option<(Pooled, usize, Hold)> {
        self.refresh_cluster().ok()?;
        let c = &self.cluster;
        c.state
            .take_at_once(want, |i| c.pools[i].checkout_metered_now(&c.metrics))
    }

    async fn check_out(&mut self, want: Want) -> Result<(), SessionError> {
        self.refresh_cluster()?;
        let hold = match self.cluster.state.pause.try_hold() {
            Some(hold) => hold,
            None => {
                // (The state is taken only here: no Arc clone on the path of an unpaused
                // cluster.)
                let state = self.cluster.state.clone();
                let limit = self.worker.shared.config().pool.pause_timeout;
                let admitted = state.pause.admit_hold(&state.name, limit).await;
                let hold = admitted.map_err(SessionError::Paused)?;
                // A reload may have come while it waited (the pause is the same).
                self.refresh_cluster()?;
                hold
            }
        };
        self.check_out_held(want, hold, None).await
    }

    /// [`Self::check_out`] once admitted past a pause (`hold`), starting with connection
    /// `first` (checked out of backend `idx`) if given.
    async fn check_out_held(
        &mut self,
        want: Want,
        hold: Hold,
        mut first: Option<(Pooled, usize)>,
    ) -> Result<(), SessionError> {
        let mut hold = Some(hold);
        let mut exclude = None;
        let mut reloaded = 0;
        loop {
            let state = self.cluster.state.clone();
            let (idx, got) = match first.take() {
                Some((conn, idx)) => (idx, Ok(conn)),
                None => {
                    let idx = state.select(want, exclude).map_err(SessionError::Select)?;
                    let pool = &self.cluster.pools[idx];
                    (idx, pool.checkout_metered(&self.cluster.metrics).await)
                }
            };
            match got {
                Ok(conn) => {
                    let h = hold.take().expect("a hold for every install");
                    let for_write = matches!(want, Want::Primary);
                    match self.install(conn, idx, for_write, h).await {
                        // A read whose connection died under the client's settings (its
                        // server going away) is taken elsewhere, once.
                        Err(SessionError::InstallBroken(why)) if exclude.is_none() => {
                            state.backends[idx].mark_failed(&why);
                            if for_write {
                                return Err(SessionError::InstallBroken(why));
                            }
                            // The statement was admitted before: it goes on, paused or not.
                            hold = Some(self.cluster.state.pause.hold());
                            exclude = Some(idx);
                        }
                        r => return r,
                    }
                }
                Err(CheckoutError::Connect(e)) => {
                    self.cluster.metrics.error(kind::CONNECT);
                    if e.login_denied() {
                        return Err(CheckoutError::Connect(e).into());
                    }
                    state.backends[idx].mark_failed(&e.to_string());
                    if matches!(want, Want::Primary) || exclude.is_some() {
                        return Err(CheckoutError::Connect(e).into());
                    }
                    exclude = Some(idx);
                }
                // A reload closed this pool (raced with it, or waited in it): move to the
                // new pools and try again there.
                Err(CheckoutError::Closed(_)) if reloaded < 3 => {
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
        match map.get(&self.cluster.database, &self.user) {
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
    /// (Boxed: see [`Session::acquire_for`].)
    pub(super) fn retry_elsewhere(
        &mut self,
        e: SessionError,
    ) -> Pin<Box<impl Future<Output = Result<(), SessionError>> + '_>> {
        Box::pin(self.retry_on_another(e))
    }

    /// Only the proxy's check of a statement's result type went out (the client's Bind or
    /// Describe waits for it in `cin`): the next connection makes its own.
    fn only_check_sent(&self) -> bool {
        self.replay.is_empty()
            && !self.client_saw
            && !self.pending.is_empty()
            && self.pending.iter().all(|p| {
                matches!(
                    p,
                    Pend::Parse { injected: true, .. } | Pend::Learn { hold: true, .. }
                )
            })
    }

    /// Whether what went to the held connection is a read that another backend could be
    /// given instead, if this one fails before it answers.
    pub(super) fn replayable(&self) -> bool {
        !self.for_write && self.replay_ok && (!self.replay.is_empty() || self.only_check_sent())
    }

    async fn retry_on_another(&mut self, e: SessionError) -> Result<(), SessionError> {
        let idx = self.backend_idx;
        let state = self.cluster.state.clone();
        let failed = state.backends[idx].addr;
        state.backends[idx].mark_failed(&e.to_string());
        let only_check = self.only_check_sent();
        if self.responded || !self.replayable() {
            tracing::debug!(
                from = %failed,
                write = self.for_write,
                answered = self.responded,
                replayable = self.replay_ok && (only_check || !self.replay.is_empty()),
                "read not retried"
            );
            return Err(e);
        }
        if only_check {
            // (The statement it prepared there is not the replay's: nothing to bring over.)
            self.pending.clear();
            self.replay_stmts.clear();
        }
        self.cluster.metrics.error(kind::REPLICA_RETRY);
        let replay = std::mem::take(&mut self.replay);
        self.close_backend();
        let want = Want::Replica {
            min_lsn: self.ryw.floor(),
        };
        // A reload may have replaced the pools meanwhile (with fewer backends, so `idx` means
        // nothing there): skip the failed server by address.
        self.refresh_cluster()?;
        let state = self.cluster.state.clone();
        let skip = state.index_of(failed);
        let Ok(next) = state.select(want, skip) else {
            return Err(e);
        };
        let conn = self.cluster.pools[next].checkout().await?;
        // The statement was admitted before: it goes on, paused or not.
        let hold = self.cluster.state.pause.hold();
        let stmts = std::mem::take(&mut self.replay_stmts);
        self.install(conn, next, false, hold).await?;
        self.bout.clear();
        let Some(checks) = self.statements_as_before(&stmts) else {
            // A statement the replay takes as there went stale meanwhile.
            tracing::debug!(from = %failed, "read not retried: a statement it uses went stale");
            self.close_backend();
            return Err(e);
        };
        tracing::info!(from = %failed, to = %state.backends[next].addr, "read retried on another backend");
        if checks.is_empty() {
            self.bout.extend_from_slice(&replay);
        } else {
            self.held_replay = Some(Box::new((replay, checks)));
        }
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
        if !starts_with_any(sql, &["set", "reset", "show", "deallocate"]) {
            return Ok(false);
        }
        let Ok(sql) = std::str::from_utf8(sql) else {
            return Ok(false);
        };
        let mut out = BytesMut::new();
        if let Some(name) = self.deallocates_client_statement(sql) {
            // SQL DEALLOCATE of a statement the client prepared with Parse (psycopg with an
            // older libpq evicts its cache so): the server knows it by the proxy's name, and
            // other clients may use that one; the client's name goes, as Close would do.
            self.stmts.remove(name.as_bytes());
            codec::put_command_complete(&mut out, "DEALLOCATE");
        } else if let Some(route) = hints::route_setting(sql) {
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

    /// The client statement (protocol level) that `sql`, a `DEALLOCATE [PREPARE] name` alone,
    /// names, if the client has one by that name and its transaction has not failed (then
    /// the server's refusal is the answer).
    fn deallocates_client_statement(&self, sql: &str) -> Option<String> {
        if self.mode != PoolMode::Transaction || self.tx_status == b'E' || self.stmts.is_empty() {
            return None;
        }
        let name = prepared::deallocate_target(sql)?;
        self.stmts.contains_key(name.as_bytes()).then_some(name)
    }

    /// The Query `h` is a `DEALLOCATE name` of a statement the client may have.
    /// `h` is a Query of one statement that drops every prepared statement (DEALLOCATE ALL,
    /// DISCARD ALL): the client's names end where it runs, which `surely_drops` can tell
    /// only with the transaction status current.
    pub(super) fn drops_all_prepared(&self, h: &Header) -> bool {
        codec::query_msg(&self.cin[5..h.wire_len]).is_ok_and(|sql| {
            super::forward::one_statement(sql)
                && !crate::router::session_state::surely_no_effect(sql)
                && std::str::from_utf8(sql)
                    .is_ok_and(|s| crate::router::session_state::effect_scanned(s).drops_prepared)
        })
    }

    pub(super) fn deallocates_by_name(&self, h: &Header) -> bool {
        codec::query_msg(&self.cin[5..h.wire_len])
            .ok()
            .and_then(|sql| std::str::from_utf8(sql).ok())
            .and_then(prepared::deallocate_target)
            .is_some()
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

/// What the batch at the head of a client's input is, for routing.
pub(super) enum Batch {
    /// Whole, and every statement in it may run on a replica.
    Read(&'static str),
    /// Something in it must run on the primary (why).
    NotRead(&'static str),
    /// Extended-protocol messages without their Sync yet.
    Incomplete,
}

/// True if `sql`, after leading whitespace, starts with one of `words` (ASCII, any case).
/// A statement with a leading comment is not matched (it then takes the general path).
/// The text asks for a serializable transaction, which a hot standby refuses (`BEGIN
/// ISOLATION LEVEL SERIALIZABLE, READ ONLY`, `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE,
/// READ ONLY`, as `pg_dump --serializable-deferrable` begins): it goes to the primary. (The
/// word anywhere, a comment too, counts: the primary serves any transaction.)
fn serializable(sql: &[u8]) -> bool {
    crate::router::lexer::contains_ignore_case(sql, b"serializable")
}

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
