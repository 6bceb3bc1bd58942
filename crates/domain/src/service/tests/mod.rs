//! Unit tests of the use cases against mocked ports and a fixed clock, one file per
//! use case; the fixtures they share are here.

mod account;
mod limits;
mod login;
mod password;
mod register;
mod resend;
mod sign_in;
mod tokens;
mod verify;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use futures_executor::block_on;
use mockall::predicate::eq;
use uuid::Uuid;

use super::*;
use crate::otp::{NewOtp, StoredOtp};
use crate::ports::*;
use crate::*;

const SECRET: [u8; 32] = [42; 32];

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn email() -> EmailAddress {
    EmailAddress::parse("ada@example.com").unwrap()
}

fn user(verified: bool) -> User {
    User {
        id: UserId(Uuid::from_u128(7)),
        email: email(),
        full_name: FullName::parse("Ada Stored").unwrap(),
        password_hash: PasswordHash::new("$argon2id$stored".into()),
        email_verified: verified,
        is_active: true,
        created_at: now(),
        tokens_valid_after: DateTime::from_timestamp(0, 0).unwrap(),
    }
}

fn code_hash(code: &str) -> CodeHash {
    OtpHasher::new(SECRET.to_vec()).hash(
        &email(),
        OtpPurpose::VerifyEmail,
        &OtpCode::new(code.into()),
    )
}

fn stored_otp(code: &str, attempts: u32, expires_in: Duration) -> StoredOtp {
    StoredOtp {
        id: Uuid::from_u128(99),
        email: email(),
        purpose: OtpPurpose::VerifyEmail,
        code_hash: code_hash(code),
        expires_at: now() + expires_in,
        attempts,
        consumed: false,
        registration: None,
        account: None,
    }
}

/// The registration a code carries: the name and password that entering it applies.
fn registration(name: &str, hash: &str) -> Registration {
    Registration {
        full_name: FullName::parse(name).unwrap(),
        password_hash: PasswordHash::new(hash.into()),
    }
}

fn registration_code(code: &str, name: &str, hash: &str) -> StoredOtp {
    let mut otp = stored_otp(code, 1, Duration::minutes(5));
    otp.registration = Some(registration(name, hash));
    otp
}

const CLIENT: &str = "203.0.113.1";

fn pair() -> TokenPair {
    TokenPair {
        access: "access".into(),
        refresh: "refresh".into(),
    }
}

/// Mocks with permissive defaults only where a test does not care; each test sets
/// the expectations it asserts on.
struct Mocks {
    users: MockUserRepository,
    otps: MockOtpStore,
    outbox: MockOutbox,
    tokens: MockTokenIssuer,
    passwords: MockPasswordHasher,
    throttle: MockThrottle,
    refresh_tokens: MockRefreshTokenStore,
    audit: MockAuditLog,
    audit_checked: bool,
    policy: RegistrationPolicy,
}

impl Mocks {
    fn new() -> Self {
        Self {
            users: MockUserRepository::new(),
            otps: MockOtpStore::new(),
            outbox: MockOutbox::new(),
            tokens: MockTokenIssuer::new(),
            passwords: MockPasswordHasher::new(),
            throttle: MockThrottle::new(),
            refresh_tokens: MockRefreshTokenStore::new(),
            audit: MockAuditLog::new(),
            audit_checked: false,
            policy: RegistrationPolicy::VerificationRequired,
        }
    }

    /// Every limit admits (tests of other rules).
    fn unthrottled(mut self) -> Self {
        self.throttle
            .expect_acquire()
            .returning(|_, _, _| Ok(Admission::Allowed));
        self.throttle
            .expect_acquire_all()
            .returning(|_, _| Ok(Admissions::Allowed));
        self.throttle.expect_release().returning(|_| Ok(()));
        self.refresh_tokens
            .expect_insert()
            .returning(|_, _, _| Ok(()));
        self.refresh_tokens
            .expect_revoke_all()
            .returning(|_, _, _| Ok(()));
        self
    }

