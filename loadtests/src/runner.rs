//! Sends the requests and records what came back.
//!
//! One task per connection. In a closed loop a task sends its next request
//! as soon as the previous one is answered; at a fixed rate it sends at the
//! times of a schedule (see [`Ticks`]) whatever the answers, and a request
//! held back by a slow earlier answer has its latency measured from its
//! *intended* send time, so a stalled service shows up as latency instead of
//! as fewer, faster requests (coordinated omission). A task that was idle at
//! its send time and only woke late (the timer ticks in milliseconds) is not
//! charged that lateness: nothing of the service's held the request back, so
//! its latency runs from the moment it actually left.
//!
//! Requests go through one hyper-util client (HTTP/1.1, keep-alive). Each
//! task has at most one request in flight and reads every answer to its end,
//! which returns the connection to the pool before the next request, so a
//! run holds at most one connection per task and target.
//!
//! Every task keeps its own counters and histograms and hands them back when
//! it ends; only the per-second latency histograms are shared, flushed once
//! a second. The timeline files a request's latency under the second of its
//! (intended) send time, and its answer under the second it came back (so a
//! stall shows as a dip in answers, then a catch-up); answers that come back
//! after the last second, the drain of in-flight requests, count in the last
//! one instead of making a short, odd extra second.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::config::{Load, Phase, Settings};
use crate::keys::{key_name, KeyGen};

/// The HTTP client every request goes through.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Latencies are recorded in microseconds, up to a minute.
const MAX_LATENCY_US: u64 = 60_000_000;
/// After a refused connection a closed-loop task waits this long, so a
/// target that is down is not hammered in a tight loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// A client for `connections` concurrent requests: HTTP/1.1, keep-alive,
/// `TCP_NODELAY`, connects bounded by `timeout`.
pub fn client(timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The connection could not be opened.
    Connect(String),
    /// No complete answer within the timeout.
    Timeout,
    /// The connection failed during the exchange.
    Other(String),
}

/// `GET uri` with a timeout; the body of a 200 answer.
pub async fn get(client: &HttpClient, uri: &Uri, timeout: Duration) -> Result<Bytes, String> {
    let request = Request::get(uri.clone())
        .body(Full::new(Bytes::new()))
        .expect("a GET request is valid");
    match exchange(client, request, timeout).await {
        Ok((StatusCode::OK, body)) => Ok(body),
        Ok((status, _)) => Err(format!("GET {uri} answered {status}")),
        Err(SendError::Timeout) => Err(format!("GET {uri} timed out after {timeout:?}")),
        Err(SendError::Connect(e) | SendError::Other(e)) => Err(format!("GET {uri}: {e}")),
    }
}

async fn exchange(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), SendError> {
    let attempt = async {
        let response = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                SendError::Connect(error_chain(&e))
            } else {
                SendError::Other(error_chain(&e))
            }
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| SendError::Other(error_chain(&e)))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(SendError::Timeout))
}

