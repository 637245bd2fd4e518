//! The middleware against a live replica: the real ratelimiter service runs
//! in this process on a free loopback port (`App::builder` on port 0), an axum
//! API server with `RateLimitLayer` runs on another, and every assertion is
//! made through real HTTP requests to the API server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ratelimiter::app::App;
use ratelimiter::settings::Settings;
use ratelimiter_client::{
    extract, CheckRequest, Client, ClientError, FailureMode, KeyExtractor, MissingKey, RateLimitLayer, Reason,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ADMIN_TOKEN: &str = "live-test-admin-token-0123456789";

/// `GET /api/items`: 3 per hour for `free` (exact, no window boundary to
/// cross during a test), 5 for `pro`; `GET /api/items/{id}` (a route
/// template) 2 per hour; everything else the default rule.
fn config() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[admin]
token = "{ADMIN_TOKEN}"

[reload]
watch = false

[defaults]
algorithm = "token_bucket"
tier = "free"
limit = 100
window = "10s"

[tiers]
free = {{ limit = 100, window = "10s" }}
pro = {{ limit = 100, window = "10s" }}

[[rules]]
endpoint = "GET /api/items"
algorithm = "sliding_window_log"
limit = 3
window = "1h"
tiers.pro = {{ limit = 5 }}

[[rules]]
endpoint = "GET /api/items/{{id}}"
algorithm = "sliding_window_log"
limit = 2
window = "1h"

[[rules]]
endpoint = "POST /api/export"
algorithm = "concurrency"
limit = 1
lease_ttl = "30s"

[[rules]]
endpoint = "GET /api/slow"
algorithm = "concurrency"
limit = 1
lease_ttl = "30s"

[[rules]]
endpoint = "POST /api/chat"
limits = [
  {{ name = "user", algorithm = "fixed_window", limit = 2, window = "1h" }},
  {{ name = "org", by = "org", algorithm = "fixed_window", limit = 3, window = "1h" }},
]
"#
    )
}

