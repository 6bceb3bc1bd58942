//! The HTTP mail hook (`mail.transport = "http"`) against a real HTTP receiver
//! (`tests/support/mail_hook.py`) that checks every Standard Webhooks signature with
//! the `standardwebhooks` library: delivery, an outage, a 5xx, a 4xx, a wrong secret.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use passcode_app::settings::TransportKind;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{Mail, TestApp, closed_port, spawn_app_with, spawn_support, unique_email};

/// 32 bytes, base64, as Standard Webhooks secrets are written.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwq1VXqT3yR2s=";

/// A receiver on a port of its own, started and stopped by the test.
struct Receiver {
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
    behaviour: String,
    child: Option<Child>,
}

impl Receiver {
    fn down(behaviour: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("passcode-hook-")
            .tempdir()
            .expect("temporary folder");
        Self {
            port: closed_port(),
            out: dir.path().join("received.jsonl"),
            _dir: dir,
            behaviour: behaviour.to_owned(),
            child: None,
        }
    }

    fn start(&mut self) {
        let (child, _) = spawn_support(
            "mail_hook.py",
            &[
                "--port",
                &self.port.to_string(),
                "--secret",
                SECRET,
                "--out",
                &self.out.to_string_lossy(),
                "--behaviour",
                &self.behaviour,
            ],
            "the test mail hook",
        );
        self.child = Some(child);
    }

    /// Every verified delivery: `{"id": webhook-id, "payload": {...}}`.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The webhook-id of every signed attempt, accepted or not.
    fn attempts(&self) -> Vec<String> {
        std::fs::read_to_string(format!("{}.attempts", self.out.display()))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    async fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let received = self.received();
            if received.len() >= count || Instant::now() > deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn app_on(receiver: &Receiver, secret: &str) -> TestApp {
    let url = format!("http://127.0.0.1:{}/hooks/mail", receiver.port);
    let secret = secret.to_owned();
    spawn_app_with(Mail::Starttls, move |s| {
        s.mail.transport = TransportKind::Http;
        s.mail.http.url = Some(url);
        s.mail.http.secret = Some(SecretString::from(secret));
        s.mail.outbox.backoff_base_ms = 100.into();
        s.mail.outbox.backoff_max_ms = 200.into();
        s.mail.outbox.max_attempts = 50;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_reaches_the_hook_signed_and_its_code_verifies_the_address() {
    let mut receiver = Receiver::down("accept");
    receiver.start();
    let app = app_on(&receiver, SECRET).await;
    let email = unique_email();
    assert_eq!(app.register(&email).await.status(), 201);

    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1, "one signed delivery");
    let delivery = &received[0];
    assert!(delivery["id"].as_str().unwrap().starts_with("msg_"));
    let payload = &delivery["payload"];
    assert_eq!(payload["type"], "mail.code");
    assert_eq!(payload["to"], email.as_str());
    assert_eq!(payload["purpose"], "verify_email");
    assert_eq!(payload["valid_for_seconds"], 600);
    let code = payload["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 6);
    assert!(
        payload["subject"].as_str().unwrap().contains("code"),
        "{payload}"
    );
    assert!(payload["text"].as_str().unwrap().contains(&code));
    assert!(payload["html"].as_str().unwrap().contains(&code));

    let verified = app
        .post(
            "/api/accounts/validate-otp/",
            &json!({"email": email, "otp": code}),
        )
        .await;
    assert_eq!(verified.status(), 200);
    app.outbox_drained("nothing left to send").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_out_a_hook_outage_and_arrives_once() {
    let mut receiver = Receiver::down("accept");
    let app = app_on(&receiver, SECRET).await;
    let email = unique_email();
    assert_eq!(app.register(&email).await.status(), 201);
    // The receiver is down: the message is retried, not lost.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = app.outbox().await;
        if entries.iter().any(|e| e.attempts >= 2) {
            break;
        }
        assert!(Instant::now() < deadline, "not retried: {entries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.start();
    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["payload"]["to"], email.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_retried_with_the_same_webhook_id() {
    let mut receiver = Receiver::down("tempfail:2");
    receiver.start();
    let app = app_on(&receiver, SECRET).await;
    let email = unique_email();
    assert_eq!(app.register(&email).await.status(), 201);
    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1, "delivered after two 503 answers");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "and only once");
    let attempts = receiver.attempts();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts.iter().all(|id| *id == attempts[0]),
        "one webhook-id for every attempt: {attempts:?}"
    );
    assert_eq!(received[0]["id"].as_str(), Some(attempts[0].as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_fails_the_message_for_good() {
    let mut receiver = Receiver::down("reject");
    receiver.start();
    let app = app_on(&receiver, SECRET).await;
    assert_eq!(app.register(&unique_email()).await.status(), 201);
    let failed = app.failed_mail().await;
    assert_eq!(failed.attempts, 1, "a 400 is not retried");
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("400")),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_under_another_secret_is_refused_by_the_receiver() {
    let mut receiver = Receiver::down("accept");
    receiver.start();
    let app = app_on(
        &receiver,
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    )
    .await;
    assert_eq!(app.register(&unique_email()).await.status(), 201);
    let failed = app.failed_mail().await;
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("401")),
        "{failed:?}"
    );
    assert!(
        receiver.received().is_empty(),
        "nothing unsigned got through"
    );
}
