//! Server → client packets: Initial Handshake v10, OK / ERR / EOF (with session-state
//! changes and MariaDB progress reports), AuthSwitchRequest, AuthMoreData, LOCAL INFILE
//! requests, COM_STMT_PREPARE_OK, and [`classify`], which tells which of these a packet is.
//!
//! Parsers take the logical payload (headers removed) and the negotiated capabilities where
//! the layout depends on them; builders append a payload for [`write_packet`](super::write_packet).

use bytes::{BufMut, BytesMut};

use super::flags::*;
use super::wire::{put_lenenc_bytes, put_lenenc_int, put_nul_bytes, put_u24_le, Reader};
use super::{malformed, ProtocolError, MAX_PACKET_PAYLOAD};

/// First byte of an Initial Handshake v10.
pub const PROTOCOL_VERSION_10: u8 = 10;
/// Packet header bytes.
pub const OK_HEADER: u8 = 0x00;
pub const AUTH_MORE_DATA_HEADER: u8 = 0x01;
pub const LOCAL_INFILE_HEADER: u8 = 0xFB;
pub const EOF_HEADER: u8 = 0xFE;
pub const ERR_HEADER: u8 = 0xFF;
/// MariaDB 10+ servers prefix their version with this for old replication clients.
pub const MARIADB_VERSION_PREFIX: &[u8] = b"5.5.5-";
/// Error code that marks a MariaDB progress report rather than an error.
pub const PROGRESS_ERROR_CODE: u16 = 0xFFFF;
/// The 32-bit flag older MariaDB servers used for progress reports (MySQL reuses bit 29
/// for `CLIENT_CAPABILITY_EXTENSION`; neither MySQL server ever sends error code 0xFFFF).
pub const CLIENT_PROGRESS_OBSOLETE: u64 = 1 << 29;

// ---------------------------------------------------------------- handshake v10

/// Initial Handshake Packet, protocol version 10 (every server since MySQL 3.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// Human-readable version; MariaDB 10+ sends `5.5.5-10.11.6-MariaDB...`.
    pub server_version: &'a [u8],
    pub connection_id: u32,
    /// First 8 bytes of the scramble.
    pub auth_data_1: &'a [u8],
    /// Lower and upper 16 bits, plus MariaDB's extension in bits 32..64 (read from the last
    /// 4 of the 10 reserved bytes, only when `CLIENT_MYSQL` is clear).
    pub capabilities: u64,
    pub charset: u8,
    pub status: u16,
    /// Length of the whole scramble as the server declares it (21 for 20 bytes + NUL), or 0
    /// without `CLIENT_PLUGIN_AUTH`.
    pub auth_data_len: u8,
    /// The rest of the scramble, `max(13, auth_data_len - 8)` bytes, usually ending in NUL.
    pub auth_data_2: &'a [u8],
    /// Default authentication plugin (with `CLIENT_PLUGIN_AUTH`).
    pub auth_plugin: Option<&'a [u8]>,
}

fn auth_data_2_len(auth_data_len: u8) -> usize {
    usize::from(auth_data_len.saturating_sub(8)).max(13)
}

impl Handshake<'_> {
    /// The scramble (nonce) as auth plugins use it: both parts, without the trailing NUL.
    pub fn scramble(&self) -> Vec<u8> {
        let mut s = [self.auth_data_1, self.auth_data_2].concat();
        if s.last() == Some(&0) {
            s.pop();
        }
        s
    }

    /// True for a MariaDB server: the `5.5.5-` prefix, or `CLIENT_MYSQL` clear.
    pub fn is_mariadb(&self) -> bool {
        self.server_version.starts_with(MARIADB_VERSION_PREFIX)
            || has_mariadb_extension(self.capabilities)
    }

    /// The version without MariaDB's `5.5.5-` replication prefix.
    pub fn version(&self) -> &[u8] {
        self.server_version
            .strip_prefix(MARIADB_VERSION_PREFIX)
            .unwrap_or(self.server_version)
    }
}

/// Parses an Initial Handshake v10. The pre-4.1 short form (ending after the lower
/// capability flags) is refused as truncated.
pub fn parse_handshake(payload: &[u8]) -> Result<Handshake<'_>, ProtocolError> {
    let mut r = Reader::new(payload, "handshake");
    match r.u8()? {
        PROTOCOL_VERSION_10 => {}
        ERR_HEADER => return Err(malformed("handshake (server sent ERR)")),
        _ => {
            return Err(ProtocolError::Unsupported {
                what: "handshake protocol version",
            })
        }
    }
    let server_version = r.nul_bytes()?;
    let connection_id = r.u32()?;
    let auth_data_1 = r.take(8)?;
    r.u8()?; // filler
    let lower = u64::from(r.u16()?);
    let charset = r.u8()?;
    let status = r.u16()?;
    let upper = u64::from(r.u16()?);
    let auth_data_len = r.u8()?;
    let reserved: [u8; 10] = r.array()?;
    let mut capabilities = lower | upper << 16;
    if has_mariadb_extension(capabilities) {
        let [.., a, b, c, d] = reserved;
        capabilities |= u64::from(u32::from_le_bytes([a, b, c, d])) << 32;
    }
    let auth_data_2 = if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        r.take(auth_data_2_len(auth_data_len))?
    } else {
        &[]
    };
    let auth_plugin = if capabilities & CLIENT_PLUGIN_AUTH != 0 {
        // MySQL 5.5.7..5.5.9 sent the name without its NUL.
        Some(r.nul_or_eof_bytes())
    } else {
        None
    };
    r.finish()?;
    Ok(Handshake {
        server_version,
        connection_id,
        auth_data_1,
        capabilities,
        charset,
        status,
        auth_data_len,
        auth_data_2,
        auth_plugin,
    })
}

/// Appends `bytes` cut or NUL-padded to exactly `len` bytes.
fn put_exact(out: &mut BytesMut, bytes: &[u8], len: usize) {
    let n = bytes.len().min(len);
    out.put_slice(&bytes[..n]);
    out.put_bytes(0, len - n);
}

