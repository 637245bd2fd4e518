//! JSON bodies and query strings of `/admin`, parsed field by field so that
//! every error names its field.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::http::ApiError;
use crate::limiter::request::MAX_SCOPES;
use crate::limiter::Key;
use crate::settings::parse_duration;

/// A JSON object body whose fields are taken one by one; whatever is left
/// at the end is an unknown field.
pub struct Body(Map<String, Value>);

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ApiError::field("body", "body must be a JSON object")),
            Err(e) => Err(ApiError::field("body", format!("body is not valid JSON: {e}"))),
        }
    }

    pub fn string(&mut self, field: &str) -> Result<Option<String>, ApiError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::field(field, format!("{field} must be a string"))),
        }
    }

    pub fn integer(&mut self, field: &str) -> Result<Option<i64>, ApiError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(Value::Number(n)) if n.is_u64() => Ok(Some(i64::MAX)),
            Some(_) => Err(ApiError::field(field, format!("{field} must be a whole number"))),
        }
    }

    pub fn boolean(&mut self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(ApiError::field(field, format!("{field} must be true or false"))),
        }
    }

    /// A human duration such as `"1h"`, at least 1 second.
    pub fn duration(&mut self, field: &str) -> Result<Option<Duration>, ApiError> {
        match self.string(field)? {
            None => Ok(None),
            Some(text) => {
                let d = parse_duration(&text).map_err(|e| ApiError::field(field, e))?;
                if d < Duration::from_secs(1) {
                    return Err(ApiError::field(field, format!("{field} must be at least 1s")));
                }
                Ok(Some(d))
            }
        }
    }

    /// Fails on the first field nobody took.
    pub fn finish(self, known: &str) -> Result<(), ApiError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(name) => Err(ApiError::field(
                name.clone(),
                format!("unknown field {name:?}; the fields are {known}"),
            )),
        }
    }
}

/// Query parameters taken the same way.
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn new(params: HashMap<String, String>) -> Query {
        Query(params)
    }

    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.0.remove(name).filter(|v| !v.is_empty())
    }

    pub fn required(&mut self, name: &str) -> Result<String, ApiError> {
        self.optional(name)
            .ok_or_else(|| ApiError::field(name, format!("the query parameter {name} is required")))
    }

    /// Every `scopes.<name>=<value>` parameter, as a check's `scopes`: at
    /// most [`MAX_SCOPES`], each value a valid key (errors name the
    /// parameter).
    pub fn scopes(&mut self, max_key_bytes: usize) -> Result<Vec<(String, Key)>, ApiError> {
        let names: Vec<String> = self.0.keys().filter(|k| k.starts_with("scopes.")).cloned().collect();
        if names.len() > MAX_SCOPES {
            return Err(ApiError::field(
                "scopes",
                format!("at most {MAX_SCOPES} scopes.<name> parameters; got {}", names.len()),
            ));
        }
        let mut scopes = Vec::with_capacity(names.len());
        for field in names {
            let value = self.0.remove(&field).unwrap_or_default();
            let key = Key::parse(value, max_key_bytes)
                .map_err(|e| ApiError::field(field.clone(), format!("{field}: {e}")))?;
            scopes.push((field["scopes.".len()..].to_owned(), key));
        }
        Ok(scopes)
    }

    pub fn finish(self, known: &str) -> Result<(), ApiError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(name) => Err(ApiError::field(
                name.clone(),
                format!("unknown query parameter {name:?}; the parameters are {known}"),
            )),
        }
    }
}
