//! Helpers shared by integration-test binaries: real processes of the
//! service and of Redis, started on free loopback ports and stopped on drop. Include with
//!
//! ```ignore
//! #[path = "../support/mod.rs"]
//! mod support;
//! ```
//!
//! Every binary compiles all of it, and most use only part of it.
#![allow(dead_code)]

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
