//! Authenticate: an access token to the account it was issued for (`me`, `token/verify`).

use crate::service::AuthService;
use crate::{InfraError, TokenClaims, TokenError, TokenKind, User};

#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    #[error("Given token not valid for any token type")]
    InvalidToken,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl From<TokenError> for AuthenticateError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Invalid => Self::InvalidToken,
            TokenError::Unexpected(e) => Self::Infra(InfraError::Unexpected(e)),
        }
    }
}

impl AuthService {
    /// Checks an access token without touching storage.
    pub fn check_access_token(&self, token: &str) -> Result<TokenClaims, AuthenticateError> {
        Ok(self
            .ports
            .tokens
            .verify(token, TokenKind::Access, self.ports.clock.now())?)
    }

    /// The active account behind a valid access token.
    pub async fn current_user(&self, token: &str) -> Result<User, AuthenticateError> {
        let claims = self.check_access_token(token)?;
        match self.ports.users.find_by_id(claims.user_id).await? {
            Some(user) if user.accepts_token_issued_at(claims.issued_at) => Ok(user),
            _ => Err(AuthenticateError::InvalidToken),
        }
    }
}
