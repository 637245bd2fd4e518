//! The HTTP API: routes, handlers and their wire format.
//!
//! Handlers are thin: parse the request into domain types ([`wire`]), call
//! the [`Limiter`], shape the answer. Every failure becomes an [`ApiError`]
//! with a JSON body; no input makes a handler panic or answer 500.
//!
//! | route | what |
//! |---|---|
//! | `POST /check` | decide a request: 200 allowed, 429 denied, 403 blocked |
//! | `POST /check/batch` | decide up to 100 requests at once |
//! | `GET /check/forward` | the same, read from a gateway's forwarded headers (any standard method) |
//! | `GET /health`, `GET /health/live` | liveness |
//! | `GET /health/ready` | readiness: store reachable and not draining |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /`, `GET /rules` | the effective rules |
//! | `GET /openapi.json` | this API as OpenAPI 3.0 ([`openapi`]) |
//!
//! Every request gets an `x-request-id` (the caller's, or a new UUID),
//! echoed in the response and recorded on a tracing span, so every log line
//! of the request carries it.

pub mod error;
pub mod forward;
pub mod openapi;
pub mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, post, MethodFilter};
use axum::{Json, Router};

pub use error::ApiError;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::control::Control;
use crate::limiter::{CheckRequest, Limiter, Reason, Verdict};
use crate::metrics::Metrics;
use crate::settings::{FailureMode, ForwardSettings};
use crate::store::Store;

/// Limits the HTTP layer enforces on requests.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_key_bytes: usize,
    pub max_body_bytes: usize,
}

/// What every handler can reach.
pub struct AppState<S> {
    pub limiter: Limiter<S>,
    pub limits: HttpLimits,
    /// Where operators' overrides and lists are kept.
    pub control: Control,
    /// The rules file, for reloads; `None` when running on built-in defaults.
    pub rules_file: Option<PathBuf>,
    /// Set once shutdown has begun: readiness turns false.
    pub draining: AtomicBool,
    /// Caps the log events of denied and failed checks.
    pub check_log: LogSampler,
    /// How `/check/forward` reads requests from headers.
    pub forward: ForwardSettings,
}

impl<S: Store> AppState<S> {
    pub fn new(limiter: Limiter<S>, limits: HttpLimits, control: Control, rules_file: Option<PathBuf>) -> Self {
        AppState {
            limiter,
            limits,
            control,
            rules_file,
            draining: AtomicBool::new(false),
            check_log: LogSampler::new(20),
            forward: ForwardSettings::default(),
        }
    }

    /// Sets how `/check/forward` reads requests.
    pub fn with_forward(mut self, forward: ForwardSettings) -> Self {
        self.forward = forward;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        self.limiter.metrics()
    }
}

/// The public API's router.
pub fn router<S: Store>(state: Arc<AppState<S>>) -> Router {
    let max_body = state.limits.max_body_bytes;
    let router = Router::new()
        .route("/check", post(check::<S>))
        .route("/check/batch", post(check_batch::<S>))
        .route(
            "/check/forward",
            // Gateways ask with the original request's method (nginx's
            // auth_request does): every standard method, none other.
            on(
                MethodFilter::GET
                    .or(MethodFilter::HEAD)
                    .or(MethodFilter::POST)
                    .or(MethodFilter::PUT)
                    .or(MethodFilter::DELETE)
                    .or(MethodFilter::OPTIONS)
                    .or(MethodFilter::PATCH)
                    .or(MethodFilter::TRACE),
                forward_check::<S>,
            ),
        )
        .route("/health", get(health))
        .route("/health/live", get(health))
        .route("/health/ready", get(ready::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/", get(rules::<S>))
        .route("/rules", get(rules::<S>))
        .route("/openapi.json", get(openapi::serve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);
    with_request_ids(router)
}

/// Request ids for requests that bring none: 16 hex digits drawn at start
/// (so replicas differ) followed by a counter, as 32 hex digits. Unique per
/// process without a random draw per request (a UUIDv4 costs a
/// `getrandom` system call each).
#[derive(Clone)]
pub struct SequentialIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl SequentialIds {
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the operating system's randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        SequentialIds {
            prefix: hasher.finish(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for SequentialIds {
    fn default() -> Self {
        SequentialIds::new()
    }
}

impl MakeRequestId for SequentialIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        hex_into(&mut id[..16], self.prefix);
        hex_into(&mut id[16..], n);
        axum::http::HeaderValue::from_bytes(&id).ok().map(RequestId::new)
    }
}

fn hex_into(out: &mut [u8], mut n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in out.iter_mut().rev() {
        *byte = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// Accepts or generates `x-request-id`, opens a span carrying it around the
/// request, and echoes it in the response.
pub fn with_request_ids(router: Router) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    router
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
        }))
        .layer(SetRequestIdLayer::new(x_request_id, SequentialIds::new()))
}

async fn check<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = decide(&state, &headers, body).await;
    state.metrics().check_duration.observe(started.elapsed().as_secs_f64());
    result
}

