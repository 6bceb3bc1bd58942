//! The PostgreSQL adapter: a deadpool pool of diesel-async `AsyncPgConnection`s
//! (tokio-postgres underneath, no libpq). Every rule's state lives in the database,
//! so any number of instances can share it.

use std::sync::Arc;
use std::time::Duration;

use diesel::ConnectionError;
use diesel::connection::SimpleConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use passcode_domain::InfraError;

use crate::DatabaseSettings;
use crate::cipher::MailKey;
use crate::error::pool_error;
use crate::queries::impl_ports;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Taken around migrations so instances starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x7061_7373_636f_6465; // "passcode"

/// Implements `UserRepository`, `OtpStore` and `HealthCheck` on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    url: Arc<str>,
    mail_key: MailKey,
}

pub(crate) type Conn = AsyncPgConnection;

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Builds the pool; connections are opened lazily, so a database that is down
    /// now does not stop the service from starting (requests get 503 until it is back).
    pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let statement_timeout = settings.statement_timeout.as_millis();
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.custom_setup = Box::new(move |url| {
            let url = url.to_owned();
            Box::pin(async move {
                let mut conn = AsyncPgConnection::establish(&url).await?;
                conn.batch_execute(&format!("SET statement_timeout = {statement_timeout}"))
                    .await
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        // A connection that died with the server is noticed and replaced at checkout.
        config.recycling_method = RecyclingMethod::Verified;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            settings.url.as_str(),
            config,
        );
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections.max(1))
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .recycle_timeout(Some(settings.acquire_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()?;
        Ok(Self {
            pool,
            url: settings.url.as_str().into(),
            mail_key: settings.mail_key.clone(),
        })
    }

    /// Applies pending migrations under an advisory lock: of several instances
    /// starting at once against an empty database, one migrates, the others wait
    /// and then find nothing to do.
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
            let mut conn =
                <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)?;
            SimpleConnection::batch_execute(
                &mut conn,
                &format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"),
            )?;
            let applied = conn
                .run_pending_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(ToString::to_string).collect())
                .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
            SimpleConnection::batch_execute(
                &mut conn,
                &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"),
            )?;
            applied
        })
        .await?
    }

    pub(crate) fn pool_status(&self) -> deadpool::Status {
        self.pool.status()
    }

    pub(crate) async fn conn(&self) -> Result<Object<AsyncPgConnection>, InfraError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// The same as [`PgStore::conn`]: PostgreSQL's row locks let writers run side by side.
    pub(crate) async fn writer(&self) -> Result<Object<AsyncPgConnection>, InfraError> {
        self.conn().await
    }
}

impl_ports!(PgStore, crate::outbox_rows::CLAIM_POSTGRES);

/// Creates a database on the server of `admin_url` (which names an existing
/// database) and returns the URL of the new one. For tests and provisioning.
pub async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "database names here are lower-case letters, digits and underscores"
    );
    let mut conn = tokio::time::timeout(
        Duration::from_secs(10),
        AsyncPgConnection::establish(admin_url),
    )
    .await??;
    conn.batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or_else(|| anyhow::anyhow!("the admin URL names no database"))?;
    Ok(format!("{base}/{name}"))
}
