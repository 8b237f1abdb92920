//! Driving both sockets of a session from one poll: writes first, then reads where the
//! other side's queue has room. Returns on the first read that produced bytes, or when a
//! write made room for input the session had to leave unprocessed (no read would come to
//! wake it: the peer may have sent everything and be waiting).

use super::{Event, SessionError, HIGH_WATER};
use crate::net::bufs;
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Both sockets of a session, driven from one poll.
pub(super) struct Pump<'a, C> {
    pub(super) client: &'a mut C,
    pub(super) backend: Option<&'a mut crate::net::backend::BackendStream>,
    pub(super) cin: &'a mut BytesMut,
    pub(super) bout: &'a mut BytesMut,
    pub(super) bin: &'a mut BytesMut,
    pub(super) cout: &'a mut BytesMut,
    /// The session left whole client messages in `cin` because `bout` was full.
    pub(super) cin_blocked: bool,
    /// The session left backend messages in `bin` because `cout` was full.
    pub(super) bin_blocked: bool,
    pub(super) shutdown: Option<Pin<&'a mut WaitForCancellationFutureOwned>>,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Pump<'_, C> {
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, SessionError>> {
        // Writes first, so reads see room.
        while !self.cout.is_empty() {
            match Pin::new(&mut *self.client).poll_write(cx, self.cout) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(SessionError::ClientIo(
                        io::ErrorKind::WriteZero.into(),
                    )))
                }
                Poll::Ready(Ok(n)) => {
                    self.cout.advance(n);
                    if self.cout.is_empty() {
                        if let Poll::Ready(Err(e)) = Pin::new(&mut *self.client).poll_flush(cx) {
                            return Poll::Ready(Err(SessionError::ClientIo(e)));
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(SessionError::ClientIo(e))),
                Poll::Pending => break,
            }
        }
        if self.bin_blocked && self.cout.len() < HIGH_WATER {
            return Poll::Ready(Ok(Event::Backend));
        }
        if let Some(backend) = self.backend.as_mut() {
            while !self.bout.is_empty() {
                match Pin::new(&mut **backend).poll_write(cx, self.bout) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(SessionError::BackendClosed)),
                    Poll::Ready(Ok(n)) => self.bout.advance(n),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(SessionError::BackendIo(e))),
                    Poll::Pending => break,
                }
            }
            if self.cout.len() < HIGH_WATER {
                bufs::reserve(self.bin, 16 * 1024);
                match tokio_util::io::poll_read_buf(Pin::new(&mut **backend), cx, self.bin) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(SessionError::BackendClosed)),
                    Poll::Ready(Ok(_)) => return Poll::Ready(Ok(Event::Backend)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(SessionError::BackendIo(e))),
                    Poll::Pending => {}
                }
            }
        }
        if self.cin_blocked && self.bout.len() < HIGH_WATER {
            return Poll::Ready(Ok(Event::Client));
        }
        // Input the session holds back (a batch waiting for its connection to be answered)
        // is bounded too, once it holds more than one message could need.
        if self.bout.len() < HIGH_WATER
            && (self.cin.len() < HIGH_WATER || !has_whole_message(self.cin))
        {
            bufs::reserve(self.cin, 8 * 1024);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *self.client), cx, self.cin) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Event::ClientEof)),
                Poll::Ready(Ok(_)) => return Poll::Ready(Ok(Event::Client)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(SessionError::ClientIo(e))),
                Poll::Pending => {}
            }
        }
        if let Some(s) = self.shutdown.as_mut() {
            if s.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(Event::Shutdown));
            }
        }
        if self.backend.is_none() {
            // Waiting for the client with no server: the empty buffers go back (see
            // `net::bufs`), the client's too (taken again for the next read).
            bufs::give_all([
                &mut *self.cin,
                &mut *self.bout,
                &mut *self.bin,
                &mut *self.cout,
            ]);
        }
        Poll::Pending
    }
}

/// True if `buf` starts with a whole message (type byte, length, body).
fn has_whole_message(buf: &[u8]) -> bool {
    buf.len() >= 5 && {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        buf.len() > len
    }
}
