//! Real Redis processes for integration tests: a standalone server
//! ([`RedisServer`]) and a 6-node cluster ([`RedisCluster`]), driven through
//! Debian's `redis-server` and `redis-cli` binaries (no client crate).
//!
//! Every process listens on 127.0.0.1 only, on a free port picked at start,
//! keeps nothing on disk (`--save '' --appendonly no`) and lives in its own
//! temporary directory (holding its `redis.log`). Dropping the handle kills the
//! processes and waits for them.
//!
//! The helpers are blocking (they spawn `redis-cli` and sleep while polling);
//! from an async test that is fine for setup and for the fault-injection
//! methods, as long as the runtime has another thread for the code under test
//! when it must make progress meanwhile.
//!
//! # Safety net
//!
//! Every `redis-server` is spawned with `PR_SET_PDEATHSIG(SIGKILL)`, so a test
//! binary that dies without running destructors (abort, SIGKILL, `exit`) does
//! not leave servers behind. Linux delivers that signal when the *thread* that
//! forked the child exits, not the process: spawning from a test thread would
//! kill a server that outlives its test (for example one shared through a
//! `static`/`OnceLock`, or one started inside `spawn_blocking`). To make it
//! process-wide in practice, all servers are forked by one long-lived
//! `redis-spawner` thread that never exits before the process does.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use super::{poll_until, wait_until};

/// Number of hash slots in a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;
/// How long a single server may take to answer `PING` after spawning.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cluster may take to converge after a change.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports to try when another process grabs the one we picked.
const PORT_ATTEMPTS: usize = 10;
/// Cluster nodes also listen on `port + BUS_OFFSET` (the cluster bus).
const BUS_OFFSET: u16 = 10000;
const CLUSTER_NODES: usize = 6;
const MISSING: &str = "redis-server/redis-cli not found on PATH: run scripts/test.sh (which installs them), \
                       or `apt-get install -y redis-server`";

// ---------------------------------------------------------------------------
// Standalone server
// ---------------------------------------------------------------------------

/// A standalone `redis-server` on `127.0.0.1:port()`.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        let dir = temp_dir("ratelimiter-redis-");
        let mut errors = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port(|_| true);
            match spawn_server(port, dir.path(), &[]) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        dir,
                        child: Some(child),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "could not start redis-server after {PORT_ATTEMPTS} attempts:\n{}",
            errors.join("\n")
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` with `args` against this server; returns its trimmed
    /// stdout and panics (with stderr) on failure or on an error reply.
    #[track_caller]
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// Like [`RedisServer::cli`] but returns failures (connection refused,
    /// error reply) as `Err(stderr)` instead of panicking.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        try_cli(self.port, args)
    }

    /// Whether the server answers `PING` right now (200 ms timeouts).
    pub fn ping(&self) -> bool {
        ping(self.port)
    }

    /// SIGKILLs the server and waits for it to exit (no-op when not running).
    /// Its data is gone: nothing is persisted.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            kill_child(child);
        }
    }

    /// Kills the server if it runs, then starts a fresh (empty) one on the same
    /// port and waits until it answers `PING`.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill();
        match spawn_server(self.port, self.dir.path(), &[]) {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("could not restart redis-server on port {}: {e}", self.port),
        }
    }

    /// SIGSTOPs the server: connections are still accepted by the kernel but
    /// nothing is answered until [`RedisServer::resume`]. Do not call
    /// [`RedisServer::cli`] while paused: `redis-cli` would hang.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONTs a server stopped by [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("redis-server is not running");
        signal_child(child, signal);
    }

    /// Where the server keeps its `redis.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// A 6-node Redis Cluster (3 masters with one replica each) on loopback, with
/// `--cluster-node-timeout 1000` so failure detection takes about a second.
///
/// Methods that list nodes (`seed_urls`, `ports`, `masters`, `replicas`) only
/// list nodes that have not been killed, and read roles live (they change with
/// [`RedisCluster::failover`] and [`RedisCluster::kill_master_and_wait_for_promotion`]).
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

struct ClusterNode {
    port: u16,
    child: Option<Child>,
}

