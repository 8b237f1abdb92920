//! Command-phase packets from the client: the command byte, and the bodies a proxy reads or
//! rewrites (COM_QUERY text, COM_INIT_DB schema, COM_CHANGE_USER fields, prepared-statement
//! ids of COM_STMT_*).

use bytes::{BufMut, BytesMut};

use super::flags::*;
use super::wire::{put_lenenc_bytes, put_lenenc_int, put_nul_bytes, Reader};
use super::{malformed, ProtocolError};

/// The first byte of a command packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Sleep,
    Quit,
    InitDb,
    Query,
    FieldList,
    CreateDb,
    DropDb,
    Refresh,
    Shutdown,
    Statistics,
    ProcessInfo,
    Connect,
    ProcessKill,
    Debug,
    Ping,
    Time,
    DelayedInsert,
    ChangeUser,
    BinlogDump,
    TableDump,
    ConnectOut,
    RegisterSlave,
    StmtPrepare,
    StmtExecute,
    StmtSendLongData,
    StmtClose,
    StmtReset,
    SetOption,
    StmtFetch,
    Daemon,
    BinlogDumpGtid,
    ResetConnection,
    /// MySQL 8.0.17 clone plugin.
    Clone,
    /// MariaDB 10.2: array binding (`MARIADB_CLIENT_STMT_BULK_OPERATIONS`).
    StmtBulkExecute,
    /// Any other byte (MariaDB's removed COM_MULTI 0xFE, MySQL's 0x21, ...).
    Unknown(u8),
}

/// Command bytes, in order, for the variants with a fixed byte.
const COMMANDS: [Command; 33] = [
    Command::Sleep,
    Command::Quit,
    Command::InitDb,
    Command::Query,
    Command::FieldList,
    Command::CreateDb,
    Command::DropDb,
    Command::Refresh,
    Command::Shutdown,
    Command::Statistics,
    Command::ProcessInfo,
    Command::Connect,
    Command::ProcessKill,
    Command::Debug,
    Command::Ping,
    Command::Time,
    Command::DelayedInsert,
    Command::ChangeUser,
    Command::BinlogDump,
    Command::TableDump,
    Command::ConnectOut,
    Command::RegisterSlave,
    Command::StmtPrepare,
    Command::StmtExecute,
    Command::StmtSendLongData,
    Command::StmtClose,
    Command::StmtReset,
    Command::SetOption,
    Command::StmtFetch,
    Command::Daemon,
    Command::BinlogDumpGtid,
    Command::ResetConnection,
    Command::Clone,
];

/// COM_STMT_BULK_EXECUTE's byte (MariaDB).
pub const COM_STMT_BULK_EXECUTE: u8 = 0xFA;
pub const COM_QUERY: u8 = 0x03;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_CHANGE_USER: u8 = 0x11;

impl Command {
    pub fn from_byte(b: u8) -> Command {
        match b {
            COM_STMT_BULK_EXECUTE => Command::StmtBulkExecute,
            _ => COMMANDS
                .get(usize::from(b))
                .copied()
                .unwrap_or(Command::Unknown(b)),
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            Command::Unknown(b) => b,
            Command::StmtBulkExecute => COM_STMT_BULK_EXECUTE,
            c => COMMANDS.iter().position(|&x| x == c).unwrap_or(0) as u8,
        }
    }

    /// True for the commands whose byte 1..5 is a prepared-statement id.
    pub fn has_stmt_id(self) -> bool {
        matches!(
            self,
            Command::StmtExecute
                | Command::StmtSendLongData
                | Command::StmtClose
                | Command::StmtReset
                | Command::StmtFetch
                | Command::StmtBulkExecute
        )
    }

    /// True for the commands the server answers with nothing at all.
    pub fn has_no_response(self) -> bool {
        matches!(
            self,
            Command::Quit | Command::StmtClose | Command::StmtSendLongData
        )
    }
}

impl From<u8> for Command {
    fn from(b: u8) -> Self {
        Command::from_byte(b)
    }
}

/// The command of a command packet, `None` for an empty payload.
pub fn command(payload: &[u8]) -> Option<Command> {
    payload.first().map(|&b| Command::from_byte(b))
}

