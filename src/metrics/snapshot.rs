//! Topology snapshots: what the owner of the live cluster state reports at scrape time, and
//! the saturation figure derived from it.

use serde::Serialize;

/// The live topology, read at scrape time and for `/status`.
pub trait TopologySource {
    fn snapshot(&self) -> Vec<ClusterSnapshot>;
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterSnapshot {
    /// The cluster's name: the same string sessions use for the `cluster` label.
    pub name: String,
    /// "postgres" or "mysql".
    pub protocol: &'static str,
    pub backends: Vec<BackendSnapshot>,
    /// Times more than one backend was seen accepting writes at once (split brain).
    pub split_brains: u64,
    /// With `server_login = "client"`: the users whose own pools have connections open now
    /// (summed over servers and workers), by name.
    pub users: Vec<UserPools>,
}

/// One user's server connections in a cluster whose servers see each client's own user.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct UserPools {
    pub user: String,
    /// Connections open (in use + idle).
    pub open: u64,
    pub idle: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BackendSnapshot {
    /// `host:port`, the `backend` label.
    pub addr: String,
    /// "primary", "replica" or "unknown".
    pub role: &'static str,
    pub up: bool,
    /// A replica within the lag limits (eligible for reads).
    pub in_read_set: bool,
    pub lag_seconds: f64,
    pub lag_bytes: u64,
    /// Statements running on this backend now.
    pub in_flight: u64,
    /// Health and read-set transitions since start.
    pub transitions: u64,
    /// Writable on an older timeline than another backend: no writes go to it.
    pub fenced: bool,
    /// Pool capacity for this backend, summed over workers.
    pub pool_size: u64,
    /// Connections open (in use + idle), summed over workers.
    pub pool_open: u64,
    /// Idle connections, summed over workers.
    pub pool_idle: u64,
    /// Multiplexed reads on this backend, summed over workers.
    pub multiplex: MuxStats,
}

/// What multiplexing did on one backend (PostgreSQL's multiplexed reads; README, "Multiplexed reads").
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct MuxStats {
    /// Statements answered through lanes.
    pub statements: u64,
    /// Batches written.
    pub batches: u64,
    /// Statements run again alone (their batch failed).
    pub reruns: u64,
    /// Lanes open now.
    pub lanes: u64,
}

impl std::ops::AddAssign for MuxStats {
    fn add_assign(&mut self, o: MuxStats) {
        self.statements += o.statements;
        self.batches += o.batches;
        self.reruns += o.reruns;
        self.lanes += o.lanes;
    }
}

impl BackendSnapshot {
    /// Connections checked out by clients now.
    pub fn pool_active(&self) -> u64 {
        self.pool_open.saturating_sub(self.pool_idle)
    }
}

impl ClusterSnapshot {
    /// Sum of the backends' pool sizes.
    pub fn pool_capacity(&self) -> u64 {
        self.backends.iter().map(|b| b.pool_size).sum()
    }
    /// Backend connections checked out now.
    pub fn pool_active(&self) -> u64 {
        self.backends.iter().map(|b| b.pool_active()).sum()
    }
}

/// The saturation formula (docs/metrics.md):
/// `(waiting clients + active backend connections) / total pool capacity`, where capacity
/// is the sum of every backend's pool size (up or not). 0 when the capacity is 0 and
/// nothing is in use. Above 1 means clients are queueing for connections.
pub fn saturation(cluster: &ClusterSnapshot, waiting_clients: u64) -> f64 {
    let used = (waiting_clients + cluster.pool_active()) as f64;
    match cluster.pool_capacity() {
        0 if used == 0.0 => 0.0,
        0 => used,
        cap => used / cap as f64,
    }
}
