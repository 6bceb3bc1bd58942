//! The contract of `Throttle`: limits shared by every instance.

use super::*;

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

pub async fn throttle_release_gives_back_one_event_of_each_key(store: impl Store) {
    let keys = ["k".to_owned(), "l".to_owned()];
    for key in &keys {
        assert_eq!(
            store.acquire(key, per_hour(1), now()).await.unwrap(),
            Admission::Allowed
        );
        assert!(matches!(
            store.acquire(key, per_hour(1), now()).await.unwrap(),
            Admission::Denied { .. }
        ));
    }
    store.release(counted_now(&keys[..1])).await.unwrap();
    assert_eq!(
        store.acquire("k", per_hour(1), now()).await.unwrap(),
        Admission::Allowed
    );
    assert!(
        matches!(
            store.acquire("l", per_hour(1), now()).await.unwrap(),
            Admission::Denied { .. }
        ),
        "only the key given back"
    );
    // Both at once, one event each; an unknown key, or one at zero, is no error.
    store
        .release(counted_now(&[
            keys[0].clone(),
            keys[1].clone(),
            "unknown".to_owned(),
        ]))
        .await
        .unwrap();
    for key in &keys {
        assert_eq!(
            store.acquire(key, per_hour(1), now()).await.unwrap(),
            Admission::Allowed,
            "{key}"
        );
    }
    store.release(counted_now(&keys)).await.unwrap();
    store.release(counted_now(&keys)).await.unwrap();
    for key in &keys {
        assert_eq!(
            store.acquire(key, per_hour(1), now()).await.unwrap(),
            Admission::Allowed,
            "never below zero: {key}"
        );
        assert!(matches!(
            store.acquire(key, per_hour(1), now()).await.unwrap(),
            Admission::Denied { .. }
        ));
    }
}

/// A give-back that arrives after its window ended (queued behind a busy store) does
/// not take an event from the window that followed, which never counted it: neither on
/// its own nor with several keys, waiting or at once. Given by the later window's
/// time, the same give-back counts.
pub async fn a_late_give_back_leaves_a_later_window_its_events(store: impl Store) {
    let keys = ["k".to_owned(), "l".to_owned()];
    let next = now() + Duration::hours(1);
    for at in [now(), next] {
        for key in &keys {
            assert_eq!(
                store.acquire(key, per_hour(1), at).await.unwrap(),
                Admission::Allowed,
                "{key} at {at}"
            );
        }
    }
    store.release(counted_now(&keys[..1])).await.unwrap();
    store.release(counted_now(&keys)).await.unwrap();
    assert!(store.release_at_once(counted_now(&keys)).await.unwrap());
    for key in &keys {
        assert!(
            matches!(
                store.acquire(key, per_hour(1), next).await.unwrap(),
                Admission::Denied { .. }
            ),
            "the later window keeps its event: {key}"
        );
    }
    // The window began at `next`: a reservation counted then is in it.
    store.release(counted_at(&keys[..1], next)).await.unwrap();
    assert!(
        store
            .release_at_once(counted_at(&keys[1..], next))
            .await
            .unwrap()
    );
    for key in &keys {
        assert_eq!(
            store.acquire(key, per_hour(1), next).await.unwrap(),
            Admission::Allowed,
            "given back within its window: {key}"
        );
    }
}

/// A share of `share` and a ceiling of `ceiling` events an hour.
fn pair(share: u32, ceiling: u32) -> Vec<(String, Limit)> {
    vec![
        ("share".to_owned(), per_hour(share)),
        ("ceiling".to_owned(), per_hour(ceiling)),
    ]
}

