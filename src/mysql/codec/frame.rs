//! Packet framing: a 4-byte header (payload length as 3 bytes little-endian, then a sequence
//! id), and logical packets of 16 MiB - 1 or more split into continuation packets.
//!
//! A physical packet carries at most [`MAX_PACKET_PAYLOAD`] (0xFFFFFF) bytes. A packet of
//! exactly that size says "more follows"; the logical packet ends with the first packet that
//! is shorter, which may be empty (a payload of exactly 0xFFFFFF bytes is sent as a full
//! packet plus an empty one). Sequence ids increase by one per physical packet, wrapping at
//! 255, and restart at 0 with each command.
//!
//! [`frame`] finds one logical packet at the start of a buffer without copying it, so a proxy
//! can forward `&buf[..frame.wire_len]` verbatim, or renumber it in place with [`set_seq`].

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::ProtocolError;

/// Bytes of a packet header.
pub const HEADER_LEN: usize = 4;
/// Largest payload of one physical packet; a packet this long is continued by the next one.
pub const MAX_PACKET_PAYLOAD: usize = 0xFF_FFFF;

/// The header of one physical packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes that follow the header (0..=0xFFFFFF).
    pub payload_len: usize,
    pub seq: u8,
}

impl Header {
    /// Header plus payload.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// True when the next packet continues this one's payload.
    pub fn continues(&self) -> bool {
        self.payload_len == MAX_PACKET_PAYLOAD
    }

    /// The four header bytes. Lengths above 0xFFFFFF are cut to 24 bits; build headers
    /// through [`write_packet`] instead, which splits.
    pub fn to_bytes(&self) -> [u8; 4] {
        let l = (self.payload_len as u32).to_le_bytes();
        [l[0], l[1], l[2], self.seq]
    }
}

/// Reads the header at the start of `buf`, if four bytes are there. `max` bounds the
/// payload length before any of it is buffered.
pub fn header(buf: &[u8], max: usize) -> Result<Option<Header>, ProtocolError> {
    let Some(&[a, b, c, seq]) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let payload_len = u32::from_le_bytes([a, b, c, 0]) as usize;
    if payload_len > max {
        return Err(ProtocolError::TooLarge {
            len: payload_len as u64,
            max,
        });
    }
    Ok(Some(Header { payload_len, seq }))
}

/// The sequence id after `seq` (wrapping at 255).
pub fn next_seq(seq: u8) -> u8 {
    seq.wrapping_add(1)
}

/// Checks a received sequence id against the expected one.
pub fn check_seq(got: u8, expected: u8) -> Result<(), ProtocolError> {
    if got == expected {
        Ok(())
    } else {
        Err(ProtocolError::Sequence { got, expected })
    }
}

/// One logical packet at the start of a buffer: one physical packet, or several when the
/// payload needed continuations. All offsets are relative to the start of that buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Sequence id of the first physical packet.
    pub seq: u8,
    /// Sequence id of the last physical packet; the next packet in the exchange uses
    /// [`Frame::next_seq`].
    pub last_seq: u8,
    /// Physical packets in this logical packet (1 unless the payload reached 0xFFFFFF).
    pub packets: usize,
    /// Bytes on the wire: all headers and payloads. Forward `&buf[..wire_len]` verbatim.
    pub wire_len: usize,
    /// The logical payload's length (headers excluded).
    pub payload_len: usize,
}

/// Finds one complete logical packet at the start of `buf`. `Ok(None)` means "read more".
/// Every header is checked as soon as its four bytes are there: its length against `max`
/// together with the payload before it, and its sequence id against the previous one plus
/// one, so an oversized or misnumbered packet is refused before its body is buffered.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<Frame>, ProtocolError> {
    let mut at = 0usize;
    let mut total = 0usize;
    let mut packets = 0usize;
    let mut first_seq = 0u8;
    let mut expected = 0u8;
    loop {
        let rest = buf.get(at..).unwrap_or_default();
        let Some(h) = header(rest, max)? else {
            return Ok(None);
        };
        if packets == 0 {
            first_seq = h.seq;
        } else {
            check_seq(h.seq, expected)?;
        }
        total = total.saturating_add(h.payload_len);
        if total > max {
            return Err(ProtocolError::TooLarge {
                len: total as u64,
                max,
            });
        }
        if rest.len() < h.wire_len() {
            return Ok(None);
        }
        at += h.wire_len();
        packets += 1;
        expected = next_seq(h.seq);
        if !h.continues() {
            return Ok(Some(Frame {
                seq: first_seq,
                last_seq: h.seq,
                packets,
                wire_len: at,
                payload_len: total,
            }));
        }
    }
}

