//! Holding a backend connection: checking one out for a statement (the session's state
//! applied on it), giving it back when the session allows, and what happens to it when the
//! client leaves.

use super::*;
use crate::metrics::kind;

/// Why no connection could be given to the client.
pub(super) enum AcquireError {
    /// The server refused the client's state (e.g. its schema does not exist).
    Server {
        code: u16,
        sqlstate: String,
        message: String,
    },
    Other(String),
    /// The connection taken failed while the client's state was applied on it (its server
    /// going away): another may be tried.
    Broken(String),
}

impl AcquireError {
    /// The ERR for the client: the server's own, or 1040 naming the cause.
    pub(super) fn err_payload(&self) -> Vec<u8> {
        match self {
            AcquireError::Server {
                code,
                sqlstate,
                message,
            } => {
                let mut state = *b"HY000";
                if sqlstate.len() == 5 {
                    state.copy_from_slice(sqlstate.as_bytes());
                }
                err_payload(*code, &state, message)
            }
            AcquireError::Other(e) | AcquireError::Broken(e) => {
                err_payload(1040, b"08004", &format!("switchyard: {e}"))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// [`Self::acquire`], or tell the client why not (false): the server's own error when
    /// applying the client's state failed (an unknown schema: 1049, as directly), else 1040.
    pub(super) async fn acquire_or_tell(&mut self, want: Want) -> Result<bool, SessionError> {
        match self.acquire(want).await {
            Ok(()) => Ok(true),
            Err(e) => {
                self.send(1, &e.err_payload()).await?;
                Ok(false)
            }
        }
    }

    /// Check out a connection and bring it to the client's session state.
    ///
    /// The common case (not paused, an idle or parked connection that has the client's
    /// state) takes no future at all; anything else runs in a box. Inline, the checkout's
    /// future (about 1 KiB) would be part of every client's task for its whole life, idle or
    /// not (see `benches/README.md`, memory per client); boxed every time, it cost an
    /// allocation per transaction (mimalloc's slow path, for a block freed and taken again
    /// one at a time).
    pub(super) async fn acquire(&mut self, want: Want) -> Result<(), AcquireError> {
        let Some((conn, idx, hold)) = self.take_at_once(want) else {
            let check_out = Box::pin(self.check_out(want));
            return check_out.await;
        };
        if self.install_waits(&conn) {
            // As a connection checked out the async way: a read whose connection breaks
            // while the client's state is applied is taken elsewhere.
            let install = Box::pin(self.acquire_held(want, None, hold, Some((conn, idx))));
            return install.await;
        }
        self.for_write = matches!(want, Want::Primary);
        self.install_ready(conn, idx, hold);
        Ok(())
    }

    /// [`Self::check_out`]'s common case, with no wait: an idle (or this client's parked)
    /// connection of the backend `want` selects, the cluster not paused. `None` for anything
    /// else, which `check_out` meets again from the start.
    fn take_at_once(
        &mut self,
        want: Want,
    ) -> Option<(MyPooled, usize, crate::cluster::pause::Hold)> {
        self.refresh_cluster().ok()?;
        let (c, parking) = (&self.cluster, &self.parking);
        c.state.take_at_once(want, |i| {
            c.pools[i].checkout_parked_first_now(parking, &c.metrics)
        })
    }

    async fn check_out(&mut self, want: Want) -> Result<(), AcquireError> {
        self.refresh_cluster().map_err(AcquireError::Other)?;
        let hold = match self.cluster.state.pause.try_hold() {
            Some(hold) => hold,
            None => {
                // (The state is taken only here: no Arc clone on the path of an unpaused
                // cluster.)
                let state = self.cluster.state.clone();
                let limit = self.w.shared.config().pool.pause_timeout;
                let admitted = state.pause.admit_hold(&state.name, limit).await;
                let hold = admitted.map_err(AcquireError::Other)?;
                // A reload may have come while it waited (the pause is the same).
                self.refresh_cluster().map_err(AcquireError::Other)?;
                hold
            }
        };
        self.acquire_held(want, None, hold, None).await
    }

    /// [`Self::acquire`] once admitted past a pause (`hold`), not on backend `exclude`;
    /// starting with connection `first` (checked out of backend `idx`) if given.
    async fn acquire_held(
        &mut self,
        want: Want,
        mut exclude: Option<usize>,
        hold: crate::cluster::pause::Hold,
        mut first: Option<(MyPooled, usize)>,
    ) -> Result<(), AcquireError> {
        let mut hold = Some(hold);
        self.for_write = matches!(want, Want::Primary);
        let mut reloaded = 0;
        loop {
            let state = self.cluster.state.clone();
            let (idx, got) = match first.take() {
                Some((conn, idx)) => (idx, Ok(conn)),
                None => {
                    let idx = state
                        .select(want, exclude)
                        .map_err(|e| AcquireError::Other(e.to_string()))?;
                    let pool = &self.cluster.pools[idx];
                    (
                        idx,
                        pool.checkout_parked_first(&self.parking, &self.cluster.metrics)
                            .await,
                    )
                }
            };
            match got {
                Ok(conn) => {
                    let held = hold.take().expect("one install per acquire");
                    match self.install(conn, idx, held).await {
                        // A read whose connection died under the client's state (its server
                        // going away) is taken elsewhere, once.
                        Err(AcquireError::Broken(e))
                            if matches!(want, Want::Replica { .. }) && exclude.is_none() =>
                        {
                            state.backends[idx].mark_failed(&e);
                            exclude = Some(idx);
                            hold = Some(self.cluster.state.pause.hold());
                        }
                        r => return r,
                    }
                }
                Err(crate::pool::CheckoutError::Connect(e)) => {
                    if e.login_denied() {
                        // The server's own code (1045 ...), as a client of it directly gets;
                        // 1045 when the proxy had nothing to answer the server with.
                        let code = match &e {
                            crate::mysql::backend::MyConnectError::Refused { code, .. } => *code,
                            _ => 1045,
                        };
                        return Err(AcquireError::Server {
                            code,
                            sqlstate: if code == 1044 { "42000" } else { "28000" }.into(),
                            message: format!("switchyard: {e}"),
                        });
                    }
                    state.backends[idx].mark_failed(&e.to_string());
                    if matches!(want, Want::Primary) || exclude.is_some() {
                        return Err(AcquireError::Other(e.to_string()));
                    }
                    exclude = Some(idx);
                }
                // A reload closed this pool (raced with it, or waited in it): move to the
                // new pools and try again there.
                Err(crate::pool::CheckoutError::Closed(_)) if reloaded < 3 => {
                    reloaded += 1;
                    let skipped = exclude.map(|i| state.backends[i].addr);
                    self.refresh_cluster().map_err(AcquireError::Other)?;
                    exclude = skipped.and_then(|a| self.cluster.state.index_of(a));
                }
                Err(e) => return Err(AcquireError::Other(e.to_string())),
            }
        }
    }

    /// Whether [`Self::install`] has statements to run on `conn` (the client's state is not
    /// the one it has, or CLIENT_IGNORE_SPACE is still to be applied).
    fn install_waits(&self, conn: &MyConn) -> bool {
        conn.schema != self.schema || conn.applied != self.vars || self.ignore_space_pending
    }

    async fn install(
        &mut self,
        mut conn: MyPooled,
        idx: usize,
        pause_hold: crate::cluster::pause::Hold,
    ) -> Result<(), AcquireError> {
        conn.clean = false;
        // Usually the connection has the client's state already: nothing to send or copy.
        let same = conn.schema == self.schema && conn.applied == self.vars;
        let sql = if same {
            String::new()
        } else {
            self.state_sql(&conn)
        };
        if !sql.is_empty() {
            let multi = if sql.contains("; ") {
                conn.ensure_multi_statements(true, INTERNAL_TIMEOUT).await
            } else {
                Ok(())
            };
            if let Err(e) = match multi {
                Ok(()) => conn.query(&sql, INTERNAL_TIMEOUT).await,
                Err(e) => Err(e),
            } {
                crate::pool::release(conn);
                return Err(match e {
                    MyQueryError::Server {
                        code,
                        sqlstate,
                        message,
                    } => AcquireError::Server {
                        code,
                        sqlstate,
                        message,
                    },
                    e => AcquireError::Broken(format!("applying the session's state failed: {e}")),
                });
            }
        }
        if !same {
            conn.applied.clone_from(&self.vars);
            conn.schema.clone_from(&self.schema);
        }
        if std::mem::take(&mut self.ignore_space_pending) {
            // CLIENT_IGNORE_SPACE: a server adds IGNORE_SPACE to the session's sql_mode at
            // login. Done on the first connection the client gets, the result kept as the
            // client's (and login) sql_mode from then on.
            let sql = "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',IGNORE_SPACE')";
            match conn.query(sql, INTERNAL_TIMEOUT).await {
                Ok(r) => {
                    if let Some((_, mode)) = r.variables.iter().find(|(k, _)| k == "sql_mode") {
                        for vars in [&mut self.vars, &mut self.login_vars, &mut conn.applied] {
                            set_var(vars, "sql_mode".into(), mode.clone());
                        }
                    }
                }
                Err(e) => {
                    crate::pool::release(conn);
                    return Err(AcquireError::Other(format!("CLIENT_IGNORE_SPACE: {e}")));
                }
            }
        }
        self.install_ready(conn, idx, pause_hold);
        Ok(())
    }

    /// [`Self::install`] once `conn` has the client's state.
    fn install_ready(
        &mut self,
        mut conn: MyPooled,
        idx: usize,
        pause_hold: crate::cluster::pause::Hold,
    ) {
        conn.clean = false;
        *self.slot.running.lock().unwrap() = Some(Running {
            addr: conn.addr,
            thread: conn.connection_id,
            pool: self.cluster.pools[idx].clone(),
        });
        (self.held_route, self.held_since) = self.cluster.state.backends[idx].hold(
            &self.cluster.metrics,
            &mut self.routed_cache,
            self.route_reason,
        );
        self.backend_idx = idx;
        self.backend = Some(conn);
        self.pause_hold = Some(pause_hold);
        self.bin.clear();
        // What the connection's server says of "the last statement" is another client's
        // (or the proxy's) until this client's first command runs there.
        self.own.stale = own::STALE_ALL;
    }

    /// The statements that bring `conn` to the client's character set, schema and session
    /// variables ("" when it is there already).
    fn state_sql(&self, conn: &MyConn) -> String {
        state::state_sql(
            &self.vars,
            &conn.applied,
            self.schema.as_deref(),
            conn.schema.as_deref(),
        )
    }

    /// After a reload, move to this worker's current pools for the client's cluster.
    fn refresh_cluster(&mut self) -> Result<(), String> {
        let now = self
            .w
            .shared
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        if self.cluster.generation == now || self.backend.is_some() {
            return Ok(());
        }
        match self
            .w
            .clusters
            .load()
            .get(&self.cluster.database, &self.user)
        {
            Some(c) => {
                self.cluster = c.clone();
                self.routed_cache = Default::default();
                Ok(())
            }
            None => Err(format!(
                "database {:?} is no longer served (removed by a config reload)",
                self.cluster.database
            )),
        }
    }

    /// A read that failed on its server before any of its answer reached the client (some
    /// may have been queued for it, see `relay`), on a connection taken for it alone
    /// (`fresh`: no transaction, no state of the client's lives there): the server is marked
    /// down, the connection closed, and another one taken for the read, elsewhere, so that
    /// the client can be sent the same command once more.
    /// `passed` is the count of bytes sent down before the command. `Ok(true)`: run it
    /// again; `Ok(false)`: no server could take it, and the client was told so; `Err`: not a
    /// read that may be retried, and `e` stands.
    /// (Boxed: see [`Session::acquire`].)
    pub(super) fn retry_read(
        &mut self,
        e: SessionError,
        want: Option<Want>,
        passed: u64,
    ) -> Pin<Box<impl Future<Output = Result<bool, SessionError>> + '_>> {
        Box::pin(self.read_again(e, want, passed))
    }

    async fn read_again(
        &mut self,
        e: SessionError,
        want: Option<Want>,
        passed: u64,
    ) -> Result<bool, SessionError> {
        let Some(want @ Want::Replica { .. }) = want else {
            return Err(e);
        };
        // What of the answer was queued for the client since the command; none of it left
        // while the queue still holds it all (an answer goes out at its end, or once
        // `FLUSH_AT` bytes of it are queued). (The count starts over when a connection is
        // let go: then there is none to retry on.)
        let Some(queued) = self.bytes_down.checked_sub(passed).map(|q| q as usize) else {
            return Err(e);
        };
        if !matches!(e, SessionError::Backend(_))
            || self.backend.is_none()
            || queued > self.cout.len()
            || self.slot.end.is_ended()
            || self.slot.killed.load(Relaxed)
        {
            return Err(e);
        }
        // The start of the answer the failed server had sent (a column count, columns,
        // rows) is dropped: the next server answers the whole command.
        self.cout.truncate(self.cout.len() - queued);
        self.bytes_down = passed;
        let failed = self.cluster.state.backends[self.backend_idx].addr;
        self.cluster.state.backends[self.backend_idx].mark_failed(&e.to_string());
        self.cluster.metrics.error(kind::REPLICA_RETRY);
        if let Some(mut dead) = self.detach() {
            dead.broken = true;
            dead.clean = false;
            crate::pool::release(dead);
        }
        // Whatever the failed server sent of an answer that never reached the client.
        self.bin.clear();
        // A reload may have replaced the pools meanwhile: the failed server is skipped by
        // its address. The read was admitted before: it goes on, paused or not.
        if let Err(e) = self.refresh_cluster() {
            self.send(1, &AcquireError::Other(e).err_payload()).await?;
            return Ok(false);
        }
        let hold = self.cluster.state.pause.hold();
        match self
            .acquire_held(want, self.cluster.state.index_of(failed), hold, None)
            .await
        {
            Ok(()) => {
                let to = self.cluster.state.backends[self.backend_idx].addr;
                tracing::info!(from = %failed, %to, "mysql read retried on another backend");
                Ok(true)
            }
            Err(e) => {
                self.send(1, &e.err_payload()).await?;
                Ok(false)
            }
        }
    }

    /// Whether the client holds a connection to a server fenced since (a demoted primary).
    pub(super) fn held_server_fenced(&self) -> bool {
        self.backend.is_some() && self.cluster.state.backends[self.backend_idx].is_fenced()
    }

    /// Whether the session allows giving the held connection back (transaction mode): not
    /// inside a transaction, including one the server keeps without saying so (see
    /// `implicit_tx`).
    pub(super) fn may_release(&self) -> bool {
        self.backend.is_some()
            && self.w.pool_mode == PoolMode::Transaction
            && self.pinned.is_none()
            && !self.long_data
            && !self.implicit_tx
            && self.status & SERVER_STATUS_IN_TRANS == 0
            && !self.slot.end.is_ended()
    }

    /// Give the connection back when the client's session allows (transaction mode): parked
    /// for the client's next statement while no other client waits for one.
    pub(super) fn maybe_release(&mut self) {
        if !self.may_release() {
            return;
        }
        if let Some(conn) = self.detach() {
            self.cluster.pools[self.backend_idx].park(conn, &mut self.parking);
        }
    }

    fn detach(&mut self) -> Option<MyPooled> {
        let mut conn = self.backend.take()?;
        self.pause_hold = None;
        {
            // Under the lock `kill` sets `killed` with (see there).
            let mut running = self.slot.running.lock().unwrap();
            *running = None;
            if self.slot.killed.swap(false, Relaxed) {
                conn.killed = true;
            }
        }
        self.cluster.state.backends[self.backend_idx].let_go(
            &self.cluster.metrics,
            self.held_route,
            self.held_since,
            (
                std::mem::take(&mut self.bytes_up),
                std::mem::take(&mut self.bytes_down),
            ),
        );
        if self.for_write {
            self.ryw.wrote(&self.cluster.state);
        }
        conn.clean = !conn.broken
            && !conn.state_unknown
            && conn.status & SERVER_STATUS_IN_TRANS == 0
            && conn.prepared.len() <= MAX_PREPARED_PER_CONN;
        Some(conn)
    }

    /// The client is gone: a connection inside a transaction or pinned is reset (or
    /// closed), never handed on as it is. (Boxed: see [`Session::acquire`].)
    pub(super) fn finish(&mut self) -> Pin<Box<impl Future<Output = ()> + '_>> {
        Box::pin(self.let_go_at_end())
    }

    async fn let_go_at_end(&mut self) {
        // A parked connection goes back to its pool (`Parking`'s drop).
        self.parking.clear();
        let in_tx = self.status & SERVER_STATUS_IN_TRANS != 0;
        let pinned = self.pinned.is_some() || self.w.pool_mode == PoolMode::Session;
        let Some(mut conn) = self.detach() else {
            return;
        };
        if in_tx || conn.broken || conn.killed {
            conn.clean = false;
        } else if pinned {
            conn.clean = conn.reset(INTERNAL_TIMEOUT).await.is_ok();
            conn.applied.clear();
        }
        crate::pool::release(conn);
    }
}
