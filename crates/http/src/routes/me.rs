//! GET /api/accounts/me/: the account behind the bearer token.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::SecondsFormat;

use crate::routes::answers::{DatabaseDown, NotSignedIn};
use crate::routes::auth::bearer;
use crate::types::MeResponse;
use crate::{ApiError, HttpState};

/// The signed-in account.
#[utoipa::path(
    get, path = "/api/accounts/me/", operation_id = "me", tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = MeResponse),
        NotSignedIn,
        DatabaseDown,
    )
)]
pub(crate) async fn handle(
    state: web::Data<HttpState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user = state.service.current_user(bearer(&req)?).await?;
    Ok(HttpResponse::Ok().json(MeResponse {
        id: user.id.to_string(),
        email: user.email.as_str().to_owned(),
        full_name: user.full_name.as_str().to_owned(),
        email_verified: user.email_verified,
        created_at: user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    }))
}
