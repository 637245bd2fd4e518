//! The command line ([`Cli`]) and the run it describes ([`Settings`]).
//!
//! [`Cli::into_settings`] applies the scenario preset, then the explicit
//! flags over it, and checks every value once: the runner only ever sees a
//! [`Settings`] whose targets are valid URLs, whose bounds make the run stop,
//! and whose rates and counts are positive.

use std::fmt;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hyper::Uri;

use crate::keys::KeySpec;

/// Runs when neither `--duration` nor `--requests` bounds the run.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// The service's default listen address.
pub const DEFAULT_TARGET: &str = "http://127.0.0.1:8080";

const DEFAULT_CONNECTIONS: usize = 16;
const DEFAULT_KEYS: &str = "uniform:1000";
const BURST_RATE: f64 = 5000.0;
const BURST_LENGTH: Duration = Duration::from_secs(1);
const BURST_QUIET: Duration = Duration::from_secs(2);

/// Load generator for the ratelimiter service: sends `POST /check` to one or
/// more replicas, closed-loop or at a fixed rate, and reports throughput,
/// latency percentiles, statuses and reasons, and whether any key was
/// admitted more often than its limit permits.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// Base URL of a replica (or of a load balancer in front of them);
    /// repeat for several: requests go round-robin over them. GET /rules is
    /// read from the first. [default: http://127.0.0.1:8080]
    #[arg(short, long = "target", value_name = "URL")]
    pub targets: Vec<String>,

    /// A preset (see below); explicit flags override its values.
    #[arg(short, long, value_enum)]
    pub scenario: Option<Scenario>,

    /// Concurrent connections (each sends one request at a time).
    /// [default: 16; one-user 16, thousand-users 64, burst 64]
    #[arg(short, long, value_name = "N")]
    pub connections: Option<NonZeroUsize>,

    /// Open loop at this many requests per second in total, spread evenly
    /// over the connections; latency is measured from each request's
    /// intended send time. Without it: closed loop (each connection sends
    /// its next request as soon as the previous one is answered).
    #[arg(short, long, value_name = "REQ/S")]
    pub rate: Option<f64>,

    /// How long to send, e.g. 10s, 1500ms, 2m (a bare number is seconds).
    /// [default: 10s unless --requests is given]
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many requests in total (with --duration: whichever
    /// comes first).
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<NonZeroU64>,

    /// Key distribution: hot (one key), uniform:N, or zipf:N:S (N keys,
    /// exponent S; the most popular key is <prefix>0).
    /// [default: uniform:1000; one-user hot, thousand-users uniform:1000,
    /// burst uniform:100]
    #[arg(short, long, value_name = "SPEC")]
    pub keys: Option<KeySpec>,

    /// Keys are <prefix><index>. [default: lg-<random hex>: — fresh
    /// counters on every run]
    #[arg(long, value_name = "PREFIX")]
    pub key_prefix: Option<String>,

    /// The `endpoint` field of every request (selects the rule); absent:
    /// the default rule.
    #[arg(short, long, value_name = "ENDPOINT")]
    pub endpoint: Option<String>,

    /// The `tier` field of every request; absent: the service's default tier.
    #[arg(long, value_name = "TIER")]
    pub tier: Option<String>,

    /// A scope of every request, NAME=VALUE (repeatable): the `scopes`
    /// field, for rules with several limits counted per scope (e.g.
    /// --scope org=acme).
    #[arg(long = "scope", value_name = "NAME=VALUE", value_parser = parse_scope)]
    pub scopes: Vec<(String, String)>,

    /// The `cost` field of every request. [default: not sent, i.e. 1]
    #[arg(long, value_name = "N")]
    pub cost: Option<NonZeroU64>,

    /// burst only: length of each of the two bursts. [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub burst_length: Option<Duration>,

    /// burst only: quiet time between the bursts. [default: 2s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub quiet: Option<Duration>,

    /// Give up on one request (connect included) after this long; it counts
    /// as a timeout error.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    pub timeout: Duration,

    /// Seed for the key draws, to repeat a run's key sequence.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Draw latency (p50, p99) and throughput per second of the run as an SVG.
    #[arg(long, value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,

    /// Exit with status 3 if any key was admitted more than its limit
    /// permits (or if that cannot be told because GET /rules failed).
    #[arg(long)]
    pub fail_on_over_admission: bool,

    /// How many keys the text report lists (the JSON lists them all).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: usize,

    /// Send Envoy's ShouldRateLimit over gRPC to this HOST:PORT instead
    /// of `POST /check` (the --target is still asked for GET /rules). One
    /// descriptor per request: `key`=<key>, and `endpoint`=--endpoint and
    /// `tier`=--tier when given; --cost is its hits_addend.
    #[arg(long, value_name = "HOST:PORT")]
    pub grpc: Option<String>,

    /// The domain of the gRPC requests.
    #[arg(long, value_name = "DOMAIN", default_value = "edge")]
    pub grpc_domain: String,
}

