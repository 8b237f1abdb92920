//! The MariaDB side of health checks (`cluster::health`): one multi-statement query gives a
//! server's role, position, promotion point (used as the timeline) and whether its
//! replication is stalled. MariaDB only: MySQL's GTIDs (`uuid:1-N` sets, no
//! `@@gtid_binlog_pos`) are not read here.
//!
//! ```sql
//! SELECT @@read_only, @@gtid_binlog_pos, @@gtid_slave_pos; SHOW ALL SLAVES STATUS
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
//! ahead in one domain and behind in another: the sum can then overstate it by the first
//! domain's lead (and understates nothing). Transactions written locally on a replica (by a
//! user with `READ_ONLY ADMIN`) count as progress too.
//!
//! **Timeline.** MariaDB has no timeline; the timeline reported for a writable server is its
//! *promotion point*: 1 + the sum of the sequence numbers in its `@@gtid_slave_pos`, i.e. how
//! far it had replicated when it last stopped being a replica (1 for a server that never
//! was one). `STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0` keeps `@@gtid_slave_pos`,
//! so a promoted replica reports a higher timeline than the primary it replicated from, and
//! an old primary that keeps running writable is fenced as for PostgreSQL. A later
//! promotion happens further along the same sequence numbers, so promotion points grow from
//! one promotion to the next; a server that replicates again and is promoted back gets a
//! point at least as high as the one of the server it replicated from. Replicas report 0
//! (unknown): their lag is measured by position alone. What breaks it: resetting
//! `@@gtid_slave_pos` by hand, or making an old primary writable again without it ever
//! having replicated from the newer one (it keeps its old, lower point and stays fenced until
//! a restart or a reload that changes the backend list) — neither is a loss-free switchover.

use super::backend::{MyConn, MyQueryError, MyTarget, QueryResult};
use crate::cluster::health::{Probe, Prober};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// One round trip: the variables, then every replication connection.
pub const PROBE_SQL: &str =
    "SELECT @@read_only, @@gtid_binlog_pos, @@gtid_slave_pos; SHOW ALL SLAVES STATUS";

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

    async fn connect(&self, addr: SocketAddr, give_up: Duration) -> Result<MyConn, String> {
        let target = MyTarget {
            addr,
            connect_timeout: give_up,
            database: None,
            ..self.target.clone()
        };
        MyConn::connect(&target).await.map_err(|e| e.to_string())
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
        .filter(|row| row.len() == 3)
        .ok_or("probe: no variables row")?;
    let read_only = match vars[0].as_deref() {
        Some("0") | Some("OFF") => false,
        Some(_) => true,
        None => return Err("probe: @@read_only is NULL".into()),
    };
    let binlog = parse_gtid_pos(vars[1].as_deref().unwrap_or(""))?;
    let slave = parse_gtid_pos(vars[2].as_deref().unwrap_or(""))?;
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
    let mut have = binlog.clone();
    for (d, seq) in &slave {
        let e = have.entry(*d).or_insert(0);
        *e = (*e).max(*seq);
    }
    let sum = |m: &BTreeMap<u32, u64>| m.values().fold(0u64, |a, &s| a.saturating_add(s));
    Ok(Probe {
        in_recovery,
        lsn: sum(&have),
        timeline: if in_recovery {
            0
        } else {
            sum(&slave).saturating_add(1)
        },
        stalled,
    })
}

