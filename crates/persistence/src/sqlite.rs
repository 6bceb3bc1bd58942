//! The SQLite adapter: a deadpool pool of `SyncConnectionWrapper<SqliteConnection>`,
//! each connection in WAL mode with a busy timeout so that concurrent writers queue
//! instead of failing.

use std::path::PathBuf;
use std::sync::Arc;

use diesel::{Connection, ConnectionError, SqliteConnection};
use diesel_async::SimpleAsyncConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use passcode_domain::InfraError;

use crate::DatabaseSettings;
use crate::cipher::MailKey;
use crate::error::pool_error;
use crate::ports;

pub(crate) type Conn = SyncConnectionWrapper<SqliteConnection>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Implements the seven storage ports (see `Store`) on one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool<Conn>,
    /// One writer at a time (see [`SqliteStore::writer`]).
    writing: Arc<tokio::sync::Mutex<()>>,
    /// Hot-path writes waiting to be committed together (see `group_commit`).
    queue: Arc<crate::group_commit::Queue>,
    acquire_timeout: std::time::Duration,
    path: PathBuf,
    pragmas: Arc<str>,
    mail_key: MailKey,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// WAL pages after which a committing writer checkpoints the WAL itself (SQLite's
/// default is 1,000): only when the checkpointer has fallen that far behind.
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;
/// The WAL file is truncated to this size when it starts over.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;
/// How often the checkpointer copies the WAL's pages into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Checkpoints the WAL on its own thread while `alive` (the store) lives. With SQLite's
/// automatic checkpoints, the commit that crosses 1,000 WAL pages copies them into the
/// database file and syncs it before it answers; that was most of refresh's p99. A
/// passive checkpoint runs beside readers and writers and never waits for their locks.
fn checkpointer(
    path: PathBuf,
    alive: std::sync::Weak<crate::group_commit::Queue>,
) -> anyhow::Result<()> {
    use diesel::connection::SimpleConnection;
    let url = path.to_string_lossy().into_owned();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let mut conn: Option<SqliteConnection> = None;
            while alive.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_EVERY);
                let connected = match conn.as_mut() {
                    Some(connected) => connected,
                    None => match SqliteConnection::establish(&url) {
                        Ok(opened) => conn.insert(opened),
                        Err(error) => {
                            tracing::debug!(%error, "SQLite checkpointer could not connect");
                            continue;
                        }
                    },
                };
                // Busy (another checkpoint runs) or failed: the next round tries again,
                // and the writers checkpoint themselves past WRITER_CHECKPOINT_PAGES.
                if let Err(error) = connected.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                    tracing::debug!(%error, "SQLite checkpoint failed");
                    conn = None;
                }
            }
        })?;
    Ok(())
}

