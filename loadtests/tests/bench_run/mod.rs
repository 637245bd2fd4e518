//! Runs `scripts/bench.sh` for the bench and soak tests: this build's
//! binaries, a fresh output directory, and none of the caller's `BENCH_*`
//! settings but those the test sets.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::ratelimiter_binary;

/// What a run left: its output directory and its standard output.
pub struct Run {
    pub out: tempfile::TempDir,
    pub stdout: String,
}

/// Runs `scripts/bench.sh <mode>` with `settings` (`BENCH_*` variables)
/// and asserts it succeeded.
pub fn bench(mode: &str, settings: &[(&str, &str)]) -> Run {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let out = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new("bash");
    command
        .arg(workspace.join("scripts/bench.sh"))
        .arg(mode)
        .env("RATELIMITER_BIN", ratelimiter_binary())
        .env("LOADGEN_BIN", env!("CARGO_BIN_EXE_loadgen"))
        .env("CEILING_BIN", env!("CARGO_BIN_EXE_ceiling"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("BENCH_")) {
        command.env_remove(name);
    }
    command.env("BENCH_OUT", out.path()).envs(settings.iter().copied());
    let output = command.output().expect("run scripts/bench.sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n--- stderr\n{stderr}");
    assert!(output.status.success(), "bench.sh {mode} failed: {:?}", output.status);
    Run { out, stdout }
}

/// A JSON file the run wrote.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
