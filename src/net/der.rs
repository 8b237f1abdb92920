//! Just enough DER (X.690) to read two things of an X.509 certificate: its signature
//! algorithm (for channel binding, `channel_binding.rs`) and its subject's common name (for
//! client certificate logins). Definite lengths of up to four octets only, as DER has them;
//! anything else is no answer, never a panic.

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
/// `[0] EXPLICIT Version` at the start of a TBSCertificate.
const VERSION: u8 = 0xa0;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// One DER element: (tag, contents, the rest after it). Definite lengths of up to four
/// octets only, as DER has them.
pub fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &b| (l << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// One DER element that must have `tag`: (contents, the rest after it).
pub fn tagged(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = element(der)?;
    (t == tag).then_some((contents, rest))
}

/// A certificate's tbsCertificate and what follows it (the signature algorithm, the
/// signature): `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
/// signatureValue }`.
pub fn certificate(cert_der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (cert, _) = tagged(cert_der, SEQUENCE)?;
    tagged(cert, SEQUENCE)
}

/// The tbsCertificate's fields after the optional version: serialNumber, signature, issuer,
/// validity, subject, ... (each as tag and contents).
fn tbs_fields(cert_der: &[u8]) -> Option<impl Iterator<Item = (u8, &[u8])>> {
    let (tbs, _) = certificate(cert_der)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    Some(std::iter::from_fn(move || {
        let (tag, contents, next) = element(rest)?;
        rest = next;
        Some((tag, contents))
    }))
}

/// The first common name (CN) of a DER certificate's subject, as text; `None` if it has
/// none or the certificate cannot be read.
pub fn subject_common_name(cert_der: &[u8]) -> Option<String> {
    let mut fields = tbs_fields(cert_der)?;
    let (tag, _serial) = fields.next()?;
    if tag != INTEGER {
        return None;
    }
    // signature, issuer, validity, then the subject.
    let (tag, subject) = fields.nth(3)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (set, next) = tagged(rdns, SET)?;
        rdns = next;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (attr, next) = tagged(attrs, SEQUENCE)?;
            attrs = next;
            let (oid, value) = tagged(attr, OID)?;
            if oid != COMMON_NAME {
                continue;
            }
            let (tag, text, _) = element(value)?;
            return directory_string(tag, text);
        }
    }
    None
}

/// A DirectoryString's text: UTF8String, PrintableString, IA5String and TeletexString (read
/// as Latin-1) and BMPString (UTF-16).
fn directory_string(tag: u8, text: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 => std::str::from_utf8(text).ok().map(str::to_owned),
        0x14 => Some(text.iter().map(|&b| b as char).collect()),
        0x1e if text.len().is_multiple_of(2) => {
            let units = text.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, others: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["x.test".into()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in others {
            p.distinguished_name.push(t.clone(), *v);
        }
        if let Some(cn) = cn {
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_common_name_is_read() {
        assert_eq!(
            subject_common_name(&cert(Some("app_user"), &[])).as_deref(),
            Some("app_user")
        );
        let with_others = cert(
            Some("ünïcode user"),
            &[
                (rcgen::DnType::OrganizationName, "Org"),
                (rcgen::DnType::CountryName, "DE"),
            ],
        );
        assert_eq!(
            subject_common_name(&with_others).as_deref(),
            Some("ünïcode user")
        );
        assert_eq!(
            subject_common_name(&cert(None, &[(rcgen::DnType::OrganizationName, "O")])),
            None
        );
        assert_eq!(
            directory_string(0x1e, &[0, b'a', 0, b'b']).as_deref(),
            Some("ab")
        );
        assert_eq!(directory_string(0x14, &[0xe9]).as_deref(), Some("é"));
    }

    #[test]
    fn cut_or_garbled_certificates_have_no_name() {
        let good = cert(Some("u"), &[]);
        for cut in [0, 1, 2, 5, 20, good.len() / 2, good.len() - 1] {
            assert_eq!(subject_common_name(&good[..cut]), None, "cut at {cut}");
        }
        let mut bad = good.clone();
        for i in 0..bad.len() {
            bad[i] ^= 0xff;
            let _ = subject_common_name(&bad);
            bad[i] ^= 0xff;
        }
    }
}
