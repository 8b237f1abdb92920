//! The MariaDB side of health checks (`cluster::health`): one multi-statement query gives a
//! server's role, position, takeover point (used as the timeline) and whether its
//! replication is stalled. MariaDB only: MySQL's GTIDs (`uuid:1-N` sets, no
//! `@@gtid_binlog_pos`) are not read here.
//!
//! ```sql
//! SELECT @@read_only, @@gtid_binlog_pos, @@gtid_slave_pos, @@gtid_binlog_state, @@server_id;
//! SHOW ALL SLAVES STATUS
//! ```
//!
//! `SHOW ALL SLAVES STATUS` lists every replication connection (multi-source included) and
//! needs `SLAVE MONITOR` (`REPLICA MONITOR`; `REPLICATION CLIENT` or `SUPER` before 10.5.9) for
//! the health-check user. Without it the probe fails with an error saying so: a replica whose
//! SQL thread has stopped would otherwise be served from without anyone noticing.
//!
//! **Role.** A server with `@@read_only` off and no replication running is writable (the
//! primary). A read-only server, or one with a replication connection whose SQL thread runs
//! or whose IO thread runs or is connecting, is a replica (`in_recovery`).
//!
//! **Stalled.** A replica is stalled (unbounded lag, see `cluster::health::Probe::stalled`)
//! when any of its replication connections has its SQL thread not running (`STOP SLAVE
//! SQL_THREAD`, an apply error) or its IO thread stopped (`No`: `STOP SLAVE IO_THREAD`, an
//! error it gave up on), or when it is read-only with no replication connection at all. An IO
//! thread that is `Connecting` (the primary is down or unreachable) is not a stall: what the
//! replica misses is measured by the position history, which ages it only while the primary
//! writes without it. `Seconds_Behind_Master` is not used: it is NULL whenever the IO thread
//! is not connected, which says nothing about lag, and never counts as zero here.
//!
//! **Position** (an opaque monotonic `u64`): the sum over replication domains of the highest
//! GTID sequence number the server has, taking per domain the larger of `@@gtid_binlog_pos`
//! (what it wrote to its binary log: everything on a primary, and what it applied on a replica
//! with `log_slave_updates`) and `@@gtid_slave_pos` (what it applied as a replica). This is
//! the primary's `@@gtid_binlog_pos` and the replica's `@@gtid_slave_pos` of the usual
//! setups, read the same way for both roles, so a promotion during the probe cannot mix two
//! rules. With one domain (the usual single-primary topology) it is that domain's sequence
//! number. With several, each domain's number only grows on every server (GTID strict mode),
//! so the sum grows with every transaction a server gets; and a replica that applies the
//! primary's binary log in order (one SQL thread, or parallel replication in a single domain,
//! `slave_parallel_mode` other than per-domain out-of-order) always holds a prefix of it, so
//! its sum is below the primary's exactly while it lacks something, and reaching the
//! primary's sum means holding everything the primary had then (read-your-writes is exact).
//! A replica that applies domains independently (parallel replication across domains) may be
//! ahead in one domain and behind in another: its sum can then reach a position of the
//! primary while it still lacks a transaction of that position in another domain (a
//! read-your-writes read may be served from it too early); a replica that has everything is
//! never counted as behind. Transactions written locally on a replica (by a
//! user with `READ_ONLY ADMIN`) count as progress too. Numbers of different histories are
//! not comparable: after a promotion, a replica still following an old primary that keeps
//! taking writes from elsewhere can reach the new primary's number with other transactions
//! (replicas report no timeline that could tell them apart, see below); writes through the
//! proxy go to the new primary only, so in practice such a replica stops moving and ages.
//!
//! **Timeline.** MariaDB has no timeline. The timeline reported for a writable server is its
//! *takeover point*: 1 + the sum over domains of the highest sequence number in its
//! `@@gtid_binlog_state` that another server (another `server_id`) wrote, i.e. how far its
//! binary log had come from elsewhere before its own writing took over (1 for a server whose
//! binary log holds only its own transactions, such as a primary that never replicated).
//! Replicas log what they apply (`log_slave_updates`), so a promoted replica has the old
//! primary's last position + 1 at once, before it writes anything, and an old primary that
//! keeps running writable is on an older timeline and fenced, as for PostgreSQL. Only
//! replication and `RESET MASTER` / `SET GLOBAL gtid_binlog_state` change
//! `@@gtid_binlog_state`: not `STOP SLAVE`, `RESET SLAVE ALL`, `read_only`, nor the
//! `SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos` that prepares an old primary to replicate
//! (so the point of a writable server does not move, and an old primary being turned into a
//! replica cannot take the writes back). A later promotion happens further along the
//! sequence numbers, and a server that replicates from the newer primary and is promoted
//! back gets a higher point again. Replicas report 0 (unknown): their lag is measured by
//! position alone.
//!
//! It degrades to no fencing (equal points: reachability decides, and the current primary
//! is kept on a tie) without `log_slave_updates`, or when servers share a `server_id`. What
//! breaks it: `RESET MASTER` or `SET GLOBAL gtid_binlog_state` on a running primary (its point
//! drops and it is fenced once another server was seen writable on a higher one), and making
//! an old primary writable again without it replicating from the newer one first (it keeps
//! its lower point and stays fenced) — neither is a loss-free switchover; a restart or a
//! reload that changes the backend list lifts a fence.

