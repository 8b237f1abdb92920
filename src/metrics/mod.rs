//! One typed metrics registry for the whole process, built once and passed around as
//! `Arc<Metrics>` (no globals). `docs/metrics.md` lists every metric.
//!
//! Two kinds of series:
//! - recorded as things happen (routing decisions, waits, statement times, errors, bytes,
//!   client counts, reloads): sessions record them, preferably through a
//!   [`ClusterMetrics`] handle created once per cluster and worker, whose fields are
//!   pre-resolved metric handles (one uncontended atomic add per event, no label hashing);
//! - copied from the live topology at scrape time (backend up/role, lag, pool occupancy,
//!   transitions, saturation): [`Metrics::encode`] takes a [`TopologySource`] and sets those
//!   gauges from its snapshot just before encoding, so removed backends disappear.
//!
//! Histograms are our own lock-free type ([`Histo`]): prometheus-client's histogram takes a
//! write lock per observation, which worker threads would contend on.

mod histogram;
pub mod queries;
pub mod sharded;
mod snapshot;

mod cluster;
mod edge;
mod encode;
mod labels;
pub use cluster::{ClusterMetrics, GaugeGuard, RoutedCache};
pub use edge::{EdgeMetrics, RouteMetrics, ServerMetrics, UpstreamMetrics};
pub use encode::Format;
pub use histogram::Histo;
use histogram::{checkout_histo, statement_histo};
pub use labels::Lv;
use labels::*;
pub use snapshot::*;

type HistoFamily<S> = Family<S, Histo, fn() -> Histo>;
type FloatGauge = Gauge<f64, AtomicU64>;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sharded::Counter;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Upper bounds (seconds) of `switchyard_checkout_wait_seconds`: 50 µs .. 10 s.
pub const CHECKOUT_WAIT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of `switchyard_statement_duration_seconds`: 50 µs .. 60 s.
pub const STATEMENT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Route label values.
pub const ROUTE_PRIMARY: &str = "primary";
pub const ROUTE_REPLICA: &str = "replica";

/// Error kinds used by the proxy (`switchyard_errors_total{kind}`); other `&'static str`
/// kinds are accepted too, but add them to docs/metrics.md.
pub mod kind {
    /// No pooled connection became free within `checkout_timeout`.
    pub const CHECKOUT_TIMEOUT: &str = "checkout_timeout";
    /// Opening a backend connection failed (refused, timeout, backend auth).
    pub const CONNECT: &str = "connect";
    /// A backend connection broke while in use.
    pub const BACKEND_LOST: &str = "backend_lost";
    /// A client sent something malformed or out of order.
    pub const CLIENT_PROTOCOL: &str = "client_protocol";
    /// A client failed authentication.
    pub const AUTH_FAILED: &str = "auth_failed";
    /// Asking the servers about a user the config does not name (`auth_query`) failed: the
    /// primary down, the auth user refused, the query wrong. Users seen before still log in.
    pub const AUTH_QUERY: &str = "auth_query";
    /// A read found no eligible replica and fallback = "error".
    pub const NO_REPLICA: &str = "no_replica";
    /// No primary is up.
    pub const NO_PRIMARY: &str = "no_primary";
    /// The client connection limit was reached.
    pub const CLIENT_LIMIT: &str = "client_limit";
    /// A client took nothing of its results for `client_write_timeout` and was
    /// disconnected.
    pub const CLIENT_WRITE_TIMEOUT: &str = "client_write_timeout";
    /// A statement ran past `[pool] query_timeout` and was stopped on its server.
    pub const QUERY_TIMEOUT: &str = "query_timeout";
    /// A read failed on a replica before any byte reached the client and was retried.
    pub const REPLICA_RETRY: &str = "replica_retry";
    /// A multiplexed read's shared connection failed before its answer arrived; the read ran
    /// again on a connection of its own.
    pub const MULTIPLEX_FALLBACK: &str = "multiplex_fallback";
}

// ---------------------------------------------------------------------------------------
// The registry

