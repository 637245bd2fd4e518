//! A Redis Cluster's checks, routed by the store itself: its own map of the
//! 16,384 slots to their masters, and one pool of connections per master,
//! so that a master that fails stalls the checks of its own slots only.
//!
//! Why not the client's cluster routing: fred routes every command of a
//! clustered client through one task, which stops routing while it
//! reconnects and re-learns the topology after one node fails — every check
//! waits, whatever its slot, for as long as the failover takes. Here each
//! master's pool reconnects on its own; the others never notice.
//!
//! - **The map** comes from `CLUSTER SLOTS`, asked of every known master at
//!   once (the first answer wins) and, when none answers, of the configured
//!   nodes. It is refreshed in the background: at start, every
//!   `store.redis.cluster_refresh_interval`, and — at most every
//!   [`MIN_REFRESH_GAP`] — whenever a call fails or is redirected, which is
//!   how a promoted replica is found soon after its promotion.
//! - **`MOVED`** (the slot has moved for good): the slot is pointed at the
//!   new master at once, the map is refreshed, and the call is sent again
//!   there, once. The script did not run, so nothing was consumed.
//! - **`ASK`** (the slot is migrating and these keys are already on the
//!   target): the call is sent again to the target as `ASKING` and
//!   `EVALSHA` back to back on one connection, without changing the map.
//! - Every check's keys share a hash tag, hence a slot; the slot of its
//!   first key routes it. [`Shards::shard`] names the master a slot's
//!   checks go to, so that the limiter keeps one circuit breaker per
//!   master.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use fred::clients::Client;
use fred::interfaces::{ClientLike, ClusterInterface};
use fred::prelude::{Error as FredError, ErrorKind, Pool};
use fred::types::scripts::Script;
use fred::types::{CustomCommand, FromValue, MultipleKeys, MultipleValues, Value};
use tokio::sync::Notify;

use super::batch::Batcher;
use super::connection::{ConnectError, Connector};

/// Slots of a Redis Cluster.
pub const SLOTS: usize = 16_384;

/// The fewest time between two refreshes of the map that failures ask for.
pub const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

/// A slot no master is known for.
const UNKNOWN: u32 = u32::MAX;

/// One master and the pool of connections to it.
pub struct Master {
    /// Never reused: a master replaced by its replica is another master,
    /// with a breaker of its own.
    id: u32,
    host: String,
    port: u16,
    pool: Pool,
    /// The master's lanes of group commit, started on first use.
    lanes: OnceLock<Batcher>,
}

impl Master {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn client(&self) -> &Client {
        self.pool.next()
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The master's lanes (one per pooled connection), started by `start`
    /// on first use.
    pub fn lanes(&self, start: impl FnOnce(&[Client]) -> Batcher) -> &Batcher {
        self.lanes.get_or_init(|| start(self.pool.clients()))
    }
}

/// The slot map: each slot's index into `masters`.
struct Topology {
    slots: Box<[u32]>,
    masters: Vec<Arc<Master>>,
}

impl Topology {
    fn empty() -> Topology {
        Topology {
            slots: vec![UNKNOWN; SLOTS].into_boxed_slice(),
            masters: Vec::new(),
        }
    }

    fn master(&self, slot: u16) -> Option<&Arc<Master>> {
        let index = *self.slots.get(usize::from(slot))?;
        self.masters.get(usize::try_from(index).ok()?)
    }
}

/// A range of slots and its master, from `CLUSTER SLOTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub host: String,
    pub port: u16,
}

/// The routing of a cluster's checks.
pub struct Shards {
    connector: Connector,
    topology: ArcSwap<Topology>,
    /// Every master a pool was made for and that is still in the map.
    known: Mutex<HashMap<(String, u16), Arc<Master>>>,
    next_id: AtomicU32,
    wake: Notify,
    /// Bounds one `CLUSTER SLOTS` of a known master.
    command_timeout: Duration,
    /// Bounds a configured node's connection and its `CLUSTER SLOTS`.
    connect_timeout: Duration,
}