fn body<'a>(
    payload: &'a [u8],
    cmd: Command,
    what: &'static str,
) -> Result<Reader<'a>, ProtocolError> {
    match payload.split_first() {
        Some((&b, rest)) if b == cmd.byte() => Ok(Reader::new(rest, what)),
        Some(_) => Err(malformed(what)),
        None => Err(ProtocolError::Truncated { what }),
    }
}

/// Appends a command packet: the command byte, then `body`.
pub fn put_command(out: &mut BytesMut, cmd: Command, body: &[u8]) {
    out.put_u8(cmd.byte());
    out.put_slice(body);
}

// ---------------------------------------------------------------- COM_QUERY

/// COM_QUERY: the SQL text, and the raw query-attribute section before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryPacket<'a> {
    /// Bytes between the command byte and the SQL: with `CLIENT_QUERY_ATTRIBUTES` the
    /// parameter count, set count and any attributes; empty without it.
    pub attributes: &'a [u8],
    /// Number of query attributes (0 without `CLIENT_QUERY_ATTRIBUTES`).
    pub attribute_count: u64,
    /// The statement text, as sent (not necessarily UTF-8).
    pub sql: &'a [u8],
}

/// Parses COM_QUERY with the negotiated capabilities. With `CLIENT_QUERY_ATTRIBUTES` (MySQL
/// 8.0.23+) the attributes are walked (binary values, sized by their types) to find where
/// the SQL starts.
pub fn parse_query(payload: &[u8], caps: u64) -> Result<QueryPacket<'_>, ProtocolError> {
    let mut r = body(payload, Command::Query, "COM_QUERY")?;
    let start = r.remaining();
    let mut attribute_count = 0;
    if caps & CLIENT_QUERY_ATTRIBUTES != 0 {
        attribute_count = r.lenenc_int()?;
        let sets = r.lenenc_int()?;
        if sets != 1 {
            return Err(malformed("COM_QUERY parameter set count"));
        }
        if attribute_count > 0 {
            skip_attributes(&mut r, attribute_count)?;
        }
    }
    let sql = r.rest();
    Ok(QueryPacket {
        attributes: start.get(..start.len() - sql.len()).unwrap_or_default(),
        attribute_count,
        sql,
    })
}

/// Skips the null bitmap, bind flag, types and names, and values of `n` query attributes.
fn skip_attributes(r: &mut Reader<'_>, n: u64) -> Result<(), ProtocolError> {
    // Every attribute takes at least 3 bytes (type, flags, empty name), so a count that could
    // not fit is refused before the bitmap size is computed from it.
    if n > r.len() as u64 / 3 {
        return Err(ProtocolError::Truncated {
            what: "COM_QUERY attributes",
        });
    }
    let n = n as usize;
    let bitmap = r.take(n.div_ceil(8))?;
    if r.u8()? != 1 {
        return Err(malformed("COM_QUERY attributes without types"));
    }
    let mut types = *r;
    for _ in 0..n {
        r.u16()?;
        r.lenenc_bytes()?;
    }
    for i in 0..n {
        let ty = types.u16()?;
        types.lenenc_bytes()?;
        let null = bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
        if !null {
            skip_binary_value(r, ty as u8)?;
        }
    }
    Ok(())
}

/// Skips one binary-protocol value of column type `ty`.
pub fn skip_binary_value(r: &mut Reader<'_>, ty: u8) -> Result<(), ProtocolError> {
    let fixed = match ty {
        0x06 => 0,               // NULL
        0x01 => 1,               // TINY
        0x02 | 0x0D => 2,        // SHORT, YEAR
        0x03 | 0x04 | 0x09 => 4, // LONG, FLOAT, INT24
        0x05 | 0x08 => 8,        // DOUBLE, LONGLONG
        // TIMESTAMP, DATE, TIME, DATETIME and their *2 forms: 1-byte length, then that many.
        0x07 | 0x0A | 0x0B | 0x0C | 0x11 | 0x12 | 0x13 => {
            let n = r.u8()?;
            r.take(usize::from(n))?;
            return Ok(());
        }
        // DECIMAL, VARCHAR, BIT, VECTOR, JSON .. GEOMETRY: length-encoded strings.
        0x00 | 0x0F | 0x10 | 0xF2 | 0xF5..=0xFF => {
            r.lenenc_bytes()?;
            return Ok(());
        }
        _ => {
            return Err(ProtocolError::Unsupported {
                what: "binary value type",
            })
        }
    };
    r.take(fixed).map(|_| ())
}

