//! MySQL / MariaDB wire protocol.
//!
//! Layout:
//! - [`codec`]: pure, I/O-free packet framing (3-byte length + sequence id, 16 MiB
//!   continuation) and the packets a proxy reads or writes: the connection phase
//!   (Initial Handshake v10, HandshakeResponse41, SSLRequest, auth switch / more data),
//!   OK / ERR / EOF with session-state tracking, command packets and prepared-statement ids.
//! - [`auth`]: the `mysql_native_password` and `caching_sha2_password` scrambles, for both the
//!   client computation and the server check, without I/O.
//!
//! Invariants: every parser is total (malformed or hostile bytes give an error, never a panic);
//! lengths are checked against the buffer and the caller's bound before anything is buffered
//! or allocated; framing hands out byte ranges so a proxy forwards packets verbatim.
pub mod auth;
pub mod backend;
pub mod codec;
pub mod collations;
pub mod io;
pub mod probe;
pub mod session;
pub mod startup;
pub mod worker;
