//! Fault tests: real Redis processes fail under steady load from a bounded
//! load loop against a real replica (loopback only, a few seconds each).
//! Each reports the counts of decisions by reason, the time from the fault
//! to the first failure-mode decision, and the time from recovery to the
//! first check decided by Redis again (run with `--nocapture` to read them;
//! docs/ARCHITECTURE.md records the figures). Each asserts: no 5xx other
//! than the configured fail-closed 503, no request hung past the store
//! timeout, the failure mode and the breaker engaged, Redis decides again
//! after recovery, and counts are exact once it does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{cluster_toml, standalone_toml, unique_prefix};
use ratelimiter::store::redis::keys::KeyLayout;
use ratelimiter_testkit::redis::{RedisCluster, RedisSentinels, RedisServer};
use ratelimiter_testkit::service::Service;

const WORKERS: usize = 8;

/// When a fault on a standalone server starts and ends, and how long the
/// load runs, from the start of the load.
const FAULT_AT: Duration = Duration::from_millis(800);
const RECOVERED_AT: Duration = Duration::from_millis(2000);
const DURATION: Duration = Duration::from_millis(3500);

#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    status: u16,
    reason: String,
    latency: Duration,
    key: usize,
}

fn config(store: &str, mode: &str) -> String {
    format!(
        "[log]\nlevel = \"warn\"\n[store]\nbackend = \"redis\"\nfailure_mode = \"{mode}\"\nlocal_divisor = 1\n\
         [store.breaker]\nfailures = 3\nopen_for = \"300ms\"\n[store.redis]\n{store}\nkey_prefix = \"{}\"\n\
         command_timeout = \"150ms\"\nconnect_timeout = \"1s\"\nreconnect_min_delay = \"20ms\"\nreconnect_max_delay = \"200ms\"\n\
         [defaults]\nlimit = 1000000\nwindow = \"1h\"\n[[rules]]\nendpoint = \"GET /exact\"\nlimit = 10\nwindow = \"1h\"\n",
        unique_prefix("fault")
    )
}

/// Steady load: `WORKERS` loops, each sending checks for `keys` in turn,
/// until `duration` has passed since `start`.
async fn load(service: &Service, keys: usize, start: Instant, duration: Duration) -> Vec<Sample> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let url = service.url("/check");
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut i = worker;
            while start.elapsed() < duration {
                let key = i % keys;
                i += WORKERS;
                let sent = Instant::now();
                let result = client
                    .post(&url)
                    .json(&json!({"key": format!("user:{key}")}))
                    .send()
                    .await;
                let (status, reason) = match result {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        (status, body["reason"].as_str().unwrap_or("-").to_owned())
                    }
                    Err(e) => (0, format!("client error: {e}")),
                };
                samples.push(Sample {
                    at: sent.duration_since(start),
                    status,
                    reason,
                    latency: sent.elapsed(),
                    key,
                });
            }
            samples
        });
    }
    let mut all = Vec::new();
    while let Some(samples) = tasks.join_next().await {
        all.extend(samples.unwrap());
    }
    all.sort_by_key(|s| s.at);
    all
}

fn redis_decided(s: &Sample) -> bool {
    s.reason == "allowed" || s.reason == "limited"
}

struct Report {
    counts: BTreeMap<String, usize>,
    to_failure_mode: Option<Duration>,
    to_recovery: Option<Duration>,
    max_latency: Duration,
}

fn report(name: &str, samples: &[Sample], fault_at: Duration, recovered_at: Duration) -> Report {
    let mut counts = BTreeMap::new();
    for s in samples {
        *counts.entry(format!("{} {}", s.status, s.reason)).or_insert(0) += 1;
    }
    let to_failure_mode = samples
        .iter()
        .find(|s| s.at >= fault_at && !redis_decided(s))
        .map(|s| (s.at + s.latency).saturating_sub(fault_at));
    let to_recovery = samples
        .iter()
        .find(|s| s.at >= recovered_at && redis_decided(s))
        .map(|s| (s.at + s.latency).saturating_sub(recovered_at));
    let max_latency = samples.iter().map(|s| s.latency).max().unwrap_or_default();
    eprintln!(
        "fault {name}: {} checks {counts:?}; fault → first failure-mode decision {to_failure_mode:?}; \
         recovery → first Redis decision {to_recovery:?}; max latency {max_latency:?}",
        samples.len()
    );
    Report {
        counts,
        to_failure_mode,
        to_recovery,
        max_latency,
    }
}

