//! POST /api/accounts/logout/: revoke this refresh token's family, or with
//! `"all": true` every family of its account.

use actix_web::{HttpResponse, web};
use passcode_domain::service::RefreshError;
use serde_json::{Value, json};

use crate::body::{Fields, checked};
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body.into_inner())?;
    let refresh = fields.string("refresh");
    let all = fields.flag("all");
    fields.finish()?;
    state
        .service
        .logout(&checked(refresh)?, all)
        .await
        .map_err(|error| match error {
            RefreshError::InvalidToken => {
                ApiError::unauthorized("token_invalid", "Token is invalid or expired.")
            }
            RefreshError::Infra(e) => e.into(),
        })?;
    Ok(HttpResponse::Ok().json(json!({ "message": "Signed out." })))
}