/// One ShouldRateLimit call for `key`: whether it was `OK`.
async fn grpc_call(mut client: GrpcClient, domain: &str, shared: &Shared, key: &str) -> Result<bool, String> {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
    let entry = |key: &str, value: &str| Entry {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    let mut entries = vec![entry("key", key)];
    if let Some(endpoint) = &shared.endpoint {
        entries.push(entry("endpoint", endpoint));
    }
    if let Some(tier) = &shared.tier {
        entries.push(entry("tier", tier));
    }
    let request = RateLimitRequest {
        domain: domain.to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries,
            ..Default::default()
        }],
        hits_addend: shared.cost.map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX)),
    };
    let call = client.should_rate_limit(request);
    match tokio::time::timeout(shared.timeout, call).await {
        // OVER_LIMIT is 2.
        Ok(Ok(answer)) => Ok(answer.into_inner().overall_code != 2),
        Ok(Err(status)) => Err(format!("gRPC {:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("gRPC timeout after {:?}", shared.timeout)),
    }
}

/// `error: cause: cause…`, since hyper's top-level messages are terse.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The send times of one task in a fixed-rate run. The run's send times are
/// evenly spaced within each phase and numbered across all phases; task
/// `first` of `step` tasks takes every `step`-th number, so all tasks
/// together send at exactly each phase's rate and share the load evenly.
#[derive(Debug, Clone)]
pub struct Ticks {
    /// (offset of the phase from the run's start, its rate, the number of
    /// its first send, the number after its last send)
    phases: Vec<(Duration, f64, u64, u64)>,
    phase: usize,
    /// The number of this task's next send.
    next: u64,
    step: u64,
}

impl Ticks {
    pub fn new(phases: &[Phase], first: usize, step: usize) -> Ticks {
        let mut offset = Duration::ZERO;
        let mut numbered = 0u64;
        let phases = phases
            .iter()
            .map(|p| {
                // The k ≥ 0 with k / rate < duration.
                let count = if p.rate > 0.0 {
                    (p.duration.as_secs_f64() * p.rate - 1e-9).ceil().max(0.0) as u64
                } else {
                    0
                };
                let phase = (offset, p.rate, numbered, numbered + count);
                offset += p.duration;
                numbered += count;
                phase
            })
            .collect();
        Ticks {
            phases,
            phase: 0,
            next: first as u64,
            step: step.max(1) as u64,
        }
    }
}

impl Iterator for Ticks {
    /// The offset from the run's start at which to send.
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        while let Some(&(start, rate, from, to)) = self.phases.get(self.phase) {
            if self.next < to {
                let k = self.next - from;
                self.next += self.step;
                return Some(start + Duration::from_secs_f64(k as f64 / rate));
            }
            self.phase += 1;
        }
        None
    }
}

/// Failures without an answer, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub connect: u64,
    pub timeout: u64,
    pub other: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.other
    }
    fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.other += o.other;
    }
}

/// One second of the run.
#[derive(Debug, Clone)]
pub struct SecondStats {
    /// Latency of the answered requests (intended to be) sent in it.
    pub latency_us: Histogram<u64>,
    /// What came back in it.
    pub done: Completions,
}

/// Answers and failures that came back in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completions {
    pub answered: u64,
    pub allowed: u64,
    pub errors: u64,
}

impl Completions {
    fn add(&mut self, o: &Completions) {
        self.answered += o.answered;
        self.allowed += o.allowed;
        self.errors += o.errors;
    }
}

/// A histogram for one second: two significant digits are plenty for a plot.
pub fn second_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("valid histogram bounds")
}

/// Requests and `allowed` answers of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCount {
    pub requests: u64,
    pub allowed: u64,
}

/// Everything a run measured.
#[derive(Debug)]
pub struct RunData {
    /// Wall-clock time the run started, nanoseconds since the Unix epoch.
    pub start_unix_ns: u128,
    /// From the start to the last answer (or failure).
    pub elapsed: Duration,
    /// Requests sent (answered or not).
    pub sent: u64,
    /// Latency of every answered request, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Per second of the run, by (intended) send time.
    pub timeline: Vec<SecondStats>,
    /// The stretch of time the timeline covers: the load's duration, or
    /// `elapsed` when `--requests` ended the run first or no duration was
    /// set. Its last second may be partial.
    pub timeline_span: Duration,
    pub statuses: BTreeMap<u16, u64>,
    pub reasons: BTreeMap<String, u64>,
    pub errors: ErrorCounts,
    /// Per key index.
    pub keys: HashMap<u64, KeyCount>,
    /// The distinct `limit`s the answers reported.
    pub limits_seen: BTreeSet<u64>,
    /// The first answer that was not a decision (e.g. a 400's body), and the
    /// first error message, to explain a run that went wrong.
    pub first_unexpected: Option<String>,
    pub first_error: Option<String>,
    /// At a fixed rate: how far behind its schedule a send ever was because
    /// its connection was still waiting for an earlier answer (too few
    /// connections for the rate and latency).
    pub max_send_lag: Duration,
}

