//! Traces over OTLP/HTTP, received by a minimal collector started in the test (`tests/shared/otlp.rs`): the
//! real binary's `request` and `store` spans continue the caller's trace
//! (W3C `traceparent`), carry the rule, algorithm, batch and outcome and
//! never the key; sampling is parent-based; nothing is exported when
//! traces are off; gRPC calls continue the caller's trace from metadata;
//! OTLP/HTTP and OTLP/gRPC, in the clear and over TLS (with a private
//! authority, mutual TLS, and an untrusted collector refused), carry the
//! standard `OTEL_EXPORTER_OTLP_HEADERS`.

use std::time::Duration;

use serde_json::json;

use crate::otlp::{text, Collector};
use opentelemetry_proto::tonic::trace::v1::Span;
use ratelimiter_testkit::redis::TlsFiles;
use ratelimiter_testkit::service::Service;
use ratelimiter_testkit::{poll_until, wait_until};

/// A key no span may carry, in any form.
const KEY: &str = "user-7f3a-secret-key";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn config(endpoint: &str, ratio: f64) -> String {
    format!(
        r#"
[telemetry]
otlp_endpoint = "{endpoint}"
sample_ratio = {ratio}
service_name = "rl-under-test"
export_interval = "20ms"
[[rules]]
endpoint = "GET /search"
algorithm = "sliding_window_counter"
limit = 1
window = "1h"
"#
    )
}

