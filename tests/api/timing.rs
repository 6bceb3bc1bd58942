//! No enumeration by timing: resend-otp, password-reset and create take as long for an
//! address with an account as for one without. Prints medians and their ratio per
//! endpoint (a measurement, not an assertion: these machines are noisy).
//! `cargo test -p passcode-app --test api -- timing --nocapture` (set
//! `PASSCODE_TEST_BACKEND=postgres` for PostgreSQL).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_app, unique_email};

const PER_SIDE: usize = 40;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

async fn timed(app: &TestApp, path: &str, body: serde_json::Value) -> Duration {
    let started = Instant::now();
    let response = app.post(path, &body).await;
    let took = started.elapsed();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    took
}

/// Interleaves one request for a registered address and one for a never-seen one,
/// each address once (no cooldown involved), and prints both medians.
async fn compare(
    app: &TestApp,
    endpoint: &str,
    registered: &[String],
    body: impl Fn(&str) -> serde_json::Value,
) {
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for address in registered {
        known.push(timed(app, endpoint, body(address)).await);
        unknown.push(timed(app, endpoint, body(&unique_email())).await);
    }
    let (k, u) = (median(known), median(unknown));
    println!(
        "timing {backend:<8} {endpoint:<32} registered {k:>9.2?}  unknown {u:>9.2?}  ratio {ratio:.2}",
        backend = std::env::var("PASSCODE_TEST_BACKEND").unwrap_or_else(|_| "sqlite".into()),
        ratio = k.as_secs_f64() / u.as_secs_f64(),
    );
}

#[tokio::test]
async fn registered_and_unknown_addresses_take_the_same_time() {
    let app = spawn_app().await;
    let pending: Vec<String> = (0..PER_SIDE).map(|_| unique_email()).collect();
    let verified: Vec<String> = (0..PER_SIDE).map(|_| unique_email()).collect();
    for address in &pending {
        assert_eq!(app.register(address).await.status(), 201);
    }
    for address in &verified {
        app.verified_user(address).await;
    }
    // Warm up connections and caches alike for both sides.
    for _ in 0..5 {
        timed(
            &app,
            "/api/accounts/resend-otp/",
            json!({"email": unique_email()}),
        )
        .await;
    }
    compare(
        &app,
        "/api/accounts/resend-otp/",
        &pending,
        |e| json!({"email": e}),
    )
    .await;
    compare(
        &app,
        "/api/accounts/password-reset/",
        &verified,
        |e| json!({"email": e}),
    )
    .await;
    compare(
        &app,
        "/api/accounts/create/",
        &verified,
        |e| json!({"full_name": "Ada Lovelace", "email": e, "password": PASSWORD}),
    )
    .await;
}
