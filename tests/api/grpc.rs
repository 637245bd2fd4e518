//! The gRPC RateLimitService through a tonic client against the real
//! binary (memory store): allow and deny, several descriptors all or
//! nothing, hits, peeks and refunds, bad and hostile requests, health, and
//! a drain that keeps answering.

use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use ratelimiter_testkit::service::Service;

const CONFIG: &str = r#"
[server]
drain_grace = "1s"
shutdown_timeout = "5s"
[grpc]
listen = "127.0.0.1:0"
max_descriptors = 8
[[grpc.domains]]
domain = "edge"
endpoint_entry = "path"
key_entries = ["remote_address"]
tier_entry = "tier"
[defaults]
algorithm = "fixed_window"
limit = 5
window = "1h"
[tiers]
pro = { limit = 50 }
[[rules]]
endpoint = "/login"
algorithm = "fixed_window"
limit = 1
window = "1m"
[[rules]]
endpoint = "/shadow"
algorithm = "fixed_window"
limit = 1
window = "1h"
shadow = true
"#;

fn descriptor(pairs: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: pairs
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        ..Default::default()
    }
}

fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".into(),
        descriptors,
        hits_addend: 0,
    }
}

async fn client(service: &Service) -> RateLimitServiceClient<Channel> {
    let addr = service.grpc_addr().expect("the gRPC listener");
    RateLimitServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connects")
}

async fn ask(client: &mut RateLimitServiceClient<Channel>, request: RateLimitRequest) -> RateLimitResponse {
    client.should_rate_limit(request).await.expect("answered").into_inner()
}

