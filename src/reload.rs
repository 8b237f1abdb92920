//! Live config reload, all-or-nothing (DESIGN invariant 5).
//!
//! A reload (SIGHUP or `POST /reload`) reads the config file again and validates all of it.
//! If anything is wrong nothing changes: the error, naming the key, is logged, returned, and
//! counted in `switchyard_config_reload_total{result="error"}`. If it is valid, a new
//! generation is built and swapped in:
//!
//! - topology: new [`ClusterState`]s; a backend whose address stays keeps its health view
//!   (up, role, lag, read-set membership) so routing is continuous;
//! - health checks: the previous generation's tasks are cancelled, new ones start;
//! - pools: every worker gets a new map; a backend pool whose address, credentials,
//!   database, size and timeouts are unchanged is shared with the new map, others are new;
//! - sessions move to the new map at their next checkout (between transactions), so
//!   existing clients keep their connections. Pools no longer used are closed: idle
//!   connections go at once, connections in use finish their transaction and are closed
//!   when returned (the drain);
//! - config snapshot (users, limits, timeouts) and the classifier (routing options).
//!
//! Keys read only at start (listen addresses, workers, pool mode, TLS files, the admin
//! listener and token) are reported as needing a restart.

use crate::app::{PoolMap, Shared};
use crate::cluster::ClusterState;
use crate::config::{Config, Health};
use crate::net::backend::SocketList;
use crate::pg::worker::backend_target;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use crate::app::ClusterMap;

/// One generation's health checks, sent to the health thread.
pub struct HealthGeneration {
    checks: Vec<(Arc<ClusterState>, Probe, Vec<Arc<SocketList>>)>,
    health: Health,
}

/// How one cluster's servers are probed.
pub enum Probe {
    Postgres(crate::pg::probe::PgProber),
    Mysql(crate::mysql::probe::MyProber),
}

/// Topology for `cfg`; backends that were in `old` (same database and address) keep their
/// health view.
pub fn build_states(cfg: &Config, old: Option<&ClusterMap>) -> Result<ClusterMap, String> {
    let mut out = HashMap::new();
    for c in &cfg.clusters {
        let mut state = ClusterState::new(c)?;
        if let Some(prev) = old.and_then(|o| o.get(&c.database)) {
            state.inherit(prev);
            state.pause = prev.pause.clone();
        }
        out.insert(c.database.clone(), Arc::new(state));
    }
    Ok(out)
}

/// Hand `states`' health checks to the health thread (it cancels the previous ones).
pub fn send_health(shared: &Shared, cfg: &Config, states: &ClusterMap) {
    let checks = cfg
        .clusters
        .iter()
        .map(|c| {
            let probe = match c.protocol {
                crate::config::Protocol::Postgres => Probe::Postgres(crate::pg::probe::PgProber {
                    target: backend_target(cfg, c),
                }),
                crate::config::Protocol::Mysql => Probe::Mysql(crate::mysql::probe::MyProber {
                    target: crate::mysql::worker::backend_target(cfg, c),
                }),
            };
            let state = states[&c.database].clone();
            let sockets = state
                .backends
                .iter()
                .map(|b| shared.server_caps.sockets_of(&c.name, b.addr))
                .collect();
            (state, probe, sockets)
        })
        .collect();
    let _ = shared.health_tx.send(HealthGeneration {
        checks,
        health: cfg.health.clone(),
    });
}

