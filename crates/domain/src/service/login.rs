//! Login: email and password for a token pair.

use crate::service::{AuthService, RegistrationPolicy};
use crate::{EmailAddress, InfraError, Password, TokenPair};

#[derive(Debug)]
pub struct LoginInput {
    pub email: EmailAddress,
    pub password: Password,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown address, wrong password or inactive account: one answer for all.
    #[error("No active account found with the given credentials.")]
    InvalidCredentials,
    /// Right password, but the policy wants a verified address first.
    #[error("Email address is not verified.")]
    EmailNotVerified,
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

hash_error_into!(LoginError);

impl AuthService {
    pub async fn login(&self, input: LoginInput) -> Result<TokenPair, LoginError> {
        let user = self.ports.users.find_by_email(&input.email).await?;
        // With no account, verify against a dummy hash: the same time is spent.
        let matches = self
            .ports
            .passwords
            .verify(
                &input.password,
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await?;
        let user = match user {
            Some(user) if matches && user.is_active => user,
            _ => return Err(LoginError::InvalidCredentials),
        };
        if self.settings.policy == RegistrationPolicy::VerificationRequired && !user.email_verified
        {
            return Err(LoginError::EmailNotVerified);
        }
        Ok(self.start_session(&user).await?)
    }
}
