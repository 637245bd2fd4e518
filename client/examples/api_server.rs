//! An axum API server rate-limited by ratelimiter with one line.
//!
//! ```sh
//! # a ratelimiter replica (another terminal): cargo run -- serve --config config/ratelimiter.toml
//! cargo run -p ratelimiter-client --example api_server -- http://127.0.0.1:8080
//! curl -si localhost:3000/api/items -H 'x-api-key: demo'
//! ```
//!
//! The ratelimiter URL is the first argument, else `RATELIMITER_URL`, else
//! `http://127.0.0.1:8080`; the server listens on `LISTEN` (default
//! `127.0.0.1:3000`). Every `/api/...` request is checked as
//! `"<METHOD> <path>"` with the key `x-api-key:<X-Api-Key header>`;
//! `/health` is added after the layer, so it is never limited.

use axum::routing::get;
use axum::{Json, Router};
use ratelimiter_client::{Client, RateLimitLayer};
use serde_json::{json, Value};

async fn items() -> Json<Value> {
    Json(json!({ "items": [{ "id": 1, "name": "apple" }, { "id": 2, "name": "pear" }] }))
}

async fn item(axum::extract::Path(id): axum::extract::Path<u64>) -> Json<Value> {
    Json(json!({ "id": id }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let ratelimiter = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("RATELIMITER_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());

    let app = Router::new()
        .route("/api/items", get(items))
        .route("/api/items/{id}", get(item))
        .layer(RateLimitLayer::new(Client::new(&ratelimiter)?))
        .route("/health", get(|| async { "ok" }));

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(addr = %listener.local_addr()?, %ratelimiter, "api_server listening");
    axum::serve(listener, app).await?;
    Ok(())
}
