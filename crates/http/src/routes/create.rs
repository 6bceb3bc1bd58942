//! POST /api/accounts/create/: register.

use actix_web::{HttpResponse, web};
use passcode_domain::service::{RegisterError, RegisterInput, Registered};
use passcode_domain::{FullName, Password};
use serde_json::{Value, json};

use crate::body::{Fields, checked};
use crate::routes::{TokenBody, no_store};
use crate::{ApiError, HttpState};

pub(crate) async fn handle(
    state: web::Data<HttpState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body.into_inner())?;
    let (full_name, email, password) = (
        fields.string("full_name"),
        fields.email("email"),
        fields.string("password"),
    );
    let full_name = fields.parse("full_name", full_name, |s| FullName::parse(&s));
    let password = fields.parse("password", password, Password::parse);
    fields.finish()?;
    let input = RegisterInput {
        email: checked(email)?,
        full_name: checked(full_name)?,
        password: checked(password)?,
    };
    match state.service.register(input).await.map_err(to_api)? {
        Registered::PendingVerification { email, full_name } => Ok(HttpResponse::Created().json(json!({
            "message": "Registration received. Check your email for a verification code.",
            "user": { "email": email.as_str(), "full_name": full_name.as_str() },
        }))),
        Registered::WithTokens { user, tokens } => Ok(no_store(HttpResponse::Created()).json(json!({
            "user": { "id": user.id.to_string(), "email": user.email.as_str(), "full_name": user.full_name.as_str() },
            "token": TokenBody::from(tokens),
        }))),
    }
}

fn to_api(error: RegisterError) -> ApiError {
    match error {
        RegisterError::EmailTaken => {
            ApiError::bad_request("email_taken", "User with this email already exists.")
        }
        RegisterError::WeakPassword(why) => {
            ApiError::validation([("password".to_owned(), vec![why])].into_iter().collect())
        }
        RegisterError::Throttled(throttled) => ApiError::throttled(throttled),
        RegisterError::Busy => ApiError::busy(),
        RegisterError::Infra(e) => e.into(),
    }
}
