//! `loadgen`: the ratelimiter's own load generator.
//!
//! It drives `POST /check` on one or more replicas — closed-loop or at a
//! fixed rate — and reports throughput, latency percentiles (HdrHistogram),
//! answers per status and `reason`, errors, and whether any key was admitted
//! more often than its limit permits over the run.
//!
//! # Layout
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the command line, scenario presets, and the checked [`Settings`] of a run |
//! | [`keys`] | key distributions: hot, uniform, Zipf |
//! | [`rules`] | reads `GET /rules` and picks the policy of the run's endpoint × tier |
//! | [`runner`] | the HTTP client, one task per connection, the measurements ([`RunData`]) |
//! | [`accuracy`] | pure arithmetic: what each algorithm can permit over a span; per-key verdicts |
//! | [`report`] | the [`Report`]: text for stdout, JSON for `--json` |
//! | [`plot`] | the SVG of `--plot` |
//!
//! `main.rs` only parses the command line, calls [`run`] and [`write_outputs`],
//! prints the report and picks the exit status.
//!
//! # Invariants
//!
//! - Every run stops by itself: closed loops by `--duration` or
//!   `--requests`, fixed-rate runs by their schedule; every request by
//!   `--timeout`.
//! - The accuracy bounds never flag a correct service: the run's span
//!   contains every decision, and each bound is the most an algorithm can
//!   admit in that span.

pub mod accuracy;
pub mod config;
pub mod keys;
pub mod plot;
pub mod report;
pub mod rules;
pub mod runner;

use anyhow::Context as _;

pub use config::{Cli, Settings};
pub use report::Report;
pub use runner::RunData;

/// Reads the rules from the first target, runs the load, and judges it.
pub async fn run(settings: &Settings) -> Report {
    let client = runner::client(settings.timeout);
    let policy = fetch_policy(&client, settings).await;
    let data = runner::run(settings, client).await;
    let accuracy = policy.map(|policy| {
        let span = accuracy::Span {
            start_unix_ns: data.start_unix_ns,
            elapsed: data.elapsed,
        };
        let tallies = runner::key_tallies(&data, &settings.key_prefix);
        let limits: Vec<u64> = data.limits_seen.iter().copied().collect();
        accuracy::judge(&policy, settings.cost_units(), span, tallies, &limits)
    });
    Report::new(settings, &data, accuracy)
}

/// The policy the run is judged against, or why there is none.
async fn fetch_policy(client: &runner::HttpClient, settings: &Settings) -> Result<rules::Policy, String> {
    let target = settings.targets.first().ok_or("no target")?;
    let body = runner::get(client, target.rules_uri(), settings.timeout).await?;
    rules::select(&body, settings.endpoint.as_deref(), settings.tier.as_deref())
}

/// Writes `--json` and `--plot`, when asked for.
pub fn write_outputs(settings: &Settings, report: &Report) -> anyhow::Result<()> {
    if let Some(path) = &settings.json {
        std::fs::write(path, report.to_json()).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &settings.plot {
        std::fs::write(path, plot::svg(report)).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
