//! Calls `Classifier::classify` 10,000 times on one kind of statement, for counting
//! instructions per call with callgrind (repeatable on a loaded machine, unlike wall time):
//!
//! ```sh
//! cargo build --release --example classify_calls
//! valgrind --tool=callgrind --toggle-collect='*Classifier*classify' \
//!     target/release/examples/classify_calls pgbench
//! # instructions per call = the "totals:" line of callgrind.out.<pid> / 10,000
//! ```
//!
//! Cases: `pgbench` (pgbench -S's SELECT with a different inline literal every call, as a
//! simple-query client sends it), `wide` (the 270-byte SELECT of benches/classify.rs, cache
//! disabled), `wide_cached` (the same, answered from the cache), `mysql` (a backticked MySQL
//! SELECT).

use std::hint::black_box;

use switchyard::router::classify::{Classifier, Dialect};

const CALLS: usize = 10_000;
const SELECT_WIDE: &str = "/* app=web */ SELECT u.id, u.name, u.email, count(o.id) AS orders \
     FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.tenant = $1 AND u.created_at > \
     now() - interval '30 days' GROUP BY u.id, u.name, u.email ORDER BY orders DESC LIMIT 50";
const MYSQL_SELECT: &str = "SELECT `id`, `name` FROM `users` WHERE `id` = ? LIMIT 1";

fn main() {
    let case = std::env::args().nth(1).unwrap_or_default();
    let pg = Classifier::new(Dialect::Postgres, &[], 10_000);
    let uncached = Classifier::new(Dialect::Postgres, &[], 0);
    let my = Classifier::new(Dialect::MySql, &[], 10_000);
    // Built before the first call, so the toggled-on part holds only the classification.
    let literals: Vec<String> = (0..CALLS)
        .map(|i| {
            format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                i * 7 + 1
            )
        })
        .collect();
    let (classifier, texts): (&Classifier, Vec<&str>) = match case.as_str() {
        "pgbench" => (&pg, literals.iter().map(String::as_str).collect()),
        "wide" => (&uncached, vec![SELECT_WIDE; CALLS]),
        "wide_cached" => (&pg, vec![SELECT_WIDE; CALLS]),
        "mysql" => (&my, vec![MYSQL_SELECT; CALLS]),
        _ => {
            eprintln!("usage: classify_calls pgbench|wide|wide_cached|mysql");
            std::process::exit(2);
        }
    };
    for sql in texts {
        black_box(classifier.classify(black_box(sql)));
    }
}