impl Frame {
    /// Sequence id of the packet that follows this one in the exchange.
    pub fn next_seq(&self) -> u8 {
        next_seq(self.last_seq)
    }

    /// The payload pieces of each physical packet, in order. `buf` is the buffer `frame` was
    /// called on; a buffer that does not hold the frame yields fewer pieces, never a panic.
    pub fn chunks<'a>(&self, buf: &'a [u8]) -> Chunks<'a> {
        Chunks {
            rest: buf.get(..self.wire_len).unwrap_or(buf),
        }
    }

    /// The logical payload: borrowed when it is one packet, else the pieces joined into one
    /// allocation of `payload_len` bytes (bounded by the `max` given to [`frame`]).
    pub fn payload<'a>(&self, buf: &'a [u8]) -> Cow<'a, [u8]> {
        if self.packets == 1 {
            let end = HEADER_LEN.saturating_add(self.payload_len);
            return Cow::Borrowed(buf.get(HEADER_LEN..end).unwrap_or_default());
        }
        // Capacity from the buffer too: a hand-made `Frame` cannot make this allocate more
        // than the bytes it will copy.
        let mut joined = Vec::with_capacity(self.payload_len.min(buf.len()));
        for c in self.chunks(buf) {
            joined.extend_from_slice(c);
        }
        Cow::Owned(joined)
    }
}

/// Iterator over the payload pieces of a logical packet's physical packets.
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let h = header(self.rest, usize::MAX).ok()??;
        let body = self.rest.get(HEADER_LEN..)?;
        let take = h.payload_len.min(body.len());
        let (piece, rest) = body.split_at(take);
        self.rest = rest;
        Some(piece)
    }
}

/// Renumbers a logical packet in place so that its first physical packet has sequence id
/// `first`; returns the sequence id that follows it. Only the header bytes change.
pub fn set_seq(buf: &mut [u8], frame: &Frame, first: u8) -> u8 {
    let mut at = 0usize;
    let mut seq = first;
    for _ in 0..frame.packets {
        let Some(rest) = buf.get(at..frame.wire_len.min(buf.len())) else {
            break;
        };
        let Ok(Some(h)) = header(rest, usize::MAX) else {
            break;
        };
        if let Some(b) = buf.get_mut(at + 3) {
            *b = seq;
        }
        seq = next_seq(seq);
        at += h.wire_len();
    }
    seq
}

/// Number of physical packets a payload of `len` bytes takes.
pub fn packet_count(len: usize) -> usize {
    len / MAX_PACKET_PAYLOAD + 1
}

/// Appends `payload` as one logical packet starting at sequence id `seq`, split into
/// continuation packets when it is 0xFFFFFF bytes or longer (ending with an empty packet
/// when the length is a multiple of 0xFFFFFF). Returns the next sequence id.
pub fn write_packet(out: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    out.reserve(payload.len() + HEADER_LEN * packet_count(payload.len()));
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PACKET_PAYLOAD);
        let (piece, tail) = rest.split_at(n);
        out.put_slice(
            &Header {
                payload_len: n,
                seq,
            }
            .to_bytes(),
        );
        out.put_slice(piece);
        seq = next_seq(seq);
        rest = tail;
        if n < MAX_PACKET_PAYLOAD {
            return seq;
        }
    }
}

