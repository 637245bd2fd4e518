//! The `Dockerfile`: multi-stage, a small final image running as a numeric
//! non-root user, a health check on a liveness path, configuration through
//! real settings.

use std::collections::BTreeMap;

use crate::common::{assert_liveness_path, health_command_target, read, repo, settings_from_env, uid};

/// One instruction: its keyword (upper case) and the rest of the line.
pub struct Instruction {
    pub keyword: String,
    pub args: String,
}

/// The instructions of a Dockerfile, continuation lines joined, comments
/// and parser directives dropped.
pub fn instructions(text: &str) -> Vec<Instruction> {
    let mut result = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
        result.push(Instruction {
            keyword: keyword.to_uppercase(),
            args: args.trim().to_owned(),
        });
        current.clear();
    }
    result
}

/// The instructions of the final stage (after the last `FROM`).
pub fn final_stage() -> Vec<Instruction> {
    let all = instructions(&read("Dockerfile"));
    let last_from = all.iter().rposition(|i| i.keyword == "FROM").expect("a FROM");
    all.into_iter().skip(last_from).collect()
}

/// The final image's user (`USER`), which Kubernetes and ECS must match.
pub fn image_user() -> String {
    final_stage()
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.args.clone())
        .expect("the final stage sets USER")
}

/// `ENV A=1 B=2` of the final stage, as a map.
pub fn image_env() -> BTreeMap<String, String> {
    final_stage()
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(|pair| {
                    let (name, value) = pair.split_once('=').expect("ENV NAME=value");
                    (name.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_build_has_two_stages_and_ships_only_the_binary() {
    let all = instructions(&read("Dockerfile"));
    let froms: Vec<&Instruction> = all.iter().filter(|i| i.keyword == "FROM").collect();
    assert!(froms.len() >= 2, "not a multi-stage build");
    let base = &froms.last().unwrap().args;
    assert!(
        base.contains("slim") || base.contains("distroless"),
        "the final image {base:?} is neither slim nor distroless"
    );
    let stage = final_stage();
    assert!(
        stage
            .iter()
            .any(|i| i.keyword == "COPY" && i.args.starts_with("--from=") && i.args.contains("ratelimiter")),
        "the final stage does not copy the binary from the build stage"
    );
    assert!(
        !stage.iter().any(|i| i.keyword == "RUN" && i.args.contains("cargo")),
        "the final stage compiles"
    );
}

#[test]
fn the_image_runs_as_a_numeric_non_root_user() {
    let user = image_user();
    assert_ne!(uid(&user), 0, "USER {user} is root");
    let group = user.split(':').nth(1).expect("USER uid:gid");
    assert_ne!(
        group.parse::<u32>().expect("a numeric group"),
        0,
        "USER {user}: group root"
    );
}

#[tokio::test]
async fn the_health_check_asks_a_liveness_path_on_the_listen_port() {
    let stage = final_stage();
    let check = stage
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("the final stage has a HEALTHCHECK");
    let words: Vec<String> =
        match serde_json::from_str::<Vec<String>>(check.args.trim_start_matches(|c| c != '[').trim()) {
            Ok(words) => words,
            Err(e) => panic!("HEALTHCHECK CMD as a JSON list: {e}: {}", check.args),
        };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (port, path) = health_command_target(&words);
    assert_liveness_path("Dockerfile HEALTHCHECK", &path).await;

    let env = image_env();
    let config = env.get("RATELIMITER_CONFIG").expect("RATELIMITER_CONFIG");
    let copied = stage
        .iter()
        .find(|i| i.keyword == "COPY" && i.args.ends_with(config.as_str()))
        .unwrap_or_else(|| panic!("RATELIMITER_CONFIG={config} is not copied into the image"));
    let source = copied.args.split_whitespace().next().unwrap();
    let settings = settings_from_env("Dockerfile ENV", Some(&repo(source)), &env);
    assert_eq!(
        settings.server.listen.port(),
        port,
        "the health check asks another port"
    );
    assert!(
        settings.server.listen.ip().is_unspecified(),
        "the image listens on {} only",
        settings.server.listen
    );
    let exposed: Vec<u16> = stage
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(|p| p.trim_end_matches("/tcp").parse().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(exposed, vec![port], "EXPOSE differs from server.listen");
    // The binary checks itself: the image needs no curl.
    assert!(
        !stage.iter().any(|i| i.keyword == "RUN" && i.args.contains("curl")),
        "the final image installs curl, which nothing needs"
    );
}

/// Every path the workspace manifest names must be in the build context
/// the build stage copies, or cargo refuses the manifest before building:
/// the workspace members and the `[[bench]]` targets' files.
#[test]
fn the_build_stage_copies_everything_the_manifest_names() {
    let manifest = read("Cargo.toml");
    let mut needed: Vec<String> = Vec::new();
    let members = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("a [workspace] members list");
    needed.extend(
        members
            .split(',')
            .map(|m| m.trim().trim_matches('"').to_owned())
            .filter(|m| !m.is_empty() && m != "."),
    );
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if let Some(name) = line.strip_prefix("name = ").filter(|_| in_bench) {
            needed.push(format!("benches/{}.rs", name.trim_matches('"')));
        }
    }
    assert!(needed.iter().any(|p| p.starts_with("benches/")), "{needed:?}");
    let all = instructions(&read("Dockerfile"));
    let build_stage_end = all.iter().rposition(|i| i.keyword == "FROM").expect("a FROM");
    let copied: Vec<String> = all[..build_stage_end]
        .iter()
        .filter(|i| i.keyword == "COPY" && !i.args.starts_with("--from="))
        .flat_map(|i| {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            words[..words.len().saturating_sub(1)]
                .iter()
                .map(|w| w.trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    for path in &needed {
        assert!(
            copied.iter().any(|c| path == c || path.starts_with(&format!("{c}/"))),
            "the build stage does not copy {path} (it copies {copied:?}): cargo would refuse the manifest"
        );
        assert!(repo(path).exists(), "{path} does not exist");
    }
}
