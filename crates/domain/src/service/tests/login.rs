//! Logging in: the same answer and time for unknown addresses, wrong passwords and inactive accounts.

use super::*;

#[test]
fn login_of_unknown_address_still_verifies_against_a_dummy_hash() {
    let mut m = Mocks::new().unthrottled();
    m.users.expect_find_by_email().returning(|_| Ok(None));
    m.passwords
        .expect_verify()
        .withf(|_, hash| hash.is_none())
        .times(1)
        .returning(|_, _| Ok(false));
    assert!(matches!(login(m), Err(LoginError::InvalidCredentials)));
}

#[test]
fn login_with_wrong_password_is_refused() {
    let mut m = Mocks::new().unthrottled();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    m.passwords.expect_verify().returning(|_, _| Ok(false));
    m.tokens.expect_issue().never();
    assert!(matches!(login(m), Err(LoginError::InvalidCredentials)));
}

#[test]
fn login_of_unverified_account_is_refused_by_default() {
    let mut m = Mocks::new();
    m.throttle
        .expect_acquire_all()
        .returning(|_, _| Ok(Admissions::Allowed));
    // The right password was no failure: its budgets are given back, with no session.
    m.throttle
        .expect_release()
        .withf(|give_back| give_back.keys.len() == 2 && give_back.reserved_at == now())
        .times(1)
        .returning(|_| Ok(()));
    m.refresh_tokens.expect_insert().never();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.tokens.expect_issue().never();
    assert!(matches!(login(m), Err(LoginError::EmailNotVerified)));
}

#[test]
fn login_of_unverified_account_works_in_compatibility_policy() {
    let mut m = Mocks::new().unthrottled();
    m.policy = RegistrationPolicy::TokensBeforeVerification;
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    assert_eq!(login(m).unwrap(), pair());
}

#[test]
fn login_of_inactive_account_is_refused_like_a_wrong_password() {
    let mut m = Mocks::new().unthrottled();
    m.users.expect_find_by_email().returning(|_| {
        let mut u = user(true);
        u.is_active = false;
        Ok(Some(u))
    });
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    assert!(matches!(login(m), Err(LoginError::InvalidCredentials)));
}

#[test]
fn login_sheds_load_when_hashing_is_busy() {
    let mut m = Mocks::new().unthrottled();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(true))));
    m.passwords
        .expect_verify()
        .returning(|_, _| Err(HashError::Busy));
    assert!(matches!(login(m), Err(LoginError::Busy)));
}

/// A login with both budgets reserved, the right password, and the account found
/// (`found` says whether looking it up worked).
fn login_reserved(found: bool) -> Mocks {
    let mut m = Mocks::new();
    m.throttle
        .expect_acquire_all()
        .returning(|_, _| Ok(Admissions::Allowed));
    m.users.expect_find_by_email().returning(move |_| {
        if found {
            Ok(Some(user(true)))
        } else {
            Err(InfraError::Unavailable(anyhow::anyhow!("pool timeout")))
        }
    });
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    m.tokens.expect_issue().returning(|_, _| Ok(pair()));
    m.tokens.expect_refresh_expiry().returning(|at| at);
    m
}

/// The login fails with a 503, and its two budgets are offered back once, without
/// waiting (`taken`: whether the store could take them); `release` is never called.
fn fails_and_offers_its_budgets_back(mut m: Mocks, taken: bool) {
    m.throttle
        .expect_release_at_once()
        // By the time they were counted at, so that a later window keeps its own.
        .withf(|give_back| {
            give_back.keys.len() == 2
                && give_back.keys[1] == format!("login:{}", email())
                && give_back.reserved_at == now()
        })
        .times(1)
        .returning(move |_| Ok(taken));
    m.throttle.expect_release().never();
    assert!(matches!(
        login(m),
        Err(LoginError::Infra(InfraError::Unavailable(_)))
    ));
}

/// The session's transaction would have given the budgets back; it failed, so they
/// are given back on their own: a database failure costs no try.
#[test]
fn a_login_whose_session_cannot_be_stored_gives_its_budgets_back() {
    let mut m = login_reserved(true);
    m.refresh_tokens
        .expect_insert()
        .withf(|_, _, give_back| give_back.keys.len() == 2)
        .times(1)
        .returning(|_, _, _| Err(InfraError::Unavailable(anyhow::anyhow!("pool timeout"))));
    fails_and_offers_its_budgets_back(m, true);
}

#[test]
fn a_login_whose_account_cannot_be_looked_up_gives_its_budgets_back() {
    let mut m = login_reserved(false);
    m.passwords.checkpoint();
    m.passwords.expect_verify().never();
    fails_and_offers_its_budgets_back(m, true);
}

/// A store with no connection free gives nothing back and is not asked to wait for
/// one: the failure is the answer at once, the try stays counted.
#[test]
fn a_failed_login_does_not_wait_to_give_its_budgets_back() {
    fails_and_offers_its_budgets_back(login_reserved(false), false);
}

/// A throttle whose reservation takes a turn to answer, as a store's round trip does,
/// and writes down when it begins and when it answers.
struct TakesATurn(Arc<Mutex<Vec<&'static str>>>);

#[async_trait::async_trait]
impl Throttle for TakesATurn {
    async fn acquire(
        &self,
        _key: &str,
        _limit: Limit,
        _now: DateTime<Utc>,
    ) -> Result<Admission, InfraError> {
        Ok(Admission::Allowed)
    }

    async fn acquire_all(
        &self,
        _budgets: &[(String, Limit)],
        _now: DateTime<Utc>,
    ) -> Result<Admissions, InfraError> {
        self.0.lock().unwrap().push("reservation asked");
        a_turn().await;
        self.0.lock().unwrap().push("reservation answered");
        Ok(Admissions::Allowed)
    }

    async fn release<'a>(&self, _give_back: GiveBack<'a>) -> Result<(), InfraError> {
        Ok(())
    }

    async fn purge(&self, _now: DateTime<Utc>, _retention: Duration) -> Result<u64, InfraError> {
        Ok(0)
    }
}

/// The account is read while the budgets are being reserved, not after: across a
/// network that is one round trip less for every login.
#[test]
fn a_login_reads_the_account_while_its_budgets_are_reserved() {
    let steps = Arc::new(Mutex::new(Vec::new()));
    let mut m = login_reserved(true);
    let read = steps.clone();
    m.users.checkpoint();
    m.users.expect_find_by_email().times(1).returning(move |_| {
        read.lock().unwrap().push("account read");
        Ok(Some(user(true)))
    });
    m.refresh_tokens
        .expect_insert()
        .times(1)
        .returning(|_, _, _| Ok(()));
    let throttle = Arc::new(TakesATurn(steps.clone()));
    let service = m.service_with(|ports| ports.throttle = throttle);
    block_on(service.login(LoginInput {
        email: email(),
        password: Password::for_login("correct horse battery".into()).unwrap(),
        client: CLIENT.into(),
        context: RequestContext::default(),
    }))
    .unwrap();
    assert_eq!(
        *steps.lock().unwrap(),
        ["reservation asked", "account read", "reservation answered"]
    );
}
