//! The shared limits: guessing and login-failure budgets, cooldowns, refusals remembered per instance.

use super::*;

#[test]
fn verify_spends_a_try_of_both_budgets_and_gives_both_back_on_success() {
    let mut m = Mocks::new();
    let buckets = Arc::new(Mutex::new(Vec::new()));
    let seen = buckets.clone();
    // The budgets are reserved by the store, with the try, in one transaction.
    m.throttle.expect_acquire().never();
    m.otps
        .expect_count_try()
        .times(1)
        .returning(move |_, _, at, _, budgets| {
            assert_eq!(at, now());
            for (bucket, limit) in budgets {
                seen.lock().unwrap().push((bucket.clone(), limit.limit));
            }
            Ok(Tries::Counted(vec![registration_code(
                "123456",
                "Ada",
                "$argon2id$ada",
            )]))
        });
    // Given back by the spend, in its transaction, in the order reserved.
    let released = Arc::new(Mutex::new(Vec::new()));
    let gave_back = released.clone();
    m.throttle.expect_release().never();
    m.refresh_tokens.expect_insert().never();
    m.otps
        .expect_complete_registration()
        .times(1)
        .returning(move |spend, _, _, _| {
            gave_back
                .lock()
                .unwrap()
                .extend_from_slice(spend.give_back.keys);
            Ok(true)
        });
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    verify(m, "123456").unwrap();
    assert_eq!(
        *buckets.lock().unwrap(),
        [
            ("guess:ada@example.com:203.0.113.1".to_owned(), 5),
            ("guess:ada@example.com".to_owned(), 10)
        ],
        "the client's share first, then the address's ceiling"
    );
    assert_eq!(
        *released.lock().unwrap(),
        ["guess:ada@example.com:203.0.113.1", "guess:ada@example.com"],
        "both with the spend"
    );
}

#[test]
fn verify_keeps_the_try_spent_on_a_wrong_code() {
    let mut m = Mocks::new();
    m.throttle.expect_release().never();
    open_codes(
        &mut m,
        vec![registration_code("123456", "Ada", "$argon2id$ada")],
    );
    assert!(matches!(verify(m, "654321"), Err(VerifyOtpError::Invalid)));
}