impl Shards {
    /// Learns the map from the configured nodes and connects to every
    /// master, within `connect_timeout`; then keeps the map fresh in the
    /// background every `refresh_every`, and sooner on failures.
    pub async fn connect(
        connector: Connector,
        connect_timeout: Duration,
        command_timeout: Duration,
        refresh_every: Duration,
    ) -> Result<Arc<Shards>, ConnectError> {
        let shards = Arc::new(Shards {
            connector,
            topology: ArcSwap::from_pointee(Topology::empty()),
            known: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            wake: Notify::new(),
            command_timeout,
            connect_timeout,
        });
        let target = shards.connector.target();
        let first = async {
            shards.refresh().await?;
            let masters = shards.topology.load().masters.clone();
            // Polled: fred's `wait_for_connect` can miss a connection made
            // between its look at the state and its subscription.
            while !masters
                .iter()
                .all(|m| m.pool.clients().iter().all(|c| c.is_connected()))
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<(), FredError>(())
        };
        match tokio::time::timeout(connect_timeout, first).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Err(ConnectError::Connect { target, source }),
            Err(_) => {
                return Err(ConnectError::Connect {
                    target,
                    source: FredError::new(ErrorKind::Timeout, "connection timed out"),
                })
            }
        }
        tokio::spawn(keep_fresh(Arc::downgrade(&shards), refresh_every));
        Ok(shards)
    }

    /// The master a slot's checks go to now, when one is known.
    pub fn master(&self, slot: u16) -> Option<Arc<Master>> {
        self.topology.load().master(slot).cloned()
    }

    /// Which master decides `slot`'s checks: its id, or 0 when none is
    /// known (the checks then fail until the map is refreshed).
    pub fn shard(&self, slot: u16) -> u32 {
        self.topology.load().master(slot).map_or(0, |m| m.id)
    }

    /// Every master in the map.
    pub fn masters(&self) -> Vec<Arc<Master>> {
        self.topology.load().masters.clone()
    }

    /// Asks for a refresh of the map (at most every [`MIN_REFRESH_GAP`]).
    pub fn stale(&self) {
        self.wake.notify_one();
    }

    /// A call failed with `error`: a timeout, a lost connection or
    /// `CLUSTERDOWN` may mean the map is stale (a failover), so it is read
    /// again soon; a script's own error says nothing of the map.
    pub fn saw(&self, error: &FredError) {
        if !matches!(error.kind(), ErrorKind::Unknown | ErrorKind::Parse) {
            self.stale();
        }
    }

    /// Runs `script` with `keys` (one slot, that of the first) and `args`
    /// on the slot's master, following one redirection.
    pub async fn evalsha<R: FromValue>(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R, FredError> {
        let slot = keys.first().map_or(0, |k| fred::util::redis_keyslot(k.as_bytes()));
        let keys = MultipleKeys::from(keys);
        let args: MultipleValues = Value::Array(args.into_iter().map(Value::from).collect());
        let Some(master) = self.master(slot) else {
            self.stale();
            return Err(FredError::new(
                ErrorKind::Cluster,
                format!("CLUSTERDOWN no master is known for slot {slot}"),
            ));
        };
        let error = match script
            .evalsha_with_reload::<R, _, _>(master.client(), keys.clone(), args.clone())
            .await
        {
            Ok(reply) => return Ok(reply),
            Err(error) => error,
        };
        let redirect = (error.is_moved() || error.is_ask())
            .then(|| redirection(error.details()))
            .flatten();
        let Some((to_slot, target)) =
            redirect.and_then(|(slot, host, port)| Some((slot, self.master_at(&host, port)?)))
        else {
            // A timeout, a lost connection, CLUSTERDOWN: the map may be
            // stale (a failover); look again soon.
            if !matches!(error.kind(), ErrorKind::Unknown | ErrorKind::Parse) {
                self.stale();
            }
            return Err(error);
        };
        if error.is_moved() {
            self.point(to_slot, &target);
            self.stale();
            return script.evalsha_with_reload(target.client(), keys, args).await;
        }
        asking(target.client(), script, keys, args).await
    }

    /// The master at `host:port`, with a pool made (and connecting) when
    /// it is new; `None` only when no pool can be made for it.
    fn master_at(&self, host: &str, port: u16) -> Option<Arc<Master>> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(master) = known.get(&(host.to_owned(), port)) {
            return Some(master.clone());
        }
        let pool = match self.connector.node_pool(host, port) {
            Ok(pool) => pool,
            Err(e) => {
                tracing::error!(error = %e, host, port, "cannot make a pool for a cluster master");
                return None;
            }
        };
        // Connecting in the background: calls wait for it (within their timeout).
        drop(pool.connect_pool());
        let master = Arc::new(Master {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            host: host.to_owned(),
            port,
            pool,
            lanes: OnceLock::new(),
        });
        tracing::info!(master = %master.address(), id = master.id, "cluster master: connecting");
        known.insert((host.to_owned(), port), master.clone());
        Some(master)
    }

    /// Points one slot at `master` (after a `MOVED`), until the next refresh.
    fn point(&self, slot: u16, master: &Arc<Master>) {
        let current = self.topology.load();
        let mut masters = current.masters.clone();
        let index = match masters.iter().position(|m| m.id == master.id) {
            Some(index) => index,
            None => {
                masters.push(master.clone());
                masters.len() - 1
            }
        };
        let mut slots = current.slots.clone();
        slots[usize::from(slot)] = u32::try_from(index).unwrap_or(UNKNOWN);
        self.topology.store(Arc::new(Topology { slots, masters }));
    }

    /// Asks every known master, else every configured node, for the slot
    /// map, and installs the first answer; returns whether it changed.
    pub async fn refresh(&self) -> Result<bool, FredError> {
        let masters = self.masters();
        let by_hostname = self.connector.config().tls.is_some();
        let ask = |client: Client| async move {
            let reply: Value = tokio::time::timeout(self.command_timeout, client.cluster_slots())
                .await
                .map_err(|_| FredError::new(ErrorKind::Timeout, "CLUSTER SLOTS timed out"))??;
            parse_slots(reply, by_hostname)
        };
        let mut asked = None;
        if !masters.is_empty() {
            let each = masters.iter().map(|m| Box::pin(ask(m.client().clone())));
            asked = futures_util::future::select_ok(each)
                .await
                .ok()
                .map(|(ranges, _)| ranges);
        }
        let ranges = match asked {
            Some(ranges) => ranges,
            None => self.ask_seeds().await?,
        };
        Ok(self.install(&ranges))
    }

    /// The map from the configured nodes, each through a client of its own.
    async fn ask_seeds(&self) -> Result<Vec<SlotRange>, FredError> {
        let mut last = FredError::new(ErrorKind::Cluster, "no cluster node is configured");
        for (host, port) in self.connector.seeds() {
            let pool = match self.connector.node_pool(&host, port) {
                Ok(pool) => pool,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let asked = async {
                pool.init().await?;
                let reply: Value = pool.next().cluster_slots().await?;
                parse_slots(reply, self.connector.config().tls.is_some())
            };
            let result = tokio::time::timeout(self.connect_timeout, asked).await;
            let _ = pool.quit().await;
            match result {
                Ok(Ok(ranges)) => return Ok(ranges),
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = FredError::new(ErrorKind::Timeout, format!("CLUSTER SLOTS of {host}:{port} timed out"))
                }
            }
        }
        Err(last)
    }

    /// Installs the map of `ranges`; masters that no longer own a slot
    /// have their pools closed. Returns whether any slot changed master.
    fn install(&self, ranges: &[SlotRange]) -> bool {
        let mut masters: Vec<Arc<Master>> = Vec::new();
        let mut slots = vec![UNKNOWN; SLOTS].into_boxed_slice();
        for range in ranges {
            let Some(master) = self.master_at(&range.host, range.port) else {
                continue;
            };
            let index = match masters.iter().position(|m| m.id == master.id) {
                Some(index) => index,
                None => {
                    masters.push(master);
                    masters.len() - 1
                }
            };
            let index = u32::try_from(index).unwrap_or(UNKNOWN);
            for slot in range.start..=range.end.min(SLOTS as u16 - 1) {
                slots[usize::from(slot)] = index;
            }
        }
        let before = self.topology.load();
        let changed = (0..SLOTS).any(|slot| {
            let was = before.master(slot as u16).map(|m| m.id);
            let now = usize::try_from(slots[slot])
                .ok()
                .and_then(|i| masters.get(i))
                .map(|m| m.id);
            was != now
        });
        let ids: Vec<u32> = masters.iter().map(|m| m.id).collect();
        self.topology.store(Arc::new(Topology { slots, masters }));
        if changed {
            tracing::info!(masters = ids.len(), "cluster slot map changed");
        }
        // Pools of masters that own no slot any more (a failed master, or
        // one emptied by resharding) are closed; in-flight calls fail.
        let gone: Vec<Arc<Master>> = {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            let gone = known.values().filter(|m| !ids.contains(&m.id)).cloned().collect();
            known.retain(|_, m| ids.contains(&m.id));
            gone
        };
        for master in gone {
            tracing::info!(master = %master.address(), id = master.id, "cluster master: no slot any more, disconnecting");
            tokio::spawn(async move {
                let _ = master.pool.quit().await;
            });
        }
        changed
    }

    /// Closes every master's pool.
    pub async fn quit(&self) {
        let masters: Vec<Arc<Master>> = {
            let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            known.values().cloned().collect()
        };
        for master in masters {
            let _ = master.pool.quit().await;
        }
    }
}

