//! Topology as the proxy sees it: which backend is the primary, which replicas are up and
//! not lagging, and how many statements each is running. Written by the health checker
//! ([`health`]) and by sessions on connection errors; read by sessions to pick a backend.
//! Protocol-neutral: nothing here knows PostgreSQL or MySQL.
//!
//! Fields read on the statement path are atomics, so a lookup there takes no lock.
//!
//! **Who takes writes** is decided by the health checker's probes only
//! ([`ClusterState::elect_primary`]), never by a failed statement-path connection: among the
//! backends the probes last saw writable (not in recovery), the one on the newest timeline;
//! then one the probes can reach; then the current primary (no change without a reason);
//! then the lowest index. Timelines only move forward: once a writable backend has been seen
//! on timeline N, a backend seen writable on an older timeline is *fenced* (a demoted primary
//! still running after a replica was promoted: split brain) and gets no writes again, until
//! the proxy restarts or a reload changes the list of backends. A connection error on the
//! statement path marks a backend down for reads ([`BackendState::mark_failed`]) but does not
//! move the primary role.

pub mod health;
pub mod lag;
pub mod pause;

use crate::config::BackendAddr;
use crate::config::{Cluster, Consistency, Fallback};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// A backend's role as last detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Unknown = 0,
    Primary = 1,
    Replica = 2,
}

impl Role {
    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::Primary,
            2 => Role::Replica,
            _ => Role::Unknown,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// One server of a cluster.
#[derive(Debug)]
pub struct BackendState {
    pub addr: BackendAddr,
    pub weight: u32,
    up: AtomicBool,
    /// The health probes reach it: false after `fall` failed probes in a row, true again at
    /// the next answer. Unlike `up`, statement-path errors do not change it.
    reachable: AtomicBool,
    role: AtomicU8,
    /// Timeline: of the current WAL position on a writable backend, of the WAL received (or
    /// the last checkpoint) on a replica; 0 while unknown. Tells a promoted replica from an
    /// old primary that still runs.
    timeline: AtomicU64,
    /// Writable on an older timeline than another backend was seen writable on: never
    /// chosen for writes.
    fenced: AtomicBool,
    /// Replica within the lag limits (with hysteresis).
    in_read_set: AtomicBool,
    lag_bytes: AtomicU64,
    lag_micros: AtomicU64,
    /// Last replayed WAL position (replicas), or current position (primary).
    lsn: AtomicU64,
    /// Statements running on this backend now, over all workers (each adds to its own
    /// shard: a shared atomic here would move between cores on every statement, and with it
    /// the line the fields above are read from).
    outstanding: crate::metrics::sharded::ShardedU64,
    /// Counters for introspection.
    pub transitions: AtomicU64,
}

impl BackendState {
    fn new(addr: BackendAddr, weight: u32, role: Role) -> Self {
        BackendState {
            addr,
            weight: weight.max(1),
            up: AtomicBool::new(true),
            reachable: AtomicBool::new(true),
            role: AtomicU8::new(role as u8),
            timeline: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
            in_read_set: AtomicBool::new(true),
            lag_bytes: AtomicU64::new(0),
            lag_micros: AtomicU64::new(0),
            lsn: AtomicU64::new(0),
            outstanding: Default::default(),
            transitions: AtomicU64::new(0),
        }
    }
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }
    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Relaxed))
    }
    pub fn in_read_set(&self) -> bool {
        self.in_read_set.load(Relaxed)
    }
    /// Timeline last seen (0: unknown).
    pub fn timeline(&self) -> u64 {
        self.timeline.load(Relaxed)
    }
    /// A demoted primary still writable (see the module doc): no writes go to it.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Relaxed)
    }
    pub fn lag_bytes(&self) -> u64 {
        self.lag_bytes.load(Relaxed)
    }
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag_micros.load(Relaxed))
    }
    pub fn lsn(&self) -> u64 {
        self.lsn.load(Relaxed)
    }
    pub fn outstanding(&self) -> u64 {
        self.outstanding.level()
    }
    pub fn begin(&self) {
        self.outstanding.add(1);
    }
    pub fn end(&self) {
        self.outstanding.sub(1);
    }
    /// One statement outstanding while the guard lives.
    pub(crate) fn running(&self) -> crate::metrics::sharded::Held<'_> {
        self.outstanding.hold()
    }
    /// A session starts holding a connection here for a statement routed for `reason`: it
    /// counts as outstanding (until [`BackendState::end`]) and as routed in `metrics`. The
    /// `route` label and the start, for the statement's duration when the hold ends. Both
    /// protocols' sessions go through this.
    pub fn hold(
        &self,
        metrics: &crate::metrics::ClusterMetrics,
        cache: &mut crate::metrics::RoutedCache,
        reason: &'static str,
    ) -> (&'static str, std::time::Instant) {
        self.begin();
        let route = self.route_label();
        metrics.routed_cached(cache, route, reason);
        (route, std::time::Instant::now())
    }
    /// The end of a [`BackendState::hold`]: no longer outstanding; the hold's duration
    /// (labelled `route`, begun `since`) and the bytes it moved go to `metrics`.
    pub fn let_go(
        &self,
        metrics: &crate::metrics::ClusterMetrics,
        route: &'static str,
        since: std::time::Instant,
        (up, down): (u64, u64),
    ) {
        self.end();
        metrics.statement(route, since.elapsed());
        metrics.bytes(up, down);
    }
    /// The `route` metrics label of statements run here.
    pub fn route_label(&self) -> &'static str {
        if self.role() == Role::Replica {
            crate::metrics::ROUTE_REPLICA
        } else {
            crate::metrics::ROUTE_PRIMARY
        }
    }

    /// Take over the health view of `old` (the same server in the previous config).
    pub fn inherit(&self, old: &BackendState) {
        self.up.store(old.up.load(Relaxed), Relaxed);
        self.reachable.store(old.reachable.load(Relaxed), Relaxed);
        self.role.store(old.role.load(Relaxed), Relaxed);
        self.timeline.store(old.timeline.load(Relaxed), Relaxed);
        self.fenced.store(old.fenced.load(Relaxed), Relaxed);
        self.in_read_set
            .store(old.in_read_set.load(Relaxed), Relaxed);
        self.lag_bytes.store(old.lag_bytes.load(Relaxed), Relaxed);
        self.lag_micros.store(old.lag_micros.load(Relaxed), Relaxed);
        self.lsn.store(old.lsn.load(Relaxed), Relaxed);
        self.transitions
            .store(old.transitions.load(Relaxed), Relaxed);
    }

    /// A connection to this backend failed on the statement path: down at once for reads
    /// (until `rise` probes succeed). Which backend takes writes does not change: that is the
    /// probes' decision alone (one terminated connection must not hand the primary role to
    /// another server).
    pub fn mark_failed(&self, why: &str) {
        if self.up.swap(false, Relaxed) {
            self.transitions.fetch_add(1, Relaxed);
            tracing::warn!(backend = %self.addr, reason = why, "backend marked down (connection error)");
        }
    }
}

