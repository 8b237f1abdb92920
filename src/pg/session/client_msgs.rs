//! Messages from the client: each complete one buffered is answered here, forwarded, or
//! waits for a server connection (the step the pump takes next).

use super::*;

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// Handle every complete client message buffered.
    pub(super) fn process_client(&mut self) -> Result<Step, SessionError> {
        self.cin_blocked = false;
        loop {
            if self.bout.len() >= HIGH_WATER {
                // The pump comes back here once the backend has taken some of it.
                self.cin_blocked = !self.cin.is_empty();
                return Ok(Step::Done);
            }
            let h = match codec::header(&self.cin, self.max_message) {
                Ok(Some(h)) if self.cin.len() >= h.wire_len => h,
                Ok(_) => return Ok(Step::Done),
                Err(e) => return Err(SessionError::ClientProtocol(e.to_string())),
            };
            if self.discard_until_sync {
                if h.tag == b'S' {
                    self.discard_until_sync = false;
                    let mut z = BytesMut::new();
                    codec::put_ready(&mut z, self.tx_status);
                    self.pending.push_back(Pend::Local(z.to_vec().into()));
                }
                self.cin.advance(h.wire_len);
                continue;
            }
            if h.tag == b'X' {
                return Ok(Step::Terminate);
            }
            if self.server_skips && self.backend.is_some() {
                if h.tag == b'S' {
                    self.server_skips = false;
                } else {
                    // Its server skips it too (an error earlier in the batch).
                    self.cin.advance(h.wire_len);
                    continue;
                }
            }
            if self.backend.is_some() && self.cluster.state.backends[self.backend_idx].is_fenced() {
                // The answers to what was sent there come first (what ran, ran), unless an
                // extended batch or a COPY is open: its answers may wait for a Sync or the
                // end of the data still in `cin`.
                let nothing_open = !self.batch_open && self.copy_in_mark.is_none();
                if nothing_open && !self.drained() {
                    return Ok(Step::Done);
                }
                // Held only between autocommit statements (the answers may have begun a
                // transaction; `maybe_release` checks): let go of it and route this message
                // afresh.
                self.maybe_release();
                if self.backend.is_none() {
                    continue;
                }
                // The server this client holds (session mode, pinned, in a transaction) was
                // demoted by a newer primary: nothing more goes to it.
                return Err(SessionError::Fenced(
                    self.cluster.state.backends[self.backend_idx].addr,
                ));
            }
            if h.tag == b'Q' && self.mode == PoolMode::Transaction {
                // A simple Query ends the unnamed statement, answered here or by a server.
                self.unnamed_parse.clear();
                self.unnamed_here = false;
            }
            if h.tag == b'Q'
                && self.awaits_server()
                && (self.names_unsure(true) || self.status_unsure())
                && (self.deallocates_by_name(&h)
                    || (self.mode == PoolMode::Transaction && self.drops_all_prepared(&h)))
            {
                // Whether the client has the statement it names depends on answers still to
                // come (see `waits_for_names`).
                return Ok(Step::Done);
            }
            if h.tag == b'Q' && self.answer_locally(&h)? {
                self.cin.advance(h.wire_len);
                continue;
            }
            if self.backend.is_some() && self.next_batch_leaves_replica() {
                // A batch that is not all reads must not follow reads onto a replica: wait
                // until the replica has answered, then let go of it and route the batch.
                if !self.drained() {
                    return Ok(Step::Done);
                }
                if self.tx_status == b'I' && !self.pinned() && self.idle_between_batches() {
                    self.maybe_release();
                    continue;
                }
                if self.tx_status == b'I'
                    && self.idle_between_batches()
                    && self.cluster.state.backends[self.backend_idx].role()
                        == crate::cluster::Role::Replica
                    && matches!(self.scan_batch(), routing::Batch::NotRead(why) if [
                        "write", "ddl", "locking", "write_function", "select_into", "writing_cte",
                    ].contains(&why))
                {
                    // Pinned to a replica (session state made in a read-only transaction
                    // there): a write must not go to it, and the state cannot move. (What
                    // a replica runs, cursors and settings included, still goes there.)
                    self.reject(
                        &h,
                        "25006",
                        "this session keeps state (a setting, lock, cursor or prepared \
                         statement) on a replica, where it was made in a read-only transaction; \
                         writes cannot run there: DISCARD ALL, or a new connection, ends it",
                    );
                    self.cin.advance(h.wire_len);
                    continue;
                }
                // Inside a transaction (BEGIN READ ONLY) or pinned: it stays where it is.
            }
            if self.backend.is_none() {
                // Without a backend only proxy-answered entries can be pending.
                self.emit_synthetics();
                match h.tag {
                    // Stray copy data after a failed COPY: PostgreSQL drops it too.
                    b'd' | b'c' | b'f' | b'H' => {
                        self.cin.advance(h.wire_len);
                        continue;
                    }
                    b'S' if self.pending.is_empty() => {
                        // The batch ends here as at a Sync a server answers (its Close was
                        // answered here). Left open, the next batches would follow whatever
                        // connection they got, a replica's included, writes and all.
                        self.batch_open = false;
                        self.cin.advance(h.wire_len);
                        codec::put_ready(&mut self.cout, self.tx_status);
                        continue;
                    }
                    b'C' if self.closes_client_statement(&h) => {}
                    b'Q' if self.defer_begin(&h) => {
                        self.cin.advance(h.wire_len);
                        continue;
                    }
                    b'P' if self.mode == PoolMode::Transaction && self.names_a_statement(&h) => {
                        if !self.parse_locally(&h)? {
                            return match self.want_for_batch(&h) {
                                Ok(Some(want)) => Ok(Step::ParseWithoutBackend(want)),
                                Ok(None) => Ok(Step::Done),
                                Err(_) => Ok(Step::ParseWithoutBackend(Want::Primary)),
                            };
                        }
                        self.cin.advance(h.wire_len);
                        continue;
                    }
                    _ => match self.want_for_batch(&h) {
                        // The batch goes on in the next read: decide when it is whole.
                        Ok(None) => return Ok(Step::Done),
                        Ok(Some(want)) if self.muxable(&h) => return Ok(Step::Mux(want)),
                        Ok(Some(want)) => return Ok(Step::NeedBackend(want)),
                        Err(e) => {
                            self.cluster.metrics.error(match e {
                                crate::cluster::SelectError::NoReplica => {
                                    crate::metrics::kind::NO_REPLICA
                                }
                                crate::cluster::SelectError::NoPrimary => {
                                    crate::metrics::kind::NO_PRIMARY
                                }
                            });
                            self.reject(&h, "57P03", &e.to_string());
                            self.cin.advance(h.wire_len);
                            continue;
                        }
                    },
                }
            }
            if self.shape_check_pending() {
                // The message waits for the check of a statement's result type.
                return Ok(Step::Done);
            }
            if self.waits_for_names(&h) || self.waits_for_status(&h) {
                // Whether the client has the statement this names when the server gets to it
                // depends on the answers to an earlier part of the pipeline (an error there
                // skips the Parse or Close that made or ended it): wait for them.
                return Ok(Step::Done);
            }
            if let Some(named) = self.needs_shape_check(&h) {
                self.check_shape(named);
                return Ok(Step::Done);
            }
            if self.seq_guard && self.reads_foreign_sequence_state(&h) {
                self.reject(&h, "55000", sequences::REFUSED);
                self.cin.advance(h.wire_len);
                continue;
            }
            let before = self.bout.len();
            self.forward_client_message(h)?;
            self.bytes_up += self.bout.len().saturating_sub(before) as u64;
            if self.replay_ok {
                self.keep_for_replay(before);
            }
            self.cin.advance(h.wire_len);
        }
    }
}