/// The background refresher: every `every`, or when woken (no sooner than
/// [`MIN_REFRESH_GAP`] after the last refresh); ends with the store.
async fn keep_fresh(shards: Weak<Shards>, every: Duration) {
    let mut last = Instant::now();
    loop {
        let Some(strong) = shards.upgrade() else {
            return;
        };
        let woken = tokio::time::timeout(every, strong.wake.notified()).await.is_ok();
        drop(strong);
        if woken {
            let since = last.elapsed();
            if since < MIN_REFRESH_GAP {
                tokio::time::sleep(MIN_REFRESH_GAP - since).await;
            }
        }
        let Some(strong) = shards.upgrade() else {
            return;
        };
        last = Instant::now();
        if let Err(e) = strong.refresh().await {
            tracing::warn!(error = %e, "cannot refresh the cluster slot map");
        }
    }
}

/// `ASKING` then the script, back to back on one connection (a slot being
/// migrated: these keys are already on the target); `NOSCRIPT` loads the
/// script on the target and sends both again, once.
async fn asking<R: FromValue>(
    client: &Client,
    script: &Script,
    keys: MultipleKeys,
    args: MultipleValues,
) -> Result<R, FredError> {
    let mut call: Vec<Value> = vec![Value::from(script.sha1().clone()), Value::from(keys.len() as i64)];
    call.extend(keys.into_values());
    match args {
        Value::Array(args) => call.extend(args),
        other => call.push(other),
    }
    for attempt in 0..2 {
        let pipeline = client.pipeline();
        let _: () = pipeline
            .custom(CustomCommand::new_static("ASKING", None, false), Vec::<Value>::new())
            .await?;
        let _: () = pipeline
            .custom(CustomCommand::new_static("EVALSHA", None, false), call.clone())
            .await?;
        let mut replies = pipeline.try_all::<Value>().await;
        match replies.pop() {
            Some(Err(e)) if attempt == 0 && e.details().starts_with("NOSCRIPT") => {
                script.load(client).await?;
            }
            Some(reply) => return reply?.convert(),
            None => break,
        }
    }
    Err(FredError::new(ErrorKind::Protocol, "no reply after ASKING"))
}

