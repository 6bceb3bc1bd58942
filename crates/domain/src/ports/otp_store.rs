//! Storage of one-time codes. The atomic methods are what make "single use" and
//! "at most N tries" hold under concurrency, across instances.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::otp::{NewOtp, Registration, StoredOtp};
use crate::ports::{Admission, EmailChange, GiveBack, Limit, Mail, NewRefreshToken};

/// What counting a try led to.
#[derive(Debug, Clone)]
pub enum Tries {
    /// Counted: the open codes, each with this try counted.
    Counted(Vec<StoredOtp>),
    /// `budgets[budget]` is spent, free again after `retry_after`; nothing was counted.
    Refused {
        budget: usize,
        retry_after: chrono::Duration,
    },
}
use crate::{AuditEvent, CodeHash, EmailAddress, InfraError, OtpPurpose, PasswordHash, UserId};

/// Spending a code that matched, and what goes with it in the same transaction.
#[derive(Debug, Clone, Copy)]
pub struct Spend<'a> {
    pub id: Uuid,
    /// The code spends only if it still has this hash.
    pub code_hash: &'a CodeHash,
    pub now: DateTime<Utc>,
    pub max_attempts: u32,
    /// `Throttle` keys that each get one event back (a right code was no guess).
    pub give_back: GiveBack<'a>,
    /// What the spend does to its account, before its session starts.
    pub account: Option<AccountChange<'a>>,
    /// A session started by the spend: its first refresh token, with its audit event.
    pub session: Option<(&'a NewRefreshToken, Option<&'a AuditEvent>)>,
}

/// What a spent code does to its account, in the spend's transaction. A change that
/// is refused rolls the whole spend back: the code stays unspent.
#[derive(Debug, Clone, Copy)]
pub enum AccountChange<'a> {
    /// A password set; never refused.
    Password(PasswordSet<'a>),
    /// The account moved to `change.new` (verified), if it still has `change.old` and
    /// no account has `change.new`: every session but `change.keep_session` ended,
    /// the old address's codes deleted, `audit` recorded and `notice` queued.
    Email {
        change: &'a EmailChange,
        notice: &'a Mail,
        audit: &'a AuditEvent,
    },
    /// The account erased, as [`crate::ports::UserRepository::delete`] erases it at
    /// the spend's `now`; refused if it is already gone.
    Delete {
        user: UserId,
        email: &'a EmailAddress,
        goodbye: &'a Mail,
        audit: &'a AuditEvent,
    },
}

impl<'a> AccountChange<'a> {
    /// The mail the change queues, if any.
    pub fn mail(&self) -> Option<&'a Mail> {
        match *self {
            Self::Password(password) => password.notice,
            Self::Email { notice, .. } => Some(notice),
            Self::Delete { goodbye, .. } => Some(goodbye),
        }
    }
}

/// A password that a spent code sets, as [`crate::ports::UserRepository::set_password`]
/// sets it at the spend's `now`: every session of the account ended, its event
/// recorded, its notice queued.
#[derive(Debug, Clone, Copy)]
pub struct PasswordSet<'a> {
    pub user: UserId,
    pub hash: &'a PasswordHash,
    pub verify_email: bool,
    pub audit: &'a AuditEvent,
    pub notice: Option<&'a Mail>,
}

/// What goes with a new code (or its decoy) in the code's transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Issue<'a> {
    /// The address's send limit (a `Throttle` key and its limit), counted first: when
    /// it refuses, nothing at all is written. An adapter whose database deadlocks on
    /// a limit's first use inside a larger transaction may count it in a commit of its
    /// own, just before.
    pub send: Option<(&'a str, Limit)>,
    /// `Throttle` keys that each get one event back.
    pub give_back: GiveBack<'a>,
    /// Another mail queued with the code, to another address (a change's notice); it
    /// never expires.
    pub notice: Option<&'a Mail>,
}

