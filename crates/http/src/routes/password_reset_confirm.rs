//! POST /api/accounts/password-reset/confirm/: set a new password with a reset code.

use actix_web::{HttpResponse, web};
use passcode_domain::service::{ResetError, ResetInput};
use passcode_domain::{OtpCode, Password};
use serde_json::{Value, json};

use crate::body::{Fields, checked};
use crate::client::Client;
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    client: Client,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body.into_inner())?;
    let (email, otp, new_password) = (
        fields.email("email"),
        fields.string("otp"),
        fields.string("new_password"),
    );
    let new_password = fields.parse("new_password", new_password, Password::parse);
    fields.finish()?;
    let input = ResetInput {
        email: checked(email)?,
        code: OtpCode::new(checked(otp)?.trim().to_owned()),
        new_password: checked(new_password)?,
        client: client.key,
    };
    state
        .service
        .confirm_password_reset(input)
        .await
        .map_err(|error| match error {
            ResetError::InvalidCode => {
                ApiError::bad_request("otp_invalid", "Invalid or expired OTP.")
            }
            ResetError::WeakPassword(why) => ApiError::validation(
                [("new_password".to_owned(), vec![why])]
                    .into_iter()
                    .collect(),
            ),
            ResetError::Throttled(throttled) => ApiError::throttled(throttled),
            ResetError::Busy => ApiError::busy(),
            ResetError::Infra(e) => e.into(),
        })?;
    Ok(HttpResponse::Ok().json(json!({ "message": "Password has been reset." })))
}
