//! The socket to a server: TCP, TLS over TCP (`[[cluster]] tls`, see [`super::backend_tls`]),
//! or a Unix-domain socket when the server runs on this host (the same bytes without the TCP
//! stack's work on both ends).

use crate::config::BackendAddr;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A connected socket to a server.
#[derive(Debug)]
pub enum BackendStream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// During a TLS handshake, or after one failed: every operation fails.
    Upgrading,
}

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake did not finish")
}

impl BackendStream {
    /// Connect to `addr` (no time limit here: callers bound the whole login). TCP sockets
    /// get TCP_NODELAY, as every statement is written whole.
    pub async fn connect(addr: BackendAddr) -> io::Result<BackendStream> {
        match addr {
            BackendAddr::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                Ok(BackendStream::Tcp(s))
            }
            BackendAddr::Unix(p) => Ok(BackendStream::Unix(UnixStream::connect(p).await?)),
        }
    }

    /// Run the TLS handshake on a TCP stream the server agreed to encrypt. On failure the
    /// stream is gone.
    pub async fn start_tls(&mut self, tls: &super::backend_tls::ServerTlsConfig) -> io::Result<()> {
        let tcp = match std::mem::replace(self, BackendStream::Upgrading) {
            BackendStream::Tcp(tcp) => tcp,
            other => {
                *self = other;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS only on a plain TCP connection",
                ));
            }
        };
        let peer = tcp.peer_addr()?;
        *self = BackendStream::Tls(Box::new(tls.handshake(tcp, peer).await?));
        Ok(())
    }

    /// Whether TLS protects this connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, BackendStream::Tls(_))
    }

    /// The `tls-server-end-point` channel-binding data of the certificate the server
    /// presented (see `channel_binding`), over TLS with a certificate that has one.
    pub fn tls_end_point(&self) -> Option<Vec<u8>> {
        let BackendStream::Tls(s) = self else {
            return None;
        };
        let cert = s.get_ref().1.peer_certificates()?.first()?;
        super::channel_binding::tls_server_end_point(cert)
    }

    /// Whether the socket has something to read (or was closed) now, without reading it.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            BackendStream::Tcp(s) => s.poll_read_ready(cx),
            BackendStream::Unix(s) => s.poll_read_ready(cx),
            // Plaintext rustls holds back would be something the server said too.
            BackendStream::Tls(s) => s.get_ref().0.poll_read_ready(cx),
            BackendStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    /// Send `msg` (a goodbye before closing) as far as the socket takes it now, without
    /// waiting; over TLS also the close_notify alert.
    pub fn goodbye(&mut self, msg: &[u8]) {
        match self {
            BackendStream::Tcp(s) => drop(s.try_write(msg)),
            BackendStream::Unix(s) => drop(s.try_write(msg)),
            BackendStream::Tls(s) => {
                use std::io::Write;
                let (tcp, conn) = s.get_mut();
                if conn.writer().write_all(msg).is_err() {
                    return;
                }
                conn.send_close_notify();
                struct Now<'a>(&'a TcpStream);
                impl std::io::Write for Now<'_> {
                    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                        self.0.try_write(buf)
                    }
                    fn flush(&mut self) -> io::Result<()> {
                        Ok(())
                    }
                }
                while conn.wants_write() {
                    match conn.write_tls(&mut Now(tcp)) {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
            }
            BackendStream::Upgrading => {}
        }
    }

    /// The local TCP address, if it is a TCP socket.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            BackendStream::Tcp(s) => s.local_addr().ok(),
            BackendStream::Tls(s) => s.get_ref().0.local_addr().ok(),
            BackendStream::Unix(_) | BackendStream::Upgrading => None,
        }
    }
}

impl BackendStream {
    /// The socket's descriptor (none while a TLS upgrade is under way).
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self {
            BackendStream::Tcp(s) => Some(s.as_fd()),
            BackendStream::Unix(s) => Some(s.as_fd()),
            BackendStream::Tls(s) => Some(s.get_ref().0.as_fd()),
            BackendStream::Upgrading => None,
        }
    }
}

/// The proxy's open connections to one server, so that they can all be ended at once when
/// its health probes find it gone (a powered-off host or a stopped process never closes
/// them, and a statement waiting on one would wait as long as the server is away). Each
/// entry is a second descriptor of a connection's socket, enrolled when it opens and closed
/// when the connection drops ([`Enrolled`]): ending one is a `shutdown(2)` of the socket both
/// ways, which its owner then reads as the server closing. Because the list owns its
/// descriptors, a number reused by the kernel after a connection closed can never be hit.
#[derive(Debug, Default)]
pub struct SocketList {
    open: std::sync::Mutex<SocketSlots>,
}

#[derive(Debug, Default)]
struct SocketSlots {
    next: u64,
    fds: std::collections::HashMap<u64, std::os::fd::OwnedFd>,
}

/// A connection's place in a [`SocketList`]; leaving it (drop) closes the list's descriptor.
#[derive(Debug)]
pub struct Enrolled {
    list: std::sync::Arc<SocketList>,
    key: u64,
}

