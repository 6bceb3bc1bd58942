//! The contract of `Outbox`: durable mail, leased to one sender at a time.

use super::*;

pub async fn storing_a_code_queues_its_mail_with_the_code_and_its_expiry(store: impl Store) {
    let otp = new_otp("ada@example.com", OtpPurpose::VerifyEmail, 1);
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
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
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
    let claimed = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    store.mark_sent(&[claimed[0].id], now()).await.unwrap();
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
    store
        .replace(&otp, &mail_for(&otp), &Issue::default())
        .await
        .unwrap();
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

pub async fn a_batch_is_marked_sent_at_once_and_only_that_batch(store: impl Store) {
    for to in ["ada@example.com", "bob@example.com", "cy@example.com"] {
        store.enqueue(&notice(to), now(), None).await.unwrap();
    }
    let claimed = store.claim(now(), Duration::seconds(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    store.mark_sent(&[], now()).await.unwrap();
    let sent = [claimed[0].id, claimed[2].id];
    store.mark_sent(&sent, now()).await.unwrap();
    let pending = store.pending(10).await.unwrap();
    assert_eq!(pending.len(), 1, "the message left out stays unsent");
    assert_eq!(pending[0].id, claimed[1].id);
    assert_eq!(pending[0].status, OutboxStatus::Sending);
    // Once the lease runs out, only the message left out is claimed again.
    let later = now() + Duration::seconds(61);
    let again = store.claim(later, Duration::seconds(60), 10).await.unwrap();
    assert_eq!(
        again.iter().map(|m| m.id).collect::<Vec<_>>(),
        [claimed[1].id]
    );
    assert_eq!(store.stats().await.unwrap().unsent, 1);
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
