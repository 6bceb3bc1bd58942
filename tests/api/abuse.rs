//! Abuse resistance through HTTP: the guessing budget, resend cooldown and cap,
//! per-client limits, identical answers, login timing, and floods.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{Mail, TestApp, json_of, spawn_app_with, unique_email};

fn wrong_for(code: &str) -> &'static str {
    if code == "000000" { "000001" } else { "000000" }
}

/// Default guessing budget (10 per hour) and the default resend cooldown turned off.
async fn budget_app() -> TestApp {
    spawn_app_with(Mail::Starttls, |s| {
        s.limits.guess_budget = 10;
        s.limits.guess_budget_per_client = 10;
    })
    .await
}

async fn expect_throttled(response: reqwest::Response) -> (u64, Value) {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    let body = json_of(response, 429).await;
    assert_eq!(
        body,
        json!({"error": "Too many requests. Try again later.", "code": "throttled"})
    );
    (retry_after, body)
}

#[tokio::test]
async fn guessing_budget_is_not_reset_by_new_codes() {
    let app = budget_app().await;
    let email = unique_email();
    app.register(&email).await;
    let first = app.next_code(&email).await;
    for _ in 0..5 {
        assert_eq!(app.validate(&email, wrong_for(&first)).await.status(), 400);
    }
    let resend = app.resend(&email).await;
    assert_eq!(resend.status(), 200);
    let second = app.next_code(&email).await;
    for _ in 0..5 {
        assert_eq!(app.validate(&email, wrong_for(&second)).await.status(), 400);
    }
    // Ten wrong tries spent across two codes: even the right, fresh code is refused.
    let (retry_after, _) = expect_throttled(app.validate(&email, &second).await).await;
    assert!((3_500..=3_600).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn guessing_budget_answers_the_same_for_unknown_addresses() {
    let app = budget_app().await;
    let known = unique_email();
    app.register(&known).await;
    let code = app.next_code(&known).await;
    let unknown = unique_email();
    for _ in 0..10 {
        let a = json_of(app.validate(&known, wrong_for(&code)).await, 400).await;
        let b = json_of(app.validate(&unknown, wrong_for(&code)).await, 400).await;
        assert_eq!(a, b);
    }
    let (_, known_body) = expect_throttled(app.validate(&known, &code).await).await;
    let (_, unknown_body) = expect_throttled(app.validate(&unknown, &code).await).await;
    assert_eq!(known_body, unknown_body);
}

#[tokio::test]
async fn a_right_code_does_not_spend_the_budget() {
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.limits.guess_budget = 1;
        s.limits.guess_budget_per_client = 1;
    })
    .await;
    let email = unique_email();
    app.register(&email).await;
    let code = app.next_code(&email).await;
    assert_eq!(app.validate(&email, &code).await.status(), 200);
    // The one try of the budget is still there.
    assert_eq!(app.validate(&email, "123456").await.status(), 400);
    assert_eq!(app.validate(&email, "123456").await.status(), 429);
}

#[tokio::test]
async fn resend_cooldown_is_identical_for_known_and_unknown_addresses_and_mails_nothing() {
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.limits.resend_cooldown_seconds = 60.into()
    })
    .await;
    let known = unique_email();
    assert_eq!(app.register(&known).await.status(), 201);
    app.next_mail(&known).await;
    let unknown = unique_email();
    assert_eq!(app.resend(&unknown).await.status(), 200);

    let (known_wait, known_body) = expect_throttled(app.resend(&known).await).await;
    let (unknown_wait, unknown_body) = expect_throttled(app.resend(&unknown).await).await;
    assert_eq!(known_body, unknown_body);
    assert!((55..=60).contains(&known_wait) && (55..=60).contains(&unknown_wait));
    // Registering again is a resend too.
    expect_throttled(app.register(&known).await).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.mails_to(&known).len(), 1, "no mail while throttled");
}

