//! TLS termination for clients (rustls), and the client stream that is either plain TCP or TLS.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Build a TLS acceptor from PEM files; the error names the file at fault.
pub fn acceptor(cert_path: &str, key_path: &str) -> Result<tokio_rustls::TlsAcceptor, String> {
    acceptor_with_alpn(cert_path, key_path, &[])
}

/// Like [`acceptor`], offering the given ALPN protocols (most preferred first), e.g.
/// `[b"h2", b"http/1.1"]` for an HTTP listener.
pub fn acceptor_with_alpn(
    cert_path: &str,
    key_path: &str,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::TlsAcceptor, String> {
    build_acceptor(cert_path, key_path, alpn, None)
}

/// Like [`acceptor`], asking clients for a certificate signed by one of the authorities in
/// `client_ca_path` (PEM) when given: a client may present none (it then logs in by another
/// method), but one it presents must chain to them, or the handshake fails.
pub fn acceptor_with_client_ca(
    cert_path: &str,
    key_path: &str,
    client_ca_path: Option<&str>,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let client = client_ca_path.map(|path| ClientCa {
        path,
        required: false,
    });
    build_acceptor(cert_path, key_path, &[], client)
}

/// The certificate authorities in a PEM file's bytes (`path` names it in errors); at least
/// one. Shared by the clients' certificate checks here and the servers' (`backend_tls`).
pub fn roots_from_pem(pem: &[u8], path: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("bad certificate in {path}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable certificate in {path}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate in {path}"));
    }
    Ok(roots)
}

/// Client certificates a listener asks for: signed by the authorities in `path` (PEM), and
/// whether a client without one is refused at the handshake.
#[derive(Debug, Clone, Copy)]
pub struct ClientCa<'a> {
    pub path: &'a str,
    pub required: bool,
}

/// An acceptor with everything: ALPN protocols and client certificates.
pub fn build_acceptor(
    cert_path: &str,
    key_path: &str,
    alpn: &[&[u8]],
    client_ca: Option<ClientCa<'_>>,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("cannot read certificates from {cert_path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {cert_path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {cert_path}"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("cannot read private key from {key_path}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ClientCa { path, required }) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let roots = roots_from_pem(&pem, path)?;
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if !required {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("client certificate authorities in {path}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A client connection, with or without TLS, or on a Unix-domain socket.
pub enum ClientStream {
    Plain(TcpStream),
    /// A client of the Unix-domain socket (never TLS: the bytes do not leave the host).
    Unix(tokio::net::UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between giving up the plain stream and getting the TLS one (or after a failed
    /// handshake): every operation fails.
    Upgrading,
}

impl ClientStream {
    /// A second descriptor of the client's socket (for shutting it from elsewhere), if the
    /// stream has one.
    pub fn dup_socket(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        let fd = match self {
            ClientStream::Plain(s) => s.as_fd(),
            ClientStream::Unix(s) => s.as_fd(),
            ClientStream::Tls(s) => s.get_ref().0.as_fd(),
            ClientStream::Upgrading => return None,
        };
        fd.try_clone_to_owned().ok()
    }

    /// Run the TLS handshake on a plain stream (MySQL's SSLRequest: the upgrade happens in the
    /// middle of the connection phase). On failure the stream is gone.
    pub async fn upgrade(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> io::Result<()> {
        let tcp = match std::mem::replace(self, ClientStream::Upgrading) {
            ClientStream::Plain(tcp) => tcp,
            ClientStream::Unix(s) => {
                *self = ClientStream::Unix(s);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no TLS on a Unix socket",
                ));
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS already negotiated",
                ))
            }
        };
        *self = ClientStream::Tls(Box::new(acceptor.accept(tcp).await?));
        Ok(())
    }

    /// Whether TLS protects this stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// The client certificate the TLS handshake verified, if the client presented one.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            ClientStream::Tls(s) => s
                .get_ref()
                .1
                .peer_certificates()?
                .first()
                .map(|c| c.as_ref()),
            _ => None,
        }
    }
}

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake did not finish")
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => {
                // What rustls still holds of an answer goes out while the client's next
                // message is awaited (a write returns once rustls has the bytes).
                if let Poll::Ready(Err(e)) = Pin::new(s.as_mut()).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
                Pin::new(s.as_mut()).poll_read(cx, buf)
            }
            ClientStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Unix(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// A self-signed certificate and key for tests and the demo, written as PEM files into `dir`.
pub fn self_signed(dir: &std::path::Path) -> Result<(String, String), String> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| e.to_string())?;
    let cert = dir.join("switchyard-cert.pem");
    let key = dir.join("switchyard-key.pem");
    std::fs::write(&cert, ck.cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&key, ck.key_pair.serialize_pem()).map_err(|e| e.to_string())?;
    Ok((cert.display().to_string(), key.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS client's answer is delivered whole while its next message is awaited, even when
    /// the socket did not take the last records at the write (small buffers and a client
    /// that pauses just before the end of the answer make them wait in rustls).
    #[tokio::test]
    async fn a_tls_answer_is_delivered_whole_while_the_next_message_is_awaited() {
        const SIZE: usize = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path()).unwrap();
        let acceptor = acceptor(&cert, &key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let tcp = socket.connect(addr).await.unwrap();
            let cfg = crate::net::backend_tls::ServerTlsConfig::build(
                crate::config::ServerTls::Require,
                None,
                None,
                None,
            )
            .unwrap();
            let mut tls = cfg.handshake(tcp, addr).await.unwrap();
            let mut got = vec![0u8; SIZE];
            let pause_at = SIZE - (40 << 10);
            tls.read_exact(&mut got[..pause_at]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            tls.read_exact(&mut got[pause_at..]).await.unwrap();
            assert!(got.iter().all(|&b| b == 9));
            tls.write_all(b"next").await.unwrap();
            tls.flush().await.unwrap();
        });
        let (tcp, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(4096)
            .unwrap();
        let mut s = ClientStream::Tls(Box::new(acceptor.accept(tcp).await.unwrap()));
        s.write_all(&vec![9u8; SIZE]).await.unwrap();
        let mut next = [0u8; 4];
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut next))
            .await
            .expect("the client never got the whole answer")
            .unwrap();
        assert_eq!(&next, b"next");
        client.await.unwrap();
    }
}