impl RunData {
    pub fn answered(&self) -> u64 {
        self.latency_us.len()
    }
}

/// What a `/check` answer says; only the fields counted.
#[derive(Deserialize)]
struct Decision<'a> {
    #[serde(borrow)]
    reason: &'a str,
    limit: u64,
}

/// The JSON body of a `/check` request.
#[derive(Serialize)]
struct CheckBody<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<&'a BTreeMap<String, String>>,
}

/// A gRPC RateLimitService client (over one HTTP/2 connection).
type GrpcClient = envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient<
    tonic::transport::Channel,
>;

/// Tasks per gRPC connection: HTTP/2 multiplexes them.
const TASKS_PER_GRPC_CONNECTION: usize = 8;

/// What all tasks share.
struct Shared {
    client: HttpClient,
    /// With --grpc: a client per few tasks, and the domain.
    grpc: Option<(Vec<GrpcClient>, String)>,
    targets: Vec<Uri>,
    keys: KeyGen,
    key_prefix: String,
    endpoint: Option<String>,
    tier: Option<String>,
    scopes: Option<BTreeMap<String, String>>,
    cost: Option<u64>,
    timeout: Duration,
    start: Instant,
    /// Closed loop: no request is sent after this.
    deadline: Option<Instant>,
    next_seq: AtomicU64,
    max_requests: u64,
    /// Latency per second of (intended) send time.
    timeline: Mutex<Vec<Histogram<u64>>>,
}

/// Runs the load described by `settings` through `client`; returns when
/// every task has stopped (by time, by count, or both).
pub async fn run(settings: &Settings, client: HttpClient) -> RunData {
    let connections = settings.connections.get();
    let start_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let start = Instant::now();
    let deadline = match &settings.load {
        Load::Closed { duration } => duration.map(|d| start + d),
        Load::Rate { .. } => None,
    };
    let grpc = match &settings.grpc {
        Some((addr, domain)) => {
            let mut clients = Vec::new();
            for _ in 0..connections.div_ceil(TASKS_PER_GRPC_CONNECTION) {
                let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .expect("a gRPC address")
                    .tcp_nodelay(true)
                    .connect_timeout(settings.timeout);
                clients.push(GrpcClient::new(endpoint.connect_lazy()));
            }
            Some((clients, domain.clone()))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        grpc,
        client,
        targets: settings.targets.iter().map(|t| t.check_uri().clone()).collect(),
        keys: KeyGen::new(&settings.keys),
        key_prefix: settings.key_prefix.clone(),
        endpoint: settings.endpoint.clone(),
        tier: settings.tier.clone(),
        scopes: (!settings.scopes.is_empty()).then(|| settings.scopes.iter().cloned().collect()),
        cost: settings.cost.map(|c| c.get()),
        timeout: settings.timeout,
        start,
        deadline,
        next_seq: AtomicU64::new(0),
        max_requests: settings.max_requests.map_or(u64::MAX, |n| n.get()),
        timeline: Mutex::new(Vec::new()),
    });

    let tasks: Vec<_> = (0..connections)
        .map(|id| {
            let shared = shared.clone();
            let rng = match settings.seed {
                Some(seed) => SmallRng::seed_from_u64(seed.wrapping_add(id as u64)),
                None => rand::make_rng(),
            };
            let ticks = match &settings.load {
                Load::Closed { .. } => None,
                Load::Rate { phases } => Some(Ticks::new(phases, id, connections)),
            };
            tokio::spawn(task(shared, rng, ticks))
        })
        .collect();

    let mut completions: Vec<Completions> = Vec::new();
    let mut data = RunData {
        start_unix_ns,
        elapsed: Duration::ZERO,
        sent: 0,
        latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
        timeline: Vec::new(),
        timeline_span: Duration::ZERO,
        statuses: BTreeMap::new(),
        reasons: BTreeMap::new(),
        errors: ErrorCounts::default(),
        keys: HashMap::new(),
        limits_seen: BTreeSet::new(),
        first_unexpected: None,
        first_error: None,
        max_send_lag: Duration::ZERO,
    };
    for t in tasks {
        let w = t.await.expect("a load task panicked");
        data.sent += w.sent;
        data.latency_us.add(&w.latency_us).expect("same bounds");
        for (status, n) in w.statuses {
            *data.statuses.entry(status).or_default() += n;
        }
        for (reason, n) in w.reasons {
            *data.reasons.entry(reason).or_default() += n;
        }
        data.errors.add(&w.errors);
        for (key, c) in w.keys {
            let e = data.keys.entry(key).or_default();
            e.requests += c.requests;
            e.allowed += c.allowed;
        }
        data.limits_seen.extend(w.limits_seen);
        data.first_unexpected = data.first_unexpected.or(w.first_unexpected);
        data.first_error = data.first_error.or(w.first_error);
        data.max_send_lag = data.max_send_lag.max(w.max_send_lag);
        if completions.len() < w.completions.len() {
            completions.resize(w.completions.len(), Completions::default());
        }
        for (total, c) in completions.iter_mut().zip(&w.completions) {
            total.add(c);
        }
    }
    data.elapsed = start.elapsed();
    let cut_short = shared.next_seq.load(Ordering::Relaxed) >= shared.max_requests;
    data.timeline_span = match settings.load.duration() {
        Some(duration) if !cut_short => duration,
        _ => data.elapsed,
    };
    // Seconds in which nothing was sent (a quiet phase) are still seconds;
    // whatever falls after the last one (the drain) counts in the last one.
    let seconds = (data.timeline_span.as_secs_f64().ceil() as usize).max(1);
    data.timeline = (0..seconds)
        .map(|_| SecondStats {
            latency_us: second_histogram(),
            done: Completions::default(),
        })
        .collect();
    let latencies = std::mem::take(&mut *shared.timeline.lock().expect("timeline lock"));
    for (i, h) in latencies.iter().enumerate() {
        let s = &mut data.timeline[i.min(seconds - 1)];
        s.latency_us.add(h).expect("same bounds");
    }
    for (i, c) in completions.iter().enumerate() {
        data.timeline[i.min(seconds - 1)].done.add(c);
    }
    data
}

