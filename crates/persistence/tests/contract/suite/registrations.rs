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
                &Spend::new(owner.id, &other.code_hash, now(), 5),
                user.id,
                &reg,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap(),
        "the code's own hash only"
    );
    assert!(
        store
            .complete_registration(
                &Spend::new(owner.id, &owner.code_hash, now(), 5),
                user.id,
                &reg,
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
        open_codes(&store, &owner.email).await.is_empty(),
        "the other registration's code is void"
    );
    assert!(
        !store
            .complete_registration(
                &Spend::new(owner.id, &owner.code_hash, now(), 5),
                user.id,
                &reg,
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
    let codes = open_codes(&store, &owner.otp.email).await;
    assert_eq!(codes.len(), 1, "one code: the first's");
    assert_eq!(codes[0].id, owner.otp.id);
    let registration = owner.otp.registration.clone().unwrap();
    assert!(
        store
            .complete_registration(
                &Spend::new(owner.otp.id, &owner.otp.code_hash, now(), 5),
                user.id,
                &registration,
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
                &Spend::new(otp.id, &otp.code_hash, now(), 5),
                user.id,
                &reg,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap()
    );
    let after = store.find_by_id(user.id).await.unwrap().unwrap();
    assert!(!after.email_verified);
    assert_eq!(after.full_name.as_str(), "Ada Lovelace");
    assert!(newest_unspent(&store, &otp).await, "the code stays unspent");
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
                        &Spend::new(otp.id, &otp.code_hash, now(), 5),
                        user.id,
                        &reg,
                        &event(AuditKind::Verified),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(winners(tasks).await, 1);
}

pub async fn a_decoy_leaves_no_code_and_nothing_to_send(store: impl Store) {
    for purpose in [OtpPurpose::VerifyEmail, OtpPurpose::ResetPassword] {
        store
            .decoy(&email("ada@example.com"), purpose, now(), &Issue::default())
            .await
            .unwrap();
        store
            .decoy(&email("ada@example.com"), purpose, now(), &Issue::default())
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
    let (user, pending) =
        account_registering(&store, "ada@example.com", 1, "Mallory", "$argon2id$m").await;
    let hash = PasswordHash::new("$argon2id$v=19$reset".into());
    store
        .set_password(
            user.id,
            &hash,
            true,
            now(),
            &event(AuditKind::PasswordReset),
            None,
            GiveBack::NONE,
        )
        .await
        .unwrap();
    assert!(open_codes(&store, &pending.email).await.is_empty());
    assert!(
        store
            .claim(now(), Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Whether the newest verification code of `otp`'s address is unspent.
async fn newest_unspent(store: &impl Store, otp: &NewOtp) -> bool {
    !store
        .find(&otp.email, OtpPurpose::VerifyEmail)
        .await
        .unwrap()
        .unwrap()
        .consumed
}

/// The address's open verification codes (each with a try counted).
async fn open_codes(
    store: &impl Store,
    email: &EmailAddress,
) -> Vec<passcode_domain::otp::StoredOtp> {
    store
        .count_try(email, OtpPurpose::VerifyEmail, now(), 5, &[])
        .await
        .unwrap()
        .counted()
}

/// A guess counted on `otp`'s address, against a budget of one an hour that it spends:
/// the budget's key, for a spend to give back.
async fn the_last_guess_counted(store: &impl Store, otp: &NewOtp) -> Vec<String> {
    let key = format!("guess:{}", otp.email.as_str());
    store
        .count_try(
            &otp.email,
            otp.purpose,
            now(),
            5,
            &[(key.clone(), per_hour(1))],
        )
        .await
        .unwrap();
    vec![key]
}

/// Whether the budget `the_last_guess_counted` spent has room again (taking it).
async fn given_back(store: &impl Store, keys: &[String]) -> bool {
    store.acquire(&keys[0], per_hour(1), now()).await.unwrap() == Admission::Allowed
}

/// The completion gives the code's guesses back and starts the session in its own
/// transaction; a completion that does not happen (the account deactivated) neither.
pub async fn completing_a_registration_starts_its_session_with_the_spend(store: impl Store) {
    let (user, otp) = account_registering(&store, "ada@example.com", 1, "Ada", "$argon2id$a").await;
    let keys = the_last_guess_counted(&store, &otp).await;
    let token = refresh_token(1, Uuid::new_v4(), user.id);
    let reg = otp.registration.clone().unwrap();
    let spend = Spend {
        give_back: counted_now(&keys),
        session: Some((&token, None)),
        ..Spend::new(otp.id, &otp.code_hash, now(), 5)
    };
    let verified = event(AuditKind::Verified);

    // Refused after the code was spent in the transaction: all of it rolled back.
    store
        .set_active(user.id, false, now(), &event(AuditKind::Deactivated))
        .await
        .unwrap();
    assert!(
        !store
            .complete_registration(&spend, user.id, &reg, &verified)
            .await
            .unwrap()
    );
    assert!(store.sessions(user.id, now()).await.unwrap().is_empty());
    assert!(!given_back(&store, &keys).await, "nothing given back");

    store
        .set_active(user.id, true, now(), &event(AuditKind::Activated))
        .await
        .unwrap();
    assert!(
        store
            .complete_registration(&spend, user.id, &reg, &verified)
            .await
            .unwrap()
    );
    let sessions = store.sessions(user.id, now()).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, token.family_id);
    assert!(given_back(&store, &keys).await, "given back");
}

/// A completion whose code does not spend (a wrong hash), or whose account no longer
/// has the address the code was sent to, changes nothing at all: no budget given back,
/// no session, no event, the other codes and their mail untouched.
pub async fn a_completion_that_does_not_spend_changes_nothing(store: impl Store) {
    let (user, otp) = account_registering(&store, "ada@example.com", 1, "Ada", "$argon2id$a").await;
    let other = registration_otp("ada@example.com", 2, "Mallory", "$argon2id$m");
    store
        .add(&other, &mail_for(&other), &event(AuditKind::Registered))
        .await
        .unwrap();
    let (bob, bobs) = account_registering(&store, "bob@example.com", 3, "Bob", "$argon2id$b").await;
    let keys = the_last_guess_counted(&store, &otp).await;
    let token = refresh_token(1, Uuid::new_v4(), user.id);
    let reg = otp.registration.clone().unwrap();
    let verified = event(AuditKind::Verified);
    let wrong_hash = Spend {
        give_back: counted_now(&keys),
        session: Some((&token, None)),
        ..Spend::new(otp.id, &other.code_hash, now(), 5)
    };
    // Bob's code, spent for Ada's account: the account is not at the code's address.
    let other_address = Spend {
        give_back: counted_now(&keys),
        session: Some((&token, None)),
        ..Spend::new(bobs.id, &bobs.code_hash, now(), 5)
    };
    for (spend, what) in [
        (&wrong_hash, "a wrong hash"),
        (&other_address, "another address"),
    ] {
        assert!(
            !store
                .complete_registration(spend, user.id, &reg, &verified)
                .await
                .unwrap(),
            "{what}"
        );
        assert!(
            store.sessions(user.id, now()).await.unwrap().is_empty(),
            "{what}"
        );
        assert_eq!(events(&store, AuditKind::Verified).await, 0, "{what}");
        assert!(
            !given_back(&store, &keys).await,
            "{what}: nothing given back"
        );
        let ada = store.find_by_id(user.id).await.unwrap().unwrap();
        assert!(!ada.email_verified, "{what}");
        assert_eq!(ada.full_name.as_str(), "Ada Lovelace", "{what}");
        assert_eq!(
            open_codes(&store, &otp.email).await.len(),
            2,
            "{what}: both of Ada's codes stay open, unspent"
        );
        assert_eq!(
            open_codes(&store, &bobs.email).await.len(),
            1,
            "{what}: Bob's code stays open, unspent"
        );
    }
    assert!(
        !store
            .find_by_id(bob.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    assert_eq!(
        store
            .claim(now(), Duration::seconds(60), 10)
            .await
            .unwrap()
            .len(),
        3,
        "every code's mail still waits"
    );
}

/// A registration's completion is its account change: a spend that brings another
/// one is refused as a mistake, and nothing is written.
pub async fn a_completion_with_another_account_change_is_refused(store: impl Store) {
    let (user, otp) = account_registering(&store, "ada@example.com", 1, "Ada", "$argon2id$a").await;
    let reg = otp.registration.clone().unwrap();
    let hash = PasswordHash::new("$argon2id$other".into());
    let audit = event(AuditKind::PasswordReset);
    let spend = Spend {
        account: Some(AccountChange::Password(PasswordSet {
            user: user.id,
            hash: &hash,
            verify_email: true,
            audit: &audit,
            notice: None,
        })),
        ..Spend::new(otp.id, &otp.code_hash, now(), 5)
    };
    assert!(matches!(
        store
            .complete_registration(&spend, user.id, &reg, &event(AuditKind::Verified))
            .await,
        Err(InfraError::Unexpected(_))
    ));
    assert!(newest_unspent(&store, &otp).await);
}
