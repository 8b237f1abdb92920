//! COM_QUERY: the statement's text classified and routed (hints, transactions, locking
//! reads, writes to the primary), the pins it causes noted, the client's own
//! `LAST_INSERT_ID()` carried over, and the command forwarded; other commands that only
//! forward (`forward_command`).

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn com_query(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let sql = match codec::parse_query(payload, self.caps) {
            Ok(q) => q.sql.to_vec(),
            Err(e) => {
                let err = err_payload(1064, b"42000", &format!("malformed COM_QUERY: {e}"));
                return self.send(1, &err).await;
            }
        };
        let text = String::from_utf8_lossy(&sql).into_owned();
        if let Some(route) = hints::route_setting(&text) {
            self.route_override = route;
            return self.send(1, &ok_payload(self.caps, self.status)).await;
        }
        if let Some((query_only, id)) = parse_kill(&text) {
            return self.kill(query_only, id).await;
        }
        let class = self.w.shared.classifier_mysql.load().classify(&text);
        self.note_pins(&text, class);
        self.names_collations = names_collations(&text);
        if let Some(q) = own::own_query(&text) {
            // CONNECTION_ID() is the client's whatever it holds; the others are the held
            // connection's to answer while there is one.
            if self.backend.is_none() || self.own.answers_while_held(&q) {
                return self.answer_own(&q, false).await;
            }
        }
        // CONNECTION_ID() elsewhere in a statement: the client's id, not the thread's (which
        // KILL would take for another client's); `@@socket`: the proxy's, not the server's
        // (see `own::with_own_socket`). Not with query attributes in the payload.
        let rewritten = own::with_connection_id_bytes(&sql, self.slot.id)
            .or_else(|| own::with_own_socket(&text, self.w.my.socket.as_deref()))
            .filter(|_| payload.len() == 1 + sql.len())
            .map(|new| {
                let mut p = Vec::with_capacity(1 + new.len());
                p.push(payload[0]);
                p.extend_from_slice(&new);
                p
            });
        let payload = rewritten.as_deref().unwrap_or(payload);
        self.own.calc_found_rows = own::calcs_found_rows(&text);
        // What a connection was taken for, when it was taken for this statement alone.
        let mut fresh = None;
        if self.backend.is_none() {
            let want = match self.want_for_class(class, hints::leading_hint(&text).is_some()) {
                Ok(w) => w,
                Err(e) => {
                    let err = err_payload(1290, b"HY000", &format!("switchyard: {e}"));
                    return self.send(1, &err).await;
                }
            };
            if !self.acquire_or_tell(want).await? {
                return Ok(());
            }
            fresh = Some(want);
        } else if self.refuse_write_on_replica(class).await? {
            return Ok(());
        }
        let passed = self.bytes_down;
        if let Err(e) = self.run_query(payload, &sql, &text).await {
            // A read whose replica failed before answering goes to another one, once.
            if !self.retry_read(e, fresh, passed).await? {
                return Ok(());
            }
            self.run_query(payload, &sql, &text).await?;
        }
        self.after_statement(&sql);
        Ok(())
    }

    /// Run the client's COM_QUERY `payload` (of text `sql`) on the held connection.
    async fn run_query(
        &mut self,
        payload: &[u8],
        sql: &[u8],
        text: &str,
    ) -> Result<(), SessionError> {
        // The text is read only when the connection's value is not the client's already.
        let synced =
            self.backend.as_ref().and_then(|c| c.last_insert_id) == Some(self.own.last_insert_id);
        if !synced && own::mentions_last_insert_id(text) {
            self.sync_last_insert_id().await?;
        }
        // The servers' connections take several statements per query unless the client of
        // the moment did not ask to: a server then refuses a multi-statement text itself.
        // Only a text with a `;` can be several statements (a COM_SET_OPTION is a command
        // of the proxy's own on the connection, best avoided).
        let multi = self.multi_statements;
        let conn = self.backend.as_mut().expect("a connection is held");
        if sql.contains(&b';') && conn.multi_statements != Some(multi) {
            if let Err(e) = conn.ensure_multi_statements(multi, INTERNAL_TIMEOUT).await {
                conn.clean = false;
                return Err(SessionError::Backend(e.to_string()));
            }
        }
        let t0 = self.stats_start();
        if t0.is_some() && sql.contains(&b';') {
            self.result_ends = Some(Vec::new());
        }
        let r = self.forward(payload, Answer::Query).await;
        let failed = r.is_err() || self.answered.1.is_some();
        match self.result_ends.take() {
            Some(ends) if r.is_ok() => self.count_parts(t0, sql, &ends),
            _ => self.count_statement(t0, 0, sql, failed),
        }
        r
    }

    /// After the client's statement `sql` ran on the held connection: whether it opened a
    /// transaction the server does not flag (see `implicit_tx`), and whether only the server
    /// knows `FOUND_ROWS()` now (SELECT ... INTO counts its rows without a result set; the
    /// client is pinned for the variable it set).
    pub(super) fn after_statement(&mut self, sql: &[u8]) {
        self.note_implicit_tx(sql);
        let (ran, failed) = self.answered;
        if self.own.stale & own::STALE_FOUND_ROWS != 0 && own::selects_into(sql, ran, failed) {
            self.own.stale &= !own::STALE_FOUND_ROWS;
        }
    }

    /// After a statement of `sql` ran (see `implicit_tx`).
    pub(super) fn note_implicit_tx(&mut self, sql: &[u8]) {
        let words = |w: &[u8]| own::contains_ignore_case(sql, w);
        let autocommit = self.status & SERVER_STATUS_AUTOCOMMIT != 0;
        let in_tx = self.status & SERVER_STATUS_IN_TRANS != 0;
        if autocommit || in_tx {
            self.implicit_tx = false;
        } else if words(b"SAVEPOINT") {
            self.implicit_tx = true;
        } else if words(b"COMMIT") || words(b"ROLLBACK") {
            self.implicit_tx = false;
        }
    }

    /// A write while the client is pinned to a replica's connection (session state made
    /// there in a read-only transaction: a user variable, a temporary table, a lock, a
    /// cursor): it must not run there, and the state cannot move, so the client is told so
    /// (1290, as the replica itself would refuse it, with the reason) and the write is never
    /// sent. Inside the read-only transaction the replica answers as the primary would.
    pub(super) async fn refuse_write_on_replica(
        &mut self,
        class: Class,
    ) -> Result<bool, SessionError> {
        let writes = matches!(
            class.reason,
            Reason::Write
                | Reason::Ddl
                | Reason::Locking
                | Reason::WriteFunction
                | Reason::SelectInto
                | Reason::WritingCte
        );
        if !writes
            || self.backend.is_none()
            || self.for_write
            || self.status & SERVER_STATUS_IN_TRANS != 0
        {
            return Ok(false);
        }
        let err = err_payload(
            1290,
            b"HY000",
            "switchyard: this session keeps state (a user variable, temporary table, lock or \
             cursor) on a replica, where it was made in a read-only transaction; writes cannot \
             run there: COM_RESET_CONNECTION, or a new connection, ends it",
        );
        self.send(1, &err).await?;
        Ok(true)
    }

    /// Before a statement that reads `LAST_INSERT_ID()` on the held connection: the
    /// connection's value may be another client's (the one that used it before, or none):
    /// set the client's own first, unless it is there already.
    pub(super) async fn sync_last_insert_id(&mut self) -> Result<(), SessionError> {
        let want = self.own.last_insert_id;
        let conn = self.backend.as_ref().expect("a connection is held");
        if conn.last_insert_id == Some(want) {
            return Ok(());
        }
        // Boxed, as are the session's other rare waits (see [`Session::acquire`]).
        let set = Box::pin(self.set_last_insert_id(want));
        set.await
    }

    async fn set_last_insert_id(&mut self, want: u64) -> Result<(), SessionError> {
        self.capture_own_results().await;
        let conn = self.backend.as_mut().expect("a connection is held");
        // DO: no result, so FOUND_ROWS() and the warnings stay (ROW_COUNT() becomes 0).
        let sql = format!("DO LAST_INSERT_ID({want})");
        if let Err(e) = conn.query(&sql, INTERNAL_TIMEOUT).await {
            return Err(SessionError::Backend(e.to_string()));
        }
        conn.last_insert_id = Some(want);
        self.own.stale |= own::STALE_ROW_COUNT;
        Ok(())
    }

    /// COM_INIT_DB, COM_FIELD_LIST, COM_STATISTICS: run on the held connection, or on one
    /// taken for this command (a replica will do: none of them writes).
    pub(super) async fn forward_command(
        &mut self,
        cmd: u8,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        if self.backend.is_none() {
            // A connection taken here may be kept (session mode, pinned): only one that is
            // given back after the command may be a replica's.
            let want = if self.pinned.is_none() && self.w.pool_mode == PoolMode::Transaction {
                Want::Replica { min_lsn: None }
            } else {
                Want::Primary
            };
            self.route_reason = "command";
            if !self.acquire_or_tell(want).await? {
                return Ok(());
            }
        }
        let answer = match Command::from_byte(cmd) {
            Command::FieldList => Answer::FieldList,
            Command::Statistics => Answer::Single,
            _ => Answer::Command,
        };
        // A new schema (COM_INIT_DB) comes back in the OK's session tracking.
        self.forward(payload, answer).await
    }

    /// Where a statement classified as `class` may run when the client holds no
    /// connection; `hinted` when it carries a leading hint of its own (which the session's
    /// route setting does not override).
    pub(super) fn want_for_class(
        &mut self,
        mut class: Class,
        hinted: bool,
    ) -> Result<Want, SelectError> {
        let state = self.cluster.state.clone();
        if let Some(h) = self.route_override {
            if !hinted {
                class = class.with_hint(h);
            }
        }
        let autocommit = self.status & SERVER_STATUS_AUTOCOMMIT != 0;
        let fixed = if self.w.pool_mode != PoolMode::Transaction {
            Some("session_mode")
        } else if self.pinned.is_some() {
            Some("pinned")
        } else if !autocommit {
            Some("autocommit_off")
        } else if !state.split {
            Some("split_off")
        } else {
            None
        };
        self.route_reason = fixed.unwrap_or(class.reason.as_str());
        let read = fixed.is_none()
            && match class.tx {
                TxEffect::Begin { read_only } => read_only,
                TxEffect::None => class.route == Route::Replica,
                _ => false,
            };
        if read {
            // Read-your-writes: a replica only once the position after the client's last
            // write is known, and only one that replayed past it.
            if let Some(min_lsn) = self.ryw.min_position(&state) {
                let want = Want::Replica { min_lsn };
                state.select(want, None)?;
                return Ok(want);
            }
            self.route_reason = "read_your_writes";
        }
        state.primary()?;
        Ok(Want::Primary)
    }

    /// Statements whose session state cannot be applied again elsewhere pin the client (what
    /// the server's session tracking reports is handled with the answer).
    pub(super) fn note_pins(&mut self, sql: &str, class: Class) {
        if self.w.pool_mode != PoolMode::Transaction || self.pinned.is_some() {
            return;
        }
        self.origin = Origin::of(class.reason);
        if let Some(why) = pin_reason(sql, class.reason) {
            tracing::debug!(reason = why, "mysql client pinned to its connection");
            self.pinned = Some(why);
        }
    }
}
