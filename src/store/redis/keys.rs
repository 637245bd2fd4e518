//! The Redis key layout, and nothing else: every key the service writes,
//! and the channel it publishes on, is named here.
//!
//! ```text
//! <prefix>:{<rule>:<key>}:<algorithm>          the state (a hash)
//! <prefix>:{<rule>:<key>}:swl:log              sliding_window_log's entries (a list)
//! <prefix>:{<rule>:<key>}:cc                   concurrency's leases (a sorted set)
//! <prefix>:{<rule>:<partition>}:<limit>:<value>:<algorithm>
//!                                              a counter of a rule with several limits
//! <prefix>:{<rule>:<partition>}:id:<id>       an id applied by a report or a check (a string)
//! <prefix>:{admin}:overrides                   operators' overrides (a hash: id → JSON)
//! <prefix>:{admin}:allow, <prefix>:{admin}:block   the lists (hashes: entry → JSON)
//! <prefix>:admin:changed                       pub/sub channel; any message means "re-read"
//! ```
//!
//! Every counter of one check with several limits has the same tag, the
//! rule and the check's partition (the value every counter of the check
//! shares, see the limiter), so the check is one script on one node; inside
//! the tag the partition is escaped as a key is. After the tag, the limit's
//! name and the counted value are escaped with `:` too, so a counter's name
//! has three or four `:`-separated parts after its tag and a single key's
//! one or two: the two kinds never share a name.
//!
//! The `{admin}` hash tag keeps the three admin hashes in one cluster slot.
//! No state key can take it: a state key's tag always holds an unescaped
//! `:` between the rule and the key, and `admin` has none.
//!
//! The part in braces is a Redis Cluster hash tag: every key one check
//! touches hashes to the same slot, so a check is one script on one node.
//! Inside the tag, `%`, `{` and `}` are percent-encoded in both the rule and
//! the key, and `:` in the rule too. So no caller-chosen key can end the tag
//! early (and move to another slot) or make two different (rule, key) pairs
//! produce the same name: the first unencoded `:` in the tag always ends the
//! rule. The algorithm is part of the name, so a rule whose algorithm changes
//! never reads a state written by another algorithm.

use crate::core::Algorithm;
use crate::store::records::ListKind;
use crate::store::{CounterKey, StoreKey};

/// The longest key prefix, in bytes.
pub const MAX_PREFIX_BYTES: usize = 64;

/// Why a key prefix is not acceptable.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_BYTES {
        return Err(format!("must be 1 to {MAX_PREFIX_BYTES} bytes"));
    }
    if !prefix.bytes().all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}') {
        return Err("must be printable ASCII without spaces, '{' or '}' (it precedes the hash tag)".into());
    }
    Ok(())
}

/// Builds key names under one prefix.
#[derive(Debug, Clone)]
pub struct KeyLayout {
    prefix: String,
}

/// The Redis keys of one check: the state, and for the log its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateKeys {
    One(String),
    Two(String, String),
}

impl StateKeys {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StateKeys::One(a) => vec![a.clone()],
            StateKeys::Two(a, b) => vec![a.clone(), b.clone()],
        }
    }
}

impl KeyLayout {
    /// `prefix` must pass [`check_prefix`] (settings validation does this).
    pub fn new(prefix: &str) -> KeyLayout {
        KeyLayout {
            prefix: prefix.to_owned(),
        }
    }

    /// The keys `key` under `algorithm` uses.
    pub fn state_keys(&self, key: StoreKey<'_>, algorithm: Algorithm) -> StateKeys {
        let mut base = String::with_capacity(self.prefix.len() + key.rule.len() + key.key.len() + 16);
        base.push_str(&self.prefix);
        base.push_str(":{");
        escape_into(&mut base, key.rule, true);
        base.push(':');
        escape_into(&mut base, key.key, false);
        base.push_str("}:");
        with_suffix(base, algorithm)
    }
}

impl KeyLayout {
    /// The keys of one counter of a check with several limits, in the slot
    /// of `partition` under the counter's rule; an unnamed limit's counter
    /// is the single key of its rule and value, in its own slot.
    pub fn counter_keys(&self, partition: &str, key: CounterKey<'_>, algorithm: Algorithm) -> StateKeys {
        let Some(limit) = key.limit else {
            let single = StoreKey {
                rule: key.rule,
                key: key.value,
            };
            return self.state_keys(single, algorithm);
        };
        let mut base = String::with_capacity(
            self.prefix.len() + key.rule.len() + partition.len() + limit.len() + key.value.len() + 16,
        );
        base.push_str(&self.prefix);
        base.push_str(":{");
        escape_into(&mut base, key.rule, true);
        base.push(':');
        escape_into(&mut base, partition, false);
        base.push_str("}:");
        escape_into(&mut base, limit, true);
        base.push(':');
        escape_into(&mut base, key.value, true);
        base.push(':');
        with_suffix(base, algorithm)
    }

