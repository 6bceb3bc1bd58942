//! POST /api/accounts/change-password/: the signed-in user sets a new password.

use actix_web::{HttpRequest, HttpResponse, web};
use passcode_domain::Password;
use passcode_domain::service::ChangePasswordError;
use serde_json::{Value, json};

use crate::body::{Fields, checked};
use crate::routes::auth::bearer;
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    // The body first, so that a malformed request is a 400 whoever sends it.
    let mut fields = Fields::new(body.into_inner())?;
    let (old, new) = (fields.string("old_password"), fields.string("new_password"));
    let old = fields.parse("old_password", old, Password::for_login);
    let new = fields.parse("new_password", new, Password::parse);
    fields.finish()?;
    let (old, new) = (checked(old)?, checked(new)?);
    let token = bearer(&req)?.to_owned();
    let field = |name: &str, why: String| {
        ApiError::validation([(name.to_owned(), vec![why])].into_iter().collect())
    };
    state
        .service
        .change_password(&token, &old, &new)
        .await
        .map_err(|error| match error {
            ChangePasswordError::InvalidToken => {
                ApiError::unauthorized("token_invalid", "Token is invalid or expired.")
            }
            ChangePasswordError::WrongOldPassword => field("old_password", error.to_string()),
            ChangePasswordError::WeakPassword(why) => field("new_password", why),
            ChangePasswordError::Throttled(throttled) => ApiError::throttled(throttled),
            ChangePasswordError::Busy => ApiError::busy(),
            ChangePasswordError::Infra(e) => e.into(),
        })?;
    Ok(HttpResponse::Ok()
        .json(json!({ "message": "Password changed. Other sessions have been signed out." })))
}
