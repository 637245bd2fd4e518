//! What the service has decided since it started: counts per rule × tier ×
//! [`Outcome`], and the (rule, key) pairs limited most often.
//!
//! [`Stats`] is shared through an `Arc` and written on every decision.
//!
//! - [`Stats::record`] is the hot path: one sharded-map read lookup with the
//!   borrowed names and one relaxed atomic increment. It allocates only the
//!   first time a (rule, tier) pair is seen. Callers pass the *resolved*
//!   rule and tier names (an unknown endpoint is the default rule, an unknown
//!   tier is an error), so the number of pairs — and the memory — is bounded
//!   by the configuration, never by request input.
//! - [`Stats::record_limited`] is called only on denials and feeds a
//!   Space-Saving sketch (`space_saving.rs`) under a mutex. It tracks at most `top_k` pairs whatever the number of
//!   distinct keys, so a flood of one-off keys cannot grow memory.
//!
//! The sketch and its guarantees are in `space_saving.rs`.

mod space_saving;

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;

use self::space_saving::SpaceSaving;
use serde::Serialize;

use crate::core::Timestamp;

/// What happened to one `/check` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Within its limit.
    Allowed = 0,
    /// Over its limit: denied.
    Limited = 1,
    /// On the allow list: not limited.
    Allowlisted = 2,
    /// On the block list: denied without consulting the limit.
    Blocked = 3,
    /// Over the limit of a shadow rule: allowed, and nothing consumed.
    ShadowLimited = 4,
}

impl Outcome {
    /// Every outcome, in counter order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Allowed,
        Outcome::Limited,
        Outcome::Allowlisted,
        Outcome::Blocked,
        Outcome::ShadowLimited,
    ];

    /// The lower-case name used in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Limited => "limited",
            Outcome::Allowlisted => "allowlisted",
            Outcome::Blocked => "blocked",
            Outcome::ShadowLimited => "shadow_limited",
        }
    }

    /// Position in a counter array; always < 5.
    fn index(self) -> usize {
        self as usize
    }
}

/// Decision counts and the most-limited keys, since [`Stats::new`].
#[derive(Debug)]
pub struct Stats {
    started_at: Timestamp,
    counters: DashMap<Pair, [AtomicU64; 5]>,
    top_limited: Mutex<SpaceSaving>,
}

impl Stats {
    /// Starts counting at `now`; the sketch tracks at most `top_k` pairs
    /// (0 turns it off).
    pub fn new(top_k: usize, now: Timestamp) -> Stats {
        Stats {
            started_at: now,
            counters: DashMap::new(),
            top_limited: Mutex::new(SpaceSaving::new(top_k)),
        }
    }

