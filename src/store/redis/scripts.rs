//! The Lua scripts, one per algorithm, embedded at build time from
//! `lua/*.lua`. Each mirrors the Rust function in `src/core/` of the same
//! name; the header of each file documents its `KEYS`, `ARGV` and reply,
//! and `lua/prelude.lua`, prepended to each, holds what they share.
//!
//! Scripts are called with EVALSHA; a `NOSCRIPT` reply (a new node, a
//! promoted replica, `SCRIPT FLUSH`) loads the script on every primary and
//! retries once.

use fred::types::scripts::Script;

use crate::core::Algorithm;

/// Every script is `lua/prelude.lua` (integer helpers, the common `ARGV`,
/// the time) followed by its algorithm.
macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("lua/prelude.lua"), include_str!(concat!("lua/", $file)))
    };
}

pub const TOKEN_BUCKET: &str = script!("token_bucket.lua");
pub const GCRA: &str = script!("gcra.lua");
pub const FIXED_WINDOW: &str = script!("fixed_window.lua");
pub const SLIDING_WINDOW_COUNTER: &str = script!("sliding_window_counter.lua");
pub const SLIDING_WINDOW_LOG: &str = script!("sliding_window_log.lua");

/// The five scripts with their SHA-1 digests.
pub struct Scripts {
    token_bucket: Script,
    gcra: Script,
    fixed_window: Script,
    sliding_window_counter: Script,
    sliding_window_log: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            token_bucket: Script::from_lua(TOKEN_BUCKET),
            gcra: Script::from_lua(GCRA),
            fixed_window: Script::from_lua(FIXED_WINDOW),
            sliding_window_counter: Script::from_lua(SLIDING_WINDOW_COUNTER),
            sliding_window_log: Script::from_lua(SLIDING_WINDOW_LOG),
        }
    }

    pub fn get(&self, algorithm: Algorithm) -> &Script {
        match algorithm {
            Algorithm::TokenBucket => &self.token_bucket,
            Algorithm::Gcra => &self.gcra,
            Algorithm::FixedWindow => &self.fixed_window,
            Algorithm::SlidingWindowCounter => &self.sliding_window_counter,
            Algorithm::SlidingWindowLog => &self.sliding_window_log,
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &Script> {
        Algorithm::ALL.into_iter().map(|a| self.get(a))
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts::new()
    }
}
