//! The classifier's verdict cache: statement text -> verdict, bounded, shared by the worker
//! threads.
//!
//! * **Keyed by the whole text.** The hash only picks a shard and a set; a hit also compares
//!   the full text, so a hash collision can never hand one statement another's verdict (a
//!   write routed to a replica).
//! * **Sharded.** Up to [`SHARDS`] independent mutexes, each on its own cache line, so the
//!   threads that classify concurrently through one `Arc<Classifier>` rarely meet on a lock.
//!   Each critical section is a few hash compares and at most one `memcmp`.
//! * **Fixed capacity, set-associative.** A shard is an array of sets of [`WAYS`] slots in
//!   recency order; inserting into a full set drops its least recently used slot. No
//!   rehashing, no eviction sweeps, and the bound is exact: at most `entries` texts are kept.
//! * **Second sighting.** [`VerdictCache::insert_if_seen`] keeps a text only when its hash
//!   is already in a small hash-only table of recent misses. A statement with an inline
//!   literal never repeats, so it costs one atomic load and store there and is never copied
//!   (no allocation per statement, and it cannot push repeating statements out); a statement
//!   that does repeat is cached from its second run. A collision in that table only makes an
//!   insertion early or late, never an answer wrong.
//! * **Hash.** foldhash, seeded at random per cache: fast on long texts (several independent
//!   lanes) and not predictable from outside, so a client cannot aim many texts at one set.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// At most this many shards (a power of two). More than the worker threads of a small
/// machine, few enough that a tiny cache still has several slots per shard.
const SHARDS: usize = 16;
/// Slots per set. Small enough that a lookup compares a handful of hashes.
const WAYS: usize = 4;

/// A bounded map from text to a small `Copy` value (the classifier's `Class`).
pub(crate) struct VerdictCache<V> {
    hasher: foldhash::fast::RandomState,
    shards: Box<[Padded<Mutex<Shard<V>>>]>,
    /// Hashes of texts offered once but not yet kept (0 = empty); a power of two long.
    seen: Box<[AtomicU64]>,
}

/// Keeps each shard's mutex on its own cache line (no false sharing between shards).
#[repr(align(64))]
struct Padded<T>(T);

struct Shard<V> {
    /// `sets * ways` slots; set `s` is `slots[s * ways..][..ways]`, most recent first.
    slots: Box<[Option<Slot<V>>]>,
    sets: usize,
    ways: usize,
}

struct Slot<V> {
    hash: u64,
    text: Box<str>,
    value: V,
}