/// Appends a COM_QUERY for `sql`; with `CLIENT_QUERY_ATTRIBUTES` in `caps` it carries an
/// empty attribute section (count 0, one set), as libmysqlclient sends.
pub fn put_query(out: &mut BytesMut, sql: &[u8], caps: u64) {
    out.put_u8(COM_QUERY);
    if caps & CLIENT_QUERY_ATTRIBUTES != 0 {
        put_lenenc_int(out, 0);
        put_lenenc_int(out, 1);
    }
    out.put_slice(sql);
}

/// Appends a COM_QUERY with its attribute section as parsed (forwarding with new SQL text).
pub fn put_query_packet(out: &mut BytesMut, q: &QueryPacket<'_>) {
    out.put_u8(COM_QUERY);
    out.put_slice(q.attributes);
    out.put_slice(q.sql);
}

// ---------------------------------------------------------------- small commands

/// COM_INIT_DB: the schema name (`string<EOF>`).
pub fn parse_init_db(payload: &[u8]) -> Result<&[u8], ProtocolError> {
    Ok(body(payload, Command::InitDb, "COM_INIT_DB")?.rest())
}

pub fn put_init_db(out: &mut BytesMut, schema: &[u8]) {
    put_command(out, Command::InitDb, schema);
}

/// COM_SET_OPTION values.
pub const MYSQL_OPTION_MULTI_STATEMENTS_ON: u16 = 0;
pub const MYSQL_OPTION_MULTI_STATEMENTS_OFF: u16 = 1;

/// COM_SET_OPTION: the option (multi-statements on/off).
pub fn parse_set_option(payload: &[u8]) -> Result<u16, ProtocolError> {
    let mut r = body(payload, Command::SetOption, "COM_SET_OPTION")?;
    let v = r.u16()?;
    r.finish()?;
    Ok(v)
}

pub fn put_set_option(out: &mut BytesMut, option: u16) {
    out.put_u8(Command::SetOption.byte());
    out.put_u16_le(option);
}

// ---------------------------------------------------------------- COM_CHANGE_USER

/// COM_CHANGE_USER. Everything after the database is optional at the end of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeUser<'a> {
    pub user: &'a [u8],
    pub auth_response: &'a [u8],
    pub database: &'a [u8],
    /// Two bytes here (the collation id), unlike the handshake's one.
    pub charset: Option<u16>,
    /// With `CLIENT_PLUGIN_AUTH`.
    pub auth_plugin: Option<&'a [u8]>,
    /// With `CLIENT_CONNECT_ATTRS`: the raw key/value section (see
    /// [`connect_attrs`](super::connect_attrs)).
    pub connect_attrs: Option<&'a [u8]>,
}

/// Parses COM_CHANGE_USER with the session's capabilities. The auth response has a 1-byte
/// length with `CLIENT_SECURE_CONNECTION` (also when `..._LENENC_CLIENT_DATA` is set),
/// else it is NUL-terminated.
pub fn parse_change_user(payload: &[u8], caps: u64) -> Result<ChangeUser<'_>, ProtocolError> {
    let mut r = body(payload, Command::ChangeUser, "COM_CHANGE_USER")?;
    let user = r.nul_bytes()?;
    let auth_response = if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = r.u8()?;
        r.take(usize::from(n))?
    } else {
        r.nul_bytes()?
    };
    let mut cu = ChangeUser {
        user,
        auth_response,
        database: r.nul_bytes()?,
        ..ChangeUser::default()
    };
    if !r.is_empty() {
        cu.charset = Some(r.u16()?);
    }
    if caps & CLIENT_PLUGIN_AUTH != 0 && !r.is_empty() {
        cu.auth_plugin = Some(r.nul_or_eof_bytes());
    }
    if caps & CLIENT_CONNECT_ATTRS != 0 && !r.is_empty() {
        let attrs = r.lenenc_bytes()?;
        for kv in super::connect_attrs(attrs) {
            kv?;
        }
        cu.connect_attrs = Some(attrs);
    }
    // Whatever follows is not read, as MariaDB does not read it: mysql_common (mysql_async,
    // the `mysql` crate) always ends the packet with a connect-attributes section, empty
    // when CLIENT_CONNECT_ATTRS was not agreed.
    Ok(cu)
}

