//! The PostgreSQL side of health checks (`cluster::health`): one query gives a server's role,
//! position and timeline.
//!
//! Timelines: on a writable backend, that of its current WAL position (the first 8 hex digits
//! of `pg_walfile_name(pg_current_wal_lsn())`), which changes the moment a replica is
//! promoted; `pg_control_checkpoint()` keeps the old timeline until the first checkpoint after
//! the promotion. On a replica, the timeline its WAL receiver streams
//! (`pg_stat_wal_receiver.received_tli`), or the last checkpoint's when none streams (or the
//! user may not see it).

use super::backend::{BackendConn, BackendTarget};
use crate::cluster::health::{Probe, Prober};
use crate::config::BackendAddr;
use std::time::Duration;

/// One query for both roles. Positions are bytes since 0/0. `pg_is_in_recovery()` is read
/// once (a subquery with a volatile target list is not flattened), so a promotion during the
/// probe cannot mix the two branches; `pg_walfile_name` would fail in recovery.
///
/// A replica's position is what it has replayed, except while its startup process waits for
/// WAL: then it has replayed every complete record it received, and its position is the
/// received one (read before the wait state, so nothing received later is counted). This
/// matters when the primary's written WAL ends inside a record, as it does after a write in
/// a transaction that stays open: the replica replays up to that record's start and waits,
/// 8 to a few hundred bytes short of the primary's position, until the primary writes the
/// rest (up to 15 s later, or at the next commit). Seeing the startup process's wait state
/// takes `pg_read_all_stats` (or `pg_monitor`, or a superuser) for the health-check user;
/// without it the replayed position is used, and such a replica may count as lagging until
/// the primary completes the record.
const PROBE_SQL: &str = "SELECT r, \
     COALESCE(pg_wal_lsn_diff(CASE WHEN NOT r THEN pg_current_wal_lsn() \
     WHEN recv IS NOT NULL AND (SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'startup' LIMIT 1) \
     IN ('RecoveryWalStream', 'RecoveryRetrieveRetryInterval') THEN GREATEST(pg_last_wal_replay_lsn(), recv) \
     ELSE pg_last_wal_replay_lsn() END, '0/0')::int8, 0), \
     CASE WHEN r THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))::int8 \
     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 END \
     FROM (SELECT pg_is_in_recovery() AS r, pg_last_wal_receive_lsn() AS recv) s";

/// Probes PostgreSQL servers with a cluster's credentials and database.
#[derive(Clone)]
pub struct PgProber {
    /// Credentials and database; the address is replaced per backend.
    pub target: BackendTarget,
}

impl Prober for PgProber {
    type Conn = BackendConn;

    async fn connect(&self, addr: BackendAddr, give_up: Duration) -> Result<BackendConn, String> {
        let target = BackendTarget {
            addr,
            connect_timeout: give_up,
            application_name: "switchyard-health",
            ..self.target.clone()
        };
        BackendConn::connect(&target)
            .await
            .map_err(|e| e.to_string())
    }

    fn goodbye(&self, conn: &mut Self::Conn) {
        crate::pool::Reusable::say_goodbye(conn);
    }

    async fn probe(&self, conn: &mut BackendConn, give_up: Duration) -> Result<Probe, String> {
        let row = conn.query_row(PROBE_SQL, give_up).await?;
        parse_probe(&row).ok_or_else(|| "unexpected probe result".to_string())
    }
}

fn parse_probe(row: &[Option<String>]) -> Option<Probe> {
    let get = |i: usize| row.get(i).and_then(|v| v.as_deref());
    Some(Probe {
        in_recovery: get(0)? == "t",
        lsn: get(1)?.parse::<i64>().ok()?.max(0) as u64,
        timeline: get(2).and_then(|t| t.parse().ok()).unwrap_or(0),
        // A cut replica ages through the position history (`cluster::lag`).
        stalled: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_rows_parse() {
        let row: Vec<Option<String>> = ["t", "1000", "3"]
            .iter()
            .map(|s| Some(s.to_string()))
            .collect();
        let p = parse_probe(&row).unwrap();
        assert!(p.in_recovery);
        assert_eq!((p.lsn, p.timeline), (1000, 3));
        assert!(parse_probe(&row[..1]).is_none());
        let unknown = parse_probe(&[Some("f".into()), Some("5".into()), None]).unwrap();
        assert_eq!((unknown.in_recovery, unknown.timeline), (false, 0));
    }
}
