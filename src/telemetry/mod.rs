//! Logging through `tracing-subscriber`, and traces through OpenTelemetry.
//!
//! **Logs**: human-readable lines by default, one JSON object per line with
//! `--log-format json`. The filter comes from `RUST_LOG` when set, else
//! `log.level`, else `info`.
//!
//! **Traces** (`[telemetry] otlp_endpoint`, off by default): a
//! `tracing-opentelemetry` layer turns the service's own spans into
//! OpenTelemetry spans, batched and exported over OTLP (HTTP/protobuf, or
//! gRPC), in the clear or over TLS (`https://`, [`crate::tls`]). The
//! spans:
//!
//! - `request`, around every HTTP request ([`crate::http::request_id`]),
//!   child of the caller's span when the request carries a W3C
//!   `traceparent` (and `tracestate`);
//! - `grpc`, around every `ShouldRateLimit` call, likewise from the call's
//!   metadata;
//! - `store`, one per store call of a check ([`StoreCall`]), child of the
//!   above: the rule, the algorithm, how many counters the call decides,
//!   how many checks shared its round trip (`batch`), and the outcome.
//!   Never the key, not even hashed.
//!
//! Sampling is parent-based and decided where a request arrives
//! ([`Head`]): a request with a `traceparent` follows its caller's
//! decision; others are kept at `sample_ratio`. A request that is not
//! traced makes no span the trace layer sees.
//!
//! When traces are off, the layer is not installed at all, and the hot
//! path makes no span of its own: [`exporting`] is one relaxed atomic load.
//!
//! Files: `mod.rs`, the subscriber and [`init`]; `export.rs`, the OTLP
//! exporter and the tracer provider; `spans.rs`, what the wings call to
//! make spans ([`Head`], [`StoreCall`], the batch count).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, TelemetrySettings};

mod export;
mod spans;

pub use spans::{counting_batch, in_sampled_trace, record_batch, Head, Headers, Metadata, StoreCall};

/// Whether spans are being exported (set once, by [`init`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported: callers make their spans only then.
#[inline]
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The target of the spans made for traces only (`store`, `grpc`): the
/// log lines do not show them.
pub const TRACE_TARGET: &str = "ratelimiter::trace";

/// The target of the `request` span of a request that is not traced: the
/// log lines show it as any other, the trace layer never sees it.
pub const UNTRACED_TARGET: &str = "ratelimiter::untraced";

/// What [`init`] started; [`Telemetry::shutdown`] exports what is left.
#[must_use = "shut it down to export the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still waiting and stops the exporter (blocking, up
    /// to the export timeout); nothing when traces are off.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            EXPORTING.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "the last spans could not be exported");
            }
        }
    }
}

/// Installs the global subscriber: logs always, traces when
/// `telemetry.otlp_endpoint` is set. Traces need a Tokio runtime: call it
/// inside one (the exporter runs on it). A second call does nothing.
///
/// When the exporter cannot be made, logging is installed alone and the
/// error returned.
pub fn init(format: LogFormat, level: Option<&str>, telemetry: &TelemetrySettings) -> Result<Telemetry, String> {
    let filter = || {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let Some(url) = telemetry.traces_url() else {
        logs_only(format, filter());
        return Ok(Telemetry { provider: None });
    };
    let provider = match export::provider(&url, telemetry) {
        Ok(provider) => provider,
        Err(e) => {
            logs_only(format, filter());
            return Err(format!("cannot export traces to {url}: {e}"));
        }
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    // Logs: as without traces, less the spans made for traces only.
    let logs = tracing_subscriber::filter::filter_fn(|meta| meta.target() != TRACE_TARGET);
    // Traces: the service's spans of traced requests, and no events (they
    // may name keys).
    let traces = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && meta.target().starts_with("ratelimiter") && meta.target() != UNTRACED_TARGET
    });
    let tracer = provider.tracer("ratelimiter");
    // Only what the spans say: no source location, thread, target or
    // busy/idle times (the last takes the time at every poll of a request
    // span), and no OpenTelemetry context made current on entry, which
    // nothing in the service reads (spans find their parent through the
    // layer).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false);
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter().and(logs)))
        .with(otel.with_filter(traces))
        .try_init();
    if installed.is_err() {
        let _ = provider.shutdown();
        return Ok(Telemetry { provider: None });
    }
    spans::set_sample_ratio(telemetry.sample_ratio);
    EXPORTING.store(true, Ordering::Relaxed);
    Ok(Telemetry {
        provider: Some(provider),
    })
}

fn logs_only(format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