/// What one task measured.
struct TaskData {
    sent: u64,
    latency_us: Histogram<u64>,
    statuses: HashMap<u16, u64>,
    reasons: HashMap<String, u64>,
    errors: ErrorCounts,
    keys: HashMap<u64, KeyCount>,
    limits_seen: BTreeSet<u64>,
    first_unexpected: Option<String>,
    first_error: Option<String>,
    max_send_lag: Duration,
    /// The send second whose latencies are being gathered, flushed to the
    /// shared timeline when the next one starts.
    second: usize,
    current: Histogram<u64>,
    /// What came back, per second (a few counters per second: kept whole).
    completions: Vec<Completions>,
}

impl TaskData {
    fn flush(&mut self, shared: &Shared) {
        if self.current.is_empty() {
            return;
        }
        let mut timeline = shared.timeline.lock().expect("timeline lock");
        while timeline.len() <= self.second {
            timeline.push(second_histogram());
        }
        timeline[self.second].add(&self.current).expect("same bounds");
        drop(timeline);
        self.current.reset();
    }

    /// Records a latency under the second of its send time.
    fn record_latency(&mut self, shared: &Shared, sent: Instant, latency_us: u64) {
        let second = sent.saturating_duration_since(shared.start).as_secs() as usize;
        if second != self.second {
            self.flush(shared);
            self.second = second;
        }
        self.current.saturating_record(latency_us);
    }

    /// The completions of the second `done` falls in.
    fn completed(&mut self, shared: &Shared, done: Instant) -> &mut Completions {
        let second = done.saturating_duration_since(shared.start).as_secs() as usize;
        if self.completions.len() <= second {
            self.completions.resize(second + 1, Completions::default());
        }
        &mut self.completions[second]
    }
}