pub async fn acquire_all_counts_on_every_budget_or_on_none(store: impl Store) {
    assert_eq!(
        store.acquire_all(&pair(2, 1), now()).await.unwrap(),
        Admissions::Allowed
    );
    // The ceiling refuses: named by its place, and the share is not counted either.
    match store.acquire_all(&pair(2, 1), now()).await.unwrap() {
        Admissions::Denied {
            budget,
            retry_after,
        } => assert_eq!((budget, retry_after), (1, Duration::hours(1))),
        Admissions::Allowed => panic!("over the ceiling"),
    }
    assert_eq!(
        store.acquire("share", per_hour(2), now()).await.unwrap(),
        Admission::Allowed,
        "the refused attempt left the share's second event"
    );
    // The share refuses first, and the ceiling is not counted.
    assert!(matches!(
        store.acquire_all(&pair(2, 5), now()).await.unwrap(),
        Admissions::Denied { budget: 0, .. }
    ));
    assert_eq!(
        store.acquire("ceiling", per_hour(2), now()).await.unwrap(),
        Admission::Allowed,
        "the ceiling's second event is still free"
    );
    store
        .release(counted_now(&["share".to_owned()]))
        .await
        .unwrap();
    assert_eq!(
        store.acquire_all(&pair(2, 3), now()).await.unwrap(),
        Admissions::Allowed
    );
}

pub async fn concurrent_acquire_alls_never_exceed_a_budget(store: impl Store) {
    let tasks: Vec<_> = (0..30)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                // Three clients' shares of 4 under one ceiling of 10.
                let budgets = vec![
                    (format!("share:{}", n % 3), per_hour(4)),
                    ("ceiling".to_owned(), per_hour(10)),
                ];
                store.acquire_all(&budgets, now()).await.unwrap()
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap() == Admissions::Allowed);
    }
    assert_eq!(allowed, 10, "the ceiling");
    // What the shares counted: what each still admits, taken from 4. A refused
    // attempt counted nowhere, so the shares hold exactly the 10 admitted.
    let mut counted = 0;
    for share in 0..3 {
        let mut left = 0;
        while store
            .acquire(&format!("share:{share}"), per_hour(4), now())
            .await
            .unwrap()
            == Admission::Allowed
        {
            left += 1;
        }
        assert!(left <= 4);
        counted += 4 - left;
    }
    assert_eq!(counted, 10, "no refused attempt left a count on its share");
}

