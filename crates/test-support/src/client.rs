//! A typed client of the REST contract: one method per endpoint, on [`TestApp`], and
//! the captured mail of the app's addresses.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::app::TestApp;
use crate::mail::{CapturedMail, mails_in};

/// The password every test account is registered with.
pub const PASSWORD: &str = "correct horse battery staple";

/// The API's paths, as API.md gives them.
pub mod paths {
    pub const REGISTER: &str = "/api/accounts/create/";
    pub const VALIDATE_OTP: &str = "/api/accounts/validate-otp/";
    pub const RESEND_OTP: &str = "/api/accounts/resend-otp/";
    pub const LOGIN: &str = "/api/accounts/token/";
    pub const REFRESH: &str = "/api/accounts/token/refresh/";
    pub const VERIFY_TOKEN: &str = "/api/accounts/token/verify/";
    pub const LOGOUT: &str = "/api/accounts/logout/";
    pub const ME: &str = "/api/accounts/me/";
    pub const CHANGE_PASSWORD: &str = "/api/accounts/change-password/";
    pub const PASSWORD_RESET: &str = "/api/accounts/password-reset/";
    pub const PASSWORD_RESET_CONFIRM: &str = "/api/accounts/password-reset/confirm/";
    pub const JWKS: &str = "/.well-known/jwks.json";
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// POSTs `body` as if from `client` behind a trusted proxy at 127.0.0.1 (the app
    /// must list it in `limits.trusted_proxies`).
    pub async fn post_from(&self, client: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("x-forwarded-for", client)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Registers `email` as Ada Lovelace with [`PASSWORD`].
    pub async fn register(&self, email: &str) -> reqwest::Response {
        self.post(
            paths::REGISTER,
            &json!({"full_name": "Ada Lovelace", "email": email, "password": PASSWORD}),
        )
        .await
    }

    pub async fn validate(&self, email: &str, otp: &str) -> reqwest::Response {
        self.post(paths::VALIDATE_OTP, &json!({"email": email, "otp": otp}))
            .await
    }

    pub async fn resend(&self, email: impl Serialize) -> reqwest::Response {
        self.post(paths::RESEND_OTP, &json!({ "email": email }))
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post(paths::LOGIN, &json!({"email": email, "password": password}))
            .await
    }

    /// Exchanges a refresh token (a string or a JSON value) for a new pair.
    pub async fn refresh(&self, refresh: impl Serialize) -> reqwest::Response {
        self.post(paths::REFRESH, &json!({ "refresh": refresh }))
            .await
    }

    pub async fn verify_token(&self, token: impl Serialize) -> reqwest::Response {
        self.post(paths::VERIFY_TOKEN, &json!({ "token": token }))
            .await
    }

    /// `GET /me` with `access` (a string or a JSON string value) as the bearer token.
    pub async fn me(&self, access: &Value) -> reqwest::Response {
        self.client
            .get(self.url(paths::ME))
            .bearer_auth(access.as_str().expect("an access token is a string"))
            .send()
            .await
            .expect("request")
    }

    pub async fn jwks(&self) -> Value {
        let response = self
            .client
            .get(self.url(paths::JWKS))
            .send()
            .await
            .expect("request");
        json_of(response, 200).await
    }

    /// Registers, reads the code from the mail, verifies: returns the token body.
    pub async fn verified_user(&self, email: &str) -> Value {
        assert_eq!(self.register(email).await.status(), 201);
        let code = self.next_code(email).await;
        let response = self.validate(email, &code).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("json")["token"].clone()
    }

    /// Every message captured for `to`, oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<CapturedMail> {
        mails_in(&self.maildir, to)
    }

    /// Waits (up to 10 s) for a message to `to` beyond those already taken.
    pub async fn next_mail(&self, to: &str) -> CapturedMail {
        let to = to.trim().to_ascii_lowercase();
        let seen = *self.seen.lock().expect("lock").get(&to).unwrap_or(&0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails = self.mails_to(&to);
            if mails.len() > seen {
                self.seen.lock().expect("lock").insert(to, seen + 1);
                return mails[seen].clone();
            }
            assert!(Instant::now() < deadline, "no new mail to {to} within 10 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The code in the next message to `to`.
    pub async fn next_code(&self, to: &str) -> String {
        let mail = self.next_mail(to).await;
        mail.code()
            .unwrap_or_else(|| panic!("no code in mail: {}", mail.text))
    }
}

/// The JSON body of a response, asserting its status first.
pub async fn json_of(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status, body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
}

/// Waits (20 s at most) until a service started as a process answers on `base`.
pub async fn wait_until_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the service did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
