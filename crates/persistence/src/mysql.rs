//! The MariaDB (and MySQL) adapter: a deadpool pool of diesel-async
//! `AsyncMysqlConnection`s (mysql_async underneath, pure Rust, no C client library).
//! Every rule's state lives in the database, so any number of instances can share it.
//!
//! MariaDB has neither `RETURNING` on UPDATE nor `ON CONFLICT ... WHERE`, so its
//! dialect (below) counts and claims in a transaction of two or three
//! statements where the other backends use one. Sessions run at READ COMMITTED, as
//! PostgreSQL does, so that a conditional UPDATE sees the latest committed row and
//! reads take no gap locks.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, Object, RecycleResult};
use diesel::ConnectionError;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use passcode_domain::InfraError;

use crate::DatabaseSettings;
use crate::affinity::Groups;
use crate::cipher::MailKey;
use crate::error::pool_error;
use crate::ports;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/mysql");

/// Taken around migrations so instances starting together migrate one at a time.
const MIGRATION_LOCK: &str = "passcode_migrations";

/// Implements the seven storage ports (see `Store`) on MariaDB.
#[derive(Clone)]
pub struct MysqlStore {
    groups: Groups<Checked>,
    url: Arc<str>,
    mail_key: MailKey,
}

pub(crate) type Conn = AsyncMysqlConnection;

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore").finish_non_exhaustive()
    }
}

/// `mariadb://` is accepted as another name of `mysql://` (the driver knows only the latter).
fn driver_url(url: &str) -> String {
    match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    }
}

/// The server's `VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1` or `8.0.36`.
async fn server_version(conn: &mut AsyncMysqlConnection) -> Result<String, diesel::result::Error> {
    diesel_async::RunQueryDsl::get_result(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>("VERSION()")),
        conn,
    )
    .await
}

/// The oldest MariaDB with what the adapter needs (`SKIP LOCKED`, `max_statement_time`).
const OLDEST_MARIADB: (u32, u32) = (10, 6);

/// Refuses a server the adapter was not built for, by name, instead of failing later
/// on the first statement it lacks: MySQL itself (no `max_statement_time`, and not
/// tested) and MariaDB before 10.6.
fn supported_server(version: &str) -> anyhow::Result<()> {
    let mut numbers = version
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().ok());
    let (major, minor) = match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => anyhow::bail!("the database server reports an unknown version {version:?}"),
    };
    if !version.contains("MariaDB") {
        anyhow::bail!(
            "the database server is MySQL {version}, which passcode does not support yet: \
             use MariaDB {}.{} or later, PostgreSQL or SQLite (see docs/deployment.md)",
            OLDEST_MARIADB.0,
            OLDEST_MARIADB.1
        );
    }
    if (major, minor) < OLDEST_MARIADB {
        anyhow::bail!(
            "the database server is MariaDB {version}; passcode needs {}.{} or later",
            OLDEST_MARIADB.0,
            OLDEST_MARIADB.1
        );
    }
    Ok(())
}

/// A connection idle this long is checked with a round trip before it is lent.
const CHECK_IDLE: Duration = Duration::from_secs(1);

/// The pool's manager, which checks a connection with a round trip at checkout only
/// when it may have died unseen. Unlike tokio-postgres, the driver does not know that
/// the server closed a connection until it is used, so a restarted server would
/// otherwise leave the pool lending dead connections for good. A check at every
/// checkout (`RecyclingMethod::Verified`) cost five round trips per registration.
/// So a connection is checked if it sat idle (a restart, `wait_timeout`), or if any
/// query failed since it was last lent (a connection that died while in use).
pub(crate) struct Checked(AsyncDieselConnectionManager<AsyncMysqlConnection>);

impl Manager for Checked {
    type Type = AsyncMysqlConnection;
    type Error = PoolError;

    async fn create(&self) -> Result<AsyncMysqlConnection, PoolError> {
        self.0.create().await
    }

    async fn recycle(
        &self,
        conn: &mut AsyncMysqlConnection,
        metrics: &Metrics,
    ) -> RecycleResult<PoolError> {
        // Broken transactions and panics, with no round trip (`RecyclingMethod::Fast`).
        self.0.recycle(conn, metrics).await?;
        let lent = metrics.recycled.unwrap_or(metrics.created);
        if lent.elapsed() >= CHECK_IDLE || crate::error::failed_since(lent) {
            conn.batch_execute("DO 0")
                .await
                .map_err(PoolError::QueryError)?;
        }
        Ok(())
    }
}

