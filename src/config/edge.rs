//! The `[edge]` section: the HTTP reverse proxy and load balancer. Listeners, routes and
//! upstream groups; every field has its default in its doc line.

use super::{duration, ConfigError, ServerTls};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The HTTP edge. Absent: no HTTP listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// Where clients connect. At least one.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<EdgeListener>,
    /// Request routing, most specific match first (host, then longest path prefix).
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// Groups of upstream servers that routes send requests to.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<Upstream>,
    /// The response cache shared by every route with `cache = true`.
    #[serde(default)]
    pub cache: CacheSettings,
    /// Access log: "off", "text" (one line per request at info level) or "json".
    /// Default "off".
    #[serde(default)]
    pub access_log: AccessLog,
    /// File the access log lines are appended to. Default: standard output.
    #[serde(default)]
    pub access_log_file: Option<String>,
}

/// Access log format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    #[default]
    Off,
    Text,
    Json,
}

/// Whether an edge listener with `tls_client_ca_file` serves clients without a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientVerify {
    #[default]
    Required,
    Optional,
}

/// One HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdgeListener {
    /// A name for metrics and logs. Default: the listen address.
    #[serde(default)]
    pub name: Option<String>,
    /// Address to listen on, e.g. "0.0.0.0:8080". Changing it needs a restart.
    pub listen: String,
    /// PEM certificate chain. With `tls_key` the listener speaks HTTPS only, offering h2 and
    /// http/1.1 by ALPN. Both files are read again on every reload. Default: none (cleartext,
    /// HTTP/1.1 and HTTP/2 with prior knowledge).
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// PEM private key matching `tls_cert`. Default: none.
    #[serde(default)]
    pub tls_key: Option<String>,
    /// PEM file of the certificate authorities whose client certificates this listener takes
    /// (mutual TLS, nginx's `ssl_client_certificate`). Upstreams then get
    /// `X-SSL-Client-Verify` (`SUCCESS` or `NONE`) and `X-SSL-Client-CN` (the certificate's
    /// subject common name); the same headers sent by a client are dropped. Needs
    /// `tls_cert`. Read again on every reload. Default: none.
    #[serde(default)]
    pub tls_client_ca_file: Option<String>,
    /// With `tls_client_ca_file`: "required" (default: a client without a certificate the
    /// authorities signed fails the handshake, nginx's `ssl_verify_client on`) or
    /// "optional" (one without a certificate is served with `X-SSL-Client-Verify: NONE`;
    /// one with a certificate they did not sign still fails).
    #[serde(default)]
    pub tls_client_verify: ClientVerify,
    /// Most client connections open at once on this listener (over all workers); further
    /// connections are closed at once. Default 10000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a request's whole header block (HTTP/1.1); a slower client
    /// is disconnected. Default "10s".
    #[serde(default = "default_header_timeout", with = "duration")]
    pub header_timeout: Duration,
    /// A connection with no request in progress and no bytes moving for this long is
    /// closed. Default "60s".
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// Largest request header block in bytes; larger ones get 431. Default 16384 (at least
    /// 8192).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// HTTP/1.1 connections (plain, or TLS whose ALPN did not choose h2) start on the edge's
    /// own HTTP/1.1 code, which proxies GET and HEAD requests without a body to routes
    /// without cache or rate limit; the first other request (or an HTTP/2 preface) hands the
    /// connection to hyper. false: every connection is served by hyper. Default true.
    #[serde(default = "default_true")]
    pub h1_fast_path: bool,
    /// Each TCP connection starts with a PROXY protocol header (version 1 or 2) from a load
    /// balancer in front (HAProxy's `send-proxy` / `send-proxy-v2`, nginx's
    /// `proxy_protocol on`, a cloud load balancer's "proxy protocol"), and the client it names
    /// is the one upstreams are told of (`X-Forwarded-For`) and the access log names (a
    /// `LOCAL` header, a balancer's own health check, keeps the balancer's address). A
    /// connection without a valid header within `header_timeout` is closed. Default false.
    /// Read at each connection.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the networks the balancers connect from ("10.0.0.0/8",
    /// "::1", ...); a connection from any other address is closed before a byte is read,
    /// since whoever can reach the listener could otherwise claim any address. Default: any
    /// address. Read at each connection (a reload changes it).
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
}

fn default_true() -> bool {
    true
}

fn default_max_connections() -> usize {
    10_000
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}

