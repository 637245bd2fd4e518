//! The command line: `ratelimiter [serve] [--config PATH] [--listen ADDR]`,
//! `ratelimiter check-config [--config] PATH`, and the commands that talk
//! to a running server (`check`, `health`) or describe the command line
//! itself (`completions`, `manpage`).

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
        #[arg(value_name = "PATH", required_unless_present = "config", conflicts_with = "config")]
        path: Option<PathBuf>,
        /// The same file, given as `serve` takes it.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Ask a running server whether a request may proceed (POST /check);
    /// exit 0 when allowed, 1 when limited, 2 on an error.
    Check(RemoteCheck),
    /// Ask a running server whether it is alive (GET /health/live, or
    /// /health/ready with --ready); exit 0 when it is, 1 otherwise.
    Health {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
        url: String,
        /// Ask readiness (503 while draining or without its store).
        #[arg(long)]
        ready: bool,
        /// Give up after this long.
        #[arg(long, default_value = "2s", value_parser = crate::settings::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    Manpage,
    /// Print the JSON Schema of the TOML configuration.
    ConfigSchema,
}

/// `ratelimiter check`.
#[derive(Debug, Clone, Args)]
pub struct RemoteCheck {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub url: String,
    /// Who is limited.
    #[arg(long)]
    pub key: String,
    /// Selects the rule.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Selects the tier.
    #[arg(long)]
    pub tier: Option<String>,
    /// Units to consume (0 peeks).
    #[arg(long)]
    pub cost: Option<u64>,
    /// Print the server's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = crate::settings::parse_duration)]
    pub timeout: std::time::Duration,
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
    for (name, meant) in crate::settings::misspelt_env(std::env::vars().map(|(name, _)| name)) {
        let _ = writeln!(err, "warning: {name} is not read; did you mean {meant}?");
    }
    let settings = match Settings::load(Some(path)) {
        Ok(settings) => settings,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return false;
        }
    };
    let unreadable = start_up_file_problems(&settings);
    if !unreadable.is_empty() {
        for problem in unreadable {
            let _ = writeln!(err, "error: {problem}");
        }
        return false;
    }
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

/// What is wrong with the files the service reads only at start-up: the
/// TLS files of `[store.redis]` and `[telemetry]`, and `[keys]`'s HMAC
/// key. (Secret files named by `_file` settings are read with the
/// settings.)
fn start_up_file_problems(settings: &Settings) -> Vec<String> {
    let mut tls = Vec::new();
    if settings.store.backend == crate::settings::Backend::Redis && settings.store.redis.uses_tls() {
        tls.push(settings.store.redis.tls_files());
    }
    if settings.telemetry.uses_tls() {
        tls.push(settings.telemetry.tls_files());
    }
    let mut problems: Vec<String> = tls
        .iter()
        .filter_map(|files| crate::tls::client_config(files).err())
        .map(|e| e.to_string())
        .collect();
    if let Err(e) = crate::limiter::hashing::KeyHasher::from_settings(&settings.keys) {
        problems.push(e);
    }
    problems
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

/// What a command that talks to a server ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed, or alive: exit 0.
    Yes,
    /// Limited (or blocked), or not ready: exit 1.
    No,
    /// The server could not be asked, or refused the request: exit 2.
    Error,
}

/// One request to a running server: the status and the body.
async fn exchange(
    method: hyper::Method,
    url: &str,
    body: Option<Vec<u8>>,
    timeout: std::time::Duration,
) -> Result<(u16, Vec<u8>), String> {
    use http_body_util::{BodyExt, Full};
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are supported"));
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<axum::body::Bytes>>();
    let mut request = hyper::Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(axum::body::Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let call = async {
        let response = client.request(request).await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes.to_vec()))
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(format!("{url}: no answer within {}", format_duration(timeout))))
}

/// `ratelimiter check`: prints the decision (or the JSON answer) to `out`,
/// errors to `err`.
pub async fn remote_check(args: &RemoteCheck, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    let mut body = serde_json::json!({ "key": args.key });
    for (field, value) in [("endpoint", &args.endpoint), ("tier", &args.tier)] {
        if let Some(value) = value {
            body[field] = value.clone().into();
        }
    }
    if let Some(cost) = args.cost {
        body["cost"] = cost.into();
    }
    let url = format!("{}/check", args.url.trim_end_matches('/'));
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let (status, bytes) = match exchange(hyper::Method::POST, &url, Some(body), args.timeout).await {
        Ok(answer) => answer,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return Outcome::Error;
        }
    };
    let answer: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(answer) => answer,
        Err(_) => {
            let _ = writeln!(
                err,
                "error: {url} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            return Outcome::Error;
        }
    };
    if !matches!(status, 200 | 403 | 429 | 503) || answer.get("allowed").is_none() {
        let message = answer["error"].as_str().unwrap_or("not a decision");
        let field = answer["field"]
            .as_str()
            .map(|f| format!(" (field {f})"))
            .unwrap_or_default();
        let _ = writeln!(err, "error: {status}: {message}{field}");
        return Outcome::Error;
    }
    let allowed = answer["allowed"].as_bool() == Some(true);
    if args.json {
        let _ = writeln!(out, "{answer}");
    } else {
        let _ = writeln!(
            out,
            "{} ({}): {} of {} left, full again in {} ms{}; rule {}, tier {}, {}",
            if allowed { "allowed" } else { "limited" },
            answer["reason"].as_str().unwrap_or(""),
            answer["remaining"],
            answer["limit"],
            answer["reset_after_ms"],
            if allowed {
                String::new()
            } else {
                format!(", retry in {} ms", answer["retry_after_ms"])
            },
            answer["rule"].as_str().unwrap_or(""),
            answer["tier"].as_str().unwrap_or(""),
            answer["algorithm"].as_str().unwrap_or(""),
        );
    }
    if allowed {
        Outcome::Yes
    } else {
        Outcome::No
    }
}

/// `ratelimiter health`.
pub async fn remote_health(url: &str, ready: bool, timeout: std::time::Duration, err: &mut dyn Write) -> Outcome {
    let path = if ready { "/health/ready" } else { "/health/live" };
    let url = format!("{}{path}", url.trim_end_matches('/'));
    match exchange(hyper::Method::GET, &url, None, timeout).await {
        Ok((200, _)) => Outcome::Yes,
        Ok((status, body)) => {
            let _ = writeln!(err, "{url}: {status} {}", String::from_utf8_lossy(&body));
            Outcome::No
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            Outcome::No
        }
    }
}

/// `ratelimiter completions SHELL`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "ratelimiter", out);
}

/// `ratelimiter manpage`.
pub fn manpage(out: &mut dyn Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// `ratelimiter config-schema`: the JSON Schema of the configuration file,
/// derived from the settings types.
pub fn config_schema() -> String {
    let schema = schemars::schema_for!(Settings);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