/// Budgets reserved and given back by many requests at once (logins, right codes):
/// never a deadlock or a lock timeout, and every count given back.
pub async fn concurrent_reserves_and_releases_all_succeed(store: impl Store) {
    let budgets = pair(1000, 1000);
    let keys: Vec<String> = budgets.iter().map(|(key, _)| key.clone()).collect();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (store, budgets, keys) = (store.clone(), budgets.clone(), keys.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    assert_eq!(
                        store.acquire_all(&budgets, now()).await.unwrap(),
                        Admissions::Allowed
                    );
                    store.release(counted_now(&keys)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // All given back: the ceiling admits its whole limit again.
    for _ in 0..1000 {
        assert_eq!(
            store
                .acquire("ceiling", per_hour(1000), now())
                .await
                .unwrap(),
            Admission::Allowed
        );
    }
}

/// Logins at once: each reserves both budgets, then starts its session and gives them
/// back in one transaction. None deadlocks, every session starts, every count comes
/// back; a session that fails to start gives nothing back.
pub async fn sessions_started_give_their_budgets_back_in_their_transaction(store: impl Store) {
    let (user, _) = account(&store, "ada@example.com").await;
    let budgets = pair(1000, 1000);
    let keys: Vec<String> = budgets.iter().map(|(key, _)| key.clone()).collect();
    let tasks: Vec<_> = (0..40u8)
        .map(|n| {
            let (store, budgets, keys) = (store.clone(), budgets.clone(), keys.clone());
            tokio::spawn(async move {
                assert_eq!(
                    store.acquire_all(&budgets, now()).await.unwrap(),
                    Admissions::Allowed
                );
                let token = refresh_token(n, Uuid::new_v4(), user);
                store
                    .insert(
                        &token,
                        Some(event(AuditKind::LoginSucceeded)),
                        counted_now(&keys),
                    )
                    .await
                    .unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.sessions(user, now()).await.unwrap().len(), 40);
    assert_eq!(events(&store, AuditKind::LoginSucceeded).await, 40);
    for (key, _) in &budgets {
        for _ in 0..1000 {
            assert_eq!(
                store.acquire(key, per_hour(1000), now()).await.unwrap(),
                Admission::Allowed,
                "{key}: every count given back"
            );
        }
    }

    // A session that cannot start (its family exists) gives nothing back.
    let budget = vec![("one".to_owned(), per_hour(1))];
    assert_eq!(
        store.acquire_all(&budget, now()).await.unwrap(),
        Admissions::Allowed
    );
    let family = Uuid::new_v4();
    store
        .insert(&refresh_token(100, family, user), None, GiveBack::NONE)
        .await
        .unwrap();
    assert!(
        store
            .insert(
                &refresh_token(101, family, user),
                None,
                counted_now(&["one".to_owned()])
            )
            .await
            .is_err()
    );
    assert!(matches!(
        store.acquire("one", per_hour(1), now()).await.unwrap(),
        Admission::Denied { .. }
    ));
}

/// The same within a write's own transaction: a session started, or a password set,
/// with budgets counted in a window that has since ended gives nothing to the window
/// that followed; counted in the current window, it gives back.
pub async fn a_late_give_back_in_a_write_leaves_a_later_window_its_events(store: impl Store) {
    let (user, _) = account(&store, "ada@example.com").await;
    let keys = ["k".to_owned()];
    let next = now() + Duration::hours(1);
    for when in [now(), next] {
        assert_eq!(
            store.acquire(&keys[0], per_hour(1), when).await.unwrap(),
            Admission::Allowed
        );
    }
    let still_counted = async || {
        matches!(
            store.acquire(&keys[0], per_hour(1), next).await.unwrap(),
            Admission::Denied { .. }
        )
    };
    store
        .insert(
            &refresh_token(1, Uuid::new_v4(), user),
            None,
            counted_now(&keys),
        )
        .await
        .unwrap();
    assert!(still_counted().await, "a session's late give-back");
    let hash = PasswordHash::new("$argon2id$v=19$late".into());
    let changed = event(AuditKind::PasswordChanged);
    store
        .set_password(user, &hash, false, next, &changed, None, counted_now(&keys))
        .await
        .unwrap();
    assert!(still_counted().await, "a password set's late give-back");
    store
        .insert(
            &refresh_token(2, Uuid::new_v4(), user),
            None,
            counted_at(&keys, next),
        )
        .await
        .unwrap();
    assert_eq!(
        store.acquire(&keys[0], per_hour(1), next).await.unwrap(),
        Admission::Allowed,
        "given back within its window"
    );
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
    store
        .replace(&expired, &mail_for(&expired), &Issue::default())
        .await
        .unwrap();
    let later = now() + Duration::days(2);
    store.acquire("fresh", per_hour(5), later).await.unwrap();
    let mut live = new_otp("live@example.com", OtpPurpose::VerifyEmail, 2);
    live.expires_at = later + Duration::minutes(10);
    store
        .replace(&live, &mail_for(&live), &Issue::default())
        .await
        .unwrap();
    // A session whose token expired a day before, and one live then.
    let user = UserId::new_random();
    let (ended, running) = (Uuid::new_v4(), Uuid::new_v4());
    let mut old_token = refresh_token(1, ended, user);
    old_token.expires_at = now() + Duration::hours(12);
    store
        .insert(&old_token, None, GiveBack::NONE)
        .await
        .unwrap();
    let mut live_token = refresh_token(2, running, user);
    live_token.expires_at = later + Duration::hours(1);
    store
        .insert(&live_token, None, GiveBack::NONE)
        .await
        .unwrap();

    assert_eq!(store.purge(later, Duration::days(1)).await.unwrap(), 3);
    assert_eq!(store.family_of(&[0; 32], Some(ended)).await.unwrap(), None);
    assert_eq!(
        store.family_of(&[0; 32], Some(running)).await.unwrap(),
        Some((running, user))
    );
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
