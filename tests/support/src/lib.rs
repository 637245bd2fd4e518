//! Support for the integration tests of `ratelimiter`: real processes of
//! the service and of Redis on loopback, stopped when their handles drop.
//!
//! A library of the workspace (`ratelimiter-testkit`, never published),
//! a dev-dependency of the root package, so every test binary links only
//! what it uses:
//!
//! - [`service`]: the `ratelimiter` binary as a child process, listening on
//!   a port it chose itself (it logs the address);
//! - [`redis`]: `redis-server` standalone and as a 6-node cluster, and
//!   `redis-cli`;
//! - [`ports`]: candidate ports for children that must be told a port
//!   (redis-server, nginx, Prometheus, the scripts), offered until the child
//!   does not report it taken — never bound here first;
//! - [`wait_until`] and [`poll_until`].
//!
//! # Finding the `ratelimiter` binary
//!
//! Cargo tells only the root package's own integration tests where its
//! binary is (`CARGO_BIN_EXE_ratelimiter`), at compile time, and this crate
//! is another package. [`service::binary`] finds it the way Cargo lays out
//! a build: the running test is `<target-dir>/<profile>/deps/<test>-<hash>`
//! and the binary `<target-dir>/<profile>/ratelimiter`, the very file
//! `CARGO_BIN_EXE_ratelimiter` names. This follows `CARGO_TARGET_DIR`,
//! `--release` and `--target`, and Cargo builds the binary before it runs
//! the root package's integration tests.

pub mod ports;
pub mod redis;
pub mod service;

use std::time::{Duration, Instant};

/// How often [`wait_until`] polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `f` every [`POLL_INTERVAL`] until it returns `true`; panics naming
/// `what` when `deadline` (measured from the call) passes first.
#[track_caller]
pub fn wait_until(what: &str, deadline: Duration, f: impl FnMut() -> bool) {
    if !poll_until(deadline, f) {
        panic!("timed out after {deadline:?} waiting for {what}");
    }
}

/// Like [`wait_until`] but returns whether `f` became `true` in time.
pub fn poll_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
