//! Keys hashed before anything keeps them (`[keys] hash`), and the short
//! fingerprints logs carry instead of keys (`log.keys`).
//!
//! Callers' keys are often API keys or tokens. With hashing on, the
//! limiter replaces every request's key by its SHA-256 or HMAC-SHA-256,
//! in hex, before it plans, counts, caches, logs or stores anything: store
//! key names, the deny cache and the stats only ever see the hash. The
//! admin API hashes an operator's keys the same way (overrides, list
//! entries other than addresses, key inspection and reset), so operators
//! keep working by the raw key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::request::Key;
use crate::settings::{KeyHash, KeysSettings};

/// How keys are hashed.
#[derive(Clone)]
pub enum KeyHasher {
    Off,
    Sha256,
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyHasher::Off => "Off",
            KeyHasher::Sha256 => "Sha256",
            KeyHasher::Hmac(_) => "Hmac(***)",
        })
    }
}

impl KeyHasher {
    /// The hasher `[keys]` asks for; reads the HMAC key's file.
    pub fn from_settings(settings: &KeysSettings) -> Result<KeyHasher, String> {
        match settings.hash {
            KeyHash::None => Ok(KeyHasher::Off),
            KeyHash::Sha256 => Ok(KeyHasher::Sha256),
            KeyHash::HmacSha256 => {
                let path = settings
                    .hmac_secret_file
                    .as_ref()
                    .ok_or("keys.hmac_secret_file: required with hash = \"hmac-sha256\"")?;
                let mut secret = std::fs::read(path)
                    .map_err(|e| format!("keys.hmac_secret_file: cannot read {}: {e}", path.display()))?;
                while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    secret.pop();
                }
                if secret.len() < 16 {
                    return Err(format!(
                        "keys.hmac_secret_file: {} holds {} bytes; at least 16 are needed",
                        path.display(),
                        secret.len()
                    ));
                }
                Ok(KeyHasher::Hmac(secret))
            }
        }
    }

    pub fn is_on(&self) -> bool {
        !matches!(self, KeyHasher::Off)
    }

    /// `raw` as it is kept: hashed when hashing is on, else as it is.
    pub fn hash(&self, raw: &str) -> String {
        match self {
            KeyHasher::Off => raw.to_owned(),
            KeyHasher::Sha256 => hex(&Sha256::digest(raw.as_bytes())),
            KeyHasher::Hmac(secret) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
                mac.update(raw.as_bytes());
                hex(&mac.finalize().into_bytes())
            }
        }
    }

    /// `key` as it is kept; `None` when hashing is off (keep it as it is).
    pub fn key(&self, key: &Key) -> Option<Key> {
        self.is_on()
            .then(|| Key::parse(self.hash(key.as_str()), usize::MAX).expect("a hash is a valid key"))
    }
}

/// A key made of a credential header, kept as the credential's SHA-256:
/// `x-api-key:<secret>` becomes `x-api-key:sha256:<hex>` when its prefix
/// is one of `headers` (`forward.hash_headers`). Anything else, and a key
/// already in that form, is returned as it is.
pub fn credential_key(key: &str, headers: &[String]) -> String {
    match key.split_once(':') {
        Some((source, value))
            if !value.starts_with("sha256:") && headers.iter().any(|h| h.eq_ignore_ascii_case(source)) =>
        {
            format!("{source}:sha256:{}", KeyHasher::Sha256.hash(value))
        }
        _ => key.to_owned(),
    }
}

/// A short, stable stand-in for `raw` in logs: the first 12 hex digits of
/// its SHA-256.
pub fn fingerprint(raw: &str) -> String {
    let mut text = hex(&Sha256::digest(raw.as_bytes()));
    text.truncate(12);
    text
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_hex_and_differ_by_method() {
        assert_eq!(
            KeyHasher::Sha256.hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(KeyHasher::Off.hash("abc"), "abc");
        let hmac = KeyHasher::Hmac(b"0123456789abcdef".to_vec());
        assert_eq!(hmac.hash("abc").len(), 64);
        assert_ne!(hmac.hash("abc"), KeyHasher::Sha256.hash("abc"));
        assert_eq!(fingerprint("abc"), "ba7816bf8f01");
    }

    #[test]
    fn credential_keys_keep_their_source_and_hash_the_secret() {
        let headers = ["x-api-key".to_owned(), "authorization".to_owned()];
        let kept = credential_key("x-api-key:abc", &headers);
        assert_eq!(
            kept,
            "x-api-key:sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(credential_key(&kept, &headers), kept, "hashed once");
        assert_eq!(
            credential_key("X-Api-Key:abc", &headers),
            "X-Api-Key:sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(credential_key("ip:10.0.0.1", &headers), "ip:10.0.0.1");
        assert_eq!(credential_key("user:7", &headers), "user:7");
        assert_eq!(credential_key("x-api-key:abc", &[]), "x-api-key:abc");
    }

    #[test]
    fn an_hmac_key_must_be_there_and_long_enough() {
        let dir = std::env::temp_dir().join(format!("ratelimiter-hmac-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "too short\n").unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        let settings = |file: Option<&std::path::Path>| KeysSettings {
            hash: KeyHash::HmacSha256,
            hmac_secret_file: file.map(Into::into),
        };
        assert!(KeyHasher::from_settings(&settings(None))
            .unwrap_err()
            .contains("required"));
        assert!(KeyHasher::from_settings(&settings(Some(&short)))
            .unwrap_err()
            .contains("at least 16"));
        let hasher = KeyHasher::from_settings(&settings(Some(&good))).unwrap();
        assert_eq!(
            hasher.hash("k"),
            KeyHasher::Hmac(b"0123456789abcdef0123".to_vec()).hash("k")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
