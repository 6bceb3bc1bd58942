//! `RefreshTokenStore`: sessions, one row each, holding the live refresh token
//! (SHA-256 only) and the one it replaced.

macro_rules! refresh_token_store {
    ($store:ty) => {
        const _: () = {
            use self::shared::audit;
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use diesel::prelude::*;
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use passcode_domain::ports::{NewRefreshToken, RefreshTokenStore, Rotation, TokenIds};
            use passcode_domain::{InfraError, UserId};
            use uuid::Uuid;
            use $crate::error::query_error;
            use $crate::rows::{Ended, parse_id};
            use $crate::schema::sessions;
            use $crate::time::from_millis;
            use $crate::time::to_millis;

            /// Revokes the sessions `$filtered` selects (not revoked yet) at `$now_ms`:
            /// how many. Kept prepared (one shape per call site): Diesel would prepare
            /// it again at every call, a round trip of its own on PostgreSQL.
            macro_rules! revoke {
                ($conn:expr, $filtered:expr, $now_ms:expr) => {{
                    use $crate::cached::CachedExt as _;
                    diesel::update($filtered.filter(sessions::revoked_at.is_null()))
                        .set(sessions::revoked_at.eq(Some::<i64>($now_ms)))
                        .cached()
                        .execute($conn)
                }};
            }

            #[async_trait]
            impl RefreshTokenStore for $store {
                async fn insert<'a>(
                    &self,
                    token: &NewRefreshToken,
                    event: Option<passcode_domain::AuditEvent>,
                    give_back: passcode_domain::ports::GiveBack<'a>,
                ) -> Result<(), InfraError> {
                    // Each backend's own: pipelined in one round trip on PostgreSQL,
                    // statement by statement on MariaDB (`insert_session!`), in one
                    // trip and one batch on SQLite.
                    self.start_session_tx(token, event, give_back).await
                }

                async fn rotate(
                    &self,
                    presented: &[u8],
                    now: DateTime<Utc>,
                    grace: chrono::Duration,
                    successor: &NewRefreshToken,
                    successor_ids: &TokenIds,
                    signed_for: &passcode_domain::ports::SignedFor,
                ) -> Result<Rotation, InfraError> {
                    // Each backend's own: statement by statement on PostgreSQL and
                    // MariaDB (`rotate_session!`), in one trip and one batch on SQLite.
                    self.rotate_tx($crate::rows::Rotate {
                        presented,
                        now,
                        grace,
                        successor,
                        successor_ids,
                        signed_for,
                    })
                    .await
                }

                async fn sessions(
                    &self,
                    user: UserId,
                    now: DateTime<Utc>,
                ) -> Result<Vec<passcode_domain::ports::SessionInfo>, InfraError> {
                    type Row = (
                        String,
                        i64,
                        Option<String>,
                        Option<String>,
                        i64,
                        Option<String>,
                        Option<String>,
                    );
                    let now_ms = to_millis(now);
                    let mut conn = self.conn().await?;
                    let rows: Vec<Row> = sessions::table
                        .filter(sessions::user_id.eq(user.0.to_string()))
                        .filter(sessions::revoked_at.is_null())
                        .filter(sessions::token_hash.is_not_null())
                        .filter(sessions::expires_at.gt(now_ms))
                        .filter(
                            sessions::family_expires_at
                                .is_null()
                                .or(sessions::family_expires_at.gt(now_ms)),
                        )
                        .order(sessions::last_used_at.desc())
                        .select((
                            sessions::family_id,
                            sessions::created_at,
                            sessions::created_client,
                            sessions::created_user_agent,
                            sessions::last_used_at,
                            sessions::last_client,
                            sessions::last_user_agent,
                        ))
                        .load(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    rows.into_iter()
                        .map(
                            |(
                                id,
                                created_at,
                                created_client,
                                created_user_agent,
                                last_used_at,
                                last_client,
                                last_user_agent,
                            )| {
                                Ok(passcode_domain::ports::SessionInfo {
                                    id: Uuid::parse_str(&id)
                                        .map_err(|e| InfraError::Unexpected(e.into()))?,
                                    created_at: from_millis(created_at),
                                    created_client,
                                    created_user_agent,
                                    last_used_at: from_millis(last_used_at),
                                    last_client,
                                    last_user_agent,
                                })
                            },
                        )
                        .collect()
                }

                async fn end_session(
                    &self,
                    user: UserId,
                    session: Uuid,
                    now: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<bool, InfraError> {
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            let ended = revoke!(
                                conn,
                                sessions::table
                                    .find(session.to_string())
                                    .filter(sessions::user_id.eq(user.0.to_string())),
                                to_millis(now)
                            )
                            .await?;
                            if ended > 0 {
                                audit(conn, event).await?;
                            }
                            Ok::<bool, diesel::result::Error>(ended > 0)
                        })
                        .await
                        .map_err(query_error)
                }

                async fn end_other_sessions(
                    &self,
                    user: UserId,
                    keep: Uuid,
                    now: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<u64, InfraError> {
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            let ended = revoke!(
                                conn,
                                sessions::table
                                    .filter(sessions::user_id.eq(user.0.to_string()))
                                    .filter(sessions::family_id.ne(keep.to_string())),
                                to_millis(now)
                            )
                            .await?;
                            audit(conn, event).await?;
                            Ok::<u64, diesel::result::Error>(u64::try_from(ended).unwrap_or(0))
                        })
                        .await
                        .map_err(query_error)
                }

                async fn family_of(
                    &self,
                    token_hash: &[u8],
                    session: Option<Uuid>,
                ) -> Result<Option<(Uuid, UserId)>, InfraError> {
                    let mut conn = self.conn().await?;
                    let live = sessions::table.filter(sessions::revoked_at.is_null());
                    let select = (sessions::family_id, sessions::user_id);
                    let row: Option<(String, String)> = match session {
                        Some(session) => {
                            live.find(session.to_string())
                                .select(select)
                                .get_result(&mut *conn)
                                .await
                        }
                        // No index on the token: a scan, for tokens older than `sid`.
                        None => {
                            live.filter(sessions::token_hash.eq(token_hash))
                                .select(select)
                                .get_result(&mut *conn)
                                .await
                        }
                    }
                    .optional()
                    .map_err(query_error)?;
                    row.map(|(family, user)| Ok((parse_id(&family)?, UserId(parse_id(&user)?))))
                        .transpose()
                }

                async fn revoke_family(
                    &self,
                    family_id: Uuid,
                    now: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<(), InfraError> {
                    // Each backend's own: in one round trip on PostgreSQL, statement by
                    // statement on MariaDB (`logout!`), in one trip and one batch on
                    // SQLite.
                    self.logout_tx(Ended::Family(family_id), now, Some(event.clone()))
                        .await
                }

                async fn revoke_all(
                    &self,
                    user_id: UserId,
                    now: DateTime<Utc>,
                    event: Option<passcode_domain::AuditEvent>,
                ) -> Result<(), InfraError> {
                    self.logout_tx(Ended::Account(user_id), now, event).await
                }

                async fn logout(
                    &self,
                    token_hash: &[u8],
                    session: Option<Uuid>,
                    all: bool,
                    now: DateTime<Utc>,
                    event: passcode_domain::AuditEvent,
                ) -> Result<Option<UserId>, InfraError> {
                    // Each backend's own: one statement on PostgreSQL, one trip and one
                    // batch on SQLite, one transaction that locks the session first on MariaDB.
                    self.logout_named(token_hash, session, all, now, event)
                        .await
                }
            }
        };
    };
}

