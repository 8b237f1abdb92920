//! Encoding a scrape: Prometheus text 0.0.4 or OpenMetrics 1.0, with the topology gauges
//! copied from a snapshot first.

use super::labels::*;
use super::*;
use std::fmt::Write as _;

/// Text format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition 0.0.4 (`text/plain; version=0.0.4`).
    Prometheus,
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// OpenMetrics if the scraper's `Accept` header asks for it, else Prometheus text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }
}

impl Metrics {
    /// Encode every metric in the Prometheus text format (0.0.4), after copying the
    /// topology gauges from `topology`.
    pub fn encode(&self, topology: &dyn TopologySource) -> String {
        self.encode_as(topology, Format::Prometheus)
    }

    pub fn encode_as(&self, topology: &dyn TopologySource, format: Format) -> String {
        self.encode_snapshot(&topology.snapshot(), format)
    }

    /// Encode with an already taken snapshot.
    pub fn encode_snapshot(&self, snapshot: &[ClusterSnapshot], format: Format) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.set_topology(snapshot);
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => openmetrics_to_prometheus(&out),
        }
    }

    fn set_topology(&self, snapshot: &[ClusterSnapshot]) {
        for f in [
            &self.backend_open,
            &self.pool_capacity,
            &self.in_read_set,
            &self.lag_bytes,
            &self.in_flight,
        ] {
            f.clear();
        }
        self.backend_conns.clear();
        self.backend_up.clear();
        self.lag_seconds.clear();
        self.transitions.clear();
        self.fenced.clear();
        self.split_brains.clear();
        self.cluster_info.clear();
        self.multiplexed.clear();
        self.multiplex_batches.clear();
        self.multiplex_reruns.clear();
        self.multiplex_lanes.clear();
        self.saturation.clear();
        for c in snapshot {
            let cluster: Arc<str> = Arc::from(c.name.as_str());
            for b in &c.backends {
                let backend: Arc<str> = Arc::from(b.addr.as_str());
                let bl = BackendLabels {
                    cluster: Lv::Shared(cluster.clone()),
                    backend: Lv::Shared(backend.clone()),
                };
                let state = |s: Lv| BackendStateLabels {
                    cluster: Lv::Shared(cluster.clone()),
                    backend: Lv::Shared(backend.clone()),
                    state: s,
                };
                let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                self.backend_conns
                    .get_or_create(&state(STATE_ACTIVE))
                    .set(int(b.pool_active()));
                self.backend_conns
                    .get_or_create(&state(STATE_IDLE))
                    .set(int(b.pool_idle));
                self.backend_open.get_or_create(&bl).set(int(b.pool_open));
                self.pool_capacity.get_or_create(&bl).set(int(b.pool_size));
                self.backend_up
                    .get_or_create(&BackendRoleLabels {
                        cluster: Lv::Shared(cluster.clone()),
                        backend: Lv::Shared(backend.clone()),
                        role: Lv::Static(b.role),
                    })
                    .set(i64::from(b.up));
                self.in_read_set
                    .get_or_create(&bl)
                    .set(i64::from(b.in_read_set));
                self.lag_seconds.get_or_create(&bl).set(b.lag_seconds);
                self.lag_bytes.get_or_create(&bl).set(int(b.lag_bytes));
                self.in_flight.get_or_create(&bl).set(int(b.in_flight));
                self.transitions.get_or_create(&bl).inc_by(b.transitions);
                self.fenced.get_or_create(&bl).set(i64::from(b.fenced));
                let m = &b.multiplex;
                self.multiplexed.get_or_create(&bl).inc_by(m.statements);
                self.multiplex_batches.get_or_create(&bl).inc_by(m.batches);
                self.multiplex_reruns.get_or_create(&bl).inc_by(m.reruns);
                self.multiplex_lanes.get_or_create(&bl).set(int(m.lanes));
            }
            self.split_brains
                .get_or_create(&ClusterLabels {
                    cluster: Lv::Shared(cluster.clone()),
                })
                .inc_by(c.split_brains);
            self.cluster_info
                .get_or_create(&ClusterInfoLabels {
                    cluster: Lv::Shared(cluster.clone()),
                    protocol: Lv::Static(c.protocol),
                })
                .set(1);
            let (_, waiting) = self.clients(&c.name);
            self.saturation
                .get_or_create(&ClusterLabels {
                    cluster: Lv::Shared(cluster),
                })
                .set(saturation(c, waiting));
        }
    }
}

/// Turn prometheus-client's OpenMetrics text into the Prometheus 0.0.4 text format:
/// counters are named with their `_total` suffix in `# HELP`/`# TYPE`, and the `# UNIT`
/// and `# EOF` lines go.
fn openmetrics_to_prometheus(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(h) = help.take() {
                out.push_str(h);
                out.push('\n');
            }
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, typ) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if typ == "counter" && !name.ends_with("_total") {
                "_total"
            } else {
                ""
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map(|(_, t)| t).unwrap_or("");
                let _ = writeln!(out, "# HELP {name}{suffix} {text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {typ}");
            continue;
        }
        if let Some(h) = help.take() {
            let _ = writeln!(out, "# HELP {h}");
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        let _ = writeln!(out, "# HELP {h}");
    }
    out
}
