//! TLS from the proxy to a cluster's servers (`[[cluster]] tls`, libpq's `sslmode` words).
//!
//! [`ServerTlsConfig`] is built once per config generation from the cluster's settings (the
//! files are read then, so a reload picks up renewed certificates) and carried by the
//! protocols' backend targets; their logins ask for TLS in their own way (PostgreSQL's
//! SSLRequest, MySQL's CLIENT_SSL) and call [`ServerTlsConfig::handshake`].
//!
//! What each mode checks: "require" encrypts but accepts any certificate (as libpq's
//! `require` without a root file); "verify-ca" needs a chain to `tls_ca_file` and ignores the
//! name; "verify-full" also needs the name (`tls_server_name`, else the IP the proxy
//! connects to).
//!
//! The HTTP edge uses the same settings for its upstream groups ([`ServerTlsConfig::for_upstream`]),
//! where a server's name defaults to the host of its address as written.

use crate::config::{Cluster, ServerTls, Upstream, UpstreamProtocol};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Whether a login asks the server for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wish {
    /// Plain (mode "disable", or a Unix socket).
    Off,
    /// TLS if the server offers it, plain if not ("prefer").
    IfOffered,
    /// TLS or no connection.
    Required,
}

/// A cluster's TLS settings, ready to connect with.
#[derive(Clone)]
pub struct ServerTlsConfig {
    mode: ServerTls,
    /// `None` for "disable".
    client: Option<Arc<rustls::ClientConfig>>,
    name: Option<ServerName<'static>>,
    /// The settings and the files' bytes: two configs are equal when these are (a reload
    /// that changes neither keeps the pools).
    identity: Vec<u8>,
    /// Why the settings could not be used (see [`ServerTlsConfig::for_cluster`]).
    unusable: Option<Arc<str>>,
}

impl std::fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("mode", &self.mode)
            .field("name", &self.name)
            .finish()
    }
}

impl PartialEq for ServerTlsConfig {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode && self.identity == other.identity
    }
}

impl ServerTlsConfig {
    /// No TLS at all (tests and tools that build targets by hand).
    pub fn disabled() -> ServerTlsConfig {
        ServerTlsConfig {
            mode: ServerTls::Disable,
            client: None,
            name: None,
            identity: Vec::new(),
            unusable: None,
        }
    }

    /// [`ServerTlsConfig::of_cluster`] for a config that passed `app::check_config`, which
    /// built it once already. Should a file have gone since, every connection fails with the
    /// reason (never plain instead).
    pub fn for_cluster(c: &Cluster) -> ServerTlsConfig {
        Self::of_cluster(c).unwrap_or_else(|e| {
            tracing::error!(cluster = %c.name, error = %e, "cluster tls settings unusable");
            Self::refusing(e)
        })
    }

    /// Settings that fail every connection with `why` (never plain instead).
    fn refusing(why: String) -> ServerTlsConfig {
        ServerTlsConfig {
            mode: ServerTls::Require,
            client: None,
            name: None,
            identity: why.as_bytes().to_vec(),
            unusable: Some(why.into()),
        }
    }

