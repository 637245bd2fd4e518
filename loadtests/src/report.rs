//! The report: built once from the settings, the measurements and the
//! accuracy verdict; printed as text and written as JSON (the same
//! [`Report`] value, so the two cannot disagree).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::accuracy::Accuracy;
use crate::config::{Load, Settings};
use crate::runner::{ErrorCounts, RunData};

/// One run, as printed and as written to `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub loadgen_version: String,
    pub scenario: Option<String>,
    pub targets: Vec<String>,
    /// `closed` or `fixed_rate`.
    pub mode: String,
    pub connections: usize,
    /// Fixed rate: the requested rate of each phase (0 = quiet), req/s.
    pub rates: Vec<f64>,
    pub keys: String,
    pub key_prefix: String,
    pub endpoint: Option<String>,
    pub tier: Option<String>,
    pub cost: u64,
    pub started_at_unix_ms: u64,
    pub duration_s: f64,
    /// Requests sent, answered or not.
    pub requests: u64,
    /// Requests that got an HTTP answer (any status).
    pub answered: u64,
    /// Answered requests per second over the run.
    pub throughput_rps: f64,
    pub latency_ms: Latency,
    /// Answers per HTTP status.
    pub status: BTreeMap<String, u64>,
    /// Answers per `reason` field.
    pub reasons: BTreeMap<String, u64>,
    pub errors: Errors,
    /// Fixed rate: the furthest behind schedule a request was sent because
    /// its connection still awaited an earlier answer, ms.
    pub max_send_lag_ms: Option<f64>,
    /// The first answer that was not a rate-limit decision, if any.
    pub first_unexpected_answer: Option<String>,
    pub accuracy: Option<Accuracy>,
    /// Why there is no accuracy section.
    pub accuracy_unavailable: Option<String>,
    pub timeline: Vec<Second>,
}

/// Latency percentiles of answered requests, in milliseconds. At a fixed
/// rate, measured from each request's intended send time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Requests that got no answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    pub connect: u64,
    pub timeout: u64,
    pub other: u64,
    pub total: u64,
    pub first: Option<String>,
}

