//! The contract every `UserRepository` + `OtpStore` adapter must meet.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use passcode_domain::otp::NewOtp;
use passcode_domain::ports::AuditLog;
use passcode_domain::ports::{
    Admission, CreateUserError, HealthCheck, Limit, Mail, OtpStore, Outbox, OutboxStatus, Throttle,
    Tries, UserRepository,
};
use passcode_domain::{
    AuditEvent, AuditKind, AuditQuery, CodeHash, EmailAddress, FullName, NewUser, OtpCode,
    OtpPurpose, PasswordHash, UserId,
};
use uuid::Uuid;

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
    store
        .list(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .count()
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

pub async fn create_then_find_by_email_and_id(store: impl Store) {
    let created = store.create(&new_user("ada@example.com")).await.unwrap();
    assert!(!created.email_verified);
    assert!(created.is_active);
    assert_eq!(created.created_at, now(), "millisecond precision is kept");
    let by_email = store
        .find_by_email(&email("ada@example.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email, created);
    let by_id = store.find_by_id(created.id).await.unwrap().unwrap();
    assert_eq!(by_id, created);
}

pub async fn duplicate_email_is_email_taken(store: impl Store) {
    store.create(&new_user("ada@example.com")).await.unwrap();
    let again = store.create(&new_user("ADA@example.com")).await;
    assert!(
        matches!(again, Err(CreateUserError::EmailTaken)),
        "{again:?}"
    );
}

pub async fn concurrent_registrations_of_one_address_create_exactly_one(store: impl Store) {
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create(&new_user("race@example.com")).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(CreateUserError::EmailTaken) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(created, 1);
}

pub async fn find_unknown_is_none(store: impl Store) {
    assert!(
        store
            .find_by_email(&email("nobody@example.com"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_by_id(UserId::new_random())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find(&email("nobody@example.com"), OtpPurpose::VerifyEmail)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn mark_email_verified_is_idempotent(store: impl Store) {
    let user = store.create(&new_user("ada@example.com")).await.unwrap();
    store.mark_email_verified(user.id, now()).await.unwrap();
    store.mark_email_verified(user.id, now()).await.unwrap();
    store
        .mark_email_verified(UserId::new_random(), now())
        .await
        .unwrap();
    assert!(
        store
            .find_by_id(user.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
}

pub async fn replace_then_find_returns_the_code(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    let found = store
        .find(&otp.email, OtpPurpose::VerifyEmail)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, otp.id);
    assert_eq!(found.code_hash, otp.code_hash);
    assert_eq!(found.expires_at, otp.expires_at);
    assert_eq!(found.attempts, 0);
    assert!(!found.consumed);
}

pub async fn replace_invalidates_the_previous_code(store: impl Store) {
    let first = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store.replace(&first, &mail_for(&first)).await.unwrap();
    count(&store, &first, 5).await;
    let second = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 2);
    store.replace(&second, &mail_for(&second)).await.unwrap();

    let found = store
        .find(&first.email, OtpPurpose::VerifyEmail)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, second.id);
    assert_eq!(found.attempts, 0, "a new code starts with all its tries");
    assert!(
        !store
            .consume(first.id, &first.code_hash, now(), 5)
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume(second.id, &first.code_hash, now(), 5)
            .await
            .unwrap()
    );
    assert!(
        store
            .consume(second.id, &second.code_hash, now(), 5)
            .await
            .unwrap()
    );
}

pub async fn codes_of_different_purposes_are_separate(store: impl Store) {
    let verify = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    let reset = new_otp("ada@example.com", OtpPurpose::ResetPassword, 2);
    store.replace(&verify, &mail_for(&verify)).await.unwrap();
    store.replace(&reset, &mail_for(&reset)).await.unwrap();
    let found = store
        .find(&verify.email, OtpPurpose::VerifyEmail)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, verify.id);
    let found = store
        .find(&reset.email, OtpPurpose::ResetPassword)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, reset.id);
}

pub async fn consume_succeeds_once(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    assert!(
        store
            .consume(otp.id, &otp.code_hash, now(), 5)
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume(otp.id, &otp.code_hash, now(), 5)
            .await
            .unwrap()
    );
    assert!(
        store
            .find(&otp.email, otp.purpose)
            .await
            .unwrap()
            .unwrap()
            .consumed
    );
    assert_eq!(
        count(&store, &otp, 5).await,
        None,
        "a spent code counts no tries"
    );
}

pub async fn consume_refuses_wrong_hash_expired_and_exhausted_codes(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    let wrong = CodeHash::from_bytes(vec![9; 32]);
    assert!(!store.consume(otp.id, &wrong, now(), 5).await.unwrap());
    assert!(
        !store
            .consume(otp.id, &otp.code_hash, otp.expires_at, 5)
            .await
            .unwrap(),
        "expired at expires_at"
    );
    for _ in 0..3 {
        count(&store, &otp, 3).await;
    }
    assert_eq!(count(&store, &otp, 3).await, None, "out of tries");
    assert!(
        !store
            .consume(otp.id, &otp.code_hash, now(), 2)
            .await
            .unwrap(),
        "more tries counted than allowed"
    );
    assert!(
        store
            .consume(otp.id, &otp.code_hash, now(), 5)
            .await
            .unwrap(),
        "still unspent"
    );
}

pub async fn concurrent_consumes_have_exactly_one_winner(store: impl Store) {
    let otp = Arc::new(new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1));
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, otp) = (store.clone(), otp.clone());
            tokio::spawn(async move {
                store
                    .consume(otp.id, &otp.code_hash, now(), 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
}

pub async fn failed_attempts_are_counted_up_to_the_limit(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    for expected in 1..=5 {
        assert_eq!(count(&store, &otp, 5).await, Some(expected));
    }
    assert_eq!(count(&store, &otp, 5).await, None);
    assert_eq!(
        store
            .find(&otp.email, otp.purpose)
            .await
            .unwrap()
            .unwrap()
            .attempts,
        5
    );
    assert!(
        store
            .count_try(&email("nobody@example.com"), otp.purpose, now(), 5, &[])
            .await
            .unwrap()
            .counted()
            .is_empty()
    );
}

pub async fn concurrent_failed_attempts_never_exceed_the_limit(store: impl Store) {
    let otp = Arc::new(new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1));
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, otp) = (store.clone(), otp.clone());
            tokio::spawn(async move { count(&store, &otp, 5).await })
        })
        .collect();
    let mut counted = Vec::new();
    for task in tasks {
        counted.extend(task.await.unwrap());
    }
    counted.sort_unstable();
    assert_eq!(counted, vec![1, 2, 3, 4, 5]);
}

pub async fn health_check_answers(store: impl Store) {
    store.check().await.unwrap();
}

fn per_hour(limit: u32) -> Limit {
    Limit {
        limit,
        window: Duration::hours(1),
        cooldown: Duration::zero(),
    }
}

pub async fn a_refused_guess_budget_counts_nothing(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    let budgets = [
        ("guess:ada@example.com:client".to_owned(), per_hour(1)),
        ("guess:ada@example.com".to_owned(), per_hour(1)),
    ];
    // The ceiling is already spent (by another client).
    assert_eq!(
        store
            .acquire(&budgets[1].0, per_hour(1), now())
            .await
            .unwrap(),
        Admission::Allowed
    );
    let tries = store
        .count_try(&otp.email, otp.purpose, now(), 5, &budgets)
        .await
        .unwrap();
    assert!(
        matches!(tries, Tries::Refused { budget: 1, retry_after } if retry_after == Duration::hours(1)),
        "{tries:?}"
    );
    // Nothing was counted: not the share, not a try on the code.
    assert_eq!(
        store
            .acquire(&budgets[0].0, per_hour(1), now())
            .await
            .unwrap(),
        Admission::Allowed,
        "the share's reservation was rolled back"
    );
    assert_eq!(count(&store, &otp, 5).await, Some(1), "no try was counted");
    // With room in both budgets, both are counted with the try.
    let fresh = [
        ("guess:ada@example.com:other".to_owned(), per_hour(1)),
        ("guess:ada@example.com:ceiling2".to_owned(), per_hour(1)),
    ];
    let open = store
        .count_try(&otp.email, otp.purpose, now(), 5, &fresh)
        .await
        .unwrap()
        .counted();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].attempts, 2);
    for (key, limit) in &fresh {
        assert!(matches!(
            store.acquire(key, *limit, now()).await.unwrap(),
            Admission::Denied { .. }
        ));
    }
}

