//! One round of the statements the service's requests and its mail worker run, for
//! the tests that check each backend keeps them prepared (`crate::cached`): MariaDB's
//! by its session counter of prepares; SQLite's and PostgreSQL's by comparing the
//! statements Diesel started ([`record_statements`]) with how often each statement a
//! connection keeps ran ([`assert_kept`]). Each round runs the same shapes again, so
//! after the first two (which warm every connection) nothing should be prepared anew.

#![allow(
    clippy::disallowed_methods,
    reason = "codes unexpired by the wall clock"
)]

use chrono::{Duration, Utc};
use passcode_domain::otp::NewOtp;
use passcode_domain::ports::{
    AccountChange, AuditLog, EmailChange, FirstCode, GiveBack, Issue, Limit, Mail, NewRefreshToken,
    OtpStore, Outbox, OutboxStatus, PasswordSet, RefreshTokenStore, Rotation, SignedFor, Spend,
    Throttle, TokenIds, Tries, UserRepository,
};
use passcode_domain::{
    AuditEvent, AuditKind, CodeHash, EmailAddress, FullName, NewUser, OtpCode, OtpPurpose,
    PasswordHash, Registration, RequestContext, TokenSubject, User, UserId,
};
use uuid::Uuid;

/// The statements Diesel's instrumentation saw on every connection opened after
/// [`record_statements`]: the name of the connection's database (its URL's last
/// part: a SQLite file's name, a PostgreSQL database's), whether the statement was
/// started (`false`) or prepared into the connection's cache (`true`), and its SQL.
/// Tests run alongside in one process, so each reads only its own database's.
static STATEMENTS: std::sync::Mutex<Vec<(String, bool, String)>> =
    std::sync::Mutex::new(Vec::new());

/// Installs the recorder of [`STATEMENTS`], once per process.
pub(crate) fn record_statements() {
    use diesel::connection::{InstrumentationEvent, set_default_instrumentation};
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        set_default_instrumentation(|| {
            let mut database = None;
            Some(Box::new(move |event: InstrumentationEvent<'_>| {
                let (cached, sql) = match event {
                    InstrumentationEvent::StartEstablishConnection { url, .. } => {
                        database = Some(database_name(url));
                        return;
                    }
                    // Diesel shows a statement as its SQL, then ` -- binds: [...]`.
                    InstrumentationEvent::StartQuery { query, .. } => {
                        let shown = query.to_string();
                        let sql = shown.split(" -- binds: ").next().unwrap_or_default();
                        (false, sql.to_owned())
                    }
                    InstrumentationEvent::CacheQuery { sql, .. } => (true, sql.to_owned()),
                    _ => return,
                };
                if let Some(database) = &database {
                    let mut statements = STATEMENTS.lock().unwrap();
                    statements.push((database.clone(), cached, sql));
                }
            }))
        })
        .unwrap();
    });
}

/// The name [`STATEMENTS`] knows a database by: its URL's (or path's) last part.
pub(crate) fn database_name(url: &str) -> String {
    url.rsplit('/').next().unwrap_or(url).to_owned()
}

/// The statements recorded so far on database `name`: (cached, SQL).
pub(crate) fn statements_of(name: &str) -> Vec<(bool, String)> {
    STATEMENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(of, _, _)| of == name)
        .map(|(_, cached, sql)| (*cached, sql.clone()))
        .collect()
}

/// A statement a connection keeps prepared, and how often it ran.
#[derive(diesel::QueryableByName)]
pub(crate) struct Kept {
    #[diesel(sql_type = diesel::sql_types::Text)]
    sql: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    run: i64,
}

/// How often the statements kept ran, by SQL text, over all connections.
pub(crate) type Runs = std::collections::BTreeMap<String, i64>;

pub(crate) fn runs(kept: Vec<Kept>) -> Runs {
    let mut runs = Runs::new();
    for Kept { sql, run } in kept {
        *runs.entry(sql).or_default() += run;
    }
    runs
}

