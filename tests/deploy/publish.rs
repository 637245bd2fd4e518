//! The client crate is ready to publish: cargo packages it (README,
//! example, sources) without warnings, and its README is the crate's
//! documentation on docs.rs (its code blocks are marked so that rustdoc
//! does not run the fragments).

use std::process::Command;

use crate::common::read;

#[test]
fn the_client_crate_packages_with_its_readme_and_example() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "package",
            "-p",
            "ratelimiter-client",
            "--list",
            "--allow-dirty",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let files = String::from_utf8_lossy(&out.stdout);
    for file in ["README.md", "examples/api_server.rs", "src/lib.rs"] {
        assert!(files.lines().any(|l| l == file), "{file} in\n{files}");
    }
    let manifest = read("client/Cargo.toml");
    assert!(!manifest.contains("publish = false"));
    assert!(read("client/src/lib.rs").contains(r#"#![doc = include_str!("../README.md")]"#));
}
