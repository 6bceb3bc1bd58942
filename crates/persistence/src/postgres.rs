//! The PostgreSQL adapter: a deadpool pool of diesel-async `AsyncPgConnection`s
//! (tokio-postgres underneath, no libpq). Every rule's state lives in the database,
//! so any number of instances can share it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use diesel::ConnectionError;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use passcode_domain::InfraError;

use crate::DatabaseSettings;
use crate::affinity::Groups;
use crate::cipher::MailKey;
use crate::error::pool_error;
use crate::ports;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Taken around migrations so instances starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x7061_7373_636f_6465; // "passcode"

/// Implements the seven storage ports (see `Store`) on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    groups: Groups<AsyncDieselConnectionManager<AsyncPgConnection>>,
    shared: Arc<Shared>,
    url: Arc<str>,
    mail_key: MailKey,
}

/// One connection per group (HTTP worker), besides the pool, that many requests use
/// at once: their statements are pipelined on it, each committed on its own. Only for
/// statements that commit without waiting for the WAL flush (a guess, a login's two
/// budgets): the server runs a connection's statements one after another, so a
/// synchronous commit would hold up every statement queued behind it. One backend
/// woken for many statements costs PostgreSQL less CPU than one per statement (see
/// docs/performance.md). Opened on first use, by the group's own thread (`affinity`);
/// after any failed statement it is dropped and the next use opens a new one. While
/// it is being opened, and for a second after it could not be (the server down, or
/// at its `max_connections`), requests take a pooled connection instead: none waits
/// on another's opening.
struct Shared {
    url: Arc<str>,
    statement_timeout: u128,
    acquire_timeout: std::time::Duration,
    slots: Box<[tokio::sync::Mutex<Slot>]>,
    /// How many slots are `Slot::Open`, for metrics (read without taking the slots).
    open: std::sync::atomic::AtomicUsize,
}

/// A group's shared connection, if open; else when it last could not be opened.
#[derive(Default)]
enum Slot {
    #[default]
    Closed,
    Open(Arc<AsyncPgConnection>),
    Failed(std::time::Instant),
}

/// How long after a failed opening requests take pooled connections before the next
/// attempt.
const REOPEN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A connection lent for one statement that commits on its own: the group's shared
/// one, or a pooled one (`Shared`).
pub(crate) enum Lent {
    Shared(Arc<AsyncPgConnection>),
    // Boxed: the fallback is rare, and the shared case stays small.
    Pooled(Box<Object<AsyncPgConnection>>),
}

impl std::ops::Deref for Lent {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        match self {
            Lent::Shared(conn) => conn,
            Lent::Pooled(conn) => conn,
        }
    }
}

