//! Ports for child processes that must be told which port to listen on.
//!
//! The service itself never needs one: it listens on `127.0.0.1:0` and
//! reports the address it was given ([`crate::service`]), and an in-process
//! server binds port 0 and keeps its listener. A child that cannot do that —
//! `redis-server`, nginx, Prometheus, the scripts under `scripts/` — is
//! offered a *candidate* port that nothing here has bound: binding a port
//! to see that it is free, dropping the listener and handing the number on
//! leaves a moment in which anyone may take it, and the child then fails
//! for a reason that is not its own. Instead the child binds the candidate
//! itself, and when it reports the address in use (in its log, its output
//! or its exit), [`retry`] offers it another, at most [`ATTEMPTS`] times.
//!
//! Candidates come from ranges below the kernel's ephemeral ports (32768
//! and up on Linux), which the services on port 0 and every outgoing
//! connection draw from. Within a process they are handed out in order
//! from a random start, so two tests of one binary are never offered the
//! same port while the range has not wrapped; two processes rarely are.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::path::Path;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::POLL_INTERVAL;

/// How many candidates a child is offered before the test gives up.
pub const ATTEMPTS: usize = 10;

/// A Redis Cluster node also listens on its port plus this (the cluster bus).
pub const BUS_OFFSET: u16 = 10_000;

/// Candidates for children that listen on the ports they are given.
const PLAIN: Range<u16> = 3_000..11_000;
/// Candidates for Redis Cluster nodes, whose bus ports (`+ BUS_OFFSET`,
/// 21000 to 30999) stay clear of [`PLAIN`] and of each other.
const CLUSTER: Range<u16> = 11_000..21_000;

/// A candidate port (never bound here): see the module docs.
pub fn candidate() -> u16 {
    candidate_block(1)
}

/// The first of `len` consecutive candidate ports.
pub fn candidate_block(len: u16) -> u16 {
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    next_block(&NEXT, PLAIN, len)
}

/// The first of `len` consecutive candidate ports for Redis Cluster nodes:
/// their bus ports, `BUS_OFFSET` above, are candidates too.
pub fn candidate_cluster_block(len: u16) -> u16 {
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    next_block(&NEXT, CLUSTER, len)
}

/// One candidate for a Redis Cluster node (and its bus port).
pub fn candidate_cluster() -> u16 {
    candidate_cluster_block(1)
}

fn next_block(next: &Mutex<Option<u16>>, range: Range<u16>, len: u16) -> u16 {
    assert!(len > 0 && len < range.end - range.start, "a block of {len} ports");
    let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
    let span = u64::from(range.end - range.start);
    let start = *next.get_or_insert_with(|| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        range.start + (hasher.finish() % span) as u16
    });
    let first = if start + len > range.end { range.start } else { start };
    *next = Some(first + len);
    first
}

/// Whether a child's log, output or error says that an address it wanted
/// was in use (redis-server, nginx and the service say "Address already in
/// use", Prometheus "address already in use", the scripts "already in use").
pub fn address_in_use(text: &str) -> bool {
    text.to_ascii_lowercase().contains("already in use")
}

/// Runs `start` on candidates from `candidate` (a port, or whatever set of
/// ports the child needs) until it succeeds, at most [`ATTEMPTS`] times.
/// `start` returns what it started, or why it failed: a failure that
/// [`address_in_use`] recognises is tried again on the next candidate, any
/// other ends the test at once.
#[track_caller]
pub fn retry<P: std::fmt::Debug, T>(
    what: &str,
    mut candidate: impl FnMut() -> P,
    mut start: impl FnMut(&P) -> Result<T, String>,
) -> T {
    let mut taken = Vec::new();
    for _ in 0..ATTEMPTS {
        let port = candidate();
        match start(&port) {
            Ok(started) => return started,
            Err(why) if address_in_use(&why) => taken.push(format!("port {port:?}: {why}")),
            Err(why) => panic!("{what} did not start on port {port:?}: {why}"),
        }
    }
    panic!(
        "{what}: {ATTEMPTS} candidate ports were all in use:\n{}",
        taken.join("\n")
    );
}

/// Waits until `child` itself listens on every port of `ports`, at most
/// `timeout` (a server answering there that is not the child does not
/// count). `Err` with the tail of `log`, where the child writes, when it
/// exits first or does not listen in time; the child is reaped or killed
/// then.
pub fn wait_listening(child: &mut Child, ports: &[u16], log: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}; {}:\n{}", log.display(), tail(log)));
        }
        if ports.iter().all(|&port| listens(child.id(), port)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "did not listen on {ports:?} within {timeout:?}; {}:\n{}",
                log.display(),
                tail(log)
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Whether process `pid` holds a TCP socket listening on `port` (any
/// address), from `/proc/net/tcp{,6}` and the process's open files.
pub fn listens(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && fields.get(3) == Some(&"0A") {
                inodes.extend(fields.get(9).map(|inode| format!("socket:[{inode}]")));
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|inode| target.as_os_str() == inode.as_str()))
    })
}

/// The last lines of a log file (empty when there is none).
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn the_candidates_of_one_process_do_not_repeat() {
        let plain: Vec<u16> = (0..500).map(|_| candidate()).collect();
        assert_eq!(plain.iter().collect::<BTreeSet<_>>().len(), plain.len());
        assert!(plain.iter().all(|p| PLAIN.contains(p)), "{plain:?}");
        let blocks: Vec<u16> = (0..100).map(|_| candidate_cluster_block(6)).collect();
        let ports: BTreeSet<u16> = blocks.iter().flat_map(|&b| b..b + 6).collect();
        assert_eq!(ports.len(), 600, "blocks do not overlap");
        for port in ports {
            assert!(CLUSTER.contains(&port), "{port}");
            assert!(!PLAIN.contains(&(port + BUS_OFFSET)) && !CLUSTER.contains(&(port + BUS_OFFSET)));
            assert!(
                port + BUS_OFFSET < 32_768,
                "bus port {} is an ephemeral port",
                port + BUS_OFFSET
            );
        }
    }

    #[test]
    fn the_usual_bind_failures_are_recognised() {
        for message in [
            "# Warning: Could not create server TCP listening socket 127.0.0.1:7000: bind: Address already in use",
            "nginx: [emerg] bind() to 127.0.0.1:8000 failed (98: Address already in use)",
            "err=\"listen tcp 127.0.0.1:9090: bind: address already in use\"",
            "redis-cluster: port(s) already in use on 127.0.0.1: 7100",
        ] {
            assert!(address_in_use(message), "{message}");
        }
        assert!(!address_in_use("Permission denied"));
    }

    #[test]
    fn listens_tells_which_process_holds_a_listening_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens(std::process::id(), port));
        assert!(!listens(1, port), "another process does not hold it");
        let connected = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let client_port = connected.local_addr().unwrap().port();
        assert!(
            !listens(std::process::id(), client_port),
            "a connection is not a listener"
        );
    }

    #[test]
    fn retry_offers_the_next_candidate_while_the_port_is_taken() {
        let mut offered = vec![3, 2, 1];
        let started = retry(
            "a child",
            || offered.pop().unwrap(),
            |&port| match port {
                1 | 2 => Err(format!("bind 127.0.0.1:{port}: Address already in use")),
                _ => Ok(port),
            },
        );
        assert_eq!(started, 3);
    }

    #[test]
    #[should_panic(expected = "did not start on port 1: Permission denied")]
    fn retry_gives_up_at_once_on_another_failure() {
        retry("a child", || 1, |_| Err::<(), _>("Permission denied".to_owned()));
    }
}