/// Runs three rounds on `store` (database `name`, recorded since before its first
/// connection), and fails on any statement the third started more often than its
/// kept form ran (`runs_kept`, read before and after it): a statement prepared anew.
pub(crate) async fn assert_kept<S: Store>(
    store: &S,
    name: &str,
    runs_kept: impl AsyncFn(&S) -> Runs,
) {
    let fixture = fixture(store).await;
    for n in 0..2 {
        round(store, &fixture, n).await;
    }
    let runs_before = runs_kept(store).await;
    let from = statements_of(name).len();
    round(store, &fixture, 2).await;
    let started = statements_of(name)[from..].to_vec();
    let runs_after = runs_kept(store).await;

    // Transaction control and settings are plain SQL (`batch_execute`), prepared each
    // time by design.
    let plain = [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "PRAGMA",
        "SAVEPOINT",
        "RELEASE",
        "SET",
    ];
    let mut times = Runs::new();
    for (cached, sql) in started {
        assert!(!cached, "cached anew in the third round: {sql}");
        if !plain.iter().any(|word| sql.starts_with(word)) {
            *times.entry(sql).or_default() += 1;
        }
    }
    assert!(times.len() > 20, "the round ran its statements: {times:?}");
    let anew: Vec<(i64, &str)> = times
        .iter()
        .filter_map(|(sql, times)| {
            let ran_kept = runs_after.get(sql).unwrap_or(&0) - runs_before.get(sql).unwrap_or(&0);
            (ran_kept < *times).then_some((times - ran_kept, sql.as_str()))
        })
        .collect();
    assert_eq!(anew, [], "prepared anew in the third round (times, SQL)");
}

/// What every store the rounds run on offers.
pub(crate) trait Store:
    UserRepository + OtpStore + Outbox + Throttle + RefreshTokenStore + AuditLog
{
}

impl<S: UserRepository + OtpStore + Outbox + Throttle + RefreshTokenStore + AuditLog> Store for S {}

/// The account the rounds act on, created once.
pub(crate) struct Fixture {
    user: User,
    hash: PasswordHash,
}

pub(crate) async fn fixture(store: &impl Store) -> Fixture {
    let hash = PasswordHash::new("$argon2id$v=19$new".into());
    let user = store
        .create(
            &NewUser {
                id: UserId::new_random(),
                email: EmailAddress::parse("ada@example.com").unwrap(),
                full_name: FullName::parse("Ada Lovelace").unwrap(),
                password_hash: hash.clone(),
                created_at: Utc::now(),
            },
            None,
        )
        .await
        .unwrap();
    Fixture { user, hash }
}

