//! GET /.well-known/jwks.json: the public keys that verify passcode's tokens.

use actix_web::{HttpResponse, web};

use crate::HttpState;
use crate::types::JwksResponse;

/// The public keys (JWKS) that verify passcode's tokens; empty with HS256.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", operation_id = "jwks", tag = "tokens",
    responses((status = 200, description = "Every public key, each with its `kid` and `alg`", body = JwksResponse))
)]
pub(crate) async fn handle(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.jwks.as_ref())
}
