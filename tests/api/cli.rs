//! The `passcode` binary itself: `migrate`, and `serve` on the zero-configuration default.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_passcode");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `passcode serve` in `dir` on a free port with `envs`; its log lines (stdout) arrive
/// on the returned channel. The caller kills the child.
pub(crate) async fn serve(
    dir: &std::path::Path,
    envs: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    let port = free_port();
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env("APP__SERVER__PORT", port.to_string())
        .env("APP__LOG__FORMAT", "text")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    crate::helpers::wait_until_ready(&client, &base).await;
    (child, base, lines_rx)
}

/// Every log line received within `wait`.
pub(crate) fn lines_within(lines: &std::sync::mpsc::Receiver<String>, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    let mut log = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => break,
        }
    }
    log
}

/// A resend-otp whose body is not JSON, with `headers`: answered 400, logged as such.
async fn bad_json(base: &str, headers: &[(&str, &str)]) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client
        .post(format!("{base}/api/accounts/resend-otp/"))
        .header("content-type", "application/json")
        .body("{not json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    assert_eq!(request.send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn the_request_log_names_the_computed_client_never_a_forwarded_header() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, lines) = serve(dir.path(), &[]).await;
    // Not from a trusted proxy: the header is someone's claim, not the client.
    bad_json(&base, &[("x-forwarded-for", "6.6.6.6")]).await;
    let log = lines_within(&lines, Duration::from_secs(2));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(log.contains("client=127.0.0.1"), "{log}");
    assert!(!log.contains("6.6.6.6"), "{log}");
}

/// The service's log is written by a thread of its own: it is plain text where stdout
/// is not a terminal, and its lines still queued at SIGTERM are written before the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_log_is_plain_text_and_complete_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    // An empty NO_COLOR is no request (no-color.org): only the terminal decides.
    let (mut child, base, lines) = serve(dir.path(), &[("NO_COLOR", "")]).await;
    bad_json(&base, &[]).await;
    let started = sigterm(&child);
    assert!(exit_of(&mut child, started).success());
    // The reader stops at the end of stdout: everything written is in.
    let log = lines_within(&lines, Duration::from_secs(5));
    assert!(
        log.contains("route=/api/accounts/resend-otp status=400"),
        "{log}"
    );
    assert!(log.contains("starting graceful shutdown"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "no colour codes off a terminal: {log:?}"
    );
}

#[test]
fn migrate_applies_the_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(BIN)
            .arg("migrate")
            .current_dir(dir.path())
            .env("APP__LOG__LEVEL", "off")
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/sqlite"
    ))
    .unwrap()
    .count();
    let expected = format!("applied {migrations} migration");
    assert!(String::from_utf8_lossy(&first.stdout).contains(&expected));
    assert!(
        dir.path().join("data/passcode.db").exists(),
        "the default SQLite file"
    );
    let second = run();
    assert!(String::from_utf8_lossy(&second.stdout).contains("applied 0 migration"));
}

#[test]
fn bad_configuration_fails_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .env("APP__MAIL__TRANSPORT", "smtp")
        .env("APP__LOG__LEVEL", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("mail.smtp.host"));
}

