//! `scripts/redis-cluster.sh`, the way a user runs it: start, status, use
//! the printed seed nodes, stop.

use std::process::Command;

use ratelimiter::core::{Algorithm, Cost, Policy};
use ratelimiter::store::{Store, StoreKey};
use ratelimiter_testkit::ports;

use crate::common::{cluster_settings, connect, unique_prefix};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis-cluster.sh");

fn run(dir: &std::path::Path, port: u16, command: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .arg(command)
        .env("REDIS_CLUSTER_DIR", dir)
        .env("REDIS_CLUSTER_PORT", port.to_string())
        .output()
        .expect("run the script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Stops the cluster even when an assertion fails.
struct Stop<'a>(&'a std::path::Path, u16);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let _ = run(self.0, self.1, "stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_script_starts_a_usable_cluster_and_stops_it() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cluster");
    // Six client ports from the first and their bus ports, offered until the
    // script finds none of them taken.
    let (port, out) = ports::retry(
        "scripts/redis-cluster.sh start",
        || ports::candidate_cluster_block(6),
        |&port| match run(&dir, port, "start") {
            (true, out) => Ok((port, out)),
            (false, out) => {
                let _ = run(&dir, port, "stop");
                Err(out)
            }
        },
    );
    let _stop = Stop(&dir, port);
    let seeds_line = out
        .lines()
        .find(|l| l.starts_with("Seed nodes: "))
        .expect("seed nodes printed");
    let seeds: Vec<String> = seeds_line["Seed nodes: ".len()..]
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    assert_eq!(seeds.len(), 6, "{seeds_line}");

    let (ok, status) = run(&dir, port, "status");
    assert!(
        ok && status.contains("healthy") && !status.contains("NOT healthy"),
        "{status}"
    );

    let store = connect(&cluster_settings(&seeds, &unique_prefix("script"))).await;
    let policy = Policy::new(Algorithm::FixedWindow, 1, std::time::Duration::from_secs(60)).unwrap();
    let key = StoreKey {
        rule: "script",
        key: "k",
    };
    assert!(store.check(key, &policy, Cost::ONE).await.unwrap().allowed);
    assert!(!store.check(key, &policy, Cost::ONE).await.unwrap().allowed);
    store.quit().await;

    let (ok, out) = run(&dir, port, "stop");
    assert!(ok, "{out}");
    assert!(!dir.exists(), "stop removes the directory");
    let (ok, _) = run(&dir, port, "status");
    assert!(!ok, "status fails once stopped");
}
