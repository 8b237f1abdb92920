//! A lock-free histogram that prometheus-client can encode: observations are two atomic adds
//! (bucket and sum), so worker threads never contend on a lock.

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
    /// Observations per bucket (not cumulative); the last cell is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histo {
    pub fn new(bounds: &'static [f64]) -> Histo {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histo {
            inner: Arc::new(HistoInner {
                bounds,
                bounds_ns: bounds.iter().map(|b| (b * 1e9).round() as u64).collect(),
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_ns: AtomicU64::new(0),
            }),
        }
    }

    /// Record one observation of `ns` nanoseconds.
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        let i = self.inner.bounds_ns.partition_point(|&b| b < ns);
        self.inner.counts[i].fetch_add(1, Relaxed);
        self.inner.sum_ns.fetch_add(ns, Relaxed);
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

    /// (observations, sum in seconds)
    pub fn count_sum(&self) -> (u64, f64) {
        let count = self.inner.counts.iter().map(|c| c.load(Relaxed)).sum();
        (count, self.inner.sum_ns.load(Relaxed) as f64 / 1e9)
    }
}

impl TypedMetric for Histo {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histo {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.inner;
        let mut buckets = Vec::with_capacity(inner.counts.len());
        let mut count = 0u64;
        for (i, c) in inner.counts.iter().enumerate() {
            let n = c.load(Relaxed);
            count += n;
            // prometheus-client writes `le="+Inf"` for f64::MAX.
            buckets.push((inner.bounds.get(i).copied().unwrap_or(f64::MAX), n));
        }
        let sum = inner.sum_ns.load(Relaxed) as f64 / 1e9;
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
        assert_eq!(h.inner.counts[0].load(Relaxed), 2);
        assert_eq!(h.inner.counts[1].load(Relaxed), 1);
        assert_eq!(h.inner.counts[CHECKOUT_WAIT_BUCKETS.len()].load(Relaxed), 1);
        let (n, sum) = h.count_sum();
        assert_eq!(n, 4);
        assert!((sum - 11.000101).abs() < 1e-9);
    }
}
