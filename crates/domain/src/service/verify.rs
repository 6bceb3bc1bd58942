//! Verify: check a code for an address, consume it exactly once, hand out tokens.

use crate::service::{AuthService, Throttled};
use crate::{EmailAddress, InfraError, OtpCode, OtpPurpose, TokenPair, User};

#[derive(Debug)]
pub struct VerifyInput {
    pub email: EmailAddress,
    /// As typed by the user; redacted in `Debug`.
    pub code: OtpCode,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyOtpError {
    /// Wrong, expired, spent, out of tries, or no such address: one answer for all.
    #[error("Invalid or expired OTP.")]
    Invalid,
    /// The address's guessing budget is spent (the same for unknown addresses).
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl AuthService {
    /// Verifies the address with its `verify_email` code and returns the first token pair.
    pub async fn verify_email(
        &self,
        input: VerifyInput,
    ) -> Result<(User, TokenPair), VerifyOtpError> {
        let now = self.ports.clock.now();
        self.check_code(&input.email, &input.code, OtpPurpose::VerifyEmail)
            .await?;
        let Some(mut user) = self.ports.users.find_by_email(&input.email).await? else {
            return Err(VerifyOtpError::Invalid);
        };
        self.ports.users.mark_email_verified(user.id, now).await?;
        user.email_verified = true;
        let tokens = self.start_session(&user).await?;
        Ok((user, tokens))
    }

    /// Checks `code` for (email, purpose) and consumes it, within the address's
    /// guessing budget: a try is reserved from the budget first (atomically, so
    /// concurrent guesses cannot overrun it) and given back only if the code was right.
    pub(crate) async fn check_code(
        &self,
        email: &EmailAddress,
        code: &OtpCode,
        purpose: OtpPurpose,
    ) -> Result<(), VerifyOtpError> {
        let bucket = format!("guess:{email}");
        self.admit(&bucket, self.settings.limits.guesses).await??;
        let outcome = self.check_code_once(email, code, purpose).await;
        if outcome.is_ok() {
            self.ports.throttle.release(&bucket).await?;
        }
        outcome
    }

    /// Checks `code` for (email, purpose) and consumes it. A wrong code counts a try
    /// on the code. `Ok` for exactly one caller per code.
    async fn check_code_once(
        &self,
        email: &EmailAddress,
        code: &OtpCode,
        purpose: OtpPurpose,
    ) -> Result<(), VerifyOtpError> {
        let now = self.ports.clock.now();
        let max_attempts = self.settings.otp.max_attempts;
        let digits = code.expose();
        let well_formed = digits.len() == usize::from(self.settings.otp.length)
            && digits.bytes().all(|b| b.is_ascii_digit());
        // Hash even a malformed or unknown-address code: the work done is the same.
        let candidate = self.otp_hasher.hash(email, purpose, code);
        let Some(stored) = self.ports.otps.find(email, purpose).await? else {
            return Err(VerifyOtpError::Invalid);
        };
        if !stored.is_open(now, max_attempts) || !well_formed {
            return Err(VerifyOtpError::Invalid);
        }
        if !stored.code_hash.matches(&candidate) {
            self.ports
                .otps
                .record_failed_attempt(stored.id, max_attempts)
                .await?;
            return Err(VerifyOtpError::Invalid);
        }
        if self
            .ports
            .otps
            .consume(stored.id, &candidate, now, max_attempts)
            .await?
        {
            Ok(())
        } else {
            // A concurrent request consumed it, or the last try was spent meanwhile.
            Err(VerifyOtpError::Invalid)
        }
    }
}
