//! Allow and block lists: which callers skip limiting, and which are refused
//! outright.
//!
//! An operator's entry is either an exact caller key or an IP address / CIDR
//! range (IPv4 or IPv6), parsed once by [`ListEntry::parse`] into a form that
//! cannot be invalid. A `/check` request matches an [`AccessList`] when
//!
//! - its `key` equals an exact-key entry (byte for byte), or
//! - its `key` parses as an IP address inside a listed range, or
//! - its optional `client_ip` is inside a listed range,
//!
//! and the matching item has not expired (`expires_at` absent or later than
//! now).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are the IPv4 address they
//! carry, both in entries and when matching. Otherwise the two families are
//! separate: an IPv4 address is matched against IPv4 entries only and an
//! IPv6 address against IPv6 entries only (so `::/0` means "all IPv6", not
//! "everything").
//!
//! # Cost of a lookup
//!
//! An [`AccessList`] is immutable once built, so it can sit in a snapshot
//! that is swapped atomically, and is indexed at construction:
//!
//! - exact keys: one `HashMap` lookup with the borrowed key (no allocation);
//! - single hosts (`/32`, `/128`): one `HashMap<IpAddr, _>` lookup per
//!   address (the request key if it parses as an IP, and `client_ip`);
//! - wider ranges: a linear scan over the ranges of the address's family,
//!   O(number of ranges), done only when the key parses as an IP address or
//!   a `client_ip` is given. Lists are expected to hold few ranges; if that
//!   stops being true, this is the place for a prefix trie.
//!
//! A list with no IP entries never parses the key at all.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::core::Timestamp;

/// How much of an operator's text an error message quotes.
const QUOTE_BYTES: usize = 64;

/// One entry of an allow or block list.
///
/// Built by [`ListEntry::parse`], which guarantees that a `Key` is non-empty,
/// bounded and not IP-address text, and that a `Net` has no host bits set
/// and is not IPv4-mapped IPv6. Constructing the variants directly bypasses
/// those guarantees.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListEntry {
    /// An exact caller key.
    Key(String),
    /// An IP range; a single host is a `/32` or `/128`.
    Net(IpNet),
}

/// Why a text is not a [`ListEntry`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry must not be empty: give a caller key, an IP address (1.2.3.4) or a CIDR range (10.0.0.0/8)")]
    Empty,
    #[error("key is {len} bytes; the maximum is {max}: shorten it")]
    KeyTooLong { len: usize, max: usize },
    #[error("{text:?} has surrounding whitespace; remove it (write {trimmed:?})")]
    Whitespace { text: String, trimmed: String },
    #[error(
        "prefix length {prefix:?} of {addr} is not valid: write a whole number from 0 to {max} \
         (e.g. {example})"
    )]
    BadPrefix {
        addr: IpAddr,
        prefix: String,
        max: u8,
        example: IpNet,
    },
    #[error("{text:?} has host bits set below the /{prefix_len} prefix; write the network instead: {network}")]
    HostBitsSet {
        text: String,
        prefix_len: u8,
        network: IpNet,
    },
}

impl ListEntry {
    /// Parses an operator's entry.
    ///
    /// - An IP address becomes a single-host net (`/32` or `/128`).
    /// - `addr/prefix` with a valid address becomes a net; the prefix must
    ///   be a number within the family's width and the address must be the
    ///   network's first address (`10.0.0.1/8` is refused in favour of
    ///   `10.0.0.0/8`).
    /// - IPv4-mapped IPv6 (`::ffff:1.2.3.4`, `::ffff:10.0.0.0/104`) becomes
    ///   IPv4 (`1.2.3.4`, `10.0.0.0/8`).
    /// - Anything else (including `1.2.3.4.5` or `foo/bar`) is an exact key:
    ///   non-empty and at most `max_key_bytes` bytes.
    ///
    /// Text that would be an address or range but for surrounding
    /// whitespace is refused rather than silently becoming a key that no IP
    /// could ever match.
    pub fn parse(text: &str, max_key_bytes: usize) -> Result<ListEntry, EntryError> {
        if text.is_empty() {
            return Err(EntryError::Empty);
        }
        if let Some(entry) = parse_ip_or_net(text)? {
            return Ok(entry);
        }
        let trimmed = text.trim();
        if trimmed != text && !trimmed.is_empty() && parse_ip_or_net(trimmed)?.is_some() {
            return Err(EntryError::Whitespace {
                text: quote(text),
                trimmed: trimmed.to_owned(),
            });
        }
        if text.len() > max_key_bytes {
            return Err(EntryError::KeyTooLong {
                len: text.len(),
                max: max_key_bytes,
            });
        }
        Ok(ListEntry::Key(text.to_owned()))
    }
}