/// Builds an Initial Handshake v10. `auth_data_1` is written as exactly 8 bytes and
/// `auth_data_2` as exactly `max(13, auth_data_len - 8)` bytes (cut or NUL-padded), so a
/// 12-byte second half with `auth_data_len = 21` gets its NUL terminator here.
pub fn put_handshake(out: &mut BytesMut, h: &Handshake<'_>) {
    out.put_u8(PROTOCOL_VERSION_10);
    put_nul_bytes(out, h.server_version);
    out.put_u32_le(h.connection_id);
    put_exact(out, h.auth_data_1, 8);
    out.put_u8(0);
    out.put_u16_le(h.capabilities as u16);
    out.put_u8(h.charset);
    out.put_u16_le(h.status);
    out.put_u16_le((h.capabilities >> 16) as u16);
    out.put_u8(h.auth_data_len);
    out.put_bytes(0, 6);
    if has_mariadb_extension(h.capabilities) {
        out.put_u32_le((h.capabilities >> 32) as u32);
    } else {
        out.put_u32_le(0);
    }
    if h.capabilities & CLIENT_SECURE_CONNECTION != 0 {
        put_exact(out, h.auth_data_2, auth_data_2_len(h.auth_data_len));
    }
    if h.capabilities & CLIENT_PLUGIN_AUTH != 0 {
        put_nul_bytes(out, h.auth_plugin.unwrap_or_default());
    }
}

// ---------------------------------------------------------------- OK

/// OK packet (header 0x00), or its 0xFE form that ends a result set under
/// `CLIENT_DEPRECATE_EOF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OkPacket<'a> {
    /// 0x00, or 0xFE when it replaces an EOF.
    pub header: u8,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    /// 0 without `CLIENT_PROTOCOL_41` / `CLIENT_TRANSACTIONS`.
    pub status: u16,
    /// 0 without `CLIENT_PROTOCOL_41`.
    pub warnings: u16,
    /// Human-readable info (`Rows matched: 1 ...`); empty when absent.
    pub info: &'a [u8],
    /// Session state changes (walk them with [`session_changes`]), present with
    /// `CLIENT_SESSION_TRACK` and `SERVER_SESSION_STATE_CHANGED`.
    pub session_state: Option<&'a [u8]>,
}

/// Parses an OK packet with the negotiated capabilities `caps`.
///
/// With `CLIENT_SESSION_TRACK` the info string is length-encoded and may be left out entirely
/// when empty. Without it the documentation says `string<EOF>`, but both MySQL and MariaDB
/// servers write a length-encoded string there too; a length prefix that covers exactly the
/// rest is read as one, anything else as `string<EOF>`.
pub fn parse_ok(payload: &[u8], caps: u64) -> Result<OkPacket<'_>, ProtocolError> {
    let mut r = Reader::new(payload, "OK packet");
    let header = r.u8()?;
    if header != OK_HEADER && header != EOF_HEADER {
        return Err(malformed("OK packet header"));
    }
    let affected_rows = r.lenenc_int()?;
    let last_insert_id = r.lenenc_int()?;
    let (status, warnings) = if caps & CLIENT_PROTOCOL_41 != 0 {
        (r.u16()?, r.u16()?)
    } else if caps & CLIENT_TRANSACTIONS != 0 {
        (r.u16()?, 0)
    } else {
        (0, 0)
    };
    let mut ok = OkPacket {
        header,
        affected_rows,
        last_insert_id,
        status,
        warnings,
        info: &[],
        session_state: None,
    };
    if caps & CLIENT_SESSION_TRACK != 0 {
        if !r.is_empty() {
            ok.info = r.lenenc_bytes()?;
        }
        if status & SERVER_SESSION_STATE_CHANGED != 0 && !r.is_empty() {
            ok.session_state = Some(r.lenenc_bytes()?);
        }
        r.finish()?;
    } else {
        let mut prefixed = r;
        ok.info = match prefixed.lenenc_bytes() {
            Ok(s) if prefixed.is_empty() => s,
            _ => r.rest(),
        };
    }
    Ok(ok)
}

/// Builds an OK packet for the client's capabilities `caps` (the inverse of [`parse_ok`]).
/// The session state is written only with `CLIENT_SESSION_TRACK` and
/// `SERVER_SESSION_STATE_CHANGED` in `ok.status`.
pub fn put_ok(out: &mut BytesMut, ok: &OkPacket<'_>, caps: u64) {
    out.put_u8(ok.header);
    put_lenenc_int(out, ok.affected_rows);
    put_lenenc_int(out, ok.last_insert_id);
    if caps & CLIENT_PROTOCOL_41 != 0 {
        out.put_u16_le(ok.status);
        out.put_u16_le(ok.warnings);
    } else if caps & CLIENT_TRANSACTIONS != 0 {
        out.put_u16_le(ok.status);
    }
    let state = ok
        .session_state
        .filter(|_| caps & CLIENT_SESSION_TRACK != 0)
        .filter(|_| ok.status & SERVER_SESSION_STATE_CHANGED != 0);
    if !ok.info.is_empty() || state.is_some() {
        put_lenenc_bytes(out, ok.info);
    }
    if let Some(state) = state {
        put_lenenc_bytes(out, state);
    }
}

// ---------------------------------------------------------------- session state changes

pub const SESSION_TRACK_SYSTEM_VARIABLES: u8 = 0;
pub const SESSION_TRACK_SCHEMA: u8 = 1;
pub const SESSION_TRACK_STATE_CHANGE: u8 = 2;
pub const SESSION_TRACK_GTIDS: u8 = 3;
pub const SESSION_TRACK_TRANSACTION_CHARACTERISTICS: u8 = 4;
pub const SESSION_TRACK_TRANSACTION_STATE: u8 = 5;

