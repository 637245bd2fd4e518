//! Durations as people write them, in the configuration and in the admin
//! API: `"500ms"`, `"10s"`, `"1m"`, `"1h 30m"`. One parser and one format
//! for every module.

use std::time::Duration;

use serde::Deserialize;

/// A duration written for people: `"10s"`, `"1m"`, `"1h 30m"`, `"500ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as \"500ms\", \"10s\", \"1m\" or \"1h 30m\".",
            "pattern": "^\\s*[0-9]+\\s*[a-zµ]+(\\s*[0-9]+\\s*[a-zµ]+)*\\s*$"
        })
    }
}

/// Parses a human duration such as `10s`, `1m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"500ms\", \"10s\", \"1m\" or \"1h\" ({e})"))
}

/// Formats a duration the way the configuration writes it.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}
