//! `docs/config.schema.json`: the JSON Schema `ratelimiter config-schema`
//! derives from the settings types. The published copy is the generated
//! one, and it accepts the shipped configuration and every TOML example of
//! the README while refusing what the service refuses to read (checked
//! with the `jsonschema` package in the suite's virtualenv).

use std::path::PathBuf;
use std::process::Command;

use crate::common::{read, repo};

#[test]
fn the_published_schema_is_the_generated_one() {
    let out = Command::new(ratelimiter_testkit::service::binary())
        .arg("config-schema")
        .output()
        .expect("the binary runs");
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    assert!(
        generated == read("docs/config.schema.json"),
        "docs/config.schema.json is stale: run `ratelimiter config-schema > docs/config.schema.json`"
    );
}

#[test]
fn the_schema_accepts_the_shipped_and_documented_files_and_refuses_typos() {
    let python = std::env::var_os("SCHEMA_PYTHON").map_or_else(|| repo("target/venv/bin/python"), PathBuf::from);
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test.sh, which installs jsonschema into target/venv",
        python.display()
    );
    let script = r#"
import json, re, sys, tomllib, jsonschema
schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(schema)
good = {"config/ratelimiter.toml": open(sys.argv[2]).read()}
for i, block in enumerate(re.findall(r"```toml\n(.*?)```", open(sys.argv[3]).read(), re.S)):
    good[f"README.md, TOML example {i}"] = block
bad = {
    "a misspelt key": "[server]\nlisten_addr = \"127.0.0.1:8080\"\n",
    "a number as a string": "[defaults]\nlimit = \"ten\"\n",
    "an unknown algorithm": "[defaults]\nalgorithm = \"leaky\"\n",
    "an unknown section": "[servr]\n",
}
failed = []
for name, text in good.items():
    errors = [e.message for e in validator.iter_errors(tomllib.loads(text))]
    if errors:
        failed.append(f"{name}: {errors[:3]}")
for name, text in bad.items():
    if validator.is_valid(tomllib.loads(text)):
        failed.append(f"{name} is accepted")
print(len(good), "files accepted,", len(bad), "refused")
sys.exit("\n".join(failed) if failed else 0)
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(repo("docs/config.schema.json"))
        .arg(repo("config/ratelimiter.toml"))
        .arg(repo("README.md"))
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
