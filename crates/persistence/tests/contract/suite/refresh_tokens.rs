//! The contract of `RefreshTokenStore`: sessions, rotation and reuse detection.

use super::*;

pub async fn rotation_spends_once_replays_within_grace_then_revokes_on_reuse(store: impl Store) {
    use passcode_domain::ports::Rotation;
    let (user, signed) = account(&store, "ada@example.com").await;
    let family = Uuid::new_v4();
    store
        .insert(&refresh_token(1, family, user), None, GiveBack::NONE)
        .await
        .unwrap();
    let grace = Duration::seconds(10);

    let rotated = store
        .rotate(
            &[1; 32],
            now(),
            grace,
            &refresh_token(2, family, user),
            &token_ids(2),
            &signed,
        )
        .await;
    assert_eq!(rotated.unwrap(), Rotation::Rotated);
    assert_eq!(
        store.family_of(&[2; 32], None).await.unwrap(),
        Some((family, user)),
        "the successor joins the family"
    );

    let soon = now() + Duration::seconds(5);
    let replay = store
        .rotate(
            &[1; 32],
            soon,
            grace,
            &refresh_token(3, family, user),
            &token_ids(3),
            &signed,
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
        store.family_of(&[3; 32], None).await.unwrap(),
        None,
        "a replay stores nothing new"
    );

    let later = now() + Duration::seconds(11);
    let reuse = store
        .rotate(
            &[1; 32],
            later,
            grace,
            &refresh_token(4, family, user),
            &token_ids(4),
            &signed,
        )
        .await;
    assert_eq!(reuse.unwrap(), Rotation::Superseded);
    assert_eq!(
        store.family_of(&[2; 32], None).await.unwrap(),
        Some((family, user)),
        "the store revokes nothing: the caller checks the token's signature first"
    );
    let forged = store
        .rotate(
            &[9; 32],
            later,
            grace,
            &refresh_token(6, family, user),
            &token_ids(6),
            &signed,
        )
        .await;
    assert_eq!(
        forged.unwrap(),
        Rotation::Superseded,
        "any other token naming the live session"
    );
    store
        .revoke_family(family, later, &event(AuditKind::RefreshReuseDetected))
        .await
        .unwrap();
    assert_eq!(store.family_of(&[2; 32], None).await.unwrap(), None);
    let after = store
        .rotate(
            &[2; 32],
            later,
            grace,
            &refresh_token(5, family, user),
            &token_ids(5),
            &signed,
        )
        .await;
    assert_eq!(
        after.unwrap(),
        Rotation::Refused,
        "so the newest token no longer refreshes"
    );
    let again = store
        .rotate(
            &[1; 32],
            later,
            grace,
            &refresh_token(7, family, user),
            &token_ids(7),
            &signed,
        )
        .await;
    assert_eq!(
        again.unwrap(),
        Rotation::Refused,
        "nor does any other: the session is revoked"
    );
}

pub async fn rotation_refuses_unknown_and_expired_tokens(store: impl Store) {
    use passcode_domain::ports::Rotation;
    let (user, signed) = account(&store, "ada@example.com").await;
    let grace = Duration::seconds(10);
    let family = Uuid::new_v4();
    let unknown = store
        .rotate(
            &[9; 32],
            now(),
            grace,
            &refresh_token(2, family, user),
            &token_ids(2),
            &signed,
        )
        .await;
    assert_eq!(unknown.unwrap(), Rotation::Refused);
    store
        .insert(&refresh_token(1, family, user), None, GiveBack::NONE)
        .await
        .unwrap();
    let expired_at = now() + Duration::days(1);
    let expired = store
        .rotate(
            &[1; 32],
            expired_at,
            grace,
            &refresh_token(3, family, user),
            &token_ids(3),
            &signed,
        )
        .await;
    assert_eq!(expired.unwrap(), Rotation::Refused);
}

