//! `ApiError`: every error response of API.md, `{"error", "code"}` plus `fields` on
//! validation errors. 5xx causes are logged here and never sent to the client.

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use passcode_domain::InfraError;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Option<BTreeMap<String, Vec<String>>>,
    retry_after: Option<u64>,
    www_authenticate: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a BTreeMap<String, Vec<String>>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: None,
            retry_after: None,
            www_authenticate: false,
        }
    }

    pub fn validation(fields: BTreeMap<String, Vec<String>>) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "Invalid input.",
        );
        error.fields = Some(fields);
        error
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, code, message);
        error.www_authenticate = true;
        error
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found.")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed.",
        )
    }

    /// 503 with `Retry-After`: overloaded or a dependency is down.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        error.retry_after = Some(retry_after);
        error
    }

    /// 429 with `Retry-After` in whole seconds (rounded up).
    pub fn throttled(throttled: passcode_domain::Throttled) -> Self {
        let millis = throttled.retry_after.num_milliseconds().max(1_000);
        let seconds = u64::try_from((millis + 999) / 1_000).unwrap_or(1);
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too many requests. Try again later.",
        );
        error.retry_after = Some(seconds);
        error
    }

    pub fn busy() -> Self {
        Self::unavailable("service_busy", "The service is busy. Try again shortly.", 1)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<InfraError> for ApiError {
    fn from(error: InfraError) -> Self {
        match error {
            InfraError::Unavailable(cause) => {
                tracing::warn!(error = %format!("{cause:#}"), "dependency unavailable");
                Self::unavailable(
                    "service_unavailable",
                    "The service is temporarily unavailable.",
                    5,
                )
            }
            InfraError::Unexpected(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "unexpected error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "Internal server error.",
                )
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds));
        }
        if self.www_authenticate {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(Body {
            error: &self.message,
            code: self.code,
            fields: self.fields.as_ref(),
        })
    }
}
