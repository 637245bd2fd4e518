//! What the HTTP API, the admin API and the rules reload share: the
//! limiter, the control plane, the rules file, and whether the replica is
//! draining. One per process, over the configured store.
//!
//! The background upkeep of that state runs here too: sweeping what has
//! run out, and following the operators' changes made on other replicas.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::limiter::{Dangling, Limiter};
use crate::metrics::Metrics;
use crate::store::control::Control;
use crate::store::StoreError;

/// The state of the whole service, shared by every handler.
pub struct Context {
    pub limiter: Limiter,
    /// Where operators' overrides and lists are kept.
    pub control: Control,
    /// The rules file, for reloads; `None` when running on built-in defaults.
    pub rules_file: Option<PathBuf>,
    /// Set once shutdown has begun: readiness turns false.
    draining: AtomicBool,
}

impl Context {
    pub fn new(limiter: Limiter, control: Control, rules_file: Option<PathBuf>) -> Context {
        Context {
            limiter,
            control,
            rules_file,
            draining: AtomicBool::new(false),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        self.limiter.metrics()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Shutdown has begun: readiness turns false.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.metrics().ready.set(0);
    }

    /// Re-reads the control store into the limiter's snapshot; returns the
    /// records that do not fit the rules (they are ignored).
    pub async fn reload_control(&self) -> Result<Vec<Dangling>, StoreError> {
        let control = self.control.load().await?;
        Ok(self.limiter.set_control(control))
    }

    /// Every `interval`, drops fully restored keys from the memory stores
    /// and cached denials that have run out. Runs until dropped.
    pub async fn sweep_every(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let dropped = self.limiter.sweep();
            tracing::trace!(dropped, "swept expired keys");
        }
    }

    /// Keeps this replica's overrides and lists in step with a shared
    /// control store: re-reads on every change notification and every
    /// `interval`. Returns at once when changes are local to this process.
    /// Runs until dropped.
    pub async fn follow_control(self: Arc<Self>, interval: Duration) {
        if !self.control.is_shared() {
            return; // The memory control state is only changed through this process.
        }
        let mut notifications = None;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if notifications.is_none() {
                match self.control.subscribe().await {
                    Ok(rx) => notifications = rx,
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
                    // after which some may have been missed): cached denials
                    // may no longer hold.
                    self.limiter.invalidate_denials();
                }
            }
            match self.control.load().await {
                Ok(current) => {
                    self.control.purge_expired(&current, self.limiter.now()).await;
                    for dangling in self.limiter.set_control(current) {
                        tracing::debug!(?dangling, "an admin entry does not fit the rules and is ignored");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not resync admin overrides and lists"),
            }
        }
    }
}