use super::backend::{MyConn, MyQueryError, MyTarget, QueryResult};
use crate::cluster::health::{Probe, Prober};
use crate::config::BackendAddr;
use std::collections::BTreeMap;
use std::time::Duration;

/// One round trip: the variables, then every replication connection.
pub const PROBE_SQL: &str = "SELECT @@read_only, @@gtid_binlog_pos, @@gtid_slave_pos, \
     @@gtid_binlog_state, @@server_id; SHOW ALL SLAVES STATUS";

/// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: a privilege is missing.
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;

/// Probes MariaDB servers with a cluster's credentials.
#[derive(Clone)]
pub struct MyProber {
    /// Credentials; the address and timeout are replaced per backend, and the probe
    /// connects without a default schema (it reads only server variables).
    pub target: MyTarget,
}

impl Prober for MyProber {
    type Conn = MyConn;

    async fn connect(&self, addr: BackendAddr, give_up: Duration) -> Result<MyConn, String> {
        let target = MyTarget {
            addr,
            connect_timeout: give_up,
            database: None,
            ..self.target.clone()
        };
        MyConn::connect(&target).await.map_err(|e| e.to_string())
    }

    fn goodbye(&self, conn: &mut Self::Conn) {
        crate::pool::Reusable::say_goodbye(conn);
    }

    async fn probe(&self, conn: &mut MyConn, give_up: Duration) -> Result<Probe, String> {
        let r = conn.query(PROBE_SQL, give_up).await.map_err(|e| match e {
            MyQueryError::Server {
                code: ER_SPECIFIC_ACCESS_DENIED,
                message,
                ..
            } => format!(
                "health check user {} may not read replication status (grant it SLAVE \
                 MONITOR): {message}",
                self.target.user
            ),
            e => e.to_string(),
        })?;
        parse_probe(&r)
    }
}

/// The state of one replication connection's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Threads {
    /// SQL thread `Yes`.
    sql: bool,
    /// IO thread `Yes` or `Connecting` (or anything else but `No`).
    io: bool,
}

