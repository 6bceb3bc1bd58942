//! The contract every persistence adapter must meet: one module per port, the
//! fixtures they share here.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use passcode_domain::otp::NewOtp;
use passcode_domain::ports::AuditLog;
use passcode_domain::ports::{
    AccountChange, Admission, Admissions, CreateUserError, EmailChange, FirstCode, GiveBack,
    HealthCheck, Issue, Limit, Mail, OtpStore, Outbox, OutboxStatus, PasswordSet, SignedFor, Spend,
    Throttle, Tries, UserRepository,
};
use passcode_domain::{
    AuditEvent, AuditKind, AuditQuery, CodeHash, EmailAddress, FullName, InfraError, NewUser,
    OtpCode, OtpPurpose, PasswordHash, TokenSubject, User, UserId,
};
use uuid::Uuid;

mod audit;
mod health;
mod otps;
mod outbox;
mod refresh_tokens;
mod registrations;
mod throttle;
mod users;

pub use audit::*;
pub use health::*;
pub use otps::*;
pub use outbox::*;
pub use refresh_tokens::*;
pub use registrations::*;
pub use throttle::*;
pub use users::*;

pub trait Store:
    UserRepository
    + AuditLog
    + OtpStore
    + Outbox
    + Throttle
    + passcode_domain::ports::RefreshTokenStore
    + HealthCheck
    + Clone
    + 'static
{
}
impl<T> Store for T where
    T: UserRepository
        + AuditLog
        + OtpStore
        + Outbox
        + Throttle
        + passcode_domain::ports::RefreshTokenStore
        + HealthCheck
        + Clone
        + 'static
{
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_123).unwrap()
}

/// `keys` to give back, counted at `now()`.
fn counted_now(keys: &[String]) -> GiveBack<'_> {
    counted_at(keys, now())
}

/// `keys` to give back, counted at `at`.
fn counted_at(keys: &[String], at: DateTime<Utc>) -> GiveBack<'_> {
    GiveBack {
        keys,
        reserved_at: at,
    }
}

fn email(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn new_user(address: &str) -> NewUser {
    NewUser {
        id: UserId::new_random(),
        email: email(address),
        full_name: FullName::parse("Ada Lovelace").unwrap(),
        password_hash: PasswordHash::new("$argon2id$v=19$test".into()),
        created_at: now(),
    }
}

/// An account in the store, and the `SignedFor` of a token issued for it now.
async fn account(store: &impl Store, address: &str) -> (UserId, SignedFor) {
    let user = store.create(&new_user(address), None).await.unwrap();
    (user.id, signed_for(&user))
}

/// The `SignedFor` of a token issued now for `user` as it is.
fn signed_for(user: &User) -> SignedFor {
    SignedFor {
        subject: TokenSubject {
            user_id: user.id,
            email: user.email.clone(),
            email_verified: user.email_verified,
        },
        presented_issued_at: now(),
    }
}

fn mail_for(otp: &NewOtp) -> Mail {
    Mail::Code {
        to: otp.email.clone(),
        full_name: "Ada".into(),
        code: OtpCode::new("123456".into()),
        purpose: otp.purpose,
        valid_for: otp.expires_at - otp.created_at,
    }
}

fn notice(address: &str) -> Mail {
    Mail::RegistrationAttempt {
        to: email(address),
        full_name: "Ada".into(),
    }
}

/// A reset code's account change, owned so that a test can lend it to a `Spend`: a
/// new password that verifies the address, its event and its notice.
struct Reset {
    hash: PasswordHash,
    audit: AuditEvent,
    notice: Mail,
}

impl Reset {
    fn new(hash: &str) -> Self {
        Self {
            hash: PasswordHash::new(hash.into()),
            audit: event(AuditKind::PasswordReset),
            notice: notice("ada@example.com"),
        }
    }

    /// The change, for account `user`.
    fn of(&self, user: UserId) -> AccountChange<'_> {
        AccountChange::Password(PasswordSet {
            user,
            hash: &self.hash,
            verify_email: true,
            audit: &self.audit,
            notice: Some(&self.notice),
        })
    }
}

