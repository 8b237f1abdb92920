//! I/O-free MySQL authentication math: the `mysql_native_password` and
//! `caching_sha2_password` scrambles, computed as a client and checked as a server.
//!
//! - `mysql_native_password`: the client sends
//!   `SHA1(pw) XOR SHA1(scramble || SHA1(SHA1(pw)))`; the server stores `SHA1(SHA1(pw))`
//!   (`mysql.user.authentication_string` is `*` + 40 upper-case hex digits), recovers
//!   `SHA1(pw)` from the response and checks that its SHA1 is the stored value.
//! - `caching_sha2_password` fast path: the client sends
//!   `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || scramble)`; a server that has
//!   `SHA256(SHA256(pw))` cached recovers `SHA256(pw)` and compares its hash. Without the cache
//!   entry the server asks for the full password (AuthMoreData 0x04), which the client sends
//!   in clear over TLS, or without TLS RSA-encrypted: the client asks for the server's public
//!   key (0x02), the server sends it as PEM, and the client sends
//!   `RSA-OAEP-SHA1(public key, (pw || NUL) XOR scramble)`, the scramble repeated as needed
//!   ([`RsaKeys`]).
//!
//! The scramble is the server's 20-byte nonce without the trailing NUL that the handshake
//! and AuthSwitchRequest carry (see [`scramble_from_auth_data`]). Comparisons of secrets are
//! constant-time. Nothing here logs or formats a password or a password-equivalent hash.

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Length of the scramble servers send.
pub const SCRAMBLE_LEN: usize = 20;

/// The scramble inside auth plugin data: without the NUL that terminates it on the wire.
pub fn scramble_from_auth_data(data: &[u8]) -> &[u8] {
    data.strip_suffix(&[0]).unwrap_or(data)
}

/// Constant-time (for equal lengths) byte-slice comparison.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn xor<const N: usize>(a: [u8; N], b: [u8; N]) -> [u8; N] {
    let mut out = a;
    out.iter_mut().zip(b).for_each(|(o, x)| *o ^= x);
    out
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    use sha1::Digest as _;
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

// ---------------------------------------------------------------- mysql_native_password

/// `mysql_native_password` client response for `password` and `scramble`. An empty password
/// is sent as an empty response instead; this function does not decide that.
pub fn native_password_scramble(password: &[u8], scramble: &[u8]) -> [u8; 20] {
    let stage1 = sha1(&[password]);
    let stage2 = sha1(&[&stage1]);
    xor(stage1, sha1(&[scramble, &stage2]))
}

/// `SHA1(password)`: what answers a `mysql_native_password` challenge (see
/// [`native_scramble_from_stage1`]) without the password itself.
pub fn native_stage1(password: &[u8]) -> [u8; 20] {
    sha1(&[password])
}

/// The stored hash `SHA1(SHA1(password))` of a `SHA1(password)`.
pub fn native_hash_of_stage1(stage1: &[u8; 20]) -> [u8; 20] {
    sha1(&[stage1])
}

/// The `mysql_native_password` response from `SHA1(password)` (as
/// [`native_password_scramble`] computes it from the password).
pub fn native_scramble_from_stage1(stage1: &[u8; 20], scramble: &[u8]) -> [u8; 20] {
    let stage2 = sha1(&[stage1]);
    xor(*stage1, sha1(&[scramble, &stage2]))
}

/// A stored `mysql_native_password` hash: `SHA1(SHA1(password))`.
#[derive(Clone, PartialEq, Eq)]
pub struct NativePasswordHash(pub [u8; 20]);

impl std::fmt::Debug for NativePasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Password-equivalent for this plugin: keep it out of logs.
        f.write_str("NativePasswordHash(..)")
    }
}

/// Why a stored hash string is not usable. Never echoes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoredHashError {
    #[error("mysql_native_password hash must be '*' followed by 40 hex digits")]
    NativeFormat,
}

