//! The tower middleware: [`RateLimitLayer`] wraps a service so that every
//! request asks ratelimiter first.
//!
//! Per request: derive the key (none → [`MissingKey`]), the endpoint, tier,
//! cost and client address; call `POST /check`; then
//!
//! - allowed → call the inner service with the [`CheckOutcome`] in the
//!   request's extensions, and copy the rate-limit headers onto its response;
//! - denied → answer the service's status (429 limited, 403 blocked, 503
//!   when ratelimiter's store is down and the rule fails closed) with the
//!   rate-limit headers, `Retry-After` and a JSON body; the inner service is
//!   not called;
//! - ratelimiter unreachable, too slow or answering 5xx → [`FailureMode`];
//! - ratelimiter refusing the check as bad input (4xx: a key too long, an
//!   unknown tier) → 400 naming the field. Never passed through, since a
//!   client could otherwise escape its limit by sending a bad tier or key.
//!
//! When the check took a lease (a `concurrency` limit), the response's
//! body ([`LeasedBody`]) holds it and releases it when the body has been
//! sent to the end or is dropped; an error of the inner service, or a
//! request given up, releases it too (a [`LeaseGuard`] dropped). A release
//! that cannot be sent leaves the lease to expire by its `lease_ttl`.
//!
//! What to answer is decided by pure functions ([`Action`]), unit-tested
//! below; the service only does the I/O.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use tower::{Layer, Service};

use crate::client::{CheckOutcome, CheckRequest, Client, ClientError};
use crate::extract::{self, KeyExtractor};

/// What a request gets when ratelimiter cannot be asked: it is unreachable,
/// slower than the client's timeout, or answers 5xx (other than its own
/// fail-closed decision, which is always honoured).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Let the request through without rate-limit headers, and log a
    /// warning (at most one line per second, counting the ones suppressed).
    /// The API stays up; no limit is enforced meanwhile.
    #[default]
    FailOpen,
    /// Answer 503 with `Retry-After: 1` and a JSON body. No request passes
    /// unchecked; the API is down while ratelimiter is.
    FailClosed,
}

/// What a request gets when no key can be derived from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingKey {
    /// Answer 400 with a JSON error naming where the key was looked for.
    #[default]
    Reject,
    /// Let it through unchecked, without rate-limit headers.
    Allow,
}

type PartsFn<T> = Arc<dyn Fn(&Parts) -> T + Send + Sync>;

/// The checks as a cloneable service (see [`RateLimitLayer::checks`]).
type Checks = tower::util::BoxCloneSyncService<CheckRequest, CheckOutcome, tower::BoxError>;

#[derive(Clone)]
struct Config {
    client: Client,
    /// Where checks go when not straight to `client`: the client under
    /// tower layers.
    checks: Option<Checks>,
    key: KeyExtractor,
    endpoint: PartsFn<Option<String>>,
    tier: Option<PartsFn<Option<String>>>,
    cost: Option<PartsFn<u64>>,
    client_ip: Option<PartsFn<Option<IpAddr>>>,
    failure_mode: FailureMode,
    missing_key: MissingKey,
    /// Whether CORS preflight requests are limited too.
    limit_preflight: bool,
    failure_log: Arc<Throttle>,
}

