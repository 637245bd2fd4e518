//! The real `ratelimiter` binary as a child process on a free port: it
//! listens on `127.0.0.1:0` and logs the address the system gave it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `ratelimiter` binary of this build: `<target-dir>/<profile>/ratelimiter`
/// beside the running test's `deps/` directory (see the crate docs).
/// How many log lines a [`Service`] keeps for [`Service::log_lines`].
const MAX_LOG_LINES: usize = 100_000;

pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        // <target-dir>/<profile>/deps/<test>-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("{} is not in a deps directory", exe.display()));
        let binary = profile_dir.join(format!("ratelimiter{}", std::env::consts::EXE_SUFFIX));
        assert!(
            binary.is_file(),
            "{} does not exist: the ratelimiter binary is built with the root package's integration tests",
            binary.display()
        );
        binary
    })
}

/// A running `ratelimiter serve`, killed when dropped.
pub struct Service {
    child: Child,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    grpc_addr: Option<SocketAddr>,
    /// Every log line so far (the first [`MAX_LOG_LINES`]).
    log: Arc<Mutex<Vec<String>>>,
    config: std::path::PathBuf,
    _config_dir: Option<tempfile::TempDir>,
}

impl Service {
    /// Starts the binary with the configuration file at `config`.
    pub fn start_with_file(config: &Path) -> Service {
        Service::spawn(config, None, &[])
    }

    /// Starts the binary with `toml` as its configuration.
    pub fn start(toml: &str) -> Service {
        Service::start_with_env(toml, &[])
    }

    /// Starts the binary with `toml` as its configuration and `env` added
    /// to its environment.
    pub fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ratelimiter.toml");
        std::fs::write(&path, toml).expect("write config");
        Service::spawn(&path, Some(dir), env)
    }

    /// Runs the binary with `toml` as its configuration, expecting it to
    /// refuse to start; returns what it wrote to stderr. Panics if it
    /// exits 0.
    pub fn refused(toml: &str) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ratelimiter.toml");
        std::fs::write(&path, toml).expect("write config");
        let out = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .expect("run the ratelimiter binary");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "the service started: {stderr}");
        stderr
    }

    fn spawn(config: &Path, dir: Option<tempfile::TempDir>, env: &[(&str, &str)]) -> Service {
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--config"])
            .arg(config)
            // The "listening" event is at info, whatever the config says.
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        // Read log lines on a thread until the "listening" event names the
        // address; keep draining afterwards so the child never blocks.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let admin_addr = Arc::new(Mutex::new(None));
        let admin = admin_addr.clone();
        let grpc_addr = Arc::new(Mutex::new(None));
        let grpc = grpc_addr.clone();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                {
                    let mut kept = kept.lock().unwrap();
                    if kept.len() < MAX_LOG_LINES {
                        kept.push(line.clone());
                    }
                }
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if event["message"] == "admin listening" {
                    *admin.lock().unwrap() = event["addr"].as_str().and_then(|a| a.parse().ok());
                }
                if event["message"] == "grpc listening" {
                    *grpc.lock().unwrap() = event["addr"].as_str().and_then(|a| a.parse().ok());
                }
                if event["message"] == "listening" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(event["addr"].as_str().unwrap_or_default().to_owned()));
                    }
                } else if event["level"] == "ERROR" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Err(line.clone()));
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(addr)) => addr.parse().expect("a socket address"),
            Ok(Err(line)) => panic!("the binary failed to start: {line}"),
            Err(_) => {
                let _ = child.kill();
                panic!("the binary did not log its address within 30 s");
            }
        };
        let admin_addr = *admin_addr.lock().unwrap();
        let grpc_addr = *grpc_addr.lock().unwrap();
        Service {
            child,
            addr,
            admin_addr,
            grpc_addr,
            log,
            config: config.to_owned(),
            _config_dir: dir,
        }
    }

    /// The configuration file the service was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "HUP") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, when it has its own.
    /// The log lines the service has written so far (JSON, one per line).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The gRPC listener's address, when the config sets `[grpc] listen`.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit status.
    pub fn terminate(self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(15))
    }

    /// Waits (at most `limit`) for the process to exit.
    pub fn wait_exit(mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the binary did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