/// The health thread: run each generation's checks until the next one or shutdown.
pub async fn run_health(
    shared: Arc<Shared>,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<HealthGeneration>,
) {
    let mut current: Option<CancellationToken> = None;
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let next = tokio::select! {
            g = rx.recv() => g,
            _ = shared.shutdown.cancelled() => None,
        };
        let Some(generation) = next else { break };
        if let Some(t) = current.take() {
            t.cancel();
        }
        let token = shared.shutdown.child_token();
        for (state, probe, sockets) in generation.checks {
            let health = generation.health.clone();
            let stop = token.clone();
            match probe {
                Probe::Postgres(p) => {
                    tracker.spawn(crate::cluster::health::run(state, p, health, sockets, stop))
                }
                Probe::Mysql(p) => {
                    tracker.spawn(crate::cluster::health::run(state, p, health, sockets, stop))
                }
            };
        }
        current = Some(token);
    }
    if let Some(t) = current {
        t.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

/// `[general] watch_config`: every interval (read from the config in force, so a reload can
/// turn it on, change it or turn it off), read the config file and reload when its bytes
/// differ from the ones last looked at. A failed reload is not retried until the file
/// changes again (it is logged and counted once). Ends with `shutdown`.
pub fn watch(shared: &Shared) {
    let Some(path) = shared.config_path.clone() else {
        return;
    };
    let digest = |path: &std::path::Path| {
        use std::hash::{Hash, Hasher};
        std::fs::read(path).ok().map(|bytes| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        })
    };
    let mut seen = digest(&path);
    let mut waited = Duration::ZERO;
    const TICK: Duration = Duration::from_millis(100);
    while !shared.shutdown.is_cancelled() {
        std::thread::sleep(TICK);
        let interval = shared.config().general.watch_config;
        waited += TICK;
        if interval.is_zero() || waited < interval {
            continue;
        }
        waited = Duration::ZERO;
        let now = digest(&path);
        // A file that cannot be read now (being replaced) is looked at again next time.
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        tracing::info!(path = %path.display(), "config file changed: reloading (watch_config)");
        let _ = reload(shared);
    }
}

/// Read the config file again and apply it. Ok: a summary (and what needs a restart);
/// Err: why nothing changed.
pub fn reload(shared: &Shared) -> Result<String, String> {
    let _guard = shared.reload_lock.lock().unwrap();
    let result = apply(shared);
    shared.metrics.reload(result.is_ok());
    match &result {
        Ok(msg) => tracing::info!(summary = %msg, "config reloaded"),
        Err(e) => tracing::error!(error = %e, "config reload failed; nothing changed"),
    }
    result
}

