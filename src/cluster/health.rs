//! Active health checks and lag monitoring. One task per cluster probes every backend each
//! `interval` over a persistent connection (one query gives role, positions and replay age),
//! then updates the shared [`ClusterState`]: up/down with rise/fall counts, role and
//! timeline (so a promoted replica is found without a restart), lag in bytes and time, and
//! read-set membership with hysteresis. Every transition is logged and counted.

use super::{BackendState, ClusterState, Role};
use crate::config::Health;
use crate::pg::backend::{BackendConn, BackendTarget};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One query for both roles. Positions are bytes since 0/0.
const PROBE_SQL: &str = "SELECT pg_is_in_recovery(), \
     COALESCE(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, '0/0')::int8, 0), \
     COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::int8, -1), \
     COALESCE(EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8, 0), \
     (SELECT timeline_id FROM pg_control_checkpoint())";

/// What one probe saw.
#[derive(Debug, Clone, Copy)]
struct Probe {
    in_recovery: bool,
    /// Replay position (replica) or current position (primary).
    lsn: u64,
    receive_lsn: i64,
    replay_age: f64,
    timeline: u64,
}

fn parse_probe(row: &[Option<String>]) -> Option<Probe> {
    let get = |i: usize| row.get(i).and_then(|v| v.as_deref());
    Some(Probe {
        in_recovery: get(0)? == "t",
        lsn: get(1)?.parse::<i64>().ok()?.max(0) as u64,
        receive_lsn: get(2)?.parse().ok()?,
        replay_age: get(3)?.parse().ok()?,
        timeline: get(4).and_then(|t| t.parse().ok()).unwrap_or(0),
    })
}

/// Probe state kept by the checker for one backend.
#[derive(Default)]
struct Tracker {
    conn: Option<BackendConn>,
    ok: u32,
    failed: u32,
    believed_up: bool,
}

/// Probe `cluster` until `shutdown`. `target` gives credentials and database; its address is
/// replaced per backend.
pub async fn run(
    cluster: Arc<ClusterState>,
    target: BackendTarget,
    health: Health,
    shutdown: CancellationToken,
) {
    let mut trackers: Vec<Tracker> = cluster
        .backends
        .iter()
        .map(|_| Tracker {
            believed_up: true,
            ..Default::default()
        })
        .collect();
    let mut tick = tokio::time::interval(health.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        round(&cluster, &target, &health, &mut trackers).await;
    }
}

