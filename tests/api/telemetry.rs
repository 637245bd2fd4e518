//! Traces over OTLP/HTTP, received by a minimal collector started in the test (`tests/shared/otlp.rs`): the
//! real binary's `request` and `store` spans continue the caller's trace
//! (W3C `traceparent`), carry the rule, algorithm, batch and outcome and
//! never the key; sampling is parent-based; nothing is exported when
//! traces are off; gRPC calls continue the caller's trace from metadata.

use std::time::Duration;

use serde_json::json;

use crate::otlp::{text, Collector};
use opentelemetry_proto::tonic::trace::v1::Span;
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