/// `MOVED <slot> <host>:<port>` or `ASK ...`: the slot and the target.
fn redirection(details: &str) -> Option<(u16, String, u16)> {
    let mut parts = details.split_whitespace();
    let _kind = parts.next()?;
    let slot = parts.next()?.parse().ok()?;
    let (host, port) = parts.next()?.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((slot, host.to_owned(), port.parse().ok()?))
}

/// The reply of `CLUSTER SLOTS`: `[start, end, [host, port, id,
/// metadata], replicas...]` per range. With `by_hostname` (TLS, whose
/// certificates name hosts rather than addresses) a master's `hostname`
/// from the metadata (`cluster-announce-hostname`) is used when it has one.
pub fn parse_slots(reply: Value, by_hostname: bool) -> Result<Vec<SlotRange>, FredError> {
    let bad = |what: &str| FredError::new(ErrorKind::Protocol, format!("CLUSTER SLOTS: {what}"));
    let ranges: Vec<Vec<Value>> = reply.convert()?;
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let mut fields = range.into_iter();
        let start: u16 = fields.next().ok_or_else(|| bad("no start"))?.convert()?;
        let end: u16 = fields.next().ok_or_else(|| bad("no end"))?.convert()?;
        let primary: Vec<Value> = fields.next().ok_or_else(|| bad("no master"))?.convert()?;
        let mut primary = primary.into_iter();
        let mut host: String = primary.next().ok_or_else(|| bad("no host"))?.convert()?;
        let port: u16 = primary.next().ok_or_else(|| bad("no port"))?.convert()?;
        if by_hostname {
            if let Some(name) = primary.nth(1).and_then(announced_hostname) {
                host = name;
            }
        }
        if host.is_empty() || start > end {
            return Err(bad("a range without a usable master"));
        }
        out.push(SlotRange { start, end, host, port });
    }
    Ok(out)
}

