//! `deploy/kubernetes/`: the ConfigMap's TOML is valid settings, the
//! Deployment's probes, ports, environment, security context and shutdown
//! timing agree with it and with the image, the Service, PDB, HPA and
//! NetworkPolicy select its pods, the NetworkPolicy admits exactly the
//! ports the Service exposes and lets out only DNS and Redis, and every
//! object lives in the manifests' own namespace.

use std::collections::{BTreeMap, BTreeSet};

use ratelimiter::settings::{Backend, RedisMode, Settings};
use serde_json::Value;

use crate::common::{
    assert_liveness_path, assert_readiness_path, read, repo, scalar, settings_from_toml_and_env, uid, yaml,
    yaml_documents,
};
use crate::docker::image_user;

const DIR: &str = "deploy/kubernetes";

/// Values of the Secrets the manifests expect to exist (created by the
/// operator, documented in deploy/README.md), by (Secret, key).
const SECRETS: &[((&str, &str), &str)] = &[
    (("ratelimiter-admin", "token"), "k8s-admin-token-0123456789"),
    (
        ("ratelimiter-redis", "url"),
        "redis://ratelimiter:password@redis-cluster:6379",
    ),
];

/// Every document of every manifest (not the kustomization), with its file.
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<String> = std::fs::read_dir(repo(DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| (f.ends_with(".yaml") || f.ends_with(".yml")) && f != "kustomization.yaml")
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|f| {
            yaml_documents(&format!("{DIR}/{f}"))
                .into_iter()
                .map(move |doc| (f.clone(), doc))
        })
        .collect()
}

/// The one object of `kind`.
#[track_caller]
fn one(kind: &str) -> Value {
    let found: Vec<Value> = manifests()
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found.into_iter().next().unwrap()
}

fn config_maps() -> BTreeMap<String, serde_json::Map<String, Value>> {
    manifests()
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "ConfigMap")
        .map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap().to_owned();
            (name, d["data"].as_object().cloned().unwrap_or_default())
        })
        .collect()
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), scalar(v, k)))
        .collect()
}

fn pod_spec(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

fn container(deployment: &Value) -> &Value {
    let containers = pod_spec(deployment)["containers"].as_array().expect("containers");
    containers
        .iter()
        .find(|c| c["name"] == "ratelimiter")
        .expect("a ratelimiter container")
}

/// The TOML the Deployment mounts as its configuration file.
fn mounted_toml(deployment: &Value) -> String {
    let container = container(deployment);
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| scalar(a, "arg"))
        .collect();
    let config = &args[args.iter().position(|a| a == "--config").expect("--config") + 1];
    let (volume, key) = mounted_file(deployment, config);
    let map_name = volume["configMap"]["name"].as_str().expect("a ConfigMap volume");
    let maps = config_maps();
    let data = maps.get(map_name).unwrap_or_else(|| panic!("no ConfigMap {map_name}"));
    scalar(
        data.get(&key)
            .unwrap_or_else(|| panic!("ConfigMap {map_name} has no {key}")),
        "toml",
    )
}