#[test]
fn verify_with_a_budget_spent_refuses_even_the_right_code_and_gives_nothing_back() {
    for budget in [0, 1] {
        let mut m = Mocks::new();
        m.otps.expect_count_try().returning(move |_, _, _, _, _| {
            Ok(Tries::Refused {
                budget,
                retry_after: Duration::seconds(600),
            })
        });
        // The store counted nothing: there is nothing to give back.
        m.throttle.expect_release().never();
        m.otps.expect_consume().never();
        match verify(m, "123456") {
            Err(VerifyOtpError::Throttled(t)) => {
                assert_eq!(t.retry_after, Duration::seconds(600));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_refused_guess_budget_is_answered_from_memory_until_it_ends() {
    let mut m = Mocks::new();
    m.otps
        .expect_count_try()
        .times(1)
        .returning(|_, _, _, _, _| {
            Ok(Tries::Refused {
                budget: 1,
                retry_after: Duration::seconds(600),
            })
        });
    let service = m.service();
    for _ in 0..3 {
        let error = block_on(service.verify_email(VerifyInput {
            email: email(),
            code: OtpCode::new("123456".into()),
            password: None,
            client: CLIENT.into(),
            context: RequestContext::default(),
        }))
        .unwrap_err();
        assert!(matches!(error, VerifyOtpError::Throttled(_)), "{error:?}");
    }
}

#[test]
fn login_spends_both_failure_budgets_and_gives_them_back_on_success() {
    let mut m = Mocks::new();
    let buckets = Arc::new(Mutex::new(Vec::new()));
    let seen = buckets.clone();
    // Both reserved in one write, and given back with the session.
    m.throttle.expect_acquire().never();
    m.throttle
        .expect_acquire_all()
        .times(1)
        .returning(move |budgets, _| {
            for (bucket, limit) in budgets {
                seen.lock().unwrap().push((bucket.clone(), limit.limit));
            }
            Ok(Admissions::Allowed)
        });
    m.throttle.expect_release().never();
    m.refresh_tokens
        .expect_insert()
        .times(1)
        .withf(|_, audit, give_back| {
            audit.as_ref().map(|a| a.kind) == Some(AuditKind::LoginSucceeded)
                && give_back.keys
                    == [
                        "login:ada@example.com:203.0.113.1".to_owned(),
                        "login:ada@example.com".to_owned(),
                    ]
                && give_back.reserved_at == now()
        })
        .returning(|_, _, _| Ok(()));
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    login(m).unwrap();
    assert_eq!(
        *buckets.lock().unwrap(),
        [
            ("login:ada@example.com:203.0.113.1".to_owned(), 10),
            ("login:ada@example.com".to_owned(), 100)
        ]
    );
}

#[test]
fn login_with_a_budget_spent_is_throttled_before_any_hashing_for_any_address() {
    for (found, budget) in [(Some(user(true)), 0), (None, 1)] {
        let mut m = Mocks::new();
        m.throttle.expect_acquire_all().returning(move |_, _| {
            Ok(Admissions::Denied {
                budget,
                retry_after: Duration::seconds(120),
            })
        });
        m.throttle.expect_release().never();
        m.users
            .expect_find_by_email()
            .returning(move |_| Ok(found.clone()));
        m.passwords.expect_verify().never();
        assert!(
            matches!(login(m), Err(LoginError::Throttled(t)) if t.retry_after == Duration::seconds(120))
        );
    }
}

#[test]
fn login_keeps_the_failure_counted_on_a_wrong_password() {
    let mut m = Mocks::new();
    m.throttle
        .expect_acquire_all()
        .times(1)
        .returning(|_, _| Ok(Admissions::Allowed));
    m.throttle.expect_release().never();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    m.passwords.expect_verify().returning(|_, _| Ok(false));
    assert!(matches!(login(m), Err(LoginError::InvalidCredentials)));
}

#[test]
fn resend_is_throttled_alike_for_any_address_and_then_answered_from_memory() {
    for found in [Some(user(false)), Some(user(true)), None] {
        let mut m = Mocks::new();
        // The send limit is counted in the code's (or decoy's) own write, which the
        // store refuses whole; the next request is refused before any work.
        m.users
            .expect_find_by_email()
            .times(1)
            .returning(move |_| Ok(found.clone()));
        m.otps.expect_find().times(1).returning(|_, _| Ok(None));
        let key = "send:verify_email:ada@example.com";
        m.otps
            .expect_replace()
            .withf(move |_, _, issue| issue.send.is_some_and(|(k, _)| k == key))
            .returning(|_, _, _| Ok(denied(30)));
        m.otps
            .expect_decoy()
            .withf(move |_, _, _, issue| issue.send.is_some_and(|(k, _)| k == key))
            .returning(|_, _, _, _| Ok(denied(30)));
        m.outbox.expect_enqueue().never();
        m.throttle.expect_acquire().never();
        let service = m.service();
        for _ in 0..2 {
            let error = block_on(service.resend_verification(&email())).unwrap_err();
            assert!(
                matches!(error, ResendError::Throttled(t) if t.retry_after == Duration::seconds(30)),
                "{error:?}"
            );
        }
    }
}

#[test]
fn a_refused_limit_is_answered_from_memory_until_it_ends() {
    let mut m = Mocks::new();
    // The store is asked once; the second request is refused without it.
    m.throttle
        .expect_acquire()
        .times(1)
        .returning(|_, _, _| Ok(denied(42)));
    m.passwords.expect_hash().never();
    let service = m.service();
    for _ in 0..2 {
        let error = block_on(service.register(register_input())).unwrap_err();
        assert!(
            matches!(error, RegisterError::Throttled(t) if t.retry_after <= Duration::seconds(42) && t.retry_after > Duration::zero()),
            "{error:?}"
        );
    }
}

#[test]
fn a_refused_login_budget_is_answered_from_memory_until_it_ends() {
    let mut m = Mocks::new();
    // The address's ceiling (budget 1) refuses once; after that the store is not asked,
    // neither for the budgets nor for the account (read beside the first reservation).
    m.throttle.expect_acquire_all().times(1).returning(|_, _| {
        Ok(Admissions::Denied {
            budget: 1,
            retry_after: Duration::seconds(60),
        })
    });
    m.users
        .expect_find_by_email()
        .times(1)
        .returning(|_| Ok(Some(user(true))));
    let service = m.service();
    for _ in 0..2 {
        let error = block_on(service.login(LoginInput {
            email: email(),
            password: Password::for_login("correct horse battery".into()).unwrap(),
            client: "198.51.100.7".into(),
            context: RequestContext::default(),
        }))
        .unwrap_err();
        assert!(matches!(error, LoginError::Throttled(_)), "{error:?}");
    }
}
