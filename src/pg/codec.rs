//! PostgreSQL message framing and the few message bodies the proxy reads or writes.
//!
//! Pure: no I/O. Framing borrows from the caller's buffer and never allocates; every length
//! is checked against a caller-given bound before use, so a hostile length prefix costs
//! nothing but an error.

use bytes::{BufMut, BytesMut};

/// Protocol version 3.0 in a StartupMessage.
pub const PROTOCOL_3_0: u32 = 196_608;
/// Request codes that take the place of a protocol version.
pub const SSL_REQUEST: u32 = 80_877_103;
/// The whole SSLRequest message: length 8 and the code.
pub const SSL_REQUEST_PACKET: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// Largest startup packet accepted (PostgreSQL uses 10,000 bytes as well).
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Why bytes from a peer are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message length {len} is outside 4..={max}")]
    BadLength { len: u64, max: usize },
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    #[error("unsupported protocol version {major}.{minor}")]
    UnsupportedVersion { major: u16, minor: u16 },
}

fn malformed(what: &'static str) -> ProtocolError {
    ProtocolError::Malformed { what }
}

/// Header of one tagged message: tag byte plus total size on the wire (tag included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Bytes of the whole message: 1 (tag) + 4 (length) + body.
    pub wire_len: usize,
}

impl Header {
    pub fn body_len(&self) -> usize {
        self.wire_len - 5
    }
}

/// Reads the header at the start of `buf`, if five bytes are there. `max` bounds the
/// declared length (which includes its own four bytes, as on the wire).
pub fn header(buf: &[u8], max: usize) -> Result<Option<Header>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 || len > max {
        return Err(ProtocolError::BadLength {
            len: len as u64,
            max,
        });
    }
    Ok(Some(Header {
        tag: buf[0],
        wire_len: len + 1,
    }))
}

/// The first message of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    Ssl,
    GssEnc,
    Cancel { pid: i32, secret: i32 },
    Startup { params: Vec<(String, String)> },
}

/// Decodes an untagged startup-phase packet. Returns the packet and the bytes it used.
pub fn decode_startup(buf: &[u8]) -> Result<Option<(Startup, usize)>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(ProtocolError::BadLength {
            len: len as u64,
            max: MAX_STARTUP_LEN,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[4..len];
    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let rest = &body[4..];
    let msg = match code {
        SSL_REQUEST if rest.is_empty() => Startup::Ssl,
        GSSENC_REQUEST if rest.is_empty() => Startup::GssEnc,
        CANCEL_REQUEST if rest.len() == 8 => Startup::Cancel {
            pid: i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            secret: i32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
        },
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => return Err(malformed("startup request")),
        PROTOCOL_3_0 => Startup::Startup {
            params: startup_params(rest)?,
        },
        v => {
            return Err(ProtocolError::UnsupportedVersion {
                major: (v >> 16) as u16,
                minor: (v & 0xffff) as u16,
            })
        }
    };
    Ok(Some((msg, len)))
}

fn startup_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    let mut params = Vec::new();
    loop {
        let (key, r) = cstr(rest).ok_or(malformed("startup"))?;
        if key.is_empty() {
            if !r.is_empty() {
                return Err(malformed("startup"));
            }
            return Ok(params);
        }
        let (value, r) = cstr(r).ok_or(malformed("startup"))?;
        params.push((key.to_owned(), value.to_owned()));
        rest = r;
    }
}

/// Splits a NUL-terminated UTF-8 string off the front of `buf`.
pub fn cstr(buf: &[u8]) -> Option<(&str, &[u8])> {
    let nul = buf.iter().position(|&b| b == 0)?;
    let s = std::str::from_utf8(&buf[..nul]).ok()?;
    Some((s, &buf[nul + 1..]))
}

/// Splits a NUL-terminated byte string off the front of `buf`.
pub fn cbytes(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = buf.iter().position(|&b| b == 0)?;
    Some((&buf[..nul], &buf[nul + 1..]))
}

/// Parse ('P'): statement name, query text, and the raw parameter-type section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseMsg<'a> {
    pub name: &'a [u8],
    pub query: &'a [u8],
    /// Int16 count followed by Int32 type OIDs, as on the wire.
    pub param_types: &'a [u8],
}

