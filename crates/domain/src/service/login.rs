//! Login: email and password for a token pair, within the failed-login budgets.

use crate::service::{AuthService, RegistrationPolicy, Throttled};
use crate::{
    AuditKind, EmailAddress, InfraError, Password, PasswordHash, RequestContext, TokenPair,
};

#[derive(Debug)]
pub struct LoginInput {
    pub email: EmailAddress,
    pub password: Password,
    /// The client's address key (IPv4 address or IPv6 /64, as the HTTP adapter computes it).
    pub client: String,
    pub context: RequestContext,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown address, wrong password or inactive account: one answer for all.
    #[error("No active account found with the given credentials.")]
    InvalidCredentials,
    /// Right password, but the policy wants a verified address first.
    #[error("Email address is not verified.")]
    EmailNotVerified,
    /// A failed-login budget (per address and client, or per address) is spent: the
    /// same for unknown addresses.
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

hash_error_into!(LoginError);

impl AuthService {
    pub async fn login(&self, input: LoginInput) -> Result<TokenPair, LoginError> {
        // A failure is reserved from both budgets (at once) before the password
        // is checked, so concurrent guesses cannot overrun them, and given back if it
        // was right. The same statements run for unknown addresses.
        let share = format!("login:{}:{}", input.email, input.client);
        let ceiling = format!("login:{}", input.email);
        let limits = &self.settings.limits;
        let budgets = [
            (share, limits.login_failures_per_client),
            (ceiling, limits.login_failures),
        ];
        let now = self.ports.clock.now();
        if let Some(throttled) = self.remembered_denial(&budgets, now) {
            return Err(throttled.into());
        }
        // Neither waits for the other: asked together, the login waits for one round
        // trip to the store instead of two. A refused reservation drops the account.
        let (reserved, found) = futures_util::future::join(
            self.reserve_all(&budgets, now),
            self.ports.users.find_by_email(&input.email),
        )
        .await;
        let reserved = reserved??;
        let user = self.give_back_on_failure(&reserved, found).await?;
        // With no account, verify against a dummy hash: the same time is spent.
        let matches = self
            .ports
            .passwords
            .verify(
                &input.password,
                // No password (code sign-in only): the dummy hash, the same time.
                user.as_ref()
                    .map(|u| u.password_hash.clone())
                    .filter(PasswordHash::is_set),
            )
            .await;
        let matches = match matches {
            Ok(matches) => matches,
            Err(error) => {
                // Shed or failed: no password was checked, nothing is counted.
                self.give_back(&reserved).await?;
                return Err(error.into());
            }
        };
        let user = match user {
            Some(user) if matches && user.is_active => user,
            user => {
                let failed = self.audit_event(
                    AuditKind::LoginFailed,
                    user.as_ref(),
                    &input.email,
                    &input.context,
                );
                self.ports.audit.record(&failed).await?;
                return Err(LoginError::InvalidCredentials);
            }
        };
        // A right password was no failure: both budgets get their event back.
        if self.settings.policy == RegistrationPolicy::VerificationRequired && !user.email_verified
        {
            self.give_back(&reserved).await?;
            return Err(LoginError::EmailNotVerified);
        }
        let audit = self.audit_event(
            AuditKind::LoginSucceeded,
            Some(&user),
            &user.email,
            &input.context,
        );
        // Given back in the session's transaction: one write.
        let started = self
            .start_session(&user, Some(audit), &input.context, reserved.as_give_back())
            .await;
        Ok(self.give_back_on_failure(&reserved, started).await?)
    }
}
