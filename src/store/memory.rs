//! The embedded store: per-key state in a sharded concurrent map.
//!
//! Each check locks one shard of the map for the few hundred nanoseconds the
//! algorithm takes, so checks on one key are serialised and checks on
//! different keys mostly run in parallel. An entry remembers when its state
//! becomes equivalent to a fresh key's (`at + reset_after`); [`MemoryStore::sweep`]
//! drops such entries, so memory follows the number of *active* keys, not
//! the number ever seen.
//!
//! A check with several limits ([`MemoryStore::check_all_now`]) reads,
//! decides and writes all of its counters under one critical section: it
//! takes the lock stripes of its counters in ascending order (so two such
//! checks never wait on each other in a cycle), and decides with
//! [`core::check_all`]. Its counters ([`CounterKey`]) are named apart from
//! single-limit counters, so a single-limit check, which takes no stripe,
//! can never touch one of them.

use std::future::{ready, Future};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;

use super::{Applied, CounterKey, LeaseOp, Once, Op, Store, StoreError, StoreKey};
use crate::core::{self, Clock, Consume, Cost, Decision, Policy, State, SystemClock, Timestamp};

/// Lock stripes of the checks with several limits: enough that unrelated
/// checks rarely share one, few enough to cost nothing at rest.
const STRIPES: usize = 256;

struct Entry {
    state: State,
    /// When `state` is fully restored and the entry can be dropped.
    expires_at: Timestamp,
}

