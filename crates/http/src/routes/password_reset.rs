//! POST /api/accounts/password-reset/: mail a reset code. The same answer whatever the address.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::error::ErrorBody;
use crate::routes::answers::{BadInput, DatabaseDown, JsonBody};
use crate::types::{EmailRequest, MessageResponse};
use crate::{ApiError, HttpState};

/// Mail a password reset code (the same answer for any address).
#[utoipa::path(
    post, path = "/api/accounts/password-reset/", operation_id = "request_password_reset", tag = "accounts",
    request_body = EmailRequest,
    responses(
        (status = 200, description = "The same answer for any address", body = MessageResponse),
        BadInput,
        JsonBody,
        (status = 429, description = "The address's cooldown or hourly cap, or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    body: Body<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = body.0.try_into_domain()?;
    state
        .service
        .request_password_reset(&email)
        .await?
        .map_err(ApiError::throttled)?;
    Ok(HttpResponse::Ok().json(MessageResponse::new(
        "If this address has an account, a password reset code has been sent.",
    )))
}
