//! Listening sockets: one SO_REUSEPORT socket per worker on the same address, so the kernel
//! spreads new connections over workers and no accept crosses threads.

pub mod backend;
pub mod tls;

use std::net::SocketAddr;

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
