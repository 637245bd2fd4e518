//! Log events of checks that were not simply allowed, sampled: a key
//! flooding past its limit must not flood the log too.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::limiter::hashing::fingerprint;
use crate::limiter::{CheckRequest, Reason, Verdict};

/// Logs a check that was not simply allowed, sampled.
pub(super) fn note_denial(sampler: &LogSampler, request: &CheckRequest, verdict: &Verdict) {
    let quiet = match verdict.reason {
        Reason::Allowed | Reason::Allowlisted => true,
        Reason::Peek => verdict.store_error.is_none(),
        _ => false,
    };
    if !quiet {
        if let Some(suppressed) = sampler.admit() {
            let decision = verdict.reason.decision();
            let retry_after_ms = verdict.decision.retry_after_us.div_ceil(1000);
            // A fingerprint, unless `log.keys = "raw"`: keys are often secrets.
            let key = match sampler.raw_keys {
                true => request.key.as_str().to_owned(),
                false => fingerprint(request.key.as_str()),
            };
            let (rule, tier, key) = (&*verdict.rule, &*verdict.tier, key.as_str());
            match &verdict.store_error {
                Some(error) => tracing::warn!(
                    decision,
                    rule,
                    tier,
                    key,
                    error,
                    suppressed,
                    "check decided by the failure mode"
                ),
                None if verdict.reason == Reason::ShadowLimited => tracing::info!(
                    decision,
                    rule,
                    tier,
                    key,
                    retry_after_ms,
                    suppressed,
                    "check over a shadow limit, allowed"
                ),
                None => tracing::info!(decision, rule, tier, key, retry_after_ms, suppressed, "check denied"),
            }
        }
    }
}

/// At most `per_second` log events per second; reports how many were
/// suppressed since the last one let through. Lock-free: a key flooding
/// past its limit asks on every denial, from every worker thread.
pub struct LogSampler {
    per_second: u64,
    /// Log keys as sent rather than as fingerprints (`log.keys = "raw"`).
    raw_keys: bool,
    /// The current second (high bits) and the events let through in it
    /// (low [`COUNT_BITS`] bits).
    window: AtomicU64,
    suppressed: AtomicU64,
}

const COUNT_BITS: u32 = 20;

impl LogSampler {
    pub fn new(per_second: u64) -> LogSampler {
        LogSampler {
            per_second: per_second.min((1 << COUNT_BITS) - 1),
            raw_keys: false,
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs keys as sent (`log.keys = "raw"`) instead of fingerprints.
    pub fn with_raw_keys(mut self, raw: bool) -> LogSampler {
        self.raw_keys = raw;
        self
    }

    /// `Some(suppressed)` when this event may be logged.
    pub fn admit(&self) -> Option<u64> {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let next = if current >> COUNT_BITS != second {
                (second << COUNT_BITS) | 1
            } else if current & ((1 << COUNT_BITS) - 1) < self.per_second {
                current + 1
            } else {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            match self
                .window
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::LogSampler;

    fn second() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    #[test]
    fn at_most_per_second_then_the_count_of_the_rest() {
        let sampler = LogSampler::new(3);
        let start = second();
        let admitted: Vec<Option<u64>> = (0..10).map(|_| sampler.admit()).collect();
        let seconds = second() - start + 1;
        let through = admitted.iter().filter(|a| a.is_some()).count() as u64;
        let reported: u64 = admitted.iter().flatten().sum();
        let pending = sampler.suppressed.load(Ordering::Relaxed);
        assert!(through >= 3 && through <= 3 * seconds, "{admitted:?} in {seconds} s");
        assert_eq!(through + reported + pending, 10, "every event let through or counted");
    }

    #[test]
    fn threads_share_the_budget() {
        let sampler = std::sync::Arc::new(LogSampler::new(5));
        let start = second();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let sampler = sampler.clone();
                std::thread::spawn(move || (0..1000).filter(|_| sampler.admit().is_some()).count() as u64)
            })
            .collect();
        let through: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let seconds = second() - start + 1;
        assert!(
            through >= 5 && through <= 5 * seconds,
            "{through} let through in {seconds} s"
        );
    }
}