pub(crate) use refresh_token_store;

/// `RefreshTokenStore::insert` statement by statement, as the method `$method` of
/// `$store` (MariaDB's; PostgreSQL's and SQLite's run in one trip, `postgres.rs` and
/// `sqlite.rs`): the budgets given back, the session and its event, in one transaction.
macro_rules! insert_session {
    ($store:ty, $method:ident) => {
        const _: () = {
            use self::shared::{give_back, start_session};
            use diesel_async::AsyncConnection;
            use passcode_domain::InfraError;
            use passcode_domain::ports::NewRefreshToken;
            use $crate::error::query_error;

            impl $store {
                pub(crate) async fn $method(
                    &self,
                    token: &NewRefreshToken,
                    event: Option<passcode_domain::AuditEvent>,
                    returned: passcode_domain::ports::GiveBack<'_>,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    if event.is_none() && returned.keys.is_empty() {
                        return start_session(&mut *conn, token, None)
                            .await
                            .map_err(query_error);
                    }
                    // The budgets' rows first, in the order they were reserved in, as
                    // every reservation locks them.
                    (*conn)
                        .transaction(async |conn| {
                            give_back(conn, returned).await?;
                            start_session(conn, token, event.as_ref()).await
                        })
                        .await
                        .map_err(query_error)
                }
            }
        };
    };
}
pub(crate) use insert_session;

/// A logout (`RefreshTokenStore::revoke_family` and `revoke_all`) statement by
/// statement, as method `$method` of `$store` (MariaDB's; PostgreSQL's runs in one
/// round trip, SQLite's in one trip and one batch): the sessions ended and the event,
/// in one transaction.
macro_rules! logout {
    ($store:ty, $method:ident) => {
        const _: () = {
            use self::shared::audit;
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use passcode_domain::InfraError;
            use $crate::cached::CachedExt as _;
            use $crate::error::query_error;
            use $crate::rows::{Ended, end_family_query, end_sessions_query};

            impl $store {
                pub(crate) async fn $method(
                    &self,
                    ended: Ended,
                    now: chrono::DateTime<chrono::Utc>,
                    event: Option<passcode_domain::AuditEvent>,
                ) -> Result<(), InfraError> {
                    let (id, now) = (ended.id(), $crate::time::to_millis(now));
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            // Kept prepared (one shape each): Diesel would prepare
                            // an UPDATE again at every call.
                            match ended {
                                Ended::Family(_) => {
                                    end_family_query!(&id, now).cached().execute(conn).await
                                }
                                Ended::Account(_) => {
                                    end_sessions_query!(&id, "", now)
                                        .cached()
                                        .execute(conn)
                                        .await
                                }
                            }?;
                            if let Some(event) = &event {
                                audit(conn, event).await?;
                            }
                            Ok::<(), diesel::result::Error>(())
                        })
                        .await
                        .map_err(query_error)
                }
            }
        };
    };
}
pub(crate) use logout;

