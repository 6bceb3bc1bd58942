//! Changing the address: the signed-in user asks with the password; a code goes to
//! the new address and a notice (no code) to the old one; confirming with the code
//! moves the account atomically, ends every other session and tells the old address.
//! Whether the new address has an account is never revealed.

use crate::ports::{AccountChange, EmailChange, Mail, Spend};
use crate::service::authenticate::AuthenticateError;
use crate::service::{AuthService, Throttled};
use crate::{
    AuditKind, EmailAddress, InfraError, OtpCode, OtpPurpose, Password, RequestContext, User,
};

#[derive(Debug, thiserror::Error)]
pub enum ChangeEmailError {
    #[error("Given token not valid for any token type")]
    InvalidToken,
    #[error("Your password was entered incorrectly.")]
    WrongPassword,
    /// Wrong, expired or spent code, a code for another account, or the new address
    /// taken meanwhile: one answer.
    #[error("Invalid or expired OTP.")]
    InvalidCode,
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

hash_error_into!(ChangeEmailError);

impl From<AuthenticateError> for ChangeEmailError {
    fn from(error: AuthenticateError) -> Self {
        match error {
            AuthenticateError::InvalidToken => Self::InvalidToken,
            AuthenticateError::Infra(e) => Self::Infra(e),
        }
    }
}

code_error_into!(ChangeEmailError);

impl AuthService {
    /// Asks to move the caller's account to `new_email`, confirmed with the password.
    /// The old address gets a notice; the new one a code, unless it has an account (or
    /// is the same), in which case the same work is done and nothing is sent to it.
    pub async fn request_email_change(
        &self,
        access_token: &str,
        new_email: &EmailAddress,
        password: &Password,
    ) -> Result<(), ChangeEmailError> {
        let user = self.current_user(access_token).await?;
        let Some(reserved) = self
            .check_account_password::<ChangeEmailError>(&user, password)
            .await?
        else {
            return Err(ChangeEmailError::WrongPassword);
        };
        let sent = self
            .send_change_code(&user, new_email, reserved.as_give_back())
            .await;
        if let Err(throttled) = self.give_back_on_failure(&reserved, sent).await? {
            // Refused before any write, or by it: the try is still to give back.
            self.give_back(&reserved).await?;
            return Err(throttled.into());
        }
        // The request itself changes nothing: the audit trail records the move.
        Ok(())
    }

    /// The change's code to `new_email` (or, if the address is taken, its decoy) and
    /// the notice to the old address, in one write with the send counted and
    /// `give_back` given back; unless the send limit refuses.
    async fn send_change_code(
        &self,
        user: &User,
        new_email: &EmailAddress,
        give_back: crate::ports::GiveBack<'_>,
    ) -> Result<Result<(), Throttled>, InfraError> {
        let purpose = OtpPurpose::ChangeEmail;
        if let Some(throttled) = self.send_refused(new_email, purpose) {
            return Ok(Err(throttled));
        }
        let notice = Mail::EmailChangeRequested {
            to: user.email.clone(),
            full_name: user.full_name.as_str().to_owned(),
        };
        let taken =
            *new_email == user.email || self.ports.users.find_by_email(new_email).await?.is_some();
        let code = (!taken).then(|| {
            let (mut otp, mail) = self.new_code(new_email, &user.full_name, purpose, None);
            otp.account = Some(user.id);
            (otp, mail)
        });
        self.issue(new_email, purpose, code, give_back, Some(&notice))
            .await
    }

    /// Confirms the move with the code mailed to `new_email`: the account moves (if
    /// the address is still free), every other session ends, the old address is told.
    pub async fn confirm_email_change(
        &self,
        access_token: &str,
        new_email: &EmailAddress,
        code: &OtpCode,
        client: &str,
        context: &RequestContext,
    ) -> Result<(), ChangeEmailError> {
        let claims = self.check_access_token(access_token)?;
        let user = self.current_user(access_token).await?;
        let matched = self
            .match_code(new_email, code, OtpPurpose::ChangeEmail, client)
            .await?;
        let otp = &matched.otp;
        if otp.account != Some(user.id) {
            return Err(ChangeEmailError::InvalidCode);
        }
        let now = self.ports.clock.now();
        let change = EmailChange {
            user: user.id,
            old: user.email.clone(),
            new: new_email.clone(),
            keep_session: claims.session_id.unwrap_or(uuid::Uuid::nil()),
        };
        let notice = Mail::EmailChanged {
            to: user.email.clone(),
            full_name: user.full_name.as_str().to_owned(),
        };
        let audit = self.audit_event(AuditKind::EmailChanged, Some(&user), new_email, context);
        // The code spent and the account moved in one transaction: a failure cannot
        // spend the code alone, and a move refused (the address taken meanwhile, or
        // the account changed under us) leaves it unspent.
        let spend = Spend {
            account: Some(AccountChange::Email {
                change: &change,
                notice: &notice,
                audit: &audit,
            }),
            ..self.spending(&matched, now)
        };
        if !self.ports.otps.consume(&spend).await? {
            return Err(ChangeEmailError::InvalidCode);
        }
        Ok(())
    }
}