    fn service(self) -> AuthService {
        self.service_with(|_| {})
    }

    /// The service with some of the mocked ports swapped by `swap` for others.
    fn service_with(mut self, swap: impl FnOnce(&mut Ports)) -> AuthService {
        // The strength estimate runs where the adapter runs hashes; here, in place.
        self.passwords.expect_check().returning(|check| Ok(check()));
        // Failed logins are recorded on their own; tests that check it set their own.
        if !self.audit_checked {
            self.audit.expect_record().returning(|_| Ok(()));
        }
        self.tokens
            .expect_refresh_expiry()
            .returning(|at| at + Duration::days(1));
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        let mut codes = MockCodeGenerator::new();
        codes
            .expect_generate()
            .with(eq(6))
            .returning(|_| OtpCode::new("123456".into()));
        let mut ports = Ports {
            users: Arc::new(self.users),
            otps: Arc::new(self.otps),
            outbox: Arc::new(self.outbox),
            tokens: Arc::new(self.tokens),
            passwords: Arc::new(self.passwords),
            throttle: Arc::new(self.throttle),
            refresh_tokens: Arc::new(self.refresh_tokens),
            clock: Arc::new(clock),
            codes: Arc::new(codes),
            audit: Arc::new(self.audit),
        };
        swap(&mut ports);
        AuthService::new(
            ports,
            OtpHasher::new(SECRET.to_vec()),
            ServiceSettings {
                policy: self.policy,
                otp: OtpSettings::default(),
                limits: AbuseLimits::default(),
                password_min_score: 3,
                refresh_grace: Duration::seconds(10),
                session_max: Duration::days(30),
                sign_in_by_code: true,
            },
        )
    }

    fn hashing_succeeds(&mut self) {
        self.passwords
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("$argon2id$new".into())));
    }
}

