//! POST /api/accounts/validate-otp/: verify the address with its code.

use actix_web::{HttpResponse, web};
use passcode_domain::OtpCode;
use passcode_domain::service::{VerifyInput, VerifyOtpError};
use serde_json::{Value, json};

use crate::body::{Fields, checked};
use crate::routes::TokenBody;
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body.into_inner())?;
    let (email, otp) = (fields.email("email"), fields.string("otp"));
    fields.finish()?;
    let input = VerifyInput {
        email: checked(email)?,
        code: OtpCode::new(checked(otp)?.trim().to_owned()),
    };
    let (_user, tokens) = state.service.verify_email(input).await.map_err(to_api)?;
    Ok(HttpResponse::Ok().json(json!({
        "message": "Account verified successfully",
        "token": TokenBody::from(tokens),
    })))
}

pub(crate) fn to_api(error: VerifyOtpError) -> ApiError {
    match error {
        VerifyOtpError::Invalid => ApiError::bad_request("otp_invalid", "Invalid or expired OTP."),
        VerifyOtpError::Throttled(throttled) => ApiError::throttled(throttled),
        VerifyOtpError::Infra(e) => e.into(),
    }
}
