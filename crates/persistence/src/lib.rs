//! Diesel (diesel-async) persistence for passcode: the seven storage ports
//! (`UserRepository`, `OtpStore`, `Outbox`, `RefreshTokenStore`, `Throttle`,
//! `AuditLog`, `HealthCheck`) on SQLite (`SyncConnectionWrapper`), PostgreSQL
//! (`AsyncPgConnection`) or MariaDB (`AsyncMysqlConnection`), chosen by the database
//! URL. All run the same queries (`ports/`, one module per port) but for the few a
//! dialect writes its own way (`ports/dialect.rs`, MariaDB's in `mysql.rs`) and the
//! guess transaction, which each backend runs its fastest way.

pub mod affinity;
mod cached;
mod cipher;
mod error;
mod group_commit;
mod migrate;
#[cfg(test)]
mod migration_test;
pub mod mysql;
mod outbox_rows;
mod ports;
pub mod postgres;
#[cfg(test)]
mod prepared_rounds;
mod rows;
mod schema;
mod settings;
pub mod sqlite;
mod time;

use std::sync::Arc;

use passcode_domain::ports::{
    HealthCheck, OtpStore, Outbox, RefreshTokenStore, Throttle, UserRepository,
};

pub use cipher::MailKey;
pub use mysql::MysqlStore;
pub use postgres::PgStore;
pub use settings::DatabaseSettings;
pub use sqlite::SqliteStore;

/// A connection pool's use, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub open: usize,
    pub idle: usize,
    pub max: usize,
    /// Connections open besides the pool: PostgreSQL's shared connections (one at
    /// most per HTTP worker group), none on the other backends.
    pub shared: usize,
}

/// The store the URL names.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
    Mysql(MysqlStore),
}

impl Store {
    /// `postgres://` or `postgresql://` selects PostgreSQL; `mysql://` or `mariadb://`
    /// MariaDB (or MySQL); `sqlite://` (or a bare path) SQLite.
    pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        if settings.url.starts_with("postgres://") || settings.url.starts_with("postgresql://") {
            Ok(Self::Postgres(PgStore::connect(settings)?))
        } else if settings.url.starts_with("mysql://") || settings.url.starts_with("mariadb://") {
            Ok(Self::Mysql(MysqlStore::connect(settings)?))
        } else {
            Ok(Self::Sqlite(SqliteStore::connect(settings)?))
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        match self {
            Self::Sqlite(store) => store.migrate().await,
            Self::Postgres(store) => store.migrate().await,
            Self::Mysql(store) => store.migrate().await,
        }
    }

    pub fn users(&self) -> Arc<dyn UserRepository> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
            Self::Mysql(store) => Arc::new(store.clone()),
        }
    }

    pub fn otps(&self) -> Arc<dyn OtpStore> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
            Self::Mysql(store) => Arc::new(store.clone()),
        }
    }

    pub fn outbox(&self) -> Arc<dyn Outbox> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
            Self::Mysql(store) => Arc::new(store.clone()),
        }
    }

    pub fn refresh_tokens(&self) -> Arc<dyn RefreshTokenStore> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
            Self::Mysql(store) => Arc::new(store.clone()),
        }
    }

    pub fn throttle(&self) -> Arc<dyn Throttle> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
            Self::Mysql(store) => Arc::new(store.clone()),
        }
    }

    /// The connection pool now: (connections open, of which idle, the maximum), and the
    /// connections open besides it.
    pub fn pool_status(&self) -> PoolStatus {
        let status = match self {
            Self::Sqlite(store) => store.pool_status(),
            Self::Postgres(store) => store.pool_status(),
            Self::Mysql(store) => store.pool_status(),
        };
        PoolStatus {
            open: status.size,
            idle: status.available,
            max: status.max_size,
            shared: match self {
                Self::Postgres(store) => store.shared_open(),
                Self::Sqlite(_) | Self::Mysql(_) => 0,
            },
        }
    }

    pub fn audit(&self) -> Arc<dyn passcode_domain::ports::AuditLog> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
            Self::Mysql(store) => Arc::new(store.clone()),
        }
    }

    pub fn health(&self) -> Arc<dyn HealthCheck> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
            Self::Mysql(store) => Arc::new(store.clone()),
        }
    }
}

/// A guess's two budgets (the client's share and the address's ceiling) for
/// ada@example.com, roomy enough that no test call is refused.
#[cfg(test)]
pub(crate) fn roomy_guess_budgets() -> [(String, passcode_domain::ports::Limit); 2] {
    let limit = passcode_domain::ports::Limit {
        limit: 1_000,
        window: chrono::Duration::hours(1),
        cooldown: chrono::Duration::zero(),
    };
    [
        ("guess:ada@example.com:client".to_owned(), limit),
        ("guess:ada@example.com".to_owned(), limit),
    ]
}
