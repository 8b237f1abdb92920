//! Statistics per statement digest (`GET /queries`), as ProxySQL's query digests and
//! PostgreSQL's `pg_stat_statements` keep them: per cluster, user and digest
//! ([`crate::router::digest`]), how often the statement ran, how long its servers took, how
//! often it failed and where it was routed.
//!
//! * **Per worker thread.** Each worker adds into its own table (the shard of
//!   [`super::sharded`]) under a mutex only the admin API's reads ever contend for; a read
//!   adds the tables up.
//! * **Bounded.** At most `[general] query_digests` statements per table; runs of statements
//!   first seen when it is full are counted in `dropped` only. 0 turns the statistics off: the
//!   statement path then reads one atomic.
//! * **What is timed**: from when a server had the statement (or the batch it opens, for
//!   PostgreSQL's pipelines) to when its answer was complete, the client's own time not
//!   included.

use super::sharded::{shard, SHARDS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where a statement ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    Primary,
    Replica,
}

impl Ran {
    /// From the route label of the metrics (`primary`, `replica`).
    pub fn of(route: &str) -> Ran {
        if route == super::ROUTE_REPLICA {
            Ran::Replica
        } else {
            Ran::Primary
        }
    }
}

/// Whose statements these are: a cluster and a user, hashed once per session.
#[derive(Debug, Clone)]
pub struct Owner {
    hash: u64,
    cluster: Arc<str>,
    user: Arc<str>,
}

impl Owner {
    pub fn new(cluster: Arc<str>, user: Arc<str>) -> Owner {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in cluster.bytes().chain([0]).chain(user.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Owner {
            hash: h,
            cluster,
            user,
        }
    }

    /// Whether these are `cluster`'s and `user`'s.
    fn is(&self, cluster: &str, user: &Arc<str>) -> bool {
        Arc::ptr_eq(&self.user, user) && &*self.cluster == cluster
    }

    /// A session's owner kept in `slot`: made again unless it is `cluster`'s and `user`'s
    /// (a client changes both with COM_CHANGE_USER or a reload's new cluster).
    pub fn of<'a>(slot: &'a mut Option<Owner>, cluster: &str, user: &Arc<str>) -> &'a Owner {
        if slot.as_ref().is_none_or(|o| !o.is(cluster, user)) {
            *slot = Some(Owner::new(cluster.into(), user.clone()));
        }
        slot.as_ref().expect("made above")
    }

    /// Where statement `digest` of this owner is kept in a table.
    pub fn key(&self, digest: u64) -> u64 {
        digest.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ self.hash
    }
}

#[derive(Debug, Clone)]
struct Entry {
    cluster: Arc<str>,
    user: Arc<str>,
    digest: u64,
    text: Arc<str>,
    count: u64,
    errors: u64,
    total_us: u64,
    min_us: u64,
    max_us: u64,
    primary: u64,
    replica: u64,
    first_seen: u64,
    last_seen: u64,
}

/// What `Instant`s are counted from, and the Unix time then: a run's end as a Unix time
/// without reading the wall clock per statement.
fn epoch() -> (Instant, u64) {
    static EPOCH: std::sync::OnceLock<(Instant, u64)> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| (Instant::now(), unix_secs()))
}

impl Entry {
    fn add_run(&mut self, ran: Ran, (started, ended): (Instant, Instant), failed: bool) {
        let us = ended.saturating_duration_since(started).as_micros() as u64;
        self.count += 1;
        self.errors += u64::from(failed);
        self.total_us += us;
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
        match ran {
            Ran::Primary => self.primary += 1,
            Ran::Replica => self.replica += 1,
        }
        let (at, unix) = epoch();
        self.last_seen = unix + ended.saturating_duration_since(at).as_secs();
    }

