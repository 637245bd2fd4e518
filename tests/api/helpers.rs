//! Building a router on a manual clock and sending it requests.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use ratelimiter::app::App;
use ratelimiter::core::{ManualClock, Timestamp};
use ratelimiter::settings::Settings;
use ratelimiter::store::Backend;
use serde_json::Value;
use tower::ServiceExt;

/// 2023-11-14T22:13:20Z, a whole second.
pub const START_US: u64 = 1_700_000_000_000_000;

pub struct TestApp {
    pub router: Router,
    pub clock: Arc<ManualClock>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header"))
    }

    /// Asserts a JSON error naming `field`, and returns its message.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, field: Option<&str>) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["field"].as_str(), field, "body: {}", self.body);
        let message = self.body["error"].as_str().expect("an error message");
        assert!(!message.is_empty());
        message.to_owned()
    }
}

/// The service as `App::builder` wires it, on the memory backend and a
/// manual clock, answering through its router without a socket.
pub fn app(toml: &str) -> TestApp {
    let settings = Settings::from_toml(toml).expect("valid settings");
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START_US)));
    let wiring = App::builder(settings)
        .clock(clock.clone())
        .wire(Backend::memory(clock.clone()))
        .expect("valid rules");
    TestApp {
        router: wiring.router,
        clock,
    }
}

impl TestApp {
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("every answer is JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        Reply { status, headers, body }
    }

    /// `POST /check` with a JSON content type.
    pub async fn check_raw(&self, body: impl Into<Body>) -> Reply {
        let request = Request::post("/check")
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap();
        self.send(request).await
    }

    pub async fn check(&self, body: Value) -> Reply {
        self.check_raw(body.to_string()).await
    }

    /// `POST <path>` of a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    /// `POST /report` with a JSON content type.
    pub async fn report(&self, body: Value) -> Reply {
        let request = Request::post("/report")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    /// `POST /check/batch` with a JSON content type.
    pub async fn batch(&self, body: Value) -> Reply {
        let request = Request::post("/check/batch")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap()).await
    }
}
