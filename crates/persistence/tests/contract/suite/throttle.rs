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
    // A session whose token expired a day before, and one live then.
    let user = UserId::new_random();
    let (ended, running) = (Uuid::new_v4(), Uuid::new_v4());
    let mut old_token = refresh_token(1, ended, user);
    old_token.expires_at = now() + Duration::hours(12);
    store.insert(&old_token, None).await.unwrap();
    let mut live_token = refresh_token(2, running, user);
    live_token.expires_at = later + Duration::hours(1);
    store.insert(&live_token, None).await.unwrap();

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
