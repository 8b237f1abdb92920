//! Client → server connection-phase packets: HandshakeResponse41 and its 32-byte prefix, the
//! SSLRequest.

use bytes::{BufMut, BytesMut};

use super::flags::*;
use super::wire::{put_lenenc_bytes, put_nul_bytes, Reader};
use super::{malformed, ProtocolError};

/// Bytes of an SSLRequest, which is also the fixed prefix of every HandshakeResponse41.
pub const SSL_REQUEST_LEN: usize = 32;
/// Filler bytes after the character set (MariaDB puts its extended capabilities in the last 4).
const FILLER_LEN: usize = 23;

/// The fixed 32-byte prefix: capabilities, max packet size, character set. Sent alone it is
/// an SSLRequest (the client then starts TLS and sends the full response over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientCaps {
    /// Client flags, with MariaDB's extension in bits 32..64 when `CLIENT_MYSQL` is clear.
    pub capabilities: u64,
    pub max_packet_size: u32,
    pub charset: u8,
}

/// HandshakeResponse41.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HandshakeResponse<'a> {
    pub caps: ClientCaps,
    pub user: &'a [u8],
    /// The auth plugin's first response (e.g. a 20-byte native-password scramble, empty for an
    /// empty password).
    pub auth_response: &'a [u8],
    /// With `CLIENT_CONNECT_WITH_DB`.
    pub database: Option<&'a [u8]>,
    /// With `CLIENT_PLUGIN_AUTH`; `None` when the client set the flag but ended the packet.
    pub auth_plugin: Option<&'a [u8]>,
    /// With `CLIENT_CONNECT_ATTRS`: the raw key/value section (walk it with
    /// [`connect_attrs`]); `None` when the flag is set but the packet ended.
    pub connect_attrs: Option<&'a [u8]>,
    /// With `CLIENT_ZSTD_COMPRESSION_ALGORITHM` (MySQL 8.0.18+).
    pub zstd_level: Option<u8>,
}

/// What a client sends first: an SSLRequest or the handshake response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientHello<'a> {
    SslRequest(ClientCaps),
    Response(HandshakeResponse<'a>),
}

fn parse_caps(r: &mut Reader<'_>) -> Result<ClientCaps, ProtocolError> {
    let mut capabilities = u64::from(r.u32()?);
    let max_packet_size = r.u32()?;
    let charset = r.u8()?;
    let filler: [u8; FILLER_LEN] = r.array()?;
    if has_mariadb_extension(capabilities) {
        let [.., a, b, c, d] = filler;
        capabilities |= u64::from(u32::from_le_bytes([a, b, c, d])) << 32;
    }
    if capabilities & CLIENT_PROTOCOL_41 == 0 {
        return Err(ProtocolError::Unsupported {
            what: "pre-4.1 handshake response",
        });
    }
    Ok(ClientCaps {
        capabilities,
        max_packet_size,
        charset,
    })
}

fn put_caps(out: &mut BytesMut, c: &ClientCaps) {
    out.put_u32_le(c.capabilities as u32);
    out.put_u32_le(c.max_packet_size);
    out.put_u8(c.charset);
    out.put_bytes(0, FILLER_LEN - 4);
    if has_mariadb_extension(c.capabilities) {
        out.put_u32_le((c.capabilities >> 32) as u32);
    } else {
        out.put_u32_le(0);
    }
}

/// Parses the client's first packet: a 32-byte SSLRequest (which must carry `CLIENT_SSL`) or
/// a HandshakeResponse41. Pre-4.1 responses (HandshakeResponse320) are unsupported.
pub fn parse_client_hello(payload: &[u8]) -> Result<ClientHello<'_>, ProtocolError> {
    if payload.len() == SSL_REQUEST_LEN {
        let caps = parse_ssl_request(payload)?;
        return Ok(ClientHello::SslRequest(caps));
    }
    parse_handshake_response(payload).map(ClientHello::Response)
}

/// Parses an SSLRequest: exactly 32 bytes with `CLIENT_SSL`.
pub fn parse_ssl_request(payload: &[u8]) -> Result<ClientCaps, ProtocolError> {
    let mut r = Reader::new(payload, "SSLRequest");
    let caps = parse_caps(&mut r)?;
    r.finish()?;
    if caps.capabilities & CLIENT_SSL == 0 {
        return Err(malformed("SSLRequest without CLIENT_SSL"));
    }
    Ok(caps)
}

