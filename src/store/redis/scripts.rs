//! The Lua scripts, one per algorithm, embedded at build time from
//! `lua/*.lua`. Each mirrors the Rust function in `src/core/` of the same
//! name; the header of each file documents its `KEYS`, `ARGV` and reply,
//! and `lua/prelude.lua`, prepended to each, holds what they share.
//!
//! Each also has a batched form, which decides several checks of its
//! algorithm in one call (`lua/batch_head.lua` and `lua/batch.lua` around
//! the same algorithm text). One more script holds all five as functions
//! and decides a check with several limits, all or nothing
//! (`lua/multi.lua`, called by `lua/multi_one.lua`), and its batched form
//! several such checks in a row (`lua/multi_batch.lua`); there each
//! algorithm decides once and keeps its writes (`write` a table, see `put`
//! in `lua/prelude.lua`), done only when every limit has allowed.
//!
//! Scripts are called with EVALSHA; a `NOSCRIPT` reply (a new node, a
//! promoted replica, `SCRIPT FLUSH`) loads the script on every primary and
//! retries once.

use fred::types::scripts::Script;

use crate::core::Algorithm;

/// Every script is `lua/prelude.lua` (integer helpers), `lua/arguments.lua`
/// (the check's `ARGV`, the time) and its algorithm.
macro_rules! script {
    ($file:literal) => {
        concat!(
            include_str!("lua/prelude.lua"),
            include_str!("lua/arguments.lua"),
            include_str!(concat!("lua/", $file))
        )
    };
}

/// The batched form of a script: the same algorithm text as the body of a
/// function, called once per check by `lua/batch.lua`.
macro_rules! batch_script {
    ($file:literal) => {
        concat!(
            include_str!("lua/prelude.lua"),
            include_str!("lua/batch_head.lua"),
            include_str!(concat!("lua/", $file)),
            include_str!("lua/batch.lua")
        )
    };
}

pub const TOKEN_BUCKET: &str = script!("token_bucket.lua");
pub const GCRA: &str = script!("gcra.lua");
pub const FIXED_WINDOW: &str = script!("fixed_window.lua");
pub const SLIDING_WINDOW_COUNTER: &str = script!("sliding_window_counter.lua");
pub const SLIDING_WINDOW_LOG: &str = script!("sliding_window_log.lua");
pub const CONCURRENCY: &str = script!("concurrency.lua");

/// The text shared by the scripts of checks with several limits: the five
/// algorithms as functions, each of its limit's keys and arguments and of
/// whether to write, and `check_limits` (`lua/multi.lua`).
macro_rules! multi_script {
    ($file:literal) => {
        concat!(
            include_str!("lua/prelude.lua"),
            "local function token_bucket(KEYS, limit, window, interval, cost, now, write)\n",
            include_str!("lua/token_bucket.lua"),
            "end\nlocal function gcra(KEYS, limit, window, interval, cost, now, write)\n",
            include_str!("lua/gcra.lua"),
            "end\nlocal function fixed_window(KEYS, limit, window, interval, cost, now, write)\n",
            include_str!("lua/fixed_window.lua"),
            "end\nlocal function sliding_window_counter(KEYS, limit, window, interval, cost, now, write)\n",
            include_str!("lua/sliding_window_counter.lua"),
            "end\nlocal function sliding_window_log(KEYS, limit, window, interval, cost, now, write)\n",
            include_str!("lua/sliding_window_log.lua"),
            "end\nlocal function concurrency(KEYS, limit, window, interval, cost, now, write)\n",
            include_str!("lua/concurrency.lua"),
            "end\n",
            include_str!("lua/multi.lua"),
            include_str!(concat!("lua/", $file))
        )
    };
}

/// The script of one check with several limits (`lua/multi_one.lua`).
pub const MULTI: &str = multi_script!("multi_one.lua");

/// The script of several such checks in a row (`lua/multi_batch.lua`).
pub const MULTI_BATCH: &str = multi_script!("multi_batch.lua");

/// The script of a report, or of a check applied once per id
/// (`lua/once.lua`).
pub const ONCE: &str = multi_script!("once.lua");

/// The script that releases or renews a lease (`lua/lease.lua`).
pub const LEASE: &str = concat!(include_str!("lua/prelude.lua"), include_str!("lua/lease.lua"));

