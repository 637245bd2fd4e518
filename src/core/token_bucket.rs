// TEMPORARY STUB
use super::{Cost, Decision, Quota, Timestamp};
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub n: u64,
}
pub fn check(state: &mut State, quota: &Quota, now: Timestamp, cost: Cost) -> Decision {
    let allowed = state.n + cost.get() <= quota.limit();
    if allowed {
        state.n += cost.get();
    }
    Decision {
        allowed,
        limit: quota.limit(),
        remaining: quota.limit() - state.n,
        reset_after_us: 1000,
        retry_after_us: if allowed { 0 } else { 1000 },
        at: now,
    }
}
