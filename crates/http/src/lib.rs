//! The actix-web adapter of passcode: the REST contract of API.md (routes, bodies,
//! errors), on top of the domain's `AuthService`.

mod body;
mod client;

pub use client::{Client, RequestSpan, client_of};
mod error;
mod routes;

use std::sync::Arc;

use actix_web::web;
use passcode_domain::AuthService;
use passcode_domain::ports::HealthCheck;

pub use error::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub service: AuthService,
    pub health: Arc<dyn HealthCheck>,
    /// The JWKS document to publish (empty key list for HS256).
    pub jwks: Arc<serde_json::Value>,
    /// Proxies whose `X-Forwarded-For` is believed (empty: use the socket's address).
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
}

/// Registers every route, the JSON body limits and the JSON 404, on an actix `App`.
/// Wrap the app in `NormalizePath::trim()` so paths answer with or without a trailing slash.
pub fn configure(state: HttpState, body_limit: usize) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .app_data(body::json_config(body_limit));
        routes::register(cfg);
    }
}

/// The answer to any path no route matches: a JSON 404.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found())
}