/// Builds COM_CHANGE_USER (the inverse of [`parse_change_user`]); a `None` optional field
/// ends the packet there. With `CLIENT_SECURE_CONNECTION` the auth response is cut to 255.
pub fn put_change_user(out: &mut BytesMut, cu: &ChangeUser<'_>, caps: u64) {
    out.put_u8(COM_CHANGE_USER);
    put_nul_bytes(out, cu.user);
    if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = cu.auth_response.len().min(255);
        out.put_u8(n as u8);
        out.put_slice(&cu.auth_response[..n]);
    } else {
        put_nul_bytes(out, cu.auth_response);
    }
    put_nul_bytes(out, cu.database);
    let Some(charset) = cu.charset else { return };
    out.put_u16_le(charset);
    if caps & CLIENT_PLUGIN_AUTH != 0 {
        let Some(plugin) = cu.auth_plugin else { return };
        put_nul_bytes(out, plugin);
    }
    if caps & CLIENT_CONNECT_ATTRS != 0 {
        if let Some(attrs) = cu.connect_attrs {
            put_lenenc_bytes(out, attrs);
        }
    }
}

// ---------------------------------------------------------------- prepared-statement ids

/// Byte offset of the statement id in the payload of COM_STMT_EXECUTE, _SEND_LONG_DATA,
/// _CLOSE, _RESET, _FETCH and MariaDB's _BULK_EXECUTE. In a frame it sits at
/// `HEADER_LEN + STMT_ID_OFFSET` (the first physical packet is always at least that long).
pub const STMT_ID_OFFSET: usize = 1;
/// MariaDB: COM_STMT_EXECUTE with this id runs the statement prepared just before it in the
/// same pipeline (its real id is not known to the client yet).
pub const MARIADB_LAST_PREPARED_STMT_ID: u32 = 0xFFFF_FFFF;

/// Where the statement id is in `payload`, if it is a COM_STMT_* packet that has one and is
/// long enough to hold it.
pub fn stmt_id_offset(payload: &[u8]) -> Option<usize> {
    let cmd = command(payload)?;
    (cmd.has_stmt_id() && payload.len() >= STMT_ID_OFFSET + 4).then_some(STMT_ID_OFFSET)
}

/// The statement id of a COM_STMT_* packet.
pub fn stmt_id(payload: &[u8]) -> Option<u32> {
    let at = stmt_id_offset(payload)?;
    let b = payload.get(at..at + 4)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Rewrites the statement id of a COM_STMT_* packet in place (a proxy mapping client ids to
/// backend ids); returns the id it replaced.
pub fn set_stmt_id(payload: &mut [u8], id: u32) -> Result<u32, ProtocolError> {
    let old = stmt_id(payload).ok_or(malformed("COM_STMT_* without a statement id"))?;
    if let Some(b) = payload.get_mut(STMT_ID_OFFSET..STMT_ID_OFFSET + 4) {
        b.copy_from_slice(&id.to_le_bytes());
    }
    Ok(old)
}

/// COM_STMT_EXECUTE's fixed part; `rest` (null bitmap, types, values) is left undecoded,
/// since its layout needs the parameter count from COM_STMT_PREPARE_OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StmtExecute<'a> {
    pub statement_id: u32,
    /// Cursor type (0 none, 1 read-only, ...); MySQL 8 adds 0x08 PARAMETER_COUNT_AVAILABLE.
    pub flags: u8,
    /// Always 1 in MySQL.
    pub iteration_count: u32,
    pub rest: &'a [u8],
}

pub fn parse_stmt_execute(payload: &[u8]) -> Result<StmtExecute<'_>, ProtocolError> {
    let mut r = body(payload, Command::StmtExecute, "COM_STMT_EXECUTE")?;
    Ok(StmtExecute {
        statement_id: r.u32()?,
        flags: r.u8()?,
        iteration_count: r.u32()?,
        rest: r.rest(),
    })
}

