//! Changing the address and deleting the account by code: the code spent and the
//! account changed in one write, so a failure cannot spend the code alone.

use super::*;

const NEW: &str = "lovelace@example.com";

/// A signed-in account with one open code of `purpose`, "123456", sent to `to`
/// (for `account`, if the code names one).
fn confirming(purpose: OtpPurpose, to: &str, account: Option<UserId>) -> Mocks {
    let mut m = Mocks::new();
    signed_in(&mut m);
    let to = EmailAddress::parse(to).unwrap();
    m.otps
        .expect_count_try()
        .withf(move |_, p, _, _, _| *p == purpose)
        .times(1)
        .returning(move |email, _, _, _, _| {
            let mut otp = stored_otp("123456", 1, Duration::minutes(5));
            otp.email = to.clone();
            otp.purpose = purpose;
            otp.account = account;
            otp.code_hash = OtpHasher::new(SECRET.to_vec()).hash(
                email,
                purpose,
                &OtpCode::new("123456".into()),
            );
            Ok(Tries::Counted(vec![otp]))
        });
    m
}

fn confirm_change(m: Mocks) -> Result<(), ChangeEmailError> {
    block_on(m.service().confirm_email_change(
        "access",
        &EmailAddress::parse(NEW).unwrap(),
        &OtpCode::new("123456".into()),
        CLIENT,
        &RequestContext::default(),
    ))
}

fn delete_by_code(m: Mocks) -> Result<(), DeleteAccountError> {
    block_on(m.service().delete_account(
        "access",
        DeleteConfirmation::Code {
            code: OtpCode::new("123456".into()),
            client: CLIENT.into(),
        },
        &RequestContext::default(),
    ))
}

/// The account without a password: it confirms a deletion with a code.
fn passwordless(m: &mut Mocks) {
    m.users.checkpoint();
    m.users.expect_find_by_id().returning(|_| {
        Ok(Some(User {
            password_hash: PasswordHash::unset(),
            ..user(true)
        }))
    });
}

#[test]
fn confirming_an_email_change_spends_the_code_and_moves_the_account_in_one_write() {
    let mut m = confirming(OtpPurpose::ChangeEmail, NEW, Some(user(true).id));
    m.otps
        .expect_consume()
        .withf(|spend| {
            let Some(AccountChange::Email {
                change,
                notice,
                audit,
            }) = spend.account
            else {
                return false;
            };
            spend.id == Uuid::from_u128(99)
                && spend.give_back.keys.len() == 2
                && spend.session.is_none()
                && spend.now == now()
                && change.user == user(true).id
                && change.old == email()
                && change.new.as_str() == NEW
                && change.keep_session == Uuid::from_u128(3)
                && matches!(notice, Mail::EmailChanged { to, .. } if *to == email())
                && audit.kind == AuditKind::EmailChanged
        })
        .times(1)
        .returning(|_| Ok(true));
    m.throttle.expect_release().never();
    m.outbox.expect_enqueue().never();
    confirm_change(m).unwrap();
}

#[test]
fn an_email_change_that_is_not_spent_is_the_one_answer() {
    let mut m = confirming(OtpPurpose::ChangeEmail, NEW, Some(user(true).id));
    // Spent meanwhile, or the move refused (the address taken): both roll back.
    m.otps.expect_consume().times(1).returning(|_| Ok(false));
    assert!(matches!(
        confirm_change(m),
        Err(ChangeEmailError::InvalidCode)
    ));
}

#[test]
fn an_email_change_code_of_another_account_is_not_spent() {
    let mut m = confirming(
        OtpPurpose::ChangeEmail,
        NEW,
        Some(UserId(Uuid::from_u128(8))),
    );
    m.otps.expect_consume().never();
    assert!(matches!(
        confirm_change(m),
        Err(ChangeEmailError::InvalidCode)
    ));
}

#[test]
fn deleting_by_code_spends_the_code_and_erases_the_account_in_one_write() {
    let mut m = confirming(OtpPurpose::SignIn, "ada@example.com", None);
    passwordless(&mut m);
    m.otps
        .expect_consume()
        .withf(|spend| {
            let Some(AccountChange::Delete {
                user: id,
                email: address,
                goodbye,
                audit,
            }) = spend.account
            else {
                return false;
            };
            spend.give_back.keys.len() == 2
                && spend.session.is_none()
                && id == user(true).id
                && *address == email()
                && matches!(goodbye, Mail::AccountDeleted { to, .. } if *to == email())
                && audit.kind == AuditKind::AccountDeleted
                && audit.email.is_none()
        })
        .times(1)
        .returning(|_| Ok(true));
    m.users.expect_delete().never();
    delete_by_code(m).unwrap();
}

#[test]
fn a_deletion_whose_code_is_not_spent_erases_nothing() {
    let mut m = confirming(OtpPurpose::SignIn, "ada@example.com", None);
    passwordless(&mut m);
    m.otps.expect_consume().times(1).returning(|_| Ok(false));
    m.users.expect_delete().never();
    assert!(matches!(
        delete_by_code(m),
        Err(DeleteAccountError::InvalidCode)
    ));
}

