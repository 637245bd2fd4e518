//! The HTTP client for ratelimiter's `POST /check`: the request, the
//! outcome (decision, numbers and the headers to forward) and the errors.
//!
//! One [`Client`] holds a pool of keep-alive connections; clone it freely
//! (clones share the pool). Every check has a deadline ([`ClientBuilder::timeout`])
//! covering connecting, sending and reading the answer.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

/// The largest answer body read from the service; a `/check` answer is
/// about 200 bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The headers of a `/check` answer that an API server copies onto its own
/// response (lower case, as HTTP/2 and `http` spell them).
pub const FORWARDED_HEADERS: [&str; 6] = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-policy",
    "ratelimit",
    "retry-after",
];

/// The body of `POST /check`. Only `key` is required; fields left `None`
/// are not sent, and the service applies its defaults (the default rule,
/// the default tier, cost 1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckRequest {
    /// Who is limited: an API key, user id, `ip:<addr>` — 1 to 256 bytes by default.
    pub key: String,
    /// Selects the rule with exactly this `endpoint`, e.g. `"GET /api/items"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Selects the tier's limit; an unknown tier is a 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Units consumed, at least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
    /// The end user's address, matched against IP and CIDR list entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// What a rule's limits may count per besides the key, e.g. `org`:
    /// at most 8, each value like a key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scopes: BTreeMap<String, String>,
    /// Makes the check (or report) apply at most once across replicas: 1
    /// to 128 bytes; a repeat is answered with `duplicate` set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl CheckRequest {
    /// A check of `key` against the default rule.
    pub fn new(key: impl Into<String>) -> CheckRequest {
        CheckRequest {
            key: key.into(),
            ..CheckRequest::default()
        }
    }

    /// Sets the endpoint (the rule's name, e.g. `"GET /api/items"`).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> CheckRequest {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the tier.
    pub fn tier(mut self, tier: impl Into<String>) -> CheckRequest {
        self.tier = Some(tier.into());
        self
    }

    /// Sets the cost; 0 peeks (see [`CheckRequest::peek`]).
    pub fn cost(mut self, cost: u64) -> CheckRequest {
        self.cost = Some(cost);
        self
    }

    /// Makes this a peek: the service answers 200 with [`Reason::Peek`],
    /// consumes nothing, and `allowed` says whether a cost-1 check would
    /// pass now; the numbers are the quota as it stands.
    pub fn peek(self) -> CheckRequest {
        self.cost(0)
    }

    /// Names a scope a rule's limits may count per, e.g.
    /// `.scope("org", "acme")`: the users of one org then draw from the
    /// org's limit too.
    pub fn scope(mut self, name: impl Into<String>, value: impl Into<String>) -> CheckRequest {
        self.scopes.insert(name.into(), value.into());
        self
    }

    /// Sets the end user's address.
    pub fn client_ip(mut self, ip: IpAddr) -> CheckRequest {
        self.client_ip = Some(ip);
        self
    }

    /// Sets the id that makes this check, or a report of it, apply once.
    pub fn id(mut self, id: impl Into<String>) -> CheckRequest {
        self.id = Some(id.into());
        self
    }
}

/// Why the service decided as it did (the `reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Within the limit (200).
    Allowed,
    /// Over the limit (429).
    Limited,
    /// On the allow list (200, nothing consumed).
    Allowlisted,
    /// On the block list (403).
    Blocked,
    /// The service's store was down and the rule fails open (200).
    FailOpen,
    /// The service's store was down and the rule fails closed (503).
    StoreUnavailable,
    /// The service's store was down; its local fallback allowed (200).
    LocalAllowed,
    /// The service's store was down; its local fallback denied (429).
    LocalLimited,
    /// A peek (cost 0): nothing consumed; `allowed` says whether a cost-1
    /// check would pass now (200).
    Peek,
    /// Over the limit of a rule in shadow mode: allowed all the same, and
    /// nothing consumed (200); the numbers are the limit's.
    ShadowLimited,
    /// A report charged its units (200, see [`Client::report`]).
    Reported,
    /// A report gave units back (200).
    Refunded,
    /// A reason this client does not know (a newer service).
    #[serde(other)]
    Other,
}

