//! Real Redis processes for integration tests: a standalone server
//! ([`RedisServer`]) and a 6-node cluster ([`RedisCluster`]), driven through
//! Debian's `redis-server` and `redis-cli` binaries (no client crate).
//!
//! Every process listens on 127.0.0.1 only, on a port it was offered at
//! start and found free (see [`crate::ports`]), keeps nothing on disk
//! (`--save '' --appendonly no`) and lives in its own temporary directory
//! (holding its `redis.log`). Dropping the handle kills the processes and
//! waits for them.
//!
//! The helpers are blocking (they spawn `redis-cli` and sleep while polling);
//! from an async test that is fine for setup and for the fault-injection
//! methods, as long as the runtime has another thread for the code under test
//! when it must make progress meanwhile.
//!
//! - `server`: [`RedisServer`];
//! - `cluster`: [`RedisCluster`], with `nodes` reading `CLUSTER NODES`;
//! - `sentinel`: [`RedisSentinels`], a master, its replica and three
//!   sentinels;
//! - `tls`: [`TlsFiles`], certificates made at test time for servers that
//!   also serve TLS ([`RedisServer::start_tls`], [`RedisCluster::start_tls`]);
//! - `process`: spawning and stopping `redis-server` (and why a single
//!   thread forks them all), and `redis-cli`.

mod cluster;
mod nodes;
mod process;
mod sentinel;
mod server;
mod tls;

pub use cluster::RedisCluster;
pub use process::{cli, try_cli};
pub use sentinel::{RedisSentinels, SERVICE_NAME as SENTINEL_SERVICE_NAME};
pub use server::RedisServer;
pub use tls::TlsFiles;

/// Number of hash slots in a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;
