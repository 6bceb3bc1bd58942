//! Sessions through HTTP: refresh-token rotation, reuse detection, the grace window,
//! logout, and deactivated accounts.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{
    Cli, Mail, PASSWORD, TestApp, json_of, spawn_app, spawn_app_with, unique_email,
};

async fn login(app: &TestApp, email: &str) -> Value {
    json_of(app.login(email, PASSWORD).await, 200).await
}

async fn refresh(app: &TestApp, token: &Value) -> reqwest::Response {
    app.refresh(&token).await
}

async fn no_grace_app() -> TestApp {
    spawn_app_with(Mail::Starttls, |s| {
        s.jwt.refresh_reuse_grace_seconds = 0.into()
    })
    .await
}

#[tokio::test]
async fn each_refresh_rotates_the_pair() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    let first = login(&app, &email).await;
    let second = json_of(refresh(&app, &first["refresh"]).await, 200).await;
    assert_ne!(second["refresh"], first["refresh"]);
    assert_ne!(second["access"], first["access"]);
    let third = json_of(refresh(&app, &second["refresh"]).await, 200).await;
    assert_ne!(third["refresh"], second["refresh"]);
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_its_family() {
    let app = no_grace_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    let stolen = login(&app, &email).await;
    let other_device = login(&app, &email).await;
    let rotated = json_of(refresh(&app, &stolen["refresh"]).await, 200).await;

    let reuse = refresh(&app, &stolen["refresh"]).await;
    assert_eq!(json_of(reuse, 401).await["code"], "token_invalid");
    assert_eq!(
        refresh(&app, &rotated["refresh"]).await.status(),
        401,
        "the family's newest token is revoked too"
    );
    assert_eq!(
        refresh(&app, &other_device["refresh"]).await.status(),
        200,
        "other families are untouched"
    );
}

/// Within the grace window only the token just replaced gets the pair again: one two
/// refreshes old was spent before that, so it revokes the session.
#[tokio::test]
async fn a_token_older_than_the_one_just_replaced_revokes_its_session_even_in_grace() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    let first = login(&app, &email).await;
    let second = json_of(refresh(&app, &first["refresh"]).await, 200).await;
    let third = json_of(refresh(&app, &second["refresh"]).await, 200).await;
    let again = json_of(refresh(&app, &second["refresh"]).await, 200).await;
    assert_eq!(
        again["refresh"], third["refresh"],
        "the one just replaced replays"
    );

    let reuse = refresh(&app, &first["refresh"]).await;
    assert_eq!(json_of(reuse, 401).await["code"], "token_invalid");
    assert_eq!(
        refresh(&app, &third["refresh"]).await.status(),
        401,
        "the session's live token is revoked too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_within_the_grace_window_get_the_same_pair() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    let session = login(&app, &email).await;
    let responses = join_all((0..5).map(|_| refresh(&app, &session["refresh"]))).await;
    let mut pairs = Vec::new();
    for response in responses {
        pairs.push(json_of(response, 200).await);
    }
    assert!(pairs.windows(2).all(|w| w[0] == w[1]), "{pairs:?}");
    assert_eq!(
        refresh(&app, &pairs[0]["refresh"]).await.status(),
        200,
        "and the new token works"
    );
}

#[tokio::test]
async fn logout_revokes_this_family_or_with_all_every_one() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    let (a, b, c) = (
        login(&app, &email).await,
        login(&app, &email).await,
        login(&app, &email).await,
    );

    let out = app
        .post("/api/accounts/logout/", &json!({"refresh": a["refresh"]}))
        .await;
    assert_eq!(out.status(), 200);
    assert_eq!(refresh(&app, &a["refresh"]).await.status(), 401);
    assert_eq!(refresh(&app, &b["refresh"]).await.status(), 200);

    let all = app
        .post(
            "/api/accounts/logout/",
            &json!({"refresh": c["refresh"], "all": true}),
        )
        .await;
    assert_eq!(all.status(), 200);
    assert_eq!(refresh(&app, &c["refresh"]).await.status(), 401);
    let again = app
        .post("/api/accounts/logout/", &json!({"refresh": c["refresh"]}))
        .await;
    assert_eq!(again.status(), 401, "a revoked token cannot log out again");
    let bad = app
        .post(
            "/api/accounts/logout/",
            &json!({"refresh": "x", "all": "yes"}),
        )
        .await;
    assert_eq!(
        json_of(bad, 400).await["fields"]["all"][0],
        "Must be a valid boolean."
    );
}

#[tokio::test]
async fn a_deactivated_account_can_neither_log_in_nor_refresh() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    let users = |action: &str| {
        app.cli(&["users", action, &email])
            .output()
            .expect("passcode users")
    };
    let out = users("deactivate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    assert_eq!(refresh(&app, &tokens["refresh"]).await.status(), 401);
    let me = app
        .client
        .get(app.url("/api/accounts/me/"))
        .bearer_auth(tokens["access"].as_str().expect("access"))
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 401);

    assert!(users("activate").status.success());
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
    assert_eq!(
        refresh(&app, &tokens["refresh"]).await.status(),
        401,
        "its old sessions stay revoked"
    );
}
