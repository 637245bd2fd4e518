//! The JSON wire format: parsing `/check` bodies into domain requests and
//! shaping responses and headers.
//!
//! Bodies are parsed field by field (not with a derived `Deserialize`) so
//! that every rejection names the field and says what would be accepted.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use crate::core::Cost;
use crate::limiter::request::MAX_SCOPES;
use crate::limiter::rules::RuleSet;
use crate::limiter::{CheckRequest, Key, KeyError, Reason, Verdict};
use crate::settings::format_duration;

const FIELDS: &str = "key, endpoint, tier, cost, client_ip, scopes";

/// The most checks one `/check/batch` request may carry.
pub const MAX_BATCH: usize = 100;

/// A `/check` body as a well-formed request has it, borrowed from the body
/// where no escape sequence forces a copy.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Borrowed<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow, default)]
    endpoint: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tier: Option<Cow<'a, str>>,
    #[serde(default)]
    cost: Option<u64>,
    #[serde(borrow, default)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(default)]
    scopes: Option<BTreeMap<String, String>>,
}

/// Parses a `/check` body.
///
/// The common case — a well-formed body — is read straight into typed
/// fields, without building a JSON tree. Anything else (an error, or a form
/// the fast path does not take, such as `"cost": 2.0` or a repeated field)
/// goes through [`parse_check_fields`], which accepts exactly the same
/// requests and explains every refusal.
pub fn parse_check(body: &[u8], max_key_bytes: usize) -> Result<CheckRequest, ApiError> {
    // (A derived struct also reads a JSON array as its fields in order.)
    let object = body.trim_ascii_start().first() == Some(&b'{');
    if let Some(fast) = object
        .then(|| serde_json::from_slice::<Borrowed<'_>>(body).ok())
        .flatten()
    {
        let key = Key::parse(fast.key.into_owned(), max_key_bytes).ok();
        let (cost, peek) = match fast.cost {
            None => (Some(Cost::ONE), false),
            Some(0) => (Some(Cost::ONE), true),
            Some(units) => (Cost::new(units), false),
        };
        let client_ip = match fast.client_ip.as_deref() {
            None => Some(None),
            Some(text) => text.parse().ok().map(Some),
        };
        let scopes = match fast.scopes {
            None => Some(Vec::new()),
            Some(map) => valid_scopes(map, max_key_bytes),
        };
        if let (Some(key), Some(cost), Some(client_ip), Some(scopes)) = (key, cost, client_ip, scopes) {
            return Ok(CheckRequest {
                key,
                endpoint: fast.endpoint.map(Cow::into_owned),
                tier: fast.tier.map(Cow::into_owned),
                cost,
                peek,
                client_ip,
                scopes,
            });
        }
    }
    parse_check_fields(body, max_key_bytes)
}

/// Parses a `/check` body field by field, naming the field of any refusal.
fn parse_check_fields(body: &[u8], max_key_bytes: usize) -> Result<CheckRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::field("body", format!("body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::field(
            "body",
            "body must be a JSON object such as {\"key\": \"user:123\"}",
        ));
    };
    check_fields(fields, max_key_bytes)
}

