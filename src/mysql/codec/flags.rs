//! Capability flags, server status flags and a few protocol constants.
//!
//! Capabilities are `u64`: MySQL's 32 `CLIENT_*` bits, then MariaDB's extended capabilities
//! in bits 32..64. MariaDB sends and reads the extension only when `CLIENT_MYSQL` (bit 0, the
//! old `CLIENT_LONG_PASSWORD`) is clear; MySQL servers and clients always set bit 0.

// ---- capability flags (MySQL, low 32 bits) ----
/// MySQL's `CLIENT_LONG_PASSWORD`; MariaDB calls it `CLIENT_MYSQL` and clears it to say that
/// the extended capabilities are present.
pub const CLIENT_LONG_PASSWORD: u64 = 1;
pub const CLIENT_MYSQL: u64 = 1;
pub const CLIENT_FOUND_ROWS: u64 = 1 << 1;
pub const CLIENT_LONG_FLAG: u64 = 1 << 2;
pub const CLIENT_CONNECT_WITH_DB: u64 = 1 << 3;
pub const CLIENT_NO_SCHEMA: u64 = 1 << 4;
pub const CLIENT_COMPRESS: u64 = 1 << 5;
pub const CLIENT_ODBC: u64 = 1 << 6;
pub const CLIENT_LOCAL_FILES: u64 = 1 << 7;
pub const CLIENT_IGNORE_SPACE: u64 = 1 << 8;
pub const CLIENT_PROTOCOL_41: u64 = 1 << 9;
pub const CLIENT_INTERACTIVE: u64 = 1 << 10;
pub const CLIENT_SSL: u64 = 1 << 11;
pub const CLIENT_IGNORE_SIGPIPE: u64 = 1 << 12;
pub const CLIENT_TRANSACTIONS: u64 = 1 << 13;
pub const CLIENT_RESERVED: u64 = 1 << 14;
/// Also called `CLIENT_RESERVED2`: 4.1 authentication (auth data length-prefixed).
pub const CLIENT_SECURE_CONNECTION: u64 = 1 << 15;
pub const CLIENT_MULTI_STATEMENTS: u64 = 1 << 16;
pub const CLIENT_MULTI_RESULTS: u64 = 1 << 17;
pub const CLIENT_PS_MULTI_RESULTS: u64 = 1 << 18;
pub const CLIENT_PLUGIN_AUTH: u64 = 1 << 19;
pub const CLIENT_CONNECT_ATTRS: u64 = 1 << 20;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u64 = 1 << 21;
pub const CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS: u64 = 1 << 22;
pub const CLIENT_SESSION_TRACK: u64 = 1 << 23;
pub const CLIENT_DEPRECATE_EOF: u64 = 1 << 24;
/// MySQL 8.0: result-set metadata may be skipped.
pub const CLIENT_OPTIONAL_RESULTSET_METADATA: u64 = 1 << 25;
/// MySQL 8.0.18: a zstd level byte ends the HandshakeResponse41.
pub const CLIENT_ZSTD_COMPRESSION_ALGORITHM: u64 = 1 << 26;
/// MySQL 8.0.23: COM_QUERY carries query attributes before the text.
pub const CLIENT_QUERY_ATTRIBUTES: u64 = 1 << 27;
pub const MULTI_FACTOR_AUTHENTICATION: u64 = 1 << 28;
pub const CLIENT_CAPABILITY_EXTENSION: u64 = 1 << 29;
pub const CLIENT_SSL_VERIFY_SERVER_CERT: u64 = 1 << 30;
pub const CLIENT_REMEMBER_OPTIONS: u64 = 1 << 31;

