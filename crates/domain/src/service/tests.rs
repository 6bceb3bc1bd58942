//! Unit tests of the use cases against mocked ports and a fixed clock.

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
        self.throttle.expect_release().returning(|_| Ok(()));
        self.refresh_tokens.expect_insert().returning(|_, _| Ok(()));
        self.refresh_tokens
            .expect_revoke_all()
            .returning(|_, _, _| Ok(()));
        self
    }

    fn service(mut self) -> AuthService {
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
        AuthService::new(
            Ports {
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
            },
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

type Captured<T> = Arc<Mutex<Vec<T>>>;

fn capture(mocks: &mut Mocks) -> (Captured<Mail>, Captured<NewOtp>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let codes = Arc::new(Mutex::new(Vec::new()));
    let (with_code, alone, stored) = (sent.clone(), sent.clone(), codes.clone());
    let (added_mail, added) = (sent.clone(), codes.clone());
    mocks.otps.expect_replace().returning(move |otp, mail| {
        stored.lock().unwrap().push(otp.clone());
        with_code.lock().unwrap().push(mail.clone());
        Ok(())
    });
    mocks.otps.expect_add().returning(move |otp, mail, _| {
        added.lock().unwrap().push(otp.clone());
        added_mail.lock().unwrap().push(mail.clone());
        Ok(())
    });
    mocks.otps.expect_decoy().returning(|_, _, _| Ok(()));
    mocks.outbox.expect_enqueue().returning(move |mail, _, _| {
        alone.lock().unwrap().push(mail.clone());
        Ok(())
    });
    (sent, codes)
}

#[test]
fn register_new_address_stores_only_the_hash_and_mails_the_code() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.users
        .expect_create()
        .times(1)
        .returning(|_| Ok(user(false)));
    let (sent, codes) = capture(&mut m);

    let outcome = block_on(m.service().register(register_input())).unwrap();

    match outcome {
        Registered::PendingVerification {
            email: e,
            full_name,
        } => {
            assert_eq!(e, email());
            assert_eq!(full_name.as_str(), "Ada Request", "echoes the request");
        }
        other => panic!("unexpected {other:?}"),
    }
    let codes = codes.lock().unwrap();
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].code_hash, code_hash("123456"));
    assert_eq!(codes[0].purpose, OtpPurpose::VerifyEmail);
    assert_eq!(codes[0].expires_at, now() + Duration::minutes(10));
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    match &sent[0] {
        Mail::Code {
            code,
            purpose,
            valid_for,
            ..
        } => {
            assert_eq!(code.expose(), "123456");
            assert_eq!(*purpose, OtpPurpose::VerifyEmail);
            assert_eq!(*valid_for, Duration::minutes(10));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn register_existing_unverified_address_acts_as_resend() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.users
        .expect_create()
        .returning(|_| Err(CreateUserError::EmailTaken));
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    let sent = capture_mail(&mut m);

    let outcome = block_on(m.service().register(register_input())).unwrap();

    assert!(
        matches!(outcome, Registered::PendingVerification { ref full_name, .. } if full_name.as_str() == "Ada Request")
    );
    assert!(matches!(sent.lock().unwrap()[0], Mail::Code { .. }));
}

#[test]
fn register_existing_verified_address_mails_a_notice_never_a_code() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.users
        .expect_create()
        .returning(|_| Err(CreateUserError::EmailTaken));
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    let (sent, codes) = capture(&mut m);

    let outcome = block_on(m.service().register(register_input())).unwrap();

    assert!(matches!(outcome, Registered::PendingVerification { .. }));
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert!(matches!(sent[0], Mail::RegistrationAttempt { .. }));
    assert!(
        codes.lock().unwrap().is_empty(),
        "no code for a verified address"
    );
}

#[test]
fn register_hashes_the_password_even_for_a_taken_address() {
    let mut m = Mocks::new().unthrottled();
    m.passwords
        .expect_hash()
        .times(1)
        .returning(|_| Ok(PasswordHash::new("h".into())));
    m.users
        .expect_create()
        .returning(|_| Err(CreateUserError::EmailTaken));
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    capture_mail(&mut m);
    block_on(m.service().register(register_input())).unwrap();
}

