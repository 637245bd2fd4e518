//! The HTTP ceiling: a bare axum server that answers `POST /check` without
//! limiting anything.
//!
//! It reads the same JSON body as the service's `/check` (`key`, and the
//! optional `endpoint`, `tier`, `cost`, `client_ip`) and answers 200 with a
//! body of the same shape as the service's answer, always allowed. Nothing
//! else happens per request: no rule lookup, no store, no metrics, no
//! request ids, no rate-limit headers. A body it cannot read gets a 4xx
//! with `{"error", "field": "body"}`. What it serves per second on a
//! machine is the most any handler behind this HTTP stack could serve there,
//! so `scripts/bench.sh` reports the service's throughput as a ratio to it,
//! measured in the same run.
//!
//! With `--answer small` it answers only `{"allowed":true}`: the ceiling of
//! a service whose answer is as small as an answer can be (Limitador's,
//! for one, is much smaller than this service's seven headers and JSON
//! body), to show what the answer's size costs.
//!
//! It runs on tokio's multi-thread runtime with one worker per core, as the
//! service does, and serves HTTP/1.1 with keep-alive like the service (and,
//! like it, leaves Nagle's algorithm on: hyper writes each answer at once).
//! `GET /health` answers 200 so scripts can wait for it.
//!
//! It is also the OTLP sink of `scripts/bench.sh`'s export-on scenario:
//! `POST /v1/traces` reads the body and answers 200 with an empty
//! `ExportTraceServiceResponse` (no bytes), and `GET /v1/traces` tells how
//! many exports and bytes it received, as `{"exports": n, "bytes": n}`.
//!
//! ```text
//! ceiling --listen 127.0.0.1:18080
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};

/// A bare axum server answering POST /check like the ratelimiter service
/// does, without limiting: the HTTP throughput ceiling of this machine.
#[derive(Debug, Parser)]
#[command(name = "ceiling", version, about, long_about = None)]
struct Cli {
    /// Address to listen on.
    #[arg(short, long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,

    /// The answer: `full` (the service's body shape) or `small`
    /// (`{"allowed":true}` only).
    #[arg(long, value_enum, default_value = "full")]
    answer: Answer,
}

/// How much the ceiling answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Answer {
    Full,
    Small,
}

/// The small answer.
#[derive(Debug, Serialize)]
struct SmallAnswer {
    allowed: bool,
}

/// The `/check` body; unknown fields are ignored (the ceiling judges nothing).
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // parsed for the work of parsing, never read
struct CheckBody {
    key: String,
    endpoint: Option<String>,
    tier: Option<String>,
    cost: Option<u64>,
    client_ip: Option<String>,
}

/// The same fields as the service's answer.
#[derive(Debug, Serialize)]
struct CheckAnswer {
    allowed: bool,
    limit: u64,
    remaining: u64,
    reset_after_ms: u64,
    retry_after_ms: u64,
    rule: &'static str,
    tier: &'static str,
    algorithm: &'static str,
    reason: &'static str,
}

/// What a body that is not a `/check` body gets, shaped like the service's
/// errors.
#[derive(Debug, Serialize)]
struct ErrorAnswer {
    error: String,
    field: &'static str,
}

async fn check(
    body: Result<Json<CheckBody>, JsonRejection>,
) -> Result<Json<CheckAnswer>, (StatusCode, Json<ErrorAnswer>)> {
    let Json(_body) = body.map_err(|rejection| {
        let error = ErrorAnswer {
            error: rejection.body_text(),
            field: "body",
        };
        (rejection.status(), Json(error))
    })?;
    Ok(Json(CheckAnswer {
        allowed: true,
        limit: 1_000_000_000,
        remaining: 999_999_999,
        reset_after_ms: 1,
        retry_after_ms: 0,
        rule: "default",
        tier: "free",
        algorithm: "token_bucket",
        reason: "allowed",
    }))
}

async fn check_small(
    body: Result<Json<CheckBody>, JsonRejection>,
) -> Result<Json<SmallAnswer>, (StatusCode, Json<ErrorAnswer>)> {
    check(body).await.map(|_| Json(SmallAnswer { allowed: true }))
}

fn app(answer: Answer) -> Router {
    let router = match answer {
        Answer::Full => Router::new().route("/check", post(check)),
        Answer::Small => Router::new().route("/check", post(check_small)),
    };
    router
        .route("/health", get(|| async { "ok" }))
        .route("/v1/traces", post(receive_traces).get(traces_received))
}

/// Exports and bytes received on `POST /v1/traces`.
static EXPORTS: AtomicU64 = AtomicU64::new(0);
static EXPORTED_BYTES: AtomicU64 = AtomicU64::new(0);

/// An OTLP/HTTP export, taken and dropped.
async fn receive_traces(body: Bytes) -> ([(&'static str, &'static str); 1], &'static [u8]) {
    EXPORTS.fetch_add(1, Ordering::Relaxed);
    EXPORTED_BYTES.fetch_add(body.len() as u64, Ordering::Relaxed);
    ([("content-type", "application/x-protobuf")], b"")
}

async fn traces_received() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "exports": EXPORTS.load(Ordering::Relaxed),
        "bytes": EXPORTED_BYTES.load(Ordering::Relaxed),
    }))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("ceiling: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => eprintln!("ceiling: listening on {addr}"),
        Err(e) => eprintln!("ceiling: listening (address unknown: {e})"),
    }
    // Stopped by a signal: there is nothing to drain or flush.
    if let Err(e) = axum::serve(listener, app(cli.answer)).await {
        eprintln!("ceiling: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
