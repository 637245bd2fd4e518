//! Memory under a flood of distinct keys: a million one-off keys through
//! the memory store and the stats sketch, with the process's resident
//! memory measured from `/proc/self/statm`.
//!
//! A test binary of its own with a single test, so that no other test
//! allocates in the same process while resident memory is measured. The
//! figures and the caps are documented in README ("Memory") and
//! docs/DECISIONS.md ("Memory per key in the memory store").

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratelimiter::core::{Algorithm, Clock, Cost, ManualClock, Policy, Timestamp};
use ratelimiter::limiter::stats::Stats;
use ratelimiter::store::memory::MemoryStore;
use ratelimiter::store::StoreKey;

const KEYS: usize = 1_000_000;

/// Resident memory that a million live keys may add, on the algorithm
/// with the largest per-key state for a one-off key (`sliding_window_log`,
/// one log entry each). Measured: see DECISIONS.md; the cap leaves margin
/// for allocator and hash-table growth differences.
const STORE_CAP_BYTES: u64 = 384 * 1024 * 1024;

/// Resident memory the stats may add for the same flood of limited keys:
/// the top-k sketch keeps `TOP_K` pairs whatever the number of keys.
const STATS_CAP_BYTES: u64 = 8 * 1024 * 1024;
const TOP_K: usize = 100;

/// 2023-11-14T22:13:20Z.
const START_US: u64 = 1_700_000_000_000_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let resident_pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm's second field: resident pages");
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    resident_pages * u64::try_from(page_size).expect("a positive page size")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[test]
fn a_million_one_off_keys_stay_bounded_and_are_swept() {
    let started = Instant::now();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START_US)));
    let mut key = String::with_capacity(32);

    // Stats: every key limited once. The sketch keeps TOP_K of them.
    let stats = Stats::new(TOP_K, clock.now());
    let before = rss_bytes();
    for i in 0..KEYS {
        key.clear();
        write!(key, "flood:{i:07}").unwrap();
        stats.record_limited("POST /login", &key);
    }
    let stats_growth = rss_bytes().saturating_sub(before);
    let view = stats.view(10_000);
    assert_eq!(view.top_limited.len(), TOP_K, "the sketch tracks exactly top_k pairs");
    assert_eq!(view.tracked_keys_capacity, TOP_K);
    eprintln!(
        "stats: {KEYS} limited keys added {:.1} MiB resident (cap {:.0} MiB)",
        mib(stats_growth),
        mib(STATS_CAP_BYTES)
    );
    assert!(
        stats_growth < STATS_CAP_BYTES,
        "the stats grew by {:.1} MiB for {KEYS} keys",
        mib(stats_growth)
    );

    // The memory store: a million distinct keys, each allowed once, so each
    // keeps one entry (a one-entry log) until its window passes.
    let store = MemoryStore::with_clock(clock.clone());
    let policy = Policy::new(Algorithm::SlidingWindowLog, 100, Duration::from_secs(60)).unwrap();
    let before = rss_bytes();
    for i in 0..KEYS {
        key.clear();
        write!(key, "user:{i:07}").unwrap();
        let decision = store.check_now(
            StoreKey {
                rule: "POST /login",
                key: &key,
            },
            &policy,
            Cost::ONE,
        );
        assert!(decision.allowed);
    }
    let store_growth = rss_bytes().saturating_sub(before);
    assert_eq!(store.len(), KEYS);
    eprintln!(
        "memory store: {KEYS} keys added {:.1} MiB resident, {} bytes per key (cap {:.0} MiB)",
        mib(store_growth),
        store_growth / KEYS as u64,
        mib(STORE_CAP_BYTES)
    );
    assert!(
        store_growth < STORE_CAP_BYTES,
        "{KEYS} keys grew resident memory by {:.1} MiB (cap {:.0} MiB)",
        mib(store_growth),
        mib(STORE_CAP_BYTES)
    );

    // Nothing is dropped while the windows last; everything once they pass.
    clock.advance(Duration::from_secs(30));
    assert_eq!(store.sweep(), 0);
    clock.advance(Duration::from_secs(30));
    assert_eq!(store.sweep(), KEYS, "every key's window has passed");
    assert!(store.is_empty());
    // The swept entries' memory and the emptied table go back to the
    // allocator; the table's large allocations (mmap'd) to the system.
    let after_sweep = rss_bytes().saturating_sub(before);
    eprintln!(
        "after the sweep: {:.1} MiB resident above the start; {:.1} s in all",
        mib(after_sweep),
        started.elapsed().as_secs_f64()
    );
    assert!(
        after_sweep < store_growth / 4 * 3,
        "the sweep gave back too little: {:.1} of {:.1} MiB still resident",
        mib(after_sweep),
        mib(store_growth)
    );
}
