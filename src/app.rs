//! Wiring: settings in, bound listeners and a running service out.
//!
//! [`App::builder`] takes the settings, and for tests a clock
//! ([`AppBuilder::clock`]). [`AppBuilder::build`] connects the store,
//! resolves the rules, loads the operators' overrides and lists, and binds
//! the listeners (so addresses are known before serving, which tests use
//! with port 0); [`AppBuilder::wire`] is the same wiring on a backend of
//! the caller's, without listeners, for tests that send requests straight
//! to the router. [`App::run_until_stopped`] serves until the shutdown
//! future completes, lets in-flight requests finish for at most
//! `server.shutdown_timeout`, and returns. Background tasks: the sweeper,
//! the rules-file watcher (and SIGHUP), and — with a shared store — the
//! control-plane sync ([`Context::follow_control`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::core::{Clock, SystemClock};
use crate::http::log::LogSampler;
use crate::http::{self, HttpLimits, HttpState};
use crate::limiter::hashing::KeyHasher;
use crate::limiter::rules::RuleSet;
use crate::limiter::{FailurePolicy, Limiter, LimiterConfig};
use crate::metrics::Metrics;
use crate::settings::LogKeys;
use crate::settings::{self, Problem, Settings};
use crate::store::redis::{ConnectError, RedisStore};
use crate::store::{Backend, StoreError};

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid rules: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Rules(Vec<Problem>),
    #[error(transparent)]
    Redis(#[from] ConnectError),
    #[error("cannot read the admin overrides and lists: {0}")]
    Control(#[from] StoreError),
    #[error("{0}")]
    Keys(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// A built service, bound to its addresses but not yet serving.
pub struct App {
    listener: TcpListener,
    router: Router,
    admin: Option<(TcpListener, Router)>,
    /// The gRPC RateLimitService's listener, when `[grpc] listen` is set.
    grpc: Option<TcpListener>,
    ctx: Arc<Context>,
    settings: Settings,
    /// The rules file as it was when the rules were loaded: the watcher's
    /// baseline, so a change made before serving starts is not missed.
    rules_file_contents: Option<Vec<u8>>,
}

/// How to build an [`App`]: the settings, and what tests replace.
pub struct AppBuilder {
    settings: Settings,
    rules_file: Option<PathBuf>,
    clock: Arc<dyn Clock>,
}

/// The service wired up, without listeners.
pub struct Wiring {
    /// The public router, with the admin API when it shares the listener.
    pub router: Router,
    /// The admin API's router, when it has a listener of its own.
    pub admin: Option<Router>,
    pub ctx: Arc<Context>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

impl App {
    /// Starts building the service from `settings`.
    pub fn builder(settings: Settings) -> AppBuilder {
        AppBuilder {
            settings,
            rules_file: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl AppBuilder {
    /// The file the settings were read from, reloaded on SIGHUP, on change
    /// and on request.
    pub fn rules_file(mut self, path: Option<PathBuf>) -> Self {
        self.rules_file = path;
        self
    }

    /// The clock of the limiter and of the memory store (tests give a
    /// manual one). A Redis store keeps the server's clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Connects the configured store, wires the service, loads the
    /// operators' records and binds the listeners.
    pub async fn build(self) -> Result<App, StartupError> {
        let rules_file_contents = self.rules_file.as_ref().and_then(|path| std::fs::read(path).ok());
        let rules = RuleSet::from_settings(&self.settings).map_err(StartupError::Rules)?;
        let keys = KeyHasher::from_settings(&self.settings.keys).map_err(StartupError::Keys)?;
        let metrics = Arc::new(Metrics::new());
        let backend = match self.settings.store.backend {
            settings::Backend::Memory => Backend::memory(self.clock.clone()),
            settings::Backend::Redis => {
                let store = RedisStore::connect(&self.settings.store.redis).await?;
                Backend::redis(store.with_metrics(metrics.clone()))
            }
        };
        let settings = self.settings.clone();
        let Wiring { router, admin, ctx } = self.wire_with(backend, rules, keys, metrics);
        for dangling in ctx.reload_control().await? {
            tracing::warn!(?dangling, "an admin entry does not fit the rules and is ignored");
        }
        let admin = match (admin, settings.admin.listen) {
            (Some(router), Some(addr)) => Some((bind(addr).await?, router)),
            _ => None,
        };
        let grpc = match settings.grpc.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let listener = bind(settings.server.listen).await?;
        Ok(App {
            listener,
            router,
            admin,
            grpc,
            ctx,
            settings,
            rules_file_contents,
        })
    }

    /// The same wiring as [`AppBuilder::build`] on `backend`, without
    /// listeners and with no operators' records loaded.
    pub fn wire(self, backend: Backend) -> Result<Wiring, StartupError> {
        let rules = RuleSet::from_settings(&self.settings).map_err(StartupError::Rules)?;
        let keys = KeyHasher::from_settings(&self.settings.keys).map_err(StartupError::Keys)?;
        Ok(self.wire_with(backend, rules, keys, Arc::new(Metrics::new())))
    }

    fn wire_with(self, backend: Backend, rules: RuleSet, keys: KeyHasher, metrics: Arc<Metrics>) -> Wiring {
        let settings = &self.settings;
        let deny_cache =
            (settings.store.deny_cache.enabled && backend.is_shared()).then_some(settings.store.deny_cache.max_entries);
        let config = LimiterConfig {
            max_key_bytes: settings.server.max_key_bytes,
            top_keys: settings.admin.top_keys,
            failure: FailurePolicy {
                mode: settings.store.failure_mode,
                local_divisor: settings.store.local_divisor,
                breaker_failures: settings.store.breaker.failures,
                breaker_open_for: settings.store.breaker.open_for.0,
            },
            deny_cache,
            keys,
        };
        let (store, control) = backend.into_parts();
        let limiter = Limiter::new(rules, store, self.clock, config).with_metrics(metrics);
        let ctx = Arc::new(Context::new(limiter, control, self.rules_file));
        ctx.metrics().ready.set(1);
        let limits = HttpLimits {
            max_key_bytes: settings.server.max_key_bytes,
            max_body_bytes: settings.server.max_body_bytes,
        };
        let mut state = HttpState::new(ctx.clone(), limits, settings.forward.clone());
        state.check_log = LogSampler::new(20).with_raw_keys(settings.log.keys == LogKeys::Raw);
        let state = Arc::new(state);
        let mut router = http::router(state.clone());
        let mut admin = None;
        match (&settings.admin.token, settings.admin.listen) {
            (None, _) => tracing::info!("admin API disabled (no admin.token)"),
            (Some(token), None) => router = router.merge(http::admin::router(state, token.clone())),
            (Some(token), Some(_)) => admin = Some(http::admin::standalone_router(state, token.clone())),
        }
        Wiring { router, admin, ctx }
    }
}

impl App {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address, when it has its own.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// The gRPC listener's address, when `[grpc] listen` is set.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting connections
    /// and waits up to `server.shutdown_timeout` for in-flight requests.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let ctx = self.ctx;
        let tasks = [
            tokio::spawn(ctx.clone().sweep_every(self.settings.store.memory.sweep_interval.0)),
            tokio::spawn(crate::reload::watch(
                ctx.clone(),
                self.rules_file_contents,
                self.settings.reload.watch,
                self.settings.reload.poll_interval.0,
            )),
            tokio::spawn(ctx.clone().follow_control(self.settings.admin.resync_interval.0)),
        ];

        let (stop_tx, stop_rx) = watch::channel(false);
        let draining = ctx.clone();
        let grace = self.settings.server.drain_grace.0;
        tokio::spawn(async move {
            shutdown.await;
            // Readiness turns false first and the replica keeps serving for
            // the grace period, so load balancers stop sending before
            // connections are refused.
            draining.start_draining();
            if !grace.is_zero() {
                tracing::info!(?grace, "draining: readiness is false, still serving");
                tokio::time::sleep(grace).await;
            }
            let _ = stop_tx.send(true);
        });
        let timeout = self.settings.server.shutdown_timeout.0;
        let deadline = {
            let stop_rx = stop_rx.clone();
            async move {
                stopped(stop_rx).await;
                tokio::time::sleep(timeout).await;
            }
        };
        let limits = crate::server::Limits {
            read_timeout: self.settings.server.read_timeout.0,
            max_concurrent_streams: self.settings.server.http2_max_concurrent_streams,
        };
        let admin: JoinHandle<io::Result<()>> = match self.admin {
            Some((listener, router)) => {
                let graceful = stopped(stop_rx.clone());
                tokio::spawn(crate::server::serve(listener, router, limits, graceful))
            }
            None => tokio::spawn(async { Ok(()) }),
        };
        let grpc: JoinHandle<io::Result<()>> = match self.grpc {
            Some(listener) => tokio::spawn(crate::http::grpc::serve(
                listener,
                ctx.clone(),
                self.settings.grpc.clone(),
                self.settings.log.keys == LogKeys::Raw,
                stopped(stop_rx.clone()),
            )),
            None => tokio::spawn(async { Ok(()) }),
        };
        let server = crate::server::serve(self.listener, self.router, limits, stopped(stop_rx));
        let result = tokio::select! {
            result = async {
                let main = server.await;
                let admin = admin.await;
                let grpc = grpc.await;
                main.and(admin.unwrap_or(Ok(()))).and(grpc.unwrap_or(Ok(())))
            } => result,
            () = deadline => {
                tracing::warn!(?timeout, "in-flight requests did not finish in time; stopping anyway");
                Ok(())
            }
        };
        for task in tasks {
            task.abort();
        }
        ctx.limiter.close().await;
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
