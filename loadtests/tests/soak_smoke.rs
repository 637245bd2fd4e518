//! `scripts/bench.sh --soak`, shortened: the soak pipeline works and a
//! replica on Redis neither grows nor leaks descriptors over half a minute.
//!
//! The script starts a redis-server and a replica on it on free loopback
//! ports, measures the replica's maximum rate (closed loop, 2 s), sends half
//! of it for 30 s with Zipf-distributed keys, samples the replica's RSS and
//! open descriptors and Redis's `used_memory` every 5 s, and writes
//! `soak.json` and `soak.md` with its verdict. This test gives it the
//! binaries of this build (so nothing is built again: `loadgen` is this
//! package's, `ratelimiter` is found as `support` explains) and checks the
//! verdict, the samples and the answers — never how fast anything was. It
//! needs `redis-server`, `redis-cli` and `python3`, as the script does.

use bench_run::{bench, read_json};
use serde_json::Value;

mod bench_run;
mod support;

#[test]
fn bench_script_short_soak_is_flat_with_every_request_decided() {
    let run = bench(
        "--soak",
        &[
            ("BENCH_SOAK_DURATION", "30s"),
            ("BENCH_SOAK_EVERY", "5s"),
            ("BENCH_SOAK_PROBE", "2s"),
            ("BENCH_CONNECTIONS", "4"),
        ],
    );
    let (out, stdout) = (&run.out, &run.stdout);

    // The report: printed, and written as Markdown, ending with the verdict.
    let markdown = std::fs::read_to_string(out.path().join("soak.md")).expect("soak.md");
    assert_eq!(stdout.trim(), markdown.trim());
    assert!(!markdown.contains("Problems"), "{markdown}");
    assert!(
        markdown.trim_end().lines().last().unwrap().starts_with("soak: flat"),
        "{markdown}"
    );

    let soak = read_json(&out.path().join("soak.json"));
    assert_eq!(soak["verdict"], "flat", "{soak}");
    assert_eq!(soak["problems"].as_array().unwrap().len(), 0, "{}", soak["problems"]);
    assert_eq!(soak["keys"], "zipf:1000000:1.0");
    assert_eq!(soak["every_s"], 5.0);

    // Half of the probe's closed-loop rate.
    let probe = soak["probe_rps"].as_f64().unwrap();
    assert!(probe > 0.0, "{soak}");
    assert_eq!(soak["rate_rps"].as_f64().unwrap(), (probe / 2.0).round().max(1.0));

    // One sample before the load and one at the end of every 5 s: all with
    // the replica's memory and descriptors and Redis's memory, all but the
    // first with the interval's p99, in time order.
    let samples = soak["samples"].as_array().unwrap();
    assert!(samples.len() >= 5, "{} samples: {soak}", samples.len());
    let mut last_time = -1.0;
    for (i, sample) in samples.iter().enumerate() {
        let time = sample["time_s"].as_f64().unwrap();
        assert!(time > last_time, "sample {i}: {sample}");
        last_time = time;
        assert!(sample["rss_bytes"].as_u64().unwrap() > 0, "sample {i}: {sample}");
        assert!(sample["fds"].as_u64().unwrap() > 0, "sample {i}: {sample}");
        assert!(
            sample["redis_used_memory"].as_u64().unwrap() > 0,
            "sample {i}: {sample}"
        );
        if i == 0 {
            assert!(sample["p99_ms"].is_null(), "sample {i}: {sample}");
        } else {
            assert!(sample["p99_ms"].as_f64().unwrap() > 0.0, "sample {i}: {sample}");
        }
    }
    assert!(last_time >= 29.0, "the last sample at the end: {last_time}");
    assert!(soak["rss_growth"].as_f64().unwrap() <= 0.10, "{soak}");
    assert!(soak["fds_growth"].as_i64().unwrap() <= 5, "{soak}");

    // Every request answered with a decision, and no key over its limit.
    let status = soak["status"].as_object().unwrap();
    assert!(status.get("200").and_then(Value::as_u64).unwrap_or(0) > 0, "{status:?}");
    assert!(
        status.keys().all(|code| code.starts_with('2') || code == "429"),
        "{status:?}"
    );
    assert_eq!(soak["errors"], 0, "{soak}");
    assert_eq!(soak["over_admission"], 0, "{soak}");
    let run = read_json(&out.path().join("soak-run.json"));
    assert_eq!(run["mode"], "fixed_rate");
    assert_eq!(run["accuracy"]["total_over_admission"], 0, "{}", run["accuracy"]);
}