const AFTER_HELP: &str = "\
Scenarios (--scenario):
  one-user        One hot key sent to every target in turn, 16 connections,
                  closed loop, 10 s: does the limit hold for a single caller
                  under contention, and across replicas?
  thousand-users  Keys uniform over 1,000, 64 connections, closed loop, 10 s:
                  throughput and latency with many independent counters.
  burst           64 connections at a fixed 5,000 req/s for 1 s, quiet for
                  2 s, then another 1 s burst (--rate, --burst-length,
                  --quiet change them); keys uniform over 100.

Bounds: the run stops after --duration (default 10 s), after --requests, or
whichever comes first; in-flight requests then get up to --timeout to answer.

Accuracy: GET /rules on the first target gives the algorithm, limit and
window of --endpoint x --tier; each key's `allowed` answers are compared with
what that algorithm can permit over the run (see the README). Exit status:
0 ok, 1 error, 2 bad arguments, 3 over-admission with
--fail-on-over-admission.

Examples:
  loadgen --scenario thousand-users --duration 5s --plot run.svg
  loadgen -t http://127.0.0.1:8081 -t http://127.0.0.1:8082 --scenario one-user \\
          --endpoint 'POST /login' --fail-on-over-admission
  loadgen --rate 2000 --connections 32 --keys zipf:10000:1.1 --duration 30s --json run.json";

/// The presets of `--scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// One hot key across every target (16 connections, closed loop).
    OneUser,
    /// Uniform over 1,000 keys (64 connections, closed loop).
    ThousandUsers,
    /// Burst at a high fixed rate, quiet, burst again.
    Burst,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::OneUser => "one-user",
            Scenario::ThousandUsers => "thousand-users",
            Scenario::Burst => "burst",
        })
    }
}

/// A replica's base URL, checked: `http://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    base: String,
    check: Uri,
    rules: Uri,
}

impl Target {
    /// The base URL as given (without a trailing slash).
    pub fn base(&self) -> &str {
        &self.base
    }
    /// `<base>/check`.
    pub fn check_uri(&self) -> &Uri {
        &self.check
    }
    /// `<base>/rules`.
    pub fn rules_uri(&self) -> &Uri {
        &self.rules
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let base = s.trim().trim_end_matches('/');
        let uri: Uri = base.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "{s:?}: only http:// is supported (got {other}://); point loadgen at the plain-HTTP listener"
                ))
            }
            None => return Err(format!("{s:?}: give a full URL such as http://127.0.0.1:8080")),
        }
        if uri.authority().is_none() {
            return Err(format!("{s:?}: the URL has no host"));
        }
        if uri.query().is_some() {
            return Err(format!("{s:?}: a target cannot have a query string"));
        }
        let join = |path: &str| -> Result<Uri, String> {
            format!("{base}{path}").parse().map_err(|e| format!("{s:?}{path}: {e}"))
        };
        Ok(Target {
            base: base.to_owned(),
            check: join("/check")?,
            rules: join("/rules")?,
        })
    }
}

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Each connection sends its next request when the previous one is
    /// answered, until `duration` (if any) has passed.
    Closed { duration: Option<Duration> },
    /// Requests are sent at fixed times, whatever the answers: the phases in
    /// order, each at its own rate (0 for a quiet phase).
    Rate { phases: Vec<Phase> },
}

impl Load {
    /// How long the sending lasts, when time bounds it.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            Load::Closed { duration } => *duration,
            Load::Rate { phases } => Some(phases.iter().map(|p| p.duration).sum()),
        }
    }
}

/// One stretch of a fixed-rate run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// Requests per second over all connections; 0 sends nothing.
    pub rate: f64,
    pub duration: Duration,
}

