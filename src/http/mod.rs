//! The HTTP API: routes, handlers and their wire format.
//!
//! Handlers are thin: parse the request into domain types ([`wire`]), call
//! the [`Limiter`](crate::limiter::Limiter), shape the answer. Every failure
//! becomes an [`ApiError`] with a JSON body; no input makes a handler panic
//! or answer 500.
//!
//! | route | what | where |
//! |---|---|---|
//! | `POST /check` | decide a request: 200 allowed, 429 denied, 403 blocked | [`check`] |
//! | `POST /check/batch` | decide up to 100 requests at once | [`batch`] |
//! | `GET /check/forward` | the same, read from a gateway's forwarded headers (any standard method) | [`forward`] |
//! | `GET /health`, `GET /health/live` | liveness | [`ops`] |
//! | `GET /health/ready` | readiness: store reachable and not draining | [`ops`] |
//! | `GET /metrics` | Prometheus metrics | [`ops`] |
//! | `GET /`, `GET /rules` | the effective rules | [`ops`] |
//! | `GET /openapi.json` | this API as OpenAPI 3.0 | [`ops`] |
//! | `/admin/…` | the operators' API, behind a bearer token | [`admin`] |
//!
//! Every request gets an `x-request-id` ([`request_id`]); the three check
//! routes are timed by one layer into `rate_limit_check_duration_seconds`.

pub mod admin;
pub mod batch;
pub mod body;
pub mod check;
pub mod error;
pub mod forward;
pub mod grpc;
pub mod headers;
pub mod lease;
pub mod log;
pub mod ops;
pub mod report;
pub mod request_id;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, on, post, MethodFilter};
use axum::Router;
use tower::util::MapFutureLayer;

pub use self::body::read_json_body;
pub use self::error::{method_not_allowed, ApiError};
pub use self::log::LogSampler;
pub use self::request_id::with_request_ids;
use crate::context::Context;
use crate::metrics::Metrics;
use crate::settings::ForwardSettings;

/// Limits the HTTP layer enforces on requests.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_key_bytes: usize,
    pub max_body_bytes: usize,
}

/// What every handler can reach: the service's [`Context`] and what only
/// HTTP needs.
pub struct HttpState {
    pub ctx: Arc<Context>,
    pub limits: HttpLimits,
    /// How `/check/forward` reads requests from headers.
    pub forward: ForwardSettings,
    /// Caps the log events of denied and failed checks.
    pub check_log: LogSampler,
}

impl HttpState {
    pub fn new(ctx: Arc<Context>, limits: HttpLimits, forward: ForwardSettings) -> HttpState {
        HttpState {
            ctx,
            limits,
            forward,
            check_log: LogSampler::new(20),
        }
    }
}

/// The public API's router.
pub fn router(state: Arc<HttpState>) -> Router {
    let max_body = state.limits.max_body_bytes;
    // Gateways ask with the original request's method (nginx's
    // auth_request does): every standard method, none other.
    let any_standard_method = MethodFilter::GET
        .or(MethodFilter::HEAD)
        .or(MethodFilter::POST)
        .or(MethodFilter::PUT)
        .or(MethodFilter::DELETE)
        .or(MethodFilter::OPTIONS)
        .or(MethodFilter::PATCH)
        .or(MethodFilter::TRACE);
    let metrics = state.ctx.metrics().clone();
    let checks = Router::new()
        .route("/check", post(check::check))
        .route("/check/batch", post(batch::check_batch))
        .route("/check/forward", on(any_standard_method, forward::check_forwarded))
        .route("/report", post(report::report))
        .route("/release", post(lease::release))
        .route("/renew", post(lease::renew))
        .route_layer(MapFutureLayer::new(move |future| {
            timed(metrics.clone(), Instant::now(), future)
        }));
    let router = Router::new()
        .merge(checks)
        .route("/health", get(ops::health))
        .route("/health/live", get(ops::health))
        .route("/health/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/", get(ops::rules))
        .route("/rules", get(ops::rules))
        .route("/openapi.json", get(ops::openapi))
        .fallback(error::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);
    with_request_ids(router)
}

/// A check route's future, timed from the request's arrival (`started`)
/// to its response into `rate_limit_check_duration_seconds`. Wrapped
/// around the handler's future as it is, neither boxed nor its body
/// rewrapped: this runs on every check.
async fn timed<F: Future>(metrics: Arc<Metrics>, started: Instant, future: F) -> F::Output {
    let output = future.await;
    metrics.check_duration.observe(started.elapsed().as_secs_f64());
    output
}
