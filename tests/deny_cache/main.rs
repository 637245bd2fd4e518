//! The deny cache is exact: a limiter with it decides every check exactly
//! as one without it, under any sequence of checks, costs, resets, override
//! changes and expiring overrides — and a cached denial does not reach the
//! store.
//!
//! Both limiters share one manual clock and run on their own memory
//! stores, so the one without the cache is the reference.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use ratelimiter::core::{Clock, Consume, Cost, Decision, ManualClock, Policy, Timestamp};
use ratelimiter::limiter::overrides::OverrideRecord;
use ratelimiter::limiter::rules::RuleSet;
use ratelimiter::limiter::{CheckRequest, Key, Limiter, LimiterConfig, Reason};
use ratelimiter::settings::Settings;
use ratelimiter::store::memory::MemoryStore;
use ratelimiter::store::records::ControlState;
use ratelimiter::store::{CounterKey, Store, StoreError, StoreKey};

mod several;

const ALGORITHMS: [&str; 5] = [
    "token_bucket",
    "gcra",
    "fixed_window",
    "sliding_window_counter",
    "sliding_window_log",
];
const START: u64 = 1_700_000_000_000_000;

/// A memory store that counts the checks it is asked to decide; clones
/// share one store, so a test can look at what the limiter's copy saw.
#[derive(Clone)]
struct Counting(Arc<CountingInner>);

struct CountingInner {
    inner: MemoryStore<Arc<ManualClock>>,
    checks: AtomicUsize,
}

impl std::ops::Deref for Counting {
    type Target = CountingInner;

    fn deref(&self) -> &CountingInner {
        &self.0
    }
}

/// A limiter on a [`Counting`] store, with a handle on the store.
struct Tested {
    limiter: Limiter<Counting>,
    store: Counting,
}

impl std::ops::Deref for Tested {
    type Target = Limiter<Counting>;

    fn deref(&self) -> &Limiter<Counting> {
        &self.limiter
    }
}

impl Tested {
    /// The store the limiter decides on (what another replica shares).
    fn store(&self) -> &Counting {
        &self.store
    }
}

impl Store for Counting {
    fn check(
        &self,
        key: StoreKey<'_>,
        policy: &Policy,
        cost: Cost,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.inner.check(key, policy, cost)
    }

    fn reset(&self, key: StoreKey<'_>) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.reset(key)
    }

    fn check_all(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        cost: Cost,
        consume: Consume,
    ) -> impl Future<Output = Result<(bool, Vec<Decision>), StoreError>> + Send {
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.inner.check_all(partition, counters, cost, consume)
    }

    fn reset_all(
        &self,
        partition: &str,
        counters: &[CounterKey<'_>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.reset_all(partition, counters)
    }
}

fn limiter(algorithm: &str, limit: u64, window_ms: u64, clock: &Arc<ManualClock>, cache: bool) -> Tested {
    let toml = format!("[defaults]\nalgorithm = \"{algorithm}\"\nlimit = {limit}\nwindow = \"{window_ms}ms\"\n");
    limiter_of(&toml, clock, cache)
}

/// A limiter of the rules in `toml`, with or without the cache.
fn limiter_of(toml: &str, clock: &Arc<ManualClock>, cache: bool) -> Tested {
    let settings = Settings::from_toml(toml).unwrap();
    let rules = RuleSet::from_settings(&settings).unwrap();
    let store = Counting(Arc::new(CountingInner {
        inner: MemoryStore::with_clock(clock.clone()),
        checks: AtomicUsize::new(0),
    }));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let config = LimiterConfig {
        max_key_bytes: 64,
        top_keys: 8,
        deny_cache: cache.then_some(1_000),
        ..LimiterConfig::default()
    };
    Tested {
        limiter: Limiter::new(rules, store.clone(), dyn_clock, config),
        store,
    }
}

fn request(key: &str, cost: u64) -> CheckRequest {
    CheckRequest::new(Key::parse(key.to_owned(), 64).unwrap(), Cost::new(cost).unwrap())
}

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Check {
        key: usize,
        cost: u64,
    },
    Reset {
        key: usize,
    },
    /// A key override with this limit.
    Override {
        key: usize,
        limit: u64,
    },
    ClearOverrides,
}

fn op(limit: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..250).prop_map(Op::Advance),
        12 => (0usize..3, 1..=limit).prop_map(|(key, cost)| Op::Check { key, cost }),
        1 => (0usize..3).prop_map(|key| Op::Reset { key }),
        1 => (0usize..3, 1..=limit * 2).prop_map(|(key, limit)| Op::Override { key, limit }),
        1 => Just(Op::ClearOverrides),
    ]
}