pub fn parse_msg(body: &[u8]) -> Result<ParseMsg<'_>, ProtocolError> {
    let (name, r) = cbytes(body).ok_or(malformed("Parse"))?;
    let (query, r) = cbytes(r).ok_or(malformed("Parse"))?;
    if r.len() < 2 {
        return Err(malformed("Parse"));
    }
    let n = u16::from_be_bytes([r[0], r[1]]) as usize;
    if r.len() != 2 + 4 * n {
        return Err(malformed("Parse"));
    }
    Ok(ParseMsg {
        name,
        query,
        param_types: r,
    })
}

/// Bind ('B'): portal, statement, and everything after them untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindMsg<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    pub rest: &'a [u8],
}

/// A Bind's parameter format count and parameter count, from what follows its statement
/// name (`BindMsg::rest`).
pub fn bind_counts(rest: &[u8]) -> Option<(u16, u16)> {
    let formats = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
    let at = 2 + 2 * formats as usize;
    let params = u16::from_be_bytes(rest.get(at..at + 2)?.try_into().ok()?);
    Some((formats, params))
}

pub fn bind_msg(body: &[u8]) -> Result<BindMsg<'_>, ProtocolError> {
    let (portal, r) = cbytes(body).ok_or(malformed("Bind"))?;
    let (statement, rest) = cbytes(r).ok_or(malformed("Bind"))?;
    Ok(BindMsg {
        portal,
        statement,
        rest,
    })
}

/// Describe ('D') and Close ('C'): kind ('S' statement or 'P' portal) and name.
pub fn target_msg(body: &[u8]) -> Result<(u8, &[u8]), ProtocolError> {
    let (&kind, r) = body.split_first().ok_or(malformed("Describe/Close"))?;
    if kind != b'S' && kind != b'P' {
        return Err(malformed("Describe/Close"));
    }
    let (name, r) = cbytes(r).ok_or(malformed("Describe/Close"))?;
    if !r.is_empty() {
        return Err(malformed("Describe/Close"));
    }
    Ok((kind, name))
}

/// Query ('Q'): the SQL text without its terminating NUL.
pub fn query_msg(body: &[u8]) -> Result<&[u8], ProtocolError> {
    match body.split_last() {
        Some((0, text)) => Ok(text),
        _ => Err(malformed("Query")),
    }
}

// ---- message builders (messages the proxy originates) ----

fn begin(out: &mut BytesMut, tag: u8) -> usize {
    out.put_u8(tag);
    let at = out.len();
    out.put_u32(0);
    at
}

fn finish(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// ErrorResponse ('E') or NoticeResponse ('N').
pub fn put_error(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    let at = begin(out, b'E');
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        out.put_u8(field);
        put_cstr(out, value.as_bytes());
    }
    out.put_u8(0);
    finish(out, at);
}

pub fn put_auth(out: &mut BytesMut, code: u32, data: &[u8]) {
    let at = begin(out, b'R');
    out.put_u32(code);
    out.put_slice(data);
    finish(out, at);
}

/// AuthenticationSASL offering `mechanisms`, most preferred first.
pub fn put_auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(out, b'R');
    out.put_u32(10);
    for m in mechanisms {
        put_cstr(out, m.as_bytes());
    }
    out.put_u8(0);
    finish(out, at);
}

pub fn put_parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    let at = begin(out, b'S');
    put_cstr(out, name.as_bytes());
    put_cstr(out, value.as_bytes());
    finish(out, at);
}

pub fn put_backend_key(out: &mut BytesMut, pid: i32, secret: i32) {
    let at = begin(out, b'K');
    out.put_i32(pid);
    out.put_i32(secret);
    finish(out, at);
}

pub fn put_ready(out: &mut BytesMut, status: u8) {
    out.put_slice(&[b'Z', 0, 0, 0, 5, status]);
}

/// A message with an empty body: ParseComplete '1', BindComplete '2', CloseComplete '3'.
pub fn put_empty(out: &mut BytesMut, tag: u8) {
    out.put_slice(&[tag, 0, 0, 0, 4]);
}

pub fn put_command_complete(out: &mut BytesMut, tag: &str) {
    let at = begin(out, b'C');
    put_cstr(out, tag.as_bytes());
    finish(out, at);
}

/// RowDescription ('T') of text columns.
pub fn put_row_description(out: &mut BytesMut, names: &[&str]) {
    let at = begin(out, b'T');
    out.put_u16(names.len() as u16);
    for n in names {
        put_cstr(out, n.as_bytes());
        out.put_u32(0); // table oid
        out.put_u16(0); // column number
        out.put_u32(25); // text
        out.put_i16(-1);
        out.put_i32(-1);
        out.put_u16(0); // text format
    }
    finish(out, at);
}

