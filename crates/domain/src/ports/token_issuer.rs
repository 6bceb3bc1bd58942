//! Signing and checking tokens.

use chrono::{DateTime, Utc};

use crate::ports::TokenIds;
use crate::{InfraError, TokenClaims, TokenError, TokenKind, TokenPair, TokenSubject};

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenIssuer: Send + Sync {
    /// Signs an access and a refresh token for `subject` with the ids and issue time
    /// of `ids`. Deterministic: the same inputs give the same tokens.
    fn issue(&self, subject: &TokenSubject, ids: &TokenIds) -> Result<TokenPair, InfraError>;

    /// When a refresh token issued at `issued_at` expires.
    fn refresh_expiry(&self, issued_at: DateTime<Utc>) -> DateTime<Utc>;

    /// Checks signature, algorithm, issuer, audience, expiry (at `now`) and that the
    /// token is of `kind`. Any failure is `TokenError::Invalid`.
    fn verify(
        &self,
        token: &str,
        kind: TokenKind,
        now: DateTime<Utc>,
    ) -> Result<TokenClaims, TokenError>;

    /// Every check of [`verify`](Self::verify) but the signature's. Only for a token
    /// that is trusted once a store vouches for it by the hash of its exact text (a
    /// refresh token that rotation spends); anything else checks the signature.
    fn read_unverified(
        &self,
        token: &str,
        kind: TokenKind,
        now: DateTime<Utc>,
    ) -> Result<TokenClaims, TokenError>;
}
