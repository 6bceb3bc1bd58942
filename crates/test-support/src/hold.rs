//! A connection of the test's own to the app's database, to read what the app wrote
//! and to hold its writes back, as a long write of another instance would.

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel::{QueryableByName, SqliteConnection};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{
    AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
};

enum Conn {
    Sqlite(SyncConnectionWrapper<SqliteConnection>),
    Postgres(Box<AsyncPgConnection>),
    Mariadb(AsyncMysqlConnection),
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// One connection to the database at a `sqlite://`, `postgres://` or `mysql://` URL.
pub struct DatabaseConnection {
    conn: Conn,
}

impl DatabaseConnection {
    pub async fn open(url: &str) -> Self {
        Self::connect(url).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// `open`, saying what failed instead of failing the test.
    pub async fn connect(url: &str) -> Result<Self, String> {
        let failed = |e: diesel::ConnectionError| format!("connecting to {url}: {e}");
        let conn = if let Some(path) = url.strip_prefix("sqlite://") {
            let mut conn = SyncConnectionWrapper::<SqliteConnection>::establish(path)
                .await
                .map_err(failed)?;
            // Waits its turn to write, as the app's connections do.
            conn.batch_execute("PRAGMA busy_timeout = 10000")
                .await
                .map_err(|e| e.to_string())?;
            Conn::Sqlite(conn)
        } else if url.starts_with("postgres") {
            Conn::Postgres(Box::new(
                AsyncPgConnection::establish(url).await.map_err(failed)?,
            ))
        } else {
            Conn::Mariadb(AsyncMysqlConnection::establish(url).await.map_err(failed)?)
        };
        Ok(Self { conn })
    }

    /// Runs `sql` (statements without results).
    pub async fn execute(&mut self, sql: &str) {
        self.run(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// `execute`, saying what failed instead of failing the test.
    pub async fn run(&mut self, sql: &str) -> Result<(), String> {
        match &mut self.conn {
            Conn::Sqlite(conn) => conn.batch_execute(sql).await,
            Conn::Postgres(conn) => conn.batch_execute(sql).await,
            Conn::Mariadb(conn) => conn.batch_execute(sql).await,
        }
        .map_err(|e| e.to_string())
    }

    /// The `n` (a `COUNT(*) AS n`) that `sql` selects.
    pub async fn count(&mut self, sql: &str) -> i64 {
        let query = diesel::sql_query(sql);
        let found: Result<Vec<Count>, _> = match &mut self.conn {
            Conn::Sqlite(conn) => query.load(conn).await,
            Conn::Postgres(conn) => query.load(&mut **conn).await,
            Conn::Mariadb(conn) => query.load(conn).await,
        };
        let found = found.unwrap_or_else(|e| panic!("{sql}: {e}"));
        found.into_iter().next().map_or(0, |c| c.n)
    }

    /// Waits (10 s at most) until `sql`'s count is `expected`; fails the test with
    /// `what` if it never is.
    pub async fn wait_for_count(&mut self, sql: &str, expected: i64, what: &str) {
        crate::within_10s(Duration::from_millis(2), async || {
            let n = self.count(sql).await;
            if n == expected {
                Ok(())
            } else {
                Err(format!("{what}: still {n} (not {expected}): {sql}"))
            }
        })
        .await;
    }

    /// Opens a transaction that holds every write to `tables` until `release`: the
    /// app's writes there wait for it and fail after its own timeout (SQLite's
    /// `busy_timeout`, the servers' statement and lock-wait timeouts). SQLite locks
    /// the whole file for writing; reads go on everywhere.
    pub async fn hold_writes(&mut self, tables: &[&str]) {
        let sql = match &self.conn {
            Conn::Sqlite(_) => "BEGIN IMMEDIATE".to_owned(),
            Conn::Postgres(_) => {
                format!("BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE", tables.join(", "))
            }
            // Updating every row locks it, and under REPEATABLE READ every gap too,
            // so inserts wait as well.
            Conn::Mariadb(_) => {
                let mut sql = "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
                               START TRANSACTION;"
                    .to_owned();
                for table in tables {
                    sql.push_str(&format!(" SELECT COUNT(*) FROM {table} FOR UPDATE;"));
                }
                sql
            }
        };
        self.execute(&sql).await;
    }

    /// Ends what `hold_writes` began, writing nothing.
    pub async fn release(&mut self) {
        self.execute("ROLLBACK").await;
    }
}
