//! Storage of one-time codes. The atomic methods are what make "single use" and
//! "at most N wrong tries" hold under concurrency, across instances.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::otp::{NewOtp, StoredOtp};
use crate::ports::Mail;
use crate::{CodeHash, EmailAddress, InfraError, OtpPurpose};

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OtpStore: Send + Sync {
    /// Stores `otp` as the only code for its (email, purpose), replacing any previous
    /// one (which is thereby invalidated), and queues `mail` (which carries the code)
    /// in the outbox, expiring with the code: both or neither, in one transaction.
    /// Errors only on infrastructure failure.
    async fn replace(&self, otp: &NewOtp, mail: &Mail) -> Result<(), InfraError>;

    /// The current code for (email, purpose), spent or expired ones included; `None` if there is none.
    async fn find(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
    ) -> Result<Option<StoredOtp>, InfraError>;

    /// Marks code `id` spent, in one atomic conditional step, if and only if it still
    /// has `code_hash`, is unspent, unexpired at `now` and has fewer than `max_attempts`
    /// wrong tries. Returns `true` to exactly one of any number of concurrent callers.
    async fn consume(
        &self,
        id: Uuid,
        code_hash: &CodeHash,
        now: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<bool, InfraError>;

    /// Counts one wrong try on code `id`, atomically, unless it already has
    /// `max_attempts` or is spent. Returns the new count, or `None` if nothing was counted.
    async fn record_failed_attempt(
        &self,
        id: Uuid,
        max_attempts: u32,
    ) -> Result<Option<u32>, InfraError>;
}