/// `Ok(None)` when `text` is not IP-address text at all (so it is a key);
/// an error when it is an address with a bad prefix.
fn parse_ip_or_net(text: &str) -> Result<Option<ListEntry>, EntryError> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(Some(ListEntry::Net(host_net(addr.to_canonical()))));
    }
    let Some((addr_text, prefix_text)) = text.split_once('/') else {
        return Ok(None);
    };
    let Ok(addr) = addr_text.parse::<IpAddr>() else {
        return Ok(None);
    };
    let max = host_net(addr).prefix_len();
    let bad_prefix = || EntryError::BadPrefix {
        addr,
        prefix: quote(prefix_text),
        max,
        example: example_net(addr),
    };
    if prefix_text.is_empty() || !prefix_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_prefix());
    }
    let prefix_len = prefix_text.parse::<u8>().map_err(|_| bad_prefix())?;
    let net = IpNet::new(addr, prefix_len).map_err(|_| bad_prefix())?;
    let net = canonical_net(net);
    if net.addr() != net.network() {
        return Err(EntryError::HostBitsSet {
            text: quote(text),
            prefix_len: net.prefix_len(),
            network: net.trunc(),
        });
    }
    Ok(Some(ListEntry::Net(net)))
}

/// The single-host net of `addr`.
fn host_net(addr: IpAddr) -> IpNet {
    match addr {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::from(v6)),
    }
}

/// A plausible range for an error message: the /8 or /32 around `addr`.
fn example_net(addr: IpAddr) -> IpNet {
    let prefix_len = if addr.is_ipv4() { 8 } else { 32 };
    IpNet::new(addr, prefix_len)
        .map(|net| net.trunc())
        .unwrap_or(host_net(addr))
}

/// An IPv4-mapped IPv6 range of at least /96 as the IPv4 range it covers.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(prefix_len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
            if let Ok(v4net) = Ipv4Net::new(v4, prefix_len) {
                return IpNet::V4(v4net);
            }
        }
    }
    net
}

/// At most [`QUOTE_BYTES`] of `text`, cut at a character boundary.
fn quote(text: &str) -> String {
    if text.len() <= QUOTE_BYTES {
        return text.to_owned();
    }
    let mut end = QUOTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl fmt::Display for ListEntry {
    /// The canonical text: `10.0.0.0/8`, `1.2.3.4` or `2001:db8::1` for a
    /// single host, or the key itself. Parsing it gives the same entry back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListEntry::Key(key) => f.write_str(key),
            ListEntry::Net(net) if net.prefix_len() == net.max_prefix_len() => net.addr().fmt(f),
            ListEntry::Net(net) => net.fmt(f),
        }
    }
}

/// An entry with its expiry and the operator's note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    pub entry: ListEntry,
    /// The item stops matching at this instant; `None` never expires.
    pub expires_at: Option<Timestamp>,
    pub comment: Option<String>,
}

impl ListItem {
    /// Whether the item still matches at `now` (`expires_at` strictly later).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// An immutable, indexed allow or block list. See the module docs for the
/// matching rules and the cost of [`AccessList::find`].
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    items: Vec<ListItem>,
    /// Exact key → index of the longest-lived item with that key.
    keys: HashMap<String, usize>,
    /// Single host → index of the longest-lived item for that host.
    hosts: HashMap<IpAddr, usize>,
    /// Wider IPv4 ranges with their item index, in item order.
    nets_v4: Vec<(Ipv4Net, usize)>,
    /// Wider IPv6 ranges with their item index, in item order.
    nets_v6: Vec<(Ipv6Net, usize)>,
}