impl NativePasswordHash {
    pub fn from_password(password: &[u8]) -> Self {
        NativePasswordHash(sha1(&[&sha1(&[password])]))
    }

    /// Parses `mysql.user.authentication_string` for this plugin: `*` and 40 hex digits
    /// (either case). An empty string (no password) is not a hash: the caller accepts only an
    /// empty response for such accounts.
    pub fn parse(text: &str) -> Result<Self, StoredHashError> {
        let hex = text
            .strip_prefix('*')
            .filter(|h| h.len() == 40)
            .ok_or(StoredHashError::NativeFormat)?;
        let mut out = [0u8; 20];
        for (o, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            match (
                pair.first().and_then(|&c| digit(c)),
                pair.get(1).and_then(|&c| digit(c)),
            ) {
                (Some(hi), Some(lo)) => *o = hi << 4 | lo,
                _ => return Err(StoredHashError::NativeFormat),
            }
        }
        Ok(NativePasswordHash(out))
    }

    /// The `*HEX` form (upper case), as MySQL stores it.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(41);
        s.push('*');
        for b in self.0 {
            s.push_str(&format!("{b:02X}"));
        }
        s
    }

    /// Server check of a client's response against this stored hash. Only a 20-byte response
    /// can match.
    pub fn verify(&self, scramble: &[u8], response: &[u8]) -> bool {
        self.stage1(scramble, response).is_some()
    }

    /// The `SHA1(password)` a client's response reveals, if the response is right.
    pub fn stage1(&self, scramble: &[u8], response: &[u8]) -> Option<[u8; 20]> {
        let response = <[u8; 20]>::try_from(response).ok()?;
        let stage1 = xor(response, sha1(&[scramble, &self.0]));
        ct_eq(&sha1(&[&stage1]), &self.0).then_some(stage1)
    }

    /// Check a password sent in clear (full authentication over TLS) against this hash.
    pub fn verify_clear(&self, password: &[u8]) -> bool {
        ct_eq(&Self::from_password(password).0, &self.0)
    }
}

// ---------------------------------------------------------------- caching_sha2_password

/// `caching_sha2_password` fast-path client response for `password` and `scramble`. An empty
/// password is sent as an empty response instead.
pub fn caching_sha2_scramble(password: &[u8], scramble: &[u8]) -> [u8; 32] {
    let stage1 = sha256(&[password]);
    let stage2 = sha256(&[&stage1]);
    xor(stage1, sha256(&[&stage2, scramble]))
}

/// What a `caching_sha2_password` server keeps in its fast-auth cache: `SHA256(SHA256(pw))`.
#[derive(Clone, PartialEq, Eq)]
pub struct CachingSha2Digest(pub [u8; 32]);

impl std::fmt::Debug for CachingSha2Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachingSha2Digest(..)")
    }
}

impl CachingSha2Digest {
    pub fn from_password(password: &[u8]) -> Self {
        CachingSha2Digest(sha256(&[&sha256(&[password])]))
    }

    /// Server check of a fast-path response. Only a 32-byte response can match.
    pub fn verify(&self, scramble: &[u8], response: &[u8]) -> bool {
        let Ok(response) = <[u8; 32]>::try_from(response) else {
            return false;
        };
        let stage1 = xor(response, sha256(&[&self.0, scramble]));
        ct_eq(&sha256(&[&stage1]), &self.0)
    }
}

/// Server check of a fast-path response given the plaintext password.
pub fn verify_caching_sha2(password: &[u8], scramble: &[u8], response: &[u8]) -> bool {
    CachingSha2Digest::from_password(password).verify(scramble, response)
}

/// Server check of a `mysql_native_password` response given the plaintext password.
pub fn verify_native_password(password: &[u8], scramble: &[u8], response: &[u8]) -> bool {
    NativePasswordHash::from_password(password).verify(scramble, response)
}

/// The password in a full-auth exchange (`mysql_clear_password`, or `caching_sha2_password`
/// over TLS after AuthMoreData 0x04): the client sends it NUL-terminated.
pub fn clear_password(data: &[u8]) -> &[u8] {
    scramble_from_auth_data(data)
}