/// A route: which requests go to which upstream group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Host the request names (Host header or HTTP/2 authority, port ignored, case-insensitive).
    /// A leading "*." matches any subdomain. Default: any host. A route naming the host wins
    /// over one that does not; then the longest path prefix wins.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix, matched on whole segments ("/api" matches "/api" and "/api/x", not
    /// "/apix"). Default "/".
    #[serde(default = "default_path")]
    pub path: String,
    /// Remove the prefix before forwarding ("/api/x" goes upstream as "/x"). Default false.
    #[serde(default)]
    pub strip_prefix: bool,
    /// The upstream group's name.
    pub upstream: String,
    /// Listener names this route applies to. Default: every listener.
    #[serde(default)]
    pub listeners: Vec<String>,
    /// Cache GET/HEAD responses of this route (see `[edge.cache]`). Default false.
    #[serde(default)]
    pub cache: bool,
    /// Per-client-IP token bucket for this route. Default: none.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Time the upstream has to start its response (status and headers); then 504.
    /// Default "30s".
    #[serde(default = "default_response_timeout", with = "duration")]
    pub response_timeout: Duration,
    /// How many other upstreams an idempotent request (without a body, or with one of at most
    /// 64 KiB, held for the retry) may be tried on after a connect failure or a 502/503.
    /// Default 1. 0: no retries (and no request body is held).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_path() -> String {
    "/".into()
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retries() -> u32 {
    1
}

/// A token bucket: `rate` requests per second on average, bursts up to `burst`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens added per second.
    pub rate: f64,
    /// Bucket size: requests allowed at once after a quiet period. Default: `rate`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// The HTTP version spoken to a group's servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    H2,
}

/// How a group spreads requests over its servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// In turn, weights ignored.
    #[default]
    RoundRobin,
    /// In turn, each server `weight` times as often (smooth: interleaved, not in runs).
    WeightedRoundRobin,
    /// Power of two choices: of two random servers, the one with fewer requests in flight
    /// (divided by weight).
    LeastRequest,
}

/// A server of an upstream group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ServerSpec {
    Addr(String),
    Weighted {
        addr: String,
        #[serde(default = "default_server_weight")]
        weight: u32,
    },
}

impl ServerSpec {
    /// "host:port": an IP address, or a DNS name resolved again every `resolve_interval`
    /// (each address it resolves to is a server with this weight).
    pub fn addr(&self) -> &str {
        match self {
            ServerSpec::Addr(a) | ServerSpec::Weighted { addr: a, .. } => a,
        }
    }
    pub fn weight(&self) -> u32 {
        match self {
            ServerSpec::Addr(_) => 1,
            ServerSpec::Weighted { weight, .. } => *weight,
        }
    }
}

fn default_server_weight() -> u32 {
    1
}

/// A group of upstream servers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The name routes use.
    pub name: String,
    /// "host:port" or `{ addr = "host:port", weight = 3 }`.
    pub servers: Vec<ServerSpec>,
    /// "round_robin" (default), "weighted_round_robin" or "least_request".
    #[serde(default)]
    pub balance: Balance,
    /// How often DNS names among `servers` are resolved again. Default "30s".
    #[serde(default = "default_resolve_interval", with = "duration")]
    pub resolve_interval: Duration,
    /// Time to open a connection to a server. Default "2s".
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// An unused pooled connection to a server is closed after this long. Default "90s".
    #[serde(default = "default_pool_idle", with = "duration")]
    pub idle_timeout: Duration,
    /// Most idle pooled connections kept per server and worker. Default 256.
    #[serde(default = "default_pool_max_idle")]
    pub max_idle: usize,
    /// Active health checks. Default: none (servers are up unless passively ejected).
    #[serde(default)]
    pub health: Option<HttpHealth>,
    /// After this many consecutive failures (connect errors or 5xx answers) a server is
    /// ejected for `eject_for`. Default 5. 0: never.
    #[serde(default = "default_eject_after")]
    pub eject_after: u32,
    /// How long an ejected server gets no requests. Default "10s".
    #[serde(default = "default_eject_for", with = "duration")]
    pub eject_for: Duration,
    /// Retries may add at most this fraction to the group's requests (plus 3 per second), so
    /// a failing group is not hit with a multiple of its load. Default 0.2.
    #[serde(default = "default_retry_budget")]
    pub retry_budget: f64,
    /// HTTPS to the servers (requests, upgrades and health checks): "disable" (default:
    /// plain HTTP), "require" (encrypted, any certificate), "verify-ca" (a certificate signed
    /// by `tls_ca_file`) or "verify-full" (and naming the server). "prefer" is refused: an
    /// HTTP server speaks TLS on a port or does not.
    #[serde(default = "default_upstream_tls")]
    pub tls: ServerTls,
    /// How requests reach the servers: "http1" (default; pooled HTTP/1.1 connections) or
    /// "h2" (one multiplexed HTTP/2 connection per server and worker: prior knowledge over
    /// plain TCP, ALPN "h2" over TLS), as gRPC servers need. Upgrades (WebSocket) cannot go
    /// to an "h2" group.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// The Host (HTTP/2: `:authority`) sent to the servers instead of the client's, e.g. the
    /// name an HTTPS API behind the edge serves ("api.example.com"); the client's goes in
    /// X-Forwarded-Host either way. Default: none (the client's Host is passed on).
    #[serde(default)]
    pub host_header: Option<String>,
    /// PEM file of the certificate authorities for "verify-ca" and "verify-full" (the
    /// system's bundle, /etc/ssl/certs/ca-certificates.crt on Debian, for public ones).
    /// Default: none.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// Name sent by SNI and checked under "verify-full". Default: the host of each server's
    /// address as written (a DNS name, or an IP the certificate must carry).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Client certificate (PEM chain) and key for servers that ask for one; given together.
    /// Default: none.
    #[serde(default)]
    pub tls_cert: Option<String>,
    #[serde(default)]
    pub tls_key: Option<String>,
}