impl MysqlStore {
    /// Builds the pool; connections are opened lazily, so a database that is down
    /// now does not stop the service from starting (requests get 503 until it is back).
    pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        // MariaDB's limits are in (fractional) seconds; a lock wait ends with the statement.
        let timeout = settings.statement_timeout.as_secs_f64();
        let lock_wait = settings.statement_timeout.as_secs().max(1);
        let session = format!(
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
             SET SESSION max_statement_time = {timeout}; \
             SET SESSION innodb_lock_wait_timeout = {lock_wait}"
        );
        let config = || {
            let mut config = ManagerConfig::<AsyncMysqlConnection>::default();
            let session = session.clone();
            config.custom_setup = Box::new(move |url| {
                let url = url.to_owned();
                let session = session.clone();
                Box::pin(async move {
                    let mut conn = AsyncMysqlConnection::establish(&url).await?;
                    let version = server_version(&mut conn)
                        .await
                        .map_err(ConnectionError::CouldntSetupConfiguration)?;
                    supported_server(&version)
                        .map_err(|refused| ConnectionError::BadConnection(refused.to_string()))?;
                    conn.batch_execute(&session)
                        .await
                        .map_err(ConnectionError::CouldntSetupConfiguration)?;
                    Ok(conn)
                })
            });
            // Checked with a round trip only when it may have died unseen (`Checked`).
            config.recycling_method = RecyclingMethod::Fast;
            config
        };
        let url = driver_url(&settings.url);
        let manager = || {
            Checked(
                AsyncDieselConnectionManager::<AsyncMysqlConnection>::new_with_config(
                    url.as_str(),
                    config(),
                ),
            )
        };
        Ok(Self {
            groups: Groups::build(settings, manager)?,
            url: url.into(),
            mail_key: settings.mail_key.clone(),
        })
    }

    /// Applies pending migrations under a named lock: of several instances starting
    /// at once against an empty database, one migrates, the others wait and then find
    /// nothing to do.
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
            let mut conn =
                <AsyncConnectionWrapper<AsyncMysqlConnection> as diesel::Connection>::establish(
                    &url,
                )?;
            let version: String = diesel::RunQueryDsl::get_result(
                diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>("VERSION()")),
                &mut conn,
            )?;
            supported_server(&version)?;
            crate::migrate::under_lock(
                &mut conn,
                MIGRATIONS,
                &format!("DO GET_LOCK('{MIGRATION_LOCK}', 300)"),
                &format!("DO RELEASE_LOCK('{MIGRATION_LOCK}')"),
            )
        })
        .await?
    }

    pub(crate) fn pool_status(&self) -> deadpool::Status {
        self.groups.status()
    }

    /// A connection of this thread's group (`affinity`).
    pub(crate) async fn conn(&self) -> Result<Object<Checked>, InfraError> {
        self.groups.get().await.map_err(pool_error)
    }

    /// The same as [`MysqlStore::conn`]: InnoDB's row locks let writers run side by side.
    pub(crate) async fn writer(&self) -> Result<Object<Checked>, InfraError> {
        self.conn().await
    }

    /// [`MysqlStore::writer`] if a connection is free now; `None` rather than waiting.
    pub(crate) async fn writer_at_once(&self) -> Result<Option<Object<Checked>>, InfraError> {
        self.groups.get_at_once().await.map_err(pool_error)
    }
}

// The ports, one macro each (crate::ports), over MariaDB's own dialect.
ports::shared!();
ports::user_repository!(MysqlStore);
ports::create_user!(MysqlStore, create_user_tx);
ports::otp_store!(MysqlStore);
ports::change_writes!(MysqlStore);
ports::code_writes!(MysqlStore);
ports::throttle!(MysqlStore);
ports::outbox!(MysqlStore, false);
ports::refresh_token_store!(MysqlStore);
ports::insert_session!(MysqlStore, start_session_tx);
ports::logout!(MysqlStore, logout_tx);

impl MysqlStore {
    /// `RefreshTokenStore::logout` in one transaction that takes the presented
    /// session's lock before it reads whether the session is live, so that of logouts
    /// racing for one session exactly one ends it and records its event.
    ///
    /// One session: the UPDATE that ends it, then its event, naming the account, by
    /// `INSERT ... SELECT ... RETURNING` (four round trips with BEGIN and COMMIT,
    /// where a read before the transaction made five). Every session: the account's
    /// sessions read and locked in one statement, in the order every logout of all
    /// locks them (by the account's index), then ended, then the event (five).
    async fn logout_named(
        &self,
        token_hash: &[u8],
        session: Option<uuid::Uuid>,
        all: bool,
        now: chrono::DateTime<chrono::Utc>,
        event: passcode_domain::AuditEvent,
    ) -> Result<Option<passcode_domain::UserId>, InfraError> {
        use diesel_async::AsyncConnection as _;
        let session = session.map(|id| id.to_string());
        let presented = match &session {
            Some(session) => Presented::Session(session),
            None => Presented::Token(token_hash),
        };
        let now_ms = crate::time::to_millis(now);
        let mut conn = self.writer().await?;
        let user = (*conn)
            .transaction(async |conn| {
                if all {
                    logout_all(conn, presented, now_ms, &event).await
                } else {
                    logout_one(conn, presented, now_ms, &event).await
                }
            })
            .await
            .map_err(crate::error::query_error)?;
        user.map(|user| crate::rows::parse_id(&user).map(passcode_domain::UserId))
            .transpose()
    }
}