    /// An edge upstream group's settings, offering its protocol by ALPN; `None` for
    /// "disable". As [`ServerTlsConfig::for_cluster`], settings that no longer load refuse
    /// every connection with the reason.
    pub fn for_upstream(u: &Upstream) -> Option<ServerTlsConfig> {
        match Self::of_upstream(u) {
            Ok(c) if c.mode == ServerTls::Disable => None,
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(upstream = %u.name, error = %e, "upstream tls settings unusable");
                Some(Self::refusing(e))
            }
        }
    }

    /// Read `u`'s TLS settings and files; the error names the file or setting at fault.
    pub fn of_upstream(u: &Upstream) -> Result<ServerTlsConfig, String> {
        let mut c = Self::build(
            u.tls,
            u.tls_ca_file.as_deref(),
            u.tls_server_name.as_deref(),
            u.tls_cert.as_deref().zip(u.tls_key.as_deref()),
        )?;
        if let Some(client) = &mut c.client {
            let mut with_alpn = (**client).clone();
            with_alpn.alpn_protocols = vec![match u.protocol {
                UpstreamProtocol::Http1 => b"http/1.1".to_vec(),
                UpstreamProtocol::H2 => b"h2".to_vec(),
            }];
            *client = Arc::new(with_alpn);
        }
        Ok(c)
    }

    /// The name a server is reached by: `tls_server_name` if set, else `host` (the host of
    /// the address as written, a DNS name or an IP).
    pub fn server_name(&self, host: &str) -> Option<ServerName<'static>> {
        self.name.clone().or_else(|| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            ServerName::try_from(host.to_owned()).ok()
        })
    }

    /// Read `c`'s TLS settings and files; the error names the file or setting at fault.
    pub fn of_cluster(c: &Cluster) -> Result<ServerTlsConfig, String> {
        Self::build(
            c.tls,
            c.tls_ca_file.as_deref(),
            c.tls_server_name.as_deref(),
            c.tls_cert.as_deref().zip(c.tls_key.as_deref()),
        )
    }

    pub fn build(
        mode: ServerTls,
        ca_file: Option<&str>,
        server_name: Option<&str>,
        client_cert: Option<(&str, &str)>,
    ) -> Result<ServerTlsConfig, String> {
        if mode == ServerTls::Disable {
            return Ok(Self::disabled());
        }
        let mut identity = format!("{mode:?}\0{server_name:?}\0").into_bytes();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if mode.verifies() {
            let path = ca_file.ok_or("verify-ca and verify-full need tls_ca_file")?;
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            identity.extend_from_slice(&pem);
            let roots = super::tls::roots_from_pem(&pem, path)?;
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("{path}: {e}"))?;
            Arc::new(Checked {
                inner: webpki,
                names: mode == ServerTls::VerifyFull,
            })
        } else {
            Arc::new(Unchecked(provider.clone()))
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let client = match client_cert {
            Some((cert_path, key_path)) => {
                let pem = std::fs::read(cert_path)
                    .map_err(|e| format!("cannot read {cert_path}: {e}"))?;
                let key_pem =
                    std::fs::read(key_path).map_err(|e| format!("cannot read {key_path}: {e}"))?;
                identity.extend_from_slice(&pem);
                identity.extend_from_slice(&key_pem);
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("bad certificate in {cert_path}: {e}"))?;
                if certs.is_empty() {
                    return Err(format!("no certificate in {cert_path}"));
                }
                let key = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| format!("cannot read private key from {key_path}: {e}"))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("tls_cert and tls_key do not fit: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        let name = match server_name {
            Some(n) => Some(
                ServerName::try_from(n.to_owned())
                    .map_err(|_| format!("tls_server_name {n:?} is not a DNS name or IP"))?,
            ),
            None => None,
        };
        Ok(ServerTlsConfig {
            mode,
            client: Some(Arc::new(client)),
            name,
            identity,
            unusable: None,
        })
    }

    /// The mode configured.
    pub fn mode(&self) -> ServerTls {
        self.mode
    }

    /// What a login to `addr` asks for: never TLS on a Unix socket.
    pub fn wish(&self, addr: crate::config::BackendAddr) -> Wish {
        match (self.mode, addr) {
            (ServerTls::Disable, _) | (_, crate::config::BackendAddr::Unix(_)) => Wish::Off,
            (ServerTls::Prefer, _) => Wish::IfOffered,
            _ => Wish::Required,
        }
    }

    /// The TLS handshake on `tcp`, connected to `addr`, after the protocol agreed to it.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        self.handshake_named(tcp, name).await
    }

    /// The TLS handshake on `io` with a server called `name` (sent by SNI when it is a DNS
    /// name, checked under "verify-full").
    pub async fn handshake_named<S>(
        &self,
        io: S,
        name: ServerName<'static>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let client = self.client.clone().ok_or_else(|| {
            let why = self.unusable.as_deref().unwrap_or("TLS is disabled");
            std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_owned())
        })?;
        tokio_rustls::TlsConnector::from(client)
            .connect(name, io)
            .await
    }
}

/// "require": any certificate, but the handshake's signatures are still checked (the
/// server holds the key of the certificate it sent).
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// "verify-ca" (`names` false: a certificate for another name passes) and "verify-full".
#[derive(Debug)]
struct Checked {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendAddr;

    #[test]
    fn modes_ask_as_named_and_configs_compare_by_settings_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["db.test".to_string()]).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        let ca = ca.to_str().unwrap();
        let tcp: BackendAddr = "127.0.0.1:5432".parse().unwrap();
        let unix: BackendAddr = "/run/postgresql/.s.PGSQL.5432".parse().unwrap();
        let build = |mode, ca| ServerTlsConfig::build(mode, ca, None, None).unwrap();
        assert_eq!(build(ServerTls::Disable, None).wish(tcp), Wish::Off);
        assert_eq!(build(ServerTls::Prefer, None).wish(tcp), Wish::IfOffered);
        assert_eq!(build(ServerTls::Require, None).wish(tcp), Wish::Required);
        let full = build(ServerTls::VerifyFull, Some(ca));
        assert_eq!(full.wish(tcp), Wish::Required);
        assert_eq!(full.wish(unix), Wish::Off, "never TLS over a Unix socket");
        // The same settings and files: equal (a reload keeps the pools); another mode or
        // other file contents: not.
        assert_eq!(full, build(ServerTls::VerifyFull, Some(ca)));
        assert_ne!(full, build(ServerTls::VerifyCa, Some(ca)));
        let other = rcgen::generate_simple_self_signed(vec!["db.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), other.cert.pem()).unwrap();
        assert_ne!(full, build(ServerTls::VerifyFull, Some(ca)));
        assert_eq!(
            ServerTlsConfig::disabled(),
            build(ServerTls::Disable, Some(ca))
        );
        // Files that do not load and names that are not names: errors naming them.
        let e = ServerTlsConfig::build(ServerTls::VerifyCa, Some("/nonexistent.pem"), None, None)
            .unwrap_err();
        assert!(e.contains("/nonexistent.pem"), "{e}");
        let e = ServerTlsConfig::build(ServerTls::Require, None, Some("not a name!"), None)
            .unwrap_err();
        assert!(e.contains("tls_server_name"), "{e}");
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        let empty = dir.path().join("empty.pem");
        let e =
            ServerTlsConfig::build(ServerTls::VerifyCa, empty.to_str(), None, None).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }
}
