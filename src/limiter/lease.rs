//! Leases of `concurrency` limits: the numbers allowed checks take, and the
//! opaque token a caller releases or renews them with.
//!
//! A token names everything the lease's release needs, so that any
//! replica can release it without looking anything up: the lease's number
//! and units, the rule, the slot's partition, and each `concurrency`
//! counter that holds it (its limit's name, the value it counts, and its
//! lease lifetime for a renewal). It is those fields, length-prefixed, in
//! URL-safe base64. The number is drawn from a keyed hash, so a caller
//! cannot guess another's lease to release it.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Draws lease numbers: never 0, unpredictable without this process's key.
#[derive(Debug)]
pub struct LeaseNumbers {
    key: RandomState,
    next: AtomicU64,
}

impl LeaseNumbers {
    pub fn new() -> LeaseNumbers {
        LeaseNumbers {
            key: RandomState::new(),
            next: AtomicU64::new(0),
        }
    }

    pub fn draw(&self) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.key.hash_one(n).max(1)
    }
}

impl Default for LeaseNumbers {
    fn default() -> Self {
        LeaseNumbers::new()
    }
}

/// One `concurrency` counter that holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The limit's name; `None` for a rule's only, unnamed limit.
    pub limit: Option<String>,
    /// The value the limit counts (the key, or a scope's value).
    pub value: String,
    /// The lease's lifetime on this counter, µs.
    pub ttl_us: u64,
}

/// What a lease token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken {
    pub number: u64,
    pub units: u64,
    pub rule: String,
    pub partition: String,
    pub holders: Vec<Holder>,
}

impl LeaseToken {
    /// The token, as callers see it.
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(64 + self.rule.len() + self.partition.len());
        field(&mut out, b"1");
        field(&mut out, self.number.to_string().as_bytes());
        field(&mut out, self.units.to_string().as_bytes());
        field(&mut out, self.rule.as_bytes());
        field(&mut out, self.partition.as_bytes());
        for holder in &self.holders {
            match &holder.limit {
                Some(name) => field(&mut out, format!("={name}").as_bytes()),
                None => field(&mut out, b"-"),
            }
            field(&mut out, holder.value.as_bytes());
            field(&mut out, holder.ttl_us.to_string().as_bytes());
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    /// A token [`LeaseToken::encode`] made; `None` for anything else.
    pub fn decode(token: &str) -> Option<LeaseToken> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
        let mut fields = Fields(&bytes);
        if fields.next()? != b"1" {
            return None;
        }
        let number = fields.number()?;
        let units = fields.number()?;
        let rule = fields.text()?;
        let partition = fields.text()?;
        let mut holders = Vec::new();
        while !fields.0.is_empty() {
            let limit = match fields.text()? {
                name if name.starts_with('=') => Some(name[1..].to_owned()),
                dash if dash == "-" => None,
                _ => return None,
            };
            holders.push(Holder {
                limit,
                value: fields.text()?,
                ttl_us: fields.number()?,
            });
        }
        if number == 0 || units == 0 || holders.is_empty() {
            return None;
        }
        Some(LeaseToken {
            number,
            units,
            rule,
            partition,
            holders,
        })
    }
}

/// `<length>:<bytes>`.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn next(&mut self) -> Option<&'a [u8]> {
        let colon = self.0.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.0[..colon]).ok()?.parse().ok()?;
        let rest = &self.0[colon + 1..];
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Some(value)
    }

    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.next()?.to_vec()).ok()
    }

    fn number(&mut self) -> Option<u64> {
        std::str::from_utf8(self.next()?).ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_anything_else_is_refused() {
        let token = LeaseToken {
            number: 0xdead_beef_cafe,
            units: 2,
            rule: "POST /jobs".into(),
            partition: "acme:1\n{x}".into(),
            holders: vec![
                Holder {
                    limit: None,
                    value: "user:1".into(),
                    ttl_us: 30_000_000,
                },
                Holder {
                    limit: Some("org".into()),
                    value: "".into(),
                    ttl_us: 1,
                },
            ],
        };
        let text = token.encode();
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(LeaseToken::decode(&text), Some(token));
        for bad in ["", "x", "!!!!", &text[..text.len() - 2], &"A".repeat(5000)] {
            assert_eq!(LeaseToken::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_are_never_zero_and_differ() {
        let numbers = LeaseNumbers::new();
        let drawn: std::collections::HashSet<u64> = (0..10_000).map(|_| numbers.draw()).collect();
        assert_eq!(drawn.len(), 10_000);
        assert!(!drawn.contains(&0));
    }
}