fn default_upstream_tls() -> ServerTls {
    ServerTls::Disable
}

fn default_resolve_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_pool_idle() -> Duration {
    Duration::from_secs(90)
}
fn default_pool_max_idle() -> usize {
    256
}
fn default_eject_after() -> u32 {
    5
}
fn default_eject_for() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_budget() -> f64 {
    0.2
}

/// Active HTTP health checks of each server of a group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpHealth {
    /// Path requested with GET. Default "/healthz".
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Time between checks. Default "2s".
    #[serde(default = "default_health_interval", with = "duration")]
    pub interval: Duration,
    /// A check not answered within this fails. Default "1s".
    #[serde(default = "default_health_timeout", with = "duration")]
    pub timeout: Duration,
    /// The status a healthy server answers. Default 200.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Consecutive passed checks that bring a down server up. Default 2.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failed checks that take an up server down. Default 3.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_health_path() -> String {
    "/healthz".into()
}
fn default_health_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_expect_status() -> u16 {
    200
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

/// The response cache.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Memory for stored responses (bodies, headers, keys), in bytes; least recently used
    /// entries go first. Default 64 MiB.
    pub max_bytes: usize,
    /// Largest response body stored, in bytes. Default 1 MiB.
    pub max_object_bytes: usize,
    /// How long concurrent misses of one resource wait for the first one's response before
    /// going upstream themselves. Default "5s".
    #[serde(with = "duration")]
    pub lock_timeout: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_bytes: 64 << 20,
            max_object_bytes: 1 << 20,
            lock_timeout: Duration::from_secs(5),
        }
    }
}

impl EdgeListener {
    /// The name used in metrics and logs.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.listen)
    }
}