#[tokio::test]
async fn serve_with_no_configuration_runs_on_sqlite_and_the_log_mailer() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env("APP__SERVER__PORT", port.to_string())
        .env("APP__LOG__FORMAT", "text")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    crate::helpers::wait_until_ready(&client, &base).await;
    let response = client
        .post(format!("{base}/api/accounts/create/"))
        .json(&json!({"full_name": "Ada", "email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The development mailer prints the message; the code is on its own line.
    let mut log = String::new();
    let code = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the mail in the log");
        log.push_str(&line);
        let trimmed = line.trim();
        if trimmed.len() == 6 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            break trimmed.to_owned();
        }
    };
    assert!(
        log.contains("For development only"),
        "the start-up warning about the log mailer"
    );
    let verified = client
        .post(format!("{base}/api/accounts/validate-otp/"))
        .json(&json!({"email": "ada@example.com", "otp": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    child.kill().unwrap();
    let _ = child.wait();

    for file in ["passcode.db", "jwt-ed25519.pem", "otp-secret"] {
        assert!(dir.path().join("data").join(file).exists(), "data/{file}");
    }
}

/// Registers five addresses while SMTP is down, stops the service with `stop`, then
/// starts SMTP and the service again: every queued mail must arrive.
async fn queued_mail_survives(stop: impl FnOnce(&mut std::process::Child)) {
    let mut smtp = crate::helpers::ControlledSmtp::down("accept");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp_port = smtp.port.to_string();
    let start = || {
        Command::new(BIN)
            .current_dir(dir.path())
            .env("APP__SERVER__PORT", port.to_string())
            .env("APP__SERVER__SHUTDOWN_TIMEOUT_SECONDS", "2")
            .env("APP__LOG__LEVEL", "off")
            .env("APP__MAIL__TRANSPORT", "smtp")
            .env("APP__MAIL__SMTP__HOST", "127.0.0.1")
            .env("APP__MAIL__SMTP__PORT", &smtp_port)
            .env("APP__MAIL__SMTP__TLS", "none")
            .env("APP__MAIL__SMTP__TIMEOUT_SECONDS", "1")
            .env("APP__MAIL__OUTBOX__BACKOFF_BASE_MS", "100")
            .env("APP__MAIL__OUTBOX__BACKOFF_MAX_MS", "500")
            .env("APP__MAIL__OUTBOX__MAX_ATTEMPTS", "1000")
            // A message claimed by the killed worker is taken over when its lease ends.
            .env("APP__MAIL__OUTBOX__LEASE_SECONDS", "2")
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut service = start();
    crate::helpers::wait_until_ready(&client, &base).await;
    let emails: Vec<String> = (0..5).map(|i| format!("stopped-{i}@example.com")).collect();
    for email in &emails {
        let response = client
            .post(format!("{base}/api/accounts/create/"))
            .json(&json!({"full_name": "Ada", "email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    stop(&mut service);

    smtp.start();
    let mut service = start();
    crate::helpers::wait_until_ready(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while smtp.received().len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.kill().unwrap();
    let _ = service.wait();
    let mut received: Vec<String> = smtp.received().into_iter().map(|m| m.to).collect();
    received.sort();
    assert_eq!(received, emails);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_queued_when_the_service_is_killed_is_delivered_after_a_restart() {
    queued_mail_survives(|service| {
        service.kill().unwrap(); // SIGKILL: no chance to clean up
        let _ = service.wait();
    })
    .await;
}

/// A guess's commit on SQLite is not synced to disk (it only counts), but it is
/// written: a killed service has its guesses counted when it starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_counted_before_the_service_is_killed_still_count_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let guess = |base: String| {
        let client = client.clone();
        async move {
            client
                .post(format!("{base}/api/accounts/validate-otp/"))
                .json(&json!({"email": "killed@example.com", "otp": "000000"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // The default configuration: one client's share of an address's guesses is 5.
    let (mut service, base, _lines) = serve(dir.path(), &[]).await;
    for n in 1..=5 {
        assert_eq!(guess(base.clone()).await, 400, "guess {n}");
    }
    service.kill().unwrap(); // SIGKILL: nothing written at the end
    let _ = service.wait();

    // A new process remembers no refusal of its own: only the database can refuse.
    let (mut service, base, _lines) = serve(dir.path(), &[]).await;
    let sixth = guess(base).await;
    service.kill().unwrap();
    let _ = service.wait();
    assert_eq!(
        sixth, 429,
        "the five guesses before the kill were forgotten"
    );
}

/// Sends SIGTERM to `service`; returns when.
fn sigterm(service: &std::process::Child) -> Instant {
    let status = Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    Instant::now()
}

/// How `service` ended, waiting until 15 s after `started`.
fn exit_of(service: &mut std::process::Child, started: Instant) -> std::process::ExitStatus {
    loop {
        if let Some(exit) = service.try_wait().unwrap() {
            return exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_service_cleanly_and_keeps_unsent_mail_queued() {
    queued_mail_survives(|service| {
        let started = sigterm(service);
        let exit = exit_of(service, started);
        assert!(exit.success(), "a clean exit: {exit:?}");
    })
    .await;
}

fn mail_test_with(port: u16, tls: &str, password: &str) -> std::process::Output {
    let servers = crate::helpers::smtp();
    let dir = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(["mail", "test", "ops@example.com"])
        .current_dir(dir.path())
        .env("APP__LOG__LEVEL", "off")
        .env("APP__MAIL__TRANSPORT", "smtp")
        .env("APP__MAIL__SMTP__HOST", "localhost")
        .env("APP__MAIL__SMTP__PORT", port.to_string())
        .env("APP__MAIL__SMTP__TLS", tls)
        .env("APP__MAIL__SMTP__USERNAME", crate::helpers::SMTP_USER)
        .env("APP__MAIL__SMTP__PASSWORD", password)
        .env("APP__MAIL__SMTP__CA_FILE", &servers.ca_file)
        .env("APP__MAIL__SMTP__TIMEOUT_SECONDS", "3")
        .output()
        .unwrap()
}

#[test]
fn mail_test_reports_success_bad_credentials_and_a_wrong_tls_mode() {
    let servers = crate::helpers::smtp();
    let ok = mail_test_with(
        servers.starttls_port,
        "starttls",
        crate::helpers::SMTP_PASSWORD,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("accepted the message: 250"));

    let implicit = mail_test_with(
        servers.implicit_port,
        "implicit",
        crate::helpers::SMTP_PASSWORD,
    );
    assert!(
        implicit.status.success(),
        "{}",
        String::from_utf8_lossy(&implicit.stderr)
    );

    let bad_login = mail_test_with(servers.starttls_port, "starttls", "wrong password");
    assert!(!bad_login.status.success());
    let stderr = String::from_utf8_lossy(&bad_login.stderr);
    assert!(stderr.contains("refused the login"), "{stderr}");
    assert!(
        !stderr.contains("wrong password"),
        "the password is never printed"
    );

    let wrong_mode = mail_test_with(
        servers.implicit_port,
        "starttls",
        crate::helpers::SMTP_PASSWORD,
    );
    assert!(!wrong_mode.status.success());
    let stderr = String::from_utf8_lossy(&wrong_mode.stderr);
    assert!(stderr.contains("mail.smtp.tls"), "{stderr}");

    let unreachable = mail_test_with(free_port(), "starttls", crate::helpers::SMTP_PASSWORD);
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("mail.smtp.port"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_queue_lists_failed_mail_without_codes() {
    let mut smtp = crate::helpers::ControlledSmtp::down("reject");
    smtp.start();
    let app =
        crate::helpers::spawn_app_with(crate::helpers::Mail::Starttls, |s| smtp.configure(s)).await;
    let email = crate::helpers::unique_email();
    assert_eq!(app.register(&email).await.status(), 201);
    let queue = || {
        Command::new(BIN)
            .args(["mail", "queue"])
            .env("APP__LOG__LEVEL", "off")
            .env("APP__DATABASE__URL", &app.settings.database.url)
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let listing = loop {
        let output = queue();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.contains("failed") {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(listing.contains(&email), "{listing}");
    assert!(listing.contains("550"), "{listing}");
    assert!(!listing.contains("\"code\""), "no body is shown");
}

fn passcode(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .args(args)
        .env("APP__LOG__LEVEL", "off")
        .env_remove("RUST_LOG");
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "an otp secret of at least thirty-two characters";
    let out = passcode(
        dir.path(),
        &["config", "check"],
        &[("APP__OTP__SECRET", secret)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("no problems found"), "{stdout}");
    assert!(stdout.contains("\"ttl_seconds\": 600"), "{stdout}");
    assert!(stdout.contains("[REDACTED]"), "{stdout}");
    assert!(!stdout.contains(secret), "the secret is never printed");
}

#[test]
fn bad_values_are_refused_all_at_once_by_config_check_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        ("APP__MAIL__OUTBOX__WORKERS", "0"),
        ("APP__OTP__TTL_SECONDS", "0"),
        ("APP__JWT__ACCESS_TTL_SECONDS", "3"),
        ("APP__JWT__PRIVATE_KEY_FILE", "/nonexistent/key.pem"),
    ];
    let check = passcode(dir.path(), &["config", "check"], &bad);
    assert!(!check.status.success());
    let stdout = String::from_utf8_lossy(&check.stdout);
    for key in [
        "mail.outbox.workers",
        "otp.ttl_seconds",
        "jwt.access_ttl_seconds",
        "jwt.private_key_file",
    ] {
        assert!(
            stdout.contains(&format!("problem: {key}")),
            "{key}: {stdout}"
        );
    }
    let serve = passcode(dir.path(), &["serve"], &bad);
    assert!(!serve.status.success());
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    for key in [
        "mail.outbox.workers",
        "otp.ttl_seconds",
        "jwt.private_key_file",
    ] {
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing was started or created"
    );

    let unknown = passcode(
        dir.path(),
        &["config", "check"],
        &[("APP__LOG__FORMAT", "yaml")],
    );
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("yaml") && stderr.contains("log.format"),
        "{stderr}"
    );
}

/// A login that failed on a busy store leaves its tries queued to be given back. A
/// SIGTERM stops the server at once, but the process waits (a few seconds at most)
/// for the store to take them before it ends, so the client's budget is whole after
/// a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_back_the_queued_tries_of_failed_requests_before_the_end() {
    use crate::helpers::paths;
    let dir = tempfile::tempdir().unwrap();
    let (mut service, base, _lines) = serve(
        dir.path(),
        &[
            ("APP__REGISTRATION__POLICY", "tokens_before_verification"),
            ("APP__LIMITS__LOGIN_FAILURES", "1"),
            ("APP__LIMITS__LOGIN_FAILURES_PER_CLIENT", "1"),
            ("APP__DATABASE__BUSY_TIMEOUT_MS", "300"),
            // A hash long enough (about 0.3 s) for the test to take the store between
            // the login's reservation and its session.
            ("APP__HASHING__ITERATIONS", "40"),
            ("APP__SERVER__SHUTDOWN_TIMEOUT_SECONDS", "2"),
        ],
    )
    .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let account = json!({"full_name": "Grace", "email": "grace@example.com", "password": "correct horse battery"});
    let registered = client
        .post(format!("{base}{}", paths::REGISTER))
        .json(&account)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);

    let url = format!("sqlite://{}", dir.path().join("data/passcode.db").display());
    let mut database = crate::helpers::DatabaseConnection::open(&url).await;
    let reserved = "SELECT COUNT(*) AS n FROM rate_limits \
                    WHERE bucket LIKE 'login:grace@example.com%' AND count > 0";
    let login = client
        .post(format!("{base}{}", paths::LOGIN))
        .json(&account)
        .send();
    let (answer, ()) = tokio::join!(login, async {
        database
            .wait_for_count(reserved, 2, "the login's two budgets reserved")
            .await;
        database.hold_writes(&["rate_limits", "sessions"]).await;
    });
    assert_eq!(answer.unwrap().status(), 503);
    // The give-back's first write waits `busy_timeout` for the store, then fails; the
    // next comes a second later.
    let first_write_failed = Instant::now() + Duration::from_millis(700);

    let started = sigterm(&service);
    while client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .is_ok()
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still serving after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep_until(first_write_failed.into()).await;
    assert!(
        service.try_wait().unwrap().is_none(),
        "the process waits for the store"
    );
    assert_eq!(database.count(reserved).await, 2, "not given back yet");
    database.release().await;

    let exit = exit_of(&mut service, started);
    assert!(exit.success(), "a clean exit: {exit:?}");
    assert_eq!(
        database.count(reserved).await,
        0,
        "the tries were given back before the end"
    );
}