impl RedisCluster {
    /// Starts 6 nodes, creates the cluster with `redis-cli --cluster create
    /// --cluster-replicas 1`, and waits until every node reports
    /// `cluster_state:ok` with all 16384 slots covered, every replica's link to
    /// its master is up, and all nodes agree on the topology.
    pub fn start() -> RedisCluster {
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir: temp_dir("ratelimiter-redis-cluster-"),
        };
        let mut errors = Vec::new();
        while cluster.nodes.len() < CLUSTER_NODES {
            if errors.len() >= PORT_ATTEMPTS {
                panic!("could not start cluster nodes:\n{}", errors.join("\n"));
            }
            // Neither our port nor our bus port may clash with another node's.
            let taken: BTreeSet<u16> = cluster
                .nodes
                .iter()
                .flat_map(|n| [n.port, n.port + BUS_OFFSET])
                .collect();
            let port = free_port(|p| {
                p.checked_add(BUS_OFFSET).is_some_and(port_is_free)
                    && !taken.contains(&p)
                    && !taken.contains(&(p + BUS_OFFSET))
            });
            let node_dir = cluster.dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("create node directory");
            let conf = node_dir.join("nodes.conf");
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().expect("utf-8 temp dir"),
                "--cluster-node-timeout",
                "1000",
                "--repl-diskless-sync-delay",
                "0",
            ];
            match spawn_server(port, &node_dir, &args) {
                Ok(child) => cluster.nodes.push(ClusterNode {
                    port,
                    child: Some(child),
                }),
                Err(e) => errors.push(e),
            }
        }

        let addrs: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{MISSING} ({e})"));
        if !out.status.success() {
            panic!(
                "redis-cli --cluster create failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        wait_until("the new cluster to be healthy", CLUSTER_TIMEOUT, || {
            cluster.healthy() && cluster.masters().len() == 3 && cluster.replicas().len() == 3
        });
        cluster
    }

    /// `redis://127.0.0.1:PORT` for every live node.
    pub fn seed_urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Ports of every live node, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Ports of the live nodes that report `role:master`, sorted.
    pub fn masters(&self) -> Vec<u16> {
        self.ports()
            .into_iter()
            .filter(|&p| role(p).as_deref() == Some("master"))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Ports of the live nodes that report `role:slave`, sorted.
    pub fn replicas(&self) -> Vec<u16> {
        self.ports()
            .into_iter()
            .filter(|&p| role(p).as_deref() == Some("slave"))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Ports of the live replicas whose master is `master_port`, sorted.
    pub fn replicas_of(&self, master_port: u16) -> Vec<u16> {
        let mut out: Vec<u16> = self
            .ports()
            .into_iter()
            .filter(|&p| {
                try_cli(p, &["INFO", "replication"]).is_ok_and(|info| {
                    info_field(&info, "role") == Some("slave")
                        && info_field(&info, "master_port") == Some(master_port.to_string().as_str())
                })
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The master owning `slot`, once every live node agrees on it (waits up
    /// to 30 s for gossip to converge).
    #[track_caller]
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        let mut owner = None;
        wait_until(
            &format!("all nodes to agree on the owner of slot {slot}"),
            CLUSTER_TIMEOUT,
            || {
                owner = self.agreed_owner(slot);
                owner.is_some()
            },
        );
        owner.expect("checked by wait_until")
    }

    /// Runs `redis-cli` against node `port` (see [`cli`]). Put `"-c"` first in
    /// `args` to follow `MOVED`/`ASK` redirections.
    #[track_caller]
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    /// `redis-cli -c` against the first live node: follows redirections, so the
    /// command reaches whichever master owns its key.
    #[track_caller]
    pub fn cluster_cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        cli(self.any_port(), &all)
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> u16 {
        let out = cli(self.any_port(), &["CLUSTER", "KEYSLOT", key]);
        out.parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key:?} answered {out:?}"))
    }

    /// Manual failover: runs `CLUSTER FAILOVER` on a replica of `master_port`
    /// and waits until that replica reports `role:master`, the old master
    /// `role:slave` (with its replication link up), and the cluster is healthy
    /// again on every node. Returns the new master's port.
    #[track_caller]
    pub fn failover(&self, master_port: u16) -> u16 {
        assert_eq!(
            role(master_port).as_deref(),
            Some("master"),
            "{master_port} is not a master"
        );
        let replica = *self
            .replicas_of(master_port)
            .first()
            .unwrap_or_else(|| panic!("{master_port} has no replica"));
        let swapped = || {
            role(replica).as_deref() == Some("master")
                && try_cli(master_port, &["INFO", "replication"]).is_ok_and(|info| {
                    info_field(&info, "role") == Some("slave")
                        && info_field(&info, "master_port") == Some(replica.to_string().as_str())
                })
        };
        // A manual failover aborts after 5 s if the replica cannot catch up;
        // ask again in that case.
        let mut done = false;
        for _ in 0..3 {
            cli(replica, &["CLUSTER", "FAILOVER"]);
            if poll_until(Duration::from_secs(8), swapped) {
                done = true;
                break;
            }
        }
        assert!(done, "manual failover of {master_port} to {replica} did not happen");
        wait_until(
            &format!("the cluster to be healthy after failing over {master_port} to {replica}"),
            CLUSTER_TIMEOUT,
            || self.healthy(),
        );
        replica
    }

    /// SIGKILLs master `master_port` and waits until one of its replicas has
    /// been promoted and the surviving nodes are healthy again (about 2-3 s
    /// with the 1 s node timeout). Returns the promoted replica's port. The
    /// killed node is gone for good: it no longer appears in `ports()` etc.
    #[track_caller]
    pub fn kill_master_and_wait_for_promotion(&mut self, master_port: u16) -> u16 {
        assert_eq!(
            role(master_port).as_deref(),
            Some("master"),
            "{master_port} is not a master"
        );
        let replicas = self.replicas_of(master_port);
        assert!(!replicas.is_empty(), "{master_port} has no replica to promote");
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == master_port)
            .expect("a node of this cluster");
        kill_child(node.child.take().expect("master is running"));

        let mut promoted = None;
        wait_until(
            &format!("a replica of killed master {master_port} to be promoted"),
            CLUSTER_TIMEOUT,
            || {
                promoted = replicas.iter().copied().find(|&r| role(r).as_deref() == Some("master"));
                promoted.is_some()
            },
        );
        wait_until(
            &format!("the surviving nodes to be healthy after killing {master_port}"),
            CLUSTER_TIMEOUT,
            || self.healthy(),
        );
        promoted.expect("checked by wait_until")
    }

    /// Moves `slot` and its keys to master `to_master_port` with the standard
    /// resharding sequence (IMPORTING/MIGRATING, `GETKEYSINSLOT` + `MIGRATE`
    /// batches, `SETSLOT NODE` on every master), then waits until every node
    /// agrees on the new owner. No-op if `to_master_port` already owns it.
    /// Keys must not contain newlines (they are read back from `redis-cli`).
    #[track_caller]
    pub fn migrate_slot(&self, slot: u16, to_master_port: u16) {
        assert!(slot < CLUSTER_SLOTS, "slot {slot} out of range");
        let from = self.master_of_slot(slot);
        if from == to_master_port {
            return;
        }
        assert!(
            self.masters().contains(&to_master_port),
            "{to_master_port} is not a master"
        );
        let slot_s = slot.to_string();
        let to_s = to_master_port.to_string();
        let from_id = cli(from, &["CLUSTER", "MYID"]);
        let to_id = cli(to_master_port, &["CLUSTER", "MYID"]);

        cli(to_master_port, &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id]);
        cli(from, &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id]);
        loop {
            let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_s, "", "0", "5000", "KEYS"];
            args.extend(keys);
            cli(from, &args);
        }
        // Destination first, then source, then everyone else.
        let mut masters = vec![to_master_port, from];
        masters.extend(self.masters().into_iter().filter(|&m| m != to_master_port && m != from));
        for m in masters {
            cli(m, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]);
        }
        wait_until(
            &format!("all nodes to agree that {to_master_port} owns slot {slot}"),
            CLUSTER_TIMEOUT,
            || {
                self.agreed_owner(slot) == Some(to_master_port)
                    && self.ports().into_iter().all(|p| {
                        try_cli(p, &["CLUSTER", "NODES"]).is_ok_and(|nodes| !nodes.contains(&format!("[{slot}-")))
                    })
            },
        );
    }

    /// `SCRIPT FLUSH` on every live node.
    pub fn script_flush_all(&self) {
        for port in self.ports() {
            cli(port, &["SCRIPT", "FLUSH"]);
        }
    }

    /// Where the nodes keep their directories (one per port, with `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn any_port(&self) -> u16 {
        *self.ports().first().expect("every cluster node has been killed")
    }

    /// The owner of `slot` if every live node sees the same live master owning it.
    fn agreed_owner(&self, slot: u16) -> Option<u16> {
        let mut owner = None;
        for port in self.ports() {
            let view = parse_nodes(&try_cli(port, &["CLUSTER", "NODES"]).ok()?);
            let seen = view.iter().find(|n| n.is_master && !n.failed && n.owns(slot))?.port;
            if *owner.get_or_insert(seen) != seen {
                return None;
            }
        }
        owner.filter(|o| self.ports().contains(o))
    }

    /// Every live node: `cluster_state:ok`, all slots ok, knows every node; every
    /// replica's link up; all live nodes see the same topology (roles, masters,
    /// slot ranges of live nodes) and no slot owned by a killed node.
    fn healthy(&self) -> bool {
        let live = self.ports();
        let mut topology = None;
        for &port in &live {
            let Ok(info) = try_cli(port, &["CLUSTER", "INFO"]) else {
                return false;
            };
            let total = self.nodes.len().to_string();
            if info_field(&info, "cluster_state") != Some("ok")
                || info_field(&info, "cluster_slots_ok") != Some("16384")
                || info_field(&info, "cluster_known_nodes") != Some(total.as_str())
            {
                return false;
            }
            let Ok(repl) = try_cli(port, &["INFO", "replication"]) else {
                return false;
            };
            if info_field(&repl, "role") == Some("slave") && info_field(&repl, "master_link_status") != Some("up") {
                return false;
            }
            let Ok(nodes) = try_cli(port, &["CLUSTER", "NODES"]) else {
                return false;
            };
            let Some(seen) = topology_of(&parse_nodes(&nodes), &live) else {
                return false;
            };
            match &topology {
                None => topology = Some(seen),
                Some(t) if *t != seen => return false,
                Some(_) => {}
            }
        }
        true
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.take() {
                kill_child(child);
            }
        }
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
struct NodeLine {
    id: String,
    port: u16,
    is_master: bool,
    failed: bool,
    connected: bool,
    master_id: Option<String>,
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }
}

fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            // ip:port@cport[,hostname]
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(NodeLine {
                id: f[0].to_string(),
                port,
                is_master: flags.contains(&"master"),
                failed: flags
                    .iter()
                    .any(|&x| x == "fail" || x == "fail?" || x == "handshake" || x == "noaddr"),
                connected: f[7] == "connected",
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                slots,
            })
        })
        .collect()
}

/// (port, is_master, master's port, sorted slot ranges) for every live node
/// in one node's view; `None` when that view is not settled (a live node
/// missing, failed or disconnected, or slots owned by a dead node).
type Topology = Vec<(u16, bool, Option<u16>, Vec<(u16, u16)>)>;

fn topology_of(view: &[NodeLine], live: &[u16]) -> Option<Topology> {
    let mut out = Vec::new();
    for &port in live {
        let n = view.iter().find(|n| n.port == port)?;
        if n.failed || !n.connected {
            return None;
        }
        let master = match &n.master_id {
            Some(id) => Some(view.iter().find(|m| &m.id == id)?.port),
            None => None,
        };
        let mut slots = n.slots.clone();
        slots.sort_unstable();
        out.push((port, n.is_master, master, slots));
    }
    if view.iter().any(|n| !live.contains(&n.port) && !n.slots.is_empty()) {
        return None;
    }
    out.sort();
    Some(out)
}

