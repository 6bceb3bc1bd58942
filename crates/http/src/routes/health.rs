//! Liveness (the process answers) and readiness (the database answers).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{ApiError, HttpState};

pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub(crate) async fn ready(state: web::Data<HttpState>) -> Result<HttpResponse, ApiError> {
    match state.health.check().await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "status": "ok" }))),
        Err(error) => {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::new(error)), "readiness check failed");
            Err(ApiError::unavailable(
                "not_ready",
                "The database is unavailable.",
                5,
            ))
        }
    }
}
