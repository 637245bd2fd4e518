//! A 6-node Redis Cluster on loopback.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::nodes::{parse_nodes, topology_of};
use super::process::{cli, info_field, kill_child, role, spawn_server, temp_dir, try_cli, MISSING};
use super::tls::TlsFiles;
use super::CLUSTER_SLOTS;
use crate::{poll_until, ports, wait_until};

/// How long the cluster may take to converge after a change.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
const CLUSTER_NODES: usize = 6;

/// A 6-node Redis Cluster (3 masters with one replica each) on loopback, with
/// `--cluster-node-timeout 1000` so failure detection takes about a second,
/// and `--cluster-require-full-coverage no` so a failed master's slots do
/// not stop the others.
///
/// Methods that list nodes (`seed_urls`, `ports`, `masters`, `replicas`) only
/// list nodes that have not been killed, and read roles live (they change with
/// [`RedisCluster::failover`] and [`RedisCluster::kill_master_and_wait_for_promotion`]).
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
    /// Nodes also serve TLS, one port above their plain port.
    tls: bool,
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
    ///
    /// Each node is offered candidate ports until neither its port nor its
    /// bus port (`port + 10000`) is taken (see [`crate::ports`]); the
    /// candidates of one process never clash with each other.
    pub fn start() -> RedisCluster {
        RedisCluster::start_on(ports::candidate_cluster)
    }

    /// Like [`RedisCluster::start`], offering the nodes the ports
    /// `candidate` returns.
    pub fn start_on(candidate: impl FnMut() -> u16) -> RedisCluster {
        RedisCluster::start_nodes(candidate, None)
    }

    /// A cluster whose nodes also serve TLS, each one port above its plain
    /// port ([`RedisCluster::tls_seed_urls`]), and speak TLS to each other
    /// (cluster bus and replication) with the certificates of `files`. The
    /// slot map a TLS client reads names the TLS ports, and `localhost` as
    /// every node's announced hostname (as managed services name their
    /// nodes for their certificates). The plain ports stay, for
    /// `redis-cli` and the health checks.
    pub fn start_tls(files: &TlsFiles) -> RedisCluster {
        RedisCluster::start_nodes(|| ports::candidate_cluster_block(2), Some(files))
    }

    fn start_nodes(mut candidate: impl FnMut() -> u16, tls: Option<&TlsFiles>) -> RedisCluster {
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir: temp_dir("ratelimiter-redis-cluster-"),
            tls: tls.is_some(),
        };
        while cluster.nodes.len() < CLUSTER_NODES {
            let dir = cluster.dir.path();
            let node = ports::retry("a cluster node", &mut candidate, |&port| {
                let tls_args = tls.map(|files| {
                    let mut args = files.server_args(port + 1, false);
                    args.extend(
                        [
                            "--tls-cluster",
                            "yes",
                            "--tls-replication",
                            "yes",
                            "--cluster-port",
                            &(port + ports::BUS_OFFSET).to_string(),
                            "--cluster-announce-hostname",
                            "localhost",
                        ]
                        .map(str::to_owned),
                    );
                    args
                });
                start_node(dir, port, tls_args.as_deref().unwrap_or_default()).map(|child| ClusterNode {
                    port,
                    child: Some(child),
                })
            });
            cluster.nodes.push(node);
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

    /// `rediss://localhost:TLS_PORT` for every live node of a cluster from
    /// [`RedisCluster::start_tls`].
    pub fn tls_seed_urls(&self) -> Vec<String> {
        assert!(self.tls, "not a TLS cluster");
        self.ports()
            .into_iter()
            .map(|p| format!("rediss://localhost:{}", p + 1))
            .collect()
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

/// Spawns a cluster-enabled `redis-server` on `port`, in a directory of its
/// own below `dir` (see `spawn_server`).
fn start_node(dir: &Path, port: u16, tls_args: &[String]) -> Result<Child, String> {
    let node_dir = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).expect("create node directory");
    let conf = node_dir.join("nodes.conf");
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        conf.to_str().expect("utf-8 temp dir"),
        "--cluster-node-timeout",
        "1000",
        // The healthy masters keep serving while one master's slots are
        // uncovered (as production clusters for the service should).
        "--cluster-require-full-coverage",
        "no",
        "--repl-diskless-sync-delay",
        "0",
    ];
    let args: Vec<&str> = args.into_iter().chain(tls_args.iter().map(String::as_str)).collect();
    spawn_server(port, &node_dir, &args)
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
