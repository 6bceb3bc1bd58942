//! The contract of `UserRepository`: accounts, their addresses, passwords and deletion.

use super::*;

pub async fn create_then_find_by_email_and_id(store: impl Store) {
    let created = store
        .create(&new_user("ada@example.com"), None)
        .await
        .unwrap();
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
    store
        .create(&new_user("ada@example.com"), None)
        .await
        .unwrap();
    let again = store.create(&new_user("ADA@example.com"), None).await;
    assert!(
        matches!(again, Err(CreateUserError::EmailTaken)),
        "{again:?}"
    );
}

pub async fn concurrent_registrations_of_one_address_create_exactly_one(store: impl Store) {
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create(&new_user("race@example.com"), None).await })
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
    let user = store
        .create(&new_user("ada@example.com"), None)
        .await
        .unwrap();
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

pub async fn set_password_replaces_the_hash_verifies_ends_sessions_and_queues_the_notice(
    store: impl Store,
) {
    let user = store
        .create(&new_user("ada@example.com"), None)
        .await
        .unwrap();
    let at = now() + Duration::milliseconds(400);
    let hash = PasswordHash::new("$argon2id$v=19$new".into());
    store
        .insert(
            &refresh_token(1, Uuid::new_v4(), user.id),
            None,
            GiveBack::NONE,
        )
        .await
        .unwrap();
    assert_eq!(store.sessions(user.id, now()).await.unwrap().len(), 1);
    let notice = Mail::PasswordChanged {
        to: email("ada@example.com"),
        full_name: "Ada".into(),
    };
    store
        .set_password(
            user.id,
            &hash,
            true,
            at,
            &event(AuditKind::PasswordReset),
            Some(&notice),
            GiveBack::NONE,
        )
        .await
        .unwrap();
    // In the same transaction: every session ended, the notice queued.
    assert!(store.sessions(user.id, now()).await.unwrap().is_empty());
    let queued = store.pending(10).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(
        (queued[0].recipient.as_str(), queued[0].kind.as_str()),
        ("ada@example.com", "password_changed")
    );
    let after = store.find_by_id(user.id).await.unwrap().unwrap();
    assert_eq!(after.password_hash, hash);
    assert!(after.email_verified);
    assert_eq!(after.tokens_valid_after, at, "to the millisecond");
    assert!(!after.accepts_token_issued_at(at - Duration::milliseconds(1)));
    assert!(after.accepts_token_issued_at(at));
    store
        .set_password(
            user.id,
            &hash,
            false,
            at,
            &event(AuditKind::PasswordReset),
            None,
            GiveBack::NONE,
        )
        .await
        .unwrap();
    assert_eq!(
        store.pending(10).await.unwrap().len(),
        1,
        "no notice: none queued"
    );
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

pub async fn deleting_an_account_erases_everything_personal(store: impl Store) {
    let address = "ada_l@example.com";
    let mut user = new_user(address);
    user.email = email(address);
    let user = store.create(&user, None).await.unwrap();
    let otp = registration_otp(address, 1, "Ada", "$argon2id$a");
    let mut mine = event(AuditKind::Registered);
    mine.email = Some(email(address));
    store.add(&otp, &mail_for(&otp), &mine).await.unwrap();
    store
        .insert(
            &refresh_token(1, Uuid::new_v4(), user.id),
            None,
            GiveBack::NONE,
        )
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
        store.family_of(&[1; 32], None).await.unwrap(),
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
    store.create(&new_user(address), None).await.unwrap();
}

/// A password set gives its keys' events back in its transaction (a change of password
/// gives back the try its old password cost). Concurrent changes and an erasure of one
/// account all finish: the change locks the account's row before the limits' rows,
/// the order an erasure locks them in.
pub async fn a_password_set_gives_its_budget_back(store: impl Store) {
    let (user, _) = account(&store, "ada@example.com").await;
    let key = format!("password-check:{user}");
    let limit = per_hour(20);
    let hash = PasswordHash::new("$argon2id$v=19$new".into());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, key, hash) = (store.clone(), key.clone(), hash.clone());
            tokio::spawn(async move {
                assert_eq!(
                    store.acquire(&key, limit, now()).await.unwrap(),
                    Admission::Allowed
                );
                change_password(&store, user, &hash, key).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for _ in 0..20 {
        assert_eq!(
            store.acquire(&key, limit, now()).await.unwrap(),
            Admission::Allowed,
            "every count given back"
        );
    }
    assert_ne!(
        store.acquire(&key, limit, now()).await.unwrap(),
        Admission::Allowed
    );

    let (other, _) = account(&store, "grace@example.com").await;
    let key = format!("password-check:{other}");
    let goodbye = Mail::AccountDeleted {
        to: email("grace@example.com"),
        full_name: "Grace".into(),
    };
    let mut tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, key, hash) = (store.clone(), key.clone(), hash.clone());
            tokio::spawn(async move {
                store.acquire(&key, limit, now()).await.unwrap();
                change_password(&store, other, &hash, key).await;
            })
        })
        .collect();
    let eraser = store.clone();
    tasks.insert(
        5,
        tokio::spawn(async move {
            let erased = event(AuditKind::AccountDeleted);
            eraser
                .delete(other, &email("grace@example.com"), &goodbye, now(), &erased)
                .await
                .unwrap();
        }),
    );
    for task in tasks {
        task.await.unwrap();
    }
    assert!(store.find_by_id(other).await.unwrap().is_none());
}

/// Sets `user`'s password to `hash`, giving `key`'s event back.
async fn change_password(store: &impl Store, user: UserId, hash: &PasswordHash, key: String) {
    store
        .set_password(
            user,
            hash,
            false,
            now(),
            &event(AuditKind::PasswordChanged),
            None,
            counted_now(&[key]),
        )
        .await
        .unwrap();
}
