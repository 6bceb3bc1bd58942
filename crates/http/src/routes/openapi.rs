//! The OpenAPI 3.1 document, generated from the handlers' annotations and the request
//! and response types, served at `GET /api/openapi.json`.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode};
use crate::routes::{
    change_email, change_password, create, delete_account, health, jwks, logout, me,
    password_reset, password_reset_confirm, resend_otp, sessions, sign_in, token, token_refresh,
    token_verify, validate_otp,
};
use crate::types::{
    ChangeEmailRequest, ChangePasswordRequest, ConfirmEmailChangeRequest, CreatedUser,
    DeleteAccountRequest, EmailRequest, EmptyResponse, EndedResponse, HealthResponse, JwksResponse,
    LoginRequest, LogoutRequest, MeResponse, MessageResponse, RefreshRequest, RegisterRequest,
    RegisterResponse, RegisteredUser, ResetConfirmRequest, SessionResponse, SessionsResponse,
    SignInRequest, TokenResponse, TokenVerifyRequest, ValidateOtpRequest, VerifiedResponse,
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
        delete_account::handle,
        change_email::request,
        change_email::confirm,
        sessions::list,
        sessions::end,
        sessions::end_others,
        sign_in::request_code,
        sign_in::sign_in,
        me::handle,
        jwks::handle,
        health::live,
        health::ready,
        document,
    ),
    components(schemas(
        ErrorBody, ErrorCode, RegisterRequest, ValidateOtpRequest, EmailRequest, LoginRequest,
        RefreshRequest, TokenVerifyRequest, LogoutRequest, ResetConfirmRequest,
        ChangePasswordRequest, DeleteAccountRequest, SignInRequest, ChangeEmailRequest, ConfirmEmailChangeRequest, SessionResponse, SessionsResponse, EndedResponse, TokenResponse, MessageResponse, RegisteredUser, CreatedUser,
        RegisterResponse, VerifiedResponse, MeResponse, EmptyResponse, HealthResponse,
        JwksResponse,
    )),
    modifiers(&BearerAuth, &Links),
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

/// Links from one operation's answer to the next call of a session, so that clients
/// (and stateful API testers) can chain them: a token pair leads to `token/refresh`
/// and `token/verify`; a verification's pair too; a registration to `validate-otp`
/// for the same address.
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::link::LinkBuilder;

        let link = |operation: &str, body: serde_json::Value, description: &str| {
            RefOr::T(
                LinkBuilder::new()
                    .operation_id(operation)
                    .request_body(Some(body))
                    .description(description)
                    .build(),
            )
        };
        let pair = |refresh: &str, access: &str| {
            vec![
                (
                    "refresh",
                    link(
                        "refresh_token",
                        serde_json::json!({ "refresh": refresh }),
                        "Spend the refresh token for the next pair",
                    ),
                ),
                (
                    "verify",
                    link(
                        "verify_token",
                        serde_json::json!({ "token": access }),
                        "Check the access token",
                    ),
                ),
            ]
        };
        let plan = [
            (
                "/api/accounts/token/",
                "200",
                pair("$response.body#/refresh", "$response.body#/access"),
            ),
            (
                "/api/accounts/token/refresh/",
                "200",
                pair("$response.body#/refresh", "$response.body#/access"),
            ),
            (
                "/api/accounts/validate-otp/",
                "200",
                pair(
                    "$response.body#/token/refresh",
                    "$response.body#/token/access",
                ),
            ),
            (
                "/api/accounts/create/",
                "201",
                vec![(
                    "validate",
                    link(
                        "validate_otp",
                        serde_json::json!({ "email": "$request.body#/email", "password": "$request.body#/password" }),
                        "Verify the address with the mailed code",
                    ),
                )],
            ),
        ];
        for (path, status, links) in plan {
            let Some(RefOr::T(response)) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|operation| operation.responses.responses.get_mut(status))
            else {
                continue;
            };
            for (name, link) in links {
                response.links.insert(name.to_owned(), link);
            }
        }
    }
}

/// The document as JSON. utoipa 5 writes a link's fields in snake case
/// (`operation_id`); OpenAPI spells them in camel case, which is put right here.
pub fn document_value() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let responses = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
            continue;
        };
        for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(snake) {
                    link.insert(camel.to_owned(), value);
                }
            }
        }
    }
    doc
}

/// The document, rendered once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| serde_json::to_string_pretty(&document_value()).unwrap_or_default())
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