async fn task(shared: Arc<Shared>, mut rng: SmallRng, mut ticks: Option<Ticks>) -> TaskData {
    let mut data = TaskData {
        sent: 0,
        latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
        statuses: HashMap::new(),
        reasons: HashMap::new(),
        errors: ErrorCounts::default(),
        keys: HashMap::new(),
        limits_seen: BTreeSet::new(),
        first_unexpected: None,
        first_error: None,
        max_send_lag: Duration::ZERO,
        second: 0,
        current: second_histogram(),
        completions: Vec::new(),
    };
    // When the previous answer (or failure) came back.
    let mut previous_done = shared.start;
    loop {
        // When this request is meant to leave, and where its latency starts.
        let (intended, latency_from) = match ticks.as_mut() {
            None => {
                let now = Instant::now();
                if shared.deadline.is_some_and(|d| now >= d) {
                    break;
                }
                (now, now)
            }
            Some(ticks) => {
                let Some(offset) = ticks.next() else { break };
                let at = shared.start + offset;
                if previous_done <= at {
                    // Idle until `at`: any lateness is the timer's.
                    tokio::time::sleep_until(at.into()).await;
                    (at, Instant::now())
                } else {
                    // Held back by the previous answer: behind schedule.
                    data.max_send_lag = data.max_send_lag.max(previous_done.saturating_duration_since(at));
                    (at, at)
                }
            }
        };
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
        if seq >= shared.max_requests {
            break;
        }
        let uri = &shared.targets[(seq % shared.targets.len() as u64) as usize];
        let index = shared.keys.sample(&mut rng);
        let key = key_name(&shared.key_prefix, index);
        if let Some((clients, domain)) = &shared.grpc {
            let client = clients[(seq as usize) % clients.len()].clone();
            data.sent += 1;
            let outcome = grpc_call(client, domain, &shared, &key).await;
            let done = Instant::now();
            previous_done = done;
            data.keys.entry(index).or_default().requests += 1;
            match outcome {
                Ok(allowed) => {
                    let latency = done.saturating_duration_since(latency_from);
                    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
                    data.latency_us.saturating_record(latency_us);
                    let (status, reason) = if allowed { (200, "allowed") } else { (429, "limited") };
                    *data.statuses.entry(status).or_default() += 1;
                    *data.reasons.entry(reason.to_owned()).or_default() += 1;
                    if allowed {
                        data.keys.entry(index).or_default().allowed += 1;
                    }
                    data.record_latency(&shared, intended, latency_us);
                    let second = data.completed(&shared, done);
                    second.answered += 1;
                    second.allowed += u64::from(allowed);
                }
                Err(e) => {
                    data.errors.other += 1;
                    if data.first_error.is_none() {
                        data.first_error = Some(e);
                    }
                    data.completed(&shared, done).errors += 1;
                }
            }
            continue;
        }
        let body = serde_json::to_vec(&CheckBody {
            key: &key,
            endpoint: shared.endpoint.as_deref(),
            tier: shared.tier.as_deref(),
            cost: shared.cost,
            scopes: shared.scopes.as_ref(),
        })
        .expect("a check body serializes");
        let request = Request::post(uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a check request is valid");

        data.sent += 1;
        let outcome = exchange(&shared.client, request, shared.timeout).await;
        let done = Instant::now();
        previous_done = done;
        data.keys.entry(index).or_default().requests += 1;
        match outcome {
            Ok((status, body)) => {
                let latency = done.saturating_duration_since(latency_from);
                let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
                data.latency_us.saturating_record(latency_us);
                *data.statuses.entry(status.as_u16()).or_default() += 1;
                let mut allowed = false;
                match serde_json::from_slice::<Decision>(&body) {
                    Ok(decision) => {
                        match data.reasons.get_mut(decision.reason) {
                            Some(n) => *n += 1,
                            None => {
                                data.reasons.insert(decision.reason.to_owned(), 1);
                            }
                        }
                        data.limits_seen.insert(decision.limit);
                        allowed = decision.reason == "allowed";
                    }
                    Err(_) => {
                        if data.first_unexpected.is_none() {
                            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                            data.first_unexpected = Some(format!("{status}: {text}"));
                        }
                    }
                }
                if allowed {
                    data.keys.entry(index).or_default().allowed += 1;
                }
                data.record_latency(&shared, intended, latency_us);
                let second = data.completed(&shared, done);
                second.answered += 1;
                second.allowed += u64::from(allowed);
            }
            Err(e) => {
                match &e {
                    SendError::Connect(_) => data.errors.connect += 1,
                    SendError::Timeout => data.errors.timeout += 1,
                    SendError::Other(_) => data.errors.other += 1,
                }
                if data.first_error.is_none() {
                    data.first_error = Some(match &e {
                        SendError::Connect(m) => format!("connect: {m}"),
                        SendError::Timeout => format!("timeout after {:?}", shared.timeout),
                        SendError::Other(m) => m.clone(),
                    });
                }
                data.completed(&shared, done).errors += 1;
                if ticks.is_none() && matches!(e, SendError::Connect(_)) {
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                }
            }
        }
    }
    data.flush(&shared);
    data
}

/// The key strings and counts of a run, for the accuracy check.
pub fn key_tallies(data: &RunData, prefix: &str) -> Vec<crate::accuracy::KeyTally> {
    data.keys
        .iter()
        .map(|(&index, c)| crate::accuracy::KeyTally {
            key: key_name(prefix, index),
            requests: c.requests,
            allowed: c.allowed,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(rate: f64, secs: f64) -> Phase {
        Phase {
            rate,
            duration: Duration::from_secs_f64(secs),
        }
    }

    #[test]
    fn ticks_of_all_tasks_make_the_rate_exactly() {
        let phases = [phase(100.0, 1.0), phase(0.0, 2.0), phase(50.0, 0.5)];
        let mut all: Vec<Duration> = (0..7).flat_map(|id| Ticks::new(&phases, id, 7)).collect();
        all.sort();
        // 100 sends in the first second, none in the quiet 2 s, 25 after.
        assert_eq!(all.len(), 125);
        assert_eq!(all[0], Duration::ZERO);
        assert_eq!(all[1], Duration::from_millis(10));
        assert_eq!(all[99], Duration::from_millis(990));
        assert_eq!(all[100], Duration::from_secs(3));
        assert_eq!(all[124], Duration::from_millis(3480));
        // Evenly spread over the tasks.
        let per_task: Vec<usize> = (0..7).map(|id| Ticks::new(&phases, id, 7).count()).collect();
        assert!(per_task.iter().all(|&n| n == 17 || n == 18), "{per_task:?}");
    }

    #[test]
    fn ticks_of_one_task_never_go_back_in_time() {
        let phases = [phase(1000.0, 0.1), phase(10.0, 1.0)];
        let ticks: Vec<Duration> = Ticks::new(&phases, 3, 4).collect();
        assert!(ticks.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ticks[0], Duration::from_millis(3));
    }

    #[test]
    fn check_bodies_leave_out_what_is_not_set() {
        let scopes: BTreeMap<String, String> = [("org".to_owned(), "acme".to_owned())].into();
        let body = |endpoint, tier, cost, scopes| {
            serde_json::to_string(&CheckBody {
                key: "k\"1",
                endpoint,
                tier,
                cost,
                scopes,
            })
            .unwrap()
        };
        assert_eq!(body(None, None, None, None), r#"{"key":"k\"1"}"#);
        assert_eq!(
            body(Some("POST /login"), Some("pro"), Some(2), None),
            r#"{"key":"k\"1","endpoint":"POST /login","tier":"pro","cost":2}"#
        );
        assert_eq!(
            body(Some("POST /chat"), None, None, Some(&scopes)),
            r#"{"key":"k\"1","endpoint":"POST /chat","scopes":{"org":"acme"}}"#
        );
    }
}