/// One entry of an OK packet's session state information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange<'a> {
    /// A tracked system variable was set (`session_track_system_variables`).
    SystemVariable { name: &'a [u8], value: &'a [u8] },
    /// The default schema changed.
    Schema(&'a [u8]),
    /// Some session state changed (`session_track_state_change`): `1` or `0`.
    StateChange(&'a [u8]),
    /// GTIDs of the last transaction (MySQL); `spec` is the encoding, 0 today.
    Gtids { spec: u8, gtids: &'a [u8] },
    /// `SET TRANSACTION ...` statements that recreate the transaction's characteristics.
    TransactionCharacteristics(&'a [u8]),
    /// Eight characters describing the transaction (`T_______`, `________`, ...).
    TransactionState(&'a [u8]),
    /// A tracker type this codec does not know; `data` is its raw body.
    Other { kind: u8, data: &'a [u8] },
}

/// Iterates the entries of session state information (an [`OkPacket::session_state`]).
/// After the first error it yields nothing more.
pub fn session_changes(state: &[u8]) -> SessionChanges<'_> {
    SessionChanges {
        r: Reader::new(state, "session state change"),
        failed: false,
    }
}

/// Iterator returned by [`session_changes`].
#[derive(Debug, Clone)]
pub struct SessionChanges<'a> {
    r: Reader<'a>,
    failed: bool,
}

impl<'a> Iterator for SessionChanges<'a> {
    type Item = Result<SessionChange<'a>, ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let item = next_change(&mut self.r);
        self.failed = item.is_err();
        Some(item)
    }
}

fn next_change<'a>(r: &mut Reader<'a>) -> Result<SessionChange<'a>, ProtocolError> {
    let kind = r.u8()?;
    let data = r.lenenc_bytes()?;
    let mut d = Reader::new(data, "session state change");
    let change = match kind {
        SESSION_TRACK_SYSTEM_VARIABLES => SessionChange::SystemVariable {
            name: d.lenenc_bytes()?,
            value: d.lenenc_bytes()?,
        },
        SESSION_TRACK_SCHEMA => SessionChange::Schema(d.lenenc_bytes()?),
        // MySQL sends the flag as a length-encoded string ("\x011"), MariaDB 10.11 as the one
        // byte itself ("1").
        SESSION_TRACK_STATE_CHANGE if data.len() == 1 => {
            return Ok(SessionChange::StateChange(data));
        }
        SESSION_TRACK_STATE_CHANGE => SessionChange::StateChange(d.lenenc_bytes()?),
        SESSION_TRACK_GTIDS => SessionChange::Gtids {
            spec: d.u8()?,
            gtids: d.lenenc_bytes()?,
        },
        SESSION_TRACK_TRANSACTION_CHARACTERISTICS => {
            SessionChange::TransactionCharacteristics(d.lenenc_bytes()?)
        }
        SESSION_TRACK_TRANSACTION_STATE => SessionChange::TransactionState(d.lenenc_bytes()?),
        _ => return Ok(SessionChange::Other { kind, data }),
    };
    d.finish()?;
    Ok(change)
}

/// Appends one session state entry (type byte, then its length-encoded body).
pub fn put_session_change(out: &mut BytesMut, change: &SessionChange<'_>) {
    let mut body = BytesMut::new();
    let kind = match *change {
        SessionChange::SystemVariable { name, value } => {
            put_lenenc_bytes(&mut body, name);
            put_lenenc_bytes(&mut body, value);
            SESSION_TRACK_SYSTEM_VARIABLES
        }
        SessionChange::Schema(s) => {
            put_lenenc_bytes(&mut body, s);
            SESSION_TRACK_SCHEMA
        }
        SessionChange::StateChange(s) => {
            put_lenenc_bytes(&mut body, s);
            SESSION_TRACK_STATE_CHANGE
        }
        SessionChange::Gtids { spec, gtids } => {
            body.put_u8(spec);
            put_lenenc_bytes(&mut body, gtids);
            SESSION_TRACK_GTIDS
        }
        SessionChange::TransactionCharacteristics(s) => {
            put_lenenc_bytes(&mut body, s);
            SESSION_TRACK_TRANSACTION_CHARACTERISTICS
        }
        SessionChange::TransactionState(s) => {
            put_lenenc_bytes(&mut body, s);
            SESSION_TRACK_TRANSACTION_STATE
        }
        SessionChange::Other { kind, data } => {
            body.put_slice(data);
            kind
        }
    };
    out.put_u8(kind);
    put_lenenc_bytes(out, &body);
}

// ---------------------------------------------------------------- ERR, progress, EOF

/// ERR packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrPacket<'a> {
    pub code: u16,
    /// Five-character SQLSTATE after the `#` marker. Absent in ERRs sent before capabilities
    /// are agreed (`Too many connections`, `Host ... is blocked`) and from pre-4.1 servers.
    pub sql_state: Option<[u8; 5]>,
    pub message: &'a [u8],
}

/// Parses an ERR packet. The SQLSTATE is taken when the `#` marker is there, whatever the
/// capabilities: a server that refuses a connection sends ERR before it knows them.
pub fn parse_err(payload: &[u8]) -> Result<ErrPacket<'_>, ProtocolError> {
    let mut r = Reader::new(payload, "ERR packet");
    if r.u8()? != ERR_HEADER {
        return Err(malformed("ERR packet header"));
    }
    let code = r.u16()?;
    let mut sql_state = None;
    if r.peek() == Some(b'#') && r.len() >= 6 {
        r.u8()?;
        sql_state = Some(r.array()?);
    }
    Ok(ErrPacket {
        code,
        sql_state,
        message: r.rest(),
    })
}

pub fn put_err(out: &mut BytesMut, err: &ErrPacket<'_>) {
    out.put_u8(ERR_HEADER);
    out.put_u16_le(err.code);
    if let Some(state) = err.sql_state {
        out.put_u8(b'#');
        out.put_slice(&state);
    }
    out.put_slice(err.message);
}

/// MariaDB progress report: an ERR-shaped packet with code 0xFFFF sent while a long statement
/// runs (with `MARIADB_CLIENT_PROGRESS`). It does not end the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    pub stage: u8,
    pub max_stage: u8,
    /// Progress of this stage in thousandths of a percent (0..=100_000).
    pub progress: u32,
    pub info: &'a [u8],
}

