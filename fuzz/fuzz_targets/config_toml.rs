//! Config parsing and validation (`Config::from_toml`) on arbitrary UTF-8.
//!
//! `validate` resolves "host:port" addresses with `ToSocketAddrs`, i.e. a DNS lookup for
//! any host that is not numeric or `localhost`. A fuzz loop must not do network I/O, so
//! when the parsed config holds such an address the harness swaps it for
//! `127.0.0.1:<port>` and calls `validate` itself; otherwise it calls `from_toml` on the
//! text and checks that both paths agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use switchyard::config::{Config, ReplicaSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = toml::from_str::<Config>(text);
    let mut cfg = match parsed {
        // Parse errors are returned before validate runs: no lookups possible.
        Err(_) => {
            assert!(Config::from_toml(text).is_err());
            return;
        }
        Ok(cfg) => cfg,
    };
    if !sanitize(&mut cfg) {
        let ours = cfg.validate().is_ok();
        let theirs = Config::from_toml(text);
        assert_eq!(ours, theirs.is_ok(), "from_toml disagrees: {theirs:?}");
    } else {
        let _ = cfg.validate();
    }
});

/// Replaces every address that would need a DNS lookup; true if any was replaced.
fn sanitize(cfg: &mut Config) -> bool {
    let mut changed = false;
    if let Some(pg) = cfg.postgres.as_mut() {
        changed |= fix(&mut pg.listen);
    }
    for c in &mut cfg.clusters {
        changed |= fix(&mut c.primary);
        for r in &mut c.replicas {
            changed |= match r {
                ReplicaSpec::Addr(a) | ReplicaSpec::Weighted { addr: a, .. } => fix(a),
            };
        }
    }
    changed
}

/// Mirrors `parse_addr` and std's `impl ToSocketAddrs for str`: a lookup happens only for
/// a non-numeric, non-`localhost:` address with a valid port after the last ':'.
fn fix(addr: &mut String) -> bool {
    if addr.parse::<SocketAddr>().is_ok() || addr.starts_with("localhost:") {
        return false;
    }
    match addr.rsplit_once(':').map(|(_, p)| p.parse::<u16>()) {
        Some(Ok(port)) => {
            *addr = format!("127.0.0.1:{port}");
            true
        }
        _ => false,
    }
}
