//! Traces on the Redis store: each check's `store` span says how many
//! checks went to Redis in the same script call (`batch`), so grouped
//! checks show as such. Received by the collector of `tests/shared/otlp.rs`.

use std::time::Duration;

use serde_json::json;

use crate::common::{standalone_toml, unique_prefix};
use crate::otlp::{text, Collector};
use ratelimiter_testkit::redis::RedisServer;
use ratelimiter_testkit::service::Service;
use ratelimiter_testkit::wait_until;

const CLIENTS: usize = 32;
const EACH: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_spans_count_the_checks_their_script_call_carried() {
    let server = RedisServer::start();
    let collector = Collector::start();
    let service = Service::start(&format!(
        r#"
[telemetry]
otlp_endpoint = "{}"
sample_ratio = 1.0
export_interval = "20ms"
[store]
backend = "redis"
[store.redis]
{}
key_prefix = "{}"
pool_size = 1
[defaults]
algorithm = "token_bucket"
limit = 1000000
window = "1h"
"#,
        collector.endpoint(),
        standalone_toml(&server),
        unique_prefix("traces"),
    ));
    // Many concurrent checks over one connection: those that arrive while
    // a script call is in flight go together in the next one.
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (client, url) = (client.clone(), service.url("/check"));
        tasks.spawn(async move {
            for i in 0..EACH {
                let response = client
                    .post(&url)
                    .json(&json!({"key": format!("user:{c}:{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let store_spans = || {
        collector
            .spans()
            .into_iter()
            .filter(|(_, s)| s.name == "store")
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    wait_until("every check's store span", Duration::from_secs(10), || {
        store_spans().len() >= CLIENTS * EACH
    });
    let spans = store_spans();
    for span in &spans {
        let fields: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
        let mut unique = fields.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(fields.len(), unique.len(), "an attribute exported twice: {fields:?}");
    }
    let batches: Vec<u64> = spans
        .iter()
        .map(|s| text(&s.attributes, "batch").expect("batch").parse().unwrap())
        .collect();
    assert_eq!(batches.len(), CLIENTS * EACH);
    assert!(batches.iter().all(|&b| (1..=128).contains(&b)), "{batches:?}");
    let grouped = batches.iter().filter(|&&b| b > 1).count();
    assert!(grouped > 0, "no check went to Redis with another: {batches:?}");
    // A call of n checks gives n spans saying n: the spans of one size
    // come in multiples of it.
    for size in 2..=128u64 {
        let n = batches.iter().filter(|&&b| b == size).count() as u64;
        assert_eq!(n % size, 0, "{n} spans say batch = {size}: {batches:?}");
    }
}