fn case() -> impl Strategy<Value = (usize, u64, u64, Vec<Op>)> {
    (0usize..ALGORITHMS.len(), 2u64..6, 200u64..2_000).prop_flat_map(|(algorithm, limit, window)| {
        (
            Just(algorithm),
            Just(limit),
            Just(window),
            prop::collection::vec(op(limit), 1..120),
        )
    })
}

static HITS: AtomicUsize = AtomicUsize::new(0);
static CASES: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicBool = AtomicBool::new(false);

const KEYS: [&str; 3] = ["alice", "bob", "carol"];

/// Applies new overrides to both limiters. A key's state written under one
/// policy means something else under another, and what it means depends on
/// when it was last written — which the cache changes, by keeping denials
/// from the store — so both stores start afresh. The cached limiter's
/// cache is *not* cleared here: only its own invalidation can do that, and
/// a stale entry would deny where the reference allows.
async fn change_policies(reference: &Tested, cached: &Tested, control: &mut ControlState, next: ControlState) {
    if *control == next {
        return; // no change: nothing to invalidate, and nothing to start afresh
    }
    *control = next;
    for limiter in [reference, cached] {
        for key in KEYS {
            limiter.store().reset(StoreKey { rule: "default", key }).await.unwrap();
        }
        limiter.set_control(control.clone());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Next to this file: `main.proptest-regressions`.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn cached_and_uncached_limiters_decide_alike((algorithm, limit, window, ops) in case()) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
        let reference = limiter(ALGORITHMS[algorithm], limit, window, &clock, false);
        let cached = limiter(ALGORITHMS[algorithm], limit, window, &clock, true);
        let mut control = ControlState::default();
        let outcome = run(async {
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                    Op::Check { key, cost } => {
                        let request = request(KEYS[key], cost);
                        let want = reference.check(&request).await;
                        let got = cached.check(&request).await;
                        match (want, got) {
                            (Ok(want), Ok(got)) => {
                                let (w, g) = (want.decision, got.decision);
                                prop_assert_eq!(w.allowed, g.allowed, "op {}: {:?}", i, op);
                                prop_assert_eq!(w.limit, g.limit, "op {}", i);
                                prop_assert_eq!(w.retry_after_us, g.retry_after_us, "op {}", i);
                                prop_assert_eq!(w.reset_after_us, g.reset_after_us, "op {}", i);
                                prop_assert_eq!(w.at, g.at, "op {}", i);
                                if cost == 1 || g.allowed {
                                    prop_assert_eq!(w.remaining, g.remaining, "op {}", i);
                                } else {
                                    // A cached denial repeats what the store said
                                    // when it denied; capacity may have grown since,
                                    // but never enough for this cost.
                                    prop_assert!(g.remaining < cost, "op {}: {:?} vs {:?}", i, w, g);
                                }
                                prop_assert_eq!(want.reason, got.reason);
                            }
                            (Err(w), Err(g)) => prop_assert_eq!(w.to_string(), g.to_string()),
                            (w, g) => prop_assert!(false, "op {}: reference {:?}, cached {:?}", i, w.map(|v| v.reason), g.map(|v| v.reason)),
                        }
                    }
                    Op::Reset { key } => {
                        let key = CheckRequest::new(Key::parse(KEYS[key].to_owned(), 64).unwrap(), Cost::ONE);
                        reference.reset(&key, None).await.unwrap();
                        cached.reset(&key, None).await.unwrap();
                    }
                    Op::Override { key, limit } => {
                        let now_ms = clock.now().as_micros() / 1000;
                        let record = OverrideRecord {
                            endpoint: None,
                            tier: None,
                            key: Some(KEYS[key].to_owned()),
                            algorithm: None,
                            limit: Some(i64::try_from(limit).unwrap()),
                            window: None,
                            shadow: None,
                            expires_at_ms: None,
                            created_at_ms: now_ms,
                        };
                        let mut next = control.clone();
                        next.overrides.insert(record.target().id(), record);
                        change_policies(&reference, &cached, &mut control, next).await;
                    }
                    Op::ClearOverrides => {
                        change_policies(&reference, &cached, &mut control, ControlState::default()).await;
                    }
                }
            }
            HITS.fetch_add(cached.metrics().deny_cache_hits.get() as usize, Ordering::Relaxed);
            CASES.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        if outcome.is_err() {
            FAILED.store(true, Ordering::Relaxed);
        }
        outcome?;
        // The comparison means something only if the cache answers (about
        // four checks per case do, on average). Not checked while a failure
        // is being shrunk, when cases are small.
        let (hits, cases) = (HITS.load(Ordering::Relaxed), CASES.load(Ordering::Relaxed));
        if !FAILED.load(Ordering::Relaxed) {
            prop_assert!(cases < 64 || hits >= cases, "{} cache hits in {} cases", hits, cases);
        }
    }
}

