//! GET /api/accounts/me/: the account behind the bearer token.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::SecondsFormat;
use serde_json::json;

use crate::routes::auth::{auth_error, bearer};
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .service
        .current_user(bearer(&req)?)
        .await
        .map_err(auth_error)?;
    Ok(HttpResponse::Ok().json(json!({
        "id": user.id.to_string(),
        "email": user.email.as_str(),
        "full_name": user.full_name.as_str(),
        "email_verified": user.email_verified,
        "created_at": user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    })))
}