/// The rotation checks the account in the same step: if it is not as the successor
/// was signed for, nothing changes, and the token still rotates for the account as it is.
pub async fn rotation_of_a_changed_account_changes_nothing(store: impl Store) {
    use passcode_domain::ports::Rotation;
    let (user, signed) = account(&store, "ada@example.com").await;
    let family = Uuid::new_v4();
    store
        .insert(&refresh_token(1, family, user), None, GiveBack::NONE)
        .await
        .unwrap();
    let rotate = |signed: SignedFor, n: u8| {
        let store = store.clone();
        async move {
            store
                .rotate(
                    &[1; 32],
                    now(),
                    Duration::seconds(10),
                    &refresh_token(n, family, user),
                    &token_ids(n),
                    &signed,
                )
                .await
                .unwrap()
        }
    };
    let mut verified = signed.clone();
    verified.subject.email_verified = true;
    let mut elsewhere = signed.clone();
    elsewhere.subject.email = email("ada@example.org");
    let mut someone_else = signed.clone();
    someone_else.subject.user_id = UserId::new_random();
    let mut cut_off = signed.clone();
    cut_off.presented_issued_at = now() - Duration::seconds(1);
    for (n, changed) in [verified, elsewhere, someone_else].into_iter().enumerate() {
        assert_eq!(
            rotate(changed, 2).await,
            Rotation::AccountChanged,
            "case {n}"
        );
    }
    store
        .set_active(user, false, now(), &event(AuditKind::Deactivated))
        .await
        .unwrap();
    assert_eq!(
        rotate(signed.clone(), 2).await,
        Rotation::AccountChanged,
        "inactive"
    );
    store
        .set_active(user, true, now(), &event(AuditKind::Activated))
        .await
        .unwrap();
    // Nothing was spent: the token rotates once, for the account as it is.
    assert_eq!(rotate(signed.clone(), 3).await, Rotation::Rotated);
    assert_eq!(store.family_of(&[2; 32], None).await.unwrap(), None);
    assert!(store.family_of(&[3; 32], None).await.unwrap().is_some());
    // A password change ends the session too; the account is checked first.
    store
        .set_password(
            user,
            &PasswordHash::new("$argon2id$new".into()),
            false,
            now() - Duration::milliseconds(500),
            &event(AuditKind::PasswordChanged),
            None,
            GiveBack::NONE,
        )
        .await
        .unwrap();
    assert_eq!(
        rotate(cut_off, 4).await,
        Rotation::AccountChanged,
        "issued before the password change"
    );
}

