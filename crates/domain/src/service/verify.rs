//! Verify: check a code for an address, consume it exactly once, put the registration
//! it belongs to into effect, hand out tokens.

use chrono::{DateTime, Utc};

use crate::otp::StoredOtp;
use crate::ports::{Spend, Tries};
use crate::service::{AuthService, Throttled};
use crate::{
    AuditKind, EmailAddress, InfraError, OtpCode, OtpPurpose, Password, RequestContext, TokenPair,
    User,
};

#[derive(Debug)]
pub struct VerifyInput {
    pub email: EmailAddress,
    /// As typed by the user; redacted in `Debug`.
    pub code: OtpCode,
    /// Optional: the password the client registered with. When given, a code of a
    /// registration with another password is refused like a wrong code.
    pub password: Option<Password>,
    /// The client's address key (IPv4 address or IPv6 /64, as the HTTP adapter computes it).
    pub client: String,
    pub context: RequestContext,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyOtpError {
    /// Wrong, expired, spent, out of tries, or no such address: one answer for all.
    #[error("Invalid or expired OTP.")]
    Invalid,
    /// The address's guessing budget is spent (the same for unknown addresses).
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// Password hashing is saturated (only when a password was sent); retry later.
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

hash_error_into!(VerifyOtpError);

/// A code that matched, with its try counted, not yet spent; and the budgets' tries to
/// give back when it is spent.
pub(crate) struct Matched {
    pub otp: StoredOtp,
    reserved: super::Reserved,
}

impl AuthService {
    /// Verifies the address with a `verify_email` code: the registration that code was
    /// mailed for (its name and password) takes effect, and the first token pair comes back.
    pub async fn verify_email(
        &self,
        input: VerifyInput,
    ) -> Result<(User, TokenPair), VerifyOtpError> {
        let matched = self
            .match_code(
                &input.email,
                &input.code,
                OtpPurpose::VerifyEmail,
                &input.client,
            )
            .await?;
        let Some(mut user) = self.ports.users.find_by_email(&input.email).await? else {
            return Err(VerifyOtpError::Invalid);
        };
        if !user.is_active {
            return Err(VerifyOtpError::Invalid);
        }
        let otp = &matched.otp;
        if let Some(password) = &input.password {
            let hash = otp
                .registration
                .as_ref()
                .map_or(&user.password_hash, |r| &r.password_hash);
            if !self
                .ports
                .passwords
                .verify(
                    password,
                    Some(hash.clone()).filter(crate::PasswordHash::is_set),
                )
                .await?
            {
                return Err(VerifyOtpError::Invalid);
            }
        }
        let now = self.ports.clock.now();
        // The account as the code leaves it, which the session is signed for.
        if let Some(registration) = &otp.registration {
            user.full_name = registration.full_name.clone();
            user.password_hash = registration.password_hash.clone();
        }
        user.email_verified = true;
        let (tokens, session) = self.new_session(&user, &input.context)?;
        let spend = Spend {
            session: Some((&session, None)),
            ..self.spending(&matched, now)
        };
        let spent = match &otp.registration {
            Some(registration) => {
                let audit = self.audit_event(
                    AuditKind::Verified,
                    Some(&user),
                    &user.email,
                    &input.context,
                );
                self.ports
                    .otps
                    .complete_registration(&spend, user.id, registration, &audit)
                    .await?
            }
            // A code stored before codes carried their registration.
            None => {
                let spent = self.ports.otps.consume(&spend).await?;
                if spent {
                    self.ports.users.mark_email_verified(user.id, now).await?;
                }
                spent
            }
        };
        if !spent {
            // A concurrent request spent it first.
            return Err(VerifyOtpError::Invalid);
        }
        Ok((user, tokens))
    }

    /// Finds the code of (email, purpose) that `code` is, within the guessing budgets:
    /// a try is reserved from the (address, client) share and from the address's
    /// ceiling and counted on every open code, in one transaction (one commit), and
    /// only then are codes compared, so no concurrency can overrun a budget or a
    /// code's tries. The caller spends the match, which gives the budgets back in
    /// the spend's transaction ([`AuthService::spending`]).
    pub(crate) async fn match_code(
        &self,
        email: &EmailAddress,
        code: &OtpCode,
        purpose: OtpPurpose,
        client: &str,
    ) -> Result<Matched, VerifyOtpError> {
        let share = format!("guess:{email}:{client}");
        let ceiling = format!("guess:{email}");
        let now = self.ports.clock.now();
        for bucket in [&share, &ceiling] {
            if let Some(throttled) = self.denials.check(bucket, now) {
                return Err(throttled.into());
            }
        }
        let digits = code.expose();
        let well_formed = digits.len() == usize::from(self.settings.otp.length)
            && digits.bytes().all(|b| b.is_ascii_digit());
        // Hash even a malformed or unknown-address code: the work done is the same.
        let candidate = self.otp_hasher.hash(email, purpose, code);
        let budgets = [
            (share, self.settings.limits.guesses_per_client),
            (ceiling, self.settings.limits.guesses),
        ];
        let open = match self
            .ports
            .otps
            .count_try(
                email,
                purpose,
                now,
                self.settings.otp.max_attempts,
                &budgets,
            )
            .await?
        {
            Tries::Counted(open) => open,
            Tries::Refused {
                budget,
                retry_after,
            } => return Err(self.refused(&budgets, budget, now, retry_after).into()),
        };
        let [(share, _), (ceiling, _)] = budgets;
        let mut found = None;
        for otp in open {
            // Compare with every open code, in constant time, whichever matches.
            if otp.code_hash.matches(&candidate) && well_formed {
                found = Some(otp);
            }
        }
        match found {
            Some(otp) => Ok(Matched {
                otp,
                reserved: super::Reserved {
                    keys: vec![share, ceiling],
                    at: now,
                },
            }),
            None => Err(VerifyOtpError::Invalid),
        }
    }

    /// Spending `matched` at `now`: a right code was no guess, so its try goes back to
    /// both budgets, in the order they were reserved in. Whatever else goes with the
    /// spend is the caller's to add.
    pub(crate) fn spending<'a>(&self, matched: &'a Matched, now: DateTime<Utc>) -> Spend<'a> {
        Spend {
            give_back: matched.reserved.as_give_back(),
            ..Spend::new(
                matched.otp.id,
                &matched.otp.code_hash,
                now,
                self.settings.otp.max_attempts,
            )
        }
    }
}
