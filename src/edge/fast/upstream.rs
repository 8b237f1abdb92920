//! The fast path's upstream side: raw HTTP/1.1 connections and their per-worker pool, one
//! request's exchange up to the response head, and the copy of the body to the client.

use super::wire::{parse_and_rewrite, ChunkScanner, Framing, Head};
use crate::edge::conn::{open_with, Limits, MaybeTls};
use crate::edge::upstream::Server;
use bytes::{Buf, BufMut, BytesMut};
use http::HeaderValue;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Body bytes at hand from this many on are written to the client from the read buffer
/// itself (fewer are copied behind the head, to leave in one write).
const DIRECT_WRITE: usize = 16 * 1024;
/// Read buffer of a new upstream connection.
const IDLE_BUFFER: usize = 16 * 1024;
/// An idle connection's buffer above this is replaced by a new one of `IDLE_BUFFER`.
const MAX_IDLE_BUFFER: usize = 128 * 1024;
/// Room made in an upstream connection's buffer before each body read.
const READ_CHUNK: usize = 64 * 1024;
/// Largest response head read from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// One upstream connection of the fast path (TCP, or TLS over it), with what was read from
/// it and not used yet.
pub struct RawConn {
    stream: MaybeTls<TcpStream>,
    buf: BytesMut,
}

/// Idle fast-path connections of one worker.
pub type RawPool = crate::edge::conn::IdlePool<RawConn>;

impl RawConn {
    /// An idle connection has nothing to read: data or the end means it is unusable. Over
    /// TLS, records without data (a TLS 1.3 server's session tickets) are taken in on the way.
    fn usable(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let nothing = match &mut self.stream {
            MaybeTls::Plain(s) => {
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
            MaybeTls::Tls(t) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let mut rb = tokio::io::ReadBuf::new(&mut probe);
                let r =
                    tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut **t), &mut cx, &mut rb);
                r.is_pending()
            }
        };
        nothing && self.buf.is_empty()
    }
}

/// An upstream's answer: its head is `conn.buf[..head_len]`.
pub(super) struct UpResp {
    conn: RawConn,
    head_len: usize,
    pub(super) status: u16,
    pub(super) framing: Framing,
    /// The connection may take another request once the body is read.
    reusable: bool,
}