/// Why no backend could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("no primary is up")]
    NoPrimary,
    #[error("no replica is up and within the lag limits, and fallback = \"error\"")]
    NoReplica,
}

/// What the client wants a backend for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Primary,
    /// A read; `min_lsn` is the read-your-writes floor, if any.
    Replica {
        min_lsn: Option<u64>,
    },
}

/// The live state of one cluster, shared by all workers.
#[derive(Debug)]
pub struct ClusterState {
    pub name: String,
    /// Index 0 is the configured primary, then the configured replicas in order.
    pub backends: Vec<BackendState>,
    /// Reads may go to replicas: `read_write_split` and at least one replica configured.
    /// Without replicas nothing is classified (there is nowhere else to send a read).
    pub split: bool,
    pub max_lag: Duration,
    pub max_lag_bytes: u64,
    pub fallback: Fallback,
    pub consistency: Consistency,
    /// Health rounds started, and the last one finished with its primary position.
    rounds_started: AtomicU64,
    round_done: AtomicU64,
    primary_lsn: AtomicU64,
    /// The backend that takes writes (`usize::MAX`: none), chosen by [`Self::elect_primary`].
    primary_idx: AtomicUsize,
    /// Newest timeline the probes saw on a writable backend; older writable ones are fenced.
    max_timeline: AtomicU64,
    /// Times more than one reachable backend was seen writable at once (split brain).
    pub split_brains: AtomicU64,
    /// The primary's recent positions, for replica lag (written by the health checker only).
    pub(crate) lag_history: Mutex<lag::LagHistory>,
    /// Spreads ties between equally loaded replicas.
    tie: AtomicUsize,
    /// PAUSE/RESUME (shared with the cluster's later generations, see [`pause`]).
    pub pause: std::sync::Arc<pause::Pause>,
}

