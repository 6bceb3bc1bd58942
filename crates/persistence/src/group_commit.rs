//! Group commit on SQLite: concurrent hot-path writes share one transaction.
//!
//! SQLite has one writer. Each transaction's commit appends its changed pages to the
//! WAL and updates the WAL index, and 16 guesses in flight took 16 commits in turn,
//! most of them rewriting the same few pages. Here a write is queued as a job; whoever
//! gets the writer's turn takes every queued job (its own and those that arrived while
//! the previous batch ran) and runs them in one `BEGIN IMMEDIATE` transaction, each in
//! its own savepoint, so a job that fails or aborts undoes only its own statements.
//! It keeps the turn for the jobs queued meanwhile, batch after batch, for up to
//! [`MAX_TURN`]. Every job's answer is sent only after the batch committed: no caller hears
//! "counted" before it is durable, and a failed commit fails every job in it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    next_id: AtomicU64,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    fn push(&self, job: Box<dyn Job>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, job));
        id
    }

    /// Takes the oldest jobs, up to [`MAX_BATCH`].
    fn take(&self) -> Vec<Box<dyn Job>> {
        let mut jobs = self.lock();
        let taken = jobs.len().min(MAX_BATCH);
        let rest = jobs.split_off(taken);
        std::mem::replace(&mut *jobs, rest)
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

/// One queued write, with its type erased.
trait Job: Send {
    /// Runs the write in its own savepoint of the batch's transaction.
    fn run(&mut self, conn: &mut SqliteConnection);
    /// Answers the caller once the batch's transaction has ended.
    fn finish(self: Box<Self>, batch: Result<(), &DieselError>);
}

struct Typed<T, E, F> {
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

/// Runs a batch in one transaction, then answers each of its jobs.
fn run_batch(conn: &mut SqliteConnection, mut jobs: Vec<Box<dyn Job>>) {
    let batch = conn.immediate_transaction(|conn| {
        for job in &mut jobs {
            job.run(conn);
        }
        Ok::<(), DieselError>(())
    });
    metrics::histogram!("passcode_sqlite_batch_jobs").record(jobs.len() as f64);
    for job in jobs {
        job.finish(batch.as_ref().map(|_| ()));
    }
}

/// Runs batches on the writer's turn for as long as jobs keep arriving, up to
/// [`MAX_TURN`]. Handing the turn on between batches wakes a waiting task and then a
/// blocking thread, while the writer idles; under load the next batch is already
/// queued when one commits.
fn run_while_queued(conn: &mut SqliteConnection, first: Vec<Box<dyn Job>>, queue: &Queue) {
    let started = std::time::Instant::now();
    let mut jobs = first;
    while !jobs.is_empty() {
        run_batch(conn, jobs);
        if started.elapsed() >= MAX_TURN {
            break;
        }
        jobs = queue.take();
    }
}

impl SqliteStore {
    /// Runs `work` in the next batch of writes and returns its outcome once that
    /// batch has committed. `work` runs in a savepoint: its error (a failed query, or
    /// any abort of the caller's own type) undoes its own statements only. The wait is
    /// bounded by the acquire timeout; a write that timed out before a batch took it is
    /// withdrawn.
    pub(crate) async fn batched<T, E, F>(&self, work: F) -> Result<Result<T, E>, InfraError>
    where
        T: Send + 'static,
        E: From<DieselError> + Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, E> + Send + 'static,
    {
        let (reply, mut answer) = oneshot::channel();
        let id = self.queue().push(Box::new(Typed {
            work: Some(work),
            outcome: None,
            reply,
        }));
        let waited = tokio::time::timeout(self.acquire_timeout(), async {
            loop {
                tokio::select! {
                    biased;
                    answered = &mut answer => return Ok(answered),
                    turn = self.turn() => {
                        let turn = turn?;
                        let jobs = self.queue().take();
                        if jobs.is_empty() {
                            // A batch already took this job: wait for its answer.
                            drop(turn);
                            return Ok((&mut answer).await);
                        }
                        let conn = match self.conn().await {
                            Ok(conn) => conn,
                            Err(error) => {
                                let failure = DieselError::DatabaseError(
                                    diesel::result::DatabaseErrorKind::ClosedConnection,
                                    Box::new(error.to_string()),
                                );
                                for job in jobs {
                                    job.finish(Err(&failure));
                                }
                                continue;
                            }
                        };
                        // The batches answer their jobs themselves, on the blocking thread,
                        // in a task of their own that holds the writer's turn until they
                        // end: this caller's answer comes with its batch, not after the
                        // batches that follow it, and a dropped caller stops nothing.
                        let queue = self.shared_queue();
                        tokio::spawn(async move {
                            let mut conn = conn;
                            let ran = conn
                                .spawn_blocking(move |conn| {
                                    run_while_queued(conn, jobs, &queue);
                                    drop(turn);
                                    Ok(())
                                })
                                .await;
                            if let Err(error) = ran {
                                tracing::error!(%error, "a batch of SQLite writes failed to run");
                            }
                        });
                    }
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(Ok(outcome))) => Ok(outcome),
            Ok(Ok(Err(_))) => Err(InfraError::Unexpected(anyhow::anyhow!(
                "a batch of SQLite writes ended without answering"
            ))),
            Ok(Err(error)) => Err(error),
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
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::connect(&DatabaseSettings::sqlite(dir.path().join("batch.db"))).unwrap();
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
