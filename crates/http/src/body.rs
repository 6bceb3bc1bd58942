//! Request bodies: the JSON extractor's limits and errors, and field-by-field reading
//! of a JSON object so every problem becomes a 4xx with a field-level message.

use std::collections::BTreeMap;

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::web;
use serde_json::{Map, Value};

use crate::ApiError;

pub(crate) const REQUIRED: &str = "This field is required.";

/// The JSON extractor's configuration: size limit and error mapping to `ApiError`.
pub(crate) fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|error, _req| json_error(&error).into())
}

fn json_error(error: &JsonPayloadError) -> ApiError {
    match error {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body is too large.",
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json.",
        ),
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request("invalid_json", format!("Malformed JSON: {e}"))
        }
        _ => ApiError::bad_request("invalid_body", "The request body could not be read."),
    }
}

/// Reads named fields out of a JSON object, collecting a message per bad field.
pub(crate) struct Fields {
    map: Map<String, Value>,
    errors: BTreeMap<String, Vec<String>>,
}

impl Fields {
    pub(crate) fn new(body: Value) -> Result<Self, ApiError> {
        match body {
            Value::Object(map) => Ok(Self {
                map,
                errors: BTreeMap::new(),
            }),
            _ => Err(ApiError::bad_request(
                "invalid_body",
                "The request body must be a JSON object.",
            )),
        }
    }

    /// A required string field; records an error and returns `None` if absent or not a string.
    pub(crate) fn string(&mut self, name: &str) -> Option<String> {
        match self.map.remove(name) {
            None | Some(Value::Null) => self.error(name, REQUIRED),
            Some(Value::String(s)) => Some(s),
            Some(_) => self.error(name, "Not a valid string."),
        }
    }

    /// An optional string field: `None` when absent or null; a non-string is reported.
    pub(crate) fn optional_string(&mut self, name: &str) -> Option<String> {
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => self.error(name, "Not a valid string."),
        }
    }

    /// A required email address field, parsed (trimmed, normalised) or reported.
    pub(crate) fn email(&mut self, name: &str) -> Option<passcode_domain::EmailAddress> {
        let raw = self.string(name);
        self.parse(name, raw, |s| passcode_domain::EmailAddress::parse(&s))
    }

    /// An optional boolean field, `false` when absent or null.
    pub(crate) fn flag(&mut self, name: &str) -> bool {
        match self.map.remove(name) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => self
                .error(name, "Must be a valid boolean.")
                .unwrap_or(false),
        }
    }

    /// Parses a field already read, recording the parser's message on failure.
    pub(crate) fn parse<T, E: ToString>(
        &mut self,
        name: &str,
        raw: Option<String>,
        parse: impl FnOnce(String) -> Result<T, E>,
    ) -> Option<T> {
        match parse(raw?) {
            Ok(value) => Some(value),
            Err(e) => self.error(name, &e.to_string()),
        }
    }

    pub(crate) fn error<T>(&mut self, name: &str, message: &str) -> Option<T> {
        self.errors
            .entry(name.to_owned())
            .or_default()
            .push(message.to_owned());
        None
    }

    /// `Ok` if every field was fine, else the 400 with all field errors.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// Unwraps fields that `finish` has vouched for.
pub(crate) fn checked<T>(value: Option<T>) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::bad_request("validation_error", "Invalid input."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn non_objects_are_refused() {
        for body in [
            json!(null),
            json!([1, 2]),
            json!("s"),
            json!(5),
            json!(true),
        ] {
            assert_eq!(Fields::new(body).err().unwrap().code(), "invalid_body");
        }
    }

    #[test]
    fn missing_null_and_mistyped_fields_are_reported_per_field() {
        let mut fields = Fields::new(json!({"a": null, "b": 5, "c": "ok"})).unwrap();
        assert_eq!(fields.string("a"), None);
        assert_eq!(fields.string("b"), None);
        assert_eq!(fields.string("c").as_deref(), Some("ok"));
        assert_eq!(fields.string("missing"), None);
        assert_eq!(fields.errors.len(), 3);
        assert_eq!(fields.errors["a"], [REQUIRED]);
        assert!(fields.finish().is_err());
    }
}
