//! Statement classification cost (`router::classify`).
//!
//! Run: `cargo bench --bench classify -- --warm-up-time 1 --measurement-time 3`
//!
//! Before measuring, the fast-path and cached cases are checked to allocate nothing (a counting
//! global allocator wraps the system one for this binary only), and so are statements whose
//! text never repeats (a pgbench-style SELECT with an inline literal, and a long SELECT whose
//! literal changes every call): a cache miss must not allocate.
//!
//! Cases: `fast_*` are statements the scanner decides alone; `fast_select_wide` is a 270-byte
//! SELECT answered from the cache after it has been seen twice, `fast_select_wide_uncached`
//! the same statement with the cache disabled (the scanner's per-byte cost);
//! `pgbench_literal` cycles through 1,024 pre-built `SELECT .. WHERE aid = N` strings (never
//! a cache hit: short statements are not cached), `wide_literal` rewrites a 10-digit literal
//! in a long SELECT in place before every call (never seen twice: the cost of a miss).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use switchyard::router::classify::{Classifier, Dialect, Reason, Route};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
const SELECT_WIDE: &str = "/* app=web */ SELECT u.id, u.name, u.email, count(o.id) AS orders \
     FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.tenant = $1 AND u.created_at > \
     now() - interval '30 days' GROUP BY u.id, u.name, u.email ORDER BY orders DESC LIMIT 50";
const INSERT: &str = "INSERT INTO events (user_id, kind, payload) VALUES ($1, $2, $3)";
const MYSQL_SELECT: &str = "SELECT `id`, `name` FROM `users` WHERE `id` = ? LIMIT 1";
const CTE: &str = "WITH moved AS (DELETE FROM events WHERE created_at < now() - interval '30 \
     days' RETURNING *), counted AS (SELECT kind, count(*) AS n FROM moved GROUP BY kind) \
     INSERT INTO events_archive_summary (kind, n) SELECT kind, n FROM counted";

fn allocations(c: &Classifier, sql: &str) -> usize {
    // A long statement enters the cache on its second sighting: warm it up first.
    c.classify(sql);
    c.classify(sql);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        black_box(c.classify(black_box(sql)));
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// `SELECT_WIDE` with a 10-digit literal that changes every call: an odometer whose changed
/// digits are rewritten in place (same length, so nothing is reallocated).
struct WideLiteral {
    text: String,
    start: usize,
    digits: [u8; 10],
}

impl WideLiteral {
    fn new() -> Self {
        let text = SELECT_WIDE.replace("$1", "0000000000");
        let start = text.find("0000000000").unwrap();
        WideLiteral {
            text,
            start,
            digits: [b'0'; 10],
        }
    }

    fn next(&mut self) -> &str {
        let mut k = self.digits.len();
        while k > 0 {
            k -= 1;
            if self.digits[k] == b'9' {
                self.digits[k] = b'0';
            } else {
                self.digits[k] += 1;
                break;
            }
        }
        let changed = std::str::from_utf8(&self.digits[k..]).unwrap();
        self.text
            .replace_range(self.start + k..self.start + self.digits.len(), changed);
        &self.text
    }
}

fn bench(cr: &mut Criterion) {
    let pg = Classifier::new(Dialect::Postgres, &["my_audit".to_string()], 1024);
    let my = Classifier::new(Dialect::MySql, &[], 1024);
    let uncached = Classifier::new(Dialect::Postgres, &[], 0);

    assert_eq!(pg.classify(SELECT).route, Route::Replica);
    assert_eq!(pg.classify(SELECT_WIDE).route, Route::Replica);
    assert_eq!(pg.classify(INSERT).route, Route::Primary);
    assert_eq!(my.classify(MYSQL_SELECT).route, Route::Replica);
    assert_eq!(pg.classify(CTE).reason, Reason::Write);
    assert_eq!(pg.cached(), 1, "the CTE takes the slow path");
    assert_eq!(uncached.classify(SELECT_WIDE).route, Route::Replica);
    // pgbench -S's statement with its literal inlined, as a simple-query client sends it.
    let literals: Vec<String> = (0..1024u64)
        .map(|i| {
            let aid = i.wrapping_mul(2_654_435_761) % 100_000 + 1;
            format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};")
        })
        .collect();
    let mut wide = WideLiteral::new();
    assert_eq!(pg.classify(wide.next()).route, Route::Replica);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..4 {
        for sql in &literals {
            assert_eq!(black_box(pg.classify(black_box(sql))).route, Route::Replica);
        }
    }
    for _ in 0..1000 {
        black_box(pg.classify(black_box(wide.next())));
    }
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed) - before,
        0,
        "statements that never repeat allocate"
    );
    for (c, sql) in [
        (&pg, SELECT),
        (&pg, SELECT_WIDE),
        (&pg, INSERT),
        (&my, MYSQL_SELECT),
        (&pg, CTE),
        (&uncached, SELECT_WIDE),
    ] {
        assert_eq!(allocations(c, sql), 0, "{sql} allocates");
    }

    let mut g = cr.benchmark_group("classify");
    g.bench_function("fast_select", |b| b.iter(|| pg.classify(black_box(SELECT))));
    g.bench_function("fast_select_wide", |b| {
        b.iter(|| pg.classify(black_box(SELECT_WIDE)))
    });
    g.bench_function("fast_select_wide_uncached", |b| {
        b.iter(|| uncached.classify(black_box(SELECT_WIDE)))
    });
    let mut i = 0;
    g.bench_function("pgbench_literal", |b| {
        b.iter(|| {
            i = (i + 1) % literals.len();
            pg.classify(black_box(&literals[i]))
        })
    });
    g.bench_function("wide_literal", |b| {
        b.iter(|| pg.classify(black_box(wide.next())))
    });
    g.bench_function("fast_insert", |b| b.iter(|| pg.classify(black_box(INSERT))));
    g.bench_function("fast_select_mysql", |b| {
        b.iter(|| my.classify(black_box(MYSQL_SELECT)))
    });
    g.bench_function("cte_cached", |b| b.iter(|| pg.classify(black_box(CTE))));
    g.bench_function("cte_uncached", |b| {
        b.iter(|| uncached.classify(black_box(CTE)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
