//! Deriving a check from an incoming request: the key (who is limited),
//! the end user's address, and the default endpoint name.
//!
//! Everything here is a pure function of the request's head
//! ([`http::request::Parts`]), so it is unit-tested without a network.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;

type KeyFn = dyn Fn(&Parts) -> Option<DerivedKey> + Send + Sync;

/// A key, and the address it was made from (for the address extractors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedKey {
    /// The key sent to ratelimiter.
    pub key: String,
    /// The end user's address, when the key is one (`ip:<addr>`): sent as
    /// `client_ip` too, so IP and CIDR list entries apply.
    pub ip: Option<IpAddr>,
}

impl DerivedKey {
    fn plain(key: String) -> DerivedKey {
        DerivedKey { key, ip: None }
    }

    fn address(ip: IpAddr) -> DerivedKey {
        DerivedKey {
            key: format!("ip:{ip}"),
            ip: Some(ip),
        }
    }
}

/// How the rate-limit key is derived from a request. Build one from a
/// header, the `X-Forwarded-For` address, a request extension or a
/// closure; chain several with [`KeyExtractor::or`] (the first that yields
/// a key wins).
///
/// The ready-made extractors prefix the value with where it came from
/// (`x-api-key:<value>`, `ip:<addr>`), as ratelimiter's own
/// `GET /check/forward` does, so the same caller has one counter whichever
/// way it is checked, and a key value can never collide with an address. The
/// address extractors also send the address as `client_ip`, so IP and CIDR
/// entries of ratelimiter's allow and block lists apply.
#[derive(Clone)]
pub struct KeyExtractor {
    f: Arc<KeyFn>,
    /// What the extractor looks at, for error messages (`x-api-key`).
    source: Arc<str>,
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExtractor").field("source", &self.source).finish()
    }
}

impl KeyExtractor {
    /// The value of header `name` as `<name>:<value>` (the name in lower
    /// case), e.g. `x-org-id:acme`. An absent, empty or non-UTF-8 value
    /// yields no key. The headers that carry credentials, `x-api-key` and
    /// `authorization`, are sent as `<name>:sha256:<hex of the value>`,
    /// never the credential itself. For `x-api-key` that is the key
    /// ratelimiter's `/check/forward` makes too (its `forward.hash_headers`),
    /// so both ways share one counter; `/check/forward` keys `authorization`
    /// by a bearer JWT's `sub` instead, so a hashed `authorization` counts
    /// apart from it. [`KeyExtractor::header_raw`] sends the value as it is.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid header name (a programming error, found
    /// when the layer is built).
    pub fn header(name: &str) -> KeyExtractor {
        let credential = matches!(name.to_ascii_lowercase().as_str(), "x-api-key" | "authorization");
        KeyExtractor::header_with(name, credential)
    }

    /// The value of header `name` as `<name>:<value>`, never hashed (for a
    /// credential header, only with `forward.hash_headers` emptied on the
    /// service too, or the two count apart).
    pub fn header_raw(name: &str) -> KeyExtractor {
        KeyExtractor::header_with(name, false)
    }