/// Parses a `/check/batch` body, `{"checks": [<a /check body>, ...]}`;
/// errors name the field as `checks[i].field`.
pub fn parse_batch(body: &[u8], max_key_bytes: usize) -> Result<Vec<CheckRequest>, ApiError> {
    const SHAPE: &str = "body must be a JSON object such as {\"checks\": [{\"key\": \"user:123\"}]}";
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::field("body", format!("body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::field("body", SHAPE));
    };
    let mut checks = None;
    for (name, value) in fields {
        if name != "checks" {
            return Err(ApiError::field(
                name.clone(),
                format!("unknown field {name:?}; the only field is checks"),
            ));
        }
        checks = Some(value);
    }
    let Some(Value::Array(items)) = checks else {
        return Err(ApiError::field(
            "checks",
            "checks is required: an array of /check bodies",
        ));
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::field(
            "checks",
            format!("checks must hold 1 to {MAX_BATCH} checks; got {}", items.len()),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(fields) = item else {
                return Err(ApiError::field(
                    format!("checks[{i}]"),
                    format!("checks[{i}] must be a JSON object such as {{\"key\": \"user:123\"}}"),
                ));
            };
            check_fields(fields, max_key_bytes).map_err(|e| e.within(&format!("checks[{i}]")))
        })
        .collect()
}

fn check_fields(fields: serde_json::Map<String, Value>, max_key_bytes: usize) -> Result<CheckRequest, ApiError> {
    let mut key = None;
    let mut endpoint = None;
    let mut tier = None;
    let mut cost = Some(Cost::ONE);
    let mut client_ip = None;
    let mut scopes = Vec::new();
    for (name, value) in fields {
        match name.as_str() {
            "key" => key = Some(parse_key(value, max_key_bytes)?),
            "endpoint" => endpoint = optional_string("endpoint", value)?,
            "tier" => tier = optional_string("tier", value)?,
            "cost" => cost = parse_cost(&value)?,
            "client_ip" => client_ip = parse_client_ip(value)?,
            "scopes" => scopes = parse_scopes(value, max_key_bytes)?,
            _ => {
                return Err(ApiError::field(
                    name.clone(),
                    format!("unknown field {name:?}; the fields are {FIELDS}"),
                ))
            }
        }
    }
    let key = key.ok_or_else(|| ApiError::field("key", "key is required: who is being limited, e.g. \"user:123\""))?;
    Ok(CheckRequest {
        key,
        endpoint,
        tier,
        cost: cost.unwrap_or(Cost::ONE),
        peek: cost.is_none(),
        client_ip,
        scopes,
    })
}

/// The scopes of a well-formed body, when every one is valid.
fn valid_scopes(map: BTreeMap<String, String>, max_key_bytes: usize) -> Option<Vec<(String, Key)>> {
    if map.len() > MAX_SCOPES {
        return None;
    }
    map.into_iter()
        .map(|(name, value)| Some((name, Key::parse(value, max_key_bytes).ok()?)))
        .collect()
}

/// `scopes`: an object of at most [`MAX_SCOPES`] names, each value a string
/// that would be a valid `key`; errors name `scopes` or `scopes.<name>`.
fn parse_scopes(value: Value, max_key_bytes: usize) -> Result<Vec<(String, Key)>, ApiError> {
    let fields = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Object(fields) => fields,
        _ => {
            return Err(ApiError::field(
                "scopes",
                "scopes must be an object of names to values, such as {\"org\": \"acme\"}",
            ))
        }
    };
    if fields.len() > MAX_SCOPES {
        return Err(ApiError::field(
            "scopes",
            format!("scopes may name at most {MAX_SCOPES}; got {}", fields.len()),
        ));
    }
    fields
        .into_iter()
        .map(|(name, value)| {
            let field = format!("scopes.{name}");
            let Value::String(text) = value else {
                return Err(ApiError::field(field, format!("scopes.{name} must be a string")));
            };
            let key = Key::parse(text, max_key_bytes)
                .map_err(|e| ApiError::field(field.clone(), format!("scopes.{name}: {e}")))?;
            Ok((name, key))
        })
        .collect()
}

fn parse_client_ip(value: Value) -> Result<Option<std::net::IpAddr>, ApiError> {
    match optional_string("client_ip", value)? {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::field(
                "client_ip",
                format!("client_ip must be an IPv4 or IPv6 address; got {text:?}"),
            )
        }),
    }
}

fn parse_key(value: Value, max_key_bytes: usize) -> Result<Key, ApiError> {
    let Value::String(key) = value else {
        return Err(ApiError::field("key", "key must be a string"));
    };
    Key::parse(key, max_key_bytes).map_err(|e| match e {
        KeyError::Empty => ApiError::field("key", "key must not be empty"),
        KeyError::TooLong { .. } => ApiError::field("key", e.to_string()),
    })
}