/// All metrics of the process. Build one with [`Metrics::new`], share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    /// Serializes scrapes: they clear and refill the topology gauges.
    scrape: Mutex<()>,
    started: f64,

    // Recorded as things happen.
    clients: Family<ClusterStateLabels, Gauge>,
    checkout_wait: HistoFamily<ClusterLabels>,
    statement: HistoFamily<RouteLabels>,
    routed: Family<RoutedLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    last_reload_success: FloatGauge,
    last_reload_ok: Gauge,

    // Copied from the topology at scrape time.
    backend_conns: Family<BackendStateLabels, Gauge>,
    backend_open: Family<BackendLabels, Gauge>,
    pool_capacity: Family<BackendLabels, Gauge>,
    backend_up: Family<BackendRoleLabels, Gauge>,
    in_read_set: Family<BackendLabels, Gauge>,
    lag_seconds: Family<BackendLabels, FloatGauge>,
    lag_bytes: Family<BackendLabels, Gauge>,
    in_flight: Family<BackendLabels, Gauge>,
    transitions: Family<BackendLabels, Counter>,
    fenced: Family<BackendLabels, Gauge>,
    split_brains: Family<ClusterLabels, Counter>,
    cluster_info: Family<ClusterInfoLabels, Gauge>,
    multiplexed: Family<BackendLabels, Counter>,
    multiplex_batches: Family<BackendLabels, Counter>,
    multiplex_reruns: Family<BackendLabels, Counter>,
    multiplex_lanes: Family<BackendLabels, Gauge>,
    saturation: Family<ClusterLabels, FloatGauge>,

    /// The HTTP edge's metrics.
    pub edge: EdgeMetrics,
    /// Statistics per statement digest (`GET /queries`).
    pub queries: queries::QueryStats,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

const STATE_ACTIVE: Lv = Lv::Static("active");
const STATE_WAITING: Lv = Lv::Static("waiting");
const STATE_IDLE: Lv = Lv::Static("idle");
const DIR_TO_BACKEND: Lv = Lv::Static("client_to_backend");
const DIR_TO_CLIENT: Lv = Lv::Static("backend_to_client");

