//! Cleartext HTTP/2 with prior knowledge (h2c) on the HTTP listener, as
//! gateways and meshes speak it to upstreams: the same answers as over
//! HTTP/1.1, many requests at once on one connection, and a graceful stop
//! that lets them finish.

use std::process::Command;

use serde_json::{json, Value};

use ratelimiter_testkit::service::Service;

const CONFIG: &str = r#"
[server]
shutdown_timeout = "5s"
http2_max_concurrent_streams = 8
[defaults]
limit = 5
window = "1h"
algorithm = "fixed_window"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_answers_over_h2c_as_over_http1() {
    let service = Service::start(CONFIG);
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2
        .post(service.url("/check"))
        .json(&json!({"key": "h2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "4");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["allowed"].as_bool(), body["remaining"].as_u64()),
        (Some(true), Some(4))
    );
    // 20 at once on one connection (8 streams at a time): exactly the
    // remaining 4 allowed.
    let answers = futures_util::future::join_all(
        (0..20).map(|_| h2.post(service.url("/check")).json(&json!({"key": "h2"})).send()),
    )
    .await;
    let allowed = answers.iter().filter(|a| a.as_ref().unwrap().status() == 200).count();
    assert_eq!(allowed, 4);
    // Every route, the metrics too.
    let metrics = h2.get(service.url("/metrics")).send().await.unwrap();
    assert_eq!(
        (metrics.version(), metrics.status().as_u16()),
        (reqwest::Version::HTTP_2, 200)
    );
    // HTTP/1.1 on the same listener still works.
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let response = h1
        .post(service.url("/check"))
        .json(&json!({"key": "h1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (response.version(), response.status().as_u16()),
        (reqwest::Version::HTTP_11, 200)
    );
}

#[test]
fn curl_speaks_h2c_with_prior_knowledge() {
    let service = Service::start(CONFIG);
    let output = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "-",
            "-w",
            "\n%{http_version}",
            "-H",
        ])
        .arg("content-type: application/json")
        .args(["-d", r#"{"key": "curl"}"#])
        .arg(service.url("/check"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, version) = text.rsplit_once('\n').expect("a body and a version");
    assert_eq!(version, "2", "{text}");
    let body: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(body["allowed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_h2_requests_finish() {
    let service = Service::start(CONFIG);
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    // Open the connection, then stop the service while a request is sent.
    assert_eq!(h2.get(service.url("/health")).send().await.unwrap().status(), 200);
    let request = h2.post(service.url("/check")).json(&json!({"key": "bye"})).send();
    service.signal("TERM");
    match request.await {
        Ok(response) => assert_eq!(response.status(), 200),
        // Sent after the stop: refused, not half-answered.
        Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
    }
    assert!(service.wait_exit(std::time::Duration::from_secs(10)).success());
}