    /// Counts one decision. `rule` and `tier` must be resolved names (see
    /// the module docs); no allocation once the pair has been seen.
    pub fn record(&self, rule: &str, tier: &str, outcome: Outcome) {
        let probe: &dyn PairView = &(rule, tier);
        if let Some(counters) = self.counters.get(probe) {
            counters[outcome.index()].fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.entry(Pair::new(rule, tier)).or_default()[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Feeds one denial of `key` under `rule` to the top-k sketch.
    pub fn record_limited(&self, rule: &str, key: &str) {
        self.sketch().offer(rule, key);
    }

    /// A consistent-enough snapshot: each counter is read once, and `totals`
    /// is exactly the sum of `by_rule`. `top_limited` holds at most `limit`
    /// pairs.
    pub fn view(&self, limit: usize) -> StatsView {
        let mut totals = Totals::default();
        let mut by_rule: Vec<RuleStats> = self
            .counters
            .iter()
            .map(|entry| {
                let [allowed, limited, allowlisted, blocked, shadow_limited] =
                    entry.value().each_ref().map(|counter| counter.load(Ordering::Relaxed));
                let row = RuleStats {
                    rule: entry.key().first.to_string(),
                    tier: entry.key().second.to_string(),
                    allowed,
                    limited,
                    allowlisted,
                    blocked,
                    shadow_limited,
                };
                totals.add(&row);
                row
            })
            .collect();
        by_rule.sort_unstable_by(|a, b| (&a.rule, &a.tier).cmp(&(&b.rule, &b.tier)));
        let sketch = self.sketch();
        StatsView {
            since_unix_ms: self.started_at.as_micros() / 1_000,
            totals,
            by_rule,
            top_limited: sketch.top(limit),
            tracked_keys_capacity: sketch.capacity,
        }
    }

    fn sketch(&self) -> std::sync::MutexGuard<'_, SpaceSaving> {
        // The sketch has no invariant a panicking holder could break halfway
        // (it never panics itself), so a poisoned lock is still usable.
        self.top_limited.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The JSON body of the stats endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsView {
    /// When counting started, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// Per outcome, over all rules and tiers.
    pub totals: Totals,
    /// Sorted by rule, then tier.
    pub by_rule: Vec<RuleStats>,
    /// Sorted by count, highest first (ties by rule, then key).
    pub top_limited: Vec<TopKey>,
    /// How many (rule, key) pairs the sketch can track (`top_k`).
    pub tracked_keys_capacity: usize,
}

/// Decisions per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub allowed: u64,
    pub limited: u64,
    pub allowlisted: u64,
    pub blocked: u64,
    pub shadow_limited: u64,
}

impl Totals {
    /// The count of one outcome.
    pub fn get(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Allowed => self.allowed,
            Outcome::Limited => self.limited,
            Outcome::Allowlisted => self.allowlisted,
            Outcome::Blocked => self.blocked,
            Outcome::ShadowLimited => self.shadow_limited,
        }
    }

    fn add(&mut self, row: &RuleStats) {
        self.allowed = self.allowed.saturating_add(row.allowed);
        self.limited = self.limited.saturating_add(row.limited);
        self.allowlisted = self.allowlisted.saturating_add(row.allowlisted);
        self.blocked = self.blocked.saturating_add(row.blocked);
        self.shadow_limited = self.shadow_limited.saturating_add(row.shadow_limited);
    }
}

/// Decisions per outcome for one rule × tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleStats {
    pub rule: String,
    pub tier: String,
    pub allowed: u64,
    pub limited: u64,
    pub allowlisted: u64,
    pub blocked: u64,
    /// Over the limit of a shadow rule: allowed, nothing consumed.
    pub shadow_limited: u64,
}

/// One tracked (rule, key) pair; its true count is in
/// `[count - error, count]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopKey {
    pub rule: String,
    pub key: String,
    pub count: u64,
    pub error: u64,
}

/// Two names, looked up by borrowed `(&str, &str)` without allocating.
///
/// `HashMap<Pair, _>` (and `DashMap`) accept any `&Q` where `Pair: Borrow<Q>`;
/// a tuple of `Arc<str>` cannot be borrowed as a tuple of `&str`, but both
/// can be seen as `dyn PairView`, whose `Hash` and `Eq` are defined on the
/// two strings alone.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    first: Arc<str>,
    second: Arc<str>,
}

impl Pair {
    pub(super) fn new(first: &str, second: &str) -> Pair {
        Pair {
            first: first.into(),
            second: second.into(),
        }
    }
}

pub(super) trait PairView {
    fn parts(&self) -> (&str, &str);
}

impl PairView for Pair {
    fn parts(&self) -> (&str, &str) {
        (&self.first, &self.second)
    }
}

impl PairView for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        *self
    }
}

impl<'a> Borrow<dyn PairView + 'a> for Pair {
    fn borrow(&self) -> &(dyn PairView + 'a) {
        self
    }
}

impl Hash for dyn PairView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // `str`'s hash ends with a terminator, so ("ab", "c") ≠ ("a", "bc").
        let (first, second) = self.parts();
        first.hash(state);
        second.hash(state);
    }
}

impl PartialEq for dyn PairView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PairView + '_ {}

