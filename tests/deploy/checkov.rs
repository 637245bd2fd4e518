//! checkov, static security checks of infrastructure code (in the suite's
//! virtualenv; its policies ship in the package): the Kubernetes
//! manifests, the Terraform module with its example, and the `Dockerfile`
//! pass every check. A check may be skipped only by an inline comment or
//! annotation that gives the reason, and only where [`SKIPS`] lists it, so
//! a new skip is reviewed here. A manifest and a module with known faults
//! fail, so a clean run is not a run that checked nothing.
//!
//! checkov runs offline: `--skip-download` and `BC_SKIP_MAPPING` keep it
//! from asking the Prisma Cloud platform for policy metadata,
//! `CKV_SKIP_PACKAGE_UPDATE_CHECK` from asking PyPI for a newer version, and
//! without an API key it uploads nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{read, repo};

/// Every check skipped in the repository's files: (framework, check id,
/// file relative to what was scanned). The reason is next to the skip.
const SKIPS: &[(&str, &str, &str)] = &[
    ("kubernetes", "CKV_K8S_35", "deployment.yaml"),
    ("kubernetes", "CKV_K8S_43", "deployment.yaml"),
    ("terraform", "CKV2_AWS_20", "alb.tf"),
    ("terraform", "CKV2_AWS_57", "elasticache.tf"),
    ("terraform", "CKV2_AWS_57", "examples/basic/main.tf"),
    ("terraform", "CKV_AWS_103", "alb.tf"),
    ("terraform", "CKV_AWS_109", "kms.tf"),
    ("terraform", "CKV_AWS_111", "kms.tf"),
    ("terraform", "CKV_AWS_356", "kms.tf"),
    ("terraform", "CKV_AWS_378", "alb.tf"),
    ("terraform", "CKV_AWS_91", "alb.tf"),
];

/// One check's result on one resource.
#[derive(Debug)]
struct Finding {
    check: String,
    name: String,
    file: String,
    resource: String,
    /// The reason given for a skip.
    comment: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}) in {}: {}", self.check, self.name, self.file, self.resource)
    }
}

/// What one checkov run found.
#[derive(Debug)]
struct Report {
    framework: String,
    passed: usize,
    failed: Vec<Finding>,
    skipped: Vec<Finding>,
    parsing_errors: u64,
    resources: u64,
}

fn checkov() -> PathBuf {
    let checkov = repo("target/venv/bin/checkov");
    assert!(
        checkov.is_file(),
        "{} is missing: run scripts/test.sh, which installs it into target/venv",
        checkov.display()
    );
    checkov
}

