//! `tls-server-end-point` channel binding (RFC 5929 §4): the hash of the server's TLS
//! certificate, which SCRAM-SHA-256-PLUS mixes into the proof so that a login relayed through
//! a man in the middle (who has to present a certificate of its own) fails.
//!
//! The hash function is the one of the certificate's signature algorithm, except that MD5 and
//! SHA-1 are replaced by SHA-256. Certificates whose signature algorithm does not name one hash
//! (RSASSA-PSS, Ed25519, Ed448, anything unknown) have no end point here: PostgreSQL (through
//! OpenSSL) does not offer channel binding for them either.

use sha2::Digest;

/// The hash a certificate's end point is computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndPointHash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// Signature algorithm identifiers (the OID's content octets) and the end-point hash each
/// implies.
const ALGORITHMS: &[(&[u8], EndPointHash)] = &[
    // md5WithRSAEncryption, sha1WithRSAEncryption: SHA-256 instead.
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04],
        EndPointHash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05],
        EndPointHash::Sha256,
    ),
    // sha256/384/512/224WithRSAEncryption.
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        EndPointHash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        EndPointHash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        EndPointHash::Sha512,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0e],
        EndPointHash::Sha224,
    ),
    // ecdsa-with-SHA1: SHA-256 instead.
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],
        EndPointHash::Sha256,
    ),
    // ecdsa-with-SHA224/256/384/512.
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x01],
        EndPointHash::Sha224,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        EndPointHash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        EndPointHash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        EndPointHash::Sha512,
    ),
    // dsa-with-sha1: SHA-256 instead; dsa-with-sha224/256.
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03],
        EndPointHash::Sha256,
    ),
    (
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x01],
        EndPointHash::Sha224,
    ),
    (
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x02],
        EndPointHash::Sha256,
    ),
];

use super::der::{certificate, tagged, OID, SEQUENCE};

/// The end-point hash of a DER certificate (`Certificate ::= SEQUENCE { tbsCertificate,
/// signatureAlgorithm AlgorithmIdentifier, signatureValue }`), if its signature algorithm
/// names one.
pub fn end_point_hash(cert_der: &[u8]) -> Option<EndPointHash> {
    let (_tbs, rest) = certificate(cert_der)?;
    let (alg, _) = tagged(rest, SEQUENCE)?;
    let (oid, _) = tagged(alg, OID)?;
    ALGORITHMS
        .iter()
        .find(|(known, _)| *known == oid)
        .map(|&(_, h)| h)
}

/// The `tls-server-end-point` channel-binding data of a DER certificate, if it has one.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    Some(match end_point_hash(cert_der)? {
        EndPointHash::Sha224 => sha2::Sha224::digest(cert_der).to_vec(),
        EndPointHash::Sha256 => sha2::Sha256::digest(cert_der).to_vec(),
        EndPointHash::Sha384 => sha2::Sha384::digest(cert_der).to_vec(),
        EndPointHash::Sha512 => sha2::Sha512::digest(cert_der).to_vec(),
    })
}

/// The end point of the first certificate in a PEM file (the server's own, ahead of its
/// chain), if it has one.
pub fn of_pem_file(cert_path: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    let first = rustls::pki_types::CertificateDer::pem_file_iter(cert_path)
        .ok()?
        .next()?
        .ok()?;
    tls_server_end_point(&first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["db.test".into()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_hash_follows_the_signature_algorithm() {
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(end_point_hash(&p256), Some(EndPointHash::Sha256));
        assert_eq!(
            tls_server_end_point(&p256).unwrap(),
            sha2::Sha256::digest(&p256).to_vec()
        );
        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(end_point_hash(&p384), Some(EndPointHash::Sha384));
        assert_eq!(tls_server_end_point(&p384).unwrap().len(), 48);
        // Ed25519 names no hash: no channel binding, as with PostgreSQL.
        let ed = cert(&rcgen::PKCS_ED25519);
        assert_eq!(end_point_hash(&ed), None);
    }

    #[test]
    fn malformed_certificates_have_no_end_point() {
        let good = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        for cut in [0, 1, 2, 3, 4, 10, good.len() / 2, good.len() - 1] {
            // A cut certificate fails its outer length check.
            assert_eq!(end_point_hash(&good[..cut]), None, "cut at {cut}");
        }
        for bad in [
            &[0x30, 0x80][..],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x31, 0x00],
            &[0x30, 0x02, 0x30, 0x00],
        ] {
            assert_eq!(end_point_hash(bad), None, "{bad:?}");
        }
    }
}
