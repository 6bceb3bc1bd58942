//! POST /api/accounts/token/: log in with email and password.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{BadInput, HashingOrDatabaseDown, JsonBody};
use crate::routes::no_store;
use crate::types::{LoginRequest, TokenResponse};
use crate::{ApiError, HttpState};

/// Log in: a token pair for email and password.
#[utoipa::path(
    post, path = "/api/accounts/token/", operation_id = "login", tag = "tokens",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A new session's token pair", body = TokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
        BadInput,
        (status = 401, description = "`invalid_credentials`: unknown address, wrong password or inactive account (one answer)", body = ErrorBody),
        (status = 403, description = "`email_not_verified` (default policy)", body = ErrorBody),
        JsonBody,
        (status = 429, description = "A failed-login budget (per address and client, or per address), or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        HashingOrDatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    caller: Caller,
    body: Body<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.try_into_domain(&caller)?;
    let tokens = state.service.login(input).await?;
    Ok(no_store(HttpResponse::Ok()).json(TokenResponse::from(tokens)))
}
