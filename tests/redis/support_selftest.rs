//! The Redis test support itself: processes start, stop and fail over as the
//! other tests rely on.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use ratelimiter_testkit::ports;
use ratelimiter_testkit::redis::{try_cli, RedisCluster, RedisServer, CLUSTER_SLOTS};

#[test]
fn standalone_answers_and_restarts_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert_eq!(redis.cli(&["SET", "greeting", "hello world"]), "OK");
    assert_eq!(redis.cli(&["GET", "greeting"]), "hello world");
    assert!(redis.try_cli(&["NOSUCHCOMMAND"]).is_err(), "error replies are failures");

    redis.kill();
    assert!(!redis.ping());
    assert!(redis.try_cli(&["PING"]).is_err());

    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert_eq!(redis.cli(&["GET", "greeting"]), "", "nothing is persisted");
}

#[test]
fn standalone_pause_holds_replies_until_resume() {
    let redis = RedisServer::start();
    redis.pause();
    let mut conn = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    conn.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 7];
    assert!(conn.read_exact(&mut buf).is_err(), "a paused server does not answer");

    redis.resume();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+PONG\r\n");
}

#[test]
fn dropping_a_standalone_frees_its_port() {
    let redis = RedisServer::start();
    let port = redis.port();
    let pid: u32 = redis
        .cli(&["INFO", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("INFO server names the process");
    assert!(ports::listens(pid, port), "the server holds its port");
    drop(redis);
    assert!(!ports::listens(pid, port), "port is free after drop");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the server is gone after drop"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing answers there"
    );
}

/// A port taken by a listener this test holds is offered first: the server
/// fails to bind it and starts on the next candidate, and the listener keeps
/// its port.
#[test]
fn a_standalone_offered_a_taken_port_starts_on_another() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let mut offered = Vec::new();
    let redis = RedisServer::start_on(|| {
        let port = if offered.is_empty() { taken } else { ports::candidate() };
        offered.push(port);
        port
    });
    assert_eq!(offered.len(), 2, "one retry: {offered:?}");
    assert_eq!(redis.port(), offered[1]);
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert!(ports::listens(std::process::id(), taken), "the listener keeps its port");
}

/// A cluster node whose bus port (`port + 10000`) is taken fails and is
/// offered another port: the cluster still forms, without that port.
#[test]
fn a_cluster_node_offered_a_taken_bus_port_starts_on_another() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let bus = held.local_addr().unwrap().port();
    let first = bus
        .checked_sub(ports::BUS_OFFSET)
        .expect("an ephemeral port is above 10000");
    let mut offered = Vec::new();
    let cluster = RedisCluster::start_on(|| {
        let port = if offered.is_empty() {
            first
        } else {
            ports::candidate_cluster()
        };
        offered.push(port);
        port
    });
    assert_eq!(offered.len(), 7, "six nodes and one retry: {offered:?}");
    assert!(!cluster.ports().contains(&first), "{:?}", cluster.ports());
    assert_eq!(cluster.ports(), offered[1..]);
    assert_eq!(cluster.masters().len(), 3);
    assert!(ports::listens(std::process::id(), bus), "the listener keeps its port");
}

#[test]
fn cluster_has_three_masters_and_three_replicas_covering_all_slots() {
    let cluster = RedisCluster::start();
    let masters = cluster.masters();
    let replicas = cluster.replicas();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    assert_eq!(replicas.len(), 3, "replicas: {replicas:?}");
    for &m in &masters {
        assert_eq!(cluster.replicas_of(m).len(), 1, "one replica per master");
    }
    assert_eq!(cluster.ports().len(), 6);
    assert_eq!(cluster.seed_urls().len(), 6);
    assert!(cluster.seed_urls().iter().all(|u| u.starts_with("redis://127.0.0.1:")));

    for port in cluster.ports() {
        let info = cluster.cli(port, &["CLUSTER", "INFO"]);
        assert!(info.lines().any(|l| l == "cluster_state:ok"), "{port}: {info}");
        assert!(
            info.lines().any(|l| l == format!("cluster_slots_ok:{CLUSTER_SLOTS}")),
            "{port}: {info}"
        );
    }
    for slot in [0, 5460, 5461, 10922, 10923, CLUSTER_SLOTS - 1] {
        assert!(masters.contains(&cluster.master_of_slot(slot)));
    }

    // Keys land on their slot's master; redis-cli -c follows the redirection.
    let slot = cluster.key_slot("some-key");
    assert_eq!(cluster.cluster_cli(&["SET", "some-key", "v"]), "OK");
    assert_eq!(cluster.cli(cluster.master_of_slot(slot), &["GET", "some-key"]), "v");

    // Scripts are per node; script_flush_all clears them everywhere.
    let sha = cluster.cli(masters[0], &["SCRIPT", "LOAD", "return 1"]);
    assert_eq!(cluster.cli(masters[0], &["SCRIPT", "EXISTS", &sha]), "1");
    cluster.script_flush_all();
    assert_eq!(cluster.cli(masters[0], &["SCRIPT", "EXISTS", &sha]), "0");
}

#[test]
fn cluster_failover_swaps_roles() {
    let cluster = RedisCluster::start();
    let old = cluster.master_of_slot(0);
    assert_eq!(cluster.cluster_cli(&["SET", "{slot0}x", "kept"]), "OK");

    let new = cluster.failover(old);
    assert_ne!(new, old);
    assert!(cluster.masters().contains(&new));
    assert!(cluster.replicas().contains(&old));
    assert_eq!(cluster.replicas_of(new), vec![old]);
    assert_eq!(cluster.master_of_slot(0), new);
    assert_eq!(cluster.cluster_cli(&["GET", "{slot0}x"]), "kept");
}

#[test]
fn cluster_migrate_slot_moves_the_slot_and_its_keys() {
    let cluster = RedisCluster::start();
    let key = "migrating-key";
    let slot = cluster.key_slot(key);
    let from = cluster.master_of_slot(slot);
    assert_eq!(cluster.cli(from, &["SET", key, "payload"]), "OK");
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();

    cluster.migrate_slot(slot, to);
    assert_eq!(cluster.master_of_slot(slot), to);
    assert_eq!(cluster.cli(to, &["GET", key]), "payload", "the key moved with the slot");
    assert_eq!(
        cluster.cli(from, &["-c", "GET", key]),
        "payload",
        "the old owner redirects"
    );
    let moved = try_cli(from, &["GET", key]).unwrap_err();
    assert!(moved.contains("MOVED"), "{moved}");
}

#[test]
fn cluster_survives_a_killed_master() {
    let mut cluster = RedisCluster::start();
    let key = "survivor";
    let victim = cluster.master_of_slot(cluster.key_slot(key));
    assert_eq!(cluster.cli(victim, &["SET", key, "still here"]), "OK");
    assert_eq!(
        cluster.cli(victim, &["WAIT", "1", "5000"]),
        "1",
        "the replica has the key"
    );

    let promoted = cluster.kill_master_and_wait_for_promotion(victim);
    assert!(!cluster.ports().contains(&victim));
    assert_eq!(cluster.ports().len(), 5);
    assert_eq!(cluster.masters().len(), 3);
    assert!(cluster.masters().contains(&promoted));
    for port in cluster.ports() {
        let info = cluster.cli(port, &["CLUSTER", "INFO"]);
        assert!(info.lines().any(|l| l == "cluster_state:ok"), "{port}: {info}");
    }
    assert_eq!(cluster.cluster_cli(&["GET", key]), "still here");
}