/// Round `round` (from 0): a code replaced, guessed and spent with a password set; a
/// registration's code guessed beside another and spent; a decoy; mail sent one at a
/// time and in batches of three and two (`IN` lists of four and two, padded); the
/// outbox's statistics; a login's budgets reserved and its session started, refreshed,
/// listed and ended by logout, by its owner, and by a logout of all (a token without
/// its session's id), and revoked as reuse detection and a deactivation do; the
/// password changed by its owner; a new account registered, moved to another address
/// and erased; the account read by address and by id.
pub(crate) async fn round(store: &impl Store, fixture: &Fixture, round: u8) {
    let Fixture { user, hash } = fixture;
    let email = user.email.clone();
    let now = Utc::now();
    let notice = Mail::RegistrationAttempt {
        to: email.clone(),
        full_name: "Ada".into(),
    };
    let code = |purpose, registration| NewOtp {
        id: Uuid::new_v4(),
        email: email.clone(),
        purpose,
        code_hash: CodeHash::from_bytes(vec![round; 32]),
        created_at: now,
        expires_at: now + Duration::minutes(10),
        registration,
        account: None,
    };
    let mail = |otp: &NewOtp| Mail::Code {
        to: otp.email.clone(),
        full_name: "Ada".into(),
        code: OtpCode::new("123456".into()),
        purpose: otp.purpose,
        valid_for: Duration::minutes(10),
    };
    let audit = |kind| {
        AuditEvent::new(
            kind,
            now,
            Some(user.id),
            Some(&email),
            &RequestContext::default(),
        )
    };
    let reset_audit = audit(AuditKind::PasswordReset);

    // A new account, with its first code.
    let newcomer = EmailAddress::parse(&format!("new{round}@example.com")).unwrap();
    let first = NewOtp {
        email: newcomer.clone(),
        ..code(
            OtpPurpose::VerifyEmail,
            Some(Registration {
                full_name: FullName::parse("Ada").unwrap(),
                password_hash: hash.clone(),
            }),
        )
    };
    let first = FirstCode {
        mail: mail(&first),
        otp: first,
        audit: audit(AuditKind::Registered),
    };
    let newcomer = store
        .create(
            &NewUser {
                id: UserId::new_random(),
                email: newcomer,
                full_name: FullName::parse("Ada").unwrap(),
                password_hash: hash.clone(),
                created_at: now,
            },
            Some(&first),
        )
        .await
        .unwrap();
    moved_and_erased(store, &newcomer, now, round).await;

    let nobody = EmailAddress::parse("nobody@example.com").unwrap();
    store
        .decoy(&nobody, OtpPurpose::VerifyEmail, now, &Issue::default())
        .await
        .unwrap();
    let reset = code(OtpPurpose::ResetPassword, None);
    store
        .replace(&reset, &mail(&reset), &Issue::default())
        .await
        .unwrap();
    store
        .count_try(&email, OtpPurpose::ResetPassword, now, 5, &[])
        .await
        .unwrap();
    let spend = Spend {
        account: Some(AccountChange::Password(PasswordSet {
            user: user.id,
            hash,
            verify_email: true,
            audit: &reset_audit,
            notice: Some(&notice),
        })),
        ..Spend::new(reset.id, &reset.code_hash, now, 5)
    };
    assert!(store.consume(&spend).await.unwrap());

    let registration = Registration {
        full_name: FullName::parse("Ada").unwrap(),
        password_hash: hash.clone(),
    };
    let verified = audit(AuditKind::Verified);
    let registering = code(OtpPurpose::VerifyEmail, Some(registration.clone()));
    store
        .add(&registering, &mail(&registering), &verified)
        .await
        .unwrap();
    // A second code side by side: a guess counts a try on both (an `IN` list of two).
    let beside = code(OtpPurpose::VerifyEmail, Some(registration.clone()));
    store.add(&beside, &mail(&beside), &verified).await.unwrap();
    let tried = store
        .count_try(&email, OtpPurpose::VerifyEmail, now, 5, &[])
        .await
        .unwrap();
    assert!(
        matches!(&tried, Tries::Counted(codes) if codes.len() == 2),
        "{tried:?}"
    );
    let spend = Spend::new(registering.id, &registering.code_hash, now, 5);
    assert!(
        store
            .complete_registration(&spend, user.id, &registration, &verified)
            .await
            .unwrap()
    );

    let claimed = store.claim(now, Duration::minutes(1), 10).await.unwrap();
    assert!(!claimed.is_empty());
    for sent in claimed {
        store.mark_sent(&[sent.id], now).await.unwrap();
    }
    for batch in [3, 2] {
        for _ in 0..batch {
            store.enqueue(&notice, now, None).await.unwrap();
        }
        let claimed = store.claim(now, Duration::minutes(1), 10).await.unwrap();
        assert_eq!(claimed.len(), batch);
        let ids: Vec<_> = claimed.iter().map(|mail| mail.id).collect();
        store.mark_sent(&ids, now).await.unwrap();
    }
    // A mail put back for later, then sent; another given up.
    for _ in 0..2 {
        store.enqueue(&notice, now, None).await.unwrap();
    }
    let claimed = store.claim(now, Duration::minutes(1), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store
        .retry_later(claimed[0].id, now, "421 try again later")
        .await
        .unwrap();
    store
        .finish(
            claimed[1].id,
            OutboxStatus::Failed,
            Some("550 no such user".into()),
            now,
        )
        .await
        .unwrap();
    let again = store.claim(now, Duration::minutes(1), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    store.mark_sent(&[again[0].id], now).await.unwrap();
    assert_eq!(store.stats().await.unwrap().unsent, 0);

    sessions(store, user, now, round).await;
    // The password changed by its owner.
    store
        .set_password(
            user.id,
            hash,
            false,
            now,
            &audit(AuditKind::PasswordChanged),
            Some(&notice),
            GiveBack::NONE,
        )
        .await
        .unwrap();
    assert!(store.find_by_email(&email).await.unwrap().is_some());
    assert!(store.find_by_id(user.id).await.unwrap().is_some());
}

/// A login's sessions, each refreshed and ended another way.
async fn sessions(store: &impl Store, user: &User, now: chrono::DateTime<Utc>, round: u8) {
    let limit = Limit {
        limit: 1_000,
        window: Duration::hours(1),
        cooldown: Duration::zero(),
    };
    let budgets = [
        ("login:ada@example.com:client".to_owned(), limit),
        ("login:ada@example.com".to_owned(), limit),
    ];
    let keys: Vec<String> = budgets.iter().map(|(key, _)| key.clone()).collect();
    let signed = SignedFor {
        subject: TokenSubject {
            user_id: user.id,
            email: user.email.clone(),
            email_verified: true,
        },
        presented_issued_at: now,
    };
    let token = |n: u8, family| NewRefreshToken {
        token_hash: vec![round.wrapping_mul(16).wrapping_add(n); 32],
        family_id: family,
        user_id: user.id,
        expires_at: now + Duration::days(1),
        created_at: now,
        family_expires_at: now + Duration::days(30),
        origin: RequestContext::default(),
    };
    let event = |kind| {
        AuditEvent::new(
            kind,
            now,
            Some(user.id),
            Some(&user.email),
            &RequestContext::default(),
        )
    };
    let mut families = Vec::new();
    for n in [1, 3, 5] {
        store.acquire_all(&budgets, now).await.unwrap();
        let family = Uuid::new_v4();
        let give_back = GiveBack {
            keys: &keys,
            reserved_at: now,
        };
        store
            .insert(
                &token(n, family),
                Some(event(AuditKind::LoginSucceeded)),
                give_back,
            )
            .await
            .unwrap();
        let ids = TokenIds {
            session_id: family,
            access_jti: format!("a{n}"),
            refresh_jti: format!("r{n}"),
            issued_at: now,
        };
        let rotated = store
            .rotate(
                &token(n, family).token_hash,
                now,
                Duration::seconds(10),
                &token(n + 1, family),
                &ids,
                &signed,
            )
            .await
            .unwrap();
        assert_eq!(rotated, Rotation::Rotated);
        families.push(family);
    }
    assert_eq!(store.sessions(user.id, now).await.unwrap().len(), 3);
    let ended = store
        .logout(
            &token(2, families[0]).token_hash,
            Some(families[0]),
            false,
            now,
            event(AuditKind::Logout),
        )
        .await
        .unwrap();
    assert_eq!(ended, Some(user.id));
    assert!(
        store
            .end_session(user.id, families[1], now, &event(AuditKind::Logout))
            .await
            .unwrap()
    );
    let ended = store
        .logout(
            &token(6, families[2]).token_hash,
            None,
            true,
            now,
            event(AuditKind::LogoutAll),
        )
        .await
        .unwrap();
    assert_eq!(ended, Some(user.id));

    // The owner ends every other session.
    let keep = Uuid::new_v4();
    for (n, family) in [(7, keep), (8, Uuid::new_v4())] {
        store
            .insert(&token(n, family), None, GiveBack::NONE)
            .await
            .unwrap();
    }
    let others = store
        .end_other_sessions(user.id, keep, now, &event(AuditKind::Logout))
        .await
        .unwrap();
    assert_eq!(others, 1);

    // Reuse detection's revocation, and a deactivation's.
    let family = Uuid::new_v4();
    store
        .insert(&token(9, family), None, GiveBack::NONE)
        .await
        .unwrap();
    store
        .revoke_family(family, now, &event(AuditKind::RefreshReuseDetected))
        .await
        .unwrap();
    store
        .revoke_all(user.id, now, Some(event(AuditKind::Deactivated)))
        .await
        .unwrap();
    store
        .set_active(user.id, false, now, &event(AuditKind::Deactivated))
        .await
        .unwrap();
    store
        .set_active(user.id, true, now, &event(AuditKind::Activated))
        .await
        .unwrap();
}

/// A new account moved to another address by a code sent there, then erased.
async fn moved_and_erased(
    store: &impl Store,
    account: &User,
    now: chrono::DateTime<Utc>,
    round: u8,
) {
    let moved = EmailAddress::parse(&format!("moved{round}@example.com")).unwrap();
    let otp = NewOtp {
        id: Uuid::new_v4(),
        email: moved.clone(),
        purpose: OtpPurpose::ChangeEmail,
        code_hash: CodeHash::from_bytes(vec![round; 32]),
        created_at: now,
        expires_at: now + Duration::minutes(10),
        registration: None,
        account: Some(account.id),
    };
    let mail = Mail::Code {
        to: moved.clone(),
        full_name: "Ada".into(),
        code: OtpCode::new("123456".into()),
        purpose: OtpPurpose::ChangeEmail,
        valid_for: Duration::minutes(10),
    };
    store.replace(&otp, &mail, &Issue::default()).await.unwrap();
    let event = |kind, email: &EmailAddress| {
        AuditEvent::new(
            kind,
            now,
            Some(account.id),
            Some(email),
            &RequestContext::default(),
        )
    };
    let change = EmailChange {
        user: account.id,
        old: account.email.clone(),
        new: moved.clone(),
        keep_session: Uuid::new_v4(),
    };
    let notice = Mail::EmailChanged {
        to: account.email.clone(),
        full_name: "Ada".into(),
    };
    let changed = event(AuditKind::EmailChanged, &moved);
    let spend = Spend {
        account: Some(AccountChange::Email {
            change: &change,
            notice: &notice,
            audit: &changed,
        }),
        ..Spend::new(otp.id, &otp.code_hash, now, 5)
    };
    assert!(store.consume(&spend).await.unwrap());
    let goodbye = Mail::AccountDeleted {
        to: moved.clone(),
        full_name: "Ada".into(),
    };
    let erased = store
        .delete(
            account.id,
            &moved,
            &goodbye,
            now,
            &event(AuditKind::AccountDeleted, &moved),
        )
        .await
        .unwrap();
    assert!(erased);
}
