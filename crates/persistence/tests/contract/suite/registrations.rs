//! The contract of `OtpStore` for registrations: each code carries its registration, the first right code completes it.

use super::*;

pub async fn completing_a_registration_applies_it_and_voids_the_others(store: impl Store) {
    let user = store
        .create(&new_user("ada@example.com"), None)
        .await
        .unwrap();
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

/// A new account and its first code: all of it in one transaction, or, for a taken
/// address, none of it.
pub async fn a_new_account_is_stored_with_its_first_code_or_not_at_all(store: impl Store) {
    let first = |hash: u8, name: &str| {
        let otp = registration_otp("ada@example.com", hash, name, "$argon2id$owner");
        FirstCode {
            mail: mail_for(&otp),
            otp,
            audit: event(AuditKind::Registered),
        }
    };
    let owner = first(1, "Ada Owner");
    let user = store
        .create(&new_user("ada@example.com"), Some(&owner))
        .await
        .unwrap();
    assert_eq!(events(&store, AuditKind::Registered).await, 1);
    let other = first(2, "Mallory");
    assert!(matches!(
        store
            .create(&new_user("ada@example.com"), Some(&other))
            .await,
        Err(CreateUserError::EmailTaken)
    ));
    assert_eq!(
        events(&store, AuditKind::Registered).await,
        1,
        "the taken address records nothing"
    );
    let queued = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    assert_eq!(
        queued.len(),
        1,
        "one mail: the first code's, not the other's"
    );
    let codes = store
        .count_try(&owner.otp.email, OtpPurpose::VerifyEmail, now(), 5, &[])
        .await
        .unwrap()
        .counted();
    assert_eq!(codes.len(), 1, "one code: the first's");
    assert_eq!(codes[0].id, owner.otp.id);
    let registration = owner.otp.registration.clone().unwrap();
    assert!(
        store
            .complete_registration(
                owner.otp.id,
                &owner.otp.code_hash,
                user.id,
                &registration,
                now(),
                5,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap(),
        "the first code completes the registration"
    );
    assert!(
        store
            .find_by_id(user.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
}

pub async fn a_registration_of_a_deactivated_account_is_not_completed(store: impl Store) {
    let user = store
        .create(&new_user("ada@example.com"), None)
        .await
        .unwrap();
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
    let user = store
        .create(&new_user("ada@example.com"), None)
        .await
        .unwrap();
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
    let user = store
        .create(&new_user("ada@example.com"), None)
        .await
        .unwrap();
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
            None,
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
