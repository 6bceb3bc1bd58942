//! POST /api/accounts/token/refresh/: a refresh token for a new pair.

use actix_web::{HttpResponse, web};
use passcode_domain::service::RefreshError;
use serde_json::Value;

use crate::body::{Fields, checked};
use crate::routes::{TokenBody, no_store};
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body.into_inner())?;
    let refresh = fields.string("refresh");
    fields.finish()?;
    let tokens = state
        .service
        .refresh(&checked(refresh)?)
        .await
        .map_err(|error| match error {
            RefreshError::InvalidToken => {
                ApiError::unauthorized("token_invalid", "Token is invalid or expired.")
            }
            RefreshError::Infra(e) => e.into(),
        })?;
    Ok(no_store(HttpResponse::Ok()).json(TokenBody::from(tokens)))
}
