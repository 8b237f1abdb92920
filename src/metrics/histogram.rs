//! A lock-free histogram that prometheus-client can encode: observations are two atomic adds
//! (bucket and sum) into the recording worker's own shard, so worker threads neither
//! contend on a lock nor share a cache line.

use super::sharded::{shard, wrapping_sum, SHARDS};
use super::{CHECKOUT_WAIT_BUCKETS, STATEMENT_BUCKETS};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// A histogram of durations with fixed bucket bounds, recorded with two relaxed atomic adds
/// and no lock. Clones share the same cells.
#[derive(Clone, Debug)]
pub struct Histo {
    inner: Arc<HistoInner>,
}

#[derive(Debug)]
struct HistoInner {
    /// Upper bounds in seconds, ascending (the `le` labels).
    bounds: &'static [f64],
    /// The same bounds in nanoseconds, for the comparison on the recording path.
    bounds_ns: Box<[u64]>,
    /// `SHARDS` runs of `stride` cells: per bucket observations (not cumulative, the last
    /// bucket is `+Inf`), then the sum in nanoseconds, then padding, so that no two shards'
    /// cells share a cache line.
    cells: Box<[AtomicU64]>,
    stride: usize,
}

/// Cells of padding between shards: one 128-byte line.
const PAD: usize = 16;

impl Histo {
    pub fn new(bounds: &'static [f64]) -> Histo {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        // Buckets, `+Inf` and the sum, then a line of padding.
        let stride = bounds.len() + 2 + PAD;
        Histo {
            inner: Arc::new(HistoInner {
                bounds,
                bounds_ns: bounds.iter().map(|b| (b * 1e9).round() as u64).collect(),
                cells: (0..stride * SHARDS).map(|_| AtomicU64::new(0)).collect(),
                stride,
            }),
        }
    }

    /// Record one observation of `ns` nanoseconds.
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        let inner = &*self.inner;
        let i = inner.bounds_ns.partition_point(|&b| b < ns);
        let base = shard() * inner.stride;
        inner.cells[base + i].fetch_add(1, Relaxed);
        inner.cells[base + inner.bounds.len() + 1].fetch_add(ns, Relaxed);
    }

    #[inline]
    pub fn observe(&self, d: Duration) {
        self.observe_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Record one observation in seconds (negative and NaN count as zero).
    #[inline]
    pub fn observe_secs(&self, secs: f64) {
        let ns = if secs > 0.0 { secs * 1e9 } else { 0.0 };
        // `as` saturates at u64::MAX.
        self.observe_ns(ns as u64);
    }

    /// Observations in bucket `i` (not cumulative; `bounds.len()` is `+Inf`), all shards.
    fn bucket(&self, i: usize) -> u64 {
        let inner = &*self.inner;
        wrapping_sum((0..SHARDS).map(|s| &inner.cells[s * inner.stride + i]))
    }

    /// (observations, sum in seconds)
    pub fn count_sum(&self) -> (u64, f64) {
        let n = self.inner.bounds.len();
        let count = (0..=n).map(|i| self.bucket(i)).sum();
        (count, self.bucket(n + 1) as f64 / 1e9)
    }
}

impl TypedMetric for Histo {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histo {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = self.inner.bounds;
        let mut buckets = Vec::with_capacity(bounds.len() + 1);
        let mut count = 0u64;
        for i in 0..=bounds.len() {
            let n = self.bucket(i);
            count += n;
            // prometheus-client writes `le="+Inf"` for f64::MAX.
            buckets.push((bounds.get(i).copied().unwrap_or(f64::MAX), n));
        }
        let sum = self.bucket(bounds.len() + 1) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

pub(super) fn checkout_histo() -> Histo {
    Histo::new(CHECKOUT_WAIT_BUCKETS)
}
pub(super) fn statement_histo() -> Histo {
    Histo::new(STATEMENT_BUCKETS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_le() {
        let h = Histo::new(CHECKOUT_WAIT_BUCKETS);
        h.observe(Duration::from_micros(50)); // exactly on the first bound
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_secs(11)); // +Inf
        h.observe_secs(-1.0);
        assert_eq!(h.bucket(0), 2);
        assert_eq!(h.bucket(1), 1);
        assert_eq!(h.bucket(CHECKOUT_WAIT_BUCKETS.len()), 1);
        let (n, sum) = h.count_sum();
        assert_eq!(n, 4);
        assert!((sum - 11.000101).abs() < 1e-9);
    }

    #[test]
    fn observations_from_every_worker_shard_are_counted_once() {
        let h = Histo::new(STATEMENT_BUCKETS);
        std::thread::scope(|scope| {
            for i in 0..(SHARDS + 2) {
                let h = h.clone();
                scope.spawn(move || {
                    super::super::sharded::set_thread_shard(i);
                    for _ in 0..100 {
                        h.observe(Duration::from_micros(1));
                        h.observe(Duration::from_secs(100));
                    }
                });
            }
        });
        let n = (SHARDS as u64 + 2) * 100;
        assert_eq!(h.bucket(0), n);
        assert_eq!(h.bucket(STATEMENT_BUCKETS.len()), n);
        let (count, sum) = h.count_sum();
        assert_eq!(count, 2 * n);
        assert!((sum - n as f64 * 100.000001).abs() < 1e-3, "{sum}");
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("h", "h", h.clone());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(&format!("h_count {}", 2 * n)), "{text}");
    }
}
