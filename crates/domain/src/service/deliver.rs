//! Delivery of queued mail: claim what is due, send it, and record the outcome.
//! Transient failures are retried with exponential backoff and jitter; permanent
//! ones, and those out of tries, are kept as failed with their error; a message whose
//! code has expired is not sent at all.

use std::sync::Arc;

use chrono::Duration;
use futures_util::StreamExt;
use rand::RngExt;
use uuid::Uuid;

use crate::InfraError;
use crate::ports::{Clock, MailError, Mailer, Outbox, OutboxStatus, QueuedMail};

#[derive(Debug, Clone, Copy)]
pub struct DeliverySettings {
    /// Messages one claim takes, and one write marks sent.
    pub batch: u32,
    /// Messages sent at once, out of a claim.
    pub concurrency: u32,
    /// Delivery attempts before a message is marked failed.
    pub max_attempts: u32,
    /// How long a claim holds; a worker that died is replaced after this.
    pub lease: Duration,
    /// Wait after the first failure; doubled after each next one, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// The delivery use case, run by the background worker.
#[derive(Clone)]
pub struct MailDelivery {
    outbox: Arc<dyn Outbox>,
    mailer: Arc<dyn Mailer>,
    clock: Arc<dyn Clock>,
    settings: DeliverySettings,
}

impl std::fmt::Debug for MailDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailDelivery")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MailDelivery {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        mailer: Arc<dyn Mailer>,
        clock: Arc<dyn Clock>,
        settings: DeliverySettings,
    ) -> Self {
        Self {
            outbox,
            mailer,
            clock,
            settings,
        }
    }

    pub fn settings(&self) -> &DeliverySettings {
        &self.settings
    }

    /// Claims due messages and delivers them, `concurrency` at a time, then marks those
    /// sent in one write. Returns how many were claimed.
    pub async fn deliver_due(&self) -> Result<usize, InfraError> {
        let claimed = self
            .outbox
            .claim(
                self.clock.now(),
                self.settings.lease,
                self.settings.batch.max(1),
            )
            .await?;
        let count = claimed.len();
        let mut sent = Vec::with_capacity(count);
        let mut failed = None;
        let outcomes: Vec<_> = futures_util::stream::iter(claimed)
            .map(|queued| self.deliver(queued))
            .buffer_unordered(self.settings.concurrency.max(1) as usize)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Ok(Some(id)) => sent.push(id),
                Ok(None) => {}
                Err(error) => failed = failed.or(Some(error)),
            }
        }
        // Whatever else failed, what was delivered is recorded, or it would be sent again.
        if !sent.is_empty() {
            self.outbox.mark_sent(&sent, self.clock.now()).await?;
        }
        failed.map_or(Ok(count), Err)
    }

    /// Sends one message and records a failure or expiry; `Some(id)` if it was sent,
    /// for the caller to record with the others.
    async fn deliver(&self, queued: QueuedMail) -> Result<Option<Uuid>, InfraError> {
        let outbox = &self.outbox;
        if queued.expires_at.is_some_and(|at| at <= self.clock.now()) {
            return outbox
                .finish(queued.id, OutboxStatus::Expired, None, self.clock.now())
                .await
                .map(|()| None);
        }
        let recorded = match self.mailer.send(queued.id, &queued.mail).await {
            Ok(()) => return Ok(Some(queued.id)),
            Err(MailError::Transient(error)) if queued.attempts < self.settings.max_attempts => {
                let next = self.clock.now() + self.backoff(queued.attempts);
                outbox
                    .retry_later(queued.id, next, &format!("{error:#}"))
                    .await
            }
            Err(MailError::Transient(error) | MailError::Permanent(error)) => {
                outbox
                    .finish(
                        queued.id,
                        OutboxStatus::Failed,
                        Some(format!("{error:#}")),
                        self.clock.now(),
                    )
                    .await
            }
        };
        recorded.map(|()| None)
    }

    /// `base × 2^(attempts−1)`, capped, then between half and all of it at random
    /// so that messages failed together do not retry together.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let base = self.settings.backoff_base.num_milliseconds().max(1);
        let max = self.settings.backoff_max.num_milliseconds().max(base);
        let exponential = base
            .saturating_mul(1_i64 << attempts.saturating_sub(1).min(30))
            .min(max);
        let jittered = rand::rng().random_range(exponential / 2..=exponential);
        Duration::milliseconds(jittered.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{Mail, MockClock, MockMailer, MockOutbox};
    use crate::{EmailAddress, OtpCode, OtpPurpose};
    use chrono::{DateTime, Utc};
    use futures_executor::block_on;
    use mockall::predicate::eq;
    use uuid::Uuid;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn settings() -> DeliverySettings {
        DeliverySettings {
            batch: 4,
            concurrency: 4,
            max_attempts: 3,
            lease: Duration::seconds(60),
            backoff_base: Duration::seconds(10),
            backoff_max: Duration::seconds(60),
        }
    }

    fn queued(attempts: u32, expires_in: Option<Duration>) -> QueuedMail {
        QueuedMail {
            id: Uuid::from_u128(1),
            mail: Mail::Code {
                to: EmailAddress::parse("ada@example.com").unwrap(),
                full_name: "Ada".into(),
                code: OtpCode::new("123456".into()),
                purpose: OtpPurpose::VerifyEmail,
                valid_for: Duration::minutes(10),
            },
            attempts,
            expires_at: expires_in.map(|d| now() + d),
        }
    }

    fn delivery(outbox: MockOutbox, mailer: MockMailer) -> MailDelivery {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        MailDelivery::new(
            Arc::new(outbox),
            Arc::new(mailer),
            Arc::new(clock),
            settings(),
        )
    }

    /// A claim of `n` messages with ids 1 to `n`.
    fn claim_numbered(outbox: &mut MockOutbox, n: u128) {
        let batch: Vec<QueuedMail> = (1..=n)
            .map(|n| QueuedMail {
                id: Uuid::from_u128(n),
                ..queued(1, None)
            })
            .collect();
        outbox.expect_claim().return_once(move |_, _, _| Ok(batch));
    }

    fn claim_one(outbox: &mut MockOutbox, message: QueuedMail) {
        outbox
            .expect_claim()
            .with(eq(now()), eq(Duration::seconds(60)), eq(4))
            .return_once(move |_, _, _| Ok(vec![message]));
    }

    #[test]
    fn delivered_mail_is_marked_sent() {
        let (mut outbox, mut mailer) = (MockOutbox::new(), MockMailer::new());
        claim_one(&mut outbox, queued(1, Some(Duration::minutes(5))));
        mailer.expect_send().times(1).returning(|_, _| Ok(()));
        outbox
            .expect_mark_sent()
            .withf(|ids, at| ids == [Uuid::from_u128(1)] && *at == now())
            .times(1)
            .returning(|_, _| Ok(()));
        assert_eq!(block_on(delivery(outbox, mailer).deliver_due()).unwrap(), 1);
    }

    /// A mailer whose sends each wait once, counting how many are under way at once.
    #[derive(Default)]
    struct Counting {
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Mailer for Counting {
        async fn send(&self, _: Uuid, _: &Mail) -> Result<(), MailError> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            let mut waited = false;
            std::future::poll_fn(|cx| {
                if std::mem::replace(&mut waited, true) {
                    std::task::Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
            })
            .await;
            self.now.fetch_sub(1, SeqCst);
            Ok(())
        }
    }

    #[test]
    fn a_claim_is_sent_concurrency_at_a_time_and_marked_sent_in_one_write() {
        let mut outbox = MockOutbox::new();
        claim_numbered(&mut outbox, 10);
        outbox
            .expect_mark_sent()
            .withf(|ids, _| {
                let mut ids = ids.to_vec();
                ids.sort();
                ids == (1..=10).map(Uuid::from_u128).collect::<Vec<_>>()
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let mailer = Arc::new(Counting::default());
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now());
        let settings = DeliverySettings {
            batch: 10,
            concurrency: 3,
            ..settings()
        };
        let delivery =
            MailDelivery::new(Arc::new(outbox), mailer.clone(), Arc::new(clock), settings);
        assert_eq!(block_on(delivery.deliver_due()).unwrap(), 10);
        assert_eq!(mailer.most.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn a_batch_delivered_is_marked_sent_in_one_write_even_if_another_fails() {
        let (mut outbox, mut mailer) = (MockOutbox::new(), MockMailer::new());
        claim_numbered(&mut outbox, 3);
        mailer.expect_send().times(3).returning(|id, _| {
            if id == Uuid::from_u128(2) {
                Err(MailError::Transient(anyhow::anyhow!("421 try later")))
            } else {
                Ok(())
            }
        });
        // Recording the failure fails: the two sent are still marked, then the error shows.
        outbox
            .expect_retry_later()
            .times(1)
            .returning(|_, _, _| Err(InfraError::Unavailable(anyhow::anyhow!("down"))));
        outbox
            .expect_mark_sent()
            .withf(|ids, _| ids == [Uuid::from_u128(1), Uuid::from_u128(3)])
            .times(1)
            .returning(|_, _| Ok(()));
        assert!(block_on(delivery(outbox, mailer).deliver_due()).is_err());
    }

    #[test]
    fn a_transient_failure_is_retried_later_with_backoff() {
        let (mut outbox, mut mailer) = (MockOutbox::new(), MockMailer::new());
        claim_one(&mut outbox, queued(2, Some(Duration::minutes(5))));
        mailer
            .expect_send()
            .returning(|_, _| Err(MailError::Transient(anyhow::anyhow!("421 try later"))));
        outbox
            .expect_retry_later()
            .withf(|_, next, error| {
                // Second failure: 20 s, jittered to between 10 and 20 s.
                *next >= now() + Duration::seconds(10)
                    && *next <= now() + Duration::seconds(20)
                    && error.contains("421")
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        block_on(delivery(outbox, mailer).deliver_due()).unwrap();
    }

    #[test]
    fn a_permanent_failure_is_kept_as_failed_with_its_error() {
        let (mut outbox, mut mailer) = (MockOutbox::new(), MockMailer::new());
        claim_one(&mut outbox, queued(1, None));
        mailer
            .expect_send()
            .returning(|_, _| Err(MailError::Permanent(anyhow::anyhow!("550 no such user"))));
        outbox.expect_retry_later().never();
        outbox
            .expect_finish()
            .withf(|_, status, error, _| {
                *status == OutboxStatus::Failed
                    && error.as_deref().is_some_and(|e| e.contains("550"))
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        block_on(delivery(outbox, mailer).deliver_due()).unwrap();
    }

    #[test]
    fn a_message_out_of_tries_is_marked_failed() {
        let (mut outbox, mut mailer) = (MockOutbox::new(), MockMailer::new());
        claim_one(&mut outbox, queued(3, None));
        mailer
            .expect_send()
            .returning(|_, _| Err(MailError::Transient(anyhow::anyhow!("timeout"))));
        outbox.expect_retry_later().never();
        outbox
            .expect_finish()
            .withf(|_, status, _, _| *status == OutboxStatus::Failed)
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        block_on(delivery(outbox, mailer).deliver_due()).unwrap();
    }

    #[test]
    fn a_message_whose_code_expired_is_not_sent() {
        let (mut outbox, mut mailer) = (MockOutbox::new(), MockMailer::new());
        claim_one(&mut outbox, queued(1, Some(Duration::zero())));
        mailer.expect_send().never();
        outbox
            .expect_finish()
            .withf(|_, status, error, _| *status == OutboxStatus::Expired && error.is_none())
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        block_on(delivery(outbox, mailer).deliver_due()).unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let d = delivery(MockOutbox::new(), MockMailer::new());
        for (attempts, full) in [(1, 10), (2, 20), (3, 40), (4, 60), (20, 60)] {
            for _ in 0..20 {
                let wait = d.backoff(attempts);
                assert!(
                    wait >= Duration::seconds(full) / 2 && wait <= Duration::seconds(full),
                    "{attempts}: {wait}"
                );
            }
        }
    }
}