impl ClusterState {
    /// The index of the backend at `addr` (after a reload, one at the same address).
    pub fn index_of(&self, addr: crate::config::BackendAddr) -> Option<usize> {
        self.backends.iter().position(|b| b.addr == addr)
    }

    pub fn new(c: &Cluster) -> Result<ClusterState, String> {
        let mut backends = vec![BackendState::new(
            crate::config::parse_backend_addr(&c.primary)?,
            1,
            Role::Primary,
        )];
        for r in &c.replicas {
            backends.push(BackendState::new(
                crate::config::parse_backend_addr(r.addr())?,
                r.weight(),
                Role::Replica,
            ));
        }
        Ok(ClusterState {
            name: c.name.clone(),
            backends,
            split: c.read_write_split && !c.replicas.is_empty(),
            max_lag: c.max_lag,
            max_lag_bytes: c.max_lag_bytes,
            fallback: c.fallback,
            consistency: c.consistency,
            rounds_started: AtomicU64::new(0),
            round_done: AtomicU64::new(0),
            primary_lsn: AtomicU64::new(0),
            primary_idx: AtomicUsize::new(0),
            max_timeline: AtomicU64::new(0),
            split_brains: AtomicU64::new(0),
            lag_history: Mutex::new(lag::LagHistory::default()),
            tie: AtomicUsize::new(0),
            pause: Default::default(),
        })
    }

    /// After a reload: keep the health view of backends whose address stays, the
    /// health-round counters read-your-writes waits on, the primary's position history and
    /// the current primary. The newest timeline seen (the fence of demoted primaries) is kept
    /// only if the list of backends did not change.
    pub fn inherit(&self, old: &ClusterState) {
        for b in &self.backends {
            if let Some(o) = old.backends.iter().find(|o| o.addr == b.addr) {
                b.inherit(o);
            }
        }
        self.rounds_started
            .store(old.rounds_started.load(Relaxed), Relaxed);
        self.round_done.store(old.round_done.load(Relaxed), Relaxed);
        self.primary_lsn
            .store(old.primary_lsn.load(Relaxed), Relaxed);
        let same = self.backends.len() == old.backends.len()
            && self
                .backends
                .iter()
                .zip(&old.backends)
                .all(|(a, b)| a.addr == b.addr);
        if same {
            self.max_timeline
                .store(old.max_timeline.load(Relaxed), Relaxed);
        }
        self.split_brains
            .store(old.split_brains.load(Relaxed), Relaxed);
        let history = old.lag_history.lock().unwrap_or_else(|p| p.into_inner());
        *self.lag_history.lock().unwrap_or_else(|p| p.into_inner()) = history.clone();
        drop(history);
        let old_primary = old
            .backends
            .get(old.primary_idx.load(Relaxed))
            .map(|b| b.addr);
        let current = old_primary.and_then(|a| self.index_of(a));
        self.primary_idx
            .store(current.unwrap_or(usize::MAX), Relaxed);
        self.elect_primary();
    }

    /// The backend to send writes to, as last chosen by [`Self::elect_primary`].
    pub fn primary(&self) -> Result<usize, SelectError> {
        match self.primary_idx.load(Relaxed) {
            i if i < self.backends.len() => Ok(i),
            _ => Err(SelectError::NoPrimary),
        }
    }

    /// A probe saw `timeline` on a writable backend: older writable ones are fenced from now.
    pub(crate) fn saw_writable_timeline(&self, timeline: u64) {
        self.max_timeline.fetch_max(timeline, Relaxed);
    }

