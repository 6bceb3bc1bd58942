//! Verifying an address with a code: the try counted before comparing, the registration put into effect.

use super::*;

#[test]
fn verify_puts_the_registration_of_the_entered_code_into_effect() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![
            registration_code("111111", "Mallory", "$argon2id$mallory"),
            {
                let mut own = registration_code("123456", "Ada Owner", "$argon2id$ada");
                own.id = Uuid::from_u128(100);
                own
            },
        ],
    );
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.otps
        .expect_complete_registration()
        .withf(|spend, user_id, r, audit| {
            assert_eq!(audit.kind, AuditKind::Verified);
            // The session starts in the same transaction, for the account it verified.
            let (session, session_audit) = spend.session.expect("a session with the spend");
            spend.id == Uuid::from_u128(100)
                && *spend.code_hash == code_hash("123456")
                && session.user_id == UserId(Uuid::from_u128(7))
                && session_audit.is_none()
                && *user_id == UserId(Uuid::from_u128(7))
                && r.password_hash.as_str() == "$argon2id$ada"
                && r.full_name.as_str() == "Ada Owner"
                && spend.now == now()
                && spend.max_attempts == 5
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    m.otps.expect_consume().never();
    m.refresh_tokens.expect_insert().never();
    m.tokens
        .expect_issue()
        .withf(|subject, _| subject.email_verified)
        .returning(|_, _| Ok(pair()));

    let (user, tokens) = verify(m, "123456").unwrap();
    assert!(user.email_verified);
    assert_eq!(user.full_name.as_str(), "Ada Owner");
    assert_eq!(user.password_hash.as_str(), "$argon2id$ada");
    assert_eq!(tokens, pair());
}

#[test]
fn verify_with_a_password_refuses_a_code_of_a_registration_with_another_password() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Mallory", "$argon2id$mallory")],
    );
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.passwords
        .expect_verify()
        .withf(|_, hash| hash.as_ref().map(PasswordHash::as_str) == Some("$argon2id$mallory"))
        .times(1)
        .returning(|_, _| Ok(false));
    m.otps.expect_complete_registration().never();
    m.tokens.expect_issue().never();
    assert!(matches!(
        verify_with(m, "123456", Some("the owner's own password")),
        Err(VerifyOtpError::Invalid)
    ));
}

#[test]
fn verify_with_the_registrations_own_password_succeeds() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada Owner", "$argon2id$ada")],
    );
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.otps
        .expect_complete_registration()
        .returning(|_, _, _, _| Ok(true));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    verify_with(m, "123456", Some("correct horse battery")).unwrap();
}

#[test]
fn verify_of_a_deactivated_account_is_refused() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada Owner", "$argon2id$ada")],
    );
    m.users.expect_find_by_email().returning(|_| {
        let mut u = user(false);
        u.is_active = false;
        Ok(Some(u))
    });
    m.otps.expect_complete_registration().never();
    m.tokens.expect_issue().never();
    assert!(matches!(verify(m, "123456"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_of_a_code_stored_without_its_registration_consumes_and_marks_verified() {
    let mut m = Mocks::new().unthrottled();
    open_codes(&mut m, vec![stored_otp("123456", 1, Duration::minutes(5))]);
    m.otps
        .expect_consume()
        .withf(|spend| {
            spend.id == Uuid::from_u128(99)
                && *spend.code_hash == code_hash("123456")
                && spend.now == now()
                && spend.max_attempts == 5
                && spend.session.is_some()
        })
        .times(1)
        .returning(|_| Ok(true));
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.users
        .expect_mark_email_verified()
        .with(eq(UserId(Uuid::from_u128(7))), eq(now()))
        .times(1)
        .returning(|_, _| Ok(()));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    verify(m, "123456").unwrap();
}

#[test]
fn verify_counts_the_try_before_comparing_and_refuses_a_wrong_code() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada", "$argon2id$ada")],
    );
    m.otps.expect_complete_registration().never();
    m.otps.expect_consume().never();
    assert!(matches!(verify(m, "654321"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_refuses_when_no_code_is_open() {
    // Expired, spent, out of tries, or never sent: the store returns no open code.
    let mut m = Mocks::new().unthrottled();
    open_codes(&mut m, vec![]);
    m.users.expect_mark_email_verified().never();
    m.otps.expect_consume().never();
    assert!(matches!(verify(m, "123456"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_loses_cleanly_when_a_concurrent_request_spent_the_code() {
    let mut m = Mocks::new().unthrottled();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada", "$argon2id$ada")],
    );
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.otps
        .expect_complete_registration()
        .returning(|_, _, _, _| Ok(false));
    // Signed for the session the spend would have started; not handed out.
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    m.refresh_tokens.expect_insert().never();
    assert!(matches!(verify(m, "123456"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_refuses_a_malformed_code_that_happens_to_match() {
    let mut m = Mocks::new().unthrottled();
    open_codes(&mut m, vec![stored_otp("12345x", 1, Duration::minutes(5))]);
    m.otps.expect_consume().never();
    assert!(matches!(verify(m, "12345x"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_reports_infrastructure_failure_as_such() {
    let mut m = Mocks::new().unthrottled();
    m.otps
        .expect_count_try()
        .returning(|_, _, _, _, _| Err(InfraError::Unavailable(anyhow::anyhow!("pool timeout"))));
    assert!(matches!(
        verify(m, "123456"),
        Err(VerifyOtpError::Infra(InfraError::Unavailable(_)))
    ));
}