/// A connection to `url`, set up as every connection of the store is.
async fn establish(
    url: &str,
    statement_timeout: u128,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute(&format!("SET statement_timeout = {statement_timeout}"))
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
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
        let manager = || {
            let mut config = ManagerConfig::<AsyncPgConnection>::default();
            config.custom_setup = Box::new(move |url| {
                let url = url.to_owned();
                Box::pin(async move { establish(&url, statement_timeout).await })
            });
            // A connection that died with the server is noticed and replaced at checkout:
            // its socket is closed (`is_broken`), known without a round trip. (`Verified`
            // would add a `SELECT 1` round trip to every checkout, that is to every port call.)
            config.recycling_method = RecyclingMethod::Fast;
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                settings.url.as_str(),
                config,
            )
        };
        let groups = Groups::build(settings, manager)?;
        let url: Arc<str> = settings.url.as_str().into();
        let shared = Shared {
            url: url.clone(),
            statement_timeout,
            acquire_timeout: settings.acquire_timeout,
            slots: (0..groups.count())
                .map(|_| tokio::sync::Mutex::default())
                .collect(),
            open: std::sync::atomic::AtomicUsize::new(0),
        };
        Ok(Self {
            groups,
            shared: Arc::new(shared),
            url,
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
            crate::migrate::under_lock(
                &mut conn,
                MIGRATIONS,
                &format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"),
                &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"),
            )
        })
        .await?
    }

    pub(crate) fn pool_status(&self) -> deadpool::Status {
        self.groups.status()
    }

    /// How many shared connections (one at most per group) are open, besides the pool.
    pub(crate) fn shared_open(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// A connection of this thread's group (`affinity`).
    pub(crate) async fn conn(&self) -> Result<Object<AsyncPgConnection>, InfraError> {
        self.groups.get().await.map_err(pool_error)
    }

    /// The same as [`PgStore::conn`]: PostgreSQL's row locks let writers run side by side.
    pub(crate) async fn writer(&self) -> Result<Object<AsyncPgConnection>, InfraError> {
        self.conn().await
    }

    /// This thread's group's shared connection (`Shared`), opened if it has none; a
    /// pooled one while it is being opened or cannot be.
    pub(crate) async fn shared(&self) -> Result<Lent, InfraError> {
        let shared = &self.shared;
        let Ok(mut slot) = shared.slots[crate::affinity::group(shared.slots.len())].try_lock()
        else {
            return Ok(Lent::Pooled(Box::new(self.writer().await?)));
        };
        match &*slot {
            Slot::Open(conn) => return Ok(Lent::Shared(Arc::clone(conn))),
            Slot::Failed(at) if at.elapsed() < REOPEN_AFTER => {
                drop(slot);
                return Ok(Lent::Pooled(Box::new(self.writer().await?)));
            }
            Slot::Closed | Slot::Failed(_) => {}
        }
        let opened = tokio::time::timeout(
            shared.acquire_timeout,
            establish(&shared.url, shared.statement_timeout),
        )
        .await;
        match opened {
            Ok(Ok(conn)) => {
                let conn = Arc::new(conn);
                *slot = Slot::Open(Arc::clone(&conn));
                shared.open.fetch_add(1, Ordering::Relaxed);
                Ok(Lent::Shared(conn))
            }
            Ok(Err(_)) | Err(_) => {
                *slot = Slot::Failed(std::time::Instant::now());
                drop(slot);
                Ok(Lent::Pooled(Box::new(self.writer().await?)))
            }
        }
    }

    /// Drops `conn` from its slot after a failed statement (if it is still there), so
    /// that the next use opens a new one. Statements already sent on it finish or fail
    /// on their own.
    pub(crate) async fn forget_shared(&self, conn: &Lent) {
        let Lent::Shared(conn) = conn else { return };
        for slot in &self.shared.slots {
            let mut slot = slot.lock().await;
            if matches!(&*slot, Slot::Open(kept) if Arc::ptr_eq(kept, conn)) {
                *slot = Slot::Closed;
                self.shared.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// [`PgStore::writer`] if a connection is free now; `None` rather than waiting.
    pub(crate) async fn writer_at_once(
        &self,
    ) -> Result<Option<Object<AsyncPgConnection>>, InfraError> {
        self.groups.get_at_once().await.map_err(pool_error)
    }
}

// The ports, one macro each (crate::ports), over the dialect of RETURNING and ON CONFLICT
// with this backend's claim of the outbox.
ports::returning_dialect!(crate::outbox_rows::CLAIM_POSTGRES);
ports::shared!();
ports::user_repository!(PgStore);
ports::otp_store!(PgStore);
ports::throttle!(PgStore);
ports::outbox!(PgStore, true);
ports::refresh_token_store!(PgStore);
ports::rotate_session!(PgStore, rotate_tx);
ports::audit_log!(PgStore);
ports::health_check!(PgStore);

/// The hot paths in fewer round trips: the statements of a guess are pipelined (sent
/// together, executed in order by the server), between BEGIN and COMMIT or ROLLBACK;
/// a login's session and a registration's account are sent with their BEGIN and
/// COMMIT at once, a new code with its BEGIN before its COMMIT or ROLLBACK; a refresh
/// rotation is one statement.
mod pipelined {
    use chrono::{DateTime, Utc};
    use diesel::insert_into;
    use diesel::prelude::*;
    use diesel_async::pooled_connection::deadpool::Object;
    use diesel_async::{AsyncPgConnection, RunQueryDsl};
    use futures_util::future::BoxFuture;
    use passcode_domain::ports::{
        Admission, Admissions, CreateUserError, Issue, Limit, NewRefreshToken, Spend, Tries,
    };
    use passcode_domain::{AuditEvent, EmailAddress, InfraError, OtpPurpose};

    use super::{Lent, PgStore};
    use crate::cached::CachedExt as _;
    use crate::error::{create_user_error, query_error};
    use crate::outbox_rows::NewOutboxRow;
    use crate::rows::{
        Abort, AuditRow, FirstCodeRows, OtpRow, SpendRows, UserRow, acquire_bounds, acquire_query,
        admission, admissions, apply_registration_query, attempts_limit,
        delete_replaced_codes_query, expire_replaced_mail_query, limit_name, new_session_query,
        open_codes_query, registered_email, release_query, retry_after, send_budgets,
        spend_code_query, tries,
    };
    use crate::rows::{
        Ended, SealedChange, delete_address_limits_query, end_family_query, end_sessions_query,
        erase_queries, move_email_query, parse_id, set_password_query,
    };
    use crate::schema::{audit_events, otp_codes, outbox, rate_limits, users};
    use crate::time::to_millis;

    /// `Throttle::acquire`'s conditional upsert: 1 if counted.
    async fn upsert(
        mut conn: &AsyncPgConnection,
        key: &str,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> QueryResult<usize> {
        let now_ms = to_millis(now);
        let (window_ended, most, cooled_down) = acquire_bounds(limit, now_ms);
        acquire_query!(key, now_ms, window_ended, most, cooled_down)
            .cached()
            .execute(&mut conn)
            .await
    }

    /// When a refused budget frees again.
    async fn refusal(
        mut conn: &AsyncPgConnection,
        key: &str,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> QueryResult<chrono::Duration> {
        let (window_start, count, last_at): (i64, i32, i64) = rate_limits::table
            .find(key)
            .select((
                rate_limits::window_start,
                rate_limits::count,
                rate_limits::last_at,
            ))
            .get_result(&mut conn)
            .await?;
        metrics::counter!("passcode_throttle_denials_total", "limit" => limit_name(key))
            .increment(1);
        Ok(retry_after(
            limit,
            to_millis(now),
            window_start,
            count,
            last_at,
        ))
    }

    async fn count(
        mut conn: &AsyncPgConnection,
        email: &str,
        purpose: OtpPurpose,
        now: DateTime<Utc>,
        max_attempts: u32,
    ) -> QueryResult<Vec<OtpRow>> {
        diesel::update(open_codes_query!(email, purpose, now, max_attempts))
            .set(otp_codes::attempts.eq(otp_codes::attempts + 1))
            .returning(OtpRow::as_returning())
            .cached()
            .get_results(&mut conn)
            .await
    }

    /// `acquire_query!` as SQL text: inserts `$row` (`$now` is `$1`), or counts one
    /// more in the bucket's window (a new window if it ended at `$ended`) unless
    /// `$limit` are counted or the cooldown has not passed (`last_at` after
    /// `$cooled_down`). Returns 1 if counted.
    macro_rules! guess_upsert {
        ($row:literal, $ended:literal, $limit:literal, $cooled_down:literal) => {
            concat!(
                "INSERT INTO rate_limits AS r (bucket, window_start, count, last_at) ",
                $row,
                " ON CONFLICT (bucket) DO UPDATE SET count = CASE WHEN r.window_start <= ",
                $ended,
                " THEN 1 ELSE r.count + 1 END, window_start = CASE WHEN r.window_start <= ",
                $ended,
                " THEN $1 ELSE r.window_start END, last_at = $1 WHERE (r.window_start <= ",
                $ended,
                " OR r.count < ",
                $limit,
                ") AND r.last_at <= ",
                $cooled_down,
                " RETURNING 1"
            )
        };
    }

    /// The two budgets of `GUESS_SQL` and `BUDGETS_SQL` as CTEs: the share (`$2`, its
    /// bounds `$3` to `$5`), then, only if it counted, the ceiling (`$6`, `$7` to `$9`).
    macro_rules! budget_ctes {
        () => {
            concat!(
                "WITH share AS (",
                guess_upsert!("VALUES ($2, $1, 1, $1)", "$3", "$4", "$5"),
                "), ceiling AS (",
                guess_upsert!("SELECT $6, $1, 1, $1 FROM share", "$7", "$8", "$9"),
                ")"
            )
        };
    }

    /// A guess as one statement (committed on its own): reserve a try from the share
    /// (`$2`, as `acquire_query!`), then, only if the share counted it, from the
    /// ceiling (`$6`), then, only if both did, count the try on every open code of
    /// the address (as `open_codes_query!`). The one way to count less than all is a
    /// share counted and a ceiling refused: the caller gives the share's try back
    /// (`give_back`). That try is briefly counted on this client's share while the
    /// address's ceiling is full, so it can refuse nothing the ceiling would allow;
    /// the share has no cooldown (a refused guess would otherwise leave one behind).
    /// The final row carries both budgets' answers, and each counted code, if any.
    ///
    /// Its commit does not wait for the WAL flush (`set_config(.., true)`: this
    /// statement's transaction only). A guess writes only counts, never a code, session
    /// or mail; if PostgreSQL itself crashes, at most the last few hundred milliseconds
    /// of counted guesses are forgotten (`wal_writer_delay` times three). Any later
    /// synchronous commit (a right code's, a refresh's) flushes them with it.
    const GUESS_SQL: &str = concat!(
        budget_ctes!(),
        ", tried AS ( \
            UPDATE otp_codes SET attempts = attempts + 1 \
            WHERE email = $10 AND purpose = $11 AND consumed_at IS NULL \
                AND expires_at > $1 AND attempts < $12 AND EXISTS (SELECT 1 FROM ceiling) \
            RETURNING id, email, purpose, code_hash, attempts, consumed_at, created_at, \
                expires_at, full_name, password_hash, user_id \
        ) \
        SELECT (SELECT count(*) FROM share) AS share, (SELECT count(*) FROM ceiling) AS ceiling, \
            tried.* \
        FROM (SELECT set_config('synchronous_commit', 'off', true)) AS answer \
            LEFT JOIN tried ON true"
    );

    /// Two budgets as one statement, committed without waiting for the WAL flush:
    /// `GUESS_SQL` without the try (a login's share, without a cooldown, then its
    /// ceiling). The same one way to count less than both, and the same give-back.
    const BUDGETS_SQL: &str = concat!(
        budget_ctes!(),
        " SELECT (SELECT count(*) FROM share) AS share, \
            (SELECT count(*) FROM ceiling) AS ceiling \
        FROM (SELECT set_config('synchronous_commit', 'off', true)) AS answer"
    );

    /// The row of `BUDGETS_SQL`: each budget's answer (1 if counted).
    #[derive(diesel::QueryableByName)]
    struct Budgeted {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        share: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        ceiling: i64,
    }

    /// `$query` (`GUESS_SQL` or `BUDGETS_SQL`) with its first nine parameters bound:
    /// `$now`, then each budget's key and bounds.
    macro_rules! with_budgets {
        ($query:expr, $now:expr, [$share:expr, $ceiling:expr]) => {{
            use diesel::sql_types::{BigInt, Integer, Text};
            let now_ms = to_millis($now);
            let (share, ceiling): (&(String, Limit), &(String, Limit)) = ($share, $ceiling);
            let (share_ended, share_limit, share_cooled) = acquire_bounds(share.1, now_ms);
            let (ceiling_ended, ceiling_limit, ceiling_cooled) = acquire_bounds(ceiling.1, now_ms);
            $query
                .bind::<BigInt, _>(now_ms)
                .bind::<Text, _>(&share.0)
                .bind::<BigInt, _>(share_ended)
                .bind::<Integer, _>(share_limit)
                .bind::<BigInt, _>(share_cooled)
                .bind::<Text, _>(&ceiling.0)
                .bind::<BigInt, _>(ceiling_ended)
                .bind::<Integer, _>(ceiling_limit)
                .bind::<BigInt, _>(ceiling_cooled)
        }};
    }

    /// A row of `GUESS_SQL`: the budgets' answers, and a counted code if any.
    #[derive(diesel::QueryableByName)]
    pub(super) struct Guessed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        share: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        ceiling: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        id: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        email: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        purpose: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
        code_hash: Option<Vec<u8>>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
        attempts: Option<i32>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        consumed_at: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        created_at: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        expires_at: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        full_name: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        password_hash: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        user_id: Option<String>,
    }

    impl Guessed {
        /// The counted code of this row (none if no code was counted).
        fn into_row(self) -> Option<OtpRow> {
            Some(OtpRow {
                id: self.id?,
                email: self.email?,
                purpose: self.purpose?,
                code_hash: self.code_hash?,
                attempts: self.attempts?,
                consumed_at: self.consumed_at,
                created_at: self.created_at?,
                expires_at: self.expires_at?,
                full_name: self.full_name,
                password_hash: self.password_hash,
                user_id: self.user_id,
            })
        }
    }

    /// `GUESS_SQL` on this connection.
    pub(super) async fn guessed(
        mut conn: &AsyncPgConnection,
        email: &EmailAddress,
        purpose: OtpPurpose,
        now: DateTime<Utc>,
        max_attempts: u32,
        [share, ceiling]: [&(String, Limit); 2],
    ) -> QueryResult<Vec<Guessed>> {
        use diesel::sql_types::{Integer, Text};
        with_budgets!(diesel::sql_query(GUESS_SQL), now, [share, ceiling])
            .bind::<Text, _>(email.as_str())
            .bind::<Text, _>(purpose.as_str())
            .bind::<Integer, _>(attempts_limit(max_attempts))
            .cached()
            .load::<Guessed>(&mut conn)
            .await
    }

    /// `BUDGETS_SQL` on this connection: each budget's answer (1 if counted).
    async fn budgeted(
        mut conn: &AsyncPgConnection,
        now: DateTime<Utc>,
        [share, ceiling]: [&(String, Limit); 2],
    ) -> QueryResult<Option<(i64, i64)>> {
        let row = with_budgets!(diesel::sql_query(BUDGETS_SQL), now, [share, ceiling])
            .cached()
            .get_result::<Budgeted>(&mut conn)
            .await
            .optional()?;
        Ok(row.map(|row| (row.share, row.ceiling)))
    }

    /// After a statement that counted `share` and then, only if it counted, `ceiling`
    /// (`answers`: 1 for each counted; none if no row came back): the refusal, if
    /// either refused, with when that budget frees again. A share counted for an
    /// event that its ceiling refused is given back.
    async fn pair_refusal(
        conn: &AsyncPgConnection,
        answers: Option<(i64, i64)>,
        [share, ceiling]: [&(String, Limit); 2],
        now: DateTime<Utc>,
    ) -> QueryResult<Option<Abort>> {
        if answers.is_none_or(|(share, _)| share != 1) {
            let retry_after = refusal(conn, &share.0, share.1, now).await?;
            Ok(Some(Abort::Refused(0, retry_after)))
        } else if answers.is_none_or(|(_, ceiling)| ceiling != 1) {
            let (retry_after, _) = tokio::try_join!(
                refusal(conn, &ceiling.0, ceiling.1, now),
                give_back(conn, &share.0, now)
            )?;
            Ok(Some(Abort::Refused(1, retry_after)))
        } else {
            Ok(None)
        }
    }

    /// `release_query!` as one statement whose commit does not wait for the WAL flush,
    /// as the count it takes back (`GUESS_SQL`, `BUDGETS_SQL`): so it can run on the
    /// shared connection, and holds the share's row for no flush. Lost in a crash of
    /// PostgreSQL, it leaves that one try counted: the share refuses sooner, never
    /// later (the WAL is written in order: a kept give-back's count is kept too).
    const GIVE_BACK_SQL: &str = "UPDATE rate_limits SET count = count - 1 \
        FROM (SELECT set_config('synchronous_commit', 'off', true)) AS answer \
        WHERE bucket = $1 AND count > 0 AND window_start <= $2";

    /// A share's try given back on this connection (`GIVE_BACK_SQL`), of an event
    /// counted at `now`; never in a transaction (it would make it all asynchronous).
    async fn give_back(
        mut conn: &AsyncPgConnection,
        key: &str,
        now: DateTime<Utc>,
    ) -> QueryResult<usize> {
        use diesel::sql_types::{BigInt, Text};
        diesel::sql_query(GIVE_BACK_SQL)
            .bind::<Text, _>(key)
            .bind::<BigInt, _>(to_millis(now))
            .cached()
            .execute(&mut conn)
            .await
    }

    /// A pooled connection in a transaction begun by hand, so that BEGIN travels with
    /// the transaction's first statements (diesel-async's `transaction` waits for
    /// BEGIN's answer first: one round trip more). Until COMMIT or ROLLBACK has been
    /// answered (`ended`), dropping it (a statement failed, the request was cancelled)
    /// does not return the connection to the pool: it closes it, and the server rolls
    /// the transaction back.
    pub(super) struct HandBegun(pub(super) Option<Object<AsyncPgConnection>>);

    impl HandBegun {
        pub(super) fn conn(&self) -> Result<&AsyncPgConnection, InfraError> {
            self.0
                .as_deref()
                .ok_or_else(|| query_error(diesel::result::Error::BrokenTransactionManager))
        }

        /// COMMIT or ROLLBACK was answered: the connection may serve again.
        pub(super) fn ended(mut self) {
            drop(self.0.take());
        }
    }

    impl Drop for HandBegun {
        fn drop(&mut self) {
            if let Some(conn) = self.0.take() {
                drop(Object::take(conn));
            }
        }
    }

    /// BEGIN, COMMIT or ROLLBACK, as a statement prepared once per connection.
    pub(super) async fn control(
        mut conn: &AsyncPgConnection,
        sql: &'static str,
    ) -> QueryResult<usize> {
        diesel::sql_query(sql).cached().execute(&mut conn).await
    }

    impl PgStore {
        /// `OtpStore::count_try`: one statement for a guess's two budgets (the share,
        /// without a cooldown, then the ceiling; see `GUESS_SQL`), a pipelined
        /// transaction otherwise.
        pub(crate) async fn count_try_tx(
            &self,
            email: &EmailAddress,
            purpose: OtpPurpose,
            now: DateTime<Utc>,
            max_attempts: u32,
            budgets: &[(String, Limit)],
        ) -> Result<Tries, InfraError> {
            match budgets {
                [share, ceiling] if share.1.cooldown.is_zero() => {
                    self.guess(email, purpose, now, max_attempts, [share, ceiling])
                        .await
                }
                _ => {
                    self.count_try_pipelined(email, purpose, now, max_attempts, budgets)
                        .await
                }
            }
        }

        async fn guess(
            &self,
            email: &EmailAddress,
            purpose: OtpPurpose,
            now: DateTime<Utc>,
            max_attempts: u32,
            [share, ceiling]: [&(String, Limit); 2],
        ) -> Result<Tries, InfraError> {
            let conn = self.shared().await?;
            let rows = self
                .on_shared(
                    &conn,
                    guessed(&conn, email, purpose, now, max_attempts, [share, ceiling]),
                )
                .await?;
            // Always one row at least (the LEFT JOIN), with the same answers on each.
            let answers = <[Guessed]>::first(&rows).map(|row| (row.share, row.ceiling));
            let outcome = match self
                .refusal_of(&conn, answers, [share, ceiling], now)
                .await?
            {
                Some(refused) => Err(refused),
                None => Ok(rows.into_iter().filter_map(Guessed::into_row).collect()),
            };
            tries(outcome)
        }

        /// `statement`'s answer on shared connection `conn`; a failure drops `conn`
        /// (`PgStore::forget_shared`).
        async fn on_shared<T>(
            &self,
            conn: &Lent,
            statement: impl Future<Output = QueryResult<T>>,
        ) -> Result<T, InfraError> {
            match statement.await {
                Ok(answer) => Ok(answer),
                Err(e) => {
                    self.forget_shared(conn).await;
                    Err(query_error(e))
                }
            }
        }

        /// `pair_refusal` after a statement on `conn`, on `conn`: its reads and its
        /// give-back (`GIVE_BACK_SQL`) wait for no flush either.
        async fn refusal_of(
            &self,
            conn: &Lent,
            answers: Option<(i64, i64)>,
            budgets: [&(String, Limit); 2],
            now: DateTime<Utc>,
        ) -> Result<Option<Abort>, InfraError> {
            self.on_shared(conn, pair_refusal(conn, answers, budgets, now))
                .await
        }

        /// `OtpStore::count_try`, pipelined in a transaction.
        async fn count_try_pipelined(
            &self,
            email: &EmailAddress,
            purpose: OtpPurpose,
            now: DateTime<Utc>,
            max_attempts: u32,
            budgets: &[(String, Limit)],
        ) -> Result<Tries, InfraError> {
            let open = HandBegun(Some(self.writer().await?));
            let conn = open.conn()?;
            // BEGIN, every budget's upsert and the try, sent at once; the server runs
            // them in order (diesel-async sends a connection's statements in the order
            // they are first polled, and `try_join!` polls in argument order).
            let reserves = upserts(conn, budgets, now);
            let try_counted = count(conn, email.as_str(), purpose, now, max_attempts);
            // As `GUESS_SQL`: counts only, committed without waiting for the WAL flush.
            let (_, _, reserved, rows) = tokio::try_join!(
                control(conn, "BEGIN"),
                control(conn, "SET LOCAL synchronous_commit = off"),
                reserves,
                try_counted
            )
            .map_err(query_error)?;
            let counted = settle(conn, budgets, &reserved, now)
                .await
                .map_err(query_error)?
                .map(|()| rows);
            open.ended();
            tries(counted)
        }

        /// `Throttle::acquire_all`: a login's two budgets (a share without a
        /// cooldown, then its ceiling) in one statement (`BUDGETS_SQL`), any other
        /// set pipelined in a transaction (`acquire_all_pipelined`).
        pub(crate) async fn acquire_all_tx(
            &self,
            budgets: &[(String, Limit)],
            now: DateTime<Utc>,
        ) -> Result<Admissions, InfraError> {
            match budgets {
                [share, ceiling] if share.1.cooldown.is_zero() => {
                    let conn = self.shared().await?;
                    let answers = self
                        .on_shared(&conn, budgeted(&conn, now, [share, ceiling]))
                        .await?;
                    let refused = self
                        .refusal_of(&conn, answers, [share, ceiling], now)
                        .await?;
                    admissions(refused.map_or(Ok(()), Err))
                }
                _ => self.acquire_all_pipelined(budgets, now).await,
            }
        }

        /// `Throttle::acquire_all`: BEGIN and every budget's upsert sent at once, as
        /// a guess's are (`count_try_pipelined`), and committed as they are, without
        /// waiting for the WAL flush: they are counts only.
        async fn acquire_all_pipelined(
            &self,
            budgets: &[(String, Limit)],
            now: DateTime<Utc>,
        ) -> Result<Admissions, InfraError> {
            let open = HandBegun(Some(self.writer().await?));
            let conn = open.conn()?;
            let reserves = upserts(conn, budgets, now);
            let (_, _, reserved) = tokio::try_join!(
                control(conn, "BEGIN"),
                control(conn, "SET LOCAL synchronous_commit = off"),
                reserves
            )
            .map_err(query_error)?;
            let reserved = settle(conn, budgets, &reserved, now)
                .await
                .map_err(query_error)?;
            open.ended();
            admissions(reserved)
        }
    }

    /// A transaction whose statements are all known in advance, sent at once with its
    /// BEGIN and COMMIT: one round trip where, statement by statement, it took one
    /// for each. A statement that fails aborts the transaction, the ones after it fail
    /// with it, and the server answers the COMMIT by rolling back; every answer is read
    /// before the first failure is returned, so the connection may serve again.
    async fn in_one_trip<'a>(
        conn: &'a AsyncPgConnection,
        statements: Vec<BoxFuture<'a, QueryResult<usize>>>,
    ) -> QueryResult<()> {
        // `join!` first polls its futures in order, and each sends its statement when
        // first polled: BEGIN, the statements and COMMIT reach the server in that order.
        let (begun, answers, committed) = tokio::join!(
            control(conn, "BEGIN"),
            futures_util::future::join_all(statements),
            control(conn, "COMMIT")
        );
        begun?;
        for answer in answers {
            answer?;
        }
        committed.map(drop)
    }

    /// Runs `statement` on `conn` (a shared reference, so that statements pipeline).
    fn on<'a, Q>(mut conn: &'a AsyncPgConnection, statement: Q) -> BoxFuture<'a, QueryResult<usize>>
    where
        Q: diesel_async::methods::ExecuteDsl<&'a AsyncPgConnection> + Send + 'a,
    {
        Box::pin(async move { statement.execute(&mut conn).await })
    }

    impl PgStore {
        /// `RefreshTokenStore::insert` in one round trip (`in_one_trip`): the budgets
        /// given back, in the order they were reserved in (as every reservation locks
        /// them), the session and its event. Statement by statement, a login's took five.
        pub(crate) async fn start_session_tx(
            &self,
            token: &NewRefreshToken,
            event: Option<AuditEvent>,
            give_back: passcode_domain::ports::GiveBack<'_>,
        ) -> Result<(), InfraError> {
            let open = HandBegun(Some(self.writer().await?));
            let conn = open.conn()?;
            let event = event.as_ref().map(AuditRow::new);
            let reserved_at = crate::time::to_millis(give_back.reserved_at);
            let mut statements: Vec<_> = give_back
                .keys
                .iter()
                .map(|key| on(conn, release_query!(key, reserved_at).cached()))
                .collect();
            statements.push(on(conn, new_session_query!(token)));
            if let Some(event) = &event {
                statements.push(on(
                    conn,
                    insert_into(audit_events::table).values(event).cached(),
                ));
            }
            let started = in_one_trip(conn, statements).await;
            open.ended();
            started.map_err(query_error)
        }

        /// A logout (`RefreshTokenStore::revoke_family` and `revoke_all`) in one round
        /// trip (`in_one_trip`): the sessions ended and the event, with BEGIN and
        /// COMMIT. Statement by statement it took four.
        pub(crate) async fn logout_tx(
            &self,
            ended: Ended,
            now: DateTime<Utc>,
            event: Option<AuditEvent>,
        ) -> Result<(), InfraError> {
            let (id, now) = (ended.id(), to_millis(now));
            let event = event.as_ref().map(AuditRow::new);
            let open = HandBegun(Some(self.writer().await?));
            let conn = open.conn()?;
            let mut statements = vec![match ended {
                Ended::Family(_) => on(conn, end_family_query!(&id, now).cached()),
                Ended::Account(_) => on(conn, end_sessions_query!(&id, "", now).cached()),
            }];
            if let Some(event) = &event {
                statements.push(on(
                    conn,
                    insert_into(audit_events::table).values(event).cached(),
                ));
            }
            let ended = in_one_trip(conn, statements).await;
            open.ended();
            ended.map_err(query_error)
        }

        /// `RefreshTokenStore::logout` in one statement, so one round trip where the
        /// read and then the write took two: the live session found (as `family_of`
        /// finds it), it or every session of its account ended, and the event written
        /// with the account from that row. Nothing is written if no live session is
        /// found. One statement commits on its own.
        pub(crate) async fn logout_named(
            &self,
            token_hash: &[u8],
            session: Option<uuid::Uuid>,
            all: bool,
            now: DateTime<Utc>,
            event: AuditEvent,
        ) -> Result<Option<passcode_domain::UserId>, InfraError> {
            use crate::rows::LoggedOut;
            use diesel::sql_types::{BigInt, Binary, Text};
            // The event, naming the account, if the presented session is among those
            // this statement ended.
            macro_rules! logout_event_sql {
                () => {
                    concat!(
                        "INSERT INTO audit_events ",
                        "(id, at, kind, user_id, email, client, request_id) ",
                        "SELECT $3, $4, $5, user_id, $6, $7, $8 FROM s ",
                        "WHERE family_id IN (SELECT family_id FROM ended) RETURNING user_id"
                    )
                };
            }
            // The session as `family_of` finds it: by its id, or (a token older than
            // `sid`) by its live token. The event is written only if this statement
            // ended that session: a logout racing it for the session reads it live
            // too, but its UPDATE waits for the first's and then finds it ended, so
            // it ends nothing and records nothing.
            macro_rules! logout_sql {
                ($found_by:literal) => {
                    concat!(
                        "WITH s AS (SELECT family_id, user_id FROM sessions WHERE ",
                        $found_by,
                        " = $1 AND revoked_at IS NULL LIMIT 1), ",
                        "ended AS (UPDATE sessions SET revoked_at = $2 ",
                        "WHERE revoked_at IS NULL AND family_id IN (SELECT family_id FROM s) ",
                        "RETURNING family_id) ",
                        logout_event_sql!()
                    )
                };
            }
            // Of every session: the account's live sessions locked first, in the order
            // the account's index gives (as every statement ending an account's
            // sessions meets them), and ended only if the presented session is still
            // live under its lock. Ending the sessions the statement read instead, a
            // logout that lost the race would still end a session the account started
            // after the winner read them (`check_a_losing_logout_of_all_ends_nothing`).
            macro_rules! logout_all_sql {
                ($found_by:literal) => {
                    concat!(
                        "WITH locked AS (SELECT family_id, user_id, token_hash FROM sessions ",
                        "WHERE user_id = (SELECT user_id FROM sessions WHERE ",
                        $found_by,
                        " = $1 AND revoked_at IS NULL LIMIT 1) ",
                        "AND revoked_at IS NULL FOR UPDATE), ",
                        "s AS (SELECT family_id, user_id FROM locked WHERE ",
                        $found_by,
                        " = $1), ",
                        "ended AS (UPDATE sessions SET revoked_at = $2 ",
                        "WHERE family_id IN (SELECT family_id FROM locked) ",
                        "AND EXISTS (SELECT 1 FROM s) RETURNING family_id) ",
                        logout_event_sql!()
                    )
                };
            }
            let sql = match (session.is_some(), all) {
                (true, false) => logout_sql!("family_id"),
                (true, true) => logout_all_sql!("family_id"),
                (false, false) => logout_sql!("token_hash"),
                (false, true) => logout_all_sql!("token_hash"),
            };
            let row = AuditRow::new(&event);
            let query = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
            let query = match session {
                Some(session) => query.bind::<Text, _>(session.to_string()),
                None => query.bind::<Binary, _>(token_hash),
            };
            let query = row.bind_but_account(query.bind::<BigInt, _>(to_millis(now)));
            let mut conn = self.writer().await?;
            let ended: Option<LoggedOut> = query
                .cached()
                .get_result(&mut *conn)
                .await
                .optional()
                .map_err(query_error)?;
            ended
                .map(|ended| parse_id(&ended.user_id).map(passcode_domain::UserId))
                .transpose()
        }

        /// `UserRepository::create`: the account alone in one statement, or with its
        /// first code, the code's mail and its event in one round trip (`in_one_trip`;
        /// six statement by statement). An address taken fails as the account's INSERT.
        pub(crate) async fn create_user_tx(
            &self,
            row: UserRow,
            first_code: Option<FirstCodeRows>,
        ) -> Result<UserRow, CreateUserError> {
            let open = HandBegun(Some(self.writer().await?));
            let conn = open.conn()?;
            let account = on(conn, insert_into(users::table).values(&row).cached());
            let created = match &first_code {
                None => account.await.map(drop),
                Some(first) => {
                    let mut statements = vec![account];
                    statements.extend(first_code_statements(conn, first));
                    in_one_trip(conn, statements).await
                }
            };
            // Answered, failed or not: the connection may serve again.
            open.ended();
            created.map_err(create_user_error)?;
            Ok(row)
        }
    }

    impl PgStore {
        /// `OtpStore::replace` and `decoy`'s write (`code_writes!` runs the same
        /// statement by statement): BEGIN, the send limit's upsert, the keys given back
        /// in the order they were reserved in, the earlier codes' waiting mail expired
        /// and the codes deleted, the row, its mail and the notice, all sent at once;
        /// then COMMIT, or ROLLBACK if the send limit refused. Two round trips where
        /// statement by statement took seven (more with keys or a notice); one, with
        /// COMMIT sent at once, where there is no send limit.
        pub(crate) async fn issue_tx(
            &self,
            code: OtpRow,
            mail: NewOutboxRow,
            notice: Option<NewOutboxRow>,
            issue: &Issue<'_>,
            now: DateTime<Utc>,
        ) -> Result<Admission, InfraError> {
            let send = send_budgets(issue);
            let open = HandBegun(Some(self.writer().await?));
            let conn = open.conn()?;
            let reserved_at = to_millis(issue.give_back.reserved_at);
            let mut statements: Vec<_> = issue
                .give_back
                .keys
                .iter()
                .map(|key| on(conn, release_query!(key, reserved_at).cached()))
                .collect();
            let (email, purpose) = (code.email.as_str(), code.purpose.as_str());
            // Kept prepared: one not kept is prepared first, a round trip of its own,
            // and would be executed after a COMMIT already sent (`in_one_trip`).
            statements.push(on(
                conn,
                expire_replaced_mail_query!(email, purpose, "", to_millis(now)).cached(),
            ));
            statements.push(on(
                conn,
                delete_replaced_codes_query!(email, purpose, "").cached(),
            ));
            statements.push(on(
                conn,
                insert_into(otp_codes::table).values(&code).cached(),
            ));
            statements.push(on(conn, insert_into(outbox::table).values(&mail).cached()));
            if let Some(notice) = &notice {
                statements.push(on(conn, insert_into(outbox::table).values(notice).cached()));
            }
            if send.is_empty() {
                // No limit to decide by (a registration's decoy): COMMIT goes with the
                // rest, one round trip, as a code added for a taken address does.
                let written = in_one_trip(conn, statements).await;
                open.ended();
                written.map_err(query_error)?;
                return admission(Ok(()));
            }
            let reserves = upserts(conn, &send, now);
            // Sent in this order (see `count_try_pipelined`); a refused limit rolls the
            // rest back.
            let (_, reserved, _) = tokio::try_join!(
                control(conn, "BEGIN"),
                reserves,
                futures_util::future::try_join_all(statements)
            )
            .map_err(query_error)?;
            let settled = settle(conn, &send, &reserved, now)
                .await
                .map_err(query_error)?;
            open.ended();
            admission(settled)
        }

        /// `OtpStore::add`'s write (`code_writes!` runs the same statement by
        /// statement): BEGIN, the code, its mail, its event and COMMIT in one round
        /// trip (`in_one_trip`), as a new account's first code is written.
        pub(crate) async fn add_tx(&self, rows: FirstCodeRows) -> Result<(), InfraError> {
            let open = HandBegun(Some(self.writer().await?));
            let conn = open.conn()?;
            let added = in_one_trip(conn, first_code_statements(conn, &rows).into()).await;
            // Answered, failed or not: the connection may serve again.
            open.ended();
            added.map_err(query_error)
        }
    }

    impl PgStore {
        /// A spend's writes (`SpendRows`, in its order: `OtpStore::complete_registration`'s,
        /// and `consume`'s without an account change), sent at once with BEGIN: the
        /// keys given back, the code spent, a registration applied with the address's
        /// other codes and their mail dropped and its event, the session. Then COMMIT if
        /// the spend (and a registration's update) touched its row, ROLLBACK
        /// otherwise. Two round trips where statement by statement a registration's
        /// took eleven, a sign-in's six.
        pub(crate) async fn spend_tx(&self, rows: SpendRows) -> Result<bool, InfraError> {
            let r = &rows;
            let open = HandBegun(Some(self.writer().await?));
            let conn = open.conn()?;
            let mut statements: Vec<_> = r
                .give_back
                .iter()
                .map(|key| on(conn, release_query!(key, r.reserved_at).cached()))
                .collect();
            // The statements whose row counts decide: the spend, a registration's update.
            let deciding =
                statements.len()..statements.len() + 1 + usize::from(r.registration.is_some());
            statements.push(on(
                conn,
                spend_code_query!(&r.code, &r.code_hash, r.now, r.most_tries).cached(),
            ));
            if let Some(registration) = &r.registration {
                let purpose = OtpPurpose::VerifyEmail.as_str();
                let email = || registered_email!(&registration.user);
                statements.extend([
                    on(
                        conn,
                        apply_registration_query!(&r.code, registration, r.now).cached(),
                    ),
                    on(
                        conn,
                        expire_replaced_mail_query!(email(), purpose, &r.code, r.now).cached(),
                    ),
                    on(
                        conn,
                        delete_replaced_codes_query!(email(), purpose, &r.code).cached(),
                    ),
                    on(
                        conn,
                        insert_into(audit_events::table)
                            .values(&registration.verified)
                            .cached(),
                    ),
                ]);
            }
            if let Some((token, event)) = &r.session {
                statements.push(on(conn, new_session_query!(token)));
                if let Some(event) = event {
                    statements.push(on(
                        conn,
                        insert_into(audit_events::table).values(event).cached(),
                    ));
                }
            }
            // Sent in this order (see `count_try_pipelined`).
            let (_, touched) = tokio::try_join!(
                control(conn, "BEGIN"),
                futures_util::future::try_join_all(statements)
            )
            .map_err(query_error)?;
            let spent = touched[deciding].iter().all(|&rows| rows == 1);
            control(conn, if spent { "COMMIT" } else { "ROLLBACK" })
                .await
                .map_err(query_error)?;
            open.ended();
            Ok(spent)
        }
    }

    impl PgStore {
        /// `OtpStore::consume` with an account change (`change_writes!` runs the same
        /// statements one by one), sent at once with BEGIN: the keys given back, the
        /// code spent, the change, the session. None needs an earlier one's answer:
        /// the statements after a password set or a move touch nothing of an account
        /// they did not change (a set password's address is read in the statement,
        /// `registered_email!`). Then COMMIT if the spend (and a move or an erasure)
        /// touched its row, ROLLBACK otherwise or when the move met an address taken
        /// meanwhile. A password set's notice is inserted only if its account is
        /// still there (`insert_for_account`): one gone meanwhile gets none, and no
        /// savepoint (a subtransaction) is needed for it. Two round trips where
        /// statement by statement each statement took one (and each not kept prepared
        /// one more): a password reset's went from about fifteen to two.
        pub(crate) async fn change_tx(
            &self,
            spend: &Spend<'_>,
            change: &SealedChange<'_>,
        ) -> Result<bool, InfraError> {
            let now = to_millis(spend.now);
            let reserved_at = to_millis(spend.give_back.reserved_at);
            let code = spend.id.to_string();
            let most = attempts_limit(spend.max_attempts);
            let (user, keep, event) = match change {
                SealedChange::Password(password, _) => {
                    (password.user, String::new(), password.audit)
                }
                SealedChange::Email(change, event, _) => {
                    (change.user, change.keep_session.to_string(), *event)
                }
                SealedChange::Delete(user, _, event, _) => (*user, String::new(), *event),
            };
            let user = user.0.to_string();
            let event = AuditRow::new(event);
            let session_event = spend
                .session
                .and_then(|(_, event)| event)
                .map(AuditRow::new);
            let open = HandBegun(Some(self.writer().await?));
            let conn = open.conn()?;
            let audit = || {
                on(
                    conn,
                    insert_into(audit_events::table).values(&event).cached(),
                )
            };
            let mut statements: Vec<_> = spend
                .give_back
                .keys
                .iter()
                .map(|key| on(conn, release_query!(key, reserved_at).cached()))
                .collect();
            let spent = statements.len();
            statements.push(on(
                conn,
                spend_code_query!(&code, spend.code_hash.as_bytes(), now, most).cached(),
            ));
            // Where the change's statement that touches its account is: 1 row if it did.
            let account;
            let mut notice = None;
            match change {
                SealedChange::Password(password, queued) => {
                    let purpose = OtpPurpose::VerifyEmail.as_str();
                    let hash = password.hash.as_str();
                    statements.push(audit());
                    account = statements.len();
                    statements.extend([
                        on(
                            conn,
                            set_password_query!(&user, hash, password.verify_email, now).cached(),
                        ),
                        on(conn, end_sessions_query!(&user, "", now).cached()),
                    ]);
                    if password.verify_email {
                        // A code proved the mailbox: a registration still waiting for
                        // its code is void.
                        let email = || registered_email!(&user);
                        statements.extend([
                            on(
                                conn,
                                expire_replaced_mail_query!(email(), purpose, "", now).cached(),
                            ),
                            on(
                                conn,
                                delete_replaced_codes_query!(email(), purpose, "").cached(),
                            ),
                        ]);
                    }
                    notice = queued.as_ref();
                }
                SealedChange::Email(change, _, moved) => {
                    let old = change.old.as_str();
                    account = statements.len();
                    statements.extend([
                        on(conn, move_email_query!(change, now).cached()),
                        on(conn, end_sessions_query!(&user, &keep, now).cached()),
                        on(
                            conn,
                            diesel::delete(otp_codes::table.filter(otp_codes::email.eq(old)))
                                .cached(),
                        ),
                        audit(),
                        on(conn, insert_into(outbox::table).values(moved).cached()),
                    ]);
                }
                SealedChange::Delete(_, address, _, goodbye) => {
                    let address = address.as_str();
                    let (erased, sessions, codes, mail, events) = erase_queries!(&user, address);
                    account = statements.len();
                    statements.extend([
                        on(conn, erased.cached()),
                        on(conn, sessions.cached()),
                        on(conn, codes.cached()),
                        on(conn, mail.cached()),
                        on(conn, delete_address_limits_query!(address, &user).cached()),
                        on(conn, events.cached()),
                        audit(),
                        on(conn, insert_into(outbox::table).values(goodbye).cached()),
                    ]);
                }
            }
            if let Some((token, _)) = spend.session {
                statements.push(on(conn, new_session_query!(token)));
                if let Some(event) = &session_event {
                    statements.push(on(
                        conn,
                        insert_into(audit_events::table).values(event).cached(),
                    ));
                }
            }
            if let Some(notice) = notice {
                // Written only if the account is still there (the rest touched nothing
                // of one that is gone).
                statements.push(on(conn, notice.insert_for_account(&user)));
            }
            // Sent in this order (see `count_try_pipelined`); every answer is read.
            let (begun, answers) = tokio::join!(
                control(conn, "BEGIN"),
                futures_util::future::join_all(statements)
            );
            begun.map_err(query_error)?;
            let mut touched = Vec::with_capacity(answers.len());
            for (at, answer) in answers.into_iter().enumerate() {
                match answer {
                    Ok(rows) => touched.push(rows),
                    // Another account took the new address meanwhile: refused.
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) if at == account && matches!(change, SealedChange::Email(..)) => {
                        control(conn, "ROLLBACK").await.map_err(query_error)?;
                        open.ended();
                        return Ok(false);
                    }
                    // Dropped unended, the connection closes: the server rolls back.
                    Err(e) => return Err(query_error(e)),
                }
            }
            let done = touched[spent] == 1
                && (matches!(change, SealedChange::Password(..)) || touched[account] == 1);
            let end = if done { "COMMIT" } else { "ROLLBACK" };
            control(conn, end).await.map_err(query_error)?;
            open.ended();
            Ok(done)
        }
    }

    /// A code's, its mail's and its event's INSERTs, to send in one trip.
    fn first_code_statements<'a>(
        conn: &'a AsyncPgConnection,
        first: &'a FirstCodeRows,
    ) -> [BoxFuture<'a, QueryResult<usize>>; 3] {
        [
            on(
                conn,
                insert_into(otp_codes::table).values(&first.code).cached(),
            ),
            on(
                conn,
                insert_into(outbox::table).values(&first.mail).cached(),
            ),
            on(
                conn,
                insert_into(audit_events::table)
                    .values(&first.event)
                    .cached(),
            ),
        ]
    }

    /// Every budget's upsert (1 for each counted), sent in order when first polled.
    fn upserts<'a>(
        conn: &'a AsyncPgConnection,
        budgets: &'a [(String, Limit)],
        now: DateTime<Utc>,
    ) -> impl Future<Output = QueryResult<Vec<usize>>> + 'a {
        futures_util::future::try_join_all(
            budgets
                .iter()
                .map(move |(key, limit)| upsert(conn, key, *limit, now)),
        )
    }

    /// Ends a hand-begun transaction of `budgets`' upserts (`reserved`: 1 for each
    /// counted): ROLLBACK at the first refusal, with when that budget frees again;
    /// COMMIT otherwise.
    async fn settle(
        conn: &AsyncPgConnection,
        budgets: &[(String, Limit)],
        reserved: &[usize],
        now: DateTime<Utc>,
    ) -> QueryResult<Result<(), Abort>> {
        match reserved.iter().position(|&counted| counted != 1) {
            // A refusal rolls all of them back.
            Some(budget) => {
                let (key, limit) = &budgets[budget];
                let (retry_after, _) =
                    tokio::try_join!(refusal(conn, key, *limit, now), control(conn, "ROLLBACK"))?;
                Ok(Err(Abort::Refused(budget, retry_after)))
            }
            None => {
                control(conn, "COMMIT").await?;
                Ok(Ok(()))
            }
        }
    }
}