pub async fn throttle_allows_up_to_the_limit_then_says_when(store: impl Store) {
    for _ in 0..3 {
        assert_eq!(
            store.acquire("k", per_hour(3), now()).await.unwrap(),
            Admission::Allowed
        );
    }
    let later = now() + Duration::minutes(20);
    match store.acquire("k", per_hour(3), later).await.unwrap() {
        Admission::Denied { retry_after } => assert_eq!(retry_after, Duration::minutes(40)),
        Admission::Allowed => panic!("over the limit"),
    }
    assert_eq!(
        store.acquire("other", per_hour(3), later).await.unwrap(),
        Admission::Allowed,
        "keys are separate"
    );
    let next_window = now() + Duration::hours(1);
    assert_eq!(
        store.acquire("k", per_hour(3), next_window).await.unwrap(),
        Admission::Allowed,
        "a new window"
    );
}

pub async fn throttle_enforces_the_cooldown(store: impl Store) {
    let limit = Limit {
        limit: 5,
        window: Duration::hours(1),
        cooldown: Duration::seconds(60),
    };
    assert_eq!(
        store.acquire("k", limit, now()).await.unwrap(),
        Admission::Allowed
    );
    let soon = now() + Duration::seconds(15);
    assert_eq!(
        store.acquire("k", limit, soon).await.unwrap(),
        Admission::Denied {
            retry_after: Duration::seconds(45)
        }
    );
    let after = now() + Duration::seconds(60);
    assert_eq!(
        store.acquire("k", limit, after).await.unwrap(),
        Admission::Allowed
    );
}

