//! Active health checks and lag monitoring. One task per cluster probes every backend each
//! `interval` over a persistent connection (one query gives role, position and timeline),
//! then updates the shared [`ClusterState`]: up/down with rise/fall counts, role and
//! timeline, who takes writes ([`ClusterState::elect_primary`]: a promoted replica is found
//! without a restart, a demoted primary that still runs is fenced), lag in bytes and time,
//! and read-set membership with hysteresis. Every transition is logged and counted. A probe
//! that misses its timeout counts as a failure but keeps running on its own task, so a slow
//! server is not also asked for a new connection; its late answer proves liveness only
//! (positions from it are not used for lag or read-your-writes).
//!
//! Lag is measured against the primary's own recent positions, not the age of the last
//! replayed commit: see [`super::lag`] for the definition and what happens while the primary
//! is not seen.
//!
//! The checker knows no protocol: a [`Prober`] (PostgreSQL: `pg::probe`) opens a connection
//! to a server and answers one [`Probe`] per round: whether the server takes writes, its
//! position (an opaque, monotonic number: bytes of WAL for PostgreSQL) and its timeline (an
//! epoch that grows when a replica is promoted), and for a replica whether its replication is
//! stalled (stopped: unbounded lag, out of the read set whatever the positions say).

use super::lag::{self, LagHistory};
use super::{BackendState, ClusterState, Role};
use crate::config::BackendAddr;
use crate::config::Health;
use crate::net::backend::SocketList;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How one protocol looks at its servers.
pub trait Prober: Clone + Send + Sync + 'static {
    /// An open, logged-in probe connection.
    type Conn: Send + 'static;
    /// Connect and log in to `addr` within `give_up`.
    fn connect(
        &self,
        addr: BackendAddr,
        give_up: Duration,
    ) -> impl Future<Output = Result<Self::Conn, String>> + Send;
    /// One probe on an open connection (dropped after an error).
    fn probe(
        &self,
        conn: &mut Self::Conn,
        give_up: Duration,
    ) -> impl Future<Output = Result<Probe, String>> + Send;
    /// Say the protocol's goodbye on a connection about to be dropped, without waiting (so
    /// the server does not log it as aborted).
    fn goodbye(&self, conn: &mut Self::Conn);
}

/// What one probe saw.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// The server replays another's changes (a replica) rather than taking writes.
    pub in_recovery: bool,
    /// Replayed position (replica) or current position (primary).
    pub lsn: u64,
    /// 0 when unknown.
    pub timeline: u64,
    /// A replica whose replication is stopped (MariaDB: a replication thread not running, or
    /// read-only with no replication at all): its lag is unbounded whatever its position, so
    /// it leaves the read set at once and comes back only when this is false again and its
    /// measured lag is under half of every limit. PostgreSQL's probe always says false (a
    /// replica cut from its primary ages through the position history instead).
    pub stalled: bool,
}

/// Probe state kept by the checker for one backend.
struct Tracker<C> {
    conn: Option<C>,
    /// A probe (connect and query) that did not answer within `timeout` and still runs:
    /// the next round waits for it instead of opening a new connection, so a server that is
    /// only slow (a saturated machine) is not made slower by reconnects.
    running: Option<Running<C>>,
    ok: u32,
    failed: u32,
    believed_up: bool,
}

impl<C> Default for Tracker<C> {
    fn default() -> Self {
        Tracker {
            conn: None,
            running: None,
            ok: 0,
            failed: 0,
            believed_up: false,
        }
    }
}

/// What the checker remembers across rounds about the cluster as a whole.
#[derive(Default)]
struct ClusterWatch {
    /// More than one reachable backend is writable: since when, and when it was last logged.
    split: Option<(Instant, Instant)>,
}

/// How often a split brain that persists is logged again.
const SPLIT_RELOG: Duration = Duration::from_secs(30);

/// A probe running on its own task; it gives the connection back when it ends.
struct Running<C> {
    task: tokio::task::JoinHandle<(Option<C>, Result<Probe, String>)>,
    since: std::time::Instant,
}