/// The session a logout presents, found as `family_of` finds it: by its id, or (a
/// token older than `sid`) by its live token, which has no index (a scan).
#[derive(Clone, Copy)]
enum Presented<'a> {
    Session(&'a str),
    Token(&'a [u8]),
}

type SqlQuery<'a> =
    diesel::query_builder::BoxedSqlQuery<'a, diesel::mysql::Mysql, diesel::query_builder::SqlQuery>;

impl<'a> Presented<'a> {
    /// The statement that finds the session by its id or by its token (`sql!("column")`
    /// each way), with what `bind` binds before the session's key.
    fn query(
        self,
        by_session: &'static str,
        by_token: &'static str,
        bind: impl FnOnce(SqlQuery<'a>) -> SqlQuery<'a>,
    ) -> SqlQuery<'a> {
        use diesel::sql_types::{Binary, Text};
        let sql = match self {
            Self::Session(_) => by_session,
            Self::Token(_) => by_token,
        };
        let query = bind(diesel::sql_query(sql).into_boxed());
        match self {
            Self::Session(id) => query.bind::<Text, _>(id),
            Self::Token(hash) => query.bind::<Binary, _>(hash),
        }
    }

    /// Whether a session's row (its id and live token) is this one.
    fn is(self, family: &str, token: Option<&[u8]>) -> bool {
        match self {
            Self::Session(id) => family == id,
            Self::Token(hash) => token == Some(hash),
        }
    }
}

/// A logout of one session (`MysqlStore::logout_named`): the account it ended, if it
/// was live.
async fn logout_one(
    conn: &mut AsyncMysqlConnection,
    presented: Presented<'_>,
    now_ms: i64,
    event: &passcode_domain::AuditEvent,
) -> diesel::QueryResult<Option<String>> {
    use crate::cached::CachedExt as _;
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    macro_rules! end_sql {
        ($found_by:literal) => {
            concat!(
                "UPDATE sessions SET revoked_at = ? WHERE ",
                $found_by,
                " = ? AND revoked_at IS NULL"
            )
        };
    }
    let ended = presented
        .query(end_sql!("family_id"), end_sql!("token_hash"), |query| {
            query.bind::<BigInt, _>(now_ms)
        })
        .cached()
        .execute(conn)
        .await?;
    if ended == 0 {
        return Ok(None);
    }
    macro_rules! event_sql {
        ($found_by:literal) => {
            concat!(
                "INSERT INTO audit_events (id, at, kind, user_id, email, client, request_id) ",
                "SELECT ?, ?, ?, user_id, ?, ?, ? FROM sessions WHERE ",
                $found_by,
                " = ? LIMIT 1 RETURNING user_id"
            )
        };
    }
    let row = crate::rows::AuditRow::new(event);
    let logged: crate::rows::LoggedOut = presented
        .query(event_sql!("family_id"), event_sql!("token_hash"), |query| {
            row.bind_but_account(query)
        })
        .cached()
        .get_result(conn)
        .await?;
    Ok(Some(logged.user_id))
}

/// A logout of every session of the presented session's account
/// (`MysqlStore::logout_named`): the account, if the presented session was live.
async fn logout_all(
    conn: &mut AsyncMysqlConnection,
    presented: Presented<'_>,
    now_ms: i64,
    event: &passcode_domain::AuditEvent,
) -> diesel::QueryResult<Option<String>> {
    use crate::cached::CachedExt as _;
    use crate::rows::end_sessions_query;
    use diesel::sql_types::{BigInt, Binary, Nullable, Text};
    use diesel_async::RunQueryDsl;
    /// A session of the presented session's account, as its lock found it.
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Text)]
        user_id: String,
        #[diesel(sql_type = Text)]
        family_id: String,
        #[diesel(sql_type = Nullable<Binary>)]
        token_hash: Option<Vec<u8>>,
        #[diesel(sql_type = Nullable<BigInt>)]
        revoked_at: Option<i64>,
    }
    // The account read without a lock, its sessions then locked by its index, in the
    // order every logout of all locks them (the presented session locked first, by
    // its key, would deadlock with a logout of all from another session), and read
    // again under the lock.
    macro_rules! locked_sql {
        ($found_by:literal) => {
            concat!(
                "SELECT user_id, family_id, token_hash, revoked_at FROM sessions ",
                "WHERE user_id = (SELECT user_id FROM sessions WHERE ",
                $found_by,
                " = ? AND revoked_at IS NULL LIMIT 1) FOR UPDATE"
            )
        };
    }
    let locked: Vec<Locked> = presented
        .query(
            locked_sql!("family_id"),
            locked_sql!("token_hash"),
            |query| query,
        )
        .cached()
        .load(conn)
        .await?;
    let found = locked
        .iter()
        .find(|row| presented.is(&row.family_id, row.token_hash.as_deref()));
    let Some(Locked {
        user_id: user,
        revoked_at: None,
        ..
    }) = found
    else {
        return Ok(None);
    };
    end_sessions_query!(user, "", now_ms)
        .cached()
        .execute(conn)
        .await?;
    let event = passcode_domain::AuditEvent {
        user_id: Some(passcode_domain::UserId(
            crate::rows::parse_id(user)
                .map_err(|e| diesel::result::Error::DeserializationError(e.into()))?,
        )),
        ..event.clone()
    };
    self::shared::audit(conn, &event).await?;
    Ok(Some(user.clone()))
}
ports::rotate_session!(MysqlStore, rotate_tx);
ports::audit_log!(MysqlStore);
ports::health_check!(MysqlStore);

