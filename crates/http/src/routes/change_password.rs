//! POST /api/accounts/change-password/: the signed-in user sets a new password.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::body::Body;
use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{HashingOrDatabaseDown, JsonBody, NotSignedIn};
use crate::routes::auth::bearer;
use crate::types::{ChangePasswordRequest, MessageResponse};
use crate::{ApiError, HttpState};

/// Change the password (signed in); every other session is signed out.
#[utoipa::path(
    post, path = "/api/accounts/change-password/", operation_id = "change_password", tag = "accounts",
    request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed; every earlier token is refused and a notice is mailed", body = MessageResponse),
        (status = 400, description = "Wrong `old_password` or weak `new_password` (field errors), validation error or malformed JSON", body = ErrorBody),
        NotSignedIn,
        JsonBody,
        (status = 429, description = "The account's budget of wrong old passwords, or the client's rate", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        HashingOrDatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    req: HttpRequest,
    caller: Caller,
    body: Body<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    // The body first, so that a malformed request is a 400 whoever sends it.
    let (old, new) = body.0.try_into_domain()?;
    let token = bearer(&req)?.to_owned();
    state
        .service
        .change_password(&token, &old, &new, &caller.context)
        .await?;
    Ok(HttpResponse::Ok().json(MessageResponse::new(
        "Password changed. Other sessions have been signed out.",
    )))
}