/// A [`tower::Layer`] that rate-limits every request through ratelimiter.
///
/// ```no_run
/// # use ratelimiter_client::{Client, RateLimitLayer};
/// # fn app(router: axum::Router) -> Result<axum::Router, ratelimiter_client::ClientError> {
/// let router = router.layer(RateLimitLayer::new(Client::new("http://127.0.0.1:8080")?));
/// # Ok(router) }
/// ```
///
/// Defaults: the key is the `X-Api-Key` header (`x-api-key:<value>`), a
/// request without one is rejected (400); the endpoint is
/// `"<METHOD> <path>"`; no tier (the service's default tier), cost 1, no
/// client address; [`FailureMode::FailOpen`]; CORS preflight requests
/// (`OPTIONS` with `Access-Control-Request-Method`) pass unchecked.
#[derive(Clone)]
pub struct RateLimitLayer {
    config: Arc<Config>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("check_url", self.config.client.check_url())
            .field("key", &self.config.key)
            .field("checks_through_layers", &self.config.checks.is_some())
            .field("failure_mode", &self.config.failure_mode)
            .field("missing_key", &self.config.missing_key)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A layer asking the service behind `client`, with the defaults above.
    pub fn new(client: Client) -> RateLimitLayer {
        RateLimitLayer {
            config: Arc::new(Config {
                client,
                checks: None,
                key: KeyExtractor::header("x-api-key"),
                endpoint: Arc::new(extract::method_and_path),
                tier: None,
                cost: None,
                client_ip: None,
                failure_mode: FailureMode::default(),
                missing_key: MissingKey::default(),
                limit_preflight: false,
                failure_log: Arc::new(Throttle::new()),
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Config)) -> RateLimitLayer {
        change(Arc::make_mut(&mut self.config));
        self
    }

    /// How the key is derived (see [`KeyExtractor`]).
    pub fn key(self, key: KeyExtractor) -> RateLimitLayer {
        self.with(|c| c.key = key)
    }

    /// How the endpoint is derived; `None` sends none (the default rule).
    /// The default is [`extract::method_and_path`]. Behind axum's router,
    /// the route template keeps path parameters out of the name:
    /// `|p| p.extensions.get::<MatchedPath>().map(|m| format!("{} {}", p.method, m.as_str()))`.
    pub fn endpoint<F>(self, endpoint: F) -> RateLimitLayer
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.with(|c| c.endpoint = Arc::new(endpoint))
    }

    /// The tier from header `name` (absent → the service's default tier).
    /// Clients can send any header: set it only where your own
    /// authentication has written it, or use [`RateLimitLayer::tier`].
    ///
    /// # Panics
    ///
    /// When `name` is not a valid header name.
    pub fn tier_header(self, name: &str) -> RateLimitLayer {
        let name =
            http::HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("header name {name:?}: {e}"));
        self.tier(move |parts| {
            let value = parts.headers.get(&name)?.to_str().ok()?.trim();
            (!value.is_empty()).then(|| value.to_owned())
        })
    }

    /// How the tier is derived (e.g. from an extension your authentication
    /// layer inserted); `None` → the service's default tier.
    pub fn tier<F>(self, tier: F) -> RateLimitLayer
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.with(|c| c.tier = Some(Arc::new(tier)))
    }

    /// The same cost for every request (the service's default is 1).
    pub fn cost(self, cost: u64) -> RateLimitLayer {
        self.cost_fn(move |_| cost)
    }

    /// A cost per request (e.g. by method or route).
    pub fn cost_fn<F>(self, cost: F) -> RateLimitLayer
    where
        F: Fn(&Parts) -> u64 + Send + Sync + 'static,
    {
        self.with(|c| c.cost = Some(Arc::new(cost)))
    }

    /// How the end user's address is derived, sent as `client_ip` so the
    /// service's IP and CIDR allow/block entries apply, e.g.
    /// [`extract::forwarded_for_ip`]. Without it, the address of a key made
    /// by an address extractor ([`KeyExtractor::forwarded_for`],
    /// [`KeyExtractor::peer_ip`]) is sent.
    pub fn client_ip<F>(self, client_ip: F) -> RateLimitLayer
    where
        F: Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.with(|c| c.client_ip = Some(Arc::new(client_ip)))
    }

    /// What happens when ratelimiter cannot be asked.
    pub fn failure_mode(self, mode: FailureMode) -> RateLimitLayer {
        self.with(|c| c.failure_mode = mode)
    }

    /// Whether CORS preflight requests (`OPTIONS` with
    /// `Access-Control-Request-Method`) are checked too; by default they
    /// pass unchecked and consume nothing: a browser sends one before the
    /// real request, which is checked.
    pub fn limit_preflight(self, limit: bool) -> RateLimitLayer {
        self.with(|c| c.limit_preflight = limit)
    }

    /// What happens to a request without a key.
    pub fn missing_key(self, missing: MissingKey) -> RateLimitLayer {
        self.with(|c| c.missing_key = missing)
    }

    /// Sends the checks through `checks` instead of straight to the
    /// layer's client: the client (or several) under tower's layers — a
    /// timeout, retries, a concurrency limit, load balancing. Leases are
    /// still released through the layer's client.
    ///
    /// An error of `checks` that is a [`ClientError`] counts as that
    /// error; any other (a layer's timeout, a load balancer with no
    /// ready client, …) is [`ClientError::Layer`], which the
    /// [`FailureMode`] decides.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use ratelimiter_client::{Client, RateLimitLayer};
    /// let client = Client::new("http://ratelimiter:8080")?;
    /// let checks = tower::ServiceBuilder::new()
    ///     .concurrency_limit(256)
    ///     .service(client.clone());
    /// let layer = RateLimitLayer::new(client).checks(checks);
    /// # Ok::<(), ratelimiter_client::ClientError>(())
    /// ```
    pub fn checks<S>(self, checks: S) -> RateLimitLayer
    where
        S: Service<CheckRequest, Response = CheckOutcome> + Clone + Send + Sync + 'static,
        S::Error: Into<tower::BoxError>,
        S::Future: Send + 'static,
    {
        use tower::ServiceExt;
        let boxed = Checks::new(checks.map_err(Into::into));
        self.with(|c| c.checks = Some(boxed))
    }
}

