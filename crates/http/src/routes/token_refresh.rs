//! POST /api/accounts/token/refresh/: a refresh token for a new pair.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::no_store;
use crate::types::{RefreshRequest, TokenResponse};
use crate::{ApiError, HttpState};

/// Spend a refresh token for the next pair of its session.
///
/// A spent token presented again within the grace window gets the same next pair;
/// later, it revokes its session.
#[utoipa::path(
    post, path = "/api/accounts/token/refresh/", operation_id = "refresh_token", tag = "tokens",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The next pair", body = TokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "Validation error or malformed JSON", body = ErrorBody),
        (status = 401, description = "`token_invalid`: invalid, expired, spent, revoked, or its session ended", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 429, description = "The client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database unavailable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    caller: Caller,
    body: Body<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let refresh = body.0.try_into_domain()?;
    let tokens = state.service.refresh(&refresh, &caller.context).await?;
    Ok(no_store(HttpResponse::Ok()).json(TokenResponse::from(tokens)))
}
