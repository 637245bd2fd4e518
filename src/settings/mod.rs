//! Typed configuration: a TOML file, then `RATELIMITER__SECTION__KEY`
//! environment overrides, deserialised into [`Settings`].
//!
//! Every section has defaults, so the service runs without a file. Unknown
//! fields are errors. The sections are in [`sections`] (`[telemetry]` in
//! [`telemetry`]); the rule sections
//! (`[defaults]`, `[tiers]`, `[[rules]]`) are kept there as written, and
//! [`crate::limiter::rules::RuleSet`] resolves and validates them.
//! [`Settings::validate`] (`validate.rs`) checks the rest and names the
//! field at fault; [`duration`] parses the durations every module reads.

pub mod duration;
pub mod sections;
pub mod telemetry;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use config::builder::{ConfigBuilder, DefaultState};
use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

pub use self::duration::{format_duration, parse_duration, HumanDuration};
pub use self::sections::*;
pub use self::telemetry::{OtlpProtocol, TelemetrySettings};
pub use self::validate::Problem;

/// Prefix of environment overrides: `RATELIMITER__SERVER__LISTEN=…`.
pub const ENV_PREFIX: &str = "RATELIMITER";

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub reload: ReloadSettings,
    #[serde(default)]
    pub forward: ForwardSettings,
    #[serde(default)]
    pub grpc: GrpcSettings,
    #[serde(default)]
    pub keys: KeysSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub defaults: DefaultsSpec,
    /// Default limits per tier, by tier name.
    #[serde(default)]
    pub tiers: BTreeMap<String, LimitSpec>,
    /// Per-endpoint rules, in file order.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// Where the settings came from, for error messages.
#[derive(Debug, Clone)]
pub enum Origin {
    File(PathBuf),
    Defaults,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Defaults => f.write_str("built-in defaults"),
        }
    }
}

/// The configuration could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: {source}")]
    Load {
        origin: Origin,
        #[source]
        source: config::ConfigError,
    },
    #[error("{origin}: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid { origin: Origin, problems: Vec<Problem> },
}

