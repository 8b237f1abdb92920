//! The HTTP edge's metrics (`switchyard_edge_*`). Per-route and per-server handles are
//! resolved once when the edge builds its routing state (start, reload), so a request
//! records with atomic adds and no label hashing.

use super::sharded::Counter;
use super::{Histo, HistoFamily, Lv};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of `switchyard_edge_request_duration_seconds`: 100 µs .. 60 s.
pub const EDGE_REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteClass {
    route: Lv,
    class: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteL {
    route: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerClass {
    upstream: Lv,
    server: Lv,
    class: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerL {
    upstream: Lv,
    server: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamL {
    upstream: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerL {
    listener: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultL {
    result: Lv,
}

/// Status classes, indexed by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    (usize::from(status / 100).clamp(1, 5)) - 1
}

/// Every edge metric family.
#[derive(Debug)]
pub struct EdgeMetrics {
    requests: Family<RouteClass, Counter>,
    duration: HistoFamily<RouteL>,
    rate_limited: Family<RouteL, Counter>,
    upstream_requests: Family<ServerClass, Counter>,
    upstream_up: Family<ServerL, Gauge>,
    ejections: Family<ServerL, Counter>,
    retries: Family<UpstreamL, Counter>,
    no_upstream: Family<UpstreamL, Counter>,
    connections: Family<ListenerL, Gauge>,
    cache: Family<ResultL, Counter>,
    cache_bytes: Gauge,
    cache_entries: Gauge,
}

fn edge_histo() -> Histo {
    Histo::new(EDGE_REQUEST_BUCKETS)
}

impl EdgeMetrics {
    pub(super) fn register(r: &mut Registry) -> EdgeMetrics {
        let m = EdgeMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(edge_histo as fn() -> Histo),
            rate_limited: Family::default(),
            upstream_requests: Family::default(),
            upstream_up: Family::default(),
            ejections: Family::default(),
            retries: Family::default(),
            no_upstream: Family::default(),
            connections: Family::default(),
            cache: Family::default(),
            cache_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
        };
        r.register(
            "edge_requests",
            "HTTP requests answered by the edge, by route and status class",
            m.requests.clone(),
        );
        r.register(
            "edge_request_duration_seconds",
            "Time from a request's head to its response's head, by route",
            m.duration.clone(),
        );
        r.register(
            "edge_rate_limited",
            "Requests answered 429 by a route's per-client rate limit",
            m.rate_limited.clone(),
        );
        r.register(
            "edge_upstream_requests",
            "Requests sent to each upstream server, by the status class it answered (\"error\": no answer)",
            m.upstream_requests.clone(),
        );
        r.register(
            "edge_upstream_up",
            "1 if the upstream server gets traffic (active checks pass and not ejected)",
            m.upstream_up.clone(),
        );
        r.register(
            "edge_upstream_ejections",
            "Times a server was ejected after consecutive failures",
            m.ejections.clone(),
        );
        r.register(
            "edge_retries",
            "Requests retried on another server of the group",
            m.retries.clone(),
        );
        r.register(
            "edge_no_upstream",
            "Requests answered 503 because no server of the group was up",
            m.no_upstream.clone(),
        );
        r.register(
            "edge_connections",
            "Client connections open on each edge listener",
            m.connections.clone(),
        );
        r.register(
            "edge_cache_lookups",
            "Response cache lookups by result (hit, miss, bypass)",
            m.cache.clone(),
        );
        r.register(
            "edge_cache_bytes",
            "Bytes held by the response cache",
            m.cache_bytes.clone(),
        );
        r.register(
            "edge_cache_entries",
            "Responses held by the response cache",
            m.cache_entries.clone(),
        );
        m
    }

    /// Handles for one route (`name`: host and path prefix, as the route shows itself).
    pub fn route(&self, name: &str) -> RouteMetrics {
        let route = Lv::from(name);
        let rc = |class: &'static str| {
            self.requests
                .get_or_create(&RouteClass {
                    route: route.clone(),
                    class: Lv::Static(class),
                })
                .clone()
        };
        let l = RouteL {
            route: route.clone(),
        };
        RouteMetrics {
            classes: CLASSES.map(rc),
            duration: self.duration.get_or_create(&l).clone(),
            rate_limited: self.rate_limited.get_or_create(&l).clone(),
        }
    }

    /// Handles for one server of an upstream group.
    pub fn server(&self, upstream: &str, server: &str) -> ServerMetrics {
        let (u, s) = (Lv::from(upstream), Lv::from(server));
        let sc = |class: &'static str| {
            self.upstream_requests
                .get_or_create(&ServerClass {
                    upstream: u.clone(),
                    server: s.clone(),
                    class: Lv::Static(class),
                })
                .clone()
        };
        let l = ServerL {
            upstream: u.clone(),
            server: s.clone(),
        };
        ServerMetrics {
            classes: CLASSES.map(sc),
            errors: sc("error"),
            up: self.upstream_up.get_or_create(&l).clone(),
            ejections: self.ejections.get_or_create(&l).clone(),
        }
    }

    /// Handles for one upstream group.
    pub fn upstream(&self, upstream: &str) -> UpstreamMetrics {
        let l = UpstreamL {
            upstream: Lv::from(upstream),
        };
        UpstreamMetrics {
            retries: self.retries.get_or_create(&l).clone(),
            no_upstream: self.no_upstream.get_or_create(&l).clone(),
        }
    }

    /// The open-connections gauge of a listener.
    pub fn listener(&self, name: &str) -> Gauge {
        self.connections
            .get_or_create(&ListenerL {
                listener: Lv::from(name),
            })
            .clone()
    }

    /// Forget the up gauges of every server (a reload then sets the ones that remain), so a
    /// removed server's series disappears.
    pub fn clear_servers(&self) {
        self.upstream_up.clear();
    }

    /// Count a cache lookup: "hit", "miss" or "bypass".
    pub fn cache_lookup(&self, result: &'static str) {
        self.cache
            .get_or_create(&ResultL {
                result: Lv::Static(result),
            })
            .inc();
    }

    /// The cache's size now.
    pub fn cache_size(&self, bytes: u64, entries: u64) {
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }
}

/// Pre-resolved handles of one route.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    classes: [Counter; 5],
    duration: Histo,
    pub rate_limited: Counter,
}

impl RouteMetrics {
    /// A response with `status` went out `secs` after the request arrived.
    pub fn answered(&self, status: u16, secs: f64) {
        self.classes[class_index(status)].inc();
        self.duration.observe_secs(secs);
    }
}

/// Pre-resolved handles of one upstream server.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    classes: [Counter; 5],
    /// No answer (connect failure, broken connection, timeout).
    pub errors: Counter,
    /// 1 while the server gets traffic.
    pub up: Gauge,
    pub ejections: Counter,
}

impl ServerMetrics {
    /// The server answered with `status`.
    pub fn answered(&self, status: u16) {
        self.classes[class_index(status)].inc();
    }
}

/// Pre-resolved handles of one upstream group.
#[derive(Clone, Debug)]
pub struct UpstreamMetrics {
    pub retries: Counter,
    pub no_upstream: Counter,
}
