//! Outgoing mail: the domain says what to tell whom; the adapter renders and delivers.

use async_trait::async_trait;
use chrono::Duration;

use crate::{EmailAddress, OtpCode, OtpPurpose};

/// A message the domain wants delivered.
#[derive(Debug, Clone)]
pub enum Mail {
    /// A one-time code for `purpose`, valid for `valid_for`.
    Code {
        to: EmailAddress,
        full_name: String,
        code: OtpCode,
        purpose: OtpPurpose,
        valid_for: Duration,
    },
    /// "Someone tried to register with your address": sent instead of a code when
    /// the address already has a verified account.
    RegistrationAttempt { to: EmailAddress, full_name: String },
    /// "Your password was changed": after a reset or a change.
    PasswordChanged { to: EmailAddress, full_name: String },
    /// "Your account was deleted": the last message to the address.
    AccountDeleted { to: EmailAddress, full_name: String },
    /// To the old address: a move to another address was asked (no code).
    EmailChangeRequested { to: EmailAddress, full_name: String },
    /// To the old address: the account now has another address.
    EmailChanged { to: EmailAddress, full_name: String },
}

impl Mail {
    pub fn recipient(&self) -> &EmailAddress {
        match self {
            Self::Code { to, .. }
            | Self::RegistrationAttempt { to, .. }
            | Self::PasswordChanged { to, .. }
            | Self::AccountDeleted { to, .. }
            | Self::EmailChangeRequested { to, .. }
            | Self::EmailChanged { to, .. } => to,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Worth retrying: the server is down, timed out, or answered 4xx.
    #[error("mail delivery failed for now: {0:#}")]
    Transient(#[source] anyhow::Error),
    /// Retrying will not help: the server answered 5xx (bad address, refused, bad credentials).
    #[error("mail delivery failed for good: {0:#}")]
    Permanent(#[source] anyhow::Error),
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Hands `mail` to the transport now (the outbox worker calls this, never a
    /// request). `Ok` once the transport accepted it; otherwise nothing was sent, and
    /// the error says whether retrying can help. `id` names the message, the same on
    /// every attempt: a receiver may use it to drop a duplicate delivery.
    async fn send(&self, id: uuid::Uuid, mail: &Mail) -> Result<(), MailError>;
}
