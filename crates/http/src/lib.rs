//! The actix-web adapter of passcode: the REST contract of API.md (routes, bodies,
//! errors), on top of the domain's `AuthService`.

mod body;
mod client;
mod cors;
mod error;
mod log;
mod routes;
pub mod types;

pub use client::{Client, ClientLimiter, client_of};
pub use log::{RequestId, request_log};

use std::sync::Arc;

use actix_web::web;
use passcode_domain::AuthService;
use passcode_domain::ports::HealthCheck;

pub use cors::{CorsSettings, cors};
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use routes::ApiDoc;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub service: AuthService,
    pub health: Arc<dyn HealthCheck>,
    /// The JWKS document to publish (empty key list for HS256).
    pub jwks: Arc<serde_json::Value>,
    /// Proxies whose `X-Forwarded-For` is believed (empty: use the socket's address).
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// The per-client request limit of this instance.
    pub client_limiter: Arc<client::ClientLimiter>,
}

/// Registers every route, the JSON body limits and the JSON 404, on an actix `App`,
/// and with `docs` the API page at `/docs` (Swagger UI, built into the binary).
/// Wrap the app in `NormalizePath::trim()` so paths answer with or without a trailing slash.
pub fn configure(
    state: HttpState,
    body_limit: usize,
    docs: bool,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .app_data(body::json_config(body_limit));
        routes::register(cfg);
        if docs {
            // `/docs` itself: to the page (NormalizePath trims `/docs/`, so the UI's own
            // redirect to the slash would loop).
            cfg.service(web::resource("/docs").to(|| async {
                actix_web::HttpResponse::Found()
                    .insert_header(("Location", "/docs/index.html"))
                    .finish()
            }));
            cfg.service(
                utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                    .config(utoipa_swagger_ui::Config::from("/api/openapi.json")),
            );
        }
    }
}

/// The answer to any path no route matches: a JSON 404.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found())
}
