//! HAProxy in TCP mode in front of a listener, as a load balancer that speaks the PROXY
//! protocol to it (`send-proxy`, `send-proxy-v2`): the real sender of the headers the
//! `proxy_protocol` listeners read.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running HAProxy; killed when dropped.
pub struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
    /// One listening port per frontend given to [`Haproxy::start`], in order.
    pub ports: Vec<u16>,
}

impl Haproxy {
    /// One frontend per `(target, server options)`: a free loopback port relaying every
    /// connection to `target` ("127.0.0.1:PORT") with the options on its `server` line
    /// (e.g. "send-proxy-v2").
    pub fn start(frontends: &[(String, &str)]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = String::from(
            "global\n  maxconn 512\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 60s\n  timeout server 60s\n",
        );
        let mut ports = Vec::new();
        for (i, (target, options)) in frontends.iter().enumerate() {
            let port = free_port();
            ports.push(port);
            cfg += &format!(
                "\nlisten f{i}\n  bind 127.0.0.1:{port}\n  server s{i} {target} {options}\n"
            );
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haproxy (scripts/install-deps.sh installs it)");
        let h = Haproxy {
            child,
            _dir: dir,
            ports,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in &h.ports {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "haproxy did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (Its own copy: `tests/edge.rs` includes this file without the rest of `support`.)
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
