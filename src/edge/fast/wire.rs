//! Byte-level pieces of the fast path: the upstream response head (status, framing, reuse),
//! the client's response head rewritten from it, and the chunked-body scanner.

use bytes::{BufMut, BytesMut};
use http::HeaderValue;
use std::mem::MaybeUninit;

/// Headers a request or response may have on this path (more: the request goes to hyper; a
/// response with more is a 502).
pub(super) const MAX_HEADERS: usize = 96;

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A 1xx answer (not 101) of this many bytes, to skip.
    Interim(usize),
    Final {
        len: usize,
        status: u16,
        framing: Framing,
        reusable: bool,
    },
}

/// Parse a response head at the start of `buf` (`None`: incomplete).
pub fn parse_response(buf: &[u8], head_only: bool) -> Result<Option<Head>, &'static str> {
    parse_and_rewrite(buf, head_only, None)
}

/// Connection tokens kept without allocating; a response naming more uses a `Vec`.
const NAMED_INLINE: usize = 8;

/// [`parse_response`], and for a final head with `rewrite` = (request id, out): the client's
/// response head from it in `out` (cleared first), all but its end, which
/// [`finish_head`] writes. One parse serves both: the head is read once per answer.
///
/// The client's head: hop-by-hop headers (and those Connection names) removed but for a
/// chunked Transfer-Encoding passed through as it is, Via appended, the request id set.
pub fn parse_and_rewrite(
    buf: &[u8],
    head_only: bool,
    rewrite: Option<(&HeaderValue, &mut BytesMut)>,
) -> Result<Option<Head>, &'static str> {
    // Uninitialised slots: filling 96 empty headers first cost more than parsing a head.
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed response head"),
    };
    let status = resp.code.ok_or("no status")?;
    if resp.headers.len() > MAX_HEADERS - 4 {
        // Room for what the rewrite adds (Via, X-Request-Id, Connection).
        return Err("too many response headers");
    }
    if status == 101 {
        return Err("101 Switching Protocols to a request that asked for no upgrade");
    }
    if (100..200).contains(&status) {
        return Ok(Some(Head::Interim(len)));
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = resp.version != Some(1);
    let mut named: [&[u8]; NAMED_INLINE] = [b""; NAMED_INLINE];
    let mut named_len = 0;
    let mut named_more: Vec<&[u8]> = Vec::new();
    // Each header's kind, found once by its name (for the rewrite below too).
    let mut kinds = [RespHeader::Other; MAX_HEADERS];
    for (h, kind) in resp.headers.iter().zip(kinds.iter_mut()) {
        *kind = RespHeader::of(h.name.as_bytes());
        match *kind {
            RespHeader::ContentLength => {
                let n = digits(h.value.trim_ascii()).ok_or("bad Content-Length")?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length");
                }
                length = Some(n);
            }
            RespHeader::TransferEncoding => {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            RespHeader::Connection => {
                for t in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                        close = false;
                    }
                    // Every token names a header to drop (RFC 9110 7.6.1); Keep-Alive is
                    // dropped anyway, and leaving it out spares the check below for the
                    // usual `Connection: keep-alive`.
                    if t.eq_ignore_ascii_case(b"keep-alive") {
                        continue;
                    }
                    if named_len < NAMED_INLINE {
                        named[named_len] = t;
                        named_len += 1;
                    } else {
                        named_more.push(t);
                    }
                }
            }
            RespHeader::Via | RespHeader::HopByHop | RespHeader::Other => {}
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        Framing::None
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(0)) => Framing::None,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    if let Some((request_id, out)) = rewrite {
        out.clear();
        status_line(out, status, resp.reason);
        let named = &named[..named_len];
        let mut via = false;
        let mut lines = Lines::new(buf, len);
        for (i, (h, kind)) in resp.headers.iter().zip(kinds).enumerate() {
            let name = h.name.as_bytes();
            let hop = match kind {
                RespHeader::Connection | RespHeader::HopByHop => true,
                // With a Transfer-Encoding the length is the coding's (RFC 9112 6.3): a
                // Content-Length beside it must not reach the client.
                RespHeader::ContentLength => chunked.is_some(),
                RespHeader::TransferEncoding | RespHeader::Via | RespHeader::Other => false,
            } || (named_len > 0
                && named
                    .iter()
                    .chain(&named_more)
                    .any(|n| name.eq_ignore_ascii_case(n)));
            if hop {
                continue;
            }
            if !via && kind == RespHeader::Via {
                lines.flush(out);
                put_line(out, name, &[h.value, b", 1.1 switchyard"]);
                via = true;
            } else {
                lines.keep(out, resp.headers, i);
            }
        }
        lines.flush(out);
        if !via {
            out.put_slice(b"via: 1.1 switchyard\r\n");
        }
        out.put_slice(b"x-request-id: ");
        out.put_slice(request_id.as_bytes());
        out.put_slice(b"\r\n");
    }
    Ok(Some(Head::Final {
        len,
        status,
        framing,
        reusable: !close && framing != Framing::UntilClose,
    }))
}

