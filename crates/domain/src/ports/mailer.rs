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
}

impl Mail {
    pub fn recipient(&self) -> &EmailAddress {
        match self {
            Self::Code { to, .. } | Self::RegistrationAttempt { to, .. } => to,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message was not accepted for delivery (server down, refused, timed out).
    #[error("mail could not be delivered")]
    Delivery(#[source] anyhow::Error),
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Hands `mail` to the transport. Returns `Ok` once the transport accepted it;
    /// `MailError::Delivery` if it did not, in which case nothing was sent.
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
}
