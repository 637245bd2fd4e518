//! Group commit of checks on a standalone Redis: the checks waiting at a
//! given moment go to Redis as one `EVALSHA` of their algorithm's batched
//! script (`lua/batch.lua`), instead of one command each.
//!
//! Why: a check is a few microseconds of Lua, but each command costs a
//! `writev` and a wake-up on both sides of the socket, and fred flushes
//! every command on its own when its queue is empty — which, with checks
//! arriving one by one from many HTTP connections, is always. Batching
//! turns N writes, N reads and N script calls into one of each.
//!
//! How: one *lane* per pooled connection, a task that takes a check, then
//! every check already queued behind it (up to [`MAX_BATCH`]), sends them
//! grouped by script — one group per algorithm, and one for the checks of
//! several limits (`lua/multi_batch.lua`) — all groups at once, and
//! answers each caller.
//! While a batch is in flight the next one queues, so batches grow with the
//! load and a lone check goes out at once (on its own, with the single
//! script): nothing waits for a batch to fill. When traces are exported,
//! each check's `store` span records how many checks its script call
//! carried (`batch`, see [`crate::telemetry`]).
//!
//! A batch is one script call, hence atomic as a whole, and its checks are
//! decided in queue order at one server time, each exactly as the single
//! script would (the differential test holds the batched scripts to the
//! single ones). On a cluster each master has its lanes, and a script
//! call carries the checks of one slot only (the keys of one call must
//! share a slot): a hot key batches with itself, while concurrent checks
//! of different keys mostly go one per call, sent together.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::prelude::ErrorKind;
use fred::types::Value;
use tokio::sync::{mpsc, oneshot};

use super::scripts::Scripts;
use super::TimeSource;
use crate::core::Algorithm;
use crate::metrics::Metrics;

tokio::task_local! {
    /// The lane every check of a `/check/batch` goes to.
    static LANE: Option<usize>;
}

/// Runs `checks` with their store calls all queued on `lane` (when there is
/// one), so they leave together.
pub fn together<F: Future>(lane: Option<usize>, checks: F) -> impl Future<Output = F::Output> {
    LANE.scope(lane, checks)
}

/// The `ARGV` of the single script: limit, window_us,
/// emission_interval_us, cost, then `now` (empty for the server's clock).
pub fn single_args(args: [u64; 4], now: String) -> Vec<String> {
    args.iter().map(u64::to_string).chain(std::iter::once(now)).collect()
}

/// The most checks in one script call.
pub const MAX_BATCH: usize = 128;

/// The numbers of one check's reply: allowed, limit, remaining,
/// reset_after_us, retry_after_us, now_us.
const REPLY_LEN: usize = 6;

/// What one waiting check asks.
pub enum Work {
    /// A check of one limit under `algorithm`: limit, window_us,
    /// emission_interval_us, cost.
    Single { algorithm: Algorithm, args: [u64; 4] },
    /// A check of several limits: its `ARGV` in `lua/multi.lua` (cost,
    /// consume, the number of limits, five per limit).
    Several { args: Vec<String> },
}

impl Work {
    /// What checks share one script call: one algorithm's, or those of
    /// several limits.
    fn script(&self) -> Option<Algorithm> {
        match self {
            Work::Single { algorithm, .. } => Some(*algorithm),
            Work::Several { .. } => None,
        }
    }
}

/// One check waiting for its lane.
pub struct Job {
    work: Work,
    /// The cluster slot of its keys (0 on a standalone Redis): one script
    /// call carries checks of one slot only.
    slot: u16,
    /// The state keys of the check (one per limit, two for the sliding log).
    keys: Vec<String>,
    /// The answer, and how many checks the script call carried.
    reply: oneshot::Sender<(Result<Value, FredError>, usize)>,
}

/// The lanes, picked round-robin.
pub struct Batcher {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
    /// The lanes reach one master of a cluster: checks are grouped by slot.
    clustered: bool,
}

