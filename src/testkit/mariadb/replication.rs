//! Replication: users, CHANGE MASTER, GTID positions, waiting for replicas, and the
//! failover steps tests take (promote, repoint, stop and start threads).

use super::*;

/// Parses a GTID list such as `0-1-7,1-2-3` into domain -> (server id, sequence number).
pub(super) fn parse_gtids(list: &str) -> Result<BTreeMap<u32, (u32, u64)>> {
    let mut out = BTreeMap::new();
    for g in list.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let parts: Vec<&str> = g.split('-').collect();
        let [d, s, n] = parts[..] else {
            bail!("bad GTID {g:?} in {list:?}");
        };
        let bad = || anyhow!("bad GTID {g:?} in {list:?}");
        let d = d.parse().map_err(|_| bad())?;
        out.insert(
            d,
            (s.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?),
        );
    }
    Ok(out)
}

/// Whether GTID position `have` (such as a replica's `@@gtid_slave_pos`) includes everything
/// in `want` (such as the primary's `@@gtid_binlog_pos`): for every replication domain of
/// `want`, `have` has reached at least its sequence number (GTID strict mode keeps sequence
/// numbers of one domain increasing across servers).
pub fn gtid_covers(have: &str, want: &str) -> Result<bool> {
    let (have, want) = (parse_gtids(have)?, parse_gtids(want)?);
    Ok(want
        .iter()
        .all(|(d, (_, seq))| have.get(d).is_some_and(|(_, h)| h >= seq)))
}

impl MariaCluster {
    pub(super) fn create_users(&self) -> Result<()> {
        // Root only on the socket and 127.0.0.1: the entries for the host name and ::1 are
        // ignored with --skip-name-resolve and only add warnings to every log.
        let stray = self.query(
            0,
            "SELECT user, host FROM mysql.global_priv WHERE user = 'root' \
             AND host NOT IN ('localhost', '127.0.0.1')",
        )?;
        let mut sql = String::new();
        for row in stray {
            sql += &format!("DROP USER {}@{};", sql_quote(&row[0]), sql_quote(&row[1]));
        }
        let native = |user: &str, pw: &str| {
            format!(
                "CREATE USER '{user}'@'%' IDENTIFIED VIA mysql_native_password USING \
                 PASSWORD({});",
                sql_quote(pw)
            )
        };
        sql += &native(REPL_USER, REPL_PASSWORD);
        sql += &format!("GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%';");
        sql += &native(APP_USER, APP_PASSWORD);
        sql += &format!("GRANT {APP_PRIVILEGES} ON *.* TO '{APP_USER}'@'%';");
        sql += &native(PROXY_USER, PROXY_PASSWORD);
        sql += &format!(
            "GRANT {APP_PRIVILEGES}, {PROXY_EXTRA_PRIVILEGES} ON *.* TO '{PROXY_USER}'@'%';"
        );
        self.exec(0, &sql).context("create users")
    }