impl AccessList {
    /// Indexes `items`, which keep their order in [`AccessList::items`].
    ///
    /// Duplicate entries are allowed; lookups see the one that expires last,
    /// so a live duplicate is never hidden by an expired one.
    pub fn new(items: Vec<ListItem>) -> AccessList {
        let mut keys: HashMap<String, usize> = HashMap::new();
        let mut hosts: HashMap<IpAddr, usize> = HashMap::new();
        let mut nets_v4 = Vec::new();
        let mut nets_v6 = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match &item.entry {
                ListEntry::Key(key) => keep_longest_lived(&items, keys.entry(key.clone()), index),
                ListEntry::Net(net) if net.prefix_len() == net.max_prefix_len() => {
                    keep_longest_lived(&items, hosts.entry(net.addr().to_canonical()), index)
                }
                ListEntry::Net(net) => match canonical_net(*net) {
                    IpNet::V4(v4) => nets_v4.push((v4, index)),
                    IpNet::V6(v6) => nets_v6.push((v6, index)),
                },
            }
        }
        AccessList {
            items,
            keys,
            hosts,
            nets_v4,
            nets_v6,
        }
    }

    /// A live item matching the request, if any: an exact key first, then a
    /// single host, then a range (the first live one in item order).
    pub fn find(&self, key: &str, client_ip: Option<IpAddr>, now: Timestamp) -> Option<&ListItem> {
        if let Some(item) = self.live(self.keys.get(key).copied(), now) {
            return Some(item);
        }
        if self.hosts.is_empty() && self.nets_v4.is_empty() && self.nets_v6.is_empty() {
            return None;
        }
        let key_ip = key.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        let client_ip = client_ip.map(|ip| ip.to_canonical()).filter(|ip| Some(*ip) != key_ip);
        [key_ip, client_ip]
            .into_iter()
            .flatten()
            .find_map(|ip| self.find_ip(ip, now))
    }

    /// All items, in the order given to [`AccessList::new`], expired or not.
    pub fn items(&self) -> &[ListItem] {
        &self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `ip` must already be canonical (IPv4-mapped turned into IPv4).
    fn find_ip(&self, ip: IpAddr, now: Timestamp) -> Option<&ListItem> {
        if let Some(item) = self.live(self.hosts.get(&ip).copied(), now) {
            return Some(item);
        }
        match ip {
            IpAddr::V4(v4) => self.scan(&self.nets_v4, |net| net.contains(&v4), now),
            IpAddr::V6(v6) => self.scan(&self.nets_v6, |net| net.contains(&v6), now),
        }
    }

    fn scan<N>(&self, nets: &[(N, usize)], contains: impl Fn(&N) -> bool, now: Timestamp) -> Option<&ListItem> {
        nets.iter()
            .filter(|(net, _)| contains(net))
            .find_map(|(_, index)| self.live(Some(*index), now))
    }

    fn live(&self, index: Option<usize>, now: Timestamp) -> Option<&ListItem> {
        self.items.get(index?).filter(|item| item.is_live(now))
    }
}

/// Points `slot` at whichever of its current item and `index` expires last.
fn keep_longest_lived<K>(items: &[ListItem], slot: std::collections::hash_map::Entry<'_, K, usize>, index: usize) {
    use std::collections::hash_map::Entry;
    match slot {
        Entry::Vacant(vacant) => {
            vacant.insert(index);
        }
        Entry::Occupied(mut occupied) => {
            let lives_longer = match (items.get(*occupied.get()), items.get(index)) {
                (Some(current), Some(candidate)) => outlives(candidate.expires_at, current.expires_at),
                _ => false,
            };
            if lives_longer {
                occupied.insert(index);
            }
        }
    }
}