impl Batcher {
    /// Starts one lane per client: of a standalone Redis, or of one master
    /// of a cluster (`clustered`, whose checks are grouped by slot).
    pub fn start(
        clients: &[Client],
        scripts: Arc<Scripts>,
        time: TimeSource,
        metrics: Arc<Metrics>,
        clustered: bool,
    ) -> Batcher {
        let lanes = clients
            .iter()
            .map(|client| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(lane(client.clone(), scripts.clone(), time.clone(), metrics.clone(), rx));
                tx
            })
            .collect();
        Batcher {
            lanes,
            next: AtomicUsize::new(0),
            clustered,
        }
    }

    /// The next lane, round-robin.
    pub fn pick_lane(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()
    }

    /// Queues a check and waits for its reply (the caller bounds the wait):
    /// on the lane of the enclosing [`together`], or the next one.
    pub async fn check(&self, algorithm: Algorithm, keys: Vec<String>, args: [u64; 4]) -> Result<Vec<i64>, FredError> {
        self.queue(Work::Single { algorithm, args }, keys).await?.convert()
    }

    /// Queues a check of several limits (`args` as [`Work::Several`]) and
    /// waits for its replies, one per limit.
    pub async fn check_several(&self, keys: Vec<String>, args: Vec<String>) -> Result<Vec<Vec<i64>>, FredError> {
        self.queue(Work::Several { args }, keys).await?.convert()
    }

    async fn queue(&self, work: Work, keys: Vec<String>) -> Result<Value, FredError> {
        let (reply, answer) = oneshot::channel();
        let lane = match LANE.try_with(|lane| *lane) {
            Ok(Some(lane)) => lane % self.lanes.len(),
            _ => self.pick_lane(),
        };
        let slot = match (self.clustered, keys.first()) {
            (true, Some(key)) => fred::util::redis_keyslot(key.as_bytes()),
            _ => 0,
        };
        if self.lanes[lane]
            .send(Job {
                work,
                slot,
                keys,
                reply,
            })
            .is_err()
        {
            return Err(FredError::new(ErrorKind::Canceled, "the batching task stopped"));
        }
        let (answer, checks) = answer.await.unwrap_or_else(|_| {
            let dropped = FredError::new(ErrorKind::Canceled, "the batching task dropped the check");
            (Err(dropped), 1)
        });
        crate::telemetry::record_batch(checks);
        answer
    }
}

async fn lane(
    client: Client,
    scripts: Arc<Scripts>,
    time: TimeSource,
    metrics: Arc<Metrics>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let now = time.argument();
        let mut groups: Vec<Vec<Job>> = Vec::new();
        for job in jobs {
            match groups
                .iter_mut()
                .find(|g| g[0].slot == job.slot && g[0].work.script() == job.work.script())
            {
                Some(group) => group.push(job),
                None => groups.push(vec![job]),
            }
        }
        let sends = groups
            .into_iter()
            .map(|group| send(&client, &scripts, &metrics, &now, group));
        futures_util::future::join_all(sends).await;
    }
}

/// Sends one script's checks (one call) and answers each.
async fn send(client: &Client, scripts: &Scripts, metrics: &Metrics, now: &str, group: Vec<Job>) {
    metrics.redis_operations.with_label_values(&["evalsha"]).inc();
    metrics.redis_batch_size.observe(group.len() as f64);
    let script = group[0].work.script();
    let checks = group.len();
    let one = checks == 1;
    let mut keys = Vec::with_capacity(group.iter().map(|job| job.keys.len()).sum());
    let mut args = Vec::new();
    let mut replies = Vec::with_capacity(group.len());
    match script {
        // A lone check runs the single script.
        Some(_) if one => {}
        Some(_) => {
            args.reserve(2 + group.len() * 4);
            args.push(group[0].keys.len().to_string());
            args.push(now.to_owned());
        }
        None => args.push(now.to_owned()),
    }
    for job in group {
        keys.extend(job.keys);
        match job.work {
            Work::Single { args: single, .. } if one => args = single_args(single, now.to_owned()),
            Work::Single { args: single, .. } => args.extend(single.iter().map(u64::to_string)),
            Work::Several { args: several } => args.extend(several),
        }
        replies.push(job.reply);
    }
    let call = match script {
        Some(algorithm) if one => scripts.get(algorithm),
        Some(algorithm) => scripts.batched(algorithm),
        None if one => scripts.multi(),
        None => scripts.multi_batched(),
    };
    let result = call.evalsha_with_reload::<Value, _, _>(client, keys, args).await;
    if one {
        if let Some(reply) = replies.pop() {
            let _ = reply.send((result, checks));
        }
        return;
    }
    // A batch of one algorithm answers one flat array, six numbers per
    // check (lua/batch_head.lua); a batch of checks of several limits, an
    // array per check.
    let flat = script.is_some();
    let decided = result.and_then(|value| value.convert::<Vec<Value>>()).map(|decided| {
        if flat && decided.len() == replies.len() * REPLY_LEN {
            decided
                .chunks(REPLY_LEN)
                .map(|reply| Value::Array(reply.to_vec()))
                .collect()
        } else {
            decided
        }
    });
    match decided {
        Ok(decided) if decided.len() == replies.len() => {
            for (reply, decision) in replies.into_iter().zip(decided) {
                let _ = reply.send((Ok(decision), checks));
            }
        }
        Ok(decided) => {
            let error = FredError::new(
                ErrorKind::Protocol,
                format!(
                    "a batched script answered {} checks of {}",
                    decided.len(),
                    replies.len()
                ),
            );
            for reply in replies {
                let _ = reply.send((Err(error.clone()), checks));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send((Err(error.clone()), checks));
            }
        }
    }
}