// ---------------------------------------------------------------- RSA key exchange

/// Bits of a generated key (what MySQL servers generate for caching_sha2_password).
pub const RSA_GENERATED_BITS: usize = 2048;

/// The proxy's RSA key pair for `caching_sha2_password` full authentication without TLS.
/// Decryption is by RustCrypto's `rsa` 0.10 (constant-time big integers, blinded).
pub struct RsaKeys {
    private: rsa::PrivateKey,
    public_pem: Vec<u8>,
}

impl std::fmt::Debug for RsaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKeys({} bits)", self.bits())
    }
}

impl RsaKeys {
    /// A fresh key of [`RSA_GENERATED_BITS`] from the operating system's random source.
    pub fn generate() -> Result<RsaKeys, String> {
        let mut rng = SysRandom;
        let private = rsa::PrivateKey::new(&mut rng, RSA_GENERATED_BITS)
            .map_err(|e| format!("generating an RSA key: {e}"))?;
        Self::from_private(private)
    }

    /// A key from PEM text: PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey` writes) or
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`, MySQL's `private_key.pem`).
    pub fn from_pem(text: &str) -> Result<RsaKeys, String> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let private = if text.contains("BEGIN RSA PRIVATE KEY") {
            rsa::PrivateKey::from_pkcs1_pem(text).map_err(|e| format!("PKCS#1 RSA key: {e}"))?
        } else {
            rsa::PrivateKey::from_pkcs8_pem(text).map_err(|e| format!("PKCS#8 RSA key: {e}"))?
        };
        Self::from_private(private)
    }

    fn from_private(private: rsa::PrivateKey) -> Result<RsaKeys, String> {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| format!("encoding the RSA public key: {e}"))?
            .into_bytes();
        Ok(RsaKeys {
            private,
            public_pem,
        })
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.size() * 8
    }

    /// Modulus size in bytes: the length of every ciphertext.
    pub fn size(&self) -> usize {
        use rsa::traits::PublicKeyParts;
        self.private.size()
    }

    /// The public key as clients want it: PEM SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`).
    pub fn public_pem(&self) -> &[u8] {
        &self.public_pem
    }

    /// The password in a client's RSA-encrypted full-auth response, or `None` when it does
    /// not decrypt (wrong length, wrong key, bad padding).
    pub fn decrypt_password(&self, scramble: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        if ciphertext.len() != self.size() || scramble.is_empty() {
            return None;
        }
        let mut plain = self.private.oaep_decrypt::<sha1::Sha1>(ciphertext).ok()?;
        for (i, b) in plain.iter_mut().enumerate() {
            *b ^= scramble[i % scramble.len()];
        }
        if plain.last() == Some(&0) {
            plain.pop();
        }
        Some(plain)
    }

    /// What a client sends for `password` with this key (see [`rsa_encrypt_password`]).
    pub fn encrypt_password(&self, scramble: &[u8], password: &[u8]) -> Vec<u8> {
        rsa_encrypt_password(self.public_pem(), scramble, password)
            .expect("a password shorter than the key encrypts")
    }
}

/// The client side of the key exchange: `password` (NUL-terminated) XOR `scramble` (repeated),
/// RSA-OAEP-SHA1-encrypted with the server's public key in PEM (SubjectPublicKeyInfo, `BEGIN
/// PUBLIC KEY`, as MySQL sends it, or PKCS#1 `BEGIN RSA PUBLIC KEY`).
pub fn rsa_encrypt_password(
    public_pem: &[u8],
    scramble: &[u8],
    password: &[u8],
) -> Result<Vec<u8>, String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    let text = std::str::from_utf8(public_pem).map_err(|_| "public key is not PEM text")?;
    // A server's key packet may carry a trailing NUL.
    let text = text.trim_end_matches('\0');
    let key = if text.contains("BEGIN RSA PUBLIC KEY") {
        rsa::PublicKey::from_pkcs1_pem(text).map_err(|e| format!("RSA public key: {e}"))?
    } else {
        rsa::PublicKey::from_public_key_pem(text).map_err(|e| format!("RSA public key: {e}"))?
    };
    if scramble.is_empty() {
        return Err("no scramble".into());
    }
    let mut plain = password.to_vec();
    plain.push(0);
    for (i, b) in plain.iter_mut().enumerate() {
        *b ^= scramble[i % scramble.len()];
    }
    key.oaep_encrypt::<sha1::Sha1>(&plain)
        .map_err(|e| format!("RSA encryption of the password: {e}"))
}

