//! ratelimiter: a standalone HTTP rate-limit decision service.
//!
//! API servers ask `POST /check` whether a request may proceed and get back
//! allow/deny plus the numbers for their rate-limit headers.
//!
//! # Layout
//!
//! - [`core`]: the five algorithms as pure functions of (state, now, cost,
//!   quota), the [`core::Clock`] they are given time by, and the validated
//!   [`core::Policy`] / [`core::Cost`] types. No I/O.
//! - [`store`]: the [`store::Store`] trait (atomic check-and-update of one
//!   key) and its implementations: [`store::memory`] and [`store::redis`].
//! - [`rules`]: `[defaults]`, `[tiers]` and `[[rules]]` resolved into one
//!   policy per rule × tier, validated at load.
//! - [`overrides`]: run-time limit overrides (rule × tier, rule, key),
//!   validated like the file and resolved into policies.
//! - [`breaker`]: the circuit breaker around the shared store.
//! - [`deny_cache`]: denials remembered until their `retry_after`, so a key
//!   over its limit costs no store round trip; exact, invalidated by resets
//!   and policy changes on any replica.
//! - [`limiter`]: request → lists, rule, tier, overrides, policy → store →
//!   verdict. Handlers call only this.
//! - [`http`]: the router, thin handlers, the JSON wire format and the
//!   single error type that maps every failure to a status and JSON body.
//! - [`admin`]: the operators' API under `/admin`, behind a bearer token.
//! - [`reload`]: re-reading the rules file on SIGHUP, on change, or on
//!   request, keeping the old rules when the new file is invalid.
//! - [`control`]: where overrides and allow/block lists are kept (memory or
//!   Redis) and how replicas learn of changes (pub/sub plus resync).
//! - [`settings`]: typed configuration (TOML file + environment).
//! - [`app`]: wiring, listener, graceful shutdown.
//! - [`server`]: the HTTP/1 accept loop with header and request read
//!   timeouts, so slow clients cannot hold connections.
//! - [`metrics`]: Prometheus metrics on an owned registry.
//! - [`cli`], [`telemetry`]: command line and logging, used by `main.rs`.

pub mod access;
pub mod admin;
pub mod app;
pub mod breaker;
pub mod cli;
pub mod control;
pub mod core;
pub mod deny_cache;
pub mod http;
pub mod limiter;
pub mod metrics;
pub mod overrides;
pub mod reload;
pub mod rules;
pub mod server;
pub mod settings;
pub mod stats;
pub mod store;
pub mod telemetry;
