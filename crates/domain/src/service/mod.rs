//! The use cases. [`AuthService`] holds the ports and the settings; each use case
//! lives in its own file with its own error enum.

/// Every use case that hashes a password answers `Busy` when hashing is saturated
/// and `Infra` when it failed otherwise.
macro_rules! hash_error_into {
    ($error:ty) => {
        impl From<crate::ports::HashError> for $error {
            fn from(error: crate::ports::HashError) -> Self {
                match error {
                    crate::ports::HashError::Busy => Self::Busy,
                    crate::ports::HashError::Unexpected(e) => {
                        Self::Infra(crate::InfraError::Unexpected(e))
                    }
                }
            }
        }
    };
}

/// Every use case that checks a code answers its `InvalidCode` for any failure of the
/// code itself, and passes the budgets' and the infrastructure's answers on.
macro_rules! code_error_into {
    ($error:ty) => {
        impl From<crate::service::VerifyOtpError> for $error {
            fn from(error: crate::service::VerifyOtpError) -> Self {
                match error {
                    crate::service::VerifyOtpError::Invalid => Self::InvalidCode,
                    crate::service::VerifyOtpError::Throttled(t) => Self::Throttled(t),
                    crate::service::VerifyOtpError::Busy => Self::Busy,
                    crate::service::VerifyOtpError::Infra(e) => Self::Infra(e),
                }
            }
        }
    };
}

mod authenticate;
mod change_email;
mod change_password;
mod delete_account;
mod deliver;
mod login;
mod password_reset;
mod refresh;
mod register;
mod resend;
mod sessions;
mod sign_in;
mod verify;

#[cfg(test)]
mod tests;

pub use authenticate::AuthenticateError;
pub use change_email::ChangeEmailError;
pub use change_password::ChangePasswordError;
pub use delete_account::{DeleteAccountError, DeleteConfirmation};
pub use deliver::{DeliverySettings, MailDelivery};
pub use login::{LoginError, LoginInput};
pub use password_reset::{ResetError, ResetInput};
pub use refresh::RefreshError;
pub use register::{RegisterError, RegisterInput, Registered};
pub use resend::ResendError;
pub use sessions::Session;
pub use sign_in::{SignInError, SignInInput};
pub use verify::{VerifyInput, VerifyOtpError};

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::otp::NewOtp;
use crate::ports::{
    Admission, Admissions, AuditLog, Clock, CodeGenerator, GiveBack, HashError, Issue, Limit, Mail,
    OtpStore, Outbox, PasswordHasher, RefreshTokenStore, Throttle, TokenIssuer, UserRepository,
};
use crate::{
    EmailAddress, FullName, InfraError, OtpHasher, OtpPurpose, OtpSettings, Password, Registration,
    User,
};

/// Whether tokens wait for a verified address (see API.md "Registration policy").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrationPolicy {
    /// Register never says whether the address had an account; tokens come with
    /// verification; login of an unverified account is refused.
    #[default]
    VerificationRequired,
    /// The tutorial's behaviour: tokens at registration, duplicates refused, login
    /// before verification.
    TokensBeforeVerification,
}

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub policy: RegistrationPolicy,
    pub otp: OtpSettings,
    pub limits: AbuseLimits,
    /// Lowest zxcvbn score (0-4) a new password needs; 0 turns the check off.
    pub password_min_score: u8,
    /// How long a spent refresh token still gets its successor (one client's
    /// concurrent refreshes) before presenting it counts as theft.
    pub refresh_grace: Duration,
    /// The longest a session (refresh-token family) lasts, however often refreshed.
    pub session_max: Duration,
    /// Whether a mailed code may sign in instead of a password.
    pub sign_in_by_code: bool,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            policy: RegistrationPolicy::default(),
            otp: OtpSettings::default(),
            limits: AbuseLimits::default(),
            password_min_score: 0,
            refresh_grace: Duration::zero(),
            session_max: Duration::days(30),
            sign_in_by_code: true,
        }
    }
}

/// The limits that make guessing and flooding pointless. Shared by all instances
/// through the `Throttle` port.
#[derive(Debug, Clone, Copy)]
pub struct AbuseLimits {
    /// Wrong code tries per address, across codes and purposes: the ceiling.
    pub guesses: Limit,
    /// Wrong code tries per (address, client): one client's share of the ceiling, so
    /// that a single client cannot spend a victim's whole budget.
    pub guesses_per_client: Limit,
    /// Failed logins per address: the ceiling.
    pub login_failures: Limit,
    /// Failed logins per (address, client), and wrong old passwords per account on
    /// change-password: slows one client long before the address's ceiling is reached.
    pub login_failures_per_client: Limit,
    /// Code mails per address and purpose (with the cooldown between two).
    pub sends: Limit,
    /// Requests per client (IP address) and endpoint, on unauthenticated endpoints.
    pub client_requests: Limit,
}

