//! What a check asks: a bounded [`Key`] and the parsed [`CheckRequest`].

use std::net::IpAddr;

use crate::core::Cost;

/// The caller's identity for limiting: non-empty and bounded in length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

/// Why a string is not a [`Key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key must not be empty")]
    Empty,
    #[error("key is {len} bytes; the maximum is {max}")]
    TooLong { len: usize, max: usize },
}

impl Key {
    pub fn parse(key: String, max_bytes: usize) -> Result<Key, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > max_bytes {
            return Err(KeyError::TooLong {
                len: key.len(),
                max: max_bytes,
            });
        }
        Ok(Key(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One parsed `/check` request.
/// The front door a check came through, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// The HTTP API (`/check`, `/check/batch`, `/check/forward`, `/report`).
    #[default]
    Http,
    /// The gRPC RateLimitService.
    Grpc,
}

impl Protocol {
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub key: Key,
    pub endpoint: Option<String>,
    pub tier: Option<String>,
    /// The units a check consumes; a peek asks about one unit.
    pub cost: Cost,
    /// Evaluate without consuming (`"cost": 0`): whether a cost-1 request
    /// would be allowed now, and the numbers as they stand.
    pub peek: bool,
    /// The end user's address, matched against IP entries of the lists.
    pub client_ip: Option<IpAddr>,
    /// What the limits of the rule may count per besides the key
    /// (`"org": "acme"`); at most [`MAX_SCOPES`], each value a valid key.
    pub scopes: Vec<(String, Key)>,
    /// Makes the check (or report) apply at most once: 1 to
    /// [`super::MAX_ID_BYTES`] bytes, remembered for the rule's longest
    /// window.
    pub id: Option<String>,
    /// Where it came from (the `protocol` label of the request metric).
    pub protocol: Protocol,
}

/// The most scopes one request may name.
pub const MAX_SCOPES: usize = 8;

impl CheckRequest {
    /// A check of `cost` for `key` under the default rule and tier.
    pub fn new(key: Key, cost: Cost) -> CheckRequest {
        CheckRequest {
            id: None,
            protocol: Protocol::Http,
            key,
            endpoint: None,
            tier: None,
            cost,
            peek: false,
            client_ip: None,
            scopes: Vec::new(),
        }
    }

    /// The value of scope `name`, when the request names it.
    pub fn scope(&self, name: &str) -> Option<&str> {
        self.scopes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded() {
        assert_eq!(Key::parse(String::new(), 4), Err(KeyError::Empty));
        assert_eq!(Key::parse("abcde".into(), 4), Err(KeyError::TooLong { len: 5, max: 4 }));
        assert_eq!(Key::parse("abcd".into(), 4).unwrap().as_str(), "abcd");
    }
}
