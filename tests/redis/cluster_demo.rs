//! `scripts/cluster-demo.sh`, end to end: nginx in front of three replicas
//! on a Redis Cluster enforces one limit exactly, spreads requests over every
//! replica, keeps answering when a replica stops, and `down` leaves no
//! process and no listener behind.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use ratelimiter_testkit::{ports, wait_until};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster-demo.sh");
const BIN: &str = env!("CARGO_BIN_EXE_ratelimiter");
/// The demo's default rule: sliding_window_log, 100 per minute.
const LIMIT: usize = 100;
const REQUESTS: usize = 300;
const CLIENTS: usize = 20;

/// The demo's ports: the load balancer on `base`, replicas on `base+1..+3`,
/// their admin APIs on `base+4..+6`; Redis on `redis..redis+5` and the
/// cluster bus 10000 above.
#[derive(Clone, Copy, Debug)]
struct Ports {
    base: u16,
    redis: u16,
}

impl Ports {
    fn replica(self, i: u16) -> u16 {
        self.base + i
    }

    /// Every port the demo listens on.
    fn all(self) -> Vec<u16> {
        let demo = (0..7).map(|i| self.base + i);
        let redis = (0..6).flat_map(|i| [self.redis + i, self.redis + 10_000 + i]);
        demo.chain(redis).collect()
    }

    /// Candidates (never bound here, see `ports`): seven ports for the
    /// demo, six for Redis whose bus ports are candidates too.
    fn candidate() -> Ports {
        Ports {
            base: ports::candidate_block(7),
            redis: ports::candidate_cluster_block(6),
        }
    }
}

/// The demo started by `up`, stopped by `down` on drop (even when an
/// assertion fails).
struct Demo {
    dir: PathBuf,
    ports: Ports,
}

impl Demo {
    /// `up` in `dir`, on candidate ports until the demo finds none of them
    /// taken (a failed `up` stops what it started; `down` on drop makes
    /// sure); the demo and what `up` printed.
    fn up(dir: PathBuf) -> (Demo, String) {
        ports::retry("scripts/cluster-demo.sh up", Ports::candidate, |&ports| {
            let demo = Demo {
                dir: dir.clone(),
                ports,
            };
            match demo.run("up") {
                (true, out) => Ok((demo, out)),
                (false, out) => Err(format!("up failed:\n{out}")),
            }
        })
    }

