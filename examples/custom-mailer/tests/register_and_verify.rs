//! The register → verify flow end to end, over HTTP, with the example's own mailer
//! carrying the code.

use std::time::Duration;

use passcode_example_custom_mailer::{Inbox, app_with};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_delivered_by_the_custom_mailer_verifies_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = passcode_app::Settings::defaults().unwrap();
    settings.server.port = 0;
    settings.data.dir = dir.path().join("data");
    settings.database.url = format!("sqlite://{}", dir.path().join("passcode.db").display());
    let inbox = Inbox::default();
    let app = app_with(settings, inbox.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();

    let registered = client
        .post(format!("{base}/api/accounts/create/"))
        .json(&json!({
            "email": "ada@example.com",
            "full_name": "Ada Lovelace",
            "password": "correct horse battery staple"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);

    let code = inbox
        .code_for("ada@example.com", Duration::from_secs(10))
        .await
        .expect("the custom mailer delivered no code");
    assert_eq!(code.len(), 6);

    let wrong = client
        .post(format!("{base}/api/accounts/validate-otp/"))
        .json(&json!({"email": "ada@example.com", "otp": if code == "000000" { "111111" } else { "000000" }}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);

    let verified = client
        .post(format!("{base}/api/accounts/validate-otp/"))
        .json(&json!({"email": "ada@example.com", "otp": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    let body: Value = verified.json().await.unwrap();
    assert!(body.pointer("/token/access").is_some(), "{body}");

    let login = client
        .post(format!("{base}/api/accounts/token/"))
        .json(&json!({"email": "ada@example.com", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "the verified account logs in");
    assert_eq!(
        inbox
            .delivered()
            .iter()
            .filter(|d| d.to == "ada@example.com")
            .count(),
        1,
        "one message: the code"
    );
}
