//! Group commit on SQLite: concurrent hot-path writes share one transaction.
//!
//! SQLite has one writer. Each transaction's commit appends its changed pages to the
//! WAL and updates the WAL index, and 16 guesses in flight took 16 commits in turn,
//! most of them rewriting the same few pages. Here a write is queued as a job; the
//! writer thread ([`writer_thread`]) takes the writer's turn, takes every queued job
//! and runs them in one `BEGIN IMMEDIATE` transaction, each in its own savepoint, so a
//! job that fails or aborts undoes only its own statements. It keeps the turn for the
//! jobs queued meanwhile, batch after batch, for up to [`MAX_TURN`]. Every job's answer
//! is sent only after the batch committed, and a failed commit fails every job in it.
//!
//! A batch's commit is synced to disk before any job hears of it (`PRAGMA synchronous
//! = FULL`), unless every job in it only counts ([`Commit::CountsOnly`]: a guess, a
//! budget's reservation), as PostgreSQL commits a guess without waiting for its WAL
//! flush. Such a commit is in the WAL, so a crash of the process loses nothing; a crash
//! of the machine can forget it, until the next synced commit syncs it too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use diesel::SqliteConnection;
use diesel::connection::Connection;
use diesel::result::Error as DieselError;
use passcode_domain::InfraError;
use tokio::sync::oneshot;

use crate::sqlite::SqliteStore;

/// Jobs per transaction at most, so that one batch does not hold the writer for long.
const MAX_BATCH: usize = 64;

/// How long one writer's turn goes on taking jobs queued meanwhile (see
/// [`run_while_queued`]) before it leaves the turn to others.
const MAX_TURN: std::time::Duration = std::time::Duration::from_millis(5);

/// The queue of writes waiting for the writer's turn.
#[derive(Default)]
pub(crate) struct Queue {
    jobs: Mutex<Vec<(u64, Box<dyn Job>)>>,
    /// Signalled when a job is queued (the writer thread waits on it).
    queued: Condvar,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    fn push(&self, job: Box<dyn Job>) -> u64 {
        let mut jobs = self.lock();
        // Numbered under the lock: whoever reads the count and the queue together
        // sees every numbered job queued (the tests' `reaches`).
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        jobs.push((id, job));
        drop(jobs);
        self.queued.notify_one();
        id
    }