/// The decision of one check: the answer's status, its JSON body and the
/// rate-limit headers to copy onto the API server's response.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// 200 allowed, 429 limited, 403 blocked, 503 the service's store is
    /// down and the rule fails closed.
    pub status: StatusCode,
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota of the rule and tier.
    pub limit: u64,
    /// How many more cost-1 requests would be allowed now.
    pub remaining: u64,
    /// Milliseconds until the key is fully restored.
    pub reset_after_ms: u64,
    /// When denied, milliseconds until the same cost would be allowed; 0 when allowed.
    pub retry_after_ms: u64,
    /// The rule that decided (its endpoint, or `default`).
    pub rule: String,
    /// The tier whose limit applied.
    pub tier: String,
    /// The rule's algorithm.
    pub algorithm: String,
    /// Why.
    pub reason: Reason,
    /// For a rule with several limits: the binding limit, whose numbers
    /// the fields above are.
    pub limit_name: Option<String>,
    /// For a rule with several limits: every limit, in configuration order.
    pub limits: Vec<LimitOutcome>,
    /// The call's `id` was already applied: nothing changed.
    pub duplicate: bool,
    /// The lease an allowed check of a `concurrency` limit took: release it
    /// with [`Client::release`] when the work is done.
    pub lease: Option<String>,
    /// Milliseconds until that lease expires unless renewed.
    pub lease_expires_ms: Option<u64>,
    /// The answer's `X-RateLimit-*`, `RateLimit-Policy`, `RateLimit` and
    /// `Retry-After` headers, exactly as sent (see [`FORWARDED_HEADERS`]).
    pub headers: HeaderMap,
}

/// One limit of a rule with several, in a `/check` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LimitOutcome {
    pub name: String,
    /// `key`, or the scope the limit counts per.
    pub by: String,
    pub algorithm: String,
    pub limit: u64,
    pub remaining: u64,
    pub reset_after_ms: u64,
    pub retry_after_ms: u64,
    pub allowed: bool,
}

/// The JSON body of a `/check` answer.
#[derive(Deserialize)]
struct CheckBody {
    allowed: bool,
    limit: u64,
    remaining: u64,
    reset_after_ms: u64,
    retry_after_ms: u64,
    rule: String,
    tier: String,
    algorithm: String,
    reason: Reason,
    #[serde(default)]
    limit_name: Option<String>,
    #[serde(default)]
    limits: Vec<LimitOutcome>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    lease: Option<String>,
    #[serde(default)]
    lease_expires_ms: Option<u64>,
}

/// The JSON body of an error answer.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    field: Option<String>,
}

/// A check that did not produce a decision.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL given to [`Client::new`] is not `http://host[:port][/path]`.
    #[error("invalid ratelimiter URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No complete answer within the client's timeout.
    #[error("no answer from ratelimiter within {0:?}")]
    Timeout(Duration),
    /// Connecting or talking to the service failed (refused, reset, …).
    #[error("cannot reach ratelimiter: {}", chain(.0.as_ref()))]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The service refused the check as bad input (400, 413, 415, 422): a
    /// key too long or empty, an unknown tier, a cost above the rule's
    /// limit, ….
    #[error("ratelimiter rejected the check ({status}): {message}")]
    Rejected {
        status: StatusCode,
        message: String,
        /// The request field at fault, as the service names it.
        field: Option<String>,
    },
    /// The service answered with a status or body that is not a decision:
    /// a 5xx from it or a proxy in front of it, another 4xx (404 for a
    /// wrong base URL, 401 from a proxy, …), or not its JSON.
    #[error("unexpected answer from ratelimiter ({status}): {detail}")]
    Unexpected { status: StatusCode, detail: String },
    /// A tower layer stacked on the client failed the check without an
    /// answer from the service: its timeout elapsed, a load balancer had
    /// no ready client, … (see [`crate::RateLimitLayer::checks`]).
    #[error("no decision from the layers on the ratelimiter client: {}", chain(.0.as_ref()))]
    Layer(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ClientError {
    /// Whether the service could not be asked (unreachable, timed out, 5xx,
    /// garbled): the case a failure mode decides. A [`ClientError::Rejected`]
    /// check is not: the service answered, and the request is at fault.
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, ClientError::Rejected { .. } | ClientError::InvalidUrl { .. })
    }
}

/// Settings for a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
}

impl ClientBuilder {
    /// The deadline of one check: connecting, sending and reading the
    /// answer (default 250 ms). Past it the check is a [`ClientError::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// How long an unused keep-alive connection is kept (default 5 s).
    /// Keep it below the service's `server.read_timeout` (10 s by default),
    /// after which the service closes idle connections.
    pub fn pool_idle_timeout(mut self, idle: Duration) -> ClientBuilder {
        self.pool_idle_timeout = idle;
        self
    }

