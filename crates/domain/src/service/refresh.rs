//! Refresh: a valid refresh token for a new pair, with the account's current facts.

use crate::{InfraError, TokenError};

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
