//! The contract of `OtpStore`: codes, their tries and budgets, and completing a registration.

use super::*;

pub async fn replace_then_find_returns_the_code(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
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
    store
        .replace(&first, &mail_for(&first), &Issue::default())
        .await
        .unwrap();
    count(&store, &first, 5).await;
    let second = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 2);
    store
        .replace(&second, &mail_for(&second), &Issue::default())
        .await
        .unwrap();

    let found = store
        .find(&first.email, OtpPurpose::VerifyEmail)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, second.id);
    assert_eq!(found.attempts, 0, "a new code starts with all its tries");
    assert!(
        !store
            .consume(&Spend::new(first.id, &first.code_hash, now(), 5))
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume(&Spend::new(second.id, &first.code_hash, now(), 5))
            .await
            .unwrap()
    );
    assert!(
        store
            .consume(&Spend::new(second.id, &second.code_hash, now(), 5))
            .await
            .unwrap()
    );
}

pub async fn codes_of_different_purposes_are_separate(store: impl Store) {
    let verify = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    let reset = new_otp("ada@example.com", OtpPurpose::ResetPassword, 2);
    store
        .replace(&verify, &mail_for(&verify), &Issue::default())
        .await
        .unwrap();
    store
        .replace(&reset, &mail_for(&reset), &Issue::default())
        .await
        .unwrap();
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
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    assert!(
        store
            .consume(&Spend::new(otp.id, &otp.code_hash, now(), 5))
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume(&Spend::new(otp.id, &otp.code_hash, now(), 5))
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
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let wrong = CodeHash::from_bytes(vec![9; 32]);
    assert!(
        !store
            .consume(&Spend::new(otp.id, &wrong, now(), 5))
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume(&Spend::new(otp.id, &otp.code_hash, otp.expires_at, 5))
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
            .consume(&Spend::new(otp.id, &otp.code_hash, now(), 2))
            .await
            .unwrap(),
        "more tries counted than allowed"
    );
    assert!(
        store
            .consume(&Spend::new(otp.id, &otp.code_hash, now(), 5))
            .await
            .unwrap(),
        "still unspent"
    );
}

pub async fn concurrent_consumes_have_exactly_one_winner(store: impl Store) {
    let otp = Arc::new(new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1));
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, otp) = (store.clone(), otp.clone());
            tokio::spawn(async move {
                store
                    .consume(&Spend::new(otp.id, &otp.code_hash, now(), 5))
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(winners(tasks).await, 1);
}

pub async fn failed_attempts_are_counted_up_to_the_limit(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
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
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
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

pub async fn a_refused_guess_budget_counts_nothing(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
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

pub async fn a_refused_share_leaves_the_ceiling_untouched(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let budgets = [
        ("guess:ada@example.com:client".to_owned(), per_hour(1)),
        ("guess:ada@example.com".to_owned(), per_hour(1)),
    ];
    // This client's share is spent.
    store
        .acquire(&budgets[0].0, per_hour(1), now())
        .await
        .unwrap();
    let tries = store
        .count_try(&otp.email, otp.purpose, now(), 5, &budgets)
        .await
        .unwrap();
    assert!(
        matches!(tries, Tries::Refused { budget: 0, retry_after } if retry_after == Duration::hours(1)),
        "{tries:?}"
    );
    assert_eq!(
        store
            .acquire(&budgets[1].0, per_hour(1), now())
            .await
            .unwrap(),
        Admission::Allowed,
        "the ceiling was not counted"
    );
    assert_eq!(count(&store, &otp, 5).await, Some(1), "no try was counted");
}

/// 20 concurrent guesses from 4 clients (shares of 4) against a ceiling of 6: exactly 6
/// are counted, each with its try, and no share counts more than 4.
pub async fn concurrent_guesses_never_overrun_a_budget(store: impl Store) {
    let otp = Arc::new(new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1));
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let (store, otp) = (store.clone(), otp.clone());
            let budgets = [
                (
                    format!("guess:ada@example.com:client{}", n % 4),
                    per_hour(4),
                ),
                ("guess:ada@example.com".to_owned(), per_hour(6)),
            ];
            tokio::spawn(async move {
                store
                    .count_try(&otp.email, otp.purpose, now(), 100, &budgets)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut counted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Tries::Counted(open) => {
                assert_eq!(open.len(), 1);
                counted += 1;
            }
            Tries::Refused { budget, .. } => assert!(budget < 2),
        }
    }
    assert_eq!(counted, 6);
    assert_eq!(
        count(&store, &otp, 100).await,
        Some(7),
        "6 tries, then this one"
    );
    // Every share gave back what the ceiling refused: each has room left for what its
    // client had counted.
    let mut left = 0;
    for client in 0..4 {
        let key = format!("guess:ada@example.com:client{client}");
        while store.acquire(&key, per_hour(4), now()).await.unwrap() == Admission::Allowed {
            left += 1;
        }
    }
    assert_eq!(
        left,
        4 * 4 - 6,
        "the shares hold exactly the 6 counted tries"
    );
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
    store
        .replace(&first, &mail_for(&first), &Issue::default())
        .await
        .unwrap();
    let second = new_otp("ada@example.com", OtpPurpose::ResetPassword, 2);
    store
        .replace(&second, &mail_for(&second), &Issue::default())
        .await
        .unwrap();
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

/// Spends a right code: its guesses go back to both budgets and its session starts, in
/// the spend's transaction; a spend that does not happen does neither.
pub async fn a_spend_gives_its_guesses_back_and_starts_its_session(store: impl Store) {
    let (user, _) = account(&store, "ada@example.com").await;
    let otp = new_otp("ada@example.com", OtpPurpose::SignIn, 1);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    // Each budget admits one guess; this try takes it.
    let budgets = pair_of_budgets(1);
    let counted = store
        .count_try(&otp.email, otp.purpose, now(), 5, &budgets)
        .await
        .unwrap();
    assert_eq!(counted.counted().len(), 1);
    let keys: Vec<String> = budgets.iter().map(|(key, _)| key.clone()).collect();
    let token = refresh_token(1, Uuid::new_v4(), user);
    let signed_in = event(AuditKind::CodeSignIn);
    let wrong = CodeHash::from_bytes(vec![9; 32]);
    let spend = Spend {
        give_back: counted_now(&keys),
        session: Some((&token, Some(&signed_in))),
        ..Spend::new(otp.id, &wrong, now(), 5)
    };

    assert!(
        !store.consume(&spend).await.unwrap(),
        "not this code's hash"
    );
    assert!(store.sessions(user, now()).await.unwrap().is_empty());
    assert_eq!(events(&store, AuditKind::CodeSignIn).await, 0);
    for (key, limit) in &budgets {
        assert!(
            matches!(
                store.acquire(key, *limit, now()).await.unwrap(),
                Admission::Denied { .. }
            ),
            "{key}: nothing given back"
        );
    }

    let spend = Spend {
        code_hash: &otp.code_hash,
        ..spend
    };
    assert!(store.consume(&spend).await.unwrap());
    let sessions = store.sessions(user, now()).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, token.family_id);
    assert_eq!(events(&store, AuditKind::CodeSignIn).await, 1);
    for (key, limit) in &budgets {
        assert_eq!(
            store.acquire(key, *limit, now()).await.unwrap(),
            Admission::Allowed,
            "{key}: given back"
        );
    }
}

/// Wrong guesses and right codes of one address at once: a spend locks the budgets in
/// the order a guess does, then the code, so none deadlocks or times out, and one
/// spend wins.
pub async fn concurrent_guesses_and_spends_of_one_address_all_succeed(store: impl Store) {
    let (user, _) = account(&store, "ada@example.com").await;
    let otp = Arc::new(new_otp("ada@example.com", OtpPurpose::SignIn, 1));
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let budgets = pair_of_budgets(1000);
    let tasks: Vec<_> = (0..40u8)
        .map(|n| {
            let (store, otp, budgets) = (store.clone(), otp.clone(), budgets.clone());
            tokio::spawn(async move {
                let keys: Vec<String> = budgets.iter().map(|(key, _)| key.clone()).collect();
                // Open until the winner spends it.
                let open = store
                    .count_try(&otp.email, otp.purpose, now(), 1000, &budgets)
                    .await
                    .unwrap();
                assert!(open.counted().len() <= 1);
                if n % 2 == 0 {
                    return false;
                }
                let token = refresh_token(n, Uuid::new_v4(), user);
                store
                    .consume(&Spend {
                        give_back: counted_now(&keys),
                        session: Some((&token, None)),
                        ..Spend::new(otp.id, &otp.code_hash, now(), 1000)
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(winners(tasks).await, 1);
    assert_eq!(store.sessions(user, now()).await.unwrap().len(), 1);
}

/// A guess's two budgets, each of `limit` an hour.
fn pair_of_budgets(limit: u32) -> Vec<(String, Limit)> {
    vec![
        (
            "guess:ada@example.com:203.0.113.1".to_owned(),
            per_hour(limit),
        ),
        ("guess:ada@example.com".to_owned(), per_hour(limit)),
    ]
}

/// A spend that sets a password (a reset, or a sign-in clearing an unverified
/// account's): in its transaction the password set, every earlier session ended, the
/// notice queued, then its own session started; a spend that does not happen changes
/// none of it.
pub async fn a_spend_sets_its_password_before_its_session(store: impl Store) {
    let (user, _) = account(&store, "ada@example.com").await;
    store
        .insert(
            &refresh_token(1, Uuid::new_v4(), user),
            None,
            GiveBack::NONE,
        )
        .await
        .unwrap();
    let otp = new_otp("ada@example.com", OtpPurpose::ResetPassword, 1);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let before = store.pending(10).await.unwrap().len();
    let reset = Reset::new("$argon2id$v=19$new");
    let hash = &reset.hash;
    let token = refresh_token(2, Uuid::new_v4(), user);
    let wrong = CodeHash::from_bytes(vec![9; 32]);
    let spend = Spend {
        account: Some(reset.of(user)),
        session: Some((&token, None)),
        ..Spend::new(otp.id, &wrong, now(), 5)
    };

    assert!(!store.consume(&spend).await.unwrap());
    assert_ne!(
        &store.find_by_id(user).await.unwrap().unwrap().password_hash,
        hash
    );
    assert_eq!(store.sessions(user, now()).await.unwrap().len(), 1);
    assert_eq!(store.pending(10).await.unwrap().len(), before);

    let spend = Spend {
        code_hash: &otp.code_hash,
        ..spend
    };
    assert!(store.consume(&spend).await.unwrap());
    let after = store.find_by_id(user).await.unwrap().unwrap();
    assert_eq!(&after.password_hash, hash);
    assert!(after.email_verified);
    let sessions = store.sessions(user, now()).await.unwrap();
    assert_eq!(sessions.len(), 1, "the earlier session ended");
    assert_eq!(sessions[0].id, token.family_id, "its own session live");
    assert_eq!(store.pending(10).await.unwrap().len(), before + 1);
    assert_eq!(events(&store, AuditKind::PasswordReset).await, 1);
}

/// A password set on an account that is gone (deleted after its code was sent) spends
/// the code and records its event, but changes no account and queues no notice.
pub async fn a_spend_setting_a_password_of_an_account_gone_queues_no_notice(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::ResetPassword, 1);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let before = store.pending(10).await.unwrap().len();
    let reset = Reset::new("$argon2id$v=19$new");
    let spend = Spend {
        account: Some(reset.of(UserId::new_random())),
        ..Spend::new(otp.id, &otp.code_hash, now(), 5)
    };

    assert!(store.consume(&spend).await.unwrap());
    let code = store
        .find(&otp.email, OtpPurpose::ResetPassword)
        .await
        .unwrap()
        .unwrap();
    assert!(code.consumed, "the code is spent");
    assert_eq!(store.pending(10).await.unwrap().len(), before, "no notice");
    assert_eq!(events(&store, AuditKind::PasswordReset).await, 1);
    assert!(!store.consume(&spend).await.unwrap(), "once");
}

/// Concurrent spends of one reset code, each setting a password with its notice and
/// starting a session: exactly one wins, and only its password, session, notice and
/// event are written.
pub async fn concurrent_password_sets_by_one_code_have_one_winner(store: impl Store) {
    let (user, _) = account(&store, "ada@example.com").await;
    let otp = Arc::new(new_otp("ada@example.com", OtpPurpose::ResetPassword, 1));
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let before = store.pending(10).await.unwrap().len();
    let tasks: Vec<_> = (0..10u8)
        .map(|n| {
            let (store, otp) = (store.clone(), otp.clone());
            tokio::spawn(async move {
                let reset = Reset::new(&format!("$argon2id$v=19$new{n}"));
                let token = refresh_token(n, Uuid::new_v4(), user);
                let spend = Spend {
                    account: Some(reset.of(user)),
                    session: Some((&token, None)),
                    ..Spend::new(otp.id, &otp.code_hash, now(), 5)
                };
                store.consume(&spend).await.unwrap()
            })
        })
        .collect();
    assert_eq!(winners(tasks).await, 1);
    assert_eq!(store.sessions(user, now()).await.unwrap().len(), 1);
    assert_eq!(store.pending(10).await.unwrap().len(), before + 1);
    assert_eq!(events(&store, AuditKind::PasswordReset).await, 1);
}

/// A spend that moves its account to the code's address: in its transaction the
/// address moved and verified, every other session ended, the old address's codes
/// deleted, the event recorded and the notice queued; a spend that does not happen
/// changes none of it.
pub async fn a_spend_moves_its_account_to_its_new_address(store: impl Store) {
    let (user, _) = account(&store, "ada@example.com").await;
    let kept = refresh_token(1, Uuid::new_v4(), user);
    store.insert(&kept, None, GiveBack::NONE).await.unwrap();
    store
        .insert(
            &refresh_token(2, Uuid::new_v4(), user),
            None,
            GiveBack::NONE,
        )
        .await
        .unwrap();
    let old_code = new_otp("ada@example.com", OtpPurpose::ResetPassword, 3);
    store
        .replace(&old_code, &mail_for(&old_code), &Issue::default())
        .await
        .unwrap();
    let otp = change_otp(user);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let before = store.pending(10).await.unwrap().len();
    let (change, notice, moved) = email_change(user, "ada@example.com", kept.family_id);
    let wrong = CodeHash::from_bytes(vec![9; 32]);
    let spend = Spend {
        account: Some(AccountChange::Email {
            change: &change,
            notice: &notice,
            audit: &moved,
        }),
        ..Spend::new(otp.id, &wrong, now(), 5)
    };

    assert!(!store.consume(&spend).await.unwrap());
    assert_eq!(
        store.find_by_id(user).await.unwrap().unwrap().email,
        email("ada@example.com")
    );
    assert_eq!(store.sessions(user, now()).await.unwrap().len(), 2);
    assert_eq!(events(&store, AuditKind::EmailChanged).await, 0);

    let spend = Spend {
        code_hash: &otp.code_hash,
        ..spend
    };
    assert!(store.consume(&spend).await.unwrap());
    let after = store.find_by_id(user).await.unwrap().unwrap();
    assert_eq!(after.email, otp.email);
    assert!(after.email_verified);
    let sessions = store.sessions(user, now()).await.unwrap();
    assert_eq!(sessions.len(), 1, "every other session ended");
    assert_eq!(sessions[0].id, kept.family_id);
    assert!(
        store
            .find(&old_code.email, OtpPurpose::ResetPassword)
            .await
            .unwrap()
            .is_none(),
        "the old address's codes deleted"
    );
    let pending = store.pending(10).await.unwrap();
    assert_eq!(pending.len(), before + 1, "the notice queued");
    assert!(
        pending
            .iter()
            .any(|entry| entry.recipient == "ada@example.com" && entry.kind == "email_changed")
    );
    assert_eq!(events(&store, AuditKind::EmailChanged).await, 1);
    assert!(!store.consume(&spend).await.unwrap(), "once");
}

/// A move refused (the account no longer has the old address, or another account took
/// the new one) rolls its spend back: the code stays unspent, its guesses are not
/// given back, nothing moves.
pub async fn a_spend_whose_move_is_refused_leaves_its_code_unspent(store: impl Store) {
    let (user, _) = account(&store, "ada@example.com").await;
    let otp = change_otp(user);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let budgets = pair_of_budgets(1);
    let Tries::Counted(_) = store
        .count_try(&otp.email, OtpPurpose::ChangeEmail, now(), 5, &budgets)
        .await
        .unwrap()
    else {
        panic!("the first guess is counted");
    };
    let give_back: Vec<String> = budgets.iter().map(|(key, _)| key.clone()).collect();
    let moved_away = email_change(user, "grace@example.com", Uuid::nil());
    let taken = email_change(user, "ada@example.com", Uuid::nil());
    store
        .create(&new_user("lovelace@example.com"), None)
        .await
        .unwrap();

    for (change, notice, audit) in [&moved_away, &taken] {
        let spend = Spend {
            give_back: counted_now(&give_back),
            account: Some(AccountChange::Email {
                change,
                notice,
                audit,
            }),
            ..Spend::new(otp.id, &otp.code_hash, now(), 5)
        };
        assert!(!store.consume(&spend).await.unwrap(), "{change:?}");
        let code = store
            .find(&otp.email, OtpPurpose::ChangeEmail)
            .await
            .unwrap()
            .unwrap();
        assert!(!code.consumed, "{change:?}");
    }
    assert_eq!(
        store.find_by_id(user).await.unwrap().unwrap().email,
        email("ada@example.com")
    );
    assert_eq!(events(&store, AuditKind::EmailChanged).await, 0);
    assert!(
        matches!(
            store
                .count_try(&otp.email, OtpPurpose::ChangeEmail, now(), 5, &budgets)
                .await
                .unwrap(),
            Tries::Refused { .. }
        ),
        "no guess given back"
    );
}

/// A spend that deletes its account erases it in the spend's transaction, with its
/// goodbye queued; a spend for an account already gone changes nothing, and its code
/// stays unspent.
pub async fn a_spend_deletes_its_account(store: impl Store) {
    let address = "ada@example.com";
    let (user, _) = account(&store, address).await;
    store
        .insert(
            &refresh_token(1, Uuid::new_v4(), user),
            None,
            GiveBack::NONE,
        )
        .await
        .unwrap();
    let otp = new_otp(address, OtpPurpose::SignIn, 1);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let goodbye = Mail::AccountDeleted {
        to: email(address),
        full_name: "Ada".into(),
    };
    let deleted = event(AuditKind::AccountDeleted);
    let deleting = |user, code_hash| Spend {
        account: Some(AccountChange::Delete {
            user,
            email: &otp.email,
            goodbye: &goodbye,
            audit: &deleted,
        }),
        ..Spend::new(otp.id, code_hash, now(), 5)
    };

    let wrong = CodeHash::from_bytes(vec![9; 32]);
    assert!(!store.consume(&deleting(user, &wrong)).await.unwrap());
    assert!(store.find_by_id(user).await.unwrap().is_some());
    assert!(
        !store
            .consume(&deleting(UserId::new_random(), &otp.code_hash))
            .await
            .unwrap(),
        "no such account"
    );
    let code = store.find(&otp.email, OtpPurpose::SignIn).await.unwrap();
    assert!(!code.unwrap().consumed);
    assert_eq!(events(&store, AuditKind::AccountDeleted).await, 0);

    assert!(
        store
            .consume(&deleting(user, &otp.code_hash))
            .await
            .unwrap()
    );
    assert!(store.find_by_id(user).await.unwrap().is_none());
    assert!(store.sessions(user, now()).await.unwrap().is_empty());
    assert!(
        store
            .find(&otp.email, OtpPurpose::SignIn)
            .await
            .unwrap()
            .is_none()
    );
    let queued = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    assert_eq!(queued.len(), 1, "only the goodbye is queued");
    assert!(matches!(&queued[0].mail, Mail::AccountDeleted { to, .. } if *to == otp.email));
    assert_eq!(events(&store, AuditKind::AccountDeleted).await, 1);
}

/// A change-email code for `user`, sent to lovelace@example.com.
fn change_otp(user: UserId) -> NewOtp {
    NewOtp {
        account: Some(user),
        ..new_otp("lovelace@example.com", OtpPurpose::ChangeEmail, 1)
    }
}

/// `user`'s move from `old` to lovelace@example.com, keeping session `keep`, with the
/// notice to the old address and the event.
fn email_change(user: UserId, old: &str, keep: Uuid) -> (EmailChange, Mail, AuditEvent) {
    let change = EmailChange {
        user,
        old: email(old),
        new: email("lovelace@example.com"),
        keep_session: keep,
    };
    let notice = Mail::EmailChanged {
        to: email(old),
        full_name: "Ada".into(),
    };
    (change, notice, event(AuditKind::EmailChanged))
}

/// Whom the mail claimed at `at` goes to, each marked sent; sorted.
async fn sent_to(store: &impl Store, at: DateTime<Utc>) -> Vec<String> {
    let claimed = store.claim(at, Duration::seconds(60), 10).await.unwrap();
    let ids: Vec<Uuid> = claimed.iter().map(|queued| queued.id).collect();
    store.mark_sent(&ids, at).await.unwrap();
    let mut to: Vec<String> = claimed
        .iter()
        .map(|queued| match &queued.mail {
            Mail::Code { to, .. } => format!("code to {to}"),
            Mail::RegistrationAttempt { to, .. } => format!("notice to {to}"),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    to.sort();
    to
}

pub async fn an_issue_counts_its_send_gives_back_and_queues_its_notice_or_writes_nothing(
    store: impl Store,
) {
    let send = Limit {
        limit: 5,
        window: Duration::hours(1),
        cooldown: Duration::seconds(60),
    };
    let check = "password-check:ada".to_owned();
    let give_back = [check.clone()];
    let notice = notice("grace@example.com");
    let issue = Issue {
        send: Some(("send:change_email:ada@example.com", send)),
        give_back: counted_now(&give_back),
        notice: Some(&notice),
    };
    let spend_check = async |at| store.acquire(&check, per_hour(1), at).await.unwrap();
    assert_eq!(spend_check(now()).await, Admission::Allowed);

    let first = new_otp("ada@example.com", OtpPurpose::ChangeEmail, 1);
    assert_eq!(
        store
            .replace(&first, &mail_for(&first), &issue)
            .await
            .unwrap(),
        Admission::Allowed
    );
    assert_eq!(spend_check(now()).await, Admission::Allowed, "given back");
    assert_eq!(
        sent_to(&store, now()).await,
        ["code to ada@example.com", "notice to grace@example.com"]
    );

    // Within the send's cooldown a code, or a decoy, is refused and writes nothing:
    // the first code stands, nothing is given back, no mail is queued.
    let second = new_otp("ada@example.com", OtpPurpose::ChangeEmail, 2);
    let soon = now() + Duration::seconds(20);
    let refused = Admission::Denied {
        retry_after: Duration::seconds(40),
    };
    let at_soon = NewOtp {
        created_at: soon,
        ..second.clone()
    };
    assert_eq!(
        store
            .replace(&at_soon, &mail_for(&at_soon), &issue)
            .await
            .unwrap(),
        refused
    );
    let email = email("ada@example.com");
    assert_eq!(
        store
            .decoy(&email, OtpPurpose::ChangeEmail, soon, &issue)
            .await
            .unwrap(),
        refused
    );
    let found = store.find(&email, OtpPurpose::ChangeEmail).await.unwrap();
    assert_eq!(found.map(|otp| otp.id), Some(first.id));
    assert!(matches!(spend_check(soon).await, Admission::Denied { .. }));
    assert!(sent_to(&store, soon).await.is_empty());

    // After it, a decoy counts the send, gives back and queues the notice; it leaves
    // the code alone and sends no code.
    let later = now() + Duration::seconds(61);
    assert_eq!(
        store
            .decoy(&email, OtpPurpose::ChangeEmail, later, &issue)
            .await
            .unwrap(),
        Admission::Allowed
    );
    assert_eq!(spend_check(later).await, Admission::Allowed, "given back");
    assert_eq!(
        sent_to(&store, later).await,
        ["notice to grace@example.com"]
    );
    let found = store.find(&email, OtpPurpose::ChangeEmail).await.unwrap();
    assert_eq!(found.map(|otp| otp.id), Some(first.id));
    let refused_again = store
        .decoy(&email, OtpPurpose::ChangeEmail, later, &issue)
        .await
        .unwrap();
    assert!(matches!(refused_again, Admission::Denied { .. }), "counted");
}

pub async fn concurrent_issues_of_one_address_send_exactly_one(store: impl Store) {
    let send = Limit {
        limit: 5,
        window: Duration::hours(1),
        cooldown: Duration::seconds(60),
    };
    let tasks: Vec<_> = (0..12u8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let issue = Issue {
                    send: Some(("send:reset_password:ada@example.com", send)),
                    ..Issue::default()
                };
                let admission = if n % 3 == 0 {
                    let email = email("ada@example.com");
                    store
                        .decoy(&email, OtpPurpose::ResetPassword, now(), &issue)
                        .await
                } else {
                    let otp = new_otp("ada@example.com", OtpPurpose::ResetPassword, n);
                    store.replace(&otp, &mail_for(&otp), &issue).await
                };
                admission.unwrap() == Admission::Allowed
            })
        })
        .collect();
    assert_eq!(winners(tasks).await, 1);
}
