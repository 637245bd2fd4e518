//! `deploy/envoy/`: Envoy, Istio and Envoy Gateway pointed at the gRPC
//! listener. No Envoy runs here, so the files are checked against the
//! README's `[grpc]` example: the filter's domain is a configured domain,
//! the cluster speaks HTTP/2 to the gRPC port, and the descriptors the
//! `rate_limits` actions make carry the entries the mapping reads.

use ratelimiter::settings::Settings;
use serde_json::Value;

use crate::common::{read, yaml_documents};

/// The README's `[grpc]` example, as settings.
fn readme_grpc() -> Settings {
    let readme = read("README.md");
    let start = readme.find("```toml\n[grpc]").expect("the README's [grpc] example");
    let body = &readme[start + "```toml\n".len()..];
    let toml = &body[..body.find("```").unwrap()];
    Settings::from_toml(toml).expect("the README's [grpc] example loads")
}

/// Every value under `key`, anywhere in `value`.
fn all<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    out.push(v);
                }
                all(v, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| all(v, key, out)),
        _ => {}
    }
}

#[test]
fn envoy_istio_and_envoy_gateway_match_the_grpc_mapping() {
    let settings = readme_grpc();
    let port = settings.grpc.listen.expect("a gRPC listener").port();
    let domain = &settings.grpc.domains[0];
    for path in [
        "deploy/envoy/envoy.yaml",
        "deploy/envoy/istio-envoyfilter.yaml",
        "deploy/envoy/envoy-gateway-patch.yaml",
    ] {
        let docs = yaml_documents(path);
        let doc = Value::Array(docs);
        let mut domains = Vec::new();
        all(&doc, "domain", &mut domains);
        assert!(!domains.is_empty(), "{path}: a ratelimit filter");
        for d in domains {
            assert_eq!(d.as_str(), Some(domain.domain.as_str()), "{path}");
        }
        let mut versions = Vec::new();
        all(&doc, "transport_api_version", &mut versions);
        assert!(versions.iter().all(|v| v.as_str() == Some("V3")), "{path}");
        // The descriptors: remote_address is the key entry; a request
        // header named after the endpoint entry selects the rule.
        let mut keys = Vec::new();
        all(&doc, "descriptor_key", &mut keys);
        let endpoint = domain.endpoint_entry.as_deref().unwrap();
        assert!(keys.iter().any(|k| k.as_str() == Some(endpoint)), "{path}: {keys:?}");
        let mut remote = Vec::new();
        all(&doc, "remote_address", &mut remote);
        assert_eq!(domain.key_entries.as_deref(), Some(&["remote_address".to_owned()][..]));
        assert!(!remote.is_empty(), "{path}: a remote_address action");
        // The gRPC port, over HTTP/2, where the cluster is defined here.
        let mut ports = Vec::new();
        all(&doc, "port_value", &mut ports);
        let mut h2 = Vec::new();
        all(&doc, "http2_protocol_options", &mut h2);
        if path != "deploy/envoy/istio-envoyfilter.yaml" {
            assert!(ports.iter().any(|p| p.as_u64() == Some(u64::from(port))), "{path}");
            assert!(!h2.is_empty(), "{path}: HTTP/2 to the gRPC listener");
        } else {
            let text = read(path);
            assert!(text.contains(&format!("outbound|{port}||")), "{path}");
        }
    }
}
