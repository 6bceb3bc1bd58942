//! The contract of `AuditLog`: events written in the transaction of the change they describe.

use super::*;

pub async fn each_change_records_its_event_in_its_transaction(store: impl Store) {
    let (user, otp) = account_registering(&store, "ada@example.com", 1, "Ada", "$argon2id$a").await;
    assert_eq!(events(&store, AuditKind::Registered).await, 1);
    // A completion that does not happen records nothing.
    let reg = otp.registration.clone().unwrap();
    let wrong = CodeHash::from_bytes(vec![9; 32]);
    assert!(
        !store
            .complete_registration(
                &Spend::new(otp.id, &wrong, now(), 5),
                user.id,
                &reg,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap()
    );
    assert_eq!(events(&store, AuditKind::Verified).await, 0);
    assert!(
        store
            .complete_registration(
                &Spend::new(otp.id, &otp.code_hash, now(), 5),
                user.id,
                &reg,
                &event(AuditKind::Verified)
            )
            .await
            .unwrap()
    );
    assert_eq!(events(&store, AuditKind::Verified).await, 1);
    // A refresh-token reuse is recorded with the revocation of its session.
    let signed = signed_for(&store.find_by_id(user.id).await.unwrap().unwrap());
    let family = Uuid::new_v4();
    store
        .insert(
            &refresh_token(1, family, user.id),
            Some(event(AuditKind::LoginSucceeded)),
            GiveBack::NONE,
        )
        .await
        .unwrap();
    assert_eq!(events(&store, AuditKind::LoginSucceeded).await, 1);
    let grace = Duration::seconds(0);
    store
        .rotate(
            &[1; 32],
            now(),
            grace,
            &refresh_token(2, family, user.id),
            &token_ids(2),
            &signed,
        )
        .await
        .unwrap();
    assert_eq!(
        events(&store, AuditKind::RefreshReuseDetected).await,
        0,
        "a rotation is no reuse"
    );
    store
        .revoke_family(
            family,
            now() + Duration::seconds(5),
            &event(AuditKind::RefreshReuseDetected),
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
