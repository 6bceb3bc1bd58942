//! Security hardening through HTTP: no account takeover by registering first or
//! after, guessing bounded on every password and code check, client addresses that
//! cannot be forged, tokens that no cache keeps, sessions with an absolute end.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Cli, Mail, PASSWORD, TestApp, json_of, spawn_app, spawn_app_with, unique_email,
};

const OTHER: &str = "mallory's own password 42";

async fn register_with(app: &TestApp, email: &str, name: &str, password: &str) {
    let response = app
        .post(
            "/api/accounts/create/",
            &json!({"full_name": name, "email": email, "password": password}),
        )
        .await;
    assert_eq!(response.status(), 201);
}

async fn validate_with(
    app: &TestApp,
    email: &str,
    code: &str,
    password: &str,
) -> reqwest::Response {
    app.post(
        "/api/accounts/validate-otp/",
        &json!({"email": email, "otp": code, "password": password}),
    )
    .await
}

async fn name_of(app: &TestApp, tokens: &Value) -> String {
    let me = app
        .client
        .get(app.url("/api/accounts/me/"))
        .bearer_auth(tokens["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    json_of(me, 200).await["full_name"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The owner's password works after the owner verified, the other one never does.
async fn assert_owner_holds_the_account(app: &TestApp, email: &str) {
    assert_eq!(
        app.login(email, PASSWORD).await.status(),
        200,
        "the owner's password"
    );
    assert_eq!(
        app.login(email, OTHER).await.status(),
        401,
        "the other registrant's"
    );
}

#[tokio::test]
async fn someone_registering_before_the_owner_does_not_keep_the_account() {
    let app = spawn_app().await;
    let email = unique_email();
    register_with(&app, &email, "Mallory", OTHER).await;
    let _mallorys_code = app.next_code(&email).await; // lands in the owner's mailbox
    register_with(&app, &email, "Ada Owner", PASSWORD).await;
    let owners_code = app.next_code(&email).await;
    let response = app.validate(&email, &owners_code).await;
    let body = json_of(response, 200).await;
    assert_eq!(name_of(&app, &body["token"]).await, "Ada Owner");
    assert_owner_holds_the_account(&app, &email).await;
}

#[tokio::test]
async fn someone_registering_after_the_owner_does_not_take_the_account() {
    let app = spawn_app().await;
    let email = unique_email();
    register_with(&app, &email, "Ada Owner", PASSWORD).await;
    let owners_code = app.next_code(&email).await;
    register_with(&app, &email, "Mallory", OTHER).await;
    let newest = app.next_code(&email).await;
    // The owner enters the code of their own registration: still valid.
    assert_eq!(app.validate(&email, &owners_code).await.status(), 200);
    assert_owner_holds_the_account(&app, &email).await;
    // The later registration's code died with the verification.
    if newest != owners_code {
        assert_eq!(app.validate(&email, &newest).await.status(), 400);
    }
    assert_owner_holds_the_account(&app, &email).await;
}

#[tokio::test]
async fn with_its_password_a_code_of_someone_elses_registration_is_refused() {
    let app = spawn_app().await;
    let email = unique_email();
    register_with(&app, &email, "Ada Owner", PASSWORD).await;
    let owners_code = app.next_code(&email).await;
    register_with(&app, &email, "Mallory", OTHER).await;
    let newest = app.next_code(&email).await;
    if newest != owners_code {
        // The owner enters the newest code, sending their password: refused uniformly.
        let body = json_of(validate_with(&app, &email, &newest, PASSWORD).await, 400).await;
        assert_eq!(
            body,
            json!({"error": "Invalid or expired OTP.", "code": "otp_invalid"})
        );
    }
    assert_eq!(
        validate_with(&app, &email, &owners_code, PASSWORD)
            .await
            .status(),
        200
    );
    assert_owner_holds_the_account(&app, &email).await;
}

#[tokio::test]
async fn the_password_on_validate_must_be_a_string() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    let response = app
        .post(
            "/api/accounts/validate-otp/",
            &json!({"email": email, "otp": code, "password": 5}),
        )
        .await;
    let body = json_of(response, 400).await;
    assert_eq!(body["fields"]["password"][0], "Not a valid string.");
    // Nothing was spent: the code still works.
    assert_eq!(
        validate_with(&app, &email, &code, PASSWORD).await.status(),
        200
    );
}

#[tokio::test]
async fn a_deactivated_account_can_neither_be_verified_nor_get_a_code() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    app.users_cli("deactivate", &email);
    assert_eq!(app.validate(&email, &code).await.status(), 400);
    for path in ["/api/accounts/resend-otp/", "/api/accounts/password-reset/"] {
        assert_eq!(app.post(path, &json!({"email": email})).await.status(), 200);
    }
    assert_eq!(app.register(&email).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.mails_to(&email).len(), 1, "no code after deactivation");
}

fn proxied(
    customize: impl FnOnce(&mut passcode_app::settings::Settings),
) -> impl FnOnce(&mut passcode_app::settings::Settings) {
    move |s| {
        s.limits.trusted_proxies = vec!["127.0.0.1/32".into()];
        customize(s);
    }
}

async fn login_from(app: &TestApp, client: &str, email: &str, password: &str) -> reqwest::Response {
    app.post_from(
        client,
        "/api/accounts/token/",
        &json!({"email": email, "password": password}),
    )
    .await
}

#[tokio::test]
async fn failed_logins_slow_one_client_without_locking_out_the_owner() {
    let app = spawn_app_with(
        Mail::Starttls,
        proxied(|s| {
            s.limits.login_failures_per_client = 3;
            s.limits.login_failures = 100;
        }),
    )
    .await;
    let email = unique_email();
    app.verified_user(&email).await;
    let unknown = unique_email();
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, "198.51.100.1", &email, "wrong guess 12345")
                .await
                .status(),
            401
        );
        assert_eq!(
            login_from(&app, "198.51.100.1", &unknown, "wrong guess 12345")
                .await
                .status(),
            401
        );
    }
    // That client is slowed, even with the right password; unknown addresses alike.
    let known = login_from(&app, "198.51.100.1", &email, PASSWORD).await;
    assert!(known.headers().contains_key("retry-after"));
    let known = json_of(known, 429).await;
    let unknown = json_of(
        login_from(&app, "198.51.100.1", &unknown, PASSWORD).await,
        429,
    )
    .await;
    assert_eq!(known, unknown);
    // The owner, from elsewhere, is not.
    assert_eq!(
        login_from(&app, "203.0.113.9", &email, PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn failed_logins_from_many_clients_meet_the_address_ceiling() {
    let app = spawn_app_with(
        Mail::Starttls,
        proxied(|s| {
            s.limits.login_failures_per_client = 2;
            s.limits.login_failures = 4;
        }),
    )
    .await;
    let email = unique_email();
    app.verified_user(&email).await;
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..2 {
            assert_eq!(
                login_from(&app, client, &email, "wrong guess 12345")
                    .await
                    .status(),
                401
            );
        }
    }
    assert_eq!(
        login_from(&app, "198.51.100.3", &email, "wrong guess 12345")
            .await
            .status(),
        429
    );
    // A right password does not spend the budget: only failures count.
    let other = unique_email();
    app.verified_user(&other).await;
    for _ in 0..10 {
        assert_eq!(
            login_from(&app, "198.51.100.4", &other, PASSWORD)
                .await
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn wrong_old_passwords_on_change_password_are_bounded_per_account() {
    let app = spawn_app_with(Mail::Starttls, |s| s.limits.login_failures_per_client = 2).await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    let change = |old: &'static str| {
        app.client
            .post(app.url("/api/accounts/change-password/"))
            .bearer_auth(tokens["access"].as_str().unwrap())
            .json(&json!({"old_password": old, "new_password": "a brand new passphrase 7"}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(change("not the old one 123").await.unwrap().status(), 400);
    }
    let refused = change(PASSWORD).await.unwrap();
    assert_eq!(
        refused.status(),
        429,
        "even the right one, once the budget is spent"
    );
}

#[tokio::test]
async fn change_password_is_under_the_per_client_limit() {
    let app = spawn_app_with(Mail::Starttls, |s| s.limits.client_requests = 2).await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = app
            .client
            .post(app.url("/api/accounts/change-password/"))
            .bearer_auth(tokens["access"].as_str().unwrap())
            .json(&json!({"old_password": "not the old one 123", "new_password": "a brand new passphrase 7"}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [400, 400, 429]);
}

#[tokio::test]
async fn one_client_cannot_spend_a_victims_whole_code_budget() {
    let app = spawn_app_with(
        Mail::Starttls,
        proxied(|s| {
            s.limits.guess_budget = 10;
            s.limits.guess_budget_per_client = 3;
        }),
    )
    .await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let validate = async |client: &str, otp: &str| {
        app.post_from(
            client,
            "/api/accounts/validate-otp/",
            &json!({"email": email, "otp": otp}),
        )
        .await
    };
    for _ in 0..3 {
        assert_eq!(validate("198.51.100.66", wrong).await.status(), 400);
    }
    assert_eq!(validate("198.51.100.66", &code).await.status(), 429);
    // The owner's client still has its share.
    assert_eq!(validate("203.0.113.5", &code).await.status(), 200);
}

#[tokio::test]
async fn every_forwarded_for_line_is_read_and_the_proxys_own_entry_wins() {
    let app = spawn_app_with(Mail::Starttls, proxied(|s| s.limits.client_requests = 2)).await;
    let send = |spoofed: String| {
        app.client
            .post(app.url("/api/accounts/resend-otp/"))
            .header("x-forwarded-for", spoofed)
            // The proxy appends its own line; the client wrote the first one.
            .header("x-forwarded-for", "198.51.100.77")
            .json(&json!({"email": unique_email()}))
            .send()
    };
    assert_eq!(send("1.1.1.1".into()).await.unwrap().status(), 200);
    assert_eq!(send("2.2.2.2".into()).await.unwrap().status(), 200);
    assert_eq!(
        send("3.3.3.3".into()).await.unwrap().status(),
        429,
        "a client rotating the first line is still one client"
    );
}

#[tokio::test]
async fn ipv6_clients_are_counted_by_their_64() {
    let app = spawn_app_with(Mail::Starttls, proxied(|s| s.limits.client_requests = 2)).await;
    let mut statuses = Vec::new();
    for host in ["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:ffff::3"] {
        let response = app
            .post_from(
                host,
                "/api/accounts/resend-otp/",
                &json!({"email": unique_email()}),
            )
            .await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    let elsewhere = app
        .post_from(
            "2001:db8:5:7::1",
            "/api/accounts/resend-otp/",
            &json!({"email": unique_email()}),
        )
        .await;
    assert_eq!(elsewhere.status(), 200, "another /64 is another client");
}

#[tokio::test]
async fn responses_that_carry_tokens_are_never_cached() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    let verified = app.validate(&email, &code).await;
    assert_eq!(verified.headers()["cache-control"], "no-store");
    let login = app.login(&email, PASSWORD).await;
    assert_eq!(login.headers()["cache-control"], "no-store");
    let tokens = json_of(login, 200).await;
    let refreshed = app.refresh(&tokens["refresh"]).await;
    assert_eq!(refreshed.status(), 200);
    assert_eq!(refreshed.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_refreshed() {
    let app = spawn_app_with(Mail::Starttls, |s| s.jwt.session_max_seconds = 3.into()).await;
    let email = unique_email();
    let mut tokens = app.verified_user(&email).await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let refreshed = app.refresh(&tokens["refresh"]).await;
        tokens = json_of(refreshed, 200).await;
    }
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let ended = app.refresh(&tokens["refresh"]).await;
    assert_eq!(ended.status(), 401, "the session reached its end");
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        200,
        "a new login starts a new one"
    );
}