impl Default for AbuseLimits {
    fn default() -> Self {
        Self {
            guesses: Limit {
                limit: 10,
                window: Duration::hours(1),
                cooldown: Duration::zero(),
            },
            guesses_per_client: Limit {
                limit: 5,
                window: Duration::hours(1),
                cooldown: Duration::zero(),
            },
            login_failures: Limit {
                limit: 100,
                window: Duration::hours(1),
                cooldown: Duration::zero(),
            },
            login_failures_per_client: Limit {
                limit: 10,
                window: Duration::minutes(15),
                cooldown: Duration::zero(),
            },
            sends: Limit {
                limit: 5,
                window: Duration::hours(1),
                cooldown: Duration::seconds(60),
            },
            client_requests: Limit {
                limit: 60,
                window: Duration::minutes(1),
                cooldown: Duration::zero(),
            },
        }
    }
}

/// A limit was reached: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests; retry after {retry_after}")]
pub struct Throttled {
    pub retry_after: Duration,
}

/// The adapters the service runs on.
/// Budgets counted at `at` and not spent yet: a request that turns out not to spend
/// them gives them back, in its own write's transaction where it can, by `at` where
/// it gives them back on their own (`Throttle::release`).
#[derive(Debug, Clone)]
pub(crate) struct Reserved {
    pub(crate) keys: Vec<String>,
    pub(crate) at: DateTime<Utc>,
}

impl Reserved {
    /// For a write that gives them back in its transaction.
    pub(crate) fn as_give_back(&self) -> GiveBack<'_> {
        GiveBack {
            keys: &self.keys,
            reserved_at: self.at,
        }
    }
}

#[derive(Clone)]
pub struct Ports {
    pub users: Arc<dyn UserRepository>,
    pub otps: Arc<dyn OtpStore>,
    /// Where messages wait; requests only ever queue mail here.
    pub outbox: Arc<dyn Outbox>,
    pub tokens: Arc<dyn TokenIssuer>,
    pub passwords: Arc<dyn PasswordHasher>,
    pub throttle: Arc<dyn Throttle>,
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    pub clock: Arc<dyn Clock>,
    pub codes: Arc<dyn CodeGenerator>,
    /// Events that describe no other change (a failed login).
    pub audit: Arc<dyn AuditLog>,
}

/// The application service: every use case of API.md.
#[derive(Clone)]
pub struct AuthService {
    ports: Ports,
    otp_hasher: OtpHasher,
    settings: ServiceSettings,
    denials: Arc<Denials>,
}

/// Limits this instance has seen refused, and until when: a refused limit is answered
/// from memory until then, without asking the store again (a flood of requests that
/// can only be refused costs no database work). Only ever refuses what the store
/// refused; the store alone allows. A reservation given back meanwhile (a right code,
/// a right password) is seen once the remembered refusal ends.
#[derive(Debug, Default)]
pub(crate) struct Denials {
    until: std::sync::Mutex<std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>>,
}

impl Denials {
    /// Beyond this many, refusals that have ended are forgotten.
    const MAX: usize = 65_536;