pub fn put_stmt_execute(out: &mut BytesMut, e: &StmtExecute<'_>) {
    out.put_u8(Command::StmtExecute.byte());
    out.put_u32_le(e.statement_id);
    out.put_u8(e.flags);
    out.put_u32_le(e.iteration_count);
    out.put_slice(e.rest);
}

/// COM_STMT_CLOSE or COM_STMT_RESET (`cmd`): exactly the id.
pub fn parse_stmt_id_only(payload: &[u8], cmd: Command) -> Result<u32, ProtocolError> {
    let mut r = body(payload, cmd, "COM_STMT_CLOSE/RESET")?;
    if !matches!(cmd, Command::StmtClose | Command::StmtReset) {
        return Err(malformed("COM_STMT_CLOSE/RESET"));
    }
    let id = r.u32()?;
    r.finish()?;
    Ok(id)
}

/// Appends COM_STMT_CLOSE or COM_STMT_RESET (`cmd`) for `id`.
pub fn put_stmt_id_only(out: &mut BytesMut, cmd: Command, id: u32) {
    out.put_u8(cmd.byte());
    out.put_u32_le(id);
}

/// COM_STMT_SEND_LONG_DATA: statement id, parameter index, a piece of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StmtSendLongData<'a> {
    pub statement_id: u32,
    pub param: u16,
    pub data: &'a [u8],
}

pub fn parse_stmt_send_long_data(payload: &[u8]) -> Result<StmtSendLongData<'_>, ProtocolError> {
    let mut r = body(
        payload,
        Command::StmtSendLongData,
        "COM_STMT_SEND_LONG_DATA",
    )?;
    Ok(StmtSendLongData {
        statement_id: r.u32()?,
        param: r.u16()?,
        data: r.rest(),
    })
}

pub fn put_stmt_send_long_data(out: &mut BytesMut, d: &StmtSendLongData<'_>) {
    out.put_u8(Command::StmtSendLongData.byte());
    out.put_u32_le(d.statement_id);
    out.put_u16_le(d.param);
    out.put_slice(d.data);
}

/// COM_STMT_FETCH: statement id and number of rows to fetch from its cursor.
pub fn parse_stmt_fetch(payload: &[u8]) -> Result<(u32, u32), ProtocolError> {
    let mut r = body(payload, Command::StmtFetch, "COM_STMT_FETCH")?;
    let v = (r.u32()?, r.u32()?);
    r.finish()?;
    Ok(v)
}

