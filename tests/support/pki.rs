//! A certificate authority of the tests' own and the certificates it signs, as PEM files in
//! a directory every server user can read (removed when the test process exits).

use std::sync::OnceLock;

/// A certificate authority, a server certificate it signed (for 127.0.0.1, localhost and
/// `db.switchyard.test`), a client certificate for `cert_user`, and an unrelated authority;
/// PEM files in a directory every server user can read.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: String,
    pub other_ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
    pub pem: PemText,
}

pub struct PemText {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
}

/// A temporary directory every server user may read (the servers may run as another user).
pub fn readable_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Remove `dir` when the test process exits (a static's `TempDir` is never dropped).
pub fn remove_at_exit(dir: &std::path::Path) {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    extern "C" fn remove() {
        if let Some(d) = DIR.get() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    if DIR.set(dir.to_path_buf()).is_ok() {
        // SAFETY: registers a plain extern "C" function that never unwinds.
        unsafe { libc::atexit(remove) };
    }
}

/// Write `text` to `name` in `dir`, readable by all; its path.
pub fn write_readable(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path.display().to_string()
}

pub fn pki() -> &'static Pki {
    static P: OnceLock<Pki> = OnceLock::new();
    P.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let authority = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = p.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca, ca_key) = authority("switchyard test CA");
        let (other, _) = authority("another CA");
        let mut sp = CertificateParams::new(vec![
            "db.switchyard.test".to_string(),
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        sp.distinguished_name
            .push(DnType::CommonName, "db.switchyard.test");
        let skey = KeyPair::generate().unwrap();
        let server = sp.signed_by(&skey, &ca, &ca_key).unwrap();
        let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
        cp.distinguished_name.push(DnType::CommonName, "cert_user");
        let ckey = KeyPair::generate().unwrap();
        let client = cp.signed_by(&ckey, &ca, &ca_key).unwrap();

        let dir = readable_dir("switchyard-pki-");
        let write = |name: &str, text: &str| write_readable(&dir, name, text);
        remove_at_exit(dir.path());
        let pem = PemText {
            ca: ca.pem(),
            server_cert: server.pem(),
            server_key: skey.serialize_pem(),
        };
        Pki {
            ca: write("ca.pem", &pem.ca),
            other_ca: write("other-ca.pem", &other.pem()),
            server_cert: write("server.pem", &pem.server_cert),
            server_key: write("server-key.pem", &pem.server_key),
            client_cert: write("client.pem", &client.pem()),
            client_key: write("client-key.pem", &ckey.serialize_pem()),
            pem,
            _dir: dir,
        }
    })
}

/// A client certificate for `cert_user` from an authority no test trusts, and its key,
/// written into `dir` readable by the owner only (libpq refuses a key others may read):
/// (certificate path, key path).
pub fn stranger_client_cert(dir: &std::path::Path) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cert_user");
    let cert = params.self_signed(&key).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path.display().to_string()
    };
    (
        write("stranger.pem", &cert.pem()),
        write("stranger-key.pem", &key.serialize_pem()),
    )
}
