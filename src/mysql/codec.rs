//! MySQL / MariaDB packet framing and the packet bodies the proxy reads or writes.
//!
//! Pure: no I/O. Framing borrows from the caller's buffer and hands out byte ranges, so a
//! proxy forwards packets verbatim; every length is checked against the buffer end, and the
//! declared size of a packet against a caller-given bound *before* its body is buffered.
//! Parsers borrow from the payload they are given and never panic; builders append to a
//! [`BytesMut`](bytes::BytesMut) and produce bytes the matching parser reads back to the same
//! value.
//!
//! Layout:
//! - [`frame`]: packet headers, logical packets spanning 16 MiB continuations, sequence ids.
//! - [`wire`]: primitives — fixed-width little-endian integers, length-encoded integers and
//!   strings, NUL-terminated strings — and the checked [`Reader`].
//! - [`flags`]: capability flags (MySQL's 32 bits and MariaDB's extension above them), server
//!   status flags, character sets.
//! - [`server`]: server → client packets (handshake, OK / ERR / EOF, session state changes,
//!   auth switch, auth more data, LOCAL INFILE, COM_STMT_PREPARE_OK) and [`classify`].
//! - [`client`]: client → server connection-phase packets (HandshakeResponse41, SSLRequest).
//! - [`command`]: command-phase packets (the command byte, COM_QUERY, COM_INIT_DB,
//!   COM_CHANGE_USER, statement ids of COM_STMT_*).
//!
//! Everything is re-exported here, so users write `mysql::codec::parse_ok` and so on.
//!
//! Capabilities are passed as one `u64`: the low 32 bits are MySQL's `CLIENT_*` flags, the high
//! 32 bits MariaDB's extended capabilities (present only when `CLIENT_MYSQL`, bit 0, is clear).

pub mod client;
pub mod command;
pub mod flags;
pub mod frame;
pub mod server;
pub mod wire;

pub use client::*;
pub use command::*;
pub use flags::*;
pub use frame::*;
pub use server::*;
pub use wire::*;

/// Why bytes from a peer are not a valid packet. Small and `Copy`-cheap on purpose: it is
/// returned on hot paths, and every variant says what was being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A packet (or the logical packet its continuations add up to) is over the caller's limit.
    #[error("packet payload of {len} bytes is over the limit of {max}")]
    TooLarge { len: u64, max: usize },
    /// A continuation packet did not carry the next sequence id.
    #[error("packet sequence id {got}, expected {expected}")]
    Sequence { got: u8, expected: u8 },
    /// The payload ended inside a field.
    #[error("truncated {what}")]
    Truncated { what: &'static str },
    /// A field has a value the protocol does not allow (wrong header byte, NULL where a
    /// length is required, bytes left over, ...).
    #[error("malformed {what}")]
    Malformed { what: &'static str },
    /// Valid protocol this codec deliberately does not handle (pre-4.1 packets, ...).
    #[error("unsupported {what}")]
    Unsupported { what: &'static str },
}

pub(crate) fn malformed(what: &'static str) -> ProtocolError {
    ProtocolError::Malformed { what }
}
