//! The backend-to-client direction of a session: scanning server messages, streaming large
//! ones through, tracking protocol state (ReadyForQuery, ParameterStatus, the answers the
//! pending queue expects), and answering what the proxy answers itself.

use super::{Pend, Session, SessionError, Undo, HIGH_WATER, MAX_BACKEND_MESSAGE};
use crate::config::PoolMode;
use crate::pg::backend::set_param;
use crate::pg::codec::{self, Header};
use crate::pg::prepared::{STALE_MESSAGE, STALE_NAME};
use crate::router::session_state::State;
use bytes::Buf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// Answer synthetic entries that reached the head of the queue.
    pub(super) fn emit_synthetics(&mut self) {
        loop {
            match self.pending.front() {
                Some(Pend::Synthetic(tag, _)) => codec::put_empty(&mut self.cout, *tag),
                Some(Pend::Local(bytes)) => {
                    self.cout.extend_from_slice(bytes);
                    // A ReadyForQuery at its end reports the transaction status as it is now,
                    // after what was answered before it (a pipelined BEGIN, say), not as it
                    // was when the answer was queued.
                    if ends_with_ready(bytes) {
                        let n = self.cout.len();
                        self.cout[n - 1] = self.tx_status;
                    }
                }
                _ => return,
            }
            self.pending.pop_front();
        }
    }

    /// Handle buffered backend bytes: pass them to the client, track protocol state.
    pub(super) fn process_backend(&mut self) -> Result<(), SessionError> {
        let before = self.cout.len();
        let r = self.process_backend_inner();
        self.bytes_down += self.cout.len().saturating_sub(before) as u64;
        r
    }

    fn process_backend_inner(&mut self) -> Result<(), SessionError> {
        self.bin_blocked = false;
        // A server signalled to shut down in the middle of a statement flushes what it had
        // buffered of the answer (a RowDescription, rows) with its goodbye, or after some of
        // it. The start of an answer to a read that could go elsewhere is held until its
        // ReadyForQuery (up to `HOLD_UNANSWERED` bytes): when a goodbye comes before that,
        // none of it was passed on, and the read goes to another backend as if nothing had
        // come. (Most answers come whole in one read and are not looked through.)
        if !self.responded && self.replayable() && !ends_with_ready(&self.bin) {
            if goodbye_before_ready(&self.bin) {
                return Err(SessionError::BackendClosed);
            }
            // (Only while a ReadyForQuery is to come: a batch flushed without its Sync is
            // answered as it comes.)
            if self.bin.len() < HOLD_UNANSWERED && self.status_unsure() {
                return Ok(());
            }
        }
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.bin.len());
                if !self.skip_drops {
                    self.cout.extend_from_slice(&self.bin[..n]);
                }
                self.bin.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(());
                }
            }
            let h = match codec::header(&self.bin, MAX_BACKEND_MESSAGE) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(()),
                Err(e) => return Err(SessionError::BackendProtocol(e.to_string())),
            };
            // DataRow and CopyData can be large: stream them through (or past, when they
            // answer a statement of the proxy's own).
            if matches!(h.tag, b'D' | b'd') {
                self.responded = true;
                self.skip_drops = matches!(self.pending.front(), Some(Pend::Swallow));
                let n = h.wire_len.min(self.bin.len());
                if !self.skip_drops {
                    self.cout.extend_from_slice(&self.bin[..n]);
                    self.client_saw = true;
                }
                self.bin.advance(n);
                self.skip = h.wire_len - n;
                continue;
            }
            if self.bin.len() < h.wire_len {
                return Ok(());
            }
            self.emit_synthetics();
            if is_goodbye(h, &self.bin[..h.wire_len]) {
                if !self.responded && !self.for_write {
                    // The replica is going away (admin shutdown, crash): nothing reached the
                    // client yet, so let the caller retry elsewhere.
                    return Err(SessionError::BackendClosed);
                }
                if self.mode == PoolMode::Transaction
                    && !self.pinned()
                    && self.idle_between_batches()
                {
                    // The server is going away (a fast shutdown's FATAL 57P01, an immediate
                    // one's WARNING) after the client's last answer, on a connection the
                    // client was about to let go: it is closed, the client goes on with
                    // another and hears nothing of it. (Directly, its connection would end;
                    // through a transaction pool it does not depend on that one.)
                    let why = codec::error_field(&self.bin[5..h.wire_len], b'M')
                        .unwrap_or("server going away")
                        .to_owned();
                    self.bin.clear();
                    self.cluster.state.backends[self.backend_idx].mark_failed(&why);
                    self.close_backend();
                    return Ok(());
                }
            }
            self.responded = true;
            let forward = self.on_backend_message(h)?;
            if forward {
                self.cout.extend_from_slice(&self.bin[..h.wire_len]);
                self.client_saw = true;
            }
            self.bin.advance(h.wire_len);
            self.emit_synthetics();
            if self.cout.len() >= HIGH_WATER {
                // The pump comes back here once the client has taken some of it.
                self.bin_blocked = !self.bin.is_empty();
                return Ok(());
            }
        }
    }

    /// Update state for one whole backend message; returns whether the client gets it.
    fn on_backend_message(&mut self, h: Header) -> Result<bool, SessionError> {
        let body = &self.bin[5..h.wire_len];
        let unexpected =
            |what: &str| Err(SessionError::BackendProtocol(format!("unexpected {what}")));
        match h.tag {
            _ if matches!(self.pending.front(), Some(Pend::Swallow)) => {
                match h.tag {
                    b'Z' => {
                        self.pending.pop_front();
                        self.tx_status = *body.first().unwrap_or(&b'E');
                        self.error_seen = false;
                    }
                    b'E' => {
                        let msg = codec::error_field(body, b'M').unwrap_or("");
                        tracing::warn!(
                            error = msg,
                            "a statement of the proxy's failed on the backend"
                        );
                    }
                    // Settings the proxy applied again: the client is told, as it was told
                    // of the reset.
                    b'S' => {
                        self.note_parameter(h, false);
                        return Ok(true);
                    }
                    _ => {}
                }
                return Ok(false);
            }
            b't' | b'T' | b'n' if matches!(self.pending.front(), Some(Pend::Learn { .. })) => {
                self.learn_shape(h);
                return Ok(false);
            }
            b'Z' => {
                let Some(Pend::Ready {
                    clears,
                    sets,
                    forgets,
                    in_tx,
                    stat,
                    ..
                }) = self.pending.pop_front()
                else {
                    return unexpected("ReadyForQuery");
                };
                self.batches_done += 1;
                self.tx_status = *body.first().unwrap_or(&b'E');
                self.count_batch(stat, self.error_seen);
                if self.tx_status == b'I' {
                    // Outside a transaction block no portal is left to read further.
                    self.count_suspended();
                }
                if let Some(names) = forgets {
                    self.settled_reset(&names);
                }
                match sets {
                    // They ran in the block (a failed one rolls back, keeping nothing).
                    Some(sets) if in_tx && !self.error_seen && self.tx_status == b'T' => {
                        let t = self.tx_sets.get_or_insert_with(Default::default);
                        t.sets.extend(sets.into_vec());
                    }
                    Some(_) if in_tx => {}
                    Some(sets) => self.carry_sets(sets.into_vec()),
                    None => {}
                }
                self.settle_tx_sets();
                self.copy_in_mark = None;
                if self.pending.is_empty() {
                    // Any that failed (no CommandComplete) are over.
                    self.dropped_ahead = 0;
                }
                // State a Query cleared is gone once it committed without error.
                if !clears.is_empty() && !self.error_seen && self.tx_status == b'I' {
                    let was = self.pins;
                    self.pins = self.pins.minus(clears);
                    if !was.is_empty() && self.pins.is_empty() {
                        tracing::debug!("client unpinned: its session state was cleared");
                    }
                }
                if !self.pins.contains(State::SETTINGS) {
                    self.sets_unknown = false;
                }
                self.error_seen = false;
            }
            b'S' => {
                let reported = codec::parameter_status(body);
                let expected = self.pending.iter().find_map(|p| match p {
                    Pend::Ready { resets, sets, .. } => {
                        // A report of a setting a carried SET changes (see `carry_sets`).
                        let carried = match (sets.as_ref(), reported) {
                            (Some(sets), Some((k, _))) => {
                                sets.iter().any(|(name, _)| k.eq_ignore_ascii_case(name))
                            }
                            _ => false,
                        };
                        // One a transaction's SET changed, reported again as its block ends.
                        let carried = carried
                            || match (self.tx_sets.as_ref(), reported) {
                                (Some(t), Some((k, _))) => {
                                    t.sets.iter().any(|(name, _)| k.eq_ignore_ascii_case(name))
                                }
                                _ => false,
                            };
                        Some(*resets || carried)
                    }
                    _ => None,
                });
                self.note_parameter(h, expected != Some(true));
            }
            b'1' if matches!(self.pending.front(), Some(Pend::Reparse(_))) => {
                // Only if the proxy statement was gone from the connection after all (a
                // client's SQL DEALLOCATE of it): it now holds the client's text, so the
                // connection must not serve anyone as it is.
                self.pending.pop_front();
                if let Some(conn) = self.backend.as_mut() {
                    conn.prepared.clear();
                    conn.state_unknown = true;
                }
                return Ok(true);
            }
            b'1' => match self.pending.pop_front() {
                Some(Pend::Parse { injected, def, .. }) => {
                    // A statement that may name this session's temporary tables proves
                    // nothing for other sessions.
                    if let Some(def) = def.filter(|_| !self.pins.contains(State::TEMP)) {
                        def.validated
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Ok(!injected);
                }
                _ => return unexpected("ParseComplete"),
            },
            b'2' => self.expect_head(|p| matches!(p, Pend::Bind(_)), "BindComplete")?,
            b'3' => match self.pending.pop_front() {
                Some(Pend::Close { injected }) => return Ok(!injected),
                _ => return unexpected("CloseComplete"),
            },
            b'n' => self.expect_head(|p| matches!(p, Pend::Describe(_)), "NoData")?,
            b'T' => {
                if matches!(self.pending.front(), Some(Pend::Describe(_))) {
                    self.pending.pop_front();
                }
            }
            b'C' | b'I' | b's' => {
                let mut ran = None;
                match self.pending.front() {
                    Some(Pend::Execute { stat, .. }) => {
                        // (An empty query ran no statement.)
                        ran = stat.filter(|_| h.tag != b'I');
                        self.pending.pop_front();
                    }
                    // A statement of a Query of several (see `stats::count_part`).
                    _ if h.tag == b'C' => {
                        let at = &mut self.last_answered_at;
                        super::stats::count_part(&mut self.pending, at, false);
                    }
                    _ => {}
                }
                if h.tag == b'C' {
                    self.copy_in_mark = None;
                    if body.starts_with(b"DEALLOCATE ALL") || body.starts_with(b"DISCARD ALL") {
                        if self.dropped_ahead > 0 {
                            // Dropped when it was sent; names made since stay.
                            self.dropped_ahead -= 1;
                        } else {
                            self.forget_prepared();
                        }
                    }
                    if self.tx_sets.is_some() {
                        let end = super::carried::TxEnd::of(&self.bin[5..h.wire_len]);
                        self.note_tx_end(end);
                    }
                }
                if let Some(stat) = ran {
                    self.count_execute(stat, false, h.tag == b's');
                }
            }
            // CopyInResponse (CopyBoth for replication): the server reads copy data now.
            b'G' | b'W' => self.on_copy_in(),
            b'E' => {
                self.error_seen = true;
                self.copy_in_mark = None;
                let at = &mut self.last_answered_at;
                super::stats::count_part(&mut self.pending, at, true);
                // The statement the client was running failed: at its Execute, or before it
                // at its Parse or Bind (a planner folding `1/$1` with 0 bound). The server
                // skips what follows.
                let failed = self
                    .pending
                    .iter()
                    .take_while(|p| !matches!(p, Pend::Ready { .. }))
                    .find_map(|p| match p {
                        Pend::Execute { stat, .. } => Some(*stat),
                        _ => None,
                    })
                    .flatten();
                if let Some(Pend::Bind(Some((_, def))) | Pend::Describe(Some((_, def)))) =
                    self.pending.front()
                {
                    if is_stale_plan_error(body) {
                        // The statement's result type changed since the server prepared it (a
                        // table altered): that server statement stays stale on every
                        // connection that has it, as a client's own would. A client that
                        // prepares the text again (drivers do, on this error) must get a
                        // fresh one, as it would from a server of its own, so the text no
                        // longer leads to this statement.
                        tracing::debug!(id = def.id, "a proxy statement went stale");
                        self.worker.statements.retire(def);
                    }
                }
                let replaced = match self.pending.front() {
                    // A stale statement, bound or described under a name no server has (see
                    // `prepared::STALE_NAME`): refused as a server refuses its own stale statement.
                    // A server describing one sends its parameters before it finds it stale.
                    Some(p @ (Pend::Bind(Some((_, def))) | Pend::Describe(Some((_, def)))))
                        if def.is_stale()
                            && codec::error_field(body, b'C') == Some("26000")
                            && codec::error_field(body, b'M')
                                .is_some_and(|m| m.contains(STALE_NAME)) =>
                    {
                        let mut out = bytes::BytesMut::new();
                        if let (Pend::Describe(_), Some(shape)) = (p, def.shape.get()) {
                            out.extend_from_slice(&shape.param_desc);
                        }
                        put_stale_error(&mut out);
                        Some(out.to_vec())
                    }
                    // The server names the statement by the proxy's name: the client knows
                    // it by its own.
                    Some(
                        Pend::Bind(Some((name, _)))
                        | Pend::Describe(Some((name, _)))
                        | Pend::Reparse(name),
                    ) => codec::edit_error(body, |field, text| match field {
                        b'M' | b'D' => crate::pg::prepared::with_client_name(text, name),
                        _ => None,
                    })
                    .map(|b| b.to_vec()),
                    // Cancelled for `[pool] query_timeout`: said so, as the server says so of
                    // its own statement_timeout (the code stays 57014).
                    _ if self.key.slot.clock.was_stopped()
                        && codec::error_field(body, b'C') == Some("57014") =>
                    {
                        codec::edit_error(body, |field, _| {
                            (field == b'M').then(|| {
                                "canceling statement due to query_timeout of the proxy".to_owned()
                            })
                        })
                        .map(|b| b.to_vec())
                    }
                    _ => None,
                };
                if let Some(stat) = failed {
                    self.count_execute(stat, true, false);
                }
                self.on_error();
                if let Some(error) = replaced {
                    self.cout.extend_from_slice(&error);
                    return Ok(false);
                }
            }
            _ => {}
        }
        Ok(true)
    }

    /// An answer to the proxy's own Describe of a statement it prepared (`Pend::Learn`).
    fn learn_shape(&mut self, h: Header) {
        let Some(Pend::Learn {
            def,
            param_desc,
            repoint,
            hold,
        }) = self.pending.front_mut()
        else {
            return;
        };
        let held = *hold;
        let message = &self.bin[..h.wire_len];
        if h.tag == b't' {
            *param_desc = Some(message.into());
            return;
        }
        let rows = h.tag == b'T';
        let row_type = if rows {
            codec::row_type(&message[5..])
        } else {
            None
        };
        if let Some(known) = def.shape.get() {
            // A server compares the result type (names, types, modifiers) when it plans a
            // statement again; so does the proxy when it prepares one anew.
            let changed = known.rows != rows
                || (known.row_type.is_some() && row_type.is_some() && known.row_type != row_type);
            if changed {
                let (def, repoint) = (def.clone(), repoint.take());
                if !def.is_stale() {
                    tracing::debug!(id = def.id, "a proxy statement's result type changed");
                    def.stale.store(true, std::sync::atomic::Ordering::Relaxed);
                    self.worker.statements.retire(&def);
                }
                // A client that has not been told a result type gets the text's statement as
                // it is now, as from a Parse of its own on a server.
                if let Some(name) = repoint {
                    if self.stmts.get(&name).is_some_and(|d| Arc::ptr_eq(d, &def)) {
                        let fresh = self.worker.statements.intern(&def.query, &def.param_types);
                        self.stmts.insert(name, fresh);
                    }
                }
            }
        } else if let Some(param_desc) = param_desc.take() {
            let params = param_desc
                .get(5..7)
                .map_or(0, |n| u16::from_be_bytes([n[0], n[1]]));
            let _ = def.shape.set(crate::pg::prepared::Shape {
                param_desc,
                params,
                rows,
                row_type,
            });
        }
        self.pending.pop_front();
        if held {
            if !self.client_saw {
                // The check held back the client's messages, and nothing of the server's
                // reached the client yet: for a retry elsewhere, the request starts with what
                // it held (the statement is on this connection now, as one the replay takes
                // as there).
                self.responded = false;
                self.replay.clear();
                self.replay_stmts.clear();
            }
            self.release_held_replay(false);
        }
    }

    /// A plain `SET` the client sent outside a transaction was answered: if it ran, its
    /// setting is the client's own from now on (applied on each connection it gets, the held
    /// one has it), and a client pinned only by settings the proxy carries is unpinned.
    pub(super) fn carry_sets(&mut self, sets: Vec<(String, String)>) {
        // (Ones that failed changed nothing: the server runs a string of them as one
        // transaction.)
        if !self.error_seen && self.tx_status == b'I' {
            for (name, value) in sets {
                // A reported setting carries the value the server reports (`SET datestyle =
                // 'ISO'` keeps the day order, `SET TIME ZONE -7` is a POSIX zone for
                // set_config), also when it did not change. One whose value only the
                // report gives (empty), and none came: the client stays pinned.
                let reported = self.backend.as_ref().and_then(|c| {
                    c.server_params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(&name))
                        .map(|(_, v)| v.clone())
                });
                let value = match reported {
                    Some(v) => v,
                    None if value.is_empty() => {
                        self.sets_unknown = true;
                        continue;
                    }
                    None => value,
                };
                self.recorded
                    .retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
                self.recorded.push((name.clone(), value.clone()));
                if let Some(conn) = self.backend.as_mut() {
                    conn.applied = super::settings::merged(&conn.applied, &[(name, value)]);
                }
            }
            self.wanted =
                std::sync::Arc::new(super::settings::merged(&self.startup, &self.recorded));
        }
        if self.pins == State::SETTINGS && !self.sets_unknown {
            tracing::debug!("client unpinned: the proxy carries its settings");
            self.pins = State::NONE;
        }
    }

    /// The client's DEALLOCATE ALL or DISCARD ALL ran: its named statements are gone, as
    /// they would be on a server of its own (it may prepare the same names again), and so
    /// are the connection's proxy statements.
    fn forget_prepared(&mut self) {
        if self.mode == PoolMode::Transaction {
            self.stmts.clear();
        }
        if let Some(conn) = self.backend.as_mut() {
            conn.prepared.clear();
        }
    }

    /// ParameterStatus: keep the connection's view current. A reported setting that changed
    /// when no reset was expected was changed by the client some way the statement scan did
    /// not see (a function): pin it.
    fn note_parameter(&mut self, h: Header, unexpected_change_pins: bool) {
        let body = &self.bin[5..h.wire_len];
        if let (Some((k, v)), Some(conn)) = (codec::parameter_status(body), self.backend.as_mut()) {
            let changed = conn.server_params.iter().any(|(n, old)| n == k && old != v);
            set_param(&mut conn.server_params, k, v);
            if changed && unexpected_change_pins && self.mode == PoolMode::Transaction {
                if self.pins.is_empty() {
                    tracing::debug!(setting = k, "client pinned: a reported setting changed");
                }
                self.pins |= State::SETTINGS;
                self.sets_unknown = true;
            }
        }
    }

    /// The server started COPY FROM STDIN for the statement at the head of the queue. Until
    /// the client's CopyDone or CopyFail it ignores Sync (libpq and others send one right
    /// after the Execute): those Syncs get no ReadyForQuery, so they leave the queue.
    fn on_copy_in(&mut self) {
        let mark = match self.pending.front() {
            Some(Pend::Execute { copy_mark, .. } | Pend::Ready { copy_mark, .. }) => *copy_mark,
            _ => return,
        };
        self.copy_in_mark = Some(mark);
        let mut i = 1;
        while i < self.pending.len() {
            match &self.pending[i] {
                Pend::Ready { copy_mark, .. } if *copy_mark == mark => {
                    self.pending.remove(i);
                }
                Pend::Ready { .. } => break,
                _ => i += 1,
            }
        }
    }

    fn expect_head(&mut self, ok: impl Fn(&Pend) -> bool, what: &str) -> Result<(), SessionError> {
        match self.pending.front() {
            Some(p) if ok(p) => {
                self.pending.pop_front();
                Ok(())
            }
            _ => Err(SessionError::BackendProtocol(format!("unexpected {what}"))),
        }
    }

    /// After an error in the extended protocol the server skips to the next Sync: drop the
    /// answers it will not send, and forget statements whose Parse it skipped or failed.
    fn on_error(&mut self) {
        // The server skips to the next Sync: the one of a replay held for checks, which goes
        // now.
        self.release_held_replay(true);
        if matches!(self.pending.front(), Some(Pend::Ready { .. }) | None) {
            return;
        }
        // Parses and local Closes of client statements that failed or were skipped, undone
        // last first (a name parsed and closed in one batch ends as it was before).
        let mut undo = Vec::new();
        while let Some(p) = self.pending.front() {
            if matches!(p, Pend::Ready { .. }) {
                break;
            }
            let skipped = self.pending.pop_front();
            if let Some(Pend::Synthetic(_, Some(u))) = skipped {
                undo.push(u);
            } else if let Some(Pend::Parse {
                def,
                client_name,
                unnamed,
                ..
            }) = skipped
            {
                if unnamed {
                    // Failed, or skipped (the server may still have an older one: then a
                    // later Bind of it works only on this connection, as it may here).
                    self.unnamed_parse.clear();
                    self.unnamed_here = false;
                }
                if let (Some(def), Some(conn)) = (def, self.backend.as_mut()) {
                    conn.prepared.remove(&def.id);
                }
                if let Some(name) = client_name {
                    undo.push(Undo::Parsed(name));
                }
            }
        }
        if self.pending.is_empty() {
            // The batch's Sync has not come from the client yet.
            self.server_skips = true;
        }
        for u in undo.into_iter().rev() {
            match u {
                Undo::Parsed(name) => {
                    self.stmts.remove(&name);
                }
                Undo::Closed(name, def) => {
                    self.stmts.insert(name, def);
                }
            }
        }
    }
}