pub fn put_ssl_request(out: &mut BytesMut, caps: &ClientCaps) {
    put_caps(
        out,
        &ClientCaps {
            capabilities: caps.capabilities | CLIENT_SSL,
            ..*caps
        },
    );
}

/// Parses a HandshakeResponse41. The auth response is read by the first matching rule:
/// `CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA` (length-encoded), `CLIENT_SECURE_CONNECTION`
/// (1-byte length), else NUL-terminated. Fields after the database may be missing at the end
/// of the packet, as several clients send them. Bytes after the fields the capabilities
/// define are not read, as MariaDB does not read them (see `parse_change_user`).
pub fn parse_handshake_response(payload: &[u8]) -> Result<HandshakeResponse<'_>, ProtocolError> {
    let mut r = Reader::new(payload, "handshake response");
    let caps = parse_caps(&mut r)?;
    let flags = caps.capabilities;
    let user = r.nul_bytes()?;
    let auth_response = if flags & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_bytes()?
    } else if flags & CLIENT_SECURE_CONNECTION != 0 {
        let n = r.u8()?;
        r.take(usize::from(n))?
    } else {
        r.nul_bytes()?
    };
    let mut resp = HandshakeResponse {
        caps,
        user,
        auth_response,
        ..HandshakeResponse::default()
    };
    if flags & CLIENT_CONNECT_WITH_DB != 0 {
        resp.database = Some(r.nul_bytes()?);
    }
    if flags & CLIENT_PLUGIN_AUTH != 0 && !r.is_empty() {
        resp.auth_plugin = Some(r.nul_or_eof_bytes());
    }
    if flags & CLIENT_CONNECT_ATTRS != 0 && !r.is_empty() {
        let attrs = r.lenenc_bytes()?;
        // Validate now so users of `connect_attrs` see only well-formed sections.
        for kv in connect_attrs(attrs) {
            kv?;
        }
        resp.connect_attrs = Some(attrs);
    }
    if flags & CLIENT_ZSTD_COMPRESSION_ALGORITHM != 0 && !r.is_empty() {
        resp.zstd_level = Some(r.u8()?);
    }
    Ok(resp)
}

/// Builds a HandshakeResponse41 (the inverse of [`parse_handshake_response`]). The auth
/// response encoding follows the same flags; with only `CLIENT_SECURE_CONNECTION` it is cut
/// to 255 bytes. A field whose flag is set but whose value is `None` ends the packet there
/// (later fields are not written), which is how the parser reads a short packet.
pub fn put_handshake_response(out: &mut BytesMut, resp: &HandshakeResponse<'_>) {
    let flags = resp.caps.capabilities;
    put_caps(out, &resp.caps);
    put_nul_bytes(out, resp.user);
    if flags & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        put_lenenc_bytes(out, resp.auth_response);
    } else if flags & CLIENT_SECURE_CONNECTION != 0 {
        let n = resp.auth_response.len().min(255);
        out.put_u8(n as u8);
        out.put_slice(&resp.auth_response[..n]);
    } else {
        put_nul_bytes(out, resp.auth_response);
    }
    if flags & CLIENT_CONNECT_WITH_DB != 0 {
        put_nul_bytes(out, resp.database.unwrap_or_default());
    }
    if flags & CLIENT_PLUGIN_AUTH != 0 {
        let Some(plugin) = resp.auth_plugin else {
            return;
        };
        put_nul_bytes(out, plugin);
    }
    if flags & CLIENT_CONNECT_ATTRS != 0 {
        let Some(attrs) = resp.connect_attrs else {
            return;
        };
        put_lenenc_bytes(out, attrs);
    }
    if flags & CLIENT_ZSTD_COMPRESSION_ALGORITHM != 0 {
        if let Some(level) = resp.zstd_level {
            out.put_u8(level);
        }
    }
}

/// Iterates the key/value pairs of a connect-attributes section (both length-encoded).
/// After the first error it yields nothing more.
pub fn connect_attrs(section: &[u8]) -> ConnectAttrs<'_> {
    ConnectAttrs {
        r: Reader::new(section, "connect attributes"),
        failed: false,
    }
}

/// Iterator returned by [`connect_attrs`].
#[derive(Debug, Clone)]
pub struct ConnectAttrs<'a> {
    r: Reader<'a>,
    failed: bool,
}

