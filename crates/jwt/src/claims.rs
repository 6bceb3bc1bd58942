//! The JWT claim set of API.md: `sub`, `email`, `email_verified`, `iat`, `nbf`, `exp`,
//! `jti`, `iss`, `aud`, `token_type`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    pub token_type: String,
}
