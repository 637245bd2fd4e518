//! A standalone `redis-server`.

use std::path::Path;
use std::process::Child;

use super::process::{cli, kill_child, ping, signal_child, spawn_server, temp_dir, try_cli};
use super::tls::TlsFiles;
use crate::ports;

/// A standalone `redis-server` on `127.0.0.1:port()`.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The TLS port and the options serving it, for a TLS server.
    tls: Option<(u16, Vec<String>)>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers
    /// `PING`: the server is offered candidate ports until one is not taken
    /// (see [`crate::ports`]).
    pub fn start() -> RedisServer {
        RedisServer::start_on(ports::candidate)
    }

    /// Like [`RedisServer::start`], offering the ports `candidate` returns.
    pub fn start_on(candidate: impl FnMut() -> u16) -> RedisServer {
        let dir = temp_dir("ratelimiter-redis-");
        let (port, child) = ports::retry("redis-server", candidate, |&port| {
            spawn_server(port, dir.path(), &[]).map(|child| (port, child))
        });
        RedisServer {
            port,
            dir,
            child: Some(child),
            tls: None,
        }
    }

    /// A server that also serves TLS, on [`RedisServer::tls_port`], with
    /// the certificates of `files` (client certificates asked for when
    /// `mutual`). The plain port stays, for `redis-cli` and readiness.
    pub fn start_tls(files: &TlsFiles, mutual: bool) -> RedisServer {
        let dir = temp_dir("ratelimiter-redis-tls-");
        let (port, child, args) = ports::retry(
            "redis-server with TLS",
            || ports::candidate_block(2),
            |&port| {
                let args = files.server_args(port + 1, mutual);
                let extra: Vec<&str> = args.iter().map(String::as_str).collect();
                spawn_server(port, dir.path(), &extra).map(|child| (port, child, args.clone()))
            },
        );
        RedisServer {
            port,
            dir,
            child: Some(child),
            tls: Some((port + 1, args)),
        }
    }

    /// The TLS port of a server from [`RedisServer::start_tls`].
    pub fn tls_port(&self) -> u16 {
        self.tls.as_ref().expect("not a TLS server").0
    }

    /// `rediss://localhost:TLS_PORT`
    pub fn tls_url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port())
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
        let extra: Vec<&str> = self
            .tls
            .as_ref()
            .map(|(_, args)| args.iter().map(String::as_str).collect())
            .unwrap_or_default();
        match spawn_server(self.port, self.dir.path(), &extra) {
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