async fn check(service: &Service, traceparent: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(service.url("/check"))
        .json(&json!({"key": KEY, "endpoint": "GET /search"}));
    if let Some(traceparent) = traceparent {
        request = request
            .header("traceparent", traceparent)
            .header("tracestate", "vendor=opaque");
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn request_and_store_spans_continue_the_callers_trace_and_never_name_the_key() {
    let collector = Collector::start();
    let service = Service::start(&config(&collector.endpoint(), 1.0));
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    assert_eq!(check(&service, Some(&traceparent)).await, 200);
    assert_eq!(check(&service, Some(&traceparent)).await, 429);
    wait_until("two store spans", Duration::from_secs(10), || {
        collector.spans().iter().filter(|(_, s)| s.name == "store").count() >= 2
    });

    let spans = collector.spans();
    let requests: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "request" && text(&s.attributes, "path").as_deref() == Some("/check"))
        .collect();
    assert_eq!(requests.len(), 2, "{spans:#?}");
    for request in &requests {
        assert_eq!(hex(&request.trace_id), TRACE_ID, "the caller's trace");
        assert_eq!(
            hex(&request.parent_span_id),
            PARENT_ID,
            "the caller's span is the parent"
        );
        assert_eq!(request.trace_state, "vendor=opaque");
        assert_eq!(text(&request.attributes, "method").as_deref(), Some("POST"));
    }
    let mut outcomes = Vec::new();
    for (_, store) in spans.iter().filter(|(_, s)| s.name == "store") {
        let parent = requests
            .iter()
            .find(|r| r.span_id == store.parent_span_id)
            .expect("a store span is the child of a request span");
        assert_eq!(store.trace_id, parent.trace_id);
        let attribute = |key| text(&store.attributes, key);
        assert_eq!(attribute("rule").as_deref(), Some("GET /search"));
        assert_eq!(attribute("algorithm").as_deref(), Some("sliding_window_counter"));
        assert_eq!(attribute("counters").as_deref(), Some("1"));
        assert_eq!(attribute("batch").as_deref(), Some("1"));
        outcomes.extend(attribute("outcome"));
    }
    outcomes.sort();
    assert_eq!(outcomes, ["allowed", "limited"]);
    // Only what the spans say: no source location, thread, target or
    // busy/idle times.
    let keys = |span: &Span| {
        let mut keys: Vec<String> = span.attributes.iter().map(|a| a.key.clone()).collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(requests[0]), ["method", "path", "request_id"]);
    let store = collector.span_named("store").unwrap();
    assert_eq!(keys(&store), ["algorithm", "batch", "counters", "outcome", "rule"]);
    assert!(spans.iter().all(|(service, _)| service == "rl-under-test"));
    let everything = format!("{spans:?}");
    assert!(!everything.contains(KEY), "the key appears in a span: {everything}");
    assert!(!everything.contains("secret"), "part of the key appears in a span");
}

#[tokio::test]
async fn a_zero_ratio_keeps_no_trace_of_its_own_but_follows_a_sampled_caller() {
    let collector = Collector::start();
    let service = Service::start(&config(&collector.endpoint(), 0.0));
    assert_eq!(check(&service, None).await, 200);
    let unsampled = format!("00-{TRACE_ID}-{PARENT_ID}-00");
    assert_eq!(check(&service, Some(&unsampled)).await, 429);
    // An export interval is 20 ms: well past it, nothing came.
    assert!(!poll_until(Duration::from_millis(500), || collector.exports() > 0));
    assert!(collector.spans().is_empty());

    let sampled = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    assert_eq!(check(&service, Some(&sampled)).await, 429);
    wait_until("the sampled caller's spans", Duration::from_secs(10), || {
        collector.span_named("store").is_some()
    });
    let spans = collector.spans();
    assert!(
        spans.iter().all(|(_, s)| hex(&s.trace_id) == TRACE_ID),
        "only the sampled caller's trace: {spans:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ratio_is_decided_once_per_request_and_an_unsampled_caller_wins_at_any_ratio() {
    let collector = Collector::start();
    let toml = config(&collector.endpoint(), 0.5).replace("limit = 1\n", "limit = 1000\n");
    let service = Service::start(&toml);
    const REQUESTS: usize = 200;
    for _ in 0..REQUESTS {
        assert_eq!(check(&service, None).await, 200);
    }
    // A last sampled caller marks the end: its spans leave after the
    // others'.
    let sampled = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    assert_eq!(check(&service, Some(&sampled)).await, 200);
    wait_until("the sampled caller's spans", Duration::from_secs(10), || {
        collector
            .spans()
            .iter()
            .any(|(_, s)| s.name == "store" && hex(&s.trace_id) == TRACE_ID)
    });
    let spans = collector.spans();
    let own = |name: &str| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name && hex(&s.trace_id) != TRACE_ID)
            .collect()
    };
    let (requests, stores) = (own("request"), own("store"));
    // Binomial(200, 0.5): 100, standard deviation 7; outside 70..=130
    // (over four deviations, once in 30,000 runs by chance) the ratio is
    // not applied once (applied twice, it keeps 50).
    assert!(
        (70..=130).contains(&requests.len()),
        "{} of {REQUESTS} kept",
        requests.len()
    );
    // Each kept request has its store span, and no store span is kept
    // without its request.
    assert_eq!(stores.len(), requests.len());
    for store in &stores {
        assert!(requests.iter().any(|r| r.span_id == store.parent_span_id));
    }

    // At ratio 1.0 an unsampled caller still keeps nothing.
    let collector = Collector::start();
    let service = Service::start(&config(&collector.endpoint(), 1.0));
    let unsampled = format!("00-{TRACE_ID}-{PARENT_ID}-00");
    assert_eq!(check(&service, Some(&unsampled)).await, 200);
    assert_eq!(check(&service, None).await, 429);
    wait_until("the second request's spans", Duration::from_secs(10), || {
        collector.span_named("store").is_some()
    });
    let spans = collector.spans();
    assert!(spans.iter().all(|(_, s)| hex(&s.trace_id) != TRACE_ID), "{spans:#?}");
    assert_eq!(spans.iter().filter(|(_, s)| s.name == "store").count(), 1);
}

#[tokio::test]
async fn nothing_is_exported_when_traces_are_off() {
    let collector = Collector::start();
    // The collector is there, but the configuration names none.
    let service = Service::start("[defaults]\nlimit = 5\n");
    assert_eq!(
        check(&service, Some(&format!("00-{TRACE_ID}-{PARENT_ID}-01"))).await,
        200
    );
    assert!(!poll_until(Duration::from_millis(300), || collector.exports() > 0));
    let status = service.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(collector.exports(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_continue_the_callers_trace_from_metadata() {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
    use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;

    let collector = Collector::start();
    let toml = format!(
        "{}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[[grpc.domains]]\ndomain = \"edge\"\nkey_entries = [\"user\"]\n",
        config(&collector.endpoint(), 0.0)
    );
    let service = Service::start(&toml);
    let addr = service.grpc_addr().expect("the gRPC listener");
    let mut client = RateLimitServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let mut request = tonic::Request::new(RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "user".into(),
                value: KEY.into(),
            }],
            ..Default::default()
        }],
        hits_addend: 0,
    });
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    client.should_rate_limit(request).await.unwrap();
    wait_until("the gRPC call's spans", Duration::from_secs(10), || {
        collector.span_named("store").is_some() && collector.span_named("grpc").is_some()
    });
    let grpc = collector.span_named("grpc").unwrap();
    assert_eq!(hex(&grpc.trace_id), TRACE_ID);
    assert_eq!(hex(&grpc.parent_span_id), PARENT_ID);
    assert_eq!(text(&grpc.attributes, "domain").as_deref(), Some("edge"));
    let store = collector.span_named("store").unwrap();
    assert_eq!(store.parent_span_id, grpc.span_id);
    assert_eq!(text(&store.attributes, "outcome").as_deref(), Some("allowed"));
    assert!(!format!("{:?}", collector.spans()).contains(KEY));
}