    fn run(&self, command: &str) -> (bool, String) {
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg(command)
            .env("DEMO_DIR", &self.dir)
            .env("DEMO_PORT", self.ports.base.to_string())
            .env("REDIS_CLUSTER_PORT", self.ports.redis.to_string())
            .env("RATELIMITER_BIN", BIN)
            .output()
            .expect("run the script");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.base)
    }

    fn pid_file(&self, path: &str) -> u32 {
        let file = self.dir.join(path);
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .trim()
            .parse()
            .expect("a pid")
    }

    /// Every process of the demo: replicas, nginx master and workers, Redis nodes.
    fn processes(&self) -> Vec<(u32, String)> {
        let mut pids = Vec::new();
        for i in 1..=3 {
            pids.push(self.pid_file(&format!("replica-{i}/ratelimiter.pid")));
        }
        let master = self.pid_file("nginx/logs/nginx.pid");
        pids.push(master);
        let workers = children_of(master);
        assert!(!workers.is_empty(), "nginx has workers");
        pids.extend(workers);
        for i in 0..6 {
            pids.push(self.pid_file(&format!("redis/{}/redis.pid", self.ports.redis + i)));
        }
        pids.into_iter()
            .map(|pid| (pid, cmdline(pid).unwrap_or_else(|| panic!("process {pid} runs"))))
            .collect()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.run("down");
    }
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if rest.split(' ').nth(1).and_then(|p| p.parse().ok()) == Some(parent) {
            out.extend(entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// One POST /check through the load balancer: status, body, X-Served-By.
async fn check(client: &reqwest::Client, url: &str, key: &str) -> (u16, Value, String) {
    let response = client
        .post(url)
        .json(&json!({ "key": key }))
        .send()
        .await
        .expect("the load balancer answers");
    let status = response.status().as_u16();
    let served_by = response
        .headers()
        .get("x-served-by")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = response.json().await.expect("a JSON body");
    (status, body, served_by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_enforces_one_limit_across_three_replicas_behind_nginx() {
    assert!(
        Command::new("nginx").arg("-v").output().is_ok(),
        "nginx is not installed; scripts/test.sh installs it (Debian package nginx)"
    );
    let parent = tempfile::tempdir().unwrap();
    let (demo, out) = Demo::up(parent.path().join("demo"));
    let replicas: BTreeSet<String> = (1..=3)
        .map(|i| format!("127.0.0.1:{}", demo.ports.replica(i)))
        .collect();

    assert!(out.contains(&demo.url("")), "up prints the load balancer's URL:\n{out}");
    for replica in &replicas {
        assert!(out.contains(&format!("http://{replica}/metrics")), "{out}");
    }
    let (ok, status) = demo.run("status");
    assert!(ok && status.trim_end().ends_with("\nhealthy"), "{status}");
    let (ok, again) = demo.run("up");
    assert!(
        ok && again.contains("already up"),
        "a second up changes nothing:\n{again}"
    );
    let processes = demo.processes();

    // N > limit concurrent checks of one key through nginx: exactly `limit`
    // allowed, each `remaining` handed out once, answers from every replica.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = demo.url("/check");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..REQUESTS / CLIENTS {
                answers.push(check(&client, &url, "demo:hot").await);
            }
            answers
        });
    }
    let mut allowed = 0;
    let mut remaining: BTreeMap<u64, usize> = BTreeMap::new();
    let mut served_by: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(answers) = tasks.join_next().await {
        for (status, body, by) in answers.unwrap() {
            match (status, body["reason"].as_str()) {
                (200, Some("allowed")) => {
                    allowed += 1;
                    *remaining.entry(body["remaining"].as_u64().unwrap()).or_default() += 1;
                }
                (429, Some("limited")) => {}
                _ => panic!("unexpected answer {status}: {body}"),
            }
            *served_by.entry(by).or_default() += 1;
        }
    }
    assert_eq!(allowed, LIMIT, "exactly the limit is allowed across the replicas");
    assert_eq!(
        remaining.keys().copied().collect::<Vec<_>>(),
        (0..LIMIT as u64).collect::<Vec<_>>(),
        "every remaining value is handed out exactly once"
    );
    assert_eq!(
        served_by.keys().cloned().collect::<BTreeSet<_>>(),
        replicas,
        "every replica answered: {served_by:?}"
    );

    // Stop replica 2: nginx skips it (passive health check) and retries the
    // request that met the refused connection on another replica.
    let stopped = format!("127.0.0.1:{}", demo.ports.replica(2));
    let pid = demo.pid_file("replica-2/ratelimiter.pid");
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    wait_until("replica 2 to stop", Duration::from_secs(20), || {
        cmdline(pid).is_none() && !listening(demo.ports.replica(2))
    });
    let mut survivors = BTreeSet::new();
    for _ in 0..30 {
        let (status, body, by) = check(&client, &url, "demo:after-stop").await;
        assert_eq!((status, body["reason"].as_str()), (200, Some("allowed")), "{body}");
        assert_ne!(by, stopped, "the stopped replica cannot answer");
        survivors.insert(by);
    }
    assert_eq!(survivors.len(), 2, "both remaining replicas answer: {survivors:?}");
    let (ok, status) = demo.run("status");
    assert!(!ok, "status fails with a replica down:\n{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Replica 2") && l.contains("NOT running")),
        "{status}"
    );

    // down: nothing listens and no process of the demo is left.
    let (ok, out) = demo.run("down");
    assert!(ok, "down failed:\n{out}");
    assert!(!demo.dir.exists(), "down removes the demo directory");
    let listening: Vec<u16> = demo.ports.all().into_iter().filter(|&p| listening(p)).collect();
    assert!(listening.is_empty(), "still listening after down: {listening:?}");
    let left: Vec<_> = processes
        .iter()
        .filter(|(pid, was)| cmdline(*pid).as_ref() == Some(was))
        .collect();
    assert!(left.is_empty(), "still running after down: {left:?}");
    let (ok, _) = demo.run("status");
    assert!(!ok, "status fails once down");
}