/// Whether an expiry of `a` is strictly later than `b` (`None` is never).
fn outlives(a: Option<Timestamp>, b: Option<Timestamp>) -> bool {
    match (a, b) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
        (_, None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 32;

    fn at(micros: u64) -> Timestamp {
        Timestamp::from_micros(micros)
    }

    fn entry(text: &str) -> ListEntry {
        match ListEntry::parse(text, MAX) {
            Ok(entry) => entry,
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    fn item(text: &str, expires_at: Option<u64>) -> ListItem {
        ListItem {
            entry: entry(text),
            expires_at: expires_at.map(at),
            comment: Some(format!("note for {text}")),
        }
    }

    fn list(texts: &[&str]) -> AccessList {
        AccessList::new(texts.iter().map(|t| item(t, None)).collect())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test IP")
    }

    /// The canonical text of the entry `find` returns, if any.
    fn found(list: &AccessList, key: &str, client_ip: Option<&str>) -> Option<String> {
        list.find(key, client_ip.map(ip), at(0)).map(|i| i.entry.to_string())
    }

    #[test]
    fn exact_key_matches_only_itself() {
        let l = list(&["alice", "bob"]);
        assert_eq!(found(&l, "alice", None).as_deref(), Some("alice"));
        assert_eq!(found(&l, "bob", None).as_deref(), Some("bob"));
        assert_eq!(found(&l, "Alice", None), None);
        assert_eq!(found(&l, "alice2", None), None);
        assert_eq!(found(&l, "", None), None);
        // A client IP does not make a key list match.
        assert_eq!(found(&l, "carol", Some("1.2.3.4")), None);
        // The returned item is the whole item, comment included.
        let hit = l.find("alice", None, at(0)).expect("alice is listed");
        assert_eq!(hit.comment.as_deref(), Some("note for alice"));
    }

    #[test]
    fn ipv4_host_and_range_match_through_key_and_client_ip() {
        let l = list(&["1.2.3.4", "10.0.0.0/8"]);
        assert_eq!(found(&l, "1.2.3.4", None).as_deref(), Some("1.2.3.4"));
        assert_eq!(found(&l, "user", Some("1.2.3.4")).as_deref(), Some("1.2.3.4"));
        assert_eq!(found(&l, "1.2.3.5", None), None);
        assert_eq!(found(&l, "user", Some("1.2.3.5")), None);
        assert_eq!(found(&l, "10.255.0.1", None).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(found(&l, "user", Some("10.0.0.0")).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(found(&l, "user", Some("10.255.255.255")).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(found(&l, "user", Some("11.0.0.0")), None);
        assert_eq!(found(&l, "9.255.255.255", None), None);
        // The key is checked as an IP even when a non-matching client_ip is given.
        assert_eq!(found(&l, "10.1.1.1", Some("8.8.8.8")).as_deref(), Some("10.0.0.0/8"));
    }

    #[test]
    fn ipv6_host_and_range_match_through_key_and_client_ip() {
        let l = list(&["2001:db8::1", "2001:db8:aa::/48"]);
        assert_eq!(found(&l, "2001:db8::1", None).as_deref(), Some("2001:db8::1"));
        // Any spelling of the address matches.
        assert_eq!(found(&l, "2001:DB8:0:0::0001", None).as_deref(), Some("2001:db8::1"));
        assert_eq!(found(&l, "user", Some("2001:db8::1")).as_deref(), Some("2001:db8::1"));
        assert_eq!(found(&l, "2001:db8::2", None), None);
        assert_eq!(
            found(&l, "2001:db8:aa:ffff::9", None).as_deref(),
            Some("2001:db8:aa::/48")
        );
        assert_eq!(
            found(&l, "user", Some("2001:db8:aa::")).as_deref(),
            Some("2001:db8:aa::/48")
        );
        assert_eq!(found(&l, "user", Some("2001:db8:ab::1")), None);
    }

    #[test]
    fn families_do_not_cross() {
        let l = list(&["0.0.0.0/0"]);
        assert_eq!(found(&l, "user", Some("2001:db8::1")), None);
        assert_eq!(found(&l, "user", Some("1.1.1.1")).as_deref(), Some("0.0.0.0/0"));
        let l = list(&["::/0"]);
        assert_eq!(found(&l, "user", Some("1.1.1.1")), None);
        assert_eq!(found(&l, "user", Some("::ffff:1.1.1.1")), None);
        assert_eq!(found(&l, "user", Some("2001:db8::1")).as_deref(), Some("::/0"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        let l = list(&["10.0.0.0/8", "192.0.2.7"]);
        assert_eq!(found(&l, "::ffff:10.1.2.3", None).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(
            found(&l, "user", Some("::ffff:10.1.2.3")).as_deref(),
            Some("10.0.0.0/8")
        );
        assert_eq!(found(&l, "::ffff:192.0.2.7", None).as_deref(), Some("192.0.2.7"));
        assert_eq!(found(&l, "::ffff:11.1.2.3", None), None);

        // Entries are normalised too, and then match plain IPv4.
        assert_eq!(entry("::ffff:1.2.3.4"), entry("1.2.3.4"));
        assert_eq!(entry("::ffff:10.0.0.0/104"), entry("10.0.0.0/8"));
        assert_eq!(entry("::ffff:0:0/96").to_string(), "0.0.0.0/0");
        let l = list(&["::ffff:10.0.0.0/104", "::ffff:1.2.3.4"]);
        assert_eq!(found(&l, "10.9.9.9", None).as_deref(), Some("10.0.0.0/8"));
        assert_eq!(found(&l, "user", Some("1.2.3.4")).as_deref(), Some("1.2.3.4"));
        // Directly built (unnormalised) nets are normalised when indexed.
        let mapped = |t: &str| ListItem {
            entry: ListEntry::Net(t.parse().expect("net")),
            expires_at: None,
            comment: None,
        };
        let l = AccessList::new(vec![mapped("::ffff:10.0.0.0/104"), mapped("::ffff:1.2.3.4/128")]);
        assert!(l.find("10.9.9.9", None, at(0)).is_some());
        assert!(l.find("1.2.3.4", None, at(0)).is_some());
    }

    #[test]
    fn expired_items_never_match() {
        let now = 1_000;
        let l = AccessList::new(vec![
            item("old-key", Some(now)),
            item("1.2.3.4", Some(now)),
            item("10.0.0.0/8", Some(now)),
            item("2001:db8::/32", Some(now - 1)),
            item("fresh-key", Some(now + 1)),
            item("forever", None),
        ]);
        let find = |key: &str, client: Option<&str>| l.find(key, client.map(ip), at(now)).map(|i| i.entry.to_string());
        assert_eq!(find("old-key", None), None, "expires_at == now is expired");
        assert_eq!(find("1.2.3.4", None), None);
        assert_eq!(find("user", Some("1.2.3.4")), None);
        assert_eq!(find("10.1.1.1", Some("10.2.2.2")), None);
        assert_eq!(find("user", Some("2001:db8::5")), None);
        assert_eq!(find("fresh-key", None).as_deref(), Some("fresh-key"));
        assert_eq!(find("forever", None).as_deref(), Some("forever"));
        // A moment earlier the same items were live.
        assert!(l.find("old-key", None, at(now - 1)).is_some());
        assert!(l.find("10.1.1.1", None, at(now - 1)).is_some());
        // Expired items are still listed.
        assert_eq!(l.len(), 6);
    }

    #[test]
    fn a_live_duplicate_is_not_hidden_by_an_expired_one() {
        let now = 50;
        for order in [false, true] {
            let mut items = vec![
                item("k", Some(10)),
                item("k", Some(100)),
                item("1.2.3.4", Some(10)),
                item("1.2.3.4", None),
                item("10.0.0.0/8", Some(10)),
                item("10.0.0.0/8", Some(100)),
            ];
            if order {
                items.reverse();
            }
            let l = AccessList::new(items);
            assert_eq!(l.find("k", None, at(now)).and_then(|i| i.expires_at), Some(at(100)));
            assert_eq!(l.find("1.2.3.4", None, at(now)).map(|i| i.expires_at), Some(None));
            assert_eq!(
                l.find("10.0.0.1", None, at(now)).and_then(|i| i.expires_at),
                Some(at(100))
            );
        }
    }

    #[test]
    fn empty_list_and_accessors() {
        let l = AccessList::new(Vec::new());
        assert!(l.is_empty());
        assert_eq!(l.len(), 0);
        assert_eq!(l.find("1.2.3.4", Some(ip("1.2.3.4")), at(0)), None);
        let l = list(&["b", "10.0.0.0/8", "a"]);
        assert!(!l.is_empty());
        let texts: Vec<String> = l.items().iter().map(|i| i.entry.to_string()).collect();
        assert_eq!(texts, ["b", "10.0.0.0/8", "a"]);
    }

    #[test]
    fn host_bits_set_is_refused_with_the_network_form() {
        let err = ListEntry::parse("10.0.0.1/8", MAX).expect_err("host bits");
        assert!(matches!(err, EntryError::HostBitsSet { prefix_len: 8, .. }), "{err:?}");
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
        let err = ListEntry::parse("2001:db8::1/32", MAX).expect_err("host bits");
        assert!(err.to_string().contains("2001:db8::/32"), "{err}");
        let err = ListEntry::parse("::ffff:10.0.0.1/104", MAX).expect_err("host bits");
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    }

    #[test]
    fn empty_and_over_long_keys_are_refused() {
        assert_eq!(ListEntry::parse("", MAX), Err(EntryError::Empty));
        let exact = "k".repeat(MAX);
        assert_eq!(ListEntry::parse(&exact, MAX), Ok(ListEntry::Key(exact.clone())));
        let long = "k".repeat(MAX + 1);
        let err = ListEntry::parse(&long, MAX).expect_err("too long");
        assert_eq!(err, EntryError::KeyTooLong { len: MAX + 1, max: MAX });
        assert!(err.to_string().contains("maximum is 32"), "{err}");
        // Addresses are not keys, so the key limit does not apply to them.
        assert!(matches!(
            ListEntry::parse("2001:db8:1:2:3:4:5:6", 4),
            Ok(ListEntry::Net(_))
        ));
    }

    #[test]
    fn ip_lookalikes_are_handled() {
        // Not an address: an exact key.
        assert_eq!(entry("1.2.3.4.5"), ListEntry::Key("1.2.3.4.5".into()));
        assert_eq!(entry("foo/bar"), ListEntry::Key("foo/bar".into()));
        assert_eq!(entry("1.2.3/8"), ListEntry::Key("1.2.3/8".into()));
        assert_eq!(entry("010.1.2.3"), ListEntry::Key("010.1.2.3".into()));
        // An address with a bad prefix: an error naming the valid range.
        for (text, max) in [
            ("10.0.0.0/33", 32),
            ("10.0.0.0/", 32),
            ("10.0.0.0/abc", 32),
            ("10.0.0.0/+8", 32),
            ("10.0.0.0/8/8", 32),
            ("10.0.0.0/999999999999", 32),
            ("::/129", 128),
        ] {
            match ListEntry::parse(text, MAX) {
                Err(e @ EntryError::BadPrefix { max: m, .. }) => {
                    assert_eq!(m, max, "{text}");
                    assert!(e.to_string().contains(&format!("0 to {max}")), "{e}");
                }
                other => panic!("{text:?} should be a prefix error, got {other:?}"),
            }
        }
        // Whitespace around an address is an error, not a key.
        let err = ListEntry::parse(" 10.0.0.0/8\n", MAX).expect_err("whitespace");
        assert!(matches!(err, EntryError::Whitespace { .. }), "{err:?}");
        assert!(err.to_string().contains("\"10.0.0.0/8\""), "{err}");
        // ...but a key may contain spaces.
        assert_eq!(entry(" a key "), ListEntry::Key(" a key ".into()));
        // The lookalike key matches as a key only.
        let l = list(&["1.2.3.4.5"]);
        assert!(l.find("1.2.3.4.5", None, at(0)).is_some());
        assert!(l.find("1.2.3.4", None, at(0)).is_none());
    }

    #[test]
    fn error_messages_quote_bounded_text() {
        let text = format!("10.0.0.0/{}", "9".repeat(1_000));
        let err = ListEntry::parse(&text, MAX).expect_err("bad prefix");
        assert!(err.to_string().len() < 300, "{err}");
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for (text, canonical) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("1.2.3.4", "1.2.3.4"),
            ("1.2.3.4/32", "1.2.3.4"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:DB8::/32", "2001:db8::/32"),
            ("2001:db8:0::1/128", "2001:db8::1"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("::/0", "::/0"),
            ("alice", "alice"),
            ("1.2.3.4.5", "1.2.3.4.5"),
        ] {
            let parsed = entry(text);
            assert_eq!(parsed.to_string(), canonical, "{text}");
            assert_eq!(entry(canonical), parsed, "{text}");
        }
        assert_eq!(entry("1.2.3.4"), ListEntry::Net("1.2.3.4/32".parse().expect("net")));
        assert_eq!(entry("::1"), ListEntry::Net("::1/128".parse().expect("net")));
    }
}