#[test]
fn deleting_by_password_erases_the_account_with_its_budget_in_one_write() {
    let mut m = Mocks::new();
    password_proves_right(&mut m);
    m.hashing_succeeds();
    // The erasure erases the budget's row: nothing to give back first.
    m.throttle.expect_release().never();
    m.users
        .expect_delete()
        .withf(|id, address, _, _, audit| {
            *id == user(true).id && *address == email() && audit.kind == AuditKind::AccountDeleted
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(true));
    block_on(m.service().delete_account(
        "access",
        DeleteConfirmation::Password(Password::for_login("the passphrase".into()).unwrap()),
        &RequestContext::default(),
    ))
    .unwrap();
}

#[test]
fn deleting_by_password_whose_erasure_fails_gives_the_try_back() {
    let mut m = Mocks::new();
    password_proves_right(&mut m);
    m.users
        .expect_delete()
        .times(1)
        .returning(|_, _, _, _, _| Err(InfraError::Unavailable(anyhow::anyhow!("down"))));
    password_try_given_back_after_failure(&mut m);
    let deleted = block_on(m.service().delete_account(
        "access",
        DeleteConfirmation::Password(Password::for_login("the passphrase".into()).unwrap()),
        &RequestContext::default(),
    ));
    assert!(matches!(
        deleted,
        Err(DeleteAccountError::Infra(InfraError::Unavailable(_)))
    ));
}

/// A change-email request with the right password, for `NEW` (taken or not).
fn requesting_change(taken: bool) -> Mocks {
    let mut m = Mocks::new();
    signed_in(&mut m);
    m.hashing_succeeds();
    m.passwords.expect_verify().returning(|_, _| Ok(true));
    let budget = password_budget();
    m.throttle
        .expect_acquire()
        .withf(move |key, _, _| key == budget)
        .times(1)
        .returning(|_, _, _| Ok(Admission::Allowed));
    m.users
        .expect_find_by_email()
        .withf(|address| address.as_str() == NEW)
        .returning(move |_| Ok(taken.then(|| user(true))));
    m
}

fn request_change(m: Mocks) -> Result<(), ChangeEmailError> {
    block_on(m.service().request_email_change(
        "access",
        &EmailAddress::parse(NEW).unwrap(),
        &Password::for_login("the passphrase".into()).unwrap(),
    ))
}

/// The one write of a change-email request: its send counted, the password's try
/// given back, the old address's notice.
fn is_the_request_write(issue: &Issue<'_>) -> bool {
    issue
        .send
        .is_some_and(|(key, _)| key == format!("send:change_email:{NEW}"))
        && issue.give_back.keys == [password_budget()]
        && issue.give_back.reserved_at == now()
        && matches!(issue.notice, Some(Mail::EmailChangeRequested { to, .. }) if *to == email())
}

#[test]
fn an_email_change_request_sends_its_code_notice_and_give_back_in_one_write() {
    let mut m = requesting_change(false);
    m.otps
        .expect_replace()
        .withf(|otp, mail, issue| {
            otp.account == Some(user(true).id)
                && matches!(mail, Mail::Code { to, purpose: OtpPurpose::ChangeEmail, .. } if to.as_str() == NEW)
                && is_the_request_write(issue)
        })
        .times(1)
        .returning(|_, _, _| Ok(Admission::Allowed));
    m.otps.expect_decoy().never();
    m.throttle.expect_release().never();
    m.outbox.expect_enqueue().never();
    request_change(m).unwrap();
}

#[test]
fn an_email_change_request_to_a_taken_address_does_the_same_write_with_a_decoy() {
    let mut m = requesting_change(true);
    m.otps.expect_replace().never();
    m.otps
        .expect_decoy()
        .withf(|address, purpose, _, issue| {
            address.as_str() == NEW
                && *purpose == OtpPurpose::ChangeEmail
                && is_the_request_write(issue)
        })
        .times(1)
        .returning(|_, _, _, _| Ok(Admission::Allowed));
    m.throttle.expect_release().never();
    m.outbox.expect_enqueue().never();
    request_change(m).unwrap();
}

#[test]
fn an_email_change_request_refused_by_its_send_limit_gives_the_try_back() {
    let mut m = requesting_change(false);
    m.otps
        .expect_replace()
        .times(1)
        .returning(|_, _, _| Ok(denied(30)));
    // The refused write wrote nothing: the password's try is given back on its own.
    password_try_given_back(&mut m);
    m.outbox.expect_enqueue().never();
    assert!(matches!(
        request_change(m),
        Err(ChangeEmailError::Throttled(t)) if t.retry_after == Duration::seconds(30)
    ));
}

#[test]
fn an_email_change_request_whose_write_fails_gives_the_try_back() {
    let mut m = requesting_change(false);
    m.otps
        .expect_replace()
        .times(1)
        .returning(|_, _, _| Err(InfraError::Unavailable(anyhow::anyhow!("down"))));
    // The failed write gave nothing back: the password's try is given back on its own.
    password_try_given_back_after_failure(&mut m);
    assert!(matches!(
        request_change(m),
        Err(ChangeEmailError::Infra(InfraError::Unavailable(_)))
    ));
}
