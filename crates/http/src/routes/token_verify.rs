//! POST /api/accounts/token/verify/: is this access token valid? Valid means well
//! signed and current, and its account still active and not signed out since.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::body::{Fields, checked};
use crate::routes::auth::auth_error;
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body.into_inner())?;
    let token = fields.string("token");
    fields.finish()?;
    state
        .service
        .current_user(&checked(token)?)
        .await
        .map_err(auth_error)?;
    Ok(HttpResponse::Ok().json(json!({})))
}
