//! POST /api/accounts/token/verify/: is this access token valid? Valid means well
//! signed and current, and its account still active and not signed out since.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::error::ErrorBody;
use crate::routes::answers::{BadInput, ClientRate, DatabaseDown, JsonBody};
use crate::types::{EmptyResponse, TokenVerifyRequest};
use crate::{ApiError, HttpState};

/// Check an access token.
#[utoipa::path(
    post, path = "/api/accounts/token/verify/", operation_id = "verify_token", tag = "tokens",
    request_body = TokenVerifyRequest,
    responses(
        (status = 200, description = "Valid", body = EmptyResponse),
        BadInput,
        (status = 401, description = "`token_invalid`", body = ErrorBody),
        JsonBody,
        ClientRate,
        DatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    body: Body<TokenVerifyRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body.0.try_into_domain()?;
    state.service.current_user(&token).await?;
    Ok(HttpResponse::Ok().json(EmptyResponse {}))
}