impl<'a> Iterator for ConnectAttrs<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let kv = (|| Ok((self.r.lenenc_bytes()?, self.r.lenenc_bytes()?)))();
        self.failed = kv.is_err();
        Some(kv)
    }
}

/// Builds a connect-attributes section from key/value pairs, for
/// [`HandshakeResponse::connect_attrs`] (its outer length prefix is added by the builder).
pub fn put_connect_attrs(out: &mut BytesMut, attrs: &[(&[u8], &[u8])]) {
    for (k, v) in attrs {
        put_lenenc_bytes(out, k);
        put_lenenc_bytes(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn built(f: impl FnOnce(&mut BytesMut)) -> BytesMut {
        let mut b = BytesMut::new();
        f(&mut b);
        b
    }

    // The HandshakeResponse41 example of the MySQL protocol documentation.
    const DOC_RESPONSE: &str = "8d a6 0f 00 00 00 00 01 08 00 00 00 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 70 61 6d 00 14 ab 09 ee f6 bc b1 32 3e 61 14 38 65 c0 99 1d
        95 7d 75 d4 47 74 65 73 74 00 6d 79 73 71 6c 5f 6e 61 74 69 76 65 5f 70 61 73 73 77 6f 72
        64 00";

    #[test]
    fn handshake_response_documentation_example() {
        let p = unhex(DOC_RESPONSE);
        let ClientHello::Response(r) = parse_client_hello(&p).unwrap() else {
            panic!("not a response");
        };
        assert_eq!(r.caps.capabilities, 0x000F_A68D);
        assert_eq!((r.caps.max_packet_size, r.caps.charset), (1 << 24, 8));
        assert_eq!(r.user, b"pam");
        assert_eq!(r.auth_response.len(), 20);
        assert_eq!(r.database, Some(&b"test"[..]));
        assert_eq!(r.auth_plugin, Some(MYSQL_NATIVE_PASSWORD));
        assert_eq!((r.connect_attrs, r.zstd_level), (None, None));
        assert_eq!(&built(|b| put_handshake_response(b, &r))[..], &p[..]);
        for cut in 0..p.len() - "mysql_native_password".len() - 1 {
            assert!(parse_handshake_response(&p[..cut]).is_err(), "cut {cut}");
        }
    }

    fn full_response(flags: u64) -> (BytesMut, HandshakeResponse<'static>) {
        static ATTRS: std::sync::OnceLock<BytesMut> = std::sync::OnceLock::new();
        let attrs = ATTRS.get_or_init(|| {
            built(|b| {
                put_connect_attrs(
                    b,
                    &[
                        (b"_client_name", b"libmariadb"),
                        (b"_os", b"Linux"),
                        (b"program_name", b""),
                    ],
                )
            })
        });
        let resp = HandshakeResponse {
            caps: ClientCaps {
                capabilities: flags,
                max_packet_size: 16 << 20,
                charset: CHARSET_UTF8MB4_GENERAL_CI,
            },
            user: b"app",
            auth_response: &[7; 32],
            database: (flags & CLIENT_CONNECT_WITH_DB != 0).then_some(&b"shop"[..]),
            auth_plugin: (flags & CLIENT_PLUGIN_AUTH != 0).then_some(CACHING_SHA2_PASSWORD),
            connect_attrs: (flags & CLIENT_CONNECT_ATTRS != 0).then_some(&attrs[..]),
            zstd_level: (flags & CLIENT_ZSTD_COMPRESSION_ALGORITHM != 0).then_some(3),
        };
        (built(|b| put_handshake_response(b, &resp)), resp)
    }

    #[test]
    fn handshake_response_round_trips_in_all_three_auth_encodings() {
        let base = CLIENT_PROTOCOL_41
            | CLIENT_LONG_PASSWORD
            | CLIENT_CONNECT_WITH_DB
            | CLIENT_PLUGIN_AUTH
            | CLIENT_CONNECT_ATTRS;
        for (extra, auth_at) in [
            (
                CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT_SECURE_CONNECTION,
                1,
            ),
            (CLIENT_SECURE_CONNECTION, 1),
            (0, 0),
        ] {
            let flags = base | extra | CLIENT_ZSTD_COMPRESSION_ALGORITHM;
            let (mut p, resp) = full_response(flags);
            if extra == 0 {
                // NUL-terminated: the response must not contain NUL; ours is 0x07 bytes.
                assert_eq!(p[32 + 4 + 32], 0);
            } else {
                assert_eq!(p[32 + 4], 32, "length byte at {auth_at}");
            }
            let back = parse_handshake_response(&p).unwrap();
            assert_eq!(back, resp);
            let attrs: Vec<_> = connect_attrs(back.connect_attrs.unwrap())
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(attrs[0], (&b"_client_name"[..], &b"libmariadb"[..]));
            assert_eq!(attrs[2], (&b"program_name"[..], &b""[..]));
            // Bytes past the defined fields are not read (MariaDB does not read them).
            p.extend_from_slice(b"x");
            assert_eq!(parse_handshake_response(&p).unwrap(), resp);
        }
    }

    #[test]
    fn handshake_response_optional_tail_fields() {
        let flags = CLIENT_PROTOCOL_41
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH
            | CLIENT_CONNECT_ATTRS;
        let (p, resp) = full_response(flags);
        // Packet ends after the auth response although plugin/attrs flags are set.
        let short = &p[..32 + 4 + 1 + 32];
        let r = parse_handshake_response(short).unwrap();
        assert_eq!((r.auth_plugin, r.connect_attrs), (None, None));
        assert_eq!(&built(|b| put_handshake_response(b, &r))[..], short);
        // Plugin name without NUL at the very end.
        let mut no_nul = p[..32 + 4 + 1 + 32 + CACHING_SHA2_PASSWORD.len()].to_vec();
        assert_eq!(
            parse_handshake_response(&no_nul).unwrap().auth_plugin,
            resp.auth_plugin
        );
        no_nul.push(0);
        // Broken attributes: an inner length past the section's end.
        no_nul.extend_from_slice(&[2, 5, b'a']);
        assert!(parse_handshake_response(&no_nul).is_err());
    }

    #[test]
    fn mariadb_client_extended_capabilities_in_filler() {
        let flags = (CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH)
            | MARIADB_CLIENT_STMT_BULK_OPERATIONS
            | MARIADB_CLIENT_PROGRESS;
        let (p, resp) = full_response(flags);
        assert_eq!(&p[9..28], &[0; 19]);
        assert_eq!(&p[28..32], &((flags >> 32) as u32).to_le_bytes());
        assert_eq!(parse_handshake_response(&p).unwrap(), resp);
        // With CLIENT_MYSQL set the filler is not read.
        let mut q = p.to_vec();
        q[0] |= 1;
        let back = parse_handshake_response(&q).unwrap();
        assert_eq!(back.caps.capabilities, (flags | 1) & 0xFFFF_FFFF);
    }

    #[test]
    fn ssl_request_is_the_32_byte_prefix() {
        let caps = ClientCaps {
            capabilities: CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_LONG_PASSWORD,
            max_packet_size: 1 << 24,
            charset: CHARSET_UTF8MB4_0900_AI_CI,
        };
        let p = built(|b| put_ssl_request(b, &caps));
        assert_eq!(p.len(), SSL_REQUEST_LEN);
        let want = ClientCaps {
            capabilities: caps.capabilities | CLIENT_SSL,
            ..caps
        };
        assert_eq!(
            parse_client_hello(&p).unwrap(),
            ClientHello::SslRequest(want)
        );
        // Same prefix without CLIENT_SSL is not an SSLRequest.
        let mut q = p.to_vec();
        q[1] &= !(CLIENT_SSL >> 8) as u8;
        assert!(parse_client_hello(&q).is_err());
        // A full response starts with the same 32 bytes.
        let (full, _) = full_response(want.capabilities | CLIENT_PLUGIN_AUTH);
        assert_eq!(
            parse_ssl_request(&full[..32]).unwrap().capabilities,
            want.capabilities | CLIENT_PLUGIN_AUTH
        );
        assert!(parse_ssl_request(&full[..31]).is_err());
    }

    #[test]
    fn pre_41_responses_are_unsupported() {
        let mut p = unhex(DOC_RESPONSE);
        p[1] &= !((CLIENT_PROTOCOL_41 >> 8) as u8);
        assert!(matches!(
            parse_handshake_response(&p),
            Err(ProtocolError::Unsupported { .. })
        ));
    }
}
