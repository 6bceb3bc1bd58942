//! Deleting the account: by its owner (with the password) and by an operator.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, json_of, spawn_app, unique_email};

async fn delete(app: &TestApp, access: &Value, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/accounts/delete/"))
        .bearer_auth(access.as_str().unwrap())
        .json(&json!({ "password": password }))
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, access: &Value) -> u16 {
    app.client
        .get(app.url("/api/accounts/me/"))
        .bearer_auth(access.as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_owner_deletes_the_account_with_the_password_and_the_address_can_register_again() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    let wrong = json_of(
        delete(&app, &tokens["access"], "not my password 123").await,
        400,
    )
    .await;
    assert_eq!(
        wrong["fields"]["password"][0],
        "Your password was entered incorrectly."
    );
    assert_eq!(
        me(&app, &tokens["access"]).await,
        200,
        "a wrong password deletes nothing"
    );

    let deleted = json_of(delete(&app, &tokens["access"], PASSWORD).await, 200).await;
    assert_eq!(deleted["message"], "Your account has been deleted.");
    assert_eq!(me(&app, &tokens["access"]).await, 401);
    let refresh = app
        .post(
            "/api/accounts/token/refresh/",
            &json!({"refresh": tokens["refresh"]}),
        )
        .await;
    assert_eq!(refresh.status(), 401);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    let goodbye = app.next_mail(&email).await;
    assert!(goodbye.subject.contains("deleted"), "{}", goodbye.subject);
    assert!(goodbye.code().is_none());
    // Deleted again: the token speaks for nobody.
    assert_eq!(
        delete(&app, &tokens["access"], PASSWORD).await.status(),
        401
    );

    // The address is free: a new registration, a new code, a new account.
    assert_eq!(app.register(&email).await.status(), 201);
    let code = app.next_code(&email).await;
    assert_eq!(app.validate(&email, &code).await.status(), 200);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_delete_racing_a_refresh_leaves_no_token_that_works() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    let refresh = json!({"refresh": tokens["refresh"]});
    let (deleted, refreshed) = tokio::join!(
        delete(&app, &tokens["access"], PASSWORD),
        app.post("/api/accounts/token/refresh/", &refresh)
    );
    assert_eq!(deleted.status(), 200);
    if refreshed.status() == 200 {
        // The refresh won the race: its pair must not outlive the account.
        let pair: Value = refreshed.json().await.unwrap();
        assert_eq!(me(&app, &pair["access"]).await, 401);
        let again = app
            .post(
                "/api/accounts/token/refresh/",
                &json!({"refresh": pair["refresh"]}),
            )
            .await;
        assert_eq!(again.status(), 401);
    } else {
        assert_eq!(refreshed.status(), 401);
    }
    assert_eq!(me(&app, &tokens["access"]).await, 401);
}

#[tokio::test]
async fn an_operator_deletes_an_account_with_the_cli() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    app.users_cli("delete", &email);
    assert_eq!(me(&app, &tokens["access"]).await, 401);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_passcode"))
        .args(["users", "delete", &email])
        .env("APP__LOG__LEVEL", "off")
        .env("APP__DATABASE__URL", &app.settings.database.url)
        .env("APP__DATA__DIR", app.data_dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "no such account any more");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account"));
}