pub fn parse_progress(payload: &[u8]) -> Result<Progress<'_>, ProtocolError> {
    let mut r = Reader::new(payload, "progress report");
    if r.u8()? != ERR_HEADER || r.u16()? != PROGRESS_ERROR_CODE {
        return Err(malformed("progress report header"));
    }
    r.u8()?; // number of strings, always 1
    let p = Progress {
        stage: r.u8()?,
        max_stage: r.u8()?,
        progress: r.u24()?,
        info: r.lenenc_bytes()?,
    };
    r.finish()?;
    Ok(p)
}

pub fn put_progress(out: &mut BytesMut, p: &Progress<'_>) {
    out.put_u8(ERR_HEADER);
    out.put_u16_le(PROGRESS_ERROR_CODE);
    out.put_u8(1);
    out.put_u8(p.stage);
    out.put_u8(p.max_stage);
    put_u24_le(out, p.progress);
    put_lenenc_bytes(out, p.info);
}

/// EOF packet (without `CLIENT_DEPRECATE_EOF`): ends column definitions and rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EofPacket {
    pub warnings: u16,
    pub status: u16,
}

/// Parses an EOF packet: 0xFE, then warnings and status with `CLIENT_PROTOCOL_41`.
pub fn parse_eof(payload: &[u8], caps: u64) -> Result<EofPacket, ProtocolError> {
    let mut r = Reader::new(payload, "EOF packet");
    if r.u8()? != EOF_HEADER {
        return Err(malformed("EOF packet header"));
    }
    let mut eof = EofPacket::default();
    if caps & CLIENT_PROTOCOL_41 != 0 {
        eof.warnings = r.u16()?;
        eof.status = r.u16()?;
    }
    r.finish()?;
    Ok(eof)
}

pub fn put_eof(out: &mut BytesMut, eof: &EofPacket, caps: u64) {
    out.put_u8(EOF_HEADER);
    if caps & CLIENT_PROTOCOL_41 != 0 {
        out.put_u16_le(eof.warnings);
        out.put_u16_le(eof.status);
    }
}

// ---------------------------------------------------------------- auth phase, LOCAL INFILE

/// AuthSwitchRequest: the server asks for another plugin, with that plugin's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSwitch<'a> {
    pub plugin: &'a [u8],
    /// Plugin data; for `mysql_native_password` and `caching_sha2_password` the 20-byte
    /// scramble followed by a NUL.
    pub data: &'a [u8],
}

/// Parses an AuthSwitchRequest. A bare 0xFE (old servers) asks for `mysql_old_password`.
pub fn parse_auth_switch(payload: &[u8]) -> Result<AuthSwitch<'_>, ProtocolError> {
    let mut r = Reader::new(payload, "auth switch request");
    if r.u8()? != EOF_HEADER {
        return Err(malformed("auth switch request header"));
    }
    if r.is_empty() {
        return Ok(AuthSwitch {
            plugin: MYSQL_OLD_PASSWORD,
            data: &[],
        });
    }
    Ok(AuthSwitch {
        plugin: r.nul_bytes()?,
        data: r.rest(),
    })
}

pub fn put_auth_switch(out: &mut BytesMut, s: &AuthSwitch<'_>) {
    out.put_u8(EOF_HEADER);
    put_nul_bytes(out, s.plugin);
    out.put_slice(s.data);
}

/// AuthMoreData (0x01): plugin-specific bytes, e.g. `caching_sha2_password`'s 0x03 (fast
/// auth succeeded) or 0x04 (send the full password), or a PEM public key.
pub fn parse_auth_more_data(payload: &[u8]) -> Result<&[u8], ProtocolError> {
    match payload.split_first() {
        Some((&AUTH_MORE_DATA_HEADER, data)) => Ok(data),
        Some(_) => Err(malformed("auth more data header")),
        None => Err(ProtocolError::Truncated {
            what: "auth more data",
        }),
    }
}

pub fn put_auth_more_data(out: &mut BytesMut, data: &[u8]) {
    out.put_u8(AUTH_MORE_DATA_HEADER);
    out.put_slice(data);
}

/// LOCAL INFILE request (0xFB + file name): the client is asked to send a file's contents.
pub fn parse_local_infile(payload: &[u8]) -> Result<&[u8], ProtocolError> {
    match payload.split_first() {
        Some((&LOCAL_INFILE_HEADER, name)) => Ok(name),
        Some(_) => Err(malformed("LOCAL INFILE request header")),
        None => Err(ProtocolError::Truncated {
            what: "LOCAL INFILE request",
        }),
    }
}

pub fn put_local_infile(out: &mut BytesMut, file_name: &[u8]) {
    out.put_u8(LOCAL_INFILE_HEADER);
    out.put_slice(file_name);
}

// ---------------------------------------------------------------- prepared statements

/// COM_STMT_PREPARE_OK: the server's answer to COM_STMT_PREPARE. Parameter and column
/// definitions follow it as separate packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StmtPrepareOk {
    pub statement_id: u32,
    pub columns: u16,
    pub params: u16,
    pub warnings: u16,
    /// MySQL 8 with `CLIENT_OPTIONAL_RESULTSET_METADATA`: 0 none, 1 full.
    pub metadata_follows: Option<u8>,
}

pub fn parse_stmt_prepare_ok(payload: &[u8]) -> Result<StmtPrepareOk, ProtocolError> {
    let mut r = Reader::new(payload, "COM_STMT_PREPARE_OK");
    if r.u8()? != OK_HEADER {
        return Err(malformed("COM_STMT_PREPARE_OK header"));
    }
    let mut ok = StmtPrepareOk {
        statement_id: r.u32()?,
        columns: r.u16()?,
        params: r.u16()?,
        ..StmtPrepareOk::default()
    };
    r.u8()?; // filler
    if !r.is_empty() {
        ok.warnings = r.u16()?;
    }
    if !r.is_empty() {
        ok.metadata_follows = Some(r.u8()?);
    }
    r.finish()?;
    Ok(ok)
}

pub fn put_stmt_prepare_ok(out: &mut BytesMut, ok: &StmtPrepareOk) {
    out.put_u8(OK_HEADER);
    out.put_u32_le(ok.statement_id);
    out.put_u16_le(ok.columns);
    out.put_u16_le(ok.params);
    out.put_u8(0);
    out.put_u16_le(ok.warnings);
    if let Some(m) = ok.metadata_follows {
        out.put_u8(m);
    }
}