impl Edge {
    /// Cross-field rules; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            return Err(ConfigError::invalid(
                "edge.listener",
                "the edge needs at least one [[edge.listener]]",
            ));
        }
        let mut lnames = std::collections::HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let key = |f: &str| format!("edge.listener[{i}].{f}");
            super::parse_addr(&l.listen).map_err(|e| ConfigError::invalid(key("listen"), e))?;
            if !lnames.insert(l.name()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("listener {:?} is defined twice", l.name()),
                ));
            }
            if l.tls_cert.is_some() != l.tls_key.is_some() {
                return Err(ConfigError::invalid(
                    key("tls_cert"),
                    "tls_cert and tls_key must be given together",
                ));
            }
            if l.tls_client_ca_file.is_some() && l.tls_cert.is_none() {
                return Err(ConfigError::invalid(
                    key("tls_client_ca_file"),
                    "needs tls_cert and tls_key (client certificates come over TLS)",
                ));
            }
            super::check_proxy_protocol(
                &format!("edge.listener[{i}]"),
                l.proxy_protocol,
                &l.proxy_protocol_from,
            )?;
            if l.max_connections == 0 {
                return Err(ConfigError::invalid(
                    key("max_connections"),
                    "must be at least 1",
                ));
            }
            if l.max_header_bytes < 8192 {
                return Err(ConfigError::invalid(
                    key("max_header_bytes"),
                    "must be at least 8192",
                ));
            }
            if l.header_timeout.is_zero() || l.idle_timeout.is_zero() {
                return Err(ConfigError::invalid(
                    key("header_timeout"),
                    "header_timeout and idle_timeout must be above 0",
                ));
            }
        }
        let mut unames = std::collections::HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let key = |f: &str| format!("edge.upstream[{i}].{f}");
            if u.name.is_empty() || !unames.insert(u.name.as_str()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("upstream {:?} is empty or defined twice", u.name),
                ));
            }
            if u.servers.is_empty() {
                return Err(ConfigError::invalid(key("servers"), "needs at least one"));
            }
            for (j, s) in u.servers.iter().enumerate() {
                if s.weight() == 0 {
                    return Err(ConfigError::invalid(
                        format!("edge.upstream[{i}].servers[{j}].weight"),
                        "must be at least 1",
                    ));
                }
                check_host_port(s.addr()).map_err(|e| {
                    ConfigError::invalid(format!("edge.upstream[{i}].servers[{j}]"), e)
                })?;
            }
            if u.connect_timeout.is_zero() || u.resolve_interval.is_zero() {
                return Err(ConfigError::invalid(
                    key("connect_timeout"),
                    "connect_timeout and resolve_interval must be above 0",
                ));
            }
            if !(0.0..=10.0).contains(&u.retry_budget) {
                return Err(ConfigError::invalid(
                    key("retry_budget"),
                    "must be between 0 and 10",
                ));
            }
            if u.tls == ServerTls::Prefer {
                return Err(ConfigError::invalid(
                    key("tls"),
                    "an HTTP upstream is reached over TLS or not: \"disable\", \"require\", \"verify-ca\" or \"verify-full\"",
                ));
            }
            if let Some(h) = &u.host_header {
                if h.parse::<http::uri::Authority>().is_err() || h.contains('@') {
                    return Err(ConfigError::invalid(
                        key("host_header"),
                        format!("{h:?} is not a host with an optional port"),
                    ));
                }
            }
            u.tls.check_keys(
                u.tls_ca_file.is_some(),
                u.tls_cert.is_some() != u.tls_key.is_some(),
                key,
            )?;
            if let Some(h) = &u.health {
                if !h.path.starts_with('/') {
                    return Err(ConfigError::invalid(
                        key("health.path"),
                        "must start with /",
                    ));
                }
                if h.interval.is_zero() || h.timeout.is_zero() || h.rise == 0 || h.fall == 0 {
                    return Err(ConfigError::invalid(
                        key("health"),
                        "interval and timeout must be above 0, rise and fall at least 1",
                    ));
                }
                if !(100..=599).contains(&h.expect_status) {
                    return Err(ConfigError::invalid(
                        key("health.expect_status"),
                        "must be an HTTP status",
                    ));
                }
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let key = |f: &str| format!("edge.route[{i}].{f}");
            if !r.path.starts_with('/') {
                return Err(ConfigError::invalid(key("path"), "must start with /"));
            }
            if !unames.contains(r.upstream.as_str()) {
                return Err(ConfigError::invalid(
                    key("upstream"),
                    format!("no [[edge.upstream]] is named {:?}", r.upstream),
                ));
            }
            for l in &r.listeners {
                if !lnames.contains(l.as_str()) {
                    return Err(ConfigError::invalid(
                        key("listeners"),
                        format!("no [[edge.listener]] is named {l:?}"),
                    ));
                }
            }
            if let Some(rl) = &r.rate_limit {
                if !(rl.rate.is_finite() && rl.rate > 0.0) || rl.burst == Some(0) {
                    return Err(ConfigError::invalid(
                        key("rate_limit"),
                        "rate must be above 0 and burst at least 1",
                    ));
                }
            }
            if r.response_timeout.is_zero() {
                return Err(ConfigError::invalid(
                    key("response_timeout"),
                    "must be above 0",
                ));
            }
        }
        if self.cache.max_object_bytes > self.cache.max_bytes {
            return Err(ConfigError::invalid(
                "edge.cache.max_object_bytes",
                "must not exceed max_bytes",
            ));
        }
        Ok(())
    }
}

/// "host:port" with a port; the host may be a name (resolved later, not here).
fn check_host_port(text: &str) -> Result<(), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not host:port"))?;
    port.parse::<u16>()
        .map_err(|_| format!("bad port in {text:?}"))?;
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    Ok(())
}