#[test]
fn register_sheds_load_when_hashing_is_busy() {
    let mut m = Mocks::new().unthrottled();
    m.passwords
        .expect_hash()
        .returning(|_| Err(HashError::Busy));
    m.users.expect_create().never();
    let error = block_on(m.service().register(register_input())).unwrap_err();
    assert!(matches!(error, RegisterError::Busy));
}

#[test]
fn register_in_compatibility_policy_returns_tokens() {
    let mut m = Mocks::new().unthrottled();
    m.policy = RegistrationPolicy::TokensBeforeVerification;
    m.hashing_succeeds();
    m.users.expect_create().returning(|_| Ok(user(false)));
    capture_mail(&mut m);
    m.tokens
        .expect_issue()
        .withf(|subject, ids| !subject.email_verified && ids.issued_at == now())
        .returning(|_, _| Ok(pair()));

    let outcome = block_on(m.service().register(register_input())).unwrap();
    assert!(matches!(outcome, Registered::WithTokens { ref tokens, .. } if *tokens == pair()));
}

#[test]
fn register_in_compatibility_policy_refuses_a_taken_address() {
    let mut m = Mocks::new().unthrottled();
    m.policy = RegistrationPolicy::TokensBeforeVerification;
    m.hashing_succeeds();
    m.users
        .expect_create()
        .returning(|_| Err(CreateUserError::EmailTaken));
    m.outbox.expect_enqueue().never();
    m.otps.expect_replace().never();
    let error = block_on(m.service().register(register_input())).unwrap_err();
    assert!(matches!(error, RegisterError::EmailTaken));
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

#[test]
fn verify_puts_the_registration_of_the_entered_code_into_effect() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![
            registration_code("111111", "Mallory", "$argon2id$mallory"),
            {
                let mut own = registration_code("123456", "Ada Owner", "$argon2id$ada");
                own.id = Uuid::from_u128(100);
                own
            },
        ],
    );
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.otps
        .expect_complete_registration()
        .withf(|id, hash, user_id, r, at, max, audit| {
            assert_eq!(audit.kind, AuditKind::Verified);
            *id == Uuid::from_u128(100)
                && *hash == code_hash("123456")
                && *user_id == UserId(Uuid::from_u128(7))
                && r.password_hash.as_str() == "$argon2id$ada"
                && r.full_name.as_str() == "Ada Owner"
                && *at == now()
                && *max == 5
        })
        .times(1)
        .returning(|_, _, _, _, _, _, _| Ok(true));
    m.otps.expect_consume().never();
    m.tokens
        .expect_issue()
        .withf(|subject, _| subject.email_verified)
        .returning(|_, _| Ok(pair()));

    let (user, tokens) = verify(m, "123456").unwrap();
    assert!(user.email_verified);
    assert_eq!(user.full_name.as_str(), "Ada Owner");
    assert_eq!(user.password_hash.as_str(), "$argon2id$ada");
    assert_eq!(tokens, pair());
}

#[test]
fn verify_with_a_password_refuses_a_code_of_a_registration_with_another_password() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Mallory", "$argon2id$mallory")],
    );
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.passwords
        .expect_verify()
        .withf(|_, hash| hash.as_ref().map(PasswordHash::as_str) == Some("$argon2id$mallory"))
        .times(1)
        .returning(|_, _| Ok(false));
    m.otps.expect_complete_registration().never();
    m.tokens.expect_issue().never();
    assert!(matches!(
        verify_with(m, "123456", Some("the owner's own password")),
        Err(VerifyOtpError::Invalid)
    ));
}

#[test]
fn verify_with_the_registrations_own_password_succeeds() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada Owner", "$argon2id$ada")],
    );
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.otps
        .expect_complete_registration()
        .returning(|_, _, _, _, _, _, _| Ok(true));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    verify_with(m, "123456", Some("correct horse battery")).unwrap();
}