#[tokio::test]
async fn resend_cap_limits_mails_per_hour() {
    let app = spawn_app_with(Mail::Starttls, |s| s.limits.resend_cap = 3).await;
    let email = unique_email();
    app.register(&email).await;
    for _ in 0..2 {
        // Each mail is out before the next code replaces it (a replaced code's waiting
        // mail is dropped).
        app.next_mail(&email).await;
        assert_eq!(app.resend(&email).await.status(), 200);
    }
    let (retry_after, _) = expect_throttled(app.resend(&email).await).await;
    assert!((3_500..=3_600).contains(&retry_after), "{retry_after}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.mails_to(&email).len(), 3);
}

#[tokio::test]
async fn each_client_address_is_limited_per_endpoint() {
    let app = spawn_app_with(Mail::Starttls, |s| s.limits.client_requests = 5).await;
    for _ in 0..5 {
        assert_eq!(
            app.login(&unique_email(), "some password 123")
                .await
                .status(),
            401
        );
    }
    expect_throttled(app.login(&unique_email(), "some password 123").await).await;
    // Malformed requests count too, and the limit is per endpoint.
    assert_eq!(app.resend(&unique_email()).await.status(), 200);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let app = spawn_app_with(Mail::Starttls, |s| s.limits.client_requests = 2).await;
    let login = |client: &'static str| {
        app.client
            .post(app.url("/api/accounts/token/"))
            .header("x-forwarded-for", client)
            .json(&json!({"email": unique_email(), "password": "some password 123"}))
            .send()
    };
    // Not trusted: the header is ignored, all three come from 127.0.0.1.
    assert_eq!(login("198.51.100.1").await.unwrap().status(), 401);
    assert_eq!(login("198.51.100.2").await.unwrap().status(), 401);
    assert_eq!(login("198.51.100.3").await.unwrap().status(), 429);

    let proxied = spawn_app_with(Mail::Starttls, |s| {
        s.limits.client_requests = 2;
        s.limits.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let login = |client: &'static str| {
        proxied
            .client
            .post(proxied.url("/api/accounts/token/"))
            .header("x-forwarded-for", client)
            .json(&json!({"email": unique_email(), "password": "some password 123"}))
            .send()
    };
    for client in [
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.2",
    ] {
        assert_eq!(login(client).await.unwrap().status(), 401, "{client}");
    }
    assert_eq!(login("198.51.100.1").await.unwrap().status(), 429);
}

#[tokio::test]
async fn validate_answers_the_same_for_verified_unknown_and_pending_addresses() {
    let app = budget_app().await;
    let verified = unique_email();
    app.verified_user(&verified).await;
    let pending = unique_email();
    app.register(&pending).await;
    let code = app.next_code(&pending).await;
    let mut bodies = Vec::new();
    for email in [&verified, &unique_email(), &pending] {
        bodies.push(json_of(app.validate(email, wrong_for(&code)).await, 400).await);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test]
async fn weak_passwords_are_refused_with_a_field_error() {
    let app = budget_app().await;
    let email = unique_email();
    for password in ["password123", "qwertyuiop", "adalovelace"] {
        let response = app
            .post(
                "/api/accounts/create/",
                &json!({"email": email, "full_name": "Ada Lovelace", "password": password}),
            )
            .await;
        let body = json_of(response, 400).await;
        assert_eq!(body["code"], "validation_error");
        let why = body["fields"]["password"][0].as_str().expect("message");
        assert!(
            why.starts_with("This password is too easy to guess."),
            "{why}"
        );
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_takes_as_long_for_unknown_addresses_as_for_known_ones() {
    let app = budget_app().await;
    let known = unique_email();
    app.verified_user(&known).await;
    // Other tests load the machine at random; a round is 20 interleaved pairs (the
    // order alternating), and up to three rounds are tried before the test fails.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (mut known_times, mut unknown_times) = (Vec::new(), Vec::new());
        for i in 0..20 {
            for known_first in [i % 2 == 0, i % 2 != 0] {
                let email = if known_first {
                    known.clone()
                } else {
                    unique_email()
                };
                let started = Instant::now();
                assert_eq!(app.login(&email, "not the password 42").await.status(), 401);
                let elapsed = started.elapsed();
                if known_first {
                    known_times.push(elapsed)
                } else {
                    unknown_times.push(elapsed)
                }
            }
        }
        let (k, u) = (median(known_times), median(unknown_times));
        let ratio = k.as_secs_f64() / u.as_secs_f64();
        println!("login median of 20: known {k:?}, unknown {u:?}, ratio {ratio:.3}");
        rounds.push(ratio);
        if (0.8..=1.25).contains(&ratio) {
            return;
        }
    }
    panic!("login times differ by more than 20% in every round: {rounds:?}");
}

/// Peak resident memory (VmHWM) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmHWM:")
}

/// A number from `/proc/PID/status` (`field` with its colon).
fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("{field} of the service"))
}