async fn decide<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_json_body(headers, body, state.limits.max_body_bytes)?;
    let request = wire::parse_check(&body, state.limits.max_key_bytes)?;
    answer(state, &request, StatusCode::TOO_MANY_REQUESTS).await
}

/// `GET /check/forward`: a check read from forwarded headers.
async fn forward_check<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = async {
        let denied = forward::denied_status(uri.query())?;
        let request = forward::parse_forwarded(&headers, &state.forward, state.limits.max_key_bytes)?;
        answer(&state, &request, denied).await
    }
    .await;
    state.metrics().check_duration.observe(started.elapsed().as_secs_f64());
    result
}

/// Decides `request` and shapes the answer; a limited check gets `denied`.
async fn answer<S: Store>(
    state: &AppState<S>,
    request: &CheckRequest,
    denied: StatusCode,
) -> Result<Response, ApiError> {
    let verdict = state.limiter.check(request).await?;
    let status = status_of(verdict.reason, denied);
    note_denial(state, request, &verdict);
    let headers = wire::rate_limit_headers(&verdict);
    Ok((status, headers, Json(wire::CheckResponse::from(&verdict))).into_response())
}

/// `POST /check/batch`: several checks decided in one request.
async fn check_batch<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = decide_batch(&state, &headers, body).await;
    state.metrics().check_duration.observe(started.elapsed().as_secs_f64());
    result
}

async fn decide_batch<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_json_body(headers, body, state.limits.max_body_bytes)?;
    let requests = wire::parse_batch(&body, state.limits.max_key_bytes)?;
    let results = state
        .limiter
        .check_batch(&requests)
        .await
        .map_err(|(i, e)| ApiError::from(e).within(&format!("checks[{i}]")))?;
    let outcomes: Vec<Result<(StatusCode, Verdict), ApiError>> = results
        .into_iter()
        .zip(&requests)
        .enumerate()
        .map(|(i, (result, request))| match result {
            Ok(verdict) => {
                note_denial(state, request, &verdict);
                Ok((status_of(verdict.reason, StatusCode::TOO_MANY_REQUESTS), verdict))
            }
            Err(e) => Err(ApiError::from(e).within(&format!("checks[{i}]"))),
        })
        .collect();
    // The batch answers like its first refused check, or like its tightest
    // allowed one, so a caller can copy status and headers as they are.
    let refused = outcomes.iter().find_map(|outcome| match outcome {
        Ok((status, verdict)) if *status != StatusCode::OK => Some((*status, Some(verdict))),
        Ok(_) => None,
        Err(e) => Some((e.status, None)),
    });
    let (status, shown) = match refused {
        Some(refused) => refused,
        None => (
            StatusCode::OK,
            outcomes
                .iter()
                .filter_map(|outcome| outcome.as_ref().ok().map(|(_, verdict)| verdict))
                .min_by_key(|verdict| verdict.decision.remaining),
        ),
    };
    let headers = shown.map(wire::rate_limit_headers).unwrap_or_default();
    Ok((status, headers, Json(wire::BatchResponse::new(&outcomes))).into_response())
}

fn status_of(reason: Reason, denied: StatusCode) -> StatusCode {
    match reason {
        Reason::Allowed | Reason::Allowlisted | Reason::FailOpen | Reason::LocalAllowed => StatusCode::OK,
        Reason::Limited | Reason::LocalLimited => denied,
        Reason::Blocked => StatusCode::FORBIDDEN,
        Reason::FailClosed => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Logs a check that was not simply allowed, sampled.
fn note_denial<S: Store>(state: &AppState<S>, request: &CheckRequest, verdict: &Verdict) {
    if !matches!(verdict.reason, Reason::Allowed | Reason::Allowlisted) {
        if let Some(suppressed) = state.check_log.admit() {
            let decision = verdict.reason.decision();
            let retry_after_ms = verdict.decision.retry_after_us.div_ceil(1000);
            let (rule, tier, key) = (&*verdict.rule, &*verdict.tier, request.key.as_str());
            match &verdict.store_error {
                Some(error) => tracing::warn!(
                    decision,
                    rule,
                    tier,
                    key,
                    error,
                    suppressed,
                    "check decided by the failure mode"
                ),
                None => tracing::info!(decision, rule, tier, key, retry_after_ms, suppressed, "check denied"),
            }
        }
    }
}

/// The body of a JSON request: checks the content type and maps a body
/// that could not be read (too large, broken) to an error naming `body`.
pub fn read_json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max_body_bytes: usize,
) -> Result<Bytes, ApiError> {
    require_json(headers)?;
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("body is larger than {max_body_bytes} bytes")
        } else {
            format!("could not read the body: {}", rejection.body_text())
        };
        ApiError::new(status, message).with_field("body")
    })
}

