//! `Outbox`: mail waiting to be sent. Claiming differs by backend (`dialect::claim`:
//! each backend's way to lock rows for one worker).

macro_rules! outbox {
    // `$ids_in_one_bind`: the backend binds an `eq_any` list as one array (PostgreSQL's
    // `= ANY($1)`), so a batch's statement has one shape whatever its length.
    ($store:ty, $ids_in_one_bind:literal) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use passcode_domain::InfraError;
            use passcode_domain::ports::{Mail, Outbox, OutboxEntry, OutboxStatus, QueuedMail};
            use uuid::Uuid;
            use $crate::cached::CachedExt as _;
            use $crate::error::query_error;
            use $crate::outbox_rows::{ClaimedRow, EntryRow, NewOutboxRow};
            use $crate::rows::attempts_limit;
            use $crate::schema::outbox;
            use $crate::time::from_millis;
            use $crate::time::to_millis;

            /// Ends messages: erases their bodies, except that of a failed message
            /// without a code (kept so that `passcode mail queue --retry` can send it
            /// again). Kept prepared (`.cached()`): the ids are one bind, or an `IN`
            /// list padded to a few shapes.
            async fn finish_rows(
                conn: &mut Conn,
                ids: &[String],
                status: OutboxStatus,
                error: Option<String>,
                now: DateTime<Utc>,
            ) -> Result<usize, diesel::result::Error> {
                // Copied only to be padded: not where the ids are one bind, nor for a
                // batch of one (the usual one when mail does not wait).
                let ids: std::borrow::Cow<'_, [String]> =
                    if $ids_in_one_bind || ids.len().is_power_of_two() {
                        std::borrow::Cow::Borrowed(ids)
                    } else {
                        let mut padded = ids.to_vec();
                        $crate::rows::pad_to_power_of_two(&mut padded);
                        std::borrow::Cow::Owned(padded)
                    };
                let rows = outbox::table.filter(outbox::id.eq_any(ids.as_ref()));
                let ended = (
                    outbox::status.eq(status.as_str()),
                    outbox::last_error.eq(error),
                    outbox::lease_until.eq(None::<i64>),
                    outbox::updated_at.eq(to_millis(now)),
                );
                if status == OutboxStatus::Failed {
                    let kept = diesel::dsl::case_when(outbox::kind.ne("code"), outbox::payload)
                        .otherwise(
                            None::<String>
                                .into_sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>(),
                        );
                    diesel::update(rows)
                        .set((ended, outbox::payload.eq(kept)))
                        .cached()
                        .execute(conn)
                        .await
                } else {
                    diesel::update(rows)
                        .set((ended, outbox::payload.eq(None::<String>)))
                        .cached()
                        .execute(conn)
                        .await
                }
            }

            #[async_trait]
            impl Outbox for $store {
                async fn stats(&self) -> Result<passcode_domain::ports::OutboxStats, InfraError> {
                    use diesel::dsl::{count_star, min};
                    let mut conn = self.conn().await?;
                    // Kept prepared: Diesel prepares an `IN` list anew at every call
                    // (every `/metrics` scrape), on MariaDB a round trip of its own.
                    let (unsent, oldest): (i64, Option<i64>) = outbox::table
                        .filter(outbox::status.eq_any(["queued", "sending"]))
                        .select((count_star(), min(outbox::created_at)))
                        .cached()
                        .get_result(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    let failed: i64 = outbox::table
                        .filter(outbox::status.eq("failed"))
                        .select(count_star())
                        .get_result(&mut *conn)
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
                    // Kept prepared: Diesel would prepare it again on every call (its
                    // `None`s make it a `DEFAULT` insert), a round trip of its own where
                    // a registration of a verified address must take no more than a
                    // new address's.
                    diesel::insert_into(outbox::table)
                        .values(&row)
                        .cached()
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
                    let mut conn = self.writer().await?;
                    let rows: Vec<ClaimedRow> = self::dialect::claim(
                        &mut *conn,
                        to_millis(now + lease),
                        to_millis(now),
                        attempts_limit(max),
                    )
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
                                finish_rows(
                                    &mut *conn,
                                    &[id],
                                    OutboxStatus::Failed,
                                    Some(why),
                                    now,
                                )
                                .await
                                .map_err(query_error)?;
                            }
                        }
                    }
                    Ok(claimed)
                }

                async fn mark_sent(
                    &self,
                    ids: &[Uuid],
                    now: DateTime<Utc>,
                ) -> Result<(), InfraError> {
                    if ids.is_empty() {
                        return Ok(());
                    }
                    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
                    let mut conn = self.writer().await?;
                    finish_rows(&mut *conn, &ids, OutboxStatus::Sent, None, now)
                        .await
                        .map_err(query_error)?;
                    Ok(())
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
                        .cached()
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
                    let mut conn = self.writer().await?;
                    finish_rows(&mut *conn, &[id.to_string()], status, error, now)
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
        };
    };
}

pub(crate) use outbox;