/// The first packet of a result set: the column count, and with
/// `CLIENT_OPTIONAL_RESULTSET_METADATA` (MySQL) or `MARIADB_CLIENT_CACHE_METADATA` a byte
/// saying whether column definitions follow.
pub fn parse_column_count(payload: &[u8], caps: u64) -> Result<(u64, Option<u8>), ProtocolError> {
    let mut r = Reader::new(payload, "column count");
    let n = r.lenenc_int()?;
    let flag = CLIENT_OPTIONAL_RESULTSET_METADATA | MARIADB_CLIENT_CACHE_METADATA;
    let follows = if caps & flag != 0 && !r.is_empty() {
        Some(r.u8()?)
    } else {
        None
    };
    r.finish()?;
    if n == 0 {
        return Err(malformed("column count"));
    }
    Ok((n, follows))
}

/// Appends a column-count packet (the inverse of [`parse_column_count`]).
pub fn put_column_count(out: &mut BytesMut, columns: u64, metadata_follows: Option<u8>) {
    put_lenenc_int(out, columns);
    if let Some(m) = metadata_follows {
        out.put_u8(m);
    }
}

// ---------------------------------------------------------------- classification

/// Where in an exchange a server packet arrives; decides what its first byte means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The first packet of a connection.
    Handshake,
    /// After the HandshakeResponse / AuthSwitchResponse, until OK or ERR.
    Auth,
    /// The first packet answering a command.
    Response,
    /// Column definitions and rows of a result set (and COM_FIELD_LIST's definitions).
    Rows,
}

/// What a server packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handshake,
    /// OK with header 0x00 (ends the command, or the whole result under `Response`).
    Ok,
    /// OK with header 0xFE under `CLIENT_DEPRECATE_EOF`: ends a result set (or answers a
    /// command the server would otherwise answer with EOF).
    EofOk,
    Err,
    /// MariaDB progress report; more packets follow for the same command.
    Progress,
    /// EOF packet (without `CLIENT_DEPRECATE_EOF`).
    Eof,
    AuthSwitch,
    AuthMoreData,
    LocalInfile,
    /// Anything else: a column count (`Response`), a column definition or a row (`Rows`),
    /// or a packet that does not belong in this phase.
    Data,
}

