//! `[telemetry]`: traces exported over OTLP, off unless `otlp_endpoint` is
//! set (see [`crate::telemetry`] for what is exported), and the checks of
//! its fields.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::HumanDuration;
use super::validate::Problem;

/// `[telemetry]`: OpenTelemetry traces.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector's base URL, such as `http://127.0.0.1:4318` (HTTP) or
    /// `http://127.0.0.1:4317` (gRPC), or `https://` for TLS; over HTTP,
    /// traces go to its `/v1/traces`. Absent: no traces are made or
    /// exported.
    pub otlp_endpoint: Option<String>,
    /// `http` (OTLP over HTTP with protobuf bodies) or `grpc`.
    pub protocol: OtlpProtocol,
    /// The share of traces started here that are kept, from 0.0 to 1.0. A
    /// request that brings a `traceparent` follows its caller's decision.
    pub sample_ratio: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// How long finished spans wait to be exported with others (or until
    /// 512 are waiting).
    pub export_interval: HumanDuration,
    /// How long one export may take before it is given up.
    pub export_timeout: HumanDuration,
    /// With an `https://` endpoint: a PEM file of the authorities to trust
    /// (absent: the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// With an `https://` endpoint: a PEM client certificate chain, for
    /// mutual TLS (with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            protocol: OtlpProtocol::Http,
            sample_ratio: 1.0,
            service_name: "ratelimiter".to_owned(),
            export_interval: HumanDuration(Duration::from_secs(5)),
            export_timeout: HumanDuration(Duration::from_secs(10)),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// `telemetry.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (`http/protobuf` is accepted too).
    #[default]
    #[serde(alias = "http/protobuf")]
    Http,
    /// OTLP/gRPC.
    Grpc,
}

impl TelemetrySettings {
    /// Where spans are sent: the endpoint as written for gRPC; for HTTP,
    /// its `/v1/traces` (unless it names that path already).
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.otlp_endpoint.as_deref()?.trim();
        match self.protocol {
            OtlpProtocol::Grpc => Some(endpoint.to_owned()),
            OtlpProtocol::Http => {
                let base = endpoint.trim_end_matches('/');
                if base.ends_with("/v1/traces") {
                    Some(base.to_owned())
                } else {
                    Some(format!("{base}/v1/traces"))
                }
            }
        }
    }

    /// Whether the collector is reached over TLS (an `https://` endpoint).
    pub fn uses_tls(&self) -> bool {
        self.otlp_endpoint
            .as_deref()
            .is_some_and(|e| e.trim().get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")))
    }

    /// The TLS client files, named by their settings.
    pub fn tls_files(&self) -> crate::tls::ClientFiles<'_> {
        crate::tls::ClientFiles::new(
            &self.tls_ca_file,
            &self.tls_cert_file,
            &self.tls_key_file,
            [
                "telemetry.tls_ca_file",
                "telemetry.tls_cert_file",
                "telemetry.tls_key_file",
            ],
        )
    }

    /// What is wrong with these settings, each naming its field.
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(endpoint) = &self.otlp_endpoint {
            if let Err(message) = check_endpoint(endpoint.trim()) {
                problems.push(Problem::new("telemetry.otlp_endpoint", message));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            problems.push(Problem::new(
                "telemetry.sample_ratio",
                format!("{} is not a ratio between 0.0 and 1.0", self.sample_ratio),
            ));
        }
        if self.service_name.trim().is_empty() {
            problems.push(Problem::new("telemetry.service_name", "must not be empty"));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&self.export_interval.0) {
            problems.push(Problem::new("telemetry.export_interval", "must be between 10ms and 1h"));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.export_timeout.0) {
            problems.push(Problem::new("telemetry.export_timeout", "must be between 100ms and 5m"));
        }
        problems.extend(super::validate::tls_file_problems(
            "telemetry",
            [&self.tls_ca_file, &self.tls_cert_file, &self.tls_key_file],
            self.uses_tls(),
            "the collector is not reached over TLS: use an https:// otlp_endpoint",
        ));
        problems
    }
}

