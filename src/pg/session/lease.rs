//! The session's server connection: checkout (and the parameters a login is told), the
//! moment it is let go, and what happens to it then (back to the pool, reset first, or
//! closed).

use super::*;
use crate::pg::backend::InternalError;

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// What the client is told at login (ParameterStatus). Session mode checks out the
    /// client's connection now. Transaction mode answers from what an earlier client with the
    /// same startup settings was told; the first such client borrows a connection from any
    /// backend that is up (a replica will do: logins work while the primary is down).
    pub async fn login(&mut self) -> Result<Vec<(String, String)>, SessionError> {
        if self.mode == PoolMode::Transaction {
            if let Some(p) = self.cluster.login_params.get(&self.wanted) {
                return Ok((*p).clone());
            }
            self.route_reason = "login";
            let any = Want::Replica { min_lsn: None };
            if self.cluster.state.select(any, None).is_ok() {
                self.acquire_for(any).await?;
            } else {
                self.acquire_for(Want::Primary).await?;
            }
        } else {
            self.acquire_for(Want::Primary).await?;
        }
        let mut params = self
            .backend
            .as_ref()
            .map(|b| b.server_params.clone())
            .unwrap_or_default();
        // Learned on a replica, perhaps: but the client is connected to the cluster, which
        // takes writes (libpq's target_session_attrs and pgjdbc's targetServerType read these).
        if !self.for_write {
            for (k, v) in params.iter_mut() {
                if k == "in_hot_standby" || k == "default_transaction_read_only" {
                    *v = "off".into();
                }
            }
        }
        if self.mode == PoolMode::Transaction {
            self.cluster
                .login_params
                .put(self.wanted.clone(), params.clone());
        }
        Ok(params)
    }

    /// Whether [`Self::install`] has a round trip to make on `conn` (the client's settings
    /// are not those it has).
    pub(super) fn install_waits(&self, conn: &Pooled) -> bool {
        (self.mode == PoolMode::Session && conn.startup != *self.wanted)
            || conn.applied != *self.wanted
    }

    pub(super) async fn install(
        &mut self,
        mut conn: Pooled,
        idx: usize,
        for_write: bool,
        pause_hold: crate::cluster::pause::Hold,
    ) -> Result<(), SessionError> {
        conn.clean = false;
        if self.mode == PoolMode::Session && conn.startup != *self.wanted {
            // Session mode: the client's settings go in the startup packet, so that RESET
            // returns to them as on a direct connection. A pooled connection opened for other
            // settings is replaced (in its pool place) by one opened for these.
            let target = self.cluster.pools[idx].target().clone();
            // Boxed: a login is large, and inline it would make every session's task as
            // large (this is session mode's rare path).
            let connect = crate::pg::backend::BackendConn::connect_with(&target, &self.wanted);
            match Box::pin(connect).await {
                Ok(fresh) => {
                    **conn = fresh;
                    conn.applied = (*self.wanted).clone();
                }
                Err(e) => {
                    pool::release(conn);
                    return Err(if settings_refused(&e) {
                        SessionError::Settings(e.to_string())
                    } else {
                        SessionError::InstallBroken(e.to_string())
                    });
                }
            }
        }
        if conn.applied != *self.wanted {
            let sql = settings_sql(&conn.applied, &self.wanted);
            if sql.is_empty() {
                // The same settings in another order.
            } else if let Err(e) = conn.run_internal(&sql, INTERNAL_TIMEOUT).await {
                pool::release(conn);
                return Err(match e {
                    InternalError::Refused(m) => SessionError::Settings(m),
                    InternalError::Broken(m) => SessionError::InstallBroken(m),
                });
            }
            conn.applied = (*self.wanted).clone();
        }
        self.install_ready(conn, idx, for_write, pause_hold);
        Ok(())
    }

    /// [`Self::install`] once `conn` has the client's settings.
    pub(super) fn install_ready(
        &mut self,
        mut conn: Pooled,
        idx: usize,
        for_write: bool,
        pause_hold: crate::cluster::pause::Hold,
    ) {
        conn.clean = false;
        self.key.slot.set(Some(conn.cancel_target()));
        // An idle connection, unless a BEGIN the proxy answered goes first (below): the
        // client's transaction is open from here, as it was told.
        if self.deferred_begin.is_none() {
            self.tx_status = b'I';
        }
        self.seq_guard = self.mode == PoolMode::Transaction
            && !(self.seq_home == Some((conn.addr, conn.pid)) && conn.seq_owner == self.uid);
        self.backend = Some(conn);
        self.backend_idx = idx;
        self.for_write = for_write;
        (self.held_route, self.held_since) = self.cluster.state.backends[idx].hold(
            &self.cluster.metrics,
            &mut self.routed_cache,
            self.route_reason,
        );
        self.pause_hold = Some(pause_hold);
        self.replay.clear();
        self.replay_stmts.clear();
        self.held_replay = None;
        self.replay_ok = !for_write;
        self.responded = false;
        self.client_saw = false;
        self.unnamed_here = false;
        // Every path that gives the client a connection passes here: a BEGIN the proxy
        // answered goes out before anything else of the transaction.
        self.send_deferred_begin();
    }

    /// Let go of the held connection and close it (its server failed or is going away).
    pub(super) fn close_backend(&mut self) {
        if let Some(mut conn) = self.detach() {
            conn.clean = false;
            pool::release(conn);
        }
    }

    /// Let go of the held connection (the caller returns it to the pool or closes it).
    pub(super) fn detach(&mut self) -> Option<Pooled> {
        let mut conn = self.backend.take()?;
        self.pause_hold = None;
        self.server_skips = false;
        // The client's sequence state is here if it changed it here or found it here (the
        // guard is off); otherwise another client ran statements on it, which makes it
        // nobody's (unless nothing of the client's reached the server).
        if self.seq_guard {
            if self.bytes_up > 0 {
                conn.seq_owner = 0;
            }
        } else {
            conn.seq_owner = self.uid;
            self.seq_home = Some((conn.addr, conn.pid));
        }
        if self.key.slot.clear() {
            // A cancel was sent to it: it may arrive late and stop another client's
            // statement, so the connection is closed instead of pooled.
            conn.cancelled = true;
        }
        let state = &self.cluster.state;
        state.backends[self.backend_idx].let_go(
            &self.cluster.metrics,
            self.held_route,
            self.held_since,
            (
                std::mem::take(&mut self.bytes_up),
                std::mem::take(&mut self.bytes_down),
            ),
        );
        if self.for_write {
            self.ryw.wrote(state);
        }
        Some(conn)
    }

    /// Check out a backend only if one is idle, or the pool has room to open one. (Boxed:
    /// see [`Session::acquire_for`].)
    pub(super) fn acquire_if_free(
        &mut self,
        want: Want,
    ) -> Pin<Box<impl Future<Output = Result<bool, SessionError>> + '_>> {
        Box::pin(self.check_out_if_free(want))
    }

    async fn check_out_if_free(&mut self, want: Want) -> Result<bool, SessionError> {
        self.refresh_cluster()?;
        let Some(hold) = self.cluster.state.pause.try_hold() else {
            return Ok(false);
        };
        let Ok(idx) = self.cluster.state.select(want, None) else {
            return Ok(false);
        };
        let pool = &self.cluster.pools[idx];
        match pool.checkout_now().await.ok().flatten() {
            Some(conn) => {
                self.install(conn, idx, matches!(want, Want::Primary), hold)
                    .await?;
                Ok(true)
            }
            // None idle but room for one (a pool not yet grown): open it, as for any
            // statement; only a pool that is full makes the Parse wait for nobody.
            None if pool.has_room() => {
                self.acquire_for(want).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Release the held backend if the protocol state allows (transaction mode).
    pub fn maybe_release(&mut self) {
        if self.mode == PoolMode::Transaction && !self.pinned() && self.idle_between_batches() {
            if let Some(conn) = self.detach() {
                self.give_back(conn);
            }
        }
    }

    /// Return an idle connection with no client state known on it to its pool; one whose
    /// state is unknown is reset first, off the client's path.
    pub(super) fn give_back(&self, mut conn: Pooled) {
        if conn.state_unknown {
            let reset = self.worker.shared.config().pool.reset_query.clone();
            tokio::spawn(async move {
                reset_and_release(conn, &reset).await;
            });
            return;
        }
        conn.clean = conn.prepared.len() <= MAX_PREPARED_PER_BACKEND;
        pool::release(conn);
    }

    /// Return or close the backend when the client is gone. (Boxed: see
    /// [`Session::acquire_for`].)
    pub(super) fn finish(&mut self) -> Pin<Box<impl Future<Output = ()> + '_>> {
        Box::pin(self.let_go_at_end())
    }

    async fn let_go_at_end(&mut self) {
        let Some(mut conn) = self.detach() else {
            return;
        };
        if !self.idle_between_batches() {
            if !self.pending.is_empty() {
                // A statement is still running: stop it, then drop the connection.
                let t = conn.cancel_target();
                tokio::spawn(crate::pg::cancel::send_cancel(t, Duration::from_secs(5)));
            }
            conn.clean = false;
        } else if self.mode == PoolMode::Session || self.pinned() {
            let reset = self.worker.shared.config().pool.reset_query.clone();
            return reset_and_release(conn, &reset).await;
        } else {
            return self.give_back(conn);
        }
        pool::release(conn);
    }
}

/// Run the reset query on an idle connection, then give it back: to the pool if the reset
/// worked, closed otherwise.
pub(super) async fn reset_and_release(mut conn: Pooled, reset: &str) {
    conn.clean = conn.run_internal(reset, INTERNAL_TIMEOUT).await.is_ok();
    // The reset returns settings to the connection's startup values and drops its
    // prepared statements.
    conn.applied = conn.startup.clone();
    conn.prepared.clear();
    conn.state_unknown = false;
    pool::release(conn);
}

/// Whether a login with the client's settings failed for the settings' sake (the server
/// refused a value, or the login), not because the server is going away or out of room:
/// then another server would refuse it too.
fn settings_refused(e: &crate::pg::backend::ConnectError) -> bool {
    matches!(
        e,
        crate::pg::backend::ConnectError::Refused { code, .. }
            if !["57P", "53", "08"].iter().any(|class| code.starts_with(class))
    )
}
