//! Trace context on the client's requests (feature `opentelemetry`): the
//! current `tracing` span's OpenTelemetry context, through
//! `tracing-opentelemetry`, goes with every request to the service as W3C
//! `traceparent` (and `tracestate`), so the service's spans join the
//! caller's trace.
//!
//! The global propagator writes the headers (set one with
//! `opentelemetry::global::set_text_map_propagator`, as OpenTelemetry
//! applications do); when it writes no `traceparent` (none was set), the
//! W3C headers are written here, since the service reads those.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::Injector;
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Writes the current span's trace context into `headers`; nothing when
/// there is no valid one (no OpenTelemetry layer, or no span).
pub(crate) fn inject(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let context = span.span_context();
    if !context.is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut Headers(headers));
    });
    if headers.contains_key("traceparent") {
        return;
    }
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    );
    Headers(headers).set("traceparent", traceparent);
    let tracestate = context.trace_state().header();
    if !tracestate.is_empty() {
        Headers(headers).set("tracestate", tracestate);
    }
}

struct Headers<'a>(&'a mut HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}
