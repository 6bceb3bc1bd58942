//! The bearer token of a request.

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::ApiError;
use crate::error::ErrorCode;

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let missing = || {
        ApiError::unauthorized(
            ErrorCode::NotAuthenticated,
            "Authentication credentials were not provided.",
        )
    };
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}
