//! Client and tower middleware for **ratelimiter**, the HTTP rate-limit
//! decision service: one line makes an axum (or any tower/hyper) API server
//! ask `POST /check` before every request.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use ratelimiter_client::{Client, RateLimitLayer};
//!
//! # fn app() -> Result<Router, ratelimiter_client::ClientError> {
//! let app = Router::new()
//!     .route("/api/items", get(|| async { "[]" }))
//!     .layer(RateLimitLayer::new(Client::new("http://127.0.0.1:8080")?));
//! # Ok(app) }
//! ```
//!
//! Allowed requests reach the handler and get the `X-RateLimit-*`,
//! `RateLimit-Policy` and `RateLimit` headers on their response; denied
//! ones are answered 429 (or 403 when blocked) with those headers,
//! `Retry-After` and a JSON body. See `README.md` for every option and the
//! failure behaviour.
//!
//! # Layout
//!
//! - [`client`] — [`Client`]: `POST /check` over a keep-alive pool, with a
//!   deadline; [`CheckRequest`], [`CheckOutcome`], [`ClientError`].
//! - [`extract`] — deriving the key ([`KeyExtractor`]), the client address
//!   and the endpoint from a request's head; pure functions.
//! - [`layer`] — [`RateLimitLayer`] / [`RateLimitService`]: the middleware,
//!   its options ([`FailureMode`], [`MissingKey`]) and the pure decision of
//!   what to answer ([`layer::decide`]).
//! - `trace` (feature `opentelemetry`) — the current span's trace context
//!   as W3C `traceparent`/`tracestate` on every request to the service.
//!
//! # Why hyper rather than reqwest
//!
//! The client is hyper 1 with hyper-util's pooled client — the HTTP stack
//! axum and the service already run on, so an API server using this crate
//! compiles nothing new for it. reqwest would add its own layers (URL
//! parsing, redirects, cookies, TLS options) that a loopback or
//! private-network call to one JSON endpoint never uses. The service speaks
//! plain HTTP (TLS is terminated in front of it), and so does this client.
//!
//! # The README
//!
#![doc = include_str!("../README.md")]

pub mod client;
pub mod extract;
pub mod layer;
#[cfg(feature = "opentelemetry")]
mod trace;

pub use client::{CheckOutcome, CheckRequest, Client, ClientBuilder, ClientError, LimitOutcome, Reason};
pub use extract::KeyExtractor;
pub use layer::{FailureMode, LeaseGuard, LeasedBody, MissingKey, RateLimitLayer, RateLimitService};