/// Tells what the server packet `payload` is, in `phase`, with the negotiated capabilities.
///
/// The ambiguous first bytes are settled by the documented rules: in rows, 0xFE starts an
/// EOF only if the payload is shorter than 9 bytes (a row starting with 0xFE is a value of
/// 16 MiB or more, whose payload is longer), and under `CLIENT_DEPRECATE_EOF` it starts the
/// OK that ends the result if the payload is shorter than 0xFFFFFF. 0x00 in rows is a binary
/// row header or an empty first value, never OK. ERR 0xFFFF with progress reporting
/// negotiated is a progress report.
pub fn classify(payload: &[u8], phase: Phase, caps: u64) -> Kind {
    let Some(&first) = payload.first() else {
        return Kind::Data;
    };
    let deprecate_eof = caps & CLIENT_DEPRECATE_EOF != 0;
    let progress = caps & (MARIADB_CLIENT_PROGRESS | CLIENT_PROGRESS_OBSOLETE) != 0;
    let eof_kind = || {
        if deprecate_eof && payload.len() < MAX_PACKET_PAYLOAD {
            Kind::EofOk
        } else if !deprecate_eof && payload.len() < 9 {
            Kind::Eof
        } else {
            Kind::Data
        }
    };
    match (phase, first) {
        (_, ERR_HEADER) => {
            if progress && payload.get(1..3) == Some(&[0xFF, 0xFF]) {
                Kind::Progress
            } else {
                Kind::Err
            }
        }
        (Phase::Handshake, PROTOCOL_VERSION_10) => Kind::Handshake,
        (Phase::Handshake, _) => Kind::Data,
        (Phase::Auth, OK_HEADER) => Kind::Ok,
        (Phase::Auth, EOF_HEADER) => Kind::AuthSwitch,
        (Phase::Auth, AUTH_MORE_DATA_HEADER) => Kind::AuthMoreData,
        (Phase::Auth, _) => Kind::Data,
        (Phase::Response, OK_HEADER) => Kind::Ok,
        (Phase::Response, LOCAL_INFILE_HEADER) => Kind::LocalInfile,
        (Phase::Response | Phase::Rows, EOF_HEADER) => eof_kind(),
        (Phase::Response | Phase::Rows, _) => Kind::Data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex dump to bytes; whitespace ignored.
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

    /// Every strict prefix of a packet the parser accepts must fail cleanly.
    fn prefixes_fail<'a, T>(
        payload: &'a [u8],
        parse: impl Fn(&'a [u8]) -> Result<T, ProtocolError>,
    ) {
        for cut in 0..payload.len() {
            assert!(
                parse(&payload[..cut]).is_err(),
                "prefix of {cut} bytes parsed"
            );
        }
    }

    // The HandshakeV10 example of the MySQL protocol documentation (5.5.2-m2, no plugin auth).
    const DOC_HANDSHAKE: &str = "0a 35 2e 35 2e 32 2d 6d 32 00 0b 00 00 00 64 76 48 40 49 2d 43 4a 00
        ff f7 08 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 2a 34 64 7c 63 5a 77 6b 34 5e 5d 3a 00";

    #[test]
    fn handshake_documentation_example() {
        let p = unhex(DOC_HANDSHAKE);
        let h = parse_handshake(&p).unwrap();
        assert_eq!(h.server_version, b"5.5.2-m2");
        assert_eq!(h.connection_id, 11);
        assert_eq!(h.capabilities, 0xF7FF);
        assert_eq!((h.charset, h.status), (8, SERVER_STATUS_AUTOCOMMIT));
        assert_eq!(h.auth_plugin, None);
        assert_eq!(h.scramble(), b"dvH@I-CJ*4d|cZwk4^]:");
        assert!(!h.is_mariadb());
        assert_eq!(&built(|b| put_handshake(b, &h))[..], &p[..]);
        prefixes_fail(&p, parse_handshake);
    }

    fn mariadb_handshake() -> Handshake<'static> {
        Handshake {
            server_version: b"5.5.5-10.11.6-MariaDB-log",
            connection_id: 42,
            auth_data_1: b"abcdefgh",
            // CLIENT_MYSQL clear: the extension is present.
            capabilities: (0xF7FE | CLIENT_PLUGIN_AUTH | CLIENT_SESSION_TRACK)
                | MARIADB_CLIENT_PROGRESS
                | MARIADB_CLIENT_STMT_BULK_OPERATIONS
                | MARIADB_CLIENT_CACHE_METADATA,
            charset: CHARSET_UTF8MB4_GENERAL_CI,
            status: SERVER_STATUS_AUTOCOMMIT,
            auth_data_len: 21,
            auth_data_2: b"ijklmnopqrst\0",
            auth_plugin: Some(MYSQL_NATIVE_PASSWORD),
        }
    }

    #[test]
    fn mariadb_handshake_carries_extended_capabilities_in_reserved_bytes() {
        let h = mariadb_handshake();
        let p = built(|b| put_handshake(b, &h));
        // The extension sits in the last 4 of the 10 reserved bytes.
        let reserved_at = 1 + h.server_version.len() + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1;
        assert_eq!(&p[reserved_at..reserved_at + 6], &[0; 6]);
        assert_eq!(
            &p[reserved_at + 6..reserved_at + 10],
            &((h.capabilities >> 32) as u32).to_le_bytes()
        );
        let back = parse_handshake(&p).unwrap();
        assert_eq!(back, h);
        assert!(back.is_mariadb());
        assert_eq!(back.version(), b"10.11.6-MariaDB-log");
        assert_eq!(back.scramble(), b"abcdefghijklmnopqrst");
        // Cut inside the plugin name it still parses (unterminated names are accepted).
        prefixes_fail(
            &p[..p.len() - MYSQL_NATIVE_PASSWORD.len() - 1],
            parse_handshake,
        );
    }

    #[test]
    fn mysql_handshake_ignores_reserved_bytes_and_pads_scramble() {
        // A MySQL server sets CLIENT_MYSQL (bit 0): non-zero reserved bytes are not MariaDB's.
        let mut h = mariadb_handshake();
        h.capabilities = 0xFFFF_FFFF & !CLIENT_SSL;
        h.server_version = b"8.0.36";
        h.auth_data_2 = b"ijklmnopqrst"; // 12 bytes: the builder adds the NUL
        h.auth_plugin = Some(CACHING_SHA2_PASSWORD);
        let mut p = built(|b| put_handshake(b, &h)).to_vec();
        let reserved_end = 1 + 7 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
        p[reserved_end - 1] = 0x7F;
        let back = parse_handshake(&p).unwrap();
        assert_eq!(back.capabilities, 0xFFFF_FFFF & !CLIENT_SSL);
        assert_eq!(back.auth_data_2, b"ijklmnopqrst\0");
        assert_eq!(back.auth_plugin, Some(CACHING_SHA2_PASSWORD));
        assert!(!back.is_mariadb());
        // MySQL 5.5.7..9 left the plugin name unterminated.
        p.pop();
        assert_eq!(
            parse_handshake(&p).unwrap().auth_plugin,
            Some(CACHING_SHA2_PASSWORD)
        );
    }

    #[test]
    fn handshake_refuses_other_protocols_and_trailing_bytes() {
        let mut p = unhex(DOC_HANDSHAKE);
        p.push(1);
        assert!(parse_handshake(&p).is_err());
        assert!(matches!(
            parse_handshake(&[9, b'x', 0]),
            Err(ProtocolError::Unsupported { .. })
        ));
        assert!(parse_handshake(b"\xff\x10\x04Too many connections").is_err());
    }

    const ALL41: u64 = CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION;

    #[test]
    fn ok_packet_round_trips_with_and_without_session_tracking() {
        let state = built(|b| {
            put_session_change(b, &SessionChange::Schema(b"app"));
            put_session_change(
                b,
                &SessionChange::SystemVariable {
                    name: b"autocommit",
                    value: b"OFF",
                },
            );
            put_session_change(b, &SessionChange::StateChange(b"1"));
            put_session_change(
                b,
                &SessionChange::Gtids {
                    spec: 0,
                    gtids: b"3E11FA47-71CA-11E1-9E33-C80AA9429562:23",
                },
            );
            put_session_change(
                b,
                &SessionChange::TransactionCharacteristics(b"START TRANSACTION READ ONLY;"),
            );
            put_session_change(b, &SessionChange::TransactionState(b"T_______"));
            put_session_change(
                b,
                &SessionChange::Other {
                    kind: 9,
                    data: b"?",
                },
            );
        });
        let ok = OkPacket {
            header: OK_HEADER,
            affected_rows: 300,
            last_insert_id: 1 << 40,
            status: SERVER_STATUS_IN_TRANS | SERVER_SESSION_STATE_CHANGED,
            warnings: 2,
            info: b"Rows matched: 1  Changed: 1  Warnings: 0",
            session_state: Some(&state),
        };
        for caps in [
            ALL41 | CLIENT_SESSION_TRACK,
            ALL41,
            CLIENT_TRANSACTIONS,
            0,
            ALL41 | CLIENT_SESSION_TRACK | CLIENT_DEPRECATE_EOF,
        ] {
            let p = built(|b| put_ok(b, &ok, caps));
            let back = parse_ok(&p, caps).unwrap();
            assert_eq!(back.affected_rows, 300);
            assert_eq!(back.last_insert_id, 1 << 40);
            assert_eq!(back.info, ok.info, "caps {caps:#x}");
            let tracked = caps & CLIENT_SESSION_TRACK != 0;
            assert_eq!(back.session_state.is_some(), tracked);
            if caps & CLIENT_PROTOCOL_41 != 0 {
                assert_eq!((back.status, back.warnings), (ok.status, 2));
            }
            assert_eq!(parse_ok(&built(|b| put_ok(b, &back, caps)), caps), Ok(back));
        }
        let changes: Vec<_> = session_changes(&state).collect::<Result<_, _>>().unwrap();
        assert_eq!(changes.len(), 7);
        assert_eq!(changes[0], SessionChange::Schema(b"app"));
        assert_eq!(changes[5], SessionChange::TransactionState(b"T_______"));
        assert_eq!(
            changes[6],
            SessionChange::Other {
                kind: 9,
                data: b"?"
            }
        );
    }

    #[test]
    fn ok_packet_minimal_forms() {
        let caps = ALL41 | CLIENT_SESSION_TRACK;
        // A MySQL 8 OK after SET: no info at all, the packet ends after the warnings.
        let ok = parse_ok(&[0, 0, 0, 2, 0, 0, 0], caps).unwrap();
        assert_eq!((ok.status, ok.info, ok.session_state), (2, &b""[..], None));
        assert_eq!(&built(|b| put_ok(b, &ok, caps))[..], &[0, 0, 0, 2, 0, 0, 0]);
        // Without session tracking a bare string<EOF> info is accepted too.
        let ok = parse_ok(b"\0\x01\x00\x02\x00\x00\x00hello", ALL41).unwrap();
        assert_eq!(ok.info, b"hello");
        let ok = parse_ok(b"\0\x01\x00\x02\x00\x00\x00\x05hello", ALL41).unwrap();
        assert_eq!(ok.info, b"hello");
        prefixes_fail(&[0, 0xFC, 1, 1, 0, 2, 0, 0, 0], |p| parse_ok(p, ALL41));
        assert!(parse_ok(&[1, 0, 0, 2, 0, 0, 0], ALL41).is_err());
        // Session tracking: an info length past the end, or bytes after the state, fail.
        assert!(parse_ok(&[0, 0, 0, 2, 0, 0, 0, 5, b'a'], caps).is_err());
        assert!(parse_ok(&[0, 0, 0, 2, 0x40, 0, 0, 0, 0, 9], caps).is_err());
    }

    #[test]
    fn session_changes_stop_at_the_first_malformed_entry() {
        // Schema entry whose inner string overruns its entry.
        let bad = [SESSION_TRACK_SCHEMA, 2, 5, b'a', SESSION_TRACK_SCHEMA, 1, 0];
        let v: Vec<_> = session_changes(&bad).collect();
        assert_eq!(v.len(), 1);
        assert!(v[0].is_err());
        // Entry longer than the data.
        assert!(session_changes(&[0, 9, 1]).next().unwrap().is_err());
        // Trailing bytes inside an entry are malformed.
        assert!(session_changes(&[1, 3, 1, b'a', b'b'])
            .next()
            .unwrap()
            .is_err());
    }

    #[test]
    fn err_packets_with_and_without_sql_state() {
        let e = ErrPacket {
            code: 1045,
            sql_state: Some(*b"28000"),
            message: b"Access denied for user 'app'@'localhost' (using password: YES)",
        };
        let p = built(|b| put_err(b, &e));
        assert_eq!(&p[..9], b"\xff\x15\x04#28000");
        assert_eq!(parse_err(&p).unwrap(), e);
        // Sent before capabilities are agreed: no marker.
        let e = parse_err(b"\xff\x10\x04Too many connections").unwrap();
        assert_eq!(
            (e.code, e.sql_state, e.message),
            (1040, None, &b"Too many connections"[..])
        );
        assert!(parse_err(&[0xFF, 1]).is_err());
        assert!(parse_err(&[0xFE, 1, 0]).is_err());
        assert_eq!(parse_err(b"\xff\x01\x00#12").unwrap().message, b"#12");
    }

    #[test]
    fn mariadb_progress_report() {
        let pr = Progress {
            stage: 1,
            max_stage: 3,
            progress: 51_234,
            info: b"copy to tmp table",
        };
        let p = built(|b| put_progress(b, &pr));
        assert_eq!(parse_progress(&p).unwrap(), pr);
        prefixes_fail(&p, parse_progress);
        let caps = CLIENT_PROTOCOL_41 | MARIADB_CLIENT_PROGRESS;
        assert_eq!(classify(&p, Phase::Response, caps), Kind::Progress);
        assert_eq!(classify(&p, Phase::Response, CLIENT_PROTOCOL_41), Kind::Err);
    }

    #[test]
    fn eof_packets() {
        let eof = EofPacket {
            warnings: 1,
            status: SERVER_MORE_RESULTS_EXISTS,
        };
        let p = built(|b| put_eof(b, &eof, ALL41));
        assert_eq!(&p[..], &[0xFE, 1, 0, 8, 0]);
        assert_eq!(parse_eof(&p, ALL41).unwrap(), eof);
        assert_eq!(parse_eof(&[0xFE], 0).unwrap(), EofPacket::default());
        prefixes_fail(&p, |x| parse_eof(x, ALL41));
        assert!(parse_eof(&[0xFE, 0, 0, 0, 0, 0], ALL41).is_err());
    }

    #[test]
    fn auth_phase_packets() {
        let mut data = b"01234567890123456789".to_vec();
        data.push(0);
        let sw = AuthSwitch {
            plugin: MYSQL_NATIVE_PASSWORD,
            data: &data,
        };
        let p = built(|b| put_auth_switch(b, &sw));
        assert_eq!(parse_auth_switch(&p).unwrap(), sw);
        assert_eq!(classify(&p, Phase::Auth, ALL41), Kind::AuthSwitch);
        assert_eq!(
            parse_auth_switch(&[0xFE]).unwrap().plugin,
            MYSQL_OLD_PASSWORD
        );
        assert!(parse_auth_switch(b"\xfemysql_native_password").is_err());

        let p = built(|b| put_auth_more_data(b, &[CACHING_SHA2_FAST_AUTH_SUCCESS]));
        assert_eq!(&p[..], &[1, 3]);
        assert_eq!(parse_auth_more_data(&p).unwrap(), &[3]);
        assert_eq!(classify(&p, Phase::Auth, ALL41), Kind::AuthMoreData);
        assert!(parse_auth_more_data(&[]).is_err());
        assert!(parse_auth_more_data(&[2]).is_err());

        let p = built(|b| put_local_infile(b, b"/tmp/data.csv"));
        assert_eq!(parse_local_infile(&p).unwrap(), b"/tmp/data.csv");
        assert_eq!(classify(&p, Phase::Response, ALL41), Kind::LocalInfile);
        assert!(parse_local_infile(&[0]).is_err());
    }

    #[test]
    fn stmt_prepare_ok_forms() {
        let ok = StmtPrepareOk {
            statement_id: 7,
            columns: 2,
            params: 3,
            warnings: 1,
            metadata_follows: None,
        };
        let p = built(|b| put_stmt_prepare_ok(b, &ok));
        assert_eq!(p.len(), 12);
        assert_eq!(parse_stmt_prepare_ok(&p).unwrap(), ok);
        let with_meta = StmtPrepareOk {
            metadata_follows: Some(1),
            ..ok
        };
        let p = built(|b| put_stmt_prepare_ok(b, &with_meta));
        assert_eq!(parse_stmt_prepare_ok(&p).unwrap(), with_meta);
        // Old servers stop after the filler.
        assert_eq!(parse_stmt_prepare_ok(&p[..10]).unwrap().warnings, 0);
        assert!(parse_stmt_prepare_ok(&p[..9]).is_err());
        assert!(parse_stmt_prepare_ok(&p[..11]).is_err());
    }

    #[test]
    fn column_count() {
        assert_eq!(parse_column_count(&[3], ALL41), Ok((3, None)));
        assert_eq!(parse_column_count(&[0xFC, 0, 1], ALL41), Ok((256, None)));
        let caps = ALL41 | CLIENT_OPTIONAL_RESULTSET_METADATA;
        assert_eq!(parse_column_count(&[3, 1], caps), Ok((3, Some(1))));
        for (n, m) in [(1, None), (251, Some(0)), (4096, Some(1))] {
            let p = built(|b| put_column_count(b, n, m));
            assert_eq!(parse_column_count(&p, caps), Ok((n, m)));
        }
        assert!(parse_column_count(&[3, 1], ALL41).is_err());
        assert!(parse_column_count(&[0], ALL41).is_err());
        assert!(parse_column_count(&[0xFB], ALL41).is_err());
    }

    #[test]
    fn classify_settles_ambiguous_first_bytes() {
        let de = ALL41 | CLIENT_DEPRECATE_EOF;
        let eof = [0xFE, 0, 0, 2, 0];
        let ok_fe = [0xFE, 0, 0, 2, 0, 0, 0];
        // Rows without DEPRECATE_EOF: a short 0xFE is EOF; a long one is a row.
        assert_eq!(classify(&eof, Phase::Rows, ALL41), Kind::Eof);
        let mut big_row = vec![0xFE];
        big_row.extend_from_slice(&[0; 8]);
        assert_eq!(classify(&big_row, Phase::Rows, ALL41), Kind::Data);
        // With DEPRECATE_EOF the 0xFE OK ends the result, whatever its length below 16 MiB.
        assert_eq!(classify(&ok_fe, Phase::Rows, de), Kind::EofOk);
        let mut tracked = ok_fe.to_vec();
        tracked.extend_from_slice(&[0; 20]);
        assert_eq!(classify(&tracked, Phase::Rows, de), Kind::EofOk);
        let huge = vec![0xFE; MAX_PACKET_PAYLOAD];
        assert_eq!(classify(&huge, Phase::Rows, de), Kind::Data);
        // 0x00 and 0xFB in rows are values, not OK / LOCAL INFILE.
        assert_eq!(classify(&[0, 1, 2], Phase::Rows, de), Kind::Data);
        assert_eq!(classify(&[0xFB, 1, b'x'], Phase::Rows, de), Kind::Data);
        assert_eq!(classify(&[0xFF, 1, 0], Phase::Rows, de), Kind::Err);
        // First answer to a command.
        assert_eq!(
            classify(&[0, 0, 0, 2, 0, 0, 0], Phase::Response, de),
            Kind::Ok
        );
        assert_eq!(classify(&[2], Phase::Response, de), Kind::Data);
        assert_eq!(classify(&eof, Phase::Response, ALL41), Kind::Eof);
        assert_eq!(classify(&ok_fe, Phase::Response, de), Kind::EofOk);
        // Connection phase.
        let hs = unhex(DOC_HANDSHAKE);
        assert_eq!(classify(&hs, Phase::Handshake, 0), Kind::Handshake);
        assert_eq!(classify(b"\xff\x10\x04x", Phase::Handshake, 0), Kind::Err);
        assert_eq!(classify(&[0, 0, 0, 2, 0, 0, 0], Phase::Auth, 0), Kind::Ok);
        assert_eq!(classify(&[], Phase::Auth, 0), Kind::Data);
    }
}

#[cfg(test)]
mod mariadb_session_state {
    use super::*;

    /// Bytes MariaDB 10.11 sent after
    /// `SET SESSION session_track_system_variables = '*', session_track_state_change = ON`:
    /// two variables in entries of their own, and the state-change flag as one bare byte.
    #[test]
    fn mariadb_state_change_is_one_bare_byte() {
        let mut state = vec![0x00, 0x1e, 0x1a];
        state.extend_from_slice(b"session_track_state_change");
        state.extend_from_slice(&[0x02, b'O', b'N', 0x00, 0x21, 0x1e]);
        state.extend_from_slice(b"session_track_system_variables");
        state.extend_from_slice(&[0x01, b'*', 0x02, 0x01, b'1']);
        let changes: Vec<_> = session_changes(&state).collect::<Result<_, _>>().unwrap();
        assert_eq!(changes.len(), 3);
        assert_eq!(
            changes[0],
            SessionChange::SystemVariable {
                name: b"session_track_state_change",
                value: b"ON"
            }
        );
        assert_eq!(changes[2], SessionChange::StateChange(b"1"));
    }
}