    /// Choose the backend that takes writes from the roles and timelines the probes saw (see
    /// the module doc), mark demoted primaries fenced, and log every change. Called by the
    /// health checker after each round; nothing on the statement path changes the choice.
    pub fn elect_primary(&self) -> Option<usize> {
        let newest = self.max_timeline.load(Relaxed);
        let current = self.primary_idx.load(Relaxed);
        let mut best: Option<((u64, bool, bool), usize)> = None;
        for (i, b) in self.backends.iter().enumerate() {
            let writable = b.role() == Role::Primary;
            let tl = b.timeline();
            // Timeline 0: not known yet (before the first probe); such a backend is not
            // fenced, but any backend with a known timeline beats it.
            let fenced = writable && tl != 0 && tl < newest;
            if b.fenced.swap(fenced, Relaxed) != fenced {
                b.transitions.fetch_add(1, Relaxed);
                if fenced {
                    tracing::error!(cluster = %self.name, backend = %b.addr, timeline = tl, newest_timeline = newest, "backend fenced: writable on an older timeline than another backend (demoted primary still running?); no writes will go to it");
                } else {
                    tracing::warn!(cluster = %self.name, backend = %b.addr, role = b.role().as_str(), timeline = tl, "backend no longer fenced");
                }
            }
            if writable && !fenced {
                let key = (tl, b.reachable.load(Relaxed), i == current);
                if best.is_none_or(|(k, _)| key > k) {
                    best = Some((key, i));
                }
            }
        }
        let chosen = best
            .map(|(_, i)| i)
            .or_else(|| (self.backends[0].role() == Role::Unknown).then_some(0));
        let new = chosen.unwrap_or(usize::MAX);
        if current != new {
            self.primary_idx.store(new, Relaxed);
            let addr = |i: usize| self.backends.get(i).map(|b| b.addr.to_string());
            let (from, to) = (addr(current), addr(new));
            match to {
                Some(to) => {
                    tracing::warn!(cluster = %self.name, from = from.as_deref().unwrap_or("none"), to = %to, timeline = self.backends[new].timeline(), "writes now go to another backend")
                }
                None => {
                    tracing::error!(cluster = %self.name, from = from.as_deref().unwrap_or("none"), "no backend is writable: writes fail until one is")
                }
            }
        }
        chosen
    }

    /// A checkout's common case, with no wait: the cluster not paused (its hold), the backend
    /// `want` selects (its index), and what `take` finds at once in that backend's pool.
    /// `None` for anything else: the session then takes its async way, which starts over.
    pub fn take_at_once<T>(
        &self,
        want: Want,
        take: impl FnOnce(usize) -> Option<T>,
    ) -> Option<(T, usize, pause::Hold)> {
        let hold = self.pause.try_hold()?;
        let idx = self.select(want, None).ok()?;
        Some((take(idx)?, idx, hold))
    }

    /// Pick a backend for `want`: weighted least-outstanding among eligible replicas, ties
    /// spread round-robin; `exclude` skips a backend that just failed.
    pub fn select(&self, want: Want, exclude: Option<usize>) -> Result<usize, SelectError> {
        let Want::Replica { min_lsn } = want else {
            return self.primary();
        };
        if !self.split {
            return self.primary();
        }
        // Lowest outstanding-per-weight wins; equal ones (e.g. all idle) share reads in
        // proportion to their weights.
        let eligible = |i: usize, b: &BackendState| {
            Some(i) != exclude
                && b.is_up()
                && b.role() == Role::Replica
                && b.in_read_set()
                && min_lsn.is_none_or(|m| b.lsn() >= m)
        };
        let score = |b: &BackendState| (b.outstanding() << 16) / b.weight as u64;
        // One pass, each count read once (other workers move them meanwhile): weighted
        // reservoir choice among those at the lowest score seen so far.
        let seed = spread(self.tie.fetch_add(1, Relaxed) as u64);
        let mut min = u64::MAX;
        let mut tie_weight = 0u64;
        let mut best = None;
        for (i, b) in self.backends.iter().enumerate() {
            if !eligible(i, b) {
                continue;
            }
            let s = score(b);
            let w = b.weight as u64;
            if s < min {
                min = s;
                tie_weight = w;
                best = Some(((), i));
            } else if s == min {
                tie_weight += w;
                if spread(seed.wrapping_add(i as u64)) % tie_weight < w {
                    best = Some(((), i));
                }
            }
        }
        match (best, self.fallback) {
            (Some((_, i)), _) => Ok(i),
            (None, Fallback::Primary) => self.primary(),
            (None, Fallback::Error) => Err(SelectError::NoReplica),
        }
    }