/// A checked, complete description of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scenario: Option<Scenario>,
    pub targets: Vec<Target>,
    pub connections: NonZeroUsize,
    pub load: Load,
    pub max_requests: Option<NonZeroU64>,
    pub keys: KeySpec,
    pub key_prefix: String,
    pub endpoint: Option<String>,
    pub tier: Option<String>,
    /// The `scopes` of every request.
    pub scopes: Vec<(String, String)>,
    pub cost: Option<NonZeroU64>,
    pub timeout: Duration,
    pub seed: Option<u64>,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub fail_on_over_admission: bool,
    pub top: usize,
    /// Send gRPC ShouldRateLimit calls instead: the address and domain.
    pub grpc: Option<(String, String)>,
}

impl Settings {
    /// The cost each request consumes (1 when none is sent).
    pub fn cost_units(&self) -> u64 {
        self.cost.map_or(1, NonZeroU64::get)
    }

    /// A settings value for tests and library callers: closed loop for
    /// `duration` against `targets`, everything else at its default.
    pub fn closed_loop(targets: Vec<Target>, connections: NonZeroUsize, duration: Duration, keys: KeySpec) -> Settings {
        Settings {
            scenario: None,
            targets,
            connections,
            load: Load::Closed {
                duration: Some(duration),
            },
            max_requests: None,
            keys,
            key_prefix: random_prefix(),
            endpoint: None,
            tier: None,
            scopes: Vec::new(),
            cost: None,
            timeout: Duration::from_secs(2),
            seed: None,
            json: None,
            plot: None,
            fail_on_over_admission: false,
            top: 5,
            grpc: None,
        }
    }
}

/// A command line that does not describe a run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Cli {
    /// Applies the scenario preset and the flags, and checks them.
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let err = |msg: String| Err(ConfigError(msg));
        let targets = if self.targets.is_empty() {
            vec![DEFAULT_TARGET.to_owned()]
        } else {
            self.targets.clone()
        };
        let targets = targets
            .iter()
            .map(|t| t.parse::<Target>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError(format!("--target {e}")))?;

        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return err(format!(
                    "--rate must be a positive number of requests per second; got {rate}"
                ));
            }
        }
        for (flag, value) in [
            ("--duration", self.duration),
            ("--timeout", Some(self.timeout)),
            ("--burst-length", self.burst_length),
        ] {
            if value == Some(Duration::ZERO) {
                return err(format!("{flag} must be longer than 0"));
            }
        }
        if self.scenario != Some(Scenario::Burst) && (self.burst_length.is_some() || self.quiet.is_some()) {
            return err("--burst-length and --quiet only apply to --scenario burst".into());
        }
        if let Some(prefix) = &self.key_prefix {
            if prefix.len() > 200 {
                return err(
                    "--key-prefix is too long (the service accepts keys of at most 256 bytes by default)".into(),
                );
            }
        }

        let preset = Preset::of(self.scenario);
        let connections = self
            .connections
            .unwrap_or(NonZeroUsize::new(preset.connections).expect("presets have connections"));
        let keys = match self.keys {
            Some(keys) => keys,
            None => preset.keys.parse().expect("presets have valid key specs"),
        };

        let load = if self.scenario == Some(Scenario::Burst) {
            if self.duration.is_some() {
                return err("--scenario burst is timed by --burst-length and --quiet, not --duration".into());
            }
            let rate = self.rate.unwrap_or(BURST_RATE);
            let burst = self.burst_length.unwrap_or(BURST_LENGTH);
            let quiet = self.quiet.unwrap_or(BURST_QUIET);
            Load::Rate {
                phases: vec![
                    Phase { rate, duration: burst },
                    Phase {
                        rate: 0.0,
                        duration: quiet,
                    },
                    Phase { rate, duration: burst },
                ],
            }
        } else if let Some(rate) = self.rate {
            // A fixed rate with only a request count runs for as long as the
            // count takes at that rate.
            let duration = match (self.duration, self.requests) {
                (Some(d), _) => d,
                (None, Some(n)) => Duration::from_secs_f64(n.get() as f64 / rate).max(Duration::from_millis(1)),
                (None, None) => DEFAULT_DURATION,
            };
            Load::Rate {
                phases: vec![Phase { rate, duration }],
            }
        } else {
            let duration = match (self.duration, self.requests) {
                (None, None) => Some(DEFAULT_DURATION),
                (d, _) => d,
            };
            Load::Closed { duration }
        };

        Ok(Settings {
            scenario: self.scenario,
            targets,
            connections,
            load,
            max_requests: self.requests,
            keys,
            key_prefix: self.key_prefix.unwrap_or_else(random_prefix),
            endpoint: self.endpoint,
            tier: self.tier,
            scopes: self.scopes,
            cost: self.cost,
            timeout: self.timeout,
            seed: self.seed,
            json: self.json,
            plot: self.plot,
            fail_on_over_admission: self.fail_on_over_admission,
            top: self.top,
            grpc: self.grpc.map(|addr| (addr, self.grpc_domain)),
        })
    }
}