    fn add(&mut self, o: &Entry) {
        self.count += o.count;
        self.errors += o.errors;
        self.total_us += o.total_us;
        self.min_us = self.min_us.min(o.min_us);
        self.max_us = self.max_us.max(o.max_us);
        self.primary += o.primary;
        self.replica += o.replica;
        self.first_seen = self.first_seen.min(o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
    }
}

/// The tables' keys are digests mixed with their owner's hash already: used as they are.
#[derive(Debug, Default, Clone, Copy)]
struct Mixed(u64);

impl std::hash::Hasher for Mixed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Keyed = std::hash::BuildHasherDefault<Mixed>;

#[repr(align(128))]
#[derive(Debug, Default)]
struct Table(Mutex<HashMap<u64, Entry, Keyed>>);

/// The statistics of every worker thread.
#[derive(Debug)]
pub struct QueryStats {
    tables: [Table; SHARDS],
    /// Statements per table at most; 0: off.
    max: AtomicUsize,
    dropped: AtomicU64,
    /// Unix time of the start or the last reset.
    since: AtomicU64,
    generation: AtomicU64,
}

impl Default for QueryStats {
    fn default() -> Self {
        QueryStats {
            tables: Default::default(),
            max: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            since: AtomicU64::new(unix_secs()),
            generation: AtomicU64::new(0),
        }
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One statement's statistics as `GET /queries` shows them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueryRow {
    pub cluster: String,
    pub user: String,
    /// The digest, 16 hex digits (the same for the same statement in every process).
    pub digest: String,
    /// The statement as first seen, literals as `?`.
    pub query: String,
    pub count: u64,
    pub errors: u64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Runs on the primary and on replicas.
    pub primary: u64,
    pub replica: u64,
    /// Unix times.
    pub first_seen: u64,
    pub last_seen: u64,
}

impl QueryStats {
    /// Keep at most `max` statements per worker thread (0: off). Kept statistics stay.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Relaxed);
    }

    /// Whether statements are counted (one atomic load).
    #[inline]
    pub fn enabled(&self) -> bool {
        self.max.load(Relaxed) != 0
    }

    /// Make sure statement `digest` of `owner` has a place in this thread's table (its text
    /// from `text`, called only if it has none yet); false when the table is full.
    pub fn note(&self, owner: &Owner, digest: u64, text: impl FnOnce() -> String) -> bool {
        let mut t = self.tables[shard()].0.lock().unwrap();
        self.entry(&mut t, owner, digest, text).is_some()
    }

