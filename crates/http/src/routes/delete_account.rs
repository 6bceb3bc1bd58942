//! POST /api/accounts/delete/: the signed-in user deletes the account.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{HashingOrDatabaseDown, JsonBody, NotSignedIn};
use crate::routes::auth::bearer;
use crate::types::{DeleteAccountRequest, MessageResponse};
use crate::{ApiError, HttpState};

/// Delete the account (signed in, confirmed with the password, or for an account
/// without one with a fresh code from `sign-in/code`).
///
/// Everything personal is erased: the account, its sessions, codes, queued mail and
/// the limit state keyed by its address; audit events keep no address. The address
/// gets a confirmation and can register again.
#[utoipa::path(
    post, path = "/api/accounts/delete/", tag = "accounts", operation_id = "delete_account",
    request_body = DeleteAccountRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = MessageResponse),
        (status = 400, description = "Wrong `password` (field error), `otp_invalid`, validation error or malformed JSON", body = ErrorBody),
        NotSignedIn,
        JsonBody,
        (status = 429, description = "The account's budget of wrong passwords, or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        HashingOrDatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    req: HttpRequest,
    caller: Caller,
    body: Body<DeleteAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    // The body first, so that a malformed request is a 400 whoever sends it.
    let confirmation = body.0.try_into_domain(&caller)?;
    let token = bearer(&req)?.to_owned();
    state
        .service
        .delete_account(&token, confirmation, &caller.context)
        .await?;
    Ok(HttpResponse::Ok().json(MessageResponse::new("Your account has been deleted.")))
}