/// Copies a parsed head's header lines to `out`: lines kept one after another leave in one
/// copy of the bytes as they came. A line that does not end in CRLF is written as
/// `name: value` CRLF instead (a bare LF is not passed on).
pub(super) struct Lines<'a> {
    buf: &'a [u8],
    head_len: usize,
    /// The run of kept lines not yet copied: `buf[run.0..run.1]`.
    run: (usize, usize),
}

impl<'a> Lines<'a> {
    pub(super) fn new(buf: &'a [u8], head_len: usize) -> Self {
        Lines {
            buf,
            head_len,
            run: (0, 0),
        }
    }

    /// Where header `i` of `headers` starts and ends in `buf` (its CRLF included), when it
    /// ends in CRLF.
    fn line(&self, headers: &[httparse::Header<'_>], i: usize) -> Option<(usize, usize)> {
        let base = self.buf.as_ptr() as usize;
        let start = (headers[i].name.as_ptr() as usize).checked_sub(base)?;
        let end = match headers.get(i + 1) {
            Some(next) => (next.name.as_ptr() as usize).checked_sub(base)?,
            None => self.head_len.checked_sub(2)?,
        };
        let ends = |at: usize| at >= 2 && self.buf.get(at - 2..at) == Some(&b"\r\n"[..]);
        (start < end && ends(end) && (i + 1 < headers.len() || ends(self.head_len)))
            .then_some((start, end))
    }

    /// Write header `i` as it came (joined to the run before it when adjacent).
    pub(super) fn keep(&mut self, out: &mut BytesMut, headers: &[httparse::Header<'_>], i: usize) {
        match self.line(headers, i) {
            Some((start, end)) if self.run.1 == start && self.run.0 < self.run.1 => {
                self.run.1 = end;
            }
            Some(range) => {
                self.flush(out);
                self.run = range;
            }
            None => {
                self.flush(out);
                let h = &headers[i];
                put_line(out, h.name.as_bytes(), &[h.value]);
            }
        }
    }

    /// Copy the pending run; call before writing anything else to `out`.
    pub(super) fn flush(&mut self, out: &mut BytesMut) {
        if self.run.0 < self.run.1 {
            out.extend_from_slice(&self.buf[self.run.0..self.run.1]);
        }
        self.run = (0, 0);
    }
}

/// `name: ` the parts of the value, CRLF, with one reservation.
pub(super) fn put_line(out: &mut BytesMut, name: &[u8], value: &[&[u8]]) {
    let len = name.len() + 4 + value.iter().map(|v| v.len()).sum::<usize>();
    out.reserve(len);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for v in value {
        out.extend_from_slice(v);
    }
    out.extend_from_slice(b"\r\n");
}

/// What the rewrite does with a response header, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RespHeader {
    Other,
    ContentLength,
    /// Read for the framing, and passed through: the body goes on in its coding.
    TransferEncoding,
    Connection,
    Via,
    /// Never reaches the client from the upstream: hop-by-hop (RFC 9110 7.6.1) or the
    /// request id, which the edge sets.
    HopByHop,
}

impl RespHeader {
    fn of(name: &[u8]) -> RespHeader {
        match Known::of(name) {
            Known::Te
            | Known::Trailer
            | Known::Upgrade
            | Known::KeepAlive
            | Known::RequestId
            | Known::ProxyConnection => RespHeader::HopByHop,
            Known::Via => RespHeader::Via,
            Known::Connection => RespHeader::Connection,
            Known::ContentLength => RespHeader::ContentLength,
            Known::TransferEncoding => RespHeader::TransferEncoding,
            // Request headers, or none the rewrite treats apart.
            Known::Host
            | Known::Expect
            | Known::ForwardedFor
            | Known::ForwardedHost
            | Known::ForwardedProto
            | Known::Other => RespHeader::Other,
        }
    }
}

/// The header names either side of the fast path treats apart, one table for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    Te,
    Via,
    Host,
    Expect,
    Upgrade,
    Trailer,
    Connection,
    KeepAlive,
    RequestId,
    ContentLength,
    ForwardedFor,
    ProxyConnection,
    ForwardedHost,
    TransferEncoding,
    ForwardedProto,
    Other,
}

