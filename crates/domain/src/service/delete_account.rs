//! Delete the account: the signed-in user confirms with the password; everything
//! personal is erased in one transaction, and the address gets a last message.

use chrono::{DateTime, Utc};

use crate::ports::{AccountChange, Mail, Spend};
use crate::service::AuthService;
use crate::service::authenticate::AuthenticateError;
use crate::{AuditEvent, AuditKind, EmailAddress, InfraError, Password, RequestContext, User};

/// How the owner confirms a deletion.
#[derive(Debug)]
pub enum DeleteConfirmation {
    Password(Password),
    /// A fresh `sign_in` code, for an account without a password.
    Code {
        code: crate::OtpCode,
        /// The client's address key (IPv4 address or IPv6 /64, as the HTTP adapter computes it).
        client: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteAccountError {
    #[error("Given token not valid for any token type")]
    InvalidToken,
    #[error("Your password was entered incorrectly.")]
    WrongPassword,
    /// An account without a password confirms with a fresh sign-in code instead:
    /// missing, wrong, expired or spent.
    #[error("Invalid or expired OTP.")]
    InvalidCode,
    /// The account's budget of wrong passwords is spent.
    #[error(transparent)]
    Throttled(#[from] crate::service::Throttled),
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

hash_error_into!(DeleteAccountError);
code_error_into!(DeleteAccountError);

impl From<AuthenticateError> for DeleteAccountError {
    fn from(error: AuthenticateError) -> Self {
        match error {
            AuthenticateError::InvalidToken => Self::InvalidToken,
            AuthenticateError::Infra(e) => Self::Infra(e),
        }
    }
}

impl AuthService {
    /// Deletes the account behind `access_token`, confirmed with its password, or for
    /// an account without one (signed in by code only) with a fresh sign-in code
    /// (`confirmation`). Wrong passwords count against the account's budget, as on
    /// change-password; codes against the address's guessing budget.
    pub async fn delete_account(
        &self,
        access_token: &str,
        confirmation: DeleteConfirmation,
        context: &RequestContext,
    ) -> Result<(), DeleteAccountError> {
        let user = self.current_user(access_token).await?;
        let password = match confirmation {
            DeleteConfirmation::Password(password) if user.password_hash.is_set() => password,
            DeleteConfirmation::Password(_) => return Err(DeleteAccountError::InvalidCode),
            DeleteConfirmation::Code { code, client } => {
                if user.password_hash.is_set() {
                    return Err(DeleteAccountError::WrongPassword);
                }
                let matched = self
                    .match_code(&user.email, &code, crate::OtpPurpose::SignIn, &client)
                    .await?;
                // The code spent and the account erased in one transaction: a
                // failure cannot spend the code alone.
                let now = self.ports.clock.now();
                let (audit, goodbye) = Self::erasure(&user, now, context);
                let spend = Spend {
                    account: Some(AccountChange::Delete {
                        user: user.id,
                        email: &user.email,
                        goodbye: &goodbye,
                        audit: &audit,
                    }),
                    ..self.spending(&matched, now)
                };
                if !self.ports.otps.consume(&spend).await? {
                    return Err(DeleteAccountError::InvalidCode);
                }
                return Ok(());
            }
        };
        // The budget is not given back: erasing the account erases its row.
        let Some(reserved) = self
            .check_account_password::<DeleteAccountError>(&user, &password)
            .await?
        else {
            return Err(DeleteAccountError::WrongPassword);
        };
        // Already gone (a concurrent delete) is the outcome the caller asked for. The
        // erasure deletes the budget's row; failed, it leaves the row with the try.
        let erased = self.erase(&user, context).await;
        self.give_back_on_failure(&reserved, erased).await?;
        Ok(())
    }

    /// Deletes the account of `email` (operators: `passcode users delete`). `false` if
    /// there is none.
    pub async fn delete_account_of(&self, email: &EmailAddress) -> Result<bool, InfraError> {
        let Some(user) = self.ports.users.find_by_email(email).await? else {
            return Ok(false);
        };
        self.erase(&user, &RequestContext::default()).await
    }

    async fn erase(&self, user: &User, context: &RequestContext) -> Result<bool, InfraError> {
        let now = self.ports.clock.now();
        let (audit, goodbye) = Self::erasure(user, now, context);
        self.ports
            .users
            .delete(user.id, &user.email, &goodbye, now, &audit)
            .await
    }

    /// The audit event of erasing `user` at `now`, and the last message its address gets.
    fn erasure(user: &User, now: DateTime<Utc>, context: &RequestContext) -> (AuditEvent, Mail) {
        // Kept: the account id, never the address.
        let audit = AuditEvent::new(AuditKind::AccountDeleted, now, Some(user.id), None, context);
        let goodbye = Mail::AccountDeleted {
            to: user.email.clone(),
            full_name: user.full_name.as_str().to_owned(),
        };
        (audit, goodbye)
    }
}
