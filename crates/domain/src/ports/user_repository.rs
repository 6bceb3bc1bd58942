//! Storage of user accounts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::otp::NewOtp;
use crate::ports::{GiveBack, Mail};
use crate::{AuditEvent, EmailAddress, InfraError, NewUser, PasswordHash, User, UserId};

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// An account with this (normalised) email already exists.
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// A new account's first code, stored with it (`UserRepository::create`): the code,
/// the mail that carries it (queued), and the audit event of the registration.
#[derive(Debug, Clone)]
pub struct FirstCode {
    pub otp: NewOtp,
    pub mail: Mail,
    pub audit: AuditEvent,
}

/// An account's move to a new address, made by spending a code sent to it
/// ([`crate::ports::AccountChange::Email`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChange {
    pub user: UserId,
    pub old: EmailAddress,
    pub new: EmailAddress,
    /// The session that confirmed the change; every other one ends.
    pub keep_session: uuid::Uuid,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Inserts `user` and, if given, its first code in the same transaction (one
    /// commit for a registration): the work of [`OtpStore::add`]. Returns
    /// `CreateUserError::EmailTaken`, with nothing written, if the email is taken, also
    /// when a concurrent insert of the same email won the race.
    ///
    /// [`OtpStore::add`]: crate::ports::OtpStore::add
    async fn create<'a>(
        &self,
        user: &NewUser,
        first_code: Option<&'a FirstCode>,
    ) -> Result<User, CreateUserError>;

    /// The account with this email, if any.
    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<User>, InfraError>;

    /// The account with this id, if any.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, InfraError>;

    /// Marks the account's email verified. Idempotent; unknown ids are ignored.
    async fn mark_email_verified(&self, id: UserId, at: DateTime<Utc>) -> Result<(), InfraError>;

    /// Activates or deactivates the account, recording `audit` with it. Unknown ids are ignored.
    async fn set_active(
        &self,
        id: UserId,
        active: bool,
        at: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), InfraError>;

    /// Erases account `id` (of address `email`) and everything personal of it, in one
    /// transaction: its sessions, codes, queued mail, the limit state keyed by the
    /// address; audit events keep their account id but lose the address. Then records
    /// `audit` and queues `goodbye` (the one message the address still gets). `false`
    /// (and nothing changed) if there is no such account.
    async fn delete(
        &self,
        id: UserId,
        email: &EmailAddress,
        goodbye: &crate::ports::Mail,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<bool, InfraError>;

    /// Replaces the password hash, marks the email verified if `verify_email` (voiding
    /// registrations still waiting for their code), refuses every token issued before
    /// `at` and ends every session, records `audit`, queues `notice` and gives
    /// `give_back`'s keys one event each back, in one transaction: a crash
    /// keeps all of it or none. Unknown ids are ignored.
    #[allow(clippy::too_many_arguments)] // the account, the change, its event, notice and give-back
    async fn set_password<'a>(
        &self,
        id: UserId,
        hash: &PasswordHash,
        verify_email: bool,
        at: DateTime<Utc>,
        audit: &AuditEvent,
        notice: Option<&'a crate::ports::Mail>,
        give_back: GiveBack<'a>,
    ) -> Result<(), InfraError>;
}
