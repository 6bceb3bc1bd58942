//! Password reset by code: ask for a `reset_password` code by mail, then confirm it
//! with a new password. The same code rules, budgets and answers as verification.

use crate::ports::{AccountChange, GiveBack, Mail, PasswordSet, Spend};
use crate::service::{AuthService, Throttled};
use crate::{EmailAddress, InfraError, OtpCode, OtpPurpose, Password, RequestContext};

#[derive(Debug)]
pub struct ResetInput {
    pub email: EmailAddress,
    pub code: OtpCode,
    pub new_password: Password,
    /// The client's address key (IPv4 address or IPv6 /64, as the HTTP adapter computes it).
    pub client: String,
    pub context: RequestContext,
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Wrong, expired, spent or unknown-address code: the one answer of validate-otp.
    #[error("Invalid or expired OTP.")]
    InvalidCode,
    #[error("{0}")]
    WeakPassword(String),
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

hash_error_into!(ResetError);

code_error_into!(ResetError);

impl AuthService {
    /// Mails a reset code if the address has an active account; otherwise does the
    /// same database work with nothing usable left behind, so that the time taken says
    /// nothing. Throttled per address alike for every address.
    pub async fn request_password_reset(
        &self,
        email: &EmailAddress,
    ) -> Result<Result<(), Throttled>, InfraError> {
        let purpose = OtpPurpose::ResetPassword;
        if let Some(throttled) = self.send_refused(email, purpose) {
            return Ok(Err(throttled));
        }
        match self.ports.users.find_by_email(email).await? {
            Some(user) if user.is_active => self.send_code(&user, purpose).await,
            _ => self.issue(email, purpose, None, GiveBack::NONE, None).await,
        }
    }

    /// Sets a new password with a reset code. Marks the address verified (the code
    /// proved it), refuses every token issued before, and mails a notice.
    pub async fn confirm_password_reset(&self, input: ResetInput) -> Result<(), ResetError> {
        if let Some(problem) = self
            .weak_password(&input.new_password, &[input.email.as_str()])
            .await?
        {
            return Err(ResetError::WeakPassword(problem));
        }
        // Hash before the code is spent: a busy hasher must not cost the user the code.
        let hash = self.ports.passwords.hash(&input.new_password).await?;
        let matched = self
            .match_code(
                &input.email,
                &input.code,
                OtpPurpose::ResetPassword,
                &input.client,
            )
            .await?;
        let user = match self.ports.users.find_by_email(&input.email).await? {
            Some(user) if user.is_active => user,
            _ => return Err(ResetError::InvalidCode),
        };
        let now = self.ports.clock.now();
        // The code proved the mailbox: the address is verified, and any registration
        // still waiting for its code is void (their codes are deleted).
        let audit = self.audit_event(
            crate::AuditKind::PasswordReset,
            Some(&user),
            &user.email,
            &input.context,
        );
        let notice = Self::password_changed_notice(&user);
        // The code spent and the password set in one transaction: a failure cannot
        // spend the code without setting the password.
        let spend = Spend {
            account: Some(AccountChange::Password(PasswordSet {
                user: user.id,
                hash: &hash,
                verify_email: true,
                audit: &audit,
                notice: Some(&notice),
            })),
            ..self.spending(&matched, now)
        };
        if !self.ports.otps.consume(&spend).await? {
            return Err(ResetError::InvalidCode);
        }
        Ok(())
    }

    /// The mail that tells the owner their password changed, queued with the change.
    pub(crate) fn password_changed_notice(user: &crate::User) -> Mail {
        Mail::PasswordChanged {
            to: user.email.clone(),
            full_name: user.full_name.as_str().to_owned(),
        }
    }
}
