//! Wiring: settings in, bound listeners and a running service out.
//!
//! [`App::build`] resolves the rules, connects the store, loads the
//! operators' overrides and lists, and binds the listeners (so addresses are
//! known before serving, which tests use with port 0);
//! [`App::run_until_stopped`] serves until the shutdown future completes,
//! lets in-flight requests finish for at most `server.shutdown_timeout`, and
//! returns. Background tasks: the memory store's sweeper, the rules-file
//! watcher (and SIGHUP), and — with Redis — the control-plane sync
//! (pub/sub notifications plus a periodic resync).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::redis::RedisControl;
use crate::control::Control;
use crate::core::SystemClock;
use crate::http::{self, AppState, HttpLimits};
use crate::limiter::{FailurePolicy, Limiter};
use crate::metrics::Metrics;
use crate::rules::RuleSet;
use crate::settings::{Backend, Problem, Settings};
use crate::store::memory::MemoryStore;
use crate::store::redis::{ConnectError, RedisStore};
use crate::store::{AnyStore, StoreError};

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid rules: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Rules(Vec<Problem>),
    #[error(transparent)]
    Redis(#[from] ConnectError),
    #[error("cannot read the admin overrides and lists: {0}")]
    Control(#[from] StoreError),
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
    state: Arc<AppState<AnyStore>>,
    settings: Settings,
    /// The rules file as it was when the rules were loaded: the watcher's
    /// baseline, so a change made before serving starts is not missed.
    rules_file_contents: Option<Vec<u8>>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

impl App {
    /// Builds the service from `settings`; `rules_file` is the file they
    /// were read from, reloaded on SIGHUP and on change.
    pub async fn build(settings: &Settings, rules_file: Option<PathBuf>) -> Result<App, StartupError> {
        let rules_file_contents = rules_file.as_ref().and_then(|path| std::fs::read(path).ok());
        let rules = RuleSet::from_settings(settings).map_err(StartupError::Rules)?;
        let metrics = Arc::new(Metrics::new());
        let (store, control) = match settings.store.backend {
            Backend::Memory => (AnyStore::Memory(MemoryStore::new()), Control::memory()),
            Backend::Redis => {
                let store = RedisStore::connect(&settings.store.redis)
                    .await?
                    .with_metrics(metrics.clone());
                let control = Control::Redis(RedisControl::new(&store));
                (AnyStore::Redis(Box::new(store)), control)
            }
        };
        let deny_cache = settings.store.deny_cache.enabled && matches!(store, AnyStore::Redis(_));
        let limiter = Limiter::new(
            rules,
            store,
            Arc::new(SystemClock),
            settings.server.max_key_bytes,
            settings.admin.top_keys,
        )
        .with_metrics(metrics)
        .with_failure_policy(FailurePolicy {
            mode: settings.store.failure_mode,
            local_divisor: settings.store.local_divisor,
            breaker_failures: settings.store.breaker.failures,
            breaker_open_for: settings.store.breaker.open_for.0,
        });
        let limiter = if deny_cache {
            limiter.with_deny_cache(settings.store.deny_cache.max_entries)
        } else {
            limiter
        };
        for dangling in limiter.set_control(control.load().await?) {
            tracing::warn!(?dangling, "an admin entry does not fit the rules and is ignored");
        }
        let limits = HttpLimits {
            max_key_bytes: settings.server.max_key_bytes,
            max_body_bytes: settings.server.max_body_bytes,
        };
        let state =
            Arc::new(AppState::new(limiter, limits, control, rules_file).with_forward(settings.forward.clone()));
        state.metrics().ready.set(1);

        let mut router = http::router(state.clone());
        let mut admin = None;
        match (&settings.admin.token, settings.admin.listen) {
            (None, _) => tracing::info!("admin API disabled (no admin.token)"),
            (Some(token), None) => router = router.merge(crate::admin::router(state.clone(), token.clone())),
            (Some(token), Some(addr)) => {
                admin = Some((
                    bind(addr).await?,
                    crate::admin::standalone_router(state.clone(), token.clone()),
                ));
            }
        }
        let listener = bind(settings.server.listen).await?;
        Ok(App {
            listener,
            router,
            admin,
            state,
            settings: settings.clone(),
            rules_file_contents,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address, when it has its own.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting connections
    /// and waits up to `server.shutdown_timeout` for in-flight requests.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let tasks = [
            tokio::spawn(sweep(self.state.clone(), self.settings.store.memory.sweep_interval.0)),
            tokio::spawn(crate::reload::watch(
                self.state.clone(),
                self.rules_file_contents,
                self.settings.reload.watch,
                self.settings.reload.poll_interval.0,
            )),
            tokio::spawn(sync_control(self.state.clone(), self.settings.admin.resync_interval.0)),
        ];

        let (stop_tx, stop_rx) = watch::channel(false);
        let state = self.state.clone();
        let grace = self.settings.server.drain_grace.0;
        tokio::spawn(async move {
            shutdown.await;
            // Readiness turns false first and the replica keeps serving for
            // the grace period, so load balancers stop sending before
            // connections are refused.
            state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
            state.metrics().ready.set(0);
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
        let read_timeout = self.settings.server.read_timeout.0;
        let admin: JoinHandle<io::Result<()>> = match self.admin {
            Some((listener, router)) => {
                let graceful = stopped(stop_rx.clone());
                tokio::spawn(crate::server::serve(listener, router, read_timeout, graceful))
            }
            None => tokio::spawn(async { Ok(()) }),
        };
        let server = crate::server::serve(self.listener, self.router, read_timeout, stopped(stop_rx));
        let result = tokio::select! {
            result = async { let main = server.await; let admin = admin.await; main.and(admin.unwrap_or(Ok(()))) } => result,
            () = deadline => {
                tracing::warn!(?timeout, "in-flight requests did not finish in time; stopping anyway");
                Ok(())
            }
        };
        for task in tasks {
            task.abort();
        }
        if let AnyStore::Redis(store) = self.state.limiter.store() {
            store.quit().await;
        }
        result
    }
}

/// Drops fully restored keys from the memory stores: the primary one (with
/// the memory backend; Redis expires keys itself) and the local fallback.
async fn sweep(state: Arc<AppState<AnyStore>>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut dropped = state.limiter.sweep_fallback() + state.limiter.sweep_deny_cache();
        if let AnyStore::Memory(store) = state.limiter.store() {
            dropped += store.sweep();
        }
        tracing::trace!(dropped, "swept expired keys");
    }
}

/// Keeps this replica's overrides and lists in step with Redis: re-reads on
/// every change notification and every `interval`.
async fn sync_control(state: Arc<AppState<AnyStore>>, interval: Duration) {
    let (Control::Redis(control), AnyStore::Redis(store)) = (&state.control, state.limiter.store()) else {
        return; // The memory control state is only changed through this process.
    };
    let mut notifications = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if notifications.is_none() {
            match control.subscribe(store).await {
                Ok(rx) => notifications = Some(rx),
                Err(e) => tracing::warn!(error = %e, "no admin change notifications; resyncing every {interval:?}"),
            }
        }
        tokio::select! {
            _ = tick.tick() => {}
            received = async {
                match notifications.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if received.is_none() {
                    notifications = None;
                }
                // A reset or a change on some replica (or a reconnection,
                // after which some may have been missed): cached denials may
                // no longer hold.
                state.limiter.invalidate_denials();
            }
        }
        match control.load().await {
            Ok(current) => {
                control.purge_expired(&current, state.limiter.now()).await;
                for dangling in state.limiter.set_control(current) {
                    tracing::debug!(?dangling, "an admin entry does not fit the rules and is ignored");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not resync admin overrides and lists"),
        }
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
