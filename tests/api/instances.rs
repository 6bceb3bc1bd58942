//! Several instances on one database server (PostgreSQL, or MariaDB when the suite runs
//! on it), and PostgreSQL going away.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{
    Backend, Mail, OwnServer, PASSWORD, TestDatabase, spawn_app_with, start_instance, unique_email,
};

/// A database the instances share: on MariaDB when the suite runs on it, else on
/// PostgreSQL (SQLite is one instance's file).
async fn shared_database() -> TestDatabase {
    match crate::helpers::backend() {
        Backend::Mariadb => TestDatabase::mariadb("api").await,
        Backend::Postgres | Backend::Sqlite => TestDatabase::create("api").await,
    }
}

/// Two instances (same settings, one database); returns (first, second) base URLs.
/// The database goes with the third value.
async fn two_instances() -> (crate::helpers::TestApp, String, TestDatabase) {
    let database = shared_database().await;
    let url = database.url().to_owned();
    let app = spawn_app_with(Mail::Starttls, |s| s.database.url = url).await;
    let second = start_instance(app.settings.clone()).await;
    (app, second, database)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_right_codes_over_two_instances_give_exactly_one_success() {
    let (app, second, _database) = two_instances().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    let requests = (0..20).map(|i| {
        let base = if i % 2 == 0 {
            app.address.clone()
        } else {
            second.clone()
        };
        let body = json!({"email": email, "otp": code});
        let client = app.client.clone();
        async move {
            let send = || async {
                let response = client
                    .post(format!("{base}/api/accounts/validate-otp/"))
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                let retry_after = response.headers().contains_key("retry-after");
                (response.status().as_u16(), retry_after)
            };
            let (status, retry_after) = send().await;
            if status != 503 {
                return (status, None);
            }
            // On MariaDB, InnoDB may end a transaction that waits in a cycle of row
            // locks (a deadlock victim): a 503 with Retry-After, which changed
            // nothing. Sent again, it is answered like the others.
            assert!(retry_after, "a 503 says when to retry");
            tokio::time::sleep(Duration::from_millis(200)).await;
            (status, Some(send().await.0))
        }
    });
    let answers = join_all(requests).await;
    let statuses: Vec<u16> = answers.iter().map(|(first, _)| *first).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{answers:?}"
    );
    let unavailable: Vec<Option<u16>> = answers
        .iter()
        .filter(|(first, _)| *first == 503)
        .map(|(_, again)| *again)
        .collect();
    assert!(
        matches!(crate::helpers::backend(), Backend::Mariadb) || unavailable.is_empty(),
        "503 only as MariaDB's deadlock victim: {answers:?}"
    );
    assert!(unavailable.len() <= 2, "{answers:?}");
    assert!(
        unavailable.iter().all(|again| *again == Some(400)),
        "a retried request finds the code used: {answers:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 400).count() + unavailable.len(),
        19,
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tries_over_two_instances_are_all_counted() {
    let (app, second, _database) = two_instances().await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for i in 0..5 {
        let base = if i % 2 == 0 { &app.address } else { &second };
        let response = app
            .client
            .post(format!("{base}/api/accounts/validate-otp/"))
            .json(&json!({"email": email, "otp": wrong}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400);
    }
    // The sixth try is refused, whichever instance gets it.
    for base in [&second, &app.address] {
        let response = app
            .client
            .post(format!("{base}/api/accounts/validate-otp/"))
            .json(&json!({"email": email, "otp": code}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{base}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_on_an_empty_database_all_start() {
    let database = shared_database().await;
    let url = database.url().to_owned();
    let app = spawn_app_with(Mail::Starttls, |s| s.database.url = url).await;
    let more = join_all((0..3).map(|_| start_instance(app.settings.clone()))).await;
    for base in more {
        let response = app
            .client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_postgres_answers_503_quickly_and_the_service_recovers_by_itself() {
    database_down_answers_503_quickly_and_the_service_recovers_by_itself(OwnServer::postgres())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_mariadb_answers_503_quickly_and_the_service_recovers_by_itself() {
    database_down_answers_503_quickly_and_the_service_recovers_by_itself(OwnServer::mariadb())
        .await;
}

async fn database_down_answers_503_quickly_and_the_service_recovers_by_itself(server: OwnServer) {
    let url = server.url();
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.database.url = url;
        s.database.acquire_timeout_seconds = 2.into();
    })
    .await;
    let email = unique_email();
    app.verified_user(&email).await;

    server.stop();
    let started = Instant::now();
    let response = app.login(&email, PASSWORD).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered within the timeout"
    );
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "service_unavailable", "{body}");
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("request");
    assert_eq!(ready.status(), 503);
    let register = app.register(&unique_email()).await;
    assert_eq!(register.status(), 503);

    server.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = app
            .client
            .get(app.url("/health/ready"))
            .send()
            .await
            .expect("request");
        if ready.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        200,
        "no restart needed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_guessing_budget_and_the_resend_cooldown() {
    let database = shared_database().await;
    let url = database.url().to_owned();
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.database.url = url;
        s.limits.guess_budget = 10;
        s.limits.resend_cooldown_seconds = 60.into();
    })
    .await;
    let second = start_instance(app.settings.clone()).await;
    let post = |base: &str, path: &str, body: serde_json::Value| {
        app.client.post(format!("{base}{path}")).json(&body).send()
    };
    let email = unique_email();
    assert_eq!(app.register(&email).await.status(), 201);
    let code = app.next_code(&email).await;
    // The cooldown started on the first instance holds on the second.
    let resend = post(
        &second,
        "/api/accounts/resend-otp/",
        json!({"email": email}),
    )
    .await
    .expect("request");
    assert_eq!(resend.status(), 429);

    let wrong = if code == "000000" { "000001" } else { "000000" };
    for i in 0..10 {
        let base = if i % 2 == 0 { &app.address } else { &second };
        let response = post(
            base,
            "/api/accounts/validate-otp/",
            json!({"email": email, "otp": wrong}),
        )
        .await;
        assert_eq!(response.expect("request").status(), 400);
    }
    for base in [&app.address, &second] {
        let response = post(
            base,
            "/api/accounts/validate-otp/",
            json!({"email": email, "otp": code}),
        )
        .await;
        assert_eq!(response.expect("request").status(), 429, "{base}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_draining_one_outbox_deliver_every_mail_once() {
    let mut smtp = crate::helpers::ControlledSmtp::down("accept");
    let database = shared_database().await;
    let url = database.url().to_owned();
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.database.url = url;
        smtp.configure(s);
        s.mail.outbox.max_attempts = 50;
    })
    .await;
    let _second = start_instance(app.settings.clone()).await;
    let emails: Vec<String> = (0..30).map(|_| unique_email()).collect();
    for email in &emails {
        assert_eq!(app.register(email).await.status(), 201);
    }
    // Both workers now race for the same 30 queued messages.
    smtp.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while smtp.received().len() < 30 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = smtp.received();
    let mut per_recipient = std::collections::HashMap::<String, usize>::new();
    for mail in &received {
        *per_recipient.entry(mail.to.clone()).or_default() += 1;
    }
    for email in &emails {
        assert_eq!(per_recipient.get(email), Some(&1), "{email}");
    }
    assert_eq!(received.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_database_with_secrets_generated_by_this_instance_warns_at_start() {
    let database = shared_database().await;
    let url = database.url().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, lines) =
        crate::cli::serve(dir.path(), &[("APP__DATABASE__URL", url.as_str())]).await;
    let log = crate::cli::lines_within(&lines, Duration::from_millis(500));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(log.contains("secret generated by this instance"), "{log}");
    assert!(log.contains("otp.secret, jwt.private_key_file"), "{log}");

    // With both configured, as every instance should be: no warning.
    let key = dir.path().join("data/jwt-ed25519.pem");
    let (mut child, _, lines) = crate::cli::serve(
        dir.path(),
        &[
            ("APP__DATABASE__URL", url.as_str()),
            (
                "APP__OTP__SECRET",
                "a shared secret of at least thirty-two characters",
            ),
            ("APP__JWT__PRIVATE_KEY_FILE", key.to_str().unwrap()),
        ],
    )
    .await;
    let log = crate::cli::lines_within(&lines, Duration::from_millis(500));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(log.contains("passcode is listening"), "{log}");
    assert!(!log.contains("generated by this instance"), "{log}");
}