/// MariaDB's versions of the statements that differ by dialect (see `ports::dialect`).
mod dialect {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;

    use super::Conn;
    use crate::cached::CachedExt as _;
    use crate::outbox_rows::ClaimedRow;
    use crate::schema::{outbox, rate_limits};

    /// A limit's first use inside a larger transaction deadlocks InnoDB's concurrent
    /// callers (see `budgets`; with the send limit in the code's transaction, the
    /// contract test of concurrent sends to one address failed in 5 runs of 5): a
    /// send limit is counted in a commit of its own.
    pub(crate) const LIMITS_IN_TRANSACTION: bool = false;

    /// Counts one event for `key` unless its window is full or its cooldown runs: 1
    /// if counted, 0 if refused. The same conditional UPDATE as the other backends'
    /// upsert; a bucket without a row yet is inserted already counted. No placeholder
    /// row is ever written (the purge could take it between two statements), and the
    /// insert is tried only when no row exists, so that an existing row is never
    /// share-locked by a duplicate check and then wanted exclusively (a deadlock).
    pub(crate) async fn acquire(
        conn: &mut Conn,
        key: &str,
        now_ms: i64,
        window_ended: i64,
        limit: i32,
        cooled_down: i64,
    ) -> QueryResult<usize> {
        if count(conn, key, now_ms, window_ended, limit, cooled_down).await? == 1 {
            return Ok(1);
        }
        let exists = rate_limits::table
            .find(key)
            .select(rate_limits::bucket)
            .get_result::<String>(conn)
            .await
            .optional()?
            .is_some();
        if exists {
            // Refused, or created by another request after the UPDATE above looked:
            // the UPDATE decides again, now that the row is there.
            return count(conn, key, now_ms, window_ended, limit, cooled_down).await;
        }
        let inserted = diesel::insert_or_ignore_into(rate_limits::table)
            .values((
                rate_limits::bucket.eq(key),
                rate_limits::window_start.eq(now_ms),
                rate_limits::count.eq(1),
                rate_limits::last_at.eq(now_ms),
            ))
            .execute(conn)
            .await?;
        if inserted == 1 {
            return Ok(1);
        }
        // Another request created it meanwhile: count against that.
        count(conn, key, now_ms, window_ended, limit, cooled_down).await
    }

    /// The conditional UPDATE of `acquire`.
    async fn count(
        conn: &mut Conn,
        key: &str,
        now_ms: i64,
        window_ended: i64,
        limit: i32,
        cooled_down: i64,
    ) -> QueryResult<usize> {
        use diesel::dsl::case_when;
        use diesel::sql_types::Integer;
        // MariaDB assigns left to right, each assignment seeing the ones before it:
        // `count` first, while `window_start` still holds the old window.
        let window_over = rate_limits::window_start.le(window_ended);
        diesel::update(
            rate_limits::table.find(key).filter(
                window_over
                    .or(rate_limits::count.lt(limit))
                    .and(rate_limits::last_at.le(cooled_down)),
            ),
        )
        .set((
            rate_limits::count
                .eq(case_when(window_over, 1.into_sql::<Integer>())
                    .otherwise(rate_limits::count + 1)),
            rate_limits::window_start.eq(case_when(window_over, now_ms.into_sql::<BigInt>())
                .otherwise(rate_limits::window_start)),
            rate_limits::last_at.eq(now_ms),
        ))
        .cached()
        .execute(conn)
        .await
    }

