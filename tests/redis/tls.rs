//! Redis over TLS (`rediss://`): a private authority in `tls_ca_file`,
//! mutual TLS, AUTH, and a Redis Cluster whose nodes speak only TLS to the
//! service; a certificate from the wrong authority, a missing file or a
//! missing client certificate is a clear error at start-up.
//!
//! The servers keep a plain port for `redis-cli`; the service is only
//! given the TLS port, so everything it does there went through TLS.

use std::time::Duration;

use ratelimiter::core::{Algorithm, Cost, Policy};
use ratelimiter::settings::{HumanDuration, RedisSettings, Secret};
use ratelimiter::store::redis::RedisStore;
use ratelimiter::store::{Store, StoreKey};
use serde_json::{json, Value};

use crate::common::{cluster_settings, connect, standalone_settings, unique_prefix};
use crate::contract::contract;
use ratelimiter_testkit::redis::{RedisCluster, RedisServer, TlsFiles};
use ratelimiter_testkit::service::Service;

fn tls_settings(server: &RedisServer, ca: std::path::PathBuf, test: &str) -> RedisSettings {
    RedisSettings {
        tls_ca_file: Some(ca),
        connect_timeout: HumanDuration(Duration::from_secs(2)),
        ..standalone_settings(&server.tls_url(), &unique_prefix(test))
    }
}