/// Builds the payload with `build` and appends it as one logical packet (see
/// [`write_packet`]). Returns the next sequence id.
pub fn write_with(out: &mut BytesMut, seq: u8, build: impl FnOnce(&mut BytesMut)) -> u8 {
    let mut payload = BytesMut::new();
    build(&mut payload);
    write_packet(out, seq, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: usize = 16 << 20;

    #[test]
    fn header_needs_four_bytes_and_bounds_length_before_buffering() {
        assert_eq!(header(&[1, 0, 0], 100).unwrap(), None);
        let h = header(&[3, 0, 0, 7, b'a'], 100).unwrap().unwrap();
        assert_eq!(
            (h.payload_len, h.seq, h.wire_len(), h.continues()),
            (3, 7, 7, false)
        );
        assert_eq!(
            header(&[0xFF, 0xFF, 0xFF, 0], 1 << 20),
            Err(ProtocolError::TooLarge {
                len: 0xFF_FFFF,
                max: 1 << 20
            })
        );
        // Only the header is there: the limit is enforced before any payload arrives.
        assert!(frame(&[0x01, 0x00, 0x01, 0], 1024).is_err());
    }

    #[test]
    fn small_packet_frames_and_waits_for_its_body() {
        let mut out = BytesMut::new();
        let next = write_packet(&mut out, 5, b"\x03select 1");
        assert_eq!(next, 6);
        assert_eq!(&out[..4], &[9, 0, 0, 5]);
        let f = frame(&out, 1024).unwrap().unwrap();
        assert_eq!(
            f,
            Frame {
                seq: 5,
                last_seq: 5,
                packets: 1,
                wire_len: 13,
                payload_len: 9
            }
        );
        assert_eq!(&f.payload(&out)[..], b"\x03select 1");
        assert!(matches!(f.payload(&out), Cow::Borrowed(_)));
        for cut in 0..out.len() {
            assert_eq!(frame(&out[..cut], 1024).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn empty_payload_is_one_empty_packet() {
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, 255, b""), 0);
        assert_eq!(&out[..], &[0, 0, 0, 255]);
        let f = frame(&out, 0).unwrap().unwrap();
        assert_eq!((f.payload_len, f.wire_len, f.next_seq()), (0, 4, 0));
    }

    #[test]
    fn payload_of_16mib_minus_1_gets_an_empty_continuation() {
        let payload = vec![0xAB; MAX_PACKET_PAYLOAD];
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, 0, &payload), 2);
        assert_eq!(out.len(), MAX_PACKET_PAYLOAD + 8);
        assert_eq!(&out[..4], &[0xFF, 0xFF, 0xFF, 0]);
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 1]);
        let f = frame(&out, MIB16).unwrap().unwrap();
        assert_eq!(
            (f.packets, f.payload_len, f.last_seq),
            (2, payload.len(), 1)
        );
        assert_eq!(
            f.chunks(&out).map(<[u8]>::len).collect::<Vec<_>>(),
            [MAX_PACKET_PAYLOAD, 0]
        );
        assert_eq!(f.payload(&out)[..], payload[..]);
        // Without the empty packet the logical packet is not complete yet.
        assert_eq!(frame(&out[..out.len() - 4], MIB16).unwrap(), None);
        // The limit counts the whole logical packet.
        assert!(frame(&out, MAX_PACKET_PAYLOAD - 1).is_err());
        // A frame applied to a buffer that does not hold it yields what is there, no panic.
        assert_eq!(f.payload(&out[..100]).len(), 96);
        assert_eq!(f.chunks(&[]).count(), 0);
    }

    #[test]
    fn long_payload_splits_and_joins_across_sequence_wrap() {
        let payload: Vec<u8> = (0..MIB16 + 10).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, 255, &payload), 1);
        let f = frame(&out, 64 << 20).unwrap().unwrap();
        assert_eq!((f.seq, f.last_seq, f.packets), (255, 0, 2));
        assert_eq!(f.wire_len, out.len());
        assert!(f.payload(&out)[..] == payload[..]);
        // Total over the limit is refused once the second header is visible.
        let second = HEADER_LEN + MAX_PACKET_PAYLOAD;
        assert!(matches!(
            frame(&out[..second + 4], MIB16),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn continuation_with_wrong_sequence_is_refused() {
        let mut out = BytesMut::new();
        write_packet(&mut out, 0, &vec![0; MAX_PACKET_PAYLOAD + 1]);
        let second = HEADER_LEN + MAX_PACKET_PAYLOAD;
        out[second + 3] = 9;
        assert_eq!(
            frame(&out, 64 << 20),
            Err(ProtocolError::Sequence {
                got: 9,
                expected: 1
            })
        );
    }

    #[test]
    fn set_seq_renumbers_every_physical_packet() {
        let mut out = BytesMut::new();
        write_packet(&mut out, 0, &vec![1; MAX_PACKET_PAYLOAD + 3]);
        write_packet(&mut out, 2, b"next");
        let f = frame(&out, 64 << 20).unwrap().unwrap();
        assert_eq!(set_seq(&mut out, &f, 254), 0);
        let f2 = frame(&out, 64 << 20).unwrap().unwrap();
        assert_eq!((f2.seq, f2.last_seq), (254, 255));
        // The packet after the frame is untouched.
        assert_eq!(out[f.wire_len + 3], 2);
    }

    #[test]
    fn seq_helpers_wrap() {
        assert_eq!(next_seq(255), 0);
        assert!(check_seq(3, 3).is_ok());
        assert_eq!(
            check_seq(4, 3),
            Err(ProtocolError::Sequence {
                got: 4,
                expected: 3
            })
        );
        assert_eq!(packet_count(0), 1);
        assert_eq!(packet_count(MAX_PACKET_PAYLOAD - 1), 1);
        assert_eq!(packet_count(MAX_PACKET_PAYLOAD), 2);
    }
}
