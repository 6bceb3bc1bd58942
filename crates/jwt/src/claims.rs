//! The JWT claim set of API.md: `sub`, `email`, `email_verified`, `iat`, `nbf`, `exp`,
//! `jti`, `iss`, `aud`, `token_type`, and `sid`, the session.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub iat: i64,
    /// `iat` in milliseconds: sessions can be cut off precisely (a password change
    /// refuses tokens issued earlier in the same second). Absent in foreign tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    /// The session (refresh-token family) the token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    pub token_type: String,
}
