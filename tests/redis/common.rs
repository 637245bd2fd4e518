//! Building stores against the test's own Redis processes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ratelimiter::settings::{HumanDuration, RedisMode, RedisSettings};
use ratelimiter::store::redis::RedisStore;

/// A key prefix no other test uses, so tests can share a server.
pub fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}-{test}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn standalone_settings(url: &str, prefix: &str) -> RedisSettings {
    RedisSettings {
        mode: RedisMode::Auto,
        url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        command_timeout: HumanDuration(Duration::from_secs(2)),
        ..RedisSettings::default()
    }
}

pub fn cluster_settings(seeds: &[String], prefix: &str) -> RedisSettings {
    RedisSettings {
        mode: RedisMode::Cluster,
        nodes: seeds.to_vec(),
        key_prefix: prefix.to_owned(),
        command_timeout: HumanDuration(Duration::from_secs(2)),
        ..RedisSettings::default()
    }
}

/// The `[store.redis]` line pointing at `server`, for a service config.
pub fn standalone_toml(server: &ratelimiter_testkit::redis::RedisServer) -> String {
    format!("url = \"{}\"", server.url())
}

/// `[store.redis]` lines pointing at `cluster`'s nodes, for a service config.
pub fn cluster_toml(cluster: &ratelimiter_testkit::redis::RedisCluster) -> String {
    let nodes: Vec<String> = cluster.seed_urls().iter().map(|u| format!("\"{u}\"")).collect();
    format!("mode = \"cluster\"\nnodes = [{}]", nodes.join(", "))
}

pub async fn connect(settings: &RedisSettings) -> RedisStore {
    RedisStore::connect(settings)
        .await
        .expect("connect to the test's Redis")
}

/// A small deterministic generator, so a failing sequence can be replayed
/// from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
