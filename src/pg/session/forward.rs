//! The client's messages on their way to a server: each is translated into the bytes the
//! backend gets and the answers it is owed (`Pend`), client statement names are mapped to
//! proxy-prepared ones (a Parse injected where the held connection lacks the statement),
//! and statements with a session effect pin the client.

use super::{ClientName, Pend, Session, SessionError, Undo};
use crate::config::PoolMode;
use crate::pg::codec::{self, Header};
use crate::pg::prepared::STALE_NAME;
use crate::router::session_state::{self, Effect, State};
use tokio::io::{AsyncRead, AsyncWrite};

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// Answer a named Parse without a server when that is safe: the statement was accepted
    /// by a server before, or no server is free right now (`defer_parse`; the Parse then
    /// goes to the server in front of the first Bind or Describe, and an error in it is
    /// reported there). Returns false when a server should be asked.
    pub(super) fn parse_locally(&mut self, h: &Header) -> Result<bool, SessionError> {
        let p = codec::parse_msg(&self.cin[5..h.wire_len])
            .map_err(|e| SessionError::ClientProtocol(e.to_string()))?;
        if p.name.is_empty() {
            return Ok(false);
        }
        if self.stmts.contains_key(p.name) {
            // A server checks the statement before the name (a syntax error or a missing
            // table is reported first): let one refuse it, unless none is free now. Nothing
            // of this batch reached a server (none is held), so here it is refused as a
            // duplicate.
            if !std::mem::take(&mut self.defer_parse) {
                return Ok(false);
            }
            let error = duplicate_statement(p.name);
            self.pending.push_back(Pend::Local(error));
            self.discard_until_sync = true;
            return Ok(true);
        }
        let def = self.worker.statements.intern(p.query, p.param_types);
        if !def.validated.load(std::sync::atomic::Ordering::Relaxed)
            && !std::mem::take(&mut self.defer_parse)
        {
            return Ok(false);
        }
        let effect_sql = p.query.to_vec();
        let name: ClientName = p.name.into();
        let plain_set = def.plain_set;
        self.stmts.insert(name.clone(), def);
        self.untold.insert(name.clone());
        // (A plain SET runs with its Execute: see `bind_named_set`.)
        let e = if plain_set {
            Effect::default()
        } else {
            self.note_session_effect(&effect_sql)
        };
        self.reapply_later(&effect_sql, &e);
        self.pending
            .push_back(Pend::Synthetic(b'1', Some(Undo::Parsed(name))));
        Ok(true)
    }

    /// A Parse of a named statement (the unnamed one always goes to a server with its Bind).
    pub(super) fn names_a_statement(&self, h: &Header) -> bool {
        codec::parse_msg(&self.cin[5..h.wire_len]).is_ok_and(|p| !p.name.is_empty())
    }

    /// Transaction mode: `h` names a client statement (Parse, Bind, Describe or Close of
    /// one), and a Parse or Close of a client statement waits for its answer in an earlier
    /// part of the pipeline (before a Sync or Query still unanswered).
    pub(super) fn waits_for_names(&self, h: &Header) -> bool {
        if self.mode != PoolMode::Transaction || !matches!(h.tag, b'P' | b'B' | b'D' | b'C') {
            return false;
        }
        if !self.names_unsure(false) {
            return false;
        }
        let body = &self.cin[5..h.wire_len];
        match h.tag {
            b'P' => codec::parse_msg(body).is_ok_and(|p| !p.name.is_empty()),
            b'B' => codec::bind_msg(body).is_ok_and(|b| !b.statement.is_empty()),
            _ => matches!(codec::target_msg(body), Ok((b'S', name)) if !name.is_empty()),
        }
    }

    /// A Parse or Close of a client statement, or a Parse the proxy put in front of a Bind or
    /// Describe, awaits its answer: before an unanswered Sync or Query, or anywhere
    /// (`anywhere`, for a message that itself ends a batch). An error before such a Parse
    /// skips it, and the connection does not have the statement after all: a later batch's
    /// Bind must not be sent on the belief that it does.
    pub(super) fn names_unsure(&self, anywhere: bool) -> bool {
        let mut changed = false;
        self.pending.iter().any(|p| {
            match p {
                Pend::Synthetic(_, Some(_))
                | Pend::Reparse(_)
                | Pend::Parse { def: Some(_), .. }
                | Pend::Parse {
                    client_name: Some(_),
                    ..
                } => changed = true,
                Pend::Ready { .. } if changed => return true,
                _ => {}
            }
            false
        }) || (anywhere && changed)
    }

    /// Something sent to the server awaits its answer (so a message held back until then
    /// is looked at again when it comes; what only the proxy answers is no reason to wait).
    pub(super) fn awaits_server(&self) -> bool {
        self.backend.is_some()
            && self
                .pending
                .iter()
                .any(|p| !matches!(p, Pend::Synthetic(..) | Pend::Local(_)))
    }

    /// The transaction status may change with answers still to come (a Sync or Query is
    /// unanswered).
    pub(super) fn status_unsure(&self) -> bool {
        self.pending.iter().any(|p| matches!(p, Pend::Ready { .. }))
    }

    pub(super) fn closes_client_statement(&self, h: &Header) -> bool {
        self.mode == PoolMode::Transaction
            && matches!(codec::target_msg(&self.cin[5..h.wire_len]),
                Ok((b'S', name)) if !name.is_empty() && self.stmts.contains_key(name))
    }

    /// Translate one client message into bytes for the backend and expected answers.
    pub(super) fn forward_client_message(&mut self, h: Header) -> Result<(), SessionError> {
        // Detach the input buffer so the message can be borrowed while state changes.
        let cin = std::mem::take(&mut self.cin);
        let result = self.forward_one(h, &cin[..h.wire_len]);
        self.cin = cin;
        result
    }

    fn forward_one(&mut self, h: Header, msg: &[u8]) -> Result<(), SessionError> {
        let body = &msg[5..];
        if self.set_batch.is_some() {
            self.follow_set_batch(h.tag, body);
        }
        if self.begin_batch != 0 {
            self.follow_begin_batch(h.tag, body);
        }
        let bad = |e: codec::ProtocolError| SessionError::ClientProtocol(e.to_string());
        let tx = self.mode == PoolMode::Transaction;
        match h.tag {
            b'Q' => {
                let sql = codec::query_msg(body).map_err(bad)?;
                let (sets, in_tx) = match self.carried_sets(sql).filter(|_| tx) {
                    Some((sets, in_tx)) => (Some(sets), in_tx),
                    None => (None, false),
                };
                self.plain_set_now = sets.is_some();
                let e = if tx {
                    self.note_session_effect(sql)
                } else {
                    Effect::default()
                };
                self.plain_set_now = false;
                if in_tx && sets.is_some() {
                    self.tx_sets.get_or_insert_with(Default::default);
                }
                // A RESET in the block may undo its SETs: the proxy does not follow that.
                if e.resets_settings {
                    if let Some(t) = self.tx_sets.as_mut() {
                        t.unsure = true;
                    }
                }
                // (One statement alone: in a string of several, DISCARD ALL fails, being in
                // a transaction block; the statements then go when its CommandComplete says.)
                if one_statement(sql) && self.surely_drops(&e) {
                    self.drop_prepared_now();
                }
                self.bout.extend_from_slice(msg);
                self.unnamed_here = false;
                // Whatever extended messages came before without a Sync, the server answers
                // this with ReadyForQuery and is idle after it: the batch ends here.
                self.batch_open = false;
                let forgets = if e.resets_settings {
                    let names = self.carried_reset_by(sql, &e);
                    self.reset_to_settle(names, super::carried::may_roll_back(sql))
                } else {
                    None
                };
                let stat = self.query_stat(sql);
                self.pending.push_back(Pend::Ready {
                    copy_mark: self.copy_ends,
                    clears: e.clears,
                    resets: e.resets_settings,
                    sets: sets.map(Vec::into_boxed_slice),
                    forgets,
                    in_tx,
                    stat,
                });
                if e.resets_settings {
                    let again = self.settings_reset_by(sql, &e);
                    self.reapply_settings(&again);
                }
            }
            b'P' => {
                let p = codec::parse_msg(body).map_err(bad)?;
                // A plain SET as the unnamed statement opening a batch (pgjdbc's way): carried
                // if the batch is just its Bind, Execute and Sync (see `set_batch`).
                // (One statement: the server refuses several in a Parse.)
                // In a transaction block (pgjdbc with autocommit off sends its BEGIN in
                // front of it), it waits for the block's end (see `tx_sets`).
                let sets = if tx && p.name.is_empty() {
                    self.extended_set(p.query)
                } else {
                    None
                };
                if p.name.is_empty() {
                    self.unnamed_digest = self.digest_noted(p.query, None);
                }
                if tx && p.name.is_empty() && self.opens_begin_batch(p.query) {
                    self.begin_batch = 1;
                }
                self.batch_open = true;
                // (Only a client with carried settings can have a reset of them to settle.)
                if tx && !self.recorded.is_empty() && super::carried::may_roll_back(p.query) {
                    self.rollback_in_batch = true;
                }
                if tx {
                    let e = if !p.name.is_empty() && super::carried::one_plain_set(p.query) {
                        // A named statement's SET runs with its Execute: carried or pinned
                        // at its Bind (see `bind_named_set`).
                        Effect::default()
                    } else {
                        self.plain_set_now = sets.is_some();
                        let e = self.note_session_effect(p.query);
                        self.plain_set_now = false;
                        e
                    };
                    self.set_batch = sets.map(|(kv, in_tx)| super::SetBatch {
                        kv,
                        bound: false,
                        executed: false,
                        in_tx,
                    });
                    self.reapply_later(p.query, &e);
                    // Run by the Execute that follows; DISCARD ALL only as the first of its
                    // batch (after another, the server refuses it "within a pipeline").
                    let first = !self
                        .pending
                        .iter()
                        .any(|p| matches!(p, Pend::Execute { .. }));
                    if p.name.is_empty() && self.surely_drops(&e) && (first || !e.resets_all) {
                        self.drop_prepared_now();
                    }
                }
                if !tx || p.name.is_empty() {
                    self.bout.extend_from_slice(msg);
                    self.pending.push_back(Pend::Parse {
                        def: None,
                        client_name: None,
                        injected: false,
                        unnamed: tx,
                    });
                    if tx {
                        self.unnamed_parse.clear();
                        self.unnamed_parse.extend_from_slice(msg);
                        self.unnamed_here = true;
                    }
                } else if let Some(existing) = self.stmts.get(p.name).cloned() {
                    if let Some(answer) = self.failed_tx_reparse_answer(p.name, p.query, &existing)
                    {
                        self.pending.push_back(Pend::Local(answer));
                        self.server_skips = true;
                        return Ok(());
                    }
                    // The server refuses it (and skips the rest of the batch, undoing what the
                    // batch did so far): let it, under the name it knows. (Not replayed: on
                    // another connection the refusal would depend on what that one has.)
                    self.replay_ok = false;
                    self.ensure_prepared(&existing);
                    codec::put_parse(
                        &mut self.bout,
                        existing.backend_name().as_bytes(),
                        p.query,
                        p.param_types,
                    );
                    self.pending.push_back(Pend::Reparse(p.name.into()));
                } else {
                    let def = self.worker.statements.intern(p.query, p.param_types);
                    let name: ClientName = p.name.into();
                    self.stmts.insert(name.clone(), def.clone());
                    self.untold.remove(&name);
                    if self.surely_failed()
                        && !super::routing::starts_with_any(p.query, TRANSACTION_EXITS)
                    {
                        // The transaction failed and nothing can end it before this: the server
                        // refuses the Parse and skips to the Sync (which still goes to it).
                        self.replay_ok = false;
                        self.stmts.remove(&name);
                        self.pending.push_back(Pend::Local(aborted_error()));
                        self.server_skips = true;
                    } else if !self.prepare_on_backend(&def, Some(name.clone())) {
                        self.pending
                            .push_back(Pend::Synthetic(b'1', Some(Undo::Parsed(name))));
                    }
                }
            }
            b'B' => {
                let batch_was_open = std::mem::replace(&mut self.batch_open, true);
                let b = codec::bind_msg(body).map_err(bad)?;
                let named = match self.client_statement(b.statement) {
                    Some((name, def)) => {
                        self.untold.remove(&name);
                        if self.answered_in_failed_tx(&name, &def, Some(b.rest)) {
                            return Ok(());
                        }
                        if tx && def.plain_set {
                            self.bind_named_set(&def.query, b.portal, batch_was_open);
                        }
                        if def.unknown_calls {
                            self.mark_state_unknown();
                        }
                        // (0 while the statistics are off: an Execute after they are
                        // turned on again must not count under a statement bound before.)
                        self.bound_digest = if self.stats_on() {
                            self.digest_noted(&def.query, Some(def.digest()))
                        } else {
                            0
                        };
                        if self.refuse_stale(&def) {
                            codec::put_bind(&mut self.bout, &b, STALE_NAME.as_bytes());
                        } else {
                            self.ensure_prepared(&def);
                            codec::put_bind(&mut self.bout, &b, def.backend_name().as_bytes());
                        }
                        Some((name, def))
                    }
                    None => {
                        if b.statement.is_empty() {
                            self.ensure_unnamed();
                            self.bound_digest = self.unnamed_digest;
                        } else {
                            // Not the proxy's (session mode): not counted.
                            self.bound_digest = 0;
                        }
                        self.bout.extend_from_slice(msg);
                        None
                    }
                };
                self.pending.push_back(Pend::Bind(named));
            }
            b'D' | b'C' => {
                self.batch_open = true;
                let (kind, name) = codec::target_msg(body).map_err(bad)?;
                let def = if kind == b'S' {
                    self.client_statement(name)
                } else {
                    None
                };
                if tx && kind == b'S' && name.is_empty() && h.tag == b'C' {
                    self.unnamed_parse.clear();
                }
                if let Some((name, _)) = &def {
                    self.untold.remove(name);
                }
                let named = match def {
                    Some((name, def)) if h.tag == b'C' => {
                        self.stmts.remove(&name);
                        self.pending
                            .push_back(Pend::Synthetic(b'3', Some(Undo::Closed(name, def))));
                        return Ok(());
                    }
                    Some((name, def)) => {
                        if self.answered_in_failed_tx(&name, &def, None) {
                            return Ok(());
                        }
                        if self.refuse_stale(&def) {
                            codec::put_target(&mut self.bout, b'D', b'S', STALE_NAME.as_bytes());
                        } else {
                            self.ensure_prepared(&def);
                            codec::put_target(
                                &mut self.bout,
                                b'D',
                                b'S',
                                def.backend_name().as_bytes(),
                            );
                        }
                        Some((name, def))
                    }
                    None => {
                        if h.tag == b'D' && kind == b'S' && name.is_empty() {
                            self.ensure_unnamed();
                        }
                        self.bout.extend_from_slice(msg);
                        None
                    }
                };
                self.pending.push_back(if h.tag == b'D' {
                    Pend::Describe(named)
                } else {
                    Pend::Close { injected: false }
                });
            }
            b'E' => {
                self.batch_open = true;
                let stat = match self.bound_digest {
                    d if d != 0 && self.stats_on() => Some((d, std::time::Instant::now())),
                    _ => None,
                };
                self.bout.extend_from_slice(msg);
                self.pending.push_back(Pend::Execute {
                    copy_mark: self.copy_ends,
                    stat,
                });
            }
            b'S' => {
                self.bout.extend_from_slice(msg);
                if self.copy_in_mark == Some(self.copy_ends) {
                    // Sent during COPY FROM STDIN: the server ignores it.
                    return Ok(());
                }
                self.batch_open = false;
                let resets = std::mem::take(&mut self.reapply_at_sync);
                let forgets = std::mem::take(&mut self.forget_at_sync);
                let rolls_back = std::mem::take(&mut self.rollback_in_batch);
                let forgets = self.reset_to_settle(forgets, rolls_back);
                let (sets, in_tx) = match self.set_batch.take() {
                    Some(super::SetBatch {
                        kv,
                        executed: true,
                        in_tx,
                        ..
                    }) => (Some(Box::new([kv]) as Box<[_]>), in_tx),
                    Some(_) => {
                        self.sets_unknown = true;
                        (None, false)
                    }
                    None => (None, false),
                };
                if in_tx {
                    self.tx_sets.get_or_insert_with(Default::default);
                }
                // (Its statements count at their Executes.)
                self.pending.push_back(Pend::Ready {
                    copy_mark: self.copy_ends,
                    clears: State::NONE,
                    resets: resets.is_some(),
                    sets,
                    forgets,
                    in_tx,
                    stat: None,
                });
                if let Some(again) = resets {
                    self.reapply_settings(&again);
                }
            }
            b'F' => {
                self.bout.extend_from_slice(msg);
                self.pending.push_back(Pend::Ready {
                    copy_mark: self.copy_ends,
                    clears: State::NONE,
                    resets: false,
                    sets: None,
                    forgets: None,
                    in_tx: false,
                    stat: None,
                });
            }
            b'c' | b'f' => {
                self.copy_ends = self.copy_ends.wrapping_add(1);
                self.bout.extend_from_slice(msg);
            }
            b'H' | b'd' => self.bout.extend_from_slice(msg),
            other => {
                return Err(SessionError::ClientProtocol(format!(
                    "unexpected message type {:?}",
                    other as char
                )))
            }
        }
        Ok(())
    }

    /// The transaction has failed and stays so up to what comes next: nothing unanswered can
    /// end it (an Execute or a Sync or Query could; a Parse, Bind, Describe or Close cannot).
    pub(super) fn surely_failed(&self) -> bool {
        self.tx_status == b'E'
            && !self
                .pending
                .iter()
                .any(|p| matches!(p, Pend::Execute { .. } | Pend::Ready { .. }))
    }

    /// Transaction mode: `h` is a Bind or Describe of a client statement the held connection
    /// lacks, whose answer in a failed transaction the proxy would give itself
    /// (`failed_tx_answer`), or a Parse of a new name for a statement the connection has
    /// (answered by the proxy, refused by a server in a failed transaction), while a Sync or
    /// Query is unanswered: whether the transaction has failed is known only when its answer
    /// comes, so wait for it.
    pub(super) fn waits_for_status(&self, h: &Header) -> bool {
        if self.mode != PoolMode::Transaction
            || !matches!(h.tag, b'B' | b'D' | b'P')
            || !self.status_unsure()
        {
            return false;
        }
        let body = &self.cin[5..h.wire_len];
        if h.tag == b'P' {
            // A new name for a statement the connection has is answered here; in a failed
            // transaction the server refuses it.
            let (Ok(p), Some(conn)) = (codec::parse_msg(body), self.backend.as_ref()) else {
                return false;
            };
            if p.name.is_empty() {
                return false;
            }
            // A name the client has, for a statement the connection lacks: the Parse put in
            // front of it to give the server the name is refused in a failed transaction.
            if let Some(def) = self.stmts.get(p.name) {
                return !conn.prepared.contains(&def.id);
            }
            return self
                .worker
                .statements
                .find(p.query, p.param_types)
                .is_some_and(|def| conn.prepared.contains(&def.id));
        }
        let name = match h.tag {
            b'B' => codec::bind_msg(body).ok().map(|b| b.statement),
            _ => match codec::target_msg(body) {
                Ok((b'S', name)) => Some(name),
                _ => None,
            },
        };
        let (Some(def), Some(conn)) = (
            name.filter(|n| !n.is_empty())
                .and_then(|n| self.stmts.get(n)),
            self.backend.as_ref(),
        ) else {
            return false;
        };
        def.shape.get().is_some() && !conn.prepared.contains(&def.id)
    }

    /// The held connection ran something whose effect on session state is unknown.
    pub(super) fn mark_state_unknown(&mut self) {
        if let Some(conn) = self.backend.as_mut() {
            conn.state_unknown = true;
        }
    }

    /// Pin the client on the state `sql` may leave behind. Returns the effect for the
    /// caller's bookkeeping.
    pub(super) fn note_session_effect(&mut self, sql: &[u8]) -> Effect {
        if session_state::surely_no_effect(sql) {
            return Effect::default();
        }
        let Ok(text) = std::str::from_utf8(sql) else {
            self.pins |= State::OTHER;
            return Effect::default();
        };
        let e = session_state::effect_scanned(text);
        if e.unknown {
            self.mark_state_unknown();
        }
        // In a failed transaction (surely: nothing awaits an answer) the statement fails and
        // leaves nothing, unless it starts with one that ends the transaction (`ROLLBACK;
        // LISTEN ch` listens); a leading comment may hide one.
        let fails = self.tx_status == b'E'
            && self.pending.is_empty()
            && sql
                .trim_ascii_start()
                .first()
                .is_some_and(u8::is_ascii_alphabetic)
            && !super::routing::starts_with_any(sql, TRANSACTION_EXITS);
        if e.adds.contains(State::SETTINGS)
            && !fails
            && !(self.plain_set_now && e.adds == State::SETTINGS)
        {
            self.sets_unknown = true;
        }
        if !e.adds.is_empty() && !fails {
            if self.pins.is_empty() {
                tracing::debug!(state = ?e.adds.names(), "client pinned to its connection");
            }
            self.pins |= e.adds;
            // A Query still unanswered that clears such state runs before this: it must not
            // unpin the client when its answer comes.
            for p in self.pending.iter_mut() {
                if let Pend::Ready { clears, .. } = p {
                    *clears = clears.minus(e.adds);
                }
            }
        }
        e
    }

    /// `e` drops every prepared statement (DEALLOCATE ALL, DISCARD ALL) and surely runs if
    /// sent now: the transaction status is current (no earlier answer awaited) and allows it
    /// (DISCARD ALL only outside a transaction block, neither in a failed one).
    fn surely_drops(&self, e: &Effect) -> bool {
        e.drops_prepared
            && self.mode == PoolMode::Transaction
            && !self.pending.iter().any(|p| matches!(p, Pend::Ready { .. }))
            && match self.tx_status {
                b'I' => true,
                b'T' => !e.resets_all,
                _ => false,
            }
    }

    /// A DEALLOCATE ALL or DISCARD ALL that will run (alone, outside a failed transaction):
    /// what follows in the pipeline runs after it, so the client's statements and the
    /// connection's proxy statements are gone now (a Bind of a dropped name fails as on a
    /// server of the client's own; the proxy prepares its statements again). Otherwise they
    /// go when its CommandComplete comes (`forget_prepared`).
    fn drop_prepared_now(&mut self) {
        self.stmts.clear();
        if let Some(conn) = self.backend.as_mut() {
            conn.prepared.clear();
        }
        self.dropped_ahead += 1;
    }
}

/// `sql` has no `;` but a trailing one (a single statement, unless a literal holds one).
pub(super) fn one_statement(sql: &[u8]) -> bool {
    let t = sql.trim_ascii_end();
    let t = t.strip_suffix(b";").unwrap_or(t);
    !t.contains(&b';')
}

/// An ErrorResponse as a server words it (no proxy prefix), for the client.
pub(super) fn server_error(code: &str, message: &str) -> Box<[u8]> {
    let mut out = bytes::BytesMut::new();
    codec::put_error(&mut out, "ERROR", code, message);
    out.to_vec().into()
}

/// The server's refusal of a Parse naming a statement the session has already.
fn duplicate_statement(name: &[u8]) -> Box<[u8]> {
    let name = String::from_utf8_lossy(name);
    server_error(
        "42P05",
        &format!("prepared statement \"{name}\" already exists"),
    )
}

/// The statements a server runs in a failed transaction (by their first word).
pub(super) const TRANSACTION_EXITS: &[&str] =
    &["commit", "rollback", "end", "abort", "prepare transaction"];

/// What a server answers a statement in a failed transaction.
pub(super) fn aborted_error() -> Box<[u8]> {
    server_error(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}
