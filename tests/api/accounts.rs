//! Deleting the account: by its owner (with the password) and by an operator.

use serde_json::{Value, json};

use crate::helpers::{Cli, PASSWORD, TestApp, json_of, spawn_app, unique_email};

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
    let refresh = app.refresh(&tokens["refresh"]).await;
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
        let again = app.refresh(&pair["refresh"]).await;
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
    let out = app.cli(&["users", "delete", &email]).output().unwrap();
    assert!(!out.status.success(), "no such account any more");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account"));
}

async fn request_sign_in(app: &TestApp, email: &str) -> reqwest::Response {
    app.post("/api/accounts/sign-in/code/", &json!({ "email": email }))
        .await
}

async fn sign_in(app: &TestApp, email: &str, code: &str) -> reqwest::Response {
    app.post(
        "/api/accounts/sign-in/",
        &json!({ "email": email, "otp": code }),
    )
    .await
}

#[tokio::test]
async fn a_mailed_code_signs_in_once_and_answers_alike_for_any_address() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    let known = json_of(request_sign_in(&app, &email).await, 200).await;
    let unknown = json_of(request_sign_in(&app, &unique_email()).await, 200).await;
    assert_eq!(known, unknown, "the same answer for any address");
    let mail = app.next_mail(&email).await;
    assert!(mail.subject.contains("sign-in code"), "{}", mail.subject);
    let code = mail.code().unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(
        json_of(sign_in(&app, &email, wrong).await, 400).await["code"],
        "otp_invalid"
    );
    let signed_in = sign_in(&app, &email, &code).await;
    assert_eq!(signed_in.headers()["cache-control"], "no-store");
    let tokens = json_of(signed_in, 200).await;
    assert_eq!(me(&app, &tokens["access"]).await, 200);
    assert_eq!(
        sign_in(&app, &email, &code).await.status(),
        400,
        "once only"
    );
    assert_eq!(sign_in(&app, &unique_email(), &code).await.status(), 400);
}

#[tokio::test]
async fn sign_in_codes_and_verification_codes_do_not_stand_in_for_each_other() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let verification = app.next_code(&email).await;
    assert_eq!(sign_in(&app, &email, &verification).await.status(), 400);
    request_sign_in(&app, &email).await;
    let sign_in_code = app.next_code(&email).await;
    if sign_in_code != verification {
        assert_eq!(app.validate(&email, &sign_in_code).await.status(), 400);
    }
    assert_eq!(app.validate(&email, &verification).await.status(), 200);
}