    /// How many jobs were ever queued.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> u64 {
        let _jobs = self.lock();
        self.next_id.load(Ordering::Relaxed)
    }

    /// Waits (up to 10 s) until `wanted` holds for the jobs queued so far and the jobs
    /// waiting for a batch, read together.
    #[cfg(test)]
    pub(crate) async fn reaches(&self, wanted: impl Fn(u64, usize) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (queued, waiting) = {
                let jobs = self.lock();
                (self.next_id.load(Ordering::Relaxed), jobs.len())
            };
            if wanted(queued, waiting) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the queue stayed at {queued} queued, {waiting} waiting"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Waits up to `timeout` for a job, then takes the oldest jobs, up to
    /// [`MAX_BATCH`] (none if none came).
    fn wait_take(&self, timeout: std::time::Duration) -> Vec<Box<dyn Job>> {
        let mut jobs = self.lock();
        if jobs.is_empty() {
            jobs = self
                .queued
                .wait_timeout(jobs, timeout)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Self::take_from(&mut jobs)
    }

    /// Takes the oldest jobs, up to [`MAX_BATCH`].
    fn take(&self) -> Vec<Box<dyn Job>> {
        Self::take_from(&mut self.lock())
    }

    fn take_from(jobs: &mut Vec<(u64, Box<dyn Job>)>) -> Vec<Box<dyn Job>> {
        let taken = jobs.len().min(MAX_BATCH);
        let rest = jobs.split_off(taken);
        std::mem::replace(jobs, rest)
            .into_iter()
            .map(|(_, job)| job)
            .collect()
    }

    /// Withdraws a job that no batch has taken yet: `false` if one has.
    fn withdraw(&self, id: u64) -> bool {
        let mut jobs = self.lock();
        let before = jobs.len();
        jobs.retain(|(queued, _)| *queued != id);
        jobs.len() != before
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Box<dyn Job>)>> {
        // A panic while holding this lock cannot leave the vector half-changed.
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How a write's commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Synced before the write is answered: it may hold a code, a session or a mail.
    Durable,
    /// Only counts (a guess, a budget's reservation): written to the WAL before it is
    /// answered, synced by the next durable commit or checkpoint. An operating system
    /// crash or a power loss can forget it; a crash of the process cannot.
    CountsOnly,
}

impl Commit {
    /// The setting that gives this commit.
    fn pragma(self) -> &'static str {
        match self {
            Self::Durable => "PRAGMA synchronous = FULL",
            Self::CountsOnly => "PRAGMA synchronous = NORMAL",
        }
    }

    /// A batch's commit: durable if any of its jobs is.
    fn of_batch(jobs: &[Box<dyn Job>]) -> Self {
        if jobs.iter().all(|job| job.commit() == Self::CountsOnly) {
            Self::CountsOnly
        } else {
            Self::Durable
        }
    }
}

/// One queued write, with its type erased.
trait Job: Send {
    /// How its commit must reach the disk.
    fn commit(&self) -> Commit;
    /// Runs the write in its own savepoint of the batch's transaction.
    fn run(&mut self, conn: &mut SqliteConnection);
    /// Answers the caller once the batch's transaction has ended.
    fn finish(self: Box<Self>, batch: Result<(), &DieselError>);
}

struct Typed<T, E, F> {
    commit: Commit,
    work: Option<F>,
    outcome: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Job for Typed<T, E, F>
where
    T: Send,
    E: From<DieselError> + Send,
    F: FnOnce(&mut SqliteConnection) -> Result<T, E> + Send,
{
    fn commit(&self) -> Commit {
        self.commit
    }

    fn run(&mut self, conn: &mut SqliteConnection) {
        if let Some(work) = self.work.take() {
            // Nested in the batch's transaction, Diesel makes this a savepoint.
            self.outcome = Some(conn.transaction(work));
        }
    }

    fn finish(self: Box<Self>, batch: Result<(), &DieselError>) {
        let answer = match (batch, self.outcome) {
            (Ok(()), Some(outcome)) => outcome,
            (Ok(()), None) => Err(DieselError::RollbackTransaction.into()),
            (Err(error), _) => Err(shared(error).into()),
        };
        // The caller may have gone (a dropped request): nothing to tell.
        let _ = self.reply.send(answer);
    }
}

/// A copy of a batch's failure for each of its jobs (Diesel's errors do not clone).
fn shared(error: &DieselError) -> DieselError {
    match error {
        DieselError::DatabaseError(kind, info) => {
            DieselError::DatabaseError(*kind, Box::new(info.message().to_owned()))
        }
        DieselError::BrokenTransactionManager => DieselError::BrokenTransactionManager,
        other => DieselError::QueryBuilderError(other.to_string().into()),
    }
}

/// The writer's connection, and how its commits reach the disk now.
struct WriterConnection {
    conn: SqliteConnection,
    commit: Commit,
}

/// Runs a batch in one transaction, then answers each of its jobs; `false` if the
/// transaction failed.
fn run_batch(writer: &mut WriterConnection, mut jobs: Vec<Box<dyn Job>>) -> bool {
    use diesel::connection::SimpleConnection as _;
    let commit = Commit::of_batch(&jobs);
    let conn = &mut writer.conn;
    let set = if writer.commit == commit {
        Ok(())
    } else {
        // Outside any transaction: SQLite applies it from the next commit on.
        conn.batch_execute(commit.pragma())
    };
    let batch = set.and_then(|()| {
        writer.commit = commit;
        conn.immediate_transaction(|conn| {
            for job in &mut jobs {
                job.run(conn);
            }
            Ok::<(), DieselError>(())
        })
    });
    metrics::histogram!("passcode_sqlite_batch_jobs").record(jobs.len() as f64);
    if let Err(error) = &batch {
        tracing::error!(%error, jobs = jobs.len(), "a batch of SQLite writes failed");
    }
    for job in jobs {
        job.finish(batch.as_ref().map(|_| ()));
    }
    batch.is_ok()
}

/// Runs batches on the writer's turn for as long as jobs keep arriving, up to
/// [`MAX_TURN`], so that the other writes (`SqliteStore::writer`) get their turn too;
/// under load the next batch is already queued when one commits. `false` if a batch
/// failed (it stops there).
fn run_while_queued(conn: &mut WriterConnection, first: Vec<Box<dyn Job>>, queue: &Queue) -> bool {
    let started = std::time::Instant::now();
    let mut jobs = first;
    while !jobs.is_empty() {
        if !run_batch(conn, jobs) {
            return false;
        }
        if started.elapsed() >= MAX_TURN {
            break;
        }
        jobs = queue.take();
    }
    true
}

impl SqliteStore {
    /// Runs `work` in the next batch of writes and returns its outcome once that
    /// batch has committed. `work` runs in a savepoint: its error (a failed query, or
    /// any abort of the caller's own type) undoes its own statements only. The wait is
    /// bounded by the acquire timeout; a write that timed out before a batch took it is
    /// withdrawn. Its commit is synced to disk before it is answered.
    pub(crate) async fn batched<T, E, F>(&self, work: F) -> Result<Result<T, E>, InfraError>
    where
        T: Send + 'static,
        E: From<DieselError> + Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, E> + Send + 'static,
    {
        self.batched_as(Commit::Durable, work).await
    }

    /// As [`Self::batched`], for `work` that only counts: its commit need not be synced
    /// before it is answered ([`Commit::CountsOnly`]).
    pub(crate) async fn batched_counts<T, E, F>(&self, work: F) -> Result<Result<T, E>, InfraError>
    where
        T: Send + 'static,
        E: From<DieselError> + Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, E> + Send + 'static,
    {
        self.batched_as(Commit::CountsOnly, work).await
    }

    async fn batched_as<T, E, F>(&self, commit: Commit, work: F) -> Result<Result<T, E>, InfraError>
    where
        T: Send + 'static,
        E: From<DieselError> + Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let id = self.queue().push(Box::new(Typed {
            commit,
            work: Some(work),
            outcome: None,
            reply,
        }));
        match tokio::time::timeout(self.acquire_timeout(), answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(InfraError::Unexpected(anyhow::anyhow!(
                "a batch of SQLite writes ended without answering"
            ))),
            Err(_) => {
                let state = if self.queue().withdraw(id) {
                    "withdrawn"
                } else {
                    "it may still commit"
                };
                Err(InfraError::Unavailable(anyhow::anyhow!(
                    "timed out waiting for the SQLite writer ({state})"
                )))
            }
        }
    }
}

/// How long the writer thread waits for jobs before it checks that its store lives.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_millis(200);

/// Starts the thread that runs the batches, on a connection of its own, while `alive`
/// (the store's queue) lives. One thread and one connection: a batch is handed to a
/// thread that is already there, with no pool checkout and no hand-over to a blocking
/// thread per batch, and the connection's page cache stays valid (SQLite drops a
/// connection's cache whenever another connection has written since it last read).
/// It takes `writing`, the turn other writes take too, for each run of batches.
pub(crate) fn writer_thread(
    url: String,
    pragmas: Arc<str>,
    writing: Arc<tokio::sync::Mutex<()>>,
    alive: Weak<Queue>,
) -> std::io::Result<()> {
    use diesel::connection::SimpleConnection;
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            let mut conn: Option<WriterConnection> = None;
            while let Some(queue) = alive.upgrade() {
                let jobs = queue.wait_take(IDLE_CHECK);
                if jobs.is_empty() {
                    continue;
                }
                let turn = writing.blocking_lock();
                let connected = match conn.as_mut() {
                    Some(connected) => Ok(connected),
                    None => SqliteConnection::establish(&url)
                        .map_err(|e| e.to_string())
                        .and_then(|mut opened| {
                            // The pragmas make its commits durable.
                            opened.batch_execute(&pragmas).map_err(|e| e.to_string())?;
                            Ok(conn.insert(WriterConnection {
                                conn: opened,
                                commit: Commit::Durable,
                            }))
                        }),
                };
                match connected {
                    Ok(connected) => {
                        if !run_while_queued(connected, jobs, &queue) {
                            // Opened again for the next batch: whatever state a failed
                            // commit or rollback left the connection in goes with it.
                            conn = None;
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "the SQLite writer could not connect");
                        let failure = DieselError::DatabaseError(
                            diesel::result::DatabaseErrorKind::ClosedConnection,
                            Box::new(error),
                        );
                        for job in jobs {
                            job.finish(Err(&failure));
                        }
                    }
                }
                drop(turn);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::DatabaseSettings;
    use diesel::RunQueryDsl;
    use diesel::connection::SimpleConnection;

    use super::*;

    #[derive(Debug)]
    enum Outcome {
        Query(DieselError),
        Refused,
    }

    impl From<DieselError> for Outcome {
        fn from(error: DieselError) -> Self {
            Self::Query(error)
        }
    }

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    fn count(conn: &mut SqliteConnection) -> Result<i64, DieselError> {
        Ok(diesel::sql_query("SELECT COUNT(*) AS n FROM guesses")
            .get_result::<Count>(conn)?
            .n)
    }

    /// A new database with an empty table of guesses (the folder goes with it).
    async fn store_with_guesses() -> (SqliteStore, tempfile::TempDir) {
        store_with_guesses_where(|_| {}).await
    }

    /// The same, with changed settings.
    async fn store_with_guesses_where(
        change: impl FnOnce(&mut DatabaseSettings),
    ) -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = DatabaseSettings::sqlite(dir.path().join("batch.db"));
        change(&mut settings);
        let store = SqliteStore::connect(&settings).unwrap();
        store
            .batched(|conn| {
                conn.batch_execute("CREATE TABLE guesses (n INTEGER PRIMARY KEY)")
                    .map_err(Outcome::from)
            })
            .await
            .unwrap()
            .unwrap();
        (store, dir)
    }

    /// Concurrent writes: each refused one undoes only its own row, each caller hears
    /// its own outcome, and what a caller heard as done is in the database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_write_in_a_batch_undoes_only_itself() {
        let (store, _dir) = store_with_guesses().await;

        let writes = (0..40).map(|n: i32| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .batched(move |conn| {
                        diesel::sql_query(format!("INSERT INTO guesses (n) VALUES ({n})"))
                            .execute(conn)?;
                        if n % 2 == 1 {
                            return Err(Outcome::Refused);
                        }
                        // The statements of the batch so far are visible to this job.
                        Ok(count(conn)?)
                    })
                    .await
            })
        });
        let outcomes = futures::future::join_all(writes).await;
        for (n, outcome) in outcomes.into_iter().enumerate() {
            match outcome.unwrap().unwrap() {
                Ok(seen) => assert!(n % 2 == 0 && seen >= 1, "write {n} saw {seen} rows"),
                Err(Outcome::Refused) => assert_eq!(n % 2, 1, "write {n} refused"),
                Err(Outcome::Query(error)) => panic!("write {n} failed: {error}"),
            }
        }

        let rows: Vec<i64> = store
            .batched(|conn| {
                #[derive(diesel::QueryableByName)]
                struct Row {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    n: i64,
                }
                Ok::<_, Outcome>(
                    diesel::sql_query("SELECT n FROM guesses ORDER BY n")
                        .load::<Row>(conn)?
                        .into_iter()
                        .map(|row| row.n)
                        .collect(),
                )
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rows, (0..40).step_by(2).collect::<Vec<_>>());
    }

    /// The writer thread takes the same turn as the writes that take `writer()`: with no
    /// busy timeout at all, a write that found the other's transaction open would fail
    /// with "database is locked" at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_writes_and_other_writes_take_turns() {
        let (store, _dir) =
            store_with_guesses_where(|s| s.busy_timeout = std::time::Duration::ZERO).await;
        let writes = (0..60).map(|n: i32| {
            let store = store.clone();
            tokio::spawn(async move {
                let insert = format!("INSERT INTO guesses (n) VALUES ({n})");
                // Each holds SQLite's write lock for a while, so that they would overlap.
                if n % 2 == 0 {
                    store
                        .batched(move |conn| {
                            diesel::sql_query(insert).execute(conn)?;
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            Ok::<_, Outcome>(())
                        })
                        .await
                        .unwrap()
                        .map_err(|e| format!("{e:?}"))
                } else {
                    use diesel_async::SimpleAsyncConnection as _;
                    let mut writer = store.writer().await.unwrap();
                    let open = writer
                        .batch_execute(&format!("BEGIN IMMEDIATE; {insert};"))
                        .await;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    let commit = writer.batch_execute("COMMIT").await;
                    open.and(commit).map_err(|e| e.to_string())
                }
            })
        });
        for (n, outcome) in futures::future::join_all(writes)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(outcome.unwrap(), Ok(()), "write {n}");
        }
        let total = store
            .batched(|conn| count(conn).map_err(Outcome::from))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(total, 60);
    }

    #[derive(diesel::QueryableByName)]
    struct Synchronous {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        synchronous: i32,
    }

    /// The writer's `PRAGMA synchronous` as a job of the given commit sees it.
    fn synchronous_seen(store: &SqliteStore, commit: Commit) -> tokio::task::JoinHandle<i32> {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .batched_as(commit, |conn| {
                    diesel::sql_query("PRAGMA synchronous").get_result::<Synchronous>(conn)
                })
                .await
                .unwrap()
                .unwrap()
                .synchronous
        })
    }

    /// A batch of writes that only count commits without syncing (NORMAL, 1); a batch
    /// with any other write syncs (FULL, 2), for every job in it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_batch_of_counts_alone_commits_without_syncing() {
        const NORMAL: i32 = 1;
        const FULL: i32 = 2;
        let (store, _dir) = store_with_guesses().await;
        let alone = |commit| synchronous_seen(&store, commit);
        assert_eq!(alone(Commit::CountsOnly).await.unwrap(), NORMAL);
        assert_eq!(alone(Commit::CountsOnly).await.unwrap(), NORMAL);
        assert_eq!(alone(Commit::Durable).await.unwrap(), FULL);
        assert_eq!(alone(Commit::CountsOnly).await.unwrap(), NORMAL);

        // Both in one batch: while another write holds the turn, the writer thread
        // takes a first job and waits; the two queued meanwhile make its next batch.
        let turn = store.writer().await.unwrap();
        let queue = store.queue();
        let before = queue.queued();
        let first = alone(Commit::CountsOnly);
        queue
            .reaches(|queued, waiting| queued == before + 1 && waiting == 0)
            .await;
        let counts = alone(Commit::CountsOnly);
        let durable = alone(Commit::Durable);
        queue.reaches(|_, waiting| waiting == 2).await;
        drop(turn);
        assert_eq!(first.await.unwrap(), NORMAL, "the first, alone");
        assert_eq!(counts.await.unwrap(), FULL, "counts beside a durable write");
        assert_eq!(durable.await.unwrap(), FULL, "the durable write");
    }

    /// A failing statement fails its own write only; the batch still commits the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_statement_fails_only_its_own_write() {
        let (store, _dir) = store_with_guesses().await;
        // Every third write repeats a key: its insert fails on the primary key.
        let writes = (0..30).map(|n: i32| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = if n % 3 == 2 { n - 1 } else { n };
                store
                    .batched(move |conn| {
                        diesel::sql_query(format!("INSERT INTO guesses (n) VALUES ({key})"))
                            .execute(conn)
                            .map_err(Outcome::from)
                    })
                    .await
                    .unwrap()
            })
        });
        let outcomes = futures::future::join_all(writes).await;
        let done = outcomes
            .into_iter()
            .filter(|outcome| outcome.as_ref().unwrap().is_ok())
            .count();
        assert_eq!(done, 20, "two of every three keys are new");
        let total = store
            .batched(|conn| count(conn).map_err(Outcome::from))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(total, 20);
    }
}