pub fn put_stmt_fetch(out: &mut BytesMut, id: u32, rows: u32) {
    out.put_u8(Command::StmtFetch.byte());
    out.put_u32_le(id);
    out.put_u32_le(rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(f: impl FnOnce(&mut BytesMut)) -> BytesMut {
        let mut b = BytesMut::new();
        f(&mut b);
        b
    }

    #[test]
    fn command_bytes_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(Command::from_byte(b).byte(), b);
        }
        assert_eq!(Command::from(0x01), Command::Quit);
        assert_eq!(Command::from(0x03), Command::Query);
        assert_eq!(Command::from(0x0E), Command::Ping);
        assert_eq!(Command::from(0x11), Command::ChangeUser);
        assert_eq!(Command::from(0x12), Command::BinlogDump);
        assert_eq!(Command::from(0x15), Command::RegisterSlave);
        assert_eq!(Command::from(0x16), Command::StmtPrepare);
        assert_eq!(Command::from(0x17), Command::StmtExecute);
        assert_eq!(Command::from(0x1B), Command::SetOption);
        assert_eq!(Command::from(0x1C), Command::StmtFetch);
        assert_eq!(Command::from(0x1E), Command::BinlogDumpGtid);
        assert_eq!(Command::from(0x1F), Command::ResetConnection);
        assert_eq!(Command::from(0xFA), Command::StmtBulkExecute);
        assert_eq!(Command::from(0x21), Command::Unknown(0x21));
        assert_eq!(command(&[]), None);
    }

    #[test]
    fn query_text_is_borrowed_from_the_payload() {
        let p = built(|b| put_query(b, b"SELECT 1", 0));
        let q = parse_query(&p, 0).unwrap();
        assert_eq!(
            (q.sql, q.attributes, q.attribute_count),
            (&b"SELECT 1"[..], &b""[..], 0)
        );
        assert!(std::ptr::eq(q.sql.as_ptr(), p[1..].as_ptr()));
        assert_eq!(parse_query(&[COM_QUERY], 0).unwrap().sql, b"");
        assert!(parse_query(&[COM_INIT_DB, b'x'], 0).is_err());
        assert!(parse_query(&[], 0).is_err());
    }

    #[test]
    fn query_attributes_are_skipped_to_find_the_sql() {
        let caps = CLIENT_QUERY_ATTRIBUTES;
        let p = built(|b| put_query(b, b"SELECT 1", caps));
        assert_eq!(&p[..3], &[COM_QUERY, 0, 1]);
        let q = parse_query(&p, caps).unwrap();
        assert_eq!((q.sql, q.attributes), (&b"SELECT 1"[..], &[0u8, 1][..]));
        // Three attributes: a string, a NULL (bit 1 of the bitmap), a LONGLONG, a DATETIME.
        let mut b = BytesMut::new();
        b.put_u8(COM_QUERY);
        put_lenenc_int(&mut b, 4);
        put_lenenc_int(&mut b, 1);
        b.put_u8(0b0000_0010);
        b.put_u8(1);
        for (ty, name) in [
            (0xFEu16, &b"trace"[..]),
            (0x08, b"n"),
            (0x08, b"id"),
            (0x0C, b"at"),
        ] {
            b.put_u16_le(ty);
            put_lenenc_bytes(&mut b, name);
        }
        put_lenenc_bytes(&mut b, b"abc");
        b.put_u64_le(7);
        b.put_slice(&[4, 0xE8, 0x07, 1, 2]);
        let attrs_end = b.len();
        b.put_slice(b"SELECT 2");
        let q = parse_query(&b, caps).unwrap();
        assert_eq!((q.sql, q.attribute_count), (&b"SELECT 2"[..], 4));
        assert_eq!(q.attributes, &b[1..attrs_end]);
        assert_eq!(&built(|o| put_query_packet(o, &q))[..], &b[..]);
        // Truncated values, absurd counts, unknown types and missing types are errors.
        for cut in 0..attrs_end {
            assert!(parse_query(&b[..cut], caps).is_err(), "cut {cut}");
        }
        assert!(parse_query(&[COM_QUERY, 0xFD, 0xFF, 0xFF, 0xFF, 1, 0], caps).is_err());
        assert!(parse_query(&[COM_QUERY, 1, 1, 0, 1, 0x20, 0, 0], caps).is_err());
        assert!(parse_query(&[COM_QUERY, 1, 1, 0, 0, 0x01, 0, 0, 7], caps).is_err());
        assert!(parse_query(&[COM_QUERY, 0, 2], caps).is_err());
    }

    #[test]
    fn init_db_and_set_option() {
        let p = built(|b| put_init_db(b, b"shop"));
        assert_eq!(parse_init_db(&p).unwrap(), b"shop");
        assert!(parse_init_db(b"\x03shop").is_err());
        assert_eq!(
            parse_set_option(&[0x1B, 1, 0]).unwrap(),
            MYSQL_OPTION_MULTI_STATEMENTS_OFF
        );
        let p = built(|b| put_set_option(b, MYSQL_OPTION_MULTI_STATEMENTS_ON));
        assert_eq!(parse_set_option(&p), Ok(MYSQL_OPTION_MULTI_STATEMENTS_ON));
        assert!(parse_set_option(&[0x1B, 1]).is_err());
        assert!(parse_set_option(&[0x1B, 1, 0, 0]).is_err());
    }

    #[test]
    fn change_user_round_trips() {
        let caps = CLIENT_PROTOCOL_41
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH
            | CLIENT_CONNECT_ATTRS;
        let attrs = built(|b| super::super::put_connect_attrs(b, &[(b"_pid", b"123")]));
        let cu = ChangeUser {
            user: b"other",
            auth_response: &[9; 20],
            database: b"db2",
            charset: Some(45),
            auth_plugin: Some(MYSQL_NATIVE_PASSWORD),
            connect_attrs: Some(&attrs),
        };
        let p = built(|b| put_change_user(b, &cu, caps));
        assert_eq!(parse_change_user(&p, caps).unwrap(), cu);
        // Old clients stop after the database.
        let short = ChangeUser {
            charset: None,
            auth_plugin: None,
            connect_attrs: None,
            ..cu
        };
        let p = built(|b| put_change_user(b, &short, caps));
        assert_eq!(parse_change_user(&p, caps).unwrap(), short);
        // Without CLIENT_SECURE_CONNECTION the response is NUL-terminated.
        let cu0 = ChangeUser {
            auth_response: b"scrambled",
            ..short
        };
        let p = built(|b| put_change_user(b, &cu0, 0));
        assert_eq!(parse_change_user(&p, 0).unwrap(), cu0);
        assert!(parse_change_user(&p[..p.len() - 1], 0).is_err());
        assert!(parse_change_user(&[COM_CHANGE_USER, b'u', 0, 30, 1], caps).is_err());
        // mysql_common (mysql_async) always ends the packet with a connect-attributes
        // section, an empty one when CLIENT_CONNECT_ATTRS was not agreed: not read, as
        // MariaDB does not read it.
        let no_attrs = caps & !CLIENT_CONNECT_ATTRS;
        let empty = [0u8];
        let sent = ChangeUser {
            connect_attrs: Some(&empty[..0]),
            ..cu
        };
        let p = built(|b| put_change_user(b, &sent, caps));
        assert_eq!(p.last(), Some(&0));
        assert_eq!(
            parse_change_user(&p, no_attrs).unwrap(),
            ChangeUser {
                connect_attrs: None,
                ..cu
            }
        );
    }

    #[test]
    fn statement_ids_are_found_and_rewritten_in_place() {
        let exec = StmtExecute {
            statement_id: 7,
            flags: 0,
            iteration_count: 1,
            rest: &[0, 1, 8, 0, 42, 0, 0, 0, 0, 0, 0, 0],
        };
        let mut p = built(|b| put_stmt_execute(b, &exec));
        assert_eq!(parse_stmt_execute(&p).unwrap(), exec);
        assert_eq!(stmt_id_offset(&p), Some(STMT_ID_OFFSET));
        assert_eq!(set_stmt_id(&mut p, 0x0102_0304).unwrap(), 7);
        assert_eq!(stmt_id(&p), Some(0x0102_0304));
        assert_eq!(&p[1..5], &[4, 3, 2, 1]);
        assert_eq!(parse_stmt_execute(&p).unwrap().rest, exec.rest);

        for cmd in [Command::StmtClose, Command::StmtReset] {
            let p = built(|b| put_stmt_id_only(b, cmd, 9));
            assert_eq!(parse_stmt_id_only(&p, cmd).unwrap(), 9);
            assert_eq!(stmt_id(&p), Some(9));
            assert!(parse_stmt_id_only(&p[..4], cmd).is_err());
        }
        assert!(parse_stmt_id_only(&[0x17, 1, 0, 0, 0], Command::StmtExecute).is_err());
        let d = StmtSendLongData {
            statement_id: 3,
            param: 1,
            data: b"chunk",
        };
        let p = built(|b| put_stmt_send_long_data(b, &d));
        assert_eq!(parse_stmt_send_long_data(&p).unwrap(), d);
        let p = built(|b| put_stmt_fetch(b, 5, 100));
        assert_eq!(parse_stmt_fetch(&p).unwrap(), (5, 100));
        assert_eq!(stmt_id(&p), Some(5));
        // Too short, or not a statement command: no id, and nothing is written.
        let mut short = [0x19u8, 1, 2];
        assert!(set_stmt_id(&mut short, 1).is_err());
        assert_eq!(short, [0x19, 1, 2]);
        let mut q = *b"\x03abcdef";
        assert!(set_stmt_id(&mut q, 1).is_err());
        assert_eq!(stmt_id(&[0xFA, 1, 0, 0, 0]), Some(1));
    }

    #[test]
    fn no_response_commands() {
        assert!(Command::Quit.has_no_response());
        assert!(Command::StmtClose.has_no_response());
        assert!(Command::StmtSendLongData.has_no_response());
        assert!(!Command::StmtReset.has_no_response());
    }
}
