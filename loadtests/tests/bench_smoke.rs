//! `scripts/bench.sh --smoke` end to end: the benchmark pipeline works.
//!
//! The script starts the ceiling server, five service replicas (memory,
//! memory exporting traces to a second ceiling server as its OTLP sink,
//! Redis, a 1-master and a 3-master Redis Cluster) and five redis-server
//! processes on free loopback ports, runs every scenario (single-limit,
//! three-limit and hot-key rules) for about a second with a few
//! connections, with loadgen and then with wrk, and writes the table. This
//! test gives it the binaries of this build (so nothing is built again:
//! `loadgen` and `ceiling` are this package's, `ratelimiter` is found as
//! `support` explains) and checks what it produced — never how fast
//! anything was. It needs `redis-server`, `redis-cli` and `python3`, as the
//! script does. When `wrk` is on the `PATH` (`scripts/test.sh` installs it)
//! every scenario but the fixed-rate one must have wrk figures; without it,
//! none.

use bench_run::{bench, read_json};
use serde_json::Value;

mod bench_run;
mod support;

const SCENARIOS: [&str; 13] = [
    "ceiling",
    "memory-allowed",
    "grpc-memory-allowed",
    "memory-allowed-otlp",
    "redis-allowed",
    "redis-half-rate",
    "redis-denied",
    "cluster1-allowed",
    "cluster3-allowed",
    "memory-three-limits",
    "redis-three-limits",
    "redis-hot-allowed",
    "cluster3-hot-allowed",
];

/// The scenarios on Redis, whose Redis cost per decision is reported.
const ON_REDIS: [&str; 8] = [
    "redis-allowed",
    "redis-half-rate",
    "redis-denied",
    "cluster1-allowed",
    "cluster3-allowed",
    "redis-three-limits",
    "redis-hot-allowed",
    "cluster3-hot-allowed",
];

/// The scenario at a fixed rate, which wrk (closed loop only) does not run.
const FIXED_RATE: &str = "redis-half-rate";

/// The scenario over gRPC, which wrk (HTTP/1.1 only) does not run.
const GRPC: &str = "grpc-memory-allowed";

/// How many times the ceiling is measured: before the first scenario and
/// after each one.
const CEILING_RUNS: usize = SCENARIOS.len();