impl Metrics {
    /// Register every metric. The config loaded at startup counts as the first successful
    /// load (`switchyard_config_last_reload_success_timestamp_seconds` = now).
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("switchyard");
        let started = unix_now();

        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: Lv::Static(env!("CARGO_PKG_VERSION")),
            })
            .set(1);
        r.register(
            "build_info",
            "Build information; the value is always 1",
            build_info,
        );
        let start_time = FloatGauge::default();
        start_time.set(started);
        r.register(
            "process_start_time_seconds",
            "Unix time the process started",
            start_time,
        );

        let m = Metrics {
            registry: Registry::default(),
            scrape: Mutex::new(()),
            started,
            clients: Family::default(),
            checkout_wait: Family::new_with_constructor(checkout_histo as fn() -> Histo),
            statement: Family::new_with_constructor(statement_histo as fn() -> Histo),
            routed: Family::default(),
            errors: Family::default(),
            bytes: Family::default(),
            reloads: Family::default(),
            last_reload_success: FloatGauge::default(),
            last_reload_ok: Gauge::default(),
            backend_conns: Family::default(),
            backend_open: Family::default(),
            pool_capacity: Family::default(),
            backend_up: Family::default(),
            in_read_set: Family::default(),
            lag_seconds: Family::default(),
            lag_bytes: Family::default(),
            in_flight: Family::default(),
            transitions: Family::default(),
            fenced: Family::default(),
            split_brains: Family::default(),
            cluster_info: Family::default(),
            multiplexed: Family::default(),
            multiplex_batches: Family::default(),
            multiplex_reruns: Family::default(),
            multiplex_lanes: Family::default(),
            saturation: Family::default(),
            edge: EdgeMetrics::register(&mut r),
            queries: Default::default(),
        };
        m.last_reload_success.set(started);
        m.last_reload_ok.set(1);
        for result in ["ok", "error"] {
            let _ = m.reloads.get_or_create(&ResultLabels {
                result: Lv::Static(result),
            });
        }

        r.register(
            "client_connections",
            "Client connections per cluster: state=active is every connected client, state=waiting those waiting for a backend connection now",
            m.clients.clone(),
        );
        r.register(
            "checkout_wait_seconds",
            "Time a client waited to check out a backend connection",
            m.checkout_wait.clone(),
        );
        r.register(
            "statement_duration_seconds",
            "Time a backend connection was held per checkout (one transaction, or one statement outside a transaction), by route",
            m.statement.clone(),
        );
        r.register(
            "statements_routed",
            "Routing decisions by route (primary|replica) and reason",
            m.routed.clone(),
        );
        r.register("errors", "Errors by kind", m.errors.clone());
        r.register(
            "bytes",
            "Bytes forwarded, by direction (client_to_backend|backend_to_client)",
            m.bytes.clone(),
        );
        r.register(
            "config_reload",
            "Config reloads by result (ok|error)",
            m.reloads.clone(),
        );
        r.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load (startup counts)",
            m.last_reload_success.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "1 if the last config reload succeeded, 0 if it failed",
            m.last_reload_ok.clone(),
        );
        r.register(
            "backend_connections",
            "Backend connections by state: active (checked out) or idle (in the pool)",
            m.backend_conns.clone(),
        );
        r.register(
            "backend_connections_open",
            "Backend connections open (active + idle)",
            m.backend_open.clone(),
        );
        r.register(
            "backend_pool_capacity",
            "Maximum backend connections (pool size, summed over workers)",
            m.pool_capacity.clone(),
        );
        r.register(
            "backend_up",
            "1 if the backend passes health checks, else 0; role is the detected role",
            m.backend_up.clone(),
        );
        r.register(
            "backend_in_read_set",
            "1 if the backend is eligible for reads (up and within the lag limits)",
            m.in_read_set.clone(),
        );
        r.register(
            "replication_lag_seconds",
            "Replication lag in time (0 for the primary and for an idle primary)",
            m.lag_seconds.clone(),
        );
        r.register(
            "replication_lag_bytes",
            "Replication lag in WAL bytes (primary position minus replayed position)",
            m.lag_bytes.clone(),
        );
        r.register(
            "backend_multiplexed_statements",
            "Statements answered through multiplexed connections ([pool] multiplex_depth)",
            m.multiplexed.clone(),
        );
        r.register(
            "backend_multiplex_batches",
            "Batches written on multiplexed connections (statements / batches = mean batch size)",
            m.multiplex_batches.clone(),
        );
        r.register(
            "backend_multiplex_reruns",
            "Multiplexed statements run again alone after their batch failed",
            m.multiplex_reruns.clone(),
        );
        r.register(
            "backend_multiplex_lanes",
            "Multiplexed connections open now",
            m.multiplex_lanes.clone(),
        );
        r.register(
            "backend_in_flight",
            "Statements running on the backend now",
            m.in_flight.clone(),
        );
        r.register(
            "backend_transitions",
            "Health transitions (up/down, entering/leaving the read set) since start",
            m.transitions.clone(),
        );
        r.register(
            "backend_fenced",
            "1 if the backend accepts writes on an older timeline than another backend (a demoted primary still running); no writes go to it",
            m.fenced.clone(),
        );
        r.register(
            "cluster_info",
            "1 per cluster, labelled with the wire protocol its servers and clients speak (join on cluster)",
            m.cluster_info.clone(),
        );
        r.register(
            "split_brain",
            "Times more than one backend was seen accepting writes at once",
            m.split_brains.clone(),
        );
        r.register(
            "saturation",
            "(waiting clients + active backend connections) / total pool capacity; above 1 means clients queue",
            m.saturation.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Unix time the metrics (the process) started.
    pub fn started(&self) -> f64 {
        self.started
    }

    /// Pre-resolved handles for one cluster; create once per cluster (and worker) and keep.
    pub fn cluster_handles(&self, cluster: &str) -> ClusterMetrics {
        let name: Arc<str> = Arc::from(cluster);
        let c = || Lv::Shared(name.clone());
        let route = |r: &'static str| RouteLabels {
            cluster: c(),
            route: Lv::Static(r),
        };
        let bytes = |d: Lv| BytesLabels {
            cluster: c(),
            direction: d,
        };
        let clients = |s: Lv| ClusterStateLabels {
            cluster: c(),
            state: s,
        };
        // One statement per lookup: a family's read guard must be gone before the next
        // lookup of the same family, which may need its write lock.
        let checkout_wait = self
            .checkout_wait
            .get_or_create(&ClusterLabels { cluster: c() })
            .clone();
        let stmt_primary = self.statement.get_or_create(&route(ROUTE_PRIMARY)).clone();
        let stmt_replica = self.statement.get_or_create(&route(ROUTE_REPLICA)).clone();
        let bytes_to_backend = self.bytes.get_or_create(&bytes(DIR_TO_BACKEND)).clone();
        let bytes_to_client = self.bytes.get_or_create(&bytes(DIR_TO_CLIENT)).clone();
        let clients_active = self.clients.get_or_create(&clients(STATE_ACTIVE)).clone();
        let clients_waiting = self.clients.get_or_create(&clients(STATE_WAITING)).clone();
        ClusterMetrics {
            checkout_wait,
            stmt_primary,
            stmt_replica,
            bytes_to_backend,
            bytes_to_client,
            clients_active,
            clients_waiting,
            routed: self.routed.clone(),
            errors: self.errors.clone(),
            statement: self.statement.clone(),
            name,
        }
    }

    // -- Recording by name (hashes the labels and allocates the cluster label; prefer a
    //    cached ClusterMetrics on hot paths).

    /// One statement (or transaction) routed to `route` for `reason`.
    pub fn routed(&self, cluster: &str, route: &str, reason: &str) {
        self.routed
            .get_or_create(&RoutedLabels {
                cluster: cluster.into(),
                route: route.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn checkout_wait(&self, cluster: &str, secs: f64) {
        self.checkout_wait
            .get_or_create(&ClusterLabels {
                cluster: cluster.into(),
            })
            .observe_secs(secs);
    }

    pub fn statement(&self, cluster: &str, route: &str, secs: f64) {
        self.statement
            .get_or_create(&RouteLabels {
                cluster: cluster.into(),
                route: route.into(),
            })
            .observe_secs(secs);
    }

    /// An error of `kind` (see [`kind`]); `cluster` may be "" when not known yet.
    pub fn error(&self, cluster: &str, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                cluster: cluster.into(),
                kind: kind.into(),
            })
            .inc();
    }

    pub fn bytes(&self, cluster: &str, to_backend: u64, to_client: u64) {
        let c: Lv = cluster.into();
        if to_backend > 0 {
            self.bytes
                .get_or_create(&BytesLabels {
                    cluster: c.clone(),
                    direction: DIR_TO_BACKEND,
                })
                .inc_by(to_backend);
        }
        if to_client > 0 {
            self.bytes
                .get_or_create(&BytesLabels {
                    cluster: c,
                    direction: DIR_TO_CLIENT,
                })
                .inc_by(to_client);
        }
    }

    pub fn client_active(&self, cluster: &str, delta: i64) {
        self.clients
            .get_or_create(&ClusterStateLabels {
                cluster: cluster.into(),
                state: STATE_ACTIVE,
            })
            .inc_by(delta);
    }

    pub fn client_waiting(&self, cluster: &str, delta: i64) {
        self.clients
            .get_or_create(&ClusterStateLabels {
                cluster: cluster.into(),
                state: STATE_WAITING,
            })
            .inc_by(delta);
    }

    /// A config reload finished (call for every attempt: admin API, SIGHUP, file watch).
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads
            .get_or_create(&ResultLabels {
                result: Lv::Static(result),
            })
            .inc();
        self.last_reload_ok.set(i64::from(ok));
        if ok {
            self.last_reload_success.set(unix_now());
        }
    }

    /// (active, waiting) clients of `cluster` as recorded by sessions.
    pub fn clients(&self, cluster: &str) -> (u64, u64) {
        let get = |state: Lv| {
            let labels = ClusterStateLabels {
                cluster: cluster.into(),
                state,
            };
            self.clients
                .get(&labels)
                .map(|g| g.get().max(0) as u64)
                .unwrap_or(0)
        };
        (get(STATE_ACTIVE), get(STATE_WAITING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Topo(Vec<ClusterSnapshot>);
    impl TopologySource for Topo {
        fn snapshot(&self) -> Vec<ClusterSnapshot> {
            self.0.clone()
        }
    }

    fn topo() -> Topo {
        Topo(vec![ClusterSnapshot {
            protocol: "postgres",
            name: "main".into(),
            backends: vec![
                BackendSnapshot {
                    addr: "127.0.0.1:5432".into(),
                    role: "primary",
                    up: true,
                    pool_size: 10,
                    pool_open: 6,
                    pool_idle: 2,
                    transitions: 3,
                    fenced: true,
                    ..Default::default()
                },
                BackendSnapshot {
                    addr: "127.0.0.1:5433".into(),
                    role: "replica",
                    up: false,
                    pool_size: 10,
                    pool_open: 1,
                    pool_idle: 1,
                    lag_seconds: 1.5,
                    lag_bytes: 4096,
                    ..Default::default()
                },
            ],
            split_brains: 2,
            users: Vec::new(),
        }])
    }

    fn sample<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .map(|l| l[prefix.len()..].trim())
    }

    #[test]
    fn saturation_formula() {
        let t = topo();
        // active = (6-2) + (1-1) = 4; capacity 20; 6 waiting.
        assert_eq!(saturation(&t.0[0], 6), 0.5);
        assert_eq!(saturation(&ClusterSnapshot::default(), 0), 0.0);
    }

    #[test]
    fn encodes_recorded_and_topology_series() {
        let m = Metrics::new();
        let h = m.cluster_handles("main");
        for _ in 0..7 {
            m.routed("main", "replica", "read");
        }
        h.routed(ROUTE_PRIMARY, "write");
        h.routed_counter(ROUTE_PRIMARY, "write").inc();
        h.statement(ROUTE_REPLICA, Duration::from_millis(2));
        h.bytes(100, 2000);
        let _c = h.client_connected();
        let w = h.client_waiting();
        let _w2 = h.client_waiting();
        drop(w);
        m.error("main", kind::CHECKOUT_TIMEOUT);
        m.reload(false);
        let text = m.encode(&topo());
        let s = |p| sample(&text, p).unwrap_or_else(|| panic!("{p} missing in\n{text}"));
        assert_eq!(
            s(
                r#"switchyard_statements_routed_total{cluster="main",route="replica",reason="read"}"#
            ),
            "7"
        );
        assert_eq!(
            s(
                r#"switchyard_statements_routed_total{cluster="main",route="primary",reason="write"}"#
            ),
            "2"
        );
        assert_eq!(
            s(r#"switchyard_client_connections{cluster="main",state="waiting"}"#),
            "1"
        );
        assert_eq!(
            s(r#"switchyard_bytes_total{cluster="main",direction="backend_to_client"}"#),
            "2000"
        );
        assert_eq!(s(r#"switchyard_saturation{cluster="main"}"#), "0.25");
        assert_eq!(
            s(r#"switchyard_backend_up{cluster="main",backend="127.0.0.1:5433",role="replica"}"#),
            "0"
        );
        assert_eq!(
            s(r#"switchyard_backend_transitions_total{cluster="main",backend="127.0.0.1:5432"}"#),
            "3"
        );
        assert_eq!(
            s(r#"switchyard_backend_fenced{cluster="main",backend="127.0.0.1:5432"}"#),
            "1"
        );
        assert_eq!(s(r#"switchyard_split_brain_total{cluster="main"}"#), "2");
        assert_eq!(s(r#"switchyard_config_reload_total{result="error"}"#), "1");
        assert_eq!(s("switchyard_config_last_reload_successful"), "0");
        assert!(text.contains("# TYPE switchyard_statements_routed_total counter\n"));
        assert!(text.contains("# HELP switchyard_statements_routed_total Routing"));
        assert!(text.contains("# TYPE switchyard_statement_duration_seconds histogram\n"));
        assert!(
            text.contains(
                r#"switchyard_statement_duration_seconds_bucket{le="+Inf",cluster="main",route="replica"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        // A second scrape reports the counter copied from the topology, not doubled.
        let text = m.encode(&topo());
        assert_eq!(
            sample(
                &text,
                r#"switchyard_backend_transitions_total{cluster="main",backend="127.0.0.1:5432"}"#
            ),
            Some("3")
        );
        // Backends that left the topology leave the output.
        let text = m.encode(&Topo(vec![]));
        assert!(!text.contains("127.0.0.1:5432"));
        let om = m.encode_as(&topo(), Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE switchyard_statements_routed counter\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.error("a\"b\\c\nd", "connect");
        let text = m.encode(&Topo(vec![]));
        assert!(
            text.contains(r#"switchyard_errors_total{cluster="a\"b\\c\nd",kind="connect"} 1"#),
            "{text}"
        );
    }
}
