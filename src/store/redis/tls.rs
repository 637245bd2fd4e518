//! TLS to Redis (`rediss://`): the rustls client configuration from
//! `[store.redis]`'s `tls_ca_file` (absent: the system's roots),
//! `tls_cert_file` and `tls_key_file` (mutual TLS).
//!
//! The server name is always checked against the certificate: the URL's
//! host for a standalone server or a seed, the address in the slot map for
//! a cluster's other nodes, the address the sentinels give for a master.
//! There is no switch to turn verification off; a private authority goes
//! in `tls_ca_file`. Files are read once, at start-up, and a problem with
//! one names the setting and the file.

use std::path::Path;
use std::sync::Arc;

use fred::types::config::{TlsConfig, TlsConnector, TlsHostMapping};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::connection::ConnectError;
use crate::settings::RedisSettings;

/// The TLS configuration of every connection, or `None` without TLS.
pub fn config(settings: &RedisSettings) -> Result<Option<TlsConfig>, ConnectError> {
    if !settings.uses_tls() {
        return Ok(None);
    }
    let roots = match &settings.tls_ca_file {
        Some(path) => file_roots(path)?,
        None => system_roots()?,
    };
    // ring, as fred's rustls is built with: no C toolchain beyond the one
    // ring already needs. rustls marks its provider deprecated for lacking
    // post-quantum key exchange, which Redis servers do not offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("store.redis.url", None, &e.to_string()))?
        .with_root_certificates(roots);
    let client = match (&settings.tls_cert_file, &settings.tls_key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "store.redis.tls_cert_file")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                tls_error(
                    "store.redis.tls_key_file",
                    Some(key),
                    &format!("no PEM private key: {e}"),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error("store.redis.tls_key_file", None, &e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(TlsConfig {
        connector: TlsConnector::from(client),
        hostnames: TlsHostMapping::None,
    }))
}

fn file_roots(path: &Path) -> Result<RootCertStore, ConnectError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "store.redis.tls_ca_file")? {
        roots
            .add(cert)
            .map_err(|e| tls_error("store.redis.tls_ca_file", Some(path), &e.to_string()))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, ConnectError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map_or("none found".to_owned(), |e| e.to_string());
        return Err(tls_error(
            "store.redis.tls_ca_file",
            None,
            &format!("no system root certificates ({why}); name a PEM file of trusted authorities"),
        ));
    }
    Ok(roots)
}

/// Every certificate of a PEM file; none is an error.
fn certificates(path: &Path, field: &'static str) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(field, Some(path), &e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error(field, Some(path), "no PEM certificate in it"));
    }
    Ok(certs)
}

fn tls_error(field: &'static str, path: Option<&Path>, reason: &str) -> ConnectError {
    ConnectError::Tls {
        field,
        reason: match path {
            Some(path) => format!("{}: {reason}", path.display()),
            None => reason.to_owned(),
        },
    }
}
