//! POST /api/accounts/validate-otp/: verify the address with its code.

use actix_web::{HttpResponse, web};
use passcode_domain::service::{VerifyInput, VerifyOtpError};
use passcode_domain::{OtpCode, Password};
use serde_json::{Value, json};

use crate::body::{Fields, checked};
use crate::client::Client;
use crate::routes::{TokenBody, no_store};
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    client: Client,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body.into_inner())?;
    let (email, otp) = (fields.email("email"), fields.string("otp"));
    // Optional: the password registered with; binds the code to that registration.
    let password = fields
        .optional_string("password")
        .and_then(|raw| fields.parse("password", Some(raw), Password::for_login));
    fields.finish()?;
    let input = VerifyInput {
        email: checked(email)?,
        code: OtpCode::new(checked(otp)?.trim().to_owned()),
        password,
        client: client.key,
    };
    let (_user, tokens) = state.service.verify_email(input).await.map_err(to_api)?;
    Ok(no_store(HttpResponse::Ok()).json(json!({
        "message": "Account verified successfully",
        "token": TokenBody::from(tokens),
    })))
}

pub(crate) fn to_api(error: VerifyOtpError) -> ApiError {
    match error {
        VerifyOtpError::Invalid => ApiError::bad_request("otp_invalid", "Invalid or expired OTP."),
        VerifyOtpError::Throttled(throttled) => ApiError::throttled(throttled),
        VerifyOtpError::Busy => ApiError::busy(),
        VerifyOtpError::Infra(e) => e.into(),
    }
}
