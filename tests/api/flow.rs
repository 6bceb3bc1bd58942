//! The whole flow a client goes through, over both SMTP security modes.

use serde_json::{Value, json};

use crate::helpers::{Mail, PASSWORD, TestApp, json_of, spawn_app, spawn_app_with, unique_email};

async fn whole_flow(app: &TestApp) {
    let email = unique_email();

    let body = json_of(app.register(&email).await, 201).await;
    assert_eq!(body["user"]["email"], email.as_str());
    assert_eq!(body["user"]["full_name"], "Ada Lovelace");
    assert!(body.get("token").is_none(), "no tokens before verification");

    let mail = app.next_mail(&email).await;
    let code = mail.code().expect("a code in the mail");

    let verified = json_of(app.validate(&email, &code).await, 200).await;
    assert_eq!(verified["message"], "Account verified successfully");
    let access = verified["token"]["access"]
        .as_str()
        .expect("access")
        .to_owned();
    assert!(verified["token"]["refresh"].is_string());

    let login = json_of(app.login(&email, PASSWORD).await, 200).await;
    let refresh = login["refresh"].as_str().expect("refresh").to_owned();

    let refreshed = json_of(app.refresh(&refresh).await, 200).await;
    assert!(refreshed["access"].is_string() && refreshed["refresh"].is_string());

    let me = app
        .client
        .get(app.url("/api/accounts/me/"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("request");
    let me = json_of(me, 200).await;
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["full_name"], "Ada Lovelace");
    assert_eq!(me["email_verified"], true);
    assert!(me["id"].is_string() && me["created_at"].is_string());

    let check = app.verify_token(&refreshed["access"]).await;
    assert_eq!(json_of(check, 200).await, json!({}));
}

#[tokio::test]
async fn whole_flow_with_mail_over_starttls_and_auth() {
    let app = spawn_app_with(Mail::Starttls, |_| {}).await;
    whole_flow(&app).await;
}

#[tokio::test]
async fn whole_flow_with_mail_over_implicit_tls_and_auth() {
    let app = spawn_app_with(Mail::Implicit, |_| {}).await;
    whole_flow(&app).await;
}

#[tokio::test]
async fn code_mail_is_multipart_with_code_purpose_and_expiry() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let mail = app.next_mail(&email).await;
    assert_eq!(mail.content_type, "multipart/alternative");
    let code = mail.code().expect("code");
    for part in [&mail.text, &mail.html] {
        assert!(part.contains(&code), "code in every part");
        assert!(part.contains("verification"), "purpose in every part");
        assert!(part.contains("10 minutes"), "expiry in every part");
    }
    assert!(mail.subject.contains("verification code"));
}

#[tokio::test]
async fn every_path_answers_with_and_without_trailing_slash() {
    let app = spawn_app().await;
    for path in ["/api/accounts/token", "/api/accounts/token/"] {
        let response = app
            .post(
                path,
                &json!({"email": unique_email(), "password": "whatever-pass"}),
            )
            .await;
        assert_eq!(response.status(), 401, "{path}");
    }
    for path in [
        "/health/live",
        "/health/live/",
        "/health/ready",
        "/health/ready/",
    ] {
        let response = app.client.get(app.url(path)).send().await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn unknown_route_and_wrong_method_answer_json() {
    let app = spawn_app().await;
    let missing = app
        .client
        .get(app.url("/api/nothing-here"))
        .send()
        .await
        .expect("request");
    assert_eq!(json_of(missing, 404).await["code"], "not_found");
    let wrong = app
        .client
        .get(app.url("/api/accounts/create/"))
        .send()
        .await
        .expect("request");
    assert_eq!(json_of(wrong, 405).await["code"], "method_not_allowed");
}

#[tokio::test]
async fn resend_otp_answers_on_patch_and_post() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let first = app.next_code(&email).await;
    for method in [reqwest::Method::PATCH, reqwest::Method::POST] {
        let response = app
            .client
            .request(method.clone(), app.url("/api/accounts/resend-otp/"))
            .json(&json!({"email": email}))
            .send()
            .await
            .expect("request");
        let body: Value = json_of(response, 200).await;
        assert!(body["message"].is_string(), "{method}");
        app.next_mail(&email).await;
    }
    // The first code was replaced twice since.
    assert_eq!(app.validate(&email, &first).await.status(), 400);
}

#[tokio::test]
async fn jwks_publishes_the_ed25519_key_that_signs_tokens() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("request");
    let jwks = json_of(response, 200).await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    let token = app.verified_user(&unique_email()).await;
    let header = token["access"]
        .as_str()
        .expect("access")
        .split('.')
        .next()
        .expect("header")
        .to_owned();
    let header: Value = serde_json::from_slice(&base64_url(&header)).expect("header json");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], key["kid"]);
}

#[tokio::test]
async fn signing_key_is_created_once_with_mode_0600() {
    let app = spawn_app().await;
    let path = app.data_dir.path().join("jwt-ed25519.pem");
    let metadata = std::fs::metadata(&path).expect("key file created in the data folder");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    }
    let _ = metadata;
}

/// The claims of a JWT (not checked: the tests read what passcode wrote).
pub fn claims_of(token: &Value) -> Value {
    let payload = token
        .as_str()
        .expect("a token")
        .split('.')
        .nth(1)
        .expect("payload");
    serde_json::from_slice(&base64_url(payload)).expect("claims")
}

pub fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}
