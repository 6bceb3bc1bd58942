//! POST /api/accounts/token/: log in with email and password.

use actix_web::{HttpResponse, web};
use passcode_domain::Password;
use passcode_domain::service::{LoginError, LoginInput};
use serde_json::Value;

use crate::body::{Fields, checked};
use crate::client::Client;
use crate::routes::{TokenBody, no_store};
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    client: Client,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body.into_inner())?;
    let (email, password) = (fields.email("email"), fields.string("password"));
    let password = fields.parse("password", password, Password::for_login);
    fields.finish()?;
    let input = LoginInput {
        email: checked(email)?,
        password: checked(password)?,
        client: client.key,
    };
    let tokens = state
        .service
        .login(input)
        .await
        .map_err(|error| match error {
            LoginError::InvalidCredentials => ApiError::unauthorized(
                "invalid_credentials",
                "No active account found with the given credentials.",
            ),
            LoginError::EmailNotVerified => ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "email_not_verified",
                "Email address is not verified.",
            ),
            LoginError::Throttled(throttled) => ApiError::throttled(throttled),
            LoginError::Busy => ApiError::busy(),
            LoginError::Infra(e) => e.into(),
        })?;
    Ok(no_store(HttpResponse::Ok()).json(TokenBody::from(tokens)))
}
