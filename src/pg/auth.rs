//! I/O-free authentication primitives.
//!
//! The client-facing side of the proxy acts as a PostgreSQL *server*: it
//! runs the server half of SCRAM-SHA-256 ([RFC 5802], [RFC 7677]) against a
//! stored verifier, or checks an MD5 challenge response. A few helpers are
//! also provided for the backend-facing side (where the proxy is a client).
//!
//! Nothing in this module performs I/O; callers move the message payloads
//! (the bodies of `SASLInitialResponse`, `SASLResponse`, `PasswordMessage`,
//! `AuthenticationSASLContinue`, ...) in and out.
//!
//! All parsing of client-supplied bytes is total: malformed input yields an
//! [`AuthError`], never a panic.
//!
//! [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
//! [RFC 7677]: https://www.rfc-editor.org/rfc/rfc7677

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Name of the only SASL mechanism the proxy advertises.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// SCRAM-SHA-256 with `tls-server-end-point` channel binding (RFC 5929), offered over TLS.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Upper bound accepted for the iteration count of a stored verifier.
pub const MAX_SCRAM_ITERATIONS: u32 = 10_000_000;

/// Iteration count used by [`ScramVerifier::from_password`] (PostgreSQL's default).
const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length used by [`ScramVerifier::from_password`] (PostgreSQL's default).
const DEFAULT_SALT_LEN: usize = 16;
/// Random bytes in the server nonce (before base64 encoding).
const SERVER_NONCE_LEN: usize = 18;

type HmacSha256 = Hmac<Sha256>;

/// Errors produced while authenticating a client.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The client violated the SASL/SCRAM protocol (bad syntax, unsupported
    /// feature, wrong message order, ...). The string is safe to log.
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    /// The client's proof did not match the stored verifier.
    #[error("password authentication failed")]
    WrongPassword,
}

fn malformed(msg: impl Into<String>) -> AuthError {
    AuthError::Malformed(msg.into())
}

/// A stored SCRAM-SHA-256 secret, as kept in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iteration count sent to the client (`1..=MAX_SCRAM_ITERATIONS`).
    pub iterations: u32,
    /// Salt sent to the client (non-empty).
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are password-equivalent for impersonating the server: keep them out of logs.
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

impl ScramVerifier {
    /// Parses PostgreSQL's textual verifier format
    /// `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`.
    ///
    /// Surrounding whitespace is ignored. Iteration counts of 0 or above
    /// [`MAX_SCRAM_ITERATIONS`] are rejected. Error messages never echo the input.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .trim()
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or("SCRAM verifier must start with \"SCRAM-SHA-256$\"")?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or("SCRAM verifier must look like SCRAM-SHA-256$<iter>:<salt>$<stored>:<server>")?;
        let (iter, salt) = params
            .split_once(':')
            .ok_or("SCRAM verifier is missing \"<iterations>:<salt>\"")?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or("SCRAM verifier is missing \"<StoredKey>:<ServerKey>\"")?;
        let iterations: u32 = iter
            .parse()
            .map_err(|_| "SCRAM verifier iteration count is not a number".to_string())?;
        if iterations == 0 || iterations > MAX_SCRAM_ITERATIONS {
            return Err(format!(
                "SCRAM verifier iteration count must be between 1 and {MAX_SCRAM_ITERATIONS}"
            ));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| "SCRAM verifier salt is not valid base64".to_string())?;
        if salt.is_empty() {
            return Err("SCRAM verifier salt is empty".into());
        }
        let key = |s: &str, what: &str| -> Result<[u8; 32], String> {
            B64.decode(s)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                .ok_or_else(|| format!("SCRAM verifier {what} is not 32 bytes of base64"))
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey")?,
            server_key: key(server, "ServerKey")?,
        })
    }

    /// Builds a verifier for `password` with a random 16-byte salt and 4096
    /// iterations, exactly as PostgreSQL would (SASLprep is applied when the
    /// password normalizes; otherwise its raw bytes are used).
    pub fn from_password(password: &str) -> Self {
        let text = postgres_protocol::password::scram_sha_256(password.as_bytes());
        match Self::parse(&text) {
            Ok(v) => v,
            // Not expected to happen; fall back to deriving from the raw bytes
            // (what PostgreSQL does when SASLprep is not applicable).
            Err(_) => {
                let mut salt = vec![0u8; DEFAULT_SALT_LEN];
                rand::thread_rng().fill_bytes(&mut salt);
                Self::derive(password.as_bytes(), salt, DEFAULT_ITERATIONS)
            }
        }
    }

    /// Derives a verifier from an already-prepared (SASLprep'd or raw) password.
    fn derive(password: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let iterations = iterations.clamp(1, MAX_SCRAM_ITERATIONS);
        let salted = hi(password, &salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramVerifier {
            iterations,
            salt,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    /// Formats the verifier in PostgreSQL's textual form (inverse of [`parse`](Self::parse)).
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// `HMAC-SHA-256(key, parts[0] || parts[1] || ...)`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `Hi(str, salt, i)` from RFC 5802 section 2.2 (PBKDF2-HMAC-SHA-256, one block).
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &[&u]);
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// Constant-time (for equal lengths) byte-slice comparison.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Splits a SCRAM attribute `x=value` into `(x, value)`; the name must be one ASCII letter.
fn attr(part: &[u8]) -> Option<(u8, &[u8])> {
    match part {
        [name, b'=', value @ ..] if name.is_ascii_alphabetic() => Some((*name, value)),
        _ => None,
    }
}

/// Returns the value of attribute `name` at the start of `part`, or a protocol error.
fn expect_attr<'a>(part: Option<&'a [u8]>, name: u8, what: &str) -> Result<&'a [u8], AuthError> {
    match part.and_then(attr) {
        Some((n, v)) if n == name => Ok(v),
        _ => Err(malformed(format!(
            "expected {what} attribute \"{}=\"",
            name as char
        ))),
    }
}