impl SocketList {
    /// Keep a second descriptor of `fd` until the returned place is dropped. None if the
    /// descriptor could not be duplicated (out of descriptors): the connection works on,
    /// only it cannot be ended from here.
    pub fn enroll(
        self: &std::sync::Arc<Self>,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Option<Enrolled> {
        let own = fd.try_clone_to_owned().ok()?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.next += 1;
        let key = open.next;
        open.fds.insert(key, own);
        Some(Enrolled {
            list: self.clone(),
            key,
        })
    }

    /// Shut down every enrolled socket both ways (idle or in use); how many there were.
    /// Their owners see the server close them and deal with it as they would then (a read
    /// that can be repeated elsewhere is; an idle pooled connection is found stale).
    pub fn end_all(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for fd in open.fds.values() {
            let _ = socket2::SockRef::from(fd).shutdown(std::net::Shutdown::Both);
        }
        open.fds.len()
    }

    /// Connections enrolled now.
    pub fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fds
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Enrolled {
    fn drop(&mut self) {
        let fd = {
            let mut open = self.list.open.lock().unwrap_or_else(|p| p.into_inner());
            open.fds.remove(&self.key)
        };
        drop(fd);
    }
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            BackendStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            BackendStream::Tls(s) => {
                // A write returns once rustls has the bytes, perhaps before the socket took
                // all of its records: send those while waiting for the answer, or the server
                // waits for them and this side for it.
                if let Poll::Ready(Err(e)) = Pin::new(s.as_mut()).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
                Pin::new(s.as_mut()).poll_read(cx, buf)
            }
            BackendStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            BackendStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            BackendStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            BackendStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            BackendStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        // rustls takes the slices into one record anyway.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Unix(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            BackendStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            BackendStream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Ending a server's connections shuts down the sockets enrolled now, idle or in use: a
    /// read waiting on one ends (the server seems to close it), and the list forgets a
    /// connection as soon as it is dropped (its descriptor copy closed with it).
    #[tokio::test]
    async fn ending_the_enrolled_connections_ends_their_reads_and_no_other() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = BackendAddr::Tcp(listener.local_addr().unwrap());
        let list = std::sync::Arc::new(SocketList::default());
        let mut a = BackendStream::connect(addr).await.unwrap();
        let (_a_server, _) = listener.accept().await.unwrap();
        let mut other = BackendStream::connect(addr).await.unwrap();
        let (_other_server, _) = listener.accept().await.unwrap();
        let b = BackendStream::connect(addr).await.unwrap();
        let (_b_server, _) = listener.accept().await.unwrap();
        let _in_a = list.enroll(a.fd().unwrap()).unwrap();
        let in_b = list.enroll(b.fd().unwrap()).unwrap();
        assert_eq!(list.len(), 2);
        drop(in_b);
        drop(b);
        assert_eq!(list.len(), 1);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = a.read(&mut buf).await.unwrap();
            (n, a)
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(list.end_all(), 1);
        let (n, _a) = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("the read on an ended connection still waits")
            .unwrap();
        assert_eq!(n, 0, "an ended connection reads as closed");
        // A connection that was not enrolled is untouched.
        let mut buf = [0u8; 1];
        let idle =
            tokio::time::timeout(std::time::Duration::from_millis(100), other.read(&mut buf)).await;
        assert!(
            idle.is_err(),
            "a connection not enrolled was ended: {idle:?}"
        );
    }

    /// Over TLS, a write returns once rustls took the bytes, which may be before the socket
    /// took all of its records; the stream must still deliver them while its owner waits for
    /// the answer (and does not write again). Small socket buffers and a server that pauses
    /// just before the end of the request make the last records wait in rustls.
    #[tokio::test]
    async fn a_tls_write_is_delivered_whole_while_the_answer_is_awaited() {
        const SIZE: usize = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = super::super::tls::self_signed(dir.path()).unwrap();
        let acceptor = super::super::tls::acceptor(&cert, &key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        socket2::SockRef::from(&listener)
            .set_recv_buffer_size(4096)
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut got = vec![0u8; SIZE];
            let pause_at = SIZE - (40 << 10);
            tls.read_exact(&mut got[..pause_at]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            tls.read_exact(&mut got[pause_at..]).await.unwrap();
            assert!(got.iter().all(|&b| b == 7));
            tls.write_all(b"done").await.unwrap();
            tls.flush().await.unwrap();
        });
        let cfg = super::super::backend_tls::ServerTlsConfig::build(
            crate::config::ServerTls::Require,
            None,
            None,
            None,
        )
        .unwrap();
        let mut s = BackendStream::connect(BackendAddr::Tcp(addr))
            .await
            .unwrap();
        if let BackendStream::Tcp(tcp) = &s {
            socket2::SockRef::from(tcp)
                .set_send_buffer_size(4096)
                .unwrap();
        }
        s.start_tls(&cfg).await.unwrap();
        assert!(s.is_tls());
        s.write_all(&vec![7u8; SIZE]).await.unwrap();
        let mut answer = [0u8; 4];
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            s.read_exact(&mut answer),
        )
        .await
        .expect("the server never got the whole request")
        .unwrap();
        assert_eq!(&answer, b"done");
        server.await.unwrap();
    }
}