impl Hash for Pair {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn PairView).hash(state);
    }
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for Pair {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn stats(top_k: usize) -> Stats {
        Stats::new(top_k, Timestamp::from_micros(1_700_000_000_123_456))
    }

    fn sketch_len(stats: &Stats) -> (usize, usize, usize) {
        let sketch = stats.sketch();
        (sketch.slots.len(), sketch.heap.len(), sketch.index.len())
    }

    /// Checks the heap and index invariants of the sketch.
    fn assert_consistent(stats: &Stats) {
        let s = stats.sketch();
        assert!(s.slots.len() <= s.capacity);
        assert_eq!(s.slots.len(), s.heap.len());
        assert_eq!(s.slots.len(), s.index.len());
        for (pos, &slot) in s.heap.iter().enumerate() {
            assert_eq!(s.slots[slot].heap_pos, pos);
            assert_eq!(s.index.get(&s.slots[slot].pair), Some(&slot));
            if pos > 0 {
                assert!(s.count_at((pos - 1) / 2) <= s.count_at(pos), "heap order at {pos}");
            }
        }
    }

    #[test]
    fn outcome_names_and_order() {
        let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            names,
            ["allowed", "limited", "allowlisted", "blocked", "shadow_limited"]
        );
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
    }

    #[test]
    fn stats_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Stats>();
        shared::<Arc<Stats>>();
    }

    #[test]
    fn counts_are_exact_across_threads() {
        const THREADS: usize = 4;
        const PER_THREAD: usize = 10_000;
        const RULES: [&str; 3] = ["login", "search", "default"];
        const TIERS: [&str; 2] = ["free", "pro"];
        let pick = |thread: usize, i: usize| (RULES[i % 3], TIERS[(i / 3) % 2], Outcome::ALL[(i * 7 + thread) % 5]);

        let stats = Arc::new(stats(8));
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let stats = Arc::clone(&stats);
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        let (rule, tier, outcome) = pick(thread, i);
                        stats.record(rule, tier, outcome);
                    }
                });
            }
        });

        let mut expected: HashMap<(&str, &str), [u64; 5]> = HashMap::new();
        for thread in 0..THREADS {
            for i in 0..PER_THREAD {
                let (rule, tier, outcome) = pick(thread, i);
                expected.entry((rule, tier)).or_default()[outcome.index()] += 1;
            }
        }
        let view = stats.view(10);
        assert_eq!(view.by_rule.len(), 6);
        for row in &view.by_rule {
            let want = expected[&(row.rule.as_str(), row.tier.as_str())];
            assert_eq!(
                [
                    row.allowed,
                    row.limited,
                    row.allowlisted,
                    row.blocked,
                    row.shadow_limited
                ],
                want,
                "{row:?}"
            );
        }
        let total: u64 = Outcome::ALL.iter().map(|&o| view.totals.get(o)).sum();
        assert_eq!(total, (THREADS * PER_THREAD) as u64);
        for outcome in Outcome::ALL {
            let want: u64 = expected.values().map(|c| c[outcome.index()]).sum();
            assert_eq!(view.totals.get(outcome), want, "{outcome:?}");
        }
    }

    #[test]
    fn pairs_are_told_apart_by_their_boundary() {
        let stats = stats(4);
        stats.record("ab", "c", Outcome::Allowed);
        stats.record("a", "bc", Outcome::Blocked);
        stats.record("ab", "c", Outcome::Allowed);
        let view = stats.view(0);
        let rows: Vec<(&str, &str, u64, u64)> = view
            .by_rule
            .iter()
            .map(|r| (r.rule.as_str(), r.tier.as_str(), r.allowed, r.blocked))
            .collect();
        assert_eq!(rows, [("a", "bc", 0, 1), ("ab", "c", 2, 0)]);
    }

    #[test]
    fn space_saving_by_hand() {
        // Capacity 2, stream a a b c: c replaces b (count 1) and inherits it.
        let stats = stats(2);
        for key in ["a", "a", "b", "c"] {
            stats.record_limited("r", key);
        }
        let top = stats.view(10).top_limited;
        let got: Vec<(&str, u64, u64)> = top.iter().map(|t| (t.key.as_str(), t.count, t.error)).collect();
        assert_eq!(got, [("a", 2, 0), ("c", 2, 1)]);
        assert_consistent(&stats);
    }

    #[test]
    fn heavy_hitter_survives_a_flood_of_distinct_keys() {
        const CAPACITY: usize = 16;
        const FLOOD: u64 = 100_000;
        let stats = stats(CAPACITY);
        let mut heavy = 0_u64;
        for i in 0..FLOOD {
            stats.record_limited("login", &format!("flood-{i}"));
            if i % 4 == 0 {
                stats.record_limited("login", "attacker");
                heavy += 1;
            }
        }
        let n = FLOOD + heavy;
        assert!(heavy * CAPACITY as u64 > n, "the test needs a true heavy hitter");

        assert_eq!(sketch_len(&stats), (CAPACITY, CAPACITY, CAPACITY));
        assert_consistent(&stats);
        let view = stats.view(3);
        assert_eq!(view.tracked_keys_capacity, CAPACITY);
        let first = &view.top_limited[0];
        assert_eq!((first.rule.as_str(), first.key.as_str()), ("login", "attacker"));
        assert!(
            first.count >= heavy && first.count - first.error <= heavy,
            "{first:?} vs {heavy}"
        );
        // Everything else is a one-off whose estimate is mostly error.
        for other in &view.top_limited[1..] {
            assert!(other.count - other.error <= 1, "{other:?}");
        }
    }

    #[test]
    fn counts_and_errors_obey_the_bounds() {
        const CAPACITY: usize = 25;
        const N: u64 = 50_000;
        // A skewed, deterministic stream over 40 keys and two rules: 80
        // pairs competing for 25 slots, a few of them above N/k = 2,000.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut truth: HashMap<(String, String), u64> = HashMap::new();
        let stats = stats(CAPACITY);
        for _ in 0..N {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Cubing a uniform value skews it towards small key numbers.
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let key = format!("k{}", (u * u * u * 40.0) as u64);
            let rule = if state.is_multiple_of(3) { "upload" } else { "login" };
            stats.record_limited(rule, &key);
            *truth.entry((rule.to_string(), key)).or_default() += 1;
        }
        assert_consistent(&stats);

        let top = stats.view(usize::MAX).top_limited;
        assert_eq!(top.len(), CAPACITY);
        assert_eq!(top.iter().map(|t| t.count).sum::<u64>(), N);
        let min_count = top.iter().map(|t| t.count).min().unwrap_or(0);
        assert!(min_count as f64 <= N as f64 / CAPACITY as f64);
        for t in &top {
            let real = truth[&(t.rule.clone(), t.key.clone())];
            assert!(t.count - t.error <= real && real <= t.count, "{t:?}, true count {real}");
            assert!(t.error <= min_count, "{t:?}");
        }
        let heavy: Vec<_> = truth.iter().filter(|(_, &c)| c * CAPACITY as u64 > N).collect();
        assert!(
            heavy.len() >= 3,
            "the stream should have several heavy hitters: {heavy:?}"
        );
        assert!(truth.len() > CAPACITY, "more pairs than slots, so some were evicted");
        assert!(top.iter().any(|t| t.error > 0), "evictions leave errors to check");
        for ((rule, key), count) in heavy {
            assert!(
                top.iter().any(|t| &t.rule == rule && &t.key == key),
                "{rule}/{key} (true count {count}) is above N/k and must be tracked"
            );
        }
    }

    #[test]
    fn view_orders_and_limits() {
        let stats = stats(8);
        for (rule, tier) in [
            ("search", "pro"),
            ("login", "pro"),
            ("search", "free"),
            ("login", "free"),
        ] {
            stats.record(rule, tier, Outcome::Allowed);
        }
        stats.record("login", "free", Outcome::Limited);
        for (key, times) in [("b", 2), ("a", 5), ("c", 3), ("d", 3)] {
            for _ in 0..times {
                stats.record_limited("login", key);
            }
        }

        let view = stats.view(3);
        assert_eq!(view.since_unix_ms, 1_700_000_000_123);
        assert_eq!(view.tracked_keys_capacity, 8);
        let order: Vec<(&str, &str)> = view
            .by_rule
            .iter()
            .map(|r| (r.rule.as_str(), r.tier.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("login", "free"),
                ("login", "pro"),
                ("search", "free"),
                ("search", "pro")
            ]
        );
        assert_eq!(
            view.totals,
            Totals {
                allowed: 4,
                limited: 1,
                allowlisted: 0,
                blocked: 0,
                shadow_limited: 0
            }
        );
        let top: Vec<(&str, u64)> = view.top_limited.iter().map(|t| (t.key.as_str(), t.count)).collect();
        assert_eq!(top, [("a", 5), ("c", 3), ("d", 3)]);

        assert_eq!(stats.view(0).top_limited, []);
        assert_eq!(stats.view(100).top_limited.len(), 4);
    }

    #[test]
    fn zero_capacity_tracks_nothing() {
        let stats = stats(0);
        stats.record_limited("r", "k");
        stats.record_limited("r", "k");
        assert_eq!(stats.view(10).top_limited, []);
        assert_eq!(sketch_len(&stats), (0, 0, 0));
    }

    #[test]
    fn view_serialises_with_the_documented_fields() {
        let stats = stats(2);
        stats.record("login", "free", Outcome::Blocked);
        stats.record_limited("login", "alice");
        let json = serde_json::to_value(stats.view(5)).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({
                "since_unix_ms": 1_700_000_000_123_u64,
                "totals": { "allowed": 0, "limited": 0, "allowlisted": 0, "blocked": 1, "shadow_limited": 0 },
                "by_rule": [{
                    "rule": "login", "tier": "free",
                    "allowed": 0, "limited": 0, "allowlisted": 0, "blocked": 1, "shadow_limited": 0
                }],
                "top_limited": [{ "rule": "login", "key": "alice", "count": 1, "error": 0 }],
                "tracked_keys_capacity": 2
            })
        );
    }
}
