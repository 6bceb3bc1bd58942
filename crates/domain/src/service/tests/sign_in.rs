//! Signing in with a mailed code: the spend, the guesses given back and the session in
//! one transaction; an unverified account's password cleared first.

use super::*;

/// An account (`verified` or not) with one open sign-in code, "123456"; every pair
/// is signed for a verified address.
fn signing_in(verified: bool) -> Mocks {
    let mut m = Mocks::new();
    m.users
        .expect_find_by_email()
        .returning(move |_| Ok(Some(user(verified))));
    m.tokens
        .expect_issue()
        .withf(|subject, _| subject.email_verified)
        .returning(|_, _| Ok(pair()));
    m.otps
        .expect_count_try()
        .withf(|_, purpose, _, _, _| *purpose == OtpPurpose::SignIn)
        .times(1)
        .returning(|_, _, _, _, _| {
            let mut otp = stored_otp("123456", 1, Duration::minutes(5));
            otp.purpose = OtpPurpose::SignIn;
            otp.code_hash = OtpHasher::new(SECRET.to_vec()).hash(
                &email(),
                OtpPurpose::SignIn,
                &OtpCode::new("123456".into()),
            );
            Ok(Tries::Counted(vec![otp]))
        });
    m
}

fn sign_in(m: Mocks) -> Result<TokenPair, SignInError> {
    block_on(m.service().sign_in_with_code(SignInInput {
        email: email(),
        code: OtpCode::new("123456".into()),
        client: CLIENT.into(),
        context: RequestContext::default(),
    }))
}

#[test]
fn sign_in_spends_the_code_and_starts_the_session_in_one_write() {
    let mut m = signing_in(true);
    m.otps
        .expect_consume()
        .withf(|spend| {
            let Some((session, Some(audit))) = spend.session else {
                return false;
            };
            spend.id == Uuid::from_u128(99)
                && spend.give_back.keys
                    == [
                        format!("guess:{}:{CLIENT}", email()),
                        format!("guess:{}", email()),
                    ]
                && spend.give_back.reserved_at == now()
                && session.user_id == UserId(Uuid::from_u128(7))
                && session.token_hash == sessions_hash(&pair().refresh)
                && audit.kind == AuditKind::CodeSignIn
        })
        .times(1)
        .returning(|_| Ok(true));
    // Nothing else writes.
    m.throttle.expect_release().never();
    m.refresh_tokens.expect_insert().never();
    m.users.expect_set_password().never();
    assert_eq!(sign_in(m).unwrap(), pair());
}

#[test]
fn sign_in_that_loses_the_code_to_a_concurrent_request_starts_nothing() {
    let mut m = signing_in(true);
    m.otps.expect_consume().times(1).returning(|_| Ok(false));
    m.throttle.expect_release().never();
    m.refresh_tokens.expect_insert().never();
    assert!(matches!(sign_in(m), Err(SignInError::InvalidCode)));
}

#[test]
fn sign_in_of_an_unverified_account_clears_its_password_with_the_spend() {
    let mut m = signing_in(false);
    // One transaction: the spend, the password cleared (which ends every session),
    // then the new session; nothing written apart from it.
    m.otps
        .expect_consume()
        .withf(|spend| {
            let Some(AccountChange::Password(password)) = spend.account else {
                return false;
            };
            let Some((session, None)) = spend.session else {
                return false;
            };
            spend.give_back.keys.len() == 2
                && password.user == UserId(Uuid::from_u128(7))
                && !password.hash.is_set()
                && password.verify_email
                && password.audit.kind == AuditKind::CodeSignIn
                && password.notice.is_none()
                && session.user_id == UserId(Uuid::from_u128(7))
        })
        .times(1)
        .returning(|_| Ok(true));
    m.users.expect_set_password().never();
    m.refresh_tokens.expect_insert().never();
    assert_eq!(sign_in(m).unwrap(), pair());
}
