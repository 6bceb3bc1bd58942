//! Translation of diesel and pool errors into the domain's error contract.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use passcode_domain::InfraError;
use passcode_domain::ports::CreateUserError;

/// Pool failures (timeout, cannot connect) mean the database is unavailable.
pub(crate) fn pool_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> InfraError {
    InfraError::Unavailable(anyhow::Error::new(error).context("no database connection"))
}

/// When a query last failed, in nanoseconds after `EPOCH` (0: never).
static LAST_FAILURE: AtomicU64 = AtomicU64::new(0);
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Whether a query failed at or after `at`: a pool that cannot tell a dead
/// connection without a round trip then checks each one it lends (`mysql::Checked`).
pub(crate) fn failed_since(at: Instant) -> bool {
    let last = LAST_FAILURE.load(Ordering::Relaxed);
    last != 0 && *EPOCH + Duration::from_nanos(last) >= at
}

pub(crate) fn query_error(error: DieselError) -> InfraError {
    // Any failure, not only those below: a dead connection's error may name neither
    // the connection nor the server (a broken pipe).
    let since = EPOCH.elapsed().as_nanos();
    LAST_FAILURE.store(
        u64::try_from(since).unwrap_or(u64::MAX).max(1),
        Ordering::Relaxed,
    );
    let unavailable = match &error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        // SQLite busy or locked past busy_timeout; PostgreSQL shutting down, a lost
        // connection, or statement_timeout; MariaDB's deadlock victim, lock wait
        // timeout or max_statement_time: the database is down or overloaded.
        DieselError::DatabaseError(_, info) => {
            let message = info.message().to_ascii_lowercase();
            [
                "locked",
                "busy",
                "connection",
                "terminating",
                "shutting down",
                "starting up",
                "statement timeout",
                "deadlock",
                "lock wait timeout",
                "max_statement_time",
            ]
            .iter()
            .any(|needle| message.contains(needle))
        }
        DieselError::BrokenTransactionManager => true,
        _ => false,
    };
    let error = anyhow::Error::new(error).context("database query failed");
    if unavailable {
        InfraError::Unavailable(error)
    } else {
        InfraError::Unexpected(error)
    }
}

pub(crate) fn create_user_error(error: DieselError) -> CreateUserError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            CreateUserError::EmailTaken
        }
        other => CreateUserError::Infra(query_error(other)),
    }
}
