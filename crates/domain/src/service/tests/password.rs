//! Password reset and change.

use super::*;

#[test]
fn reset_request_mails_a_reset_code_to_known_addresses_only() {
    let mut m = Mocks::new().unthrottled();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    let (sent, codes) = capture(&mut m);
    block_on(m.service().request_password_reset(&email()))
        .unwrap()
        .unwrap();
    assert_eq!(codes.lock().unwrap()[0].purpose, OtpPurpose::ResetPassword);
    assert!(matches!(
        sent.lock().unwrap()[0],
        Mail::Code {
            purpose: OtpPurpose::ResetPassword,
            ..
        }
    ));

    let mut m = Mocks::new().unthrottled();
    m.users.expect_find_by_email().returning(|_| Ok(None));
    m.otps.expect_replace().never();
    m.otps
        .expect_decoy()
        .withf(|_, purpose, _, _| *purpose == OtpPurpose::ResetPassword)
        .times(1)
        .returning(|_, _, _, _| Ok(Admission::Allowed));
    block_on(m.service().request_password_reset(&email()))
        .unwrap()
        .unwrap();
}

#[test]
fn reset_confirm_sets_the_password_verifies_revokes_and_notifies() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.otps.expect_count_try().returning(|_, purpose, _, _, _| {
        assert_eq!(purpose, OtpPurpose::ResetPassword);
        let mut otp = stored_otp("123456", 1, Duration::minutes(5));
        otp.purpose = OtpPurpose::ResetPassword;
        otp.code_hash = OtpHasher::new(SECRET.to_vec()).hash(
            &email(),
            OtpPurpose::ResetPassword,
            &OtpCode::new("123456".into()),
        );
        Ok(Tries::Counted(vec![otp]))
    });
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    // One write: the code spent with its guesses given back, the hash, the verified
    // address, every session ended, the notice.
    m.otps
        .expect_consume()
        .withf(|spend| {
            let Some(AccountChange::Password(password)) = spend.account else {
                return false;
            };
            spend.session.is_none()
                && spend.give_back.keys.len() == 2
                && spend.now == now()
                && password.user == user(false).id
                && password.hash.as_str() == "$argon2id$new"
                && password.verify_email
                && password.audit.kind == AuditKind::PasswordReset
                && matches!(password.notice, Some(Mail::PasswordChanged { to, .. }) if *to == email())
        })
        .times(1)
        .returning(|_| Ok(true));
    m.users.expect_set_password().never();
    m.outbox.expect_enqueue().never();
    block_on(m.service().confirm_password_reset(reset_input("123456"))).unwrap();
}

#[test]
fn reset_confirm_with_a_wrong_code_changes_nothing() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.otps
        .expect_count_try()
        .returning(|_, _, _, _, _| Ok(Tries::Counted(vec![])));
    m.users.expect_set_password().never();
    m.outbox.expect_enqueue().never();
    let error = block_on(m.service().confirm_password_reset(reset_input("123456"))).unwrap_err();
    assert!(matches!(error, ResetError::InvalidCode));
}

#[test]
fn change_password_needs_the_old_password() {
    let mut m = Mocks::new().unthrottled();
    signed_in(&mut m);
    m.passwords.expect_verify().returning(|_, _| Ok(false));
    m.users.expect_set_password().never();
    let error = change_password(m, "not the old one").unwrap_err();
    assert!(matches!(error, ChangePasswordError::WrongOldPassword));
}

#[test]
fn change_password_sets_it_ends_every_session_and_queues_the_notice_in_one_write() {
    let mut m = Mocks::new();
    m.throttle
        .expect_acquire()
        .withf(|key, _, _| key == password_budget())
        .times(1)
        .returning(|_, _, _| Ok(Admission::Allowed));
    m.hashing_succeeds();
    signed_in(&mut m);
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    expect_one_password_write(&mut m, false, AuditKind::PasswordChanged);
    change_password(m, "the old passphrase").unwrap();
}

#[test]
fn change_password_shed_while_hashing_gives_the_old_passwords_try_back() {
    let mut m = Mocks::new();
    signed_in(&mut m);
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.passwords
        .expect_hash()
        .returning(|_| Err(HashError::Busy));
    m.throttle
        .expect_acquire()
        .returning(|_, _, _| Ok(Admission::Allowed));
    password_try_given_back(&mut m);
    m.users.expect_set_password().never();
    let error = change_password(m, "the old passphrase").unwrap_err();
    assert!(matches!(error, ChangePasswordError::Busy), "{error:?}");
}

/// The new password is set by one `set_password` that also ends the sessions, queues
/// the notice and gives back the try the old password cost: nothing else is written.
fn expect_one_password_write(m: &mut Mocks, verify_email: bool, kind: AuditKind) {
    m.users
        .expect_set_password()
        .withf(move |id, hash, verify, at, audit, notice, give_back| {
            *id == user(false).id
                && hash.as_str() == "$argon2id$new"
                && *verify == verify_email
                && *at == now()
                && audit.kind == kind
                && matches!(notice, Some(Mail::PasswordChanged { to, .. }) if *to == email())
                && give_back.keys == [password_budget()]
                && give_back.reserved_at == now()
        })
        .times(1)
        .returning(|_, _, _, _, _, _, _| Ok(()));
    m.throttle.expect_release().never();
    m.outbox.expect_enqueue().never();
    m.refresh_tokens.checkpoint();
    m.refresh_tokens.expect_revoke_all().never();
}

#[test]
fn change_password_whose_write_fails_gives_the_old_passwords_try_back() {
    let mut m = Mocks::new();
    password_proves_right(&mut m);
    m.hashing_succeeds();
    m.users
        .expect_set_password()
        .times(1)
        .returning(|_, _, _, _, _, _, _| Err(InfraError::Unavailable(anyhow::anyhow!("down"))));
    password_try_given_back_after_failure(&mut m);
    let error = change_password(m, "the old passphrase").unwrap_err();
    assert!(
        matches!(
            error,
            ChangePasswordError::Infra(InfraError::Unavailable(_))
        ),
        "{error:?}"
    );
}

/// Changes the signed-in account's password from `old` to a strong new one.
fn change_password(m: Mocks, old: &str) -> Result<(), ChangePasswordError> {
    let old = Password::for_login(old.into()).unwrap();
    let new = Password::parse("a brand new passphrase".into()).unwrap();
    block_on(
        m.service()
            .change_password("a", &old, &new, &RequestContext::default()),
    )
}
