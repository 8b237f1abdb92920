//! Choosing a route: by host (exact, then "*." suffix, then any), then the longest path
//! prefix on whole segments, among the routes that apply to the listener.

use super::ratelimit::RateLimiter;
use super::upstream::Group;
use crate::config::Route as RouteCfg;
use crate::metrics::RouteMetrics;
use std::sync::Arc;

/// A route ready to serve.
#[derive(Debug)]
pub struct Route {
    pub cfg: RouteCfg,
    /// How the route names itself in metrics and logs: "host/path" or "*/path".
    pub name: String,
    pub group: Arc<Group>,
    pub limiter: Option<Arc<RateLimiter>>,
    pub metrics: RouteMetrics,
    /// Lower-cased host pattern (None: any host).
    host: Option<String>,
    /// The prefix without a trailing slash ("" for "/").
    prefix: String,
}

impl Route {
    pub fn new(
        cfg: &RouteCfg,
        group: Arc<Group>,
        limiter: Option<Arc<RateLimiter>>,
        metrics: RouteMetrics,
    ) -> Route {
        Route {
            name: route_name(cfg),
            host: cfg.host.as_ref().map(|h| h.to_ascii_lowercase()),
            prefix: cfg.path.trim_end_matches('/').to_string(),
            cfg: cfg.clone(),
            group,
            limiter,
            metrics,
        }
    }

    /// How specific a host match is: 2 exact, 1 wildcard, 0 any host; None: no match.
    fn host_rank(&self, host: &str) -> Option<u8> {
        match &self.host {
            None => Some(0),
            Some(p) => match p.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .filter(|rest| rest.ends_with('.') && rest.len() > 1)
                    .map(|_| 1),
                None => (p == host).then_some(2),
            },
        }
    }

    /// Whether the path starts with the prefix on a segment boundary.
    fn path_matches(&self, path: &str) -> bool {
        path.starts_with(&self.prefix)
            && matches!(
                path.as_bytes().get(self.prefix.len()),
                None | Some(b'/' | b'?')
            )
    }

    /// The path (and query) sent upstream.
    pub fn upstream_path<'a>(&self, path_and_query: &'a str) -> std::borrow::Cow<'a, str> {
        if !self.cfg.strip_prefix || self.prefix.is_empty() {
            return path_and_query.into();
        }
        let rest = &path_and_query[self.prefix.len().min(path_and_query.len())..];
        if rest.starts_with('/') {
            rest.into()
        } else {
            format!("/{rest}").into()
        }
    }
}

/// "host/path" as metrics and logs name a route.
pub fn route_name(cfg: &RouteCfg) -> String {
    format!("{}{}", cfg.host.as_deref().unwrap_or("*"), cfg.path)
}

/// Every route of a generation.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    pub fn new(routes: Vec<Arc<Route>>) -> RouteTable {
        RouteTable { routes }
    }

    /// The routes, in the order they are tried.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route for a request on `listener` to `host` (lower case, no port) and `path`.
    pub fn find(&self, listener: &str, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| r.cfg.listeners.is_empty() || r.cfg.listeners.iter().any(|l| l == listener))
            .filter_map(|r| Some((r.host_rank(host)?, r)))
            .filter(|(_, r)| r.path_matches(path))
            .max_by_key(|(rank, r)| (*rank, r.prefix.len()))
            .map(|(_, r)| r)
    }
}

/// The host a request names (Host header, else the HTTP/2 authority), lower case and
/// without a port.
pub fn request_host_of<'a>(
    headers: &'a http::HeaderMap,
    uri: &'a http::Uri,
) -> std::borrow::Cow<'a, str> {
    let raw = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    host_of(raw)
}

/// The host of a Host header's text, lower case and without a port.
pub fn host_of(raw: &str) -> std::borrow::Cow<'_, str> {
    let host = strip_port(raw);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once(']')
            .map(|(h, _)| &host[..=h.len()])
            .unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(specs: &[(&str, Option<&str>, &str)]) -> RouteTable {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let up: crate::config::Upstream =
            toml::from_str("name = \"u\"\nservers = [\"127.0.0.1:1\"]").unwrap();
        let group = Arc::new(Group::new(&up, None, &metrics, 1));
        RouteTable::new(
            specs
                .iter()
                .map(|(path, host, listener)| {
                    let mut text = format!("path = \"{path}\"\nupstream = \"u\"\n");
                    if let Some(h) = host {
                        text.push_str(&format!("host = \"{h}\"\n"));
                    }
                    if !listener.is_empty() {
                        text.push_str(&format!("listeners = [\"{listener}\"]\n"));
                    }
                    let cfg: RouteCfg = toml::from_str(&text).unwrap();
                    Arc::new(Route::new(
                        &cfg,
                        group.clone(),
                        None,
                        metrics.edge.route(&route_name(&cfg)),
                    ))
                })
                .collect(),
        )
    }

    fn name(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.find("web", host, path).map(|r| r.name.clone())
    }

    #[test]
    fn longest_prefix_on_whole_segments_wins() {
        let t = table(&[("/", None, ""), ("/api", None, ""), ("/api/v2/", None, "")]);
        assert_eq!(name(&t, "x", "/api").as_deref(), Some("*/api"));
        assert_eq!(name(&t, "x", "/api/users").as_deref(), Some("*/api"));
        assert_eq!(name(&t, "x", "/api/v2/users").as_deref(), Some("*/api/v2/"));
        assert_eq!(name(&t, "x", "/apix").as_deref(), Some("*/"));
        assert_eq!(name(&t, "x", "/api?x=1").as_deref(), Some("*/api"));
    }

    #[test]
    fn a_named_host_beats_any_host_and_wildcards_match_subdomains() {
        let t = table(&[
            ("/", None, ""),
            ("/", Some("*.example.com"), ""),
            ("/", Some("shop.example.com"), ""),
            ("/x", Some("other"), "admin"),
        ]);
        assert_eq!(
            name(&t, "shop.example.com", "/a").as_deref(),
            Some("shop.example.com/")
        );
        assert_eq!(
            name(&t, "a.b.example.com", "/a").as_deref(),
            Some("*.example.com/")
        );
        assert_eq!(name(&t, "example.com", "/a").as_deref(), Some("*/"));
        // A route for another listener does not apply.
        assert_eq!(name(&t, "other", "/x").as_deref(), Some("*/"));
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash_and_the_query() {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let up: crate::config::Upstream =
            toml::from_str("name = \"u\"\nservers = [\"127.0.0.1:1\"]").unwrap();
        let group = Arc::new(Group::new(&up, None, &metrics, 1));
        let cfg: RouteCfg =
            toml::from_str("path = \"/api/\"\nupstream = \"u\"\nstrip_prefix = true").unwrap();
        let r = Route::new(&cfg, group, None, metrics.edge.route("r"));
        assert_eq!(r.upstream_path("/api/users?id=1"), "/users?id=1");
        assert_eq!(r.upstream_path("/api"), "/");
        assert_eq!(r.upstream_path("/api?q"), "/?q");
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(strip_port("Example.com:8080"), "Example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
