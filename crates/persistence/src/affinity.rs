//! Connection groups, one per HTTP worker thread (PostgreSQL and MariaDB).
//!
//! A connection's socket belongs to the runtime that opened it: tokio-postgres drives
//! each connection from a task on that runtime, and any driver's readiness events come
//! from that runtime's reactor. Each HTTP worker is a thread with a runtime of its
//! own, so a request on one worker using a connection opened by another wakes that
//! other thread at every round trip (the request to the driving task, the answer
//! back). Split into one group per worker, a store lends each worker the connections
//! its own thread opened, and borrows from another group only when its own has none
//! to spare.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool::Status;
use deadpool::managed::{BuildError, Manager, Object, Pool, PoolError, TimeoutType, Timeouts};

use crate::DatabaseSettings;

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Numbers the calling thread from `next` (once; later calls keep its number). Call
/// it on each HTTP worker's own thread, from the app factory that runs there.
pub fn number_this_thread(next: &AtomicUsize) {
    INDEX.with(|index| {
        if index.get().is_none() {
            index.set(Some(next.fetch_add(1, Ordering::Relaxed)));
        }
    });
}

/// The calling thread's group of `groups`: by its number, or the first for a thread
/// never numbered (background tasks, tests).
pub(crate) fn group(groups: usize) -> usize {
    INDEX.with(Cell::get).unwrap_or(0) % groups.max(1)
}

/// `max_connections` shared out among `groups` pools (at most one per connection).
pub(crate) struct Groups<M: Manager> {
    pools: Arc<[Pool<M>]>,
    /// A checkout that takes an idle connection or opens one, and does not wait.
    at_once: Timeouts,
}

impl<M: Manager> Clone for Groups<M> {
    fn clone(&self) -> Self {
        Self {
            pools: Arc::clone(&self.pools),
            at_once: self.at_once,
        }
    }
}

impl<M: Manager> Groups<M> {
    /// The groups of `settings`, each pool's manager made by `manager`.
    pub(crate) fn build(
        settings: &DatabaseSettings,
        manager: impl Fn() -> M,
    ) -> Result<Self, BuildError> {
        let max = settings.max_connections.max(1);
        let count = settings.groups.clamp(1, max);
        let pools = (0..count)
            .map(|group| {
                // As evenly as they go.
                let size = max / count + usize::from(group < max % count);
                Pool::builder(manager())
                    .max_size(size)
                    .wait_timeout(Some(settings.acquire_timeout))
                    .create_timeout(Some(settings.acquire_timeout))
                    .recycle_timeout(Some(settings.acquire_timeout))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            pools: pools.into(),
            at_once: Timeouts {
                wait: Some(std::time::Duration::ZERO),
                create: Some(settings.acquire_timeout),
                recycle: Some(settings.acquire_timeout),
            },
        })
    }

    /// A connection of this thread's group; if it has none to spare at once,
    /// another group's; if none has, this group's when one is returned.
    pub(crate) async fn get(&self) -> Result<Object<M>, PoolError<M::Error>> {
        let count = self.pools.len();
        if count > 1
            && let Some(conn) = self.get_at_once().await?
        {
            return Ok(conn);
        }
        self.pools[group(count)].get().await
    }

    /// A connection as [`Groups::get`] would lend it, if one is idle or can be opened
    /// now; `None` rather than waiting for one to be returned.
    pub(crate) async fn get_at_once(&self) -> Result<Option<Object<M>>, PoolError<M::Error>> {
        let count = self.pools.len();
        let own = group(count);
        for group in (0..count).map(|k| (own + k) % count) {
            match self.pools[group].timeout_get(&self.at_once).await {
                Err(PoolError::Timeout(TimeoutType::Wait)) => {}
                taken => return taken.map(Some),
            }
        }
        Ok(None)
    }

    /// How many groups there are.
    pub(crate) fn count(&self) -> usize {
        self.pools.len()
    }

    /// All groups' pools together.
    pub(crate) fn status(&self) -> Status {
        let mut total = Status {
            max_size: 0,
            size: 0,
            available: 0,
            waiting: 0,
        };
        for status in self.pools.iter().map(Pool::status) {
            total.max_size += status.max_size;
            total.size += status.size;
            total.available += status.available;
            total.waiting += status.waiting;
        }
        total
    }
}
