//! Feature `opentelemetry`: the client's requests carry the current span's
//! trace context as W3C `traceparent`, received by a tiny service on a
//! loopback port that answers every check "allowed".

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use ratelimiter_client::{CheckRequest, Client};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

const ALLOWED: &str = r#"{"allowed":true,"limit":5,"remaining":4,"reset_after_ms":1000,"retry_after_ms":0,
    "rule":"default","tier":"default","algorithm":"token_bucket","reason":"allowed"}"#;

/// A service that keeps the `traceparent` of every check it answers.
async fn service() -> (Client, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let app = Router::new().route(
        "/check",
        post(move |headers: HeaderMap| {
            let traceparent = headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            kept.lock().unwrap().push(traceparent);
            async { ([("content-type", "application/json")], ALLOWED) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (Client::new(&format!("http://{addr}")).unwrap(), seen)
}

#[tokio::test]
async fn checks_carry_the_current_spans_trace_context() {
    let provider = SdkTracerProvider::builder().build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);
    let (client, seen) = service().await;

    let span = tracing::info_span!("handling an API request");
    let cx = span.context();
    let expected = format!(
        "00-{}-{}-01",
        cx.span().span_context().trace_id(),
        cx.span().span_context().span_id()
    );
    // Without a global propagator the W3C headers are written anyway; with
    // one, it writes them.
    let outcome = client.check(&CheckRequest::new("k")).instrument(span.clone()).await;
    assert!(outcome.unwrap().allowed);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    client.check(&CheckRequest::new("k")).instrument(span).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(expected.clone()), Some(expected)]);
}

#[tokio::test]
async fn no_span_no_header() {
    let (client, seen) = service().await;
    client.check(&CheckRequest::new("k")).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [None]);
}
