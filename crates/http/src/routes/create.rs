//! POST /api/accounts/create/: register.

use actix_web::{HttpResponse, web};
use passcode_domain::service::Registered;

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{HashingOrDatabaseDown, JsonBody};
use crate::routes::no_store;
use crate::types::{CreatedUser, RegisterRequest, RegisterResponse, RegisteredUser};
use crate::{ApiError, HttpState};

/// Register an account and mail a verification code.
///
/// Default policy: the same 201 answer whether or not the address has an account (an
/// existing verified owner is mailed a notice instead of a code), and no tokens;
/// tokens come from `validate-otp`. Compatibility policy: the new account and its first
/// tokens; a taken address is 400 `email_taken`.
#[utoipa::path(
    post, path = "/api/accounts/create/", operation_id = "register", tag = "accounts",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registration received (or, compatibility policy, the account and its tokens)", body = RegisterResponse),
        (status = 400, description = "Validation error (every bad field), malformed JSON, or (compatibility policy) `email_taken`", body = ErrorBody),
        JsonBody,
        (status = 429, description = "Resend cooldown or cap of the address, or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        HashingOrDatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    caller: Caller,
    body: Body<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0.try_into_domain(&caller)?;
    Ok(match state.service.register(input).await? {
        Registered::PendingVerification { email, full_name } => {
            HttpResponse::Created().json(RegisterResponse::Pending {
                message: "Registration received. Check your email for a verification code."
                    .to_owned(),
                user: RegisteredUser {
                    email: email.as_str().to_owned(),
                    full_name: full_name.as_str().to_owned(),
                },
            })
        }
        Registered::WithTokens { user, tokens } => {
            no_store(HttpResponse::Created()).json(RegisterResponse::WithTokens {
                user: CreatedUser {
                    id: user.id.to_string(),
                    email: user.email.as_str().to_owned(),
                    full_name: user.full_name.as_str().to_owned(),
                },
                token: tokens.into(),
            })
        }
    })
}
