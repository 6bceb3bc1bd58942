//! `RefreshTokenStore`: sessions and their rotating refresh tokens (SHA-256 only).

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
            use $crate::schema::{refresh_tokens, sessions};
            use $crate::time::from_millis;
            use $crate::time::to_millis;

            async fn insert_token(
                conn: &mut Conn,
                token: &NewRefreshToken,
            ) -> Result<(), diesel::result::Error> {
                diesel::insert_into(refresh_tokens::table)
                    .values((
                        refresh_tokens::token_hash.eq(&token.token_hash),
                        refresh_tokens::family_id.eq(token.family_id.to_string()),
                        refresh_tokens::user_id.eq(token.user_id.0.to_string()),
                        refresh_tokens::expires_at.eq(to_millis(token.expires_at)),
                        refresh_tokens::created_at.eq(to_millis(token.created_at)),
                        refresh_tokens::family_expires_at
                            .eq(Some(to_millis(token.family_expires_at))),
                    ))
                    .execute(conn)
                    .await?;
                Ok(())
            }

            #[async_trait]
            impl RefreshTokenStore for $store {
                async fn insert(
                    &self,
                    token: &NewRefreshToken,
                    event: Option<passcode_domain::AuditEvent>,
                ) -> Result<(), InfraError> {
                    let now = to_millis(token.created_at);
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            insert_token(conn, token).await?;
                            // A first token starts a session.
                            diesel::insert_into(sessions::table)
                                .values((
                                    sessions::family_id.eq(token.family_id.to_string()),
                                    sessions::user_id.eq(token.user_id.0.to_string()),
                                    sessions::created_at.eq(now),
                                    sessions::created_client.eq(&token.origin.client),
                                    sessions::created_user_agent.eq(&token.origin.user_agent),
                                    sessions::last_used_at.eq(now),
                                    sessions::last_client.eq(&token.origin.client),
                                    sessions::last_user_agent.eq(&token.origin.user_agent),
                                ))
                                .execute(conn)
                                .await?;
                            if let Some(event) = &event {
                                audit(conn, event).await?;
                            }
                            Ok::<(), diesel::result::Error>(())
                        })
                        .await
                        .map_err(query_error)
                }

                async fn rotate(
                    &self,
                    presented: &[u8],
                    now: DateTime<Utc>,
                    grace: chrono::Duration,
                    successor: &NewRefreshToken,
                    successor_ids: &TokenIds,
                    signed_for: &passcode_domain::ports::SignedFor,
                    reuse_audit: &passcode_domain::AuditEvent,
                ) -> Result<Rotation, InfraError> {
                    // Each backend's own transaction: in steps on MariaDB
                    // (`rotate_in_steps!`), one statement on PostgreSQL, one trip and one
                    // batch on SQLite.
                    self.rotate_tx($crate::rows::Rotate {
                        presented,
                        now,
                        grace,
                        successor,
                        successor_ids,
                        signed_for,
                        reuse_audit,
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
                    let live = refresh_tokens::table
                        .filter(refresh_tokens::family_id.eq(sessions::family_id))
                        .filter(refresh_tokens::revoked_at.is_null())
                        .filter(refresh_tokens::spent_at.is_null())
                        .filter(refresh_tokens::expires_at.gt(now_ms));
                    let rows: Vec<Row> = sessions::table
                        .filter(sessions::user_id.eq(user.0.to_string()))
                        .filter(diesel::dsl::exists(live))
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
                            let ended = diesel::update(
                                refresh_tokens::table
                                    .filter(refresh_tokens::family_id.eq(session.to_string()))
                                    .filter(refresh_tokens::user_id.eq(user.0.to_string()))
                                    .filter(refresh_tokens::revoked_at.is_null()),
                            )
                            .set(refresh_tokens::revoked_at.eq(Some(to_millis(now))))
                            .execute(conn)
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
                            let families: Vec<String> = refresh_tokens::table
                                .filter(refresh_tokens::user_id.eq(user.0.to_string()))
                                .filter(refresh_tokens::family_id.ne(keep.to_string()))
                                .filter(refresh_tokens::revoked_at.is_null())
                                .select(refresh_tokens::family_id)
                                .distinct()
                                .load(conn)
                                .await?;
                            diesel::update(
                                refresh_tokens::table
                                    .filter(refresh_tokens::user_id.eq(user.0.to_string()))
                                    .filter(refresh_tokens::family_id.ne(keep.to_string()))
                                    .filter(refresh_tokens::revoked_at.is_null()),
                            )
                            .set(refresh_tokens::revoked_at.eq(Some(to_millis(now))))
                            .execute(conn)
                            .await?;
                            audit(conn, event).await?;
                            Ok::<u64, diesel::result::Error>(
                                u64::try_from(families.len()).unwrap_or(0),
                            )
                        })
                        .await
                        .map_err(query_error)
                }

                async fn family_of(
                    &self,
                    token_hash: &[u8],
                ) -> Result<Option<(Uuid, UserId)>, InfraError> {
                    let mut conn = self.conn().await?;
                    let row: Option<(String, String)> = refresh_tokens::table
                        .find(token_hash)
                        .filter(refresh_tokens::revoked_at.is_null())
                        .select((refresh_tokens::family_id, refresh_tokens::user_id))
                        .get_result(&mut *conn)
                        .await
                        .optional()
                        .map_err(query_error)?;
                    row.map(|(family, user)| {
                        let parse = |s: &str| {
                            Uuid::parse_str(s).map_err(|e| InfraError::Unexpected(e.into()))
                        };
                        Ok((parse(&family)?, UserId(parse(&user)?)))
                    })
                    .transpose()
                }

                async fn revoke_family(
                    &self,
                    family_id: Uuid,
                    now: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            diesel::update(
                                refresh_tokens::table
                                    .filter(refresh_tokens::family_id.eq(family_id.to_string()))
                                    .filter(refresh_tokens::revoked_at.is_null()),
                            )
                            .set(refresh_tokens::revoked_at.eq(Some(to_millis(now))))
                            .execute(conn)
                            .await?;
                            audit(conn, event).await
                        })
                        .await
                        .map_err(query_error)
                }

                async fn revoke_all(
                    &self,
                    user_id: UserId,
                    now: DateTime<Utc>,
                    event: Option<passcode_domain::AuditEvent>,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            diesel::update(
                                refresh_tokens::table
                                    .filter(refresh_tokens::user_id.eq(user_id.0.to_string()))
                                    .filter(refresh_tokens::revoked_at.is_null()),
                            )
                            .set(refresh_tokens::revoked_at.eq(Some(to_millis(now))))
                            .execute(conn)
                            .await?;
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

pub(crate) use refresh_token_store;

/// `RefreshTokenStore::rotate` as a transaction of several statements, each its own
/// round trip, as method `$method` (MariaDB's rotation; PostgreSQL's when its one
/// statement did not spend the token). SQLite's runs in one trip (`sqlite.rs`).
macro_rules! rotate_in_steps {
    ($store:ty, $method:ident) => {
        const _: () = {
            use self::dialect;
            use self::shared::audit;
            use diesel::prelude::*;
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use passcode_domain::InfraError;
            use passcode_domain::ports::Rotation;
            use $crate::cached::CachedExt as _;
            use $crate::error::query_error;
            use $crate::rows::{
                Rotate, SpentToken, Unspendable, account_as_signed_query, insert_successor_query,
                revoke_family_query, touch_session_query, unspendable, unspent_token_query,
            };
            use $crate::time::to_millis;

            impl $store {
                pub(crate) async fn $method(
                    &self,
                    rotate: Rotate<'_>,
                ) -> Result<Rotation, InfraError> {
                    let now_ms = to_millis(rotate.now);
                    let presented = rotate.presented.to_vec();
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            // The account first: as the successor was signed for, or nothing.
                            let account: Option<String> =
                                account_as_signed_query!(rotate.signed_for)
                                    .get_result(conn)
                                    .await
                                    .optional()?;
                            if account.is_none() {
                                return Ok(Rotation::AccountChanged);
                            }
                            // Spend it if it is live and its session has not reached its end:
                            // one statement, so one caller wins.
                            let spent = dialect::spend_token(
                                conn,
                                &presented,
                                now_ms,
                                rotate.successor_ids,
                            )
                            .await?;
                            if let Some((family, family_ends)) = spent {
                                insert_successor_query!(
                                    rotate.successor,
                                    &family,
                                    family_ends,
                                    now_ms
                                )
                                .execute(conn)
                                .await?;
                                touch_session_query!(&family, now_ms, rotate.successor)
                                    .cached()
                                    .execute(conn)
                                    .await?;
                                return Ok(Rotation::Rotated);
                            }
                            let row: Option<SpentToken> = unspent_token_query!(&presented)
                                .get_result(conn)
                                .await
                                .optional()?;
                            let family = match unspendable(row, now_ms, rotate.grace) {
                                Unspendable::Answer(rotation) => return Ok(rotation),
                                Unspendable::Reused { family } => family,
                            };
                            revoke_family_query!(family, now_ms)
                                .cached()
                                .execute(conn)
                                .await?;
                            audit(conn, rotate.reuse_audit).await?;
                            metrics::counter!("passcode_refresh_reuse_detected_total").increment(1);
                            Ok::<Rotation, diesel::result::Error>(Rotation::Reused)
                        })
                        .await
                        .map_err(query_error)
                }
            }
        };
    };
}

pub(crate) use rotate_in_steps;
