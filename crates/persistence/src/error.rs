//! Translation of diesel and pool errors into the domain's error contract.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use passcode_domain::InfraError;
use passcode_domain::ports::CreateUserError;

/// Pool failures (timeout, cannot connect) mean the database is unavailable.
pub(crate) fn pool_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> InfraError {
    InfraError::Unavailable(anyhow::Error::new(error).context("no database connection"))
}

pub(crate) fn query_error(error: DieselError) -> InfraError {
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