/// Send `head` to `server` on a pooled or new connection and read the response head, which
/// is rewritten for the client into `out` (all but its end: see `wire::finish_head`). A
/// pooled connection that fails before any answer byte (the server closed it meanwhile) is
/// replaced by a new one once.
pub(super) async fn send(
    pool: &RawPool,
    server: &Server,
    limits: &Limits,
    head: &[u8],
    head_only: bool,
    (request_id, out): (&HeaderValue, &mut BytesMut),
) -> Result<UpResp, String> {
    let mut pooled = pool.take(server.addr, limits.idle_timeout, RawConn::usable);
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(c) => c,
            None => connect(server, limits).await?,
        };
        match round_trip(&mut conn, head, head_only, request_id, out).await {
            Ok(Some((head_len, status, framing, reusable))) => {
                return Ok(UpResp {
                    conn,
                    head_len,
                    status,
                    framing,
                    reusable,
                })
            }
            Ok(None) if reused => continue,
            Ok(None) => return Err("upstream closed the connection before answering".into()),
            Err(e) if reused && e.kind() != std::io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn connect(server: &Server, limits: &Limits) -> Result<RawConn, String> {
    let stream = open_with(server, limits, |tcp| tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(RawConn {
        stream,
        buf: BytesMut::with_capacity(IDLE_BUFFER),
    })
}

/// Write the request and read the response head (1xx interim answers skipped). `None`: the
/// connection ended before any byte of an answer.
async fn round_trip(
    conn: &mut RawConn,
    head: &[u8],
    head_only: bool,
    request_id: &HeaderValue,
    out: &mut BytesMut,
) -> std::io::Result<Option<(usize, u16, Framing, bool)>> {
    conn.stream.write_all(head).await?;
    // TLS: the records rustls kept go out now (a no-op on plain TCP).
    conn.stream.flush().await?;
    loop {
        // Nothing is buffered before the first read (a pooled connection ended clean).
        let parsed = if conn.buf.is_empty() {
            Ok(None)
        } else {
            parse_and_rewrite(&conn.buf, head_only, Some((request_id, &mut *out)))
        };
        match parsed {
            Ok(Some(Head::Interim(n))) => {
                conn.buf.advance(n);
                continue;
            }
            Ok(Some(Head::Final {
                len,
                status,
                framing,
                reusable,
            })) => return Ok(Some((len, status, framing, reusable))),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        if conn.buf.len() > MAX_RESPONSE_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        if conn.stream.read_buf(&mut conn.buf).await? == 0 {
            if conn.buf.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "upstream closed inside the response head",
            ));
        }
    }
}

impl UpResp {
    /// Send the client `out` (its response head) and the body; a connection whose body was
    /// read to its end, with nothing after it, goes back to `pool`. Returns whether the
    /// client took everything, whether the body was read to its end, and whether the copy
    /// waited (for the upstream or the client) rather than finishing at once.
    /// Nothing moving for `idle` (a client not reading, an upstream not sending) ends both.
    pub(super) async fn relay<C: AsyncWrite + Unpin>(
        mut self,
        client: &mut C,
        out: &mut BytesMut,
        pool: &RawPool,
        addr: SocketAddr,
        limits: &Limits,
        idle: Duration,
    ) -> (bool, bool, bool) {
        self.conn.buf.advance(self.head_len);
        let (client_ok, body_done, waited) = copy_body(&mut self, client, out, idle).await;
        if body_done && self.reusable && self.conn.buf.is_empty() {
            if self.conn.buf.capacity() > MAX_IDLE_BUFFER {
                // An unusually large read grew it: an idle connection keeps a small one.
                self.conn.buf = BytesMut::with_capacity(IDLE_BUFFER);
            }
            pool.put(addr, self.conn, limits);
        }
        (client_ok, body_done, waited)
    }
}

/// Copy the response body (after the head already in `out`) to the client, as it arrives:
/// what is at hand goes out before the next read from the upstream (a small answer leaves
/// in one write with its head). Returns whether the client took everything, whether the
/// body was read to its end, and whether it waited. A write or read that makes no progress
/// for `idle` fails.
async fn copy_body<C: AsyncWrite + Unpin>(
    up: &mut UpResp,
    client: &mut C,
    out: &mut BytesMut,
    idle: Duration,
) -> (bool, bool, bool) {
    let mut chunks = ChunkScanner::default();
    let mut left = match up.framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut done = matches!(up.framing, Framing::None);
    let mut quick_ack = false;
    let mut waited = false;
    loop {
        if !done && !up.conn.buf.is_empty() {
            let take = match up.framing {
                Framing::Length(_) => (left.min(up.conn.buf.len() as u64)) as usize,
                Framing::Chunked => match chunks.scan(&up.conn.buf) {
                    Ok(n) => n,
                    Err(_) => {
                        // A malformed chunked body: what arrived goes out, then both close.
                        let _ = write_within(client, out, idle).await;
                        return (false, false, true);
                    }
                },
                _ => up.conn.buf.len(),
            };
            if out.is_empty() && take >= DIRECT_WRITE {
                // Large pieces go out from the read buffer itself.
                match write_within(client, &up.conn.buf[..take], idle).await {
                    Ok(w) => waited |= w,
                    Err(_) => return (false, false, true),
                }
            } else {
                out.put_slice(&up.conn.buf[..take]);
            }
            up.conn.buf.advance(take);
            match up.framing {
                Framing::Length(_) => {
                    left -= take as u64;
                    done = left == 0;
                }
                Framing::Chunked => done = chunks.done(),
                _ => {}
            }
        }
        if !out.is_empty() && (done || up.conn.buf.is_empty()) {
            match write_within(client, out, idle).await {
                Ok(w) => waited |= w,
                Err(_) => return (false, done && up.conn.buf.is_empty(), true),
            }
            out.clear();
        }
        if done {
            return (true, up.conn.buf.is_empty(), waited);
        }
        if up.conn.buf.is_empty() {
            if !quick_ack {
                // The body spans several reads: acknowledge what arrives at once, so an
                // upstream holding back its last partial segment until the previous ones are
                // acknowledged (Nagle, or nginx's `tcp_nopush`) does not wait out this end's
                // delayed ACK (40 ms on Linux), which made the p99 of 64 KiB answers ~40 ms.
                // Linux leaves quick-ack mode by itself once the connection turns
                // interactive again (the next request): set once per answer.
                let _ = socket2::SockRef::from(up.conn.stream.inner()).set_quickack(true);
                quick_ack = true;
                waited = true;
            }
            up.conn.buf.reserve(READ_CHUNK);
            match tokio::time::timeout(idle, up.conn.stream.read_buf(&mut up.conn.buf)).await {
                // The end of a close-delimited body; any other body was cut short.
                Ok(Ok(0)) => return (matches!(up.framing, Framing::UntilClose), false, true),
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return (false, false, true),
            }
        }
    }
}

/// Write all of `data` and flush it (a TLS stream holds records until then), failing when
/// one write makes no progress for `idle` (a client that stopped reading). A write the
/// socket takes whole at once neither reads the clock nor arms a timer; `Ok(true)` when the
/// write had to wait.
pub(super) async fn write_within<C: AsyncWrite + Unpin>(
    client: &mut C,
    mut data: &[u8],
    idle: Duration,
) -> std::io::Result<bool> {
    match write_now(client, data)? {
        (_, true) => return Ok(false),
        (n, false) => data = &data[n..],
    }
    while !data.is_empty() {
        match tokio::time::timeout(idle, client.write(data)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
    match tokio::time::timeout(idle, client.flush()).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    }
    Ok(true)
}

/// How much of `data` the stream takes without waiting, and whether all of it is then
/// flushed. Polled with a waker that does nothing: after a `Pending`, the caller's own
/// writes poll again with the task's.
fn write_now<C: AsyncWrite + Unpin>(client: &mut C, data: &[u8]) -> std::io::Result<(usize, bool)> {
    let mut now = Context::from_waker(Waker::noop());
    let mut n = 0;
    while n < data.len() {
        match Pin::new(&mut *client).poll_write(&mut now, &data[n..]) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(k)) => n += k,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok((n, false)),
        }
    }
    match Pin::new(&mut *client).poll_flush(&mut now) {
        Poll::Ready(r) => r.map(|()| (n, true)),
        Poll::Pending => Ok((n, false)),
    }
}
