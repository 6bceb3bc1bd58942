//! PATCH or POST /api/accounts/resend-otp/: a new verification code. The answer is
//! the same whatever the address.

use actix_web::{HttpResponse, web};
use passcode_domain::service::ResendError;
use serde_json::{Value, json};

use crate::body::{Fields, checked};
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body.into_inner())?;
    let email = fields.email("email");
    fields.finish()?;
    state
        .service
        .resend_verification(&checked(email)?)
        .await
        .map_err(|error| match error {
            ResendError::Throttled(throttled) => ApiError::throttled(throttled),
            ResendError::Infra(e) => e.into(),
        })?;
    Ok(HttpResponse::Ok().json(json!({
        "message": "If this address has an account waiting for verification, a new code has been sent.",
    })))
}
