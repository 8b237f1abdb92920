//! Sums that several worker threads add to without sharing a cache line. Each worker thread
//! adds to its own shard, 128 bytes apart from the others, and a reader sums the shards.
//! Two workers adding to one atomic make its cache line move between their cores on every
//! add. A statement makes about ten such adds (outstanding count, routing counter,
//! checkout and statement histograms, bytes), and on this machine the moves cost a few
//! microseconds per statement.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Shards per sum. Workers beyond this many share shards (still correct, just shared).
pub const SHARDS: usize = 8;

thread_local! {
    /// This thread's shard: its worker's, or the last one for every other thread.
    static SHARD: Cell<usize> = const { Cell::new(SHARDS - 1) };
}

/// Make this thread add into worker `index`'s shard (a worker thread calls it once).
pub fn set_thread_shard(index: usize) {
    SHARD.with(|s| s.set(index % SHARDS));
}

#[inline]
pub(super) fn shard() -> usize {
    SHARD.with(Cell::get)
}

/// The shards of one sum added up; they wrap, as their additions do.
pub(super) fn wrapping_sum<'a>(shards: impl Iterator<Item = &'a AtomicU64>) -> u64 {
    shards.fold(0u64, |a, c| a.wrapping_add(c.load(Relaxed)))
}

/// One cache line (two on CPUs that fetch lines in pairs) to itself.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicU64);

/// A sum kept in shards; additions wrap, so one thread may add what another takes away.
#[derive(Debug, Default)]
pub struct ShardedU64([Padded; SHARDS]);

impl ShardedU64 {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0[shard()].0.fetch_add(n, Relaxed);
    }

    #[inline]
    pub fn sub(&self, n: u64) {
        self.0[shard()].0.fetch_sub(n, Relaxed);
    }

    pub fn sum(&self) -> u64 {
        wrapping_sum(self.0.iter().map(|p| &p.0))
    }

    /// [`Self::sum`] of a count that goes up and down (things in flight): the shards are
    /// read one by one while others change, so a sum that wrapped below zero reads as 0.
    pub fn level(&self) -> u64 {
        let n = self.sum();
        if n > i64::MAX as u64 {
            0
        } else {
            n
        }
    }

    /// One more until the guard drops (also when the future holding it is dropped).
    pub fn hold(&self) -> Held<'_> {
        self.add(1);
        Held(self)
    }
}

/// One place in a [`ShardedU64`], given back on drop.
pub struct Held<'a>(&'a ShardedU64);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.sub(1);
    }
}

/// A Prometheus counter kept in shards, for counts that workers make on every statement or
/// request. Clones share the same shards.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<ShardedU64>);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.add(1);
    }

    #[inline]
    pub fn inc_by(&self, n: u64) {
        self.0.add(n);
    }

    pub fn get(&self) -> u64 {
        self.0.sum()
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_across_threads_and_may_take_away_what_others_added() {
        let c = Counter::default();
        let s = Arc::new(ShardedU64::default());
        std::thread::scope(|scope| {
            for i in 0..(SHARDS + 3) {
                let (c, s) = (c.clone(), s.clone());
                scope.spawn(move || {
                    set_thread_shard(i);
                    for _ in 0..1000 {
                        c.inc();
                        s.add(2);
                    }
                    c.inc_by(5);
                });
            }
        });
        assert_eq!(c.get(), (SHARDS as u64 + 3) * 1005);
        // Taken away on another shard than the one it was added on.
        std::thread::scope(|scope| {
            let s = s.clone();
            scope.spawn(move || {
                set_thread_shard(1);
                s.sub(2 * 1000 * (SHARDS as u64 + 3) - 7);
            });
        });
        assert_eq!(s.sum(), 7);
    }
}