#[test]
fn a_cached_denial_does_not_reach_the_store() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    let limiter = limiter("token_bucket", 2, 10_000, &clock, true);
    run(async {
        for _ in 0..2 {
            assert!(limiter.check(&request("k", 1)).await.unwrap().decision.allowed);
        }
        let first = limiter.check(&request("k", 1)).await.unwrap();
        assert_eq!(first.reason, Reason::Limited);
        assert_eq!(limiter.store().checks.load(Ordering::Relaxed), 3);
        for _ in 0..100 {
            let again = limiter.check(&request("k", 1)).await.unwrap();
            assert_eq!(again.reason, Reason::Limited);
        }
        assert_eq!(
            limiter.store().checks.load(Ordering::Relaxed),
            3,
            "answered from the cache"
        );
        assert_eq!(limiter.metrics().deny_cache_hits.get(), 100);

        // Once retry_after has passed, the store decides again.
        clock.advance(Duration::from_micros(first.decision.retry_after_us));
        assert!(limiter.check(&request("k", 1)).await.unwrap().decision.allowed);
        assert_eq!(limiter.store().checks.load(Ordering::Relaxed), 4);
    });
}

#[test]
fn a_reset_or_an_invalidation_from_elsewhere_ends_a_cached_denial() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    let limiter = limiter("fixed_window", 1, 60_000, &clock, true);
    run(async {
        assert!(limiter.check(&request("k", 1)).await.unwrap().decision.allowed);
        assert!(!limiter.check(&request("k", 1)).await.unwrap().decision.allowed);
        assert_eq!(limiter.deny_cache().unwrap().len(), 1);
        limiter.reset(&request("k", 1), None).await.unwrap();
        assert!(
            limiter.check(&request("k", 1)).await.unwrap().decision.allowed,
            "reset here"
        );

        assert!(!limiter.check(&request("k", 1)).await.unwrap().decision.allowed);
        // Another replica reset the key in the shared store, then told us.
        limiter
            .store()
            .reset(StoreKey {
                rule: "default",
                key: "k",
            })
            .await
            .unwrap();
        assert!(
            !limiter.check(&request("k", 1)).await.unwrap().decision.allowed,
            "not told yet"
        );
        limiter.invalidate_denials();
        assert!(limiter.check(&request("k", 1)).await.unwrap().decision.allowed, "told");
    });
}

#[test]
fn an_unchanged_resync_keeps_the_cache_and_a_change_clears_it() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    let limiter = limiter("gcra", 1, 60_000, &clock, true);
    run(async {
        limiter.check(&request("k", 1)).await.unwrap();
        limiter.check(&request("k", 1)).await.unwrap();
        assert_eq!(limiter.deny_cache().unwrap().len(), 1);
        limiter.set_control(ControlState::default());
        assert_eq!(
            limiter.deny_cache().unwrap().len(),
            1,
            "same state: nothing to invalidate"
        );
        let mut control = ControlState::default();
        let record = OverrideRecord {
            endpoint: None,
            tier: None,
            key: Some("k".into()),
            algorithm: None,
            limit: Some(5),
            window: None,
            shadow: None,
            expires_at_ms: None,
            created_at_ms: 0,
        };
        control.overrides.insert(record.target().id(), record);
        limiter.set_control(control);
        assert!(limiter.deny_cache().unwrap().is_empty());
        let asked = limiter.store().checks.load(Ordering::Relaxed);
        limiter.check(&request("k", 1)).await.unwrap();
        assert_eq!(
            limiter.store().checks.load(Ordering::Relaxed),
            asked + 1,
            "the store decides under the new policy"
        );
    });
}

#[test]
fn a_denial_under_an_override_ends_when_the_override_expires() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    let limiter = limiter("fixed_window", 5, 60_000, &clock, true);
    let record = OverrideRecord {
        endpoint: None,
        tier: None,
        key: Some("k".into()),
        algorithm: None,
        limit: Some(1),
        window: None,
        shadow: None,
        expires_at_ms: Some(START / 1000 + 1_000),
        created_at_ms: 0,
    };
    let mut control = ControlState::default();
    control.overrides.insert(record.target().id(), record);
    limiter.set_control(control);
    run(async {
        assert!(limiter.check(&request("k", 1)).await.unwrap().decision.allowed);
        let denied = limiter.check(&request("k", 1)).await.unwrap();
        assert!(!denied.decision.allowed);
        assert!(
            denied.decision.retry_after_us > 1_000_000,
            "the window outlives the override"
        );
        assert_eq!(limiter.store().checks.load(Ordering::Relaxed), 2);
        // Past the override's expiry the key's limit is 5 again, with no
        // snapshot rebuild: the entry's policy no longer matches.
        clock.advance(Duration::from_millis(1_000));
        assert!(limiter.check(&request("k", 1)).await.unwrap().decision.allowed);
        assert_eq!(limiter.store().checks.load(Ordering::Relaxed), 3);
    });
}
