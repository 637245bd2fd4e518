//! Reloading the rules file of a running binary: on change and on SIGHUP;
//! an invalid file is rejected and the old rules stay; checks running all
//! the while only ever see the old rules or the new ones, never a mixture.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use ratelimiter_testkit::service::Service;

const TOKEN: &str = "reload-admin-token-0123456789";

fn rules(limit: u64, algorithm: &str, watch: bool) -> String {
    format!(
        "[admin]\ntoken = \"{TOKEN}\"\n[reload]\nwatch = {watch}\npoll_interval = \"100ms\"\n\
         [[rules]]\nendpoint = \"GET /x\"\nalgorithm = \"{algorithm}\"\nlimit = {limit}\nwindow = \"1h\"\n"
    )
}

async fn x_limit(client: &reqwest::Client, service: &Service) -> u64 {
    let rules: Value = client
        .get(service.url("/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    rules["rules"][1]["limits"][0]["limit"].as_u64().unwrap()
}

async fn wait_for_limit(client: &reqwest::Client, service: &Service, limit: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while x_limit(client, service).await != limit {
        assert!(Instant::now() < deadline, "the limit never became {limit}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks in a loop until stopped; returns every (status, limit, algorithm).
fn checker(service: &Service, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<HashSet<(u16, u64, String)>> {
    let url = service.url("/check");
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut seen = HashSet::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let body = json!({"key": format!("k{}", i % 50), "endpoint": "GET /x"});
            let response = client.post(&url).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            seen.insert((
                status,
                body["limit"].as_u64().unwrap_or(0),
                body["algorithm"].as_str().unwrap_or("").to_owned(),
            ));
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_reloaded_and_an_invalid_one_rejected() {
    let service = Service::start(&rules(1, "fixed_window", true));
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let checks = checker(&service, stop.clone());

    std::fs::write(service.config_path(), rules(5, "sliding_window_log", true)).unwrap();
    wait_for_limit(&client, &service, 5).await;

    // Invalid: rejected, the previous rules stay (also through the API).
    std::fs::write(service.config_path(), rules(0, "sliding_window_log", true)).unwrap();
    let response = client
        .post(service.url("/admin/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("rules[0].limit"), "{body}");
    assert_eq!(x_limit(&client, &service).await, 5);

    std::fs::write(service.config_path(), rules(7, "gcra", true)).unwrap();
    wait_for_limit(&client, &service, 7).await;

    stop.store(true, Ordering::Relaxed);
    let seen = checks.await.unwrap();
    let allowed: HashSet<(u64, &str)> = [(1, "fixed_window"), (5, "sliding_window_log"), (7, "gcra")].into();
    for (status, limit, algorithm) in &seen {
        assert!(*status == 200 || *status == 429, "status {status}");
        assert!(
            allowed.contains(&(*limit, algorithm.as_str())),
            "a mixed rule set: limit {limit} with {algorithm}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_when_watching_is_off() {
    let service = Service::start(&rules(1, "fixed_window", false));
    let client = reqwest::Client::new();
    std::fs::write(service.config_path(), rules(3, "fixed_window", false)).unwrap();
    // Not watching: nothing changes until the signal.
    let response = client
        .post(service.url("/admin/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the API reload works regardless");
    assert_eq!(x_limit(&client, &service).await, 3);
    std::fs::write(service.config_path(), rules(4, "fixed_window", false)).unwrap();
    service.signal("HUP");
    wait_for_limit(&client, &service, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_can_have_its_own_listener() {
    let config = format!("[admin]\ntoken = \"{TOKEN}\"\nlisten = \"127.0.0.1:0\"\n");
    let service = Service::start(&config);
    let client = reqwest::Client::new();
    // Not on the public listener...
    let response = client
        .get(service.url("/admin/rules"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // ...but on its own.
    let admin = service.admin_addr().expect("the admin address is logged");
    let response = client
        .get(format!("http://{admin}/admin/rules"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