    /// The entry of `digest` of `owner` in table `t`, made if there is room.
    fn entry<'t>(
        &self,
        t: &'t mut HashMap<u64, Entry, Keyed>,
        owner: &Owner,
        digest: u64,
        text: impl FnOnce() -> String,
    ) -> Option<&'t mut Entry> {
        let key = owner.key(digest);
        if !t.contains_key(&key) {
            if t.len() >= self.max.load(Relaxed) {
                self.dropped.fetch_add(1, Relaxed);
                return None;
            }
            let now = unix_secs();
            t.insert(
                key,
                Entry {
                    cluster: owner.cluster.clone(),
                    user: owner.user.clone(),
                    digest,
                    text: text().into(),
                    count: 0,
                    errors: 0,
                    total_us: 0,
                    min_us: u64::MAX,
                    max_us: 0,
                    primary: 0,
                    replica: 0,
                    first_seen: now,
                    last_seen: now,
                },
            );
        }
        t.get_mut(&key)
    }

    /// One run of statement `digest` of `owner`, from `started` to `ended` (noted before
    /// with [`Self::note`]; nothing is counted for one that was not, or whose table was
    /// reset since).
    pub fn record(
        &self,
        owner: &Owner,
        digest: u64,
        ran: Ran,
        span: (Instant, Instant),
        failed: bool,
    ) {
        let mut t = self.tables[shard()].0.lock().unwrap();
        if let Some(e) = t.get_mut(&owner.key(digest)) {
            e.add_run(ran, span, failed);
        }
    }

    /// [`Self::note`] and [`Self::record`] in one: a run of a statement whose text is at
    /// hand.
    pub fn record_new(
        &self,
        owner: &Owner,
        digest: u64,
        text: impl FnOnce() -> String,
        ran: Ran,
        span: (Instant, Instant),
        failed: bool,
    ) {
        let mut t = self.tables[shard()].0.lock().unwrap();
        if let Some(e) = self.entry(&mut t, owner, digest, text) {
            e.add_run(ran, span, failed);
        }
    }

    /// Bumped by every [`Self::reset`]: a session that noted a statement in this generation
    /// need not note it again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Forget everything counted so far.
    pub fn reset(&self) {
        self.generation.fetch_add(1, Relaxed);
        for t in &self.tables {
            t.0.lock().unwrap().clear();
        }
        self.dropped.store(0, Relaxed);
        self.since.store(unix_secs(), Relaxed);
    }

    /// Runs of statements that found no place in a full table, since the start or the last
    /// reset.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Unix time of the start or the last reset.
    pub fn since(&self) -> u64 {
        self.since.load(Relaxed)
    }

    /// Every statement that ran at least once, the worker threads' counts added up.
    pub fn rows(&self) -> Vec<QueryRow> {
        let mut all: HashMap<u64, Entry, Keyed> = HashMap::default();
        for t in &self.tables {
            let t = t.0.lock().unwrap();
            for (k, e) in t.iter().filter(|(_, e)| e.count > 0) {
                match all.get_mut(k) {
                    Some(a) => a.add(e),
                    None => {
                        all.insert(*k, e.clone());
                    }
                }
            }
        }
        let ms = |us: u64| us as f64 / 1000.0;
        all.into_values()
            .map(|e| QueryRow {
                cluster: e.cluster.to_string(),
                user: e.user.to_string(),
                digest: format!("{:016x}", e.digest),
                query: e.text.to_string(),
                count: e.count,
                errors: e.errors,
                total_ms: ms(e.total_us),
                mean_ms: ms(e.total_us) / e.count as f64,
                min_ms: ms(e.min_us),
                max_ms: ms(e.max_us),
                primary: e.primary,
                replica: e.replica,
                first_seen: e.first_seen,
                last_seen: e.last_seen,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_add_up_per_owner_and_digest_and_the_table_is_bounded() {
        let s = QueryStats::default();
        let t0 = Instant::now();
        let run = |us| (t0, t0 + std::time::Duration::from_micros(us));
        let alice = Owner::new("db".into(), "alice".into());
        let bob = Owner::new("db".into(), "bob".into());
        assert!(!s.enabled());
        s.set_max(2);
        assert!(s.note(&alice, 7, || "SELECT ?".into()));
        assert!(s.note(&alice, 7, || unreachable!("noted already")));
        s.record(&alice, 7, Ran::Replica, run(300), false);
        s.record(&alice, 7, Ran::Primary, run(100), true);
        assert!(s.note(&bob, 7, || "SELECT ?".into()));
        s.record(&bob, 7, Ran::Primary, run(50), false);
        assert!(!s.note(&bob, 8, || "full".into()), "a third statement");
        s.record(&bob, 8, Ran::Primary, run(50), false);
        assert_eq!(s.dropped(), 1);
        let mut rows = s.rows();
        rows.sort_by(|a, b| a.user.cmp(&b.user));
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.user.as_str(),
                    r.count,
                    r.errors,
                    r.total_ms,
                    r.min_ms,
                    r.max_ms,
                    r.primary,
                    r.replica,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("alice", 2, 1, 0.4, 0.1, 0.3, 1, 1),
                ("bob", 1, 0, 0.05, 0.05, 0.05, 1, 0)
            ]
        );
        assert_eq!(rows[0].digest, "0000000000000007");
        s.reset();
        assert!(s.rows().is_empty());
        assert_eq!(s.dropped(), 0);
    }
}
