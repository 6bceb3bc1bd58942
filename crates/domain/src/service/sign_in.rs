//! Sign in by code (passwordless): a `sign_in` code mailed to the address, exchanged
//! for a token pair. The code proves the mailbox, so it also verifies an unverified
//! address; then any password set by a registration that was never verified is
//! cleared (the pre-registration takeover: only the mailbox owner's later choice of
//! password may count).

use crate::ports::{AccountChange, GiveBack, PasswordSet, Spend};
use crate::service::{AuthService, Throttled};
use crate::{
    AuditKind, EmailAddress, InfraError, OtpCode, OtpPurpose, PasswordHash, RequestContext,
    TokenPair,
};

#[derive(Debug)]
pub struct SignInInput {
    pub email: EmailAddress,
    pub code: OtpCode,
    /// The client's address key (IPv4 address or IPv6 /64, as the HTTP adapter computes it).
    pub client: String,
    pub context: RequestContext,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Sign-in by code is turned off (`registration.sign_in_by_code = false`).
    #[error("Sign-in by code is not enabled.")]
    Disabled,
    /// Wrong, expired, spent or unknown-address code: the one answer of validate-otp.
    #[error("Invalid or expired OTP.")]
    InvalidCode,
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

code_error_into!(SignInError);

impl AuthService {
    /// Mails a sign-in code if the address has an active account; otherwise the same
    /// database work with nothing usable left behind. The same cooldown and hourly cap
    /// as the other codes, per address alike for every address.
    pub async fn request_sign_in_code(
        &self,
        email: &EmailAddress,
    ) -> Result<Result<(), Throttled>, SignInError> {
        if !self.settings.sign_in_by_code {
            return Err(SignInError::Disabled);
        }
        let purpose = OtpPurpose::SignIn;
        if let Some(throttled) = self.send_refused(email, purpose) {
            return Ok(Err(throttled));
        }
        Ok(match self.ports.users.find_by_email(email).await? {
            Some(user) if user.is_active => self.send_code(&user, purpose).await?,
            _ => {
                self.issue(email, purpose, None, GiveBack::NONE, None)
                    .await?
            }
        })
    }

    /// Exchanges a sign-in code for a new session, within the guessing budgets that
    /// every code shares.
    pub async fn sign_in_with_code(&self, input: SignInInput) -> Result<TokenPair, SignInError> {
        if !self.settings.sign_in_by_code {
            return Err(SignInError::Disabled);
        }
        let matched = self
            .match_code(&input.email, &input.code, OtpPurpose::SignIn, &input.client)
            .await?;
        let mut user = match self.ports.users.find_by_email(&input.email).await? {
            Some(user) if user.is_active => user,
            _ => return Err(SignInError::InvalidCode),
        };
        let now = self.ports.clock.now();
        let audit = self.audit_event(
            AuditKind::CodeSignIn,
            Some(&user),
            &user.email,
            &input.context,
        );
        // The mailbox is proven; a password from a registration that was never
        // verified may be someone else's: cleared, with pending registrations, every
        // session ended, before this one starts. Tokens issued before `now` are
        // refused from then on; this session's are issued at `now` or later (`>=`
        // accepts them).
        let unverified = !user.email_verified;
        let cleared = PasswordHash::unset();
        if unverified {
            user.email_verified = true;
            user.password_hash = cleared.clone();
        }
        let (tokens, session) = self.new_session(&user, &input.context)?;
        // The code spent, its guesses given back, the password cleared and the session
        // started: one transaction, so a failure cannot spend the code alone.
        let spend = Spend {
            account: unverified.then_some(AccountChange::Password(PasswordSet {
                user: user.id,
                hash: &cleared,
                verify_email: true,
                audit: &audit,
                notice: None,
            })),
            session: Some((&session, (!unverified).then_some(&audit))),
            ..self.spending(&matched, now)
        };
        if !self.ports.otps.consume(&spend).await? {
            return Err(SignInError::InvalidCode);
        }
        Ok(tokens)
    }
}
