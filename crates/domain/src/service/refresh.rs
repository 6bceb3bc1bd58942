//! Refresh: a valid refresh token for a new pair, with the account's current facts.

use crate::service::AuthService;
use crate::service::register::subject_of;
use crate::{InfraError, TokenError, TokenKind, TokenPair};

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Malformed, expired, not a refresh token, or the account is gone or inactive.
    #[error("Token is invalid or expired")]
    InvalidToken,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl From<TokenError> for RefreshError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Invalid => Self::InvalidToken,
            TokenError::Unexpected(e) => Self::Infra(InfraError::Unexpected(e)),
        }
    }
}

impl AuthService {
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        let now = self.ports.clock.now();
        let claims = self
            .ports
            .tokens
            .verify(refresh_token, TokenKind::Refresh, now)?;
        match self.ports.users.find_by_id(claims.user_id).await? {
            Some(user) if user.accepts_token_issued_at(claims.issued_at) => {
                Ok(self.ports.tokens.issue(&subject_of(&user), now)?)
            }
            _ => Err(RefreshError::InvalidToken),
        }
    }
}