/// One turn of the executor, as a port's answer from across a network takes: pending
/// once, then ready. Tests of what runs while another port's call is outstanding.
async fn a_turn() {
    let mut taken = false;
    futures_util::future::poll_fn(|cx| {
        if taken {
            std::task::Poll::Ready(())
        } else {
            taken = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

fn register_input() -> RegisterInput {
    RegisterInput {
        email: email(),
        full_name: FullName::parse("Ada Request").unwrap(),
        password: Password::parse("correct horse battery".into()).unwrap(),
        context: RequestContext::default(),
    }
}

/// Captures the mail queued (with a code, or alone in the outbox) and the codes stored.
fn capture_mail(mocks: &mut Mocks) -> Arc<Mutex<Vec<Mail>>> {
    capture(mocks).0
}

/// Accounts whose insert (always of a taken address) and lookup (an unverified
/// account) each take a turn to answer, as a store's round trip does, and write down
/// when they are asked and when they answer; nothing else is asked of them.
struct AccountsTakeATurn(Captured<&'static str>);

#[async_trait::async_trait]
impl UserRepository for AccountsTakeATurn {
    async fn create<'a>(
        &self,
        _user: &NewUser,
        _first_code: Option<&'a FirstCode>,
    ) -> Result<User, CreateUserError> {
        self.0.lock().unwrap().push("insert asked");
        a_turn().await;
        self.0.lock().unwrap().push("insert answered");
        Err(CreateUserError::EmailTaken)
    }

    async fn find_by_email(&self, _email: &EmailAddress) -> Result<Option<User>, InfraError> {
        self.0.lock().unwrap().push("account asked");
        a_turn().await;
        self.0.lock().unwrap().push("account answered");
        Ok(Some(user(false)))
    }

    async fn find_by_id(&self, _id: UserId) -> Result<Option<User>, InfraError> {
        Ok(None)
    }

    async fn mark_email_verified(&self, _id: UserId, _at: DateTime<Utc>) -> Result<(), InfraError> {
        Ok(())
    }

    async fn set_active(
        &self,
        _id: UserId,
        _active: bool,
        _at: DateTime<Utc>,
        _audit: &AuditEvent,
    ) -> Result<(), InfraError> {
        Ok(())
    }

    async fn delete(
        &self,
        _id: UserId,
        _email: &EmailAddress,
        _goodbye: &Mail,
        _now: DateTime<Utc>,
        _audit: &AuditEvent,
    ) -> Result<bool, InfraError> {
        Ok(false)
    }

    async fn set_password<'a>(
        &self,
        _id: UserId,
        _hash: &PasswordHash,
        _verify_email: bool,
        _at: DateTime<Utc>,
        _audit: &AuditEvent,
        _notice: Option<&'a Mail>,
        _give_back: GiveBack<'a>,
    ) -> Result<(), InfraError> {
        Ok(())
    }
}

/// A hasher whose hash takes a turn to answer, as a hash on a thread of its own does,
/// and writes down when it is asked and when it answers.
struct HashTakesATurn(Captured<&'static str>);

#[async_trait::async_trait]
impl PasswordHasher for HashTakesATurn {
    async fn hash(&self, _password: &Password) -> Result<PasswordHash, HashError> {
        self.0.lock().unwrap().push("hash asked");
        a_turn().await;
        self.0.lock().unwrap().push("hash answered");
        Ok(PasswordHash::new("$argon2id$new".into()))
    }

    async fn verify(
        &self,
        _password: &Password,
        _hash: Option<PasswordHash>,
    ) -> Result<bool, HashError> {
        Ok(false)
    }
}

type Captured<T> = Arc<Mutex<Vec<T>>>;

fn capture(mocks: &mut Mocks) -> (Captured<Mail>, Captured<NewOtp>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let codes = Arc::new(Mutex::new(Vec::new()));
    let (with_code, alone, stored) = (sent.clone(), sent.clone(), codes.clone());
    let (added_mail, added) = (sent.clone(), codes.clone());
    let (notices, decoy_notices) = (sent.clone(), sent.clone());
    mocks
        .otps
        .expect_replace()
        .returning(move |otp, mail, issue| {
            stored.lock().unwrap().push(otp.clone());
            with_code.lock().unwrap().push(mail.clone());
            notices.lock().unwrap().extend(issue.notice.cloned());
            Ok(Admission::Allowed)
        });
    mocks.otps.expect_add().returning(move |otp, mail, _| {
        added.lock().unwrap().push(otp.clone());
        added_mail.lock().unwrap().push(mail.clone());
        Ok(())
    });
    mocks.otps.expect_decoy().returning(move |_, _, _, issue| {
        decoy_notices.lock().unwrap().extend(issue.notice.cloned());
        Ok(Admission::Allowed)
    });
    mocks.outbox.expect_enqueue().returning(move |mail, _, _| {
        alone.lock().unwrap().push(mail.clone());
        Ok(())
    });
    (sent, codes)
}

fn verify(m: Mocks, code: &str) -> Result<(User, TokenPair), VerifyOtpError> {
    verify_with(m, code, None)
}

fn verify_with(
    m: Mocks,
    code: &str,
    password: Option<&str>,
) -> Result<(User, TokenPair), VerifyOtpError> {
    block_on(m.service().verify_email(VerifyInput {
        email: email(),
        code: OtpCode::new(code.into()),
        password: password.map(|p| Password::for_login(p.into()).unwrap()),
        client: CLIENT.into(),
        context: RequestContext::default(),
    }))
}

/// The store's open codes for the address (their try already counted).
fn open_codes(m: &mut Mocks, codes: Vec<StoredOtp>) {
    m.otps
        .expect_count_try()
        .withf(|e, purpose, at, max, _| {
            *e == email() && *purpose == OtpPurpose::VerifyEmail && *at == now() && *max == 5
        })
        .times(1)
        .return_once(move |_, _, _, _, _| Ok(Tries::Counted(codes)));
}

fn login(m: Mocks) -> Result<TokenPair, LoginError> {
    block_on(m.service().login(LoginInput {
        email: email(),
        password: Password::for_login("correct horse battery".into()).unwrap(),
        client: CLIENT.into(),
        context: RequestContext::default(),
    }))
}

fn claims(kind: TokenKind) -> TokenClaims {
    TokenClaims {
        user_id: UserId(Uuid::from_u128(7)),
        email: email(),
        email_verified: true,
        kind,
        jti: "j".into(),
        issued_at: now() - Duration::minutes(1),
        expires_at: now() + Duration::days(1),
        session_id: Some(Uuid::from_u128(3)),
    }
}

/// The signed-in account's password budget (`password-check:` its id).
fn password_budget() -> String {
    format!("password-check:{}", user(true).id)
}

/// Signed in, and the account's password proves right, its try reserved once first.
fn password_proves_right(m: &mut Mocks) {
    signed_in(m);
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.throttle
        .expect_acquire()
        .withf(|key, _, _| key == password_budget())
        .times(1)
        .returning(|_, _, _| Ok(Admission::Allowed));
}

/// Its password's try given back on its own, once.
fn password_try_given_back(m: &mut Mocks) {
    m.throttle
        .expect_release()
        .withf(|give_back| give_back.keys == [password_budget()] && give_back.reserved_at == now())
        .times(1)
        .returning(|_| Ok(()));
}

/// Its password's try given back after a failed write, once, and only if the store
/// can take it without waiting.
fn password_try_given_back_after_failure(m: &mut Mocks) {
    m.throttle
        .expect_release_at_once()
        .withf(|give_back| give_back.keys == [password_budget()] && give_back.reserved_at == now())
        .times(1)
        .returning(|_| Ok(true));
    m.throttle.expect_release().never();
}

/// Any access token is valid, for the verified account
/// (`user(true)`).
fn signed_in(m: &mut Mocks) {
    m.tokens
        .expect_verify()
        .returning(|_, kind, _| Ok(claims(kind)));
    m.users
        .expect_find_by_id()
        .returning(|_| Ok(Some(user(true))));
}

fn denied(seconds: i64) -> Admission {
    Admission::Denied {
        retry_after: Duration::seconds(seconds),
    }
}

fn reset_input(code: &str) -> ResetInput {
    ResetInput {
        email: email(),
        code: OtpCode::new(code.into()),
        new_password: Password::parse("a brand new passphrase".into()).unwrap(),
        client: CLIENT.into(),
        context: RequestContext::default(),
    }
}

fn sessions_hash(token: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

fn refresh_with(
    rotation: Rotation,
) -> (Result<TokenPair, RefreshError>, Arc<Mutex<Vec<TokenIds>>>) {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_read_unverified()
        .returning(|_, kind, _| Ok(claims(kind)));
    // Where the store vouches for the token (it matched a token it holds), the
    // signature is not checked; where it refuses, it is (for the time it takes).
    let vouched = !matches!(rotation, Rotation::Refused | Rotation::Superseded);
    // An earlier token of the session, genuine: the session is revoked.
    let superseded = rotation == Rotation::Superseded;
    m.refresh_tokens
        .expect_revoke_family()
        .withf(|session, at, audit| {
            *session == Uuid::from_u128(3)
                && *at == now()
                && audit.kind == AuditKind::RefreshReuseDetected
        })
        .times(usize::from(superseded))
        .returning(|_, _, _| Ok(()));
    m.tokens
        .expect_verify()
        .times(usize::from(!vouched))
        .returning(|_, kind, _| Ok(claims(kind)));
    m.users
        .expect_find_by_id()
        .returning(|_| Ok(Some(user(true))));
    let signed = Arc::new(Mutex::new(Vec::new()));
    let record = signed.clone();
    m.tokens.expect_issue().returning(move |_, ids| {
        record.lock().unwrap().push(ids.clone());
        Ok(TokenPair {
            access: format!("a-{}", ids.access_jti),
            refresh: format!("r-{}", ids.refresh_jti),
        })
    });
    m.refresh_tokens
        .expect_rotate()
        .return_once(move |_, _, _, _, _, _| Ok(rotation));
    (
        block_on(m.service().refresh("r", &RequestContext::default())),
        signed,
    )
}
