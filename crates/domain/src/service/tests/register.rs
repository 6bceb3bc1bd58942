//! Registration: what is stored, what is mailed, the policies and the cooldown.

use super::*;

#[test]
fn register_new_address_stores_only_the_hash_and_mails_the_code() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.otps.expect_add().never();
    let (sent, codes) = capture(&mut m);
    let (mail, code) = (sent.clone(), codes.clone());
    m.users
        .expect_create()
        .times(1)
        .returning(move |new_user, first| {
            // The code is stored with the account, in one transaction.
            let first = first.expect("the first code");
            assert_eq!(first.otp.email, new_user.email);
            assert_eq!(first.audit.kind, AuditKind::Registered);
            assert_eq!(first.audit.user_id, Some(new_user.id));
            code.lock().unwrap().push(first.otp.clone());
            mail.lock().unwrap().push(first.mail.clone());
            Ok(user(false))
        });
    // Read while the password hashes, whatever the address (see below).
    m.users
        .expect_find_by_email()
        .times(1)
        .returning(|_| Ok(None));

    let outcome = block_on(m.service().register(register_input())).unwrap();

    match outcome {
        Registered::PendingVerification {
            email: e,
            full_name,
        } => {
            assert_eq!(e, email());
            assert_eq!(full_name.as_str(), "Ada Request", "echoes the request");
        }
        other => panic!("unexpected {other:?}"),
    }
    let codes = codes.lock().unwrap();
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].code_hash, code_hash("123456"));
    assert_eq!(codes[0].purpose, OtpPurpose::VerifyEmail);
    assert_eq!(codes[0].expires_at, now() + Duration::minutes(10));
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    match &sent[0] {
        Mail::Code {
            code,
            purpose,
            valid_for,
            ..
        } => {
            assert_eq!(code.expose(), "123456");
            assert_eq!(*purpose, OtpPurpose::VerifyEmail);
            assert_eq!(*valid_for, Duration::minutes(10));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn register_existing_unverified_address_acts_as_resend() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    // The read found the account: no insert is tried.
    m.users.expect_create().never();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    let sent = capture_mail(&mut m);

    let outcome = block_on(m.service().register(register_input())).unwrap();

    assert!(
        matches!(outcome, Registered::PendingVerification { ref full_name, .. } if full_name.as_str() == "Ada Request")
    );
    assert!(matches!(sent.lock().unwrap()[0], Mail::Code { .. }));
}

/// The account is read while the password hashes, not after: across a network a
/// taken address then takes the one round trip a new address's insert takes.
#[test]
fn a_registration_reads_the_account_while_the_password_hashes() {
    let mut m = Mocks::new().unthrottled();
    let sent = capture_mail(&mut m);
    let steps = Arc::new(Mutex::new(Vec::new()));
    let accounts = Arc::new(AccountsTakeATurn(steps.clone()));
    let hasher = Arc::new(HashTakesATurn(steps.clone()));
    block_on(
        m.service_with(|ports| {
            ports.users = accounts;
            ports.passwords = hasher;
        })
        .register(register_input()),
    )
    .unwrap();
    assert!(matches!(sent.lock().unwrap()[0], Mail::Code { .. }));
    // No "insert asked": the account was found, so its code was all there was to write.
    assert_eq!(
        *steps.lock().unwrap(),
        [
            "hash asked",
            "account asked",
            "hash answered",
            "account answered"
        ]
    );
}

/// A registration of the same new address that commits after this one's read: the
/// read missed it, so it is read again once the insert has met it, and the account
/// gets this registration's code, as it would have had the read found it.
#[test]
fn a_taken_address_missed_by_the_read_beside_the_insert_is_read_again() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.users
        .expect_create()
        .returning(|_, _| Err(CreateUserError::EmailTaken));
    let reads = Arc::new(Mutex::new(0));
    let counted = reads.clone();
    m.users.expect_find_by_email().times(2).returning(move |_| {
        let mut reads = counted.lock().unwrap();
        *reads += 1;
        Ok((*reads == 2).then(|| user(false)))
    });
    let sent = capture_mail(&mut m);
    block_on(m.service().register(register_input())).unwrap();
    assert!(matches!(sent.lock().unwrap()[0], Mail::Code { .. }));
}

#[test]
fn register_existing_verified_address_mails_a_notice_never_a_code() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.users.expect_create().never();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    let (sent, codes) = capture(&mut m);

    let outcome = block_on(m.service().register(register_input())).unwrap();

    assert!(matches!(outcome, Registered::PendingVerification { .. }));
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert!(matches!(sent[0], Mail::RegistrationAttempt { .. }));
    assert!(
        codes.lock().unwrap().is_empty(),
        "no code for a verified address"
    );
}