    /// Leases up to `max` due messages until `lease_until`: locks them (skipping rows
    /// another instance's claim holds), marks them, reads them, in one transaction.
    /// Two locking reads, each walking the `(status, next_attempt_at)` index in order:
    /// one read with `OR` and `ORDER BY` would sort, and lock every due row before the
    /// LIMIT, so that concurrent claims would skip them all.
    pub(crate) async fn claim(
        conn: &mut Conn,
        lease_until: i64,
        now_ms: i64,
        max: i32,
    ) -> QueryResult<Vec<ClaimedRow>> {
        use diesel_async::AsyncConnection;
        conn.transaction(async |conn| {
            // First what a crashed worker left (its lease ran out), then what waits.
            let mut ids: Vec<String> = outbox::table
                .filter(outbox::status.eq("sending"))
                .filter(outbox::lease_until.lt(now_ms))
                .order(outbox::next_attempt_at)
                .limit(i64::from(max))
                .select(outbox::id)
                .for_update()
                .skip_locked()
                .load(conn)
                .await?;
            let room = i64::from(max) - i64::try_from(ids.len()).unwrap_or(i64::MAX);
            if room > 0 {
                let queued: Vec<String> = outbox::table
                    .filter(outbox::status.eq("queued"))
                    .filter(outbox::next_attempt_at.le(now_ms))
                    .order(outbox::next_attempt_at)
                    .limit(room)
                    .select(outbox::id)
                    .for_update()
                    .skip_locked()
                    .load(conn)
                    .await?;
                ids.extend(queued);
            }
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            // So that the two statements below take a few shapes, each kept prepared.
            crate::rows::pad_to_power_of_two(&mut ids);
            diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
                .set((
                    outbox::status.eq("sending"),
                    outbox::lease_until.eq(Some(lease_until)),
                    outbox::attempts.eq(outbox::attempts + 1),
                    outbox::updated_at.eq(now_ms),
                ))
                .cached()
                .execute(conn)
                .await?;
            outbox::table
                .filter(outbox::id.eq_any(&ids))
                .order(outbox::next_attempt_at)
                .select((
                    outbox::id,
                    outbox::recipient,
                    outbox::payload,
                    outbox::attempts,
                    outbox::expires_at,
                ))
                .cached()
                .load::<ClaimedRow>(conn)
                .await
        })
        .await
    }

    /// Deletes the limit state keyed by an address: its exact keys, and the keys per
    /// (address, client) matched by prefix without LIKE (an address may hold `_` or
    /// `%`). CHAR_LENGTH, as LEFT counts characters (LENGTH counts bytes here).
    pub(crate) async fn delete_address_limits(
        conn: &mut Conn,
        address: &str,
        user: &str,
    ) -> QueryResult<usize> {
        let (guesses, logins) = (format!("guess:{address}:"), format!("login:{address}:"));
        diesel::sql_query(
            "DELETE FROM rate_limits WHERE bucket IN (?, ?, ?, ?) \
             OR LEFT(bucket, CHAR_LENGTH(?)) = ? OR LEFT(bucket, CHAR_LENGTH(?)) = ? \
             OR bucket = ?",
        )
        .bind::<Text, _>(format!("guess:{address}"))
        .bind::<Text, _>(format!("login:{address}"))
        .bind::<Text, _>(format!("send:verify_email:{address}"))
        .bind::<Text, _>(format!("send:reset_password:{address}"))
        .bind::<Text, _>(&guesses)
        .bind::<Text, _>(&guesses)
        .bind::<Text, _>(&logins)
        .bind::<Text, _>(&logins)
        .bind::<Text, _>(format!("password-check:{user}"))
        .cached()
        .execute(conn)
        .await
    }
}

/// `Throttle::acquire_all` one budget at a time, each committed on its own, and the
/// earlier ones given back at a refusal: all counted or, after that, none. In one
/// transaction, InnoDB ended concurrent first uses of a bucket as deadlock victims
/// far more often than it does single statements (in a burst of 12 logins of one
/// address, 2 or 3 of 12 even with retries), so MariaDB keeps the separate commits.
mod budgets {
    use chrono::{DateTime, Utc};
    use diesel_async::RunQueryDsl;
    use passcode_domain::InfraError;
    use passcode_domain::ports::{Admissions, Limit};

    use super::MysqlStore;
    use super::shared::reserve;
    use crate::cached::CachedExt as _;
    use crate::error::query_error;
    use crate::rows::release_query;

