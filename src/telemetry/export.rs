//! The OTLP span exporter, in the clear or over TLS, and the tracer
//! provider around it.

use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::settings::{OtlpProtocol, TelemetrySettings};

/// The OTLP span exporter. Over TLS (an `https://` endpoint) both
/// protocols connect through hyper-rustls with the configuration of
/// [`crate::tls`]: the OTLP/HTTP client is the hyper one it uses anyway,
/// given that connector; OTLP/gRPC gets a tonic channel made on it (h2 by
/// ALPN), since tonic is built without TLS of its own.
fn exporter(url: &str, telemetry: &TelemetrySettings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{SpanExporter, WithHttpConfig, WithTonicConfig};

    let timeout = telemetry.export_timeout.0;
    let tls = if telemetry.uses_tls() {
        Some(crate::tls::client_config(&telemetry.tls_files()).map_err(|e| e.to_string())?)
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

/// The tracer provider: the OTLP exporter behind a batch processor on the
/// Tokio runtime, a parent-based always-on sampler (the ratio is applied
/// where requests arrive, [`Head`]), and the service's name.
pub(super) fn provider(url: &str, telemetry: &TelemetrySettings) -> Result<SdkTracerProvider, String> {
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