impl Known {
    /// In any case. By length first: most names are none of these and differ from all of
    /// them in length.
    #[inline(always)]
    pub(super) fn of(name: &[u8]) -> Known {
        let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
        match name.len() {
            2 if is(b"te") => Known::Te,
            3 if is(b"via") => Known::Via,
            4 if is(b"host") => Known::Host,
            6 if is(b"expect") => Known::Expect,
            7 if is(b"upgrade") => Known::Upgrade,
            7 if is(b"trailer") => Known::Trailer,
            10 if is(b"connection") => Known::Connection,
            10 if is(b"keep-alive") => Known::KeepAlive,
            12 if is(b"x-request-id") => Known::RequestId,
            14 if is(b"content-length") => Known::ContentLength,
            15 if is(b"x-forwarded-for") => Known::ForwardedFor,
            16 if is(b"proxy-connection") => Known::ProxyConnection,
            16 if is(b"x-forwarded-host") => Known::ForwardedHost,
            17 if is(b"transfer-encoding") => Known::TransferEncoding,
            17 if is(b"x-forwarded-proto") => Known::ForwardedProto,
            _ => Known::Other,
        }
    }
}

/// A decimal number of one or more digits (a Content-Length), if it fits a u64.
fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// The end of a head [`parse_and_rewrite`] wrote: `Connection: close` when the connection
/// ends after this answer, and the blank line.
pub fn finish_head(out: &mut BytesMut, close: bool) {
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
}

pub(super) fn status_line(out: &mut BytesMut, status: u16, reason: Option<&str>) {
    out.put_slice(b"HTTP/1.1 ");
    // Three digits always ("012" parses as 12).
    let status = status.min(999);
    out.put_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
    out.put_u8(b' ');
    let canonical = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    out.put_slice(reason.or(canonical).unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
}

/// The client's whole response head from the upstream's (see [`parse_and_rewrite`]), with
/// `Connection: close` when the connection ends after it.
pub fn response_head(
    up: &[u8],
    request_id: &HeaderValue,
    close: bool,
    out: &mut BytesMut,
) -> Result<(), &'static str> {
    match parse_and_rewrite(up, false, Some((request_id, out)))? {
        Some(Head::Final { .. }) => {
            finish_head(out, close);
            Ok(())
        }
        _ => Err("response head"),
    }
}

/// Finds where a chunked body ends (RFC 9112 7.1), fed the bytes as they come; the bytes
/// themselves go through unchanged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChunkScanner {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line: the size so far, whether a digit was seen, in an extension.
    #[default]
    SizeStart,
    Size {
        size: u64,
        ext: bool,
    },
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