    /// The record of an id applied by a report or a check of `rule`, in
    /// the slot of `partition` (the key of a single-limit rule): `id`
    /// after its tag, escaped with `:`, so it has two parts, the first
    /// `id`, which no state's name has.
    pub fn id_key(&self, rule: &str, partition: &str, id: &str) -> String {
        let mut name = String::with_capacity(self.prefix.len() + rule.len() + partition.len() + id.len() + 16);
        name.push_str(&self.prefix);
        name.push_str(":{");
        escape_into(&mut name, rule, true);
        name.push(':');
        escape_into(&mut name, partition, false);
        name.push_str("}:id:");
        escape_into(&mut name, id, true);
        name
    }

    /// The cluster slot of every key tagged with `rule` and `value` (a
    /// single check's key, or a check's partition).
    pub fn slot(&self, rule: &str, value: &str) -> u16 {
        let mut tag = String::with_capacity(rule.len() + value.len() + 8);
        tag.push('{');
        escape_into(&mut tag, rule, true);
        tag.push(':');
        escape_into(&mut tag, value, false);
        tag.push('}');
        fred::util::redis_keyslot(tag.as_bytes())
    }

    /// The hash of the operators' overrides.
    pub fn overrides(&self) -> String {
        format!("{}:{{admin}}:overrides", self.prefix)
    }

    /// The hash of one list's entries.
    pub fn list(&self, kind: ListKind) -> String {
        format!("{}:{{admin}}:{}", self.prefix, kind.as_str())
    }

    /// The channel every admin change (and key reset) is announced on.
    pub fn changes_channel(&self) -> String {
        format!("{}:admin:changed", self.prefix)
    }
}

/// `base` and the algorithm's suffix: the state's name, and for the log
/// its entries' too.
fn with_suffix(mut base: String, algorithm: Algorithm) -> StateKeys {
    base.push_str(suffix(algorithm));
    match algorithm {
        Algorithm::SlidingWindowLog => {
            let log = format!("{base}:log");
            StateKeys::Two(base, log)
        }
        _ => StateKeys::One(base),
    }
}

fn suffix(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::TokenBucket => "tb",
        Algorithm::Gcra => "gcra",
        Algorithm::FixedWindow => "fw",
        Algorithm::SlidingWindowCounter => "swc",
        Algorithm::SlidingWindowLog => "swl",
        Algorithm::Concurrency => "cc",
    }
}

