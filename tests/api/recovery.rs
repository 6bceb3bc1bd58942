//! Password reset by code and password change, end to end: codes read from mail
//! captured by a real SMTP server, and every earlier session refused afterwards.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, json_of, spawn_app, unique_email};

const NEW_PASSWORD: &str = "violet tangerine orbit 42";

async fn request_reset(app: &TestApp, email: &str) -> reqwest::Response {
    app.post("/api/accounts/password-reset/", &json!({"email": email}))
        .await
}

async fn confirm_reset(
    app: &TestApp,
    email: &str,
    otp: &str,
    new_password: &str,
) -> reqwest::Response {
    app.post(
        "/api/accounts/password-reset/confirm/",
        &json!({"email": email, "otp": otp, "new_password": new_password}),
    )
    .await
}

async fn refresh(app: &TestApp, token: &Value) -> reqwest::Response {
    app.refresh(&token).await
}

#[tokio::test]
async fn password_reset_by_code_sets_the_password_and_signs_out_every_session() {
    let app = spawn_app().await;
    let email = unique_email();
    let first = app.verified_user(&email).await;
    let session = json_of(app.login(&email, PASSWORD).await, 200).await;

    assert_eq!(request_reset(&app, &email).await.status(), 200);
    let mail = app.next_mail(&email).await;
    assert!(mail.subject.contains("password reset"), "{}", mail.subject);
    let code = mail.code().expect("a reset code");
    assert_eq!(
        confirm_reset(&app, &email, &code, NEW_PASSWORD)
            .await
            .status(),
        200
    );

    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        401,
        "the old password is gone"
    );
    assert_eq!(app.login(&email, NEW_PASSWORD).await.status(), 200);
    for token in [&first["refresh"], &session["refresh"]] {
        assert_eq!(
            refresh(&app, token).await.status(),
            401,
            "sessions from before are refused"
        );
    }
    let me = app
        .client
        .get(app.url("/api/accounts/me/"))
        .bearer_auth(session["access"].as_str().expect("access"))
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 401, "so are access tokens from before");
    let notice = app.next_mail(&email).await;
    assert!(
        notice.subject.contains("password was changed"),
        "{}",
        notice.subject
    );
    assert!(notice.code().is_none());
    // The code was single use.
    assert_eq!(
        confirm_reset(&app, &email, &code, "another fine passphrase 7")
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn password_reset_answers_the_same_for_any_address() {
    let app = spawn_app().await;
    let verified = unique_email();
    app.verified_user(&verified).await;
    let pending = unique_email();
    app.register(&pending).await;
    app.next_mail(&pending).await;
    let mut bodies = Vec::new();
    for email in [unique_email(), verified, pending] {
        bodies.push(json_of(request_reset(&app, &email).await, 200).await);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let wrong = json_of(
        confirm_reset(&app, &unique_email(), "123456", NEW_PASSWORD).await,
        400,
    )
    .await;
    assert_eq!(
        wrong,
        json!({"error": "Invalid or expired OTP.", "code": "otp_invalid"})
    );
}

#[tokio::test]
async fn a_reset_code_is_no_verification_code_and_the_reset_verifies_the_address() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    app.next_mail(&email).await;
    request_reset(&app, &email).await;
    let code = app.next_code(&email).await;
    assert_eq!(
        app.validate(&email, &code).await.status(),
        400,
        "a reset code does not verify"
    );
    assert_eq!(
        confirm_reset(&app, &email, &code, NEW_PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.login(&email, NEW_PASSWORD).await.status(),
        200,
        "the code proved the address"
    );
}

#[tokio::test]
async fn a_weak_new_password_is_a_field_error_and_keeps_the_code() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    request_reset(&app, &email).await;
    let code = app.next_code(&email).await;
    let body = json_of(confirm_reset(&app, &email, &code, "password123").await, 400).await;
    assert!(
        body["fields"]["new_password"][0]
            .as_str()
            .is_some_and(|m| m.contains("too easy"))
    );
    assert_eq!(
        confirm_reset(&app, &email, &code, NEW_PASSWORD)
            .await
            .status(),
        200
    );
}

async fn change(app: &TestApp, access: &Value, old: &str, new: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/accounts/change-password/"))
        .bearer_auth(access.as_str().expect("access"))
        .json(&json!({"old_password": old, "new_password": new}))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn change_password_needs_the_old_one_and_signs_out_other_sessions() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;

    let wrong = json_of(
        change(&app, &tokens["access"], "not my password", NEW_PASSWORD).await,
        400,
    )
    .await;
    assert!(wrong["fields"]["old_password"].is_array(), "{wrong}");
    assert_eq!(
        change(&app, &tokens["access"], PASSWORD, NEW_PASSWORD)
            .await
            .status(),
        200
    );

    assert_eq!(refresh(&app, &tokens["refresh"]).await.status(), 401);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    assert_eq!(app.login(&email, NEW_PASSWORD).await.status(), 200);
    let notice = app.next_mail(&email).await;
    assert!(notice.subject.contains("password was changed"));

    let anonymous = app
        .post(
            "/api/accounts/change-password/",
            &json!({"old_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(json_of(anonymous, 401).await["code"], "not_authenticated");
}

#[tokio::test]
async fn token_verify_refuses_access_tokens_from_before_a_password_change() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    let body = json!({"token": tokens["access"]});
    assert_eq!(
        app.post("/api/accounts/token/verify/", &body)
            .await
            .status(),
        200
    );
    assert_eq!(
        change(&app, &tokens["access"], PASSWORD, NEW_PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post("/api/accounts/token/verify/", &body)
            .await
            .status(),
        401
    );
}
