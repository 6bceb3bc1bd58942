//! Request bodies: the JSON extractor's limits and errors, and field-by-field reading
//! of a JSON object so every problem becomes a 4xx with a field-level message.

use std::collections::BTreeMap;

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::web;
use serde_json::Value;

use crate::ApiError;
use crate::error::ErrorCode;

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
                ErrorCode::PayloadTooLarge,
                "Request body is too large.",
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/json.",
        ),
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request(ErrorCode::InvalidJson, format!("Malformed JSON: {e}"))
        }
        _ => ApiError::bad_request(
            ErrorCode::InvalidBody,
            "The request body could not be read.",
        ),
    }
}

/// A request field as sent: absent or `null`, or any JSON value. Request types hold
/// their fields raw, so that turning one into domain input can check every field and
/// report every bad one at once (as DRF does), instead of stopping at the first.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Raw(Option<Value>);

impl Raw {
    #[cfg(test)]
    pub(crate) fn of(value: Value) -> Self {
        Self(Some(value))
    }
}

/// A typed JSON request body: the body must be a JSON object (else 400
/// `invalid_body`); its fields are read into `T` raw and checked by `T`'s conversion.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(
        req: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let json = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            if !value.is_object() {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidBody,
                    "The request body must be a JSON object.",
                )
                .into());
            }
            // Every field is raw and optional: an object always converts.
            serde_json::from_value(value).map(Body).map_err(|_| {
                ApiError::bad_request(
                    ErrorCode::InvalidBody,
                    "The request body could not be read.",
                )
                .into()
            })
        })
    }
}

/// Checks raw fields, collecting a message per bad field.
#[derive(Default)]
pub(crate) struct Fields {
    errors: BTreeMap<String, Vec<String>>,
}

impl Fields {
    /// A required string field; records an error and returns `None` if absent or not a string.
    pub(crate) fn string(&mut self, name: &str, raw: Raw) -> Option<String> {
        match raw.0 {
            None | Some(Value::Null) => self.error(name, REQUIRED),
            Some(Value::String(s)) => Some(s),
            Some(_) => self.error(name, "Not a valid string."),
        }
    }

    /// An optional string field: `None` when absent or null; a non-string is reported.
    pub(crate) fn optional_string(&mut self, name: &str, raw: Raw) -> Option<String> {
        match raw.0 {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => self.error(name, "Not a valid string."),
        }
    }

    /// A required email address field, parsed (trimmed, normalised) or reported.
    pub(crate) fn email(&mut self, name: &str, raw: Raw) -> Option<passcode_domain::EmailAddress> {
        let raw = self.string(name, raw);
        self.parse(name, raw, |s| passcode_domain::EmailAddress::parse(&s))
    }

    /// An optional boolean field, `false` when absent or null.
    pub(crate) fn flag(&mut self, name: &str, raw: Raw) -> bool {
        match raw.0 {
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
    value.ok_or_else(|| ApiError::bad_request(ErrorCode::ValidationError, "Invalid input."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_null_and_mistyped_fields_are_reported_per_field() {
        let mut fields = Fields::default();
        assert_eq!(fields.string("a", Raw::of(json!(null))), None);
        assert_eq!(fields.string("b", Raw::of(json!(5))), None);
        assert_eq!(
            fields.string("c", Raw::of(json!("ok"))).as_deref(),
            Some("ok")
        );
        assert_eq!(fields.string("missing", Raw::default()), None);
        assert_eq!(fields.errors.len(), 3);
        assert_eq!(fields.errors["a"], [REQUIRED]);
        assert!(fields.finish().is_err());
    }
}
