//! POST /api/accounts/password-reset/: mail a reset code. The same answer whatever the address.

use actix_web::{HttpResponse, web};
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
        .request_password_reset(&checked(email)?)
        .await?
        .map_err(ApiError::throttled)?;
    Ok(HttpResponse::Ok().json(json!({
        "message": "If this address has an account, a password reset code has been sent.",
    })))
}
