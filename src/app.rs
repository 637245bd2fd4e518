//! Wiring: settings in, a bound listener and a running service out.
//!
//! [`App::build`] resolves the rules, creates the store and binds the
//! listener (so the address is known before serving, which tests use with
//! port 0); [`App::run_until_stopped`] serves until the shutdown future
//! completes, lets in-flight requests finish for at most
//! `server.shutdown_timeout`, and returns.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{self, AppState, HttpLimits};
use crate::limiter::Limiter;
use crate::rules::RuleSet;
use crate::settings::{Backend, Problem, Settings};
use crate::store::memory::MemoryStore;
use crate::store::redis::{ConnectError, RedisStore};
use crate::store::AnyStore;

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid rules: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Rules(Vec<Problem>),
    #[error(transparent)]
    Redis(#[from] ConnectError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// A built service, bound to its address but not yet serving.
pub struct App {
    listener: TcpListener,
    router: Router,
    state: Arc<AppState<AnyStore>>,
    sweep_interval: Duration,
    shutdown_timeout: Duration,
}

impl App {
    pub async fn build(settings: &Settings) -> Result<App, StartupError> {
        let rules = RuleSet::from_settings(settings).map_err(StartupError::Rules)?;
        let store = match settings.store.backend {
            Backend::Memory => AnyStore::Memory(MemoryStore::new()),
            Backend::Redis => AnyStore::Redis(Box::new(RedisStore::connect(&settings.store.redis).await?)),
        };
        let state = Arc::new(AppState {
            limiter: Limiter::new(rules, store),
            limits: HttpLimits {
                max_key_bytes: settings.server.max_key_bytes,
                max_body_bytes: settings.server.max_body_bytes,
            },
        });
        let addr = settings.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(App {
            listener,
            router: http::router(state.clone()),
            state,
            sweep_interval: settings.store.memory.sweep_interval.0,
            shutdown_timeout: settings.server.shutdown_timeout.0,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting connections
    /// and waits up to `server.shutdown_timeout` for in-flight requests.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let state = self.state.clone();
        let sweeper = tokio::spawn(async move {
            let AnyStore::Memory(store) = state.limiter.store() else {
                return; // Redis expires keys itself.
            };
            let mut tick = tokio::time::interval(self.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let dropped = store.sweep();
                tracing::trace!(dropped, kept = store.len(), "swept expired keys");
            }
        });

        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let graceful = stopped(stop_rx.clone());
        let timeout = self.shutdown_timeout;
        let deadline = async move {
            stopped(stop_rx).await;
            tokio::time::sleep(timeout).await;
        };

        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(graceful)
            .into_future();
        let result = tokio::select! {
            result = server => result,
            () = deadline => {
                tracing::warn!(?timeout, "in-flight requests did not finish in time; stopping anyway");
                Ok(())
            }
        };
        sweeper.abort();
        if let AnyStore::Redis(store) = self.state.limiter.store() {
            store.quit().await;
        }
        result
    }
}

/// Completes once the stop flag is set (never, if its sender is dropped
/// without setting it).
async fn stopped(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT, shutting down"),
        () = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}