fn optional_string(field: &str, value: Value) -> Result<Option<String>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(ApiError::field(field, format!("{field} must be a string"))),
    }
}

/// The cost of a check; `None` for 0, a peek.
fn parse_cost(value: &Value) -> Result<Option<Cost>, ApiError> {
    const RULE: &str = "cost must be a whole number: 0 to peek, or from 1 to the rule's limit";
    match value {
        Value::Null => Ok(Some(Cost::ONE)),
        Value::Number(n) => {
            if let Some(units) = n.as_u64() {
                Ok(Cost::new(units))
            } else if n.is_i64() {
                Err(ApiError::field("cost", format!("{RULE}; got {n}")))
            } else {
                // A float: accept a whole value that is exact in a double
                // (JSON writers often print 2 as 2.0), refuse the rest.
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() != 0.0 {
                    Err(ApiError::field("cost", format!("{RULE}; got {n} (fractional)")))
                } else if f < 0.0 {
                    Err(ApiError::field("cost", format!("{RULE}; got {n}")))
                } else if f > 9_007_199_254_740_992.0 {
                    Err(ApiError::field("cost", format!("{RULE}; got {n} (too large)")))
                } else {
                    // Exact: a whole double in 0..=2^53 converts losslessly.
                    Ok(Cost::new(f as u64))
                }
            }
        }
        _ => Err(ApiError::field("cost", format!("{RULE}; got a {}", json_type(value)))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The `/check` response body, the same for 200 and 429.
#[derive(Debug, Serialize)]
pub struct CheckResponse<'a> {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    pub reset_after_ms: u64,
    pub retry_after_ms: u64,
    pub rule: &'a str,
    pub tier: &'a str,
    pub algorithm: &'static str,
    /// `allowed`, `limited`, `allowlisted` or `blocked`.
    pub reason: &'static str,
    /// For a rule with several limits: the binding limit, whose numbers
    /// the fields above are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_name: Option<&'a str>,
    /// For a rule with several limits: every limit, in configuration order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitBody<'a>>,
}

/// One limit of a rule with several, in a `/check` answer.
#[derive(Debug, Serialize)]
pub struct LimitBody<'a> {
    pub name: &'a str,
    pub by: &'a str,
    pub algorithm: &'static str,
    pub limit: u64,
    pub remaining: u64,
    pub reset_after_ms: u64,
    pub retry_after_ms: u64,
    pub allowed: bool,
}

impl<'a> From<&'a Verdict> for CheckResponse<'a> {
    fn from(v: &'a Verdict) -> Self {
        let d = &v.decision;
        CheckResponse {
            allowed: v.allowed(),
            limit: d.limit,
            remaining: d.remaining,
            reset_after_ms: d.reset_after_us.div_ceil(1_000),
            retry_after_ms: d.retry_after_us.div_ceil(1_000),
            rule: &v.rule,
            tier: &v.tier,
            algorithm: v.policy.algorithm().as_str(),
            reason: v.reason.as_str(),
            limit_name: v.limit_name.as_deref(),
            limits: v
                .limits
                .iter()
                .map(|l| LimitBody {
                    name: &l.name,
                    by: l.by.as_str(),
                    algorithm: l.policy.algorithm().as_str(),
                    limit: l.decision.limit,
                    remaining: l.decision.remaining,
                    reset_after_ms: l.decision.reset_after_us.div_ceil(1_000),
                    retry_after_ms: l.decision.retry_after_us.div_ceil(1_000),
                    allowed: l.decision.allowed,
                })
                .collect(),
        }
    }
}

/// The `/check/batch` response body: `allowed` when every check was, and
/// one result per check, in order, each with its own status.
#[derive(Debug, Serialize)]
pub struct BatchResponse<'a> {
    pub allowed: bool,
    pub results: Vec<BatchResult<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BatchResult<'a> {
    /// A decision, as `/check` would answer it.
    Decided {
        status: u16,
        #[serde(flatten)]
        response: CheckResponse<'a>,
    },
    /// A check that could not be decided, as `/check` would refuse it.
    Failed {
        status: u16,
        error: &'a str,
        field: Option<&'a str>,
    },
}