/// An `http://` or `https://` `host:port[/path]` URL.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let example = "such as \"http://127.0.0.1:4318\"";
    let uri: axum::http::Uri = endpoint
        .parse()
        .map_err(|e| format!("{endpoint:?} is not a URL {example} ({e})"))?;
    if !uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
    {
        return Err(format!("{endpoint:?} is not an http:// or https:// URL {example}"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{endpoint:?} names no host; use a URL {example}"));
    }
    if uri.query().is_some() {
        return Err(format!("{endpoint:?}: a query is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::settings::{OtlpProtocol, Settings};

    #[test]
    fn off_by_default_and_checked_field_by_field() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.telemetry.otlp_endpoint, None);
        assert_eq!(s.telemetry.traces_url(), None);
        assert_eq!(s.telemetry.sample_ratio, 1.0);

        let problem = |toml: &str| Settings::from_toml(toml).unwrap_err().to_string();
        let err = problem("[telemetry]\nsample_ratio = 1.5\n");
        assert!(err.contains("telemetry.sample_ratio"), "{err}");
        let err = problem("[telemetry]\notlp_endpoint = \"collector:4318\"\n");
        assert!(err.contains("telemetry.otlp_endpoint"), "{err}");
        let err = problem("[telemetry]\notlp_endpoint = \"ftp://collector:4318\"\n");
        assert!(err.contains("telemetry.otlp_endpoint"), "{err}");
        let err = problem("[telemetry]\nservice_name = \" \"\nexport_interval = \"1ms\"\n");
        assert!(
            err.contains("telemetry.service_name") && err.contains("telemetry.export_interval"),
            "{err}"
        );
        let err = problem("[telemetry]\nprotocol = \"udp\"\n");
        assert!(err.contains("udp"), "{err}");
    }

    #[test]
    fn tls_files_need_an_https_endpoint_and_a_certificate_its_key() {
        let problem = |toml: &str| Settings::from_toml(toml).unwrap_err().to_string();
        let err = problem("[telemetry]\notlp_endpoint = \"http://c:4318\"\ntls_ca_file = \"/ca.pem\"\n");
        assert!(
            err.contains("telemetry.tls_ca_file") && err.contains("https://"),
            "{err}"
        );
        let err = problem("[telemetry]\ntls_key_file = \"/key.pem\"\n");
        assert!(err.contains("telemetry.tls_key_file"), "{err}");
        let err = problem("[telemetry]\notlp_endpoint = \"https://c:4318\"\ntls_cert_file = \"/c.pem\"\n");
        assert!(err.contains("telemetry.tls_cert_file") && err.contains("both"), "{err}");

        let s = Settings::from_toml(
            "[telemetry]\notlp_endpoint = \"HTTPS://c:4317\"\nprotocol = \"grpc\"\ntls_ca_file = \"/ca.pem\"\n",
        )
        .unwrap();
        assert!(s.telemetry.uses_tls());
        assert!(!Settings::from_toml("[telemetry]\notlp_endpoint = \"http://c:4318\"\n")
            .unwrap()
            .telemetry
            .uses_tls());
    }

    #[test]
    fn the_http_endpoint_gets_the_traces_path() {
        let url = |toml: &str| Settings::from_toml(toml).unwrap().telemetry.traces_url().unwrap();
        assert_eq!(
            url("[telemetry]\notlp_endpoint = \"http://c:4318\"\n"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            url("[telemetry]\notlp_endpoint = \"http://c:4318/otel/\"\n"),
            "http://c:4318/otel/v1/traces"
        );
        assert_eq!(
            url("[telemetry]\notlp_endpoint = \"http://c:4318/v1/traces\"\n"),
            "http://c:4318/v1/traces"
        );
        let grpc = "[telemetry]\notlp_endpoint = \"http://c:4317\"\nprotocol = \"grpc\"\n";
        assert_eq!(url(grpc), "http://c:4317");
        let alias = Settings::from_toml("[telemetry]\nprotocol = \"http/protobuf\"\n").unwrap();
        assert_eq!(alias.telemetry.protocol, OtlpProtocol::Http);
    }

    #[test]
    fn the_environment_turns_it_on() {
        let env = std::collections::HashMap::from([
            (
                "RATELIMITER__TELEMETRY__OTLP_ENDPOINT".to_owned(),
                "http://127.0.0.1:4318".to_owned(),
            ),
            ("RATELIMITER__TELEMETRY__SAMPLE_RATIO".to_owned(), "0.25".to_owned()),
        ]);
        let s = Settings::load_with_env(None, Some(env)).unwrap();
        assert_eq!(s.telemetry.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert_eq!(s.telemetry.sample_ratio, 0.25);
    }
}