/// Asks ratelimiter through the layer's checks, or its client.
async fn ask(config: &Config, check: &CheckRequest) -> Result<CheckOutcome, ClientError> {
    use tower::ServiceExt;
    match &config.checks {
        None => config.client.check(check).await,
        Some(checks) => {
            checks
                .clone()
                .oneshot(check.clone())
                .await
                .map_err(|error| match error.downcast::<ClientError>() {
                    Ok(error) => *error,
                    Err(other) => ClientError::Layer(other),
                })
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> RateLimitService<S> {
        RateLimitService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The middleware built by [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    config: Arc<Config>,
}

/// A boxed, sendable future, as the service returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A CORS preflight: `OPTIONS` asking `Access-Control-Request-Method`.
fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::OPTIONS && request.headers().contains_key("access-control-request-method")
}

/// A lease a request holds: released (in the background, on the current
/// tokio runtime) when dropped.
#[derive(Debug)]
pub struct LeaseGuard {
    client: Client,
    lease: String,
}

impl LeaseGuard {
    pub fn new(client: Client, lease: String) -> LeaseGuard {
        LeaseGuard { client, lease }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let (client, lease) = (self.client.clone(), std::mem::take(&mut self.lease));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = client.release(&lease).await {
                    tracing::warn!(error = %e, "could not release a lease; it expires by its lease_ttl");
                }
            });
        }
    }
}

/// A response body that holds the request's lease until it has been sent
/// to the end, or is dropped (see the module's docs).
#[derive(Debug)]
pub struct LeasedBody<B> {
    inner: B,
    guard: Option<LeaseGuard>,
}

impl<B> LeasedBody<B> {
    pub fn new(inner: B, guard: Option<LeaseGuard>) -> LeasedBody<B> {
        LeasedBody { inner, guard }
    }
}