pub async fn throttle_release_gives_back_one_event(store: impl Store) {
    assert_eq!(
        store.acquire("k", per_hour(1), now()).await.unwrap(),
        Admission::Allowed
    );
    assert!(matches!(
        store.acquire("k", per_hour(1), now()).await.unwrap(),
        Admission::Denied { .. }
    ));
    store.release("k").await.unwrap();
    assert_eq!(
        store.acquire("k", per_hour(1), now()).await.unwrap(),
        Admission::Allowed
    );
    store.release("unknown").await.unwrap();
}

pub async fn concurrent_acquires_never_exceed_the_limit(store: impl Store) {
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.acquire("burst", per_hour(10), now()).await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap() == Admission::Allowed);
    }
    assert_eq!(allowed, 10);
}

pub async fn purge_removes_only_what_no_longer_matters(store: impl Store) {
    store.acquire("old", per_hour(5), now()).await.unwrap();
    let expired = new_otp("old@example.com", OtpPurpose::VerifyEmail, 1);
    store.replace(&expired, &mail_for(&expired)).await.unwrap();
    let later = now() + Duration::days(2);
    store.acquire("fresh", per_hour(5), later).await.unwrap();
    let mut live = new_otp("live@example.com", OtpPurpose::VerifyEmail, 2);
    live.expires_at = later + Duration::minutes(10);
    store.replace(&live, &mail_for(&live)).await.unwrap();

    assert_eq!(store.purge(later, Duration::days(1)).await.unwrap(), 2);
    assert!(
        store
            .find(&expired.email, OtpPurpose::VerifyEmail)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find(&live.email, OtpPurpose::VerifyEmail)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.acquire("fresh", per_hour(1), later).await.unwrap(),
        Admission::Denied {
            retry_after: Duration::hours(1)
        },
        "a live bucket survives the purge"
    );
}

pub async fn throttle_without_cooldown_admits_events_arriving_out_of_order(store: impl Store) {
    let later = now() + Duration::milliseconds(5);
    assert_eq!(
        store.acquire("k", per_hour(5), later).await.unwrap(),
        Admission::Allowed
    );
    assert_eq!(
        store.acquire("k", per_hour(5), now()).await.unwrap(),
        Admission::Allowed
    );
}