/// Server-side state of one SCRAM exchange.
enum ScramState {
    /// Waiting for client-first-message.
    Initial,
    /// server-first-message sent; waiting for client-final-message.
    SentFirst {
        gs2_header: Vec<u8>,
        client_first_bare: Vec<u8>,
        server_first: Vec<u8>,
        nonce: Vec<u8>,
    },
    /// Finished (successfully or not); no further messages are accepted.
    Done,
}

/// Server side of SCRAM-SHA-256, with `tls-server-end-point` channel binding when the
/// client chose SCRAM-SHA-256-PLUS (see [`ScramServer::with_channel_binding`]).
///
/// Usage: send `AuthenticationSASL` listing `SCRAM-SHA-256` (after `SCRAM-SHA-256-PLUS`
/// over TLS), feed the
/// `SASLInitialResponse` data to [`handle_client_first`](Self::handle_client_first)
/// and send the result in `AuthenticationSASLContinue`, then feed the
/// `SASLResponse` data to [`handle_client_final`](Self::handle_client_final)
/// and send the result in `AuthenticationSASLFinal` followed by
/// `AuthenticationOk`. Any error ends the exchange.
pub struct ScramServer {
    verifier: ScramVerifier,
    server_nonce: String,
    state: ScramState,
    cb: ChannelBinding,
    /// The ClientKey the client's proof revealed, once verified.
    client_key: Option<[u8; 32]>,
}

/// Channel binding in one SCRAM exchange: what the server offered and the client chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Only [`SCRAM_SHA_256`] was offered (no TLS, or a certificate with no end point).
    NotOffered,
    /// [`SCRAM_SHA_256_PLUS`] was offered and the client chose [`SCRAM_SHA_256`].
    Declined,
    /// The client chose [`SCRAM_SHA_256_PLUS`]: the server certificate's
    /// `tls-server-end-point` data (see `net::channel_binding`).
    TlsServerEndPoint(Vec<u8>),
}

impl ScramServer {
    /// Starts an exchange against `verifier`, generating a random server nonce
    /// (18 random bytes, base64-encoded).
    pub fn new(verifier: ScramVerifier) -> Self {
        let mut raw = [0u8; SERVER_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw);
        Self::with_nonce(verifier, B64.encode(raw))
    }

    /// Starts an exchange with a fixed server nonce (for test vectors).
    fn with_nonce(verifier: ScramVerifier, server_nonce: String) -> Self {
        ScramServer {
            verifier,
            server_nonce,
            state: ScramState::Initial,
            cb: ChannelBinding::NotOffered,
            client_key: None,
        }
    }