#[test]
fn verify_of_a_deactivated_account_is_refused() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada Owner", "$argon2id$ada")],
    );
    m.users.expect_find_by_email().returning(|_| {
        let mut u = user(false);
        u.is_active = false;
        Ok(Some(u))
    });
    m.otps.expect_complete_registration().never();
    m.tokens.expect_issue().never();
    assert!(matches!(verify(m, "123456"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_of_a_code_stored_without_its_registration_consumes_and_marks_verified() {
    let mut m = Mocks::new().unthrottled();
    open_codes(&mut m, vec![stored_otp("123456", 1, Duration::minutes(5))]);
    m.otps
        .expect_consume()
        .withf(|id, hash, at, max| {
            *id == Uuid::from_u128(99) && *hash == code_hash("123456") && *at == now() && *max == 5
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.users
        .expect_mark_email_verified()
        .with(eq(UserId(Uuid::from_u128(7))), eq(now()))
        .times(1)
        .returning(|_, _| Ok(()));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    verify(m, "123456").unwrap();
}

#[test]
fn verify_counts_the_try_before_comparing_and_refuses_a_wrong_code() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada", "$argon2id$ada")],
    );
    m.otps.expect_complete_registration().never();
    m.otps.expect_consume().never();
    assert!(matches!(verify(m, "654321"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_refuses_when_no_code_is_open() {
    // Expired, spent, out of tries, or never sent: the store returns no open code.
    let mut m = Mocks::new().unthrottled();
    open_codes(&mut m, vec![]);
    m.users.expect_mark_email_verified().never();
    m.otps.expect_consume().never();
    assert!(matches!(verify(m, "123456"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_loses_cleanly_when_a_concurrent_request_spent_the_code() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada", "$argon2id$ada")],
    );
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.otps
        .expect_complete_registration()
        .returning(|_, _, _, _, _, _, _| Ok(false));
    m.tokens.expect_issue().never();
    assert!(matches!(verify(m, "123456"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_refuses_a_malformed_code_that_happens_to_match() {
    let mut m = Mocks::new().unthrottled();
    open_codes(&mut m, vec![stored_otp("12345x", 1, Duration::minutes(5))]);
    m.otps.expect_consume().never();
    assert!(matches!(verify(m, "12345x"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_reports_infrastructure_failure_as_such() {
    let mut m = Mocks::new().unthrottled();
    m.otps
        .expect_count_try()
        .returning(|_, _, _, _, _| Err(InfraError::Unavailable(anyhow::anyhow!("pool timeout"))));
    assert!(matches!(
        verify(m, "123456"),
        Err(VerifyOtpError::Infra(InfraError::Unavailable(_)))
    ));
}

#[test]
fn resend_mails_a_new_code_carrying_the_newest_registration() {
    let mut m = Mocks::new().unthrottled();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.otps.expect_find().returning(|_, _| {
        Ok(Some(registration_code(
            "111111",
            "Ada Newest",
            "$argon2id$newest",
        )))
    });
    let (sent, codes) = capture(&mut m);
    block_on(m.service().resend_verification(&email())).unwrap();
    assert_eq!(sent.lock().unwrap().len(), 1);
    let codes = codes.lock().unwrap();
    assert_eq!(
        codes[0].registration,
        Some(registration("Ada Newest", "$argon2id$newest"))
    );
}

#[test]
fn resend_to_a_verified_deactivated_or_unknown_address_does_the_same_work_and_mails_nothing() {
    let inactive = {
        let mut u = user(false);
        u.is_active = false;
        u
    };
    for found in [Some(user(true)), Some(inactive), None] {
        let mut m = Mocks::new().unthrottled();
        m.users
            .expect_find_by_email()
            .returning(move |_| Ok(found.clone()));
        m.otps.expect_replace().never();
        m.otps.expect_add().never();
        m.outbox.expect_enqueue().never();
        m.otps.expect_find().times(1).returning(|_, _| Ok(None));
        m.otps
            .expect_decoy()
            .withf(|e, purpose, at| {
                *e == email() && *purpose == OtpPurpose::VerifyEmail && *at == now()
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        block_on(m.service().resend_verification(&email())).unwrap();
    }
}

fn login(m: Mocks) -> Result<TokenPair, LoginError> {
    block_on(m.service().login(LoginInput {
        email: email(),
        password: Password::for_login("correct horse battery".into()).unwrap(),
        client: CLIENT.into(),
        context: RequestContext::default(),
    }))
}

#[test]
fn login_of_unknown_address_still_verifies_against_a_dummy_hash() {
    let mut m = Mocks::new().unthrottled();
    m.users.expect_find_by_email().returning(|_| Ok(None));
    m.passwords
        .expect_verify()
        .withf(|_, hash| hash.is_none())
        .times(1)
        .returning(|_, _| Ok(false));
    assert!(matches!(login(m), Err(LoginError::InvalidCredentials)));
}

#[test]
fn login_with_wrong_password_is_refused() {
    let mut m = Mocks::new().unthrottled();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    m.passwords.expect_verify().returning(|_, _| Ok(false));
    m.tokens.expect_issue().never();
    assert!(matches!(login(m), Err(LoginError::InvalidCredentials)));
}

#[test]
fn login_of_unverified_account_is_refused_by_default() {
    let mut m = Mocks::new().unthrottled();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.tokens.expect_issue().never();
    assert!(matches!(login(m), Err(LoginError::EmailNotVerified)));
}

#[test]
fn login_of_unverified_account_works_in_compatibility_policy() {
    let mut m = Mocks::new().unthrottled();
    m.policy = RegistrationPolicy::TokensBeforeVerification;
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    assert_eq!(login(m).unwrap(), pair());
}

#[test]
fn login_of_inactive_account_is_refused_like_a_wrong_password() {
    let mut m = Mocks::new().unthrottled();
    m.users.expect_find_by_email().returning(|_| {
        let mut u = user(true);
        u.is_active = false;
        Ok(Some(u))
    });
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    assert!(matches!(login(m), Err(LoginError::InvalidCredentials)));
}

#[test]
fn login_sheds_load_when_hashing_is_busy() {
    let mut m = Mocks::new().unthrottled();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    m.passwords
        .expect_verify()
        .returning(|_, _| Err(HashError::Busy));
    assert!(matches!(login(m), Err(LoginError::Busy)));
}

fn claims(kind: TokenKind) -> TokenClaims {
    TokenClaims {
        user_id: UserId(Uuid::from_u128(7)),
        kind,
        jti: "j".into(),
        issued_at: now() - Duration::minutes(1),
        expires_at: now() + Duration::days(1),
        session_id: Some(Uuid::from_u128(3)),
    }
}

#[test]
fn refresh_issues_a_pair_with_the_accounts_current_facts() {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_verify()
        .with(eq("r"), eq(TokenKind::Refresh), eq(now()))
        .returning(|_, kind, _| Ok(claims(kind)));
    m.users
        .expect_find_by_id()
        .returning(|_| Ok(Some(user(true))));
    m.tokens
        .expect_issue()
        .withf(|subject, _| subject.email_verified)
        .returning(|_, _| Ok(pair()));
    m.refresh_tokens
        .expect_rotate()
        .withf(|presented, at, grace, _, ids, _| {
            presented == sessions_hash("r").as_slice()
                && *at == now()
                && *grace == Duration::seconds(10)
                && ids.issued_at == now()
        })
        .times(1)
        .returning(|_, _, _, _, _, _| Ok(Rotation::Rotated));
    assert_eq!(
        block_on(m.service().refresh("r", &RequestContext::default())).unwrap(),
        pair()
    );
}

#[test]
fn refresh_for_a_deleted_account_is_refused() {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_verify()
        .returning(|_, kind, _| Ok(claims(kind)));
    m.users.expect_find_by_id().returning(|_| Ok(None));
    m.tokens.expect_issue().never();
    assert!(matches!(
        block_on(m.service().refresh("r", &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn refresh_with_an_invalid_token_is_refused() {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_verify()
        .returning(|_, _, _| Err(TokenError::Invalid));
    assert!(matches!(
        block_on(m.service().refresh("r", &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn current_user_requires_an_access_token_of_an_active_account() {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_verify()
        .with(eq("a"), eq(TokenKind::Access), eq(now()))
        .returning(|_, kind, _| Ok(claims(kind)));
    m.users
        .expect_find_by_id()
        .returning(|_| Ok(Some(user(true))));
    assert_eq!(block_on(m.service().current_user("a")).unwrap(), user(true));
}

fn denied(seconds: i64) -> Admission {
    Admission::Denied {
        retry_after: Duration::seconds(seconds),
    }
}

#[test]
fn verify_spends_a_try_of_both_budgets_and_gives_both_back_on_success() {
    let mut m = Mocks::new();
    let buckets = Arc::new(Mutex::new(Vec::new()));
    let seen = buckets.clone();
    // The budgets are reserved by the store, with the try, in one transaction.
    m.throttle.expect_acquire().never();
    m.otps
        .expect_count_try()
        .times(1)
        .returning(move |_, _, at, _, budgets| {
            assert_eq!(at, now());
            for (bucket, limit) in budgets {
                seen.lock().unwrap().push((bucket.clone(), limit.limit));
            }
            Ok(Tries::Counted(vec![registration_code(
                "123456",
                "Ada",
                "$argon2id$ada",
            )]))
        });
    let released = Arc::new(Mutex::new(Vec::new()));
    let gave_back = released.clone();
    m.throttle
        .expect_release()
        .times(2)
        .returning(move |bucket| {
            gave_back.lock().unwrap().push(bucket.to_owned());
            Ok(())
        });
    m.refresh_tokens.expect_insert().returning(|_, _| Ok(()));
    m.otps
        .expect_complete_registration()
        .returning(|_, _, _, _, _, _, _| Ok(true));
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    verify(m, "123456").unwrap();
    assert_eq!(
        *buckets.lock().unwrap(),
        [
            ("guess:ada@example.com:203.0.113.1".to_owned(), 5),
            ("guess:ada@example.com".to_owned(), 10)
        ],
        "the client's share first, then the address's ceiling"
    );
    assert_eq!(released.lock().unwrap().len(), 2);
}

#[test]
fn verify_keeps_the_try_spent_on_a_wrong_code() {
    let mut m = Mocks::new();
    m.throttle.expect_release().never();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada", "$argon2id$ada")],
    );
    assert!(matches!(verify(m, "654321"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_with_a_budget_spent_refuses_even_the_right_code_and_gives_nothing_back() {
    for budget in [0, 1] {
        let mut m = Mocks::new();
        m.otps.expect_count_try().returning(move |_, _, _, _, _| {
            Ok(Tries::Refused {
                budget,
                retry_after: Duration::seconds(600),
            })
        });
        // The store counted nothing: there is nothing to give back.
        m.throttle.expect_release().never();
        m.otps.expect_consume().never();
        match verify(m, "123456") {
            Err(VerifyOtpError::Throttled(t)) => {
                assert_eq!(t.retry_after, Duration::seconds(600));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_refused_guess_budget_is_answered_from_memory_until_it_ends() {
    let mut m = Mocks::new();
    m.otps
        .expect_count_try()
        .times(1)
        .returning(|_, _, _, _, _| {
            Ok(Tries::Refused {
                budget: 1,
                retry_after: Duration::seconds(600),
            })
        });
    let service = m.service();
    for _ in 0..3 {
        let error = block_on(service.verify_email(VerifyInput {
            email: email(),
            code: OtpCode::new("123456".into()),
            password: None,
            client: CLIENT.into(),
            context: RequestContext::default(),
        }))
        .unwrap_err();
        assert!(matches!(error, VerifyOtpError::Throttled(_)), "{error:?}");
    }
}

#[test]
fn login_spends_both_failure_budgets_and_gives_them_back_on_success() {
    let mut m = Mocks::new();
    let buckets = Arc::new(Mutex::new(Vec::new()));
    let seen = buckets.clone();
    m.throttle
        .expect_acquire()
        .times(2)
        .returning(move |bucket, limit, _| {
            seen.lock().unwrap().push((bucket.to_owned(), limit.limit));
            Ok(Admission::Allowed)
        });
    m.throttle.expect_release().times(2).returning(|_| Ok(()));
    m.refresh_tokens.expect_insert().returning(|_, _| Ok(()));
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    login(m).unwrap();
    assert_eq!(
        *buckets.lock().unwrap(),
        [
            ("login:ada@example.com:203.0.113.1".to_owned(), 10),
            ("login:ada@example.com".to_owned(), 100)
        ]
    );
}

#[test]
fn login_with_a_budget_spent_is_throttled_before_any_hashing_for_any_address() {
    for found in [Some(user(true)), None] {
        let mut m = Mocks::new();
        m.throttle
            .expect_acquire()
            .returning(|_, _, _| Ok(denied(120)));
        m.users
            .expect_find_by_email()
            .returning(move |_| Ok(found.clone()));
        m.passwords.expect_verify().never();
        assert!(
            matches!(login(m), Err(LoginError::Throttled(t)) if t.retry_after == Duration::seconds(120))
        );
    }
}

#[test]
fn login_keeps_the_failure_counted_on_a_wrong_password() {
    let mut m = Mocks::new();
    m.throttle
        .expect_acquire()
        .times(2)
        .returning(|_, _, _| Ok(Admission::Allowed));
    m.throttle.expect_release().never();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    m.passwords.expect_verify().returning(|_, _| Ok(false));
    assert!(matches!(login(m), Err(LoginError::InvalidCredentials)));
}

#[test]
fn register_within_the_cooldown_is_throttled_before_any_work() {
    let mut m = Mocks::new();
    m.throttle
        .expect_acquire()
        .withf(|bucket, limit, _| {
            bucket == "send:verify_email:ada@example.com" && limit.cooldown == Duration::seconds(60)
        })
        .returning(|_, _, _| Ok(denied(42)));
    m.passwords.expect_hash().never();
    m.users.expect_create().never();
    m.outbox.expect_enqueue().never();
    m.otps.expect_replace().never();
    let error = block_on(m.service().register(register_input())).unwrap_err();
    assert!(matches!(error, RegisterError::Throttled(t) if t.retry_after == Duration::seconds(42)));
}

#[test]
fn register_refuses_a_weak_password_with_the_reason() {
    let mut m = Mocks::new();
    m.throttle.expect_acquire().never();
    m.passwords.expect_hash().never();
    let mut input = register_input();
    input.password = Password::parse("password123".into()).unwrap();
    let error = block_on(m.service().register(input)).unwrap_err();
    assert!(
        matches!(error, RegisterError::WeakPassword(ref why) if why.contains("too easy")),
        "{error:?}"
    );
}

#[test]
fn resend_is_throttled_alike_for_any_address_and_sends_nothing() {
    for found in [Some(user(false)), Some(user(true)), None] {
        let mut m = Mocks::new();
        m.throttle
            .expect_acquire()
            .returning(|_, _, _| Ok(denied(30)));
        m.users.expect_find_by_email().never();
        m.outbox.expect_enqueue().never();
        m.otps.expect_replace().never();
        let _ = found;
        let error = block_on(m.service().resend_verification(&email())).unwrap_err();
        assert!(matches!(error, ResendError::Throttled(_)));
    }
}

#[test]
fn refresh_refuses_tokens_issued_before_a_password_change() {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_verify()
        .returning(|_, kind, _| Ok(claims(kind)));
    m.users.expect_find_by_id().returning(|_| {
        let mut u = user(true);
        u.tokens_valid_after = now();
        Ok(Some(u))
    });
    m.tokens.expect_issue().never();
    assert!(matches!(
        block_on(m.service().refresh("r", &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
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

#[test]
fn reset_request_mails_a_reset_code_to_known_addresses_only() {
    let mut m = Mocks::new().unthrottled();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    let (sent, codes) = capture(&mut m);
    block_on(m.service().request_password_reset(&email()))
        .unwrap()
        .unwrap();
    assert_eq!(codes.lock().unwrap()[0].purpose, OtpPurpose::ResetPassword);
    assert!(matches!(
        sent.lock().unwrap()[0],
        Mail::Code {
            purpose: OtpPurpose::ResetPassword,
            ..
        }
    ));

    let mut m = Mocks::new().unthrottled();
    m.users.expect_find_by_email().returning(|_| Ok(None));
    m.otps.expect_replace().never();
    m.otps
        .expect_decoy()
        .withf(|_, purpose, _| *purpose == OtpPurpose::ResetPassword)
        .times(1)
        .returning(|_, _, _| Ok(()));
    block_on(m.service().request_password_reset(&email()))
        .unwrap()
        .unwrap();
}

#[test]
fn reset_confirm_sets_the_password_verifies_revokes_and_notifies() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.otps.expect_count_try().returning(|_, purpose, _, _, _| {
        assert_eq!(purpose, OtpPurpose::ResetPassword);
        let mut otp = stored_otp("123456", 1, Duration::minutes(5));
        otp.purpose = OtpPurpose::ResetPassword;
        otp.code_hash = OtpHasher::new(SECRET.to_vec()).hash(
            &email(),
            OtpPurpose::ResetPassword,
            &OtpCode::new("123456".into()),
        );
        Ok(Tries::Counted(vec![otp]))
    });
    m.otps.expect_consume().returning(|_, _, _, _| Ok(true));
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.users
        .expect_set_password()
        .withf(|id, hash, verify, at, audit| {
            *id == user(false).id
                && hash.as_str() == "$argon2id$new"
                && *verify
                && *at == now()
                && audit.kind == AuditKind::PasswordReset
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(()));
    let sent = capture_mail(&mut m);
    block_on(m.service().confirm_password_reset(reset_input("123456"))).unwrap();
    assert!(matches!(
        sent.lock().unwrap()[0],
        Mail::PasswordChanged { .. }
    ));
}

#[test]
fn reset_confirm_with_a_wrong_code_changes_nothing() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.otps
        .expect_count_try()
        .returning(|_, _, _, _, _| Ok(Tries::Counted(vec![])));
    m.users.expect_set_password().never();
    m.outbox.expect_enqueue().never();
    let error = block_on(m.service().confirm_password_reset(reset_input("123456"))).unwrap_err();
    assert!(matches!(error, ResetError::InvalidCode));
}

#[test]
fn change_password_needs_the_old_password() {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_verify()
        .returning(|_, kind, _| Ok(claims(kind)));
    m.users
        .expect_find_by_id()
        .returning(|_| Ok(Some(user(true))));
    m.passwords.expect_verify().returning(|_, _| Ok(false));
    m.users.expect_set_password().never();
    let old = Password::for_login("not the old one".into()).unwrap();
    let new = Password::parse("a brand new passphrase".into()).unwrap();
    let error = block_on(
        m.service()
            .change_password("a", &old, &new, &RequestContext::default()),
    )
    .unwrap_err();
    assert!(matches!(error, ChangePasswordError::WrongOldPassword));
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
        .expect_verify()
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

#[test]
fn refresh_within_the_grace_window_returns_the_pair_already_issued() {
    let earlier = TokenIds {
        session_id: Uuid::from_u128(3),
        access_jti: "a1".into(),
        refresh_jti: "r1".into(),
        issued_at: now() - Duration::seconds(2),
    };
    let (result, signed) = refresh_with(Rotation::Replayed {
        ids: earlier.clone(),
    });
    assert_eq!(
        result.unwrap(),
        TokenPair {
            access: "a-a1".into(),
            refresh: "r-r1".into()
        }
    );
    assert_eq!(
        signed.lock().unwrap().last(),
        Some(&earlier),
        "re-signed from the stored ids"
    );
}

#[test]
fn refresh_with_a_reused_or_unknown_token_is_refused() {
    for rotation in [Rotation::Reused, Rotation::Refused] {
        let (result, _) = refresh_with(rotation);
        assert!(matches!(result, Err(RefreshError::InvalidToken)));
    }
}

#[test]
fn logout_revokes_the_family_or_all_of_the_accounts() {
    for all in [false, true] {
        let mut m = Mocks::new();
        m.tokens
            .expect_verify()
            .returning(|_, kind, _| Ok(claims(kind)));
        m.refresh_tokens
            .expect_family_of()
            .returning(|_| Ok(Some((Uuid::from_u128(3), UserId(Uuid::from_u128(7))))));
        if all {
            m.refresh_tokens
                .expect_revoke_all()
                .withf(|user, at, audit| {
                    *user == UserId(Uuid::from_u128(7))
                        && *at == now()
                        && audit
                            .as_ref()
                            .is_some_and(|a| a.kind == AuditKind::LogoutAll)
                })
                .times(1)
                .returning(|_, _, _| Ok(()));
            m.refresh_tokens.expect_revoke_family().never();
        } else {
            m.refresh_tokens
                .expect_revoke_family()
                .withf(|family, at, audit| {
                    *family == Uuid::from_u128(3) && *at == now() && audit.kind == AuditKind::Logout
                })
                .times(1)
                .returning(|_, _, _| Ok(()));
            m.refresh_tokens.expect_revoke_all().never();
        }
        block_on(m.service().logout("r", all, &RequestContext::default())).unwrap();
    }
}

#[test]
fn a_refused_limit_is_answered_from_memory_until_it_ends() {
    let mut m = Mocks::new();
    // The store is asked once; the second request is refused without it.
    m.throttle
        .expect_acquire()
        .times(1)
        .returning(|_, _, _| Ok(denied(42)));
    m.passwords.expect_hash().never();
    let service = m.service();
    for _ in 0..2 {
        let error = block_on(service.register(register_input())).unwrap_err();
        assert!(
            matches!(error, RegisterError::Throttled(t) if t.retry_after <= Duration::seconds(42) && t.retry_after > Duration::zero()),
            "{error:?}"
        );
    }
}
