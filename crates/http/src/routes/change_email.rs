//! Changing the address: POST /api/accounts/change-email/ (a code to the new address,
//! a notice to the old) and POST /api/accounts/change-email/confirm/ (the move).

use actix_web::{HttpRequest, HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{DatabaseDown, HashingOrDatabaseDown, JsonBody, NotSignedIn};
use crate::routes::auth::bearer;
use crate::types::{ChangeEmailRequest, ConfirmEmailChangeRequest, MessageResponse};
use crate::{ApiError, HttpState};

/// Ask to move the account to a new address (signed in, with the password).
///
/// The same answer whether or not the new address has an account: a code goes to it
/// only if it has none. The old address gets a notice without a code.
#[utoipa::path(
    post, path = "/api/accounts/change-email/", tag = "accounts", operation_id = "request_email_change",
    request_body = ChangeEmailRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The same answer for any new address", body = MessageResponse),
        (status = 400, description = "Wrong `password` (field error), validation error or malformed JSON", body = ErrorBody),
        NotSignedIn,
        JsonBody,
        (status = 429, description = "The account's budget of wrong passwords, the new address's cooldown or cap, or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        HashingOrDatabaseDown,
    )
)]
pub(crate) async fn request(
    state: web::Data<HttpState>,
    req: HttpRequest,
    body: Body<ChangeEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let (new_email, password) = body.0.try_into_domain()?;
    let token = bearer(&req)?.to_owned();
    state
        .service
        .request_email_change(&token, &new_email, &password)
        .await?;
    Ok(HttpResponse::Ok().json(MessageResponse::new(
        "If the new address can be used, a confirmation code has been sent to it.",
    )))
}

/// Confirm the move with the code sent to the new address.
///
/// The account moves atomically (refused like a wrong code if the address was taken
/// meanwhile), every other session ends, and the old address is told.
#[utoipa::path(
    post, path = "/api/accounts/change-email/confirm/", tag = "accounts", operation_id = "confirm_email_change",
    request_body = ConfirmEmailChangeRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Moved", body = MessageResponse),
        (status = 400, description = "`otp_invalid` (one answer for every failure), validation error or malformed JSON", body = ErrorBody),
        NotSignedIn,
        JsonBody,
        (status = 429, description = "The new address's guessing budget (or this client's share), or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DatabaseDown,
    )
)]
pub(crate) async fn confirm(
    state: web::Data<HttpState>,
    req: HttpRequest,
    caller: Caller,
    body: Body<ConfirmEmailChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let (new_email, code) = body.0.try_into_domain()?;
    let token = bearer(&req)?.to_owned();
    state
        .service
        .confirm_email_change(&token, &new_email, &code, &caller.key, &caller.context)
        .await?;
    Ok(HttpResponse::Ok().json(MessageResponse::new(
        "Your address has been changed. Other sessions have been signed out.",
    )))
}
