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

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::core::{Algorithm, Policy};
use crate::settings::{LogFormat, OtlpProtocol, TelemetrySettings};
use crate::tls::ClientFiles;

/// Whether spans are being exported (set once, by [`init`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// `sample_ratio`, as the bits of an `f64` (set once, by [`init`]).
static SAMPLE_RATIO: AtomicU64 = AtomicU64::new(0);

/// Whether spans are being exported: callers make their spans only then.
#[inline]
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether the current span's trace is sampled, so that a span made
/// under it would be exported. With a parent-based sampler, a child of an
/// unsampled request is dropped anyway: not making it saves building it.
pub fn in_sampled_trace() -> bool {
    use opentelemetry::trace::TraceContextExt;
    tracing::Span::current().context().span().span_context().is_sampled()
}

/// The target of the spans made for traces only (`store`, `grpc`): the
/// log lines do not show them.
pub const TRACE_TARGET: &str = "ratelimiter::trace";

/// The target of the `request` span of a request that is not traced: the
/// log lines show it as any other, the trace layer never sees it.
pub const UNTRACED_TARGET: &str = "ratelimiter::untraced";

/// Whether a request that has just arrived is traced, decided once, where
/// it arrives (head sampling): a caller's valid W3C `traceparent` decides
/// by its sampled flag, and the request joins that trace; otherwise the
/// request starts a trace of its own with probability `sample_ratio`.
///
/// Deciding before the request's span is made, rather than in the
/// OpenTelemetry sampler when the span opens, means a request that is not
/// traced costs the trace layer nothing: its span is made under
/// [`UNTRACED_TARGET`] (or, for gRPC, not at all), and no `store` span
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
    let provider = match provider(&url, telemetry) {
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
    SAMPLE_RATIO.store(telemetry.sample_ratio.to_bits(), Ordering::Relaxed);
    EXPORTING.store(true, Ordering::Relaxed);
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The OTLP span exporter. Over TLS (an `https://` endpoint) both
/// protocols connect through hyper-rustls with the configuration of
/// [`crate::tls`]: the OTLP/HTTP client is the hyper one it uses anyway,
/// given that connector; OTLP/gRPC gets a tonic channel made on it (h2 by
/// ALPN), since tonic is built without TLS of its own.
fn exporter(url: &str, telemetry: &TelemetrySettings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{SpanExporter, WithHttpConfig, WithTonicConfig};

    let timeout = telemetry.export_timeout.0;
    let tls = if telemetry.uses_tls() {
        let files = ClientFiles::new(
            &telemetry.tls_ca_file,
            &telemetry.tls_cert_file,
            &telemetry.tls_key_file,
            [
                "telemetry.tls_ca_file",
                "telemetry.tls_cert_file",
                "telemetry.tls_key_file",
            ],
        );
        Some(crate::tls::client_config(&files).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let https = |config, http2: bool| {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only();
        if http2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        }
    };
    let exporter = match (telemetry.protocol, tls) {
        (OtlpProtocol::Http, tls) => {
            let builder = SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(timeout);
            match tls {
                Some(config) => builder
                    .with_http_client(opentelemetry_http::hyper::HyperClient::new(
                        https(config, false),
                        timeout,
                        None,
                    ))
                    .build(),
                None => builder.build(),
            }
        }
        (OtlpProtocol::Grpc, None) => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .with_timeout(timeout)
            .build(),
        (OtlpProtocol::Grpc, Some(config)) => {
            let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
                .map_err(|e| e.to_string())?
                .timeout(timeout)
                .connect_with_connector_lazy(https(config, true));
            SpanExporter::builder()
                .with_tonic()
                .with_channel(channel)
                .with_timeout(timeout)
                .build()
        }
    };
    exporter.map_err(|e| e.to_string())
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

/// The tracer provider: the OTLP exporter behind a batch processor on the
/// Tokio runtime, a parent-based always-on sampler (the ratio is applied
/// where requests arrive, [`Head`]), and the service's name.
fn provider(url: &str, telemetry: &TelemetrySettings) -> Result<SdkTracerProvider, String> {
    let exporter = exporter(url, telemetry)?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(telemetry.export_interval.0)
        .with_max_export_timeout(telemetry.export_timeout.0)
        .build();
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .with_batch_config(batch)
    .build();
    // The ratio is applied where requests arrive ([`Head`]); what reaches
    // the sampler has been chosen already.
    let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(telemetry.service_name.clone())
                .build(),
        )
        .build())
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
