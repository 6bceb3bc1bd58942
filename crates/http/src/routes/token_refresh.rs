//! POST /api/accounts/token/refresh/: a refresh token for a new pair.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{BadInput, ClientRate, DatabaseDown, JsonBody};
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
        BadInput,
        (status = 401, description = "`token_invalid`: invalid, expired, spent, revoked, or its session ended", body = ErrorBody),
        JsonBody,
        ClientRate,
        DatabaseDown,
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