/// `hostname` of a node's metadata (a map, or in RESP2 a flat list of
/// names and values), when set.
fn announced_hostname(metadata: Value) -> Option<String> {
    let pairs: Vec<(String, Value)> = match metadata {
        Value::Map(map) => map
            .inner()
            .into_iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
            .collect(),
        Value::Array(list) => {
            let mut list = list.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (list.next(), list.next()) {
                pairs.push((k.as_string()?, v));
            }
            pairs
        }
        _ => return None,
    };
    pairs
        .into_iter()
        .find(|(k, _)| k == "hostname")
        .and_then(|(_, v)| v.as_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_name_the_slot_and_the_target() {
        assert_eq!(
            redirection("MOVED 3999 127.0.0.1:6381"),
            Some((3999, "127.0.0.1".to_owned(), 6381))
        );
        assert_eq!(redirection("ASK 12 [::1]:7000"), Some((12, "::1".to_owned(), 7000)));
        assert_eq!(redirection("MOVED x 127.0.0.1:1"), None);
        assert_eq!(redirection("MOVED 1"), None);
    }

    #[test]
    fn slot_ranges_parse_from_the_reply() {
        let node =
            |host: &str, port: i64| Value::Array(vec![Value::from(host), Value::Integer(port), Value::from("id")]);
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Integer(0),
                Value::Integer(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![
                Value::Integer(5461),
                Value::Integer(16383),
                node("10.0.0.2", 7001),
            ]),
        ]);
        let ranges = parse_slots(reply, false).unwrap();
        assert_eq!(
            ranges,
            vec![
                SlotRange {
                    start: 0,
                    end: 5460,
                    host: "10.0.0.1".into(),
                    port: 7000
                },
                SlotRange {
                    start: 5461,
                    end: 16383,
                    host: "10.0.0.2".into(),
                    port: 7001
                },
            ]
        );
        let no_host = Value::Array(vec![Value::Array(vec![
            Value::Integer(0),
            Value::Integer(1),
            node("", 7000),
        ])]);
        assert!(parse_slots(no_host, false).is_err());
    }

    #[test]
    fn over_tls_a_master_is_reached_by_its_announced_hostname() {
        let with_name = |metadata: Value| {
            Value::Array(vec![Value::Array(vec![
                Value::Integer(0),
                Value::Integer(16383),
                Value::Array(vec![
                    Value::from("10.0.0.1"),
                    Value::Integer(6379),
                    Value::from("id"),
                    metadata,
                ]),
            ])])
        };
        let resp2 = || {
            with_name(Value::Array(vec![
                Value::from("hostname"),
                Value::from("node-1.example"),
            ]))
        };
        assert_eq!(parse_slots(resp2(), true).unwrap()[0].host, "node-1.example");
        assert_eq!(parse_slots(resp2(), false).unwrap()[0].host, "10.0.0.1");
        let empty = with_name(Value::Array(vec![Value::from("hostname"), Value::from("")]));
        assert_eq!(parse_slots(empty, true).unwrap()[0].host, "10.0.0.1");
        let none = with_name(Value::Array(Vec::new()));
        assert_eq!(parse_slots(none, true).unwrap()[0].host, "10.0.0.1");
    }
}
