//! TLS to Redis (`rediss://`): the rustls client configuration
//! ([`crate::tls`]) from `[store.redis]`'s `tls_ca_file` (absent: the
//! system's roots), `tls_cert_file` and `tls_key_file` (mutual TLS).
//!
//! The server name is always checked against the certificate: the URL's
//! host for a standalone server or a seed, the address in the slot map for
//! a cluster's other nodes (or the hostname the node announces, see
//! `shards.rs`), the address the sentinels give for a master.

use fred::types::config::{TlsConfig, TlsConnector, TlsHostMapping};

use crate::settings::RedisSettings;
use crate::tls::{client_config, TlsError};

/// The TLS configuration of every connection, or `None` without TLS.
pub fn config(settings: &RedisSettings) -> Result<Option<TlsConfig>, TlsError> {
    if !settings.uses_tls() {
        return Ok(None);
    }
    let client = client_config(&settings.tls_files())?;
    Ok(Some(TlsConfig {
        connector: TlsConnector::from(client),
        hostnames: TlsHostMapping::None,
    }))
}