/// A ratelimiter replica serving in this process until stopped.
struct Replica {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Replica {
    async fn start() -> Replica {
        let settings = Settings::from_toml(&config()).expect("valid settings");
        let app = App::builder(settings).build().await.expect("the replica starts");
        let addr = app.local_addr().expect("bound");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Replica {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn client(&self) -> Client {
        Client::builder(&self.url())
            .timeout(Duration::from_secs(5))
            .build()
            .expect("valid URL")
    }

    /// Stops serving and waits until the listener is closed.
    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.task
            .take()
            .expect("running")
            .await
            .expect("no panic")
            .expect("clean stop");
    }

    /// `PUT /admin/lists/block` with `entry`.
    async fn block(&self, entry: &str) {
        let reply = send(
            Request::put(format!("{}/admin/lists/block", self.url()))
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .header("content-type", "application/json")
                .body(Full::from(json!({ "entry": entry }).to_string()))
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "block {entry}: {}", reply.body);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// An API server like `examples/api_server.rs`, with `layer`, counting the
/// requests its handlers see.
struct ApiServer {
    addr: SocketAddr,
    handled: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ApiServer {
    async fn start(layer: RateLimitLayer) -> ApiServer {
        let handled = Arc::new(AtomicUsize::new(0));
        let counter = handled.clone();
        let items = move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({ "items": [1, 2, 3] }))
            }
        };
        let app = Router::new()
            .route("/api/items", get(items.clone()))
            .route("/api/items/{id}", get(items))
            .layer(layer)
            .route("/health", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        ApiServer { addr, handled, task }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::get(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(request.body(Full::new(Bytes::new())).unwrap()).await
    }

    /// `GET /api/items` with `X-Api-Key: key`.
    async fn items(&self, key: &str) -> Reply {
        self.get("/api/items", &[("x-api-key", key)]).await
    }

    fn handled(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    #[track_caller]
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("ASCII")
    }

    fn has_rate_limit_headers(&self) -> bool {
        [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "ratelimit",
            "ratelimit-policy",
        ]
        .iter()
        .any(|name| self.headers.contains_key(*name))
    }
}

async fn send(request: Request<Full<Bytes>>) -> Reply {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("an answer within 10 s")
        .expect("the request is sent");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply { status, headers, body }
}

/// A loopback address nothing listens on: bound, then released.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    drop(listener);
    format!("http://{addr}")
}

fn client_for(url: &str) -> Client {
    Client::builder(url)
        .timeout(Duration::from_millis(500))
        .build()
        .expect("valid URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pass_with_headers_copied_then_429() {
    let replica = Replica::start().await;
    let api = ApiServer::start(RateLimitLayer::new(replica.client())).await;

    for expected_remaining in ["2", "1", "0"] {
        let reply = api.items("alice").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body, json!({ "items": [1, 2, 3] }), "the handler's body");
        assert_eq!(reply.header("x-ratelimit-limit"), "3");
        assert_eq!(reply.header("x-ratelimit-remaining"), expected_remaining);
        assert_eq!(reply.header("ratelimit-policy"), "\"GET /api/items\";q=3;w=3600");
        assert!(reply
            .header("ratelimit")
            .starts_with(&format!("\"GET /api/items\";r={expected_remaining};t=")));
        reply.header("x-ratelimit-reset").parse::<u64>().expect("Unix seconds");
        assert!(reply.headers.get("retry-after").is_none());
    }
    assert_eq!(api.handled(), 3);

    let denied = api.items("alice").await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS, "{}", denied.body);
    assert_eq!(api.handled(), 3, "a denied request never reaches the handler");
    assert_eq!(denied.header("content-type"), "application/json");
    assert_eq!(denied.header("x-ratelimit-remaining"), "0");
    assert_eq!(denied.header("x-ratelimit-limit"), "3");
    let retry_after: u64 = denied.header("retry-after").parse().expect("whole seconds");
    assert!(
        (1..=3600).contains(&retry_after),
        "within the 1 h window: {retry_after}"
    );
    assert_eq!(denied.body["reason"], "limited");
    assert_eq!(denied.body["limit"], 3);
    assert_eq!(denied.body["remaining"], 0);
    let retry_after_ms = denied.body["retry_after_ms"].as_u64().expect("a number");
    assert_eq!(retry_after_ms.div_ceil(1000), retry_after, "body and header agree");
    assert!(denied.body["error"].as_str().unwrap().contains("too many requests"));

    // Routes added after the layer are not limited.
    let health = api.get("/health", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(!health.has_rate_limit_headers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_endpoints_are_limited_separately() {
    let replica = Replica::start().await;
    let api = ApiServer::start(RateLimitLayer::new(replica.client())).await;

    for _ in 0..3 {
        assert_eq!(api.items("carol").await.status, StatusCode::OK);
    }
    assert_eq!(api.items("carol").await.status, StatusCode::TOO_MANY_REQUESTS);

    let dave = api.items("dave").await;
    assert_eq!(dave.status, StatusCode::OK);
    assert_eq!(dave.header("x-ratelimit-remaining"), "2", "dave has his own counter");

    // `GET /api/items/7` has no rule: the default rule (100 per 10 s).
    let other = api.get("/api/items/7", &[("x-api-key", "carol")]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.header("x-ratelimit-limit"), "100");
    assert_eq!(other.header("x-ratelimit-remaining"), "99");
    assert_eq!(other.header("ratelimit-policy"), "\"default\";q=100;w=10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_listed_key_gets_403() {
    let replica = Replica::start().await;
    let api = ApiServer::start(RateLimitLayer::new(replica.client())).await;
    assert_eq!(api.items("mallory").await.status, StatusCode::OK);

    // The layer's keys are `x-api-key:<value>`, so that is the entry.
    replica.block("x-api-key:mallory").await;
    let blocked = api.items("mallory").await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN, "{}", blocked.body);
    assert_eq!(blocked.body["reason"], "blocked");
    assert_eq!(blocked.header("content-type"), "application/json");
    assert!(blocked.headers.get("retry-after").is_none());
    assert_eq!(api.handled(), 1);

    assert_eq!(api.items("trent").await.status, StatusCode::OK, "others are unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_listed_address_range_gets_403_through_client_ip() {
    let replica = Replica::start().await;
    // Behind two proxies of ours: the second address from the right.
    let layer = RateLimitLayer::new(replica.client())
        .key(KeyExtractor::header("x-api-key").or(KeyExtractor::forwarded_for_hops(2)))
        .client_ip(|parts| extract::forwarded_for_ip_hops(parts, 2));
    let api = ApiServer::start(layer).await;
    replica.block("198.51.100.0/24").await;

    // Blocked by address even with a key of its own.
    let reply = api
        .get(
            "/api/items",
            &[("x-api-key", "erin"), ("x-forwarded-for", "198.51.100.7, 10.0.0.1")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    // Without a key, the address is the key.
    let reply = api
        .get("/api/items", &[("x-forwarded-for", "203.0.113.9, 10.0.0.1")])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("x-ratelimit-remaining"), "2");
    // A spoofed address in front changes nothing: the same counter.
    let reply = api
        .get("/api/items", &[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")])
        .await;
    assert_eq!(
        reply.header("x-ratelimit-remaining"),
        "1",
        "one counter for the address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_key_is_rejected_or_allowed_as_configured() {
    let replica = Replica::start().await;
    let rejecting = ApiServer::start(RateLimitLayer::new(replica.client())).await;
    let reply = rejecting.get("/api/items", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["field"], "x-api-key");
    assert_eq!(rejecting.handled(), 0);

    let allowing = ApiServer::start(RateLimitLayer::new(replica.client()).missing_key(MissingKey::Allow)).await;
    for _ in 0..5 {
        let reply = allowing.get("/api/items", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "not counted, so never limited");
        assert!(!reply.has_rate_limit_headers());
    }
    assert_eq!(allowing.handled(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier_header_selects_the_limit_and_a_bad_tier_never_passes() {
    let replica = Replica::start().await;
    let api = ApiServer::start(RateLimitLayer::new(replica.client()).tier_header("x-ratelimit-tier")).await;

    let pro = api
        .get("/api/items", &[("x-api-key", "peggy"), ("x-ratelimit-tier", "pro")])
        .await;
    assert_eq!(pro.status, StatusCode::OK);
    assert_eq!(pro.header("x-ratelimit-limit"), "5");
    assert_eq!(pro.header("x-ratelimit-remaining"), "4");

    // An unknown tier is refused by the service: 400 naming the field,
    // whatever the failure mode, so it cannot be used to escape the limit.
    let gold = api
        .get("/api/items", &[("x-api-key", "peggy"), ("x-ratelimit-tier", "gold")])
        .await;
    assert_eq!(gold.status, StatusCode::BAD_REQUEST, "{}", gold.body);
    assert_eq!(gold.body["field"], "tier");
    assert_eq!(api.handled(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peek_reads_the_quota_without_consuming() {
    let replica = Replica::start().await;
    let client = replica.client();
    let peek = CheckRequest::new("paula").endpoint("GET /api/items").peek();
    let check = CheckRequest::new("paula").endpoint("GET /api/items");
    assert!(client.check(&check).await.unwrap().allowed);
    for _ in 0..3 {
        let outcome = client.check(&peek).await.unwrap();
        assert_eq!((outcome.status, outcome.reason), (StatusCode::OK, Reason::Peek));
        assert_eq!((outcome.allowed, outcome.remaining), (true, 2));
    }
    for _ in 0..2 {
        assert!(client.check(&check).await.unwrap().allowed);
    }
    let outcome = client.check(&peek).await.unwrap();
    assert_eq!(
        (outcome.status, outcome.allowed, outcome.remaining),
        (StatusCode::OK, false, 0)
    );
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_sent_and_every_limit_comes_back() {
    let replica = Replica::start().await;
    let client = replica.client();
    let chat = |user: &str| CheckRequest::new(user).endpoint("POST /api/chat").scope("org", "acme");
    let first = client.check(&chat("ann")).await.unwrap();
    assert!(first.allowed);
    assert_eq!(first.limit_name.as_deref(), Some("user"));
    let names: Vec<(&str, &str, u64)> = first
        .limits
        .iter()
        .map(|l| (l.name.as_str(), l.by.as_str(), l.remaining))
        .collect();
    assert_eq!(names, [("user", "key", 1), ("org", "org", 2)]);
    assert!(client.check(&chat("ann")).await.unwrap().allowed);
    assert!(client.check(&chat("bob")).await.unwrap().allowed);
    let denied = client.check(&chat("bob")).await.unwrap();
    assert_eq!(
        (denied.status, denied.limit_name.as_deref()),
        (StatusCode::TOO_MANY_REQUESTS, Some("org"))
    );
    let missing = client.check(&CheckRequest::new("cat").endpoint("POST /api/chat")).await;
    assert!(
        matches!(&missing, Err(ClientError::Rejected { field: Some(f), .. }) if f == "scopes.org"),
        "{missing:?}"
    );
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_is_sent() {
    let replica = Replica::start().await;
    let api = ApiServer::start(RateLimitLayer::new(replica.client()).cost(2)).await;
    let reply = api.items("victor").await;
    assert_eq!(reply.header("x-ratelimit-remaining"), "1");
    let reply = api.items("victor").await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "2 + 2 > 3");
    assert_eq!(
        reply.header("x-ratelimit-remaining"),
        "1",
        "a denied request consumes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_ratelimiter_fails_open_by_default_and_503_when_closed() {
    let nowhere = closed_port().await;
    let open = ApiServer::start(RateLimitLayer::new(client_for(&nowhere))).await;
    for _ in 0..5 {
        let reply = open.items("alice").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(!reply.has_rate_limit_headers(), "nothing was decided");
    }
    assert_eq!(open.handled(), 5);

    let error = client_for(&nowhere).check(&CheckRequest::new("k")).await.unwrap_err();
    assert!(matches!(error, ClientError::Transport(_)), "{error}");
    assert!(error.to_string().contains("refused"), "the cause is named: {error}");

    let closed =
        ApiServer::start(RateLimitLayer::new(client_for(&nowhere)).failure_mode(FailureMode::FailClosed)).await;
    let reply = closed.items("alice").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), "1");
    assert_eq!(reply.body["reason"], "rate_limiter_unavailable");
    assert_eq!(closed.handled(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ratelimiter_that_never_answers_times_out_into_the_failure_mode() {
    // Accepted by the kernel (the listener is open), never answered.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", silent.local_addr().unwrap());
    let client = Client::builder(&url)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client.check(&CheckRequest::new("k")).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout(_)), "{error}");
    assert!(error.is_unavailable());

    let open = ApiServer::start(RateLimitLayer::new(client.clone())).await;
    assert_eq!(open.items("alice").await.status, StatusCode::OK);
    let closed = ApiServer::start(RateLimitLayer::new(client).failure_mode(FailureMode::FailClosed)).await;
    assert_eq!(closed.items("alice").await.status, StatusCode::SERVICE_UNAVAILABLE);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_the_api_server_triggers_the_failure_mode() {
    let replica = Replica::start().await;
    let client = replica.client();
    let open = ApiServer::start(RateLimitLayer::new(client.clone())).await;
    let closed = ApiServer::start(RateLimitLayer::new(client).failure_mode(FailureMode::FailClosed)).await;
    // Both have a pooled keep-alive connection to the replica now.
    assert_eq!(open.items("alice").await.header("x-ratelimit-remaining"), "2");
    assert_eq!(closed.items("alice").await.header("x-ratelimit-remaining"), "1");

    replica.stop().await;
    let reply = open.items("alice").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(!reply.has_rate_limit_headers());
    let reply = closed.items("alice").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_servers_share_one_limit_through_one_replica() {
    let replica = Replica::start().await;
    let a = ApiServer::start(RateLimitLayer::new(replica.client())).await;
    let b = ApiServer::start(RateLimitLayer::new(replica.client())).await;

    assert_eq!(a.items("walter").await.header("x-ratelimit-remaining"), "2");
    assert_eq!(b.items("walter").await.header("x-ratelimit-remaining"), "1");
    assert_eq!(a.items("walter").await.header("x-ratelimit-remaining"), "0");
    assert_eq!(b.items("walter").await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.items("walter").await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.handled() + b.handled(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_admit_exactly_the_limit() {
    let replica = Replica::start().await;
    let api = Arc::new(ApiServer::start(RateLimitLayer::new(replica.client())).await);
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.items("zoe").await.status })
        })
        .collect();
    let mut ok = 0;
    for request in requests {
        match request.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(api.handled(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_alone_decides_and_reports_refusals() {
    let replica = Replica::start().await;
    let client = replica.client();
    let check = CheckRequest::new("oscar").endpoint("GET /api/items");
    let outcome = client.check(&check).await.expect("decided");
    assert!(outcome.allowed);
    assert_eq!((outcome.limit, outcome.remaining), (3, 2));
    assert_eq!(outcome.rule, "GET /api/items");
    assert_eq!(outcome.tier, "free");
    assert_eq!(outcome.algorithm, "sliding_window_log");
    assert_eq!(outcome.reason, Reason::Allowed);
    assert_eq!(outcome.headers["x-ratelimit-remaining"], "2");

    for (bad, field) in [
        (CheckRequest::new("x".repeat(300)), "key"),
        (CheckRequest::new("oscar").tier("gold"), "tier"),
        (CheckRequest::new("oscar").endpoint("GET /api/items").cost(4), "cost"),
    ] {
        let error = client.check(&bad).await.expect_err("refused");
        assert!(!error.is_unavailable());
        match error {
            ClientError::Rejected { status, field: f, .. } => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(f.as_deref(), Some(field));
            }
            other => panic!("{field}: {other}"),
        }
    }

    // Only /check is served at the URL: a wrong base path is not a decision.
    let wrong = client_for(&format!("{}/nothing-here", replica.url()));
    let error = wrong.check(&check).await.expect_err("no /check there");
    assert!(
        matches!(
            error,
            ClientError::Unexpected {
                status: StatusCode::NOT_FOUND,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.is_unavailable(), "a misconfigured URL is the failure mode's case");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_checks_reuse_one_keep_alive_connection() {
    let replica = Replica::start().await;
    // A TCP relay in front of the replica, counting the connections made.
    let relay = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let relay_url = format!("http://{}", relay.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let upstream = replica.addr;
    let relay_task = tokio::spawn(async move {
        loop {
            let (mut inbound, _) = relay.accept().await.expect("accept");
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(upstream).await.expect("replica");
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });

    let client = client_for(&relay_url);
    for i in 0..100 {
        let outcome = client
            .check(&CheckRequest::new(format!("pool:{i}")))
            .await
            .expect("decided");
        assert!(outcome.allowed);
    }
    // hyper's pool takes a connection back from a background task just
    // after its response is read; a check that finds the pool empty at that
    // instant starts a connection too, which is then pooled as well. So a
    // few connections, not one per check (1 to 4 seen here).
    let pooled = connections.load(Ordering::SeqCst);
    assert!((1..10).contains(&pooled), "100 checks over {pooled} connections");

    // The relay does count: without an idle pool, each check connects anew.
    let unpooled = Client::builder(&relay_url).pool_max_idle(0).build().unwrap();
    for i in 0..5 {
        unpooled
            .check(&CheckRequest::new(format!("nopool:{i}")))
            .await
            .expect("decided");
    }
    assert_eq!(connections.load(Ordering::SeqCst), pooled + 5);
    relay_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_is_method_and_path_or_custom() {
    let replica = Replica::start().await;
    let client = replica.client();
    // A custom endpoint derivation: every route one rule.
    let api =
        ApiServer::start(RateLimitLayer::new(client.clone()).endpoint(|_| Some("GET /api/items".to_owned()))).await;
    assert_eq!(
        api.get("/api/items/1", &[("x-api-key", "uma")])
            .await
            .header("x-ratelimit-limit"),
        "3"
    );
    assert_eq!(
        api.get("/api/items/2", &[("x-api-key", "uma")])
            .await
            .header("x-ratelimit-remaining"),
        "1"
    );

    // The default derivation includes the method.
    let plain = ApiServer::start(RateLimitLayer::new(client)).await;
    let request = Request::builder()
        .method(Method::HEAD)
        .uri(format!("http://{}/api/items", plain.addr))
        .header("x-api-key", "uma")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("x-ratelimit-limit"),
        "100",
        "HEAD /api/items has no rule of its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_templates_and_peer_addresses_are_available_to_the_layer() {
    let replica = Replica::start().await;
    // Behind axum's router the matched route and the connection's address
    // are request extensions; the layer reads both.
    let layer = RateLimitLayer::new(replica.client())
        .key(KeyExtractor::peer_ip(|c: &ConnectInfo<SocketAddr>| c.0.ip()))
        .endpoint(|p| {
            p.extensions
                .get::<MatchedPath>()
                .map(|m| format!("{} {}", p.method, m.as_str()))
        });
    let app = Router::new()
        .route("/api/items/{id}", get(|| async { "item" }))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .expect("serve");
    });
    let get = |path: &str| {
        send(
            Request::get(format!("http://{addr}{path}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    };

    let first = get("/api/items/7").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.header("ratelimit-policy"), "\"GET /api/items/{id}\";q=2;w=3600");
    assert_eq!(first.header("x-ratelimit-remaining"), "1");
    let second = get("/api/items/8").await;
    assert_eq!(
        second.header("x-ratelimit-remaining"),
        "0",
        "one rule and counter for the template"
    );
    assert_eq!(get("/api/items/9").await.status, StatusCode::TOO_MANY_REQUESTS);

    // The key was the peer address: blocking it blocks this client.
    replica.block("127.0.0.1").await;
    assert_eq!(get("/api/items/7").await.status, StatusCode::FORBIDDEN);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_works_on_any_tower_service_with_a_string_convertible_body() {
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    let replica = Replica::start().await;
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    // A hyper-style service answering `Full<Bytes>`, not axum's body.
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(replica.client()))
        .service(service_fn(move |_request: Request<()>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"done"))))
            }
        }));
    let request = || {
        Request::get("/api/items")
            .header("x-api-key", "hyper")
            .body(())
            .unwrap()
    };

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = service.clone().oneshot(request()).await.expect("infallible");
        statuses.push(response.status().as_u16());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if statuses.last() == Some(&429) {
            let json: Value = serde_json::from_slice(&body).expect("a JSON body");
            assert_eq!(json["reason"], "limited");
        } else {
            assert_eq!(&body[..], b"done");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(handled.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_can_read_the_decision() {
    let replica = Replica::start().await;
    let app = Router::new()
        .route(
            "/api/items",
            get(
                |axum::Extension(outcome): axum::Extension<ratelimiter_client::CheckOutcome>| async move {
                    format!("{} left on {}", outcome.remaining, outcome.rule)
                },
            ),
        )
        .layer(RateLimitLayer::new(replica.client()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let reply = send(
        Request::get(format!("http://{addr}/api/items"))
            .header("x-api-key", "quinn")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, Value::String("2 left on GET /api/items".into()));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_charges_after_the_work_and_an_id_applies_once() {
    let replica = Replica::start().await;
    let client = replica.client();
    let chat = CheckRequest::new("rita")
        .endpoint("POST /api/chat")
        .scope("org", "acme");
    assert!(client.check(&chat).await.unwrap().allowed);
    // One more unit used than the check took, reported once under an id.
    let settle = chat.clone().id("req-1-settle");
    let reported = client.report(&settle, 1).await.unwrap();
    assert_eq!((reported.status, reported.reason), (StatusCode::OK, Reason::Reported));
    assert!(reported.allowed && !reported.duplicate);
    let user = |o: &ratelimiter_client::CheckOutcome| o.limits.iter().find(|l| l.name == "user").unwrap().remaining;
    assert_eq!(user(&reported), 0);
    let again = client.report(&settle, 1).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(user(&again), 0);
    // The user's limit is spent; a refund gives a unit back.
    assert!(!client.check(&chat).await.unwrap().allowed);
    let refunded = client.report(&chat, -1).await.unwrap();
    assert_eq!(refunded.reason, Reason::Refunded);
    assert_eq!(user(&refunded), 1);
    // A report the service refuses names its field.
    match client.report(&chat, 0).await {
        Err(ratelimiter_client::ClientError::Rejected { field, .. }) => assert_eq!(field.as_deref(), Some("cost")),
        other => panic!("a report of 0 is refused: {other:?}"),
    }
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_taken_renewed_and_released() {
    let replica = Replica::start().await;
    let client = replica.client();
    let export = CheckRequest::new("vera").endpoint("POST /api/export");
    let taken = client.check(&export).await.unwrap();
    assert!(taken.allowed);
    assert_eq!(taken.lease_expires_ms, Some(30_000));
    let lease = taken.lease.expect("a lease");
    assert!(!client.check(&export).await.unwrap().allowed, "one in flight");
    assert_eq!(client.renew(&lease).await.unwrap(), Some(30_000));
    assert!(client.release(&lease).await.unwrap());
    assert!(!client.release(&lease).await.unwrap(), "released already");
    assert_eq!(client.renew(&lease).await.unwrap(), None);
    assert!(client.check(&export).await.unwrap().allowed);
    match client.release("not-a-lease").await {
        Err(ratelimiter_client::ClientError::Rejected { field, .. }) => assert_eq!(field.as_deref(), Some("lease")),
        other => panic!("a bad token is refused: {other:?}"),
    }
    replica.stop().await;
}

/// Waits (polling, up to 5 s) until `done` holds.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET /api/slow` (at most one in flight per key) through the layer: the
/// handler holds its request until the test opens the gate. The lease is
/// held while the handler runs, released once the answer has been sent,
/// and released too when the caller hangs up mid-request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_holds_a_lease_for_the_request_and_releases_it_after() {
    let replica = Replica::start().await;
    let entered = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let slow = {
        let (entered, gate) = (entered.clone(), gate.clone());
        move || {
            let (entered, gate) = (entered.clone(), gate.clone());
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.expect("open").forget();
                axum::Json(json!({ "done": true }))
            }
        }
    };
    let app = Router::new()
        .route("/api/slow", get(slow))
        .layer(RateLimitLayer::new(replica.client()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let server = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let get = move || {
        let request = Request::get(format!("http://{addr}/api/slow"))
            .header("x-api-key", "sam")
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(request)
    };
    let quota = replica.client();
    let free = move || {
        let quota = quota.clone();
        async move {
            // The layer keeps the credential header as its SHA-256.
            let key = ratelimiter::limiter::hashing::credential_key("x-api-key:sam", &["x-api-key".to_owned()]);
            let peek = CheckRequest::new(key).endpoint("GET /api/slow").peek();
            quota.check(&peek).await.unwrap().remaining == 1
        }
    };

    // A request in the handler holds the one lease: another is refused.
    let first = tokio::spawn(get());
    eventually("the first request reaches the handler", async || {
        entered.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(get().await.status, StatusCode::TOO_MANY_REQUESTS);
    // Answered: the lease is released.
    gate.add_permits(1);
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    eventually("the lease is released after the answer", free.clone()).await;

    // A caller that hangs up mid-request releases it too.
    let hung_up = tokio::spawn(get());
    eventually("the next request reaches the handler", async || {
        entered.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(!free().await, "held while the handler runs");
    hung_up.abort();
    eventually("the lease is released when the request is dropped", free.clone()).await;
    server.abort();
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_pass_unchecked_unless_asked() {
    let replica = Replica::start().await;
    let preflight = |addr: SocketAddr| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(format!("http://{addr}/api/items"))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "GET")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // Unchecked: the inner service answers (this router has no OPTIONS
    // route: 405), not the layer's 400 for a request without a key.
    let api = ApiServer::start(RateLimitLayer::new(replica.client())).await;
    for _ in 0..5 {
        let reply = send(preflight(api.addr)).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{}", reply.body);
        assert!(!reply.has_rate_limit_headers());
    }
    // Checked when asked: without a key, refused by the layer.
    let strict = ApiServer::start(RateLimitLayer::new(replica.client()).limit_preflight(true)).await;
    assert_eq!(send(preflight(strict.addr)).await.status, StatusCode::BAD_REQUEST);
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_is_a_tower_service_of_checks() {
    use tower::{Service, ServiceExt};
    let replica = Replica::start().await;
    let mut service = replica.client();
    let request = CheckRequest::new("tower").endpoint("GET /api/items");
    let first = service.ready().await.unwrap().call(request.clone()).await.unwrap();
    assert!(first.allowed);
    // Stacked under tower's own layers like any service.
    let stacked = tower::ServiceBuilder::new()
        .concurrency_limit(1)
        .service(replica.client());
    let second = stacked.oneshot(request).await.unwrap();
    assert_eq!(second.remaining, first.remaining - 1);
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layers_checks_go_through_tower_layers_stacked_on_the_client() {
    let replica = Replica::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let (calls, client) = (calls.clone(), replica.client());
        tower::service_fn(move |check: CheckRequest| {
            calls.fetch_add(1, Ordering::SeqCst);
            let client = client.clone();
            async move { client.check(&check).await }
        })
    };
    let api = ApiServer::start(RateLimitLayer::new(replica.client()).checks(counted)).await;
    for expected in [200, 200, 200, 429] {
        let reply = api.items("ursula").await;
        assert_eq!(reply.status.as_u16(), expected, "{}", reply.body);
        assert!(reply.has_rate_limit_headers());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4, "every check went through the stack");
    assert_eq!(api.handled(), 3);

    // A ClientError from under the layers keeps its meaning: an unknown
    // tier set by a layer is the service's refusal, a 400 naming the
    // field, not the failure mode.
    let bad_tier = tower::ServiceBuilder::new()
        .map_request(|check: CheckRequest| check.tier("gold"))
        .service(replica.client());
    let api = ApiServer::start(RateLimitLayer::new(replica.client()).checks(bad_tier)).await;
    let reply = api.items("victor").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["field"], "tier");
    assert_eq!(api.handled(), 0);
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_layer_on_the_checks_is_decided_by_the_failure_mode() {
    use tower::ServiceExt;
    // Accepted by the kernel, never answered; the client itself would wait
    // a minute.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let client = Client::builder(&format!("http://{}", silent.local_addr().unwrap()))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let checks = tower::ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .service(client.clone());
    let error = checks.clone().oneshot(CheckRequest::new("k")).await.unwrap_err();
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");

    let closed = ApiServer::start(
        RateLimitLayer::new(client.clone())
            .checks(checks.clone())
            .failure_mode(FailureMode::FailClosed),
    )
    .await;
    let reply = closed.items("wendy").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    assert_eq!(reply.body["reason"], "rate_limiter_unavailable");
    assert_eq!(closed.handled(), 0);

    let open = ApiServer::start(RateLimitLayer::new(client).checks(checks)).await;
    let reply = open.items("wendy").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.has_rate_limit_headers());
    assert_eq!(open.handled(), 1);
    drop(silent);
}