/// One second of the run. Counts are of what came back in this second
/// (the last second also holds the drain after sending stopped);
/// percentiles are of the requests (intended to be) sent in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start.
    pub second: u64,
    pub answered: u64,
    pub allowed: u64,
    pub errors: u64,
    /// `answered` over the length of this second within the run (the last
    /// one may be partial).
    pub throughput_rps: f64,
    /// `None` when no request sent in this second was answered.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Report {
    /// Assembles the report of a finished run.
    pub fn new(settings: &Settings, data: &RunData, accuracy: Result<Accuracy, String>) -> Report {
        let elapsed = data.elapsed.as_secs_f64();
        let span = data.timeline_span.as_secs_f64();
        let (mode, rates) = match &settings.load {
            Load::Closed { .. } => ("closed", Vec::new()),
            Load::Rate { phases } => ("fixed_rate", phases.iter().map(|p| p.rate).collect()),
        };
        let timeline = data
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let length = (span - i as f64).clamp(1e-3, 1.0);
                let h = &s.latency_us;
                let q = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0);
                Second {
                    second: i as u64,
                    answered: s.done.answered,
                    allowed: s.done.allowed,
                    errors: s.done.errors,
                    throughput_rps: s.done.answered as f64 / length,
                    p50_ms: q(0.5),
                    p99_ms: q(0.99),
                }
            })
            .collect();
        let ErrorCounts {
            connect,
            timeout,
            other,
        } = data.errors;
        let (accuracy, accuracy_unavailable) = match accuracy {
            Ok(a) => (Some(a), None),
            Err(e) => (None, Some(e)),
        };
        Report {
            loadgen_version: env!("CARGO_PKG_VERSION").to_owned(),
            scenario: settings.scenario.map(|s| s.to_string()),
            targets: settings.targets.iter().map(|t| t.base().to_owned()).collect(),
            mode: mode.to_owned(),
            connections: settings.connections.get(),
            rates,
            keys: settings.keys.to_string(),
            key_prefix: settings.key_prefix.clone(),
            endpoint: settings.endpoint.clone(),
            tier: settings.tier.clone(),
            cost: settings.cost_units(),
            started_at_unix_ms: u64::try_from(data.start_unix_ns / 1_000_000).unwrap_or(0),
            duration_s: elapsed,
            requests: data.sent,
            answered: data.answered(),
            throughput_rps: if elapsed > 0.0 {
                data.answered() as f64 / elapsed
            } else {
                0.0
            },
            latency_ms: Latency::of(&data.latency_us),
            status: data.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            reasons: data.reasons.clone(),
            errors: Errors {
                connect,
                timeout,
                other,
                total: data.errors.total(),
                first: data.first_error.clone(),
            },
            max_send_lag_ms: (mode == "fixed_rate").then_some(data.max_send_lag.as_secs_f64() * 1000.0),
            first_unexpected_answer: data.first_unexpected.clone(),
            accuracy,
            accuracy_unavailable,
            timeline,
        }
    }

    /// Whether any key was admitted more than permitted.
    pub fn over_admitted(&self) -> bool {
        self.accuracy.as_ref().is_some_and(|a| a.total_over_admission > 0)
    }

    /// The JSON written by `--json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// The text printed to stdout; lists at most `top` keys.
    pub fn to_text(&self, top: usize) -> String {
        let mut out = String::new();
        let w = &mut out;
        let title = match &self.scenario {
            Some(s) => format!("loadgen {} — scenario {s}", self.loadgen_version),
            None => format!("loadgen {}", self.loadgen_version),
        };
        let _ = writeln!(w, "{title}");
        let _ = writeln!(w, "{:<14}{}", "targets", self.targets.join(", "));
        let load = match self.mode.as_str() {
            "closed" => format!("closed loop, {} connections", self.connections),
            _ => {
                let rates: Vec<String> = self.rates.iter().map(|r| format!("{r}")).collect();
                format!(
                    "fixed rate {} req/s, {} connections",
                    rates.join(" / "),
                    self.connections
                )
            }
        };
        let _ = writeln!(w, "{:<14}{load}", "load");
        let _ = writeln!(
            w,
            "{:<14}{} (prefix {}), endpoint {}, tier {}, cost {}",
            "requests as",
            self.keys,
            self.key_prefix,
            self.endpoint
                .as_deref()
                .map_or("(default rule)".to_owned(), |e| format!("{e:?}")),
            self.tier.as_deref().unwrap_or("(default)"),
            self.cost
        );
        let _ = writeln!(w, "{:<14}{:.2} s", "duration", self.duration_s);
        let _ = writeln!(
            w,
            "{:<14}{} sent, {} answered, {:.1} req/s",
            "requests", self.requests, self.answered, self.throughput_rps
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            w,
            "{:<14}p50 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3})",
            "latency ms", l.p50, l.p95, l.p99, l.p99_9, l.max, l.mean
        );
        if let Some(lag) = self.max_send_lag_ms {
            let _ = writeln!(
                w,
                "{:<14}{lag:.3} ms behind schedule at worst (waiting for an earlier answer)",
                "send lag"
            );
        }
        let join = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            }
        };
        let _ = writeln!(w, "{:<14}{}", "status", join(&self.status));
        let _ = writeln!(w, "{:<14}{}", "reason", join(&self.reasons));
        let e = &self.errors;
        let _ = writeln!(
            w,
            "{:<14}connect: {}  timeout: {}  other: {}",
            "errors", e.connect, e.timeout, e.other
        );
        if let Some(first) = &e.first {
            let _ = writeln!(w, "{:<14}first: {first}", "");
        }
        if let Some(answer) = &self.first_unexpected_answer {
            let _ = writeln!(w, "{:<14}first answer that was not a decision: {answer}", "");
        }
        match (&self.accuracy, &self.accuracy_unavailable) {
            (Some(a), _) => write_accuracy(w, a, top),
            (None, Some(why)) => {
                let _ = writeln!(w, "{:<14}unavailable: {why}", "accuracy");
            }
            (None, None) => {}
        }
        out
    }
}

