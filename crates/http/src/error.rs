//! `ApiError`: every error response of API.md, `{"error", "code"}` plus `fields` on
//! validation errors; the documented codes (`ErrorCode`); and the one place that maps
//! each use case's error to its status and code. 5xx causes are logged here and never
//! sent to the client.

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use passcode_domain::InfraError;
use passcode_domain::service::{
    AuthenticateError, ChangePasswordError, LoginError, RefreshError, RegisterError, ResendError,
    ResetError, VerifyOtpError,
};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error `code` the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON.
    InvalidJson,
    /// The body is JSON but not an object, or could not be read.
    InvalidBody,
    /// One or more fields are wrong; see `fields`.
    ValidationError,
    /// Wrong, expired, spent or out-of-tries code, or no such address: one answer.
    OtpInvalid,
    /// Compatibility policy only: the address has an account.
    EmailTaken,
    /// Unknown address, wrong password or inactive account: one answer.
    InvalidCredentials,
    /// No `Authorization: Bearer` header.
    NotAuthenticated,
    /// The token is malformed, badly signed, expired, of the wrong type, or its session ended.
    TokenInvalid,
    /// Login of an unverified account (default policy).
    EmailNotVerified,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// A limit was reached; see `Retry-After`.
    Throttled,
    /// Password hashing is saturated; see `Retry-After`.
    ServiceBusy,
    /// A dependency (the database) is unavailable; see `Retry-After`.
    ServiceUnavailable,
    /// Readiness: the database does not answer.
    NotReady,
    /// A bug; the cause is logged, never sent.
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidBody => "invalid_body",
            Self::ValidationError => "validation_error",
            Self::OtpInvalid => "otp_invalid",
            Self::EmailTaken => "email_taken",
            Self::InvalidCredentials => "invalid_credentials",
            Self::NotAuthenticated => "not_authenticated",
            Self::TokenInvalid => "token_invalid",
            Self::EmailNotVerified => "email_not_verified",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Throttled => "throttled",
            Self::ServiceBusy => "service_busy",
            Self::ServiceUnavailable => "service_unavailable",
            Self::NotReady => "not_ready",
            Self::InternalError => "internal_error",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "Invalid input.", "code": "validation_error", "fields": {"email": ["Enter a valid email address."]}}))]
pub struct ErrorBody {
    /// A human-readable message.
    pub error: String,
    pub code: ErrorCode,
    /// Validation errors only: the messages for each bad field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    fields: Option<BTreeMap<String, Vec<String>>>,
    retry_after: Option<u64>,
    www_authenticate: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
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
            ErrorCode::ValidationError,
            "Invalid input.",
        );
        error.fields = Some(fields);
        error
    }

    /// A validation error on one field.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        Self::validation(
            [(name.to_owned(), vec![message.into()])]
                .into_iter()
                .collect(),
        )
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, code, message);
        error.www_authenticate = true;
        error
    }

    pub fn token_invalid() -> Self {
        Self::unauthorized(ErrorCode::TokenInvalid, "Token is invalid or expired.")
    }

    pub fn otp_invalid() -> Self {
        Self::bad_request(ErrorCode::OtpInvalid, "Invalid or expired OTP.")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "Not found.")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "Method not allowed.",
        )
    }

    /// 503 with `Retry-After`: overloaded or a dependency is down.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>, retry_after: u64) -> Self {
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
            ErrorCode::Throttled,
            "Too many requests. Try again later.",
        );
        error.retry_after = Some(seconds);
        error
    }

    pub fn busy() -> Self {
        Self::unavailable(
            ErrorCode::ServiceBusy,
            "The service is busy. Try again shortly.",
            1,
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }
}

impl From<InfraError> for ApiError {
    fn from(error: InfraError) -> Self {
        match error {
            InfraError::Unavailable(cause) => {
                tracing::warn!(error = %format!("{cause:#}"), "dependency unavailable");
                Self::unavailable(
                    ErrorCode::ServiceUnavailable,
                    "The service is temporarily unavailable.",
                    5,
                )
            }
            InfraError::Unexpected(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "unexpected error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::InternalError,
                    "Internal server error.",
                )
            }
        }
    }
}

// Each use case's error, mapped to its status and code in this one place.