/// The container's environment, `valueFrom` resolved against the
/// ConfigMaps of the manifests and [`SECRETS`].
fn container_env(deployment: &Value) -> BTreeMap<String, String> {
    let maps = config_maps();
    container(deployment)["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = scalar(&e["name"], "name");
            let value = if let Some(v) = e.get("value") {
                scalar(v, &name)
            } else if let Some(r) = e["valueFrom"].get("configMapKeyRef") {
                let (map, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                let data = maps.get(map).unwrap_or_else(|| panic!("{name}: no ConfigMap {map}"));
                scalar(
                    data.get(key)
                        .unwrap_or_else(|| panic!("{name}: ConfigMap {map} has no {key}")),
                    key,
                )
            } else if let Some(r) = e["valueFrom"].get("secretKeyRef") {
                let (secret, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                SECRETS
                    .iter()
                    .find(|((s, k), _)| *s == secret && *k == key)
                    .map(|(_, v)| (*v).to_owned())
                    .unwrap_or_else(|| panic!("{name}: Secret {secret} key {key} is not documented in the test"))
            } else {
                panic!("{name}: neither value nor valueFrom")
            };
            (name, value)
        })
        .collect()
}

fn deployment_settings(deployment: &Value) -> Settings {
    let files = tempfile::tempdir().unwrap();
    let mut env = container_env(deployment);
    for (name, value) in env.iter_mut() {
        if name.ends_with("_FILE") {
            let secret = mounted_secret(deployment, value);
            let copy = files.path().join(name.as_str());
            std::fs::write(&copy, secret).unwrap();
            *value = copy.to_str().unwrap().to_owned();
        }
    }
    settings_from_toml_and_env("deploy/kubernetes Deployment", &mounted_toml(deployment), &env)
}

/// The volume mounted (read-only) where the container sees `path`, and
/// the key of its ConfigMap or Secret that the file holds.
#[track_caller]
fn mounted_file(deployment: &Value, path: &str) -> (Value, String) {
    let (dir, file) = path.rsplit_once('/').unwrap();
    let mount = container(deployment)["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {dir}"))
        .clone();
    assert_eq!(mount["readOnly"], true, "{dir} is mounted read-only");
    let volume = pod_spec(deployment)["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume")
        .clone();
    let source = if volume.get("secret").is_some() {
        "secret"
    } else {
        "configMap"
    };
    let key = volume[source]["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["path"] == file))
        .map_or(file.to_owned(), |i| scalar(&i["key"], "key"));
    (volume, key)
}

/// The value the file at `path` holds in the container: a key of a
/// Secret mounted as a volume, from [`SECRETS`].
#[track_caller]
fn mounted_secret(deployment: &Value, path: &str) -> String {
    let (volume, key) = mounted_file(deployment, path);
    let secret = volume["secret"]["secretName"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: not in a Secret volume"));
    SECRETS
        .iter()
        .find(|((s, k), _)| *s == secret && *k == key)
        .map(|(_, v)| (*v).to_owned())
        .unwrap_or_else(|| panic!("{path}: Secret {secret} key {key} is not documented in the test"))
}

/// The container port named or numbered `port`.
#[track_caller]
fn container_port(deployment: &Value, port: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return n as u16;
    }
    let name = port.as_str().expect("a port name or number");
    container(deployment)["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}")) as u16
}

#[test]
fn kustomization_lists_every_manifest() {
    let kustomization = yaml(&format!("{DIR}/kustomization.yaml"));
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| scalar(r, "resource"))
        .collect();
    let files: BTreeSet<String> = manifests().into_iter().map(|(f, _)| f).collect();
    assert_eq!(listed, files);
    let namespace = one("Namespace");
    let namespace = namespace["metadata"]["name"].as_str().expect("the Namespace's name");
    assert_eq!(
        kustomization["namespace"], namespace,
        "the kustomization puts the objects in another namespace"
    );
    for (file, doc) in manifests() {
        if doc["kind"] != "Namespace" {
            assert_eq!(
                doc["metadata"]["namespace"], namespace,
                "{file}: a {} outside namespace {namespace}",
                doc["kind"]
            );
        }
        for field in ["apiVersion", "kind"] {
            assert!(doc[field].is_string(), "{file}: a document without {field}");
        }
        assert!(
            doc["metadata"]["name"].is_string(),
            "{file}: a {} without a name",
            doc["kind"]
        );
    }
}

#[test]
fn the_configmap_is_valid_settings_for_a_redis_cluster() {
    let deployment = one("Deployment");
    let toml = mounted_toml(&deployment);
    let settings = Settings::from_toml(&toml).unwrap_or_else(|e| panic!("the ConfigMap's TOML: {e}"));
    ratelimiter::limiter::rules::RuleSet::from_settings(&settings).expect("the ConfigMap's rules");
    assert_eq!(settings.store.backend, Backend::Redis);
    assert_eq!(settings.store.redis.mode, RedisMode::Cluster);
    assert!(
        settings.server.listen.ip().is_unspecified(),
        "listens on {}",
        settings.server.listen
    );
}

#[tokio::test]
async fn probes_ask_the_health_routes_on_the_listen_port() {
    let deployment = one("Deployment");
    let settings = deployment_settings(&deployment);
    let container = container(&deployment);
    for (probe, readiness) in [
        ("livenessProbe", false),
        ("readinessProbe", true),
        ("startupProbe", false),
    ] {
        let get = &container[probe]["httpGet"];
        if probe == "startupProbe" && get.is_null() {
            continue;
        }
        let path = get["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{probe}: no httpGet path"));
        assert_eq!(
            container_port(&deployment, &get["port"]),
            settings.server.listen.port(),
            "{probe} asks another port than server.listen"
        );
        if readiness {
            assert_readiness_path(probe, path).await;
        } else {
            assert_liveness_path(probe, path).await;
        }
    }
}

