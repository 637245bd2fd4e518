//! Serving a [`Router`] on a listener, with deadlines on slow clients.
//!
//! A replacement for `axum::serve` (which offers no timeouts): the same
//! accept loop and graceful shutdown, on hyper's HTTP/1 connection with
//!
//! - a **header-read timeout** (`server.read_timeout`): a connection whose
//!   request headers are not complete that long after it opened, or after
//!   its previous response, is closed. This also ends idle keep-alive
//!   connections and connections that never send anything.
//! - a **request-read timeout** (the same duration, counted again from the
//!   end of the headers): a request whose body has not arrived — and been
//!   answered — in time gets a 408 `{"error", "field": "body"}` and the
//!   connection is closed.
//!
//! So no client holds a connection, a task or a buffer longer than twice
//! `read_timeout` without completing a request. Bodies are capped in size by
//! the routers (`server.max_body_bytes`) and headers by hyper (100 headers,
//! about 400 KB).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::ApiError;
use crate::settings::format_duration;

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, lets open connections finish their current request and
/// returns when all are closed.
pub async fn serve<F>(listener: TcpListener, router: Router, read_timeout: Duration, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let router = with_read_deadline(router, read_timeout);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // Every connection task holds a receiver; `closed()` completes when the
    // last one is dropped.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = stopped(stop_rx.clone()) => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(read_timeout);
            let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
            let mut stop = pin!(stopped(stop));
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = stop.as_mut(), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
        });
    }
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
    Ok(())
}

/// Completes once the flag is set (never, if its sender is gone unset).
async fn stopped(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Errors of one connection (the peer gave up) are ignored; others (out of
/// file descriptors) are logged and accepting pauses for a second instead of
/// spinning.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Answers 408 when a request (its body, and the handler) takes longer than
/// `read_timeout` after its headers arrived.
pub fn with_read_deadline(router: Router, read_timeout: Duration) -> Router {
    router.layer(from_fn_with_state(read_timeout, read_deadline))
}

async fn read_deadline(State(read_timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(read_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::info!(?read_timeout, "request not received in time; closing the connection");
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request was not received within {}", format_duration(read_timeout)),
            )
            .with_field("body")
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
