//! What the wings call to make spans: the head-sampling decision where a
//! request arrives ([`Head`]), the carriers of trace context, the `store`
//! span ([`StoreCall`]) and the batch count the Redis group commit
//! records on it.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{exporting, TRACE_TARGET};
use crate::core::{Algorithm, Policy};

/// `sample_ratio`, as the bits of an `f64` (set once, by
/// [`super::init`]).
static SAMPLE_RATIO: AtomicU64 = AtomicU64::new(0);

pub(super) fn set_sample_ratio(ratio: f64) {
    SAMPLE_RATIO.store(ratio.to_bits(), Ordering::Relaxed);
}

/// Whether the current span's trace is sampled, so that a span made
/// under it would be exported. With a parent-based sampler, a child of an
/// unsampled request is dropped anyway: not making it saves building it.
pub fn in_sampled_trace() -> bool {
    use opentelemetry::trace::TraceContextExt;
    tracing::Span::current().context().span().span_context().is_sampled()
}

/// Whether a request that has just arrived is traced, decided once, where
/// it arrives (head sampling): a caller's valid W3C `traceparent` decides
/// by its sampled flag, and the request joins that trace; otherwise the
/// request starts a trace of its own with probability `sample_ratio`.
///
/// Deciding before the request's span is made, rather than in the
/// OpenTelemetry sampler when the span opens, means a request that is not
/// traced costs the trace layer nothing: its span is made under
/// [`super::UNTRACED_TARGET`] (or, for gRPC, not at all), and no `store` span
/// follows. The sampler behind it is parent-based over "always": by the
/// time a span reaches it, the decision has been made.
pub enum Head {
    /// Not traced (traces off, the caller's trace unsampled, or the ratio
    /// said no).
    Untraced,
    /// A trace of its own.
    Root,
    /// The caller's sampled trace.
    Child(opentelemetry::Context),
}

impl Head {
    /// The decision for a request whose headers or metadata are `carrier`.
    pub fn of(carrier: &dyn Extractor) -> Head {
        use opentelemetry::trace::TraceContextExt;
        if !exporting() {
            return Head::Untraced;
        }
        if carrier.get("traceparent").is_some() {
            let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(carrier);
            let caller = parent.span().span_context().clone();
            if caller.is_valid() {
                return if caller.is_sampled() {
                    Head::Child(parent)
                } else {
                    Head::Untraced
                };
            }
        }
        let ratio = f64::from_bits(SAMPLE_RATIO.load(Ordering::Relaxed));
        if ratio >= 1.0 || (ratio > 0.0 && rand::random::<f64>() < ratio) {
            Head::Root
        } else {
            Head::Untraced
        }
    }

    /// Whether the request is traced.
    pub fn traced(&self) -> bool {
        !matches!(self, Head::Untraced)
    }

    /// Makes `span`, the request's span, the child of the caller's.
    pub fn adopt(self, span: &tracing::Span) {
        if let Head::Child(parent) = self {
            let _ = span.set_parent(parent);
        }
    }
}

/// HTTP headers as a carrier of trace context.
pub struct Headers<'a>(pub &'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// gRPC metadata as a carrier of trace context.
pub struct Metadata<'a>(pub &'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// What one store call of a check is, for its span: never its key.
#[derive(Debug, Clone, Copy)]
pub struct StoreCall<'a> {
    pub rule: &'a str,
    /// The counters' algorithm; `None` when they differ.
    pub algorithm: Option<Algorithm>,
    /// How many counters the call decides.
    pub counters: usize,
}

impl<'a> StoreCall<'a> {
    /// A call deciding counters under `policies`.
    pub fn new<'p>(rule: &'a str, policies: impl IntoIterator<Item = &'p Policy>) -> StoreCall<'a> {
        let mut policies = policies.into_iter();
        let first = policies.next().map(Policy::algorithm);
        let mut counters = usize::from(first.is_some());
        let mut algorithm = first;
        for policy in policies {
            counters += 1;
            if algorithm != Some(policy.algorithm()) {
                algorithm = None;
            }
        }
        StoreCall {
            rule,
            algorithm,
            counters,
        }
    }

    /// The call's span, when spans are exported. `batch` and `outcome`
    /// are recorded once the call is done ([`StoreCall::outcome`]; a
    /// field recorded twice would be exported twice).
    pub fn span(&self) -> tracing::Span {
        if !exporting() {
            return tracing::Span::none();
        }
        tracing::info_span!(
            target: TRACE_TARGET,
            "store",
            rule = self.rule,
            algorithm = self.algorithm.map_or("several", Algorithm::as_str),
            counters = self.counters,
            batch = tracing::field::Empty,
            outcome = tracing::field::Empty,
        )
    }

    /// Records on `span` the outcome (`allowed`, `limited` or `error`)
    /// and how many checks shared the call's round trip (`batch`).
    pub fn outcome(span: &tracing::Span, allowed: Option<bool>, batch: u64) {
        let outcome = match allowed {
            Some(true) => "allowed",
            Some(false) => "limited",
            None => "error",
        };
        span.record("outcome", outcome);
        span.record("batch", batch);
    }
}

tokio::task_local! {
    /// How many checks the current store call's round trip carried.
    static BATCH: std::cell::Cell<u64>;
}

/// Runs a store call, and tells how many checks its round trip carried:
/// 1, unless the Redis store's group commit said more ([`record_batch`]).
pub async fn counting_batch<F: std::future::Future>(call: F) -> (F::Output, u64) {
    BATCH
        .scope(std::cell::Cell::new(1), async {
            let output = call.await;
            (output, BATCH.with(std::cell::Cell::get))
        })
        .await
}

/// Tells the store call under way (in [`counting_batch`]) how many checks
/// shared its round trip (a Redis group commit); nothing outside one.
pub fn record_batch(checks: usize) {
    if !exporting() {
        return;
    }
    let _ = BATCH.try_with(|batch| batch.set(checks as u64));
}
