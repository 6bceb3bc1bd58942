//! The outbox: mail waiting to be delivered, stored with the change that caused it,
//! so that no request waits for SMTP and no message is lost when SMTP is down.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::InfraError;
use crate::ports::Mail;

/// A message claimed for delivery.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    pub id: Uuid,
    pub mail: Mail,
    /// Delivery attempts so far, this one included.
    pub attempts: u32,
    /// After this, the message is pointless (its code has expired) and is not sent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    Queued,
    Sending,
    Sent,
    Failed,
    Expired,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Sending,
            Self::Sent,
            Self::Failed,
            Self::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// A message as listed for operators: no code, no body.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: Uuid,
    pub recipient: String,
    pub kind: String,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// What operators watch: mail not yet sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Queued or being sent.
    pub unsent: u64,
    /// When the oldest unsent message was queued.
    pub oldest_unsent_at: Option<DateTime<Utc>>,
    /// Given up (kept with their error).
    pub failed: u64,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Counts of unsent and failed messages, and the age of the oldest unsent one.
    async fn stats(&self) -> Result<OutboxStats, InfraError>;

    /// Queues `mail` for delivery from `now`; it is not sent after `expires_at`.
    async fn enqueue(
        &self,
        mail: &Mail,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), InfraError>;

    /// Claims up to `max` messages due at `now` (queued and due, or claimed by a
    /// worker whose lease ran out), leasing them for `lease`. Each message is claimed
    /// by one caller only, across instances.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: u32,
    ) -> Result<Vec<QueuedMail>, InfraError>;

    /// Delivered: the bodies (and their codes) are erased, all in one write.
    async fn mark_sent(&self, ids: &[Uuid], now: DateTime<Utc>) -> Result<(), InfraError>;

    /// Failed for now: due again at `next_attempt_at`.
    async fn retry_later(
        &self,
        id: Uuid,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), InfraError>;

    /// Given up (`Failed`, keeping `error`) or pointless (`Expired`): the body is erased.
    async fn finish(
        &self,
        id: Uuid,
        status: OutboxStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError>;

    /// Messages not yet sent (queued, sending, failed), oldest first, for operators.
    async fn pending(&self, limit: u32) -> Result<Vec<OutboxEntry>, InfraError>;

    /// Queues failed messages that still have a body again. Returns how many.
    async fn retry_failed(&self, now: DateTime<Utc>) -> Result<u64, InfraError>;
}