/// Runs checkov's `framework` checks on `target`, a directory (scanned
/// with its subdirectories) or one file; files in the report are relative
/// to it (to its directory, for a file).
fn scan(framework: &str, target: &Path) -> Report {
    let mut command = Command::new(checkov());
    if target.is_dir() {
        command.current_dir(target).args(["-d", "."]);
    } else {
        command
            .current_dir(target.parent().expect("a file in a directory"))
            .arg("-f")
            .arg(target.file_name().unwrap());
    }
    let out = command
        .args(["--framework", framework, "--skip-download", "--output", "json"])
        .args(["--download-external-modules", "false"])
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CKV_SKIP_PACKAGE_UPDATE_CHECK", "TRUE")
        .env_remove("BC_API_KEY")
        .env_remove("PRISMA_API_URL")
        .output()
        .expect("checkov runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov {framework} on {}: no JSON report ({e}); exit {:?}\n{stdout}\n{}",
            target.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    parse(framework, &json)
}

fn parse(framework: &str, json: &Value) -> Report {
    let findings = |kind: &str| -> Vec<Finding> {
        json["results"][kind]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| Finding {
                check: f["check_id"].as_str().unwrap_or_default().to_owned(),
                name: f["check_name"].as_str().unwrap_or_default().to_owned(),
                file: f["file_path"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                resource: f["resource"].as_str().unwrap_or_default().to_owned(),
                comment: f["check_result"]["suppress_comment"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            })
            .collect()
    };
    let summary = &json["summary"];
    Report {
        framework: framework.to_owned(),
        passed: summary["passed"].as_u64().unwrap_or(0) as usize,
        failed: findings("failed_checks"),
        skipped: findings("skipped_checks"),
        parsing_errors: summary["parsing_errors"].as_u64().unwrap_or(0),
        resources: summary["resource_count"].as_u64().unwrap_or(0),
    }
}

/// What is wrong with `report`: failed checks, files checkov could not
/// parse, skips without a reason or not in [`SKIPS`], and entries of
/// [`SKIPS`] for this framework that nothing uses any more.
fn problems(report: &Report) -> Vec<String> {
    let mut problems: Vec<String> = report.failed.iter().map(|f| format!("failed: {f}")).collect();
    if report.parsing_errors > 0 {
        problems.push(format!("{} files checkov could not parse", report.parsing_errors));
    }
    let allowed: BTreeSet<(&str, &str)> = SKIPS
        .iter()
        .filter(|(framework, _, _)| *framework == report.framework)
        .map(|(_, check, file)| (*check, *file))
        .collect();
    let mut used = BTreeSet::new();
    for skip in &report.skipped {
        if skip.comment.is_empty() || skip.comment == "No comment provided" {
            problems.push(format!("skipped without a reason: {skip}"));
        }
        let key = (skip.check.as_str(), skip.file.as_str());
        if allowed.contains(&key) {
            used.insert(key);
        } else {
            problems.push(format!("skipped, and not listed in SKIPS: {skip}"));
        }
    }
    for (check, file) in allowed.difference(&used) {
        problems.push(format!("SKIPS lists {check} in {file}, which nothing skips any more"));
    }
    problems
}

#[track_caller]
fn assert_clean(framework: &str, target: &str) {
    let report = scan(framework, &repo(target));
    assert!(
        report.resources > 0 && report.passed >= 20,
        "checkov {framework} on {target} checked almost nothing: {report:?}"
    );
    let problems = problems(&report);
    assert!(
        problems.is_empty(),
        "checkov {framework} on {target} ({} passed):\n  {}",
        report.passed,
        problems.join("\n  ")
    );
}

#[test]
fn the_kubernetes_manifests_pass_checkov() {
    assert_clean("kubernetes", "deploy/kubernetes");
}

#[test]
fn the_terraform_module_and_its_example_pass_checkov() {
    assert_clean("terraform", "deploy/terraform");
}

#[test]
fn the_dockerfile_passes_checkov() {
    assert_clean("dockerfile", "Dockerfile");
}

/// The Deployment with privilege escalation allowed, in the default
/// namespace, and a skip without a reason; Redis without transit
/// encryption: checkov names each fault, and [`problems`] reports them.
#[test]
fn checkov_finds_known_faults() {
    let dir = tempfile::tempdir().unwrap();
    let k8s = dir.path().join("kubernetes");
    std::fs::create_dir(&k8s).unwrap();
    let deployment = read("deploy/kubernetes/deployment.yaml")
        .replacen("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", 1)
        .replacen("  namespace: ratelimiter\n", "", 1)
        .replacen(
            "  annotations:\n",
            "  annotations:\n    checkov.io/skip9: CKV_K8S_8\n",
            1,
        );
    std::fs::write(k8s.join("deployment.yaml"), deployment).unwrap();
    let report = scan("kubernetes", &k8s);
    let found = problems(&report).join("\n");
    for expected in [
        "failed: CKV_K8S_20 ",
        "failed: CKV_K8S_21 ",
        "skipped without a reason: CKV_K8S_8 ",
        "skipped, and not listed in SKIPS: CKV_K8S_8 ",
    ] {
        assert!(found.contains(expected), "{expected:?} in\n{found}");
    }

    let tf = dir.path().join("terraform");
    std::fs::create_dir(&tf).unwrap();
    let elasticache = read("deploy/terraform/elasticache.tf");
    assert!(elasticache.contains("transit_encryption_enabled = true"));
    std::fs::write(
        tf.join("elasticache.tf"),
        elasticache.replacen(
            "transit_encryption_enabled = true",
            "transit_encryption_enabled = false",
            1,
        ),
    )
    .unwrap();
    let report = scan("terraform", &tf);
    let failed: BTreeSet<&str> = report.failed.iter().map(|f| f.check.as_str()).collect();
    assert!(failed.contains("CKV_AWS_30"), "{report:?}");
    assert!(
        problems(&report).iter().any(|p| p.starts_with("failed: CKV_AWS_30 (")),
        "{report:?}"
    );
}