/// An algorithm's number in `lua/multi.lua`'s arguments.
pub fn multi_index(algorithm: Algorithm) -> u64 {
    match algorithm {
        Algorithm::TokenBucket => 1,
        Algorithm::Gcra => 2,
        Algorithm::FixedWindow => 3,
        Algorithm::SlidingWindowCounter => 4,
        Algorithm::SlidingWindowLog => 5,
        Algorithm::Concurrency => 6,
    }
}

pub const TOKEN_BUCKET_BATCH: &str = batch_script!("token_bucket.lua");
pub const GCRA_BATCH: &str = batch_script!("gcra.lua");
pub const FIXED_WINDOW_BATCH: &str = batch_script!("fixed_window.lua");
pub const SLIDING_WINDOW_COUNTER_BATCH: &str = batch_script!("sliding_window_counter.lua");
pub const SLIDING_WINDOW_LOG_BATCH: &str = batch_script!("sliding_window_log.lua");
pub const CONCURRENCY_BATCH: &str = batch_script!("concurrency.lua");

/// The five scripts, single and batched, with their SHA-1 digests.
pub struct Scripts {
    token_bucket: Script,
    gcra: Script,
    fixed_window: Script,
    sliding_window_counter: Script,
    sliding_window_log: Script,
    concurrency: Script,
    batched: [Script; 6],
    multi: Script,
    multi_batched: Script,
    once: Script,
    lease: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            token_bucket: Script::from_lua(TOKEN_BUCKET),
            gcra: Script::from_lua(GCRA),
            fixed_window: Script::from_lua(FIXED_WINDOW),
            sliding_window_counter: Script::from_lua(SLIDING_WINDOW_COUNTER),
            sliding_window_log: Script::from_lua(SLIDING_WINDOW_LOG),
            concurrency: Script::from_lua(CONCURRENCY),
            batched: [
                Script::from_lua(TOKEN_BUCKET_BATCH),
                Script::from_lua(GCRA_BATCH),
                Script::from_lua(FIXED_WINDOW_BATCH),
                Script::from_lua(SLIDING_WINDOW_COUNTER_BATCH),
                Script::from_lua(SLIDING_WINDOW_LOG_BATCH),
                Script::from_lua(CONCURRENCY_BATCH),
            ],
            multi: Script::from_lua(MULTI),
            multi_batched: Script::from_lua(MULTI_BATCH),
            once: Script::from_lua(ONCE),
            lease: Script::from_lua(LEASE),
        }
    }

    /// The batched form of `algorithm`'s script (see `lua/batch.lua`).
    pub fn batched(&self, algorithm: Algorithm) -> &Script {
        let index = match algorithm {
            Algorithm::TokenBucket => 0,
            Algorithm::Gcra => 1,
            Algorithm::FixedWindow => 2,
            Algorithm::SlidingWindowCounter => 3,
            Algorithm::SlidingWindowLog => 4,
            Algorithm::Concurrency => 5,
        };
        &self.batched[index]
    }

    pub fn get(&self, algorithm: Algorithm) -> &Script {
        match algorithm {
            Algorithm::TokenBucket => &self.token_bucket,
            Algorithm::Gcra => &self.gcra,
            Algorithm::FixedWindow => &self.fixed_window,
            Algorithm::SlidingWindowCounter => &self.sliding_window_counter,
            Algorithm::SlidingWindowLog => &self.sliding_window_log,
            Algorithm::Concurrency => &self.concurrency,
        }
    }

    /// The script of a check with several limits.
    pub fn multi(&self) -> &Script {
        &self.multi
    }

    /// The script of several checks with several limits, in a row.
    pub fn multi_batched(&self) -> &Script {
        &self.multi_batched
    }

    /// The script of a report, or of a check with an id.
    pub fn once(&self) -> &Script {
        &self.once
    }

    /// The script that releases or renews a lease.
    pub fn lease(&self) -> &Script {
        &self.lease
    }

    /// Every script: single, batched, the two for several limits, and the
    /// one for reports and checks with an id.
    pub fn all(&self) -> impl Iterator<Item = &Script> {
        Algorithm::EVERY
            .into_iter()
            .map(|a| self.get(a))
            .chain(self.batched.iter())
            .chain([&self.multi, &self.multi_batched, &self.once, &self.lease])
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts::new()
    }
}