impl<'a> BatchResponse<'a> {
    pub fn new(outcomes: &'a [Result<(StatusCode, Verdict), ApiError>]) -> Self {
        let results: Vec<BatchResult<'a>> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok((status, verdict)) => BatchResult::Decided {
                    status: status.as_u16(),
                    response: CheckResponse::from(verdict),
                },
                Err(e) => BatchResult::Failed {
                    status: e.status.as_u16(),
                    error: &e.message,
                    field: e.field.as_deref(),
                },
            })
            .collect();
        BatchResponse {
            allowed: results
                .iter()
                .all(|r| matches!(r, BatchResult::Decided { response, .. } if response.allowed)),
            results,
        }
    }
}

pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The headers a caller copies to its own response:
/// `X-RateLimit-{Limit,Remaining,Reset}`, the IETF `RateLimit-Policy` and
/// `RateLimit` pair (draft-ietf-httpapi-ratelimit-headers-10) and, when
/// denied, `Retry-After`.
pub fn rate_limit_headers(v: &Verdict) -> HeaderMap {
    let d = &v.decision;
    let reset_at_s = d.at.as_micros().saturating_add(d.reset_after_us).div_ceil(1_000_000);
    let reset_in_s = d.reset_after_us.div_ceil(1_000_000);
    let window_s = v.policy.quota().window_us().div_ceil(1_000_000);

    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(X_RATELIMIT_LIMIT.clone(), HeaderValue::from(d.limit));
    headers.insert(X_RATELIMIT_REMAINING.clone(), HeaderValue::from(d.remaining));
    headers.insert(X_RATELIMIT_RESET.clone(), HeaderValue::from(reset_at_s));
    // `"<rule>";q=<limit>;w=<window>` and `"<rule>";r=<remaining>;t=<reset>`,
    // each built in one buffer that becomes the header value without a copy.
    let field = |first: (&str, u64), second: (&str, u64)| {
        let mut out = String::with_capacity(v.rule.len() + 48);
        push_sf_string(&mut out, &v.rule);
        for (name, value) in [first, second] {
            out.push_str(name);
            out.push_str(itoa::Buffer::new().format(value));
        }
        // Rule names are printable ASCII (checked at load), so this is valid.
        HeaderValue::from_maybe_shared(Bytes::from(out)).ok()
    };
    if !v.limits.is_empty() {
        several_limit_headers(v, &mut headers);
    } else {
        if let Some(value) = field((";q=", d.limit), (";w=", window_s)) {
            headers.insert(RATELIMIT_POLICY.clone(), value);
        }
        if let Some(value) = field((";r=", d.remaining), (";t=", reset_in_s)) {
            headers.insert(RATELIMIT.clone(), value);
        }
    }
    // Peeks and shadow rules answer 200 whatever they find: nothing to retry.
    if !v.allowed() && d.retry_after_us > 0 && v.reason != Reason::Peek {
        headers.insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(d.retry_after_us.div_ceil(1_000_000)),
        );
    }
    headers
}

/// `RateLimit-Policy` and `RateLimit` of a rule with several limits: every
/// limit as `"<rule>/<name>"`, in configuration order for the policy, the
/// binding limit first for the state.
fn several_limit_headers(v: &Verdict, headers: &mut HeaderMap) {
    let item = |out: &mut String, name: &str, first: (&str, u64), second: (&str, u64)| {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let mut quoted = String::with_capacity(v.rule.len() + name.len() + 1);
        quoted.push_str(&v.rule);
        quoted.push('/');
        quoted.push_str(name);
        push_sf_string(out, &quoted);
        for (key, value) in [first, second] {
            out.push_str(key);
            out.push_str(itoa::Buffer::new().format(value));
        }
    };
    let mut policy = String::new();
    for l in &v.limits {
        let window_s = l.policy.quota().window_us().div_ceil(1_000_000);
        item(&mut policy, &l.name, (";q=", l.decision.limit), (";w=", window_s));
    }
    let binding = v.limit_name.as_deref();
    let order = v
        .limits
        .iter()
        .filter(|l| Some(l.name.as_ref()) == binding)
        .chain(v.limits.iter().filter(|l| Some(l.name.as_ref()) != binding));
    let mut state = String::new();
    for l in order {
        let reset_in_s = l.decision.reset_after_us.div_ceil(1_000_000);
        item(&mut state, &l.name, (";r=", l.decision.remaining), (";t=", reset_in_s));
    }
    // Rule and limit names are printable ASCII (checked at load).
    for (name, value) in [(&RATELIMIT_POLICY, policy), (&RATELIMIT, state)] {
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
            headers.insert(name.clone(), value);
        }
    }
}