    fn header_with(name: &str, hashed: bool) -> KeyExtractor {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("header name {name:?}: {e}"));
        let source: Arc<str> = Arc::from(name.as_str());
        KeyExtractor {
            f: Arc::new(move |parts: &Parts| {
                let value = parts.headers.get(&name)?.to_str().ok()?.trim();
                if value.is_empty() {
                    return None;
                }
                Some(DerivedKey::plain(match hashed {
                    true => format!("{}:sha256:{}", name.as_str(), sha256_hex(value)),
                    false => format!("{}:{value}", name.as_str()),
                }))
            }),
            source,
        }
    }

    /// The caller's address from `X-Forwarded-For`, as `ip:<addr>`, behind
    /// one proxy of yours: the right-most address, which that proxy wrote.
    /// See [`KeyExtractor::forwarded_for_hops`].
    pub fn forwarded_for() -> KeyExtractor {
        KeyExtractor::forwarded_for_hops(1)
    }

    /// The caller's address from `X-Forwarded-For`, as `ip:<addr>`, behind
    /// `trusted_hops` proxies of yours that each append the address they
    /// received from: the address the outermost of them wrote, i.e. the
    /// `trusted_hops`-th from the right. Addresses to its left are the
    /// client's to choose (a client can send any `X-Forwarded-For`), so
    /// they are never used; a header with fewer addresses than
    /// `trusted_hops` yields no key. 0 is taken as 1.
    pub fn forwarded_for_hops(trusted_hops: usize) -> KeyExtractor {
        KeyExtractor {
            f: Arc::new(move |parts: &Parts| forwarded_for_ip_hops(parts, trusted_hops).map(DerivedKey::address)),
            source: Arc::from("x-forwarded-for"),
        }
    }

    /// The peer address from a request extension of type `T`, as
    /// `ip:<addr>`. With axum, serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()` and use
    /// `KeyExtractor::peer_ip(|c: &ConnectInfo<SocketAddr>| c.0.ip())`.
    pub fn peer_ip<T, F>(ip: F) -> KeyExtractor
    where
        T: Send + Sync + 'static,
        F: Fn(&T) -> IpAddr + Send + Sync + 'static,
    {
        KeyExtractor {
            f: Arc::new(move |parts: &Parts| {
                parts
                    .extensions
                    .get::<T>()
                    .map(|t| DerivedKey::address(canonical(ip(t))))
            }),
            source: Arc::from("peer address"),
        }
    }

    /// Any derivation: `f` returns the key, or `None` when the request
    /// carries none. `source` names what it looks at, for the error a
    /// request without a key gets (e.g. `"authorization"`).
    pub fn from_fn<F>(source: &str, f: F) -> KeyExtractor
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        KeyExtractor {
            f: Arc::new(move |parts: &Parts| f(parts).map(DerivedKey::plain)),
            source: Arc::from(source),
        }
    }

    /// This extractor, or `other` when this one yields no key.
    pub fn or(self, other: KeyExtractor) -> KeyExtractor {
        let source = Arc::from(format!("{} or {}", self.source, other.source));
        let (first, second) = (self.f, other.f);
        KeyExtractor {
            f: Arc::new(move |parts: &Parts| first(parts).or_else(|| second(parts))),
            source,
        }
    }

    /// The key of `parts`, if it has one.
    pub fn extract(&self, parts: &Parts) -> Option<String> {
        self.derive(parts).map(|d| d.key)
    }

    /// The key of `parts` and, for the address extractors, the address.
    pub fn derive(&self, parts: &Parts) -> Option<DerivedKey> {
        (self.f)(parts)
    }

    /// What the extractor looks at, e.g. `x-api-key or x-forwarded-for`.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The right-most address of `X-Forwarded-For` (every such header, in
/// order), the one a proxy of yours wrote, when it parses as an IP address;
/// `::ffff:a.b.c.d` becomes `a.b.c.d`. Behind several proxies, see
/// [`forwarded_for_ip_hops`].
pub fn forwarded_for_ip(parts: &Parts) -> Option<IpAddr> {
    forwarded_for_ip_hops(parts, 1)
}