    pub(crate) fn check(
        &self,
        bucket: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Throttled> {
        let until = *self.lock().get(bucket)?;
        (until > now).then(|| {
            // Refusals from memory are refusals all the same (alerts watch this counter).
            metrics::counter!(
                "passcode_throttle_denials_total",
                "limit" => crate::ports::limit_name(bucket)
            )
            .increment(1);
            Throttled {
                retry_after: until - now,
            }
        })
    }

    pub(crate) fn remember(
        &self,
        bucket: &str,
        now: chrono::DateTime<chrono::Utc>,
        retry_after: Duration,
    ) {
        let mut until = self.lock();
        if until.len() >= Self::MAX {
            until.retain(|_, end| *end > now);
            if until.len() >= Self::MAX {
                until.clear();
            }
        }
        until.insert(bucket.to_owned(), now + retry_after);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>>
    {
        self.until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    pub fn new(ports: Ports, otp_hasher: OtpHasher, settings: ServiceSettings) -> Self {
        Self {
            ports,
            otp_hasher,
            settings,
            denials: Arc::default(),
        }
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// Why a new `password` is too easy to guess, if it is (`password_min_score`),
    /// with the account's own words (`user_inputs`) counted as known. Estimated on the
    /// hashing threads (`PasswordHasher::check`).
    pub(crate) async fn weak_password(
        &self,
        password: &Password,
        user_inputs: &[&str],
    ) -> Result<Option<String>, HashError> {
        let min_score = self.settings.password_min_score;
        if min_score == 0 {
            return Ok(None);
        }
        let password = password.clone();
        let inputs: Vec<String> = user_inputs.iter().map(|&input| input.to_owned()).collect();
        self.ports
            .passwords
            .check(Box::new(move || {
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                crate::password::strength_problem(&password, &inputs, min_score)
            }))
            .await
    }

    /// Counts one event against `limit` for `bucket` and answers when it was counted
    /// (to give it back by), or says how long to wait.
    pub(crate) async fn admit(
        &self,
        bucket: &str,
        limit: Limit,
    ) -> Result<Result<DateTime<Utc>, Throttled>, InfraError> {
        let now = self.ports.clock.now();
        if let Some(throttled) = self.denials.check(bucket, now) {
            return Ok(Err(throttled));
        }
        Ok(
            match self.ports.throttle.acquire(bucket, limit, now).await? {
                Admission::Allowed => Ok(now),
                Admission::Denied { retry_after } => {
                    self.denials.remember(bucket, now, retry_after);
                    Err(Throttled { retry_after })
                }
            },
        )
    }

    /// The refusal this instance remembers for one of `budgets` at `now`, if any: the
    /// answer without asking the store.
    pub(crate) fn remembered_denial(
        &self,
        budgets: &[(String, Limit)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Throttled> {
        budgets
            .iter()
            .find_map(|(bucket, _)| self.denials.check(bucket, now))
    }

    /// Counts one event against each of `budgets` (all or none) in the store, then
    /// answers them as [`Reserved`]; or says how long to wait for the first that
    /// refuses, and remembers it. Callers ask [`Self::remembered_denial`] first.
    pub(crate) async fn reserve_all(
        &self,
        budgets: &[(String, Limit)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Result<Reserved, Throttled>, InfraError> {
        Ok(match self.ports.throttle.acquire_all(budgets, now).await? {
            Admissions::Allowed => Ok(Reserved {
                keys: budgets.iter().map(|(key, _)| key.clone()).collect(),
                at: now,
            }),
            Admissions::Denied {
                budget,
                retry_after,
            } => Err(self.refused(budgets, budget, now, retry_after)),
        })
    }

    /// `budgets[budget]` refused until `retry_after`: remembered, so that this
    /// instance answers its next requests without asking the store.
    pub(crate) fn refused(
        &self,
        budgets: &[(String, Limit)],
        budget: usize,
        now: chrono::DateTime<chrono::Utc>,
        retry_after: Duration,
    ) -> Throttled {
        if let Some((bucket, _)) = budgets.get(budget) {
            self.denials.remember(bucket, now, retry_after);
        }
        Throttled { retry_after }
    }

    /// Checks the signed-in account's own password (change-password, change-email,
    /// delete). A stolen access token must not become an oracle for the password: a
    /// wrong one counts against the account's budget (reserved first). An account
    /// without a password has none to match. A right one answers the budget's key,
    /// whose event the caller gives back: in its own write's transaction where it can.
    pub(crate) async fn check_account_password<E>(
        &self,
        user: &User,
        password: &crate::Password,
    ) -> Result<Option<Reserved>, E>
    where
        E: From<Throttled> + From<crate::ports::HashError> + From<InfraError>,
    {
        let bucket = format!("password-check:{}", user.id);
        let at = self
            .admit(&bucket, self.settings.limits.login_failures_per_client)
            .await??;
        let reserved = Reserved {
            keys: vec![bucket],
            at,
        };
        let stored = Some(user.password_hash.clone()).filter(crate::PasswordHash::is_set);
        match self.ports.passwords.verify(password, stored).await {
            Ok(true) => Ok(Some(reserved)),
            Ok(false) => Ok(None),
            Err(error) => {
                // Shed or failed: no password was checked, nothing is counted.
                self.give_back(&reserved).await?;
                Err(error.into())
            }
        }
    }

    /// Gives `reserved` back, waiting for the store as any write does.
    pub(crate) async fn give_back(&self, reserved: &Reserved) -> Result<(), InfraError> {
        self.ports.throttle.release(reserved.as_give_back()).await
    }

    /// `result` of work after `budgets` were reserved that would have given them back
    /// (in its own transaction, or by the password proving right). On an
    /// infrastructure failure that never happened, so they are given back on their
    /// own if the store can take the write at once: a database that failed once must
    /// not also cost the client a try, and a store out of connections must not be
    /// asked to wait for one twice. The failure is the answer either way. (Should the
    /// write have committed after all, a give-back counts no budget below zero.)
    pub(crate) async fn give_back_on_failure<T>(
        &self,
        reserved: &Reserved,
        result: Result<T, InfraError>,
    ) -> Result<T, InfraError> {
        if result.is_err() {
            match self
                .ports
                .throttle
                .release_at_once(reserved.as_give_back())
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::debug!(
                    "a failed request's budgets were not given back: the store was busy"
                ),
                Err(error) => {
                    tracing::debug!(%error, "a failed request's budgets were not given back")
                }
            }
        }
        result
    }

    /// The resend cooldown and cap of (address, purpose), counted whether or not
    /// the address has an account, so throttling reveals nothing. Only a registration
    /// counts it on its own (before it hashes); other sends count it in their code's
    /// transaction ([`AuthService::issue`]).
    pub(crate) async fn admit_send(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
    ) -> Result<Result<(), Throttled>, InfraError> {
        Ok(self
            .admit(&send_key(email, purpose), self.settings.limits.sends)
            .await?
            .map(|_| ()))
    }

    /// The send limit of (address, purpose) if this instance already knows it refuses:
    /// checked before any other work, as [`AuthService::admit`] does.
    pub(crate) fn send_refused(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
    ) -> Option<Throttled> {
        self.denials
            .check(&send_key(email, purpose), self.ports.clock.now())
    }

    /// Stores `code` (a fresh code and its mail, [`AuthService::new_code`]) for
    /// (`email`, `purpose`), or where none is due (`None`) a decoy that costs the same
    /// work; in the same transaction the address's send limit is counted, `give_back`'s
    /// keys are given back and `notice` is queued. A refusal writes nothing and is
    /// remembered, as [`AuthService::admit`] remembers it.
    pub(crate) async fn issue(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
        code: Option<(NewOtp, Mail)>,
        give_back: GiveBack<'_>,
        notice: Option<&Mail>,
    ) -> Result<Result<(), Throttled>, InfraError> {
        let key = send_key(email, purpose);
        let issue = Issue {
            send: Some((&key, self.settings.limits.sends)),
            give_back,
            notice,
        };
        let admission = match code {
            Some((otp, mail)) => self.ports.otps.replace(&otp, &mail, &issue).await?,
            None => self.send_decoy(email, purpose, &issue).await?,
        };
        Ok(match admission {
            Admission::Allowed => Ok(()),
            Admission::Denied { retry_after } => {
                self.denials
                    .remember(&key, self.ports.clock.now(), retry_after);
                Err(Throttled { retry_after })
            }
        })
    }

    /// Issues a fresh code for `user` and `purpose` (invalidating the previous ones)
    /// and queues its mail, in one transaction with the address's send limit. The
    /// plaintext exists only in the queued mail, which is encrypted at rest and erased
    /// once sent, failed or expired.
    pub(crate) async fn send_code(
        &self,
        user: &User,
        purpose: OtpPurpose,
    ) -> Result<Result<(), Throttled>, InfraError> {
        let code = self.new_code(&user.email, &user.full_name, purpose, None);
        self.issue(&user.email, purpose, Some(code), GiveBack::NONE, None)
            .await
    }

    /// An audit event of `kind` now, for `user` (or just an address).
    pub(crate) fn audit_event(
        &self,
        kind: crate::AuditKind,
        user: Option<&User>,
        email: &EmailAddress,
        context: &crate::RequestContext,
    ) -> crate::AuditEvent {
        crate::AuditEvent::new(
            kind,
            self.ports.clock.now(),
            user.map(|u| u.id),
            Some(email),
            context,
        )
    }

    /// A fresh code for (`email`, `purpose`) and the mail that carries it.
    pub(crate) fn new_code(
        &self,
        email: &EmailAddress,
        full_name: &FullName,
        purpose: OtpPurpose,
        registration: Option<Registration>,
    ) -> (NewOtp, Mail) {
        let now = self.ports.clock.now();
        let code = self.ports.codes.generate(self.settings.otp.length);
        let otp = NewOtp {
            id: Uuid::new_v4(),
            email: email.clone(),
            purpose,
            code_hash: self.otp_hasher.hash(email, purpose, &code),
            created_at: now,
            expires_at: now + self.settings.otp.ttl,
            registration,
            account: None,
        };
        let mail = Mail::Code {
            to: email.clone(),
            full_name: full_name.as_str().to_owned(),
            code,
            purpose,
            valid_for: self.settings.otp.ttl,
        };
        (otp, mail)
    }

    /// Where no code is due (no account, a verified or deactivated one), the same
    /// database work as [`AuthService::send_code`], so that timing tells nothing.
    pub(crate) async fn send_decoy(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
        issue: &Issue<'_>,
    ) -> Result<Admission, InfraError> {
        // The same hashing work as a real code, too.
        let code = self.ports.codes.generate(self.settings.otp.length);
        let _ = self.otp_hasher.hash(email, purpose, &code);
        self.ports
            .otps
            .decoy(email, purpose, self.ports.clock.now(), issue)
            .await
    }
}

/// The `Throttle` key of (address, purpose)'s send limit.
fn send_key(email: &EmailAddress, purpose: OtpPurpose) -> String {
    format!("send:{}:{email}", purpose.as_str())
}
