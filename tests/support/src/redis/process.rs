//! Spawning and stopping `redis-server` on the port it is offered, and
//! `redis-cli`.
//!
//! # Safety net
//!
//! Every `redis-server` is spawned with `PR_SET_PDEATHSIG(SIGKILL)`, so a test
//! binary that dies without running destructors (abort, SIGKILL, `exit`) does
//! not leave servers behind. Linux delivers that signal when the *thread* that
//! forked the child exits, not the process: spawning from a test thread would
//! kill a server that outlives its test (for example one shared through a
//! `static`/`OnceLock`, or one started inside `spawn_blocking`). To make it
//! process-wide in practice, all servers are forked by one long-lived
//! `redis-spawner` thread that never exits before the process does.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use crate::poll_until;

/// How long a single server may take to answer `PING` after spawning.
const START_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const MISSING: &str =
    "redis-server/redis-cli (or redis-sentinel) not found on PATH: run scripts/test.sh (which installs them), or `apt-get install -y redis-server redis-sentinel`";

// ---------------------------------------------------------------------------
// redis-cli
// ---------------------------------------------------------------------------

/// Runs `redis-cli -h 127.0.0.1 -p PORT -e ARGS...` and returns its trimmed
/// stdout; panics with stderr when it fails (cannot connect, error reply).
#[track_caller]
pub fn cli(port: u16, args: &[&str]) -> String {
    try_cli(port, args).unwrap_or_else(|e| panic!("redis-cli -p {port} {args:?} failed: {e}"))
}

/// Like [`cli`] but returns the failure (stderr and stdout) as `Err`.
pub fn try_cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-e"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{MISSING} ({e})"));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!("{} {stdout}", stderr.trim()).trim().to_string())
    }
}

/// `field:value` lookup in `INFO` / `CLUSTER INFO` output.
pub(super) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// `role` from `INFO replication`, `None` if the node does not answer.
pub(super) fn role(port: u16) -> Option<String> {
    let info = try_cli(port, &["INFO", "replication"]).ok()?;
    info_field(&info, "role").map(str::to_string)
}

/// `PING` over a raw socket (cheaper than spawning `redis-cli` while polling).
pub(super) fn ping(port: u16) -> bool {
    let timeout = Duration::from_millis(200);
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout) else {
        return false;
    };
    let mut buf = [0u8; 7];
    s.set_read_timeout(Some(timeout)).is_ok()
        && s.set_write_timeout(Some(timeout)).is_ok()
        && s.write_all(b"PING\r\n").is_ok()
        && s.read_exact(&mut buf).is_ok()
        && &buf == b"+PONG\r\n"
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

pub(super) fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory")
}

/// Spawns `redis-server` on `port` with its files in `dir` and waits until it
/// answers `PING`. `Err` (with what it logged) when it exits early, or when
/// the server answering is not ours: both say "already in use" when the port
/// (or, for a cluster node, its bus port) was taken, for
/// [`crate::ports::retry`] to try another.
pub(super) fn spawn_server(port: u16, dir: &Path, extra: &[&str]) -> Result<Child, String> {
    spawn_program(Command::new("redis-server"), port, dir, extra)
}

/// Like [`spawn_server`], a Redis Sentinel (Debian's `redis-sentinel`)
/// with the configuration file `conf`, which it rewrites as it learns.
pub(super) fn spawn_sentinel(port: u16, dir: &Path, conf: &Path) -> Result<Child, String> {
    let mut cmd = Command::new("redis-sentinel");
    cmd.arg(conf);
    spawn_program(cmd, port, dir, &[])
}

fn spawn_program(mut cmd: Command, port: u16, dir: &Path, extra: &[&str]) -> Result<Child, String> {
    let log = dir.join("redis.log");
    // The log is appended to: this attempt's lines start here.
    let logged_before = std::fs::metadata(&log).map_or(0, |m| m.len());
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    kill_with_parent(&mut cmd);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = spawn_from_spawner_thread(cmd).unwrap_or_else(|e| panic!("{program}: {e}; {MISSING}"));

    let mut exited = None;
    let up = poll_until(START_TIMEOUT, || match child.try_wait() {
        Ok(Some(status)) => {
            exited = Some(status);
            true
        }
        _ => ping(port),
    });
    let failure = match exited {
        Some(status) => Some(format!("redis-server on port {port} exited with {status}")),
        None if !up => Some(format!(
            "redis-server on port {port} did not answer PING within {START_TIMEOUT:?}"
        )),
        // Something answered; make sure it is our process and not a neighbour
        // that grabbed the port first.
        None => match try_cli(port, &["INFO", "server"]) {
            Ok(info) if info_field(&info, "process_id") == Some(child.id().to_string().as_str()) => None,
            Ok(_) => Some(format!("port {port} is already in use by another redis-server")),
            Err(e) => Some(format!("redis-server on port {port}: {e}")),
        },
    };
    match failure {
        None => Ok(child),
        Some(msg) => {
            kill_child(child);
            Err(format!(
                "{msg}; log {}:\n{}",
                log.display(),
                log_tail(&log, logged_before)
            ))
        }
    }
}

/// The last lines that `log` gained after its first `from` bytes.
pub(super) fn log_tail(log: &Path, from: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// SIGKILL (also works on a SIGSTOPped process) and reap.
pub(super) fn kill_child(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

pub(super) fn signal_child(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: plain syscall on a child we have not reaped yet (so the pid
    // cannot have been reused).
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", io::Error::last_os_error());
}

/// Asks the kernel to SIGKILL the child when its parent goes away, as a safety
/// net for test runs that crash past our destructors. Caveat: "parent" is the
/// *thread* that forked it (see the module docs; we fork from a thread that
/// lives as long as the process).
fn kill_with_parent(cmd: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe syscalls (prctl, getppid); it allocates nothing on the
    // success path.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks `cmd` from the `redis-spawner` thread, which lives until the process
/// exits, so `PR_SET_PDEATHSIG` fires at process exit rather than when the
/// calling test thread ends.
fn spawn_from_spawner_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("redis-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the redis-spawner thread");
        tx
    });
    let (tx, rx) = mpsc::channel();
    spawner.send((cmd, tx)).expect("redis-spawner thread is alive");
    rx.recv().expect("redis-spawner thread answers")
}