fn apply(shared: &Shared) -> Result<String, String> {
    let path = shared
        .config_path
        .as_deref()
        .ok_or("no config file to reload (the proxy was started without one)")?;
    let cfg =
        Arc::new(crate::app::load_config(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let old_cfg = shared.config();
    let old_states = shared.clusters.load_full();
    let states = Arc::new(build_states(&cfg, Some(&old_states))?);
    let generation = shared.generation.load(Ordering::Acquire) + 1;
    // The edge's next generation (certificates load here, so a bad one fails the reload).
    let edge = match (&shared.edge, &cfg.edge) {
        (Some(e), Some(c)) => Some((e, e.prepare(c)?)),
        _ => None,
    };
    // Everything is built before anything is swapped: from here on nothing can fail (building
    // the pools sets the limits their groups share, which the pools in use count under too).
    let workers = shared.live_workers();
    let maps: Vec<(Arc<PoolMap>, Arc<PoolMap>)> = workers
        .iter()
        .map(|w| {
            let old = w.pg.clusters.load_full();
            let new = crate::pg::worker::build_pools(
                shared,
                &w.pg.pg,
                &cfg,
                &states,
                Some(&old),
                generation,
            );
            (old, Arc::new(new))
        })
        .collect();
    let my_maps: Vec<_> = workers
        .iter()
        .map(|w| {
            let old = w.my.clusters.load_full();
            let new = crate::mysql::worker::build_pools(
                shared,
                &w.my.my,
                &cfg,
                &states,
                Some(&old),
                generation,
            );
            (old, Arc::new(new))
        })
        .collect();
    if routing_changed(&old_cfg, &cfg) {
        shared
            .classifier
            .store(Arc::new(crate::engine::new_classifier(&cfg)));
        shared
            .classifier_mysql
            .store(Arc::new(crate::engine::new_classifier_for(
                &cfg,
                crate::router::classify::Dialect::MySql,
            )));
    }
    shared.store_config(cfg.clone());
    shared.clusters.store(states.clone());
    for (w, (_, new)) in workers.iter().zip(&maps) {
        w.pg.clusters.store(new.clone());
    }
    for (w, (_, new)) in workers.iter().zip(&my_maps) {
        w.my.clusters.store(new.clone());
    }
    if let Some((e, state)) = edge {
        e.commit(state);
    }
    shared.generation.store(generation, Ordering::Release);
    let (olds, news): (Vec<_>, Vec<_>) = maps.into_iter().unzip();
    crate::pg::worker::close_unused(&olds, &news);
    let (olds, news): (Vec<_>, Vec<_>) = my_maps.into_iter().unzip();
    crate::mysql::worker::close_unused(&olds, &news);
    send_health(shared, &cfg, &states);
    Ok(summary(&old_cfg, &cfg))
}

fn routing_changed(a: &Config, b: &Config) -> bool {
    a.routing.write_functions != b.routing.write_functions
        || a.routing.cache_entries != b.routing.cache_entries
        || a.routing.rules != b.routing.rules
}

/// "reloaded: N clusters, M backends; restart needed for: ..." (the second part only when
/// a key read only at start changed).
pub fn summary(old: &Config, new: &Config) -> String {
    let backends: usize = new.clusters.iter().map(|c| 1 + c.replicas.len()).sum();
    let mut msg = format!(
        "reloaded: {} clusters, {} backends",
        new.clusters.len(),
        backends
    );
    if let Some(e) = &new.edge {
        msg.push_str(&format!(
            ", {} edge routes, {} upstream groups",
            e.routes.len(),
            e.upstreams.len()
        ));
    }
    let restart = restart_needed(old, new);
    if !restart.is_empty() {
        msg.push_str("; restart needed for: ");
        msg.push_str(&restart.join(", "));
    }
    msg
}

/// Keys that changed but only take effect after a restart.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let pg = |c: &Config| c.postgres.clone();
    let admin = |c: &Config| c.admin.clone();
    let mut out = Vec::new();
    if old.general.workers != new.general.workers {
        out.push("general.workers");
    }
    if old.general.worker_scheduling != new.general.worker_scheduling {
        out.push("general.worker_scheduling");
    }
    if old.general.handover_socket != new.general.handover_socket {
        out.push("general.handover_socket");
    }
    let (a, b) = (pg(old), pg(new));
    let field =
        |f: fn(&crate::config::PostgresListener) -> String| a.as_ref().map(f) != b.as_ref().map(f);
    if field(|p| p.listen.clone()) {
        out.push("postgres.listen");
    }
    if field(|p| format!("{:?}", p.pool_mode)) {
        out.push("postgres.pool_mode");
    }
    if field(|p| format!("{:?}", p.tls_cert)) {
        out.push("postgres.tls_cert");
    }
    if field(|p| format!("{:?}", p.tls_key)) {
        out.push("postgres.tls_key");
    }
    if field(|p| format!("{:?}", p.require_tls)) {
        out.push("postgres.require_tls");
    }
    if field(|p| format!("{:?}", p.tls_client_ca_file)) {
        out.push("postgres.tls_client_ca_file");
    }
    if field(|p| format!("{:?}", p.unix_socket_dir)) {
        out.push("postgres.unix_socket_dir");
    }
    let listens = |c: &Config| {
        c.edge.as_ref().map(|e| {
            e.listeners
                .iter()
                .map(|l| (l.name().to_string(), l.listen.clone()))
                .collect::<Vec<_>>()
        })
    };
    if listens(old) != listens(new) {
        out.push("edge.listener");
    }
    let (a, b) = (old.mysql.as_ref(), new.mysql.as_ref());
    let field = |f: fn(&crate::config::MysqlListener) -> String| a.map(f) != b.map(f);
    if field(|m| m.listen.clone()) {
        out.push("mysql.listen");
    }
    if field(|m| format!("{:?}", m.pool_mode)) {
        out.push("mysql.pool_mode");
    }
    if field(|m| format!("{:?}", m.tls_cert)) {
        out.push("mysql.tls_cert");
    }
    if field(|m| format!("{:?}", m.tls_key)) {
        out.push("mysql.tls_key");
    }
    if field(|m| format!("{:?}", m.require_tls)) {
        out.push("mysql.require_tls");
    }
    if field(|m| format!("{:?}", m.tls_client_ca_file)) {
        out.push("mysql.tls_client_ca_file");
    }
    if field(|m| format!("{:?}", m.socket)) {
        out.push("mysql.socket");
    }
    if field(|m| format!("{:?}", m.rsa_key_exchange)) {
        out.push("mysql.rsa_key_exchange");
    }
    if field(|m| format!("{:?}", m.rsa_private_key)) {
        out.push("mysql.rsa_private_key");
    }
    let (a, b) = (admin(old), admin(new));
    if a.as_ref().map(|x| &x.listen) != b.as_ref().map(|x| &x.listen) {
        out.push("admin.listen");
    }
    if a.as_ref().map(|x| &x.token) != b.as_ref().map(|x| &x.token) {
        out.push("admin.token");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str, replicas: &str) -> Config {
        Config::from_toml(&format!(
            "{extra}\n[[cluster]]\nname = \"c\"\ndatabase = \"d\"\nprimary = \"127.0.0.1:1\"\nuser = \"u\"\nreplicas = [{replicas}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn summary_names_restart_only_keys() {
        let a = cfg("[general]\nworkers = 1", "\"127.0.0.1:2\"");
        let b = cfg("[general]\nworkers = 2", "\"127.0.0.1:2\", \"127.0.0.1:3\"");
        assert_eq!(
            summary(&a, &b),
            "reloaded: 1 clusters, 3 backends; restart needed for: general.workers"
        );
        assert_eq!(summary(&a, &a), "reloaded: 1 clusters, 2 backends");
        assert_eq!(
            restart_needed(
                &a,
                &cfg("[general]\nworkers = 1\nworker_scheduling = \"batch\"", "")
            ),
            vec!["general.worker_scheduling"]
        );
        let my = |extra: &str| {
            cfg(
                &format!("[mysql]\nlisten = \"127.0.0.1:3307\"\n{extra}"),
                "",
            )
        };
        assert_eq!(
            restart_needed(&my(""), &my("pool_mode = \"session\"")),
            vec!["mysql.pool_mode"]
        );
        assert_eq!(
            restart_needed(&my(""), &my("socket = \"/tmp/s.sock\"")),
            vec!["mysql.socket"]
        );
        let tls = "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"";
        assert_eq!(
            restart_needed(&my(tls), &my(&format!("{tls}\nrequire_tls = true"))),
            vec!["mysql.require_tls"]
        );
        assert_eq!(
            restart_needed(
                &my(tls),
                &my(&format!("{tls}\ntls_client_ca_file = \"/ca.pem\""))
            ),
            vec!["mysql.tls_client_ca_file"]
        );
        assert_eq!(
            restart_needed(&cfg("", ""), &my("")),
            vec![
                "mysql.listen",
                "mysql.pool_mode",
                "mysql.tls_cert",
                "mysql.tls_key",
                "mysql.require_tls",
                "mysql.tls_client_ca_file",
                "mysql.socket",
                "mysql.rsa_key_exchange",
                "mysql.rsa_private_key"
            ]
        );
    }

    #[test]
    fn kept_backends_keep_their_health_view() {
        let a = cfg("", "\"127.0.0.1:2\", \"127.0.0.1:3\"");
        let old = build_states(&a, None).unwrap();
        old["d"].backends[2].mark_failed("test");
        let b = cfg("", "\"127.0.0.1:3\", \"127.0.0.1:4\"");
        let new = build_states(&b, Some(&old)).unwrap();
        let st = &new["d"];
        assert!(!st.backends[1].is_up(), "127.0.0.1:3 stays down");
        assert!(st.backends[2].is_up(), "new backends start up");
    }
}