/// The probe's answer as a [`Probe`].
pub fn parse_probe(r: &QueryResult) -> Result<Probe, String> {
    let vars = r
        .sets
        .first()
        .and_then(|s| s.rows.first())
        .filter(|row| row.len() == 5)
        .ok_or("probe: no variables row")?;
    let text = |i: usize| vars[i].as_deref().unwrap_or("");
    let read_only = match vars[0].as_deref() {
        Some("0") | Some("OFF") => false,
        Some(_) => true,
        None => return Err("probe: @@read_only is NULL".into()),
    };
    let binlog = parse_gtids(text(1))?;
    let slave = parse_gtids(text(2))?;
    let state = parse_gtids(text(3))?;
    let server_id: u32 = text(4)
        .parse()
        .map_err(|_| format!("probe: bad @@server_id {:?}", text(4)))?;
    let status = r.sets.get(1).ok_or("probe: no replication status")?;
    let column = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| status.column(n))
            .ok_or_else(|| format!("probe: no {} column in the replication status", names[0]))
    };
    let io_col = column(&["Slave_IO_Running", "Replica_IO_Running"])?;
    let sql_col = column(&["Slave_SQL_Running", "Replica_SQL_Running"])?;
    let threads: Vec<Threads> = status
        .rows
        .iter()
        .map(|row| {
            let get = |i: usize| row.get(i).and_then(|v| v.as_deref()).unwrap_or("No");
            Threads {
                sql: get(sql_col).eq_ignore_ascii_case("Yes"),
                io: !get(io_col).eq_ignore_ascii_case("No"),
            }
        })
        .collect();
    let replicating = threads.iter().any(|t| t.sql || t.io);
    let in_recovery = read_only || replicating;
    let stalled = in_recovery && (threads.is_empty() || threads.iter().any(|t| !t.sql || !t.io));
    let lsn = sum_of_highest(binlog.iter().chain(&slave));
    let timeline = if in_recovery {
        0
    } else {
        sum_of_highest(state.iter().filter(|g| g.server != server_id)).saturating_add(1)
    };
    Ok(Probe {
        in_recovery,
        lsn,
        timeline,
        stalled,
    })
}

/// One GTID: replication domain, originating server, sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// The sum over domains of the highest sequence number among `gtids`.
fn sum_of_highest<'a>(gtids: impl Iterator<Item = &'a Gtid>) -> u64 {
    let mut highest = BTreeMap::<u32, u64>::new();
    for g in gtids {
        let e = highest.entry(g.domain).or_insert(0);
        *e = (*e).max(g.seq);
    }
    highest.values().fold(0u64, |a, &s| a.saturating_add(s))
}

