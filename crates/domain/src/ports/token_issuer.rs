//! Signing and checking tokens.

use chrono::{DateTime, Utc};

use crate::{InfraError, TokenClaims, TokenError, TokenKind, TokenPair, TokenSubject};

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenIssuer: Send + Sync {
    /// Signs a new access and refresh token for `subject`, issued at `now`.
    fn issue(&self, subject: &TokenSubject, now: DateTime<Utc>) -> Result<TokenPair, InfraError>;

    /// Checks signature, algorithm, issuer, audience, expiry (at `now`) and that the
    /// token is of `kind`. Any failure is `TokenError::Invalid`.
    fn verify(
        &self,
        token: &str,
        kind: TokenKind,
        now: DateTime<Utc>,
    ) -> Result<TokenClaims, TokenError>;
}
