//! The PROXY protocol header (versions 1 and 2, as HAProxy's `send-proxy` /
//! `send-proxy-v2`, nginx's `proxy_protocol` and cloud load balancers write it) that a load
//! balancer in front of a listener sends before the client's own bytes, naming the client it
//! relays. [`parse`] is the pure decoder (fuzzed); [`read`] takes exactly the header off a
//! TCP connection, never a byte of what follows, so every front end reads its client's
//! first bytes as if no header had been there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::AsyncReadExt;

/// Version 2's twelve-byte signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest line, "\r\n" included (the specification's limit).
const V1_MAX: usize = 107;

/// What a buffer holds so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The start of a header that may still be valid: more bytes are needed.
    More,
    /// A whole header of `len` bytes; `source` is the client it names, `None` when it names
    /// none (v1 `UNKNOWN`, v2 `LOCAL` as a balancer's own health check, or an address family
    /// other than IPv4/IPv6), in which case the connection's own peer stands.
    Done {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Why a connection's first bytes are not a PROXY header.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Neither signature: the peer sent something else (a client straight to a listener
    /// that expects a balancer in front).
    NotProxy,
    /// A version 1 line longer than 107 bytes.
    TooLong,
    /// A header that breaks the format; the text says where.
    Malformed(&'static str),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::NotProxy => {
                f.write_str("the connection did not start with a PROXY protocol header")
            }
            HeaderError::TooLong => f.write_str("PROXY protocol v1 line longer than 107 bytes"),
            HeaderError::Malformed(what) => write!(f, "malformed PROXY protocol header: {what}"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Decode the header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(Parsed::More)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 {
            Ok(Parsed::More)
        } else {
            parse_v1(buf)
        };
    }
    Err(HeaderError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(HeaderError::TooLong)
        } else {
            Ok(Parsed::More)
        };
    };
    if end == 0 || window[end - 1] != b'\r' {
        return Err(HeaderError::Malformed("v1 line not ended by CRLF"));
    }
    let line = std::str::from_utf8(&window[6..end - 1])
        .map_err(|_| HeaderError::Malformed("v1 line is not text"))?;
    let len = end + 1;
    let mut words = line.split(' ');
    let family = words.next().unwrap_or("");
    if family == "UNKNOWN" {
        // Whatever follows is to be ignored.
        return Ok(Parsed::Done { len, source: None });
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => {
            return Err(HeaderError::Malformed(
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let fields: Vec<&str> = words.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(HeaderError::Malformed(
            "v1 line does not have four addresses and ports",
        ));
    };
    let ip = |s: &str| -> Result<IpAddr, HeaderError> {
        let ip = if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| HeaderError::Malformed("v1 address does not match its family"))
    };
    let port = |s: &str| -> Result<u16, HeaderError> {
        let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
        let no_leading_zero = s == "0" || !s.starts_with('0');
        match (digits && no_leading_zero).then(|| s.parse::<u16>()) {
            Some(Ok(p)) => Ok(p),
            _ => Err(HeaderError::Malformed(
                "v1 port is not a number from 0 to 65535",
            )),
        }
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    ip(dst)?;
    port(dport)?;
    Ok(Parsed::Done {
        len,
        source: Some(source),
    })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if buf.len() < 16 {
        if buf.len() > 12 && buf[12] >> 4 != 2 {
            return Err(HeaderError::Malformed(
                "v2 signature with a version other than 2",
            ));
        }
        return Ok(Parsed::More);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(HeaderError::Malformed(
            "v2 signature with a version other than 2",
        ));
    }
    let rest = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + rest;
    if buf.len() < len {
        return Ok(Parsed::More);
    }
    let body = &buf[16..len];
    let source = match command {
        // LOCAL: the balancer speaking for itself (its health checks); the address block
        // is to be ignored.
        0 => None,
        1 => match buf[13] >> 4 {
            1 => {
                if body.len() < 12 {
                    return Err(HeaderError::Malformed(
                        "v2 IPv4 block shorter than 12 bytes",
                    ));
                }
                let ip: [u8; 4] = body[0..4].try_into().expect("4 bytes");
                let port = u16::from_be_bytes([body[8], body[9]]);
                Some(SocketAddr::new(IpAddr::from(ip), port))
            }
            2 => {
                if body.len() < 36 {
                    return Err(HeaderError::Malformed(
                        "v2 IPv6 block shorter than 36 bytes",
                    ));
                }
                let ip: [u8; 16] = body[0..16].try_into().expect("16 bytes");
                let port = u16::from_be_bytes([body[32], body[33]]);
                Some(SocketAddr::new(IpAddr::from(ip), port))
            }
            // UNSPEC, or a Unix socket's path: no address a client can be told by.
            0 | 3 => None,
            _ => return Err(HeaderError::Malformed("v2 address family unknown")),
        },
        _ => {
            return Err(HeaderError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ))
        }
    };
    Ok(Parsed::Done { len, source })
}

/// Why [`read`] gave up.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// The peer closed before a whole header.
    Closed,
    Header(HeaderError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "reading the PROXY protocol header: {e}"),
            ReadError::Closed => f.write_str("closed before a whole PROXY protocol header"),
            ReadError::Header(e) => e.fmt(f),
        }
    }
}

