//! Certificates for Redis over TLS, made at test time (rcgen): a private
//! authority, a server certificate for `127.0.0.1` and `localhost` (or the
//! names a test gives) signed
//! by it, a client certificate for mutual TLS, and a second, unrelated
//! authority that trusts none of them. Written as PEM files into a
//! temporary directory that lives as long as the handle.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// PEM files for a TLS-enabled `redis-server` and its clients.
pub struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    /// Generates every certificate and key.
    pub fn generate() -> TlsFiles {
        TlsFiles::generate_for(&["127.0.0.1", "localhost"])
    }

    /// Like [`TlsFiles::generate`], the server certificate naming only
    /// `names` (host names or IP addresses).
    pub fn generate_for(names: &[&str]) -> TlsFiles {
        let dir = super::process::temp_dir("ratelimiter-tls-");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("write a PEM file");
        };
        let ca = authority("ratelimiter test CA");
        write("ca.pem", ca.pem());
        let other = authority("an unrelated CA");
        write("other-ca.pem", other.pem());
        for (name, sans) in [
            ("server", names.iter().map(|n| n.to_string()).collect()),
            ("client", vec!["ratelimiter-client".to_owned()]),
        ] {
            let key = KeyPair::generate().expect("generate a key");
            let mut params = CertificateParams::new(sans).expect("certificate parameters");
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &ca).expect("sign a certificate");
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        }
        TlsFiles { dir }
    }

    /// The authority that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// An authority that signed nothing here.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.path("server-key.pem")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.path("client-key.pem")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `redis-server` options serving TLS on `tls_port` with the server
    /// certificate; client certificates are asked for when `mutual`.
    pub fn server_args(&self, tls_port: u16, mutual: bool) -> Vec<String> {
        let path = |p: PathBuf| p.to_str().expect("utf-8 temp dir").to_owned();
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path(self.server_cert()),
            "--tls-key-file".into(),
            path(self.server_key()),
            "--tls-ca-cert-file".into(),
            path(self.ca()),
            "--tls-auth-clients".into(),
            if mutual { "yes" } else { "no" }.into(),
        ]
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("authority parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("generate a key")).expect("self-sign")
}
