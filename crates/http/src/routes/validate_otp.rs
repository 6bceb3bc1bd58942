//! POST /api/accounts/validate-otp/: verify the address with its code.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{HashingOrDatabaseDown, JsonBody};
use crate::routes::no_store;
use crate::types::{ValidateOtpRequest, VerifiedResponse};
use crate::{ApiError, HttpState};

/// Verify the address with the mailed code; the first token pair.
///
/// The name and password of the registration the code was mailed for take effect.
/// Send `password` to bind the code to your own registration.
#[utoipa::path(
    post, path = "/api/accounts/validate-otp/", operation_id = "validate_otp", tag = "accounts",
    request_body = ValidateOtpRequest,
    responses(
        (status = 200, description = "Verified; the first token pair", body = VerifiedResponse, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "`otp_invalid` (wrong, expired, spent, out of tries, unknown address: one answer), validation error or malformed JSON", body = ErrorBody),
        JsonBody,
        (status = 429, description = "The address's guessing budget (or this client's share of it), or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        HashingOrDatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    caller: Caller,
    body: Body<ValidateOtpRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.try_into_domain(&caller)?;
    let (_user, tokens) = state.service.verify_email(input).await?;
    Ok(no_store(HttpResponse::Ok()).json(VerifiedResponse {
        message: "Account verified successfully".to_owned(),
        token: tokens.into(),
    }))
}
