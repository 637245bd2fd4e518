//! Reports ([`super::charge`], [`super::report_all`]): a debt is paid back
//! by time exactly, a refund never goes beyond full, and the token bucket
//! and GCRA still agree.

use std::time::Duration;

use super::test_support::{assert_equivalent, c, policy, t, REAL};
use super::*;

fn units(n: i64) -> Units {
    Units::new(n).unwrap()
}

/// The algorithms that take reports.
fn reporting() -> impl Iterator<Item = Algorithm> {
    Algorithm::ALL.into_iter().filter(|a| a.reports())
}

#[test]
fn units_are_never_zero_nor_above_two_to_the_31() {
    assert!(Units::new(0).is_none());
    assert!(Units::new(1 << 31).is_some());
    assert!(Units::new(-(1 << 31)).is_some());
    assert!(Units::new((1 << 31) + 1).is_none());
    assert!(Units::new(-(1 << 31) - 1).is_none());
    assert!(Units::new(i64::MIN).is_none());
    assert!(!Algorithm::SlidingWindowLog.reports());
}

#[test]
fn a_debt_denies_until_time_has_paid_it_back() {
    // 10 per 10 s: one unit back every second. 50 reported: 40 past the
    // limit, so one unit fits again after 41 s.
    for a in [Algorithm::TokenBucket, Algorithm::Gcra] {
        println!("algorithm: {a}");
        let p = policy(a, 10, Duration::from_secs(10));
        let mut s = State::new(a);
        charge(&p, &mut s, t(REAL), units(50));
        let d = check(&p, &mut s.clone(), t(REAL), Cost::ONE);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_us, 41_000_000);
        assert_eq!(d.reset_after_us, 50_000_000);
        assert!(!check(&p, &mut s.clone(), t(REAL + 40_999_999), Cost::ONE).allowed);
        assert!(check(&p, &mut s, t(REAL + 41_000_000), Cost::ONE).allowed);
    }
    // Windows: the debt lasts as long as the count weighs.
    let p = policy(Algorithm::FixedWindow, 10, Duration::from_secs(10));
    let mut s = State::new(Algorithm::FixedWindow);
    charge(&p, &mut s, t(REAL + 2_000_000), units(50));
    let d = check(&p, &mut s.clone(), t(REAL + 2_000_000), Cost::ONE);
    assert_eq!((d.allowed, d.retry_after_us), (false, 8_000_000));
    assert!(check(&p, &mut s, t(REAL + 10_000_000), Cost::ONE).allowed);

    let p = policy(Algorithm::SlidingWindowCounter, 10, Duration::from_secs(10));
    let mut s = State::new(Algorithm::SlidingWindowCounter);
    charge(&p, &mut s, t(REAL), units(50));
    // Next window: 50 weigh ceil(50 × left / 10 s); one unit fits once they
    // weigh 9, when 1.8 s are left: 8.2 s into it.
    let d = check(&p, &mut s.clone(), t(REAL), Cost::ONE);
    assert_eq!((d.allowed, d.retry_after_us), (false, 18_200_000));
    assert!(!check(&p, &mut s.clone(), t(REAL + 18_199_999), Cost::ONE).allowed);
    assert!(check(&p, &mut s, t(REAL + 18_200_000), Cost::ONE).allowed);
}

#[test]
fn a_refund_never_goes_beyond_full() {
    for a in reporting() {
        println!("algorithm: {a}");
        let p = policy(a, 10, Duration::from_secs(10));
        let mut s = State::new(a);
        assert!(check(&p, &mut s, t(REAL), c(3)).allowed);
        charge(&p, &mut s, t(REAL + 1), units(-1_000));
        let d = check(&p, &mut s.clone(), t(REAL + 1), Cost::ONE);
        assert_eq!(d.remaining, 9, "full again, less the probe");
        assert_equivalent(&p, &State::new(a), &s, REAL + 1);
        // Ten, not more, fit at once.
        let admitted = (0..20)
            .filter(|_| check(&p, &mut s, t(REAL + 1), Cost::ONE).allowed)
            .count();
        assert_eq!(admitted, 10);
    }
}

#[test]
fn a_refund_gives_back_what_a_check_took() {
    for a in reporting() {
        println!("algorithm: {a}");
        let p = policy(a, 10, Duration::from_secs(10));
        let mut s = State::new(a);
        assert!(check(&p, &mut s, t(REAL), c(2)).allowed);
        let before = s.clone();
        assert!(check(&p, &mut s, t(REAL + 5), c(6)).allowed);
        charge(&p, &mut s, t(REAL + 5), units(-6));
        assert_equivalent(&p, &before, &s, REAL + 5);
    }
}

#[test]
fn the_token_bucket_and_gcra_agree_on_reports() {
    // Random checks and reports, the same on both, at rising times.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..200 {
        let limit = 1 + next(20);
        let window = Duration::from_millis(100 + next(10_000));
        let tb = policy(Algorithm::TokenBucket, limit, window);
        let gcra = policy(Algorithm::Gcra, limit, window);
        let (mut a, mut b) = (State::new(Algorithm::TokenBucket), State::new(Algorithm::Gcra));
        let mut now = REAL + next(1_000_000);
        for step in 0..40 {
            now += next(window.as_micros() as u64 / 4);
            if next(3) == 0 {
                let n = 1 + next(3 * limit) as i64;
                let n = if next(2) == 0 { n } else { -n };
                charge(&tb, &mut a, t(now), units(n));
                charge(&gcra, &mut b, t(now), units(n));
            }
            let cost = c(1 + next(limit));
            let (x, y) = (check(&tb, &mut a, t(now), cost), check(&gcra, &mut b, t(now), cost));
            assert_eq!(x, y, "round {round}, step {step}");
        }
    }
}

#[test]
fn a_debt_saturates_and_never_overflows() {
    for a in reporting() {
        println!("algorithm: {a}");
        for (limit, window) in [
            (1, Duration::from_millis(1)),
            (100_000, Duration::from_secs(366 * 86_400)),
        ] {
            let p = policy(a, limit, window);
            let mut s = State::new(a);
            for _ in 0..1_000 {
                charge(&p, &mut s, t(REAL), units(1 << 31));
            }
            let d = check(&p, &mut s, t(REAL), Cost::ONE);
            assert!(!d.allowed);
            assert!(d.retry_after_us <= 2 * MAX_DEBT.max(window.as_micros() as u64 * 2));
            charge(&p, &mut s, t(u64::MAX), units(-(1 << 31)));
        }
    }
}

#[test]
fn report_all_charges_every_limit_and_reads_them_as_a_peek() {
    let burst = policy(Algorithm::TokenBucket, 5, Duration::from_secs(1));
    let daily = policy(Algorithm::FixedWindow, 100, Duration::from_secs(86_400));
    let mut states = [State::new(Algorithm::TokenBucket), State::new(Algorithm::FixedWindow)];
    let (a, b) = states.split_at_mut(1);
    let mut limits = [(&burst, &mut a[0]), (&daily, &mut b[0])];
    let (allowed, decisions) = report_all(&mut limits, t(REAL), units(7));
    assert!(!allowed, "the burst owes 2");
    assert!(!decisions[0].allowed);
    assert_eq!(decisions[0].retry_after_us, 600_000);
    assert!(decisions[1].allowed);
    assert_eq!(decisions[1].remaining, 93);
    assert_eq!(decisions[1].retry_after_us, 0);
    let (allowed, decisions) = report_all(&mut limits, t(REAL), units(-7));
    assert!(allowed);
    assert_eq!((decisions[0].remaining, decisions[1].remaining), (5, 100));
}
