//! Client statements on the held connection (transaction mode): the proxy statement each
//! name stands for, prepared where the connection lacks it (its result type checked first,
//! a stale one refused), and the answers a server gives in a failed transaction where it
//! cannot be prepared.

use super::forward::{aborted_error, server_error, TRANSACTION_EXITS};
use super::{ClientName, Named, Pend, Session};
use crate::config::PoolMode;
use crate::pg::codec::{self, Header};
use crate::pg::prepared::StmtDef;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// A client statement name known to the proxy (transaction mode, non-empty names), with
    /// its statement.
    pub(super) fn client_statement(&mut self, name: &[u8]) -> Option<(ClientName, Arc<StmtDef>)> {
        if self.mode != PoolMode::Transaction || name.is_empty() {
            return None;
        }
        let (name, def) = self.stmts.get_key_value(name)?;
        Some((name.clone(), def.clone()))
    }

    /// Transaction mode: the client's unnamed statement, parsed in an earlier batch, goes
    /// to the held connection again unless it is there (its ParseComplete swallowed). A
    /// client without one gets the server's own error, not whatever unnamed statement the
    /// connection was left with by an earlier batch, its own or another client's: the
    /// proxy closes that first (its CloseComplete swallowed).
    pub(super) fn ensure_unnamed(&mut self) {
        if self.mode != PoolMode::Transaction || self.unnamed_here {
            return;
        }
        if self.unnamed_parse.is_empty() {
            codec::put_target(&mut self.bout, b'C', b'S', b"");
            self.pending.push_back(Pend::Close { injected: true });
            return;
        }
        self.bout.extend_from_slice(&self.unnamed_parse);
        self.unnamed_here = true;
        self.pending.push_back(Pend::Parse {
            def: None,
            client_name: None,
            injected: true,
            unnamed: true,
        });
    }

    /// A Bind or Describe of `def` is sent under `STALE_NAME`, to be refused as stale: the
    /// statement is stale, and the transaction has not failed (then a server refuses it for
    /// that first, as it does here: the statement is bound or answered as before).
    pub(super) fn refuse_stale(&self, def: &StmtDef) -> bool {
        def.is_stale() && !self.surely_failed()
    }

    /// Inject a Parse if the held connection lacks the statement.
    pub(super) fn ensure_prepared(&mut self, def: &Arc<StmtDef>) {
        self.prepare_on_backend(def, None);
    }

    /// Queue a Parse of `def` under its proxy name unless the held connection has it.
    /// `client_name` is the client's own Parse being answered (its ParseComplete is
    /// forwarded); without one the Parse is injected and its answer swallowed.
    pub(super) fn prepare_on_backend(
        &mut self,
        def: &Arc<StmtDef>,
        client_name: Option<ClientName>,
    ) -> bool {
        let conn = self.backend.as_mut().expect("held");
        let queued = conn.prepared.insert(def.id);
        if self.replay_ok {
            // Replayed on another connection, the statement must be there too, or not yet
            // when the replay prepares it (see `retry_on_another`).
            self.replay_stmts.push((def.clone(), queued));
        }
        if !queued {
            return false;
        }
        codec::put_parse(
            &mut self.bout,
            def.backend_name().as_bytes(),
            &def.query,
            &def.param_types,
        );
        let injected = client_name.is_none();
        self.pending.push_back(Pend::Parse {
            def: Some(def.clone()),
            client_name: client_name.clone(),
            injected,
            unnamed: false,
        });
        // Described with it: to learn its shape, or, for one that returns rows, to check its
        // result type (a table it reads may have changed since the proxy learnt it).
        let describe = match def.shape.get() {
            None => true,
            Some(shape) => shape.rows && !def.is_stale(),
        };
        if describe {
            codec::put_target(&mut self.bout, b'D', b'S', def.backend_name().as_bytes());
            self.pending.push_back(Pend::Learn {
                def: def.clone(),
                param_desc: None,
                hold: false,
                repoint: client_name,
            });
        }
        true
    }

    /// Before a replay on the connection just installed: bring the proxy statements it uses
    /// (`stmts`, see `replay_stmts`) to the state the failed connection had when the replay
    /// began, with messages queued in `bout` whose answers are swallowed. One the replay
    /// prepares is closed first if this connection has it (its Parse would be refused); one
    /// it takes as there is prepared if missing. One of those that returns rows (or whose
    /// result is unknown) is also described, as for a client's Bind on a connection that
    /// lacks it (see [`Self::check_shape`]): its result type is checked before the replay
    /// goes on (a table may have changed since the client was told). Returns those, to be
    /// waited for; None when one the replay takes as there went stale meanwhile.
    pub(super) fn statements_as_before(
        &mut self,
        stmts: &[(Arc<StmtDef>, bool)],
    ) -> Option<Vec<Arc<StmtDef>>> {
        let mut first: Vec<(&Arc<StmtDef>, bool)> = Vec::new();
        for (def, parsed) in stmts {
            if !first.iter().any(|(d, _)| d.id == def.id) {
                first.push((def, *parsed));
            }
        }
        let has = |s: &Self, def: &StmtDef| {
            s.backend
                .as_ref()
                .is_some_and(|c| c.prepared.contains(&def.id))
        };
        if first
            .iter()
            .any(|&(d, parsed)| !parsed && d.is_stale() && !has(self, d))
        {
            return None;
        }
        // Answered before anything of the replay, whose entries are all still queued.
        let replayed = std::mem::take(&mut self.pending);
        // (Nothing of this is the replay's own: not recorded for another.)
        self.replay_ok = false;
        let mut checks = Vec::new();
        for (def, parsed) in first {
            match (parsed, has(self, def)) {
                (true, true) => {
                    codec::put_target(&mut self.bout, b'C', b'S', def.backend_name().as_bytes());
                    self.pending.push_back(Pend::Close { injected: true });
                }
                (true, false) => {
                    if let Some(conn) = self.backend.as_mut() {
                        conn.prepared.insert(def.id);
                    }
                }
                (false, true) => {}
                (false, false) => {
                    // As for a client's Bind on a connection that lacks it (`check_shape`).
                    self.prepare_on_backend(def, None);
                    if let Some(Pend::Learn { hold, .. }) = self.pending.back_mut() {
                        *hold = true;
                        checks.push(def.clone());
                    }
                }
            }
        }
        if !checks.is_empty() {
            // The server answers the checks now; the replay waits for them.
            self.bout.extend_from_slice(&[b'H', 0, 0, 0, 4]);
        }
        self.pending.extend(replayed);
        Some(checks)
    }

    /// The replay held back for checks of result types (see `retry_on_another`): once none
    /// is awaited, or the server refused something before it (it skips to the replay's
    /// Sync), it goes to the server; a Bind or Describe of a statement found stale goes
    /// under the name no server has, as the client's own would (see `refuse_stale`).
    pub(super) fn release_held_replay(&mut self, refused: bool) {
        if self.held_replay.is_none() || (!refused && self.shape_check_pending()) {
            return;
        }
        let Some((replay, checked)) = self.held_replay.take().map(|h| *h) else {
            return;
        };
        let stale: Vec<Vec<u8>> = checked
            .iter()
            .filter(|d| d.is_stale())
            .map(|d| d.backend_name().as_bytes().to_vec())
            .collect();
        if stale.is_empty() || refused {
            self.bout.extend_from_slice(&replay);
            return;
        }
        let is_stale = |name: &[u8]| stale.iter().any(|s| s == name);
        let mut at = 0;
        while let Ok(Some(h)) = codec::header(&replay[at..], usize::MAX) {
            let msg = &replay[at..at + h.wire_len];
            let body = &msg[5..];
            match h.tag {
                b'B' => match codec::bind_msg(body) {
                    Ok(b) if is_stale(b.statement) => codec::put_bind(
                        &mut self.bout,
                        &b,
                        crate::pg::prepared::STALE_NAME.as_bytes(),
                    ),
                    _ => self.bout.extend_from_slice(msg),
                },
                b'D' => match codec::target_msg(body) {
                    Ok((b'S', name)) if is_stale(name) => codec::put_target(
                        &mut self.bout,
                        b'D',
                        b'S',
                        crate::pg::prepared::STALE_NAME.as_bytes(),
                    ),
                    _ => self.bout.extend_from_slice(msg),
                },
                _ => self.bout.extend_from_slice(msg),
            }
            at += h.wire_len;
        }
    }

    /// A Bind or Describe (`h`, next in `cin`) of a client statement that returns rows, on a
    /// held connection that lacks it: its statement, to be prepared there and its result type
    /// checked before the message goes on (see [`Self::check_shape`]).
    pub(super) fn needs_shape_check(&self, h: &Header) -> Option<Named> {
        if self.mode != PoolMode::Transaction || !matches!(h.tag, b'B' | b'D') {
            return None;
        }
        let body = &self.cin[5..h.wire_len];
        let name = match h.tag {
            b'B' => codec::bind_msg(body).ok()?.statement,
            _ => match codec::target_msg(body).ok()? {
                (b'S', name) => name,
                _ => return None,
            },
        };
        if name.is_empty() {
            return None;
        }
        let (name, def) = self.stmts.get_key_value(name)?;
        let conn = self.backend.as_ref()?;
        let check = !conn.prepared.contains(&def.id)
            && !def.is_stale()
            && def.shape.get().is_some_and(|s| s.rows)
            && !self.surely_failed();
        check.then(|| (name.clone(), def.clone()))
    }

    /// Prepare `def` on the held connection and check its result type, with a Flush so the
    /// server answers now: the client's Bind or Describe of it waits for the answer
    /// (`Pend::Learn`'s `hold`). A server plans a prepared statement again after a table it
    /// reads changed and refuses it if its result type changed (0A000); here the statement is
    /// prepared anew, so the proxy compares, and a Bind that went on would return rows of
    /// columns the client was never told of.
    pub(super) fn check_shape(&mut self, (name, def): Named) {
        self.batch_open = true;
        self.prepare_on_backend(&def, None);
        let untold = self.untold.contains(&name);
        if let Some(Pend::Learn { hold, repoint, .. }) = self.pending.back_mut() {
            *hold = true;
            *repoint = untold.then_some(name);
        }
        self.bout.extend_from_slice(&[b'H', 0, 0, 0, 4]);
    }

    /// A check of a statement's result type is awaited (see [`Self::check_shape`]).
    pub(super) fn shape_check_pending(&self) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p, Pend::Learn { hold: true, .. }))
    }

    /// A Bind (`bind_rest`: what follows its statement name) or Describe of client statement
    /// `name` in a failed transaction, on a connection that does not have the statement: the
    /// Parse that would bring it there would be refused, so the answer is the server's own,
    /// made from the statement's `shape`: a Bind's parameter counts are checked first, then
    /// it is refused unless it ends the transaction; a Describe of a statement that returns
    /// no rows is answered. None: the server answers (the statement is there, the
    /// transaction is not surely failed where this runs, or the shape is unknown). The bool
    /// says the server skips the rest of the batch.
    pub(super) fn failed_tx_answer(
        &self,
        name: &[u8],
        def: &StmtDef,
        bind_rest: Option<&[u8]>,
    ) -> Option<(Box<[u8]>, bool)> {
        if !self.surely_failed() {
            return None;
        }
        if self.backend.as_ref()?.prepared.contains(&def.id) {
            return None;
        }
        let shape = def.shape.get()?;
        let ends = super::routing::starts_with_any(&def.query, TRANSACTION_EXITS);
        let Some(rest) = bind_rest else {
            return Some(if shape.rows {
                (aborted_error(), true)
            } else {
                let mut answer = shape.param_desc.to_vec();
                answer.extend_from_slice(&[b'n', 0, 0, 0, 4]);
                (answer.into(), false)
            });
        };
        let (formats, params) = codec::bind_counts(rest)?;
        let error = if formats > 1 && formats != params {
            server_error(
                "08P01",
                &format!("bind message has {formats} parameter formats but {params} parameters"),
            )
        } else if params != shape.params {
            server_error(
                "08P01",
                &format!(
                    "bind message supplies {params} parameters, but prepared statement \"{}\" \
                     requires {}",
                    String::from_utf8_lossy(name),
                    shape.params
                ),
            )
        } else if ends && params == 0 {
            return None;
        } else {
            aborted_error()
        };
        Some((error, true))
    }

    /// A Parse of `name`, which the client has, in a transaction that has surely failed on a
    /// connection that lacks the statement: the Parse the proxy would put in front to give
    /// the server the name is refused there, so the proxy answers as a server does. It
    /// refuses a statement that does not end the transaction before it looks at the name
    /// (25P02), and reports the name taken for one that does (42P05).
    pub(super) fn failed_tx_reparse_answer(
        &self,
        name: &[u8],
        query: &[u8],
        def: &StmtDef,
    ) -> Option<Box<[u8]>> {
        if !self.surely_failed() || self.backend.as_ref()?.prepared.contains(&def.id) {
            return None;
        }
        Some(
            if super::routing::starts_with_any(query, TRANSACTION_EXITS) {
                server_error(
                    "42P05",
                    &format!(
                        "prepared statement \"{}\" already exists",
                        String::from_utf8_lossy(name)
                    ),
                )
            } else {
                aborted_error()
            },
        )
    }

    /// Queue [`Self::failed_tx_answer`]'s answer, if it has one (the server then skips what
    /// it would have skipped).
    pub(super) fn answered_in_failed_tx(
        &mut self,
        name: &[u8],
        def: &StmtDef,
        rest: Option<&[u8]>,
    ) -> bool {
        let Some((answer, skips)) = self.failed_tx_answer(name, def, rest) else {
            return false;
        };
        self.pending.push_back(Pend::Local(answer));
        self.server_skips = skips;
        true
    }
}
