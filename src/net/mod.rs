//! Listening sockets: one SO_REUSEPORT socket per worker on the same address, so the kernel
//! spreads new connections over workers and no accept crosses threads.

pub mod backend;
pub mod backend_tls;
pub mod bufs;
pub mod channel_binding;
pub mod der;
pub mod handover;
pub mod proxy_protocol;
pub mod tls;

use std::net::SocketAddr;

/// Turn TCP keepalive on for the socket `fd` with timing `ka` (`[general] tcp_keepalive`);
/// a Unix-domain socket is left as it is.
pub fn set_keepalive(fd: std::os::fd::BorrowedFd<'_>, ka: &crate::config::Keepalive) {
    let s = socket2::SockRef::from(&fd);
    if !matches!(s.domain(), Ok(d) if d == socket2::Domain::IPV4 || d == socket2::Domain::IPV6) {
        return;
    }
    let timing = socket2::TcpKeepalive::new()
        .with_time(ka.idle)
        .with_interval(ka.interval)
        .with_retries(ka.count);
    if let Err(e) = s.set_tcp_keepalive(&timing) {
        tracing::debug!(error = %e, "TCP keepalive not set");
    }
}

/// Bind `count` listening sockets to `addr` with SO_REUSEPORT. If `addr` has port 0, the
/// first socket picks the port and the others bind the same one.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        let l: std::net::TcpListener = s.into();
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// `io` with a deadline `limit` from now, the clock read and a timer armed only when it does
/// not finish at its first poll: a write the socket takes whole at once (nearly every one)
/// costs no clock read. Past the deadline: `TimedOut`.
pub async fn within<T>(
    limit: std::time::Duration,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    use std::task::Poll;
    let mut io = std::pin::pin!(io);
    if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await {
        return r;
    }
    match tokio::time::timeout(limit, io).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Listen on a Unix-domain socket at `path`, mode 0777 (who may log in is decided by the
/// login, as for TCP). A socket file left by a process that is gone is replaced; one that
/// answers is another server's, and binding fails.
pub fn bind_unix(path: &std::path::Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another server listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Who a client is, for the logs: its TCP address, or a client of a Unix socket (PostgreSQL
/// logs those as `[local]`).
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Tcp(SocketAddr),
    Local,
}

impl Peer {
    /// The client's IP address; `None` for a client of a Unix socket.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Local => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => a.fmt(f),
            Peer::Local => f.write_str("[local]"),
        }
    }
}

/// An accepted client connection, not yet registered with a runtime (so that it can be
/// handed to another worker).
#[derive(Debug)]
pub enum Accepted {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Accepted {
    /// Register with the current runtime: the stream a front end serves (TCP_NODELAY set on
    /// TCP).
    pub fn register(self) -> std::io::Result<tls::ClientStream> {
        Ok(match self {
            Accepted::Tcp(s) => {
                let s = tokio::net::TcpStream::from_std(s)?;
                let _ = s.set_nodelay(true);
                tls::ClientStream::Plain(s)
            }
            Accepted::Unix(s) => tls::ClientStream::Unix(tokio::net::UnixStream::from_std(s)?),
        })
    }
}