/// Statuses allowed under `mode`: never a 5xx but the fail-closed 503.
fn assert_statuses(name: &str, report: &Report, mode: &str) {
    for (status_reason, n) in &report.counts {
        let ok = match mode {
            "open" => ["200 allowed", "200 fail_open", "429 limited"].contains(&status_reason.as_str()),
            "local" => ["200 allowed", "200 local_allowed", "429 limited", "429 local_limited"]
                .contains(&status_reason.as_str()),
            _ => ["200 allowed", "429 limited", "503 store_unavailable"].contains(&status_reason.as_str()),
        };
        assert!(ok, "{name}: unexpected {status_reason} ({n}×)");
    }
    // The store timeout is 150 ms: nothing may hang much longer.
    assert!(
        report.max_latency < Duration::from_secs(2),
        "{name}: a request took {:?}",
        report.max_latency
    );
    assert!(
        report.to_failure_mode.is_some(),
        "{name}: the failure mode never decided"
    );
    assert!(report.to_recovery.is_some(), "{name}: Redis never decided again");
}

/// After recovery, a fresh key of limit 10 admits exactly 10.
async fn assert_exact(service: &Service) {
    let client = reqwest::Client::new();
    let key = unique_prefix("exact");
    let mut allowed = 0;
    for _ in 0..25 {
        let body: Value = client
            .post(service.url("/check"))
            .json(&json!({"key": key, "endpoint": "GET /exact"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(redis_decided(&body_sample(&body)), "decided by Redis: {body}");
        allowed += usize::from(body["allowed"] == true);
    }
    assert_eq!(allowed, 10, "exact once Redis is back");
}

fn body_sample(body: &Value) -> Sample {
    Sample {
        at: Duration::ZERO,
        status: 0,
        reason: body["reason"].as_str().unwrap_or("-").to_owned(),
        latency: Duration::ZERO,
        key: 0,
    }
}

/// Runs `fault` at [`FAULT_AT`] and `recover` at [`RECOVERED_AT`] from now,
/// on a blocking thread (the Redis helpers block).
fn inject(
    fault: impl FnOnce() + Send + 'static,
    recover: impl FnOnce() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        std::thread::sleep(FAULT_AT);
        fault();
        std::thread::sleep(RECOVERED_AT - FAULT_AT);
        recover();
    })
}

/// Breaker states seen on /health/ready while `until` has not passed.
async fn watch_breaker(service: &Service, start: Instant, until: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    while start.elapsed() < until {
        if let Ok(response) = reqwest::get(service.url("/health/ready")).await {
            if let Ok(body) = response.json::<Value>().await {
                let state = body["breaker"].as_str().unwrap_or("-").to_owned();
                if seen.last() != Some(&state) {
                    seen.push(state);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load_fails_open() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let service = Service::start(&config(&standalone_toml(&redis.lock().unwrap()), "open"));
    let start = Instant::now();
    let faults = {
        let (a, b) = (redis.clone(), redis.clone());
        inject(move || a.lock().unwrap().kill(), move || b.lock().unwrap().restart())
    };
    let (samples, breaker) = tokio::join!(
        load(&service, 50, start, DURATION),
        watch_breaker(&service, start, DURATION)
    );
    faults.await.unwrap();
    let report = report("kill+restart (open)", &samples, FAULT_AT, RECOVERED_AT);
    assert_statuses("kill+restart", &report, "open");
    eprintln!("fault kill+restart (open): breaker states {breaker:?}");
    assert!(breaker.contains(&"open".to_owned()), "the breaker opened: {breaker:?}");
    assert_eq!(
        breaker.last().map(String::as_str),
        Some("closed"),
        "and closed again: {breaker:?}"
    );
    assert_exact(&service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_so_commands_time_out_decides_locally() {
    let redis = Arc::new(RedisServer::start());
    let service = Service::start(&config(&standalone_toml(&redis), "local"));
    let start = Instant::now();
    let faults = {
        let (a, b) = (redis.clone(), redis.clone());
        inject(move || a.pause(), move || b.resume())
    };
    let samples = load(&service, 50, start, DURATION).await;
    faults.await.unwrap();
    let report = report("SIGSTOP (local)", &samples, FAULT_AT, RECOVERED_AT);
    assert_statuses("SIGSTOP", &report, "local");
    assert_exact(&service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory_fails_closed_with_503() {
    let redis = Arc::new(RedisServer::start());
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let service = Service::start(&config(&standalone_toml(&redis), "closed"));
    let start = Instant::now();
    let faults = {
        let (a, b) = (redis.clone(), redis.clone());
        inject(
            // Any write now exceeds maxmemory: scripts that write are refused.
            move || {
                a.cli(&["CONFIG", "SET", "maxmemory", "1"]);
            },
            move || {
                b.cli(&["CONFIG", "SET", "maxmemory", "0"]);
            },
        )
    };
    let samples = load(&service, 50, start, DURATION).await;
    faults.await.unwrap();
    let report = report("maxmemory noeviction (closed)", &samples, FAULT_AT, RECOVERED_AT);
    assert_statuses("maxmemory", &report, "closed");
    assert!(
        report.counts.contains_key("503 store_unavailable"),
        "{:?}",
        report.counts
    );
    assert_exact(&service).await;
}

/// One master of a 3-master cluster with replicas is killed under steady
/// load over keys on all three. The keys of the two healthy masters keep
/// being decided by Redis — no failure-mode answer, no request held past
/// the command timeout (150 ms, plus scheduling slack on a shared machine)
/// — and the failed master's keys are decided by Redis again soon after
/// its replica is promoted. Reported per master: the failure-mode
/// decisions, the longest wait, and the time from promotion to the first
/// Redis decision of the failed master's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_lost_under_load() {
    const KEYS: usize = 60;
    let cluster = Arc::new(std::sync::Mutex::new(RedisCluster::start()));
    let toml = cluster_toml(&cluster.lock().unwrap());
    let service = Service::start(&config(&toml, "open"));
    // Which master holds each key's counter (the default rule's).
    let layout = KeyLayout::new("any");
    let master_of: Vec<u16> = {
        let cluster = cluster.lock().unwrap();
        (0..KEYS)
            .map(|key| cluster.master_of_slot(layout.slot("default", &format!("user:{key}"))))
            .collect()
    };
    let masters: std::collections::BTreeSet<u16> = master_of.iter().copied().collect();
    assert_eq!(masters.len(), 3, "the keys live on all three masters");
    let (fault_at, duration) = (Duration::from_millis(800), Duration::from_millis(6000));
    let start = Instant::now();
    let victim = cluster.lock().unwrap().masters()[0];
    let faults = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(fault_at);
            cluster.lock().unwrap().kill_master_and_wait_for_promotion(victim);
            start.elapsed()
        })
    };
    let samples = load(&service, KEYS, start, duration).await;
    let promoted_at = faults.await.unwrap();
    let report = report("cluster master killed (open)", &samples, fault_at, promoted_at);
    assert_statuses("cluster master killed", &report, "open");

    eprintln!("failover took {:?}", promoted_at.saturating_sub(fault_at));
    for master in &masters {
        let on_it: Vec<&Sample> = samples.iter().filter(|s| master_of[s.key] == *master).collect();
        let degraded = on_it.iter().filter(|s| !redis_decided(s)).count();
        let longest = on_it.iter().map(|s| s.latency).max().unwrap_or_default();
        let served_again = on_it
            .iter()
            .find(|s| s.at >= promoted_at && redis_decided(s))
            .map(|s| (s.at + s.latency).saturating_sub(promoted_at));
        let role = if *master == victim { "killed" } else { "healthy" };
        eprintln!(
            "  master {master} ({role}): {} checks, {degraded} failure-mode decisions, longest wait {longest:?}, \
             promotion → Redis decisions {served_again:?}",
            on_it.len()
        );
        if *master == victim {
            assert!(
                served_again.is_some(),
                "the failed master's keys are served by its replica"
            );
        } else {
            assert_eq!(degraded, 0, "master {master} is healthy: its keys keep Redis decisions");
            assert!(
                longest < Duration::from_millis(300),
                "master {master} is healthy: a check waited {longest:?}"
            );
        }
    }
    assert_exact(&service).await;
}

/// Redis Sentinel: the master is killed under load; the sentinels mark it
/// down after `DOWN_AFTER` and promote the replica, and the store follows
/// their announcement. Reported: the failover's length, and the time from
/// the promotion to the first Redis decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_master_lost_under_load() {
    let group = Arc::new(std::sync::Mutex::new(RedisSentinels::start()));
    let toml = crate::sentinel::sentinel_toml(&group.lock().unwrap());
    let service = Service::start(&config(&toml, "open"));
    let (fault_at, duration) = (Duration::from_millis(800), Duration::from_millis(6000));
    let start = Instant::now();
    let faults = {
        let group = group.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(fault_at);
            group.lock().unwrap().kill_master_and_wait_for_promotion();
            start.elapsed()
        })
    };
    let samples = load(&service, 20, start, duration).await;
    let promoted_at = faults.await.unwrap();
    let report = report("sentinel master killed (open)", &samples, fault_at, promoted_at);
    eprintln!("sentinel failover took {:?}", promoted_at.saturating_sub(fault_at));
    assert_statuses("sentinel master killed", &report, "open");
    assert!(
        report.to_recovery.unwrap() < Duration::from_secs(2),
        "Redis decides again soon after the promotion: {:?}",
        report.to_recovery
    );
    assert_exact(&service).await;
}
