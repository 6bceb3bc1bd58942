//! Password hashing: slow on purpose, so the adapter bounds how much runs at once.

use async_trait::async_trait;

use crate::{Password, PasswordHash};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes are queued; the caller should shed the request (503).
    #[error("password hashing is overloaded")]
    Busy,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

/// CPU-bound work on a new password (its strength estimate): `Some(reason)` refuses it.
pub type PasswordCheck = Box<dyn FnOnce() -> Option<String> + Send>;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A new salted hash of `password`. `HashError::Busy` when the queue is full.
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;

    /// Whether `password` matches `hash`. With `hash: None` it checks against a dummy
    /// hash and returns `false`, spending the same time, so a login for an unknown
    /// address cannot be told apart by timing. A malformed stored hash is `Unexpected`.
    async fn verify(
        &self,
        password: &Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, HashError>;

    /// Runs `check` where hashes run, under the same bound (`Busy` when the queue is
    /// full): the strength estimate of a crafted password can cost more than a hash,
    /// and must not hold a request thread meanwhile. By default it runs in place.
    async fn check(&self, check: PasswordCheck) -> Result<Option<String>, HashError> {
        Ok(check())
    }
}
