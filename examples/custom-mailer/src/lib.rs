//! A mail adapter of one's own, plugged into passcode through its builder.
//!
//! `Inbox` stands for what a team would write to hand mail to their provider's API or
//! to a queue: it implements the domain's `Mailer` port, and passcode's outbox worker
//! calls it (never a request), with the outbox's retries around it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use passcode_domain::ports::{Mail, MailError, Mailer};

/// A message as the adapter delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub to: String,
    /// The one-time code, for code mails.
    pub code: Option<String>,
}

/// Delivers into memory, and wakes whoever waits for mail.
#[derive(Clone, Default)]
pub struct Inbox {
    delivered: Arc<Mutex<Vec<Delivered>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    /// Everything delivered so far.
    pub fn delivered(&self) -> Vec<Delivered> {
        self.delivered.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Waits (up to `timeout`) for a code mailed to `to`.
    pub async fn code_for(&self, to: &str, timeout: std::time::Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            if let Some(code) = self
                .delivered()
                .into_iter()
                .rev()
                .find(|d| d.to == to && d.code.is_some())
                .and_then(|d| d.code)
            {
                return Some(code);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}

#[async_trait]
impl Mailer for Inbox {
    async fn send(&self, _id: uuid::Uuid, mail: &Mail) -> Result<(), MailError> {
        let code = match mail {
            Mail::Code { code, .. } => Some(code.expose().to_owned()),
            _ => None,
        };
        let delivered = Delivered {
            to: mail.recipient().as_str().to_owned(),
            code,
        };
        self.delivered
            .lock()
            .map_err(|_| MailError::Transient(anyhow::anyhow!("the inbox is poisoned")))?
            .push(delivered);
        self.arrived.notify_waiters();
        Ok(())
    }
}

/// passcode on the configured adapters, with `inbox` delivering its mail.
pub async fn app_with(
    settings: passcode_app::Settings,
    inbox: Inbox,
) -> anyhow::Result<passcode_app::Application> {
    passcode_app::Application::builder(settings)
        .mailer(Arc::new(inbox))
        .build()
        .await
}
