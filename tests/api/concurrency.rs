//! The guarantees that must hold under concurrent requests.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{Mail, spawn_app, spawn_app_with, unique_email};
use passcode_app::settings::PolicySetting;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_right_codes_give_exactly_one_success() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    let statuses: Vec<u16> = join_all((0..20).map(|_| app.validate(&email, &code)))
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 400).count(),
        19,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_tries_are_all_counted() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let statuses: Vec<u16> = join_all((0..10).map(|_| app.validate(&email, wrong)))
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(statuses.iter().all(|&s| s == 400), "{statuses:?}");
    assert_eq!(
        app.validate(&email, &code).await.status(),
        400,
        "the code died after 5 wrong tries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_registrations_of_one_address_make_one_account() {
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.registration.policy = PolicySetting::TokensBeforeVerification;
    })
    .await;
    let email = unique_email();
    let statuses: Vec<u16> = join_all((0..10).map(|_| app.register(&email)))
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 400).count(),
        9,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_registrations_in_default_policy_all_answer_201() {
    let app = spawn_app().await;
    let email = unique_email();
    let statuses: Vec<u16> = join_all((0..10).map(|_| app.register(&email)))
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(statuses.iter().all(|&s| s == 201), "{statuses:?}");
    // Ten mails went out (one signup, nine resends). Arrival order need not be issue
    // order, so ask once more: that code is the one live code of the one account.
    for _ in 0..10 {
        app.next_mail(&email).await;
    }
    let resend = app.resend(&email).await;
    assert_eq!(resend.status(), 200);
    let code = app.next_code(&email).await;
    assert_eq!(app.validate(&email, &code).await.status(), 200);
    let login = app
        .post(
            "/api/accounts/token/",
            &json!({"email": email, "password": crate::helpers::PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flood_past_the_hashing_queue_gets_503_not_a_hang() {
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.hashing.max_concurrent = 1;
        s.hashing.max_queued = 1;
        s.hashing.memory_kib = 64 * 1024;
        s.hashing.iterations = 3;
    })
    .await;
    let emails: Vec<String> = (0..12).map(|_| unique_email()).collect();
    let started = std::time::Instant::now();
    let responses = join_all(
        emails
            .iter()
            .map(|email| app.login(email, "some password 123")),
    )
    .await;
    let mut statuses = Vec::new();
    for response in responses {
        let status = response.status().as_u16();
        if status == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["code"], "service_busy");
        }
        statuses.push(status);
    }
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "12 logins into 2 places: some are shed, {statuses:?}"
    );
    assert!(
        statuses.contains(&401),
        "admitted logins complete, {statuses:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
