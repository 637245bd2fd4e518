//! Redis goes away and comes back: checks fail fast and transiently while it
//! is gone (503 over HTTP, never a hang), and work again once it returns,
//! without restarting the service.

use std::time::{Duration, Instant};

use ratelimiter::core::{Algorithm, Cost, Policy};
use ratelimiter::settings::HumanDuration;
use ratelimiter::store::{Store, StoreKey};
use serde_json::{json, Value};

use crate::common::{connect, standalone_settings, unique_prefix};
use ratelimiter_testkit::redis::RedisServer;
use ratelimiter_testkit::service::Service;

const KEY: StoreKey<'static> = StoreKey {
    rule: "recovery",
    key: "user:1",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_fails_fast_while_redis_is_down_and_reconnects() {
    let mut server = RedisServer::start();
    let mut settings = standalone_settings(&server.url(), &unique_prefix("recovery"));
    settings.command_timeout = HumanDuration(Duration::from_millis(200));
    let store = connect(&settings).await;
    let policy = Policy::new(Algorithm::TokenBucket, 5, Duration::from_secs(60)).unwrap();
    assert!(store.check(KEY, &policy, Cost::ONE).await.unwrap().allowed);

    server.kill();
    let started = Instant::now();
    let err = store.check(KEY, &policy, Cost::ONE).await.expect_err("Redis is gone");
    assert!(err.transient, "{err}");
    // Bounded by the command timeout (plus scheduling), not by TCP timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let decision = loop {
        match store.check(KEY, &policy, Cost::ONE).await {
            Ok(decision) => break decision,
            Err(e) => {
                assert!(e.transient, "{e}");
                assert!(Instant::now() < deadline, "never reconnected: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The restarted server is empty: the bucket starts full again, and the
    // scripts were reloaded after NOSCRIPT.
    assert_eq!((decision.allowed, decision.remaining), (true, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_503_while_redis_is_down() {
    let mut server = RedisServer::start();
    let config = format!(
        "[store]\nbackend = \"redis\"\nfailure_mode = \"closed\"\n[store.redis]\nurl = \"{}\"\ncommand_timeout = \"200ms\"\nkey_prefix = \"{}\"\n",
        server.url(),
        unique_prefix("http503")
    );
    let service = Service::start(&config);
    let client = reqwest::Client::new();
    let check = || {
        client
            .post(service.url("/check"))
            .json(&json!({"key": "user:1"}))
            .send()
    };
    assert_eq!(check().await.unwrap().status(), 200);

    server.kill();
    let response = check().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["allowed"].as_bool(), body["reason"].as_str()),
        (Some(false), Some("store_unavailable"))
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while check().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "the service never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_service_refuses_to_start_without_redis() {
    let config =
        "[store]\nbackend = \"redis\"\n[store.redis]\nurl = \"redis://127.0.0.1:1\"\nconnect_timeout = \"300ms\"\n";
    let stderr = ratelimiter_testkit::service::Service::refused(config);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}
