//! Sign in by code: POST /api/accounts/sign-in/code/ mails a code (the same answer for
//! any address), POST /api/accounts/sign-in/ exchanges it for a token pair.

use actix_web::{HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{BadInput, DatabaseDown, JsonBody};
use crate::routes::no_store;
use crate::types::{EmailRequest, MessageResponse, SignInRequest, TokenResponse};
use crate::{ApiError, HttpState};

/// Mail a sign-in code (the same answer for any address).
///
/// Off with `registration.sign_in_by_code = false` (then 404).
#[utoipa::path(
    post, path = "/api/accounts/sign-in/code/", tag = "tokens", operation_id = "request_sign_in_code",
    request_body = EmailRequest,
    responses(
        (status = 200, description = "The same answer for any address", body = MessageResponse),
        BadInput,
        (status = 404, description = "Sign-in by code is turned off", body = ErrorBody),
        JsonBody,
        (status = 429, description = "The address's cooldown or hourly cap (alike for any address), or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DatabaseDown,
    )
)]
pub(crate) async fn request_code(
    state: web::Data<HttpState>,
    body: Body<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = body.0.try_into_domain()?;
    state
        .service
        .request_sign_in_code(&email)
        .await?
        .map_err(ApiError::throttled)?;
    Ok(HttpResponse::Ok().json(MessageResponse::new(
        "If this address has an account, a sign-in code has been sent.",
    )))
}

/// Sign in with a mailed code: a new session's token pair.
///
/// An unverified address is verified by it (the code proves the mailbox), and any
/// password set by a registration that was never verified is cleared.
#[utoipa::path(
    post, path = "/api/accounts/sign-in/", tag = "tokens", operation_id = "sign_in_with_code",
    request_body = SignInRequest,
    responses(
        (status = 200, description = "A new session's token pair", body = TokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "`otp_invalid` (one answer for every failure), validation error or malformed JSON", body = ErrorBody),
        (status = 404, description = "Sign-in by code is turned off", body = ErrorBody),
        JsonBody,
        (status = 429, description = "The address's guessing budget (or this client's share), or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DatabaseDown,
    )
)]
pub(crate) async fn sign_in(
    state: web::Data<HttpState>,
    caller: Caller,
    body: Body<SignInRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.try_into_domain(&caller)?;
    let tokens = state.service.sign_in_with_code(input).await?;
    Ok(no_store(HttpResponse::Ok()).json(TokenResponse::from(tokens)))
}