/// `RefreshTokenStore::rotate` statement by statement, as method `$method`
/// (PostgreSQL's and MariaDB's; SQLite's runs the same in one trip, `sqlite.rs`). The
/// rotation is one UPDATE, committed on its own; only a token it did not rotate with
/// (rare: a replay, reuse, an ended session, a changed account) takes the reads that
/// say why, and they change nothing.
macro_rules! rotate_session {
    ($store:ty, $method:ident) => {
        const _: () = {
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use passcode_domain::InfraError;
            use passcode_domain::ports::Rotation;
            use $crate::cached::CachedExt as _;
            use $crate::error::query_error;
            use $crate::rows::{
                Rotate, SessionTokens, account_as_signed_query, rotate_session_query,
                session_tokens_query, unrotated,
            };
            use $crate::time::to_millis;

            impl $store {
                pub(crate) async fn $method(
                    &self,
                    rotate: Rotate<'_>,
                ) -> Result<Rotation, InfraError> {
                    let mut conn = self.writer().await?;
                    let rotated = rotate_session_query!(
                        rotate.presented,
                        to_millis(rotate.now),
                        rotate.successor,
                        rotate.successor_ids,
                        rotate.signed_for
                    )
                    .cached()
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    if rotated == 1 {
                        return Ok(Rotation::Rotated);
                    }
                    let account: Option<String> = account_as_signed_query!(rotate.signed_for)
                        .get_result(&mut *conn)
                        .await
                        .optional()
                        .map_err(query_error)?;
                    if account.is_none() {
                        return Ok(Rotation::AccountChanged);
                    }
                    let row: Option<SessionTokens> =
                        session_tokens_query!(rotate.successor.family_id)
                            .get_result(&mut *conn)
                            .await
                            .optional()
                            .map_err(query_error)?;
                    Ok(unrotated(row, &rotate))
                }
            }
        };
    };
}

pub(crate) use rotate_session;

/// What every backend whose writers wait on row locks must do when a logout of all
/// loses the race for its session: end nothing, not even a session the account
/// started after the winner read the account's sessions. Given a migrated `store`,
/// `hold` plays the winner: it runs the statement it is given (which ends the
/// account's sessions) in a transaction and keeps it open until `commit`. Meanwhile a new session starts and the loser reads the
/// presented session as live, then (`waiting` tells when) waits for its lock.
#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "sessions unexpired by the wall clock"
)]
pub(crate) async fn check_a_losing_logout_of_all_ends_nothing<S, W>(
    store: &S,
    hold: impl AsyncFn(&str) -> W,
    waiting: impl AsyncFn() -> bool,
    commit: impl AsyncFn(W),
) where
    S: passcode_domain::ports::RefreshTokenStore + Clone + 'static,
{
    use passcode_domain::ports::{GiveBack, NewRefreshToken};
    use passcode_domain::{AuditEvent, AuditKind, RequestContext, UserId};
    let now = chrono::Utc::now();
    for (round, by_id) in [(1u8, true), (2, false)] {
        let user = UserId::new_random();
        let session = |hash: u8| NewRefreshToken {
            token_hash: vec![hash; 32],
            family_id: uuid::Uuid::new_v4(),
            user_id: user,
            expires_at: now + chrono::Duration::days(1),
            created_at: now,
            family_expires_at: now + chrono::Duration::days(30),
            origin: RequestContext::default(),
        };
        let (presented, newer) = (session(round * 10), session(round * 10 + 1));
        store
            .insert(&presented, None, GiveBack::NONE)
            .await
            .unwrap();
        let end = format!(
            "UPDATE sessions SET revoked_at = 1 WHERE user_id = '{}'",
            user.0
        );
        let winner = hold(&end).await;
        store.insert(&newer, None, GiveBack::NONE).await.unwrap();
        let loser = tokio::spawn({
            let store = store.clone();
            let (hash, session) = (presented.token_hash.clone(), presented.family_id);
            let event = AuditEvent::new(
                AuditKind::LogoutAll,
                now,
                None,
                None,
                &RequestContext::default(),
            );
            async move {
                let session = by_id.then_some(session);
                store.logout(&hash, session, true, now, event).await
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !waiting().await {
            assert!(
                std::time::Instant::now() < deadline && !loser.is_finished(),
                "the loser (by id: {by_id}) never waited for the winner's lock"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        commit(winner).await;
        assert_eq!(loser.await.unwrap().unwrap(), None, "by id: {by_id}");
        assert_eq!(
            store
                .family_of(&newer.token_hash, Some(newer.family_id))
                .await
                .unwrap(),
            Some((newer.family_id, user)),
            "by id: {by_id}: the session started after the winner read lives on"
        );
    }
}
