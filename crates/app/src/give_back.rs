//! Tries given back later, when a failed request could not give them back at once.
//!
//! A request that reserved tries (a login, a guess) and then failed for the service's
//! own reasons (the store busy, the hashing pool full) gives them back only if the
//! store can write at once (`Throttle::release_at_once`): queued behind the demand
//! that made it fail, the give-back would double that demand and the failed answer's
//! wait. Dropped, though, the tries stay counted, and a client whose requests failed
//! through no fault of its own finds its budget spent. So what cannot be written at
//! once waits here, in a bounded queue, and one task writes it after the answer has
//! gone: at most one write of this kind at a time, whatever the load.
//! A graceful shutdown writes what is still queued before the process ends
//! ([`GiveBackTask::finish`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use passcode_domain::InfraError;
use passcode_domain::ports::{Admission, Admissions, GiveBack, Limit, Throttle};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// Failed requests whose tries may wait at once; past that, a give-back is dropped
/// (and counted), as before this queue.
const QUEUED: usize = 1024;
/// Writes of one give-back before it is dropped, and the pause between two.
const TRIES: u32 = 3;
const PAUSE: Duration = Duration::from_secs(1);

/// A `Throttle` whose `release_at_once` queues what the store cannot write at once.
pub(crate) struct GiveBackLater {
    inner: Arc<dyn Throttle>,
    queue: mpsc::Sender<Queued>,
}

/// A give-back waiting in the queue, owned: its keys, and when they were counted, so
/// that one written after its window ended leaves the next window alone.
struct Queued {
    keys: Vec<String>,
    reserved_at: DateTime<Utc>,
}

impl Queued {
    fn give_back(&self) -> GiveBack<'_> {
        GiveBack {
            keys: &self.keys,
            reserved_at: self.reserved_at,
        }
    }
}

/// The task that writes the queue, to finish at shutdown.
pub(crate) struct GiveBackTask {
    queue: mpsc::Sender<Queued>,
    closing: Arc<Notify>,
    task: JoinHandle<()>,
}

impl GiveBackLater {
    /// Must run inside a tokio runtime: spawns the task that writes the queue.
    pub(crate) fn new(inner: Arc<dyn Throttle>) -> (Self, GiveBackTask) {
        Self::with(inner, QUEUED, PAUSE)
    }

    fn with(inner: Arc<dyn Throttle>, capacity: usize, pause: Duration) -> (Self, GiveBackTask) {
        let (queue, mut pending) = mpsc::channel::<Queued>(capacity);
        let closing = Arc::new(Notify::new());
        let store = inner.clone();
        let close = closing.clone();
        let task = tokio::spawn(async move {
            let mut open = true;
            loop {
                let queued = if open {
                    tokio::select! {
                        queued = pending.recv() => queued,
                        () = close.notified() => {
                            // What is queued is still received, then `None`.
                            pending.close();
                            open = false;
                            continue;
                        }
                    }
                } else {
                    pending.recv().await
                };
                let Some(queued) = queued else { return };
                write(store.as_ref(), &queued, pause).await;
            }
        });
        let finish = GiveBackTask {
            queue: queue.clone(),
            closing,
            task,
        };
        (Self { inner, queue }, finish)
    }
}

impl GiveBackTask {
    /// Takes no more give-backs and writes those queued, for at most `within`; what
    /// is left then is dropped (counted, and logged). For after the server has
    /// stopped: its requests have ended, so nothing more is queued.
    pub(crate) async fn finish(self, within: Duration) {
        let mut task = self.task;
        self.closing.notify_one();
        if tokio::time::timeout(within, &mut task).await.is_ok() {
            return;
        }
        task.abort();
        // The queued, and the one whose write was cut short.
        let left = self.queue.max_capacity() - self.queue.capacity() + 1;
        metrics::counter!("passcode_give_backs_total", "when" => "dropped")
            .increment(u64::try_from(left).unwrap_or(u64::MAX));
        tracing::warn!(
            left,
            "failed requests' tries still queued at shutdown were not given back"
        );
    }
}

