//! The session's side of multiplexed reads (`[pool] multiplex_depth`; the lanes themselves
//! are in `crate::pg::mux`): which statements may share a connection, and running one.

use super::routing::starts_with_any;
use super::{Session, SessionError};
use crate::cluster::Want;
use crate::config::PoolMode;
use crate::metrics::kind;
use crate::pg::cancel::CancelRoute;
use crate::pg::codec::{self, Header};
use crate::pg::mux::Reply;
use crate::router::classify::{Reason, TxEffect};
use crate::router::session_state;
use bytes::{Buf, Bytes};
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// True if the Query at the head of the input may run on a multiplexed connection: the
    /// feature is on, the client holds nothing and is in no transaction, nothing of its own
    /// is waiting to be answered, and the Query is one plain `SELECT` (a read with no lock, no
    /// function that writes or changes session state, no INTO).
    pub(super) fn muxable(&self, h: &Header) -> bool {
        if self.mux_depth == 0
            || h.tag != b'Q'
            || self.mode != PoolMode::Transaction
            || self.pinned()
            || self.tx_status != b'I'
            || !self.pending.is_empty()
            || self.deferred_begin.is_some()
        {
            return false;
        }
        // Nothing runs on any backend of the cluster (a multiplexed statement counts while
        // it waits): nothing to batch with. Checked first, as it is the cheapest test.
        if self
            .cluster
            .state
            .backends
            .iter()
            .all(|b| b.outstanding() == 0)
        {
            return false;
        }
        let Ok(sql) = codec::query_msg(&self.cin[5..h.wire_len]) else {
            return false;
        };
        // A longer word starting with "select" is no read to the classifier below. One
        // statement only: a lane runs each as one extended-protocol statement.
        if !starts_with_any(sql, &["select"]) || !super::forward::one_statement(sql) {
            return false;
        }
        let Ok(text) = std::str::from_utf8(sql) else {
            return false;
        };
        // Nothing that leaves, clears or may change session state (a function outside
        // pg_catalog) shares a connection.
        if !session_state::surely_no_effect(sql) && !session_state::effect_scanned(text).is_none() {
            return false;
        }
        let class = self.worker.shared.classifier.load().classify(text);
        class.reason == Reason::Read && class.tx == TxEffect::None
    }

    /// Run the Query at the head of the input on a multiplexed connection to the backend
    /// `want` selects. Returns false (having consumed nothing) when no lane takes it now (no
    /// other statement runs on that backend and no lane is busy: nothing to batch with), or
    /// its lane failed: the caller then runs it on a connection of its own.
    ///
    /// Boxed (see [`Session::acquire_for`]); this path copies the statement and its answer
    /// anyway.
    pub(super) fn run_muxed(
        &mut self,
        want: Want,
    ) -> Pin<Box<impl Future<Output = Result<bool, SessionError>> + '_>> {
        Box::pin(self.run_on_lane(want))
    }

    async fn run_on_lane(&mut self, want: Want) -> Result<bool, SessionError> {
        self.refresh_cluster()?;
        let state = self.cluster.state.clone();
        let Ok(idx) = state.select(want, None) else {
            return Ok(false);
        };
        let Ok(Some(h)) = codec::header(&self.cin, self.max_message) else {
            return Ok(false);
        };
        // Counted for PAUSE while it waits for its answer, as a transaction on a connection
        // of its own would be.
        let Some(_hold) = state.pause.try_hold() else {
            return Ok(false);
        };
        let backend = &state.backends[idx];
        let contended = backend.outstanding() > 0;
        let pool = self.cluster.pools[idx].clone();
        let msg = Bytes::copy_from_slice(&self.cin[..h.wire_len]);
        let started = std::time::Instant::now();
        let Some(ticket) = pool
            .ext
            .submit(
                &pool,
                &self.wanted,
                msg,
                self.mux_depth,
                contended,
                &self.worker.shared.shutdown,
            )
            .await
        else {
            return Ok(false);
        };
        let _outstanding = backend.running();
        self.key
            .slot
            .set_route(Some(CancelRoute::Lane(ticket.lane, ticket.id)));
        let timed = self
            .worker
            .shared
            .statement_start()
            .map(|now| self.key.slot.clock.start(now));
        let reply = ticket.reply.await;
        self.key.slot.set_route(None);
        if timed.is_some() && self.key.slot.clock.stop() {
            self.cluster.metrics.error(kind::QUERY_TIMEOUT);
        }
        let m = &self.cluster.metrics;
        match reply {
            Ok(Reply::Answer(answer)) => {
                let route = backend.route_label();
                m.routed_cached(&mut self.routed_cache, route, self.route_reason);
                m.statement(route, started.elapsed());
                m.bytes(h.wire_len as u64, answer.len() as u64);
                self.cout.extend_from_slice(&answer);
                if self.stats_on() {
                    let msg = &self.cin[..h.wire_len];
                    let sql = codec::query_msg(&msg[5..]).unwrap_or_default().to_vec();
                    self.count_muxed(&sql, route, started, &answer);
                }
                self.cin.advance(h.wire_len);
                Ok(true)
            }
            Ok(Reply::Failed) | Err(_) => {
                m.error(kind::MULTIPLEX_FALLBACK);
                Ok(false)
            }
        }
    }
}