pub async fn concurrent_rotations_of_one_token_rotate_once_and_replay_the_rest(store: impl Store) {
    use passcode_domain::ports::Rotation;
    let (user, signed) = account(&store, "ada@example.com").await;
    let family = Uuid::new_v4();
    store
        .insert(&refresh_token(1, family, user), None, GiveBack::NONE)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..10u8)
        .map(|n| {
            let (store, signed) = (store.clone(), signed.clone());
            tokio::spawn(async move {
                let successor = refresh_token(10 + n, family, user);
                store
                    .rotate(
                        &[1; 32],
                        now(),
                        Duration::seconds(10),
                        &successor,
                        &token_ids(10 + n),
                        &signed,
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
        .insert(&refresh_token(1, a, user), None, GiveBack::NONE)
        .await
        .unwrap();
    store
        .insert(&refresh_token(2, b, user), None, GiveBack::NONE)
        .await
        .unwrap();
    store
        .revoke_family(a, now(), &event(AuditKind::Logout))
        .await
        .unwrap();
    assert_eq!(store.family_of(&[1; 32], None).await.unwrap(), None);
    assert_eq!(
        store.family_of(&[2; 32], None).await.unwrap(),
        Some((b, user))
    );
    assert_eq!(
        store.family_of(&[0; 32], Some(b)).await.unwrap(),
        Some((b, user)),
        "by the session a token names, whichever token it is"
    );
    assert_eq!(store.family_of(&[0; 32], Some(a)).await.unwrap(), None);
    store.revoke_all(user, now(), None).await.unwrap();
    assert_eq!(store.family_of(&[2; 32], None).await.unwrap(), None);
    assert_eq!(store.family_of(&[0; 32], Some(b)).await.unwrap(), None);
}

pub async fn logout_ends_the_named_session_or_all_and_records_its_account(store: impl Store) {
    let (user, other) = (UserId::new_random(), UserId::new_random());
    let (a, b, c, d) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    for (n, family, owner) in [(1, a, user), (2, b, user), (3, c, user), (4, d, other)] {
        store
            .insert(&refresh_token(n, family, owner), None, GiveBack::NONE)
            .await
            .unwrap();
    }
    // The event as the domain hands it over: the store names the account.
    let logout = async |hash: u8, session, all| {
        let kind = if all {
            AuditKind::LogoutAll
        } else {
            AuditKind::Logout
        };
        let audit = AuditEvent {
            email: None,
            ..event(kind)
        };
        store
            .logout(&[hash; 32], session, all, now(), audit)
            .await
            .unwrap()
    };
    // By the session a token names, whichever token it is.
    assert_eq!(logout(0, Some(a), false).await, Some(user));
    assert_eq!(store.family_of(&[0; 32], Some(a)).await.unwrap(), None);
    assert_eq!(
        store.family_of(&[0; 32], Some(b)).await.unwrap(),
        Some((b, user)),
        "only the named session ends"
    );
    let recorded = logged(&store, AuditKind::Logout).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].user_id,
        Some(user),
        "the event names the account"
    );
    assert_eq!(recorded[0].request_id.as_deref(), Some("req-1"));
    // Ended already, or unknown: nothing happens, and nothing is recorded.
    assert_eq!(logout(1, Some(a), false).await, None);
    assert_eq!(logout(9, None, true).await, None, "an unknown token");
    assert_eq!(logged(&store, AuditKind::Logout).await.len(), 1);
    assert_eq!(logged(&store, AuditKind::LogoutAll).await.len(), 0);
    // By its live token (a token older than `sid`), every session of the account.
    assert_eq!(logout(2, None, true).await, Some(user));
    assert_eq!(store.family_of(&[0; 32], Some(b)).await.unwrap(), None);
    assert_eq!(store.family_of(&[3; 32], None).await.unwrap(), None);
    assert_eq!(
        store.family_of(&[4; 32], None).await.unwrap(),
        Some((d, other)),
        "another account's session lives on"
    );
    let recorded = logged(&store, AuditKind::LogoutAll).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].user_id, Some(user));
}

/// Twelve logouts of one session at once (by its id or by its token, of it alone or of
/// every session of its account): one ends it and records its event; the others find
/// it ended, as a later logout would.
pub async fn concurrent_logouts_of_one_session_end_it_once(store: impl Store) {
    let user = UserId::new_random();
    for (n, (session, all)) in [
        (None, false),
        (None, true),
        (Some(()), false),
        (Some(()), true),
    ]
    .into_iter()
    .enumerate()
    {
        let hash = u8::try_from(n).unwrap() * 2 + 1;
        let family = Uuid::new_v4();
        store
            .insert(&refresh_token(hash, family, user), None, GiveBack::NONE)
            .await
            .unwrap();
        // Another session of the account: ended by a logout of all, kept by the others.
        let other = Uuid::new_v4();
        store
            .insert(&refresh_token(hash + 1, other, user), None, GiveBack::NONE)
            .await
            .unwrap();
        let kind = if all {
            AuditKind::LogoutAll
        } else {
            AuditKind::Logout
        };
        let before = events(&store, kind).await;
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let store = store.clone();
                let session = session.map(|()| family);
                tokio::spawn(async move {
                    let audit = AuditEvent {
                        email: None,
                        ..event(kind)
                    };
                    let ended = store
                        .logout(&[hash; 32], session, all, now(), audit)
                        .await
                        .unwrap();
                    assert!(ended.is_none_or(|id| id == user));
                    ended.is_some()
                })
            })
            .collect();
        let case = format!("by id: {}, all: {all}", session.is_some());
        assert_eq!(winners(tasks).await, 1, "{case}");
        assert_eq!(events(&store, kind).await, before + 1, "{case}");
        assert_eq!(store.family_of(&[hash; 32], None).await.unwrap(), None);
        assert_eq!(
            store.family_of(&[hash + 1; 32], None).await.unwrap(),
            (!all).then_some((other, user)),
            "{case}"
        );
        if !all {
            store.revoke_all(user, now(), None).await.unwrap();
        }
    }
}