    impl MysqlStore {
        pub(crate) async fn acquire_all_tx(
            &self,
            budgets: &[(String, Limit)],
            now: DateTime<Utc>,
        ) -> Result<Admissions, InfraError> {
            let mut conn = self.writer().await?;
            for (budget, (key, limit)) in budgets.iter().enumerate() {
                let Some(retry_after) = reserve(&mut conn, key, *limit, now)
                    .await
                    .map_err(query_error)?
                else {
                    continue;
                };
                for (key, _) in &budgets[..budget] {
                    release_query!(key, crate::time::to_millis(now))
                        .cached()
                        .execute(&mut *conn)
                        .await
                        .map_err(query_error)?;
                }
                return Ok(Admissions::Denied {
                    budget,
                    retry_after,
                });
            }
            Ok(Admissions::Allowed)
        }
    }
}

/// The guess transaction: every budget counted, then the address's live codes locked
/// and their tries counted; a refusal rolls all of it back.
mod guess {
    use chrono::{DateTime, Utc};
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    use passcode_domain::ports::{Limit, Tries};
    use passcode_domain::{EmailAddress, InfraError, OtpPurpose};

    use super::shared::reserve;
    use super::{AsyncMysqlConnection, MysqlStore};
    use crate::rows::{Abort, OtpRow, open_codes_query, tries};
    use crate::schema::otp_codes;

    /// How often a guess's transaction runs at most when InnoDB ends it as a deadlock victim.
    const DEADLOCK_ATTEMPTS: u32 = 3;

    fn is_deadlock(error: &diesel::result::Error) -> bool {
        matches!(error, diesel::result::Error::DatabaseError(_, info)
            if info.message().starts_with("Deadlock found"))
    }

    impl MysqlStore {
        /// `OtpStore::count_try`.
        pub(crate) async fn count_try_tx(
            &self,
            email: &EmailAddress,
            purpose: OtpPurpose,
            now: DateTime<Utc>,
            max_attempts: u32,
            budgets: &[(String, Limit)],
        ) -> Result<Tries, InfraError> {
            let mut conn = self.writer().await?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let counted = self
                    .count_try_once(&mut conn, email, purpose, now, max_attempts, budgets)
                    .await;
                // InnoDB ends one of two transactions that wait for each other; the
                // other goes on. Rare here (first use of a bucket by several requests
                // at once), and the victim's work is undone: run it again.
                if attempt < DEADLOCK_ATTEMPTS
                    && matches!(&counted, Err(Abort::Query(e)) if is_deadlock(e))
                {
                    continue;
                }
                return tries(counted);
            }
        }