    /// After a verified exchange: the secrets a client of the same verifier logs in to a
    /// server with (the ClientKey the proof revealed, with the verifier's salt, iterations
    /// and ServerKey), as PgBouncer's SCRAM pass-through uses them.
    pub fn client_keys(&self) -> Option<ScramKeys> {
        self.client_key.map(|client_key| ScramKeys {
            iterations: self.verifier.iterations,
            salt: self.verifier.salt.clone(),
            client_key,
            server_key: self.verifier.server_key,
        })
    }

    /// Set what was offered and chosen of channel binding (before the first message).
    pub fn with_channel_binding(mut self, cb: ChannelBinding) -> Self {
        self.cb = cb;
        self
    }

    /// Handles `SASLInitialResponse` data (client-first-message). Returns the
    /// server-first-message bytes to send in `AuthenticationSASLContinue`.
    ///
    /// The username attribute is ignored (PostgreSQL uses the startup user).
    /// A channel-binding flag that does not fit what was offered and chosen (see
    /// [`ChannelBinding`]), authorization identities and mandatory extensions are rejected
    /// as [`AuthError::Malformed`].
    pub fn handle_client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, ScramState::Initial) {
            self.state = ScramState::Done;
            return Err(malformed("unexpected client-first-message"));
        }
        self.state = ScramState::Done;

        // gs2-header = gs2-cbind-flag "," [authzid] ","
        let (cbind, rest) =
            split_once(data, b',').ok_or_else(|| malformed("missing GS2 header"))?;
        // As PostgreSQL checks the flag against the mechanism the client chose.
        match (cbind, &self.cb) {
            (b"n", ChannelBinding::NotOffered | ChannelBinding::Declined)
            | (b"y", ChannelBinding::NotOffered) => {}
            (b"n" | b"y", ChannelBinding::TlsServerEndPoint(_)) => {
                return Err(malformed(
                    "the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not \
                     include channel binding data",
                ))
            }
            (b"y", ChannelBinding::Declined) => {
                return Err(malformed(
                    "channel binding negotiation error: the client supports SCRAM channel \
                     binding but thinks the server does not; this server does",
                ))
            }
            (b"p=tls-server-end-point", ChannelBinding::TlsServerEndPoint(_)) => {}
            ([b'p', b'=', ..], ChannelBinding::TlsServerEndPoint(_)) => {
                return Err(malformed("unsupported SCRAM channel-binding type"))
            }
            ([b'p', b'=', ..], ChannelBinding::Declined) => {
                return Err(malformed(
                    "the client selected SCRAM-SHA-256 without channel binding, but the SCRAM \
                     message includes channel binding data",
                ))
            }
            ([b'p', b'=', ..], ChannelBinding::NotOffered) => {
                return Err(malformed(
                    "client requires channel binding, which is not supported",
                ))
            }
            _ => return Err(malformed("invalid GS2 channel-binding flag")),
        }
        let (authzid, bare) =
            split_once(rest, b',').ok_or_else(|| malformed("incomplete GS2 header"))?;
        if !authzid.is_empty() {
            return Err(malformed("authorization identity is not supported"));
        }
        let gs2_header = data[..data.len() - bare.len()].to_vec();

        // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        let mut parts = bare.split(|&b| b == b',');
        let first = parts.next();
        if first.and_then(attr).is_some_and(|(n, _)| n == b'm') {
            return Err(malformed("mandatory SCRAM extensions are not supported"));
        }
        expect_attr(first, b'n', "username")?;
        let client_nonce = expect_attr(parts.next(), b'r', "nonce")?;
        if client_nonce.is_empty() || !client_nonce.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
            return Err(malformed("client nonce must be non-empty printable ASCII"));
        }
        // Optional extensions are ignored, but must be well-formed attributes.
        if parts.any(|p| attr(p).is_none()) {
            return Err(malformed("invalid attribute in client-first-message"));
        }

        let mut nonce = client_nonce.to_vec();
        nonce.extend_from_slice(self.server_nonce.as_bytes());
        let mut server_first = b"r=".to_vec();
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(
            format!(
                ",s={},i={}",
                B64.encode(&self.verifier.salt),
                self.verifier.iterations
            )
            .as_bytes(),
        );
        self.state = ScramState::SentFirst {
            gs2_header,
            client_first_bare: bare.to_vec(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Handles `SASLResponse` data (client-final-message) and verifies the
    /// client proof. On success returns the server-final-message (`v=...`) to
    /// send in `AuthenticationSASLFinal`.
    pub fn handle_client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let ScramState::SentFirst {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, ScramState::Done)
        else {
            return Err(malformed("unexpected client-final-message"));
        };

        // client-final-message = channel-binding "," nonce ["," extensions] "," proof
        let comma = data
            .iter()
            .rposition(|&b| b == b',')
            .ok_or_else(|| malformed("client-final-message is missing the proof"))?;
        let (without_proof, proof_part) = (&data[..comma], &data[comma + 1..]);
        let proof_b64 = expect_attr(Some(proof_part), b'p', "proof")?;

        let mut parts = without_proof.split(|&b| b == b',');
        let cbind = expect_attr(parts.next(), b'c', "channel-binding")?;
        let mut expected = gs2_header;
        if let ChannelBinding::TlsServerEndPoint(data) = &self.cb {
            expected.extend_from_slice(data);
        }
        match B64.decode(cbind) {
            Ok(cb) if cb == expected => {}
            _ if matches!(self.cb, ChannelBinding::TlsServerEndPoint(_)) => {
                return Err(malformed(
                    "SCRAM channel binding check failed (the client saw another server \
                     certificate)",
                ))
            }
            _ => return Err(malformed("channel-binding data does not match GS2 header")),
        }
        let client_nonce = expect_attr(parts.next(), b'r', "nonce")?;
        if client_nonce != nonce.as_slice() {
            return Err(malformed("nonce does not match"));
        }
        if parts.any(|p| attr(p).is_none()) {
            return Err(malformed("invalid attribute in client-final-message"));
        }
        let proof: [u8; 32] = B64
            .decode(proof_b64)
            .ok()
            .and_then(|p| p.as_slice().try_into().ok())
            .ok_or_else(|| malformed("client proof is not 32 bytes of base64"))?;

        // AuthMessage = client-first-message-bare "," server-first-message ","
        //               client-final-message-without-proof
        let auth_message: [&[u8]; 5] =
            [&client_first_bare, b",", &server_first, b",", without_proof];
        let client_signature = hmac(&self.verifier.stored_key, &auth_message);
        let mut client_key = proof;
        client_key
            .iter_mut()
            .zip(client_signature.iter())
            .for_each(|(k, s)| *k ^= s);
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        if !ct_eq(&stored_key, &self.verifier.stored_key) {
            return Err(AuthError::WrongPassword);
        }
        self.client_key = Some(client_key);
        let server_signature = hmac(&self.verifier.server_key, &auth_message);
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// What logs in to a server by SCRAM-SHA-256 without the password: the ClientKey and
/// ServerKey, valid for the salt and iteration count they were derived with (a server whose
/// verifier has others cannot be answered).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramKeys(i={}, <secret>)", self.iterations)
    }
}