/// Logouts of all from each of an account's eight sessions at once (by id and by
/// token), for six accounts in turn: the first ends them all and records its event;
/// the others find their session ended. None fails, as two that lock the sessions in
/// different orders would.
pub async fn concurrent_logouts_of_all_from_each_session_end_them_once(store: impl Store) {
    for round in 0..6u8 {
        let user = UserId::new_random();
        let hashes: Vec<u8> = (1..=8).map(|n| round * 8 + n).collect();
        let mut tasks = Vec::new();
        for &hash in &hashes {
            let family = Uuid::new_v4();
            store
                .insert(&refresh_token(hash, family, user), None, GiveBack::NONE)
                .await
                .unwrap();
            let session = (hash % 2 == 0).then_some(family);
            let store = store.clone();
            tasks.push(async move {
                let audit = AuditEvent {
                    email: None,
                    ..event(AuditKind::LogoutAll)
                };
                store
                    .logout(&[hash; 32], session, true, now(), audit)
                    .await
                    .unwrap()
                    .is_some()
            });
        }
        let tasks = tasks.into_iter().map(tokio::spawn).collect();
        assert_eq!(winners(tasks).await, 1, "round {round}");
        let logged = events(&store, AuditKind::LogoutAll).await;
        assert_eq!(logged, usize::from(round) + 1);
        for &hash in &hashes {
            assert_eq!(store.family_of(&[hash; 32], None).await.unwrap(), None);
        }
    }
}