impl<'a> Spend<'a> {
    /// Only the spend: nothing given back, no session.
    pub fn new(id: Uuid, code_hash: &'a CodeHash, now: DateTime<Utc>, max_attempts: u32) -> Self {
        Self {
            id,
            code_hash,
            now,
            max_attempts,
            give_back: GiveBack::NONE,
            account: None,
            session: None,
        }
    }
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OtpStore: Send + Sync {
    /// Stores `otp` as the only code for its (email, purpose), deleting every earlier
    /// one, and queues `mail` (which carries the code) in the outbox, expiring with the
    /// code: both or neither, in one transaction. Mail of the deleted codes that is
    /// still waiting is dropped (never sent). `issue`'s send limit is counted, its keys
    /// given back and its notice queued in the same transaction; when the limit
    /// refuses, nothing is written and the refusal is answered. Errors only on
    /// infrastructure failure.
    async fn replace<'a>(
        &self,
        otp: &NewOtp,
        mail: &Mail,
        issue: &Issue<'a>,
    ) -> Result<Admission, InfraError>;

    /// Stores `otp` beside the address's other codes of its purpose (each registration
    /// keeps its own verification code), queues `mail` and records `audit`, in one
    /// transaction.
    async fn add(&self, otp: &NewOtp, mail: &Mail, audit: &AuditEvent) -> Result<(), InfraError>;

    /// The same database work as [`OtpStore::replace`] (a code row and an outbox row,
    /// with `issue`, in one transaction), leaving nothing usable: no code matches the
    /// row and the message is recorded as already expired, so nothing is sent (but
    /// `issue`'s notice). Lets an address with no account cost the same time as one
    /// with an account.
    async fn decoy<'a>(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
        now: DateTime<Utc>,
        issue: &Issue<'a>,
    ) -> Result<Admission, InfraError>;

    /// The newest code for (email, purpose), spent or expired ones included; `None` if
    /// there is none.
    async fn find(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
    ) -> Result<Option<StoredOtp>, InfraError>;

    /// Reserves one event from each of `budgets` (keys of the `Throttle` port's limits,
    /// in order) and counts one try on every code of (email, purpose) that is unspent,
    /// unexpired at `now` and has fewer than `max_attempts` tries, all in one
    /// transaction, and returns those codes with the try counted. A try is counted
    /// before any code is compared, so concurrent tries can never exceed `max_attempts`
    /// per code. When a budget refuses, nothing at all is counted ([`Tries::Refused`]).
    async fn count_try(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
        now: DateTime<Utc>,
        max_attempts: u32,
        budgets: &[(String, Limit)],
    ) -> Result<Tries, InfraError>;

    /// Marks code `spend.id` spent, in one atomic conditional step, if and only if it
    /// still has `spend.code_hash`, is unspent, unexpired at `spend.now` and has at most
    /// `spend.max_attempts` tries counted. Returns `true` to exactly one of any number
    /// of concurrent callers. In the same transaction it gives `spend.give_back` their
    /// events back, makes `spend.account`'s change and then starts `spend.session` (as
    /// [`crate::ports::RefreshTokenStore::insert`]); when the code is not spent, none of
    /// that happens. `false` (and nothing changed) also when the account change is
    /// refused.
    async fn consume<'a>(&self, spend: &Spend<'a>) -> Result<bool, InfraError>;

    /// Spends registration code `spend.id` (as [`OtpStore::consume`], with all that goes
    /// with it) and, in the same transaction, puts
    /// `registration` into effect on account `user` (if it is active): its name and
    /// password hash, the address marked verified; the address's other verification
    /// codes are deleted and their waiting mail dropped; `audit` is recorded. `false`
    /// (and nothing changed) if the code was not spent here, or the account is not
    /// active or no longer has the address the code was sent to. The registration is
    /// the spend's account change: a `spend.account` is refused as a mistake
    /// ([`InfraError::Unexpected`], nothing changed).
    async fn complete_registration<'a>(
        &self,
        spend: &Spend<'a>,
        user: UserId,
        registration: &Registration,
        audit: &AuditEvent,
    ) -> Result<bool, InfraError>;
}