/// The file path of a `sqlite://` URL (or a bare path).
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    anyhow::ensure!(!path.is_empty(), "the SQLite database URL has no file path");
    anyhow::ensure!(
        !path.contains(":memory:"),
        "an in-memory SQLite database would differ per pooled connection; use a file"
    );
    Ok(PathBuf::from(path))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its pool. Does not migrate.
    pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let path = sqlite_path(&settings.url)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let pragmas: Arc<str> = format!(
            // busy_timeout first: switching to WAL takes a lock that concurrent openers must wait for.
            // secure_delete: erased mail bodies are overwritten, not left in free pages.
            // wal_autocheckpoint: see `checkpointer`; the writers checkpoint only if it falls behind.
            // synchronous = FULL: a commit is on disk before it is answered, so a power loss
            // loses no code, session or mail (NORMAL would survive only a process crash).
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};",
            settings.busy_timeout.as_millis()
        )
        .into();
        let setup_pragmas = pragmas.clone();
        let mut config = ManagerConfig::<Conn>::default();
        config.custom_setup = Box::new(move |url| {
            let pragmas = setup_pragmas.clone();
            let url = url.to_owned();
            Box::pin(async move {
                let mut conn = <Conn as diesel_async::AsyncConnection>::establish(&url).await?;
                conn.batch_execute(&pragmas)
                    .await
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        let manager =
            AsyncDieselConnectionManager::<Conn>::new_with_config(path.to_string_lossy(), config);
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections.max(1))
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()?;
        let queue = Arc::default();
        checkpointer(path.clone(), Arc::downgrade(&queue))?;
        let writing = Arc::new(tokio::sync::Mutex::new(()));
        crate::group_commit::writer_thread(
            path.to_string_lossy().into_owned(),
            pragmas.clone(),
            writing.clone(),
            Arc::downgrade(&queue),
        )?;
        Ok(Self {
            pool,
            writing,
            queue,
            acquire_timeout: settings.acquire_timeout,
            path,
            pragmas,
            mail_key: settings.mail_key.clone(),
        })
    }

    /// Applies pending migrations (embedded in the binary) on a dedicated blocking connection.
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let path = self.path.clone();
        let pragmas = self.pragmas.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
            let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
            diesel::connection::SimpleConnection::batch_execute(&mut conn, &pragmas)?;
            let applied = conn
                .run_pending_migrations(MIGRATIONS)
                .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
            Ok(applied.iter().map(ToString::to_string).collect())
        })
        .await?
    }

    pub(crate) fn pool_status(&self) -> deadpool::Status {
        self.pool.status()
    }

    pub(crate) async fn conn(&self) -> Result<Object<Conn>, InfraError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// A connection for writing, once it is this caller's turn. SQLite lets one
    /// connection write at a time; pooled connections that race for that lock wait in
    /// SQLite's busy handler, which sleeps between polls (up to 100 ms each), so a
    /// write under contention waited far longer than the writes ahead of it took.
    /// Queued here instead, writers follow each other at once, in arrival order.
    /// Readers do not queue (WAL: reads never wait for the writer).
    pub(crate) async fn writer(&self) -> Result<Writer, InfraError> {
        let turn = tokio::time::timeout(self.acquire_timeout, self.writing.clone().lock_owned())
            .await
            .map_err(|_| {
                InfraError::Unavailable(anyhow::anyhow!("timed out waiting for the SQLite writer"))
            })?;
        Ok(Writer {
            conn: self.conn().await?,
            _turn: turn,
        })
    }

    /// [`SqliteStore::writer`] if the writer's turn and a connection are free now;
    /// `None` rather than waiting for them.
    pub(crate) async fn writer_at_once(&self) -> Result<Option<Writer>, InfraError> {
        let Ok(turn) = self.writing.clone().try_lock_owned() else {
            return Ok(None);
        };
        let at_once = deadpool::managed::Timeouts {
            wait: Some(std::time::Duration::ZERO),
            create: Some(self.acquire_timeout),
            recycle: Some(self.acquire_timeout),
        };
        match self.pool.timeout_get(&at_once).await {
            Ok(conn) => Ok(Some(Writer { conn, _turn: turn })),
            Err(deadpool::managed::PoolError::Timeout(deadpool::managed::TimeoutType::Wait)) => {
                Ok(None)
            }
            Err(error) => Err(pool_error(error)),
        }
    }

    pub(crate) fn queue(&self) -> &crate::group_commit::Queue {
        &self.queue
    }

    pub(crate) fn acquire_timeout(&self) -> std::time::Duration {
        self.acquire_timeout
    }
}

