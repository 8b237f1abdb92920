//! Active HTTP health checks of upstream servers and DNS re-resolution of named servers, on
//! one thread for the whole edge. Each config generation gets its own tasks; a reload cancels
//! the previous generation's.

use super::conn::Limits;
use super::upstream::{self, Group, Server};
use super::Edge;
use crate::config::HttpHealth;
use bytes::Bytes;
use http_body_util::Empty;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Run checks until `shutdown`, following reloads.
pub async fn run(edge: Arc<Edge>, shutdown: CancellationToken) {
    let mut rx = edge.subscribe();
    loop {
        let state = rx.borrow_and_update().clone();
        let generation = shutdown.child_token();
        for g in state.groups.values() {
            if let Some(h) = &g.cfg.health {
                tokio::spawn(check_group(g.clone(), h.clone(), generation.clone()));
            }
            if upstream::has_names(&g.cfg) {
                tokio::spawn(resolve_group(g.clone(), generation.clone()));
            }
        }
        // Ejections end by time; keep the up gauges true to that.
        let groups: Vec<Arc<Group>> = state.groups.values().cloned().collect();
        let gauges = generation.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = gauges.cancelled() => return,
                }
                for g in &groups {
                    g.refresh_gauges();
                }
            }
        });
        tokio::select! {
            changed = rx.changed() => {
                generation.cancel();
                if changed.is_err() {
                    return;
                }
            }
            _ = shutdown.cancelled() => {
                generation.cancel();
                return;
            }
        }
    }
}

/// Check every server of `g` each interval; `rise` passes bring a server up, `fall`
/// failures take it down.
async fn check_group(g: Arc<Group>, h: HttpHealth, stop: CancellationToken) {
    loop {
        let servers = g.servers();
        let checks = servers
            .iter()
            .map(|s| check_one(s, &h, &g.limits, g.is_h2()));
        let results = tokio::select! {
            r = futures_util::future::join_all(checks) => r,
            _ = stop.cancelled() => return,
        };
        for (s, ok) in servers.iter().zip(results) {
            record(&g, s, &h, ok);
        }
        tokio::select! {
            _ = tokio::time::sleep(h.interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

fn record(g: &Group, s: &Server, h: &HttpHealth, ok: Result<(), String>) {
    match ok {
        Ok(()) => {
            s.streak_fail.store(0, Relaxed);
            let n = s.streak_ok.fetch_add(1, Relaxed) + 1;
            if !s.is_up() && n >= h.rise {
                g.set_up(s, true);
            }
        }
        Err(e) => {
            s.streak_ok.store(0, Relaxed);
            let n = s.streak_fail.fetch_add(1, Relaxed) + 1;
            tracing::debug!(upstream = %g.name, server = %s.addr, error = %e, "health check failed");
            if s.is_up() && n >= h.fall {
                tracing::warn!(upstream = %g.name, server = %s.addr, checks = n, error = %e,
                    "upstream server failed its health checks");
                g.set_up(s, false);
            }
        }
    }
}

/// One check: a fresh connection (HTTP/1.1, or HTTP/2 for an "h2" group), `GET path`, the
/// expected status within the timeout.
async fn check_one(s: &Server, h: &HttpHealth, limits: &Limits, h2: bool) -> Result<(), String> {
    let attempt = async {
        let req = http::Request::get(h.path.as_str())
            .header(http::header::USER_AGENT, "switchyard-health");
        let resp = if h2 {
            let uri = format!("{}://{}{}", limits.scheme(), s.authority, h.path);
            let req = req
                .uri(uri)
                .version(http::Version::HTTP_2)
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let mut send = super::h2_pool::connect_h2(s, limits)
                .await
                .map_err(|e| e.to_string())?;
            // Dropping the last handle at the end closes the connection.
            send.send_request(req).await.map_err(|e| e.to_string())?
        } else {
            let stream = super::conn::open(s, limits)
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, conn) = super::conn::handshake(stream)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let driver = tokio::spawn(conn);
            let req = req
                .header(http::header::HOST, s.authority.as_str())
                .header(http::header::CONNECTION, "close")
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            driver.abort();
            resp
        };
        if resp.status().as_u16() == h.expect_status {
            Ok(())
        } else {
            Err(format!("status {}", resp.status()))
        }
    };
    match tokio::time::timeout(h.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", h.timeout)),
    }
}

/// Resolve the group's names every `resolve_interval`; a changed address set replaces the
/// servers (those that stay keep their state).
async fn resolve_group(g: Arc<Group>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(g.cfg.resolve_interval) => {}
            _ = stop.cancelled() => return,
        }
        let mut resolved = Vec::new();
        for spec in &g.cfg.servers {
            let addr = spec.addr().to_string();
            let found = tokio::task::spawn_blocking(move || upstream::resolve(&addr))
                .await
                .unwrap_or_default();
            let host = upstream::host_of(spec.addr());
            resolved.extend(found.into_iter().map(|a| (a, spec.weight(), host.clone())));
        }
        let current = g.servers();
        let mut now: Vec<_> = current
            .iter()
            .map(|s| (s.addr, s.weight, s.host.clone()))
            .collect();
        let mut next = resolved.clone();
        now.sort();
        next.sort();
        if now != next && !resolved.is_empty() {
            tracing::info!(upstream = %g.name, servers = ?next, "upstream names resolved to new addresses");
            g.set_servers(&resolved, Some(&current));
        }
    }
}
