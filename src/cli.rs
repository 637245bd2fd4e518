//! The command line: `ratelimiter [serve] [--config PATH] [--listen ADDR]`
//! and `ratelimiter check-config PATH`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::limiter::rules::RuleSet;
use crate::settings::{format_duration, ConfigError, LogFormat, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "ratelimiter",
    version,
    about = "A standalone HTTP rate-limit decision service"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, which runs when no command is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default command).
    Serve(ServeArgs),
    /// Validate a configuration file and print the effective rule table.
    CheckConfig {
        /// The TOML file to check; RATELIMITER__… environment overrides apply.
        path: PathBuf,
    },
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file; without one, built-in defaults apply.
    #[arg(long, short, env = "RATELIMITER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Listen address, overriding `server.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Log format, overriding `log.format`.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl ServeArgs {
    /// Loads the settings and applies the command-line overrides.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(listen) = self.listen {
            settings.server.listen = listen;
        }
        if let Some(format) = self.log_format {
            settings.log.format = format;
        }
        Ok(settings)
    }
}

/// `check-config`: prints the rule table to `out`, or the problems to `err`.
/// Returns whether the configuration is valid.
pub fn check_config(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> bool {
    let settings = match Settings::load(Some(path)) {
        Ok(settings) => settings,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return false;
        }
    };
    let rules = match RuleSet::from_settings(&settings) {
        Ok(rules) => rules,
        Err(problems) => {
            let _ = writeln!(err, "error: {}: {} problem(s):", path.display(), problems.len());
            for problem in problems {
                let _ = writeln!(err, "  {problem}");
            }
            return false;
        }
    };
    let _ = write_rule_table(&rules, path, out);
    true
}

fn write_rule_table(rules: &RuleSet, path: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    let count = rules.rules().count();
    writeln!(
        out,
        "{}: ok ({count} rules including the default, {} tiers, default tier {:?})",
        path.display(),
        rules.tiers().len(),
        rules.default_tier().as_ref()
    )?;
    let rows: Vec<[String; 5]> = rules
        .rules()
        .flat_map(|rule| {
            rule.policies().map(move |(tier, policy)| {
                [
                    rule.name().to_string(),
                    tier.to_string(),
                    policy.algorithm().to_string(),
                    policy.limit().to_string(),
                    format_duration(policy.quota().window()),
                ]
            })
        })
        .collect();
    let header = ["RULE", "TIER", "ALGORITHM", "LIMIT", "WINDOW"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )?;
    }
    Ok(())
}
