//! The rate-limit headers of a `/check` answer, ready for the caller to
//! copy onto its own response: `X-RateLimit-{Limit,Remaining,Reset}`, the
//! IETF `RateLimit-Policy` and `RateLimit` pair
//! (draft-ietf-httpapi-ratelimit-headers-10), and `Retry-After` on a
//! denial. Each value is built in one buffer that becomes the header value
//! without a copy.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::limiter::{Reason, Verdict};

pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The headers a caller copies to its own response:
/// `X-RateLimit-{Limit,Remaining,Reset}`, the IETF `RateLimit-Policy` and
/// `RateLimit` pair (draft-ietf-httpapi-ratelimit-headers-10) and, when
/// denied, `Retry-After`.
pub fn rate_limit_headers(v: &Verdict) -> HeaderMap {
    let d = &v.decision;
    let reset_at_s = d.at.as_micros().saturating_add(d.reset_after_us).div_ceil(1_000_000);
    let reset_in_s = d.reset_after_us.div_ceil(1_000_000);
    let window_s = v.policy.quota().window_us().div_ceil(1_000_000);

    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(X_RATELIMIT_LIMIT.clone(), HeaderValue::from(d.limit));
    headers.insert(X_RATELIMIT_REMAINING.clone(), HeaderValue::from(d.remaining));
    headers.insert(X_RATELIMIT_RESET.clone(), HeaderValue::from(reset_at_s));
    // `"<rule>";q=<limit>;w=<window>` and `"<rule>";r=<remaining>;t=<reset>`,
    // each built in one buffer that becomes the header value without a copy.
    let field = |first: (&str, u64), second: (&str, u64)| {
        let mut out = String::with_capacity(v.rule.len() + 48);
        push_sf_string(&mut out, &v.rule);
        for (name, value) in [first, second] {
            out.push_str(name);
            out.push_str(itoa::Buffer::new().format(value));
        }
        // Rule names are printable ASCII (checked at load), so this is valid.
        HeaderValue::from_maybe_shared(Bytes::from(out)).ok()
    };
    if !v.limits.is_empty() {
        several_limit_headers(v, &mut headers);
    } else {
        // A concurrency limit's quota is in flight, not per window.
        let policy = match v.policy.algorithm().leases() {
            true => {
                let mut out = String::with_capacity(v.rule.len() + 48);
                push_sf_string(&mut out, &v.rule);
                out.push_str(";q=");
                out.push_str(itoa::Buffer::new().format(d.limit));
                out.push_str(CONCURRENT);
                HeaderValue::from_maybe_shared(Bytes::from(out)).ok()
            }
            false => field((";q=", d.limit), (";w=", window_s)),
        };
        if let Some(value) = policy {
            headers.insert(RATELIMIT_POLICY.clone(), value);
        }
        if let Some(value) = field((";r=", d.remaining), (";t=", reset_in_s)) {
            headers.insert(RATELIMIT.clone(), value);
        }
    }
    // Peeks and shadow rules answer 200 whatever they find: nothing to retry.
    if !v.allowed() && d.retry_after_us > 0 && v.reason != Reason::Peek {
        headers.insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(d.retry_after_us.div_ceil(1_000_000)),
        );
    }
    headers
}

/// `RateLimit-Policy` and `RateLimit` of a rule with several limits: every
/// limit as `"<rule>/<name>"`, in configuration order for the policy, the
/// binding limit first for the state.
fn several_limit_headers(v: &Verdict, headers: &mut HeaderMap) {
    let item = |out: &mut String, name: &str, first: (&str, u64), second: (&str, u64)| {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let mut quoted = String::with_capacity(v.rule.len() + name.len() + 1);
        quoted.push_str(&v.rule);
        quoted.push('/');
        quoted.push_str(name);
        push_sf_string(out, &quoted);
        for (key, value) in [first, second] {
            out.push_str(key);
            out.push_str(itoa::Buffer::new().format(value));
        }
    };
    let mut policy = String::new();
    for l in &v.limits {
        if l.policy.algorithm().leases() {
            item(&mut policy, &l.name, (";q=", l.decision.limit), ("", 0));
            // The empty second parameter wrote a bare "0": the unit instead.
            policy.pop();
            policy.push_str(CONCURRENT);
            continue;
        }
        let window_s = l.policy.quota().window_us().div_ceil(1_000_000);
        item(&mut policy, &l.name, (";q=", l.decision.limit), (";w=", window_s));
    }
    let binding = v.limit_name.as_deref();
    let order = v
        .limits
        .iter()
        .filter(|l| Some(l.name.as_ref()) == binding)
        .chain(v.limits.iter().filter(|l| Some(l.name.as_ref()) != binding));
    let mut state = String::new();
    for l in order {
        let reset_in_s = l.decision.reset_after_us.div_ceil(1_000_000);
        item(&mut state, &l.name, (";r=", l.decision.remaining), (";t=", reset_in_s));
    }
    // Rule and limit names are printable ASCII (checked at load).
    for (name, value) in [(&RATELIMIT_POLICY, policy), (&RATELIMIT, state)] {
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
            headers.insert(name.clone(), value);
        }
    }
}

/// The quota unit of a `concurrency` limit in `RateLimit-Policy`.
const CONCURRENT: &str = ";qu=\"concurrent-requests\"";

/// Appends `s` as an RFC 8941 structured-field string: quoted, with `"`
/// and `\` escaped.
fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sf_strings_are_escaped() {
        let sf = |s: &str| {
            let mut out = String::new();
            push_sf_string(&mut out, s);
            out
        };
        assert_eq!(sf("GET /a"), "\"GET /a\"");
        assert_eq!(sf("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