/// The real binary in its own process, so that its memory is measured alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_logins_get_answers_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("folder");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut service = std::process::Command::new(env!("CARGO_BIN_EXE_passcode"))
        .current_dir(dir.path())
        .env("APP__SERVER__PORT", port.to_string())
        .env("APP__HASHING__MAX_CONCURRENT", "2")
        .env("APP__HASHING__MAX_QUEUED", "8")
        .env("APP__LIMITS__CLIENT_REQUESTS", "100000")
        .env("APP__LOG__LEVEL", "off")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the service starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    crate::helpers::wait_until_ready(&client, &base).await;
    let idle_kib = peak_rss_kib(service.id());
    let idle_threads = status_field(service.id(), "Threads:");
    let started = Instant::now();
    let logins = (0..200).map(|i| {
        client
            .post(format!("{base}/api/accounts/token/"))
            .json(&json!({"email": format!("flood-{i}@example.com"), "password": "some password 123"}))
            .send()
    });
    // While the flood runs, another endpoint must still answer at once.
    let probe = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let asked = Instant::now();
        let response = client
            .post(format!("{base}/api/accounts/token/verify/"))
            .json(&json!({"token": "not-a-token"}))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 401);
        asked.elapsed()
    };
    let (responses, probe_latency) = futures::join!(join_all(logins), probe);
    let statuses: Vec<u16> = responses
        .into_iter()
        .map(|r| r.expect("an answer").status().as_u16())
        .collect();
    let elapsed = started.elapsed();
    let peak_mib = peak_rss_kib(service.id()) / 1024;
    let threads = status_field(service.id(), "Threads:");
    let _ = service.kill();
    let _ = service.wait();
    let shed = statuses.iter().filter(|&&s| s == 503).count();
    println!(
        "200 concurrent logins: {} answered 401, {shed} shed with 503, in {elapsed:?}; peak RSS {peak_mib} MiB (idle {} MiB); token/verify during the flood answered in {probe_latency:?}; {threads} threads (idle {idle_threads})",
        200 - shed,
        idle_kib / 1024
    );
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 503),
        "{statuses:?}"
    );
    assert!(shed > 0, "a queue of 8 must shed some of 200");
    assert!(elapsed < Duration::from_secs(60), "no hang");
    assert!(
        probe_latency < Duration::from_secs(2),
        "other endpoints are not starved: {probe_latency:?}"
    );
    // The stated bound, as growth over the idle service (whose own size moves with the
    // build and the allocator). The service is ready only once both hashing threads
    // hold their argon2 memory (19 MiB each), so the idle figure includes it; what a
    // flood adds is 200 connections, 8 queued logins and mimalloc's per-thread pages.
    // Measured: 14 to 23 MiB (2026-12-06); a third concurrent hash, or memory per
    // queued login, would pass 30. (A CI run once measured 33 when one thread had not
    // yet taken its memory at the idle reading, 77 MiB against 93 usual.)
    let idle_mib = idle_kib / 1024;
    assert!(
        peak_mib.saturating_sub(idle_mib) < 30,
        "peak RSS {peak_mib} MiB, idle {idle_mib} MiB"
    );
}
