//! ratelimiter: a standalone HTTP rate-limit decision service.
//!
//! API servers ask `POST /check` whether a request may proceed and get back
//! allow/deny plus the numbers for their rate-limit headers. A request
//! walks the four wings in order, visiting each once: [`http`] →
//! [`limiter`] → [`store`] → [`core`], and back.
//!
//! # Layout
//!
//! **Top: wiring.**
//! - [`app`]: [`app::App::builder`] — settings in, store connected,
//!   listeners bound, service running; tests build through it too.
//! - [`context`]: what the HTTP API, the admin API and the reload share
//!   (limiter, control plane, rules file, draining), and its background
//!   upkeep.
//! - [`reload`]: re-reading the rules file on SIGHUP, on change, or on
//!   request, keeping the old rules when the new file is invalid.
//! - [`server`]: the HTTP/1 accept loop with header and request read
//!   timeouts, so slow clients cannot hold connections.
//! - [`settings`]: typed configuration (TOML file + environment), its
//!   sections, validation naming the field, and human durations.
//! - [`metrics`]: Prometheus metrics on an owned registry.
//! - [`cli`], [`telemetry`]: command line, logging and traces, used by
//!   `main.rs`.
//! - [`tls`]: the TLS client configuration of the connections the service
//!   opens (Redis, the OpenTelemetry collector).
//!
//! **[`http`]: the HTTP API.** The router; `check`, `forward` and `batch`;
//! the operational routes (`ops`: health, readiness, metrics, rules,
//! OpenAPI); request ids, the log sampler, the one error type, the JSON
//! wire format, the rate-limit headers; and [`http::admin`], the
//! operators' API under `/admin`.
//!
//! **[`limiter`]: the decision.** `check`, `inspect` and `reset`, reading
//! top to bottom in `limiter/mod.rs`, and the check of a rule with several
//! limits; the request and verdict types; the snapshot of rules
//! ([`limiter::rules`]), overrides ([`limiter::overrides`]) and allow/block
//! lists ([`limiter::access`]); resilience (the failure modes and the
//! circuit breaker); the deny cache; and the stats with their Space-Saving
//! sketch.
//!
//! **[`store`]: where state lives.** The [`store::Store`] trait (atomic
//! check-and-update of one key), [`store::memory`] and [`store::redis`]
//! (connection, one error classification, every key and channel name,
//! the Lua scripts, batching), and the control plane that keeps the
//! operators' records beside the counters ([`store::Backend`]).
//!
//! **[`core`]: the algorithms.** The five algorithms as pure functions of
//! (state, now, cost, quota), [`core::check_all`] deciding one cost against
//! several limits all or nothing, the [`core::Clock`] they are given time
//! by, and the validated [`core::Policy`] / [`core::Cost`] types. No I/O.

pub mod app;
pub mod cli;
pub mod context;
pub mod core;
pub mod http;
pub mod limiter;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod tls;
