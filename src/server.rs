//! Serving a [`Router`] on a listener, with deadlines on slow clients.
//!
//! A replacement for `axum::serve` (which offers no timeouts): the same
//! accept loop and graceful shutdown, on hyper's connection that speaks
//! HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c: a connection
//! that opens with the HTTP/2 preface is served as HTTP/2; hyper does not
//! take the HTTP/1.1 `Upgrade: h2c` route), with
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
//! On HTTP/2 the request-read timeout holds per stream; the header-read
//! timeout has no HTTP/2 equivalent in hyper, so an HTTP/2 connection is
//! pinged every `read_timeout` and closed when a ping goes unanswered for
//! as long. Each HTTP/2 connection runs at most
//! `server.http2_max_concurrent_streams` requests at once.
//!
//! So no HTTP/1.1 client holds a connection, a task or a buffer longer than
//! twice `read_timeout` without completing a request. Bodies are capped in size by
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
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::ApiError;
use crate::settings::format_duration;

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, lets open connections finish their current request and
/// returns when all are closed.
pub async fn serve<F>(listener: TcpListener, router: Router, limits: Limits, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let Limits {
        read_timeout,
        max_concurrent_streams,
    } = limits;
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
            // hyper reads the first bytes to tell HTTP/2 from HTTP/1.1 with
            // no timer of its own: a client that sends nothing (or part of
            // the HTTP/2 preface) gets `read_timeout` to do so.
            if !protocol_known(&stream, read_timeout).await {
                drop(open);
                return;
            }
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(max_concurrent_streams)
                .keep_alive_interval(read_timeout)
                .keep_alive_timeout(read_timeout);
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

/// Whether the connection's first bytes arrived within `timeout`: enough
/// of them to tell the HTTP/2 preface from an HTTP/1.1 request. False when
/// the client sent too little in time, or closed.
async fn protocol_known(stream: &tokio::net::TcpStream, timeout: Duration) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = 0;
    loop {
        let mut first = [0u8; PREFACE.len()];
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await;
        let n = match peeked {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return false,
        };
        if n == 0 {
            return false;
        }
        if n == PREFACE.len() || first[..n] != PREFACE[..n] {
            return true;
        }
        // Part of the preface: wait for the rest (peek returns what is
        // buffered at once, so wait a little before looking again).
        if n == seen {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen = n;
    }
}

/// What a listener holds its clients to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `server.read_timeout` (see the module's docs).
    pub read_timeout: Duration,
    /// `server.http2_max_concurrent_streams`.
    pub max_concurrent_streams: u32,
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