#[test]
fn the_environment_holds_real_settings_from_existing_config_maps_and_documented_secrets() {
    let deployment = one("Deployment");
    let env = container_env(&deployment);
    assert!(env.keys().all(|name| name.starts_with("RATELIMITER__")), "{env:?}");
    let settings = deployment_settings(&deployment);
    assert!(!settings.store.redis.nodes.is_empty(), "no Redis seed nodes");
    assert_eq!(
        settings.admin.token.as_ref().map(|t| t.expose()),
        Some("k8s-admin-token-0123456789"),
        "the admin token is read from the mounted Secret"
    );

    let docs = read("deploy/README.md");
    for ((secret, key), _) in SECRETS {
        assert!(
            docs.contains(secret) && docs.contains(key),
            "deploy/README.md does not explain Secret {secret}"
        );
    }

    // /admin has its own port, declared on the container and kept out of
    // the Service.
    let admin = settings.admin.listen.expect("admin.listen").port();
    assert_eq!(container_port(&deployment, &Value::from("admin")), admin);
    let service = one("Service");
    for port in service["spec"]["ports"].as_array().unwrap() {
        assert_ne!(
            container_port(&deployment, &port["targetPort"]),
            admin,
            "the Service exposes /admin"
        );
    }
}

#[test]
fn pods_run_as_the_image_user_with_a_read_only_root() {
    let deployment = one("Deployment");
    let pod = &pod_spec(&deployment)["securityContext"];
    assert_eq!(pod["runAsNonRoot"], true);
    assert_eq!(
        pod["runAsUser"].as_u64(),
        Some(u64::from(uid(&image_user()))),
        "not the Dockerfile's USER"
    );
    let security = &container(&deployment)["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let resources = &container(&deployment)["resources"];
    assert!(resources["requests"]["cpu"].is_string(), "the HPA needs a CPU request");
    assert!(resources["limits"]["memory"].is_string(), "no memory limit");
    assert!(resources["limits"]["cpu"].is_string(), "no CPU limit");
}

/// A `host:port` or `redis://host:port` address's port.
#[track_caller]
fn address_port(address: &str) -> u16 {
    let (_, port) = address.trim_end_matches('/').rsplit_once(':').expect("host:port");
    port.parse().unwrap_or_else(|_| panic!("{address}: no port"))
}

#[test]
fn the_network_policy_admits_the_service_ports_and_lets_out_only_dns_and_redis() {
    let deployment = one("Deployment");
    let settings = deployment_settings(&deployment);
    let policy = one("NetworkPolicy");
    assert_eq!(
        labels(&policy["spec"]["podSelector"]["matchLabels"]),
        labels(&deployment["spec"]["selector"]["matchLabels"]),
        "the NetworkPolicy does not select exactly the Deployment's pods"
    );
    let types: BTreeSet<String> = policy["spec"]["policyTypes"]
        .as_array()
        .expect("policyTypes")
        .iter()
        .map(|t| scalar(t, "policyType"))
        .collect();
    assert_eq!(types, BTreeSet::from(["Ingress".to_owned(), "Egress".to_owned()]));

    // In: what the Service exposes (the listen port) and the gRPC listener
    // when there is one; never the admin port.
    let ports = |direction: &str| -> BTreeSet<(String, u16)> {
        policy["spec"][direction]
            .as_array()
            .unwrap_or_else(|| panic!("no {direction} rules"))
            .iter()
            .flat_map(|rule| rule["ports"].as_array().expect("every rule names its ports").clone())
            .map(|p| {
                (
                    p["protocol"].as_str().unwrap_or("TCP").to_owned(),
                    container_port(&deployment, &p["port"]),
                )
            })
            .collect()
    };
    let mut exposed: BTreeSet<(String, u16)> = one("Service")["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ("TCP".to_owned(), container_port(&deployment, &p["targetPort"])))
        .collect();
    assert!(exposed.contains(&("TCP".to_owned(), settings.server.listen.port())));
    if let Some(grpc) = settings.grpc.listen {
        exposed.insert(("TCP".to_owned(), grpc.port()));
    }
    let ingress = ports("ingress");
    assert_eq!(ingress, exposed, "the NetworkPolicy's ingress ports");
    let admin = settings.admin.listen.expect("admin.listen").port();
    assert!(
        !ingress.iter().any(|(_, port)| *port == admin),
        "the NetworkPolicy admits the admin port"
    );

    // Out: DNS, and the Redis seed nodes' port.
    let mut needed = BTreeSet::from([("UDP".to_owned(), 53), ("TCP".to_owned(), 53)]);
    for node in &settings.store.redis.nodes {
        needed.insert(("TCP".to_owned(), address_port(node)));
    }
    assert_eq!(ports("egress"), needed, "the NetworkPolicy's egress ports");
}

#[test]
fn termination_grace_covers_pre_stop_drain_and_shutdown() {
    let deployment = one("Deployment");
    let settings = deployment_settings(&deployment);
    let command: Vec<String> = container(&deployment)["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("a preStop exec hook")
        .iter()
        .map(|w| scalar(w, "command"))
        .collect();
    assert_eq!(command[0], "sleep", "{command:?}");
    let pre_stop: f64 = command[1].parse().expect("sleep seconds");
    let drain = settings.server.drain_grace.0.as_secs_f64();
    let shutdown = settings.server.shutdown_timeout.0.as_secs_f64();
    assert!(
        drain > 0.0,
        "server.drain_grace is 0: readiness never turns 503 before exit"
    );
    let grace = pod_spec(&deployment)["terminationGracePeriodSeconds"]
        .as_f64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > pre_stop + drain + shutdown,
        "terminationGracePeriodSeconds {grace} ≤ preStop {pre_stop} + drain_grace {drain} + shutdown_timeout {shutdown}"
    );
}

#[test]
fn service_pdb_and_hpa_select_the_deployment_pods() {
    let deployment = one("Deployment");
    let name = deployment["metadata"]["name"].as_str().unwrap();
    let pods = labels(&deployment["spec"]["template"]["metadata"]["labels"]);
    let subset = |what: &str, selector: &BTreeMap<String, String>| {
        assert!(!selector.is_empty(), "{what}: empty selector");
        for (k, v) in selector {
            assert_eq!(
                pods.get(k),
                Some(v),
                "{what} selects {k}={v}, which the pods do not carry"
            );
        }
    };
    let selector = labels(&deployment["spec"]["selector"]["matchLabels"]);
    subset("Deployment", &selector);

    let service = one("Service");
    subset("Service", &labels(&service["spec"]["selector"]));
    for port in service["spec"]["ports"].as_array().unwrap() {
        container_port(&deployment, &port["targetPort"]);
    }

    let pdb = one("PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    let pdb_selector = labels(&pdb["spec"]["selector"]["matchLabels"]);
    subset("PodDisruptionBudget", &pdb_selector);
    assert_eq!(
        pdb_selector, selector,
        "the PDB does not cover exactly the Deployment's pods"
    );

    let hpa = one("HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(
        (target["kind"].as_str(), target["name"].as_str()),
        (Some("Deployment"), Some(name))
    );
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    let (min, max) = (
        hpa["spec"]["minReplicas"].as_u64().unwrap(),
        hpa["spec"]["maxReplicas"].as_u64().unwrap(),
    );
    assert_eq!(replicas, 3);
    assert_eq!(
        min, replicas,
        "the HPA's minReplicas differs from the Deployment's replicas"
    );
    assert!(max > min);
    let metric = &hpa["spec"]["metrics"][0]["resource"];
    assert_eq!(metric["name"], "cpu");
    // The PDB must let at least one pod go when the HPA is at its minimum.
    match (
        pdb["spec"]["maxUnavailable"].as_u64(),
        pdb["spec"]["minAvailable"].as_u64(),
    ) {
        (Some(max_unavailable), None) => assert!(max_unavailable >= 1),
        (None, Some(min_available)) => assert!(min_available < min, "minAvailable {min_available} blocks every drain"),
        other => panic!("the PDB sets neither or both of maxUnavailable and minAvailable: {other:?}"),
    }
}

/// kubernetes-validate (in the suite's virtualenv; it carries the
/// Kubernetes schemas, so it runs offline), strict: every manifest the
/// kustomization lists is a valid object of its kind, and a broken one is
/// refused (the validator really validates).
#[test]
fn kubernetes_validate_accepts_every_manifest_strictly() {
    let validate = crate::common::repo("target/venv/bin/kubernetes-validate");
    assert!(
        validate.is_file(),
        "{} is missing: run scripts/test.sh, which installs it into target/venv",
        validate.display()
    );
    let files: BTreeSet<String> = manifests().into_iter().map(|(f, _)| f).collect();
    let paths: Vec<std::path::PathBuf> = files
        .iter()
        .map(|f| crate::common::repo(&format!("{DIR}/{f}")))
        .collect();
    let out = std::process::Command::new(&validate)
        .arg("--strict")
        .args(&paths)
        .output()
        .expect("kubernetes-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for file in &files {
        assert!(text.contains(&format!("{file} passed")), "{file} in\n{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let deployment = crate::common::read(&format!("{DIR}/deployment.yaml"));
    std::fs::write(&broken, deployment.replacen("replicas:", "replicaz:", 1)).unwrap();
    let out = std::process::Command::new(&validate)
        .arg("--strict")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelt field is refused");
}
