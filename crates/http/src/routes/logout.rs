//! POST /api/accounts/logout/: revoke this refresh token's family, or with
//! `"all": true` every family of its account.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::types::{LogoutRequest, MessageResponse};
use crate::{ApiError, HttpState};

/// Sign out: end this refresh token's session, or with `all` every session.
#[utoipa::path(
    post, path = "/api/accounts/logout/", operation_id = "logout", tag = "tokens",
    request_body = LogoutRequest,
    responses(
        (status = 200, description = "Signed out", body = MessageResponse),
        (status = 400, description = "Validation error or malformed JSON", body = ErrorBody),
        (status = 401, description = "`token_invalid`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = ErrorBody),
        (status = 429, description = "The client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database unavailable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    caller: Caller,
    body: Body<LogoutRequest>,
) -> Result<HttpResponse, ApiError> {
    let (refresh, all) = body.0.try_into_domain()?;
    state.service.logout(&refresh, all, &caller.context).await?;
    Ok(HttpResponse::Ok().json(MessageResponse::new("Signed out.")))
}
