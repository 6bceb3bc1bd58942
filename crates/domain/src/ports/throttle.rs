//! Shared, atomic rate limits: the guessing budget, resend cooldown and cap, and
//! per-client limits. State lives behind this port (the database), so every instance
//! of the service sees the same counts.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::InfraError;

/// A limit on events for one key: at most `limit` per `window` (the window starts at
/// the first event counted after the previous one ended), and at least `cooldown`
/// between two events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub limit: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

/// Events counted on `keys` at `reserved_at` that turned out not to be spent, to give
/// back on their own ([`Throttle::release`]) or in another write's transaction (a
/// right password's session, a right code's spend): each key gets one back, never to
/// a window that began after `reserved_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveBack<'a> {
    /// In the order they were reserved in.
    pub keys: &'a [String],
    pub reserved_at: DateTime<Utc>,
}

impl GiveBack<'_> {
    /// Nothing to give back.
    pub const NONE: GiveBack<'static> = GiveBack {
        keys: &[],
        reserved_at: DateTime::<Utc>::MIN_UTC,
    };
}

impl Default for GiveBack<'_> {
    fn default() -> Self {
        GiveBack::NONE
    }
}

/// The answer to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted.
    Allowed,
    /// Not counted: over the limit or within the cooldown, free again after this long.
    Denied { retry_after: Duration },
}

/// The answer to an attempt on several budgets at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admissions {
    /// Counted on every budget.
    Allowed,
    /// Counted on none: `budgets[budget]` refused, free again after `retry_after`.
    Denied {
        budget: usize,
        retry_after: Duration,
    },
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Throttle: Send + Sync {
    /// Counts one event for `key` at `now` if `limit` allows it, in one atomic step:
    /// of any number of concurrent callers, no more than the limit are `Allowed`.
    async fn acquire(
        &self,
        key: &str,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> Result<Admission, InfraError>;

    /// Counts one event for each of `budgets` if every one allows it; otherwise none
    /// (an adapter that counts them one by one gives the earlier back), and names the
    /// first that refused. The same guarantee as [`Throttle::acquire`] for each. Meant
    /// to be one write where the database allows.
    async fn acquire_all(
        &self,
        budgets: &[(String, Limit)],
        now: DateTime<Utc>,
    ) -> Result<Admissions, InfraError>;

    /// Gives back one event of each of `give_back`'s keys, in one write, in the order
    /// given: the order they were reserved in, so that concurrent requests lock them
    /// in the same order. Never below zero, and never to a window that began after
    /// `give_back.reserved_at`: that window did not count the event, so a late
    /// give-back must not free one of its own.
    async fn release<'a>(&self, give_back: GiveBack<'a>) -> Result<(), InfraError>;

    /// [`Throttle::release`], if the store can write at once (a free connection, and
    /// on SQLite the writer's turn); `Ok(false)` without waiting when it cannot. For
    /// a request that already failed: a give-back that queued again behind the demand
    /// that made it fail would double that demand and the failed answer's wait.
    async fn release_at_once<'a>(&self, give_back: GiveBack<'a>) -> Result<bool, InfraError> {
        self.release(give_back).await.map(|()| true)
    }

    /// Deletes limit state and codes that no longer matter at `now` (windows and
    /// cooldowns that ended at least `retention` ago; codes expired that long ago).
    /// Returns the number of rows removed.
    async fn purge(&self, now: DateTime<Utc>, retention: Duration) -> Result<u64, InfraError>;
}

/// The limit a bucket key belongs to, for metrics: its prefix, and for budgets kept
/// per (address, client) as well as per address, which of the two (a client may be an
/// IPv6 /64, colons and all).
pub fn limit_name(key: &str) -> &'static str {
    let parts = key.split(':').count();
    match (key.split(':').next().unwrap_or_default(), parts) {
        ("guess", 3..) => "guesses_per_client",
        ("guess", _) => "guesses",
        ("login", 3..) => "login_failures_per_client",
        ("login", _) => "login_failures",
        ("send", _) => "sends",
        ("client", _) => "client_requests",
        ("password-check", _) => "password_checks",
        _ => "other",
    }
}