/// A GTID list (`0-1-5,1-2-7`: domain-server-sequence, as in `@@gtid_binlog_pos`,
/// `@@gtid_slave_pos` and `@@gtid_binlog_state`). Empty text is the empty list.
pub fn parse_gtids(text: &str) -> Result<Vec<Gtid>, String> {
    let mut out = Vec::new();
    for gtid in text.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let bad = || format!("malformed GTID {gtid:?}");
        let mut parts = gtid.split('-');
        let (Some(d), Some(s), Some(n), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        out.push(Gtid {
            domain: d.parse().map_err(|_| bad())?,
            server: s.parse().map_err(|_| bad())?,
            seq: n.parse().map_err(|_| bad())?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::backend::ResultSet;

    /// The probe's answer: read_only, binlog pos, slave pos, binlog state, server id, and
    /// (IO, SQL) thread states of each replication connection.
    fn result(vars: [&str; 5], status: &[(&str, &str)]) -> QueryResult {
        let v = |s: &str| (s != "NULL").then(|| s.to_string());
        let mut set = ResultSet {
            columns: [
                "Connection_name",
                "Slave_IO_Running",
                "Slave_SQL_Running",
                "Seconds_Behind_Master",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        };
        for (io, sql) in status {
            set.rows.push(vec![v(""), v(io), v(sql), None]);
        }
        QueryResult {
            sets: vec![
                ResultSet {
                    columns: vec!["@@read_only".into(); 5],
                    rows: vec![vars.iter().map(|s| v(s)).collect()],
                    ..Default::default()
                },
                set,
            ],
            ..Default::default()
        }
    }

    #[test]
    fn gtid_lists_parse() {
        assert!(parse_gtids("").unwrap().is_empty());
        let g = parse_gtids("0-1-5,\n1-2-7, 0-3-4").unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(
            g[1],
            Gtid {
                domain: 1,
                server: 2,
                seq: 7
            }
        );
        assert_eq!(sum_of_highest(g.iter()), 5 + 7);
        for bad in [
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0-1-x",
            "-1-2",
            "0-1-99999999999999999999",
        ] {
            assert!(parse_gtids(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_positions_and_stalls() {
        // A primary that never replicated: only its own GTIDs in its binary log.
        let p = parse_probe(&result(["0", "0-1-10", "", "0-1-10", "1"], &[])).unwrap();
        assert_eq!(
            (p.in_recovery, p.lsn, p.timeline, p.stalled),
            (false, 10, 1, false)
        );
        // A running replica: its applied position; no timeline.
        let running = [("Yes", "Yes")];
        let p = parse_probe(&result(["1", "0-1-8", "0-1-8", "0-1-8", "2"], &running)).unwrap();
        assert_eq!(
            (p.in_recovery, p.lsn, p.timeline, p.stalled),
            (true, 8, 0, false)
        );
        // Primary unreachable: connecting is not a stall.
        let p = parse_probe(&result(
            ["1", "", "0-1-8", "", "2"],
            &[("Connecting", "Yes")],
        ))
        .unwrap();
        assert_eq!((p.in_recovery, p.lsn, p.stalled), (true, 8, false));
        // SQL thread stopped, IO thread stopped, read-only without replication: stalled.
        for (ro, threads) in [
            ("1", &[("Yes", "No")][..]),
            ("1", &[("No", "Yes")][..]),
            ("1", &[][..]),
            ("1", &[("Yes", "Yes"), ("Yes", "No")][..]),
            ("0", &[("Yes", "No")][..]),
        ] {
            let p = parse_probe(&result([ro, "", "0-1-8", "", "2"], threads)).unwrap();
            assert!(p.in_recovery && p.stalled, "{ro} {threads:?}");
        }
        // Writable with replication configured but stopped: a primary.
        let p = parse_probe(&result(["OFF", "0-1-3", "", "0-1-3", "1"], &[("No", "No")])).unwrap();
        assert!(!p.in_recovery && !p.stalled);
        // A promoted replica (server 2): its takeover point is the old primary's last
        // position + 1, before and after its own writes.
        let p = parse_probe(&result(["0", "0-1-9", "0-1-9", "0-1-9", "2"], &[])).unwrap();
        assert_eq!((p.in_recovery, p.lsn, p.timeline), (false, 9, 10));
        let p = parse_probe(&result(["0", "0-2-12", "0-1-9", "0-1-9,0-2-12", "2"], &[])).unwrap();
        assert_eq!((p.in_recovery, p.lsn, p.timeline), (false, 12, 10));
        // The old primary, still writable, even with gtid_slave_pos set to prepare it to
        // replicate: its point stays 1.
        let p = parse_probe(&result(["0", "0-1-11", "0-1-11", "0-1-11", "1"], &[])).unwrap();
        assert_eq!((p.lsn, p.timeline), (11, 1));
        // Several domains: per domain the larger of the two positions, summed.
        let p = parse_probe(&result(
            ["1", "0-1-5,1-1-3", "0-1-6,2-4-1", "", "3"],
            &running,
        ))
        .unwrap();
        assert_eq!(p.lsn, 6 + 3 + 1);
    }

    #[test]
    fn malformed_answers_are_errors() {
        assert!(parse_probe(&QueryResult::default()).is_err());
        let ok = ["0", "", "", "", "1"];
        let mut r = result(ok, &[]);
        r.sets.pop();
        assert!(parse_probe(&r).is_err());
        let mut r = result(ok, &[]);
        r.sets[1].columns = vec!["x".into()];
        assert!(parse_probe(&r).is_err());
        assert!(parse_probe(&result(["NULL", "", "", "", "1"], &[])).is_err());
        assert!(parse_probe(&result(["0", "zz", "", "", "1"], &[])).is_err());
        assert!(parse_probe(&result(["0", "", "", "", "x"], &[])).is_err());
        let mut r = result(ok, &[]);
        r.sets[0].rows[0].pop();
        assert!(parse_probe(&r).is_err());
    }
}