/// Gives `queued` back, waiting for the store as any write does; tries `TRIES` times.
async fn write(store: &dyn Throttle, queued: &Queued, pause: Duration) {
    for attempt in 1..=TRIES {
        match store.release(queued.give_back()).await {
            Ok(()) => {
                metrics::counter!("passcode_give_backs_total", "when" => "later").increment(1);
                return;
            }
            // The keys name addresses: only the error is logged.
            Err(error) if attempt == TRIES => {
                metrics::counter!("passcode_give_backs_total", "when" => "dropped").increment(1);
                tracing::warn!(%error, "a failed request's tries were not given back");
            }
            Err(_) => tokio::time::sleep(pause).await,
        }
    }
}

#[async_trait]
impl Throttle for GiveBackLater {
    async fn acquire(
        &self,
        key: &str,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> Result<Admission, InfraError> {
        self.inner.acquire(key, limit, now).await
    }

    async fn acquire_all(
        &self,
        budgets: &[(String, Limit)],
        now: DateTime<Utc>,
    ) -> Result<Admissions, InfraError> {
        self.inner.acquire_all(budgets, now).await
    }

    async fn release<'a>(&self, give_back: GiveBack<'a>) -> Result<(), InfraError> {
        self.inner.release(give_back).await
    }

    /// `true` once the tries are given back or queued to be; `false` (or the store's
    /// error) only when the queue is full.
    async fn release_at_once<'a>(&self, give_back: GiveBack<'a>) -> Result<bool, InfraError> {
        let now = self.inner.release_at_once(give_back).await;
        if let Ok(true) = now {
            return now;
        }
        let queued = Queued {
            keys: give_back.keys.to_vec(),
            reserved_at: give_back.reserved_at,
        };
        match self.queue.try_send(queued) {
            Ok(()) => Ok(true),
            Err(_) => {
                metrics::counter!("passcode_give_backs_total", "when" => "dropped").increment(1);
                now
            }
        }
    }

    async fn purge(
        &self,
        now: DateTime<Utc>,
        retention: chrono::Duration,
    ) -> Result<u64, InfraError> {
        self.inner.purge(now, retention).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use passcode_persistence::{DatabaseSettings, Store};
    use tokio::sync::Semaphore;

    use super::*;

    /// A real store that is busy while `busy` is set: its `release_at_once` then gives
    /// nothing back, and its `release` waits until `busy` is cleared, as a write waits
    /// for the writer. Its first `failures` releases fail.
    struct Busy {
        store: Arc<dyn Throttle>,
        busy: AtomicBool,
        freed: Semaphore,
        failures: AtomicU32,
        released: Mutex<Vec<Vec<String>>>,
    }

    impl Busy {
        fn new(store: Arc<dyn Throttle>, failures: u32) -> Arc<Self> {
            Arc::new(Self {
                store,
                busy: AtomicBool::new(true),
                freed: Semaphore::new(0),
                failures: AtomicU32::new(failures),
                released: Mutex::new(Vec::new()),
            })
        }

        fn free(&self) {
            self.busy.store(false, Ordering::SeqCst);
            self.freed.add_permits(Semaphore::MAX_PERMITS);
        }
    }

    /// Only the give-backs are the shim's own; the tests count on the store itself.
    #[async_trait]
    impl Throttle for Busy {
        async fn acquire(
            &self,
            _: &str,
            _: Limit,
            _: DateTime<Utc>,
        ) -> Result<Admission, InfraError> {
            unreachable!("the queue only gives back")
        }
        async fn acquire_all(
            &self,
            _: &[(String, Limit)],
            _: DateTime<Utc>,
        ) -> Result<Admissions, InfraError> {
            unreachable!("the queue only gives back")
        }
        async fn release<'a>(&self, give_back: GiveBack<'a>) -> Result<(), InfraError> {
            let _turn = self.freed.acquire().await.unwrap();
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(InfraError::Unavailable(anyhow::anyhow!("the store failed")));
            }
            self.released.lock().unwrap().push(give_back.keys.to_vec());
            self.store.release(give_back).await
        }
        async fn release_at_once<'a>(&self, give_back: GiveBack<'a>) -> Result<bool, InfraError> {
            if self.busy.load(Ordering::SeqCst) {
                return Ok(false);
            }
            self.store.release_at_once(give_back).await
        }
        async fn purge(&self, _: DateTime<Utc>, _: chrono::Duration) -> Result<u64, InfraError> {
            unreachable!("the queue only gives back")
        }
    }

    const ONE: Limit = Limit {
        limit: 1,
        window: chrono::Duration::hours(1),
        cooldown: chrono::Duration::zero(),
    };

    /// The busy shim over a migrated SQLite store, and the queue over the shim.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn Throttle>,
        busy: Arc<Busy>,
        later: GiveBackLater,
        task: GiveBackTask,
    }

    async fn fixture(failures: u32, capacity: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseSettings::sqlite(dir.path().join("later.db"))).unwrap();
        store.migrate().await.unwrap();
        let store = store.throttle();
        let busy = Busy::new(store.clone(), failures);
        let (later, task) = GiveBackLater::with(busy.clone(), capacity, Duration::from_millis(10));
        Fixture {
            _dir: dir,
            store,
            busy,
            later,
            task,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    /// Whether the first key's budget (of one) has room: counts it if so.
    async fn counts(store: &dyn Throttle) -> bool {
        store.acquire(&keys()[0], ONE, now()).await.unwrap() == Admission::Allowed
    }

    /// `keys`, counted at `at`, to give back.
    fn counted(keys: &[String], at: DateTime<Utc>) -> GiveBack<'_> {
        GiveBack {
            keys,
            reserved_at: at,
        }
    }

    /// Offers the first key's try, counted at `now()`, back through `later`: whether
    /// it was given back or queued.
    async fn offer_first(later: &GiveBackLater) -> bool {
        later
            .release_at_once(counted(&keys()[..1], now()))
            .await
            .unwrap()
    }

    fn keys() -> Vec<String> {
        vec![
            "login:ada@example.com:10.0.0.1".into(),
            "login:ada@example.com".into(),
        ]
    }

    async fn spent(store: &dyn Throttle, now: DateTime<Utc>) -> bool {
        let budgets: Vec<_> = keys().into_iter().map(|key| (key, ONE)).collect();
        match store.acquire_all(&budgets, now).await.unwrap() {
            Admissions::Allowed => {
                store.release(counted(&keys(), now)).await.unwrap();
                false
            }
            Admissions::Denied { .. } => true,
        }
    }

    /// Eventually true, or fails after 10 s.
    async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check().await {
            assert!(tokio::time::Instant::now() < deadline, "{what} after 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tries_the_busy_store_could_not_take_are_given_back_once_it_is_free() {
        let Fixture {
            store, busy, later, ..
        } = &fixture(0, 8).await;
        let budgets: Vec<_> = keys().into_iter().map(|key| (key, ONE)).collect();
        assert_eq!(
            store.acquire_all(&budgets, now()).await.unwrap(),
            Admissions::Allowed
        );
        assert!(spent(store.as_ref(), now()).await, "the try is counted");

        assert!(
            later
                .release_at_once(counted(&keys(), now()))
                .await
                .unwrap(),
            "queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            spent(store.as_ref(), now()).await,
            "still counted while the store is busy"
        );

        busy.free();
        eventually("the try given back", async || {
            !spent(store.as_ref(), now()).await
        })
        .await;
        assert_eq!(
            *busy.released.lock().unwrap(),
            vec![keys()],
            "given back once"
        );
    }

    /// Queued for so long that its window ended and the next one counted an event:
    /// written at last, it leaves that event alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_give_back_written_after_its_window_leaves_the_next_window_alone() {
        let queued = one_try_queued().await;
        let (store, busy) = (&queued.store, &queued.busy);
        let next = now() + ONE.window;
        assert_eq!(
            store.acquire(&keys()[0], ONE, next).await.unwrap(),
            Admission::Allowed,
            "the next window's event"
        );
        busy.free();
        // Returns once the queue is written.
        queued.task.finish(Duration::from_secs(10)).await;
        assert_eq!(*busy.released.lock().unwrap(), vec![keys()[..1].to_vec()]);
        assert!(
            matches!(
                store.acquire(&keys()[0], ONE, next).await.unwrap(),
                Admission::Denied { .. }
            ),
            "the next window keeps its event"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_tried_again() {
        let Fixture {
            store, busy, later, ..
        } = &fixture(TRIES - 1, 8).await;
        assert!(counts(store.as_ref()).await);
        assert!(offer_first(later).await);
        busy.free();
        eventually("given back on the last try", async || {
            counts(store.as_ref()).await
        })
        .await;
        assert_eq!(
            busy.failures.load(Ordering::SeqCst),
            0,
            "both failures were met"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_gives_nothing_back_and_says_so() {
        let Fixture { busy, later, .. } = &fixture(0, 1).await;
        // The task takes the first off the queue and waits for the store with it; the
        // second fills the queue.
        assert!(
            later
                .release_at_once(counted(&keys(), now()))
                .await
                .unwrap()
        );
        eventually("the first taken off the queue", async || {
            later.queue.capacity() == 1
        })
        .await;
        assert!(
            later
                .release_at_once(counted(&keys(), now()))
                .await
                .unwrap()
        );
        assert!(
            !later
                .release_at_once(counted(&keys(), now()))
                .await
                .unwrap(),
            "full"
        );
        busy.free();
        eventually("both queued given back", async || {
            busy.released.lock().unwrap().len() == 2
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_free_store_gives_back_at_once_without_the_queue() {
        let Fixture {
            store, busy, later, ..
        } = &fixture(0, 8).await;
        busy.free();
        assert!(counts(store.as_ref()).await);
        assert!(offer_first(later).await);
        assert!(counts(store.as_ref()).await, "given back at once");
        assert!(
            busy.released.lock().unwrap().is_empty(),
            "nothing went through the queue"
        );
    }

    /// A fixture whose store is busy and holds one counted try, queued to be given back.
    async fn one_try_queued() -> Fixture {
        let fixture = fixture(0, 8).await;
        assert!(counts(fixture.store.as_ref()).await);
        assert!(offer_first(&fixture.later).await, "queued");
        fixture
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_writes_what_is_queued_and_takes_no_more() {
        let queued = one_try_queued().await;
        let (store, busy, later) = (&queued.store, &queued.busy, &queued.later);
        let freed = busy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            freed.free();
        });
        let started = tokio::time::Instant::now();
        queued.task.finish(Duration::from_secs(10)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "finished once the queue was written: {:?}",
            started.elapsed()
        );
        assert_eq!(*busy.released.lock().unwrap(), vec![keys()[..1].to_vec()]);
        assert!(counts(store.as_ref()).await, "given back before the end");
        assert!(
            offer_first(later).await,
            "the free store still gives back at once"
        );
        busy.busy.store(true, Ordering::SeqCst);
        assert!(
            !offer_first(later).await,
            "after shutdown nothing is queued"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_waits_for_a_busy_store_only_so_long() {
        let queued = one_try_queued().await;
        let (store, busy, later) = (&queued.store, &queued.busy, &queued.later);
        assert!(offer_first(later).await, "queued");
        let started = tokio::time::Instant::now();
        queued.task.finish(Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
        busy.free();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            busy.released.lock().unwrap().is_empty(),
            "the cut-short writes stay undone"
        );
        assert!(!counts(store.as_ref()).await, "still counted");
    }
}