fn header<'a>(response: &'a RateLimitResponse, name: &str) -> Option<&'a str> {
    response
        .response_headers_to_add
        .iter()
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allows_then_denies_with_statuses_and_headers() {
    let service = Service::start(CONFIG);
    let mut client = client(&service).await;
    let login = || request(vec![descriptor(&[("remote_address", "10.0.0.1"), ("path", "/login")])]);
    let first = ask(&mut client, login()).await;
    assert_eq!(first.overall_code, Code::Ok as i32);
    let status = &first.statuses[0];
    assert_eq!(status.code, Code::Ok as i32);
    assert_eq!(status.limit_remaining, 0);
    let limit = status.current_limit.as_ref().unwrap();
    assert_eq!(
        (limit.name.as_str(), limit.requests_per_unit, limit.unit),
        ("/login", 1, Unit::Minute as i32)
    );
    assert_eq!(header(&first, "x-ratelimit-limit"), Some("1"));
    let second = ask(&mut client, login()).await;
    assert_eq!(second.overall_code, Code::OverLimit as i32);
    assert_eq!(second.statuses[0].code, Code::OverLimit as i32);
    assert!(header(&second, "retry-after").is_some());
    // The same counter as /check's.
    let check: serde_json::Value = reqwest::Client::new()
        .post(service.url("/check"))
        .json(&serde_json::json!({"key": "10.0.0.1", "endpoint": "/login", "cost": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(check["remaining"], 0, "{check}");
    // The same metrics, with the protocol.
    let metrics = reqwest::get(service.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"rate_limit_requests_total{decision="allowed",protocol="grpc",rule="/login",tier="default"} 1"#,
        r#"rate_limit_requests_total{decision="limited",protocol="grpc",rule="/login",tier="default"} 1"#,
        r#"rate_limit_grpc_requests_total{code="OK",domain="edge"} 1"#,
        r#"rate_limit_grpc_requests_total{code="OVER_LIMIT",domain="edge"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_descriptors_are_all_or_nothing() {
    let service = Service::start(CONFIG);
    let mut client = client(&service).await;
    // The default rule (5 per hour) for the user, /login (1 per minute).
    let both = || {
        request(vec![
            descriptor(&[("remote_address", "u1")]),
            descriptor(&[("remote_address", "u1"), ("path", "/login")]),
        ])
    };
    let first = ask(&mut client, both()).await;
    assert_eq!(first.overall_code, Code::Ok as i32);
    assert_eq!(first.statuses[0].limit_remaining, 4);
    let second = ask(&mut client, both()).await;
    assert_eq!(second.overall_code, Code::OverLimit as i32);
    assert_eq!(second.statuses[0].code, Code::Ok as i32);
    assert_eq!(second.statuses[1].code, Code::OverLimit as i32);
    // The broad limit gave back what the denied request took.
    assert_eq!(second.statuses[0].limit_remaining, 4);
    let alone = ask(&mut client, request(vec![descriptor(&[("remote_address", "u1")])])).await;
    assert_eq!(alone.statuses[0].limit_remaining, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_addend_peeks_refunds_tiers_and_shadow() {
    let service = Service::start(CONFIG);
    let mut client = client(&service).await;
    let user = |key: &str| descriptor(&[("remote_address", key)]);
    let mut three = request(vec![user("h")]);
    three.hits_addend = 3;
    assert_eq!(ask(&mut client, three).await.statuses[0].limit_remaining, 2);
    // A descriptor's own hits win; an explicit 0 is a peek.
    let mut peek = user("h");
    peek.hits_addend = Some(UInt64Value { value: 0 });
    let mut request_hits = request(vec![peek]);
    request_hits.hits_addend = 2;
    assert_eq!(ask(&mut client, request_hits).await.statuses[0].limit_remaining, 2);
    // Negative hits give units back.
    let mut refund = user("h");
    refund.hits_addend = Some(UInt64Value { value: 2 });
    refund.is_negative_hits = true;
    assert_eq!(
        ask(&mut client, request(vec![refund])).await.statuses[0].limit_remaining,
        4
    );
    // The tier entry selects the tier's limit.
    let pro = ask(
        &mut client,
        request(vec![descriptor(&[("remote_address", "p"), ("tier", "pro")])]),
    )
    .await;
    assert_eq!(pro.statuses[0].limit_remaining, 49);
    // A shadow rule answers OK over its limit.
    let shadow = || request(vec![descriptor(&[("remote_address", "s"), ("path", "/shadow")])]);
    ask(&mut client, shadow()).await;
    assert_eq!(ask(&mut client, shadow()).await.overall_code, Code::Ok as i32);
    // A descriptor the mapping cannot use matches nothing: OK, no limit.
    let nothing = ask(&mut client, request(vec![descriptor(&[("path", "/login")])])).await;
    assert_eq!(nothing.overall_code, Code::Ok as i32);
    assert!(nothing.statuses[0].current_limit.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_hostile_requests_get_a_clear_status() {
    let service = Service::start(CONFIG);
    let mut client = client(&service).await;
    let refused = |request: RateLimitRequest| {
        let mut client = client.clone();
        async move { client.should_rate_limit(request).await.expect_err("refused") }
    };
    let mut unknown = request(vec![descriptor(&[("remote_address", "x")])]);
    unknown.domain = "nope".into();
    let status = refused(unknown).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("unknown domain \"nope\""),
        "{}",
        status.message()
    );
    assert_eq!(refused(request(vec![])).await.code(), tonic::Code::InvalidArgument);
    let mut no_domain = request(vec![descriptor(&[("remote_address", "x")])]);
    no_domain.domain.clear();
    assert_eq!(refused(no_domain).await.code(), tonic::Code::InvalidArgument);
    let many = request(
        (0..9)
            .map(|i| descriptor(&[("remote_address", &i.to_string())]))
            .collect(),
    );
    assert_eq!(refused(many).await.code(), tonic::Code::InvalidArgument);
    let long = "k".repeat(10_000);
    let status = refused(request(vec![descriptor(&[("remote_address", &long)])])).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("descriptors[0]"), "{}", status.message());
    let bad_tier = refused(request(vec![descriptor(&[("remote_address", "x"), ("tier", "gold")])])).await;
    assert!(bad_tier.message().contains("tier"), "{}", bad_tier.message());
    // Larger than grpc.max_message_bytes (64 KiB): refused before decoding.
    let huge = "v".repeat(100_000);
    let status = refused(request(vec![descriptor(&[("remote_address", "x"), ("pad", &huge)])])).await;
    assert!(
        matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted),
        "{status:?}"
    );
    // Still serving.
    let ok = ask(&mut client, request(vec![descriptor(&[("remote_address", "after")])])).await;
    assert_eq!(ok.overall_code, Code::Ok as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_served_and_a_drain_keeps_answering() {
    let service = Service::start(CONFIG);
    let addr = service.grpc_addr().unwrap();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for name in ["", "envoy.service.ratelimit.v3.RateLimitService"] {
        let answer = health
            .check(HealthCheckRequest { service: name.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "{name:?}");
    }
    let mut client = client(&service).await;
    service.signal("TERM");
    // Draining (drain_grace 1 s): health says NOT_SERVING, calls are answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = health
            .check(HealthCheckRequest { service: "".into() })
            .await
            .unwrap()
            .into_inner();
        if answer.status == ServingStatus::NotServing as i32 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health turns NOT_SERVING when draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = ask(&mut client, request(vec![descriptor(&[("remote_address", "d")])])).await;
    assert_eq!(answer.overall_code, Code::Ok as i32);
    assert!(service.wait_exit(Duration::from_secs(10)).success());
}