// ---- MariaDB extended capabilities (high 32 bits; only when CLIENT_MYSQL is clear) ----
/// Progress reports: ERR packets with code 0xFFFF while a statement runs.
pub const MARIADB_CLIENT_PROGRESS: u64 = 1 << 32;
/// Old COM_MULTI experiment (removed from the server).
pub const MARIADB_CLIENT_COM_MULTI: u64 = 1 << 33;
/// COM_STMT_BULK_EXECUTE (array binding).
pub const MARIADB_CLIENT_STMT_BULK_OPERATIONS: u64 = 1 << 34;
/// Extended column metadata (type/format names), MariaDB 10.5.2.
pub const MARIADB_CLIENT_EXTENDED_METADATA: u64 = 1 << 35;
/// Prepared-statement metadata is not resent unless it changes, MariaDB 10.6.
pub const MARIADB_CLIENT_CACHE_METADATA: u64 = 1 << 36;
/// One result per bulk-execute row, MariaDB 11.5.1.
pub const MARIADB_CLIENT_BULK_UNIT_RESULTS: u64 = 1 << 37;

/// True when `caps` (a server's or client's) carries MariaDB extended capabilities.
pub fn has_mariadb_extension(caps: u64) -> bool {
    caps & CLIENT_MYSQL == 0
}

// ---- server status flags (OK, EOF, handshake) ----
pub const SERVER_STATUS_IN_TRANS: u16 = 1;
pub const SERVER_STATUS_AUTOCOMMIT: u16 = 1 << 1;
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 1 << 3;
pub const SERVER_QUERY_NO_GOOD_INDEX_USED: u16 = 1 << 4;
pub const SERVER_QUERY_NO_INDEX_USED: u16 = 1 << 5;
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 1 << 6;
pub const SERVER_STATUS_LAST_ROW_SENT: u16 = 1 << 7;
pub const SERVER_STATUS_DB_DROPPED: u16 = 1 << 8;
pub const SERVER_STATUS_NO_BACKSLASH_ESCAPES: u16 = 1 << 9;
pub const SERVER_STATUS_METADATA_CHANGED: u16 = 1 << 10;
pub const SERVER_QUERY_WAS_SLOW: u16 = 1 << 11;
pub const SERVER_PS_OUT_PARAMS: u16 = 1 << 12;
pub const SERVER_STATUS_IN_TRANS_READONLY: u16 = 1 << 13;
pub const SERVER_SESSION_STATE_CHANGED: u16 = 1 << 14;
/// MariaDB: `sql_mode` contains ANSI_QUOTES.
pub const SERVER_STATUS_ANSI_QUOTES: u16 = 1 << 15;

// ---- character sets (collation ids sent in handshakes) ----
pub const CHARSET_LATIN1_SWEDISH_CI: u8 = 8;
pub const CHARSET_UTF8MB3_GENERAL_CI: u8 = 33;
pub const CHARSET_BINARY: u8 = 63;
pub const CHARSET_UTF8MB4_GENERAL_CI: u8 = 45;
/// MySQL 8.0's default collation.
pub const CHARSET_UTF8MB4_0900_AI_CI: u8 = 255;

// ---- authentication plugin names ----
pub const MYSQL_NATIVE_PASSWORD: &[u8] = b"mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &[u8] = b"caching_sha2_password";
pub const SHA256_PASSWORD: &[u8] = b"sha256_password";
pub const MYSQL_CLEAR_PASSWORD: &[u8] = b"mysql_clear_password";
/// The plugin a bare 0xFE auth switch (pre-4.1 servers) asks for.
pub const MYSQL_OLD_PASSWORD: &[u8] = b"mysql_old_password";
/// MariaDB's ed25519 plugin.
pub const CLIENT_ED25519: &[u8] = b"client_ed25519";

/// caching_sha2_password AuthMoreData bytes.
pub const CACHING_SHA2_REQUEST_PUBLIC_KEY: u8 = 2;
pub const CACHING_SHA2_FAST_AUTH_SUCCESS: u8 = 3;
pub const CACHING_SHA2_PERFORM_FULL_AUTH: u8 = 4;

/// The status flags that describe the session rather than one statement's answer: a server
/// reports them again with every command until they change.
pub const SESSION_STATUS_FLAGS: u16 = SERVER_STATUS_IN_TRANS
    | SERVER_STATUS_AUTOCOMMIT
    | SERVER_STATUS_NO_BACKSLASH_ESCAPES
    | SERVER_STATUS_IN_TRANS_READONLY
    | SERVER_STATUS_ANSI_QUOTES;
