//! The port implementations, written once in Diesel's query builder and instantiated
//! for each backend's store (the SQL is the same; the connection types differ).
//! A store provides `async fn conn(&self) -> Result<impl DerefMut<Target = Conn>, InfraError>`
//! for reads and `writer()`, of the same type, for anything that writes: on SQLite,
//! where the database has one writer at a time, writers take turns in memory rather
//! than in SQLite's busy handler, which polls with sleeps of up to 100 ms.

macro_rules! impl_ports {
    ($store:ty, $claim_sql:expr) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use diesel::prelude::*;
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use passcode_domain::otp::{NewOtp, StoredOtp};
            use passcode_domain::ports::{
                Admission, CreateUserError, HealthCheck, Limit, Mail, NewRefreshToken, OtpStore,
                Outbox, OutboxEntry, OutboxStatus, QueuedMail, RefreshTokenStore, Rotation,
                Throttle, TokenIds, Tries, UserRepository,
            };
            use passcode_domain::{
                CodeHash, EmailAddress, InfraError, NewUser, OtpPurpose, User, UserId,
            };
            use uuid::Uuid;

            use $crate::error::{create_user_error, query_error};
            use $crate::outbox_rows::{ClaimedRow, EntryRow, NewOutboxRow};
            use $crate::rows::{OtpRow, UserRow, attempts_limit};
            use $crate::schema::{
                audit_events, otp_codes, outbox, rate_limits, refresh_tokens, sessions, users,
            };
            use $crate::time::from_millis;
            use $crate::time::to_millis;

            #[async_trait]
            impl UserRepository for $store {
                async fn create(&self, user: &NewUser) -> Result<User, CreateUserError> {
                    let mut conn = self.writer().await?;
                    let stored = diesel::insert_into(users::table)
                        .values(&UserRow::new(user))
                        .returning(UserRow::as_returning())
                        .get_result(&mut *conn)
                        .await
                        .map_err(create_user_error)?;
                    Ok(stored.into_domain()?)
                }

                async fn find_by_email(
                    &self,
                    email: &EmailAddress,
                ) -> Result<Option<User>, InfraError> {
                    let mut conn = self.conn().await?;
                    users::table
                        .filter(users::email.eq(email.as_str()))
                        .select(UserRow::as_select())
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(query_error)?
                        .map(UserRow::into_domain)
                        .transpose()
                }

                async fn find_by_id(&self, id: UserId) -> Result<Option<User>, InfraError> {
                    let mut conn = self.conn().await?;
                    users::table
                        .find(id.0.to_string())
                        .select(UserRow::as_select())
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(query_error)?
                        .map(UserRow::into_domain)
                        .transpose()
                }

                async fn mark_email_verified(
                    &self,
                    id: UserId,
                    at: DateTime<Utc>,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    diesel::update(users::table.find(id.0.to_string()))
                        .set((
                            users::email_verified.eq(true),
                            users::updated_at.eq(to_millis(at)),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    Ok(())
                }

                async fn set_active(
                    &self,
                    id: UserId,
                    active: bool,
                    at: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            diesel::update(users::table.find(id.0.to_string()))
                                .set((
                                    users::is_active.eq(active),
                                    users::updated_at.eq(to_millis(at)),
                                ))
                                .execute(conn)
                                .await?;
                            audit(conn, event).await
                        })
                        .await
                        .map_err(query_error)
                }

                async fn change_email(
                    &self,
                    change: &passcode_domain::ports::EmailChange,
                    now: DateTime<Utc>,
                    notice: &Mail,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<bool, InfraError> {
                    let now_ms = to_millis(now);
                    let user = change.user.0.to_string();
                    let (old, new) = (change.old.as_str().to_owned(), change.new.as_str().to_owned());
                    let keep = change.keep_session.to_string();
                    let notice_row = NewOutboxRow::new(notice, now, None, &self.mail_key, None)?;
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            let moved = diesel::update(
                                users::table.find(&user).filter(users::email.eq(&old)),
                            )
                            .set((
                                users::email.eq(&new),
                                users::email_verified.eq(true),
                                users::updated_at.eq(now_ms),
                            ))
                            .execute(conn)
                            .await?;
                            if moved == 0 {
                                return Err(diesel::result::Error::RollbackTransaction);
                            }
                            diesel::update(
                                refresh_tokens::table
                                    .filter(refresh_tokens::user_id.eq(&user))
                                    .filter(refresh_tokens::family_id.ne(&keep))
                                    .filter(refresh_tokens::revoked_at.is_null()),
                            )
                            .set(refresh_tokens::revoked_at.eq(Some(now_ms)))
                            .execute(conn)
                            .await?;
                            diesel::delete(otp_codes::table.filter(otp_codes::email.eq(&old)))
                                .execute(conn)
                                .await?;
                            audit(conn, event).await?;
                            diesel::insert_into(outbox::table)
                                .values(&notice_row)
                                .execute(conn)
                                .await?;
                            Ok::<bool, diesel::result::Error>(true)
                        })
                        .await
                        .or_else(|e| match e {
                            diesel::result::Error::RollbackTransaction => Ok(false),
                            // Another account took the address meanwhile.
                            diesel::result::Error::DatabaseError(
                                diesel::result::DatabaseErrorKind::UniqueViolation,
                                _,
                            ) => Ok(false),
                            other => Err(query_error(other)),
                        })
                }

                async fn delete(
                    &self,
                    id: UserId,
                    email: &EmailAddress,
                    goodbye: &Mail,
                    now: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<bool, InfraError> {
                    use diesel::sql_types::Text;
                    let address = email.as_str().to_owned();
                    let user = id.0.to_string();
                    let goodbye_row = NewOutboxRow::new(goodbye, now, None, &self.mail_key, None)?;
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            let removed = diesel::delete(users::table.find(&user))
                                .execute(conn)
                                .await?;
                            if removed == 0 {
                                return Err(diesel::result::Error::RollbackTransaction);
                            }
                            diesel::delete(
                                refresh_tokens::table.filter(refresh_tokens::user_id.eq(&user)),
                            )
                            .execute(conn)
                            .await?;
                            diesel::delete(sessions::table.filter(sessions::user_id.eq(&user)))
                                .execute(conn)
                                .await?;
                            diesel::delete(otp_codes::table.filter(otp_codes::email.eq(&address)))
                                .execute(conn)
                                .await?;
                            diesel::delete(outbox::table.filter(outbox::recipient.eq(&address)))
                                .execute(conn)
                                .await?;
                            // Limit state keyed by the address: exact keys, and the keys
                            // per (address, client), matched by prefix without LIKE (an
                            // address may hold `_` or `%`).
                            diesel::sql_query($crate::rows::DELETE_ADDRESS_LIMITS_SQL)
                                .bind::<Text, _>(&address)
                                .bind::<Text, _>(format!("guess:{address}:"))
                                .bind::<Text, _>(format!("login:{address}:"))
                                .bind::<Text, _>(format!("password-check:{user}"))
                                .execute(conn)
                                .await?;
                            diesel::update(
                                audit_events::table.filter(audit_events::email.eq(&address)),
                            )
                            .set(audit_events::email.eq(None::<String>))
                            .execute(conn)
                            .await?;
                            audit(conn, event).await?;
                            diesel::insert_into(outbox::table)
                                .values(&goodbye_row)
                                .execute(conn)
                                .await?;
                            Ok::<bool, diesel::result::Error>(true)
                        })
                        .await
                        .or_else(|e| match e {
                            diesel::result::Error::RollbackTransaction => Ok(false),
                            other => Err(query_error(other)),
                        })
                }

                async fn set_password(
                    &self,
                    id: UserId,
                    hash: &passcode_domain::PasswordHash,
                    verify_email: bool,
                    at: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<(), InfraError> {
                    let cutoff = to_millis(at);
                    let mut conn = self.writer().await?;
                    let target = users::table.find(id.0.to_string());
                    let changes = (
                        users::password_hash.eq(hash.as_str()),
                        users::tokens_valid_after.eq(cutoff),
                        users::updated_at.eq(to_millis(at)),
                    );
                    if !verify_email {
                        return (*conn)
                            .transaction(async |conn| {
                                diesel::update(target).set(changes).execute(conn).await?;
                                audit(conn, event).await
                            })
                            .await
                            .map_err(query_error);
                    }
                    // A reset code proved the mailbox: the address is verified, and any
                    // registration still waiting for its code is void.
                    (*conn)
                        .transaction(async |conn| {
                            audit(conn, event).await?;
                            let email: Option<String> = diesel::update(target)
                                .set((changes, users::email_verified.eq(true)))
                                .returning(users::email)
                                .get_result(conn)
                                .await
                                .optional()?;
                            if let Some(email) = email {
                                delete_codes(
                                    conn,
                                    &email,
                                    OtpPurpose::VerifyEmail.as_str(),
                                    None,
                                    cutoff,
                                )
                                .await?;
                            }
                            Ok::<(), diesel::result::Error>(())
                        })
                        .await
                        .map_err(query_error)
                }
            }

            /// Writes a code and the mail that carries it; runs inside the caller's
            /// transaction (both or neither).
            async fn insert_code(
                conn: &mut Conn,
                code: &OtpRow,
                mail: &NewOutboxRow,
            ) -> Result<(), diesel::result::Error> {
                diesel::insert_into(otp_codes::table)
                    .values(code)
                    .execute(conn)
                    .await?;
                diesel::insert_into(outbox::table)
                    .values(mail)
                    .execute(conn)
                    .await?;
                Ok(())
            }

            /// Writes an audit event; runs inside the caller's transaction.
            async fn audit(
                conn: &mut Conn,
                event: &passcode_domain::AuditEvent,
            ) -> Result<(), diesel::result::Error> {
                diesel::insert_into(audit_events::table)
                    .values(&$crate::rows::AuditRow::new(event))
                    .execute(conn)
                    .await?;
                Ok(())
            }

            /// Drops the waiting mail of the address's codes of `purpose` (but `keep`;
            /// it is never sent), then deletes those codes. Runs inside the caller's transaction.
            async fn delete_codes(
                conn: &mut Conn,
                email: &str,
                purpose: &str,
                keep: Option<&str>,
                now: i64,
            ) -> Result<(), diesel::result::Error>
            {
                let doomed = otp_codes::table
                    .filter(otp_codes::email.eq(email))
                    .filter(otp_codes::purpose.eq(purpose))
                    .filter(otp_codes::id.ne(keep.unwrap_or("")))
                    .select(otp_codes::id);
                diesel::update(
                    outbox::table
                        .filter(outbox::status.eq(OutboxStatus::Queued.as_str()))
                        .filter(outbox::otp_id.eq_any(doomed.clone().select(otp_codes::id.nullable()))),
                )
                .set((
                    outbox::status.eq(OutboxStatus::Expired.as_str()),
                    outbox::payload.eq(None::<String>),
                    outbox::last_error.eq(Some("its code was replaced")),
                    outbox::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
                diesel::delete(
                    otp_codes::table
                        .filter(otp_codes::email.eq(email))
                        .filter(otp_codes::purpose.eq(purpose))
                        .filter(otp_codes::id.ne(keep.unwrap_or(""))),
                )
                .execute(conn)
                .await?;
                Ok(())
            }

            #[async_trait]
            impl OtpStore for $store {
                async fn replace(&self, otp: &NewOtp, mail: &Mail) -> Result<(), InfraError> {
                    let code_row = OtpRow::new(otp);
                    let mail_row = NewOutboxRow::new(
                        mail,
                        otp.created_at,
                        Some(otp.expires_at),
                        &self.mail_key,
                        Some(otp.id),
                    )?;
                    let now = to_millis(otp.created_at);
                    let mut conn = self.writer().await?;
                    // The code and its mail: both or neither; the codes it replaces and
                    // their waiting mail go in the same step.
                    (*conn)
                        .transaction(async |conn| {
                            delete_codes(conn, &code_row.email, &code_row.purpose, None, now)
                                .await?;
                            insert_code(conn, &code_row, &mail_row).await?;
                            Ok::<(), diesel::result::Error>(())
                        })
                        .await
                        .map_err(query_error)
                }

                async fn add(
                    &self,
                    otp: &NewOtp,
                    mail: &Mail,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<(), InfraError> {
                    let code_row = OtpRow::new(otp);
                    let mail_row = NewOutboxRow::new(
                        mail,
                        otp.created_at,
                        Some(otp.expires_at),
                        &self.mail_key,
                        Some(otp.id),
                    )?;
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            insert_code(conn, &code_row, &mail_row).await?;
                            audit(conn, event).await?;
                            Ok::<(), diesel::result::Error>(())
                        })
                        .await
                        .map_err(query_error)
                }

                async fn decoy(
                    &self,
                    email: &EmailAddress,
                    purpose: OtpPurpose,
                    now: DateTime<Utc>,
                ) -> Result<(), InfraError> {
                    // Its own purpose, already spent, with a random hash: nothing reads
                    // it as a code, nothing can match it, and the purge removes it.
                    let id = Uuid::new_v4();
                    let row = OtpRow {
                        id: id.to_string(),
                        email: email.as_str().to_owned(),
                        purpose: format!("decoy_{}", purpose.as_str()),
                        code_hash: Uuid::new_v4().as_bytes().repeat(2),
                        attempts: 0,
                        consumed_at: Some(to_millis(now)),
                        created_at: to_millis(now),
                        expires_at: to_millis(now),
                        full_name: None,
                        password_hash: None,
                        user_id: None,
                    };
                    let mail_row = NewOutboxRow::decoy(email, now, id);
                    let now = to_millis(now);
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            delete_codes(conn, &row.email, &row.purpose, None, now).await?;
                            insert_code(conn, &row, &mail_row).await?;
                            Ok::<(), diesel::result::Error>(())
                        })
                        .await
                        .map_err(query_error)
                }

                async fn find(
                    &self,
                    email: &EmailAddress,
                    purpose: OtpPurpose,
                ) -> Result<Option<StoredOtp>, InfraError> {
                    let mut conn = self.conn().await?;
                    otp_codes::table
                        .filter(otp_codes::email.eq(email.as_str()))
                        .filter(otp_codes::purpose.eq(purpose.as_str()))
                        .order(otp_codes::created_at.desc())
                        .select(OtpRow::as_select())
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(query_error)?
                        .map(OtpRow::into_domain)
                        .transpose()
                }

                async fn count_try(
                    &self,
                    email: &EmailAddress,
                    purpose: OtpPurpose,
                    now: DateTime<Utc>,
                    max_attempts: u32,
                    budgets: &[(String, Limit)],
                ) -> Result<Tries, InfraError> {
                    // The hot path of every guess: each backend runs it its own fastest
                    // way (sqlite.rs: one trip to the blocking thread; postgres.rs:
                    // pipelined).
                    self.count_try_tx(email, purpose, now, max_attempts, budgets)
                        .await
                }

                async fn consume(
                    &self,
                    id: Uuid,
                    code_hash: &CodeHash,
                    now: DateTime<Utc>,
                    max_attempts: u32,
                ) -> Result<bool, InfraError> {
                    let mut conn = self.writer().await?;
                    let updated = spend(&mut *conn, id, code_hash, now, max_attempts)
                        .await
                        .map_err(query_error)?;
                    Ok(updated.is_some())
                }

                async fn complete_registration(
                    &self,
                    id: Uuid,
                    code_hash: &CodeHash,
                    user: UserId,
                    registration: &passcode_domain::Registration,
                    now: DateTime<Utc>,
                    max_attempts: u32,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<bool, InfraError> {
                    let now_ms = to_millis(now);
                    let keep = id.to_string();
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            let Some(email) =
                                spend(conn, id, code_hash, now, max_attempts).await?
                            else {
                                return Ok(false);
                            };
                            let applied = diesel::update(
                                users::table
                                    .find(user.0.to_string())
                                    .filter(users::email.eq(&email))
                                    .filter(users::is_active.eq(true)),
                            )
                            .set((
                                users::full_name.eq(registration.full_name.as_str()),
                                users::password_hash.eq(registration.password_hash.as_str()),
                                users::email_verified.eq(true),
                                users::updated_at.eq(now_ms),
                            ))
                            .execute(conn)
                            .await?;
                            if applied == 0 {
                                // Deactivated (or gone) meanwhile: the code stays unspent.
                                return Err(diesel::result::Error::RollbackTransaction);
                            }
                            delete_codes(
                                conn,
                                &email,
                                OtpPurpose::VerifyEmail.as_str(),
                                Some(&keep),
                                now_ms,
                            )
                            .await?;
                            audit(conn, event).await?;
                            Ok::<bool, diesel::result::Error>(true)
                        })
                        .await
                        .or_else(|e| match e {
                            diesel::result::Error::RollbackTransaction => Ok(false),
                            other => Err(query_error(other)),
                        })
                }
            }

            /// Marks code `id` spent if it still may be; returns its address if so.
            /// One conditional statement: the database serialises concurrent spenders
            /// on the row, and only one still finds it unspent.
            async fn spend(
                conn: &mut Conn,
                id: Uuid,
                code_hash: &CodeHash,
                now: DateTime<Utc>,
                max_attempts: u32,
            ) -> Result<Option<String>, diesel::result::Error>
            {
                diesel::update(
                    otp_codes::table
                        .filter(otp_codes::id.eq(id.to_string()))
                        .filter(otp_codes::code_hash.eq(code_hash.as_bytes()))
                        .filter(otp_codes::consumed_at.is_null())
                        .filter(otp_codes::expires_at.gt(to_millis(now)))
                        .filter(otp_codes::attempts.le(attempts_limit(max_attempts))),
                )
                .set(otp_codes::consumed_at.eq(Some(to_millis(now))))
                .returning(otp_codes::email)
                .get_result(conn)
                .await
                .optional()
            }

            /// Counts one event for `key` if `limit` allows it (one conditional upsert);
            /// otherwise `Some(retry_after)` and nothing counted.
            async fn reserve(
                conn: &mut Conn,
                key: &str,
                limit: Limit,
                now: DateTime<Utc>,
            ) -> Result<Option<chrono::Duration>, diesel::result::Error> {
                let now_ms = to_millis(now);
                let window_ended = now_ms - limit.window.num_milliseconds();
                // No cooldown: no condition on last_at (requests' clocks need not arrive in order).
                let cooled_down = if limit.cooldown.is_zero() {
                    i64::MAX
                } else {
                    now_ms - limit.cooldown.num_milliseconds()
                };
                let counted = $crate::rows::acquire_query!(
                    key,
                    now_ms,
                    window_ended,
                    attempts_limit(limit.limit),
                    cooled_down
                )
                .execute(&mut *conn)
                .await?;
                if counted == 1 {
                    return Ok(None);
                }
                let (window_start, count, last_at): (i64, i32, i64) = rate_limits::table
                    .find(key)
                    .select((
                        rate_limits::window_start,
                        rate_limits::count,
                        rate_limits::last_at,
                    ))
                    .first(&mut *conn)
                    .await?;
                metrics::counter!(
                    "passcode_throttle_denials_total",
                    "limit" => $crate::rows::limit_name(key)
                )
                .increment(1);
                Ok(Some($crate::rows::retry_after(
                    limit,
                    now_ms,
                    window_start,
                    count,
                    last_at,
                )))
            }

            #[async_trait]
            impl Throttle for $store {
                async fn acquire(
                    &self,
                    key: &str,
                    limit: Limit,
                    now: DateTime<Utc>,
                ) -> Result<Admission, InfraError> {
                    let mut conn = self.writer().await?;
                    Ok(match reserve(&mut *conn, key, limit, now)
                        .await
                        .map_err(query_error)?
                    {
                        None => Admission::Allowed,
                        Some(retry_after) => Admission::Denied { retry_after },
                    })
                }

                async fn release(&self, key: &str) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    diesel::update(
                        rate_limits::table
                            .find(key)
                            .filter(rate_limits::count.gt(0)),
                    )
                    .set(rate_limits::count.eq(rate_limits::count - 1))
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    Ok(())
                }

                async fn purge(
                    &self,
                    now: DateTime<Utc>,
                    retention: chrono::Duration,
                ) -> Result<u64, InfraError> {
                    let cutoff = to_millis(now - retention);
                    let mut conn = self.writer().await?;
                    let limits = diesel::delete(
                        rate_limits::table
                            .filter(rate_limits::last_at.lt(cutoff))
                            .filter(rate_limits::window_start.lt(cutoff)),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    let codes =
                        diesel::delete(otp_codes::table.filter(otp_codes::expires_at.lt(cutoff)))
                            .execute(&mut *conn)
                            .await
                            .map_err(query_error)?;
                    let mail = diesel::delete(
                        outbox::table
                            .filter(outbox::status.eq_any(["sent", "expired"]))
                            .filter(outbox::updated_at.lt(cutoff)),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    let tokens = diesel::delete(
                        refresh_tokens::table.filter(refresh_tokens::expires_at.lt(cutoff)),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    // Sessions whose every token is gone.
                    let any_token = refresh_tokens::table
                        .filter(refresh_tokens::family_id.eq(sessions::family_id));
                    let ended = diesel::delete(
                        sessions::table.filter(diesel::dsl::not(diesel::dsl::exists(any_token))),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    Ok(u64::try_from(limits + codes + mail + tokens + ended).unwrap_or(0))
                }
            }

            #[async_trait]
            impl Outbox for $store {
                async fn stats(&self) -> Result<passcode_domain::ports::OutboxStats, InfraError> {
                    use diesel::dsl::{count_star, min};
                    let mut conn = self.conn().await?;
                    let (unsent, oldest): (i64, Option<i64>) = outbox::table
                        .filter(outbox::status.eq_any(["queued", "sending"]))
                        .select((count_star(), min(outbox::created_at)))
                        .first(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    let failed: i64 = outbox::table
                        .filter(outbox::status.eq("failed"))
                        .select(count_star())
                        .first(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    Ok(passcode_domain::ports::OutboxStats {
                        unsent: u64::try_from(unsent).unwrap_or(0),
                        oldest_unsent_at: oldest.map(from_millis),
                        failed: u64::try_from(failed).unwrap_or(0),
                    })
                }

                async fn enqueue(
                    &self,
                    mail: &Mail,
                    now: DateTime<Utc>,
                    expires_at: Option<DateTime<Utc>>,
                ) -> Result<(), InfraError> {
                    let row = NewOutboxRow::new(mail, now, expires_at, &self.mail_key, None)?;
                    let mut conn = self.writer().await?;
                    diesel::insert_into(outbox::table)
                        .values(&row)
                        .execute(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    Ok(())
                }

                async fn claim(
                    &self,
                    now: DateTime<Utc>,
                    lease: chrono::Duration,
                    max: u32,
                ) -> Result<Vec<QueuedMail>, InfraError> {
                    use diesel::sql_types::{BigInt, Integer};
                    let mut conn = self.writer().await?;
                    let rows: Vec<ClaimedRow> = diesel::sql_query($claim_sql)
                        .bind::<BigInt, _>(to_millis(now + lease))
                        .bind::<BigInt, _>(to_millis(now))
                        .bind::<Integer, _>(attempts_limit(max))
                        .load(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    let mut claimed = Vec::with_capacity(rows.len());
                    for row in rows {
                        let id = row.id().to_owned();
                        match row.into_domain(&self.mail_key) {
                            Ok(mail) => claimed.push(mail),
                            // Unreadable now means unreadable for good: record why and
                            // go on with the others instead of failing every claim.
                            Err(why) => {
                                tracing::error!(message_id = %id, "{why}");
                                diesel::sql_query($crate::outbox_rows::FINISH_SQL)
                                    .bind::<diesel::sql_types::Text, _>(OutboxStatus::Failed.as_str())
                                    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(Some(why))
                                    .bind::<BigInt, _>(to_millis(now))
                                    .bind::<diesel::sql_types::Text, _>(id)
                                    .execute(&mut *conn)
                                    .await
                                    .map_err(query_error)?;
                            }
                        }
                    }
                    Ok(claimed)
                }

                async fn mark_sent(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), InfraError> {
                    self.finish(id, OutboxStatus::Sent, None, now).await
                }

                async fn retry_later(
                    &self,
                    id: Uuid,
                    next_attempt_at: DateTime<Utc>,
                    error: &str,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    diesel::update(outbox::table.find(id.to_string()))
                        .set((
                            outbox::status.eq(OutboxStatus::Queued.as_str()),
                            outbox::next_attempt_at.eq(to_millis(next_attempt_at)),
                            outbox::last_error.eq(Some(error)),
                            outbox::lease_until.eq(None::<i64>),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    Ok(())
                }

                async fn finish(
                    &self,
                    id: Uuid,
                    status: OutboxStatus,
                    error: Option<String>,
                    now: DateTime<Utc>,
                ) -> Result<(), InfraError> {
                    use diesel::sql_types::{BigInt, Nullable, Text};
                    let mut conn = self.writer().await?;
                    diesel::sql_query($crate::outbox_rows::FINISH_SQL)
                        .bind::<Text, _>(status.as_str())
                        .bind::<Nullable<Text>, _>(error)
                        .bind::<BigInt, _>(to_millis(now))
                        .bind::<Text, _>(id.to_string())
                        .execute(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    Ok(())
                }

                async fn pending(&self, limit: u32) -> Result<Vec<OutboxEntry>, InfraError> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<EntryRow> = outbox::table
                        .filter(outbox::status.eq_any(["queued", "sending", "failed"]))
                        .order(outbox::created_at.asc())
                        .limit(i64::from(limit))
                        .select(EntryRow::as_select())
                        .load(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    rows.into_iter().map(EntryRow::into_domain).collect()
                }

                async fn retry_failed(&self, now: DateTime<Utc>) -> Result<u64, InfraError> {
                    let mut conn = self.writer().await?;
                    let requeued = diesel::update(
                        outbox::table
                            .filter(outbox::status.eq(OutboxStatus::Failed.as_str()))
                            .filter(outbox::payload.is_not_null()),
                    )
                    .set((
                        outbox::status.eq(OutboxStatus::Queued.as_str()),
                        outbox::attempts.eq(0),
                        outbox::next_attempt_at.eq(to_millis(now)),
                    ))
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    Ok(u64::try_from(requeued).unwrap_or(0))
                }
            }

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
                    reuse_audit: &passcode_domain::AuditEvent,
                ) -> Result<Rotation, InfraError> {
                    type Row = (
                        String,
                        Option<i64>,
                        Option<i64>,
                        Option<String>,
                        Option<String>,
                        Option<i64>,
                    );
                    let now_ms = to_millis(now);
                    let presented = presented.to_vec();
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            // Spend it if it is live and its session has not reached its end:
                            // one statement, so one caller wins.
                            let spent: Option<(String, Option<i64>)> = diesel::update(
                                refresh_tokens::table
                                    .find(&presented)
                                    .filter(refresh_tokens::spent_at.is_null())
                                    .filter(refresh_tokens::revoked_at.is_null())
                                    .filter(refresh_tokens::expires_at.gt(now_ms))
                                    .filter(
                                        refresh_tokens::family_expires_at
                                            .is_null()
                                            .or(refresh_tokens::family_expires_at.gt(now_ms)),
                                    ),
                            )
                            .set((
                                refresh_tokens::spent_at.eq(Some(now_ms)),
                                refresh_tokens::successor_access_jti
                                    .eq(Some(&successor_ids.access_jti)),
                                refresh_tokens::successor_refresh_jti
                                    .eq(Some(&successor_ids.refresh_jti)),
                                refresh_tokens::successor_issued_at
                                    .eq(Some(to_millis(successor_ids.issued_at))),
                            ))
                            .returning((
                                refresh_tokens::family_id,
                                refresh_tokens::family_expires_at,
                            ))
                            .get_result(conn)
                            .await
                            .optional()?;
                            if let Some((family, family_ends)) = spent {
                                // The successor keeps the session's end.
                                let expires = to_millis(successor.expires_at);
                                diesel::insert_into(refresh_tokens::table)
                                    .values((
                                        refresh_tokens::token_hash.eq(&successor.token_hash),
                                        refresh_tokens::family_id.eq(&family),
                                        refresh_tokens::user_id.eq(successor.user_id.0.to_string()),
                                        refresh_tokens::expires_at
                                            .eq(family_ends.map_or(expires, |end| expires.min(end))),
                                        refresh_tokens::created_at.eq(now_ms),
                                        refresh_tokens::family_expires_at.eq(family_ends),
                                    ))
                                    .execute(conn)
                                    .await?;
                                diesel::update(sessions::table.find(&family))
                                    .set((
                                        sessions::last_used_at.eq(now_ms),
                                        sessions::last_client.eq(&successor.origin.client),
                                        sessions::last_user_agent
                                            .eq(&successor.origin.user_agent),
                                    ))
                                    .execute(conn)
                                    .await?;
                                return Ok(Rotation::Rotated);
                            }
                            let row: Option<Row> = refresh_tokens::table
                                .find(&presented)
                                .select((
                                    refresh_tokens::family_id,
                                    refresh_tokens::spent_at,
                                    refresh_tokens::revoked_at,
                                    refresh_tokens::successor_access_jti,
                                    refresh_tokens::successor_refresh_jti,
                                    refresh_tokens::successor_issued_at,
                                ))
                                .first(conn)
                                .await
                                .optional()?;
                            let Some((family, Some(spent_at), None, access, refresh, issued)) = row
                            else {
                                // Unknown, revoked, or expired unspent.
                                return Ok(Rotation::Refused);
                            };
                            if now_ms - spent_at <= grace.num_milliseconds()
                                && let (Some(access_jti), Some(refresh_jti), Some(issued)) =
                                    (access, refresh, issued)
                            {
                                let ids = TokenIds {
                                    // A family id that is not a UUID was never written.
                                    session_id: Uuid::parse_str(&family).unwrap_or(Uuid::nil()),
                                    access_jti,
                                    refresh_jti,
                                    issued_at: from_millis(issued),
                                };
                                return Ok(Rotation::Replayed { ids });
                            }
                            diesel::update(
                                refresh_tokens::table
                                    .filter(refresh_tokens::family_id.eq(family))
                                    .filter(refresh_tokens::revoked_at.is_null()),
                            )
                            .set(refresh_tokens::revoked_at.eq(Some(now_ms)))
                            .execute(conn)
                            .await?;
                            audit(conn, reuse_audit).await?;
                            metrics::counter!("passcode_refresh_reuse_detected_total")
                                .increment(1);
                            Ok::<Rotation, diesel::result::Error>(Rotation::Reused)
                        })
                        .await
                        .map_err(query_error)
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
                        .map(|(id, created_at, created_client, created_user_agent, last_used_at, last_client, last_user_agent)| {
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
                        })
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
                        .first(&mut *conn)
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

            #[async_trait]
            impl passcode_domain::ports::AuditLog for $store {
                async fn record(
                    &self,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    audit(&mut conn, event).await.map_err(query_error)
                }

                async fn list(
                    &self,
                    query: &passcode_domain::AuditQuery,
                ) -> Result<Vec<passcode_domain::AuditEvent>, InfraError> {
                    use $crate::rows::AuditRow;
                    let mut conn = self.conn().await?;
                    let mut select = audit_events::table
                        .select(AuditRow::as_select())
                        .order(audit_events::at.desc())
                        .limit(i64::from(query.limit.max(1)))
                        .into_boxed();
                    if let Some(email) = &query.email {
                        select = select.filter(audit_events::email.eq(email.as_str().to_owned()));
                    }
                    if let Some(since) = query.since {
                        select = select.filter(audit_events::at.ge(to_millis(since)));
                    }
                    let rows: Vec<AuditRow> = select.load(&mut *conn).await.map_err(query_error)?;
                    rows.into_iter().map(AuditRow::into_domain).collect()
                }

                async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, InfraError> {
                    let mut conn = self.writer().await?;
                    let removed = diesel::delete(
                        audit_events::table.filter(audit_events::at.lt(to_millis(before))),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    Ok(u64::try_from(removed).unwrap_or(0))
                }
            }

            #[async_trait]
            impl HealthCheck for $store {
                async fn check(&self) -> Result<(), InfraError> {
                    let mut conn = self.conn().await?;
                    diesel::sql_query("SELECT 1")
                        .execute(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_ports;
