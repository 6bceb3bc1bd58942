//! Change password: the signed-in user proves the old password and sets a new one;
//! every token issued before is refused from then on.

use crate::service::AuthService;
use crate::service::authenticate::AuthenticateError;
use crate::{InfraError, Password};

#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    #[error("Given token not valid for any token type")]
    InvalidToken,
    #[error("Your old password was entered incorrectly.")]
    WrongOldPassword,
    /// The account's budget of wrong old passwords is spent.
    #[error(transparent)]
    Throttled(#[from] crate::service::Throttled),
    #[error("{0}")]
    WeakPassword(String),
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

hash_error_into!(ChangePasswordError);

impl From<AuthenticateError> for ChangePasswordError {
    fn from(error: AuthenticateError) -> Self {
        match error {
            AuthenticateError::InvalidToken => Self::InvalidToken,
            AuthenticateError::Infra(e) => Self::Infra(e),
        }
    }
}

impl AuthService {
    pub async fn change_password(
        &self,
        access_token: &str,
        old_password: &Password,
        new_password: &Password,
        context: &crate::RequestContext,
    ) -> Result<(), ChangePasswordError> {
        let user = self.current_user(access_token).await?;
        let inputs = [user.email.as_str(), user.full_name.as_str()];
        if let Some(problem) = self.weak_password(new_password, &inputs).await? {
            return Err(ChangePasswordError::WeakPassword(problem));
        }
        let Some(reserved) = self
            .check_account_password::<ChangePasswordError>(&user, old_password)
            .await?
        else {
            return Err(ChangePasswordError::WrongOldPassword);
        };
        let hash = match self.ports.passwords.hash(new_password).await {
            Ok(hash) => hash,
            Err(error) => {
                // Shed or failed: the old password was right, so its try goes back.
                self.give_back(&reserved).await?;
                return Err(error.into());
            }
        };
        let now = self.ports.clock.now();
        let audit = self.audit_event(
            crate::AuditKind::PasswordChanged,
            Some(&user),
            &user.email,
            context,
        );
        let notice = Self::password_changed_notice(&user);
        let set = self
            .ports
            .users
            .set_password(
                user.id,
                &hash,
                false,
                now,
                &audit,
                Some(&notice),
                reserved.as_give_back(),
            )
            .await;
        self.give_back_on_failure(&reserved, set).await?;
        Ok(())
    }
}
