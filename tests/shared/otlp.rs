//! A minimal OpenTelemetry collector for the tests: `POST /v1/traces`
//! with OTLP/HTTP protobuf bodies on a loopback port of its own (bound to
//! port 0 and kept), every span kept with its resource's `service.name`.
//! Shared by the test binaries that check traces (`#[path]` module); each
//! uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A collector: `POST /v1/traces` with protobuf bodies, every span kept
/// with its resource's `service.name`.
pub struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    requests: Arc<Mutex<usize>>,
}

type Received = (Arc<Mutex<Vec<(String, Span)>>>, Arc<Mutex<usize>>);

impl Collector {
    pub fn start() -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let state: Received = (spans.clone(), requests.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new().route("/v1/traces", post(receive)).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Collector { addr, spans, requests }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }

    pub fn span_named(&self, name: &str) -> Option<Span> {
        self.spans().into_iter().map(|(_, s)| s).find(|s| s.name == name)
    }

    pub fn exports(&self) -> usize {
        *self.requests.lock().unwrap()
    }
}

async fn receive(State((spans, requests)): State<Received>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    *requests.lock().unwrap() += 1;
    let mut kept = spans.lock().unwrap();
    for resource in export.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| text(&r.attributes, "service.name"))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            kept.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
        }
    }
    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
}

pub fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}
