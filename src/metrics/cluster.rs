//! Per-cluster metric handles a session records into without label lookups.

use super::sharded::Counter;
use super::{
    ErrorLabels, Histo, HistoFamily, Lv, RouteLabels, RoutedLabels, ROUTE_PRIMARY, ROUTE_REPLICA,
};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::time::Duration;
// ---------------------------------------------------------------------------------------
// Per-cluster handles

/// Metric handles for one cluster, resolved once ([`Metrics::cluster_handles`]). Cloning is
/// cheap (Arc-backed) and every clone records into the same series. The fields are public
/// so a session can record with one atomic add and no lookup.
#[derive(Clone, Debug)]
pub struct ClusterMetrics {
    pub(super) name: Arc<str>,
    pub checkout_wait: Histo,
    pub stmt_primary: Histo,
    pub stmt_replica: Histo,
    pub bytes_to_backend: Counter,
    pub bytes_to_client: Counter,
    pub clients_active: Gauge,
    pub clients_waiting: Gauge,
    pub(super) routed: Family<RoutedLabels, Counter>,
    pub(super) errors: Family<ErrorLabels, Counter>,
    pub(super) statement: HistoFamily<RouteLabels>,
}

impl ClusterMetrics {
    pub fn cluster(&self) -> &str {
        &self.name
    }

    /// Count a routing decision (one label lookup; use [`ClusterMetrics::routed_counter`]
    /// to cache a handle per (route, reason)).
    pub fn routed(&self, route: &'static str, reason: &'static str) {
        self.routed
            .get_or_create(&self.routed_labels(route, reason))
            .inc();
    }

    /// Count a routing decision through `cache`, which keeps the counter of the last pair
    /// counted: a session that keeps routing the same way pays one atomic add, no lookup.
    /// Clear the cache when the session moves to another cluster's handles.
    #[inline]
    pub fn routed_cached(
        &self,
        cache: &mut RoutedCache,
        route: &'static str,
        reason: &'static str,
    ) {
        match &cache.0 {
            Some((r, why, c)) if *r == route && *why == reason => {
                c.inc();
            }
            _ => {
                let c = self.routed_counter(route, reason);
                c.inc();
                cache.0 = Some((route, reason, c));
            }
        }
    }

    /// The counter of one (route, reason) pair, to keep and `.inc()` directly.
    pub fn routed_counter(&self, route: &'static str, reason: &'static str) -> Counter {
        self.routed
            .get_or_create(&self.routed_labels(route, reason))
            .clone()
    }

    fn routed_labels(&self, route: &'static str, reason: &'static str) -> RoutedLabels {
        RoutedLabels {
            cluster: Lv::Shared(self.name.clone()),
            route: Lv::Static(route),
            reason: Lv::Static(reason),
        }
    }

    pub fn error(&self, kind: &'static str) {
        self.error_counter(kind).inc();
    }

    pub fn error_counter(&self, kind: &'static str) -> Counter {
        self.errors
            .get_or_create(&ErrorLabels {
                cluster: Lv::Shared(self.name.clone()),
                kind: Lv::Static(kind),
            })
            .clone()
    }

    #[inline]
    pub fn checkout_wait(&self, d: Duration) {
        self.checkout_wait.observe(d);
    }

    /// How long a backend connection was held, by route ("primary" or "replica"; any other
    /// route goes through a label lookup).
    #[inline]
    pub fn statement(&self, route: &'static str, d: Duration) {
        match route {
            ROUTE_PRIMARY => self.stmt_primary.observe(d),
            ROUTE_REPLICA => self.stmt_replica.observe(d),
            other => self
                .statement
                .get_or_create(&RouteLabels {
                    cluster: Lv::Shared(self.name.clone()),
                    route: Lv::Static(other),
                })
                .observe(d),
        }
    }

    #[inline]
    pub fn bytes(&self, to_backend: u64, to_client: u64) {
        if to_backend > 0 {
            self.bytes_to_backend.inc_by(to_backend);
        }
        if to_client > 0 {
            self.bytes_to_client.inc_by(to_client);
        }
    }

    /// Count a connected client until the guard drops.
    pub fn client_connected(&self) -> GaugeGuard {
        GaugeGuard::new(&self.clients_active)
    }

    /// Count a client waiting for a backend connection until the guard drops (also when
    /// the wait is cancelled).
    pub fn client_waiting(&self) -> GaugeGuard {
        GaugeGuard::new(&self.clients_waiting)
    }
}

/// The routing counter a session used last (see [`ClusterMetrics::routed_cached`]).
#[derive(Debug, Default)]
pub struct RoutedCache(Option<(&'static str, &'static str, Counter)>);

impl RoutedCache {
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// Increments a gauge when made and decrements it when dropped.
#[derive(Debug)]
#[must_use = "the gauge goes back down when the guard is dropped"]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub fn new(g: &Gauge) -> GaugeGuard {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
