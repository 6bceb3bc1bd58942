//! Access and refresh tokens through HTTP.

use serde_json::json;

use crate::helpers::{json_of, spawn_app, unique_email};

#[tokio::test]
async fn me_requires_a_valid_access_token() {
    let app = spawn_app().await;
    let tokens = app.verified_user(&unique_email()).await;
    let cases = [
        None,
        Some("garbage".to_owned()),
        Some(tokens["refresh"].as_str().expect("refresh").to_owned()),
    ];
    for token in cases {
        let mut request = app.client.get(app.url("/api/accounts/me/"));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        assert!(response.headers().contains_key("www-authenticate"));
        let body = json_of(response, 401).await;
        assert!(
            body["error"].is_string() && body["code"].is_string(),
            "{token:?}"
        );
    }
}

#[tokio::test]
async fn refresh_accepts_only_refresh_tokens() {
    let app = spawn_app().await;
    let tokens = app.verified_user(&unique_email()).await;
    for token in [tokens["access"].clone(), json!("x.y.z"), json!("")] {
        let response = app.refresh(&token).await;
        assert_eq!(
            json_of(response, 401).await["code"],
            "token_invalid",
            "{token}"
        );
    }
}

#[tokio::test]
async fn token_verify_accepts_only_access_tokens() {
    let app = spawn_app().await;
    let tokens = app.verified_user(&unique_email()).await;
    let ok = app.verify_token(&tokens["access"]).await;
    assert_eq!(ok.status(), 200);
    let refresh = app.verify_token(&tokens["refresh"]).await;
    assert_eq!(json_of(refresh, 401).await["code"], "token_invalid");
}

#[tokio::test]
async fn access_token_carries_the_documented_claims() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    let claims = crate::flow::claims_of(&tokens["access"]);
    for claim in [
        "sub",
        "email",
        "email_verified",
        "iat",
        "exp",
        "jti",
        "iss",
        "aud",
        "token_type",
    ] {
        assert!(claims.get(claim).is_some(), "missing {claim}");
    }
    assert_eq!(claims["email"], email.as_str());
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["token_type"], "access");
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        300
    );
}