fn write_accuracy(w: &mut String, a: &Accuracy, top: usize) {
    let window = humantime::format_duration(std::time::Duration::from_millis(a.window_ms));
    let _ = writeln!(
        w,
        "{:<14}rule {:?}, tier {:?}: {} limit {} per {window}",
        "accuracy",
        a.rule,
        a.tier,
        a.algorithm.as_str(),
        a.limit
    );
    let _ = writeln!(w, "{:<14}permitted per key {} = {}", "", a.permitted_per_key, a.formula);
    let verdict = if a.total_over_admission == 0 {
        "OK".to_owned()
    } else {
        "OVER-ADMITTED".to_owned()
    };
    let _ = writeln!(
        w,
        "{:<14}{} keys, {} allowed; {} over-admitted keys, total over-admission {} — {verdict}",
        "", a.keys, a.total_allowed, a.over_admitted_keys, a.total_over_admission
    );
    if let Some(warning) = &a.warning {
        let _ = writeln!(w, "{:<14}warning: {warning}", "");
    }
    if top > 0 && !a.per_key.is_empty() {
        let width = a
            .per_key
            .iter()
            .take(top)
            .map(|k| k.key.len())
            .max()
            .unwrap_or(3)
            .max(3);
        let _ = writeln!(
            w,
            "{:<14}{:<width$}  {:>9}  {:>8}  {:>9}  {:>13}",
            "", "key", "requests", "allowed", "permitted", "over-admitted"
        );
        for k in a.per_key.iter().take(top) {
            let _ = writeln!(
                w,
                "{:<14}{:<width$}  {:>9}  {:>8}  {:>9}  {:>13}",
                "", k.key, k.requests, k.allowed, k.permitted, k.over_admitted
            );
        }
        if a.per_key.len() > top {
            let _ = writeln!(w, "{:<14}… {} more keys (all in --json)", "", a.per_key.len() - top);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::accuracy::{judge, KeyTally, Span};
    use crate::config::Target;
    use crate::keys::KeySpec;
    use crate::rules::{Algorithm, Policy};
    use crate::runner::{second_histogram, Completions, KeyCount, SecondStats};
    use std::collections::{BTreeSet, HashMap};
    use std::num::NonZeroUsize;
    use std::time::Duration;

    pub(crate) fn sample() -> Report {
        let target: Target = "http://127.0.0.1:8080".parse().unwrap();
        let mut settings = Settings::closed_loop(
            vec![target],
            NonZeroUsize::new(8).unwrap(),
            Duration::from_secs(2),
            KeySpec::Hot,
        );
        settings.key_prefix = "lg-test:".into();
        settings.endpoint = Some("POST /login".into());
        let mut latency = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut second = SecondStats {
            latency_us: second_histogram(),
            done: Completions {
                answered: 4,
                allowed: 2,
                errors: 0,
            },
        };
        for us in [500, 800, 1200, 2000] {
            latency.record(us).unwrap();
            second.latency_us.record(us).unwrap();
        }
        let data = RunData {
            start_unix_ns: 1_764_100_810 * 1_000_000_000,
            elapsed: Duration::from_millis(1500),
            timeline_span: Duration::from_millis(1500),
            sent: 5,
            latency_us: latency,
            timeline: vec![
                second,
                SecondStats {
                    latency_us: second_histogram(),
                    done: Completions {
                        answered: 0,
                        allowed: 0,
                        errors: 1,
                    },
                },
            ],
            statuses: [(200, 2), (429, 2)].into_iter().collect(),
            reasons: [("allowed".to_owned(), 2), ("limited".to_owned(), 2)]
                .into_iter()
                .collect(),
            errors: ErrorCounts {
                connect: 0,
                timeout: 1,
                other: 0,
            },
            keys: HashMap::from([(
                0,
                KeyCount {
                    requests: 5,
                    allowed: 2,
                },
            )]),
            limits_seen: BTreeSet::from([2]),
            first_unexpected: None,
            first_error: Some("timeout after 2s".into()),
            max_send_lag: Duration::ZERO,
        };
        let policy = Policy {
            rule: "POST /login".into(),
            tier: "free".into(),
            algorithm: Algorithm::FixedWindow,
            limit: 2,
            window_ms: 3_600_000,
        };
        let span = Span {
            start_unix_ns: data.start_unix_ns,
            elapsed: data.elapsed,
        };
        let tallies = vec![KeyTally {
            key: "lg-test:0".into(),
            requests: 5,
            allowed: 2,
        }];
        let accuracy = judge(&policy, 1, span, tallies, &[2]);
        Report::new(&settings, &data, Ok(accuracy))
    }

    #[test]
    fn json_report_has_every_figure_and_reads_back() {
        let report = sample();
        let json = report.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["mode"], "closed");
        assert_eq!(v["duration_s"], 1.5);
        assert_eq!((v["requests"].as_u64(), v["answered"].as_u64()), (Some(5), Some(4)));
        assert!((v["throughput_rps"].as_f64().unwrap() - 4.0 / 1.5).abs() < 1e-9);
        for p in ["p50", "p95", "p99", "p99_9", "max"] {
            assert!(v["latency_ms"][p].as_f64().unwrap() > 0.0, "{p}");
        }
        assert_eq!(v["latency_ms"]["max"].as_f64().unwrap(), 2.0);
        assert_eq!(v["status"]["429"], 2);
        assert_eq!(v["reasons"]["allowed"], 2);
        assert_eq!(v["errors"]["timeout"], 1);
        assert_eq!(v["errors"]["total"], 1);
        let a = &v["accuracy"];
        assert_eq!(a["algorithm"], "fixed_window");
        assert_eq!(
            (a["permitted_per_key"].as_u64(), a["aligned_windows"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(a["total_over_admission"], 0);
        assert_eq!(a["per_key"][0]["key"], "lg-test:0");
        assert_eq!(a["per_key"][0]["over_admitted"], 0);
        assert_eq!(v["timeline"].as_array().unwrap().len(), 2);
        assert_eq!(v["timeline"][0]["answered"], 4);
        assert_eq!(v["timeline"][1]["p50_ms"], serde_json::Value::Null);
        assert!((v["timeline"][1]["throughput_rps"].as_f64().unwrap()).abs() < 1e-9);
        // The JSON is the report: it reads back to the same value.
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert!(!back.over_admitted());
    }

    #[test]
    fn text_report_names_the_figures() {
        let text = sample().to_text(5);
        for needle in [
            "closed loop, 8 connections",
            "5 sent, 4 answered",
            "p99.9",
            "200: 2  429: 2",
            "allowed: 2  limited: 2",
            "timeout: 1",
            "fixed_window limit 2 per 1h",
            "total over-admission 0 — OK",
            "lg-test:0",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn over_admission_is_reported() {
        let mut report = sample();
        let a = report.accuracy.as_mut().unwrap();
        a.total_over_admission = 3;
        a.over_admitted_keys = 1;
        assert!(report.over_admitted());
        assert!(report.to_text(5).contains("OVER-ADMITTED"));
    }
}