pub async fn storing_a_code_queues_its_mail_with_the_code_and_its_expiry(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    let claimed = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].expires_at, Some(otp.expires_at));
    match &claimed[0].mail {
        Mail::Code {
            to, code, purpose, ..
        } => {
            assert_eq!(to, &otp.email);
            assert_eq!(code.expose(), "123456");
            assert_eq!(*purpose, OtpPurpose::VerifyEmail);
        }
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn a_claimed_message_is_leased_then_claimable_again(store: impl Store) {
    store
        .enqueue(&notice("ada@example.com"), now(), None)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(now(), Duration::seconds(60), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .claim(now(), Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let after_lease = now() + Duration::seconds(61);
    let again = store
        .claim(after_lease, Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "a crashed worker's message is picked up");
    assert_eq!(again[0].attempts, 2);
}

pub async fn concurrent_claims_never_hand_out_a_message_twice(store: impl Store) {
    for i in 0..20 {
        store
            .enqueue(&notice(&format!("user{i}@example.com")), now(), None)
            .await
            .unwrap();
    }
    let claims: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(now(), Duration::seconds(60), 8).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for claim in claims {
        ids.extend(claim.await.unwrap().into_iter().map(|m| m.id));
    }
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no message claimed twice");
    assert_eq!(total, 20, "all claimed");
}

pub async fn sent_and_expired_messages_lose_their_body(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    let claimed = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    store.mark_sent(claimed[0].id, now()).await.unwrap();
    assert!(store.pending(10).await.unwrap().is_empty());
    let later = now() + Duration::hours(1);
    assert!(
        store
            .claim(later, Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A failed code mail is kept for inspection, but without its code: not retryable.
    let otp = new_otp("bob@example.com", OtpPurpose::VerifyEmail, 2);
    store.replace(&otp, &mail_for(&otp)).await.unwrap();
    let claimed = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    store
        .finish(
            claimed[0].id,
            OutboxStatus::Failed,
            Some("550 no".into()),
            now(),
        )
        .await
        .unwrap();
    let pending = store.pending(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, OutboxStatus::Failed);
    assert_eq!(pending[0].last_error.as_deref(), Some("550 no"));
    assert_eq!(store.retry_failed(now()).await.unwrap(), 0);
}

pub async fn a_failed_notice_can_be_retried_and_a_deferred_message_waits(store: impl Store) {
    store
        .enqueue(&notice("ada@example.com"), now(), None)
        .await
        .unwrap();
    let claimed = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    store
        .retry_later(claimed[0].id, now() + Duration::seconds(30), "421 busy")
        .await
        .unwrap();
    assert!(
        store
            .claim(now() + Duration::seconds(29), Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store
        .claim(now() + Duration::seconds(30), Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .finish(
            claimed[0].id,
            OutboxStatus::Failed,
            Some("550 no".into()),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(store.retry_failed(now()).await.unwrap(), 1);
    assert_eq!(
        store
            .claim(now(), Duration::seconds(60), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn set_password_replaces_the_hash_verifies_and_refuses_older_tokens(store: impl Store) {
    let user = store.create(&new_user("ada@example.com")).await.unwrap();
    let at = now() + Duration::milliseconds(400);
    let hash = PasswordHash::new("$argon2id$v=19$new".into());
    store
        .set_password(user.id, &hash, true, at, &event(AuditKind::PasswordReset))
        .await
        .unwrap();
    let after = store.find_by_id(user.id).await.unwrap().unwrap();
    assert_eq!(after.password_hash, hash);
    assert!(after.email_verified);
    assert_eq!(after.tokens_valid_after, at, "to the millisecond");
    assert!(!after.accepts_token_issued_at(at - Duration::milliseconds(1)));
    assert!(after.accepts_token_issued_at(at));
    store
        .set_password(user.id, &hash, false, at, &event(AuditKind::PasswordReset))
        .await
        .unwrap();
    assert!(
        store
            .find_by_id(user.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified,
        "never un-verifies"
    );
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

pub async fn rotation_spends_once_replays_within_grace_then_revokes_on_reuse(store: impl Store) {
    use passcode_domain::ports::Rotation;
    let user = UserId::new_random();
    let family = Uuid::new_v4();
    store
        .insert(&refresh_token(1, family, user), None)
        .await
        .unwrap();
    let grace = Duration::seconds(10);

    let rotated = store
        .rotate(
            &[1; 32],
            now(),
            grace,
            &refresh_token(2, Uuid::nil(), user),
            &token_ids(2),
            &event(AuditKind::RefreshReuseDetected),
        )
        .await;
    assert_eq!(rotated.unwrap(), Rotation::Rotated);
    assert_eq!(
        store.family_of(&[2; 32]).await.unwrap(),
        Some((family, user)),
        "the successor joins the family"
    );

    let soon = now() + Duration::seconds(5);
    let replay = store
        .rotate(
            &[1; 32],
            soon,
            grace,
            &refresh_token(3, Uuid::nil(), user),
            &token_ids(3),
            &event(AuditKind::RefreshReuseDetected),
        )
        .await;
    let mut replayed = token_ids(2);
    replayed.session_id = family;
    assert_eq!(
        replay.unwrap(),
        Rotation::Replayed { ids: replayed },
        "the session's id too"
    );
    assert_eq!(
        store.family_of(&[3; 32]).await.unwrap(),
        None,
        "a replay stores nothing new"
    );

    let later = now() + Duration::seconds(11);
    let reuse = store
        .rotate(
            &[1; 32],
            later,
            grace,
            &refresh_token(4, Uuid::nil(), user),
            &token_ids(4),
            &event(AuditKind::RefreshReuseDetected),
        )
        .await;
    assert_eq!(reuse.unwrap(), Rotation::Reused);
    assert_eq!(
        store.family_of(&[2; 32]).await.unwrap(),
        None,
        "the whole family is revoked"
    );
    let after = store
        .rotate(
            &[2; 32],
            later,
            grace,
            &refresh_token(5, Uuid::nil(), user),
            &token_ids(5),
            &event(AuditKind::RefreshReuseDetected),
        )
        .await;
    assert_eq!(
        after.unwrap(),
        Rotation::Refused,
        "so the newest token no longer refreshes"
    );
}

pub async fn rotation_refuses_unknown_and_expired_tokens(store: impl Store) {
    use passcode_domain::ports::Rotation;
    let user = UserId::new_random();
    let grace = Duration::seconds(10);
    let unknown = store
        .rotate(
            &[9; 32],
            now(),
            grace,
            &refresh_token(2, Uuid::nil(), user),
            &token_ids(2),
            &event(AuditKind::RefreshReuseDetected),
        )
        .await;
    assert_eq!(unknown.unwrap(), Rotation::Refused);
    store
        .insert(&refresh_token(1, Uuid::new_v4(), user), None)
        .await
        .unwrap();
    let expired_at = now() + Duration::days(1);
    let expired = store
        .rotate(
            &[1; 32],
            expired_at,
            grace,
            &refresh_token(3, Uuid::nil(), user),
            &token_ids(3),
            &event(AuditKind::RefreshReuseDetected),
        )
        .await;
    assert_eq!(expired.unwrap(), Rotation::Refused);
}

pub async fn concurrent_rotations_of_one_token_rotate_once_and_replay_the_rest(store: impl Store) {
    use passcode_domain::ports::Rotation;
    let user = UserId::new_random();
    store
        .insert(&refresh_token(1, Uuid::new_v4(), user), None)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..10u8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let successor = refresh_token(10 + n, Uuid::nil(), user);
                store
                    .rotate(
                        &[1; 32],
                        now(),
                        Duration::seconds(10),
                        &successor,
                        &token_ids(10 + n),
                        &event(AuditKind::RefreshReuseDetected),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| **o == Rotation::Rotated).count(),
        1,
        "{outcomes:?}"
    );
    let replays: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Replayed { .. }))
        .collect();
    assert_eq!(replays.len(), 9, "{outcomes:?}");
    assert!(
        replays.windows(2).all(|w| w[0] == w[1]),
        "all replays get the one successor"
    );
}

pub async fn logout_revokes_one_family_or_all_of_an_account(store: impl Store) {
    let user = UserId::new_random();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .insert(&refresh_token(1, a, user), None)
        .await
        .unwrap();
    store
        .insert(&refresh_token(2, b, user), None)
        .await
        .unwrap();
    store
        .revoke_family(a, now(), &event(AuditKind::Logout))
        .await
        .unwrap();
    assert_eq!(store.family_of(&[1; 32]).await.unwrap(), None);
    assert_eq!(store.family_of(&[2; 32]).await.unwrap(), Some((b, user)));
    store.revoke_all(user, now(), None).await.unwrap();
    assert_eq!(store.family_of(&[2; 32]).await.unwrap(), None);
}

pub async fn added_codes_live_side_by_side_and_each_counts_its_tries(store: impl Store) {
    let first = registration_otp("ada@example.com", 1, "Mallory", "$argon2id$m");
    let mut second = registration_otp("ada@example.com", 2, "Ada", "$argon2id$a");
    second.created_at = now() + Duration::seconds(1);
    store
        .add(&first, &mail_for(&first), &event(AuditKind::Registered))
        .await
        .unwrap();
    store
        .add(&second, &mail_for(&second), &event(AuditKind::Registered))
        .await
        .unwrap();
    let open = store
        .count_try(&first.email, OtpPurpose::VerifyEmail, now(), 5, &[])
        .await
        .unwrap()
        .counted();
    assert_eq!(
        open.len(),
        2,
        "a later registration leaves the earlier code valid"
    );
    assert!(open.iter().all(|otp| otp.attempts == 1));
    let mine = open.iter().find(|otp| otp.id == second.id).unwrap();
    assert_eq!(
        mine.registration, second.registration,
        "each code keeps its registration"
    );
    let newest = store
        .find(&first.email, OtpPurpose::VerifyEmail)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newest.id, second.id, "find gives the newest");
    let later = now() + Duration::seconds(1);
    assert_eq!(
        store
            .claim(later, Duration::seconds(60), 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

pub async fn replacing_a_code_drops_its_waiting_mail(store: impl Store) {
    let first = new_otp("ada@example.com", OtpPurpose::ResetPassword, 1);
    store.replace(&first, &mail_for(&first)).await.unwrap();
    let second = new_otp("ada@example.com", OtpPurpose::ResetPassword, 2);
    store.replace(&second, &mail_for(&second)).await.unwrap();
    let claimed = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "the replaced code is never mailed");
    assert!(
        store
            .pending(10)
            .await
            .unwrap()
            .iter()
            .all(|entry| entry.id == claimed[0].id),
        "the dropped message is no longer pending"
    );
}

pub async fn completing_a_registration_applies_it_and_voids_the_others(store: impl Store) {
    let user = store.create(&new_user("ada@example.com")).await.unwrap();
    let owner = registration_otp("ada@example.com", 1, "Ada Owner", "$argon2id$owner");
    let other = registration_otp("ada@example.com", 2, "Mallory", "$argon2id$mallory");
    store
        .add(&owner, &mail_for(&owner), &event(AuditKind::Registered))
        .await
        .unwrap();
    store
        .add(&other, &mail_for(&other), &event(AuditKind::Registered))
        .await
        .unwrap();
    let reg = owner.registration.clone().unwrap();
    assert!(
        !store
            .complete_registration(
                owner.id,
                &other.code_hash,
                user.id,
                &reg,
                now(),
                5,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap(),
        "the code's own hash only"
    );
    assert!(
        store
            .complete_registration(
                owner.id,
                &owner.code_hash,
                user.id,
                &reg,
                now(),
                5,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap()
    );
    let after = store.find_by_id(user.id).await.unwrap().unwrap();
    assert!(after.email_verified);
    assert_eq!(after.password_hash.as_str(), "$argon2id$owner");
    assert_eq!(after.full_name.as_str(), "Ada Owner");
    assert!(
        store
            .count_try(&owner.email, OtpPurpose::VerifyEmail, now(), 5, &[])
            .await
            .unwrap()
            .counted()
            .is_empty(),
        "the other registration's code is void"
    );
    assert!(
        !store
            .complete_registration(
                owner.id,
                &owner.code_hash,
                user.id,
                &reg,
                now(),
                5,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap(),
        "once only"
    );
    assert!(
        store
            .claim(now(), Duration::seconds(60), 10)
            .await
            .unwrap()
            .len()
            <= 1,
        "the voided code's mail is dropped"
    );
}

pub async fn a_registration_of_a_deactivated_account_is_not_completed(store: impl Store) {
    let user = store.create(&new_user("ada@example.com")).await.unwrap();
    store
        .set_active(user.id, false, now(), &event(AuditKind::Deactivated))
        .await
        .unwrap();
    let otp = registration_otp("ada@example.com", 1, "Mallory", "$argon2id$m");
    store
        .add(&otp, &mail_for(&otp), &event(AuditKind::Registered))
        .await
        .unwrap();
    let reg = otp.registration.clone().unwrap();
    assert!(
        !store
            .complete_registration(
                otp.id,
                &otp.code_hash,
                user.id,
                &reg,
                now(),
                5,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap()
    );
    let after = store.find_by_id(user.id).await.unwrap().unwrap();
    assert!(!after.email_verified);
    assert_eq!(after.full_name.as_str(), "Ada Lovelace");
    assert!(
        !store
            .find(&otp.email, OtpPurpose::VerifyEmail)
            .await
            .unwrap()
            .unwrap()
            .consumed,
        "the code stays unspent"
    );
}

pub async fn concurrent_completions_of_one_registration_have_one_winner(store: impl Store) {
    let user = store.create(&new_user("ada@example.com")).await.unwrap();
    let otp = Arc::new(registration_otp("ada@example.com", 1, "Ada", "$argon2id$a"));
    store
        .add(&otp, &mail_for(&otp), &event(AuditKind::Registered))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, otp) = (store.clone(), otp.clone());
            tokio::spawn(async move {
                let reg = otp.registration.clone().unwrap();
                store
                    .complete_registration(
                        otp.id,
                        &otp.code_hash,
                        user.id,
                        &reg,
                        now(),
                        5,
                        &event(AuditKind::Verified),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
}

pub async fn a_decoy_leaves_no_code_and_nothing_to_send(store: impl Store) {
    for purpose in [OtpPurpose::VerifyEmail, OtpPurpose::ResetPassword] {
        store
            .decoy(&email("ada@example.com"), purpose, now())
            .await
            .unwrap();
        store
            .decoy(&email("ada@example.com"), purpose, now())
            .await
            .unwrap();
        assert!(
            store
                .find(&email("ada@example.com"), purpose)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .count_try(&email("ada@example.com"), purpose, now(), 5, &[])
                .await
                .unwrap()
                .counted()
                .is_empty()
        );
    }
    assert!(
        store
            .claim(now(), Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.pending(10).await.unwrap().is_empty());
}

pub async fn a_reset_voids_registrations_still_waiting_for_their_code(store: impl Store) {
    let user = store.create(&new_user("ada@example.com")).await.unwrap();
    let pending = registration_otp("ada@example.com", 1, "Mallory", "$argon2id$m");
    store
        .add(&pending, &mail_for(&pending), &event(AuditKind::Registered))
        .await
        .unwrap();
    let hash = PasswordHash::new("$argon2id$v=19$reset".into());
    store
        .set_password(
            user.id,
            &hash,
            true,
            now(),
            &event(AuditKind::PasswordReset),
        )
        .await
        .unwrap();
    assert!(
        store
            .count_try(&pending.email, OtpPurpose::VerifyEmail, now(), 5, &[])
            .await
            .unwrap()
            .counted()
            .is_empty()
    );
    assert!(
        store
            .claim(now(), Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_session_ends_at_its_family_end_however_often_refreshed(store: impl Store) {
    use passcode_domain::ports::Rotation;
    let user = UserId::new_random();
    let family = Uuid::new_v4();
    let mut first = refresh_token(1, family, user);
    first.family_expires_at = now() + Duration::hours(1);
    store.insert(&first, None).await.unwrap();
    let grace = Duration::seconds(10);
    // A successor asking for a day still ends with the family.
    let mut successor = refresh_token(2, Uuid::nil(), user);
    successor.family_expires_at = now() + Duration::days(90);
    assert_eq!(
        store
            .rotate(
                &[1; 32],
                now(),
                grace,
                &successor,
                &token_ids(2),
                &event(AuditKind::RefreshReuseDetected)
            )
            .await
            .unwrap(),
        Rotation::Rotated
    );
    let later = now() + Duration::hours(1);
    assert_eq!(
        store
            .rotate(
                &[2; 32],
                later,
                grace,
                &refresh_token(3, Uuid::nil(), user),
                &token_ids(3),
                &event(AuditKind::RefreshReuseDetected)
            )
            .await
            .unwrap(),
        Rotation::Refused,
        "the family reached its end"
    );
    assert_eq!(
        store
            .rotate(
                &[2; 32],
                later - Duration::milliseconds(1),
                grace,
                &refresh_token(3, Uuid::nil(), user),
                &token_ids(3),
                &event(AuditKind::RefreshReuseDetected)
            )
            .await
            .unwrap(),
        Rotation::Rotated,
        "until then it refreshes"
    );
}

pub async fn each_change_records_its_event_in_its_transaction(store: impl Store) {
    let user = store.create(&new_user("ada@example.com")).await.unwrap();
    let otp = registration_otp("ada@example.com", 1, "Ada", "$argon2id$a");
    store
        .add(&otp, &mail_for(&otp), &event(AuditKind::Registered))
        .await
        .unwrap();
    assert_eq!(events(&store, AuditKind::Registered).await, 1);
    // A completion that does not happen records nothing.
    let reg = otp.registration.clone().unwrap();
    let wrong = CodeHash::from_bytes(vec![9; 32]);
    assert!(
        !store
            .complete_registration(
                otp.id,
                &wrong,
                user.id,
                &reg,
                now(),
                5,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap()
    );
    assert_eq!(events(&store, AuditKind::Verified).await, 0);
    assert!(
        store
            .complete_registration(
                otp.id,
                &otp.code_hash,
                user.id,
                &reg,
                now(),
                5,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap()
    );
    assert_eq!(events(&store, AuditKind::Verified).await, 1);
    // A refresh-token reuse is recorded only when it is one.
    let family = Uuid::new_v4();
    store
        .insert(
            &refresh_token(1, family, user.id),
            Some(event(AuditKind::LoginSucceeded)),
        )
        .await
        .unwrap();
    assert_eq!(events(&store, AuditKind::LoginSucceeded).await, 1);
    let reuse = event(AuditKind::RefreshReuseDetected);
    let grace = Duration::seconds(0);
    store
        .rotate(
            &[1; 32],
            now(),
            grace,
            &refresh_token(2, Uuid::nil(), user.id),
            &token_ids(2),
            &reuse,
        )
        .await
        .unwrap();
    assert_eq!(
        events(&store, AuditKind::RefreshReuseDetected).await,
        0,
        "a rotation is no reuse"
    );
    let later = now() + Duration::seconds(5);
    store
        .rotate(
            &[1; 32],
            later,
            grace,
            &refresh_token(3, Uuid::nil(), user.id),
            &token_ids(3),
            &reuse,
        )
        .await
        .unwrap();
    assert_eq!(events(&store, AuditKind::RefreshReuseDetected).await, 1);
    store.record(&event(AuditKind::LoginFailed)).await.unwrap();
    let listed = store
        .list(&AuditQuery {
            email: Some(email("ada@example.com")),
            since: Some(now() - Duration::seconds(1)),
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 5);
    assert_eq!(listed[0].client.as_deref(), Some("203.0.113.9"));
    assert_eq!(listed[0].request_id.as_deref(), Some("req-1"));
    assert!(
        store
            .list(&AuditQuery {
                email: Some(email("other@example.com")),
                since: None,
                limit: 100,
            })
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .purge_audit(now() + Duration::seconds(1))
            .await
            .unwrap(),
        5
    );
    assert_eq!(events(&store, AuditKind::LoginFailed).await, 0);
}

pub async fn deleting_an_account_erases_everything_personal(store: impl Store) {
    let address = "ada_l@example.com";
    let mut user = new_user(address);
    user.email = email(address);
    let user = store.create(&user).await.unwrap();
    let otp = registration_otp(address, 1, "Ada", "$argon2id$a");
    let mut mine = event(AuditKind::Registered);
    mine.email = Some(email(address));
    store.add(&otp, &mail_for(&otp), &mine).await.unwrap();
    store
        .insert(&refresh_token(1, Uuid::new_v4(), user.id), None)
        .await
        .unwrap();
    let one = Limit {
        limit: 1,
        window: Duration::hours(1),
        cooldown: Duration::zero(),
    };
    let keys = [
        format!("guess:{address}"),
        format!("guess:{address}:203.0.113.9"),
        format!("login:{address}:203.0.113.9"),
        format!("send:verify_email:{address}"),
        format!("password-check:{}", user.id),
    ];
    // Another address whose name differs only where `_` is a LIKE wildcard.
    let others = [
        "guess:adaxl@example.com".to_owned(),
        "login:adaxl@example.com:1.2.3.4".to_owned(),
    ];
    for key in keys.iter().chain(&others) {
        assert_eq!(
            store.acquire(key, one, now()).await.unwrap(),
            Admission::Allowed
        );
    }
    let goodbye = Mail::AccountDeleted {
        to: email(address),
        full_name: "Ada".into(),
    };
    let mut deleted = event(AuditKind::AccountDeleted);
    deleted.email = None;
    deleted.user_id = Some(user.id);
    assert!(
        store
            .delete(user.id, &email(address), &goodbye, now(), &deleted)
            .await
            .unwrap()
    );

    assert!(
        store
            .find_by_email(&email(address))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.find_by_id(user.id).await.unwrap().is_none());
    assert!(
        store
            .find(&email(address), OtpPurpose::VerifyEmail)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.family_of(&[1; 32]).await.unwrap(),
        None,
        "sessions gone"
    );
    for key in &keys {
        assert_eq!(
            store.acquire(key, one, now()).await.unwrap(),
            Admission::Allowed,
            "{key} was reset"
        );
    }
    for key in &others {
        assert_ne!(
            store.acquire(key, one, now()).await.unwrap(),
            Admission::Allowed,
            "{key} untouched"
        );
    }
    let queued = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    assert_eq!(queued.len(), 1, "only the goodbye is queued");
    assert!(matches!(queued[0].mail, Mail::AccountDeleted { .. }));
    let trail = store
        .list(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(
        trail
            .iter()
            .all(|e| e.email.as_ref().map(EmailAddress::as_str) != Some(address)),
        "no address kept"
    );
    assert!(
        trail
            .iter()
            .any(|e| e.kind == AuditKind::AccountDeleted && e.user_id == Some(user.id))
    );
    assert!(
        !store
            .delete(user.id, &email(address), &goodbye, now(), &deleted)
            .await
            .unwrap(),
        "once"
    );
    // The address can register again.
    store.create(&new_user(address)).await.unwrap();
}

pub async fn sessions_are_listed_with_their_origin_and_last_use_and_end_one_or_the_others(
    store: impl Store,
) {
    use passcode_domain::ports::Rotation;
    let user = UserId::new_random();
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .insert(&refresh_token(1, first, user), None)
        .await
        .unwrap();
    store
        .insert(&refresh_token(2, second, user), None)
        .await
        .unwrap();
    let someone_else = UserId::new_random();
    let theirs = Uuid::new_v4();
    store
        .insert(&refresh_token(3, theirs, someone_else), None)
        .await
        .unwrap();
    let listed = store.sessions(user, now()).await.unwrap();
    assert_eq!(listed.len(), 2);
    let one = listed.iter().find(|s| s.id == first).unwrap();
    assert_eq!(one.created_client.as_deref(), Some("203.0.113.9"));
    assert_eq!(one.created_user_agent.as_deref(), Some("agent 1"));
    // A refresh is the session's last use, with its caller's facts.
    let mut successor = refresh_token(4, Uuid::nil(), user);
    successor.origin.client = Some("198.51.100.4".into());
    successor.origin.user_agent = Some("agent 4".into());
    let later = now() + Duration::seconds(30);
    let rotated = store
        .rotate(
            &[1; 32],
            later,
            Duration::seconds(10),
            &successor,
            &token_ids(4),
            &event(AuditKind::RefreshReuseDetected),
        )
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated);
    let listed = store.sessions(user, later).await.unwrap();
    let one = listed.iter().find(|s| s.id == first).unwrap();
    assert_eq!(one.last_client.as_deref(), Some("198.51.100.4"));
    assert_eq!(one.last_user_agent.as_deref(), Some("agent 4"));
    assert_eq!(
        one.created_user_agent.as_deref(),
        Some("agent 1"),
        "origin kept"
    );
    assert_eq!(listed[0].id, first, "newest use first");
    // Not someone else's session.
    assert!(
        !store
            .end_session(user, theirs, later, &event(AuditKind::Logout))
            .await
            .unwrap()
    );
    assert!(
        store
            .end_session(user, second, later, &event(AuditKind::Logout))
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_session(user, second, later, &event(AuditKind::Logout))
            .await
            .unwrap(),
        "once"
    );
    assert_eq!(store.sessions(user, later).await.unwrap().len(), 1);
    store
        .insert(&refresh_token(5, Uuid::new_v4(), user), None)
        .await
        .unwrap();
    store
        .insert(&refresh_token(6, Uuid::new_v4(), user), None)
        .await
        .unwrap();
    assert_eq!(
        store
            .end_other_sessions(user, first, later, &event(AuditKind::LogoutAll))
            .await
            .unwrap(),
        2
    );
    let left = store.sessions(user, later).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, first);
    assert_eq!(
        store.sessions(someone_else, later).await.unwrap().len(),
        1,
        "others untouched"
    );
}
