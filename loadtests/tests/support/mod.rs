//! Shared by this crate's integration tests: where the `ratelimiter`
//! binary of this build is.
//!
//! # Finding the `ratelimiter` binary
//!
//! Cargo sets `CARGO_BIN_EXE_<name>` only for the binaries of the test's own
//! package, and the service is another package of the workspace. So the
//! test looks where Cargo puts every binary of this build: the directory of
//! the test executable itself (`<target-dir>/<profile>/deps/..`), which
//! follows `CARGO_TARGET_DIR`, `--release` and `--target` without guessing.
//! `cargo test --workspace` has built `ratelimiter` there already (the root
//! crate's own tests need it). When it is missing, or older than the root
//! crate's sources (`cargo test -p loadgen` after an edit), the test runs
//! `cargo build -p ratelimiter --bin ratelimiter` once and uses the path
//! Cargo reports. Running it always would cost a rebuild of the service's
//! dependencies with another feature set the first time (~30 s), since a
//! plain build does not unify features with the dev-dependencies of a test
//! build.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

use serde_json::Value;

/// The `ratelimiter` binary of this build (see the module docs).
pub fn ratelimiter_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("the test's own path");
            // <target-dir>/<profile>/deps/e2e-<hash>
            let profile_dir = exe.parent().and_then(Path::parent).expect("a deps directory");
            let candidate = profile_dir.join(format!("ratelimiter{}", std::env::consts::EXE_SUFFIX));
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the workspace root");
            if is_fresh(&candidate, workspace) {
                return candidate;
            }
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            build_ratelimiter(workspace, release)
        })
        .clone()
}

/// Whether `binary` exists and is newer than the root crate's sources.
fn is_fresh(binary: &Path, workspace: &Path) -> bool {
    let Some(built) = modified(binary) else { return false };
    let mut newest = [workspace.join("Cargo.toml"), workspace.join("Cargo.lock")]
        .iter()
        .filter_map(|p| modified(p))
        .max();
    let mut dirs = vec![workspace.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                newest = newest.max(modified(&path));
            }
        }
    }
    newest.is_some_and(|newest| built >= newest)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `cargo build -p ratelimiter --bin ratelimiter`; the executable it reports.
fn build_ratelimiter(workspace: &Path, release: bool) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace).args([
        "build",
        "-p",
        "ratelimiter",
        "--bin",
        "ratelimiter",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        command.arg("--release");
    }
    let output = command.stderr(Stdio::inherit()).output().expect("run cargo build");
    assert!(output.status.success(), "cargo build --bin ratelimiter failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "ratelimiter")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported the ratelimiter executable")
}