/// The `trusted_hops`-th address from the right of `X-Forwarded-For` (its
/// header lines form one list, in order), canonical; see
/// [`KeyExtractor::forwarded_for_hops`].
pub fn forwarded_for_ip_hops(parts: &Parts, trusted_hops: usize) -> Option<IpAddr> {
    let hops: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let from_right = trusted_hops.max(1);
    let at = hops.len().checked_sub(from_right)?;
    parse_ip(hops[at]).map(canonical)
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`,
/// `1.2.3.4:5678` or `[2001:db8::1]:5678`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// The SHA-256 of `value`, in lower-case hex.
fn sha256_hex(value: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    Sha256::digest(value.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// IPv4-mapped IPv6 addresses as IPv4, as ratelimiter's lists see them.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The default endpoint: `"<METHOD> <path>"` without the query string, e.g.
/// `GET /api/items` — the form ratelimiter's rules are written in (a rule's
/// `endpoint` is matched exactly; no rule → the default rule).
pub fn method_and_path(parts: &Parts) -> Option<String> {
    Some(format!("{} {}", parts.method, parts.uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(builder: http::request::Builder) -> Parts {
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn header_key_is_prefixed_with_the_lower_case_name() {
        let key = KeyExtractor::header("X-Api-Key");
        assert_eq!(key.source(), "x-api-key");
        let p = parts(Request::get("/").header("x-api-key", " abc "));
        // A credential: kept as its SHA-256, as /check/forward keeps it.
        assert_eq!(
            key.extract(&p).as_deref(),
            Some("x-api-key:sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            KeyExtractor::header_raw("x-api-key").extract(&p).as_deref(),
            Some("x-api-key:abc")
        );
        let org = parts(Request::get("/").header("x-org-id", "acme"));
        assert_eq!(
            KeyExtractor::header("X-Org-Id").extract(&org).as_deref(),
            Some("x-org-id:acme")
        );
        assert_eq!(key.extract(&parts(Request::get("/"))), None);
        assert_eq!(key.extract(&parts(Request::get("/").header("x-api-key", ""))), None);
        let not_utf8 = http::HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        assert_eq!(
            key.extract(&parts(Request::get("/").header("x-api-key", not_utf8))),
            None
        );
    }

    #[test]
    #[should_panic(expected = "header name")]
    fn an_invalid_header_name_is_a_programming_error() {
        let _ = KeyExtractor::header("not a header");
    }

    #[test]
    fn forwarded_for_takes_the_address_the_trusted_proxy_wrote() {
        let key = KeyExtractor::forwarded_for();
        let ip = |value: &str| key.extract(&parts(Request::get("/").header("x-forwarded-for", value)));
        // A spoofed first address is never used: the proxy wrote the last.
        assert_eq!(ip("6.6.6.6, 203.0.113.7").as_deref(), Some("ip:203.0.113.7"));
        assert_eq!(ip("2001:db8::1").as_deref(), Some("ip:2001:db8::1"));
        assert_eq!(ip("[2001:db8::1]:443").as_deref(), Some("ip:2001:db8::1"));
        assert_eq!(ip("[2001:db8::2]").as_deref(), Some("ip:2001:db8::2"));
        assert_eq!(ip("198.51.100.2:5678").as_deref(), Some("ip:198.51.100.2"));
        assert_eq!(ip("::ffff:192.0.2.1").as_deref(), Some("ip:192.0.2.1"));
        assert_eq!(ip("10.0.0.1, unknown"), None, "the trusted hop is not an address");
        assert_eq!(ip(" , "), None);

        // Two proxies of yours: the second address from the right.
        let two = KeyExtractor::forwarded_for_hops(2);
        let via = |value: &str| two.extract(&parts(Request::get("/").header("x-forwarded-for", value)));
        assert_eq!(via("6.6.6.6, 203.0.113.7, 10.0.0.2").as_deref(), Some("ip:203.0.113.7"));
        assert_eq!(via("10.0.0.2"), None, "fewer addresses than trusted hops");
        assert_eq!(
            KeyExtractor::forwarded_for_hops(0)
                .extract(&parts(Request::get("/").header("x-forwarded-for", "1.2.3.4, 5.6.7.8")))
                .as_deref(),
            Some("ip:5.6.7.8")
        );

        // Several header lines are one list, in order.
        let p = parts(
            Request::get("/")
                .header("x-forwarded-for", "192.0.2.9")
                .header("x-forwarded-for", "10.0.0.1"),
        );
        assert_eq!(forwarded_for_ip(&p), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(forwarded_for_ip_hops(&p, 2), Some("192.0.2.9".parse().unwrap()));
    }

    #[test]
    fn peer_ip_reads_a_request_extension() {
        #[derive(Clone)]
        struct Peer(SocketAddr);
        let key = KeyExtractor::peer_ip(|p: &Peer| p.0.ip());
        let mut p = parts(Request::get("/"));
        assert_eq!(key.extract(&p), None);
        p.extensions.insert(Peer("[::ffff:127.0.0.1]:4000".parse().unwrap()));
        assert_eq!(
            key.derive(&p),
            Some(DerivedKey {
                key: "ip:127.0.0.1".into(),
                ip: Some("127.0.0.1".parse().unwrap())
            })
        );
    }

    #[test]
    fn or_falls_back_in_order() {
        let key = KeyExtractor::header("x-api-key").or(KeyExtractor::forwarded_for());
        assert_eq!(key.source(), "x-api-key or x-forwarded-for");
        let both = parts(
            Request::get("/")
                .header("x-api-key", "k")
                .header("x-forwarded-for", "192.0.2.1"),
        );
        assert!(key.extract(&both).unwrap().starts_with("x-api-key:sha256:"));
        let ip_only = parts(Request::get("/").header("x-forwarded-for", "192.0.2.1"));
        assert_eq!(key.extract(&ip_only).as_deref(), Some("ip:192.0.2.1"));
        assert_eq!(
            key.derive(&ip_only).and_then(|d| d.ip),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            key.derive(&both).and_then(|d| d.ip),
            None,
            "a header key carries no address"
        );
        assert_eq!(key.extract(&parts(Request::get("/"))), None);
    }

    #[test]
    fn from_fn_runs_the_closure() {
        let key = KeyExtractor::from_fn("org", |p: &Parts| {
            p.uri.path().strip_prefix("/orgs/").map(|o| format!("org:{o}"))
        });
        assert_eq!(
            key.extract(&parts(Request::get("/orgs/acme"))).as_deref(),
            Some("org:acme")
        );
        assert_eq!(key.extract(&parts(Request::get("/"))), None);
    }

    #[test]
    fn endpoint_is_method_and_path_without_query() {
        let p = parts(Request::get("/api/items?page=2"));
        assert_eq!(method_and_path(&p).as_deref(), Some("GET /api/items"));
        let p = parts(Request::post("http://example.com/login"));
        assert_eq!(method_and_path(&p).as_deref(), Some("POST /login"));
    }
}