/// A GTID position (`0-1-5,1-2-7`: domain-server-sequence per domain) as domain -> highest
/// sequence number. Empty text is the empty position.
pub fn parse_gtid_pos(text: &str) -> Result<BTreeMap<u32, u64>, String> {
    let mut out = BTreeMap::new();
    for gtid in text.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let bad = || format!("malformed GTID {gtid:?}");
        let mut parts = gtid.split('-');
        let (Some(d), Some(s), Some(n), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let domain: u32 = d.parse().map_err(|_| bad())?;
        let _server: u32 = s.parse().map_err(|_| bad())?;
        let seq: u64 = n.parse().map_err(|_| bad())?;
        let e = out.entry(domain).or_insert(0);
        *e = (*e).max(seq);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::backend::ResultSet;

    fn result(vars: [&str; 3], status: &[(&str, &str)]) -> QueryResult {
        let v = |s: &str| (s != "NULL").then(|| s.to_string());
        let mut set = ResultSet {
            columns: vec![
                "Connection_name".into(),
                "Slave_IO_Running".into(),
                "Slave_SQL_Running".into(),
                "Seconds_Behind_Master".into(),
            ],
            ..Default::default()
        };
        for (io, sql) in status {
            set.rows.push(vec![v(""), v(io), v(sql), None]);
        }
        QueryResult {
            sets: vec![
                ResultSet {
                    columns: vec![
                        "@@read_only".into(),
                        "@@gtid_binlog_pos".into(),
                        "@@gtid_slave_pos".into(),
                    ],
                    rows: vec![vars.iter().map(|s| v(s)).collect()],
                    ..Default::default()
                },
                set,
            ],
            ..Default::default()
        }
    }

    #[test]
    fn gtid_positions_parse() {
        assert!(parse_gtid_pos("").unwrap().is_empty());
        let p = parse_gtid_pos("0-1-5,\n1-2-7, 0-3-4").unwrap();
        assert_eq!(p.into_iter().collect::<Vec<_>>(), vec![(0, 5), (1, 7)]);
        for bad in [
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0-1-x",
            "-1-2",
            "0-1-99999999999999999999",
        ] {
            assert!(parse_gtid_pos(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_positions_and_stalls() {
        // A primary that never replicated.
        let p = parse_probe(&result(["0", "0-1-10", ""], &[])).unwrap();
        assert_eq!(
            (p.in_recovery, p.lsn, p.timeline, p.stalled),
            (false, 10, 1, false)
        );
        // A running replica: its applied position; no timeline.
        let p = parse_probe(&result(["1", "0-1-8", "0-1-8"], &[("Yes", "Yes")])).unwrap();
        assert_eq!(
            (p.in_recovery, p.lsn, p.timeline, p.stalled),
            (true, 8, 0, false)
        );
        // Primary unreachable: connecting is not a stall.
        let p = parse_probe(&result(["1", "", "0-1-8"], &[("Connecting", "Yes")])).unwrap();
        assert_eq!((p.in_recovery, p.lsn, p.stalled), (true, 8, false));
        // SQL thread stopped, IO thread stopped, read-only without replication: stalled.
        for (ro, threads) in [
            ("1", &[("Yes", "No")][..]),
            ("1", &[("No", "Yes")][..]),
            ("1", &[][..]),
            ("1", &[("Yes", "Yes"), ("Yes", "No")][..]),
            ("0", &[("Yes", "No")][..]),
        ] {
            let p = parse_probe(&result([ro, "", "0-1-8"], threads)).unwrap();
            assert!(p.in_recovery && p.stalled, "{ro} {threads:?}");
        }
        // Writable with replication configured but stopped: a primary.
        let p = parse_probe(&result(["OFF", "0-1-3", ""], &[("No", "No")])).unwrap();
        assert!(!p.in_recovery && !p.stalled);
        // A promoted replica: writable, its promotion point above the old primary's 1.
        let p = parse_probe(&result(["0", "0-2-12", "0-1-9"], &[])).unwrap();
        assert_eq!((p.in_recovery, p.lsn, p.timeline), (false, 12, 10));
        // Several domains: per domain the larger of the two, summed.
        let p = parse_probe(&result(
            ["1", "0-1-5,1-1-3", "0-1-6,2-4-1"],
            &[("Yes", "Yes")],
        ))
        .unwrap();
        assert_eq!(p.lsn, 6 + 3 + 1);
    }

    #[test]
    fn malformed_answers_are_errors() {
        assert!(parse_probe(&QueryResult::default()).is_err());
        let mut r = result(["0", "", ""], &[]);
        r.sets.pop();
        assert!(parse_probe(&r).is_err());
        let mut r = result(["0", "", ""], &[]);
        r.sets[1].columns = vec!["x".into()];
        assert!(parse_probe(&r).is_err());
        assert!(parse_probe(&result(["NULL", "", ""], &[])).is_err());
        assert!(parse_probe(&result(["0", "zz", ""], &[])).is_err());
    }
}