/// Take the PROXY header off the start of `stream` (exactly its bytes: what follows stays in
/// the socket for the front end) and return the client it names (`None`: the connection's
/// own peer stands). Bounded by the caller's timeout; a peer that sends bytes one at a time
/// costs one peek and one read per piece.
pub async fn read(stream: &mut tokio::net::TcpStream) -> Result<Option<SocketAddr>, ReadError> {
    let mut got: Vec<u8> = Vec::new();
    let mut peeked = [0u8; 256];
    loop {
        let n = stream.peek(&mut peeked).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        let before = got.len();
        got.extend_from_slice(&peeked[..n]);
        let take = match parse(&got).map_err(ReadError::Header)? {
            // The header ends inside what was peeked: consume up to its end only.
            Parsed::Done { len, source } => {
                let mut sink = vec![0u8; len - before];
                stream.read_exact(&mut sink).await.map_err(ReadError::Io)?;
                return Ok(source);
            }
            Parsed::More => n,
        };
        // All of it belongs to the header: consume it, so the next peek waits for more.
        let mut sink = vec![0u8; take];
        stream.read_exact(&mut sink).await.map_err(ReadError::Io)?;
    }
}

/// A listener's whole rule for a connection from `peer`: refused unless `peer` is in
/// `from` (empty: anywhere), then the header read within `limit`; the client it names, or
/// `peer` itself for a header that names none.
pub async fn accept(
    stream: &mut tokio::net::TcpStream,
    peer: SocketAddr,
    from: &[String],
    limit: std::time::Duration,
) -> Result<SocketAddr, String> {
    if !trusted(peer.ip(), from) {
        return Err("the peer is not in proxy_protocol_from".into());
    }
    match tokio::time::timeout(limit, read(stream)).await {
        Ok(Ok(source)) => Ok(source.unwrap_or(peer)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no whole PROXY protocol header within {limit:?}")),
    }
}

/// Whether `peer` may send a PROXY header: `from` lists networks as "10.0.0.0/8",
/// "::1/128" or a bare address; an empty list trusts every peer.
pub fn trusted(peer: IpAddr, from: &[String]) -> bool {
    from.is_empty() || from.iter().any(|net| crate::config::in_network(peer, net))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::in_network;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn version_1_lines() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET /";
        assert_eq!(
            parse(line),
            Ok(Parsed::Done {
                len: 41,
                source: Some("192.0.2.7:56324".parse().unwrap())
            })
        );
        let line = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
        assert_eq!(
            parse(line),
            Ok(Parsed::Done {
                len: line.len(),
                source: Some("[2001:db8::1]:65535".parse().unwrap())
            })
        );
        let line = b"PROXY UNKNOWN ffff::1 whatever\r\n";
        assert_eq!(
            parse(line),
            Ok(Parsed::Done {
                len: line.len(),
                source: None
            })
        );
        // Every prefix of a valid line asks for more.
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n";
        for n in 0..line.len() {
            assert_eq!(parse(&line[..n]), Ok(Parsed::More), "{n}");
        }
    }

    #[test]
    fn version_1_refusals() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 0443 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 -1 443\r\n",
            b"PROXY TCP4 192.0.2.7  10.0.0.1 1 443\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2 \r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HeaderError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HeaderError::NotProxy));
        assert_eq!(
            parse(b"\0\0\0\x08\x04\xd2\x16\x2f"),
            Err(HeaderError::NotProxy)
        );
        assert_eq!(parse(b"PROXZ"), Err(HeaderError::NotProxy));
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat();
        assert_eq!(parse(&long), Err(HeaderError::TooLong));
    }

    #[test]
    fn version_2_blocks() {
        let mut ipv4 = vec![192, 0, 2, 7, 10, 0, 0, 1];
        ipv4.extend_from_slice(&56324u16.to_be_bytes());
        ipv4.extend_from_slice(&443u16.to_be_bytes());
        let h = v2(1, 0x11, &ipv4);
        assert_eq!(
            parse(&h),
            Ok(Parsed::Done {
                len: 28,
                source: Some("192.0.2.7:56324".parse().unwrap())
            })
        );
        for n in 0..h.len() {
            assert_eq!(parse(&h[..n]), Ok(Parsed::More), "{n}");
        }
        // TLVs after the addresses (AWS's VPC endpoint id, say) are skipped.
        let mut with_tlv = ipv4.clone();
        with_tlv.extend_from_slice(&[0xea, 0, 3, b'v', b'p', b'c']);
        let h = v2(1, 0x11, &with_tlv);
        assert_eq!(
            parse(&[&h[..], b"rest"].concat()),
            Ok(Parsed::Done {
                len: 34,
                source: Some("192.0.2.7:56324".parse().unwrap())
            })
        );
        let mut ipv6 = vec![0u8; 36];
        ipv6[0] = 0x20;
        ipv6[1] = 0x01;
        ipv6[15] = 1;
        ipv6[32..34].copy_from_slice(&5432u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &ipv6)),
            Ok(Parsed::Done {
                len: 52,
                source: Some("[2001::1]:5432".parse().unwrap())
            })
        );
        // LOCAL (a health check) and UNSPEC: the connection's own peer stands.
        assert_eq!(
            parse(&v2(0, 0x00, &[])),
            Ok(Parsed::Done {
                len: 16,
                source: None
            })
        );
        assert_eq!(
            parse(&v2(0, 0x11, &ipv4)),
            Ok(Parsed::Done {
                len: 28,
                source: None
            })
        );
        assert!(matches!(
            parse(&v2(1, 0x11, &ipv4[..8])),
            Err(HeaderError::Malformed(_))
        ));
        assert!(matches!(
            parse(&v2(1, 0x21, &ipv4)),
            Err(HeaderError::Malformed(_))
        ));
        assert!(matches!(
            parse(&v2(2, 0x11, &ipv4)),
            Err(HeaderError::Malformed(_))
        ));
        assert!(matches!(
            parse(&v2(1, 0x41, &ipv4)),
            Err(HeaderError::Malformed(_))
        ));
        let mut v3 = v2(1, 0x11, &ipv4);
        v3[12] = 0x31;
        assert!(matches!(parse(&v3), Err(HeaderError::Malformed(_))));
        assert!(matches!(parse(&v3[..13]), Err(HeaderError::Malformed(_))));
    }

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_network(ip("10.1.2.3"), "10.0.0.0/8"));
        assert!(!in_network(ip("11.1.2.3"), "10.0.0.0/8"));
        assert!(in_network(ip("192.168.1.130"), "192.168.1.128/25"));
        assert!(!in_network(ip("192.168.1.127"), "192.168.1.128/25"));
        assert!(in_network(ip("127.0.0.1"), "127.0.0.1"));
        assert!(!in_network(ip("127.0.0.2"), "127.0.0.1"));
        assert!(in_network(ip("1.2.3.4"), "0.0.0.0/0"));
        assert!(in_network(ip("::ffff:10.0.0.9"), "10.0.0.0/8"));
        assert!(in_network(ip("2001:db8::5"), "2001:db8::/32"));
        assert!(!in_network(ip("2001:db9::5"), "2001:db8::/32"));
        assert!(!in_network(ip("10.0.0.1"), "::/0"));
        assert!(!in_network(ip("10.0.0.1"), "10.0.0.0/33"));
        assert!(!in_network(ip("10.0.0.1"), "ten"));
        assert!(trusted(ip("8.8.8.8"), &[]));
        assert!(!trusted(ip("8.8.8.8"), &["10.0.0.0/8".into()]));
    }

    #[tokio::test]
    async fn read_takes_the_header_and_nothing_after() {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            // In pieces, the last carrying the client's first bytes.
            for piece in [
                &b"PRO"[..],
                b"XY TCP4 192.0.2.7 10.0.0.1 5",
                b"6324 443\r\nhello",
            ] {
                c.write_all(piece).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            c
        });
        let (mut s, _) = l.accept().await.unwrap();
        let source = read(&mut s).await.unwrap();
        assert_eq!(source, Some("192.0.2.7:56324".parse().unwrap()));
        let mut rest = [0u8; 5];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"hello");
        drop(writer.await.unwrap());
        // A client without a header is refused by its first bytes.
        let writer = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"\0\0\0\x08\x04\xd2\x16\x2f").await.unwrap();
            c
        });
        let (mut s, _) = l.accept().await.unwrap();
        assert!(matches!(
            read(&mut s).await,
            Err(ReadError::Header(HeaderError::NotProxy))
        ));
        drop(writer.await.unwrap());
    }
}