impl<C> Drop for Running<C> {
    /// A checker that stops (reload, shutdown) takes its probes with it.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one round learned of one backend.
#[derive(Debug)]
enum Seen {
    /// A probe sent in this round answered: health, role, positions and lag are current.
    Fresh(Probe),
    /// A probe from an earlier round answered late: the server is alive, but its positions
    /// are too old for lag or read-your-writes decisions.
    Late,
    Failed(String),
}

/// How long a probe may keep running across rounds before its connection is given up
/// (a server that stopped answering without closing the connection).
fn abandon_after(timeout: Duration) -> Duration {
    (timeout * 10).max(Duration::from_secs(10))
}

/// Probe `cluster` with `prober` until `shutdown`.
/// `sockets` are the proxy's connections to each backend (in `cluster.backends`' order):
/// those of a replica the probes mark down are ended (`[health] close_replica_connections`).
pub async fn run<P: Prober>(
    cluster: Arc<ClusterState>,
    prober: P,
    health: Health,
    sockets: Vec<Arc<SocketList>>,
    shutdown: CancellationToken,
) {
    let mut trackers: Vec<Tracker<P::Conn>> = cluster
        .backends
        .iter()
        .map(|_| Tracker {
            believed_up: true,
            ..Default::default()
        })
        .collect();
    let mut watch = ClusterWatch::default();
    let mut tick = tokio::time::interval(health.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        round(
            &cluster,
            &prober,
            &health,
            &sockets,
            &mut trackers,
            &mut watch,
        )
        .await;
    }
    // Stopped (shutdown, or a reload that replaced this checker): a probe still running gets
    // a moment to finish (then it is aborted with its connection), and the connections are
    // closed politely.
    futures_util::future::join_all(trackers.iter_mut().map(|t| async {
        if let Some(mut r) = t.running.take() {
            if let Ok(Ok((conn, _))) = tokio::time::timeout(SETTLE, &mut r.task).await {
                t.conn = conn;
            }
        }
        if let Some(c) = t.conn.as_mut() {
            prober.goodbye(c);
        }
    }))
    .await;
}

/// How long a stopping checker waits for a probe in flight.
const SETTLE: Duration = Duration::from_millis(200);

async fn probe<P: Prober>(
    t: &mut Tracker<P::Conn>,
    prober: P,
    addr: BackendAddr,
    timeout: Duration,
) -> Seen {
    let (mut running, fresh) = match t.running.take() {
        Some(r) => (r, false),
        None => {
            let conn = t.conn.take();
            let give_up = abandon_after(timeout);
            let task = tokio::spawn(run_probe(prober, conn, addr, give_up));
            let since = std::time::Instant::now();
            (Running { task, since }, true)
        }
    };
    match tokio::time::timeout(timeout, &mut running.task).await {
        Ok(Ok((conn, result))) => {
            t.conn = conn;
            match (result, fresh) {
                (Ok(p), true) => Seen::Fresh(p),
                (Ok(_), false) => Seen::Late,
                (Err(e), _) => Seen::Failed(e),
            }
        }
        Ok(Err(e)) => Seen::Failed(format!("probe task ended: {e}")),
        Err(_) => {
            let waited = running.since.elapsed();
            if waited >= abandon_after(timeout) {
                drop(running); // aborts the task, closing its connection
                Seen::Failed(format!("no answer for {waited:?}; connection given up"))
            } else {
                t.running = Some(running);
                Seen::Failed(format!("no answer within {timeout:?}"))
            }
        }
    }
}

/// Connect if needed, run the probe, give the connection back if it is still usable.
async fn run_probe<P: Prober>(
    prober: P,
    conn: Option<P::Conn>,
    addr: BackendAddr,
    give_up: Duration,
) -> (Option<P::Conn>, Result<Probe, String>) {
    let mut conn = match conn {
        Some(c) => c,
        None => match prober.connect(addr, give_up).await {
            Ok(c) => c,
            Err(e) => return (None, Err(e)),
        },
    };
    match prober.probe(&mut conn, give_up).await {
        Ok(p) => (Some(conn), Ok(p)),
        Err(e) => {
            prober.goodbye(&mut conn);
            (None, Err(e))
        }
    }
}

/// One round: probe all backends at once, then update the shared state.
async fn round<P: Prober>(
    cluster: &ClusterState,
    prober: &P,
    health: &Health,
    sockets: &[Arc<SocketList>],
    trackers: &mut [Tracker<P::Conn>],
    watch: &mut ClusterWatch,
) {
    let round_id = cluster.rounds_started.fetch_add(1, Relaxed) + 1;
    // Positions are read after this instant: the primary was at most at the position it
    // reports at this time, which makes the lag estimates err on the large side.
    let now = Instant::now();
    let probes = futures_util::future::join_all(
        trackers
            .iter_mut()
            .zip(&cluster.backends)
            .map(|(t, b)| probe(t, prober.clone(), b.addr, health.timeout)),
    )
    .await;
    for (i, ((t, b), p)) in trackers
        .iter_mut()
        .zip(&cluster.backends)
        .zip(&probes)
        .enumerate()
    {
        let unreachable = update_health(cluster, b, t, p, health);
        if unreachable && health.close_replica_connections && b.role() == Role::Replica {
            if let Some(list) = sockets.get(i) {
                let ended = list.end_all();
                tracing::warn!(cluster = %cluster.name, backend = %b.addr, connections = ended,
                    "replica unreachable: its connections closed (reads on them run again elsewhere)");
            }
        }
    }
    let primary = cluster.elect_primary();
    watch_split_brain(cluster, watch, primary);
    // Only a probe sent in this round may move read-your-writes forward: its position was
    // read after every commit that happened before the round started.
    let seen = primary.and_then(|i| match &probes[i] {
        Seen::Fresh(p) if !p.in_recovery => Some((i, p)),
        _ => None,
    });
    let mut history = cluster
        .lag_history
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((i, p)) = seen {
        cluster.primary_lsn.store(p.lsn, Relaxed);
        cluster.round_done.store(round_id, Relaxed);
        let b = &cluster.backends[i];
        history.record(
            b.addr,
            b.timeline(),
            p.lsn,
            now,
            lag::retention(cluster.max_lag),
        );
    }
    let primary_timeline = primary.map_or(0, |i| cluster.backends[i].timeline());
    for (b, p) in cluster.backends.iter().zip(&probes) {
        if let Seen::Fresh(p) = p {
            if p.in_recovery {
                update_lag(cluster, b, p, &history, primary_timeline, now);
            }
        }
    }
}

/// Log (loudly) and count a split brain: more than one reachable backend writable at once.
fn watch_split_brain(cluster: &ClusterState, watch: &mut ClusterWatch, primary: Option<usize>) {
    let writable: Vec<String> = cluster
        .backends
        .iter()
        .filter(|b| b.role() == Role::Primary && b.reachable.load(Relaxed))
        .map(|b| format!("{} (timeline {})", b.addr, b.timeline()))
        .collect();
    let writes_to = primary.map_or("none".to_string(), |i| cluster.backends[i].addr.to_string());
    let now = Instant::now();
    match (writable.len() > 1, watch.split) {
        (true, None) => {
            cluster.split_brains.fetch_add(1, Relaxed);
            tracing::error!(cluster = %cluster.name, writable = %writable.join(", "), writes_to = %writes_to, "split brain: more than one backend accepts writes");
            watch.split = Some((now, now));
        }
        (true, Some((since, logged))) if now.duration_since(logged) >= SPLIT_RELOG => {
            tracing::error!(cluster = %cluster.name, writable = %writable.join(", "), writes_to = %writes_to, for_secs = now.duration_since(since).as_secs(), "split brain persists: more than one backend accepts writes");
            watch.split = Some((since, now));
        }
        (false, Some((since, _))) => {
            tracing::warn!(cluster = %cluster.name, writes_to = %writes_to, after_secs = now.duration_since(since).as_secs(), "split brain over: one writable backend left");
            watch.split = None;
        }
        _ => {}
    }
}

/// Count the probe's outcome for backend `b`. Returns whether it made `b` unreachable (it
/// was reachable until now).
fn update_health<C>(
    cluster: &ClusterState,
    b: &BackendState,
    t: &mut Tracker<C>,
    p: &Seen,
    h: &Health,
) -> bool {
    let mut unreachable = false;
    // A connection error on the statement path marks a backend down between rounds: start
    // counting rises from zero then.
    if t.believed_up && !b.is_up() {
        t.believed_up = false;
        t.ok = 0;
    }
    match p {
        Seen::Fresh(_) | Seen::Late => {
            t.failed = 0;
            t.ok = t.ok.saturating_add(1);
            b.reachable.store(true, Relaxed);
            if let Seen::Fresh(p) = p {
                update_role(cluster, b, p);
            }
            if !b.is_up() && t.ok >= h.rise {
                b.up.store(true, Relaxed);
                t.believed_up = true;
                b.transitions.fetch_add(1, Relaxed);
                tracing::info!(cluster = %cluster.name, backend = %b.addr, role = b.role().as_str(), "backend up");
            }
        }
        Seen::Failed(e) => {
            t.ok = 0;
            t.failed = t.failed.saturating_add(1);
            if t.failed >= h.fall {
                unreachable = b.reachable.swap(false, Relaxed);
            }
            if b.is_up() && t.failed >= h.fall {
                b.up.store(false, Relaxed);
                t.believed_up = false;
                b.transitions.fetch_add(1, Relaxed);
                tracing::warn!(cluster = %cluster.name, backend = %b.addr, error = %e, "backend down (health check)");
            }
        }
    }
    unreachable
}

/// Role, timeline and (for a primary) position from a current probe.
fn update_role(cluster: &ClusterState, b: &BackendState, p: &Probe) {
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
    // An unknown timeline (0) does not erase a known one.
    if p.timeline != 0 {
        b.timeline.store(p.timeline, Relaxed);
    }
    if role == Role::Primary {
        cluster.saw_writable_timeline(p.timeline);
        b.lsn.store(p.lsn, Relaxed);
        b.lag_bytes.store(0, Relaxed);
        b.lag_micros.store(0, Relaxed);
    }
}

/// Lag of a replica from a current probe, against the primary's history (see [`super::lag`]),
/// and read-set membership: it leaves over a limit (or at once when its replication is
/// stalled: unbounded lag) and returns under half of every limit.
fn update_lag(
    cluster: &ClusterState,
    b: &BackendState,
    p: &Probe,
    history: &LagHistory,
    primary_timeline: u64,
    now: Instant,
) {
    b.lsn.store(p.lsn, Relaxed);
    let older_timeline = p.timeline != 0 && primary_timeline != 0 && p.timeline < primary_timeline;
    let lag = history.lag(p.lsn, older_timeline, now);
    if let Some(lag) = lag {
        b.lag_bytes.store(lag.bytes, Relaxed);
        b.lag_micros
            .store(lag.time.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }
    let (secs, bytes) = lag.map_or((0.0, 0), |l| (l.time.as_secs_f64(), l.bytes));
    let max = cluster.max_lag.as_secs_f64();
    let max_bytes = cluster.max_lag_bytes;
    let (over, well_under) = match lag {
        // Replication stopped: unbounded lag, whatever the positions say.
        _ if p.stalled => (true, false),
        // No primary position seen yet: nothing to measure against; membership stays.
        None => return,
        Some(_) => (
            secs > max || (max_bytes > 0 && bytes > max_bytes),
            secs * 2.0 <= max && (max_bytes == 0 || bytes * 2 <= max_bytes),
        ),
    };
    if b.in_read_set() && over {
        b.in_read_set.store(false, Relaxed);
        b.transitions.fetch_add(1, Relaxed);
        if p.stalled {
            tracing::warn!(cluster = %cluster.name, backend = %b.addr, lag_secs = secs, lag_bytes = bytes, "replica left the read set (replication stopped)");
        } else {
            tracing::warn!(cluster = %cluster.name, backend = %b.addr, lag_secs = secs, lag_bytes = bytes, older_timeline, "replica left the read set (lagging)");
        }
    } else if !b.in_read_set() && well_under {
        b.in_read_set.store(true, Relaxed);
        b.transitions.fetch_add(1, Relaxed);
        tracing::info!(cluster = %cluster.name, backend = %b.addr, lag_secs = secs, lag_bytes = bytes, "replica back in the read set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ClusterState {
        let text = "[[cluster]]\nname = \"c\"\ndatabase = \"d\"\nprimary = \"127.0.0.1:1\"\n\
                    user = \"u\"\nreplicas = [\"127.0.0.1:2\"]\nmax_lag = \"10s\"\n";
        let cfg = crate::config::Config::from_toml(text).unwrap();
        ClusterState::new(&cfg.clusters[0]).unwrap()
    }

    #[test]
    fn a_stalled_replica_leaves_the_read_set_whatever_its_positions() {
        let s = state();
        let (primary, b) = (&s.backends[0], &s.backends[1]);
        let t0 = Instant::now();
        let probe = |stalled| Probe {
            in_recovery: true,
            lsn: 100,
            timeline: 0,
            stalled,
        };
        let mut h = LagHistory::default();
        // No primary position yet: a running replica keeps its membership, a stalled one
        // leaves.
        update_lag(&s, b, &probe(false), &h, 0, t0);
        assert!(b.in_read_set());
        update_lag(&s, b, &probe(true), &h, 0, t0);
        assert!(!b.in_read_set());
        // An idle primary at the replica's position: zero lag, still out while stalled.
        h.record(primary.addr, 0, 100, t0, Duration::from_secs(20));
        update_lag(&s, b, &probe(true), &h, 0, t0);
        assert!(!b.in_read_set());
        assert_eq!((b.lag(), b.lag_bytes()), (Duration::ZERO, 0));
        // Replication runs again and the replica has the primary's position: back.
        update_lag(&s, b, &probe(false), &h, 0, t0);
        assert!(b.in_read_set());
    }
}
