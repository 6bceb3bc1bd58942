//! Resend: a new verification code for an address still waiting for one.

use crate::service::{AuthService, Throttled};
use crate::{EmailAddress, InfraError, OtpPurpose};

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    /// The address's cooldown or hourly cap, counted for any address alike.
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl AuthService {
    /// Mails a new code (invalidating the previous one) if the address has an
    /// unverified account; does nothing otherwise. The caller answers the same either way.
    pub async fn resend_verification(&self, email: &EmailAddress) -> Result<(), ResendError> {
        self.admit_send(email, OtpPurpose::VerifyEmail).await??;
        match self.ports.users.find_by_email(email).await? {
            Some(user) if !user.email_verified && user.is_active => {
                Ok(self.send_code(&user, OtpPurpose::VerifyEmail).await?)
            }
            _ => Ok(()),
        }
    }
}