impl ChunkScanner {
    /// Whether the last chunk and the trailer section have been seen.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consume bytes of `data` up to the end of the body; how many belong to it (all of
    /// `data` unless the body ends inside it).
    pub fn scan(&mut self, data: &[u8]) -> Result<usize, &'static str> {
        use ChunkState::*;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.state = match self.state {
                Done => return Ok(i),
                SizeStart => match hex(b) {
                    Some(d) => Size {
                        size: u64::from(d),
                        ext: false,
                    },
                    None => return Err("chunk size expected"),
                },
                Size { size, ext } => match (b, ext) {
                    (b'\r', _) => SizeLf { size },
                    (b'\n', _) => self.after_size(size),
                    (_, true) => Size { size, ext },
                    (b';' | b' ' | b'\t', false) => Size { size, ext: true },
                    (_, false) => match hex(b) {
                        Some(d) if size >> 60 == 0 => Size {
                            size: size << 4 | u64::from(d),
                            ext,
                        },
                        Some(_) => return Err("chunk size too large"),
                        None => return Err("bad chunk size"),
                    },
                },
                SizeLf { size } if b == b'\n' => self.after_size(size),
                SizeLf { .. } => return Err("LF expected after chunk size"),
                Data(n) => {
                    let take = (n.min((data.len() - i) as u64)) as usize;
                    i += take;
                    self.state = if take as u64 == n {
                        DataCr
                    } else {
                        Data(n - take as u64)
                    };
                    continue;
                }
                DataCr if b == b'\r' => DataLf,
                DataCr if b == b'\n' => SizeStart,
                DataCr => return Err("CRLF expected after chunk data"),
                DataLf if b == b'\n' => SizeStart,
                DataLf => return Err("LF expected after chunk data"),
                TrailerStart if b == b'\r' => EndLf,
                TrailerStart if b == b'\n' => Done,
                TrailerStart => TrailerLine,
                TrailerLine if b == b'\r' => TrailerLf,
                TrailerLine if b == b'\n' => TrailerStart,
                TrailerLine => TrailerLine,
                TrailerLf if b == b'\n' => TrailerStart,
                TrailerLf => return Err("LF expected in trailer"),
                EndLf if b == b'\n' => Done,
                EndLf => return Err("LF expected at the end of the body"),
            };
            i += 1;
        }
        Ok(if self.state == Done { i } else { data.len() })
    }

    fn after_size(&self, size: u64) -> ChunkState {
        if size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data(size)
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` chunked into pieces of the given sizes, with a trailer when asked.
    fn chunked(body: &[u8], sizes: &[usize], trailer: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = n.clamp(1, rest.len());
            out.extend_from_slice(format!("{n:x};ext=1\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n");
        if trailer {
            out.extend_from_slice(b"X-Sum: 1\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn chunk_scanner_finds_the_end_however_the_bytes_arrive() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for (sizes, trailer) in [
            (&[1usize][..], false),
            (&[7, 300, 4096], true),
            (&[5000], false),
        ] {
            let enc = chunked(&body, sizes, trailer);
            let mut next = enc.clone();
            next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            for step in [1, 3, 64, next.len()] {
                let mut s = ChunkScanner::default();
                let mut used = 0;
                for piece in next.chunks(step) {
                    if s.done() {
                        break;
                    }
                    used += s.scan(piece).unwrap();
                }
                assert!(s.done(), "step {step}");
                assert_eq!(used, enc.len(), "step {step}");
            }
        }
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nabcdeXX",
            b"0\r\nX: y\rZ",
            b"fffffffffffffffff\r\n",
        ] {
            assert!(ChunkScanner::default().scan(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn response_heads_choose_the_framing() {
        let f = |head: &str, head_only: bool| match parse_response(head.as_bytes(), head_only) {
            Ok(Some(Head::Final {
                framing, reusable, ..
            })) => (framing, reusable),
            r => panic!("{head}: {r:?}"),
        };
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            (Framing::Length(5), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            (Framing::None, true)
        );
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            ),
            (Framing::Chunked, true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\n\r\n", false),
            (Framing::UntilClose, false)
        );
        assert!(!f("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).1);
        assert_eq!(
            f(
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
                false
            ),
            (Framing::None, false)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n", false),
            Ok(Some(Head::Interim(37)))
        );
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false),
            Ok(None)
        );
    }

    #[test]
    fn kept_lines_go_out_as_they_came_and_bare_line_feeds_become_crlf() {
        let id = HeaderValue::from_static("i");
        let head = |up: &[u8]| {
            let mut out = BytesMut::new();
            response_head(up, &id, false, &mut out).unwrap();
            String::from_utf8(out.to_vec()).unwrap()
        };
        // Spacing kept as sent; a dropped line splits the run; Via is rewritten in place.
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\nA:1\r\nB:  2 \r\nKeep-Alive: x\r\nVia: p\r\nC: 3\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nA:1\r\nB:  2 \r\nVia: p, 1.1 switchyard\r\nC: 3\r\n\
             x-request-id: i\r\n\r\n"
        );
        for up in [
            &b"HTTP/1.1 200 OK\r\nA: 1\nB: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\nA: 1\nB: 2\n\n",
            b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\n",
            b"HTTP/1.1 200 OK\r\nA: 1\nB: 2\n\r\n",
        ] {
            let out = head(up);
            assert_eq!(
                out,
                "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nvia: 1.1 switchyard\r\n\
                 x-request-id: i\r\n\r\n",
                "{up:?}"
            );
        }
    }

    #[test]
    fn response_head_drops_hop_by_hop_and_adds_via_and_the_request_id() {
        let up = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
                   Keep-Alive: timeout=5\r\nVia: 1.0 lb\r\nTransfer-Encoding: chunked\r\n\
                   X-Request-Id: theirs\r\nContent-Type: text/plain\r\n\r\n";
        let mut out = BytesMut::new();
        let smuggle = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        response_head(smuggle, &HeaderValue::from_static("id"), false, &mut out).unwrap();
        assert!(
            !String::from_utf8_lossy(&out).contains("Content-Length"),
            "{out:?}"
        );
        out.clear();
        response_head(up, &HeaderValue::from_static("ours"), true, &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "HTTP/1.1 200 OK\r\nVia: 1.0 lb, 1.1 switchyard\r\nTransfer-Encoding: chunked\r\n\
             Content-Type: text/plain\r\nx-request-id: ours\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(digits(b"0"), Some(0));
        assert_eq!(digits(b"1024"), Some(1024));
        assert_eq!(digits(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"1 2",
            b"0x10",
            b"18446744073709551616",
        ] {
            assert_eq!(digits(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let head = |cl: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n");
        assert_eq!(
            parse_response(head(" 7 ").as_bytes(), false),
            Ok(Some(Head::Final {
                len: head(" 7 ").len(),
                status: 200,
                framing: Framing::Length(7),
                reusable: true
            }))
        );
        assert_eq!(
            parse_response(head("+7").as_bytes(), false),
            Err("bad Content-Length")
        );
    }

    #[test]
    fn response_header_kinds_by_name_in_any_case() {
        for (name, kind) in [
            ("TE", RespHeader::HopByHop),
            ("Trailer", RespHeader::HopByHop),
            ("UPGRADE", RespHeader::HopByHop),
            ("Keep-Alive", RespHeader::HopByHop),
            ("X-Request-ID", RespHeader::HopByHop),
            ("Proxy-Connection", RespHeader::HopByHop),
            ("Connection", RespHeader::Connection),
            ("Content-Length", RespHeader::ContentLength),
            ("Transfer-Encoding", RespHeader::TransferEncoding),
            ("VIA", RespHeader::Via),
            ("ETag", RespHeader::Other),
            ("connectiox", RespHeader::Other),
        ] {
            assert_eq!(RespHeader::of(name.as_bytes()), kind, "{name}");
        }
    }
}
