//! How a `RateLimitRequest`'s descriptors become checks, by the domain's
//! `[[grpc.domains]]` entry: pure functions of the settings and the
//! descriptor's entries, so that every rule of the mapping is unit-tested.

use std::collections::BTreeMap;

use crate::core::Cost;
use crate::limiter::{CheckRequest, Key, Protocol};
use crate::settings::GrpcDomain;

/// One descriptor, as its `key`/`value` entries in order.
pub type Entries<'a> = [(&'a str, &'a str)];

/// What a descriptor asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// It lacks an entry the mapping needs: Envoy expects `OK` for it.
    Nothing,
    /// A check (`cost` 0 in the descriptor makes it a peek).
    Check(CheckRequest),
    /// A refund of `units` (Envoy's negative hits).
    Refund(CheckRequest, u64),
}

/// Why a descriptor cannot become a check: a message for `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDescriptor(pub String);

/// The check of `entries` under `domain`'s mapping. `hits` is the
/// descriptor's own `hits_addend` when set (0 peeks), else the request's
/// (0 meaning 1); `negative` gives the hits back instead.
pub fn map(
    domain: &GrpcDomain,
    entries: &Entries<'_>,
    hits: u64,
    negative: bool,
    max_key_bytes: usize,
) -> Result<Mapped, BadDescriptor> {
    let value = |name: &str| entries.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let key = match &domain.key_entries {
        Some(names) => {
            let mut parts = Vec::with_capacity(names.len());
            for name in names {
                match value(name) {
                    Some(v) => parts.push(v),
                    None => return Ok(Mapped::Nothing),
                }
            }
            parts.join(":")
        }
        None => entries
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    };
    let key = Key::parse(key, max_key_bytes).map_err(|e| BadDescriptor(format!("the descriptor's key: {e}")))?;
    let endpoint = match (&domain.endpoint_entry, &domain.endpoint_template) {
        (Some(name), _) => value(name).map(str::to_owned),
        (None, Some(template)) => fill(template, &value),
        (None, None) => None,
    };
    let tier = domain.tier_entry.as_deref().and_then(value).map(str::to_owned);
    let mut scopes = Vec::new();
    for (scope, entry) in &domain.scope_entries {
        if let Some(v) = value(entry) {
            let v = Key::parse(v.to_owned(), max_key_bytes)
                .map_err(|e| BadDescriptor(format!("the descriptor's entry {entry:?} (scope {scope}): {e}")))?;
            scopes.push((scope.clone(), v));
        }
    }
    let mut request = CheckRequest::new(key, Cost::ONE);
    request.endpoint = endpoint;
    request.tier = tier;
    request.scopes = scopes;
    request.protocol = Protocol::Grpc;
    if negative {
        return Ok(match hits {
            0 => Mapped::Nothing,
            units => Mapped::Refund(request, units),
        });
    }
    match Cost::new(hits) {
        Some(cost) => request.cost = cost,
        None => request.peek = true,
    }
    Ok(Mapped::Check(request))
}

/// `template` with every `{name}` replaced by that entry's value; `None`
/// when an entry is missing (the default rule then decides).
fn fill<'a>(template: &str, value: &impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        out.push_str(value(&rest[open + 1..close])?);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The domains by name.
pub fn domains(settings: &[GrpcDomain]) -> BTreeMap<String, GrpcDomain> {
    settings.iter().map(|d| (d.domain.clone(), d.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> GrpcDomain {
        GrpcDomain {
            domain: "edge".into(),
            endpoint_entry: Some("path".into()),
            endpoint_template: None,
            key_entries: Some(vec!["remote_address".into()]),
            tier_entry: Some("tier".into()),
            scope_entries: [("org".to_owned(), "org_id".to_owned())].into(),
        }
    }

    fn check(mapped: Mapped) -> CheckRequest {
        match mapped {
            Mapped::Check(request) => request,
            other => panic!("a check: {other:?}"),
        }
    }

    #[test]
    fn entries_fill_endpoint_key_tier_and_scopes() {
        let entries = [
            ("remote_address", "10.0.0.1"),
            ("path", "GET /a"),
            ("tier", "pro"),
            ("org_id", "acme"),
        ];
        let request = check(map(&domain(), &entries, 3, false, 256).unwrap());
        assert_eq!(request.key.as_str(), "10.0.0.1");
        assert_eq!(request.endpoint.as_deref(), Some("GET /a"));
        assert_eq!(request.tier.as_deref(), Some("pro"));
        assert_eq!(request.scope("org"), Some("acme"));
        assert_eq!((request.cost.get(), request.peek), (3, false));
    }

    #[test]
    fn a_descriptor_without_its_key_entries_matches_nothing() {
        assert_eq!(
            map(&domain(), &[("path", "GET /a")], 1, false, 256),
            Ok(Mapped::Nothing)
        );
    }

    #[test]
    fn without_key_entries_every_entry_is_the_key_and_zero_hits_peek() {
        let mut d = domain();
        d.key_entries = None;
        d.endpoint_entry = None;
        d.endpoint_template = Some("{method} {path}".into());
        let request = check(map(&d, &[("method", "GET"), ("path", "/x")], 0, false, 256).unwrap());
        assert_eq!(request.key.as_str(), "method=GET,path=/x");
        assert_eq!(request.endpoint.as_deref(), Some("GET /x"));
        assert!(request.peek);
        // A template entry missing: the default rule.
        let request = check(map(&d, &[("method", "GET")], 1, false, 256).unwrap());
        assert_eq!(request.endpoint, None);
    }

    #[test]
    fn negative_hits_refund_and_bad_keys_are_refused() {
        let entries = [("remote_address", "10.0.0.1")];
        assert!(matches!(
            map(&domain(), &entries, 5, true, 256),
            Ok(Mapped::Refund(_, 5))
        ));
        assert_eq!(map(&domain(), &entries, 0, true, 256), Ok(Mapped::Nothing));
        let long = "x".repeat(300);
        assert!(map(&domain(), &[("remote_address", &long)], 1, false, 256).is_err());
        assert!(map(&domain(), &[("remote_address", "")], 1, false, 256).is_err());
    }
}