    /// `CHANGE MASTER TO` `source` with GTID `slave_pos`, `START SLAVE`, `read_only=1`.
    pub(super) fn change_master(&self, node: usize, source: usize) -> Result<()> {
        let sql = format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{REPL_USER}', \
             MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; \
             START SLAVE; SET GLOBAL read_only=1",
            self.port(source),
            sql_quote(REPL_PASSWORD)
        );
        self.exec(node, &sql)
            .with_context(|| format!("make node {node} a replica of node {source}"))?;
        let mut t = lock(&self.topo);
        t.upstream[node] = Some(source);
        Ok(())
    }

    /// Waits until both replication threads of every running replica of the primary run.
    pub(super) fn wait_replicating(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for node in self.current_replicas() {
            let left = deadline.saturating_duration_since(Instant::now());
            let running = || {
                self.replica_status(node).is_ok_and(|s| {
                    s.is_some_and(|s| {
                        s.get("Slave_IO_Running").is_some_and(|v| v == "Yes")
                            && s.get("Slave_SQL_Running").is_some_and(|v| v == "Yes")
                    })
                })
            };
            if !poll(left, 20, running) {
                bail!(
                    "replica {node} not replicating after {timeout:?}: {:?}\n--- tail of {} \
                     ---\n{}",
                    self.replica_status(node),
                    self.nodes[node].log.display(),
                    log_tail(&self.nodes[node].log, 20)
                );
            }
        }
        Ok(())
    }

    /// Running nodes that replicate from the current primary.
    pub(super) fn current_replicas(&self) -> Vec<usize> {
        let t = lock(&self.topo).clone();
        (0..self.nodes.len())
            .filter(|&n| t.upstream[n] == Some(t.primary) && self.is_running(n))
            .collect()
    }

    // ---- SQL ----

    /// `SHOW REPLICA STATUS` of `node` as column name -> value (`Slave_IO_Running`,
    /// `Slave_SQL_Running`, `Seconds_Behind_Master`, `Gtid_IO_Pos`, `SQL_Delay`, ...);
    /// `None` when the node is not configured as a replica.
    pub fn replica_status(&self, node: usize) -> Result<Option<BTreeMap<String, String>>> {
        Ok(self
            .query_named(node, "SHOW REPLICA STATUS")?
            .into_iter()
            .next())
    }

    /// `@@gtid_binlog_pos` of `node`: the last GTID of each domain in its binary log.
    pub fn gtid_binlog_pos(&self, node: usize) -> Result<String> {
        self.value(node, "SELECT @@gtid_binlog_pos")
    }

    /// `@@gtid_slave_pos` of `node`: the last GTID of each domain it replayed as a replica.
    pub fn gtid_slave_pos(&self, node: usize) -> Result<String> {
        self.value(node, "SELECT @@gtid_slave_pos")
    }

    /// Waits until every running replica of the current primary has replayed the primary's
    /// binary log up to its `@@gtid_binlog_pos` at the time of the call (compared with each
    /// replica's `@@gtid_slave_pos`). Stopped replicas are skipped.
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<()> {
        let target = self.gtid_binlog_pos(self.primary())?;
        let deadline = Instant::now() + timeout;
        for node in self.current_replicas() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_replayed(node, &target, left)?;
        }
        Ok(())
    }

    /// Waits until replica `node` has replayed its primary's binary log up to the primary's
    /// `@@gtid_binlog_pos` at the time of the call.
    pub fn wait_node_caught_up(&self, node: usize, timeout: Duration) -> Result<()> {
        let target = self.gtid_binlog_pos(self.primary())?;
        self.wait_replayed(node, &target, timeout)
    }

    /// Waits until `@@gtid_slave_pos` of `node` covers GTID position `target`.
    pub fn wait_replayed(&self, node: usize, target: &str, timeout: Duration) -> Result<()> {
        let mut last = String::new();
        let done = || match self.gtid_slave_pos(node) {
            Ok(pos) => {
                let ok = gtid_covers(&pos, target).unwrap_or(false);
                last = pos;
                ok
            }
            Err(e) => {
                last = format!("{e:#}");
                false
            }
        };
        if !poll(timeout, 20, done) {
            bail!(
                "replica {node} has not replayed up to {target:?} after {timeout:?} (it is at \
                 {last:?}; status {:?})",
                self.replica_status(node)
                    .ok()
                    .flatten()
                    .map(|s| s.get("Last_Error").cloned().unwrap_or_default())
            );
        }
        Ok(())
    }

    // ---- replication control ----

    /// `STOP SLAVE SQL_THREAD` on replica `node`: it keeps receiving events but stops
    /// applying them (`Slave_SQL_Running: No`).
    pub fn stop_sql_thread(&self, node: usize) -> Result<()> {
        self.exec(node, "STOP SLAVE SQL_THREAD")
    }

    /// `START SLAVE SQL_THREAD` on replica `node`.
    pub fn start_sql_thread(&self, node: usize) -> Result<()> {
        self.exec(node, "START SLAVE SQL_THREAD")
    }

    /// `STOP SLAVE` (both threads) on replica `node`.
    pub fn stop_replication(&self, node: usize) -> Result<()> {
        self.exec(node, "STOP SLAVE")
    }

    /// `START SLAVE` (both threads) on replica `node`.
    pub fn start_replication(&self, node: usize) -> Result<()> {
        self.exec(node, "START SLAVE")
    }

    /// Makes replica `node` apply each event `seconds` after the primary wrote it
    /// (`CHANGE MASTER TO MASTER_DELAY`; 0 turns it off). Restarts its replication threads.
    pub fn set_master_delay(&self, node: usize, seconds: u32) -> Result<()> {
        self.exec(
            node,
            &format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY={seconds}; START SLAVE"),
        )
    }

    /// Promotes replica `node`: `STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0`. Events
    /// it received but had not applied yet are dropped (wait with
    /// [`MariaCluster::wait_node_caught_up`] first for a loss-free switch). The old primary
    /// is left alone and counts as detached (neither primary nor replica) from then on.
    pub fn promote(&self, node: usize) -> Result<()> {
        self.exec(node, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0")
            .with_context(|| format!("promote node {node}"))?;
        let mut t = lock(&self.topo);
        t.upstream[node] = None;
        t.primary = node;
        Ok(())
    }

    /// Makes `node` replicate from `source` with GTID `slave_pos` and `read_only=1`. A node
    /// that was not a replica (an old primary) first takes its own `@@gtid_binlog_pos` as its
    /// `@@gtid_slave_pos`, so it continues from what it already has.
    pub fn replicate_from(&self, node: usize, source: usize) -> Result<()> {
        if node == source {
            bail!("node {node} cannot replicate from itself");
        }
        let was_replica = lock(&self.topo).upstream[node].is_some();
        let mut sql = String::from("STOP SLAVE;");
        if !was_replica {
            sql += "SET GLOBAL read_only=1; SET GLOBAL gtid_slave_pos=@@gtid_binlog_pos;";
        }
        self.exec(node, &sql)
            .with_context(|| format!("prepare node {node} to replicate"))?;
        if was_replica {
            // Keep nothing of the old source's connection but the GTID position.
            self.exec(node, "RESET SLAVE ALL")?;
        }
        self.change_master(node, source)
    }

    // ---- processes ----
}
