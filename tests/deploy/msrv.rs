//! Honest build facts: every workspace member's `rust-version` is at least
//! what its locked dependencies (normal and build, transitively) declare,
//! and the README names the service's.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

use crate::common::read;

/// `1.85` or `1.85.0` as a comparable triple.
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[test]
fn every_member_declares_at_least_what_its_locked_dependencies_need() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The packages built here: other platforms' (macOS's and Windows's
    // certificate stores, say) were never downloaded, and need no more.
    let rustc = Command::new("rustc").arg("-vV").output().expect("rustc -vV runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
        ])
        .arg(&host)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages: HashMap<&str, &Value> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let rust_version = |id: &str| packages[id]["rust_version"].as_str().map(version);
    let mut declared = HashMap::new();
    for member in metadata["workspace_members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        let name = packages[member]["name"].as_str().unwrap();
        let mut seen = BTreeSet::new();
        let mut stack = vec![member];
        while let Some(id) = stack.pop() {
            for dep in nodes[id]["deps"].as_array().unwrap() {
                let runtime = dep["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null() || k["kind"] == "build");
                let pkg = dep["pkg"].as_str().unwrap();
                if runtime && seen.insert(pkg) {
                    stack.push(pkg);
                }
            }
        }
        let needed = seen.iter().filter_map(|id| rust_version(id).map(|v| (v, *id))).max();
        let own = rust_version(member).unwrap_or_else(|| panic!("{name} declares a rust-version"));
        if let Some((need, by)) = needed {
            assert!(
                own >= need,
                "{name} declares rust-version {own:?}, but {} needs {need:?}",
                packages[by]["name"]
            );
        }
        declared.insert(name.to_owned(), own);
    }
    let (major, minor, _) = declared["ratelimiter"];
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("Rust toolchain ({major}.{minor} or newer")),
        "the README names the service's minimum, {major}.{minor}"
    );
}
