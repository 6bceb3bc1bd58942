//! The HTTP mail hook: each message is POSTed as JSON to a configured URL, signed as
//! the Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), for providers whose hosting blocks outbound SMTP.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use passcode_domain::ports::{Mail, MailError};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use crate::Rendered;

/// Where and how to POST.
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// `https://...` (or `http://` on a trusted network).
    pub url: String,
    /// The signing secret, `whsec_` followed by base64 (as Standard Webhooks issues them).
    pub secret: SecretString,
    /// The whole request's deadline.
    pub timeout: Duration,
}

pub(crate) struct Hook {
    url: String,
    key: SecretBox<Vec<u8>>,
    client: reqwest::Client,
}

/// The signing key of a `whsec_...` secret.
pub fn signing_key(secret: &str) -> anyhow::Result<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(encoded)
        .context("the webhook secret is not base64 after its whsec_ prefix")?;
    anyhow::ensure!(
        (24..=64).contains(&key.len()),
        "the webhook secret decodes to {} bytes; 24 to 64 are accepted",
        key.len()
    );
    Ok(key)
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The JSON body: the rendered message, what it is about, and the code where the
/// message carries one (for receivers that render their own templates).
pub(crate) fn payload(mail: &Mail, rendered: &Rendered) -> serde_json::Value {
    let (kind, purpose, code, valid_for) = match mail {
        Mail::Code {
            code,
            purpose,
            valid_for,
            ..
        } => (
            "code",
            Some(purpose.as_str()),
            Some(code.expose()),
            Some(valid_for.num_seconds()),
        ),
        Mail::RegistrationAttempt { .. } => ("registration_attempt", None, None, None),
        Mail::PasswordChanged { .. } => ("password_changed", None, None, None),
        Mail::AccountDeleted { .. } => ("account_deleted", None, None, None),
        Mail::EmailChangeRequested { .. } => ("email_change_requested", None, None, None),
        Mail::EmailChanged { .. } => ("email_changed", None, None, None),
    };
    let mut body = serde_json::json!({
        "type": format!("mail.{kind}"),
        "to": mail.recipient().as_str(),
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
    });
    if let (Some(purpose), Some(code), Some(valid_for)) = (purpose, code, valid_for) {
        body["purpose"] = purpose.into();
        body["code"] = code.into();
        body["valid_for_seconds"] = valid_for.into();
    }
    body
}

impl Hook {
    pub(crate) fn new(settings: &HookSettings) -> anyhow::Result<Self> {
        let key = signing_key(settings.secret.expose_secret())?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A redirect would carry the code elsewhere: refused, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            url: settings.url.clone(),
            key: SecretBox::new(Box::new(key)),
            client,
        })
    }

    /// POSTs one message. 2xx: delivered. 408, 429 and 5xx, timeouts and connection
    /// failures: worth retrying. Any other answer (400, 401, 404, 3xx, ...): retrying
    /// the same request cannot help.
    pub(crate) async fn send(
        &self,
        id: uuid::Uuid,
        mail: &Mail,
        rendered: &Rendered,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), MailError> {
        self.post(id, &payload(mail, rendered), now).await
    }

    /// POSTs `payload`, signed, and maps the answer.
    pub(crate) async fn post(
        &self,
        id: uuid::Uuid,
        payload: &serde_json::Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), MailError> {
        let body = serde_json::to_vec(payload).map_err(|e| MailError::Permanent(e.into()))?;
        // The same id on every attempt, so that the receiver can drop duplicates.
        let msg_id = format!("msg_{}", id.simple());
        let timestamp = now.timestamp();
        let signed = signature(self.key.expose_secret(), &msg_id, timestamp, &body);
        let answer = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .body(body)
            .send()
            .await
            // No URL in the error: it may hold a token.
            .map_err(|e| MailError::Transient(anyhow::anyhow!("{}", e.without_url())))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let error = anyhow::anyhow!("the mail hook answered {status}");
        if status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(MailError::Transient(error))
        } else {
            Err(MailError::Permanent(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        // The example of the Standard Webhooks specification.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_secrets_that_are_not_base64_or_too_short() {
        assert!(signing_key("whsec_not base64!").is_err());
        assert!(signing_key(&format!("whsec_{}", STANDARD.encode([7u8; 8]))).is_err());
        assert!(signing_key(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).is_ok());
    }
}
