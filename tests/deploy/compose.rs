//! `docker-compose.yml` and `deploy/docker/`: a six-node Redis Cluster
//! created by a one-shot job, three replicas on real settings, nginx in
//! front of them and Prometheus scraping them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ratelimiter::settings::{Backend, RedisMode, Settings};
use serde_json::Value;

use crate::common::{
    assert_liveness_path, assert_readiness_path, block, directives, health_command_target, read, repo, scalar, seconds,
    settings_from_env, yaml,
};
use ratelimiter_testkit::service::Service;
use ratelimiter_testkit::{ports, wait_until};

/// What `docker compose` would take from the shell, for the variables the
/// file requires.
const SHELL: &[(&str, &str)] = &[("RATELIMITER_ADMIN_TOKEN", "compose-admin-token-0123456789")];

/// Applies compose's interpolation: `${VAR}`, `${VAR:-default}`,
/// `${VAR:?error}` (from [`SHELL`]) and `$$` (a literal `$`).
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').expect("a closing brace");
            let expr = &after[..end];
            let name_end = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, modifier) = expr.split_at(name_end);
            let shell = SHELL.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
            let value = match (shell, modifier) {
                (Some(v), _) => v,
                (None, m) if m.starts_with(":-") || m.starts_with('-') => m.trim_start_matches(':')[1..].to_owned(),
                (None, m) if m.starts_with(":?") || m.starts_with('?') => {
                    panic!("docker-compose.yml requires ${name}, which the test does not set")
                }
                (None, _) => String::new(),
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

fn services() -> serde_json::Map<String, Value> {
    yaml("docker-compose.yml")["services"]
        .as_object()
        .expect("docker-compose.yml has services")
        .clone()
}

/// A service's command (string or list) as one interpolated string.
fn command(service: &Value) -> String {
    let text = match &service["command"] {
        Value::String(s) => s.clone(),
        Value::Array(words) => words.iter().map(|w| scalar(w, "command")).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    };
    interpolate(&text)
}

/// The shell script of `sh -c SCRIPT` commands (entrypoint or command).
fn shell_script(service: &Value) -> String {
    let words: Vec<Value> = [&service["entrypoint"], &service["command"]]
        .iter()
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .collect();
    let at = words.iter().position(|w| w == "-c").expect("an sh -c command");
    interpolate(words[at + 1].as_str().expect("a script"))
}

/// Names of the Redis Cluster nodes: services running `redis-server` with
/// cluster mode on.
fn redis_nodes(services: &serde_json::Map<String, Value>) -> Vec<String> {
    services
        .iter()
        .filter(|(_, s)| command(s).contains("--cluster-enabled yes"))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Names of the ratelimiter replicas: services built from the Dockerfile.
fn replicas(services: &serde_json::Map<String, Value>) -> Vec<String> {
    services
        .iter()
        .filter(|(_, s)| !s["build"].is_null())
        .map(|(name, _)| name.clone())
        .collect()
}

/// `depends_on` as service → condition.
fn depends_on(service: &Value) -> BTreeMap<String, String> {
    match &service["depends_on"] {
        Value::Object(map) => map
            .iter()
            .map(|(name, v)| {
                (
                    name.clone(),
                    v["condition"].as_str().unwrap_or("service_started").to_owned(),
                )
            })
            .collect(),
        Value::Array(names) => names
            .iter()
            .map(|n| (scalar(n, "depends_on"), "service_started".to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The host file mounted at `target` in `service` (a `./relative` path).
fn mounted(service: &Value, target: &str) -> String {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .find_map(|v| {
            let mut parts = v.split(':');
            let (source, dest) = (parts.next()?, parts.next()?);
            (dest == target).then(|| source.trim_start_matches("./").to_owned())
        })
        .unwrap_or_else(|| panic!("nothing is mounted at {target}"))
}

/// A replica's environment (interpolated) and the settings it loads.
fn replica_settings(name: &str, service: &Value) -> (BTreeMap<String, String>, Settings) {
    let env: BTreeMap<String, String> = service["environment"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}: environment as a map"))
        .iter()
        .map(|(k, v)| (k.clone(), interpolate(&scalar(v, k))))
        .collect();
    let config = env.get("RATELIMITER_CONFIG").expect("RATELIMITER_CONFIG");
    let file = repo(&mounted(service, config));
    let settings = settings_from_env(&format!("docker-compose.yml {name}"), Some(&file), &env);
    (env, settings)
}

/// The port every replica listens on (they all agree).
fn replica_port(services: &serde_json::Map<String, Value>) -> u16 {
    let ports: BTreeSet<u16> = replicas(services)
        .iter()
        .map(|name| replica_settings(name, &services[name]).1.server.listen.port())
        .collect();
    assert_eq!(ports.len(), 1, "the replicas listen on different ports: {ports:?}");
    ports.into_iter().next().unwrap()
}

#[test]
fn six_redis_nodes_announce_their_names_and_a_job_creates_the_cluster() {
    let services = services();
    let nodes = redis_nodes(&services);
    assert_eq!(nodes.len(), 6, "Redis Cluster nodes: {nodes:?}");
    for name in &nodes {
        let node = &services[name];
        let cmd = command(node);
        assert!(
            scalar(&node["image"], "image").starts_with("redis:7"),
            "{name}: {}",
            node["image"]
        );
        assert_eq!(
            node["hostname"],
            name.as_str(),
            "{name}: the hostname it announces is not its service name"
        );
        assert!(
            cmd.contains("--cluster-announce-hostname \"$HOSTNAME\"")
                || cmd.contains(&format!("--cluster-announce-hostname {name}")),
            "{name} does not announce its hostname: {cmd}"
        );
        assert!(cmd.contains("--port 6379"), "{name}: {cmd}");
        assert!(
            !node["healthcheck"].is_null(),
            "{name} has no health check for the init job to wait on"
        );
    }

    let init = &services["redis-cluster-init"];
    let script = shell_script(init);
    for part in ["redis-cli --cluster create", "--cluster-replicas 1", "--cluster-yes"] {
        assert!(script.contains(part), "the init job does not run `{part}`:\n{script}");
    }
    let named: BTreeSet<&str> = script
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| nodes.contains(&(*w).to_owned()))
        .collect();
    assert_eq!(named.len(), 6, "the init job joins {named:?}, not all six nodes");
    let waits = depends_on(init);
    for name in &nodes {
        assert_eq!(
            waits.get(name).map(String::as_str),
            Some("service_healthy"),
            "the init job does not wait for {name} to be healthy"
        );
    }
    assert_eq!(init["restart"], "no", "a one-shot job must not restart");

    for (what, script) in [
        ("redis-cluster-init", script),
        ("a Redis node", shell_script(&services[&nodes[0]])),
    ] {
        let out = Command::new("sh").args(["-n", "-c", &script]).output().expect("run sh");
        assert!(
            out.status.success(),
            "{what}: sh -n: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn three_replicas_load_real_settings_and_reach_the_cluster() {
    let services = services();
    let names = replicas(&services);
    assert_eq!(names, ["replica1", "replica2", "replica3"]);
    let nodes = redis_nodes(&services);
    for name in &names {
        let service = &services[name];
        let (_, settings) = replica_settings(name, service);
        assert_eq!(settings.store.backend, Backend::Redis, "{name}");
        assert_eq!(settings.store.redis.mode, RedisMode::Cluster, "{name}");
        assert!(!settings.store.redis.nodes.is_empty(), "{name}: no seed nodes");
        for seed in &settings.store.redis.nodes {
            let host_port = seed.trim_start_matches("redis://");
            let (host, port) = host_port.split_once(':').expect("host:port");
            assert!(
                nodes.contains(&host.to_owned()),
                "{name}: seed {seed} is not a Redis node of the file"
            );
            assert_eq!(port, "6379", "{name}: seed {seed}");
        }
        assert!(settings.admin.token.is_some(), "{name}: no admin token");
        // /admin on a listener of its own, which nothing publishes and
        // nginx (which proxies server.listen) does not reach.
        let admin = settings
            .admin
            .listen
            .unwrap_or_else(|| panic!("{name}: no admin.listen"));
        assert_ne!(
            admin.port(),
            settings.server.listen.port(),
            "{name}: admin on the public port"
        );
        assert!(service["ports"].is_null(), "{name} publishes ports");
        for (other, s) in &services {
            for mapping in s["ports"].as_array().into_iter().flatten() {
                let published = scalar(mapping, "ports");
                assert!(
                    !published.ends_with(&format!(":{}", admin.port())),
                    "{other} publishes the admin port: {published}"
                );
            }
        }
        assert_eq!(
            settings.store.local_divisor,
            names.len() as u64,
            "{name}: local_divisor"
        );
        assert!(
            settings.server.listen.ip().is_unspecified(),
            "{name} listens on {}",
            settings.server.listen
        );

        assert_eq!(
            depends_on(service).get("redis-cluster-init").map(String::as_str),
            Some("service_completed_successfully"),
            "{name} starts before the cluster exists"
        );
        let test: Vec<String> = service["healthcheck"]["test"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: healthcheck.test as a list"))
            .iter()
            .map(|w| scalar(w, "test"))
            .collect();
        let words: Vec<&str> = test.iter().map(String::as_str).collect();
        let (port, path) = health_command_target(&words);
        assert_eq!(port, settings.server.listen.port(), "{name}: health check port");
        assert_readiness_path(&format!("{name} healthcheck"), &path).await;

        let grace = seconds(service["stop_grace_period"].as_str().expect("stop_grace_period"));
        let needed = settings.server.drain_grace.0.as_secs_f64() + settings.server.shutdown_timeout.0.as_secs_f64();
        assert!(
            grace > needed,
            "{name}: stop_grace_period {grace}s ≤ drain_grace + shutdown_timeout = {needed}s"
        );
    }
}

#[test]
fn nginx_balances_the_three_replicas_with_passive_health_checks() {
    let services = services();
    let port = replica_port(&services);
    let nginx = &services["nginx"];
    let conf_path = mounted(nginx, "/etc/nginx/nginx.conf");
    let conf = read(&conf_path);

    let upstream = directives(block(&conf, "upstream ratelimiter"));
    let servers: Vec<&Vec<String>> = upstream.iter().filter(|d| d[0] == "server").collect();
    let addresses: BTreeSet<String> = servers.iter().map(|d| d[1].clone()).collect();
    let expected: BTreeSet<String> = replicas(&services).iter().map(|r| format!("{r}:{port}")).collect();
    assert_eq!(addresses, expected, "{conf_path}: upstream servers");
    for server in &servers {
        for param in ["max_fails=", "fail_timeout="] {
            assert!(
                server.iter().any(|w| w.starts_with(param)),
                "{conf_path}: {server:?} has no {param}"
            );
        }
    }
    let keepalive_timeout = upstream
        .iter()
        .find(|d| d[0] == "keepalive_timeout")
        .map(|d| seconds(&d[1]))
        .expect("upstream keepalive_timeout");
    assert!(
        upstream.iter().any(|d| d[0] == "keepalive"),
        "{conf_path}: no upstream keepalive"
    );
    let read_timeout = replica_settings("replica1", &services["replica1"])
        .1
        .server
        .read_timeout
        .0
        .as_secs_f64();
    assert!(
        keepalive_timeout < read_timeout,
        "{conf_path}: nginx keeps idle connections {keepalive_timeout}s, replicas close them after {read_timeout}s"
    );

    let location = directives(block(&conf, "location /"));
    let find = |name: &str| {
        location
            .iter()
            .find(|d| d[0] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(find("proxy_pass")[1], "http://ratelimiter");
    assert_eq!(find("proxy_http_version")[1], "1.1");
    let next = find("proxy_next_upstream");
    assert!(
        next.contains(&"error".to_owned()) && next.contains(&"timeout".to_owned()),
        "{next:?}"
    );
    let served_by = location
        .iter()
        .find(|d| d[0] == "add_header" && d[1].eq_ignore_ascii_case("x-served-by"))
        .expect("a header naming the replica");
    assert_eq!(served_by[2], "$upstream_addr");

    let listen = directives(block(&conf, "server {"))
        .into_iter()
        .find(|d| d[0] == "listen")
        .map(|d| d[1].clone())
        .expect("listen");
    let published: Vec<String> = nginx["ports"]
        .as_array()
        .expect("nginx publishes a port")
        .iter()
        .map(|p| interpolate(&scalar(p, "port")))
        .collect();
    assert!(
        published.iter().any(|p| p.rsplit(':').next() == Some(listen.as_str())),
        "nginx listens on {listen}, compose publishes {published:?}"
    );
    for replica in replicas(&services) {
        assert_eq!(
            depends_on(nginx).get(&replica).map(String::as_str),
            Some("service_healthy"),
            "nginx does not wait for {replica}"
        );
    }
}

#[tokio::test]
async fn prometheus_scrapes_every_replica() {
    let services = services();
    let port = replica_port(&services);
    let path = mounted(&services["prometheus"], "/etc/prometheus/prometheus.yml");
    let config = yaml(&path);
    let job = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .find(|j| j["job_name"] == "ratelimiter")
        .expect("a ratelimiter job (the Grafana dashboard's job)");
    let targets: BTreeSet<String> = job["static_configs"]
        .as_array()
        .expect("static_configs")
        .iter()
        .flat_map(|c| c["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| scalar(&t, "target"))
        .collect();
    let expected: BTreeSet<String> = replicas(&services).iter().map(|r| format!("{r}:{port}")).collect();
    assert_eq!(targets, expected, "{path}: targets");
    let metrics_path = job["metrics_path"].as_str().unwrap_or("/metrics");
    assert_liveness_path(&format!("{path} metrics_path"), metrics_path).await;
}

#[test]
fn promtool_accepts_the_compose_prometheus_configuration() {
    let out = Command::new("promtool")
        .args(["check", "config", "--syntax-only"])
        .arg(repo("deploy/docker/prometheus.yml"))
        .output()
        .expect("promtool is not installed; scripts/test.sh installs it (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process killed (and reaped) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The arguments of `redis-server` in a compose node's command, for a node
/// named `hostname` on `ip:port` keeping its files in `dir`.
fn node_args(
    services: &serde_json::Map<String, Value>,
    hostname: &str,
    ip: &str,
    port: u16,
    dir: &Path,
) -> Vec<String> {
    let script = shell_script(&services[&redis_nodes(services)[0]]);
    let args = script.split_once("redis-server").expect("the node runs redis-server").1;
    let mut args: Vec<String> = args
        .split_whitespace()
        .map(|a| match a {
            "6379" => port.to_string(),
            "\"$HOSTNAME\"" => hostname.to_owned(),
            other => other.replace("/data/", &format!("{}/", dir.display())),
        })
        .collect();
    // One loopback address per node stands for one address per container:
    // connections between nodes must come from it, as they would.
    let dir = dir.display().to_string();
    for (option, value) in [("--dir", dir.as_str()), ("--bind", ip), ("--bind-source-addr", ip)] {
        args.extend([option.to_owned(), value.to_owned()]);
    }
    args
}

/// The compose nodes `nodes`, one on each address of `ips`, all on `port`
/// with their files below `dir`; each runs once it listens on its port and
/// its cluster bus port (`port + 10000`). `Err` with the output of a node
/// that exited first (saying "already in use" when a port was taken).
fn start_nodes(
    services: &serde_json::Map<String, Value>,
    nodes: &[String],
    ips: &[String],
    port: u16,
    dir: &Path,
) -> Result<Vec<Process>, String> {
    let mut running = Vec::new();
    for (name, ip) in nodes.iter().zip(ips) {
        let node_dir = dir.join(port.to_string()).join(name);
        std::fs::create_dir_all(&node_dir).unwrap();
        let log = node_dir.join("stdout.log");
        let child = Command::new("redis-server")
            .args(node_args(services, name, ip, port, &node_dir))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed; scripts/test.sh installs it");
        running.push(Process(child));
        let child = &mut running.last_mut().expect("just pushed").0;
        ports::wait_listening(child, &[port, port + ports::BUS_OFFSET], &log, Duration::from_secs(10))
            .map_err(|e| format!("{name} on {ip}:{port}: {e}"))?;
    }
    Ok(running)
}

fn redis_cli(ip: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", ip, "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is not installed; scripts/test.sh installs it");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

/// Runs `script` with `sh -c` and `path_prefix` first in `PATH`; its
/// success and output. Killed after 60 s.
fn run_script(script: &str, path_prefix: &Path) -> (bool, String) {
    let path = format!(
        "{}:{}",
        path_prefix.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("sh")
        .args(["-c", script])
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The compose nodes' options and the init job's script, for real: six
/// `redis-server`s on 127.0.0.2 … 127.0.0.7 (one address per container)
/// and the script, with the container names resolved by a `getent` that
/// knows them.
#[test]
fn the_init_job_joins_the_compose_nodes_into_a_cluster_once() {
    let services = services();
    let nodes = redis_nodes(&services);
    let ips: Vec<String> = (0..nodes.len()).map(|i| format!("127.0.0.{}", i + 2)).collect();
    let dir = tempfile::tempdir().unwrap();
    // One port for all six addresses, with its bus port: offered until no
    // node finds either taken.
    let (port, running) = ports::retry("the compose nodes", ports::candidate_cluster, |&port| {
        start_nodes(&services, &nodes, &ips, port, dir.path()).map(|running| (port, running))
    });
    for ip in &ips {
        wait_until("a node with the compose options", Duration::from_secs(10), || {
            redis_cli(ip, port, &["ping"]).trim() == "PONG"
        });
    }
    let (first, first_ip) = (&nodes[0], &ips[0]);
    assert!(redis_cli(first_ip, port, &["info", "cluster"]).contains("cluster_enabled:1"));
    assert!(redis_cli(first_ip, port, &["config", "get", "cluster-announce-hostname"]).contains(first.as_str()));

    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let cases: String = nodes
        .iter()
        .zip(&ips)
        .map(|(n, ip)| format!("  {n}) echo \"{ip}  {n}\" ;;\n"))
        .collect();
    let getent = bin.join("getent");
    std::fs::write(
        &getent,
        format!("#!/bin/sh\ncase \"$2\" in\n{cases}  *) exit 2 ;;\nesac\n"),
    )
    .unwrap();
    let executable = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&getent, executable).unwrap();

    let script = shell_script(&services["redis-cluster-init"]);
    let by_name = format!("redis-cli -h {first}");
    assert!(script.contains(&by_name) && script.contains(":6379"), "{script}");
    let script = script
        .replace(&by_name, &format!("redis-cli -h {first_ip} -p {port}"))
        .replace(":6379", &format!(":{port}"));

    let (ok, output) = run_script(&script, &bin);
    assert!(ok, "the init job failed:\n{output}");
    let info = redis_cli(first_ip, port, &["cluster", "info"]);
    for line in ["cluster_state:ok", "cluster_size:3", "cluster_known_nodes:6"] {
        assert!(info.contains(line), "{info}");
    }
    // Which nodes are replicas spreads by gossip, shortly after.
    wait_until("3 masters and 3 replicas", Duration::from_secs(20), || {
        let roles = redis_cli(first_ip, port, &["cluster", "nodes"]);
        roles.matches("master").count() == 3 && roles.matches("slave").count() == 3
    });
    // Clients are sent to the nodes' names, not their addresses.
    let slots = redis_cli(first_ip, port, &["cluster", "slots"]);
    let named = nodes.iter().filter(|n| slots.contains(n.as_str())).count();
    assert!(
        named >= 3,
        "CLUSTER SLOTS names {named} nodes, not every master:\n{slots}"
    );

    let (ok, output) = run_script(&script, &bin);
    assert!(
        ok && output.contains("already created"),
        "a second run of the init job:\n{output}"
    );
    drop(running);
}

/// nginx running `deploy/docker/nginx.conf`, with the replicas' names
/// replaced by loopback addresses.
struct Nginx {
    process: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstreams: &[(String, std::net::SocketAddr)], replica_port: u16) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let (process, port) = ports::retry("nginx", ports::candidate, |&port| {
            let mut process = Nginx::spawn(dir.path(), &log, upstreams, replica_port, port);
            ports::wait_listening(&mut process.0, &[port], &log, Duration::from_secs(10)).map(|()| (process, port))
        });
        Nginx {
            process,
            port,
            _dir: dir,
        }
    }

    /// nginx with the configuration for `port`, writing to `log`.
    fn spawn(
        dir: &Path,
        log: &Path,
        upstreams: &[(String, std::net::SocketAddr)],
        replica_port: u16,
        port: u16,
    ) -> Process {
        let mut conf = read("deploy/docker/nginx.conf");
        for (name, addr) in upstreams {
            conf = conf.replace(&format!("server {name}:{replica_port} "), &format!("server {addr} "));
        }
        let d = dir.display();
        conf = conf
            .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
            .replace("worker_processes auto;", "worker_processes 1;")
            .replacen(
                "http {",
                &format!(
                    "http {{\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n"
                ),
                1,
            );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-e", "stderr", "-g"])
            .arg(format!("daemon off; pid {d}/nginx.pid;"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("nginx is not installed; scripts/test.sh installs it (Debian package nginx)");
        Process(child)
    }
}

impl Drop for Nginx {
    /// SIGTERM lets the master stop its workers; `Process` kills it after.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.process.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_spreads_checks_over_three_real_replicas_and_skips_a_stopped_one() {
    let services = services();
    let port = replica_port(&services);
    let names = replicas(&services);
    let mut running: Vec<(String, Service)> = names.iter().map(|n| (n.clone(), Service::start(""))).collect();
    let upstreams: Vec<(String, std::net::SocketAddr)> = running.iter().map(|(n, s)| (n.clone(), s.addr())).collect();
    let nginx = Nginx::start(&upstreams, port);
    let client = reqwest::Client::new();
    let check = |i: usize| {
        client
            .post(format!("http://127.0.0.1:{}/check", nginx.port))
            .header("x-request-id", format!("deploy-test-{i}"))
            .json(&serde_json::json!({"key": format!("user:{i}")}))
            .send()
    };

    let mut served_by = BTreeSet::new();
    for i in 0..30 {
        let response = check(i).await.expect("nginx answers");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-request-id"],
            format!("deploy-test-{i}").as_str(),
            "nginx replaced the caller's request id"
        );
        served_by.insert(response.headers()["x-served-by"].to_str().unwrap().to_owned());
    }
    let all: BTreeSet<String> = upstreams.iter().map(|(_, a)| a.to_string()).collect();
    assert_eq!(served_by, all, "answers did not come from all three replicas");

    // One replica stops (as `docker compose stop replica2`): every check
    // still succeeds, answered by the other two.
    let (_, stopped) = running.remove(1);
    let stopped_addr = stopped.addr().to_string();
    assert!(stopped.terminate().success());
    let mut served_by = BTreeSet::new();
    for i in 30..60 {
        let response = check(i).await.expect("nginx answers");
        assert_eq!(response.status(), 200, "a check failed with one replica stopped");
        // After a retry nginx lists every replica it tried; the last answered.
        let tried = response.headers()["x-served-by"].to_str().unwrap().to_owned();
        served_by.insert(tried.rsplit(", ").next().unwrap().to_owned());
    }
    assert!(
        !served_by.is_empty() && !served_by.iter().any(|s| s == &stopped_addr),
        "{served_by:?}"
    );
    drop(running);
}