/// DataRow ('D') of text values.
pub fn put_data_row(out: &mut BytesMut, values: &[String]) {
    let at = begin(out, b'D');
    out.put_u16(values.len() as u16);
    for v in values {
        out.put_i32(v.len() as i32);
        out.put_slice(v.as_bytes());
    }
    finish(out, at);
}

/// Query ('Q') — used for statements the proxy itself runs on backends.
pub fn put_query(out: &mut BytesMut, sql: &str) {
    let at = begin(out, b'Q');
    put_cstr(out, sql.as_bytes());
    finish(out, at);
}

/// Parse ('P') under a proxy-chosen statement name.
pub fn put_parse(out: &mut BytesMut, name: &[u8], query: &[u8], param_types: &[u8]) {
    let at = begin(out, b'P');
    put_cstr(out, name);
    put_cstr(out, query);
    out.put_slice(param_types);
    finish(out, at);
}

/// Bind ('B') with the statement name replaced.
pub fn put_bind(out: &mut BytesMut, bind: &BindMsg<'_>, statement: &[u8]) {
    let at = begin(out, b'B');
    put_cstr(out, bind.portal);
    put_cstr(out, statement);
    out.put_slice(bind.rest);
    finish(out, at);
}

/// Describe ('D') or Close ('C') of a statement or portal.
pub fn put_target(out: &mut BytesMut, tag: u8, kind: u8, name: &[u8]) {
    let at = begin(out, tag);
    out.put_u8(kind);
    put_cstr(out, name);
    finish(out, at);
}

/// Untagged StartupMessage (protocol 3.0) with the given parameters.
pub fn put_startup(out: &mut BytesMut, params: &[(&str, &str)]) {
    let at = out.len();
    out.put_u32(0);
    out.put_u32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(out, k.as_bytes());
        put_cstr(out, v.as_bytes());
    }
    out.put_u8(0);
    finish(out, at);
}

/// Untagged CancelRequest.
pub fn put_cancel_request(out: &mut BytesMut, pid: i32, secret: i32) {
    out.put_u32(16);
    out.put_u32(CANCEL_REQUEST);
    out.put_i32(pid);
    out.put_i32(secret);
}

/// Tagged message with an arbitrary body (PasswordMessage, SASLResponse, ...).
pub fn put_message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    let at = begin(out, tag);
    out.put_slice(body);
    finish(out, at);
}

// ---- bodies of backend messages the proxy reads ----

/// Field of an ErrorResponse/NoticeResponse body by its code ('C' SQLSTATE, 'M' message...).
pub fn error_field(body: &[u8], code: u8) -> Option<&str> {
    let mut rest = body;
    while let Some((&field, r)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let (value, r) = cstr(r)?;
        if field == code {
            return Some(value);
        }
        rest = r;
    }
    None
}

/// An ErrorResponse rebuilt from `body` with each text field passed through `edit` (which
/// returns the new text, or None to keep it); None when nothing changed or the body is not
/// well formed.
pub fn edit_error(body: &[u8], edit: impl Fn(u8, &str) -> Option<String>) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(body.len() + 32);
    let at = begin(&mut out, b'E');
    let mut changed = false;
    let mut rest = body;
    loop {
        let (&field, r) = rest.split_first()?;
        if field == 0 {
            break;
        }
        let (value, r) = cstr(r)?;
        out.put_u8(field);
        match edit(field, value) {
            Some(new) => {
                changed = true;
                put_cstr(&mut out, new.as_bytes());
            }
            None => put_cstr(&mut out, value.as_bytes()),
        }
        rest = r;
    }
    out.put_u8(0);
    finish(&mut out, at);
    changed.then_some(out)
}

/// What a RowDescription body says of a statement's result type as a server compares it
/// when it revalidates a prepared statement: each column's name, type OID and type modifier
/// (not the table and column it came from, nor the format), in a form fit for comparing.
/// None when the body is not well formed.
pub fn row_type(body: &[u8]) -> Option<Box<[u8]>> {
    let (n, mut rest) = body.split_first_chunk::<2>()?;
    let n = u16::from_be_bytes(*n);
    let mut out = Vec::with_capacity(rest.len());
    out.extend_from_slice(&n.to_be_bytes());
    for _ in 0..n {
        let (name, r) = cbytes(rest)?;
        // Table OID (4), column number (2), type OID (4), size (2), modifier (4), format (2).
        let fixed = r.get(..18)?;
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(&fixed[6..10]);
        out.extend_from_slice(&fixed[12..16]);
        rest = &r[18..];
    }
    rest.is_empty().then(|| out.into())
}