impl<B: From<String>> From<String> for LeasedBody<B> {
    fn from(text: String) -> LeasedBody<B> {
        LeasedBody::new(B::from(text), None)
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for LeasedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // Sent to the end: the work is done.
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<LeasedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<LeasedBody<ResBody>>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The instance polled ready is the one to call; leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        Box::pin(async move {
            if !config.limit_preflight && is_preflight(&request) {
                let response = inner.call(request).await?;
                return Ok(response.map(|body| LeasedBody::new(body, None)));
            }
            let (mut parts, body) = request.into_parts();
            let action = match check_request(&config, &parts) {
                None => missing_key(config.missing_key, &config.key),
                Some(check) => {
                    let result = ask(&config, &check).await;
                    log_failure(&config, &check, &result);
                    decide(result, config.failure_mode)
                }
            };
            match action {
                Action::Proceed(outcome) => {
                    let headers = outcome.as_ref().map(|o| o.headers.clone());
                    // Held from here: an error or a dropped future releases it.
                    let guard = outcome
                        .as_ref()
                        .and_then(|o| o.lease.clone())
                        .map(|lease| LeaseGuard::new(config.client.clone(), lease));
                    if let Some(outcome) = outcome {
                        parts.extensions.insert(outcome);
                    }
                    let mut response = inner.call(Request::from_parts(parts, body)).await?;
                    if let Some(headers) = headers {
                        copy_headers(&headers, response.headers_mut());
                    }
                    Ok(response.map(|body| LeasedBody::new(body, guard)))
                }
                Action::Respond(response) => Ok(response.map(LeasedBody::from)),
            }
        })
    }
}

/// The check for a request, or `None` when it has no key.
fn check_request(config: &Config, parts: &Parts) -> Option<CheckRequest> {
    let derived = config.key.derive(parts)?;
    let client_ip = match &config.client_ip {
        Some(f) => f(parts),
        None => derived.ip,
    };
    Some(CheckRequest {
        key: derived.key,
        endpoint: (config.endpoint)(parts),
        tier: config.tier.as_ref().and_then(|f| f(parts)),
        cost: config.cost.as_ref().map(|f| f(parts)),
        client_ip,
        scopes: Default::default(),
        id: None,
    })
}

/// What the middleware does with a request.
#[derive(Debug)]
pub enum Action {
    /// Call the inner service; with the outcome when the service was asked
    /// (its headers are copied onto the response).
    Proceed(Option<CheckOutcome>),
    /// Answer this instead (a JSON body).
    Respond(Response<String>),
}

/// The action for a check's result.
pub fn decide(result: Result<CheckOutcome, ClientError>, mode: FailureMode) -> Action {
    match result {
        Ok(outcome) if outcome.allowed => Action::Proceed(Some(outcome)),
        Ok(outcome) => Action::Respond(denied(&outcome)),
        Err(ClientError::Rejected { message, field, .. }) => Action::Respond(json_response(
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            json!({ "error": format!("the rate-limit check was refused: {message}"), "field": field }),
        )),
        Err(_) if mode == FailureMode::FailOpen => Action::Proceed(None),
        Err(_) => {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            Action::Respond(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                headers,
                json!({ "error": "rate limiting is unavailable; retry later", "reason": "rate_limiter_unavailable" }),
            ))
        }
    }
}

/// The action for a request without a key.
pub fn missing_key(missing: MissingKey, key: &KeyExtractor) -> Action {
    match missing {
        MissingKey::Allow => Action::Proceed(None),
        MissingKey::Reject => Action::Respond(json_response(
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            json!({
                "error": format!("the request has no rate-limit key (looked for: {})", key.source()),
                "field": key.source(),
            }),
        )),
    }
}

/// The answer to a denied request: the service's status and headers, and
/// a JSON body saying why and when to retry.
fn denied(outcome: &CheckOutcome) -> Response<String> {
    let status = match outcome.status {
        StatusCode::OK => StatusCode::TOO_MANY_REQUESTS,
        status => status,
    };
    let mut headers = outcome.headers.clone();
    let retry_after = outcome.retry_after_secs();
    if status != StatusCode::FORBIDDEN && !headers.contains_key(RETRY_AFTER) {
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
    }
    let error = match status {
        StatusCode::FORBIDDEN => "forbidden".to_owned(),
        StatusCode::SERVICE_UNAVAILABLE => "rate limiting is unavailable; retry later".to_owned(),
        _ => format!("too many requests; retry after {retry_after} s"),
    };
    let mut body = json!({
        "error": error,
        "reason": outcome.reason_str(),
    });
    if status != StatusCode::FORBIDDEN {
        body["limit"] = outcome.limit.into();
        body["remaining"] = outcome.remaining.into();
        body["retry_after_ms"] = outcome.retry_after_ms.into();
    }
    json_response(status, headers, body)
}

