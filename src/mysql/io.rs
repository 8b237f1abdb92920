//! Reading and writing whole MySQL packets on a socket, bounded in size (checked before the
//! body is buffered) and in time by the caller. The only I/O of the protocol's connection
//! phase; sessions drive their sockets themselves.

use super::codec::{self, ProtocolError};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why reading a packet failed.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("connection closed")]
    Closed,
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
}

/// One logical packet: its first sequence id, the next one expected, and its payload (joined
/// over 16 MiB continuations).
#[derive(Debug)]
pub struct Packet {
    pub seq: u8,
    pub next_seq: u8,
    pub payload: Vec<u8>,
}

/// Read one logical packet of at most `max` payload bytes, using `buf` for what arrives
/// beyond it (kept for the next call).
pub async fn read_packet<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Packet, PacketError> {
    loop {
        if let Some(f) = codec::frame(buf, max)? {
            let payload = f.payload(buf).into_owned();
            let packet = Packet {
                seq: f.seq,
                next_seq: f.next_seq(),
                payload,
            };
            buf.advance(f.wire_len);
            return Ok(packet);
        }
        // Storage only while bytes wait in it (a client between commands holds none).
        if crate::net::bufs::read(s, buf, 4096).await? == 0 {
            return Err(PacketError::Closed);
        }
    }
}

/// [`read_packet`] without reading past the packet when `buf` is empty: the client's first
/// packet may be an SSLRequest, and the TLS handshake that follows it at once is not ours to
/// buffer.
pub async fn read_packet_exact<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Packet, PacketError> {
    if buf.is_empty() {
        let mut head = [0u8; 4];
        match s.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(PacketError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        buf.extend_from_slice(&head);
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        if len <= max && len < 0xff_ffff {
            let at = buf.len();
            buf.resize(at + len, 0);
            s.read_exact(&mut buf[at..]).await?;
        }
    }
    read_packet(s, buf, max).await
}

/// Frame `payload` as packet(s) from sequence id `seq` and write them; returns the next id.
pub async fn write_packet<S: AsyncWrite + Unpin>(
    s: &mut S,
    seq: u8,
    payload: &[u8],
) -> std::io::Result<u8> {
    let mut out = BytesMut::with_capacity(payload.len() + 8);
    let next = codec::write_packet(&mut out, seq, payload);
    s.write_all(&out).await?;
    s.flush().await?;
    Ok(next)
}

/// An ERR packet payload (with SQLSTATE).
pub fn err_payload(code: u16, state: &[u8; 5], message: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec::put_err(
        &mut out,
        &codec::ErrPacket {
            code,
            sql_state: Some(*state),
            message: message.as_bytes(),
        },
    );
    out.to_vec()
}

/// An OK packet payload for `caps` with `status` flags.
pub fn ok_payload(caps: u64, status: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec::put_ok(
        &mut out,
        &codec::OkPacket {
            header: codec::OK_HEADER,
            status,
            ..Default::default()
        },
        caps,
    );
    out.to_vec()
}