    /// How many idle connections are kept open (default 32).
    pub fn pool_max_idle(mut self, max: usize) -> ClientBuilder {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Builds the client; fails only on a bad base URL.
    pub fn build(self) -> Result<Client, ClientError> {
        let check_uri = check_uri(&self.base_url)?;
        let report_uri = sibling(&check_uri, "report");
        let release_uri = sibling(&check_uri, "release");
        let renew_uri = sibling(&check_uri, "renew");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(self.timeout));
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Ok(Client {
            http,
            check_uri,
            report_uri,
            release_uri,
            renew_uri,
            timeout: self.timeout,
        })
    }
}

/// `<base>/check` from a base URL such as `http://127.0.0.1:8080` or
/// `http://ratelimiter.internal/prefix/`.
fn check_uri(base_url: &str) -> Result<Uri, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = base_url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => {
            return Err(invalid(
                "only http:// is supported (terminate TLS in front of the service)",
            ))
        }
        None => return Err(invalid("missing http:// scheme")),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("missing host"));
    };
    if uri.query().is_some() {
        return Err(invalid("a base URL has no query string"));
    }
    let path = uri.path().trim_end_matches('/');
    format!("http://{authority}{path}/check")
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))
}

/// `<base>/<route>` from `<base>/check`.
fn sibling(check_uri: &Uri, route: &str) -> Uri {
    let text = check_uri.to_string();
    let base = text.strip_suffix("check").unwrap_or(&text);
    format!("{base}{route}").parse().unwrap_or_else(|_| check_uri.clone())
}

/// A client of one ratelimiter deployment (a replica or a load balancer in
/// front of several). Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    check_uri: Uri,
    report_uri: Uri,
    release_uri: Uri,
    renew_uri: Uri,
    timeout: Duration,
}

impl Client {
    /// A client of the service at `base_url` (e.g. `http://127.0.0.1:8080`)
    /// with the default settings.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::builder(base_url).build()
    }

    /// Settings for a client of the service at `base_url`.
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            timeout: Duration::from_millis(250),
            pool_idle_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 32,
        }
    }

    /// The URL checks are sent to.
    pub fn check_url(&self) -> &Uri {
        &self.check_uri
    }

    /// Asks the service whether `request` may proceed.
    ///
    /// `Ok` whenever the service decided — allowed or not, including its
    /// own fail-closed 503 (`reason` [`Reason::StoreUnavailable`]); `Err`
    /// when it could not be asked or refused the check as bad input.
    pub async fn check(&self, request: &CheckRequest) -> Result<CheckOutcome, ClientError> {
        match tokio::time::timeout(self.timeout, self.send(request)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }

    /// Reports `units` used after the work (`POST /report`): charged to
    /// every limit of `request`'s rule even past its limit, or given back
    /// when negative (never 0, at most 2^31 either way). `request.cost` is
    /// ignored; set `request.id` so that a retried report applies once.
    /// `Ok` with [`Reason::Reported`] or [`Reason::Refunded`]; a store
    /// failure is an [`ClientError::Unexpected`] 503, to retry.
    pub async fn report(&self, request: &CheckRequest, units: i64) -> Result<CheckOutcome, ClientError> {
        let mut body = serde_json::to_value(request).expect("a CheckRequest always serialises");
        body["cost"] = units.into();
        let body = serde_json::to_vec(&body).expect("JSON serialises");
        match tokio::time::timeout(self.timeout, self.post(&self.report_uri, body)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }

    /// Ends a lease (`POST /release`): `Ok(true)` when it was still held,
    /// `Ok(false)` when it had expired or was released already.
    pub async fn release(&self, lease: &str) -> Result<bool, ClientError> {
        let body = serde_json::to_vec(&serde_json::json!({ "lease": lease })).expect("JSON serialises");
        let (status, value) = self.post_json(&self.release_uri, body).await?;
        match (status.as_u16(), value["released"].as_bool()) {
            (200, Some(released)) => Ok(released),
            _ => Err(lease_error(status, &value)),
        }
    }

    /// Extends a held lease by its lifetime (`POST /renew`): the
    /// milliseconds until it now expires, or `Ok(None)` when it had
    /// expired or was released (acquire a new one with a check).
    pub async fn renew(&self, lease: &str) -> Result<Option<u64>, ClientError> {
        let body = serde_json::to_vec(&serde_json::json!({ "lease": lease })).expect("JSON serialises");
        let (status, value) = self.post_json(&self.renew_uri, body).await?;
        match (status.as_u16(), value["lease_expires_ms"].as_u64()) {
            (200, Some(ms)) => Ok(Some(ms)),
            (404, _) => Ok(None),
            _ => Err(lease_error(status, &value)),
        }
    }

    /// Posts `body` to `uri` within the timeout; the status and JSON answer.
    async fn post_json(&self, uri: &Uri, body: Vec<u8>) -> Result<(StatusCode, serde_json::Value), ClientError> {
        let call = async {
            let (status, _, bytes) = self.exchange(uri, body).await?;
            let value = serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
                status,
                detail: format!("not JSON: {e}; body: {}", snippet(&bytes)),
            })?;
            Ok((status, value))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }

    async fn send(&self, request: &CheckRequest) -> Result<CheckOutcome, ClientError> {
        let body = serde_json::to_vec(request).expect("a CheckRequest always serialises");
        self.post(&self.check_uri, body).await
    }

    async fn post(&self, uri: &Uri, body: Vec<u8>) -> Result<CheckOutcome, ClientError> {
        let (status, headers, bytes) = self.exchange(uri, body).await?;
        decode(status, &headers, &bytes)
    }

    /// One `POST` of a JSON `body` to `uri`: the answer's status, headers
    /// and body (at most [`MAX_ANSWER_BYTES`]). With the `opentelemetry`
    /// feature, the request carries the current span's trace context.
    async fn exchange(&self, uri: &Uri, body: Vec<u8>) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        #[allow(unused_mut)]
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        #[cfg(feature = "opentelemetry")]
        crate::trace::inject(request.headers_mut());
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| ClientError::Transport(Box::new(e)))?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(ClientError::Transport)?
            .to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }
}