fn escape_into(out: &mut String, s: &str, escape_colon: bool) {
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' if escape_colon => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}

/// The hash tag of a key name: what Redis Cluster hashes to pick the slot.
pub fn hash_tag(name: &str) -> &str {
    if let Some(open) = name.find('{') {
        if let Some(len) = name[open + 1..].find('}') {
            if len > 0 {
                return &name[open + 1..open + 1 + len];
            }
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn keys(rule: &str, key: &str, algorithm: Algorithm) -> Vec<String> {
        KeyLayout::new("rl")
            .state_keys(StoreKey { rule, key }, algorithm)
            .to_vec()
    }

    #[test]
    fn layout_is_prefix_tag_algorithm() {
        assert_eq!(
            keys("GET /a", "user:1", Algorithm::TokenBucket),
            ["rl:{GET /a:user:1}:tb"]
        );
        assert_eq!(
            keys("GET /a", "user:1", Algorithm::SlidingWindowLog),
            ["rl:{GET /a:user:1}:swl", "rl:{GET /a:user:1}:swl:log"]
        );
        assert_eq!(keys("r:x", "k", Algorithm::Gcra), ["rl:{r%3Ax:k}:gcra"]);
    }

    #[test]
    fn the_slot_of_a_tag_is_the_slot_of_its_keys() {
        let layout = KeyLayout::new("rl");
        for (rule, value) in [("default", "user:1"), ("POST /a{b}", "k}e{y"), ("r", "")] {
            let single = layout.state_keys(StoreKey { rule, key: value }, Algorithm::SlidingWindowLog);
            let counter = CounterKey {
                rule,
                limit: Some("org"),
                value: "acme",
            };
            let named = layout.counter_keys(value, counter, Algorithm::TokenBucket);
            for name in single.to_vec().into_iter().chain(named.to_vec()) {
                assert_eq!(
                    fred::util::redis_keyslot(name.as_bytes()),
                    layout.slot(rule, value),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn counters_of_one_partition_share_a_slot_and_no_name_with_single_keys() {
        let layout = KeyLayout::new("rl");
        let counter = |partition: &str, limit: &str, value: &str, algorithm| {
            let key = CounterKey {
                rule: "POST /chat",
                limit: Some(limit),
                value,
            };
            layout.counter_keys(partition, key, algorithm).to_vec()
        };
        assert_eq!(
            counter("acme", "user", "u:1", Algorithm::TokenBucket),
            ["rl:{POST /chat:acme}:user:u%3A1:tb"]
        );
        assert_eq!(
            counter("acme", "org", "acme", Algorithm::SlidingWindowLog),
            [
                "rl:{POST /chat:acme}:org:acme:swl",
                "rl:{POST /chat:acme}:org:acme:swl:log"
            ]
        );
        let tag = hash_tag(&counter("acme", "user", "u:1", Algorithm::Gcra)[0]).to_owned();
        for (limit, value) in [("org", "acme"), ("daily", "}{:"), ("x:y", "%")] {
            for algorithm in Algorithm::EVERY {
                for name in counter("acme", limit, value, algorithm) {
                    assert_eq!(hash_tag(&name), tag, "{name}");
                    // After the tag: three or four parts, a single key's one or two.
                    let after = name.split_once("}:").unwrap().1;
                    assert!((3..=4).contains(&after.split(':').count()), "{name}");
                }
            }
        }
        for algorithm in Algorithm::EVERY {
            for name in keys("POST /chat", "acme", algorithm) {
                assert!(name.split_once("}:").unwrap().1.split(':').count() <= 2, "{name}");
            }
        }
    }

    #[test]
    fn admin_names_share_one_slot_no_state_key_takes() {
        let layout = KeyLayout::new("rl");
        assert_eq!(layout.overrides(), "rl:{admin}:overrides");
        assert_eq!(layout.list(ListKind::Allow), "rl:{admin}:allow");
        assert_eq!(layout.list(ListKind::Block), "rl:{admin}:block");
        assert_eq!(layout.changes_channel(), "rl:admin:changed");
        for name in [
            layout.overrides(),
            layout.list(ListKind::Allow),
            layout.list(ListKind::Block),
        ] {
            assert_eq!(hash_tag(&name), "admin");
        }
        for (rule, key) in [("admin", ""), ("", "admin"), ("admin", "admin")] {
            for algorithm in Algorithm::EVERY {
                assert_ne!(hash_tag(&keys(rule, key, algorithm)[0]), "admin");
            }
        }
    }

    /// Every `.rs` file under `dir`.
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The invariant "key names are built in one module", held against
    /// the source tree: no other file spells a hash tag's opening, the
    /// admin tag or the change channel.
    #[test]
    fn no_other_module_builds_a_redis_name() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        let this = root.join("store/redis/keys.rs");
        let patterns = ["{admin}", "{{admin}}", "admin:changed", "\":{\"", "\":{{\""];
        for file in files.iter().filter(|f| **f != this) {
            let text = std::fs::read_to_string(file).unwrap();
            for pattern in patterns {
                assert!(
                    !text.contains(pattern),
                    "{} spells {pattern:?}: Redis names are built in store/redis/keys.rs only",
                    file.display()
                );
            }
        }
        assert!(files.len() > 20, "the source tree was found");
    }

    #[test]
    fn hostile_keys_stay_inside_their_tag() {
        for key in ["}", "{", "a}b{c", "}{", "%7D", "*", "x\ny", "\0", "{user}:1", "::::"] {
            for algorithm in Algorithm::EVERY {
                let names = keys("GET /a", key, algorithm);
                let tag = hash_tag(&names[0]);
                assert!(tag.starts_with("GET /a:"), "{key:?} → {names:?}");
                for name in &names {
                    assert_eq!(hash_tag(name), tag, "both keys of a check share the slot");
                }
            }
        }
    }

    #[test]
    fn different_pairs_never_share_a_name() {
        let rules = ["a", "a:b", "a%3Ab", "a}", "a{", ""];
        let ks = ["b", "b:c", ":c", "c", "%", "%25", "}", "%7D", "{", ""];
        let mut seen = HashSet::new();
        for rule in rules {
            for key in ks {
                let name = keys(rule, key, Algorithm::FixedWindow).remove(0);
                assert!(
                    seen.insert(name.clone()),
                    "collision on {name:?} for ({rule:?}, {key:?})"
                );
            }
        }
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("rl").is_ok());
        assert!(check_prefix("ratelimiter:prod").is_ok());
        for bad in ["", "a{", "a}", "a b", &"x".repeat(65)] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