impl Settings {
    /// Loads the file at `path` (when given) and the process environment's
    /// `RATELIMITER__…` overrides.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_with_env(path, None)
    }

    /// Like [`Settings::load`], with the environment given as a map instead
    /// of read from the process (`None` reads the process environment).
    pub fn load_with_env(
        path: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let origin = path.map_or(Origin::Defaults, |p| Origin::File(p.to_owned()));
        let mut builder = Config::builder();
        if let Some(path) = path {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let env = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("store.redis.nodes")
            .with_list_parse_key("store.redis.sentinels")
            .source(env);
        Settings::from_builder(builder.add_source(env), origin)
    }

    /// Parses settings from TOML text (no environment), as a file would be.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let builder = Config::builder().add_source(File::from_str(text, FileFormat::Toml));
        Settings::from_builder(builder, Origin::Defaults)
    }

    /// Deserialises what `builder` reads, then validates it.
    fn from_builder(builder: ConfigBuilder<DefaultState>, origin: Origin) -> Result<Settings, ConfigError> {
        let settings: Settings =
            builder
                .build()
                .and_then(Config::try_deserialize)
                .map_err(|source| ConfigError::Load {
                    origin: origin.clone(),
                    source,
                })?;
        let mut settings = settings;
        settings
            .read_secret_files()
            .and_then(|()| settings.validate())
            .map_err(|problems| ConfigError::Invalid { origin, problems })?;
        Ok(settings)
    }

    /// Reads `admin.token_file` and `store.redis.password_file` into the
    /// secrets they stand for, so the rest of the service sees one value.
    fn read_secret_files(&mut self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        for (field, value, file) in [
            ("admin.token_file", &mut self.admin.token, &self.admin.token_file),
            (
                "store.redis.password_file",
                &mut self.store.redis.password,
                &self.store.redis.password_file,
            ),
        ] {
            let Some(path) = file else { continue };
            if value.is_some() {
                let twin = field.trim_end_matches("_file");
                problems.push(Problem::new(field, format!("set {twin} or {field}, not both")));
                continue;
            }
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    let text = text.strip_suffix('\r').unwrap_or(text);
                    if text.is_empty() {
                        problems.push(Problem::new(field, format!("{} is empty", path.display())));
                    } else {
                        *value = Some(Secret::new(text));
                    }
                }
                Err(e) => problems.push(Problem::new(field, format!("cannot read {}: {e}", path.display()))),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Environment variables that look meant for the settings but are not read:
/// the prefix with one `_` instead of `__` (`RATELIMITER_ADMIN_TOKEN`), each
/// with the variable it likely meant (`RATELIMITER__ADMIN__TOKEN`).
/// `RATELIMITER_CONFIG` (the configuration file's path) is not one.
pub fn misspelt_env<I: IntoIterator<Item = String>>(names: I) -> Vec<(String, String)> {
    names
        .into_iter()
        .filter_map(|name| {
            let rest = name.strip_prefix("RATELIMITER_")?;
            if rest.starts_with('_') || rest.is_empty() || name == "RATELIMITER_CONFIG" {
                return None;
            }
            let meant = match rest.split_once('_') {
                Some((section, key)) => format!("RATELIMITER__{section}__{key}"),
                None => format!("RATELIMITER__{rest}"),
            };
            Some((name, meant))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_underscore_after_the_prefix_is_a_likely_typo() {
        let names = [
            "RATELIMITER_ADMIN_TOKEN",
            "RATELIMITER__ADMIN__TOKEN",
            "RATELIMITER_CONFIG",
            "RATELIMITER_LOG",
            "PATH",
            "RATELIMITER_STORE_REDIS__URL",
        ]
        .map(String::from);
        assert_eq!(
            super::misspelt_env(names),
            [
                (
                    "RATELIMITER_ADMIN_TOKEN".to_owned(),
                    "RATELIMITER__ADMIN__TOKEN".to_owned()
                ),
                ("RATELIMITER_LOG".to_owned(), "RATELIMITER__LOG".to_owned()),
                (
                    "RATELIMITER_STORE_REDIS__URL".to_owned(),
                    "RATELIMITER__STORE__REDIS__URL".to_owned()
                ),
            ]
        );
    }

    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    #[test]
    fn defaults_without_a_file() {
        let s = Settings::load_with_env(None, Some(HashMap::new())).unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.server.max_key_bytes, 256);
        assert_eq!(s.store.backend, Backend::Memory);
        assert_eq!(s.defaults.limit, 100);
        assert!(s.rules.is_empty());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:9000\"\n[defaults]\nlimit = 5\n").unwrap();
        let env = HashMap::from([
            ("RATELIMITER__SERVER__LISTEN".to_owned(), "127.0.0.1:9100".to_owned()),
            ("RATELIMITER__DEFAULTS__LIMIT".to_owned(), "7".to_owned()),
            ("RATELIMITER__LOG__FORMAT".to_owned(), "json".to_owned()),
        ]);
        let s = Settings::load_with_env(Some(&path), Some(env)).unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(s.defaults.limit, 7);
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn shadow_is_a_boolean_of_defaults_and_rules() {
        let s =
            Settings::from_toml("[defaults]\nshadow = true\n[[rules]]\nendpoint = \"x\"\nshadow = false\n").unwrap();
        assert!(s.defaults.shadow);
        assert_eq!(s.rules[0].shadow, Some(false));
        let err = Settings::from_toml("[[rules]]\nendpoint = \"x\"\nshadow = \"maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("shadow"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Settings::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n").unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
        let err = Settings::from_toml("[[rules]]\nendpoint = \"x\"\nlimt = 3\n").unwrap_err();
        assert!(err.to_string().contains("limt"), "{err}");
    }

    #[test]
    fn unknown_backend_is_rejected() {
        let err = Settings::from_toml("[store]\nbackend = \"etcd\"\n").unwrap_err();
        assert!(err.to_string().contains("etcd"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Settings::load_with_env(Some(Path::new("/nonexistent/rl.toml")), Some(HashMap::new())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/rl.toml"), "{err}");
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "a-mounted-admin-token-0123\n").unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "redis-auth").unwrap();
        let toml = format!(
            "[admin]\ntoken_file = \"{}\"\n[store.redis]\npassword_file = \"{}\"\n",
            token.display(),
            password.display()
        );
        let s = Settings::from_toml(&toml).unwrap();
        assert_eq!(s.admin.token.unwrap().expose(), "a-mounted-admin-token-0123");
        assert_eq!(s.store.redis.password.unwrap().expose(), "redis-auth");

        let both = format!("[admin]\ntoken = \"x\"\ntoken_file = \"{}\"\n", token.display());
        let err = Settings::from_toml(&both).unwrap_err().to_string();
        assert!(
            err.contains("admin.token_file: set admin.token or admin.token_file, not both"),
            "{err}"
        );
        let missing = "[store.redis]\npassword_file = \"/nonexistent/pw\"\n";
        let err = Settings::from_toml(missing).unwrap_err().to_string();
        assert!(
            err.contains("store.redis.password_file: cannot read /nonexistent/pw"),
            "{err}"
        );
        std::fs::write(&token, "short\n").unwrap();
        let short = format!("[admin]\ntoken_file = \"{}\"\n", token.display());
        let err = Settings::from_toml(&short).unwrap_err().to_string();
        assert!(err.contains("admin.token: must be at least 16 characters"), "{err}");
    }

    #[test]
    fn redis_tls_and_sentinel_settings_are_checked_together() {
        let problem = |toml: &str| Settings::from_toml(toml).unwrap_err().to_string();
        let err = problem("[store.redis]\ntls_ca_file = \"/ca.pem\"\n");
        assert!(
            err.contains("store.redis.tls_ca_file") && err.contains("rediss://"),
            "{err}"
        );
        let err = problem("[store.redis]\nurl = \"rediss://h:1\"\ntls_cert_file = \"/c.pem\"\n");
        assert!(err.contains("tls_cert_file and tls_key_file"), "{err}");
        let ok = "[store.redis]\nurl = \"rediss://h:1\"\ntls_ca_file = \"/ca\"\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\n";
        assert!(Settings::from_toml(ok).unwrap().store.redis.uses_tls());
        let seeds = "[store.redis]\nmode = \"cluster\"\nnodes = [\"rediss://h:1\"]\ntls_ca_file = \"/ca\"\n";
        assert!(Settings::from_toml(seeds).is_ok());

        let err = problem("[store.redis]\nmode = \"sentinel\"\n");
        assert!(
            err.contains("store.redis.sentinels") && err.contains("store.redis.service_name"),
            "{err}"
        );
        let err = problem("[store.redis]\nsentinels = [\"h:26379\"]\n");
        assert!(err.contains("sentinel addresses need mode"), "{err}");
        let env = HashMap::from([
            ("RATELIMITER__STORE__REDIS__MODE".to_owned(), "sentinel".to_owned()),
            (
                "RATELIMITER__STORE__REDIS__SENTINELS".to_owned(),
                "a:26379,b:26379".to_owned(),
            ),
            ("RATELIMITER__STORE__REDIS__SERVICE_NAME".to_owned(), "main".to_owned()),
            ("RATELIMITER__STORE__REDIS__PASSWORD".to_owned(), "12345678".to_owned()),
        ]);
        let s = Settings::load_with_env(None, Some(env)).unwrap();
        assert_eq!(s.store.redis.sentinels, ["a:26379", "b:26379"]);
        assert_eq!(s.store.redis.password.as_ref().map(|p| p.expose()), Some("12345678"));
        assert!(
            !format!("{:?}", s.store.redis).contains("12345678"),
            "the password is not printed"
        );
    }

    #[test]
    fn invalid_server_settings_name_the_field() {
        let err = Settings::from_toml("[server]\nmax_key_bytes = 0\n").unwrap_err();
        assert!(err.to_string().contains("server.max_key_bytes"), "{err}");
        let err = Settings::from_toml("[server]\nshutdown_timeout = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
        let err = Settings::from_toml("[log]\nlevel = \"=[\"\n").unwrap_err();
        assert!(err.to_string().contains("log.level"), "{err}");
    }

    #[test]
    fn the_admin_token_is_never_printed() {
        let s = Settings::from_toml("[admin]\ntoken = \"0123456789abcdef-secret\"\n").unwrap();
        assert_eq!(
            s.admin.token.as_ref().map(Secret::expose),
            Some("0123456789abcdef-secret")
        );
        assert!(!format!("{s:?}").contains("0123456789abcdef-secret"));
        let err = Settings::from_toml("[admin]\ntoken = \"short\"\n").unwrap_err();
        assert!(
            err.to_string().contains("admin.token") && !err.to_string().contains("short"),
            "{err}"
        );
    }

    #[test]
    fn durations_parse_like_people_write_them() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("ten").is_err());
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
    }
}
