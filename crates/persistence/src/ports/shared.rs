//! Statements that several ports run inside their own transactions.

macro_rules! shared {
    () => {
        mod shared {
            use super::Conn;
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use $crate::cached::CachedExt as _;
            use $crate::outbox_rows::NewOutboxRow;
            use $crate::rows::OtpRow;
            use $crate::schema::{audit_events, otp_codes, outbox, rate_limits};

            /// Writes a code and the mail that carries it; runs inside the caller's
            /// transaction (both or neither). For `code_writes!`: SQLite and PostgreSQL
            /// write codes their own way, without it.
            #[allow(dead_code)]
            pub(super) async fn insert_code(
                conn: &mut Conn,
                code: &OtpRow,
                mail: &NewOutboxRow,
            ) -> Result<(), diesel::result::Error> {
                diesel::insert_into(otp_codes::table)
                    .values(code)
                    .cached()
                    .execute(conn)
                    .await?;
                queue(conn, mail).await
            }

            /// Queues a sealed mail; runs inside the caller's transaction.
            pub(super) async fn queue(
                conn: &mut Conn,
                mail: &NewOutboxRow,
            ) -> Result<(), diesel::result::Error> {
                diesel::insert_into(outbox::table)
                    .values(mail)
                    .cached()
                    .execute(conn)
                    .await?;
                Ok(())
            }

            /// Writes an audit event; runs inside the caller's transaction.
            pub(super) async fn audit(
                conn: &mut Conn,
                event: &passcode_domain::AuditEvent,
            ) -> Result<(), diesel::result::Error> {
                audit_row(conn, &$crate::rows::AuditRow::new(event)).await
            }

            /// Writes an audit event's row; runs inside the caller's transaction.
            pub(super) async fn audit_row(
                conn: &mut Conn,
                row: &$crate::rows::AuditRow,
            ) -> Result<(), diesel::result::Error> {
                diesel::insert_into(audit_events::table)
                    .values(row)
                    .cached()
                    .execute(conn)
                    .await?;
                Ok(())
            }

            /// Starts the session of its first refresh token, recording `event` with
            /// it; runs inside the caller's transaction. For `change_writes!`:
            /// PostgreSQL pipelines a spend's account change without it.
            #[allow(dead_code)]
            pub(super) async fn start_session(
                conn: &mut Conn,
                token: &passcode_domain::ports::NewRefreshToken,
                event: Option<&passcode_domain::AuditEvent>,
            ) -> Result<(), diesel::result::Error> {
                $crate::rows::new_session_query!(token)
                    .execute(conn)
                    .await?;
                if let Some(event) = event {
                    audit(conn, event).await?;
                }
                Ok(())
            }

            /// Sets account `user`'s password hash (and marks its address verified if
            /// `verify_email`, deleting the verification codes still waiting), refuses
            /// every token issued before `cutoff` and ends every session, records
            /// `event` and queues `notice` (`UserRepository::set_password`). Runs
            /// inside the caller's transaction; an unknown account changes nothing.
            #[allow(clippy::too_many_arguments)] // the account, the change, its event and notice
            pub(super) async fn set_password(
                conn: &mut Conn,
                user: &str,
                hash: &passcode_domain::PasswordHash,
                verify_email: bool,
                cutoff: i64,
                event: &passcode_domain::AuditEvent,
                notice: Option<&NewOutboxRow>,
            ) -> Result<(), diesel::result::Error> {
                use passcode_domain::OtpPurpose;
                audit(conn, event).await?;
                let updated =
                    $crate::rows::set_password_query!(user, hash.as_str(), verify_email, cutoff)
                        .cached()
                        .execute(conn)
                        .await?;
                if updated == 0 {
                    return Ok(());
                }
                // The cutoff refuses their tokens already; ended, they are
                // no longer listed as live either.
                $crate::rows::end_sessions_query!(user, "", cutoff)
                    .cached()
                    .execute(conn)
                    .await?;
                if verify_email {
                    // A code proved the mailbox: any registration still
                    // waiting for its code is void. The address is read after
                    // the update, which holds the row: it cannot change in
                    // between.
                    let email = || $crate::rows::registered_email!(user);
                    let purpose = OtpPurpose::VerifyEmail.as_str();
                    $crate::rows::expire_replaced_mail_query!(email(), purpose, "", cutoff)
                        .cached()
                        .execute(conn)
                        .await?;
                    $crate::rows::delete_replaced_codes_query!(email(), purpose, "")
                        .execute(conn)
                        .await?;
                }
                if let Some(row) = notice {
                    queue(conn, row).await?;
                }
                Ok(())
            }

            /// Moves account `change.user` to `change.new` (verified) if it still has
            /// `change.old`: every session but `change.keep_session` ended, the old
            /// address's codes deleted, `event` recorded and `notice` queued. Runs
            /// inside the caller's transaction; refused with
            /// `RollbackTransaction` if the account no longer has `change.old` or
            /// another account has `change.new`. For `change_writes!`, as
            /// `start_session`.
            #[allow(dead_code)]
            pub(super) async fn move_email(
                conn: &mut Conn,
                change: &passcode_domain::ports::EmailChange,
                now: i64,
                event: &passcode_domain::AuditEvent,
                notice: &NewOutboxRow,
            ) -> Result<(), diesel::result::Error> {
                use diesel::result::{DatabaseErrorKind, Error};
                let user = change.user.0.to_string();
                let moved = $crate::rows::move_email_query!(change, now)
                    .cached()
                    .execute(conn)
                    .await
                    .map_err(|e| match e {
                        // Another account took the address meanwhile.
                        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                            Error::RollbackTransaction
                        }
                        other => other,
                    })?;
                if moved == 0 {
                    return Err(Error::RollbackTransaction);
                }
                let keep = change.keep_session.to_string();
                $crate::rows::end_sessions_query!(&user, &keep, now)
                    .cached()
                    .execute(conn)
                    .await?;
                diesel::delete(otp_codes::table.filter(otp_codes::email.eq(change.old.as_str())))
                    .execute(conn)
                    .await?;
                audit(conn, event).await?;
                queue(conn, notice).await
            }

            /// Erases account `user` (of `address`) and everything personal of it:
            /// its sessions, codes, queued mail, the limit state keyed by the
            /// address; audit events keep their account id but lose the address.
            /// Then records `event` and queues `goodbye`. Runs inside the caller's
            /// transaction; refused with `RollbackTransaction` if there is no such
            /// account.
            pub(super) async fn erase(
                conn: &mut Conn,
                user: &str,
                address: &str,
                event: &passcode_domain::AuditEvent,
                goodbye: &NewOutboxRow,
            ) -> Result<(), diesel::result::Error> {
                let (account, sessions, codes, mail, events) =
                    $crate::rows::erase_queries!(user, address);
                if account.execute(conn).await? == 0 {
                    return Err(diesel::result::Error::RollbackTransaction);
                }
                sessions.execute(conn).await?;
                codes.execute(conn).await?;
                mail.execute(conn).await?;
                // Limit state keyed by the address: exact keys, and the keys per
                // (address, client), matched by prefix without LIKE (an address may
                // hold `_` or `%`).
                super::dialect::delete_address_limits(conn, address, user).await?;
                events.cached().execute(conn).await?;
                audit(conn, event).await?;
                queue(conn, goodbye).await
            }

            /// Marks the spend's code spent if it still may be; true if so. One
            /// conditional statement: the database serialises concurrent spenders on
            /// the row, and only one still finds it unspent.
            pub(super) async fn spend_code(
                conn: &mut Conn,
                spend: &passcode_domain::ports::Spend<'_>,
            ) -> Result<bool, diesel::result::Error> {
                let id = spend.id.to_string();
                $crate::rows::spend_code_query!(
                    &id,
                    spend.code_hash.as_bytes(),
                    $crate::time::to_millis(spend.now),
                    $crate::rows::attempts_limit(spend.max_attempts)
                )
                .cached()
                .execute(conn)
                .await
                .map(|spent| spent == 1)
            }

            /// A transaction that rolled back because what it was to do was refused
            /// (`RollbackTransaction`): `false`, nothing changed.
            pub(super) fn refused(e: diesel::result::Error) -> Result<bool, passcode_domain::InfraError> {
                match e {
                    diesel::result::Error::RollbackTransaction => Ok(false),
                    other => Err($crate::error::query_error(other)),
                }
            }

            /// Gives one event of each of `keys` back (`Throttle::release`), one
            /// statement a key in the order given, which is the order they were
            /// reserved in: a statement over all of them would lock their rows in the
            /// index's order, the other way round, and deadlock with concurrent
            /// reservations. Runs inside the caller's transaction.
            pub(super) async fn give_back(
                conn: &mut Conn,
                give_back: passcode_domain::ports::GiveBack<'_>,
            ) -> Result<(), diesel::result::Error> {
                let reserved_at = $crate::time::to_millis(give_back.reserved_at);
                for key in give_back.keys {
                    $crate::rows::release_query!(key, reserved_at)
                        .cached()
                        .execute(conn)
                        .await?;
                }
                Ok(())
            }

            /// Drops the waiting mail of the address's codes of `purpose` (but `keep`;
            /// it is never sent), then deletes those codes. Runs inside the caller's
            /// transaction. For `code_writes!`, as `insert_code`.
            #[allow(dead_code)]
            pub(super) async fn delete_codes(
                conn: &mut Conn,
                email: &str,
                purpose: &str,
                keep: Option<&str>,
                now: i64,
            ) -> Result<(), diesel::result::Error> {
                let keep = keep.unwrap_or("");
                $crate::rows::expire_replaced_mail_query!(email, purpose, keep, now)
                    .cached()
                    .execute(conn)
                    .await?;
                $crate::rows::delete_replaced_codes_query!(email, purpose, keep)
                    .execute(conn)
                    .await?;
                Ok(())
            }

            /// Counts one event for `key` if `limit` allows it (one conditional upsert);
            /// otherwise `Some(retry_after)` and nothing counted.
            pub(crate) async fn reserve(
                conn: &mut Conn,
                key: &str,
                limit: passcode_domain::ports::Limit,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<chrono::Duration>, diesel::result::Error> {
                let now_ms = $crate::time::to_millis(now);
                let (window_ended, most, cooled_down) = $crate::rows::acquire_bounds(limit, now_ms);
                let mut attempt = 0;
                let (window_start, count, last_at): (i64, i32, i64) = loop {
                    attempt += 1;
                    let counted = super::dialect::acquire(
                        conn,
                        key,
                        now_ms,
                        window_ended,
                        most,
                        cooled_down,
                    )
                    .await?;
                    if counted == 1 {
                        return Ok(None);
                    }
                    let refused_by = rate_limits::table
                        .find(key)
                        .select((
                            rate_limits::window_start,
                            rate_limits::count,
                            rate_limits::last_at,
                        ))
                        .get_result(conn)
                        .await
                        .optional()?;
                    match refused_by {
                        Some(row) => break row,
                        // MariaDB counts in several statements: the bucket can be
                        // erased (with its account) between them. It is free now.
                        None if attempt < 3 => continue,
                        None => return Err(diesel::result::Error::NotFound),
                    }
                };
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
        }
    };
}

pub(crate) use shared;