fn new_otp(address: &str, purpose: OtpPurpose, hash: u8) -> NewOtp {
    NewOtp {
        id: Uuid::new_v4(),
        email: email(address),
        purpose,
        code_hash: CodeHash::from_bytes(vec![hash; 32]),
        created_at: now(),
        expires_at: now() + Duration::minutes(10),
        registration: None,
        account: None,
    }
}

fn event(kind: AuditKind) -> AuditEvent {
    AuditEvent {
        kind,
        at: now(),
        user_id: None,
        email: Some(email("ada@example.com")),
        client: Some("203.0.113.9".into()),
        request_id: Some("req-1".into()),
    }
}

async fn events(store: &impl Store, kind: AuditKind) -> usize {
    logged(store, kind).await.len()
}

/// The recorded events of `kind`.
async fn logged(store: &impl Store, kind: AuditKind) -> Vec<AuditEvent> {
    store
        .list(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

fn registration(name: &str, hash: &str) -> passcode_domain::Registration {
    passcode_domain::Registration {
        full_name: FullName::parse(name).unwrap(),
        password_hash: PasswordHash::new(hash.into()),
    }
}

fn registration_otp(address: &str, hash: u8, name: &str, password_hash: &str) -> NewOtp {
    NewOtp {
        registration: Some(registration(name, password_hash)),
        ..new_otp(address, OtpPurpose::VerifyEmail, hash)
    }
}

trait CountedExt {
    fn counted(self) -> Vec<passcode_domain::otp::StoredOtp>;
}

impl CountedExt for Tries {
    fn counted(self) -> Vec<passcode_domain::otp::StoredOtp> {
        match self {
            Tries::Counted(open) => open,
            Tries::Refused { .. } => panic!("refused with no budget: {self:?}"),
        }
    }
}

/// An account of `address` with one registration waiting for its code (see
/// `registration_otp`).
async fn account_registering(
    store: &impl Store,
    address: &str,
    hash: u8,
    name: &str,
    password_hash: &str,
) -> (User, NewOtp) {
    let user = store.create(&new_user(address), None).await.unwrap();
    let otp = registration_otp(address, hash, name, password_hash);
    store
        .add(&otp, &mail_for(&otp), &event(AuditKind::Registered))
        .await
        .unwrap();
    (user, otp)
}

/// How many of the tasks answered `true`.
async fn winners(tasks: Vec<tokio::task::JoinHandle<bool>>) -> usize {
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    winners
}

/// Counts one try on the open codes of `otp`'s address and purpose; the count of `otp`'s
/// own code if it was open.
async fn count(store: &impl Store, otp: &NewOtp, max: u32) -> Option<u32> {
    store
        .count_try(&otp.email, otp.purpose, now(), max, &[])
        .await
        .unwrap()
        .counted()
        .into_iter()
        .find(|found| found.id == otp.id)
        .map(|found| found.attempts)
}

fn per_hour(limit: u32) -> Limit {
    Limit {
        limit,
        window: Duration::hours(1),
        cooldown: Duration::zero(),
    }
}

fn refresh_token(hash: u8, family: Uuid, user: UserId) -> passcode_domain::ports::NewRefreshToken {
    passcode_domain::ports::NewRefreshToken {
        token_hash: vec![hash; 32],
        family_id: family,
        user_id: user,
        expires_at: now() + Duration::days(1),
        created_at: now(),
        family_expires_at: now() + Duration::days(30),
        origin: passcode_domain::RequestContext {
            client: Some("203.0.113.9".into()),
            request_id: None,
            user_agent: Some(format!("agent {hash}")),
        },
    }
}

fn token_ids(n: u8) -> passcode_domain::ports::TokenIds {
    passcode_domain::ports::TokenIds {
        session_id: Uuid::nil(),
        access_jti: format!("a{n}"),
        refresh_jti: format!("r{n}"),
        issued_at: now(),
    }
}
