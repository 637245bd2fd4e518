//! The deny cache on checks of several limits: a limiter with it admits
//! exactly what one without it admits, under any sequence of checks by
//! users of two organisations, costs, time and resets; a cached denial
//! does not reach the store.
//!
//! What may differ: a cached denial repeats the numbers of the limits that
//! did not deny as they stood when it was made (other users of the org may
//! have consumed since), and its `retry_after` is never later than the
//! store's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use ratelimiter::core::{Cost, ManualClock, Timestamp};
use ratelimiter::limiter::{CheckRequest, Key, Reason};

use super::{limiter_of, run, Tested, ALGORITHMS, START};

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const ORGS: [&str; 2] = ["acme", "globex"];

/// A user's limit and their org's, shared by the users who name it.
fn limiter(user: &str, org: &str, limit: u64, window_ms: u64, clock: &Arc<ManualClock>, cache: bool) -> Tested {
    let org_limit = limit * 2;
    let toml = format!(
        "[[rules]]\nendpoint = \"POST /chat\"\nlimits = [\n  {{ name = \"user\", algorithm = \"{user}\", limit = {limit}, window = \"{window_ms}ms\" }},\n  {{ name = \"org\", by = \"org\", algorithm = \"{org}\", limit = {org_limit}, window = \"{window_ms}ms\" }},\n]\n"
    );
    limiter_of(&toml, clock, cache)
}

fn request(user: usize, org: usize, cost: u64) -> CheckRequest {
    let mut request = CheckRequest::new(
        Key::parse(USERS[user].to_owned(), 64).unwrap(),
        Cost::new(cost).unwrap(),
    );
    request.endpoint = Some("POST /chat".to_owned());
    request.scopes = vec![("org".to_owned(), Key::parse(ORGS[org].to_owned(), 64).unwrap())];
    request
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Check { user: usize, org: usize, cost: u64 },
    Reset { user: usize, org: usize, only_user: bool },
}

fn op(limit: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..250).prop_map(Op::Advance),
        12 => (0usize..3, 0usize..2, 1..=limit).prop_map(|(user, org, cost)| Op::Check { user, org, cost }),
        1 => (0usize..3, 0usize..2, any::<bool>()).prop_map(|(user, org, only_user)| Op::Reset { user, org, only_user }),
    ]
}

type Case = (usize, usize, u64, u64, Vec<Op>);

fn case() -> impl Strategy<Value = Case> {
    (
        0usize..ALGORITHMS.len(),
        0usize..ALGORITHMS.len(),
        2u64..5,
        200u64..2_000,
    )
        .prop_flat_map(|(user, org, limit, window)| {
            (
                Just(user),
                Just(org),
                Just(limit),
                Just(window),
                prop::collection::vec(op(limit), 1..120),
            )
        })
}

static HITS: AtomicUsize = AtomicUsize::new(0);
static CASES: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn cached_and_uncached_limiters_admit_alike((user, org, limit, window, ops) in case()) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
        let reference = limiter(ALGORITHMS[user], ALGORITHMS[org], limit, window, &clock, false);
        let cached = limiter(ALGORITHMS[user], ALGORITHMS[org], limit, window, &clock, true);
        run(async {
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                    Op::Check { user, org, cost } => {
                        let request = request(user, org, cost);
                        let want = reference.check(&request).await.unwrap();
                        let got = cached.check(&request).await.unwrap();
                        let (w, g) = (want.decision, got.decision);
                        prop_assert_eq!(w.allowed, g.allowed, "op {}: {:?}", i, op);
                        prop_assert_eq!(want.reason, got.reason, "op {}", i);
                        if w.allowed {
                            // Denials consume nothing, so both stores hold the
                            // same state, and an allowance is the store's.
                            prop_assert_eq!(w, g, "op {}", i);
                            prop_assert_eq!(&want.limit_name, &got.limit_name, "op {}", i);
                        } else {
                            prop_assert!(g.retry_after_us > 0, "op {}", i);
                            prop_assert!(g.retry_after_us <= w.retry_after_us, "op {}: {:?} vs {:?}", i, w, g);
                            prop_assert!(g.remaining < cost, "op {}", i);
                            for (wl, gl) in want.limits.iter().zip(&got.limits) {
                                if !gl.decision.allowed {
                                    prop_assert!(!wl.decision.allowed, "op {}: a cached denial by {} holds", i, gl.name);
                                }
                            }
                        }
                    }
                    Op::Reset { user, org, only_user } => {
                        let request = request(user, org, 1);
                        let only = only_user.then_some("user");
                        reference.reset(&request, only).await.unwrap();
                        cached.reset(&request, only).await.unwrap();
                    }
                }
            }
            Ok(())
        })?;
        HITS.fetch_add(cached.metrics().deny_cache_hits.get() as usize, Ordering::Relaxed);
        let (hits, cases) = (HITS.load(Ordering::Relaxed), CASES.fetch_add(1, Ordering::Relaxed) + 1);
        prop_assert!(cases < 64 || hits >= cases, "{} cache hits in {} cases", hits, cases);
    }
}

#[test]
fn a_cached_denial_of_several_limits_does_not_reach_the_store() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    let limiter = limiter("fixed_window", "token_bucket", 2, 10_000, &clock, true);
    run(async {
        // Alice and Bob take two each: the org's four.
        for user in [0, 0, 1, 1] {
            assert!(limiter.check(&request(user, 0, 1)).await.unwrap().decision.allowed);
        }
        let first = limiter.check(&request(2, 0, 1)).await.unwrap();
        assert_eq!(
            (first.reason, first.limit_name.as_deref()),
            (Reason::Limited, Some("org"))
        );
        let asked = limiter.store().checks.load(Ordering::Relaxed);
        for _ in 0..50 {
            let again = limiter.check(&request(2, 0, 1)).await.unwrap();
            assert_eq!(again.reason, Reason::Limited);
            assert_eq!(again.limits.len(), 2, "every limit answered from the cache");
        }
        assert_eq!(
            limiter.store().checks.load(Ordering::Relaxed),
            asked,
            "answered from the cache"
        );
        assert_eq!(limiter.metrics().deny_cache_hits.get(), 50);
        // Carol in another org is decided by the store, and allowed.
        assert!(limiter.check(&request(2, 1, 1)).await.unwrap().decision.allowed);
        // A reset of the org's counter ends the cached denial.
        limiter.reset(&request(2, 0, 1), None).await.unwrap();
        assert!(limiter.check(&request(2, 0, 1)).await.unwrap().decision.allowed);
    });
}
