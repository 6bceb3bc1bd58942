//! Seeing and ending sessions: GET /api/accounts/sessions/, DELETE
//! /api/accounts/sessions/{id}/, POST /api/accounts/sessions/end-others/.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::SecondsFormat;
use uuid::Uuid;

use crate::client::Caller;
use crate::error::ErrorBody;
use crate::routes::answers::{ClientRate, DatabaseDown, NotSignedIn};
use crate::routes::auth::bearer;
use crate::types::{EndedResponse, MessageResponse, SessionResponse, SessionsResponse};
use crate::{ApiError, HttpState};

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The account's live sessions, newest use first; the caller's is marked `current`.
#[utoipa::path(
    get, path = "/api/accounts/sessions/", tag = "accounts", operation_id = "list_sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The live sessions", body = SessionsResponse),
        NotSignedIn,
        DatabaseDown,
    )
)]
pub(crate) async fn list(
    state: web::Data<HttpState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let sessions = state.service.list_sessions(bearer(&req)?).await?;
    Ok(HttpResponse::Ok().json(SessionsResponse {
        sessions: sessions
            .into_iter()
            .map(|s| SessionResponse {
                id: s.info.id.to_string(),
                current: s.current,
                created_at: time(s.info.created_at),
                created_client: s.info.created_client,
                created_user_agent: s.info.created_user_agent,
                last_used_at: time(s.info.last_used_at),
                last_client: s.info.last_client,
                last_user_agent: s.info.last_user_agent,
            })
            .collect(),
    }))
}

/// End one session of the account (its refresh token no longer refreshes).
#[utoipa::path(
    delete, path = "/api/accounts/sessions/{id}/", tag = "accounts", operation_id = "end_session",
    params(("id" = String, Path, description = "A session id from the list")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Ended", body = MessageResponse),
        NotSignedIn,
        (status = 404, description = "No such live session of this account", body = ErrorBody),
        ClientRate,
        DatabaseDown,
    )
)]
pub(crate) async fn end(
    state: web::Data<HttpState>,
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let token = bearer(&req)?;
    // Not a session id: no such session, answered after the token is checked.
    let session = Uuid::parse_str(&id).ok();
    state.service.check_access_token(token)?;
    let ended = match session {
        Some(session) => {
            state
                .service
                .end_session(token, session, &caller.context)
                .await?
        }
        None => false,
    };
    if !ended {
        return Err(ApiError::not_found());
    }
    Ok(HttpResponse::Ok().json(MessageResponse::new("The session has ended.")))
}

/// End every session of the account but the caller's.
#[utoipa::path(
    post, path = "/api/accounts/sessions/end-others/", tag = "accounts", operation_id = "end_other_sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many sessions ended", body = EndedResponse),
        NotSignedIn,
        ClientRate,
        DatabaseDown,
    )
)]
pub(crate) async fn end_others(
    state: web::Data<HttpState>,
    req: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let ended = state
        .service
        .end_other_sessions(bearer(&req)?, &caller.context)
        .await?;
    Ok(HttpResponse::Ok().json(EndedResponse { ended }))
}
