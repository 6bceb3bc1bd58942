//! Tokens and sessions: refresh, rotation within the grace window, logout, the current user.

use super::*;

#[test]
fn refresh_signs_for_the_account_as_the_token_names_it_and_the_store_checks_it() {
    let mut m = Mocks::new().unthrottled();
    m.tokens.expect_verify().never();
    m.tokens
        .expect_read_unverified()
        .with(eq("r"), eq(TokenKind::Refresh), eq(now()))
        .returning(|_, kind, _| Ok(claims(kind)));
    // No read of the account: the rotation checks it in the same step.
    m.users.expect_find_by_id().never();
    m.tokens
        .expect_issue()
        .withf(|subject, _| subject.email == email() && subject.email_verified)
        .returning(|_, _| Ok(pair()));
    m.refresh_tokens
        .expect_rotate()
        .withf(|presented, at, grace, successor, ids, signed_for| {
            presented == sessions_hash("r").as_slice()
                && *at == now()
                && *grace == Duration::seconds(10)
                && ids.issued_at == now()
                && successor.user_id == UserId(Uuid::from_u128(7))
                && signed_for.subject.email == email()
                && signed_for.subject.email_verified
                && signed_for.presented_issued_at == claims(TokenKind::Refresh).issued_at
        })
        .times(1)
        .returning(|_, _, _, _, _, _| Ok(Rotation::Rotated));
    assert_eq!(
        block_on(m.service().refresh("r", &RequestContext::default())).unwrap(),
        pair()
    );
}

/// The account changed since the token was signed (here its address is no longer
/// verified): the store refuses the first rotation, the account is read, and the
/// pair is signed again for it as it is.
#[test]
fn refresh_of_a_changed_account_signs_for_the_account_as_it_is() {
    let mut m = Mocks::new().unthrottled();
    unvouched(&mut m);
    m.users
        .expect_find_by_id()
        .times(1)
        .returning(|_| Ok(Some(user(false))));
    let signed = Arc::new(Mutex::new(Vec::new()));
    let record = signed.clone();
    m.tokens
        .expect_issue()
        .times(2)
        .returning(move |subject, _| {
            record.lock().unwrap().push(subject.email_verified);
            Ok(pair())
        });
    m.refresh_tokens
        .expect_rotate()
        .withf(|_, _, _, _, _, signed_for| signed_for.subject.email_verified)
        .times(1)
        .returning(|_, _, _, _, _, _| Ok(Rotation::AccountChanged));
    m.refresh_tokens
        .expect_rotate()
        .withf(|_, _, _, _, _, signed_for| !signed_for.subject.email_verified)
        .times(1)
        .returning(|_, _, _, _, _, _| Ok(Rotation::Rotated));
    assert_eq!(
        block_on(m.service().refresh("r", &RequestContext::default())).unwrap(),
        pair()
    );
    assert_eq!(*signed.lock().unwrap(), vec![true, false]);
}