/// A `[telemetry]` section's lines go before the first `[[rules]]`.
fn telemetry_toml(endpoint: &str, protocol: &str, extra: &str) -> String {
    config(endpoint, 1.0).replacen(
        "[[rules]]",
        &format!("protocol = \"{protocol}\"\n{extra}\n[[rules]]"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_protocols_reach_a_collector_in_the_clear_and_over_tls_with_the_standard_headers() {
    let tls = TlsFiles::generate();
    for protocol in ["http", "grpc"] {
        for secure in [false, true] {
            let (collector, extra) = if secure {
                let collector = Collector::start_tls(&tls.server_cert(), &tls.server_key(), None);
                (collector, format!("tls_ca_file = {:?}", tls.ca()))
            } else {
                (Collector::start(), String::new())
            };
            assert_eq!(collector.endpoint().starts_with("https://"), secure);
            let service = Service::start_with_env(
                &telemetry_toml(&collector.endpoint(), protocol, &extra),
                &[(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20t0ken,x-tenant=acme",
                )],
            );
            assert_eq!(check(&service, None).await, 200);
            wait_until(
                &format!("a store span over {protocol}, TLS {secure}"),
                Duration::from_secs(10),
                || collector.span_named("store").is_some(),
            );
            let headers = collector.export_headers("authorization");
            assert!(!headers.is_empty());
            for (arrived_by, value) in headers {
                assert_eq!(arrived_by, protocol);
                assert_eq!(value.as_deref(), Some("Bearer t0ken"));
            }
            assert_eq!(collector.export_headers("x-tenant")[0].1.as_deref(), Some("acme"));
            assert_eq!(collector.failed_handshakes(), 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_the_collector_and_an_untrusted_one_gets_nothing() {
    let tls = TlsFiles::generate();
    for protocol in ["http", "grpc"] {
        // The collector asks for a client certificate signed by the CA.
        let collector = Collector::start_tls(&tls.server_cert(), &tls.server_key(), Some(&tls.ca()));
        let without = Service::start(&telemetry_toml(
            &collector.endpoint(),
            protocol,
            &format!("tls_ca_file = {:?}", tls.ca()),
        ));
        assert_eq!(check(&without, None).await, 200, "traces never stand in a check's way");
        wait_until("a refused handshake", Duration::from_secs(10), || {
            collector.failed_handshakes() > 0
        });
        assert_eq!(collector.exports(), 0);
        drop(without);

        let with = Service::start(&telemetry_toml(
            &collector.endpoint(),
            protocol,
            &format!(
                "tls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}",
                tls.ca(),
                tls.client_cert(),
                tls.client_key()
            ),
        ));
        assert_eq!(check(&with, None).await, 200);
        wait_until(
            &format!("spans over mutual TLS ({protocol})"),
            Duration::from_secs(10),
            || collector.span_named("store").is_some(),
        );
    }

    // A collector whose certificate the service does not trust: the
    // service refuses the handshake, and nothing is sent.
    let collector = Collector::start_tls(&tls.server_cert(), &tls.server_key(), None);
    let service = Service::start(&telemetry_toml(
        &collector.endpoint(),
        "http",
        &format!("tls_ca_file = {:?}", tls.other_ca()),
    ));
    assert_eq!(check(&service, None).await, 200);
    wait_until("the distrusted handshake", Duration::from_secs(10), || {
        collector.failed_handshakes() > 0
    });
    assert_eq!(collector.exports(), 0);
}

#[test]
fn an_unreadable_tls_file_stops_start_up_naming_the_setting() {
    let missing = "/nonexistent/collector-ca.pem";
    let stderr = Service::refused(&telemetry_toml(
        "https://127.0.0.1:4318",
        "http",
        &format!("tls_ca_file = {missing:?}"),
    ));
    assert!(
        stderr.contains("telemetry.tls_ca_file") && stderr.contains(missing),
        "{stderr}"
    );
}