/// The client half of SCRAM-SHA-256 with [`ScramKeys`] instead of a password. `gs2_header`
/// is the channel-binding flag the caller chose ("n,,", "y,," or
/// "p=tls-server-end-point,,") and `cb_data` the binding data that goes with it.
pub struct ScramKeyClient {
    keys: ScramKeys,
    gs2_header: Vec<u8>,
    cb_data: Vec<u8>,
    client_first_bare: String,
    /// The AuthMessage, once the server's first message came.
    auth_message: Option<Vec<u8>>,
}

impl ScramKeyClient {
    pub fn new(keys: ScramKeys, gs2_header: &[u8], cb_data: Vec<u8>) -> Self {
        let mut raw = [0u8; SERVER_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw);
        ScramKeyClient {
            keys,
            gs2_header: gs2_header.to_vec(),
            cb_data,
            client_first_bare: format!("n=,r={}", B64.encode(raw)),
            auth_message: None,
        }
    }

    /// The client-first-message (SASLInitialResponse data).
    pub fn client_first(&self) -> Vec<u8> {
        let mut m = self.gs2_header.clone();
        m.extend_from_slice(self.client_first_bare.as_bytes());
        m
    }

    /// Answer the server-first-message (AuthenticationSASLContinue data) with the
    /// client-final-message. A salt or iteration count other than the keys' means the
    /// server's verifier is not the one the keys came from.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, AuthError> {
        let mut parts = server_first.split(|&b| b == b',');
        let nonce = expect_attr(parts.next(), b'r', "nonce")?;
        let salt = expect_attr(parts.next(), b's', "salt")?;
        let iterations = expect_attr(parts.next(), b'i', "iterations")?;
        let client_nonce = &self.client_first_bare.as_bytes()["n=,r=".len()..];
        if !nonce.starts_with(client_nonce) || nonce.len() == client_nonce.len() {
            return Err(malformed("the server's nonce does not extend the client's"));
        }
        let same_salt = B64.decode(salt).is_ok_and(|s| s == self.keys.salt);
        let same_iterations = std::str::from_utf8(iterations)
            .ok()
            .and_then(|i| i.parse::<u32>().ok())
            == Some(self.keys.iterations);
        if !same_salt || !same_iterations {
            return Err(AuthError::WrongPassword);
        }
        let mut cbind = self.gs2_header.clone();
        cbind.extend_from_slice(&self.cb_data);
        let mut without_proof = b"c=".to_vec();
        without_proof.extend_from_slice(B64.encode(cbind).as_bytes());
        without_proof.extend_from_slice(b",r=");
        without_proof.extend_from_slice(nonce);
        let mut auth_message = self.client_first_bare.as_bytes().to_vec();
        auth_message.push(b',');
        auth_message.extend_from_slice(server_first);
        auth_message.push(b',');
        auth_message.extend_from_slice(&without_proof);
        let stored_key: [u8; 32] = Sha256::digest(self.keys.client_key).into();
        let signature = hmac(&stored_key, &[&auth_message]);
        let mut proof = self.keys.client_key;
        proof.iter_mut().zip(signature).for_each(|(p, s)| *p ^= s);
        self.auth_message = Some(auth_message);
        without_proof.extend_from_slice(b",p=");
        without_proof.extend_from_slice(B64.encode(proof).as_bytes());
        Ok(without_proof)
    }

    /// Check the server-final-message (AuthenticationSASLFinal data): the server proves it
    /// knows the ServerKey.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), AuthError> {
        let auth_message = self
            .auth_message
            .as_ref()
            .ok_or_else(|| malformed("server-final-message before server-first-message"))?;
        let v = expect_attr(server_final.split(|&b| b == b',').next(), b'v', "verifier")?;
        let expected = hmac(&self.keys.server_key, &[auth_message]);
        match B64.decode(v) {
            Ok(sig) if ct_eq(&sig, &expected) => Ok(()),
            _ => Err(malformed("the server's signature does not match")),
        }
    }
}