async fn probe(t: &mut Tracker, target: BackendTarget, timeout: Duration) -> Result<Probe, String> {
    if t.conn.is_none() {
        let target = BackendTarget {
            connect_timeout: timeout,
            application_name: "switchyard-health",
            ..target
        };
        t.conn = Some(
            BackendConn::connect(&target)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let conn = t.conn.as_mut().expect("just set");
    let row = conn.query_row(PROBE_SQL, timeout).await;
    match row {
        Ok(r) => parse_probe(&r).ok_or_else(|| "unexpected probe result".to_string()),
        Err(e) => {
            t.conn = None;
            Err(e)
        }
    }
}

/// One round: probe all backends at once, then update the shared state.
async fn round(
    cluster: &ClusterState,
    target: &BackendTarget,
    health: &Health,
    trackers: &mut [Tracker],
) {
    let round_id = cluster.rounds_started.fetch_add(1, Relaxed) + 1;
    let probes =
        futures_util::future::join_all(trackers.iter_mut().zip(&cluster.backends).map(|(t, b)| {
            let target = BackendTarget {
                addr: b.addr,
                ..target.clone()
            };
            probe(t, target, health.timeout)
        }))
        .await;
    for ((t, b), p) in trackers.iter_mut().zip(&cluster.backends).zip(&probes) {
        update_health(cluster, b, t, p, health);
    }
    let primary = cluster.primary().ok();
    let primary_lsn = primary.and_then(|i| probes[i].as_ref().ok()).map(|p| p.lsn);
    if let Some(lsn) = primary_lsn {
        cluster.primary_lsn.store(lsn, Relaxed);
        cluster.round_done.store(round_id, Relaxed);
    }
    for (b, p) in cluster.backends.iter().zip(&probes) {
        if let (Ok(p), Some(primary_lsn)) = (p, primary_lsn) {
            if p.in_recovery {
                update_lag(cluster, b, p, primary_lsn);
            }
        }
    }
}

fn update_health(
    cluster: &ClusterState,
    b: &BackendState,
    t: &mut Tracker,
    p: &Result<Probe, String>,
    h: &Health,
) {
    // A connection error on the statement path marks a backend down between rounds: start
    // counting rises from zero then.
    if t.believed_up && !b.is_up() {
        t.believed_up = false;
        t.ok = 0;
    }
    match p {
        Ok(p) => {
            t.failed = 0;
            t.ok = t.ok.saturating_add(1);
            let role = if p.in_recovery {
                Role::Replica
            } else {
                Role::Primary
            };
            let old = b.role();
            if old != role {
                b.role.store(role as u8, Relaxed);
                b.transitions.fetch_add(1, Relaxed);
                tracing::warn!(cluster = %cluster.name, backend = %b.addr, from = old.as_str(), to = role.as_str(), "backend role changed");
            }
            b.timeline.store(p.timeline, Relaxed);
            if role == Role::Primary {
                b.lsn.store(p.lsn, Relaxed);
                b.lag_bytes.store(0, Relaxed);
                b.lag_micros.store(0, Relaxed);
            }
            if !b.is_up() && t.ok >= h.rise {
                b.up.store(true, Relaxed);
                t.believed_up = true;
                b.transitions.fetch_add(1, Relaxed);
                tracing::info!(cluster = %cluster.name, backend = %b.addr, role = role.as_str(), "backend up");
            }
        }
        Err(e) => {
            t.ok = 0;
            t.failed = t.failed.saturating_add(1);
            if b.is_up() && t.failed >= h.fall {
                b.up.store(false, Relaxed);
                t.believed_up = false;
                b.transitions.fetch_add(1, Relaxed);
                tracing::warn!(cluster = %cluster.name, backend = %b.addr, error = %e, "backend down (health check)");
            }
        }
    }
}

fn update_lag(cluster: &ClusterState, b: &BackendState, p: &Probe, primary_lsn: u64) {
    let bytes = primary_lsn.saturating_sub(p.lsn);
    // Replay caught up with what was received: an idle primary is not lag.
    let secs = if p.receive_lsn >= 0 && p.receive_lsn as u64 == p.lsn {
        0.0
    } else {
        p.replay_age.max(0.0)
    };
    b.lsn.store(p.lsn, Relaxed);
    b.lag_bytes.store(bytes, Relaxed);
    b.lag_micros.store((secs * 1e6) as u64, Relaxed);
    let max = cluster.max_lag.as_secs_f64();
    let max_bytes = cluster.max_lag_bytes;
    let over = secs > max || (max_bytes > 0 && bytes > max_bytes);
    let well_under = secs * 2.0 <= max && (max_bytes == 0 || bytes * 2 <= max_bytes);
    if b.in_read_set() && over {
        b.in_read_set.store(false, Relaxed);
        b.transitions.fetch_add(1, Relaxed);
        tracing::warn!(cluster = %cluster.name, backend = %b.addr, lag_secs = secs, lag_bytes = bytes, "replica left the read set (lagging)");
    } else if !b.in_read_set() && well_under {
        b.in_read_set.store(true, Relaxed);
        b.transitions.fetch_add(1, Relaxed);
        tracing::info!(cluster = %cluster.name, backend = %b.addr, lag_secs = secs, lag_bytes = bytes, "replica back in the read set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_rows_parse() {
        let row: Vec<Option<String>> = ["t", "1000", "1200", "3.5", "1"]
            .iter()
            .map(|s| Some(s.to_string()))
            .collect();
        let p = parse_probe(&row).unwrap();
        assert!(p.in_recovery);
        assert_eq!((p.lsn, p.receive_lsn, p.timeline), (1000, 1200, 1));
        assert!(parse_probe(&row[..2]).is_none());
    }
}