/// The operating system's random source for key generation (`getrandom`, as `rand`'s
/// `OsRng` uses; the `rsa` crate takes its own `rand_core` version's traits).
struct SysRandom;

impl rsa::rand_core::TryRng for SysRandom {
    type Error = rand::Error;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, dst)
    }
}

impl rsa::rand_core::TryCryptoRng for SysRandom {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scramble 0x01..=0x14 used by the vectors below.
    fn scramble() -> Vec<u8> {
        (1..=20).collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Vectors computed independently with Python's hashlib:
    //   import hashlib; pw=b'secret'; s=bytes(range(1,21))
    //   s1=hashlib.sha1(pw).digest(); s2=hashlib.sha1(s1).digest()
    //   bytes(a^b for a,b in zip(s1, hashlib.sha1(s+s2).digest())).hex()
    //   '*'+s2.hex().upper()
    //   d1=hashlib.sha256(pw).digest(); d2=hashlib.sha256(d1).digest()
    //   bytes(a^b for a,b in zip(d1, hashlib.sha256(d2+s).digest())).hex(); d2.hex()
    const NATIVE_SECRET: &str = "b32bb3a583e1340c0a1108d58b1be49781ad8c2f";
    const NATIVE_SECRET_STORED: &str = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7";
    const SHA2_SECRET: &str = "746ebe205d56a0707acb3e796e834e0dd7b1d61743b26bd5202c7a623230c7c9";
    const SHA2_SECRET_STORED: &str =
        "3881219d087dd9c634373fd33dfa33a2cb6bfc6c520b64b8bb60ef2ceb534ae7";

    #[test]
    fn native_password_known_vector() {
        assert_eq!(
            native_password_scramble(b"secret", &scramble()).to_vec(),
            hex(NATIVE_SECRET)
        );
        assert_eq!(
            NativePasswordHash::from_password(b"secret").to_text(),
            NATIVE_SECRET_STORED
        );
        // MySQL's documented PASSWORD('password') value.
        assert_eq!(
            NativePasswordHash::from_password(b"password").to_text(),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
    }

    /// A right response reveals SHA1(password), which answers another challenge as the
    /// password would; a wrong one reveals nothing.
    #[test]
    fn native_stage1_from_a_response_answers_elsewhere() {
        let stored = NativePasswordHash::parse(NATIVE_SECRET_STORED).unwrap();
        let response = native_password_scramble(b"secret", &scramble());
        let stage1 = stored.stage1(&scramble(), &response).unwrap();
        assert_eq!(stage1, native_stage1(b"secret"));
        assert_eq!(native_hash_of_stage1(&stage1), stored.0);
        let other = [7u8; 20];
        assert_eq!(
            native_scramble_from_stage1(&stage1, &other),
            native_password_scramble(b"secret", &other)
        );
        let wrong = native_password_scramble(b"secreT", &scramble());
        assert_eq!(stored.stage1(&scramble(), &wrong), None);
        assert_eq!(stored.stage1(&scramble(), &response[..19]), None);
    }

    #[test]
    fn native_password_server_check() {
        let stored = NativePasswordHash::parse(NATIVE_SECRET_STORED).unwrap();
        assert_eq!(
            NativePasswordHash::parse(&NATIVE_SECRET_STORED.to_lowercase()).unwrap(),
            stored
        );
        let s = scramble();
        assert!(stored.verify(&s, &hex(NATIVE_SECRET)));
        assert!(verify_native_password(b"secret", &s, &hex(NATIVE_SECRET)));
        assert!(!stored.verify(&s, &native_password_scramble(b"Secret", &s)));
        assert!(!stored.verify(&[9; 20], &hex(NATIVE_SECRET)));
        assert!(!stored.verify(&s, &[]));
        assert!(!stored.verify(&s, &hex(NATIVE_SECRET)[..19]));
        let other = b"0123456789abcdefghij";
        assert!(stored.verify(other, &native_password_scramble(b"secret", other)));
    }

    #[test]
    fn native_hash_parse_refuses_bad_text_without_echoing_it() {
        for bad in [
            "",
            "*",
            "14E65567ABDB5135D0CFD9A70B3032C179A49EE7",
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE",
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EEG",
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7 ",
            "*é4E65567ABDB5135D0CFD9A70B3032C179A49EE",
        ] {
            let e = NativePasswordHash::parse(bad).unwrap_err();
            assert!(!e.to_string().contains("14E6"));
        }
        assert_eq!(
            format!("{:?}", NativePasswordHash::from_password(b"x")),
            "NativePasswordHash(..)"
        );
    }

    #[test]
    fn caching_sha2_known_vector_and_server_check() {
        let s = scramble();
        let resp = caching_sha2_scramble(b"secret", &s);
        assert_eq!(resp.to_vec(), hex(SHA2_SECRET));
        let cached = CachingSha2Digest::from_password(b"secret");
        assert_eq!(cached.0.to_vec(), hex(SHA2_SECRET_STORED));
        assert!(cached.verify(&s, &resp));
        assert!(verify_caching_sha2(b"secret", &s, &resp));
        assert!(!verify_caching_sha2(b"secreT", &s, &resp));
        assert!(!cached.verify(&s, &resp[..31]));
        assert!(!cached.verify(&[0; 20], &resp));
    }

    #[test]
    fn scramble_and_password_lose_their_nul() {
        let mut data = scramble();
        data.push(0);
        assert_eq!(scramble_from_auth_data(&data), &scramble()[..]);
        assert_eq!(scramble_from_auth_data(&scramble()), &scramble()[..]);
        assert_eq!(clear_password(b"pw\0"), b"pw");
    }

    #[test]
    fn rsa_exchange_round_trips_and_refuses_what_does_not_decrypt() {
        let keys = RsaKeys::generate().unwrap();
        assert_eq!(keys.bits(), RSA_GENERATED_BITS);
        let pem = std::str::from_utf8(keys.public_pem()).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        let s = scramble();
        let c = keys.encrypt_password(&s, b"a longer password than the scramble is");
        assert_eq!(c.len(), keys.size());
        assert_eq!(
            keys.decrypt_password(&s, &c).as_deref(),
            Some(&b"a longer password than the scramble is"[..])
        );
        // Another scramble gives another password; garbage and short input give none.
        assert_ne!(
            keys.decrypt_password(&[9; 20], &c).as_deref(),
            Some(&b"a longer password than the scramble is"[..])
        );
        assert_eq!(keys.decrypt_password(&s, &vec![7; keys.size()]), None);
        assert_eq!(keys.decrypt_password(&s, b"pw\0"), None);
        // The same key read back from PEM in both formats decrypts the same way.
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let pkcs8 = keys.private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let pkcs1 = keys.private.to_pkcs1_pem(LineEnding::LF).unwrap();
        for text in [pkcs8.as_str(), pkcs1.as_str()] {
            let again = RsaKeys::from_pem(text).unwrap();
            assert_eq!(again.public_pem(), keys.public_pem());
            assert_eq!(
                again.decrypt_password(&s, &c).as_deref(),
                Some(&b"a longer password than the scramble is"[..])
            );
        }
        assert!(RsaKeys::from_pem("not a key").is_err());
    }
}
