//! Storage of one-time codes. The atomic methods are what make "single use" and
//! "at most N tries" hold under concurrency, across instances.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::otp::{NewOtp, Registration, StoredOtp};
use crate::ports::{Limit, Mail};

/// What counting a try led to.
#[derive(Debug, Clone)]
pub enum Tries {
    /// Counted: the open codes, each with this try counted.
    Counted(Vec<StoredOtp>),
    /// `budgets[budget]` is spent, free again after `retry_after`; nothing was counted.
    Refused {
        budget: usize,
        retry_after: chrono::Duration,
    },
}
use crate::{AuditEvent, CodeHash, EmailAddress, InfraError, OtpPurpose, UserId};

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OtpStore: Send + Sync {
    /// Stores `otp` as the only code for its (email, purpose), deleting every earlier
    /// one, and queues `mail` (which carries the code) in the outbox, expiring with the
    /// code: both or neither, in one transaction. Mail of the deleted codes that is
    /// still waiting is dropped (never sent). Errors only on infrastructure failure.
    async fn replace(&self, otp: &NewOtp, mail: &Mail) -> Result<(), InfraError>;

    /// Stores `otp` beside the address's other codes of its purpose (each registration
    /// keeps its own verification code), queues `mail` and records `audit`, in one
    /// transaction.
    async fn add(&self, otp: &NewOtp, mail: &Mail, audit: &AuditEvent) -> Result<(), InfraError>;

    /// The same database work as [`OtpStore::replace`] (a code row and an outbox row,
    /// in one transaction), leaving nothing usable: no code matches the row and the
    /// message is recorded as already expired, so nothing is sent. Lets an address with
    /// no account cost the same time as one with an account.
    async fn decoy(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError>;

    /// The newest code for (email, purpose), spent or expired ones included; `None` if
    /// there is none.
    async fn find(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
    ) -> Result<Option<StoredOtp>, InfraError>;

    /// Reserves one event from each of `budgets` (keys of the `Throttle` port's limits,
    /// in order) and counts one try on every code of (email, purpose) that is unspent,
    /// unexpired at `now` and has fewer than `max_attempts` tries, all in one
    /// transaction, and returns those codes with the try counted. A try is counted
    /// before any code is compared, so concurrent tries can never exceed `max_attempts`
    /// per code. When a budget refuses, nothing at all is counted ([`Tries::Refused`]).
    async fn count_try(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
        now: DateTime<Utc>,
        max_attempts: u32,
        budgets: &[(String, Limit)],
    ) -> Result<Tries, InfraError>;

    /// Marks code `id` spent, in one atomic conditional step, if and only if it still
    /// has `code_hash`, is unspent, unexpired at `now` and has at most `max_attempts`
    /// tries counted. Returns `true` to exactly one of any number of concurrent callers.
    async fn consume(
        &self,
        id: Uuid,
        code_hash: &CodeHash,
        now: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<bool, InfraError>;

    /// Spends registration code `id` (as [`OtpStore::consume`]) and, in the same
    /// transaction, puts `registration` into effect on account `user` (if it is
    /// active): its name and password hash, the address marked verified; the address's
    /// other verification codes are deleted and their waiting mail dropped; `audit` is
    /// recorded. `false` (and nothing changed) if the code was not spent here.
    #[allow(clippy::too_many_arguments)] // the code, the registration, the limits, the event
    async fn complete_registration(
        &self,
        id: Uuid,
        code_hash: &CodeHash,
        user: UserId,
        registration: &Registration,
        now: DateTime<Utc>,
        max_attempts: u32,
        audit: &AuditEvent,
    ) -> Result<bool, InfraError>;
}