/// ParameterStatus body: name and value.
pub fn parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let (name, r) = cstr(body)?;
    let (value, r) = cstr(r)?;
    r.is_empty().then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes_and_bounds_length() {
        assert_eq!(header(b"Q\0\0", 100).unwrap(), None);
        let h = header(b"Q\0\0\0\x09abcd", 100).unwrap().unwrap();
        assert_eq!((h.tag, h.wire_len, h.body_len()), (b'Q', 10, 5));
        assert!(header(b"Q\x80\0\0\0", 1 << 20).is_err());
        assert!(header(b"Q\0\0\0\x03", 100).is_err());
    }

    #[test]
    fn startup_round_trip() {
        let mut b = BytesMut::new();
        put_startup(&mut b, &[("user", "app"), ("database", "db")]);
        let (m, used) = decode_startup(&b).unwrap().unwrap();
        assert_eq!(used, b.len());
        assert_eq!(
            m,
            Startup::Startup {
                params: vec![
                    ("user".into(), "app".into()),
                    ("database".into(), "db".into())
                ]
            }
        );
        assert_eq!(decode_startup(&b[..b.len() - 1]).unwrap(), None);
    }

    #[test]
    fn startup_rejects_huge_and_odd_packets() {
        assert!(decode_startup(&[0x80, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_startup(&[0, 0, 0, 8, 0, 2, 0, 0]).is_err());
        let mut b = BytesMut::new();
        put_cancel_request(&mut b, 7, 9);
        assert_eq!(
            decode_startup(&b).unwrap().unwrap().0,
            Startup::Cancel { pid: 7, secret: 9 }
        );
    }

    #[test]
    fn parse_and_bind_bodies() {
        let mut b = BytesMut::new();
        put_parse(&mut b, b"s1", b"select $1", &[0, 1, 0, 0, 0, 23]);
        let p = parse_msg(&b[5..]).unwrap();
        assert_eq!((p.name, p.query), (&b"s1"[..], &b"select $1"[..]));
        assert!(parse_msg(&b[5..b.len() - 1]).is_err());
        let body = b"portal\0stmt\0\0\0\0\0\0\0";
        let bind = bind_msg(body).unwrap();
        let mut out = BytesMut::new();
        put_bind(&mut out, &bind, b"sy_1");
        let again = bind_msg(&out[5..]).unwrap();
        assert_eq!(
            (again.portal, again.statement, again.rest),
            (&b"portal"[..], &b"sy_1"[..], bind.rest)
        );
    }

    #[test]
    fn row_type_keeps_names_types_and_modifiers_only() {
        let desc = |table: u32, ty: u32| {
            let mut out = BytesMut::new();
            put_row_description(&mut out, &["a", "bb"]);
            // Give the second column another table and type.
            let at = out.len() - 18;
            out[at..at + 4].copy_from_slice(&table.to_be_bytes());
            out[at + 6..at + 10].copy_from_slice(&ty.to_be_bytes());
            out
        };
        let a = row_type(&desc(1, 25)[5..]).unwrap();
        assert_eq!(
            row_type(&desc(2, 25)[5..]).unwrap(),
            a,
            "another table, same type"
        );
        assert_ne!(row_type(&desc(1, 23)[5..]).unwrap(), a, "another type");
        let mut one = BytesMut::new();
        put_row_description(&mut one, &["a"]);
        assert_ne!(row_type(&one[5..]).unwrap(), a, "a column fewer");
        let whole = desc(1, 25);
        assert!(row_type(&whole[5..whole.len() - 1]).is_none(), "cut short");
        assert!(row_type(&[0, 0, 1]).is_none(), "bytes after the columns");
        assert_eq!(&*row_type(&[0, 0]).unwrap(), &[0, 0]);
    }

    #[test]
    fn error_fields_are_found() {
        let mut b = BytesMut::new();
        put_error(&mut b, "FATAL", "28P01", "bad password");
        assert_eq!(error_field(&b[5..], b'C'), Some("28P01"));
        assert_eq!(error_field(&b[5..], b'M'), Some("bad password"));
        assert_eq!(error_field(&b[5..], b'D'), None);
    }
}
