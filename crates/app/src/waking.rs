//! Wakes the local mail worker as soon as a request has queued mail, instead of
//! waiting for its next poll. (Mail queued by other instances is found by polling.)

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use passcode_domain::otp::{NewOtp, StoredOtp};
use passcode_domain::ports::{
    Admission, CreateUserError, FirstCode, Issue, Mail, OtpStore, Outbox, OutboxEntry, OutboxStats,
    OutboxStatus, QueuedMail, Spend, UserRepository,
};
use passcode_domain::{
    AuditEvent, EmailAddress, InfraError, NewUser, OtpPurpose, PasswordHash, Registration, User,
    UserId,
};
use tokio::sync::Notify;
use uuid::Uuid;

/// A `UserRepository`, `OtpStore` and `Outbox` that ring `wake` after each
/// successful change that queued mail.
pub(crate) struct Waking<T: ?Sized> {
    pub(crate) inner: Arc<T>,
    pub(crate) wake: Arc<Notify>,
}

#[async_trait]
impl UserRepository for Waking<dyn UserRepository> {
    async fn create<'a>(
        &self,
        user: &NewUser,
        first_code: Option<&'a FirstCode>,
    ) -> Result<User, CreateUserError> {
        let created = self.inner.create(user, first_code).await?;
        if first_code.is_some() {
            self.wake.notify_one();
        }
        Ok(created)
    }
    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<User>, InfraError> {
        self.inner.find_by_email(email).await
    }
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, InfraError> {
        self.inner.find_by_id(id).await
    }
    async fn mark_email_verified(&self, id: UserId, at: DateTime<Utc>) -> Result<(), InfraError> {
        self.inner.mark_email_verified(id, at).await
    }
    async fn set_active(
        &self,
        id: UserId,
        active: bool,
        at: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), InfraError> {
        self.inner.set_active(id, active, at, audit).await
    }
    async fn delete(
        &self,
        id: UserId,
        email: &EmailAddress,
        goodbye: &Mail,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let deleted = self.inner.delete(id, email, goodbye, now, audit).await?;
        if deleted {
            self.wake.notify_one();
        }
        Ok(deleted)
    }
    async fn set_password<'a>(
        &self,
        id: UserId,
        hash: &PasswordHash,
        verify_email: bool,
        at: DateTime<Utc>,
        audit: &AuditEvent,
        notice: Option<&'a Mail>,
        give_back: passcode_domain::ports::GiveBack<'a>,
    ) -> Result<(), InfraError> {
        self.inner
            .set_password(id, hash, verify_email, at, audit, notice, give_back)
            .await?;
        if notice.is_some() {
            self.wake.notify_one();
        }
        Ok(())
    }
}

#[async_trait]
impl OtpStore for Waking<dyn OtpStore> {
    async fn replace<'a>(
        &self,
        otp: &NewOtp,
        mail: &Mail,
        issue: &Issue<'a>,
    ) -> Result<Admission, InfraError> {
        let admission = self.inner.replace(otp, mail, issue).await?;
        if admission == Admission::Allowed {
            self.wake.notify_one();
        }
        Ok(admission)
    }
    async fn add(&self, otp: &NewOtp, mail: &Mail, audit: &AuditEvent) -> Result<(), InfraError> {
        self.inner.add(otp, mail, audit).await?;
        self.wake.notify_one();
        Ok(())
    }
    async fn decoy<'a>(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
        now: DateTime<Utc>,
        issue: &Issue<'a>,
    ) -> Result<Admission, InfraError> {
        let admission = self.inner.decoy(email, purpose, now, issue).await?;
        // Nothing to send but a notice: no other wake-up, which would be work a real
        // code causes later.
        if admission == Admission::Allowed && issue.notice.is_some() {
            self.wake.notify_one();
        }
        Ok(admission)
    }
    async fn find(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
    ) -> Result<Option<StoredOtp>, InfraError> {
        self.inner.find(email, purpose).await
    }
    async fn count_try(
        &self,
        email: &EmailAddress,
        purpose: OtpPurpose,
        now: DateTime<Utc>,
        max: u32,
        budgets: &[(String, passcode_domain::ports::Limit)],
    ) -> Result<passcode_domain::ports::Tries, InfraError> {
        self.inner
            .count_try(email, purpose, now, max, budgets)
            .await
    }
    async fn complete_registration<'a>(
        &self,
        spend: &Spend<'a>,
        user: UserId,
        registration: &Registration,
        audit: &AuditEvent,
    ) -> Result<bool, InfraError> {
        self.inner
            .complete_registration(spend, user, registration, audit)
            .await
    }
    async fn consume<'a>(&self, spend: &Spend<'a>) -> Result<bool, InfraError> {
        let spent = self.inner.consume(spend).await?;
        // The spend's account change may have queued its mail.
        if spent && spend.account.is_some_and(|change| change.mail().is_some()) {
            self.wake.notify_one();
        }
        Ok(spent)
    }
}

#[async_trait]
impl Outbox for Waking<dyn Outbox> {
    async fn stats(&self) -> Result<OutboxStats, InfraError> {
        self.inner.stats().await
    }
    async fn enqueue(
        &self,
        mail: &Mail,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), InfraError> {
        self.inner.enqueue(mail, now, expires_at).await?;
        self.wake.notify_one();
        Ok(())
    }
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        max: u32,
    ) -> Result<Vec<QueuedMail>, InfraError> {
        self.inner.claim(now, lease, max).await
    }
    async fn mark_sent(&self, ids: &[Uuid], now: DateTime<Utc>) -> Result<(), InfraError> {
        self.inner.mark_sent(ids, now).await
    }
    async fn retry_later(
        &self,
        id: Uuid,
        next: DateTime<Utc>,
        error: &str,
    ) -> Result<(), InfraError> {
        self.inner.retry_later(id, next, error).await
    }
    async fn finish(
        &self,
        id: Uuid,
        status: OutboxStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.inner.finish(id, status, error, now).await
    }
    async fn pending(&self, limit: u32) -> Result<Vec<OutboxEntry>, InfraError> {
        self.inner.pending(limit).await
    }
    async fn retry_failed(&self, now: DateTime<Utc>) -> Result<u64, InfraError> {
        self.inner.retry_failed(now).await
    }
}
