//! Resend: a new verification code for an address still waiting for one.

use crate::ports::GiveBack;
use crate::service::{AuthService, Throttled};
use crate::{EmailAddress, InfraError, OtpPurpose, Registration};

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    /// The address's cooldown or hourly cap, counted for any address alike.
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl AuthService {
    /// Mails a new code if the address has an unverified, active account, replacing
    /// its earlier codes; the new code carries the newest registration (name and
    /// password), as the code it replaces did. For any other address it does the same
    /// database work with nothing usable left behind. The caller answers the same either way.
    pub async fn resend_verification(&self, email: &EmailAddress) -> Result<(), ResendError> {
        let purpose = OtpPurpose::VerifyEmail;
        if let Some(throttled) = self.send_refused(email, purpose) {
            return Err(throttled.into());
        }
        let user = self.ports.users.find_by_email(email).await?;
        // Read for every address alike: the time taken must not depend on the answer.
        let newest = self.ports.otps.find(email, OtpPurpose::VerifyEmail).await?;
        match user {
            Some(user) if !user.email_verified && user.is_active => {
                let registration =
                    newest
                        .and_then(|otp| otp.registration)
                        .unwrap_or_else(|| Registration {
                            full_name: user.full_name.clone(),
                            password_hash: user.password_hash.clone(),
                        });
                let code = self.new_code(
                    &user.email,
                    &registration.full_name,
                    purpose,
                    Some(registration.clone()),
                );
                Ok(self
                    .issue(&user.email, purpose, Some(code), GiveBack::NONE, None)
                    .await??)
            }
            _ => Ok(self
                .issue(email, purpose, None, GiveBack::NONE, None)
                .await??),
        }
    }
}
