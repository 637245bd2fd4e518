//! A minimal OpenTelemetry collector for the tests, on a loopback port of
//! its own (bound to port 0 and kept): OTLP/HTTP (`POST /v1/traces`,
//! protobuf bodies) and OTLP/gRPC (`TraceService/Export`) on the same
//! port, in the clear (HTTP/1 or h2c) or over TLS (ALPN `h2` or
//! `http/1.1`, optionally asking for a client certificate). Every span is
//! kept with its resource's `service.name`, and every export's headers.
//! Shared by the test binaries that check traces (`#[path]` module); each
//! uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What the collector has received.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    /// One entry per export: its protocol (`http` or `grpc`) and headers.
    exports: Arc<Mutex<Vec<(&'static str, HeaderMap)>>>,
    /// TLS handshakes the collector refused or that the client gave up.
    failed_handshakes: Arc<Mutex<usize>>,
}

impl Received {
    fn keep(&self, protocol: &'static str, headers: HeaderMap, export: ExportTraceServiceRequest) {
        self.exports.lock().unwrap().push((protocol, headers));
        let mut kept = self.spans.lock().unwrap();
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
    }
}

/// A collector: see the module's documentation.
pub struct Collector {
    addr: SocketAddr,
    tls: bool,
    received: Received,
}

impl Collector {
    /// In the clear: HTTP/1 and h2c.
    pub fn start() -> Collector {
        Collector::serve(None)
    }

    /// Over TLS with the certificate `cert` and its `key`; with
    /// `client_ca`, a client certificate signed by it is required.
    pub fn start_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Collector {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        // ring, as the service uses (deprecated by rustls for lacking
        // post-quantum key exchange).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).unwrap() {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Collector::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Received::default();
        let grpc = tonic::service::Routes::new(TraceServiceServer::new(Grpc(received.clone()))).into_axum_router();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(received.clone())
            .merge(grpc);
        let secure = tls.is_some();
        let kept = received.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (app, tls, received) = (app.clone(), tls.clone(), received.clone());
                    tokio::spawn(async move {
                        let service = TowerToHyperService::new(app);
                        let server = auto::Builder::new(TokioExecutor::new());
                        // A failed handshake (no client certificate, or
                        // one side distrusts the other) is counted.
                        let _ = match tls {
                            Some(tls) => match tls.accept(tcp).await {
                                Ok(stream) => server.serve_connection(TokioIo::new(stream), service).await,
                                Err(_) => {
                                    *received.failed_handshakes.lock().unwrap() += 1;
                                    return;
                                }
                            },
                            None => server.serve_connection(TokioIo::new(tcp), service).await,
                        };
                    });
                }
            });
        });
        Collector {
            addr,
            tls: secure,
            received: kept,
        }
    }

    /// `http://` or `https://` and the address.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<(String, Span)> {
        self.received.spans.lock().unwrap().clone()
    }

    pub fn span_named(&self, name: &str) -> Option<Span> {
        self.spans().into_iter().map(|(_, s)| s).find(|s| s.name == name)
    }

    /// How many exports arrived.
    pub fn exports(&self) -> usize {
        self.received.exports.lock().unwrap().len()
    }

    /// How many TLS handshakes failed.
    pub fn failed_handshakes(&self) -> usize {
        *self.received.failed_handshakes.lock().unwrap()
    }

    /// Each export's protocol (`http` or `grpc`) and the value of its
    /// header `name`, if any.
    pub fn export_headers(&self, name: &str) -> Vec<(&'static str, Option<String>)> {
        self.received
            .exports
            .lock()
            .unwrap()
            .iter()
            .map(|(protocol, headers)| {
                let value = headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                (*protocol, value)
            })
            .collect()
    }
}

async fn receive(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    received.keep("http", headers, export);
    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
}

struct Grpc(Received);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        self.0.keep("grpc", headers, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
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
