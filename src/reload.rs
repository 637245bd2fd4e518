//! Re-reading the rules file while running: on SIGHUP, when the file
//! changes, and on `POST /admin/reload`.
//!
//! A reload parses and validates the whole file first; only a valid rule
//! set is swapped in, in one atomic step, so `/check` sees either the old
//! rules or the new ones, never a mixture. An invalid file is logged with
//! every problem and the old rules stay in force. Only the rule sections
//! (`[defaults]`, `[tiers]`, `[[rules]]`) take effect; other sections need a
//! restart, and a reload that changes them says so in the log.
//!
//! Changes are detected by comparing the file's contents every
//! `reload.poll_interval`: it works the same for editors that rewrite in
//! place and for deployments that swap a symlink or rename a new file over
//! the old one, at the cost of reading a small file once a second. A change
//! is applied when two consecutive polls read the same new contents, so a
//! file caught while being written is never applied.

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use serde::Serialize;

use crate::context::Context;
use crate::limiter::rules::RuleSet;
use crate::limiter::Dangling;
use crate::settings::{ConfigError, Settings};

/// What a successful reload changed.
#[derive(Debug, Serialize)]
pub struct ReloadReport {
    pub file: String,
    pub rules: usize,
    pub tiers: usize,
    /// Overrides or list entries that no longer fit the new rules (ignored
    /// until the rules fit them again).
    pub dangling: Vec<String>,
}

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no rules file to reload: the service was started without --config")]
    NoFile,
    #[error("{0}; the previous rules stay in force")]
    Invalid(String),
}

impl ReloadError {
    pub fn status(&self) -> StatusCode {
        match self {
            ReloadError::NoFile => StatusCode::CONFLICT,
            ReloadError::Invalid(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reloads the rules file into `state`'s limiter.
pub fn reload_rules(state: &Context) -> Result<ReloadReport, ReloadError> {
    let path = state.rules_file.as_deref().ok_or(ReloadError::NoFile)?;
    let result = load(path).map(|rules| {
        let (count, tiers) = (rules.rules().count(), rules.tiers().len());
        let dangling = state.limiter.set_rules(rules);
        ReloadReport {
            file: path.display().to_string(),
            rules: count,
            tiers,
            dangling: dangling.iter().map(describe).collect(),
        }
    });
    let outcome = if result.is_ok() { "success" } else { "failure" };
    state.metrics().config_reloads.with_label_values(&[outcome]).inc();
    match &result {
        Ok(report) => {
            tracing::info!(file = %report.file, rules = report.rules, dangling = ?report.dangling, "rules reloaded")
        }
        Err(e) => tracing::error!(error = %e, "rules reload rejected"),
    }
    result
}

fn load(path: &Path) -> Result<RuleSet, ReloadError> {
    let settings = Settings::load(Some(path)).map_err(|e: ConfigError| ReloadError::Invalid(e.to_string()))?;
    RuleSet::from_settings(&settings).map_err(|problems| {
        let list = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        ReloadError::Invalid(format!("{}: {list}", path.display()))
    })
}

fn describe(dangling: &Dangling) -> String {
    match dangling {
        Dangling::Override(target, e) => format!("override {}: {e}", target.id()),
        Dangling::ListEntry(kind, entry, e) => format!("{} list entry {entry:?}: {e}", kind.as_str()),
    }
}

/// Reloads on SIGHUP and, when `watch` is set, whenever the file's contents
/// differ from the last contents loaded (`loaded`: those the running rules
/// came from). Runs until the task is dropped.
pub async fn watch(state: Arc<Context>, loaded: Option<Vec<u8>>, watch: bool, interval: std::time::Duration) {
    let Some(path) = state.rules_file.clone() else {
        return;
    };
    let mut last = loaded;
    let mut pending: Option<Vec<u8>> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<()>();
        tokio::select! {
            () = hup => {
                tracing::info!("received SIGHUP, reloading rules");
                last = std::fs::read(&path).ok();
                pending = None;
                let _ = reload_rules(&state);
            }
            _ = tick.tick(), if watch => {
                // A change is applied once the file reads the same on two
                // consecutive polls, so a file caught half-written (which
                // may even parse: an empty file is valid) is never loaded.
                let current = std::fs::read(&path).ok();
                if current.is_none() || current == last {
                    pending = None;
                } else if current == pending {
                    last = current;
                    pending = None;
                    let _ = reload_rules(&state);
                } else {
                    pending = current;
                }
            }
        }
    }
}
