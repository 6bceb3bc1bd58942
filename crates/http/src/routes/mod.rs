//! Route table: the tutorial's paths, one file per route.

mod auth;
mod change_password;
mod create;
mod health;
mod jwks;
mod logout;
mod me;
mod password_reset;
mod password_reset_confirm;
mod resend_otp;
mod token;
mod token_refresh;
mod token_verify;
mod validate_otp;

use actix_web::middleware::from_fn;
use actix_web::{Resource, web};
use passcode_domain::TokenPair;
use serde::Serialize;

use crate::ApiError;

pub(crate) fn register(cfg: &mut web::ServiceConfig) {
    // Unauthenticated endpoints count requests per client address.
    let limited = |path| resource(path).wrap(from_fn(crate::client::limit_clients));
    cfg.service(limited("/api/accounts/create").route(web::post().to(create::handle)))
        .service(limited("/api/accounts/validate-otp").route(web::post().to(validate_otp::handle)))
        .service(
            limited("/api/accounts/resend-otp")
                .route(web::patch().to(resend_otp::handle))
                .route(web::post().to(resend_otp::handle)),
        )
        .service(limited("/api/accounts/token").route(web::post().to(token::handle)))
        .service(
            limited("/api/accounts/token/refresh").route(web::post().to(token_refresh::handle)),
        )
        .service(limited("/api/accounts/token/verify").route(web::post().to(token_verify::handle)))
        .service(
            limited("/api/accounts/password-reset").route(web::post().to(password_reset::handle)),
        )
        .service(
            limited("/api/accounts/password-reset/confirm")
                .route(web::post().to(password_reset_confirm::handle)),
        )
        .service(limited("/api/accounts/logout").route(web::post().to(logout::handle)))
        .service(
            limited("/api/accounts/change-password").route(web::post().to(change_password::handle)),
        )
        .service(resource("/api/accounts/me").route(web::get().to(me::handle)))
        .service(resource("/.well-known/jwks.json").route(web::get().to(jwks::handle)))
        .service(resource("/health/live").route(web::get().to(health::live)))
        .service(resource("/health/ready").route(web::get().to(health::ready)));
}

/// A resource whose unmatched methods answer a JSON 405.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(ApiError::method_not_allowed())
    }))
}

/// A response that carries tokens: no cache (browser, proxy or CDN) may keep it.
pub(crate) fn no_store(
    mut builder: actix_web::HttpResponseBuilder,
) -> actix_web::HttpResponseBuilder {
    builder.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
    builder
}

/// `{"refresh", "access"}`, as simplejwt answers.
#[derive(Serialize)]
pub(crate) struct TokenBody {
    refresh: String,
    access: String,
}

impl From<TokenPair> for TokenBody {
    fn from(pair: TokenPair) -> Self {
        Self {
            refresh: pair.refresh,
            access: pair.access,
        }
    }
}
