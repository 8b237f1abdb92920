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
pub mod auth_query;
pub mod backend;
pub mod codec;
pub mod collations;
pub mod io;
pub mod probe;
pub mod session;
pub mod startup;
pub mod worker;

/// A map keyed by statement ids the proxy hands out itself (to clients, and per text): no
/// client chooses what goes in, so it needs no collision-resistant hash (SipHash was a tenth
/// of the proxy's own instructions per execute); a multiplicative one spreads sequential ids.
pub type IdMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The hash of [`IdMap`]: one multiply per integer key.
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
