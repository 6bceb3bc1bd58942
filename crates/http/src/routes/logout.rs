//! POST /api/accounts/logout/: revoke this refresh token's family, or with
//! `"all": true` every family of its account.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{BadInput, ClientRate, DatabaseDown, JsonBody};
use crate::types::{LogoutRequest, MessageResponse};
use crate::{ApiError, HttpState};

/// Sign out: end this refresh token's session, or with `all` every session.
#[utoipa::path(
    post, path = "/api/accounts/logout/", operation_id = "logout", tag = "tokens",
    request_body = LogoutRequest,
    responses(
        (status = 200, description = "Signed out", body = MessageResponse),
        BadInput,
        (status = 401, description = "`token_invalid`", body = ErrorBody),
        JsonBody,
        ClientRate,
        DatabaseDown,
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