/// Appends `s` as an RFC 8941 structured-field string: quoted, with `"`
/// and `\` escaped.
fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// `GET /rules`: the effective rule table.
#[derive(Debug, Serialize)]
pub struct RulesView {
    pub service: &'static str,
    pub version: &'static str,
    pub default_rule: &'static str,
    pub default_tier: String,
    pub tiers: Vec<String>,
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Serialize)]
pub struct RuleView {
    pub rule: String,
    /// The endpoint the rule matches; `null` for the default rule.
    pub endpoint: Option<String>,
    /// Evaluated, not enforced (as configured).
    pub shadow: bool,
    /// Per tier; for a rule with several limits, its first limit's.
    pub limits: Vec<LimitView>,
    /// A rule with several limits: each of them, per tier.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub named_limits: Vec<NamedLimitView>,
    /// A rule with several limits: what its counters share a slot by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NamedLimitView {
    pub name: String,
    pub by: String,
    pub tiers: Vec<LimitView>,
}

#[derive(Debug, Serialize)]
pub struct LimitView {
    pub tier: String,
    pub algorithm: &'static str,
    pub limit: u64,
    pub window: String,
    pub window_ms: u64,
}

impl LimitView {
    fn new(tier: &str, policy: &crate::core::Policy) -> LimitView {
        LimitView {
            tier: tier.to_owned(),
            algorithm: policy.algorithm().as_str(),
            limit: policy.limit(),
            window: format_duration(policy.quota().window()),
            window_ms: policy.quota().window_ms(),
        }
    }
}

