//! The HTTP mail hook (`mail.transport = "http"`) against a real HTTP receiver
//! (`tests/support/mail_hook.py`) that checks every Standard Webhooks signature with
//! the `standardwebhooks` library: delivery, an outage, a 5xx, a 4xx, a wrong secret.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use passcode_app::settings::TransportKind;
use passcode_domain::ports::{OutboxEntry, OutboxStatus};
use passcode_persistence::{DatabaseSettings, Store};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{Mail, TestApp, spawn_app_with, test_python, unique_email};

/// 32 bytes, base64, as Standard Webhooks secrets are written.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwq1VXqT3yR2s=";

/// A receiver on a port of its own, started and stopped by the test.
struct Receiver {
    port: u16,
    out: PathBuf,
    behaviour: String,
    child: Option<Child>,
}

impl Receiver {
    fn down(behaviour: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("passcode-hook-")
            .tempdir()
            .expect("temporary folder")
            .keep();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("address")
            .port();
        Self {
            port,
            out: dir.join("received.jsonl"),
            behaviour: behaviour.to_owned(),
            child: None,
        }
    }

    fn start(&mut self) {
        let script = crate::helpers::support_file("mail_hook.py");
        let mut child = Command::new(test_python())
            .arg(&script)
            .args(["--port", &self.port.to_string(), "--secret", SECRET])
            .args([
                "--out",
                &self.out.to_string_lossy(),
                "--behaviour",
                &self.behaviour,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the test mail hook (run scripts/test.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the receiver's first line");
        assert!(
            line.contains("port"),
            "the test mail hook did not start (is standardwebhooks installed? run scripts/test.sh): {line:?}"
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

async fn outbox_of(app: &TestApp) -> Vec<OutboxEntry> {
    let store =
        Store::connect(&DatabaseSettings::new(app.settings.database.url.clone())).expect("store");
    store.outbox().pending(1_000).await.expect("pending")
}

async fn wait_until_failed(app: &TestApp) -> OutboxEntry {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = outbox_of(app).await;
        if let Some(entry) = entries.iter().find(|e| e.status == OutboxStatus::Failed) {
            return entry.clone();
        }
        assert!(
            Instant::now() < deadline,
            "never marked failed: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    assert!(outbox_of(&app).await.is_empty(), "nothing left to send");
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
        let entries = outbox_of(&app).await;
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
    let failed = wait_until_failed(&app).await;
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
    let failed = wait_until_failed(&app).await;
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