/// Someone registered the owner's address with a password of theirs; the owner signs
/// in by code: the address is verified and that password no longer works.
#[tokio::test]
async fn signing_in_by_code_verifies_the_address_and_clears_an_unverified_password() {
    let app = spawn_app().await;
    let email = unique_email();
    let theirs = "mallory's own password 42";
    let registered = app
        .post(
            "/api/accounts/create/",
            &json!({"full_name": "Mallory", "email": email, "password": theirs}),
        )
        .await;
    assert_eq!(registered.status(), 201);
    let _their_code = app.next_code(&email).await;
    request_sign_in(&app, &email).await;
    let code = app.next_code(&email).await;
    let tokens = json_of(sign_in(&app, &email, &code).await, 200).await;
    let account = app
        .client
        .get(app.url("/api/accounts/me/"))
        .bearer_auth(tokens["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(account, 200).await["email_verified"], true);
    assert_eq!(
        app.login(&email, theirs).await.status(),
        401,
        "their password is gone"
    );
    // The pending registration's code died with it.
    // The owner chooses a password by reset.
    app.post("/api/accounts/password-reset/", &json!({"email": email}))
        .await;
    let reset = app.next_code(&email).await;
    let confirmed = app
        .post(
            "/api/accounts/password-reset/confirm/",
            &json!({"email": email, "otp": reset, "new_password": PASSWORD}),
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn sign_in_by_code_can_be_turned_off() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Mail::Starttls, |s| {
        s.registration.sign_in_by_code = false;
    })
    .await;
    let email = unique_email();
    app.verified_user(&email).await;
    assert_eq!(request_sign_in(&app, &email).await.status(), 404);
    assert_eq!(sign_in(&app, &email, "123456").await.status(), 404);
}

/// An account without a password (its unverified registration's password was cleared
/// by a code sign-in) confirms its deletion with a fresh sign-in code.
#[tokio::test]
async fn an_account_without_a_password_deletes_itself_with_a_fresh_code() {
    let app = spawn_app().await;
    let email = unique_email();
    let theirs = "mallory's own password 42";
    app.post(
        "/api/accounts/create/",
        &json!({"full_name": "Mallory", "email": email, "password": theirs}),
    )
    .await;
    let _their_code = app.next_code(&email).await;
    request_sign_in(&app, &email).await;
    let code = app.next_code(&email).await;
    let tokens = json_of(sign_in(&app, &email, &code).await, 200).await;
    // No password to give: the cleared one does not count.
    assert_eq!(delete(&app, &tokens["access"], theirs).await.status(), 400);
    request_sign_in(&app, &email).await;
    let fresh = app.next_code(&email).await;
    let deleted = app
        .client
        .post(app.url("/api/accounts/delete/"))
        .bearer_auth(tokens["access"].as_str().unwrap())
        .json(&json!({ "otp": fresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(me(&app, &tokens["access"]).await, 401);
}

async fn login_as(app: &TestApp, email: &str, agent: &str) -> Value {
    let response = app
        .client
        .post(app.url("/api/accounts/token/"))
        .header("user-agent", agent)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    json_of(response, 200).await
}

async fn sessions_of(app: &TestApp, access: &Value) -> Vec<Value> {
    let response = app
        .client
        .get(app.url("/api/accounts/sessions/"))
        .bearer_auth(access.as_str().unwrap())
        .send()
        .await
        .unwrap();
    json_of(response, 200).await["sessions"]
        .as_array()
        .unwrap()
        .clone()
}

async fn refresh_status(app: &TestApp, refresh: &Value) -> u16 {
    app.refresh(&refresh).await.status().as_u16()
}

#[tokio::test]
async fn sessions_are_listed_with_where_they_came_from_and_can_be_ended() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await; // a first session, from verification
    let laptop = login_as(&app, &email, "Laptop browser").await;
    let phone = login_as(&app, &email, "Phone app").await;

    let listed = sessions_of(&app, &phone["access"]).await;
    assert_eq!(listed.len(), 3);
    let current: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["created_user_agent"], "Phone app");
    assert_eq!(current[0]["created_client"], "127.0.0.1");
    let laptop_id = listed
        .iter()
        .find(|s| s["created_user_agent"] == "Laptop browser")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Someone else cannot end it.
    let other = unique_email();
    let theirs = app.verified_user(&other).await;
    let refused = app
        .client
        .delete(app.url(&format!("/api/accounts/sessions/{laptop_id}/")))
        .bearer_auth(theirs["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    assert_eq!(refresh_status(&app, &laptop["refresh"]).await, 200);

    // Its owner can; the refreshed laptop session is still the same session.
    let ended = app
        .client
        .delete(app.url(&format!("/api/accounts/sessions/{laptop_id}/")))
        .bearer_auth(phone["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    assert_eq!(sessions_of(&app, &phone["access"]).await.len(), 2);
    let gone = app
        .client
        .delete(app.url("/api/accounts/sessions/not-a-session/"))
        .bearer_auth(phone["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // Every other session ends; the caller's stays.
    let others = app
        .client
        .post(app.url("/api/accounts/sessions/end-others/"))
        .bearer_auth(phone["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(others, 200).await["ended"], 1);
    let left = sessions_of(&app, &phone["access"]).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["current"], true);
    assert_eq!(refresh_status(&app, &phone["refresh"]).await, 200);
}

#[tokio::test]
async fn a_refresh_is_the_sessions_last_use() {
    let app = spawn_app().await;
    let email = unique_email();
    app.verified_user(&email).await;
    let first = login_as(&app, &email, "Old agent").await;
    let response = app
        .client
        .post(app.url("/api/accounts/token/refresh/"))
        .header("user-agent", "New agent")
        .json(&json!({"refresh": first["refresh"]}))
        .send()
        .await
        .unwrap();
    let next = json_of(response, 200).await;
    let listed = sessions_of(&app, &next["access"]).await;
    let current = listed.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(current["created_user_agent"], "Old agent");
    assert_eq!(current["last_user_agent"], "New agent");
}

async fn ask_to_move(
    app: &TestApp,
    access: &Value,
    new_email: &str,
    password: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/accounts/change-email/"))
        .bearer_auth(access.as_str().unwrap())
        .json(&json!({"new_email": new_email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn confirm_move(
    app: &TestApp,
    access: &Value,
    new_email: &str,
    code: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/accounts/change-email/confirm/"))
        .bearer_auth(access.as_str().unwrap())
        .json(&json!({"new_email": new_email, "otp": code}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_account_moves_to_a_new_address_with_the_code_sent_there() {
    let app = spawn_app().await;
    let (old, new) = (unique_email(), unique_email());
    app.verified_user(&old).await;
    let other_session = login_as(&app, &old, "Other device").await;
    let current = login_as(&app, &old, "This device").await;
    let wrong = json_of(
        ask_to_move(&app, &current["access"], &new, "not my password 1").await,
        400,
    )
    .await;
    assert_eq!(
        wrong["fields"]["password"][0],
        "Your password was entered incorrectly."
    );
    assert_eq!(
        ask_to_move(&app, &current["access"], &new, PASSWORD)
            .await
            .status(),
        200
    );
    let notice = app.next_mail(&old).await;
    assert!(
        notice.subject.contains("change of your"),
        "{}",
        notice.subject
    );
    assert!(notice.code().is_none(), "no code to the old address");
    let code = app.next_code(&new).await;
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(
        confirm_move(&app, &current["access"], &new, wrong_code)
            .await
            .status(),
        400
    );
    assert_eq!(
        confirm_move(&app, &current["access"], &new, &code)
            .await
            .status(),
        200
    );
    assert_eq!(
        confirm_move(&app, &current["access"], &new, &code)
            .await
            .status(),
        400,
        "once"
    );

    let changed = app.next_mail(&old).await;
    assert!(
        changed.subject.contains("was changed"),
        "{}",
        changed.subject
    );
    let account = app
        .client
        .get(app.url("/api/accounts/me/"))
        .bearer_auth(current["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(account, 200).await["email"], new.as_str());
    assert_eq!(app.login(&new, PASSWORD).await.status(), 200);
    assert_eq!(app.login(&old, PASSWORD).await.status(), 401);
    assert_eq!(
        refresh_status(&app, &other_session["refresh"]).await,
        401,
        "other sessions end"
    );
    assert_eq!(
        refresh_status(&app, &current["refresh"]).await,
        200,
        "the caller's stays"
    );
}

#[tokio::test]
async fn a_taken_new_address_is_never_revealed_and_gets_no_code() {
    let app = spawn_app().await;
    let (mine, theirs) = (unique_email(), unique_email());
    let me_tokens = app.verified_user(&mine).await;
    app.verified_user(&theirs).await;
    let free = unique_email();
    let taken = json_of(
        ask_to_move(&app, &me_tokens["access"], &theirs, PASSWORD).await,
        200,
    )
    .await;
    let open = json_of(
        ask_to_move(&app, &me_tokens["access"], &free, PASSWORD).await,
        200,
    )
    .await;
    assert_eq!(taken, open, "the same answer");
    app.next_code(&free).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let to_them = app.mails_to(&theirs);
    assert!(
        to_them
            .iter()
            .all(|m| m.code().is_none() || m.subject.contains("verification")),
        "no address-change code to an address that has an account"
    );
}

#[tokio::test]
async fn two_confirms_of_one_change_move_the_account_once_and_a_taken_address_is_refused() {
    let app = spawn_app().await;
    let (old, new) = (unique_email(), unique_email());
    let tokens = app.verified_user(&old).await;
    ask_to_move(&app, &tokens["access"], &new, PASSWORD).await;
    let code = app.next_code(&new).await;
    let (a, b) = tokio::join!(
        confirm_move(&app, &tokens["access"], &new, &code),
        confirm_move(&app, &tokens["access"], &new, &code)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400]);

    // Another account asks for an address that is then registered by someone else.
    let (second, wanted) = (unique_email(), unique_email());
    let second_tokens = app.verified_user(&second).await;
    ask_to_move(&app, &second_tokens["access"], &wanted, PASSWORD).await;
    let code = app.next_code(&wanted).await;
    app.verified_user(&wanted).await;
    let refused = json_of(
        confirm_move(&app, &second_tokens["access"], &wanted, &code).await,
        400,
    )
    .await;
    assert_eq!(refused["code"], "otp_invalid");
    assert_eq!(
        app.login(&second, PASSWORD).await.status(),
        200,
        "nothing moved"
    );
}
