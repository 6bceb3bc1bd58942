//! Operations: Prometheus metrics that move with what happens.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{Cli, Mail, PASSWORD, TestApp, spawn_app_with, unique_email};

/// The sum of the samples of `name` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let url = format!(
        "{}/metrics",
        app.metrics.as_ref().expect("metrics.listen is set")
    );
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    response.text().await.unwrap()
}

fn with_metrics(
    customize: impl FnOnce(&mut passcode_app::Settings),
) -> impl FnOnce(&mut passcode_app::Settings) {
    move |s| {
        s.metrics.listen = Some("127.0.0.1:0".into());
        customize(s);
    }
}

#[tokio::test]
async fn metrics_are_served_apart_and_move_with_requests_limits_reuse_and_mail() {
    let app = spawn_app_with(
        Mail::Starttls,
        with_metrics(|s| {
            s.limits.guess_budget_per_client = 1;
            s.jwt.refresh_reuse_grace_seconds = 0.into();
        }),
    )
    .await;
    // Not on the public port.
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let before = scrape(&app).await;
    let created = |t: &str| {
        sample(
            t,
            "passcode_http_requests_total",
            &[("route", "/api/accounts/create"), ("status", "201")],
        )
    };

    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    // A guessing-budget denial.
    let other = unique_email();
    app.register(&other).await;
    assert_eq!(app.validate(&other, "000000").await.status(), 400);
    assert_eq!(app.validate(&other, "000000").await.status(), 429);
    // A refresh-token reuse.
    let refresh = json!({"refresh": tokens["refresh"]});
    assert_eq!(
        app.post("/api/accounts/token/refresh/", &refresh)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        app.post("/api/accounts/token/refresh/", &refresh)
            .await
            .status(),
        401
    );
    app.next_mail(&other).await;

    let after = scrape(&app).await;
    assert!(
        created(&after) >= created(&before) + 2.0,
        "requests counted per route and status"
    );
    assert!(
        sample(
            &after,
            "passcode_http_request_duration_seconds_count",
            &[("route", "/api/accounts/validate-otp")]
        ) >= sample(
            &before,
            "passcode_http_request_duration_seconds_count",
            &[("route", "/api/accounts/validate-otp")]
        ) + 3.0,
        "latency histogram"
    );
    let denials = |t: &str| {
        sample(
            t,
            "passcode_throttle_denials_total",
            &[("limit", "guesses_per_client")],
        )
    };
    assert!(
        denials(&after) >= denials(&before) + 1.0,
        "throttle denials per limit"
    );
    let reuse = |t: &str| sample(t, "passcode_refresh_reuse_detected_total", &[]);
    assert!(reuse(&after) >= reuse(&before) + 1.0, "reuse detections");
    let sent = |t: &str| sample(t, "passcode_mail_sends_total", &[("result", "sent")]);
    assert!(sent(&after) >= sent(&before) + 2.0, "sends by result");
    for gauge in [
        "passcode_outbox_unsent",
        "passcode_outbox_oldest_unsent_age_seconds",
        "passcode_db_pool_max_connections",
        "passcode_db_shared_connections",
        "passcode_hashing_queue_depth",
    ] {
        assert!(
            after.contains(&format!("\n{gauge}")) || after.starts_with(gauge),
            "{gauge} is exported"
        );
    }
    assert!(sample(&after, "passcode_db_pool_max_connections", &[]) >= 1.0);
    // PostgreSQL's guesses went on a shared connection, beside the pool; the other
    // backends open none.
    let shared = sample(&after, "passcode_db_shared_connections", &[]);
    if matches!(crate::helpers::backend(), crate::helpers::Backend::Postgres) {
        assert!(shared >= 1.0, "{shared} shared connections");
    } else {
        assert!(shared == 0.0, "{shared} shared connections");
    }
    if matches!(crate::helpers::backend(), crate::helpers::Backend::Sqlite) {
        // A counted guess and two rotations went through SQLite's group commit.
        let batched = |t: &str| sample(t, "passcode_sqlite_batch_jobs_count", &[]);
        assert!(
            batched(&after) >= batched(&before) + 3.0,
            "SQLite's batches of writes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_rejections_are_counted() {
    let app = spawn_app_with(
        Mail::Starttls,
        with_metrics(|s| {
            s.hashing.max_concurrent = 1;
            s.hashing.max_queued = 1;
        }),
    )
    .await;
    let before = sample(
        &scrape(&app).await,
        "passcode_hashing_rejections_total",
        &[],
    );
    let email = unique_email();
    let logins = (0..12).map(|_| app.login(&email, PASSWORD));
    let busy = join_all(logins)
        .await
        .into_iter()
        .filter(|r| r.status() == 503)
        .count();
    assert!(busy > 0, "the flood overflowed the queue");
    let after = sample(
        &scrape(&app).await,
        "passcode_hashing_rejections_total",
        &[],
    );
    assert!(
        after >= before + busy as f64,
        "{before} -> {after}, {busy} refused"
    );
}

fn audit_cli(app: &TestApp, args: &[&str]) -> String {
    let out = app
        .cli(&[&["audit"], args].concat())
        .output()
        .expect("passcode audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The security events of a whole flow reach the audit trail with their client address
/// and request id, and `passcode audit` reads them back (text and JSON).
#[tokio::test]
async fn the_audit_trail_records_the_security_events_of_a_flow() {
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.jwt.refresh_reuse_grace_seconds = 0.into()
    })
    .await;
    let email = unique_email();
    let register = app.register(&email).await;
    let register_id = register.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let code = app.next_code(&email).await;
    assert_eq!(app.validate(&email, &code).await.status(), 200);
    assert_eq!(app.login(&email, "a wrong guess 12345").await.status(), 401);
    let tokens = crate::helpers::json_of(app.login(&email, PASSWORD).await, 200).await;
    let refresh = serde_json::json!({"refresh": tokens["refresh"]});
    assert_eq!(
        app.post("/api/accounts/token/refresh/", &refresh)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        app.post("/api/accounts/token/refresh/", &refresh)
            .await
            .status(),
        401
    );
    let fresh = crate::helpers::json_of(app.login(&email, PASSWORD).await, 200).await;
    let changed = app
        .client
        .post(app.url("/api/accounts/change-password/"))
        .bearer_auth(fresh["access"].as_str().unwrap())
        .json(&serde_json::json!({"old_password": PASSWORD, "new_password": "a brand new passphrase 7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    app.users_cli("deactivate", &email);

    let lines = audit_cli(&app, &["--email", &email, "--json"]);
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // Newest first.
    assert_eq!(
        kinds,
        [
            "deactivated",
            "password_changed",
            "login_succeeded",
            "refresh_reuse_detected",
            "login_succeeded",
            "login_failed",
            "verified",
            "registered"
        ],
        "{lines}"
    );
    let registered = events.last().unwrap();
    assert_eq!(registered["client"], "127.0.0.1");
    assert_eq!(
        registered["request_id"],
        register_id.as_str(),
        "the request id of X-Request-Id"
    );
    assert!(registered["user_id"].is_string());
    assert!(
        events[0]["client"].is_null(),
        "the command line has no client"
    );
    for secret in [PASSWORD, code.as_str(), tokens["refresh"].as_str().unwrap()] {
        assert!(!lines.contains(secret), "no secret in the audit trail");
    }
    let text = audit_cli(&app, &["--email", &email, "--since", "1h"]);
    assert!(
        text.contains("refresh_reuse_detected") && text.contains("client=127.0.0.1"),
        "{text}"
    );
    assert!(
        audit_cli(&app, &["--email", &email, "--since", "2999-01-01"]).contains("no audit events")
    );
}

/// The whole flow against the real binary logging at `debug` (every crate, the
/// database driver and the SMTP client included): no password, code, token or mail
/// body reaches the log at any level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_even_at_debug() {
    let servers = crate::helpers::smtp();
    let dir = tempfile::tempdir().unwrap();
    let port = servers.starttls_port.to_string();
    let ca = servers.ca_file.to_string_lossy().into_owned();
    let mut envs = vec![
        ("APP__LOG__LEVEL", "debug"),
        ("APP__MAIL__TRANSPORT", "smtp"),
        ("APP__MAIL__SMTP__HOST", "localhost"),
        ("APP__MAIL__SMTP__PORT", port.as_str()),
        ("APP__MAIL__SMTP__TLS", "starttls"),
        ("APP__MAIL__SMTP__USERNAME", crate::helpers::SMTP_USER),
        ("APP__MAIL__SMTP__PASSWORD", crate::helpers::SMTP_PASSWORD),
        ("APP__MAIL__SMTP__CA_FILE", ca.as_str()),
    ];
    let database = crate::helpers::server_database().await;
    if let Some(database) = &database {
        envs.push(("APP__DATABASE__URL", database.url()));
    }
    let (mut child, base, lines) = crate::cli::serve(dir.path(), &envs).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |path: &str, body: serde_json::Value, bearer: Option<String>| {
        let mut request = client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let email = crate::helpers::unique_email();
    let password = "a secret passphrase 4711";
    let new_password = "another secret passphrase 0815";
    let created = post(
        "/api/accounts/create/",
        serde_json::json!({"full_name": "Ada Lovelace", "email": email, "password": password}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let maildir = servers.dir.join("starttls");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mail = loop {
        if let Some(mail) = crate::helpers::mails_in(&maildir, &email).pop() {
            break mail;
        }
        assert!(std::time::Instant::now() < deadline, "no mail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let code = mail.code().unwrap();
    let verified: serde_json::Value = post(
        "/api/accounts/validate-otp/",
        serde_json::json!({"email": email, "otp": code, "password": password}),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let access = verified["token"]["access"].as_str().unwrap().to_owned();
    let refresh = verified["token"]["refresh"].as_str().unwrap().to_owned();
    let refreshed: serde_json::Value = post(
        "/api/accounts/token/refresh/",
        serde_json::json!({"refresh": refresh}),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let wrong = post(
        "/api/accounts/token/",
        serde_json::json!({"email": email, "password": "a wrong guess 123"}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), 401);
    let changed = post(
        "/api/accounts/change-password/",
        serde_json::json!({"old_password": password, "new_password": new_password}),
        Some(refreshed["access"].as_str().unwrap().to_owned()),
    )
    .await
    .unwrap();
    assert_eq!(changed.status(), 200);
    // Let the worker send the password-changed notice and log whatever it logs.
    let log = crate::cli::lines_within(&lines, Duration::from_secs(2));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(log.contains("DEBUG"), "the log ran at debug");
    assert!(log.contains("route=/api/accounts/validate-otp"), "{log}");
    let body_line = mail
        .text
        .lines()
        .find(|line| line.len() > 20 && !line.contains(&code))
        .unwrap_or("Your verification code")
        .to_owned();
    for (what, secret) in [
        ("password", password),
        ("new password", new_password),
        ("wrong password", "a wrong guess 123"),
        ("code", code.as_str()),
        ("access token", access.as_str()),
        ("refresh token", refresh.as_str()),
        (
            "refreshed access token",
            refreshed["access"].as_str().unwrap(),
        ),
        (
            "refreshed refresh token",
            refreshed["refresh"].as_str().unwrap(),
        ),
        ("SMTP password", crate::helpers::SMTP_PASSWORD),
        ("mail body", body_line.as_str()),
    ] {
        assert!(!log.contains(secret), "the {what} reached the log");
    }
}

/// A login whose session cannot be written (another writer holds the store past the
/// app's timeout) answers 503. Its tries cannot be given back at once either, as the
/// store is still held: they are queued and given back once it is free, so the
/// client's budget (one failure here) is whole again, and the metric counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_failed_on_a_busy_store_gets_its_tries_back_later() {
    let app = spawn_app_with(
        Mail::Starttls,
        with_metrics(|s| {
            s.limits.login_failures = 1;
            s.limits.login_failures_per_client = 1;
            s.database.busy_timeout_ms = 300.into();
            s.database.statement_timeout_seconds = 1.into();
            // A hash long enough (about 0.3 s) for the test to take the store
            // between the login's reservation and its session.
            s.hashing.iterations = 40;
        }),
    )
    .await;
    // The recorder is the process's: other tests count too.
    let later = |metrics: &str| sample(metrics, "passcode_give_backs_total", &[("when", "later")]);
    let before = later(&scrape(&app).await);
    let email = unique_email();
    app.verified_user(&email).await;
    let mut database = app.database().await;
    let reserved = format!(
        "SELECT COUNT(*) AS n FROM rate_limits WHERE bucket LIKE 'login:{email}%' AND count > 0"
    );

    let (answer, ()) = tokio::join!(app.login(&email, PASSWORD), async {
        database
            .wait_for_count(&reserved, 2, "the login's two budgets reserved")
            .await;
        database.hold_writes(&["rate_limits", "sessions"]).await;
    });
    assert_eq!(answer.status(), 503, "{:?}", answer.text().await);
    assert!(answer.headers().contains_key("retry-after"));
    assert_eq!(
        database.count(&reserved).await,
        2,
        "nothing could be given back while the store was held"
    );
    database.release().await;

    database
        .wait_for_count(&reserved, 0, "the tries given back later")
        .await;
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        200,
        "the budget of one failure is whole again"
    );
    let after = later(&scrape(&app).await);
    assert!(
        after >= before + 1.0,
        "given back later: {before} -> {after}"
    );
}