        async fn count_try_once(
            &self,
            conn: &mut AsyncMysqlConnection,
            email: &EmailAddress,
            purpose: OtpPurpose,
            now: DateTime<Utc>,
            max_attempts: u32,
            budgets: &[(String, Limit)],
        ) -> Result<Vec<OtpRow>, Abort> {
            conn.transaction(async |conn| {
                for (budget, (key, limit)) in budgets.iter().enumerate() {
                    if let Some(retry_after) = reserve(conn, key, *limit, now).await? {
                        return Err(Abort::Refused(budget, retry_after));
                    }
                }
                let mut rows: Vec<OtpRow> =
                    open_codes_query!(email.as_str(), purpose, now, max_attempts)
                        .select(OtpRow::as_select())
                        .for_update()
                        .load(conn)
                        .await?;
                if !rows.is_empty() {
                    let mut ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
                    // Usually one open code; more (codes added side by side, or a
                    // replacement racing) take a few shapes, each kept prepared.
                    crate::rows::pad_to_power_of_two(&mut ids);
                    let tried = diesel::update(otp_codes::table.filter(otp_codes::id.eq_any(ids)))
                        .set(otp_codes::attempts.eq(otp_codes::attempts + 1));
                    crate::cached::CachedExt::cached(tried)
                        .execute(conn)
                        .await?;
                    for row in &mut rows {
                        row.attempts += 1;
                    }
                }
                Ok(rows)
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::supported_server;

    #[test]
    fn mariadb_from_10_6_is_accepted() {
        for version in [
            "10.11.6-MariaDB-0+deb12u1",
            "10.6.0-MariaDB",
            "11.4.2-MariaDB-log",
        ] {
            supported_server(version).unwrap();
        }
    }

    #[test]
    fn mysql_and_old_mariadb_are_refused_by_name() {
        let mysql = supported_server("8.0.36").unwrap_err().to_string();
        assert!(
            mysql.contains("MySQL 8.0.36") && mysql.contains("MariaDB 10.6"),
            "{mysql}"
        );
        let old = supported_server("10.5.23-MariaDB").unwrap_err().to_string();
        assert!(old.contains("needs 10.6 or later"), "{old}");
        let odd = supported_server("unknown").unwrap_err().to_string();
        assert!(odd.contains("unknown version"), "{odd}");
    }

    async fn connection_id(store: &super::MysqlStore) -> Result<u64, diesel::result::Error> {
        let mut conn = store.conn().await.unwrap();
        diesel_async::RunQueryDsl::get_result(
            diesel::select(diesel::dsl::sql::<
                diesel::sql_types::Unsigned<diesel::sql_types::BigInt>,
            >("CONNECTION_ID()")),
            &mut *conn,
        )
        .await
    }

    /// The session status counter `name` (`SHOW SESSION STATUS`), counting this
    /// statement itself: a raw query, which Diesel prepares and runs anew each time.
    async fn session_status(conn: &mut diesel_async::AsyncMysqlConnection, name: &str) -> u64 {
        #[derive(diesel::QueryableByName)]
        struct Status {
            #[diesel(sql_type = diesel::sql_types::Text)]
            #[diesel(column_name = Value)]
            value: String,
        }
        let status: Status = diesel_async::RunQueryDsl::get_result(
            diesel::sql_query(format!("SHOW SESSION STATUS LIKE '{name}'")),
            conn,
        )
        .await
        .unwrap();
        status.value.parse().unwrap()
    }

    /// This session's statements so far, counting this one.
    async fn questions(conn: &mut diesel_async::AsyncMysqlConnection) -> u64 {
        session_status(conn, "Questions").await
    }

    /// A store of one connection on a database of its own (not migrated).
    async fn one_connection(
        prefix: &str,
    ) -> (super::MysqlStore, passcode_test_support::TestDatabase) {
        let database = passcode_test_support::TestDatabase::mariadb(prefix).await;
        let mut settings = crate::DatabaseSettings::new(database.url());
        settings.max_connections = 1;
        (super::MysqlStore::connect(&settings).unwrap(), database)
    }

    /// The statements of every request and of the mail worker are kept prepared
    /// (`crate::cached`; `IN` lists padded, `rows::pad_to_power_of_two`): on MariaDB
    /// one prepared anew is a round trip of its own, and another to close it. After
    /// the first round (`crate::prepared_rounds`), a round prepares nothing but the
    /// count's own statement.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_statements_of_the_requests_and_the_mail_worker_are_kept_prepared() {
        let (store, _database) = one_connection("kept").await;
        store.migrate().await.unwrap();
        let fixture = crate::prepared_rounds::fixture(&store).await;
        let mut counted = Vec::new();
        for round in 0..3 {
            crate::prepared_rounds::round(&store, &fixture, round).await;
            counted
                .push(session_status(&mut store.conn().await.unwrap(), "Com_stmt_prepare").await);
        }
        assert_eq!(
            [counted[1] - counted[0], counted[2] - counted[1]],
            [1, 1],
            "prepared per round after the first: {counted:?}"
        );
    }

    /// A logout of one session is four statements (BEGIN, its UPDATE, its event's
    /// INSERT, COMMIT), of every session five (the sessions locked first), once its
    /// statements are prepared; and a logout of an ended session writes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(
        clippy::disallowed_methods,
        reason = "sessions unexpired by the wall clock"
    )]
    async fn a_logout_is_four_statements_and_a_logout_of_all_five() {
        use chrono::Utc;
        use passcode_domain::ports::{GiveBack, NewRefreshToken, RefreshTokenStore};
        use passcode_domain::{AuditEvent, AuditKind, RequestContext, UserId};
        let (store, _database) = one_connection("logout").await;
        store.migrate().await.unwrap();
        let user = UserId::new_random();
        let mut statements = Vec::new();
        for n in 0..12u8 {
            let (all, session) = (n % 2 == 1, n % 4 < 2);
            let now = Utc::now();
            let family = uuid::Uuid::new_v4();
            let token = NewRefreshToken {
                token_hash: vec![n; 32],
                family_id: family,
                user_id: user,
                expires_at: now + chrono::Duration::days(1),
                created_at: now,
                family_expires_at: now + chrono::Duration::days(30),
                origin: RequestContext::default(),
            };
            store.insert(&token, None, GiveBack::NONE).await.unwrap();
            let kind = [AuditKind::Logout, AuditKind::LogoutAll][usize::from(all)];
            let event = AuditEvent::new(kind, now, None, None, &RequestContext::default());
            let session = session.then_some(family);
            let before = questions(&mut store.conn().await.unwrap()).await;
            let presented = [n; 32];
            let ended = store.logout(&presented, session, all, now, event.clone());
            assert_eq!(ended.await.unwrap(), Some(user));
            let after = questions(&mut store.conn().await.unwrap()).await;
            let again = store.logout(&presented, session, all, now, event);
            assert_eq!(again.await.unwrap(), None);
            // Less the count's own statement.
            statements.push((all, session.is_some(), after - before - 1));
        }
        let last_four = &statements[8..];
        assert_eq!(
            last_four,
            [
                (false, true, 4),
                (true, true, 5),
                (false, false, 4),
                (true, false, 5)
            ],
            "(all, by id, statements) of each logout: {statements:?}"
        );
    }

