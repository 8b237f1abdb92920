//! Where a server listens: a TCP address, or the path of a Unix-domain socket on this host
//! (a primary or replica the proxy runs beside, reached without the TCP stack).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};

/// A server's address as the config names it. `Copy`, so the cluster state, pools and probes
/// pass it around as they would a `SocketAddr`: a socket path is kept once per process
/// (interned) and referred to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendAddr {
    Tcp(SocketAddr),
    /// An absolute path to the server's socket file (MariaDB's `socket`, PostgreSQL's
    /// `<unix_socket_directories>/.s.PGSQL.<port>`).
    Unix(&'static str),
}

impl BackendAddr {
    /// A Unix-socket address for `path`, interned: the same path always gives the same
    /// `&'static str`, so reloads do not grow memory.
    pub fn unix(path: &str) -> BackendAddr {
        static PATHS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let mut paths = PATHS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(p) = paths.get(path) {
            return BackendAddr::Unix(p);
        }
        let p: &'static str = Box::leak(path.to_owned().into_boxed_str());
        paths.insert(p);
        BackendAddr::Unix(p)
    }

    /// The TCP port, if it is a TCP address.
    pub fn port(&self) -> Option<u16> {
        self.tcp().map(|a| a.port())
    }

    /// The TCP address, if it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            BackendAddr::Tcp(a) => Some(*a),
            BackendAddr::Unix(_) => None,
        }
    }
}

impl From<SocketAddr> for BackendAddr {
    fn from(a: SocketAddr) -> Self {
        BackendAddr::Tcp(a)
    }
}

impl std::str::FromStr for BackendAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_backend_addr(s)
    }
}

impl std::fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendAddr::Tcp(a) => a.fmt(f),
            BackendAddr::Unix(p) => f.write_str(p),
        }
    }
}

impl std::fmt::Debug for BackendAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A server address from the config: "host:port", or an absolute path (starting with `/`)
/// to a Unix-domain socket.
pub fn parse_backend_addr(text: &str) -> Result<BackendAddr, String> {
    if text.starts_with('/') {
        if text.len() > 107 {
            // sun_path holds 108 bytes with the terminating NUL.
            return Err(format!(
                "{text:?} is longer than a Unix socket path may be (107 bytes)"
            ));
        }
        if text.ends_with('/') {
            return Err(format!(
                "{text:?} is a directory; name the socket file (PostgreSQL's is \
                 <dir>/.s.PGSQL.<port>)"
            ));
        }
        return Ok(BackendAddr::unix(text));
    }
    super::parse_addr(text).map(BackendAddr::Tcp)
}

/// A network as `proxy_protocol_from` names it: "10.0.0.0/8", "2001:db8::/32", or a bare
/// address (all of its bits).
pub fn parse_network(text: &str) -> Result<(std::net::IpAddr, u32), String> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let addr: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address or network (\"10.0.0.0/8\")"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => match b.parse::<u32>() {
            Ok(b) if b <= max => b,
            _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
        },
    };
    Ok((addr, bits))
}

/// Whether `ip` is in the network `net` ("addr/bits" or "addr"); text that is no network is
/// never matched (the config check refuses it first).
pub fn in_network(ip: IpAddr, net: &str) -> bool {
    let Ok((addr, bits)) = parse_network(net) else {
        return false;
    };
    // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (ip, addr) {
        (IpAddr::V4(i), IpAddr::V4(a)) => prefix_match(&i.octets(), &a.octets(), bits),
        (IpAddr::V6(i), IpAddr::V6(a)) => prefix_match(&i.octets(), &a.octets(), bits),
        _ => false,
    }
}

fn prefix_match(ip: &[u8], net: &[u8], bits: u32) -> bool {
    if bits as usize > ip.len() * 8 {
        return false;
    }
    let (whole, part) = ((bits / 8) as usize, bits % 8);
    if ip[..whole] != net[..whole] {
        return false;
    }
    part == 0 || {
        let mask = 0xffu8 << (8 - part);
        ip[whole] & mask == net[whole] & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_host_ports() {
        let a = parse_backend_addr("/run/mysqld/mysqld.sock").unwrap();
        assert_eq!(a.to_string(), "/run/mysqld/mysqld.sock");
        assert_eq!(a, parse_backend_addr("/run/mysqld/mysqld.sock").unwrap());
        assert_eq!(a.tcp(), None);
        let t = parse_backend_addr("127.0.0.1:5432").unwrap();
        assert_eq!(t.to_string(), "127.0.0.1:5432");
        assert_eq!(format!("{t:?}"), "127.0.0.1:5432");
        assert!(t.tcp().is_some());
        assert!(parse_backend_addr("/var/run/postgresql/").is_err());
        assert!(parse_backend_addr(&format!("/{}", "x".repeat(110))).is_err());
        assert!(parse_backend_addr("run/x.sock").is_err());
    }

    #[test]
    fn networks() {
        let v4: std::net::IpAddr = "10.0.0.0".parse().unwrap();
        assert_eq!(parse_network("10.0.0.0/8"), Ok((v4, 8)));
        assert_eq!(parse_network("10.0.0.0"), Ok((v4, 32)));
        assert_eq!(parse_network("::1").map(|n| n.1), Ok(128));
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("::/129").is_err());
        assert!(parse_network("10.0.0.0/x").is_err());
        assert!(parse_network("example.com").is_err());
    }

    #[test]
    fn one_path_interned_once() {
        let (BackendAddr::Unix(a), BackendAddr::Unix(b)) = (
            BackendAddr::unix("/tmp/interned.sock"),
            BackendAddr::unix(&String::from("/tmp/interned.sock")),
        ) else {
            unreachable!()
        };
        assert!(std::ptr::eq(a, b));
    }
}
