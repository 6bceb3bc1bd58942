//! Route table: the tutorial's paths, one file per route, and the OpenAPI document
//! generated from the same handlers and types.

mod answers;
mod auth;
mod change_email;
mod change_password;
mod create;
mod delete_account;
mod health;
mod jwks;
mod logout;
mod me;
mod openapi;
mod password_reset;
mod password_reset_confirm;
mod resend_otp;
mod sessions;
mod sign_in;
mod token;
mod token_refresh;
mod token_verify;
mod validate_otp;

pub use openapi::ApiDoc;

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{Resource, Route, web};

use crate::ApiError;

/// One resource: its path (as documented, with the tutorial's trailing slash), whether
/// it counts requests per client address, and its routes.
pub(crate) struct Endpoint {
    pub path: &'static str,
    pub limited: bool,
    pub routes: Vec<(Method, Route)>,
}

fn endpoint(path: &'static str, limited: bool, routes: Vec<(Method, Route)>) -> Endpoint {
    Endpoint {
        path,
        limited,
        routes,
    }
}

/// Every route of the service. `register` serves exactly these, and a test checks
/// that the OpenAPI document has exactly these operations.
pub(crate) fn endpoints() -> Vec<Endpoint> {
    let post = |r| (Method::POST, r);
    let get = |r| (Method::GET, r);
    vec![
        endpoint(
            "/api/accounts/create/",
            true,
            vec![post(web::post().to(create::handle))],
        ),
        endpoint(
            "/api/accounts/validate-otp/",
            true,
            vec![post(web::post().to(validate_otp::handle))],
        ),
        endpoint(
            "/api/accounts/resend-otp/",
            true,
            vec![
                (Method::PATCH, web::patch().to(resend_otp::handle)),
                post(web::post().to(resend_otp::handle_post)),
            ],
        ),
        endpoint(
            "/api/accounts/token/",
            true,
            vec![post(web::post().to(token::handle))],
        ),
        endpoint(
            "/api/accounts/token/refresh/",
            true,
            vec![post(web::post().to(token_refresh::handle))],
        ),
        endpoint(
            "/api/accounts/token/verify/",
            true,
            vec![post(web::post().to(token_verify::handle))],
        ),
        endpoint(
            "/api/accounts/password-reset/",
            true,
            vec![post(web::post().to(password_reset::handle))],
        ),
        endpoint(
            "/api/accounts/password-reset/confirm/",
            true,
            vec![post(web::post().to(password_reset_confirm::handle))],
        ),
        endpoint(
            "/api/accounts/logout/",
            true,
            vec![post(web::post().to(logout::handle))],
        ),
        endpoint(
            "/api/accounts/change-password/",
            true,
            vec![post(web::post().to(change_password::handle))],
        ),
        endpoint(
            "/api/accounts/sign-in/code/",
            true,
            vec![post(web::post().to(sign_in::request_code))],
        ),
        endpoint(
            "/api/accounts/sign-in/",
            true,
            vec![post(web::post().to(sign_in::sign_in))],
        ),
        endpoint(
            "/api/accounts/change-email/",
            true,
            vec![post(web::post().to(change_email::request))],
        ),
        endpoint(
            "/api/accounts/change-email/confirm/",
            true,
            vec![post(web::post().to(change_email::confirm))],
        ),
        endpoint(
            "/api/accounts/sessions/",
            false,
            vec![get(web::get().to(sessions::list))],
        ),
        endpoint(
            "/api/accounts/sessions/end-others/",
            true,
            vec![post(web::post().to(sessions::end_others))],
        ),
        endpoint(
            "/api/accounts/sessions/{id}/",
            true,
            vec![(Method::DELETE, web::delete().to(sessions::end))],
        ),
        endpoint(
            "/api/accounts/delete/",
            true,
            vec![post(web::post().to(delete_account::handle))],
        ),
        endpoint(
            "/api/accounts/me/",
            false,
            vec![get(web::get().to(me::handle))],
        ),
        endpoint(
            "/.well-known/jwks.json",
            false,
            vec![get(web::get().to(jwks::handle))],
        ),
        endpoint(
            "/health/live",
            false,
            vec![get(web::get().to(health::live))],
        ),
        endpoint(
            "/health/ready",
            false,
            vec![get(web::get().to(health::ready))],
        ),
        endpoint(
            "/api/openapi.json",
            false,
            vec![get(web::get().to(openapi::document))],
        ),
    ]
}

pub(crate) fn register(cfg: &mut web::ServiceConfig) {
    for endpoint in endpoints() {
        // Served without the trailing slash: `NormalizePath` trims it from requests.
        let path = endpoint.path.trim_end_matches('/');
        let mut resource = resource(path);
        for (_, route) in endpoint.routes {
            resource = resource.route(route);
        }
        if endpoint.limited {
            // Unauthenticated (and password-checking) endpoints count requests per client.
            cfg.service(resource.wrap(from_fn(crate::client::limit_clients)));
        } else {
            cfg.service(resource);
        }
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_route_is_documented_and_every_documented_operation_is_served() {
        let served: BTreeSet<(String, String)> = endpoints()
            .into_iter()
            .flat_map(|e| {
                e.routes
                    .into_iter()
                    .map(move |(method, _)| (method.as_str().to_lowercase(), e.path.to_owned()))
            })
            .collect();
        let doc = openapi::document_value();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                    documented.insert((method.clone(), path.clone()));
                }
            }
        }
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "routes without an operation: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "operations without a route: {unserved:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_bearer_security_and_retry_after() {
        let doc = openapi::document_value();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status == "429" || (status == "503" && path.starts_with("/api/")) {
                        assert!(
                            response["headers"]["Retry-After"].is_object(),
                            "{method} {path} {status} documents Retry-After"
                        );
                    }
                }
            }
        }
    }
}
