//! The rules of a single code, through HTTP.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Mail, json_of, spawn_app, spawn_app_with, unique_email};

fn wrong(code: &str) -> String {
    let last = code.as_bytes()[5];
    let flipped = if last == b'9' { b'0' } else { last + 1 };
    format!("{}{}", &code[..5], flipped as char)
}

#[tokio::test]
async fn wrong_code_answers_otp_invalid() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    let body = json_of(app.validate(&email, &wrong(&code)).await, 400).await;
    assert_eq!(
        body,
        json!({"error": "Invalid or expired OTP.", "code": "otp_invalid"})
    );
}

#[tokio::test]
async fn verify_rejects_code_after_five_wrong_tries() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    for _ in 0..5 {
        assert_eq!(app.validate(&email, &wrong(&code)).await.status(), 400);
    }
    let body = json_of(app.validate(&email, &code).await, 400).await;
    assert_eq!(body["code"], "otp_invalid");
}

#[tokio::test]
async fn right_code_still_works_after_four_wrong_tries() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    for _ in 0..4 {
        assert_eq!(app.validate(&email, &wrong(&code)).await.status(), 400);
    }
    assert_eq!(app.validate(&email, &code).await.status(), 200);
}

#[tokio::test]
async fn code_is_refused_after_its_lifetime() {
    let app = spawn_app_with(Mail::Starttls, |s| s.otp.ttl_seconds = 1.into()).await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        json_of(app.validate(&email, &code).await, 400).await["code"],
        "otp_invalid"
    );
}

#[tokio::test]
async fn code_works_once() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    assert_eq!(app.validate(&email, &code).await.status(), 200);
    assert_eq!(
        json_of(app.validate(&email, &code).await, 400).await["code"],
        "otp_invalid"
    );
}

#[tokio::test]
async fn a_new_code_invalidates_the_previous_one() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let first = app.next_code(&email).await;
    let resend = app.resend(&email).await;
    assert_eq!(resend.status(), 200);
    let second = app.next_code(&email).await;
    if first != second {
        assert_eq!(app.validate(&email, &first).await.status(), 400);
    }
    assert_eq!(app.validate(&email, &second).await.status(), 200);
}

#[tokio::test]
async fn unknown_address_gets_the_same_answer_as_a_wrong_code() {
    let app = spawn_app().await;
    let body = json_of(app.validate(&unique_email(), "123456").await, 400).await;
    assert_eq!(
        body,
        json!({"error": "Invalid or expired OTP.", "code": "otp_invalid"})
    );
}

#[tokio::test]
async fn addresses_are_matched_case_insensitively_and_trimmed() {
    let app = spawn_app().await;
    let email = unique_email();
    let shouted = format!("  {}  ", email.to_uppercase());
    assert_eq!(app.register(&shouted).await.status(), 201);
    let code = app.next_code(&email).await;
    assert_eq!(
        app.validate(&email.to_uppercase(), &code).await.status(),
        200
    );
}

#[tokio::test]
async fn resend_answers_the_same_for_unknown_pending_and_verified_addresses() {
    let app = spawn_app().await;
    let pending = unique_email();
    app.register(&pending).await;
    app.next_mail(&pending).await;
    let verified = unique_email();
    app.verified_user(&verified).await;

    let mut bodies = Vec::new();
    for email in [unique_email(), pending.clone(), verified.clone()] {
        let response = app.resend(&email).await;
        bodies.push(json_of(response, 200).await);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert!(
        app.next_mail(&pending).await.code().is_some(),
        "the pending address got a new code"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.mails_to(&verified).len(),
        1,
        "a verified address gets no code"
    );
}