/// The client as a [`tower::Service`] of checks, so that tower's layers
/// (timeouts, retries, concurrency limits, load balancing over several
/// clients) stack on it: `ServiceBuilder::new().layer(…).service(client)`.
/// Always ready; each call is [`Client::check`].
impl tower::Service<CheckRequest> for Client {
    type Response = CheckOutcome;
    type Error = ClientError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<CheckOutcome, ClientError>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ClientError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: CheckRequest) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { client.check(&request).await })
    }
}

/// The error of a `/release` or `/renew` answer that is not its success.
fn lease_error(status: StatusCode, value: &serde_json::Value) -> ClientError {
    match (status.as_u16(), value["error"].as_str()) {
        (400, Some(message)) => ClientError::Rejected {
            status,
            message: message.to_owned(),
            field: value["field"].as_str().map(str::to_owned),
        },
        _ => ClientError::Unexpected {
            status,
            detail: format!("body: {value}"),
        },
    }
}

/// Turns an answer into an outcome or an error.
pub(crate) fn decode(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<CheckOutcome, ClientError> {
    let unexpected = |detail: String| ClientError::Unexpected { status, detail };
    match status.as_u16() {
        // The service's decisions; a 503 is a decision only with the
        // `/check` body (a proxy's 503 is not).
        200 | 429 | 403 | 503 => match serde_json::from_slice::<CheckBody>(body) {
            Ok(b) => Ok(CheckOutcome {
                status,
                allowed: b.allowed,
                limit: b.limit,
                remaining: b.remaining,
                reset_after_ms: b.reset_after_ms,
                retry_after_ms: b.retry_after_ms,
                rule: b.rule,
                tier: b.tier,
                algorithm: b.algorithm,
                reason: b.reason,
                limit_name: b.limit_name,
                limits: b.limits,
                duplicate: b.duplicate,
                lease: b.lease,
                lease_expires_ms: b.lease_expires_ms,
                headers: forwarded_headers(headers),
            }),
            Err(e) => Err(unexpected(format!("not a /check answer: {e}; body: {}", snippet(body)))),
        },
        // The check's input is at fault; other 4xx (404, 405, a proxy's
        // 401 or 407) mean a misconfiguration, not a bad request.
        400 | 413 | 415 | 422 => match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => Err(ClientError::Rejected {
                status,
                message: e.error,
                field: e.field,
            }),
            Err(_) => Err(unexpected(format!("body: {}", snippet(body)))),
        },
        _ => Err(unexpected(format!("body: {}", snippet(body)))),
    }
}

/// The rate-limit headers of an answer, to copy onto a response.
pub fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(FORWARDED_HEADERS.len());
    for name in FORWARDED_HEADERS {
        if let Some(value) = headers.get(name) {
            out.insert(HeaderName::from_static(name), value.clone());
        }
    }
    out
}

