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
        // Both read for every address alike, so that the time taken does not depend on
        // the answer; at once, as neither needs the other's: one round trip's wait.
        let (user, newest) = futures_util::future::join(
            self.ports.users.find_by_email(email),
            self.ports.otps.find(email, OtpPurpose::VerifyEmail),
        )
        .await;
        let (user, newest) = (user?, newest?);
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
