//! TLS client configuration, shared by the connections the service opens:
//! to Redis (`rediss://`, [`crate::store::redis`]) and to an OpenTelemetry
//! collector (`https://`, [`crate::telemetry`]).
//!
//! One rustls configuration (ring) from three optional files: the trusted
//! authorities (absent: the system's roots), and a client certificate with
//! its key for mutual TLS. The server name is always checked against the
//! certificate; there is no switch to turn verification off, and a private
//! authority goes in the authorities' file. Files are read once, when the
//! connection is set up, and a problem with one names its setting and the
//! file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The files of one TLS client, and the names of their settings, which
/// errors name (`store.redis.tls_ca_file`, `telemetry.tls_ca_file`, …).
pub struct ClientFiles<'a> {
    /// PEM authorities to trust; `None`: the system's roots.
    pub ca_file: Option<&'a Path>,
    /// A PEM certificate chain and its private key, for mutual TLS.
    pub cert_and_key: Option<(&'a Path, &'a Path)>,
    /// The settings' names: authorities, certificate, key.
    pub fields: [&'static str; 3],
}

impl<'a> ClientFiles<'a> {
    /// The files of a settings section's `tls_ca_file`, `tls_cert_file`
    /// and `tls_key_file` (the certificate counts only with its key).
    pub fn new(
        ca_file: &'a Option<PathBuf>,
        cert_file: &'a Option<PathBuf>,
        key_file: &'a Option<PathBuf>,
        fields: [&'static str; 3],
    ) -> ClientFiles<'a> {
        ClientFiles {
            ca_file: ca_file.as_deref(),
            cert_and_key: cert_file.as_deref().zip(key_file.as_deref()),
            fields,
        }
    }
}

/// Why a TLS client could not be configured: the setting at fault, and
/// what is wrong (with the file's path when a file is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TlsError {
    pub field: &'static str,
    pub reason: String,
}

/// The rustls client configuration of `files`. ALPN is left to the caller
/// (the HTTP connectors set their own).
pub fn client_config(files: &ClientFiles<'_>) -> Result<ClientConfig, TlsError> {
    let [ca_field, cert_field, key_field] = files.fields;
    let roots = match files.ca_file {
        Some(path) => file_roots(path, ca_field)?,
        None => system_roots(ca_field)?,
    };
    // ring: no C toolchain beyond the one ring already needs. rustls marks
    // its provider deprecated for lacking post-quantum key exchange, which
    // Redis servers and collectors do not commonly offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(ca_field, None, &e.to_string()))?
        .with_root_certificates(roots);
    match files.cert_and_key {
        Some((cert, key)) => {
            let chain = certificates(cert, cert_field)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| error(key_field, Some(key), &format!("no PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| error(key_field, None, &e.to_string()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

fn file_roots(path: &Path, field: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, field)? {
        roots.add(cert).map_err(|e| error(field, Some(path), &e.to_string()))?;
    }
    Ok(roots)
}

fn system_roots(field: &'static str) -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map_or("none found".to_owned(), |e| e.to_string());
        return Err(error(
            field,
            None,
            &format!("no system root certificates ({why}); name a PEM file of trusted authorities"),
        ));
    }
    Ok(roots)
}

/// Every certificate of a PEM file; none is an error.
fn certificates(path: &Path, field: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| error(field, Some(path), &e.to_string()))?;
    if certs.is_empty() {
        return Err(error(field, Some(path), "no PEM certificate in it"));
    }
    Ok(certs)
}

fn error(field: &'static str, path: Option<&Path>, reason: &str) -> TlsError {
    TlsError {
        field,
        reason: match path {
            Some(path) => format!("{}: {reason}", path.display()),
            None => reason.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [&str; 3] = ["x.tls_ca_file", "x.tls_cert_file", "x.tls_key_file"];

    fn files<'a>(ca: Option<&'a Path>, pair: Option<(&'a Path, &'a Path)>) -> ClientFiles<'a> {
        ClientFiles {
            ca_file: ca,
            cert_and_key: pair,
            fields: FIELDS,
        }
    }

    #[test]
    fn a_missing_or_empty_file_names_its_setting_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.pem");
        let err = client_config(&files(Some(&missing), None)).unwrap_err();
        assert_eq!(err.field, "x.tls_ca_file");
        assert!(err.reason.contains("absent.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = client_config(&files(Some(&empty), None)).unwrap_err();
        assert_eq!(err.field, "x.tls_ca_file");
        assert!(err.reason.contains("no PEM certificate"), "{err}");
        assert_eq!(err.to_string(), format!("x.tls_ca_file: {}", err.reason));
    }

    #[test]
    fn good_files_make_a_configuration_and_bad_ones_name_their_setting() {
        let tls = ratelimiter_testkit::redis::TlsFiles::generate();
        let (ca, cert, key) = (tls.ca(), tls.client_cert(), tls.client_key());
        assert!(client_config(&files(Some(&ca), None)).is_ok());
        assert!(client_config(&files(Some(&ca), Some((&cert, &key)))).is_ok());

        // A key where the certificate should be, and the other way round.
        let err = client_config(&files(Some(&ca), Some((&key, &key)))).unwrap_err();
        assert_eq!(err.field, "x.tls_cert_file", "{err}");
        let err = client_config(&files(Some(&ca), Some((&cert, &cert)))).unwrap_err();
        assert_eq!(err.field, "x.tls_key_file", "{err}");
        assert!(err.reason.contains("no PEM private key"), "{err}");
        // Another certificate's key.
        let other = tls.server_key();
        let err = client_config(&files(Some(&ca), Some((&cert, &other)))).unwrap_err();
        assert_eq!(err.field, "x.tls_key_file", "{err}");
    }
}