/// An error and its causes, `outer: inner: …` (hyper's own message alone
/// is only "client error (Connect)").
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The beginning of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    if body.len() > 200 {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

impl CheckOutcome {
    /// Seconds to put in `Retry-After`: the service's header when present,
    /// else `retry_after_ms` rounded up (at least 1 when denied).
    pub fn retry_after_secs(&self) -> u64 {
        self.headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| self.retry_after_ms.div_ceil(1000).max(u64::from(!self.allowed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_uri_appends_check_to_the_base() {
        let uri = |s| check_uri(s).unwrap().to_string();
        assert_eq!(uri("http://127.0.0.1:8080"), "http://127.0.0.1:8080/check");
        assert_eq!(uri("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/check");
        assert_eq!(uri("http://rl.internal/limits/"), "http://rl.internal/limits/check");
    }

    #[test]
    fn check_uri_refuses_what_it_cannot_serve() {
        for bad in [
            "127.0.0.1:8080",
            "https://rl.internal",
            "http://",
            "http://h/?q=1",
            "not a url",
        ] {
            let err = check_uri(bad).unwrap_err();
            assert!(matches!(err, ClientError::InvalidUrl { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn request_omits_unset_fields() {
        let json = serde_json::to_value(CheckRequest::new("user:1")).unwrap();
        assert_eq!(json, serde_json::json!({"key": "user:1"}));
        let full = CheckRequest::new("k")
            .endpoint("GET /api/items")
            .tier("pro")
            .cost(2)
            .client_ip("::1".parse().unwrap());
        assert_eq!(
            serde_json::to_value(full).unwrap(),
            serde_json::json!({"key": "k", "endpoint": "GET /api/items", "tier": "pro", "cost": 2, "client_ip": "::1"})
        );
    }

    const LIMITED: &str = r#"{"allowed":false,"limit":5,"remaining":0,"reset_after_ms":34120,"retry_after_ms":34120,
        "rule":"POST /login","tier":"free","algorithm":"fixed_window","reason":"limited"}"#;

    #[test]
    fn decode_keeps_only_the_rate_limit_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", "5".parse().unwrap());
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        headers.insert("retry-after", "35".parse().unwrap());
        headers.insert("ratelimit", "\"POST /login\";r=0;t=35".parse().unwrap());
        headers.insert("x-request-id", "abc".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        let outcome = decode(StatusCode::TOO_MANY_REQUESTS, &headers, LIMITED.as_bytes()).unwrap();
        assert!(!outcome.allowed);
        assert_eq!(outcome.reason, Reason::Limited);
        assert_eq!(
            (outcome.limit, outcome.remaining, outcome.retry_after_ms),
            (5, 0, 34120)
        );
        assert_eq!(outcome.rule, "POST /login");
        assert_eq!(outcome.headers.len(), 4);
        assert_eq!(outcome.headers["retry-after"], "35");
        assert!(outcome.headers.get("x-request-id").is_none());
        assert_eq!(outcome.retry_after_secs(), 35);
    }

    #[test]
    fn decode_tells_rejections_from_outages() {
        let body = br#"{"error":"unknown tier \"gold\"","field":"tier"}"#;
        let err = decode(StatusCode::BAD_REQUEST, &HeaderMap::new(), body).unwrap_err();
        assert!(!err.is_unavailable());
        assert!(
            matches!(err, ClientError::Rejected { field: Some(ref f), .. } if f == "tier"),
            "{err}"
        );

        // A proxy's 502/503 without the /check body is an outage, and so is
        // a 200 that is not the service's.
        for (status, body) in [
            (502, &b"Bad Gateway"[..]),
            (503, b"<html>"),
            (200, b"{}"),
            (500, b""),
            (404, br#"{"error":"no such path","field":null}"#),
            (400, b"<html>bad request</html>"),
        ] {
            let err = decode(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), body).unwrap_err();
            assert!(err.is_unavailable(), "{status}: {err}");
        }
    }

    #[test]
    fn decode_accepts_the_services_own_fail_closed_answer() {
        let body = br#"{"allowed":false,"limit":5,"remaining":0,"reset_after_ms":0,"retry_after_ms":0,
            "rule":"POST /pay","tier":"free","algorithm":"gcra","reason":"store_unavailable"}"#;
        let outcome = decode(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), body).unwrap();
        assert_eq!(outcome.reason, Reason::StoreUnavailable);
        assert_eq!(outcome.retry_after_secs(), 1, "denied without a header: at least 1 s");
    }

    #[test]
    fn unknown_reasons_still_decode() {
        let body = LIMITED.replace("\"limited\"", "\"something_new\"");
        let outcome = decode(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body.as_bytes()).unwrap();
        assert_eq!(outcome.reason, Reason::Other);
    }
}
