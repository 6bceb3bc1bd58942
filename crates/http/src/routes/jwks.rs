//! GET /.well-known/jwks.json: the public keys that verify passcode's tokens.

use actix_web::{HttpResponse, web};

use crate::HttpState;

pub(crate) async fn handle(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.jwks.as_ref())
}