#[cfg(test)]
// Test code: a failed expectation is a failed test, and tests may read the wall clock.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]
mod tests {
    use chrono::Utc;
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;
    use passcode_domain::ports::{Limit, OtpStore, Throttle};
    use passcode_domain::{EmailAddress, OtpPurpose};
    use passcode_test_support::TestDatabase;

    use super::PgStore;
    use crate::DatabaseSettings;

    #[derive(diesel::QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// A store on a fresh, migrated database with a pool of one connection, so that
    /// every call uses the same connection (and its statement cache).
    async fn one_connection(prefix: &str) -> (PgStore, TestDatabase) {
        let database = TestDatabase::create(prefix).await;
        let mut settings = DatabaseSettings::new(database.url());
        settings.max_connections = 1;
        let store = PgStore::connect(&settings).unwrap();
        store.migrate().await.unwrap();
        (store, database)
    }

    /// How many statements the pool's (one) connection has prepared that start with
    /// `prefix`; with `shared`, the shared connection of this thread's group instead.
    async fn prepared(store: &PgStore, prefix: &str, shared: bool) -> i64 {
        let pooled;
        let kept;
        let mut conn: &diesel_async::AsyncPgConnection = if shared {
            kept = store.shared().await.unwrap();
            &kept
        } else {
            pooled = store.conn().await.unwrap();
            &pooled
        };
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_prepared_statements WHERE starts_with(statement, $1)",
        )
        .bind::<Text, _>(prefix)
        .get_result::<Prepared>(&mut conn)
        .await
        .unwrap()
        .n
    }

    /// A guess's statement (`GUESS_SQL`, on the shared connection), the pipelined
    /// transaction's (a budget upsert, the try's UPDATE) and a budget's release are
    /// prepared once on a connection and then reused (`crate::cached`): Diesel on its
    /// own prepares every UPDATE and upsert again each time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hot_statements_are_prepared_once_per_connection() {
        let (store, _database) = one_connection("cached").await;
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let budgets = crate::roomy_guess_budgets();
        for _ in 0..5 {
            let now = Utc::now();
            store
                .count_try(&email, OtpPurpose::VerifyEmail, now, 5, &budgets)
                .await
                .unwrap();
            store
                .release(passcode_domain::ports::GiveBack {
                    keys: &["guess:ada@example.com".to_owned()],
                    reserved_at: now,
                })
                .await
                .unwrap();
        }
        assert_eq!(prepared(&store, "WITH share AS", true).await, 1);
        assert_eq!(prepared(&store, "UPDATE \"rate_limits\"", false).await, 1);
        // The pipelined transaction (any other set of budgets): its upsert and its try.
        for _ in 0..5 {
            store
                .count_try(
                    &email,
                    OtpPurpose::VerifyEmail,
                    Utc::now(),
                    5,
                    &budgets[..1],
                )
                .await
                .unwrap();
        }
        assert_eq!(
            prepared(&store, "INSERT INTO \"rate_limits\"", false).await,
            1
        );
        assert_eq!(prepared(&store, "UPDATE \"otp_codes\"", false).await, 1);
        // A login's two budgets: a statement of their own (`BUDGETS_SQL`).
        for _ in 0..5 {
            store.acquire_all(&budgets, Utc::now()).await.unwrap();
        }
        assert_eq!(
            prepared(&store, "WITH share AS", true).await,
            2,
            "a guess's statement and a login's"
        );
        assert_eq!(
            prepared(&store, "WITH share AS", false).await,
            0,
            "neither on the pool's connection"
        );
    }

    /// How often each statement a connection keeps prepared has run, by SQL text, on
    /// the pool's one connection and the shared one (`pg_prepared_statements`: a
    /// statement Diesel does not keep is closed after its one use).
    async fn runs_kept(store: &PgStore) -> crate::prepared_rounds::Runs {
        use crate::prepared_rounds::Kept;
        const KEPT: &str = "SELECT statement AS sql, generic_plans + custom_plans AS run \
                            FROM pg_prepared_statements";
        let pooled = store.conn().await.unwrap();
        let mut kept: Vec<Kept> = diesel::sql_query(KEPT).load(&mut &*pooled).await.unwrap();
        drop(pooled);
        let shared = store.shared().await.unwrap();
        assert!(
            matches!(shared, super::Lent::Shared(_)),
            "the shared connection is open"
        );
        kept.extend(
            diesel::sql_query(KEPT)
                .load::<Kept>(&mut &*shared)
                .await
                .unwrap(),
        );
        crate::prepared_rounds::runs(kept)
    }

    /// The statements of every request and of the mail worker are kept prepared
    /// (`crate::cached`; `crate::prepared_rounds::assert_kept`, with PostgreSQL's
    /// `pg_prepared_statements`): one that is not costs a round trip of its own to be
    /// prepared, and in a write sent at once with its COMMIT it would run after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_statements_of_the_requests_and_the_mail_worker_are_kept_prepared() {
        crate::prepared_rounds::record_statements();
        let (store, database) = one_connection("every").await;
        let name = crate::prepared_rounds::database_name(database.url());
        crate::prepared_rounds::assert_kept(&store, &name, runs_kept).await;
    }

    /// Every statement of a write sent at once is kept prepared: one that is not is
    /// prepared first, a round trip of its own, and in a transaction sent with its
    /// COMMIT (`in_one_trip`) it would run after that COMMIT. Here a new code's writes
    /// (`issue_tx`, with a send limit and without, as a registration's decoy), a
    /// session's (`start_session_tx`) and a logout's (`logout_tx`, and `logout_named`'s
    /// one statement), each three times on the one connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_statements_of_a_pipelined_write_are_kept_prepared() {
        use passcode_domain::ports::{
            GiveBack, Issue, Limit, Mail, NewRefreshToken, Outbox, RefreshTokenStore,
            UserRepository,
        };
        use passcode_domain::{FullName, NewUser, PasswordHash, RequestContext, UserId};
        let (store, _database) = one_connection("kept").await;
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let user = NewUser {
            id: UserId::new_random(),
            email: email.clone(),
            full_name: FullName::parse("Ada Lovelace").unwrap(),
            password_hash: PasswordHash::new("$argon2id$v=19$test".into()),
            created_at: Utc::now(),
        };
        store.create(&user, None).await.unwrap();
        let limit = Limit {
            limit: 100,
            window: chrono::Duration::hours(1),
            cooldown: chrono::Duration::zero(),
        };
        let keys = ["login:ada@example.com".to_owned()];
        for round in 0..3u8 {
            let now = Utc::now();
            for send in [None, Some(("send:verify_email:ada@example.com", limit))] {
                let issue = Issue {
                    send,
                    ..Issue::default()
                };
                store
                    .decoy(&email, OtpPurpose::VerifyEmail, now, &issue)
                    .await
                    .unwrap();
            }
            let token = NewRefreshToken {
                token_hash: vec![round; 32],
                family_id: uuid::Uuid::new_v4(),
                user_id: user.id,
                expires_at: now + chrono::Duration::days(1),
                created_at: now,
                family_expires_at: now + chrono::Duration::days(30),
                origin: RequestContext::default(),
            };
            // A registration of a verified address: its notice alone.
            let notice = Mail::RegistrationAttempt {
                to: email.clone(),
                full_name: "Ada Lovelace".into(),
            };
            store.enqueue(&notice, now, None).await.unwrap();
            store.acquire(&keys[0], limit, now).await.unwrap();
            let give_back = GiveBack {
                keys: &keys,
                reserved_at: now,
            };
            store.insert(&token, None, give_back).await.unwrap();
            // The ways a session ends (logout, logout of the others, reuse, every one).
            let audit = passcode_domain::AuditEvent::new(
                passcode_domain::AuditKind::Logout,
                now,
                Some(user.id),
                Some(&email),
                &RequestContext::default(),
            );
            let family = token.family_id;
            store
                .end_session(user.id, family, now, &audit)
                .await
                .unwrap();
            store
                .end_other_sessions(user.id, family, now, &audit)
                .await
                .unwrap();
            store.revoke_family(family, now, &audit).await.unwrap();
            store.revoke_all(user.id, now, None).await.unwrap();
            // A logout in one statement (`logout_named`): by the session a token
            // names, and of every session by a live token.
            for (n, all) in [(100, false), (200, true)] {
                let token = NewRefreshToken {
                    token_hash: vec![n + round; 32],
                    family_id: uuid::Uuid::new_v4(),
                    ..token.clone()
                };
                store.insert(&token, None, GiveBack::NONE).await.unwrap();
                let session = (!all).then_some(token.family_id);
                let ended = store
                    .logout(&token.token_hash, session, all, now, audit.clone())
                    .await
                    .unwrap();
                assert_eq!(ended, Some(user.id));
            }
        }
        assert_eq!(prepared(&store, "WITH s AS", false).await, 1, "a logout's");
        let all = "WITH locked AS";
        assert_eq!(prepared(&store, all, false).await, 1, "a logout of all's");
        // Three shapes, each prepared once: one session, the others (every one's,
        // with no family kept, is the same) and a logout's family.
        let revoked = "UPDATE \"sessions\" SET \"revoked_at\"";
        assert_eq!(prepared(&store, revoked, false).await, 3, "{revoked}");
        for statement in [
            "UPDATE \"outbox\"",
            "DELETE FROM \"otp_codes\"",
            "INSERT INTO \"otp_codes\"",
            "INSERT INTO \"sessions\"",
        ] {
            assert_eq!(prepared(&store, statement, false).await, 1, "{statement}");
        }
        // Two shapes, each prepared once: a decoy's (no body) and a notice's (no code).
        let outbox = "INSERT INTO \"outbox\"";
        assert_eq!(prepared(&store, outbox, false).await, 2, "{outbox}");
    }

    /// A batch of sent mail is ended by one statement whatever its length (its ids
    /// are one array), kept prepared: the worker's round trip per batch, not two. A
    /// mail put back for a later attempt likewise.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mail_workers_statements_are_kept_prepared() {
        use passcode_domain::ports::{Mail, Outbox};
        let (store, _database) = one_connection("ended").await;
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let notice = Mail::RegistrationAttempt {
            to: email,
            full_name: "Ada Lovelace".into(),
        };
        for length in [1, 3, 2] {
            let now = Utc::now();
            for _ in 0..length {
                store.enqueue(&notice, now, None).await.unwrap();
            }
            let claimed = store
                .claim(now, chrono::Duration::minutes(1), 10)
                .await
                .unwrap();
            assert_eq!(claimed.len(), length);
            let (later, sent) = claimed.split_first().unwrap();
            store.retry_later(later.id, now, "refused").await.unwrap();
            let ids: Vec<_> = sent.iter().map(|mail| mail.id).collect();
            store.mark_sent(&ids, now).await.unwrap();
            // The mail put back, claimed again, and sent.
            let again = store
                .claim(now, chrono::Duration::minutes(1), 10)
                .await
                .unwrap();
            assert_eq!(again.len(), 1);
            store.mark_sent(&[again[0].id], now).await.unwrap();
        }
        let ended = "UPDATE \"outbox\" SET \"status\" = $1, \"last_error\"";
        assert_eq!(prepared(&store, ended, false).await, 1, "{ended}");
        let later = "UPDATE \"outbox\" SET \"status\" = $1, \"next_attempt_at\"";
        assert_eq!(prepared(&store, later, false).await, 1, "{later}");
    }

    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        value: String,
    }

    async fn synchronous_commit(mut conn: &diesel_async::AsyncPgConnection) -> String {
        diesel::sql_query("SELECT current_setting('synchronous_commit') AS value")
            .get_result::<Setting>(&mut conn)
            .await
            .unwrap()
            .value
    }

    /// A guess (and a login's budgets) commits without waiting for the WAL flush,
    /// and only that: the setting is its transaction's, so the connection's next
    /// transactions (a rotation, a code consumed) wait for the flush again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_guess_commits_without_waiting_for_the_flush() {
        use super::pipelined::{control, guessed};
        let (store, _database) = one_connection("relaxed").await;
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let budgets = crate::roomy_guess_budgets();
        {
            let conn = store.conn().await.unwrap();
            // The test cluster turns it off server-wide (PG_DURABLE unset); the pool's
            // one connection waits for the flush, as a production server's do.
            control(&conn, "SET synchronous_commit = on").await.unwrap();
            assert_eq!(synchronous_commit(&conn).await, "on", "the session's");
            control(&conn, "BEGIN").await.unwrap();
            let [share, ceiling] = &budgets;
            let rows = guessed(
                &conn,
                &email,
                OtpPurpose::VerifyEmail,
                Utc::now(),
                5,
                [share, ceiling],
            )
            .await
            .unwrap();
            assert_eq!(rows.len(), 1, "the budgets' answers, no code");
            assert_eq!(synchronous_commit(&conn).await, "off", "within the guess's");
            control(&conn, "ROLLBACK").await.unwrap();
            assert_eq!(synchronous_commit(&conn).await, "on", "after it");
        }
        let shared = store.shared().await.unwrap();
        control(&shared, "SET synchronous_commit = on")
            .await
            .unwrap();
        // Through the port: one statement (on the shared connection), then the
        // pipelined transaction (on the pool's).
        for budgets in [&budgets[..], &budgets[..1]] {
            store
                .count_try(&email, OtpPurpose::VerifyEmail, Utc::now(), 5, budgets)
                .await
                .unwrap();
            let conn = store.conn().await.unwrap();
            assert_eq!(synchronous_commit(&conn).await, "on", "after a guess");
            assert_eq!(synchronous_commit(&shared).await, "on", "after a guess");
        }
        // A login's budgets are counts too (`BUDGETS_SQL`), and as their own.
        store.acquire_all(&budgets, Utc::now()).await.unwrap();
        assert_eq!(
            synchronous_commit(&shared).await,
            "on",
            "after a login's budgets"
        );
    }

    /// The server process of this thread's group's shared connection.
    async fn shared_pid(store: &PgStore) -> i32 {
        pid_of(&store.shared().await.unwrap()).await
    }

    /// Guesses share one connection, beside the pool's. When it dies (here its server
    /// process is ended), the guess that finds it dead fails (503), and the next opens
    /// a new one: no guess fails after that.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_shared_connection_is_replaced() {
        let (store, _database) = one_connection("shared").await;
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let budgets = crate::roomy_guess_budgets();
        let guess = || store.count_try(&email, OtpPurpose::VerifyEmail, Utc::now(), 5, &budgets);
        assert_eq!(store.shared_open(), 0);
        guess().await.unwrap();
        assert_eq!(store.shared_open(), 1);
        let first = shared_pid(&store).await;
        assert_ne!(
            first,
            backend_pid(&store).await,
            "not the pool's connection"
        );
        {
            let mut conn = store.conn().await.unwrap();
            diesel::sql_query(format!("SELECT pg_terminate_backend({first})"))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        let mut failures = 0;
        for _ in 0..2 {
            if let Err(e) = guess().await {
                assert!(
                    matches!(e, passcode_domain::InfraError::Unavailable(_)),
                    "{e:?}"
                );
                failures += 1;
            }
        }
        assert!(failures <= 1, "{failures} guesses failed");
        for _ in 0..5 {
            guess().await.unwrap();
        }
        assert_ne!(shared_pid(&store).await, first, "a new connection");
        assert_eq!(store.shared_open(), 1, "the dead one no longer counted");
    }

    /// A guess whose share counts but whose ceiling refuses gives the share's try back
    /// on the shared connection, without waiting for the pool: here its one connection
    /// is held throughout. The share is then as before the guess.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_ceiling_gives_back_without_a_pooled_connection() {
        use passcode_domain::ports::Tries;
        let (store, _database) = one_connection("ceiling").await;
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let budgets = |client: &str, ceiling: u32| {
            let limit = |limit| Limit {
                limit,
                window: chrono::Duration::hours(1),
                cooldown: chrono::Duration::zero(),
            };
            [
                (format!("guess:ada@example.com:{client}"), limit(5)),
                ("guess:ada@example.com".to_owned(), limit(ceiling)),
            ]
        };
        let guess = |budgets: [(String, Limit); 2]| {
            let (store, email) = (&store, &email);
            async move {
                store
                    .count_try(email, OtpPurpose::VerifyEmail, Utc::now(), 5, &budgets)
                    .await
            }
        };
        for client in ["a", "b"] {
            assert!(matches!(
                guess(budgets(client, 2)).await.unwrap(),
                Tries::Counted(_)
            ));
        }
        let held = store.conn().await.unwrap();
        let refused =
            tokio::time::timeout(std::time::Duration::from_secs(2), guess(budgets("c", 2)))
                .await
                .expect("answered without the pool's connection")
                .unwrap();
        assert!(
            matches!(refused, Tries::Refused { budget: 1, .. }),
            "{refused:?}"
        );
        drop(held);
        // Given back: with room on the ceiling, client c's share admits its full five.
        for _ in 0..5 {
            assert!(matches!(
                guess(budgets("c", 100)).await.unwrap(),
                Tries::Counted(_)
            ));
        }
        assert!(matches!(
            guess(budgets("c", 100)).await.unwrap(),
            Tries::Refused { budget: 0, .. }
        ));
    }

    /// A shared connection that cannot be opened (here its address refuses) costs no
    /// guess: each takes a pooled connection, and for a second none tries again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guesses_take_the_pool_when_the_shared_connection_cannot_open() {
        let (mut store, _database) = one_connection("unshared").await;
        std::sync::Arc::get_mut(&mut store.shared)
            .expect("the store's only handle")
            .url = "postgres://postgres@127.0.0.1:1/none".into();
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let budgets = crate::roomy_guess_budgets();
        for _ in 0..3 {
            store
                .count_try(&email, OtpPurpose::VerifyEmail, Utc::now(), 5, &budgets)
                .await
                .unwrap();
            store.acquire_all(&budgets, Utc::now()).await.unwrap();
        }
        let slot = store.shared.slots[0].lock().await;
        assert!(
            matches!(&*slot, super::Slot::Failed(_)),
            "it could not open"
        );
        assert_eq!(store.shared_open(), 0);
    }

    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }

    /// The server process of the pool's (one) connection.
    async fn backend_pid(store: &PgStore) -> i32 {
        pid_of(&store.conn().await.unwrap()).await
    }

    /// The server process of `conn`.
    async fn pid_of(mut conn: &diesel_async::AsyncPgConnection) -> i32 {
        diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result::<Pid>(&mut conn)
            .await
            .unwrap()
            .pid
    }

    /// Runs `work` on a new thread, numbered from `next` as an HTTP worker is, on a
    /// runtime of its own (which drives the connections opened there).
    fn on_worker<'s, T: Send + 's>(
        scope: &'s std::thread::Scope<'s, '_>,
        next: &'s std::sync::atomic::AtomicUsize,
        work: impl std::future::Future<Output = T> + Send + 's,
    ) -> std::thread::ScopedJoinHandle<'s, T> {
        scope.spawn(move || {
            crate::affinity::number_this_thread(next);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work)
        })
    }

    /// Split into groups (one per HTTP worker), a store lends each worker thread its
    /// own group's connection even while another group's is idle, borrows the
    /// other's only when its own is taken, and never opens more than
    /// `max_connections` in all.
    #[test]
    fn a_worker_thread_borrows_from_its_own_group_first() {
        use std::sync::atomic::AtomicUsize;
        let setup = tokio::runtime::Runtime::new().unwrap();
        let database = setup.block_on(TestDatabase::create("groups"));
        let mut settings = DatabaseSettings::new(database.url());
        settings.max_connections = 2;
        settings.groups = 2;
        settings.acquire_timeout = std::time::Duration::from_millis(300);
        let store = PgStore::connect(&settings).unwrap();
        let next = AtomicUsize::new(0);
        let (opened, first_pid) = std::sync::mpsc::channel();
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        let store = &store;
        std::thread::scope(|scope| {
            let first = on_worker(scope, &next, async move {
                let own = backend_pid(store).await;
                assert_eq!(backend_pid(store).await, own, "its own connection again");
                opened.send(own).unwrap();
                // Keeps driving its connection while the second thread borrows it.
                ended.await.unwrap();
            });
            let first_pid = first_pid.recv().unwrap();
            let second = on_worker(scope, &next, async move {
                let own = backend_pid(store).await;
                assert_ne!(
                    own, first_pid,
                    "its own group's, not the idle one of the first"
                );
                let held = store.conn().await.unwrap();
                assert_eq!(
                    backend_pid(store).await,
                    first_pid,
                    "its own taken: the other group's idle connection"
                );
                let also_held = store.conn().await.unwrap();
                assert!(
                    store.conn().await.is_err(),
                    "both taken: a third is not opened"
                );
                assert_eq!(store.pool_status().size, 2);
                drop((held, also_held));
                end.send(()).unwrap();
            });
            second.join().unwrap();
            first.join().unwrap();
        });
    }

    async fn buckets(store: &PgStore) -> i64 {
        let mut conn = store.conn().await.unwrap();
        diesel::sql_query("SELECT count(*) AS n FROM rate_limits")
            .get_result::<Prepared>(&mut *conn)
            .await
            .unwrap()
            .n
    }

    /// A guess's transaction is begun by hand (`HandBegun`). Ended, its connection
    /// serves again; dropped unended (a failed statement, a cancelled request), its
    /// connection is closed rather than pooled, and its writes are gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_begun_by_hand_and_not_ended_never_returns_to_the_pool() {
        use super::pipelined::{HandBegun, control};
        let (store, _database) = one_connection("handbegun").await;
        let insert = "INSERT INTO rate_limits (bucket, window_start, count, last_at) \
                      VALUES ('b', 0, 1, 0) ON CONFLICT DO NOTHING";

        let first = backend_pid(&store).await;
        let open = HandBegun(Some(store.writer().await.unwrap()));
        let conn = open.conn().unwrap();
        control(conn, "BEGIN").await.unwrap();
        diesel::sql_query(insert)
            .execute(&mut &*conn)
            .await
            .unwrap();
        control(conn, "COMMIT").await.unwrap();
        open.ended();
        assert_eq!(backend_pid(&store).await, first, "ended: pooled again");
        assert_eq!(buckets(&store).await, 1);

        let open = HandBegun(Some(store.writer().await.unwrap()));
        let conn = open.conn().unwrap();
        control(conn, "BEGIN").await.unwrap();
        diesel::sql_query("DELETE FROM rate_limits")
            .execute(&mut &*conn)
            .await
            .unwrap();
        drop(open);
        assert_ne!(backend_pid(&store).await, first, "not ended: closed");
        assert_eq!(buckets(&store).await, 1, "its write was rolled back");
    }

    /// A transaction sent in one trip (`in_one_trip`) reads every answer, so its
    /// connection serves again after it whether it committed or failed; a failed one
    /// leaves nothing behind (here a session whose family exists, after a give-back
    /// that is rolled back with it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_in_one_trip_returns_its_connection_failed_or_not() {
        use passcode_domain::ports::{
            Admission, GiveBack, Limit, NewRefreshToken, RefreshTokenStore, UserRepository,
        };
        use passcode_domain::{FullName, NewUser, PasswordHash, RequestContext, UserId};
        let (store, _database) = one_connection("onetrip").await;
        let first = backend_pid(&store).await;
        let user = NewUser {
            id: UserId::new_random(),
            email: EmailAddress::parse("ada@example.com").unwrap(),
            full_name: FullName::parse("Ada Lovelace").unwrap(),
            password_hash: PasswordHash::new("$argon2id$v=19$test".into()),
            created_at: Utc::now(),
        };
        store.create(&user, None).await.unwrap();
        let token = |hash: u8, family_id| NewRefreshToken {
            token_hash: vec![hash; 32],
            family_id,
            user_id: user.id,
            expires_at: Utc::now() + chrono::Duration::days(1),
            created_at: Utc::now(),
            family_expires_at: Utc::now() + chrono::Duration::days(30),
            origin: RequestContext::default(),
        };
        let limit = Limit {
            limit: 1,
            window: chrono::Duration::hours(1),
            cooldown: chrono::Duration::zero(),
        };
        let key = ["login:ada@example.com".to_owned()];
        let counted = async || store.acquire(&key[0], limit, Utc::now()).await.unwrap();
        assert_eq!(counted().await, Admission::Allowed);
        let family = uuid::Uuid::new_v4();
        store
            .insert(&token(1, family), None, GiveBack::NONE)
            .await
            .unwrap();
        let give_back = || GiveBack {
            keys: &key,
            reserved_at: Utc::now(),
        };
        assert!(
            store
                .insert(&token(2, family), None, give_back())
                .await
                .is_err()
        );
        assert_eq!(backend_pid(&store).await, first, "failed: pooled again");
        assert!(
            matches!(counted().await, Admission::Denied { .. }),
            "its give-back was rolled back with it"
        );

        store
            .insert(&token(3, uuid::Uuid::new_v4()), None, give_back())
            .await
            .unwrap();
        assert_eq!(backend_pid(&store).await, first, "committed: pooled again");
        assert_eq!(counted().await, Admission::Allowed, "given back");
        assert_eq!(store.sessions(user.id, Utc::now()).await.unwrap().len(), 2);
    }

    /// A give-back after a failure takes a connection at once, or gives nothing back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_give_back_at_once_does_not_wait_for_a_connection() {
        let (store, _database) = one_connection("atonce").await;
        crate::ports::throttle::check_release_at_once(&store, async |store: &PgStore| {
            store.conn().await.unwrap()
        })
        .await;
    }

    /// A logout of all that loses the race for its session ends nothing
    /// (`crate::ports::check_a_losing_logout_of_all_ends_nothing`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_losing_logout_of_all_ends_nothing() {
        use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
        let database = TestDatabase::create("loser").await;
        let store = PgStore::connect(&DatabaseSettings::new(database.url())).unwrap();
        store.migrate().await.unwrap();
        let url = database.url();
        crate::ports::check_a_losing_logout_of_all_ends_nothing(
            &store,
            async |end| {
                let mut winner = AsyncPgConnection::establish(url).await.unwrap();
                winner.batch_execute("BEGIN").await.unwrap();
                winner.batch_execute(end).await.unwrap();
                winner
            },
            async || {
                diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE wait_event_type = 'Lock' AND datname = current_database()",
                )
                .get_result::<Prepared>(&mut *store.conn().await.unwrap())
                .await
                .unwrap()
                .n > 0
            },
            async |mut winner| winner.batch_execute("COMMIT").await.unwrap(),
        )
        .await;
    }

    crate::migration_test::session_tokens_migration_test!(
        diesel_async::async_connection_wrapper::AsyncConnectionWrapper<
            diesel_async::AsyncPgConnection,
        >,
        super::MIGRATIONS,
        {
            let database = TestDatabase::create("migrate").await;
            let url = database.url().to_owned();
            (database, url)
        },
        |url: &str| PgStore::connect(&DatabaseSettings::new(url)).unwrap(),
        |byte: u8| format!("'\\x{byte:02x}'::bytea"),
        None::<&str>
    );
}