#[test]
fn bench_script_smoke_run_produces_the_table_with_answers_and_no_over_admission() {
    let run = bench("--smoke", &[]);
    let (out, stdout) = (&run.out, &run.stdout);

    // The table: printed, and written as Markdown, one row per scenario.
    let markdown = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
    assert_eq!(stdout.trim(), markdown.trim());
    assert!(markdown.contains("smoke"), "{markdown}");
    assert!(!markdown.contains("Problems"), "{markdown}");
    // The gRPC scenario is also reported against HTTP /check.
    assert!(
        markdown.contains("gRPC / HTTP /check (memory): throughput "),
        "{markdown}"
    );
    // So is the replica exporting traces, whose sink received them.
    assert!(
        markdown.contains("Traces exported / not (memory): throughput ") && markdown.contains("the sink received"),
        "{markdown}"
    );
    let sink = read_json(&out.path().join("memory-allowed-otlp.sink.json"));
    assert!(sink["exports"].as_u64().is_some_and(|n| n > 0), "{sink}");
    for name in SCENARIOS {
        assert!(
            markdown.lines().any(|l| l.starts_with(&format!("| {name} |"))),
            "no row for {name}:\n{markdown}"
        );
    }

    // loadgen's raw report of each scenario: decisions came back, and no
    // key was admitted more than its rule permits.
    for name in SCENARIOS {
        let report = read_json(&out.path().join(format!("{name}.json")));
        let status = report["status"].as_object().expect("status counts");
        let decided: u64 = status
            .iter()
            .filter(|(code, _)| code.starts_with('2') || code.as_str() == "429")
            .map(|(_, n)| n.as_u64().unwrap())
            .sum();
        assert!(decided > 0, "{name}: no 2xx/429 answer: {status:?}");
        assert_eq!(
            decided,
            report["answered"].as_u64().unwrap(),
            "{name}: answers other than 2xx/429: {status:?}"
        );
        assert_eq!(report["errors"]["total"], 0, "{name}: {}", report["errors"]);
        if name.starts_with("ceiling") {
            // The ceiling serves no GET /rules: nothing to judge against.
            assert!(report["accuracy"].is_null());
        } else {
            assert_eq!(
                report["accuracy"]["total_over_admission"], 0,
                "{name}: {}",
                report["accuracy"]
            );
        }
    }
    let denied = read_json(&out.path().join("redis-denied.json"));
    assert_eq!(denied["accuracy"]["limit"], 100);
    assert!(
        denied["status"]["429"].as_u64().unwrap_or(0) > 0,
        "the hot key is denied"
    );
    assert!(
        denied["accuracy"]["total_allowed"].as_u64().unwrap() <= 100,
        "at most the hot rule's limit was allowed"
    );
    // The hot-key scenarios: one key, every request allowed.
    for name in ["redis-hot-allowed", "cluster3-hot-allowed"] {
        let hot = read_json(&out.path().join(format!("{name}.json")));
        assert_eq!(hot["keys"], "hot", "{name}");
        assert_eq!(hot["accuracy"]["keys"], 1, "{name}: {}", hot["accuracy"]);
        assert!(hot["status"]["429"].is_null(), "{name}: {}", hot["status"]);
        assert_eq!(hot["status"]["200"], hot["answered"], "{name}: {}", hot["status"]);
    }
    let half = read_json(&out.path().join("redis-half-rate.json"));
    assert_eq!(half["mode"], "fixed_rate");
    let full = read_json(&out.path().join("redis-allowed.json"));
    let expected = (full["throughput_rps"].as_f64().unwrap() / 2.0).round().max(1.0);
    assert_eq!(
        half["rates"][0].as_f64().unwrap(),
        expected,
        "half of the closed loop's rate"
    );

    // The summary lists the same scenarios with their ratio to the ceiling.
    let summary = read_json(&out.path().join("results.json"));
    assert_eq!(summary["mode"], "smoke");
    assert_eq!(summary["problems"].as_array().unwrap().len(), 0);
    let names: Vec<&str> = summary["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(names, SCENARIOS);
    assert_eq!(summary["scenarios"][0]["ratio_to_ceiling"], 1.0);
    // The ceiling is measured again after every scenario; each run left its
    // report, and the ceiling row is their mean.
    for run in 2..=CEILING_RUNS {
        assert!(
            out.path().join(format!("ceiling-{run}.json")).is_file(),
            "ceiling-{run}.json"
        );
    }
    assert!(
        summary["scenarios"][0]["load"]
            .as_str()
            .unwrap()
            .contains(&format!("mean of {CEILING_RUNS} runs")),
        "{}",
        summary["scenarios"][0]["load"]
    );

    // Every Redis scenario reports Redis's CPU and script calls per
    // decision; every allowed decision took a script call (a denied one
    // may have been answered from the deny cache).
    for scenario in summary["scenarios"].as_array().unwrap() {
        let name = scenario["scenario"].as_str().unwrap();
        // The server's own CPU per decision, for every scenario.
        let server_cpu = scenario["server_cpu_us_per_decision"].as_f64();
        assert!(server_cpu.is_some_and(|us| us > 0.0), "{name}: {scenario}");
        let redis = &scenario["redis"];
        if !ON_REDIS.contains(&name) {
            assert!(redis.is_null(), "{name}: {redis}");
            continue;
        }
        let cpu = redis["cpu_us_per_decision"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {redis}"));
        let calls = redis["script_calls_per_decision"].as_f64().unwrap();
        assert!(cpu >= 0.0, "{name}: {redis}");
        if name != "redis-denied" {
            assert!(calls > 0.0 && calls <= 1.0, "{name}: {calls} script calls per decision");
        }
    }
    // The rule of three limits was checked with its scope, every check allowed.
    let three = read_json(&out.path().join("redis-three-limits.json"));
    assert!(three["status"]["200"].as_u64().unwrap() > 0, "{}", three["status"]);

    // wrk: every scenario but the fixed-rate one, and every ceiling run,
    // measured again with wrk when it is installed; nothing otherwise.
    let wrk_installed = on_path("wrk");
    println!("wrk on PATH: {wrk_installed}");
    assert_eq!(summary["wrk"].is_string(), wrk_installed, "{}", summary["wrk"]);
    for scenario in summary["scenarios"].as_array().unwrap() {
        let name = scenario["scenario"].as_str().unwrap();
        let wrk = &scenario["wrk"];
        if !wrk_installed || name == FIXED_RATE || name == GRPC {
            assert!(wrk.is_null(), "{name}: {wrk}");
            continue;
        }
        let positive = |field: &Value| field.as_f64().is_some_and(|v| v > 0.0);
        assert!(positive(&wrk["throughput_rps"]), "{name}: {wrk}");
        assert!(positive(&wrk["ratio_to_ceiling"]), "{name}: {wrk}");
        assert!(positive(&wrk["latency_ms"]["p50"]), "{name}: {wrk}");
        assert!(positive(&wrk["latency_ms"]["p99"]), "{name}: {wrk}");
        assert_eq!(wrk["errors"], 0, "{name}: {wrk}");
        // wrk counts 429s among its non-2xx answers: only the denied
        // scenario has any.
        let non_2xx = wrk["non_2xx"].as_u64().unwrap_or_else(|| panic!("{name}: {wrk}"));
        if name == "redis-denied" {
            assert!(non_2xx > 0, "{name}: {wrk}");
        } else {
            assert_eq!(non_2xx, 0, "{name}: {wrk}");
        }
    }
    if wrk_installed {
        assert!(summary["wrk_ceiling_rps"].as_f64().unwrap() > 0.0);
        for run in std::iter::once("ceiling".to_owned()).chain((2..=CEILING_RUNS).map(|r| format!("ceiling-{r}"))) {
            let report = read_json(&out.path().join(format!("{run}.wrk.json")));
            assert!(report["throughput_rps"].as_f64().unwrap() > 0.0, "{run}: {report}");
        }
        let half = read_json(&out.path().join(format!("{FIXED_RATE}.wrk.json")));
        assert!(half["skipped"].is_string(), "{half}");
        assert!(markdown.contains("not run"), "{markdown}");
    } else {
        assert!(summary["wrk_ceiling_rps"].is_null());
    }
}

/// Whether an executable named `program` is in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
