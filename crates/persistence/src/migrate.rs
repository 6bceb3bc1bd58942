//! Migrations on a shared database server: of several instances starting at once
//! against an empty database, one migrates, the others wait and then find nothing to do.

use diesel::backend::Backend;
use diesel::connection::SimpleConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

/// Applies `migrations` between `lock` and `unlock`, the SQL that takes and gives back
/// a lock of the whole server; the versions applied.
pub(crate) fn under_lock<DB, C>(
    conn: &mut C,
    migrations: EmbeddedMigrations,
    lock: &str,
    unlock: &str,
) -> anyhow::Result<Vec<String>>
where
    DB: Backend,
    C: MigrationHarness<DB> + SimpleConnection,
{
    conn.batch_execute(lock)?;
    let applied = conn
        .run_pending_migrations(migrations)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
    // Given back whether or not they applied: a failed start must not hold the others.
    conn.batch_execute(unlock)?;
    applied
}
