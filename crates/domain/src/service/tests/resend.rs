//! Resending a code: the same work for any address.

use super::*;

#[test]
fn resend_mails_a_new_code_carrying_the_newest_registration() {
    let mut m = Mocks::new().unthrottled();
    m.users
        .expect_find_by_email()
        .returning(|_| Ok(Some(user(false))));
    m.otps.expect_find().returning(|_, _| {
        Ok(Some(registration_code(
            "111111",
            "Ada Newest",
            "$argon2id$newest",
        )))
    });
    let (sent, codes) = capture(&mut m);
    block_on(m.service().resend_verification(&email())).unwrap();
    assert_eq!(sent.lock().unwrap().len(), 1);
    let codes = codes.lock().unwrap();
    assert_eq!(
        codes[0].registration,
        Some(registration("Ada Newest", "$argon2id$newest"))
    );
}

#[test]
fn resend_to_a_verified_deactivated_or_unknown_address_does_the_same_work_and_mails_nothing() {
    let inactive = {
        let mut u = user(false);
        u.is_active = false;
        u
    };
    for found in [Some(user(true)), Some(inactive), None] {
        let mut m = Mocks::new().unthrottled();
        m.users
            .expect_find_by_email()
            .returning(move |_| Ok(found.clone()));
        m.otps.expect_replace().never();
        m.otps.expect_add().never();
        m.outbox.expect_enqueue().never();
        m.otps.expect_find().times(1).returning(|_, _| Ok(None));
        m.otps
            .expect_decoy()
            .withf(|e, purpose, at, issue| {
                *e == email()
                    && *purpose == OtpPurpose::VerifyEmail
                    && *at == now()
                    && issue.send.is_some()
            })
            .times(1)
            .returning(|_, _, _, _| Ok(Admission::Allowed));
        block_on(m.service().resend_verification(&email())).unwrap();
    }
}

/// The address's codes are read while its account is being looked up, not after:
/// across a network that is one round trip less for every resend.
#[test]
fn resend_reads_the_codes_while_the_account_is_looked_up() {
    let steps = Arc::new(Mutex::new(Vec::new()));
    let mut m = Mocks::new().unthrottled();
    let read = steps.clone();
    m.otps.expect_find().times(1).returning(move |_, _| {
        read.lock().unwrap().push("codes read");
        Ok(None)
    });
    let (sent, _) = capture(&mut m);
    let accounts = Arc::new(AccountsTakeATurn(steps.clone()));
    block_on(
        m.service_with(|ports| ports.users = accounts)
            .resend_verification(&email()),
    )
    .unwrap();
    assert_eq!(
        sent.lock().unwrap().len(),
        1,
        "the account waits for its code"
    );
    assert_eq!(
        *steps.lock().unwrap(),
        ["account asked", "codes read", "account answered"]
    );
}
