//! POST /api/accounts/password-reset/confirm/: set a new password with a reset code.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{HashingOrDatabaseDown, JsonBody};
use crate::types::{MessageResponse, ResetConfirmRequest};
use crate::{ApiError, HttpState};

/// Set a new password with a reset code.
///
/// The address counts as verified, every earlier token is refused, and a notice is mailed.
#[utoipa::path(
    post, path = "/api/accounts/password-reset/confirm/", operation_id = "confirm_password_reset", tag = "accounts",
    request_body = ResetConfirmRequest,
    responses(
        (status = 200, description = "Password reset", body = MessageResponse),
        (status = 400, description = "`otp_invalid`, a weak `new_password` (field error), validation error or malformed JSON", body = ErrorBody),
        JsonBody,
        (status = 429, description = "The address's guessing budget (or this client's share), or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        HashingOrDatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    caller: Caller,
    body: Body<ResetConfirmRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.try_into_domain(&caller)?;
    state.service.confirm_password_reset(input).await?;
    Ok(HttpResponse::Ok().json(MessageResponse::new("Password has been reset.")))
}