async fn connect_error(settings: &RedisSettings) -> String {
    match RedisStore::connect(settings).await {
        Ok(_) => panic!("connected, but should not have"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_over_tls_keeps_the_contract() {
    let files = TlsFiles::generate();
    let server = RedisServer::start_tls(&files, false);
    let store = connect(&tls_settings(&server, files.ca(), "tls")).await;
    assert!(!store.is_clustered());
    contract(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_authority_is_refused_at_start_up() {
    let files = TlsFiles::generate();
    let server = RedisServer::start_tls(&files, false);
    let err = connect_error(&tls_settings(&server, files.other_ca(), "wrong-ca")).await;
    assert!(err.contains("cannot connect to Redis at localhost:"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "says why: {err}");

    // The system's roots do not know the private authority either.
    let mut system = tls_settings(&server, files.ca(), "system-roots");
    system.tls_ca_file = None;
    if let Ok(store) = RedisStore::connect(&system).await {
        drop(store);
        panic!("the system's roots trusted a private authority");
    }

    // A missing file names the setting and the file.
    let mut missing = tls_settings(&server, files.dir().join("nope.pem"), "missing");
    missing.connect_timeout = HumanDuration(Duration::from_millis(500));
    let err = connect_error(&missing).await;
    assert!(err.starts_with("store.redis.tls_ca_file: "), "{err}");
    assert!(err.contains("nope.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_name_is_checked() {
    // A certificate for localhost only, asked for by address.
    let files = TlsFiles::generate_for(&["localhost"]);
    let server = RedisServer::start_tls(&files, false);
    let named = tls_settings(&server, files.ca(), "by-name");
    drop(connect(&named).await);
    let mut by_address = named.clone();
    by_address.url = format!("rediss://127.0.0.1:{}", server.tls_port());
    let err = connect_error(&by_address).await;
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let files = TlsFiles::generate();
    let server = RedisServer::start_tls(&files, true);
    let without = tls_settings(&server, files.ca(), "mtls-without");
    let err = connect_error(&without).await;
    assert!(err.contains("cannot connect to Redis"), "{err}");

    let with = RedisSettings {
        tls_cert_file: Some(files.client_cert()),
        tls_key_file: Some(files.client_key()),
        ..tls_settings(&server, files.ca(), "mtls")
    };
    let store = connect(&with).await;
    let policy = Policy::new(Algorithm::FixedWindow, 1, Duration::from_secs(3600)).unwrap();
    let key = StoreKey { rule: "r", key: "k" };
    assert!(store.check(key, &policy, Cost::ONE).await.unwrap().allowed);
    assert!(!store.check(key, &policy, Cost::ONE).await.unwrap().allowed);

    // A key file that holds no key names the setting.
    let bad_key = RedisSettings {
        tls_key_file: Some(files.ca()),
        ..with.clone()
    };
    let err = connect_error(&bad_key).await;
    assert!(err.starts_with("store.redis.tls_key_file: "), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_setting_authenticates_over_tls() {
    let files = TlsFiles::generate();
    let server = RedisServer::start_tls(&files, false);
    let password = "a-redis-auth-token-of-some-length";
    server.cli(&["CONFIG", "SET", "requirepass", password]);

    let none = tls_settings(&server, files.ca(), "auth-none");
    let err = connect_error(&none).await;
    assert!(err.contains("cannot"), "{err}");

    // The setting overrides a wrong password in the URL.
    let mut with = tls_settings(&server, files.ca(), "auth");
    with.url = format!("rediss://:wrong@localhost:{}", server.tls_port());
    with.password = Some(Secret::new(password));
    let store = connect(&with).await;
    let policy = Policy::new(Algorithm::TokenBucket, 3, Duration::from_secs(3600)).unwrap();
    let d = store
        .check(StoreKey { rule: "r", key: "k" }, &policy, Cost::ONE)
        .await
        .unwrap();
    assert_eq!((d.allowed, d.remaining), (true, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_keeps_the_contract_on_every_master() {
    // The certificate names no address: the masters are reached by the
    // hostname they announce in the slot map.
    let files = TlsFiles::generate_for(&["localhost"]);
    let cluster = RedisCluster::start_tls(&files);
    let prefix = unique_prefix("tls-cluster");
    let settings = RedisSettings {
        tls_ca_file: Some(files.ca()),
        ..cluster_settings(&cluster.tls_seed_urls(), &prefix)
    };
    let store = connect(&settings).await;
    assert!(store.is_clustered());
    contract(&store).await;

    // Keys on every master, each counted exactly.
    let policy = Policy::new(Algorithm::SlidingWindowLog, 2, Duration::from_secs(3600)).unwrap();
    let mut masters = std::collections::HashSet::new();
    for i in 0..48 {
        let k = format!("user:{i}");
        let key = StoreKey {
            rule: "spread",
            key: &k,
        };
        assert_eq!(admitted_of_three(&store, key, &policy).await, 2, "{k}");
        let names = store.key_names(key, &policy);
        masters.insert(cluster.master_of_slot(cluster.key_slot(&names[0])));
    }
    assert_eq!(masters.len(), 3, "keys land on all three masters");
}

/// Three checks of one key; how many were allowed.
async fn admitted_of_three(store: &RedisStore, key: StoreKey<'_>, policy: &Policy) -> usize {
    let mut admitted = 0;
    for _ in 0..3 {
        if store.check(key, policy, Cost::ONE).await.unwrap().allowed {
            admitted += 1;
        }
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_reaches_redis_over_tls_and_says_why_it_cannot() {
    let files = TlsFiles::generate();
    let server = RedisServer::start_tls(&files, true);
    let prefix = unique_prefix("tls-service");
    let config = |ca: &std::path::Path| {
        format!(
            r#"
[store]
backend = "redis"
[store.redis]
url = "{}"
tls_ca_file = "{}"
tls_cert_file = "{}"
tls_key_file = "{}"
key_prefix = "{prefix}"
connect_timeout = "1s"
[defaults]
algorithm = "fixed_window"
limit = 1
window = "1h"
"#,
            server.tls_url(),
            ca.display(),
            files.client_cert().display(),
            files.client_key().display(),
        )
    };
    let service = Service::start(&config(&files.ca()));
    let client = reqwest::Client::new();
    let mut allowed = Vec::new();
    for _ in 0..2 {
        let body: Value = client
            .post(service.url("/check"))
            .json(&json!({"key": "tls-user"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        allowed.push(body["allowed"].as_bool().unwrap());
    }
    assert_eq!(allowed, [true, false]);
    let keys = server.cli(&["--scan", "--pattern", &format!("{prefix}*")]);
    assert!(!keys.is_empty(), "the counter is in Redis");
    drop(service);

    // The wrong authority: the binary exits at start-up with the reason.
    let stderr = Service::refused(&config(&files.other_ca()));
    assert!(stderr.contains("cannot connect to Redis"), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
}