fn json_response(status: StatusCode, headers: HeaderMap, body: serde_json::Value) -> Response<String> {
    let mut response = Response::new(body.to_string());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Copies the rate-limit headers onto a response, replacing any the inner
/// service set under the same names.
pub fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        to.insert(name.clone(), value.clone());
    }
}

fn log_failure(config: &Config, check: &CheckRequest, result: &Result<CheckOutcome, ClientError>) {
    let Err(error) = result else { return };
    let Some(suppressed) = config.failure_log.admit() else {
        return;
    };
    let key = check.key.as_str();
    let endpoint = check.endpoint.as_deref().unwrap_or("");
    if !error.is_unavailable() {
        tracing::warn!(%error, key, endpoint, suppressed, "rate-limit check refused; answering 400");
    } else if config.failure_mode == FailureMode::FailOpen {
        tracing::warn!(%error, key, endpoint, suppressed, "ratelimiter unavailable; failing open");
    } else {
        tracing::error!(%error, key, endpoint, suppressed, "ratelimiter unavailable; failing closed (503)");
    }
}

/// At most one log line per second; counts the ones left out.
struct Throttle {
    start: Instant,
    /// The second (since `start`) of the last line, plus one (0: none yet).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    fn new() -> Throttle {
        Throttle {
            start: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last line)` when a line may be written.
    fn admit(&self) -> Option<u64> {
        let now = self.start.elapsed().as_secs() + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != now
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl CheckOutcome {
    /// The `reason` as the service spells it.
    pub fn reason_str(&self) -> &'static str {
        use crate::client::Reason::*;
        match self.reason {
            Allowed => "allowed",
            Limited => "limited",
            Allowlisted => "allowlisted",
            Blocked => "blocked",
            FailOpen => "fail_open",
            StoreUnavailable => "store_unavailable",
            LocalAllowed => "local_allowed",
            LocalLimited => "local_limited",
            Peek => "peek",
            ShadowLimited => "shadow_limited",
            Reported => "reported",
            Refunded => "refunded",
            Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Reason;

    fn outcome(status: u16, reason: Reason, headers: &[(&'static str, &str)]) -> CheckOutcome {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        CheckOutcome {
            status: StatusCode::from_u16(status).unwrap(),
            allowed: status == 200,
            limit: 3,
            remaining: if status == 200 { 2 } else { 0 },
            reset_after_ms: 60_000,
            retry_after_ms: if status == 200 { 0 } else { 41_500 },
            rule: "GET /api/items".into(),
            tier: "free".into(),
            algorithm: "sliding_window_log".into(),
            reason,
            limit_name: None,
            limits: Vec::new(),
            duplicate: false,
            lease: None,
            lease_expires_ms: None,
            headers: map,
        }
    }

    fn body(response: &Response<String>) -> serde_json::Value {
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        serde_json::from_str(response.body()).unwrap()
    }

    #[test]
    fn copy_headers_replaces_and_keeps_the_rest() {
        let mut to = HeaderMap::new();
        to.insert("x-ratelimit-limit", "999".parse().unwrap());
        to.insert("content-type", "text/plain".parse().unwrap());
        let from = outcome(
            200,
            Reason::Allowed,
            &[("x-ratelimit-limit", "3"), ("ratelimit", "\"r\";r=2;t=60")],
        )
        .headers;
        copy_headers(&from, &mut to);
        assert_eq!(to["x-ratelimit-limit"], "3");
        assert_eq!(to.get_all("x-ratelimit-limit").iter().count(), 1);
        assert_eq!(to["ratelimit"], "\"r\";r=2;t=60");
        assert_eq!(to["content-type"], "text/plain");
    }

    #[test]
    fn allowed_proceeds_with_the_outcome() {
        let action = decide(Ok(outcome(200, Reason::Allowed, &[])), FailureMode::FailClosed);
        assert!(
            matches!(action, Action::Proceed(Some(ref o)) if o.remaining == 2),
            "{action:?}"
        );
    }

    #[test]
    fn limited_answers_429_with_headers_and_body() {
        let limited = outcome(
            429,
            Reason::Limited,
            &[("x-ratelimit-remaining", "0"), ("retry-after", "42")],
        );
        let Action::Respond(response) = decide(Ok(limited), FailureMode::FailOpen) else {
            panic!("a denied request is answered")
        };
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "42");
        assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
        let body = body(&response);
        assert_eq!(body["reason"], "limited");
        assert_eq!(body["retry_after_ms"], 41_500);
        assert_eq!(body["error"], "too many requests; retry after 42 s");
    }

    #[test]
    fn retry_after_is_filled_in_when_the_service_sent_none() {
        let Action::Respond(response) = decide(Ok(outcome(429, Reason::LocalLimited, &[])), FailureMode::FailOpen)
        else {
            panic!("denied")
        };
        assert_eq!(response.headers()["retry-after"], "42", "41.5 s rounded up");
    }

    #[test]
    fn blocked_answers_403_without_retry_after() {
        let Action::Respond(response) = decide(Ok(outcome(403, Reason::Blocked, &[])), FailureMode::FailOpen) else {
            panic!("denied")
        };
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.headers().get(RETRY_AFTER).is_none());
        let body = body(&response);
        assert_eq!(body["reason"], "blocked");
        assert!(body.get("limit").is_none());
    }

    #[test]
    fn the_services_own_fail_closed_answer_is_honoured_even_when_failing_open() {
        let closed = outcome(503, Reason::StoreUnavailable, &[("retry-after", "1")]);
        let Action::Respond(response) = decide(Ok(closed), FailureMode::FailOpen) else {
            panic!("denied")
        };
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(&response)["reason"], "store_unavailable");
    }

    #[test]
    fn unavailable_follows_the_failure_mode() {
        let down = || Err(ClientError::Timeout(std::time::Duration::from_millis(250)));
        assert!(matches!(decide(down(), FailureMode::FailOpen), Action::Proceed(None)));
        let Action::Respond(response) = decide(down(), FailureMode::FailClosed) else {
            panic!("fail closed answers")
        };
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(body(&response)["reason"], "rate_limiter_unavailable");
    }

    #[test]
    fn a_refused_check_is_400_whatever_the_failure_mode() {
        for mode in [FailureMode::FailOpen, FailureMode::FailClosed] {
            let refused = Err(ClientError::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: "unknown tier \"gold\"".into(),
                field: Some("tier".into()),
            });
            let Action::Respond(response) = decide(refused, mode) else {
                panic!("a refused check never passes")
            };
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            let body = body(&response);
            assert_eq!(body["field"], "tier");
            assert!(body["error"].as_str().unwrap().contains("unknown tier"), "{body}");
        }
    }

    #[test]
    fn missing_key_rejects_naming_the_source_or_allows() {
        let key = KeyExtractor::header("x-api-key");
        let Action::Respond(response) = missing_key(MissingKey::Reject, &key) else {
            panic!("rejected")
        };
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(&response)["field"], "x-api-key");
        assert!(matches!(missing_key(MissingKey::Allow, &key), Action::Proceed(None)));
    }

    #[test]
    fn throttle_admits_one_line_per_second_and_counts_the_rest() {
        let throttle = Throttle::new();
        assert_eq!(throttle.admit(), Some(0));
        // Whether or not a second boundary passes meanwhile, every call left
        // out is counted exactly once: still pending, or reported by a
        // later admitted line.
        let admitted: Vec<_> = (0..5).map(|_| throttle.admit()).collect();
        let suppressed = admitted.iter().filter(|a| a.is_none()).count() as u64;
        assert_eq!(
            throttle.suppressed.load(Ordering::Relaxed) + admitted.iter().flatten().sum::<u64>(),
            suppressed
        );
    }
}
