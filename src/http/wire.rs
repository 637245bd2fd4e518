//! The JSON wire format: parsing `/check` bodies into domain requests and
//! shaping response bodies (the rate-limit headers are in
//! [`super::headers`], re-exported here).
//!
//! Bodies are parsed field by field (not with a derived `Deserialize`) so
//! that every rejection names the field and says what would be accepted.

use axum::http::StatusCode;
use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
pub use super::headers::{
    rate_limit_headers, RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
use crate::core::{Cost, Units};
use crate::limiter::request::MAX_SCOPES;
use crate::limiter::{CheckRequest, Key, KeyError, Protocol, Verdict, MAX_ID_BYTES};

const FIELDS: &str = "key, endpoint, tier, cost, client_ip, scopes, id";

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
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
}

/// Parses a `/check` body.
///
/// The common case — a well-formed body — is read straight into typed
/// fields, without building a JSON tree. Anything else (an error, or a form
/// the fast path does not take, such as `"cost": 2.0` or a repeated field)
/// goes through `parse_check_fields`, which accepts exactly the same
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
        let id = match fast.id {
            None => Some(None),
            Some(id) => valid_id(&id).then(|| Some(id.into_owned())),
        };
        if let (Some(key), Some(cost), Some(client_ip), Some(scopes), Some(id)) = (key, cost, client_ip, scopes, id) {
            return Ok(CheckRequest {
                id,
                protocol: Protocol::Http,
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
    let mut id = None;
    for (name, value) in fields {
        match name.as_str() {
            "key" => key = Some(parse_key(value, max_key_bytes)?),
            "endpoint" => endpoint = optional_string("endpoint", value)?,
            "tier" => tier = optional_string("tier", value)?,
            "cost" => cost = parse_cost(&value)?,
            "client_ip" => client_ip = parse_client_ip(value)?,
            "scopes" => scopes = parse_scopes(value, max_key_bytes)?,
            "id" => id = parse_id(value)?,
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
        id,
        protocol: Protocol::Http,
    })
}

/// Parses a `/release` or `/renew` body, `{"lease": "<token>"}`.
pub fn parse_lease(body: &[u8]) -> Result<String, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::field("body", format!("body is not valid JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(ApiError::field(
            "body",
            "body must be a JSON object such as {\"lease\": \"…\"}",
        ));
    };
    if let Some(name) = fields.keys().find(|name| *name != "lease") {
        return Err(ApiError::field(
            name.clone(),
            format!("unknown field {name:?}; the only field is lease"),
        ));
    }
    match fields.remove("lease") {
        Some(Value::String(lease)) if !lease.is_empty() => Ok(lease),
        Some(Value::String(_)) => Err(ApiError::field("lease", "lease must not be empty")),
        None | Some(Value::Null) => Err(ApiError::field(
            "lease",
            "lease is required: the token an allowed check of a concurrency limit answered",
        )),
        Some(_) => Err(ApiError::field("lease", "lease must be a string")),
    }
}

/// Whether `id` is 1 to [`MAX_ID_BYTES`] bytes.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES
}

/// `id`: a string of 1 to [`MAX_ID_BYTES`] bytes, or absent.
fn parse_id(value: Value) -> Result<Option<String>, ApiError> {
    match optional_string("id", value)? {
        None => Ok(None),
        Some(id) if valid_id(&id) => Ok(Some(id)),
        Some(id) => Err(ApiError::field(
            "id",
            format!("id must be 1 to {MAX_ID_BYTES} bytes; got {}", id.len()),
        )),
    }
}

/// Parses a `/report` body: a `/check` body whose `cost` is required and
/// signed — units to charge (even past the limit) or, negative, to give
/// back — never 0, at most 2^31 either way.
pub fn parse_report(body: &[u8], max_key_bytes: usize) -> Result<(CheckRequest, Units), ApiError> {
    const RULE: &str = "cost must be a whole number other than 0, from -2147483648 to 2147483648: units used (charged even past the limit) or, negative, given back";
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::field("body", format!("body is not valid JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(ApiError::field(
            "body",
            "body must be a JSON object such as {\"key\": \"user:123\", \"cost\": 250}",
        ));
    };
    let units = match fields.remove("cost") {
        None | Some(Value::Null) => return Err(ApiError::field("cost", format!("cost is required: {RULE}"))),
        Some(Value::Number(n)) => {
            let whole = n.as_i64().or_else(|| {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() <= Units::MAX as f64).then_some(f as i64)
            });
            whole
                .and_then(Units::new)
                .ok_or_else(|| ApiError::field("cost", format!("{RULE}; got {n}")))?
        }
        Some(other) => return Err(ApiError::field("cost", format!("{RULE}; got a {}", json_type(&other)))),
    };
    Ok((check_fields(fields, max_key_bytes)?, units))
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
    /// A report or check whose `id` was already applied: nothing changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The lease an allowed check of a `concurrency` limit holds: release
    /// it with `POST /release` when the work is done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<&'a str>,
    /// Milliseconds until the lease expires unless renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_ms: Option<u64>,
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
            duplicate: v.duplicate,
            lease: v.lease.as_ref().map(|l| l.token.as_str()),
            lease_expires_ms: v.lease.as_ref().map(|l| l.expires_in_us.div_ceil(1_000)),
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
