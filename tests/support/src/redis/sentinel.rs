//! A master, its replica and three Redis Sentinels watching them (quorum
//! 2), as Redis is run where one machine is enough but a failover must be
//! automatic.
//!
//! The sentinels mark the master down after [`DOWN_AFTER`] without an
//! answer and then promote the replica; [`RedisSentinels::master_port`]
//! asks them which server is the master now.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use super::process::{info_field, kill_child, role, spawn_sentinel, spawn_server, temp_dir, try_cli};
use crate::{ports, wait_until};

/// The name the sentinels monitor the master by.
pub const SERVICE_NAME: &str = "ratelimiter-main";
/// How long the master must be silent before a sentinel marks it down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

struct Process {
    port: u16,
    child: Option<Child>,
}

/// One master, one replica, three sentinels, all on loopback.
pub struct RedisSentinels {
    servers: Vec<Process>,
    sentinels: Vec<Process>,
    dir: tempfile::TempDir,
}

impl RedisSentinels {
    /// Starts the master, the replica and the sentinels, and waits until
    /// the replica is in sync and every sentinel knows the replica and the
    /// other two sentinels.
    pub fn start() -> RedisSentinels {
        let dir = temp_dir("ratelimiter-redis-sentinel-");
        let start_server = |name: &str, extra: Vec<String>| {
            let server_dir = dir.path().join(name);
            std::fs::create_dir_all(&server_dir).expect("create a server directory");
            ports::retry(name, ports::candidate, |&port| {
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                spawn_server(port, &server_dir, &extra).map(|child| Process {
                    port,
                    child: Some(child),
                })
            })
        };
        let master = start_server("master", Vec::new());
        let replica = start_server(
            "replica",
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
                "--repl-diskless-sync-delay".into(),
                "0".into(),
            ],
        );
        let master_port = master.port;
        let mut group = RedisSentinels {
            servers: vec![master, replica],
            sentinels: Vec::new(),
            dir,
        };
        for i in 0..3 {
            let sentinel_dir = group.dir.path().join(format!("sentinel-{i}"));
            std::fs::create_dir_all(&sentinel_dir).expect("create a sentinel directory");
            let conf = sentinel_dir.join("sentinel.conf");
            let sentinel = ports::retry("a sentinel", ports::candidate, |&port| {
                write_conf(&conf, master_port);
                spawn_sentinel(port, &sentinel_dir, &conf).map(|child| Process {
                    port,
                    child: Some(child),
                })
            });
            group.sentinels.push(sentinel);
        }
        wait_until(
            "the sentinels to know each other and the replica",
            READY_TIMEOUT,
            || {
                group.replica_in_sync()
                    && group.sentinels.iter().all(|s| {
                        let Ok(info) = try_cli(s.port, &["SENTINEL", "MASTER", SERVICE_NAME]) else {
                            return false;
                        };
                        let field = |name: &str| {
                            let lines: Vec<&str> = info.lines().collect();
                            lines
                                .iter()
                                .position(|l| *l == name)
                                .and_then(|i| lines.get(i + 1).copied())
                                .map(str::to_owned)
                        };
                        field("num-slaves").as_deref() == Some("1")
                            && field("num-other-sentinels").as_deref() == Some("2")
                    })
            },
        );
        group
    }

    /// `127.0.0.1:PORT` of every sentinel.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect()
    }

    /// The master's port as the sentinels say now (the first that answers).
    pub fn master_port(&self) -> u16 {
        for sentinel in &self.sentinels {
            if let Ok(out) = try_cli(sentinel.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE_NAME]) {
                if let Some(port) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                    return port;
                }
            }
        }
        panic!("no sentinel names a master");
    }

    /// SIGKILLs the master, and waits until the sentinels have promoted
    /// the replica and it answers as master. Returns its port.
    pub fn kill_master_and_wait_for_promotion(&mut self) -> u16 {
        let old = self.master_port();
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.port == old)
            .expect("the master is one of ours");
        kill_child(server.child.take().expect("the master runs"));
        self.wait_for_new_master(old)
    }

    /// `SENTINEL FAILOVER`: the replica becomes master and the master its
    /// replica, with no server lost. Returns the new master's port.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        try_cli(self.sentinels[0].port, &["SENTINEL", "FAILOVER", SERVICE_NAME])
            .unwrap_or_else(|e| panic!("SENTINEL FAILOVER: {e}"));
        self.wait_for_new_master(old)
    }

    fn wait_for_new_master(&self, old: u16) -> u16 {
        let mut new = old;
        wait_until("the sentinels to promote the replica", READY_TIMEOUT, || {
            new = self.master_port();
            new != old && role(new).as_deref() == Some("master")
        });
        new
    }

    fn replica_in_sync(&self) -> bool {
        self.servers.iter().any(|s| {
            try_cli(s.port, &["INFO", "replication"]).is_ok_and(|info| {
                info_field(&info, "role") == Some("slave") && info_field(&info, "master_link_status") == Some("up")
            })
        })
    }

    /// SIGKILLs sentinel `i`: its port refuses connections until
    /// [`RedisSentinels::restart_sentinel`].
    pub fn stop_sentinel(&mut self, i: usize) {
        if let Some(child) = self.sentinels[i].child.take() {
            kill_child(child);
        }
    }

    /// Starts sentinel `i` again on its port, with the configuration it
    /// rewrote (it still monitors the master and knows its peers), and
    /// waits until it names the master.
    pub fn restart_sentinel(&mut self, i: usize) {
        self.stop_sentinel(i);
        let sentinel_dir = self.dir.path().join(format!("sentinel-{i}"));
        let port = self.sentinels[i].port;
        let child = spawn_sentinel(port, &sentinel_dir, &sentinel_dir.join("sentinel.conf"))
            .unwrap_or_else(|e| panic!("could not restart the sentinel on port {port}: {e}"));
        self.sentinels[i].child = Some(child);
        wait_until("the restarted sentinel to name the master", READY_TIMEOUT, || {
            try_cli(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE_NAME])
                .is_ok_and(|out| out.lines().count() == 2)
        });
    }

    /// How many of sentinel `i`'s clients are subscribed to a channel
    /// (`CLIENT LIST`'s `sub=`), not counting `redis-cli` itself.
    pub fn sentinel_subscribers(&self, i: usize) -> usize {
        try_cli(self.sentinels[i].port, &["CLIENT", "LIST"])
            .map(|list| {
                list.lines()
                    .filter(|line| line.split(' ').any(|f| f.starts_with("sub=") && f != "sub=0"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Where the servers and sentinels keep their logs and files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn write_conf(conf: &Path, master_port: u16) {
    let text = format!(
        "sentinel monitor {SERVICE_NAME} 127.0.0.1 {master_port} 2\n\
         sentinel down-after-milliseconds {SERVICE_NAME} {}\n\
         sentinel failover-timeout {SERVICE_NAME} 10000\n\
         sentinel parallel-syncs {SERVICE_NAME} 1\n",
        DOWN_AFTER.as_millis()
    );
    std::fs::write(conf, text).expect("write sentinel.conf");
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for process in self.sentinels.iter_mut().chain(self.servers.iter_mut()) {
            if let Some(child) = process.child.take() {
                kill_child(child);
            }
        }
    }
}
