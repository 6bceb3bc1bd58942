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
        // SQLite's busy/locked after busy_timeout: the database is overloaded.
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            message.contains("locked") || message.contains("busy")
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
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
