//! CORS for browser clients on other origins: off unless origins are listed.

use actix_cors::Cors;
use actix_web::http::{Method, header};

/// `server.cors`.
#[derive(Debug, Clone, Default)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`) allowed to call the API from a
    /// browser. Empty: no CORS headers at all.
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age_seconds: usize,
}

/// The CORS middleware: the listed origins, the methods and headers the API uses, no
/// credentials (tokens travel in the `Authorization` header, never in cookies).
pub fn cors(settings: &CorsSettings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(settings.max_age_seconds);
    for origin in &settings.allowed_origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