/// The ErrorResponse of a server that finds a prepared statement stale, field for field
/// (the file and line as PostgreSQL 15 gives them): drivers tell it from other 0A000 errors
/// by its routine (asyncpg's InvalidCachedStatementError, pgjdbc's re-prepare).
fn put_stale_error(out: &mut bytes::BytesMut) {
    let mut body = Vec::with_capacity(128);
    for (field, value) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "0A000"),
        (b'M', STALE_MESSAGE),
        (b'F', "plancache.c"),
        (b'L', "722"),
        (b'R', "RevalidateCachedQuery"),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    codec::put_message(out, b'E', &body);
}

/// Whether an ErrorResponse body says a prepared statement's cached plan may not be used
/// because its result type changed (0A000 from RevalidateCachedQuery; the routine is not
/// translated, the message may be).
fn is_stale_plan_error(body: &[u8]) -> bool {
    codec::error_field(body, b'C') == Some("0A000")
        && (codec::error_field(body, b'R') == Some("RevalidateCachedQuery")
            || codec::error_field(body, b'M') == Some(STALE_MESSAGE))
}

/// Whether the message `msg` (headed `h`) is a server's goodbye: an ErrorResponse, or a
/// NoticeResponse, of class 57P, the server ending the connection (a fast shutdown's FATAL
/// 57P01; an immediate shutdown or a crash of another backend sends a WARNING, 57P01 or
/// 57P02, to the client only, then the process exits).
fn is_goodbye(h: Header, msg: &[u8]) -> bool {
    matches!(h.tag, b'E' | b'N')
        && codec::error_field(&msg[5..], b'C').is_some_and(|c| c.starts_with("57P"))
}

/// How much of the start of an answer to a replayable read is held back while its
/// ReadyForQuery has not come (see `process_backend_inner`): a server sends its answer in
/// pieces of 8 kB (PostgreSQL's send buffer), so answers of a few pieces are covered, and
/// the buffer stays one that `net::bufs` keeps for reuse.
const HOLD_UNANSWERED: usize = 32 * 1024;

/// Whether the complete messages in `bin` have a server's goodbye before any
/// ReadyForQuery.
fn goodbye_before_ready(bin: &[u8]) -> bool {
    let mut rest = bin;
    while let Ok(Some(h)) = codec::header(rest, MAX_BACKEND_MESSAGE) {
        if rest.len() < h.wire_len || h.tag == b'Z' {
            return false;
        }
        if is_goodbye(h, &rest[..h.wire_len]) {
            return true;
        }
        rest = &rest[h.wire_len..];
    }
    false
}

/// Whether `bytes` end with a ReadyForQuery (or with bytes that look like one).
fn ends_with_ready(bytes: &[u8]) -> bool {
    bytes.len() >= 6 && bytes[bytes.len() - 6..bytes.len() - 1] == [b'Z', 0, 0, 0, 5]
}