#[test]
fn register_hashes_the_password_even_for_a_taken_address() {
    let mut m = Mocks::new().unthrottled();
    m.passwords
        .expect_hash()
        .times(1)
        .returning(|_| Ok(PasswordHash::new("h".into())));
    m.users.expect_create().never();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    capture_mail(&mut m);
    block_on(m.service().register(register_input())).unwrap();
}

#[test]
fn register_sheds_load_when_hashing_is_busy() {
    let mut m = Mocks::new().unthrottled();
    m.passwords
        .expect_hash()
        .returning(|_| Err(HashError::Busy));
    // A full queue refuses at once: no read is sent, nothing is written.
    m.users.expect_find_by_email().never();
    m.users.expect_create().never();
    let error = block_on(m.service().register(register_input())).unwrap_err();
    assert!(matches!(error, RegisterError::Busy));
}

#[test]
fn register_in_compatibility_policy_returns_tokens() {
    let mut m = Mocks::new().unthrottled();
    m.policy = RegistrationPolicy::TokensBeforeVerification;
    m.hashing_succeeds();
    m.users
        .expect_create()
        .withf(|_, first| first.is_some())
        .returning(|_, _| Ok(user(false)));
    capture_mail(&mut m);
    m.tokens
        .expect_issue()
        .withf(|subject, ids| !subject.email_verified && ids.issued_at == now())
        .returning(|_, _| Ok(pair()));

    let outcome = block_on(m.service().register(register_input())).unwrap();
    assert!(matches!(outcome, Registered::WithTokens { ref tokens, .. } if *tokens == pair()));
}

#[test]
fn register_in_compatibility_policy_refuses_a_taken_address() {
    let mut m = Mocks::new().unthrottled();
    m.policy = RegistrationPolicy::TokensBeforeVerification;
    m.hashing_succeeds();
    m.users
        .expect_create()
        .returning(|_, _| Err(CreateUserError::EmailTaken));
    m.outbox.expect_enqueue().never();
    m.otps.expect_replace().never();
    let error = block_on(m.service().register(register_input())).unwrap_err();
    assert!(matches!(error, RegisterError::EmailTaken));
}

#[test]
fn register_within_the_cooldown_is_throttled_before_any_work() {
    let mut m = Mocks::new();
    m.throttle
        .expect_acquire()
        .withf(|bucket, limit, _| {
            bucket == "send:verify_email:ada@example.com" && limit.cooldown == Duration::seconds(60)
        })
        .returning(|_, _, _| Ok(denied(42)));
    m.passwords.expect_hash().never();
    m.users.expect_create().never();
    m.outbox.expect_enqueue().never();
    m.otps.expect_replace().never();
    let error = block_on(m.service().register(register_input())).unwrap_err();
    assert!(matches!(error, RegisterError::Throttled(t) if t.retry_after == Duration::seconds(42)));
}

#[test]
fn register_refuses_a_weak_password_with_the_reason() {
    let mut m = Mocks::new();
    m.throttle.expect_acquire().never();
    m.passwords.expect_hash().never();
    let mut input = register_input();
    input.password = Password::parse("password123".into()).unwrap();
    let error = block_on(m.service().register(input)).unwrap_err();
    assert!(
        matches!(error, RegisterError::WeakPassword(ref why) if why.contains("too easy")),
        "{error:?}"
    );
}

#[test]
fn register_a_deactivated_address_writes_a_decoy_and_mails_nothing() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.users.expect_create().never();
    m.users.expect_find_by_email().returning(|_| {
        let mut user = user(true);
        user.is_active = false;
        Ok(Some(user))
    });
    m.otps.expect_decoy().times(1).returning(|_, _, _, issue| {
        assert!(issue.notice.is_none(), "a decoy mails nothing");
        Ok(Admission::Allowed)
    });
    m.otps.expect_add().never();
    m.outbox.expect_enqueue().never();
    let outcome = block_on(m.service().register(register_input())).unwrap();
    assert!(matches!(outcome, Registered::PendingVerification { .. }));
}

#[test]
fn register_fails_unavailable_and_writes_nothing_when_the_read_fails() {
    let mut m = Mocks::new().unthrottled();
    m.hashing_succeeds();
    m.users
        .expect_find_by_email()
        .returning(|_| Err(InfraError::Unavailable(anyhow::anyhow!("down"))));
    m.users.expect_create().never();
    let error = block_on(m.service().register(register_input())).unwrap_err();
    assert!(matches!(
        error,
        RegisterError::Infra(InfraError::Unavailable(_))
    ));
}
