//! The socket to a server: TCP, or a Unix-domain socket when the server runs on this host
//! (the same bytes without the TCP stack's work on both ends).

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

    /// Whether the socket has something to read (or was closed) now, without reading it.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            BackendStream::Tcp(s) => s.poll_read_ready(cx),
            BackendStream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    /// Write what the socket takes now without waiting (a goodbye before closing).
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BackendStream::Tcp(s) => s.try_write(buf),
            BackendStream::Unix(s) => s.try_write(buf),
        }
    }

    /// The local TCP address, if it is a TCP socket.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            BackendStream::Tcp(s) => s.local_addr().ok(),
            BackendStream::Unix(_) => None,
        }
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
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
