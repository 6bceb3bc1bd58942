//! Error answers that many routes document alike, each described once for the
//! OpenAPI document. A route lists these types in its `responses(...)` beside its
//! own answers. They are never built: `ApiError` writes every error body.
#![expect(dead_code, reason = "types that only describe answers")]

use utoipa::IntoResponses;

use crate::error::ErrorBody;

/// A body the route could not read as JSON. Also 400 for malformed JSON, which each
/// route documents with its own validation errors.
#[derive(IntoResponses)]
pub(crate) enum JsonBody {
    #[response(status = 413, description = "Body too large")]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "Content-Type is not JSON")]
    NotJson(ErrorBody),
}

/// 400 for a route whose only refusal of its input is a bad field or bad JSON.
#[derive(IntoResponses)]
#[response(status = 400, description = "Validation error or malformed JSON")]
pub(crate) struct BadInput(ErrorBody);

/// 401 for a route that needs an access token.
#[derive(IntoResponses)]
#[response(status = 401, description = "`not_authenticated` or `token_invalid`")]
pub(crate) struct NotSignedIn(ErrorBody);

/// 429 for a route limited only by the per-client request rate.
#[derive(IntoResponses)]
#[response(
    status = 429, description = "The client's rate",
    headers(("Retry-After" = u64, description = "Seconds to wait"))
)]
pub(crate) struct ClientRate(ErrorBody);

/// 503 from a route that needs the database.
#[derive(IntoResponses)]
#[response(
    status = 503, description = "The database unavailable",
    headers(("Retry-After" = u64, description = "Seconds to wait"))
)]
pub(crate) struct DatabaseDown(ErrorBody);

/// 503 from a route that may hash or check a password.
#[derive(IntoResponses)]
#[response(
    status = 503, description = "Password hashing saturated or the database unavailable",
    headers(("Retry-After" = u64, description = "Seconds to wait"))
)]
pub(crate) struct HashingOrDatabaseDown(ErrorBody);