/// A pooled connection holding the writer's turn until it is dropped.
pub(crate) struct Writer {
    conn: Object<Conn>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl std::ops::Deref for Writer {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

// The ports, one macro each (crate::ports), over the dialect of RETURNING and ON CONFLICT
// with this backend's claim of the outbox.
ports::returning_dialect!(crate::outbox_rows::CLAIM_SQLITE);
ports::shared!();
ports::user_repository!(SqliteStore);
ports::otp_store!(SqliteStore);
ports::change_writes!(SqliteStore);
ports::throttle!(SqliteStore);
ports::outbox!(SqliteStore, false);
ports::refresh_token_store!(SqliteStore);
ports::audit_log!(SqliteStore);
ports::health_check!(SqliteStore);

/// The hot paths (a guess, a refresh, a login's session, a registration) in one trip
/// to the blocking thread and in the next batch of writes (`group_commit`): each
/// statement through `SyncConnectionWrapper` is a hand-over to a blocking thread and
/// back, and a transaction of N statements made N + 2 of them. Here the whole
/// transaction runs on the blocking thread at once (synchronous Diesel, the same SQL as
/// the shared queries).
mod one_trip {
    use chrono::{DateTime, Utc};
    use diesel::prelude::*;
    use passcode_domain::ports::{
        Admission, Admissions, CreateUserError, Issue, Limit, NewRefreshToken, Rotation, Tries,
    };
    use passcode_domain::{AuditEvent, EmailAddress, InfraError, OtpPurpose};

    use super::SqliteStore;
    use crate::cached::cached_here;
    use crate::error::{create_user_error, query_error};
    use crate::outbox_rows::NewOutboxRow;
    use crate::rows::{
        Abort, AuditRow, Ended, FirstCodeRows, OtpRow, Rotate, SessionTokens, SpendRows, UserRow,
        account_as_signed_query, acquire_bounds, acquire_query, admission, admissions,
        apply_registration_query, delete_replaced_codes_query, end_family_query,
        end_sessions_query, expire_replaced_mail_query, limit_name, new_session_query,
        open_codes_query, parse_id, registered_email, release_query, retry_after,
        rotate_session_query, send_budgets, session_tokens_query, spend_code_query, tries,
        unrotated,
    };
    use crate::schema::{audit_events, otp_codes, outbox, rate_limits, sessions, users};
    use crate::time::to_millis;

    /// Runs write `$query` kept prepared by its place in the code (`cached_here!`): how
    /// many rows it changed. On the synchronous API `execute` drops the mark (see
    /// `crate::cached`) and SQLite would prepare the write at every call; a query keeps
    /// it, so the write returns `$id`, the text id of each row it changed.
    macro_rules! write_kept {
        ($query:expr, $id:expr, $conn:expr) => {
            cached_here!($query.returning($id))
                .load::<String>($conn)
                .map(|rows| rows.len())
        };
    }

    /// `Throttle::acquire`'s statement, synchronously: `Some(retry_after)` if refused.
    fn reserve(
        conn: &mut SqliteConnection,
        key: &str,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> QueryResult<Option<chrono::Duration>> {
        let now_ms = to_millis(now);
        let (window_ended, most, cooled_down) = acquire_bounds(limit, now_ms);
        // RETURNING, so that it runs as a query: see `crate::cached` on SQLite's
        // `execute`.
        let counted = cached_here!(
            acquire_query!(key, now_ms, window_ended, most, cooled_down)
                .returning(rate_limits::count)
        )
        .get_result::<i32>(conn)
        .optional()?;
        if counted.is_some() {
            return Ok(None);
        }
        let (window_start, count, last_at): (i64, i32, i64) = rate_limits::table
            .find(key)
            .select((
                rate_limits::window_start,
                rate_limits::count,
                rate_limits::last_at,
            ))
            .get_result(conn)?;
        metrics::counter!("passcode_throttle_denials_total", "limit" => limit_name(key))
            .increment(1);
        Ok(Some(retry_after(
            limit,
            now_ms,
            window_start,
            count,
            last_at,
        )))
    }

    /// `RefreshTokenStore::rotate`, synchronously (the same statements as
    /// `rotate_session!`): the rotation's UPDATE, or the reads that say why it did not
    /// rotate.
    fn rotate(conn: &mut SqliteConnection, rotate: Rotate<'_>) -> QueryResult<Rotation> {
        // RETURNING, so that it runs as a query: see `crate::cached`.
        let rotated = cached_here!(
            rotate_session_query!(
                rotate.presented,
                to_millis(rotate.now),
                rotate.successor,
                rotate.successor_ids,
                rotate.signed_for
            )
            .returning(crate::schema::session_tokens::family_id)
        )
        .get_result::<String>(conn)
        .optional()?;
        if rotated.is_some() {
            return Ok(Rotation::Rotated);
        }
        let account: Option<String> = account_as_signed_query!(rotate.signed_for)
            .get_result(conn)
            .optional()?;
        if account.is_none() {
            return Ok(Rotation::AccountChanged);
        }
        let row: Option<SessionTokens> = session_tokens_query!(rotate.successor.family_id)
            .get_result(conn)
            .optional()?;
        Ok(unrotated(row, &rotate))
    }

    impl SqliteStore {
        /// `RefreshTokenStore::rotate` in one trip, in the next batch of writes.
        pub(crate) async fn rotate_tx(&self, rotate: Rotate<'_>) -> Result<Rotation, InfraError> {
            // The batch runs on the blocking thread: it owns its copy of the arguments.
            let presented = rotate.presented.to_vec();
            let successor = rotate.successor.clone();
            let successor_ids = rotate.successor_ids.clone();
            let signed_for = rotate.signed_for.clone();
            let (now, grace) = (rotate.now, rotate.grace);
            self.batched(move |conn| {
                self::rotate(
                    conn,
                    Rotate {
                        presented: &presented,
                        now,
                        grace,
                        successor: &successor,
                        successor_ids: &successor_ids,
                        signed_for: &signed_for,
                    },
                )
            })
            .await?
            .map_err(query_error)
        }

        /// `RefreshTokenStore::insert` in one trip, in the next batch of writes: the
        /// budgets given back (in the order they were reserved in), the session and
        /// its event. A login's last write, which took six trips statement by statement.
        pub(crate) async fn start_session_tx(
            &self,
            token: &NewRefreshToken,
            event: Option<AuditEvent>,
            give_back: passcode_domain::ports::GiveBack<'_>,
        ) -> Result<(), InfraError> {
            let token = token.clone();
            let keys = give_back.keys.to_vec();
            let reserved_at = crate::time::to_millis(give_back.reserved_at);
            self.batched(move |conn| -> QueryResult<()> {
                for key in &keys {
                    // RETURNING, so that it runs as a query: see `crate::cached`.
                    cached_here!(release_query!(key, reserved_at).returning(rate_limits::count))
                        .load::<i32>(conn)?;
                }
                new_session_query!(&token).execute(conn)?;
                audit(conn, event.as_ref())
            })
            .await?
            .map_err(query_error)
        }

        /// A logout (`RefreshTokenStore::revoke_family` and `revoke_all`) in one trip,
        /// in the next batch of writes: the sessions ended and the event. Statement by
        /// statement it took four trips and a commit of its own.
        pub(crate) async fn logout_tx(
            &self,
            ended: Ended,
            now: DateTime<Utc>,
            event: Option<AuditEvent>,
        ) -> Result<(), InfraError> {
            let (id, now) = (ended.id(), to_millis(now));
            self.batched(move |conn| -> QueryResult<()> {
                match ended {
                    Ended::Family(_) => {
                        write_kept!(end_family_query!(&id, now), sessions::family_id, conn)
                    }
                    Ended::Account(_) => {
                        write_kept!(end_sessions_query!(&id, "", now), sessions::family_id, conn)
                    }
                }?;
                audit(conn, event.as_ref())
            })
            .await?
            .map_err(query_error)
        }

        /// `RefreshTokenStore::logout` in one trip, in the next batch of writes: the
        /// live session found (as `family_of` finds it), it or every session of its
        /// account ended, and the event written with its account. A read on a pooled
        /// connection, then a trip to the writer, took two.
        pub(crate) async fn logout_named(
            &self,
            token_hash: &[u8],
            session: Option<uuid::Uuid>,
            all: bool,
            now: DateTime<Utc>,
            event: AuditEvent,
        ) -> Result<Option<passcode_domain::UserId>, InfraError> {
            use crate::schema::sessions;
            let (token_hash, now) = (token_hash.to_vec(), to_millis(now));
            let mut row = AuditRow::new(&event);
            let found = self
                .batched(move |conn| -> QueryResult<Option<String>> {
                    let live = sessions::table
                        .filter(sessions::revoked_at.is_null())
                        .select((sessions::family_id, sessions::user_id));
                    let found: Option<(String, String)> = match session {
                        Some(session) => live.find(session.to_string()).get_result(conn),
                        None => live
                            .filter(sessions::token_hash.eq(&token_hash))
                            .get_result(conn),
                    }
                    .optional()?;
                    let Some((family, user)) = found else {
                        return Ok(None);
                    };
                    if all {
                        write_kept!(
                            end_sessions_query!(&user, "", now),
                            sessions::family_id,
                            conn
                        )?;
                    } else {
                        write_kept!(end_family_query!(&family, now), sessions::family_id, conn)?;
                    }
                    row.user_id = Some(user.clone());
                    diesel::insert_into(audit_events::table)
                        .values(&row)
                        .execute(conn)?;
                    Ok(Some(user))
                })
                .await?
                .map_err(query_error)?;
            found
                .map(|user| parse_id(&user).map(passcode_domain::UserId))
                .transpose()
        }

        /// `UserRepository::create` in one trip, in the next batch of writes: the
        /// account, and its first code with the code's mail and its event. A
        /// registration's write, which took six trips statement by statement.
        pub(crate) async fn create_user_tx(
            &self,
            row: UserRow,
            first_code: Option<FirstCodeRows>,
        ) -> Result<UserRow, CreateUserError> {
            self.batched(move |conn| -> QueryResult<UserRow> {
                diesel::insert_into(users::table)
                    .values(&row)
                    .execute(conn)?;
                if let Some(first) = &first_code {
                    insert_first_code(conn, first)?;
                }
                Ok(row)
            })
            .await?
            .map_err(create_user_error)
        }

        /// `OtpStore::replace` and `decoy`'s write in one trip, in the next batch of
        /// writes (MariaDB runs the same statement by statement, `code_writes!`): the
        /// send limit counted first (a refusal undoes the rest, the work's savepoint),
        /// the keys given back, the earlier codes' waiting mail expired and the codes
        /// deleted, the row, its mail and the notice.
        pub(crate) async fn issue_tx(
            &self,
            code: OtpRow,
            mail: NewOutboxRow,
            notice: Option<NewOutboxRow>,
            issue: &Issue<'_>,
            now: DateTime<Utc>,
        ) -> Result<Admission, InfraError> {
            let send = send_budgets(issue);
            let keys = issue.give_back.keys.to_vec();
            let reserved_at = to_millis(issue.give_back.reserved_at);
            let written = self
                .batched(move |conn| -> Result<(), Abort> {
                    reserve_all(conn, &send, now)?;
                    for key in &keys {
                        // RETURNING, so that it runs as a query: see `crate::cached`.
                        cached_here!(
                            release_query!(key, reserved_at).returning(rate_limits::count)
                        )
                        .load::<i32>(conn)?;
                    }
                    let (email, purpose) = (code.email.as_str(), code.purpose.as_str());
                    write_kept!(
                        expire_replaced_mail_query!(email, purpose, "", to_millis(now)),
                        outbox::id,
                        conn
                    )?;
                    delete_replaced_codes_query!(email, purpose, "").execute(conn)?;
                    insert_code(conn, &code, &mail)?;
                    if let Some(notice) = &notice {
                        diesel::insert_into(outbox::table)
                            .values(notice)
                            .execute(conn)?;
                    }
                    Ok(())
                })
                .await?;
            admission(written)
        }

        /// `OtpStore::add`'s write in one trip, in the next batch of writes: the code,
        /// its mail and its event, as a new account's first code.
        pub(crate) async fn add_tx(&self, rows: FirstCodeRows) -> Result<(), InfraError> {
            self.batched(move |conn| insert_first_code(conn, &rows))
                .await?
                .map_err(query_error)
        }

        /// A spend's writes (`SpendRows`: `OtpStore::complete_registration`'s, and
        /// `consume`'s without an account change) in one trip, in the next batch of
        /// writes; a code not spent, or an account no longer as the code found it,
        /// undoes the rest (the work's savepoint).
        pub(crate) async fn spend_tx(&self, rows: SpendRows) -> Result<bool, InfraError> {
            let spent = self
                .batched(move |conn| -> QueryResult<bool> {
                    let r = &rows;
                    for key in &r.give_back {
                        // RETURNING, so that it runs as a query: see `crate::cached`.
                        cached_here!(
                            release_query!(key, r.reserved_at).returning(rate_limits::count)
                        )
                        .load::<i32>(conn)?;
                    }
                    if write_kept!(
                        spend_code_query!(&r.code, &r.code_hash, r.now, r.most_tries),
                        otp_codes::id,
                        conn
                    )? != 1
                    {
                        return Err(diesel::result::Error::RollbackTransaction);
                    }
                    if let Some(registration) = &r.registration {
                        if write_kept!(
                            apply_registration_query!(&r.code, registration, r.now),
                            users::id,
                            conn
                        )? != 1
                        {
                            return Err(diesel::result::Error::RollbackTransaction);
                        }
                        let purpose = OtpPurpose::VerifyEmail.as_str();
                        let email = || registered_email!(&registration.user);
                        write_kept!(
                            expire_replaced_mail_query!(email(), purpose, &r.code, r.now),
                            outbox::id,
                            conn
                        )?;
                        delete_replaced_codes_query!(email(), purpose, &r.code).execute(conn)?;
                        diesel::insert_into(audit_events::table)
                            .values(&registration.verified)
                            .execute(conn)?;
                    }
                    if let Some((token, event)) = &r.session {
                        new_session_query!(token).execute(conn)?;
                        if let Some(event) = event {
                            diesel::insert_into(audit_events::table)
                                .values(event)
                                .execute(conn)?;
                        }
                    }
                    Ok(true)
                })
                .await?;
            match spent {
                Err(diesel::result::Error::RollbackTransaction) => Ok(false),
                spent => spent.map_err(query_error),
            }
        }

        /// `OtpStore::count_try` in one trip.
        pub(crate) async fn count_try_tx(
            &self,
            email: &EmailAddress,
            purpose: OtpPurpose,
            now: DateTime<Utc>,
            max_attempts: u32,
            budgets: &[(String, Limit)],
        ) -> Result<Tries, InfraError> {
            let email = email.as_str().to_owned();
            let budgets = budgets.to_vec();
            // Only counts: committed without waiting for the disk, as on PostgreSQL.
            let outcome = self
                .batched_counts(move |conn| {
                    reserve_all(conn, &budgets, now)?;
                    Ok(cached_here!(
                        diesel::update(open_codes_query!(&email, purpose, now, max_attempts))
                            .set(otp_codes::attempts.eq(otp_codes::attempts + 1))
                            .returning(OtpRow::as_returning())
                    )
                    .get_results(conn)?)
                })
                .await?;
            tries(outcome)
        }

        /// `Throttle::acquire_all` in one trip.
        pub(crate) async fn acquire_all_tx(
            &self,
            budgets: &[(String, Limit)],
            now: DateTime<Utc>,
        ) -> Result<Admissions, InfraError> {
            let budgets = budgets.to_vec();
            admissions(
                self.batched_counts(move |conn| reserve_all(conn, &budgets, now))
                    .await?,
            )
        }
    }

    /// A code and the mail that carries it, synchronously.
    fn insert_code(
        conn: &mut SqliteConnection,
        code: &OtpRow,
        mail: &NewOutboxRow,
    ) -> QueryResult<()> {
        diesel::insert_into(otp_codes::table)
            .values(code)
            .execute(conn)?;
        diesel::insert_into(outbox::table)
            .values(mail)
            .execute(conn)?;
        Ok(())
    }

    /// `event`'s row, if there is one, synchronously.
    fn audit(conn: &mut SqliteConnection, event: Option<&AuditEvent>) -> QueryResult<()> {
        if let Some(event) = event {
            diesel::insert_into(audit_events::table)
                .values(&AuditRow::new(event))
                .execute(conn)?;
        }
        Ok(())
    }

    /// A code with its mail and its event, synchronously.
    fn insert_first_code(conn: &mut SqliteConnection, first: &FirstCodeRows) -> QueryResult<()> {
        insert_code(conn, &first.code, &first.mail)?;
        diesel::insert_into(audit_events::table)
            .values(&first.event)
            .execute(conn)?;
        Ok(())
    }

    /// Counts one event for each of `budgets`, in order; at the first refusal,
    /// `Abort::Refused`, which undoes the earlier ones (the work's savepoint).
    fn reserve_all(
        conn: &mut SqliteConnection,
        budgets: &[(String, Limit)],
        now: DateTime<Utc>,
    ) -> Result<(), Abort> {
        for (budget, (key, limit)) in budgets.iter().enumerate() {
            if let Some(retry_after) = reserve(conn, key, *limit, now)? {
                return Err(Abort::Refused(budget, retry_after));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use diesel::RunQueryDsl;
    use diesel::connection::SimpleConnection;

    use super::*;

    /// One wrong guess at ada@example.com's verification code at `now`, with roomy
    /// budgets.
    async fn count_a_guess(store: &SqliteStore, now: chrono::DateTime<chrono::Utc>) {
        use passcode_domain::ports::OtpStore as _;
        let email = passcode_domain::EmailAddress::parse("ada@example.com").unwrap();
        let budgets = crate::roomy_guess_budgets();
        store
            .count_try(
                &email,
                passcode_domain::OtpPurpose::VerifyEmail,
                now,
                5,
                &budgets,
            )
            .await
            .unwrap();
    }

    /// A guess's statements are prepared once per connection, not on every call
    /// (`crate::cached`): the budget upsert, which Diesel alone prepares every time,
    /// the try's UPDATE, and a budget's release.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::disallowed_methods, reason = "a test may read the wall clock")]
    async fn a_guess_is_prepared_once_per_connection() {
        use crate::prepared_rounds::{record_statements, statements_of};
        use passcode_domain::ports::Throttle as _;
        record_statements();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = DatabaseSettings::sqlite(dir.path().join("prepared-once.db"));
        settings.max_connections = 1; // one connection, so one statement cache
        let store = SqliteStore::connect(&settings).unwrap();
        store.migrate().await.unwrap();
        for _ in 0..5 {
            let now = chrono::Utc::now();
            count_a_guess(&store, now).await;
            store
                .release(passcode_domain::ports::GiveBack {
                    keys: &["guess:ada@example.com".to_owned()],
                    reserved_at: now,
                })
                .await
                .unwrap();
        }
        let statements = statements_of("prepared-once.db");
        let count = |cached: bool, prefix: &str| {
            statements
                .iter()
                .filter(|(is_cached, sql)| *is_cached == cached && sql.starts_with(prefix))
                .count()
        };
        assert_eq!(count(false, "INSERT INTO `rate_limits`"), 10);
        assert_eq!(count(true, "INSERT INTO `rate_limits`"), 1);
        assert_eq!(count(false, "UPDATE `otp_codes`"), 5);
        assert_eq!(count(true, "UPDATE `otp_codes`"), 1);
        // Through diesel-async's wrapper, `execute` keeps the mark.
        assert_eq!(count(false, "UPDATE `rate_limits`"), 5);
        assert_eq!(count(true, "UPDATE `rate_limits`"), 1);
    }

    /// How often each statement a connection keeps prepared has run, by SQL text, on
    /// the writer's connection and the pool's (SQLite's `sqlite_stmt` table).
    async fn runs_kept(store: &SqliteStore) -> crate::prepared_rounds::Runs {
        use crate::prepared_rounds::Kept;
        const KEPT: &str = "SELECT sql, run FROM sqlite_stmt";
        // A SQLite built without the table (a system library, or the flags of
        // `.cargo/config.toml` not applied) says "no such table": say why.
        let without = |error: diesel::result::Error| {
            panic!(
                "{error}: this SQLite was built without SQLITE_ENABLE_STMTVTAB (the bundled \
                 one gets it from LIBSQLITE3_FLAGS in .cargo/config.toml)"
            )
        };
        let mut kept = store
            .batched(|conn| diesel::sql_query(KEPT).load::<Kept>(conn))
            .await
            .unwrap()
            .unwrap_or_else(without);
        let mut pooled = store.pool.get().await.unwrap();
        kept.extend(
            diesel_async::RunQueryDsl::load::<Kept>(diesel::sql_query(KEPT), &mut *pooled)
                .await
                .unwrap_or_else(without),
        );
        crate::prepared_rounds::runs(kept)
    }

    /// The statements of every request and of the mail worker are kept prepared
    /// (`crate::cached`; `crate::prepared_rounds::assert_kept`, with SQLite's
    /// `sqlite_stmt` table). One prepared anew costs SQLite's parser and planner at
    /// every call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_statements_of_the_requests_and_the_mail_worker_are_kept_prepared() {
        crate::prepared_rounds::record_statements();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = DatabaseSettings::sqlite(dir.path().join("kept-prepared.db"));
        settings.max_connections = 1; // with the writer's, two statement caches
        let store = SqliteStore::connect(&settings).unwrap();
        store.migrate().await.unwrap();
        crate::prepared_rounds::assert_kept(&store, "kept-prepared.db", runs_kept).await;
    }

    #[derive(diesel::QueryableByName)]
    struct Synchronous {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        synchronous: i32,
    }

    /// Both the pooled connections and the hot path's writer sync a commit to disk
    /// (`PRAGMA synchronous = FULL`, 2), except the writer's commit of a batch that only
    /// counts (`group_commit::Commit`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_are_synced_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::connect(&DatabaseSettings::sqlite(dir.path().join("sync.db"))).unwrap();
        let writer = store
            .batched(|conn| diesel::sql_query("PRAGMA synchronous").get_result::<Synchronous>(conn))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(writer.synchronous, 2, "the writer thread's connection");
        let mut pooled = store.pool.get().await.unwrap();
        let pooled = diesel_async::RunQueryDsl::get_result::<Synchronous>(
            diesel::sql_query("PRAGMA synchronous"),
            &mut *pooled,
        )
        .await
        .unwrap();
        assert_eq!(pooled.synchronous, 2, "a pooled connection");
    }

    /// The writer's `PRAGMA synchronous` as seen by a job that only counts, in one batch
    /// with `subject`'s write: 1 (NORMAL) if `subject` only counts too, 2 otherwise.
    async fn synchronous_beside(
        store: &SqliteStore,
        subject: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> i32 {
        let probe = |store: SqliteStore| async move {
            store
                .batched_counts(|conn| {
                    diesel::sql_query("PRAGMA synchronous").get_result::<Synchronous>(conn)
                })
                .await
                .unwrap()
                .unwrap()
                .synchronous
        };
        // While the turn is held, the writer thread takes the first job and waits; the
        // two queued meanwhile make its next batch.
        let turn = store.writer().await.unwrap();
        let queue = store.queue();
        let before = queue.queued();
        let first = tokio::spawn(probe(store.clone()));
        queue
            .reaches(|queued, waiting| queued == before + 1 && waiting == 0)
            .await;
        let subject = tokio::spawn(subject);
        let seen = tokio::spawn(probe(store.clone()));
        queue.reaches(|_, waiting| waiting == 2).await;
        drop(turn);
        first.await.unwrap();
        subject.await.unwrap();
        seen.await.unwrap()
    }

    /// A guess and a reservation of budgets only count: their batch commits without
    /// syncing (`group_commit::Commit::CountsOnly`), as on PostgreSQL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::disallowed_methods, reason = "a test may read the wall clock")]
    async fn a_guess_and_a_reservation_commit_without_syncing() {
        use passcode_domain::ports::Throttle as _;
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::connect(&DatabaseSettings::sqlite(dir.path().join("counts.db"))).unwrap();
        store.migrate().await.unwrap();
        let guess = {
            let store = store.clone();
            async move { count_a_guess(&store, chrono::Utc::now()).await }
        };
        assert_eq!(synchronous_beside(&store, guess).await, 1, "beside a guess");
        let reservation = {
            let store = store.clone();
            async move {
                let budgets = crate::roomy_guess_budgets();
                store
                    .acquire_all(&budgets, chrono::Utc::now())
                    .await
                    .unwrap();
            }
        };
        assert_eq!(
            synchronous_beside(&store, reservation).await,
            1,
            "beside a reservation"
        );
    }

    #[derive(diesel::QueryableByName)]
    struct CompileOption {
        #[diesel(sql_type = diesel::sql_types::Text)]
        compile_options: String,
    }

    /// The bundled SQLite is built with the options `.cargo/config.toml` passes
    /// (`LIBSQLITE3_FLAGS`): no per-connection mutexes, no global memory statistics.
    #[test]
    fn the_bundled_sqlite_is_built_without_per_connection_locks() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|option| option.compile_options)
            .collect();
        for wanted in ["THREADSAFE=2", "DEFAULT_MEMSTATUS=0"] {
            assert!(
                options.iter().any(|option| option == wanted),
                "{wanted} is not among {options:?}: was .cargo/config.toml read?"
            );
        }
    }

    /// A committed write reaches the database file itself soon, by the checkpointer,
    /// although no writer crossed its own checkpoint threshold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpointer_copies_commits_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        let store = SqliteStore::connect(&DatabaseSettings::sqlite(&path)).unwrap();
        let marker = "checkpointed-marker-7f3a";
        store
            .batched(move |conn| {
                conn.batch_execute("CREATE TABLE notes (text TEXT NOT NULL)")?;
                diesel::sql_query(format!("INSERT INTO notes (text) VALUES ('{marker}')"))
                    .execute(conn)
                    .map(drop)
            })
            .await
            .unwrap()
            .unwrap();
        let in_file = || {
            std::fs::read(&path)
                .unwrap()
                .windows(marker.len())
                .any(|window| window == marker.as_bytes())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !in_file() {
            assert!(
                std::time::Instant::now() < deadline,
                "the commit is still only in the WAL after 5 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A give-back after a failure takes the writer's turn and a connection at once,
    /// or gives nothing back: it waits for neither.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_give_back_at_once_waits_for_neither_the_writer_nor_a_connection() {
        use crate::ports::throttle::check_release_at_once;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = DatabaseSettings::sqlite(dir.path().join("at-once.db"));
        settings.max_connections = 1;
        let store = SqliteStore::connect(&settings).unwrap();
        store.migrate().await.unwrap();
        check_release_at_once(&store, async |store: &SqliteStore| {
            store.writer().await.unwrap()
        })
        .await;
        check_release_at_once(&store, async |store: &SqliteStore| {
            store.conn().await.unwrap()
        })
        .await;
    }

    crate::migration_test::session_tokens_migration_test!(
        SqliteConnection,
        super::MIGRATIONS,
        {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("migrate.db");
            (dir, path.to_str().unwrap().to_owned())
        },
        |url: &str| SqliteStore::connect(&DatabaseSettings::sqlite(std::path::PathBuf::from(url)))
            .unwrap(),
        |byte: u8| format!("x'{byte:02x}'"),
        // The dropped store's threads may still hold the file for a moment.
        Some("PRAGMA busy_timeout = 10000;")
    );
}