/// Changed again between the read and the second rotation: refused, nothing spent.
#[test]
fn refresh_of_an_account_changing_twice_is_refused() {
    let mut m = Mocks::new().unthrottled();
    unvouched(&mut m);
    m.users
        .expect_find_by_id()
        .returning(|_| Ok(Some(user(false))));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    m.refresh_tokens
        .expect_rotate()
        .times(2)
        .returning(|_, _, _, _, _, _| Ok(Rotation::AccountChanged));
    assert!(matches!(
        block_on(m.service().refresh("r", &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
}

/// A token the store holds no match for, with the claims of an account that is not as
/// they say (forged, say): its claims lead to no read before its signature is checked.
#[test]
fn refresh_with_a_token_no_store_vouches_for_needs_its_signature() {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_read_unverified()
        .returning(|_, kind, _| Ok(claims(kind)));
    first_rotation_finds_the_account_changed(&mut m);
    m.tokens
        .expect_verify()
        .with(eq("r"), eq(TokenKind::Refresh), eq(now()))
        .times(1)
        .returning(|_, _, _| Err(TokenError::Invalid));
    m.users.expect_find_by_id().never();
    assert!(matches!(
        block_on(m.service().refresh("r", &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn refresh_for_a_deleted_account_is_refused() {
    let mut m = Mocks::new().unthrottled();
    unvouched(&mut m);
    first_rotation_finds_the_account_changed(&mut m);
    m.users.expect_find_by_id().returning(|_| Ok(None));
    assert!(matches!(
        block_on(m.service().refresh("r", &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn refresh_with_an_invalid_token_is_refused() {
    let mut m = Mocks::new().unthrottled();
    m.tokens.expect_verify().never();
    m.tokens
        .expect_read_unverified()
        .returning(|_, _, _| Err(TokenError::Invalid));
    assert!(matches!(
        block_on(m.service().refresh("r", &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn current_user_requires_an_access_token_of_an_active_account() {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_verify()
        .with(eq("a"), eq(TokenKind::Access), eq(now()))
        .returning(|_, kind, _| Ok(claims(kind)));
    m.users
        .expect_find_by_id()
        .returning(|_| Ok(Some(user(true))));
    assert_eq!(block_on(m.service().current_user("a")).unwrap(), user(true));
}

#[test]
fn refresh_refuses_tokens_issued_before_a_password_change() {
    let mut m = Mocks::new().unthrottled();
    unvouched(&mut m);
    first_rotation_finds_the_account_changed(&mut m);
    m.users.expect_find_by_id().returning(|_| {
        let mut u = user(true);
        u.tokens_valid_after = now();
        Ok(Some(u))
    });
    assert!(matches!(
        block_on(m.service().refresh("r", &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn refresh_within_the_grace_window_returns_the_pair_already_issued() {
    let earlier = TokenIds {
        session_id: Uuid::from_u128(3),
        access_jti: "a1".into(),
        refresh_jti: "r1".into(),
        issued_at: now() - Duration::seconds(2),
    };
    let (result, signed) = refresh_with(Rotation::Replayed {
        ids: earlier.clone(),
    });
    assert_eq!(
        result.unwrap(),
        TokenPair {
            access: "a-a1".into(),
            refresh: "r-r1".into()
        }
    );
    assert_eq!(
        signed.lock().unwrap().last(),
        Some(&earlier),
        "re-signed from the stored ids"
    );
}

/// Refused; a genuine earlier token of a live session also revokes it (see
/// `refresh_with`).
#[test]
fn refresh_with_a_reused_or_unknown_token_is_refused() {
    for rotation in [Rotation::Superseded, Rotation::Refused] {
        let (result, _) = refresh_with(rotation);
        assert!(matches!(result, Err(RefreshError::InvalidToken)));
    }
}

/// A token naming a live session that is not its live token, and not signed by this
/// service: refused, and the session is left alone (else anyone who learns a session
/// id could end it).
#[test]
fn a_forged_token_naming_a_session_does_not_revoke_it() {
    let mut m = Mocks::new().unthrottled();
    m.tokens
        .expect_read_unverified()
        .returning(|_, kind, _| Ok(claims(kind)));
    m.tokens
        .expect_verify()
        .with(eq("r"), eq(TokenKind::Refresh), eq(now()))
        .returning(|_, _, _| Err(TokenError::Invalid));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    m.refresh_tokens
        .expect_rotate()
        .times(1)
        .returning(|_, _, _, _, _, _| Ok(Rotation::Superseded));
    m.refresh_tokens.expect_revoke_family().never();
    assert!(matches!(
        block_on(m.service().refresh("r", &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn logout_ends_the_session_the_token_names_or_all_of_the_accounts() {
    for all in [false, true] {
        let mut m = Mocks::new();
        m.tokens
            .expect_verify()
            .returning(|_, kind, _| Ok(claims(kind)));
        // By the session the token names; the store fills in the account.
        m.refresh_tokens
            .expect_logout()
            .withf(move |hash, session, every, at, audit| {
                hash == sessions_hash("r").as_slice()
                    && *session == Some(Uuid::from_u128(3))
                    && *every == all
                    && *at == now()
                    && audit.user_id.is_none()
                    && audit.kind
                        == if all {
                            AuditKind::LogoutAll
                        } else {
                            AuditKind::Logout
                        }
            })
            .times(1)
            .returning(|_, _, _, _, _| Ok(Some(UserId(Uuid::from_u128(7)))));
        m.refresh_tokens.expect_family_of().never();
        block_on(m.service().logout("r", all, &RequestContext::default())).unwrap();
    }
}

#[test]
fn logout_of_a_session_no_longer_live_is_an_invalid_token() {
    let mut m = Mocks::new();
    m.tokens
        .expect_verify()
        .returning(|_, kind, _| Ok(claims(kind)));
    m.refresh_tokens
        .expect_logout()
        .times(1)
        .returning(|_, _, _, _, _| Ok(None));
    assert!(matches!(
        block_on(m.service().logout("r", false, &RequestContext::default())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn logout_by_reading_revokes_the_family_or_all_of_the_accounts() {
    use crate::ports::logout_by_reading;
    let logout = |store: &MockRefreshTokenStore, session, all| {
        let audit = AuditEvent::new(AuditKind::Logout, now(), None, None, &Default::default());
        block_on(logout_by_reading(store, b"h", session, all, now(), audit)).unwrap()
    };
    for all in [false, true] {
        let mut store = MockRefreshTokenStore::new();
        store
            .expect_family_of()
            .withf(|_, session| *session == Some(Uuid::from_u128(3)))
            .returning(|_, _| Ok(Some((Uuid::from_u128(3), UserId(Uuid::from_u128(7))))));
        let filled = |audit: &AuditEvent| audit.user_id == Some(UserId(Uuid::from_u128(7)));
        if all {
            store
                .expect_revoke_all()
                .withf(move |user, at, audit| {
                    *user == UserId(Uuid::from_u128(7))
                        && *at == now()
                        && audit.as_ref().is_some_and(filled)
                })
                .times(1)
                .returning(|_, _, _| Ok(()));
            store.expect_revoke_family().never();
        } else {
            store
                .expect_revoke_family()
                .withf(move |family, at, audit| {
                    *family == Uuid::from_u128(3) && *at == now() && filled(audit)
                })
                .times(1)
                .returning(|_, _, _| Ok(()));
            store.expect_revoke_all().never();
        }
        let user = logout(&store, Some(Uuid::from_u128(3)), all);
        assert_eq!(user, Some(UserId(Uuid::from_u128(7))));
    }
    // A session not live: nothing is revoked.
    let mut store = MockRefreshTokenStore::new();
    store.expect_family_of().returning(|_, _| Ok(None));
    store.expect_revoke_family().never();
    store.expect_revoke_all().never();
    assert_eq!(logout(&store, None, false), None);
}

/// The store does not vouch for the presented token (the account changed): its
/// signature is checked, once, before its claims lead to a read.
fn unvouched(m: &mut Mocks) {
    m.tokens
        .expect_verify()
        .with(eq("r"), eq(TokenKind::Refresh), eq(now()))
        .times(1)
        .returning(|_, kind, _| Ok(claims(kind)));
    m.tokens
        .expect_read_unverified()
        .returning(|_, kind, _| Ok(claims(kind)));
}

/// The first pair is signed for the account as the token names it, and its rotation
/// finds the account changed.
fn first_rotation_finds_the_account_changed(m: &mut Mocks) {
    m.tokens
        .expect_issue()
        .times(1)
        .returning(|_, _| Ok(pair()));
    m.refresh_tokens
        .expect_rotate()
        .times(1)
        .returning(|_, _, _, _, _, _| Ok(Rotation::AccountChanged));
}
