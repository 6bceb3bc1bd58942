//! Register: create the account and mail a verification code, under either policy.

use std::future::Future as _;
use std::task::Poll;

use crate::ports::{CreateUserError, FirstCode, GiveBack, Issue, Mail};
use crate::service::{AuthService, RegistrationPolicy, Throttled};
use crate::{
    AuditEvent, AuditKind, EmailAddress, FullName, InfraError, NewUser, OtpPurpose, Password,
    Registration, RequestContext, TokenPair, TokenSubject, User, UserId,
};

#[derive(Debug)]
pub struct RegisterInput {
    pub email: EmailAddress,
    pub full_name: FullName,
    pub password: Password,
    pub context: RequestContext,
}

#[derive(Debug)]
pub enum Registered {
    /// Default policy: the same answer whether or not the address had an account.
    /// Echoes the request, never the stored account.
    PendingVerification {
        email: EmailAddress,
        full_name: FullName,
    },
    /// Compatibility policy: the new account and its first tokens.
    WithTokens { user: User, tokens: TokenPair },
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Compatibility policy only: the address has an account.
    #[error("User with this email already exists.")]
    EmailTaken,
    /// The password is too easy to guess (the message says why).
    #[error("{0}")]
    WeakPassword(String),
    /// The address's resend cooldown or hourly cap: the same for any address.
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// Password hashing is saturated; retry later.
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

hash_error_into!(RegisterError);

impl AuthService {
    pub async fn register(&self, input: RegisterInput) -> Result<Registered, RegisterError> {
        let inputs = [input.email.as_str(), input.full_name.as_str()];
        if let Some(problem) = self.weak_password(&input.password, &inputs).await? {
            return Err(RegisterError::WeakPassword(problem));
        }
        // Every registration mails the address (a code or a notice): it counts as a send.
        self.admit_send(&input.email, OtpPurpose::VerifyEmail)
            .await??;
        // Hash first, whatever the address: the time spent must not tell new from existing.
        // Under the default policy the account is read while the password hashes, so
        // what the address needs is known once the hash is done: a new address's
        // insert, or a taken address's code, notice or decoy, each written in one go.
        // Read after the hash, a taken address would take a round trip more.
        let hash = self.ports.passwords.hash(&input.password);
        let (password_hash, found) = match self.settings.policy {
            RegistrationPolicy::VerificationRequired => {
                // Polled once first: a full hashing queue answers `Busy` at once, and
                // then no read is sent for a registration refused anyway.
                let mut hash = std::pin::pin!(hash);
                let first = std::future::poll_fn(|cx| Poll::Ready(hash.as_mut().poll(cx))).await;
                let read = self.ports.users.find_by_email(&input.email);
                match first {
                    Poll::Ready(hashed) => (hashed?, read.await?),
                    Poll::Pending => {
                        // The read sent first: the hash is under way already.
                        let (found, hashed) = futures_util::future::join(read, hash).await;
                        (hashed?, found?)
                    }
                }
            }
            RegistrationPolicy::TokensBeforeVerification => (hash.await?, None),
        };
        let registration = Registration {
            full_name: input.full_name.clone(),
            password_hash: password_hash.clone(),
        };
        if let Some(user) = found {
            self.register_existing(&input.email, Some(user), registration, &input.context)
                .await?;
            return Ok(pending(input));
        }
        let new_user = NewUser {
            id: UserId::new_random(),
            email: input.email.clone(),
            full_name: input.full_name.clone(),
            password_hash,
            created_at: self.ports.clock.now(),
        };
        // The account and this registration's own code, in one transaction.
        let (otp, mail) = self.new_code(
            &new_user.email,
            &new_user.full_name,
            OtpPurpose::VerifyEmail,
            Some(registration.clone()),
        );
        let first_code = FirstCode {
            otp,
            mail,
            audit: AuditEvent::new(
                AuditKind::Registered,
                new_user.created_at,
                Some(new_user.id),
                Some(&new_user.email),
                &input.context,
            ),
        };
        let created = self.ports.users.create(&new_user, Some(&first_code)).await;
        match (self.settings.policy, created) {
            (RegistrationPolicy::VerificationRequired, Ok(_)) => Ok(pending(input)),
            (RegistrationPolicy::VerificationRequired, Err(CreateUserError::EmailTaken)) => {
                // Registered by another request since the read: read it again.
                let found = self.ports.users.find_by_email(&input.email).await?;
                self.register_existing(&input.email, found, registration, &input.context)
                    .await?;
                Ok(pending(input))
            }
            (RegistrationPolicy::TokensBeforeVerification, Ok(user)) => {
                let tokens = self
                    .start_session(&user, None, &input.context, GiveBack::NONE)
                    .await?;
                Ok(Registered::WithTokens { user, tokens })
            }
            (RegistrationPolicy::TokensBeforeVerification, Err(CreateUserError::EmailTaken)) => {
                Err(RegisterError::EmailTaken)
            }
            (_, Err(CreateUserError::Infra(e))) => Err(e.into()),
        }
    }

    /// A registration's own code: it sits beside the codes of earlier registrations of
    /// the address, and entering it puts this registration (and no other) into effect.
    async fn send_registration_code(
        &self,
        email: &EmailAddress,
        registration: Registration,
        audit: &AuditEvent,
    ) -> Result<(), InfraError> {
        let name = registration.full_name.clone();
        let (otp, mail) = self.new_code(email, &name, OtpPurpose::VerifyEmail, Some(registration));
        self.ports.otps.add(&otp, &mail, audit).await
    }

    /// A decoy where a registration mails nothing: its send was counted before it hashed.
    async fn registration_decoy(&self, email: &EmailAddress) -> Result<(), InfraError> {
        self.send_decoy(email, OtpPurpose::VerifyEmail, &Issue::default())
            .await
            .map(drop)
    }

    /// An existing unverified account gets this registration's own code; its stored
    /// name and password stay until a code is entered. A verified account gets a notice
    /// instead, never a code; a deactivated one nothing (the same work is done).
    async fn register_existing(
        &self,
        email: &EmailAddress,
        found: Option<User>,
        registration: Registration,
        context: &RequestContext,
    ) -> Result<(), RegisterError> {
        let Some(user) = found else {
            // Deleted between the insert and the read: nothing to tell anyone.
            return Ok(self.registration_decoy(email).await?);
        };
        if !user.is_active {
            Ok(self.registration_decoy(email).await?)
        } else if user.email_verified {
            let notice = Mail::RegistrationAttempt {
                to: user.email.clone(),
                full_name: user.full_name.as_str().to_owned(),
            };
            // A notice carries no code: it never expires, it is retried until it goes.
            self.ports
                .outbox
                .enqueue(&notice, self.ports.clock.now(), None)
                .await?;
            Ok(())
        } else {
            let audit = self.audit_event(AuditKind::Registered, Some(&user), email, context);
            Ok(self
                .send_registration_code(email, registration, &audit)
                .await?)
        }
    }
}

fn pending(input: RegisterInput) -> Registered {
    Registered::PendingVerification {
        email: input.email,
        full_name: input.full_name,
    }
}

pub(crate) fn subject_of(user: &User) -> TokenSubject {
    TokenSubject {
        user_id: user.id,
        email: user.email.clone(),
        email_verified: user.email_verified,
    }
}