    /// For read-your-writes: the health round that must finish before the position it sees
    /// on the primary can be used as this client's floor.
    pub fn round_after_now(&self) -> u64 {
        self.rounds_started.load(Relaxed) + 1
    }

    /// The primary's position seen by a round at or after `round`, once one finished.
    pub fn primary_lsn_since(&self, round: u64) -> Option<u64> {
        (self.round_done.load(Relaxed) >= round).then(|| self.primary_lsn.load(Relaxed))
    }
}

/// A cheap, well-mixed function of a counter (splitmix64), to spread ties.
fn spread(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[(&str, u32)]) -> ClusterState {
        let text = format!(
            "[[cluster]]\nname = \"c\"\ndatabase = \"d\"\nprimary = \"127.0.0.1:1\"\nuser = \"u\"\nreplicas = [{}]\n",
            replicas
                .iter()
                .map(|(a, w)| format!("{{ addr = \"{a}\", weight = {w} }}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let cfg = crate::config::Config::from_toml(&text).unwrap();
        ClusterState::new(&cfg.clusters[0]).unwrap()
    }

    #[test]
    fn reads_spread_over_replicas_and_skip_down_or_lagging_ones() {
        let s = state(&[("127.0.0.1:2", 1), ("127.0.0.1:3", 1)]);
        let mut counts = [0; 3];
        for _ in 0..100 {
            counts[s.select(Want::Replica { min_lsn: None }, None).unwrap()] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(counts[1] >= 40 && counts[2] >= 40, "{counts:?}");
        s.backends[1].mark_failed("test");
        assert_eq!(s.select(Want::Replica { min_lsn: None }, None).unwrap(), 2);
        s.backends[2].in_read_set.store(false, Relaxed);
        assert_eq!(
            s.select(Want::Replica { min_lsn: None }, None).unwrap(),
            0,
            "fallback to primary"
        );
    }

    #[test]
    fn weights_and_load_steer_reads() {
        let s = state(&[("127.0.0.1:2", 1), ("127.0.0.1:3", 3)]);
        let mut counts = [0; 3];
        for _ in 0..100 {
            let i = s.select(Want::Replica { min_lsn: None }, None).unwrap();
            counts[i] += 1;
        }
        // Idle: shares follow weights (1:3).
        assert!(
            counts[1] >= 10 && counts[1] <= 45 && counts[2] >= 55,
            "{counts:?}"
        );
        // Loaded: the lowest outstanding per weight wins.
        s.backends[1].begin();
        assert_eq!(s.select(Want::Replica { min_lsn: None }, None).unwrap(), 2);
        for _ in 0..4 {
            s.backends[2].begin();
        }
        assert_eq!(
            s.select(Want::Replica { min_lsn: None }, None).unwrap(),
            1,
            "4/3 > 1/1"
        );
    }

    /// What a probe round would record: role and timeline of backend `i`.
    fn seen(s: &ClusterState, i: usize, role: Role, timeline: u64) {
        s.backends[i].role.store(role as u8, Relaxed);
        s.backends[i].timeline.store(timeline, Relaxed);
        if role == Role::Primary {
            s.saw_writable_timeline(timeline);
        }
    }

    #[test]
    fn promoted_replica_becomes_primary() {
        let s = state(&[("127.0.0.1:2", 1)]);
        assert_eq!(s.primary().unwrap(), 0);
        s.backends[0].mark_failed("gone");
        s.backends[0].reachable.store(false, Relaxed);
        seen(&s, 1, Role::Primary, 2);
        s.elect_primary();
        assert_eq!(s.primary().unwrap(), 1);
        assert_eq!(s.select(Want::Replica { min_lsn: None }, None).unwrap(), 1);
    }

    #[test]
    fn a_demoted_primary_that_still_runs_never_takes_writes_again() {
        let s = state(&[("127.0.0.1:2", 1), ("127.0.0.1:3", 1)]);
        seen(&s, 0, Role::Primary, 1);
        seen(&s, 1, Role::Replica, 1);
        seen(&s, 2, Role::Replica, 1);
        assert_eq!(s.elect_primary(), Some(0));
        // Split brain: 1 is promoted, 0 keeps running and writable on timeline 1.
        seen(&s, 1, Role::Primary, 2);
        assert_eq!(s.elect_primary(), Some(1));
        assert!(s.backends[0].is_fenced() && !s.backends[1].is_fenced());
        // A terminated connection marks the new primary down: writes stay with it.
        s.backends[1].mark_failed("terminated");
        assert_eq!(s.elect_primary(), Some(1));
        assert_eq!(s.primary(), Ok(1));
        // Even unreachable, it is not replaced by the fenced one.
        s.backends[1].reachable.store(false, Relaxed);
        assert_eq!(s.elect_primary(), Some(1));
        // Fallback reads never go to the fenced primary either.
        s.backends[2].mark_failed("gone");
        assert_eq!(s.select(Want::Replica { min_lsn: None }, None), Ok(1));
        // Rebuilt as a replica of the new primary, it serves reads and is no longer fenced.
        seen(&s, 0, Role::Replica, 2);
        s.elect_primary();
        assert!(!s.backends[0].is_fenced());
        assert_eq!(s.select(Want::Replica { min_lsn: None }, None), Ok(0));
    }

    #[test]
    fn equal_timelines_prefer_reachable_then_current() {
        let s = state(&[("127.0.0.1:2", 1), ("127.0.0.1:3", 1)]);
        seen(&s, 0, Role::Replica, 1);
        seen(&s, 2, Role::Primary, 2);
        assert_eq!(s.elect_primary(), Some(2));
        // Another replica of the same old primary promoted too: same timeline; the current
        // primary keeps the role.
        seen(&s, 1, Role::Primary, 2);
        assert_eq!(s.elect_primary(), Some(2));
        // Unless the probes cannot reach it.
        s.backends[2].reachable.store(false, Relaxed);
        assert_eq!(s.elect_primary(), Some(1));
        s.backends[2].reachable.store(true, Relaxed);
        assert_eq!(s.elect_primary(), Some(1));
    }

    #[test]
    fn a_reload_keeps_the_fence_unless_the_backends_change() {
        let s = state(&[("127.0.0.1:2", 1)]);
        seen(&s, 0, Role::Primary, 1);
        seen(&s, 1, Role::Primary, 2);
        assert_eq!(s.elect_primary(), Some(1));
        let same = state(&[("127.0.0.1:2", 1)]);
        same.inherit(&s);
        assert_eq!(same.primary(), Ok(1));
        assert!(same.backends[0].is_fenced());
        // Backend 1 removed: the fence goes with it.
        let other = state(&[("127.0.0.1:3", 1)]);
        other.inherit(&s);
        assert_eq!(other.primary(), Ok(0));
        assert!(!other.backends[0].is_fenced());
    }

    #[test]
    fn read_your_writes_floor_excludes_replicas_behind_it() {
        let s = state(&[("127.0.0.1:2", 1)]);
        s.backends[1].lsn.store(100, Relaxed);
        assert_eq!(
            s.select(Want::Replica { min_lsn: Some(100) }, None)
                .unwrap(),
            1
        );
        assert_eq!(
            s.select(Want::Replica { min_lsn: Some(101) }, None)
                .unwrap(),
            0
        );
    }
}

/// One client's read-your-writes floor: after a write of its commits, its reads may go only
/// to replicas that replayed past the primary's position the health checker saw after the
/// write. The position is learned from the checker's next round (no extra round trip).
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadYourWrites {
    /// The health round whose primary position the client must wait for.
    round: Option<u64>,
    /// The highest position any of its writes requires.
    floor: Option<u64>,
}

impl ReadYourWrites {
    /// The client let go of a connection it wrote on.
    pub fn wrote(&mut self, state: &ClusterState) {
        if state.consistency == Consistency::ReadYourWrites {
            self.round = Some(state.round_after_now());
        }
    }

    /// `Some(floor)` when a replica may serve the client's read now (floor: the position it
    /// must have replayed, if any); `None` when the read must go to the primary (the
    /// position after the client's last write is not known yet).
    pub fn min_position(&mut self, state: &ClusterState) -> Option<Option<u64>> {
        if let Some(round) = self.round {
            let lsn = state.primary_lsn_since(round)?;
            self.floor = Some(self.floor.map_or(lsn, |f| f.max(lsn)));
            self.round = None;
        }
        Some(self.floor)
    }

    /// The floor known so far (for a retry elsewhere).
    pub fn floor(&self) -> Option<u64> {
        self.floor
    }
}
