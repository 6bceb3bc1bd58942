//! What the domain knows of tokens: who they are for, the pair handed to clients,
//! and the claims a verified token carries. Encoding is the token adapter's business.

use chrono::{DateTime, Utc};
use std::fmt;

use crate::{EmailAddress, UserId};

/// Access tokens authorise API calls; refresh tokens only buy a new pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }
}

/// The user facts a token states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    pub user_id: UserId,
    pub email: EmailAddress,
    pub email_verified: bool,
}

/// A signed access and refresh token. Debug is redacted: tokens are bearer secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenPair([REDACTED])")
    }
}

/// The checked claims of a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub user_id: UserId,
    /// The account's address and its verification when the token was signed.
    pub email: EmailAddress,
    pub email_verified: bool,
    pub kind: TokenKind,
    pub jti: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The session (refresh-token family) of the token; `None` in tokens issued before
    /// tokens named their session.
    pub session_id: Option<uuid::Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, badly signed, expired, of the wrong kind, issuer or audience.
    #[error("token is invalid or expired")]
    Invalid,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}