    /// A connection lent a moment ago is lent again without a round trip; one that the
    /// server closed is replaced: at once if it sat idle, after the first failure if
    /// it was in use.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_is_checked_only_when_it_may_have_died_unseen() {
        use diesel_async::{AsyncConnection, SimpleAsyncConnection};
        let (store, database) = one_connection("checked").await;
        let mut admin = diesel_async::AsyncMysqlConnection::establish(database.url())
            .await
            .unwrap();
        let mut kill = async |id: u64| {
            admin.batch_execute(&format!("KILL {id}")).await.unwrap();
        };

        // Lent again at once: only the statements the test sends reach the server
        // (an attempt during which any query failed anywhere does not count).
        let mut checked = 0;
        for _ in 0..10 {
            let started = std::time::Instant::now();
            let before = questions(&mut store.conn().await.unwrap()).await;
            let after = questions(&mut store.conn().await.unwrap()).await;
            if crate::error::failed_since(started) {
                continue;
            }
            assert_eq!(after, before + 1, "no check between two checkouts");
            checked += 1;
            break;
        }
        assert_eq!(checked, 1, "queries kept failing elsewhere");

        // Closed while idle: checked, replaced, and the request never sees it.
        let first = connection_id(&store).await.unwrap();
        kill(first).await;
        tokio::time::sleep(super::CHECK_IDLE + std::time::Duration::from_millis(100)).await;
        let second = connection_id(&store).await.expect("a live connection");
        assert_ne!(second, first);

        // Closed while in use: the next query may fail (its error is seen), and
        // every checkout after that failure checks, so the one after replaces it.
        kill(second).await;
        let third = match connection_id(&store).await {
            Ok(id) => id,
            Err(failure) => {
                let _ = crate::error::query_error(failure);
                connection_id(&store)
                    .await
                    .expect("replaced after the failure")
            }
        };
        assert_ne!(third, second);
    }

    /// A give-back after a failure takes a connection at once, or gives nothing back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_give_back_at_once_does_not_wait_for_a_connection() {
        let (store, _database) = one_connection("atonce").await;
        store.migrate().await.unwrap();
        crate::ports::throttle::check_release_at_once(&store, async |store: &super::MysqlStore| {
            store.conn().await.unwrap()
        })
        .await;
    }

    /// A logout of all that loses the race for its session ends nothing
    /// (`crate::ports::check_a_losing_logout_of_all_ends_nothing`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_losing_logout_of_all_ends_nothing() {
        use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
        #[derive(diesel::QueryableByName)]
        struct Status {
            #[diesel(sql_type = diesel::sql_types::Text)]
            #[diesel(column_name = Status)]
            status: String,
        }
        let database = passcode_test_support::TestDatabase::mariadb("loser").await;
        let store =
            super::MysqlStore::connect(&crate::DatabaseSettings::new(database.url())).unwrap();
        store.migrate().await.unwrap();
        let url = database.url();
        let name = crate::prepared_rounds::database_name(url);
        crate::ports::check_a_losing_logout_of_all_ends_nothing(
            &store,
            async |end| {
                let mut winner = AsyncMysqlConnection::establish(url).await.unwrap();
                // As the store's own connections are: no gap locks in the way of
                // the session that starts while the winner holds the account's.
                let isolation = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";
                winner.batch_execute(isolation).await.unwrap();
                winner.batch_execute("BEGIN").await.unwrap();
                winner.batch_execute(end).await.unwrap();
                winner
            },
            // A lock wait on this database's sessions, as InnoDB reports it
            // (`INNODB_TRX` left out a transaction waiting for its lock).
            async || {
                let table = format!("`{name}`.`sessions`");
                diesel_async::RunQueryDsl::get_result::<Status>(
                    diesel::sql_query("SHOW ENGINE INNODB STATUS"),
                    &mut *store.conn().await.unwrap(),
                )
                .await
                .unwrap()
                .status
                .lines()
                .any(|line| line.contains(&table) && line.ends_with(" waiting"))
            },
            async |mut winner| winner.batch_execute("COMMIT").await.unwrap(),
        )
        .await;
    }

    crate::migration_test::session_tokens_migration_test!(
        diesel_async::async_connection_wrapper::AsyncConnectionWrapper<
            diesel_async::AsyncMysqlConnection,
        >,
        super::MIGRATIONS,
        {
            let database = passcode_test_support::TestDatabase::mariadb("migrate").await;
            let url = database.url().to_owned();
            (database, url)
        },
        |url: &str| super::MysqlStore::connect(&crate::DatabaseSettings::new(url)).unwrap(),
        |byte: u8| format!("x'{byte:02x}'"),
        None::<&str>
    );
}