/// State in this process's memory.
pub struct MemoryStore<C = SystemClock> {
    clock: C,
    entries: DashMap<String, Entry>,
    /// The ids applied ([`MemoryStore::apply_now`]), each until it expires.
    ids: DashMap<String, Timestamp>,
    /// Held by checks with several limits, one per counter's stripe.
    stripes: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl MemoryStore<SystemClock> {
    pub fn new() -> Self {
        MemoryStore::with_clock(SystemClock)
    }
}

impl Default for MemoryStore<SystemClock> {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl<C: Clock> MemoryStore<C> {
    pub fn with_clock(clock: C) -> Self {
        MemoryStore {
            clock,
            entries: DashMap::new(),
            ids: DashMap::new(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Decides `cost` against every counter at once, all or nothing (see
    /// [`core::check_all`]): every counter consumes it when every one
    /// allows it and `consume` permits, otherwise none changes. Returns
    /// whether every counter allows, and each counter's decision in order.
    /// The counters are distinct (a rule's limits have distinct names).
    pub fn check_all_now(
        &self,
        counters: &[(CounterKey<'_>, &Policy)],
        cost: Cost,
        consume: Consume,
    ) -> (bool, Vec<Decision>) {
        let names: Vec<String> = counters.iter().map(|(key, _)| counter_map_key(*key)).collect();
        let _held = self.hold(&names);
        // Read under the stripes: no other check of these counters runs now.
        let now = self.clock.now();
        let mut states = self.read_states(&names, counters, now);
        let mut limits: Vec<(&Policy, &mut State)> = counters.iter().map(|(_, p)| *p).zip(states.iter_mut()).collect();
        let (allowed, decisions) = core::check_all(&mut limits, now, cost, consume);
        if allowed && consume == Consume::IfAllAllow {
            for ((name, state), decision) in names.into_iter().zip(states).zip(&decisions) {
                self.keep(name, state, decision);
            }
        }
        (allowed, decisions)
    }

    /// A report on every counter, or a check of them, applied at most once
    /// per id (see [`Store::apply`]). It holds the stripes of its counters
    /// and of its id, so that no other call with them runs in between; a
    /// rule's only, unnamed counter is also held by its map entry, as a
    /// single-limit check holds it.
    pub fn apply_now(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        op: Op,
        once: Option<Once<'_>>,
    ) -> Applied {
        let names: Vec<String> = counters.iter().map(|(key, _)| counter_map_key(*key)).collect();
        let id = once.map(|once| {
            let rule = counters.first().map_or("", |(key, _)| key.rule);
            (id_map_key(rule, partition, once.id), once.ttl_us)
        });
        let mut held = names.clone();
        held.extend(id.iter().map(|(name, _)| name.clone()));
        let _held = self.hold(&held);
        let now = self.clock.now();
        let duplicate = id
            .as_ref()
            .is_some_and(|(name, _)| self.ids.get(name).is_some_and(|expires| *expires > now));
        let single = counters.len() == 1 && counters[0].0.limit.is_none();
        let decide = |states: &mut [State]| -> (bool, Vec<Decision>, bool) {
            let mut limits: Vec<(&Policy, &mut State)> =
                counters.iter().map(|(_, p)| *p).zip(states.iter_mut()).collect();
            match op {
                _ if duplicate => {
                    let (allowed, decisions) = core::check_all(&mut limits, now, Cost::ONE, Consume::Never);
                    (allowed, decisions, false)
                }
                Op::Check(cost) => {
                    let (allowed, decisions) = core::check_all(&mut limits, now, cost, Consume::IfAllAllow);
                    (allowed, decisions, allowed)
                }
                Op::Acquire { cost, lease } => {
                    let (allowed, decisions) = core::acquire_all(&mut limits, now, cost, Consume::IfAllAllow, lease);
                    (allowed, decisions, allowed)
                }
                Op::Report(units) => {
                    let (allowed, decisions) = core::report_all(&mut limits, now, units);
                    (allowed, decisions, true)
                }
            }
        };
        let (allowed, decisions, applied) = if single {
            self.decide_single(&names[0], counters[0].1, now, decide)
        } else {
            let mut states = self.read_states(&names, counters, now);
            let (allowed, decisions, applied) = decide(&mut states);
            if applied {
                for ((name, state), decision) in names.into_iter().zip(states).zip(&decisions) {
                    self.keep(name, state, decision);
                }
            }
            (allowed, decisions, applied)
        };
        if let (true, Some((name, ttl_us))) = (applied, id) {
            self.ids.insert(name, now.plus(ttl_us));
        }
        Applied {
            duplicate,
            allowed: allowed || duplicate && !matches!(op, Op::Report(_)),
            decisions,
        }
    }

    /// Releases or renews a lease (see [`Store::lease`]) under the stripes
    /// of its counters; a counter's entry lives until its last lease
    /// expires.
    pub fn lease_now(
        &self,
        counters: &[(CounterKey<'_>, u64)],
        number: u64,
        _units: u64,
        op: LeaseOp,
    ) -> Option<Timestamp> {
        let names: Vec<String> = counters.iter().map(|(key, _)| counter_map_key(*key)).collect();
        let _held = self.hold(&names);
        let now = self.clock.now();
        let holds = |name: &String| {
            self.entries.get(name).is_some_and(|entry| match &entry.state {
                State::Concurrency(s) => s.leases.iter().any(|&(at, n, _)| n == number && at > now),
                _ => false,
            })
        };
        let held: Vec<bool> = names.iter().map(holds).collect();
        if op == LeaseOp::Renew && !held.iter().all(|&h| h) {
            return None;
        }
        let mut expiry: Option<Timestamp> = None;
        for ((name, (_, ttl_us)), held) in names.iter().zip(counters).zip(&held) {
            let Some(mut entry) = self.entries.get_mut(name) else {
                continue;
            };
            let State::Concurrency(state) = &mut entry.state else {
                continue;
            };
            match op {
                LeaseOp::Release => {
                    core::concurrency::release(state, now, number);
                }
                LeaseOp::Renew if *held => {
                    state.leases.retain(|&(at, _, _)| at > now);
                    if let Some(lease) = state.leases.iter_mut().find(|(_, n, _)| *n == number) {
                        lease.0 = now.plus(*ttl_us);
                        expiry = Some(expiry.map_or(lease.0, |e| e.min(lease.0)));
                    }
                }
                LeaseOp::Renew => {}
            }
            match core::concurrency::last_expiry(state) {
                Some(last) => entry.expires_at = last,
                None => {
                    drop(entry);
                    self.entries.remove(name);
                }
            }
        }
        match op {
            LeaseOp::Release => held.iter().any(|&h| h).then_some(now),
            LeaseOp::Renew => expiry,
        }
    }

    /// Runs `decide` on the state of one single-limit counter under its map
    /// entry, keeping the state it leaves when it says so.
    fn decide_single(
        &self,
        name: &str,
        policy: &Policy,
        now: Timestamp,
        decide: impl FnOnce(&mut [State]) -> (bool, Vec<Decision>, bool),
    ) -> (bool, Vec<Decision>, bool) {
        match self.entries.entry(name.to_owned()) {
            MapEntry::Occupied(mut occupied) => {
                let mut states = [match occupied.get().expires_at > now {
                    true => occupied.get().state.clone(),
                    false => State::new(policy.algorithm()),
                }];
                let outcome = decide(&mut states);
                if outcome.2 {
                    let [state] = states;
                    match outcome.1[0].reset_after_us {
                        0 => {
                            occupied.remove();
                        }
                        reset => {
                            let entry = occupied.get_mut();
                            entry.state = state;
                            entry.expires_at = outcome.1[0].at.plus(reset);
                        }
                    }
                }
                outcome
            }
            MapEntry::Vacant(vacant) => {
                let mut states = [State::new(policy.algorithm())];
                let outcome = decide(&mut states);
                if outcome.2 && outcome.1[0].reset_after_us > 0 {
                    let [state] = states;
                    let expires_at = outcome.1[0].at.plus(outcome.1[0].reset_after_us);
                    vacant.insert(Entry { state, expires_at });
                }
                outcome
            }
        }
    }

    /// The state of each counter named `names` at `now` (a fresh one for a
    /// counter never seen or fully restored); the caller holds their
    /// stripes.
    fn read_states(&self, names: &[String], counters: &[(CounterKey<'_>, &Policy)], now: Timestamp) -> Vec<State> {
        names
            .iter()
            .zip(counters)
            .map(|(name, (_, policy))| match self.entries.get(name) {
                Some(entry) if entry.expires_at > now => entry.state.clone(),
                _ => State::new(policy.algorithm()),
            })
            .collect()
    }

    /// Keeps `state` under `name` until it is fully restored, or drops it
    /// when it already is.
    fn keep(&self, name: String, state: State, decision: &Decision) {
        if decision.reset_after_us == 0 {
            self.entries.remove(&name);
        } else {
            let expires_at = decision.at.plus(decision.reset_after_us);
            self.entries.insert(name, Entry { state, expires_at });
        }
    }

    /// Forgets every counter's state under their stripes, so no check of
    /// several limits sees some of them reset and others not.
    pub fn reset_all_now(&self, counters: &[CounterKey<'_>]) {
        let names: Vec<String> = counters.iter().map(|key| counter_map_key(*key)).collect();
        let _held = self.hold(&names);
        for name in &names {
            self.entries.remove(name);
        }
    }

    /// The stripes of `names`, taken in ascending order.
    fn hold(&self, names: &[String]) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = names.iter().map(|name| self.stripe(name)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes
            .iter()
            .map(|&i| self.stripes[i].lock().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }

    fn stripe(&self, name: &str) -> usize {
        usize::try_from(self.hasher.hash_one(name) % STRIPES as u64).unwrap_or(0)
    }

    /// Decides synchronously; [`Store::check`] wraps this.
    ///
    /// A state that is fully restored after the check (`reset_after` 0) is
    /// not kept, exactly as the Redis scripts delete such keys: a denied
    /// check on a new key stores nothing.
    pub fn check_now(&self, key: StoreKey<'_>, policy: &Policy, cost: Cost) -> Decision {
        let now = self.clock.now();
        match self.entries.entry(map_key(key)) {
            MapEntry::Occupied(mut occupied) => {
                let entry = occupied.get_mut();
                if entry.expires_at <= now {
                    // Fully restored: start afresh, which also frees a long log.
                    entry.state = State::new(policy.algorithm());
                }
                let decision = core::check(policy, &mut entry.state, now, cost);
                if decision.reset_after_us == 0 {
                    occupied.remove();
                } else {
                    entry.expires_at = decision.at.plus(decision.reset_after_us);
                }
                decision
            }
            MapEntry::Vacant(vacant) => {
                let mut state = State::new(policy.algorithm());
                let decision = core::check(policy, &mut state, now, cost);
                if decision.reset_after_us > 0 {
                    vacant.insert(Entry {
                        state,
                        expires_at: decision.at.plus(decision.reset_after_us),
                    });
                }
                decision
            }
        }
    }

    /// Drops every entry whose state is fully restored; returns how many.
    ///
    /// When most of the table is then empty (a flood of keys has passed),
    /// it is shrunk too: a hash table otherwise keeps its peak capacity.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let before = self.entries.len();
        self.entries.retain(|_, entry| entry.expires_at > now);
        self.ids.retain(|_, expires| *expires > now);
        if self.entries.capacity() > 4096 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
        before.saturating_sub(self.entries.len())
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Rule names are printable ASCII, so a NUL cannot occur in one and
/// `rule NUL key` is unambiguous whatever the key holds.
fn map_key(key: StoreKey<'_>) -> String {
    let mut s = String::with_capacity(key.rule.len() + 1 + key.key.len());
    s.push_str(key.rule);
    s.push('\0');
    s.push_str(key.key);
    s
}

/// An id applied by [`MemoryStore::apply_now`]: `STX rule NUL partition
/// NUL id`, apart from every counter's name (and held in the ids' map).
fn id_map_key(rule: &str, partition: &str, id: &str) -> String {
    let mut s = String::with_capacity(3 + rule.len() + partition.len() + id.len());
    s.push('\u{2}');
    s.push_str(rule);
    s.push('\0');
    s.push_str(partition);
    s.push('\0');
    s.push_str(id);
    s
}

/// A counter of a named limit: `SOH rule NUL limit NUL value`. No
/// single-limit counter starts with SOH (rule names are printable ASCII),
/// and neither a rule nor a limit name holds a NUL, so the name is
/// unambiguous whatever the value holds. An unnamed limit's counter is the
/// single-limit counter of its rule and value.
fn counter_map_key(key: CounterKey<'_>) -> String {
    let Some(limit) = key.limit else {
        return map_key(StoreKey {
            rule: key.rule,
            key: key.value,
        });
    };
    let mut s = String::with_capacity(3 + key.rule.len() + limit.len() + key.value.len());
    s.push('\u{1}');
    s.push_str(key.rule);
    s.push('\0');
    s.push_str(limit);
    s.push('\0');
    s.push_str(key.value);
    s
}

impl<C: Clock> Store for MemoryStore<C> {
    fn check(
        &self,
        key: StoreKey<'_>,
        policy: &Policy,
        cost: Cost,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        ready(Ok(self.check_now(key, policy, cost)))
    }

    fn reset(&self, key: StoreKey<'_>) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.entries.remove(&map_key(key));
        ready(Ok(()))
    }

    fn reset_all(
        &self,
        _partition: &str,
        counters: &[CounterKey<'_>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.reset_all_now(counters);
        ready(Ok(()))
    }

    fn apply(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        op: Op,
        once: Option<Once<'_>>,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send {
        ready(Ok(self.apply_now(partition, counters, op, once)))
    }

    fn lease(
        &self,
        _partition: &str,
        counters: &[(CounterKey<'_>, u64)],
        number: u64,
        units: u64,
        op: LeaseOp,
    ) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        ready(Ok(self.lease_now(counters, number, units, op)))
    }

    fn check_all(
        &self,
        _partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        cost: Cost,
        consume: Consume,
    ) -> impl Future<Output = Result<(bool, Vec<Decision>), StoreError>> + Send {
        ready(Ok(self.check_all_now(counters, cost, consume)))
    }

    fn sweep(&self) -> usize {
        MemoryStore::sweep(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::core::{Algorithm, ManualClock};

    fn store() -> (Arc<ManualClock>, MemoryStore<Arc<ManualClock>>) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000)));
        (clock.clone(), MemoryStore::with_clock(clock))
    }

    fn key<'a>(rule: &'a str, key: &'a str) -> StoreKey<'a> {
        StoreKey { rule, key }
    }

    #[test]
    fn keys_and_rules_are_isolated() {
        let (_, store) = store();
        let policy = Policy::new(Algorithm::FixedWindow, 2, Duration::from_secs(60)).unwrap();
        for _ in 0..2 {
            assert!(store.check_now(key("r", "a"), &policy, Cost::ONE).allowed);
        }
        assert!(!store.check_now(key("r", "a"), &policy, Cost::ONE).allowed);
        assert!(store.check_now(key("r", "b"), &policy, Cost::ONE).allowed);
        assert!(store.check_now(key("s", "a"), &policy, Cost::ONE).allowed);
        // "r\0a" must not be confused with rule "r", key "\0a" or similar.
        assert!(store.check_now(key("r", "\0a"), &policy, Cost::ONE).allowed);
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn sweep_drops_only_restored_keys() {
        let (clock, store) = store();
        let short = Policy::new(Algorithm::TokenBucket, 10, Duration::from_secs(1)).unwrap();
        let long = Policy::new(Algorithm::TokenBucket, 10, Duration::from_secs(100)).unwrap();
        store.check_now(key("r", "short"), &short, Cost::ONE);
        store.check_now(key("r", "long"), &long, Cost::ONE);
        assert_eq!(store.sweep(), 0);
        clock.advance(Duration::from_secs(2));
        assert_eq!(store.sweep(), 1);
        assert_eq!(store.len(), 1);
        clock.advance(Duration::from_secs(100));
        assert_eq!(store.sweep(), 1);
        assert!(store.is_empty());
    }

    #[test]
    fn restored_or_untouched_states_are_not_kept() {
        let (_, store) = store();
        let policy = Policy::new(Algorithm::Gcra, 2, Duration::from_secs(60)).unwrap();
        let d = store.check_now(key("r", "new"), &policy, Cost::new(3).unwrap());
        assert!(!d.allowed);
        assert!(store.is_empty(), "a denied check on a new key stores nothing");
        store.check_now(key("r", "k"), &policy, Cost::ONE);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_changed_algorithm_starts_a_fresh_state() {
        let (_, store) = store();
        let fixed = Policy::new(Algorithm::FixedWindow, 1, Duration::from_secs(60)).unwrap();
        let gcra = Policy::new(Algorithm::Gcra, 1, Duration::from_secs(60)).unwrap();
        assert!(store.check_now(key("r", "k"), &fixed, Cost::ONE).allowed);
        assert!(!store.check_now(key("r", "k"), &fixed, Cost::ONE).allowed);
        assert!(store.check_now(key("r", "k"), &gcra, Cost::ONE).allowed);
    }

    #[test]
    fn concurrent_checks_on_one_key_admit_exactly_the_limit() {
        let store = Arc::new(MemoryStore::new());
        let policy = Policy::new(Algorithm::SlidingWindowLog, 100, Duration::from_secs(3600)).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|_| store.check_now(key("r", "hot"), &policy, Cost::ONE).allowed)
                        .count()
                })
            })
            .collect();
        let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(allowed, 100);
    }

    /// `user 100/h` + `org 300/h`, four users of one org, eight threads
    /// sending 200 checks each: the org admits exactly 300, no user more
    /// than 100, and every counter consumed exactly what was admitted.
    #[test]
    fn several_limits_are_all_or_nothing_under_concurrency() {
        for (user_algorithm, org_algorithm) in [
            (Algorithm::FixedWindow, Algorithm::TokenBucket),
            (Algorithm::Gcra, Algorithm::SlidingWindowLog),
        ] {
            let (_clock, store) = store();
            let user = Policy::new(user_algorithm, 100, Duration::from_secs(3600)).unwrap();
            let org = Policy::new(org_algorithm, 300, Duration::from_secs(3600)).unwrap();
            let store = Arc::new(store);
            let admitted: Vec<u64> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|thread| {
                        let store = store.clone();
                        scope.spawn(move || {
                            let name = format!("user-{}", thread % 4);
                            let counters = [
                                (
                                    CounterKey {
                                        rule: "r",
                                        limit: Some("user"),
                                        value: &name,
                                    },
                                    &user,
                                ),
                                (
                                    CounterKey {
                                        rule: "r",
                                        limit: Some("org"),
                                        value: "acme",
                                    },
                                    &org,
                                ),
                            ];
                            (0..200)
                                .filter(|_| store.check_all_now(&counters, Cost::ONE, Consume::IfAllAllow).0)
                                .count() as u64
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let per_user: Vec<u64> = (0..4).map(|u| admitted[u] + admitted[u + 4]).collect();
            assert_eq!(per_user.iter().sum::<u64>(), 300, "{per_user:?}");
            assert!(per_user.iter().all(|&n| n <= 100), "{per_user:?}");
            // What each counter holds: peeks consume nothing.
            let peek = |limit: &str, value: &str, policy: &Policy| {
                let counters = [(
                    CounterKey {
                        rule: "r",
                        limit: Some(limit),
                        value,
                    },
                    policy,
                )];
                store.check_all_now(&counters, Cost::ONE, Consume::Never).1[0].remaining
            };
            assert_eq!(peek("org", "acme", &org), 0);
            for (u, n) in per_user.iter().enumerate() {
                assert_eq!(peek("user", &format!("user-{u}"), &user), 100 - n);
            }
        }
    }

    #[test]
    fn counters_of_several_limits_are_named_apart_from_single_keys() {
        let (_clock, store) = store();
        let p = Policy::new(Algorithm::FixedWindow, 1, Duration::from_secs(60)).unwrap();
        // A single-limit key made to look like a counter's name.
        assert!(store.check_now(key("r", "user\0k"), &p, Cost::ONE).allowed);
        let counters = [(
            CounterKey {
                rule: "r",
                limit: Some("user"),
                value: "k",
            },
            &p,
        )];
        assert!(store.check_all_now(&counters, Cost::ONE, Consume::IfAllAllow).0);
        assert!(!store.check_all_now(&counters, Cost::ONE, Consume::IfAllAllow).0);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_peek_of_an_unnamed_limit_reads_what_single_checks_consumed() {
        let (_clock, store) = store();
        let p = Policy::new(Algorithm::TokenBucket, 5, Duration::from_secs(60)).unwrap();
        for _ in 0..3 {
            assert!(store.check_now(key("r", "k"), &p, Cost::ONE).allowed);
        }
        let counters = [(CounterKey::single(key("r", "k")), &p)];
        let (allowed, decisions) = store.check_all_now(&counters, Cost::ONE, Consume::Never);
        assert!(allowed);
        assert_eq!(decisions[0].remaining, 2);
        assert_eq!(
            store.check_now(key("r", "k"), &p, Cost::ONE).remaining,
            1,
            "the peek consumed nothing"
        );
    }
}
