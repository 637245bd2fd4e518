//! Criterion benchmarks of the `/check` wire format: parsing request bodies
//! and shaping answers.
//!
//! - `parse_check/minimal`: `{"key": …}` only; `parse_check/full`: with
//!   `endpoint`, `tier`, `cost` and `client_ip`, as a gateway sends it.
//! - `response/json`: a [`CheckResponse`] built from a verdict and written
//!   as JSON (what the handler sends).
//! - `response/headers_allowed`, `response/headers_denied`:
//!   [`rate_limit_headers`] of an allowed and of a denied verdict (the
//!   denied one adds `Retry-After`).
//!
//! Only the public signatures are used (`parse_check(&[u8], usize)`,
//! `rate_limit_headers(&Verdict)`), so the internals can change freely.
//! `cargo bench --bench wire`; under `cargo test --all-targets` each
//! benchmark runs once, as a test.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ratelimiter::core::{Algorithm, Decision, Policy, Timestamp};
use ratelimiter::http::wire::{parse_check, rate_limit_headers, CheckResponse};
use ratelimiter::limiter::overrides::PolicySource;
use ratelimiter::limiter::{Reason, Verdict};

const MAX_KEY_BYTES: usize = 256;
const MINIMAL: &[u8] = br#"{"key":"user:1234567"}"#;
const FULL: &[u8] =
    br#"{"key":"user:1234567","endpoint":"POST /api/orders","tier":"pro","cost":1,"client_ip":"203.0.113.7"}"#;

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_check");
    for (name, body) in [("minimal", MINIMAL), ("full", FULL)] {
        let parsed = parse_check(body, MAX_KEY_BYTES).expect("a valid body");
        assert_eq!(parsed.key.as_str(), "user:1234567");
        group.bench_function(name, |b| b.iter(|| parse_check(black_box(body), MAX_KEY_BYTES)));
    }
    group.finish();
}

/// A verdict of the rule `POST /api/orders`, tier `pro`: 1000 per minute.
fn verdict(allowed: bool) -> Verdict {
    let policy = Policy::new(Algorithm::TokenBucket, 1000, Duration::from_secs(60)).expect("a valid policy");
    Verdict {
        rule: "POST /api/orders".into(),
        tier: "pro".into(),
        policy,
        decision: Decision {
            allowed,
            limit: 1000,
            remaining: if allowed { 999 } else { 0 },
            reset_after_us: if allowed { 60_000 } else { 60_000_000 },
            retry_after_us: if allowed { 0 } else { 60_000 },
            at: Timestamp::from_micros(1_767_225_600_123_456),
        },
        reason: if allowed { Reason::Allowed } else { Reason::Limited },
        source: PolicySource::Config,
        store_error: None,
        limits: Vec::new(),
        limit_name: None,
        duplicate: false,
        lease: None,
    }
}

fn responses(c: &mut Criterion) {
    let mut group = c.benchmark_group("response");
    let allowed = verdict(true);
    let denied = verdict(false);
    group.bench_function("json", |b| {
        b.iter(|| serde_json::to_vec(&CheckResponse::from(black_box(&allowed))).expect("serialisable"))
    });
    assert!(rate_limit_headers(&denied).contains_key("retry-after"));
    group.bench_function("headers_allowed", |b| {
        b.iter(|| rate_limit_headers(black_box(&allowed)))
    });
    group.bench_function("headers_denied", |b| b.iter(|| rate_limit_headers(black_box(&denied))));
    group.finish();
}

criterion_group!(benches, parsing, responses);
criterion_main!(benches);
