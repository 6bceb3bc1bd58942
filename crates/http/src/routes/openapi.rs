//! The OpenAPI 3.1 document, generated from the handlers' annotations and the request
//! and response types, served at `GET /api/openapi.json`.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode};
use crate::routes::{
    change_password, create, health, jwks, logout, me, password_reset, password_reset_confirm,
    resend_otp, token, token_refresh, token_verify, validate_otp,
};
use crate::types::{
    ChangePasswordRequest, CreatedUser, EmailRequest, EmptyResponse, HealthResponse, JwksResponse,
    LoginRequest, LogoutRequest, MeResponse, MessageResponse, RefreshRequest, RegisterRequest,
    RegisterResponse, RegisteredUser, ResetConfirmRequest, TokenResponse, TokenVerifyRequest,
    ValidateOtpRequest, VerifiedResponse,
};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "passcode",
        description = "Email verification with one-time codes, and JWT authentication. \
            Errors are always JSON `{\"error\", \"code\"}` (plus `fields` on validation errors). \
            Paths answer with or without the trailing slash.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        create::handle,
        validate_otp::handle,
        resend_otp::handle,
        resend_otp::handle_post,
        token::handle,
        token_refresh::handle,
        token_verify::handle,
        password_reset::handle,
        password_reset_confirm::handle,
        logout::handle,
        change_password::handle,
        me::handle,
        jwks::handle,
        health::live,
        health::ready,
        document,
    ),
    components(schemas(
        ErrorBody, ErrorCode, RegisterRequest, ValidateOtpRequest, EmailRequest, LoginRequest,
        RefreshRequest, TokenVerifyRequest, LogoutRequest, ResetConfirmRequest,
        ChangePasswordRequest, TokenResponse, MessageResponse, RegisteredUser, CreatedUser,
        RegisterResponse, VerifiedResponse, MeResponse, EmptyResponse, HealthResponse,
        JwksResponse,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Registration, verification, recovery, the account"),
        (name = "tokens", description = "Login, refresh, verification of tokens, logout, keys"),
        (name = "operations", description = "Health checks and this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token from `token` or `validate-otp`"))
                    .build(),
            ),
        );
    }
}

/// The document, rendered once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default())
}

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get, path = "/api/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object))
)]
pub(crate) async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}