impl From<RegisterError> for ApiError {
    fn from(error: RegisterError) -> Self {
        match error {
            RegisterError::EmailTaken => Self::bad_request(
                ErrorCode::EmailTaken,
                "User with this email already exists.",
            ),
            RegisterError::WeakPassword(why) => Self::field("password", why),
            RegisterError::Throttled(throttled) => Self::throttled(throttled),
            RegisterError::Busy => Self::busy(),
            RegisterError::Infra(e) => e.into(),
        }
    }
}

impl From<VerifyOtpError> for ApiError {
    fn from(error: VerifyOtpError) -> Self {
        match error {
            VerifyOtpError::Invalid => Self::otp_invalid(),
            VerifyOtpError::Throttled(throttled) => Self::throttled(throttled),
            VerifyOtpError::Busy => Self::busy(),
            VerifyOtpError::Infra(e) => e.into(),
        }
    }
}

impl From<ResendError> for ApiError {
    fn from(error: ResendError) -> Self {
        match error {
            ResendError::Throttled(throttled) => Self::throttled(throttled),
            ResendError::Infra(e) => e.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self::unauthorized(
                ErrorCode::InvalidCredentials,
                "No active account found with the given credentials.",
            ),
            LoginError::EmailNotVerified => Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::EmailNotVerified,
                "Email address is not verified.",
            ),
            LoginError::Throttled(throttled) => Self::throttled(throttled),
            LoginError::Busy => Self::busy(),
            LoginError::Infra(e) => e.into(),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(error: RefreshError) -> Self {
        match error {
            RefreshError::InvalidToken => Self::token_invalid(),
            RefreshError::Infra(e) => e.into(),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(error: AuthenticateError) -> Self {
        match error {
            AuthenticateError::InvalidToken => Self::token_invalid(),
            AuthenticateError::Infra(e) => e.into(),
        }
    }
}

impl From<ResetError> for ApiError {
    fn from(error: ResetError) -> Self {
        match error {
            ResetError::InvalidCode => Self::otp_invalid(),
            ResetError::WeakPassword(why) => Self::field("new_password", why),
            ResetError::Throttled(throttled) => Self::throttled(throttled),
            ResetError::Busy => Self::busy(),
            ResetError::Infra(e) => e.into(),
        }
    }
}

impl From<ChangePasswordError> for ApiError {
    fn from(error: ChangePasswordError) -> Self {
        match error {
            ChangePasswordError::InvalidToken => Self::token_invalid(),
            ChangePasswordError::WrongOldPassword => {
                Self::field("old_password", "Your old password was entered incorrectly.")
            }
            ChangePasswordError::WeakPassword(why) => Self::field("new_password", why),
            ChangePasswordError::Throttled(throttled) => Self::throttled(throttled),
            ChangePasswordError::Busy => Self::busy(),
            ChangePasswordError::Infra(e) => e.into(),
        }
    }
}

impl From<passcode_domain::service::ChangeEmailError> for ApiError {
    fn from(error: passcode_domain::service::ChangeEmailError) -> Self {
        use passcode_domain::service::ChangeEmailError as E;
        match error {
            E::InvalidToken => Self::token_invalid(),
            E::WrongPassword => Self::field("password", "Your password was entered incorrectly."),
            E::InvalidCode => Self::otp_invalid(),
            E::Throttled(throttled) => Self::throttled(throttled),
            E::Busy => Self::busy(),
            E::Infra(e) => e.into(),
        }
    }
}

impl From<passcode_domain::service::SignInError> for ApiError {
    fn from(error: passcode_domain::service::SignInError) -> Self {
        use passcode_domain::service::SignInError as E;
        match error {
            E::Disabled => Self::not_found(),
            E::InvalidCode => Self::otp_invalid(),
            E::Throttled(throttled) => Self::throttled(throttled),
            E::Busy => Self::busy(),
            E::Infra(e) => e.into(),
        }
    }
}

impl From<passcode_domain::service::DeleteAccountError> for ApiError {
    fn from(error: passcode_domain::service::DeleteAccountError) -> Self {
        use passcode_domain::service::DeleteAccountError as E;
        match error {
            E::InvalidToken => Self::token_invalid(),
            E::WrongPassword => Self::field("password", "Your password was entered incorrectly."),
            E::InvalidCode => Self::otp_invalid(),
            E::Throttled(throttled) => Self::throttled(throttled),
            E::Busy => Self::busy(),
            E::Infra(e) => e.into(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code.as_str(),
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
        response.json(ErrorBody {
            error: self.message.clone(),
            code: self.code,
            fields: self.fields.clone(),
        })
    }
}
