//! Both registration policies of API.md.

use serde_json::json;

use crate::helpers::{Mail, PASSWORD, json_of, spawn_app, spawn_app_with, unique_email};
use passcode_app::settings::PolicySetting;

#[tokio::test]
async fn register_answers_the_same_for_new_pending_and_verified_addresses() {
    let app = spawn_app().await;
    let pending = unique_email();
    app.register(&pending).await;
    app.next_mail(&pending).await;
    let verified = unique_email();
    app.verified_user(&verified).await;

    for email in [unique_email(), pending, verified] {
        let body = json_of(app.register(&email).await, 201).await;
        let mut expected = json!({"user": {"email": email, "full_name": "Ada Lovelace"}});
        expected["message"] = body["message"].clone();
        assert_eq!(body, expected);
        assert!(body["message"].is_string());
    }
}

#[tokio::test]
async fn registering_a_verified_address_mails_a_notice_not_a_code() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    assert_eq!(app.register(&email).await.status(), 201);
    let notice = app.next_mail(&email).await;
    assert!(
        notice.subject.contains("tried to register"),
        "{}",
        notice.subject
    );
    assert!(notice.code().is_none(), "the notice carries no code");
}

#[tokio::test]
async fn login_before_verification_is_403_by_default() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let body = json_of(app.login(&email, PASSWORD).await, 403).await;
    assert_eq!(body["code"], "email_not_verified");
}

#[tokio::test]
async fn login_with_wrong_password_or_unknown_address_is_the_same_401() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    let wrong = json_of(app.login(&email, "not the password").await, 401).await;
    let unknown = json_of(app.login(&unique_email(), "not the password").await, 401).await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["code"], "invalid_credentials");
}

async fn compat_app() -> crate::helpers::TestApp {
    spawn_app_with(Mail::Starttls, |s| {
        s.registration.policy = PolicySetting::TokensBeforeVerification;
    })
    .await
}

#[tokio::test]
async fn compatibility_policy_returns_tokens_at_registration() {
    let app = compat_app().await;
    let email = unique_email();
    let body = json_of(app.register(&email).await, 201).await;
    assert!(body["user"]["id"].is_string());
    assert_eq!(body["user"]["email"], email.as_str());
    assert!(body["token"]["access"].is_string() && body["token"]["refresh"].is_string());

    let me = app
        .client
        .get(app.url("/api/accounts/me"))
        .bearer_auth(body["token"]["access"].as_str().expect("access"))
        .send()
        .await
        .expect("request");
    assert_eq!(json_of(me, 200).await["email_verified"], false);

    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        200,
        "login before verification"
    );
    let code = app.next_code(&email).await;
    assert_eq!(app.validate(&email, &code).await.status(), 200);

    // The refresh token from before verification names the address unverified: the
    // rotation sees the account changed, and the new pair says what it is now.
    let refreshed = app
        .client
        .post(app.url("/api/accounts/token/refresh/"))
        .json(&json!({"refresh": body["token"]["refresh"]}))
        .send()
        .await
        .expect("request");
    let pair = json_of(refreshed, 200).await;
    assert_eq!(
        crate::flow::claims_of(&pair["access"])["email_verified"],
        true
    );
}

#[tokio::test]
async fn compatibility_policy_refuses_a_duplicate_address() {
    let app = compat_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email).await.status(), 201);
    let body = json_of(app.register(&email.to_uppercase()).await, 400).await;
    assert_eq!(
        body,
        json!({"error": "User with this email already exists.", "code": "email_taken"})
    );
}
