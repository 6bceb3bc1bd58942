//! PATCH or POST /api/accounts/resend-otp/: a new verification code. The answer is
//! the same whatever the address.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::error::ErrorBody;
use crate::routes::answers::{BadInput, DatabaseDown, JsonBody};
use crate::types::{EmailRequest, MessageResponse};
use crate::{ApiError, HttpState};

const SENT: &str =
    "If this address has an account waiting for verification, a new code has been sent.";

/// Mail a new verification code (the same answer for any address).
#[utoipa::path(
    patch, path = "/api/accounts/resend-otp/", operation_id = "resend_otp", tag = "accounts",
    request_body = EmailRequest,
    responses(
        (status = 200, description = "The same answer for any address", body = MessageResponse),
        BadInput,
        JsonBody,
        (status = 429, description = "The address's cooldown or hourly cap (alike for any address), or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    body: Body<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = body.0.try_into_domain()?;
    state.service.resend_verification(&email).await?;
    Ok(HttpResponse::Ok().json(MessageResponse::new(SENT)))
}

/// Mail a new verification code (POST, as some clients send it).
#[utoipa::path(
    post, path = "/api/accounts/resend-otp/", tag = "accounts",
    operation_id = "resend_otp_post",
    request_body = EmailRequest,
    responses(
        (status = 200, description = "The same answer for any address", body = MessageResponse),
        BadInput,
        JsonBody,
        (status = 429, description = "The address's cooldown or hourly cap (alike for any address), or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DatabaseDown,
    )
)]
pub(crate) async fn handle_post(
    state: web::Data<HttpState>,
    body: Body<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    handle(state, body).await
}