/// Accepts `application/json` and `application/<anything>+json`, with
/// parameters such as `charset`.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_json = mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        let got = if content_type.is_empty() {
            "none".to_owned()
        } else {
            format!("{content_type:?}")
        };
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json (got {got})"),
        )
        .with_field("content-type"))
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// 200 when the replica should receive traffic, 503 with the reason when
/// not: draining for shutdown, or the store not answering.
async fn ready<S: Store>(State(state): State<Arc<AppState<S>>>) -> Response {
    let breaker = state.limiter.breaker().state().as_str();
    let mode = state.limiter.failure_policy().mode;
    let (ready, body) = if state.draining.load(Ordering::Relaxed) {
        (
            false,
            serde_json::json!({ "ready": false, "reason": "draining: the replica is shutting down" }),
        )
    } else {
        match state.limiter.store().ping().await {
            Ok(()) => (
                true,
                serde_json::json!({ "ready": true, "store": "ok", "breaker": breaker }),
            ),
            // The failure mode still decides checks: keep serving.
            Err(e) if mode != FailureMode::Closed => (
                true,
                serde_json::json!({
                    "ready": true, "store": format!("unreachable: {}", e.message),
                    "failure_mode": mode.as_str(), "breaker": breaker,
                }),
            ),
            Err(e) => (
                false,
                serde_json::json!({
                    "ready": false, "reason": format!("the store is unreachable: {}", e.message),
                    "failure_mode": mode.as_str(), "breaker": breaker,
                }),
            ),
        }
    };
    state.metrics().ready.set(i64::from(ready));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics<S: Store>(State(state): State<Arc<AppState<S>>>) -> Response {
    state.limiter.store().update_gauges(state.metrics());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics().render(),
    )
        .into_response()
}

/// At most `per_second` log events per second; reports how many were
/// suppressed since the last one let through. Lock-free: a key flooding
/// past its limit asks on every denial, from every worker thread.
pub struct LogSampler {
    per_second: u64,
    /// The current second (high bits) and the events let through in it
    /// (low [`COUNT_BITS`] bits).
    window: AtomicU64,
    suppressed: AtomicU64,
}

const COUNT_BITS: u32 = 20;

impl LogSampler {
    pub fn new(per_second: u64) -> LogSampler {
        LogSampler {
            per_second: per_second.min((1 << COUNT_BITS) - 1),
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed)` when this event may be logged.
    pub fn admit(&self) -> Option<u64> {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let next = if current >> COUNT_BITS != second {
                (second << COUNT_BITS) | 1
            } else if current & ((1 << COUNT_BITS) - 1) < self.per_second {
                current + 1
            } else {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            match self
                .window
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(actual) => current = actual,
            }
        }
    }
}

async fn rules<S: Store>(State(state): State<Arc<AppState<S>>>) -> Json<wire::RulesView> {
    Json(wire::RulesView::new(&state.limiter.snapshot().rules))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}; see GET /rules, POST /check, GET /health",
            uri.path()
        ),
    )
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod sampler_tests {
    use std::sync::atomic::Ordering;

    use super::LogSampler;

    fn second() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    #[test]
    fn at_most_per_second_then_the_count_of_the_rest() {
        let sampler = LogSampler::new(3);
        let start = second();
        let admitted: Vec<Option<u64>> = (0..10).map(|_| sampler.admit()).collect();
        let seconds = second() - start + 1;
        let through = admitted.iter().filter(|a| a.is_some()).count() as u64;
        let reported: u64 = admitted.iter().flatten().sum();
        let pending = sampler.suppressed.load(Ordering::Relaxed);
        assert!(through >= 3 && through <= 3 * seconds, "{admitted:?} in {seconds} s");
        assert_eq!(through + reported + pending, 10, "every event let through or counted");
    }

    #[test]
    fn threads_share_the_budget() {
        let sampler = std::sync::Arc::new(LogSampler::new(5));
        let start = second();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let sampler = sampler.clone();
                std::thread::spawn(move || (0..1000).filter(|_| sampler.admit().is_some()).count() as u64)
            })
            .collect();
        let through: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let seconds = second() - start + 1;
        assert!(
            through >= 5 && through <= 5 * seconds,
            "{through} let through in {seconds} s"
        );
    }
}