// ---------------------------------------------------------------------------
// redis-cli
// ---------------------------------------------------------------------------

/// Runs `redis-cli -h 127.0.0.1 -p PORT -e ARGS...` and returns its trimmed
/// stdout; panics with stderr when it fails (cannot connect, error reply).
#[track_caller]
pub fn cli(port: u16, args: &[&str]) -> String {
    try_cli(port, args).unwrap_or_else(|e| panic!("redis-cli -p {port} {args:?} failed: {e}"))
}

/// Like [`cli`] but returns the failure (stderr and stdout) as `Err`.
pub fn try_cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-e"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{MISSING} ({e})"));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!("{} {stdout}", stderr.trim()).trim().to_string())
    }
}

/// `field:value` lookup in `INFO` / `CLUSTER INFO` output.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// `role` from `INFO replication`, `None` if the node does not answer.
fn role(port: u16) -> Option<String> {
    let info = try_cli(port, &["INFO", "replication"]).ok()?;
    info_field(&info, "role").map(str::to_string)
}

/// `PING` over a raw socket (cheaper than spawning `redis-cli` while polling).
fn ping(port: u16) -> bool {
    let timeout = Duration::from_millis(200);
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout) else {
        return false;
    };
    let mut buf = [0u8; 7];
    s.set_read_timeout(Some(timeout)).is_ok()
        && s.set_write_timeout(Some(timeout)).is_ok()
        && s.write_all(b"PING\r\n").is_ok()
        && s.read_exact(&mut buf).is_ok()
        && &buf == b"+PONG\r\n"
}