/// A scenario's defaults.
struct Preset {
    connections: usize,
    keys: &'static str,
}

impl Preset {
    fn of(scenario: Option<Scenario>) -> Preset {
        match scenario {
            None => Preset {
                connections: DEFAULT_CONNECTIONS,
                keys: DEFAULT_KEYS,
            },
            Some(Scenario::OneUser) => Preset {
                connections: 16,
                keys: "hot",
            },
            Some(Scenario::ThousandUsers) => Preset {
                connections: 64,
                keys: "uniform:1000",
            },
            Some(Scenario::Burst) => Preset {
                connections: 64,
                keys: "uniform:100",
            },
        }
    }
}

/// `lg-<6 hex digits>:`, different on every run, so a run starts with fresh
/// counters even against a service that earlier runs have used.
pub fn random_prefix() -> String {
    format!("lg-{:06x}:", rand::random::<u32>() & 0xff_ffff)
}

/// A duration such as `10s`, `1500ms`, `1m 30s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 10s, 500ms, 2m)"))
}

/// `NAME=VALUE`, both non-empty.
fn parse_scope(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not NAME=VALUE (e.g. org=acme)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["loadgen"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").into_settings()
    }

    #[test]
    fn defaults_are_a_bounded_closed_loop_on_the_default_address() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.targets[0].check_uri(), "http://127.0.0.1:8080/check");
        assert_eq!(
            s.load,
            Load::Closed {
                duration: Some(DEFAULT_DURATION)
            }
        );
        assert_eq!(s.connections.get(), 16);
        assert_eq!(s.keys, KeySpec::Uniform { keys: 1000 });
        assert!(s.key_prefix.starts_with("lg-") && s.key_prefix.ends_with(':'));
    }

    #[test]
    fn scenarios_are_presets_that_flags_override() {
        let s = settings(&["--scenario", "one-user", "-t", "http://a:1/", "-t", "http://b:2"]).unwrap();
        assert_eq!(s.keys, KeySpec::Hot);
        assert_eq!(s.targets.len(), 2);
        assert_eq!(s.targets[0].rules_uri(), "http://a:1/rules");
        let s = settings(&["--scenario", "thousand-users", "-c", "8", "-d", "5s"]).unwrap();
        assert_eq!((s.connections.get(), s.keys.key_space()), (8, 1000));
        assert_eq!(s.load.duration(), Some(Duration::from_secs(5)));
        let s = settings(&["--scenario", "burst", "--rate", "100", "--quiet", "1s"]).unwrap();
        let Load::Rate { phases } = &s.load else {
            panic!("burst is fixed-rate")
        };
        let rates: Vec<f64> = phases.iter().map(|p| p.rate).collect();
        assert_eq!(rates, [100.0, 0.0, 100.0]);
        assert_eq!(s.load.duration(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn every_run_is_bounded() {
        let s = settings(&["-n", "100"]).unwrap();
        assert_eq!((s.load.duration(), s.max_requests.map(|n| n.get())), (None, Some(100)));
        let s = settings(&["--rate", "50", "-n", "100"]).unwrap();
        assert_eq!(s.load.duration(), Some(Duration::from_secs(2)));
        let s = settings(&["--rate", "50"]).unwrap();
        assert_eq!(s.load.duration(), Some(DEFAULT_DURATION));
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (args, needle) in [
            (&["--rate", "0"][..], "--rate"),
            (&["--rate", "NaN"][..], "--rate"),
            (&["-d", "0s"][..], "--duration"),
            (&["-t", "https://x"][..], "http://"),
            (&["-t", "localhost:8080"][..], "--target"),
            (&["--quiet", "1s"][..], "--scenario burst"),
            (&["--scenario", "burst", "-d", "1s"][..], "--burst-length"),
        ] {
            let e = settings(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        assert!(Cli::try_parse_from(["loadgen", "-c", "0"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--keys", "zipf:1"]).is_err());
    }

    #[test]
    fn durations_read_like_the_service_config() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