/// `split_once` for byte slices.
fn split_once(data: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = data.iter().position(|&b| b == sep)?;
    Some((&data[..i], &data[i + 1..]))
}

/// Generates the random 4-byte salt to send in `AuthenticationMD5Password`.
pub fn md5_salt() -> [u8; 4] {
    let mut salt = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
}

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns PostgreSQL's stored MD5 hash for a role: `"md5" + hex(md5(password || user))`.
pub fn md5_stored_hash(user: &str, password: &str) -> String {
    format!("md5{}", md5_hex(&[password.as_bytes(), user.as_bytes()]))
}

/// Computes the expected `PasswordMessage` payload (without NUL terminator)
/// for an MD5 challenge, from a stored hash `"md5<32 hex>"`:
/// `"md5" + hex(md5(<32 hex> || salt))`.
///
/// Usable on the backend side when only the stored hash is known. Returns
/// `None` if `stored_hash` is not of the form `md5` followed by 32 hex digits
/// (hex digits are accepted in either case).
pub fn md5_response_from_stored(stored_hash: &str, salt: [u8; 4]) -> Option<String> {
    let hex = stored_hash.strip_prefix("md5")?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!("md5{}", md5_hex(&[hex.as_bytes(), &salt])))
}

/// Verifies a client's MD5 `PasswordMessage` payload (`response`, which may
/// include the trailing NUL) against a stored hash `"md5<hex(md5(password || user))>"`
/// and the `salt` that was sent. For a plaintext password, pass
/// [`md5_stored_hash(user, password)`](md5_stored_hash). The comparison is
/// constant-time; a malformed stored hash never verifies.
pub fn verify_md5_response(stored_hash: &str, salt: [u8; 4], response: &[u8]) -> bool {
    let Some(expected) = md5_response_from_stored(stored_hash, salt) else {
        return false;
    };
    let response = response.strip_suffix(b"\0").unwrap_or(response);
    ct_eq(expected.as_bytes(), response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use rand::{Rng, SeedableRng};

    fn exchange(stored: &str, password: &str, cb: ChannelBinding) -> Result<(), AuthError> {
        exchange_offered(stored, password, cb, super::ChannelBinding::NotOffered)
    }

    /// An exchange where the server offered and the client chose `offered`.
    fn exchange_offered(
        stored: &str,
        password: &str,
        cb: ChannelBinding,
        offered: super::ChannelBinding,
    ) -> Result<(), AuthError> {
        let mut server =
            ScramServer::new(ScramVerifier::from_password(stored)).with_channel_binding(offered);
        let mut client = ScramSha256::new(password.as_bytes(), cb);
        let server_first = server.handle_client_first(client.message())?;
        client
            .update(&server_first)
            .expect("client accepts server-first");
        let server_final = server.handle_client_final(client.message())?;
        client
            .finish(&server_final)
            .expect("client verifies server signature");
        Ok(())
    }

    /// The keys a verified password login reveals log in to another server of the same
    /// verifier (the proxy's SCRAM pass-through), with and without channel binding; a
    /// server with another salt, a wrong key or a forged server signature fail.
    #[test]
    fn keys_from_a_client_login_log_in_elsewhere() {
        use super::ChannelBinding as Offered;
        let verifier = ScramVerifier::from_password("pw");
        let mut first = ScramServer::new(verifier.clone());
        let mut client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
        let sf = first.handle_client_first(client.message()).unwrap();
        client.update(&sf).unwrap();
        assert!(first.client_keys().is_none(), "no keys before the proof");
        first.handle_client_final(client.message()).unwrap();
        let keys = first.client_keys().expect("keys after a verified proof");
        let login = |keys: ScramKeys, verifier: &ScramVerifier, cb: Offered| {
            let (gs2, data): (&[u8], Vec<u8>) = match &cb {
                Offered::TlsServerEndPoint(d) => (b"p=tls-server-end-point,,", d.clone()),
                _ => (b"n,,", Vec::new()),
            };
            let mut server = ScramServer::new(verifier.clone()).with_channel_binding(cb);
            let mut c = ScramKeyClient::new(keys, gs2, data);
            let sf = server.handle_client_first(&c.client_first())?;
            let fin = c.client_final(&sf)?;
            let sfin = server.handle_client_final(&fin)?;
            c.verify_server_final(&sfin)?;
            Ok::<_, AuthError>(sfin)
        };
        login(keys.clone(), &verifier, Offered::NotOffered).unwrap();
        login(
            keys.clone(),
            &verifier,
            Offered::TlsServerEndPoint(vec![9; 32]),
        )
        .unwrap();
        let other = ScramVerifier::from_password("pw");
        assert!(matches!(
            login(keys.clone(), &other, Offered::NotOffered),
            Err(AuthError::WrongPassword)
        ));
        let mut bad = keys.clone();
        bad.client_key[0] ^= 1;
        assert!(matches!(
            login(bad, &verifier, Offered::NotOffered),
            Err(AuthError::WrongPassword)
        ));
        // A server that does not know the ServerKey cannot pass itself off.
        let mut c = ScramKeyClient::new(keys, b"n,,", Vec::new());
        let mut server = ScramServer::new(verifier);
        let sf = server.handle_client_first(&c.client_first()).unwrap();
        let fin = c.client_final(&sf).unwrap();
        server.handle_client_final(&fin).unwrap();
        assert!(c.verify_server_final(b"v=AAAA").is_err());
    }

    #[test]
    fn full_exchange_right_password() {
        exchange("s3cret", "s3cret", ChannelBinding::unsupported()).unwrap();
        // "y,," header: client supports channel binding, server did not advertise it.
        exchange("s3cret", "s3cret", ChannelBinding::unrequested()).unwrap();
        exchange("pässwörd ☃", "pässwörd ☃", ChannelBinding::unsupported()).unwrap();
        exchange("", "", ChannelBinding::unsupported()).unwrap();
    }

    #[test]
    fn channel_binding_must_fit_what_was_offered_and_chosen() {
        use super::ChannelBinding as Offered;
        let end_point = vec![7u8; 32];
        let bound = || ChannelBinding::tls_server_end_point(end_point.clone());
        let plus = || Offered::TlsServerEndPoint(end_point.clone());
        exchange_offered("pw", "pw", bound(), plus()).unwrap();
        exchange_offered("pw", "pw", ChannelBinding::unsupported(), Offered::Declined).unwrap();
        // Another certificate's end point on the client's side (a man in the middle).
        let other = ChannelBinding::tls_server_end_point(vec![8u8; 32]);
        let r = exchange_offered("pw", "pw", other, plus());
        assert!(
            matches!(&r, Err(AuthError::Malformed(m)) if m.contains("channel binding check")),
            "{r:?}"
        );
        // "y": the client thinks the server offered no binding, but it did (a downgrade).
        let r = exchange_offered("pw", "pw", ChannelBinding::unrequested(), Offered::Declined);
        assert!(
            matches!(&r, Err(AuthError::Malformed(m)) if m.contains("negotiation")),
            "{r:?}"
        );
        // PLUS chosen without binding data, or binding data with the plain mechanism.
        for (cb, offered) in [
            (ChannelBinding::unsupported(), plus()),
            (ChannelBinding::unrequested(), plus()),
            (bound(), Offered::Declined),
            (bound(), Offered::NotOffered),
        ] {
            let r = exchange_offered("pw", "pw", cb, offered.clone());
            assert!(
                matches!(r, Err(AuthError::Malformed(_))),
                "{offered:?}: {r:?}"
            );
        }
        let mut s =
            ScramServer::new(ScramVerifier::from_password("pw")).with_channel_binding(plus());
        let r = s.handle_client_first(b"p=tls-unique,,n=,r=abc");
        assert!(matches!(r, Err(AuthError::Malformed(_))), "{r:?}");
        // A wrong password over a bound exchange is still a wrong password.
        let r = exchange_offered("pw", "px", bound(), plus());
        assert!(matches!(r, Err(AuthError::WrongPassword)), "{r:?}");
    }

    #[test]
    fn full_exchange_wrong_password() {
        let r = exchange("s3cret", "S3cret", ChannelBinding::unsupported());
        assert!(matches!(r, Err(AuthError::WrongPassword)), "{r:?}");
    }

    #[test]
    fn parses_postgres_protocol_verifier() {
        let text = postgres_protocol::password::scram_sha_256(b"hunter2");
        let v = ScramVerifier::parse(&text).unwrap();
        assert_eq!(v.iterations, 4096);
        assert_eq!(v.salt.len(), 16);
        assert_eq!(v.to_text(), text);
    }

    #[test]
    fn rejects_bad_verifiers() {
        let good = ScramVerifier::from_password("x").to_text();
        assert!(ScramVerifier::parse(&good).is_ok());
        let (_, tail) = good.split_once(':').unwrap();
        for bad in [
            String::new(),
            "SCRAM-SHA-256$".into(),
            "md5abc".into(),
            format!("SCRAM-SHA-256$0:{tail}"),
            format!("SCRAM-SHA-256$4294967295:{tail}"),
            format!("SCRAM-SHA-256$10000001:{tail}"),
            format!("SCRAM-SHA-256$-1:{tail}"),
            "SCRAM-SHA-256$4096:!!!$AAAA:AAAA".into(),
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA".into(),
            format!("{good}$"),
        ] {
            assert!(ScramVerifier::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc7677_test_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::derive(b"pencil", salt, 4096);
        let mut server = ScramServer::with_nonce(verifier, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
        let first = server
            .handle_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        assert_eq!(
            first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = server
            .handle_client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(fin, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn protocol_violations_are_malformed() {
        let v = || ScramVerifier::from_password("pw");
        for first in [
            &b"p=tls-server-end-point,,n=,r=abc"[..],
            b"n,a=admin,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
            b"n,,r=abc,n=",
            b"n,,n=,r=",
            b"n,,n=,r=a,b",
            b"x,,n=,r=abc",
            b"n,,n=,r=ab\xffc",
            b"n,n=,r=abc",
            b"",
        ] {
            let r = ScramServer::new(v()).handle_client_first(first);
            assert!(matches!(r, Err(AuthError::Malformed(_))), "{first:?}");
        }
        // Non-UTF-8 username is ignored.
        assert!(ScramServer::new(v())
            .handle_client_first(b"y,,n=\xff\xfe,r=abc,x=1")
            .is_ok());

        let mut s = ScramServer::with_nonce(v(), "SRV".into());
        assert!(s.handle_client_final(b"c=biws,r=abcSRV,p=").is_err()); // out of order
        for fin in [
            &b"c=eSws,r=abcSRV,p=AAAA"[..], // wrong gs2 header
            b"c=biws,r=abcXXX,p=AAAA",
            b"r=abcSRV,c=biws,p=AAAA",
            b"c=biws,r=abcSRV,p=AAAA",
            b"c=biws,r=abcSRV",
            b"c=biws,r=abcSRV,p=!!!!",
        ] {
            let mut s = ScramServer::with_nonce(v(), "SRV".into());
            s.handle_client_first(b"n,,n=,r=abc").unwrap();
            let r = s.handle_client_final(fin);
            assert!(matches!(r, Err(AuthError::Malformed(_))), "{fin:?}");
            // The exchange is over after an error.
            assert!(s.handle_client_final(fin).is_err());
        }
        // A well-formed proof that is wrong.
        let mut s = ScramServer::with_nonce(v(), "SRV".into());
        s.handle_client_first(b"n,,n=,r=abc").unwrap();
        let fin = format!("c=biws,r=abcSRV,p={}", B64.encode([0u8; 32]));
        let r = s.handle_client_final(fin.as_bytes());
        assert!(matches!(r, Err(AuthError::WrongPassword)));
    }

    #[test]
    fn md5_round_trip() {
        let stored = md5_stored_hash("alice", "wonderland");
        assert_eq!(stored.len(), 35);
        for _ in 0..20 {
            let salt = md5_salt();
            let resp = postgres_protocol::authentication::md5_hash(b"alice", b"wonderland", salt);
            assert!(verify_md5_response(&stored, salt, resp.as_bytes()));
            let mut with_nul = resp.clone().into_bytes();
            with_nul.push(0);
            assert!(verify_md5_response(&stored, salt, &with_nul));
            assert!(verify_md5_response(
                &stored.to_uppercase().replacen("MD5", "md5", 1),
                salt,
                &with_nul
            ));
            let wrong = postgres_protocol::authentication::md5_hash(b"alice", b"Wonderland", salt);
            assert!(!verify_md5_response(&stored, salt, wrong.as_bytes()));
            assert!(!verify_md5_response(
                &stored,
                [salt[0] ^ 1, salt[1], salt[2], salt[3]],
                resp.as_bytes()
            ));
            assert_eq!(md5_response_from_stored(&stored, salt), Some(resp));
        }
        assert!(!verify_md5_response("wonderland", [0; 4], b"md5"));
        assert!(!verify_md5_response("md5zz", [0; 4], b""));
    }

    #[test]
    fn fuzz_handlers_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let verifier = ScramVerifier::from_password("pw");
        let alphabet = b"nyrcpms=,abcAZ09+/\x00\xff";
        let seeds: [&[u8]; 3] = [b"n,,n=,r=abc", b"y,,n=u,r=x,e=1", b"c=biws,r=abcSRV,p=AAAA"];
        for i in 0..4000 {
            let len = rng.gen_range(0..64);
            let mut input: Vec<u8> = if i % 2 == 0 {
                (0..len)
                    .map(|_| {
                        if rng.gen_bool(0.5) {
                            rng.gen()
                        } else {
                            alphabet[rng.gen_range(0..alphabet.len())]
                        }
                    })
                    .collect()
            } else {
                seeds[rng.gen_range(0..seeds.len())].to_vec()
            };
            // Garble: flip, insert and truncate.
            for _ in 0..rng.gen_range(0..4) {
                if input.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..input.len());
                match rng.gen_range(0..3) {
                    0 => input[at] = alphabet[rng.gen_range(0..alphabet.len())],
                    1 => input.insert(at, b','),
                    _ => input.truncate(at),
                }
            }
            let _ = ScramServer::new(verifier.clone()).handle_client_first(&input);
            let mut s = ScramServer::with_nonce(verifier.clone(), "SRV".into());
            s.handle_client_first(b"n,,n=,r=abc").unwrap();
            let _ = s.handle_client_final(&input);
            let _ = s.handle_client_final(&input);
            let _ = verify_md5_response(&String::from_utf8_lossy(&input), [1, 2, 3, 4], &input);
            let _ = ScramVerifier::parse(&String::from_utf8_lossy(&input));
        }
    }
}
