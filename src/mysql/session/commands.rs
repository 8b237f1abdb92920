//! Commands that change the client's session as a whole: COM_RESET_CONNECTION,
//! COM_CHANGE_USER, and KILL (of another client's statement, or of the server connection of
//! a client that went away).

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// COM_RESET_CONNECTION: the client's session returns to how it logged in; nothing it set
    /// or prepared is kept (and it is no longer pinned).
    /// (Boxed: see [`Session::acquire`].)
    pub(super) fn com_reset(
        &mut self,
        seq: u8,
    ) -> Pin<Box<impl Future<Output = Result<(), SessionError>> + '_>> {
        Box::pin(self.reset_session(seq))
    }

    async fn reset_session(&mut self, seq: u8) -> Result<(), SessionError> {
        if let Some(conn) = self.backend.as_mut() {
            if conn.reset(INTERNAL_TIMEOUT).await.is_ok() {
                conn.applied.clear();
            } else {
                conn.clean = false;
            }
        }
        self.restart();
        self.send(seq, &ok_payload(self.caps, self.status)).await
    }

    /// The client's session starts again as after its login: its settings, schema, prepared
    /// statements (a server deallocates them too) and own results are gone, and it is no
    /// longer pinned.
    fn restart(&mut self) {
        self.vars = self.login_vars.clone();
        self.schema = self.login_schema.clone();
        self.pinned = None;
        self.status = SERVER_STATUS_AUTOCOMMIT;
        self.route_override = None;
        self.stmts.clear();
        self.last_prepared = None;
        self.long_data = false;
        self.long_data_fresh.clear();
        self.own.forget();
        self.implicit_tx = false;
        self.status_stale = false;
        // The session's own session_track_* settings are back to the server's defaults.
        self.track = Default::default();
        self.routed_cache = Default::default();
    }

    /// COM_CHANGE_USER: the client authenticates again (a mysql_native_password answer is
    /// checked against the handshake's scramble, anything else is switched to that plugin
    /// with the same scramble, as a server does) and starts a new session as that user, in
    /// the cluster and schema it names, with its character set:
    /// its connection is given back as at the end of a session (a transaction in progress
    /// rolls back), its statements and settings are gone, it is no longer pinned. A wrong
    /// password, an unknown user or database gets an ERR, and the connection goes on as the
    /// user it was, its session started again (as on MariaDB).
    ///
    /// Boxed (a login's worth of state, and rare): see [`Session::acquire`].
    pub(super) fn com_change_user<'a>(
        &'a mut self,
        payload: &'a [u8],
    ) -> Pin<Box<impl Future<Output = Result<(), SessionError>> + 'a>> {
        Box::pin(self.change_user(payload))
    }

    async fn change_user(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let cu = match codec::parse_change_user(payload, self.caps) {
            Ok(cu) => cu,
            Err(e) => {
                let err = err_payload(1043, b"08S01", &format!("Bad handshake: {e}"));
                let _ = self.send(1, &err).await;
                return Err(SessionError::Client(PacketError::Protocol(e)));
            }
        };
        let name = String::from_utf8_lossy(cu.user).into_owned();
        let database =
            (!cu.database.is_empty()).then(|| String::from_utf8_lossy(cu.database).into_owned());
        let charset = cu.charset.and_then(|c| u8::try_from(c).ok());
        let refuse = |code: u16, state: &[u8; 5], msg: String| (code, *state, msg);
        let from = self.slot.info.get().and_then(|i| i.ip);
        let denied = |sent: bool| {
            let r = crate::mysql::startup::access_denied(&name, from, sent);
            (r.code, r.state, r.message)
        };
        let cfg = self.w.shared.config();
        // A user the config names, else one the servers know (auth_query); one that cannot
        // be looked up now is refused as unknown.
        let (user, looked_up) = match cfg.user(&name) {
            Some(u) => (Some(u.clone()), None),
            None => {
                // Boxed: the look-up (a login of its own) is large, and inline it would make
                // every session's task as large.
                let found = Box::pin(self.w.look_up(&cfg, database.as_deref(), &name))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(user = %name, error = %e, "auth_query failed");
                        None
                    });
                (found.as_ref().map(|(_, u)| (**u).clone()), found)
            }
        };
        // A user that may not log in from the client's address is refused as an unknown one.
        let user = user.filter(|u| u.allows(from));
        if looked_up.is_some() {
            // Its pools (and the pass-through a right answer teaches) before the answer is
            // checked; they open nothing until used.
            self.w.adopt_looked_up();
        }
        // As a server does: an answer for mysql_native_password is checked against the
        // handshake's scramble at once (MariaDB Connector/C sends one and, switched, would
        // answer from that scramble again); any other answer is switched to
        // mysql_native_password with the same scramble.
        let native = cu.auth_plugin.is_none_or(|p| p == MYSQL_NATIVE_PASSWORD);
        let at_once = native
            && user.as_ref().is_some_and(|u| {
                crate::mysql::startup::change_user_passes(u, &self.scramble, cu.auth_response)
            });
        // What a right mysql_native_password answer reveals, for pass-through logins.
        let (w, scramble) = (self.w.clone(), self.scramble);
        let learn = |answer: &[u8]| {
            let stage1 = user
                .as_ref()
                .and_then(|u| crate::mysql::startup::revealed_stage1(u, &scramble, answer));
            if let (Some(s), Some(p)) = (stage1, w.my.pass_throughs.get(&name)) {
                p.learn(s);
            }
        };
        let (passed, next_seq, sent) = if at_once {
            learn(cu.auth_response);
            (true, 1, true)
        } else if self.caps & CLIENT_PLUGIN_AUTH == 0 {
            // No switch possible: the answer was checked above.
            (false, 1, !cu.auth_response.is_empty())
        } else {
            let mut sw = BytesMut::new();
            crate::mysql::startup::put_switch_to_native(&mut sw, &self.scramble);
            self.send(1, &sw).await?;
            let resp = match read_packet(&mut self.client, &mut self.cin, self.max_packet).await {
                Ok(p) => p,
                Err(e) => return Err(SessionError::Client(e)),
            };
            if resp.seq != 2 {
                let r = crate::mysql::startup::out_of_order();
                let _ = self
                    .send(3, &err_payload(r.code, &r.state, &r.message))
                    .await;
                return Err(SessionError::Refused(r.message));
            }
            let passed = user.as_ref().is_some_and(|u| {
                crate::mysql::startup::change_user_passes(u, &self.scramble, &resp.payload)
            });
            if passed {
                learn(&resp.payload);
            }
            (passed, resp.next_seq, !resp.payload.is_empty())
        };
        if let Some((cluster, _)) = looked_up.as_ref().filter(|_| !passed) {
            // The hash may have changed since it was looked up: asked again next time.
            self.w.my.looked_up.stale(cluster, &name);
        }
        let picked = crate::mysql::startup::pick_cluster(&cfg, database.as_deref());
        let next = self
            .w
            .clusters
            .load()
            .get(picked.as_ref().map_or("", |(c, _)| c.as_str()), &name)
            .cloned();
        let (cluster, schema) = match (passed, picked, next) {
            (true, Some((_, schema)), Some(cluster)) => (cluster, schema),
            (passed, _, _) => {
                let (code, state, msg) = if passed {
                    refuse(
                        1049,
                        b"42000",
                        format!(
                            "Unknown database '{}' (no switchyard MySQL cluster serves it)",
                            database.unwrap_or_default()
                        ),
                    )
                } else {
                    denied(sent)
                };
                // As MariaDB does: the old session ends all the same, and the connection
                // goes on as the user it was, as after its login.
                tracing::debug!(user = %name, code, "mysql client's change of user refused");
                self.finish().await;
                self.restart();
                return self.send(next_seq, &err_payload(code, &state, &msg)).await;
            }
        };
        if cluster.state.pause.is_disabled() && !Arc::ptr_eq(&cluster.state, &self.cluster.state) {
            // A disabled cluster takes no new clients, nor clients of other clusters.
            self.finish().await;
            self.restart();
            let err = crate::mysql::startup::disabled_err(&cluster.database);
            return self.send(next_seq, &err).await;
        }
        // The new user's place under its max_connections, the old user's given up first (a
        // change to the same user at its limit passes, as on a server).
        let limit = user
            .as_ref()
            .and_then(|u| cfg.user_connection_limit(Some(u)));
        let conns = self.w.shared.user_conns.clone();
        drop(self.slot.user_conn.lock().unwrap().take());
        let new_conn = match conns.admit(&Arc::from(name.as_str()), limit) {
            Ok(c) => c,
            Err(n) => {
                tracing::debug!(user = %name, "mysql client's change of user refused: max_connections");
                *self.slot.user_conn.lock().unwrap() = conns.admit(&self.user, None).ok();
                self.finish().await;
                self.restart();
                let err = crate::mysql::startup::user_limit_err(&name, n);
                return self.send(next_seq, &err).await;
            }
        };
        *self.slot.user_conn.lock().unwrap() = Some(new_conn);
        // The old session ends here, as if the client had left.
        self.finish().await;
        let before = (
            std::mem::replace(&mut self.cluster, cluster),
            self.login_vars.clone(),
            std::mem::replace(&mut self.login_schema, schema),
            std::mem::replace(&mut self.user, Arc::from(name.as_str())),
        );
        self._connected = self.cluster.metrics.client_connected();
        if let Some(c) = charset {
            self.login_vars = charset_vars(c);
        }
        self.restart();
        if self.schema.is_some() {
            // The schema must exist, as a direct server checks at once (1049 otherwise);
            // refused, the connection goes on as the user it was, as for a wrong password.
            self.route_reason = "command";
            if let Err(e) = self.acquire(Want::Primary).await {
                (self.cluster, self.login_vars, self.login_schema, self.user) = before;
                // Back under the old user's count.
                *self.slot.user_conn.lock().unwrap() = conns.admit(&self.user, None).ok();
                self._connected = self.cluster.metrics.client_connected();
                self.restart();
                return self.send(next_seq, &e.err_payload()).await;
            }
        }
        *self.slot.user.lock().unwrap() = Some(self.user.clone());
        if let Some(info) = self.slot.info.get() {
            *info.login.lock().unwrap() =
                (self.user.clone(), Arc::from(self.cluster.database.as_str()));
        }
        tracing::debug!(user = %name, cluster = %self.cluster.database, "mysql client changed user");
        self.send(next_seq, &ok_payload(self.caps, self.status))
            .await
    }

    /// `KILL [QUERY|CONNECTION] id` with a proxy-issued id: sent to the server connection
    /// that client holds now. Never reaches another client's statement: only the client's
    /// own connection is named, and that connection is closed afterwards, not pooled.
    pub(super) async fn kill(&mut self, query_only: bool, id: u32) -> Result<(), SessionError> {
        if id == self.slot.id {
            // As a server does: the statement interrupted is the KILL itself; a KILL of the
            // connection ends it.
            if query_only {
                let err = err_payload(1317, b"70100", "Query execution was interrupted");
                return self.send(1, &err).await;
            }
            self.slot.end.mark_ended();
            return self
                .send(1, &err_payload(1927, b"70100", "Connection was killed"))
                .await;
        }
        use crate::engine::{RelayOutcome, Relayed};
        let mut outcome = self.w.my.kill_as(id, query_only, &self.user);
        if outcome == RelayOutcome::Unknown && !self.w.my.issued_here(id) {
            // A client of the process this one took over from, still draining.
            let user = self.user.to_string();
            let relayed = Relayed::MyKill {
                id,
                query_only,
                user,
            };
            outcome = self.w.shared.lineage.relay(relayed).await;
        }
        let err = match outcome {
            RelayOutcome::Done => return self.send(1, &ok_payload(self.caps, self.status)).await,
            RelayOutcome::NotOwner => {
                err_payload(1095, b"HY000", &format!("You are not owner of thread {id}"))
            }
            RelayOutcome::Unknown | RelayOutcome::Gone => {
                err_payload(1094, b"HY000", &format!("Unknown thread id: {id}"))
            }
        };
        self.send(1, &err).await
    }

    /// The client left while its statement ran: the server connection is killed (the
    /// statement stops, its transaction rolls back, its locks go; a closed socket alone is
    /// not noticed by a statement waiting for a lock) and never reused.
    pub(super) fn kill_held_connection(&mut self) {
        let Some(conn) = self.backend.as_mut() else {
            return;
        };
        conn.killed = true;
        conn.broken = true;
        conn.clean = false;
        let (addr, thread) = (conn.addr, conn.connection_id);
        let target = self
            .cluster
            .pools
            .iter()
            .find(|p| p.addr() == addr)
            .map(|p| p.target().clone());
        if let Some(t) = target {
            tokio::spawn(async move {
                if let Err(e) = t.kill(thread, false, Duration::from_secs(5)).await {
                    tracing::warn!(error = %e, "KILL of a gone client's connection failed");
                }
            });
        }
    }
}
