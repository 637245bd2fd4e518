//! The gRPC RateLimitService on Redis and on a cluster: three replicas
//! admit exactly the limit over gRPC, descriptors stay all or nothing, and
//! a store that fails gets the rule's failure mode (closed: UNAVAILABLE).

use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use tonic::transport::Channel;

use crate::common::{cluster_toml, standalone_toml, unique_prefix};
use ratelimiter_testkit::redis::{RedisCluster, RedisServer};
use ratelimiter_testkit::service::Service;

fn config(redis: &str, mode: &str) -> String {
    format!(
        r#"
[log]
level = "warn"
[store]
backend = "redis"
failure_mode = "{mode}"
[store.redis]
{redis}
key_prefix = "{}"
command_timeout = "2s"
[grpc]
listen = "127.0.0.1:0"
[[grpc.domains]]
domain = "edge"
endpoint_entry = "path"
key_entries = ["user"]
[defaults]
algorithm = "fixed_window"
limit = 100
window = "1d"
[[rules]]
endpoint = "/narrow"
algorithm = "token_bucket"
limit = 1
window = "300days"
"#,
        unique_prefix("grpc")
    )
}

fn request(descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".into(),
        descriptors: descriptors
            .iter()
            .map(|pairs| RateLimitDescriptor {
                entries: pairs
                    .iter()
                    .map(|(k, v)| Entry {
                        key: (*k).into(),
                        value: (*v).into(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        hits_addend: 0,
    }
}

async fn client(service: &Service) -> RateLimitServiceClient<Channel> {
    let addr = service.grpc_addr().expect("a gRPC listener");
    RateLimitServiceClient::connect(format!("http://{addr}")).await.unwrap()
}

/// 200 concurrent calls, two each, over three replicas: exactly 100 OK for
/// a limit of 100, every `limit_remaining` from 99 to 0 once.
async fn three_replicas_admit_exactly_the_limit(redis: &str) {
    let config = config(redis, "closed");
    let replicas: Vec<Service> = (0..3).map(|_| Service::start(&config)).collect();
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(client(replica).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..200 {
        let mut client = clients[c % 3].clone();
        tasks.spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..2 {
                let answer = client
                    .should_rate_limit(request(&[&[("user", "hot")]]))
                    .await
                    .expect("answered")
                    .into_inner();
                answers.push((answer.overall_code, answer.statuses[0].limit_remaining));
            }
            answers
        });
    }
    let mut remaining = Vec::new();
    let mut over = 0;
    while let Some(answers) = tasks.join_next().await {
        for (code, left) in answers.unwrap() {
            if code == Code::Ok as i32 {
                remaining.push(left);
            } else {
                assert_eq!(code, Code::OverLimit as i32);
                over += 1;
            }
        }
    }
    remaining.sort_unstable();
    assert_eq!(remaining, (0..100).collect::<Vec<u32>>(), "each remaining value once");
    assert_eq!(over, 300);

    // All or nothing: the narrow limit denies, the broad one keeps its units.
    let mut client = clients[0].clone();
    let both = || request(&[&[("user", "u")], &[("user", "u"), ("path", "/narrow")]]);
    assert_eq!(
        client
            .should_rate_limit(both())
            .await
            .unwrap()
            .into_inner()
            .overall_code,
        Code::Ok as i32
    );
    let denied = client.should_rate_limit(both()).await.unwrap().into_inner();
    assert_eq!(denied.overall_code, Code::OverLimit as i32);
    let broad = clients[1]
        .clone()
        .should_rate_limit(request(&[&[("user", "u")]]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        broad.statuses[0].limit_remaining, 98,
        "the denied call gave back its unit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_admit_exactly_the_limit_over_grpc() {
    let server = RedisServer::start();
    three_replicas_admit_exactly_the_limit(&standalone_toml(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_cluster_admit_exactly_the_limit_over_grpc() {
    let cluster = RedisCluster::start();
    three_replicas_admit_exactly_the_limit(&cluster_toml(&cluster)).await;
}

/// Redis gone: `closed` answers UNAVAILABLE (Envoy's failure_mode_deny
/// decides), `open` answers OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_gets_the_failure_mode() {
    let mut server = RedisServer::start();
    let closed = Service::start(&config(&standalone_toml(&server), "closed"));
    let open = Service::start(&config(&standalone_toml(&server), "open"));
    let (mut closed_client, mut open_client) = (client(&closed).await, client(&open).await);
    server.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match closed_client.should_rate_limit(request(&[&[("user", "f")]])).await {
            Err(status) if status.code() == tonic::Code::Unavailable => break,
            _ => assert!(
                std::time::Instant::now() < deadline,
                "UNAVAILABLE once the store is gone"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = open_client
        .should_rate_limit(request(&[&[("user", "f")]]))
        .await
        .expect("open answers")
        .into_inner();
    assert_eq!(answer.overall_code, Code::Ok as i32);
}
