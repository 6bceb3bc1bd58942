//! Liveness (the process answers) and readiness (the database answers).

use actix_web::{HttpResponse, web};

use crate::error::ErrorBody;
use crate::error::ErrorCode;
use crate::types::HealthResponse;
use crate::{ApiError, HttpState};

fn ok() -> HealthResponse {
    HealthResponse {
        status: "ok".to_owned(),
    }
}

/// Liveness: the process serves.
#[utoipa::path(
    get, path = "/health/live", operation_id = "live", tag = "operations",
    responses((status = 200, description = "Serving", body = HealthResponse))
)]
pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(ok())
}

/// Readiness: the database answers.
#[utoipa::path(
    get, path = "/health/ready", operation_id = "ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "`not_ready`: the database does not answer", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn ready(state: web::Data<HttpState>) -> Result<HttpResponse, ApiError> {
    match state.health.check().await {
        Ok(()) => Ok(HttpResponse::Ok().json(ok())),
        Err(error) => {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::new(error)), "readiness check failed");
            Err(ApiError::unavailable(
                ErrorCode::NotReady,
                "The database is unavailable.",
                5,
            ))
        }
    }
}