impl RulesView {
    pub fn new(rules: &RuleSet) -> RulesView {
        RulesView {
            service: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            default_rule: crate::limiter::rules::DEFAULT_RULE,
            default_tier: rules.default_tier().to_string(),
            tiers: rules.tiers().iter().map(ToString::to_string).collect(),
            rules: rules
                .rules()
                .map(|rule| RuleView {
                    rule: rule.name().to_string(),
                    endpoint: (rule.name().as_ref() != crate::limiter::rules::DEFAULT_RULE)
                        .then(|| rule.name().to_string()),
                    shadow: rule.shadow(),
                    limits: rule
                        .policies()
                        .map(|(tier, policy)| LimitView::new(tier, policy))
                        .collect(),
                    named_limits: rule
                        .limits()
                        .iter()
                        .map(|limit| NamedLimitView {
                            name: limit.name().to_string(),
                            by: limit.by().as_str().to_owned(),
                            tiers: rules
                                .tiers()
                                .iter()
                                .enumerate()
                                .map(|(i, tier)| LimitView::new(tier, limit.policy(i)))
                                .collect(),
                        })
                        .collect(),
                    partition: (!rule.limits().is_empty()).then(|| rule.partition().as_str().to_owned()),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_and_the_field_by_field_parser_agree() {
        let bodies: &[&[u8]] = &[
            br#"{"key":"k"}"#,
            br#"{"key":"k\u00e9","endpoint":"GET /a","tier":"pro","cost":3,"client_ip":"::1"}"#,
            br#"{"key":"k","endpoint":null,"tier":null,"cost":null,"client_ip":null}"#,
            br#"{"key":"k","cost":2.0}"#,
            br#"{"key":"k","key":"j"}"#,
            br#"{"key":"","cost":1}"#,
            br#"{"key":"k","cost":0}"#,
            br#"{"key":"k","client_ip":"nope"}"#,
            br#"{"key":"k","extra":1}"#,
            br#"{"key":"kkkkkkkkkkk"}"#,
            br#"{"key":5}"#,
            br#"[1]"#,
            br#"["k"]"#,
            br#"["k", null, null, 1, null]"#,
            br#"{"key":"k"} x"#,
        ];
        for body in bodies {
            let fast = parse_check(body, 8);
            let slow = parse_check_fields(body, 8);
            let text = String::from_utf8_lossy(body);
            match (fast, slow) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.key, b.key, "{text}");
                    assert_eq!(
                        (a.endpoint, a.tier, a.cost, a.client_ip),
                        (b.endpoint, b.tier, b.cost, b.client_ip),
                        "{text}"
                    );
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{text}"),
                (a, b) => panic!("{text}: fast {:?}, fields {:?}", a.map(|r| r.key), b.map(|r| r.key)),
            }
        }
    }

    proptest::proptest! {
        /// Bodies built from the fields and odd values: both parsers take
        /// the same requests and refuse the rest with the same error.
        #[test]
        fn both_parsers_agree_on_generated_bodies(
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["key", "endpoint", "tier", "cost", "client_ip", "other"]),
                    proptest::sample::select(vec![
                        "\"k\"", "\"\"", "\"k\\\"q\"", "\"GET /a\"", "\"10.0.0.1\"", "\"::1\"", "null", "0", "1",
                        "2.0", "2.5", "-1", "1e3", "18446744073709551616", "true", "[]", "{}", "\"kkkkkkkkkkkkk\"",
                    ]),
                ),
                0..6,
            ),
            array in proptest::bool::ANY,
        ) {
            let body = if array {
                format!("[{}]", fields.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(","))
            } else {
                format!("{{{}}}", fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(","))
            };
            let fast = parse_check(body.as_bytes(), 8);
            let slow = parse_check_fields(body.as_bytes(), 8);
            match (fast, slow) {
                (Ok(a), Ok(b)) => {
                    proptest::prop_assert_eq!(a.key, b.key);
                    proptest::prop_assert_eq!((a.endpoint, a.tier, a.cost, a.client_ip), (b.endpoint, b.tier, b.cost, b.client_ip));
                }
                (Err(a), Err(b)) => proptest::prop_assert_eq!(a, b),
                (a, b) => proptest::prop_assert!(false, "{}: fast {:?}, fields {:?}", body, a.map(|r| r.key), b.map(|r| r.key)),
            }
        }
    }

    #[test]
    fn sf_strings_are_escaped() {
        let sf = |s: &str| {
            let mut out = String::new();
            push_sf_string(&mut out, s);
            out
        };
        assert_eq!(sf("GET /a"), "\"GET /a\"");
        assert_eq!(sf("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn cost_errors_explain_themselves() {
        let msg = |v: Value| parse_cost(&v).unwrap_err().message;
        assert!(msg(serde_json::json!(-3)).contains("got -3"));
        assert!(msg(serde_json::json!(-1.0)).contains("got -1.0"));
        assert!(msg(serde_json::json!(1.5)).contains("fractional"));
        assert!(msg(serde_json::json!(1e30)).contains("too large"));
        assert!(msg(serde_json::json!("2")).contains("string"));
        assert!(msg(serde_json::json!(-3)).contains("0 to peek"));
        assert_eq!(
            parse_cost(&serde_json::json!(2.0)).unwrap().map(Cost::get),
            Some(2),
            "a whole float is accepted"
        );
        assert_eq!(parse_cost(&Value::Null).unwrap(), Some(Cost::ONE));
        for zero in [serde_json::json!(0), serde_json::json!(0.0), serde_json::json!(-0.0)] {
            assert_eq!(parse_cost(&zero).unwrap(), None, "{zero} peeks");
        }
    }
}