impl<V: Copy> VerdictCache<V> {
    /// A cache of at most `entries` texts (0 disables it: every call is a miss and nothing is
    /// kept).
    pub(crate) fn new(entries: usize) -> Self {
        let ways = entries.clamp(1, WAYS);
        // Several sets per shard where the cache is small (fewer slots lost to rounding);
        // rounded down to a power of two so a shard is picked by masking.
        let shards = 1 << (entries / (ways * 4)).clamp(1, SHARDS).ilog2();
        let sets = entries / (ways * shards);
        let shards = if sets == 0 {
            Vec::new()
        } else {
            (0..shards)
                .map(|_| {
                    Padded(Mutex::new(Shard {
                        slots: (0..sets * ways).map(|_| None).collect(),
                        sets,
                        ways,
                    }))
                })
                .collect()
        };
        let seen_len = if entries == 0 {
            0
        } else {
            entries.next_power_of_two().max(64)
        };
        VerdictCache {
            hasher: foldhash::fast::RandomState::default(),
            shards: shards.into_boxed_slice(),
            seen: (0..seen_len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    /// The hash to pass to the other methods for `text`.
    pub(crate) fn hash(&self, text: &str) -> u64 {
        self.hasher.hash_one(text)
    }

    /// The value kept for `text` (whose hash is `hash`). Does not allocate.
    pub(crate) fn get(&self, hash: u64, text: &str) -> Option<V> {
        let mut shard = self.shard(hash)?;
        let set = shard.set(hash);
        let i = set
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.is(hash, text)))?;
        let value = set[i].as_ref().map(|s| s.value);
        // Move to the front: the last slot of a set is the one a new text replaces.
        set[..=i].rotate_right(1);
        value
    }

    /// Keep `value` for `text` now (for verdicts that were expensive to compute).
    pub(crate) fn insert(&self, hash: u64, text: &str, value: V) {
        let Some(mut shard) = self.shard(hash) else {
            return;
        };
        let set = shard.set(hash);
        let i = set
            .iter()
            .position(|s| s.as_ref().is_none_or(|s| s.is(hash, text)))
            .unwrap_or(set.len() - 1);
        match &mut set[i] {
            Some(s) if s.is(hash, text) => s.value = value,
            slot => {
                *slot = Some(Slot {
                    hash,
                    text: text.into(),
                    value,
                })
            }
        }
        set[..=i].rotate_right(1);
    }

    /// Keep `value` for `text` if the same hash was offered before (see the module docs).
    pub(crate) fn insert_if_seen(&self, hash: u64, text: &str, value: V) {
        if self.seen.is_empty() {
            return;
        }
        // Relaxed: a lost or stale update only delays or advances one insertion.
        let seen = &self.seen[hash as usize & (self.seen.len() - 1)];
        if seen.load(Ordering::Relaxed) == hash {
            seen.store(0, Ordering::Relaxed);
            self.insert(hash, text, value);
        } else {
            seen.store(hash, Ordering::Relaxed);
        }
    }

    /// Number of texts kept.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.0.lock().unwrap_or_else(|e| e.into_inner());
                s.slots.iter().filter(|s| s.is_some()).count()
            })
            .sum()
    }

    fn shard(&self, hash: u64) -> Option<std::sync::MutexGuard<'_, Shard<V>>> {
        // The low bits pick the shard (and the seen slot), the high bits the set.
        let shard = self
            .shards
            .get(hash as usize & self.shards.len().wrapping_sub(1))?;
        Some(shard.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<V> Shard<V> {
    fn set(&mut self, hash: u64) -> &mut [Option<Slot<V>>] {
        // Multiply-shift maps the high 32 bits onto 0..sets without a division.
        let s = (((hash >> 32) * self.sets as u64) >> 32) as usize;
        &mut self.slots[s * self.ways..][..self.ways]
    }
}

impl<V> Slot<V> {
    fn is(&self, hash: u64, text: &str) -> bool {
        self.hash == hash && *self.text == *text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_compares_the_whole_text_not_just_the_hash() {
        let c = VerdictCache::new(16);
        c.insert(42, "SELECT 1", 'r');
        assert_eq!(c.get(42, "SELECT 1"), Some('r'));
        // Same hash, other text: a miss, and both can be kept side by side.
        assert_eq!(c.get(42, "DELETE FROM t"), None);
        c.insert(42, "DELETE FROM t", 'w');
        assert_eq!(c.get(42, "DELETE FROM t"), Some('w'));
        assert_eq!(c.get(42, "SELECT 1"), Some('r'));
        assert_eq!(c.len(), 2);
        // Inserting the same text again replaces its value in place.
        c.insert(42, "SELECT 1", 'p');
        assert_eq!(c.get(42, "SELECT 1"), Some('p'));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn kept_on_the_second_sighting_only() {
        let c = VerdictCache::new(64);
        let h = c.hash("SELECT a FROM t");
        c.insert_if_seen(h, "SELECT a FROM t", 1);
        assert_eq!(c.get(h, "SELECT a FROM t"), None);
        assert_eq!(c.len(), 0);
        c.insert_if_seen(h, "SELECT a FROM t", 1);
        assert_eq!(c.get(h, "SELECT a FROM t"), Some(1));
        assert_eq!(c.len(), 1);
        // Texts seen once each are never kept.
        for i in 0..1000 {
            let t = format!("SELECT a FROM t WHERE id = {i}");
            c.insert_if_seen(c.hash(&t), &t, 2);
        }
        assert!(c.len() <= 2, "{}", c.len());
    }

    #[test]
    fn bounded_with_least_recently_used_eviction_per_set() {
        for entries in [1, 2, 3, 4, 5, 8, 63, 100, 1000] {
            let c = VerdictCache::new(entries);
            for i in 0..5000u64 {
                let t = i.to_string();
                c.insert(c.hash(&t), &t, i);
                assert_eq!(c.get(c.hash(&t), &t), Some(i), "just inserted");
            }
            assert!(c.len() <= entries, "{entries}: {}", c.len());
            assert!(c.len() * 2 >= entries, "{entries}: {} used", c.len());
        }
        // One set of four: the entry used most recently survives newcomers.
        let c = VerdictCache::new(4);
        for t in ["a", "b", "c", "d"] {
            c.insert(7, t, 0);
        }
        assert_eq!(c.get(7, "a"), Some(0));
        c.insert(7, "e", 0);
        assert_eq!(c.get(7, "a"), Some(0));
        assert_eq!(c.get(7, "b"), None, "least recently used");
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn disabled_keeps_nothing() {
        let c = VerdictCache::new(0);
        assert!(!c.is_enabled());
        c.insert(1, "x", ());
        c.insert_if_seen(1, "x", ());
        c.insert_if_seen(1, "x", ());
        assert_eq!(c.get(1, "x"), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn concurrent_use_agrees_and_stays_bounded() {
        let c = std::sync::Arc::new(VerdictCache::new(32));
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..2000usize {
                        let t = format!("text {}", (i * 7 + n) % 100);
                        let h = c.hash(&t);
                        match c.get(h, &t) {
                            Some(v) => assert_eq!(v, t.len(), "{t}"),
                            None => c.insert_if_seen(h, &t, t.len()),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(c.len() <= 32);
    }
}