// ---------------------------------------------------------------------------
// Processes and ports
// ---------------------------------------------------------------------------

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory")
}

/// A port that was free on 127.0.0.1 a moment ago and satisfies `ok`. Another
/// process may take it before we bind it: callers retry on start failure.
fn free_port(ok: impl Fn(u16) -> bool) -> u16 {
    for _ in 0..200 {
        match TcpListener::bind("127.0.0.1:0") {
            Ok(listener) => {
                let port = listener.local_addr().expect("local_addr").port();
                drop(listener);
                if ok(port) {
                    return port;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("no free loopback port found");
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Spawns `redis-server` on `port` with its files in `dir` and waits until it
/// answers `PING`. `Err` (with the log tail) when it exits early, e.g. because
/// the port was taken meanwhile, or when the answering server is not ours.
fn spawn_server(port: u16, dir: &Path, extra: &[&str]) -> Result<Child, String> {
    let log = dir.join("redis.log");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    kill_with_parent(&mut cmd);
    let mut child = spawn_from_spawner_thread(cmd).unwrap_or_else(|e| panic!("{MISSING} ({e})"));

    let mut exited = None;
    let up = poll_until(START_TIMEOUT, || match child.try_wait() {
        Ok(Some(status)) => {
            exited = Some(status);
            true
        }
        _ => ping(port),
    });
    let failure = match exited {
        Some(status) => Some(format!("redis-server on port {port} exited with {status}")),
        None if !up => Some(format!(
            "redis-server on port {port} did not answer PING within {START_TIMEOUT:?}"
        )),
        // Something answered; make sure it is our process and not a neighbour
        // that grabbed the port first.
        None => match try_cli(port, &["INFO", "server"]) {
            Ok(info) if info_field(&info, "process_id") == Some(child.id().to_string().as_str()) => None,
            Ok(_) => Some(format!("port {port} is served by another redis-server")),
            Err(e) => Some(format!("redis-server on port {port}: {e}")),
        },
    };
    match failure {
        None => Ok(child),
        Some(msg) => {
            kill_child(child);
            Err(format!("{msg}; log {}:\n{}", log.display(), log_tail(&log)))
        }
    }
}

fn log_tail(log: &PathBuf) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// SIGKILL (also works on a SIGSTOPped process) and reap.
fn kill_child(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn signal_child(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: plain syscall on a child we have not reaped yet (so the pid
    // cannot have been reused).
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", io::Error::last_os_error());
}

/// Asks the kernel to SIGKILL the child when its parent goes away, as a safety
/// net for test runs that crash past our destructors. Caveat: "parent" is the
/// *thread* that forked it (see the module docs; we fork from a thread that
/// lives as long as the process).
fn kill_with_parent(cmd: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe syscalls (prctl, getppid); it allocates nothing on the
    // success path.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks `cmd` from the `redis-spawner` thread, which lives until the process
/// exits, so `PR_SET_PDEATHSIG` fires at process exit rather than when the
/// calling test thread ends.
fn spawn_from_spawner_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("redis-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the redis-spawner thread");
        tx
    });
    let (tx, rx) = mpsc::channel();
    spawner.send((cmd, tx)).expect("redis-spawner thread is alive");
    rx.recv().expect("redis-spawner thread answers")
}