/// Every way of ending an account's sessions at once, forty accounts in turn: logouts
/// of all from four of its eight sessions (by id and by token), ends of the others but
/// one from two more, and two revocations of all. Each takes the account's sessions in
/// the same order, so none fails (as two that lock them in different orders would, by
/// a deadlock), at most one logout of all records its event, and once the
/// revocations are done no session is live.
pub async fn concurrent_endings_of_an_accounts_sessions_all_succeed(store: impl Store) {
    for round in 0..40u8 {
        let user = UserId::new_random();
        let mut sessions = Vec::new();
        for n in 0..8 {
            let family = Uuid::new_v4();
            let mut token = refresh_token(0, family, user);
            token.token_hash[..2].copy_from_slice(&[round, n]);
            store.insert(&token, None, GiveBack::NONE).await.unwrap();
            sessions.push((token.token_hash, family));
        }
        // The round's logouts of all recorded under an address of its own.
        let address = email(&format!("round-{round}@example.com"));
        let mut tasks = Vec::new();
        for (i, (hash, family)) in sessions.iter().cloned().enumerate() {
            let store = store.clone();
            let address = address.clone();
            tasks.push(tokio::spawn(async move {
                let audit = AuditEvent {
                    email: Some(address),
                    ..event(AuditKind::LogoutAll)
                };
                match i {
                    0..4 => {
                        let session = (i % 2 == 0).then_some(family);
                        let ended = store.logout(&hash, session, true, now(), audit).await;
                        ended.map(|ended| ended.is_some())
                    }
                    4..6 => {
                        let audit = AuditEvent {
                            kind: AuditKind::Logout,
                            email: None,
                            ..audit
                        };
                        let ended = store.end_other_sessions(user, family, now(), &audit);
                        ended.await.map(|_| false)
                    }
                    _ => store.revoke_all(user, now(), None).await.map(|()| false),
                }
            }));
        }
        let mut winners = 0;
        for task in tasks {
            let ended = task.await.unwrap();
            winners += usize::from(ended.unwrap_or_else(|e| panic!("round {round}: {e:?}")));
        }
        assert!(winners <= 1, "round {round}: {winners} logouts of all won");
        let recorded = store
            .list(&AuditQuery {
                email: Some(address),
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(
            recorded.len(),
            winners,
            "round {round}: an event for the logout of all that won, if one did"
        );
        for (hash, family) in sessions {
            assert_eq!(
                store.family_of(&hash, Some(family)).await.unwrap(),
                None,
                "round {round}"
            );
        }
    }
}

/// Twelve ends of one session by its owner at once (a session list's "end this
/// session", sent again): one ends it and records its event; the others find nothing
/// to end, and the account's other session lives on.
pub async fn concurrent_ends_of_one_session_end_it_once(store: impl Store) {
    let user = UserId::new_random();
    let (ended, kept) = (Uuid::new_v4(), Uuid::new_v4());
    for (hash, family) in [(1, ended), (2, kept)] {
        store
            .insert(&refresh_token(hash, family, user), None, GiveBack::NONE)
            .await
            .unwrap();
    }
    let tasks = (0..12)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .end_session(user, ended, now(), &event(AuditKind::Logout))
                    .await
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(winners(tasks).await, 1);
    assert_eq!(events(&store, AuditKind::Logout).await, 1);
    assert_eq!(store.family_of(&[1; 32], Some(ended)).await.unwrap(), None);
    assert_eq!(
        store.family_of(&[2; 32], Some(kept)).await.unwrap(),
        Some((kept, user))
    );
}

pub async fn a_session_ends_at_its_family_end_however_often_refreshed(store: impl Store) {
    use passcode_domain::ports::Rotation;
    let (user, signed) = account(&store, "ada@example.com").await;
    let family = Uuid::new_v4();
    let mut first = refresh_token(1, family, user);
    first.family_expires_at = now() + Duration::hours(1);
    store.insert(&first, None, GiveBack::NONE).await.unwrap();
    let grace = Duration::seconds(10);
    // A successor asking for a day still ends with the family.
    let mut successor = refresh_token(2, family, user);
    successor.family_expires_at = now() + Duration::days(90);
    assert_eq!(
        store
            .rotate(&[1; 32], now(), grace, &successor, &token_ids(2), &signed,)
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
                &refresh_token(3, family, user),
                &token_ids(3),
                &signed,
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
                &refresh_token(3, family, user),
                &token_ids(3),
                &signed,
            )
            .await
            .unwrap(),
        Rotation::Rotated,
        "until then it refreshes"
    );
}

pub async fn sessions_are_listed_with_their_origin_and_last_use_and_end_one_or_the_others(
    store: impl Store,
) {
    use passcode_domain::ports::Rotation;
    let (user, signed) = account(&store, "ada@example.com").await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .insert(&refresh_token(1, first, user), None, GiveBack::NONE)
        .await
        .unwrap();
    store
        .insert(&refresh_token(2, second, user), None, GiveBack::NONE)
        .await
        .unwrap();
    let someone_else = UserId::new_random();
    let theirs = Uuid::new_v4();
    store
        .insert(
            &refresh_token(3, theirs, someone_else),
            None,
            GiveBack::NONE,
        )
        .await
        .unwrap();
    let listed = store.sessions(user, now()).await.unwrap();
    assert_eq!(listed.len(), 2);
    let one = listed.iter().find(|s| s.id == first).unwrap();
    assert_eq!(one.created_client.as_deref(), Some("203.0.113.9"));
    assert_eq!(one.created_user_agent.as_deref(), Some("agent 1"));
    // A refresh is the session's last use, with its caller's facts.
    let mut successor = refresh_token(4, first, user);
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
            &signed,
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
        .insert(
            &refresh_token(5, Uuid::new_v4(), user),
            None,
            GiveBack::NONE,
        )
        .await
        .unwrap();
    store
        .insert(
            &refresh_token(6, Uuid::new_v4(), user),
            None,
            GiveBack::NONE,
        )
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
