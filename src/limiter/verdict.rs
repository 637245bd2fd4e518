//! What a check answers: the [`Verdict`] and the [`Reason`] it was decided
//! for, or the [`LimiterError`] that kept it from being decided.

use std::sync::Arc;

use super::overrides::PolicySource;
use super::rules::{By, UnknownTier};
use super::stats::Outcome;
use crate::core::{Decision, Policy};
use crate::store::StoreError;

/// Why a check was decided the way it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Allowed,
    Limited,
    Allowlisted,
    Blocked,
    /// The store failed; the failure mode `open` allowed.
    FailOpen,
    /// The store failed; the failure mode `closed` denied.
    FailClosed,
    /// The store failed; this replica's local store allowed.
    LocalAllowed,
    /// The store failed; this replica's local store denied.
    LocalLimited,
    /// A peek (`"cost": 0`): evaluated, nothing consumed; `allowed` says
    /// whether a cost-1 check would be allowed now.
    Peek,
    /// Over the limit of a shadow rule: allowed all the same, nothing
    /// consumed (the decision's numbers are the limit's).
    ShadowLimited,
    /// A report charged its units (`POST /report`); the numbers are a
    /// peek's afterwards.
    Reported,
    /// A report gave units back.
    Refunded,
}

impl Reason {
    /// The reason of a decision the store made.
    pub fn stored(allowed: bool) -> Reason {
        if allowed {
            Reason::Allowed
        } else {
            Reason::Limited
        }
    }

    /// The `reason` of the `/check` response.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FailClosed => "store_unavailable",
            other => other.decision(),
        }
    }

    /// The `decision` label of the request metric.
    pub fn decision(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::Limited => "limited",
            Reason::Allowlisted => "allowlisted",
            Reason::Blocked => "blocked",
            Reason::FailOpen => "fail_open",
            Reason::FailClosed => "fail_closed",
            Reason::LocalAllowed => "local_allowed",
            Reason::LocalLimited => "local_limited",
            Reason::Peek => "peek",
            Reason::ShadowLimited => "shadow_limited",
            Reason::Reported => "reported",
            Reason::Refunded => "refunded",
        }
    }

    /// Whether the store's failure decided this check.
    pub fn degraded(self) -> bool {
        matches!(
            self,
            Reason::FailOpen | Reason::FailClosed | Reason::LocalAllowed | Reason::LocalLimited
        )
    }

    /// The reason a shadow rule answers instead: whatever would deny by
    /// the limit (or by the failure mode) is allowed as `ShadowLimited`.
    pub fn shadowed(self) -> Reason {
        match self {
            Reason::Limited | Reason::LocalLimited | Reason::FailClosed => Reason::ShadowLimited,
            other => other,
        }
    }

    /// How the stats count it (failure-mode answers are not counted there).
    pub(super) fn outcome(self) -> Option<Outcome> {
        match self {
            Reason::Allowed | Reason::LocalAllowed => Some(Outcome::Allowed),
            Reason::Limited | Reason::LocalLimited => Some(Outcome::Limited),
            Reason::Allowlisted => Some(Outcome::Allowlisted),
            Reason::Blocked => Some(Outcome::Blocked),
            Reason::ShadowLimited => Some(Outcome::ShadowLimited),
            Reason::FailOpen | Reason::FailClosed | Reason::Peek | Reason::Reported | Reason::Refunded => None,
        }
    }
}

/// A decision with what it was decided under.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub rule: Arc<str>,
    pub tier: Arc<str>,
    pub policy: Policy,
    pub decision: Decision,
    pub reason: Reason,
    pub source: PolicySource,
    /// Set when the store failed: what it said.
    pub store_error: Option<String>,
    /// Each limit of a rule with several, in configuration order (empty
    /// for a rule of one limit); `decision` and `policy` are then those of
    /// the binding limit, named by `limit_name`.
    pub limits: Vec<LimitOutcome>,
    pub limit_name: Option<Arc<str>>,
    /// A report or check whose id was already applied: nothing changed.
    pub duplicate: bool,
    /// The lease an allowed check of a `concurrency` limit holds.
    pub lease: Option<Lease>,
}

/// A lease an allowed check holds, until released or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The opaque token to release or renew it with.
    pub token: String,
    /// Microseconds until it expires (the shortest lifetime of the limits
    /// that hold it).
    pub expires_in_us: u64,
}

/// One limit's part in a check of several.
#[derive(Debug, Clone)]
pub struct LimitOutcome {
    pub name: Arc<str>,
    pub by: By,
    pub policy: Policy,
    pub decision: Decision,
}

/// Which limit a check of several is answered by: when allowed, the one
/// with the fewest `remaining`; when denied, the denying one with the
/// longest `retry_after` (the first in configuration order on a tie).
pub fn binding(limits: &[LimitOutcome], allowed: bool) -> usize {
    let mut best = 0;
    for (i, limit) in limits.iter().enumerate() {
        let current = &limits[best].decision;
        let better = if allowed {
            limit.decision.remaining < current.remaining
        } else {
            !limit.decision.allowed && (current.allowed || limit.decision.retry_after_us > current.retry_after_us)
        };
        if better {
            best = i;
        }
    }
    best
}

impl Verdict {
    /// Whether the caller may proceed: the decision's, except that a shadow
    /// rule lets through what its limit would deny.
    pub fn allowed(&self) -> bool {
        self.decision.allowed || self.reason == Reason::ShadowLimited
    }
}

/// Why the limiter could not decide.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error(transparent)]
    UnknownTier(#[from] UnknownTier),
    #[error("cost {cost} exceeds the limit {limit} of rule {rule:?}, tier {tier:?}: it could never be allowed")]
    CostAboveLimit {
        cost: u64,
        limit: u64,
        rule: Arc<str>,
        tier: Arc<str>,
    },
    #[error("rule {rule:?} counts per scope {scope:?}: the request must name it in scopes")]
    MissingScope { scope: Arc<str>, rule: Arc<str> },
    #[error("rule {rule:?} has no limit named {name:?}; its limits are {known}")]
    UnknownLimit {
        name: String,
        rule: Arc<str>,
        known: String,
    },
    #[error("cost: rule {rule:?} has a {algorithm} limit, which takes no reports (it keeps an entry per admitted cost; see the README)")]
    ReportUnsupported { algorithm: &'static str, rule: Arc<str> },
    #[error("lease is not a lease token this service issued")]
    BadLease,
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
}
